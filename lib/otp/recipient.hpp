// Who a delivery attempt hands the address to, recorded with the attempt so
// that a GDPR answer (Art. 15 recipients, Art. 19 notice) names the
// recipients that actually received it, even after the configuration changed.
#pragma once

#include "config/config.hpp"

#include <string>
#include <string_view>

namespace twofactor::otp {

struct DeliveryRecipient {
    std::string provider;  // "aws-ses", "meta", the SMTP relay's host, "outbox"
    std::string region;    // the AWS region used (SES, or SES's SMTP interface); "" otherwise
};

// The host of a URL like smtp://relay.example.org:587.
[[nodiscard]] inline std::string urlHost(std::string_view url) {
    auto start = url.find("://");
    start = start == std::string_view::npos ? 0 : start + 3;
    const auto end = url.find_first_of(":/", start);
    return std::string(url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
}

// As the configuration stands now: call it when the attempt is made.
[[nodiscard]] inline DeliveryRecipient deliveryRecipient(const config::Config& config, const std::string& app,
                                                         std::string_view driver) {
    if (driver == "ses") {
        const auto it = config.apps.find(app);
        const bool own = it != config.apps.end() && !it->second.sesRegion.empty();
        return {"aws-ses", own ? it->second.sesRegion : config.ses.region};
    }
    if (driver == "smtp") return {urlHost(config.smtp.url), config.smtp.sesRegion};
    if (driver == "whatsapp") return {"meta", ""};
    return {std::string(driver), ""};
}

}  // namespace twofactor::otp
