// Fraud signals: the velocity rules over an in-memory store, their
// configuration, and the service through the real store (flag vs block,
// window expiry with the ManualClock, keyed hashes only).
#include "store_fixtures.hpp"
#include "config/config.hpp"
#include "otp/fraud.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/clock.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

class MemoryFraudStore final : public otp::FraudStore {
public:
    std::int64_t countFraudMembers(std::string_view rule, std::string_view key, std::string_view except,
                                   std::int64_t since, std::int64_t cap) override {
        largestAsk = std::max(largestAsk, cap);
        return std::min<std::int64_t>(cap, static_cast<std::int64_t>(seen(rule, key, except, since).size()));
    }
    std::optional<std::int64_t> fraudMemberSeen(std::string_view rule, std::string_view key, std::string_view except,
                                                std::int64_t since, std::int64_t n) override {
        largestAsk = std::max(largestAsk, n);
        auto times = seen(rule, key, except, since);
        std::sort(times.rbegin(), times.rend());
        if (n < 1 || n > static_cast<std::int64_t>(times.size())) return std::nullopt;
        return times[static_cast<std::size_t>(n - 1)];
    }
    void putFraudMember(std::string_view rule, std::string_view key, std::string_view member, std::int64_t at,
                        std::int64_t expiresAt) override {
        sets[{std::string(rule), std::string(key)}][std::string(member)] = {at, expiresAt};
    }
    std::map<std::pair<std::string, std::string>, std::map<std::string, std::pair<std::int64_t, std::int64_t>>> sets;
    std::int64_t largestAsk = 0;  // the most rows a rule asked the store to look at

private:
    std::vector<std::int64_t> seen(std::string_view rule, std::string_view key, std::string_view except,
                                   std::int64_t since) {
        std::vector<std::int64_t> out;
        for (const auto& [member, e] : sets[{std::string(rule), std::string(key)}])
            if (e.first > since && member != except) out.push_back(e.first);
        return out;
    }
};

constexpr std::int64_t T0 = 1'800'000'000;

config::FraudRules rules(int threshold, bool block) {
    config::FraudRules r;
    for (auto* rule : {&r.distinctDestinationsPerIp, &r.distinctDevicesPerDestination, &r.destinationPrefix}) {
        rule->threshold = threshold;
        rule->window = std::chrono::seconds(100);
        rule->block = block;
    }
    return r;
}

int sendNo = 0;
otp::FraudKeys keys(const std::string& dest, const std::string& ip, const std::string& device = "",
                    const std::string& prefix = "") {
    return otp::FraudKeys{"app", dest, ip, device, prefix, "send" + std::to_string(++sendNo)};
}

// Checks and, when not blocked, records, as the service does.
otp::FraudVerdict send(MemoryFraudStore& s, const config::FraudRules& r, const otp::FraudKeys& k, std::int64_t now) {
    auto v = otp::checkFraud(s, r, k, now);
    if (!v.block) otp::recordFraud(s, r, k, now);
    return v;
}

}  // namespace

TEST_CASE("the fraud defaults flag and never block", "[fraud]") {
    const config::FraudRules r;
    CHECK(r.distinctDestinationsPerIp.threshold == 10);
    CHECK(r.distinctDestinationsPerIp.window.count() == 3600);
    CHECK(r.distinctDevicesPerDestination.threshold == 5);
    CHECK(r.distinctDevicesPerDestination.window.count() == 3600);
    CHECK(r.destinationPrefix.threshold == 50);
    CHECK(r.destinationPrefix.window.count() == 3600);
    CHECK_FALSE(r.distinctDestinationsPerIp.block);
    CHECK_FALSE(r.distinctDevicesPerDestination.block);
    CHECK_FALSE(r.destinationPrefix.block);
}

TEST_CASE("distinct destinations per IP: flag lets the send through", "[fraud]") {
    MemoryFraudStore s;
    const auto r = rules(2, false);
    CHECK(send(s, r, keys("d1", "ip"), T0).flagged.empty());
    CHECK(send(s, r, keys("d2", "ip"), T0).flagged.empty());
    CHECK(send(s, r, keys("d1", "ip"), T0 + 1).flagged.empty());  // not a new destination
    auto v = send(s, r, keys("d3", "ip"), T0 + 2);
    CHECK_FALSE(v.block);
    REQUIRE(v.flagged == std::vector<std::string>{"distinct_destinations_per_ip"});
    CHECK(send(s, r, keys("d4", "other-ip"), T0 + 2).flagged.empty());
}

