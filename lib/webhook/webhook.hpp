// The receiver for Meta's WhatsApp Cloud API webhooks: message status updates
// (sent, delivered, read, failed) and inbound texts (STOP / START opt-out).
// Plain HTTP on the daemon's Beast server (lib/http/), meant to sit behind
// the site's TLS reverse proxy; every POST must carry a valid
// X-Hub-Signature-256 before its body is even parsed.
#pragma once

#include "config/config.hpp"
#include "util/secret.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace twofactor::http {
class Router;
class Server;
struct Request;
struct Response;
}  // namespace twofactor::http

namespace twofactor::webhook {

struct StatusUpdate {
    std::string messageId;   // the wamid our send returned
    std::string status;      // "sent" | "delivered" | "read" | "failed" ("read" may come without "delivered")
    std::int64_t timestamp = 0;  // Unix seconds, 0 when Meta sent none
    std::string recipient;   // E.164 with "+"
    std::vector<std::pair<int, std::string>> errors;  // (code, title), for "failed"
};

struct InboundText {
    std::string from;        // E.164 with "+"
    std::string messageId;
    std::int64_t timestamp = 0;
    std::string body;
};

enum class OptCommand { None, Stop, Start };

// "STOP", "UNSUBSCRIBE", "ARRET", "ARRÊT", "BAJA" -> Stop; "START" -> Start.
// Case-insensitive; Unicode whitespace (no-break, full-width, zero-width...)
// trimmed; full-width letters folded to ASCII. Anything else, including a
// keyword inside a sentence, is None: an opt-out must be unambiguous.
[[nodiscard]] OptCommand classifyOptText(std::string_view body);

struct ParsedWebhook {
    std::vector<StatusUpdate> statuses;
    std::vector<InboundText> messages;
};

// Parses the envelope: object "whatsapp_business_account",
// entry[].changes[] with field "messages". Unknown fields, change kinds,
// status values and message types, and items lacking an id or a usable phone
// number, are skipped. Never throws; nullopt for malformed JSON or another object.
[[nodiscard]] std::optional<ParsedWebhook> parseWebhook(std::string_view body);

// Checks "sha256=<64 hex digits>" (either case) against
// HMAC-SHA256(appSecret, body), in constant time. False for an empty secret.
[[nodiscard]] bool verifySignature(const SecretString& appSecret, std::string_view body, std::string_view header);

// Called on the listener's I/O thread; they must not block. Meta
// redelivers a batch we answer with an error, so both must be idempotent.
struct Handlers {
    std::function<void(const StatusUpdate&)> onStatus;
    std::function<void(const InboundText&)> onInbound;
};

class WebhookServer {
public:
    // Loads the verify token ($CREDENTIALS_DIRECTORY/whatsapp-verify-token,
    // else config.verifyTokenFile) and the app secret (whatsapp-app-secret,
    // else config.appSecretFile). Throws std::runtime_error when either is
    // missing or empty, or when config.path does not start with "/".
    WebhookServer(const config::Webhook& config, Handlers handlers);
    ~WebhookServer();
    WebhookServer(const WebhookServer&) = delete;
    WebhookServer& operator=(const WebhookServer&) = delete;

    // GET and POST config.path on a router (the HTTPS listener's, when the
    // webhook shares it). This object must outlive the router's use.
    void addRoutes(http::Router& router) const;
    // Another endpoint served on this listener (SNS): adds its routes to the
    // router start() builds. Before start().
    void mount(std::function<void(http::Router&)> addRoutes) { mounts_.push_back(std::move(addRoutes)); }
    // Binds config.listen:config.port (0: any free port) and serves on its
    // own I/O thread. Throws std::runtime_error when it cannot bind,
    // std::logic_error when called twice.
    void start();
    // The bound port (0 before start()).
    [[nodiscard]] int port() const { return port_; }
    // Stops listening, finishes the requests in flight and joins every
    // thread; no handler runs after it returns. Idempotent.
    void stop();

private:
    [[nodiscard]] http::Response handleGet(const http::Request& req) const;
    [[nodiscard]] http::Response handlePost(const http::Request& req) const;

    config::Webhook config_;
    Handlers handlers_;
    SecretString verifyToken_;
    SecretString appSecret_;
    std::vector<std::function<void(http::Router&)>> mounts_;
    struct Loop;
    std::unique_ptr<Loop> loop_;
    std::mutex mutex_;  // serialises start() and stop()
    bool started_ = false;
    bool stopped_ = false;
    int port_ = 0;
};

}  // namespace twofactor::webhook
