#include "channel/whatsapp.hpp"
#include "channel/http_common.hpp"

#include "util/files.hpp"
#include "util/log.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <variant>
#include <vector>

namespace twofactor::channel {

using nlohmann::json;

namespace {

using http::classifyCurl;
using http::CurlHeaders;
using http::isLoopbackHost;
using http::permanent;
using http::wipeStrings;

// Graph answers with a few hundred bytes; a larger answer is not Graph and is cut.
constexpr std::size_t kMaxResponseBytes = 64 * 1024;
// The provider's message goes to logs and the delivery log: short and one line.
constexpr std::size_t kMaxErrorChars = 300;
constexpr std::chrono::milliseconds kMaxConnectTimeout{5000};
// Meta's limit for an authentication template's code parameter.
constexpr std::size_t kMaxCodeChars = 15;

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trimSecret(std::string_view v) {
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
    return v;
}

struct CurlUrlDeleter {
    void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlStringDeleter {
    void operator()(char* s) const { curl_free(s); }
};

std::optional<std::string> urlPart(CURLU* u, CURLUPart part) {
    char* raw = nullptr;
    if (curl_url_get(u, part, &raw, 0) != CURLUE_OK || raw == nullptr) return std::nullopt;
    std::unique_ptr<char, CurlStringDeleter> owned(raw);
    return std::string(raw);
}

struct Endpoint {
    std::string url;
    bool loopback = false;
};

// {graphUrl}/{apiVersion}/{phoneNumberId}/messages
std::variant<Endpoint, std::string> parseEndpoint(const config::Whatsapp& wa) {
    std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
    if (!u) return std::string("out of memory");
    if (curl_url_set(u.get(), CURLUPART_URL, wa.graphUrl.c_str(), 0) != CURLUE_OK)
        return "the WhatsApp graph_url '" + wa.graphUrl + "' is not a URL";
    // Credentials in the URL would travel beside the bearer token; a query or
    // fragment would make the path ambiguous.
    if (urlPart(u.get(), CURLUPART_USER) || urlPart(u.get(), CURLUPART_PASSWORD) || urlPart(u.get(), CURLUPART_QUERY) ||
        urlPart(u.get(), CURLUPART_FRAGMENT))
        return std::string("the WhatsApp graph_url must be a plain base URL (no user, query or fragment)");
    const std::string host = lower(urlPart(u.get(), CURLUPART_HOST).value_or(""));
    if (host.empty()) return std::string("the WhatsApp graph_url has no host");
    Endpoint e;
    e.loopback = isLoopbackHost(host);
    std::string path = urlPart(u.get(), CURLUPART_PATH).value_or("/");
    while (!path.empty() && path.back() == '/') path.pop_back();
    path += "/" + wa.apiVersion + "/" + wa.phoneNumberId + "/messages";
    if (curl_url_set(u.get(), CURLUPART_PATH, path.c_str(), 0) != CURLUE_OK)
        return std::string("the WhatsApp graph_url's path is not usable");
    e.url = urlPart(u.get(), CURLUPART_URL).value_or("");
    if (e.url.empty()) return std::string("the WhatsApp graph_url is not usable");
    return e;
}

bool validApiVersion(std::string_view v) {
    if (v.size() < 4 || v.front() != 'v') return false;
    const auto dot = v.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == v.size()) return false;
    for (std::size_t i = 1; i < v.size(); ++i)
        if (i != dot && !std::isdigit(static_cast<unsigned char>(v[i]))) return false;
    return true;
}

bool allDigits(std::string_view v) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); });
}

// "+" and 7..15 digits, the first not 0: what Graph's "to" takes and what
// the service's normalisation produces.
bool isE164(std::string_view v) {
    return v.size() >= 8 && v.size() <= 16 && v.front() == '+' && v[1] != '0' && allDigits(v.substr(1));
}

// The template for a message: its locale, the locale's language ("pt-BR" ->
// "pt"), the app's default locale (and its language), then "en".
const config::WhatsappTemplate* findTemplate(const config::App& app, const std::string& locale) {
    std::vector<std::string> keys;
    auto add = [&keys](const std::string& k) {
        if (!k.empty() && std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    };
    auto language = [](const std::string& tag) { return tag.substr(0, tag.find_first_of("-_")); };
    add(locale);
    add(language(locale));
    add(app.defaultLocale);
    add(language(app.defaultLocale));
    add("en");
    for (const auto& key : keys)
        if (const auto it = app.whatsappTemplates.find(key); it != app.whatsappTemplates.end()) return &it->second;
    return nullptr;
}

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
    auto* body = static_cast<std::string*>(user);
    const std::size_t n = size * count;
    if (body->size() < kMaxResponseBytes) body->append(data, std::min(n, kMaxResponseBytes - body->size()));
    return n;
}

