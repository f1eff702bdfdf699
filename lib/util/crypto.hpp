// The few cryptographic primitives twofactor uses, all from OpenSSL.
#pragma once

#include "util/secret.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace twofactor::crypto {

using Digest = std::array<std::uint8_t, 32>;

// Fills from OpenSSL's CSPRNG; throws std::runtime_error if it fails.
void randomBytes(void* out, std::size_t size);
[[nodiscard]] SecretBytes randomSecret(std::size_t size);

// A uniformly random integer in [0, bound), by rejection sampling.
[[nodiscard]] std::uint64_t randomBelow(std::uint64_t bound);

[[nodiscard]] Digest hmacSha256(const SecretBytes& key, std::string_view message);
[[nodiscard]] Digest hmacSha256(std::string_view key, std::string_view message);
[[nodiscard]] Digest sha256(std::string_view data);

// Constant-time comparison of equal-length buffers (false when lengths differ).
[[nodiscard]] bool constantTimeEqual(const void* a, std::size_t aSize, const void* b, std::size_t bSize);
[[nodiscard]] inline bool constantTimeEqual(std::string_view a, std::string_view b) {
    return constantTimeEqual(a.data(), a.size(), b.data(), b.size());
}

[[nodiscard]] std::string hex(const void* data, std::size_t size);
[[nodiscard]] inline std::string hex(const Digest& d) { return hex(d.data(), d.size()); }
// Parses lower- or upper-case hex; returns false on odd length or a non-hex digit.
[[nodiscard]] bool unhex(std::string_view text, SecretBytes& out);

// A random identifier: `bytes` random bytes in lower-case base32 (RFC 4648 alphabet, no padding).
[[nodiscard]] std::string randomId(std::size_t bytes = 15);

// A request id: the creation time in milliseconds since the epoch (10
// characters, 50 bits), then 80 random bits (16 characters), 26 characters of
// RFC 4648's base32 characters taken in ASCII order ("234567a-z"), so ids sort
// by creation time. Ids made together share their first characters and fall
// on the same index pages: inserts and retention purges touch a few adjacent
// pages rather than one random page per row. The 80 random bits keep ids
// unguessable even to someone who knows when a request was made.
[[nodiscard]] std::string timeOrderedId(std::int64_t unixMillis);

}  // namespace twofactor::crypto
