#include "channel/ses.hpp"
#include "channel/http_common.hpp"

#include "channel/aws_credentials.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
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

constexpr const char* kSendEmailPath = "/v2/email/outbound-emails";
// SES answers with a few hundred bytes; a larger answer is not SES and is cut.
constexpr std::size_t kMaxResponseBytes = 64 * 1024;
// The provider's message goes to logs and the delivery log: short and one line.
constexpr std::size_t kMaxErrorChars = 300;
constexpr std::chrono::milliseconds kMaxConnectTimeout{5000};
// A Retry-After beyond this is treated as this: the request expires long before.
constexpr std::chrono::seconds kMaxRetryAfter{24 * 3600};

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view v) {
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
    return v;
}

// The endpoint as the request uses it: the URL to send to, the Host header
// to sign (we send exactly that value, so what is signed is what arrives),
// and the path on the request line.
struct Endpoint {
    std::string url;
    std::string host;
    std::string path;
    std::string scheme;
    bool loopback = false;
};

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

std::variant<Endpoint, std::string> parseEndpoint(const std::string& base) {
    std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
    if (!u) return std::string("out of memory");
    if (curl_url_set(u.get(), CURLUPART_URL, base.c_str(), 0) != CURLUE_OK)
        return "the SES endpoint '" + base + "' is not a URL";
    // Credentials or a query in the base URL would be sent unsigned or signed wrongly.
    if (urlPart(u.get(), CURLUPART_USER) || urlPart(u.get(), CURLUPART_PASSWORD) || urlPart(u.get(), CURLUPART_QUERY) ||
        urlPart(u.get(), CURLUPART_FRAGMENT))
        return std::string("the SES endpoint must be a plain base URL (no user, query or fragment)");
    Endpoint e;
    e.scheme = lower(urlPart(u.get(), CURLUPART_SCHEME).value_or(""));
    const std::string host = lower(urlPart(u.get(), CURLUPART_HOST).value_or(""));
    if (host.empty()) return std::string("the SES endpoint has no host");
    const auto port = urlPart(u.get(), CURLUPART_PORT);
    e.host = port ? host + ":" + *port : host;
    e.loopback = isLoopbackHost(host);
    std::string path = urlPart(u.get(), CURLUPART_PATH).value_or("/");
    while (!path.empty() && path.back() == '/') path.pop_back();
    e.path = path + kSendEmailPath;
    if (curl_url_set(u.get(), CURLUPART_PATH, e.path.c_str(), 0) != CURLUE_OK)
        return std::string("the SES endpoint's path is not usable");
    e.url = urlPart(u.get(), CURLUPART_URL).value_or("");
    if (e.url.empty()) return std::string("the SES endpoint is not usable");
    return e;
}

// SES tag values: letters, digits, '_' and '-', 1..256 characters.
std::string sanitiseTag(std::string_view value) {
    std::string out;
    for (unsigned char c : value.substr(0, 256))
        out += (std::isalnum(c) && c < 0x80) || c == '_' || c == '-' ? static_cast<char>(c) : '_';
    return out.empty() ? "none" : out;
}

struct Response {
    std::string body;
    std::string errorType;   // x-amzn-ErrorType
    std::string retryAfter;  // Retry-After
};

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* user) {
    auto* r = static_cast<Response*>(user);
    const std::size_t n = size * count;
    if (r->body.size() < kMaxResponseBytes) r->body.append(data, std::min(n, kMaxResponseBytes - r->body.size()));
    return n;
}

std::size_t onHeader(char* data, std::size_t size, std::size_t count, void* user) {
    auto* r = static_cast<Response*>(user);
    const std::size_t n = size * count;
    const std::string_view line(data, n);
    // A new status line (after a 1xx) starts a new set of headers.
    if (line.rfind("HTTP/", 0) == 0) {
        r->errorType.clear();
        r->retryAfter.clear();
        return n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return n;
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 1));
    if (name == "x-amzn-errortype") r->errorType = std::string(value.substr(0, 512));
    if (name == "retry-after") r->retryAfter = std::string(value.substr(0, 128));
    return n;
}

// Retry-After as delta-seconds or an HTTP date.
std::optional<std::chrono::milliseconds> parseRetryAfter(std::string_view value) {
    value = trim(value);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); })) {
        if (value.size() > 6) return kMaxRetryAfter;
        return std::chrono::seconds(std::stol(std::string(value)));
    }
    const std::time_t at = curl_getdate(std::string(value).c_str(), nullptr);
    if (at < 0) return std::nullopt;
    const std::time_t now = std::time(nullptr);
    const auto delta = std::chrono::seconds(at > now ? at - now : 0);
    return std::min<std::chrono::milliseconds>(delta, kMaxRetryAfter);
}

