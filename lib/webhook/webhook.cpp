#include "webhook/webhook.hpp"

#include "util/crypto.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include "http/server.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <stdexcept>

namespace twofactor::webhook {

namespace {

using nlohmann::json;

// ---- opt-out keywords ------------------------------------------------------

// Whitespace a phone keyboard or a copy-paste may put around a keyword:
// ASCII, NEL, no-break, Ogham, Mongolian, the U+2000 block (including the
// zero-width ones), line/paragraph separators, narrow no-break, medium
// mathematical, word joiner, ideographic (full-width) space and the BOM.
constexpr std::array<std::string_view, 31> kSpaces = {
    " ",            "\t",           "\n",           "\v",           "\f",           "\r",
    "\xC2\x85",     "\xC2\xA0",     "\xE1\x9A\x80", "\xE1\xA0\x8E", "\xE2\x80\x80", "\xE2\x80\x81",
    "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87",
    "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A", "\xE2\x80\x8B", "\xE2\x80\x8C", "\xE2\x80\x8D",
    "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE2\x81\xA0", "\xE3\x80\x80",
    "\xEF\xBB\xBF",
};

std::string_view trimSpaces(std::string_view s) {
    for (bool again = true; again && !s.empty();) {
        again = false;
        for (std::string_view sp : kSpaces) {
            if (s.starts_with(sp)) {
                s.remove_prefix(sp.size());
                again = true;
            }
            if (s.ends_with(sp)) {
                s.remove_suffix(sp.size());
                again = true;
            }
        }
    }
    return s;
}

char upperAscii(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

// Upper-cases ASCII, folds full-width forms (U+FF01..U+FF5E, what a CJK
// keyboard types) to ASCII, and maps both "ê" and "E" + combining circumflex
// to "Ê", so "ａｒｒêｔ" and a decomposed "ARRÊT" match like "ARRÊT".
std::string foldKeyword(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto b = static_cast<unsigned char>(s[i]);
        const auto next = [&](std::size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
        if (b == 0xEF && (next(1) == 0xBC || next(1) == 0xBD) && next(2) >= 0x80 && next(2) <= 0xBF) {
            const unsigned cp = (next(1) == 0xBC ? 0xFF00u : 0xFF40u) + (next(2) - 0x80u);
            if (cp >= 0xFF01 && cp <= 0xFF5E) {
                out.push_back(upperAscii(static_cast<char>(cp - 0xFEE0u)));
                i += 2;
                continue;
            }
        }
        if (b == 0xC3 && next(1) == 0xAA) {  // ê
            out += "\xC3\x8A";
            ++i;
            continue;
        }
        if (b == 0xCC && next(1) == 0x82 && !out.empty() && out.back() == 'E') {  // combining circumflex
            out.back() = '\xC3';
            out.push_back('\x8A');
            ++i;
            continue;
        }
        out.push_back(upperAscii(s[i]));
    }
    return out;
}

// ---- envelope --------------------------------------------------------------

const json* member(const json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

std::optional<std::string> stringMember(const json& object, const char* key) {
    const json* v = member(object, key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return v->get<std::string>();
}

// Meta sends Unix seconds as a decimal string; a number is accepted too.
std::int64_t timestampMember(const json& object, const char* key) {
    const json* v = member(object, key);
    if (v == nullptr) return 0;
    if (v->is_number_integer()) return v->get<std::int64_t>();
    if (!v->is_string()) return 0;
    const auto& s = v->get_ref<const std::string&>();
    std::int64_t out = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return (ec == std::errc() && end == s.data() + s.size() && out >= 0) ? out : 0;
}

// A wa_id is the number's digits without "+"; everything downstream keys on E.164.
std::optional<std::string> toE164(std::string_view waId) {
    if (waId.starts_with('+')) waId.remove_prefix(1);
    if (waId.empty() || waId.size() > 15 || waId.front() == '0') return std::nullopt;
    if (!std::all_of(waId.begin(), waId.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
    return "+" + std::string(waId);
}

bool knownStatus(std::string_view s) { return s == "sent" || s == "delivered" || s == "read" || s == "failed"; }

void readStatuses(const json& value, std::vector<StatusUpdate>& out) {
    const json* statuses = member(value, "statuses");
    if (statuses == nullptr || !statuses->is_array()) return;
    for (const json& s : *statuses) {
        auto id = stringMember(s, "id");
        auto status = stringMember(s, "status");
        auto recipientId = stringMember(s, "recipient_id");
        if (!id || id->empty() || !status || !knownStatus(*status) || !recipientId) continue;
        auto recipient = toE164(*recipientId);
        if (!recipient) continue;
        StatusUpdate u;
        u.messageId = std::move(*id);
        u.status = std::move(*status);
        u.timestamp = timestampMember(s, "timestamp");
        u.recipient = std::move(*recipient);
        if (const json* errors = member(s, "errors"); errors != nullptr && errors->is_array()) {
            for (const json& e : *errors) {
                const json* code = member(e, "code");
                if (code == nullptr || !code->is_number_integer()) continue;
                const auto c = code->get<std::int64_t>();
                if (c < 0 || c > 0x7fffffff) continue;
                auto title = stringMember(e, "title");
                if (!title) title = stringMember(e, "message");
                u.errors.emplace_back(static_cast<int>(c), title.value_or(""));
            }
        }
        out.push_back(std::move(u));
    }
}

void readMessages(const json& value, std::vector<InboundText>& out) {
    const json* messages = member(value, "messages");
    if (messages == nullptr || !messages->is_array()) return;
    for (const json& m : *messages) {
        if (stringMember(m, "type") != "text") continue;  // media, reactions, buttons: not ours
        auto from = stringMember(m, "from");
        auto id = stringMember(m, "id");
        const json* text = member(m, "text");
        auto body = text != nullptr ? stringMember(*text, "body") : std::nullopt;
        if (!from || !id || id->empty() || !body) continue;
        auto e164 = toE164(*from);
        if (!e164) continue;
        InboundText t;
        t.from = std::move(*e164);
        t.messageId = std::move(*id);
        t.timestamp = timestampMember(m, "timestamp");
        t.body = std::move(*body);
        out.push_back(std::move(t));
    }
}

// ---- credentials -----------------------------------------------------------

SecretString trimmedSecret(const SecretString& raw) {
    std::string_view v = raw.view();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    return SecretString(std::string(v));
}

SecretString loadSecret(const char* credential, const std::string& file, const char* fileKey) {
    SecretString value;
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
        const std::string path = std::string(dir) + "/" + credential;
        if (files::exists(path)) value = trimmedSecret(files::readCredentialFile(path));
    }
    if (value.empty() && !file.empty()) {
        if (!files::exists(file)) throw std::runtime_error("[webhook] " + std::string(fileKey) + " " + file + " does not exist");
        value = trimmedSecret(files::readSecretFile(file));
    }
    // An empty token or secret would let anyone pass the check: refuse to start instead.
    if (value.empty())
        throw std::runtime_error("[webhook] no " + std::string(credential) + ": provide the systemd credential " +
                                 credential + " or set [webhook] " + fileKey + " (a non-empty file, mode 0600)");
    return value;
}

// ---- HTTP ------------------------------------------------------------------

constexpr std::size_t kMaxChallenge = 256;
// Meta's deliveries arrive through the site's reverse proxy: one address, many connections.
constexpr int kMaxConnections = 128;

// One request per connection: the reverse proxy in front keeps its own
// connections to Meta alive, loopback connects are cheap, and no idle client
// holds a connection here.
http::Response reply(int status, const char* text) {
    auto r = http::Response::text(status, text);
    r.close = true;
    return r;
}

bool printableChallenge(std::string_view s) {
    return !s.empty() && s.size() <= kMaxChallenge &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// Compares digests so the time taken says nothing about the token, not even its length.
bool tokenMatches(const SecretString& expected, std::string_view given) {
    const auto a = crypto::sha256(expected.view());
    const auto b = crypto::sha256(given);
    return crypto::constantTimeEqual(a.data(), a.size(), b.data(), b.size());
}

std::string lowerAscii(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

}  // namespace

OptCommand classifyOptText(std::string_view body) {
    // Longer than any keyword with generous padding: not a command, skip the work.
    if (body.size() > 1024) return OptCommand::None;
    const std::string word = foldKeyword(trimSpaces(body));
    if (word == "STOP" || word == "UNSUBSCRIBE" || word == "ARRET" || word == "ARR\xC3\x8AT" || word == "BAJA")
        return OptCommand::Stop;
    if (word == "START") return OptCommand::Start;
    return OptCommand::None;
}

std::optional<ParsedWebhook> parseWebhook(std::string_view body) {
    try {
        const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
        if (stringMember(doc, "object") != "whatsapp_business_account") return std::nullopt;
        ParsedWebhook out;
        const json* entries = member(doc, "entry");
        if (entries == nullptr || !entries->is_array()) return out;
        for (const json& entry : *entries) {
            const json* changes = member(entry, "changes");
            if (changes == nullptr || !changes->is_array()) continue;
            for (const json& change : *changes) {
                if (stringMember(change, "field") != "messages") continue;
                const json* value = member(change, "value");
                if (value == nullptr || !value->is_object()) continue;
                readStatuses(*value, out.statuses);
                readMessages(*value, out.messages);
            }
        }
        return out;
    } catch (const std::exception&) {
        // Only allocation failure can get here; a body we cannot hold is malformed for us.
        return std::nullopt;
    }
}

bool verifySignature(const SecretString& appSecret, std::string_view body, std::string_view header) {
    constexpr std::string_view prefix = "sha256=";
    if (appSecret.empty() || !header.starts_with(prefix)) return false;
    header.remove_prefix(prefix.size());
    if (header.size() != 2 * sizeof(crypto::Digest)) return false;
    SecretBytes given;
    if (!crypto::unhex(header, given)) return false;
    const crypto::Digest expected = crypto::hmacSha256(appSecret.view(), body);
    return crypto::constantTimeEqual(expected.data(), expected.size(), given.data(), given.size());
}

WebhookServer::WebhookServer(const config::Webhook& config, Handlers handlers)
    : config_(config), handlers_(std::move(handlers)) {
    if (!config_.path.starts_with('/')) throw std::runtime_error("[webhook] path must start with \"/\": " + config_.path);
    verifyToken_ = loadSecret("whatsapp-verify-token", config_.verifyTokenFile, "verify_token_file");
    appSecret_ = loadSecret("whatsapp-app-secret", config_.appSecretFile, "app_secret_file");
}

struct WebhookServer::Loop {
    asio::io_context io;
    std::unique_ptr<http::Server> server;
    std::thread thread;
};

WebhookServer::~WebhookServer() { stop(); }

void WebhookServer::addRoutes(http::Router& router) const {
    router.add("GET", config_.path, [this](http::Request& req, http::Reply done) { done(handleGet(req)); });
    router.add("POST", config_.path, [this](http::Request& req, http::Reply done) { done(handlePost(req)); });
}

void WebhookServer::start() {
    std::lock_guard lock(mutex_);
    if (started_ || stopped_) throw std::logic_error("WebhookServer::start called twice");
    auto router = std::make_shared<http::Router>();
    addRoutes(*router);
    for (const auto& mount : mounts_) mount(*router);
    http::Limits limits;
    limits.maxBodyBytes = config_.maxBodyBytes;
    limits.maxConnections = kMaxConnections;
    limits.maxConnectionsPerIp = kMaxConnections;
    auto loop = std::make_unique<Loop>();
    loop->server = std::make_unique<http::Server>(loop->io, limits, std::move(router));
    try {
        loop->server->listen(config_.listen, config_.port);
    } catch (const std::exception& e) {
        throw std::runtime_error("[webhook] " + std::string(e.what()));
    }
    port_ = loop->server->ports().front();
    loop->thread = std::thread([io = &loop->io] { io->run(); });
    loop_ = std::move(loop);
    started_ = true;
    log::info("webhook: listening on " + config_.listen + ":" + std::to_string(port_) + config_.path);
}

void WebhookServer::stop() {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    if (!started_) return;
    // The server's state belongs to its I/O thread: stopped there, after
    // which nothing is left to run and the thread ends.
    asio::post(loop_->io, [server = loop_->server.get()] { server->stop(); });
    loop_->thread.join();
    loop_->server.reset();
    log::info("webhook: stopped");
}

http::Response WebhookServer::handleGet(const http::Request& req) const {
    const auto challenge = req.queryParam("hub.challenge").value_or("");
    if (req.queryParam("hub.mode") != "subscribe" ||
        !tokenMatches(verifyToken_, req.queryParam("hub.verify_token").value_or("")) || !printableChallenge(challenge)) {
        log::warning("webhook: refused a verification request from " + req.clientIp);
        auto r = reply(403, "forbidden");
        r.headers.emplace_back("Cache-Control", "no-store");
        return r;
    }
    log::info("webhook: verification handshake answered");
    http::Response r;
    r.close = true;
    r.status = 200;
    // The challenge is echoed back: plain text, never sniffed as HTML.
    r.contentType = "text/plain";
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.body = challenge;
    return r;
}

http::Response WebhookServer::handlePost(const http::Request& req) const {
    // The signature covers the bytes as sent: a compressed body would have to
    // be inflated first (and is a way around the size cap).
    if (const auto enc = lowerAscii(req.header("Content-Encoding").value_or("")); !enc.empty() && enc != "identity")
        return reply(415, "content encoding not supported");
    // Meta sends JSON; form and multipart bodies are refused as before.
    const auto type = lowerAscii(req.header("Content-Type").value_or(""));
    if (type.starts_with("multipart/") || type.starts_with("application/x-www-form-urlencoded"))
        return reply(415, "content type not supported");
    // Meta frames its bodies by Content-Length; anything else is not Meta.
    if (req.header("Transfer-Encoding") || !req.header("Content-Length")) return reply(411, "length required");
    if (req.body.size() > config_.maxBodyBytes) return reply(413, "payload too large");
    // The signature first, over the bytes as received: nothing unauthenticated gets parsed.
    const auto signature = req.header("X-Hub-Signature-256");
    if (req.headerCount("X-Hub-Signature-256") != 1 || !verifySignature(appSecret_, req.body, *signature)) {
        log::warning("webhook: rejected a POST from " + req.clientIp +
                     (signature ? ": bad X-Hub-Signature-256" : ": no X-Hub-Signature-256"));
        return reply(401, "bad signature");
    }
    const auto parsed = parseWebhook(req.body);
    if (!parsed) {
        log::warning("webhook: a signed POST is not a WhatsApp Business Account notification");
        return reply(400, "malformed notification");
    }
    // One failing item does not stop the others; a 500 makes Meta redeliver the batch.
    bool failed = false;
    const auto guarded = [&failed](const char* what, const auto& call) {
        try {
            call();
        } catch (const std::exception& e) {
            failed = true;
            log::error(std::string("webhook: ") + what + " handler failed: " + e.what());
        } catch (...) {
            failed = true;
            log::error(std::string("webhook: ") + what + " handler failed");
        }
    };
    for (const auto& s : parsed->statuses)
        if (handlers_.onStatus) guarded("status", [&] { handlers_.onStatus(s); });
    for (const auto& m : parsed->messages)
        if (handlers_.onInbound) guarded("inbound message", [&] { handlers_.onInbound(m); });
    if (failed) return reply(500, "internal error");
    return reply(200, "ok");
}

}  // namespace twofactor::webhook
