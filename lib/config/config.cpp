// Loading and validating twofactord.toml. Everything is checked here, once, so
// the daemon never runs with a value it would have to second-guess later.
#include "config/config.hpp"

#include "ipc/paths.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace twofactor::config {

namespace {

std::string formatWhat(const std::string& file, int line, int column, const std::string& key,
                       const std::string& message) {
    std::string out;
    if (!file.empty()) {
        out += file;
        if (line > 0) {
            out += ':' + std::to_string(line);
            if (column > 0) {
                out += ':' + std::to_string(column);
            }
        }
        out += ": ";
    } else if (line > 0) {
        out += "line " + std::to_string(line);
        if (column > 0) {
            out += ':' + std::to_string(column);
        }
        out += ": ";
    }
    if (!key.empty()) {
        out += key + ": ";
    }
    return out + message;
}

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key, std::string message)
    : std::runtime_error(formatWhat(file, line, column, key, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      message_(std::move(message)) {}

const char* roleName(Role role) {
    switch (role) {
        case Role::Operator: return "operator";
        case Role::Dpo: return "dpo";
        case Role::Admin: return "admin";
    }
    return "unknown";
}

namespace {

constexpr std::int64_t kMinTtl = 30;
constexpr std::int64_t kMaxTtl = 86400;
constexpr std::int64_t kDefaultMaxTtl = 600;
constexpr int kMinCodeLength = 4;
constexpr int kMaxCodeLength = 10;
// The display name lands in subjects, SMS-sized WhatsApp bodies and logs.
constexpr std::size_t kMaxDisplayName = 128;
// sockaddr_un::sun_path is 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

const std::vector<std::string> kChannels = {"email", "whatsapp"};
const std::vector<std::string> kDrivers = {"outbox"};

std::string joinPath(std::string dir, std::string_view tail) {
    while (dir.size() > 1 && dir.back() == '/') {
        dir.pop_back();
    }
    if (dir != "/") {
        dir += '/';
    }
    return dir.append(tail);
}

std::string joinList(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += ", ";
        }
        out += item;
    }
    return out;
}

bool contains(const std::vector<std::string>& items, std::string_view item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

bool hasControl(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// [a-z0-9][a-z0-9_-]{0,62}: app names appear in file names, logs and the API.
bool validAppName(std::string_view name) {
    if (name.empty() || name.size() > 63 || !(isLower(name[0]) || isDigit(name[0]))) {
        return false;
    }
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return isLower(c) || isDigit(c) || c == '_' || c == '-'; });
}

// A small BCP 47 subset: language, optional Script, optional REGION or UN M.49
// area: en, de, pt-BR, zh-Hant-TW, es-419. Enough for message templates, and
// strict enough that "EN" and "en_US" are caught instead of never matching.
bool validLocale(std::string_view tag) {
    std::size_t i = 0;
    auto count = [&](auto pred) {
        std::size_t n = 0;
        while (i + n < tag.size() && pred(tag[i + n])) {
            ++n;
        }
        return n;
    };
    std::size_t lang = count(isLower);
    if (lang < 2 || lang > 3) {
        return false;
    }
    i += lang;
    if (i == tag.size()) {
        return true;
    }
    if (tag[i] != '-') {
        return false;
    }
    ++i;
    if (i + 4 <= tag.size() && isUpper(tag[i]) && isLower(tag[i + 1]) && isLower(tag[i + 2]) &&
        isLower(tag[i + 3]) && (i + 4 == tag.size() || tag[i + 4] == '-')) {
        i += 4;
        if (i == tag.size()) {
            return true;
        }
        ++i;
    }
    std::size_t rest = tag.size() - i;
    if (rest == 2) {
        return isUpper(tag[i]) && isUpper(tag[i + 1]);
    }
    if (rest == 3) {
        return isDigit(tag[i]) && isDigit(tag[i + 1]) && isDigit(tag[i + 2]);
    }
    return false;
}

bool validRegion(std::string_view region) {
    return region.size() == 2 && isUpper(region[0]) && isUpper(region[1]);
}

// Names are resolved later with getpwnam/getgrnam; whitespace, ':' or control
// characters can never match and usually mean a typo such as "a, b" in one string.
bool validPrincipal(std::string_view name) {
    return !name.empty() && !hasControl(name) &&
           std::none_of(name.begin(), name.end(), [](char c) { return c == ' ' || c == ':'; });
}

std::string keyJoin(std::string_view prefix, std::string_view key) {
    if (prefix.empty()) {
        return std::string(key);
    }
    std::string out(prefix);
    out += '.';
    out += key;
    return out;
}

std::string indexKey(std::string_view key, std::size_t index) {
    return std::string(key) + '[' + std::to_string(index) + ']';
}

// Reads typed values from a parsed document and turns every problem into a
// ConfigError pointing at the offending node.
class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const toml::source_region& where, const std::string& key,
                           const std::string& message) const {
        throw ConfigError(file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), key,
                          message);
    }
    [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& message) const {
        fail(node.source(), key, message);
    }

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
            fail(k.source(), keyJoin(prefix, k.str()),
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
    std::string file_;
};

