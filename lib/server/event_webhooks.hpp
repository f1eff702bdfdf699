// Delivers the store's queued events to each app's endpoint ([apps.NAME.events]):
// claimed under leases (cluster-safe, taken over after a restart), signed per
// Standard Webhooks, posted over HTTPS with verification on, every try logged,
// retried with backoff and jitter until retry_for, and an endpoint that keeps
// failing disabled until an operator enables it again.
#pragma once

#include "channel/curl_util.hpp"
#include "config/config.hpp"
#include "otp/events.hpp"
#include "store/store.hpp"
#include "util/clock.hpp"
#include "util/secret.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace twofactor::server {

class EventWebhooks {
public:
    using Executor = std::function<void(std::function<void()>)>;

    // Reads every app's signing secret; throws std::runtime_error naming the
    // app and the file when one cannot be read or is not a whsec_ secret.
    EventWebhooks(const config::Config& config, store::Store& store, const Clock& clock, std::string holder,
                  std::string nodePrefix, Executor executor);
    EventWebhooks(const EventWebhooks&) = delete;
    EventWebhooks& operator=(const EventWebhooks&) = delete;

    // Whether any app sends events (else nothing needs to tick).
    [[nodiscard]] bool any() const { return !endpoints_.empty(); }
    // Whether some app wants verification.expired (then expiries are swept).
    [[nodiscard]] bool wantsExpiries() const { return wantsExpiries_; }

    // Claims due events (at most a batch, fewer while many are in flight) and
    // posts each on the executor. Call it from one thread at a time.
    void tick();

    // Each attempt's outcome (metrics), and an endpoint turned off (the alert).
    std::function<void(const otp::EventAttempt&)> onAttempt;
    std::function<void(const std::string& app, int failures, const std::string& error)> onDisabled;

    // Events posted and not yet recorded.
    [[nodiscard]] int inFlight() const { return inFlight_.load(); }

private:
    struct Endpoint {
        const config::AppEvents* config = nullptr;
        SecretBytes secret;
    };
    struct Result {
        int statusCode = 0;
        std::int64_t durationMs = 0;
        std::string error;  // empty: delivered (2xx)
    };
    void deliver(otp::EventJob job);
    Result post(const Endpoint& endpoint, const otp::EventJob& job, std::int64_t timestamp);
    void record(otp::EventJob job, Result result, std::int64_t at);

    static constexpr int kBatch = 32;
    static constexpr int kMaxInFlight = 64;

    const config::Config& config_;
    store::Store& store_;
    const Clock& clock_;
    std::string holder_;
    std::string nodePrefix_;
    Executor executor_;
    std::map<std::string, Endpoint> endpoints_;
    bool wantsExpiries_ = false;
    channel::CurlHandlePool curlPool_;
    std::atomic<int> inFlight_{0};
};

}  // namespace twofactor::server
