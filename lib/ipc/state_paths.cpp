// The embedded default's state directory. In the full library, not the
// client's: it may read the password database, and the CLI (linked
// statically) must not pull in glibc's NSS.
#include "ipc/paths.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

namespace twofactor::paths {

namespace {

using detail::absoluteEnv;
using detail::joinPath;

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
