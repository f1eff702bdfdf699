#include "store/postgres/store.hpp"

#include "store/postgres/schema.hpp"
#include "store/postgres/sealed.hpp"
#include "otp/audit.hpp"
#include "util/crypto.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace twofactor::store {

namespace {

// A failed statement, with its SQLSTATE: retried whole when it is a
// serialization failure or a deadlock, reported otherwise. The message is
// the server's primary one only: its detail can quote values (sealed bytes,
// hashes), which stay out of logs.
struct PgError : std::runtime_error {
    PgError(const std::string& what, std::string state, bool moved = false)
        : std::runtime_error(what), sqlstate(std::move(state)), chainMoved(moved) {}
    std::string sqlstate;
    // The audit chain the work item appended to was taken over (kInsertAudit):
    // the item runs again, on another chain.
    bool chainMoved = false;
    [[nodiscard]] bool retryable() const { return sqlstate == "40001" || sqlstate == "40P01" || chainMoved; }
};

// The holders of a node's starts: the range [prefix, prefix with its last
// byte + 1) of holders, which compare byte by byte (migration 13); without
// a prefix, a range nothing falls in.
std::pair<std::string, std::string> holderRange(std::string_view prefix) {
    if (prefix.empty()) return {"\x01", "\x01"};
    std::string low(prefix), high(prefix);
    high.back() = static_cast<char>(high.back() + 1);
    return {low, high};
}

// The audit chains this node holds (see kTakeAuditChain), under one name,
// with their heads, idle between the transactions that append to them. A
// transaction borrows the lowest idle one, or takes one from the database
// when all it holds are in use, and gives it back with the head its commit
// left (or, rolled back, with the head it borrowed). A node that runs one
// audited transaction at a time appends to one chain. A chain idle for
// most of its lease is lent as stale: the transaction renews it first
// (kRenewAuditChain), and if another node took it meanwhile, lets it go.
class AuditChains {
public:
    using Clock = std::chrono::steady_clock;
    struct Held {
        otp::AuditCheckpoint head;
        Clock::time_point renewed;  // its last committed append: the lease runs from there
        bool stale = false;         // idle for most of the lease: renew before appending
    };
    AuditChains(int leaseSeconds, const std::string& node)
        : lease(std::max(1, leaseSeconds)),
          holder((node.empty() ? "" : node + "/") + crypto::hex(crypto::randomSecret(12).data(), 12)),
          starts(holderRange(node.empty() ? "" : node + "/")) {}
    const std::int64_t lease;  // seconds
    const std::string holder;  // node/start, or a random name without a node
    const std::pair<std::string, std::string> starts;  // the node's starts, this one among them

    std::optional<Held> borrow() {
        std::lock_guard lock(m_);
        if (idle_.empty()) return std::nullopt;
        const auto lowest = std::min_element(idle_.begin(), idle_.end(),
                                             [](const Held& a, const Held& b) { return a.head.chain < b.head.chain; });
        Held out = *lowest;
        idle_.erase(lowest);
        // Five sixths of the lease (100 s of 120): the rest is for the
        // transaction still under way, and for the server's clock.
        out.stale = Clock::now() - out.renewed > std::chrono::milliseconds(lease * 1000 * 5 / 6);
        return out;
    }
    void giveBack(Held held) {
        std::lock_guard lock(m_);
        idle_.push_back(std::move(held));
    }
    [[nodiscard]] bool any() const {
        std::lock_guard lock(m_);
        return !idle_.empty();
    }

private:
    mutable std::mutex m_;
    std::vector<Held> idle_;
};

// Parameters in text format except bytea, which goes binary.
class Params {
public:
    Params() = default;
    Params(Params&&) noexcept = default;
    Params& operator=(Params&&) noexcept = default;
    Params(const Params&) = delete;
    Params& operator=(const Params&) = delete;

    Params& text(std::string_view v) {
        values_.emplace_back(v);
        null_.push_back(false);
        binary_.push_back(0);
        return *this;
    }
    Params& integer(std::int64_t v) { return text(std::to_string(v)); }
    Params& bytes(const void* p, std::size_t n) {
        values_.emplace_back(static_cast<const char*>(p), n);
        null_.push_back(false);
        binary_.push_back(1);
        return *this;
    }
    Params& null() {
        values_.emplace_back();
        null_.push_back(true);
        binary_.push_back(0);
        return *this;
    }
    Params& optionalInteger(const std::optional<std::int64_t>& v) { return v ? integer(*v) : null(); }

    [[nodiscard]] int size() const { return static_cast<int>(values_.size()); }
    void pointers(std::vector<const char*>& v, std::vector<int>& len) const {
        for (std::size_t i = 0; i < values_.size(); ++i) {
            v.push_back(null_[i] ? nullptr : values_[i].data());
            len.push_back(static_cast<int>(values_[i].size()));
        }
    }
    [[nodiscard]] const int* formats() const { return binary_.data(); }

    ~Params() {
        // Values may be sealed personal data or hashes: not left in freed memory.
        for (auto& v : values_) std::fill(v.begin(), v.end(), '\0');
    }

private:
    std::vector<std::string> values_;
    std::vector<bool> null_;
    std::vector<int> binary_;
};

class Result {
public:
    explicit Result(PGresult* r) : r_(r) {}
    Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    Result(const Result&) = delete;
    Result& operator=(const Result&) = delete;
    Result& operator=(Result&& o) noexcept {
        if (this != &o) {
            if (r_) PQclear(r_);
            r_ = o.r_;
            o.r_ = nullptr;
        }
        return *this;
    }
    ~Result() {
        if (r_) PQclear(r_);
    }
    [[nodiscard]] const PGresult* raw() const { return r_; }
    [[nodiscard]] int rows() const { return PQntuples(r_); }
    [[nodiscard]] std::int64_t affected() const {
        const char* n = PQcmdTuples(r_);
        return n && *n ? std::strtoll(n, nullptr, 10) : 0;
    }
    [[nodiscard]] bool null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
    [[nodiscard]] std::string text(int row, int col) const {
        return std::string(PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col)));
    }
    [[nodiscard]] std::int64_t integer(int row, int col) const {
        return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
    }
    // bytea arrives in hex text ("\x…").
    [[nodiscard]] std::string bytes(int row, int col) const {
        std::size_t n = 0;
        unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
        if (!raw) throw std::runtime_error("PostgreSQL: a bytea value could not be decoded");
        std::string out(reinterpret_cast<const char*>(raw), n);
        std::fill(raw, raw + n, 0);
        PQfreemem(raw);
        return out;
    }

private:
    PGresult* r_;
};

class Connection {
public:
    explicit Connection(const SecretString& dsn, bool prepare = true) : prepare_(prepare) {
        // A server that is gone must not hold the call for TCP's own timeout:
        // connect_timeout comes first, so one in the connection string wins.
        std::string text(dsn.view());
        const char* keys[] = {"connect_timeout", "dbname", nullptr};
        const char* values[] = {"3", text.c_str(), nullptr};
        c_ = PQconnectdbParams(keys, values, 1);
        std::fill(text.begin(), text.end(), '\0');  // it may hold a password
        if (!c_ || PQstatus(c_) != CONNECTION_OK) {
            const std::string why = c_ ? firstLine(PQerrorMessage(c_)) : "out of memory";
            if (c_) PQfinish(c_);
            c_ = nullptr;
            throw PgError("the PostgreSQL database is unreachable: " + why, "08006");
        }
        // Notices (e.g. "relation already exists, skipping") are not errors.
        PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() {
        if (c_) PQfinish(c_);
    }

    [[nodiscard]] bool ok() const { return c_ && !broken_ && PQstatus(c_) == CONNECTION_OK; }

    // Each statement is parsed and planned once per connection (a named
    // prepared statement), not at every call: a pair's thirty-odd statements
    // cost the server more to plan than to run. BEGIN, COMMIT and ROLLBACK go
    // as simple queries. With `prepare` off (PgBouncer before 1.21 in
    // transaction pooling, which loses them between transactions), every
    // statement is sent with its text.
    Result exec(const char* sql, const Params& p = Params()) {
        if (!queued_.empty()) {
            const Statement one{sql, &p};
            return std::move(pipeline({&one, 1}).back());
        }
        std::vector<const char*> values;
        std::vector<int> lengths;
        p.pointers(values, lengths);
        if (p.size() == 0 && isTransactionControl(sql)) {
            Result r(PQexec(c_, sql));
            check(r, sql);
            return r;
        }
        const std::string* name = prepare_ ? preparedName(sql, p.size()) : nullptr;
        Result r(name ? PQexecPrepared(c_, name->c_str(), p.size(), values.data(), lengths.data(), p.formats(), 0)
                      : PQexecParams(c_, sql, p.size(), nullptr, values.data(), lengths.data(), p.formats(), 0));
        check(r, sql);
        return r;
    }

    // ---- Fewer round trips: statements sent together (libpq's pipeline mode) ----
    // A statement whose outcome the work item does not read (a row inserted,
    // a counter moved, a job ended) waits with `later` and goes with the next
    // statement whose result is read, or with the COMMIT: one round trip for
    // all of them, executed in order, so what is read sees them. An error of
    // a queued statement is thrown there; a failed statement aborts the
    // transaction either way, and the work item ends (or runs again) whole.
    struct Statement {
        const char* sql;
        const Params* params;
    };
    // Takes p's values (p is left empty), so that a Params built in the call
    // (Params().text(…)) is passed as it is.
    void later(const char* sql, Params& p) { queued_.push_back(Queued{sql, std::move(p)}); }
    // BEGIN waits for the work item's first statement.
    void begin() { queued_.push_back(Queued{"BEGIN", Params()}); }
    // A work item that ran no statement commits nothing: its BEGIN is dropped.
    void commit() {
        if (queued_.size() == 1 && std::strcmp(queued_.front().sql, "BEGIN") == 0) {
            queued_.clear();
            return;
        }
        exec("COMMIT");
    }
    // Before a ROLLBACK: what waits is not sent.
    void discard() { queued_.clear(); }
    // Statements whose results are read, independent of each other's: the
    // queued ones, then these, in one round trip. The results of these.
    std::vector<Result> execAll(std::span<const Statement> batch) { return pipeline(batch); }

    // Several statements without parameters (a migration): the simple query protocol.
    void script(const char* sql) {
        Result r(PQexec(c_, sql));
        check(r, sql);
    }

    void check(const Result& r, const char* sql) {
        (void)sql;
        const PGresult* raw = r.raw();
        if (!raw) throw PgError("the PostgreSQL database is unreachable: " + firstLine(PQerrorMessage(c_)), "08006");
        const auto st = PQresultStatus(raw);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return;
        const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
        const char* primary = PQresultErrorField(raw, PG_DIAG_MESSAGE_PRIMARY);
        std::string what = primary ? primary : firstLine(PQerrorMessage(c_));
        std::string code = state ? state : (ok() ? "XX000" : "08006");
        if (code.rfind("08", 0) == 0 || !ok()) what = "the PostgreSQL database is unreachable: " + what;
        else what = "database error: " + what;
        const char* table = PQresultErrorField(raw, PG_DIAG_TABLE_NAME);
        const char* column = PQresultErrorField(raw, PG_DIAG_COLUMN_NAME);
        const bool moved = code == "23502" && table && column && std::strcmp(table, "audit") == 0 &&
                           std::strcmp(column, "chain") == 0;
        throw PgError(what, code, moved);
    }

private:
    struct Queued {
        const char* sql;
        Params params;
    };

    // The queued statements and then `extra`, sent with one sync; returns
    // the results of `extra`. The first statement that failed is thrown
    // (those after it were skipped by the server). A connection that breaks
    // in the middle is marked so, and the next work item opens a new one.
    std::vector<Result> pipeline(std::span<const Statement> extra) {
        std::vector<Queued> queued = std::move(queued_);
        queued_.clear();
        std::vector<Statement> all;
        all.reserve(queued.size() + extra.size());
        for (const auto& q : queued) all.push_back(Statement{q.sql, &q.params});
        for (const auto& e : extra) all.push_back(e);
        // Prepared first, one at a time: PQprepare waits for its answer.
        std::vector<const std::string*> names(all.size(), nullptr);
        for (std::size_t i = 0; i < all.size(); ++i)
            if (prepare_ && !(all[i].params->size() == 0 && isTransactionControl(all[i].sql)))
                names[i] = preparedName(all[i].sql, all[i].params->size());
        const auto lost = [this](const char* what) {
            broken_ = true;
            throw PgError(std::string("the PostgreSQL database is unreachable: ") + what + ": " +
                              firstLine(PQerrorMessage(c_)),
                          "08006");
        };
        if (PQenterPipelineMode(c_) != 1) lost("pipeline mode");
        for (std::size_t i = 0; i < all.size(); ++i) {
            std::vector<const char*> values;
            std::vector<int> lengths;
            const Params& p = *all[i].params;
            p.pointers(values, lengths);
            const int sent = names[i] ? PQsendQueryPrepared(c_, names[i]->c_str(), p.size(), values.data(),
                                                            lengths.data(), p.formats(), 0)
                                      : PQsendQueryParams(c_, all[i].sql, p.size(), nullptr, values.data(),
                                                          lengths.data(), p.formats(), 0);
            if (sent != 1) lost("sending");
        }
        if (PQpipelineSync(c_) != 1) lost("sending");
        std::vector<Result> results;
        results.reserve(all.size());
        for (std::size_t i = 0; i < all.size(); ++i) {
            PGresult* r = PQgetResult(c_);
            if (!r) lost("reading");
            results.emplace_back(r);
            while (PGresult* more = PQgetResult(c_)) PQclear(more);  // up to the statement's end
        }
        {
            Result sync(PQgetResult(c_));
            if (!sync.raw() || PQresultStatus(sync.raw()) != PGRES_PIPELINE_SYNC) lost("reading");
        }
        if (PQexitPipelineMode(c_) != 1) lost("pipeline mode");
        for (std::size_t i = 0; i < all.size(); ++i)
            if (PQresultStatus(results[i].raw()) != PGRES_PIPELINE_ABORTED) check(results[i], all[i].sql);
        results.erase(results.begin(), results.begin() + static_cast<std::ptrdiff_t>(queued.size()));
        return results;
    }

    static std::string firstLine(const char* s) {
        std::string t = s ? s : "";
        if (auto nl = t.find('\n'); nl != std::string::npos) t.resize(nl);
        return t;
    }
    static bool isTransactionControl(const char* sql) {
        return std::strcmp(sql, "BEGIN") == 0 || std::strcmp(sql, "COMMIT") == 0 || std::strcmp(sql, "ROLLBACK") == 0;
    }
    // The name `sql` is prepared under on this connection, preparing it the
    // first time; nullptr when it cannot be (then it is sent with its text).
    // Keyed by the text, not the pointer: a statement built at run time may
    // reuse an address. Bounded: the daemon has a few hundred statements.
    const std::string* preparedName(const char* sql, int params) {
        if (auto it = prepared_.find(sql); it != prepared_.end()) return &it->second;
        if (prepared_.size() >= kMaxPrepared) return nullptr;
        std::string name = "tf" + std::to_string(prepared_.size() + 1);
        Result r(PQprepare(c_, name.c_str(), sql, params, nullptr));
        check(r, sql);
        return &prepared_.emplace(sql, std::move(name)).first->second;
    }
    static constexpr std::size_t kMaxPrepared = 1024;

public:
    // Per app, the hour this connection last pruned the email feedback
    // hours before: once an hour, not at every send.
    std::map<std::string, std::int64_t, std::less<>> feedbackPruned;

private:
    bool prepare_ = true;
    bool broken_ = false;  // a pipeline broke off: the connection is not reused
    std::vector<Queued> queued_;
    PGconn* c_ = nullptr;
    std::unordered_map<std::string, std::string> prepared_;
};

class PostgresTransaction final : public Transaction {
public:
    PostgresTransaction(Connection& c, const pg::ColumnSealer& sealer, AuditChains& chains)
        : c_(c), seal_(sealer), chains_(chains) {}

