// [daemon], [limits] and [access].
#include "config/sections.hpp"
#include "config/validators.hpp"

namespace twofactor::config::detail {

namespace {

// sockaddr_un::sun_path is 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

}  // namespace

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
                      "max_connections_per_uid", "max_connections", "max_calls_per_connection"});
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
    if (const toml::node* n = t.get("max_connections")) {
        limits.maxConnections = static_cast<int>(reader.integer(*n, "limits.max_connections", 1, 60000));
    }
    if (const toml::node* n = t.get("max_calls_per_connection")) {
        limits.maxCallsPerConnection = static_cast<int>(reader.integer(*n, "limits.max_calls_per_connection", 1, 1024));
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

}  // namespace twofactor::config::detail
