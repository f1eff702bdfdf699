// The store behind one interface: request logic talks to Store/Transaction only,
// so another backend can be added without touching it.
#pragma once

#include "otp/audit.hpp"
#include "otp/events.hpp"
#include "otp/fraud.hpp"
#include "otp/limits.hpp"
#include "otp/request.hpp"
#include "util/crypto.hpp"
#include "util/secret.hpp"

#include <chrono>
#include <exception>
#include <functional>
#include <iterator>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::store {

// One Varlink call in the request log: no parameters, only what was called,
// by whom, how long it took and how it ended ("ok" or the error's name).
struct CallRecord {
    std::int64_t id = 0;
    std::int64_t at = 0;
    std::string method;
    std::int64_t durationMs = 0;
    std::string result;
    std::int64_t uid = -1;
    // Calls over the HTTPS API: the API key, the client's address, the HTTP status.
    std::string keyId;
    std::string clientIp;
    int status = 0;
};

// An API key of the HTTPS API. The secret itself is never stored: secretHash
// is a keyed hash of it (lib/http/apikey.hpp).
struct ApiKey {
    std::string id;  // public, the part after "tfk_"
    std::string app;
    std::string scopes;  // comma-separated: send, verify, status, cancel
    std::string secretHash;
    std::string note;
    std::int64_t createdAt = 0;
    std::int64_t createdBy = -1;  // uid
    std::int64_t expiresAt = 0;   // 0: never
    std::int64_t revokedAt = 0;   // 0: not revoked
    std::int64_t lastUsedAt = 0;  // 0: never used
};

// An Idempotency-Key as the first call with it left it.
struct IdempotencyRecord {
    std::string bodyHash;
    std::int64_t createdAt = 0;
    int status = 0;  // 0: the first call is still running
    std::string response;
};

struct CallQuery {
    std::optional<std::int64_t> since;  // at >= since
    std::optional<std::int64_t> until;  // at < until
    int limit = 1000;                   // the newest that match, returned oldest first
};

// ---- Observability: a bounded sample of recent activity (twofactor stats) ----
// Read through the time indexes of the delivery log and the audit log: the
// newest at most `limit` rows of each with since <= at < until.
struct ActivityQuery {
    std::int64_t since = 0;
    std::int64_t until = 0;
    int limit = 50000;
};
struct ActivityDelivery {
    std::string channel, driver, outcome;  // outcome: accepted, retry, failed
    std::int64_t durationMs = 0;
    std::int64_t at = 0;
};
struct ActivityEvent {
    std::string event, outcome;  // the audit log's: "send", "refused:destination"
    std::int64_t at = 0;
};

// Retention (issue 5): what one purge removes, per category.
// Data of restricted subjects (GDPR Art. 18) is kept unchanged by every
// category except code hashes, rate counters and fraud signals, and the audit
// log's oldest records.
enum class PurgeKind {
    CodeHashes,       // requests.code_hash of requests expired before the cutoff
    Deliveries,       // deliveries rows logged before the cutoff
    RequestLog,       // request_log rows before the cutoff
    ClientData,       // destination, fallback, reference, client IP and device of requests created
                      // before the cutoff: only the keyed subject hash is left
    RateCounters,     // rate_counters whose last send is a day old (every window is at most a day)
    FraudSets,        // fraud_sets members past their expiry
    SubjectFailures,  // subject_failures of subjects not locked and without a request since the cutoff
    AuthMetadata,     // requests (authentication outcomes) created before authentication_metadata
    AuditRecords,     // the oldest audit records, older than authentication_metadata
    RemovedApps,      // everything of apps removed from the configuration removed_apps ago
};
inline constexpr PurgeKind kPurgeKinds[] = {PurgeKind::CodeHashes,   PurgeKind::Deliveries,   PurgeKind::RequestLog,
                                            PurgeKind::ClientData,   PurgeKind::RateCounters, PurgeKind::FraudSets,
                                            PurgeKind::SubjectFailures, PurgeKind::AuthMetadata,
                                            PurgeKind::AuditRecords, PurgeKind::RemovedApps};
// The order store::purge runs them in: the requests past the
// authentication-metadata period are deleted before the purges that only
// rewrite requests (their code hashes, their identifying data) run, so that
// a store catching up on a long backlog does not rewrite rows it is about to
// delete; on a daily schedule the order changes nothing. Deliveries go before
// the requests they belong to.
inline constexpr PurgeKind kPurgeOrder[] = {PurgeKind::Deliveries,  PurgeKind::RequestLog,   PurgeKind::AuthMetadata,
                                            PurgeKind::CodeHashes,  PurgeKind::ClientData,   PurgeKind::RateCounters,
                                            PurgeKind::FraudSets,   PurgeKind::SubjectFailures,
                                            PurgeKind::AuditRecords, PurgeKind::RemovedApps};
