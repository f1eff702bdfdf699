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
    if (r.chain != 0) field(out, "chain", std::to_string(r.chain));
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
    if (a.chain != 0) field(out, "chain", std::to_string(a.chain));
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
        const AuditCheckpoint tail = store.auditAppendTail();
        record.chain = tail.chain;
        record.seq = tail.seq + 1;
        record.prevHash = tail.hash.empty() ? std::string(kAuditGenesis) : tail.hash;
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
    std::optional<AuditRecord> last;
    for (AuditAnchor anchor : store.auditAnchors()) {
        if (anchor.seal != kAuditLegacySeal) continue;
        anchor.at = now;
        anchor.seal = auditAnchorSeal(key, anchor);
        if (!store.sealLegacyAuditAnchor(anchor)) continue;
        AuditRecord r;
        r.at = now;
        r.event = "audit-anchor";
        r.outcome = "success";
        r.detail = "anchor at seq " + std::to_string(anchor.seq) +
                   (anchor.chain != 0 ? " of chain " + std::to_string(anchor.chain) : std::string()) +
                   " (records cut by retention before anchors were sealed) sealed as found";
        last = appendAudit(store, key, std::move(r));
    }
    return last;
}

std::vector<AuditCheckpoint> auditHeads(AuditStore& store) {
    std::vector<AuditCheckpoint> heads;
    auto anchors = store.auditAnchors();
    if (anchors.empty()) anchors.push_back(AuditAnchor{0, kAuditGenesis, 0, ""});
    for (const auto& anchor : anchors) {
        AuditCheckpoint head{anchor.seq, anchor.hash.empty() ? std::string(kAuditGenesis) : anchor.hash, anchor.at,
                             anchor.chain};
        if (const auto last = store.lastAuditRecord(anchor.chain)) head = {last->seq, last->hash, last->at, anchor.chain};
        heads.push_back(std::move(head));
    }
    return heads;
}

namespace {

// Walks one chain; on the first broken link fills v's failure and returns false.
bool verifyOneChain(AuditStore& store, const SecretBytes& key, const AuditAnchor& anchor,
                    const AuditCheckpoint* checkpoint, bool named, AuditVerification& v, CheckpointMatch& match) {
    AuditChainSummary sum;
    sum.chain = anchor.chain;
    std::int64_t expectedSeq = anchor.seq + 1;
    std::string prev = anchor.hash.empty() ? std::string(kAuditGenesis) : anchor.hash;
    sum.firstSeq = expectedSeq;
    sum.lastSeq = anchor.seq;
    // "record 5", or "record 5 of chain 2" where there are several chains.
    const std::string of = named ? " of chain " + std::to_string(anchor.chain) : std::string();
    auto broken = [&](std::int64_t seq, std::string reason) {
        v.ok = false;
        v.firstBroken = seq;
        v.brokenChain = anchor.chain;
        v.reason = named ? "chain " + std::to_string(anchor.chain) + ": " + reason : std::move(reason);
        if (checkpoint != nullptr) match = CheckpointMatch::Failed;
        v.chains.push_back(sum);
        return false;
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
    bool seen = false;
    // A checkpoint at or before the anchor: the anchor itself, or a record a
    // sealed retention cut removed (its hash can no longer be compared).
    if (checkpoint != nullptr && checkpoint->seq <= anchor.seq) {
        if (checkpoint->seq == anchor.seq && !crypto::constantTimeEqual(checkpoint->hash, prev))
            return broken(checkpoint->seq, "the checkpoint's hash does not match the record at seq " +
                                               std::to_string(checkpoint->seq) + of + " (the chain's anchor)");
        if (checkpoint->seq < anchor.seq && match != CheckpointMatch::Failed) match = CheckpointMatch::Pruned;
        seen = true;
    }
    for (;;) {
        AuditQuery q;
        q.chain = anchor.chain;
        q.afterSeq = expectedSeq - 1;
        q.limit = kVerifyPage;
        const auto page = store.findAuditRecords(q);
        for (const auto& r : page) {
            if (r.seq != expectedSeq)
                return broken(expectedSeq, "record " + std::to_string(expectedSeq) + of + " is missing (next is " +
                                               std::to_string(r.seq) + ")");
            if (!crypto::constantTimeEqual(r.prevHash, prev))
                return broken(r.seq, "its previous-hash does not match record " + std::to_string(r.seq - 1) + of);
            const bool erasedV1 = r.format == 1 && r.subjectNonce == "erased";
            if (!erasedV1 && !crypto::constantTimeEqual(auditRecordHash(key, r), r.hash))
                return broken(r.seq, "its hash does not match its contents (changed, or sealed with another key)");
            if (r.format != 1 && !r.subject.empty() &&
                !crypto::constantTimeEqual(subjectCommitment(r.subjectNonce, r.subject), r.subjectCommit))
                return broken(r.seq, "its subject does not match the subject it was sealed with");
            if (r.format != 1 && r.subject.empty() && !r.subjectCommit.empty()) ++v.erased;
            if (erasedV1) ++v.erased;
            if (checkpoint != nullptr && r.seq == checkpoint->seq) {
                if (!crypto::constantTimeEqual(r.hash, checkpoint->hash) || r.at != checkpoint->at)
                    return broken(r.seq, "record " + std::to_string(r.seq) + of +
                                             " does not match the checkpoint (its hash or time differs)");
                seen = true;
            }
            prev = r.hash;
            sum.lastSeq = r.seq;
            ++expectedSeq;
            ++sum.records;
            ++v.records;
        }
        if (page.size() < static_cast<std::size_t>(kVerifyPage)) break;
    }
    if (checkpoint != nullptr && !seen)
        return broken(checkpoint->seq, "record " + std::to_string(checkpoint->seq) + of +
                                           " of the checkpoint is gone: records were cut from the end (the chain now "
                                           "ends at seq " + std::to_string(sum.lastSeq) + ")");
    v.chains.push_back(sum);
    return true;
}

}  // namespace

AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key, const std::vector<AuditCheckpoint>& checkpoint) {
    AuditVerification v;
    auto anchors = store.auditAnchors();
    if (anchors.empty()) anchors.push_back(AuditAnchor{0, kAuditGenesis, 0, ""});
    const bool named = anchors.size() > 1 || anchors.front().chain != 0;
    CheckpointMatch match = checkpoint.empty() ? CheckpointMatch::None : CheckpointMatch::Matched;
    v.prunedBefore = 1;
    for (const auto& anchor : anchors) {
        const AuditCheckpoint* head = nullptr;
        for (const auto& c : checkpoint)
            if (c.chain == anchor.chain) head = &c;
        const bool ok = verifyOneChain(store, key, anchor, head, named, v, match);
        if (anchor.chain == 0) {
            v.prunedBefore = v.chains.back().firstSeq;
            v.lastSeq = v.chains.back().lastSeq;
        }
        if (!ok) {
            v.checkpoint = match;
            return v;
        }
    }
    // A chain the checkpoint names that is no longer there at all.
    for (const auto& c : checkpoint) {
        bool found = false;
        for (const auto& a : anchors) found = found || a.chain == c.chain;
        if (found) continue;
        v.ok = false;
        v.firstBroken = c.seq;
        v.brokenChain = c.chain;
        v.reason = "chain " + std::to_string(c.chain) + " of the checkpoint (head at seq " + std::to_string(c.seq) +
                   ") is gone: a whole chain was removed";
        v.checkpoint = CheckpointMatch::Failed;
        return v;
    }
    v.checkpoint = match;
    return v;
}

}  // namespace twofactor::otp
