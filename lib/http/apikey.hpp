// API keys of the HTTPS API: tfk_<id>_<secret><checksum>. The id (16
// base32 characters) is public; the secret is 256 random bits (52 base32
// characters); the checksum (8 hex digits of SHA-256 over what precedes it)
// lets a secret scanner recognise a leaked key, and us refuse a mistyped one
// before any lookup. The store keeps only a keyed hash of the secret.
#pragma once

#include "store/store.hpp"
#include "util/secret.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::http {

inline constexpr std::string_view kApiKeyPrefix = "tfk_";
// What a key may do; "send" covers resend too.
inline const std::vector<std::string> kApiScopes = {"send", "verify", "status", "cancel"};

struct IssuedApiKey {
    std::string id;
    SecretString token;      // the whole key, shown once
    std::string secretHash;  // what the store keeps
};

struct PresentedApiKey {
    std::string id;
    SecretString secret;
};

// A new key; hashKey is the daemon's key for API key hashes.
[[nodiscard]] IssuedApiKey issueApiKey(const SecretBytes& hashKey);
// The id and secret of a well-formed key with a valid checksum, else nullopt.
[[nodiscard]] std::optional<PresentedApiKey> parseApiKey(std::string_view token);
[[nodiscard]] std::string apiKeySecretHash(const SecretBytes& hashKey, std::string_view id, std::string_view secret);
// Whether the presented secret is the stored key's, in constant time.
[[nodiscard]] bool apiKeyMatches(const SecretBytes& hashKey, const store::ApiKey& stored, const PresentedApiKey& given);

// "send,verify" -> {"send", "verify"}.
[[nodiscard]] std::vector<std::string> splitScopes(std::string_view scopes);
[[nodiscard]] bool hasScope(const store::ApiKey& key, std::string_view scope);

}  // namespace twofactor::http
