// Logging: to the journal through sd_journal_send when systemd started the
// daemon (JOURNAL_STREAM or INVOCATION_ID set), else to stderr as one line
// per record. Never pass codes, keys, addresses or message bodies.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::log {

enum class Level { Debug = 0, Info = 1, Warning = 2, Error = 3 };

// The records an operator alerts on carry a MESSAGE_ID= of their own in the
// journal (twofactord(8), LOGGING); the ids never change.
enum class Event { None, OperatorAlert, StoreFailure, AuditFailure };
[[nodiscard]] const char* messageId(Event event);  // 32 hex digits, or "" for None

// What a record is about, as structured journal fields: TWOFACTOR_REQUEST=
// (a request id) and TWOFACTOR_APP= (an app name). Empty: not sent.
struct Context {
    Event event = Event::None;
    std::string_view request;
    std::string_view app;
};

void setLevel(Level level);
[[nodiscard]] bool parseLevel(std::string_view name, Level& out);
void write(Level level, std::string_view message);
void write(Level level, std::string_view message, const Context& context);

// The journal fields of one record, "NAME=value" each: MESSAGE (escaped as
// on stderr), PRIORITY, SYSLOG_IDENTIFIER, and MESSAGE_ID, TWOFACTOR_REQUEST
// and TWOFACTOR_APP when the context has them (control characters escaped).
[[nodiscard]] std::vector<std::string> journalFields(Level level, std::string_view message, const Context& context);
// Where records go: the journal when systemd started this process and the
// daemon was built with libsystemd, else stderr.
[[nodiscard]] bool toJournal();

// A time for a log line: RFC 3339 in UTC to the second, "2026-12-01T09:00:00Z".
// Log lines say when things happen in this form, never as raw Unix seconds.
[[nodiscard]] std::string timestamp(std::int64_t unixSeconds);

inline void debug(std::string_view m) { write(Level::Debug, m); }
inline void info(std::string_view m) { write(Level::Info, m); }
inline void warning(std::string_view m) { write(Level::Warning, m); }
inline void error(std::string_view m) { write(Level::Error, m); }
inline void error(std::string_view m, const Context& c) { write(Level::Error, m, c); }
inline void warning(std::string_view m, const Context& c) { write(Level::Warning, m, c); }

// A warning that a flood could repeat thousands of times a second: written
// at most once per `every`, saying how many were held back since. Any thread.
class Throttled {
public:
    explicit Throttled(std::chrono::seconds every) : every_(every) {}
    void warning(std::string_view message);

private:
    std::chrono::seconds every_;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point last_{};
    std::uint64_t held_ = 0;
};

}  // namespace twofactor::log
