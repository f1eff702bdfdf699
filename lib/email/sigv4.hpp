// AWS Signature Version 4 request signing and the SES SMTP password derived
// from an AWS secret key, for the Amazon SES e-mail driver.
#pragma once

#include "util/secret.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace twofactor::email {

struct AwsCredentials {
    std::string accessKeyId;
    SecretString secretAccessKey;
    std::string sessionToken;  // empty for long-term credentials
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequestToSign {
    std::string method;  // "POST"
    // Exactly as on the request line, without the query. It is URI-encoded
    // once more for the canonical request (so "%2F" is signed as "%252F"),
    // which is what AWS expects of every service except S3.
    std::string path;
    // Raw, as sent, without the '?'. '+' is taken literally, so encode spaces as %20.
    std::string query;
    // The headers that will be sent, Host included. Leave out X-Amz-Date and
    // Authorization: the signer produces those (see SigV4Result::headersToAdd).
    HttpHeaders headers;
    std::string body;
};

struct SigV4Result {
    std::string canonicalRequest;
    std::string stringToSign;
    std::string signature;      // lower-case hex
    std::string authorization;  // the Authorization header's value
    // To append to the request as sent: X-Amz-Date, X-Amz-Security-Token
    // when the credentials carry one, and Authorization.
    HttpHeaders headersToAdd;
};

// Why a request could not be signed. Never contains key material.
struct SigV4Error {
    std::string reason;
};

// Signs with header-based authentication. `amzDate` is the request time in
// the ISO 8601 basic form AWS uses, "20150830T123600Z" (see amzDate() below).
//
// Every header given is signed except hop-by-hop and proxy-rewritten ones
// (connection, expect, keep-alive, te, trailer, transfer-encoding, upgrade,
// user-agent, proxy-*), which intermediaries may change. Repeated headers are
// signed as one, their values joined by ',' in the order given.
//
// Fails on a malformed date, a missing Host header, a request that already
// carries X-Amz-Date or Authorization (or X-Amz-Security-Token while the
// credentials bring their own token), and for service "s3", whose canonical
// path rules differ and which is not needed here.
[[nodiscard]] std::variant<SigV4Result, SigV4Error> signV4(const HttpRequestToSign& request,
                                                           const AwsCredentials& credentials, std::string_view region,
                                                           std::string_view service, std::string_view amzDate);

// "20150830T123600Z" for a time in seconds since the Unix epoch (UTC).
[[nodiscard]] std::string amzDate(std::int64_t unixSeconds);
[[nodiscard]] std::string amzDateNow();

// The SMTP password (signature version 4) for the SES SMTP interface in
// `region`; the SMTP user name is the access key id. The password is as
// powerful as the key for sending mail, hence a SecretString.
[[nodiscard]] SecretString sesSmtpPassword(const SecretString& secretAccessKey, std::string_view region);

}  // namespace twofactor::email
