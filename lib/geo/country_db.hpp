// A country database in the MaxMind DB format (.mmdb: GeoLite2/GeoIP2
// Country or City, DB-IP country), read with libmaxminddb.
#pragma once

#include <memory>
#include <optional>
#include <string>

struct MMDB_s;

namespace twofactor::geo {

class CountryDatabase final {
public:
    CountryDatabase(const CountryDatabase&) = delete;
    CountryDatabase& operator=(const CountryDatabase&) = delete;
    ~CountryDatabase();

    // Opens (memory-maps) the file. On failure returns nullptr with `error`
    // saying what was wrong, naming the path.
    [[nodiscard]] static std::unique_ptr<CountryDatabase> open(const std::string& path, std::string& error);

    // The ISO 3166 alpha-2 code of the country an IPv4 or IPv6 address is in
    // (country.iso_code, else registered_country.iso_code); nullopt when the
    // database has no entry for it or the text is not an address.
    [[nodiscard]] std::optional<std::string> country(const std::string& ip) const;

    // "GeoLite2-Country, built 2026-11-28" from the file's metadata.
    [[nodiscard]] std::string description() const;

private:
    CountryDatabase();
    std::unique_ptr<MMDB_s> db_;
};

}  // namespace twofactor::geo
