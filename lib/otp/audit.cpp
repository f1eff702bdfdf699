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
        throw AuditWriteError(std::string("the audit record could not be written: ") + e.what());
    }
}

AuditVerification verifyAuditChain(AuditStore& store, const SecretBytes& key) {
    AuditVerification v;
    const AuditAnchor anchor = store.auditAnchor();
    std::int64_t expectedSeq = anchor.seq + 1;
    std::string prev = anchor.hash.empty() ? std::string(kAuditGenesis) : anchor.hash;
    v.prunedBefore = expectedSeq;
    auto broken = [&](std::int64_t seq, std::string reason) {
        v.ok = false;
        v.firstBroken = seq;
        v.reason = std::move(reason);
        return v;
    };
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
            prev = r.hash;
            ++expectedSeq;
            ++v.records;
        }
        if (page.size() < static_cast<std::size_t>(kVerifyPage)) return v;
    }
}

}  // namespace twofactor::otp
