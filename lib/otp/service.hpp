// The OTP lifecycle: send, verify, status, cancel, resend. Talks to the store
// through store::Store only and to channels through channel::Channel only.
#pragma once

#include "channel/channel.hpp"
#include "config/config.hpp"
#include "geo/country_db.hpp"
#include "otp/audit.hpp"
#include "otp/destination.hpp"
#include "otp/events.hpp"
#include "otp/binding.hpp"
#include "otp/fraud.hpp"
#include "otp/limits.hpp"
#include "otp/request.hpp"
#include "store/store.hpp"
#include "util/clock.hpp"
#include "util/secret.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>
#include <map>
#include <optional>
#include <string>
#include <variant>

namespace twofactor::otp {

// An expected failure, named as in io.twofactor.Otp.varlink (e.g.
// "NoSuchRequest"), with that error's parameters and a sentence for humans.
struct Failure {
    std::string error;
    nlohmann::json parameters = nlohmann::json::object();
    std::string message;
};

template <typename T>
using Outcome = std::variant<T, Failure>;

// Who made a call, for the audit log: the peer's uid over Varlink; over the
// HTTPS API no uid (-1) but the API key's id, which the record names.
// An API key acts on its own app's requests only (another app's are
// NoSuchRequest, as if there were none), and with keyRequestsPerMinute > 0
// each of its calls is counted against that limit in the call's own
// transaction: one store round trip per call, as over Varlink, and the
// limit is exact across the nodes sharing the store.
struct Caller {
    std::int64_t uid = -1;
    std::string apiKey;
    std::string app;               // the API key's app; empty: any app (a Varlink peer)
    int keyRequestsPerMinute = 0;  // 0: the calls are not counted
    Caller(std::int64_t u = -1, std::string key = {}) : uid(u), apiKey(std::move(key)) {}  // NOLINT: an uid is a caller
    [[nodiscard]] bool sees(const std::string& requestApp) const { return app.empty() || app == requestApp; }
};

struct SendInput {
    std::string app;
    std::string destination;
    std::optional<std::string> channel;
    std::optional<std::string> purpose;
    std::optional<std::string> locale;
    std::optional<std::string> clientIp;
    std::optional<std::string> device;
    std::optional<std::string> reference;
    std::optional<std::int64_t> ttl;
    std::optional<std::int64_t> length;
    bool wait = true;  // false: answer once the request is committed; deliver in the background
    std::optional<std::string> fallbackEmail;  // WhatsApp only, when the app falls back to email
    // Transaction binding (otp/binding.hpp): empty for an unbound code.
    std::map<std::string, std::string> context;
    Caller caller;  // for the audit log, and an API key's app and limit
};

// How far delivery had got when a send or resend was answered.
enum class DeliveryState {
    Accepted,  // the channel took the message
    Retrying,  // transient failures so far; retries go on in the background (send_wait elapsed)
    Queued,    // not tried yet: the caller asked not to wait
};
[[nodiscard]] const char* deliveryStateName(DeliveryState s);

struct SendResult {
    OtpRequest request;
    DeliveryState delivery = DeliveryState::Accepted;
};

struct VerifyInput {
    std::optional<std::string> id;
    std::optional<std::string> app;
    std::optional<std::string> destination;
    SecretString code;
    // The context the code was bound to at send; a bound code verifies only with it.
    std::map<std::string, std::string> context;
    Caller caller;  // for the audit log, and an API key's app and limit
};

struct VerifyResult {
    bool approved = false;
    Status status = Status::Pending;
    std::optional<OtpRequest> request;
};

// SES feedback (lib/webhook/sns.hpp): a permanent bounce or a complaint about
// one message, with the recipients it names.
struct EmailFeedbackReport {
    store::EmailFeedback kind = store::EmailFeedback::Bounce;  // Bounce or Complaint
    std::vector<std::string> recipients;  // as SES reports them
    std::string messageId;                // SES's id of the message (mail.messageId)
    std::string detail;                   // "Permanent/General", "abuse"
};
// What an Add to the suppression list left: the entry, and whether this call added it.
struct SuppressionChange {
    store::Suppression entry;
    bool added = false;
};
// The Suppressed failure: `parameter` names the address refused
// ("destination" or "fallbackEmail").
[[nodiscard]] Failure suppressedFailure(const std::string& parameter);
[[nodiscard]] const char* emailFeedbackName(store::EmailFeedback kind);
// StoreFailed (or AuditFailed, Busy) for a store error: what failed and what that means.
[[nodiscard]] Failure storeFailureOf(std::exception_ptr e, const std::string& what, const std::string& consequence);

// Runs a task elsewhere (a worker pool): deliveries must not run on the store's writer thread.
using Executor = std::function<void(std::function<void()>)>;
// Runs a task on the worker pool after a delay (delivery retries, send_wait).
using Scheduler = std::function<void(std::chrono::milliseconds, std::function<void()>)>;

class OtpService {
public:
    template <typename T>
    using Reply = std::function<void(Outcome<T>)>;

