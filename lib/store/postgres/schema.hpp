// The PostgreSQL backend's schema, its migrations and every statement it
// runs, beside each other as in the SQLCipher backend. Personal data is
// stored sealed (AES-256-GCM, BYTEA columns, see sealed.hpp); lookups go
// through the keyed hashes, as with SQLCipher.
#pragma once

namespace twofactor::store::pg {

// Applied in order, each in its own transaction with the version row locked,
// so nodes starting together migrate once.
inline constexpr const char* kMigrations[] = {
    // 1: requests, rate counters and failure counts.
    R"sql(
CREATE TABLE requests (
    id                    TEXT PRIMARY KEY,
    seq                   BIGSERIAL NOT NULL,
    app                   TEXT NOT NULL,
    channel               TEXT NOT NULL,
    destination           BYTEA NOT NULL,
    subject_hash          TEXT NOT NULL,
    purpose               TEXT NOT NULL,
    locale                TEXT NOT NULL,
    client_ip             BYTEA NOT NULL,
    device                BYTEA NOT NULL,
    reference             BYTEA NOT NULL,
    code_hash             BYTEA,
    code_length           INTEGER NOT NULL,
    status                TEXT NOT NULL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    max_attempts          INTEGER NOT NULL,
    sends                 INTEGER NOT NULL,
    max_sends             INTEGER NOT NULL,
    ttl                   BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    finished_at           BIGINT,
    failure               TEXT NOT NULL DEFAULT '',
    fallback_destination  BYTEA NOT NULL
);
CREATE INDEX requests_by_subject ON requests (app, subject_hash, status);
CREATE INDEX requests_by_created ON requests (created_at);
CREATE TABLE rate_counters (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX rate_counters_by_last ON rate_counters (last_at);
CREATE TABLE subject_failures (
    app           TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    PRIMARY KEY (app, subject_hash)
);
)sql",
    // 2: delivery jobs, shared by the nodes: claimed under leases with
    // FOR UPDATE SKIP LOCKED, so two nodes sweeping at once take disjoint jobs.
    R"sql(
CREATE TABLE delivery_jobs (
    request_id   TEXT PRIMARY KEY,
    send_no      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at     BIGINT NOT NULL,
    holder       TEXT NOT NULL DEFAULT '',
    lease_until  BIGINT NOT NULL DEFAULT 0,
    due_at       BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX delivery_jobs_due ON delivery_jobs (due_at);
CREATE INDEX delivery_jobs_by_holder ON delivery_jobs (holder) WHERE holder <> '';
)sql",
    // 3: everything else the daemon keeps, as in the SQLCipher schema with
    // three differences. Personal data is sealed (BYTEA; an empty value is
    // one blanked by retention or erasure). The email fallback address is
    // found through fallback_hash, a keyed hash of its lower-cased form, as
    // the subject through subject_hash. And the audit chain has one writer
    // at a time across all nodes: appending locks audit_gate's row (until
    // migration 10 made it one chain per writer).
    R"sql(
ALTER TABLE requests ADD COLUMN context_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN fallback_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX requests_by_subject_only ON requests (subject_hash);
CREATE INDEX requests_by_fallback ON requests (fallback_hash) WHERE fallback_hash <> '';
CREATE INDEX requests_live_code ON requests (expires_at) WHERE code_hash IS NOT NULL;
CREATE INDEX requests_identified ON requests (created_at) WHERE octet_length(destination) > 0;
CREATE TABLE deliveries (
    id                  BIGSERIAL PRIMARY KEY,
    request_id          TEXT NOT NULL,
    app                 TEXT NOT NULL,
    channel             TEXT NOT NULL,
    driver              TEXT NOT NULL,
    send_no             INTEGER NOT NULL,
    attempt_no          INTEGER NOT NULL,
    at                  BIGINT NOT NULL,
    outcome             TEXT NOT NULL,
    provider_message_id TEXT NOT NULL DEFAULT '',
    status_code         INTEGER NOT NULL DEFAULT 0,
    duration_ms         BIGINT NOT NULL DEFAULT 0,
    error_class         TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',
    ambiguous           BOOLEAN NOT NULL DEFAULT FALSE,
    provider_status     TEXT NOT NULL DEFAULT '',
    provider_status_at  BIGINT NOT NULL DEFAULT 0,
    provider_error      TEXT NOT NULL DEFAULT '',
    provider            TEXT NOT NULL DEFAULT '',
    region              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deliveries_by_request ON deliveries (request_id, id);
CREATE INDEX deliveries_by_time ON deliveries (at);
CREATE INDEX deliveries_by_provider_id ON deliveries (provider_message_id) WHERE provider_message_id <> '';
CREATE INDEX deliveries_by_app ON deliveries (app);
CREATE TABLE optouts (
    subject_hash  TEXT PRIMARY KEY,
    destination   BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    source        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX optouts_by_created ON optouts (created_at, subject_hash);
CREATE TABLE request_log (
    id           BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    method       TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    result       TEXT NOT NULL,
    uid          BIGINT NOT NULL,
    key_id       TEXT NOT NULL DEFAULT '',
    client_ip    BYTEA NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX request_log_by_time ON request_log (at);
CREATE TABLE fraud_sets (
    rule        TEXT NOT NULL,
    key         TEXT NOT NULL,
    member      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (rule, key, member)
);
CREATE INDEX fraud_sets_by_expiry ON fraud_sets (expires_at);
CREATE INDEX fraud_sets_by_time ON fraud_sets (rule, key, at);
CREATE TABLE retention_runs (
    id                BIGSERIAL PRIMARY KEY,
    started           BIGINT NOT NULL,
    finished          BIGINT NOT NULL,
    trigger           TEXT NOT NULL,
    code_hashes       BIGINT NOT NULL,
    deliveries        BIGINT NOT NULL,
    request_log       BIGINT NOT NULL,
    client_data       BIGINT NOT NULL,
    rate_counters     BIGINT NOT NULL,
    fraud_sets        BIGINT NOT NULL,
    subject_failures  BIGINT NOT NULL,
    auth_metadata     BIGINT NOT NULL,
    audit_records     BIGINT NOT NULL,
    removed_apps      BIGINT NOT NULL
);
CREATE TABLE subject_flags (
    subject_hash   TEXT PRIMARY KEY,
    restricted_at  BIGINT,
    objected_at    BIGINT
);
CREATE INDEX subject_flags_restricted ON subject_flags (subject_hash) WHERE restricted_at IS NOT NULL;
CREATE INDEX subject_failures_by_subject ON subject_failures (subject_hash);
CREATE TABLE privacy_requests (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    subject_hash  TEXT NOT NULL,
    received      BIGINT NOT NULL,
    due           BIGINT NOT NULL,
    completed     BIGINT,
    uid           BIGINT NOT NULL,
    note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX privacy_requests_by_subject ON privacy_requests (subject_hash, kind);
CREATE INDEX privacy_requests_by_received ON privacy_requests (received, id);
CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    first_seen  BIGINT NOT NULL,
    removed_at  BIGINT
);
CREATE TABLE audit (
    seq             BIGINT PRIMARY KEY,
    at              BIGINT NOT NULL,
    app             TEXT NOT NULL DEFAULT '',
    event           TEXT NOT NULL,
    uid             BIGINT NOT NULL DEFAULT -1,
    outcome         TEXT NOT NULL,
    request_id      TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    format          INTEGER NOT NULL DEFAULT 2,
    subject_nonce   TEXT NOT NULL DEFAULT '',
    subject_commit  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_time ON audit (at);
CREATE INDEX audit_by_subject ON audit (subject) WHERE subject <> '';
CREATE INDEX audit_by_app ON audit (app) WHERE subject <> '';
CREATE TABLE audit_gate (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    anchor_seq   BIGINT NOT NULL,
    anchor_hash  TEXT NOT NULL,
    anchor_at    BIGINT NOT NULL DEFAULT 0,
    anchor_seal  TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_gate VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, '');
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    created_by    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL DEFAULT 0,
    revoked_at    BIGINT NOT NULL DEFAULT 0,
    last_used_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_created ON api_keys (created_at);
CREATE TABLE idempotency_keys (
    key_id      TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    response    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys (created_at);
)sql",
    // 4: the cluster: lease-row singletons (the retention schedule runs once
    // per scheduled time across the nodes) and the node registry.
    R"sql(
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    slot        BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    version    TEXT NOT NULL,
    started    BIGINT NOT NULL,
    heartbeat  BIGINT NOT NULL
);
CREATE INDEX nodes_by_heartbeat ON nodes (heartbeat);
)sql",
    // 5: the email suppression list (keyed hashes of addresses that bounced
    // for good or complained; the detail, which may hold an operator's note,
    // sealed) and per app and hour the email sends, bounces and complaints
    // behind `twofactor stats`' rates.
    R"sql(
CREATE TABLE email_suppressions (
    address_hash  TEXT PRIMARY KEY,
    reason        TEXT NOT NULL,
    detail        BYTEA NOT NULL,
    at            BIGINT NOT NULL,
    source        TEXT NOT NULL,
    message_id    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX email_suppressions_by_time ON email_suppressions (at);
CREATE TABLE email_feedback (
    app         TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    sends       BIGINT NOT NULL DEFAULT 0,
    bounces     BIGINT NOT NULL DEFAULT 0,
    complaints  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, hour)
);
)sql",
    // 6: outgoing event webhooks, as in the SQLCipher schema: event_jobs is
    // the queue, shared by the nodes and claimed under leases with FOR UPDATE
    // SKIP LOCKED like delivery_jobs; an app's events wait with due_at =
    // kEventParked while its endpoint is disabled. The payload holds no code
    // and no full address (otp::eventPayload), but the app's reference, so
    // it is sealed like the request's own columns.
    R"sql(
CREATE TABLE event_jobs (
    id           TEXT PRIMARY KEY,
    app          TEXT NOT NULL,
    type         TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_at     BIGINT NOT NULL,
    holder       TEXT NOT NULL DEFAULT '',
    lease_until  BIGINT NOT NULL DEFAULT 0,
    due_at       BIGINT NOT NULL,
    last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_jobs_due ON event_jobs (due_at);
CREATE INDEX event_jobs_by_holder ON event_jobs (holder) WHERE holder <> '';
CREATE INDEX event_jobs_by_app ON event_jobs (app);
CREATE INDEX event_jobs_by_time ON event_jobs (created_at);
CREATE TABLE event_attempts (
    id           BIGSERIAL PRIMARY KEY,
    event_id     TEXT NOT NULL,
    app          TEXT NOT NULL,
    type         TEXT NOT NULL,
    attempt_no   INTEGER NOT NULL,
    at           BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    status_code  INTEGER NOT NULL DEFAULT 0,
    duration_ms  BIGINT NOT NULL DEFAULT 0,
    error        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_attempts_by_time ON event_attempts (at);
CREATE INDEX event_attempts_by_event ON event_attempts (event_id);
CREATE TABLE event_endpoints (
    app          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    disabled_at  BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT ''
);
)sql",
    // 7: which store key is which key version (the first byte of every
    // sealed value), by a public fingerprint of each key: a node starts only
    // with a key the cluster knows, and a rotation adds the next version.
    // The first node to start registers its key as version 1, which is what
    // every value sealed before this table existed is under.
    R"sql(
CREATE TABLE seal_keys (
    version      INTEGER PRIMARY KEY CHECK (version BETWEEN 1 AND 255),
    fingerprint  TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);
)sql",
    // 8: an app's email feedback hour in shares: every email send counts in
    // one, chosen per connection, so that the app's sends do not queue on one
    // row held to each commit; the sums read them all (the primary key's
    // prefix is unchanged).
    R"sql(
ALTER TABLE email_feedback ADD COLUMN share SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE email_feedback DROP CONSTRAINT email_feedback_pkey;
ALTER TABLE email_feedback ADD PRIMARY KEY (app, hour, share);
)sql",
    // 9: the store-key version each node seals under, so that `cluster
    // status` shows the nodes a key rotation has not reached yet.
    R"sql(
ALTER TABLE nodes ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
)sql",
    // 10: one audit chain per writer instead of one for the cluster. Every
    // audited commit held audit_gate's row from its append to its commit,
    // so audited commits of all nodes ran one after another and never shared
    // a WAL flush. Now a transaction takes any chain no other holds (SKIP
    // LOCKED), or begins a new one; the old chain is chain 0, as it was.
    R"sql(
CREATE TABLE audit_chains (
    chain        BIGINT PRIMARY KEY,
    anchor_seq   BIGINT NOT NULL,
    anchor_hash  TEXT NOT NULL,
    anchor_at    BIGINT NOT NULL DEFAULT 0,
    anchor_seal  TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_chains SELECT 0, anchor_seq, anchor_hash, anchor_at, anchor_seal FROM audit_gate;
DROP TABLE audit_gate;
CREATE SEQUENCE audit_chain_numbers START 1;
ALTER TABLE audit ADD COLUMN chain BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit DROP CONSTRAINT audit_pkey;
ALTER TABLE audit ADD PRIMARY KEY (chain, seq);
)sql",
    // 11: each chain's head (its last record's seq and hash, or its anchor)
    // on its row, moved by every append in the statement that inserts the
    // record: taking a chain returns its tail at once, one round trip less
    // per audited call than reading the tail from audit.
    R"sql(
ALTER TABLE audit_chains ADD COLUMN head_seq BIGINT;
ALTER TABLE audit_chains ADD COLUMN head_hash TEXT;
UPDATE audit_chains c SET
    head_seq = coalesce((SELECT a.seq FROM audit a WHERE a.chain = c.chain ORDER BY a.seq DESC LIMIT 1), c.anchor_seq),
    head_hash = coalesce((SELECT a.hash FROM audit a WHERE a.chain = c.chain ORDER BY a.seq DESC LIMIT 1), c.anchor_hash);
ALTER TABLE audit_chains ALTER COLUMN head_seq SET NOT NULL;
ALTER TABLE audit_chains ALTER COLUMN head_hash SET NOT NULL;
)sql",
    // 12: a chain is held by one node for as long as it appends to it
    // (holder, renewed by every append to held_until), not taken afresh by
    // every audited transaction: the node knows its chains' heads, and an
    // audited commit no longer waits for a round trip to take a chain. A
    // chain whose holder has not appended for a lease is free again.
    R"sql(
