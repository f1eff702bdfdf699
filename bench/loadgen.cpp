// twofactor-loadgen: drives send+verify pairs through a running twofactord.
//
// N client threads, each with its own connection (ipc::Client), take pair
// numbers from a shared counter until --pairs are done or --duration has
// passed. One pair is: io.twofactor.Otp.Send to user<N>@example.org, reading
// the code from the outbox file the daemon wrote (DIR/new/*.<id>.1.*.msg),
// then io.twofactor.Otp.Verify with that code. The pair latency covers all
// three steps. Consumed outbox files are unlinked (as a mail pick-up would),
// so the directory scan stays short; --keep leaves them.
//
// --send-only: each step is just the Send (no outbox read, no Verify), for a
// daemon whose email goes to a provider (e.g. twofactor-mock-ses). The Send
// waits for the provider's answer unless --no-wait (wait = false: it returns
// once the request is stored; the daemon delivers in the background).
// --mock-port P: read the mock's counter (GET /_bench/stats on 127.0.0.1:P)
// before and after, wait (at most --drain-timeout) until it has accepted one
// delivery per successful send, and report deliveries/s = accepted deliveries
// / (the mock's last accepted request - the start of the run). Send-only runs
// also count the run's attempts in the delivery log (io.twofactor.Otp.Deliveries).
//
// --socket and --outbox may be given several times (one daemon each, e.g.
// cluster nodes on one PostgreSQL): client thread i uses the i-th socket
// modulo their number, and the outbox of the same position, so a code is
// read where the node that sent it wrote it.
//
// --https HOST:PORT: the pairs go over the HTTPS API instead (POST
// /v1/apps/APP/verifications, then POST /v1/apps/APP/verification-check),
// one kept-alive TLS 1.3 connection per client thread, the server's
// certificate verified against --ca for HOST (an IP address), the API key
// read from --api-key-file (never argv). The code is read from the outbox
// as in the Varlink mode.
//
// Output: a human-readable summary and one "RESULT key=value ..." line for scripts.
#include "ipc/client.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using twofactor::ipc::Client;
using twofactor::ipc::Reply;

struct Options {
    std::vector<std::string> sockets;
    std::vector<std::string> outboxes;
    std::string https;          // HOST:PORT of the HTTPS API, empty = Varlink
    std::string ca;             // the CA that signed the server's certificate
    std::string apiKeyFile;     // a file holding the API key (tfk_...)
    std::string app = "default";
    std::string domain = "example.org";
    int clients = 16;
    long pairs = 5000;
    double duration = 0;        // seconds; 0 = no time limit (--pairs bounds the run)
    double fileTimeout = 5.0;   // seconds to wait for a message file
    bool keep = false;
    bool sendOnly = false;      // Send only: no outbox file, no Verify
    bool noWait = false;        // Send with wait = false (implies sendOnly)
    int mockPort = 0;           // twofactor-mock-ses on 127.0.0.1:PORT, 0 = none
    double drainTimeout = 60;   // seconds to wait for the mock to see every delivery
};

struct ThreadResult {
    std::vector<std::int64_t> pairUs, sendUs, fileUs, verifyUs;
    long errors = 0;
    std::string firstError;
    std::string lastId;
    long reconnects = 0;                      // HTTPS: connections the server closed and were opened again
    std::vector<std::string> ids;             // send-only: every request sent
    std::map<std::string, long> deliveries;   // send-only: the Send reply's "delivery"
};

void fail(ThreadResult& r, std::string what) {
    ++r.errors;
    if (r.firstError.empty()) r.firstError = std::move(what);
}

