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
    // 2: the delivery log.
    R"sql(
CREATE TABLE deliveries (
    id                  INTEGER PRIMARY KEY,
    request_id          TEXT NOT NULL,
    app                 TEXT NOT NULL,
    channel             TEXT NOT NULL,
    driver              TEXT NOT NULL,
    send_no             INTEGER NOT NULL,
    attempt_no          INTEGER NOT NULL,
    at                  INTEGER NOT NULL,
    outcome             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL DEFAULT '',
    status_code         INTEGER NOT NULL DEFAULT 0,
    duration_ms         INTEGER NOT NULL DEFAULT 0,
    error_class         TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',
    ambiguous           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_by_request ON deliveries (request_id, id);
CREATE INDEX deliveries_by_time ON deliveries (at);
)sql",
    // 3: WhatsApp: the opt-out list, provider status updates, email fallback.
    R"sql(
CREATE TABLE optouts (
    subject_hash  TEXT PRIMARY KEY NOT NULL,
    destination   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    source        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT ''
);
ALTER TABLE deliveries ADD COLUMN provider_status TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN provider_status_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN provider_error TEXT NOT NULL DEFAULT '';
CREATE INDEX deliveries_by_provider_id ON deliveries (provider_message_id);
ALTER TABLE requests ADD COLUMN fallback_destination TEXT NOT NULL DEFAULT '';
)sql",
    // 4: rate limits (fixed-window counters) and the per-subject failure lockout.
    // Keys are "APP/HASH" with keyed hashes, or the app name: no address or IP in clear.
    R"sql(
CREATE TABLE rate_counters (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE subject_failures (
    app           TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, subject_hash)
);
)sql",
    // 5: the audit log: append-only, each record sealed with an HMAC over its
    // fields and the previous record's hash (lib/otp/audit.hpp). The triggers
    // refuse changes through SQL; the chain finds changes made around them.
    R"sql(
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY NOT NULL,
    at          INTEGER NOT NULL,
    app         TEXT NOT NULL DEFAULT '',
    event       TEXT NOT NULL,
    uid         INTEGER NOT NULL DEFAULT -1,
    outcome     TEXT NOT NULL,
    request_id  TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
)sql",
    // 6: fraud signals: per-window sets of keyed hashes (lib/otp/fraud.hpp),
    // each member forgotten at expires_at; and the request log (one row per
    // Varlink call). request_log is purged after the delivery-log period
    // (kPurge below).
    R"sql(
CREATE TABLE fraud_sets (
    rule        TEXT NOT NULL,
    key         TEXT NOT NULL,
    member      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (rule, key, member)
);
CREATE INDEX fraud_sets_by_expiry ON fraud_sets (expires_at);
CREATE TABLE request_log (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    method       TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    result       TEXT NOT NULL,
    uid          INTEGER NOT NULL
);
CREATE INDEX request_log_by_time ON request_log (at);
)sql",
    // 7: retention runs (issue 5): one row per purge, with the rows purged per category.
    R"sql(
CREATE TABLE retention_runs (
    id                INTEGER PRIMARY KEY,
    started           INTEGER NOT NULL,
    finished          INTEGER NOT NULL,
    trigger           TEXT NOT NULL,
    code_hashes       INTEGER NOT NULL,
    deliveries        INTEGER NOT NULL,
    request_log       INTEGER NOT NULL,
    client_data       INTEGER NOT NULL,
    rate_counters     INTEGER NOT NULL,
    fraud_sets        INTEGER NOT NULL,
    subject_failures  INTEGER NOT NULL
);
)sql",
};

inline constexpr const char* kInsertRetentionRun =
    "INSERT INTO retention_runs (started, finished, trigger, code_hashes, deliveries, request_log, client_data, "
    "rate_counters, fraud_sets, subject_failures) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
inline constexpr const char* kSelectLastRetentionRun =
    "SELECT id, started, finished, trigger, code_hashes, deliveries, request_log, client_data, rate_counters, "
    "fraud_sets, subject_failures FROM retention_runs ORDER BY id DESC LIMIT 1";

// Retention purges, one pair per category (store::PurgeKind order): the batch
// (?1 cutoff, ?2 at most this many rows; DELETE ... LIMIT is not compiled into
// SQLCipher 3.4.1, hence the rowid subqueries) and the dry run's count (?1).
struct PurgeSql {
    const char* purge;
    const char* count;
};
#define TF_PURGE(action, table, cond)                                                                   \
    PurgeSql {                                                                                          \
        action " WHERE rowid IN (SELECT rowid FROM " table " WHERE " cond " LIMIT ?2)",                 \
            "SELECT count(*) FROM " table " WHERE " cond                                                 \
    }
inline constexpr PurgeSql kPurge[] = {
    // code hashes: ?1 = now - code_hashes
    TF_PURGE("UPDATE requests SET code_hash = NULL", "requests",
             "code_hash IS NOT NULL AND (finished_at <= ?1 OR expires_at <= ?1)"),
    // deliveries, request log, client data: ?1 = now - delivery_logs
    TF_PURGE("DELETE FROM deliveries", "deliveries", "at < ?1"),
    TF_PURGE("DELETE FROM request_log", "request_log", "at < ?1"),
    TF_PURGE("UPDATE requests SET client_ip = '', device = ''", "requests",
             "created_at < ?1 AND (client_ip <> '' OR device <> '')"),
    // rate counters: ?1 = now - 86400 (no window or cooldown is longer than a day)
    TF_PURGE("DELETE FROM rate_counters", "rate_counters", "last_at <= ?1"),
    // fraud set members: ?1 = now
    TF_PURGE("DELETE FROM fraud_sets", "fraud_sets", "expires_at <= ?1"),
    // subject failures: ?1 = now - delivery_logs; no longer locked, no request since
    TF_PURGE("DELETE FROM subject_failures", "subject_failures",
             "locked_until < ?1 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.app = subject_failures.app "
             "AND r.subject_hash = subject_failures.subject_hash AND r.created_at >= ?1)"),
};
#undef TF_PURGE