ALTER TABLE audit_chains ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_chains ADD COLUMN held_until BIGINT NOT NULL DEFAULT 0;
)sql",
    // 13: every TEXT column compares byte by byte, as in the SQLCipher
    // store (BINARY). Keys, hashes and ids have no language. Under a
    // collation that ignores punctuation (en_US.UTF-8 and most others but
    // C), a node's earlier starts, the range node + "/" <= holder < node +
    // "0", missed "host~1a2b3c4d/x", which sorted after "host~1a2b3c4d0": a
    // restarted node took its earlier start's jobs only once their leases
    // ran out. And every index step was a linguistic comparison: on a
    // server sorting as en_US.UTF-8 does (ICU en-u-ka-shifted), 12-17 %
    // more server time a send and verify than under C (bench/README). Only
    // the collation changes: the tables are not rewritten, their indexes
    // are rebuilt (seconds for a million requests, under the lock the
    // migration holds). A later migration's TEXT column says COLLATE "C"
    // itself.
    R"sql(
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS name,
               string_agg(format('ALTER COLUMN %I TYPE TEXT COLLATE "C"', a.attname), ', ' ORDER BY a.attnum) AS alters
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
          AND a.atttypid = 'text'::regtype AND a.attcollation <> 'pg_catalog."C"'::regcollation
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
        GROUP BY c.oid
    LOOP
        EXECUTE format('ALTER TABLE %s %s', t.name, t.alters);
    END LOOP;
END
$$;
)sql",
};

inline constexpr const char* kCreateVersionTable =
    "CREATE TABLE IF NOT EXISTS twofactor_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)";
inline constexpr const char* kEnsureVersionRow =
    "INSERT INTO twofactor_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING";
inline constexpr const char* kLockVersion = "SELECT version FROM twofactor_schema WHERE id = 1 FOR UPDATE";
inline constexpr const char* kSetVersion = "UPDATE twofactor_schema SET version = $1 WHERE id = 1";

#define TF_REQUEST_COLUMNS                                                                                            \
    "id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "        \
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "        \
    "finished_at, failure, fallback_destination"
// A request by id, and beside it what a verify reads next about its subject:
// the subject's flags (restricted_at, objected_at) and its failures in the
// request's app (failures, locked_until; NULL when none): three primary-key
// lookups in one round trip.
inline constexpr const char* kSelectRequestAndSubject =
    "SELECT q.*, f.restricted_at, f.objected_at, s.failures, s.locked_until "
    "FROM (SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE id = $1) AS q "
    "LEFT JOIN subject_flags f ON f.subject_hash = q.subject_hash "
    "LEFT JOIN subject_failures s ON s.app = q.app AND s.subject_hash = q.subject_hash";
inline constexpr const char* kSelectNewestPending =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE app = $1 AND subject_hash = $2 AND status = 'pending' "
    "ORDER BY created_at DESC, seq DESC LIMIT 1";
// $25: the fallback address's keyed hash ('' without one).
inline constexpr const char* kInsertRequest =
    "INSERT INTO requests (" TF_REQUEST_COLUMNS ", fallback_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
    "$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";
// A subject's requests (GDPR), through requests_by_subject_only; the requests
// whose email fallback was the subject's address, through requests_by_fallback.
inline constexpr const char* kSelectSubjectRequests =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE subject_hash = $1 ORDER BY created_at, seq";
inline constexpr const char* kSelectFallbackRequests =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE fallback_hash = ANY($1::TEXT[]) AND fallback_hash <> '' "
    "ORDER BY created_at, seq";
