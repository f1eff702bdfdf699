#include "store/keys.hpp"
#include "store/sqlcipher_store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

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
            t.insertCall(store::CallRecord{0, 100 + i, "io.twofactor.Otp.Send", i, i % 2 ? "ok" : "io.twofactor.Otp.RateLimited", 1000 + i});
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

TEST_CASE("fraud sets: members after `since`, expired ones dropped on write", "[store][fraud]") {
    TempDir dir;
    const auto key = crypto::randomSecret(32);
    auto s = open(dir.path / "t.db", key);
    store::runSync(*s, [](store::Transaction& t) {
        t.putFraudMember("r", "k", "a", 100, 200);
        t.putFraudMember("r", "k", "b", 150, 250);
        t.putFraudMember("r", "other", "c", 150, 250);
    });
    auto members = store::runSync(*s, [](store::Transaction& t) { return t.findFraudMembers("r", "k", 120); });
    REQUIRE(members.size() == 1);
    CHECK(members[0] == std::pair<std::string, std::int64_t>{"b", 150});
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findFraudMembers("r", "k", 0); }).size() == 2);
    store::runSync(*s, [](store::Transaction& t) { t.putFraudMember("r", "k", "b", 210, 310); });  // a expired at 200
    members = store::runSync(*s, [](store::Transaction& t) { return t.findFraudMembers("r", "k", 0); });
    REQUIRE(members.size() == 1);
    CHECK(members[0].second == 210);
}
