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
    // 8: data-subject requests and the remaining retention policies (issue 5).
    // - subject_flags: restriction (GDPR Art. 18) and objection (Art. 21) per keyed subject hash.
    // - privacy_requests: the register of data-subject requests (subject only as its keyed hash).
    // - apps: every app the configuration named, and when it left it (all its data goes
    //   [retention] removed_apps later).
    // - audit format 2: the chain seals a per-record commitment to the subject, so a
    //   subject can be erased without breaking the chain; the triggers allow exactly
    //   that change, and the deletion of the oldest records by retention (through
    //   audit_gate, which also keeps the anchor the chain resumes from).
    // - partial indexes so that retention batches and subject lookups never rescan
    //   rows they already handled.
    R"sql(
CREATE TABLE subject_flags (
    subject_hash   TEXT PRIMARY KEY NOT NULL,
    restricted_at  INTEGER,
    objected_at    INTEGER
);
CREATE TABLE privacy_requests (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    received      INTEGER NOT NULL,
    due           INTEGER NOT NULL,
    completed     INTEGER,
    uid           INTEGER NOT NULL,
    note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX privacy_requests_by_subject ON privacy_requests (subject_hash, kind);
CREATE TABLE apps (
    name        TEXT PRIMARY KEY NOT NULL,
    first_seen  INTEGER NOT NULL,
    removed_at  INTEGER
);
ALTER TABLE audit ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN subject_nonce TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN subject_commit TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_by_subject ON audit (subject) WHERE subject <> '';
CREATE INDEX audit_by_app ON audit (app) WHERE subject <> '';
CREATE TABLE audit_gate (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    prune_before  INTEGER NOT NULL,
    anchor_seq    INTEGER NOT NULL,
    anchor_hash   TEXT NOT NULL
);
INSERT INTO audit_gate VALUES (1, 0, 0, '0000000000000000000000000000000000000000000000000000000000000000');
DROP TRIGGER audit_no_update;
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
WHEN NOT (new.subject = '' AND new.subject_nonce IN ('', 'erased') AND new.seq = old.seq AND new.at = old.at
          AND new.app = old.app AND new.event = old.event AND new.uid = old.uid AND new.outcome = old.outcome
          AND new.request_id = old.request_id AND new.detail = old.detail AND new.prev_hash = old.prev_hash
          AND new.hash = old.hash AND new.format = old.format AND new.subject_commit = old.subject_commit)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only (only a subject can be erased)'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN old.seq > (SELECT prune_before FROM audit_gate WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only (only retention prunes the oldest)'); END;
ALTER TABLE retention_runs ADD COLUMN auth_metadata INTEGER NOT NULL DEFAULT 0;
ALTER TABLE retention_runs ADD COLUMN audit_records INTEGER NOT NULL DEFAULT 0;
ALTER TABLE retention_runs ADD COLUMN removed_apps INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_live_code ON requests (expires_at) WHERE code_hash IS NOT NULL;
CREATE INDEX requests_identified ON requests (created_at) WHERE destination <> '';
CREATE INDEX requests_by_fallback ON requests (fallback_destination) WHERE fallback_destination <> '';
CREATE INDEX requests_by_subject_only ON requests (subject_hash);
CREATE INDEX deliveries_by_app ON deliveries (app);
)sql",
    // 9: subjects are found through (app, subject_hash) for every app in
    // `apps`, which holds every app that ever had a request (insertRequest
    // adds it): one index keyed by random hashes fewer to write on every send
    // and every purged request.
    R"sql(
INSERT OR IGNORE INTO apps (name, first_seen, removed_at)
    SELECT app, min(created_at), NULL FROM requests GROUP BY app;
INSERT OR IGNORE INTO apps (name, first_seen, removed_at)
    SELECT app, 0, NULL FROM subject_failures GROUP BY app;
DROP INDEX requests_by_subject_only;
)sql",
    // 10: fraud rules count a set's members within the window through
    // (rule, key, at), reading no more rows than the rule's threshold
    // (kCountFraudMembers), however many sends the set has seen. Retention
    // finds the rate counters to forget through last_at: without an index
    // every batch walked over all the live counters again.
    R"sql(
CREATE INDEX fraud_sets_by_time ON fraud_sets (rule, key, at);
CREATE INDEX rate_counters_by_last ON rate_counters (last_at);
)sql",
    // 11: delivery jobs: what survives a crash of the daemon delivering a send.
    // One row per request (its current send), never the code: a daemon that
    // takes a job over generates a fresh one. due_at is when anyone should look
    // at the job next (the retry time, or the end of a live lease, whichever is
    // later), so the periodic sweep reads only due rows through one index;
    // holder finds the jobs of a daemon that restarted on the same node.
    R"sql(
CREATE TABLE delivery_jobs (
    request_id   TEXT PRIMARY KEY NOT NULL,
    send_no      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at     INTEGER NOT NULL,
    holder       TEXT NOT NULL DEFAULT '',
    lease_until  INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX delivery_jobs_due ON delivery_jobs (due_at);
CREATE INDEX delivery_jobs_by_holder ON delivery_jobs (holder) WHERE holder <> '';
)sql",
    // 12: tamper evidence. Each retention cut of the audit log seals the
    // anchor it leaves with the audit key (lib/otp/audit.hpp); an anchor cut
    // before this has no seal, and is marked 'legacy' for the daemon to seal as
    // found on its next start, in the open (an "audit-anchor" record). The
    // genesis anchor needs none. Deliveries record who each attempt handed
    // the address to (provider, region), so that a GDPR answer names the
    // recipients that received it, whatever the configuration says later.
    R"sql(
ALTER TABLE audit_gate ADD COLUMN anchor_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_gate ADD COLUMN anchor_seal TEXT NOT NULL DEFAULT '';
UPDATE audit_gate SET anchor_seal = 'legacy' WHERE anchor_seq > 0;
ALTER TABLE deliveries ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN region TEXT NOT NULL DEFAULT '';
)sql",
    // 13: a subject's address is matched without case in its local part (as
    // it always was in its domain), and so is the email fallback other
    // requests hold in the clear: "John@x" given to a GDPR request finds the
    // requests that fell back to "john@x". NOCASE folds ASCII only, which the
    // address's domain (A-labels) and nearly every local part are.
    R"sql(
DROP INDEX requests_by_fallback;
CREATE INDEX requests_by_fallback ON requests (fallback_destination COLLATE NOCASE) WHERE fallback_destination <> '';
)sql",
    // 14: transaction binding. A bound code's context
    // is hashed into code_hash; the request keeps only a keyed digest of it,
    // for audit and so that a resend or a takeover knows the code is bound.
    R"sql(