#undef TF_REQUEST_COLUMNS

// Request state changes: one conditional UPDATE each. Under READ COMMITTED
// a second writer waits for the first one's row lock and then re-checks the
// WHERE clause against the row as committed, so exactly one of them applies.
// $1 id, $2 send, $3 now, $4 the code hash compared with.
inline constexpr const char* kApproveRequest =
    "UPDATE requests SET status = 'approved', finished_at = $3, updated_at = $3, code_hash = NULL "
    "WHERE id = $1 AND status = 'pending' AND sends = $2 AND expires_at > $3 AND code_hash = $4";
// $1 id, $2 now; the new count comes back with RETURNING.
inline constexpr const char* kCountWrongCode =
    "UPDATE requests SET attempts = attempts + 1, updated_at = $2, "
    "status = CASE WHEN attempts + 1 >= max_attempts THEN 'locked' ELSE status END, "
    "finished_at = CASE WHEN attempts + 1 >= max_attempts THEN $2 ELSE finished_at END, "
    "code_hash = CASE WHEN attempts + 1 >= max_attempts THEN NULL ELSE code_hash END "
    "WHERE id = $1 AND status = 'pending' AND expires_at > $2 RETURNING attempts, status";
// $1 id, $2 send or NULL (any), $3 the new status, $4 now, $5 the reason or ''.
inline constexpr const char* kFinishRequest =
    "UPDATE requests SET status = $3, finished_at = $4, updated_at = $4, code_hash = NULL, "
    "failure = CASE WHEN $5 = '' THEN failure ELSE $5 END "
    "WHERE id = $1 AND status = 'pending' AND ($2::INTEGER IS NULL OR sends = $2::INTEGER)";
// $1 id, $2 send, $3 the new code hash, $4 expires at, $5 now.
inline constexpr const char* kReplaceCode =
    "UPDATE requests SET code_hash = $3, sends = sends + 1, expires_at = $4, updated_at = $5 "
    "WHERE id = $1 AND status = 'pending' AND sends = $2";
// $1 id, $2 send, $3 channel, $4 now.
inline constexpr const char* kSwitchChannel =
    "UPDATE requests SET channel = $3, updated_at = $4 WHERE id = $1 AND status = 'pending' AND sends = $2";

// A rate counter, created empty when missing and locked either way (the
// no-op DO UPDATE takes the row lock), returned as it stands: the caller
// decides, then counts, with no other writer in between. Keys are taken in
// sorted order, so two sends never wait on each other in a cycle.
inline constexpr const char* kLockRateCounter =
    "INSERT INTO rate_counters (scope, key, window_start, count, last_at) VALUES ($1, $2, 0, 0, 0) "
    "ON CONFLICT (scope, key) DO UPDATE SET count = rate_counters.count RETURNING window_start, count, last_at";
// One more send on a counter: $1 scope, $2 key, $3 its window, $4 now; a
// window that is over (or an empty counter) starts again at now. The row is
// already locked by this transaction (kLockRateCounter, kClaimRateShare).
// One statement per counter, sent with the next: one for all of them, over
// unnest() of arrays, was planned again at every call (its generic plan
// counts 10 elements an array, a custom plan the real 2), which cost the
// server more than the update itself.
inline constexpr const char* kCountRateSend =
    "UPDATE rate_counters SET "
    "window_start = CASE WHEN count = 0 OR $4 >= window_start + $3 THEN $4 ELSE window_start END, "
    "count = CASE WHEN count = 0 OR $4 >= window_start + $3 THEN 1 ELSE count + 1 END, last_at = $4 "
    "WHERE scope = $1 AND key = $2";

// An app-wide counter in shares (otp::RateKey::spreadCap): $1 scope, $2 the
// share keys, $3 their caps, $4 now, $5 the window. Locks the first share in
// $2's order that has room and that no other send holds, without waiting.
inline constexpr const char* kClaimRateShare =
    "SELECT r.key, r.window_start, r.count, r.last_at FROM rate_counters r "
    "JOIN unnest($2::TEXT[], $3::BIGINT[]) WITH ORDINALITY AS s(key, cap, n) ON r.key = s.key "
    "WHERE r.scope = $1 AND s.cap > 0 AND (r.count < s.cap OR r.count = 0 OR $4 >= r.window_start + $5) "
    "ORDER BY s.n LIMIT 1 FOR UPDATE OF r SKIP LOCKED";
// The share rows, so kClaimRateShare finds them (existing ones are not locked).
inline constexpr const char* kEnsureRateShares =
    "INSERT INTO rate_counters (scope, key, window_start, count, last_at) "
    "SELECT $1, k, 0, 0, 0 FROM unnest($2::TEXT[]) AS k ON CONFLICT (scope, key) DO NOTHING";

inline constexpr const char* kSelectSubjectFailures =
    "SELECT failures, locked_until FROM subject_failures WHERE app = $1 AND subject_hash = $2";
inline constexpr const char* kCountSubjectFailure =
    "INSERT INTO subject_failures (app, subject_hash, failures, locked_until) VALUES ($1, $2, 1, 0) "
    "ON CONFLICT (app, subject_hash) DO UPDATE SET failures = subject_failures.failures + 1 RETURNING failures";
inline constexpr const char* kLockSubject =
    "UPDATE subject_failures SET locked_until = GREATEST(locked_until, $3) WHERE app = $1 AND subject_hash = $2";
inline constexpr const char* kDeleteSubjectFailures =
    "DELETE FROM subject_failures WHERE app = $1 AND subject_hash = $2";

// Delivery jobs: the same outcomes as the SQLCipher backend's, each one statement.
#define TF_JOB_COLUMNS \
    "request_id, send_no, attempts, retry_at, holder, lease_until, expires_at, created_at, last_error"
// $1 request, $2 send, $3 attempts, $4 retry at, $5 holder, $6 lease until, $7 expires, $8 created, $9 error
inline constexpr const char* kPutDeliveryJob =
    "INSERT INTO delivery_jobs (" TF_JOB_COLUMNS ", due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
    "GREATEST($4::BIGINT, $6::BIGINT)) ON CONFLICT (request_id) DO UPDATE SET send_no = EXCLUDED.send_no, "
    "attempts = EXCLUDED.attempts, retry_at = EXCLUDED.retry_at, holder = EXCLUDED.holder, "
    "lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at, "
    "last_error = EXCLUDED.last_error, due_at = EXCLUDED.due_at";
inline constexpr const char* kSelectDeliveryJob = "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE request_id = $1";
// The claim: jobs due at $1, or held by another start of this node ($2 <=
// holder < $3, not $4, the new holder), at most $5, locked with SKIP LOCKED
// (a job another node is claiming this instant is left to it) and taken
// until $6. RETURNING names the picked row: each job as it was before. The
// candidates come from each index on its own (the soonest due through
// delivery_jobs_due, this node's earlier starts through
// delivery_jobs_by_holder), at most $5 each: one condition ORed over both
// walked all of delivery_jobs_due whenever fewer than $5 were due.
inline constexpr const char* kClaimDeliveryJobs =
    "WITH candidates AS ((SELECT request_id FROM delivery_jobs WHERE due_at <= $1 ORDER BY due_at LIMIT $5) UNION "
    "(SELECT request_id FROM delivery_jobs WHERE holder >= $2 AND holder < $3 AND holder <> $4 AND holder <> '' "
    "LIMIT $5)), "
    "picked AS (SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE request_id = ANY (ARRAY(SELECT request_id FROM "
    "candidates)) AND (due_at <= $1 OR (holder >= $2 AND holder < $3 AND holder <> $4 AND holder <> '')) LIMIT $5 "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE delivery_jobs j SET holder = $4, lease_until = $6, due_at = GREATEST(j.retry_at, $6::BIGINT) "
    "FROM picked p WHERE j.request_id = p.request_id RETURNING p.request_id, p.send_no, p.attempts, p.retry_at, "
    "p.holder, p.lease_until, p.expires_at, p.created_at, p.last_error";
// $1 request, $2 send, $3 holder, $4 lease until
inline constexpr const char* kRenewDeliveryLease =
    "UPDATE delivery_jobs SET lease_until = $4, due_at = GREATEST(retry_at, $4::BIGINT) "
    "WHERE request_id = $1 AND send_no = $2 AND holder = $3";
// $1 request, $2 send, $3 holder, $4 attempts, $5 retry at, $6 lease until, $7 error
inline constexpr const char* kRecordDeliveryRetry =
    "UPDATE delivery_jobs SET attempts = $4, retry_at = $5, lease_until = $6, "
    "due_at = GREATEST($5::BIGINT, $6::BIGINT), last_error = $7 WHERE request_id = $1 AND send_no = $2 AND holder = $3";