std::int64_t micros(Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

bool wordChar(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// The first run of 4..10 digits after the header/body separator that stands
// alone (not part of a word: the MIME boundary carries the request id, whose
// alphabet includes digits 2-7).
std::optional<std::string> extractCode(const std::string& message) {
    std::size_t pos = message.find("\n\n");
    if (pos == std::string::npos) return std::nullopt;
    for (std::size_t i = pos + 2; i < message.size(); ++i) {
        if (message[i] < '0' || message[i] > '9') continue;
        std::size_t j = i;
        while (j < message.size() && message[j] >= '0' && message[j] <= '9') ++j;
        const bool boundedLeft = !wordChar(message[i - 1]);
        const bool boundedRight = j == message.size() || !wordChar(message[j]);
        const std::size_t n = j - i;
        if (boundedLeft && boundedRight && n >= 4 && n <= 10) return message.substr(i, n);
        i = j;
    }
    return std::nullopt;
}

// Finds DIR/<...>.<id>.1.<...>, reads it and (unless keep) unlinks it.
std::optional<std::string> takeMessage(const std::string& dir, const std::string& id, bool keep, double timeout) {
    const std::string needle = "." + id + ".1.";
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
    for (;;) {
        std::string found;
        if (DIR* d = ::opendir(dir.c_str())) {
            while (dirent* e = ::readdir(d)) {
                std::string_view name(e->d_name);
                if (name.find(needle) != std::string_view::npos && name.size() > 4 &&
                    name.substr(name.size() - 4) == ".msg") {
                    found = dir + "/" + e->d_name;
                    break;
                }
            }
            ::closedir(d);
        }
        if (!found.empty()) {
            std::ifstream in(found, std::ios::binary);
            std::ostringstream ss;
            ss << in.rdbuf();
            if (!keep) ::unlink(found.c_str());
            return ss.str();
        }
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}


// One kept-alive TLS connection to the HTTPS API: blocking, one request at a
// time, responses framed by Content-Length (the server never chunks its JSON).
class HttpsConnection {
  public:
    HttpsConnection(SSL_CTX* ctx, std::string host, int port) : ctx_(ctx), host_(std::move(host)), port_(port) {}
    HttpsConnection(const HttpsConnection&) = delete;
    HttpsConnection& operator=(const HttpsConnection&) = delete;
    ~HttpsConnection() { close(); }

    [[nodiscard]] bool open(std::string& error) {
        close();
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port_));
        if (fd_ < 0 || ::inet_pton(AF_INET, host_.c_str(), &a.sin_addr) != 1 ||
            ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            error = "connect to " + host_ + ":" + std::to_string(port_) + " failed";
            close();
            return false;
        }
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{30, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssl_ = SSL_new(ctx_);
        SSL_set_fd(ssl_, fd_);
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host_.c_str());
        if (SSL_connect(ssl_) != 1) {
            char buf[256];
            ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
            error = std::string("TLS handshake failed: ") + buf;
            close();
            return false;
        }
        if (SSL_version(ssl_) != TLS1_3_VERSION) {
            error = std::string("negotiated ") + SSL_get_version(ssl_) + ", not TLSv1.3";
            close();
            return false;
        }
        return true;
    }

    void close() {
        if (ssl_) {
            SSL_shutdown(ssl_);
            SSL_free(ssl_);
            ssl_ = nullptr;
        }
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        buffer_.clear();
    }

    // POST PATH with a JSON body; the status and the body. Opens the
    // connection again when the server closed it (counted in reopened).
    [[nodiscard]] bool post(const std::string& path, const std::string& auth, const std::string& body, int& status,
                            std::string& out, std::string& error, long& reopened) {
        if (!ssl_) {
            if (!open(error)) return false;
            ++reopened;
        }
        const std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + host_ + "\r\nAuthorization: Bearer " + auth +
                                "\r\nContent-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
        if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) != static_cast<int>(req.size())) {
            error = "TLS write failed";
            close();
            return false;
        }
        std::size_t end;
        while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
            if (!fill(error)) return false;
        const std::string head = buffer_.substr(0, end + 2);
        buffer_.erase(0, end + 4);
        if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12) {
            error = "not an HTTP/1.1 response";
            close();
            return false;
        }
        status = std::atoi(head.c_str() + 9);
        std::size_t length = 0;
        bool closeAfter = false;
        for (std::size_t pos = head.find("\r\n") + 2; pos < head.size();) {
            const std::size_t eol = head.find("\r\n", pos);
            std::string line = head.substr(pos, eol - pos);
            pos = eol + 2;
            std::string lower = line;
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
            if (lower.rfind("content-length:", 0) == 0) length = std::strtoul(line.c_str() + 15, nullptr, 10);
            if (lower.rfind("transfer-encoding:", 0) == 0) {
                error = "chunked response";
                close();
                return false;
            }
            if (lower.rfind("connection:", 0) == 0 && lower.find("close") != std::string::npos) closeAfter = true;
        }
        while (buffer_.size() < length)
            if (!fill(error)) return false;
        out = buffer_.substr(0, length);
        buffer_.erase(0, length);
        if (closeAfter) close();
        return true;
    }

  private:
    bool fill(std::string& error) {
        char buf[16384];
        const int n = SSL_read(ssl_, buf, sizeof buf);
        if (n <= 0) {
            error = "connection closed by the server";
            close();
            return false;
        }
        buffer_.append(buf, static_cast<std::size_t>(n));
        return true;
    }

    SSL_CTX* ctx_;
    std::string host_;
    int port_;
    int fd_ = -1;
    SSL* ssl_ = nullptr;
    std::string buffer_;
};

