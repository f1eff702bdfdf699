#include "otp/destination.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace twofactor::otp;

namespace {

struct Accept {
    std::string input;
    std::string normalized;
    std::string region = "";
};

struct Reject {
    std::string input;
    std::string reasonContains;
    std::string region = "";
};

std::string parseOk(const std::string& input, const std::string& region, DestinationKind kind) {
    auto result = parseDestination(input, region);
    if (auto* error = std::get_if<DestinationError>(&result)) FAIL("refused: " << error->reason);
    const auto& d = std::get<Destination>(result);
    CHECK(d.kind == kind);
    return d.normalized;
}

std::string parseError(const std::string& input, const std::string& region) {
    auto result = parseDestination(input, region);
    if (auto* d = std::get_if<Destination>(&result)) FAIL("accepted as " << d->normalized);
    return std::get<DestinationError>(result).reason;
}

// Reasons may be logged, so they must not repeat the destination: neither the
// whole input nor a recognisable part of it.
void checkReasonHidesInput(const std::string& reason, const std::string& input) {
    CHECK(reason.find(input) == std::string::npos);
    const auto at = input.find('@');
    if (at != std::string::npos) {
        const std::string local = input.substr(0, at), domain = input.substr(at + 1);
        if (local.size() > 2) CHECK(reason.find(local) == std::string::npos);
        if (domain.size() > 3) CHECK(reason.find(domain) == std::string::npos);
    }
    std::string digits;
    for (char c : input)
        if (c >= '0' && c <= '9') digits.push_back(c);
    if (digits.size() > 3) CHECK(reason.find(digits) == std::string::npos);
}

}  // namespace

TEST_CASE("punycodeEncode matches the RFC 3492 sample strings", "[destination][punycode]") {
    // RFC 3492 section 7.1, samples A, B, L, R and S.
    CHECK(punycodeEncode(U"\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639\u0631\u0628"
                         U"\u064A\u061F") == "egbpdaj6bu4bxfgehfvwxn");
    CHECK(punycodeEncode(U"\u4ED6\u4EEC\u4E3A\u4EC0\u4E48\u4E0D\u8BF4\u4E2D\u6587") == "ihqwcrb4cv8a8dqg056pqjye");
    CHECK(punycodeEncode(U"3\u5E74B\u7D44\u91D1\u516B\u5148\u751F") == "3B-ww4c5e180e575a65lsy2b");
    CHECK(punycodeEncode(U"\u305D\u306E\u30B9\u30D4\u30FC\u30C9\u3067") == "d9juau41awczczp");
    CHECK(punycodeEncode(U"-> $1.00 <-") == "-> $1.00 <--");
    // Domain labels used below.
    CHECK(punycodeEncode(U"bücher") == "bcher-kva");
    CHECK(punycodeEncode(U"münchen") == "mnchen-3ya");
    CHECK(punycodeEncode(U"straße") == "strae-oqa");
    CHECK(punycodeEncode(U"") == "");
}

