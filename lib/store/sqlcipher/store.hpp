// The SQLCipher backend: an encrypted SQLite file in WAL mode with a single
// group-committing writer thread.
#pragma once

#include "store/store.hpp"
#include "util/secret.hpp"

#include <memory>
#include <string>

namespace twofactor::store {

struct SqlcipherOptions {
    std::string path;
    SecretBytes key;               // raw 256-bit key
    bool synchronousFull = true;   // PRAGMA synchronous = FULL (else NORMAL)
    int cacheMiB = 16;             // the writer's page cache (PRAGMA cache_size), [store] cache_size
    std::size_t maxBatch = 512;    // work items per group transaction
    // Work items waiting for the writer before submit refuses with StoreBusy;
    // the daemon runs at most one call per connection, so this is far above
    // what max_connections_per_uid lets one uid queue.
    std::size_t maxQueued = 4096;
};

// Opens (creating if needed) and migrates the database, then starts the
// writer. Throws std::runtime_error when the key is wrong or the file is not
// a twofactor database.
[[nodiscard]] std::unique_ptr<Store> openSqlcipherStore(SqlcipherOptions options);

// Whether `key` opens the existing database at `path` (a fresh connection
// reads its schema): at start, to settle a key rotation a crash interrupted.
[[nodiscard]] bool keyOpensDatabase(const std::string& path, const SecretBytes& key);

// The schema version this build writes.
[[nodiscard]] int schemaVersion();

}  // namespace twofactor::store
