#include "store/postgres/sealed.hpp"

#include "util/crypto.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
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

ColumnSealer::ColumnSealer(const SecretBytes& storeKey, std::uint8_t keyVersion) : version_(keyVersion) {
    const auto k = crypto::hmacSha256(storeKey, "twofactor postgresql column key v" + std::to_string(keyVersion));
    key_ = SecretBytes(k.data(), k.size());
    const auto i = crypto::hmacSha256(storeKey, "twofactor postgresql address index v1");
    indexKey_ = SecretBytes(i.data(), i.size());
}

std::string ColumnSealer::blindIndex(std::string_view address) const {
    if (address.empty()) return {};
    std::string folded(address);
    for (char& c : folded)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const auto h = crypto::hex(crypto::hmacSha256(indexKey_, folded));
    std::fill(folded.begin(), folded.end(), '\0');
    return h;
}

std::string ColumnSealer::seal(std::string_view table, std::string_view column, std::string_view rowId,
                               std::string_view plaintext) const {
    const std::string aad = associatedData(table, column, rowId, version_);
    std::string out(1 + kNonce + plaintext.size() + kTag, '\0');
    out[0] = static_cast<char>(version_);
    auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 1);
    crypto::randomBytes(nonce, kNonce);
    auto ctx = newCtx();
    int len = 0;
    auto* body = reinterpret_cast<unsigned char*>(out.data() + 1 + kNonce);
    if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce) != 1 ||
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
    if (version != version_)
        throw std::runtime_error("sealed " + where + " is under key version " + std::to_string(version) +
                                 ", this store has version " + std::to_string(version_));
    const std::string aad = associatedData(table, column, rowId, version);
    const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data() + 1);
    const auto* body = reinterpret_cast<const unsigned char*>(sealed.data() + 1 + kNonce);
    const std::size_t n = sealed.size() - 1 - kNonce - kTag;
    std::string out(n, '\0');
    auto ctx = newCtx();
    int len = 0;
    unsigned char tag[kTag];
    std::copy(body + n, body + n + kTag, tag);
    if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce) != 1 ||
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