ALTER TABLE requests ADD COLUMN context_digest TEXT NOT NULL DEFAULT '';
)sql",
    // 15: the HTTPS API: API keys, stored as a keyed hash of their secret and
    // found by their public id; Idempotency-Key records (the first answer of a
    // call, kept 24 h, never a code); and the request log learns which key
    // and client address a call came from and the HTTP status it got.
    R"sql(
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    app           TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    created_by    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL DEFAULT 0,
    revoked_at    INTEGER NOT NULL DEFAULT 0,
    last_used_at  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE idempotency_keys (
    key_id      TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    response    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_at);
ALTER TABLE request_log ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN status INTEGER NOT NULL DEFAULT 0;
)sql",
    // 16: the email suppression list: addresses that bounced for good or
    // complained, as the keyed hash of their match form only (no address);
    // kept until removed, longer than the delivery log, so that it goes on
    // protecting the sender's reputation. And per app and hour, the counts
    // of email sends, bounces and complaints behind the rates `twofactor
    // stats` shows (8 days of hours, pruned as they are counted).
    R"sql(
CREATE TABLE email_suppressions (
    address_hash  TEXT PRIMARY KEY NOT NULL,
    reason        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '',
    at            INTEGER NOT NULL,
    source        TEXT NOT NULL,
    message_id    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX email_suppressions_by_time ON email_suppressions (at);
CREATE TABLE email_feedback (
    app         TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    sends       INTEGER NOT NULL DEFAULT 0,
    bounces     INTEGER NOT NULL DEFAULT 0,
    complaints  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, hour)
);
)sql",
    // 17: outgoing event webhooks. event_jobs is the queue (one row per event
    // not yet delivered or given up; the payload never holds a code or a full
    // address), claimed under leases like delivery_jobs through due_at; an
    // app's events wait with due_at = kEventParked while its endpoint is
    // disabled. event_attempts logs every try (kept like the delivery log);
    // event_endpoints holds each app's consecutive failures (one row per app).
    R"sql(
CREATE TABLE event_jobs (
    id           TEXT PRIMARY KEY NOT NULL,
    app          TEXT NOT NULL,
    type         TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at     INTEGER NOT NULL,
    holder       TEXT NOT NULL DEFAULT '',
    lease_until  INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_jobs_due ON event_jobs (due_at);
CREATE INDEX event_jobs_by_holder ON event_jobs (holder) WHERE holder <> '';
CREATE INDEX event_jobs_by_app ON event_jobs (app);
CREATE INDEX event_jobs_by_time ON event_jobs (created_at);
CREATE TABLE event_attempts (
    id           INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    app          TEXT NOT NULL,
    type         TEXT NOT NULL,
    attempt_no   INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    status_code  INTEGER NOT NULL DEFAULT 0,
    duration_ms  INTEGER NOT NULL DEFAULT 0,
    error        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_attempts_by_time ON event_attempts (at);
CREATE INDEX event_attempts_by_event ON event_attempts (event_id);
CREATE TABLE event_endpoints (
    app          TEXT PRIMARY KEY NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    disabled_at  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT ''
);
)sql",
    // 18: lease-row singletons (the retention schedule) and the node
    // registry, as on PostgreSQL: `twofactor cluster status` reads the same
    // tables on both backends; here they hold the one local daemon.
    R"sql(
CREATE TABLE leases (
    name        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    slot        INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE nodes (
    id         TEXT PRIMARY KEY NOT NULL,
    host       TEXT NOT NULL,
    version    TEXT NOT NULL,
    started    INTEGER NOT NULL,
    heartbeat  INTEGER NOT NULL
);
CREATE INDEX nodes_by_heartbeat ON nodes (heartbeat);
)sql",
    // 19: the store-key version a node seals under (0 here: the whole file
    // is under one key), kept for `cluster status` as on PostgreSQL.
    R"sql(
ALTER TABLE nodes ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
)sql",
};

// Writes that need no statement journal. Inside the writer's transaction an
// UPDATE with the default conflict action (ABORT), and an INSERT OR REPLACE,
// make SQLite copy every page they touch to the statement journal first, so
// that a constraint failure can undo that one statement; SQLCipher encrypts
// and HMACs each copy. Nothing here needs the statement undone alone: a
// failing statement fails its work item, which rolls back whole. So updates
// say OR FAIL (the same as ABORT for a statement that fails before it changes
// a row, and a failed one is rolled back with its item anyway), and a row that
// is replaced is updated, then inserted if there was none (kUpdateX + kInsertX).

// Event webhooks (migration 17). due_at of an event that waits for its
// endpoint to be enabled again: never due.
#define TF_EVENT_PARKED "9000000000000000000"
#define TF_EVENT_COLUMNS \
    "id, app, type, request_id, payload, created_at, attempts, retry_at, holder, lease_until, last_error"
// ?1 id, ?2 app, ?3 type, ?4 request, ?5 payload, ?6 created, ?7 retry at
inline constexpr const char* kEnqueueEvent =
    "INSERT INTO event_jobs (id, app, type, request_id, payload, created_at, retry_at, due_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN EXISTS (SELECT 1 FROM event_endpoints WHERE app = ?2 "
    "AND disabled_at <> 0) THEN " TF_EVENT_PARKED " ELSE ?7 END)";
// Claim candidates: ?1 now, ?2 limit ...
inline constexpr const char* kSelectDueEvents =
    "SELECT " TF_EVENT_COLUMNS " FROM event_jobs WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2";
// ... and those of another start of this node: ?1 <= holder < ?2, ?3 this holder, ?4 limit.
inline constexpr const char* kSelectOrphanedEvents =
    "SELECT " TF_EVENT_COLUMNS " FROM event_jobs WHERE holder >= ?1 AND holder < ?2 AND holder <> ?3 "
    "AND holder <> '' AND due_at < " TF_EVENT_PARKED " LIMIT ?4";
// The claim, conditional on the event being due or orphaned still: ?1 id,
// ?2 holder, ?3 lease until, ?4 now, ?5/?6 the node's range.
inline constexpr const char* kClaimEvent =
    "UPDATE OR FAIL event_jobs SET holder = ?2, lease_until = ?3, due_at = max(retry_at, ?3) "
    "WHERE id = ?1 AND due_at < " TF_EVENT_PARKED " AND (due_at <= ?4 OR (holder >= ?5 AND holder < ?6 "
    "AND holder <> ?2 AND holder <> ''))";
// ?1 id, ?2 holder, ?3 attempts, ?4 retry at, ?5 error. The event is free from
// retry_at on; parked if its endpoint was disabled meanwhile.
inline constexpr const char* kRetryEvent =
    "UPDATE OR FAIL event_jobs SET attempts = ?3, retry_at = ?4, holder = '', lease_until = 0, last_error = ?5, "
    "due_at = CASE WHEN EXISTS (SELECT 1 FROM event_endpoints e WHERE e.app = event_jobs.app AND e.disabled_at <> 0) "
    "THEN " TF_EVENT_PARKED " ELSE ?4 END WHERE id = ?1 AND holder = ?2";
