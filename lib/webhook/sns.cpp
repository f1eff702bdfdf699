#include "webhook/sns.hpp"

#include "channel/curl_util.hpp"
#include "http/server.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>

namespace twofactor::webhook::sns {

using json = nlohmann::json;

namespace {

// A signing certificate is a few KiB; anything much larger is not one.
constexpr std::size_t kMaxCertificateBytes = 64 * 1024;
constexpr long kNetworkTimeoutMs = 10000;

const std::regex kSnsHost(R"(sns\.([a-z]{2}(-[a-z]+)+-[0-9])\.amazonaws\.com(\.cn)?)");

std::optional<std::string> stringField(const json& doc, const char* key) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
}

// Splits "https://HOST/REST" into HOST and "/REST"; false for anything else.
bool splitHttpsUrl(std::string_view url, std::string& host, std::string& rest) {
    constexpr std::string_view scheme = "https://";
    if (!url.starts_with(scheme)) return false;
    url.remove_prefix(scheme.size());
    const auto slash = url.find('/');
    if (slash == std::string_view::npos) return false;
    host = std::string(url.substr(0, slash));
    rest = std::string(url.substr(slash));
    return true;
}

std::string readSmallFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "";
    std::string text(kMaxCertificateBytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text.size() > kMaxCertificateBytes ? "" : text;
}

std::vector<unsigned char> base64Decode(std::string_view text) {
    if (text.empty() || text.size() % 4 != 0) return {};
    std::vector<unsigned char> out(text.size() / 4 * 3);
    const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                  static_cast<int>(text.size()));
    if (n < 0) return {};
    std::size_t size = static_cast<std::size_t>(n);
    // EVP_DecodeBlock counts the padding as zero bytes.
    if (text.ends_with("==")) size -= 2;
    else if (text.ends_with('=')) size -= 1;
    out.resize(size);
    return out;
}

size_t collect(char* data, size_t size, size_t count, void* out) {
    auto* body = static_cast<std::string*>(out);
    if (body->size() + size * count > kMaxCertificateBytes) return 0;  // aborts the transfer
    body->append(data, size * count);
    return size * count;
}

// One GET, bounded in time and size. The status, or 0 when the transfer failed.
long httpGet(const std::string& url, const config::Tls& tls, std::string& body, std::string& error) {
    channel::curlGlobalInit();
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) {
        error = "curl_easy_init failed";
        return 0;
    }
    if (!channel::applyTransportPolicy(curl.get(), url, tls, {"https", "http"}, error)) return 0;
    char errorBuffer[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "twofactord");
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, kNetworkTimeoutMs);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, errorBuffer);
    if (curl_easy_perform(curl.get()) != CURLE_OK) {
        error = errorBuffer[0] ? errorBuffer : "the transfer failed";
        return 0;
    }
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    return status;
}

http::Response answer(int status, std::string text) {
    http::Response r = http::Response::text(status, std::move(text) + "\n");
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

}  // namespace

std::optional<Message> parseMessage(std::string_view body) {
    const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
    Message m;
    const auto need = [&](const char* key, std::string& into) {
        auto v = stringField(doc, key);
        if (!v) return false;
        into = std::move(*v);
        return true;
    };
    if (!need("Type", m.type) || !need("MessageId", m.messageId) || !need("TopicArn", m.topicArn) ||
        !need("Message", m.message) || !need("Timestamp", m.timestamp) ||
        !need("SignatureVersion", m.signatureVersion) || !need("Signature", m.signature) ||
        !need("SigningCertURL", m.signingCertUrl))
        return std::nullopt;
    if (m.type == "Notification") {
        m.subject = stringField(doc, "Subject");
        return m;
    }
    if (m.type == "SubscriptionConfirmation" || m.type == "UnsubscribeConfirmation") {
        if (!need("Token", m.token) || !need("SubscribeURL", m.subscribeUrl)) return std::nullopt;
        return m;
    }
    return std::nullopt;
}