TEST_CASE("distinct destinations per IP: block refuses and records nothing, until the window moves on", "[fraud]") {
    MemoryFraudStore s;
    const auto r = rules(2, true);
    CHECK_FALSE(send(s, r, keys("d1", "ip"), T0).block);
    CHECK_FALSE(send(s, r, keys("d2", "ip"), T0 + 10).block);
    auto v = send(s, r, keys("d3", "ip"), T0 + 20);
    REQUIRE(v.block);
    CHECK(v.block->scope == "fraud:distinct_destinations_per_ip");
    CHECK(v.block->retryAfter == 80);  // d1 leaves the window at T0 + 100
    CHECK(s.sets.at({"distinct_destinations_per_ip", "app/ip"}).size() == 2);
    CHECK_FALSE(send(s, r, keys("d2", "ip"), T0 + 30).block);  // a known destination is fine
    CHECK(send(s, r, keys("d3", "ip"), T0 + 99).block);
    CHECK_FALSE(send(s, r, keys("d3", "ip"), T0 + 100).block);
}

TEST_CASE("distinct devices per destination", "[fraud]") {
    MemoryFraudStore s;
    SECTION("flag") {
        const auto r = rules(1, false);
        CHECK(send(s, r, keys("d", "", "phone"), T0).flagged.empty());
        CHECK(send(s, r, keys("d", "", "phone"), T0).flagged.empty());
        CHECK(send(s, r, keys("d", "", "laptop"), T0).flagged ==
              std::vector<std::string>{"distinct_devices_per_destination"});
        CHECK(send(s, r, keys("other", "", "laptop"), T0).flagged.empty());
    }
    SECTION("block") {
        const auto r = rules(1, true);
        CHECK_FALSE(send(s, r, keys("d", "", "phone"), T0).block);
        auto v = send(s, r, keys("d", "", "laptop"), T0 + 40);
        REQUIRE(v.block);
        CHECK(v.block->scope == "fraud:distinct_devices_per_destination");
        CHECK(v.block->retryAfter == 60);
        CHECK_FALSE(send(s, r, keys("d", "", "laptop"), T0 + 100).block);
    }
    SECTION("no device, no rule") {
        const auto r = rules(1, true);
        for (int i = 0; i < 5; ++i) CHECK_FALSE(send(s, r, keys("d", ""), T0).block);
        CHECK(s.sets.empty());
    }
}

TEST_CASE("sends per destination prefix", "[fraud]") {
    MemoryFraudStore s;
    const auto r = rules(3, true);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(send(s, r, keys("d" + std::to_string(i), "", "", "p"), T0 + i).block);
    auto v = send(s, r, keys("d9", "", "", "p"), T0 + 5);
    REQUIRE(v.block);
    CHECK(v.block->scope == "fraud:destination_prefix");
    CHECK(v.block->retryAfter == 95);
    CHECK_FALSE(send(s, r, keys("d9", "", "", "other"), T0 + 5).block);
    CHECK_FALSE(send(s, r, keys("d9", "", "", "p"), T0 + 100).block);
    // Members that left the window stay until retention deletes them; they no longer count.
    CHECK(s.sets.at({"destination_prefix", "app/p"}).size() == 4);
}

TEST_CASE("far more members than the threshold: the block lasts until enough have left", "[fraud]") {
    MemoryFraudStore s;
    // Ten destinations from one IP let through by a flagging rule...
    auto flagging = rules(1000, false);
    for (int i = 0; i < 10; ++i) CHECK_FALSE(send(s, flagging, keys("d" + std::to_string(i), "ip"), T0 + i).block);
    // ...then the rule blocks at 3: eleven in the window, back at 3 once only
    // two others remain, i.e. when the one seen at T0 + 7 leaves (T0 + 107).
    const auto blocking = rules(3, true);
    auto v = otp::checkFraud(s, blocking, keys("d99", "ip"), T0 + 20);
    REQUIRE(v.block);
    CHECK(v.block->scope == "fraud:distinct_destinations_per_ip");
    CHECK(v.block->retryAfter == 87);
    // An address already in the set does not count twice.
    v = otp::checkFraud(s, blocking, keys("d9", "ip"), T0 + 20);
    REQUIRE(v.block);
    CHECK(v.block->retryAfter == 86);
    CHECK_FALSE(otp::checkFraud(s, blocking, keys("d99", "ip"), T0 + 107).block);
}

