// twofactor-bench-privacy: the privacy figures of issue 5, on the project's
// own store (openSqlcipherStore, synchronous FULL, the daemon's schema and
// statements).
//
// Rows are written in time order (ten requests a second), as the daemon
// writes them, with time-ordered request ids as the daemon makes them;
// subject hashes are random, as keyed hashes are.
//
// 1. Export of one subject among --rows requests: the store work item behind
//    `twofactor gdpr export` (Transaction::findSubjectData: requests,
//    fallbacks, deliveries, audit, opt-out, failures, flags). Target <= 50 ms.
// 2. Retention purge of --rows expired requests with one delivery attempt
//    each, all past every period: the delivery attempts deleted, then the
//    requests themselves (authentication metadata; the purges of code
//    hashes and identifying data run after it and find nothing left to
//    rewrite, store::kPurgeOrder), in batches of --batch rows, as the daemon
//    runs it (store::purge). Target <= 10 s for 1M rows. Meanwhile a client
//    runs verify-shaped work items (read a live request, update it) every
//    --verify-interval-ms and their latency is recorded. Target p99 <= 20 ms.
//
// Output: a table and "RESULT ..." lines. Never asserted.
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
namespace crypto = twofactor::crypto;
namespace store = twofactor::store;
using twofactor::otp::DeliveryAttempt;
using twofactor::otp::OtpRequest;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr std::int64_t kDay = 86400;
constexpr long kRequestsPerSubject = 10;

std::string subjectHash(long subject) {
    const auto d = crypto::sha256("subject " + std::to_string(subject));
    return crypto::hex(d.data(), d.size());
}

