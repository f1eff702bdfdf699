// [ses.notifications]: SES bounces and complaints through Amazon SNS.
#include "config/sections.hpp"
#include "config/validators.hpp"

#include <regex>

namespace twofactor::config::detail {

namespace {

// arn:PARTITION:sns:REGION:ACCOUNT:TOPIC, as SNS names a topic.
bool validTopicArn(const std::string& arn) {
    static const std::regex kArn(R"(arn:aws(-cn|-us-gov)?:sns:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?)");
    return std::regex_match(arn, kArn);
}

}  // namespace

void readSesNotifications(const Reader& reader, const toml::table& t, SesNotifications& sns) {
    const std::string s = "ses.notifications";
    reader.allowOnly(t, s,
                     {"enabled", "path", "topic_arns", "certificate_file", "certificate_dir", "fetch_certificates",
                      "ca_file", "subscribe_url_base"});
    const toml::node* enabled = t.get("enabled");
    if (enabled != nullptr) sns.enabled = reader.boolean(*enabled, s + ".enabled");
    if (const toml::node* n = t.get("path")) {
        sns.path = reader.string(*n, s + ".path");
        if (sns.path.empty() || sns.path[0] != '/' || sns.path.find_first_of(" ?#") != std::string::npos ||
            hasControl(sns.path))
            reader.fail(*n, s + ".path", "must start with '/' and hold no spaces, control characters, '?' or '#'");
    }
    if (const toml::node* n = t.get("topic_arns")) {
        sns.topicArns = reader.stringArray(*n, s + ".topic_arns");
        for (const auto& arn : sns.topicArns)
            if (!validTopicArn(arn))
                reader.fail(*n, s + ".topic_arns",
                            "\"" + arn + "\" is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)");
    }
    if (const toml::node* n = t.get("certificate_file")) sns.certificateFile = reader.absolutePath(*n, s + ".certificate_file");
    if (const toml::node* n = t.get("certificate_dir")) sns.certificateDir = reader.absolutePath(*n, s + ".certificate_dir");
    if (const toml::node* n = t.get("fetch_certificates"))
        sns.fetchCertificates = reader.boolean(*n, s + ".fetch_certificates");
    if (const toml::node* n = t.get("ca_file")) sns.caFile = reader.absolutePath(*n, s + ".ca_file");
    if (const toml::node* n = t.get("subscribe_url_base")) {
        sns.subscribeUrlBase = reader.string(*n, s + ".subscribe_url_base");
        if (!(sns.subscribeUrlBase.starts_with("http://") || sns.subscribeUrlBase.starts_with("https://")) ||
            sns.subscribeUrlBase.find_first_of(" ?#") != std::string::npos || hasControl(sns.subscribeUrlBase))
            reader.fail(*n, s + ".subscribe_url_base", "must be an http:// or https:// base URL without query");
        while (sns.subscribeUrlBase.ends_with('/')) sns.subscribeUrlBase.pop_back();
    }
    if (!sns.enabled) return;
    if (sns.topicArns.empty())
        reader.fail(*enabled, s + ".topic_arns",
                    "is required by enabled = true: only messages of these topics are accepted");
    if (sns.certificateFile.empty() && sns.certificateDir.empty() && !sns.fetchCertificates)
        reader.fail(*enabled, s + ".certificate_file",
                    "or certificate_dir is required by enabled = true (or fetch_certificates = true): the signing "
                    "certificate every message is verified with");
    if (sns.fetchCertificates && sns.certificateDir.empty())
        reader.fail(*enabled, s + ".certificate_dir", "is required by fetch_certificates = true: fetched certificates are kept there");
}

}  // namespace twofactor::config::detail