    // ---- requests ----
    // A verify reads the request, then its subject's flags and failures:
    // read with it, and kept for the subjectFlags and findSubjectFailures
    // that follow in this transaction, until this transaction changes them.
    std::optional<otp::OtpRequest> findRequest(std::string_view id) override {
        auto r = c_.exec(pg::kSelectRequestAndSubject, Params().text(id));
        auto request = readOne(r);
        if (!request) return request;
        constexpr int kAfter = 24;  // the columns after the request's
        SubjectFlags flags;
        if (!r.null(0, kAfter)) flags.restrictedAt = r.integer(0, kAfter);
        if (!r.null(0, kAfter + 1)) flags.objectedAt = r.integer(0, kAfter + 1);
        flagsSeen_ = SeenFlags{request->subjectHash, flags};
        std::optional<otp::SubjectFailures> failures;
        if (!r.null(0, kAfter + 2)) failures = otp::SubjectFailures{r.integer(0, kAfter + 2), r.integer(0, kAfter + 3)};
        failuresSeen_ = SeenFailures{request->app, request->subjectHash, failures};
        return request;
    }
    std::optional<otp::OtpRequest> findNewestPending(std::string_view app, std::string_view subjectHash) override {
        return readOne(c_.exec(pg::kSelectNewestPending, Params().text(app).text(subjectHash)));
    }
    void insertRequest(const otp::OtpRequest& r) override {
        Params p;
        const auto sealed = [&](const char* column, const std::string& v) { return seal_.seal("requests", column, r.id, v); };
        const std::string destination = sealed("destination", r.destination), clientIp = sealed("client_ip", r.clientIp),
                          device = sealed("device", r.device), reference = sealed("reference", r.reference),
                          fallback = sealed("fallback_destination", r.fallbackDestination);
        p.text(r.id).text(r.app).text(r.channel).bytes(destination.data(), destination.size()).text(r.subjectHash);
        p.text(r.purpose).text(r.locale).bytes(clientIp.data(), clientIp.size()).bytes(device.data(), device.size());
        p.bytes(reference.data(), reference.size());
        if (r.codeHash) p.bytes(r.codeHash->data(), r.codeHash->size());
        else p.null();
        p.integer(r.codeLength).text(otp::statusName(r.status)).integer(r.attempts).integer(r.maxAttempts);
        p.integer(r.sends).integer(r.maxSends).integer(r.ttl).integer(r.createdAt).integer(r.expiresAt);
        p.integer(r.updatedAt).optionalInteger(r.finishedAt).text(r.failure).bytes(fallback.data(), fallback.size());
        p.text(seal_.blindIndex(r.fallbackDestination));
        c_.later(pg::kInsertRequest, p);
    }

    // ---- request state changes ----
    bool approveRequest(std::string_view id, int send, const crypto::Digest& codeHash, std::int64_t now) override {
        return c_.exec(pg::kApproveRequest, Params().text(id).integer(send).integer(now).bytes(codeHash.data(), codeHash.size()))
                   .affected() == 1;
    }
    std::optional<WrongCode> countWrongCode(std::string_view id, std::int64_t now) override {
        auto r = c_.exec(pg::kCountWrongCode, Params().text(id).integer(now));
        if (r.rows() != 1) return std::nullopt;
        return WrongCode{static_cast<int>(r.integer(0, 0)), r.text(0, 1) == "locked"};
    }
    bool finishRequest(std::string_view id, std::optional<int> send, otp::Status to, std::int64_t now,
                       std::string_view failure) override {
        Params p;
        p.text(id);
        if (send) p.integer(*send);
        else p.null();
        p.text(otp::statusName(to)).integer(now).text(failure);
        return c_.exec(pg::kFinishRequest, p).affected() == 1;
    }
    bool replaceCode(std::string_view id, int send, const crypto::Digest& codeHash, std::int64_t expiresAt,
                     std::int64_t now) override {
        Params p;
        p.text(id).integer(send).bytes(codeHash.data(), codeHash.size()).integer(expiresAt).integer(now);
        return c_.exec(pg::kReplaceCode, p).affected() == 1;
    }
    bool switchChannel(std::string_view id, int send, std::string_view channel, std::int64_t now) override {
        return c_.exec(pg::kSwitchChannel, Params().text(id).integer(send).text(channel).integer(now)).affected() == 1;
    }

    // ---- limits ----
    bool countSendsIf(const std::vector<otp::RateKey>& keys, std::int64_t now, const RateDecision& admit) override {
        // Locked in sorted order, so two sends sharing counters never wait on
        // each other in a cycle; the app-wide counters (spreadCap) last, in shares.
        std::vector<std::size_t> order(keys.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            if ((keys[a].spreadCap > 0) != (keys[b].spreadCap > 0)) return keys[b].spreadCap > 0;
            const int s = std::string_view(keys[a].scope).compare(keys[b].scope);
            return s != 0 ? s < 0 : keys[a].key < keys[b].key;
        });
        // A send checks its limits, then counts them (otp::checkSend, then
        // otp::admitSend, with the same keys and time): the rows the check
        // locked stay locked to the commit and unchanged, so the count reads
        // them from the check instead of locking them again.
        if (!rateLocked_ || !rateLocked_->same(keys, now)) rateLocked_ = lockRateCounters(keys, order, now);
        if (!admit(rateLocked_->found)) return false;
        for (std::size_t i : order)
            c_.later(pg::kCountRateSend,
                     Params().text(keys[i].scope).text(rateLocked_->counted[i]).integer(keys[i].window).integer(now));
        rateLocked_.reset();  // counted: what was read is no longer what is stored
        return true;
    }

    // What countSendsIf locked and read in this transaction, for its keys at `now`.
    struct RateLocks {
        std::vector<otp::RateKey> keys;
        std::int64_t now = 0;
        std::vector<std::optional<otp::RateCounter>> found;  // what the caller's decision sees
        std::vector<std::string> counted;                     // the row each key counts in
        [[nodiscard]] bool same(const std::vector<otp::RateKey>& k, std::int64_t at) const {
            if (at != now || k.size() != keys.size()) return false;
            for (std::size_t i = 0; i < k.size(); ++i)
                if (std::strcmp(k[i].scope, keys[i].scope) != 0 || k[i].key != keys[i].key ||
                    k[i].window != keys[i].window || k[i].spreadCap != keys[i].spreadCap)
                    return false;
            return true;
        }
    };
    // Each plain counter locked (made when missing), each app-wide one's
    // first claim of a share: one round trip. A counter without a free share
    // then waits for its shares one by one (claimShareInTurn). The first
    // claims do not wait (SKIP LOCKED); with two app-wide counters in one
    // call (no caller has more than one) a wait could close a cycle, which
    // the server breaks as a deadlock and runItem runs the work again.
    RateLocks lockRateCounters(const std::vector<otp::RateKey>& keys, const std::vector<std::size_t>& order,
                               std::int64_t now) {
        RateLocks out{keys, now, std::vector<std::optional<otp::RateCounter>>(keys.size()),
                      std::vector<std::string>(keys.size())};
        std::vector<Shares> shares(keys.size());
        std::vector<Params> params(order.size());
        std::vector<Connection::Statement> batch;
        for (std::size_t n = 0; n < order.size(); ++n) {
            const otp::RateKey& k = keys[order[n]];
            if (k.spreadCap > 0) {
                shares[order[n]] = sharesOf(k);
                params[n] = claimParams(k, shares[order[n]], now);
                batch.push_back({pg::kClaimRateShare, &params[n]});
            } else {
                params[n].text(k.scope).text(k.key);
                batch.push_back({pg::kLockRateCounter, &params[n]});
            }
        }
        auto results = c_.execAll(batch);
        for (std::size_t n = 0; n < order.size(); ++n) {
            const std::size_t i = order[n];
            const Result& r = results[n];
            out.counted[i] = keys[i].key;
            if (keys[i].spreadCap > 0) {
                if (r.rows() == 1)
                    out.found[i] = takeShare(r.text(0, 0), otp::RateCounter{r.integer(0, 1), r.integer(0, 2), r.integer(0, 3)},
                                             out.counted[i]);
                else
                    out.found[i] = claimShareInTurn(keys[i], shares[i], now, out.counted[i]);
                continue;
            }
            if (r.rows() == 1 && r.integer(0, 1) > 0) out.found[i] = otp::RateCounter{r.integer(0, 0), r.integer(0, 1), r.integer(0, 2)};
        }
        return out;
    }

