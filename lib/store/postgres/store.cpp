#include "store/postgres/store.hpp"

#include "store/postgres/schema.hpp"
#include "store/postgres/sealed.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace twofactor::store {

namespace {

// A failed statement, with its SQLSTATE: retried whole when it is a
// serialization failure or a deadlock, reported otherwise. The message is
// the server's primary one only: its detail can quote values (sealed bytes,
// hashes), which stay out of logs.
struct PgError : std::runtime_error {
    PgError(const std::string& what, std::string state) : std::runtime_error(what), sqlstate(std::move(state)) {}
    std::string sqlstate;
    [[nodiscard]] bool retryable() const { return sqlstate == "40001" || sqlstate == "40P01"; }
};

// Parameters in text format except bytea, which goes binary.
class Params {
public:
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
    explicit Connection(const SecretString& dsn) {
        c_ = PQconnectdb(std::string(dsn.view()).c_str());
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

    [[nodiscard]] bool ok() const { return c_ && PQstatus(c_) == CONNECTION_OK; }

    Result exec(const char* sql, const Params& p = Params()) {
        std::vector<const char*> values;
        std::vector<int> lengths;
        p.pointers(values, lengths);
        Result r(PQexecParams(c_, sql, p.size(), nullptr, values.data(), lengths.data(), p.formats(), 0));
        check(r, sql);
        return r;
    }

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
        throw PgError(what, code);
    }

private:
    static std::string firstLine(const char* s) {
        std::string t = s ? s : "";
        if (auto nl = t.find('\n'); nl != std::string::npos) t.resize(nl);
        return t;
    }
    PGconn* c_ = nullptr;
};

[[noreturn]] void missing(const char* method) {
    throw std::runtime_error(std::string("the PostgreSQL backend does not implement ") + method +
                             " yet; use backend = \"sqlcipher\"");
}

class PostgresTransaction final : public Transaction {
public:
    PostgresTransaction(Connection& c, const pg::ColumnSealer& sealer) : c_(c), seal_(sealer) {}

