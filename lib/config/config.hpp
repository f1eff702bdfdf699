// twofactord's configuration: the TOML file, or the embedded default when there is none.
#pragma once

#include "config/privacy.hpp"
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::config {

// A configuration error with the place it was found; what() is
// "FILE:LINE:COLUMN: KEY: message" (parts omitted when unknown).
class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string file, int line, int column, std::string key, std::string message);
    const std::string& file() const { return file_; }
    int line() const { return line_; }
    int column() const { return column_; }
    const std::string& key() const { return key_; }
    const std::string& message() const { return message_; }

private:
    std::string file_;
    int line_;
    int column_;
    std::string key_;
    std::string message_;
};

enum class Role { Operator, Dpo, Admin };
const char* roleName(Role role);

// Who holds a role: Unix user names or numeric uids, and group names or gids.
struct RoleGrant {
    std::vector<std::string> users;
    std::vector<std::string> groups;
};

// One locale's message template. Placeholders: {{code}}, {{app}}, {{minutes}}.
struct Template {
    std::string subject;
    std::string text;
    std::string html;  // may be empty: text only
};

// An approved WhatsApp message template of category AUTHENTICATION.
struct WhatsappTemplate {
    std::string name;      // name, e.g. "otp_login"
    std::string language;  // language, e.g. "en_US"
};

// [apps.NAME.rate_limits]: abuse limits, counted per app in the store (they
// survive a restart). Fixed windows; a refusal carries when to retry.
struct RateLimits {
    std::chrono::seconds resendCooldown{30};         // resend_cooldown: between sends to one destination, 0..3600 (0 = off)
    int destinationSends = 5;                        // destination_sends per destination_window, 1..1000000
    std::chrono::seconds destinationWindow{900};     // destination_window, 1..86400
    int ipSends = 20;                                // ip_sends per ip_window (sends with a client IP), 1..1000000
    std::chrono::seconds ipWindow{900};              // ip_window, 1..86400
    int prefixSends = 100;                           // prefix_sends per prefix_window (/24 IPv4, /64 IPv6), 1..1000000
    std::chrono::seconds prefixWindow{900};          // prefix_window, 1..86400
    int appSends = 600;                              // app_sends per app_window, 1..1000000
    std::chrono::seconds appWindow{60};              // app_window, 1..86400
    int maxSubjectFailures = 10;                     // max_subject_failures: consecutive failed verifies, 1..100
    std::chrono::seconds subjectLockout{60};         // subject_lockout: first lockout, doubling, 1..86400
    std::chrono::seconds subjectMaxLockout{3600};    // subject_max_lockout: the cap, subject_lockout..86400
};

// One velocity rule of [apps.NAME.fraud]: when, counting this send, more
// than `threshold` are seen within `window`, the rule fires and either flags
// (logged and audited as "flagged:<rule>", the send goes ahead) or blocks
// (refused like a rate limit, scope "fraud:<rule>").
struct FraudRule {
    int threshold = 10;                 // threshold, 1..10000
    std::chrono::seconds window{3600};  // window, 1..86400
    bool block = false;                 // action = "flag" | "block"
};

// [apps.NAME.fraud]: velocity rules over keyed hashes (no address, IP or device in clear).
struct FraudRules {
    FraudRule distinctDestinationsPerIp{10, std::chrono::seconds(3600), false};     // distinct_destinations_per_ip
    FraudRule distinctDevicesPerDestination{5, std::chrono::seconds(3600), false};  // distinct_devices_per_destination
    FraudRule destinationPrefix{50, std::chrono::seconds(3600), false};             // destination_prefix
};

// [apps.NAME.events]: outgoing event webhooks (lib/otp/events.hpp), signed per
// Standard Webhooks and sent over HTTPS with verification always on.
struct AppEvents {
    std::string url;                       // url: https://... (required)
    std::string secretFile;                // secret_file: "whsec_<base64>" (required; same rules as key files)
    std::vector<std::string> events;       // events: the types sent (otp::kEventTypes), at least one
    std::string caFile;                    // ca_file: a PEM bundle to verify the endpoint with, "" = [tls] / the system's
    std::chrono::seconds timeout{10};      // timeout per attempt, 1..120
    int maxFailures = 20;                  // max_failures: consecutive failed attempts that disable the endpoint, 1..10000
    std::chrono::seconds retryBase{10};    // retry_base: the first retry's delay, doubling up to an hour, 1..3600
    std::chrono::seconds retryFor{86400};  // retry_for: an event is given up this long after it happened, 60..604800
};

