// Rate limits and the per-subject failure lockout (issue 6), as pure
// functions over a small store interface. The service calls them inside the
// same store work item as the insert, resend or verify they guard, so
// concurrent calls cannot overshoot a cap and a refusal stores nothing.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// One counter of a send: its scope, its key and the length of its window.
// `spreadCap` > 0 marks a counter every send of an app touches (the app-wide
// cap, of that many sends): a store with concurrent writers may keep it in
// shares of the cap, each share counted and locked on its own, so that the
// sends of one app do not queue on one row (see LimitStore::countSendsIf).
struct RateKey {
    const char* scope;
    std::string key;
    std::int64_t window;
    std::int64_t spreadCap = 0;
};

// A counter after one more send at `now`, for stores that count in code: a
// window fully in the past (or no counter yet) starts again at `now`.
[[nodiscard]] RateCounter countOneSend(const std::optional<RateCounter>& counter, std::int64_t window,
                                       std::int64_t now);

// What the limits need from the store. store::Transaction implements it.
// Each method is an outcome, not a read followed by a write, so the limits
// stay exact when several writers (nodes on one database) count at once.
class LimitStore {
public:
    using RateDecision = std::function<bool(const std::vector<std::optional<RateCounter>>&)>;
    virtual ~LimitStore() = default;
    // Reads the counters, which no other writer changes until this work item
    // ends, and passes them to `admit` in the order of `keys` (nullopt for one
    // never counted). When `admit` says yes, counts one send at `now` in each:
    // a counter whose window is over starts a new window at `now`. Returns
    // whether it counted. A store may keep a counter with spreadCap in
    // shares whose caps add up to spreadCap; it then passes a share with room
    // (count below spreadCap; counting goes to that share), or, when every
    // share is full, a counter with count = spreadCap and the window of the
    // share that starts again first. Either way at most spreadCap sends are
    // admitted per window, and a send is refused only when all are taken.
    virtual bool countSendsIf(const std::vector<RateKey>& keys, std::int64_t now, const RateDecision& admit) = 0;
    [[nodiscard]] virtual std::optional<SubjectFailures> findSubjectFailures(std::string_view app,
                                                                             std::string_view subjectHash) = 0;
    // Counts one more consecutive failure and returns the new count.
    virtual std::int64_t countSubjectFailure(std::string_view app, std::string_view subjectHash) = 0;
    // Refuses verifies until `until`; a later lock already set stays.
    virtual void lockSubject(std::string_view app, std::string_view subjectHash, std::int64_t until) = 0;
    // A correct code: the subject's failures are forgotten.
    virtual void clearSubjectFailures(std::string_view app, std::string_view subjectHash) = 0;
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