// The two ways a pair can go: the Varlink socket, or the HTTPS API.
class Transport {
  public:
    virtual ~Transport() = default;
    [[nodiscard]] virtual bool connect(std::string& error) = 0;
    // Sends; the request id, or empty with error set (fatal: the connection is gone).
    [[nodiscard]] virtual std::string send(const std::string& destination, std::string& error, bool& fatal,
                                           std::string& delivery) = 0;
    // Checks the code; true if approved.
    [[nodiscard]] virtual bool verify(const std::string& id, const std::string& code, std::string& error,
                                      bool& fatal) = 0;
};

class VarlinkTransport final : public Transport {
  public:
    VarlinkTransport(const Options& o, std::string socket) : o_(o), socket_(std::move(socket)) {}
    bool connect(std::string& error) override { return Client::connect(socket_, client_, error); }
    std::string send(const std::string& destination, std::string& error, bool& fatal, std::string& delivery) override {
        Reply reply;
        nlohmann::json sendParams = {{"app", o_.app}, {"destination", destination}};
        if (o_.noWait) sendParams["wait"] = false;
        if (!client_.call("io.twofactor.Otp.Send", sendParams, reply, error)) {
            error = "Send: " + error;
            fatal = true;
            return {};
        }
        if (reply.error) {
            error = "Send: " + *reply.error + " " + reply.parameters.dump();
            return {};
        }
        try {
            delivery = reply.parameters.value("delivery", std::string("?"));
            return reply.parameters.at("request").at("id").get<std::string>();
        } catch (const std::exception& e) {
            error = std::string("Send: reply without request.id: ") + e.what();
            return {};
        }
    }
    bool verify(const std::string& id, const std::string& code, std::string& error, bool& fatal) override {
        Reply reply;
        if (!client_.call("io.twofactor.Otp.Verify", {{"id", id}, {"code", code}}, reply, error)) {
            error = "Verify: " + error;
            fatal = true;
            return false;
        }
        if (reply.error) {
            error = "Verify: " + *reply.error + " " + reply.parameters.dump();
            return false;
        }
        if (!reply.parameters.value("approved", false)) {
            error = "Verify: not approved: " + reply.parameters.dump();
            return false;
        }
        return true;
    }

  private:
    const Options& o_;
    std::string socket_;
    Client client_;
};

class HttpsTransport final : public Transport {
  public:
    HttpsTransport(const Options& o, SSL_CTX* ctx, const std::string& host, int port, const std::string& key,
                   long& reconnects)
        : o_(o), conn_(ctx, host, port), key_(key), reconnects_(reconnects) {}
    bool connect(std::string& error) override { return conn_.open(error); }
    std::string send(const std::string& destination, std::string& error, bool& fatal, std::string& delivery) override {
        int status = 0;
        std::string body;
        if (!conn_.post("/v1/apps/" + o_.app + "/verifications", key_, nlohmann::json{{"to", destination}}.dump(),
                        status, body, error, reconnects_)) {
            error = "POST verifications: " + error;
            fatal = true;
            return {};
        }
        const auto j = nlohmann::json::parse(body, nullptr, false);
        if (status != 201 || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
            error = "POST verifications: " + std::to_string(status) + " " + body;
            return {};
        }
        delivery = j.value("delivery", std::string("?"));
        return j["id"].get<std::string>();
    }
    bool verify(const std::string& id, const std::string& code, std::string& error, bool& fatal) override {
        int status = 0;
        std::string body;
        if (!conn_.post("/v1/apps/" + o_.app + "/verification-check", key_,
                        nlohmann::json{{"id", id}, {"code", code}}.dump(), status, body, error, reconnects_)) {
            error = "POST verification-check: " + error;
            fatal = true;
            return false;
        }
        const auto j = nlohmann::json::parse(body, nullptr, false);
        if (status != 200 || !j.is_object() || !j.value("approved", false)) {
            error = "POST verification-check: " + std::to_string(status) + " " + body;
            return false;
        }
        return true;
    }

