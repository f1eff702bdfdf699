// [apps.NAME]: one application's codes, lifetimes, channels, limits and rules.
#include "config/sections.hpp"
#include "config/validators.hpp"

namespace twofactor::config::detail {

namespace {

constexpr std::int64_t kMinTtl = 30;
constexpr std::int64_t kMaxTtl = 86400;
constexpr std::int64_t kDefaultMaxTtl = 600;
constexpr int kMinCodeLength = 4;
constexpr int kMaxCodeLength = 10;
// The display name lands in subjects, SMS-sized WhatsApp bodies and logs.
constexpr std::size_t kMaxDisplayName = 128;

// [apps.NAME.whatsapp_templates]: LOCALE = { name = "...", language = "..." }.
void readWhatsappTemplates(const Reader& reader, const toml::table& templates, const std::string& key, App& app) {
    for (auto&& [k, v] : templates) {
        std::string locale(k.str());
        std::string localeKey = keyJoin(key, locale);
        if (!validLocale(locale)) {
            reader.fail(v, k.source(), localeKey, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        const toml::table& lt = reader.table(v, localeKey);
        reader.allowOnly(lt, localeKey, {"name", "language"});
        WhatsappTemplate out;
        const toml::node* name = lt.get("name");
        if (name == nullptr) {
            reader.fail(lt, localeKey + ".name", "is required");
        }
        out.name = reader.string(*name, localeKey + ".name");
        if (!validWhatsappTemplateName(out.name)) {
            reader.fail(*name, localeKey + ".name",
                        "must be 1 to 512 characters of a-z, 0-9 and '_' (the approved template's name)");
        }
        const toml::node* language = lt.get("language");
        if (language == nullptr) {
            reader.fail(lt, localeKey + ".language", "is required");
        }
        out.language = reader.string(*language, localeKey + ".language");
        if (!validWhatsappLanguage(out.language)) {
            reader.fail(*language, localeKey + ".language",
                        "must be a template language such as \"en_US\", \"de\" or \"pt_BR\", not \"" +
                            out.language + "\"");
        }
        app.whatsappTemplates.emplace(std::move(locale), std::move(out));
    }
}

// allowed_countries / denied_countries: upper-case ISO 3166 alpha-2 codes, each once.
std::vector<std::string> readCountries(const Reader& reader, const toml::node& node, const std::string& key) {
    std::vector<std::string> codes = reader.stringArray(node, key);
    for (std::size_t i = 0; i < codes.size(); ++i) {
        const toml::node& element = *node.as_array()->get(i);
        if (!validRegion(codes[i])) {
            reader.fail(element, indexKey(key, i), "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
        }
        if (std::find(codes.begin(), codes.begin() + static_cast<std::ptrdiff_t>(i), codes[i]) !=
            codes.begin() + static_cast<std::ptrdiff_t>(i)) {
            reader.fail(element, indexKey(key, i), "\"" + codes[i] + "\" is listed twice");
        }
    }
    return codes;
}

void readRateLimits(const Reader& reader, const toml::table& t, const std::string& prefix, RateLimits& limits) {
    reader.allowOnly(t, prefix,
                     {"resend_cooldown", "destination_sends", "destination_window", "ip_sends", "ip_window",
                      "prefix_sends", "prefix_window", "app_sends", "app_window", "max_subject_failures",
                      "subject_lockout", "subject_max_lockout"});
    const auto count = [&](const char* key, int& out) {
        if (const toml::node* n = t.get(key)) {
            out = static_cast<int>(reader.integer(*n, prefix + "." + key, 1, 1000000));
        }
    };
    const auto seconds = [&](const char* key, std::chrono::seconds& out, std::int64_t min) {
        if (const toml::node* n = t.get(key)) {
            out = std::chrono::seconds(reader.integer(*n, prefix + "." + key, min, 86400, "seconds"));
        }
    };
    if (const toml::node* n = t.get("resend_cooldown")) {
        limits.resendCooldown =
            std::chrono::seconds(reader.integer(*n, prefix + ".resend_cooldown", 0, 3600, "seconds"));
    }
    count("destination_sends", limits.destinationSends);
    seconds("destination_window", limits.destinationWindow, 1);
    count("ip_sends", limits.ipSends);
    seconds("ip_window", limits.ipWindow, 1);
    count("prefix_sends", limits.prefixSends);
    seconds("prefix_window", limits.prefixWindow, 1);
    count("app_sends", limits.appSends);
    seconds("app_window", limits.appWindow, 1);
    // NIST SP 800-63B 5.2.2: never more than 100 consecutive failures.
    if (const toml::node* n = t.get("max_subject_failures")) {
        limits.maxSubjectFailures = static_cast<int>(reader.integer(*n, prefix + ".max_subject_failures", 1, 100));
    }
    seconds("subject_lockout", limits.subjectLockout, 1);
    if (const toml::node* n = t.get("subject_max_lockout")) {
        limits.subjectMaxLockout = std::chrono::seconds(reader.integer(
            *n, prefix + ".subject_max_lockout", limits.subjectLockout.count(), 86400, "seconds"));
    } else if (limits.subjectMaxLockout < limits.subjectLockout) {
        limits.subjectMaxLockout = limits.subjectLockout;
    }
}

void readFraudRule(const Reader& reader, const toml::table& t, const std::string& prefix, FraudRule& rule) {
    reader.allowOnly(t, prefix, {"threshold", "window", "action"});
    if (const toml::node* n = t.get("threshold")) {
        // A check reads at most `threshold` of the set's members: the cap keeps
        // that a few milliseconds at worst.
        rule.threshold = static_cast<int>(reader.integer(*n, prefix + ".threshold", 1, 10000));
    }
    if (const toml::node* n = t.get("window")) {
        rule.window = std::chrono::seconds(reader.integer(*n, prefix + ".window", 1, 86400, "seconds"));
    }
    if (const toml::node* n = t.get("action")) {
        rule.block = reader.oneOf(*n, prefix + ".action", {"flag", "block"}) == "block";
    }
}

void readFraudRules(const Reader& reader, const toml::table& t, const std::string& prefix, FraudRules& rules) {
    reader.allowOnly(t, prefix,
                     {"distinct_destinations_per_ip", "distinct_devices_per_destination", "destination_prefix"});
    const auto rule = [&](const char* key, FraudRule& out) {
        if (const toml::node* n = t.get(key)) {
            const std::string k = prefix + "." + key;
            readFraudRule(reader, reader.table(*n, k), k, out);
        }
    };
    rule("distinct_destinations_per_ip", rules.distinctDestinationsPerIp);
    rule("distinct_devices_per_destination", rules.distinctDevicesPerDestination);
    rule("destination_prefix", rules.destinationPrefix);
}

}  // namespace

App readApp(const Reader& reader, const toml::table& t, const std::string& name,
            const std::map<std::string, std::string>& drivers) {
    const std::string prefix = "apps." + name;
    reader.allowOnly(t, prefix,
                     {"display_name", "channels", "code_length", "min_code_length", "max_code_length", "ttl",
                      "max_ttl", "max_attempts", "max_sends", "default_locale", "default_region", "templates",
                      "ses_region", "ses_from", "ses_configuration_set", "email_from", "email_local_part", "whatsapp_templates",
                      "allowed_countries", "denied_countries", "allowed_ip_countries", "denied_ip_countries", "fallback_to_email", "rate_limits", "fraud", "events"});
    App app;
    app.name = name;
    app.displayName = name;

    if (const toml::node* n = t.get("display_name")) {
        std::string key = prefix + ".display_name";
        app.displayName = reader.string(*n, key);
        if (app.displayName.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        if (app.displayName.size() > kMaxDisplayName) {
            reader.fail(*n, key, "must be at most " + std::to_string(kMaxDisplayName) + " bytes");
        }
        // It is substituted into mail subjects; see the subject check.
        if (hasControl(app.displayName)) {
            reader.fail(*n, key, "must not contain control characters");
        }
    }

    if (const toml::node* n = t.get("channels")) {
        std::string key = prefix + ".channels";
        auto channels = reader.stringArray(*n, key);
        if (channels.empty()) {
            reader.fail(*n, key, "must name at least one channel");
        }
        const toml::array& array = *n->as_array();
        for (std::size_t i = 0; i < channels.size(); ++i) {
            const toml::node& element = *array.get(i);
            std::string elementKey = indexKey(key, i);
            if (!contains(kChannels, channels[i])) {
                reader.fail(element, elementKey,
                            "unknown channel \"" + channels[i] + "\" (expected one of: " + joinList(kChannels) + ")");
            }
            if (std::find(channels.begin(), channels.begin() + static_cast<std::ptrdiff_t>(i), channels[i]) !=
                channels.begin() + static_cast<std::ptrdiff_t>(i)) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" is listed twice");
            }
            if (drivers.find(channels[i]) == drivers.end()) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" has no driver in [delivery]");
            }
        }
        app.channels = std::move(channels);
    } else {
        // Every channel that can deliver: "both" with the default [delivery].
        for (const auto& channel : kChannels) {
            if (drivers.find(channel) != drivers.end()) {
                app.channels.push_back(channel);
            }
        }
    }

