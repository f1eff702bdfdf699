// What the store's two test suites (the conformance suite and the
// SQLCipher-only one) both start from: a scratch directory and a request.
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