TEST_CASE("a rule asks the store about no more members than its threshold", "[fraud]") {
    MemoryFraudStore s;
    auto r = rules(1000, false);
    for (int i = 0; i < 200; ++i) send(s, r, keys("d" + std::to_string(i), "ip", "dev", "p"), T0);
    s.largestAsk = 0;
    auto blocking = rules(7, true);
    REQUIRE(otp::checkFraud(s, blocking, keys("x", "ip", "dev", "p"), T0 + 1).block);
    CHECK(s.largestAsk == 7);
}

TEST_CASE("a flagging rule and a blocking rule: the block wins", "[fraud]") {
    MemoryFraudStore s;
    auto r = rules(1, false);
    r.destinationPrefix.block = true;
    CHECK_FALSE(send(s, r, keys("d1", "ip", "", "p"), T0).block);
    auto v = otp::checkFraud(s, r, keys("d2", "ip", "", "p"), T0);
    REQUIRE(v.block);
    CHECK(v.block->scope == "fraud:destination_prefix");
    CHECK(v.flagged == std::vector<std::string>{"distinct_destinations_per_ip"});
}

TEST_CASE("destination prefixes: a number without its last 3 digits; none for email", "[fraud]") {
    CHECK(otp::destinationPrefix("+4915112345678") == "+4915112345");
    // A domain is no range: gmail.com would be a large share of all sends.
    CHECK(otp::destinationPrefix("a@example.org") == "");
    CHECK(otp::destinationPrefix("a@gmail.com") == "");
    CHECK(otp::destinationPrefix("") == "");
}

TEST_CASE("fraud rules are read per app and checked", "[fraud][config]") {
    const std::string head = "[apps.shop]\n";
    auto c = config::parse(head +
                               "[apps.shop.fraud.distinct_destinations_per_ip]\nthreshold = 3\nwindow = 60\n"
                               "action = \"block\"\n[apps.shop.fraud.destination_prefix]\naction = \"flag\"\n",
                           "t.toml");
    const auto& f = c.apps.at("shop").fraud;
    CHECK(f.distinctDestinationsPerIp.threshold == 3);
    CHECK(f.distinctDestinationsPerIp.window.count() == 60);
    CHECK(f.distinctDestinationsPerIp.block);
    CHECK(f.distinctDevicesPerDestination.threshold == 5);
    CHECK_FALSE(f.destinationPrefix.block);
    const auto fails = [&](const std::string& body, const std::string& what) {
        try {
            (void)config::parse(head + "[apps.shop.fraud.distinct_devices_per_destination]\n" + body, "t.toml");
            FAIL("accepted: " << body);
        } catch (const config::ConfigError& e) {
            CHECK_THAT(e.what(), Catch::Matchers::Contains(what));
        }
    };
    fails("action = \"deny\"\n", "action");
    fails("threshold = 0\n", "threshold");
    fails("threshold = 10001\n", "threshold");
    fails("window = 86401\n", "window");
    fails("limit = 3\n", "unknown key");
    try {
        (void)config::parse(head + "[apps.shop.fraud.velocity]\nthreshold = 1\n", "t.toml");
        FAIL("accepted an unknown rule");
    } catch (const config::ConfigError& e) {
        CHECK_THAT(e.what(), Catch::Matchers::Contains("unknown table"));
    }
}

// ---- through the service and the real store ----

