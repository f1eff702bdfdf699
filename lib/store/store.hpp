// The store behind one interface: request logic talks to Store/Transaction only,
// so another backend can be added without touching it.
#pragma once

#include "otp/audit.hpp"
#include "otp/fraud.hpp"
#include "otp/limits.hpp"
#include "otp/request.hpp"

#include <exception>
#include <functional>
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
};

struct CallQuery {
    std::optional<std::int64_t> since;  // at >= since
    std::optional<std::int64_t> until;  // at < until
    int limit = 1000;                   // the newest that match, returned oldest first
};

// Retention (issue 5): what one purge removes, per category.
enum class PurgeKind {
    CodeHashes,       // requests.code_hash of requests finished or expired before the cutoff
    Deliveries,       // deliveries rows logged before the cutoff
    RequestLog,       // request_log rows before the cutoff
    ClientData,       // requests.client_ip and requests.device of requests created before the cutoff
    RateCounters,     // rate_counters whose last send is a day old (every window is at most a day)
    FraudSets,        // fraud_sets members past their expiry
    SubjectFailures,  // subject_failures of subjects not locked and without a request since the cutoff
};
inline constexpr PurgeKind kPurgeKinds[] = {PurgeKind::CodeHashes,   PurgeKind::Deliveries, PurgeKind::RequestLog,
                                            PurgeKind::ClientData,   PurgeKind::RateCounters, PurgeKind::FraudSets,
                                            PurgeKind::SubjectFailures};
// The category's name in Varlink replies, the CLI and retention_runs.
[[nodiscard]] const char* purgeKindName(PurgeKind kind);

struct PurgeCounts {
    std::int64_t codeHashes = 0;
    std::int64_t deliveries = 0;
    std::int64_t requestLog = 0;
    std::int64_t clientData = 0;
    std::int64_t rateCounters = 0;
    std::int64_t fraudSets = 0;
    std::int64_t subjectFailures = 0;
    std::int64_t& operator[](PurgeKind k);
    std::int64_t operator[](PurgeKind k) const { return const_cast<PurgeCounts&>(*this)[k]; }
    [[nodiscard]] std::int64_t total() const;
};

// Retention periods in seconds ([retention] in twofactord.toml(5)).
struct RetentionPolicy {
    std::int64_t codeHashes = 86400;
    std::int64_t deliveryLogs = 90 * 86400;
};

// One recorded retention run.
struct RetentionRun {
    std::int64_t id = 0;
    std::int64_t started = 0;
    std::int64_t finished = 0;
    std::string trigger;  // "schedule" or "manual"
    PurgeCounts counts;
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
    virtual void updateRequest(const otp::OtpRequest& request) = 0;

    virtual void insertDeliveryAttempt(const otp::DeliveryAttempt& attempt) = 0;
    // Oldest first, at most query.limit rows (the newest ones when more match).
    [[nodiscard]] virtual std::vector<otp::DeliveryAttempt> findDeliveryAttempts(const otp::DeliveryQuery& query) = 0;
    // Returns whether a logged attempt carries that provider message id.
    virtual bool updateDeliveryStatus(const otp::ProviderStatus& status) = 0;

    [[nodiscard]] virtual std::optional<otp::OptOut> findOptOut(std::string_view subjectHash) = 0;
    virtual void putOptOut(const otp::OptOut& entry) = 0;  // adds or replaces
    virtual bool removeOptOut(std::string_view subjectHash) = 0;
    [[nodiscard]] virtual std::vector<otp::OptOut> listOptOuts(int limit) = 0;

    virtual void insertCall(const CallRecord& call) = 0;
    [[nodiscard]] virtual std::vector<CallRecord> findCalls(const CallQuery& query) = 0;

    // Retention: purges (or, with dryRun, counts) at most `limit` rows of one
    // category; `now` and the policy give the cutoffs. Returns the rows affected.
    virtual std::int64_t purgeStep(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy, int limit,
                                   bool dryRun) = 0;
    virtual void insertRetentionRun(const RetentionRun& run) = 0;
    [[nodiscard]] virtual std::optional<RetentionRun> lastRetentionRun() = 0;
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
    virtual void submit(Work work, Done done) = 0;

    // Queues a WAL checkpoint (TRUNCATE) on the writer's connection, outside
    // any transaction, after the work queued before it.
    virtual void checkpoint(Done done) = 0;

    // Stops the writer after the queued work is done.
    virtual void close() = 0;

    [[nodiscard]] virtual std::string description() const = 0;
};

// Runs work and waits for its commit; rethrows its error. For tests, tools and benchmarks.
template <typename F>
auto runSync(Store& store, F&& f) -> decltype(f(std::declval<Transaction&>())) {
    using R = decltype(f(std::declval<Transaction&>()));
    std::promise<void> committed;
    auto future = committed.get_future();
    if constexpr (std::is_void_v<R>) {
        store.submit([&](Transaction& t) { f(t); },
                     [&](std::exception_ptr e) { e ? committed.set_exception(e) : committed.set_value(); });
        future.get();
    } else {
        std::optional<R> result;
        store.submit([&](Transaction& t) { result.emplace(f(t)); },
                     [&](std::exception_ptr e) { e ? committed.set_exception(e) : committed.set_value(); });
        future.get();
        return std::move(*result);
    }
}

// Runs a retention purge: each batch of at most batchSize rows is its own
// work item, so other work interleaves. With dryRun, counts what would go and
// changes nothing. Then checkpoints the WAL (not on a dry run). `progress`, if
// set, is called after each batch with the counts so far. Blocks: call it off
// the I/O thread.
PurgeCounts purge(Store& store, std::int64_t now, const RetentionPolicy& policy, int batchSize, bool dryRun,
                  const std::function<void(const PurgeCounts&)>& progress = {});

}  // namespace twofactor::store
