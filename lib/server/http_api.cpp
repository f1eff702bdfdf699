// The HTTPS API (version 1) over the same service layer as Varlink, and the
// io.twofactor.ApiKey methods that manage its keys. Every call: a Bearer key
// checked against the store (its app and scopes), a per-key rate limit, an
// optional Idempotency-Key, one request log row; errors as problem+json.
#include "server/server_impl.hpp"

#include "http/apikey.hpp"
#include "http/openapi.hpp"
#include "http/problem.hpp"
#include "util/crypto.hpp"

namespace twofactor::server::detail {

namespace {

// How long a key looked up in the store is trusted without asking again. A
// revocation through this daemon takes effect at once (the entry is dropped).
constexpr auto kKeyCacheFor = std::chrono::seconds(5);
// A key's last use is written at most this often.
constexpr std::int64_t kTouchEvery = 60;
constexpr std::size_t kMaxIdempotencyKey = 255;

json keyJson(const store::ApiKey& k) {
    json scopes = json::array();
    for (const auto& s : http::splitScopes(k.scopes)) scopes.push_back(s);
    json j = {{"id", k.id},         {"app", k.app},           {"scopes", scopes},
              {"note", k.note},     {"createdAt", k.createdAt}, {"createdBy", k.createdBy}};
    if (k.expiresAt != 0) j["expiresAt"] = k.expiresAt;
    if (k.revokedAt != 0) j["revokedAt"] = k.revokedAt;
    if (k.lastUsedAt != 0) j["lastUsedAt"] = k.lastUsedAt;
    return j;
}

std::string fullError(const std::string& error) {
    return error.find('.') == std::string::npos ? std::string(kOtp) + "." + error : error;
}

http::Response jsonResponse(int status, const json& body) {
    http::Response r;
    r.status = status;
    r.contentType = "application/json";
    r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    return r;
}

bool printableToken(std::string_view s) {
    return !s.empty() && s.size() <= kMaxIdempotencyKey &&
           std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

// One API call on its way through authentication, idempotency and the service.
struct ApiCall {
    http::Request request;
    http::Reply reply;
    std::string endpoint;  // "POST /v1/apps/{app}/verifications": the route, never an id
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::int64_t at = 0;
    store::ApiKey key;
    std::string idempotencyKey;  // empty: none
    // Held while the call is in the daemon's in-flight count, which SIGTERM
    // waits for (as for Varlink calls); released when it is answered, or
    // when the call is dropped unanswered.
    std::shared_ptr<void> inFlight;
};

void Server::apiFinish(const std::shared_ptr<ApiCall>& call, http::Response response, const std::string& result) {
    // A first answer that another try could change (rate limits, outages)
    // gives the key back; any other is what every retry gets.
    if (!call->idempotencyKey.empty())
        finishIdempotency(call->key.id, call->idempotencyKey, response.status < 500 && response.status != 429,
                          response.status, response.body);
    if (callLog_) {
        store::CallRecord rec;
        rec.at = call->at;
        rec.method = call->endpoint;
        rec.durationMs =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - call->started).count();
        rec.result = result;
        rec.keyId = call->key.id;
        rec.clientIp = call->request.clientIp;
        rec.status = response.status;
        callLog_->add(std::move(rec));
    }
    call->reply(std::move(response));
    call->inFlight.reset();
}

void Server::apiFail(const std::shared_ptr<ApiCall>& call, const std::string& error, const json& parameters,
                     std::string detail) {
    apiFinish(call, http::problem(error, parameters, std::move(detail)), error);
}

// Runs `action` for a call that passed the key, scope and app checks, the
// rate limit and (for POST) the Idempotency-Key check. I/O thread.
void Server::apiRoute(http::Router& router, std::string method, std::string pattern, std::string scope,
                      ApiAction action) {
    const std::string endpoint = method + " " + pattern;
    router.add(method, pattern,
               [this, endpoint, scope, action = std::move(action)](http::Request& req, http::Reply reply) {
                   auto call = std::make_shared<ApiCall>();
                   call->request = std::move(req);
                   call->reply = std::move(reply);
                   call->endpoint = endpoint;
                   call->at = clock_->now();
                   callStarted();
                   // The I/O thread's count: the last holder may be a store thread.
                   call->inFlight = std::shared_ptr<void>(static_cast<void*>(this), [this](void*) {
                       asio::post(io_, [this] { callFinished(); });
                   });
                   apiAuthenticate(call, scope, action);
               });
}

void Server::apiAuthenticate(const std::shared_ptr<ApiCall>& call, const std::string& scope, const ApiAction& action) {
    const auto auth = call->request.header("Authorization").value_or("");
    std::optional<http::PresentedApiKey> presented;
    if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
        presented = http::parseApiKey(std::string_view(auth).substr(7));
    if (call->request.headerCount("Authorization") != 1 || !presented)
        return apiFail(call, "Unauthorized", json::object(), "an API key is needed: Authorization: Bearer tfk_...");
    const std::string keyId = presented->id;
    const auto checked = [this, call, scope, action, presented = std::make_shared<http::PresentedApiKey>(
                                                         std::move(*presented))](const std::optional<store::ApiKey>& found) {
        const std::int64_t now = clock_->now();
        if (!found || !http::apiKeyMatches(apiKeyHashKey_, *found, *presented))
            return apiFail(call, "Unauthorized", json::object(), "unknown API key");
        call->key = *found;
        if (found->revokedAt != 0) return apiFail(call, "Unauthorized", json::object(), "the API key was revoked");
        if (found->expiresAt != 0 && now >= found->expiresAt)
            return apiFail(call, "Unauthorized", json::object(), "the API key expired");
        if (const auto it = call->request.params.find("app"); it != call->request.params.end() && it->second != found->app)
            return apiFail(call, "Forbidden", {{"app", it->second}}, "the API key is for another app");
        if (!http::hasScope(*found, scope))
            return apiFail(call, "Forbidden", {{"scope", scope}}, "the API key lacks the scope " + scope);
        if (auto& touched = apiTouched_[found->id]; now - touched >= kTouchEvery) {
            touched = now;
            store_->submit([id = found->id, now](store::Transaction& t) { t.touchApiKey(id, now); },
                           [](std::exception_ptr) {});
        }
        // The per-key limit is counted by the service, in the call's own transaction.
        if (storeSaturated()) return apiFail(call, std::string(kDaemonIface) + ".Busy", json::object(), "busy, try again");
        apiIdempotent(call, action);
    };
    if (auto it = apiKeys_.find(keyId);
        it != apiKeys_.end() && std::chrono::steady_clock::now() - it->second.second < kKeyCacheFor)
        return checked(it->second.first);
    if (storeSaturated()) return apiFail(call, std::string(kDaemonIface) + ".Busy", json::object(), "busy, try again");
    auto found = std::make_shared<std::optional<store::ApiKey>>();
    store_->submit([found, id = keyId](store::Transaction& t) { *found = t.findApiKey(id); },
                   [this, found, call, checked, id = keyId](std::exception_ptr e) {
                       asio::post(io_, [this, e, found, call, checked, id] {
                           if (e) return apiFail(call, "StoreFailed", json::object(), "the store failed");
                           if (apiKeys_.size() > 10000) apiKeys_.clear();
                           apiKeys_[id] = {*found, std::chrono::steady_clock::now()};
                           checked(*found);
                       });
                   });
}

// Who an API call is to the service: its key, which acts on its own app's
// requests only, counted against key_requests_per_minute in the store (so
// every node behind a load balancer counts the same calls).
otp::Caller Server::apiCaller(const std::shared_ptr<ApiCall>& call) const {
    otp::Caller caller{-1, call->key.id};
    caller.app = call->key.app;
    caller.keyRequestsPerMinute = config_.http.keyRequestsPerMinute;
    return caller;
}

void Server::apiIdempotent(const std::shared_ptr<ApiCall>& call, const ApiAction& action) {
    const auto idem = call->request.header("Idempotency-Key");
    if (!idem || call->request.method != "POST") return action(call);
    if (call->request.headerCount("Idempotency-Key") != 1 || !printableToken(*idem))
        return apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", "Idempotency-Key"}},
                       "Idempotency-Key must be 1 to 255 visible ASCII characters, given once");
    // Keyed: a check's body holds a code, which a plain hash of a few digits would give away.
    const std::string bodyHash = crypto::hex(crypto::hmacSha256(apiKeyHashKey_, call->request.path + "\n" + call->request.body));
    claimIdempotency(call->key.id, *idem, bodyHash, call->at,
                     [this, call, action, key = *idem](IdempotencyClaim claim, const store::IdempotencyRecord& first) {
                         switch (claim) {
                             case IdempotencyClaim::StoreFailed:
                                 return apiFail(call, "StoreFailed", json::object(), "the store failed");
                             case IdempotencyClaim::Fresh:
                                 call->idempotencyKey = key;
                                 return action(call);
                             case IdempotencyClaim::Reused:
                                 return apiFail(call, fullError("IdempotencyKeyReused"), {{"idempotencyKey", key}},
                                                "this Idempotency-Key was used with another request");
                             case IdempotencyClaim::InUse:
                                 return apiFail(call, fullError("IdempotencyKeyInUse"),
                                                {{"idempotencyKey", key}, {"retryAfter", 1}},
                                                "the first request with this Idempotency-Key is still running");
                             case IdempotencyClaim::Replay: break;
                         }
                         http::Response replay;
                         replay.status = first.status;
                         replay.contentType = first.status >= 400 ? "application/problem+json" : "application/json";
                         replay.body = first.response;
                         replay.headers.emplace_back("Idempotent-Replayed", "true");
                         apiFinish(call, std::move(replay), "replayed");
                     });
}

// Body fields of a route: a JSON object with only these members, each of its type.
std::optional<json> Server::apiBody(const std::shared_ptr<ApiCall>& call,
                                    const std::vector<std::pair<std::string, json::value_t>>& fields) {
    json body = json::parse(call->request.body.empty() ? std::string("{}") : call->request.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
        apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", "body"}}, "the body must be a JSON object");
        return std::nullopt;
    }
    for (const auto& [name, value] : body.items()) {
        const auto f = std::find_if(fields.begin(), fields.end(), [&](const auto& p) { return p.first == name; });
        const bool typeOk = f != fields.end() && (value.is_null() || value.type() == f->second ||
                                                  (f->second == json::value_t::number_integer && value.is_number_integer()));
        if (!typeOk) {
            apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", name}},
                    f == fields.end() ? "unknown field " + name : "wrong type for " + name);
            return std::nullopt;
        }
    }
    return body;
}

