// What twofactord counts for Prometheus, and the text exposition of it. The
// rendering is a plain function of a snapshot, so any HTTP server can serve
// it; the daemon serves it with its HTTP server (lib/http), in plain HTTP
// for [metrics] listen and at /metrics of the HTTPS API.
//
// No personal data in labels: every label takes its value from a small
// closed set the daemon itself names (channels, drivers, outcomes), and a
// family holds at most kMaxSeries label sets, beyond which counts go to
// "other", so nothing a caller sends can grow the series without bound.
#pragma once

#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace twofactor::server::metrics {

// Upper bounds of the provider request duration histogram, in seconds.
inline constexpr std::array<double, 10> kDurationBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr std::size_t kMaxSeries = 64;

struct Histogram {
    std::array<std::uint64_t, kDurationBuckets.size()> buckets{};  // cumulative counts come at rendering
    std::uint64_t count = 0;
    double sum = 0;
    void observe(double seconds);
};

struct Snapshot {
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> deliveries;  // channel, driver, outcome
    std::map<std::tuple<std::string, std::string>, Histogram> providerDurations;           // channel, driver
    std::map<std::string, std::uint64_t> verifications;                                   // outcome
    std::map<std::string, std::uint64_t> refusals;                                        // limit
    std::uint64_t sends = 0;
    std::map<std::string, std::uint64_t> eventAttempts;  // outcome: delivered, retry, failed, disabled
    std::int64_t eventEndpointsDisabled = 0;
    std::int64_t storeQueueDepth = 0;
    std::string version;
    double startTime = 0;  // Unix seconds
};

// Thread-safe counters: delivery threads and the event loop count into it.
class Registry {
public:
    // One provider attempt: "accepted", "retry" or "failed", and how long the provider took.
    void delivery(std::string_view channel, std::string_view driver, std::string_view outcome, double seconds);
    // One Verify call's outcome: "approved", "rejected", "locked", "expired", ...
    void verification(std::string_view outcome);
    // One call refused by a limit: the limit's scope ("destination", "ip", "fraud", "busy", ...).
    void refusal(std::string_view limit);
    void send();
    // One try to deliver an event webhook, by its outcome (otp::EventAttempt).
    void eventAttempt(std::string_view outcome);
    // How many apps' event endpoints are disabled now (the operator's alert).
    void eventEndpointsDisabled(std::int64_t n);

    [[nodiscard]] Snapshot snapshot() const;

private:
    mutable std::mutex mutex_;
    Snapshot counts_;
};

// The Prometheus text exposition format (version 0.0.4) of a snapshot.
[[nodiscard]] std::string render(const Snapshot& snapshot);

// A label value as the exposition format writes it: backslash, double quote
// and newline escaped.
[[nodiscard]] std::string escapeLabel(std::string_view value);

// io.twofactor.Daemon.Stats's reply from a bounded sample of the logs
// (newest first, at most `limit` rows each).
[[nodiscard]] nlohmann::json summarizeActivity(const store::ActivityQuery& query,
                                               const std::vector<store::ActivityDelivery>& deliveries,
                                               const std::vector<store::ActivityEvent>& events);

}  // namespace twofactor::server::metrics
