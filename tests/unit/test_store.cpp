#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <latch>
#include <sys/stat.h>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/tf-store-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

otp::OtpRequest sample(const std::string& id, std::int64_t t = 1000) {
    otp::OtpRequest r;
    r.id = id;
    r.app = "shop";
    r.channel = "email";
    r.destination = "a@example.org";
    r.subjectHash = "subj";
    r.purpose = "login";
    r.locale = "en";
    r.codeHash = crypto::sha256(id);
    r.createdAt = r.updatedAt = t;
    r.expiresAt = t + 600;
    return r;
}

std::unique_ptr<store::Store> open(const fs::path& db, const SecretBytes& key) {
    store::SqlcipherOptions o;
    o.path = db.string();
    o.key = key.clone();
    return store::openSqlcipherStore(std::move(o));
}

}  // namespace

TEST_CASE("requests round-trip through the encrypted store", "[store]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    auto r = sample("req1");
    r.reference = "order 7";
    store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(r); });
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req1"); });
    REQUIRE(back);
    CHECK(back->destination == "a@example.org");
    CHECK(back->reference == "order 7");
    REQUIRE(back->codeHash);
    CHECK(*back->codeHash == *r.codeHash);
    CHECK(back->status == otp::Status::Pending);

    back->finish(otp::Status::Approved, 1200);
    store::runSync(*s, [&](store::Transaction& t) { t.updateRequest(*back); });
    auto again = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req1"); });
    CHECK(again->status == otp::Status::Approved);
    CHECK_FALSE(again->codeHash);
    CHECK(*again->finishedAt == 1200);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("nope"); }));
}

TEST_CASE("newest pending request per app and subject", "[store]") {
    TempDir dir;
    auto s = open(dir.path / "t.db", crypto::randomSecret(32));
    store::runSync(*s, [&](store::Transaction& t) {
        t.insertRequest(sample("a", 1000));
        t.insertRequest(sample("b", 1000));  // same second: insertion order decides
        auto c = sample("c", 900);
        c.subjectHash = "other";
        t.insertRequest(c);
    });
    auto newest = store::runSync(*s, [](store::Transaction& t) { return t.findNewestPending("shop", "subj"); });
    REQUIRE(newest);
    CHECK(newest->id == "b");
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findNewestPending("other", "subj"); }));
}

TEST_CASE("a failing work item rolls back alone; its batch mates commit", "[store]") {
    TempDir dir;
    auto s = open(dir.path / "t.db", crypto::randomSecret(32));
    constexpr int n = 200;
    std::latch all(n);
    std::atomic<int> failures{0};
    for (int i = 0; i < n; ++i) {
        s->submit(
            [i](store::Transaction& t) {
                t.insertRequest(sample("r" + std::to_string(i)));
                if (i % 10 == 0) throw std::runtime_error("boom");
            },
            [&](std::exception_ptr e) {
                if (e) ++failures;
                all.count_down();
            });
    }
    all.wait();
    CHECK(failures == n / 10);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r10"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r11"); }));
    CHECK_THROWS(store::runSync(*s, [](store::Transaction& t) { t.insertRequest(sample("r11")); }));  // duplicate id
}

TEST_CASE("data survives reopening; a wrong key is refused and changes nothing", "[store]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    {
        auto s = open(dir.path / "t.db", key);
        store::runSync(*s, [](store::Transaction& t) { t.insertRequest(sample("keep")); });
    }
    std::ifstream in(dir.path / "t.db", std::ios::binary);
    std::string head(16, '\0');
    in.read(head.data(), 16);
    CHECK(head != std::string("SQLite format 3\0", 16));
    CHECK_THROWS_WITH(open(dir.path / "t.db", crypto::randomSecret(32)), Catch::Contains("store key does not match"));
    auto s = open(dir.path / "t.db", key);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("keep"); }));
}

TEST_CASE("key files: generated 0600, parsed as 64 hex digits, loose modes refused", "[store][keys]") {
    TempDir dir;
    const auto file = (dir.path / "k" / "store.key").string();
    CHECK_THROWS_WITH(store::loadKey("store-key", file, false), Catch::Contains("does not exist"));
    const auto generated = store::loadKey("store-key", file, true);
    CHECK(generated.size() == 32);
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    const auto loaded = store::loadKey("store-key", file, false);
    CHECK(crypto::constantTimeEqual(generated.view(), loaded.view()));
    ::chmod(file.c_str(), 0640);
    CHECK_THROWS_WITH(store::loadKey("store-key", file, false), Catch::Contains("chmod 600"));
    CHECK_THROWS_WITH(store::parseKey("abcd", "x"), Catch::Contains("64 hex digits"));
    CHECK_THROWS(store::parseKey(std::string(64, 'g'), "x"));
    CHECK(store::parseKey(std::string(64, 'a') + "\n", "x").size() == 32);
}