template <typename T, typename F>
void Server::apiAnswer(const std::shared_ptr<ApiCall>& call, otp::Outcome<T> o, int status, F&& body) {
    asio::post(io_, [this, call, o = std::move(o), status, body = std::forward<F>(body)] {
        if (auto* f = std::get_if<otp::Failure>(&o)) return apiFail(call, fullError(f->error), f->parameters, f->message);
        apiFinish(call, jsonResponse(status, body(std::get<T>(o))), "ok");
    });
}

void Server::addHttpRoutes(http::Router& router) {
    using vt = json::value_t;
    router.add("GET", "/v1/openapi.json", [](http::Request&, http::Reply reply) {
        http::Response r;
        r.contentType = "application/json";
        r.body = std::string(http::openApiDocument());
        reply(std::move(r));
    });

    const auto sendReply = [this](const otp::SendResult& res) {
        json j = requestJson(res.request, clock_->now());
        j["delivery"] = otp::deliveryStateName(res.delivery);
        return j;
    };
    apiRoute(router, "POST", "/v1/apps/{app}/verifications", "send", [this, sendReply](std::shared_ptr<ApiCall> call) {
        auto body = apiBody(call, {{"to", vt::string},
                                   {"channel", vt::string},
                                   {"purpose", vt::string},
                                   {"locale", vt::string},
                                   {"reference", vt::string},
                                   {"ttl", vt::number_integer},
                                   {"length", vt::number_integer},
                                   {"fallbackEmail", vt::string},
                                   {"clientIp", vt::string},
                                   {"device", vt::string}});
        if (!body) return;
        if (!body->contains("to") || !(*body)["to"].is_string())
            return apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", "to"}}, "to is required");
        otp::SendInput in;
        in.app = call->key.app;
        in.destination = (*body)["to"].get<std::string>();
        in.channel = opt<std::string>(*body, "channel");
        in.purpose = opt<std::string>(*body, "purpose");
        in.locale = opt<std::string>(*body, "locale");
        in.reference = opt<std::string>(*body, "reference");
        in.ttl = opt<std::int64_t>(*body, "ttl");
        in.length = opt<std::int64_t>(*body, "length");
        in.fallbackEmail = opt<std::string>(*body, "fallbackEmail");
        // The caller is a backend: the end user's address and device are what it says.
        in.clientIp = opt<std::string>(*body, "clientIp");
        in.device = opt<std::string>(*body, "device");
        in.wait = true;
        in.caller = apiCaller(call);
        if (storeSaturated()) return apiFail(call, std::string(kDaemonIface) + ".Busy", json::object(), "busy, try again");
        service_->send(std::move(in), [this, call, sendReply](otp::Outcome<otp::SendResult> o) {
            // Counted as Varlink sends are, so the metrics cover both ways in.
            if (std::holds_alternative<otp::SendResult>(o)) metrics_.send();
            if (auto* res = std::get_if<otp::SendResult>(&o))
                log::info("API key " + call->key.id + " sent request " + res->request.id + " (" + res->request.app +
                          ", " + res->request.channel + "): " + otp::deliveryStateName(res->delivery));
            apiAnswer(call, std::move(o), 201, sendReply);
        });
    });

    apiRoute(router, "POST", "/v1/apps/{app}/verification-check", "verify", [this](std::shared_ptr<ApiCall> call) {
        auto body = apiBody(call, {{"id", vt::string}, {"to", vt::string}, {"code", vt::string}});
        if (!body) return;
        if (!body->contains("code") || !(*body)["code"].is_string())
            return apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", "code"}}, "code is required");
        const auto id = opt<std::string>(*body, "id");
        const auto to = opt<std::string>(*body, "to");
        if (id.has_value() == to.has_value())
            return apiFail(call, "org.varlink.service.InvalidParameter", {{"parameter", id ? "to" : "id"}},
                           "give either id or to");
        auto code = std::make_shared<SecretString>((*body)["code"].get<std::string>());
        // The code's copies in the parsed body and the raw one go at once.
        (*body)["code"] = "";
        std::fill(call->request.body.begin(), call->request.body.end(), '\0');
        const auto verify = [this, call, code](otp::VerifyInput in) {
            in.code = std::move(*code);
            in.caller = apiCaller(call);
            service_->verify(std::move(in), [this, call](otp::Outcome<otp::VerifyResult> o) {
                if (auto* v = std::get_if<otp::VerifyResult>(&o); v && v->request)
                    log::info("verify " + v->request->id + " by API key " + call->key.id + ": " +
                              (v->approved ? "success" : "failure") + " (" + otp::statusName(v->status) + ")");
                apiAnswer(call, std::move(o), 200, [this](const otp::VerifyResult& v) {
                    json out = {{"approved", v.approved}, {"status", otp::statusName(v.status)}};
                    if (v.request) out["request"] = requestJson(*v.request, clock_->now());
                    return out;
                });
            });
        };
        if (to) {
            otp::VerifyInput in;
            in.app = call->key.app;
            in.destination = *to;
            return verify(std::move(in));
        }
        otp::VerifyInput in;
        in.id = id;
        verify(std::move(in));
    });

    apiRoute(router, "GET", "/v1/verifications/{id}", "status", [this](std::shared_ptr<ApiCall> call) {
        service_->status(
            call->request.params.at("id"),
            [this, call](otp::Outcome<otp::OtpRequest> o) {
                apiAnswer(call, std::move(o), 200, [this](const otp::OtpRequest& r) { return requestJson(r, clock_->now()); });
            },
            apiCaller(call));
    });
    apiRoute(router, "POST", "/v1/verifications/{id}/cancel", "cancel", [this](std::shared_ptr<ApiCall> call) {
        service_->cancel(
            call->request.params.at("id"),
            [this, call](otp::Outcome<otp::OtpRequest> o) {
                apiAnswer(call, std::move(o), 200, [this](const otp::OtpRequest& r) { return requestJson(r, clock_->now()); });
            },
            apiCaller(call));
    });
    apiRoute(router, "POST", "/v1/verifications/{id}/resend", "send", [this, sendReply](std::shared_ptr<ApiCall> call) {
        service_->resend(
            call->request.params.at("id"),
            [this, call, sendReply](otp::Outcome<otp::SendResult> o) {
                if (std::holds_alternative<otp::SendResult>(o)) metrics_.send();
                apiAnswer(call, std::move(o), 200, sendReply);
            },
            apiCaller(call));
    });

    addMetricsRoute(router);
}

