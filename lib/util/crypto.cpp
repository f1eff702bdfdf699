#include "util/crypto.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace twofactor::crypto {

void randomBytes(void* out, std::size_t size) {
    if (size == 0) return;
    if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(size)) != 1)
        throw std::runtime_error("the system random number generator failed");
}

SecretBytes randomSecret(std::size_t size) {
    SecretBytes s(size);
    randomBytes(s.data(), s.size());
    return s;
}

std::uint64_t randomBelow(std::uint64_t bound) {
    if (bound < 2) return 0;
    // Reject the top sliver of the 64-bit range that would bias the modulo.
    const std::uint64_t limit = UINT64_MAX - (UINT64_MAX % bound + 1) % bound;
    for (;;) {
        std::uint64_t v;
        randomBytes(&v, sizeof v);
        if (v <= limit) return v % bound;
    }
}

static Digest hmacRaw(const void* key, std::size_t keySize, std::string_view message) {
    Digest out{};
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, static_cast<int>(keySize), reinterpret_cast<const unsigned char*>(message.data()),
              message.size(), out.data(), &len) ||
        len != out.size())
        throw std::runtime_error("HMAC-SHA256 failed");
    return out;
}

Digest hmacSha256(const SecretBytes& key, std::string_view message) {
    return hmacRaw(key.data(), key.size(), message);
}

Digest hmacSha256(std::string_view key, std::string_view message) {
    return hmacRaw(key.data(), key.size(), message);
}

Digest sha256(std::string_view data) {
    Digest out{};
    unsigned int len = 0;
    if (!EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr))
        throw std::runtime_error("SHA-256 failed");
    return out;
}

bool constantTimeEqual(const void* a, std::size_t aSize, const void* b, std::size_t bSize) {
    if (aSize != bSize) return false;
    if (aSize == 0) return true;
    return CRYPTO_memcmp(a, b, aSize) == 0;
}

std::string hex(const void* data, std::size_t size) {
    static const char digits[] = "0123456789abcdef";
    const auto* p = static_cast<const unsigned char*>(data);
    std::string s;
    s.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        s.push_back(digits[p[i] >> 4]);
        s.push_back(digits[p[i] & 15]);
    }
    return s;
}

static int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool unhex(std::string_view text, SecretBytes& out) {
    if (text.size() % 2 != 0) return false;
    SecretBytes result(text.size() / 2);
    for (std::size_t i = 0; i < result.size(); ++i) {
        const int hi = hexValue(text[2 * i]);
        const int lo = hexValue(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        result.data()[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    out = std::move(result);
    return true;
}

std::string randomId(std::size_t bytes) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::string raw(bytes, '\0');
    randomBytes(raw.data(), raw.size());
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char c : raw) {
        buffer = (buffer << 8) | c;
        bits += 8;
        while (bits >= 5) {
            out.push_back(alphabet[(buffer >> (bits - 5)) & 31]);
            bits -= 5;
        }
    }
    if (bits > 0) out.push_back(alphabet[(buffer << (5 - bits)) & 31]);
    return out;
}

std::string timeOrderedId(std::int64_t unixMillis) {
    static const char alphabet[] = "234567abcdefghijklmnopqrstuvwxyz";
    std::string out(26, alphabet[0]);
    auto t = static_cast<std::uint64_t>(unixMillis < 0 ? 0 : unixMillis);
    for (int i = 9; i >= 0; --i, t >>= 5) out[static_cast<std::size_t>(i)] = alphabet[t & 31];
    unsigned char raw[10];
    randomBytes(raw, sizeof raw);
    std::size_t o = 10;
    for (std::size_t i = 0; i < sizeof raw; i += 5) {
        std::uint64_t v = 0;
        for (std::size_t k = 0; k < 5; ++k) v = (v << 8) | raw[i + k];
        for (int k = 7; k >= 0; --k) out[o++] = alphabet[(v >> (5 * k)) & 31];
    }
    return out;
}

}  // namespace twofactor::crypto
