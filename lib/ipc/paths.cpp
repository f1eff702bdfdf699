// Default locations. Standard library and POSIX only: this file is part of the
// CLI's small client library.
#include "ipc/paths.hpp"

#include "build_config.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace twofactor::paths {

namespace {

// The XDG base directory spec says relative values are invalid and must be
// ignored; honouring them would make the location depend on the working directory.
std::string absoluteEnv(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || value[0] != '/') {
        return {};
    }
    return value;
}

std::string joinPath(std::string dir, const std::string& tail) {
    while (dir.size() > 1 && dir.back() == '/') {
        dir.pop_back();
    }
    if (dir != "/") {
        dir += '/';
    }
    return dir + tail;
}

// HOME first, as shells and XDG do; the password database covers services
// started without a login environment.
std::string homeDirectory() {
    if (std::string home = absoluteEnv("HOME"); !home.empty()) {
        return home;
    }
    long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buffer(hint > 0 ? static_cast<std::size_t>(hint) : 1024);
    for (;;) {
        passwd entry{};
        passwd* result = nullptr;
        int rc = ::getpwuid_r(::getuid(), &entry, buffer.data(), buffer.size(), &result);
        if (rc == ERANGE && buffer.size() < (1u << 20)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        if (rc == 0 && result != nullptr && result->pw_dir != nullptr && result->pw_dir[0] == '/') {
            return result->pw_dir;
        }
        return {};
    }
}

}  // namespace

std::string systemSocket() { return TWOFACTOR_SOCKET_PATH; }
std::string systemStateDir() { return TWOFACTOR_STATE_DIR; }
std::string systemConfigPath() { return TWOFACTOR_CONFIG_PATH; }

std::string defaultSocket() {
    if (std::string runtime = absoluteEnv("XDG_RUNTIME_DIR"); !runtime.empty()) {
        return joinPath(runtime, "twofactor/twofactord.sock");
    }
    uid_t uid = ::getuid();
    if (uid == 0) {
        return systemSocket();
    }
    // Per-uid directory so users without a runtime dir do not collide; the
    // daemon must create it 0700 and refuse one owned by someone else.
    return "/tmp/twofactor-" + std::to_string(uid) + "/twofactord.sock";
}

std::string clientSocket() {
    auto isSocket = [](const std::string& path) {
        struct stat st {};
        return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
    };
    std::string own = defaultSocket();
    if (isSocket(own)) return own;
    if (std::string system = systemSocket(); isSocket(system)) return system;
    return own;
}

std::string defaultStateDir() {
    if (std::string state = absoluteEnv("XDG_STATE_HOME"); !state.empty()) {
        return joinPath(state, "twofactor");
    }
    if (::getuid() == 0) {
        return systemStateDir();
    }
    std::string home = homeDirectory();
    if (home.empty()) {
        // No fallback under /tmp: the state directory holds key material, and a
        // world-writable parent lets another user plant or read it.
        throw std::runtime_error("cannot determine the home directory for the state directory; set XDG_STATE_HOME");
    }
    return joinPath(home, ".local/state/twofactor");
}

}  // namespace twofactor::paths
