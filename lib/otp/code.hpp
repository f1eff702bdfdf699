// One-time codes: generation, the stored (hashed) form, and a shape check.
#pragma once

#include "util/crypto.hpp"
#include "util/secret.hpp"

#include <string_view>

namespace twofactor::otp {

inline constexpr int kMinCodeLength = 4, kMaxCodeLength = 10;

// `length` decimal digits from OpenSSL's CSPRNG, each digit position uniform:
// one integer drawn uniformly from [0, 10^length) by rejection sampling, then
// zero-padded. Throws std::invalid_argument when length is outside 4..10
// (a configuration bug, not a runtime condition).
[[nodiscard]] SecretString generateCode(int length);

// HMAC-SHA256(pepper, requestId || 0x00 || code): the only form in which a
// code is stored. The separator keeps the concatenation unambiguous; request
// ids come from a fixed alphabet without NUL. (Even for arbitrary bytes the
// encoding is injective as long as either side is NUL-free, and codes are
// digits.)
[[nodiscard]] crypto::Digest codeHash(const SecretBytes& pepper, std::string_view requestId, std::string_view code);

// A code bound to a transaction's context (the canonical form of
// otp/binding.hpp): HMAC-SHA256(pepper, requestId || 0x00 || code || 0x01 ||
// context). Codes are digits, so the 0x01 keeps every bound message apart
// from every unbound one; an empty context gives the unbound hash above.
[[nodiscard]] crypto::Digest codeHash(const SecretBytes& pepper, std::string_view requestId, std::string_view code,
                                      std::string_view context);

// True when `code` looks like a code at all: 4..10 ASCII digits. Lets callers
// reject garbage before spending an HMAC or an attempt on it.
[[nodiscard]] bool wellFormedCode(std::string_view code);

}  // namespace twofactor::otp
