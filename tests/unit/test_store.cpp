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
