// The TOML reader every section shares: typed values, each problem a
// ConfigError pointing at the offending node.
#pragma once

#include "config/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::config::detail {

inline std::string joinPath(std::string dir, std::string_view tail) {
    while (dir.size() > 1 && dir.back() == '/') {
        dir.pop_back();
    }
    if (dir != "/") {
        dir += '/';
    }
    return dir.append(tail);
}

inline std::string joinList(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += ", ";
        }
        out += item;
    }
    return out;
}

inline bool contains(const std::vector<std::string>& items, std::string_view item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

inline std::string keyJoin(std::string_view prefix, std::string_view key) {
    if (prefix.empty()) {
        return std::string(key);
    }
    std::string out(prefix);
    out += '.';
    out += key;
    return out;
}

inline std::string indexKey(std::string_view key, std::size_t index) {
    return std::string(key) + '[' + std::to_string(index) + ']';
}

// Reads typed values from a parsed document and turns every problem into a
// ConfigError pointing at the offending node. The reader remembers which node
// that was, so that a check of the whole file can take it out and read on
// (see config::check).
class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    // Stops reading: `node` is wrong, reported at `where` (its key, say).
    [[noreturn]] void fail(const toml::node& node, const toml::source_region& where, const std::string& key,
                           const std::string& message) const {
        failed_ = &node;
        throw error(where, key, message);
    }
    [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& message) const {
        fail(node, node.source(), key, message);
    }

    // Records an error and reads on: for checks whose failure leaves nothing
    // half-read, such as what a driver needs from other sections.
    void report(const toml::node& node, const std::string& key, const std::string& message) const {
        reported_.push_back(error(node.source(), key, message));
    }

    // The node the last fail() named, or nullptr.
    const toml::node* failedNode() const { return failed_; }
    const std::vector<ConfigError>& reported() const { return reported_; }

    const toml::table& table(const toml::node& node, const std::string& key) const {
        const toml::table* t = node.as_table();
        if (t == nullptr) {
            fail(node, key, "must be a table");
        }
        return *t;
    }

    // Unknown keys are errors, not warnings: a misspelt "max_atempts" silently
    // ignored would leave the default in force without anyone noticing.
    void allowOnly(const toml::table& t, std::string_view prefix,
                   std::initializer_list<std::string_view> allowed) const {
        for (auto&& [k, v] : t) {
            if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) {
                continue;
            }
            std::string expected;
            for (auto a : allowed) {
                if (!expected.empty()) {
                    expected += ", ";
                }
                expected += a;
            }
            fail(v, k.source(), keyJoin(prefix, k.str()),
                 std::string(v.is_table() ? "unknown table" : "unknown key") + " (expected one of: " + expected +
                     ")");
        }
    }

    std::string string(const toml::node& node, const std::string& key) const {
        const auto* s = node.as_string();
        if (s == nullptr) {
            fail(node, key, "must be a string");
        }
        if (s->get().find('\0') != std::string::npos) {
            fail(node, key, "must not contain NUL characters");
        }
        return s->get();
    }

    std::string oneOf(const toml::node& node, const std::string& key, const std::vector<std::string>& allowed) const {
        std::string value = string(node, key);
        if (!contains(allowed, value)) {
            fail(node, key, "must be one of " + joinList(allowed) + ", not \"" + value + "\"");
        }
        return value;
    }

    bool boolean(const toml::node& node, const std::string& key) const {
        const auto* b = node.as_boolean();
        if (b == nullptr) {
            fail(node, key, "must be true or false");
        }
        return b->get();
    }

    std::int64_t integer(const toml::node& node, const std::string& key, std::int64_t min, std::int64_t max,
                         std::string_view unit = {}) const {
        const auto* i = node.as_integer();
        if (i == nullptr) {
            fail(node, key, "must be an integer");
        }
        std::int64_t value = i->get();
        if (value < min || value > max) {
            std::string message = "must be between " + std::to_string(min) + " and " + std::to_string(max);
            if (!unit.empty()) {
                message += ' ';
                message += unit;
            }
            fail(node, key, message);
        }
        return value;
    }

    // Relative paths would depend on the daemon's working directory, which
    // systemd and the CLI-started daemon set differently.
    std::string absolutePath(const toml::node& node, const std::string& key) const {
        std::string value = string(node, key);
        if (value.empty() || value[0] != '/') {
            fail(node, key, "must be an absolute path");
        }
        return value;
    }

    std::vector<std::string> stringArray(const toml::node& node, const std::string& key) const {
        const toml::array* a = node.as_array();
        if (a == nullptr) {
            fail(node, key, "must be an array of strings");
        }
        std::vector<std::string> out;
        for (std::size_t i = 0; i < a->size(); ++i) {
            out.push_back(string(*a->get(i), indexKey(key, i)));
        }
        return out;
    }

private:
    ConfigError error(const toml::source_region& where, const std::string& key, const std::string& message) const {
        return ConfigError(file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), key,
                           message);
    }

    std::string file_;
    mutable const toml::node* failed_ = nullptr;
    mutable std::vector<ConfigError> reported_;
};

}  // namespace twofactor::config::detail