// One line, bounded, and without the recipient: SES names unverified
// identities in its messages, and this text goes to logs.
std::string operatorText(std::string text, std::string_view destination) {
    if (!destination.empty()) {
        const std::string needle = lower(destination);
        std::string haystack = lower(text);
        for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos)) {
            text.replace(pos, needle.size(), "<recipient>");
            haystack.replace(pos, needle.size(), "<recipient>");
            pos += 11;
        }
    }
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    if (text.size() > kMaxErrorChars) text = text.substr(0, kMaxErrorChars) + "...";
    return text;
}

std::string stringField(const json& body, std::initializer_list<const char*> names) {
    if (!body.is_object()) return {};
    for (const char* name : names) {
        const auto it = body.find(name);
        if (it != body.end() && it->is_string()) return it->get<std::string>();
    }
    return {};
}

// The error code: x-amzn-ErrorType up to ':', else the body's "__type"
// (after '#': "com.amazon.coral.service#SerializationException") or "code".
std::string errorCode(const Response& r, const json& body) {
    if (!r.errorType.empty()) return std::string(trim(std::string_view(r.errorType).substr(0, r.errorType.find(':'))));
    std::string type = stringField(body, {"__type"});
    if (!type.empty()) {
        if (const auto hash = type.find('#'); hash != std::string::npos) type = type.substr(hash + 1);
        if (const auto colon = type.find(':'); colon != std::string::npos) type = type.substr(0, colon);
        return type;
    }
    return stringField(body, {"code", "Code"});
}

bool isOneOf(const std::string& code, std::initializer_list<std::string_view> codes) {
    return std::find(codes.begin(), codes.end(), code) != codes.end();
}

void classifyHttp(long status, const Response& response, std::string_view destination, DeliveryResult& result) {
    result.statusCode = static_cast<int>(status);
    const json body = json::parse(response.body, nullptr, false);
    if (status >= 200 && status < 300) {
        result.outcome = DeliveryOutcome::Accepted;
        // A 2xx without an id was still accepted: sending again would deliver twice.
        result.providerMessageId = stringField(body, {"MessageId"});
        return;
    }
    const std::string code = errorCode(response, body);
    const std::string message = stringField(body, {"message", "Message"});
    std::string text = code.empty() ? "HTTP " + std::to_string(status) : code;
    if (!message.empty()) text += ": " + message;
    result.error = operatorText(std::move(text), destination);
    result.retryAfter = parseRetryAfter(response.retryAfter);

    if (status == 429 ||
        isOneOf(code, {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"})) {
        result.outcome = DeliveryOutcome::Retryable;
        result.errorClass = "throttled";
    } else if (status >= 500 || isOneOf(code, {"RequestTimeout", "RequestTimeoutException", "InternalFailure",
                                               "ServiceUnavailable", "ServiceUnavailableException"})) {
        result.outcome = DeliveryOutcome::Retryable;
        result.errorClass = "server";
    } else if (status == 403 ||
               isOneOf(code, {"AccountSuspendedException", "SendingPausedException", "SignatureDoesNotMatch",
                              "InvalidSignatureException", "IncompleteSignature", "IncompleteSignatureException",
                              "InvalidClientTokenId", "UnrecognizedClientException", "AccessDeniedException",
                              "ExpiredToken", "ExpiredTokenException", "MissingAuthenticationToken",
                              "MissingAuthenticationTokenException"})) {
        // The operator must act (keys, clock, account): retrying cannot help.
        result.outcome = DeliveryOutcome::Permanent;
        result.errorClass = "config";
    } else if (status >= 400) {
        // MessageRejected, MailFromDomainNotVerifiedException, BadRequestException, NotFoundException, ...
        result.outcome = DeliveryOutcome::Permanent;
        result.errorClass = "rejected";
    } else {
        // 1xx/3xx as a final answer: redirects are not followed, so the endpoint is wrong.
        result.outcome = DeliveryOutcome::Permanent;
        result.errorClass = "config";
    }
}

}  // namespace

std::string SesChannel::tagValue(std::string_view value) { return sanitiseTag(value); }

SesChannel::SesChannel(const config::Config& config) : ses_(config.ses), tls_(config.tls) {
    AwsCredentials loaded;
    try {
        loaded = loadAwsCredentials(config.ses);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("ses driver: ") + e.what());
    }
    credentials_.accessKeyId = std::move(loaded.accessKeyId);
    credentials_.secretAccessKey = std::move(loaded.secretAccessKey);
    credentials_.sessionToken = loaded.sessionToken.str();  // the signer's type; wiped in the destructor
    curlGlobalInit();
}

