// [geoip]: the country database behind the apps' client IP country rules.
#include "config/sections.hpp"

namespace twofactor::config::detail {

void readGeoip(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "geoip", {"database"});
    // The file is opened by the daemon at start and on SIGHUP, not here: a
    // database that is missing then disables the rules with a warning, so an
    // operator can install the configuration before the first download.
    if (const toml::node* n = t.get("database")) config.geoipDatabase = reader.absolutePath(*n, "geoip.database");
}

void checkIpCountryRules(const Reader& reader, const toml::table& root, const Config& config) {
    if (!config.geoipDatabase.empty()) return;
    const toml::table* apps = root.get("apps") ? root.get("apps")->as_table() : nullptr;
    if (apps == nullptr) return;
    for (const auto& [name, app] : config.apps) {
        if (app.allowedIpCountries.empty() && app.deniedIpCountries.empty()) continue;
        const toml::table* a = apps->get(name) ? apps->get(name)->as_table() : nullptr;
        if (a == nullptr) continue;
        const char* key = app.allowedIpCountries.empty() ? "denied_ip_countries" : "allowed_ip_countries";
        if (const toml::node* n = a->get(key))
            reader.fail(*n, "apps." + name + "." + key,
                        "needs [geoip] database, the country database client IPs are looked up in");
    }
}

}  // namespace twofactor::config::detail
