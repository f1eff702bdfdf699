// One suite of store behaviour that every backend must pass: each test case
// runs once per backend this build and run can reach (SQLCipher always;
// PostgreSQL under tests/pg/pg_server.py, which starts a throwaway server).
#include "store/sqlcipher/store.hpp"
#include "build_config.h"
#ifdef HAVE_POSTGRESQL
#include "store/postgres/schema.hpp"
#include "store/postgres/store.hpp"

#include <libpq-fe.h>
#endif
#include "store_fixtures.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

using test::TempDir;
using test::sample;

// Rate counters and failure counts reach the store only as outcomes.
void countSends(store::Transaction& t, const char* scope, const std::string& key, std::int64_t window,
                std::int64_t at, int n) {
    for (int i = 0; i < n; ++i) (void)t.countSendsIf({{scope, key, window}}, at, [](const auto&) { return true; });
}

std::optional<otp::RateCounter> readCounter(store::Transaction& t, const char* scope, const std::string& key) {
    std::optional<otp::RateCounter> seen;
    (void)t.countSendsIf({{scope, key, 3600}}, 0, [&](const auto& found) {
        seen = found[0];
        return false;
    });
    return seen;
}

void countFailures(store::Transaction& t, const std::string& app, const std::string& subject, int n) {
    for (int i = 0; i < n; ++i) (void)t.countSubjectFailure(app, subject);
}

// The PostgreSQL server a run was given (tests/pg/pg_server.py starts one
// and names a file holding its connection string), or empty.
std::string pgDsnFile() {
#ifdef HAVE_POSTGRESQL
    const char* f = std::getenv("TWOFACTOR_TEST_PG_DSN_FILE");
    return f && *f ? f : "";
#else
    return "";
#endif
}

// The backends this run can test: SQLCipher always, PostgreSQL when the run
// has a server.
std::vector<std::string> backends() {
    std::vector<std::string> names{"sqlcipher"};
    if (!pgDsnFile().empty()) names.emplace_back("postgresql");
    return names;
}

// A fresh, empty store of one backend for one test case.
struct Fresh {
    TempDir dir;
    std::unique_ptr<store::Store> store;
    explicit Fresh(const std::string& backend) {
        INFO("backend " << backend);
        if (backend == "sqlcipher") {
            store::SqlcipherOptions o;
            o.path = (dir.path / "t.db").string();
            o.key = crypto::randomSecret(32);
            store = store::openSqlcipherStore(std::move(o));
            return;
        }
#ifdef HAVE_POSTGRESQL
        if (backend == "postgresql") {
            auto dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
            emptyDatabase(dsn);
            store::PostgresOptions o;
            o.dsn = std::move(dsn);
            o.key = crypto::randomSecret(32);
            store = store::openPostgresStore(std::move(o));
            return;
        }
#endif
        FAIL("no such backend: " << backend);
    }

    // The same database opened again with another key (after a key rotation).
    std::unique_ptr<store::Store> reopen(const std::string& backend, SecretBytes key) {
        if (backend == "sqlcipher") {
            store::SqlcipherOptions o;
            o.path = (dir.path / "t.db").string();
            o.key = std::move(key);
            return store::openSqlcipherStore(std::move(o));
        }
#ifdef HAVE_POSTGRESQL
        store::PostgresOptions o;
        o.dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
        o.key = std::move(key);
        return store::openPostgresStore(std::move(o));
#else
        return nullptr;
#endif
    }

#ifdef HAVE_POSTGRESQL
    // A statement run beside the store, as someone holding the database's
    // credentials could (tampering).
    static void pgSql(const std::string& sql) {
        const auto dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
        PGconn* c = PQconnectdb(std::string(dsn.view()).c_str());
        REQUIRE(PQstatus(c) == CONNECTION_OK);
        PGresult* r = PQexec(c, sql.c_str());
        const auto status = PQresultStatus(r);
        const std::string error = PQresultErrorMessage(r);
        PQclear(r);
        PQfinish(c);
        INFO(sql << ": " << error);
        REQUIRE((status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK));
    }
    // Every case starts from an empty schema, as SQLCipher's from a new file.
    static void emptyDatabase(const SecretString& dsn) {
        PGconn* c = PQconnectdb(std::string(dsn.view()).c_str());
        REQUIRE(PQstatus(c) == CONNECTION_OK);
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
        PGresult* r = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
        const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        PQfinish(c);
        REQUIRE(ok);
    }
#endif
};

}  // namespace

TEST_CASE("requests round-trip through the encrypted store", "[store]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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

    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.approveRequest("req1", 1, *back->codeHash, 1200); }));
    auto again = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req1"); });
    CHECK(again->status == otp::Status::Approved);
    CHECK_FALSE(again->codeHash);
    CHECK(*again->finishedAt == 1200);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("nope"); }));
}

TEST_CASE("newest pending request per app and subject", "[store]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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

TEST_CASE("a write that fails fails its work item whole, also when the work reads after it", "[store]") {
    // A store may send a write whose outcome is not read together with the
    // next statement (PostgreSQL's pipeline): its error then comes from that
    // read or from the commit, and the work item still fails whole.
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) { t.insertRequest(sample("r0")); });
    CHECK_THROWS(store::runSync(*s, [](store::Transaction& t) {
        t.insertRequest(sample("r1"));
        t.insertRequest(sample("r0"));  // duplicate id
        (void)t.findRequest("r1");
    }));
    CHECK_THROWS(store::runSync(*s, [](store::Transaction& t) {
        t.insertRequest(sample("r2"));
        t.insertRequest(sample("r0"));
    }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r1"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r2"); }));
    // The store goes on: writes read back in their own work item, and work
    // that touches nothing commits.
    CHECK(store::runSync(*s, [](store::Transaction& t) {
        t.insertRequest(sample("r3"));
        return t.findRequest("r3").has_value();
    }));
    CHECK_NOTHROW(store::runSync(*s, [](store::Transaction&) {}));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r3"); }));
}

TEST_CASE("work that runs again because a batch mate failed counts once and reports its last run", "[store]") {
    // Store::submit: work may run more than once before `done` (the SQLCipher
    // writer re-runs a group commit's items when one of them fails). Only the
    // last run's effects and results count.
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    auto hot = sample("hot", 1000);
    hot.maxAttempts = 1 << 30;
    store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(hot); });
    constexpr int n = 300;
    std::vector<int> seen(n, 0);
    std::vector<char> ok(n, 0);
    std::latch all(n);
    for (int i = 0; i < n; ++i) {
        s->submit(
            [i, &seen](store::Transaction& t) {
                const auto w = t.countWrongCode("hot", 1100);
                seen[i] = w ? w->attempts : -1;
                if (i % 7 == 3) throw std::runtime_error("boom");  // after counting: its count is undone
            },
            [i, &ok, &all](std::exception_ptr e) {
                ok[i] = e ? 0 : 1;
                all.count_down();
            });
    }
    all.wait();
    std::vector<int> reported;
    for (int i = 0; i < n; ++i)
        if (ok[i]) reported.push_back(seen[i]);
    CHECK(static_cast<int>(reported.size()) == n - (n + 3) / 7);
    // Each committed item saw its own count: 1, 2, ... with no gap and no repeat.
    std::sort(reported.begin(), reported.end());
    for (std::size_t k = 0; k < reported.size(); ++k) CHECK(reported[k] == static_cast<int>(k) + 1);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("hot"); })->attempts ==
          static_cast<int>(reported.size()));
}

TEST_CASE("the request log: newest first by limit, returned oldest first, filtered by time", "[store][calls]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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

TEST_CASE("the request log written in batches keeps every field, the sealed address and the order",
          "[store][calls]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    std::vector<store::CallRecord> batch;
    for (int i = 0; i < 40; ++i)
        batch.push_back(store::CallRecord{0, 200 + i, i % 3 ? "POST /v1/apps/shop/verifications" : "io.twofactor.Otp.Verify",
                                          i, i % 2 ? "ok" : "quote \" and back\\slash {,}", i % 5 ? -1 : 1000 + i,
                                          i % 3 ? "key" + std::to_string(i) : "", i % 4 ? "192.0.2." + std::to_string(i) : "",
                                          i % 3 ? 201 : 0});
    store::runSync(*s, [&](store::Transaction& t) { t.insertCalls(batch); });
    store::runSync(*s, [&](store::Transaction& t) { t.insertCalls({batch.front()}); });  // and a batch of one
    const auto all = store::runSync(*s, [](store::Transaction& t) { return t.findCalls(store::CallQuery{{}, {}, 100}); });
    REQUIRE(all.size() == 41);
    for (int i = 0; i < 40; ++i) {
        INFO("row " << i);
        CHECK(all[i].at == batch[i].at);
        CHECK(all[i].method == batch[i].method);
        CHECK(all[i].durationMs == batch[i].durationMs);
        CHECK(all[i].result == batch[i].result);
        CHECK(all[i].uid == batch[i].uid);
        CHECK(all[i].keyId == batch[i].keyId);
        CHECK(all[i].clientIp == batch[i].clientIp);
        CHECK(all[i].status == batch[i].status);
        if (i > 0) CHECK(all[i].id > all[i - 1].id);
    }
    CHECK(all[40].at == 200);
}

TEST_CASE("fraud sets: members after `since` counted up to a cap, the n-th most recent", "[store][fraud]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
        countSends(t, "destination", "shop/a", 900, now - 2 * kDay, 1);
        countSends(t, "ip", "shop/b", 3600, now - 3 * kDay, 4);
        countSends(t, "app", "shop", 3600, now - 30, 1);
        countSends(t, "app", "shop", 3600, now - 1, 8);
        for (int i = 0; i < 4; ++i)
            t.putFraudMember("ip-dest", "k", "m" + std::to_string(i), now - 7200, i < 3 ? now - 3600 : now + 60);
        // Subject failures: "gone" has no request since the cutoff; "subj" has one; "locked" is locked.
        countFailures(t, "shop", "gone", 3);
        countFailures(t, "shop", "subj", 2);
        countFailures(t, "shop", "locked", 12);
        t.lockSubject("shop", "locked", now + 600);
    });
}

}  // namespace

