// The audit log: the chain verifies, tampering is found at the right record,
// a failing audit write fails the operation (nothing sent), and records never
// hold a code or a destination.
#include "store_fixtures.hpp"
#include "config/config.hpp"
#include "otp/audit.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

class RecordingChannel final : public channel::Channel {
public:
    std::string driverName() const override { return "recording"; }
    void deliver(channel::Message m, Done done) override {
        {
            std::lock_guard lock(mutex);
            codes.push_back(m.code.str());
        }
        channel::DeliveryResult r;
        r.driver = "recording";
        r.outcome = channel::DeliveryOutcome::Accepted;
        done(std::move(r));
    }
    std::mutex mutex;
    std::vector<std::string> codes;
};

// Passes everything to the real transaction, except that audit appends throw while `failAudit` is set.
class FailingAuditTransaction final : public store::Transaction {
public:
    FailingAuditTransaction(store::Transaction& inner, bool fail) : t_(inner), fail_(fail) {}
    std::optional<otp::OtpRequest> findRequest(std::string_view id) override { return t_.findRequest(id); }
    std::optional<otp::OtpRequest> findNewestPending(std::string_view a, std::string_view s) override {
        return t_.findNewestPending(a, s);
    }
    void insertRequest(const otp::OtpRequest& r) override { t_.insertRequest(r); }
    bool approveRequest(std::string_view id, int send, const crypto::Digest& h, std::int64_t now) override {
        return t_.approveRequest(id, send, h, now);
    }
    std::optional<store::WrongCode> countWrongCode(std::string_view id, std::int64_t now) override {
        return t_.countWrongCode(id, now);
    }
    bool finishRequest(std::string_view id, std::optional<int> send, otp::Status to, std::int64_t now,
                       std::string_view failure) override {
        return t_.finishRequest(id, send, to, now, failure);
    }
    bool replaceCode(std::string_view id, int send, const crypto::Digest& h, std::int64_t exp,
                     std::int64_t now) override {
        return t_.replaceCode(id, send, h, exp, now);
    }
    bool switchChannel(std::string_view id, int send, std::string_view c, std::int64_t now) override {
        return t_.switchChannel(id, send, c, now);
    }
    void bindRequest(std::string_view id, std::string_view digest) override { t_.bindRequest(id, digest); }
    std::string requestBinding(std::string_view id) override { return t_.requestBinding(id); }
    // Event webhooks: passed through.
    void enqueueEvent(const otp::EventJob& e) override { t_.enqueueEvent(e); }
    std::vector<otp::EventJob> claimEvents(std::string_view h, std::string_view p, std::int64_t now, std::int64_t until,
                                           int limit) override {
        return t_.claimEvents(h, p, now, until, limit);
    }
    bool retryEvent(std::string_view id, std::string_view h, int n, std::int64_t at, std::string_view e) override {
        return t_.retryEvent(id, h, n, at, e);
    }
    bool finishEvent(std::string_view id, std::string_view h) override { return t_.finishEvent(id, h); }
    void insertEventAttempt(const otp::EventAttempt& a) override { t_.insertEventAttempt(a); }
    std::vector<otp::EventAttempt> findEventAttempts(const otp::EventAttemptQuery& q) override {
        return t_.findEventAttempts(q);
    }
    otp::EventFailure countEventFailure(std::string_view app, std::int64_t now, int max, std::string_view e) override {
        return t_.countEventFailure(app, now, max, e);
    }
    void clearEventFailures(std::string_view app) override { t_.clearEventFailures(app); }
    bool enableEvents(std::string_view app, std::int64_t now) override { return t_.enableEvents(app, now); }
    std::vector<otp::EventEndpoint> listEventEndpoints() override { return t_.listEventEndpoints(); }
    std::vector<otp::OtpRequest> findExpiredPending(std::int64_t now, int limit) override {
        return t_.findExpiredPending(now, limit);
    }
    bool takeLease(std::string_view n, std::int64_t slot, std::string_view h, std::int64_t now, std::int64_t until) override {
        return t_.takeLease(n, slot, h, now, until);
    }
    std::vector<store::Lease> listLeases(int limit) override { return t_.listLeases(limit); }
    void heartbeatNode(const store::NodeInfo& n) override { t_.heartbeatNode(n); }
    std::vector<store::NodeInfo> listNodes(std::int64_t since, int limit) override { return t_.listNodes(since, limit); }
    void forgetNode(std::string_view id) override { t_.forgetNode(id); }
    void insertDeliveryAttempt(const otp::DeliveryAttempt& a) override { t_.insertDeliveryAttempt(a); }
    std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& q) override {
        return t_.findDeliveryAttempts(q);
    }
    bool updateDeliveryStatus(const otp::ProviderStatus& s) override { return t_.updateDeliveryStatus(s); }
    std::optional<otp::OptOut> findOptOut(std::string_view s) override { return t_.findOptOut(s); }
    void putOptOut(const otp::OptOut& e) override { t_.putOptOut(e); }
    bool removeOptOut(std::string_view s) override { return t_.removeOptOut(s); }
    std::vector<otp::OptOut> listOptOuts(int limit) override { return t_.listOptOuts(limit); }
    void insertApiKey(const store::ApiKey& k) override { t_.insertApiKey(k); }
    std::optional<store::ApiKey> findApiKey(std::string_view id) override { return t_.findApiKey(id); }
    std::vector<store::ApiKey> listApiKeys(int limit) override { return t_.listApiKeys(limit); }
    bool revokeApiKey(std::string_view id, std::int64_t now) override { return t_.revokeApiKey(id, now); }
    void touchApiKey(std::string_view id, std::int64_t now) override { t_.touchApiKey(id, now); }
    std::optional<store::IdempotencyRecord> claimIdempotencyKey(std::string_view k, std::string_view i,
                                                                std::string_view b, std::int64_t now,
                                                                std::int64_t from) override {
        return t_.claimIdempotencyKey(k, i, b, now, from);
    }
    void completeIdempotencyKey(std::string_view k, std::string_view i, int status, std::string_view r) override {
        t_.completeIdempotencyKey(k, i, status, r);
    }
    void releaseIdempotencyKey(std::string_view k, std::string_view i) override { t_.releaseIdempotencyKey(k, i); }
    void putDeliveryJob(const otp::DeliveryJob& j) override { t_.putDeliveryJob(j); }
    std::vector<otp::DeliveryJob> claimDeliveryJobs(std::string_view h, std::string_view p, std::int64_t now,
                                                    std::int64_t until, int limit) override {
        return t_.claimDeliveryJobs(h, p, now, until, limit);
    }
    bool renewDeliveryLease(std::string_view id, int send, std::string_view h, std::int64_t until) override {
        return t_.renewDeliveryLease(id, send, h, until);
    }
    bool recordDeliveryRetry(std::string_view id, int send, std::string_view h, int attempts, std::int64_t at,
                             std::int64_t until, std::string_view e) override {
        return t_.recordDeliveryRetry(id, send, h, attempts, at, until, e);
    }
    bool finishDeliveryJob(std::string_view id, int send, std::string_view h) override {
        return t_.finishDeliveryJob(id, send, h);
    }
    void endDeliveryJob(std::string_view id) override { t_.endDeliveryJob(id); }
    std::optional<otp::DeliveryJob> findDeliveryJob(std::string_view id) override { return t_.findDeliveryJob(id); }
    std::vector<otp::DeliveryJob> listDeliveryJobs(int limit) override { return t_.listDeliveryJobs(limit); }
    bool countSendsIf(const std::vector<otp::RateKey>& k, std::int64_t now, const RateDecision& admit) override {
        return t_.countSendsIf(k, now, admit);
    }
    std::optional<otp::SubjectFailures> findSubjectFailures(std::string_view a, std::string_view s) override {
        return t_.findSubjectFailures(a, s);
    }
    std::int64_t countSubjectFailure(std::string_view a, std::string_view s) override {
        return t_.countSubjectFailure(a, s);
    }
    void lockSubject(std::string_view a, std::string_view s, std::int64_t until) override {
        t_.lockSubject(a, s, until);
    }
    void clearSubjectFailures(std::string_view a, std::string_view s) override { t_.clearSubjectFailures(a, s); }
    otp::AuditCheckpoint auditAppendTail() override { return t_.auditAppendTail(); }
    std::optional<otp::AuditRecord> lastAuditRecord(std::int64_t chain) override { return t_.lastAuditRecord(chain); }
    void insertAuditRecord(const otp::AuditRecord& r) override {
        if (fail_) throw std::runtime_error("disk full (injected)");
        t_.insertAuditRecord(r);
    }
    std::vector<otp::AuditRecord> findAuditRecords(const otp::AuditQuery& q) override {
        return t_.findAuditRecords(q);
    }
    std::int64_t countFraudMembers(std::string_view r, std::string_view k, std::string_view except, std::int64_t since,
                                   std::int64_t cap) override {
        return t_.countFraudMembers(r, k, except, since, cap);
    }
    std::optional<std::int64_t> fraudMemberSeen(std::string_view r, std::string_view k, std::string_view except,
                                                std::int64_t since, std::int64_t n) override {
        return t_.fraudMemberSeen(r, k, except, since, n);
    }
    void putFraudMember(std::string_view r, std::string_view k, std::string_view m, std::int64_t at,
                        std::int64_t exp) override {
        t_.putFraudMember(r, k, m, at, exp);
    }
    void insertCall(const store::CallRecord& c) override { t_.insertCall(c); }
    std::vector<store::CallRecord> findCalls(const store::CallQuery& q) override { return t_.findCalls(q); }
    std::vector<store::ActivityDelivery> recentDeliveries(const store::ActivityQuery& q) override {
        return t_.recentDeliveries(q);
    }
    std::vector<store::ActivityEvent> recentEvents(const store::ActivityQuery& q) override { return t_.recentEvents(q); }
    std::vector<store::BreachRequestRow> breachRequests(const store::BreachPage& p) override {
        return t_.breachRequests(p);
    }
    std::vector<store::BreachDeliveryRow> breachDeliveries(const store::BreachPage& p) override {
        return t_.breachDeliveries(p);
    }
    bool suppressAddress(const store::Suppression& e) override { return t_.suppressAddress(e); }
    std::optional<store::Suppression> findSuppression(std::string_view h) override { return t_.findSuppression(h); }
    bool removeSuppression(std::string_view h) override { return t_.removeSuppression(h); }
    std::vector<store::Suppression> listSuppressions(int limit) override { return t_.listSuppressions(limit); }
    void countEmailFeedback(std::string_view app, store::EmailFeedback k, std::int64_t at) override {
        t_.countEmailFeedback(app, k, at);
    }
    store::EmailFeedbackCounts emailFeedback(std::string_view app, std::int64_t since) override {
        return t_.emailFeedback(app, since);
    }
    std::string deliveryApp(std::string_view id) override { return t_.deliveryApp(id); }
    std::int64_t purgeStep(store::PurgeKind k, std::int64_t now, const store::RetentionPolicy& p, int limit,
                           bool dryRun) override {
        return t_.purgeStep(k, now, p, limit, dryRun);
    }
    void insertRetentionRun(const store::RetentionRun& r) override { t_.insertRetentionRun(r); }
    std::optional<store::RetentionRun> lastRetentionRun() override { return t_.lastRetentionRun(); }
    std::vector<otp::AuditAnchor> auditAnchors() override { return t_.auditAnchors(); }
    bool sealLegacyAuditAnchor(const otp::AuditAnchor& a) override { return t_.sealLegacyAuditAnchor(a); }
    std::vector<std::string> syncApps(const std::vector<std::string>& c, std::int64_t now) override {
        return t_.syncApps(c, now);
    }
    store::SubjectFlags subjectFlags(std::string_view h) override { return t_.subjectFlags(h); }
    void setRestricted(std::string_view h, std::optional<std::int64_t> s) override { t_.setRestricted(h, s); }
    void setObjected(std::string_view h, std::optional<std::int64_t> s) override { t_.setObjected(h, s); }
    store::SubjectData findSubjectData(std::string_view h, std::string_view a) override {
        return t_.findSubjectData(h, a);
    }
    store::SubjectCounts eraseSubject(std::string_view h, std::string_view a) override { return t_.eraseSubject(h, a); }
    store::SubjectCounts rectifySubject(std::string_view oh, std::string_view oa, std::string_view nh,
                                        std::string_view na) override {
        return t_.rectifySubject(oh, oa, nh, na);
    }
    std::int64_t insertPrivacyRequest(const store::PrivacyRequest& r) override { return t_.insertPrivacyRequest(r); }
    std::optional<store::PrivacyRequest> findOpenPrivacyRequest(std::string_view k, std::string_view h) override {
        return t_.findOpenPrivacyRequest(k, h);
    }
    void completePrivacyRequest(std::int64_t id, std::int64_t at) override { t_.completePrivacyRequest(id, at); }
    std::vector<store::PrivacyRequest> listPrivacyRequests(const store::PrivacyRequestQuery& q) override {
        return t_.listPrivacyRequests(q);
    }
    std::vector<store::PrivacyRequest> subjectPrivacyRequests(std::string_view h) override {
        return t_.subjectPrivacyRequests(h);
    }