inline constexpr const char* kSelectFraudMembers =
    "SELECT member, at FROM fraud_sets WHERE rule = ?1 AND key = ?2 AND at > ?3";
inline constexpr const char* kPutFraudMember =
    "INSERT OR REPLACE INTO fraud_sets (rule, key, member, at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* kExpireFraudMembers =
    "DELETE FROM fraud_sets WHERE rule = ?1 AND key = ?2 AND expires_at <= ?3";

inline constexpr const char* kInsertRequestLog =
    "INSERT INTO request_log (at, method, duration_ms, result, uid) VALUES (?1, ?2, ?3, ?4, ?5)";
// ?1 since or NULL, ?2 until or NULL, ?3 limit: the newest rows that match,
// returned oldest first by the caller's reversal.
inline constexpr const char* kSelectRequestLog =
    "SELECT id, at, method, duration_ms, result, uid FROM request_log "
    "WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2) ORDER BY id DESC LIMIT ?3";

inline constexpr const char* kSelectLastAudit =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash FROM audit "
    "ORDER BY seq DESC LIMIT 1";
inline constexpr const char* kInsertAudit =
    "INSERT INTO audit (seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
// ?1 after seq, ?2 since or NULL, ?3 until or NULL, ?4 app or NULL, ?5 outcome
// or NULL, ?6 outcome prefix or NULL (e.g. 'refused:'), ?7 limit.
inline constexpr const char* kSelectAudit =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash FROM audit "
    "WHERE seq > ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) AND (?4 IS NULL OR app = ?4) "
    "AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR substr(outcome, 1, length(?6)) = ?6) "
    "ORDER BY seq LIMIT ?7";

inline constexpr const char* kSelectRateCounter =
    "SELECT window_start, count, last_at FROM rate_counters WHERE scope = ?1 AND key = ?2";
inline constexpr const char* kPutRateCounter =
    "INSERT OR REPLACE INTO rate_counters (scope, key, window_start, count, last_at) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* kSelectSubjectFailures =
    "SELECT failures, locked_until FROM subject_failures WHERE app = ?1 AND subject_hash = ?2";
inline constexpr const char* kPutSubjectFailures =
    "INSERT OR REPLACE INTO subject_failures (app, subject_hash, failures, locked_until) VALUES (?1, ?2, ?3, ?4)";
inline constexpr const char* kDeleteSubjectFailures =
    "DELETE FROM subject_failures WHERE app = ?1 AND subject_hash = ?2";

inline constexpr const char* kInsertDelivery =
    "INSERT INTO deliveries (request_id, app, channel, driver, send_no, attempt_no, at, outcome, "
    "provider_message_id, status_code, duration_ms, error_class, error, ambiguous) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

// ?1 request id or NULL, ?2 since or NULL, ?3 until or NULL, ?4 limit. The
// newest rows that match, returned oldest first by the caller's reversal.
inline constexpr const char* kSelectDeliveries =
    "SELECT id, request_id, app, channel, driver, send_no, attempt_no, at, outcome, provider_message_id, "
    "status_code, duration_ms, error_class, error, ambiguous, provider_status, provider_status_at, provider_error "
    "FROM deliveries WHERE (?1 IS NULL OR request_id = ?1) AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) "
    "ORDER BY id DESC LIMIT ?4";

// A provider's later word on a message (WhatsApp webhook statuses). "read" may
// arrive without "delivered", and late updates must not undo later ones: only
// a newer timestamp replaces an older one.
inline constexpr const char* kUpdateDeliveryStatus =
    "UPDATE deliveries SET provider_status = ?2, provider_status_at = ?3, provider_error = ?4 "
    "WHERE provider_message_id = ?1 AND provider_message_id <> '' AND provider_status_at <= ?3";

inline constexpr const char* kSelectOptOut =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts WHERE subject_hash = ?1";
inline constexpr const char* kInsertOptOut =
    "INSERT OR REPLACE INTO optouts (subject_hash, destination, created_at, source, reason) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* kDeleteOptOut = "DELETE FROM optouts WHERE subject_hash = ?1";
inline constexpr const char* kListOptOuts =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts ORDER BY created_at, destination "
    "LIMIT ?1";

inline constexpr const char* kSelectRequest =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure, fallback_destination FROM requests WHERE id = ?1";

inline constexpr const char* kSelectNewestPending =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure, fallback_destination FROM requests WHERE app = ?1 AND subject_hash = ?2 AND status = 'pending' "
    "ORDER BY rowid DESC LIMIT 1";

inline constexpr const char* kInsertRequest =
    "INSERT INTO requests (id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, "
    "reference, code_hash, code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, "
    "expires_at, updated_at, finished_at, failure, fallback_destination) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, "
    "?23, ?24)";

inline constexpr const char* kUpdateRequest =
    "UPDATE requests SET code_hash = ?2, status = ?3, attempts = ?4, sends = ?5, expires_at = ?6, updated_at = ?7, "
    "finished_at = ?8, failure = ?9, channel = ?10 WHERE id = ?1";

}  // namespace twofactor::store::sql
