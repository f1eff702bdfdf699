// Rate limits and the per-subject lockout: the pure functions over an
// in-memory store, their configuration, and the service through the real store.
#include "config/config.hpp"
#include "otp/limits.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/clock.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <future>
#include <map>
#include <mutex>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

class MemoryLimitStore final : public otp::LimitStore {
public:
    bool countSendsIf(const std::vector<otp::RateKey>& keys, std::int64_t now, const RateDecision& admit) override {
        std::vector<std::optional<otp::RateCounter>> found;
        for (const auto& k : keys) {
            auto it = counters.find({k.scope, k.key});
            found.push_back(it == counters.end() ? std::nullopt : std::optional(it->second));
        }
        if (!admit(found)) return false;
        for (std::size_t i = 0; i < keys.size(); ++i)
            counters[{keys[i].scope, keys[i].key}] = otp::countOneSend(found[i], keys[i].window, now);
        return true;
    }
    std::optional<otp::SubjectFailures> findSubjectFailures(std::string_view app, std::string_view subject) override {
        auto it = failures.find({std::string(app), std::string(subject)});
        if (it == failures.end()) return std::nullopt;
        return it->second;
    }
    std::int64_t countSubjectFailure(std::string_view app, std::string_view subject) override {
        return ++failures[{std::string(app), std::string(subject)}].failures;
    }
    void lockSubject(std::string_view app, std::string_view subject, std::int64_t until) override {
        auto& f = failures[{std::string(app), std::string(subject)}];
        f.lockedUntil = std::max(f.lockedUntil, until);
    }
    void clearSubjectFailures(std::string_view app, std::string_view subject) override {
        failures.erase({std::string(app), std::string(subject)});
    }
    std::map<std::pair<std::string, std::string>, otp::RateCounter> counters;
    std::map<std::pair<std::string, std::string>, otp::SubjectFailures> failures;
};

constexpr std::int64_t T0 = 1'800'000'000;

otp::SendKeys keys(const std::string& dest, const std::string& ip = "", const std::string& prefix = "") {
    return otp::SendKeys{"app", dest, ip, prefix};
}

std::string scopeOf(const std::optional<otp::Refusal>& r) { return r ? r->scope : ""; }

}  // namespace

TEST_CASE("the defaults are the safe ones", "[limits]") {
    const config::RateLimits l;
    CHECK(l.resendCooldown.count() == 30);
    CHECK(l.destinationSends == 5);
    CHECK(l.destinationWindow.count() == 900);
    CHECK(l.ipSends == 20);
    CHECK(l.prefixSends == 100);
    CHECK(l.appSends == 600);
    CHECK(l.appWindow.count() == 60);
    CHECK(l.maxSubjectFailures == 10);
    CHECK(l.subjectLockout.count() == 60);
    CHECK(l.subjectMaxLockout.count() == 3600);
    CHECK(config::embeddedDefault().apps.at("default").rateLimits.destinationSends == 5);
}

TEST_CASE("a second send to a destination within the cooldown is refused", "[limits]") {
    MemoryLimitStore s;
    const config::RateLimits l;
    ManualClock clock{T0};
    CHECK_FALSE(otp::admitSend(s, l, keys("d1"), clock.now()));
    clock.advance(10);
    auto r = otp::admitSend(s, l, keys("d1"), clock.now());
    REQUIRE(r);
    CHECK(r->scope == "destination-cooldown");
    CHECK(r->retryAfter == 20);
    CHECK(s.counters.at({"destination", "app/d1"}).count == 1);  // a refusal counts nothing
    CHECK_FALSE(otp::admitSend(s, l, keys("d2"), clock.now()));  // another destination is not affected
    clock.advance(20);
    CHECK_FALSE(otp::admitSend(s, l, keys("d1"), clock.now()));
}

