// Channels deliver rendered messages. Drivers (outbox today; SES, SMTP and
// WhatsApp later) implement Channel; delivery is asynchronous so a slow
// provider never blocks the daemon.
#pragma once

#include "config/config.hpp"
#include "util/secret.hpp"

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace twofactor::channel {

// A message rendered in memory. It carries the plaintext code and so is
// non-copyable and wiped when it goes out of scope; it is never queued to disk.
struct Message {
    std::string requestId;
    std::string app;
    std::string appDisplayName;
    std::string channel;      // "email" | "whatsapp"
    std::string destination;  // normalised address or E.164 number
    std::string purpose;
    std::string locale;
    const config::App* appConfig = nullptr;  // per-app driver settings (SES region, sender, ...)
    int attempt = 1;          // the send: 1 for the first send, 2.. for resends
    int deliveryAttempt = 1;  // the try within this send: 2.. are retries
    std::int64_t expiresAt = 0;  // the request's expiry (Unix seconds): no point delivering after it
    SecretString code;        // for drivers that pass the code as a template parameter (WhatsApp)
    SecretString subject;
    SecretString text;
    SecretString html;
};

enum class DeliveryOutcome {
    Accepted,   // the provider (or sink) took the message
    Retryable,  // a transient failure: may be tried again while the request is valid
    Permanent,  // will not succeed by retrying
};

struct DeliveryResult {
    DeliveryOutcome outcome = DeliveryOutcome::Permanent;
    std::string driver;             // "outbox", "ses", "smtp", ...
    std::string providerMessageId;  // the provider's id, or the outbox file name
    // The provider's status: an HTTP status (SES) or an SMTP reply code; 0 when none arrived.
    int statusCode = 0;
    // A short class for logs and the delivery log, e.g. "throttled", "rejected",
    // "timeout", "network", "server", "config", "io"; "" when accepted.
    std::string errorClass;
    std::string error;              // the provider's reason for operators; never the code or the body
    // True when the request may have reached the provider although no answer
    // came (a timeout after sending): a retry may deliver twice.
    bool ambiguous = false;
    // The provider asked to wait this long before retrying (Retry-After).
    std::optional<std::chrono::milliseconds> retryAfter;
    std::chrono::milliseconds duration{0};
};

class Channel {
public:
    using Done = std::function<void(DeliveryResult)>;
    virtual ~Channel() = default;
    [[nodiscard]] virtual std::string driverName() const = 0;
    // Delivers, then calls `done` exactly once (on any thread).
    virtual void deliver(Message message, Done done) = 0;
};

}  // namespace twofactor::channel