private:
    store::Transaction& t_;
    bool fail_;
};

class FailingAuditStore final : public store::Store {
public:
    explicit FailingAuditStore(store::Store& inner) : inner_(inner) {}
    void submit(Work work, Done done) override {
        const bool fail = failAudit.load();
        inner_.submit([work = std::move(work), fail](store::Transaction& t) {
            FailingAuditTransaction f(t, fail);
            work(f);
        },
                      std::move(done));
    }
    void checkpoint(Done done) override { inner_.checkpoint(std::move(done)); }
    void close() override { inner_.close(); }
    std::string description() const override { return inner_.description(); }
    std::atomic<bool> failAudit{false};

private:
    store::Store& inner_;
};

struct Fixture {
    fs::path dir;
    config::Config cfg;
    ManualClock clock{1'800'000'000};
    RecordingChannel channel;
    SecretBytes storeKey = crypto::randomSecret(32);
    SecretBytes pepper = crypto::randomSecret(32);
    std::unique_ptr<store::Store> real;
    std::unique_ptr<FailingAuditStore> store;
    std::unique_ptr<otp::OtpService> service;

    Fixture() {
        char tmpl[] = "/tmp/tf-audit-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        cfg.retry.sendWait = std::chrono::seconds(300);
        open();
    }
    ~Fixture() {
        if (real) real->close();
        fs::remove_all(dir);
    }
    std::string path() const { return (dir / "t.db").string(); }
    void open() {
        store::SqlcipherOptions o;
        o.path = path();
        o.key = storeKey.clone();
        real = store::openSqlcipherStore(std::move(o));
        store = std::make_unique<FailingAuditStore>(*real);
        service = std::make_unique<otp::OtpService>(
            cfg, *store, std::map<std::string, channel::Channel*>{{"email", &channel}}, clock, pepper.clone(),
            [](std::function<void()> f) { f(); }, [](std::chrono::milliseconds, std::function<void()>) {});
    }
    void close() {
        service.reset();
        real->close();
        real.reset();
    }
    // Runs SQL on the test's own database file, with its key, around the store.
    void rawSql(const std::string& sql) {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path().c_str(), &db) == SQLITE_OK);
        const std::string key = test::keyPragmas(storeKey);
        char* err = nullptr;
        const int rc = sqlite3_exec(db, (key + "; " + sql).c_str(), nullptr, nullptr, &err);
        const std::string message = err ? err : "";
        sqlite3_free(err);
        sqlite3_close(db);
        INFO(message);
        REQUIRE(rc == SQLITE_OK);
    }

    template <typename T, typename F>
    otp::Outcome<T> wait(F&& start) {
        std::promise<otp::Outcome<T>> p;
        auto f = p.get_future();
        start([&](otp::Outcome<T> o) { p.set_value(std::move(o)); });
        return f.get();
    }
    otp::Outcome<otp::SendResult> send(const std::string& to) {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        in.caller.uid = 1234;
        return wait<otp::SendResult>([&](auto cb) { service->send(std::move(in), cb); });
    }
    otp::Outcome<otp::VerifyResult> verify(const std::string& id, const std::string& code) {
        otp::VerifyInput in;
        in.id = id;
        in.code = SecretString(code);
        in.caller.uid = 1234;
        return wait<otp::VerifyResult>([&](auto cb) { service->verify(std::move(in), cb); });
    }
    std::vector<otp::AuditRecord> records() {
        auto o = wait<std::vector<otp::AuditRecord>>([&](auto cb) { service->auditList(otp::AuditQuery{}, cb); });
        REQUIRE(std::holds_alternative<std::vector<otp::AuditRecord>>(o));
        return std::get<std::vector<otp::AuditRecord>>(o);
    }
    otp::AuditVerification verifyChain(std::optional<otp::AuditCheckpoint> checkpoint = std::nullopt) {
        std::vector<otp::AuditCheckpoint> heads;
        if (checkpoint) heads.push_back(*checkpoint);
        auto o = wait<otp::AuditVerification>([&](auto cb) { service->auditVerify(cb, heads); });
        REQUIRE(std::holds_alternative<otp::AuditVerification>(o));
        return std::get<otp::AuditVerification>(o);
    }
    // SQLCipher: one chain, so one head.
    otp::AuditCheckpoint checkpoint() {
        auto o = wait<std::vector<otp::AuditCheckpoint>>([&](auto cb) { service->auditHeads(cb); });
        REQUIRE(std::holds_alternative<std::vector<otp::AuditCheckpoint>>(o));
        const auto heads = std::get<std::vector<otp::AuditCheckpoint>>(o);
        REQUIRE(heads.size() == 1);
        CHECK(heads.front().chain == 0);
        return heads.front();
    }
    // A retention purge as the daemon runs it: the service lends the audit key for the anchor's seal.
    store::PurgeCounts purge() {
        store::RetentionPolicy policy;
        service->sealRetention(policy);
        return store::purge(*real, clock.now(), policy, 2, false);
    }
    otp::AuditAnchor anchor() {
        return store::runSync(*real, [](store::Transaction& t) { return t.auditAnchors().at(0); });
    }
    // A send and a right and a wrong verify: five records.
    std::string activity() {
        auto s = send("alice@example.org");
        REQUIRE(std::holds_alternative<otp::SendResult>(s));
        const auto id = std::get<otp::SendResult>(s).request.id;
        std::string code;
        {
            std::lock_guard lock(channel.mutex);
            code = channel.codes.back();
        }
        std::string wrong = code;
        wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
        REQUIRE(std::holds_alternative<otp::VerifyResult>(verify(id, wrong)));
        REQUIRE(std::get<otp::VerifyResult>(verify(id, code)).approved);
        REQUIRE(std::holds_alternative<otp::SendResult>(send("bob@example.org")));
        auto r = send("bob@example.org");  // within the cooldown: refused, and audited
        REQUIRE(std::get<otp::Failure>(r).error == "RateLimited");
        return code;
    }
};

}  // namespace

