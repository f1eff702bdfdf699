#include "channel/http_common.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <string>

namespace twofactor::channel::http {

bool isLoopbackHost(std::string host) {
    if (host == "localhost") return true;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

void wipeStrings(nlohmann::json& j) {
    if (j.is_string()) {
        auto& s = j.get_ref<std::string&>();
        if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
        s.clear();
    } else if (j.is_structured()) {
        for (auto& item : j) wipeStrings(item);
    }
}

CurlHeaders::~CurlHeaders() {
    for (curl_slist* p = list; p != nullptr; p = p->next)
        if (p->data) OPENSSL_cleanse(p->data, std::char_traits<char>::length(p->data));
    curl_slist_free_all(list);
}

bool CurlHeaders::add(const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (next == nullptr) return false;
    list = next;
    return true;
}

void classifyCurl(CURLcode rc, const char* detail, bool maybeSent, DeliveryResult& result) {
    result.error = (detail && *detail) ? detail : curl_easy_strerror(rc);
    switch (rc) {
        case CURLE_OPERATION_TIMEDOUT:
            result.outcome = DeliveryOutcome::Retryable;
            result.errorClass = "timeout";
            // SES and Graph take no idempotency key: a request that went out may have been delivered.
            result.ambiguous = maybeSent;
            return;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
            result.outcome = DeliveryOutcome::Retryable;
            result.errorClass = "network";
            return;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            // Certificates and CA bundles do not fix themselves within a request's lifetime.
            result.outcome = DeliveryOutcome::Permanent;
            result.errorClass = "config";
            return;
        default:
            // Send/receive failures, a dropped connection, a TLS handshake failure.
            result.outcome = DeliveryOutcome::Retryable;
            result.errorClass = "network";
            result.ambiguous = maybeSent;
            return;
    }
}

DeliveryResult permanent(std::string errorClass, std::string error) {
    DeliveryResult r;
    r.outcome = DeliveryOutcome::Permanent;
    r.errorClass = std::move(errorClass);
    r.error = std::move(error);
    return r;
}

}  // namespace twofactor::channel::http
