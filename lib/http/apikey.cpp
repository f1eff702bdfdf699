#include "http/apikey.hpp"

#include "util/crypto.hpp"

#include <algorithm>

namespace twofactor::http {

namespace {

constexpr std::size_t kIdChars = 16;      // 10 random bytes in base32
constexpr std::size_t kSecretChars = 52;  // 32 random bytes in base32
constexpr std::size_t kCheckChars = 8;

std::string checksum(std::string_view body) {
    const auto d = crypto::sha256(body);
    return crypto::hex(d.data(), 4);
}

bool base32(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'); });
}

}  // namespace

std::string apiKeySecretHash(const SecretBytes& hashKey, std::string_view id, std::string_view secret) {
    std::string message = "api-key|";
    message.append(id).append("|").append(secret);
    const auto d = crypto::hmacSha256(hashKey, message);
    std::fill(message.begin(), message.end(), '\0');
    return crypto::hex(d);
}

IssuedApiKey issueApiKey(const SecretBytes& hashKey) {
    IssuedApiKey out;
    out.id = crypto::randomId(10);
    SecretString secret(crypto::randomId(32));
    std::string body = std::string(kApiKeyPrefix) + out.id + "_" + std::string(secret.view());
    const std::string check = checksum(body);
    out.secretHash = apiKeySecretHash(hashKey, out.id, secret.view());
    out.token = SecretString(body + check);
    std::fill(body.begin(), body.end(), '\0');
    return out;
}

std::optional<PresentedApiKey> parseApiKey(std::string_view token) {
    if (token.size() != kApiKeyPrefix.size() + kIdChars + 1 + kSecretChars + kCheckChars) return std::nullopt;
    if (!token.starts_with(kApiKeyPrefix)) return std::nullopt;
    const std::string_view id = token.substr(kApiKeyPrefix.size(), kIdChars);
    if (token[kApiKeyPrefix.size() + kIdChars] != '_') return std::nullopt;
    const std::string_view secret = token.substr(kApiKeyPrefix.size() + kIdChars + 1, kSecretChars);
    const std::string_view check = token.substr(token.size() - kCheckChars);
    if (!base32(id) || !base32(secret)) return std::nullopt;
    const std::string expected = checksum(token.substr(0, token.size() - kCheckChars));
    if (!crypto::constantTimeEqual(expected.data(), expected.size(), check.data(), check.size())) return std::nullopt;
    return PresentedApiKey{std::string(id), SecretString(std::string(secret))};
}

bool apiKeyMatches(const SecretBytes& hashKey, const store::ApiKey& stored, const PresentedApiKey& given) {
    if (stored.id != given.id) return false;
    const std::string h = apiKeySecretHash(hashKey, given.id, given.secret.view());
    return crypto::constantTimeEqual(h.data(), h.size(), stored.secretHash.data(), stored.secretHash.size());
}

std::vector<std::string> splitScopes(std::string_view scopes) {
    std::vector<std::string> out;
    while (!scopes.empty()) {
        const auto comma = scopes.find(',');
        out.emplace_back(scopes.substr(0, comma));
        if (comma == std::string_view::npos) break;
        scopes.remove_prefix(comma + 1);
    }
    return out;
}

bool hasScope(const store::ApiKey& key, std::string_view scope) {
    const auto list = splitScopes(key.scopes);
    return std::find(list.begin(), list.end(), scope) != list.end();
}

}  // namespace twofactor::http
