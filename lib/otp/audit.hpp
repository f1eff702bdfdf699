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
#include <exception>
#include <functional>
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
    std::string event;     // send, resend, verify, cancel, optout-add, optout-remove, permission-denied, config-load,
                           // key-rotation, backup, gdpr-export|delete|rectify|restrict|unrestrict|object|register,
                           // audit-anchor
    std::int64_t uid = -1;  // the peer's uid; -1 when not a peer's call (webhook, daemon)
    std::string outcome;    // success, approved, rejected, failure, refused:<scope>, denied
    std::string requestId;  // empty when none
    std::string subject;    // keyed subject hash; empty when none
    std::string detail;     // short, no personal data
    std::string prevHash;   // hex; the genesis record has kAuditGenesis
    std::string hash;       // hex HMAC-SHA256(audit key, canonical form incl. prevHash)
    // Format 2 (issue 5) seals a commitment to the subject instead of the
    // subject itself: subjectCommit = HMAC-SHA256(subjectNonce, subject), with
    // a random nonce per record. Erasing a subject (GDPR Art. 17, retention of
    // a removed app) blanks subject and nonce; the commitment left behind can
    // no longer be linked to anyone, and the chain still verifies. Format 1
    // records sealed the subject itself: an erased one ("erased" nonce) keeps
    // its place in the chain, but its own hash can no longer be checked.
    int format = 2;
    std::string subjectNonce;   // hex; "" when no subject or erased; "erased" on an erased format-1 record
    std::string subjectCommit;  // hex; "" when the record never had a subject
};

// The first record kept after the oldest were pruned by retention: the chain
// resumes from the last pruned record's seq and hash. Each retention cut
// writes a new anchor sealed with the audit key, so that someone holding only
// the database key cannot cut the head of the chain and write an anchor that
// verifies. The genesis anchor (seq 0) needs no seal: it claims that nothing
// was cut, which record 1 proves or disproves by itself.
struct AuditAnchor {
    std::int64_t seq = 0;
    std::string hash;  // kAuditGenesis when nothing was pruned
    std::int64_t at = 0;  // when the cut that wrote it ran (Unix seconds)
    std::string seal;     // hex HMAC-SHA256(audit key, canonical anchor); kAuditLegacySeal, or empty
};

// What migration 12 put in the seal of an anchor written before anchors were
// sealed. The daemon seals such an anchor as it finds it once, on its next
// start, and records that in the chain ("audit-anchor"), so the adoption is
// visible; see sealLegacyAuditAnchor.
inline constexpr const char* kAuditLegacySeal = "legacy";

// The chain head for safekeeping outside the daemon (twofactor audit
// checkpoint): with it, a later verification proves that no record up to seq
// was removed, even from the end of the chain, which the chain alone cannot.
struct AuditCheckpoint {
    std::int64_t seq = 0;
    std::string hash;
    std::int64_t at = 0;  // the record's time
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
    bool newest = false;                 // the newest `limit` that match (still oldest first), not the oldest
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
    // Where the chain starts (after retention pruned its head).
    [[nodiscard]] virtual AuditAnchor auditAnchor() = 0;
    // Seals an anchor marked kAuditLegacySeal, if it is still the one given
    // (seq and hash); returns whether it was.
    virtual bool sealLegacyAuditAnchor(const AuditAnchor& sealed) = 0;
    // A store whose writers share the chain across nodes may take `append`
    // (an appendAudit of one record) to run at the end of the work item, just
    // before its commit, so the chain's lock is held for the commit only; it
    // returns whether it took it. Work items run their appends in order.
    virtual bool appendAtCommit(std::function<void()>& append) {
        (void)append;
        return false;
    }
};

// Thrown when an audit record cannot be written. The work item that tried to
// write it rolls back: the operation it records does not happen (fails closed).
// `cause` is the store's own error, when there was one: a store that runs a
// work item again after a conflict (a deadlock) judges the error by it.
struct AuditWriteError : std::runtime_error {
    explicit AuditWriteError(const std::string& what, std::exception_ptr why = nullptr)
        : std::runtime_error(what), cause(std::move(why)) {}
    std::exception_ptr cause;
};

// The unambiguous byte string the hash covers: every field, length-prefixed.
[[nodiscard]] std::string canonicalAuditRecord(const AuditRecord& r);
[[nodiscard]] std::string auditRecordHash(const SecretBytes& key, const AuditRecord& r);

// The unambiguous byte string an anchor's seal covers, and the seal.
[[nodiscard]] std::string canonicalAuditAnchor(const AuditAnchor& a);
[[nodiscard]] std::string auditAnchorSeal(const SecretBytes& key, const AuditAnchor& a);
// The genesis anchor, or one whose seal matches.
[[nodiscard]] bool auditAnchorValid(const SecretBytes& key, const AuditAnchor& a);

// Fills seq, prevHash and hash from the chain's tail and appends the record.
// Any failure is rethrown as AuditWriteError. Returns the record as stored.
AuditRecord appendAudit(AuditStore& store, const SecretBytes& key, AuditRecord record);
// The same for a record nothing in the work item reads back: appended at the
// commit where the store can (AuditStore::appendAtCommit), at once elsewhere.
// `store` and `key` must outlive the work item.
void appendAuditAtCommit(AuditStore& store, const SecretBytes& key, AuditRecord record);

// On the daemon's start: seals an anchor migrated from before anchors were
// sealed and appends an "audit-anchor" record saying so. Returns that record,
// or nothing when the anchor needed no adoption.
std::optional<AuditRecord> sealLegacyAuditAnchor(AuditStore& store, const SecretBytes& key, std::int64_t now);

// How a checkpoint compared with the chain.
enum class CheckpointMatch {
    None,     // no checkpoint given
    Matched,  // the record at the checkpoint's seq is there, with its hash and time
    Pruned,   // older than the anchor: cut by retention, under a sealed anchor
    Failed,   // missing or different: see reason
};

struct AuditVerification {
    bool ok = true;
    std::int64_t records = 0;                // records checked
    std::int64_t erased = 0;                 // of which subjects were erased (still verified, but format 1: linked only)
    std::int64_t prunedBefore = 0;           // records before this seq were pruned by retention
    std::optional<std::int64_t> firstBroken;  // seq of the first record that does not verify
    std::string reason;
    bool anchorSealed = true;   // false: the anchor's seal is missing or forged (ok is false then)
    std::int64_t lastSeq = 0;   // the chain's head: its last record, or the anchor when none is left
    CheckpointMatch checkpoint = CheckpointMatch::None;
};

// Walks the whole chain from its anchor (seq 1 unless pruned), in pages, and reports the first broken link,
// or an anchor whose seal does not verify. Removing records from the end cannot be seen from the chain
// alone: given a checkpoint taken earlier, it also checks that the record it names is still there, unchanged.
[[nodiscard]] AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key,
                                                 const std::optional<AuditCheckpoint>& checkpoint = std::nullopt);

// The chain's head now: its last record, or the anchor when retention left none.
[[nodiscard]] AuditCheckpoint auditCheckpoint(AuditStore& store);

}  // namespace twofactor::otp
