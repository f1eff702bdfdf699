#include "http/problem.hpp"

#include <map>

namespace twofactor::http {

namespace {

std::string_view shortName(std::string_view error) {
    const auto dot = error.rfind('.');
    return dot == std::string_view::npos ? error : error.substr(dot + 1);
}

}  // namespace

int problemStatus(std::string_view error) {
    static const std::map<std::string_view, int> kStatus = {
        {"InvalidParameter", 400},     {"InvalidBody", 400},        {"Unauthorized", 401},
        {"Forbidden", 403},            {"NoSuchApp", 404},          {"NoSuchRequest", 404},
        {"NotFound", 404},             {"NotPending", 409},         {"TooManySends", 409},
        {"IdempotencyKeyInUse", 409},  {"InvalidDestination", 422}, {"ChannelNotAllowed", 422},
        {"OutOfRange", 422},           {"OptedOut", 422},           {"CountryNotAllowed", 422},
        {"Restricted", 422},           {"Suppressed", 422},           {"IdempotencyKeyReused", 422}, {"RateLimited", 429},
        {"DeliveryFailed", 502},       {"Busy", 503},               {"StoreFailed", 503}, {"StoreUnavailable", 503},
        {"AuditFailed", 503},          {"InternalError", 500},
    };
    const auto it = kStatus.find(shortName(error));
    return it == kStatus.end() ? 400 : it->second;
}

Response problem(std::string_view error, const nlohmann::json& parameters, std::string detail, int status) {
    if (status == 0) status = problemStatus(error);
    nlohmann::json body = parameters.is_object() ? parameters : nlohmann::json::object();
    body["type"] = std::string(kProblemTypePrefix) + std::string(error);
    body["title"] = std::string(shortName(error));
    body["status"] = status;
    body["error"] = std::string(error);
    if (!detail.empty()) body["detail"] = std::move(detail);
    Response r;
    r.status = status;
    r.contentType = "application/problem+json";
    r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (status == 429 || status == 503) {
        std::int64_t after = 1;
        if (const auto it = parameters.find("retryAfter"); it != parameters.end() && it->is_number_integer())
            after = std::max<std::int64_t>(1, it->get<std::int64_t>());
        r.headers.emplace_back("Retry-After", std::to_string(after));
    }
    if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
}

}  // namespace twofactor::http
