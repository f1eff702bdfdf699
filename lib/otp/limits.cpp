#include "otp/limits.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace twofactor::otp {

namespace {

std::string counterKey(const std::string& app, const std::string& hash) { return app + "/" + hash; }

// A window that started in the "future" (the clock was set back) still counts:
// only a window fully in the past is over.
bool windowOver(const RateCounter& c, std::int64_t window, std::int64_t now) { return now >= c.windowStart + window; }

}  // namespace

RateCounter countOneSend(const std::optional<RateCounter>& counter, std::int64_t window, std::int64_t now) {
    RateCounter c = counter.value_or(RateCounter{now, 0, 0});
    if (!counter || windowOver(c, window, now)) c = RateCounter{now, 0, 0};
    ++c.count;
    c.lastAt = now;
    return c;
}

namespace {

std::optional<Refusal> sendLimits(LimitStore& store, const config::RateLimits& limits, const SendKeys& keys,
                                  std::int64_t now, bool count) {
    std::vector<RateKey> rateKeys;
    std::vector<int> caps;
    rateKeys.push_back({"destination", counterKey(keys.app, keys.destination), limits.destinationWindow.count()});
    caps.push_back(limits.destinationSends);
    if (!keys.ip.empty()) {
        rateKeys.push_back({"ip", counterKey(keys.app, keys.ip), limits.ipWindow.count()});
        caps.push_back(limits.ipSends);
    }
    if (!keys.prefix.empty()) {
        rateKeys.push_back({"prefix", counterKey(keys.app, keys.prefix), limits.prefixWindow.count()});
        caps.push_back(limits.prefixSends);
    }
    rateKeys.push_back({"app", keys.app, limits.appWindow.count(), limits.appSends});
    caps.push_back(limits.appSends);

    std::optional<Refusal> refusal;
    const auto decide = [&](const std::vector<std::optional<RateCounter>>& found) {
        // The cooldown first: it is the most specific answer for a caller resending too fast.
        const auto cooldown = limits.resendCooldown.count();
        if (cooldown > 0 && found[0] && found[0]->count > 0) {
            const std::int64_t since = now - found[0]->lastAt;
            if (since < cooldown) {
                refusal = Refusal{"destination-cooldown", std::min(cooldown, cooldown - since)};
                return false;
            }
        }
        for (std::size_t i = 0; i < rateKeys.size(); ++i) {
            const auto& c = found[i];
            if (!c || windowOver(*c, rateKeys[i].window, now)) continue;
            if (c->count >= caps[i]) {
                refusal = Refusal{rateKeys[i].scope, std::clamp<std::int64_t>(c->windowStart + rateKeys[i].window - now,
                                                                              1, rateKeys[i].window)};
                return false;
            }
        }
        return count;
    };
    (void)store.countSendsIf(rateKeys, now, decide);
    return refusal;
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
    const std::int64_t failures = store.countSubjectFailure(app, subjectHash);
    if (failures < limits.maxSubjectFailures) return;
    // The n-th failure past the threshold locks for lockout * 2^n, capped.
    const std::int64_t beyond = failures - limits.maxSubjectFailures;
    const std::int64_t cap = limits.subjectMaxLockout.count();
    std::int64_t delay = limits.subjectLockout.count();
    for (std::int64_t i = 0; i < beyond && delay < cap; ++i) delay *= 2;
    store.lockSubject(app, subjectHash, now + std::min(delay, cap));
}

void recordVerifySuccess(LimitStore& store, std::string_view app, std::string_view subjectHash) {
    store.clearSubjectFailures(app, subjectHash);
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
