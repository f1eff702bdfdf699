#include "ipc/client.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace twofactor::ipc {

Client::~Client() {
    if (fd_ >= 0) ::close(fd_);
}

bool Client::connect(const std::string& socketPath, Client& out, std::string& error) {
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
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        error = "cannot reach twofactord at " + socketPath + ": " + std::strerror(errno) +
                (errno == ENOENT || errno == ECONNREFUSED ? " (is twofactord running?)" : "");
        ::close(fd);
        return false;
    }
    if (out.fd_ >= 0) ::close(out.fd_);
    out.fd_ = fd;
    return true;
}

bool Client::call(std::string_view method, const nlohmann::json& parameters, Reply& reply, std::string& error) {
    return callMore(method, parameters, nullptr, reply, error);
}

bool Client::callMore(std::string_view method, const nlohmann::json& parameters, const OnContinue& onContinue,
                      Reply& reply, std::string& error) {
    const std::string message = encodeCall(method, parameters, /*more=*/onContinue != nullptr);
    std::string_view rest = message;
    while (!rest.empty()) {
        const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            error = std::string("cannot send to twofactord: ") + std::strerror(errno);
            return false;
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
            if (reply.continues && !reply.error) {
                if (onContinue) onContinue(reply.parameters);
                continue;
            }
            return true;
        }
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = n == 0 ? "twofactord closed the connection" : std::string("cannot read from twofactord: ") + std::strerror(errno);
            return false;
        }
        if (reader_.feed(buf, static_cast<std::size_t>(n)) == FrameReader::Status::TooLarge) {
            error = "twofactord sent a reply larger than 16 MiB";
            return false;
        }
    }
}

}  // namespace twofactor::ipc
