#include "otp/destination.hpp"

#include "otp/phone.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace twofactor::otp {

namespace {

constexpr std::size_t kMaxEmailOctets = 254;   // RFC 5321 path limit minus the angle brackets
constexpr std::size_t kMaxLocalOctets = 64;    // RFC 5321 4.5.3.1.1
constexpr std::size_t kMaxDomainOctets = 253;  // RFC 1035, textual form without the root dot
constexpr std::size_t kMaxLabelOctets = 63;
// No phone number, however generously punctuated, needs more than this; the
// cap keeps hostile input away from libphonenumber's regular expressions.
constexpr std::size_t kMaxPhoneInput = 64;

std::variant<Destination, DestinationError> fail(std::string reason) {
    return DestinationError{std::move(reason)};
}

bool isAsciiSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && isAsciiSpace(s.front())) s.remove_prefix(1);
    while (!s.empty() && isAsciiSpace(s.back())) s.remove_suffix(1);
    return s;
}

bool isAsciiLetter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isAsciiDigit(char32_t c) { return c >= '0' && c <= '9'; }

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
bool decodeUtf8(std::string_view in, std::u32string& out) {
    out.clear();
    std::size_t i = 0;
    while (i < in.size()) {
        const auto b0 = static_cast<unsigned char>(in[i]);
        if (b0 < 0x80) {
            out.push_back(b0);
            ++i;
            continue;
        }
        std::size_t len;
        char32_t cp;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            len = 2;
            cp = b0 & 0x1F;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            len = 3;
            cp = b0 & 0x0F;
            if (b0 == 0xE0) lo = 0xA0;  // overlong
            if (b0 == 0xED) hi = 0x9F;  // surrogates
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            len = 4;
            cp = b0 & 0x07;
            if (b0 == 0xF0) lo = 0x90;  // overlong
            if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            return false;
        }
        if (in.size() - i < len) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto b = static_cast<unsigned char>(in[i + k]);
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
            cp = (cp << 6) | (b & 0x3F);
        }
        out.push_back(cp);
        i += len;
    }
    return true;
}

// Non-ASCII code points we refuse in addresses: controls, invisible and
// spacing characters, bidi controls, variation selectors, private use,
// specials and noncharacters. Not the IDNA2008 tables — just the characters
// that make two addresses look identical to an operator or a user.
bool isRefusedCodePoint(char32_t c) {
    if (c >= 0x80 && c <= 0xA0) return true;  // C1 controls, no-break space
    if (c == 0xAD || c == 0x34F || c == 0x61C || c == 0x115F || c == 0x1160 || c == 0x1680 || c == 0x180E)
        return true;
    if (c >= 0x2000 && c <= 0x200F) return true;  // spaces, zero-width characters, LRM/RLM
    if (c >= 0x2028 && c <= 0x202F) return true;  // separators, bidi embeddings
    if (c >= 0x205F && c <= 0x206F) return true;  // word joiner, invisible operators, bidi isolates
    if (c == 0x3000 || c == 0x3164 || c == 0xFEFF || c == 0xFFA0) return true;
    if (c >= 0xFE00 && c <= 0xFE0F) return true;    // variation selectors
    if (c >= 0xFDD0 && c <= 0xFDEF) return true;    // noncharacters
    if ((c & 0xFFFE) == 0xFFFE) return true;        // U+xxFFFE/U+xxFFFF noncharacters
    if (c >= 0xFFF0 && c <= 0xFFFF) return true;    // specials, including U+FFFD
    if (c >= 0xE000 && c <= 0xF8FF) return true;    // private use
    if (c >= 0xE0000 && c <= 0xE0FFF) return true;  // tags, variation selectors supplement
    if (c >= 0xF0000) return true;                  // supplementary private use planes
    return false;
}

// Lower-casing for the scripts most often met in European domain names. Not
// full Unicode case folding: other scripts pass through unchanged.
char32_t toLower(char32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 0x20;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 0x20;  // Latin-1 (U+00D7 is the multiplication sign)
    if (c >= 0x100 && c <= 0x137) return (c % 2 == 0 && c != 0x130) ? c + 1 : c;  // U+0130 has no 1:1 lowercase
    if (c >= 0x139 && c <= 0x148) return c % 2 == 1 ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c % 2 == 0 ? c + 1 : c;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return c % 2 == 1 ? c + 1 : c;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 0x25;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 0x3F;
    if (c >= 0x391 && c <= 0x3AB) return c == 0x3A2 ? c : c + 0x20;  // Greek capitals
    if (c >= 0x400 && c <= 0x40F) return c + 0x50;                  // Cyrillic Ѐ..Џ
    if (c >= 0x410 && c <= 0x42F) return c + 0x20;                  // Cyrillic А..Я
    return c;
}

