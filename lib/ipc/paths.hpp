// Default locations shared by the daemon and the CLI, so both agree with no flags.
#pragma once

#include <string>

namespace twofactor::paths {

// The socket the CLI talks to when neither --socket nor TWOFACTOR_SOCKET is
// given, and that the embedded-default daemon listens on:
// $XDG_RUNTIME_DIR/twofactor/twofactord.sock when XDG_RUNTIME_DIR is set;
// otherwise the system socket for root, and /tmp/twofactor-UID/twofactord.sock
// for other users.
std::string defaultSocket();

// The socket the CLI uses with no --socket and no TWOFACTOR_SOCKET: the
// per-user default when a daemon listens there, else the system socket when
// that exists, else the per-user default (so the error names it).
std::string clientSocket();

// The embedded default's state directory: $XDG_STATE_HOME/twofactor, else
// ~/.local/state/twofactor; for root without XDG_STATE_HOME the system state dir.
std::string defaultStateDir();

// Compile-time system defaults (meson options).
std::string systemSocket();
std::string systemStateDir();
std::string systemConfigPath();

namespace detail {
// Shared by paths.cpp and state_paths.cpp.
// The variable's value if it is an absolute path, else empty.
std::string absoluteEnv(const char* name);
// dir + "/" + tail, with no doubled slash.
std::string joinPath(std::string dir, const std::string& tail);
}  // namespace detail

}  // namespace twofactor::paths