std::optional<std::int64_t> parseTimestamp(std::string_view text) {
    // 2012-04-26T20:45:04.751Z: fixed positions, digits where digits go.
    if (text.size() < 20 || text.back() != 'Z') return std::nullopt;
    const auto digits = [&](std::size_t at, std::size_t n) -> std::optional<int> {
        int v = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (text[i] < '0' || text[i] > '9') return std::nullopt;
            v = v * 10 + (text[i] - '0');
        }
        return v;
    };
    if (text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' || text[16] != ':') return std::nullopt;
    const auto y = digits(0, 4), mo = digits(5, 2), d = digits(8, 2), h = digits(11, 2), mi = digits(14, 2),
               sec = digits(17, 2);
    if (!y || !mo || !d || !h || !mi || !sec) return std::nullopt;
    if (text.size() > 20) {  // a fraction: ".", then 1 to 9 digits, before the Z
        if (text[19] != '.' || text.size() > 30 || text.size() < 22 || !digits(20, text.size() - 21)) return std::nullopt;
    }
    if (*mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 || *mi > 59 || *sec > 60) return std::nullopt;
    std::tm tm{};
    tm.tm_year = *y - 1900;
    tm.tm_mon = *mo - 1;
    tm.tm_mday = *d;
    tm.tm_hour = *h;
    tm.tm_min = *mi;
    tm.tm_sec = *sec;
    const std::time_t t = ::timegm(&tm);
    // timegm normalises 31 February into March: such a date is not one.
    if (tm.tm_mday != *d || tm.tm_mon != *mo - 1) return std::nullopt;
    return static_cast<std::int64_t>(t);
}

std::string canonicalString(const Message& m) {
    std::string s;
    const auto field = [&s](std::string_view key, std::string_view value) {
        s.append(key).append("\n").append(value).append("\n");
    };
    field("Message", m.message);
    field("MessageId", m.messageId);
    if (m.type == "Notification") {
        if (m.subject) field("Subject", *m.subject);
    } else {
        field("SubscribeURL", m.subscribeUrl);
    }
    field("Timestamp", m.timestamp);
    if (m.type != "Notification") field("Token", m.token);
    field("TopicArn", m.topicArn);
    field("Type", m.type);
    return s;
}

bool validCertUrl(std::string_view url, std::string& name, std::string& region) {
    std::string host, rest;
    if (!splitHttpsUrl(url, host, rest)) return false;
    std::smatch match;
    if (!std::regex_match(host, match, kSnsHost)) return false;
    static const std::regex kPath(R"(/([A-Za-z0-9_-][A-Za-z0-9._-]{0,200}\.pem))");
    std::smatch path;
    if (!std::regex_match(rest, path, kPath)) return false;
    region = match[1].str();
    name = path[1].str();
    return true;
}

bool validSubscribeUrl(std::string_view url, std::string_view region, std::string& pathAndQuery) {
    std::string host, rest;
    if (!splitHttpsUrl(url, host, rest)) return false;
    std::smatch match;
    if (!std::regex_match(host, match, kSnsHost) || match[1].str() != region) return false;
    if (!rest.starts_with("/?") || rest.find("Action=ConfirmSubscription") == std::string::npos ||
        rest.find_first_of(" #\r\n") != std::string::npos)
        return false;
    pathAndQuery = rest;
    return true;
}

std::string topicRegion(std::string_view arn) {
    static const std::regex kArn(R"(arn:aws(-cn|-us-gov)?:sns:([a-z]{2}(-[a-z]+)+-[0-9]):[0-9]{12}:.+)");
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_match(arn.begin(), arn.end(), m, kArn)) return "";
    return m[2].str();
}

Verdict verify(const Message& m, const std::string& certificatePem, const std::string& caFile) {
    const EVP_MD* digest = m.signatureVersion == "1" ? EVP_sha1() : m.signatureVersion == "2" ? EVP_sha256() : nullptr;
    if (digest == nullptr) return Verdict::UnsupportedVersion;
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(certificatePem.data(), static_cast<int>(certificatePem.size())), BIO_free);
    std::unique_ptr<X509, decltype(&X509_free)> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
                                                     X509_free);
    if (!cert) return Verdict::BadCertificate;
    // The certificate must chain to a trusted CA and be valid now: a file in
    // the cache directory is only as good as whoever could write it.
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
    if (!store) return Verdict::BadCertificate;
    if (caFile.empty() ? X509_STORE_set_default_paths(store.get()) != 1
                       : X509_STORE_load_locations(store.get(), caFile.c_str(), nullptr) != 1)
        return Verdict::BadCertificate;
    std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> chain(
        sk_X509_new_null(), [](STACK_OF(X509)* s) { sk_X509_pop_free(s, X509_free); });
    // Intermediates that came in the same PEM file.
    while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) sk_X509_push(chain.get(), extra);
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), chain.get()) != 1 ||
        X509_verify_cert(ctx.get()) != 1)
        return Verdict::BadCertificate;

    const std::vector<unsigned char> signature = base64Decode(m.signature);
    if (signature.empty()) return Verdict::BadSignature;
    EVP_PKEY* key = X509_get0_pubkey(cert.get());
    if (key == nullptr || EVP_PKEY_base_id(key) != EVP_PKEY_RSA) return Verdict::BadCertificate;
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    const std::string text = canonicalString(m);
    if (!md || EVP_DigestVerifyInit(md.get(), nullptr, digest, nullptr, key) != 1 ||
        EVP_DigestVerify(md.get(), signature.data(), signature.size(),
                         reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1)
        return Verdict::BadSignature;
    return Verdict::Valid;
}