// Checks a template string: only {{code}}, {{app}} and {{minutes}}, nothing
// unterminated. Returns whether {{code}} occurs.
bool checkPlaceholders(const Reader& reader, const toml::node& node, const std::string& key, std::string_view s) {
    bool hasCode = false;
    std::size_t pos = 0;
    while ((pos = s.find("{{", pos)) != std::string_view::npos) {
        std::size_t end = s.find("}}", pos + 2);
        if (end == std::string_view::npos) {
            reader.fail(node, key, "unterminated placeholder \"{{\"");
        }
        std::string_view name = s.substr(pos + 2, end - pos - 2);
        if (name == "code") {
            hasCode = true;
        } else if (name != "app" && name != "minutes") {
            reader.fail(node, key,
                        "unknown placeholder \"{{" + std::string(name) +
                            "}}\" (allowed: {{code}}, {{app}}, {{minutes}})");
        }
        pos = end + 2;
    }
    return hasCode;
}

Template readTemplate(const Reader& reader, const toml::table& t, const std::string& prefix,
                      const std::string& locale) {
    reader.allowOnly(t, prefix, {"subject", "text", "html"});
    Template out;

    if (const toml::node* n = t.get("subject")) {
        std::string key = prefix + ".subject";
        out.subject = reader.string(*n, key);
        if (out.subject.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        // A line break in a subject is a mail header injection.
        if (hasControl(out.subject)) {
            reader.fail(*n, key, "must be one line without control characters");
        }
        checkPlaceholders(reader, *n, key, out.subject);
    } else {
        const auto& builtins = builtinTemplates();
        auto it = builtins.find(locale);
        if (it == builtins.end()) {
            reader.fail(t.source(), prefix + ".subject",
                        "is required: there is no built-in template for locale \"" + locale + "\"");
        }
        out.subject = it->second.subject;
    }

    const toml::node* text = t.get("text");
    if (text == nullptr) {
        reader.fail(t.source(), prefix + ".text", "is required");
    }
    out.text = reader.string(*text, prefix + ".text");
    if (!checkPlaceholders(reader, *text, prefix + ".text", out.text)) {
        reader.fail(*text, prefix + ".text", "must contain {{code}}");
    }

    if (const toml::node* n = t.get("html")) {
        std::string key = prefix + ".html";
        out.html = reader.string(*n, key);
        // Mail clients show the HTML part instead of the text: one without the
        // code would deliver a message the recipient cannot use.
        if (!checkPlaceholders(reader, *n, key, out.html) && !out.html.empty()) {
            reader.fail(*n, key, "must contain {{code}}");
        }
    }
    return out;
}

App readApp(const Reader& reader, const toml::table& t, const std::string& name,
            const std::map<std::string, std::string>& drivers) {
    const std::string prefix = "apps." + name;
    reader.allowOnly(t, prefix,
                     {"display_name", "channels", "code_length", "min_code_length", "max_code_length", "ttl",
                      "max_ttl", "max_attempts", "max_sends", "default_locale", "default_region", "templates"});
    App app;
    app.name = name;
    app.displayName = name;

    if (const toml::node* n = t.get("display_name")) {
        std::string key = prefix + ".display_name";
        app.displayName = reader.string(*n, key);
        if (app.displayName.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        if (app.displayName.size() > kMaxDisplayName) {
            reader.fail(*n, key, "must be at most " + std::to_string(kMaxDisplayName) + " bytes");
        }
        // It is substituted into mail subjects; see the subject check.
        if (hasControl(app.displayName)) {
            reader.fail(*n, key, "must not contain control characters");
        }
    }

    if (const toml::node* n = t.get("channels")) {
        std::string key = prefix + ".channels";
        auto channels = reader.stringArray(*n, key);
        if (channels.empty()) {
            reader.fail(*n, key, "must name at least one channel");
        }
        const toml::array& array = *n->as_array();
        for (std::size_t i = 0; i < channels.size(); ++i) {
            const toml::node& element = *array.get(i);
            std::string elementKey = indexKey(key, i);
            if (!contains(kChannels, channels[i])) {
                reader.fail(element, elementKey,
                            "unknown channel \"" + channels[i] + "\" (expected one of: " + joinList(kChannels) + ")");
            }
            if (std::find(channels.begin(), channels.begin() + static_cast<std::ptrdiff_t>(i), channels[i]) !=
                channels.begin() + static_cast<std::ptrdiff_t>(i)) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" is listed twice");
            }
            if (drivers.find(channels[i]) == drivers.end()) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" has no driver in [delivery]");
            }
        }
        app.channels = std::move(channels);
    } else {
        // Every channel that can deliver: "both" with the default [delivery].
        for (const auto& channel : kChannels) {
            if (drivers.find(channel) != drivers.end()) {
                app.channels.push_back(channel);
            }
        }
    }

    if (const toml::node* n = t.get("min_code_length")) {
        app.minCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".min_code_length", kMinCodeLength, kMaxCodeLength));
    }
    if (const toml::node* n = t.get("max_code_length")) {
        app.maxCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".max_code_length", app.minCodeLength, kMaxCodeLength));
    } else if (app.maxCodeLength < app.minCodeLength) {
        app.maxCodeLength = app.minCodeLength;
    }
    if (const toml::node* n = t.get("code_length")) {
        app.codeLength =
            static_cast<int>(reader.integer(*n, prefix + ".code_length", app.minCodeLength, app.maxCodeLength));
    } else {
        app.codeLength = std::clamp(app.codeLength, app.minCodeLength, app.maxCodeLength);
    }

    const toml::node* ttlNode = t.get("ttl");
    const toml::node* maxTtlNode = t.get("max_ttl");
    std::int64_t maxTtl = kMaxTtl;
    if (maxTtlNode != nullptr) {
        maxTtl = reader.integer(*maxTtlNode, prefix + ".max_ttl", kMinTtl, kMaxTtl, "seconds");
    }
    std::int64_t ttl = app.ttl.count();
    if (ttlNode != nullptr) {
        ttl = reader.integer(*ttlNode, prefix + ".ttl", kMinTtl, maxTtl, "seconds");
    } else if (ttl > maxTtl) {
        // A max_ttl below the default ttl lowers the default with it.
        ttl = maxTtl;
    }
    app.ttl = std::chrono::seconds(ttl);
    app.maxTtl = std::chrono::seconds(maxTtlNode != nullptr ? maxTtl : std::max(ttl, kDefaultMaxTtl));

    if (const toml::node* n = t.get("max_attempts")) {
        app.maxAttempts = static_cast<int>(reader.integer(*n, prefix + ".max_attempts", 1, 100));
    }
    if (const toml::node* n = t.get("max_sends")) {
        app.maxSends = static_cast<int>(reader.integer(*n, prefix + ".max_sends", 1, 100));
    }

    if (const toml::node* n = t.get("default_region")) {
        std::string key = prefix + ".default_region";
        app.defaultRegion = reader.string(*n, key);
        if (!validRegion(app.defaultRegion)) {
            reader.fail(*n, key, "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
        }
    }

    app.templates = builtinTemplates();
    if (const toml::node* n = t.get("templates")) {
        std::string key = prefix + ".templates";
        const toml::table& templates = reader.table(*n, key);
        for (auto&& [k, v] : templates) {
            std::string locale(k.str());
            std::string localeKey = keyJoin(key, locale);
            if (!validLocale(locale)) {
                reader.fail(k.source(), localeKey, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
            }
            app.templates[locale] = readTemplate(reader, reader.table(v, localeKey), localeKey, locale);
        }
    }

    if (const toml::node* n = t.get("default_locale")) {
        std::string key = prefix + ".default_locale";
        app.defaultLocale = reader.string(*n, key);
        if (!validLocale(app.defaultLocale)) {
            reader.fail(*n, key, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        if (app.templates.find(app.defaultLocale) == app.templates.end()) {
            std::vector<std::string> known;
            for (const auto& [locale, tmpl] : app.templates) {
                known.push_back(locale);
            }
            reader.fail(*n, key,
                        "has no template for \"" + app.defaultLocale + "\" (available: " + joinList(known) + ")");
        }
    }
    return app;
}

void readDaemon(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "daemon",
                     {"socket", "state_dir", "database", "store_key_file", "pepper_file", "generate_keys",
                      "synchronous", "log_level"});
    if (const toml::node* n = t.get("socket")) {
        config.socketPath = reader.absolutePath(*n, "daemon.socket");
        if (config.socketPath.size() > kMaxSocketPath) {
            reader.fail(*n, "daemon.socket",
                        "must be at most " + std::to_string(kMaxSocketPath) + " bytes (the Unix socket path limit)");
        }
    }
    if (const toml::node* n = t.get("state_dir")) {
        config.stateDir = reader.absolutePath(*n, "daemon.state_dir");
    }
    if (const toml::node* n = t.get("database")) {
        config.databasePath = reader.absolutePath(*n, "daemon.database");
    }
    if (const toml::node* n = t.get("store_key_file")) {
        config.storeKeyFile = reader.absolutePath(*n, "daemon.store_key_file");
    }
    if (const toml::node* n = t.get("pepper_file")) {
        config.pepperFile = reader.absolutePath(*n, "daemon.pepper_file");
    }
    if (const toml::node* n = t.get("generate_keys")) {
        config.generateKeys = reader.boolean(*n, "daemon.generate_keys");
    }
    if (const toml::node* n = t.get("synchronous")) {
        config.synchronousFull = reader.oneOf(*n, "daemon.synchronous", {"full", "normal"}) == "full";
    }
    if (const toml::node* n = t.get("log_level")) {
        config.logLevel = reader.oneOf(*n, "daemon.log_level", {"debug", "info", "warning", "error"});
    }
}

void readLimits(const Reader& reader, const toml::table& t, Limits& limits) {
    reader.allowOnly(t, "limits",
                     {"max_message_bytes", "max_depth", "idle_timeout", "request_timeout",
                      "max_connections_per_uid"});
    if (const toml::node* n = t.get("max_message_bytes")) {
        limits.maxMessageBytes =
            static_cast<std::size_t>(reader.integer(*n, "limits.max_message_bytes", 1024, 16 * 1024 * 1024, "bytes"));
    }
    if (const toml::node* n = t.get("max_depth")) {
        limits.maxDepth = static_cast<int>(reader.integer(*n, "limits.max_depth", 2, 64));
    }
    if (const toml::node* n = t.get("idle_timeout")) {
        limits.idleTimeout = std::chrono::seconds(reader.integer(*n, "limits.idle_timeout", 1, 86400, "seconds"));
    }
    if (const toml::node* n = t.get("request_timeout")) {
        limits.requestTimeout =
            std::chrono::seconds(reader.integer(*n, "limits.request_timeout", 1, 3600, "seconds"));
    }
    if (const toml::node* n = t.get("max_connections_per_uid")) {
        limits.maxConnectionsPerUid = static_cast<int>(reader.integer(*n, "limits.max_connections_per_uid", 1, 10000));
    }
}

void readAccess(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "access", {"operator", "dpo", "admin"});
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        const toml::node* n = t.get(roleName(role));
        if (n == nullptr) {
            continue;
        }
        std::string prefix = std::string("access.") + roleName(role);
        const toml::table& grant = reader.table(*n, prefix);
        reader.allowOnly(grant, prefix, {"users", "groups"});
        RoleGrant& out = config.access[role];
        for (auto [field, list] : {std::pair{"users", &out.users}, std::pair{"groups", &out.groups}}) {
            const toml::node* f = grant.get(field);
            if (f == nullptr) {
                continue;
            }
            std::string key = prefix + "." + field;
            *list = reader.stringArray(*f, key);
            for (std::size_t i = 0; i < list->size(); ++i) {
                if (!validPrincipal((*list)[i])) {
                    reader.fail(*f->as_array()->get(i), indexKey(key, i),
                                std::string("is not a valid ") + (list == &out.users ? "user name or uid" : "group name or gid"));
                }
            }
        }
    }
}