struct App {
    std::string name;                       // the key in [apps.NAME]
    std::string displayName;                // display_name, defaults to name
    std::vector<std::string> channels;      // channels = ["email", "whatsapp"]
    int codeLength = 6;                     // code_length (default for requests)
    int minCodeLength = 6;                  // min_code_length, >= 4
    int maxCodeLength = 10;                 // max_code_length, <= 10
    std::chrono::seconds ttl{600};          // ttl: default request lifetime
    std::chrono::seconds maxTtl{600};       // max_ttl: longest a caller may ask for, <= 86400
    int maxAttempts = 5;                    // max_attempts, 1..100
    int maxSends = 5;                       // max_sends per request (first send + resends), 1..100
    std::string defaultLocale = "en";       // default_locale
    std::string defaultRegion;              // default_region for phone numbers without +CC ("" = require +)
    // [apps.NAME.templates.LOCALE] (key "LOCALE") and
    // [apps.NAME.templates.LOCALE.PURPOSE] (key "LOCALE.PURPOSE"), merged over built-ins.
    std::map<std::string, Template> templates;

    // Email through SES, per app (data residency: an EU app sends through an
    // EU region). Empty = the [ses] value.
    std::string sesRegion;            // ses_region
    std::string sesFrom;              // ses_from
    std::string sesConfigurationSet;  // ses_configuration_set
    std::string emailFrom;            // email_from: the SMTP sender, "" = [smtp] from
    // email_local_part = "exact": "John@x" and "john@x" are two subjects (for
    // limits, verify by address, GDPR). Default "case-insensitive": one.
    bool emailLocalPartExact = false;

    // WhatsApp, per app.
    // [apps.NAME.whatsapp_templates]: locale -> approved AUTHENTICATION
    // template, e.g. en = { name = "otp_login", language = "en_US" }.
    std::map<std::string, WhatsappTemplate> whatsappTemplates;
    // allowed_countries / denied_countries: ISO 3166 region codes ("DE").
    // A number from a denied region, or from outside a non-empty allow list, is refused.
    std::vector<std::string> allowedCountries;
    std::vector<std::string> deniedCountries;
    // allowed_ip_countries / denied_ip_countries: the same for the client IP
    // of a send, by the [geoip] database. A client from a denied country, or
    // from outside a non-empty allow list (unknown included), is refused.
    std::vector<std::string> allowedIpCountries;
    std::vector<std::string> deniedIpCountries;
    // fallback_to_email: when WhatsApp fails for good and the send carried a
    // fallback email address, deliver the same request by email instead.
    bool fallbackToEmail = false;

    RateLimits rateLimits;  // [apps.NAME.rate_limits]
    FraudRules fraud;       // [apps.NAME.fraud]
    std::optional<AppEvents> events;  // [apps.NAME.events]
};

// TLS towards providers. Peer and host verification are always on.
struct Tls {
    std::string minVersion = "1.2";  // min_version: "1.2" | "1.3"
    std::string caBundle;            // ca_bundle: a PEM file, "" = the system's
};

// [ses.notifications]: SES bounces and complaints published to SNS topics,
// received on the webhook listener ([webhook]) at `path`.
struct SesNotifications {
    bool enabled = false;                // enabled
    std::string path = "/sns/ses";       // path
    std::vector<std::string> topicArns;  // topic_arns: only these topics' messages are accepted (required)
    std::string certificateFile;         // certificate_file: the SNS signing certificate (PEM)
    std::string certificateDir;          // certificate_dir: signing certificates, named as in SigningCertURL
    bool fetchCertificates = false;      // fetch_certificates: fetch one missing from certificate_dir
    std::string caFile;                  // ca_file: CAs a signing certificate must chain to ("" = the system's)
    std::string subscribeUrlBase;        // subscribe_url_base: tests only, where confirmations go instead
};

// [ses]: Amazon SES API v2 SendEmail.
struct Ses {
    std::string region;                   // region, e.g. "eu-west-1" (required when a channel uses "ses")
    std::string endpoint;                 // endpoint: base URL, "" = https://email.REGION.amazonaws.com
    std::string from;                     // from: "Example <no-reply@example.com>" (required)
    std::vector<std::string> replyTo;     // reply_to
    std::string configurationSet;         // configuration_set
    // Credentials, in order: $CREDENTIALS_DIRECTORY/aws-access-key-id,
    // aws-secret-access-key, aws-session-token; these files (same rules as key
    // files); the environment AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
    std::string accessKeyIdFile;          // access_key_id_file
    std::string secretAccessKeyFile;      // secret_access_key_file
    std::string sessionTokenFile;         // session_token_file
    std::chrono::seconds timeout{10};     // timeout per attempt, 1..120
    SesNotifications notifications;       // [ses.notifications]
};