TEST_CASE("retention purge: exact counts per category, dry run first", "[store][retention]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
    CHECK(store::runSync(*s, [](store::Transaction& t) { return readCounter(t, "app", "shop"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return readCounter(t, "ip", "shop/b"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "subj"); })->failures == 2);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "gone"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "locked"); })->failures == 12);
}

TEST_CASE("retention purge: requests past every period are deleted once, not rewritten first", "[store][retention]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const std::int64_t now = 1'800'000'000;
    store::runSync(*s, [&](store::Transaction& t) {
        // 400 days old, code hash and identifying data still there (a store
        // whose retention never ran): 3 of an ordinary subject, 1 of a
        // restricted one, whose request stays and loses only its code hash.
        for (int i = 0; i < 3; ++i) {
            auto r = sample("backlog" + std::to_string(i), now - 400 * kDay);
            r.clientIp = "192.0.2.9";
            t.insertRequest(r);
        }
        auto kept = sample("kept", now - 400 * kDay);
        kept.subjectHash = "restricted-subject";
        t.insertRequest(kept);
        t.setRestricted("restricted-subject", now - 10 * kDay);
        // 100 days old: its code hash and identifying data go, the request stays.
        t.insertRequest(sample("recent", now - 100 * kDay));
    });
    auto check = [](const store::PurgeCounts& c) {
        CHECK(c.authMetadata == 3);
        CHECK(c.codeHashes == 2);  // "kept" and "recent"; the backlog's went with their requests
        CHECK(c.clientData == 1);  // "recent"; "kept" is restricted
    };
    const auto dry = store::purge(*s, now, store::RetentionPolicy{}, 2, true);
    check(dry);
    check(store::purge(*s, now, store::RetentionPolicy{}, 2, false));
    CHECK(store::purge(*s, now, store::RetentionPolicy{}, 2, true).total() == 0);
    store::runSync(*s, [](store::Transaction& t) {
        CHECK_FALSE(t.findRequest("backlog0"));
        auto kept = t.findRequest("kept");
        REQUIRE(kept);
        CHECK_FALSE(kept->codeHash);
        CHECK(kept->destination == "a@example.org");
        auto recent = t.findRequest("recent");
        REQUIRE(recent);
        CHECK_FALSE(recent->codeHash);
        CHECK(recent->destination.empty());
    });
}

TEST_CASE("retention purge interleaves with other work and records runs", "[store][retention]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
    // Batches of at most 100 rows (fewer when one takes longer than the
    // purge's time budget, as on a loaded machine): 150 and 50 left when
    // none is cut short.
    INFO("rows left between batches: " << Catch::Detail::stringify(seenBetween));
    REQUIRE(seenBetween.size() >= 2);
    CHECK(seenBetween.front() >= 150);
    std::int64_t before = 250;
    for (const auto left : seenBetween) {
        CHECK(left < before);
        CHECK(before - left <= 100);
        before = left;
    }
    CHECK(before <= 100);

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
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
        countFailures(t, "shop", "subj", 2);
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
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
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

// ---- Request state changes: outcomes, each applied at most once ----

TEST_CASE("a request is approved once, only in its send, with its code and before its expiry", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const auto r = sample("req", 1000);  // expires at 1600
    store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(r); });
    const auto wrong = crypto::sha256("another code");
    auto approve = [&](int send, const crypto::Digest& h, std::int64_t now) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.approveRequest("req", send, h, now); });
    };
    CHECK_FALSE(approve(1, wrong, 1100));
    CHECK_FALSE(approve(2, *r.codeHash, 1100));  // a send that is not the current one
    CHECK_FALSE(approve(1, *r.codeHash, 1600));  // expired
    CHECK(approve(1, *r.codeHash, 1100));
    CHECK_FALSE(approve(1, *r.codeHash, 1101));  // once
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req"); });
    REQUIRE(back);
    CHECK(back->status == otp::Status::Approved);
    CHECK(back->finishedAt == std::optional<std::int64_t>(1100));
    CHECK_FALSE(back->codeHash);
    CHECK_FALSE(store::runSync(*s, [&](store::Transaction& t) { return t.approveRequest("nope", 1, *r.codeHash, 1100); }));
}

TEST_CASE("every wrong code counts; the one reaching max_attempts locks the request", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    auto r = sample("req", 1000);
    r.maxAttempts = 3;
    store::runSync(*s, [&](store::Transaction& t) {
        t.insertRequest(r);
        t.insertRequest(sample("old", 100));  // expired at 700
    });
    auto wrong = [&](const char* id, std::int64_t now) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.countWrongCode(id, now); });
    };
    for (int i = 1; i <= 2; ++i) {
        auto w = wrong("req", 1100);
        REQUIRE(w);
        CHECK(w->attempts == i);
        CHECK_FALSE(w->locked);
    }
    auto third = wrong("req", 1100);
    REQUIRE(third);
    CHECK(third->attempts == 3);
    CHECK(third->locked);
    CHECK_FALSE(wrong("req", 1100));  // locked: nothing more is counted
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req"); });
    CHECK(back->status == otp::Status::Locked);
    CHECK(back->attempts == 3);
    CHECK_FALSE(back->codeHash);
    CHECK_FALSE(wrong("old", 1100));  // expired
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("old"); })->attempts == 0);
}

TEST_CASE("a request ends only while pending, and only in the send given", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [&](store::Transaction& t) {
        t.insertRequest(sample("a"));
        t.insertRequest(sample("b"));
    });
    auto finish = [&](const char* id, std::optional<int> send, otp::Status to, std::string_view why = {}) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.finishRequest(id, send, to, 1200, why); });
    };
    CHECK_FALSE(finish("a", 2, otp::Status::Failed, "bounced"));
    CHECK(finish("a", 1, otp::Status::Failed, "bounced"));
    CHECK_FALSE(finish("a", std::nullopt, otp::Status::Canceled));
    auto a = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("a"); });
    CHECK(a->status == otp::Status::Failed);
    CHECK(a->failure == "bounced");
    CHECK_FALSE(a->codeHash);
    CHECK(finish("b", std::nullopt, otp::Status::Canceled));
    auto b = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("b"); });
    CHECK(b->status == otp::Status::Canceled);
    CHECK(b->failure.empty());
    CHECK(b->finishedAt == std::optional<std::int64_t>(1200));
}

TEST_CASE("a new code replaces the old one only in the send it was meant for", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    auto r = sample("req", 1000);
    r.channel = "whatsapp";
    store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(r); });
    const auto next = crypto::sha256("second code");
    auto replace = [&](int send) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.replaceCode("req", send, next, 1900, 1300); });
    };
    CHECK(replace(1));
    CHECK_FALSE(replace(1));  // a second node resending the same send: refused
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req"); });
    CHECK(back->sends == 2);
    CHECK(*back->codeHash == next);
    CHECK(back->expiresAt == 1900);
    CHECK(back->updatedAt == 1300);
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.switchChannel("req", 1, "email", 1400); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.switchChannel("req", 2, "email", 1400); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("req"); })->channel == "email");
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.approveRequest("req", 2, next, 1500); }));
    CHECK_FALSE(replace(2));  // no longer pending
}

TEST_CASE("rate counters: counted only when admitted; a window that is over starts again", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const std::vector<otp::RateKey> keys{{"destination", "shop/d", 900}, {"app", "shop", 3600}};
    std::vector<std::optional<otp::RateCounter>> seen;
    auto count = [&](std::int64_t now, bool admit) {
        return store::runSync(*s, [&](store::Transaction& t) {
            return t.countSendsIf(keys, now, [&](const auto& found) {
                seen = found;
                return admit;
            });
        });
    };
    CHECK_FALSE(count(1000, false));
    CHECK_FALSE(count(1000, false));
    REQUIRE(seen.size() == 2);
    CHECK_FALSE(seen[0]);  // a refusal counted nothing
    CHECK_FALSE(seen[1]);
    CHECK(count(1000, true));
    CHECK(count(1010, true));
    CHECK_FALSE(count(1020, false));
    REQUIRE(seen[0]);
    CHECK(seen[0]->count == 2);
    CHECK(seen[0]->windowStart == 1000);
    CHECK(seen[0]->lastAt == 1010);
    CHECK(seen[1]->count == 2);
    CHECK(count(1900, true));  // the destination's window (900 s) is over, the app's (3600 s) is not
    CHECK_FALSE(count(1901, false));
    CHECK(seen[0]->count == 1);
    CHECK(seen[0]->windowStart == 1900);
    CHECK(seen[1]->count == 3);
    CHECK(seen[1]->windowStart == 1000);
}

