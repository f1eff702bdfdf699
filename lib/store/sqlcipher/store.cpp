#include "store/sqlcipher/store.hpp"

#include "store/sqlcipher/schema.hpp"
#include "util/crypto.hpp"
#include "util/log.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
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
    // A default-constructed string_view has no data: bound as is, SQLite would store NULL, not ''.
    void bind(int i, std::string_view s) {
        check(sqlite3_bind_text(stmt_, i, s.data() ? s.data() : "", static_cast<int>(s.size()), SQLITE_TRANSIENT));
    }
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
          insertDelivery_(db, sql::kInsertDelivery),
          selectDeliveries_(db, sql::kSelectDeliveries),
          updateStatus_(db, sql::kUpdateDeliveryStatus),
          selectOptOut_(db, sql::kSelectOptOut),
          insertOptOut_(db, sql::kInsertOptOut),
          deleteOptOut_(db, sql::kDeleteOptOut),
          listOptOuts_(db, sql::kListOptOuts),
          selectCounter_(db, sql::kSelectRateCounter),
          updateCounter_(db, sql::kUpdateRateCounter),
          insertCounter_(db, sql::kInsertRateCounter),
          selectFailures_(db, sql::kSelectSubjectFailures),
          deleteFailures_(db, sql::kDeleteSubjectFailures),
          lastAudit_(db, sql::kSelectLastAudit),
          insertAudit_(db, sql::kInsertAudit),
          selectAudit_(db, sql::kSelectAudit),
          countFraud_(db, sql::kCountFraudMembers),
          fraudSeen_(db, sql::kSelectFraudMemberSeen),
          updateFraud_(db, sql::kUpdateFraudMember),
          insertFraud_(db, sql::kInsertFraudMember),
          insertCall_(db, sql::kInsertRequestLog),
          selectCalls_(db, sql::kSelectRequestLog),
          recentDeliveries_(db, sql::kSelectRecentDeliveries),
          recentEvents_(db, sql::kSelectRecentEvents) {}

    std::int64_t countFraudMembers(std::string_view rule, std::string_view key, std::string_view except,
                                   std::int64_t since, std::int64_t cap) override {
        auto& s = countFraud_;
        s.reset();
        s.bind(1, rule);
        s.bind(2, key);
        s.bind(3, since);
        s.bind(4, except);
        s.bind(5, cap);
        const std::int64_t n = s.step() ? s.integer(0) : 0;
        s.reset();
        return n;
    }

    std::optional<std::int64_t> fraudMemberSeen(std::string_view rule, std::string_view key, std::string_view except,
                                                std::int64_t since, std::int64_t n) override {
        if (n < 1) return std::nullopt;
        auto& s = fraudSeen_;
        s.reset();
        s.bind(1, rule);
        s.bind(2, key);
        s.bind(3, since);
        s.bind(4, except);
        s.bind(5, n - 1);
        std::optional<std::int64_t> at;
        if (s.step()) at = s.integer(0);
        s.reset();
        return at;
    }

    void putFraudMember(std::string_view rule, std::string_view key, std::string_view member, std::int64_t at,
                        std::int64_t expiresAt) override {
        put(updateFraud_, insertFraud_, [&](Statement& s) {
            s.bind(1, rule);
            s.bind(2, key);
            s.bind(3, member);
            s.bind(4, at);
            s.bind(5, expiresAt);
        });
    }

    std::int64_t purgeStep(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy, int limit,
                           bool dryRun) override {
        const std::int64_t cutoff = purgeCutoff(kind, now, policy);
        if (kind == PurgeKind::AuditRecords && !dryRun) return pruneAudit(cutoff, limit, policy.auditKey, now);
        const auto i = static_cast<std::size_t>(kind);
        std::int64_t total = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const char* text = dryRun ? sql::kPurge[i].count[k] : sql::kPurge[i].purge[k];
            if (!text) break;
            auto& st = stmt((dryRun ? counts_ : purges_)[i][k], text);
            st.bind(1, cutoff);
            if (dryRun) {
                if (countsBeyondDeleted(kind)) st.bind(2, purgeCutoff(PurgeKind::AuthMetadata, now, policy));
                st.step();
                total += st.integer(0);
                st.reset();
                continue;
            }
            // The statements of one category share the batch.
            const std::int64_t budget = limit - total;
            if (budget <= 0) break;
            st.bind(2, budget);
            st.step();
            st.reset();
            total += sqlite3_changes(db_);
        }
        return total;
    }

    // Deletes the oldest audit records older than the cutoff, from the head of
    // the chain only, and moves the anchor the chain resumes from, sealed.
    std::int64_t pruneAudit(std::int64_t cutoff, int limit, const SecretBytes* key, std::int64_t now) {
        if (key == nullptr) return 0;
        const otp::AuditAnchor anchor = auditAnchor();
        if (!otp::auditAnchorValid(*key, anchor)) {
            if (!anchorWarned_)
                log::warning("audit records are not pruned: the audit log's anchor is not sealed, or its seal does not "
                             "verify (see twofactor audit verify)");
            anchorWarned_ = true;
            return 0;
        }
        Statement head(db_, sql::kSelectAuditHead);
        head.bind(1, anchor.seq);
        head.bind(2, limit);
        std::int64_t lastSeq = anchor.seq;
        std::string lastHash;
        std::int64_t n = 0;
        while (head.step()) {
            if (head.integer(1) >= cutoff) break;  // the chain is kept from here on
            lastSeq = head.integer(0);
            lastHash = head.text(2);
            ++n;
        }
        head.reset();
        if (n == 0) return 0;
        Statement open(db_, sql::kOpenAuditGate);
        open.bind(1, lastSeq);
        open.step();
        Statement del(db_, sql::kDeleteAuditHead);
        del.bind(1, lastSeq);
        del.step();
        const std::int64_t deleted = sqlite3_changes(db_);
        otp::AuditAnchor next{lastSeq, lastHash, now, ""};
        next.seal = otp::auditAnchorSeal(*key, next);
        Statement close(db_, sql::kCloseAuditGate);
        close.bind(1, next.seq);
        close.bind(2, next.hash);
        close.bind(3, next.at);
        close.bind(4, next.seal);
        close.step();
        return deleted;
    }

    // One writer, one chain: chain 0.
    otp::AuditCheckpoint auditAppendTail() override {
        if (const auto last = lastAuditRecord(0)) return {last->seq, last->hash, last->at, 0};
        const otp::AuditAnchor anchor = auditAnchor();  // nothing yet, or everything pruned: resume after the anchor
        return {anchor.seq, anchor.hash, anchor.at, 0};
    }
    std::vector<otp::AuditAnchor> auditAnchors() override { return {auditAnchor()}; }

    otp::AuditAnchor auditAnchor() {
        Statement s(db_, sql::kSelectAuditAnchor);
        otp::AuditAnchor a{0, otp::kAuditGenesis, 0, ""};
        if (s.step()) {
            a.seq = s.integer(0);
            a.hash = s.text(1);
            a.at = s.integer(2);
            a.seal = s.text(3);
        }
        return a;
    }

    bool sealLegacyAuditAnchor(const otp::AuditAnchor& a) override {
        if (a.chain != 0) return false;
        Statement s(db_, sql::kSealLegacyAnchor);
        s.bind(1, a.seq);
        s.bind(2, a.hash);
        s.bind(3, a.at);
        s.bind(4, a.seal);
        s.step();
        return sqlite3_changes(db_) > 0;
    }

    std::vector<std::string> syncApps(const std::vector<std::string>& configured, std::int64_t now) override {
        std::map<std::string, bool> known;  // name -> currently marked removed
        Statement sel(db_, sql::kSelectApps);
        while (sel.step()) known[sel.text(0)] = !sel.isNull(1);
        sel.reset();
        Statement ins(db_, sql::kInsertApp);
        Statement mark(db_, sql::kSetAppRemoved);
        for (const auto& name : configured) {
            auto it = known.find(name);
            if (it == known.end()) {
                ins.reset();
                ins.bind(1, name);
                ins.bind(2, now);
                ins.step();
            } else if (it->second) {  // back in the configuration
                mark.reset();
                mark.bind(1, name);
                mark.bindNull(2);
                mark.step();
            }
        }
        std::vector<std::string> removed;
        for (const auto& [name, isRemoved] : known) {
            if (isRemoved || std::find(configured.begin(), configured.end(), name) != configured.end()) continue;
            mark.reset();
            mark.bind(1, name);
            mark.bind(2, now);
            mark.step();
            removed.push_back(name);
        }
        return removed;
    }

    SubjectFlags subjectFlags(std::string_view subjectHash) override {
        auto& s = stmt(flagsSel_, sql::kSelectSubjectFlags);
        s.bind(1, subjectHash);
        SubjectFlags f;
        if (s.step()) {
            if (!s.isNull(0)) f.restrictedAt = s.integer(0);
            if (!s.isNull(1)) f.objectedAt = s.integer(1);
        }
        s.reset();
        return f;
    }

    void setFlag(const char* sqlText, std::string_view subjectHash, std::optional<std::int64_t> since) {
        Statement ensure(db_, sql::kEnsureSubjectFlags);
        ensure.bind(1, subjectHash);
        ensure.step();
        Statement set(db_, sqlText);
        set.bind(1, subjectHash);
        if (since) set.bind(2, *since);
        else set.bindNull(2);
        set.step();
        Statement drop(db_, sql::kDropEmptyFlags);
        drop.bind(1, subjectHash);
        drop.step();
    }
    void setRestricted(std::string_view subjectHash, std::optional<std::int64_t> since) override {
        setFlag(sql::kSetRestricted, subjectHash, since);
    }
    void setObjected(std::string_view subjectHash, std::optional<std::int64_t> since) override {
        setFlag(sql::kSetObjected, subjectHash, since);
    }

    SubjectData findSubjectData(std::string_view subjectHash, std::string_view address) override {
        SubjectData d;
        {
            Statement s(db_, sql::kSelectSubjectRequests);
            s.bind(1, subjectHash);
            while (s.step()) d.requests.push_back(readRequestRow(s));
        }
        if (!address.empty()) {
            Statement s(db_, sql::kSelectFallbackRequests);
            s.bind(1, address);
            while (s.step()) d.fallbackRequests.push_back(readRequestRow(s));
        }
        {
            Statement s(db_, sql::kSelectRequestDeliveries);
            for (const auto* list : {&d.requests, &d.fallbackRequests})
                for (const auto& r : *list) {
                    s.reset();
                    s.bind(1, r.id);
                    while (s.step()) {
                        auto a = readDelivery(s);
                        // Of a request the subject was only the email fallback of, only
                        // the email attempts went to them; the others went to another
                        // subject's number.
                        if (list == &d.fallbackRequests && a.channel != "email") continue;
                        d.deliveries.push_back(std::move(a));
                    }
                }
        }
        {
            Statement s(db_, sql::kSelectSubjectAudit);
            s.bind(1, subjectHash);
            while (s.step()) d.audit.push_back(readAudit(s));
        }
        d.optOut = findOptOut(subjectHash);
        {
            Statement s(db_, sql::kSelectSubjectFailureRows);
            s.bind(1, subjectHash);
            while (s.step())
                d.failures.push_back(SubjectFailureRecord{s.text(0), otp::SubjectFailures{s.integer(1), s.integer(2)}});
        }
        d.flags = subjectFlags(subjectHash);
        return d;
    }

    SubjectCounts eraseSubject(std::string_view subjectHash, std::string_view address) override {
        SubjectCounts c;
        std::int64_t* targets[] = {&c.deliveryJobs, &c.deliveries, &c.requests, &c.fallbacks,    &c.auditRecords, &c.optOuts,
                                   &c.failures,   &c.flags,    &c.rateCounters, &c.fraudSets};
        static_assert(std::size(sql::kEraseSubject) == std::size(targets));
        for (std::size_t i = 0; i < std::size(sql::kEraseSubject); ++i) {
            Statement s(db_, sql::kEraseSubject[i]);
            s.bind(1, subjectHash);
            if (std::string_view(sql::kEraseSubject[i]).find("?2") != std::string_view::npos) s.bind(2, address);
            s.step();
            *targets[i] = sqlite3_changes(db_);
        }
        return c;
    }

    SubjectCounts rectifySubject(std::string_view oldHash, std::string_view oldAddress, std::string_view newHash,
                                 std::string_view newAddress) override {
        SubjectCounts c;
        std::int64_t* targets[] = {&c.requests, &c.fallbacks, &c.optOuts, &c.failures, &c.flags};
        static_assert(std::size(sql::kRectifySubject) == std::size(targets));
        for (std::size_t i = 0; i < std::size(sql::kRectifySubject); ++i) {
            Statement s(db_, sql::kRectifySubject[i]);
            const std::string_view text = sql::kRectifySubject[i];
            const auto uses = [&](const char* p) { return text.find(p) != std::string_view::npos; };
            if (uses("?1")) s.bind(1, oldHash);
            if (uses("?2")) s.bind(2, newHash);
            if (uses("?3")) s.bind(3, newAddress);
            if (uses("?4")) s.bind(4, oldAddress);
            s.step();
            *targets[i] = sqlite3_changes(db_);
        }
        return c;
    }

    std::int64_t insertPrivacyRequest(const PrivacyRequest& r) override {
        Statement s(db_, sql::kInsertPrivacyRequest);
        s.bind(1, r.kind);
        s.bind(2, r.subjectHash);
        s.bind(3, r.received);
        s.bind(4, r.due);
        if (r.completed) s.bind(5, *r.completed);
        else s.bindNull(5);
        s.bind(6, r.uid);
        s.bind(7, r.note);
        s.step();
        return sqlite3_last_insert_rowid(db_);
    }

    static PrivacyRequest readPrivacyRequest(const Statement& s) {
        PrivacyRequest r;
        r.id = s.integer(0);
        r.kind = s.text(1);
        r.subjectHash = s.text(2);
        r.received = s.integer(3);
        r.due = s.integer(4);
        if (!s.isNull(5)) r.completed = s.integer(5);
        r.uid = s.integer(6);
        r.note = s.text(7);
        return r;
    }

    std::optional<PrivacyRequest> findOpenPrivacyRequest(std::string_view kind, std::string_view subjectHash) override {
        Statement s(db_, sql::kSelectOpenPrivacyRequest);
        s.bind(1, kind);
        s.bind(2, subjectHash);
        if (!s.step()) return std::nullopt;
        return readPrivacyRequest(s);
    }

    void completePrivacyRequest(std::int64_t id, std::int64_t at) override {
        Statement s(db_, sql::kCompletePrivacyRequest);
        s.bind(1, id);
        s.bind(2, at);
        s.step();
    }

    // ---- Cluster: lease rows and the node registry ----
    bool takeLease(std::string_view name, std::int64_t slot, std::string_view holder, std::int64_t now,
                   std::int64_t until) override {
        Statement ensure(db_, sql::kEnsureLease);
        ensure.bind(1, name);
        ensure.step();
        Statement take(db_, sql::kTakeLease);
        take.bind(1, name);
        take.bind(2, holder);
        take.bind(3, slot);
        take.bind(4, now);
        take.bind(5, until);
        take.step();
        return sqlite3_changes(db_) == 1;
    }
    std::vector<Lease> listLeases(int limit) override {
        Statement s(db_, sql::kListLeases);
        s.bind(1, limit);
        std::vector<Lease> out;
        while (s.step()) out.push_back(Lease{s.text(0), s.text(1), s.integer(2), s.integer(3)});
        return out;
    }
    void heartbeatNode(const NodeInfo& n) override {
        Statement s(db_, sql::kHeartbeatNode);
        s.bind(1, n.id);
        s.bind(2, n.host);
        s.bind(3, n.version);
        s.bind(4, n.started);
        s.bind(5, n.heartbeat);
        s.bind(6, static_cast<std::int64_t>(n.keyVersion));
        s.step();
    }
    void forgetNode(std::string_view id) override {
        Statement s(db_, sql::kForgetNode);
        s.bind(1, id);
        s.step();
    }
    std::vector<NodeInfo> listNodes(std::int64_t since, int limit) override {
        Statement s(db_, sql::kListNodes);
        s.bind(1, since);
        s.bind(2, limit);
        std::vector<NodeInfo> out;
        while (s.step())
            out.push_back(NodeInfo{s.text(0), s.text(1), s.text(2), s.integer(3), s.integer(4), static_cast<int>(s.integer(5))});
        return out;
    }

    // ---- Transaction binding ----
    void bindRequest(std::string_view requestId, std::string_view contextDigest) override {
        Statement s(db_, sql::kBindRequest);
        s.bind(1, requestId);
        s.bind(2, contextDigest);
        s.step();
    }

    std::string requestBinding(std::string_view requestId) override {
        Statement s(db_, sql::kSelectRequestBinding);
        s.bind(1, requestId);
        return s.step() ? s.text(0) : std::string();
    }

    // ---- Breach reports ----
    std::vector<BreachRequestRow> breachRequests(const BreachPage& page) override {
        Statement s(db_, sql::kSelectBreachRequests);
        bindBreachPage(s, page);
        std::vector<BreachRequestRow> out;
        while (s.step())
            out.push_back(BreachRequestRow{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5),
                                           s.text(6), s.text(7), s.text(8), s.text(9)});
        return out;
    }
    std::vector<BreachDeliveryRow> breachDeliveries(const BreachPage& page) override {
        Statement s(db_, sql::kSelectBreachDeliveries);
        bindBreachPage(s, page);
        std::vector<BreachDeliveryRow> out;
        while (s.step())
            out.push_back(BreachDeliveryRow{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5),
                                            s.text(6), s.text(7)});
        return out;
    }
    // ---- The email suppression list and feedback counters ----
    bool suppressAddress(const Suppression& e) override {
        Statement s(db_, sql::kInsertSuppression);
        s.bind(1, e.addressHash);
        s.bind(2, e.reason);
        s.bind(3, e.detail);
        s.bind(4, e.at);
        s.bind(5, e.source);
        s.bind(6, e.messageId);
        s.step();
        return sqlite3_changes(db_) > 0;
    }
    static Suppression readSuppression(const Statement& s) {
        return Suppression{s.text(0), s.text(1), s.text(2), s.integer(3), s.text(4), s.text(5)};
    }
    std::optional<Suppression> findSuppression(std::string_view addressHash) override {
        Statement s(db_, sql::kSelectSuppression);
        s.bind(1, addressHash);
        if (!s.step()) return std::nullopt;
        return readSuppression(s);
    }
    bool removeSuppression(std::string_view addressHash) override {
        Statement s(db_, sql::kDeleteSuppression);
        s.bind(1, addressHash);
        s.step();
        return sqlite3_changes(db_) > 0;
    }
    std::vector<Suppression> listSuppressions(int limit) override {
        Statement s(db_, sql::kListSuppressions);
        s.bind(1, limit);
        std::vector<Suppression> out;
        while (s.step()) out.push_back(readSuppression(s));
        std::reverse(out.begin(), out.end());
        return out;
    }
    void countEmailFeedback(std::string_view app, EmailFeedback kind, std::int64_t at) override {
        const std::int64_t hour = at / 3600;
        {
            Statement s(db_, sql::kEnsureEmailFeedback);
            s.bind(1, app);
            s.bind(2, hour);
            s.step();
        }
        {
            Statement s(db_, kind == EmailFeedback::Send     ? sql::kCountEmailSend
                             : kind == EmailFeedback::Bounce ? sql::kCountEmailBounce
                                                             : sql::kCountEmailComplaint);
            s.bind(1, app);
            s.bind(2, hour);
            s.step();
        }
        Statement s(db_, sql::kPruneEmailFeedback);
        s.bind(1, app);
        s.bind(2, hour - kEmailFeedbackHours);
        s.step();
    }
    EmailFeedbackCounts emailFeedback(std::string_view app, std::int64_t since) override {
        Statement s(db_, sql::kSumEmailFeedback);
        s.bind(1, app);
        s.bind(2, since / 3600);
        EmailFeedbackCounts c;
        if (s.step()) c = EmailFeedbackCounts{s.integer(0), s.integer(1), s.integer(2)};
        return c;
    }
    std::string deliveryApp(std::string_view providerMessageId) override {
        Statement s(db_, sql::kSelectDeliveryApp);
        s.bind(1, providerMessageId);
        return s.step() ? s.text(0) : std::string();
    }

    static void bindBreachPage(Statement& s, const BreachPage& page) {
        s.bind(1, page.from);
        s.bind(2, page.to);
        s.bind(3, page.afterAt);
        s.bind(4, page.afterRow);
        s.bind(5, page.limit);
    }

    std::vector<PrivacyRequest> subjectPrivacyRequests(std::string_view subjectHash) override {
        Statement s(db_, sql::kSelectSubjectPrivacyRequests);
        s.bind(1, subjectHash);
        std::vector<PrivacyRequest> out;
        while (s.step()) out.push_back(readPrivacyRequest(s));
        return out;
    }

    std::vector<PrivacyRequest> listPrivacyRequests(const PrivacyRequestQuery& q) override {
        Statement s(db_, sql::kListPrivacyRequests);
        s.bind(1, q.openOnly ? 1 : 0);
        if (q.overdueAt) s.bind(2, *q.overdueAt);
        else s.bindNull(2);
        s.bind(3, q.limit);
        std::vector<PrivacyRequest> out;
        while (s.step()) out.push_back(readPrivacyRequest(s));
        std::reverse(out.begin(), out.end());
        return out;
    }

    // ---- Event webhooks ----
    static otp::EventJob readEvent(const Statement& s) {
        otp::EventJob e;
        e.id = s.text(0);
        e.app = s.text(1);
        e.type = s.text(2);
        e.requestId = s.text(3);
        e.payload = s.text(4);
        e.createdAt = s.integer(5);
        e.attempts = static_cast<int>(s.integer(6));
        e.retryAt = s.integer(7);
        e.holder = s.text(8);
        e.leaseUntil = s.integer(9);
        e.lastError = s.text(10);
        return e;
    }
    static otp::EventEndpoint readEndpoint(const Statement& s) {
        return otp::EventEndpoint{s.text(0), static_cast<int>(s.integer(1)), s.integer(2), s.text(3)};
    }
    void enqueueEvent(const otp::EventJob& e) override {
        auto& s = stmt(eventEnqueue_, sql::kEnqueueEvent);
        s.bind(1, e.id);
        s.bind(2, e.app);
        s.bind(3, e.type);
        s.bind(4, e.requestId);
        s.bind(5, e.payload);
        s.bind(6, e.createdAt);
        s.bind(7, e.retryAt);
        s.step();
        s.reset();
    }
    std::vector<otp::EventJob> claimEvents(std::string_view holder, std::string_view nodePrefix, std::int64_t now,
                                           std::int64_t leaseUntil, int limit) override {
        return claimLeased<otp::EventJob>(
            stmt(eventOrphaned_, sql::kSelectOrphanedEvents), stmt(eventDue_, sql::kSelectDueEvents),
            stmt(eventClaim_, sql::kClaimEvent), readEvent, [](const otp::EventJob& e) { return e.id; }, holder,
            nodePrefix, now, leaseUntil, limit);
    }
    bool retryEvent(std::string_view id, std::string_view holder, int attempts, std::int64_t retryAt,
                    std::string_view error) override {
        auto& s = stmt(eventRetry_, sql::kRetryEvent);
        s.bind(1, id);
        s.bind(2, holder);
        s.bind(3, attempts);
        s.bind(4, retryAt);
        s.bind(5, error);
        s.step();
        const bool changed = sqlite3_changes(db_) == 1;
        s.reset();
        return changed;
    }
    bool finishEvent(std::string_view id, std::string_view holder) override {
        auto& s = stmt(eventFinish_, sql::kFinishEvent);
        s.bind(1, id);
        s.bind(2, holder);
        s.step();
        const bool changed = sqlite3_changes(db_) == 1;
        s.reset();
        return changed;
    }
    void insertEventAttempt(const otp::EventAttempt& a) override {
        auto& s = stmt(eventAttempt_, sql::kInsertEventAttempt);
        s.bind(1, a.eventId);
        s.bind(2, a.app);
        s.bind(3, a.type);
        s.bind(4, a.attempt);
        s.bind(5, a.at);
        s.bind(6, a.outcome);
        s.bind(7, a.statusCode);
        s.bind(8, a.durationMs);
        s.bind(9, a.error);
        s.step();
        s.reset();
    }
    std::vector<otp::EventAttempt> findEventAttempts(const otp::EventAttemptQuery& q) override {
        auto& s = q.eventId ? stmt(eventAttemptsOf_, sql::kSelectEventAttemptsOfEvent)
                            : stmt(eventAttempts_, sql::kSelectEventAttempts);
        if (q.app) s.bind(1, *q.app);
        else s.bindNull(1);
        s.bind(2, q.failedOnly ? 1 : 0);
        s.bind(3, q.limit);
        if (q.eventId) s.bind(4, *q.eventId);
        std::vector<otp::EventAttempt> out;
        while (s.step())
            out.push_back(otp::EventAttempt{s.integer(0), s.text(1), s.text(2), s.text(3),
                                            static_cast<int>(s.integer(4)), s.integer(5), s.text(6),
                                            static_cast<int>(s.integer(7)), s.integer(8), s.text(9)});
        s.reset();
        std::reverse(out.begin(), out.end());
        return out;
    }
    otp::EventFailure countEventFailure(std::string_view app, std::int64_t now, int maxFailures,
                                        std::string_view error) override {
        auto& ensure = stmt(eventEnsure_, sql::kEnsureEventEndpoint);
        ensure.bind(1, app);
        ensure.step();
        ensure.reset();
        auto& count = stmt(eventCount_, sql::kCountEventFailure);
        count.bind(1, app);
        count.bind(2, error);
        count.step();
        count.reset();
        auto& disable = stmt(eventDisable_, sql::kDisableEventEndpoint);
        disable.bind(1, app);
        disable.bind(2, now);
        disable.bind(3, maxFailures);
        disable.step();
        otp::EventFailure out;
        out.disabled = sqlite3_changes(db_) == 1;
        disable.reset();
        if (out.disabled) {
            auto& park = stmt(eventPark_, sql::kParkEvents);
            park.bind(1, app);
            park.step();
            park.reset();
        }
        auto& sel = stmt(eventEndpoint_, sql::kSelectEventEndpoint);
        sel.bind(1, app);
        if (sel.step()) out.failures = static_cast<int>(sel.integer(1));
        sel.reset();
        return out;
    }
    void clearEventFailures(std::string_view app) override {
        auto& s = stmt(eventClear_, sql::kClearEventFailures);
        s.bind(1, app);
        s.step();
        s.reset();
    }
    bool enableEvents(std::string_view app, std::int64_t now) override {
        auto& s = stmt(eventEnable_, sql::kEnableEventEndpoint);
        s.bind(1, app);
        s.step();
        const bool changed = sqlite3_changes(db_) == 1;
        s.reset();
        if (!changed) return false;
        auto& u = stmt(eventUnpark_, sql::kUnparkEvents);
        u.bind(1, app);
        u.bind(2, now);
        u.step();
        u.reset();
        return true;
    }
    std::vector<otp::EventEndpoint> listEventEndpoints() override {
        auto& s = stmt(eventEndpoints_, sql::kListEventEndpoints);
        std::vector<otp::EventEndpoint> out;
        while (s.step()) out.push_back(readEndpoint(s));
        s.reset();
        return out;
    }
    std::vector<otp::OtpRequest> findExpiredPending(std::int64_t now, int limit) override {
        auto& s = stmt(expiredPending_, sql::kSelectExpiredPending);
        s.bind(1, now);
        s.bind(2, limit);
        std::vector<otp::OtpRequest> out;
        while (s.step()) out.push_back(readRequestRow(s));
        s.reset();
        return out;
    }
    // ---- end of event webhooks ----

    // A statement prepared on first use and kept, reset for new bindings.
    // Claims up to `limit` leased jobs (deliveries, event webhooks) for `holder`: first those this
    // node's earlier holders left (the range [prefix, prefix with its last byte + 1)), then the due
    // ones; each is taken by a conditional UPDATE, so it is claimed only if it is still free or
    // still this node's, and two claimers never both get one. The statements bind: orphaned (low,
    // high, holder, limit), due (now, limit), claim (key, holder, leaseUntil, now, low, high).
    template <class Job, class Read, class Key>
    std::vector<Job> claimLeased(Statement& orphaned, Statement& due, Statement& claim, Read read, Key key,
                                 std::string_view holder, std::string_view nodePrefix, std::int64_t now,
                                 std::int64_t leaseUntil, int limit) {
        std::string low(nodePrefix), high(nodePrefix);
        if (!high.empty()) high.back() = static_cast<char>(high.back() + 1);
        std::vector<Job> candidates;
        if (!low.empty()) {
            orphaned.bind(1, low);
            orphaned.bind(2, high);
            orphaned.bind(3, holder);
            orphaned.bind(4, limit);
            while (orphaned.step()) candidates.push_back(read(orphaned));
            orphaned.reset();
        }
        if (static_cast<int>(candidates.size()) < limit) {
            due.bind(1, now);
            due.bind(2, limit - static_cast<int>(candidates.size()));
            while (due.step()) {
                auto j = read(due);
                if (std::none_of(candidates.begin(), candidates.end(), [&](const Job& c) { return key(c) == key(j); }))
                    candidates.push_back(std::move(j));
            }
            due.reset();
        }
        // No node prefix: a value no holder has, so only free jobs are claimed.
        const std::string rangeLow = low.empty() ? std::string("\x01") : low;
        const std::string rangeHigh = low.empty() ? std::string("\x01") : high;
        std::vector<Job> claimed;
        for (auto& j : candidates) {
            claim.bind(1, key(j));
            claim.bind(2, holder);
            claim.bind(3, leaseUntil);
            claim.bind(4, now);
            claim.bind(5, rangeLow);
            claim.bind(6, rangeHigh);
            claim.step();
            const bool won = claim.changes() == 1;
            claim.reset();
            if (won) claimed.push_back(std::move(j));
        }
        return claimed;
    }

    // Writes a row whole, as INSERT OR REPLACE would, without its statement
    // journal (see schema.hpp): the update, then the insert if no row matched.
    // `bind` binds the same parameters to both.
    template <class Bind>
    static void put(Statement& update, Statement& insert, const Bind& bind) {
        update.reset();
        bind(update);
        update.step();
        const bool found = update.changes() > 0;
        update.reset();
        if (found) return;
        insert.reset();
        bind(insert);
        insert.step();
        insert.reset();
    }

    Statement& stmt(std::unique_ptr<Statement>& slot, const char* text) {
        if (!slot) slot = std::make_unique<Statement>(db_, text);
        slot->reset();
        return *slot;
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
        s.bind(6, c.keyId);
        s.bind(7, c.clientIp);
        s.bind(8, c.status);
        s.step();
    }

    std::vector<CallRecord> findCalls(const CallQuery& q) override {
        auto& s = selectCalls_;
        s.reset();
        if (q.since) s.bind(1, *q.since);
        if (q.until) s.bind(2, *q.until);
        s.bind(3, q.limit);
        std::vector<CallRecord> out;
        while (s.step())
            out.push_back(CallRecord{s.integer(0), s.integer(1), s.text(2), s.integer(3), s.text(4), s.integer(5),
                                     s.text(6), s.text(7), static_cast<int>(s.integer(8))});
        s.reset();
        std::reverse(out.begin(), out.end());
        return out;
    }

    // ---- The HTTPS API: keys and Idempotency-Key records ----
    static ApiKey readApiKey(const Statement& s) {
        return ApiKey{s.text(0),    s.text(1),    s.text(2),    s.text(3),    s.text(4),
                      s.integer(5), s.integer(6), s.integer(7), s.integer(8), s.integer(9)};
    }
    void insertApiKey(const ApiKey& k) override {
        auto& s = stmt(apiInsert_, sql::kInsertApiKey);
        s.reset();
        s.bind(1, k.id);
        s.bind(2, k.app);
        s.bind(3, k.scopes);
        s.bind(4, k.secretHash);
        s.bind(5, k.note);
        s.bind(6, k.createdAt);
        s.bind(7, k.createdBy);
        s.bind(8, k.expiresAt);
        s.step();
        s.reset();
    }
    std::optional<ApiKey> findApiKey(std::string_view id) override {
        auto& s = stmt(apiSelect_, sql::kSelectApiKey);
        s.reset();
        s.bind(1, id);
        std::optional<ApiKey> out;
        if (s.step()) out = readApiKey(s);
        s.reset();
        return out;
    }
    std::vector<ApiKey> listApiKeys(int limit) override {
        auto& s = stmt(apiList_, sql::kListApiKeys);
        s.reset();
        s.bind(1, limit);
        std::vector<ApiKey> out;
        while (s.step()) out.push_back(readApiKey(s));
        s.reset();
        return out;
    }
    bool revokeApiKey(std::string_view id, std::int64_t now) override {
        auto& s = stmt(apiRevoke_, sql::kRevokeApiKey);
        s.reset();
        s.bind(1, id);
        s.bind(2, now);
        s.step();
        const bool changed = s.changes() > 0;
        s.reset();
        return changed;
    }
    void touchApiKey(std::string_view id, std::int64_t now) override {
        auto& s = stmt(apiTouch_, sql::kTouchApiKey);
        s.reset();
        s.bind(1, id);
        s.bind(2, now);
        s.step();
        s.reset();
    }
    std::optional<IdempotencyRecord> claimIdempotencyKey(std::string_view keyId, std::string_view idemKey,
                                                         std::string_view bodyHash, std::int64_t now,
                                                         std::int64_t windowStart) override {
        auto& prune = stmt(idemPrune_, sql::kPruneIdempotencyKeys);
        prune.reset();
        prune.bind(1, windowStart);
        prune.step();
        prune.reset();
        auto& stale = stmt(idemStale_, sql::kDeleteStaleIdempotencyKey);
        stale.reset();
        stale.bind(1, keyId);
        stale.bind(2, idemKey);
        stale.bind(3, windowStart);
        stale.step();
        stale.reset();
        auto& claim = stmt(idemClaim_, sql::kClaimIdempotencyKey);
        claim.reset();
        claim.bind(1, keyId);
        claim.bind(2, idemKey);
        claim.bind(3, bodyHash);
        claim.bind(4, now);
        claim.step();
        const bool taken = claim.changes() > 0;
        claim.reset();
        if (taken) return std::nullopt;
        auto& s = stmt(idemSelect_, sql::kSelectIdempotencyKey);
        s.reset();
        s.bind(1, keyId);
        s.bind(2, idemKey);
        IdempotencyRecord r;
        if (s.step()) r = IdempotencyRecord{s.text(0), s.integer(1), static_cast<int>(s.integer(2)), s.text(3)};
        s.reset();
        return r;
    }
    void completeIdempotencyKey(std::string_view keyId, std::string_view idemKey, int status,
                                std::string_view response) override {
        auto& s = stmt(idemComplete_, sql::kCompleteIdempotencyKey);
        s.reset();
        s.bind(1, keyId);
        s.bind(2, idemKey);
        s.bind(3, status);
        s.bind(4, response);
        s.step();
        s.reset();
    }
    void releaseIdempotencyKey(std::string_view keyId, std::string_view idemKey) override {
        auto& s = stmt(idemRelease_, sql::kReleaseIdempotencyKey);
        s.reset();
        s.bind(1, keyId);
        s.bind(2, idemKey);
        s.step();
        s.reset();
    }
    std::vector<ActivityDelivery> recentDeliveries(const ActivityQuery& q) override {
        auto& s = recentDeliveries_;
        s.reset();
        s.bind(1, q.since);
        s.bind(2, q.until);
        s.bind(3, q.limit);
        std::vector<ActivityDelivery> out;
        while (s.step()) out.push_back(ActivityDelivery{s.text(0), s.text(1), s.text(2), s.integer(3), s.integer(4)});
        s.reset();
        return out;
    }

    std::vector<ActivityEvent> recentEvents(const ActivityQuery& q) override {
        auto& s = recentEvents_;
        s.reset();
        s.bind(1, q.since);
        s.bind(2, q.until);
        s.bind(3, q.limit);
        std::vector<ActivityEvent> out;
        while (s.step()) out.push_back(ActivityEvent{s.text(0), s.text(1), s.integer(2)});
        s.reset();
        return out;
    }

    std::optional<otp::AuditRecord> lastAuditRecord(std::int64_t chain) override {
        if (chain != 0) return std::nullopt;
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
        s.bind(12, r.format);
        s.bind(13, r.subjectNonce);
        s.bind(14, r.subjectCommit);
        s.step();
    }

    std::vector<otp::AuditRecord> findAuditRecords(const otp::AuditQuery& q) override {
        if (q.chain && *q.chain != 0) return {};
        if (q.newest) {
            Statement s(db_, sql::kSelectAuditNewest);
            auto out = readAuditRecords(s, q);
            std::reverse(out.begin(), out.end());
            return out;
        }
        selectAudit_.reset();
        return readAuditRecords(selectAudit_, q);
    }

    std::vector<otp::AuditRecord> readAuditRecords(Statement& s, const otp::AuditQuery& q) {
        s.bind(1, q.chain ? q.afterSeq : 0);
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

    std::optional<otp::RateCounter> findRateCounter(std::string_view scope, std::string_view key) {
        auto& s = selectCounter_;
        s.reset();
        s.bind(1, scope);
        s.bind(2, key);
        if (!s.step()) return std::nullopt;
        otp::RateCounter c{s.integer(0), s.integer(1), s.integer(2)};
        s.reset();
        return c;
    }

    void putRateCounter(std::string_view scope, std::string_view key, const otp::RateCounter& c) {
        put(updateCounter_, insertCounter_, [&](Statement& s) {
            s.bind(1, scope);
            s.bind(2, key);
            s.bind(3, c.windowStart);
            s.bind(4, c.count);
            s.bind(5, c.lastAt);
        });
    }

    // Read, decided and counted inside the single writer: no other work runs
    // between the read and the write.
    bool countSendsIf(const std::vector<otp::RateKey>& keys, std::int64_t now, const RateDecision& admit) override {
        std::vector<std::optional<otp::RateCounter>> found;
        found.reserve(keys.size());
        for (const auto& k : keys) found.push_back(findRateCounter(k.scope, k.key));
        if (!admit(found)) return false;
        for (std::size_t i = 0; i < keys.size(); ++i)
            putRateCounter(keys[i].scope, keys[i].key, otp::countOneSend(found[i], keys[i].window, now));
        return true;
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

    std::int64_t countSubjectFailure(std::string_view app, std::string_view subjectHash) override {
        for (auto [slot, text] : {std::pair{&ensureFailures_, sql::kEnsureSubjectFailures},
                                  std::pair{&countFailure_, sql::kCountSubjectFailure}}) {
            auto& s = stmt(*slot, text);
            s.bind(1, app);
            s.bind(2, subjectHash);
            s.step();
            s.reset();
        }
        auto f = findSubjectFailures(app, subjectHash);
        if (!f) throw std::runtime_error("a subject's failure count vanished while it was counted");
        return f->failures;
    }

    void lockSubject(std::string_view app, std::string_view subjectHash, std::int64_t until) override {
        auto& s = stmt(lockSubject_, sql::kLockSubject);
        s.bind(1, app);
        s.bind(2, subjectHash);
        s.bind(3, until);
        s.step();
        s.reset();
    }

    void clearSubjectFailures(std::string_view app, std::string_view subjectHash) override {
        auto& s = deleteFailures_;
        s.reset();
        s.bind(1, app);
        s.bind(2, subjectHash);
        s.step();
        s.reset();
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

    void putDeliveryJob(const otp::DeliveryJob& j) override {
        put(stmt(updateJob_, sql::kUpdateDeliveryJob), stmt(insertJob_, sql::kInsertDeliveryJob), [&](Statement& s) {
            s.bind(1, j.requestId);
            s.bind(2, j.send);
            s.bind(3, j.attempts);
            s.bind(4, j.retryAt);
            s.bind(5, j.holder);
            s.bind(6, j.leaseUntil);
            s.bind(7, j.expiresAt);
            s.bind(8, j.createdAt);
            s.bind(9, j.lastError);
        });
    }

    std::vector<otp::DeliveryJob> claimDeliveryJobs(std::string_view holder, std::string_view nodePrefix,
                                                    std::int64_t now, std::int64_t leaseUntil, int limit) override {
        return claimLeased<otp::DeliveryJob>(
            stmt(orphanedJobs_, sql::kSelectOrphanedJobs), stmt(dueJobs_, sql::kSelectDueJobs),
            stmt(claimJob_, sql::kClaimDeliveryJob), readJob, [](const otp::DeliveryJob& j) { return j.requestId; },
            holder, nodePrefix, now, leaseUntil, limit);
    }

    bool renewDeliveryLease(std::string_view requestId, int send, std::string_view holder,
                            std::int64_t leaseUntil) override {
        auto& s = stmt(renewJob_, sql::kRenewDeliveryLease);
        s.bind(1, requestId);
        s.bind(2, send);
        s.bind(3, holder);
        s.bind(4, leaseUntil);
        s.step();
        s.reset();
        return sqlite3_changes(db_) == 1;
    }

    bool recordDeliveryRetry(std::string_view requestId, int send, std::string_view holder, int attempts,
                             std::int64_t retryAt, std::int64_t leaseUntil, std::string_view error) override {
        auto& s = stmt(retryJob_, sql::kRecordDeliveryRetry);
        s.bind(1, requestId);
        s.bind(2, send);
        s.bind(3, holder);
        s.bind(4, attempts);
        s.bind(5, retryAt);
        s.bind(6, leaseUntil);
        s.bind(7, error);
        s.step();
        s.reset();
        return sqlite3_changes(db_) == 1;
    }

    bool finishDeliveryJob(std::string_view requestId, int send, std::string_view holder) override {
        auto& s = stmt(finishJob_, sql::kFinishDeliveryJob);
        s.bind(1, requestId);
        s.bind(2, send);
        s.bind(3, holder);
        s.step();
        s.reset();
        return sqlite3_changes(db_) == 1;
    }

    void endDeliveryJob(std::string_view requestId) override {
        auto& s = stmt(endJob_, sql::kEndDeliveryJob);
        s.bind(1, requestId);
        s.step();
        s.reset();
    }

    std::optional<otp::DeliveryJob> findDeliveryJob(std::string_view requestId) override {
        auto& s = stmt(selectJob_, sql::kSelectDeliveryJob);
        s.bind(1, requestId);
        std::optional<otp::DeliveryJob> j;
        if (s.step()) j = readJob(s);
        s.reset();
        return j;
    }

    std::vector<otp::DeliveryJob> listDeliveryJobs(int limit) override {
        auto& s = stmt(listJobs_, sql::kListDeliveryJobs);
        s.bind(1, limit);
        std::vector<otp::DeliveryJob> out;
        while (s.step()) out.push_back(readJob(s));
        s.reset();
        return out;
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
        std::reverse(out.begin(), out.end());
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
        s.bind(15, a.provider);
        s.bind(16, a.region);
        s.step();
    }

    std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& q) override {
        auto& s = q.requestId ? stmt(requestDeliveries_, sql::kSelectDeliveriesOfRequest) : selectDeliveries_;
        s.reset();
        if (q.requestId) s.bind(1, *q.requestId);
        if (q.since) s.bind(2, *q.since);
        if (q.until) s.bind(3, *q.until);
        s.bind(4, q.limit);
        std::vector<otp::DeliveryAttempt> out;
        while (s.step()) out.push_back(readDelivery(s));
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
        // Subject lookups go through (app, subject_hash) for the apps in `apps`.
        auto& app = stmt(ensureApp_, sql::kEnsureApp);
        app.bind(1, r.app);
        app.bind(2, r.createdAt);
        app.step();
        app.reset();
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

    bool approveRequest(std::string_view id, int send, const crypto::Digest& codeHash, std::int64_t now) override {
        auto& s = stmt(approve_, sql::kApproveRequest);
        s.bind(1, id);
        s.bind(2, send);
        s.bind(3, now);
        s.bindBlob(4, codeHash.data(), codeHash.size());
        s.step();
        const bool applied = s.changes() == 1;
        s.reset();
        return applied;
    }

    std::optional<WrongCode> countWrongCode(std::string_view id, std::int64_t now) override {
        auto& s = stmt(wrongCode_, sql::kCountWrongCode);
        s.bind(1, id);
        s.bind(2, now);
        s.step();
        const bool applied = s.changes() == 1;
        s.reset();
        if (!applied) return std::nullopt;
        auto& r = stmt(attempts_, sql::kSelectRequestAttempts);
        r.bind(1, id);
        if (!r.step()) throw std::runtime_error("a request vanished while its attempt was counted");
        WrongCode w{static_cast<int>(r.integer(0)), r.text(1) == "locked"};
        r.reset();
        return w;
    }

    bool finishRequest(std::string_view id, std::optional<int> send, otp::Status to, std::int64_t now,
                       std::string_view failure) override {
        auto& s = stmt(finish_, sql::kFinishRequest);
        s.bind(1, id);
        if (send) s.bind(2, *send);
        else s.bindNull(2);
        s.bind(3, std::string_view(otp::statusName(to)));
        s.bind(4, now);
        s.bind(5, failure);
        s.step();
        const bool applied = s.changes() == 1;
        s.reset();
        return applied;
    }

    bool replaceCode(std::string_view id, int send, const crypto::Digest& codeHash, std::int64_t expiresAt,
                     std::int64_t now) override {
        auto& s = stmt(replaceCode_, sql::kReplaceCode);
        s.bind(1, id);
        s.bind(2, send);
        s.bindBlob(3, codeHash.data(), codeHash.size());
        s.bind(4, expiresAt);
        s.bind(5, now);
        s.step();
        const bool applied = s.changes() == 1;
        s.reset();
        return applied;
    }

    bool switchChannel(std::string_view id, int send, std::string_view channel, std::int64_t now) override {
        auto& s = stmt(switchChannel_, sql::kSwitchChannel);
        s.bind(1, id);
        s.bind(2, send);
        s.bind(3, channel);
        s.bind(4, now);
        s.step();
        const bool applied = s.changes() == 1;
        s.reset();
        return applied;
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
        r.format = static_cast<int>(s.integer(11));
        r.subjectNonce = s.text(12);
        r.subjectCommit = s.text(13);
        return r;
    }

    static void bindHash(Statement& s, int i, const std::optional<crypto::Digest>& h) {
        if (h) s.bindBlob(i, h->data(), h->size());
        else s.bindNull(i);
    }

    static otp::DeliveryAttempt readDelivery(const Statement& s) {
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
        a.provider = s.text(18);
        a.region = s.text(19);
        return a;
    }

    static otp::DeliveryJob readJob(const Statement& s) {
        otp::DeliveryJob j;
        j.requestId = s.text(0);
        j.send = static_cast<int>(s.integer(1));
        j.attempts = static_cast<int>(s.integer(2));
        j.retryAt = s.integer(3);
        j.holder = s.text(4);
        j.leaseUntil = s.integer(5);
        j.expiresAt = s.integer(6);
        j.createdAt = s.integer(7);
        j.lastError = s.text(8);
        return j;
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
        auto r = readRequestRow(s);
        s.reset();
        return r;
    }

    static otp::OtpRequest readRequestRow(const Statement& s) {
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
        return r;
    }

    sqlite3* db_;
    Statement insertRun_, lastRun_;
    std::unique_ptr<Statement> purges_[std::size(sql::kPurge)][4], counts_[std::size(sql::kPurge)][4];
    std::unique_ptr<Statement> flagsSel_, ensureApp_, requestDeliveries_;
    std::unique_ptr<Statement> ensureFailures_, countFailure_, lockSubject_, approve_, wrongCode_, attempts_, finish_,
        replaceCode_, switchChannel_;
    // The HTTPS API's statements.
    std::unique_ptr<Statement> apiInsert_, apiSelect_, apiList_, apiRevoke_, apiTouch_, idemPrune_, idemStale_,
        idemClaim_, idemSelect_, idemComplete_, idemRelease_;
    std::unique_ptr<Statement> updateJob_, insertJob_, orphanedJobs_, dueJobs_, claimJob_, renewJob_, retryJob_, finishJob_, endJob_,
        selectJob_, listJobs_;
    std::unique_ptr<Statement> eventEnqueue_, eventOrphaned_, eventDue_, eventClaim_, eventRetry_, eventFinish_,
        eventAttempt_, eventAttempts_, eventAttemptsOf_, eventEnsure_, eventCount_, eventDisable_, eventPark_,
        eventEndpoint_, eventClear_, eventEnable_, eventUnpark_, eventEndpoints_, expiredPending_;
    Statement select_, newest_, insert_, insertDelivery_, selectDeliveries_, updateStatus_, selectOptOut_,
        insertOptOut_, deleteOptOut_, listOptOuts_, selectCounter_, updateCounter_, insertCounter_, selectFailures_,
        deleteFailures_, lastAudit_, insertAudit_, selectAudit_,
        countFraud_, fraudSeen_, updateFraud_, insertFraud_, insertCall_, selectCalls_, recentDeliveries_, recentEvents_;
    bool anchorWarned_ = false;  // the unsealed-anchor warning is logged once per connection
};

class SqlcipherStore final : public Store {
public:
    explicit SqlcipherStore(SqlcipherOptions options)
        : path_(std::move(options.path)),
          maxBatch_(options.maxBatch),
          maxQueued_(options.maxQueued),
          synchronousFull_(options.synchronousFull),
          cacheMiB_(options.cacheMiB),
          key_(std::move(options.key)) {
        open(key_);
        writer_ = std::thread([this] { run(); });
        checkpointer_ = std::thread([this] { runCheckpointer(); });
    }

    ~SqlcipherStore() override {
        close();
    }

    void submit(Work work, Done done) override {
        Item item{std::move(work), std::move(done), nullptr};
        switch (enqueue(item, /*bounded=*/true)) {
            case Enqueued::Yes: break;
            case Enqueued::Closed:
                if (item.done) item.done(closedError());
                break;
            case Enqueued::Full:
                if (item.done) item.done(std::make_exception_ptr(StoreBusy()));
                break;
        }
    }

    void submitReserved(Work work, Done done) override {
        Item item{std::move(work), std::move(done), nullptr};
        if (enqueue(item, /*bounded=*/false) != Enqueued::Yes && item.done) item.done(closedError());
    }

    // A quarter of the queue stays for the work of calls already started.
    bool saturated() const override {
        return queued_.load(std::memory_order_relaxed) >= maxQueued_ - maxQueued_ / 4;
    }

    std::size_t queueDepth() const override { return queued_.load(std::memory_order_relaxed); }

    void submitRedoable(Work work, Done done) override {
        Item item{std::move(work), std::move(done), nullptr};
        item.redoable = true;
        // Retention batches run one at a time: like reserved work, they are
        // queued even when the queue is full, so a flood cannot stop retention.
        if (enqueue(item, /*bounded=*/false) != Enqueued::Yes && item.done) item.done(closedError());
    }

    void checkpoint(Done done) override {
        Item item;
        item.onConnection = [this, done] {
            std::exception_ptr error;
            if (!db_) {
                error = unusableError();
            } else {
                // While a backup holds its snapshot a TRUNCATE checkpoint would
                // wait for it (busy timeout) and still not truncate: do what can be done.
                const char* sql = maintenance_ ? "PRAGMA wal_checkpoint(PASSIVE)" : "PRAGMA wal_checkpoint(TRUNCATE)";
                // Two checkpoints at once: one of them would fail with SQLITE_BUSY.
                std::lock_guard checkpointing(checkpointMutex_);
                char* err = nullptr;
                if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK)
                    error = std::make_exception_ptr(
                        std::runtime_error(std::string("checkpoint failed: ") + (err ? err : "?")));
                sqlite3_free(err);
            }
            if (done) done(error);
        };
        if (enqueue(item, false) != Enqueued::Yes && done) done(closedError());
    }

    void close() override {
        {
            std::lock_guard lock(mutex_);
            if (stopping_ && !writer_.joinable()) return;
            stopping_ = true;
        }
        wake_.notify_all();
        if (writer_.joinable()) writer_.join();
        {
            std::lock_guard lock(checkpointWakeMutex_);
            checkpointStop_ = true;
        }
        checkpointWake_.notify_all();
        if (checkpointer_.joinable()) checkpointer_.join();
        if (db_) {
            sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
            closeConnection();
        }
    }

    std::string description() const override { return path_; }

    void rekey(SecretBytes newKey, std::function<void(RekeyResult)> done) override {
        // std::function needs a copyable callable; the key itself is never copied.
        auto key = std::make_shared<SecretBytes>(std::move(newKey));
        Item item;
        item.onConnection = [this, key, done] {
            RekeyResult result = rekeyNow(*key);
            key->wipe();
            if (done) done(std::move(result));
        };
        if (enqueue(item, false) != Enqueued::Yes && done) done(RekeyResult{RekeyStatus::OldKey, "the store is closed"});
    }

    BackupResult backup(const std::string& target, const BackupProgress& progress) override {
        MaintenanceSlot slot(maintenance_);
        if (!slot.taken()) return {BackupStatus::Busy, 0, "a key rotation or another backup is running"};
        SecretBytes key = currentKey();
        std::string error;
        // The copy has the store's page size: the backup copies pages as they are.
        Connection source = connect(path_, key, SQLITE_OPEN_READONLY, error, pageSize_);
        if (!source) return {BackupStatus::Failed, 0, error};
        // One read transaction for the whole copy: the backup reads one
        // snapshot while the writer goes on committing to the WAL. Without it
        // every commit in between would restart the copy from the first page.
        if (!execQuiet(source.db, "BEGIN") || !execQuiet(source.db, "SELECT count(*) FROM sqlite_master"))
            return {BackupStatus::Failed, 0, "cannot start a read transaction: " + errorOf(source.db)};
        Connection copy = connect(target, key, SQLITE_OPEN_READWRITE, error, pageSize_);
        if (!copy) return {BackupStatus::Failed, 0, error};
        sqlite3_backup* b = sqlite3_backup_init(copy.db, "main", source.db, "main");
        if (!b) return {BackupStatus::Failed, 0, "cannot start the backup: " + errorOf(copy.db)};
        constexpr int kPagesPerStep = 512;
        int rc = SQLITE_OK;
        int retries = 0;
        std::int64_t total = 0;
        for (;;) {
            rc = sqlite3_backup_step(b, kPagesPerStep);
            total = sqlite3_backup_pagecount(b);
            if (progress && (rc == SQLITE_OK || rc == SQLITE_DONE))
                progress(total - sqlite3_backup_remaining(b), total);
            if (rc == SQLITE_DONE) break;
            if (rc == SQLITE_OK) continue;
            if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && ++retries < 500) {
                sqlite3_sleep(10);
                continue;
            }
            break;
        }
        const int finished = sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE || finished != SQLITE_OK)
            return {BackupStatus::Failed, 0, "the copy failed: " + errorOf(copy.db)};
        execQuiet(source.db, "COMMIT");
        source.reset();
        // A file of its own: the copy leaves WAL mode, so it needs no -wal or
        // -shm next to it (the daemon switches a restored file back to WAL).
        if (queryText(copy.db, "PRAGMA journal_mode = DELETE") != "delete")
            return {BackupStatus::Failed, 0, "cannot take the copy out of WAL mode: " + errorOf(copy.db)};
        copy.reset();
        const Probe check = probe(target, key, /*integrity=*/true);
        if (!check.opens) return {BackupStatus::Failed, 0, "the copy does not open with the store key: " + check.error};
        if (check.integrity != "ok")
            return {BackupStatus::Failed, 0, "the copy fails integrity_check: " + check.integrity};
        return {BackupStatus::Done, total, {}};
    }

    // What a fresh connection with `key` finds: for checking a rekey, a copy,
    // and a pending key at start.
    struct Probe {
        bool opens = false;
        std::string integrity;  // the first line of integrity_check, when asked for and the key opens it
        std::string error;      // why it does not open
    };
    static Probe probe(const std::string& path, const SecretBytes& key, bool integrity) {
        Probe p;
        Connection c = connect(path, key, SQLITE_OPEN_READWRITE, p.error);
        if (!c) return p;
        p.opens = true;
        if (integrity) {
            p.integrity = queryText(c.db, "PRAGMA integrity_check");
            if (p.integrity.empty()) p.integrity = "integrity_check failed: " + errorOf(c.db);
        }
        return p;
    }

