#include "ipc/client.hpp"

#include "build_config.h"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace twofactor::ipc {

namespace {

// The uid of the installed daemon's user (TWOFACTOR_DAEMON_USER), if it exists.
// Read from /etc/passwd itself, not through NSS, which the static CLI cannot
// load: the daemon's user is a system user (sysusers.d), always kept there.
bool daemonUserUid(uid_t& out) {
    std::FILE* f = std::fopen("/etc/passwd", "re");
    if (f == nullptr) return false;
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* entry = nullptr;
    bool found = false;
    while (::fgetpwent_r(f, &pw, buf.data(), buf.size(), &entry) == 0 && entry != nullptr) {
        if (std::strcmp(entry->pw_name, TWOFACTOR_DAEMON_USER) == 0) {
            out = entry->pw_uid;
            found = true;
            break;
        }
    }
    std::fclose(f);
    return found;
}

// Who may serve this CLI: root, the invoking user (a per-user daemon), or the
// installed daemon's user.
bool trustedUid(uid_t uid) {
    if (uid == 0 || uid == ::getuid() || uid == ::geteuid()) return true;
    uid_t daemon = 0;
    return daemonUserUid(daemon) && uid == daemon;
}

std::string trustedText() { return "root, this user or the daemon's user '" TWOFACTOR_DAEMON_USER "'"; }

std::string directoryOf(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

bool Client::checkServer(int fd, const std::string& socketPath, std::string& error) {
    // Anyone who can create the socket's path (a squatted /tmp/twofactor-UID/)
    // would receive the code and could answer "approved": the daemon must be
    // who it should be, in a directory only trusted users can change.
    const std::string dir = directoryOf(socketPath);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        error = "cannot check " + dir + ": " + std::strerror(errno);
        return false;
    }
    if (!trustedUid(st.st_uid)) {
        error = "refusing to use " + socketPath + ": its directory " + dir + " is owned by uid " +
                std::to_string(st.st_uid) + ", not by " + trustedText();
        return false;
    }
    if ((st.st_mode & 022) != 0) {
        // A sticky directory (/tmp) lets others add names but not replace ours.
        struct stat sock {};
        if (!(st.st_mode & S_ISVTX) || ::lstat(socketPath.c_str(), &sock) != 0 || !trustedUid(sock.st_uid)) {
            error = "refusing to use " + socketPath + ": its directory " + dir +
                    " is writable by group or others, who could replace the socket";
            return false;
        }
    }
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        error = std::string("cannot read the credentials of the server at ") + socketPath + ": " + std::strerror(errno);
        return false;
    }
    if (!trustedUid(cred.uid)) {
        error = "refusing to use " + socketPath + ": it is served by uid " + std::to_string(cred.uid) + " (pid " +
                std::to_string(cred.pid) + "), not by " + trustedText() + "; it is not twofactord";
        return false;
    }
    return true;
}

Client::~Client() {
    if (fd_ >= 0) ::close(fd_);
}

bool Client::connect(const std::string& socketPath, Client& out, std::string& error) {
    return connect(socketPath, out, error, 0);
}

bool Client::connect(const std::string& socketPath, Client& out, std::string& error, int timeoutMs) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socketPath.size() >= sizeof addr.sun_path) {
        error = "socket path too long: " + socketPath;
        return false;
    }
    std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("cannot create a socket: ") + std::strerror(errno);
        return false;
    }
    if (timeoutMs > 0) {
        timeval tv{};
        tv.tv_sec = timeoutMs / 1000;
        tv.tv_usec = (timeoutMs % 1000) * 1000;
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        error = "cannot reach twofactord at " + socketPath + ": " + std::strerror(errno) +
                (errno == ENOENT || errno == ECONNREFUSED ? " (is twofactord running?)" : "");
        ::close(fd);
        return false;
    }
    if (!checkServer(fd, socketPath, error)) {
        ::close(fd);
        return false;
    }
    if (out.fd_ >= 0) ::close(out.fd_);
    out.fd_ = fd;
    out.timeoutMs_ = timeoutMs;
    return true;
}

bool Client::call(std::string_view method, const nlohmann::json& parameters, Reply& reply, std::string& error) {
    return callMore(method, parameters, nullptr, reply, error);
}

bool Client::callMore(std::string_view method, const nlohmann::json& parameters, const OnContinue& onContinue,
                      Reply& reply, std::string& error) {
    const std::string message = encodeCall(method, parameters, /*more=*/onContinue != nullptr);
    std::string_view rest = message;
    // A daemon that refused the connection (TooManyConnections) wrote why and
    // closed it: that reply is what the user should see, not "Broken pipe".
    std::string sendError;
    while (!rest.empty()) {
        const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            sendError = timeoutMs_ > 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                            ? "twofactord took no data within " + std::to_string(timeoutMs_) + " ms"
                            : std::string("cannot send to twofactord: ") + std::strerror(errno);
            break;
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    char buf[16384];
    for (;;) {
        if (auto text = reader_.next()) {
            auto parsed = parseReply(*text, 64);
            if (auto* e = std::get_if<MessageError>(&parsed)) {
                error = "twofactord sent an invalid reply: " + e->reason;
                return false;
            }
            reply = std::move(std::get<Reply>(parsed));
            if (!sendError.empty() && !reply.error) {
                error = sendError;
                return false;
            }
            if (reply.continues && !reply.error) {
                if (onContinue) onContinue(reply.parameters);
                continue;
            }
            return true;
        }
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (!sendError.empty()) error = sendError;
            else if (n == 0) error = "twofactord closed the connection";
            else if (timeoutMs_ > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                error = "no answer from twofactord within " + std::to_string(timeoutMs_) + " ms";
            else error = std::string("cannot read from twofactord: ") + std::strerror(errno);
            return false;
        }
        if (reader_.feed(buf, static_cast<std::size_t>(n)) == FrameReader::Status::TooLarge) {
            error = "twofactord sent a reply larger than 16 MiB";
            return false;
        }
    }
}

}  // namespace twofactor::ipc