void appendUtf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

// RFC 5322 atext, ASCII part.
bool isAtext(char c) {
    if (isAsciiLetter(static_cast<unsigned char>(c)) || isAsciiDigit(static_cast<unsigned char>(c))) return true;
    static constexpr std::string_view specials = "!#$%&'*+-/=?^_`{|}~";
    return specials.find(c) != std::string_view::npos;
}

std::optional<std::string> checkLocalPart(std::string_view local) {
    if (local.empty()) return "email address has nothing before the '@'";
    if (local.size() > kMaxLocalOctets) return "email local part (before the '@') is longer than 64 octets";
    if (local.front() == '.') return "email local part starts with a dot";
    if (local.back() == '.') return "email local part ends with a dot";
    if (local.find("..") != std::string_view::npos) return "email local part has two consecutive dots";
    std::u32string cps;
    if (!decodeUtf8(local, cps)) return "email local part is not valid UTF-8";
    for (char32_t c : cps) {
        if (c == '.') continue;
        if (c < 0x80) {
            if (c == '"') return "quoted email local parts are not supported";
            if (!isAtext(static_cast<char>(c)))
                return "email local part contains a character not allowed in an address (such as a space, comma or "
                       "bracket)";
        } else if (isRefusedCodePoint(c)) {
            return "email local part contains an invisible, control or private-use character";
        }
    }
    return std::nullopt;
}

// Turns one domain label (already lower-cased code points) into its ASCII form.
std::variant<std::string, std::string> labelToAscii(const std::u32string& label) {
    using Result = std::variant<std::string, std::string>;
    auto error = [](std::string reason) { return Result(std::in_place_index<1>, std::move(reason)); };
    if (label.empty()) return error("email domain has an empty label (two dots in a row, or a leading dot)");
    bool ascii = true;
    for (char32_t c : label) {
        if (c < 0x80) {
            if (!isAsciiLetter(c) && !isAsciiDigit(c) && c != '-')
                return error("email domain contains a character other than letters, digits, hyphens and dots");
        } else {
            ascii = false;
            if (isRefusedCodePoint(c))
                return error("email domain contains an invisible, control or private-use character");
        }
    }
    if (label.front() == '-' || label.back() == '-')
        return error("email domain label starts or ends with a hyphen");
    std::string out;
    if (ascii) {
        for (char32_t c : label) out.push_back(static_cast<char>(c));
    } else {
        // RFC 5891 4.2.3.1: "--" in positions 3 and 4 is reserved for encodings like "xn--".
        if (label.size() >= 4 && label[2] == '-' && label[3] == '-')
            return error("internationalised email domain label has hyphens in the third and fourth positions");
        auto encoded = punycodeEncode(label);
        if (!encoded) return error("email domain label is too long");
        out = "xn--" + *encoded;
    }
    if (out.size() > kMaxLabelOctets)
        return error(ascii ? "domain label longer than 63 characters"
                           : "domain label longer than 63 characters once converted to ASCII (xn--)");
    return Result(std::in_place_index<0>, std::move(out));
}

std::variant<Destination, DestinationError> parseEmail(std::string_view input) {
    // Every octet of input yields at least a quarter octet of output (UTF-8 is
    // at most 4 octets per code point, Punycode at least 1 per code point), so
    // this early exit never refuses an address that would have fit, and it
    // bounds the work done on hostile input.
    if (input.size() > 4 * kMaxEmailOctets) return fail("email address is longer than 254 octets");

    const std::size_t at = input.find('@');
    if (input.find('@', at + 1) != std::string_view::npos)
        return fail("email address has more than one '@' (quoted local parts are not supported)");
    const std::string_view local = input.substr(0, at);
    const std::string_view domain = input.substr(at + 1);

    if (auto problem = checkLocalPart(local)) return fail(std::move(*problem));
    if (domain.empty()) return fail("email address has nothing after the '@'");

    std::u32string cps;
    if (!decodeUtf8(domain, cps)) return fail("email domain is not valid UTF-8");

    // Split into labels. The ideographic and full-width full stops are label
    // separators in IDNA (UTS #46 maps them to '.'), so treat them as such.
    std::vector<std::u32string> labels(1);
    for (char32_t c : cps) {
        if (c == '.' || c == 0x3002 || c == 0xFF0E || c == 0xFF61)
            labels.emplace_back();
        else
            labels.back().push_back(toLower(c));
    }
    if (labels.back().empty() && labels.size() > 1) return fail("email domain ends with a dot");
    if (labels.size() < 2) return fail("email domain needs at least two labels (like example.org)");

    std::string normalizedDomain;
    for (const auto& label : labels) {
        auto converted = labelToAscii(label);
        if (converted.index() == 1) return fail(std::move(std::get<1>(converted)));
        if (!normalizedDomain.empty()) normalizedDomain.push_back('.');
        normalizedDomain += std::get<0>(converted);
    }

    // All-numeric top-level labels do not exist, and refusing them also
    // refuses bare IPv4 addresses used as a domain.
    const std::string_view tld = std::string_view(normalizedDomain).substr(normalizedDomain.rfind('.') + 1);
    if (std::all_of(tld.begin(), tld.end(), [](char c) { return isAsciiDigit(static_cast<unsigned char>(c)); }))
        return fail("email top-level domain is all-numeric");
    if (normalizedDomain.size() > kMaxDomainOctets) return fail("email domain is longer than 253 octets");

    std::string normalized;
    normalized.reserve(local.size() + 1 + normalizedDomain.size());
    normalized.append(local).push_back('@');
    normalized += normalizedDomain;
    if (normalized.size() > kMaxEmailOctets) return fail("email address is longer than 254 octets");
    return Destination{DestinationKind::Email, std::move(normalized)};
}

