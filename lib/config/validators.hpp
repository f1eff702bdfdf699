// Checks of single values that twofactord.toml names: addresses, URLs,
// locales, regions and the like. Pure functions, no TOML.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace twofactor::config::detail {

bool hasControl(std::string_view s);
inline bool isLower(char c) { return c >= 'a' && c <= 'z'; }
inline bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
inline bool isDigit(char c) { return c >= '0' && c <= '9'; }
inline bool isAlnum(char c) { return isLower(c) || isUpper(c) || isDigit(c); }

// [a-z0-9][a-z0-9_-]{0,62}: app names appear in file names, logs and the API.
bool validAppName(std::string_view name);
// A small BCP 47 subset: en, de, pt-BR, zh-Hant-TW, es-419.
bool validLocale(std::string_view tag);
// An ISO 3166 alpha-2 code in upper case.
bool validRegion(std::string_view region);
bool validApiVersion(const std::string& version);
bool validPhoneNumberId(std::string_view id);
bool validWhatsappTemplateName(std::string_view name);
bool validWhatsappLanguage(const std::string& language);
bool validIpLiteral(const std::string& address);
bool validPrincipal(std::string_view name);
bool validAwsRegion(const std::string& region);
bool validConfigurationSet(std::string_view name);
bool validDomain(std::string_view domain);
bool validAddrSpec(std::string_view addr);
bool validMailbox(std::string_view s);
bool validUtf8(std::string_view s);

extern const char* const kMailboxHint;

// The parts of an http(s):// or smtp(s):// URL that the checks need.
struct Url {
    std::string scheme;
    std::string host;  // IPv6 literals keep their brackets
    std::string path;  // "" or starting with '/'
};

// Splits SCHEME://HOST[:PORT][/PATH]; returns an error message or "".
std::string parseUrl(std::string_view s, Url& out);
bool isLoopbackHost(std::string_view host);

}  // namespace twofactor::config::detail
