// What only the SQLCipher backend does (the file is encrypted, its key
// files); every behaviour of the store contract is in test_store_conformance.cpp.
#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "store_fixtures.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <thread>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

using test::TempDir;
using test::sample;

std::unique_ptr<store::Store> open(const fs::path& db, const SecretBytes& key, bool synchronousFull = true) {
    store::SqlcipherOptions o;
    o.path = db.string();
    o.key = key.clone();
    o.synchronousFull = synchronousFull;
    return store::openSqlcipherStore(std::move(o));
}

std::uintmax_t sizeOf(const fs::path& p) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    return ec ? 0 : n;
}

}  // namespace

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


TEST_CASE("the WAL is checkpointed off the commit path and stays bounded under sustained writes", "[store][wal]") {
    TempDir dir;
    const fs::path db = dir.path / "t.db";
    const fs::path wal = dir.path / "t.db-wal";
    const auto key = crypto::randomSecret(32);
    auto s = open(db, key, /*synchronousFull=*/false);
    constexpr std::uintmax_t kFrame = 24 + 4096;
    int n = 0;
    auto writeSome = [&] {
        store::runSync(*s, [&](store::Transaction& t) {
            for (int i = 0; i < 50; ++i) t.insertRequest(sample("w" + std::to_string(n++)));
        });
    };
    // Past the checkpoint mark (1000 pages), well short of the bound where the
    // writer would checkpoint itself: only the background thread copies the
    // WAL into the database file, which grows by it. Measured from before the
    // writes: that checkpoint may well be done by the time the loop ends.
    const auto before = sizeOf(db);
    while (sizeOf(wal) < 1200 * kFrame) writeSome();
    REQUIRE(sizeOf(wal) < 3000 * kFrame);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (sizeOf(db) <= before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(sizeOf(db) > before);

    // About 80 MiB of WAL traffic queued at once, so the writer commits batch
    // after batch without a pause and the background checkpoints chase the
    // WAL's end: the file never holds much more than the bound (4000 pages)
    // plus one batch.
    std::atomic<int> left{400};
    std::promise<void> drained;
    for (int b = 0; b < 400; ++b) {
        const int first = n;
        n += 50;
        s->submitReserved(
            [first](store::Transaction& t) {
                for (int i = 0; i < 50; ++i) t.insertRequest(sample("w" + std::to_string(first + i)));
            },
            [&](std::exception_ptr e) {
                REQUIRE_FALSE(e);
                if (--left == 0) drained.set_value();
            });
    }
    drained.get_future().wait();
    const auto largest = sizeOf(wal);
    INFO("largest WAL: " << largest / kFrame << " frames");
    CHECK(largest < 5000 * kFrame);
    CHECK(store::runSync(*s, [&](store::Transaction& t) { return t.findRequest("w" + std::to_string(n - 1)); }));
}
