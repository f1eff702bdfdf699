// Pieces the HTTP provider drivers (SES, WhatsApp) share: loopback checks,
// curl failure classes, header lists and JSON that hold secrets.
#pragma once

#include "channel/channel.hpp"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <string>

namespace twofactor::channel::http {

// Loopback by address only (plus "localhost", which curl resolves itself
// without DNS): a name that merely resolves to 127.0.0.1 today does not
// earn plain http.
[[nodiscard]] bool isLoopbackHost(std::string host);

// nlohmann::json keeps its own copies of the strings; wipe them before the
// object is freed, so the code does not linger in freed heap memory.
void wipeStrings(nlohmann::json& j);

// A curl header list wiped before it is freed (it may hold a token or key).
struct CurlHeaders {
    curl_slist* list = nullptr;
    CurlHeaders() = default;
    CurlHeaders(const CurlHeaders&) = delete;
    CurlHeaders& operator=(const CurlHeaders&) = delete;
    ~CurlHeaders();
    [[nodiscard]] bool add(const std::string& line);
};

// Maps a transfer that failed in curl (no HTTP answer) to a delivery outcome.
// `maybeSent`: the request may have reached the provider (then a retry may
// deliver twice, and the result is marked ambiguous).
void classifyCurl(CURLcode rc, const char* detail, bool maybeSent, DeliveryResult& result);

[[nodiscard]] DeliveryResult permanent(std::string errorClass, std::string error);

}  // namespace twofactor::channel::http
