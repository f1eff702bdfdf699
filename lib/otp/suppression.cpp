// The email suppression list and SES feedback: OtpService's members for them.
#include "otp/service.hpp"

#include "util/log.hpp"

#include <memory>

namespace twofactor::otp {

namespace {

constexpr std::size_t kMaxNote = 256;

bool printableNote(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return s.size() <= kMaxNote;
}

// The address as an email address, or the failure naming why not.
std::variant<Destination, Failure> emailAddress(const std::string& text) {
    auto parsed = parseDestination(text);
    if (auto* err = std::get_if<DestinationError>(&parsed))
        return Failure{"InvalidDestination", {{"reason", err->reason}}, "invalid address: " + err->reason};
    const auto& d = std::get<Destination>(parsed);
    if (d.kind != DestinationKind::Email)
        return Failure{"InvalidDestination", {{"reason", "the suppression list holds email addresses"}},
                       "invalid address: the suppression list holds email addresses"};
    return d;
}

}  // namespace

Failure suppressedFailure(const std::string& parameter) {
    return Failure{"Suppressed", {{"parameter", parameter}},
                   "the address is on the email suppression list (it bounced for good or its owner complained)"};
}

const char* emailFeedbackName(store::EmailFeedback kind) {
    switch (kind) {
        case store::EmailFeedback::Send: return "send";
        case store::EmailFeedback::Bounce: return "bounce";
        case store::EmailFeedback::Complaint: return "complaint";
    }
    return "send";
}

std::string OtpService::suppressionHash(const Destination& d) const { return subjectHash(emailMatchForm(d)); }

void OtpService::suppressionAdd(std::string address, std::string reason, std::string note,
                                Reply<SuppressionChange> reply, std::int64_t uid) {
    auto parsed = emailAddress(address);
    if (auto* f = std::get_if<Failure>(&parsed)) return reply(std::move(*f));
    if (!printableNote(note))
        return reply(Failure{"org.varlink.service.InvalidParameter", {{"parameter", "reason"}},
                             "reason: at most 256 printable characters"});
    store::Suppression entry;
    entry.addressHash = suppressionHash(std::get<Destination>(parsed));
    entry.reason = std::move(reason);
    entry.detail = std::move(note);
    entry.at = clock_.now();
    entry.source = "cli";
    auto change = std::make_shared<SuppressionChange>(SuppressionChange{entry, false});
    store_.submit(
        [this, change, uid](store::Transaction& t) {
            change->added = t.suppressAddress(change->entry);
            if (!change->added) {
                // Already there: the first entry (and its reason) stays.
                if (auto found = t.findSuppression(change->entry.addressHash)) change->entry = *found;
                return;
            }
            record(t, auditRecord("suppression-add", "", uid, "success", "", change->entry.addressHash,
                                  "source cli, reason " + change->entry.reason));
        },
        [change, reply](std::exception_ptr e) {
            if (e) return reply(storeFailureOf(e, "the suppression could not be stored", "the list is unchanged"));
            reply(*change);
        });
}

void OtpService::suppressionRemove(std::string address, Reply<bool> reply, std::int64_t uid) {
    auto parsed = emailAddress(address);
    if (auto* f = std::get_if<Failure>(&parsed)) return reply(std::move(*f));
    auto removed = std::make_shared<bool>(false);
    store_.submit(
        [this, removed, uid, hash = suppressionHash(std::get<Destination>(parsed))](store::Transaction& t) {
            *removed = t.removeSuppression(hash);
            record(t, auditRecord("suppression-remove", "", uid, *removed ? "success" : "failure", "", hash,
                                  *removed ? "" : "not on the list"));
        },
        [removed, reply](std::exception_ptr e) {
            if (e) return reply(storeFailureOf(e, "the suppression list could not be changed", "the list is unchanged"));
            reply(*removed);
        });
}

void OtpService::suppressionList(int limit, Reply<std::vector<store::Suppression>> reply) {
    if (limit < 1 || limit > 100000)
        return reply(Failure{"OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 100000}},
                             "limit must be between 1 and 100000"});
    auto list = std::make_shared<std::vector<store::Suppression>>();
    store_.submit([list, limit](store::Transaction& t) { *list = t.listSuppressions(limit); },
                  [list, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", {}, "the suppression list could not be read"});
                      reply(std::move(*list));
                  });
}

void OtpService::emailFeedback(EmailFeedbackReport report, std::function<void(bool stored)> done) {
    // Recipients as SES reports them; one that is not an address we could
    // have sent to is skipped (and said so), the others still count.
    std::vector<std::string> hashes;
    for (const auto& r : report.recipients) {
        auto parsed = emailAddress(r);
        if (auto* d = std::get_if<Destination>(&parsed)) hashes.push_back(suppressionHash(*d));
        else log::warning("SES feedback: a recipient that is not an email address was skipped");
    }
    store_.submit(
        [this, report, hashes](store::Transaction& t) {
            // The app that sent the message: its rates count it. An unknown
            // message id (another sender on the account, or a purged log) counts nowhere.
            const std::string app = report.messageId.empty() ? "" : t.deliveryApp(report.messageId);
            if (!app.empty()) t.countEmailFeedback(app, report.kind, clock_.now());
            for (const auto& hash : hashes) {
                store::Suppression entry;
                entry.addressHash = hash;
                entry.reason = emailFeedbackName(report.kind);
                entry.detail = report.detail;
                entry.at = clock_.now();
                entry.source = "sns";
                entry.messageId = report.messageId;
                if (t.suppressAddress(entry))
                    record(t, auditRecord("suppression-add", app, -1, "success", "", hash,
                                          "source sns, reason " + entry.reason +
                                              (entry.detail.empty() ? "" : " (" + entry.detail + ")")));
            }
        },
        [done, kind = report.kind, n = hashes.size()](std::exception_ptr e) {
            if (e) {
                log::error(std::string("SES feedback (") + emailFeedbackName(kind) + ") could not be stored");
                if (done) done(false);
                return;
            }
            log::info(std::string("SES feedback: ") + emailFeedbackName(kind) + " for " + std::to_string(n) +
                      " recipient(s); suppressed");
            if (done) done(true);
        });
}

}  // namespace twofactor::otp