TEST_CASE("a destination gets at most destination_sends per window", "[limits]") {
    MemoryLimitStore s;
    const config::RateLimits l;
    ManualClock clock{T0};
    for (int i = 0; i < 5; ++i) {
        CHECK_FALSE(otp::admitSend(s, l, keys("d"), clock.now()));
        clock.advance(30);
    }
    auto r = otp::admitSend(s, l, keys("d"), clock.now());
    REQUIRE(r);
    CHECK(r->scope == "destination");
    CHECK(r->retryAfter == 900 - 150);
    clock.set(T0 + 899);
    CHECK(scopeOf(otp::admitSend(s, l, keys("d"), clock.now())) == "destination");
    clock.set(T0 + 900);  // a new window
    CHECK_FALSE(otp::admitSend(s, l, keys("d"), clock.now()));
}

TEST_CASE("a client IP and its network prefix have caps of their own", "[limits]") {
    MemoryLimitStore s;
    config::RateLimits l;
    l.ipSends = 3;
    l.prefixSends = 5;
    ManualClock clock{T0};
    for (int i = 0; i < 3; ++i) CHECK_FALSE(otp::admitSend(s, l, keys("d" + std::to_string(i), "ip1", "net"), clock.now()));
    auto r = otp::admitSend(s, l, keys("x", "ip1", "net"), clock.now());
    REQUIRE(r);
    CHECK(r->scope == "ip");
    CHECK(r->retryAfter == 900);
    // Other addresses of the same network still pass, up to the prefix cap.
    CHECK_FALSE(otp::admitSend(s, l, keys("y", "ip2", "net"), clock.now()));
    CHECK_FALSE(otp::admitSend(s, l, keys("z", "ip3", "net"), clock.now()));
    CHECK(scopeOf(otp::admitSend(s, l, keys("w", "ip4", "net"), clock.now())) == "prefix");
    // A send without an IP counts against neither.
    CHECK_FALSE(otp::admitSend(s, l, keys("v"), clock.now()));
}

TEST_CASE("an app gets at most app_sends per app_window", "[limits]") {
    MemoryLimitStore s;
    config::RateLimits l;
    l.appSends = 4;
    ManualClock clock{T0 + 10};
    for (int i = 0; i < 4; ++i) CHECK_FALSE(otp::admitSend(s, l, keys("d" + std::to_string(i)), clock.now()));
    auto r = otp::admitSend(s, l, keys("e"), clock.now());
    REQUIRE(r);
    CHECK(r->scope == "app");
    CHECK(r->retryAfter == 60);
    clock.advance(60);
    CHECK_FALSE(otp::admitSend(s, l, keys("e"), clock.now()));
}

