#include "config/validators.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <regex>

namespace twofactor::config::detail {

bool hasControl(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

// [a-z0-9][a-z0-9_-]{0,62}: app names appear in file names, logs and the API.
bool validAppName(std::string_view name) {
    if (name.empty() || name.size() > 63 || !(isLower(name[0]) || isDigit(name[0]))) {
        return false;
    }
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return isLower(c) || isDigit(c) || c == '_' || c == '-'; });
}

// A small BCP 47 subset: language, optional Script, optional REGION or UN M.49
// area: en, de, pt-BR, zh-Hant-TW, es-419. Enough for message templates, and
// strict enough that "EN" and "en_US" are caught instead of never matching.
bool validLocale(std::string_view tag) {
    std::size_t i = 0;
    auto count = [&](auto pred) {
        std::size_t n = 0;
        while (i + n < tag.size() && pred(tag[i + n])) {
            ++n;
        }
        return n;
    };
    std::size_t lang = count(isLower);
    if (lang < 2 || lang > 3) {
        return false;
    }
    i += lang;
    if (i == tag.size()) {
        return true;
    }
    if (tag[i] != '-') {
        return false;
    }
    ++i;
    if (i + 4 <= tag.size() && isUpper(tag[i]) && isLower(tag[i + 1]) && isLower(tag[i + 2]) &&
        isLower(tag[i + 3]) && (i + 4 == tag.size() || tag[i + 4] == '-')) {
        i += 4;
        if (i == tag.size()) {
            return true;
        }
        ++i;
    }
    std::size_t rest = tag.size() - i;
    if (rest == 2) {
        return isUpper(tag[i]) && isUpper(tag[i + 1]);
    }
    if (rest == 3) {
        return isDigit(tag[i]) && isDigit(tag[i + 1]) && isDigit(tag[i + 2]);
    }
    return false;
}

bool validRegion(std::string_view region) {
    return region.size() == 2 && isUpper(region[0]) && isUpper(region[1]);
}

// The Graph API version in the request path: v[0-9]+\.[0-9]+, e.g. "v21.0".
bool validApiVersion(const std::string& version) {
    static const std::regex re("v[0-9]+\\.[0-9]+");
    return std::regex_match(version, re);
}

// A WhatsApp Business phone number id: Meta's numeric id, not the number.
bool validPhoneNumberId(std::string_view id) {
    return !id.empty() && id.size() <= 32 && std::all_of(id.begin(), id.end(), isDigit);
}

// An approved message template's name: [a-z0-9_]{1,512}, as Meta allows.
bool validWhatsappTemplateName(std::string_view name) {
    return !name.empty() && name.size() <= 512 &&
           std::all_of(name.begin(), name.end(), [](char c) { return isLower(c) || isDigit(c) || c == '_'; });
}

// A template's language as Meta spells it: [a-z]{2,3}(_[A-Z]{2})?, e.g. "de",
// "en_US", "pt_BR" (an underscore, unlike locale tags).
bool validWhatsappLanguage(const std::string& language) {
    static const std::regex re("[a-z]{2,3}(_[A-Z]{2})?");
    return std::regex_match(language, re);
}

// An IPv4 or IPv6 address literal, without brackets or a port.
bool validIpLiteral(const std::string& address) {
    in_addr v4{};
    in6_addr v6{};
    return ::inet_pton(AF_INET, address.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, address.c_str(), &v6) == 1;
}

// Names are resolved later with getpwnam/getgrnam; whitespace, ':' or control
// characters can never match and usually mean a typo such as "a, b" in one string.
bool validPrincipal(std::string_view name) {
    return !name.empty() && !hasControl(name) &&
           std::none_of(name.begin(), name.end(), [](char c) { return c == ' ' || c == ':'; });
}

// An AWS region such as "eu-west-1" or "us-gov-west-1": [a-z]{2}(-gov)?-[a-z]+-[0-9].
bool validAwsRegion(const std::string& region) {
    static const std::regex re("[a-z]{2}(-gov)?-[a-z]+-[0-9]");
    return std::regex_match(region, re);
}

// An SES configuration set name: [A-Za-z0-9_-]{1,64}.
bool validConfigurationSet(std::string_view name) {
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return isLower(c) || isUpper(c) || isDigit(c) || c == '_' || c == '-';
    });
}

