// The readers of twofactord.toml's sections, one file each (apps.cpp,
// templates.cpp, daemon.cpp, delivery.cpp, providers.cpp, retention.cpp);
// config.cpp puts them together.
#pragma once

#include "config/config.hpp"
#include "config/reader.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::config::detail {

inline const std::vector<std::string> kChannels = {"email", "whatsapp"};

inline bool usesChannel(const App& app, std::string_view channel) { return contains(app.channels, channel); }

// [daemon], [limits], [access] (daemon.cpp)
void readDaemon(const Reader& reader, const toml::table& t, Config& config);
void readLimits(const Reader& reader, const toml::table& t, Limits& limits);
void readAccess(const Reader& reader, const toml::table& t, Config& config);

// [delivery], [outbox], [retry], and what the chosen drivers need (delivery.cpp)
void readDelivery(const Reader& reader, const toml::table& t, Config& config);
void readOutbox(const Reader& reader, const toml::table& t, Config& config);
void readRetry(const Reader& reader, const toml::table& t, Retry& retry);
void checkEmailDriver(const Reader& reader, const toml::table* delivery, const Config& config);
void checkWhatsappDriver(const Reader& reader, const toml::table* delivery, const Config& config);

// [tls], [ses], [smtp], [whatsapp], [webhook] (providers.cpp)
void readTls(const Reader& reader, const toml::table& t, Tls& tls);
void readSes(const Reader& reader, const toml::table& t, Ses& ses);
void readSmtp(const Reader& reader, const toml::table& t, Smtp& smtp);
void readWhatsapp(const Reader& reader, const toml::table& t, Whatsapp& whatsapp);
void readWebhook(const Reader& reader, const toml::table& t, Webhook& webhook);
// [ses.notifications] (sns.cpp)
void readSesNotifications(const Reader& reader, const toml::table& t, SesNotifications& sns);
std::string readAwsRegion(const Reader& reader, const toml::node& node, const std::string& key);
std::string readMailbox(const Reader& reader, const toml::node& node, const std::string& key);
std::string readConfigurationSet(const Reader& reader, const toml::node& node, const std::string& key);
// Whether systemd passed the named credential (present in $CREDENTIALS_DIRECTORY now, at load).
bool haveCredential(std::string_view name);

// [store] (store.cpp)
void readStore(const Reader& reader, const toml::table& t, Config& config);
// [geoip] (geoip.cpp), and the apps' IP country rules that need it
void readGeoip(const Reader& reader, const toml::table& t, Config& config);
void checkIpCountryRules(const Reader& reader, const toml::table& root, const Config& config);
// [http] (http.cpp)
void readHttp(const Reader& reader, const toml::table& t, Http& http);

// [retention] (retention.cpp)
void readRetention(const Reader& reader, const toml::table& t, Retention& retention);

// [metrics] (metrics.cpp)
void readMetrics(const Reader& reader, const toml::table& t, Config::Metrics& metrics);

// [apps.NAME] (apps.cpp)
App readApp(const Reader& reader, const toml::table& t, const std::string& name,
            const std::map<std::string, std::string>& drivers);

// [apps.NAME.events] (events.cpp)
AppEvents readAppEvents(const Reader& reader, const toml::table& t, const std::string& prefix);

// [apps.NAME.templates] (templates.cpp)
void readTemplates(const Reader& reader, const toml::table& templates, const std::string& key, App& app);

}  // namespace twofactor::config::detail