static_assert(std::size(kPurgeOrder) == std::size(kPurgeKinds), "kPurgeOrder runs every kind once");
// The dry-run counts of these leave out the requests the authentication-
// metadata purge deletes first (the count binds its cutoff as the second
// parameter), so that a dry run counts what the run then does.
inline constexpr bool countsBeyondDeleted(PurgeKind k) {
    return k == PurgeKind::CodeHashes || k == PurgeKind::ClientData;
}
// The category's name in Varlink replies, the CLI and retention_runs.
[[nodiscard]] const char* purgeKindName(PurgeKind kind);
struct RetentionPolicy;
// The category's cutoff under the policy at `now`: what is older goes.
[[nodiscard]] std::int64_t purgeCutoff(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy);

struct PurgeCounts {
    std::int64_t codeHashes = 0;
    std::int64_t deliveries = 0;
    std::int64_t requestLog = 0;
    std::int64_t clientData = 0;
    std::int64_t rateCounters = 0;
    std::int64_t fraudSets = 0;
    std::int64_t subjectFailures = 0;
    std::int64_t authMetadata = 0;
    std::int64_t auditRecords = 0;
    std::int64_t removedApps = 0;
    std::int64_t& operator[](PurgeKind k);
    std::int64_t operator[](PurgeKind k) const { return const_cast<PurgeCounts&>(*this)[k]; }
    [[nodiscard]] std::int64_t total() const;
};

// Retention periods in seconds ([retention] in twofactord.toml(5)).
struct RetentionPolicy {
    std::int64_t codeHashes = 86400;
    std::int64_t deliveryLogs = 90 * 86400;
    std::int64_t authMetadata = 365 * 86400;
    std::int64_t removedApps = 30 * 86400;
    // Seals the anchor each cut of the audit log leaves (otp::auditAnchorSeal).
    // Without it, or while the current anchor's seal does not verify, no audit
    // record is pruned: a cut must neither be unsealed nor launder a forged one.
    const SecretBytes* auditKey = nullptr;
};

// GDPR (issue 5): what is held about one data subject, found by the keyed
// subject hash and, for fallback addresses, by the normalised address itself.
struct SubjectFlags {
    std::optional<std::int64_t> restrictedAt;  // Art. 18
    std::optional<std::int64_t> objectedAt;    // Art. 21
};

// What a send reads before it counts anything (Transaction::sendChecks):
// the subject's flags, also under the hash of an earlier form of its address
// (empty: none); whether it opted out of WhatsApp (optOut: asked only for a
// WhatsApp send); whether each email address is on the suppression list
// (empty: none to check).
struct SendChecksQuery {
    std::string_view subjectHash;
    std::string_view earlierHash;
    bool optOut = false;
    std::string_view suppressed;
    std::string_view fallbackSuppressed;
};
struct SendChecks {
    SubjectFlags flags;
    SubjectFlags earlierFlags;
    bool optedOut = false;
    bool suppressed = false;
    bool fallbackSuppressed = false;
};

struct SubjectFailureRecord {
    std::string app;
    otp::SubjectFailures failures;
};

struct SubjectData {
    std::vector<otp::OtpRequest> requests;         // subject_hash = the subject's
    std::vector<otp::OtpRequest> fallbackRequests;  // the subject's address was another request's email fallback
    std::vector<otp::DeliveryAttempt> deliveries;   // of all those requests (of fallback ones: email only), oldest first
    std::vector<otp::AuditRecord> audit;            // records naming the subject
    std::optional<otp::OptOut> optOut;
    std::vector<SubjectFailureRecord> failures;
    SubjectFlags flags;
    [[nodiscard]] bool empty() const {
        return requests.empty() && fallbackRequests.empty() && deliveries.empty() && audit.empty() && !optOut &&
               failures.empty() && !flags.restrictedAt && !flags.objectedAt;
    }
};

// Rows erased or rewritten per table by an erasure or a rectification.
struct SubjectCounts {
    std::int64_t requests = 0;
    std::int64_t fallbacks = 0;
    std::int64_t deliveries = 0;
    std::int64_t auditRecords = 0;
    std::int64_t optOuts = 0;
    std::int64_t failures = 0;
    std::int64_t flags = 0;
    std::int64_t rateCounters = 0;
    std::int64_t fraudSets = 0;
    std::int64_t deliveryJobs = 0;
    SubjectCounts& operator+=(const SubjectCounts& o) {
        requests += o.requests;
        fallbacks += o.fallbacks;
        deliveries += o.deliveries;
        auditRecords += o.auditRecords;
        optOuts += o.optOuts;
        failures += o.failures;
        flags += o.flags;
        rateCounters += o.rateCounters;
        fraudSets += o.fraudSets;
        deliveryJobs += o.deliveryJobs;
        return *this;
    }
};

