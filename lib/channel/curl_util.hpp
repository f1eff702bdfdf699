// libcurl pieces the HTTP and SMTP drivers share: one global init, a pool of
// easy handles (each keeps its connection cache, so connections are reused),
// and TLS settings that never loosen verification.
#pragma once

#include "config/config.hpp"

#include <curl/curl.h>

#include <mutex>
#include <string>
#include <vector>

namespace twofactor::channel {

// Calls curl_global_init once, before any thread uses curl (the daemon calls
// it at start; drivers call it again harmlessly).
void curlGlobalInit();

// A handle borrowed from the pool, returned (reset, connections kept) on destruction.
class CurlHandlePool;
class PooledCurl {
public:
    PooledCurl(CurlHandlePool& pool, CURL* handle) : pool_(&pool), handle_(handle) {}
    PooledCurl(const PooledCurl&) = delete;
    PooledCurl& operator=(const PooledCurl&) = delete;
    PooledCurl(PooledCurl&& o) noexcept : pool_(o.pool_), handle_(o.handle_) { o.handle_ = nullptr; }
    ~PooledCurl();
    CURL* get() const { return handle_; }

private:
    CurlHandlePool* pool_;
    CURL* handle_;
};

class CurlHandlePool {
public:
    CurlHandlePool() = default;
    CurlHandlePool(const CurlHandlePool&) = delete;
    CurlHandlePool& operator=(const CurlHandlePool&) = delete;
    ~CurlHandlePool();
    // A handle with curl_easy_reset applied (options cleared, connection cache kept).
    [[nodiscard]] PooledCurl acquire();

private:
    friend class PooledCurl;
    void release(CURL* handle);
    std::mutex mutex_;
    std::vector<CURL*> idle_;
};

// Applies the site's TLS policy and restricts protocols to the URL's own
// scheme (so an https endpoint can never be downgraded or redirected to
// another protocol, and a test's http://127.0.0.1 stays http). Returns false
// with `error` set when the URL's scheme is not in `allowedSchemes`.
[[nodiscard]] bool applyTransportPolicy(CURL* curl, const std::string& url, const config::Tls& tls,
                                        const std::vector<std::string>& allowedSchemes, std::string& error);

// The scheme of a URL in lower case ("https"), or "".
[[nodiscard]] std::string urlScheme(const std::string& url);

}  // namespace twofactor::channel