    // ---- requests ----
    std::optional<otp::OtpRequest> findRequest(std::string_view id) override {
        return readOne(c_.exec(pg::kSelectRequest, Params().text(id)));
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
        c_.exec(pg::kInsertRequest, p);
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
        // Locked in sorted order, so two sends sharing counters never wait on each other in a cycle.
        std::vector<std::size_t> order(keys.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            const int s = std::string_view(keys[a].scope).compare(keys[b].scope);
            return s != 0 ? s < 0 : keys[a].key < keys[b].key;
        });
        std::vector<std::optional<otp::RateCounter>> found(keys.size());
        for (std::size_t i : order) {
            auto r = c_.exec(pg::kLockRateCounter, Params().text(keys[i].scope).text(keys[i].key));
            if (r.rows() == 1 && r.integer(0, 1) > 0) found[i] = otp::RateCounter{r.integer(0, 0), r.integer(0, 1), r.integer(0, 2)};
        }
        if (!admit(found)) return false;
        for (std::size_t i : order)
            c_.exec(pg::kCountRateSend, Params().text(keys[i].scope).text(keys[i].key).integer(now).integer(keys[i].window));
        return true;
    }
    std::optional<otp::SubjectFailures> findSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        auto r = c_.exec(pg::kSelectSubjectFailures, Params().text(app).text(subjectHash));
        if (r.rows() != 1) return std::nullopt;
        return otp::SubjectFailures{r.integer(0, 0), r.integer(0, 1)};
    }
    std::int64_t countSubjectFailure(std::string_view app, std::string_view subjectHash) override {
        return c_.exec(pg::kCountSubjectFailure, Params().text(app).text(subjectHash)).integer(0, 0);
    }
    void lockSubject(std::string_view app, std::string_view subjectHash, std::int64_t until) override {
        c_.exec(pg::kLockSubject, Params().text(app).text(subjectHash).integer(until));
    }
    void clearSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        c_.exec(pg::kDeleteSubjectFailures, Params().text(app).text(subjectHash));
    }

    // ---- not implemented yet: each refuses, naming itself ----
    void insertDeliveryAttempt(const otp::DeliveryAttempt&) override { missing("insertDeliveryAttempt"); }
    std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery&) override {
        missing("findDeliveryAttempts");
    }
    bool updateDeliveryStatus(const otp::ProviderStatus&) override { missing("updateDeliveryStatus"); }
    // ---- delivery jobs ----
    void putDeliveryJob(const otp::DeliveryJob& j) override {
        Params p;
        p.text(j.requestId).integer(j.send).integer(j.attempts).integer(j.retryAt).text(j.holder);
        p.integer(j.leaseUntil).integer(j.expiresAt).integer(j.createdAt).text(j.lastError);
        c_.exec(pg::kPutDeliveryJob, p);
    }
    std::vector<otp::DeliveryJob> claimDeliveryJobs(std::string_view holder, std::string_view nodePrefix,
                                                    std::int64_t now, std::int64_t leaseUntil, int limit) override {
        // The node's holders are the range [prefix, prefix with its last byte + 1);
        // without a prefix, a range nothing falls in.
        std::string low(nodePrefix), high(nodePrefix);
        if (!high.empty()) high.back() = static_cast<char>(high.back() + 1);
        if (low.empty()) low = high = "\x01";
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
    void endDeliveryJob(std::string_view requestId) override { c_.exec(pg::kEndDeliveryJob, Params().text(requestId)); }
    std::optional<otp::DeliveryJob> findDeliveryJob(std::string_view requestId) override {
        auto jobs = readJobs(c_.exec(pg::kSelectDeliveryJob, Params().text(requestId)));
        if (jobs.empty()) return std::nullopt;
        return std::move(jobs.front());
    }
    std::vector<otp::DeliveryJob> listDeliveryJobs(int limit) override {
        return readJobs(c_.exec(pg::kListDeliveryJobs, Params().integer(limit)));
    }

    std::optional<otp::OptOut> findOptOut(std::string_view) override { missing("findOptOut"); }
    void putOptOut(const otp::OptOut&) override { missing("putOptOut"); }
    bool removeOptOut(std::string_view) override { missing("removeOptOut"); }
    std::vector<otp::OptOut> listOptOuts(int) override { missing("listOptOuts"); }
    void insertCall(const CallRecord&) override { missing("insertCall"); }
    std::vector<CallRecord> findCalls(const CallQuery&) override { missing("findCalls"); }
    std::int64_t purgeStep(PurgeKind, std::int64_t, const RetentionPolicy&, int, bool) override { missing("purgeStep"); }
    void insertRetentionRun(const RetentionRun&) override { missing("insertRetentionRun"); }
    std::optional<RetentionRun> lastRetentionRun() override { missing("lastRetentionRun"); }
    std::vector<std::string> syncApps(const std::vector<std::string>&, std::int64_t) override { missing("syncApps"); }
    SubjectFlags subjectFlags(std::string_view) override { missing("subjectFlags"); }
    void bindRequest(std::string_view, std::string_view) override { missing("bindRequest"); }
    void insertApiKey(const ApiKey&) override { missing("insertApiKey"); }
    std::vector<ActivityDelivery> recentDeliveries(const ActivityQuery&) override { missing("recentDeliveries"); }
    std::vector<ActivityEvent> recentEvents(const ActivityQuery&) override { missing("recentEvents"); }
    std::optional<ApiKey> findApiKey(std::string_view) override { missing("findApiKey"); }
    std::vector<ApiKey> listApiKeys(int) override { missing("listApiKeys"); }
    bool revokeApiKey(std::string_view, std::int64_t) override { missing("revokeApiKey"); }
    void touchApiKey(std::string_view, std::int64_t) override { missing("touchApiKey"); }
    std::optional<IdempotencyRecord> claimIdempotencyKey(std::string_view, std::string_view, std::string_view,
                                                         std::int64_t, std::int64_t) override {
        missing("claimIdempotencyKey");
    }
    void completeIdempotencyKey(std::string_view, std::string_view, int, std::string_view) override {
        missing("completeIdempotencyKey");
    }
    void releaseIdempotencyKey(std::string_view, std::string_view) override { missing("releaseIdempotencyKey"); }
    std::string requestBinding(std::string_view) override { missing("requestBinding"); }
    void setRestricted(std::string_view, std::optional<std::int64_t>) override { missing("setRestricted"); }
    void setObjected(std::string_view, std::optional<std::int64_t>) override { missing("setObjected"); }
    SubjectData findSubjectData(std::string_view, std::string_view) override { missing("findSubjectData"); }
    SubjectCounts eraseSubject(std::string_view, std::string_view) override { missing("eraseSubject"); }
    SubjectCounts rectifySubject(std::string_view, std::string_view, std::string_view, std::string_view) override {
        missing("rectifySubject");
    }
    std::int64_t insertPrivacyRequest(const PrivacyRequest&) override { missing("insertPrivacyRequest"); }
    std::optional<PrivacyRequest> findOpenPrivacyRequest(std::string_view, std::string_view) override {
        missing("findOpenPrivacyRequest");
    }
    void completePrivacyRequest(std::int64_t, std::int64_t) override { missing("completePrivacyRequest"); }
    std::vector<PrivacyRequest> listPrivacyRequests(const PrivacyRequestQuery&) override {
        missing("listPrivacyRequests");
    }
    std::vector<PrivacyRequest> subjectPrivacyRequests(std::string_view) override { missing("subjectPrivacyRequests"); }
    std::optional<otp::AuditRecord> lastAuditRecord() override { missing("lastAuditRecord"); }
    void insertAuditRecord(const otp::AuditRecord&) override { missing("insertAuditRecord"); }
    std::vector<otp::AuditRecord> findAuditRecords(const otp::AuditQuery&) override { missing("findAuditRecords"); }
    otp::AuditAnchor auditAnchor() override { missing("auditAnchor"); }
    bool sealLegacyAuditAnchor(const otp::AuditAnchor&) override { missing("sealLegacyAuditAnchor"); }
    std::int64_t countFraudMembers(std::string_view, std::string_view, std::string_view, std::int64_t,
                                   std::int64_t) override {
        missing("countFraudMembers");
    }
    std::optional<std::int64_t> fraudMemberSeen(std::string_view, std::string_view, std::string_view, std::int64_t,
                                                std::int64_t) override {
        missing("fraudMemberSeen");
    }
    void putFraudMember(std::string_view, std::string_view, std::string_view, std::int64_t, std::int64_t) override {
        missing("putFraudMember");
    }

    // ---- Not yet here: the breach report's, the suppression list's and the email feedback counters' ----
    std::vector<BreachRequestRow> breachRequests(const BreachPage&) override { missing("breachRequests"); }
    std::vector<BreachDeliveryRow> breachDeliveries(const BreachPage&) override { missing("breachDeliveries"); }
    bool suppressAddress(const Suppression&) override { missing("suppressAddress"); }
    std::optional<Suppression> findSuppression(std::string_view) override { missing("findSuppression"); }
    bool removeSuppression(std::string_view) override { missing("removeSuppression"); }
    std::vector<Suppression> listSuppressions(int) override { missing("listSuppressions"); }
    void countEmailFeedback(std::string_view, EmailFeedback, std::int64_t) override { missing("countEmailFeedback"); }
    EmailFeedbackCounts emailFeedback(std::string_view, std::int64_t) override { missing("emailFeedback"); }
    std::string deliveryApp(std::string_view) override { missing("deliveryApp"); }

private:
    static std::vector<otp::DeliveryJob> readJobs(const Result& r) {
        std::vector<otp::DeliveryJob> out;
        for (int i = 0; i < r.rows(); ++i)
            out.push_back(otp::DeliveryJob{r.text(i, 0), static_cast<int>(r.integer(i, 1)), static_cast<int>(r.integer(i, 2)),
                                           r.integer(i, 3), r.text(i, 4), r.integer(i, 5), r.integer(i, 6),
                                           r.integer(i, 7), r.text(i, 8)});
        return out;
    }

    std::optional<otp::OtpRequest> readOne(const Result& s) {
        if (s.rows() == 0) return std::nullopt;
        otp::OtpRequest r;
        r.id = s.text(0, 0);
        const auto open = [&](const char* column, int col) { return seal_.open("requests", column, r.id, s.bytes(0, col)); };
        r.app = s.text(0, 1);
        r.channel = s.text(0, 2);
        r.destination = open("destination", 3);
        r.subjectHash = s.text(0, 4);
        r.purpose = s.text(0, 5);
        r.locale = s.text(0, 6);
        r.clientIp = open("client_ip", 7);
        r.device = open("device", 8);
        r.reference = open("reference", 9);
        if (!s.null(0, 10)) {
            const std::string h = s.bytes(0, 10);
            if (h.size() != crypto::Digest{}.size()) throw std::runtime_error("request " + r.id + ": bad code hash");
            crypto::Digest d;
            std::copy(h.begin(), h.end(), d.begin());
            r.codeHash = d;
        }
        r.codeLength = static_cast<int>(s.integer(0, 11));
        const auto status = otp::parseStatus(s.text(0, 12));
        if (!status) throw std::runtime_error("request " + r.id + " has an unknown status");
        r.status = *status;
        r.attempts = static_cast<int>(s.integer(0, 13));
        r.maxAttempts = static_cast<int>(s.integer(0, 14));
        r.sends = static_cast<int>(s.integer(0, 15));
        r.maxSends = static_cast<int>(s.integer(0, 16));
        r.ttl = s.integer(0, 17);
        r.createdAt = s.integer(0, 18);
        r.expiresAt = s.integer(0, 19);
        r.updatedAt = s.integer(0, 20);
        if (!s.null(0, 21)) r.finishedAt = s.integer(0, 21);
        r.failure = s.text(0, 22);
        r.fallbackDestination = open("fallback_destination", 23);
        return r;
    }

    Connection& c_;
    const pg::ColumnSealer& seal_;

    // ---- Event webhooks: not implemented here yet ----
    void enqueueEvent(const otp::EventJob&) override { missing("enqueueEvent"); }
    std::vector<otp::EventJob> claimEvents(std::string_view, std::string_view, std::int64_t, std::int64_t,
                                           int) override {
        missing("claimEvents");
    }
    bool retryEvent(std::string_view, std::string_view, int, std::int64_t, std::string_view) override {
        missing("retryEvent");
    }
    bool finishEvent(std::string_view, std::string_view) override { missing("finishEvent"); }
    void insertEventAttempt(const otp::EventAttempt&) override { missing("insertEventAttempt"); }
    std::vector<otp::EventAttempt> findEventAttempts(const otp::EventAttemptQuery&) override {
        missing("findEventAttempts");
    }
    otp::EventFailure countEventFailure(std::string_view, std::int64_t, int, std::string_view) override {
        missing("countEventFailure");
    }
    void clearEventFailures(std::string_view) override { missing("clearEventFailures"); }
    bool enableEvents(std::string_view, std::int64_t) override { missing("enableEvents"); }
    std::vector<otp::EventEndpoint> listEventEndpoints() override { missing("listEventEndpoints"); }
    std::vector<otp::OtpRequest> findExpiredPending(std::int64_t, int) override { missing("findExpiredPending"); }
    // ---- end of event webhooks ----
};