// One entry of the register of data-subject requests.
struct PrivacyRequest {
    std::int64_t id = 0;
    std::string kind;  // export, delete, rectify, restrict, unrestrict, object
    std::string subjectHash;
    std::int64_t received = 0;
    std::int64_t due = 0;
    std::optional<std::int64_t> completed;
    std::int64_t uid = -1;
    std::string note;  // short, no personal data
};

struct PrivacyRequestQuery {
    bool openOnly = false;
    std::optional<std::int64_t> overdueAt;  // open and due before this time
    int limit = 1000;
};

// One recorded retention run.
struct RetentionRun {
    std::int64_t id = 0;
    std::int64_t started = 0;
    std::int64_t finished = 0;
    std::string trigger;  // "schedule" or "manual"
    PurgeCounts counts;
};

// What countWrongCode leaves: the attempts counted so far, and whether this
// one locked the request.
struct WrongCode {
    int attempts = 0;
    bool locked = false;
};

// ---- Breach reports (privacy/breach.hpp): what was processed in a window ----
// Pages through [from, to) in time order: the rows after the cursor (at, row),
// at most `limit` of them. A page reads its own rows through a time index and,
// again, those of the cursor's second that earlier pages returned.
struct BreachPage {
    std::int64_t from = 0;
    std::int64_t to = 0;
    std::int64_t afterAt = 0;   // the last row's time; 0 before the first page
    std::int64_t afterRow = 0;  // the last row's row id
    int limit = 2000;
};
// A request created in the window, with what it still holds about its subject
// (destination, client IP and device are cleared after the delivery-log period).
struct BreachRequestRow {
    std::int64_t row = 0;
    std::int64_t createdAt = 0;
    std::string id, app, channel, subjectHash, destination, fallbackDestination, clientIp, device;
};
// A delivery attempt logged in the window, with its request's subject (empty
// when the request is gone).
struct BreachDeliveryRow {
    std::int64_t row = 0;
    std::int64_t at = 0;
    std::string requestId, app, channel, subjectHash, destination, fallbackDestination;
};

// ---- The email suppression list and SES feedback counters ----
// An address that bounced for good or whose owner complained. Only the keyed
// hash of the address's match form is kept (OtpService::suppressionHash):
// the list can refuse a send without holding the address.
struct Suppression {
    std::string addressHash;
    std::string reason;     // "bounce", "complaint" or "manual"
    std::string detail;     // SES's bounce subtype or complaint type, or an operator's note
    std::int64_t at = 0;
    std::string source;     // "sns" or "cli"
    std::string messageId;  // the SES message that bounced or was complained about ("" from the CLI)
};
// What the store counts per app and hour for the bounce and complaint rates.
enum class EmailFeedback { Send, Bounce, Complaint };
struct EmailFeedbackCounts {
    std::int64_t sends = 0, bounces = 0, complaints = 0;
};
// Hours of counters kept: the longest rate shown is over 7 days.
inline constexpr std::int64_t kEmailFeedbackHours = 8 * 24;

// ---- Cluster: lease-row singletons and the node registry ----
// A singleton's lease: who holds it until when, for which scheduled run.
struct Lease {
    std::string name;    // "retention"
    std::string holder;  // the daemon start that took it (OtpService::deliveryHolder)
    std::int64_t slot = 0;       // the scheduled time of the run it was taken for
    std::int64_t expiresAt = 0;
};
// A node across its starts: this host and its state directory
// ("host~1a2b3c4d"). One daemon runs per state directory (its lock), so what
// an earlier start of the node held belongs to a daemon that is gone: its
// delivery jobs and its PostgreSQL audit chains are taken back at once.
[[nodiscard]] std::string nodeName(const std::string& stateDir);

// One daemon of the cluster (on SQLCipher: the one local daemon).
struct NodeInfo {
    std::string id;  // its delivery holder: host~state directory/start
    std::string host;
    std::string version;
    std::int64_t started = 0;
    std::int64_t heartbeat = 0;
    // The store-key version the node seals new values under (PostgreSQL's
    // column sealing); 0 for a store that has none (SQLCipher encrypts the
    // whole file under its one key).
    int keyVersion = 0;
};

// One unit of work's view of the store, valid only inside Store::submit's work
// function. It is also the rate limits' store (rate counters, subject failures)
// and the audit log's (append and read only).
class Transaction : public otp::LimitStore, public otp::AuditStore, public otp::FraudStore {
public:
    virtual ~Transaction() = default;
    [[nodiscard]] virtual std::optional<otp::OtpRequest> findRequest(std::string_view id) = 0;
    // The newest pending request of an app for a subject (by created time).
    [[nodiscard]] virtual std::optional<otp::OtpRequest> findNewestPending(std::string_view app,
                                                                           std::string_view subjectHash) = 0;
    virtual void insertRequest(const otp::OtpRequest& request) = 0;

