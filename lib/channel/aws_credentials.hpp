// AWS credentials for SES (API and SMTP), never logged, never in errors.
#pragma once

#include "config/config.hpp"
#include "util/secret.hpp"

#include <string>

namespace twofactor::channel {

struct AwsCredentials {
    std::string accessKeyId;
    SecretString secretAccessKey;
    SecretString sessionToken;  // empty for long-term keys
    std::string source;         // where they came from, for logs: "credential", "file", "environment"
};

// In order: $CREDENTIALS_DIRECTORY/aws-access-key-id + aws-secret-access-key
// (+ aws-session-token); the files named in [ses] (same owner/mode rules as
// key files); the environment AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
// AWS_SESSION_TOKEN. Throws std::runtime_error saying what is missing (never a value).
[[nodiscard]] AwsCredentials loadAwsCredentials(const config::Ses& ses);

}  // namespace twofactor::channel
