// twofactor-store-baseline: what the storage alone can do on this machine.
//
// 1. Raw SQLCipher from one thread, as a naive application would write it:
//    sqlite3 API, raw key (PRAGMA key = "x'..'"), WAL, the project's schema
//    (kMigrations) and statements (kInsertRequest, kApproveRequest); every
//    statement its own autocommit transaction. One pair = one INSERT + one
//    conditional UPDATE (a send and its verify), run with synchronous=NORMAL and =FULL.
// 2. The project's group-commit store (openSqlcipherStore, synchronous FULL)
//    with S concurrent submitters, each calling runSync(insert) then
//    runSync(approve) per pair: many submitters share one commit (one fsync).
//
// Each measurement stops at --pairs or after --max-seconds, whichever comes
// first. Output: a table and one "RESULT mode=... pairs_per_s=..." line each.
#include "store/sqlcipher/schema.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <CLI/CLI.hpp>
#include <sqlite3.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
namespace sql = twofactor::store::sql;
namespace crypto = twofactor::crypto;
using twofactor::otp::OtpRequest;

void check(sqlite3* db, int rc, const char* what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

void exec(sqlite3* db, const std::string& statement) {
    char* err = nullptr;
    if (sqlite3_exec(db, statement.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string message = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        throw std::runtime_error(statement.substr(0, 40) + "...: " + message);
    }
}

// A request shaped like the daemon's: same field sizes, a 32-byte code hash.
OtpRequest makeRequest(long n, std::int64_t now) {
    OtpRequest r;
    r.id = crypto::randomId();
    r.app = "default";
    r.channel = "email";
    r.destination = "user" + std::to_string(n) + "@example.org";
    r.subjectHash = crypto::hex(crypto::sha256(r.destination));
    r.purpose = "login";
    r.locale = "en";
    r.codeHash = crypto::sha256(r.id);
    r.createdAt = r.updatedAt = now;
    r.expiresAt = now + r.ttl;
    return r;
}

std::int64_t unixNow() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Result {
    long pairs = 0;
    double seconds = 0;
    double rate() const { return seconds > 0 ? static_cast<double>(pairs) / seconds : 0; }
};

// ---- raw sqlite3, one thread, autocommit ----

class RawDb {
public:
    RawDb(const std::string& path, const std::string& keyHex, bool full) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            nullptr) != SQLITE_OK)
            throw std::runtime_error("cannot open " + path);
        exec(db_, "PRAGMA key = \"x'" + keyHex + "'\"");
        exec(db_, "PRAGMA cipher_page_size = 4096");  // as the project's store makes them
        exec(db_, "PRAGMA journal_mode = WAL");
        exec(db_, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
        // The remaining pragmas the project's store sets, for a like-for-like file.
        exec(db_, "PRAGMA foreign_keys = ON");
        exec(db_, "PRAGMA secure_delete = ON");
        exec(db_, "PRAGMA temp_store = MEMORY");
        int v = 0;
        for (const char* m : sql::kMigrations) {
            exec(db_, "BEGIN IMMEDIATE");
            exec(db_, m);
            exec(db_, "PRAGMA user_version = " + std::to_string(++v));
            exec(db_, "COMMIT");
        }
        check(db_, sqlite3_prepare_v2(db_, sql::kEnsureApp, -1, &ensureApp_, nullptr), "prepare ensure app");
        check(db_, sqlite3_prepare_v2(db_, sql::kInsertRequest, -1, &insert_, nullptr), "prepare insert");
        check(db_, sqlite3_prepare_v2(db_, sql::kApproveRequest, -1, &update_, nullptr), "prepare approve");
        // The statements are bound by hand below: a column added to them must
        // stop this program at once, not leave a parameter NULL.
        expectParameters(ensureApp_, 2, "kEnsureApp");
        expectParameters(insert_, 24, "kInsertRequest");
        expectParameters(update_, 4, "kApproveRequest");
    }
    ~RawDb() {
        sqlite3_finalize(ensureApp_);
        sqlite3_finalize(insert_);
        sqlite3_finalize(update_);
        sqlite3_close(db_);
    }

    // What the store's insertRequest does: record the app, then the request.
    void insert(const OtpRequest& r) {
        sqlite3_stmt* a = ensureApp_;
        sqlite3_reset(a);
        text(a, 1, r.app);
        sqlite3_bind_int64(a, 2, r.createdAt);
        check(db_, sqlite3_step(a), "ensure app");
        sqlite3_stmt* s = insert_;
        sqlite3_reset(s);
        text(s, 1, r.id);
        text(s, 2, r.app);
        text(s, 3, r.channel);
        text(s, 4, r.destination);
        text(s, 5, r.subjectHash);
        text(s, 6, r.purpose);
        text(s, 7, r.locale);
        text(s, 8, r.clientIp);
        text(s, 9, r.device);
        text(s, 10, r.reference);
        hash(s, 11, r);
        sqlite3_bind_int64(s, 12, r.codeLength);
        text(s, 13, twofactor::otp::statusName(r.status));
        sqlite3_bind_int64(s, 14, r.attempts);
        sqlite3_bind_int64(s, 15, r.maxAttempts);
        sqlite3_bind_int64(s, 16, r.sends);
        sqlite3_bind_int64(s, 17, r.maxSends);
        sqlite3_bind_int64(s, 18, r.ttl);
        sqlite3_bind_int64(s, 19, r.createdAt);
        sqlite3_bind_int64(s, 20, r.expiresAt);
        sqlite3_bind_int64(s, 21, r.updatedAt);
        if (r.finishedAt) sqlite3_bind_int64(s, 22, *r.finishedAt);
        else sqlite3_bind_null(s, 22);
        text(s, 23, r.failure);
        text(s, 24, r.fallbackDestination);
        check(db_, sqlite3_step(s), "insert");
    }

    // What the store's approveRequest does: approve if still pending with this code.
    void approve(const OtpRequest& r, std::int64_t now) {
        sqlite3_stmt* s = update_;
        sqlite3_reset(s);
        text(s, 1, r.id);
        sqlite3_bind_int64(s, 2, r.sends);
        sqlite3_bind_int64(s, 3, now);
        hash(s, 4, r);
        check(db_, sqlite3_step(s), "approve");
        if (sqlite3_changes(db_) != 1) throw std::runtime_error("approve changed no row");
    }

private:
    static void expectParameters(sqlite3_stmt* s, int n, const char* name) {
        if (sqlite3_bind_parameter_count(s) != n)
            throw std::runtime_error(std::string(name) + " takes " + std::to_string(sqlite3_bind_parameter_count(s)) +
                                     " parameters, this baseline binds " + std::to_string(n) +
                                     ": update bench/store_baseline.cpp to the store's statement");
    }
    static void text(sqlite3_stmt* s, int i, std::string_view v) {
        sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    static void hash(sqlite3_stmt* s, int i, const OtpRequest& r) {
        if (r.codeHash) sqlite3_bind_blob(s, i, r.codeHash->data(), static_cast<int>(r.codeHash->size()), SQLITE_TRANSIENT);
        else sqlite3_bind_null(s, i);
    }
    sqlite3* db_ = nullptr;
    sqlite3_stmt* ensureApp_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* update_ = nullptr;
};

Result runRaw(const std::string& path, const std::string& keyHex, bool full, long pairs, double maxSeconds) {
    RawDb db(path, keyHex, full);
    const std::int64_t now = unixNow();
    // Requests are built outside the clock: the figure is the store's.
    std::vector<OtpRequest> requests;
    requests.reserve(static_cast<std::size_t>(pairs));
    for (long i = 0; i < pairs; ++i) requests.push_back(makeRequest(i, now));
    Result res;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(maxSeconds));
    for (auto& r : requests) {
        db.insert(r);
        db.approve(r, now);
        ++res.pairs;
        if ((res.pairs & 15) == 0 && Clock::now() >= deadline) break;
    }
    res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return res;
}