std::variant<Destination, DestinationError> parsePhone(std::string_view input, std::string_view defaultRegion) {
    if (input.size() > kMaxPhoneInput) return fail("phone number is too long");

    // Reduce what people type (including the Unicode spaces and dashes that
    // word processors and web pages produce) to ASCII digits, '+' and simple
    // separators, so libphonenumber never sees letters, extensions or URIs.
    std::u32string cps;
    if (!decodeUtf8(input, cps)) return fail("phone number is not valid UTF-8");
    std::string cleaned;
    std::size_t digits = 0, letters = 0;
    bool badChar = false;
    for (char32_t c : cps) {
        if (isAsciiDigit(c)) {
            cleaned.push_back(static_cast<char>(c));
            ++digits;
        } else if (c == '+') {
            if (!cleaned.empty()) return fail("phone number has a '+' that is not at the start");
            cleaned.push_back('+');
        } else if (c == ' ' || c == '\t' || c == 0xA0 || c == 0x2009 || c == 0x202F) {
            cleaned.push_back(' ');
        } else if (c == '-' || (c >= 0x2010 && c <= 0x2015) || c == 0x2212) {
            cleaned.push_back('-');
        } else if (c == '.' || c == '/' || c == '(' || c == ')') {
            cleaned.push_back(static_cast<char>(c));
        } else {
            if (isAsciiLetter(c)) ++letters;
            badChar = true;
        }
    }
    if (badChar) {
        // Mostly letters and no '@': far more likely a mistyped e-mail address
        // than a phone number.
        if (letters > digits) return fail("email address has no '@'");
        return fail("phone number contains a character other than digits, spaces, dashes, dots, slashes and "
                    "parentheses");
    }
    if (digits == 0) return fail("phone number has no digits");

    std::string region;
    for (char c : defaultRegion) region.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 0x20) : c);
    if (region.empty() && cleaned.front() != '+')
        return fail("phone number needs a leading + and country code (or set default_region)");
    // libphonenumber's part, in its module: the region's check, parsing,
    // validity and the E.164 form.
    auto parsed = phone::parse(cleaned, region);
    if (!parsed.ok) return fail(std::move(parsed.reason));
    return Destination{DestinationKind::Phone, std::move(parsed.e164)};
}

std::string maskEmail(std::string_view address) {
    const std::size_t at = address.rfind('@');
    if (at == std::string_view::npos) return "***";
    std::string out;
    if (at > 0) {
        // Keep one whole code point so the result stays valid UTF-8.
        const auto lead = static_cast<unsigned char>(address[0]);
        std::size_t len = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (len >= at) len = 0;  // a one-character local part is not masked by showing it
        out.append(address.substr(0, len));
    }
    out += "***";
    out.append(address.substr(at));
    return out;
}

