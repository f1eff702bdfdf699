#include "store/keys.hpp"

#include "util/crypto.hpp"
#include "util/files.hpp"

#include <cstdlib>
#include <stdexcept>

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

SecretBytes loadKey(const std::string& credentialName, const std::string& keyFile, bool generate) {
    if (const char* credDir = std::getenv("CREDENTIALS_DIRECTORY"); credDir && *credDir) {
        const std::string path = std::string(credDir) + "/" + credentialName;
        if (files::exists(path)) {
            SecretString text = files::readCredentialFile(path);
            return parseKey(text.view(), "credential " + credentialName);
        }
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

}  // namespace twofactor::store
