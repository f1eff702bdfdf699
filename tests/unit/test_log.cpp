#include "util/log.hpp"

#include <catch2/catch.hpp>

using namespace twofactor;

TEST_CASE("log times are RFC 3339 in UTC", "[log]") {
    CHECK(log::timestamp(0) == "1970-01-01T00:00:00Z");
    CHECK(log::timestamp(1796115600) == "2026-12-01T09:00:00Z");
    CHECK(log::timestamp(951782400) == "2000-02-29T00:00:00Z");
    CHECK(log::timestamp(-1) == "1969-12-31T23:59:59Z");
}

namespace {
bool hasField(const std::vector<std::string>& fields, const std::string& field) {
    for (const auto& f : fields)
        if (f == field) return true;
    return false;
}
bool hasName(const std::vector<std::string>& fields, const std::string& name) {
    for (const auto& f : fields)
        if (f.rfind(name + "=", 0) == 0) return true;
    return false;
}
}  // namespace

TEST_CASE("journal records carry priority, identifier and the message", "[log][journal]") {
    const auto f = log::journalFields(log::Level::Warning, "rate limit destination", {});
    CHECK(hasField(f, "MESSAGE=rate limit destination"));
    CHECK(hasField(f, "PRIORITY=4"));
    CHECK(hasField(f, "SYSLOG_IDENTIFIER=twofactord"));
    CHECK_FALSE(hasName(f, "MESSAGE_ID"));
    CHECK_FALSE(hasName(f, "TWOFACTOR_REQUEST"));
    CHECK_FALSE(hasName(f, "TWOFACTOR_APP"));
    CHECK(hasField(log::journalFields(log::Level::Error, "x", {}), "PRIORITY=3"));
    CHECK(hasField(log::journalFields(log::Level::Info, "x", {}), "PRIORITY=6"));
    CHECK(hasField(log::journalFields(log::Level::Debug, "x", {}), "PRIORITY=7"));
}

TEST_CASE("alerts, store and audit failures have message ids of their own", "[log][journal]") {
    const std::string alert = log::messageId(log::Event::OperatorAlert);
    const std::string store = log::messageId(log::Event::StoreFailure);
    const std::string audit = log::messageId(log::Event::AuditFailure);
    for (const auto& id : {alert, store, audit}) {
        REQUIRE(id.size() == 32);
        CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
    }
    CHECK(alert != store);
    CHECK(store != audit);
    CHECK(alert != audit);
    CHECK(std::string(log::messageId(log::Event::None)).empty());
    const auto f = log::journalFields(log::Level::Error, "commit failed", {log::Event::StoreFailure, "r1", "shop"});
    CHECK(hasField(f, "MESSAGE_ID=" + store));
    CHECK(hasField(f, "TWOFACTOR_REQUEST=r1"));
    CHECK(hasField(f, "TWOFACTOR_APP=shop"));
}

TEST_CASE("journal fields escape control characters, so no field can forge another", "[log][journal]") {
    const auto f = log::journalFields(log::Level::Info, "a\nMESSAGE_ID=forged\x1b[2J",
                                      {log::Event::None, "id\nPRIORITY=0", "app\r\tx"});
    CHECK(hasField(f, "MESSAGE=a\\nMESSAGE_ID=forged\\x1b[2J"));
    CHECK(hasField(f, "TWOFACTOR_REQUEST=id\\nPRIORITY=0"));
    CHECK(hasField(f, "TWOFACTOR_APP=app\\r\\tx"));
    CHECK_FALSE(hasName(f, "MESSAGE_ID"));
    for (const auto& field : f) CHECK(field.find('\n') == std::string::npos);
}