    // An app-wide counter's shares (kRateShares of them, caps adding up to
    // spreadCap), in the order this call tries them: from a start of its own.
    struct Shares {
        std::vector<std::string> names;
        std::vector<std::int64_t> caps;
        std::string keyList, capList;  // as arrays, in the order tried
    };
    static Shares sharesOf(const otp::RateKey& k) {
        const std::int64_t cap = k.spreadCap;
        Shares sh{std::vector<std::string>(kRateShares), std::vector<std::int64_t>(kRateShares), {}, {}};
        for (int s = 0; s < kRateShares; ++s) {
            sh.names[s] = s == 0 ? k.key : k.key + "#" + std::to_string(s);
            sh.caps[s] = cap / kRateShares + (s < cap % kRateShares ? 1 : 0);
        }
        const int start = static_cast<int>(shareDraw() % kRateShares);
        ArrayLiteral keyList, capList;
        for (int n = 0; n < kRateShares; ++n) {
            const int s = (start + n) % kRateShares;
            keyList.add(arrayElement(sh.names[s]));
            capList.add(sh.caps[s]);
        }
        sh.keyList = keyList.str();
        sh.capList = capList.str();
        return sh;
    }
    static Params claimParams(const otp::RateKey& k, const Shares& sh, std::int64_t now) {
        Params p;
        p.text(k.scope).text(sh.keyList).text(sh.capList).integer(now).integer(k.window);
        return p;
    }
    // The share taken: what the caller sees (nothing for one never counted).
    static std::optional<otp::RateCounter> takeShare(std::string key, const otp::RateCounter& c, std::string& row) {
        row = std::move(key);
        if (c.count == 0) return std::nullopt;
        return c;
    }
    // No share with room was free at the first claim: the share rows are
    // made (a counter's first send), the claim is tried again, and when
    // every share is full or held, each is waited for in turn (in one order
    // for every writer). Sets `row` to the share's key; returns what
    // countSendsIf's caller is to see.
    std::optional<otp::RateCounter> claimShareInTurn(const otp::RateKey& k, const Shares& sh, std::int64_t now,
                                                     std::string& row) {
        c_.exec(pg::kEnsureRateShares, Params().text(k.scope).text(sh.keyList));
        if (auto r = c_.exec(pg::kClaimRateShare, claimParams(k, sh, now)); r.rows() == 1)
            return takeShare(r.text(0, 0), otp::RateCounter{r.integer(0, 1), r.integer(0, 2), r.integer(0, 3)}, row);
        std::optional<otp::RateCounter> soonest;
        for (int s = 0; s < kRateShares; ++s) {
            if (sh.caps[s] == 0) continue;
            auto l = c_.exec(pg::kLockRateCounter, Params().text(k.scope).text(sh.names[s]));
            const otp::RateCounter c{l.integer(0, 0), l.integer(0, 1), l.integer(0, 2)};
            if (c.count < sh.caps[s] || now >= c.windowStart + k.window) return takeShare(sh.names[s], c, row);
            if (!soonest || c.windowStart < soonest->windowStart) soonest = c;
        }
        row = sh.names[0];
        if (!soonest) return otp::RateCounter{now, k.spreadCap, now};  // a cap of 0: nothing is admitted
        soonest->count = k.spreadCap;
        return soonest;
    }
    std::optional<otp::SubjectFailures> findSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        if (failuresSeen_ && failuresSeen_->app == app && failuresSeen_->subjectHash == subjectHash)
            return failuresSeen_->failures;
        auto r = c_.exec(pg::kSelectSubjectFailures, Params().text(app).text(subjectHash));
        if (r.rows() != 1) return std::nullopt;
        return otp::SubjectFailures{r.integer(0, 0), r.integer(0, 1)};
    }
    std::int64_t countSubjectFailure(std::string_view app, std::string_view subjectHash) override {
        failuresSeen_.reset();
        return c_.exec(pg::kCountSubjectFailure, Params().text(app).text(subjectHash)).integer(0, 0);
    }
    void lockSubject(std::string_view app, std::string_view subjectHash, std::int64_t until) override {
        failuresSeen_.reset();
        c_.later(pg::kLockSubject, Params().text(app).text(subjectHash).integer(until));
    }
    void clearSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        failuresSeen_.reset();
        c_.later(pg::kDeleteSubjectFailures, Params().text(app).text(subjectHash));
    }

    // ---- delivery jobs ----
    void putDeliveryJob(const otp::DeliveryJob& j) override {
        Params p;
        p.text(j.requestId).integer(j.send).integer(j.attempts).integer(j.retryAt).text(j.holder);
        p.integer(j.leaseUntil).integer(j.expiresAt).integer(j.createdAt).text(j.lastError);
        c_.later(pg::kPutDeliveryJob, p);
    }
    std::vector<otp::DeliveryJob> claimDeliveryJobs(std::string_view holder, std::string_view nodePrefix,
                                                    std::int64_t now, std::int64_t leaseUntil, int limit) override {
        const auto [low, high] = holderRange(nodePrefix);
        Params p;
        p.integer(now).text(low).text(high).text(holder).integer(limit).integer(leaseUntil);
        return readJobs(c_.exec(pg::kClaimDeliveryJobs, p));
    }
    bool renewDeliveryLease(std::string_view requestId, int send, std::string_view holder,
                            std::int64_t leaseUntil) override {
        return c_.exec(pg::kRenewDeliveryLease, Params().text(requestId).integer(send).text(holder).integer(leaseUntil))
                   .affected() == 1;
    }
    bool recordDeliveryRetry(std::string_view requestId, int send, std::string_view holder, int attempts,
                             std::int64_t retryAt, std::int64_t leaseUntil, std::string_view error) override {
        Params p;
        p.text(requestId).integer(send).text(holder).integer(attempts).integer(retryAt).integer(leaseUntil).text(error);
        return c_.exec(pg::kRecordDeliveryRetry, p).affected() == 1;
    }
    bool finishDeliveryJob(std::string_view requestId, int send, std::string_view holder) override {
        return c_.exec(pg::kFinishDeliveryJob, Params().text(requestId).integer(send).text(holder)).affected() == 1;
    }
    void endDeliveryJob(std::string_view requestId) override {
        c_.later(pg::kEndDeliveryJob, Params().text(requestId));
    }
    void endDeliveryJob(std::string_view requestId, int send, std::string_view holder) override {
        c_.later(pg::kFinishDeliveryJob, Params().text(requestId).integer(send).text(holder));
    }
    std::optional<otp::DeliveryJob> findDeliveryJob(std::string_view requestId) override {
        auto jobs = readJobs(c_.exec(pg::kSelectDeliveryJob, Params().text(requestId)));
        if (jobs.empty()) return std::nullopt;
        return std::move(jobs.front());
    }
    std::vector<otp::DeliveryJob> listDeliveryJobs(int limit) override {
        return readJobs(c_.exec(pg::kListDeliveryJobs, Params().integer(limit)));
    }

    // ---- the delivery log ----
    void insertDeliveryAttempt(const otp::DeliveryAttempt& a) override {
        Params p;
        p.text(a.requestId).text(a.app).text(a.channel).text(a.driver).integer(a.send).integer(a.attempt).integer(a.at);
        p.text(a.outcome).text(a.providerMessageId).integer(a.statusCode).integer(a.durationMs).text(a.errorClass);
        p.text(a.error).text(a.ambiguous ? "true" : "false").text(a.provider).text(a.region);
        c_.later(pg::kInsertDelivery, p);
    }
    std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& q) override {
        Params p;
        p.optionalInteger(q.since).optionalInteger(q.until).integer(q.limit);
        if (q.requestId) p.text(*q.requestId);
        auto out = readDeliveries(c_.exec(q.requestId ? pg::kSelectDeliveriesOfRequest : pg::kSelectDeliveries, p));
        std::reverse(out.begin(), out.end());
        return out;
    }
    bool updateDeliveryStatus(const otp::ProviderStatus& st) override {
        return c_.exec(pg::kUpdateDeliveryStatus,
                       Params().text(st.providerMessageId).text(st.status).integer(st.at).text(st.error))
                   .affected() > 0;
    }

    // ---- opt-outs ----
    std::optional<otp::OptOut> findOptOut(std::string_view subjectHash) override {
        auto out = readOptOuts(c_.exec(pg::kSelectOptOut, Params().text(subjectHash)));
        if (out.empty()) return std::nullopt;
        return std::move(out.front());
    }
    void putOptOut(const otp::OptOut& e) override {
        const std::string destination = seal_.seal("optouts", "destination", e.subjectHash, e.destination);
        Params p;
        p.text(e.subjectHash).bytes(destination.data(), destination.size()).integer(e.createdAt).text(e.source).text(e.reason);
        c_.later(pg::kPutOptOut, p);
    }
    bool removeOptOut(std::string_view subjectHash) override {
        return c_.exec(pg::kDeleteOptOut, Params().text(subjectHash)).affected() > 0;
    }
    std::vector<otp::OptOut> listOptOuts(int limit) override {
        auto out = readOptOuts(c_.exec(pg::kListOptOuts, Params().integer(limit)));
        std::reverse(out.begin(), out.end());
        return out;
    }

    // ---- the request log ----
    void insertCall(const CallRecord& call) override {
        // The row id is taken first: the sealed address is bound to it.
        const std::int64_t id = c_.exec(pg::kNextRequestLogId).integer(0, 0);
        const std::string ip = call.clientIp.empty()
                                   ? std::string()
                                   : seal_.seal("request_log", "client_ip", std::to_string(id), call.clientIp);
        Params p;
        p.integer(id).integer(call.at).text(call.method).integer(call.durationMs).text(call.result).integer(call.uid);
        p.text(call.keyId).bytes(ip.data(), ip.size()).integer(call.status);
        c_.later(pg::kInsertRequestLog, p);
    }
    // One statement for the ids and one for the rows, whatever their number.
    void insertCalls(const std::vector<CallRecord>& calls) override {
        if (calls.size() < 2) {
            for (const auto& c : calls) insertCall(c);
            return;
        }
        const auto ids = c_.exec(pg::kNextRequestLogIds, Params().integer(static_cast<std::int64_t>(calls.size())));
        if (ids.rows() != static_cast<int>(calls.size())) throw std::runtime_error("PostgreSQL: too few request-log ids");
        ArrayLiteral id, at, method, duration, result, uid, key, ip, status;
        for (std::size_t i = 0; i < calls.size(); ++i) {
            const CallRecord& call = calls[i];
            const std::string rowId = ids.text(static_cast<int>(i), 0);
            const std::string sealed = call.clientIp.empty()
                                           ? std::string()
                                           : seal_.seal("request_log", "client_ip", rowId, call.clientIp);
            id.add(rowId);
            at.add(call.at);
            method.add(arrayElement(call.method));
            duration.add(call.durationMs);
            result.add(arrayElement(call.result));
            uid.add(call.uid);
            key.add(arrayElement(call.keyId));
            ip.add("\"\\\\x" + crypto::hex(sealed.data(), sealed.size()) + "\"");
            status.add(call.status);
        }
        Params p;
        for (const ArrayLiteral* a : {&id, &at, &method, &duration, &result, &uid, &key, &ip, &status}) p.text(a->str());
        c_.later(pg::kInsertRequestLogRows, p);
    }
    std::vector<CallRecord> findCalls(const CallQuery& q) override {
        auto r = c_.exec(pg::kSelectRequestLog, Params().optionalInteger(q.since).optionalInteger(q.until).integer(q.limit));
        std::vector<CallRecord> out;
        for (int i = 0; i < r.rows(); ++i) {
            CallRecord c{r.integer(i, 0), r.integer(i, 1), r.text(i, 2), r.integer(i, 3), r.text(i, 4), r.integer(i, 5),
                         r.text(i, 6), openOrEmpty("request_log", "client_ip", r.text(i, 0), r.bytes(i, 7)),
                         static_cast<int>(r.integer(i, 8))};
            out.push_back(std::move(c));
        }
        std::reverse(out.begin(), out.end());
        return out;
    }

    // ---- fraud sets ----
    std::int64_t countFraudMembers(std::string_view rule, std::string_view key, std::string_view except,
                                   std::int64_t since, std::int64_t cap) override {
        return c_.exec(pg::kCountFraudMembers, Params().text(rule).text(key).integer(since).text(except).integer(cap))
            .integer(0, 0);
    }
    std::optional<std::int64_t> fraudMemberSeen(std::string_view rule, std::string_view key, std::string_view except,
                                                std::int64_t since, std::int64_t n) override {
        if (n < 1) return std::nullopt;
        auto r = c_.exec(pg::kSelectFraudMemberSeen, Params().text(rule).text(key).integer(since).text(except).integer(n - 1));
        if (r.rows() == 0) return std::nullopt;
        return r.integer(0, 0);
    }
    void putFraudMember(std::string_view rule, std::string_view key, std::string_view member, std::int64_t at,
                        std::int64_t expiresAt) override {
        c_.later(pg::kPutFraudMember, Params().text(rule).text(key).text(member).integer(at).integer(expiresAt));
    }

    // ---- retention ----
    std::int64_t purgeStep(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy, int limit,
                           bool dryRun) override {
        forgetSeenSubjects();
        const std::int64_t cutoff = purgeCutoff(kind, now, policy);
        if (kind == PurgeKind::AuditRecords && !dryRun) return pruneAudit(cutoff, limit, policy.auditKey, now);
        const auto& statements = pg::kPurge[static_cast<std::size_t>(kind)];
        std::int64_t total = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const char* text = dryRun ? statements.count[k] : statements.purge[k];
            if (!text) break;
            if (dryRun) {
                Params params;
                params.integer(cutoff);
                if (countsBeyondDeleted(kind)) params.integer(purgeCutoff(PurgeKind::AuthMetadata, now, policy));
                total += c_.exec(text, params).integer(0, 0);
                continue;
            }
            const std::int64_t budget = limit - total;  // the statements of one category share the batch
            if (budget <= 0) break;
            total += c_.exec(text, Params().integer(cutoff).integer(budget)).affected();
        }
        return total;
    }

    // The oldest audit records older than the cutoff go from the head of
    // each chain only; the anchor the chain resumes from moves, sealed. Each
    // chain is locked while it is cut (appenders take another meanwhile).
    std::int64_t pruneAudit(std::int64_t cutoff, int limit, const SecretBytes* key, std::int64_t now) {
        if (key == nullptr) return 0;
        std::int64_t deleted = 0;
        for (const auto& listed : readAnchors(c_.exec(pg::kSelectAuditAnchors))) {
            if (deleted >= limit) break;
            const auto locked = readAnchors(c_.exec(pg::kLockAuditChain, Params().integer(listed.chain)));
            if (locked.empty()) continue;
            const otp::AuditAnchor& anchor = locked.front();
            if (!otp::auditAnchorValid(*key, anchor)) {
                log::warning("audit records are not pruned from chain " + std::to_string(anchor.chain) +
                             ": its anchor is not sealed, or its seal does not verify (see twofactor audit verify)");
                continue;
            }
            auto head = c_.exec(pg::kSelectAuditHead,
                                Params().integer(anchor.chain).integer(anchor.seq).integer(limit - deleted));
            std::int64_t lastSeq = anchor.seq, n = 0;
            std::string lastHash;
            for (int i = 0; i < head.rows(); ++i) {
                if (head.integer(i, 1) >= cutoff) break;  // the chain is kept from here on
                lastSeq = head.integer(i, 0);
                lastHash = head.text(i, 2);
                ++n;
            }
            if (n == 0) continue;
            deleted += c_.exec(pg::kDeleteAuditHead, Params().integer(anchor.chain).integer(lastSeq)).affected();
            otp::AuditAnchor next{lastSeq, lastHash, now, ""};
            next.chain = anchor.chain;
            next.seal = otp::auditAnchorSeal(*key, next);
            c_.exec(pg::kMoveAuditAnchor,
                    Params().integer(next.chain).integer(next.seq).text(next.hash).integer(next.at).text(next.seal));
        }
        return deleted;
    }

    void insertRetentionRun(const RetentionRun& run) override {
        Params p;
        p.integer(run.started).integer(run.finished).text(run.trigger);
        for (PurgeKind k : kPurgeKinds) p.integer(run.counts[k]);
        c_.exec(pg::kInsertRetentionRun, p);
    }
    std::optional<RetentionRun> lastRetentionRun() override {
        auto r = c_.exec(pg::kSelectLastRetentionRun);
        if (r.rows() == 0) return std::nullopt;
        RetentionRun run;
        run.id = r.integer(0, 0);
        run.started = r.integer(0, 1);
        run.finished = r.integer(0, 2);
        run.trigger = r.text(0, 3);
        int col = 4;
        for (PurgeKind k : kPurgeKinds) run.counts[k] = r.integer(0, col++);
        return run;
    }
    std::vector<std::string> syncApps(const std::vector<std::string>& configured, std::int64_t now) override {
        std::map<std::string, bool> known;  // name -> currently marked removed
        auto sel = c_.exec(pg::kSelectApps);
        for (int i = 0; i < sel.rows(); ++i) known[sel.text(i, 0)] = !sel.null(i, 1);
        for (const auto& name : configured) {
            auto it = known.find(name);
            if (it == known.end()) c_.exec(pg::kInsertApp, Params().text(name).integer(now));
            else if (it->second) c_.exec(pg::kSetAppRemoved, Params().text(name).null());  // back in the configuration
        }
        std::vector<std::string> removed;
        for (const auto& [name, isRemoved] : known) {
            if (isRemoved || std::find(configured.begin(), configured.end(), name) != configured.end()) continue;
            c_.exec(pg::kSetAppRemoved, Params().text(name).integer(now));
            removed.push_back(name);
        }
        return removed;
    }

    // ---- data subjects ----
    SubjectFlags subjectFlags(std::string_view subjectHash) override {
        if (flagsSeen_ && flagsSeen_->subjectHash == subjectHash) return flagsSeen_->flags;
        return flagsOf(c_.exec(pg::kSelectSubjectFlags, Params().text(subjectHash)));
    }
    // A send's checks in one round trip: the same statements as
    // subjectFlags, findOptOut and findSuppression, sent together.
    SendChecks sendChecks(const SendChecksQuery& q) override {
        enum class Read { Flags, EarlierFlags, OptOut, Suppressed, FallbackSuppressed };
        std::vector<Read> reads;
        std::vector<Params> params;
        std::vector<Connection::Statement> batch;
        params.reserve(5);
        const auto add = [&](Read what, const char* sql, std::string_view key) {
            reads.push_back(what);
            params.emplace_back().text(key);
            batch.push_back(Connection::Statement{sql, &params.back()});
        };
        SendChecks out;
        if (flagsSeen_ && flagsSeen_->subjectHash == q.subjectHash) out.flags = flagsSeen_->flags;
        else add(Read::Flags, pg::kSelectSubjectFlags, q.subjectHash);
        if (!q.earlierHash.empty()) add(Read::EarlierFlags, pg::kSelectSubjectFlags, q.earlierHash);
        if (q.optOut) add(Read::OptOut, pg::kSelectOptOut, q.subjectHash);
        if (!q.suppressed.empty()) add(Read::Suppressed, pg::kSelectSuppression, q.suppressed);
        if (!q.fallbackSuppressed.empty()) add(Read::FallbackSuppressed, pg::kSelectSuppression, q.fallbackSuppressed);
        if (batch.empty()) return out;
        const auto results = c_.execAll(batch);
        for (std::size_t i = 0; i < reads.size(); ++i) {
            const Result& r = results[i];
            switch (reads[i]) {
            case Read::Flags: out.flags = flagsOf(r); break;
            case Read::EarlierFlags: out.earlierFlags = flagsOf(r); break;
            case Read::OptOut: out.optedOut = r.rows() > 0; break;
            case Read::Suppressed: out.suppressed = r.rows() > 0; break;
            case Read::FallbackSuppressed: out.fallbackSuppressed = r.rows() > 0; break;
            }
        }
        return out;
    }
    static SubjectFlags flagsOf(const Result& r) {
        SubjectFlags f;
        if (r.rows() == 1) {
            if (!r.null(0, 0)) f.restrictedAt = r.integer(0, 0);
            if (!r.null(0, 1)) f.objectedAt = r.integer(0, 1);
        }
        return f;
    }
    void setFlag(const char* sql, std::string_view subjectHash, std::optional<std::int64_t> since) {
        flagsSeen_.reset();
        c_.exec(pg::kEnsureSubjectFlags, Params().text(subjectHash));
        c_.exec(sql, Params().text(subjectHash).optionalInteger(since));
        c_.exec(pg::kDropEmptyFlags, Params().text(subjectHash));
    }
    void setRestricted(std::string_view subjectHash, std::optional<std::int64_t> since) override {
        setFlag(pg::kSetRestricted, subjectHash, since);
    }
    void setObjected(std::string_view subjectHash, std::optional<std::int64_t> since) override {
        setFlag(pg::kSetObjected, subjectHash, since);
    }

    SubjectData findSubjectData(std::string_view subjectHash, std::string_view address) override {
        SubjectData d;
        d.requests = readRequests(c_.exec(pg::kSelectSubjectRequests, Params().text(subjectHash)));
        if (!address.empty())
            d.fallbackRequests = readRequests(c_.exec(pg::kSelectFallbackRequests, Params().text(indexArray(address))));
        for (const auto* list : {&d.requests, &d.fallbackRequests})
            for (const auto& r : *list)
                for (auto& a : readDeliveries(c_.exec(pg::kSelectRequestDeliveries, Params().text(r.id)))) {
                    // Of a request the subject was only the email fallback of, only
                    // the email attempts went to them.
                    if (list == &d.fallbackRequests && a.channel != "email") continue;
                    d.deliveries.push_back(std::move(a));
                }
        d.audit = readAudit(c_.exec(pg::kSelectSubjectAudit, Params().text(subjectHash)));
        d.optOut = findOptOut(subjectHash);
        auto f = c_.exec(pg::kSelectSubjectFailureRows, Params().text(subjectHash));
        for (int i = 0; i < f.rows(); ++i)
            d.failures.push_back(SubjectFailureRecord{f.text(i, 0), otp::SubjectFailures{f.integer(i, 1), f.integer(i, 2)}});
        d.flags = subjectFlags(subjectHash);
        return d;
    }

    SubjectCounts eraseSubject(std::string_view subjectHash, std::string_view address) override {
        forgetSeenSubjects();
        SubjectCounts c;
        std::int64_t* targets[] = {&c.deliveryJobs, &c.deliveries, &c.requests, &c.fallbacks,    &c.auditRecords,
                                   &c.optOuts,      &c.failures,   &c.flags,    &c.rateCounters, &c.fraudSets};
        static_assert(std::size(pg::kEraseSubject) == std::size(targets));
        const std::string index = indexArray(address);
        for (std::size_t i = 0; i < std::size(pg::kEraseSubject); ++i) {
            const auto& e = pg::kEraseSubject[i];
            // No address given: no fallback matches it.
            if (e.byAddress && index.empty()) continue;
            *targets[i] = c_.exec(e.sql, Params().text(e.byAddress ? std::string_view(index) : subjectHash)).affected();
        }
        return c;
    }

    SubjectCounts rectifySubject(std::string_view oldHash, std::string_view oldAddress, std::string_view newHash,
                                 std::string_view newAddress) override {
        forgetSeenSubjects();
        SubjectCounts c;
        const std::string newIndex = seal_.blindIndex(newAddress);
        auto own = c_.exec(pg::kLockSubjectRequests, Params().text(oldHash));
        for (int i = 0; i < own.rows(); ++i) {
            const std::string id = own.text(i, 0);
            // A destination retention blanked stays blank.
            const std::string dest = own.text(i, 1) == "t" ? seal_.seal("requests", "destination", id, newAddress) : "";
            c.requests += c_.exec(pg::kRectifyRequest, Params().text(id).text(newHash).bytes(dest.data(), dest.size()))
                              .affected();
        }
        auto fallbacks = c_.exec(pg::kLockFallbackRequests, Params().text(indexArray(oldAddress)));
        for (int i = 0; i < fallbacks.rows(); ++i) {
            const std::string id = fallbacks.text(i, 0);
            const std::string fb = seal_.seal("requests", "fallback_destination", id, newAddress);
            c.fallbacks +=
                c_.exec(pg::kRectifyFallback, Params().text(id).bytes(fb.data(), fb.size()).text(newIndex)).affected();
        }
        if (auto o = findOptOut(oldHash)) {
            removeOptOut(oldHash);
            o->subjectHash = std::string(newHash);
            o->destination = std::string(newAddress);
            putOptOut(*o);
            c.optOuts = 1;
        }
        c_.exec(pg::kMoveSubjectFailures, Params().text(oldHash).text(newHash));
        c.failures = c_.exec(pg::kDropSubjectFailures, Params().text(oldHash)).affected();
        c_.exec(pg::kMoveSubjectFlags, Params().text(oldHash).text(newHash));
        c.flags = c_.exec(pg::kDropSubjectFlags, Params().text(oldHash)).affected();
        return c;
    }

    // ---- the register of data-subject requests ----
    std::int64_t insertPrivacyRequest(const PrivacyRequest& r) override {
        Params p;
        p.text(r.kind).text(r.subjectHash).integer(r.received).integer(r.due).optionalInteger(r.completed);
        p.integer(r.uid).text(r.note);
        return c_.exec(pg::kInsertPrivacyRequest, p).integer(0, 0);
    }
    std::optional<PrivacyRequest> findOpenPrivacyRequest(std::string_view kind, std::string_view subjectHash) override {
        auto out = readPrivacyRequests(c_.exec(pg::kSelectOpenPrivacyRequest, Params().text(kind).text(subjectHash)));
        if (out.empty()) return std::nullopt;
        return std::move(out.front());
    }
    void completePrivacyRequest(std::int64_t id, std::int64_t at) override {
        c_.exec(pg::kCompletePrivacyRequest, Params().integer(id).integer(at));
    }
    std::vector<PrivacyRequest> listPrivacyRequests(const PrivacyRequestQuery& q) override {
        auto out = readPrivacyRequests(c_.exec(
            pg::kListPrivacyRequests, Params().text(q.openOnly ? "true" : "false").optionalInteger(q.overdueAt).integer(q.limit)));
        std::reverse(out.begin(), out.end());
        return out;
    }
    std::vector<PrivacyRequest> subjectPrivacyRequests(std::string_view subjectHash) override {
        return readPrivacyRequests(c_.exec(pg::kSelectSubjectPrivacyRequests, Params().text(subjectHash)));
    }

    // ---- cluster ----
    bool takeLease(std::string_view name, std::int64_t slot, std::string_view holder, std::int64_t now,
                   std::int64_t until) override {
        return c_.exec(pg::kTakeLease, Params().text(name).text(holder).integer(slot).integer(now).integer(until))
                   .affected() == 1;
    }
    std::vector<Lease> listLeases(int limit) override {
        auto r = c_.exec(pg::kListLeases, Params().integer(limit));
        std::vector<Lease> out;
        for (int i = 0; i < r.rows(); ++i) out.push_back(Lease{r.text(i, 0), r.text(i, 1), r.integer(i, 2), r.integer(i, 3)});
        return out;
    }
    void heartbeatNode(const NodeInfo& n) override {
        c_.exec(pg::kHeartbeatNode, Params().text(n.id).text(n.host).text(n.version).integer(n.started).integer(n.heartbeat)
                                        .integer(n.keyVersion));
    }
    void forgetNode(std::string_view id) override { c_.exec(pg::kForgetNode, Params().text(id)); }
    std::vector<NodeInfo> listNodes(std::int64_t since, int limit) override {
        auto r = c_.exec(pg::kListNodes, Params().integer(since).integer(limit));
        std::vector<NodeInfo> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(NodeInfo{r.text(i, 0), r.text(i, 1), r.text(i, 2), r.integer(i, 3), r.integer(i, 4),
                                   static_cast<int>(r.integer(i, 5))});
        return out;
    }

    // ---- transaction binding ----
    void bindRequest(std::string_view requestId, std::string_view contextDigest) override {
        c_.later(pg::kBindRequest, Params().text(requestId).text(contextDigest));
    }
    std::string requestBinding(std::string_view requestId) override {
        auto r = c_.exec(pg::kSelectRequestBinding, Params().text(requestId));
        return r.rows() == 1 ? r.text(0, 0) : std::string();
    }

    // ---- the HTTPS API ----
    void insertApiKey(const ApiKey& k) override {
        Params p;
        p.text(k.id).text(k.app).text(k.scopes).text(k.secretHash).text(k.note).integer(k.createdAt);
        p.integer(k.createdBy).integer(k.expiresAt);
        c_.exec(pg::kInsertApiKey, p);
    }
    std::optional<ApiKey> findApiKey(std::string_view id) override {
        auto out = readApiKeys(c_.exec(pg::kSelectApiKey, Params().text(id)));
        if (out.empty()) return std::nullopt;
        return std::move(out.front());
    }
    std::vector<ApiKey> listApiKeys(int limit) override {
        return readApiKeys(c_.exec(pg::kListApiKeys, Params().integer(limit)));
    }
    bool revokeApiKey(std::string_view id, std::int64_t now) override {
        return c_.exec(pg::kRevokeApiKey, Params().text(id).integer(now)).affected() > 0;
    }
    void touchApiKey(std::string_view id, std::int64_t now) override {
        c_.later(pg::kTouchApiKey, Params().text(id).integer(now));
    }
    std::optional<IdempotencyRecord> claimIdempotencyKey(std::string_view keyId, std::string_view idemKey,
                                                         std::string_view bodyHash, std::int64_t now,
                                                         std::int64_t windowStart) override {
        c_.exec(pg::kPruneIdempotencyKeys, Params().integer(windowStart));
        c_.exec(pg::kDeleteStaleIdempotencyKey, Params().text(keyId).text(idemKey).integer(windowStart));
        if (c_.exec(pg::kClaimIdempotencyKey, Params().text(keyId).text(idemKey).text(bodyHash).integer(now)).affected() == 1)
            return std::nullopt;
        auto r = c_.exec(pg::kSelectIdempotencyKey, Params().text(keyId).text(idemKey));
        IdempotencyRecord rec;
        if (r.rows() == 1) rec = IdempotencyRecord{r.text(0, 0), r.integer(0, 1), static_cast<int>(r.integer(0, 2)), r.text(0, 3)};
        return rec;
    }
    void completeIdempotencyKey(std::string_view keyId, std::string_view idemKey, int status,
                                std::string_view response) override {
        c_.exec(pg::kCompleteIdempotencyKey, Params().text(keyId).text(idemKey).integer(status).text(response));
    }
    void releaseIdempotencyKey(std::string_view keyId, std::string_view idemKey) override {
        c_.exec(pg::kReleaseIdempotencyKey, Params().text(keyId).text(idemKey));
    }

    // ---- statistics ----
    std::vector<ActivityDelivery> recentDeliveries(const ActivityQuery& q) override {
        auto r = c_.exec(pg::kSelectRecentDeliveries, Params().integer(q.since).integer(q.until).integer(q.limit));
        std::vector<ActivityDelivery> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(ActivityDelivery{r.text(i, 0), r.text(i, 1), r.text(i, 2), r.integer(i, 3), r.integer(i, 4)});
        return out;
    }
    std::vector<ActivityEvent> recentEvents(const ActivityQuery& q) override {
        auto r = c_.exec(pg::kSelectRecentEvents, Params().integer(q.since).integer(q.until).integer(q.limit));
        std::vector<ActivityEvent> out;
        for (int i = 0; i < r.rows(); ++i) out.push_back(ActivityEvent{r.text(i, 0), r.text(i, 1), r.integer(i, 2)});
        return out;
    }

    // ---- the audit log ----
    // A chain this node holds, idle, with its head; or, when all are in use,
    // one taken from the database: a free one or a new one (see
    // kTakeAuditChain). Each insert moves the head (kInsertAudit); the chain
    // goes back to the node with it when the transaction ends (runItem).
    otp::AuditCheckpoint auditAppendTail() override {
        if (auditTail_) return *auditTail_;
        while ((borrowed_ = chains_.borrow())) {
            if (!borrowed_->stale) return *(auditTail_ = borrowed_->head);
            const auto& h = borrowed_->head;
            if (c_.exec(pg::kRenewAuditChain,
                        Params().integer(h.chain).text(chains_.holder).integer(chains_.lease).integer(h.seq))
                    .rows() == 1)
                return *(auditTail_ = h);
            borrowed_.reset();  // taken over, or its head moved: let go
        }
        const auto tail = [](const Result& r) { return otp::AuditCheckpoint{r.integer(0, 1), r.text(0, 2), 0, r.integer(0, 0)}; };
        if (auto taken = c_.exec(pg::kTakeAuditChain, Params()
                                                          .text(chains_.holder)
                                                          .integer(chains_.lease)
                                                          .text(chains_.starts.first)
                                                          .text(chains_.starts.second));
            taken.rows() == 1)
            auditTail_ = tail(taken);
        else
            auditTail_ = tail(c_.exec(pg::kBeginAuditChain, Params().text(chains_.holder).integer(chains_.lease)));
        return *auditTail_;
    }
    // The chain's head after a commit (nullopt: no append).
    [[nodiscard]] const std::optional<otp::AuditCheckpoint>& auditTail() const { return auditTail_; }
    // The chain as borrowed from the node (nullopt: none, or one taken in this transaction).
    [[nodiscard]] const std::optional<AuditChains::Held>& borrowedChain() const { return borrowed_; }
    std::optional<otp::AuditRecord> lastAuditRecord(std::int64_t chain) override {
        auto out = readAudit(c_.exec(pg::kSelectLastAudit, Params().integer(chain)));
        if (out.empty()) return std::nullopt;
        return std::move(out.front());
    }
    void insertAuditRecord(const otp::AuditRecord& r) override {
        Params p;
        p.integer(r.seq).integer(r.at).text(r.app).text(r.event).integer(r.uid).text(r.outcome).text(r.requestId);
        p.text(r.subject).text(r.detail).text(r.prevHash).text(r.hash).integer(r.format).text(r.subjectNonce);
        p.text(r.subjectCommit).integer(r.chain).integer(r.seq - 1).text(chains_.holder).integer(chains_.lease);
        c_.later(pg::kInsertAudit, p);
        auditTail_ = otp::AuditCheckpoint{r.seq, r.hash, r.at, r.chain};
    }
    std::vector<otp::AuditRecord> findAuditRecords(const otp::AuditQuery& q) override {
        if (q.chain)
            return readAudit(c_.exec(pg::kSelectAuditChain, Params().integer(*q.chain).integer(q.afterSeq).integer(q.limit)));
        Params p;
        p.optionalInteger(q.since).optionalInteger(q.until);
        if (q.app) p.text(*q.app);
        else p.null();
        const bool prefix = q.outcome && !q.outcome->empty() && q.outcome->back() == ':';
        if (q.outcome && !prefix) p.text(*q.outcome);
        else p.null();
        if (prefix) p.text(*q.outcome);
        else p.null();
        p.integer(q.limit);
        auto out = readAudit(c_.exec(q.newest ? pg::kSelectAuditNewest : pg::kSelectAudit, p));
        if (q.newest) std::reverse(out.begin(), out.end());
        return out;
    }
    std::vector<otp::AuditAnchor> auditAnchors() override { return readAnchors(c_.exec(pg::kSelectAuditAnchors)); }
    // Appended last, the chain is held for the commit only, not for the rest
    // of the item's statements.
    bool appendAtCommit(std::function<void()>& append) override {
        atCommit_.push_back(std::move(append));
        return true;
    }
    void runAtCommit() {
        for (std::size_t i = 0; i < atCommit_.size(); ++i) atCommit_[i]();
        atCommit_.clear();
    }
    bool sealLegacyAuditAnchor(const otp::AuditAnchor& a) override {
        return c_.exec(pg::kSealLegacyAnchor,
                       Params().integer(a.chain).integer(a.seq).text(a.hash).integer(a.at).text(a.seal))
                   .affected() > 0;
    }

    // ---- breach reports ----
    std::vector<BreachRequestRow> breachRequests(const BreachPage& page) override {
        auto r = c_.exec(pg::kSelectBreachRequests, breachParams(page));
        std::vector<BreachRequestRow> out;
        for (int i = 0; i < r.rows(); ++i) {
            const std::string id = r.text(i, 2);
            out.push_back(BreachRequestRow{r.integer(i, 0), r.integer(i, 1), id, r.text(i, 3), r.text(i, 4), r.text(i, 5),
                                           openOrEmpty("requests", "destination", id, r.bytes(i, 6)),
                                           openOrEmpty("requests", "fallback_destination", id, r.bytes(i, 7)),
                                           openOrEmpty("requests", "client_ip", id, r.bytes(i, 8)),
                                           openOrEmpty("requests", "device", id, r.bytes(i, 9))});
        }
        return out;
    }
    std::vector<BreachDeliveryRow> breachDeliveries(const BreachPage& page) override {
        auto r = c_.exec(pg::kSelectBreachDeliveries, breachParams(page));
        std::vector<BreachDeliveryRow> out;
        for (int i = 0; i < r.rows(); ++i) {
            const std::string id = r.text(i, 2);
            out.push_back(BreachDeliveryRow{r.integer(i, 0), r.integer(i, 1), id, r.text(i, 3), r.text(i, 4), r.text(i, 5),
                                            openOrEmpty("requests", "destination", id, r.bytes(i, 6)),
                                            openOrEmpty("requests", "fallback_destination", id, r.bytes(i, 7))});
        }
        return out;
    }

    // ---- the email suppression list and feedback counters ----
    bool suppressAddress(const Suppression& e) override {
        const std::string detail = seal_.seal("email_suppressions", "detail", e.addressHash, e.detail);
        Params p;
        p.text(e.addressHash).text(e.reason).bytes(detail.data(), detail.size()).integer(e.at).text(e.source).text(e.messageId);
        return c_.exec(pg::kInsertSuppression, p).affected() > 0;
    }
    std::optional<Suppression> findSuppression(std::string_view addressHash) override {
        auto out = readSuppressions(c_.exec(pg::kSelectSuppression, Params().text(addressHash)));
        if (out.empty()) return std::nullopt;
        return std::move(out.front());
    }
    bool removeSuppression(std::string_view addressHash) override {
        return c_.exec(pg::kDeleteSuppression, Params().text(addressHash)).affected() > 0;
    }
    std::vector<Suppression> listSuppressions(int limit) override {
        auto out = readSuppressions(c_.exec(pg::kListSuppressions, Params().integer(limit)));
        std::reverse(out.begin(), out.end());
        return out;
    }
    void countEmailFeedback(std::string_view app, EmailFeedback kind, std::int64_t at) override {
        const std::int64_t hour = at / 3600;
        Params p;
        p.text(app).integer(hour).integer(kind == EmailFeedback::Send ? 1 : 0).integer(kind == EmailFeedback::Bounce ? 1 : 0);
        p.integer(kind == EmailFeedback::Complaint ? 1 : 0).integer(static_cast<std::int64_t>(shareDraw() % kRateShares));
        c_.later(pg::kCountEmailFeedback, p);
        auto pruned = c_.feedbackPruned.find(app);
        if (pruned != c_.feedbackPruned.end() && pruned->second == hour) return;
        c_.later(pg::kPruneEmailFeedback, Params().text(app).integer(hour - kEmailFeedbackHours));
        // A rollback undoes the delete: what it would have removed is older
        // than any sum reads, and goes with the next hour's prune.
        if (pruned == c_.feedbackPruned.end()) c_.feedbackPruned.emplace(std::string(app), hour);
        else pruned->second = hour;
    }
    EmailFeedbackCounts emailFeedback(std::string_view app, std::int64_t since) override {
        auto r = c_.exec(pg::kSumEmailFeedback, Params().text(app).integer(since / 3600));
        return r.rows() == 1 ? EmailFeedbackCounts{r.integer(0, 0), r.integer(0, 1), r.integer(0, 2)} : EmailFeedbackCounts{};
    }
    std::string deliveryApp(std::string_view providerMessageId) override {
        auto r = c_.exec(pg::kSelectDeliveryApp, Params().text(providerMessageId));
        return r.rows() == 1 ? r.text(0, 0) : std::string();
    }