// ---- the project's group-commit store ----

Result runGroup(const std::string& path, const twofactor::SecretBytes& key, bool full, int submitters, long pairs,
                double maxSeconds) {
    twofactor::store::SqlcipherOptions so;
    so.path = path;
    so.key = key.clone();
    so.synchronousFull = full;
    auto store = twofactor::store::openSqlcipherStore(std::move(so));
    const std::int64_t now = unixNow();
    std::atomic<long> next{0}, done{0};
    std::atomic<bool> failed{false};
    std::string firstError;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(maxSeconds));
    std::vector<std::thread> threads;
    for (int t = 0; t < submitters; ++t)
        threads.emplace_back([&] {
            for (;;) {
                if (Clock::now() >= deadline || failed) return;
                const long n = next.fetch_add(1);
                if (n >= pairs) return;
                OtpRequest r = makeRequest(n, now);
                try {
                    twofactor::store::runSync(*store, [&](twofactor::store::Transaction& tx) { tx.insertRequest(r); });
                    const bool approved = twofactor::store::runSync(*store, [&](twofactor::store::Transaction& tx) {
                        return tx.approveRequest(r.id, r.sends, *r.codeHash, now);
                    });
                    if (!approved) throw std::runtime_error("request " + r.id + " was not approved");
                } catch (const std::exception& e) {
                    if (!failed.exchange(true)) firstError = e.what();
                    return;
                }
                done.fetch_add(1);
            }
        });
    for (auto& t : threads) t.join();
    Result res;
    res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    res.pairs = done.load();
    store->close();
    if (failed) throw std::runtime_error("group store: " + firstError);
    return res;
}

