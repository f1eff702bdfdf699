#include "store/sqlcipher_store.hpp"

#include "store/schema.hpp"
#include "util/crypto.hpp"
#include "util/log.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace twofactor::store {

namespace {

class Statement {
public:
    Statement(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("cannot prepare statement: ") + sqlite3_errmsg(db));
    }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    ~Statement() { sqlite3_finalize(stmt_); }

    void reset() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    void bind(int i, std::string_view s) { check(sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT)); }
    void bind(int i, std::int64_t v) { check(sqlite3_bind_int64(stmt_, i, v)); }
    void bind(int i, int v) { check(sqlite3_bind_int64(stmt_, i, v)); }
    void bindNull(int i) { check(sqlite3_bind_null(stmt_, i)); }
    void bindBlob(int i, const void* p, std::size_t n) {
        check(sqlite3_bind_blob(stmt_, i, p, static_cast<int>(n), SQLITE_TRANSIENT));
    }
    // True while there is a row.
    bool step() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw std::runtime_error(std::string("database error: ") + sqlite3_errmsg(db_));
    }
    std::string text(int col) const {
        const auto* p = sqlite3_column_text(stmt_, col);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                 : std::string();
    }
    std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
    bool isNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
    std::string_view blob(int col) const {
        const void* p = sqlite3_column_blob(stmt_, col);
        return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                 : std::string_view();
    }
    int changes() const { return sqlite3_changes(db_); }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) throw std::runtime_error(std::string("cannot bind parameter: ") + sqlite3_errmsg(db_));
    }
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string message = err ? err : sqlite3_errmsg(db);
        sqlite3_free(err);
        throw std::runtime_error("database error: " + message);
    }
}

std::int64_t queryInt(sqlite3* db, const char* sql) {
    Statement s(db, sql);
    return s.step() ? s.integer(0) : 0;
}

class SqlcipherTransaction final : public Transaction {
public:
    explicit SqlcipherTransaction(sqlite3* db)
        : db_(db),
          insertRun_(db, sql::kInsertRetentionRun),
          lastRun_(db, sql::kSelectLastRetentionRun),
          select_(db, sql::kSelectRequest),
          newest_(db, sql::kSelectNewestPending),
          insert_(db, sql::kInsertRequest),
          update_(db, sql::kUpdateRequest),
          insertDelivery_(db, sql::kInsertDelivery),
          selectDeliveries_(db, sql::kSelectDeliveries),
          updateStatus_(db, sql::kUpdateDeliveryStatus),
          selectOptOut_(db, sql::kSelectOptOut),
          insertOptOut_(db, sql::kInsertOptOut),
          deleteOptOut_(db, sql::kDeleteOptOut),
          listOptOuts_(db, sql::kListOptOuts),
          selectCounter_(db, sql::kSelectRateCounter),
          putCounter_(db, sql::kPutRateCounter),
          selectFailures_(db, sql::kSelectSubjectFailures),
          putFailures_(db, sql::kPutSubjectFailures),
          deleteFailures_(db, sql::kDeleteSubjectFailures),
          lastAudit_(db, sql::kSelectLastAudit),
          insertAudit_(db, sql::kInsertAudit),
          selectAudit_(db, sql::kSelectAudit),
          selectFraud_(db, sql::kSelectFraudMembers),
          putFraud_(db, sql::kPutFraudMember),
          expireFraud_(db, sql::kExpireFraudMembers),
          insertCall_(db, sql::kInsertRequestLog),
          selectCalls_(db, sql::kSelectRequestLog) {}

    std::vector<std::pair<std::string, std::int64_t>> findFraudMembers(std::string_view rule, std::string_view key,
                                                                       std::int64_t since) override {
        auto& s = selectFraud_;
        s.reset();
        s.bind(1, rule);
        s.bind(2, key);
        s.bind(3, since);
        std::vector<std::pair<std::string, std::int64_t>> out;
        while (s.step()) out.emplace_back(s.text(0), s.integer(1));
        s.reset();
        return out;
    }

