// The HTTPS API's parts that need no daemon: routing, client addresses behind
// proxies, API key format and hashing, problem statuses, the route table
// against the OpenAPI document, and the listener's limits on plain HTTP
// (header size and count, body size, per-IP and total connections, the
// header, body and idle deadlines).
#include "http/apikey.hpp"
#include "http/problem.hpp"
#include "http/server.hpp"
#include "server/server.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

using namespace twofactor;

namespace {

SecretBytes hashKey() {
    const char k[] = "0123456789abcdef0123456789abcdef";
    return SecretBytes(k, 32);
}

http::Request withHeaders(std::vector<std::pair<std::string, std::string>> headers) {
    http::Request r;
    r.headers = std::move(headers);
    return r;
}

// A connection from `from` (any 127.0.0.0/8 address reaches the loopback
// listener, so a test can be several clients), with a receive timeout.
int connectFrom(const char* from, int port, int timeoutSeconds = 5) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{timeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, from, &local.sin_addr) == 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    return fd;
}

// What arrives until the server closes or resets the connection, or that
// and "timeout" when it does neither within the receive timeout.
std::string untilClosed(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return out;
        if (n < 0) return out + "timeout";
        out.append(buf, static_cast<std::size_t>(n));
    }
}

// One exchange over plain TCP: what the server answered before it closed.
std::string roundTrip(int port, const std::string& data) {
    const int fd = connectFrom("127.0.0.1", port, 10);
    (void)::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

const std::string kEcho = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";

}  // namespace

