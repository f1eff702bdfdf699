#include "server/metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace twofactor::server::metrics {

namespace {

// The closed set of characters a label value may carry; anything else (a
// misconfigured driver name, say) is replaced, so a label cannot carry text
// from outside the daemon.
std::string labelValue(std::string_view v) {
    std::string out;
    for (char c : v.substr(0, 40)) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '_' || c == '.' || c == ':';
        out.push_back(ok ? c : '_');
    }
    return out.empty() ? "none" : out;
}

template <typename Map, typename Key>
typename Map::mapped_type& series(Map& map, Key key, Key other) {
    if (auto it = map.find(key); it != map.end()) return it->second;
    if (map.size() >= kMaxSeries) return map[other];
    return map[key];
}

std::string number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

}  // namespace

void Histogram::observe(double seconds) {
    for (std::size_t i = 0; i < kDurationBuckets.size(); ++i)
        if (seconds <= kDurationBuckets[i]) {
            ++buckets[i];
            break;
        }
    ++count;
    sum += seconds;
}

void Registry::delivery(std::string_view channel, std::string_view driver, std::string_view outcome, double seconds) {
    std::lock_guard lock(mutex_);
    const std::string c = labelValue(channel), d = labelValue(driver);
    ++series(counts_.deliveries, std::tuple{c, d, labelValue(outcome)},
             std::tuple<std::string, std::string, std::string>{"other", "other", "other"});
    series(counts_.providerDurations, std::tuple{c, d}, std::tuple<std::string, std::string>{"other", "other"})
        .observe(seconds);
}

void Registry::verification(std::string_view outcome) {
    std::lock_guard lock(mutex_);
    ++series(counts_.verifications, labelValue(outcome), std::string("other"));
}

void Registry::refusal(std::string_view limit) {
    std::lock_guard lock(mutex_);
    ++series(counts_.refusals, labelValue(limit), std::string("other"));
}

void Registry::send() {
    std::lock_guard lock(mutex_);
    ++counts_.sends;
}

void Registry::eventAttempt(std::string_view outcome) {
    std::lock_guard lock(mutex_);
    ++series(counts_.eventAttempts, labelValue(outcome), std::string("other"));
}

void Registry::eventEndpointsDisabled(std::int64_t n) {
    std::lock_guard lock(mutex_);
    counts_.eventEndpointsDisabled = n;
}

Snapshot Registry::snapshot() const {
    std::lock_guard lock(mutex_);
    return counts_;
}

std::string escapeLabel(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out.push_back(c);
    }
    return out;
}

nlohmann::json summarizeActivity(const store::ActivityQuery& q, const std::vector<store::ActivityDelivery>& deliveries,
                                 const std::vector<store::ActivityEvent>& events) {
    using nlohmann::json;
    std::map<std::tuple<std::string, std::string, std::string>, std::int64_t> byOutcome;
    std::vector<std::int64_t> durations;
    std::int64_t accepted = 0, failed = 0;
    for (const auto& d : deliveries) {
        ++byOutcome[{d.channel, d.driver, d.outcome}];
        durations.push_back(d.durationMs);
        if (d.outcome == "accepted") ++accepted;
        else if (d.outcome == "failed") ++failed;
    }
    std::map<std::string, std::int64_t> verifications, refusals;
    std::int64_t sends = 0;
    for (const auto& e : events) {
        const bool refused = e.outcome.rfind("refused:", 0) == 0;
        if ((e.event == "send" || e.event == "resend") && e.outcome == "success") ++sends;
        if (e.event == "verify") ++verifications[e.outcome];
        if (refused && (e.event == "send" || e.event == "resend" || e.event == "verify"))
            ++refusals[e.outcome.substr(8)];
    }
    const auto limit = static_cast<std::size_t>(q.limit);
    const bool sampled = deliveries.size() >= limit || events.size() >= limit;
    // Sampled: the figures hold from the newer of the two logs' oldest rows read.
    std::int64_t coveredFrom = q.since;
    if (deliveries.size() >= limit) coveredFrom = std::max(coveredFrom, deliveries.back().at);
    if (events.size() >= limit) coveredFrom = std::max(coveredFrom, events.back().at);

    json out = {{"since", q.since}, {"until", q.until}, {"sends", sends}, {"sampled", sampled},
                {"coveredFrom", coveredFrom}};
    json d = json::array();
    for (const auto& [k, n] : byOutcome)
        d.push_back({{"channel", std::get<0>(k)}, {"driver", std::get<1>(k)}, {"outcome", std::get<2>(k)}, {"count", n}});
    out["deliveries"] = d;
    if (accepted + failed > 0) out["deliverySuccessRate"] = static_cast<double>(accepted) / static_cast<double>(accepted + failed);
    if (!durations.empty()) {
        std::sort(durations.begin(), durations.end());
        // Nearest rank: the smallest value with at least p of the sample at or below it.
        auto rank = [&](double p) {
            const auto n = durations.size();
            auto i = static_cast<std::size_t>(p * static_cast<double>(n) + 0.999999);
            return durations[std::clamp<std::size_t>(i, 1, n) - 1];
        };
        out["providerLatencyP50Ms"] = rank(0.50);
        out["providerLatencyP99Ms"] = rank(0.99);
    }
    json v = json::array(), r = json::array();
    for (const auto& [k, n] : verifications) v.push_back({{"outcome", k}, {"count", n}});
    for (const auto& [k, n] : refusals) r.push_back({{"outcome", k}, {"count", n}});
    out["verifications"] = v;
    out["refusals"] = r;
    return out;
}