TEST_CASE("an app-wide counter (spreadCap) admits exactly its cap per window, in shares or not", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    // 37 over 16 shares on PostgreSQL: shares of 3 and of 2.
    const std::vector<otp::RateKey> keys{{"destination", "shop/d", 60}, {"app", "shop", 3600, 37}};
    std::optional<otp::RateCounter> app;
    auto send = [&](std::int64_t now) {
        return store::runSync(*s, [&](store::Transaction& t) {
            return t.countSendsIf(keys, now, [&](const auto& found) {
                app = found[1];
                return !found[1] || now >= found[1]->windowStart + 3600 || found[1]->count < 37;
            });
        });
    };
    int admitted = 0;
    for (int i = 0; i < 50; ++i) admitted += send(1000 + i) ? 1 : 0;
    CHECK(admitted == 37);
    REQUIRE(app);
    CHECK(app->count == 37);  // every share full: the cap, and the window that ends first
    CHECK(app->windowStart == 1000);
    CHECK_FALSE(send(4599));
    CHECK(send(4600));  // that window is over
}

TEST_CASE("subject failures: counted one by one, locked without shortening a lock, cleared", "[store][outcomes]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    for (int i = 1; i <= 3; ++i)
        CHECK(store::runSync(*s, [](store::Transaction& t) { return t.countSubjectFailure("shop", "subj"); }) == i);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.countSubjectFailure("other", "subj"); }) == 1);
    store::runSync(*s, [](store::Transaction& t) {
        t.lockSubject("shop", "subj", 500);
        t.lockSubject("shop", "subj", 400);
    });
    auto f1 = store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "subj"); });
    REQUIRE(f1);
    CHECK(f1->failures == 3);
    CHECK(f1->lockedUntil == 500);
    store::runSync(*s, [](store::Transaction& t) { t.clearSubjectFailures("shop", "subj"); });
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "subj"); }));
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("other", "subj"); }));
}

TEST_CASE("a subject's flags and failures read in a work item show that work item's own changes", "[store][outcomes]") {
    // A store may read them with the request (PostgreSQL does, for a
    // verify): what the work item changes after that must still show.
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) { t.insertRequest(sample("r1")); });
    store::runSync(*s, [](store::Transaction& t) {
        REQUIRE(t.findRequest("r1"));
        CHECK_FALSE(t.subjectFlags("subj").restrictedAt);
        CHECK_FALSE(t.findSubjectFailures("shop", "subj"));
        t.setRestricted("subj", 100);
        CHECK(t.subjectFlags("subj").restrictedAt == 100);
        CHECK(t.countSubjectFailure("shop", "subj") == 1);
        REQUIRE(t.findSubjectFailures("shop", "subj"));
        CHECK(t.findSubjectFailures("shop", "subj")->failures == 1);
    });
    store::runSync(*s, [](store::Transaction& t) {
        REQUIRE(t.findRequest("r1"));
        CHECK(t.subjectFlags("subj").restrictedAt == 100);
        REQUIRE(t.findSubjectFailures("shop", "subj"));
        t.lockSubject("shop", "subj", 700);
        CHECK(t.findSubjectFailures("shop", "subj")->lockedUntil == 700);
        t.clearSubjectFailures("shop", "subj");
        CHECK_FALSE(t.findSubjectFailures("shop", "subj"));
        t.setRestricted("subj", std::nullopt);
        CHECK_FALSE(t.subjectFlags("subj").restrictedAt);
        // Another subject's, or another app's, are not the request's.
        CHECK(t.countSubjectFailure("other", "subj") == 1);
        CHECK(t.findSubjectFailures("other", "subj"));
    });
}

TEST_CASE("concurrent work: one approval of many verifies of one code, every wrong code and failure counted",
          "[store][outcomes][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    auto r = sample("req", 1000);
    r.maxAttempts = 1000;
    auto w = sample("wrong", 1000);
    w.maxAttempts = 1000;
    store::runSync(*s, [&](store::Transaction& t) {
        t.insertRequest(r);
        t.insertRequest(w);
    });
    constexpr int kThreads = 8, kEach = 10;
    std::atomic<int> approvals{0}, counted{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&] {
            for (int j = 0; j < kEach; ++j) {
                if (store::runSync(*s, [&](store::Transaction& t) { return t.approveRequest("req", 1, *r.codeHash, 1100); }))
                    ++approvals;
                if (store::runSync(*s, [](store::Transaction& t) { return t.countWrongCode("wrong", 1100); })) ++counted;
                (void)store::runSync(*s, [](store::Transaction& t) { return t.countSubjectFailure("shop", "hot"); });
                (void)store::runSync(*s, [](store::Transaction& t) {
                    return t.countSendsIf({{"app", "shop", 3600}}, 1100, [](const auto&) { return true; });
                });
            }
        });
    for (auto& t : threads) t.join();
    CHECK(approvals == 1);
    CHECK(counted == kThreads * kEach);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("wrong"); })->attempts == kThreads * kEach);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findSubjectFailures("shop", "hot"); })->failures ==
          kThreads * kEach);
    std::optional<otp::RateCounter> app;
    (void)store::runSync(*s, [&](store::Transaction& t) {
        return t.countSendsIf({{"app", "shop", 3600}}, 1100, [&](const auto& found) {
            app = found[0];
            return false;
        });
    });
    REQUIRE(app);
    CHECK(app->count == kThreads * kEach);
}

TEST_CASE("a deadlock inside an audit append is run again like any other", "[store][audit][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    // Only a store with concurrent writers can deadlock: SQLCipher runs one work item at a time.
    if (backend != "postgresql") return;
    Fresh f(backend);
    auto& s = f.store;
    // Two items lock the same two counters in opposite orders; the server
    // aborts one (40P01). Each wraps what fails as the audit log does
    // (otp::AuditWriteError with the store's error as its cause): the
    // aborted one must be run again, not fail.
    std::atomic<int> locked{0}, runs{0};
    const auto item = [&](const char* first, const char* second) {
        return [&, first, second](store::Transaction& t) {
            ++runs;
            try {
                (void)t.countSendsIf({{"ip", first, 3600}}, 1000, [](const auto&) { return true; });
                ++locked;
                for (int i = 0; i < 500 && locked < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
                (void)t.countSendsIf({{"ip", second, 3600}}, 1000, [](const auto&) { return true; });
            } catch (const std::exception& e) {
                throw otp::AuditWriteError(std::string("the audit record could not be written: ") + e.what(),
                                           std::current_exception());
            }
        };
    };
    std::exception_ptr a, b;
    std::thread ta([&] {
        try {
            store::runSync(*s, item("k1", "k2"));
        } catch (...) {
            a = std::current_exception();
        }
    });
    std::thread tb([&] {
        try {
            store::runSync(*s, item("k2", "k1"));
        } catch (...) {
            b = std::current_exception();
        }
    });
    ta.join();
    tb.join();
    CHECK_FALSE(a);
    CHECK_FALSE(b);
    CHECK(runs >= 3);  // the aborted one ran again
    for (const char* k : {"k1", "k2"}) {
        std::optional<otp::RateCounter> c;
        (void)store::runSync(*s, [&](store::Transaction& t) {
            return t.countSendsIf({{"ip", k, 3600}}, 1000, [&](const auto& found) {
                c = found[0];
                return false;
            });
        });
        REQUIRE(c);
        CHECK(c->count == 2);  // both items counted once each: the aborted run left nothing
    }
}

TEST_CASE("concurrent sweeps of several nodes claim each due job exactly once", "[store][jobs][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    constexpr int kJobs = 120, kNodes = 6;
    const std::int64_t now = 1000;
    store::runSync(*s, [&](store::Transaction& t) {
        for (int i = 0; i < kJobs; ++i) {
            const std::string id = "r" + std::to_string(i);
            t.insertRequest(sample(id));
            t.putDeliveryJob({id, 1, 0, now - 1, "", 0, now + 600, now, ""});
        }
    });
    std::mutex m;
    std::vector<std::string> claimed;
    std::vector<std::thread> nodes;
    for (int n = 0; n < kNodes; ++n)
        nodes.emplace_back([&, n] {
            const std::string holder = "node" + std::to_string(n) + "/start";
            for (;;) {
                auto got = store::runSync(*s, [&](store::Transaction& t) {
                    return t.claimDeliveryJobs(holder, "node" + std::to_string(n) + "/", now, now + 30, 7);
                });
                if (got.empty()) return;
                std::lock_guard lock(m);
                for (auto& j : got) claimed.push_back(j.requestId);
            }
        });
    for (auto& t : nodes) t.join();
    std::sort(claimed.begin(), claimed.end());
    CHECK(claimed.size() == static_cast<std::size_t>(kJobs));
    CHECK(std::adjacent_find(claimed.begin(), claimed.end()) == claimed.end());  // none twice
}

TEST_CASE("event webhooks: claimed once under a lease, retried, parked while disabled, enabled again",
          "[store][events]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const std::int64_t now = 5000;
    const auto event = [&](const char* id, const char* app) {
        return otp::EventJob{id, app, "verification.approved", "req1", "{}", now, 0, now, "", 0, ""};
    };
    store::runSync(*s, [&](store::Transaction& t) {
        t.enqueueEvent(event("msg_a", "shop"));
        t.enqueueEvent(event("msg_b", "shop"));
    });
    auto first = store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("n/1", "n/", now, now + 40, 10); });
    CHECK(first.size() == 2);
    // Held: nobody else gets them until the lease ends, except a restart of the same node.
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("m/1", "m/", now + 1, now + 41, 10); })
              .empty());
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("n/2", "n/", now + 1, now + 41, 10); })
              .size() == 2);
    store::runSync(*s, [&](store::Transaction& t) {
        CHECK_FALSE(t.finishEvent("msg_a", "n/1"));  // no longer its holder
        CHECK(t.finishEvent("msg_a", "n/2"));
        CHECK(t.retryEvent("msg_b", "n/2", 1, now + 10, "the endpoint answered HTTP 500"));
        t.insertEventAttempt({0, "msg_b", "shop", "verification.approved", 1, now, "retry", 500, 12, "HTTP 500"});
        t.insertEventAttempt({0, "msg_a", "shop", "verification.approved", 1, now, "delivered", 204, 3, ""});
    });
    // Free again at its retry time, not before.
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("m/1", "m/", now + 9, now + 49, 10); })
              .empty());
    auto retried =
        store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("m/1", "m/", now + 10, now + 50, 10); });
    REQUIRE(retried.size() == 1);
    CHECK(retried[0].attempts == 1);
    CHECK(retried[0].lastError == "the endpoint answered HTTP 500");

    // Failures counted in the store; the one reaching the limit disables the endpoint once.
    store::runSync(*s, [&](store::Transaction& t) {
        CHECK(t.countEventFailure("shop", now, 3, "x").failures == 1);
        CHECK_FALSE(t.countEventFailure("shop", now, 3, "x").disabled);
        const auto third = t.countEventFailure("shop", now + 1, 3, "timeout");
        CHECK(third.failures == 3);
        CHECK(third.disabled);
        CHECK_FALSE(t.countEventFailure("shop", now + 2, 3, "timeout").disabled);
        CHECK(t.retryEvent("msg_b", "m/1", 2, now + 20, "timeout"));
        t.enqueueEvent(event("msg_c", "shop"));
        t.enqueueEvent(event("msg_d", "other"));
    });
    // Disabled: its events wait, however late; other apps' go on.
    auto whileOff =
        store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("m/1", "m/", now + 100000, now + 100040, 10); });
    REQUIRE(whileOff.size() == 1);
    CHECK(whileOff[0].id == "msg_d");
    auto endpoints = store::runSync(*s, [](store::Transaction& t) { return t.listEventEndpoints(); });
    REQUIRE(endpoints.size() == 1);
    CHECK(endpoints[0].disabledAt == now + 1);
    CHECK(endpoints[0].lastError == "timeout");
    store::runSync(*s, [&](store::Transaction& t) {
        CHECK(t.enableEvents("shop", now + 200));
        CHECK_FALSE(t.enableEvents("shop", now + 200));
    });
    auto back = store::runSync(*s, [&](store::Transaction& t) { return t.claimEvents("m/1", "m/", now + 200, now + 240, 10); });
    CHECK(back.size() == 2);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.listEventEndpoints(); })[0].failures == 0);

    // The attempt log: newest by limit, oldest first, by event, failed only.
    auto all = store::runSync(*s, [](store::Transaction& t) { return t.findEventAttempts({}); });
    REQUIRE(all.size() == 2);
    CHECK(all[0].eventId == "msg_b");
    otp::EventAttemptQuery failed;
    failed.failedOnly = true;
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.findEventAttempts(failed); }).size() == 1);
    otp::EventAttemptQuery one;
    one.eventId = "msg_a";
    auto a = store::runSync(*s, [&](store::Transaction& t) { return t.findEventAttempts(one); });
    REQUIRE(a.size() == 1);
    CHECK(a[0].statusCode == 204);
}