    void putFraudMember(std::string_view rule, std::string_view key, std::string_view member, std::int64_t at,
                        std::int64_t expiresAt) override {
        auto& e = expireFraud_;
        e.reset();
        e.bind(1, rule);
        e.bind(2, key);
        e.bind(3, at);
        e.step();
        auto& s = putFraud_;
        s.reset();
        s.bind(1, rule);
        s.bind(2, key);
        s.bind(3, member);
        s.bind(4, at);
        s.bind(5, expiresAt);
        s.step();
    }

    std::int64_t purgeStep(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy, int limit,
                           bool dryRun) override {
        std::int64_t cutoff = now;
        switch (kind) {
            case PurgeKind::CodeHashes: cutoff = now - policy.codeHashes; break;
            case PurgeKind::Deliveries:
            case PurgeKind::RequestLog:
            case PurgeKind::ClientData:
            case PurgeKind::SubjectFailures: cutoff = now - policy.deliveryLogs; break;
            case PurgeKind::RateCounters: cutoff = now - 86400; break;
            case PurgeKind::FraudSets: cutoff = now; break;
        }
        const auto i = static_cast<std::size_t>(kind);
        auto& slot = dryRun ? counts_[i] : purges_[i];
        if (!slot) slot = std::make_unique<Statement>(db_, dryRun ? sql::kPurge[i].count : sql::kPurge[i].purge);
        auto& s = *slot;
        s.reset();
        s.bind(1, cutoff);
        if (dryRun) {
            s.step();
            const std::int64_t n = s.integer(0);
            s.reset();
            return n;
        }
        s.bind(2, limit);
        s.step();
        s.reset();
        return sqlite3_changes(db_);
    }

    void insertRetentionRun(const RetentionRun& r) override {
        auto& s = insertRun_;
        s.reset();
        s.bind(1, r.started);
        s.bind(2, r.finished);
        s.bind(3, r.trigger);
        int col = 4;
        for (PurgeKind k : kPurgeKinds) s.bind(col++, r.counts[k]);
        s.step();
        s.reset();
    }

    std::optional<RetentionRun> lastRetentionRun() override {
        auto& s = lastRun_;
        s.reset();
        if (!s.step()) return std::nullopt;
        RetentionRun r;
        r.id = s.integer(0);
        r.started = s.integer(1);
        r.finished = s.integer(2);
        r.trigger = s.text(3);
        int col = 4;
        for (PurgeKind k : kPurgeKinds) r.counts[k] = s.integer(col++);
        s.reset();
        return r;
    }

    void insertCall(const CallRecord& c) override {
        auto& s = insertCall_;
        s.reset();
        s.bind(1, c.at);
        s.bind(2, c.method);
        s.bind(3, c.durationMs);
        s.bind(4, c.result);
        s.bind(5, c.uid);
        s.step();
    }

    std::vector<CallRecord> findCalls(const CallQuery& q) override {
        auto& s = selectCalls_;
        s.reset();
        if (q.since) s.bind(1, *q.since);
        if (q.until) s.bind(2, *q.until);
        s.bind(3, q.limit);
        std::vector<CallRecord> out;
        while (s.step()) out.push_back(CallRecord{s.integer(0), s.integer(1), s.text(2), s.integer(3), s.text(4), s.integer(5)});
        s.reset();
        std::reverse(out.begin(), out.end());
        return out;
    }

    std::optional<otp::AuditRecord> lastAuditRecord() override {
        auto& s = lastAudit_;
        s.reset();
        if (!s.step()) return std::nullopt;
        auto r = readAudit(s);
        s.reset();
        return r;
    }

    void insertAuditRecord(const otp::AuditRecord& r) override {
        auto& s = insertAudit_;
        s.reset();
        s.bind(1, r.seq);
        s.bind(2, r.at);
        s.bind(3, r.app);
        s.bind(4, r.event);
        s.bind(5, r.uid);
        s.bind(6, r.outcome);
        s.bind(7, r.requestId);
        s.bind(8, r.subject);
        s.bind(9, r.detail);
        s.bind(10, r.prevHash);
        s.bind(11, r.hash);
        s.step();
    }

