// Rate limits and the per-subject failure lockout (issue 6), as pure
// functions over a small store interface. The service calls them inside the
// same store work item as the insert, resend or verify they guard, so
// concurrent calls cannot overshoot a cap and a refusal stores nothing.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace twofactor::otp {

// A fixed-window counter: sends since windowStart, and the time of the last one.
struct RateCounter {
    std::int64_t windowStart = 0;
    std::int64_t count = 0;
    std::int64_t lastAt = 0;
};

// Consecutive failed verifies of one subject in one app, and until when
// further verifies are refused (0 = not locked).
struct SubjectFailures {
    std::int64_t failures = 0;
    std::int64_t lockedUntil = 0;
};

// What the limits need from the store. store::Transaction implements it.
class LimitStore {
public:
    virtual ~LimitStore() = default;
    [[nodiscard]] virtual std::optional<RateCounter> findRateCounter(std::string_view scope, std::string_view key) = 0;
    virtual void putRateCounter(std::string_view scope, std::string_view key, const RateCounter& counter) = 0;
    [[nodiscard]] virtual std::optional<SubjectFailures> findSubjectFailures(std::string_view app,
                                                                             std::string_view subjectHash) = 0;
    // Adds or replaces; failures == 0 removes the row.
    virtual void putSubjectFailures(std::string_view app, std::string_view subjectHash, const SubjectFailures& f) = 0;
};

// A refusal: the scope named in the RateLimited error and seconds until a retry can succeed (>= 1).
struct Refusal {
    std::string scope;  // destination-cooldown, destination, ip, prefix, app, subject-lockout
    std::int64_t retryAfter = 1;
};

// The counter keys of one send. All but `app` are keyed hashes: no address or
// IP is stored in clear. ip and prefix are empty when the caller gave no IP.
struct SendKeys {
    std::string app;
    std::string destination;  // the subject hash
    std::string ip;
    std::string prefix;
};

// Checks every send limit (cooldown and cap per destination, per IP, per
// prefix, per app); when none refuses, counts the send in each. On a refusal
// nothing is counted.
[[nodiscard]] std::optional<Refusal> admitSend(LimitStore& store, const config::RateLimits& limits,
                                               const SendKeys& keys, std::int64_t now);
// The same checks without counting: whether admitSend would refuse. For a
// send that other checks (fraud rules) may still refuse after the limits.
[[nodiscard]] std::optional<Refusal> checkSend(LimitStore& store, const config::RateLimits& limits,
                                               const SendKeys& keys, std::int64_t now);

// Whether a verify for this subject may go ahead (not while locked out).
[[nodiscard]] std::optional<Refusal> checkVerify(LimitStore& store, std::string_view app,
                                                 std::string_view subjectHash, std::int64_t now);
// A wrong code: one more consecutive failure; from max_subject_failures on,
// each failure locks the subject for subject_lockout, doubling, capped at
// subject_max_lockout. Issuing a new code does not touch this.
void recordVerifyFailure(LimitStore& store, const config::RateLimits& limits, std::string_view app,
                         std::string_view subjectHash, std::int64_t now);
// A correct code: the count starts again.
void recordVerifySuccess(LimitStore& store, std::string_view app, std::string_view subjectHash);

// The network of an IP address: "a.b.c.0/24" for IPv4 (and IPv4-mapped
// IPv6), "x:x:x:x::/64" for IPv6; "" when not an address.
[[nodiscard]] std::string networkPrefix(const std::string& ip);

}  // namespace twofactor::otp
