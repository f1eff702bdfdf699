// An HTTP/1.1 server on Boost.Beast, plain or over TLS: every read has a
// deadline, headers and bodies have caps, connections are counted per client
// address and in total, and a slow or huge client only ever holds its own
// connection. Routes are a table (method, pattern, handler); handlers answer
// asynchronously, from any thread.
#pragma once

#include "util/asio.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twofactor::http {

struct Limits {
    std::chrono::milliseconds headerTimeout{10000};  // from the first byte (or the connection) to the end of the headers
    std::chrono::milliseconds bodyTimeout{30000};    // the whole request, from its first byte
    std::chrono::milliseconds idleTimeout{30000};    // a kept-alive connection waiting for its next request
    std::chrono::milliseconds writeTimeout{10000};   // sending one response
    std::size_t maxHeaderBytes = 16 * 1024;          // request line and header fields
    std::size_t maxHeaderCount = 64;
    std::size_t maxBodyBytes = 64 * 1024;
    int maxConnections = 1024;
    int maxConnectionsPerIp = 64;
};

struct Request {
    std::string method;  // as sent: "GET", "POST"
    std::string path;    // the target up to "?", not decoded
    std::string query;   // after "?", not decoded
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
    std::string body;    // the bytes as received
    std::string peerIp;    // the connection's address
    std::string clientIp;  // peerIp, or what a trusted proxy says it forwarded
    std::map<std::string, std::string> params;  // the route's {name} segments

    // The first field of that name (case-insensitive), and how many there are.
    [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
    [[nodiscard]] std::size_t headerCount(std::string_view name) const;
    // A query parameter, percent- and plus-decoded.
    [[nodiscard]] std::optional<std::string> queryParam(std::string_view name) const;
};

struct Response {
    int status = 200;
    std::string contentType = "text/plain; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool close = false;  // end the connection after this response

    static Response text(int status, std::string body);
};

// Answers a request once; may be called from any thread.
using Reply = std::function<void(Response)>;
using Handler = std::function<void(Request&, Reply)>;

class Router {
public:
    // pattern: "/v1/apps/{app}/verifications"; a {name} segment matches one
    // non-empty segment. Throws std::logic_error for a route added twice.
    void add(std::string method, std::string pattern, Handler handler);

    struct Match {
        const Handler* handler = nullptr;  // nullptr: no route for this method and path
        std::map<std::string, std::string> params;
        std::string allow;  // for a path some other method has: "GET, POST" (405)
    };
    [[nodiscard]] Match find(std::string_view method, std::string_view path) const;
    // (method, pattern) of every route, in the order added.
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> routes() const;

private:
    [[nodiscard]] Match match(std::string_view method, std::string_view path) const;  // find() without HEAD's fallback
    struct Route {
        std::string method;
        std::string pattern;
        std::vector<std::string> segments;
        Handler handler;
    };
    std::vector<Route> routes_;
};

struct TlsSettings {
    std::string certFile;  // PEM chain
    std::string keyFile;   // PEM private key
    std::string minVersion = "1.3";  // "1.3" | "1.2"
};

// Whether `ip` is one of `proxies` (addresses or CIDR networks).
[[nodiscard]] bool trustedProxy(const std::string& ip, const std::vector<std::string>& proxies);
// The client a request is from: the connection's address, unless that is a
// trusted proxy; then the right-most X-Forwarded-For (or Forwarded for=)
// address that is not itself a trusted proxy.
[[nodiscard]] std::string clientAddress(const std::string& peerIp, const Request& request,
                                        const std::vector<std::string>& proxies);

class Server {
public:
    // Runs on `io` (the daemon's I/O thread). Without TLS settings it speaks
    // plain HTTP (the webhook behind a reverse proxy, tests).
    Server(asio::io_context& io, Limits limits, std::shared_ptr<const Router> router,
           std::vector<std::string> trustedProxies = {}, std::optional<TlsSettings> tls = std::nullopt);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds "host:port", "[v6]:port" or a host and port; 0 picks a free port.
    // Throws std::runtime_error when it cannot (the address in the message).
    void listen(const std::string& address);
    void listen(const std::string& host, int port);
    // Ports bound, in the order of listen().
    [[nodiscard]] std::vector<int> ports() const;
    // Reads the certificate and key again (SIGHUP); new connections use them.
    // Throws std::runtime_error and keeps the old ones when they do not load.
    void reloadTls();
    // Stops accepting; connections go on until they end (shutdown).
    void stopAccepting();
    // Stops accepting and closes every connection. Idempotent. On the I/O
    // thread, or when it no longer runs.
    void stop();
    [[nodiscard]] int connections() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace twofactor::http