TEST_CASE("the request log: newest first by limit, returned oldest first, filtered by time", "[store][calls]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    store::runSync(*s, [](store::Transaction& t) {
        for (int i = 0; i < 5; ++i)
            t.insertCall(store::CallRecord{0, 100 + i, "io.twofactor.Otp.Send", i, i % 2 ? "ok" : "io.twofactor.Otp.RateLimited", 1000 + i, "", "", 0});
    });
    const auto all = store::runSync(*s, [](store::Transaction& t) { return t.findCalls(store::CallQuery{}); });
    REQUIRE(all.size() == 5);
    CHECK(all.front().at == 100);
    CHECK(all.back().at == 104);
    CHECK(all[1].result == "ok");
    CHECK(all[2].uid == 1002);
    CHECK(all[3].durationMs == 3);
    const auto last2 = store::runSync(*s, [](store::Transaction& t) { return t.findCalls(store::CallQuery{{}, {}, 2}); });
    REQUIRE(last2.size() == 2);
    CHECK(last2[0].at == 103);
    const auto window = store::runSync(*s, [](store::Transaction& t) { return t.findCalls(store::CallQuery{101, 103, 100}); });
    REQUIRE(window.size() == 2);
    CHECK(window[0].at == 101);
    CHECK(window[1].at == 102);
}

TEST_CASE("fraud sets: members after `since` counted up to a cap, the n-th most recent", "[store][fraud]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    store::runSync(*s, [](store::Transaction& t) {
        t.putFraudMember("r", "k", "a", 100, 200);
        t.putFraudMember("r", "k", "b", 150, 250);
        t.putFraudMember("r", "k", "c", 160, 260);
        t.putFraudMember("r", "k", "d", 170, 270);
        t.putFraudMember("r", "other", "e", 150, 250);
    });
    const auto count = [&](std::string_view except, std::int64_t since, std::int64_t cap) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.countFraudMembers("r", "k", except, since, cap); });
    };
    const auto seen = [&](std::string_view except, std::int64_t since, std::int64_t n) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.fraudMemberSeen("r", "k", except, since, n); });
    };
    CHECK(count("", 0, 10) == 4);
    CHECK(count("", 0, 2) == 2);
    CHECK(count("", 120, 10) == 3);
    CHECK(count("c", 120, 10) == 2);
    CHECK(count("", 170, 10) == 0);
    CHECK(seen("", 0, 1) == std::optional<std::int64_t>(170));
    CHECK(seen("d", 0, 1) == std::optional<std::int64_t>(160));
    CHECK(seen("", 0, 4) == std::optional<std::int64_t>(100));
    CHECK_FALSE(seen("", 120, 4));
    // A member seen again moves to its new time.
    store::runSync(*s, [](store::Transaction& t) { t.putFraudMember("r", "k", "a", 210, 310); });
    CHECK(count("", 200, 10) == 1);
    CHECK(seen("", 0, 1) == std::optional<std::int64_t>(210));
    CHECK(count("", 0, 10) == 4);
}

