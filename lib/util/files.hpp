// Race-free file handling for secrets and the outbox (O_NOFOLLOW, fstat on the fd, rename).
#pragma once

#include "util/secret.hpp"

#include <string>
#include <string_view>

namespace twofactor::files {

// Creates the directory (and missing parents) with `mode`; an existing
// directory is kept as it is. Throws std::runtime_error naming the path.
void ensureDirectory(const std::string& path, unsigned mode);

// Reads a secret file, refusing (std::runtime_error with a message saying how
// to fix it) a symlink, a non-regular file, a file readable or writable by
// group or others, or one not owned by the effective user.
[[nodiscard]] SecretString readSecretFile(const std::string& path);

// Reads a file from $CREDENTIALS_DIRECTORY. systemd makes that directory
// private to the service and hands the files over root-owned with an ACL for
// the service user, so ownership and mode are systemd's business; symlinks
// and non-regular files are still refused.
[[nodiscard]] SecretString readCredentialFile(const std::string& path);

// Refuses (std::runtime_error) a directory that another user owns or that
// group or others may write: a socket placed there could be swapped by them.
void checkPrivateDirectory(const std::string& path);

// Writes `content` to dir/name atomically: a temporary file in `tmpDir`
// (same file system), fsync, rename, fsync of the directory. Mode 0600.
// With exclusive=true an existing target is an error (link instead of rename).
void writeFileAtomic(const std::string& tmpDir, const std::string& dir, const std::string& name,
                     std::string_view content, bool exclusive = false);

[[nodiscard]] bool exists(const std::string& path);
[[nodiscard]] std::string dirName(const std::string& path);

}  // namespace twofactor::files
