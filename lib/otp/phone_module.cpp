// twofactor-phone.so: the only code that links libphonenumber. A plain C
// interface (phone.cpp loads it with dlopen and looks these up by name), so
// no C++ type crosses the boundary. Strings out are written to the caller's
// buffers, NUL-terminated and cut to their size.
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <cstddef>
#include <cstring>
#include <list>
#include <string>

namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

void copyOut(const std::string& s, char* out, std::size_t cap) {
    if (cap == 0) return;
    const std::size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
    std::memcpy(out, s.data(), n);
    out[n] = '\0';
}

// " for region DE", or " for country code +1" when several regions share the
// code (the reason would otherwise wrongly single out one of them).
std::string regionPhrase(const PhoneNumberUtil& util, int countryCode) {
    std::list<std::string> regions;
    util.GetRegionCodesForCountryCallingCode(countryCode, &regions);
    if (regions.size() == 1 && regions.front().size() == 2) return " for region " + regions.front();
    return " for country code +" + std::to_string(countryCode);
}

// "" when the number is valid (e164 set), else why not.
std::string parse(const std::string& cleaned, std::string region, std::string& e164) {
    const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
    if (!region.empty() && util.GetCountryCodeForRegion(region) == 0) {
        // Configuration, not personal data, so it may be named.
        const bool printable = region.size() == 2 && region[0] >= 'A' && region[0] <= 'Z' && region[1] >= 'A' &&
                               region[1] <= 'Z';
        return printable ? "default_region " + region + " is not a region libphonenumber knows"
                         : "default_region is not an ISO 3166 two-letter region code";
    }
    if (region.empty()) region = "ZZ";  // libphonenumber's "unknown region": only +CC numbers parse
    PhoneNumber number;
    switch (util.Parse(cleaned, region, &number)) {
        case PhoneNumberUtil::NO_PARSING_ERROR:
            break;
        case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
            return "phone number has an unknown country code";
        case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
            return "phone number is too short after the international prefix";
        case PhoneNumberUtil::TOO_SHORT_NSN:
            return region == "ZZ" ? std::string("phone number is too short")
                                  : "phone number is too short for region " + region;
        case PhoneNumberUtil::TOO_LONG_NSN:
            return "phone number is too long";
        case PhoneNumberUtil::NOT_A_NUMBER:
        default:
            return "phone number is not a number";
    }
    if (number.has_extension()) return "phone number has an extension";
    if (!util.IsValidNumber(number)) {
        const std::string where = regionPhrase(util, number.country_code());
        switch (util.IsPossibleNumberWithReason(number)) {
            case PhoneNumberUtil::INVALID_COUNTRY_CODE:
                return "phone number has an unknown country code";
            case PhoneNumberUtil::TOO_SHORT:
            case PhoneNumberUtil::IS_POSSIBLE_LOCAL_ONLY:  // e.g. missing the area code
                return "phone number is too short" + where;
            case PhoneNumberUtil::TOO_LONG:
                return "phone number is too long" + where;
            case PhoneNumberUtil::INVALID_LENGTH:
                return "phone number has the wrong number of digits" + where;
            case PhoneNumberUtil::IS_POSSIBLE:
            default:
                return "phone number is not a valid number" + where + " (unassigned range)";
        }
    }
    util.Format(number, PhoneNumberUtil::E164, &e164);
    return "";
}

bool parseE164(const char* e164, PhoneNumber& number) {
    return PhoneNumberUtil::GetInstance()->Parse(e164, "ZZ", &number) == PhoneNumberUtil::NO_PARSING_ERROR;
}

}  // namespace

extern "C" {

// The interface's version: phone.cpp refuses a module of another.
int twofactor_phone_abi() { return 1; }

// 1 and the E.164 form in `out`, or 0 and the reason in `out`.
int twofactor_phone_parse(const char* cleaned, const char* region, char* out, std::size_t cap) {
    try {
        std::string e164;
        const std::string reason = parse(cleaned, region, e164);
        copyOut(reason.empty() ? e164 : reason, out, cap);
        return reason.empty() ? 1 : 0;
    } catch (...) {
        copyOut("phone number could not be parsed", out, cap);
        return 0;
    }
}

int twofactor_phone_country_code(const char* e164) {
    try {
        PhoneNumber number;
        return parseE164(e164, number) ? static_cast<int>(number.country_code()) : 0;
    } catch (...) {
        return 0;
    }
}

// The region, or "" (non-geographic, unknown, or a code several regions share
// without a matching range).
void twofactor_phone_region(const char* e164, char* out, std::size_t cap) {
    copyOut("", out, cap);
    try {
        PhoneNumber number;
        if (!parseE164(e164, number)) return;
        const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
        std::string region;
        util.GetRegionCodeForNumber(number, &region);
        if (region.size() == 2 && region != "ZZ") return copyOut(region, out, cap);
        std::list<std::string> regions;
        util.GetRegionCodesForCountryCallingCode(number.country_code(), &regions);
        if (regions.size() == 1 && regions.front().size() == 2) copyOut(regions.front(), out, cap);
    } catch (...) {
    }
}

}  // extern "C"