// [smtp]: any SMTP relay, through libcurl.
struct Smtp {
    std::string url;                      // url: smtp://host:587 (STARTTLS) or smtps://host:465 (required)
    std::string from;                     // from: "Example <no-reply@example.com>" (required)
    std::string username;                 // username, "" = no AUTH
    std::string passwordFile;             // password_file; credential "smtp-password"
    std::string sesRegion;                // ses_region: derive the password from the AWS secret key
    bool requireTls = true;               // require_tls: STARTTLS required on smtp:// (CURLUSESSL_ALL)
    std::chrono::seconds timeout{10};     // timeout per attempt, 1..120
};

// [whatsapp]: Meta's WhatsApp Business Cloud API.
struct Whatsapp {
    std::string graphUrl = "https://graph.facebook.com";  // graph_url: base URL (tests: http://127.0.0.1:PORT)
    std::string apiVersion = "v21.0";                      // api_version: "vNN.N"
    std::string phoneNumberId;                             // phone_number_id (required when used)
    // The bearer token: $CREDENTIALS_DIRECTORY/whatsapp-token, else this file
    // (same owner/mode rules as key files).
    std::string tokenFile;                                 // token_file
    std::chrono::seconds timeout{10};                      // timeout per attempt, 1..120
    // Pair rate limit (error 131056): wait at least this long before the
    // next message to the same recipient.
    std::chrono::seconds pairBackoff{6};                   // pair_backoff, 1..600
};

// [webhook]: the HTTP listener for Meta's webhooks (status updates, STOP).
// Off unless enabled; meant to sit behind the site's TLS reverse proxy.
struct Webhook {
    bool enabled = false;                  // enabled
    std::string listen = "127.0.0.1";      // listen: address to bind
    int port = 8443;                       // port, 1..65535 (0 in tests: any free port, logged)
    std::string path = "/whatsapp";        // path of the endpoint
    // The verify token for the GET handshake and the app secret for
    // X-Hub-Signature-256: $CREDENTIALS_DIRECTORY/whatsapp-verify-token and
    // whatsapp-app-secret, else these files.
    std::string verifyTokenFile;           // verify_token_file
    std::string appSecretFile;             // app_secret_file
    std::size_t maxBodyBytes = 256 * 1024; // max_body_bytes, 1 KiB..16 MiB
};

// [http]: the HTTPS API for remote applications (lib/http/). Off until
// `listen` names an address.
struct Http {
    std::vector<std::string> listen;  // listen: "0.0.0.0:8443", "[::]:8443"
    // The certificate chain and key: $CREDENTIALS_DIRECTORY/http-cert and
    // http-key, else these files. Read again on SIGHUP.
    std::string certFile;             // cert_file
    std::string keyFile;              // key_file
    std::string minTls = "1.3";       // min_tls: "1.3" | "1.2"
    std::vector<std::string> trustedProxies;  // trusted_proxies: addresses or CIDR networks
    std::chrono::seconds headerTimeout{10};   // header_timeout, 1..300
    std::chrono::seconds bodyTimeout{30};     // body_timeout: the whole request, 1..600, >= header_timeout
    std::chrono::seconds idleTimeout{30};     // idle_timeout: keep-alive, 1..3600
    std::size_t maxHeaderBytes = 16 * 1024;   // max_header_bytes, 1 KiB..1 MiB
    std::size_t maxHeaderCount = 64;          // max_header_count, 8..1000
    std::size_t maxBodyBytes = 64 * 1024;     // max_body_bytes, 1 KiB..16 MiB
    int maxConnections = 1024;                // max_connections, 1..100000
    int maxConnectionsPerIp = 64;             // max_connections_per_ip, 1..100000
    // Calls one API key may make per minute (every route counts); 0: no limit.
    int keyRequestsPerMinute = 600;           // key_requests_per_minute, 0..1000000
};

// [retry]: how transient delivery failures are retried, within the request's lifetime.
struct Retry {
    int maxAttempts = 5;                       // max_attempts per send, 1..20
    std::chrono::milliseconds baseDelay{1000}; // base_delay_ms, 10..60000
    std::chrono::milliseconds maxDelay{20000}; // max_delay_ms, >= base
    std::chrono::seconds sendWait{20};         // send_wait: longest a send waits for the first outcome, 1..300
};

struct Limits {
    std::size_t maxMessageBytes = 64 * 1024;  // max_message_bytes
    int maxDepth = 16;                        // max_depth of JSON nesting in a call
    std::chrono::seconds idleTimeout{60};     // idle_timeout: a connection with nothing to say is closed
    std::chrono::seconds requestTimeout{30};  // request_timeout: a partial message must complete within
    int maxConnectionsPerUid = 64;            // max_connections_per_uid
    // max_connections: open connections of all uids but root together, so
    // many uids cannot exhaust the daemon's descriptors either
    int maxConnections = 4096;
    // max_calls_per_connection: calls read from one connection and not yet
    // answered (they run one at a time); beyond it the connection is not read
    // until a reply goes out, so pipelining cannot queue without bound
    int maxCallsPerConnection = 16;
};

