// Every statement the store runs, through EXPLAIN QUERY PLAN on a database
// with the full schema: a per-call statement must not scan a table that grows
// with traffic, so the daemon costs the same per call on a large store as on
// a new one. The statements are found by reading lib/store/sqlcipher/schema.hpp (the
// build lists its constants, tests/unit/list_statements.py): one added there
// is checked as per-call unless it is named below as an exception, and SQL
// written anywhere else in lib/store/ fails the test.
#include "store/sqlcipher/schema.hpp"

#include "query_plan_check.hpp"
#include "query_plan_statements.inc"

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace sql = twofactor::store::sql;
namespace fs = std::filesystem;

namespace {

// Tables that do not grow with traffic: a scan of them costs the same on any store.
const std::map<std::string, std::string> kSmallTables = {
    {"apps", "one row per app the configuration ever named"},
    {"api_keys", "one row per API key an admin created"},
    {"event_endpoints", "one row per app whose event endpoint ever failed"},
    {"audit_gate", "exactly one row"},
    {"subject_flags", "one row per data subject who restricted processing or objected"},
    {"privacy_requests", "one row per data-subject request the DPO registered"},
    {"retention_runs", "one row per retention run (daily)"},
};

// Statements that may scan, and why. Everything else is per-call.
const std::map<std::string, std::string> kMayScan = {
    {"kSelectAudit", "operator listing (twofactor audit list), filters optional; pages by seq, stops after ?7 rows"},
    {"kSelectDeliveries",
     "operator listing without a request id (twofactor deliveries), newest first, stops after ?4 rows"},
    {"kSelectRequestLog", "operator listing (twofactor calls), newest first, stops after ?3 rows"},
    {"kListDeliveryJobs",
     "operator listing (twofactor deliveries), soonest due first through delivery_jobs_due, stops after ?1 rows"},
    {"kListOptOuts", "operator listing (twofactor optout list), up to ?1 rows"},
    {"kListSuppressions",
     "operator listing (twofactor suppression list): newest first through email_suppressions_by_time, up to ?1 rows"},
    {"kSelectEventAttempts",
     "operator listing (twofactor events deliveries) without an event id, newest first, stops after ?3 rows"},
    {"kListLeases", "operator listing (twofactor cluster status): one row per singleton, never per call"},
    {"kEraseSubject[8]",
     "GDPR erasure (dpo, rare): rate counter keys end in the subject hash; the table holds one day of counters"},
    {"kEraseSubject[9]",
     "GDPR erasure (dpo, rare): the hash may be a fraud set's key or member; the table holds one window of sends"},
    {"kPurge[6].count[0]",
     "retention dry run (subject failures): counts every row that qualifies, once per run"},
    {"kPurge[6].purge[0]",
     "retention (subject failures): rows are few (failed verifies), and the ones deleted leave the scan"},
};

// SQL that lib/store/ may run without it living in schema.hpp (no table of the schema).
const std::set<std::string> kSqlOutsideSchema = {
    "SELECT count(*) FROM sqlite_master",
};

using twofactor::test::plans::Entry;
using twofactor::test::plans::joined;

std::vector<Entry> allStatements(std::vector<std::string>& unknown) {
    (void)unknown;  // used only when schema.hpp declares something unknown
    std::vector<Entry> out;
#define TF_STATEMENT(n) out.push_back({#n, sql::n});
#define TF_STATEMENT_ARRAY(n)                                                              \
    if (std::string(#n) != "kMigrations")                                                  \
        for (std::size_t i = 0; i < std::size(sql::n); ++i)                                \
            out.push_back({std::string(#n) + "[" + std::to_string(i) + "]", sql::n[i]});
#define TF_PURGE_ARRAY(n)                                                                                    \
    for (std::size_t i = 0; i < std::size(sql::n); ++i)                                                      \
        for (std::size_t k = 0; k < 4; ++k) {                                                                \
            const std::string at = std::string(#n) + "[" + std::to_string(i) + "]";                          \
            if (sql::n[i].purge[k]) out.push_back({at + ".purge[" + std::to_string(k) + "]", sql::n[i].purge[k]}); \
            if (sql::n[i].count[k]) out.push_back({at + ".count[" + std::to_string(k) + "]", sql::n[i].count[k]}); \
        }
#define TF_UNKNOWN(n, type) unknown.push_back(std::string(#n) + " (" + type + ")");
    TF_ALL_STATEMENTS
#undef TF_STATEMENT
#undef TF_STATEMENT_ARRAY
#undef TF_PURGE_ARRAY
#undef TF_UNKNOWN
    return out;
}

struct Db {
    Db() {
        REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
        for (const char* m : sql::kMigrations) {
            char* err = nullptr;
            const int rc = sqlite3_exec(db, m, nullptr, nullptr, &err);
            INFO((err ? err : ""));
            sqlite3_free(err);
            REQUIRE(rc == SQLITE_OK);
        }
    }
    ~Db() { sqlite3_close(db); }
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    sqlite3* db = nullptr;
};

// The plan's lines ("SEARCH TABLE requests USING INDEX ..."), or the error.
std::vector<std::string> explain(sqlite3* db, const char* text, std::string& error) {
    std::vector<std::string> lines;
    sqlite3_stmt* s = nullptr;
    const std::string q = std::string("EXPLAIN QUERY PLAN ") + text;
    const char* tail = nullptr;
    if (sqlite3_prepare_v2(db, q.c_str(), -1, &s, &tail) != SQLITE_OK) {
        error = sqlite3_errmsg(db);
        return lines;
    }
    if (tail && std::string(tail).find_first_not_of(" \t\n;") != std::string::npos)
        error = "more than one statement in one string";
    while (sqlite3_step(s) == SQLITE_ROW) {
        const auto* d = sqlite3_column_text(s, 3);
        lines.emplace_back(d ? reinterpret_cast<const char*>(d) : "");
    }
    sqlite3_finalize(s);
    return lines;
}

// The growing tables a plan scans in full.
std::vector<std::string> scannedTables(const std::vector<std::string>& plan) {
    static const std::regex scan(R"(^SCAN TABLE (\w+))");
    std::vector<std::string> out;
    for (const auto& line : plan) {
        std::smatch m;
        if (std::regex_search(line, m, scan) && !kSmallTables.count(m[1].str())) out.push_back(m[1].str());
    }
    return out;
}

// This backend's part of the check.
twofactor::test::plans::Backend backend(sqlite3* db) {
    return {[db](const char* sql, std::string& error) { return explain(db, sql, error); }, scannedTables,
            [](const std::string& name) {
                const auto it = kMayScan.find(name);
                return it == kMayScan.end() ? std::string() : it->second;
            }};
}

std::string readFile(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("no per-call statement scans a table that grows with traffic", "[store][plans]") {
    Db db;
    std::vector<std::string> unknown;
    const auto statements = allStatements(unknown);
    twofactor::test::plans::checkSchema(
        backend(db.db), statements, unknown,
        {"kInsertRequest", "kSelectRequest", "kApproveRequest", "kCountFraudMembers", "kInsertAudit"}, kMayScan);
}

TEST_CASE("the check fails when a per-call statement loses its index", "[store][plans]") {
    Db db;
    std::vector<std::string> unknown;
    const auto statements = allStatements(unknown);
    REQUIRE(twofactor::test::plans::violations(backend(db.db), statements, false).empty());
    REQUIRE(sqlite3_exec(db.db, "DROP INDEX requests_by_subject", nullptr, nullptr, nullptr) == SQLITE_OK);
    const auto bad = twofactor::test::plans::violations(backend(db.db), statements, false);
    INFO(joined(bad));
    CHECK(std::find(bad.begin(), bad.end(), "kSelectNewestPending: scans table requests") != bad.end());
}

TEST_CASE("lib/store/ writes its SQLite SQL only in sqlcipher/schema.hpp", "[store][plans]") {
    // A string literal that starts like a statement, anywhere in lib/store/ but the SQLCipher
    // schema (another backend keeps its own SQL in its own folder, checked by its own suite).
    static const std::regex literal(R"re("((SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH)\s+\w[^"]*)")re",
                                    std::regex::icase);
    std::vector<std::string> found;
    const fs::path root = fs::path(TWOFACTOR_SOURCE_DIR) / "lib" / "store";
    for (const auto& f : fs::recursive_directory_iterator(root)) {
        if (!f.is_regular_file() || f.path() == root / "sqlcipher" / "schema.hpp") continue;
        if (f.path().parent_path() != root && f.path().parent_path() != root / "sqlcipher") continue;
        const std::string text = readFile(f.path());
        for (std::sregex_iterator it(text.begin(), text.end(), literal), end; it != end; ++it)
            if (!kSqlOutsideSchema.count((*it)[1].str()))
                found.push_back(f.path().filename().string() + ": " + (*it)[1].str());
    }
    INFO("move these into lib/store/sqlcipher/schema.hpp, where the query-plan test sees them:\n" << joined(found));
    CHECK(found.empty());
}
