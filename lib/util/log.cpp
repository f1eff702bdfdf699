#include "util/log.hpp"

#include "build_config.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#include <sys/uio.h>
#endif

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

// Under systemd (JOURNAL_STREAM set) a "<N>" prefix carries the syslog priority
// of a line on stderr, for builds without libsystemd.
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

const char* messageId(Event event) {
    switch (event) {
    case Event::OperatorAlert: return "68c3eb37e96d432785371633de60f53b";
    case Event::StoreFailure: return "6f2d57d64a934f5283cc452f68437a2e";
    case Event::AuditFailure: return "b1dc9b38c39e4025ae5d3cd7a5e5f56b";
    case Event::None: break;
    }
    return "";
}

bool toJournal() {
#ifdef HAVE_SYSTEMD
    // JOURNAL_STREAM: stderr is connected to the journal; INVOCATION_ID:
    // started by systemd at all (StandardError= may point elsewhere, the
    // journal is still there to write to).
    static const bool j = std::getenv("JOURNAL_STREAM") != nullptr || std::getenv("INVOCATION_ID") != nullptr;
    return j;
#else
    return false;
#endif
}

std::vector<std::string> journalFields(Level level, std::string_view message, const Context& context) {
    static const char* const priorities[] = {"7", "6", "4", "3"};
    std::vector<std::string> fields;
    fields.reserve(6);
    std::string m = "MESSAGE=";
    appendEscaped(m, message);
    fields.push_back(std::move(m));
    fields.push_back(std::string("PRIORITY=") + priorities[static_cast<int>(level)]);
    fields.emplace_back("SYSLOG_IDENTIFIER=twofactord");
    if (context.event != Event::None) fields.push_back(std::string("MESSAGE_ID=") + messageId(context.event));
    auto add = [&fields](const char* name, std::string_view value) {
        if (value.empty()) return;
        std::string f = name;
        appendEscaped(f, value.substr(0, 256));
        fields.push_back(std::move(f));
    };
    add("TWOFACTOR_REQUEST=", context.request);
    add("TWOFACTOR_APP=", context.app);
    return fields;
}

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

void write(Level level, std::string_view message) { write(level, message, Context{}); }

void write(Level level, std::string_view message, const Context& context) {
    if (static_cast<int>(level) < minLevel) return;
#ifdef HAVE_SYSTEMD
    if (toJournal()) {
        const std::vector<std::string> fields = journalFields(level, message, context);
        std::vector<iovec> iov;
        iov.reserve(fields.size());
        for (const auto& f : fields) iov.push_back(iovec{const_cast<char*>(f.data()), f.size()});
        if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
        // No journal to take it (not running, or a sandbox without its
        // socket): stderr, where systemd still collects it.
    }
#endif
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
