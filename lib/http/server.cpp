#include "http/server.hpp"

#include "util/files.hpp"
#include "util/log.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace twofactor::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percentDecode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// "/a/b" -> {"a", "b"}; empty segments are kept ("/a/" -> {"a", ""}), so
// that a path matches its route exactly or not at all.
std::vector<std::string> splitPath(std::string_view path) {
    std::vector<std::string> out;
    if (path.starts_with('/')) path.remove_prefix(1);
    for (;;) {
        const std::size_t slash = path.find('/');
        out.emplace_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

// An address as the logs and the per-client counts know it: IPv4-mapped IPv6 as IPv4.
std::string addressText(const asio::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
    return a.to_string();
}

std::optional<asio::ip::address> parseAddress(std::string_view text) {
    std::string s(text);
    if (s.size() > 2 && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string::npos) return std::nullopt;
        s = s.substr(1, close - 1);
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
        s = s.substr(0, s.find(':'));  // "203.0.113.7:4711"
    }
    error_code ec;
    auto a = asio::ip::make_address(s, ec);
    if (ec) return std::nullopt;
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()));
    return a;
}

std::shared_ptr<asio::ssl::context> makeTlsContext(const TlsSettings& t) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                     asio::ssl::context::single_dh_use);
    SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), t.minVersion == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION);
    try {
        ctx->use_certificate_chain_file(t.certFile);
    } catch (const std::exception&) {
        throw std::runtime_error("[http] cannot load the certificate chain " + t.certFile + " (PEM expected)");
    }
    // Through our own readers: a key file others may read is refused; a
    // systemd credential is the service manager's file, read as given.
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    const bool credential = creds != nullptr && *creds != '\0' && t.keyFile.starts_with(std::string(creds) + "/");
    const SecretString key = credential ? files::readCredentialFile(t.keyFile) : files::readSecretFile(t.keyFile);
    try {
        ctx->use_private_key(asio::buffer(key.view().data(), key.view().size()), asio::ssl::context::pem);
    } catch (const std::exception&) {
        throw std::runtime_error("[http] cannot load the private key " + t.keyFile + " (PEM expected)");
    }
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        throw std::runtime_error("[http] the private key " + t.keyFile + " does not match the certificate " + t.certFile);
    return ctx;
}

class SessionBase {
public:
    virtual ~SessionBase() = default;
    virtual void close() = 0;
};

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
    Impl(asio::io_context& io_, Limits limits_, std::shared_ptr<const Router> router_, std::vector<std::string> proxies_,
         std::optional<TlsSettings> tls_)
        : io(io_), limits(limits_), router(std::move(router_)), proxies(std::move(proxies_)), tls(std::move(tls_)) {}

    asio::io_context& io;
    Limits limits;
    std::shared_ptr<const Router> router;
    std::vector<std::string> proxies;
    std::optional<TlsSettings> tls;
    std::shared_ptr<asio::ssl::context> ssl;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    std::vector<int> ports;
    std::map<std::string, int> perIp;
    std::map<SessionBase*, std::weak_ptr<SessionBase>> sessions;
    int total = 0;
    bool stopped = false;
    log::Throttled refusals{std::chrono::seconds(10)};

    void accept(tcp::acceptor& acceptor);
    void admit(tcp::socket socket);
    void sessionClosed(SessionBase* s, const std::string& ip) {
        sessions.erase(s);
        if (--perIp[ip] <= 0) perIp.erase(ip);
        --total;
    }
    void serve(Request& request, Reply reply) const;
};

namespace {

template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
public:
    template <class... Args>
    Session(std::shared_ptr<Server::Impl> server, std::string peerIp, Args&&... args)
        : server_(std::move(server)), stream_(std::forward<Args>(args)...), peerIp_(std::move(peerIp)) {}