TEST_CASE("concurrent event sweeps of several nodes claim each event once; every failure counts",
          "[store][events][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    constexpr int kEvents = 90, kNodes = 5, kFailuresEach = 8;
    const std::int64_t now = 7000;
    store::runSync(*s, [&](store::Transaction& t) {
        for (int i = 0; i < kEvents; ++i)
            t.enqueueEvent({"msg_" + std::to_string(i), "shop", "verification.approved", "r", "{}", now, 0, now, "", 0, ""});
    });
    std::mutex m;
    std::vector<std::string> claimed;
    std::vector<int> disabledBy;
    std::vector<std::thread> nodes;
    for (int n = 0; n < kNodes; ++n)
        nodes.emplace_back([&, n] {
            const std::string prefix = "node" + std::to_string(n) + "/";
            for (int i = 0; i < kFailuresEach; ++i) {
                const auto failure = store::runSync(
                    *s, [&](store::Transaction& t) { return t.countEventFailure("other", now, kNodes * kFailuresEach, "x"); });
                if (failure.disabled) {
                    std::lock_guard lock(m);
                    disabledBy.push_back(failure.failures);
                }
            }
            for (;;) {
                auto got = store::runSync(
                    *s, [&](store::Transaction& t) { return t.claimEvents(prefix + "1", prefix, now, now + 30, 4); });
                if (got.empty()) return;
                std::lock_guard lock(m);
                for (auto& e : got) claimed.push_back(e.id);
            }
        });
    for (auto& t : nodes) t.join();
    std::sort(claimed.begin(), claimed.end());
    CHECK(claimed.size() == static_cast<std::size_t>(kEvents));
    CHECK(std::adjacent_find(claimed.begin(), claimed.end()) == claimed.end());  // none twice
    // No failure lost, and the endpoint turned off exactly once, by the last one.
    CHECK(disabledBy == std::vector<int>{kNodes * kFailuresEach});
    const auto endpoints = store::runSync(*s, [](store::Transaction& t) { return t.listEventEndpoints(); });
    REQUIRE(endpoints.size() == 1);
    CHECK(endpoints[0].failures == kNodes * kFailuresEach);
    CHECK(endpoints[0].disabledAt == now);
}

TEST_CASE("retention: Idempotency-Key records go a day after they were made, event attempts with the delivery log",
          "[store][purge]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const std::int64_t now = 100 * 86400;
    store::runSync(*s, [&](store::Transaction& t) {
        CHECK_FALSE(t.claimIdempotencyKey("key1", "old", "h", now - 86401, now - 2 * 86400));
        CHECK_FALSE(t.claimIdempotencyKey("key1", "new", "h", now - 3600, now - 86400 - 3600));
        t.insertEventAttempt({0, "msg_old", "shop", "verification.approved", 1, now - 91 * 86400, "delivered", 204, 1, ""});
        t.insertEventAttempt({0, "msg_new", "shop", "verification.approved", 1, now - 86400, "delivered", 204, 1, ""});
    });
    const auto counts = store::purge(*s, now, store::RetentionPolicy{}, 100, false);
    CHECK(counts.rateCounters == 1);
    CHECK(counts.deliveries == 1);
    store::runSync(*s, [&](store::Transaction& t) {
        // The old key is free again; the new one still holds its first call.
        CHECK_FALSE(t.claimIdempotencyKey("key1", "old", "other", now, now - 86400));
        CHECK(t.claimIdempotencyKey("key1", "new", "h", now, now - 86400));
        const auto left = t.findEventAttempts({});
        REQUIRE(left.size() == 1);
        CHECK(left[0].eventId == "msg_new");
    });
}

TEST_CASE("key rotation: every sealed value moves to the new key while sends go on; every request still verifies",
          "[store][keys]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    constexpr int kBefore = 450;  // more than one batch of resealing
    const std::int64_t now = 1000;
    const auto person = [](const std::string& id) { return id + ".person@example.org"; };
    store::runSync(*f.store, [&](store::Transaction& t) {
        for (int i = 0; i < kBefore; ++i) {
            auto r = sample("k" + std::to_string(i), now);
            r.destination = person(r.id);
            r.clientIp = "192.0.2." + std::to_string(i % 250);
            if (i % 3 == 0) r.fallbackDestination = "Fallback" + std::to_string(i) + "@example.org";
            t.insertRequest(r);
        }
        t.putOptOut({"subj-opt", "+15550001", now, "cli", ""});
        t.insertCall({0, now, "io.twofactor.Otp.Send", 1, "ok", 0, "", "198.51.100.7", 0});
    });
    std::atomic<bool> stop{false};
    std::atomic<int> during{0};
    std::thread sends([&] {
        while (!stop) {
            const std::string id = "d" + std::to_string(during.load());
            store::runSync(*f.store, [&](store::Transaction& t) {
                auto r = sample(id, now);
                r.destination = person(id);
                t.insertRequest(r);
            });
            ++during;
        }
    });
    SecretBytes newKey = crypto::randomSecret(32);
    SecretBytes kept = newKey.clone();
    std::promise<store::RekeyResult> rotated;
    f.store->rekey(std::move(newKey), [&](store::RekeyResult r) { rotated.set_value(std::move(r)); });
    const auto result = rotated.get_future().get();
    stop = true;
    sends.join();
    INFO(result.detail);
    REQUIRE(result.status == store::RekeyStatus::Rotated);

    // With the new key alone, what was there before and what was sent meanwhile opens and verifies.
    f.store->close();
    f.store.reset();
    auto again = f.reopen(backend, std::move(kept));
    store::runSync(*again, [&](store::Transaction& t) {
        for (int i = 0; i < kBefore + during.load(); ++i) {
            const std::string id = (i < kBefore ? "k" + std::to_string(i) : "d" + std::to_string(i - kBefore));
            const auto r = t.findRequest(id);
            REQUIRE(r);
            CHECK(r->destination == person(id));
            if (i < kBefore) CHECK(r->clientIp == "192.0.2." + std::to_string(i % 250));
            CHECK(t.approveRequest(id, r->sends, crypto::sha256(id), now + 1));
        }
        // The fallback address is still found by its keyed hash, case folded.
        const auto data = t.findSubjectData("nobody", "fallback3@EXAMPLE.org");
        REQUIRE(data.fallbackRequests.size() == 1);
        CHECK(data.fallbackRequests[0].id == "k3");
        CHECK(t.findOptOut("subj-opt")->destination == "+15550001");
        const auto calls = t.findCalls({});
        REQUIRE(calls.size() == 1);
        CHECK(calls[0].clientIp == "198.51.100.7");
    });
    again->close();
}

