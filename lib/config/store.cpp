// [store]: which backend holds the data. SQLCipher is the default and the
// only one the daemon runs on today; "postgresql" is refused, naming what the
// PostgreSQL backend still lacks, rather than started half-wired.
#include "config/sections.hpp"

#include "build_config.h"
#ifdef HAVE_POSTGRESQL
#include "store/postgres/store.hpp"
#endif

namespace twofactor::config::detail {

void readStore(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "store", {"backend", "dsn_file", "connections"});
    if (const toml::node* n = t.get("dsn_file")) {
        config.store.dsnFile = reader.absolutePath(*n, "store.dsn_file");
    }
    if (const toml::node* n = t.get("connections")) {
        config.store.connections = static_cast<int>(reader.integer(*n, "store.connections", 1, 64));
    }
    if (const toml::node* n = t.get("backend")) {
        config.store.backend = reader.oneOf(*n, "store.backend", {"sqlcipher", "postgresql"});
        if (config.store.backend == "postgresql") {
#ifdef HAVE_POSTGRESQL
            reader.report(*n, "store.backend",
                          std::string("\"postgresql\" cannot run a daemon yet: the PostgreSQL backend does not "
                                      "implement ") +
                              store::postgresMissing() + "; use \"sqlcipher\"");
#else
            reader.report(*n, "store.backend",
                          "\"postgresql\" is not available: this twofactord was built without libpq "
                          "(meson -Dpostgresql=enabled, with libpq-dev installed)");
#endif
        }
    }
}

}  // namespace twofactor::config::detail