// ?1 id, ?2 holder
inline constexpr const char* kFinishEvent = "DELETE FROM event_jobs WHERE id = ?1 AND holder = ?2";
// ?1 event, ?2 app, ?3 type, ?4 attempt, ?5 at, ?6 outcome, ?7 status, ?8 duration, ?9 error
inline constexpr const char* kInsertEventAttempt =
    "INSERT INTO event_attempts (event_id, app, type, attempt_no, at, outcome, status_code, duration_ms, error) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
#define TF_EVENT_ATTEMPT_COLUMNS \
    "id, event_id, app, type, attempt_no, at, outcome, status_code, duration_ms, error"
// ?1 app or NULL, ?2 failed only (0/1), ?3 limit: the newest that match.
inline constexpr const char* kSelectEventAttempts =
    "SELECT " TF_EVENT_ATTEMPT_COLUMNS " FROM event_attempts WHERE (?1 IS NULL OR app = ?1) "
    "AND (?2 = 0 OR outcome <> 'delivered') ORDER BY id DESC LIMIT ?3";
// The same for one event (?4) through event_attempts_by_event.
inline constexpr const char* kSelectEventAttemptsOfEvent =
    "SELECT " TF_EVENT_ATTEMPT_COLUMNS " FROM event_attempts WHERE event_id = ?4 AND (?1 IS NULL OR app = ?1) "
    "AND (?2 = 0 OR outcome <> 'delivered') ORDER BY id DESC LIMIT ?3";
// Consecutive failures, counted in SQL: ?1 app, ?2 error.
inline constexpr const char* kEnsureEventEndpoint =
    "INSERT OR IGNORE INTO event_endpoints (app, failures, disabled_at, last_error) VALUES (?1, 0, 0, '')";
inline constexpr const char* kCountEventFailure =
    "UPDATE OR FAIL event_endpoints SET failures = failures + 1, last_error = ?2 WHERE app = ?1";
// The failure that reaches the limit turns the endpoint off, once: ?1 app, ?2 now, ?3 max failures.
inline constexpr const char* kDisableEventEndpoint =
    "UPDATE OR FAIL event_endpoints SET disabled_at = ?2 WHERE app = ?1 AND disabled_at = 0 AND failures >= ?3";
inline constexpr const char* kSelectEventEndpoint =
    "SELECT app, failures, disabled_at, last_error FROM event_endpoints WHERE app = ?1";
// ?1 app: its waiting events (not the one in flight, parked by kRetryEvent).
inline constexpr const char* kParkEvents =
    "UPDATE OR FAIL event_jobs SET due_at = " TF_EVENT_PARKED " WHERE app = ?1 AND holder = ''";
// A delivery resets the count of an endpoint still on: ?1 app.
inline constexpr const char* kClearEventFailures =
    "UPDATE OR FAIL event_endpoints SET failures = 0 WHERE app = ?1 AND disabled_at = 0 AND failures <> 0";
// ?1 app, ?2 now
inline constexpr const char* kEnableEventEndpoint =
    "UPDATE OR FAIL event_endpoints SET disabled_at = 0, failures = 0 WHERE app = ?1 AND disabled_at <> 0";
inline constexpr const char* kUnparkEvents =
    "UPDATE OR FAIL event_jobs SET due_at = ?2, retry_at = ?2 WHERE app = ?1 AND due_at = " TF_EVENT_PARKED;
inline constexpr const char* kListEventEndpoints =
    "SELECT app, failures, disabled_at, last_error FROM event_endpoints ORDER BY app";
// Pending requests past their expiry, through requests_live_code (a pending
// request still has its code hash): ?1 now, ?2 limit.
inline constexpr const char* kSelectExpiredPending =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure, fallback_destination FROM requests WHERE code_hash IS NOT NULL AND expires_at <= ?1 "
    "AND status = 'pending' ORDER BY expires_at LIMIT ?2";
#undef TF_EVENT_ATTEMPT_COLUMNS
#undef TF_EVENT_COLUMNS
#undef TF_EVENT_PARKED

// Lease rows: ?1 name, ?2 holder, ?3 slot, ?4 now, ?5 until. The row exists
// first (an empty holder, slot -1), then one conditional UPDATE takes it.
inline constexpr const char* kEnsureLease =
    "INSERT OR IGNORE INTO leases (name, holder, slot, expires_at) VALUES (?1, '', -1, 0)";
inline constexpr const char* kTakeLease =
    "UPDATE OR FAIL leases SET holder = ?2, slot = ?3, expires_at = ?5 WHERE name = ?1 AND slot < ?3 "
    "AND (expires_at <= ?4 OR holder = ?2 OR holder = '')";
inline constexpr const char* kListLeases =
    "SELECT name, holder, slot, expires_at FROM leases WHERE holder <> '' ORDER BY name LIMIT ?1";
inline constexpr const char* kHeartbeatNode =
    "INSERT OR REPLACE INTO nodes (id, host, version, started, heartbeat, key_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
inline constexpr const char* kForgetNode = "DELETE FROM nodes WHERE id = ?1";
inline constexpr const char* kListNodes =
    "SELECT id, host, version, started, heartbeat, key_version FROM nodes WHERE heartbeat >= ?1 "
    "ORDER BY heartbeat DESC LIMIT ?2";

// Delivery jobs. The contract is one of outcomes (claim if free or expired,
// finish if still held), each a single conditional statement, so a backend
// with many writers gives the same answers as this single writer.
#define TF_JOB_COLUMNS \
    "request_id, send_no, attempts, retry_at, holder, lease_until, expires_at, created_at, last_error"
// ?1 request, ?2 send, ?3 attempts, ?4 retry at, ?5 holder, ?6 lease until, ?7 expires, ?8 created, ?9 error
inline constexpr const char* kUpdateDeliveryJob =
    "UPDATE OR FAIL delivery_jobs SET send_no = ?2, attempts = ?3, retry_at = ?4, holder = ?5, lease_until = ?6, "
    "expires_at = ?7, created_at = ?8, last_error = ?9, due_at = max(?4, ?6) WHERE request_id = ?1";
inline constexpr const char* kInsertDeliveryJob =
    "INSERT INTO delivery_jobs (" TF_JOB_COLUMNS ", due_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, max(?4, ?6))";
inline constexpr const char* kSelectDeliveryJob = "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE request_id = ?1";
// Claim candidates: ?1 now, ?2 limit (due ones, oldest due first) ...
inline constexpr const char* kSelectDueJobs =
    "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2";
// ... and those held by another start of this node: ?1 <= holder < ?2 (the
// node's prefix range), ?3 this holder, ?4 limit.
inline constexpr const char* kSelectOrphanedJobs =
    "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE holder >= ?1 AND holder < ?2 AND holder <> ?3 "
    "AND holder <> '' LIMIT ?4";