TEST_CASE("the canonical form is unambiguous and the hash keyed", "[audit]") {
    otp::AuditRecord a;
    a.seq = 1;
    a.event = "send";
    a.app = "ab";
    a.outcome = "c";
    otp::AuditRecord b = a;
    b.app = "a";
    b.outcome = "bc";  // the same characters, split differently
    CHECK(otp::canonicalAuditRecord(a) != otp::canonicalAuditRecord(b));
    const auto k1 = crypto::randomSecret(32);
    const auto k2 = crypto::randomSecret(32);
    CHECK(otp::auditRecordHash(k1, a) != otp::auditRecordHash(k2, a));
    CHECK(otp::auditRecordHash(k1, a).size() == 64);
}

TEST_CASE_METHOD(Fixture, "operations are recorded in a chain that verifies", "[audit]") {
    activity();
    const auto rs = records();
    REQUIRE(rs.size() == 5);
    CHECK(rs[0].event == "send");
    CHECK(rs[0].outcome == "success");
    CHECK(rs[0].uid == 1234);
    CHECK(rs[0].app == "default");
    CHECK(rs[0].subject == service->subjectHash("alice@example.org"));
    CHECK(rs[1].event == "verify");
    CHECK(rs[1].outcome == "rejected");
    CHECK(rs[2].outcome == "approved");
    CHECK(rs[2].requestId == rs[0].requestId);
    CHECK(rs[4].outcome == "refused:destination-cooldown");
    CHECK(rs[4].requestId.empty());
    CHECK(rs[0].prevHash == otp::kAuditGenesis);
    for (std::size_t i = 0; i < rs.size(); ++i) {
        CHECK(rs[i].seq == static_cast<std::int64_t>(i + 1));
        if (i > 0) CHECK(rs[i].prevHash == rs[i - 1].hash);
    }
    const auto v = verifyChain();
    CHECK(v.ok);
    CHECK(v.records == 5);
    CHECK_FALSE(v.firstBroken);

    otp::AuditQuery q;
    q.outcome = "refused:";
    auto o = wait<std::vector<otp::AuditRecord>>([&](auto cb) { service->auditList(q, cb); });
    CHECK(std::get<std::vector<otp::AuditRecord>>(o).size() == 1);
}

