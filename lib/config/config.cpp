// Loading and validating twofactord.toml. Everything is checked here, once, so
// the daemon never runs with a value it would have to second-guess later.
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/validators.hpp"

#include "ipc/paths.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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
                      "webhook", "retention", "apps"});

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
    if (const toml::node* n = root.get("retention")) {
        readRetention(reader, reader.table(*n, "retention"), config.retention);
    }

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
    checkEmailDriver(reader, delivery, config);
    checkWhatsappDriver(reader, delivery, config);
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
    app.channels = detail::kChannels;
    app.templates = builtinTemplates();
    config.apps.emplace(app.name, std::move(app));
    return config;
}

}  // namespace twofactor::config