void replaceAll(std::string& text, const std::string& needle, std::string_view with) {
    if (needle.empty()) return;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + with.size()))
        text.replace(pos, needle.size(), with);
}

// One line, bounded, and without the recipient: Graph's details may name the
// number, with or without its '+', and this text goes to logs.
std::string operatorText(std::string text, const std::string& destination) {
    replaceAll(text, destination, "<recipient>");
    if (destination.size() > 1 && destination.front() == '+') replaceAll(text, destination.substr(1), "<recipient>");
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    if (text.size() > kMaxErrorChars) text = text.substr(0, kMaxErrorChars) + "...";
    return text;
}

std::string stringAt(const json& object, const char* name) {
    if (!object.is_object()) return {};
    const auto it = object.find(name);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<long> errorCode(const json& error) {
    if (!error.is_object()) return std::nullopt;
    const auto it = error.find("code");
    if (it == error.end()) return std::nullopt;
    if (it->is_number_integer()) return it->get<long>();
    if (it->is_string() && allDigits(it->get_ref<const std::string&>()) &&
        it->get_ref<const std::string&>().size() < 10)
        return std::stol(it->get<std::string>());
    return std::nullopt;
}

// Graph's message already starts with "(#code) "; it is said once.
std::string errorText(long code, const json& error) {
    std::string message = stringAt(error, "message");
    const std::string prefix = "(#" + std::to_string(code) + ")";
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
    while (!message.empty() && message.front() == ' ') message.erase(0, 1);
    std::string text = prefix;
    if (!message.empty()) text += " " + message;
    const std::string details =
        stringAt(error.is_object() ? error.value("error_data", json::object()) : json(), "details");
    if (!details.empty()) text += ": " + details;
    return text;
}

enum class Alert { None, Operator };

struct CodeAction {
    long code;
    DeliveryOutcome outcome;
    const char* errorClass;
    Alert alert;
    const char* hint;  // for the operator alert: what to look at
};

// By error.code, not by HTTP status (providers.md).
constexpr CodeAction kCodeActions[] = {
    {4, DeliveryOutcome::Retryable, "throttled", Alert::None, nullptr},
    {80007, DeliveryOutcome::Retryable, "throttled", Alert::None, nullptr},
    {130429, DeliveryOutcome::Retryable, "throttled", Alert::None, nullptr},
    {131000, DeliveryOutcome::Retryable, "server", Alert::None, nullptr},
    {131016, DeliveryOutcome::Retryable, "server", Alert::None, nullptr},
    {2, DeliveryOutcome::Retryable, "server", Alert::None, nullptr},
    {131056, DeliveryOutcome::Retryable, "pair-rate", Alert::None, nullptr},
    // The service decides on the e-mail fallback from this class.
    {131026, DeliveryOutcome::Permanent, "undeliverable", Alert::None, nullptr},
    {132000, DeliveryOutcome::Permanent, "config", Alert::None, nullptr},
    {132001, DeliveryOutcome::Permanent, "config", Alert::Operator,
     "the message template does not exist for this name and language: check whatsapp_templates"},
    {131047, DeliveryOutcome::Permanent, "rejected", Alert::None, nullptr},
    {131048, DeliveryOutcome::Permanent, "rejected", Alert::None, nullptr},
    {131049, DeliveryOutcome::Permanent, "rejected", Alert::None, nullptr},
    {131031, DeliveryOutcome::Permanent, "config", Alert::Operator,
     "the WhatsApp Business account is locked: check the account in Meta Business Manager"},
    {368, DeliveryOutcome::Permanent, "config", Alert::Operator,
     "the account is blocked for a policy violation: check the account in Meta Business Manager"},
    {190, DeliveryOutcome::Permanent, "config", Alert::Operator,
     "the access token is invalid or expired: replace the whatsapp-token credential and restart"},
};

const CodeAction* actionFor(long code) {
    for (const auto& a : kCodeActions)
        if (a.code == code) return &a;
    return nullptr;
}

void classifyHttp(long status, const std::string& responseBody, const Message& message,
                  const config::WhatsappTemplate& tmpl, DeliveryResult& result) {
    result.statusCode = static_cast<int>(status);
    const json body = json::parse(responseBody, nullptr, false);
    const json error = body.is_object() ? body.value("error", json()) : json();
    const std::optional<long> code = errorCode(error);

    if (status >= 200 && status < 300 && !code) {
        result.outcome = DeliveryOutcome::Accepted;
        // A 2xx without an id was still accepted: sending again would deliver twice.
        if (body.is_object()) {
            const json messages = body.value("messages", json::array());
            if (messages.is_array() && !messages.empty()) result.providerMessageId = stringAt(messages[0], "id");
        }
        return;
    }
    if (!code) {
        std::string text = "HTTP " + std::to_string(status);
        if (const std::string m = stringAt(error, "message"); !m.empty()) text += ": " + m;
        result.error = operatorText(std::move(text), message.destination);
        result.outcome = status >= 500 ? DeliveryOutcome::Retryable : DeliveryOutcome::Permanent;
        // 1xx/3xx as a final answer: redirects are not followed, so the URL is wrong.
        result.errorClass = status >= 500 ? "server" : (status >= 400 ? "rejected" : "config");
        return;
    }
    result.error = operatorText(errorText(*code, error), message.destination);
    if (const CodeAction* action = actionFor(*code)) {
        result.outcome = action->outcome;
        result.errorClass = action->errorClass;
        if (action->alert == Alert::Operator) {
            // Codes, template and fixed text only: nothing about the recipient.
            std::string line = "WhatsApp operator alert: error " + std::to_string(*code) + ": " + action->hint;
            if (*code == 132001) line += " (template '" + tmpl.name + "', language '" + tmpl.language + "')";
            log::error(line, {log::Event::OperatorAlert, message.requestId, message.app});
        }
        return;
    }
    if (status >= 500) {
        result.outcome = DeliveryOutcome::Retryable;
        result.errorClass = "server";
    } else {
        result.outcome = DeliveryOutcome::Permanent;
        result.errorClass = "rejected";
    }
}

bool expired(const Message& message) { return message.expiresAt > 0 && std::time(nullptr) >= message.expiresAt; }

SecretString loadToken(const config::Whatsapp& wa) {
    SecretString raw;
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
        const std::string path = std::string(dir) + "/whatsapp-token";
        if (files::exists(path)) raw = files::readCredentialFile(path);
    }
    if (raw.empty() && !wa.tokenFile.empty()) {
        if (!files::exists(wa.tokenFile))
            throw std::runtime_error("whatsapp driver: [whatsapp] token_file " + wa.tokenFile + " does not exist");
        raw = files::readSecretFile(wa.tokenFile);
    }
    SecretString token(std::string(trimSecret(raw.view())));
    if (token.empty())
        throw std::runtime_error(
            "whatsapp driver: no access token: provide the systemd credential whatsapp-token or "
            "[whatsapp] token_file");
    // It becomes a header line: anything that could end or split the line is refused.
    if (!std::all_of(token.view().begin(), token.view().end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; }))
        throw std::runtime_error("whatsapp driver: the access token contains spaces or control characters");
    return token;
}

}  // namespace

