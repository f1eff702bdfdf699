// Every statement the PostgreSQL store runs, through EXPLAIN on a database
// with the full schema, as test_query_plans.cpp does for SQLCipher: a
// per-call statement must not scan a table that grows with traffic. The
// statements are found by reading lib/store/postgres/schema.hpp (the build
// lists its constants, tests/unit/list_statements.py).
//
// The tables are empty, and on empty tables the planner prefers a
// sequential scan to any index; so every statement is planned with
// enable_seqscan off (a scan is then chosen only where no index can serve)
// and as a generic plan (plan_cache_mode), the plan a prepared statement
// runs with whatever its parameters. Runs under tests/pg/pg_server.py.
#include "store/postgres/schema.hpp"

#include "query_plan_check.hpp"
#include "query_plan_statements_postgresql.inc"

#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace pg = twofactor::store::pg;

namespace {

// Tables that do not grow with traffic: a scan of them costs the same on any store.
const std::map<std::string, std::string> kSmallTables = {
    {"apps", "one row per app the configuration ever named"},
    {"api_keys", "one row per API key an admin created"},
    {"event_endpoints", "one row per app whose event endpoint ever failed"},
    {"audit_chains", "about one row per audited transaction the nodes had open at once"},
    {"subject_flags", "one row per data subject who restricted processing or objected"},
    {"privacy_requests", "one row per data-subject request the DPO registered"},
    {"retention_runs", "one row per retention run (daily)"},
    {"nodes", "one row per node heard from in the last ten minutes"},
    {"leases", "one row per cluster-wide singleton"},
    {"seal_keys", "one row per store-key version"},
    {"twofactor_schema", "exactly one row"},
};

// Statements that may scan, and why. Everything else is per-call.
const std::map<std::string, std::string> kMayScan = {
    {"kSelectAudit", "operator listing (twofactor audit list, export), filters optional, stops after $6 rows"},
    {"kSelectAuditNewest", "operator listing (twofactor audit list), newest first, stops after $6 rows"},
    {"kSelectDeliveries", "operator listing without a request id (twofactor deliveries), stops after the limit"},
    {"kSelectRequestLog", "operator listing (twofactor calls), newest first by id, stops after $3 rows"},
    {"kListDeliveryJobs", "operator listing (twofactor deliveries, cluster status), stops after the limit"},
    {"kListOptOuts", "operator listing (twofactor optout list), up to the limit"},
    {"kListSuppressions", "operator listing (twofactor suppression list), up to the limit"},
    {"kSelectEventAttempts", "operator listing (twofactor events deliveries) without an event id, up to the limit"},
    {"kListLeases", "operator listing (twofactor cluster status)"},
};

// Prefixes of names that are not per call at all, and why: a whole class.
const std::vector<std::pair<std::string, std::string>> kMayScanPrefix = {
    {"kPurge[", "retention, batched (at most $2 rows a batch), once per scheduled run"},
    {"kEraseSubject[", "GDPR erasure (dpo, rare)"},
    {"kReseal[", "key rotation: reseals every row in batches, by primary key, rare"},
    {"kCountOldSealed", "key rotation: counts the values left under an older key once a pass is done, rare"},
    {"kSelectBreach", "breach report (dpo, rare): every affected row in a time window, paged"},
};

using twofactor::test::plans::Entry;
using twofactor::test::plans::joined;

std::vector<Entry> allStatements(std::vector<std::string>& unknown) {
    (void)unknown;  // used only when schema.hpp declares something unknown
    std::vector<Entry> out;
#define TF_STATEMENT(n) out.push_back({#n, pg::n});
#define TF_STATEMENT_ARRAY(n)                                                              \
    if (std::string(#n) != "kMigrations")                                                  \
        for (std::size_t i = 0; i < std::size(pg::n); ++i)                                 \
            out.push_back({std::string(#n) + "[" + std::to_string(i) + "]", pg::n[i]});
#define TF_PURGE_ARRAY(n)                                                                                    \
    for (std::size_t i = 0; i < std::size(pg::n); ++i)                                                       \
        for (std::size_t k = 0; k < 4; ++k) {                                                                \
            const std::string at = std::string(#n) + "[" + std::to_string(i) + "]";                          \
            if (pg::n[i].purge[k]) out.push_back({at + ".purge[" + std::to_string(k) + "]", pg::n[i].purge[k]}); \
            if (pg::n[i].count[k]) out.push_back({at + ".count[" + std::to_string(k) + "]", pg::n[i].count[k]}); \
        }
#define TF_ERASE_ARRAY(n)                                   \
    for (std::size_t i = 0; i < std::size(pg::n); ++i)      \
        out.push_back({std::string(#n) + "[" + std::to_string(i) + "]", pg::n[i].sql});
#define TF_RESEAL_ARRAY(n)                                                                         \
    for (std::size_t i = 0; i < std::size(pg::n); ++i) {                                           \
        const std::string at = std::string(#n) + "[" + std::to_string(i) + "]";                    \
        out.push_back({at + ".select", pg::n[i].select});                                          \
        out.push_back({at + ".update", pg::n[i].update});                                          \
    }
#define TF_UNKNOWN(n, type) unknown.push_back(std::string(#n) + " (" + type + ")");
    TF_ALL_STATEMENTS
#undef TF_STATEMENT
#undef TF_STATEMENT_ARRAY
#undef TF_PURGE_ARRAY
#undef TF_ERASE_ARRAY
#undef TF_RESEAL_ARRAY
#undef TF_UNKNOWN
    return out;
}

std::string dsnFromEnv() {
    const char* f = std::getenv("TWOFACTOR_TEST_PG_DSN_FILE");
    if (!f || !*f) return {};
    std::ifstream in(f);
    std::string dsn;
    std::getline(in, dsn);
    return dsn;
}

// A connection to an empty database with the whole schema, planning as described above.
struct Db {
    Db() {
        const std::string dsn = dsnFromEnv();
        REQUIRE_FALSE(dsn.empty());
        c = PQconnectdb(dsn.c_str());
        REQUIRE(PQstatus(c) == CONNECTION_OK);
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
        exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
        exec(pg::kCreateVersionTable);
        for (const char* m : pg::kMigrations) exec(m);
        exec("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan");
    }
    ~Db() { PQfinish(c); }
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    void exec(const std::string& sql) {
        PGresult* r = PQexec(c, sql.c_str());
        const auto st = PQresultStatus(r);
        INFO(sql.substr(0, 200) << ": " << PQresultErrorMessage(r));
        PQclear(r);
        REQUIRE((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK));
    }
    PGconn* c = nullptr;
};

// The plan's lines, or the error: prepared (the types inferred as the store's
// connections infer them), then EXPLAIN EXECUTE with a NULL per parameter.
std::vector<std::string> explain(PGconn* c, const char* text, std::string& error) {
    std::vector<std::string> lines;
    PGresult* r = PQprepare(c, "q", text, 0, nullptr);
    const bool prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!prepared) error = PQresultErrorMessage(r);
    PQclear(r);
    if (!prepared) return lines;
    r = PQdescribePrepared(c, "q");
    const int params = PQnparams(r);
    PQclear(r);
    std::string q = "EXPLAIN (COSTS OFF) EXECUTE q";
    for (int i = 0; i < params; ++i) q += i ? ", NULL" : "(NULL";
    if (params > 0) q += ")";
    r = PQexec(c, q.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
    for (int i = 0; i < PQntuples(r); ++i) lines.emplace_back(PQgetvalue(r, i, 0));
    PQclear(r);
    PQclear(PQexec(c, "DEALLOCATE q"));
    return lines;
}

// The growing tables a plan reads in full: a sequential scan, or (with
// sequential scans off, the planner's way around them) an index read from
// end to end, which has no Index Cond among its node's details.
std::vector<std::string> scannedTables(const std::vector<std::string>& plan) {
    static const std::regex seq(R"(Seq Scan on (\w+))");
    static const std::regex index(R"((Index Scan|Index Only Scan)(?: Backward)? using (\w+) on (\w+))");
    static const std::regex bitmap(R"(Bitmap Index Scan on (\w+))");
    const auto indent = [](const std::string& l) { return l.find_first_not_of(" ->"); };
    std::vector<std::string> out;
    for (std::size_t i = 0; i < plan.size(); ++i) {
        const std::string& line = plan[i];
        std::smatch m;
        if (std::regex_search(line, m, seq)) {
            if (!kSmallTables.count(m[1].str())) out.push_back(m[1].str());
            continue;
        }
        std::string table, idx;
        if (std::regex_search(line, m, index)) {
            idx = m[2].str();
            table = m[3].str();
        } else if (std::regex_search(line, m, bitmap)) {
            idx = m[1].str();
            table = idx;  // the heap scan above names the table; the index names it well enough
        } else {
            continue;
        }
        if (kSmallTables.count(table)) continue;
        bool bounded = false;
        for (std::size_t k = i + 1; k < plan.size() && indent(plan[k]) > indent(line) &&
                                    plan[k].find("->") == std::string::npos;
             ++k)
            bounded = bounded || plan[k].find("Index Cond:") != std::string::npos;
        if (!bounded) out.push_back(table + " (all of index " + idx + ")");
    }
    return out;
}

std::string mayScan(const std::string& name) {
    if (const auto it = kMayScan.find(name); it != kMayScan.end()) return it->second;
    for (const auto& [prefix, why] : kMayScanPrefix)
        if (name.rfind(prefix, 0) == 0) return why;
    return {};
}

// This backend's part of the check.
twofactor::test::plans::Backend backend(PGconn* c) {
    return {[c](const char* sql, std::string& error) { return explain(c, sql, error); }, scannedTables, mayScan};
}

}  // namespace

TEST_CASE("no per-call PostgreSQL statement scans a table that grows with traffic", "[store][plans][postgresql]") {
    Db db;
    std::vector<std::string> unknown;
    const auto statements = allStatements(unknown);
    twofactor::test::plans::checkSchema(
        backend(db.c), statements, unknown,
        {"kInsertRequest", "kSelectRequestAndSubject", "kInsertAudit", "kTakeAuditChain", "kLockRateCounter"}, kMayScan);
}

TEST_CASE("the PostgreSQL check fails when a per-call statement loses its index", "[store][plans][postgresql]") {
    Db db;
    std::vector<std::string> unknown;
    const auto statements = allStatements(unknown);
    REQUIRE(twofactor::test::plans::violations(backend(db.c), statements, false).empty());
    db.exec("DROP INDEX requests_by_subject_only");
    db.exec("DROP INDEX requests_by_subject");
    const auto bad = twofactor::test::plans::violations(backend(db.c), statements, false);
    INFO(joined(bad));
    CHECK(std::any_of(bad.begin(), bad.end(),
                      [](const std::string& v) { return v.rfind("kSelectNewestPending: scans table requests", 0) == 0; }));
}
