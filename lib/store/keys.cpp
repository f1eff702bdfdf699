#include "store/keys.hpp"

#include "util/crypto.hpp"
#include "util/files.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>

namespace twofactor::store {

SecretBytes parseKey(std::string_view text, const std::string& source) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    SecretBytes key;
    if (text.size() != kKeyBytes * 2 || !crypto::unhex(text, key))
        throw std::runtime_error(source + " must hold a 256-bit key as 64 hex digits; create one with: "
                                          "(umask 077; openssl rand -hex 32 > FILE)");
    return key;
}

SecretBytes generateKeyFile(const std::string& keyFile) {
    const std::string dir = files::dirName(keyFile);
    files::ensureDirectory(dir, 0700);
    SecretBytes key = crypto::randomSecret(kKeyBytes);
    SecretString text(crypto::hex(key.data(), key.size()) + "\n");
    const auto slash = keyFile.find_last_of('/');
    files::writeFileAtomic(dir, dir, keyFile.substr(slash + 1), text.view(), /*exclusive=*/true);
    return key;
}

namespace {

// $CREDENTIALS_DIRECTORY/<name>, or empty when no such credential was passed.
std::string credentialPath(const std::string& credentialName) {
    const char* credDir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!credDir || !*credDir) return {};
    std::string path = std::string(credDir) + "/" + credentialName;
    return files::exists(path) ? path : std::string();
}

void syncDirectoryOf(const std::string& path) {
    const int fd = ::open(files::dirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

bool keyFromCredential(const std::string& credentialName) { return !credentialPath(credentialName).empty(); }

SecretBytes loadKey(const std::string& credentialName, const std::string& keyFile, bool generate) {
    if (const std::string path = credentialPath(credentialName); !path.empty()) {
        SecretString text = files::readCredentialFile(path);
        return parseKey(text.view(), "credential " + credentialName);
    }
    if (keyFile.empty()) throw std::runtime_error("no key file configured for " + credentialName);
    if (!files::exists(keyFile)) {
        if (!generate)
            throw std::runtime_error(keyFile + " does not exist; create it with: (umask 077; openssl rand -hex 32 > " +
                                     keyFile + "), or provide the systemd credential " + credentialName);
        return generateKeyFile(keyFile);
    }
    SecretString text = files::readSecretFile(keyFile);
    return parseKey(text.view(), keyFile);
}

std::string pendingKeyFile(const std::string& keyFile) { return keyFile + ".new"; }

PendingKeyWrite writePendingKey(const std::string& keyFile, const SecretBytes& key) {
    const std::string pending = pendingKeyFile(keyFile);
    if (files::exists(pending)) return PendingKeyWrite::AlreadyPending;
    const std::string dir = files::dirName(pending);
    SecretString text(crypto::hex(key.data(), key.size()) + "\n");
    try {
        const std::string name = pending.substr(pending.find_last_of('/') + 1);
        files::writeFileAtomic(dir, dir, name, text.view(), /*exclusive=*/true);
    } catch (const std::runtime_error&) {
        // Created by a concurrent rotation between the check and the link.
        if (files::exists(pending)) return PendingKeyWrite::AlreadyPending;
        throw;
    }
    return PendingKeyWrite::Written;
}

void commitPendingKey(const std::string& keyFile) {
    const std::string pending = pendingKeyFile(keyFile);
    if (::rename(pending.c_str(), keyFile.c_str()) != 0)
        throw std::runtime_error("cannot rename " + pending + " to " + keyFile + ": " + std::strerror(errno));
    syncDirectoryOf(keyFile);
}

void discardPendingKey(const std::string& keyFile) {
    const std::string pending = pendingKeyFile(keyFile);
    if (::unlink(pending.c_str()) == 0) syncDirectoryOf(pending);
}

std::string previousKeysFile(const std::string& keyFile) { return keyFile + ".previous"; }

void keepPreviousKey(const std::string& keyFile, const SecretBytes& key) {
    const std::string file = previousKeysFile(keyFile);
    SecretString text(crypto::hex(key.data(), key.size()) + "\n");
    if (files::exists(file)) {
        // Kept already (a rotation that wrote it and then stopped): nothing to add.
        for (const auto& k : loadPreviousKeys(keyFile))
            if (crypto::constantTimeEqual(k.data(), k.size(), key.data(), key.size())) return;
        SecretString old = files::readSecretFile(file);
        std::string both;
        both.reserve(text.view().size() + old.view().size());  // one buffer, moved into the holder
        both.append(text.view()).append(old.view());
        text = SecretString(std::move(both));
    }
    const std::string dir = files::dirName(file);
    files::writeFileAtomic(dir, dir, file.substr(file.find_last_of('/') + 1), text.view());
}

std::vector<SecretBytes> loadPreviousKeys(const std::string& keyFile) {
    const std::string file = previousKeysFile(keyFile);
    std::vector<SecretBytes> out;
    if (!files::exists(file)) return out;
    SecretString text = files::readSecretFile(file);
    std::string_view rest = text.view();
    int line = 0;
    while (!rest.empty()) {
        const std::size_t nl = rest.find('\n');
        const std::string_view one = rest.substr(0, nl);
        ++line;
        if (!one.empty()) out.push_back(parseKey(one, file + " line " + std::to_string(line)));
        if (nl == std::string_view::npos) break;
        rest.remove_prefix(nl + 1);
    }
    return out;
}

PendingKeyRecovery recoverPendingKey(const std::string& keyFile, SecretBytes& key,
                                     const std::function<bool(const SecretBytes&)>& opens) {
    const std::string pending = pendingKeyFile(keyFile);
    if (!files::exists(pending)) return PendingKeyRecovery::None;
    if (opens(key)) {
        discardPendingKey(keyFile);
        return PendingKeyRecovery::Discarded;
    }
    SecretBytes pendingKey;
    try {
        SecretString text = files::readSecretFile(pending);
        pendingKey = parseKey(text.view(), pending);
    } catch (const std::runtime_error&) {
        return PendingKeyRecovery::Unresolved;
    }
    if (!opens(pendingKey)) return PendingKeyRecovery::Unresolved;
    commitPendingKey(keyFile);
    key = std::move(pendingKey);
    return PendingKeyRecovery::Completed;
}

}  // namespace twofactor::store