TEST_CASE_METHOD(Fixture, "the store refuses to change audit records through SQL", "[audit]") {
    activity();
    close();
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path().c_str(), &db) == SQLITE_OK);
    const std::string key = test::keyPragmas(storeKey);
    REQUIRE(sqlite3_exec(db, key.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE audit SET outcome = 'x' WHERE seq = 2", nullptr, nullptr, nullptr) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 2", nullptr, nullptr, nullptr) != SQLITE_OK);
    sqlite3_close(db);
    open();
    CHECK(verifyChain().ok);
}

TEST_CASE_METHOD(Fixture, "tampering is found at the record that was changed", "[audit]") {
    activity();
    close();
    std::string sql;
    std::int64_t broken = 0;
    std::string why;
    SECTION("a changed outcome") {
        sql = "UPDATE audit SET outcome = 'approved' WHERE seq = 2";
        broken = 2;
        why = "hash";
    }
    SECTION("a removed record") {
        sql = "DELETE FROM audit WHERE seq = 3";
        broken = 3;
        why = "missing";
    }
    SECTION("a record re-sealed without the key") {
        // The tamperer recomputes the hash with a key of their own: the next link also breaks.
        sql = "UPDATE audit SET uid = 0, hash = '" + std::string(64, 'a') + "' WHERE seq = 4";
        broken = 4;
        why = "hash";
    }
    SECTION("a re-chained successor") {
        sql = "UPDATE audit SET prev_hash = '" + std::string(otp::kAuditGenesis) + "' WHERE seq = 5";
        broken = 5;
        why = "previous-hash";
    }
    rawSql("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; " + sql);
    open();
    const auto v = verifyChain();
    CHECK_FALSE(v.ok);
    REQUIRE(v.firstBroken);
    CHECK(*v.firstBroken == broken);
    CHECK(v.reason.find(why) != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "a failing audit write fails the send and nothing is delivered", "[audit]") {
    store->failAudit = true;
    auto s = send("carol@example.org");
    REQUIRE(std::holds_alternative<otp::Failure>(s));
    CHECK(std::get<otp::Failure>(s).error == "AuditFailed");
    CHECK(channel.codes.empty());
    store->failAudit = false;
    CHECK(records().empty());
    // Nothing was stored or counted either: the request insert rolled back and
    // the cooldown counter did not move, so the next send goes through at once.
    auto again = send("carol@example.org");
    REQUIRE(std::holds_alternative<otp::SendResult>(again));
    CHECK(channel.codes.size() == 1);
}

TEST_CASE_METHOD(Fixture, "a failing audit write keeps a right code from being approved", "[audit]") {
    auto s = send("dave@example.org");
    REQUIRE(std::holds_alternative<otp::SendResult>(s));
    const auto id = std::get<otp::SendResult>(s).request.id;
    const std::string code = channel.codes.back();
    store->failAudit = true;
    auto v = verify(id, code);
    REQUIRE(std::holds_alternative<otp::Failure>(v));
    CHECK(std::get<otp::Failure>(v).error == "AuditFailed");
    store->failAudit = false;
    // The request is still pending: the approval was undone with its record.
    auto st = wait<otp::OtpRequest>([&](auto cb) { service->status(id, cb); });
    CHECK(std::get<otp::OtpRequest>(st).status == otp::Status::Pending);
    CHECK(std::get<otp::VerifyResult>(verify(id, code)).approved);
}

TEST_CASE_METHOD(Fixture, "audit records never hold a code or a destination", "[audit]") {
    const std::string code = activity();
    // Every stored column, serialised, of every record.
    std::string all;
    for (const auto& r : records()) all += otp::canonicalAuditRecord(r) + r.hash + "\n";
    for (const char* needle : {"alice", "example.org", "bob"}) {
        INFO(needle);
        CHECK(all.find(needle) == std::string::npos);
    }
    CHECK(all.find(code) == std::string::npos);
    CHECK(all.find(crypto::hex(pepper.data(), pepper.size())) == std::string::npos);
}

TEST_CASE_METHOD(Fixture, "an erased subject keeps the chain valid; a swapped subject does not", "[audit][gdpr]") {
    activity();
    close();
    // Allowed by the triggers: blanking the subject and its nonce (GDPR erasure).
    rawSql("UPDATE audit SET subject = '', subject_nonce = '' WHERE subject <> ''");
    open();
    auto v = verifyChain();
    CHECK(v.ok);
    CHECK(v.erased == 5);
    for (const auto& r : records()) CHECK(r.subject.empty());

    close();
    // Anything else is refused by the triggers...
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path().c_str(), &db) == SQLITE_OK);
    const std::string key = test::keyPragmas(storeKey);
    REQUIRE(sqlite3_exec(db, key.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE audit SET subject = '', detail = 'x' WHERE seq = 2", nullptr, nullptr, nullptr) !=
          SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE audit SET subject = 'other' WHERE seq = 2", nullptr, nullptr, nullptr) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 1", nullptr, nullptr, nullptr) != SQLITE_OK);
    sqlite3_close(db);
    open();
    CHECK(verifyChain().ok);
}