// ---- What the daemon keeps besides requests: each behaviour once, on every backend ----

TEST_CASE("opt-outs: added, replaced, listed newest last, removed once", "[store][optouts]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        t.putOptOut({"h1", "+34600000001", 100, "webhook", "STOP"});
        t.putOptOut({"h2", "+34600000002", 200, "cli", ""});
        t.putOptOut({"h1", "+34600000001", 300, "cli", "again"});  // replaces
    });
    auto one = store::runSync(*s, [](store::Transaction& t) { return t.findOptOut("h1"); });
    REQUIRE(one);
    CHECK(one->destination == "+34600000001");
    CHECK(one->createdAt == 300);
    CHECK(one->reason == "again");
    auto list = store::runSync(*s, [](store::Transaction& t) { return t.listOptOuts(10); });
    REQUIRE(list.size() == 2);
    CHECK(list.front().subjectHash == "h2");
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.listOptOuts(1); }).front().subjectHash == "h1");
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.removeOptOut("h1"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.removeOptOut("h1"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findOptOut("h1"); }));
}

TEST_CASE("the delivery log: per request and by time; provider statuses only move forward", "[store][deliveries]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        for (int i = 0; i < 4; ++i) {
            otp::DeliveryAttempt a;
            a.requestId = i < 3 ? "r1" : "r2";
            a.app = "shop";
            a.channel = "whatsapp";
            a.driver = "whatsapp";
            a.attempt = i + 1;
            a.at = 100 + i;
            a.outcome = i < 2 ? "retry" : "accepted";
            a.providerMessageId = "wamid-" + std::to_string(i);
            a.durationMs = 10 * i;
            a.ambiguous = i == 1;
            a.provider = "meta";
            t.insertDeliveryAttempt(a);
        }
    });
    otp::DeliveryQuery q;
    q.requestId = "r1";
    auto r1 = store::runSync(*s, [&](store::Transaction& t) { return t.findDeliveryAttempts(q); });
    REQUIRE(r1.size() == 3);
    CHECK(r1.front().attempt == 1);
    CHECK(r1[1].ambiguous);
    CHECK_FALSE(r1[0].ambiguous);
    CHECK(r1.back().provider == "meta");
    otp::DeliveryQuery window;
    window.since = 101;
    window.until = 103;
    auto w = store::runSync(*s, [&](store::Transaction& t) { return t.findDeliveryAttempts(window); });
    REQUIRE(w.size() == 2);
    CHECK(w.front().at == 101);
    const auto status = [&](const char* st) {
        return store::runSync(*s, [&](store::Transaction& t) {
            return t.updateDeliveryStatus(otp::ProviderStatus{"wamid-2", st, 200, ""});
        });
    };
    CHECK(status("delivered"));
    CHECK_FALSE(status("sent"));  // arrived late: not a step back
    CHECK_FALSE(status("delivered"));
    CHECK(status("read"));
    CHECK(status("failed"));
    CHECK_FALSE(status("read"));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) {
        return t.updateDeliveryStatus(otp::ProviderStatus{"unknown", "read", 200, ""});
    }));
    q.requestId = "r1";
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.findDeliveryAttempts(q); }).back().providerStatus ==
          "failed");
    // Statistics read the newest first within [since, until).
    auto recent = store::runSync(*s, [](store::Transaction& t) { return t.recentDeliveries({100, 103, 10}); });
    REQUIRE(recent.size() == 3);
    CHECK(recent.front().at == 102);
    CHECK(recent.front().durationMs == 20);
}

TEST_CASE("API keys and Idempotency-Key records: taken once, answered once, freed, aged out", "[store][api]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        t.insertApiKey({"k1", "shop", "send,verify", "hash1", "ci", 100, 0, 0, 0, 0});
        t.insertApiKey({"k2", "shop", "status", "hash2", "", 200, 0, 900, 0, 0});
    });
    auto keys = store::runSync(*s, [](store::Transaction& t) { return t.listApiKeys(10); });
    REQUIRE(keys.size() == 2);
    CHECK(keys.front().id == "k2");
    store::runSync(*s, [](store::Transaction& t) {
        t.touchApiKey("k1", 500);
        t.touchApiKey("k1", 400);  // finished out of order: last use stays 500
    });
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.revokeApiKey("k1", 600); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.revokeApiKey("k1", 700); }));
    auto k1 = store::runSync(*s, [](store::Transaction& t) { return t.findApiKey("k1"); });
    REQUIRE(k1);
    CHECK(k1->lastUsedAt == 500);
    CHECK(k1->revokedAt == 600);
    CHECK(k1->scopes == "send,verify");
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findApiKey("nope"); }));

    const auto claim = [&](const char* idem, const char* body, std::int64_t now) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.claimIdempotencyKey("k2", idem, body, now, now - 86400); });
    };
    CHECK_FALSE(claim("i1", "b1", 1000));
    auto held = claim("i1", "b1", 1001);
    REQUIRE(held);
    CHECK(held->status == 0);  // the first call is still running
    CHECK(held->bodyHash == "b1");
    store::runSync(*s, [](store::Transaction& t) {
        t.completeIdempotencyKey("k2", "i1", 200, "{\"id\":\"r\"}");
        t.completeIdempotencyKey("k2", "i1", 500, "{}");  // once only
    });
    held = claim("i1", "other", 1002);
    REQUIRE(held);
    CHECK(held->status == 200);
    CHECK(held->response == "{\"id\":\"r\"}");
    // A first call that failed before it sent anything gives its key back; an answered one is kept.
    CHECK_FALSE(claim("i2", "b2", 1003));
    store::runSync(*s, [](store::Transaction& t) {
        t.releaseIdempotencyKey("k2", "i2");
        t.releaseIdempotencyKey("k2", "i1");
    });
    CHECK_FALSE(claim("i2", "b2", 1004));
    CHECK(claim("i1", "b1", 1005));
    // A day later the key is free again.
    CHECK_FALSE(claim("i1", "b3", 1000 + 86401));
}

TEST_CASE("subjects' flags, the privacy register, apps and bindings", "[store][gdpr]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        t.setRestricted("subj", 100);
        t.setObjected("subj", 110);
        t.setObjected("subj", std::nullopt);
    });
    auto flags = store::runSync(*s, [](store::Transaction& t) { return t.subjectFlags("subj"); });
    CHECK(flags.restrictedAt == std::optional<std::int64_t>(100));
    CHECK_FALSE(flags.objectedAt);
    const auto id = store::runSync(*s, [](store::Transaction& t) {
        t.insertPrivacyRequest({0, "export", "subj", 100, 100 + 30 * kDay, std::nullopt, 0, "by mail"});
        t.insertPrivacyRequest({0, "delete", "other", 150, 150 + 30 * kDay, 160, 0, ""});
        return t.insertPrivacyRequest({0, "export", "subj", 200, 200 + 30 * kDay, std::nullopt, 0, ""});
    });
    auto open = store::runSync(*s, [](store::Transaction& t) { return t.findOpenPrivacyRequest("export", "subj"); });
    REQUIRE(open);
    CHECK(open->received == 100);  // the oldest open one
    CHECK(open->note == "by mail");
    store::runSync(*s, [&](store::Transaction& t) { t.completePrivacyRequest(open->id, 300); });
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findOpenPrivacyRequest("export", "subj"); })->id == id);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.subjectPrivacyRequests("subj"); }).size() == 2);
    store::PrivacyRequestQuery all;
    auto listed = store::runSync(*s, [&](store::Transaction& t) { return t.listPrivacyRequests(all); });
    REQUIRE(listed.size() == 3);
    CHECK(listed.front().received == 100);
    store::PrivacyRequestQuery overdue;
    overdue.overdueAt = 250 + 30 * kDay;
    auto late = store::runSync(*s, [&](store::Transaction& t) { return t.listPrivacyRequests(overdue); });
    REQUIRE(late.size() == 1);
    CHECK(late.front().id == id);

    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.syncApps({"shop", "bank"}, 100); }).empty());
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.syncApps({"shop"}, 200); }) ==
          std::vector<std::string>{"bank"});
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.syncApps({"shop"}, 300); }).empty());
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.syncApps({"shop", "bank"}, 400); }).empty());
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.syncApps({"bank"}, 500); }) ==
          std::vector<std::string>{"shop"});

    store::runSync(*s, [](store::Transaction& t) {
        t.insertRequest(sample("bound"));
        t.bindRequest("bound", "digest-1");
    });
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.requestBinding("bound"); }) == "digest-1");
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.requestBinding("nope"); }).empty());
}

