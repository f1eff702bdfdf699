// Column encryption for stores without encryption at rest (community
// PostgreSQL has no TDE): each personal-data value is sealed in the daemon
// with AES-256-GCM, bound through the associated data to its table, column,
// row id and key version, so a value copied to another row or column does
// not open.
#pragma once

#include "util/secret.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace twofactor::store::pg {

// Sealed value layout: key version (1 byte), nonce (12), ciphertext, tag (16).
class ColumnSealer final {
public:
    // The column key is derived from the store key (HMAC-SHA256 with a fixed
    // label), so the nodes of a cluster share it by sharing the store key.
    explicit ColumnSealer(const SecretBytes& storeKey, std::uint8_t keyVersion = 1);
    ColumnSealer(const ColumnSealer&) = delete;
    ColumnSealer& operator=(const ColumnSealer&) = delete;

    [[nodiscard]] std::string seal(std::string_view table, std::string_view column, std::string_view rowId,
                                   std::string_view plaintext) const;
    // Throws std::runtime_error when the value does not open under this key
    // for this place (tampered, moved, or sealed under another key).
    [[nodiscard]] std::string open(std::string_view table, std::string_view column, std::string_view rowId,
                                   std::string_view sealed) const;

    // A keyed hash (hex HMAC-SHA256 under a key of its own, derived like the
    // column key) of an address folded to lower case in ASCII, as SQLite's
    // NOCASE folds it: how a sealed address is found without opening every row.
    [[nodiscard]] std::string blindIndex(std::string_view address) const;

private:
    SecretBytes key_;
    SecretBytes indexKey_;
    std::uint8_t version_;
};

}  // namespace twofactor::store::pg