TEST_CASE_METHOD(Fixture, "a subject put on a record it was not sealed with is found", "[audit][gdpr]") {
    activity();
    const auto subject = records().at(1).subject;
    REQUIRE_FALSE(subject.empty());
    close();
    rawSql("DROP TRIGGER audit_no_update; UPDATE audit SET subject = '" + std::string(64, 'b') + "' WHERE seq = 2");
    open();
    const auto v = verifyChain();
    CHECK_FALSE(v.ok);
    REQUIRE(v.firstBroken);
    CHECK(*v.firstBroken == 2);
    CHECK(v.reason.find("subject") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "retention prunes the head of the chain and it resumes from the anchor", "[audit][retention]") {
    activity();  // 5 records at T
    clock.set(clock.now() + 400 * 86400);
    activity();  // 5 more, 400 days later
    // Without the audit key no cut can be sealed, so none is made.
    CHECK(store::purge(*real, clock.now(), store::RetentionPolicy{}, 2, false).auditRecords == 0);
    const auto counts = purge();
    CHECK(counts.auditRecords == 5);  // the first activity's records, more than a year old
    auto v = verifyChain();
    CHECK(v.ok);
    CHECK(v.anchorSealed);
    CHECK(anchor().seq == 5);
    CHECK(anchor().seal.size() == 64);
    CHECK(v.prunedBefore == 6);
    CHECK(v.records == 5);
    // A pruned head is not a gap: a record deleted from the middle still is.
    close();
    rawSql("UPDATE audit_gate SET prune_before = 8; DELETE FROM audit WHERE seq = 8; "
           "UPDATE audit_gate SET prune_before = 0");
    open();
    v = verifyChain();
    CHECK_FALSE(v.ok);
    CHECK(v.reason.find("missing") != std::string::npos);
}

namespace {

// What someone holding only the database key can do: cut the chain's head and
// write an anchor that matches the first record kept, as the store would.
void forgeHeadCut(Fixture& f, std::int64_t upTo, const std::string& seal) {
    const auto kept = f.records();
    std::string hash;
    for (const auto& r : kept)
        if (r.seq == upTo) hash = r.hash;
    REQUIRE_FALSE(hash.empty());
    f.close();
    f.rawSql("UPDATE audit_gate SET prune_before = " + std::to_string(upTo) + "; DELETE FROM audit WHERE seq <= " +
             std::to_string(upTo) + "; UPDATE audit_gate SET prune_before = 0, anchor_seq = " + std::to_string(upTo) +
             ", anchor_hash = '" + hash + "', anchor_seal = '" + seal + "'");
    f.open();
}

}  // namespace

TEST_CASE_METHOD(Fixture, "an anchor written with only the database key is reported", "[audit][seal]") {
    activity();
    REQUIRE(verifyChain().ok);
    SECTION("without a seal") {
        forgeHeadCut(*this, 2, "");
        const auto v = verifyChain();
        CHECK_FALSE(v.ok);
        CHECK_FALSE(v.anchorSealed);
        REQUIRE(v.firstBroken);
        CHECK(*v.firstBroken == 3);
        CHECK(v.reason.find("no seal") != std::string::npos);
    }
    SECTION("with a seal made up, or taken from an earlier cut") {
        clock.set(clock.now() + 400 * 86400);
        activity();  // records 6..10
        REQUIRE(purge().auditRecords == 5);
        const std::string earlierSeal = anchor().seal;  // genuine, for the cut at seq 5
        forgeHeadCut(*this, 7, earlierSeal);
        auto v = verifyChain();
        CHECK_FALSE(v.ok);
        CHECK_FALSE(v.anchorSealed);
        CHECK(v.reason.find("seal does not verify") != std::string::npos);
        forgeHeadCut(*this, 8, std::string(64, 'a'));
        v = verifyChain();
        CHECK_FALSE(v.ok);
        CHECK(v.reason.find("seal does not verify") != std::string::npos);
    }
    SECTION("claiming the genesis anchor hides nothing") {
        close();
        rawSql("UPDATE audit_gate SET prune_before = 2; DELETE FROM audit WHERE seq <= 2; "
               "UPDATE audit_gate SET prune_before = 0");
        open();
        const auto v = verifyChain();
        CHECK_FALSE(v.ok);
        CHECK(v.anchorSealed);
        CHECK(v.reason.find("missing") != std::string::npos);
    }
}

TEST_CASE_METHOD(Fixture, "retention does not cut on from a forged anchor", "[audit][seal][retention]") {
    activity();
    forgeHeadCut(*this, 2, "");
    clock.set(clock.now() + 400 * 86400);
    activity();
    // Records 3..5 are old enough, but a sealed cut after them would launder the forgery.
    CHECK(purge().auditRecords == 0);
    CHECK(anchor().seq == 2);
    CHECK(anchor().seal.empty());
    CHECK_FALSE(verifyChain().ok);
}

TEST_CASE_METHOD(Fixture, "an anchor from before anchors were sealed is sealed once, in the open", "[audit][seal]") {
    activity();
    clock.set(clock.now() + 400 * 86400);
    activity();
    REQUIRE(purge().auditRecords == 5);
    // What migration 12 leaves of an anchor cut by an earlier version.
    close();
    rawSql("UPDATE audit_gate SET anchor_seal = 'legacy', anchor_at = 0");
    open();
    auto v = verifyChain();
    CHECK_FALSE(v.ok);
    CHECK(v.reason.find("next start") != std::string::npos);
    const auto adopted = service->sealLegacyAuditAnchor();
    REQUIRE(adopted);
    CHECK(adopted->event == "audit-anchor");
    CHECK(adopted->seq == 11);
    CHECK(adopted->detail.find("seq 5") != std::string::npos);
    v = verifyChain();
    CHECK(v.ok);
    CHECK(v.records == 6);
    CHECK(anchor().at == clock.now());
    CHECK_FALSE(service->sealLegacyAuditAnchor());  // once only
    // The genesis anchor of a store that never cut needs no adoption.
    CHECK(otp::auditAnchorValid(crypto::randomSecret(32), otp::AuditAnchor{0, otp::kAuditGenesis, 0, ""}));
    CHECK_FALSE(otp::auditAnchorValid(crypto::randomSecret(32), otp::AuditAnchor{0, std::string(64, 'f'), 0, ""}));
}

TEST_CASE_METHOD(Fixture, "a checkpoint proves that no record up to it was cut", "[audit][seal][checkpoint]") {
    // An empty log's head is the genesis.
    auto empty = checkpoint();
    CHECK(empty.seq == 0);
    CHECK(empty.hash == otp::kAuditGenesis);
    CHECK(verifyChain(empty).checkpoint == otp::CheckpointMatch::Matched);

    activity();
    const auto cp = checkpoint();
    const auto rs = records();
    CHECK(cp.seq == 5);
    CHECK(cp.hash == rs.back().hash);
    CHECK(cp.at == rs.back().at);
    clock.set(clock.now() + 3600);  // past the destination cooldown
    activity();
    auto v = verifyChain(cp);
    CHECK(v.ok);
    CHECK(v.checkpoint == otp::CheckpointMatch::Matched);
    CHECK(v.lastSeq == 10);

    SECTION("records cut from the end") {
        close();
        rawSql("UPDATE audit_gate SET prune_before = 10; DELETE FROM audit WHERE seq >= 4; "
               "UPDATE audit_gate SET prune_before = 0");
        open();
        CHECK(verifyChain().ok);  // the chain alone cannot tell
        v = verifyChain(cp);
        CHECK_FALSE(v.ok);
        CHECK(v.checkpoint == otp::CheckpointMatch::Failed);
        REQUIRE(v.firstBroken);
        CHECK(*v.firstBroken == 5);
        CHECK(v.reason.find("cut from the end") != std::string::npos);
        CHECK(v.reason.find("ends at seq 3") != std::string::npos);
    }
    SECTION("a checkpoint that does not match") {
        auto other = cp;
        other.hash = std::string(64, '0');
        v = verifyChain(other);
        CHECK_FALSE(v.ok);
        CHECK(v.reason.find("does not match the checkpoint") != std::string::npos);
        other = cp;
        other.at += 1;
        CHECK_FALSE(verifyChain(other).ok);
    }
    SECTION("records cut by retention, under a sealed anchor") {
        clock.set(clock.now() + 400 * 86400);
        activity();
        REQUIRE(purge().auditRecords == 10);
        v = verifyChain(cp);
        CHECK(v.ok);
        CHECK(v.checkpoint == otp::CheckpointMatch::Pruned);
        auto atAnchor = cp;
        atAnchor.seq = 10;
        atAnchor.hash = anchor().hash;
        CHECK(verifyChain(atAnchor).checkpoint == otp::CheckpointMatch::Matched);
        atAnchor.hash = std::string(64, '1');
        CHECK_FALSE(verifyChain(atAnchor).ok);
    }
}

TEST_CASE_METHOD(Fixture, "provider statuses only move forward", "[audit][status]") {
    // A delivery attempt with a provider message id, as the WhatsApp driver logs one.
    otp::DeliveryAttempt a;
    a.requestId = "r1";
    a.app = "default";
    a.channel = "whatsapp";
    a.driver = "whatsapp-cloud";
    a.send = 1;
    a.attempt = 1;
    a.at = clock.now();
    a.outcome = "accepted";
    a.providerMessageId = "wamid.1";
    store::runSync(*real, [&](store::Transaction& t) { t.insertDeliveryAttempt(a); });
    auto update = [&](const std::string& status, std::int64_t at) {
        otp::ProviderStatus st;
        st.providerMessageId = "wamid.1";
        st.status = status;
        st.at = at;
        return store::runSync(*real, [&](store::Transaction& t) { return t.updateDeliveryStatus(st); });
    };
    auto current = [&] {
        otp::DeliveryQuery q;
        q.requestId = "r1";
        const auto list = store::runSync(*real, [&](store::Transaction& t) { return t.findDeliveryAttempts(q); });
        REQUIRE(list.size() == 1);
        return list[0];
    };
    const std::int64_t t = clock.now();
    CHECK(update("read", t));       // read may come without delivered
    CHECK_FALSE(update("sent", t));  // a late sent in the same second
    CHECK_FALSE(update("delivered", t + 5));  // a later timestamp does not make it newer news
    CHECK_FALSE(update("read", t + 6));       // nor does a repetition
    CHECK(current().providerStatus == "read");
    CHECK(current().providerStatusAt == t);
    CHECK(update("failed", t + 7));
    CHECK_FALSE(update("read", t + 8));  // failed is final
    CHECK_FALSE(update("sent", t + 9));
    CHECK(current().providerStatus == "failed");
    CHECK_FALSE(update("bogus", t + 10));
    // An unknown message id changes nothing either.
    otp::ProviderStatus st;
    st.providerMessageId = "wamid.other";
    st.status = "read";
    st.at = t;
    CHECK_FALSE(store::runSync(*real, [&](store::Transaction& t2) { return t2.updateDeliveryStatus(st); }));
}
