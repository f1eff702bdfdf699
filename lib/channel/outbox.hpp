// The outbox channel: each message becomes one file in a maildir-like
// directory (tmp/ then rename into new/), mode 0600. For trying the product,
// for tests, and for sites that hand messages on to another system.
#pragma once

#include "channel/channel.hpp"

#include <atomic>
#include <string>

namespace twofactor::channel {

class OutboxChannel final : public Channel {
public:
    // Creates DIR/tmp and DIR/new (mode 0700) if missing.
    explicit OutboxChannel(std::string directory);
    std::string driverName() const override { return "outbox"; }
    void deliver(Message message, Done done) override;
    const std::string& directory() const { return directory_; }

    // The file's text: an RFC 5322 message; email with an HTML template is
    // multipart/alternative (text, then HTML), everything else text/plain.
    [[nodiscard]] static std::string format(const Message& message, std::int64_t unixTime);

private:
    std::string directory_;
    std::atomic<unsigned long> sequence_{0};
};

}  // namespace twofactor::channel
