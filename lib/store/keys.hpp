// The two secrets of a twofactord: the store key and the code pepper.
#pragma once

#include "util/secret.hpp"

#include <string>

namespace twofactor::store {

inline constexpr std::size_t kKeyBytes = 32;

// Loads a 256-bit key written as 64 hex digits (a trailing newline is fine).
// Sources, in order: $CREDENTIALS_DIRECTORY/<credentialName> (systemd
// LoadCredential=), then `keyFile`, which must be a regular file of mode 0600
// or stricter owned by the effective user. When neither exists and `generate`
// is set, a new random key is written to `keyFile` (mode 0600). Throws
// std::runtime_error saying what is wrong and how to fix it.
[[nodiscard]] SecretBytes loadKey(const std::string& credentialName, const std::string& keyFile, bool generate);

// Parses the hex text of a key file.
[[nodiscard]] SecretBytes parseKey(std::string_view text, const std::string& source);

// Writes a fresh key file (exclusive create, 0600) and returns the key.
SecretBytes generateKeyFile(const std::string& keyFile);

}  // namespace twofactor::store
