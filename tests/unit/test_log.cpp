#include "util/log.hpp"

#include <catch2/catch.hpp>

using namespace twofactor;

TEST_CASE("log times are RFC 3339 in UTC", "[log]") {
    CHECK(log::timestamp(0) == "1970-01-01T00:00:00Z");
    CHECK(log::timestamp(1796115600) == "2026-12-01T09:00:00Z");
    CHECK(log::timestamp(951782400) == "2000-02-29T00:00:00Z");
    CHECK(log::timestamp(-1) == "1969-12-31T23:59:59Z");
}
