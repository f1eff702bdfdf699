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
    // One record per line: control characters from peers cannot forge records.
    for (char c : message) line.push_back(c == '\n' || c == '\r' ? ' ' : c);
    line.push_back('\n');
    std::lock_guard lock(writeMutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace twofactor::log