  private:
    const Options& o_;
    HttpsConnection conn_;
    const std::string& key_;
    long& reconnects_;
};

void clientThread(const Options& o, Transport& transport, const std::string& newDir, std::atomic<long>& next,
                  Clock::time_point deadline, ThreadResult& r) {
    std::string error;
    if (!transport.connect(error)) {
        fail(r, error);
        return;
    }
    for (;;) {
        if (o.duration > 0 && Clock::now() >= deadline) break;
        const long n = next.fetch_add(1);
        if (n >= o.pairs) break;

        const auto t0 = Clock::now();
        bool fatal = false;
        std::string delivery;
        const std::string id = transport.send("user" + std::to_string(n) + "@" + o.domain, error, fatal, delivery);
        if (id.empty()) {
            fail(r, error);
            if (fatal) break;  // the connection is gone
            continue;
        }
        const auto t1 = Clock::now();
        if (o.sendOnly) {
            ++r.deliveries[delivery];
            r.pairUs.push_back(micros(t1 - t0));
            r.sendUs.push_back(micros(t1 - t0));
            r.ids.push_back(id);
            r.lastId = id;
            continue;
        }

        auto message = takeMessage(newDir, id, o.keep, o.fileTimeout);
        if (!message) {
            fail(r, "no outbox file for request " + id + " in " + newDir);
            continue;
        }
        auto code = extractCode(*message);
        if (!code) {
            fail(r, "no code in the outbox file of request " + id);
            continue;
        }
        const auto t2 = Clock::now();

        const bool approved = transport.verify(id, *code, error, fatal);
        const auto t3 = Clock::now();
        if (!approved) {
            fail(r, error);
            if (fatal) break;
            continue;
        }
        r.pairUs.push_back(micros(t3 - t0));
        r.sendUs.push_back(micros(t1 - t0));
        r.fileUs.push_back(micros(t2 - t1));
        r.verifyUs.push_back(micros(t3 - t2));
        r.lastId = id;
    }
}

// Nearest-rank percentile of a sorted vector, in milliseconds.
double pct(const std::vector<std::int64_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    std::size_t rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.999999);
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

struct MockStats {
    long long accepted = 0;
    std::int64_t lastNs = 0;
};

// GET /_bench/stats from twofactor-mock-ses (one request, Connection: close).
std::optional<MockStats> readMock(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        const std::string req = "GET /_bench/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
            char buf[4096];
            for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) in.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    const auto body = in.find("\r\n\r\n");
    if (in.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) return std::nullopt;
    const auto j = nlohmann::json::parse(in.substr(body + 4), nullptr, false);
    if (!j.is_object()) return std::nullopt;
    MockStats s;
    s.accepted = j.value("accepted", 0LL);
    s.lastNs = j.value("last_ns", std::int64_t{0});
    return s;
}