TEST_CASE("parseDestination accepts and normalises e-mail addresses", "[destination][email]") {
    const std::string local64(64, 'a');
    const std::string label63(63, 'b');
    const std::string label57u = [] {
        std::string s;
        for (int i = 0; i < 57; ++i) s += "ü";  // "xn--" + 59 characters = 63
        return s;
    }();
    const std::vector<Accept> table = {
        {"john.doe@example.org", "john.doe@example.org"},
        {"  John.Doe@Example.ORG \n", "John.Doe@example.org"},  // trimmed, domain lower-cased, local part kept
        {"user+tag@sub.example.co.uk", "user+tag@sub.example.co.uk"},
        {"!#$%&'*+-/=?^_`{|}~@example.org", "!#$%&'*+-/=?^_`{|}~@example.org"},
        {"a@b.co", "a@b.co"},
        {"x@1example.com", "x@1example.com"},
        {"x@123.example", "x@123.example"},
        {"x@a-b--c.example", "x@a-b--c.example"},
        {"user@bücher.de", "user@xn--bcher-kva.de"},
        {"user@BÜCHER.DE", "user@xn--bcher-kva.de"},
        {"info@münchen.de", "info@xn--mnchen-3ya.de"},
        {"info@MÜNCHEN.de", "info@xn--mnchen-3ya.de"},
        {"user@xn--bcher-kva.de", "user@xn--bcher-kva.de"},  // already an A-label
        {"user@straße.de", "user@xn--strae-oqa.de"},  // IDNA2008 keeps sharp s
        {"user@ΕΛΛΑΔΑ.gr", "user@xn--mxaaic4aa.gr"},
        {"user@ПРИМЕР.РФ", "user@xn--e1afmkfd.xn--p1ai"},
        {"user@例子.广告", "user@xn--fsqu00a.xn--4rr70v"},
        {"user@example\u3002org", "user@example.org"},  // ideographic full stop separates labels
        {"josé@example.com", "josé@example.com"},       // RFC 6531 UTF-8 local part, kept as given
        {"用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
        {local64 + "@example.org", local64 + "@example.org"},
        {"x@" + label63 + ".org", "x@" + label63 + ".org"},
        {"x@" + label57u + ".de", "x@xn--td" + std::string(57, 'a') + ".de"},
    };
    for (const auto& row : table) {
        INFO("input: " << row.input);
        CHECK(parseOk(row.input, row.region, DestinationKind::Email) == row.normalized);
    }
}

TEST_CASE("parseDestination refuses malformed e-mail addresses with a reason", "[destination][email]") {
    const std::string label64(64, 'b');
    const std::string label63(63, 'c');
    const std::string label58u = [] {
        std::string s;
        for (int i = 0; i < 58; ++i) s += "ü";  // "xn--" + 60 characters = 64
        return s;
    }();
    // 64 + 1 + 189 = 254 octets is the limit; one more octet is too long.
    const std::string domain189 = label63 + "." + label63 + "." + std::string(57, 'd') + ".org";
    const std::string domain190 = label63 + "." + label63 + "." + std::string(58, 'd') + ".org";
    const std::vector<Reject> table = {
        {"johnexample.org", "email address has no '@'"},
        {"@example.org", "nothing before the '@'"},
        {"john@", "nothing after the '@'"},
        {"john@doe@example.org", "more than one '@'"},
        {".john@example.org", "starts with a dot"},
        {"john.@example.org", "ends with a dot"},
        {"jo..hn@example.org", "two consecutive dots"},
        {"jo hn@example.org", "character not allowed"},
        {"jo,hn@example.org", "character not allowed"},
        {"\"john\"@example.org", "quoted"},
        {std::string(65, 'a') + "@example.org", "longer than 64 octets"},
        {"jo\xffhn@example.org", "not valid UTF-8"},
        {"jo\xc0\xafhn@example.org", "not valid UTF-8"},  // overlong '/'
        {"jo\xed\xa0\x80hn@example.org", "not valid UTF-8"},  // surrogate
        {"jo\u202ehn@example.org", "invisible"},  // right-to-left override
        {"john@localhost", "at least two labels"},
        {"john@example..org", "empty label"},
        {"john@.example.org", "empty label"},
        {"john@example.org.", "domain ends with a dot"},
        {"john@-example.org", "hyphen"},
        {"john@example-.org", "hyphen"},
        {"john@exa_mple.org", "character other than letters, digits, hyphens and dots"},
        {"john@exa mple.org", "character other than letters, digits, hyphens and dots"},
        {"john@[192.168.0.1]", "character other than letters, digits, hyphens and dots"},
        {"john@192.168.0.1", "all-numeric"},
        {"john@example.123", "all-numeric"},
        {"john@" + label64 + ".org", "domain label longer than 63 characters"},
        {"john@" + label58u + ".de", "domain label longer than 63 characters"},
        {"john@exa\u200bmple.org", "invisible"},  // zero-width space
        {"john@exa\u00a0mple.org", "invisible"},  // no-break space
        {"john@ab--cdé.de", "third and fourth positions"},
        {"john@b\xc3(.de", "not valid UTF-8"},
        {"john@" + label63 + "." + label63 + "." + label63 + "." + label63 + ".org", "longer than 253 octets"},
        {std::string(64, 'a') + "@" + domain190, "longer than 254 octets"},
        {std::string(2000, 'a') + "@example.org", "longer than 254 octets"},
    };
    for (const auto& row : table) {
        INFO("input: " << row.input);
        const std::string reason = parseError(row.input, row.region);
        CHECK_THAT(reason, Catch::Contains(row.reasonContains));
        checkReasonHidesInput(reason, row.input);
    }
    // The boundary itself is fine.
    const std::string longest = std::string(64, 'a') + "@" + domain189;
    REQUIRE(longest.size() == 254);
    CHECK(parseOk(longest, "", DestinationKind::Email) == longest);
}

TEST_CASE("parseDestination normalises phone numbers to E.164", "[destination][phone]") {
    const std::vector<Accept> table = {
        {"+49 151 1234 5678", "+4915112345678"},
        {"+4915112345678", "+4915112345678"},
        {" +49-151-1234-5678 ", "+4915112345678"},
        {"+49 (0)151 1234.5678", "+4915112345678"},
        {"+49\u00a0151\u20111234\u00a05678", "+4915112345678"},  // pasted: no-break spaces, non-breaking hyphen
        {"0151 12345678", "+4915112345678", "DE"},
        {"0151/1234-5678", "+4915112345678", "de"},  // region case does not matter
        {"0049 151 12345678", "+4915112345678", "DE"},
        {"+49 151 1234 5678", "+4915112345678", "FR"},  // an explicit country code wins
        {"+1 (202) 555-0123", "+12025550123"},
        {"(202) 555-0123", "+12025550123", "US"},
        {"+44 20 7946 0958", "+442079460958"},
        {"+33 6 12 34 56 78", "+33612345678"},
        {"06 12 34 56 78", "+33612345678", "FR"},
    };
    for (const auto& row : table) {
        INFO("input: " << row.input << " region: " << row.region);
        CHECK(parseOk(row.input, row.region, DestinationKind::Phone) == row.normalized);
    }
}

TEST_CASE("parseDestination refuses invalid phone numbers with a reason", "[destination][phone]") {
    const std::vector<Reject> table = {
        {"015112345678", "phone number needs a leading + and country code (or set default_region)"},
        {"0049 151 12345678", "needs a leading +"},
        {"+4915", "phone number is too short for region DE"},
        {"+49 151", "too short for region DE"},
        {"123", "too short", "DE"},
        {"+49151123456789012345", "too long"},
        {"0151 1234567890123", "too long", "DE"},
        {"+999 1234567", "unknown country code"},
        {"+44 7700 900123", "not a valid number"},  // Ofcom's range reserved for drama
        {"+49 151 1234 5678 ext 9", "character other than digits"},
        {"+49 151 1234 5678;ext=9", "character other than digits"},
        {"+49 151 +1234 5678", "'+' that is not at the start"},
        {"1-800-FLOWERS", "email address has no '@'"},
        {"+", "no digits"},
        {"---", "no digits"},
        {"+49 151 1234 5678", "default_region XX is not a region", "XX"},
        {"0151 12345678", "default_region is not an ISO 3166", "Germany"},
        {std::string(100, '1'), "too long"},
    };
    for (const auto& row : table) {
        INFO("input: " << row.input << " region: " << row.region);
        const std::string reason = parseError(row.input, row.region);
        CHECK_THAT(reason, Catch::Contains(row.reasonContains));
        checkReasonHidesInput(reason, row.input);
    }
}

TEST_CASE("parseDestination classifies by '@' and refuses empty input", "[destination]") {
    CHECK(std::get<DestinationError>(parseDestination("")).reason == "destination is empty");
    CHECK(std::get<DestinationError>(parseDestination(" \t\n")).reason == "destination is empty");
    // Digits with an '@' are an e-mail address, never a phone number.
    CHECK(std::get<Destination>(parseDestination("4915112345678@sms.example.net")).kind == DestinationKind::Email);
}

TEST_CASE("phoneRegion names the ISO 3166 region of an E.164 number", "[destination][phone]") {
    CHECK(phoneRegion("+4915112345678") == "DE");
    CHECK(phoneRegion("+12025550123") == "US");
    CHECK(phoneRegion("+14169671111") == "CA");  // shares +1 with the US; told apart by area code
    CHECK(phoneRegion("+442079460958") == "GB");
    CHECK(phoneRegion("+4915") == "DE");          // invalid, but +49 belongs to DE alone
    CHECK(phoneRegion("+80012345678") == "");     // international freephone: no region
    CHECK(phoneRegion("+9991234567") == "");
    CHECK(phoneRegion("4915112345678") == "");    // not E.164
    CHECK(phoneRegion("+49 151 1234 5678") == "");
    CHECK(phoneRegion("") == "");
}

TEST_CASE("maskDestination hides most of a destination", "[destination][mask]") {
    using K = DestinationKind;
    CHECK(maskDestination({K::Email, "john@example.org"}) == "j***@example.org");
    CHECK(maskDestination({K::Email, "j@example.org"}) == "***@example.org");
    CHECK(maskDestination({K::Email, "émile@xn--bcher-kva.de"}) == "é***@xn--bcher-kva.de");  // whole code point
    CHECK(maskDestination({K::Email, "用户@example.org"}) == "用***@example.org");
    CHECK(maskDestination({K::Email, "not-an-address"}) == "***");

    CHECK(maskDestination({K::Phone, "+4915112345678"}) == "+49151*****678");
    CHECK(maskDestination({K::Phone, "+12025550123"}) == "+120*****123");
    CHECK(maskDestination({K::Phone, "+4930123456"}) == "+4930****56");
    CHECK(maskDestination({K::Phone, "+80012345678"}) == "+80012****78");
    CHECK(maskDestination({K::Phone, "4915112345678"}) == "***");
    CHECK(maskDestination({K::Phone, ""}) == "***");

    // Whatever the length, the country code is kept and at least half of the
    // national digits (rounded down) are hidden.
    const std::vector<std::pair<std::string, std::size_t>> numbers = {
        {"+4915112345678", 2}, {"+12025550123", 1}, {"+3544123456", 3}, {"+33612345678", 2}, {"+4930123456", 2}};
    for (const auto& [e164, ccLength] : numbers) {
        INFO(e164);
        const std::string masked = maskDestination({K::Phone, e164});
        REQUIRE(masked.size() == e164.size());
        CHECK(masked.substr(0, 1 + ccLength) == e164.substr(0, 1 + ccLength));
        const std::size_t national = e164.size() - 1 - ccLength;
        std::size_t stars = 0;
        for (char c : masked) stars += c == '*';
        CHECK(stars * 2 + 1 >= national);  // half, rounded down: the spec's "+49151*****678"
    }

    // Masks a parsed destination end to end.
    auto parsed = parseDestination("user@BÜCHER.de");
    CHECK(maskDestination(std::get<Destination>(parsed)) == "u***@xn--bcher-kva.de");
}

TEST_CASE("defaultChannel picks e-mail for addresses and WhatsApp for phones", "[destination]") {
    CHECK(std::string(defaultChannel(DestinationKind::Email)) == "email");
    CHECK(std::string(defaultChannel(DestinationKind::Phone)) == "whatsapp");
}