// Work items run on a few connections at once, each in its own transaction.
class PostgresStore final : public Store {
public:
    explicit PostgresStore(PostgresOptions o)
        : dsn_(std::move(o.dsn)), sealer_(o.key), maxQueued_(o.maxQueued) {
        o.key.wipe();
        {
            Connection c(dsn_);
            migrate(c);
        }
        const int n = std::max(1, o.connections);
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

private:
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
                if (queue_.empty()) return;
                item = std::move(queue_.front());
                queue_.pop_front();
            }
            auto error = runItem(conn, item.work);
            if (item.done) item.done(error);
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
                if (!conn || !conn->ok()) conn = std::make_unique<Connection>(dsn_);
            } catch (...) {
                conn.reset();
                return std::current_exception();
            }
            try {
                conn->exec("BEGIN");
                PostgresTransaction t(*conn, sealer_);
                work(t);
                conn->exec("COMMIT");
                return nullptr;
            } catch (const PgError& e) {
                rollback(*conn);
                const bool lost = !conn->ok();
                if (lost) conn.reset();
                if ((e.retryable() || (lost && attempt == 0)) && attempt + 1 < kTries) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1 << std::min(attempt, 5)));
                    continue;
                }
                return std::current_exception();
            } catch (...) {
                rollback(*conn);
                return std::current_exception();
            }
        }
    }

    static void rollback(Connection& c) {
        if (!c.ok()) return;
        try {
            c.exec("ROLLBACK");
        } catch (...) {
        }
    }

    SecretString dsn_;
    pg::ColumnSealer sealer_;
    std::size_t maxQueued_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Item> queue_;
    bool stopping_ = false;
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

const char* postgresMissing() {
    return "the delivery log, opt-outs, the request log, retention, apps, GDPR requests, the audit log "
           "fraud sets, transaction binding, API keys, Idempotency-Key records and statistics";
}

}  // namespace twofactor::store