    OtpService(const config::Config& config, store::Store& store, std::map<std::string, channel::Channel*> channels,
               const Clock& clock, SecretBytes pepper, Executor deliveryExecutor, Scheduler scheduler);

    void send(SendInput input, Reply<SendResult> reply);
    void verify(VerifyInput input, Reply<VerifyResult> reply);
    void status(std::string id, Reply<OtpRequest> reply, Caller caller = {});
    void cancel(std::string id, Reply<OtpRequest> reply, Caller caller = {});
    // A bound request's resend must present the context it was bound to (the
    // store keeps only its digest): ContextMismatch otherwise.
    void resend(std::string id, Reply<SendResult> reply, Caller caller = {},
                std::map<std::string, std::string> context = {});
    void deliveries(DeliveryQuery query, Reply<std::vector<DeliveryAttempt>> reply);
    // Sends still to be delivered (one request's, or the soonest due), at most `limit`.
    void deliveryJobs(std::optional<std::string> requestId, int limit, Reply<std::vector<DeliveryJob>> reply);

    // Durable delivery. A send commits its request and a job in one work item;
    // this daemon start holds the job (a lease, renewed while a try is in
    // flight) while it delivers from memory. The sweep claims at most `limit`
    // jobs that are due (a lease that lapsed) or were held by an earlier start
    // on this node, and takes each over: a fresh code replaces the old one's
    // hash (counted as a send, attempts kept) and is delivered; jobs of
    // requests no longer pending end. `done` gets how many were claimed.
    void sweepDeliveries(int limit, std::function<void(int claimed)> done);
    // Ends at most `limit` pending requests past their expiry, so that apps
    // subscribed to verification.expired hear of them without anyone asking
    // (a status or verify would find them expired too). `done` gets how many.
    void sweepExpired(int limit, std::function<void(int ended)> done);
    // Of these request ids, those whose request is gone or no longer pending
    // (at most 1000 looked at): whose outbox messages hold a useless code.
    void endedRequests(std::vector<std::string> ids, Reply<std::vector<std::string>> reply);
    // Called (on the delivery executor) with the id of each request this
    // service moved out of pending: its outbox messages can go.
    void onRequestEnded(std::function<void(const std::string& requestId)> hook) { requestEnded_ = std::move(hook); }
    // Called (on the delivery thread) with each provider attempt as it is
    // logged: the daemon's metrics count them. Set before the first send.
    void onDeliveryAttempt(std::function<void(const DeliveryAttempt&)> hook) { deliveryAttempt_ = std::move(hook); }
    // This daemon start's name in job leases: "NODE/START".
    [[nodiscard]] const std::string& deliveryHolder() const { return holder_; }
    // How long a lease lasts without renewal.
    static constexpr std::int64_t kLeaseSeconds = 30;