namespace {

class CountingChannel final : public channel::Channel {
public:
    std::string driverName() const override { return "counting"; }
    void deliver(channel::Message, Done done) override {
        {
            std::lock_guard lock(mutex);
            ++count;
        }
        channel::DeliveryResult r;
        r.driver = "counting";
        r.outcome = channel::DeliveryOutcome::Accepted;
        done(std::move(r));
    }
    std::size_t sent() {
        std::lock_guard lock(mutex);
        return count;
    }
    std::mutex mutex;
    std::size_t count = 0;
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
        char tmpl[] = "/tmp/tf-fraud-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        auto& app = cfg.apps.at("default");
        app.rateLimits.resendCooldown = std::chrono::seconds(0);
        app.fraud.distinctDestinationsPerIp = {2, std::chrono::seconds(600), true};
        app.fraud.distinctDevicesPerDestination = {1, std::chrono::seconds(600), false};
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = SecretBytes(key.data(), key.size());
        store = store::openSqlcipherStore(std::move(o));
        service = std::make_unique<otp::OtpService>(
            cfg, *store, std::map<std::string, channel::Channel*>{{"email", &channel}, {"whatsapp", &channel}}, clock,
            SecretBytes(pepper.data(), pepper.size()), [](std::function<void()> f) { f(); },
            [](std::chrono::milliseconds, std::function<void()>) {});
    }
    ~Service() {
        service.reset();
        store->close();
        fs::remove_all(dir);
    }
    otp::Outcome<otp::SendResult> send(const std::string& to, const std::string& ip, const std::string& device = "") {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        in.clientIp = ip;
        if (!device.empty()) in.device = device;
        std::promise<otp::Outcome<otp::SendResult>> p;
        auto f = p.get_future();
        service->send(std::move(in), [&](otp::Outcome<otp::SendResult> o) { p.set_value(std::move(o)); });
        return f.get();
    }
    std::vector<otp::AuditRecord> audit() {
        otp::AuditQuery q;
        q.limit = 1000;
        std::promise<otp::Outcome<std::vector<otp::AuditRecord>>> p;
        auto f = p.get_future();
        service->auditList(q, [&](auto o) { p.set_value(std::move(o)); });
        return std::get<std::vector<otp::AuditRecord>>(f.get());
    }
    std::vector<std::string> outcomes() {
        std::vector<std::string> out;
        for (const auto& r : audit()) out.push_back(r.outcome);
        return out;
    }
};

}  // namespace

TEST_CASE_METHOD(Service, "a blocking rule answers RateLimited fraud:<rule>, stores and sends nothing",
                 "[fraud][service]") {
    REQUIRE(std::holds_alternative<otp::SendResult>(send("a@example.org", "192.0.2.1")));
    REQUIRE(std::holds_alternative<otp::SendResult>(send("b@example.org", "192.0.2.1")));
    auto o = send("c@example.org", "192.0.2.1");
    REQUIRE(std::holds_alternative<otp::Failure>(o));
    const auto& f = std::get<otp::Failure>(o);
    CHECK(f.error == "RateLimited");
    CHECK(f.parameters["scope"] == "fraud:distinct_destinations_per_ip");
    CHECK(f.parameters["retryAfter"] == 600);
    CHECK(channel.sent() == 2);
    CHECK(outcomes().back() == "refused:fraud:distinct_destinations_per_ip");
    // Nothing was counted for the refused send: the rate limits neither.
    clock.advance(600);
    REQUIRE(std::holds_alternative<otp::SendResult>(send("c@example.org", "192.0.2.1")));
}

TEST_CASE_METHOD(Service, "a flagging rule audits flagged:<rule> and the send goes ahead", "[fraud][service]") {
    REQUIRE(std::holds_alternative<otp::SendResult>(send("a@example.org", "192.0.2.1", "phone")));
    auto o = send("a@example.org", "192.0.2.1", "laptop");
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    CHECK(channel.sent() == 2);
    const auto records = audit();
    REQUIRE(records.size() == 3);  // success, then the second send's flag and success
    CHECK(records[0].outcome == "success");
    CHECK(records[1].outcome == "flagged:distinct_devices_per_destination");
    CHECK(records[1].requestId == std::get<otp::SendResult>(o).request.id);
    CHECK(records[2].outcome == "success");
}

TEST_CASE_METHOD(Service, "fraud sets hold keyed hashes only", "[fraud][service]") {
    REQUIRE(std::holds_alternative<otp::SendResult>(send("someone@example.org", "198.51.100.7", "Firefox 128")));
    service.reset();
    store->close();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir / "t.db").c_str(), &db) == SQLITE_OK);
    const std::string pragma = test::keyPragmas(key);
    REQUIRE(sqlite3_exec(db, pragma.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    std::string all;
    int rows = 0;
    auto collect = [](void* p, int n, char** v, char**) {
        auto* pair = static_cast<std::pair<std::string*, int*>*>(p);
        for (int i = 0; i < n; ++i) *pair->first += std::string(v[i] ? v[i] : "") + "|";
        ++*pair->second;
        return 0;
    };
    std::pair<std::string*, int*> out{&all, &rows};
    REQUIRE(sqlite3_exec(db, "SELECT rule, key, member FROM fraud_sets", collect, &out, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(rows == 2);  // destinations per IP, devices per destination: an email address has no range
    for (const char* clear : {"someone", "example.org", "198.51.100", "Firefox"}) CHECK(all.find(clear) == std::string::npos);
    store = store::openSqlcipherStore([&] {
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = SecretBytes(key.data(), key.size());
        return o;
    }());
}
