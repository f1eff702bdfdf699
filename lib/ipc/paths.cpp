// Default locations. Standard library and POSIX only: this file is part of the
// CLI's small client library.
#include "ipc/paths.hpp"

#include "build_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace twofactor::paths {

namespace detail {

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

}  // namespace detail

using detail::absoluteEnv;
using detail::joinPath;

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

}  // namespace twofactor::paths