private:
    // The address's index under every key held, as a text[] literal (hex
    // digits only, so nothing to quote); empty without an address.
    // One element of a text[] literal, quoted.
    // A PostgreSQL array literal ("{a,b}"), element by element: quoted text
    // (arrayElement) or numbers as they are.
    class ArrayLiteral {
    public:
        ArrayLiteral& add(std::string_view element) {
            if (text_.size() > 1) text_ += ',';
            text_ += element;
            return *this;
        }
        ArrayLiteral& add(std::int64_t n) { return add(std::to_string(n)); }
        [[nodiscard]] std::string str() const { return text_ + "}"; }

    private:
        std::string text_ = "{";
    };
    static std::string arrayElement(std::string_view v) {
        std::string out = "\"";
        for (char ch : v) {
            if (ch == '"' || ch == '\\') out += '\\';
            out += ch;
        }
        return out + "\"";
    }
    std::string indexArray(std::string_view address) const {
        if (address.empty()) return {};
        std::string out = "{";
        for (const auto& h : seal_.blindIndexes(address)) out += (out.size() > 1 ? "," : "") + h;
        return out + "}";
    }
    // A value retention or erasure blanked is stored empty.
    std::string openOrEmpty(const char* table, const char* column, const std::string& rowId, const std::string& sealed) const {
        return sealed.empty() ? std::string() : seal_.open(table, column, rowId, sealed);
    }

    static Params breachParams(const BreachPage& page) {
        Params p;
        p.integer(page.from).integer(page.to).integer(page.afterAt).integer(page.afterRow).integer(page.limit);
        return p;
    }
    std::vector<Suppression> readSuppressions(const Result& r) const {
        std::vector<Suppression> out;
        for (int i = 0; i < r.rows(); ++i) {
            const std::string hash = r.text(i, 0);
            out.push_back(Suppression{hash, r.text(i, 1), openOrEmpty("email_suppressions", "detail", hash, r.bytes(i, 2)),
                                      r.integer(i, 3), r.text(i, 4), r.text(i, 5)});
        }
        return out;
    }

    static std::vector<otp::AuditAnchor> readAnchors(const Result& r) {
        std::vector<otp::AuditAnchor> out;
        for (int i = 0; i < r.rows(); ++i) {
            otp::AuditAnchor a{r.integer(i, 1), r.text(i, 2), r.integer(i, 3), r.text(i, 4)};
            a.chain = r.integer(i, 0);
            out.push_back(std::move(a));
        }
        return out;
    }
    static std::vector<otp::AuditRecord> readAudit(const Result& s) {
        std::vector<otp::AuditRecord> out;
        for (int i = 0; i < s.rows(); ++i) {
            otp::AuditRecord r;
            r.seq = s.integer(i, 0);
            r.at = s.integer(i, 1);
            r.app = s.text(i, 2);
            r.event = s.text(i, 3);
            r.uid = s.integer(i, 4);
            r.outcome = s.text(i, 5);
            r.requestId = s.text(i, 6);
            r.subject = s.text(i, 7);
            r.detail = s.text(i, 8);
            r.prevHash = s.text(i, 9);
            r.hash = s.text(i, 10);
            r.format = static_cast<int>(s.integer(i, 11));
            r.subjectNonce = s.text(i, 12);
            r.subjectCommit = s.text(i, 13);
            r.chain = s.integer(i, 14);
            out.push_back(std::move(r));
        }
        return out;
    }
    static std::vector<otp::DeliveryAttempt> readDeliveries(const Result& s) {
        std::vector<otp::DeliveryAttempt> out;
        for (int i = 0; i < s.rows(); ++i) {
            otp::DeliveryAttempt a;
            a.id = s.integer(i, 0);
            a.requestId = s.text(i, 1);
            a.app = s.text(i, 2);
            a.channel = s.text(i, 3);
            a.driver = s.text(i, 4);
            a.send = static_cast<int>(s.integer(i, 5));
            a.attempt = static_cast<int>(s.integer(i, 6));
            a.at = s.integer(i, 7);
            a.outcome = s.text(i, 8);
            a.providerMessageId = s.text(i, 9);
            a.statusCode = static_cast<int>(s.integer(i, 10));
            a.durationMs = s.integer(i, 11);
            a.errorClass = s.text(i, 12);
            a.error = s.text(i, 13);
            a.ambiguous = s.text(i, 14) == "t";
            a.providerStatus = s.text(i, 15);
            a.providerStatusAt = s.integer(i, 16);
            a.providerError = s.text(i, 17);
            a.provider = s.text(i, 18);
            a.region = s.text(i, 19);
            out.push_back(std::move(a));
        }
        return out;
    }
    std::vector<otp::OptOut> readOptOuts(const Result& s) const {
        std::vector<otp::OptOut> out;
        for (int i = 0; i < s.rows(); ++i) {
            otp::OptOut e;
            e.subjectHash = s.text(i, 0);
            e.destination = seal_.open("optouts", "destination", e.subjectHash, s.bytes(i, 1));
            e.createdAt = s.integer(i, 2);
            e.source = s.text(i, 3);
            e.reason = s.text(i, 4);
            out.push_back(std::move(e));
        }
        return out;
    }
    static std::vector<PrivacyRequest> readPrivacyRequests(const Result& s) {
        std::vector<PrivacyRequest> out;
        for (int i = 0; i < s.rows(); ++i) {
            PrivacyRequest r;
            r.id = s.integer(i, 0);
            r.kind = s.text(i, 1);
            r.subjectHash = s.text(i, 2);
            r.received = s.integer(i, 3);
            r.due = s.integer(i, 4);
            if (!s.null(i, 5)) r.completed = s.integer(i, 5);
            r.uid = s.integer(i, 6);
            r.note = s.text(i, 7);
            out.push_back(std::move(r));
        }
        return out;
    }
    static std::vector<ApiKey> readApiKeys(const Result& s) {
        std::vector<ApiKey> out;
        for (int i = 0; i < s.rows(); ++i)
            out.push_back(ApiKey{s.text(i, 0), s.text(i, 1), s.text(i, 2), s.text(i, 3), s.text(i, 4), s.integer(i, 5),
                                 s.integer(i, 6), s.integer(i, 7), s.integer(i, 8), s.integer(i, 9)});
        return out;
    }
    std::vector<otp::OtpRequest> readRequests(const Result& s) {
        std::vector<otp::OtpRequest> out;
        for (int i = 0; i < s.rows(); ++i) out.push_back(readRow(s, i));
        return out;
    }
    static std::vector<otp::DeliveryJob> readJobs(const Result& r) {
        std::vector<otp::DeliveryJob> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(otp::DeliveryJob{r.text(i, 0), static_cast<int>(r.integer(i, 1)), static_cast<int>(r.integer(i, 2)),
                                           r.integer(i, 3), r.text(i, 4), r.integer(i, 5), r.integer(i, 6),
                                           r.integer(i, 7), r.text(i, 8)});
        return out;
    }

    otp::OtpRequest readRow(const Result& s, int i) {
        otp::OtpRequest r;
        r.id = s.text(i, 0);
        const auto open = [&](const char* column, int col) { return openOrEmpty("requests", column, r.id, s.bytes(i, col)); };
        r.app = s.text(i, 1);
        r.channel = s.text(i, 2);
        r.destination = open("destination", 3);
        r.subjectHash = s.text(i, 4);
        r.purpose = s.text(i, 5);
        r.locale = s.text(i, 6);
        r.clientIp = open("client_ip", 7);
        r.device = open("device", 8);
        r.reference = open("reference", 9);
        if (!s.null(i, 10)) {
            const std::string h = s.bytes(i, 10);
            if (h.size() != crypto::Digest{}.size()) throw std::runtime_error("request " + r.id + ": bad code hash");
            crypto::Digest d;
            std::copy(h.begin(), h.end(), d.begin());
            r.codeHash = d;
        }
        r.codeLength = static_cast<int>(s.integer(i, 11));
        const auto status = otp::parseStatus(s.text(i, 12));
        if (!status) throw std::runtime_error("request " + r.id + " has an unknown status");
        r.status = *status;
        r.attempts = static_cast<int>(s.integer(i, 13));
        r.maxAttempts = static_cast<int>(s.integer(i, 14));
        r.sends = static_cast<int>(s.integer(i, 15));
        r.maxSends = static_cast<int>(s.integer(i, 16));
        r.ttl = s.integer(i, 17);
        r.createdAt = s.integer(i, 18);
        r.expiresAt = s.integer(i, 19);
        r.updatedAt = s.integer(i, 20);
        if (!s.null(i, 21)) r.finishedAt = s.integer(i, 21);
        r.failure = s.text(i, 22);
        r.fallbackDestination = open("fallback_destination", 23);
        return r;
    }
    std::optional<otp::OtpRequest> readOne(const Result& s) {
        if (s.rows() == 0) return std::nullopt;
        return readRow(s, 0);
    }

    Connection& c_;
    const pg::ColumnSealer& seal_;
    // An app-wide counter's shares (claimShare) and where this connection's
    // search for one with room starts.
    static constexpr int kRateShares = 16;
    std::vector<std::function<void()>> atCommit_;  // appendAtCommit, in order
    std::optional<RateLocks> rateLocked_;  // countSendsIf's last check, not yet counted
    // What findRequest read beside the request (see there).
    struct SeenFlags {
        std::string subjectHash;
        SubjectFlags flags;
    };
    struct SeenFailures {
        std::string app, subjectHash;
        std::optional<otp::SubjectFailures> failures;
    };
    std::optional<SeenFlags> flagsSeen_;
    std::optional<SeenFailures> failuresSeen_;
    void forgetSeenSubjects() {
        flagsSeen_.reset();
        failuresSeen_.reset();
    }
    AuditChains& chains_;
    std::optional<otp::AuditCheckpoint> auditTail_;  // auditAppendTail: the chain and its head, once per transaction
    std::optional<AuditChains::Held> borrowed_;
    // One generator per worker thread, seeded once (not a random_device read per transaction).
    static std::uint_fast32_t shareDraw() {
        thread_local std::minstd_rand draw{std::random_device{}()};
        return draw();
    }

    // ---- Event webhooks: a leased queue like the delivery jobs ----
    void enqueueEvent(const otp::EventJob& e) override {
        // Bound to the event's id: the webhook-id it is sent under.
        const std::string payload = seal_.seal("event_jobs", "payload", e.id, e.payload);
        Params p;
        p.text(e.id).text(e.app).text(e.type).text(e.requestId).bytes(payload.data(), payload.size());
        p.integer(e.createdAt).integer(e.retryAt);
        c_.later(pg::kEnqueueEvent, p);
    }
    std::vector<otp::EventJob> claimEvents(std::string_view holder, std::string_view nodePrefix, std::int64_t now,
                                           std::int64_t leaseUntil, int limit) override {
        const auto [low, high] = holderRange(nodePrefix);
        Params p;
        p.integer(now).text(low).text(high).text(holder).integer(limit).integer(leaseUntil);
        auto r = c_.exec(pg::kClaimEvents, p);
        std::vector<otp::EventJob> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(otp::EventJob{r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3),
                                        seal_.open("event_jobs", "payload", r.text(i, 0), r.bytes(i, 4)),
                                        r.integer(i, 5), static_cast<int>(r.integer(i, 6)), r.integer(i, 7),
                                        r.text(i, 8), r.integer(i, 9), r.text(i, 10)});
        // Oldest due first, as they were picked (RETURNING keeps no order).
        std::sort(out.begin(), out.end(), [](const otp::EventJob& a, const otp::EventJob& b) {
            return std::max(a.retryAt, a.leaseUntil) < std::max(b.retryAt, b.leaseUntil);
        });
        return out;
    }
    bool retryEvent(std::string_view id, std::string_view holder, int attempts, std::int64_t retryAt,
                    std::string_view error) override {
        return c_.exec(pg::kRetryEvent, Params().text(id).text(holder).integer(attempts).integer(retryAt).text(error))
                   .affected() == 1;
    }
    bool finishEvent(std::string_view id, std::string_view holder) override {
        return c_.exec(pg::kFinishEvent, Params().text(id).text(holder)).affected() == 1;
    }
    void insertEventAttempt(const otp::EventAttempt& a) override {
        Params p;
        p.text(a.eventId).text(a.app).text(a.type).integer(a.attempt).integer(a.at).text(a.outcome);
        p.integer(a.statusCode).integer(a.durationMs).text(a.error);
        c_.later(pg::kInsertEventAttempt, p);
    }
    std::vector<otp::EventAttempt> findEventAttempts(const otp::EventAttemptQuery& q) override {
        Params p;
        if (q.app) p.text(*q.app);
        else p.null();
        p.text(q.failedOnly ? "true" : "false").integer(q.limit);
        if (q.eventId) p.text(*q.eventId);
        auto r = c_.exec(q.eventId ? pg::kSelectEventAttemptsOfEvent : pg::kSelectEventAttempts, p);
        std::vector<otp::EventAttempt> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(otp::EventAttempt{r.integer(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3),
                                            static_cast<int>(r.integer(i, 4)), r.integer(i, 5), r.text(i, 6),
                                            static_cast<int>(r.integer(i, 7)), r.integer(i, 8), r.text(i, 9)});
        std::reverse(out.begin(), out.end());
        return out;
    }
    otp::EventFailure countEventFailure(std::string_view app, std::int64_t now, int maxFailures,
                                        std::string_view error) override {
        otp::EventFailure out;
        // The count and the row lock in one statement; two nodes failing at
        // once both count, and only the one reaching the limit disables.
        out.failures = static_cast<int>(c_.exec(pg::kCountEventFailure, Params().text(app).text(error)).integer(0, 0));
        out.disabled =
            c_.exec(pg::kDisableEventEndpoint, Params().text(app).integer(now).integer(maxFailures)).affected() == 1;
        if (out.disabled) c_.exec(pg::kParkEvents, Params().text(app));
        return out;
    }
    void clearEventFailures(std::string_view app) override { c_.exec(pg::kClearEventFailures, Params().text(app)); }
    bool enableEvents(std::string_view app, std::int64_t now) override {
        if (c_.exec(pg::kEnableEventEndpoint, Params().text(app)).affected() != 1) return false;
        c_.exec(pg::kUnparkEvents, Params().text(app).integer(now));
        return true;
    }
    std::vector<otp::EventEndpoint> listEventEndpoints() override {
        auto r = c_.exec(pg::kListEventEndpoints);
        std::vector<otp::EventEndpoint> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(otp::EventEndpoint{r.text(i, 0), static_cast<int>(r.integer(i, 1)), r.integer(i, 2), r.text(i, 3)});
        return out;
    }
    std::vector<otp::OtpRequest> findExpiredPending(std::int64_t now, int limit) override {
        return readRequests(c_.exec(pg::kSelectExpiredPending, Params().integer(now).integer(limit)));
    }
    // ---- end of event webhooks ----
};