    // ---- Request state changes ----
    // Each is one conditional change that says whether it applied, never a
    // read followed by a write of the whole row: two writers acting on one
    // pending request (two verifies of one code on two nodes) cannot both
    // succeed, and no attempt is lost. `send` is the send the caller saw
    // (OtpRequest::sends); a resend or a takeover since makes the change fail.

    // Approves the request if it is still pending in this send, not expired at
    // `now`, and its code hash is still `codeHash` (the one the caller
    // compared the code with). The code hash is cleared.
    [[nodiscard]] virtual bool approveRequest(std::string_view id, int send, const crypto::Digest& codeHash,
                                              std::int64_t now) = 0;
    // Counts one wrong code against a request still pending and not expired at
    // `now`; the one that reaches max_attempts locks it. nullopt: it was not pending.
    [[nodiscard]] virtual std::optional<WrongCode> countWrongCode(std::string_view id, std::int64_t now) = 0;
    // Ends a request still pending (and in send `send`, when given) with
    // status `to` (expired, canceled, failed); a non-empty `failure` is
    // recorded as the reason. The code hash is cleared.
    [[nodiscard]] virtual bool finishRequest(std::string_view id, std::optional<int> send, otp::Status to,
                                             std::int64_t now, std::string_view failure = {}) = 0;
    // A new code for a request still pending in send `send`: its hash
    // replaces the old one, sends becomes send + 1, the expiry moves.
    [[nodiscard]] virtual bool replaceCode(std::string_view id, int send, const crypto::Digest& codeHash,
                                           std::int64_t expiresAt, std::int64_t now) = 0;
    // Delivers a request still pending in send `send` through another channel
    // from now on (the email fallback).
    [[nodiscard]] virtual bool switchChannel(std::string_view id, int send, std::string_view channel,
                                             std::int64_t now) = 0;
    // ---- end of request state changes ----

