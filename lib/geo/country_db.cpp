#include "geo/country_db.hpp"

#include <maxminddb.h>

#include <cstring>
#include <ctime>

namespace twofactor::geo {

CountryDatabase::CountryDatabase() : db_(std::make_unique<MMDB_s>()) {}

CountryDatabase::~CountryDatabase() { MMDB_close(db_.get()); }

std::unique_ptr<CountryDatabase> CountryDatabase::open(const std::string& path, std::string& error) {
    std::unique_ptr<CountryDatabase> out(new CountryDatabase());
    const int rc = MMDB_open(path.c_str(), MMDB_MODE_MMAP, out->db_.get());
    if (rc != MMDB_SUCCESS) {
        error = "cannot open the country database " + path + ": " + MMDB_strerror(rc) +
                (rc == MMDB_IO_ERROR && errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string());
        // MMDB_open leaves nothing to close on failure.
        out->db_ = std::make_unique<MMDB_s>();
        std::memset(out->db_.get(), 0, sizeof(MMDB_s));
        out.reset();
        return nullptr;
    }
    return out;
}

namespace {
std::optional<std::string> isoCode(MMDB_entry_s* entry, const char* field) {
    MMDB_entry_data_s data{};
    if (MMDB_get_value(entry, &data, field, "iso_code", nullptr) != MMDB_SUCCESS || !data.has_data ||
        data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2)
        return std::nullopt;
    return std::string(data.utf8_string, data.data_size);
}
}  // namespace

std::optional<std::string> CountryDatabase::country(const std::string& ip) const {
    int gaiError = 0, mmdbError = 0;
    MMDB_lookup_result_s result = MMDB_lookup_string(db_.get(), ip.c_str(), &gaiError, &mmdbError);
    if (gaiError != 0 || mmdbError != MMDB_SUCCESS || !result.found_entry) return std::nullopt;
    if (auto c = isoCode(&result.entry, "country")) return c;
    return isoCode(&result.entry, "registered_country");
}

std::string CountryDatabase::description() const {
    std::string type = db_->metadata.database_type ? db_->metadata.database_type : "unknown type";
    const std::time_t built = static_cast<std::time_t>(db_->metadata.build_epoch);
    std::tm tm{};
    char date[16] = "?";
    if (::gmtime_r(&built, &tm) != nullptr) std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
    return type + ", built " + date;
}

}  // namespace twofactor::geo