void readDelivery(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "delivery", {"email", "whatsapp"});
    if (t.empty()) {
        reader.fail(t.source(), "delivery", "must give a driver for at least one channel");
    }
    for (auto&& [k, v] : t) {
        std::string key = keyJoin("delivery", k.str());
        config.drivers[std::string(k.str())] = reader.oneOf(v, key, kDrivers);
    }
}

void fillAccessRoles(Config& config) {
    // Every role present, possibly empty, so lookups never need a find().
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        config.access[role];
    }
}

void fillDerivedPaths(Config& config) {
    if (config.databasePath.empty()) {
        config.databasePath = joinPath(config.stateDir, "twofactor.db");
    }
    if (config.storeKeyFile.empty()) {
        config.storeKeyFile = joinPath(config.stateDir, "keys/store.key");
    }
    if (config.pepperFile.empty()) {
        config.pepperFile = joinPath(config.stateDir, "keys/pepper.key");
    }
    if (config.outboxDir.empty()) {
        config.outboxDir = joinPath(config.stateDir, "outbox");
    }
}

Config fromTable(const Reader& reader, const toml::table& root, const std::string& sourceName) {
    reader.allowOnly(root, "", {"daemon", "limits", "access", "delivery", "outbox", "apps"});

    Config config;
    config.sourcePath = sourceName;
    config.embedded = false;
    config.socketPath = paths::systemSocket();
    config.stateDir = paths::systemStateDir();

    if (const toml::node* n = root.get("daemon")) {
        readDaemon(reader, reader.table(*n, "daemon"), config);
    }
    if (const toml::node* n = root.get("limits")) {
        readLimits(reader, reader.table(*n, "limits"), config.limits);
    }
    if (const toml::node* n = root.get("access")) {
        readAccess(reader, reader.table(*n, "access"), config);
    }
    fillAccessRoles(config);

    if (const toml::node* n = root.get("delivery")) {
        readDelivery(reader, reader.table(*n, "delivery"), config);
    } else {
        config.drivers = {{"email", "outbox"}, {"whatsapp", "outbox"}};
    }

    if (const toml::node* n = root.get("outbox")) {
        const toml::table& outbox = reader.table(*n, "outbox");
        reader.allowOnly(outbox, "outbox", {"directory"});
        if (const toml::node* d = outbox.get("directory")) {
            config.outboxDir = reader.absolutePath(*d, "outbox.directory");
        }
    }
    fillDerivedPaths(config);

    const toml::node* appsNode = root.get("apps");
    if (appsNode == nullptr) {
        throw ConfigError(sourceName, 0, 0, "apps", "no apps configured");
    }
    const toml::table& apps = reader.table(*appsNode, "apps");
    if (apps.empty()) {
        reader.fail(apps.source(), "apps", "no apps configured");
    }
    for (auto&& [k, v] : apps) {
        std::string name(k.str());
        std::string key = "apps." + name;
        if (!validAppName(name)) {
            reader.fail(k.source(), key,
                        "app names must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or "
                        "digit");
        }
        config.apps.emplace(name, readApp(reader, reader.table(v, key), name, config.drivers));
    }
    return config;
}

}  // namespace

