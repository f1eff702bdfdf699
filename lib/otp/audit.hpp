// The audit log (issue 6): append-only, hash-chained records of what the
// daemon decided, as pure functions over a small store interface, like the
// rate limits. Every record carries the hash of the one before it and an
// HMAC-SHA256 under the audit key over its canonical form, so a change,
// insertion or removal inside the chain is found by verifyAuditChain by
// anyone holding the key, and cannot be re-sealed without it.
//
// The log is one or more chains, each with its own seq, anchor and head. A
// store with one writer (SQLCipher) has one, chain 0. On PostgreSQL each
// audited transaction appends to a chain no other open transaction holds,
// so that nodes do not wait on one chain's lock to commit, and
// verification walks every chain.
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
    std::int64_t seq = 0;  // 1, 2, 3, ... without gaps, within its chain
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
    // The chain the record belongs to. Chain 0's canonical form is the one
    // records had before there were chains; any other chain's also seals
    // its number, so a record cannot be moved from one chain to another.
    std::int64_t chain = 0;
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
    std::int64_t chain = 0;  // sealed too, for every chain but 0
};

// What migration 12 put in the seal of an anchor written before anchors were
// sealed. The daemon seals such an anchor as it finds it once, on its next
// start, and records that in the chain ("audit-anchor"), so the adoption is
// visible; see sealLegacyAuditAnchor.
inline constexpr const char* kAuditLegacySeal = "legacy";

// The chain head for safekeeping outside the daemon (twofactor audit
// checkpoint): with it, a later verification proves that no record up to seq
// was removed, even from the end of the chain, which the chain alone cannot.
// One per chain: auditHeads gives every chain's.
struct AuditCheckpoint {
    std::int64_t seq = 0;
    std::string hash;
    std::int64_t at = 0;  // the record's time
    std::int64_t chain = 0;
};

// prev_hash of the first record.
inline constexpr const char* kAuditGenesis = "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditQuery {
    std::optional<std::int64_t> since;  // at >= since
    std::optional<std::int64_t> until;  // at < until
    std::optional<std::string> app;
    std::optional<std::string> outcome;  // exact, or a prefix ending in ':' ("refused:")
    // One chain's records, by seq after afterSeq (paging; verification).
    // Without it, every chain's, ordered by time, then chain, then seq.
    std::optional<std::int64_t> chain;
    std::int64_t afterSeq = 0;           // seq > afterSeq, with chain only
    int limit = 1000;
    bool newest = false;                 // the newest `limit` that match (still oldest first), not the oldest
};

// What the audit log needs from the store. store::Transaction implements it.
// There is deliberately no update or delete.
class AuditStore {
public:
    virtual ~AuditStore() = default;
    // The tail of the chain this transaction appends to (its last record, or
    // its anchor when it has none): chain, seq and hash. The chain is held
    // for the transaction until its commit, so that no other writer appends
    // to it meanwhile; every call in one transaction gives the same chain,
    // and after an insert the record inserted.
    [[nodiscard]] virtual AuditCheckpoint auditAppendTail() = 0;
    [[nodiscard]] virtual std::optional<AuditRecord> lastAuditRecord(std::int64_t chain) = 0;
    virtual void insertAuditRecord(const AuditRecord& record) = 0;
    // Oldest first: the first `limit` records that match (see AuditQuery).
    [[nodiscard]] virtual std::vector<AuditRecord> findAuditRecords(const AuditQuery& query) = 0;
    // Where each chain starts (after retention pruned its head), by chain.
    [[nodiscard]] virtual std::vector<AuditAnchor> auditAnchors() = 0;
    // Seals an anchor marked kAuditLegacySeal, if it is still the one given
    // (chain, seq and hash); returns whether it was.
    virtual bool sealLegacyAuditAnchor(const AuditAnchor& sealed) = 0;
    // A store that holds a chain per writer transaction may take `append`
    // (an appendAudit of one record) to run at the end of the work item, just
    // before its commit, so the chain is held for the commit only; it
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

// Fills chain, seq, prevHash and hash from the tail of the transaction's
// chain (AuditStore::auditAppendTail) and appends the record.
// Any failure is rethrown as AuditWriteError. Returns the record as stored.
AuditRecord appendAudit(AuditStore& store, const SecretBytes& key, AuditRecord record);
// The same for a record nothing in the work item reads back: appended at the
// commit where the store can (AuditStore::appendAtCommit), at once elsewhere.
// `store` and `key` must outlive the work item.
void appendAuditAtCommit(AuditStore& store, const SecretBytes& key, AuditRecord record);

// On the daemon's start: seals an anchor migrated from before anchors were
// sealed and appends an "audit-anchor" record saying so. Returns that record,
// or nothing when no anchor needed adoption.
std::optional<AuditRecord> sealLegacyAuditAnchor(AuditStore& store, const SecretBytes& key, std::int64_t now);

// How a checkpoint compared with the chain.
enum class CheckpointMatch {
    None,     // no checkpoint given
    Matched,  // the record at each head's seq is there, with its hash and time
    Pruned,   // matched, but some heads are older than their chain's anchor: cut by retention, under a sealed anchor
    Failed,   // missing or different: see reason
};

// One chain as verification found it.
struct AuditChainSummary {
    std::int64_t chain = 0;
    std::int64_t records = 0;
    std::int64_t firstSeq = 1;  // records before it were pruned by retention
    std::int64_t lastSeq = 0;   // its head: its last record, or the anchor when none is left
};

struct AuditVerification {
    bool ok = true;
    std::int64_t records = 0;                // records checked, in every chain
    std::int64_t erased = 0;                 // of which subjects were erased (still verified, but format 1: linked only)
    std::int64_t prunedBefore = 0;           // chain 0: records before this seq were pruned by retention
    std::optional<std::int64_t> firstBroken;  // seq of the first record that does not verify
    std::int64_t brokenChain = 0;             // and its chain
    std::string reason;
    bool anchorSealed = true;   // false: an anchor's seal is missing or forged (ok is false then)
    std::int64_t lastSeq = 0;   // chain 0's head: its last record, or the anchor when none is left
    CheckpointMatch checkpoint = CheckpointMatch::None;
    std::vector<AuditChainSummary> chains;  // each chain checked, by chain, up to the broken one
};

// Walks every chain from its anchor (seq 1 unless pruned), in pages, and reports the first broken link, or
// an anchor whose seal does not verify. Removing records from the end of a chain, or a whole chain, cannot
// be seen from the chains alone: given the heads taken earlier (a checkpoint), it also checks that each
// record they name is still there, unchanged. A chain begun after the checkpoint is not in it.
[[nodiscard]] AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key,
                                                 const std::vector<AuditCheckpoint>& checkpoint = {});

// Each chain's head now, by chain: its last record, or the anchor when retention left none.
[[nodiscard]] std::vector<AuditCheckpoint> auditHeads(AuditStore& store);

}  // namespace twofactor::otp