    std::vector<otp::AuditRecord> findAuditRecords(const otp::AuditQuery& q) override {
        auto& s = selectAudit_;
        s.reset();
        s.bind(1, q.afterSeq);
        if (q.since) s.bind(2, *q.since);
        if (q.until) s.bind(3, *q.until);
        if (q.app) s.bind(4, *q.app);
        if (q.outcome && !q.outcome->empty() && q.outcome->back() == ':') s.bind(6, *q.outcome);
        else if (q.outcome) s.bind(5, *q.outcome);
        s.bind(7, q.limit);
        std::vector<otp::AuditRecord> out;
        while (s.step()) out.push_back(readAudit(s));
        s.reset();
        return out;
    }

    std::optional<otp::RateCounter> findRateCounter(std::string_view scope, std::string_view key) override {
        auto& s = selectCounter_;
        s.reset();
        s.bind(1, scope);
        s.bind(2, key);
        if (!s.step()) return std::nullopt;
        otp::RateCounter c{s.integer(0), s.integer(1), s.integer(2)};
        s.reset();
        return c;
    }

    void putRateCounter(std::string_view scope, std::string_view key, const otp::RateCounter& c) override {
        auto& s = putCounter_;
        s.reset();
        s.bind(1, scope);
        s.bind(2, key);
        s.bind(3, c.windowStart);
        s.bind(4, c.count);
        s.bind(5, c.lastAt);
        s.step();
    }

