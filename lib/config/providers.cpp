// [tls], [ses], [smtp], [whatsapp] and [webhook]: the delivery providers.
#include "config/sections.hpp"
#include "config/validators.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace twofactor::config::detail {

namespace {

constexpr std::int64_t kMaxProviderTimeout = 120;
// [whatsapp] pair_backoff: Meta's pair rate limit is about one message per
// six seconds; ten minutes is already far beyond any code's usefulness.
constexpr std::int64_t kMaxPairBackoff = 600;
// [webhook] max_body_bytes: Meta batches status updates, but never megabytes.
constexpr std::int64_t kMinWebhookBody = 1024;
constexpr std::int64_t kMaxWebhookBody = 16 * 1024 * 1024;

std::int64_t readTimeout(const Reader& reader, const toml::node& node, const std::string& key) {
    return reader.integer(node, key, 1, kMaxProviderTimeout, "seconds");
}

// An http(s) base URL of a provider's API ([ses] endpoint, [whatsapp]
// graph_url), without trailing slashes: the drivers append their own paths.
std::string readApiUrl(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    Url url;
    std::string error = parseUrl(value, url);
    if (!error.empty()) {
        reader.fail(node, key, error);
    }
    if (url.scheme != "https" && url.scheme != "http") {
        reader.fail(node, key, "must be an https:// URL");
    }
    // Plain HTTP would carry the message (and the code) in clear text:
    // only for a local test server.
    if (url.scheme == "http" && !isLoopbackHost(url.host)) {
        reader.fail(node, key, "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
    }
    while (value.size() > url.scheme.size() + 3 && value.back() == '/') {
        value.pop_back();
    }
    return value;
}

}  // namespace

std::string readAwsRegion(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validAwsRegion(value)) {
        reader.fail(node, key, "must be an AWS region such as \"eu-west-1\", not \"" + value + "\"");
    }
    return value;
}

std::string readMailbox(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validMailbox(value)) {
        reader.fail(node, key, kMailboxHint);
    }
    return value;
}

std::string readConfigurationSet(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validConfigurationSet(value)) {
        reader.fail(node, key, "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
    }
    return value;
}

void readTls(const Reader& reader, const toml::table& t, Tls& tls) {
    reader.allowOnly(t, "tls", {"min_version", "ca_bundle"});
    if (const toml::node* n = t.get("min_version")) {
        tls.minVersion = reader.oneOf(*n, "tls.min_version", {"1.2", "1.3"});
    }
    if (const toml::node* n = t.get("ca_bundle")) {
        tls.caBundle = reader.absolutePath(*n, "tls.ca_bundle");
        // Checked now: a typo here would otherwise surface as a TLS failure
        // on the first send, hours later.
        struct stat st {};
        if (::stat(tls.caBundle.c_str(), &st) != 0) {
            int err = errno;
            reader.fail(*n, "tls.ca_bundle", tls.caBundle + ": " + std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            reader.fail(*n, "tls.ca_bundle", tls.caBundle + ": not a regular file");
        }
    }
}

void readSes(const Reader& reader, const toml::table& t, Ses& ses) {
    reader.allowOnly(t, "ses",
                     {"region", "endpoint", "from", "reply_to", "configuration_set", "access_key_id_file",
                      "secret_access_key_file", "session_token_file", "timeout", "notifications"});
    if (const toml::node* n = t.get("notifications")) {
        readSesNotifications(reader, reader.table(*n, "ses.notifications"), ses.notifications);
    }
    if (const toml::node* n = t.get("region")) {
        ses.region = readAwsRegion(reader, *n, "ses.region");
    }
    if (const toml::node* n = t.get("endpoint")) {
        ses.endpoint = readApiUrl(reader, *n, "ses.endpoint");
    }
    if (const toml::node* n = t.get("from")) {
        ses.from = readMailbox(reader, *n, "ses.from");
    }
    if (const toml::node* n = t.get("reply_to")) {
        ses.replyTo = reader.stringArray(*n, "ses.reply_to");
        for (std::size_t i = 0; i < ses.replyTo.size(); ++i) {
            if (!validMailbox(ses.replyTo[i])) {
                reader.fail(*n->as_array()->get(i), indexKey("ses.reply_to", i), kMailboxHint);
            }
        }
    }
    if (const toml::node* n = t.get("configuration_set")) {
        ses.configurationSet = readConfigurationSet(reader, *n, "ses.configuration_set");
    }
    const toml::node* keyId = t.get("access_key_id_file");
    const toml::node* secret = t.get("secret_access_key_file");
    const toml::node* token = t.get("session_token_file");
    if (keyId != nullptr) {
        ses.accessKeyIdFile = reader.absolutePath(*keyId, "ses.access_key_id_file");
    }
    if (secret != nullptr) {
        ses.secretAccessKeyFile = reader.absolutePath(*secret, "ses.secret_access_key_file");
    }
    if (token != nullptr) {
        ses.sessionTokenFile = reader.absolutePath(*token, "ses.session_token_file");
    }
    if (keyId != nullptr && secret == nullptr) {
        reader.fail(*keyId, "ses.access_key_id_file", "needs ses.secret_access_key_file as well");
    }
    if (secret != nullptr && keyId == nullptr) {
        reader.fail(*secret, "ses.secret_access_key_file", "needs ses.access_key_id_file as well");
    }
    if (token != nullptr && keyId == nullptr) {
        reader.fail(*token, "ses.session_token_file",
                    "needs ses.access_key_id_file and ses.secret_access_key_file as well");
    }
    if (const toml::node* n = t.get("timeout")) {
        ses.timeout = std::chrono::seconds(readTimeout(reader, *n, "ses.timeout"));
    }
}

// Whether systemd passed the named credential (present in
// $CREDENTIALS_DIRECTORY now, at load).
bool haveCredential(std::string_view name) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
        return false;
    }
    struct stat st {};
    return ::stat(joinPath(dir, name).c_str(), &st) == 0;
}

