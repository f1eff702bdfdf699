// The SMTP driver: email through any SMTP relay (or SES's SMTP interface),
// via libcurl. STARTTLS or implicit TLS with full verification; a relay that
// cannot do TLS when TLS is required gets nothing, not a message in clear.
#pragma once

#include "channel/channel.hpp"
#include "channel/curl_util.hpp"
#include "config/config.hpp"
#include "util/secret.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace twofactor::channel {

class SmtpChannel final : public Channel {
public:
    // Loads the AUTH password once (so a missing secret stops the daemon at
    // start, not at the first login): $CREDENTIALS_DIRECTORY/smtp-password,
    // else [smtp] password_file, else, with [smtp] ses_region, the SES SMTP
    // password derived from the AWS credentials of [ses] (the user name then
    // defaults to the access key id). Throws std::runtime_error when AUTH is
    // configured and no password is found, or when [smtp] from is unusable.
    explicit SmtpChannel(const config::Config& config);
    std::string driverName() const override { return "smtp"; }
    // Blocking: runs the whole SMTP conversation on the calling thread (a
    // delivery worker), then calls `done` once.
    void deliver(Message message, Done done) override;

private:
    config::Smtp smtp_;
    config::Tls tls_;
    std::string username_;
    SecretString password_;
    CurlHandlePool pool_;
};

// The pieces of a message that are pure functions, public for the tests.
namespace smtp {

// "Name <local@domain>" or "local@domain"; display is unquoted and unescaped.
struct Mailbox {
    std::string display;
    std::string address;
};

// Parses a sender or recipient; false when there is no plausible address or
// the text holds control characters (a header injection attempt or a typo).
[[nodiscard]] bool parseMailbox(std::string_view text, Mailbox& out);

// A header value as RFC 2047 encoded words ("=?UTF-8?B?...?=", each at most
// 75 characters, never splitting a UTF-8 sequence, folded with CRLF SP so no
// line passes 76) when it is not plain printable ASCII; otherwise the text
// itself, control characters replaced by spaces. `used` is what precedes the
// value on the first line ("Subject: " = 9).
[[nodiscard]] std::string encodeHeaderText(std::string_view text, std::size_t used = 0);

// The From/To header value: the address, with the display name quoted or
// encoded as needed.
[[nodiscard]] std::string formatMailbox(const Mailbox& mailbox);

// RFC 5322 date in UTC: "Tue, 01 Aug 2023 12:00:00 +0000" (locale-independent).
[[nodiscard]] std::string rfc5322Date(std::int64_t unixSeconds);

}  // namespace smtp

}  // namespace twofactor::channel