Config parse(std::string_view text, const std::string& sourceName) {
    toml::table root;
    try {
        root = toml::parse(text, sourceName);
    } catch (const toml::parse_error& e) {
        throw ConfigError(sourceName, static_cast<int>(e.source().begin.line),
                          static_cast<int>(e.source().begin.column), "", std::string(e.description()));
    }
    return fromTable(Reader(sourceName), root, sourceName);
}

Config loadFile(const std::string& path) {
    std::FILE* file = std::fopen(path.c_str(), "rbe");
    if (file == nullptr) {
        int err = errno;
        throw ConfigError(path, 0, 0, "", std::strerror(err));
    }
    std::string text;
    char buffer[8192];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
        text.append(buffer, n);
    }
    // fopen succeeds on a directory; the read is what fails, with EISDIR.
    int err = std::ferror(file) ? errno : 0;
    std::fclose(file);
    if (err != 0) {
        throw ConfigError(path, 0, 0, "", std::strerror(err));
    }
    return parse(text, path);
}

Config embeddedDefault() {
    Config config;
    config.sourcePath.clear();
    config.embedded = true;
    config.socketPath = paths::defaultSocket();
    config.stateDir = paths::defaultStateDir();
    // No administrator has set anything up: the daemon creates its own keys.
    config.generateKeys = true;
    config.synchronousFull = true;
    fillDerivedPaths(config);

    // Whoever runs a personal daemon owns it; nobody else gets in.
    RoleGrant self;
    self.users.push_back(std::to_string(::getuid()));
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        config.access[role] = self;
    }

    config.drivers = {{"email", "outbox"}, {"whatsapp", "outbox"}};

    App app;
    app.name = "default";
    app.displayName = "twofactor";
    app.channels = kChannels;
    app.templates = builtinTemplates();
    config.apps.emplace(app.name, std::move(app));
    return config;
}