TEST_CASE("the audit chain: appended, filtered, erased subjects and a sealed cut still verify", "[store][audit]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const auto key = crypto::randomSecret(32);
    store::runSync(*s, [&](store::Transaction& t) {
        for (int i = 0; i < 6; ++i) {
            otp::AuditRecord r;
            r.at = i < 3 ? 100 + i : 1'800'000'000 + i;
            r.app = i % 2 ? "shop" : "bank";
            r.event = "send";
            r.outcome = i == 4 ? "refused:destination" : "success";
            r.subject = i == 1 ? "subj" : "";
            (void)otp::appendAudit(t, key, r);
        }
    });
    const auto find = [&](otp::AuditQuery q) { return store::runSync(*s, [&](store::Transaction& t) { return t.findAuditRecords(q); }); };
    otp::AuditQuery q;
    CHECK(find(q).size() == 6);
    q.app = "shop";
    CHECK(find(q).size() == 3);
    q = {};
    q.outcome = "refused:";
    REQUIRE(find(q).size() == 1);
    CHECK(find(q).front().seq == 5);
    q = {};
    q.newest = true;
    q.limit = 2;
    auto newest = find(q);
    REQUIRE(newest.size() == 2);
    CHECK(newest.front().seq == 5);
    auto events = store::runSync(*s, [](store::Transaction& t) { return t.recentEvents({0, 200, 10}); });
    REQUIRE(events.size() == 3);
    CHECK(events.front().at == 102);
    // Erasing the subject blanks it and keeps the chain whole.
    auto erased = store::runSync(*s, [](store::Transaction& t) { return t.eraseSubject("subj", ""); });
    CHECK(erased.auditRecords == 1);
    auto v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 6);
    // Retention cuts the records before the cutoff from the head and seals the anchor it leaves.
    store::RetentionPolicy policy;
    policy.auditKey = &key;
    const std::int64_t now = 1'800'000'010;
    policy.authMetadata = now - 1000;  // cutoff 1000: the three early records
    CHECK(store::runSync(*s, [&](store::Transaction& t) {
              return t.purgeStep(store::PurgeKind::AuditRecords, now, policy, 100, true);
          }) == 3);
    CHECK(store::runSync(*s, [&](store::Transaction& t) {
              return t.purgeStep(store::PurgeKind::AuditRecords, now, policy, 100, false);
          }) == 3);
    auto anchor = store::runSync(*s, [](store::Transaction& t) { return t.auditAnchors().at(0); });
    CHECK(anchor.seq == 3);
    CHECK(otp::auditAnchorValid(key, anchor));
    v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.prunedBefore == 4);
    CHECK(v.records == 3);
}

TEST_CASE("concurrent writers keep every audit chain without gaps", "[store][audit][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const auto key = crypto::randomSecret(32);
    constexpr int kThreads = 6, kEach = 15;
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            for (int j = 0; j < kEach; ++j)
                store::runSync(*s, [&](store::Transaction& t) {
                    otp::AuditRecord r;
                    r.at = 100 + j;
                    r.event = "verify";
                    r.outcome = "approved";
                    r.detail = std::to_string(i);
                    (void)otp::appendAudit(t, key, r);
                });
        });
    for (auto& t : threads) t.join();
    auto v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == kThreads * kEach);
    std::int64_t sum = 0;
    for (const auto& c : v.chains) {
        CHECK(c.lastSeq == c.records);  // each chain from 1 without a gap
        sum += c.records;
    }
    CHECK(sum == kThreads * kEach);
    if (backend == "sqlcipher") {  // one writer: one chain
        REQUIRE(v.chains.size() == 1);
        CHECK(v.lastSeq == kThreads * kEach);
    }
}

#ifdef HAVE_POSTGRESQL
namespace {

// A PostgreSQL store on the test database (as a node of a cluster: all
// nodes share the store key) with this many connections, holding its audit
// chains for `lease` seconds after each append; `node` names the node
// across its starts (store::nodeName), or none.
std::unique_ptr<store::Store> openPgNode(const SecretBytes& storeKey, int connections, int lease = 120,
                                         std::string node = "") {
    store::PostgresOptions o;
    o.dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
    o.key = storeKey.clone();
    o.connections = connections;
    o.auditChainLease = lease;
    o.node = std::move(node);
    return store::openPostgresStore(std::move(o));
}

// An empty database, for nodes opened with openPgNode.
void emptyPgDatabase() { Fresh::emptyDatabase(store::loadDsn("store-dsn-for-tests", pgDsnFile())); }

// One audit record appended in a work item of its own, which fails after
// the append when `fail` is set; returns the record as written.
otp::AuditRecord appendSend(store::Store& s, const SecretBytes& key, std::int64_t at, bool fail = false) {
    return store::runSync(s, [&](store::Transaction& t) {
        otp::AuditRecord r;
        r.at = at;
        r.event = "send";
        r.outcome = "success";
        const auto written = otp::appendAudit(t, key, r);
        if (fail) throw std::runtime_error("the work item fails after its append");
        return written;
    });
}

// Two audited transactions open at once: the second cannot take the chain
// the first holds, so it begins another. Returns the two chains.
std::pair<std::int64_t, std::int64_t> appendInTwoChains(store::Store& s, const SecretBytes& key, std::int64_t at,
                                                        int each) {
    std::atomic<int> appended{0};
    std::int64_t chainA = -1, chainB = -1;
    const auto item = [&](std::int64_t& chain, const char* who) {
        store::runSync(s, [&](store::Transaction& t) {
            for (int i = 0; i < each; ++i) {
                otp::AuditRecord r;
                r.at = at + i;
                r.event = "send";
                r.outcome = "success";
                r.subject = std::string("subject-") + who;
                r.detail = who;
                chain = otp::appendAudit(t, key, r).chain;
            }
            ++appended;
            for (int i = 0; i < 500 && appended < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        });
    };
    std::thread a([&] { item(chainA, "a"); });
    std::thread b([&] { item(chainB, "b"); });
    a.join();
    b.join();
    return {chainA, chainB};
}

}  // namespace
#endif

TEST_CASE("writers open at once append to separate chains; every chain verifies, is pruned and checkpointed",
          "[store][audit][concurrency]") {
    const auto backend = GENERATE(from_range(backends()));
    // SQLCipher runs one work item at a time: one chain, tested above.
    if (backend != "postgresql") return;
#ifdef HAVE_POSTGRESQL
    Fresh f(backend);
    auto& s = f.store;
    const auto key = crypto::randomSecret(32);
    const auto [a, b] = appendInTwoChains(*s, key, 100, 3);
    REQUIRE(a >= 0);
    REQUIRE(b >= 0);
    CHECK(a != b);
    // Later transactions, one at a time, append to the lowest chain the node holds.
    for (int i = 0; i < 3; ++i)
        store::runSync(*s, [&](store::Transaction& t) {
            otp::AuditRecord r;
            r.at = 1'800'000'000 + i;
            r.event = "verify";
            r.outcome = "approved";
            CHECK(otp::appendAudit(t, key, r).chain == std::min(a, b));
        });
    auto v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 9);
    REQUIRE(v.chains.size() == 2);
    CHECK(v.chains[0].records + v.chains[1].records == 9);
    // The listing interleaves the chains by time.
    const auto listed = store::runSync(*s, [](store::Transaction& t) { return t.findAuditRecords({}); });
    REQUIRE(listed.size() == 9);
    for (std::size_t i = 1; i < listed.size(); ++i) CHECK(listed[i - 1].at <= listed[i].at);
    const auto heads = store::runSync(*s, [](store::Transaction& t) { return otp::auditHeads(t); });
    REQUIRE(heads.size() == 2);

    SECTION("retention cuts the head of each chain under its own sealed anchor") {
        store::RetentionPolicy policy;
        policy.auditKey = &key;
        const std::int64_t now = 1'800'000'010;
        policy.authMetadata = now - 1000;  // the six early records, three in each chain
        CHECK(store::runSync(*s, [&](store::Transaction& t) {
                  return t.purgeStep(store::PurgeKind::AuditRecords, now, policy, 100, false);
              }) == 6);
        const auto anchors = store::runSync(*s, [](store::Transaction& t) { return t.auditAnchors(); });
        REQUIRE(anchors.size() == 2);
        for (const auto& anchor : anchors) {
            CHECK(anchor.seq == 3);
            CHECK(otp::auditAnchorValid(key, anchor));
        }
        v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
        CHECK(v.ok);
        CHECK(v.records == 3);
        // The heads taken before the cut: one is now its chain's anchor, the other still a record.
        v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key, heads); });
        CHECK(v.ok);
        CHECK(v.checkpoint == otp::CheckpointMatch::Matched);
        // A head older than its chain's anchor was cut under the sealed anchor.
        auto older = heads;
        for (auto& h : older)
            if (h.chain == std::max(a, b)) h.seq = 2;
        v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key, older); });
        CHECK(v.ok);
        CHECK(v.checkpoint == otp::CheckpointMatch::Pruned);
        // An anchor moved with the database key alone does not verify, on its chain.
        Fresh::pgSql("UPDATE audit_chains SET anchor_seal = '' WHERE chain = " + std::to_string(std::max(a, b)));
        v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
        CHECK_FALSE(v.ok);
        CHECK_FALSE(v.anchorSealed);
        CHECK(v.brokenChain == std::max(a, b));
    }
    SECTION("a record removed, moved to another chain, or a whole chain removed is found") {
        const std::string other = std::to_string(std::max(a, b));
        SECTION("removed from the middle") {
            Fresh::pgSql("DELETE FROM audit WHERE chain = " + other + " AND seq = 2");
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
            CHECK_FALSE(v.ok);
            CHECK(v.brokenChain == std::max(a, b));
            REQUIRE(v.firstBroken);
            CHECK(*v.firstBroken == 2);
            CHECK(v.reason.find("chain " + other + ": record 2 of chain " + other + " is missing") == 0);
        }
        SECTION("moved to the other chain") {
            Fresh::pgSql("UPDATE audit SET chain = " + other + ", seq = 4 WHERE chain = " + std::to_string(std::min(a, b)) +
                         " AND seq = 6");
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
            CHECK_FALSE(v.ok);
            CHECK(v.brokenChain == std::max(a, b));
        }
        SECTION("a tail cut shows at the chain's next record: the head on its row still names the record cut") {
            const std::string low = std::to_string(std::min(a, b));
            Fresh::pgSql("DELETE FROM audit WHERE chain = " + low + " AND seq = 6");
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
            CHECK(v.ok);  // the chain alone cannot tell yet
            store::runSync(*s, [&](store::Transaction& t) {
                otp::AuditRecord r;
                r.at = 1'800'000'100;
                r.event = "verify";
                r.outcome = "approved";
                CHECK(otp::appendAudit(t, key, r).seq == 7);
            });
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
            CHECK_FALSE(v.ok);
            CHECK(v.reason.find("record 6 of chain " + low + " is missing") != std::string::npos);
        }
        SECTION("a whole chain: only the checkpoint can tell") {
            Fresh::pgSql("DELETE FROM audit WHERE chain = " + other + "; DELETE FROM audit_chains WHERE chain = " + other);
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
            CHECK(v.ok);
            v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key, heads); });
            CHECK_FALSE(v.ok);
            CHECK(v.checkpoint == otp::CheckpointMatch::Failed);
            CHECK(v.reason.find("a whole chain was removed") != std::string::npos);
        }
    }
    SECTION("erasure blanks the subject in every chain and each still verifies") {
        for (const char* who : {"subject-a", "subject-b"}) {
            const auto counts = store::runSync(*s, [&](store::Transaction& t) { return t.eraseSubject(who, ""); });
            CHECK(counts.auditRecords == 3);
        }
        v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
        CHECK(v.ok);
        CHECK(v.erased == 6);
    }