// The claim itself, conditional on the job still being due or orphaned as
// seen: ?1 request, ?2 new holder, ?3 lease until, ?4 now, ?5/?6 node range.
inline constexpr const char* kClaimDeliveryJob =
    "UPDATE OR FAIL delivery_jobs SET holder = ?2, lease_until = ?3, due_at = max(retry_at, ?3) "
    "WHERE request_id = ?1 AND (due_at <= ?4 OR (holder >= ?5 AND holder < ?6 AND holder <> ?2 AND holder <> ''))";
// ?1 request, ?2 send, ?3 holder, ?4 lease until
inline constexpr const char* kRenewDeliveryLease =
    "UPDATE OR FAIL delivery_jobs SET lease_until = ?4, due_at = max(retry_at, ?4) "
    "WHERE request_id = ?1 AND send_no = ?2 AND holder = ?3";
// ?1 request, ?2 send, ?3 holder, ?4 attempts, ?5 retry at, ?6 lease until, ?7 error
inline constexpr const char* kRecordDeliveryRetry =
    "UPDATE OR FAIL delivery_jobs SET attempts = ?4, retry_at = ?5, lease_until = ?6, due_at = max(?5, ?6), "
    "last_error = ?7 WHERE request_id = ?1 AND send_no = ?2 AND holder = ?3";
// ?1 request, ?2 send, ?3 holder
inline constexpr const char* kFinishDeliveryJob =
    "DELETE FROM delivery_jobs WHERE request_id = ?1 AND send_no = ?2 AND holder = ?3";
inline constexpr const char* kEndDeliveryJob = "DELETE FROM delivery_jobs WHERE request_id = ?1";
// ?1 limit: soonest due first (one request's job is kSelectDeliveryJob)
inline constexpr const char* kListDeliveryJobs =
    "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs ORDER BY due_at LIMIT ?1";
#undef TF_JOB_COLUMNS

inline constexpr const char* kInsertRetentionRun =
    "INSERT INTO retention_runs (started, finished, trigger, code_hashes, deliveries, request_log, client_data, "
    "rate_counters, fraud_sets, subject_failures, auth_metadata, audit_records, removed_apps) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
inline constexpr const char* kSelectLastRetentionRun =
    "SELECT id, started, finished, trigger, code_hashes, deliveries, request_log, client_data, rate_counters, "
    "fraud_sets, subject_failures, auth_metadata, audit_records, removed_apps FROM retention_runs "
    "WHERE id = (SELECT max(id) FROM retention_runs)";

// Retention purges, per category (store::PurgeKind order): up to four
// statements, each a batch (?1 cutoff, ?2 at most this many rows; DELETE ...
// LIMIT is not compiled into SQLCipher 3.4.1, hence the rowid subqueries) with
// its dry run's count (?1). Every condition is served by an index whose rows
// leave it once handled, so a batch never rescans what earlier ones did.
struct PurgeSql {
    const char* purge[4];
    const char* count[4];
};
#define TF_BATCH(action, table, cond) action " WHERE rowid IN (SELECT rowid FROM " table " WHERE " cond " LIMIT ?2)"
#define TF_COUNT(table, cond) "SELECT count(*) FROM " table " WHERE " cond
// Restricted subjects (GDPR Art. 18): their data stays as it is.
// The first test is evaluated once per statement, so without restrictions
// (the usual case) no row pays for the second.
#define TF_NO_RESTRICTIONS "NOT EXISTS (SELECT 1 FROM subject_flags WHERE restricted_at IS NOT NULL)"
#define TF_NOT_RESTRICTED                                                                                \
    "(" TF_NO_RESTRICTIONS " OR subject_hash NOT IN (SELECT subject_hash FROM subject_flags WHERE restricted_at " \
    "IS NOT NULL))"
#define TF_NOT_RESTRICTED_REQUEST                                                                               \
    "(" TF_NO_RESTRICTIONS " OR NOT EXISTS (SELECT 1 FROM requests r, subject_flags f WHERE r.id = "          \
    "deliveries.request_id AND f.subject_hash = r.subject_hash AND f.restricted_at IS NOT NULL))"
#define TF_REMOVED_APPS "(SELECT name FROM apps WHERE removed_at IS NOT NULL AND removed_at <= ?1)"
#define TF_PURGE1(action, table, cond) \
    PurgeSql { {TF_BATCH(action, table, cond), nullptr, nullptr, nullptr}, {TF_COUNT(table, cond), nullptr, nullptr, nullptr} }
// The requests the authentication-metadata purge deletes (cutoff `p`). It
// runs before the purges that only rewrite requests (store::kPurgeOrder), so
// that a store catching up does not rewrite rows it is about to delete; their
// dry-run counts leave these rows out (?2 = that purge's cutoff), as the run
// finds them gone.
#define TF_AUTH_EXPIRED(p) "created_at < " p " AND (status <> 'pending' OR expires_at < " p ") AND " TF_NOT_RESTRICTED
// Blanks the subject of audit records: the chain stays valid (lib/otp/audit.hpp).
#define TF_ERASE_AUDIT_SUBJECT \
    "UPDATE OR FAIL audit SET subject = '', subject_nonce = CASE format WHEN 1 THEN 'erased' ELSE '' END"
