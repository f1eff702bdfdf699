// Loading and validating twofactord.toml. Everything is checked here, once, so
// the daemon never runs with a value it would have to second-guess later.
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/validators.hpp"

#include "ipc/paths.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <tuple>
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

using namespace detail;

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
    reader.allowOnly(root, "",
                     {"daemon", "limits", "access", "delivery", "outbox", "tls", "ses", "smtp", "retry", "whatsapp",
                      "webhook", "http", "retention", "privacy", "geoip", "apps", "store", "metrics"});

    Config config;
    config.sourcePath = sourceName;
    config.embedded = false;
    config.socketPath = paths::systemSocket();
    config.stateDir = paths::systemStateDir();

    if (const toml::node* n = root.get("daemon")) {
        readDaemon(reader, reader.table(*n, "daemon"), config);
    }
    if (const toml::node* n = root.get("store")) {
        readStore(reader, reader.table(*n, "store"), config);
    }
    if (const toml::node* n = root.get("limits")) {
        readLimits(reader, reader.table(*n, "limits"), config.limits);
    }
    if (const toml::node* n = root.get("access")) {
        readAccess(reader, reader.table(*n, "access"), config);
    }
    fillAccessRoles(config);

    const toml::table* delivery = nullptr;
    if (const toml::node* n = root.get("delivery")) {
        delivery = &reader.table(*n, "delivery");
        readDelivery(reader, *delivery, config);
    } else {
        config.drivers = {{"email", "outbox"}, {"whatsapp", "outbox"}};
    }

    if (const toml::node* n = root.get("outbox")) {
        readOutbox(reader, reader.table(*n, "outbox"), config);
    }
    fillDerivedPaths(config);

    if (const toml::node* n = root.get("tls")) {
        readTls(reader, reader.table(*n, "tls"), config.tls);
    }
    if (const toml::node* n = root.get("ses")) {
        readSes(reader, reader.table(*n, "ses"), config.ses);
    }
    if (const toml::node* n = root.get("smtp")) {
        readSmtp(reader, reader.table(*n, "smtp"), config.smtp);
    }
    if (const toml::node* n = root.get("retry")) {
        readRetry(reader, reader.table(*n, "retry"), config.retry);
    }
    if (const toml::node* n = root.get("whatsapp")) {
        readWhatsapp(reader, reader.table(*n, "whatsapp"), config.whatsapp);
    }
    if (const toml::node* n = root.get("webhook")) {
        readWebhook(reader, reader.table(*n, "webhook"), config.webhook);
    }
    if (const toml::node* n = root.get("http")) {
        readHttp(reader, reader.table(*n, "http"), config.http);
    }
    // SNS posts to the webhook listener, at a path of its own.
    if (config.ses.notifications.enabled) {
        const toml::node& ses = *root.get("ses");
        if (!config.webhook.enabled)
            reader.fail(ses, "ses.notifications.enabled", "needs [webhook] enabled = true: SNS posts to its listener");
        if (config.ses.notifications.path == config.webhook.path)
            reader.fail(ses, "ses.notifications.path", "must differ from webhook.path (" + config.webhook.path + ")");
    }
    if (const toml::node* n = root.get("retention")) {
        readRetention(reader, reader.table(*n, "retention"), config.retention);
    }
    if (const toml::node* n = root.get("geoip")) {
        readGeoip(reader, reader.table(*n, "geoip"), config);
    }
    if (const toml::node* n = root.get("metrics")) {
        readMetrics(reader, reader.table(*n, "metrics"), config.metrics);
    }
    if (const toml::node* n = root.get("privacy")) {
        const toml::table& t = reader.table(*n, "privacy");
        reader.allowOnly(t, "privacy", {"controller", "contact", "dpo"});
        for (auto [key, out] : {std::pair{"controller", &config.privacy.controller},
                                std::pair{"contact", &config.privacy.contact}, std::pair{"dpo", &config.privacy.dpo}}) {
            const toml::node* v = t.get(key);
            if (v == nullptr) continue;
            const std::string name = std::string("privacy.") + key;
            *out = reader.string(*v, name);
            if (!validUtf8(*out)) reader.fail(*v, name, "must be valid UTF-8");
            if (auto problem = privacyTextProblem(*out)) reader.fail(*v, name, *problem);
        }
    }

    const toml::node* appsNode = root.get("apps");
    if (appsNode == nullptr) {
        throw ConfigError(sourceName, 0, 0, "apps", "no apps configured");
    }
    const toml::table& apps = reader.table(*appsNode, "apps");
    if (apps.empty()) {
        reader.fail(apps, "apps", "no apps configured");
    }
    for (auto&& [k, v] : apps) {
        std::string name(k.str());
        std::string key = "apps." + name;
        if (!validAppName(name)) {
            reader.fail(v, k.source(), key,
                        "app names must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or "
                        "digit");
        }
        config.apps.emplace(name, readApp(reader, reader.table(v, key), name, config.drivers));
    }
    checkEmailDriver(reader, delivery, config);
    checkWhatsappDriver(reader, delivery, config);
    checkIpCountryRules(reader, root, config);
    return config;
}

}  // namespace

