// Logging to stderr (the journal under systemd). Never pass codes, keys or message bodies.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace twofactor::log {

enum class Level { Debug = 0, Info = 1, Warning = 2, Error = 3 };

void setLevel(Level level);
[[nodiscard]] bool parseLevel(std::string_view name, Level& out);
void write(Level level, std::string_view message);

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