private:
    static constexpr std::size_t kRawKeyBytes = 32;
    // 4 KiB cipher pages: each page read from disk is decrypted and its HMAC
    // checked, so four times fewer, shallower pages cost less CPU per call and
    // per purged row than SQLCipher 3's default 1 KiB (bench/README.md).
    static constexpr int kPageSize = 4096;
    static constexpr int kLegacyPageSize = 1024;

    struct Item {
        Work work;
        Done done;
        // Instead of work: runs on the writer's connection outside any
        // transaction, between batches (a checkpoint, a rekey), and reports
        // through a callback of its own.
        std::function<void()> onConnection;
        bool redoable = false;  // submitRedoable
    };

    // A connection of its own for maintenance, closed with its scope.
    struct Connection {
        sqlite3* db = nullptr;
        Connection() = default;
        Connection(const Connection&) = delete;
        Connection& operator=(const Connection&) = delete;
        Connection(Connection&& o) noexcept : db(std::exchange(o.db, nullptr)) {}
        Connection& operator=(Connection&& o) noexcept {
            if (this != &o) {
                reset();
                db = std::exchange(o.db, nullptr);
            }
            return *this;
        }
        ~Connection() { reset(); }
        void reset() {
            if (db) sqlite3_close(db);
            db = nullptr;
        }
        explicit operator bool() const { return db != nullptr; }
    };

    // At most one rekey or backup at a time.
    class MaintenanceSlot {
    public:
        explicit MaintenanceSlot(std::atomic<bool>& flag) : flag_(flag), taken_(!flag.exchange(true)) {}
        MaintenanceSlot(const MaintenanceSlot&) = delete;
        MaintenanceSlot& operator=(const MaintenanceSlot&) = delete;
        ~MaintenanceSlot() {
            if (taken_) flag_ = false;
        }
        [[nodiscard]] bool taken() const { return taken_; }

    private:
        std::atomic<bool>& flag_;
        bool taken_;
    };

    static std::string errorOf(sqlite3* db) { return db ? sqlite3_errmsg(db) : "out of memory"; }

    static bool execQuiet(sqlite3* db, const char* sql) {
        return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
    }

    // The first column of the first row, or "" on an error.
    static std::string queryText(sqlite3* db, const char* sql) {
        sqlite3_stmt* s = nullptr;
        std::string out;
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
            const auto* p = sqlite3_column_text(s, 0);
            out = p ? reinterpret_cast<const char*>(p) : "";
        }
        sqlite3_finalize(s);
        return out;
    }

    static bool applyKey(sqlite3* db, const SecretBytes& key, int pageSize) {
        if (key.size() != kRawKeyBytes) return false;
        // The raw-key form: no passphrase derivation. The statement text is wiped after use.
        SecretString pragma("PRAGMA key = \"x'" + crypto::hex(key.data(), key.size()) + "'\"");
        if (sqlite3_exec(db, pragma.str().c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return false;
        const std::string size = "PRAGMA cipher_page_size = " + std::to_string(pageSize);
        return sqlite3_exec(db, size.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    }

    // The cipher page size of a database, which nothing in the file says
    // (every page, the first included, is encrypted and authenticated with
    // it): a store made by this version has kPageSize, one made before has
    // SQLCipher 3's default, kLegacyPageSize. A page read with the wrong size
    // fails its HMAC like a wrong key, so the sizes are tried in turn; a new,
    // empty file opens with the first.
    static constexpr std::array<int, 2> kPageSizes{kPageSize, kLegacyPageSize};

    // Opens an existing database with `key` and reads its schema, which fails
    // on a wrong key. `pageSize` 0 finds the page size (and reports it in
    // `found`); otherwise only that size is tried. Returns an empty
    // Connection and sets `error` on failure.
    static Connection connect(const std::string& path, const SecretBytes& key, int flags, std::string& error,
                              int pageSize = 0, int* found = nullptr) {
        for (const int size : kPageSizes) {
            if (pageSize != 0 && size != pageSize) continue;
            Connection c;
            if (sqlite3_open_v2(path.c_str(), &c.db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
                error = "cannot open " + path + ": " + errorOf(c.db);
                return Connection{};
            }
            sqlite3_busy_timeout(c.db, 5000);
            if (!applyKey(c.db, key, size)) {
                error = "cannot apply the key: " + errorOf(c.db);
                return Connection{};
            }
            if (execQuiet(c.db, "SELECT count(*) FROM sqlite_master")) {
                if (found) *found = size;
                return c;
            }
            error = errorOf(c.db);
            if ((sqlite3_extended_errcode(c.db) & 0xff) != SQLITE_NOTADB) return Connection{};
        }
        return Connection{};
    }

    // Opens the writer's connection: WAL, pragmas, migrations, prepared statements.
    void open(const SecretBytes& key) {
        if (key.size() != kRawKeyBytes) throw std::runtime_error("the store key must be 256 bits");
        // A wrong key or a foreign file fails on the first read of the schema
        // with "not a database" at every page size; anything else (a full disk
        // that cannot take the WAL index, an I/O error) is reported as what it is.
        for (const int size : kPageSizes) {
            if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                nullptr) != SQLITE_OK) {
                const std::string message = errorOf(db_);
                closeConnection();
                throw std::runtime_error("cannot open database " + path_ + ": " + message);
            }
            if (!applyKey(db_, key, size)) {
                const std::string message = errorOf(db_);
                closeConnection();
                throw std::runtime_error("cannot apply the store key: " + message);
            }
            if (execQuiet(db_, "SELECT count(*) FROM sqlite_master")) {
                pageSize_ = size;
                break;
            }
            const bool notADatabase = (sqlite3_extended_errcode(db_) & 0xff) == SQLITE_NOTADB;
            const std::string message = errorOf(db_);
            closeConnection();
            if (!notADatabase) throw std::runtime_error("cannot open database " + path_ + ": " + message);
        }
        if (!db_)
            throw std::runtime_error("cannot open database " + path_ +
                                     ": the store key does not match (or the file is not a twofactor database)");
        if (pageSize_ != kPageSize)
            log::info("the store has " + std::to_string(pageSize_ / 1024) +
                      " KiB cipher pages (made by an older version); it works as it is, and twofactord(8) says how to "
                      "rewrite it with " + std::to_string(kPageSize / 1024) + " KiB pages, which cost less per call");
        try {
            exec(db_, "PRAGMA journal_mode = WAL");
            exec(db_, synchronousFull_ ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
            exec(db_, "PRAGMA foreign_keys = ON");
            exec(db_, "PRAGMA secure_delete = ON");
            exec(db_, "PRAGMA temp_store = MEMORY");
            // Decrypted pages the writer keeps ([store] cache_size). A miss is a
            // read from the kernel's page cache and a 4 KiB decrypt, not a disk
            // read: the working set of a send is the right edge of the
            // time-ordered indexes plus one leaf of each random-keyed one, which
            // no cache this size holds for a large store anyway.
            exec(db_, ("PRAGMA cache_size = -" + std::to_string(cacheMiB_ * 1024)).c_str());
            // Replaces SQLite's automatic checkpoint (see walHook).
            sqlite3_wal_hook(db_, &SqlcipherStore::walHook, this);
            sqlite3_busy_timeout(db_, 5000);
            migrate();
            txn_ = std::make_unique<SqlcipherTransaction>(db_);
            // Prepared once: the writer runs these for every work item.
            begin_ = std::make_unique<Statement>(db_, "BEGIN IMMEDIATE");
            commit_ = std::make_unique<Statement>(db_, "COMMIT");
            savepoint_ = std::make_unique<Statement>(db_, "SAVEPOINT item");
            release_ = std::make_unique<Statement>(db_, "RELEASE item");
            rollbackTo_ = std::make_unique<Statement>(db_, "ROLLBACK TO item");
            syncNormal_ = std::make_unique<Statement>(db_, "PRAGMA synchronous = NORMAL");
            syncFull_ = std::make_unique<Statement>(db_, "PRAGMA synchronous = FULL");
        } catch (...) {
            closeConnection();
            throw;
        }
    }

    void closeConnection() {
        txn_.reset();
        begin_.reset();
        commit_.reset();
        savepoint_.reset();
        release_.reset();
        rollbackTo_.reset();
        syncNormal_.reset();
        syncFull_.reset();
        sqlite3_close(db_);
        db_ = nullptr;
    }

    SecretBytes currentKey() {
        std::lock_guard lock(keyMutex_);
        return key_.clone();
    }

    // Checkpoints off the commit path. SQLite's automatic checkpoint runs
    // inside the commit that takes the WAL past kCheckpointPages, so that
    // commit, and every call waiting on its batch, also waits for the WAL to
    // be copied into the database and the database fsynced: the tail of the
    // commit latency. Instead the writer's WAL hook only wakes a thread that
    // checkpoints on a connection of its own, PASSIVE, so neither the writer
    // nor a reader (a backup) ever waits for it; the writer restarts the WAL
    // from its beginning at the first commit after a complete checkpoint.
    // Durability is unchanged: a commit is durable by its own WAL fsync.
    static constexpr int kCheckpointPages = 1000;  // SQLite's default
    // Under sustained writes the background checkpoints chase the WAL's end
    // and the WAL may never restart; past this size the writer checkpoints
    // once itself, as SQLite would have, which bounds the file.
    static constexpr int kWalBoundPages = 4 * kCheckpointPages;

    static int walHook(void* self, sqlite3* db, const char*, int pages) {
        auto* store = static_cast<SqlcipherStore*>(self);
        if (pages >= kCheckpointPages) store->wakeCheckpointer();
        if (pages >= kWalBoundPages) {
            std::lock_guard checkpointing(store->checkpointMutex_);
            sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        }
        return SQLITE_OK;
    }

    void wakeCheckpointer() {
        {
            std::lock_guard lock(checkpointWakeMutex_);
            if (checkpointDue_) return;
            checkpointDue_ = true;
        }
        checkpointWake_.notify_one();
    }

    void runCheckpointer() {
        std::unique_lock wake(checkpointWakeMutex_);
        for (;;) {
            checkpointWake_.wait(wake, [this] { return checkpointDue_ || checkpointStop_; });
            if (checkpointStop_) break;
            checkpointDue_ = false;
            wake.unlock();
            checkpointOnce();
            wake.lock();
        }
        wake.unlock();
        std::lock_guard lock(checkpointMutex_);
        checkpointDb_.reset();
    }

    void checkpointOnce() {
        std::lock_guard lock(checkpointMutex_);
        if (checkpointPaused_) return;
        if (!checkpointDb_) {
            std::string error;
            checkpointDb_ = connect(path_, currentKey(), SQLITE_OPEN_READWRITE, error, pageSize_);
            if (!checkpointDb_) {
                // The next commit past the mark tries again; the WAL only grows meanwhile.
                log::warning("cannot open the store for a checkpoint: " + error);
                return;
            }
            execQuiet(checkpointDb_.db, synchronousFull_ ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
        }
        int logged = 0;
        int copied = 0;
        const int rc =
            sqlite3_wal_checkpoint_v2(checkpointDb_.db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &logged, &copied);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            log::warning("checkpoint failed: " + errorOf(checkpointDb_.db));
            checkpointDb_.reset();
        }
    }

    // Closes the checkpointer's connection and keeps it closed for a scope.
    class CheckpointerPause {
    public:
        explicit CheckpointerPause(SqlcipherStore& store) : store_(store) {
            std::lock_guard lock(store_.checkpointMutex_);
            store_.checkpointDb_.reset();
            store_.checkpointPaused_ = true;
        }
        CheckpointerPause(const CheckpointerPause&) = delete;
        CheckpointerPause& operator=(const CheckpointerPause&) = delete;
        ~CheckpointerPause() {
            std::lock_guard lock(store_.checkpointMutex_);
            store_.checkpointPaused_ = false;
        }

    private:
        SqlcipherStore& store_;
    };

    enum class Enqueued { Yes, Closed, Full };
    // Queues an item (moving it only then). A bounded item is refused when
    // the queue already holds maxQueued_ items.
    Enqueued enqueue(Item& item, bool bounded) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return Enqueued::Closed;
            if (bounded && queue_.size() >= maxQueued_) return Enqueued::Full;
            queue_.push_back(std::move(item));
            queued_.store(queue_.size(), std::memory_order_relaxed);
        }
        wake_.notify_one();
        return Enqueued::Yes;
    }

    static std::exception_ptr closedError() {
        return std::make_exception_ptr(std::runtime_error("the store is closed"));
    }
    static std::exception_ptr unusableError() {
        return std::make_exception_ptr(
            std::runtime_error("the store is unusable: after a failed key rotation neither key opens the database"));
    }

    // On the writer thread, between batches. SQLCipher 3.4.1 cannot rekey in
    // WAL mode, and its PRAGMA rekey reports success even when the rewrite
    // rolled back, leaving the connection writing with the new key: so the
    // database leaves WAL mode first, the writer's connection is closed after
    // the rekey whatever it said, fresh connections find out which key opens
    // the file, and the writer reopens with that one.
    RekeyResult rekeyNow(const SecretBytes& newKey) {
        if (!db_) return {RekeyStatus::NoKey, "the store is unusable since an earlier key rotation failed"};
        if (newKey.size() != kRawKeyBytes)
            return {RekeyStatus::OldKey, "the new key is not 256 bits; nothing was changed"};
        MaintenanceSlot slot(maintenance_);
        if (!slot.taken()) return {RekeyStatus::Busy, "a backup is running"};
        // The database leaves WAL mode only when no other connection has it open.
        CheckpointerPause pause(*this);
        try {
            Statement checkpoint(db_, "PRAGMA wal_checkpoint(TRUNCATE)");
            if (!checkpoint.step() || checkpoint.integer(0) != 0)
                return {RekeyStatus::OldKey,
                        "the WAL could not be checkpointed (another process is reading the database); nothing was "
                        "changed"};
        } catch (const std::exception& e) {
            return {RekeyStatus::OldKey, std::string("the WAL could not be checkpointed: ") + e.what() +
                                             "; nothing was changed"};
        }
        if (queryText(db_, "PRAGMA journal_mode = DELETE") != "delete") {
            const std::string why = errorOf(db_);
            execQuiet(db_, "PRAGMA journal_mode = WAL");
            return {RekeyStatus::OldKey, "the database could not leave WAL mode (" + why +
                                             "; is another process holding it open?); nothing was changed"};
        }
        std::string rekeyError;
        {
            SecretString pragma("PRAGMA rekey = \"x'" + crypto::hex(newKey.data(), newKey.size()) + "'\"");
            if (!execQuiet(db_, pragma.str().c_str())) rekeyError = errorOf(db_);
        }
        closeConnection();

        SecretBytes oldKey = currentKey();
        const Probe withNew = probe(path_, newKey, /*integrity=*/true);
        const Probe withOld = probe(path_, oldKey, /*integrity=*/false);
        RekeyResult result;
        const SecretBytes* working = nullptr;
        if (withNew.opens && !withOld.opens && withNew.integrity == "ok") {
            result = {RekeyStatus::Rotated,
                      "verified: the new key opens the database and integrity_check says ok; the old key no longer "
                      "opens it"};
            working = &newKey;
        } else if (withOld.opens) {
            result = {RekeyStatus::OldKey,
                      "the rekey did not take effect" + (rekeyError.empty() ? "" : " (" + rekeyError + ")") +
                          (withNew.opens ? "; both keys open the database" : "") +
                          "; the database still opens with the old key"};
            working = &oldKey;
        } else if (withNew.opens) {
            result = {RekeyStatus::NewKeyOnly,
                      "the database opens with the new key only, but integrity_check reports: " + withNew.integrity};
            working = &newKey;
        } else {
            result = {RekeyStatus::NoKey, "the database opens with neither key (new key: " + withNew.error +
                                              "; old key: " + withOld.error + ")"};
        }
        if (working) {
            try {
                open(*working);
            } catch (const std::exception& e) {
                log::error(std::string("cannot reopen the store after a key rotation: ") + e.what());
                return {RekeyStatus::NoKey, result.detail + "; reopening it failed: " + e.what()};
            }
        }
        if (working == &newKey) {
            std::lock_guard lock(keyMutex_);
            key_ = newKey.clone();
        }
        return result;
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
                if (queue_.front().onConnection) {
                    auto task = std::move(queue_.front().onConnection);
                    queue_.pop_front();
                    queued_.store(queue_.size(), std::memory_order_relaxed);
                    lock.unlock();
                    task();
                    continue;
                }
                while (!queue_.empty() && batch.size() < maxBatch_ && !queue_.front().onConnection) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                queued_.store(queue_.size(), std::memory_order_relaxed);
            }
            runBatch(batch, errors);
            for (std::size_t i = 0; i < batch.size(); ++i)
                if (batch[i].done) batch[i].done(errors[i]);
            batch.clear();
            errors.clear();
        }
    }

    // One transaction for the whole batch. The items run one after the other
    // without savepoints first: a savepoint per item made SQLite copy every
    // page an item touched to the statement journal, and SQLCipher encrypts
    // and HMACs each such copy (mode 7): ~40 page encryptions a send, three
    // times the pages the commit writes. When an item fails, the whole
    // transaction rolls back and the batch runs again with each item in its
    // own savepoint, the failed one left out with its error: items that had
    // run run once more (Store::submit: work may run more than once), and a
    // failing item still rolls back alone.
    void runBatch(std::vector<Item>& batch, std::vector<std::exception_ptr>& errors) {
        errors.assign(batch.size(), nullptr);
        if (!db_) {
            std::fill(errors.begin(), errors.end(), unusableError());
            return;
        }
        // A retention batch alone needs no fsync of its own: with synchronous
        // FULL that fsync was most of a batch's time. Anything else in the
        // transaction keeps it synced.
        const bool unsynced =
            synchronousFull_ && std::all_of(batch.begin(), batch.end(), [](const Item& i) { return i.redoable; });
        if (!begin(errors, batch.size(), unsynced)) return;
        std::size_t failed = batch.size();
        for (std::size_t i = 0; i < batch.size() && failed == batch.size(); ++i) {
            try {
                batch[i].work(*txn_);
            } catch (...) {
                errors[i] = std::current_exception();
                failed = i;
            }
        }
        if (failed < batch.size()) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            if (!begin(errors, failed, unsynced)) return;
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (i == failed) continue;
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
        }
        try {
            run(*commit_);
        } catch (...) {
            auto e = std::current_exception();
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            std::fill(errors.begin(), errors.end(), e);
            log::error("a store commit failed; its requests were refused", {log::Event::StoreFailure, {}, {}});
        }
        if (unsynced) restoreSync();
    }

    // BEGIN for runBatch (unsynced: after synchronous = NORMAL); when it
    // fails, every item but `except` (which has its own error) fails with it,
    // and the sync mode is restored.
    bool begin(std::vector<std::exception_ptr>& errors, std::size_t except, bool unsynced) {
        try {
            if (unsynced) run(*syncNormal_);
            run(*begin_);
            return true;
        } catch (...) {
            for (std::size_t i = 0; i < errors.size(); ++i)
                if (i != except) errors[i] = std::current_exception();
            if (unsynced) restoreSync();
            return false;
        }
    }

    void restoreSync() {
        try {
            run(*syncFull_);
        } catch (...) {
            // Never go on committing other work unsynced.
            log::error("cannot restore synchronous = FULL; the store refuses work", {log::Event::StoreFailure, {}, {}});
            closeConnection();
        }
    }

    static void run(Statement& s) {
        s.reset();
        s.step();
        s.reset();
    }

    std::unique_ptr<Statement> begin_, commit_, savepoint_, release_, rollbackTo_, syncNormal_, syncFull_;
    std::string path_;
    std::size_t maxBatch_;
    std::size_t maxQueued_;
    std::atomic<std::size_t> queued_{0};  // queue_.size(), readable without the lock
    bool synchronousFull_;
    int cacheMiB_;
    int pageSize_ = kPageSize;  // found by open()
    sqlite3* db_ = nullptr;  // the writer's connection; null once no key opens the database
    std::unique_ptr<SqlcipherTransaction> txn_;
    std::mutex keyMutex_;
    SecretBytes key_;  // the key that opens the database (guarded by keyMutex_)
    std::atomic<bool> maintenance_{false};  // a rekey or a backup is running
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::thread writer_;
    // The checkpointer (runCheckpointer): woken through checkpointWakeMutex_,
    // its connection and pause flag guarded by checkpointMutex_.
    std::mutex checkpointWakeMutex_;
    std::condition_variable checkpointWake_;
    bool checkpointDue_ = false;
    bool checkpointStop_ = false;
    std::mutex checkpointMutex_;
    Connection checkpointDb_;
    bool checkpointPaused_ = false;
    std::thread checkpointer_;
};

}  // namespace

int schemaVersion() { return static_cast<int>(std::size(sql::kMigrations)); }

std::unique_ptr<Store> openSqlcipherStore(SqlcipherOptions options) {
    return std::make_unique<SqlcipherStore>(std::move(options));
}

bool keyOpensDatabase(const std::string& path, const SecretBytes& key) {
    return SqlcipherStore::probe(path, key, /*integrity=*/false).opens;
}

}  // namespace twofactor::store