inline constexpr PurgeSql kPurge[] = {
    // code hashes: ?1 = now - code_hashes. A finished request has no hash left
    // (OtpRequest::finish), so only the expired ones that nobody touched remain.
    PurgeSql{{TF_BATCH("UPDATE OR FAIL requests SET code_hash = NULL", "requests", "code_hash IS NOT NULL AND expires_at <= ?1"),
              nullptr, nullptr, nullptr},
             {TF_COUNT("requests", "code_hash IS NOT NULL AND expires_at <= ?1 AND NOT (" TF_AUTH_EXPIRED("?2") ")"),
              nullptr, nullptr, nullptr}},
    // deliveries, request log, identifying data: ?1 = now - delivery_logs
    // ... and the event delivery log, and events never delivered (an endpoint
    // left disabled) as old as that.
    PurgeSql{{TF_BATCH("DELETE FROM deliveries", "deliveries", "at < ?1 AND " TF_NOT_RESTRICTED_REQUEST),
              TF_BATCH("DELETE FROM event_attempts", "event_attempts", "at < ?1"),
              TF_BATCH("DELETE FROM event_jobs", "event_jobs", "created_at < ?1"), nullptr},
             {TF_COUNT("deliveries", "at < ?1 AND " TF_NOT_RESTRICTED_REQUEST),
              TF_COUNT("event_attempts", "at < ?1"), TF_COUNT("event_jobs", "created_at < ?1"), nullptr}},
    TF_PURGE1("DELETE FROM request_log", "request_log", "at < ?1"),
    PurgeSql{{TF_BATCH("UPDATE OR FAIL requests SET destination = '', fallback_destination = '', reference = '', "
                       "client_ip = '', device = ''",
                       "requests", "destination <> '' AND created_at < ?1 AND " TF_NOT_RESTRICTED),
              nullptr, nullptr, nullptr},
             {TF_COUNT("requests", "destination <> '' AND created_at < ?1 AND " TF_NOT_RESTRICTED " AND NOT ("
                                   TF_AUTH_EXPIRED("?2") ")"),
              nullptr, nullptr, nullptr}},
    // rate counters: ?1 = now - 86400 (no window or cooldown is longer than a day)
    // ... and Idempotency-Key records, which hold their key for a day too.
    PurgeSql{{TF_BATCH("DELETE FROM rate_counters", "rate_counters", "last_at <= ?1"),
              TF_BATCH("DELETE FROM idempotency_keys", "idempotency_keys", "created_at < ?1"), nullptr, nullptr},
             {TF_COUNT("rate_counters", "last_at <= ?1"), TF_COUNT("idempotency_keys", "created_at < ?1"), nullptr,
              nullptr}},
    // fraud set members: ?1 = now
    TF_PURGE1("DELETE FROM fraud_sets", "fraud_sets", "expires_at <= ?1"),
    // subject failures: ?1 = now - delivery_logs; no longer locked, no request since
    TF_PURGE1("DELETE FROM subject_failures", "subject_failures",
              "locked_until < ?1 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.app = subject_failures.app "
              "AND r.subject_hash = subject_failures.subject_hash AND r.created_at >= ?1)"),
    // authentication metadata: ?1 = now - authentication_metadata
    TF_PURGE1("DELETE FROM requests", "requests", TF_AUTH_EXPIRED("?1")),
    // audit records: pruned from the head of the chain by code (Transaction::purgeStep), not here
    PurgeSql{{nullptr, nullptr, nullptr, nullptr}, {"SELECT count(*) FROM audit WHERE at < ?1", nullptr, nullptr, nullptr}},
    // removed apps: ?1 = now - removed_apps
    PurgeSql{{TF_BATCH("DELETE FROM deliveries", "deliveries", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED_REQUEST),
              TF_BATCH("DELETE FROM requests", "requests", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED),
              TF_BATCH("DELETE FROM subject_failures", "subject_failures", "app IN " TF_REMOVED_APPS),
              TF_BATCH(TF_ERASE_AUDIT_SUBJECT, "audit", "subject <> '' AND app IN " TF_REMOVED_APPS)},
             {TF_COUNT("deliveries", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED_REQUEST),
              TF_COUNT("requests", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED),
              TF_COUNT("subject_failures", "app IN " TF_REMOVED_APPS),
              TF_COUNT("audit", "subject <> '' AND app IN " TF_REMOVED_APPS)}},
};
#undef TF_PURGE1
#undef TF_AUTH_EXPIRED
#undef TF_COUNT
#undef TF_BATCH
#undef TF_REMOVED_APPS

// Audit pruning: the oldest records after the anchor (?1 anchor seq, ?2 limit).
inline constexpr const char* kSelectAuditHead = "SELECT seq, at, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2";
inline constexpr const char* kSelectAuditAnchor =
    "SELECT anchor_seq, anchor_hash, anchor_at, anchor_seal FROM audit_gate WHERE id = 1";
inline constexpr const char* kOpenAuditGate = "UPDATE OR FAIL audit_gate SET prune_before = ?1 WHERE id = 1";
inline constexpr const char* kDeleteAuditHead = "DELETE FROM audit WHERE seq <= ?1";
inline constexpr const char* kCloseAuditGate =
    "UPDATE OR FAIL audit_gate SET prune_before = 0, anchor_seq = ?1, anchor_hash = ?2, anchor_at = ?3, anchor_seal = ?4 "
    "WHERE id = 1";
// ?1 seq, ?2 hash: only the legacy anchor still there; ?3 at, ?4 seal
inline constexpr const char* kSealLegacyAnchor =
    "UPDATE OR FAIL audit_gate SET anchor_at = ?3, anchor_seal = ?4 WHERE id = 1 AND anchor_seq = ?1 AND anchor_hash = ?2 "
    "AND anchor_seal = 'legacy'";

// Apps in the configuration over time.
inline constexpr const char* kSelectApps = "SELECT name, removed_at FROM apps";
// Every app with a request is in `apps` (subject lookups rely on it). ?1 app, ?2 now.
inline constexpr const char* kEnsureApp =
    "INSERT OR IGNORE INTO apps (name, first_seen, removed_at) VALUES (?1, ?2, NULL)";
inline constexpr const char* kInsertApp = "INSERT INTO apps (name, first_seen, removed_at) VALUES (?1, ?2, NULL)";
inline constexpr const char* kSetAppRemoved = "UPDATE OR FAIL apps SET removed_at = ?2 WHERE name = ?1";

// Data subjects. ?1 subject hash unless said otherwise.
inline constexpr const char* kSelectSubjectFlags =
    "SELECT restricted_at, objected_at FROM subject_flags WHERE subject_hash = ?1";
inline constexpr const char* kEnsureSubjectFlags = "INSERT OR IGNORE INTO subject_flags (subject_hash) VALUES (?1)";
inline constexpr const char* kSetRestricted = "UPDATE OR FAIL subject_flags SET restricted_at = ?2 WHERE subject_hash = ?1";
inline constexpr const char* kSetObjected = "UPDATE OR FAIL subject_flags SET objected_at = ?2 WHERE subject_hash = ?1";
inline constexpr const char* kDropEmptyFlags =
    "DELETE FROM subject_flags WHERE subject_hash = ?1 AND restricted_at IS NULL AND objected_at IS NULL";
#define TF_REQUEST_COLUMNS                                                                                          \
    "id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "       \
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "      \
    "finished_at, failure, fallback_destination"
inline constexpr const char* kSelectSubjectRequests =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE app IN (SELECT name FROM apps) AND subject_hash = ?1 "
    "ORDER BY created_at, rowid";
// ?1 the normalised address
inline constexpr const char* kSelectFallbackRequests =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE fallback_destination = ?1 COLLATE NOCASE AND fallback_destination <> '' "
    "ORDER BY created_at, rowid";
#undef TF_REQUEST_COLUMNS
inline constexpr const char* kSelectRequestDeliveries =
    "SELECT id, request_id, app, channel, driver, send_no, attempt_no, at, outcome, provider_message_id, "
    "status_code, duration_ms, error_class, error, ambiguous, provider_status, provider_status_at, provider_error, "
    "provider, region FROM deliveries WHERE request_id = ?1 ORDER BY id";
inline constexpr const char* kSelectSubjectAudit =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, subject_nonce, "
    "subject_commit FROM audit WHERE subject = ?1 AND subject <> '' ORDER BY seq";
inline constexpr const char* kSelectSubjectFailureRows =
    "SELECT app, failures, locked_until FROM subject_failures WHERE app IN (SELECT name FROM apps) "
    "AND subject_hash = ?1 ORDER BY app";