#endif
}

TEST_CASE("a node keeps the audit chains it holds; one taken over after its lease is never forked", "[store][audit][cluster]") {
    const auto backend = GENERATE(from_range(backends()));
    if (backend != "postgresql") return;  // SQLCipher has one writer and one chain
#ifdef HAVE_POSTGRESQL
    emptyPgDatabase();
    const auto storeKey = crypto::randomSecret(32);
    const auto open = [&] { return openPgNode(storeKey, 1); };
    auto nodeA = open();
    auto nodeB = open();
    const auto key = crypto::randomSecret(32);
    std::int64_t at = 1'800'000'000;
    const auto append = [&](store::Store& s, bool fail = false) { return appendSend(s, key, ++at, fail); };
    const auto first = append(*nodeA);
    // Held: the other node's writer begins a chain of its own, and each goes on with its own.
    const auto other = append(*nodeB);
    CHECK(other.chain != first.chain);
    CHECK(append(*nodeA).chain == first.chain);
    CHECK(append(*nodeB).chain == other.chain);
    // A work item that fails after its append leaves the head where the last commit put it.
    CHECK_THROWS_WITH(append(*nodeA, true), Catch::Contains("fails after its append"));
    const auto third = append(*nodeA);
    CHECK(third.chain == first.chain);
    CHECK(third.seq == 3);

    // A's lease lapses (a node stalled past it), and a writer new to the
    // database (B, restarted) takes A's chain over: the only free one.
    nodeB.reset();
    const std::string firstChain = std::to_string(first.chain);
    Fresh::pgSql("UPDATE audit_chains SET held_until = 0 WHERE chain = " + firstChain +
                 "; UPDATE audit_chains SET holder = 'elsewhere', held_until = 4000000000 WHERE chain <> " + firstChain);
    nodeB = open();
    const auto takenOver = append(*nodeB);
    CHECK(takenOver.chain == first.chain);
    CHECK(takenOver.seq == 4);
    CHECK(takenOver.prevHash == third.hash);
    // A still remembers seq 3 as its head: its append must not fork the chain. It runs again on another.
    const auto moved = append(*nodeA);
    CHECK(moved.chain != first.chain);
    CHECK(moved.seq == 1);
    const auto v = store::runSync(*nodeA, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 7);

    // A store that closes lets its chain go: the next writer takes it at once.
    const auto heldByA = moved.chain;
    nodeA.reset();
    auto nodeC = open();
    CHECK(append(*nodeC).chain == heldByA);
#endif
}

TEST_CASE("a chain idle for most of its lease is renewed before it is appended to, or let go if taken over",
          "[store][audit][cluster]") {
    const auto backend = GENERATE(from_range(backends()));
    if (backend != "postgresql") return;  // SQLCipher has one writer and one chain
#ifdef HAVE_POSTGRESQL
    emptyPgDatabase();
    const auto storeKey = crypto::randomSecret(32);
    const auto open = [&] { return openPgNode(storeKey, 1, 3); };  // stale after 2.5 s, free after 3 s
    auto nodeA = open();
    const auto key = crypto::randomSecret(32);
    std::int64_t at = 1'800'000'000;
    const auto append = [&](store::Store& s) { return appendSend(s, key, ++at); };
    const auto first = append(*nodeA);
    std::this_thread::sleep_for(std::chrono::milliseconds(2700));
    // Stale, but still A's: renewed, and the chain goes on.
    const auto renewed = append(*nodeA);
    CHECK(renewed.chain == first.chain);
    CHECK(renewed.seq == 2);
    // (held_until is in whole seconds of the server's clock: 3 s may take 4 to lapse.)
    std::this_thread::sleep_for(std::chrono::milliseconds(4500));
    // The lease lapsed: a new node takes the chain, and A, finding it gone, begins another.
    auto nodeB = open();
    const auto taken = append(*nodeB);
    CHECK(taken.chain == first.chain);
    CHECK(taken.seq == 3);
    const auto own = append(*nodeA);
    CHECK(own.chain != first.chain);
    CHECK(own.seq == 1);
    const auto v = store::runSync(*nodeA, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 4);
#endif
}

TEST_CASE("a node's next start takes back the audit chains its killed start held, no other node's",
          "[store][audit][cluster]") {
    const auto backend = GENERATE(from_range(backends()));
    if (backend != "postgresql") return;  // SQLCipher has one writer and one chain
#ifdef HAVE_POSTGRESQL
    emptyPgDatabase();
    const auto storeKey = crypto::randomSecret(32);
    const auto key = crypto::randomSecret(32);
    std::int64_t at = 1'800'000'000;
    const auto append = [&](store::Store& s) { return appendSend(s, key, ++at); };
    auto killed = openPgNode(storeKey, 1, 120, "host~1a2b");
    const auto first = append(*killed);
    // A live node whose name the first one's is a prefix of.
    auto neighbour = openPgNode(storeKey, 1, 120, "host~1a2b0");
    const auto theirs = append(*neighbour);
    CHECK(theirs.chain != first.chain);
    // Killed with -9: it never let its chain go, which stays held for the lease.
    killed.reset();
    const std::string firstChain = std::to_string(first.chain);
    Fresh::pgSql("UPDATE audit_chains SET held_until = 4000000000 WHERE chain = " + firstChain);
    auto stranger = openPgNode(storeKey, 1, 120, "elsewhere~9f8e");
    const auto own = append(*stranger);
    CHECK(own.chain != first.chain);
    CHECK(own.chain != theirs.chain);
    // The same node started again (one daemon per state directory: the
    // earlier start is gone) goes on with that chain at once, from its head.
    auto restarted = openPgNode(storeKey, 1, 120, "host~1a2b");
    const auto back = append(*restarted);
    CHECK(back.chain == first.chain);
    CHECK(back.seq == 2);
    CHECK(back.prevHash == first.hash);
    // The neighbour's chain stayed its own, and so did the stranger's.
    CHECK(append(*neighbour).chain == theirs.chain);
    CHECK(append(*stranger).chain == own.chain);
    CHECK(append(*restarted).chain == first.chain);
    const auto v = store::runSync(*restarted, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 7);
#endif
}

TEST_CASE("an audit log of one chain (schema 9) becomes chain 0 and goes on verifying", "[store][audit][migration]") {
    const auto backend = GENERATE(from_range(backends()));
    if (backend != "postgresql") return;  // SQLCipher keeps its one chain
#ifdef HAVE_POSTGRESQL
    Fresh f(backend);
    f.store.reset();
    const auto dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
    Fresh::emptyDatabase(dsn);
    // The schema as a daemon before audit chains left it, with three records and a sealed cut before them.
    std::string old = std::string(store::pg::kCreateVersionTable) + ";" + store::pg::kEnsureVersionRow + ";";
    for (int v = 0; v < 9; ++v) old += store::pg::kMigrations[v];
    old += "UPDATE twofactor_schema SET version = 9;";
    const auto key = crypto::randomSecret(32);
    otp::AuditAnchor anchor{5, std::string(64, 'a'), 1000, ""};
    anchor.seal = otp::auditAnchorSeal(key, anchor);
    old += "UPDATE audit_gate SET anchor_seq = 5, anchor_hash = '" + anchor.hash + "', anchor_at = 1000, anchor_seal = '" +
           anchor.seal + "';";
    std::string prev = anchor.hash;
    for (int seq = 6; seq <= 8; ++seq) {
        otp::AuditRecord r;
        r.seq = seq;
        r.at = 2000 + seq;
        r.event = "send";
        r.outcome = "success";
        r.prevHash = prev;
        r.hash = otp::auditRecordHash(key, r);
        prev = r.hash;
        old += "INSERT INTO audit (seq, at, event, outcome, prev_hash, hash) VALUES (" + std::to_string(seq) + ", " +
               std::to_string(r.at) + ", 'send', 'success', '" + r.prevHash + "', '" + r.hash + "');";
    }
    Fresh::pgSql(old);
    store::PostgresOptions o;
    o.dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
    o.key = crypto::randomSecret(32);
    auto s = store::openPostgresStore(std::move(o));
    auto v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 3);
    CHECK(v.prunedBefore == 6);
    REQUIRE(v.chains.size() == 1);
    CHECK(v.chains[0].chain == 0);
    // The next record continues chain 0 from its last one.
    const auto next = store::runSync(*s, [&](store::Transaction& t) {
        otp::AuditRecord r;
        r.at = 3000;
        r.event = "verify";
        r.outcome = "approved";
        return otp::appendAudit(t, key, r);
    });
    CHECK(next.chain == 0);
    CHECK(next.seq == 9);
    CHECK(next.prevHash == prev);
    v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 4);