SesChannel::~SesChannel() {
    if (!credentials_.sessionToken.empty())
        OPENSSL_cleanse(credentials_.sessionToken.data(), credentials_.sessionToken.size());
}

void SesChannel::deliver(Message message, Done done) {
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

DeliveryResult SesChannel::send(const Message& message) {
    if (message.expiresAt > 0 && std::time(nullptr) >= message.expiresAt)
        return permanent("expired", "the request expired before delivery");

    const config::App* app = message.appConfig;
    const std::string& region = app && !app->sesRegion.empty() ? app->sesRegion : ses_.region;
    const std::string& from = app && !app->sesFrom.empty() ? app->sesFrom : ses_.from;
    const std::string& configurationSet =
        app && !app->sesConfigurationSet.empty() ? app->sesConfigurationSet : ses_.configurationSet;
    if (region.empty()) return permanent("config", "no SES region: set [ses] region or the app's ses_region");
    // The region becomes part of a host name and of the signing scope.
    if (!std::all_of(region.begin(), region.end(),
                     [](unsigned char c) { return (std::islower(c) || std::isdigit(c) || c == '-') && c < 0x80; }))
        return permanent("config", "the SES region '" + region + "' is not a region name");
    if (from.empty()) return permanent("config", "no sender: set [ses] from or the app's ses_from");

    const std::string base = ses_.endpoint.empty() ? "https://email." + region + ".amazonaws.com" : ses_.endpoint;
    auto parsed = parseEndpoint(base);
    if (auto* error = std::get_if<std::string>(&parsed)) return permanent("config", *error);
    const Endpoint& endpoint = std::get<Endpoint>(parsed);

    PooledCurl handle = curlPool_.acquire();
    CURL* curl = handle.get();
    if (curl == nullptr) throw std::runtime_error("curl_easy_init failed");
    // Plain http only towards this host itself (a test's mock); SES proper is https.
    std::vector<std::string> schemes{"https"};
    if (endpoint.loopback) schemes.emplace_back("http");
    if (std::string policyError; !applyTransportPolicy(curl, endpoint.url, tls_, schemes, policyError))
        return permanent("config", "the SES endpoint must use https (http only on loopback): " + policyError);

    json body = json::object();
    body["FromEmailAddress"] = from;
    body["Destination"] = {{"ToAddresses", json::array({message.destination})}};
    if (!ses_.replyTo.empty()) body["ReplyToAddresses"] = ses_.replyTo;
    json simple = json::object();
    simple["Subject"] = {{"Data", message.subject.str()}, {"Charset", "UTF-8"}};
    simple["Body"]["Text"] = {{"Data", message.text.str()}, {"Charset", "UTF-8"}};
    if (!message.html.empty()) simple["Body"]["Html"] = {{"Data", message.html.str()}, {"Charset", "UTF-8"}};
    body["Content"]["Simple"] = std::move(simple);
    // Tags reach SES's event stream and CloudWatch: app and purpose, never personal data.
    body["EmailTags"] = json::array({{{"Name", "app"}, {"Value", sanitiseTag(message.app)}},
                                     {{"Name", "purpose"}, {"Value", sanitiseTag(message.purpose)}}});
    if (!configurationSet.empty()) body["ConfigurationSetName"] = configurationSet;

    email::HttpRequestToSign request;
    request.method = "POST";
    request.path = endpoint.path;
    request.headers = {{"Host", endpoint.host}, {"Content-Type", "application/json"}};
    // Invalid UTF-8 is replaced rather than thrown on: the message still goes out.
    request.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    wipeStrings(body);
    auto signedOrError = email::signV4(request, credentials_, region, "ses", email::amzDateNow());
    // Take the body over without a copy; the signer only kept its hash.
    const SecretString payload(std::move(request.body));
    if (!request.body.empty()) OPENSSL_cleanse(request.body.data(), request.body.size());
    if (auto* error = std::get_if<email::SigV4Error>(&signedOrError))
        return permanent("config", "cannot sign the SES request: " + error->reason);
    const auto& sig = std::get<email::SigV4Result>(signedOrError);

    CurlHeaders headers;
    bool ok = true;
    for (const auto& [name, value] : request.headers) ok = ok && headers.add(name + ": " + value);
    for (const auto& [name, value] : sig.headersToAdd) ok = ok && headers.add(name + ": " + value);
    // No "Expect: 100-continue" round trip: the body is small.
    ok = ok && headers.add("Expect:");
    if (!ok) throw std::runtime_error("out of memory building the SES request headers");

    Response response;
    char errorBuffer[CURL_ERROR_SIZE] = {};
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(ses_.timeout);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.str().data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "twofactord");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(timeout, kMaxConnectTimeout).count()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
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
    classifyHttp(status, response, message.destination, result);
    return result;
}

}  // namespace twofactor::channel