// Erasure, in this order (deliveries before the requests they hang on).
inline constexpr const char* kEraseSubject[] = {
    "DELETE FROM delivery_jobs WHERE request_id IN (SELECT id FROM requests WHERE app IN (SELECT name FROM apps) "
    "AND subject_hash = ?1)",
    "DELETE FROM deliveries WHERE request_id IN (SELECT id FROM requests WHERE app IN (SELECT name FROM apps) "
    "AND subject_hash = ?1)",
    "DELETE FROM requests WHERE app IN (SELECT name FROM apps) AND subject_hash = ?1",
    "UPDATE OR FAIL requests SET fallback_destination = '' WHERE fallback_destination = ?2 COLLATE NOCASE "
    "AND fallback_destination <> ''",
    TF_ERASE_AUDIT_SUBJECT " WHERE subject = ?1 AND subject <> ''",
    "DELETE FROM optouts WHERE subject_hash = ?1",
    "DELETE FROM subject_failures WHERE app IN (SELECT name FROM apps) AND subject_hash = ?1",
    "DELETE FROM subject_flags WHERE subject_hash = ?1",
    // rate counter keys are "APP/HASH"; fraud sets hold the hash as key or member
    "DELETE FROM rate_counters WHERE key = ?1 OR substr(key, -length(?1) - 1) = '/' || ?1",
    "DELETE FROM fraud_sets WHERE key = ?1 OR member = ?1 OR substr(key, -length(?1) - 1) = '/' || ?1",
};
#undef TF_ERASE_AUDIT_SUBJECT
#undef TF_NOT_RESTRICTED
#undef TF_NOT_RESTRICTED_REQUEST
#undef TF_NO_RESTRICTIONS

// Rectification: ?1 old hash, ?2 new hash, ?3 new address, ?4 old address.
inline constexpr const char* kRectifySubject[] = {
    "UPDATE OR FAIL requests SET subject_hash = ?2, destination = CASE destination WHEN '' THEN '' ELSE ?3 END "
    "WHERE app IN (SELECT name FROM apps) AND subject_hash = ?1",
    "UPDATE OR FAIL requests SET fallback_destination = ?3 WHERE fallback_destination = ?4 COLLATE NOCASE "
    "AND fallback_destination <> ''",
    "UPDATE OR REPLACE optouts SET subject_hash = ?2, destination = ?3 WHERE subject_hash = ?1",
    "UPDATE OR REPLACE subject_failures SET subject_hash = ?2 WHERE app IN (SELECT name FROM apps) "
    "AND subject_hash = ?1",
    "UPDATE OR REPLACE subject_flags SET subject_hash = ?2 WHERE subject_hash = ?1",
};

// The register of data-subject requests.
inline constexpr const char* kInsertPrivacyRequest =
    "INSERT INTO privacy_requests (kind, subject_hash, received, due, completed, uid, note) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
inline constexpr const char* kSelectOpenPrivacyRequest =
    "SELECT id, kind, subject_hash, received, due, completed, uid, note FROM privacy_requests "
    "WHERE kind = ?1 AND subject_hash = ?2 AND completed IS NULL ORDER BY received, id LIMIT 1";
// A subject's own entries (GDPR Art. 15: the register holds their data too).
inline constexpr const char* kSelectSubjectPrivacyRequests =
    "SELECT id, kind, subject_hash, received, due, completed, uid, note FROM privacy_requests "
    "WHERE subject_hash = ?1 ORDER BY received, id";
inline constexpr const char* kCompletePrivacyRequest = "UPDATE OR FAIL privacy_requests SET completed = ?2 WHERE id = ?1";
// ?1 open only (0/1), ?2 overdue at or NULL, ?3 limit: the newest received,
// returned oldest first by the caller's reversal.
inline constexpr const char* kListPrivacyRequests =
    "SELECT id, kind, subject_hash, received, due, completed, uid, note FROM privacy_requests "
    "WHERE (?1 = 0 OR completed IS NULL) AND (?2 IS NULL OR (completed IS NULL AND due < ?2)) "
    "ORDER BY received DESC, id DESC LIMIT ?3";

// Fraud sets. ?1 rule, ?2 key, ?3 since (exclusive), ?4 the member not to count.
// ?5 the cap: the count stops there.
inline constexpr const char* kCountFraudMembers =
    "SELECT count(*) FROM (SELECT 1 FROM fraud_sets WHERE rule = ?1 AND key = ?2 AND at > ?3 AND member <> ?4 "
    "LIMIT ?5)";
// ?5: n - 1 for when the n-th most recently seen member was seen.
inline constexpr const char* kSelectFraudMemberSeen =
    "SELECT at FROM fraud_sets WHERE rule = ?1 AND key = ?2 AND at > ?3 AND member <> ?4 "
    "ORDER BY at DESC LIMIT 1 OFFSET ?5";
inline constexpr const char* kUpdateFraudMember =
    "UPDATE OR FAIL fraud_sets SET at = ?4, expires_at = ?5 WHERE rule = ?1 AND key = ?2 AND member = ?3";
inline constexpr const char* kInsertFraudMember =
    "INSERT INTO fraud_sets (rule, key, member, at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";

inline constexpr const char* kInsertRequestLog =
    "INSERT INTO request_log (at, method, duration_ms, result, uid, key_id, client_ip, status) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
// ?1 since or NULL, ?2 until or NULL, ?3 limit: the newest rows that match,
// returned oldest first by the caller's reversal.
inline constexpr const char* kSelectRequestLog =
    "SELECT id, at, method, duration_ms, result, uid, key_id, client_ip, status FROM request_log "
    "WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2) ORDER BY id DESC LIMIT ?3";

// API keys (the HTTPS API). ?1 id, ?2 app, ?3 scopes, ?4 secret hash, ?5 note,
// ?6 created, ?7 created by (uid), ?8 expires (0: never).
#define TF_API_KEY_COLUMNS \
    "id, app, scopes, secret_hash, note, created_at, created_by, expires_at, revoked_at, last_used_at"
inline constexpr const char* kInsertApiKey =
    "INSERT INTO api_keys (id, app, scopes, secret_hash, note, created_at, created_by, expires_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
inline constexpr const char* kSelectApiKey = "SELECT " TF_API_KEY_COLUMNS " FROM api_keys WHERE id = ?1";
inline constexpr const char* kListApiKeys =
    "SELECT " TF_API_KEY_COLUMNS " FROM api_keys ORDER BY created_at DESC, id LIMIT ?1";
// Revokes once: ?1 id, ?2 now.
inline constexpr const char* kRevokeApiKey = "UPDATE OR FAIL api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = 0";
// Last use moves forward only (two calls may finish out of order).
inline constexpr const char* kTouchApiKey =
    "UPDATE OR FAIL api_keys SET last_used_at = ?2 WHERE id = ?1 AND last_used_at < ?2";

// Idempotency-Key records. A record older than the window (?3 = now - 24 h)
// no longer holds its key: it goes before the claim.
inline constexpr const char* kDeleteStaleIdempotencyKey =
    "DELETE FROM idempotency_keys WHERE key_id = ?1 AND idem_key = ?2 AND created_at < ?3";
