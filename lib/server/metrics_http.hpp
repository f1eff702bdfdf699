// The loopback HTTP/1.x responder for [metrics] listen: GET /metrics and
// nothing else, one request per connection, on the daemon's event loop.
// Bounded whatever a client does: a deadline for the whole exchange, a cap
// on the request head, a cap on connections at once.
#pragma once

#include "util/asio.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace twofactor::server {

class MetricsEndpoint {
public:
    using Render = std::function<std::string()>;
    static constexpr std::size_t kMaxRequestHead = 8192;
    static constexpr int kMaxConnections = 16;
    static constexpr std::chrono::seconds kDeadline{5};

    MetricsEndpoint(asio::io_context& io, Render render);
    // Binds ADDRESS:PORT and starts accepting; throws std::system_error.
    void start(const std::string& address, int port);
    void stop();

private:
    class Exchange;
    void accept();

    asio::io_context& io_;
    asio::ip::tcp::acceptor acceptor_;
    Render render_;
    std::shared_ptr<int> active_ = std::make_shared<int>(0);
};

}  // namespace twofactor::server