namespace {

constexpr std::int64_t kDay = 86400;

// At `now`: old and fresh rows of every retention category.
void seedRetention(store::Store& s, std::int64_t now) {
    store::runSync(s, [&](store::Transaction& t) {
        // Requests: 3 expired long ago (code hash kept while pending), 1 recent;
        // 2 created 100 days ago with IP and device, 1 fresh with them.
        for (int i = 0; i < 3; ++i) t.insertRequest(sample("old" + std::to_string(i), now - 2 * kDay));
        t.insertRequest(sample("recent", now - 100));
        for (int i = 0; i < 2; ++i) {
            auto r = sample("ancient" + std::to_string(i), now - 100 * kDay);
            r.clientIp = "192.0.2.7";
            r.device = "phone";
            t.insertRequest(r);
        }
        auto fresh = sample("fresh", now - 10);
        fresh.clientIp = "192.0.2.8";
        fresh.device = "laptop";
        t.insertRequest(fresh);
        // Deliveries: 5 old, 2 new. Request log: 4 old, 1 new.
        for (int i = 0; i < 7; ++i) {
            otp::DeliveryAttempt a;
            a.requestId = "old0";
            a.app = "shop";
            a.channel = "email";
            a.driver = "outbox";
            a.at = i < 5 ? now - 91 * kDay : now - 89 * kDay;
            a.outcome = "accepted";
            t.insertDeliveryAttempt(a);
        }
        for (int i = 0; i < 5; ++i)
            t.insertCall(store::CallRecord{0, i < 4 ? now - 95 * kDay : now - 5, "io.twofactor.Otp.Send", 1, "ok", 0, "", "", 0});
        // Rate counters: 2 stale, 1 live. Fraud set members: 3 expired, 1 not.
        t.putRateCounter("destination", "shop/a", otp::RateCounter{now - 2 * kDay, 1, now - 2 * kDay});
        t.putRateCounter("ip", "shop/b", otp::RateCounter{now - 3 * kDay, 4, now - 3 * kDay});
        t.putRateCounter("app", "shop", otp::RateCounter{now - 30, 9, now - 1});
        for (int i = 0; i < 4; ++i)
            t.putFraudMember("ip-dest", "k", "m" + std::to_string(i), now - 7200, i < 3 ? now - 3600 : now + 60);
        // Subject failures: "gone" has no request since the cutoff; "subj" has one; "locked" is locked.
        t.putSubjectFailures("shop", "gone", otp::SubjectFailures{3, 0});
        t.putSubjectFailures("shop", "subj", otp::SubjectFailures{2, 0});
        t.putSubjectFailures("shop", "locked", otp::SubjectFailures{12, now + 600});
    });
}

}  // namespace

TEST_CASE("retention purge: exact counts per category, dry run first", "[store][retention]") {
    TempDir dir;
    auto s = open(dir.path / "t.db", crypto::randomSecret(32));
    const std::int64_t now = 1'800'000'000;
    seedRetention(*s, now);
    store::RetentionPolicy policy;  // 24 h, 90 days

    auto check = [](const store::PurgeCounts& c) {
        CHECK(c.codeHashes == 5);  // old0..2 (expired 2 days ago) and ancient0..1
        CHECK(c.deliveries == 5);
        CHECK(c.requestLog == 4);
        CHECK(c.clientData == 2);
        CHECK(c.rateCounters == 2);
        CHECK(c.fraudSets == 3);
        CHECK(c.subjectFailures == 1);
    };
    const auto dry = store::purge(*s, now, policy, 2, true);
    check(dry);
    // The dry run deleted nothing: a second one counts the same.
    check(store::purge(*s, now, policy, 2, true));

    int batches = 0;
    const auto real = store::purge(*s, now, policy, 2, false, [&](const store::PurgeCounts&) { ++batches; });
    check(real);
    CHECK(batches >= 13);  // batches of 2: 3+3+3+2+2+2+1 at least, one per category ending short
    // Nothing left to purge.
    CHECK(store::purge(*s, now, policy, 2, true).total() == 0);

    auto old = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("old1"); });
    REQUIRE(old);
    CHECK_FALSE(old->codeHash);
    auto recent = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("recent"); });
    CHECK(recent->codeHash);
    auto ancient = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("ancient0"); });
    CHECK(ancient->clientIp.empty());
    CHECK(ancient->device.empty());
    auto fresh = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("fresh"); });
    CHECK(fresh->clientIp == "192.0.2.8");
    CHECK(fresh->device == "laptop");
    otp::DeliveryQuery q;
    q.limit = 100;
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.findDeliveryAttempts(q); }).size() == 2);
    store::CallQuery cq;
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.findCalls(cq); }).size() == 1);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.countFraudMembers("ip-dest", "k", "", 0, 10); }) == 1);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRateCounter("app", "shop"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRateCounter("ip", "shop/b"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "subj"); })->failures == 2);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "gone"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "locked"); })->failures == 12);
}

