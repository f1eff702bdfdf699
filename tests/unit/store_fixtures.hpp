// What the store's test suites start from: a scratch directory, a request,
// and the statements that open a SQLCipher store file from outside.
#pragma once

#include "otp/request.hpp"
#include "util/crypto.hpp"

#include <cstdlib>
#include <filesystem>
#include <string>

namespace twofactor::test {

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/tf-store-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// What opens a SQLCipher store file from outside, as an operator's tool or an
// intruder with the key would: the raw key, then the store's cipher page
// size (twofactord(8)). For sqlite3_exec, which runs both.
inline std::string keyPragmas(const SecretBytes& key) {
    return "PRAGMA key = \"x'" + crypto::hex(key.data(), key.size()) + "'\"; PRAGMA cipher_page_size = 4096";
}

inline otp::OtpRequest sample(const std::string& id, std::int64_t t = 1000) {
    otp::OtpRequest r;
    r.id = id;
    r.app = "shop";
    r.channel = "email";
    r.destination = "a@example.org";
    r.subjectHash = "subj";
    r.purpose = "login";
    r.locale = "en";
    r.codeHash = crypto::sha256(id);
    r.createdAt = r.updatedAt = t;
    r.expiresAt = t + 600;
    return r;
}

}  // namespace twofactor::test