    std::optional<otp::SubjectFailures> findSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        auto& s = selectFailures_;
        s.reset();
        s.bind(1, app);
        s.bind(2, subjectHash);
        if (!s.step()) return std::nullopt;
        otp::SubjectFailures f{s.integer(0), s.integer(1)};
        s.reset();
        return f;
    }

    void putSubjectFailures(std::string_view app, std::string_view subjectHash, const otp::SubjectFailures& f) override {
        auto& s = f.failures == 0 ? deleteFailures_ : putFailures_;
        s.reset();
        s.bind(1, app);
        s.bind(2, subjectHash);
        if (f.failures != 0) {
            s.bind(3, f.failures);
            s.bind(4, f.lockedUntil);
        }
        s.step();
    }

    bool updateDeliveryStatus(const otp::ProviderStatus& st) override {
        auto& s = updateStatus_;
        s.reset();
        s.bind(1, st.providerMessageId);
        s.bind(2, st.status);
        s.bind(3, st.at);
        s.bind(4, st.error);
        s.step();
        return s.changes() > 0;
    }

    std::optional<otp::OptOut> findOptOut(std::string_view subjectHash) override {
        auto& s = selectOptOut_;
        s.reset();
        s.bind(1, subjectHash);
        if (!s.step()) return std::nullopt;
        auto e = readOptOut(s);
        s.reset();
        return e;
    }

    void putOptOut(const otp::OptOut& e) override {
        auto& s = insertOptOut_;
        s.reset();
        s.bind(1, e.subjectHash);
        s.bind(2, e.destination);
        s.bind(3, e.createdAt);
        s.bind(4, e.source);
        s.bind(5, e.reason);
        s.step();
    }

    bool removeOptOut(std::string_view subjectHash) override {
        auto& s = deleteOptOut_;
        s.reset();
        s.bind(1, subjectHash);
        s.step();
        return s.changes() > 0;
    }

    std::vector<otp::OptOut> listOptOuts(int limit) override {
        auto& s = listOptOuts_;
        s.reset();
        s.bind(1, limit);
        std::vector<otp::OptOut> out;
        while (s.step()) out.push_back(readOptOut(s));
        s.reset();
        return out;
    }

    void insertDeliveryAttempt(const otp::DeliveryAttempt& a) override {
        auto& s = insertDelivery_;
        s.reset();
        s.bind(1, a.requestId);
        s.bind(2, a.app);
        s.bind(3, a.channel);
        s.bind(4, a.driver);
        s.bind(5, a.send);
        s.bind(6, a.attempt);
        s.bind(7, a.at);
        s.bind(8, a.outcome);
        s.bind(9, a.providerMessageId);
        s.bind(10, a.statusCode);
        s.bind(11, a.durationMs);
        s.bind(12, a.errorClass);
        s.bind(13, a.error);
        s.bind(14, a.ambiguous ? 1 : 0);
        s.step();
    }

    std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& q) override {
        auto& s = selectDeliveries_;
        s.reset();
        if (q.requestId) s.bind(1, *q.requestId);
        if (q.since) s.bind(2, *q.since);
        if (q.until) s.bind(3, *q.until);
        s.bind(4, q.limit);
        std::vector<otp::DeliveryAttempt> out;
        while (s.step()) {
            otp::DeliveryAttempt a;
            a.id = s.integer(0);
            a.requestId = s.text(1);
            a.app = s.text(2);
            a.channel = s.text(3);
            a.driver = s.text(4);
            a.send = static_cast<int>(s.integer(5));
            a.attempt = static_cast<int>(s.integer(6));
            a.at = s.integer(7);
            a.outcome = s.text(8);
            a.providerMessageId = s.text(9);
            a.statusCode = static_cast<int>(s.integer(10));
            a.durationMs = s.integer(11);
            a.errorClass = s.text(12);
            a.error = s.text(13);
            a.ambiguous = s.integer(14) != 0;
            a.providerStatus = s.text(15);
            a.providerStatusAt = s.integer(16);
            a.providerError = s.text(17);
            out.push_back(std::move(a));
        }
        s.reset();
        std::reverse(out.begin(), out.end());
        return out;
    }

    std::optional<otp::OtpRequest> findRequest(std::string_view id) override {
        select_.reset();
        select_.bind(1, id);
        return readOne(select_);
    }

    std::optional<otp::OtpRequest> findNewestPending(std::string_view app, std::string_view subjectHash) override {
        newest_.reset();
        newest_.bind(1, app);
        newest_.bind(2, subjectHash);
        return readOne(newest_);
    }

    void insertRequest(const otp::OtpRequest& r) override {
        auto& s = insert_;
        s.reset();
        s.bind(1, r.id);
        s.bind(2, r.app);
        s.bind(3, r.channel);
        s.bind(4, r.destination);
        s.bind(5, r.subjectHash);
        s.bind(6, r.purpose);
        s.bind(7, r.locale);
        s.bind(8, r.clientIp);
        s.bind(9, r.device);
        s.bind(10, r.reference);
        bindHash(s, 11, r.codeHash);
        s.bind(12, r.codeLength);
        s.bind(13, std::string_view(otp::statusName(r.status)));
        s.bind(14, r.attempts);
        s.bind(15, r.maxAttempts);
        s.bind(16, r.sends);
        s.bind(17, r.maxSends);
        s.bind(18, r.ttl);
        s.bind(19, r.createdAt);
        s.bind(20, r.expiresAt);
        s.bind(21, r.updatedAt);
        if (r.finishedAt) s.bind(22, *r.finishedAt);
        else s.bindNull(22);
        s.bind(23, r.failure);
        s.bind(24, r.fallbackDestination);
        s.step();
    }

    void updateRequest(const otp::OtpRequest& r) override {
        auto& s = update_;
        s.reset();
        s.bind(1, r.id);
        bindHash(s, 2, r.codeHash);
        s.bind(3, std::string_view(otp::statusName(r.status)));
        s.bind(4, r.attempts);
        s.bind(5, r.sends);
        s.bind(6, r.expiresAt);
        s.bind(7, r.updatedAt);
        if (r.finishedAt) s.bind(8, *r.finishedAt);
        else s.bindNull(8);
        s.bind(9, r.failure);
        s.bind(10, r.channel);
        s.step();
        if (s.changes() != 1) throw std::runtime_error("request " + r.id + " vanished during an update");
    }