    void start(std::shared_ptr<asio::ssl::context> ctx) {
        ctx_ = std::move(ctx);
        auto self = this->shared_from_this();
        lowest().expires_after(server_->limits.headerTimeout);
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            readHeader();
        } else {
            stream_.async_handshake(asio::ssl::stream_base::server, [self](const error_code& ec) {
                if (ec) return self->close();
                self->readHeader();
            });
        }
    }

    void close() override {
        if (closed_) return;
        closed_ = true;
        error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        lowest().socket().close(ignored);
        server_->sessionClosed(this, peerIp_);
    }

private:
    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

    // A kept-alive connection has the idle timeout until its next request's
    // first byte, then the header deadline like a new one.
    void awaitNext() {
        if (buffer_.size() > 0) {
            lowest().expires_after(server_->limits.headerTimeout);
            return readHeader();
        }
        lowest().expires_after(server_->limits.idleTimeout);
        auto self = this->shared_from_this();
        stream_.async_read_some(buffer_.prepare(4096), [self](const error_code& ec, std::size_t n) {
            if (ec) return self->close();
            self->buffer_.commit(n);
            self->lowest().expires_after(self->server_->limits.headerTimeout);
            self->readHeader();
        });
    }

    void readHeader() {
        started_ = std::chrono::steady_clock::now();
        head_ = false;
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(server_->limits.maxHeaderBytes, UINT32_MAX)));
        parser_->body_limit(server_->limits.maxBodyBytes);
        auto self = this->shared_from_this();
        bhttp::async_read_header(stream_, buffer_, *parser_, [self](const error_code& ec, std::size_t) {
            if (ec) return self->refuse(ec);
            std::size_t count = 0;
            for (auto it = self->parser_->get().begin(); it != self->parser_->get().end(); ++it) ++count;
            if (count > self->server_->limits.maxHeaderCount)
                return self->answer(Response::text(431, "too many header fields"), true);
            if (self->parser_->is_done()) return self->dispatch();
            self->lowest().expires_at(self->started_ + self->server_->limits.bodyTimeout);
            bhttp::async_read(self->stream_, self->buffer_, *self->parser_, [self](const error_code& e, std::size_t) {
                if (e) return self->refuse(e);
                self->dispatch();
            });
        });
    }

    // A request that could not be read: answered where HTTP still can be, then closed.
    void refuse(const error_code& ec) {
        if (ec == bhttp::error::header_limit) return answer(Response::text(431, "request header fields too large"), true);
        if (ec == bhttp::error::body_limit) return answer(Response::text(413, "payload too large"), true);
        const bool malformed = ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category();
        if (!malformed || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return close();
        answer(Response::text(400, "malformed request"), true);
    }

    void dispatch() {
        auto& msg = parser_->get();
        Request req;
        req.method = std::string(msg.method_string());
        const std::string_view target = msg.target();
        const auto q = target.find('?');
        req.path = std::string(target.substr(0, q));
        if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
        for (const auto& f : msg) req.headers.emplace_back(lower(f.name_string()), std::string(f.value()));
        req.body = std::move(msg.body());
        req.peerIp = peerIp_;
        req.clientIp = clientAddress(peerIp_, req, server_->proxies);
        keepAlive_ = msg.keep_alive();
        head_ = msg.method() == bhttp::verb::head;
        auto self = this->shared_from_this();
        auto once = std::make_shared<std::atomic<bool>>(false);
        Reply reply = [self, once](Response r) {
            if (once->exchange(true)) return;
            asio::post(self->lowest().get_executor(), [self, r = std::move(r)]() mutable {
                const bool closeAfter = r.close;
                self->answer(std::move(r), closeAfter);
            });
        };
        try {
            server_->serve(req, std::move(reply));
        } catch (const std::exception& e) {
            log::error(std::string("http: a handler failed: ") + e.what());
            if (!once->exchange(true)) answer(Response::text(500, "internal error"), true);
        }
    }

    void answer(Response r, bool closeAfter) {
        if (closed_) return;
        res_ = {};
        res_.version(11);
        res_.result(static_cast<unsigned>(r.status));
        res_.set(bhttp::field::content_type, r.contentType);
        for (auto& [name, value] : r.headers) res_.insert(name, value);
        res_.body() = std::move(r.body);
        keepAlive_ = keepAlive_ && !closeAfter && !server_->stopped;
        res_.keep_alive(keepAlive_);
        res_.prepare_payload();
        if (head_) res_.body().clear();  // Content-Length stays that of the GET's body
        lowest().expires_after(server_->limits.writeTimeout);
        auto self = this->shared_from_this();
        const bool unread = closeAfter && (!parser_ || !parser_->is_done());
        bhttp::async_write(stream_, res_, [self, unread](const error_code& ec, std::size_t) {
            if (ec) return self->close();
            if (unread) return self->linger();
            if (!self->keepAlive_) return self->close();
            self->awaitNext();
        });
    }

    // After refusing a request whose rest is still coming (a huge header, a
    // body over the limit): stop sending, then read and drop what arrives for
    // a moment before closing. Closing at once with unread data makes the
    // kernel send a reset, which can destroy our answer before the client
    // reads it.
    void linger() {
        error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        lowest().expires_after(std::chrono::seconds(2));
        drain();
    }

    void drain() {
        auto self = this->shared_from_this();
        lowest().async_read_some(asio::buffer(discard_), [self](const error_code& ec, std::size_t n) {
            self->drained_ += n;
            if (ec || self->drained_ > kMaxDrain) return self->close();
            self->drain();
        });
    }
    static constexpr std::size_t kMaxDrain = 4 * 1024 * 1024;

    std::shared_ptr<Server::Impl> server_;
    std::shared_ptr<asio::ssl::context> ctx_;  // outlives stream_'s use of it
    Stream stream_;
    std::string peerIp_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    bhttp::response<bhttp::string_body> res_;
    std::chrono::steady_clock::time_point started_{};
    bool keepAlive_ = false;
    bool head_ = false;  // the request being answered is a HEAD
    bool closed_ = false;
    std::array<char, 16384> discard_{};
    std::size_t drained_ = 0;
};

}  // namespace