namespace {

bool holds(const toml::node& node, const toml::node* target) {
    if (&node == target) {
        return true;
    }
    if (const toml::array* a = node.as_array()) {
        return std::any_of(a->begin(), a->end(), [&](const toml::node& e) { return holds(e, target); });
    }
    if (const toml::table* t = node.as_table()) {
        return std::any_of(t->begin(), t->end(), [&](auto&& kv) { return holds(kv.second, target); });
    }
    return false;
}

// Takes `target` out of the document: the key that holds it, or the whole
// list it is an element of (the checks name elements by index, which removing
// one would shift). Returns the table it was taken from, or nullptr.
toml::table* removeNode(toml::table& table, const toml::node* target) {
    for (auto&& [k, v] : table) {
        if (&v == target || (v.is_array() && holds(v, target))) {
            const std::string key(k.str());
            table.erase(key);
            return &table;
        }
        if (toml::table* sub = v.as_table(); sub != nullptr && holds(*sub, target)) {
            return removeNode(*sub, target);
        }
    }
    return nullptr;
}

bool before(const ConfigError& a, const ConfigError& b) {
    // Errors without a place (such as "no apps configured") come last.
    auto place = [](const ConfigError& e) { return std::tuple(e.line() <= 0, e.line(), e.column()); };
    return place(a) < place(b);
}

std::string readText(const std::string& path) {
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
    return text;
}

}  // namespace

// Reading stops at the first wrong value. To find the next one, that value is
// taken out of the document and the whole document read again, until a read
// gets through: a valid file is read once, and a file with N mistakes N + 1
// times. What a removal alone causes is left out: a second error for a key
// already reported (a bad ses.region, taken out, then "ses.region is
// required"), and a table's own error (such as a missing key) once something
// was taken out of it.
CheckResult check(std::string_view text, const std::string& sourceName) {
    CheckResult result;
    toml::table root;
    try {
        root = toml::parse(text, sourceName);
    } catch (const toml::parse_error& e) {
        // The parser cannot go on past a syntax error: that one is all we know.
        result.errors.emplace_back(sourceName, static_cast<int>(e.source().begin.line),
                                   static_cast<int>(e.source().begin.column), "", std::string(e.description()));
        return result;
    }
    std::set<std::string> failedKeys;  // of the values taken out
    std::set<const toml::node*> shortened;
    auto add = [&](const ConfigError& e, const toml::node* node) {
        const bool consequence =
            (!e.key().empty() && failedKeys.count(e.key()) != 0) || (node != nullptr && shortened.count(node) != 0);
        if (!consequence) {
            result.errors.push_back(e);
        }
    };
    while (true) {
        const Reader reader(sourceName);
        try {
            Config config = fromTable(reader, root, sourceName);
            for (const ConfigError& e : reader.reported()) {
                add(e, nullptr);
            }
            if (result.errors.empty()) {
                result.config = std::move(config);
            }
            break;
        } catch (const ConfigError& e) {
            const toml::node* node = reader.failedNode();
            add(e, node);
            failedKeys.insert(e.key());
            toml::table* from = node != nullptr ? removeNode(root, node) : nullptr;
            if (from == nullptr) {
                break;
            }
            shortened.insert(from);
        }
    }
    std::stable_sort(result.errors.begin(), result.errors.end(), before);
    return result;
}

CheckResult checkFile(const std::string& path) {
    std::string text;
    try {
        text = readText(path);
    } catch (const ConfigError& e) {
        CheckResult result;
        result.errors.push_back(e);
        return result;
    }
    return check(text, path);
}

Config parse(std::string_view text, const std::string& sourceName) {
    CheckResult result = check(text, sourceName);
    if (!result.config) {
        throw result.errors.front();
    }
    return std::move(*result.config);
}

Config loadFile(const std::string& path) { return parse(readText(path), path); }

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
    app.channels = detail::kChannels;
    app.templates = builtinTemplates();
    config.apps.emplace(app.name, std::move(app));
    return config;
}

}  // namespace twofactor::config
