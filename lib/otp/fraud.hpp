// Fraud signals (issue 6): velocity rules over small per-window sets of keyed
// hashes. Pure logic over a small store interface, like the rate limits: the
// service checks them inside the same store work item as the insert, after
// the opt-out list and the rate limits, so concurrent sends cannot slip past
// a rule and a block stores nothing.
#pragma once

#include "config/config.hpp"
#include "otp/limits.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twofactor::otp {

// One velocity set's members seen within a window. Members and keys are keyed
// hashes (or random send ids): no address, IP or device text in clear.
class FraudStore {
public:
    virtual ~FraudStore() = default;
    // The members of set (rule, key) last seen after `since`, with when.
    [[nodiscard]] virtual std::vector<std::pair<std::string, std::int64_t>> findFraudMembers(
        std::string_view rule, std::string_view key, std::int64_t since) = 0;
    // Adds or refreshes a member, to be forgotten from `expiresAt` on; drops
    // the members of this set that expired by `at`.
    virtual void putFraudMember(std::string_view rule, std::string_view key, std::string_view member,
                                std::int64_t at, std::int64_t expiresAt) = 0;
};

// The rules' names, as in [apps.NAME.fraud] and in "flagged:<rule>" / "fraud:<rule>".
inline constexpr const char* kDistinctDestinationsPerIp = "distinct_destinations_per_ip";
inline constexpr const char* kDistinctDevicesPerDestination = "distinct_devices_per_destination";
inline constexpr const char* kDestinationPrefix = "destination_prefix";

// What one send brings to the rules, all keyed hashes but `app` and `sendId`
// (a random id of this send). Empty ip / device / prefix: that rule does not apply.
struct FraudKeys {
    std::string app;
    std::string destination;  // the subject hash
    std::string ip;
    std::string device;
    std::string prefix;  // of the destination (see destinationPrefix)
    std::string sendId;
};

struct FraudVerdict {
    std::vector<std::string> flagged;  // rules with action "flag" that fired
    std::optional<Refusal> block;      // the first rule with action "block" that fired: scope "fraud:<rule>"
};

// Read only: which rules fire for this send. A rule fires when, counting this
// send, more than `threshold` distinct members (destinations per IP, devices
// per destination; sends per destination prefix) fall within its window.
[[nodiscard]] FraudVerdict checkFraud(FraudStore& store, const config::FraudRules& rules, const FraudKeys& keys,
                                      std::int64_t now);
// Counts an admitted send in every applicable set.
void recordFraud(FraudStore& store, const config::FraudRules& rules, const FraudKeys& keys, std::int64_t now);

// The range a destination belongs to: an E.164 number without its last 3
// digits ("+4915112345678" -> "+4915112345"), an email address's domain.
[[nodiscard]] std::string destinationPrefix(const std::string& normalizedDestination);

}  // namespace twofactor::otp
