// The audit log (issue 6): append-only, hash-chained records of what the
// daemon decided, as pure functions over a small store interface, like the
// rate limits. Every record carries the hash of the one before it and an
// HMAC-SHA256 under the audit key over its canonical form, so a change,
// insertion or removal inside the chain is found by verifyAuditChain by
// anyone holding the key, and cannot be re-sealed without it.
//
// Records hold no personal data in clear: the subject is the service's keyed
// subject hash; never a destination, never a code, never a key.
#pragma once

#include "util/crypto.hpp"
#include "util/secret.hpp"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::otp {

struct AuditRecord {
    std::int64_t seq = 0;  // 1, 2, 3, ... without gaps
    std::int64_t at = 0;   // Unix seconds
    std::string app;       // empty when not about one app
    std::string event;     // send, resend, verify, cancel, optout-add, optout-remove, permission-denied, config-load
    std::int64_t uid = -1;  // the peer's uid; -1 when not a peer's call (webhook, daemon)
    std::string outcome;    // success, approved, rejected, failure, refused:<scope>, denied
    std::string requestId;  // empty when none
    std::string subject;    // keyed subject hash; empty when none
    std::string detail;     // short, no personal data
    std::string prevHash;   // hex; the genesis record has kAuditGenesis
    std::string hash;       // hex HMAC-SHA256(audit key, canonical form incl. prevHash)
};

// prev_hash of the first record.
inline constexpr const char* kAuditGenesis = "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditQuery {
    std::optional<std::int64_t> since;  // at >= since
    std::optional<std::int64_t> until;  // at < until
    std::optional<std::string> app;
    std::optional<std::string> outcome;  // exact, or a prefix ending in ':' ("refused:")
    std::int64_t afterSeq = 0;           // seq > afterSeq (paging)
    int limit = 1000;
};

// What the audit log needs from the store. store::Transaction implements it.
// There is deliberately no update or delete.
class AuditStore {
public:
    virtual ~AuditStore() = default;
    [[nodiscard]] virtual std::optional<AuditRecord> lastAuditRecord() = 0;
    virtual void insertAuditRecord(const AuditRecord& record) = 0;
    // Oldest first (by seq): the first `limit` records that match.
    [[nodiscard]] virtual std::vector<AuditRecord> findAuditRecords(const AuditQuery& query) = 0;
};

// Thrown when an audit record cannot be written. The work item that tried to
// write it rolls back: the operation it records does not happen (fails closed).
struct AuditWriteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The unambiguous byte string the hash covers: every field, length-prefixed.
[[nodiscard]] std::string canonicalAuditRecord(const AuditRecord& r);
[[nodiscard]] std::string auditRecordHash(const SecretBytes& key, const AuditRecord& r);

// Fills seq, prevHash and hash from the chain's tail and appends the record.
// Any failure is rethrown as AuditWriteError. Returns the record as stored.
AuditRecord appendAudit(AuditStore& store, const SecretBytes& key, AuditRecord record);

struct AuditVerification {
    bool ok = true;
    std::int64_t records = 0;                // records checked
    std::optional<std::int64_t> firstBroken;  // seq of the first record that does not verify
    std::string reason;
};

// Walks the whole chain from seq 1, in pages, and reports the first broken link.
// Removing records from the end cannot be seen from the chain alone.
[[nodiscard]] AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key);

}  // namespace twofactor::otp