TEST_CASE("retention purge interleaves with other work and records runs", "[store][retention]") {
    TempDir dir;
    auto s = open(dir.path / "t.db", crypto::randomSecret(32));
    const std::int64_t now = 1'800'000'000;
    store::runSync(*s, [&](store::Transaction& t) {
        for (int i = 0; i < 250; ++i) t.insertCall(store::CallRecord{0, now - 100 * kDay, "m", 1, "ok", 0, "", "", 0});
    });
    // Work queued from the progress callback runs between two batches.
    std::vector<std::int64_t> seenBetween;
    const auto counts = store::purge(*s, now, store::RetentionPolicy{}, 100, false, [&](const store::PurgeCounts& c) {
        if (c.requestLog > 0 && c.requestLog < 250) {
            seenBetween.push_back(store::runSync(*s, [](store::Transaction& t) {
                store::CallQuery q;
                q.limit = 1000;
                return static_cast<std::int64_t>(t.findCalls(q).size());
            }));
        }
    });
    CHECK(counts.requestLog == 250);
    CHECK(seenBetween == std::vector<std::int64_t>{150, 50});

    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.lastRetentionRun(); }));
    store::RetentionRun run;
    run.started = now;
    run.finished = now + 2;
    run.trigger = "manual";
    run.counts = counts;
    store::runSync(*s, [&](store::Transaction& t) { t.insertRetentionRun(run); });
    auto last = store::runSync(*s, [](store::Transaction& t) { return t.lastRetentionRun(); });
    REQUIRE(last);
    CHECK(last->trigger == "manual");
    CHECK(last->finished == now + 2);
    CHECK(last->counts.requestLog == 250);
}

TEST_CASE("a subject's data is found, rectified and erased through the keyed hash", "[store][gdpr]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    auto a = sample("req-a");
    auto b = sample("req-b");
    b.app = "other-app";  // never synced from a configuration: inserting it is enough to be found
    auto c = sample("req-c");
    c.subjectHash = "someone-else";
    c.destination = "c@example.org";
    c.fallbackDestination = "a@example.org";
    store::runSync(*s, [&](store::Transaction& t) {
        for (const auto* r : {&a, &b, &c}) t.insertRequest(*r);
        otp::DeliveryAttempt d;
        d.requestId = "req-a";
        d.app = "shop";
        d.channel = "email";
        d.driver = "ses";
        d.at = 1000;
        d.outcome = "accepted";
        d.providerMessageId = "ses-1";
        t.insertDeliveryAttempt(d);
        t.putSubjectFailures("shop", "subj", otp::SubjectFailures{2, 0});
    });
    auto data = store::runSync(*s, [](store::Transaction& t) { return t.findSubjectData("subj", "a@example.org"); });
    CHECK(data.requests.size() == 2);
    CHECK(data.fallbackRequests.size() == 1);
    CHECK(data.deliveries.size() == 1);
    CHECK(data.failures.size() == 1);

    const auto moved = store::runSync(*s, [](store::Transaction& t) {
        return t.rectifySubject("subj", "a@example.org", "subj2", "n@example.org");
    });
    CHECK(moved.requests == 2);
    CHECK(moved.fallbacks == 1);
    CHECK(moved.failures == 1);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectData("subj", "a@example.org"); }).empty());
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req-a"); });
    REQUIRE(back);
    CHECK(back->destination == "n@example.org");

    const auto erased =
        store::runSync(*s, [](store::Transaction& t) { return t.eraseSubject("subj2", "n@example.org"); });
    CHECK(erased.requests == 2);
    CHECK(erased.deliveries == 1);
    CHECK(erased.fallbacks == 1);
    CHECK(erased.failures == 1);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectData("subj2", "n@example.org"); }).empty());
    auto other = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req-c"); });
    REQUIRE(other);  // another subject's request stays, without the erased fallback address
    CHECK(other->fallbackDestination.empty());
}