    virtual void insertDeliveryAttempt(const otp::DeliveryAttempt& attempt) = 0;
    // Oldest first, at most query.limit rows (the newest ones when more match).
    [[nodiscard]] virtual std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& query) = 0;
    // Moves a logged attempt's provider status forward (sent < delivered <
    // read; failed is final). Returns whether it did: false for an unknown
    // message id, or a status not past the one recorded.
    virtual bool updateDeliveryStatus(const otp::ProviderStatus& status) = 0;

    // Delivery jobs: outcomes a store with many writers can give as well, each
    // decided in one conditional statement.
    // The request's job is now this one (a resend or a takeover replaces the
    // job of the previous send).
    virtual void putDeliveryJob(const otp::DeliveryJob& job) = 0;
    // Claims at most `limit` jobs for `holder` until `leaseUntil`: those due at
    // `now` (retry time and any lease passed) and those held by another start
    // of this node (a holder beginning with `nodePrefix`, which a restart left
    // behind). Returns each claimed job as it was before the claim, so the
    // caller sees whom it took it from.
    [[nodiscard]] virtual std::vector<otp::DeliveryJob> claimDeliveryJobs(std::string_view holder,
                                                                         std::string_view nodePrefix,
                                                                         std::int64_t now, std::int64_t leaseUntil,
                                                                         int limit) = 0;
    // Extends the lease if `holder` still holds the job of this send.
    virtual bool renewDeliveryLease(std::string_view requestId, int send, std::string_view holder,
                                    std::int64_t leaseUntil) = 0;
    // Records a failed try (the attempt count, when the next is due, the error)
    // if `holder` still holds this send's job; the lease runs to leaseUntil.
    virtual bool recordDeliveryRetry(std::string_view requestId, int send, std::string_view holder, int attempts,
                                     std::int64_t retryAt, std::int64_t leaseUntil, std::string_view error) = 0;
    // Ends this send's job (accepted, or refused for good) if `holder` still holds it.
    virtual bool finishDeliveryJob(std::string_view requestId, int send, std::string_view holder) = 0;
    // Ends the request's job, whichever send and holder: the request left pending.
    virtual void endDeliveryJob(std::string_view requestId) = 0;
    // finishDeliveryJob for a caller that does not read whether it applied:
    // a store that pays a round trip per statement sends it with the next one.
    virtual void endDeliveryJob(std::string_view requestId, int send, std::string_view holder) {
        (void)finishDeliveryJob(requestId, send, holder);
    }
    [[nodiscard]] virtual std::optional<otp::DeliveryJob> findDeliveryJob(std::string_view requestId) = 0;
    // The jobs due soonest first, at most `limit`.
    [[nodiscard]] virtual std::vector<otp::DeliveryJob> listDeliveryJobs(int limit) = 0;

    [[nodiscard]] virtual std::optional<otp::OptOut> findOptOut(std::string_view subjectHash) = 0;
    virtual void putOptOut(const otp::OptOut& entry) = 0;  // adds or replaces
    virtual bool removeOptOut(std::string_view subjectHash) = 0;
    [[nodiscard]] virtual std::vector<otp::OptOut> listOptOuts(int limit) = 0;

    virtual void insertCall(const CallRecord& call) = 0;
    // Several at once: a store that pays a round trip per statement writes
    // them in one.
    virtual void insertCalls(const std::vector<CallRecord>& calls) {
        for (const auto& c : calls) insertCall(c);
    }
    [[nodiscard]] virtual std::vector<CallRecord> findCalls(const CallQuery& query) = 0;

    // ---- The HTTPS API: keys and Idempotency-Key records ----
    virtual void insertApiKey(const ApiKey& key) = 0;
    [[nodiscard]] virtual std::optional<ApiKey> findApiKey(std::string_view id) = 0;
    // Newest first, at most `limit`.
    [[nodiscard]] virtual std::vector<ApiKey> listApiKeys(int limit) = 0;
    // Revokes the key at `now` if it exists and is not revoked yet.
    virtual bool revokeApiKey(std::string_view id, std::int64_t now) = 0;
    // Moves the key's last use forward to `now` (never back).
    virtual void touchApiKey(std::string_view id, std::int64_t now) = 0;
    // Takes (keyId, idemKey) for a call with this body if it is still free (or
    // its record is older than `windowStart`): nullopt when taken now, else the
    // record that holds it. Prunes a few records older than windowStart.
    [[nodiscard]] virtual std::optional<IdempotencyRecord> claimIdempotencyKey(std::string_view keyId,
                                                                              std::string_view idemKey,
                                                                              std::string_view bodyHash,
                                                                              std::int64_t now,
                                                                              std::int64_t windowStart) = 0;
    // Stores the first call's answer, once.
    virtual void completeIdempotencyKey(std::string_view keyId, std::string_view idemKey, int status,
                                        std::string_view response) = 0;
    // Frees a key whose first call ended before it sent anything (still unanswered).
    virtual void releaseIdempotencyKey(std::string_view keyId, std::string_view idemKey) = 0;
    // ---- Observability (ActivityQuery above): newest first ----
    [[nodiscard]] virtual std::vector<ActivityDelivery> recentDeliveries(const ActivityQuery& query) = 0;
    [[nodiscard]] virtual std::vector<ActivityEvent> recentEvents(const ActivityQuery& query) = 0;

    // Retention: purges (or, with dryRun, counts) at most `limit` rows of one
    // category; `now` and the policy give the cutoffs. Returns the rows affected.
    virtual std::int64_t purgeStep(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy, int limit,
                                   bool dryRun) = 0;
    virtual void insertRetentionRun(const RetentionRun& run) = 0;
    [[nodiscard]] virtual std::optional<RetentionRun> lastRetentionRun() = 0;
    // The apps the configuration names now: new ones are recorded, missing ones
    // marked removed (now) and returning ones unmarked. Returns the names newly marked removed.
    virtual std::vector<std::string> syncApps(const std::vector<std::string>& configured, std::int64_t now) = 0;

    // GDPR data-subject requests (issue 5). `address` is the normalised email
    // address or E.164 number, `subjectHash` its keyed hash.
    [[nodiscard]] virtual SubjectFlags subjectFlags(std::string_view subjectHash) = 0;
    // The reads of SendChecksQuery, each in turn; a store that pays a round
    // trip per statement sends them together.
    [[nodiscard]] virtual SendChecks sendChecks(const SendChecksQuery& q) {
        SendChecks out;
        out.flags = subjectFlags(q.subjectHash);
        if (!q.earlierHash.empty()) out.earlierFlags = subjectFlags(q.earlierHash);
        out.optedOut = q.optOut && findOptOut(q.subjectHash).has_value();
        out.suppressed = !q.suppressed.empty() && findSuppression(q.suppressed).has_value();
        out.fallbackSuppressed = !q.fallbackSuppressed.empty() && findSuppression(q.fallbackSuppressed).has_value();
        return out;
    }
    virtual void setRestricted(std::string_view subjectHash, std::optional<std::int64_t> since) = 0;
    virtual void setObjected(std::string_view subjectHash, std::optional<std::int64_t> since) = 0;
    [[nodiscard]] virtual SubjectData findSubjectData(std::string_view subjectHash, std::string_view address) = 0;
    // Erases everything held about the subject; audit records keep their place
    // in the chain with the subject blanked.
    virtual SubjectCounts eraseSubject(std::string_view subjectHash, std::string_view address) = 0;
    // Moves the subject's requests, opt-out, failure counts and flags to the new
    // address. The audit log keeps what happened to the old one.
    virtual SubjectCounts rectifySubject(std::string_view oldHash, std::string_view oldAddress,
                                         std::string_view newHash, std::string_view newAddress) = 0;

    virtual std::int64_t insertPrivacyRequest(const PrivacyRequest& request) = 0;
    // The oldest open entry of that kind for the subject.
    [[nodiscard]] virtual std::optional<PrivacyRequest> findOpenPrivacyRequest(std::string_view kind,
                                                                              std::string_view subjectHash) = 0;
    virtual void completePrivacyRequest(std::int64_t id, std::int64_t at) = 0;
    [[nodiscard]] virtual std::vector<PrivacyRequest> listPrivacyRequests(const PrivacyRequestQuery& query) = 0;
    // Every register entry about one subject, oldest received first.
    [[nodiscard]] virtual std::vector<PrivacyRequest> subjectPrivacyRequests(std::string_view subjectHash) = 0;

    // ---- Cluster: lease-row singletons and the node registry ----
    // Takes the singleton `name` for its run at `slot` (a scheduled time) if
    // no daemon took that slot or a later one, and no other holder's lease is
    // live at `now`; the lease runs until `until`. One conditional statement
    // on a lease row, not an advisory lock, so it also works through
    // PgBouncer's transaction pooling and on databases without advisory locks.
    [[nodiscard]] virtual bool takeLease(std::string_view name, std::int64_t slot, std::string_view holder,
                                         std::int64_t now, std::int64_t until) = 0;
    // By name, at most `limit`.
    [[nodiscard]] virtual std::vector<Lease> listLeases(int limit) = 0;
    // Registers the node, or moves its heartbeat forward.
    virtual void heartbeatNode(const NodeInfo& node) = 0;
    // The nodes whose heartbeat is at or after `since`, newest heartbeat first, at most `limit`.
    [[nodiscard]] virtual std::vector<NodeInfo> listNodes(std::int64_t since, int limit) = 0;
    // A node that stops cleanly leaves the registry at once, instead of
    // being listed until its heartbeat is old enough to be forgotten.
    virtual void forgetNode(std::string_view id) = 0;

    // ---- Transaction binding (otp/binding.hpp) ----
    // Records that the request (inserted in this work item) has its code bound
    // to a context, of which only this keyed digest is kept.
    virtual void bindRequest(std::string_view requestId, std::string_view contextDigest) = 0;
    // The digest a request's code is bound to; empty when it is not bound or
    // there is no such request.
    [[nodiscard]] virtual std::string requestBinding(std::string_view requestId) = 0;

    // ---- Breach reports (BreachPage above) ----
    [[nodiscard]] virtual std::vector<BreachRequestRow> breachRequests(const BreachPage& page) = 0;
    [[nodiscard]] virtual std::vector<BreachDeliveryRow> breachDeliveries(const BreachPage& page) = 0;

    // ---- The email suppression list (Suppression above) ----
    // Puts the hash on the list if it is not there yet: true when this call
    // added it (an entry already there keeps its first reason and time).
    virtual bool suppressAddress(const Suppression& entry) = 0;
    [[nodiscard]] virtual std::optional<Suppression> findSuppression(std::string_view addressHash) = 0;
    virtual bool removeSuppression(std::string_view addressHash) = 0;
    // The newest `limit` entries, oldest first.
    [[nodiscard]] virtual std::vector<Suppression> listSuppressions(int limit) = 0;
    // Counts one more send, bounce or complaint of `app` in the hour of `at`
    // (atomically, in the store), and forgets the app's hours older than
    // kEmailFeedbackHours.
    virtual void countEmailFeedback(std::string_view app, EmailFeedback kind, std::int64_t at) = 0;
    // The app's counts in the hours from the one holding `since` on.
    [[nodiscard]] virtual EmailFeedbackCounts emailFeedback(std::string_view app, std::int64_t since) = 0;
    // The app a delivery attempt with this provider message id was for; "" when none is logged.
    [[nodiscard]] virtual std::string deliveryApp(std::string_view providerMessageId) = 0;

    // ---- Event webhooks (otp/events.hpp): a queue claimed under leases, ----
    // its attempt log and each app's endpoint state. Outcomes, each decided
    // in conditional statements, like the delivery jobs.
    // Queues an event (in the work item of the change it reports). While its
    // app's endpoint is disabled the event waits, not due, until enabled.
    virtual void enqueueEvent(const otp::EventJob& event) = 0;
    // Claims at most `limit` events for `holder` until `leaseUntil`: those due
    // at `now` (retry time and any lease passed) and those held by another
    // start of this node (a holder beginning with `nodePrefix`). Returns each
    // as it was before the claim.
    [[nodiscard]] virtual std::vector<otp::EventJob> claimEvents(std::string_view holder, std::string_view nodePrefix,
                                                                std::int64_t now, std::int64_t leaseUntil,
                                                                int limit) = 0;
    // Records a failed try (attempts so far, the next try's time, the error)
    // if `holder` still holds the event; it is free again from retryAt.
    virtual bool retryEvent(std::string_view id, std::string_view holder, int attempts, std::int64_t retryAt,
                            std::string_view error) = 0;
    // Removes the event (delivered, or given up) if `holder` still holds it.
    virtual bool finishEvent(std::string_view id, std::string_view holder) = 0;
    virtual void insertEventAttempt(const otp::EventAttempt& attempt) = 0;
    // Oldest first, at most query.limit (the newest that match).
    [[nodiscard]] virtual std::vector<otp::EventAttempt> findEventAttempts(const otp::EventAttemptQuery& query) = 0;
    // Counts one more consecutive failed attempt of the app's endpoint; the one
    // that reaches maxFailures disables it (and its queued events wait).
    [[nodiscard]] virtual otp::EventFailure countEventFailure(std::string_view app, std::int64_t now,
                                                              int maxFailures, std::string_view error) = 0;
    // A delivered event: the consecutive failures start again from 0.
    virtual void clearEventFailures(std::string_view app) = 0;
    // Turns a disabled endpoint on again (failures 0, its waiting events due at
    // `now`). Returns whether it was disabled.
    virtual bool enableEvents(std::string_view app, std::int64_t now) = 0;
    // Endpoints with failures or disabled, by app.
    [[nodiscard]] virtual std::vector<otp::EventEndpoint> listEventEndpoints() = 0;
    // Pending requests past their expiry at `now`, at most `limit` (through the
    // live-code index): for the sweep that ends them and reports them expired.
    [[nodiscard]] virtual std::vector<otp::OtpRequest> findExpiredPending(std::int64_t now, int limit) = 0;
    // ---- end of event webhooks ----
};

