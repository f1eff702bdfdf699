// Channels deliver rendered messages. Drivers (outbox today; SES, SMTP and
// WhatsApp later) implement Channel; delivery is asynchronous so a slow
// provider never blocks the daemon.
#pragma once

#include "util/secret.hpp"

#include <chrono>
#include <functional>
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
    int attempt = 1;          // 1 for the first send, 2.. for resends
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
    std::string driver;             // "outbox", ...
    std::string providerMessageId;  // the provider's id, or the outbox file name
    std::string error;              // a reason for operators; never the code or the body
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