// Prometheus text at /metrics, once something provides it: on the HTTPS
// listener and on [metrics] listen alike.
void Server::addMetricsRoute(http::Router& router) {
    if (!metricsText_) return;
    router.add("GET", "/metrics", [this](http::Request&, http::Reply reply) {
        http::Response r;
        r.contentType = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metricsText_();
        reply(std::move(r));
    });
}

void Server::startHttp() {
    const auto& h = config_.http;
    if (h.listen.empty()) return;
    http::TlsSettings tls;
    tls.minVersion = h.minTls;
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    const std::string credDir = creds != nullptr ? creds : "";
    tls.certFile = h.certFile.empty() && !credDir.empty() ? credDir + "/http-cert" : h.certFile;
    tls.keyFile = h.keyFile.empty() && !credDir.empty() ? credDir + "/http-key" : h.keyFile;
    http::Limits limits;
    limits.headerTimeout = h.headerTimeout;
    limits.bodyTimeout = h.bodyTimeout;
    limits.idleTimeout = h.idleTimeout;
    limits.maxHeaderBytes = h.maxHeaderBytes;
    limits.maxHeaderCount = h.maxHeaderCount;
    limits.maxBodyBytes = h.maxBodyBytes;
    limits.maxConnections = h.maxConnections;
    limits.maxConnectionsPerIp = h.maxConnectionsPerIp;
    auto router = std::make_shared<http::Router>();
    addHttpRoutes(*router);
    http_ = std::make_unique<http::Server>(io_, limits, router, h.trustedProxies, std::move(tls));
    for (const auto& address : h.listen) {
        http_->listen(address);
        log::info("https: listening on " + address.substr(0, address.rfind(':')) + ":" +
                  std::to_string(http_->ports().back()) + " (TLS " + h.minTls + " and later)");
    }
}

