#include "channel/aws_credentials.hpp"

#include "util/files.hpp"

#include <cstdlib>
#include <stdexcept>

namespace twofactor::channel {

namespace {

std::string trimmed(std::string_view v) {
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
    while (!v.empty() && (v.front() == ' ')) v.remove_prefix(1);
    return std::string(v);
}

// Reads one value from a credential, else a file; "" when neither exists.
std::string readValue(const char* credential, const std::string& file, std::string& source) {
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
        const std::string path = std::string(dir) + "/" + credential;
        if (files::exists(path)) {
            source = "credential";
            return trimmed(files::readCredentialFile(path).view());
        }
    }
    if (!file.empty()) {
        if (!files::exists(file)) throw std::runtime_error(file + " does not exist");
        source = "file";
        return trimmed(files::readSecretFile(file).view());
    }
    return {};
}

}  // namespace

AwsCredentials loadAwsCredentials(const config::Ses& ses) {
    AwsCredentials c;
    std::string source;
    c.accessKeyId = readValue("aws-access-key-id", ses.accessKeyIdFile, source);
    std::string secret = readValue("aws-secret-access-key", ses.secretAccessKeyFile, source);
    std::string token = readValue("aws-session-token", ses.sessionTokenFile, source);
    c.source = source;
    if (c.accessKeyId.empty() && secret.empty()) {
        const char* id = std::getenv("AWS_ACCESS_KEY_ID");
        const char* key = std::getenv("AWS_SECRET_ACCESS_KEY");
        const char* tok = std::getenv("AWS_SESSION_TOKEN");
        if (id && key && *id && *key) {
            c.accessKeyId = id;
            secret = key;
            token = tok ? tok : "";
            c.source = "environment";
        }
    }
    c.secretAccessKey = SecretString(std::move(secret));
    c.sessionToken = SecretString(std::move(token));
    if (c.accessKeyId.empty() || c.secretAccessKey.empty())
        throw std::runtime_error(
            "no AWS credentials for SES: provide the systemd credentials aws-access-key-id and "
            "aws-secret-access-key, the files [ses] access_key_id_file and secret_access_key_file, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    return c;
}

}  // namespace twofactor::channel
