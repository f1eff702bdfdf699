// [store]: which backend holds the data. SQLCipher is the default;
// "postgresql" (several nodes on one database) needs a twofactord built with libpq.
#include "config/sections.hpp"

#include "build_config.h"

namespace twofactor::config::detail {

void readStore(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "store", {"backend", "dsn_file", "connections", "prepared_statements", "cache_size"});
    if (const toml::node* n = t.get("cache_size")) {
        config.store.cacheMiB = static_cast<int>(reader.integer(*n, "store.cache_size", 2, 4096));
    }
    if (const toml::node* n = t.get("dsn_file")) {
        config.store.dsnFile = reader.absolutePath(*n, "store.dsn_file");
    }
    if (const toml::node* n = t.get("connections")) {
        config.store.connections = static_cast<int>(reader.integer(*n, "store.connections", 1, 64));
    }
    if (const toml::node* n = t.get("prepared_statements")) {
        config.store.preparedStatements = reader.boolean(*n, "store.prepared_statements");
    }
    if (const toml::node* n = t.get("backend")) {
        config.store.backend = reader.oneOf(*n, "store.backend", {"sqlcipher", "postgresql"});
#ifndef HAVE_POSTGRESQL
        if (config.store.backend == "postgresql") {
            reader.report(*n, "store.backend",
                          "\"postgresql\" is not available: this twofactord was built without libpq "
                          "(meson -Dpostgresql=enabled, with libpq-dev installed)");
        }
#endif
    }
}

}  // namespace twofactor::config::detail