// ---- Maintenance (issue 5): how a key rotation and a backup end ----

enum class RekeyStatus {
    Rotated,     // verified: the new key opens the database, integrity ok, the old key no longer opens it
    OldKey,      // failed: the database still opens with the old key only, which stays in use
    NewKeyOnly,  // failed: the database opens with the new key only but integrity_check found errors
    NoKey,       // failed: the database opens with neither key; the store refuses all work
    Busy,        // not tried: a backup was running
};
struct RekeyResult {
    RekeyStatus status = RekeyStatus::OldKey;
    std::string detail;  // what was found or what failed; never key material
};

enum class BackupStatus { Done, Busy, Failed };
struct BackupResult {
    BackupStatus status = BackupStatus::Failed;
    std::int64_t pages = 0;
    std::string error;  // when Failed or Busy
};
using BackupProgress = std::function<void(std::int64_t pagesDone, std::int64_t pagesTotal)>;

// What submit's `done` receives when the queue is full: the work was not
// queued and nothing of it ran. Callers answer at once (the daemon's Busy
// error) instead of letting memory and waiting times grow without bound.
class StoreBusy : public std::runtime_error {
public:
    StoreBusy() : std::runtime_error("the store is busy: its queue is full") {}
};

// ---- Losing the database (a backend on a database server) ----
// What work fails with while the database cannot be reached: it did not run,
// or was rolled back. The store connects again by itself for later work, so
// callers answer at once with a clear error instead of waiting.
class StoreUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Store {
public:
    using Work = std::function<void(Transaction&)>;
    // Called once the work is durable (error == nullptr) or has failed; the
    // work's effects are all there or none are.
    using Done = std::function<void(std::exception_ptr error)>;

