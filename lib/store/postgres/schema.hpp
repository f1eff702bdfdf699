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
inline constexpr const char* kSelectRequest = "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE id = $1";
inline constexpr const char* kSelectNewestPending =
    "SELECT " TF_REQUEST_COLUMNS " FROM requests WHERE app = $1 AND subject_hash = $2 AND status = 'pending' "
    "ORDER BY created_at DESC, seq DESC LIMIT 1";
inline constexpr const char* kInsertRequest =
    "INSERT INTO requests (" TF_REQUEST_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
    "$14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";
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
// $1 scope, $2 key, $3 now, $4 the window: a window that is over (or an
// empty counter) starts again at now.
inline constexpr const char* kCountRateSend =
    "UPDATE rate_counters SET "
    "window_start = CASE WHEN count = 0 OR $3 >= window_start + $4 THEN $3 ELSE window_start END, "
    "count = CASE WHEN count = 0 OR $3 >= window_start + $4 THEN 1 ELSE count + 1 END, last_at = $3 "
    "WHERE scope = $1 AND key = $2";

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
// until $6. RETURNING names the picked row: each job as it was before.
inline constexpr const char* kClaimDeliveryJobs =
    "WITH picked AS (SELECT " TF_JOB_COLUMNS " FROM delivery_jobs WHERE due_at <= $1 "
    "OR (holder >= $2 AND holder < $3 AND holder <> $4 AND holder <> '') ORDER BY due_at LIMIT $5 "
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

}  // namespace twofactor::store::pg