// [retention]: the daemon's purge job (issue 5). Periods in seconds.
struct Retention {
    std::string schedule = "17 3 * * *";     // schedule: 5-field cron, UTC
    std::int64_t codeHashes = 86400;         // code_hashes: after a request finished or expired, 60..31536000
    std::int64_t deliveryLogs = 90 * 86400;  // delivery_logs: deliveries, request log, client IP, device and destination, 3600..3650 days
    std::int64_t authenticationMetadata = 365 * 86400;  // authentication_metadata: requests (outcomes) and audit records
    std::int64_t removedApps = 30 * 86400;   // removed_apps: all data of an app after it left the configuration
    int batchSize = 1000;                    // batch_size: rows per store work item, 1..100000
};

struct Config {
    std::string sourcePath;       // "" for the embedded default
    bool embedded = false;        // true when no config file exists

    // [daemon]
    std::string socketPath;       // socket
    std::string stateDir;         // state_dir
    std::string databasePath;     // database, default STATE_DIR/twofactor.db
    std::string storeKeyFile;     // store_key_file; credential name "store-key"
    std::string pepperFile;       // pepper_file; credential name "code-pepper"
    bool generateKeys = false;    // generate_keys: create missing key files (0600) on first start
    bool synchronousFull = true;  // synchronous = "full" | "normal"
    std::string logLevel = "info";  // log_level: debug, info, warning, error

    // [store]
    struct Store {
        std::string backend = "sqlcipher";  // backend: "sqlcipher" | "postgresql"
        std::string dsnFile;                // dsn_file; credential name "store-dsn"
        int connections = 4;                // connections (PostgreSQL)
        bool preparedStatements = true;     // prepared_statements (PostgreSQL)
        int cacheMiB = 16;                  // cache_size (SQLCipher), MiB
    } store;

    Limits limits;  // [limits]

    // [access.operator], [access.dpo], [access.admin]
    std::map<Role, RoleGrant> access;

    // [delivery]: which driver serves each channel: email -> outbox|ses|smtp,
    // whatsapp -> outbox|whatsapp.
    std::map<std::string, std::string> drivers;  // channel -> driver, e.g. "email" -> "outbox"

    // [outbox]
    std::string outboxDir;  // directory, default STATE_DIR/outbox
    // keep: "until-end" (default) removes a request's messages from new/ and
    // cur/ when it ends; "until-pickup" only from new/: what a consumer moved
    // to cur/ is its own. Either way by the retention run after expiry.
    bool outboxKeepUntilPickup = false;

    Tls tls;      // [tls]
    Ses ses;      // [ses]
    Smtp smtp;    // [smtp]
    Retry retry;  // [retry]
    Whatsapp whatsapp;  // [whatsapp]
    Webhook webhook;    // [webhook]
    Http http;          // [http]
    Retention retention;  // [retention]
    Privacy privacy;      // [privacy]
    // [geoip] database: a MaxMind DB (.mmdb, GeoLite2/GeoIP2 Country or DB-IP
    // country) for the apps' client IP country rules; "" = none.
    std::string geoipDatabase;

    // [metrics]: the Prometheus endpoint, off unless listen is set.
    struct Metrics {
        std::string listen;   // as written, "127.0.0.1:9464"
        std::string address;  // a loopback address: 127.0.0.0/8 or ::1
        int port = 0;
    } metrics;

    std::map<std::string, App> apps;  // [apps.NAME]
};

// Reads and validates a TOML file. Unknown keys, wrong types and out-of-range
// values throw ConfigError naming file, line and key (the first by line).
Config loadFile(const std::string& path);
Config parse(std::string_view text, const std::string& sourceName);

// What checking a file found: the configuration when it is valid, else every
// error in it, sorted by line. A TOML syntax error stops the parser: then it
// is the only one.
struct CheckResult {
    std::optional<Config> config;
    std::vector<ConfigError> errors;
};
CheckResult checkFile(const std::string& path);
CheckResult check(std::string_view text, const std::string& sourceName);

// The embedded default: per-user state directory and socket, one app
// "default", the outbox for email and WhatsApp, keys generated on first
// start, and the running user holding every role.
Config embeddedDefault();

// Built-in templates (en, de, fr, es), keyed "LOCALE" and "LOCALE.PURPOSE"
// (login, verify, recovery), used where an app has none.
const std::map<std::string, Template>& builtinTemplates();

}  // namespace twofactor::config
