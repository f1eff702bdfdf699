// twofactor-prefill: fills a twofactord state directory with the history of a
// service that has been running a while, so the daemon can be measured at
// steady state rather than new.
//
// It writes through the daemon's own code: the configuration file the daemon
// will load, its keys (generated in the state directory as the daemon would),
// the store (openSqlcipherStore, Transaction) and the functions the send,
// delivery and verify paths write with (rate limits, fraud sets, the audit
// chain sealed by otp::OtpService, its keyed hashes), with the times of
// traffic spread over --span-seconds ending now. Every row is one the daemon
// writes for such traffic: the request, its delivery attempt, its audit
// records, rate counters, fraud-set members, subject failures. See writePair
// for what is left out.
//
// The mix (--requests N, in time order):
//   - a third to addresses at one large provider's domain (--large-domain,
//     the load generator's example.org by default), N/6 distinct users;
//   - a third to addresses over --domains other domains;
//   - a third to mobile numbers (+49151..., the WhatsApp channel);
//   - client IPs: 30 % from four NAT addresses, the rest from single ones;
//     a device per user;
//   - verifies: 90 % the right code, 5 % a wrong one then the right one,
//     5 % none (the request expires).
// Sends are written kRequestsPerItem to a work item, several items queued at
// once, so the store's group commit writes them in large transactions
// (synchronous = normal while filling; the daemon opens the file with its own
// setting afterwards).
//
// Output: progress on stderr, a summary and one "RESULT ..." line.
#include "config/config.hpp"
#include "otp/code.hpp"
#include "otp/destination.hpp"
#include "otp/service.hpp"
#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/clock.hpp"
#include "util/crypto.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace {

using namespace twofactor;
using Steady = std::chrono::steady_clock;

// The service reads the time on the store's writer thread while this program moves it.
class WalkingClock final : public Clock {
public:
    explicit WalkingClock(std::int64_t start) : now_(start) {}
    std::int64_t now() const override { return now_.load(std::memory_order_relaxed); }
    void set(std::int64_t t) { now_.store(t, std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> now_;
};

// One send and what followed it, drawn before the work item that writes it.
struct Planned {
    std::int64_t at = 0;
    std::int64_t verifyAt = 0;
    int verify = 0;  // 0..89 right code, 90..94 a wrong one first, 95..99 none
    otp::OtpRequest request;
    SecretString code;
    otp::SendKeys keys;
    otp::FraudKeys fraudKeys;
};

// The rows OtpService::send, the delivery and OtpService::verify write for
// this traffic, in the order they write them, through the same functions
// (rate limits, fraud sets, audit chain, store). What it leaves out: the
// fraud rules' reads (checkFraud changes nothing stored; on a large set they
// are what makes a send slow) and so the "flagged:<rule>" audit records.
// Returns false when the rate limits refused the send.
bool writePair(store::Transaction& t, otp::OtpService& service, WalkingClock& clock, const config::App& app,
               Planned& p) {
    otp::OtpRequest& r = p.request;
    clock.set(p.at);
    (void)t.subjectFlags(r.subjectHash);
    if (auto refusal = otp::admitSend(t, app.rateLimits, p.keys, p.at)) {
        service.record(t, service.auditRecord("send", r.app, 0, "refused:" + refusal->scope, "", r.subjectHash,
                                              "retry after " + std::to_string(refusal->retryAfter) + " s"));
        return false;
    }
    otp::recordFraud(t, app.fraud, p.fraudKeys, p.at);
    t.insertRequest(r);
    service.record(t, service.auditRecord("send", r.app, 0, "success", r.id, r.subjectHash,
                                          "channel " + r.channel + ", purpose " + r.purpose));
    otp::DeliveryAttempt a;
    a.requestId = r.id;
    a.app = r.app;
    a.channel = r.channel;
    a.driver = "outbox";
    a.at = p.at;
    a.outcome = "accepted";
    a.providerMessageId = std::to_string(p.at) + ".000000." + r.id + ".1.0.1.msg";
    a.durationMs = 1;
    t.insertDeliveryAttempt(a);
    if (p.verify >= 95) return true;

    const std::int64_t now = p.verifyAt;
    clock.set(now);
    auto found = t.findRequest(r.id);
    if (!found) throw std::runtime_error("request " + r.id + " was not found after its insert");
    otp::OtpRequest v = std::move(*found);
    (void)t.subjectFlags(v.subjectHash);
    if (otp::checkVerify(t, v.app, v.subjectHash, now)) return true;  // locked out: nothing compared
    if (p.verify >= 90) {
        otp::recordVerifyFailure(t, app.rateLimits, v.app, v.subjectHash, now);
        if (auto counted = t.countWrongCode(v.id, now)) v.attempts = counted->attempts;
        service.record(t, service.auditRecord("verify", v.app, 0, "rejected", v.id, v.subjectHash,
                                              "wrong code, attempt " + std::to_string(v.attempts) + " of " +
                                                  std::to_string(v.maxAttempts)));
    }
    if (!v.codeHash || !t.approveRequest(v.id, v.sends, *v.codeHash, now))
        throw std::runtime_error("request " + v.id + " could not be approved");
    v.finish(otp::Status::Approved, now);
    otp::recordVerifySuccess(t, v.app, v.subjectHash);
    service.record(t, service.auditRecord("verify", v.app, 0, "approved", v.id, v.subjectHash));
    return true;
}

// Work items submitted and not yet committed: enough to fill the store's
// group transactions, few enough to bound memory.
constexpr long kItemsInFlight = 8;
constexpr long kRequestsPerItem = 250;

// Bounds the pairs under way, and waits for the last ones.
class InFlight {
public:
    explicit InFlight(long limit) : limit_(limit) {}
    void acquire() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return busy_ < limit_; });
        ++busy_;
    }
    void release() {
        {
            std::lock_guard lock(mutex_);
            --busy_;
        }
        cv_.notify_all();
    }
    void drain() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return busy_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    long busy_ = 0;
    const long limit_;
};

}  // namespace

