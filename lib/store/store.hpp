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

}  // namespace twofactor::store