private:
    static otp::AuditRecord readAudit(const Statement& s) {
        otp::AuditRecord r;
        r.seq = s.integer(0);
        r.at = s.integer(1);
        r.app = s.text(2);
        r.event = s.text(3);
        r.uid = s.integer(4);
        r.outcome = s.text(5);
        r.requestId = s.text(6);
        r.subject = s.text(7);
        r.detail = s.text(8);
        r.prevHash = s.text(9);
        r.hash = s.text(10);
        return r;
    }

    static void bindHash(Statement& s, int i, const std::optional<crypto::Digest>& h) {
        if (h) s.bindBlob(i, h->data(), h->size());
        else s.bindNull(i);
    }

    static otp::OptOut readOptOut(const Statement& s) {
        otp::OptOut e;
        e.subjectHash = s.text(0);
        e.destination = s.text(1);
        e.createdAt = s.integer(2);
        e.source = s.text(3);
        e.reason = s.text(4);
        return e;
    }

    static std::optional<otp::OtpRequest> readOne(Statement& s) {
        if (!s.step()) return std::nullopt;
        otp::OtpRequest r;
        r.id = s.text(0);
        r.app = s.text(1);
        r.channel = s.text(2);
        r.destination = s.text(3);
        r.subjectHash = s.text(4);
        r.purpose = s.text(5);
        r.locale = s.text(6);
        r.clientIp = s.text(7);
        r.device = s.text(8);
        r.reference = s.text(9);
        if (!s.isNull(10)) {
            const auto b = s.blob(10);
            if (b.size() == crypto::Digest{}.size()) {
                crypto::Digest d{};
                std::memcpy(d.data(), b.data(), d.size());
                r.codeHash = d;
            }
        }
        r.codeLength = static_cast<int>(s.integer(11));
        r.status = otp::parseStatus(s.text(12)).value_or(otp::Status::Failed);
        r.attempts = static_cast<int>(s.integer(13));
        r.maxAttempts = static_cast<int>(s.integer(14));
        r.sends = static_cast<int>(s.integer(15));
        r.maxSends = static_cast<int>(s.integer(16));
        r.ttl = s.integer(17);
        r.createdAt = s.integer(18);
        r.expiresAt = s.integer(19);
        r.updatedAt = s.integer(20);
        if (!s.isNull(21)) r.finishedAt = s.integer(21);
        r.failure = s.text(22);
        r.fallbackDestination = s.text(23);
        s.reset();
        return r;
    }

    sqlite3* db_;
    Statement insertRun_, lastRun_;
    std::unique_ptr<Statement> purges_[std::size(sql::kPurge)], counts_[std::size(sql::kPurge)];
    Statement select_, newest_, insert_, update_, insertDelivery_, selectDeliveries_, updateStatus_, selectOptOut_,
        insertOptOut_, deleteOptOut_, listOptOuts_, selectCounter_, putCounter_, selectFailures_, putFailures_,
        deleteFailures_, lastAudit_, insertAudit_, selectAudit_,
        selectFraud_, putFraud_, expireFraud_, insertCall_, selectCalls_;
};