std::string render(const Snapshot& s) {
    std::string out;
    auto label = [](const char* k, const std::string& v) { return std::string(k) + "=\"" + escapeLabel(v) + "\""; };

    header(out, "twofactor_build_info", "gauge", "Always 1; the version of the running twofactord.");
    out += "twofactor_build_info{" + label("version", s.version) + "} 1\n";
    header(out, "twofactor_start_time_seconds", "gauge", "When this twofactord started, in Unix seconds.");
    out += "twofactor_start_time_seconds " + number(s.startTime) + "\n";

    header(out, "twofactor_sends_total", "counter", "Codes issued and queued for delivery (first sends and resends).");
    out += "twofactor_sends_total " + std::to_string(s.sends) + "\n";

    header(out, "twofactor_deliveries_total", "counter",
           "Provider delivery attempts by channel, driver and outcome (accepted, retry, failed).");
    for (const auto& [k, n] : s.deliveries)
        out += "twofactor_deliveries_total{" + label("channel", std::get<0>(k)) + "," + label("driver", std::get<1>(k)) +
               "," + label("outcome", std::get<2>(k)) + "} " + std::to_string(n) + "\n";

    header(out, "twofactor_provider_request_duration_seconds", "histogram",
           "How long a provider took to take or refuse a message, per delivery attempt.");
    for (const auto& [k, h] : s.providerDurations) {
        const std::string labels = label("channel", std::get<0>(k)) + "," + label("driver", std::get<1>(k));
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
            cumulative += h.buckets[i];
            out += "twofactor_provider_request_duration_seconds_bucket{" + labels + ",le=\"" +
                   number(kDurationBuckets[i]) + "\"} " + std::to_string(cumulative) + "\n";
        }
        out += "twofactor_provider_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " +
               std::to_string(h.count) + "\n";
        out += "twofactor_provider_request_duration_seconds_sum{" + labels + "} " + number(h.sum) + "\n";
        out += "twofactor_provider_request_duration_seconds_count{" + labels + "} " + std::to_string(h.count) + "\n";
    }

    header(out, "twofactor_verifications_total", "counter", "Verify calls by outcome.");
    for (const auto& [k, n] : s.verifications)
        out += "twofactor_verifications_total{" + label("outcome", k) + "} " + std::to_string(n) + "\n";

    header(out, "twofactor_refusals_total", "counter", "Send and verify calls refused, by the limit that refused them.");
    for (const auto& [k, n] : s.refusals)
        out += "twofactor_refusals_total{" + label("limit", k) + "} " + std::to_string(n) + "\n";

    header(out, "twofactor_event_deliveries_total", "counter",
           "Event webhook delivery attempts by outcome (delivered, retry, failed, disabled).");
    for (const auto& [k, n] : s.eventAttempts)
        out += "twofactor_event_deliveries_total{" + label("outcome", k) + "} " + std::to_string(n) + "\n";
    header(out, "twofactor_event_endpoints_disabled", "gauge",
           "Apps whose event endpoint is disabled after repeated failures (twofactor events enable APP).");
    out += "twofactor_event_endpoints_disabled " + std::to_string(s.eventEndpointsDisabled) + "\n";

    header(out, "twofactor_store_queue_depth", "gauge", "Work items waiting for the store's writer.");
    out += "twofactor_store_queue_depth " + std::to_string(s.storeQueueDepth) + "\n";
    return out;
}

}  // namespace twofactor::server::metrics
