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
#include <vector>

namespace twofactor::otp {

// One velocity set's members seen within a window. Members and keys are keyed
// hashes (or random send ids): no address, IP or device text in clear. The
// store answers in outcomes bounded by the rule's threshold, never by handing
// out the set: a set keyed by a busy value can hold a member per send, and a
// check must cost the same whatever it holds.
class FraudStore {
public:
    virtual ~FraudStore() = default;
    // How many members of set (rule, key) other than `except` were last seen
    // after `since`, counting no further than `cap`.
    [[nodiscard]] virtual std::int64_t countFraudMembers(std::string_view rule, std::string_view key,
                                                         std::string_view except, std::int64_t since,
                                                         std::int64_t cap) = 0;
    // When the n-th most recently seen (n >= 1) of those members was last
    // seen; nullopt when there are fewer than n.
    [[nodiscard]] virtual std::optional<std::int64_t> fraudMemberSeen(std::string_view rule, std::string_view key,
                                                                      std::string_view except, std::int64_t since,
                                                                      std::int64_t n) = 0;
    // Adds or refreshes a member, to be forgotten from `expiresAt` on (the
    // retention purge deletes it then; the queries above never read members
    // that left the window, so nothing is deleted per call).
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
// digits ("+4915112345678" -> "+4915112345"). Empty for an email address: the
// rule watches for pumping of premium-rate number ranges, which email has no
// counterpart of, and a domain such as gmail.com is no range but a large
// share of all traffic (the rule would fire on ordinary use).
[[nodiscard]] std::string destinationPrefix(const std::string& normalizedDestination);

}  // namespace twofactor::otp
