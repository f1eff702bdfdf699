// Key rotation, online backup and the pending-key protocol of the store (issue 5).
#include "store_fixtures.hpp"
#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <sqlite3.h>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/tf-maint-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

otp::OtpRequest sample(const std::string& id) {
    otp::OtpRequest r;
    r.id = id;
    r.app = "shop";
    r.channel = "email";
    r.destination = id + "@example.org";
    r.subjectHash = "subject-" + id;
    r.purpose = "login";
    r.locale = "en";
    // Some bulk, so a few thousand requests span more pages than one backup step.
    r.reference = std::string(200, 'r');
    r.codeHash = crypto::sha256(id);
    r.createdAt = r.updatedAt = 1000;
    r.expiresAt = 1600;
    return r;
}

std::unique_ptr<store::Store> open(const fs::path& db, const SecretBytes& key) {
    store::SqlcipherOptions o;
    o.path = db.string();
    o.key = key.clone();
    return store::openSqlcipherStore(std::move(o));
}

store::RekeyResult rekey(store::Store& s, const SecretBytes& key) {
    std::promise<store::RekeyResult> done;
    auto future = done.get_future();
    s.rekey(key.clone(), [&done](store::RekeyResult r) { done.set_value(std::move(r)); });
    return future.get();
}

void insert(store::Store& s, const std::string& prefix, int n) {
    store::runSync(s, [&](store::Transaction& t) {
        for (int i = 0; i < n; ++i) t.insertRequest(sample(prefix + std::to_string(i)));
    });
}

// A plain SQLCipher connection of the test's own, as an operator's tool would open the file.
class Raw {
public:
    Raw(const fs::path& path, const SecretBytes& key, int flags = SQLITE_OPEN_READONLY) {
        sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
        const std::string pragma = test::keyPragmas(key);
        sqlite3_exec(db_, pragma.c_str(), nullptr, nullptr, nullptr);
    }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;
    ~Raw() { sqlite3_close(db_); }
    bool opens() {
        return sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    // The first column of the first row; "" on an error.
    std::string text(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        std::string out;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
            const auto* p = sqlite3_column_text(s, 0);
            out = p ? reinterpret_cast<const char*>(p) : "";
        }
        sqlite3_finalize(s);
        return out;
    }
    std::vector<std::string> column(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        std::vector<std::string> out;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK)
            while (sqlite3_step(s) == SQLITE_ROW)
                out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
        sqlite3_finalize(s);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

std::string readFile(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeKeyFile(const fs::path& p, const SecretBytes& key) {
    std::ofstream(p) << crypto::hex(key.data(), key.size()) << "\n";
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
}

// An empty file of mode 0600, as the daemon hands to backup().
fs::path emptyFile(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
    return p;
}

}  // namespace

TEST_CASE("rekey: only the new key opens the database, it passes integrity_check, and the data survives",
          "[maintenance][rekey]") {
    TempDir dir;
    const fs::path db = dir.path / "t.db";
    const auto oldKey = crypto::randomSecret(32);
    const auto newKey = crypto::randomSecret(32);
    auto s = open(db, oldKey);
    insert(*s, "before-", 300);

    const auto result = rekey(*s, newKey);
    INFO(result.detail);
    REQUIRE(result.status == store::RekeyStatus::Rotated);

    // Fresh connections, while the store is still open and serving.
    CHECK(store::keyOpensDatabase(db.string(), newKey));
    CHECK_FALSE(store::keyOpensDatabase(db.string(), oldKey));
    CHECK(Raw(db, newKey).text("PRAGMA integrity_check") == "ok");
    CHECK_FALSE(Raw(db, oldKey).opens());

    // The writer goes on with the new key: old rows are there, new ones are written.
    insert(*s, "after-", 10);
    CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("before-299"); }));
    CHECK(Raw(db, newKey).text("SELECT count(*) FROM requests") == "310");
    s->close();

    CHECK_THROWS_WITH(open(db, oldKey), Catch::Contains("store key does not match"));
    auto reopened = open(db, newKey);
    auto back = store::runSync(*reopened, [](store::Transaction& t) { return t.findRequest("before-7"); });
    REQUIRE(back);
    CHECK(back->destination == "before-7@example.org");
    CHECK(Raw(db, newKey).text("PRAGMA journal_mode") == "wal");

    // And again: a rotated store rotates.
    const auto third = crypto::randomSecret(32);
    CHECK(rekey(*reopened, third).status == store::RekeyStatus::Rotated);
    CHECK_FALSE(store::keyOpensDatabase(db.string(), newKey));
    CHECK(Raw(db, third).text("SELECT count(*) FROM requests") == "310");
}

