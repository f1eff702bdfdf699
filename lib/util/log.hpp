// Logging to stderr (the journal under systemd). Never pass codes, keys or message bodies.
#pragma once

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

}  // namespace twofactor::log
