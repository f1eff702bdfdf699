// Outgoing event webhooks: what an app is told about its requests (never a
// code or a full address), queued in the store beside the state change that
// caused it and signed per the Standard Webhooks convention when delivered.
#pragma once

#include "otp/request.hpp"
#include "util/secret.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::otp {

// Every event type an app may subscribe to ([apps.NAME.events] events).
inline constexpr const char* kEventTypes[] = {
    "verification.approved",  // the right code was given
    "verification.failed",    // a wrong code was given (status "locked" when it was the last try)
    "verification.expired",   // the request expired unused
    "verification.canceled",  // canceled by its app or an operator
    "delivery.failed",        // the code could not be delivered; the request failed
};
[[nodiscard]] bool knownEventType(std::string_view type);

// One event waiting to reach its app's endpoint: a row of the store's event
// queue, claimed under a lease like a delivery job.
struct EventJob {
    std::string id;  // "msg_...": the webhook-id, the same on every try
    std::string app;
    std::string type;
    std::string requestId;
    std::string payload;  // the JSON body, exactly as signed and sent
    std::int64_t createdAt = 0;
    int attempts = 0;
    std::int64_t retryAt = 0;
    std::string holder;  // the daemon start delivering it, "" when free
    std::int64_t leaseUntil = 0;
    std::string lastError;
};

// One try to deliver an event: the event delivery log.
struct EventAttempt {
    std::int64_t id = 0;
    std::string eventId;
    std::string app;
    std::string type;
    int attempt = 1;
    std::int64_t at = 0;
    std::string outcome;  // delivered, retry, failed (given up), disabled (the endpoint was turned off)
    int statusCode = 0;   // the endpoint's HTTP status, 0 when there was none
    std::int64_t durationMs = 0;
    std::string error;  // curl's or the status line's words; never the secret
};

struct EventAttemptQuery {
    std::optional<std::string> app;
    std::optional<std::string> eventId;
    bool failedOnly = false;  // only attempts that did not deliver
    int limit = 1000;         // the newest that match, returned oldest first
};

// An app's endpoint as the store sees it: consecutive failed attempts, and
// when it was turned off for them (0: it is on).
struct EventEndpoint {
    std::string app;
    int failures = 0;
    std::int64_t disabledAt = 0;
    std::string lastError;
};

// What counting a failed attempt left: the consecutive failures, and whether
// this one turned the endpoint off.
struct EventFailure {
    int failures = 0;
    bool disabled = false;
};

// The event's JSON body: {"type", "timestamp", "data": {...}} with the
// request's id, app, status, channel, masked destination, attempts and times.
[[nodiscard]] std::string eventPayload(std::string_view type, const OtpRequest& request, std::int64_t now);

// The bytes of a Standard Webhooks secret "whsec_<base64>"; nullopt when it is
// not one (the prefix is optional, the base64 must decode to 16..64 bytes).
[[nodiscard]] std::optional<SecretBytes> parseWebhookSecret(std::string_view text);

// "v1,<base64 of HMAC-SHA256(secret, id + "." + timestamp + "." + body)>".
[[nodiscard]] std::string webhookSignature(const SecretBytes& secret, std::string_view id, std::int64_t timestamp,
                                           std::string_view body);

// When the next try of an event goes, after `attempts` failed ones: doubling
// from `base` up to an hour, each delay drawn from its upper half (jitter, so
// the endpoints of many events do not all come back at once).
[[nodiscard]] std::int64_t eventRetryDelay(int attempts, std::int64_t base);

}  // namespace twofactor::otp