    virtual ~Store() = default;

    // Queues work for the single writer. Work runs serially, so reads and
    // writes inside one work item are atomic with respect to all others.
    // Many items share one transaction (group commit); `done` runs only after
    // that transaction committed, on the writer thread: keep it short.
    // The queue is bounded: when it holds its limit of items, the work is not
    // queued and `done` runs at once, on the caller's thread, with StoreBusy.
    // Work may run more than once before `done`: a backend rolls it back and
    // runs it again (PostgreSQL after a serialization failure or a deadlock;
    // SQLCipher when another item of its group commit failed), and only the
    // last run's effects count. So work sets its results (assigns, never
    // accumulates across runs) and acts outside the transaction only in `done`.
    virtual void submit(Work work, Done done) = 0;

    // Like submit, for work that a crash may undo without harm because it is
    // simply done again (a retention batch): a transaction holding only such
    // work commits without waiting for the disk, and `done` means committed,
    // durable once the next synced commit or checkpoint is. The default is submit.
    virtual void submitRedoable(Work work, Done done) { submit(std::move(work), std::move(done)); }

    // The same for the daemon's own bookkeeping, whose amount the daemon
    // bounds itself (one batch of request-log rows, one aggregated denial
    // record per uid and window, retention batches one at a time): it is
    // queued even when the queue is full, so a flood of callers cannot make
    // the daemon lose it. The default has no bound to step over.
    virtual void submitReserved(Work work, Done done) { submit(std::move(work), std::move(done)); }

