// The client IP country rules' database: opened at start, reopened on SIGHUP
// (an operator's cron job replaces the .mmdb file, then signals the daemon).
#include "server/server_impl.hpp"

#include "geo/country_db.hpp"

namespace twofactor::server::detail {

void Server::loadCountryDatabase() {
    bool rules = false;
    for (const auto& [name, app] : config_.apps)
        rules = rules || !app.allowedIpCountries.empty() || !app.deniedIpCountries.empty();
    if (config_.geoipDatabase.empty()) return;
    std::string error;
    std::shared_ptr<const geo::CountryDatabase> db = geo::CountryDatabase::open(config_.geoipDatabase, error);
    if (!db) {
        // Disabled, not fatal: the daemon keeps sending, unchecked by country,
        // until a database is in place and the daemon gets SIGHUP.
        log::warning(error + "; client IP country rules are disabled" + (rules ? "" : " (no app has any)") +
                     " until a database is there and twofactord gets SIGHUP");
        service_->setCountryDatabase(nullptr);
        return;
    }
    log::info("country database " + config_.geoipDatabase + " (" + db->description() + ") loaded" +
              (rules ? "" : "; no app has client IP country rules"));
    service_->setCountryDatabase(std::move(db));
}

}  // namespace twofactor::server::detail
