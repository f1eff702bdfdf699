// Logging to stderr (the journal under systemd). Never pass codes, keys or message bodies.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace twofactor::log {

enum class Level { Debug = 0, Info = 1, Warning = 2, Error = 3 };

void setLevel(Level level);
[[nodiscard]] bool parseLevel(std::string_view name, Level& out);
void write(Level level, std::string_view message);

// A time for a log line: RFC 3339 in UTC to the second, "2026-12-01T09:00:00Z".
// Log lines say when things happen in this form, never as raw Unix seconds.
[[nodiscard]] std::string timestamp(std::int64_t unixSeconds);

inline void debug(std::string_view m) { write(Level::Debug, m); }
inline void info(std::string_view m) { write(Level::Info, m); }
inline void warning(std::string_view m) { write(Level::Warning, m); }
inline void error(std::string_view m) { write(Level::Error, m); }

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