WhatsappChannel::WhatsappChannel(const config::Config& config) : whatsapp_(config.whatsapp), tls_(config.tls) {
    if (whatsapp_.phoneNumberId.empty())
        throw std::runtime_error("whatsapp driver: [whatsapp] phone_number_id is not set");
    if (!allDigits(whatsapp_.phoneNumberId))
        throw std::runtime_error("whatsapp driver: [whatsapp] phone_number_id must be Meta's numeric id");
    if (!validApiVersion(whatsapp_.apiVersion))
        throw std::runtime_error("whatsapp driver: [whatsapp] api_version must look like \"v21.0\"");
    token_ = loadToken(whatsapp_);
    curlGlobalInit();
}

void WhatsappChannel::deliver(Message message, Done done) {
    const auto start = std::chrono::steady_clock::now();
    DeliveryResult result;
    try {
        result = send(message);
    } catch (const std::exception& e) {
        // Only resource exhaustion gets here, in practice before anything was sent.
        result = DeliveryResult{};
        result.outcome = DeliveryOutcome::Retryable;
        result.errorClass = "internal";
        result.error = e.what();
    }
    result.driver = driverName();
    result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    done(std::move(result));
}

void WhatsappChannel::rememberPairLimit(const std::string& destination) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(pairMutex_);
    for (auto it = notBefore_.begin(); it != notBefore_.end();)
        it = it->second <= now ? notBefore_.erase(it) : std::next(it);
    notBefore_[destination] = now + whatsapp_.pairBackoff;
}

bool WhatsappChannel::waitForRecipient(const Message& message) {
    // Loops: another worker may hit 131056 for the same number meanwhile.
    for (;;) {
        std::chrono::steady_clock::time_point until;
        {
            std::lock_guard lock(pairMutex_);
            const auto it = notBefore_.find(message.destination);
            if (it == notBefore_.end()) return true;
            until = it->second;
        }
        const auto now = std::chrono::steady_clock::now();
        if (until <= now) return true;
        if (message.expiresAt > 0) {
            const auto expiry = std::chrono::system_clock::from_time_t(static_cast<std::time_t>(message.expiresAt));
            const auto left = expiry - std::chrono::system_clock::now();
            // No point holding a worker for a message that cannot go out in time.
            if (left <= until - now) return false;
        }
        std::this_thread::sleep_until(until);
    }
}

