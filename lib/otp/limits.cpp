#include "otp/limits.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace twofactor::otp {

namespace {

struct Check {
    const char* scope;
    std::string key;
    int max;
    std::int64_t window;
};

std::string counterKey(const std::string& app, const std::string& hash) { return app + "/" + hash; }

// A window that started in the "future" (the clock was set back) still counts:
// only a window fully in the past is over.
bool windowOver(const RateCounter& c, std::int64_t window, std::int64_t now) { return now >= c.windowStart + window; }

}  // namespace

namespace {

std::optional<Refusal> sendLimits(LimitStore& store, const config::RateLimits& limits, const SendKeys& keys,
                                  std::int64_t now, bool count) {
    std::vector<Check> checks;
    checks.push_back({"destination", counterKey(keys.app, keys.destination), limits.destinationSends,
                      limits.destinationWindow.count()});
    if (!keys.ip.empty())
        checks.push_back({"ip", counterKey(keys.app, keys.ip), limits.ipSends, limits.ipWindow.count()});
    if (!keys.prefix.empty())
        checks.push_back(
            {"prefix", counterKey(keys.app, keys.prefix), limits.prefixSends, limits.prefixWindow.count()});
    checks.push_back({"app", keys.app, limits.appSends, limits.appWindow.count()});

    std::vector<std::optional<RateCounter>> found;
    found.reserve(checks.size());
    for (const auto& c : checks) found.push_back(store.findRateCounter(c.scope, c.key));

    // The cooldown first: it is the most specific answer for a caller resending too fast.
    const auto cooldown = limits.resendCooldown.count();
    if (cooldown > 0 && found[0] && found[0]->count > 0) {
        const std::int64_t since = now - found[0]->lastAt;
        if (since < cooldown) return Refusal{"destination-cooldown", std::min(cooldown, cooldown - since)};
    }
    for (std::size_t i = 0; i < checks.size(); ++i) {
        const auto& c = found[i];
        if (!c || windowOver(*c, checks[i].window, now)) continue;
        if (c->count >= checks[i].max)
            return Refusal{checks[i].scope, std::clamp<std::int64_t>(c->windowStart + checks[i].window - now, 1,
                                                                     checks[i].window)};
    }
    if (!count) return std::nullopt;
    for (std::size_t i = 0; i < checks.size(); ++i) {
        RateCounter c = found[i].value_or(RateCounter{});
        if (!found[i] || windowOver(c, checks[i].window, now)) c = RateCounter{now, 0, 0};
        ++c.count;
        c.lastAt = now;
        store.putRateCounter(checks[i].scope, checks[i].key, c);
    }
    return std::nullopt;
}

}  // namespace

std::optional<Refusal> admitSend(LimitStore& store, const config::RateLimits& limits, const SendKeys& keys,
                                 std::int64_t now) {
    return sendLimits(store, limits, keys, now, true);
}

std::optional<Refusal> checkSend(LimitStore& store, const config::RateLimits& limits, const SendKeys& keys,
                                 std::int64_t now) {
    return sendLimits(store, limits, keys, now, false);
}

std::optional<Refusal> checkVerify(LimitStore& store, std::string_view app, std::string_view subjectHash,
                                   std::int64_t now) {
    const auto f = store.findSubjectFailures(app, subjectHash);
    if (f && f->lockedUntil > now) return Refusal{"subject-lockout", f->lockedUntil - now};
    return std::nullopt;
}

void recordVerifyFailure(LimitStore& store, const config::RateLimits& limits, std::string_view app,
                         std::string_view subjectHash, std::int64_t now) {
    SubjectFailures f = store.findSubjectFailures(app, subjectHash).value_or(SubjectFailures{});
    ++f.failures;
    if (f.failures >= limits.maxSubjectFailures) {
        // The n-th failure past the threshold locks for lockout * 2^n, capped.
        const std::int64_t beyond = f.failures - limits.maxSubjectFailures;
        const std::int64_t cap = limits.subjectMaxLockout.count();
        std::int64_t delay = limits.subjectLockout.count();
        for (std::int64_t i = 0; i < beyond && delay < cap; ++i) delay *= 2;
        f.lockedUntil = now + std::min(delay, cap);
    }
    store.putSubjectFailures(app, subjectHash, f);
}

void recordVerifySuccess(LimitStore& store, std::string_view app, std::string_view subjectHash) {
    store.putSubjectFailures(app, subjectHash, SubjectFailures{});
}

std::string networkPrefix(const std::string& ip) {
    std::array<unsigned char, 16> b{};
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_pton(AF_INET, ip.c_str(), b.data()) == 1) {
        b[3] = 0;
        inet_ntop(AF_INET, b.data(), text, sizeof text);
        return std::string(text) + "/24";
    }
    if (inet_pton(AF_INET6, ip.c_str(), b.data()) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(b.data(), mapped, 12) == 0) {
            b[15] = 0;
            inet_ntop(AF_INET, b.data() + 12, text, sizeof text);
            return std::string(text) + "/24";
        }
        std::fill(b.begin() + 8, b.end(), 0);
        inet_ntop(AF_INET6, b.data(), text, sizeof text);
        return std::string(text) + "/64";
    }
    return "";
}

}  // namespace twofactor::otp