#endif
}

TEST_CASE("without prepared statements (a pooler that drops them) the store works the same", "[store]") {
    const auto backend = GENERATE(from_range(backends()));
    if (backend != "postgresql") return;  // an option of the PostgreSQL backend
#ifdef HAVE_POSTGRESQL
    Fresh f(backend);
    f.store.reset();
    store::PostgresOptions o;
    o.dsn = store::loadDsn("store-dsn-for-tests", pgDsnFile());
    Fresh::emptyDatabase(o.dsn);
    o.key = crypto::randomSecret(32);
    o.prepare = false;
    auto s = store::openPostgresStore(std::move(o));
    const auto key = crypto::randomSecret(32);
    for (int i = 0; i < 3; ++i) {
        store::runSync(*s, [&](store::Transaction& t) {
            t.insertRequest(sample("plain" + std::to_string(i)));
            otp::AuditRecord r;
            r.at = 100 + i;
            r.event = "send";
            r.outcome = "success";
            (void)otp::appendAudit(t, key, r);
        });
    }
    auto back = store::runSync(*s, [](store::Transaction& t) { return t.findRequest("plain2"); });
    REQUIRE(back);
    CHECK(back->destination == "a@example.org");
    const auto v = store::runSync(*s, [&](store::Transaction& t) { return otp::verifyAuditChain(t, key); });
    CHECK(v.ok);
    CHECK(v.records == 3);
#endif
}

TEST_CASE("lease rows: one holder per scheduled run, taken over only once expired; nodes beat", "[store][cluster]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    const auto take = [&](std::int64_t slot, const char* holder, std::int64_t now) {
        return store::runSync(*s, [&](store::Transaction& t) { return t.takeLease("retention", slot, holder, now, now + 60); });
    };
    CHECK(take(1000, "a/1", 1000));
    CHECK_FALSE(take(1000, "b/1", 1001));  // the same run: already taken
    CHECK_FALSE(take(1000, "a/1", 1002));  // not even twice by its holder
    CHECK_FALSE(take(2000, "b/1", 1030));  // the next run, while a's lease is live
    CHECK(take(2000, "a/1", 1030));        // its holder may go on
    CHECK(take(3000, "b/1", 1091));        // a's lease ran out
    auto leases = store::runSync(*s, [](store::Transaction& t) { return t.listLeases(10); });
    REQUIRE(leases.size() == 1);
    CHECK(leases[0].holder == "b/1");
    CHECK(leases[0].slot == 3000);
    CHECK(leases[0].expiresAt == 1151);

    // Many nodes racing for one run: exactly one takes it.
    std::atomic<int> won{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            const std::string holder = "n/" + std::to_string(i);
            if (store::runSync(*s, [&](store::Transaction& t) { return t.takeLease("retention", 4000, holder, 5000, 5060); }))
                ++won;
        });
    for (auto& t : threads) t.join();
    CHECK(won == 1);

    store::runSync(*s, [](store::Transaction& t) {
        t.heartbeatNode({"a/1", "host-a", "0.1.0", 100, 110});
        t.heartbeatNode({"b/1", "host-b", "0.1.0", 100, 200});
        t.heartbeatNode({"a/1", "host-a", "0.1.0", 100, 300, 2});  // its key was rotated meanwhile
    });
    auto nodes = store::runSync(*s, [](store::Transaction& t) { return t.listNodes(150, 10); });
    REQUIRE(nodes.size() == 2);
    CHECK(nodes[0].id == "a/1");
    CHECK(nodes[0].heartbeat == 300);
    CHECK(nodes[0].keyVersion == 2);
    CHECK(nodes[1].keyVersion == 0);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.listNodes(250, 10); }).size() == 1);
    // A node that stops cleanly is forgotten at once; the others stay.
    store::runSync(*s, [](store::Transaction& t) { t.forgetNode("a/1"); });
    nodes = store::runSync(*s, [](store::Transaction& t) { return t.listNodes(0, 10); });
    REQUIRE(nodes.size() == 1);
    CHECK(nodes[0].id == "b/1");
}

TEST_CASE("the email suppression list: first entry kept, listed newest last; feedback counted per hour",
          "[store][suppression]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        CHECK(t.suppressAddress({"a1", "bounce", "General", 100, "sns", "ses-1"}));
        CHECK_FALSE(t.suppressAddress({"a1", "complaint", "abuse", 200, "sns", "ses-2"}));  // the first stays
        CHECK(t.suppressAddress({"a2", "manual", "asked by phone", 300, "cli", ""}));
    });
    auto one = store::runSync(*s, [](store::Transaction& t) { return t.findSuppression("a1"); });
    REQUIRE(one);
    CHECK(one->reason == "bounce");
    CHECK(one->detail == "General");
    CHECK(one->messageId == "ses-1");
    auto list = store::runSync(*s, [](store::Transaction& t) { return t.listSuppressions(10); });
    REQUIRE(list.size() == 2);
    CHECK(list.back().addressHash == "a2");
    CHECK(list.back().detail == "asked by phone");
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.listSuppressions(1); }).front().addressHash == "a2");
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.removeSuppression("a1"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.removeSuppression("a1"); }));
    CHECK_FALSE(store::runSync(*s, [](store::Transaction& t) { return t.findSuppression("a1"); }));

    const std::int64_t now = 1000 * 3600;
    store::runSync(*s, [&](store::Transaction& t) {
        for (int i = 0; i < 5; ++i) t.countEmailFeedback("shop", store::EmailFeedback::Send, now - 2 * 3600);
        t.countEmailFeedback("shop", store::EmailFeedback::Bounce, now);
        t.countEmailFeedback("shop", store::EmailFeedback::Complaint, now + 10);
        t.countEmailFeedback("other", store::EmailFeedback::Send, now);
    });
    auto all = store::runSync(*s, [&](store::Transaction& t) { return t.emailFeedback("shop", now - 24 * 3600); });
    CHECK(all.sends == 5);
    CHECK(all.bounces == 1);
    CHECK(all.complaints == 1);
    auto recent = store::runSync(*s, [&](store::Transaction& t) { return t.emailFeedback("shop", now - 60); });
    CHECK(recent.sends == 0);
    CHECK(recent.bounces == 1);
    // Hours older than kEmailFeedbackHours go as the app counts on.
    store::runSync(*s, [&](store::Transaction& t) {
        t.countEmailFeedback("shop", store::EmailFeedback::Send, now + store::kEmailFeedbackHours * 3600);
    });
    auto later = store::runSync(*s, [&](store::Transaction& t) { return t.emailFeedback("shop", 0); });
    CHECK(later.sends == 1);
    CHECK(later.bounces == 1);
}

TEST_CASE("a send's checks in one call report what each read reports, also this work item's changes", "[store][subjects]") {
    const auto backend = GENERATE(from_range(backends()));
    Fresh f(backend);
    auto& s = f.store;
    store::runSync(*s, [](store::Transaction& t) {
        t.setRestricted("restricted", 100);
        t.setObjected("earlier-form", 200);
        t.putOptOut({"opted", "+34600000009", 300, "webhook", "STOP"});
        CHECK(t.suppressAddress({"bounced", "bounce", "General", 400, "sns", "ses-1"}));
    });
    store::runSync(*s, [](store::Transaction& t) {
        auto c = t.sendChecks({"restricted", "", false, "", ""});
        CHECK(c.flags.restrictedAt == std::optional<std::int64_t>(100));
        CHECK_FALSE(c.flags.objectedAt);
        CHECK_FALSE(c.earlierFlags.objectedAt);
        // Nothing asked, nothing found: the opt-out is looked up for a WhatsApp send only.
        c = t.sendChecks({"opted", "", false, "", ""});
        CHECK_FALSE(c.optedOut);
        CHECK_FALSE(c.flags.restrictedAt);
        c = t.sendChecks({"opted", "earlier-form", true, "bounced", "clean"});
        CHECK(c.optedOut);
        CHECK(c.earlierFlags.objectedAt == std::optional<std::int64_t>(200));
        CHECK(c.suppressed);
        CHECK_FALSE(c.fallbackSuppressed);
        c = t.sendChecks({"nobody", "", true, "clean", "bounced"});
        CHECK_FALSE(c.optedOut);
        CHECK_FALSE(c.suppressed);
        CHECK(c.fallbackSuppressed);
        // What this work item changed is what the next check sees.
        t.setObjected("nobody", 500);
        (void)t.removeSuppression("bounced");
        c = t.sendChecks({"nobody", "", true, "clean", "bounced"});
        CHECK(c.flags.objectedAt == std::optional<std::int64_t>(500));
        CHECK_FALSE(c.fallbackSuppressed);
    });
}
