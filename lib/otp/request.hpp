// An OTP request: what is stored about one code from issue to its end.
#pragma once

#include "util/crypto.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace twofactor::otp {

enum class Status { Pending, Approved, Expired, Locked, Canceled, Failed };

[[nodiscard]] const char* statusName(Status s);
[[nodiscard]] std::optional<Status> parseStatus(std::string_view name);

inline constexpr const char* kPurposes[] = {"login", "verify", "recovery"};
[[nodiscard]] bool validPurpose(std::string_view purpose);

struct OtpRequest {
    std::string id;
    std::string app;
    std::string channel;      // "email" | "whatsapp"
    std::string destination;  // normalised: email address or E.164 number
    std::string subjectHash;  // hex HMAC of the destination under the subject key: the lookup key
    std::string purpose;
    std::string locale;
    std::string clientIp;
    std::string device;
    std::string reference;
    std::optional<crypto::Digest> codeHash;  // cleared once the request is finished
    int codeLength = 6;
    Status status = Status::Pending;
    int attempts = 0;
    int maxAttempts = 5;
    int sends = 1;
    int maxSends = 5;
    std::int64_t ttl = 600;
    std::int64_t createdAt = 0;
    std::int64_t expiresAt = 0;
    std::int64_t updatedAt = 0;
    std::optional<std::int64_t> finishedAt;
    std::string failure;
    // An email address to deliver to instead when WhatsApp fails for good
    // (the app's fallback_to_email); when used, `channel` becomes "email".
    std::string fallbackDestination;

    // The status as of `now`: a pending request past its expiry is expired.
    [[nodiscard]] Status effectiveStatus(std::int64_t now) const {
        return status == Status::Pending && now >= expiresAt ? Status::Expired : status;
    }
    void finish(Status s, std::int64_t now) {
        status = s;
        finishedAt = now;
        updatedAt = now;
        codeHash.reset();
    }
};

// One try to hand a message to a channel: the delivery log. Never the code or the body.
struct DeliveryAttempt {
    std::int64_t id = 0;  // assigned by the store
    std::string requestId;
    std::string app;
    std::string channel;
    std::string driver;
    int send = 1;     // which send of the request (1, then resends)
    int attempt = 1;  // which try within that send
    std::int64_t at = 0;
    std::string outcome;  // "accepted", "retry" (failed, will be retried), "failed" (for good)
    std::string providerMessageId;
    int statusCode = 0;
    std::int64_t durationMs = 0;
    std::string errorClass;
    std::string error;
    bool ambiguous = false;
    // What the provider reported later (WhatsApp webhooks): sent, delivered, read, failed.
    std::string providerStatus;
    std::int64_t providerStatusAt = 0;
    std::string providerError;
    // Who the attempt handed the address to, as configured when it was made
    // (lib/otp/recipient.hpp): "aws-ses", "meta", the SMTP relay's host, or
    // "outbox"; "" for attempts logged before this was recorded.
    std::string provider;
    std::string region;  // the AWS region SES (or its SMTP interface) was used in; "" otherwise
};

// A send still to be delivered, as the store keeps it so that delivery outlives
// the daemon: which request and send, how many tries so far and when the next
// is due, and who is delivering it until when (the lease). Never the code: a
// daemon taking the job over from a holder that is gone generates a fresh one.
struct DeliveryJob {
    std::string requestId;
    int send = 1;               // the request's send this job delivers
    int attempts = 0;           // tries made for this send so far
    std::int64_t retryAt = 0;   // the next try is not made before this time
    std::string holder;         // the daemon start delivering it
    std::int64_t leaseUntil = 0;
    std::int64_t expiresAt = 0;  // the request's expiry as of this send
    std::int64_t createdAt = 0;
    std::string lastError;       // the last try's error, scrubbed of the destination
};

// A later report from a provider about a message it accepted.
struct ProviderStatus {
    std::string providerMessageId;
    std::string status;
    std::int64_t at = 0;
    std::string error;
};

// A destination that asked not to receive messages (WhatsApp STOP).
struct OptOut {
    std::string subjectHash;
    std::string destination;  // E.164; personal data: exported and erased with the subject
    std::int64_t createdAt = 0;
    std::string source;       // "webhook" or "cli"
    std::string reason;
};

struct DeliveryQuery {
    std::optional<std::string> requestId;
    std::optional<std::int64_t> since;  // inclusive
    std::optional<std::int64_t> until;  // exclusive
    int limit = 100;
};

}  // namespace twofactor::otp