void readSmtp(const Reader& reader, const toml::table& t, Smtp& smtp) {
    reader.allowOnly(t, "smtp",
                     {"url", "from", "username", "password_file", "ses_region", "require_tls", "timeout"});
    const toml::node* urlNode = t.get("url");
    Url url;
    if (urlNode != nullptr) {
        smtp.url = reader.string(*urlNode, "smtp.url");
        std::string error = parseUrl(smtp.url, url);
        if (!error.empty()) {
            reader.fail(*urlNode, "smtp.url", error);
        }
        if (url.scheme != "smtp" && url.scheme != "smtps") {
            reader.fail(*urlNode, "smtp.url",
                        "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS), not \"" + url.scheme + "://\"");
        }
        // libcurl takes a path as the name to send in EHLO; nothing else.
        if (!url.path.empty() && !std::all_of(url.path.begin() + 1, url.path.end(),
                                              [](char c) { return isAlnum(c) || c == '.' || c == '-'; })) {
            reader.fail(*urlNode, "smtp.url", "may only have a host name as its path (the EHLO name)");
        }
    }
    if (const toml::node* n = t.get("from")) {
        smtp.from = readMailbox(reader, *n, "smtp.from");
    }
    const toml::node* username = t.get("username");
    if (username != nullptr) {
        smtp.username = reader.string(*username, "smtp.username");
        if (smtp.username.empty() || hasControl(smtp.username)) {
            reader.fail(*username, "smtp.username", "must not be empty or contain control characters");
        }
    }
    const toml::node* passwordFile = t.get("password_file");
    const toml::node* sesRegion = t.get("ses_region");
    if (passwordFile != nullptr) {
        smtp.passwordFile = reader.absolutePath(*passwordFile, "smtp.password_file");
    }
    if (sesRegion != nullptr) {
        smtp.sesRegion = readAwsRegion(reader, *sesRegion, "smtp.ses_region");
    }
    if (passwordFile != nullptr && sesRegion != nullptr) {
        const toml::node& later =
            passwordFile->source().begin > sesRegion->source().begin ? *passwordFile : *sesRegion;
        reader.fail(later, &later == passwordFile ? "smtp.password_file" : "smtp.ses_region",
                    "password_file and ses_region are mutually exclusive (ses_region derives the password from the "
                    "AWS secret key)");
    }
    if (username != nullptr && passwordFile == nullptr && sesRegion == nullptr && !haveCredential("smtp-password")) {
        reader.fail(*username, "smtp.username",
                    "has no password: set password_file or ses_region, or pass the systemd credential "
                    "\"smtp-password\"");
    }
    if (passwordFile != nullptr && username == nullptr) {
        reader.fail(*passwordFile, "smtp.password_file", "needs smtp.username as well");
    }
    if (const toml::node* n = t.get("require_tls")) {
        smtp.requireTls = reader.boolean(*n, "smtp.require_tls");
        // Without TLS the code and the password cross the network in clear
        // text: only towards a relay on this host.
        if (!smtp.requireTls && urlNode != nullptr && url.scheme == "smtp" && !isLoopbackHost(url.host)) {
            reader.fail(*n, "smtp.require_tls",
                        "may only be false for a relay on 127.0.0.1, localhost or [::1] (or use smtps://)");
        }
    }
    if (const toml::node* n = t.get("timeout")) {
        smtp.timeout = std::chrono::seconds(readTimeout(reader, *n, "smtp.timeout"));
    }
}