class SqlcipherStore final : public Store {
public:
    explicit SqlcipherStore(SqlcipherOptions options) : path_(options.path), maxBatch_(options.maxBatch) {
        if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            nullptr) != SQLITE_OK) {
            const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open database " + path_ + ": " + message);
        }
        try {
            applyKey(options.key);
            // A wrong key or a foreign file fails on the first read of the schema.
            char* err = nullptr;
            if (sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, &err) != SQLITE_OK) {
                sqlite3_free(err);
                throw std::runtime_error("cannot open database " + path_ +
                                         ": the store key does not match (or the file is not a twofactor database)");
            }
            exec(db_, "PRAGMA journal_mode = WAL");
            exec(db_, options.synchronousFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
            exec(db_, "PRAGMA foreign_keys = ON");
            exec(db_, "PRAGMA secure_delete = ON");
            exec(db_, "PRAGMA temp_store = MEMORY");
            sqlite3_busy_timeout(db_, 5000);
            migrate();
            txn_ = std::make_unique<SqlcipherTransaction>(db_);
            // Prepared once: the writer runs these for every work item.
            begin_ = std::make_unique<Statement>(db_, "BEGIN IMMEDIATE");
            commit_ = std::make_unique<Statement>(db_, "COMMIT");
            savepoint_ = std::make_unique<Statement>(db_, "SAVEPOINT item");
            release_ = std::make_unique<Statement>(db_, "RELEASE item");
            rollbackTo_ = std::make_unique<Statement>(db_, "ROLLBACK TO item");
        } catch (...) {
            sqlite3_close(db_);
            throw;
        }
        writer_ = std::thread([this] { run(); });
    }

    ~SqlcipherStore() override {
        close();
    }

    void submit(Work work, Done done) override {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) {
                if (done) done(std::make_exception_ptr(std::runtime_error("the store is closed")));
                return;
            }
            queue_.push_back(Item{std::move(work), std::move(done)});
        }
        wake_.notify_one();
    }

    void checkpoint(Done done) override {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) {
                if (done) done(std::make_exception_ptr(std::runtime_error("the store is closed")));
                return;
            }
            queue_.push_back(Item{nullptr, std::move(done), true});
        }
        wake_.notify_one();
    }

    void close() override {
        {
            std::lock_guard lock(mutex_);
            if (stopping_ && !writer_.joinable()) return;
            stopping_ = true;
        }
        wake_.notify_all();
        if (writer_.joinable()) writer_.join();
        if (db_) {
            txn_.reset();
            begin_.reset();
            commit_.reset();
            savepoint_.reset();
            release_.reset();
            rollbackTo_.reset();
            sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
            sqlite3_close(db_);
            db_ = nullptr;
        }
    }

    std::string description() const override { return path_; }

