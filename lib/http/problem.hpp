// RFC 9457 problem details for the HTTPS API: the `type` names the same
// error as the Varlink IDL (io.twofactor.Otp.RateLimited ...), with the
// error's parameters as extension members.
#pragma once

#include "http/server.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace twofactor::http {

inline constexpr std::string_view kProblemTypePrefix = "urn:twofactor:error:";

// The HTTP status for an error of the IDL, by its full or short name.
[[nodiscard]] int problemStatus(std::string_view error);
// An application/problem+json response; 429 and 503 carry Retry-After
// (parameters' retryAfter, else 1 s), 401 WWW-Authenticate.
[[nodiscard]] Response problem(std::string_view error, const nlohmann::json& parameters, std::string detail,
                               int status = 0);

}  // namespace twofactor::http
