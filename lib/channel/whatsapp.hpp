// The WhatsApp Business Cloud API driver: one authentication-template message
// per delivery through the Graph API, one blocking request per delivery.
#pragma once

#include "channel/channel.hpp"
#include "channel/curl_util.hpp"
#include "config/config.hpp"
#include "util/secret.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace twofactor::channel {

class WhatsappChannel final : public Channel {
public:
    // Loads the bearer token once ($CREDENTIALS_DIRECTORY/whatsapp-token, else
    // [whatsapp] token_file), so a rotated token needs a restart. Throws
    // std::runtime_error naming what is missing, never a value.
    explicit WhatsappChannel(const config::Config& config);
    WhatsappChannel(const WhatsappChannel&) = delete;
    WhatsappChannel& operator=(const WhatsappChannel&) = delete;

    std::string driverName() const override { return "whatsapp"; }

    // Blocks the calling thread (a delivery worker), then calls `done` once.
    // A recipient still inside a pair-rate backoff (error 131056) is waited
    // for first, unless the request expires before the wait is over. The
    // retry policy belongs to the caller: this only classifies the outcome.
    void deliver(Message message, Done done) override;

private:
    [[nodiscard]] DeliveryResult send(const Message& message);
    // Waits out the recipient's pair-rate backoff; false when the request
    // would expire first (then nothing is sent).
    [[nodiscard]] bool waitForRecipient(const Message& message);
    void rememberPairLimit(const std::string& destination);

    config::Whatsapp whatsapp_;
    config::Tls tls_;
    SecretString token_;
    CurlHandlePool curlPool_;

    // Recipient (E.164) -> earliest time the next message may go out, after a
    // 131056. Memory only; entries are dropped once they have passed.
    std::mutex pairMutex_;
    std::map<std::string, std::chrono::steady_clock::time_point> notBefore_;
};

}  // namespace twofactor::channel