// Work items run on a few connections at once, each in its own transaction.
class PostgresStore final : public Store {
public:
    explicit PostgresStore(PostgresOptions o)
        : dsn_(std::move(o.dsn)), prepare_(o.prepare), maxQueued_(o.maxQueued), chains_(o.auditChainLease, o.node) {
        {
            Connection c(dsn_, prepare_);
            migrate(c);
            sealer_ = openKeys(c, o.key, o.previousKeys);
        }
        o.key.wipe();
        for (auto& k : o.previousKeys) k.wipe();
        const int n = std::max(1, o.connections);
        running_ = n;
        for (int i = 0; i < n; ++i) workers_.emplace_back([this] { run(); });
    }
    ~PostgresStore() override { close(); }

    void submit(Work work, Done done) override { enqueue(std::move(work), std::move(done), false); }
    void submitReserved(Work work, Done done) override { enqueue(std::move(work), std::move(done), true); }
    bool saturated() const override {
        std::lock_guard lock(mutex_);
        return queue_.size() >= maxQueued_ - maxQueued_ / 8;
    }
    // PostgreSQL checkpoints its own WAL; a commit is durable when it returns.
    void checkpoint(Done done) override {
        if (done) done(nullptr);
    }
    void close() override {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_)
            if (t.joinable()) t.join();
    }
    std::string description() const override {
        return "PostgreSQL (" + std::to_string(workers_.size()) + " connections)";
    }
    int keyVersion() const override { return sealer_->currentVersion(); }

    // ---- Key rotation: resealing under a new key version while serving ----
    // The new key becomes the next version, this node seals under it at
    // once, and every sealed value is resealed, one bounded batch per
    // transaction (other work goes on between them). Values of an older
    // version go on opening with the keys this node holds, so rows not yet
    // resealed, and rows a node without the new key writes meanwhile, stay
    // readable; a pass that leaves some is run again, up to three.
    void rekey(SecretBytes newKey, std::function<void(RekeyResult)> done) override {
        RekeyResult result = reseal(newKey);
        newKey.wipe();
        if (done) done(std::move(result));
    }

