// Column encryption for stores without encryption at rest (community
// PostgreSQL has no TDE): each personal-data value is sealed in the daemon
// with AES-256-GCM, bound through the associated data to its table, column,
// row id and key version, so a value copied to another row or column does
// not open.
#pragma once

#include "util/secret.hpp"

#include <cstdint>
#include <map>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::store::pg {

// Sealed value layout: key version (1 byte), nonce (12), ciphertext, tag (16).
// A sealer holds the keys of several versions: it seals under the current
// one and opens under any it holds, so values sealed before a key rotation
// (or by a node that has not got the new key yet) still open while they are
// resealed. Safe to use from several threads; addKey may run meanwhile.
class ColumnSealer final {
public:
    // The column key is derived from the store key (HMAC-SHA256 with a fixed
    // label), so the nodes of a cluster share it by sharing the store key.
    explicit ColumnSealer(const SecretBytes& storeKey, std::uint8_t keyVersion = 1);
    ColumnSealer(const ColumnSealer&) = delete;
    ColumnSealer& operator=(const ColumnSealer&) = delete;

    // Holds another version's key too; with `current`, seals under it from now on.
    void addKey(const SecretBytes& storeKey, std::uint8_t keyVersion, bool current);
    [[nodiscard]] std::uint8_t currentVersion() const;
    // The key version a sealed value is under; 0 for an empty (blanked) value.
    [[nodiscard]] static std::uint8_t versionOf(std::string_view sealed);

    [[nodiscard]] std::string seal(std::string_view table, std::string_view column, std::string_view rowId,
                                   std::string_view plaintext) const;
    // Throws std::runtime_error when the value does not open under the key of
    // its version for this place (tampered, moved, or under a key not held).
    [[nodiscard]] std::string open(std::string_view table, std::string_view column, std::string_view rowId,
                                   std::string_view sealed) const;

    // A keyed hash (hex HMAC-SHA256 under a key of its own, derived like the
    // column key from the current store key) of an address folded to lower
    // case in ASCII, as SQLite's NOCASE folds it: how a sealed address is
    // found without opening every row.
    [[nodiscard]] std::string blindIndex(std::string_view address) const;
    // The same under every key held, current first: rows indexed before a
    // rotation are found until they are resealed.
    [[nodiscard]] std::vector<std::string> blindIndexes(std::string_view address) const;

    // A public name of a store key (HMAC-SHA256 of a fixed label, hex): how
    // the database records which key is which version without holding it.
    [[nodiscard]] static std::string fingerprint(const SecretBytes& storeKey);

private:
    struct Version {
        SecretBytes column;
        SecretBytes index;
    };
    static Version derive(const SecretBytes& storeKey, std::uint8_t keyVersion);
    static std::string indexWith(const SecretBytes& key, std::string_view address);

    mutable std::shared_mutex mutex_;
    std::map<std::uint8_t, Version> keys_;
    std::uint8_t version_;
};

}  // namespace twofactor::store::pg