void removeDb(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) ::unlink((path + suffix).c_str());
}

}  // namespace

int main(int argc, char** argv) {
    long pairs = 3000;
    double maxSeconds = 15;
    std::string dir;
    std::vector<int> submitters{1, 16, 64};
    bool skipRaw = false, skipGroup = false;
    CLI::App app{"twofactor-store-baseline - raw SQLCipher vs the group-commit store", "twofactor-store-baseline"};
    app.add_option("--pairs", pairs, "INSERT+UPDATE pairs per measurement")->check(CLI::Range(1L, 100000000L))->capture_default_str();
    app.add_option("--max-seconds", maxSeconds, "stop a measurement after this long")->capture_default_str();
    app.add_option("--dir", dir, "directory for the scratch databases (default: a new one under $TMPDIR or /tmp, removed afterwards)");
    app.add_option("--submitters", submitters, "concurrent submitters for the group-commit store")->delimiter(',')->capture_default_str();
    app.add_flag("--no-raw", skipRaw, "skip the raw sqlite3 measurements");
    app.add_flag("--no-group", skipGroup, "skip the group-commit store measurements");
    CLI11_PARSE(app, argc, argv);

    bool ownDir = false;
    if (dir.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/twofactor-store-baseline.XXXXXX";
        if (!::mkdtemp(tmpl.data())) {
            std::perror("mkdtemp");
            return 1;
        }
        dir = tmpl;
        ownDir = true;
    }

    twofactor::SecretBytes key = crypto::randomSecret(32);
    const std::string keyHex = crypto::hex(key.data(), key.size());
    int rc = 0;
    std::printf("%-34s %10s %10s %12s %12s\n", "measurement", "pairs", "seconds", "pairs/s", "stmts/s");
    auto report = [](const std::string& mode, const Result& r, double commitsPerPair) {
        std::printf("%-34s %10ld %10.2f %12.1f %12.1f\n", mode.c_str(), r.pairs, r.seconds, r.rate(),
                    r.rate() * commitsPerPair);
        std::printf("RESULT mode=%s pairs=%ld seconds=%.3f pairs_per_s=%.1f\n", mode.c_str(), r.pairs, r.seconds, r.rate());
        std::fflush(stdout);
    };
    try {
        if (!skipRaw) {
            for (bool full : {false, true}) {
                const std::string path = dir + (full ? "/raw-full.db" : "/raw-normal.db");
                removeDb(path);
                report(full ? "raw-full" : "raw-normal", runRaw(path, keyHex, full, pairs, maxSeconds), 2.0);
                removeDb(path);
            }
        }
        if (!skipGroup) {
            for (int s : submitters) {
                if (s < 1) continue;
                const std::string path = dir + "/group-" + std::to_string(s) + ".db";
                removeDb(path);
                Result r = runGroup(path, key, true, s, pairs, maxSeconds);
                report("group-full-s" + std::to_string(s), r, 2.0);
                removeDb(path);
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "twofactor-store-baseline: %s\n", e.what());
        rc = 1;
    }
    if (ownDir) std::filesystem::remove_all(dir);
    return rc;
}
