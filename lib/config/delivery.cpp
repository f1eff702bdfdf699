// [delivery], [outbox] and [retry], and what the drivers chosen in [delivery]
// need from the other sections.
#include "config/sections.hpp"

namespace twofactor::config::detail {

namespace {

// Drivers per channel.
const std::vector<std::string> kEmailDrivers = {"outbox", "ses", "smtp"};
const std::vector<std::string> kWhatsappDrivers = {"outbox", "whatsapp"};

// The WhatsApp template an app sends for a locale: the locale's own, its
// language's, else "en". The same order the driver uses.
std::vector<std::string> whatsappTemplateCandidates(const std::string& locale) {
    std::vector<std::string> out = {locale};
    std::string language = locale.substr(0, locale.find('-'));
    for (const std::string& candidate : {language, std::string("en")}) {
        if (!contains(out, candidate)) {
            out.push_back(candidate);
        }
    }
    return out;
}

}  // namespace

void readDelivery(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "delivery", {"email", "whatsapp"});
    if (t.empty()) {
        reader.fail(t, "delivery", "must give a driver for at least one channel");
    }
    for (auto&& [k, v] : t) {
        std::string key = keyJoin("delivery", k.str());
        config.drivers[std::string(k.str())] =
            reader.oneOf(v, key, k.str() == "email" ? kEmailDrivers : kWhatsappDrivers);
    }
}

void readOutbox(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "outbox", {"directory", "keep"});
    if (const toml::node* d = t.get("directory")) {
        config.outboxDir = reader.absolutePath(*d, "outbox.directory");
    }
    if (const toml::node* k = t.get("keep"))
        config.outboxKeepUntilPickup = reader.oneOf(*k, "outbox.keep", {"until-end", "until-pickup"}) == "until-pickup";
}

void readRetry(const Reader& reader, const toml::table& t, Retry& retry) {
    reader.allowOnly(t, "retry", {"max_attempts", "base_delay_ms", "max_delay_ms", "send_wait"});
    if (const toml::node* n = t.get("max_attempts")) {
        retry.maxAttempts = static_cast<int>(reader.integer(*n, "retry.max_attempts", 1, 20));
    }
    if (const toml::node* n = t.get("base_delay_ms")) {
        retry.baseDelay = std::chrono::milliseconds(reader.integer(*n, "retry.base_delay_ms", 10, 60000, "ms"));
    }
    if (const toml::node* n = t.get("max_delay_ms")) {
        retry.maxDelay =
            std::chrono::milliseconds(reader.integer(*n, "retry.max_delay_ms", retry.baseDelay.count(), 300000, "ms"));
    } else if (retry.maxDelay < retry.baseDelay) {
        // A base above the default maximum raises the maximum with it.
        retry.maxDelay = retry.baseDelay;
    }
    if (const toml::node* n = t.get("send_wait")) {
        retry.sendWait = std::chrono::seconds(reader.integer(*n, "retry.send_wait", 1, 300, "seconds"));
    }
}

// What a driver needs but one table alone cannot tell: settings that may be
// given globally or per app. Errors point at the [delivery] entry; each is
// reported and the checks go on, as nothing is left half-read.
void checkEmailDriver(const Reader& reader, const toml::table* delivery, const Config& config) {
    auto driver = config.drivers.find("email");
    if (driver == config.drivers.end() || delivery == nullptr) {
        return;
    }
    const toml::node& where = *delivery->get("email");
    const std::string because = "is required by delivery.email = \"" + driver->second + "\"";
    if (driver->second == "ses") {
        for (const auto& [name, app] : config.apps) {
            if (!usesChannel(app, "email")) {
                continue;
            }
            if (config.ses.region.empty() && app.sesRegion.empty()) {
                reader.report(where, "ses.region", because + " (apps." + name + " has no ses_region)");
            }
            if (config.ses.from.empty() && app.sesFrom.empty()) {
                reader.report(where, "ses.from", because + " (apps." + name + " has no ses_from)");
            }
        }
    } else if (driver->second == "smtp") {
        if (config.smtp.url.empty()) {
            reader.report(where, "smtp.url", because);
        }
        for (const auto& [name, app] : config.apps) {
            if (usesChannel(app, "email") && config.smtp.from.empty() && app.emailFrom.empty()) {
                reader.report(where, "smtp.from", because + " (apps." + name + " has no email_from)");
            }
        }
    }
}

void checkWhatsappDriver(const Reader& reader, const toml::table* delivery, const Config& config) {
    auto driver = config.drivers.find("whatsapp");
    if (driver == config.drivers.end() || delivery == nullptr || driver->second != "whatsapp") {
        return;
    }
    const toml::node& where = *delivery->get("whatsapp");
    const std::string because = "is required by delivery.whatsapp = \"whatsapp\"";
    if (config.whatsapp.phoneNumberId.empty()) {
        reader.report(where, "whatsapp.phone_number_id", because);
    }
    if (config.whatsapp.tokenFile.empty() && !haveCredential("whatsapp-token")) {
        reader.report(where, "whatsapp.token_file", because + " (or pass the systemd credential \"whatsapp-token\")");
    }
    for (const auto& [name, app] : config.apps) {
        if (!usesChannel(app, "whatsapp")) {
            continue;
        }
        auto candidates = whatsappTemplateCandidates(app.defaultLocale);
        bool found = std::any_of(candidates.begin(), candidates.end(), [&](const std::string& locale) {
            return app.whatsappTemplates.count(locale) != 0;
        });
        if (!found) {
            std::string wanted;
            for (std::size_t i = 0; i < candidates.size(); ++i) {
                if (i > 0) {
                    wanted += i + 1 == candidates.size() ? " or " : ", ";
                }
                wanted += "\"" + candidates[i] + "\"";
            }
            reader.report(where, "apps." + name + ".whatsapp_templates",
                        because + " (apps." + name + " has no template for " + wanted + ")");
        }
    }
}

}  // namespace twofactor::config::detail