std::optional<SesNotification> parseSesNotification(std::string_view message) {
    const json doc = json::parse(message, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
    SesNotification n;
    // SES notifications say notificationType; event publishing says eventType.
    const std::string type = stringField(doc, "notificationType").value_or(stringField(doc, "eventType").value_or(""));
    if (auto mail = doc.find("mail"); mail != doc.end() && mail->is_object())
        n.messageId = stringField(*mail, "messageId").value_or("");
    const auto recipients = [&n](const json& list) {
        if (!list.is_array()) return;
        for (const auto& r : list)
            if (r.is_object())
                if (auto a = stringField(r, "emailAddress")) n.recipients.push_back(*a);
    };
    if (type == "Bounce") {
        auto b = doc.find("bounce");
        if (b == doc.end() || !b->is_object()) return n;
        const std::string bounceType = stringField(*b, "bounceType").value_or("");
        n.kind = bounceType == "Permanent" ? SesNotification::Kind::PermanentBounce
                                            : SesNotification::Kind::TransientBounce;
        n.detail = bounceType + "/" + stringField(*b, "bounceSubType").value_or("");
        if (auto list = b->find("bouncedRecipients"); list != b->end()) recipients(*list);
    } else if (type == "Complaint") {
        auto c = doc.find("complaint");
        if (c == doc.end() || !c->is_object()) return n;
        n.kind = SesNotification::Kind::Complaint;
        n.detail = stringField(*c, "complaintFeedbackType").value_or("");
        if (auto list = c->find("complainedRecipients"); list != c->end()) recipients(*list);
    }
    // Only printable ASCII of bounded length goes into the store and the log.
    if (n.detail.size() > 64 || std::any_of(n.detail.begin(), n.detail.end(), [](char ch) { return ch < 0x20 || ch > 0x7e; }))
        n.detail = "";
    if (n.messageId.size() > 256) n.messageId.clear();
    return n;
}

Endpoint::Endpoint(const config::SesNotifications& config, const config::Tls& tls, Handlers handlers)
    : config_(config), tls_(tls), handlers_(std::move(handlers)) {}

void Endpoint::addRoutes(http::Router& router) {
    router.add("POST", config_.path, [this](http::Request& req, http::Reply done) {
        // Certificate fetches and confirmations block: off the listener's thread.
        auto request = std::make_shared<http::Request>(req);
        handlers_.execute([this, request, done] { handle(*request, done); });
    });
}

std::string Endpoint::certificate(const std::string& url, const std::string& name) {
    {
        std::lock_guard lock(mutex_);
        if (auto it = certificates_.find(url); it != certificates_.end()) return it->second;
    }
    std::string pem;
    if (!config_.certificateFile.empty()) pem = readSmallFile(config_.certificateFile);
    if (pem.empty() && !config_.certificateDir.empty()) pem = readSmallFile(config_.certificateDir + "/" + name);
    if (pem.empty() && config_.fetchCertificates) {
        std::string error;
        const long status = httpGet(url, tls_, pem, error);
        if (status != 200) {
            log::warning("SNS: the signing certificate " + url + " could not be fetched: " +
                         (status ? "HTTP " + std::to_string(status) : error));
            return "";
        }
        try {
            files::writeFileAtomic(config_.certificateDir, config_.certificateDir, name, pem);
        } catch (const std::exception& e) {
            log::warning(std::string("SNS: the fetched signing certificate was not cached: ") + e.what());
        }
        log::info("SNS: fetched the signing certificate " + url);
    }
    if (pem.empty()) {
        log::warning("SNS: no signing certificate for " + url + " (put it into [ses.notifications] certificate_dir as " +
                     name + ", or allow fetch_certificates)");
        return "";
    }
    std::lock_guard lock(mutex_);
    certificates_[url] = pem;
    return pem;
}

bool Endpoint::confirm(const Message& m, const std::string& pathAndQuery) const {
    const std::string url =
        config_.subscribeUrlBase.empty() ? m.subscribeUrl : config_.subscribeUrlBase + pathAndQuery;
    std::string body, error;
    const long status = httpGet(url, tls_, body, error);
    if (status != 200) {
        log::error("SNS: confirming the subscription to " + m.topicArn + " failed: " +
                   (status ? "HTTP " + std::to_string(status) : error));
        return false;
    }
    log::info("SNS: confirmed the subscription to " + m.topicArn);
    return true;
}

void Endpoint::handle(const http::Request& req, std::function<void(http::Response)> reply) {
    const auto message = parseMessage(req.body);
    if (!message) {
        log::warning("SNS: refused a POST from " + req.clientIp + ": not an SNS message");
        return reply(answer(400, "not an SNS message"));
    }
    const Message& m = *message;
    // The topic before the signature: an unknown topic is refused whoever signed it.
    if (std::find(config_.topicArns.begin(), config_.topicArns.end(), m.topicArn) == config_.topicArns.end()) {
        log::warning("SNS: refused a " + m.type + " of the unknown topic " + m.topicArn + " from " + req.clientIp);
        return reply(answer(403, "unknown topic"));
    }
    std::string name, region;
    if (!validCertUrl(m.signingCertUrl, name, region)) {
        log::warning("SNS: refused a " + m.type + " from " + req.clientIp +
                     ": SigningCertURL is not https://sns.REGION.amazonaws.com/NAME.pem");
        return reply(answer(403, "bad signing certificate URL"));
    }
    const std::string pem = certificate(m.signingCertUrl, name);
    if (pem.empty()) return reply(answer(403, "unknown signing certificate"));
    switch (verify(m, pem, config_.caFile)) {
        case Verdict::Valid: break;
        case Verdict::UnsupportedVersion:
            log::warning("SNS: refused a message with SignatureVersion " + m.signatureVersion);
            return reply(answer(403, "unsupported signature version"));
        case Verdict::BadCertificate:
            log::warning("SNS: refused a message: its signing certificate " + m.signingCertUrl +
                         " does not chain to a trusted CA or is not valid now");
            return reply(answer(403, "untrusted signing certificate"));
        case Verdict::BadSignature:
            log::warning("SNS: refused a message from " + req.clientIp + ": bad signature");
            return reply(answer(403, "bad signature"));
    }
    // Signed, so its time is SNS's: one from long ago is a recorded message sent again.
    if (handlers_.now) {
        const auto at = parseTimestamp(m.timestamp);
        const std::int64_t now = handlers_.now();
        if (!at || *at < now - kMaxMessageAge - kMaxClockSkew || *at > now + kMaxClockSkew) {
            log::warning("SNS: refused a " + m.type + " " + m.messageId + " from " + req.clientIp + ": its Timestamp " +
                         m.timestamp + (!at           ? " is not a time"
                          : *at > now ? " is in the future (is this host's clock wrong?)"
                                      : " is more than an hour old (a replay, or this host's clock is wrong)"));
            return reply(answer(403, "stale message"));
        }
    }

    if (m.type == "SubscriptionConfirmation") {
        std::string pathAndQuery;
        if (!validSubscribeUrl(m.subscribeUrl, topicRegion(m.topicArn), pathAndQuery)) {
            log::warning("SNS: refused a subscription confirmation whose SubscribeURL is not sns." +
                         topicRegion(m.topicArn) + ".amazonaws.com");
            return reply(answer(403, "bad SubscribeURL"));
        }
        return reply(confirm(m, pathAndQuery) ? answer(200, "confirmed") : answer(502, "confirmation failed"));
    }
    if (m.type == "UnsubscribeConfirmation") {
        log::warning("SNS: the subscription to " + m.topicArn + " was ended; no more bounces or complaints arrive");
        return reply(answer(200, "ok"));
    }
    const auto ses = parseSesNotification(m.message);
    if (!ses) {
        log::warning("SNS: a signed notification of " + m.topicArn + " is not an SES notification");
        return reply(answer(200, "ignored"));  // a redelivery would not make it one
    }
    using Kind = SesNotification::Kind;
    if (ses->kind == Kind::Other) return reply(answer(200, "ignored"));
    if (ses->kind == Kind::TransientBounce) {
        // Mailbox full, greylisting, out of office: the next code may well arrive.
        log::info("SNS: transient bounce (" + ses->detail + ") of SES message " + ses->messageId + " for " +
                  std::to_string(ses->recipients.size()) + " recipient(s); not suppressed");
        return reply(answer(200, "logged"));
    }
    handlers_.onFeedback(*ses, [reply](bool stored) {
        reply(stored ? answer(200, "suppressed") : answer(500, "not stored; retry"));
    });
}

}  // namespace twofactor::webhook::sns
