// The two secrets of a twofactord: the store key and the code pepper.
#pragma once

#include "util/secret.hpp"

#include <functional>
#include <string>
#include <vector>

namespace twofactor::store {

inline constexpr std::size_t kKeyBytes = 32;

// Loads a 256-bit key written as 64 hex digits (a trailing newline is fine).
// Sources, in order: $CREDENTIALS_DIRECTORY/<credentialName> (systemd
// LoadCredential=), then `keyFile`, which must be a regular file of mode 0600
// or stricter owned by the effective user. When neither exists and `generate`
// is set, a new random key is written to `keyFile` (mode 0600). Throws
// std::runtime_error saying what is wrong and how to fix it.
[[nodiscard]] SecretBytes loadKey(const std::string& credentialName, const std::string& keyFile, bool generate);

// Whether loadKey takes that key from a systemd credential, which the daemon
// cannot rewrite.
[[nodiscard]] bool keyFromCredential(const std::string& credentialName);

// Parses the hex text of a key file.
[[nodiscard]] SecretBytes parseKey(std::string_view text, const std::string& source);

// Writes a fresh key file (exclusive create, 0600) and returns the key.
SecretBytes generateKeyFile(const std::string& keyFile);

// Key rotation keeps a key file that opens the database at every moment: the
// new key is written to <keyFile>.new (the pending key) before the database is
// rekeyed, renamed over keyFile once the rekey is verified, and removed when
// the rekey did not take effect. A crash in between leaves the pending key for
// recoverPendingKey at the next start.
[[nodiscard]] std::string pendingKeyFile(const std::string& keyFile);

enum class PendingKeyWrite {
    Written,         // <keyFile>.new created (0600), synced with its directory
    AlreadyPending,  // <keyFile>.new exists: another rotation is under way; nothing written
};
// Throws std::runtime_error when the file cannot be written.
[[nodiscard]] PendingKeyWrite writePendingKey(const std::string& keyFile, const SecretBytes& key);
// Renames <keyFile>.new over keyFile (atomic) and syncs the directory. Throws
// std::runtime_error, leaving both files as they were.
void commitPendingKey(const std::string& keyFile);
// Removes <keyFile>.new if it exists.
void discardPendingKey(const std::string& keyFile);

// On PostgreSQL a rotation reseals the columns while other nodes may still
// seal under the old key: the keys a node had before are kept in
// <keyFile>.previous (64 hex digits a line, newest first, mode 0600) and
// still opened, never sealed with.
[[nodiscard]] std::string previousKeysFile(const std::string& keyFile);
// Puts `key` first in <keyFile>.previous (written atomically); throws
// std::runtime_error when it cannot.
void keepPreviousKey(const std::string& keyFile, const SecretBytes& key);
// The keys of <keyFile>.previous, newest first; none when there is no such file.
[[nodiscard]] std::vector<SecretBytes> loadPreviousKeys(const std::string& keyFile);

enum class PendingKeyRecovery {
    None,        // no pending key
    Discarded,   // `key` opens the database: the rotation never took effect; the pending key was removed
    Completed,   // only the pending key opens it: renamed over keyFile and moved into `key`
    Unresolved,  // neither opens it (or the pending key is unreadable): both files left as they are
};
// At start, before the database is opened with `key` (read from keyFile).
// `opens` says whether a key opens the database (true too when there is no
// database yet). Throws std::runtime_error when the rename fails.
[[nodiscard]] PendingKeyRecovery recoverPendingKey(const std::string& keyFile, SecretBytes& key,
                                                   const std::function<bool(const SecretBytes&)>& opens);

}  // namespace twofactor::store
