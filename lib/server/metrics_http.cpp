#include "server/metrics_http.hpp"

#include "util/log.hpp"

#include <string_view>

namespace twofactor::server {

namespace {

std::string response(int status, std::string_view reason, std::string_view contentType, const std::string& body,
                     bool head, std::string_view extra = {}) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
    out += "Content-Type: ";
    out += contentType;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out += extra;
    out += "Connection: close\r\n\r\n";
    if (!head) out += body;
    return out;
}

std::string plain(int status, std::string_view reason, std::string_view extra = {}) {
    return response(status, reason, "text/plain; charset=utf-8", std::string(reason) + "\n", false, extra);
}

}  // namespace

class MetricsEndpoint::Exchange : public std::enable_shared_from_this<Exchange> {
public:
    Exchange(asio::ip::tcp::socket socket, const Render& render, std::shared_ptr<int> active)
        : socket_(std::move(socket)), deadline_(socket_.get_executor()), buffer_(kMaxRequestHead), render_(render),
          active_(std::move(active)) {
        ++*active_;
    }
    ~Exchange() { --*active_; }

    void run() {
        deadline_.expires_after(kDeadline);
        deadline_.async_wait([self = shared_from_this()](const error_code& ec) {
            if (!ec) {
                error_code ignored;
                self->socket_.close(ignored);
            }
        });
        asio::async_read_until(socket_, buffer_, "\r\n\r\n",
                               [self = shared_from_this()](const error_code& ec, std::size_t n) {
                                   self->onHead(ec, n);
                               });
    }

private:
    void onHead(const error_code& ec, std::size_t n) {
        if (ec == asio::error::not_found) return reply(plain(431, "Request Header Fields Too Large"));
        if (ec) return finish();
        std::string head(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n);
        const std::string line = head.substr(0, head.find("\r\n"));
        // METHOD SP TARGET SP HTTP/1.x; anything else is not for us.
        const auto sp1 = line.find(' '), sp2 = line.rfind(' ');
        if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 7, "HTTP/1.") != 0 ||
            line.size() != sp2 + 9)
            return reply(plain(400, "Bad Request"));
        const std::string method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        if (method != "GET" && method != "HEAD") return reply(plain(405, "Method Not Allowed", "Allow: GET, HEAD\r\n"));
        const std::string path = target.substr(0, target.find('?'));
        if (path != "/metrics") return reply(plain(404, "Not Found"));
        reply(response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_(), method == "HEAD"));
    }

    void reply(std::string text) {
        out_ = std::move(text);
        asio::async_write(socket_, asio::buffer(out_),
                          [self = shared_from_this()](const error_code&, std::size_t) { self->finish(); });
    }

    void finish() {
        error_code ignored;
        socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
        deadline_.cancel();
    }

    asio::ip::tcp::socket socket_;
    asio::steady_timer deadline_;
    asio::streambuf buffer_;
    Render render_;
    std::shared_ptr<int> active_;
    std::string out_;
};

MetricsEndpoint::MetricsEndpoint(asio::io_context& io, Render render)
    : io_(io), acceptor_(io), render_(std::move(render)) {}

void MetricsEndpoint::start(const std::string& address, int port) {
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(address), static_cast<unsigned short>(port));
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(64);
    accept();
}

void MetricsEndpoint::stop() {
    error_code ignored;
    acceptor_.close(ignored);
}

void MetricsEndpoint::accept() {
    acceptor_.async_accept([this](const error_code& ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            // Beyond the cap a scraper gets a closed connection, not a queue.
            if (*active_ < kMaxConnections) std::make_shared<Exchange>(std::move(socket), render_, active_)->run();
        } else {
            static log::Throttled acceptLog(std::chrono::seconds(60));
            acceptLog.warning("metrics: accept failed: " + ec.message());
        }
        accept();
    });
}

}  // namespace twofactor::server