    // The WhatsApp opt-out list. Destinations are phone numbers (normalised
    // as at send time); `source` is "cli" or "webhook".
    void optOutAdd(std::string destination, std::string reason, std::string source, Reply<OptOut> reply,
                   std::int64_t uid = -1);
    void optOutRemove(std::string destination, Reply<bool> reply, std::int64_t uid = -1);
    void optOutList(int limit, Reply<std::vector<OptOut>> reply);

    // ---- The email suppression list (suppression.cpp) ----
    // Addresses that bounced for good or whose owner complained get no email:
    // sends and resends to them, and email fallbacks, are refused
    // (Suppressed). An entry holds the keyed hash of the address's match form,
    // never the address. reason: "bounce", "complaint" or "manual"; `note`
    // is kept with it (no personal data).
    void suppressionAdd(std::string address, std::string reason, std::string note, Reply<SuppressionChange> reply,
                        std::int64_t uid = -1);
    void suppressionRemove(std::string address, Reply<bool> reply, std::int64_t uid = -1);
    void suppressionList(int limit, Reply<std::vector<store::Suppression>> reply);
    // A bounce or complaint SES reported: its recipients are suppressed and
    // it counts against the app that sent the message. `done` says whether it was stored.
    void emailFeedback(EmailFeedbackReport report, std::function<void(bool stored)> done);
    // The hash an address is on the suppression list under: of its match form,
    // whatever the app's email_local_part (a mailbox that bounced bounces for every app).
    [[nodiscard]] std::string suppressionHash(const Destination& d) const;

    // The country database behind the apps' client IP country rules; nullptr
    // turns the rules off. Safe to call while sends run (SIGHUP reload).
    void setCountryDatabase(std::shared_ptr<const geo::CountryDatabase> db);

    // A provider's later report on a message it accepted (webhook status updates).
    void providerStatus(ProviderStatus status);

    // The audit log (lib/otp/audit.hpp). Sends, resends, verifies, cancels and
    // opt-out changes write their record in the same store work item as their
    // effect, so a record that cannot be written undoes the operation
    // (AuditFailed). `audit` appends a record of its own, for events decided
    // outside the service: permission denials, the daemon's configuration load
    // and (issue 5) key rotations: call it with event "key-rotation" there.
    // seq, prevHash and hash are filled in; `at` when 0.
    void audit(AuditRecord record, Reply<AuditRecord> reply);
    // Oldest first; limit 1 .. 100000.
    void auditList(AuditQuery query, Reply<std::vector<AuditRecord>> reply);
    // With a checkpoint (every chain's head, taken earlier by auditHeads and
    // kept outside the daemon), also proves that no record up to it was cut.
    void auditVerify(Reply<AuditVerification> reply, std::vector<AuditCheckpoint> checkpoint = {});
    void auditHeads(Reply<std::vector<AuditCheckpoint>> reply);
    // Seals an audit anchor migrated from before anchors were sealed, recording
    // that in the chain. Blocks until committed: for the daemon's start.
    std::optional<AuditRecord> sealLegacyAuditAnchor();
    // Lets a retention purge seal the anchor each cut of the audit log leaves,
    // without the audit key leaving the service's keeping.
    void sealRetention(store::RetentionPolicy& policy) const { policy.auditKey = &auditKey_; }

    // hex HMAC of a normalised destination under the subject key: how stored
    // requests are found without the destination being a lookup key.
    [[nodiscard]] std::string subjectHash(std::string_view normalizedDestination) const;
    // The hash a request of `app` is filed under: of the address's match form
    // unless the app matches local parts exactly (emailMatchForm()).
    [[nodiscard]] std::string subjectHash(const config::App& app, const Destination& d) const;
    // The other hash the same subject of `app` may be filed under: the exact
    // form's, for data stored before local parts were matched without case.
    // Empty when there is none (exact apps, phones, lower-case addresses).
    [[nodiscard]] std::string earlierSubjectHash(const config::App& app, const Destination& d) const;
    // Every hash the subject is filed under in any app, the match form's first.
    [[nodiscard]] std::vector<std::string> subjectHashes(const Destination& d) const;
    [[nodiscard]] std::int64_t now() const { return clock_.now(); }

