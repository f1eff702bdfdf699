#include "otp/events.hpp"

#include "otp/destination.hpp"
#include "util/crypto.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace twofactor::otp {

namespace {

std::string base64(const unsigned char* data, std::size_t size) {
    std::string out(4 * ((size + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
    out.resize(static_cast<std::size_t>(std::max(n, 0)));
    return out;
}

// The address the request is being delivered to now, masked: after an email
// fallback that is the fallback address, not the number tried first.
std::string maskedDestination(const OtpRequest& r) {
    if (r.channel == "email" && !r.fallbackDestination.empty())
        return maskDestination(Destination{DestinationKind::Email, r.fallbackDestination});
    if (r.destination.empty()) return "(cleared)";
    const bool email = r.destination.find('@') != std::string::npos;
    return maskDestination(Destination{email ? DestinationKind::Email : DestinationKind::Phone, r.destination});
}

}  // namespace

bool knownEventType(std::string_view type) {
    return std::any_of(std::begin(kEventTypes), std::end(kEventTypes), [&](const char* t) { return type == t; });
}

std::string eventPayload(std::string_view type, const OtpRequest& r, std::int64_t now) {
    nlohmann::json data = {
        {"id", r.id},
        {"app", r.app},
        {"status", statusName(r.effectiveStatus(now))},
        {"channel", r.channel},
        {"destination", maskedDestination(r)},
        {"purpose", r.purpose},
        {"attempts", r.attempts},
        {"maxAttempts", r.maxAttempts},
        {"sends", r.sends},
        {"createdAt", r.createdAt},
        {"expiresAt", r.expiresAt},
        {"updatedAt", r.updatedAt},
    };
    if (r.finishedAt) data["finishedAt"] = *r.finishedAt;
    if (!r.reference.empty()) data["reference"] = r.reference;
    // The failure reason is scrubbed of the address where it is made (scrub()).
    if (!r.failure.empty()) data["failure"] = r.failure;
    const nlohmann::json body = {{"type", std::string(type)}, {"timestamp", now}, {"data", data}};
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<SecretBytes> parseWebhookSecret(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    if (text.starts_with("whsec_")) text.remove_prefix(6);
    if (text.empty() || text.size() % 4 != 0 || text.size() > 128) return std::nullopt;
    unsigned char buf[96];
    const int n = EVP_DecodeBlock(buf, reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    std::size_t size = static_cast<std::size_t>(n);
    // EVP_DecodeBlock counts the bytes padding stands for.
    if (text.ends_with("==")) size -= 2;
    else if (text.ends_with("=")) size -= 1;
    if (size < 16 || size > 64) {
        OPENSSL_cleanse(buf, sizeof buf);
        return std::nullopt;
    }
    SecretBytes secret(buf, size);
    OPENSSL_cleanse(buf, sizeof buf);
    return secret;
}

std::string webhookSignature(const SecretBytes& secret, std::string_view id, std::int64_t timestamp,
                             std::string_view body) {
    std::string signed_;
    signed_.reserve(id.size() + body.size() + 24);
    signed_.append(id).append(".").append(std::to_string(timestamp)).append(".").append(body);
    const auto mac = crypto::hmacSha256(secret, signed_);
    return "v1," + base64(mac.data(), mac.size());
}

std::int64_t eventRetryDelay(int attempts, std::int64_t base) {
    constexpr std::int64_t kMax = 3600;
    std::int64_t delay = std::max<std::int64_t>(1, base);
    for (int i = 1; i < attempts && delay < kMax; ++i) delay *= 2;
    delay = std::min(delay, kMax);
    const std::int64_t half = delay / 2;
    return delay - half + static_cast<std::int64_t>(crypto::randomBelow(static_cast<std::uint64_t>(half) + 1));
}

}  // namespace twofactor::otp
