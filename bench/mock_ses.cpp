// twofactor-mock-ses: a minimal, fast loopback stand-in for the Amazon SES
// API v2, to measure how many deliveries per second twofactord makes.
//
// It listens on 127.0.0.1 (port 0: any free port, written to --port-file),
// speaks just enough HTTP/1.1 for libcurl: request line, headers, a body of
// Content-Length bytes (no chunked bodies: 501), keep-alive and pipelining.
// Every POST /v2/email/outbound-emails gets 200 {"MessageId":"<counter>"}
// (after --delay-ms, to play a provider's latency). It checks no signature
// and looks at no body: the tests' Python mock checks those; this one is here
// to measure the daemon, not itself.
//
// GET /_bench/stats answers {"accepted":N,"other":N,"connections":N,
// "first_ns":T,"last_ns":T} (T: the last/first accepted request on
// std::chrono::steady_clock, i.e. CLOCK_MONOTONIC, comparable across
// processes on one machine); it is not counted.
//
// Ends after --max-seconds, on SIGTERM or SIGINT, and prints its counts and a
// "RESULT key=value ..." line.
#include <utility>

#include <boost/asio.hpp>
namespace asio = boost::asio;
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

constexpr std::string_view kSendPath = "/v2/email/outbound-emails";
constexpr std::string_view kStatsPath = "/_bench/stats";
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kMaxBodyBytes = 4 * 1024 * 1024;

struct Stats {
    std::uint64_t accepted = 0;     // POST kSendPath answered 200
    std::uint64_t other = 0;        // anything else answered (404, 400, ...)
    std::uint64_t connections = 0;
    std::int64_t firstNs = 0, lastNs = 0;
};

std::int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.remove_suffix(1);
    return v;
}

std::string response(int status, std::string_view reason, std::string_view body, bool close) {
    std::string r;
    r.reserve(160 + body.size());
    r += "HTTP/1.1 ";
    r += std::to_string(status);
    r += ' ';
    r += reason;
    r += "\r\nContent-Type: application/json\r\nContent-Length: ";
    r += std::to_string(body.size());
    r += close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n";
    r += body;
    return r;
}

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, Stats& stats, std::chrono::milliseconds delay)
        : socket_(std::move(socket)), timer_(socket_.get_executor()), stats_(stats), delay_(delay) {}

    void start() {
        boost::system::error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);
        read();
    }

private:
    void read() {
        socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
            if (ec) return;  // EOF or error: the session ends with its last reference
            self->in_.append(self->chunk_.data(), n);
            self->process();
        });
    }

    // Answers every complete request in in_; then writes (after the delay, if
    // any accepted request asks for one) and reads on, or closes.
    void process() {
        bool accepted = false;
        while (!closing_) {
            const std::size_t headerEnd = in_.find("\r\n\r\n");
            if (headerEnd == std::string::npos) {
                if (in_.size() > kMaxHeaderBytes) fail(431, "Request Header Fields Too Large");
                break;
            }
            const std::string_view head(in_.data(), headerEnd);
            const std::size_t lineEnd = std::min(head.find("\r\n"), head.size());
            const std::string_view requestLine = head.substr(0, lineEnd);
            const std::size_t sp1 = requestLine.find(' ');
            const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : requestLine.find(' ', sp1 + 1);
            if (sp2 == std::string_view::npos) {
                fail(400, "Bad Request");
                break;
            }
            const std::string_view method = requestLine.substr(0, sp1);
            const std::string_view target = requestLine.substr(sp1 + 1, sp2 - sp1 - 1);
            const std::string_view version = requestLine.substr(sp2 + 1);
            bool close = version == "HTTP/1.0";
            std::size_t contentLength = 0;
            bool badHeader = false, chunked = false;
            std::size_t pos = lineEnd;
            while (pos < head.size()) {
                pos += 2;  // "\r\n"
                std::size_t end = head.find("\r\n", pos);
                if (end == std::string_view::npos) end = head.size();
                const std::string_view line = head.substr(pos, end - pos);
                pos = end;
                const std::size_t colon = line.find(':');
                if (colon == std::string_view::npos || colon == 0) {
                    badHeader = true;
                    continue;
                }
                const std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
                if (iequals(name, "content-length")) {
                    if (value.empty() || value.size() > 9 ||
                        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                        badHeader = true;
                        continue;
                    }
                    contentLength = std::stoul(std::string(value));
                } else if (iequals(name, "transfer-encoding")) {
                    chunked = true;
                } else if (iequals(name, "connection")) {
                    if (iequals(value, "close")) close = true;
                    if (iequals(value, "keep-alive")) close = false;
                }
            }
            if (badHeader || version.rfind("HTTP/1.", 0) != 0) {
                fail(400, "Bad Request");
                break;
            }
            if (chunked) {
                fail(501, "Not Implemented");
                break;
            }
            if (contentLength > kMaxBodyBytes) {
                fail(413, "Content Too Large");
                break;
            }
            const std::size_t total = headerEnd + 4 + contentLength;
            if (in_.size() < total) break;  // the body is still coming

            const std::string_view path = target.substr(0, target.find('?'));
            if (method == "POST" && path == kSendPath) {
                const std::uint64_t id = ++stats_.accepted;
                const std::int64_t t = nowNs();
                if (stats_.firstNs == 0) stats_.firstNs = t;
                stats_.lastNs = t;
                out_ += response(200, "OK", "{\"MessageId\":\"mock-" + std::to_string(id) + "\"}", close);
                accepted = true;
            } else if (method == "GET" && path == kStatsPath) {
                out_ += response(200, "OK",
                                 "{\"accepted\":" + std::to_string(stats_.accepted) +
                                     ",\"other\":" + std::to_string(stats_.other) +
                                     ",\"connections\":" + std::to_string(stats_.connections) +
                                     ",\"first_ns\":" + std::to_string(stats_.firstNs) +
                                     ",\"last_ns\":" + std::to_string(stats_.lastNs) + "}",
                                 close);
            } else {
                ++stats_.other;
                out_ += response(404, "Not Found",
                                 "{\"__type\":\"NotFoundException\",\"message\":\"mock: no such operation\"}", close);
            }
            in_.erase(0, total);
            if (close) closing_ = true;
        }
        if (out_.empty()) {
            if (!closing_) read();
            return;
        }
        if (accepted && delay_.count() > 0) {
            timer_.expires_after(delay_);
            timer_.async_wait([self = shared_from_this()](boost::system::error_code) { self->write(); });
        } else {
            write();
        }
    }

    void fail(int status, std::string_view reason) {
        ++stats_.other;
        out_ += response(status, reason, "{\"message\":\"mock: bad request\"}", true);
        closing_ = true;
    }

    void write() {
        sending_.swap(out_);
        out_.clear();
        asio::async_write(socket_, asio::buffer(sending_), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
            if (ec) return;
            if (self->closing_) {
                boost::system::error_code ignored;
                self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                return;
            }
            self->process();  // pipelined requests already buffered, or read on
        });
    }

    tcp::socket socket_;
    asio::steady_timer timer_;
    Stats& stats_;
    std::chrono::milliseconds delay_;
    std::array<char, 16 * 1024> chunk_{};
    std::string in_, out_, sending_;
    bool closing_ = false;
};

