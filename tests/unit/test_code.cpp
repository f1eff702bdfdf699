#include "otp/code.hpp"

#include "util/crypto.hpp"

#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

using namespace twofactor;
using namespace twofactor::otp;

namespace {

// An HMAC computed straight through OpenSSL, independent of crypto::hmacSha256
// and of the way codeHash assembles its message.
std::string referenceHmacHex(std::string_view key, std::string_view message) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
         message.size(), out, &len);
    return crypto::hex(out, len);
}

SecretBytes bytesOf(std::string_view s) { return SecretBytes(s.data(), s.size()); }

// Chi-square statistic of observed counts against a uniform expectation.
double chiSquare(const std::vector<long>& counts, double expected) {
    double chi = 0;
    for (long c : counts) chi += (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected) / expected;
    return chi;
}

}  // namespace

TEST_CASE("generateCode yields exactly `length` ASCII digits for every allowed length", "[code]") {
    for (int length = kMinCodeLength; length <= kMaxCodeLength; ++length) {
        // Count failures instead of asserting per draw: TAP reports one line per assertion.
        int wrongLength = 0, notDigits = 0;
        for (int i = 0; i < 200; ++i) {
            const SecretString code = generateCode(length);
            wrongLength += code.size() != static_cast<std::size_t>(length);
            for (char c : code.view()) notDigits += c < '0' || c > '9';
            notDigits += !wellFormedCode(code.view());
        }
        INFO("length " << length);
        CHECK(wrongLength == 0);
        CHECK(notDigits == 0);
    }
}

TEST_CASE("generateCode refuses lengths outside 4..10", "[code]") {
    for (int length : {-1, 0, 1, 3, 11, 20}) {
        INFO("length " << length);
        CHECK_THROWS_AS((void)generateCode(length), std::invalid_argument);
    }
}

TEST_CASE("generateCode is uniform in every digit position", "[code][statistics]") {
    // 200k six-digit codes give 200k single-digit draws per position. The
    // critical value is chi-square(9 d.f.) at p = 1e-6 (44.81), so a correct
    // generator fails this less than once in a hundred thousand runs, while
    // e.g. a modulo bias or a stuck leading digit is caught immediately.
    constexpr int kLength = 6;
    constexpr long kDraws = 200000;
    constexpr double kCritical = 44.81;
    std::vector<std::vector<long>> counts(kLength, std::vector<long>(10, 0));
    for (long i = 0; i < kDraws; ++i) {
        const SecretString code = generateCode(kLength);
        for (int p = 0; p < kLength; ++p) ++counts[static_cast<std::size_t>(p)][static_cast<std::size_t>(code.view()[p] - '0')];
    }
    for (int p = 0; p < kLength; ++p) {
        const double chi = chiSquare(counts[static_cast<std::size_t>(p)], kDraws / 10.0);
        INFO("position " << p << " chi-square " << chi);
        CHECK(chi < kCritical);
    }
}

TEST_CASE("generateCode is uniform over whole codes, not just per digit", "[code][statistics]") {
    // Per-position uniformity alone would not catch correlated digits, so also
    // test all 10^4 four-digit codes jointly: 200k draws, 20 expected per code,
    // chi-square(9999 d.f.) critical value at p = 1e-6 is about 10686.
    constexpr long kDraws = 200000;
    constexpr double kCritical = 10686.0;
    std::vector<long> counts(10000, 0);
    for (long i = 0; i < kDraws; ++i) ++counts[static_cast<std::size_t>(std::stoi(generateCode(4).str()))];
    const double chi = chiSquare(counts, kDraws / 10000.0);
    INFO("chi-square " << chi);
    CHECK(chi < kCritical);
    // Zero-padding works: codes with leading zeros do occur.
    long leadingZero = 0;
    for (std::size_t v = 0; v < 1000; ++v) leadingZero += counts[v];
    CHECK(leadingZero > 0);
}

TEST_CASE("wellFormedCode accepts 4..10 ASCII digits only", "[code]") {
    CHECK(wellFormedCode("0000"));
    CHECK(wellFormedCode("123456"));
    CHECK(wellFormedCode("0123456789"));
    CHECK_FALSE(wellFormedCode(""));
    CHECK_FALSE(wellFormedCode("123"));
    CHECK_FALSE(wellFormedCode("01234567890"));
    CHECK_FALSE(wellFormedCode("12 456"));
    CHECK_FALSE(wellFormedCode("12345a"));
    CHECK_FALSE(wellFormedCode("-12345"));
    CHECK_FALSE(wellFormedCode("+12345"));
    CHECK_FALSE(wellFormedCode("１２３４５６"));  // full-width digits are not ASCII digits
    CHECK_FALSE(wellFormedCode(std::string_view("1234\0" "56", 7)));
}

TEST_CASE("codeHash equals HMAC-SHA256(pepper, id || 0x00 || code)", "[code]") {
    const std::string_view pepper = "0123456789abcdef0123456789abcdef";
    const std::string_view id = "k7x2m4q9abcdefghijklmnop";
    const auto digest = codeHash(bytesOf(pepper), id, "123456");

    // Precomputed with:
    //   printf 'k7x2m4q9abcdefghijklmnop\x00123456' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
    CHECK(crypto::hex(digest) == "6d873c6961ada5c62122ffa53e77cbc841b54e2336846a557c12bff62f87fa8e");

    const std::string message = std::string(id) + std::string(1, '\0') + "123456";
    CHECK(crypto::hex(digest) == referenceHmacHex(pepper, message));
}

