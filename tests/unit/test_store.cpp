// What only the SQLCipher backend does (the file is encrypted, its key
// files); every behaviour of the store contract is in test_store_conformance.cpp.
#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "store_fixtures.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

using test::TempDir;
using test::sample;

std::unique_ptr<store::Store> open(const fs::path& db, const SecretBytes& key) {
    store::SqlcipherOptions o;
    o.path = db.string();
    o.key = key.clone();
    return store::openSqlcipherStore(std::move(o));
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