    // Whether the queue is nearly full (submit may refuse soon). The daemon
    // asks before it starts a call, so a call is refused whole with Busy
    // rather than halfway.
    [[nodiscard]] virtual bool saturated() const { return false; }

    // ---- Observability: how much work waits for the writer right now ----
    // (the metrics' twofactor_store_queue_depth). The default has no queue.
    [[nodiscard]] virtual std::size_t queueDepth() const { return 0; }

    // Queues a WAL checkpoint (TRUNCATE) on the writer's connection, outside
    // any transaction, after the work queued before it.
    virtual void checkpoint(Done done) = 0;

    // Stops the writer after the queued work is done.
    virtual void close() = 0;

    [[nodiscard]] virtual std::string description() const = 0;
    // The version of the key new values are sealed under (NodeInfo::keyVersion).
    [[nodiscard]] virtual int keyVersion() const { return 0; }

    // ---- Maintenance (issue 5): key rotation and online backup ----
    // At most one of them runs at a time; the other is refused with Busy.
    // The defaults refuse, for stores that cannot do either.

    // Rekeys the database to `newKey` on the writer's connection, between
    // batches, and verifies the result with fresh connections: the new key
    // opens it and integrity_check says "ok", the old key no longer opens it.
    // The store goes on with whichever key opens the database. `done` runs on
    // the writer thread.
    virtual void rekey(SecretBytes newKey, std::function<void(RekeyResult)> done) {
        newKey.wipe();
        if (done) done(RekeyResult{RekeyStatus::OldKey, "this store cannot change its key"});
    }

    // Copies a consistent snapshot of the database (one read transaction, while
    // the writer goes on committing) into `target`, an existing empty file, with
    // the SQLite backup API; encrypted under the store key; then checks that the
    // copy opens with the key and passes integrity_check. `progress` gets pages
    // copied and the total. Blocks: call it off the I/O and writer threads.
    [[nodiscard]] virtual BackupResult backup(const std::string& target, const BackupProgress& progress) {
        (void)target;
        (void)progress;
        return BackupResult{BackupStatus::Failed, 0, "this store cannot make backups"};
    }
};

// Runs work and waits for its commit; rethrows its error. For tests, tools,
// benchmarks and the daemon's own bookkeeping (reserved: see submitReserved).
template <typename F>
auto runSync(Store& store, F&& f, bool reserved = false) -> decltype(f(std::declval<Transaction&>())) {
    using R = decltype(f(std::declval<Transaction&>()));
    std::promise<void> committed;
    auto future = committed.get_future();
    auto submit = [&](Store::Work work) {
        auto done = [&](std::exception_ptr e) { e ? committed.set_exception(e) : committed.set_value(); };
        if (reserved) store.submitReserved(std::move(work), done);
        else store.submit(std::move(work), done);
    };
    if constexpr (std::is_void_v<R>) {
        submit([&](Transaction& t) { f(t); });
        future.get();
    } else {
        std::optional<R> result;
        submit([&](Transaction& t) { result.emplace(f(t)); });
        future.get();
        return std::move(*result);
    }
}

// How long one purge batch may hold the writer, roughly: batches shrink
// (down to 16 rows) when they take longer and grow back up to batchSize when
// they take less than half.
inline constexpr std::chrono::milliseconds kPurgeBatchBudget{8};

// Runs a retention purge: each batch of at most batchSize rows is its own
// work item (submitRedoable: a batch a crash undoes is purged by the next
// run), so other work interleaves; its size adapts to kPurgeBatchBudget. With dryRun, counts what would go and
// changes nothing. Then checkpoints the WAL (not on a dry run), which makes
// the whole purge durable. `progress`, if
// set, is called after each batch with the counts so far. Blocks: call it off
// the I/O thread.
PurgeCounts purge(Store& store, std::int64_t now, const RetentionPolicy& policy, int batchSize, bool dryRun,
                  const std::function<void(const PurgeCounts&)>& progress = {});

}  // namespace twofactor::store
