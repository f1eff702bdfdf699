#include "util/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace twofactor::log {

namespace {
std::atomic<int> minLevel{static_cast<int>(Level::Info)};
std::mutex writeMutex;

// Under systemd (JOURNAL_STREAM set) a "<N>" prefix carries the syslog priority.
bool journal() {
    static const bool j = std::getenv("JOURNAL_STREAM") != nullptr;
    return j;
}

// One record per line, and nothing a peer sends (a method name, a user name)
// can forge a record or drive the terminal that shows the log: control
// characters are written as \n, \r, \t or \xHH, and a backslash as \\ so an
// escape in the log always means one.
void appendEscaped(std::string& line, std::string_view message) {
    static const char hex[] = "0123456789abcdef";
    for (char ch : message) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\\') line += "\\\\";
        else if (c == '\n') line += "\\n";
        else if (c == '\r') line += "\\r";
        else if (c == '\t') line += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            line += "\\x";
            line.push_back(hex[c >> 4]);
            line.push_back(hex[c & 0xf]);
        } else line.push_back(ch);
    }
}
}  // namespace

void setLevel(Level level) { minLevel = static_cast<int>(level); }

bool parseLevel(std::string_view name, Level& out) {
    if (name == "debug") out = Level::Debug;
    else if (name == "info") out = Level::Info;
    else if (name == "warning") out = Level::Warning;
    else if (name == "error") out = Level::Error;
    else return false;
    return true;
}

std::string timestamp(std::int64_t unixSeconds) {
    const auto t = static_cast<std::time_t>(unixSeconds);
    std::tm tm{};
    char buffer[32];
    if (::gmtime_r(&t, &tm) == nullptr || std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return std::to_string(unixSeconds);  // beyond what gmtime can represent
    return buffer;
}

void write(Level level, std::string_view message) {
    if (static_cast<int>(level) < minLevel) return;
    static const char* const names[] = {"debug", "info", "warning", "error"};
    static const char* const priorities[] = {"<7>", "<6>", "<4>", "<3>"};
    std::string line;
    line.reserve(message.size() + 48);
    // The journal stamps each record itself; elsewhere the line says when.
    if (journal()) line += priorities[static_cast<int>(level)];
    else {
        line += timestamp(static_cast<std::int64_t>(std::time(nullptr)));
        line += " twofactord: ";
        line += names[static_cast<int>(level)];
        line += ": ";
    }
    appendEscaped(line, message);
    line.push_back('\n');
    std::lock_guard lock(writeMutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

void Throttled::warning(std::string_view message) {
    std::uint64_t held = 0;
    {
        std::lock_guard lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < every_) {
            ++held_;
            return;
        }
        last_ = now;
        held = held_;
        held_ = 0;
    }
    if (held == 0) write(Level::Warning, message);
    else write(Level::Warning, std::string(message) + " (" + std::to_string(held) + " more like it not logged)");
}

}  // namespace twofactor::log
