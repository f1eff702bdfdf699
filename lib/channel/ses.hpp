// The Amazon SES API v2 e-mail driver: SendEmail over HTTPS, signed with our
// own SigV4 signer, one blocking request per delivery.
#pragma once

#include "channel/channel.hpp"
#include "channel/curl_util.hpp"
#include "config/config.hpp"
#include "email/sigv4.hpp"

#include <string>
#include <string_view>

namespace twofactor::channel {

class SesChannel final : public Channel {
public:
    // Loads the AWS credentials once (they are not re-read per message, so a
    // rotated key needs a restart). Throws std::runtime_error naming what is
    // missing, never a value.
    explicit SesChannel(const config::Config& config);
    SesChannel(const SesChannel&) = delete;
    SesChannel& operator=(const SesChannel&) = delete;
    ~SesChannel() override;

    std::string driverName() const override { return "ses"; }

    // Blocks the calling thread (a delivery worker) for at most [ses] timeout,
    // then calls `done` once. The retry policy belongs to the caller: this
    // only classifies the outcome.
    void deliver(Message message, Done done) override;

    // "app" and "purpose" as SES accepts tag values: [A-Za-z0-9_-], at most
    // 256 characters, never empty. Exposed for tests.
    [[nodiscard]] static std::string tagValue(std::string_view value);

private:
    [[nodiscard]] DeliveryResult send(const Message& message);

    config::Ses ses_;
    config::Tls tls_;
    email::AwsCredentials credentials_;
    CurlHandlePool curlPool_;
};

}  // namespace twofactor::channel
