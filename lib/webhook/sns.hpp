// Amazon SNS → SES bounce and complaint notifications, received on the
// webhook listener ([ses.notifications] at its own path).
//
// Every message is verified before anything in it is acted on: its
// SigningCertURL must be https://sns.REGION.amazonaws.com/NAME.pem, the
// certificate comes from a configured file or directory (fetched only with
// fetch_certificates = true) and must chain to a trusted CA, and the
// signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) must verify
// over the canonical string SNS defines for the message's type. Only the
// configured topics are accepted; a subscription is confirmed (the one
// network call, to sns.REGION.amazonaws.com) only for them.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::http {
class Router;
struct Request;
struct Response;
}  // namespace twofactor::http

namespace twofactor::webhook::sns {

struct Message {
    std::string type;  // Notification, SubscriptionConfirmation, UnsubscribeConfirmation
    std::string messageId, topicArn, message, timestamp;
    std::optional<std::string> subject;  // Notification only, when the publisher gave one
    std::string token, subscribeUrl;     // the confirmations only
    std::string signatureVersion, signature, signingCertUrl;
};

// The envelope: a JSON object whose fields are all strings. nullopt when it
// is not one, lacks a field its type needs, or has an unknown type.
[[nodiscard]] std::optional<Message> parseMessage(std::string_view body);

// The string SNS signs: "Key\nvalue\n" for the type's fields, in byte order
// of their names (Notification: Message, MessageId, Subject if present,
// Timestamp, TopicArn, Type; the confirmations: Message, MessageId,
// SubscribeURL, Timestamp, Token, TopicArn, Type).
[[nodiscard]] std::string canonicalString(const Message& m);

// https://sns.REGION.amazonaws.com/NAME.pem (or .amazonaws.com.cn), nothing
// else: no port, user, query or fragment; NAME of letters, digits, '.', '_', '-'.
// Sets `name` to NAME.pem and `region` to REGION.
[[nodiscard]] bool validCertUrl(std::string_view url, std::string& name, std::string& region);
// https://sns.REGION.amazonaws.com/?Action=ConfirmSubscription&... for `region`.
// Sets `pathAndQuery` to what follows the host.
[[nodiscard]] bool validSubscribeUrl(std::string_view url, std::string_view region, std::string& pathAndQuery);
// The region of an SNS topic ARN ("" when it is not one).
[[nodiscard]] std::string topicRegion(std::string_view arn);

// A message's Timestamp, "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC), in seconds since
// the epoch; nullopt for anything else.
[[nodiscard]] std::optional<std::int64_t> parseTimestamp(std::string_view text);
// How old a signed message may be: SNS retries an HTTP/S delivery for at
// most an hour (its delivery policies cannot ask for longer), so an older
// one is a replay. Clocks may differ by kMaxClockSkew either way.
constexpr std::int64_t kMaxMessageAge = 3600;
constexpr std::int64_t kMaxClockSkew = 300;

enum class Verdict { Valid, BadSignature, BadCertificate, UnsupportedVersion };
// Verifies the message's signature with the PEM certificate, which must chain
// to a CA in caFile (or the system's when empty) and be valid now.
[[nodiscard]] Verdict verify(const Message& m, const std::string& certificatePem, const std::string& caFile);

// An SES notification (the Message of an SNS Notification).
struct SesNotification {
    enum class Kind { PermanentBounce, TransientBounce, Complaint, Other };
    Kind kind = Kind::Other;
    std::vector<std::string> recipients;  // as SES reports them
    std::string messageId;                // mail.messageId: the message SES sent
    std::string detail;                   // "Permanent/General", "Transient/MailboxFull", "abuse"
};
// notificationType (or eventType) Bounce with bounceType Permanent, Transient
// (or Undetermined, taken as transient), or Complaint; anything else is Other.
// nullopt when the message is not JSON.
[[nodiscard]] std::optional<SesNotification> parseSesNotification(std::string_view message);

struct Handlers {
    // A permanent bounce or a complaint: suppress and count. `done(false)`
    // when it could not be stored (SNS is then asked to retry).
    std::function<void(const SesNotification&, std::function<void(bool stored)> done)> onFeedback;
    // Runs blocking work (a certificate fetch, a subscription confirmation)
    // off the listener's I/O thread.
    std::function<void(std::function<void()>)> execute;
    // The time now, seconds since the epoch (the daemon's clock).
    std::function<std::int64_t()> now;
};

class Endpoint {
public:
    Endpoint(const config::SesNotifications& config, const config::Tls& tls, Handlers handlers);
    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;
    // POST config.path. This object must outlive the router's use.
    void addRoutes(http::Router& router);

private:
    void handle(const http::Request& req, std::function<void(http::Response)> reply);
    // The certificate's PEM for a valid SigningCertURL, or "" (logged why).
    std::string certificate(const std::string& url, const std::string& name);
    bool confirm(const Message& m, const std::string& pathAndQuery) const;

    config::SesNotifications config_;
    config::Tls tls_;
    Handlers handlers_;
    std::mutex mutex_;
    std::map<std::string, std::string> certificates_;  // by URL, guarded by mutex_
};

}  // namespace twofactor::webhook::sns