void Server::reloadHttpCertificate() {
    if (!http_) return;
    try {
        http_->reloadTls();
        log::info("https: certificate and key reloaded");
    } catch (const std::exception& e) {
        log::error(std::string("https: keeping the old certificate: ") + e.what());
    }
}

void Server::addApiKeyMethods() {
    add("io.twofactor.ApiKey.Create", Access::Admin, [this](const Peer& peer, const json& p, Respond r) {
        const std::string app = p.at("app").get<std::string>();
        if (!config_.apps.count(app)) return r("io.twofactor.ApiKey.NoSuchApp", {{"app", app}});
        std::vector<std::string> scopes;
        for (const auto& s : p.at("scopes")) {
            const auto name = s.get<std::string>();
            if (std::find(http::kApiScopes.begin(), http::kApiScopes.end(), name) == http::kApiScopes.end())
                return r("io.twofactor.ApiKey.InvalidScope", {{"scope", name}});
            if (std::find(scopes.begin(), scopes.end(), name) == scopes.end()) scopes.push_back(name);
        }
        if (scopes.empty()) return r("io.twofactor.ApiKey.InvalidScope", {{"scope", ""}});
        const std::int64_t now = clock_->now();
        const auto expires = opt<std::int64_t>(p, "expiresAt");
        if (expires && *expires <= now) return r("io.twofactor.ApiKey.InvalidExpiry", {{"expiresAt", *expires}});
        const std::string note = opt<std::string>(p, "note").value_or("");
        if (note.size() > 256) return r("org.varlink.service.InvalidParameter", {{"parameter", "note"}});
        auto issued = std::make_shared<http::IssuedApiKey>(http::issueApiKey(apiKeyHashKey_));
        store::ApiKey key;
        key.id = issued->id;
        key.app = app;
        for (const auto& s : scopes) key.scopes += (key.scopes.empty() ? "" : ",") + s;
        key.secretHash = issued->secretHash;
        key.note = note;
        key.createdAt = now;
        key.createdBy = peer.uid;
        key.expiresAt = expires.value_or(0);
        const uid_t uid = peer.uid;
        store_->submit([key](store::Transaction& t) { t.insertApiKey(key); },
                       [r = onIo(r), key, issued, uid](std::exception_ptr e) {
                           if (e) return r(std::string(kOtp) + ".StoreFailed", json::object());
                           log::info("uid " + std::to_string(uid) + " created API key " + key.id + " for app " +
                                     key.app + " (" + key.scopes + ")");
                           r("", {{"key", keyJson(key)}, {"token", std::string(issued->token.view())}});
                       });
    });
    add("io.twofactor.ApiKey.List", Access::Admin, [this](const Peer&, const json& p, Respond r) {
        const std::int64_t limit = opt<std::int64_t>(p, "limit").value_or(1000);
        if (limit < 1 || limit > 100000) return r("org.varlink.service.InvalidParameter", {{"parameter", "limit"}});
        auto list = std::make_shared<std::vector<store::ApiKey>>();
        store_->submit([list, limit](store::Transaction& t) { *list = t.listApiKeys(static_cast<int>(limit)); },
                       [list, r = onIo(r)](std::exception_ptr e) {
                           if (e) return r(std::string(kOtp) + ".StoreFailed", json::object());
                           json keys = json::array();
                           for (const auto& k : *list) keys.push_back(keyJson(k));
                           r("", {{"keys", keys}});
                       });
    });
    add("io.twofactor.ApiKey.Revoke", Access::Admin, [this](const Peer& peer, const json& p, Respond r) {
        const std::string id = p.at("id").get<std::string>();
        auto found = std::make_shared<std::optional<store::ApiKey>>();
        const std::int64_t now = clock_->now();
        store_->submit(
            [found, id, now](store::Transaction& t) {
                t.revokeApiKey(id, now);
                *found = t.findApiKey(id);
            },
            [this, found, id, r = onIo(r), uid = peer.uid](std::exception_ptr e) {
                asio::post(io_, [this, id] { apiKeys_.erase(id); });
                if (e) return r(std::string(kOtp) + ".StoreFailed", json::object());
                if (!*found) return r("io.twofactor.ApiKey.NoSuchKey", {{"id", id}});
                log::info("uid " + std::to_string(uid) + " revoked API key " + id);
                r("", {{"key", keyJson(**found)}});
            });
    });
}

std::vector<std::pair<std::string, std::string>> Server::routeTable() {
    http::Router router;
    addHttpRoutes(router);
    return router.routes();
}

}  // namespace twofactor::server::detail

namespace twofactor::server {

std::vector<std::pair<std::string, std::string>> httpRoutes(const config::Config& config) {
    detail::Server server(config, DaemonOptions{});
    return server.routeTable();
}

}  // namespace twofactor::server