    if (const toml::node* n = t.get("min_code_length")) {
        app.minCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".min_code_length", kMinCodeLength, kMaxCodeLength));
    }
    if (const toml::node* n = t.get("max_code_length")) {
        app.maxCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".max_code_length", app.minCodeLength, kMaxCodeLength));
    } else if (app.maxCodeLength < app.minCodeLength) {
        app.maxCodeLength = app.minCodeLength;
    }
    if (const toml::node* n = t.get("code_length")) {
        app.codeLength =
            static_cast<int>(reader.integer(*n, prefix + ".code_length", app.minCodeLength, app.maxCodeLength));
    } else {
        app.codeLength = std::clamp(app.codeLength, app.minCodeLength, app.maxCodeLength);
    }

    const toml::node* ttlNode = t.get("ttl");
    const toml::node* maxTtlNode = t.get("max_ttl");
    std::int64_t maxTtl = kMaxTtl;
    if (maxTtlNode != nullptr) {
        maxTtl = reader.integer(*maxTtlNode, prefix + ".max_ttl", kMinTtl, kMaxTtl, "seconds");
    }
    std::int64_t ttl = app.ttl.count();
    if (ttlNode != nullptr) {
        ttl = reader.integer(*ttlNode, prefix + ".ttl", kMinTtl, maxTtl, "seconds");
    } else if (ttl > maxTtl) {
        // A max_ttl below the default ttl lowers the default with it.
        ttl = maxTtl;
    }
    app.ttl = std::chrono::seconds(ttl);
    app.maxTtl = std::chrono::seconds(maxTtlNode != nullptr ? maxTtl : std::max(ttl, kDefaultMaxTtl));

    if (const toml::node* n = t.get("max_attempts")) {
        app.maxAttempts = static_cast<int>(reader.integer(*n, prefix + ".max_attempts", 1, 100));
    }
    if (const toml::node* n = t.get("max_sends")) {
        app.maxSends = static_cast<int>(reader.integer(*n, prefix + ".max_sends", 1, 100));
    }

    if (const toml::node* n = t.get("default_region")) {
        std::string key = prefix + ".default_region";
        app.defaultRegion = reader.string(*n, key);
        if (!validRegion(app.defaultRegion)) {
            reader.fail(*n, key, "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
        }
    }

    if (const toml::node* n = t.get("ses_region")) {
        app.sesRegion = readAwsRegion(reader, *n, prefix + ".ses_region");
    }
    if (const toml::node* n = t.get("ses_from")) {
        app.sesFrom = readMailbox(reader, *n, prefix + ".ses_from");
    }
    if (const toml::node* n = t.get("ses_configuration_set")) {
        app.sesConfigurationSet = readConfigurationSet(reader, *n, prefix + ".ses_configuration_set");
    }
    if (const toml::node* n = t.get("email_from")) {
        app.emailFrom = readMailbox(reader, *n, prefix + ".email_from");
    }

    if (const toml::node* n = t.get("email_local_part")) {
        app.emailLocalPartExact =
            reader.oneOf(*n, prefix + ".email_local_part", {"case-insensitive", "exact"}) == "exact";
    }

    if (const toml::node* n = t.get("whatsapp_templates")) {
        std::string key = prefix + ".whatsapp_templates";
        readWhatsappTemplates(reader, reader.table(*n, key), key, app);
    }

    const toml::node* allowed = t.get("allowed_countries");
    const toml::node* denied = t.get("denied_countries");
    if (allowed != nullptr) {
        app.allowedCountries = readCountries(reader, *allowed, prefix + ".allowed_countries");
    }
    if (denied != nullptr) {
        app.deniedCountries = readCountries(reader, *denied, prefix + ".denied_countries");
    }
    if (allowed != nullptr && denied != nullptr) {
        // A code in both lists means one of them is a mistake; the error
        // points at the later of the two in the file.
        bool deniedLater = denied->source().begin > allowed->source().begin;
        const toml::node& later = deniedLater ? *denied : *allowed;
        const auto& laterCodes = deniedLater ? app.deniedCountries : app.allowedCountries;
        const auto& earlierCodes = deniedLater ? app.allowedCountries : app.deniedCountries;
        std::string laterKey = prefix + (deniedLater ? ".denied_countries" : ".allowed_countries");
        std::string earlierKey = prefix + (deniedLater ? ".allowed_countries" : ".denied_countries");
        for (std::size_t i = 0; i < laterCodes.size(); ++i) {
            if (contains(earlierCodes, laterCodes[i])) {
                reader.fail(*later.as_array()->get(i), indexKey(laterKey, i),
                            "\"" + laterCodes[i] + "\" is also in " + earlierKey);
            }
        }
    }

    // The client IP's country (by the [geoip] database): the same lists,
    // checked in config.cpp against [geoip] once every section is read.
    if (const toml::node* n = t.get("allowed_ip_countries"))
        app.allowedIpCountries = readCountries(reader, *n, prefix + ".allowed_ip_countries");
    if (const toml::node* n = t.get("denied_ip_countries")) {
        app.deniedIpCountries = readCountries(reader, *n, prefix + ".denied_ip_countries");
        for (std::size_t i = 0; i < app.deniedIpCountries.size(); ++i)
            if (contains(app.allowedIpCountries, app.deniedIpCountries[i]))
                reader.fail(*n->as_array()->get(i), indexKey(prefix + ".denied_ip_countries", i),
                            "\"" + app.deniedIpCountries[i] + "\" is also in " + prefix + ".allowed_ip_countries");
    }

    if (const toml::node* n = t.get("fallback_to_email")) {
        std::string key = prefix + ".fallback_to_email";
        app.fallbackToEmail = reader.boolean(*n, key);
        if (app.fallbackToEmail && !usesChannel(app, "email")) {
            reader.fail(*n, key, "needs \"email\" in " + prefix + ".channels");
        }
    }

    if (const toml::node* n = t.get("rate_limits")) {
        std::string key = prefix + ".rate_limits";
        readRateLimits(reader, reader.table(*n, key), key, app.rateLimits);
    }
    if (const toml::node* n = t.get("fraud")) {
        std::string key = prefix + ".fraud";
        readFraudRules(reader, reader.table(*n, key), key, app.fraud);
    }
    if (const toml::node* n = t.get("events")) {
        std::string key = prefix + ".events";
        app.events = readAppEvents(reader, reader.table(*n, key), key);
    }

    app.templates = builtinTemplates();
    if (const toml::node* n = t.get("templates")) {
        std::string key = prefix + ".templates";
        readTemplates(reader, reader.table(*n, key), key, app);
    }

    if (const toml::node* n = t.get("default_locale")) {
        std::string key = prefix + ".default_locale";
        app.defaultLocale = reader.string(*n, key);
        if (!validLocale(app.defaultLocale)) {
            reader.fail(*n, key, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        // Only a generic template serves every purpose.
        if (app.templates.find(app.defaultLocale) == app.templates.end()) {
            std::vector<std::string> known;
            for (const auto& [locale, tmpl] : app.templates) {
                if (locale.find('.') == std::string::npos) {
                    known.push_back(locale);
                }
            }
            reader.fail(*n, key,
                        "has no template for \"" + app.defaultLocale + "\" (available: " + joinList(known) + ")");
        }
    }
    return app;
}

}  // namespace twofactor::config::detail
