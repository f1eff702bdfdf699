// The PostgreSQL backend (libpq): several daemons on one database. Each work
// item is its own READ COMMITTED transaction on one of a few connections,
// retried whole on a serialization failure or deadlock; personal data is
// sealed in the daemon (sealed.hpp).
#pragma once

#include "store/store.hpp"
#include "util/secret.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace twofactor::store {

struct PostgresOptions {
    SecretString dsn;            // a libpq connection string; may hold a password, never logged
    SecretBytes key;             // the store key: the column key is derived from it
    std::vector<SecretBytes> previousKeys;  // older store keys (key rotation): opened, never sealed with
    int connections = 4;         // work items run on this many connections at once
    bool prepare = true;         // named prepared statements (off behind PgBouncer < 1.21 in transaction pooling)
    std::size_t maxQueued = 4096;
    int auditChainLease = 120;   // seconds a node holds an audit chain after its last append to it
    // This node across its starts (store::nodeName): the audit chains an
    // earlier start held are taken back at once, not after their lease.
    // Empty: a store opened by a tool, which holds chains under a name of its own.
    std::string node;
};

// The store key is none of the key versions the database knows (seal_keys).
struct UnknownStoreKey : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Connects, migrates the schema and starts the connections. Throws
// std::runtime_error naming what failed (never the connection string);
// UnknownStoreKey for a key the database does not know.
[[nodiscard]] std::unique_ptr<Store> openPostgresStore(PostgresOptions options);

// The connection string from $CREDENTIALS_DIRECTORY/<credentialName>
// (systemd LoadCredential=) or else `dsnFile`, a file of mode 0600 or
// stricter owned by the daemon's user: never argv or the environment.
[[nodiscard]] SecretString loadDsn(const std::string& credentialName, const std::string& dsnFile);

}  // namespace twofactor::store
