#include "privacy/subjects.hpp"

#include "channel/outbox.hpp"
#include "otp/destination.hpp"
#include "otp/recipient.hpp"
#include "util/log.hpp"

#include <algorithm>
#include <unistd.h>
#include <map>
#include <memory>
#include <set>
#include <tuple>

namespace twofactor::privacy {

using json = nlohmann::json;

bool validRequestKind(std::string_view kind) {
    return std::find(std::begin(kRequestKinds), std::end(kRequestKinds), kind) != std::end(kRequestKinds);
}

namespace {

otp::Failure storeFailed(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const otp::AuditWriteError& a) {
        log::error(std::string("privacy request refused: ") + a.what());
        return otp::Failure{"io.twofactor.Otp.AuditFailed", {}, "the audit record could not be written"};
    } catch (const std::exception& x) {
        log::error(std::string("privacy request failed in the store: ") + x.what());
    } catch (...) {
    }
    return otp::Failure{"io.twofactor.Privacy.InternalError", {}, "the store failed"};
}

otp::Failure noSuchSubject() {
    return otp::Failure{"io.twofactor.Privacy.NoSuchSubject", {}, "nothing is held about this subject"};
}

json isoOrNull(const std::optional<std::int64_t>& t) { return t ? json(*t) : json(nullptr); }

// The country an AWS region is in (the regions SES sends from).
std::string awsRegionCountry(const std::string& region) {
    static const std::map<std::string, std::string> kCountries = {
        {"eu-west-1", "Ireland"},        {"eu-west-2", "United Kingdom"}, {"eu-west-3", "France"},
        {"eu-central-1", "Germany"},     {"eu-central-2", "Switzerland"}, {"eu-north-1", "Sweden"},
        {"eu-south-1", "Italy"},         {"eu-south-2", "Spain"},         {"us-east-1", "United States"},
        {"us-east-2", "United States"},  {"us-west-1", "United States"},  {"us-west-2", "United States"},
        {"ca-central-1", "Canada"},      {"ap-south-1", "India"},         {"ap-northeast-1", "Japan"},
        {"ap-northeast-2", "South Korea"}, {"ap-northeast-3", "Japan"},   {"ap-southeast-1", "Singapore"},
        {"ap-southeast-2", "Australia"}, {"sa-east-1", "Brazil"},         {"il-central-1", "Israel"},
        {"me-south-1", "Bahrain"},       {"af-south-1", "South Africa"},
    };
    auto it = kCountries.find(region);
    return it == kCountries.end() ? "AWS region " + region : it->second + " (AWS region " + region + ")";
}

using otp::urlHost;

json privacyRequestJson(const store::PrivacyRequest& r) {
    json j = {{"id", r.id},       {"kind", r.kind},  {"received", r.received},
              {"due", r.due},     {"completed", isoOrNull(r.completed)}};
    if (!r.note.empty()) j["note"] = r.note;
    return j;
}

json optionalText(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json requestJson(const otp::OtpRequest& r, std::int64_t now) {
    json j = {{"id", r.id},
              {"app", r.app},
              {"channel", r.channel},
              {"destination", r.destination.empty() ? json(nullptr) : json(r.destination)},
              {"purpose", r.purpose},
              {"locale", r.locale},
              {"status", otp::statusName(r.effectiveStatus(now))},
              {"attempts", r.attempts},
              {"sends", r.sends},
              {"createdAt", r.createdAt},
              {"expiresAt", r.expiresAt},
              {"finishedAt", isoOrNull(r.finishedAt)}};
    if (!r.clientIp.empty()) j["clientIp"] = r.clientIp;
    if (!r.device.empty()) j["device"] = r.device;
    if (!r.reference.empty()) j["reference"] = r.reference;
    if (!r.fallbackDestination.empty()) j["fallbackEmail"] = r.fallbackDestination;
    if (!r.failure.empty()) j["failure"] = r.failure;
    return j;
}

json deliveryJson(const otp::DeliveryAttempt& a) {
    json j = {{"requestId", a.requestId}, {"channel", a.channel}, {"provider", a.driver}, {"send", a.send},
              {"attempt", a.attempt},     {"at", a.at},           {"outcome", a.outcome}};
    if (!a.providerMessageId.empty()) j["providerMessageId"] = a.providerMessageId;
    if (!a.providerStatus.empty()) {
        j["providerStatus"] = a.providerStatus;
        j["providerStatusAt"] = a.providerStatusAt;
    }
    if (!a.error.empty()) j["error"] = a.error;
    return j;
}

}  // namespace

SubjectService::SubjectService(const config::Config& config, otp::OtpService& service)
    : config_(config), service_(service) {
    std::set<std::string> regions;
    for (const auto& [name, app] : config.apps) regions.insert(app.defaultRegion);
    if (regions.size() == 1) phoneRegion_ = *regions.begin();
    // An export must name the controller (Art. 13(1)(a), 15); refusing it would
    // keep the subject from the rest of their answer, so say so instead.
    if (config.privacy.controller.empty() || config.privacy.contact.empty())
        log::warning("[privacy] controller and contact are not both set: GDPR subject exports will not say who the "
                     "controller is or how to reach them (see twofactord.toml(5))");
}

std::variant<SubjectService::Subject, otp::Failure> SubjectService::parseSubject(const std::string& text,
                                                                                 const char* parameter) const {
    auto parsed = otp::parseDestination(text, phoneRegion_);
    if (auto* err = std::get_if<otp::DestinationError>(&parsed))
        return otp::Failure{"io.twofactor.Privacy.InvalidSubject",
                            {{"parameter", parameter}, {"reason", err->reason}},
                            std::string("invalid ") + parameter + ": " + err->reason};
    const auto& d = std::get<otp::Destination>(parsed);
    auto hashes = service_.subjectHashes(d);
    return Subject{d.normalized, hashes.front(), hashes, d.kind == otp::DestinationKind::Email};
}

store::SubjectData SubjectService::findAll(store::Transaction& t, const Subject& subject) {
    // The address finds the requests it was the fallback of: once is enough.
    store::SubjectData all = t.findSubjectData(subject.hashes.front(), subject.address);
    for (std::size_t i = 1; i < subject.hashes.size(); ++i) {
        store::SubjectData d = t.findSubjectData(subject.hashes[i], "");
        for (auto& r : d.requests) all.requests.push_back(std::move(r));
        for (auto& a : d.deliveries) all.deliveries.push_back(std::move(a));
        for (auto& a : d.audit) all.audit.push_back(std::move(a));
        for (auto& f : d.failures) all.failures.push_back(std::move(f));
        if (!all.optOut) all.optOut = std::move(d.optOut);
        const auto earliest = [](std::optional<std::int64_t>& into, const std::optional<std::int64_t>& other) {
            if (other && (!into || *other < *into)) into = other;
        };
        earliest(all.flags.restrictedAt, d.flags.restrictedAt);
        earliest(all.flags.objectedAt, d.flags.objectedAt);
    }
    if (subject.hashes.size() > 1) {
        std::stable_sort(all.requests.begin(), all.requests.end(),
                         [](const auto& a, const auto& b) { return a.createdAt < b.createdAt; });
        std::stable_sort(all.deliveries.begin(), all.deliveries.end(),
                         [](const auto& a, const auto& b) { return a.at < b.at; });
        std::stable_sort(all.audit.begin(), all.audit.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
    }
    return all;
}

std::optional<otp::Failure> SubjectService::checkReceived(const RequestContext& ctx) const {
    if (ctx.received && (*ctx.received < 946684800 || *ctx.received > service_.now() + 86400))
        return otp::Failure{"org.varlink.service.InvalidParameter", {{"parameter", "received"}},
                            "received must lie between 2000 and today"};
    return std::nullopt;
}

template <typename T>
std::optional<SubjectService::Subject> SubjectService::begin(const std::string& text, const RequestContext& ctx,
                                                             const Reply<T>& reply) const {
    auto parsed = parseSubject(text, "subject");
    if (auto* f = std::get_if<otp::Failure>(&parsed)) {
        reply(std::move(*f));
        return std::nullopt;
    }
    if (auto f = checkReceived(ctx)) {
        reply(std::move(*f));
        return std::nullopt;
    }
    return std::get<Subject>(parsed);
}

template <typename T>
std::function<void(std::exception_ptr)> SubjectService::answerWith(std::shared_ptr<T> result, Reply<T> reply) {
    return [result = std::move(result), reply = std::move(reply)](std::exception_ptr e) {
        if (e) return reply(storeFailed(e));
        reply(std::move(*result));
    };
}

std::int64_t SubjectService::completeRequest(store::Transaction& t, const std::string& kind,
                                             const std::string& subjectHash, const RequestContext& ctx,
                                             const std::string& note) const {
    const std::int64_t now = service_.now();
    if (auto open = t.findOpenPrivacyRequest(kind, subjectHash)) {
        t.completePrivacyRequest(open->id, now);
        return open->id;
    }
    store::PrivacyRequest r;
    r.kind = kind;
    r.subjectHash = subjectHash;
    r.received = ctx.received.value_or(now);
    r.due = r.received + kAnswerWithin;
    r.completed = now;
    r.uid = ctx.uid;
    r.note = note;
    return t.insertPrivacyRequest(r);
}

// Names and countries from what an attempt recorded (provider, region), not
// from the configuration now, which may have changed since.
std::string SubjectService::recipientName(const std::string& driver, const std::string& provider,
                                          const std::string& region) const {
    if (driver == "ses") return "Amazon Web Services EMEA SARL (Amazon SES)";
    if (driver == "smtp")
        return "SMTP relay " + provider + (region.empty() ? "" : " (Amazon SES SMTP interface)");
    if (driver == "whatsapp") return "Meta Platforms Ireland Ltd. (WhatsApp Business Cloud API)";
    return driver;
}

std::string SubjectService::recipientCountry(const std::string& driver, const std::string& provider,
                                             const std::string& region) const {
    if (driver == "ses" || (driver == "smtp" && !region.empty())) return awsRegionCountry(region);
    if (driver == "whatsapp") return "Ireland; transfers to the United States (EU-US Data Privacy Framework)";
    if (driver == "smtp") return "where the relay " + provider + " is operated";
    return "";
}

// Messages to an erased subject still in the outbox (new/, or cur/ once a
// reader saw them; both, whatever [outbox] keep says: erasure leaves nothing on
// this host), found by the ids of the subject's requests, which their file
// names carry: the delivery log that once named them is purged after 90 days.
std::int64_t SubjectService::removeOutboxMessages(const std::vector<std::string>& requestIds) const {
    if (requestIds.empty() || config_.outboxDir.empty()) return 0;
    const auto removed =
        static_cast<std::int64_t>(channel::OutboxChannel::removeRequests(config_.outboxDir, requestIds, true));
    if (removed) log::info("erasure removed " + std::to_string(removed) + " message(s) from the outbox");
    return removed;
}

std::vector<Recipient> SubjectService::recipientsOf(const std::vector<otp::DeliveryAttempt>& deliveries) const {
    std::map<std::tuple<std::string, std::string, std::string>, Recipient> byProvider;
    for (const auto& a : deliveries) {
        if (a.driver == "outbox") continue;  // stays on this host
        // An attempt logged before providers were recorded: the configuration
        // now is the best that is known.
        const otp::DeliveryRecipient to =
            a.provider.empty() ? otp::deliveryRecipient(config_, a.app, a.driver) : otp::DeliveryRecipient{a.provider, a.region};
        // Every attempt handed the address over, accepted or not.
        auto& r = byProvider[{a.driver, to.provider, to.region}];
        r.driver = a.driver;
        r.provider = to.provider;
        r.region = to.region;
        r.channel = a.channel;
        if (!a.providerMessageId.empty() &&
            std::find(r.messageIds.begin(), r.messageIds.end(), a.providerMessageId) == r.messageIds.end())
            r.messageIds.push_back(a.providerMessageId);
    }
    std::vector<Recipient> out;
    for (auto& [key, r] : byProvider) {
        r.name = recipientName(r.driver, r.provider, r.region);
        r.country = recipientCountry(r.driver, r.provider, r.region);
        out.push_back(std::move(r));
    }
    return out;
}

json SubjectService::article15Context(const std::vector<Recipient>& received) const {
    json recipients = json::array();
    for (const auto& rc : received) {
        json j = {{"name", rc.name},
                  {"country", rc.country},
                  {"receives", rc.channel == "whatsapp" ? "your phone number and the code message, to deliver it"
                                                        : "your email address and the code message, to deliver it"}};
        if (!rc.region.empty()) j["region"] = rc.region;
        recipients.push_back(std::move(j));
    }
    const auto days = [](std::int64_t seconds) { return seconds / 86400; };
    const auto& r = config_.retention;
    const auto& p = config_.privacy;
    return {
        {"controller",
         {{"name", optionalText(p.controller)}, {"contact", optionalText(p.contact)}, {"dpo", optionalText(p.dpo)}}},
        {"purposes",
         json::array({"sending one-time passwords you asked for and checking them (the service you use)",
                      "preventing abuse: rate limits and fraud detection from IP addresses and device details "
                      "(legitimate interest, Art. 6(1)(f))",
                      "security and accountability: an audit log of outcomes (Art. 6(1)(c), (f))"})},
        {"categories",
         json::array({"contact data: email address or phone number", "request metadata: app, purpose, times, status",
                      "authentication outcomes: success or failure, never the code",
                      "technical data: client IP address and device details, if the app passed them",
                      "delivery data: provider message ids and delivery status",
                      "preferences: WhatsApp opt-out (STOP), restriction and objection"})},
        {"recipients", recipients},
        {"retention",
         {{"codeHashes", std::to_string(r.codeHashes / 3600) + " hours after the request ended"},
          {"deliveryLogs", std::to_string(days(r.deliveryLogs)) +
                               " days (delivery log, IP addresses, device details, your address in request records)"},
          {"authenticationMetadata",
           std::to_string(days(r.authenticationMetadata)) +
               " days (outcomes, identified only by a keyed hash after the delivery-log period)"},
          {"removedApps", std::to_string(days(r.removedApps)) + " days after an app is removed"}}},
        {"rights",
         json::array({"access (Art. 15)", "rectification (Art. 16)", "erasure (Art. 17)",
                      "restriction of processing (Art. 18)", "data portability (Art. 20)", "objection (Art. 21)"})},
        {"complaint", "You may lodge a complaint with a supervisory authority, in particular in the EU member state "
                      "of your habitual residence, place of work or of the alleged infringement (Art. 77)."},
        {"source", "the application you signed in to gave us your address or number when you asked for a code; "
                   "WhatsApp opt-outs come from your replies"},
        {"automatedDecisions", "No decisions with legal or similarly significant effects. Rate limits and fraud "
                               "rules may refuse to send a code automatically (Art. 22 does not apply)."},
    };
}

void SubjectService::exportData(std::string text, RequestContext ctx, Reply<ExportResult> reply) {
    const auto subject = begin(text, ctx, reply);
    if (!subject) return;
    auto result = std::make_shared<ExportResult>();
    service_.store().submit(
        [this, subject = *subject, ctx, result](store::Transaction& t) {
            const std::int64_t now = service_.now();
            const store::SubjectData d = findAll(t, subject);
            json requests = json::array(), fallbacks = json::array(), deliveries = json::array(),
                 auth = json::array(), failures = json::array();
            for (const auto& r : d.requests) requests.push_back(requestJson(r, now));
            for (const auto& r : d.fallbackRequests) {
                json j = requestJson(r, now);
                j.erase("destination");  // another subject's number
                fallbacks.push_back(std::move(j));
            }
            for (const auto& a : d.deliveries) deliveries.push_back(deliveryJson(a));
            for (const auto& a : d.audit) {
                json j = {{"time", a.at}, {"event", a.event}, {"outcome", a.outcome}};
                if (!a.app.empty()) j["app"] = a.app;
                if (!a.requestId.empty()) j["requestId"] = a.requestId;
                auth.push_back(std::move(j));
            }
            for (const auto& f : d.failures)
                failures.push_back({{"app", f.app},
                                    {"failedVerifications", f.failures.failures},
                                    {"lockedUntil", f.failures.lockedUntil}});
            json optOut = nullptr;
            if (d.optOut)
                optOut = {{"since", d.optOut->createdAt}, {"source", d.optOut->source}, {"reason", d.optOut->reason}};
            // The suppression list holds only the hash of the address's match form: found by it.
            json suppression = nullptr;
            if (subject.email)
                if (auto s = t.findSuppression(subject.hash))
                    suppression = {{"reason", s->reason}, {"detail", s->detail}, {"since", s->at},
                                   {"source", s->source}};
            result->empty = d.empty() && suppression.is_null();
            result->registerId = completeRequest(t, "export", subject.hash, ctx, result->empty ? "nothing held" : "");
            // The register's entries about the subject, this export's included.
            json privacyRequests = json::array();
            for (const auto& h : subject.hashes)
                for (const auto& pr : t.subjectPrivacyRequests(h)) privacyRequests.push_back(privacyRequestJson(pr));
            result->document = {
                {"format", "twofactor-subject-export/1"},
                {"generatedAt", now},
                {"subject", {{"kind", subject.email ? "email" : "phone"}, {"address", subject.address}}},
                {"restricted", d.flags.restrictedAt.has_value()},
                {"restrictedSince", isoOrNull(d.flags.restrictedAt)},
                {"objected", d.flags.objectedAt.has_value()},
                {"objectedSince", isoOrNull(d.flags.objectedAt)},
                {"data",
                 {{"requests", requests},
                  {"requestsWithYourFallbackEmail", fallbacks},
                  {"deliveries", deliveries},
                  {"authenticationEvents", auth},
                  {"optOut", optOut},
                  {"verificationFailures", failures},
                  {"privacyRequests", privacyRequests}}},
                {"context", article15Context(recipientsOf(d.deliveries))},
            };
            // An address's entry on the email suppression list (null: none); numbers have no such list.
            if (subject.email) result->document["data"]["emailSuppression"] = suppression;
            service_.record(t, service_.auditRecord("gdpr-export", "", ctx.uid, "success", "", "",
                                                    std::to_string(d.requests.size()) + " request(s)"));
        },
        answerWith(result, reply));
}

void SubjectService::erase(std::string text, RequestContext ctx, Reply<Erasure> reply) {
    const auto subject = begin(text, ctx, reply);
    if (!subject) return;
    auto result = std::make_shared<Erasure>();
    auto missing = std::make_shared<bool>(false);
    auto outboxNames = std::make_shared<std::vector<std::string>>();
    service_.store().submit(
        [this, subject = *subject, ctx, result, missing, outboxNames](store::Transaction& t) {
            // Work may run again (Store::submit): each run starts from nothing.
            *result = Erasure{};
            *missing = false;
            outboxNames->clear();
            const store::SubjectData d = findAll(t, subject);
            const bool suppressed = subject.email && t.findSuppression(subject.hash).has_value();
            if (d.empty() && !suppressed) {
                *missing = true;
                result->registerId = completeRequest(t, "delete", subject.hash, ctx, "nothing held");
                return;
            }
            result->recipients = recipientsOf(d.deliveries);
            // Not the requests it was only the email fallback of: their messages
            // may be another subject's, still waiting for its WhatsApp code.
            for (const auto& r : d.requests) outboxNames->push_back(r.id);
            for (std::size_t i = 0; i < subject.hashes.size(); ++i)
                result->counts += t.eraseSubject(subject.hashes[i], i == 0 ? subject.address : std::string());
            // Erased with the rest: once the subject is gone, a new send to
            // the address is a new start (Art. 17 leaves no keeping it "just in case").
            if (suppressed && t.removeSuppression(subject.hash)) result->suppressions = 1;
            result->registerId = completeRequest(t, "delete", subject.hash, ctx, "");
            service_.record(t, service_.auditRecord("gdpr-delete", "", ctx.uid, "success", "", "",
                                                    std::to_string(result->counts.requests) + " request(s), " +
                                                        std::to_string(result->counts.deliveries) +
                                                        " delivery attempt(s) erased"));
        },
        [this, result, missing, outboxNames, reply](std::exception_ptr e) {
            if (e) return reply(storeFailed(e));
            if (*missing) return reply(noSuchSubject());
            result->outboxMessages = removeOutboxMessages(*outboxNames);
            // Deleted rows must not linger in the WAL: checkpoint before answering
            // (secure_delete has overwritten them in the pages themselves).
            service_.store().checkpoint([result, reply](std::exception_ptr ce) {
                if (ce) log::warning("checkpoint after an erasure failed; it happens at the next one");
                reply(std::move(*result));
            });
        });
}

void SubjectService::rectify(std::string text, std::string to, RequestContext ctx, Reply<Rectification> reply) {
    auto parsedOld = parseSubject(text, "subject");
    if (auto* f = std::get_if<otp::Failure>(&parsedOld)) return reply(std::move(*f));
    auto parsedNew = parseSubject(to, "to");
    if (auto* f = std::get_if<otp::Failure>(&parsedNew)) return reply(std::move(*f));
    if (auto f = checkReceived(ctx)) return reply(std::move(*f));
    const Subject from = std::get<Subject>(parsedOld);
    const Subject into = std::get<Subject>(parsedNew);
    if (from.email != into.email)
        return reply(otp::Failure{"io.twofactor.Privacy.InvalidSubject",
                                  {{"parameter", "to"}, {"reason", "an email address and a phone number cannot replace each other"}},
                                  "invalid to: an email address and a phone number cannot replace each other"});
    if (from.address == into.address)
        return reply(otp::Failure{"io.twofactor.Privacy.InvalidSubject",
                                  {{"parameter", "to"}, {"reason", "it is the same address once normalised"}},
                                  "invalid to: it is the same address once normalised"});
    auto result = std::make_shared<Rectification>();
    auto failure = std::make_shared<std::optional<otp::Failure>>();
    service_.store().submit(
        [this, from, into, ctx, result, failure](store::Transaction& t) {
            // Work may run again (Store::submit): each run starts from nothing.
            *result = Rectification{};
            failure->reset();
            bool restricted = false;
            for (const auto& h : from.hashes) restricted = restricted || t.subjectFlags(h).restrictedAt.has_value();
            for (const auto& h : into.hashes) restricted = restricted || t.subjectFlags(h).restrictedAt.has_value();
            if (restricted) {
                *failure = otp::Failure{"io.twofactor.Otp.Restricted", {},
                                        "processing of this subject is restricted (Art. 18): unrestrict first"};
                return;
            }
            // The audit log is history and is not rectified: nothing else held, nothing to do.
            auto held = findAll(t, from);
            held.audit.clear();
            if (held.empty()) {
                *failure = noSuchSubject();
                return;
            }
            for (std::size_t i = 0; i < from.hashes.size(); ++i)
                result->counts += t.rectifySubject(from.hashes[i], i == 0 ? from.address : std::string(), into.hash,
                                                   into.address);
            result->registerId = completeRequest(t, "rectify", from.hash, ctx, "");
            service_.record(t, service_.auditRecord("gdpr-rectify", "", ctx.uid, "success", "", "",
                                                    std::to_string(result->counts.requests) + " request(s) moved"));
        },
        [result, failure, reply](std::exception_ptr e) {
            if (e) return reply(storeFailed(e));
            if (*failure) return reply(std::move(**failure));
            reply(std::move(*result));
        });
}

void SubjectService::restrict(std::string text, bool on, RequestContext ctx, Reply<FlagChange> reply) {
    setFlag(on ? "restrict" : "unrestrict", std::move(text), on, ctx, std::move(reply));
}

void SubjectService::object(std::string text, RequestContext ctx, Reply<FlagChange> reply) {
    setFlag("object", std::move(text), true, ctx, std::move(reply));
}

// Restriction (Art. 18) or objection (Art. 21): set or lifted, registered and audited in one work item.
void SubjectService::setFlag(std::string kind, std::string text, bool on, RequestContext ctx, Reply<FlagChange> reply) {
    const auto subject = begin(text, ctx, reply);
    if (!subject) return;
    auto result = std::make_shared<FlagChange>();
    service_.store().submit(
        [this, subject = *subject, kind, on, ctx, result](store::Transaction& t) {
            const bool restriction = kind != "object";
            std::optional<std::int64_t> before;
            for (const auto& h : subject.hashes) {
                const auto flags = t.subjectFlags(h);
                const auto at = restriction ? flags.restrictedAt : flags.objectedAt;
                if (at && (!before || *at < *before)) before = at;
            }
            const std::optional<std::int64_t> after =
                on ? (before ? before : std::optional<std::int64_t>(service_.now())) : std::nullopt;
            result->changed = on != before.has_value();
            result->since = after;
            // Under every hash: whichever an app files the subject under, the flag is seen.
            if (result->changed)
                for (const auto& h : subject.hashes) {
                    if (restriction) t.setRestricted(h, after);
                    else t.setObjected(h, after);
                }
            result->registerId = completeRequest(t, kind, subject.hash, ctx, result->changed ? "" : "already so");
            service_.record(t, service_.auditRecord("gdpr-" + kind, "", ctx.uid, "success", "", "",
                                                    result->changed ? "" : "unchanged"));
        },
        answerWith(result, reply));
}

void SubjectService::registerRequest(std::string kind, std::string text, std::string note, RequestContext ctx,
                                     Reply<store::PrivacyRequest> reply) {
    if (!validRequestKind(kind))
        return reply(otp::Failure{"org.varlink.service.InvalidParameter", {{"parameter", "kind"}},
                                  "kind must be export, delete, rectify, restrict, unrestrict or object"});
    if (note.size() > 256)
        return reply(otp::Failure{"org.varlink.service.InvalidParameter", {{"parameter", "note"}},
                                  "note must be at most 256 characters"});
    const auto subject = begin(text, ctx, reply);
    if (!subject) return;
    auto result = std::make_shared<store::PrivacyRequest>();
    service_.store().submit(
        [this, subject = *subject, kind, note, ctx, result](store::Transaction& t) {
            result->kind = kind;
            result->subjectHash = subject.hash;
            result->received = ctx.received.value_or(service_.now());
            result->due = result->received + kAnswerWithin;
            result->uid = ctx.uid;
            result->note = note;
            result->id = t.insertPrivacyRequest(*result);
            service_.record(t, service_.auditRecord("gdpr-register", "", ctx.uid, "success", "", "",
                                                    kind + " request " + std::to_string(result->id) + " received"));
        },
        answerWith(result, reply));
}

void SubjectService::listRequests(store::PrivacyRequestQuery query, Reply<std::vector<store::PrivacyRequest>> reply) {
    auto result = std::make_shared<std::vector<store::PrivacyRequest>>();
    service_.store().submit([query, result](store::Transaction& t) { *result = t.listPrivacyRequests(query); },
                            [result, reply](std::exception_ptr e) {
                                if (e) return reply(storeFailed(e));
                                reply(std::move(*result));
                            });
}

}  // namespace twofactor::privacy