// The claim: ?1 API key id, ?2 idempotency key, ?3 body hash, ?4 now; a change
// count of 0 means someone holds the key already.
inline constexpr const char* kClaimIdempotencyKey =
    "INSERT OR IGNORE INTO idempotency_keys (key_id, idem_key, body_hash, created_at) VALUES (?1, ?2, ?3, ?4)";
inline constexpr const char* kSelectIdempotencyKey =
    "SELECT body_hash, created_at, status, response FROM idempotency_keys WHERE key_id = ?1 AND idem_key = ?2";
// The first answer: ?1, ?2 the key, ?3 status, ?4 response body.
inline constexpr const char* kCompleteIdempotencyKey =
    "UPDATE OR FAIL idempotency_keys SET status = ?3, response = ?4 WHERE key_id = ?1 AND idem_key = ?2 AND status = 0";
// Records past the window, a few at a time with every claim, oldest first: ?1 = now - 24 h.
inline constexpr const char* kPruneIdempotencyKeys =
    "DELETE FROM idempotency_keys WHERE rowid IN "
    "(SELECT rowid FROM idempotency_keys WHERE created_at < ?1 ORDER BY created_at LIMIT 16)";
// A first call that failed before anything was sent gives its key back.
inline constexpr const char* kReleaseIdempotencyKey =
    "DELETE FROM idempotency_keys WHERE key_id = ?1 AND idem_key = ?2 AND status = 0";
// twofactor stats: ?1 since, ?2 until, ?3 limit; the newest rows first,
// through deliveries_by_time and audit_by_time.
inline constexpr const char* kSelectRecentDeliveries =
    "SELECT channel, driver, outcome, duration_ms, at FROM deliveries WHERE at >= ?1 AND at < ?2 "
    "ORDER BY at DESC LIMIT ?3";
inline constexpr const char* kSelectRecentEvents =
    "SELECT event, outcome, at FROM audit WHERE at >= ?1 AND at < ?2 ORDER BY at DESC LIMIT ?3";

// max(seq) is one step down the primary key; ORDER BY seq DESC LIMIT 1 reads
// one row too, but its plan is a scan, which the query-plan test refuses.
inline constexpr const char* kSelectLastAudit =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, subject_nonce, "
    "subject_commit FROM audit WHERE seq = (SELECT max(seq) FROM audit)";
inline constexpr const char* kInsertAudit =
    "INSERT INTO audit (seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, "
    "subject_nonce, subject_commit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
// ?1 after seq, ?2 since or NULL, ?3 until or NULL, ?4 app or NULL, ?5 outcome
// or NULL, ?6 outcome prefix or NULL (e.g. 'refused:'), ?7 limit.
inline constexpr const char* kSelectAudit =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, subject_nonce, "
    "subject_commit FROM audit WHERE seq > ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) AND (?4 IS NULL OR app = ?4) "
    "AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR substr(outcome, 1, length(?6)) = ?6) "
    "ORDER BY seq LIMIT ?7";
// The same filters, the newest ?7 records that match (?1 is 0): what `audit
// list --limit` shows, reversed to oldest first by the caller.
inline constexpr const char* kSelectAuditNewest =
    "SELECT seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, subject_nonce, "
    "subject_commit FROM audit WHERE seq > ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) AND (?4 IS NULL OR app = ?4) "
    "AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR substr(outcome, 1, length(?6)) = ?6) "
    "ORDER BY seq DESC LIMIT ?7";

inline constexpr const char* kSelectRateCounter =
    "SELECT window_start, count, last_at FROM rate_counters WHERE scope = ?1 AND key = ?2";
inline constexpr const char* kUpdateRateCounter =
    "UPDATE OR FAIL rate_counters SET window_start = ?3, count = ?4, last_at = ?5 WHERE scope = ?1 AND key = ?2";
inline constexpr const char* kInsertRateCounter =
    "INSERT INTO rate_counters (scope, key, window_start, count, last_at) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* kSelectSubjectFailures =
    "SELECT failures, locked_until FROM subject_failures WHERE app = ?1 AND subject_hash = ?2";
// One more failure: the row starts at 0 when there is none, then the count
// goes up in SQL; the writer reads it back (no RETURNING in SQLite 3.15).
inline constexpr const char* kEnsureSubjectFailures =
    "INSERT OR IGNORE INTO subject_failures (app, subject_hash, failures, locked_until) VALUES (?1, ?2, 0, 0)";
inline constexpr const char* kCountSubjectFailure =
    "UPDATE OR FAIL subject_failures SET failures = failures + 1 WHERE app = ?1 AND subject_hash = ?2";
inline constexpr const char* kLockSubject =
    "UPDATE OR FAIL subject_failures SET locked_until = max(locked_until, ?3) WHERE app = ?1 AND subject_hash = ?2";
inline constexpr const char* kDeleteSubjectFailures =
    "DELETE FROM subject_failures WHERE app = ?1 AND subject_hash = ?2";

inline constexpr const char* kInsertDelivery =
    "INSERT INTO deliveries (request_id, app, channel, driver, send_no, attempt_no, at, outcome, "
    "provider_message_id, status_code, duration_ms, error_class, error, ambiguous, provider, region) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

// ?1 unused, ?2 since or NULL, ?3 until or NULL, ?4 limit. The newest rows
// that match, returned oldest first by the caller's reversal.
inline constexpr const char* kSelectDeliveries =
    "SELECT id, request_id, app, channel, driver, send_no, attempt_no, at, outcome, provider_message_id, "
    "status_code, duration_ms, error_class, error, ambiguous, provider_status, provider_status_at, provider_error, "
    "provider, region FROM deliveries WHERE (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) "
    "ORDER BY id DESC LIMIT ?4";
// The same for one request (?1): through deliveries_by_request, not a walk
// back from the newest attempt until the request's turn up.
inline constexpr const char* kSelectDeliveriesOfRequest =
    "SELECT id, request_id, app, channel, driver, send_no, attempt_no, at, outcome, provider_message_id, "
    "status_code, duration_ms, error_class, error, ambiguous, provider_status, provider_status_at, provider_error, "
    "provider, region FROM deliveries WHERE request_id = ?1 AND (?2 IS NULL OR at >= ?2) AND (?3 IS NULL OR at < ?3) "
    "ORDER BY id DESC LIMIT ?4";

// A provider's later word on a message (WhatsApp webhook statuses). Statuses
// only move forward, sent < delivered < read, and failed is final: "read" may
// arrive without "delivered", and webhooks arrive out of order, often within
// the same timestamp second, so the order of the statuses decides, not their
// timestamps. A repeated status changes nothing.
#define TF_STATUS_RANK(s) \
    "(CASE " s " WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END)"
inline constexpr const char* kUpdateDeliveryStatus =
    "UPDATE OR FAIL deliveries SET provider_status = ?2, provider_status_at = ?3, provider_error = ?4 "
    "WHERE provider_message_id = ?1 AND provider_message_id <> '' "
    "AND " TF_STATUS_RANK("provider_status") " < " TF_STATUS_RANK("?2");