inline constexpr const char* kFinishDeliveryJob =
    "DELETE FROM delivery_jobs WHERE request_id = $1 AND send_no = $2 AND holder = $3";
inline constexpr const char* kEndDeliveryJob = "DELETE FROM delivery_jobs WHERE request_id = $1";
inline constexpr const char* kListDeliveryJobs =
    "SELECT " TF_JOB_COLUMNS " FROM delivery_jobs ORDER BY due_at LIMIT $1";
#undef TF_JOB_COLUMNS

// ---- The delivery log ----
#define TF_DELIVERY_COLUMNS                                                                                     \
    "id, request_id, app, channel, driver, send_no, attempt_no, at, outcome, provider_message_id, status_code, " \
    "duration_ms, error_class, error, ambiguous, provider_status, provider_status_at, provider_error, provider, "   \
    "region"
inline constexpr const char* kInsertDelivery =
    "INSERT INTO deliveries (request_id, app, channel, driver, send_no, attempt_no, at, outcome, "
    "provider_message_id, status_code, duration_ms, error_class, error, ambiguous, provider, region) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
// $1 since or NULL, $2 until or NULL, $3 limit: the newest that match,
// returned oldest first by the caller's reversal.
inline constexpr const char* kSelectDeliveries =
    "SELECT " TF_DELIVERY_COLUMNS " FROM deliveries WHERE ($1::BIGINT IS NULL OR at >= $1::BIGINT) "
    "AND ($2::BIGINT IS NULL OR at < $2::BIGINT) ORDER BY id DESC LIMIT $3";
// The same for one request ($4), through deliveries_by_request.
inline constexpr const char* kSelectDeliveriesOfRequest =
    "SELECT " TF_DELIVERY_COLUMNS " FROM deliveries WHERE request_id = $4 AND ($1::BIGINT IS NULL OR at >= $1::BIGINT) "
    "AND ($2::BIGINT IS NULL OR at < $2::BIGINT) ORDER BY id DESC LIMIT $3";
inline constexpr const char* kSelectRequestDeliveries =
    "SELECT " TF_DELIVERY_COLUMNS " FROM deliveries WHERE request_id = $1 ORDER BY id";
#undef TF_DELIVERY_COLUMNS
// Provider statuses only move forward (sent < delivered < read; failed is
// final), whatever order the webhooks arrive in: one conditional UPDATE.
#define TF_STATUS_RANK(s) \
    "(CASE " s " WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END)"
inline constexpr const char* kUpdateDeliveryStatus =
    "UPDATE deliveries SET provider_status = $2, provider_status_at = $3, provider_error = $4 "
    "WHERE provider_message_id = $1 AND provider_message_id <> '' "
    "AND " TF_STATUS_RANK("provider_status") " < " TF_STATUS_RANK("$2::TEXT");
#undef TF_STATUS_RANK

// ---- Opt-outs ($1 subject hash; the number sealed with the hash as row id) ----
inline constexpr const char* kSelectOptOut =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts WHERE subject_hash = $1";
inline constexpr const char* kPutOptOut =
    "INSERT INTO optouts (subject_hash, destination, created_at, source, reason) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (subject_hash) DO UPDATE SET destination = EXCLUDED.destination, created_at = EXCLUDED.created_at, "
    "source = EXCLUDED.source, reason = EXCLUDED.reason";
inline constexpr const char* kDeleteOptOut = "DELETE FROM optouts WHERE subject_hash = $1";
inline constexpr const char* kListOptOuts =
    "SELECT subject_hash, destination, created_at, source, reason FROM optouts "
    "ORDER BY created_at DESC, subject_hash DESC LIMIT $1";

// ---- The request log: the client address sealed under the row's id ----
inline constexpr const char* kNextRequestLogId = "SELECT nextval(pg_get_serial_sequence('request_log', 'id'))";
// $1 ids for as many rows, ascending.
inline constexpr const char* kNextRequestLogIds =
    "SELECT nextval(pg_get_serial_sequence('request_log', 'id')) FROM generate_series(1, $1::INTEGER) ORDER BY 1";
// Rows as parallel arrays, one per column.
inline constexpr const char* kInsertRequestLogRows =
    "INSERT INTO request_log (id, at, method, duration_ms, result, uid, key_id, client_ip, status) "
    "SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], "
    "$8::BYTEA[], $9::INTEGER[])";
inline constexpr const char* kInsertRequestLog =
    "INSERT INTO request_log (id, at, method, duration_ms, result, uid, key_id, client_ip, status) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
inline constexpr const char* kSelectRequestLog =
    "SELECT id, at, method, duration_ms, result, uid, key_id, client_ip, status FROM request_log "
    "WHERE ($1::BIGINT IS NULL OR at >= $1::BIGINT) AND ($2::BIGINT IS NULL OR at < $2::BIGINT) "
    "ORDER BY id DESC LIMIT $3";

// ---- Fraud sets: $1 rule, $2 key, $3 since (exclusive), $4 the member not to count ----
inline constexpr const char* kCountFraudMembers =
    "SELECT count(*) FROM (SELECT 1 FROM fraud_sets WHERE rule = $1 AND key = $2 AND at > $3 AND member <> $4 "
    "LIMIT $5) s";
inline constexpr const char* kSelectFraudMemberSeen =
    "SELECT at FROM fraud_sets WHERE rule = $1 AND key = $2 AND at > $3 AND member <> $4 "
    "ORDER BY at DESC LIMIT 1 OFFSET $5";
inline constexpr const char* kPutFraudMember =
    "INSERT INTO fraud_sets (rule, key, member, at, expires_at) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (rule, key, member) DO UPDATE SET at = EXCLUDED.at, expires_at = EXCLUDED.expires_at";

// ---- Retention ----
inline constexpr const char* kInsertRetentionRun =
    "INSERT INTO retention_runs (started, finished, trigger, code_hashes, deliveries, request_log, client_data, "
    "rate_counters, fraud_sets, subject_failures, auth_metadata, audit_records, removed_apps) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
inline constexpr const char* kSelectLastRetentionRun =
    "SELECT id, started, finished, trigger, code_hashes, deliveries, request_log, client_data, rate_counters, "
    "fraud_sets, subject_failures, auth_metadata, audit_records, removed_apps FROM retention_runs "
    "ORDER BY id DESC LIMIT 1";

// Purges per category (store::PurgeKind order), as in the SQLCipher schema:
// up to four statements a batch ($1 cutoff, $2 at most this many rows), each
// with its dry run's count ($1). Every condition is served by an index whose
// rows leave it once handled. Rows another node is purging at this instant
// are skipped (SKIP LOCKED), not waited for.
struct PurgeSql {
    const char* purge[4];
    const char* count[4];
};
#define TF_BATCH(action, table, key, cond) \
    action " WHERE (" key ") IN (SELECT " key " FROM " table " WHERE " cond " LIMIT $2 FOR UPDATE SKIP LOCKED)"
#define TF_COUNT(table, cond) "SELECT count(*) FROM " table " WHERE " cond
#define TF_NOT_RESTRICTED(subject) \
    "NOT EXISTS (SELECT 1 FROM subject_flags f WHERE f.subject_hash = " subject " AND f.restricted_at IS NOT NULL)"
#define TF_NOT_RESTRICTED_DELIVERY                                                                             \
    "NOT EXISTS (SELECT 1 FROM requests r JOIN subject_flags f ON f.subject_hash = r.subject_hash WHERE r.id = " \
    "deliveries.request_id AND f.restricted_at IS NOT NULL)"
#define TF_REMOVED_APPS "(SELECT name FROM apps WHERE removed_at IS NOT NULL AND removed_at <= $1)"
#define TF_PURGE1(action, table, key, cond) \
    PurgeSql { {TF_BATCH(action, table, key, cond), nullptr, nullptr, nullptr}, {TF_COUNT(table, cond), nullptr, nullptr, nullptr} }
// The requests the authentication-metadata purge deletes (cutoff `p`); the
// dry-run counts of the purges that only rewrite requests leave them out
// ($2), as in the SQLCipher schema.
#define TF_AUTH_EXPIRED(p) \
    "created_at < " p " AND (status <> 'pending' OR expires_at < " p ") AND " TF_NOT_RESTRICTED("requests.subject_hash")
#define TF_ERASE_AUDIT_SUBJECT \
    "UPDATE audit SET subject = '', subject_nonce = CASE format WHEN 1 THEN 'erased' ELSE '' END"