TEST_CASE("network prefixes are /24 for IPv4 and /64 for IPv6", "[limits]") {
    CHECK(otp::networkPrefix("203.0.113.77") == "203.0.113.0/24");
    CHECK(otp::networkPrefix("::ffff:203.0.113.77") == "203.0.113.0/24");
    CHECK(otp::networkPrefix("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64");
    CHECK(otp::networkPrefix("2001:db8:1:2::9") == otp::networkPrefix("2001:db8:1:2:ffff::1"));
    CHECK(otp::networkPrefix("2001:db8:1:3::9") != otp::networkPrefix("2001:db8:1:2::9"));
    CHECK(otp::networkPrefix("not an ip").empty());
}

TEST_CASE("consecutive failures lock a subject out for a doubling delay, capped", "[limits]") {
    MemoryLimitStore s;
    const config::RateLimits l;
    ManualClock clock{T0};
    for (int i = 0; i < 9; ++i) {
        CHECK_FALSE(otp::checkVerify(s, "app", "subj", clock.now()));
        otp::recordVerifyFailure(s, l, "app", "subj", clock.now());
    }
    CHECK_FALSE(otp::checkVerify(s, "app", "subj", clock.now()));
    otp::recordVerifyFailure(s, l, "app", "subj", clock.now());  // the 10th
    auto r = otp::checkVerify(s, "app", "subj", clock.now());
    REQUIRE(r);
    CHECK(r->scope == "subject-lockout");
    CHECK(r->retryAfter == 60);
    CHECK_FALSE(otp::checkVerify(s, "other-app", "subj", clock.now()));
    CHECK_FALSE(otp::checkVerify(s, "app", "other", clock.now()));
    std::int64_t expected = 60;
    for (int i = 0; i < 8; ++i) {
        clock.advance(expected);
        CHECK_FALSE(otp::checkVerify(s, "app", "subj", clock.now()));
        otp::recordVerifyFailure(s, l, "app", "subj", clock.now());
        expected = std::min<std::int64_t>(expected * 2, 3600);
        auto again = otp::checkVerify(s, "app", "subj", clock.now());
        REQUIRE(again);
        CHECK(again->retryAfter == expected);
    }
    CHECK(expected == 3600);
    clock.advance(3600);
    otp::recordVerifySuccess(s, "app", "subj");
    CHECK(s.failures.empty());
    otp::recordVerifyFailure(s, l, "app", "subj", clock.now());
    CHECK_FALSE(otp::checkVerify(s, "app", "subj", clock.now()));
}

TEST_CASE("rate_limits is read per app and checked", "[limits][config]") {
    const std::string head = "[apps.shop]\n[apps.shop.rate_limits]\n";
    auto c = config::parse(head +
                               "resend_cooldown = 0\ndestination_sends = 3\ndestination_window = 60\n"
                               "ip_sends = 7\nip_window = 120\nprefix_sends = 9\nprefix_window = 180\n"
                               "app_sends = 11\napp_window = 1\nmax_subject_failures = 100\n"
                               "subject_lockout = 5\nsubject_max_lockout = 50\n",
                           "t.toml");
    const auto& l = c.apps.at("shop").rateLimits;
    CHECK(l.resendCooldown.count() == 0);
    CHECK(l.destinationSends == 3);
    CHECK(l.destinationWindow.count() == 60);
    CHECK(l.ipSends == 7);
    CHECK(l.ipWindow.count() == 120);
    CHECK(l.prefixSends == 9);
    CHECK(l.prefixWindow.count() == 180);
    CHECK(l.appSends == 11);
    CHECK(l.appWindow.count() == 1);
    CHECK(l.maxSubjectFailures == 100);
    CHECK(l.subjectLockout.count() == 5);
    CHECK(l.subjectMaxLockout.count() == 50);
    CHECK(config::parse("[apps.shop]\n", "t.toml").apps.at("shop").rateLimits.destinationSends == 5);

    const auto fails = [&](const std::string& body, const std::string& needle) {
        try {
            (void)config::parse(head + body, "t.toml");
            FAIL("accepted: " + body);
        } catch (const config::ConfigError& e) {
            CHECK_THAT(e.what(), Catch::Contains(needle));
            CHECK_THAT(e.what(), Catch::StartsWith("t.toml:"));
        }
    };
    fails("max_subject_failures = 101\n", "apps.shop.rate_limits.max_subject_failures: must be between 1 and 100");
    fails("max_subject_failures = 0\n", "max_subject_failures");
    fails("destination_sends = 0\n", "destination_sends");
    fails("resend_cooldown = -1\n", "resend_cooldown");
    fails("ip_window = \"15m\"\n", "must be an integer");
    fails("max_sends_per_ip = 3\n", "unknown key");
    fails("subject_lockout = 600\nsubject_max_lockout = 60\n", "subject_max_lockout");
}

// ---- through the service and the real store ----

namespace {

class CountingChannel final : public channel::Channel {
public:
    std::string driverName() const override { return "counting"; }
    void deliver(channel::Message m, Done done) override {
        {
            std::lock_guard lock(mutex);
            codes.push_back(m.code.str());
        }
        channel::DeliveryResult r;
        r.driver = "counting";
        r.outcome = channel::DeliveryOutcome::Accepted;
        done(std::move(r));
    }
    std::size_t sent() {
        std::lock_guard lock(mutex);
        return codes.size();
    }
    std::string last() {
        std::lock_guard lock(mutex);
        return codes.back();
    }
    std::mutex mutex;
    std::vector<std::string> codes;
};

struct Service {
    fs::path dir;
    config::Config cfg;
    ManualClock clock{T0};
    CountingChannel channel;
    std::unique_ptr<store::Store> store;
    std::unique_ptr<otp::OtpService> service;
    SecretBytes key = crypto::randomSecret(32);
    SecretBytes pepper = crypto::randomSecret(32);

    Service() {
        char tmpl[] = "/tmp/tf-limits-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        open();
    }
    void open() {
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = SecretBytes(key.data(), key.size());
        store = store::openSqlcipherStore(std::move(o));
        service = std::make_unique<otp::OtpService>(
            cfg, *store, std::map<std::string, channel::Channel*>{{"email", &channel}, {"whatsapp", &channel}}, clock,
            SecretBytes(pepper.data(), pepper.size()), [](std::function<void()> f) { f(); },
            [](std::chrono::milliseconds, std::function<void()>) {});
    }
    void reopen() {
        service.reset();
        store->close();
        open();
    }
    ~Service() {
        service.reset();
        store->close();
        fs::remove_all(dir);
    }
    template <typename T, typename F>
    otp::Outcome<T> wait(F&& start) {
        std::promise<otp::Outcome<T>> p;
        auto f = p.get_future();
        start([&](otp::Outcome<T> o) { p.set_value(std::move(o)); });
        return f.get();
    }
    otp::Outcome<otp::SendResult> send(const std::string& to, const std::string& ip = "") {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        if (!ip.empty()) in.clientIp = ip;
        return wait<otp::SendResult>([&](auto cb) { service->send(std::move(in), cb); });
    }
    otp::Outcome<otp::SendResult> resend(const std::string& id) {
        return wait<otp::SendResult>([&](auto cb) { service->resend(id, cb); });
    }
    otp::Outcome<otp::VerifyResult> verify(const std::string& id, const std::string& code) {
        otp::VerifyInput in;
        in.id = id;
        in.code = SecretString(code);
        return wait<otp::VerifyResult>([&](auto cb) { service->verify(std::move(in), cb); });
    }
    static std::string wrong(const std::string& code) {
        std::string w = code;
        w[0] = w[0] == '9' ? '0' : static_cast<char>(w[0] + 1);
        return w;
    }
};

std::string id(const otp::Outcome<otp::SendResult>& o) {
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    return std::get<otp::SendResult>(o).request.id;
}

otp::Failure failure(const auto& o) {
    REQUIRE(std::holds_alternative<otp::Failure>(o));
    return std::get<otp::Failure>(o);
}

}  // namespace

TEST_CASE_METHOD(Service, "a refused send answers RateLimited and stores and sends nothing", "[limits][service]") {
    (void)id(send("a@example.org"));
    const auto& f = failure(send("a@EXAMPLE.org"));
    CHECK(f.error == "RateLimited");
    CHECK(f.parameters["scope"] == "destination-cooldown");
    CHECK(f.parameters["retryAfter"] == 30);
    CHECK(channel.sent() == 1);
    clock.advance(30);
    (void)id(send("a@example.org"));
    CHECK(channel.sent() == 2);
}

TEST_CASE_METHOD(Service, "resends count against the destination's cap", "[limits][service]") {
    cfg.apps.at("default").maxSends = 100;
    const std::string r = id(send("cap@example.org"));
    for (int i = 0; i < 4; ++i) {
        clock.advance(30);
        (void)id(resend(r));
    }
    clock.advance(30);
    const auto& f = failure(resend(r));
    CHECK(f.parameters["scope"] == "destination");
    CHECK(f.parameters["retryAfter"] == 900 - 150);
    CHECK(channel.sent() == 5);
    clock.set(T0 + 900);  // a new window (the request itself has expired by now)
    (void)id(send("cap@example.org"));
}

TEST_CASE_METHOD(Service, "IP and prefix caps count sends that carry a client IP", "[limits][service]") {
    cfg.apps.at("default").rateLimits.ipSends = 2;
    cfg.apps.at("default").rateLimits.prefixSends = 3;
    (void)id(send("i1@example.org", "198.51.100.7"));
    (void)id(send("i2@example.org", "198.51.100.7"));
    CHECK(failure(send("i3@example.org", "198.51.100.7")).parameters["scope"] == "ip");
    (void)id(send("i4@example.org", "198.51.100.8"));
    CHECK(failure(send("i5@example.org", "198.51.100.9")).parameters["scope"] == "prefix");
    (void)id(send("i6@example.org", "198.51.101.9"));  // another /24
    (void)id(send("i7@example.org"));                  // no IP given
}

TEST_CASE_METHOD(Service, "concurrent sends cannot overshoot the app cap", "[limits][service]") {
    cfg.apps.at("default").rateLimits.appSends = 10;
    std::vector<std::future<otp::Outcome<otp::SendResult>>> all;
    for (int i = 0; i < 30; ++i)
        all.push_back(std::async(std::launch::async, [this, i] { return send("c" + std::to_string(i) + "@example.org"); }));
    int ok = 0, limited = 0;
    for (auto& f : all) {
        auto o = f.get();
        if (std::holds_alternative<otp::SendResult>(o)) ++ok;
        else if (std::get<otp::Failure>(o).parameters["scope"] == "app") ++limited;
    }
    CHECK(ok == 10);
    CHECK(limited == 20);
    CHECK(channel.sent() == 10);
}

TEST_CASE_METHOD(Service, "the subject lockout survives a resend, a new send and a restart; success resets it",
                 "[limits][service]") {
    cfg.apps.at("default").maxAttempts = 100;
    cfg.apps.at("default").maxSends = 100;
    std::string r = id(send("lock@example.org"));
    for (int i = 0; i < 5; ++i) REQUIRE(std::holds_alternative<otp::VerifyResult>(verify(r, "000000")));
    clock.advance(30);
    (void)id(resend(r));  // a new code: the count goes on
    for (int i = 0; i < 4; ++i) REQUIRE(std::holds_alternative<otp::VerifyResult>(verify(r, Service::wrong(channel.last()))));
    clock.advance(30);
    r = id(send("lock@example.org"));  // a new request: the count goes on
    REQUIRE(std::holds_alternative<otp::VerifyResult>(verify(r, Service::wrong(channel.last()))));  // the 10th
    const auto& f = failure(verify(r, channel.last()));  // even the right code is refused now
    CHECK(f.error == "RateLimited");
    CHECK(f.parameters["scope"] == "subject-lockout");
    CHECK(f.parameters["retryAfter"] == 60);
    reopen();
    clock.advance(59);
    CHECK(failure(verify(r, channel.last())).parameters["retryAfter"] == 1);
    clock.advance(1);
    auto v = verify(r, channel.last());
    REQUIRE(std::holds_alternative<otp::VerifyResult>(v));
    CHECK(std::get<otp::VerifyResult>(v).approved);
    // Success reset the count: the next nine failures lock nothing.
    clock.advance(30);
    r = id(send("lock@example.org"));
    for (int i = 0; i < 9; ++i) REQUIRE(std::holds_alternative<otp::VerifyResult>(verify(r, Service::wrong(channel.last()))));
    auto last = verify(r, channel.last());
    REQUIRE(std::holds_alternative<otp::VerifyResult>(last));
    CHECK(std::get<otp::VerifyResult>(last).approved);
}

TEST_CASE_METHOD(Service, "send counters survive a restart", "[limits][service]") {
    (void)id(send("keep@example.org"));
    reopen();
    clock.advance(5);
    const auto& f = failure(send("keep@example.org"));
    CHECK(f.parameters["scope"] == "destination-cooldown");
    CHECK(f.parameters["retryAfter"] == 25);
}
