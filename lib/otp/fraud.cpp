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
        const auto members = store.findFraudMembers(s.rule, s.key, now - window);
        std::vector<std::int64_t> times;
        for (const auto& [member, at] : members)
            if (member != s.member) times.push_back(at);
        // This send's member counts once, seen now, whether new or seen before.
        const auto count = static_cast<std::int64_t>(times.size()) + 1;
        if (count <= s.config->threshold) continue;
        if (!s.config->block) {
            verdict.flagged.emplace_back(s.rule);
            continue;
        }
        if (verdict.block) continue;
        // Retry once enough of the others have left the window to bring the count back to the threshold.
        std::sort(times.begin(), times.end());
        const auto k = static_cast<std::size_t>(count - s.config->threshold);  // 1 .. times.size()
        const std::int64_t leaves = times[std::min(k, times.size()) - 1] + window;
        verdict.block = Refusal{std::string("fraud:") + s.rule, std::clamp<std::int64_t>(leaves - now, 1, window)};
    }
    return verdict;
}

void recordFraud(FraudStore& store, const config::FraudRules& rules, const FraudKeys& keys, std::int64_t now) {
    for (const auto& s : applicable(rules, keys))
        store.putFraudMember(s.rule, s.key, s.member, now, now + s.config->window.count());
}

std::string destinationPrefix(const std::string& d) {
    if (const auto at = d.rfind('@'); at != std::string::npos) return d.substr(at + 1);
    if (d.size() > 4 && d[0] == '+') return d.substr(0, d.size() - 3);
    return "";
}

}  // namespace twofactor::otp