void Server::Impl::accept(tcp::acceptor& acceptor) {
    acceptor.async_accept([self = shared_from_this(), &acceptor](const error_code& ec, tcp::socket socket) {
        if (self->stopped) return;
        if (ec) {
            if (ec == asio::error::operation_aborted) return;
            // EMFILE and the like: the connection waits in the backlog; retrying at once would spin.
            self->refusals.warning("http: accept failed: " + ec.message());
            auto timer = std::make_shared<asio::steady_timer>(self->io, std::chrono::milliseconds(100));
            timer->async_wait([self, timer, &acceptor](const error_code& e) {
                if (!e && !self->stopped) self->accept(acceptor);
            });
            return;
        }
        self->admit(std::move(socket));
        self->accept(acceptor);
    });
}

void Server::Impl::admit(tcp::socket socket) {
    error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (ec) return;
    const std::string ip = addressText(remote.address());
    if (total >= limits.maxConnections || perIp[ip] >= limits.maxConnectionsPerIp) {
        if (perIp[ip] == 0) perIp.erase(ip);
        refusals.warning("http: connection from " + ip + " refused (" +
                         (total >= limits.maxConnections ? "max_connections" : "max_connections_per_ip") + " reached)");
        socket.close(ec);
        return;
    }
    socket.set_option(tcp::no_delay(true), ec);  // a response is one write: Nagle would only delay it
    ++perIp[ip];
    ++total;
    if (tls) {
        auto s = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(shared_from_this(), ip, std::move(socket), *ssl);
        sessions.emplace(s.get(), s);
        s->start(ssl);
    } else {
        auto s = std::make_shared<Session<beast::tcp_stream>>(shared_from_this(), ip, std::move(socket));
        sessions.emplace(s.get(), s);
        s->start(nullptr);
    }
}