TEST_CASE("delivery jobs: claimed only when due or orphaned, finished only by their holder", "[store][jobs]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    const std::int64_t now = 1000;
    store::runSync(*s, [&](store::Transaction& t) {
        for (const char* id : {"held", "lapsed", "orphan", "foreign"}) t.insertRequest(sample(id));
        // held: a live lease of this start; lapsed: its lease ran out;
        // orphan: an earlier start on this node; foreign: another node, live.
        t.putDeliveryJob({"held", 1, 0, now, "node/b", now + 30, now + 600, now, ""});
        t.putDeliveryJob({"lapsed", 1, 2, now - 40, "node/b", now - 10, now + 600, now - 40, "network: refused"});
        t.putDeliveryJob({"orphan", 1, 1, now + 5, "node/a", now + 30, now + 600, now, ""});
        t.putDeliveryJob({"foreign", 1, 0, now, "other/x", now + 30, now + 600, now, ""});
    });

    auto claimed = store::runSync(
        *s, [&](store::Transaction& t) { return t.claimDeliveryJobs("node/b", "node/", now, now + 30, 10); });
    std::vector<std::string> ids;
    for (const auto& j : claimed) ids.push_back(j.requestId);
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::string>{"lapsed", "orphan"});
    for (const auto& j : claimed) {
        // Returned as they were, so the caller knows whom it took them from.
        if (j.requestId == "orphan") CHECK(j.holder == "node/a");
        if (j.requestId == "lapsed") {
            CHECK(j.attempts == 2);
            CHECK(j.lastError == "network: refused");
        }
    }
    // Claimed once: a second sweep at the same time finds nothing left.
    CHECK(store::runSync(*s, [&](store::Transaction& t) {
              return t.claimDeliveryJobs("node/c", "node/x", now, now + 30, 10);
          }).empty());
    // A restart (node/c) takes over every job of this node's earlier starts, not another node's.
    auto restart = store::runSync(
        *s, [&](store::Transaction& t) { return t.claimDeliveryJobs("node/c", "node/", now, now + 100, 10); });
    CHECK(restart.size() == 3);
    auto foreign = store::runSync(*s, [](store::Transaction& t) { return t.findDeliveryJob("foreign"); });
    REQUIRE(foreign);
    CHECK(foreign->holder == "other/x");
    // Once its lease lapses, anyone may claim it.
    CHECK(store::runSync(*s, [&](store::Transaction& t) {
              return t.claimDeliveryJobs("node/c", "node/", now + 31, now + 61, 10);
          }).size() == 1);

    store::runSync(*s, [&](store::Transaction& t) {
        // Only the holder of the job's send may renew, record a retry, or finish it.
        CHECK_FALSE(t.renewDeliveryLease("held", 1, "node/b", now + 60));
        CHECK(t.renewDeliveryLease("held", 1, "node/c", now + 60));
        CHECK_FALSE(t.recordDeliveryRetry("held", 2, "node/c", 1, now + 5, now + 35, "x"));
        CHECK(t.recordDeliveryRetry("held", 1, "node/c", 1, now + 5, now + 35, "throttled: slow down"));
        CHECK_FALSE(t.finishDeliveryJob("held", 1, "node/b"));
    });
    auto held = store::runSync(*s, [](store::Transaction& t) { return t.findDeliveryJob("held"); });
    REQUIRE(held);
    CHECK(held->attempts == 1);
    CHECK(held->retryAt == now + 5);
    CHECK(held->leaseUntil == now + 35);
    // Due again when the lease runs out, not at the retry time while it is held.
    CHECK(store::runSync(*s, [&](store::Transaction& t) {
              return t.claimDeliveryJobs("other/y", "other/y/", now + 10, now + 40, 10);
          }).empty());

    store::runSync(*s, [&](store::Transaction& t) {
        CHECK(t.finishDeliveryJob("held", 1, "node/c"));
        t.endDeliveryJob("lapsed");
    });
    auto left = store::runSync(*s, [](store::Transaction& t) { return t.listDeliveryJobs(10); });
    REQUIRE(left.size() == 2);
    CHECK(left.front().requestId != "held");
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findDeliveryJob("held"); }));
}

TEST_CASE("delivery jobs: a resend's job replaces the previous send's; erasure removes them", "[store][jobs]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    store::runSync(*s, [&](store::Transaction& t) {
        t.syncApps({"shop"}, 1000);
        t.insertRequest(sample("r1"));
        t.putDeliveryJob({"r1", 1, 3, 1000, "node/a", 1030, 1600, 1000, "e"});
        t.putDeliveryJob({"r1", 2, 0, 1010, "node/a", 1040, 1610, 1010, ""});
    });
    auto j = store::runSync(*s, [](store::Transaction& t) { return t.findDeliveryJob("r1"); });
    REQUIRE(j);
    CHECK(j->send == 2);
    CHECK(j->attempts == 0);
    // The old send's holder can no longer finish the new send's job.
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.finishDeliveryJob("r1", 1, "node/a"); }));
    auto counts = store::runSync(*s, [](store::Transaction& t) { return t.eraseSubject("subj", "a@example.org"); });
    CHECK(counts.deliveryJobs == 1);
    CHECK(counts.requests == 1);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findDeliveryJob("r1"); }));
}