#undef TF_STATUS_RANK

inline constexpr const char* kSelectOptOut =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts WHERE subject_hash = ?1";
inline constexpr const char* kInsertOptOut =
    "INSERT OR REPLACE INTO optouts (subject_hash, destination, created_at, source, reason) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr const char* kDeleteOptOut = "DELETE FROM optouts WHERE subject_hash = ?1";
// The newest ?1 entries, returned oldest first by the caller's reversal.
inline constexpr const char* kListOptOuts =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts ORDER BY created_at DESC, "
    "destination DESC LIMIT ?1";

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

// Request state changes: each conditional on the state the caller saw, so
// that with several writers exactly one of them applies (see store.hpp).
// ?1 id, ?2 send, ?3 now, ?4 the code hash compared with.
inline constexpr const char* kApproveRequest =
    "UPDATE OR FAIL requests SET status = 'approved', finished_at = ?3, updated_at = ?3, code_hash = NULL "
    "WHERE id = ?1 AND status = 'pending' AND sends = ?2 AND expires_at > ?3 AND code_hash = ?4";
// ?1 id, ?2 now. SET expressions see the row before the change, so
// attempts + 1 is the new count throughout.
inline constexpr const char* kCountWrongCode =
    "UPDATE OR FAIL requests SET attempts = attempts + 1, updated_at = ?2, "
    "status = CASE WHEN attempts + 1 >= max_attempts THEN 'locked' ELSE status END, "
    "finished_at = CASE WHEN attempts + 1 >= max_attempts THEN ?2 ELSE finished_at END, "
    "code_hash = CASE WHEN attempts + 1 >= max_attempts THEN NULL ELSE code_hash END "
    "WHERE id = ?1 AND status = 'pending' AND expires_at > ?2";
inline constexpr const char* kSelectRequestAttempts = "SELECT attempts, status FROM requests WHERE id = ?1";
// ?1 id, ?2 send or NULL (any), ?3 the new status, ?4 now, ?5 the reason or ''.
inline constexpr const char* kFinishRequest =
    "UPDATE OR FAIL requests SET status = ?3, finished_at = ?4, updated_at = ?4, code_hash = NULL, "
    "failure = CASE WHEN ?5 = '' THEN failure ELSE ?5 END "
    "WHERE id = ?1 AND status = 'pending' AND (?2 IS NULL OR sends = ?2)";
// ?1 id, ?2 send, ?3 the new code hash, ?4 expires at, ?5 now.
inline constexpr const char* kReplaceCode =
    "UPDATE OR FAIL requests SET code_hash = ?3, sends = sends + 1, expires_at = ?4, updated_at = ?5 "
    "WHERE id = ?1 AND status = 'pending' AND sends = ?2";
// ?1 id, ?2 send, ?3 channel, ?4 now.
inline constexpr const char* kSwitchChannel =
    "UPDATE OR FAIL requests SET channel = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'pending' AND sends = ?2";

// Transaction binding: ?1 request id, ?2 the context's keyed digest.
inline constexpr const char* kBindRequest = "UPDATE OR FAIL requests SET context_digest = ?2 WHERE id = ?1";
inline constexpr const char* kSelectRequestBinding = "SELECT context_digest FROM requests WHERE id = ?1";

// Breach reports: one page of a window in time order. ?1 from, ?2 to, ?3 the
// cursor's time, ?4 its row, ?5 limit. The range starts at the cursor's
// second, so a page re-reads only that second's rows of earlier pages.
inline constexpr const char* kSelectBreachRequests =
    "SELECT rowid, created_at, id, app, channel, subject_hash, destination, fallback_destination, client_ip, device "
    "FROM requests WHERE created_at >= max(?1, ?3) AND created_at < ?2 AND (created_at > ?3 OR rowid > ?4) "
    "ORDER BY created_at, rowid LIMIT ?5";
inline constexpr const char* kSelectBreachDeliveries =
    "SELECT d.id, d.at, d.request_id, d.app, d.channel, r.subject_hash, r.destination, r.fallback_destination "
    "FROM deliveries d LEFT JOIN requests r ON r.id = d.request_id "
    "WHERE d.at >= max(?1, ?3) AND d.at < ?2 AND (d.at > ?3 OR d.id > ?4) ORDER BY d.at, d.id LIMIT ?5";

// The email suppression list: ?1 hash, ?2 reason, ?3 detail, ?4 at, ?5 source,
// ?6 message id. A change count of 0: already on the list (the first entry stays).
inline constexpr const char* kInsertSuppression =
    "INSERT OR IGNORE INTO email_suppressions (address_hash, reason, detail, at, source, message_id) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
inline constexpr const char* kSelectSuppression =
    "SELECT address_hash, reason, detail, at, source, message_id FROM email_suppressions WHERE address_hash = ?1";
inline constexpr const char* kDeleteSuppression = "DELETE FROM email_suppressions WHERE address_hash = ?1";
// The newest ?1 entries through email_suppressions_by_time, returned oldest first by the caller's reversal.
inline constexpr const char* kListSuppressions =
    "SELECT address_hash, reason, detail, at, source, message_id FROM email_suppressions ORDER BY at DESC LIMIT ?1";
// Email feedback counters: ?1 app, ?2 hour. The row starts at 0, then one
// column goes up in SQL (no UPSERT in SQLite 3.15).
inline constexpr const char* kEnsureEmailFeedback =
    "INSERT OR IGNORE INTO email_feedback (app, hour) VALUES (?1, ?2)";
inline constexpr const char* kCountEmailSend =
    "UPDATE OR FAIL email_feedback SET sends = sends + 1 WHERE app = ?1 AND hour = ?2";
inline constexpr const char* kCountEmailBounce =
    "UPDATE OR FAIL email_feedback SET bounces = bounces + 1 WHERE app = ?1 AND hour = ?2";
inline constexpr const char* kCountEmailComplaint =
    "UPDATE OR FAIL email_feedback SET complaints = complaints + 1 WHERE app = ?1 AND hour = ?2";
// ?1 app, ?2 the oldest hour kept.
inline constexpr const char* kPruneEmailFeedback = "DELETE FROM email_feedback WHERE app = ?1 AND hour < ?2";
// ?1 app, ?2 the first hour: at most kEmailFeedbackHours rows.
inline constexpr const char* kSumEmailFeedback =
    "SELECT ifnull(sum(sends), 0), ifnull(sum(bounces), 0), ifnull(sum(complaints), 0) FROM email_feedback "
    "WHERE app = ?1 AND hour >= ?2";
// The app of a provider's message (SES feedback names the message it is about).
inline constexpr const char* kSelectDeliveryApp =
    "SELECT app FROM deliveries WHERE provider_message_id = ?1 AND provider_message_id <> '' LIMIT 1";

}  // namespace twofactor::store::sql
