#include "channel/curl_util.hpp"

#include <algorithm>
#include <cctype>

namespace twofactor::channel {

void curlGlobalInit() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

PooledCurl::~PooledCurl() {
    if (handle_) pool_->release(handle_);
}

CurlHandlePool::~CurlHandlePool() {
    for (CURL* h : idle_) curl_easy_cleanup(h);
}

PooledCurl CurlHandlePool::acquire() {
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            CURL* h = idle_.back();
            idle_.pop_back();
            curl_easy_reset(h);
            return PooledCurl(*this, h);
        }
    }
    curlGlobalInit();
    return PooledCurl(*this, curl_easy_init());
}

void CurlHandlePool::release(CURL* handle) {
    std::lock_guard lock(mutex_);
    if (idle_.size() >= 64) {
        curl_easy_cleanup(handle);
        return;
    }
    idle_.push_back(handle);
}

std::string urlScheme(const std::string& url) {
    const auto colon = url.find("://");
    if (colon == std::string::npos) return "";
    std::string scheme = url.substr(0, colon);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return scheme;
}

bool applyTransportPolicy(CURL* curl, const std::string& url, const config::Tls& tls,
                          const std::vector<std::string>& allowedSchemes, std::string& error) {
    const std::string scheme = urlScheme(url);
    if (std::find(allowedSchemes.begin(), allowedSchemes.end(), scheme) == allowedSchemes.end()) {
        error = "URL scheme '" + scheme + "' is not allowed here";
        return false;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, scheme.c_str());
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, scheme.c_str());
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    const long minVersion = tls.minVersion == "1.3" ? static_cast<long>(CURL_SSLVERSION_TLSv1_3)
                                                    : static_cast<long>(CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, minVersion | static_cast<long>(CURL_SSLVERSION_MAX_DEFAULT));
    if (!tls.caBundle.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, tls.caBundle.c_str());
    return true;
}

}  // namespace twofactor::channel