private:
    static constexpr int kResealBatch = 200;

    // The sealer of a store key the database knows, with the older keys it
    // is given: the first node of a new database registers its key as 1.
    static std::unique_ptr<pg::ColumnSealer> openKeys(Connection& c, const SecretBytes& key,
                                                      const std::vector<SecretBytes>& previous) {
        const std::string mine = pg::ColumnSealer::fingerprint(key);
        c.exec(pg::kRegisterFirstSealKey, Params().text(mine).integer(std::time(nullptr)));
        std::map<std::string, int> versions;
        auto r = c.exec(pg::kSelectSealKeys);
        for (int i = 0; i < r.rows(); ++i) versions[r.text(i, 1)] = static_cast<int>(r.integer(i, 0));
        const auto current = versions.find(mine);
        if (current == versions.end())
            throw UnknownStoreKey("the store key is none of the " + std::to_string(versions.size()) +
                                     " key version(s) this PostgreSQL database knows: give this node the "
                                     "cluster's store key (after a rotation, the new one)");
        auto sealer = std::make_unique<pg::ColumnSealer>(key, static_cast<std::uint8_t>(current->second));
        for (const auto& k : previous)
            if (const auto v = versions.find(pg::ColumnSealer::fingerprint(k)); v != versions.end() && v != current)
                sealer->addKey(k, static_cast<std::uint8_t>(v->second), false);
        return sealer;
    }

    RekeyResult reseal(const SecretBytes& newKey) {
        std::unique_lock busy(rotating_, std::try_to_lock);
        if (!busy.owns_lock()) return RekeyResult{RekeyStatus::Busy, "another key rotation is running on this node"};
        std::unique_ptr<Connection> c;
        int version = 0;
        try {
            c = std::make_unique<Connection>(dsn_, prepare_);
            version = static_cast<int>(
                c->exec(pg::kAddSealKey, Params().text(pg::ColumnSealer::fingerprint(newKey)).integer(std::time(nullptr)))
                    .integer(0, 0));
        } catch (const std::exception& e) {
            return RekeyResult{RekeyStatus::OldKey, std::string("the new key version could not be registered: ") + e.what()};
        }
        sealer_->addKey(newKey, static_cast<std::uint8_t>(version), true);
        std::int64_t resealed = 0, batches = 0, left = 0;
        try {
            for (int pass = 0; pass < 3; ++pass) {
                for (const auto& table : pg::kReseal) resealTable(*c, table, resealed, batches);
                left = c->exec(pg::kCountOldSealed, Params().integer(version)).integer(0, 0);
                if (left == 0) break;
            }
        } catch (const std::exception& e) {
            // Sealing goes on under the new version: the new key must replace the old one.
            return RekeyResult{RekeyStatus::NewKeyOnly,
                               "resealing under key version " + std::to_string(version) + " stopped after " +
                                   std::to_string(resealed) + " values: " + e.what() +
                                   "; the values not resealed still open with the previous key, which is kept"};
        }
        std::string detail = "resealed " + std::to_string(resealed) + " values in " + std::to_string(batches) +
                             " batches under key version " + std::to_string(version);
        if (left > 0)
            detail += "; " + std::to_string(left) +
                      " values sealed meanwhile under older versions (nodes without the new key) open with the "
                      "previous keys";
        return RekeyResult{RekeyStatus::Rotated, detail};
    }

    // One table, batch by batch, each its own transaction (retried whole on
    // a deadlock with the work going on).
    void resealTable(Connection& c, const pg::ResealSql& table, std::int64_t& resealed, std::int64_t& batches) {
        const std::uint8_t version = sealer_->currentVersion();
        const bool requests = std::string_view(table.table) == "requests";
        std::string after = table.first;
        for (;;) {
            int rows = 0;
            std::string last = after;
            for (int attempt = 0;; ++attempt) {
                std::int64_t changed = 0;
                try {
                    c.exec("BEGIN");
                    auto r = c.exec(table.select, Params().text(after).integer(kResealBatch));
                    rows = r.rows();
                    for (int i = 0; i < rows; ++i) {
                        const std::string key = r.text(i, 0);
                        Params p;
                        p.text(key);
                        bool stale = false;
                        std::string fallbackIndex;
                        for (int col = 0; col < 5 && table.columns[col]; ++col) {
                            const std::string sealed = r.bytes(i, col + 1);
                            std::string out = sealed;
                            if (!sealed.empty() && pg::ColumnSealer::versionOf(sealed) != version) {
                                SecretString plain(sealer_->open(table.table, table.columns[col], key, sealed));
                                out = sealer_->seal(table.table, table.columns[col], key, plain.view());
                                if (requests && std::string_view(table.columns[col]) == "fallback_destination")
                                    fallbackIndex = sealer_->blindIndex(plain.view());
                                stale = true;
                            }
                            p.bytes(out.data(), out.size());
                        }
                        if (requests) p.text(fallbackIndex);
                        if (!stale) continue;
                        c.exec(table.update, p);
                        ++changed;
                    }
                    if (rows > 0) last = r.text(rows - 1, 0);
                    c.exec("COMMIT");
                    resealed += changed;
                    break;
                } catch (const PgError& e) {
                    rollback(c);
                    if (!e.retryable() || attempt >= 4) throw;
                }
            }
            ++batches;
            if (rows < kResealBatch) return;
            after = last;
        }
    }

    struct Item {
        Work work;
        Done done;
    };

    void enqueue(Work work, Done done, bool reserved) {
        {
            std::unique_lock lock(mutex_);
            if (!stopping_ && (reserved || queue_.size() < maxQueued_)) {
                queue_.push_back(Item{std::move(work), std::move(done)});
                lock.unlock();
                wake_.notify_one();
                return;
            }
        }
        if (done) done(std::make_exception_ptr(StoreBusy()));
    }

    static void migrate(Connection& c) {
        for (int tries = 0;; ++tries) {
            try {
                // Two nodes creating the version table at once: one loses with a duplicate.
                c.exec(pg::kCreateVersionTable);
                c.exec(pg::kEnsureVersionRow);
                break;
            } catch (const PgError& e) {
                if (tries >= 3 || (e.sqlstate != "23505" && e.sqlstate != "42P07")) throw;
            }
        }
        c.exec("BEGIN");
        try {
            auto r = c.exec(pg::kLockVersion);
            const std::int64_t have = r.integer(0, 0);
            const auto want = static_cast<std::int64_t>(std::size(pg::kMigrations));
            if (have > want)
                throw std::runtime_error("the PostgreSQL schema is version " + std::to_string(have) +
                                         ", newer than this twofactord (" + std::to_string(want) + ")");
            for (std::int64_t v = have; v < want; ++v) c.script(pg::kMigrations[v]);
            c.exec(pg::kSetVersion, Params().integer(want));
            c.exec("COMMIT");
        } catch (...) {
            try {
                c.exec("ROLLBACK");
            } catch (...) {
            }
            throw;
        }
    }

    void run() {
        std::unique_ptr<Connection> conn;
        for (;;) {
            Item item;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) {
                    // The last connection out lets the node's chains go.
                    const bool last = --running_ == 0;
                    lock.unlock();
                    if (last && conn) releaseChains(*conn);
                    return;
                }
                item = std::move(queue_.front());
                queue_.pop_front();
            }
            auto error = runItem(conn, item.work);
            if (item.done) item.done(error);
        }
    }

    // A node that stops lets its audit chains go, for the next node to
    // take at once instead of after the lease.
    void releaseChains(Connection& c) {
        if (!chains_.any() || !c.ok()) return;
        try {
            c.exec(pg::kReleaseAuditChain, Params().text(chains_.holder));
        } catch (...) {
        }
    }

    // Runs one work item in its own transaction; a serialization failure or
    // deadlock runs it again from the start (its effects were rolled back).
    // A lost connection is tried once more on a fresh one; then the item
    // fails at once, so callers get a clear error instead of waiting.
    std::exception_ptr runItem(std::unique_ptr<Connection>& conn, const Work& work) {
        constexpr int kTries = 8;
        for (int attempt = 0;; ++attempt) {
            try {
                if (!conn || !conn->ok()) conn = std::make_unique<Connection>(dsn_, prepare_);
            } catch (const PgError& e) {
                conn.reset();
                return std::make_exception_ptr(StoreUnavailable(e.what()));
            } catch (...) {
                conn.reset();
                return std::current_exception();
            }
            PostgresTransaction t(*conn, *sealer_, chains_);
            try {
                conn->begin();
                work(t);
                t.runAtCommit();
                conn->commit();
                if (t.auditTail()) chains_.giveBack({*t.auditTail(), AuditChains::Clock::now()});
                return nullptr;
            } catch (...) {
                const std::exception_ptr error = std::current_exception();
                rollback(*conn);
                const auto pg = pgErrorOf(error);
                // Rolled back, a borrowed chain is as it was; one taken over is let go.
                if (t.borrowedChain() && !(pg && pg->chainMoved)) chains_.giveBack(*t.borrowedChain());
                if (!pg) return error;
                const bool lost = !conn->ok();
                if (lost) conn.reset();
                if ((pg->retryable() || (lost && attempt == 0)) && attempt + 1 < kTries) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1 << std::min(attempt, 5)));
                    continue;
                }
                if (lost) return std::make_exception_ptr(StoreUnavailable(pg->what()));
                return error;
            }
        }
    }

    // The server's error behind a failed work item: thrown as it is, or
    // wrapped by the audit log (a deadlock while appending is retried like
    // any other; the append is part of the item run again).
    static std::optional<PgError> pgErrorOf(const std::exception_ptr& e) {
        try {
            std::rethrow_exception(e);
        } catch (const PgError& pg) {
            return pg;
        } catch (const otp::AuditWriteError& audit) {
            if (audit.cause) return pgErrorOf(audit.cause);
        } catch (...) {
        }
        return std::nullopt;
    }

    static void rollback(Connection& c) {
        c.discard();
        if (!c.ok()) return;
        try {
            c.exec("ROLLBACK");
        } catch (...) {
        }
    }

    SecretString dsn_;
    bool prepare_ = true;
    std::unique_ptr<pg::ColumnSealer> sealer_;
    std::mutex rotating_;  // one key rotation at a time on this node
    std::size_t maxQueued_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    int running_ = 0;  // workers not yet stopped (mutex_)
    AuditChains chains_;
    std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<Store> openPostgresStore(PostgresOptions options) {
    return std::make_unique<PostgresStore>(std::move(options));
}

SecretString loadDsn(const std::string& credentialName, const std::string& dsnFile) {
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
        const std::string path = std::string(dir) + "/" + credentialName;
        if (files::exists(path)) return files::readCredentialFile(path);
    }
    if (dsnFile.empty())
        throw std::runtime_error("no PostgreSQL connection string: pass the systemd credential " + credentialName +
                                 " or set [store] dsn_file");
    if (!files::exists(dsnFile))
        throw std::runtime_error(dsnFile + " does not exist; write the connection string into it (mode 0600)");
    SecretString text = files::readSecretFile(dsnFile);
    std::string_view v = text.view();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
    if (v.empty()) throw std::runtime_error(dsnFile + " is empty: it must hold a libpq connection string");
    return SecretString(std::string(v));
}


}  // namespace twofactor::store