void Server::Impl::serve(Request& request, Reply reply) const {
    auto match = router->find(request.method, request.path);
    if (match.handler == nullptr) {
        if (!match.allow.empty()) {
            auto r = Response::text(405, "method not allowed");
            r.headers.emplace_back("Allow", match.allow);
            return reply(std::move(r));
        }
        return reply(Response::text(404, "not found"));
    }
    request.params = std::move(match.params);
    (*match.handler)(request, std::move(reply));
}

// ---- Request, Response, Router ----

std::optional<std::string> Request::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return v;
    return std::nullopt;
}

std::size_t Request::headerCount(std::string_view name) const {
    return static_cast<std::size_t>(
        std::count_if(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); }));
}

std::optional<std::string> Request::queryParam(std::string_view name) const {
    std::string_view rest = query;
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        const auto eq = pair.find('=');
        if (percentDecode(pair.substr(0, eq)) == name)
            return eq == std::string_view::npos ? std::string() : percentDecode(pair.substr(eq + 1));
    }
    return std::nullopt;
}

Response Response::text(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body) + "\n";
    return r;
}

void Router::add(std::string method, std::string pattern, Handler handler) {
    for (const auto& r : routes_)
        if (r.method == method && r.pattern == pattern) throw std::logic_error("route added twice: " + method + " " + pattern);
    Route r{std::move(method), pattern, splitPath(pattern), std::move(handler)};
    routes_.push_back(std::move(r));
}

Router::Match Router::find(std::string_view method, std::string_view path) const {
    Match out = match(method, path);
    // HEAD is GET without the body (RFC 9110 9.3.2), unless a route says otherwise.
    if (out.handler == nullptr && method == "HEAD")
        if (Match get = match("GET", path); get.handler != nullptr) return get;
    return out;
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
    Match out;
    const auto segments = splitPath(path);
    for (const auto& r : routes_) {
        if (r.segments.size() != segments.size()) continue;
        std::map<std::string, std::string> params;
        bool ok = true;
        for (std::size_t i = 0; ok && i < segments.size(); ++i) {
            const auto& p = r.segments[i];
            const bool param = p.size() > 2 && p.front() == '{' && p.back() == '}';
            if (!param)
                ok = p == segments[i];
            else if (segments[i].empty())
                ok = false;
            else
                params[p.substr(1, p.size() - 2)] = percentDecode(segments[i]);
        }
        if (!ok) continue;
        if (r.method == method) {
            out.handler = &r.handler;
            out.params = std::move(params);
            out.allow.clear();
            return out;
        }
        const auto allow = [&out](const std::string& m) {
            if (out.allow.find(m) == std::string::npos) out.allow += (out.allow.empty() ? "" : ", ") + m;
        };
        allow(r.method);
        if (r.method == "GET") allow("HEAD");
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> Router::routes() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& r : routes_) out.emplace_back(r.method, r.pattern);
    return out;
}

// ---- client addresses ----

bool trustedProxy(const std::string& ip, const std::vector<std::string>& proxies) {
    const auto addr = parseAddress(ip);
    if (!addr) return false;
    for (const auto& p : proxies) {
        const auto slash = p.find('/');
        error_code ec;
        if (slash == std::string::npos) {
            const auto a = parseAddress(p);
            if (a && *a == *addr) return true;
            continue;
        }
        if (addr->is_v4()) {
            const auto net = asio::ip::make_network_v4(p, ec);
            if (!ec && net.canonical() == asio::ip::network_v4(addr->to_v4(), net.prefix_length()).canonical()) return true;
        } else {
            const auto net = asio::ip::make_network_v6(p, ec);
            if (!ec && net.canonical() == asio::ip::network_v6(addr->to_v6(), net.prefix_length()).canonical()) return true;
        }
    }
    return false;
}