int main(int argc, char** argv) {
    std::string configPath;
    long requests = 1000000;
    std::int64_t span = 86400;
    long domains = 5000;
    std::string largeDomain = "example.org";
    std::string appName = "default";
    CLI::App cli{"twofactor-prefill - fill a twofactord state directory through the daemon's own code", "twofactor-prefill"};
    cli.add_option("-c,--config", configPath, "the daemon's configuration file (its state_dir is filled)")->required();
    cli.add_option("--requests", requests, "requests to send")->check(CLI::Range(1L, 100000000L))->capture_default_str();
    cli.add_option("--span-seconds", span, "the requests are spread over this long, ending now")
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{365} * 86400))
        ->capture_default_str();
    cli.add_option("--domains", domains, "domains besides the large one")->check(CLI::Range(1L, 10000000L))->capture_default_str();
    cli.add_option("--large-domain", largeDomain, "the large provider's domain (a third of the addresses)")->capture_default_str();
    cli.add_option("--app", appName, "the app the requests belong to")->capture_default_str();
    CLI11_PARSE(cli, argc, argv);

    try {
        const config::Config config = config::loadFile(configPath);
        if (!config.apps.count(appName)) throw std::runtime_error("the configuration has no app '" + appName + "'");
        const config::App& app = config.apps.at(appName);
        const bool phones = std::find(app.channels.begin(), app.channels.end(), "whatsapp") != app.channels.end();
        // The flagged sends of the fraud rules are logged one by one; the summary counts outcomes instead.
        log::setLevel(log::Level::Error);

        files::ensureDirectory(config.stateDir, 0700);
        if (files::exists(config.databasePath))
            throw std::runtime_error(config.databasePath + " exists: prefill starts from an empty state directory");
        SecretBytes storeKey = store::loadKey("store-key", config.storeKeyFile, config.generateKeys);
        SecretBytes pepper = store::loadKey("code-pepper", config.pepperFile, config.generateKeys);
        store::SqlcipherOptions so;
        so.path = config.databasePath;
        so.key = std::move(storeKey);
        so.synchronousFull = false;
        so.maxBatch = 4096;
        auto db = store::openSqlcipherStore(std::move(so));

        const std::int64_t end = std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
        const std::int64_t start = end - span;
        WalkingClock clock(start);
        const SecretBytes pepperCopy = pepper.clone();
        // For its keys and its audit records only: nothing is sent.
        otp::OtpService service(
            config, *db, {}, clock, std::move(pepper), [](std::function<void()>) {},
            [](std::chrono::milliseconds, std::function<void()>) {});

        const long users = std::max(1L, requests / 6);
        const auto began = Steady::now();
        auto lastReport = began;
        std::atomic<long> refused{0}, approved{0}, wrongFirst{0}, unverified{0}, done{0};
        InFlight inFlight(kItemsInFlight);
        std::mutex errorMutex;
        std::string firstError;
        for (long first = 0; first < requests; first += kRequestsPerItem) {
            // The traffic of kRequestsPerItem sends, drawn here, written in one work item.
            std::vector<Planned> batch;
            for (long i = first; i < std::min(requests, first + kRequestsPerItem); ++i) {
                Planned p;
                p.at = start + static_cast<std::int64_t>(static_cast<double>(span) * static_cast<double>(i) /
                                                         static_cast<double>(requests));
                const long user = static_cast<long>(crypto::randomBelow(static_cast<std::uint64_t>(users)));
                const int kind = phones ? static_cast<int>(i % 3) : static_cast<int>(i % 2);
                std::string destination;
                if (kind == 0) {
                    destination = "p" + std::to_string(user) + "@" + largeDomain;
                } else if (kind == 1) {
                    destination = "u" + std::to_string(user) + "@m" +
                                  std::to_string(crypto::randomBelow(static_cast<std::uint64_t>(domains))) +
                                  ".example.net";
                } else {
                    char number[32];
                    std::snprintf(number, sizeof number, "+49151%08ld", user % 100000000);
                    destination = number;
                }
                std::string ip;
                if (crypto::randomBelow(10) < 3) {
                    ip = "203.0.113." + std::to_string(1 + crypto::randomBelow(4));
                } else {
                    const auto v = crypto::randomBelow(1u << 22);
                    ip = "100." + std::to_string(64 + (v >> 16)) + "." + std::to_string((v >> 8) & 255) + "." +
                         std::to_string(v & 255);
                }
                auto parsed = otp::parseDestination(destination, app.defaultRegion);
                if (!std::holds_alternative<otp::Destination>(parsed))
                    throw std::runtime_error("the mix made an invalid destination: " + destination);
                const otp::Destination dest = std::get<otp::Destination>(parsed);
                otp::OtpRequest& r = p.request;
                r.id = crypto::randomId();
                r.app = app.name;
                r.channel = dest.kind == otp::DestinationKind::Email ? "email" : "whatsapp";
                r.destination = dest.normalized;
                r.subjectHash = service.subjectHash(dest.normalized);
                r.purpose = "login";
                r.locale = app.defaultLocale;
                r.clientIp = ip;
                r.device = "Mozilla/5.0 (X11; Linux x86_64) bench/" + std::to_string(kind) + "." + std::to_string(user);
                r.codeLength = app.codeLength;
                r.maxAttempts = app.maxAttempts;
                r.sends = 1;
                r.maxSends = app.maxSends;
                r.ttl = app.ttl.count();
                r.createdAt = r.updatedAt = p.at;
                r.expiresAt = p.at + r.ttl;
                p.code = otp::generateCode(r.codeLength);
                r.codeHash = otp::codeHash(pepperCopy, r.id, p.code.view());
                p.keys = service.sendKeys(r.app, r.subjectHash, r.clientIp);
                p.fraudKeys = service.fraudKeys(r.app, r.subjectHash, r.destination, r.clientIp, r.device, r.id);
                p.verify = static_cast<int>(crypto::randomBelow(100));
                // A user types the code some seconds after the send.
                p.verifyAt = p.at + 5 + static_cast<std::int64_t>(crypto::randomBelow(40));
                batch.push_back(std::move(p));
            }
            inFlight.acquire();
            auto shared = std::make_shared<std::vector<Planned>>(std::move(batch));
            db->submit(
                [&, shared](store::Transaction& t) {
                    for (Planned& p : *shared) {
                        if (writePair(t, service, clock, app, p)) {
                            if (p.verify < 90) ++approved;
                            else if (p.verify < 95) ++wrongFirst, ++approved;
                            else ++unverified;
                        } else {
                            ++refused;
                        }
                    }
                },
                [&, n = static_cast<long>(shared->size())](std::exception_ptr e) {
                    if (e) {
                        std::lock_guard lock(errorMutex);
                        try {
                            std::rethrow_exception(e);
                        } catch (const std::exception& x) {
                            if (firstError.empty()) firstError = x.what();
                        }
                    }
                    done += n;
                    inFlight.release();
                });
            const auto t = Steady::now();
            if (t - lastReport > std::chrono::seconds(10)) {
                lastReport = t;
                std::fprintf(stderr, "twofactor-prefill: %ld of %ld requests (%.0f/s)\n", done.load(), requests,
                             static_cast<double>(done.load()) / std::chrono::duration<double>(t - began).count());
            }
        }
        inFlight.drain();
        // The delivery-log writes were queued before each reply; a checkpoint
        // after them leaves the file complete without its WAL.
        std::promise<void> checkpointed;
        db->checkpoint([&](std::exception_ptr e) { e ? checkpointed.set_exception(e) : checkpointed.set_value(); });
        checkpointed.get_future().get();
        db->close();
        const double seconds = std::chrono::duration<double>(Steady::now() - began).count();

        std::printf("twofactor-prefill: %ld requests over %lld s into %s in %.1f s (%.0f requests/s)\n", requests,
                    static_cast<long long>(span), config.databasePath.c_str(), seconds,
                    static_cast<double>(requests) / seconds);
        std::printf("  approved %ld (%ld after a wrong code), left to expire %ld, refused by the rate limits %ld\n",
                    approved.load(), wrongFirst.load(), unverified.load(), refused.load());
        if (!firstError.empty()) std::printf("  first store error: %s\n", firstError.c_str());
        std::printf("RESULT requests=%ld approved=%ld refused=%ld seconds=%.3f requests_per_s=%.1f error=%s\n", requests,
                    approved.load(), refused.load(), seconds, static_cast<double>(requests) / seconds,
                    firstError.empty() ? "none" : "store");
        std::fflush(stdout);
        return firstError.empty() && approved.load() > 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "twofactor-prefill: %s\n", e.what());
        return 1;
    }
}