private:
    struct Item {
        Work work;
        Done done;
        bool checkpoint = false;
    };

    void applyKey(const SecretBytes& key) {
        if (key.size() != 32) throw std::runtime_error("the store key must be 256 bits");
        // The raw-key form: no passphrase derivation. The statement text is wiped after use.
        SecretString pragma("PRAGMA key = \"x'" + crypto::hex(key.data(), key.size()) + "'\"");
        if (sqlite3_exec(db_, pragma.str().c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
            throw std::runtime_error("cannot apply the store key: " + std::string(sqlite3_errmsg(db_)));
    }

    void migrate() {
        const int current = static_cast<int>(queryInt(db_, "PRAGMA user_version"));
        const int target = schemaVersion();
        if (current > target)
            throw std::runtime_error(path_ + " has schema version " + std::to_string(current) +
                                     ", newer than this twofactord (" + std::to_string(target) + ")");
        for (int v = current; v < target; ++v) {
            exec(db_, "BEGIN IMMEDIATE");
            try {
                exec(db_, sql::kMigrations[v]);
                exec(db_, ("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
                exec(db_, "COMMIT");
            } catch (...) {
                sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
                throw;
            }
            if (current > 0) log::info("migrated " + path_ + " to schema version " + std::to_string(v + 1));
        }
    }

    void run() {
        std::vector<Item> batch;
        std::vector<std::exception_ptr> errors;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (queue_.empty() && stopping_) return;
                if (queue_.front().checkpoint) {
                    Item item = std::move(queue_.front());
                    queue_.pop_front();
                    lock.unlock();
                    std::exception_ptr error;
                    char* err = nullptr;
                    if (sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, &err) != SQLITE_OK) {
                        error = std::make_exception_ptr(
                            std::runtime_error(std::string("checkpoint failed: ") + (err ? err : "?")));
                    }
                    sqlite3_free(err);
                    if (item.done) item.done(error);
                    continue;
                }
                while (!queue_.empty() && batch.size() < maxBatch_ && !queue_.front().checkpoint) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            runBatch(batch, errors);
            for (std::size_t i = 0; i < batch.size(); ++i)
                if (batch[i].done) batch[i].done(errors[i]);
            batch.clear();
            errors.clear();
        }
    }

    // One transaction for the whole batch; each item in its own savepoint so
    // a failing item rolls back alone.
    void runBatch(std::vector<Item>& batch, std::vector<std::exception_ptr>& errors) {
        errors.assign(batch.size(), nullptr);
        try {
            run(*begin_);
        } catch (...) {
            std::fill(errors.begin(), errors.end(), std::current_exception());
            return;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            try {
                run(*savepoint_);
                try {
                    batch[i].work(*txn_);
                } catch (...) {
                    errors[i] = std::current_exception();
                    run(*rollbackTo_);
                }
                run(*release_);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
        try {
            run(*commit_);
        } catch (...) {
            auto e = std::current_exception();
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            std::fill(errors.begin(), errors.end(), e);
            log::error("a store commit failed; its requests were refused");
        }
    }

    static void run(Statement& s) {
        s.reset();
        s.step();
        s.reset();
    }

    std::unique_ptr<Statement> begin_, commit_, savepoint_, release_, rollbackTo_;
    std::string path_;
    std::size_t maxBatch_;
    sqlite3* db_ = nullptr;
    std::unique_ptr<SqlcipherTransaction> txn_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::thread writer_;
};

}  // namespace

const char* purgeKindName(PurgeKind kind) {
    switch (kind) {
        case PurgeKind::CodeHashes: return "codeHashes";
        case PurgeKind::Deliveries: return "deliveries";
        case PurgeKind::RequestLog: return "requestLog";
        case PurgeKind::ClientData: return "clientData";
        case PurgeKind::RateCounters: return "rateCounters";
        case PurgeKind::FraudSets: return "fraudSets";
        case PurgeKind::SubjectFailures: return "subjectFailures";
    }
    return "?";
}

std::int64_t& PurgeCounts::operator[](PurgeKind k) {
    switch (k) {
        case PurgeKind::CodeHashes: return codeHashes;
        case PurgeKind::Deliveries: return deliveries;
        case PurgeKind::RequestLog: return requestLog;
        case PurgeKind::ClientData: return clientData;
        case PurgeKind::RateCounters: return rateCounters;
        case PurgeKind::FraudSets: return fraudSets;
        case PurgeKind::SubjectFailures: return subjectFailures;
    }
    return codeHashes;
}

std::int64_t PurgeCounts::total() const {
    std::int64_t n = 0;
    for (PurgeKind k : kPurgeKinds) n += (*this)[k];
    return n;
}

PurgeCounts purge(Store& store, std::int64_t now, const RetentionPolicy& policy, int batchSize, bool dryRun,
                  const std::function<void(const PurgeCounts&)>& progress) {
    PurgeCounts counts;
    if (batchSize < 1) batchSize = 1;
    for (PurgeKind kind : kPurgeKinds) {
        if (dryRun) {
            counts[kind] = runSync(store, [&](Transaction& t) { return t.purgeStep(kind, now, policy, batchSize, true); });
            if (progress) progress(counts);
            continue;
        }
        for (;;) {
            // Each batch is its own work item: verify calls queue between them.
            const std::int64_t n =
                runSync(store, [&](Transaction& t) { return t.purgeStep(kind, now, policy, batchSize, false); });
            counts[kind] += n;
            if (progress) progress(counts);
            if (n < batchSize) break;
        }
    }
    if (!dryRun) {
        std::promise<void> done;
        auto future = done.get_future();
        store.checkpoint([&](std::exception_ptr e) { e ? done.set_exception(e) : done.set_value(); });
        future.get();
    }
    return counts;
}

int schemaVersion() { return static_cast<int>(std::size(sql::kMigrations)); }

std::unique_ptr<Store> openSqlcipherStore(SqlcipherOptions options) {
    return std::make_unique<SqlcipherStore>(std::move(options));
}

}  // namespace twofactor::store