std::int64_t steadyNs(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"twofactor-loadgen - send+verify pairs against a running twofactord", "twofactor-loadgen"};
    app.add_option("--socket", o.sockets, "twofactord's socket; repeat it to spread the clients over several daemons");
    app.add_option("--outbox", o.outboxes,
                   "the daemon's outbox directory (the one holding new/), one per --socket in the same order; not "
                   "with --send-only");
    app.add_option("--https", o.https, "HOST:PORT of the HTTPS API (HOST an IPv4 address): pairs go over HTTPS");
    app.add_option("--ca", o.ca, "with --https: the CA file that signed the server's certificate");
    app.add_option("--api-key-file", o.apiKeyFile, "with --https: a file holding the API key (send and verify scopes)");
    app.add_option("--clients", o.clients, "concurrent client threads, one connection each")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    app.add_option("--pairs", o.pairs, "send+verify pairs in total")->check(CLI::Range(1L, 100000000L))->capture_default_str();
    app.add_option("--duration", o.duration, "stop after this many seconds even if pairs remain (0 = no limit)")
        ->check(CLI::Range(0.0, 86400.0));
    app.add_option("--app", o.app, "the app to send for")->capture_default_str();
    app.add_option("--domain", o.domain, "destinations are user<N>@DOMAIN")->capture_default_str();
    app.add_option("--file-timeout", o.fileTimeout, "seconds to wait for a message file")->capture_default_str();
    app.add_flag("--keep", o.keep, "leave consumed outbox files in place (slower: every lookup scans them all)");
    app.add_flag("--send-only", o.sendOnly, "only Send (waits for the provider's answer): no outbox, no Verify");
    app.add_flag("--no-wait", o.noWait, "Send with wait = false (returns once stored); implies --send-only");
    app.add_option("--mock-port", o.mockPort, "twofactor-mock-ses's port on 127.0.0.1: count deliveries there")
        ->check(CLI::Range(1, 65535));
    app.add_option("--drain-timeout", o.drainTimeout, "seconds to wait for the mock to see every delivery")
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (o.noWait) o.sendOnly = true;
    if (o.https.empty() && o.sockets.empty()) {
        std::fprintf(stderr, "twofactor-loadgen: --socket or --https is required\n");
        return 2;
    }
    const std::size_t endpoints = o.https.empty() ? o.sockets.size() : 1;
    if (!o.sendOnly && o.outboxes.size() != endpoints) {
        std::fprintf(stderr, "twofactor-loadgen: one --outbox per %s is required (unless --send-only or --no-wait)\n",
                     o.https.empty() ? "--socket" : "--https");
        return 2;
    }
    if (!o.https.empty() && (o.sendOnly || o.mockPort != 0)) {
        std::fprintf(stderr, "twofactor-loadgen: --https runs send+verify pairs, not --send-only, --no-wait or --mock-port\n");
        return 2;
    }
    if (o.sendOnly && o.sockets.size() != 1) {
        std::fprintf(stderr, "twofactor-loadgen: --send-only takes exactly one --socket\n");
        return 2;
    }
    // HTTPS: the key from its file, one TLS 1.3 context for every client thread.
    std::string apiKey, httpsHost;
    int httpsPort = 0;
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(nullptr, SSL_CTX_free);
    if (!o.https.empty()) {
        const auto colon = o.https.rfind(':');
        httpsHost = o.https.substr(0, colon == std::string::npos ? 0 : colon);
        httpsPort = colon == std::string::npos ? 0 : std::atoi(o.https.c_str() + colon + 1);
        if (httpsHost.empty() || httpsPort <= 0 || httpsPort > 65535) {
            std::fprintf(stderr, "twofactor-loadgen: --https must be IPV4:PORT, not \"%s\"\n", o.https.c_str());
            return 2;
        }
        std::ifstream in(o.apiKeyFile);
        std::getline(in, apiKey);
        while (!apiKey.empty() && (apiKey.back() == '\r' || apiKey.back() == ' ')) apiKey.pop_back();
        if (o.apiKeyFile.empty() || apiKey.empty()) {
            std::fprintf(stderr, "twofactor-loadgen: --https needs --api-key-file naming a file that holds the key\n");
            return 2;
        }
        ctx.reset(SSL_CTX_new(TLS_client_method()));
        if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
            SSL_CTX_load_verify_locations(ctx.get(), o.ca.empty() ? nullptr : o.ca.c_str(), nullptr) != 1) {
            std::fprintf(stderr, "twofactor-loadgen: cannot load the CA file \"%s\" (--ca)\n", o.ca.c_str());
            return 2;
        }
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    }
    std::optional<MockStats> mockBefore;
    if (o.mockPort != 0) {
        mockBefore = readMock(o.mockPort);
        if (!mockBefore) {
            std::fprintf(stderr, "twofactor-loadgen: no answer from the mock on 127.0.0.1:%d\n", o.mockPort);
            return 2;
        }
    }
    const std::time_t startUnix = std::time(nullptr);

    std::vector<std::string> newDirs;
    for (std::string newDir : o.outboxes) {
        while (newDir.size() > 1 && newDir.back() == '/') newDir.pop_back();
        if (newDir.size() < 4 || newDir.substr(newDir.size() - 4) != "/new") newDir += "/new";
        newDirs.push_back(newDir);
    }
    if (newDirs.empty()) newDirs.emplace_back();

    std::atomic<long> next{0};
    std::vector<ThreadResult> results(static_cast<std::size_t>(o.clients));
    std::vector<std::unique_ptr<Transport>> transports;
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (o.https.empty())
            transports.push_back(std::make_unique<VarlinkTransport>(o, o.sockets[i % o.sockets.size()]));
        else
            transports.push_back(
                std::make_unique<HttpsTransport>(o, ctx.get(), httpsHost, httpsPort, apiKey, results[i].reconnects));
    }
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
    for (std::size_t i = 0; i < results.size(); ++i)
        threads.emplace_back(clientThread, std::cref(o), std::ref(*transports[i]), std::cref(newDirs[i % newDirs.size()]),
                             std::ref(next), deadline, std::ref(results[i]));
    for (auto& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

    std::vector<std::int64_t> pair, send, file, verify;
    long errors = 0, reconnects = 0;
    std::string firstError, lastId;
    std::map<std::string, long> deliveries;
    for (const auto& r : results) {
        reconnects += r.reconnects;
        for (const auto& [k, v] : r.deliveries) deliveries[k] += v;
        pair.insert(pair.end(), r.pairUs.begin(), r.pairUs.end());
        send.insert(send.end(), r.sendUs.begin(), r.sendUs.end());
        file.insert(file.end(), r.fileUs.begin(), r.fileUs.end());
        verify.insert(verify.end(), r.verifyUs.begin(), r.verifyUs.end());
        errors += r.errors;
        if (firstError.empty()) firstError = r.firstError;
        if (!r.lastId.empty()) lastId = r.lastId;
    }
    for (auto* v : {&pair, &send, &file, &verify}) std::sort(v->begin(), v->end());
    const double rate = seconds > 0 ? static_cast<double>(pair.size()) / seconds : 0;

    if (o.sendOnly) {
        std::string deliveryText;
        for (const auto& [k, v] : deliveries) deliveryText += (deliveryText.empty() ? "" : ",") + k + ":" + std::to_string(v);
        // The provider's side: the mock's counter, once every send was delivered (or the drain timeout passed).
        long long delivered = -1;
        double deliverySeconds = 0, deliveryRate = 0;
        if (mockBefore) {
            const auto drainDeadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                          std::chrono::duration<double>(o.drainTimeout));
            std::optional<MockStats> now;
            for (;;) {
                now = readMock(o.mockPort);
                if (now && now->accepted - mockBefore->accepted >= static_cast<long long>(send.size())) break;
                if (Clock::now() >= drainDeadline) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            if (now) {
                delivered = now->accepted - mockBefore->accepted;
                deliverySeconds = static_cast<double>(now->lastNs - steadyNs(start)) / 1e9;
                if (delivered > 0 && deliverySeconds > 0) deliveryRate = static_cast<double>(delivered) / deliverySeconds;
            }
        }
        // The daemon's side: this run's attempts in the delivery log, read in
        // pages of at most 10000 (the newest first, then `until` = the oldest
        // second seen, which overlaps by one second; duplicates are skipped).
        long logAccepted = -1, logOther = 0;
        std::vector<std::int64_t> logMs;
        {
            Client client;
            std::string error;
            std::unordered_set<std::string> ours, seen;
            for (const auto& r : results) ours.insert(r.ids.begin(), r.ids.end());
            bool ok = Client::connect(o.sockets.front(), client, error);
            std::optional<std::int64_t> until;
            while (ok) {
                Reply reply;
                nlohmann::json p = {{"since", static_cast<std::int64_t>(startUnix)}, {"limit", 10000}};
                if (until) p["until"] = *until;
                ok = client.call("io.twofactor.Otp.Deliveries", p, reply, error);
                if (ok && reply.error) {
                    error = *reply.error + " " + reply.parameters.dump();
                    ok = false;
                }
                if (!ok) break;
                const auto attempts = reply.parameters.value("attempts", nlohmann::json::array());
                std::int64_t oldest = INT64_MAX;
                for (const auto& a : attempts) {
                    oldest = std::min(oldest, a.value("at", std::int64_t{0}));
                    const std::string rid = a.value("requestId", std::string());
                    if (!ours.count(rid)) continue;
                    if (!seen.insert(rid + "/" + std::to_string(a.value("send", 0)) + "/" +
                                     std::to_string(a.value("attempt", 0)))
                             .second)
                        continue;
                    if (a.value("outcome", std::string()) == "accepted") {
                        logMs.push_back(a.value("durationMs", std::int64_t{0}) * 1000);
                    } else {
                        ++logOther;
                    }
                }
                // A short page is the last; so is one that cannot move further back.
                if (attempts.size() < 10000 || (until && oldest + 1 >= *until)) break;
                until = oldest + 1;
            }
            if (ok) {
                logAccepted = static_cast<long>(logMs.size());
                std::sort(logMs.begin(), logMs.end());
            } else {
                std::fprintf(stderr, "twofactor-loadgen: Deliveries: %s\n", error.c_str());
            }
        }
        std::printf("twofactor-loadgen (send-only%s): %d client(s), %zu send(s) ok, %ld error(s) in %.2f s\n",
                    o.noWait ? ", wait=false" : "", o.clients, send.size(), errors, seconds);
        std::printf("  sends       %.1f /s  (p50 %.2f ms  p99 %.2f ms  max %.2f ms)  delivery: %s\n", rate,
                    pct(send, 50), pct(send, 99), pct(send, 100), deliveryText.c_str());
        if (delivered >= 0)
            std::printf("  deliveries  %.1f /s  (%lld accepted by the mock, the last %.2f s after the start)\n",
                        deliveryRate, delivered, deliverySeconds);
        if (logAccepted >= 0)
            std::printf("  delivery log: %ld accepted attempt(s), %ld other; provider call p50 %.0f ms p99 %.0f ms\n",
                        logAccepted, logOther, pct(logMs, 50), pct(logMs, 99));
        if (!firstError.empty()) std::printf("  first error: %s\n", firstError.c_str());
        std::printf("RESULT mode=%s clients=%d ok=%zu errors=%ld seconds=%.3f sends_per_s=%.1f p50_ms=%.3f p99_ms=%.3f "
                    "max_ms=%.3f delivered=%lld delivery_seconds=%.3f deliveries_per_s=%.1f log_accepted=%ld "
                    "log_other=%ld delivery=%s last_id=%s\n",
                    o.noWait ? "no-wait" : "wait", o.clients, send.size(), errors, seconds, rate, pct(send, 50),
                    pct(send, 99), pct(send, 100), delivered, deliverySeconds, deliveryRate, logAccepted, logOther,
                    deliveryText.empty() ? "-" : deliveryText.c_str(), lastId.empty() ? "-" : lastId.c_str());
        std::fflush(stdout);
        const bool allDelivered = !mockBefore || delivered >= static_cast<long long>(send.size());
        return errors == 0 && !send.empty() && allDelivered ? 0 : 1;
    }

    const std::string over = o.https.empty() ? std::to_string(o.sockets.size()) + " socket(s)" : "HTTPS " + o.https;
    std::printf("twofactor-loadgen: %d client(s) over %s, %zu pair(s) ok, %ld error(s) in %.2f s\n", o.clients,
                over.c_str(), pair.size(), errors, seconds);
    if (!o.https.empty()) std::printf("  connections reopened after the server closed them: %ld\n", reconnects);
    std::printf("  throughput  %.1f pairs/s\n", rate);
    std::printf("  pair        p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", pct(pair, 50), pct(pair, 99), pct(pair, 100));
    std::printf("    send      p50 %.2f ms  p99 %.2f ms\n", pct(send, 50), pct(send, 99));
    std::printf("    file      p50 %.2f ms  p99 %.2f ms\n", pct(file, 50), pct(file, 99));
    std::printf("    verify    p50 %.2f ms  p99 %.2f ms\n", pct(verify, 50), pct(verify, 99));
    if (!firstError.empty()) std::printf("  first error: %s\n", firstError.c_str());
    std::printf("RESULT mode=%s endpoints=%zu clients=%d ok=%zu errors=%ld seconds=%.3f pairs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
                "send_p50_ms=%.3f verify_p50_ms=%.3f reconnects=%ld last_id=%s\n",
                o.https.empty() ? "varlink" : "https", endpoints, o.clients, pair.size(), errors, seconds, rate, pct(pair, 50), pct(pair, 99), pct(pair, 100),
                pct(send, 50), pct(verify, 50), reconnects, lastId.empty() ? "-" : lastId.c_str());
    std::fflush(stdout);
    return errors == 0 && !pair.empty() ? 0 : 1;
}