std::string clientAddress(const std::string& peerIp, const Request& request, const std::vector<std::string>& proxies) {
    if (proxies.empty() || !trustedProxy(peerIp, proxies)) return peerIp;
    // Every hop a proxy added, oldest first; the last one not ours is the client.
    std::vector<std::string> hops;
    for (const auto& [name, value] : request.headers) {
        if (name == "x-forwarded-for") {
            std::string_view rest = value;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                std::string_view item = rest.substr(0, comma);
                rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
                while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
                while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
                hops.emplace_back(item);
            }
        } else if (name == "forwarded") {
            std::string_view rest = value;
            std::size_t pos = 0;
            const std::string low = lower(value);
            while ((pos = low.find("for=", pos)) != std::string::npos) {
                pos += 4;
                std::size_t end = low.find_first_of(";,", pos);
                std::string_view item = rest.substr(pos, end == std::string::npos ? std::string_view::npos : end - pos);
                if (!item.empty() && item.front() == '"') item.remove_prefix(1);
                if (!item.empty() && item.back() == '"') item.remove_suffix(1);
                hops.emplace_back(item);
            }
        }
    }
    for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
        const auto a = parseAddress(*it);
        if (!a) return peerIp;  // a hop we cannot read: nothing before it can be trusted
        const std::string text = a->to_string();
        if (!trustedProxy(text, proxies)) return text;
    }
    return peerIp;
}

// ---- Server ----

Server::Server(asio::io_context& io, Limits limits, std::shared_ptr<const Router> router,
               std::vector<std::string> trustedProxies, std::optional<TlsSettings> tls)
    : impl_(std::make_shared<Impl>(io, limits, std::move(router), std::move(trustedProxies), std::move(tls))) {
    if (impl_->tls) impl_->ssl = makeTlsContext(*impl_->tls);
}

Server::~Server() { stop(); }

void Server::listen(const std::string& address) {
    std::string host = address;
    std::string port;
    if (!address.empty() && address.front() == '[') {
        const auto close = address.find("]:");
        if (close == std::string::npos) throw std::runtime_error("[http] listen address " + address + " has no port");
        host = address.substr(1, close - 1);
        port = address.substr(close + 2);
    } else {
        const auto colon = address.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("[http] listen address " + address + " has no port");
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
    }
    int p = 0;
    try {
        p = std::stoi(port);
    } catch (const std::exception&) {
        throw std::runtime_error("[http] listen address " + address + " has no valid port");
    }
    listen(host, p);
}

void Server::listen(const std::string& host, int port) {
    error_code ec;
    const auto addr = asio::ip::make_address(host, ec);
    if (ec || port < 0 || port > 65535) throw std::runtime_error("cannot listen on " + host + " port " + std::to_string(port) + ": not an address");
    const tcp::endpoint ep(addr, static_cast<unsigned short>(port));
    auto acceptor = std::make_unique<tcp::acceptor>(impl_->io);
    acceptor->open(ep.protocol(), ec);
    // Not SO_REUSEPORT: a second daemon must fail to bind, not share our traffic.
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && addr.is_v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + host + " port " + std::to_string(port) + ": " + ec.message());
    impl_->ports.push_back(acceptor->local_endpoint().port());
    impl_->accept(*acceptor);
    impl_->acceptors.push_back(std::move(acceptor));
}

std::vector<int> Server::ports() const { return impl_->ports; }

void Server::reloadTls() {
    if (impl_->tls) impl_->ssl = makeTlsContext(*impl_->tls);
}

void Server::stopAccepting() {
    error_code ignored;
    for (auto& a : impl_->acceptors) a->close(ignored);
}

void Server::stop() {
    if (impl_->stopped) return;
    impl_->stopped = true;
    error_code ignored;
    for (auto& a : impl_->acceptors) a->close(ignored);
    auto sessions = impl_->sessions;
    for (auto& [raw, weak] : sessions)
        if (auto s = weak.lock()) s->close();
}

int Server::connections() const { return impl_->total; }

}  // namespace twofactor::http