const std::map<std::string, Template>& builtinTemplates() {
    // Never the code in a subject: subjects show on lock screens, in
    // notification previews and in mail logs.
    static const std::map<std::string, Template> templates = {
        {"en",
         {"Your {{app}} verification code",
          "{{code}} is your {{app}} verification code. It expires in {{minutes}} minutes. "
          "If you did not request it, you can ignore this message.",
          "<p><strong>{{code}}</strong> is your {{app}} verification code.</p>"
          "<p>It expires in {{minutes}} minutes. If you did not request it, you can ignore this message.</p>"}},
        {"de",
         {"Ihr Bestätigungscode für {{app}}",
          "{{code}} ist Ihr Bestätigungscode für {{app}}. Er ist {{minutes}} Minuten gültig. "
          "Falls Sie ihn nicht angefordert haben, können Sie diese Nachricht ignorieren.",
          "<p><strong>{{code}}</strong> ist Ihr Bestätigungscode für {{app}}.</p>"
          "<p>Er ist {{minutes}} Minuten gültig. Falls Sie ihn nicht angefordert haben, können Sie diese "
          "Nachricht ignorieren.</p>"}},
        {"fr",
         {"Votre code de vérification {{app}}",
          "{{code}} est votre code de vérification {{app}}. Il expire dans {{minutes}} minutes. "
          "Si vous ne l'avez pas demandé, vous pouvez ignorer ce message.",
          "<p><strong>{{code}}</strong> est votre code de vérification {{app}}.</p>"
          "<p>Il expire dans {{minutes}} minutes. Si vous ne l'avez pas demandé, vous pouvez ignorer ce "
          "message.</p>"}},
        {"es",
         {"Tu código de verificación de {{app}}",
          "{{code}} es tu código de verificación de {{app}}. Caduca en {{minutes}} minutos. "
          "Si no lo has solicitado, puedes ignorar este mensaje.",
          "<p><strong>{{code}}</strong> es tu código de verificación de {{app}}.</p>"
          "<p>Caduca en {{minutes}} minutos. Si no lo has solicitado, puedes ignorar este mensaje.</p>"}},
    };
    return templates;
}

}  // namespace twofactor::config
