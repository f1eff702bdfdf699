#include "store/postgres/sealed.hpp"

#include "util/crypto.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace twofactor::store::pg {

namespace {

constexpr std::size_t kNonce = 12, kTag = 16;

std::string associatedData(std::string_view table, std::string_view column, std::string_view rowId,
                           std::uint8_t version) {
    // Length-prefixed, so no two places give the same bytes.
    std::string aad;
    for (std::string_view part : {table, column, rowId}) {
        aad += std::to_string(part.size());
        aad += ':';
        aad += part;
    }
    aad += static_cast<char>(version);
    return aad;
}

using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

Ctx newCtx() {
    Ctx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    if (!ctx) throw std::runtime_error("AES-GCM: out of memory");
    return ctx;
}

}  // namespace

ColumnSealer::Version ColumnSealer::derive(const SecretBytes& storeKey, std::uint8_t keyVersion) {
    const auto k = crypto::hmacSha256(storeKey, "twofactor postgresql column key v" + std::to_string(keyVersion));
    const auto i = crypto::hmacSha256(storeKey, "twofactor postgresql address index v1");
    return Version{SecretBytes(k.data(), k.size()), SecretBytes(i.data(), i.size())};
}

ColumnSealer::ColumnSealer(const SecretBytes& storeKey, std::uint8_t keyVersion) : version_(keyVersion) {
    keys_.emplace(keyVersion, derive(storeKey, keyVersion));
}

void ColumnSealer::addKey(const SecretBytes& storeKey, std::uint8_t keyVersion, bool current) {
    Version v = derive(storeKey, keyVersion);
    std::unique_lock lock(mutex_);
    keys_.insert_or_assign(keyVersion, std::move(v));
    if (current) version_ = keyVersion;
}

std::uint8_t ColumnSealer::currentVersion() const {
    std::shared_lock lock(mutex_);
    return version_;
}

std::uint8_t ColumnSealer::versionOf(std::string_view sealed) {
    return sealed.empty() ? 0 : static_cast<std::uint8_t>(sealed[0]);
}

std::string ColumnSealer::fingerprint(const SecretBytes& storeKey) {
    return crypto::hex(crypto::hmacSha256(storeKey, "twofactor postgresql key fingerprint v1"));
}

std::string ColumnSealer::indexWith(const SecretBytes& key, std::string_view address) {
    if (address.empty()) return {};
    std::string folded(address);
    for (char& c : folded)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const auto h = crypto::hex(crypto::hmacSha256(key, folded));
    std::fill(folded.begin(), folded.end(), '\0');
    return h;
}

std::string ColumnSealer::blindIndex(std::string_view address) const {
    std::shared_lock lock(mutex_);
    return indexWith(keys_.at(version_).index, address);
}

std::vector<std::string> ColumnSealer::blindIndexes(std::string_view address) const {
    std::shared_lock lock(mutex_);
    std::vector<std::string> out{indexWith(keys_.at(version_).index, address)};
    for (const auto& [version, key] : keys_)
        if (version != version_) out.push_back(indexWith(key.index, address));
    return out;
}

std::string ColumnSealer::seal(std::string_view table, std::string_view column, std::string_view rowId,
                               std::string_view plaintext) const {
    std::shared_lock lock(mutex_);
    const std::string aad = associatedData(table, column, rowId, version_);
    const SecretBytes& key = keys_.at(version_).column;
    std::string out(1 + kNonce + plaintext.size() + kTag, '\0');
    out[0] = static_cast<char>(version_);
    auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 1);
    crypto::randomBytes(nonce, kNonce);
    auto ctx = newCtx();
    int len = 0;
    auto* body = reinterpret_cast<unsigned char*>(out.data() + 1 + kNonce);
    if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), body, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                          static_cast<int>(plaintext.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), body + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, body + plaintext.size()) != 1)
        throw std::runtime_error("AES-GCM: sealing a " + std::string(table) + "." + std::string(column) + " failed");
    return out;
}

std::string ColumnSealer::open(std::string_view table, std::string_view column, std::string_view rowId,
                               std::string_view sealed) const {
    const std::string where = std::string(table) + "." + std::string(column) + " of " + std::string(rowId);
    if (sealed.size() < 1 + kNonce + kTag) throw std::runtime_error("sealed " + where + " is too short");
    const auto version = static_cast<std::uint8_t>(sealed[0]);
    std::shared_lock lock(mutex_);
    const auto held = keys_.find(version);
    if (held == keys_.end())
        throw std::runtime_error("sealed " + where + " is under key version " + std::to_string(version) +
                                 ", which this node does not hold (its current version is " +
                                 std::to_string(version_) + "): give it that store key");
    const SecretBytes& key = held->second.column;
    const std::string aad = associatedData(table, column, rowId, version);
    const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + 1);
    const auto* body = reinterpret_cast<const unsigned char*>(sealed.data() + 1 + kNonce);
    const std::size_t n = sealed.size() - 1 - kNonce - kTag;
    std::string out(n, '\0');
    auto ctx = newCtx();
    int len = 0;
    unsigned char tag[kTag];
    std::copy(body + n, body + n + kTag, tag);
    if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1 ||
        EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, body,
                          static_cast<int>(n)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag) != 1 ||
        EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) != 1)
        throw std::runtime_error("sealed " + where + " does not open: tampered, moved, or under another key");
    return out;
}

}  // namespace twofactor::store::pg
