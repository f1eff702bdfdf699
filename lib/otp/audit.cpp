#include "otp/audit.hpp"

namespace twofactor::otp {

namespace {

void field(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ':';
    out += std::to_string(value.size());
    out += ':';
    out += value;
    out += '\n';
}

constexpr int kVerifyPage = 1000;

}  // namespace

std::string subjectCommitment(std::string_view nonceHex, std::string_view subject) {
    SecretBytes nonce;
    if (!crypto::unhex(nonceHex, nonce)) return {};
    return crypto::hex(crypto::hmacSha256(nonce, subject));
}

std::string canonicalAuditRecord(const AuditRecord& r) {
    std::string out = r.format == 1 ? "twofactor-audit-v1\n" : "twofactor-audit-v2\n";
    field(out, "seq", std::to_string(r.seq));
    field(out, "at", std::to_string(r.at));
    field(out, "app", r.app);
    field(out, "event", r.event);
    field(out, "uid", std::to_string(r.uid));
    field(out, "outcome", r.outcome);
    field(out, "request", r.requestId);
    if (r.format == 1) field(out, "subject", r.subject);
    else field(out, "subject-commitment", r.subjectCommit);
    field(out, "detail", r.detail);
    field(out, "prev", r.prevHash);
    return out;
}

std::string auditRecordHash(const SecretBytes& key, const AuditRecord& r) {
    return crypto::hex(crypto::hmacSha256(key, canonicalAuditRecord(r)));
}

std::string canonicalAuditAnchor(const AuditAnchor& a) {
    std::string out = "twofactor-audit-anchor-v1\n";
    field(out, "seq", std::to_string(a.seq));
    field(out, "hash", a.hash);
    field(out, "at", std::to_string(a.at));
    return out;
}

std::string auditAnchorSeal(const SecretBytes& key, const AuditAnchor& a) {
    return crypto::hex(crypto::hmacSha256(key, canonicalAuditAnchor(a)));
}

bool auditAnchorValid(const SecretBytes& key, const AuditAnchor& a) {
    if (a.seq == 0 && a.hash == kAuditGenesis) return true;
    return !a.seal.empty() && a.seal != kAuditLegacySeal && crypto::constantTimeEqual(auditAnchorSeal(key, a), a.seal);
}

AuditRecord appendAudit(AuditStore& store, const SecretBytes& key, AuditRecord record) {
    try {
        const auto last = store.lastAuditRecord();
        record.seq = last ? last->seq + 1 : 1;
        if (!last) {
            const AuditAnchor anchor = store.auditAnchor();  // everything pruned: resume after the anchor
            record.seq = anchor.seq + 1;
            record.prevHash = anchor.hash;
        } else {
            record.prevHash = last->hash;
        }
        record.format = 2;
        record.subjectNonce.clear();
        record.subjectCommit.clear();
        if (!record.subject.empty()) {
            const SecretBytes nonce = crypto::randomSecret(16);
            record.subjectNonce = crypto::hex(nonce.data(), nonce.size());
            record.subjectCommit = subjectCommitment(record.subjectNonce, record.subject);
        }
        record.hash = auditRecordHash(key, record);
        store.insertAuditRecord(record);
        return record;
    } catch (const AuditWriteError&) {
        throw;
    } catch (const std::exception& e) {
        throw AuditWriteError(std::string("the audit record could not be written: ") + e.what(), std::current_exception());
    }
}

void appendAuditAtCommit(AuditStore& store, const SecretBytes& key, AuditRecord record) {
    std::function<void()> append = [&store, &key, record = std::move(record)] { (void)appendAudit(store, key, record); };
    if (!store.appendAtCommit(append)) append();
}

std::optional<AuditRecord> sealLegacyAuditAnchor(AuditStore& store, const SecretBytes& key, std::int64_t now) {
    AuditAnchor anchor = store.auditAnchor();
    if (anchor.seal != kAuditLegacySeal) return std::nullopt;
    anchor.at = now;
    anchor.seal = auditAnchorSeal(key, anchor);
    if (!store.sealLegacyAuditAnchor(anchor)) return std::nullopt;
    AuditRecord r;
    r.at = now;
    r.event = "audit-anchor";
    r.outcome = "success";
    r.detail = "anchor at seq " + std::to_string(anchor.seq) +
               " (records cut by retention before anchors were sealed) sealed as found";
    return appendAudit(store, key, std::move(r));
}

AuditCheckpoint auditCheckpoint(AuditStore& store) {
    if (const auto last = store.lastAuditRecord()) return AuditCheckpoint{last->seq, last->hash, last->at};
    const AuditAnchor anchor = store.auditAnchor();
    return AuditCheckpoint{anchor.seq, anchor.hash.empty() ? std::string(kAuditGenesis) : anchor.hash, anchor.at};
}

AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key,
                                   const std::optional<AuditCheckpoint>& checkpoint) {
    AuditVerification v;
    const AuditAnchor anchor = store.auditAnchor();
    std::int64_t expectedSeq = anchor.seq + 1;
    std::string prev = anchor.hash.empty() ? std::string(kAuditGenesis) : anchor.hash;
    v.prunedBefore = expectedSeq;
    v.lastSeq = anchor.seq;
    auto broken = [&](std::int64_t seq, std::string reason) {
        v.ok = false;
        v.firstBroken = seq;
        v.reason = std::move(reason);
        if (checkpoint) v.checkpoint = CheckpointMatch::Failed;
        return v;
    };
    if (!auditAnchorValid(key, anchor)) {
        v.anchorSealed = false;
        const std::string what = "the chain starts after seq " + std::to_string(anchor.seq) + " (records cut by retention), ";
        if (anchor.seal.empty())
            return broken(expectedSeq, what + "but that anchor carries no seal: it was written with the database key alone");
        if (anchor.seal == kAuditLegacySeal)
            return broken(expectedSeq, what + "but that anchor, from before anchors were sealed, is not sealed yet "
                                              "(twofactord seals it on its next start)");
        return broken(expectedSeq, what + "but that anchor's seal does not verify: it was forged, or sealed with another key");
    }
    // A checkpoint at or before the anchor: the anchor itself, or a record a
    // sealed retention cut removed (its hash can no longer be compared).
    if (checkpoint && checkpoint->seq <= anchor.seq) {
        if (checkpoint->seq == anchor.seq && !crypto::constantTimeEqual(checkpoint->hash, prev))
            return broken(checkpoint->seq, "the checkpoint's hash does not match the record at seq " +
                                               std::to_string(checkpoint->seq) + " (the chain's anchor)");
        v.checkpoint = checkpoint->seq == anchor.seq ? CheckpointMatch::Matched : CheckpointMatch::Pruned;
    }
    for (;;) {
        AuditQuery q;
        q.afterSeq = expectedSeq - 1;
        q.limit = kVerifyPage;
        const auto page = store.findAuditRecords(q);
        for (const auto& r : page) {
            if (r.seq != expectedSeq)
                return broken(expectedSeq, "record " + std::to_string(expectedSeq) + " is missing (next is " +
                                               std::to_string(r.seq) + ")");
            if (!crypto::constantTimeEqual(r.prevHash, prev))
                return broken(r.seq, "its previous-hash does not match record " + std::to_string(r.seq - 1));
            const bool erasedV1 = r.format == 1 && r.subjectNonce == "erased";
            if (!erasedV1 && !crypto::constantTimeEqual(auditRecordHash(key, r), r.hash))
                return broken(r.seq, "its hash does not match its contents (changed, or sealed with another key)");
            if (r.format != 1 && !r.subject.empty() &&
                !crypto::constantTimeEqual(subjectCommitment(r.subjectNonce, r.subject), r.subjectCommit))
                return broken(r.seq, "its subject does not match the subject it was sealed with");
            if (r.format != 1 && r.subject.empty() && !r.subjectCommit.empty()) ++v.erased;
            if (erasedV1) ++v.erased;
            if (checkpoint && r.seq == checkpoint->seq) {
                if (!crypto::constantTimeEqual(r.hash, checkpoint->hash) || r.at != checkpoint->at)
                    return broken(r.seq, "record " + std::to_string(r.seq) +
                                             " does not match the checkpoint (its hash or time differs)");
                v.checkpoint = CheckpointMatch::Matched;
            }
            prev = r.hash;
            v.lastSeq = r.seq;
            ++expectedSeq;
            ++v.records;
        }
        if (page.size() < static_cast<std::size_t>(kVerifyPage)) break;
    }
    if (checkpoint && v.checkpoint == CheckpointMatch::None)
        return broken(checkpoint->seq, "record " + std::to_string(checkpoint->seq) +
                                           " of the checkpoint is gone: records were cut from the end (the chain now "
                                           "ends at seq " + std::to_string(v.lastSeq) + ")");
    return v;
}

}  // namespace twofactor::otp