TEST_CASE("codeHash depends on pepper, request id and code", "[code]") {
    const SecretBytes pepper = bytesOf("pepper-one-pepper-one-pepper-one");
    const SecretBytes other = bytesOf("pepper-two-pepper-two-pepper-two");
    const auto base = codeHash(pepper, "requestaaaa", "123456");

    CHECK(codeHash(pepper, "requestaaaa", "123456") == base);  // deterministic
    CHECK(codeHash(other, "requestaaaa", "123456") != base);
    CHECK(codeHash(pepper, "requestaaab", "123456") != base);
    CHECK(codeHash(pepper, "requestaaaa", "123457") != base);
    CHECK(codeHash(pepper, "requestaaaa", "0123456") != base);

    // The separator keeps the split unambiguous: moving a character across
    // the boundary changes the hash.
    CHECK(codeHash(pepper, "abc1", "23456") != codeHash(pepper, "abc", "123456"));
    CHECK(codeHash(pepper, "abc", "") != codeHash(pepper, "ab", "c"));
}

// ---- Transaction binding ----

#include "otp/binding.hpp"

#include <map>

TEST_CASE("a bound code's hash covers the canonical context after a 0x01") {
    const auto pepper = bytesOf("pepper-0123456789abcdef0123456789");
    auto parsed = parseBinding({{"payee", "Shop GmbH"}, {"amount", "49.90 EUR"}});
    REQUIRE(std::holds_alternative<BoundContext>(parsed));
    const auto& ctx = std::get<BoundContext>(parsed);
    CHECK(ctx.canonical() == "amount=49.90 EUR\npayee=Shop GmbH");  // sorted by key
    CHECK(*ctx.value("payee") == "Shop GmbH");
    CHECK_FALSE(ctx.value("pay"));
    CHECK(ctx.keys() == std::vector<std::string>{"amount", "payee"});

    const std::string id = "01HZZZ";
    const auto bound = codeHash(pepper, id, "123456", ctx.canonical());
    CHECK(crypto::hex(bound) == referenceHmacHex(pepper.view(), id + std::string(1, '\0') + "123456" +
                                                                    std::string(1, '\x01') + std::string(ctx.canonical())));
    // No context is the unbound hash, so requests stored before binding still verify.
    CHECK(crypto::hex(codeHash(pepper, id, "123456", "")) == crypto::hex(codeHash(pepper, id, "123456")));
    CHECK(crypto::hex(bound) != crypto::hex(codeHash(pepper, id, "123456")));
    auto other = parseBinding({{"payee", "Shop GmbH"}, {"amount", "4990 EUR"}});
    CHECK(crypto::hex(codeHash(pepper, id, "123456", std::get<BoundContext>(other).canonical())) != crypto::hex(bound));
}

TEST_CASE("binding entries are refused by what is wrong, never echoing a value") {
    auto reason = [](std::map<std::string, std::string> m) {
        auto r = parseBinding(m);
        return std::holds_alternative<BindingError>(r) ? std::get<BindingError>(r).reason : std::string();
    };
    CHECK(reason({{"Amount", "1"}}).find("key 'Amount'") != std::string::npos);
    CHECK(reason({{"1st", "1"}}) != "");
    CHECK(reason({{std::string(33, 'a'), "1"}}) != "");
    CHECK(reason({{"amount", ""}}).find("1 to 200 bytes") != std::string::npos);
    CHECK(reason({{"amount", std::string(201, '9')}}) != "");
    CHECK(reason({{"amount", std::string(200, '9')}}).empty());
    CHECK(reason({{"amount", "secret\x01value"}}).find("control") != std::string::npos);
    CHECK(reason({{"amount", "secret\x01value"}}).find("secret") == std::string::npos);
    CHECK(reason({{"amount", "\xc3\x28"}}) != "");          // invalid UTF-8
    CHECK(reason({{"amount", "\xc0\xaf"}}) != "");          // overlong
    CHECK(reason({{"amount", "\xed\xa0\x80"}}) != "");      // surrogate
    CHECK(reason({{"amount", "\xc2\x85"}}) != "");          // C1 control (NEL)
    CHECK(reason({{"payee", "M\xc3\xbcller & S\xc3\xb6hne"}}).empty());
    CHECK(reason({{"payee", "{{code}}"}}) != "");
    std::map<std::string, std::string> nine;
    for (int i = 0; i < 9; ++i) nine["k" + std::to_string(i)] = "v";
    CHECK(reason(nine).find("at most 8") != std::string::npos);
    nine.erase("k8");
    CHECK(reason(nine).empty());
}

TEST_CASE("the audit digest is keyed and empty for no context") {
    const auto k1 = bytesOf("key-one"), k2 = bytesOf("key-two");
    auto ctx = std::get<BoundContext>(parseBinding({{"amount", "1 EUR"}}));
    CHECK(bindingDigest(k1, ctx) == referenceHmacHex("key-one", "binding v1\namount=1 EUR"));
    CHECK(bindingDigest(k1, ctx) != bindingDigest(k2, ctx));
    CHECK(bindingDigest(k1, BoundContext{}).empty());
}