OtpRequest makeRequest(long n, std::int64_t created) {
    OtpRequest r;
    // Ids as the daemon makes them (crypto::timeOrderedId), ten requests a second.
    r.id = crypto::timeOrderedId(created * 1000 + (n % 10) * 100);
    r.app = "shop";
    r.channel = "email";
    const long subject = n / kRequestsPerSubject;
    r.destination = "user" + std::to_string(subject) + "@example.org";
    r.subjectHash = subjectHash(subject);
    r.purpose = "login";
    r.locale = "en";
    r.clientIp = "192.0.2." + std::to_string(n % 250);
    r.device = "Mozilla/5.0 (X11; Linux x86_64) bench";
    r.codeHash = crypto::sha256(r.id);
    r.createdAt = r.updatedAt = created;
    r.expiresAt = created + 600;
    return r;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// CPU seconds (user + system) of the whole process so far: on a shared
// machine wall time says as much about the neighbours as about the store.
double cpuSeconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"twofactor-bench-privacy: subject export and retention purge on the real store"};
    long rows = 1'000'000;
    int batch = 1000;
    int verifyIntervalMs = 5;
    std::string dir = "/tmp";
    int cacheMiB = store::SqlcipherOptions{}.cacheMiB;
    app.add_option("--rows", rows, "expired requests (each with one delivery attempt) in the store");
    app.add_option("--batch", batch, "retention batch size ([retention] batch_size)");
    app.add_option("--verify-interval-ms", verifyIntervalMs, "pause between verify work items during the purge");
    app.add_option("--dir", dir, "where the temporary database goes");
    app.add_option("--cache-mib", cacheMiB, "the store's page cache ([store] cache_size), MiB")->check(CLI::Range(2, 4096));
    CLI11_PARSE(app, argc, argv);

    const std::filesystem::path path = std::filesystem::path(dir) / ("tf-bench-privacy-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    store::SqlcipherOptions o;
    o.path = (path / "bench.db").string();
    o.key = crypto::randomSecret(32);
    o.cacheMiB = cacheMiB;
    auto s = store::openSqlcipherStore(std::move(o));

    // ---- populate: requests 200 days old, expired, with code hashes and client data ----
    const auto t0 = Clock::now();
    const long chunk = 5000;
    for (long start = 0; start < rows; start += chunk) {
        store::runSync(*s, [&](store::Transaction& t) {
            for (long n = start; n < std::min(rows, start + chunk); ++n) {
                // Rows arrive in time order, ten per second.
                const auto r = makeRequest(n, kNow - 200 * kDay + n / 10);
                t.insertRequest(r);
                DeliveryAttempt a;
                a.requestId = r.id;
                a.app = r.app;
                a.channel = r.channel;
                a.driver = "ses";
                a.at = r.createdAt;
                a.outcome = "accepted";
                a.providerMessageId = "0100018c-" + std::to_string(n);
                t.insertDeliveryAttempt(a);
            }
        });
    }
    // A live request for the verify client.
    OtpRequest live = makeRequest(rows + 1, kNow);
    live.id = "live";
    live.expiresAt = kNow + 3600;
    live.maxAttempts = 1 << 30;  // every verify below counts a wrong code; none locks it
    store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(live); });
    std::printf("populated %ld requests and %ld delivery attempts in %.1f s\n", rows, rows, ms(Clock::now() - t0) / 1000);

    // ---- 1. export of one subject ----
    const long target = rows / kRequestsPerSubject / 2;
    std::vector<double> exportMs;
    std::size_t found = 0;
    for (int i = 0; i < 50; ++i) {
        const auto start = Clock::now();
        const auto d = store::runSync(*s, [&](store::Transaction& t) {
            return t.findSubjectData(subjectHash(target), "user" + std::to_string(target) + "@example.org");
        });
        exportMs.push_back(ms(Clock::now() - start));
        found = d.requests.size() + d.deliveries.size();
    }
    std::printf("export of one subject (%zu rows) among %ld requests: p50 %.2f ms, p99 %.2f ms (target <= 50 ms)\n",
                found, rows, percentile(exportMs, 0.5), percentile(exportMs, 0.99));
    std::printf("RESULT bench=export rows=%ld p50_ms=%.2f p99_ms=%.2f\n", rows, percentile(exportMs, 0.5),
                percentile(exportMs, 0.99));

    // ---- 2. purge with verifies going on ----
    std::atomic<bool> done{false};
    std::vector<double> verifyMs;
    std::thread verifier([&] {
        while (!done) {
            const auto start = Clock::now();
            store::runSync(*s, [&](store::Transaction& t) {
                (void)t.findRequest("live");
                (void)t.countWrongCode("live", kNow);
            });
            verifyMs.push_back(ms(Clock::now() - start));
            std::this_thread::sleep_for(std::chrono::milliseconds(verifyIntervalMs));
        }
    });
    store::RetentionPolicy policy;
    const auto p0 = Clock::now();
    const double cpu0 = cpuSeconds();
    // Time per category: the progress callback says which one is moving.
    std::vector<double> perKind(std::size(store::kPurgeKinds), 0.0);
    store::PurgeCounts last;
    auto lastAt = Clock::now();
    const auto counts = store::purge(*s, kNow + 200 * kDay, policy, batch, false, [&](const store::PurgeCounts& c) {
        const auto now = Clock::now();
        for (std::size_t k = 0; k < std::size(store::kPurgeKinds); ++k)
            if (c[store::kPurgeKinds[k]] != last[store::kPurgeKinds[k]] || k == 0) {
                if (c[store::kPurgeKinds[k]] != last[store::kPurgeKinds[k]]) {
                    perKind[k] += ms(now - lastAt);
                    break;
                }
            }
        last = c;
        lastAt = now;
    });
    const double purgeS = ms(Clock::now() - p0) / 1000;
    const double purgeCpuS = cpuSeconds() - cpu0;
    done = true;
    verifier.join();
    std::printf("purge: %lld rows in %.2f s (code hashes %lld, identifying data %lld, deliveries %lld, "
                "requests %lld) batch %d (target <= 10 s for 1M rows)\n",
                static_cast<long long>(counts.total()), purgeS, static_cast<long long>(counts.codeHashes),
                static_cast<long long>(counts.clientData), static_cast<long long>(counts.deliveries),
                static_cast<long long>(counts.authMetadata), batch);
    for (std::size_t k = 0; k < std::size(store::kPurgeKinds); ++k)
        if (perKind[k] > 0)
            std::printf("  %-16s %8.2f s\n", store::purgeKindName(store::kPurgeKinds[k]), perKind[k] / 1000);
    std::printf("verify work items during the purge: %zu, p50 %.2f ms, p99 %.2f ms, max %.2f ms (target p99 <= 20 ms)\n",
                verifyMs.size(), percentile(verifyMs, 0.5), percentile(verifyMs, 0.99), percentile(verifyMs, 1.0));
    std::printf("purge CPU (user + system, verify client included): %.2f s\n", purgeCpuS);
    std::printf("RESULT bench=purge rows=%ld purged=%lld seconds=%.2f verify_p50_ms=%.2f verify_p99_ms=%.2f "
                "cpu_seconds=%.2f\n",
                rows, static_cast<long long>(counts.total()), purgeS, percentile(verifyMs, 0.5),
                percentile(verifyMs, 0.99), purgeCpuS);
    s->close();
    std::filesystem::remove_all(path);
    return 0;
}