// A DNS name of at least two labels: letters, digits and inner hyphens.
bool validDomain(std::string_view domain) {
    if (domain.empty() || domain.size() > 253) {
        return false;
    }
    std::size_t labels = 0;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = domain.find('.', start);
        std::string_view label = domain.substr(start, dot == std::string_view::npos ? dot : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
            !std::all_of(label.begin(), label.end(), [](char c) { return isAlnum(c) || c == '-'; })) {
            return false;
        }
        ++labels;
        if (dot == std::string_view::npos) {
            break;
        }
        start = dot + 1;
    }
    return labels >= 2;
}

// local@domain, with a dot-atom local part (printable ASCII without specials).
bool validAddrSpec(std::string_view addr) {
    std::size_t at = addr.rfind('@');
    if (at == std::string_view::npos || at == 0 || at > 64) {
        return false;
    }
    std::string_view local = addr.substr(0, at);
    static constexpr std::string_view kSpecials = "<>()[],;:\\\"@ ";
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos ||
        !std::all_of(local.begin(), local.end(), [](char c) {
            auto u = static_cast<unsigned char>(c);
            return u > 0x20 && u < 0x7f && kSpecials.find(c) == std::string_view::npos;
        })) {
        return false;
    }
    return validDomain(addr.substr(at + 1));
}

// "addr@example.com", "Name <addr@example.com>" or "\"Name, Inc.\" <addr@example.com>".
// The drivers put it into mail headers: no control characters, and a display
// name with specials must be quoted.
bool validMailbox(std::string_view s) {
    if (s.empty() || hasControl(s)) {
        return false;
    }
    if (s.back() != '>') {
        return validAddrSpec(s);
    }
    std::size_t open = s.rfind('<');
    if (open == std::string_view::npos) {
        return false;
    }
    if (!validAddrSpec(s.substr(open + 1, s.size() - open - 2))) {
        return false;
    }
    std::string_view name = s.substr(0, open);
    while (!name.empty() && name.back() == ' ') {
        name.remove_suffix(1);
    }
    if (name.empty()) {
        return true;
    }
    if (name.front() == '"') {
        if (name.size() < 2 || name.back() != '"') {
            return false;
        }
        std::string_view inner = name.substr(1, name.size() - 2);
        return inner.find_first_of("\"\\") == std::string_view::npos;
    }
    return name.find_first_of("<>()[]:;@\\,\"") == std::string_view::npos;
}

extern const char* const kMailboxHint;
const char* const kMailboxHint =
    "must be an email address such as \"no-reply@example.com\" or \"Example <no-reply@example.com>\" (quote a "
    "display name containing , ; : @ or parentheses)";

// Splits SCHEME://HOST[:PORT][/PATH]; returns an error message or "".
std::string parseUrl(std::string_view s, Url& out) {
    if (s.empty() || hasControl(s) || s.find(' ') != std::string_view::npos) {
        return "must be a URL without spaces or control characters";
    }
    std::size_t sep = s.find("://");
    if (sep == std::string_view::npos) {
        return "must be a URL such as \"https://host\"";
    }
    out.scheme = std::string(s.substr(0, sep));
    std::string_view rest = s.substr(sep + 3);
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return "must not have a query or fragment";
    }
    std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    out.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
    if (authority.find('@') != std::string_view::npos) {
        return "must not contain credentials";
    }
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos || close == 1) {
            return "has an invalid IPv6 address";
        }
        std::string_view inner = authority.substr(1, close - 1);
        if (!std::all_of(inner.begin(), inner.end(), [](char c) {
                return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
            })) {
            return "has an invalid IPv6 address";
        }
        out.host = std::string(authority.substr(0, close + 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return "has an invalid host";
            }
            port = after.substr(1);
            if (port.empty()) {
                return "has an empty port";
            }
        }
    } else {
        std::size_t colon = authority.find(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) {
                return "has an empty port";
            }
        }
        if (out.host.empty()) {
            return "has no host";
        }
        if (!std::all_of(out.host.begin(), out.host.end(), [](char c) { return isAlnum(c) || c == '.' || c == '-'; })) {
            return "has an invalid host \"" + out.host + "\"";
        }
    }
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), isDigit) || std::stoi(std::string(port)) < 1 ||
            std::stoi(std::string(port)) > 65535) {
            return "has an invalid port \"" + std::string(port) + "\"";
        }
    }
    return "";
}

bool isLoopbackHost(std::string_view host) {
    return host == "127.0.0.1" || host == "localhost" || host == "[::1]";
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool validUtf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) {
            return false;  // truncated sequence
        }
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

}  // namespace twofactor::config::detail
