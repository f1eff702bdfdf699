#include "util/crypto.hpp"
#include "util/secret.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace twofactor;

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2", "[crypto]") {
    const auto d = crypto::hmacSha256(std::string_view("Jefe"), "what do ya want for nothing?");
    CHECK(crypto::hex(d) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("SHA-256 of the empty string", "[crypto]") {
    CHECK(crypto::hex(crypto::sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("hex round trip and rejection of bad input", "[crypto]") {
    SecretBytes out;
    REQUIRE(crypto::unhex("00ff10Ab", out));
    REQUIRE(out.size() == 4);
    CHECK(crypto::hex(out.data(), out.size()) == "00ff10ab");
    CHECK_FALSE(crypto::unhex("abc", out));
    CHECK_FALSE(crypto::unhex("zz", out));
}

TEST_CASE("constant-time comparison", "[crypto]") {
    CHECK(crypto::constantTimeEqual("abc", "abc"));
    CHECK_FALSE(crypto::constantTimeEqual("abc", "abd"));
    CHECK_FALSE(crypto::constantTimeEqual("abc", "abcd"));
    CHECK(crypto::constantTimeEqual("", ""));
}

TEST_CASE("random ids are base32 and distinct", "[crypto]") {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        const auto id = crypto::randomId();
        REQUIRE(id.size() == 24);
        for (char c : id) REQUIRE(((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')));
        seen.insert(id);
    }
    CHECK(seen.size() == 1000);
}

TEST_CASE("request ids sort by creation time and stay unguessable", "[crypto]") {
    const std::int64_t t = 1'800'000'000'123;
    std::set<std::string> seen;
    std::string previous;
    for (int i = 0; i < 1000; ++i) {
        const auto id = crypto::timeOrderedId(t + i / 10);
        REQUIRE(id.size() == 26);
        // The characters of the old 24-character ids: both kinds read the same way.
        for (char c : id) REQUIRE(((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')));
        if (i % 10 == 0) CHECK(id > previous);  // a later millisecond sorts after every earlier id
        if (i % 10 == 9) previous = id;
        seen.insert(id.substr(10));
    }
    CHECK(seen.size() == 1000);  // the random part: 80 bits, distinct
    // Ten characters of time: the same millisecond, the same prefix.
    CHECK(crypto::timeOrderedId(t).substr(0, 10) == crypto::timeOrderedId(t).substr(0, 10));
    CHECK(crypto::timeOrderedId(0).substr(0, 10) == "2222222222");
    CHECK(crypto::timeOrderedId(31).substr(0, 10) == "222222222z");
    CHECK(crypto::timeOrderedId(32).substr(0, 10) == "2222222232");
    // Every random character takes all 32 values: no bit of the 80 is fixed.
    std::set<char> at[16];
    for (int i = 0; i < 2000; ++i) {
        const auto id = crypto::timeOrderedId(t);
        for (std::size_t k = 0; k < 16; ++k) at[k].insert(id[10 + k]);
    }
    for (const auto& s : at) CHECK(s.size() == 32);
}

TEST_CASE("randomBelow stays in range and reaches both ends", "[crypto]") {
    bool low = false, high = false;
    for (int i = 0; i < 2000; ++i) {
        const auto v = crypto::randomBelow(7);
        REQUIRE(v < 7);
        low |= v == 0;
        high |= v == 6;
    }
    CHECK(low);
    CHECK(high);
    CHECK(crypto::randomBelow(1) == 0);
}

TEST_CASE("secret holders wipe on move and clear", "[crypto]") {
    SecretString a("123456");
    SecretString b(std::move(a));
    CHECK(a.empty());
    CHECK(b.str() == "123456");
    b.wipe();
    CHECK(b.empty());
    SecretBytes k = crypto::randomSecret(32);
    SecretBytes c = k.clone();
    CHECK(crypto::constantTimeEqual(k.view(), c.view()));
}
