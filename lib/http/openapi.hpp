// The OpenAPI 3.1 document of the HTTPS API (lib/http/openapi.json, embedded
// at build time), served at GET /v1/openapi.json.
#pragma once

#include <string_view>

namespace twofactor::http {

[[nodiscard]] std::string_view openApiDocument();

}  // namespace twofactor::http