void readWhatsapp(const Reader& reader, const toml::table& t, Whatsapp& whatsapp) {
    reader.allowOnly(t, "whatsapp",
                     {"graph_url", "api_version", "phone_number_id", "token_file", "timeout", "pair_backoff"});
    if (const toml::node* n = t.get("graph_url")) {
        whatsapp.graphUrl = readApiUrl(reader, *n, "whatsapp.graph_url");
    }
    if (const toml::node* n = t.get("api_version")) {
        whatsapp.apiVersion = reader.string(*n, "whatsapp.api_version");
        if (!validApiVersion(whatsapp.apiVersion)) {
            reader.fail(*n, "whatsapp.api_version",
                        "must be a Graph API version such as \"v21.0\", not \"" + whatsapp.apiVersion + "\"");
        }
    }
    if (const toml::node* n = t.get("phone_number_id")) {
        // A string: TOML integers would lose leading zeros and 64-bit range.
        whatsapp.phoneNumberId = reader.string(*n, "whatsapp.phone_number_id");
        if (!validPhoneNumberId(whatsapp.phoneNumberId)) {
            reader.fail(*n, "whatsapp.phone_number_id",
                        "must be 1 to 32 digits (the phone number ID from WhatsApp Manager, not the phone number)");
        }
    }
    if (const toml::node* n = t.get("token_file")) {
        whatsapp.tokenFile = reader.absolutePath(*n, "whatsapp.token_file");
    }
    if (const toml::node* n = t.get("timeout")) {
        whatsapp.timeout = std::chrono::seconds(readTimeout(reader, *n, "whatsapp.timeout"));
    }
    if (const toml::node* n = t.get("pair_backoff")) {
        whatsapp.pairBackoff =
            std::chrono::seconds(reader.integer(*n, "whatsapp.pair_backoff", 1, kMaxPairBackoff, "seconds"));
    }
}

void readWebhook(const Reader& reader, const toml::table& t, Webhook& webhook) {
    reader.allowOnly(t, "webhook",
                     {"enabled", "listen", "port", "path", "verify_token_file", "app_secret_file", "max_body_bytes"});
    const toml::node* enabled = t.get("enabled");
    if (enabled != nullptr) {
        webhook.enabled = reader.boolean(*enabled, "webhook.enabled");
    }
    if (const toml::node* n = t.get("listen")) {
        webhook.listen = reader.string(*n, "webhook.listen");
        // A literal only: a host name would be resolved at bind time, and
        // could resolve to something else than the administrator meant.
        if (!validIpLiteral(webhook.listen)) {
            reader.fail(*n, "webhook.listen",
                        "must be an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\" (no host name, brackets "
                        "or port)");
        }
    }
    if (const toml::node* n = t.get("port")) {
        webhook.port = static_cast<int>(reader.integer(*n, "webhook.port", 0, 65535));
    }
    if (const toml::node* n = t.get("path")) {
        webhook.path = reader.string(*n, "webhook.path");
        if (webhook.path.empty() || webhook.path[0] != '/') {
            reader.fail(*n, "webhook.path", "must start with '/'");
        }
        if (hasControl(webhook.path) || webhook.path.find_first_of(" ?#") != std::string::npos) {
            reader.fail(*n, "webhook.path", "must not contain spaces, control characters, '?' or '#'");
        }
    }
    const toml::node* verifyToken = t.get("verify_token_file");
    const toml::node* appSecret = t.get("app_secret_file");
    if (verifyToken != nullptr) {
        webhook.verifyTokenFile = reader.absolutePath(*verifyToken, "webhook.verify_token_file");
    }
    if (appSecret != nullptr) {
        webhook.appSecretFile = reader.absolutePath(*appSecret, "webhook.app_secret_file");
    }
    if (const toml::node* n = t.get("max_body_bytes")) {
        webhook.maxBodyBytes = static_cast<std::size_t>(
            reader.integer(*n, "webhook.max_body_bytes", kMinWebhookBody, kMaxWebhookBody, "bytes"));
    }
    // Without the verify token Meta's handshake cannot succeed; without the
    // app secret no signature can be checked, and unsigned posts are refused.
    if (webhook.enabled) {
        if (verifyToken == nullptr && !haveCredential("whatsapp-verify-token")) {
            reader.fail(*enabled, "webhook.verify_token_file",
                        "is required by webhook.enabled = true (or pass the systemd credential "
                        "\"whatsapp-verify-token\")");
        }
        if (appSecret == nullptr && !haveCredential("whatsapp-app-secret")) {
            reader.fail(*enabled, "webhook.app_secret_file",
                        "is required by webhook.enabled = true (or pass the systemd credential "
                        "\"whatsapp-app-secret\")");
        }
    }
}

}  // namespace twofactor::config::detail