std::string maskPhone(std::string_view e164) {
    if (e164.size() < 2 || e164.front() != '+' ||
        !std::all_of(e164.begin() + 1, e164.end(), [](char c) { return isAsciiDigit(static_cast<unsigned char>(c)); }))
        return "***";

    // The country code is not sensitive and tells the operator a lot; when it
    // cannot be determined, treat every digit as national (masks more).
    std::size_t ccLength = 0;
    if (const int cc = phone::countryCode(e164); cc > 0) ccLength = std::to_string(cc).size();
    const std::string_view cc = e164.substr(1, ccLength);
    const std::string_view national = e164.substr(1 + ccLength);

    // Mask at least half of the national digits, and everything beyond the
    // first and last three: "+49 151 ***** 678".
    const std::size_t n = national.size();
    const std::size_t masked = std::max({n > 6 ? n - 6 : 0, n / 2, std::min<std::size_t>(n, 1)});
    const std::size_t shown = n - masked;
    const std::size_t tail = std::min<std::size_t>(3, shown - shown / 2);
    const std::size_t head = shown - tail;

    std::string out = "+";
    out.append(cc);
    out.append(national.substr(0, head));
    out.append(masked, '*');
    out.append(national.substr(n - tail));
    return out;
}

}  // namespace

std::variant<Destination, DestinationError> parseDestination(std::string_view input, std::string_view defaultRegion) {
    const std::string_view trimmed = trim(input);
    if (trimmed.empty()) return fail("destination is empty");
    if (trimmed.find('@') != std::string_view::npos) return parseEmail(trimmed);
    return parsePhone(trimmed, defaultRegion);
}

std::string phoneRegion(std::string_view e164) { return phone::region(e164); }

std::string emailMatchForm(const Destination& d) {
    if (d.kind != DestinationKind::Email) return d.normalized;
    const std::size_t at = d.normalized.rfind('@');
    if (at == std::string::npos) return d.normalized;
    std::u32string cps;
    if (!decodeUtf8(std::string_view(d.normalized).substr(0, at), cps)) return d.normalized;
    std::string folded;
    folded.reserve(d.normalized.size());
    for (char32_t c : cps) appendUtf8(folded, toLower(c));
    folded.append(d.normalized, at, std::string::npos);  // the domain is lower-case already
    return folded;
}

std::string maskDestination(const Destination& d) {
    return d.kind == DestinationKind::Email ? maskEmail(d.normalized) : maskPhone(d.normalized);
}

const char* defaultChannel(DestinationKind kind) {
    switch (kind) {
        case DestinationKind::Email:
            return "email";
        case DestinationKind::Phone:
            return "whatsapp";
    }
    return "email";  // unreachable for valid enum values; keeps -Wreturn-type quiet
}

std::optional<std::string> punycodeEncode(std::u32string_view input) {
    // RFC 3492 section 5 parameters.
    constexpr std::uint32_t base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700;
    constexpr std::uint32_t initialBias = 72, initialN = 0x80;
    constexpr std::uint32_t maxInt = std::numeric_limits<std::uint32_t>::max();

    auto digit = [](std::uint32_t d) { return static_cast<char>(d < 26 ? 'a' + d : '0' + (d - 26)); };
    auto adapt = [&](std::uint32_t delta, std::uint32_t numPoints, bool firstTime) {
        delta = firstTime ? delta / damp : delta / 2;
        delta += delta / numPoints;
        std::uint32_t k = 0;
        while (delta > ((base - tMin) * tMax) / 2) {
            delta /= base - tMin;
            k += base;
        }
        return k + (base - tMin + 1) * delta / (delta + skew);
    };

    if (input.size() >= maxInt) return std::nullopt;
    std::string out;
    for (char32_t c : input)
        if (c < 0x80) out.push_back(static_cast<char>(c));
    const auto basicCount = static_cast<std::uint32_t>(out.size());
    if (basicCount > 0) out.push_back('-');

    std::uint32_t n = initialN, delta = 0, bias = initialBias, handled = basicCount;
    const auto total = static_cast<std::uint32_t>(input.size());
    while (handled < total) {
        std::uint32_t m = maxInt;
        for (char32_t c : input)
            if (c >= n && c < m) m = c;
        if (m - n > (maxInt - delta) / (handled + 1)) return std::nullopt;
        delta += (m - n) * (handled + 1);
        n = m;
        for (char32_t c : input) {
            if (c < n && ++delta == 0) return std::nullopt;
            if (c == n) {
                std::uint32_t q = delta;
                for (std::uint32_t k = base;; k += base) {
                    const std::uint32_t t = k <= bias ? tMin : k >= bias + tMax ? tMax : k - bias;
                    if (q < t) break;
                    out.push_back(digit(t + (q - t) % (base - t)));
                    q = (q - t) / (base - t);
                }
                out.push_back(digit(q));
                bias = adapt(delta, handled + 1, handled == basicCount);
                delta = 0;
                ++handled;
            }
        }
        ++delta;
        ++n;
    }
    return out;
}

}  // namespace twofactor::otp
