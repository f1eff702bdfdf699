// What the two query-plan tests (test_query_plans.cpp for SQLCipher,
// test_query_plans_postgresql.cpp) share: the statement list's entries, the
// loop that explains each and names what it scans, and the checks on the
// catalogue. Each backend brings its own EXPLAIN, its reading of a plan and
// its exceptions.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <initializer_list>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace twofactor::test::plans {

struct Entry {
    std::string name;
    const char* text;
};

struct Backend {
    // The plan's lines for one statement, or an error.
    std::function<std::vector<std::string>(const char* sql, std::string& error)> explain;
    // The growing tables a plan reads in full.
    std::function<std::vector<std::string>(const std::vector<std::string>& plan)> scanned;
    // Why a statement may scan; empty for a per-call statement.
    std::function<std::string(const std::string& name)> mayScan;
};

inline std::string joined(const std::vector<std::string>& v) {
    std::ostringstream o;
    for (const auto& s : v) o << s << "\n";
    return o.str();
}

// What the schema's statements do wrong: "NAME: scans table TABLE" per statement.
inline std::vector<std::string> violations(const Backend& b, const std::vector<Entry>& statements, bool print) {
    std::vector<std::string> out;
    for (const auto& e : statements) {
        std::string error;
        const auto plan = b.explain(e.text, error);
        const std::string may = b.mayScan(e.name);
        if (print) {  // as TAP comments: the suite runs the tests under a TAP reporter
            std::cout << "# " << e.name << (may.empty() ? "" : "  [may scan: " + may + "]") << "\n";
            for (const auto& line : plan) std::cout << "#     " << line << "\n";
        }
        if (!error.empty()) {
            out.push_back(e.name + ": " + error);
            continue;
        }
        if (!may.empty()) continue;
        for (const auto& t : b.scanned(plan)) out.push_back(e.name + ": scans table " + t);
    }
    return out;
}

// The catalogue is really the schema's (no constant of a type the list
// cannot check, the statements a send runs are in it, every exception names
// a statement that exists), and no per-call statement scans.
inline void checkSchema(const Backend& b, const std::vector<Entry>& statements, const std::vector<std::string>& unknown,
                        std::initializer_list<const char*> required, const std::map<std::string, std::string>& exceptions) {
    INFO("constants of schema.hpp of a type this test does not know how to check:\n" << joined(unknown));
    CHECK(unknown.empty());
    std::set<std::string> names;
    for (const auto& e : statements) names.insert(e.name);
    for (const char* n : required) CHECK(names.count(n));
    for (const auto& [name, reason] : exceptions) {
        INFO("an exception for a statement that no longer exists: " << name);
        CHECK(names.count(name));
    }
    const auto bad = violations(b, statements, true);
    INFO("statements that scan (add an index, or list them in kMayScan with the reason):\n" << joined(bad));
    CHECK(bad.empty());
}

}  // namespace twofactor::test::plans