DeliveryResult WhatsappChannel::send(const Message& message) {
    if (expired(message)) return permanent("expired", "the request expired before delivery");
    if (message.appConfig == nullptr) return permanent("config", "no app configuration for the WhatsApp message");
    const config::WhatsappTemplate* tmpl = findTemplate(*message.appConfig, message.locale);
    if (tmpl == nullptr)
        return permanent("config", "no WhatsApp template for locale " + message.locale + " (nor for app '" +
                                       message.appConfig->name + "' default locale " +
                                       message.appConfig->defaultLocale + " or en)");
    if (!isE164(message.destination)) return permanent("rejected", "the destination is not an E.164 number");
    if (message.code.empty() || message.code.size() > kMaxCodeChars)
        return permanent("config", "WhatsApp takes a code of 1 to 15 characters");

    auto parsed = parseEndpoint(whatsapp_);
    if (auto* error = std::get_if<std::string>(&parsed)) return permanent("config", *error);
    const Endpoint& endpoint = std::get<Endpoint>(parsed);

    PooledCurl handle = curlPool_.acquire();
    CURL* curl = handle.get();
    if (curl == nullptr) throw std::runtime_error("curl_easy_init failed");
    // Plain http only towards this host itself (a test's mock); Graph proper is https.
    std::vector<std::string> schemes{"https"};
    if (endpoint.loopback) schemes.emplace_back("http");
    if (std::string policyError; !applyTransportPolicy(curl, endpoint.url, tls_, schemes, policyError))
        return permanent("config", "the WhatsApp graph_url must use https (http only on loopback): " + policyError);

    if (!waitForRecipient(message))
        return permanent("expired", "the request expires before the recipient's pair rate limit allows a message");
    if (expired(message)) return permanent("expired", "the request expired before delivery");

    // Built without initializer lists, whose temporaries would hold unwiped copies of the code.
    json text = json::object();
    text["type"] = "text";
    text["text"] = message.code.str();
    json bodyComponent = json::object();
    bodyComponent["type"] = "body";
    bodyComponent["parameters"] = json::array();
    bodyComponent["parameters"].push_back(text);
    json button = json::object();
    button["type"] = "button";
    button["sub_type"] = "url";
    button["index"] = "0";
    button["parameters"] = json::array();
    button["parameters"].push_back(std::move(text));
    json body = json::object();
    body["messaging_product"] = "whatsapp";
    body["recipient_type"] = "individual";
    body["to"] = message.destination;
    body["type"] = "template";
    json& templ = body["template"];
    templ["name"] = tmpl->name;
    templ["language"]["code"] = tmpl->language;
    templ["components"] = json::array();
    templ["components"].push_back(std::move(bodyComponent));
    templ["components"].push_back(std::move(button));
    // Invalid UTF-8 is replaced rather than thrown on: the message still goes out.
    const SecretString payload(body.dump(-1, ' ', false, json::error_handler_t::replace));
    wipeStrings(body);

    CurlHeaders headers;
    bool ok = headers.add("Authorization: Bearer " + token_.str());
    ok = ok && headers.add("Content-Type: application/json");
    // No "Expect: 100-continue" round trip: the body is small.
    ok = ok && headers.add("Expect:");
    if (!ok) throw std::runtime_error("out of memory building the WhatsApp request headers");

    std::string response;
    char errorBuffer[CURL_ERROR_SIZE] = {};
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(whatsapp_.timeout);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.str().data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "twofactord");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(timeout, kMaxConnectTimeout).count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errorBuffer);

    const CURLcode rc = curl_easy_perform(curl);
    // The pooled handle keeps these pointers until its reset; they die with this frame.
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, nullptr);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);

    DeliveryResult result;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        // Pre-transfer is reached once the connection (TLS included) is up and
        // the request about to go out; a TCP connect or a handshake that timed
        // out never carried the request.
        curl_off_t pretransferTime = 0;
        long requestSize = 0;
        curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransferTime);
        curl_easy_getinfo(curl, CURLINFO_REQUEST_SIZE, &requestSize);
        classifyCurl(rc, errorBuffer, pretransferTime > 0 || requestSize > 0, result);
        result.statusCode = static_cast<int>(status);
        return result;
    }
    classifyHttp(status, response, message, *tmpl, result);
    if (result.errorClass == "pair-rate") {
        // This message's retry waits, and so does any other message to this number.
        result.retryAfter = std::chrono::duration_cast<std::chrono::milliseconds>(whatsapp_.pairBackoff);
        rememberPairLimit(message.destination);
    }
    return result;
}

}  // namespace twofactor::channel