void accept(tcp::acceptor& acceptor, Stats& stats, std::chrono::milliseconds delay) {
    acceptor.async_accept([&acceptor, &stats, delay](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            ++stats.connections;
            std::make_shared<Session>(std::move(socket), stats, delay)->start();
        }
        accept(acceptor, stats, delay);
    });
}

}  // namespace

int main(int argc, char** argv) {
    std::string portFile;
    double maxSeconds = 600;
    int delayMs = 0;
    CLI::App app{"twofactor-mock-ses - a fast loopback SES API v2 stand-in for benchmarks (no signature checks)",
                 "twofactor-mock-ses"};
    app.add_option("--port-file", portFile, "write the port listened on (127.0.0.1) to this file")->required();
    app.add_option("--max-seconds", maxSeconds, "exit after this many seconds")
        ->check(CLI::Range(0.1, 86400.0))
        ->capture_default_str();
    app.add_option("--delay-ms", delayMs, "answer accepted sends after this delay (a provider's latency)")
        ->check(CLI::Range(0, 60000))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    asio::io_context io(1);
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor.listen(asio::socket_base::max_listen_connections);
    const unsigned short port = acceptor.local_endpoint().port();
    {
        // Written whole, then renamed: a reader never sees half a number.
        const std::string tmp = portFile + ".tmp";
        std::ofstream(tmp) << port << "\n";
        if (std::rename(tmp.c_str(), portFile.c_str()) != 0) {
            std::perror("twofactor-mock-ses: rename port file");
            return 1;
        }
    }

    Stats stats;
    const auto delay = std::chrono::milliseconds(delayMs);
    accept(acceptor, stats, delay);

    const auto start = Clock::now();
    asio::signal_set signals(io, SIGTERM, SIGINT);
    asio::steady_timer deadline(io, std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(maxSeconds)));
    std::string why = "time limit";
    signals.async_wait([&](boost::system::error_code ec, int sig) {
        if (!ec) why = sig == SIGTERM ? "SIGTERM" : "SIGINT";
        io.stop();
    });
    deadline.async_wait([&](boost::system::error_code ec) {
        if (!ec) io.stop();
    });
    io.run();

    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double busy = stats.lastNs > stats.firstNs ? static_cast<double>(stats.lastNs - stats.firstNs) / 1e9 : 0;
    std::printf("twofactor-mock-ses: %llu send(s) accepted, %llu other request(s), %llu connection(s) in %.1f s (%s)\n",
                static_cast<unsigned long long>(stats.accepted), static_cast<unsigned long long>(stats.other),
                static_cast<unsigned long long>(stats.connections), seconds, why.c_str());
    std::printf("RESULT accepted=%llu other=%llu connections=%llu seconds=%.3f first_to_last_s=%.3f port=%u\n",
                static_cast<unsigned long long>(stats.accepted), static_cast<unsigned long long>(stats.other),
                static_cast<unsigned long long>(stats.connections), seconds, busy, port);
    std::fflush(stdout);
    return 0;
}
