#include "otp/fraud.hpp"

#include <algorithm>

namespace twofactor::otp {

namespace {

struct Set {
    const char* rule;
    const config::FraudRule* config;
    std::string key;
    std::string member;
};

std::vector<Set> applicable(const config::FraudRules& rules, const FraudKeys& k) {
    std::vector<Set> sets;
    if (!k.ip.empty())
        sets.push_back({kDistinctDestinationsPerIp, &rules.distinctDestinationsPerIp, k.app + "/" + k.ip,
                        k.destination});
    if (!k.device.empty())
        sets.push_back({kDistinctDevicesPerDestination, &rules.distinctDevicesPerDestination,
                        k.app + "/" + k.destination, k.device});
    if (!k.prefix.empty())
        sets.push_back({kDestinationPrefix, &rules.destinationPrefix, k.app + "/" + k.prefix, k.sendId});
    return sets;
}

}  // namespace

FraudVerdict checkFraud(FraudStore& store, const config::FraudRules& rules, const FraudKeys& keys, std::int64_t now) {
    FraudVerdict verdict;
    for (const auto& s : applicable(rules, keys)) {
        const std::int64_t window = s.config->window.count();
        const std::int64_t threshold = s.config->threshold;
        // This send's member counts once, seen now, whether new or seen
        // before; the rule fires once `threshold` others are in the window.
        const std::int64_t others = store.countFraudMembers(s.rule, s.key, s.member, now - window, threshold);
        if (others + 1 <= threshold) continue;
        if (!s.config->block) {
            verdict.flagged.emplace_back(s.rule);
            continue;
        }
        if (verdict.block) continue;
        // The count is back at the threshold once only threshold - 1 others
        // remain: when the threshold-th most recent one leaves the window.
        std::int64_t retryAfter = window;
        if (threshold >= 1)
            if (const auto seen = store.fraudMemberSeen(s.rule, s.key, s.member, now - window, threshold))
                retryAfter = std::clamp<std::int64_t>(*seen + window - now, 1, window);
        verdict.block = Refusal{std::string("fraud:") + s.rule, retryAfter};
    }
    return verdict;
}

void recordFraud(FraudStore& store, const config::FraudRules& rules, const FraudKeys& keys, std::int64_t now) {
    for (const auto& s : applicable(rules, keys))
        store.putFraudMember(s.rule, s.key, s.member, now, now + s.config->window.count());
}

std::string destinationPrefix(const std::string& d) {
    if (d.find('@') != std::string::npos) return "";
    if (d.size() > 4 && d[0] == '+') return d.substr(0, d.size() - 3);
    return "";
}

}  // namespace twofactor::otp
