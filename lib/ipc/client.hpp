// A blocking Varlink client for the CLI: one connection, calls in sequence.
#pragma once

#include "ipc/message.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace twofactor::ipc {

class Client {
public:
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    Client(Client&& other) noexcept
        : fd_(other.fd_), timeoutMs_(other.timeoutMs_), reader_(std::move(other.reader_)) {
        other.fd_ = -1;
    }
    ~Client();

    // Connects, then checks that the server is who it should be before
    // anything is sent: the socket's directory is owned by root, this user or
    // the daemon's user and not writable by others (unless sticky with a
    // socket such a user owns), and SO_PEERCRED names one of those uids. On
    // failure returns false and sets `error` to a sentence naming the path
    // and what was wrong.
    [[nodiscard]] static bool connect(const std::string& socketPath, Client& out, std::string& error);

    // The same with every later send and receive on the connection (and the
    // connect itself, should the daemon's backlog be full) bounded by
    // timeoutMs: for callers such as the PAM module that must not hang a login.
    [[nodiscard]] static bool connect(const std::string& socketPath, Client& out, std::string& error, int timeoutMs);
    Client() = default;

    // Sends a call and waits for its reply. Returns false on an I/O or
    // protocol failure (the daemon went away), with `error` set.
    [[nodiscard]] bool call(std::string_view method, const nlohmann::json& parameters, Reply& reply,
                            std::string& error);

    // The same with "more": every intermediate reply ("continues": true) goes
    // to onContinue, in order; `reply` is the last one (or the error).
    using OnContinue = std::function<void(const nlohmann::json& parameters)>;
    [[nodiscard]] bool callMore(std::string_view method, const nlohmann::json& parameters, const OnContinue& onContinue,
                                Reply& reply, std::string& error);

private:
    [[nodiscard]] static bool checkServer(int fd, const std::string& socketPath, std::string& error);

    int fd_ = -1;
    int timeoutMs_ = 0;
    FrameReader reader_{16 * 1024 * 1024};
};

}  // namespace twofactor::ipc