inline constexpr PurgeSql kPurge[] = {
    PurgeSql{{TF_BATCH("UPDATE requests SET code_hash = NULL", "requests", "id", "code_hash IS NOT NULL AND expires_at <= $1"),
              nullptr, nullptr, nullptr},
             {TF_COUNT("requests", "code_hash IS NOT NULL AND expires_at <= $1 AND NOT (" TF_AUTH_EXPIRED("$2") ")"),
              nullptr, nullptr, nullptr}},
    // deliveries, and with them the event delivery log and events never
    // delivered (an endpoint left disabled) as old
    PurgeSql{{TF_BATCH("DELETE FROM deliveries", "deliveries", "id", "at < $1 AND " TF_NOT_RESTRICTED_DELIVERY),
              TF_BATCH("DELETE FROM event_attempts", "event_attempts", "id", "at < $1"),
              TF_BATCH("DELETE FROM event_jobs", "event_jobs", "id", "created_at < $1"), nullptr},
             {TF_COUNT("deliveries", "at < $1 AND " TF_NOT_RESTRICTED_DELIVERY), TF_COUNT("event_attempts", "at < $1"),
              TF_COUNT("event_jobs", "created_at < $1"), nullptr}},
    TF_PURGE1("DELETE FROM request_log", "request_log", "id", "at < $1"),
    PurgeSql{{TF_BATCH("UPDATE requests SET destination = ''::BYTEA, fallback_destination = ''::BYTEA, "
                       "fallback_hash = '', reference = ''::BYTEA, client_ip = ''::BYTEA, device = ''::BYTEA",
                       "requests", "id",
                       "octet_length(destination) > 0 AND created_at < $1 AND " TF_NOT_RESTRICTED("requests.subject_hash")),
              nullptr, nullptr, nullptr},
             {TF_COUNT("requests", "octet_length(destination) > 0 AND created_at < $1 AND "
                                   TF_NOT_RESTRICTED("requests.subject_hash") " AND NOT (" TF_AUTH_EXPIRED("$2") ")"),
              nullptr, nullptr, nullptr}},
    // rate counters, and Idempotency-Key records, which hold their key for a day too
    PurgeSql{{TF_BATCH("DELETE FROM rate_counters", "rate_counters", "scope, key", "last_at <= $1"),
              TF_BATCH("DELETE FROM idempotency_keys", "idempotency_keys", "key_id, idem_key", "created_at < $1"),
              nullptr, nullptr},
             {TF_COUNT("rate_counters", "last_at <= $1"), TF_COUNT("idempotency_keys", "created_at < $1"), nullptr,
              nullptr}},
    TF_PURGE1("DELETE FROM fraud_sets", "fraud_sets", "rule, key, member", "expires_at <= $1"),
    TF_PURGE1("DELETE FROM subject_failures", "subject_failures", "app, subject_hash",
              "locked_until < $1 AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.app = subject_failures.app "
              "AND r.subject_hash = subject_failures.subject_hash AND r.created_at >= $1)"),
    TF_PURGE1("DELETE FROM requests", "requests", "id", TF_AUTH_EXPIRED("$1")),
    // audit records: pruned from the head of the chain by code, not here
    PurgeSql{{nullptr, nullptr, nullptr, nullptr}, {"SELECT count(*) FROM audit WHERE at < $1", nullptr, nullptr, nullptr}},
    PurgeSql{{TF_BATCH("DELETE FROM deliveries", "deliveries", "id", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED_DELIVERY),
              TF_BATCH("DELETE FROM requests", "requests", "id",
                       "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED("requests.subject_hash")),
              TF_BATCH("DELETE FROM subject_failures", "subject_failures", "app, subject_hash", "app IN " TF_REMOVED_APPS),
              TF_BATCH(TF_ERASE_AUDIT_SUBJECT, "audit", "chain, seq", "subject <> '' AND app IN " TF_REMOVED_APPS)},
             {TF_COUNT("deliveries", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED_DELIVERY),
              TF_COUNT("requests", "app IN " TF_REMOVED_APPS " AND " TF_NOT_RESTRICTED("requests.subject_hash")),
              TF_COUNT("subject_failures", "app IN " TF_REMOVED_APPS),
              TF_COUNT("audit", "subject <> '' AND app IN " TF_REMOVED_APPS)}},
};
#undef TF_PURGE1
#undef TF_AUTH_EXPIRED
#undef TF_COUNT
#undef TF_BATCH
#undef TF_REMOVED_APPS
#undef TF_NOT_RESTRICTED_DELIVERY

// ---- The audit log: a chain per writer ----
// A node holds chains and lends each to one transaction at a time (see
// AuditChains in store.cpp). When all it holds are in use it takes the
// lowest chain whose holder let its lease lapse or was an earlier start of
// this node, which is gone (SKIP LOCKED: never one another transaction is
// taking or appending to), or begins a new one when none is free (its row
// is invisible to the others until the commit). It
// keeps each chain's head itself, and each append moves the head and renews
// the lease (kInsertAudit). There are about as many chains as the most
// audited transactions the nodes had open at once, plus those let go.
// Pruning locks each chain in turn (its holder's append waits meanwhile).
// $1 the holder (node/start), $2 the lease in seconds; kTakeAuditChain's
// $3 <= holder < $4 are the node's starts (both '' for a store opened
// without a node name, which matches none).
#define TF_CHAIN_COLUMNS "chain, anchor_seq, anchor_hash, anchor_at, anchor_seal"
#define TF_SERVER_NOW "extract(epoch FROM clock_timestamp())::BIGINT"
// Both return the chain and its head (seq, hash); the locked row is the
// newest version, so the head is the last committed append's.
inline constexpr const char* kTakeAuditChain =
    "UPDATE audit_chains SET holder = $1, held_until = " TF_SERVER_NOW " + $2::BIGINT WHERE chain = "
    "(SELECT chain FROM audit_chains WHERE held_until < " TF_SERVER_NOW " OR (holder >= $3 AND holder < $4 AND "
    "holder <> $1) ORDER BY chain LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING chain, head_seq, head_hash";
inline constexpr const char* kBeginAuditChain =
    "INSERT INTO audit_chains (chain, anchor_seq, anchor_hash, anchor_at, anchor_seal, head_seq, head_hash, holder, "
    "held_until) VALUES (nextval('audit_chain_numbers'), 0, "
    "'0000000000000000000000000000000000000000000000000000000000000000', 0, '', 0, "
    "'0000000000000000000000000000000000000000000000000000000000000000', $1, " TF_SERVER_NOW " + $2::BIGINT) "
    "RETURNING chain, head_seq, head_hash";
// A chain the node has not appended to for most of its lease, renewed
// before the next append if it is still the node's with the head it knows:
// $1 chain, $2 holder, $3 lease in seconds, $4 head seq.
inline constexpr const char* kRenewAuditChain =
    "UPDATE audit_chains SET held_until = " TF_SERVER_NOW " + $3::BIGINT WHERE chain = $1 AND holder = $2 AND "
    "head_seq = $4 RETURNING chain";
// A node that stops lets its chains go at once.
inline constexpr const char* kReleaseAuditChain = "UPDATE audit_chains SET held_until = 0 WHERE holder = $1";
inline constexpr const char* kLockAuditChain = "SELECT " TF_CHAIN_COLUMNS " FROM audit_chains WHERE chain = $1 FOR UPDATE";
inline constexpr const char* kSelectAuditAnchors = "SELECT " TF_CHAIN_COLUMNS " FROM audit_chains ORDER BY chain";
#undef TF_CHAIN_COLUMNS
#define TF_AUDIT_COLUMNS                                                                                       \
    "seq, at, app, event, uid, outcome, request_id, subject, detail, prev_hash, hash, format, subject_nonce, " \
    "subject_commit, chain"
inline constexpr const char* kSelectLastAudit =
    "SELECT " TF_AUDIT_COLUMNS " FROM audit WHERE chain = $1 ORDER BY seq DESC LIMIT 1";
// The record, and its chain's head moved to it, in one statement, on the
// condition that the chain is still the holder's ($17) and its head the one
// the record follows ($16): otherwise no head moves, the record's chain is
// NULL and the insert fails (not_null_violation on audit.chain), so a node
// whose chain another node took over can never fork it; its work item runs
// again on another chain. $18 the lease in seconds.
inline constexpr const char* kInsertAudit =
    "WITH head AS (UPDATE audit_chains SET head_seq = $1, head_hash = $11, held_until = " TF_SERVER_NOW
    " + $18::BIGINT WHERE chain = $15 AND head_seq = $16 AND holder = $17 RETURNING chain) "
    "INSERT INTO audit (" TF_AUDIT_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "(SELECT chain FROM head))";
// One chain's records after a seq, by seq (verification): $1 chain, $2 after seq, $3 limit.
inline constexpr const char* kSelectAuditChain =
    "SELECT " TF_AUDIT_COLUMNS " FROM audit WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3";
// Every chain's, by time: $1 since or NULL, $2 until or NULL, $3 app or NULL,
// $4 outcome or NULL, $5 outcome prefix or NULL, $6 limit.
#define TF_AUDIT_FILTER                                                                                             \
    " FROM audit WHERE ($1::BIGINT IS NULL OR at >= $1::BIGINT) AND ($2::BIGINT IS NULL OR at < "                  \
    "$2::BIGINT) AND ($3::TEXT IS NULL OR app = $3::TEXT) AND ($4::TEXT IS NULL OR outcome = $4::TEXT) AND "        \
    "($5::TEXT IS NULL OR left(outcome, length($5::TEXT)) = $5::TEXT) "
inline constexpr const char* kSelectAudit = "SELECT " TF_AUDIT_COLUMNS TF_AUDIT_FILTER "ORDER BY at, chain, seq LIMIT $6";
inline constexpr const char* kSelectAuditNewest =
    "SELECT " TF_AUDIT_COLUMNS TF_AUDIT_FILTER "ORDER BY at DESC, chain DESC, seq DESC LIMIT $6";
inline constexpr const char* kSelectSubjectAudit =
    "SELECT " TF_AUDIT_COLUMNS " FROM audit WHERE subject = $1 AND subject <> '' ORDER BY at, chain, seq";
#undef TF_AUDIT_FILTER
#undef TF_AUDIT_COLUMNS
#undef TF_SERVER_NOW
inline constexpr const char* kSelectAuditHead =
    "SELECT seq, at, hash FROM audit WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3";
inline constexpr const char* kDeleteAuditHead = "DELETE FROM audit WHERE chain = $1 AND seq <= $2";
inline constexpr const char* kMoveAuditAnchor =
    "UPDATE audit_chains SET anchor_seq = $2, anchor_hash = $3, anchor_at = $4, anchor_seal = $5 WHERE chain = $1";
inline constexpr const char* kSealLegacyAnchor =
    "UPDATE audit_chains SET anchor_at = $4, anchor_seal = $5 WHERE chain = $1 AND anchor_seq = $2 AND anchor_hash = $3 "
    "AND anchor_seal = 'legacy'";
// twofactor stats: $1 since, $2 until, $3 limit; newest first, through the time indexes.
inline constexpr const char* kSelectRecentDeliveries =
    "SELECT channel, driver, outcome, duration_ms, at FROM deliveries WHERE at >= $1 AND at < $2 "
    "ORDER BY at DESC LIMIT $3";
inline constexpr const char* kSelectRecentEvents =
    "SELECT event, outcome, at FROM audit WHERE at >= $1 AND at < $2 ORDER BY at DESC LIMIT $3";

// ---- Apps in the configuration over time ----
inline constexpr const char* kSelectApps = "SELECT name, removed_at FROM apps FOR UPDATE";
inline constexpr const char* kInsertApp =
    "INSERT INTO apps (name, first_seen, removed_at) VALUES ($1, $2, NULL) ON CONFLICT (name) DO NOTHING";
inline constexpr const char* kSetAppRemoved = "UPDATE apps SET removed_at = $2 WHERE name = $1";

// ---- Data subjects ($1 subject hash unless said otherwise) ----
inline constexpr const char* kSelectSubjectFlags =
    "SELECT restricted_at, objected_at FROM subject_flags WHERE subject_hash = $1";
inline constexpr const char* kEnsureSubjectFlags =
    "INSERT INTO subject_flags (subject_hash) VALUES ($1) ON CONFLICT (subject_hash) DO NOTHING";
inline constexpr const char* kSetRestricted = "UPDATE subject_flags SET restricted_at = $2 WHERE subject_hash = $1";
inline constexpr const char* kSetObjected = "UPDATE subject_flags SET objected_at = $2 WHERE subject_hash = $1";
inline constexpr const char* kDropEmptyFlags =
    "DELETE FROM subject_flags WHERE subject_hash = $1 AND restricted_at IS NULL AND objected_at IS NULL";
inline constexpr const char* kSelectSubjectFailureRows =
    "SELECT app, failures, locked_until FROM subject_failures WHERE subject_hash = $1 ORDER BY app";

// Erasure, in this order (deliveries before the requests they hang on).
// $1 is the subject hash, or where byAddress, the address's fallback hash.
struct EraseSql {
    const char* sql;
    bool byAddress;
};
inline constexpr EraseSql kEraseSubject[] = {
    {"DELETE FROM delivery_jobs WHERE request_id IN (SELECT id FROM requests WHERE subject_hash = $1)", false},
    {"DELETE FROM deliveries WHERE request_id IN (SELECT id FROM requests WHERE subject_hash = $1)", false},
    {"DELETE FROM requests WHERE subject_hash = $1", false},
    {"UPDATE requests SET fallback_destination = ''::BYTEA, fallback_hash = '' WHERE fallback_hash = ANY($1::TEXT[]) "
     "AND fallback_hash <> ''",
     true},
    {TF_ERASE_AUDIT_SUBJECT " WHERE subject = $1 AND subject <> ''", false},
    {"DELETE FROM optouts WHERE subject_hash = $1", false},
    {"DELETE FROM subject_failures WHERE subject_hash = $1", false},
    {"DELETE FROM subject_flags WHERE subject_hash = $1", false},
    // rate counter keys are "APP/HASH"; fraud sets hold the hash as key or member
    {"DELETE FROM rate_counters WHERE key = $1::TEXT OR right(key, length($1::TEXT) + 1) = '/' || $1::TEXT", false},
    {"DELETE FROM fraud_sets WHERE key = $1::TEXT OR member = $1::TEXT OR right(key, length($1::TEXT) + 1) = '/' || "
     "$1::TEXT",
     false},
};
#undef TF_ERASE_AUDIT_SUBJECT
#undef TF_NOT_RESTRICTED

// Rectification. The sealed addresses are bound to their row, so each
// request is rewritten one by one: first the rows, locked.
inline constexpr const char* kLockSubjectRequests =
    "SELECT id, octet_length(destination) > 0 FROM requests WHERE subject_hash = $1 ORDER BY id FOR UPDATE";
inline constexpr const char* kLockFallbackRequests =
    "SELECT id FROM requests WHERE fallback_hash = ANY($1::TEXT[]) AND fallback_hash <> '' ORDER BY id FOR UPDATE";
// $1 id, $2 new subject hash, $3 sealed destination
inline constexpr const char* kRectifyRequest =
    "UPDATE requests SET subject_hash = $2, destination = $3 WHERE id = $1";
// $1 id, $2 sealed fallback, $3 its hash
inline constexpr const char* kRectifyFallback =
    "UPDATE requests SET fallback_destination = $2, fallback_hash = $3 WHERE id = $1";
// $1 old hash, $2 new hash: rows moved to the new subject replace the new
// subject's own (SQLite's UPDATE OR REPLACE), then the old ones go.
inline constexpr const char* kMoveSubjectFailures =
    "INSERT INTO subject_failures (app, subject_hash, failures, locked_until) SELECT app, $2, failures, locked_until "
    "FROM subject_failures WHERE subject_hash = $1 ON CONFLICT (app, subject_hash) DO UPDATE SET "
    "failures = EXCLUDED.failures, locked_until = EXCLUDED.locked_until";
inline constexpr const char* kDropSubjectFailures = "DELETE FROM subject_failures WHERE subject_hash = $1";
inline constexpr const char* kMoveSubjectFlags =
    "INSERT INTO subject_flags (subject_hash, restricted_at, objected_at) SELECT $2, restricted_at, objected_at "
    "FROM subject_flags WHERE subject_hash = $1 ON CONFLICT (subject_hash) DO UPDATE SET "
    "restricted_at = EXCLUDED.restricted_at, objected_at = EXCLUDED.objected_at";
inline constexpr const char* kDropSubjectFlags = "DELETE FROM subject_flags WHERE subject_hash = $1";

// ---- The register of data-subject requests ----
#define TF_PRIVACY_COLUMNS "id, kind, subject_hash, received, due, completed, uid, note"
inline constexpr const char* kInsertPrivacyRequest =
    "INSERT INTO privacy_requests (kind, subject_hash, received, due, completed, uid, note) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
inline constexpr const char* kSelectOpenPrivacyRequest =
    "SELECT " TF_PRIVACY_COLUMNS " FROM privacy_requests WHERE kind = $1 AND subject_hash = $2 AND completed IS NULL "
    "ORDER BY received, id LIMIT 1";
inline constexpr const char* kSelectSubjectPrivacyRequests =
    "SELECT " TF_PRIVACY_COLUMNS " FROM privacy_requests WHERE subject_hash = $1 ORDER BY received, id";
inline constexpr const char* kCompletePrivacyRequest = "UPDATE privacy_requests SET completed = $2 WHERE id = $1";
// $1 open only, $2 overdue at or NULL, $3 limit: the newest received, reversed by the caller.
inline constexpr const char* kListPrivacyRequests =
    "SELECT " TF_PRIVACY_COLUMNS " FROM privacy_requests WHERE (NOT $1::BOOLEAN OR completed IS NULL) "
    "AND ($2::BIGINT IS NULL OR (completed IS NULL AND due < $2::BIGINT)) ORDER BY received DESC, id DESC LIMIT $3";
#undef TF_PRIVACY_COLUMNS

// ---- Cluster ----
// $1 name, $2 holder, $3 slot, $4 now, $5 until. Two nodes taking the same
// slot at once: the second waits for the first's row lock, then re-checks
// the WHERE clause against the row as committed, and takes nothing.
inline constexpr const char* kTakeLease =
    "INSERT INTO leases (name, holder, slot, expires_at) VALUES ($1, $2, $3, $5) ON CONFLICT (name) DO UPDATE SET "
    "holder = EXCLUDED.holder, slot = EXCLUDED.slot, expires_at = EXCLUDED.expires_at WHERE leases.slot < "
    "EXCLUDED.slot AND (leases.expires_at <= $4::BIGINT OR leases.holder = EXCLUDED.holder)";
inline constexpr const char* kListLeases =
    "SELECT name, holder, slot, expires_at FROM leases ORDER BY name LIMIT $1";
inline constexpr const char* kHeartbeatNode =
    "INSERT INTO nodes (id, host, version, started, heartbeat, key_version) VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (id) DO UPDATE SET heartbeat = GREATEST(nodes.heartbeat, EXCLUDED.heartbeat), "
    "version = EXCLUDED.version, key_version = EXCLUDED.key_version";
inline constexpr const char* kForgetNode = "DELETE FROM nodes WHERE id = $1";
inline constexpr const char* kListNodes =
    "SELECT id, host, version, started, heartbeat, key_version FROM nodes WHERE heartbeat >= $1 "
    "ORDER BY heartbeat DESC LIMIT $2";

// ---- Transaction binding ----
inline constexpr const char* kBindRequest = "UPDATE requests SET context_digest = $2 WHERE id = $1";
inline constexpr const char* kSelectRequestBinding = "SELECT context_digest FROM requests WHERE id = $1";

// ---- The HTTPS API: keys and Idempotency-Key records ----
#define TF_API_KEY_COLUMNS \
    "id, app, scopes, secret_hash, note, created_at, created_by, expires_at, revoked_at, last_used_at"
inline constexpr const char* kInsertApiKey =
    "INSERT INTO api_keys (id, app, scopes, secret_hash, note, created_at, created_by, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
inline constexpr const char* kSelectApiKey = "SELECT " TF_API_KEY_COLUMNS " FROM api_keys WHERE id = $1";
inline constexpr const char* kListApiKeys =
    "SELECT " TF_API_KEY_COLUMNS " FROM api_keys ORDER BY created_at DESC, id LIMIT $1";
#undef TF_API_KEY_COLUMNS
inline constexpr const char* kRevokeApiKey = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at = 0";
inline constexpr const char* kTouchApiKey =
    "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND last_used_at < $2";
// Records past the window ($1), a few with every claim; another node's
// pruning at the same instant is skipped, not waited for.
inline constexpr const char* kPruneIdempotencyKeys =
    "DELETE FROM idempotency_keys WHERE (key_id, idem_key) IN (SELECT key_id, idem_key FROM idempotency_keys "
    "WHERE created_at < $1 ORDER BY created_at LIMIT 16 FOR UPDATE SKIP LOCKED)";
inline constexpr const char* kDeleteStaleIdempotencyKey =
    "DELETE FROM idempotency_keys WHERE key_id = $1 AND idem_key = $2 AND created_at < $3";
// The claim: one INSERT, which a concurrent claim of the same key waits on
// and then loses (nothing inserted: the caller reads the holder's record).
inline constexpr const char* kClaimIdempotencyKey =
    "INSERT INTO idempotency_keys (key_id, idem_key, body_hash, created_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (key_id, idem_key) DO NOTHING";
inline constexpr const char* kSelectIdempotencyKey =
    "SELECT body_hash, created_at, status, response FROM idempotency_keys WHERE key_id = $1 AND idem_key = $2";
inline constexpr const char* kCompleteIdempotencyKey =
    "UPDATE idempotency_keys SET status = $3, response = $4 WHERE key_id = $1 AND idem_key = $2 AND status = 0";
inline constexpr const char* kReleaseIdempotencyKey =
    "DELETE FROM idempotency_keys WHERE key_id = $1 AND idem_key = $2 AND status = 0";

// Breach reports: one page of a window in time order. $1 from, $2 to, $3 the
// cursor's time, $4 its row, $5 limit (requests' row is their seq).
inline constexpr const char* kSelectBreachRequests =
    "SELECT seq, created_at, id, app, channel, subject_hash, destination, fallback_destination, client_ip, device "
    "FROM requests WHERE created_at >= GREATEST($1::BIGINT, $3::BIGINT) AND created_at < $2 AND (created_at > $3 OR seq > $4) "
    "ORDER BY created_at, seq LIMIT $5";
inline constexpr const char* kSelectBreachDeliveries =
    "SELECT d.id, d.at, d.request_id, d.app, d.channel, r.subject_hash, r.destination, r.fallback_destination "
    "FROM deliveries d LEFT JOIN requests r ON r.id = d.request_id "
    "WHERE d.at >= GREATEST($1::BIGINT, $3::BIGINT) AND d.at < $2 AND (d.at > $3 OR d.id > $4) ORDER BY d.at, d.id LIMIT $5";

// The email suppression list: $1 hash, $2 reason, $3 sealed detail, $4 at,
// $5 source, $6 message id. No row affected: already listed (the first entry stays).
inline constexpr const char* kInsertSuppression =
    "INSERT INTO email_suppressions (address_hash, reason, detail, at, source, message_id) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address_hash) DO NOTHING";
inline constexpr const char* kSelectSuppression =
    "SELECT address_hash, reason, detail, at, source, message_id FROM email_suppressions WHERE address_hash = $1";
inline constexpr const char* kDeleteSuppression = "DELETE FROM email_suppressions WHERE address_hash = $1";
inline constexpr const char* kListSuppressions =
    "SELECT address_hash, reason, detail, at, source, message_id FROM email_suppressions ORDER BY at DESC LIMIT $1";
// $1 app, $2 hour, $3..$5 the one count that goes up, $6 the share (migration 8).
inline constexpr const char* kCountEmailFeedback =
    "INSERT INTO email_feedback (app, hour, sends, bounces, complaints, share) VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (app, hour, share) DO UPDATE SET sends = email_feedback.sends + EXCLUDED.sends, "
    "bounces = email_feedback.bounces + EXCLUDED.bounces, complaints = email_feedback.complaints + EXCLUDED.complaints";
inline constexpr const char* kPruneEmailFeedback = "DELETE FROM email_feedback WHERE app = $1 AND hour < $2";
inline constexpr const char* kSumEmailFeedback =
    "SELECT COALESCE(sum(sends), 0)::BIGINT, COALESCE(sum(bounces), 0)::BIGINT, COALESCE(sum(complaints), 0)::BIGINT "
    "FROM email_feedback WHERE app = $1 AND hour >= $2";
inline constexpr const char* kSelectDeliveryApp =
    "SELECT app FROM deliveries WHERE provider_message_id = $1 AND provider_message_id <> '' LIMIT 1";


// ---- Event webhooks (migration 6) ----
// due_at of an event that waits for its endpoint to be enabled again: never due.
#define TF_EVENT_PARKED "9000000000000000000"
#define TF_EVENT_COLUMNS \
    "id, app, type, request_id, payload, created_at, attempts, retry_at, holder, lease_until, last_error"
// $1 id, $2 app, $3 type, $4 request, $5 sealed payload, $6 created, $7 retry at
inline constexpr const char* kEnqueueEvent =
    "INSERT INTO event_jobs (id, app, type, request_id, payload, created_at, retry_at, due_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN EXISTS (SELECT 1 FROM event_endpoints WHERE app = $2 "
    "AND disabled_at <> 0) THEN " TF_EVENT_PARKED " ELSE $7::BIGINT END)";
// The claim, as kClaimDeliveryJobs: events due at $1 or held by another
// start of this node ($2 <= holder < $3, not $4), never parked ones, at most
// $5, locked with SKIP LOCKED and taken until $6; each returned as it was.
inline constexpr const char* kClaimEvents =
    "WITH picked AS (SELECT " TF_EVENT_COLUMNS " FROM event_jobs WHERE due_at < " TF_EVENT_PARKED
    " AND (due_at <= $1 OR (holder >= $2 AND holder < $3 AND holder <> $4 AND holder <> '')) ORDER BY due_at "
    "LIMIT $5 FOR UPDATE SKIP LOCKED) "
    "UPDATE event_jobs j SET holder = $4, lease_until = $6, due_at = GREATEST(j.retry_at, $6::BIGINT) "
    "FROM picked p WHERE j.id = p.id RETURNING p.id, p.app, p.type, p.request_id, p.payload, p.created_at, "
    "p.attempts, p.retry_at, p.holder, p.lease_until, p.last_error";
// $1 id, $2 holder, $3 attempts, $4 retry at, $5 error. The event is free from
// retry_at on; parked if its endpoint was disabled meanwhile.
inline constexpr const char* kRetryEvent =
    "UPDATE event_jobs SET attempts = $3, retry_at = $4, holder = '', lease_until = 0, last_error = $5, "
    "due_at = CASE WHEN EXISTS (SELECT 1 FROM event_endpoints e WHERE e.app = event_jobs.app AND e.disabled_at <> 0) "
    "THEN " TF_EVENT_PARKED " ELSE $4::BIGINT END WHERE id = $1 AND holder = $2";
inline constexpr const char* kFinishEvent = "DELETE FROM event_jobs WHERE id = $1 AND holder = $2";
// $1 event, $2 app, $3 type, $4 attempt, $5 at, $6 outcome, $7 status, $8 duration, $9 error
inline constexpr const char* kInsertEventAttempt =
    "INSERT INTO event_attempts (event_id, app, type, attempt_no, at, outcome, status_code, duration_ms, error) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
#define TF_EVENT_ATTEMPT_COLUMNS "id, event_id, app, type, attempt_no, at, outcome, status_code, duration_ms, error"
// $1 app or NULL, $2 failed only, $3 limit: the newest that match.
inline constexpr const char* kSelectEventAttempts =
    "SELECT " TF_EVENT_ATTEMPT_COLUMNS " FROM event_attempts WHERE ($1::TEXT IS NULL OR app = $1::TEXT) "
    "AND (NOT $2::BOOLEAN OR outcome <> 'delivered') ORDER BY id DESC LIMIT $3";
// The same for one event ($4) through event_attempts_by_event.
inline constexpr const char* kSelectEventAttemptsOfEvent =
    "SELECT " TF_EVENT_ATTEMPT_COLUMNS " FROM event_attempts WHERE event_id = $4 AND ($1::TEXT IS NULL OR "
    "app = $1::TEXT) AND (NOT $2::BOOLEAN OR outcome <> 'delivered') ORDER BY id DESC LIMIT $3";
// Consecutive failures counted in one statement, which also locks the app's
// row to the commit: $1 app, $2 error.
inline constexpr const char* kCountEventFailure =
    "INSERT INTO event_endpoints (app, failures, disabled_at, last_error) VALUES ($1, 1, 0, $2) "
    "ON CONFLICT (app) DO UPDATE SET failures = event_endpoints.failures + 1, last_error = EXCLUDED.last_error "
    "RETURNING failures";
// Under that lock, the failure that reaches the limit turns the endpoint off,
// once: $1 app, $2 now, $3 max failures.
inline constexpr const char* kDisableEventEndpoint =
    "UPDATE event_endpoints SET disabled_at = $2 WHERE app = $1 AND disabled_at = 0 AND failures >= $3";
// $1 app: its waiting events (not one in flight, parked by kRetryEvent).
inline constexpr const char* kParkEvents =
    "UPDATE event_jobs SET due_at = " TF_EVENT_PARKED " WHERE app = $1 AND holder = ''";
// A delivery resets the count of an endpoint still on: $1 app. Without
// failures no row matches, so the usual delivery locks nothing.
inline constexpr const char* kClearEventFailures =
    "UPDATE event_endpoints SET failures = 0 WHERE app = $1 AND disabled_at = 0 AND failures <> 0";
inline constexpr const char* kEnableEventEndpoint =
    "UPDATE event_endpoints SET disabled_at = 0, failures = 0 WHERE app = $1 AND disabled_at <> 0";
// $1 app, $2 now
inline constexpr const char* kUnparkEvents =
    "UPDATE event_jobs SET due_at = $2, retry_at = $2 WHERE app = $1 AND due_at = " TF_EVENT_PARKED;
inline constexpr const char* kListEventEndpoints =
    "SELECT app, failures, disabled_at, last_error FROM event_endpoints ORDER BY app";
// Pending requests past their expiry, through requests_live_code (a pending
// request still has its code hash): $1 now, $2 limit. Locked with SKIP
// LOCKED, so the sweeps of several nodes end disjoint requests, none waiting.
inline constexpr const char* kSelectExpiredPending =
    "SELECT id, app, channel, destination, subject_hash, purpose, locale, client_ip, device, reference, code_hash, "
    "code_length, status, attempts, max_attempts, sends, max_sends, ttl, created_at, expires_at, updated_at, "
    "finished_at, failure, fallback_destination FROM requests WHERE code_hash IS NOT NULL AND expires_at <= $1 "
    "AND status = 'pending' ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED";
#undef TF_EVENT_ATTEMPT_COLUMNS
#undef TF_EVENT_COLUMNS
#undef TF_EVENT_PARKED


// ---- Store key versions and resealing (migration 7) ----
inline constexpr const char* kSelectSealKeys = "SELECT version, fingerprint FROM seal_keys ORDER BY version";
// $1 fingerprint, $2 now: the first key of a database is version 1.
inline constexpr const char* kRegisterFirstSealKey =
    "INSERT INTO seal_keys (version, fingerprint, created_at) SELECT 1, $1, $2 "
    "WHERE NOT EXISTS (SELECT 1 FROM seal_keys) ON CONFLICT DO NOTHING";
// A rotation's new key: the next version. Two rotations at once: one fails
// on the primary key and changes nothing.
inline constexpr const char* kAddSealKey =
    "INSERT INTO seal_keys (version, fingerprint, created_at) SELECT COALESCE(max(version), 0) + 1, $1, $2 "
    "FROM seal_keys RETURNING version";
// Resealing walks each table with sealed columns in primary-key order, one
// bounded batch a transaction, its rows locked until that commit: $1 the
// last key of the batch before ('' or 0 first), $2 the batch size. The
// UPDATE gets the key ($1), then the columns in the SELECT's order.
struct ResealSql {
    const char* table;
    const char* select;
    const char* update;
    const char* columns[5];
    const char* first;  // the key before every other
};
inline constexpr ResealSql kReseal[] = {
    {"requests",
     "SELECT id, destination, client_ip, device, reference, fallback_destination FROM requests WHERE id > $1 "
     "ORDER BY id LIMIT $2 FOR UPDATE",
     // $7: the fallback's index under the new key, '' to keep it
     "UPDATE requests SET destination = $2, client_ip = $3, device = $4, reference = $5, fallback_destination = $6, "
     "fallback_hash = CASE WHEN $7 = '' THEN fallback_hash ELSE $7 END WHERE id = $1",
     {"destination", "client_ip", "device", "reference", "fallback_destination"},
     ""},
    {"optouts",
     "SELECT subject_hash, destination FROM optouts WHERE subject_hash > $1 ORDER BY subject_hash LIMIT $2 FOR UPDATE",
     "UPDATE optouts SET destination = $2 WHERE subject_hash = $1",
     {"destination", nullptr, nullptr, nullptr, nullptr},
     ""},
    {"request_log",
     "SELECT id::TEXT, client_ip FROM request_log WHERE id > $1::BIGINT ORDER BY id LIMIT $2 FOR UPDATE",
     "UPDATE request_log SET client_ip = $2 WHERE id = $1::BIGINT",
     {"client_ip", nullptr, nullptr, nullptr, nullptr},
     "0"},
    {"email_suppressions",
     "SELECT address_hash, detail FROM email_suppressions WHERE address_hash > $1 ORDER BY address_hash LIMIT $2 "
     "FOR UPDATE",
     "UPDATE email_suppressions SET detail = $2 WHERE address_hash = $1",
     {"detail", nullptr, nullptr, nullptr, nullptr},
     ""},
    {"event_jobs",
     "SELECT id, payload FROM event_jobs WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
     "UPDATE event_jobs SET payload = $2 WHERE id = $1",
     {"payload", nullptr, nullptr, nullptr, nullptr},
     ""},
};
// Values still under another version than $1 (a maintenance scan of every
// sealed column, run once a rotation pass is done, never per call).
#define TF_OLD(c) "(CASE WHEN octet_length(" c ") > 0 THEN get_byte(" c ", 0) <> $1 ELSE FALSE END)"
inline constexpr const char* kCountOldSealed =
    "SELECT (SELECT count(*) FROM requests WHERE " TF_OLD("destination") " OR " TF_OLD("client_ip") " OR "
    TF_OLD("device") " OR " TF_OLD("reference") " OR " TF_OLD("fallback_destination") ") + "
    "(SELECT count(*) FROM optouts WHERE " TF_OLD("destination") ") + "
    "(SELECT count(*) FROM request_log WHERE " TF_OLD("client_ip") ") + "
    "(SELECT count(*) FROM email_suppressions WHERE " TF_OLD("detail") ") + "
    "(SELECT count(*) FROM event_jobs WHERE " TF_OLD("payload") ")";
#undef TF_OLD

}  // namespace twofactor::store::pg
