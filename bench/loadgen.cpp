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
// Output: a human-readable summary and one "RESULT key=value ..." line for scripts.
#include "ipc/client.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
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
    std::string socket;
    std::string outbox;
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

void clientThread(const Options& o, const std::string& newDir, std::atomic<long>& next, Clock::time_point deadline,
                  ThreadResult& r) {
    Client client;
    std::string error;
    if (!Client::connect(o.socket, client, error)) {
        fail(r, error);
        return;
    }
    for (;;) {
        if (o.duration > 0 && Clock::now() >= deadline) break;
        const long n = next.fetch_add(1);
        if (n >= o.pairs) break;

        const auto t0 = Clock::now();
        Reply reply;
        nlohmann::json sendParams = {{"app", o.app}, {"destination", "user" + std::to_string(n) + "@" + o.domain}};
        if (o.noWait) sendParams["wait"] = false;
        if (!client.call("io.twofactor.Otp.Send", sendParams, reply, error)) {
            fail(r, "Send: " + error);
            break;  // the connection is gone
        }
        if (reply.error) {
            fail(r, "Send: " + *reply.error + " " + reply.parameters.dump());
            continue;
        }
        std::string id;
        try {
            id = reply.parameters.at("request").at("id").get<std::string>();
        } catch (const std::exception& e) {
            fail(r, std::string("Send: reply without request.id: ") + e.what());
            continue;
        }
        const auto t1 = Clock::now();
        if (o.sendOnly) {
            ++r.deliveries[reply.parameters.value("delivery", std::string("?"))];
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

        if (!client.call("io.twofactor.Otp.Verify", {{"id", id}, {"code", *code}}, reply, error)) {
            fail(r, "Verify: " + error);
            break;
        }
        const auto t3 = Clock::now();
        if (reply.error) {
            fail(r, "Verify: " + *reply.error + " " + reply.parameters.dump());
            continue;
        }
        if (!reply.parameters.value("approved", false)) {
            fail(r, "Verify: not approved: " + reply.parameters.dump());
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
    app.add_option("--socket", o.socket, "twofactord's socket")->required();
    app.add_option("--outbox", o.outbox, "the daemon's outbox directory (the one holding new/); not with --send-only");
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
    if (!o.sendOnly && o.outbox.empty()) {
        std::fprintf(stderr, "twofactor-loadgen: --outbox is required (unless --send-only or --no-wait)\n");
        return 2;
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

    std::string newDir = o.outbox;
    while (newDir.size() > 1 && newDir.back() == '/') newDir.pop_back();
    if (newDir.size() < 4 || newDir.substr(newDir.size() - 4) != "/new") newDir += "/new";

    std::atomic<long> next{0};
    std::vector<ThreadResult> results(static_cast<std::size_t>(o.clients));
    std::vector<std::thread> threads;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
    for (int i = 0; i < o.clients; ++i)
        threads.emplace_back(clientThread, std::cref(o), std::cref(newDir), std::ref(next), deadline,
                             std::ref(results[static_cast<std::size_t>(i)]));
    for (auto& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

    std::vector<std::int64_t> pair, send, file, verify;
    long errors = 0;
    std::string firstError, lastId;
    std::map<std::string, long> deliveries;
    for (const auto& r : results) {
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
            bool ok = Client::connect(o.socket, client, error);
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

    std::printf("twofactor-loadgen: %d client(s), %zu pair(s) ok, %ld error(s) in %.2f s\n", o.clients, pair.size(),
                errors, seconds);
    std::printf("  throughput  %.1f pairs/s\n", rate);
    std::printf("  pair        p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", pct(pair, 50), pct(pair, 99), pct(pair, 100));
    std::printf("    send      p50 %.2f ms  p99 %.2f ms\n", pct(send, 50), pct(send, 99));
    std::printf("    file      p50 %.2f ms  p99 %.2f ms\n", pct(file, 50), pct(file, 99));
    std::printf("    verify    p50 %.2f ms  p99 %.2f ms\n", pct(verify, 50), pct(verify, 99));
    if (!firstError.empty()) std::printf("  first error: %s\n", firstError.c_str());
    std::printf("RESULT clients=%d ok=%zu errors=%ld seconds=%.3f pairs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
                "send_p50_ms=%.3f verify_p50_ms=%.3f last_id=%s\n",
                o.clients, pair.size(), errors, seconds, rate, pct(pair, 50), pct(pair, 99), pct(pair, 100),
                pct(send, 50), pct(verify, 50), lastId.empty() ? "-" : lastId.c_str());
    std::fflush(stdout);
    return errors == 0 && !pair.empty() ? 0 : 1;
}