    // A record of this service's, stamped with the clock.
    // A call over the HTTPS API is recorded with its key: "api key ID" leads the detail.
    [[nodiscard]] AuditRecord auditRecord(std::string event, std::string app, const Caller& caller, std::string outcome,
                                          std::string requestId = {}, std::string subject = {},
                                          std::string detail = {}) const;
    // Queues the event `type` about `r` (as it is after the change) in the
    // same work item, if r's app sends that type ([apps.NAME.events]).
    void emitEvent(store::Transaction& t, const char* type, const OtpRequest& r, std::int64_t now) const;
    // Appends inside a work item; throws AuditWriteError (rolling the item back)
    // when it cannot. Also for other services' work (privacy::SubjectService).
    void record(store::Transaction& t, AuditRecord r) const;
    [[nodiscard]] store::Store& store() const { return store_; }

    // The keys a send counts under in the rate limits and the fraud sets
    // (keyed hashes): also for tools that write a send's rows themselves
    // (bench/prefill.cpp), so their counters are the ones the daemon reads.
    [[nodiscard]] SendKeys sendKeys(const std::string& app, const std::string& subjectHash,
                                    const std::string& clientIp) const;
    [[nodiscard]] FraudKeys fraudKeys(const std::string& app, const std::string& subjectHash,
                                      const std::string& destination, const std::string& clientIp,
                                      const std::string& device, const std::string& requestId) const;

private:
    struct DeliveryRun;
    [[nodiscard]] const config::RateLimits& rateLimits(const std::string& app) const;
    [[nodiscard]] std::optional<Failure> countryRefusal(const config::App& app, const std::string& e164) const;
    [[nodiscard]] std::optional<Failure> ipCountryRefusal(const config::App& app, const std::string& clientIp) const;
    bool tryFallback(const std::shared_ptr<DeliveryRun>& run, const channel::DeliveryResult& result);
    void deliver(OtpRequest request, SecretString code, bool wait, Reply<SendResult> reply, int attemptsSoFar = 0,
                 std::chrono::milliseconds firstIn = std::chrono::milliseconds(0), BoundContext context = {});
    void keepLease(const std::shared_ptr<DeliveryRun>& run, int attempt);
    void requestEnded(const std::string& id);
    void attempt(const std::shared_ptr<DeliveryRun>& run);
    void attemptDone(const std::shared_ptr<DeliveryRun>& run, channel::DeliveryResult result);
    void deliveryRecorded(const std::shared_ptr<DeliveryRun>& run, const channel::DeliveryResult& result,
                          const std::string& logError, std::optional<std::chrono::milliseconds> retryIn);
    void failRequest(const std::shared_ptr<DeliveryRun>& run, const std::string& reason);
    // For refusals decided before any store work: written on its own, not blocking.
    void recordLater(AuditRecord r);

    const config::Config& config_;
    store::Store& store_;
    std::map<std::string, channel::Channel*> channels_;
    const Clock& clock_;
    SecretBytes pepper_;
    SecretBytes subjectKey_;
    SecretBytes limitKey_;  // keys the hashes of client IPs and prefixes in rate counters
    SecretBytes auditKey_;  // seals the audit chain
    SecretBytes bindingKey_;  // keys the digests of bound contexts
    mutable std::mutex geoMutex_;
    std::shared_ptr<const geo::CountryDatabase> geo_;  // guarded by geoMutex_
    Executor executor_;
    Scheduler scheduler_;
    std::string node_;    // this host, the first part of holder_
    std::string holder_;  // this start's lease holder id
    std::function<void(const std::string&)> requestEnded_;
    std::function<void(const DeliveryAttempt&)> deliveryAttempt_;
};

}  // namespace twofactor::otp