TEST_CASE("rekey that cannot run leaves the old key in use and says so", "[maintenance][rekey]") {
    TempDir dir;
    const fs::path db = dir.path / "t.db";
    const auto oldKey = crypto::randomSecret(32);
    const auto newKey = crypto::randomSecret(32);
    auto s = open(db, oldKey);
    insert(*s, "r", 5);
    {
        // Another process holding the database open keeps it in WAL mode.
        Raw other(db, oldKey, SQLITE_OPEN_READWRITE);
        REQUIRE(other.opens());
        const auto result = rekey(*s, newKey);
        CHECK(result.status == store::RekeyStatus::OldKey);
        CHECK_THAT(result.detail, Catch::Contains("nothing was changed"));
        CHECK(store::keyOpensDatabase(db.string(), oldKey));
        CHECK_FALSE(store::keyOpensDatabase(db.string(), newKey));
        insert(*s, "more", 3);  // still serving
    }
    CHECK(Raw(db, oldKey).text("SELECT count(*) FROM requests") == "8");
    CHECK(rekey(*s, newKey).status == store::RekeyStatus::Rotated);
}

TEST_CASE("backup under concurrent writes: a consistent, encrypted, verified snapshot", "[maintenance][backup]") {
    TempDir dir;
    const fs::path db = dir.path / "t.db";
    const auto key = crypto::randomSecret(32);
    auto s = open(db, key);
    for (int i = 0; i < 24; ++i) insert(*s, "pre" + std::to_string(i) + "-", 500);

    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::thread writer([&] {
        for (int i = 0; !stop; ++i) {
            store::runSync(*s, [&](store::Transaction& t) { t.insertRequest(sample("w-" + std::to_string(i))); });
            written = i + 1;
        }
    });
    const fs::path target = emptyFile(dir.path / "copy.db");
    std::vector<std::pair<std::int64_t, std::int64_t>> steps;
    const auto result = s->backup(target.string(), [&](std::int64_t done, std::int64_t total) {
        steps.emplace_back(done, total);
        // Give the writer time to commit between steps.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    });
    stop = true;
    writer.join();
    INFO(result.error);
    REQUIRE(result.status == store::BackupStatus::Done);
    REQUIRE(steps.size() > 1);
    CHECK(steps.back().first == steps.back().second);
    CHECK(result.pages == steps.back().second);
    for (std::size_t i = 1; i < steps.size(); ++i) CHECK(steps[i].first > steps[i - 1].first);
    CHECK(written > 0);

    CHECK((fs::status(target).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    Raw copy(target, key);
    CHECK(copy.text("PRAGMA integrity_check") == "ok");
    CHECK(copy.text("PRAGMA journal_mode") == "delete");  // a file of its own, no -wal needed
    CHECK(copy.text("SELECT count(*) FROM requests WHERE id LIKE 'pre%'") == "12000");
    // One snapshot: the concurrent writes it holds are a gap-free prefix of those committed.
    const auto ids = copy.column("SELECT id FROM requests WHERE id LIKE 'w-%'");
    std::set<std::string> got(ids.begin(), ids.end());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got.count("w-" + std::to_string(i)) == 1);
    CHECK(static_cast<int>(got.size()) <= written);
    CHECK_FALSE(Raw(target, crypto::randomSecret(32)).opens());
    CHECK(readFile(target).rfind("SQLite format 3", 0) == std::string::npos);

    // The store still serves and its own file is intact.
    insert(*s, "post-", 1);
    CHECK(Raw(db, key).text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("a backup and a rekey exclude each other", "[maintenance][backup][rekey]") {
    TempDir dir;
    const fs::path db = dir.path / "t.db";
    const auto key = crypto::randomSecret(32);
    auto s = open(db, key);
    insert(*s, "r", 50);
    store::RekeyResult during;
    store::BackupResult second;
    bool asked = false;
    const auto result = s->backup(emptyFile(dir.path / "a.db").string(), [&](std::int64_t, std::int64_t) {
        if (asked) return;
        asked = true;
        during = rekey(*s, crypto::randomSecret(32));
        second = s->backup(emptyFile(dir.path / "b.db").string(), {});
    });
    CHECK(result.status == store::BackupStatus::Done);
    CHECK(during.status == store::RekeyStatus::Busy);
    CHECK(second.status == store::BackupStatus::Busy);
    CHECK(store::keyOpensDatabase(db.string(), key));
    // Both free again afterwards.
    CHECK(s->backup(emptyFile(dir.path / "c.db").string(), {}).status == store::BackupStatus::Done);
    CHECK(rekey(*s, crypto::randomSecret(32)).status == store::RekeyStatus::Rotated);
}

TEST_CASE("pending key file: written once, committed over the key file, or discarded", "[maintenance][keys]") {
    TempDir dir;
    const std::string keyFile = (dir.path / "store.key").string();
    const auto a = crypto::randomSecret(32);
    const auto b = crypto::randomSecret(32);
    writeKeyFile(keyFile, a);
    CHECK(store::pendingKeyFile(keyFile) == keyFile + ".new");

    REQUIRE(store::writePendingKey(keyFile, b) == store::PendingKeyWrite::Written);
    const fs::path pending = keyFile + ".new";
    CHECK((fs::status(pending).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    CHECK(readFile(pending) == crypto::hex(b.data(), b.size()) + "\n");
    // A second rotation does not overwrite the first one's key.
    CHECK(store::writePendingKey(keyFile, crypto::randomSecret(32)) == store::PendingKeyWrite::AlreadyPending);
    CHECK(readFile(pending) == crypto::hex(b.data(), b.size()) + "\n");

    store::commitPendingKey(keyFile);
    CHECK_FALSE(fs::exists(pending));
    CHECK(readFile(keyFile) == crypto::hex(b.data(), b.size()) + "\n");
    CHECK(store::loadKey("store-key", keyFile, false).view() == b.view());

    REQUIRE(store::writePendingKey(keyFile, a) == store::PendingKeyWrite::Written);
    store::discardPendingKey(keyFile);
    CHECK_FALSE(fs::exists(pending));
    CHECK(readFile(keyFile) == crypto::hex(b.data(), b.size()) + "\n");
    CHECK_THROWS(store::commitPendingKey(keyFile));  // nothing pending: the key file stays
    CHECK(readFile(keyFile) == crypto::hex(b.data(), b.size()) + "\n");
}

TEST_CASE("pending key recovery at start keeps the key that opens the database", "[maintenance][keys]") {
    TempDir dir;
    const std::string keyFile = (dir.path / "store.key").string();
    const fs::path pending = keyFile + ".new";
    const auto a = crypto::randomSecret(32);
    const auto b = crypto::randomSecret(32);
    auto opensWith = [](const SecretBytes& good) {
        return [&good](const SecretBytes& k) { return k.view() == good.view(); };
    };
    writeKeyFile(keyFile, a);

    SECTION("nothing pending") {
        SecretBytes key = a.clone();
        CHECK(store::recoverPendingKey(keyFile, key, opensWith(a)) == store::PendingKeyRecovery::None);
        CHECK(key.view() == a.view());
    }
    SECTION("crash before the rekey took effect: the pending key is removed") {
        writeKeyFile(pending, b);
        SecretBytes key = a.clone();
        CHECK(store::recoverPendingKey(keyFile, key, opensWith(a)) == store::PendingKeyRecovery::Discarded);
        CHECK(key.view() == a.view());
        CHECK_FALSE(fs::exists(pending));
        CHECK(readFile(keyFile) == crypto::hex(a.data(), a.size()) + "\n");
    }
    SECTION("crash after the rekey, before the rename: the rename is completed") {
        writeKeyFile(pending, b);
        SecretBytes key = a.clone();
        CHECK(store::recoverPendingKey(keyFile, key, opensWith(b)) == store::PendingKeyRecovery::Completed);
        CHECK(key.view() == b.view());
        CHECK_FALSE(fs::exists(pending));
        CHECK(readFile(keyFile) == crypto::hex(b.data(), b.size()) + "\n");
    }
    SECTION("neither key opens it: both files stay") {
        writeKeyFile(pending, b);
        SecretBytes key = a.clone();
        const auto c = crypto::randomSecret(32);
        CHECK(store::recoverPendingKey(keyFile, key, opensWith(c)) == store::PendingKeyRecovery::Unresolved);
        CHECK(key.view() == a.view());
        CHECK(fs::exists(pending));
        CHECK(readFile(keyFile) == crypto::hex(a.data(), a.size()) + "\n");
    }
    SECTION("a real database rekeyed by a rotation the crash cut short") {
        const fs::path db = dir.path / "t.db";
        {
            auto s = open(db, a);
            insert(*s, "r", 3);
            REQUIRE(rekey(*s, b).status == store::RekeyStatus::Rotated);
        }
        writeKeyFile(pending, b);  // the key file still holds a
        SecretBytes key = store::loadKey("store-key", keyFile, false);
        CHECK(store::recoverPendingKey(keyFile, key, [&](const SecretBytes& k) {
                  return store::keyOpensDatabase(db.string(), k);
              }) == store::PendingKeyRecovery::Completed);
        CHECK(key.view() == b.view());
        auto s = open(db, store::loadKey("store-key", keyFile, false));
        CHECK(store::runSync(*s, [](store::Transaction& t) { return t.findRequest("r2"); }));
    }
}

TEST_CASE("a store key from a systemd credential is recognised", "[maintenance][keys]") {
    TempDir dir;
    ::unsetenv("CREDENTIALS_DIRECTORY");
    CHECK_FALSE(store::keyFromCredential("store-key"));
    ::setenv("CREDENTIALS_DIRECTORY", dir.path.c_str(), 1);
    CHECK_FALSE(store::keyFromCredential("store-key"));
    writeKeyFile(dir.path / "store-key", crypto::randomSecret(32));
    CHECK(store::keyFromCredential("store-key"));
    ::unsetenv("CREDENTIALS_DIRECTORY");
}