TEST_CASE("The listener's limits: connections per IP and in total, the body and idle deadlines", "[http]") {
    asio::io_context io;
    auto router = std::make_shared<http::Router>();
    router->add("POST", "/echo", [](http::Request& req, http::Reply reply) {
        reply(http::Response::text(200, std::to_string(req.body.size())));
    });
    http::Limits limits;
    limits.maxConnectionsPerIp = 2;
    limits.maxConnections = 3;
    limits.headerTimeout = std::chrono::milliseconds(5000);
    limits.bodyTimeout = std::chrono::milliseconds(600);
    limits.idleTimeout = std::chrono::milliseconds(400);
    http::Server server(io, limits, router);
    server.listen("127.0.0.1", 0);
    const int port = server.ports().front();
    std::thread t([&] { io.run(); });
    const auto closeAll = [&](std::vector<int>& fds) {
        for (int fd : fds) ::close(fd);
        fds.clear();
        for (int i = 0; i < 200 && server.connections() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        REQUIRE(server.connections() == 0);
    };

    // Two held from one address: a third from it is closed unanswered; another address still gets in.
    std::vector<int> held = {connectFrom("127.0.0.1", port), connectFrom("127.0.0.1", port)};
    const int third = connectFrom("127.0.0.1", port);
    (void)::send(third, kEcho.data(), kEcho.size(), MSG_NOSIGNAL);
    CHECK(untilClosed(third).empty());
    ::close(third);
    const int other = connectFrom("127.0.0.2", port);
    held.push_back(other);
    // Three in all: a fourth address is refused too, by the total.
    const int fourth = connectFrom("127.0.0.3", port);
    (void)::send(fourth, kEcho.data(), kEcho.size(), MSG_NOSIGNAL);
    CHECK(untilClosed(fourth).empty());
    ::close(fourth);
    // The one let in is served.
    (void)::send(other, kEcho.data(), kEcho.size(), MSG_NOSIGNAL);
    std::string answer;
    char buf[512];
    while (answer.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(other, buf, sizeof(buf), 0);
        REQUIRE(n > 0);
        answer.append(buf, static_cast<std::size_t>(n));
    }
    CHECK(answer.starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: closed at the idle deadline (well before the 5 s receive timeout).
    answer = untilClosed(other);
    CHECK(answer.find("timeout") == std::string::npos);
    closeAll(held);

    // A body that trickles in is cut at the body deadline, however steadily it comes.
    const int slow = connectFrom("127.0.0.1", port);
    const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n";
    (void)::send(slow, head.data(), head.size(), MSG_NOSIGNAL);
    bool cut = false;
    for (int i = 0; i < 20 && !cut; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        cut = ::send(slow, "a", 1, MSG_NOSIGNAL) < 0;
        char c;
        if (!cut) cut = ::recv(slow, &c, 1, MSG_DONTWAIT) == 0;
    }
    CHECK(cut);
    ::close(slow);
    // And the listener serves on.
    CHECK(roundTrip(port, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
              .starts_with("HTTP/1.1 200"));

    io.stop();
    t.join();
    server.stop();
}

TEST_CASE("Router matches patterns, names parameters and knows 405", "[http]") {
    http::Router router;
    int hit = 0;
    router.add("GET", "/v1/verifications/{id}", [&](http::Request&, http::Reply) { hit = 1; });
    router.add("POST", "/v1/verifications/{id}/cancel", [&](http::Request&, http::Reply) { hit = 2; });
    CHECK_THROWS_AS(router.add("GET", "/v1/verifications/{id}", {}), std::logic_error);

    auto m = router.find("GET", "/v1/verifications/abc%20d");
    REQUIRE(m.handler != nullptr);
    CHECK(m.params.at("id") == "abc d");
    m = router.find("POST", "/v1/verifications/x/cancel");
    REQUIRE(m.handler != nullptr);
    m = router.find("DELETE", "/v1/verifications/x");
    CHECK(m.handler == nullptr);
    CHECK(m.allow == "GET, HEAD");
    // HEAD is served by the GET route, with its parameters.
    m = router.find("HEAD", "/v1/verifications/abc");
    REQUIRE(m.handler != nullptr);
    http::Request head;
    (*m.handler)(head, [](http::Response) {});
    CHECK(hit == 1);
    CHECK(m.params.at("id") == "abc");
    m = router.find("HEAD", "/v1/verifications/x/cancel");
    CHECK(m.handler == nullptr);
    CHECK(m.allow == "POST");
    m = router.find("GET", "/v1/verifications");
    CHECK(m.handler == nullptr);
    CHECK(m.allow.empty());
    m = router.find("GET", "/v1/verifications/x/extra");
    CHECK(m.handler == nullptr);
}

TEST_CASE("Client addresses come from trusted proxies only", "[http]") {
    const std::vector<std::string> proxies = {"10.0.0.0/8", "2001:db8::1"};
    CHECK(http::trustedProxy("10.1.2.3", proxies));
    CHECK(http::trustedProxy("::ffff:10.1.2.3", proxies));
    CHECK_FALSE(http::trustedProxy("11.1.2.3", proxies));
    CHECK(http::trustedProxy("2001:db8::1", proxies));
    CHECK_FALSE(http::trustedProxy("2001:db8::2", proxies));

    const auto xff = withHeaders({{"x-forwarded-for", "198.51.100.9, 203.0.113.5, 10.0.0.2"}});
    // From a stranger: the header is ignored.
    CHECK(http::clientAddress("192.0.2.1", xff, proxies) == "192.0.2.1");
    // From our proxy: the right-most address that is not ours (a client cannot prepend its way in).
    CHECK(http::clientAddress("10.0.0.1", xff, proxies) == "203.0.113.5");
    CHECK(http::clientAddress("10.0.0.1", withHeaders({{"forwarded", "for=\"[2001:db8::77]:4711\";proto=https"}}), proxies) ==
          "2001:db8::77");
    CHECK(http::clientAddress("10.0.0.1", withHeaders({{"x-forwarded-for", "garbage"}}), proxies) == "10.0.0.1");
    CHECK(http::clientAddress("10.0.0.1", withHeaders({}), proxies) == "10.0.0.1");
    CHECK(http::clientAddress("10.0.0.1", xff, {}) == "10.0.0.1");
}

TEST_CASE("API keys: typed prefix, checksum, keyed hash", "[http]") {
    const auto key = hashKey();
    const auto issued = http::issueApiKey(key);
    const std::string token(issued.token.view());
    CHECK(token.starts_with("tfk_" + issued.id + "_"));
    CHECK(token.size() == 4 + 16 + 1 + 52 + 8);
    CHECK(issued.secretHash.size() == 64);
    CHECK(token.find(issued.secretHash) == std::string::npos);

    const auto parsed = http::parseApiKey(token);
    REQUIRE(parsed);
    CHECK(parsed->id == issued.id);
    store::ApiKey stored;
    stored.id = issued.id;
    stored.secretHash = issued.secretHash;
    CHECK(http::apiKeyMatches(key, stored, *parsed));
    // Another hash key (another daemon's pepper) does not match.
    const char other[] = "ffffffffffffffffffffffffffffffff";
    CHECK_FALSE(http::apiKeyMatches(SecretBytes(other, 32), stored, *parsed));

    // Every single-character change fails the checksum before any lookup.
    for (std::size_t i = 4; i < token.size(); i += 7) {
        std::string t = token;
        t[i] = t[i] == 'a' ? 'b' : 'a';
        if (t[i] == token[i]) continue;
        CHECK_FALSE(http::parseApiKey(t));
    }
    CHECK_FALSE(http::parseApiKey(""));
    CHECK_FALSE(http::parseApiKey("ghp_" + token.substr(4)));
    CHECK_FALSE(http::parseApiKey(token + "x"));
    CHECK(http::issueApiKey(key).id != issued.id);
}

TEST_CASE("Problems carry the IDL error, its parameters and Retry-After", "[http]") {
    CHECK(http::problemStatus("io.twofactor.Otp.RateLimited") == 429);
    CHECK(http::problemStatus("NoSuchRequest") == 404);
    CHECK(http::problemStatus("org.varlink.service.InvalidParameter") == 400);
    CHECK(http::problemStatus("io.twofactor.Daemon.Busy") == 503);
    const auto r = http::problem("io.twofactor.Otp.RateLimited", {{"scope", "destination"}, {"retryAfter", 42}}, "slow down");
    CHECK(r.status == 429);
    CHECK(r.contentType == "application/problem+json");
    const auto body = nlohmann::json::parse(r.body);
    CHECK(body["type"] == "urn:twofactor:error:io.twofactor.Otp.RateLimited");
    CHECK(body["title"] == "RateLimited");
    CHECK(body["retryAfter"] == 42);
    CHECK(body["scope"] == "destination");
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0] == std::make_pair(std::string("Retry-After"), std::string("42")));
}

TEST_CASE("Every route is in the OpenAPI document and the document has no others", "[http]") {
    std::set<std::string> served;
    for (const auto& [method, pattern] : server::httpRoutes(config::Config{}))
        if (pattern != "/metrics") served.insert(method + " " + pattern);
    std::ifstream in(std::string(TWOFACTOR_SOURCE_DIR) + "/lib/http/openapi.json");
    REQUIRE(in);
    const auto doc = nlohmann::json::parse(in);
    std::set<std::string> documented;
    for (const auto& [path, ops] : doc.at("paths").items())
        for (const auto& [method, op] : ops.items()) {
            std::string upper = method;
            for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            documented.insert(upper + " " + path);
        }
    CHECK(served == documented);
    CHECK(served.size() >= 6);
}

TEST_CASE("The listener's limits: header size and count, body, duplicate length, per-IP", "[http]") {
    asio::io_context io;
    auto router = std::make_shared<http::Router>();
    router->add("POST", "/echo", [](http::Request& req, http::Reply reply) {
        reply(http::Response::text(200, std::to_string(req.body.size())));
    });
    http::Limits limits;
    limits.maxHeaderBytes = 2048;
    limits.maxHeaderCount = 10;
    limits.maxBodyBytes = 1024;
    limits.maxConnectionsPerIp = 2;
    limits.headerTimeout = std::chrono::milliseconds(500);
    limits.idleTimeout = std::chrono::milliseconds(500);
    http::Server server(io, limits, router);
    server.listen("127.0.0.1", 0);
    const int port = server.ports().front();
    std::thread t([&] { io.run(); });

    const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    CHECK(roundTrip(port, head + "Content-Length: 3\r\n\r\nabc").starts_with("HTTP/1.1 200"));
    CHECK(roundTrip(port, head + "X-Pad: " + std::string(4096, 'a') + "\r\n\r\n").starts_with("HTTP/1.1 431"));
    std::string many;
    for (int i = 0; i < 12; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
    CHECK(roundTrip(port, head + many + "\r\n").starts_with("HTTP/1.1 431"));
    CHECK(roundTrip(port, head + "Content-Length: 2000\r\n\r\n").starts_with("HTTP/1.1 413"));
    CHECK(roundTrip(port, head + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").starts_with("HTTP/1.1 400"));
    // The same length twice is not a conflict.
    CHECK(roundTrip(port, head + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc").starts_with("HTTP/1.1 200"));
    CHECK(roundTrip(port, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 405"));
    CHECK(roundTrip(port, "GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 404"));
    // A client that never finishes its headers is cut at the deadline: the exchange ends with nothing.
    CHECK(roundTrip(port, "POST /echo HTTP/1.1\r\nHost: x\r\n").empty());

    io.stop();
    t.join();
    server.stop();
}
