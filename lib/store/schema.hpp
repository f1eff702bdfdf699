// The schema, its migrations and every SQL statement the store runs, side by side.
// All statements are parameterised; SQLCipher 3.4.1 is SQLite 3.15.2 (no UPSERT,
// no RETURNING, no json1, no window functions).
#pragma once

namespace twofactor::store::sql {

// migrations[i] takes the database from user_version i to i + 1.
inline constexpr const char* kMigrations[] = {
    // 1: requests.
    R"sql(
CREATE TABLE requests (
    id            TEXT PRIMARY KEY NOT NULL,
    app           TEXT NOT NULL,
    channel       TEXT NOT NULL,
    destination   TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    locale        TEXT NOT NULL,
    client_ip     TEXT NOT NULL DEFAULT '',
    device        TEXT NOT NULL DEFAULT '',
    reference     TEXT NOT NULL DEFAULT '',
    code_hash     BLOB,
    code_length   INTEGER NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    sends         INTEGER NOT NULL,
    max_sends     INTEGER NOT NULL,
    ttl           INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    failure       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX requests_by_subject ON requests (app, subject_hash, status);
CREATE INDEX requests_by_created ON requests (created_at);
)sql",
};

inline constexpr const char* kRequestColumns =
    "id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure";

inline constexpr const char* kSelectRequest =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure FROM requests WHERE id = ?1";

inline constexpr const char* kSelectNewestPending =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure FROM requests WHERE app = ?1 AND subject_hash = ?2 AND status = 'pending' "
    "ORDER BY rowid DESC LIMIT 1";

inline constexpr const char* kInsertRequest =
    "INSERT INTO requests (id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, "
    "reference, code_hash, code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, "
    "expires_at, updated_at, finished_at, failure) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, "
    "?23)";

inline constexpr const char* kUpdateRequest =
    "UPDATE requests SET code_hash = ?2, status = ?3, attempts = ?4, sends = ?5, expires_at = ?6, updated_at = ?7, "
    "finished_at = ?8, failure = ?9 WHERE id = ?1";

}  // namespace twofactor::store::sql
