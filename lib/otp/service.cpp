#include "otp/service.hpp"

#include "channel/render.hpp"
#include "otp/code.hpp"
#include "otp/destination.hpp"
#include "otp/recipient.hpp"
#include "util/crypto.hpp"
#include "util/log.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

namespace twofactor::otp {

namespace {

constexpr std::int64_t kMinTtl = 30;
constexpr std::size_t kMaxTextField = 256;

nlohmann::json json_object() { return nlohmann::json::object(); }

Failure invalidParameter(const std::string& parameter, const std::string& why) {
    return Failure{"org.varlink.service.InvalidParameter", {{"parameter", parameter}}, parameter + ": " + why};
}

Failure optedOut() {
    return Failure{"OptedOut", json_object(), "the recipient opted out of WhatsApp messages (replied STOP)"};
}

// GDPR Art. 18: a restricted subject's data are only stored, not used.
Failure restricted() {
    return Failure{"Restricted", {},
                   "refused: the data subject asked to restrict processing (GDPR Art. 18); a dpo lifts it with "
                   "twofactor gdpr unrestrict"};
}

Failure noSuchRequest(const std::string& id) {
    return Failure{"NoSuchRequest", {{"id", id}}, "no request with id " + id};
}

Failure notPending(const OtpRequest& r, Status s) {
    return Failure{"NotPending", {{"id", r.id}, {"status", statusName(s)}},
                   "request " + r.id + " is " + statusName(s)};
}

// Another writer changed the request between its read and this change.
Failure superseded(const std::string& id) {
    return Failure{"NotPending", {{"id", id}, {"status", "superseded"}}, "request " + id + " is no longer pending"};
}

Failure rateLimited(const Refusal& r) {
    std::string what;
    if (r.scope == "destination-cooldown") what = "too soon after the last code sent to this destination";
    else if (r.scope == "destination") what = "too many codes sent to this destination";
    else if (r.scope == "ip") what = "too many codes requested from this client IP";
    else if (r.scope == "prefix") what = "too many codes requested from this client's network";
    else if (r.scope == "app") what = "too many codes sent for this app";
    else if (r.scope.rfind("fraud:", 0) == 0) what = "refused by fraud rule " + r.scope.substr(6);
    else what = "too many failed verifications for this destination";
    return Failure{"RateLimited", {{"scope", r.scope}, {"retryAfter", r.retryAfter}},
                   "rate limited (" + r.scope + "): " + what + "; retry in " + std::to_string(r.retryAfter) + " s"};
}

// One line per refusal, without personal data: app, scope, request id.
void logRefusal(const std::string& what, const std::string& app, const Refusal& r) {
    log::warning("rate limit " + r.scope + ": " + what + " for app '" + app + "' refused; retry in " +
                 std::to_string(r.retryAfter) + " s");
}

bool validLocale(std::string_view l) {
    if (l.empty() || l.size() > 35) return false;
    for (char c : l)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
    return true;
}

bool validIp(const std::string& ip) {
    unsigned char buf[16];
    return inet_pton(AF_INET, ip.c_str(), buf) == 1 || inet_pton(AF_INET6, ip.c_str(), buf) == 1;
}

bool printable(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

// An API key's call, counted against its key_requests_per_minute in the
// call's own transaction; a store with concurrent writers may keep the
// counter in shares (every call of the key touches it, as every send of an
// app touches the app-wide one). RateLimited when the minute's calls are taken.
std::optional<Failure> admitCall(store::Transaction& t, const Caller& caller, std::int64_t now) {
    const int limit = caller.keyRequestsPerMinute;
    if (limit <= 0 || caller.apiKey.empty()) return std::nullopt;
    constexpr std::int64_t kMinute = 60;
    std::int64_t retryAfter = 0;
    const bool counted = t.countSendsIf(
        {RateKey{"apikey", caller.apiKey, kMinute, limit}}, now, [&](const std::vector<std::optional<RateCounter>>& c) {
            if (!c[0] || c[0]->windowStart + kMinute <= now || c[0]->count < limit) return true;
            retryAfter = std::max<std::int64_t>(1, c[0]->windowStart + kMinute - now);
            return false;
        });
    if (counted) return std::nullopt;
    return Failure{"RateLimited", {{"scope", "apiKey"}, {"retryAfter", retryAfter}},
                   "the API key made " + std::to_string(limit) + " calls this minute"};
}

// A request as `caller` may see it: another app's is no request at all to an API key.
std::optional<OtpRequest> findRequestFor(store::Transaction& t, const std::string& id, const Caller& caller) {
    auto r = t.findRequest(id);
    if (r && !caller.sees(r->app)) return std::nullopt;
    return r;
}

// A request that must still be pending, for cancel and resend, once the caller's
// call is admitted. One found past
// its expiry is marked expired on the way.
std::variant<OtpRequest, Failure> loadPending(store::Transaction& t, const std::string& id, std::int64_t now,
                                              const Caller& caller,
                                              const std::function<void(const OtpRequest&)>& expired) {
    if (auto refused = admitCall(t, caller, now)) return std::move(*refused);
    auto r = findRequestFor(t, id, caller);
    if (!r) return noSuchRequest(id);
    const Status s = r->effectiveStatus(now);
    if (s == Status::Pending) return std::move(*r);
    if (s == Status::Expired && r->status == Status::Pending && t.finishRequest(r->id, std::nullopt, s, now)) {
        r->finish(Status::Expired, now);
        t.endDeliveryJob(r->id);
        expired(*r);
    }
    return notPending(*r, s);
}

// The answer for store work that failed: AuditFailed when the audit record
// could not be written (the operation was undone), else StoreFailed, whose
// reason says what failed, the database's own words on why (e.g. "database
// or disk is full"; never a path) and what that means for the caller.
Failure storeFailure(std::exception_ptr e, const std::string& what,
                     const std::string& consequence = "nothing was sent") {
    std::string why;
    try {
        std::rethrow_exception(e);
    } catch (const AuditWriteError& err) {
        log::error(std::string(err.what()) + "; the operation was refused", {log::Event::AuditFailure, {}, {}});
        return Failure{"AuditFailed", json_object(), "the audit record could not be written; nothing was done"};
    } catch (const store::StoreUnavailable& err) {
        // The database is unreachable (a cluster's server restarting, a
        // failover): the store connects again by itself; the caller retries.
        log::error(what + ": " + err.what(), {log::Event::StoreFailure, {}, {}});
        const std::string reason = what + " (the database is unreachable); " + consequence;
        return Failure{"StoreUnavailable", {{"reason", reason}}, reason};
    } catch (const store::StoreBusy&) {
        // The queue filled between the daemon's check and this work: the
        // work never ran, so the caller may simply try again.
        return Failure{"io.twofactor.Daemon.Busy", json_object(),
                       "twofactord is busy: its store queue is full; nothing was done, try again shortly"};
    } catch (const std::exception& err) {
        why = err.what();
        log::error(what + ": " + why, {log::Event::StoreFailure, {}, {}});
    } catch (...) {
    }
    static constexpr std::string_view kPrefix = "database error: ";
    if (why.rfind(kPrefix, 0) == 0) why = why.substr(kPrefix.size());
    else why.clear();  // other errors may carry paths: the log has them
    const std::string reason = what + (why.empty() ? "" : " (" + why + ")") + "; " + consequence;
    return Failure{"StoreFailed", {{"reason", reason}}, reason};
}

// Result of a unit of store work, filled on the writer thread and read in `done`.
template <typename T>
struct Pending {
    std::optional<Outcome<T>> outcome;
};

}  // namespace

OtpService::OtpService(const config::Config& config, store::Store& store,
                       std::map<std::string, channel::Channel*> channels, const Clock& clock, SecretBytes pepper,
                       Executor deliveryExecutor, Scheduler scheduler)
    : config_(config),
      store_(store),
      channels_(std::move(channels)),
      clock_(clock),
      pepper_(std::move(pepper)),
      executor_(std::move(deliveryExecutor)),
      scheduler_(std::move(scheduler)) {
    // A key of its own for subject hashes, derived so that it never equals the code pepper.
    const auto k = crypto::hmacSha256(pepper_, "twofactor subject key v1");
    subjectKey_ = SecretBytes(k.data(), k.size());
    const auto l = crypto::hmacSha256(pepper_, "twofactor rate limit key v1");
    limitKey_ = SecretBytes(l.data(), l.size());
    // The audit chain's seal. Issue 5 (key rotation) must re-derive it from the
    // new pepper and record the rotation ("key-rotation") sealed with the old
    // key before switching, so the chain stays verifiable across the change.
    const auto a = crypto::hmacSha256(pepper_, "twofactor audit key v1");
    auditKey_ = SecretBytes(a.data(), a.size());
    const auto b = crypto::hmacSha256(pepper_, "twofactor binding key v1");
    bindingKey_ = SecretBytes(b.data(), b.size());
    // Jobs held by another start of this node belong to a daemon that is gone
    // (one daemon per state directory): the sweep takes them over at once.
    // The node is the host and its state directory, so several nodes of a
    // cluster on one host never take each other's live jobs for orphans.
    node_ = store::nodeName(config_.stateDir);
    holder_ = node_ + "/" + crypto::randomId();
}

void OtpService::requestEnded(const std::string& id) {
    if (requestEnded_) executor_([hook = requestEnded_, id] { hook(id); });
}

AuditRecord OtpService::auditRecord(std::string event, std::string app, const Caller& caller, std::string outcome,
                                    std::string requestId, std::string subject, std::string detail) const {
    AuditRecord r;
    r.at = clock_.now();
    r.event = std::move(event);
    r.app = std::move(app);
    r.uid = caller.uid;
    r.outcome = std::move(outcome);
    r.requestId = std::move(requestId);
    r.subject = std::move(subject);
    // In the detail, not a column of its own: it is sealed into the chain
    // like every other field, and records written before read the same.
    r.detail = caller.apiKey.empty() ? std::move(detail)
                                     : "api key " + caller.apiKey + (detail.empty() ? "" : "; " + detail);
    return r;
}

void OtpService::record(store::Transaction& t, AuditRecord r) const { appendAuditAtCommit(t, auditKey_, std::move(r)); }

void OtpService::emitEvent(store::Transaction& t, const char* type, const OtpRequest& r, std::int64_t now) const {
    const auto app = config_.apps.find(r.app);
    if (app == config_.apps.end() || !app->second.events) return;
    const auto& wanted = app->second.events->events;
    if (std::find(wanted.begin(), wanted.end(), type) == wanted.end()) return;
    EventJob e;
    e.id = "msg_" + crypto::randomId();
    e.app = r.app;
    e.type = type;
    e.requestId = r.id;
    e.payload = eventPayload(type, r, now);
    e.createdAt = now;
    e.retryAt = now;
    t.enqueueEvent(e);
}

void OtpService::recordLater(AuditRecord r) {
    store_.submit([this, r = std::move(r)](store::Transaction& t) { record(t, r); },
                  [](std::exception_ptr e) {
                      if (e) log::error("an audit record of a refusal could not be written", {log::Event::AuditFailure, {}, {}});
                  });
}

void OtpService::audit(AuditRecord r, Reply<AuditRecord> reply) {
    if (r.at == 0) r.at = clock_.now();
    auto stored = std::make_shared<AuditRecord>();
    store_.submit([this, r = std::move(r), stored](store::Transaction& t) { *stored = appendAudit(t, auditKey_, r); },
                  [stored, reply](std::exception_ptr e) {
                      if (e) return reply(storeFailure(e, "the audit record could not be written", "nothing was recorded"));
                      reply(std::move(*stored));
                  });
}

void OtpService::auditList(AuditQuery query, Reply<std::vector<AuditRecord>> reply) {
    if (query.limit < 1 || query.limit > 100000)
        return reply(Failure{"OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 100000}},
                             "limit must be between 1 and 100000"});
    auto list = std::make_shared<std::vector<AuditRecord>>();
    store_.submit([list, query](store::Transaction& t) { *list = t.findAuditRecords(query); },
                  [list, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", json_object(), "the audit log could not be read"});
                      reply(std::move(*list));
                  });
}

void OtpService::auditVerify(Reply<AuditVerification> reply, std::vector<AuditCheckpoint> checkpoint) {
    auto result = std::make_shared<AuditVerification>();
    store_.submit([this, result, checkpoint](store::Transaction& t) { *result = verifyAuditChain(t, auditKey_, checkpoint); },
                  [result, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", json_object(), "the audit log could not be read"});
                      reply(std::move(*result));
                  });
}

void OtpService::auditHeads(Reply<std::vector<AuditCheckpoint>> reply) {
    auto result = std::make_shared<std::vector<AuditCheckpoint>>();
    store_.submit([result](store::Transaction& t) { *result = otp::auditHeads(t); },
                  [result, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", json_object(), "the audit log could not be read"});
                      reply(std::move(*result));
                  });
}

std::optional<AuditRecord> OtpService::sealLegacyAuditAnchor() {
    return store::runSync(store_, [this](store::Transaction& t) {
        return otp::sealLegacyAuditAnchor(t, auditKey_, clock_.now());
    });
}

SendKeys OtpService::sendKeys(const std::string& app, const std::string& subjectHash,
                              const std::string& clientIp) const {
    SendKeys keys{app, subjectHash, "", ""};
    if (!clientIp.empty()) {
        keys.ip = crypto::hex(crypto::hmacSha256(limitKey_, "ip " + clientIp));
        const std::string prefix = networkPrefix(clientIp);
        if (!prefix.empty()) keys.prefix = crypto::hex(crypto::hmacSha256(limitKey_, "prefix " + prefix));
    }
    return keys;
}

FraudKeys OtpService::fraudKeys(const std::string& app, const std::string& subjectHash,
                                const std::string& destination, const std::string& clientIp,
                                const std::string& device, const std::string& requestId) const {
    FraudKeys keys{app, subjectHash, "", "", "", requestId};
    if (!clientIp.empty()) keys.ip = crypto::hex(crypto::hmacSha256(limitKey_, "ip " + clientIp));
    if (!device.empty()) keys.device = crypto::hex(crypto::hmacSha256(limitKey_, "device " + device));
    const std::string prefix = destinationPrefix(destination);
    if (!prefix.empty()) keys.prefix = crypto::hex(crypto::hmacSha256(limitKey_, "destination prefix " + prefix));
    return keys;
}

const config::RateLimits& OtpService::rateLimits(const std::string& app) const {
    static const config::RateLimits defaults;
    const auto it = config_.apps.find(app);
    return it == config_.apps.end() ? defaults : it->second.rateLimits;
}

std::string OtpService::subjectHash(std::string_view normalizedDestination) const {
    return crypto::hex(crypto::hmacSha256(subjectKey_, normalizedDestination));
}

std::string OtpService::subjectHash(const config::App& app, const Destination& d) const {
    return subjectHash(app.emailLocalPartExact ? d.normalized : emailMatchForm(d));
}

std::string OtpService::earlierSubjectHash(const config::App& app, const Destination& d) const {
    if (app.emailLocalPartExact) return "";
    const std::string folded = emailMatchForm(d);
    return folded == d.normalized ? "" : subjectHash(d.normalized);
}

Failure storeFailureOf(std::exception_ptr e, const std::string& what, const std::string& consequence) {
    return storeFailure(e, what, consequence);
}

std::vector<std::string> OtpService::subjectHashes(const Destination& d) const {
    std::vector<std::string> hashes{subjectHash(emailMatchForm(d))};
    if (emailMatchForm(d) != d.normalized) hashes.push_back(subjectHash(d.normalized));
    return hashes;
}

void OtpService::send(SendInput in, Reply<SendResult> reply) {
    const auto appIt = config_.apps.find(in.app);
    if (appIt == config_.apps.end())
        return reply(Failure{"NoSuchApp", {{"app", in.app}}, "no app named '" + in.app + "' is configured"});
    const config::App& app = appIt->second;

    auto parsed = parseDestination(in.destination, app.defaultRegion);
    if (auto* err = std::get_if<DestinationError>(&parsed))
        return reply(Failure{"InvalidDestination", {{"reason", err->reason}}, "invalid destination: " + err->reason});
    const Destination dest = std::get<Destination>(parsed);

    const std::string channelName = in.channel.value_or(defaultChannel(dest.kind));
    if (channelName == "email" && dest.kind != DestinationKind::Email)
        return reply(Failure{"InvalidDestination", {{"reason", "the email channel needs an email address"}},
                             "invalid destination: the email channel needs an email address"});
    if (channelName == "whatsapp" && dest.kind != DestinationKind::Phone)
        return reply(Failure{"InvalidDestination", {{"reason", "the whatsapp channel needs a phone number"}},
                             "invalid destination: the whatsapp channel needs a phone number"});
    const bool allowed = std::find(app.channels.begin(), app.channels.end(), channelName) != app.channels.end();
    const auto channelIt = channels_.find(channelName);
    if (!allowed || channelIt == channels_.end() || !channelIt->second)
        return reply(Failure{"ChannelNotAllowed", {{"app", app.name}, {"channel", channelName}},
                             "app '" + app.name + "' does not send by " + channelName});

    if (channelName == "whatsapp") {
        if (auto refusal = countryRefusal(app, dest.normalized)) {
            recordLater(auditRecord("send", app.name, in.caller, "refused:country", "", subjectHash(app, dest),
                                    "country " + refusal->parameters.value("country", std::string("unknown"))));
            return reply(std::move(*refusal));
        }
    }
    std::string fallback;
    if (in.fallbackEmail) {
        if (channelName != "whatsapp")
            return reply(invalidParameter("fallbackEmail", "only a WhatsApp send falls back to email"));
        if (!app.fallbackToEmail || !channels_.count("email") ||
            std::find(app.channels.begin(), app.channels.end(), "email") == app.channels.end())
            return reply(invalidParameter("fallbackEmail", "app '" + app.name + "' does not fall back to email"));
        auto fb = parseDestination(*in.fallbackEmail);
        auto* fbDest = std::get_if<Destination>(&fb);
        if (!fbDest || fbDest->kind != DestinationKind::Email)
            return reply(invalidParameter("fallbackEmail", "not a valid email address"));
        fallback = fbDest->normalized;
    }

    const std::string purpose = in.purpose.value_or("login");
    if (!validPurpose(purpose)) return reply(invalidParameter("purpose", "must be login, verify or recovery"));
    if (in.locale && !validLocale(*in.locale)) return reply(invalidParameter("locale", "not a locale tag"));
    if (in.clientIp && !validIp(*in.clientIp)) return reply(invalidParameter("clientIp", "not an IPv4 or IPv6 address"));
    if (in.clientIp) {
        if (auto refusal = ipCountryRefusal(app, *in.clientIp)) {
            recordLater(auditRecord("send", app.name, in.caller, "refused:ip-country", "", subjectHash(dest.normalized),
                                    "client country " + refusal->parameters.value("country", std::string("unknown"))));
            return reply(std::move(*refusal));
        }
    }
    if (in.device && (in.device->size() > kMaxTextField || !printable(*in.device)))
        return reply(invalidParameter("device", "at most 256 printable characters"));
    if (in.reference && (in.reference->size() > kMaxTextField || !printable(*in.reference)))
        return reply(invalidParameter("reference", "at most 256 printable characters"));
    auto bound = parseBinding(in.context);
    if (auto* err = std::get_if<BindingError>(&bound)) return reply(invalidParameter("context", err->reason));
    BoundContext context = std::move(std::get<BoundContext>(bound));
    if (!context.empty() && channelName != "email")
        return reply(invalidParameter("context", "a bound code goes by email only: WhatsApp authentication templates "
                                                 "cannot show the context"));
    {
        // Every context key the template shows must be bound: a message
        // with a blank amount would approve what its reader cannot see.
        std::string usedLocale;
        const config::Template& t =
            channel::selectTemplate(app, in.locale.value_or(app.defaultLocale), purpose, usedLocale);
        for (const std::string* text : {&t.subject, &t.text, &t.html})
            for (const auto& key : channel::contextPlaceholders(*text))
                if (!context.value(key))
                    return reply(invalidParameter("context", "the template of app '" + app.name + "' shows {{context." +
                                                                 key + "}}: bind " + key));
    }
    const std::string digest = bindingDigest(bindingKey_, context);

    const std::int64_t ttl = in.ttl.value_or(app.ttl.count());
    if (ttl < kMinTtl || ttl > app.maxTtl.count())
        return reply(Failure{"OutOfRange", {{"parameter", "ttl"}, {"min", kMinTtl}, {"max", app.maxTtl.count()}},
                             "ttl must be between " + std::to_string(kMinTtl) + " and " +
                                 std::to_string(app.maxTtl.count()) + " seconds for app '" + app.name + "'"});
    const std::int64_t length = in.length.value_or(app.codeLength);
    if (length < app.minCodeLength || length > app.maxCodeLength)
        return reply(Failure{"OutOfRange",
                             {{"parameter", "length"}, {"min", app.minCodeLength}, {"max", app.maxCodeLength}},
                             "length must be between " + std::to_string(app.minCodeLength) + " and " +
                                 std::to_string(app.maxCodeLength) + " digits for app '" + app.name + "'"});

    const std::int64_t now = clock_.now();
    OtpRequest r;
    // Time-ordered from the wall clock (not the service's clock, which tests
    // set): what matters is the order rows reach the store in.
    r.id = crypto::timeOrderedId(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
    r.app = app.name;
    r.channel = channelName;
    r.destination = dest.normalized;
    r.subjectHash = subjectHash(app, dest);
    r.purpose = purpose;
    r.locale = in.locale.value_or(app.defaultLocale);
    r.clientIp = in.clientIp.value_or("");
    r.device = in.device.value_or("");
    r.reference = in.reference.value_or("");
    r.codeLength = static_cast<int>(length);
    r.maxAttempts = app.maxAttempts;
    r.sends = 1;
    r.maxSends = app.maxSends;
    r.ttl = ttl;
    r.createdAt = now;
    r.updatedAt = now;
    r.expiresAt = now + ttl;
    r.fallbackDestination = fallback;
    SecretString code = generateCode(r.codeLength);
    r.codeHash = codeHash(pepper_, r.id, code.view(), context.canonical());

    // The code stays in memory (captured by the completion), never in the store's queue of SQL.
    auto shared = std::make_shared<std::pair<OtpRequest, SecretString>>(std::move(r), std::move(code));
    auto sharedContext = std::make_shared<BoundContext>(std::move(context));
    auto refused = std::make_shared<std::optional<Failure>>();
    store_.submit(
        [this, shared, refused, digest, keys = sendKeys(app.name, shared->first.subjectHash, shared->first.clientIp),
         &limits = app.rateLimits, fraud = &app.fraud,
         fraudKeys = fraudKeys(app.name, shared->first.subjectHash, shared->first.destination, shared->first.clientIp,
                               shared->first.device, shared->first.id),
         earlier = earlierSubjectHash(app, dest), uid = in.caller,
         suppressed = channelName == "email" ? suppressionHash(dest) : std::string(),
         fallbackSuppressed = fallback.empty() ? std::string() : suppressionHash(Destination{DestinationKind::Email, fallback})](
            store::Transaction& t) {
            // The API key's call is counted first: a call it refuses does nothing else.
            if (auto over = admitCall(t, uid, clock_.now())) {
                *refused = std::move(*over);
                return;
            }
            // GDPR: a restricted subject gets nothing sent (Art. 18); an objecting
            // one is not profiled: no client IP or device kept, no fraud signals (Art. 21).
            // A flag set before local parts were matched without case is under the exact form's hash.
            const auto checks = t.sendChecks(store::SendChecksQuery{shared->first.subjectHash, earlier,
                                                                   shared->first.channel == "whatsapp", suppressed,
                                                                   fallbackSuppressed});
            auto flags = checks.flags;
            if (!flags.restrictedAt && !flags.objectedAt) flags = checks.earlierFlags;
            if (flags.restrictedAt) {
                record(t, auditRecord("send", shared->first.app, uid, "refused:restricted", "",
                                      shared->first.subjectHash));
                *refused = restricted();
                return;
            }
            const bool objected = flags.objectedAt.has_value();
            if (objected) {
                shared->first.clientIp.clear();
                shared->first.device.clear();
            }
            const OtpRequest& r = shared->first;
            // Checked in the same transaction as the insert: a STOP that
            // committed before this send is always honoured.
            if (checks.optedOut) {
                record(t, auditRecord("send", r.app, uid, "refused:opted-out", "", r.subjectHash, "channel whatsapp"));
                *refused = optedOut();
                return;
            }
            // Like the opt-out: a bounce or complaint that committed before this send is honoured.
            for (const auto& [hit, parameter] : {std::pair{checks.suppressed, "destination"},
                                                 std::pair{checks.fallbackSuppressed, "fallbackEmail"}}) {
                if (!hit) continue;
                record(t, auditRecord("send", r.app, uid, "refused:suppressed", "", r.subjectHash,
                                      std::string("email suppression list (") + parameter + ")"));
                *refused = suppressedFailure(parameter);
                return;
            }
            // Checked and counted in the same work item as the insert: concurrent sends cannot overshoot.
            // The rate limits first, then the fraud rules; a refusal by either counts nothing.
            const std::int64_t now = clock_.now();
            auto refusal = checkSend(t, limits, keys, now);
            FraudVerdict verdict;
            if (!refusal && !objected) {
                verdict = checkFraud(t, *fraud, fraudKeys, now);
                refusal = verdict.block;
            }
            if (refusal) {
                logRefusal("send", r.app, *refusal);
                record(t, auditRecord("send", r.app, uid, "refused:" + refusal->scope, "", r.subjectHash,
                                      "retry after " + std::to_string(refusal->retryAfter) + " s"));
                *refused = rateLimited(*refusal);
                return;
            }
            (void)admitSend(t, limits, keys, now);  // cannot refuse: checked above in this work item
            if (!objected) recordFraud(t, *fraud, fraudKeys, now);
            t.insertRequest(r);
            if (!digest.empty()) t.bindRequest(r.id, digest);
            // The job commits with the request: a crash before the provider
            // took the message leaves it for the sweep of the next start.
            t.putDeliveryJob(DeliveryJob{r.id, r.sends, 0, now, holder_, now + kLeaseSeconds, r.expiresAt, now, {}});
            for (const auto& rule : verdict.flagged) {
                log::warning("fraud rule " + rule + " flagged send " + r.id + " for app '" + r.app + "'");
                record(t, auditRecord("send", r.app, uid, "flagged:" + rule, r.id, r.subjectHash));
            }
            // Fails closed: no record, no request, nothing sent.
            record(t, auditRecord("send", r.app, uid, "success", r.id, r.subjectHash,
                                  "channel " + r.channel + ", purpose " + r.purpose +
                                      (digest.empty() ? "" : ", bound to context digest " + digest)));
        },
        [this, shared, sharedContext, refused, reply, wait = in.wait](std::exception_ptr e) {
            if (e) return reply(storeFailure(e, "the request could not be stored"));
            if (*refused) return reply(std::move(**refused));
            deliver(std::move(shared->first), std::move(shared->second), wait, reply, 0, std::chrono::milliseconds(0),
                    std::move(*sharedContext));
        });
}

std::optional<Failure> OtpService::countryRefusal(const config::App& app, const std::string& e164) const {
    if (app.allowedCountries.empty() && app.deniedCountries.empty()) return std::nullopt;
    const std::string region = phoneRegion(e164);
    const auto in = [&](const std::vector<std::string>& list) {
        return std::find(list.begin(), list.end(), region) != list.end();
    };
    if (in(app.deniedCountries) || (!app.allowedCountries.empty() && !in(app.allowedCountries)))
        return Failure{"CountryNotAllowed", {{"country", region.empty() ? "unknown" : region}},
                       "app '" + app.name + "' does not send to numbers of " + (region.empty() ? "unknown regions" : region)};
    return std::nullopt;
}

void OtpService::setCountryDatabase(std::shared_ptr<const geo::CountryDatabase> db) {
    std::lock_guard lock(geoMutex_);
    geo_ = std::move(db);
}

std::optional<Failure> OtpService::ipCountryRefusal(const config::App& app, const std::string& clientIp) const {
    if (app.allowedIpCountries.empty() && app.deniedIpCountries.empty()) return std::nullopt;
    std::shared_ptr<const geo::CountryDatabase> db;
    {
        std::lock_guard lock(geoMutex_);
        db = geo_;
    }
    // No database (missing at start or reload, which the log warned about):
    // the rules are off rather than every send refused.
    if (!db) return std::nullopt;
    const std::string country = db->country(clientIp).value_or("");
    const auto in = [&](const std::vector<std::string>& list) {
        return std::find(list.begin(), list.end(), country) != list.end();
    };
    // An address the database does not place is outside every allow list.
    if ((!country.empty() && in(app.deniedIpCountries)) || (!app.allowedIpCountries.empty() && !in(app.allowedIpCountries)))
        return Failure{"ClientCountryNotAllowed", {{"country", country.empty() ? "unknown" : country}},
                       "app '" + app.name + "' does not send for clients in " +
                           (country.empty() ? std::string("unknown countries") : country)};
    return std::nullopt;
}

// One send's delivery: its attempts, retries and the single answer to the
// caller. Holds the plaintext code in memory only, for as long as retries may
// need it, and wipes it with itself.
struct OtpService::DeliveryRun {
    OtpRequest request;  // as committed for this send
    SecretString code;
    BoundContext context;  // shown in the message; empty for an unbound code
    Reply<SendResult> reply;
    int send = 1;  // the job's send: requests.sends when it started
    std::atomic<int> attempt{0};
    std::atomic<bool> inFlight{false};  // a try is with the provider: its lease is being renewed
    std::mutex mutex;
    bool answered = false;

    // Answers the caller once; later calls do nothing.
    void answer(Outcome<SendResult> outcome) {
        {
            std::lock_guard lock(mutex);
            if (answered) return;
            answered = true;
        }
        reply(std::move(outcome));
    }
};

const char* deliveryStateName(DeliveryState s) {
    switch (s) {
        case DeliveryState::Accepted: return "accepted";
        case DeliveryState::Retrying: return "retrying";
        case DeliveryState::Queued: return "queued";
    }
    return "accepted";
}

namespace {

// Replaces the destination in a provider's error text with its masked form:
// the delivery log and the logs keep the reason, not the address.
std::string scrub(std::string text, const OtpRequest& r) {
    if (r.destination.empty()) return text;
    const Destination d{r.destination.find('@') != std::string::npos ? DestinationKind::Email : DestinationKind::Phone,
                        r.destination};
    const std::string masked = maskDestination(d);
    for (auto pos = text.find(r.destination); pos != std::string::npos; pos = text.find(r.destination, pos))
        text.replace(pos, r.destination.size(), masked);
    return text;
}

}  // namespace

void OtpService::deliver(OtpRequest request, SecretString code, bool wait, Reply<SendResult> reply, int attemptsSoFar,
                         std::chrono::milliseconds firstIn, BoundContext context) {
    auto run = std::make_shared<DeliveryRun>();
    run->request = std::move(request);
    run->send = run->request.sends;
    run->code = std::move(code);
    run->context = std::move(context);
    run->reply = std::move(reply);
    run->attempt = attemptsSoFar;
    if (!wait) run->answer(SendResult{run->request, DeliveryState::Queued});
    else
        // A send answers once the provider accepted or refused for good, or after
        // send_wait with delivery still being retried in the background.
        scheduler_(std::chrono::duration_cast<std::chrono::milliseconds>(config_.retry.sendWait),
                   [run] { run->answer(SendResult{run->request, DeliveryState::Retrying}); });
    if (firstIn.count() > 0) scheduler_(firstIn, [this, run] { attempt(run); });
    else executor_([this, run] { attempt(run); });
}

// While a try is with the provider, its lease is renewed, so that no other
// daemon takes the job over from a holder that is merely slow.
void OtpService::keepLease(const std::shared_ptr<DeliveryRun>& run, int attempt) {
    scheduler_(std::chrono::seconds(kLeaseSeconds / 3), [this, run, attempt] {
        if (!run->inFlight || run->attempt != attempt) return;
        store_.submit(
            [this, run](store::Transaction& t) {
                (void)t.renewDeliveryLease(run->request.id, run->send, holder_, clock_.now() + kLeaseSeconds);
            },
            [](std::exception_ptr e) {
                if (e) log::warning("a delivery lease could not be renewed");
            });
        keepLease(run, attempt);
    });
}

void OtpService::attempt(const std::shared_ptr<DeliveryRun>& run) {
    const OtpRequest& r = run->request;
    const config::App& app = config_.apps.at(r.app);
    const int attemptNo = ++run->attempt;
    run->inFlight = true;
    channel::Message m;
    m.requestId = r.id;
    m.app = r.app;
    m.appDisplayName = app.displayName;
    m.appConfig = &app;
    m.channel = r.channel;
    m.destination = r.destination;
    m.purpose = r.purpose;
    m.attempt = r.sends;
    m.deliveryAttempt = attemptNo;
    m.expiresAt = r.expiresAt;
    std::string usedLocale;
    const config::Template& t = channel::selectTemplate(app, r.locale, r.purpose, usedLocale);
    m.locale = usedLocale;
    const channel::RenderValues values{run->code.view(), app.displayName, (r.ttl + 59) / 60, usedLocale, &run->context};
    m.subject = SecretString(channel::renderTemplate(t.subject, values, false));
    // A template that shows none of a bound context gets all of it added.
    const bool showsContext = (t.subject + t.text + t.html).find("{{context.") != std::string::npos;
    const bool addContext = !run->context.empty() && !showsContext;
    m.text = SecretString(channel::renderTemplate(t.text, values, false) +
                          (addContext ? channel::contextLines(run->context, false) : std::string()));
    if (!t.html.empty())
        m.html = SecretString(channel::renderTemplate(t.html, values, true) +
                              (addContext ? channel::contextLines(run->context, true) : std::string()));
    m.code = run->code.clone();
    channels_.at(r.channel)->deliver(std::move(m), [this, run](channel::DeliveryResult result) {
        attemptDone(run, std::move(result));
    });
    // A channel that answered at once (the outbox) needs no renewal.
    if (run->inFlight && run->attempt == attemptNo) keepLease(run, attemptNo);
}

void OtpService::attemptDone(const std::shared_ptr<DeliveryRun>& run, channel::DeliveryResult result) {
    run->inFlight = false;
    const OtpRequest& r = run->request;
    const std::int64_t now = clock_.now();
    result.error = scrub(result.error, r);
    // A local write that failed (a full disk) names the daemon's paths: those
    // stay in its log; the caller, the request and the delivery log get the
    // system's reason only.
    const std::string logError = result.error;
    if (result.errorClass == "io") {
        const auto colon = result.error.rfind(": ");
        result.error = "the message could not be written" +
                       (colon == std::string::npos ? std::string() : " (" + result.error.substr(colon + 2) + ")");
    }

    // Retry a transient failure while the request is valid and tries remain.
    std::optional<std::chrono::milliseconds> retryIn;
    if (result.outcome == channel::DeliveryOutcome::Retryable && run->attempt < config_.retry.maxAttempts) {
        // Jittered exponential backoff ("full jitter"), at least what the provider asked for.
        const auto cap = std::min<std::int64_t>(config_.retry.maxDelay.count(),
                                                config_.retry.baseDelay.count() << std::min(run->attempt - 1, 20));
        auto delay = std::chrono::milliseconds(crypto::randomBelow(static_cast<std::uint64_t>(cap) + 1));
        if (result.retryAfter && *result.retryAfter > delay) delay = *result.retryAfter;
        if (now + (delay.count() + 999) / 1000 < r.expiresAt) retryIn = delay;
    }

    DeliveryAttempt a;
    a.requestId = r.id;
    a.app = r.app;
    a.channel = r.channel;
    a.driver = result.driver;
    a.send = r.sends;
    a.attempt = run->attempt;
    a.at = now;
    a.outcome = result.outcome == channel::DeliveryOutcome::Accepted ? "accepted" : retryIn ? "retry" : "failed";
    a.providerMessageId = result.providerMessageId;
    a.statusCode = result.statusCode;
    a.durationMs = result.duration.count();
    a.errorClass = result.errorClass;
    a.error = result.error;
    a.ambiguous = result.ambiguous;
    const DeliveryRecipient to = deliveryRecipient(config_, r.app, result.driver);
    a.provider = to.provider;
    a.region = to.region;
    // The job follows the try in the same work item: accepted ends it, a
    // retry records the attempt count and when the next is due (the lease
    // runs on to a little after it), so both survive a restart.
    const std::int64_t retryAt = retryIn ? now + (retryIn->count() + 999) / 1000 : 0;
    const bool accepted = result.outcome == channel::DeliveryOutcome::Accepted;
    if (deliveryAttempt_) deliveryAttempt_(a);
    store_.submit(
        [this, a, accepted, retryAt, retrying = retryIn.has_value(), send = run->send](store::Transaction& t) {
            t.insertDeliveryAttempt(a);
            // The denominator of the bounce and complaint rates (twofactor stats).
            if (accepted && a.channel == "email") t.countEmailFeedback(a.app, store::EmailFeedback::Send, a.at);
            if (accepted) t.endDeliveryJob(a.requestId, send, holder_);
            else if (retrying)
                (void)t.recordDeliveryRetry(a.requestId, send, holder_, a.attempt, retryAt, retryAt + kLeaseSeconds,
                                            a.errorClass + ": " + a.error);
        },
        // What follows waits for the attempt's commit: once a Send has
        // answered, or its fallback begun, any node's delivery log (and so a
        // subject's export) shows the attempt. On PostgreSQL work items run
        // side by side, and a later call could otherwise read before it.
        // It goes on in the delivery threads, off the store's writer.
        [this, run, result, logError, retryIn, id = r.id, app = r.app](std::exception_ptr e) {
            if (e) log::error("the delivery log of request " + id + " could not be written", {log::Event::StoreFailure, id, app});
            executor_([this, run, result, logError, retryIn] { deliveryRecorded(run, result, logError, retryIn); });
        });
}

void OtpService::deliveryRecorded(const std::shared_ptr<DeliveryRun>& run, const channel::DeliveryResult& result,
                                  const std::string& logError, std::optional<std::chrono::milliseconds> retryIn) {
    const OtpRequest& r = run->request;
    const std::string where = "request " + r.id + " (" + r.app + ", " + r.channel + ", send " +
                              std::to_string(r.sends) + ", attempt " + std::to_string(run->attempt) + ") by " +
                              result.driver;
    if (result.outcome == channel::DeliveryOutcome::Accepted) {
        log::info(where + ": accepted" + (result.providerMessageId.empty() ? "" : " as " + result.providerMessageId));
        run->answer(SendResult{r, DeliveryState::Accepted});
        return;
    }
    if (result.ambiguous)
        log::warning(where + ": " + result.errorClass +
                     " after the request may have reached the provider; a retry may deliver twice");
    if (retryIn) {
        log::warning(where + ": " + result.error + "; retrying in " + std::to_string(retryIn->count()) + " ms");
        scheduler_(*retryIn, [this, run] {
            // Only while this send is still the current one: a resend or a
            // cancel, verify or expiry ends the retries of the old code.
            // And while this daemon still holds the job: another may have taken it over.
            auto still = std::make_shared<bool>(false);
            const int id_sends = run->send;
            store_.submit(
                [this, run, still, id_sends](store::Transaction& t) {
                    auto current = t.findRequest(run->request.id);
                    *still = current && current->effectiveStatus(clock_.now()) == Status::Pending &&
                             current->sends == id_sends &&
                             t.renewDeliveryLease(run->request.id, id_sends, holder_, clock_.now() + kLeaseSeconds);
                },
                [this, run, still](std::exception_ptr e) {
                    if (e || !*still) {
                        run->answer(Failure{"NotPending", {{"id", run->request.id}, {"status", "superseded"}},
                                            "request " + run->request.id + " is no longer pending"});
                        return;
                    }
                    executor_([this, run] { attempt(run); });
                });
        });
        return;
    }
    log::warning(where + ": failed: " + logError);
    if (tryFallback(run, result)) return;
    failRequest(run, result.error.empty() ? "delivery failed" : result.error);
}

// WhatsApp failed for good and the send carried a fallback address: the same
// request, with the same code, goes out by email instead, recorded as such.
bool OtpService::tryFallback(const std::shared_ptr<DeliveryRun>& run, const channel::DeliveryResult& result) {
    const OtpRequest& r = run->request;
    if (r.channel != "whatsapp" || r.fallbackDestination.empty() || result.errorClass == "expired") return false;
    const auto app = config_.apps.find(r.app);
    if (app == config_.apps.end() || !app->second.fallbackToEmail || !channels_.count("email")) return false;
    auto switched = std::make_shared<bool>(false);
    const int sends = r.sends;
    store_.submit(
        [this, run, switched, sends](store::Transaction& t) {
            auto current = t.findRequest(run->request.id);
            if (!current || current->effectiveStatus(clock_.now()) != Status::Pending) return;
            *switched = t.switchChannel(run->request.id, sends, "email", clock_.now());
        },
        [this, run, switched](std::exception_ptr e) {
            if (e || !*switched) {
                failRequest(run, "WhatsApp delivery failed; the request ended before the email fallback");
                return;
            }
            log::info("request " + run->request.id + ": WhatsApp failed for good; falling back to email");
            run->request.channel = "email";
            run->request.destination = run->request.fallbackDestination;
            run->attempt = 0;
            executor_([this, run] { attempt(run); });
        });
    return true;
}

void OtpService::optOutAdd(std::string destination, std::string reason, std::string source, Reply<OptOut> reply,
                           std::int64_t uid) {
    auto parsed = parseDestination(destination);
    auto* d = std::get_if<Destination>(&parsed);
    if (!d || d->kind != DestinationKind::Phone)
        return reply(Failure{"InvalidDestination",
                             {{"reason", d ? "the opt-out list holds phone numbers"
                                           : std::get<DestinationError>(parsed).reason}},
                             "invalid destination"});
    if (reason.size() > kMaxTextField || !printable(reason))
        return reply(invalidParameter("reason", "at most 256 printable characters"));
    OptOut entry{subjectHash(d->normalized), d->normalized, clock_.now(), std::move(source), std::move(reason)};
    store_.submit([this, entry, uid](store::Transaction& t) {
                      t.putOptOut(entry);
                      record(t, auditRecord("optout-add", "", uid, "success", "", entry.subjectHash,
                                            "source " + entry.source));
                  },
                  [entry, reply](std::exception_ptr e) {
                      if (e) return reply(storeFailure(e, "the opt-out could not be stored", "the list is unchanged"));
                      reply(entry);
                  });
}

void OtpService::optOutRemove(std::string destination, Reply<bool> reply, std::int64_t uid) {
    auto parsed = parseDestination(destination);
    auto* d = std::get_if<Destination>(&parsed);
    if (!d || d->kind != DestinationKind::Phone)
        return reply(Failure{"InvalidDestination",
                             {{"reason", d ? "the opt-out list holds phone numbers"
                                           : std::get<DestinationError>(parsed).reason}},
                             "invalid destination"});
    auto removed = std::make_shared<bool>(false);
    store_.submit([this, removed, uid, hash = subjectHash(d->normalized)](store::Transaction& t) {
                      *removed = t.removeOptOut(hash);
                      record(t, auditRecord("optout-remove", "", uid, *removed ? "success" : "failure", "", hash,
                                            *removed ? "" : "not on the list"));
                  },
                  [removed, reply](std::exception_ptr e) {
                      if (e) return reply(storeFailure(e, "the opt-out list could not be changed", "the list is unchanged"));
                      reply(*removed);
                  });
}

void OtpService::optOutList(int limit, Reply<std::vector<OptOut>> reply) {
    if (limit < 1 || limit > 100000)
        return reply(Failure{"OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 100000}},
                             "limit must be between 1 and 100000"});
    auto list = std::make_shared<std::vector<OptOut>>();
    store_.submit([list, limit](store::Transaction& t) { *list = t.listOptOuts(limit); },
                  [list, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", {}, "the opt-out list could not be read"});
                      reply(std::move(*list));
                  });
}

void OtpService::providerStatus(ProviderStatus status) {
    auto known = std::make_shared<bool>(false);
    store_.submit([status, known](store::Transaction& t) { *known = t.updateDeliveryStatus(status); },
                  [status, known](std::exception_ptr e) {
                      if (e) log::error("a provider status update could not be stored");
                      else if (!*known)
                          log::debug("status '" + status.status + "' for unknown or older message " +
                                     status.providerMessageId + " ignored");
                  });
}

void OtpService::failRequest(const std::shared_ptr<DeliveryRun>& run, const std::string& reason) {
    auto failed = std::make_shared<OtpRequest>(run->request);
    failed->failure = reason;
    const std::int64_t sends = run->request.sends;
    store_.submit(
        [this, failed, sends](store::Transaction& t) {
            // Only the current send of a still-pending request fails it: it may
            // have been canceled, verified or resent meanwhile.
            const std::int64_t now = clock_.now();
            if (t.finishRequest(failed->id, static_cast<int>(sends), Status::Failed, now, failed->failure)) {
                t.endDeliveryJob(failed->id);
                failed->finish(Status::Failed, now);
                emitEvent(t, "delivery.failed", *failed, now);
            }
        },
        [this, run, failed](std::exception_ptr e) {
            if (!e) requestEnded(failed->id);
            run->answer(Failure{"DeliveryFailed", {{"id", failed->id}, {"reason", failed->failure}},
                                "delivery of " + failed->id + " failed: " + failed->failure});
        });
}

void OtpService::deliveries(DeliveryQuery query, Reply<std::vector<DeliveryAttempt>> reply) {
    if (query.limit < 1 || query.limit > 10000)
        return reply(Failure{"OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 10000}},
                             "limit must be between 1 and 10000"});
    auto state = std::make_shared<std::vector<DeliveryAttempt>>();
    store_.submit([state, query](store::Transaction& t) { *state = t.findDeliveryAttempts(query); },
                  [state, reply](std::exception_ptr e) {
                      if (e) return reply(Failure{"StoreFailed", {}, "the delivery log could not be read"});
                      reply(std::move(*state));
                  });
}

void OtpService::verify(VerifyInput in, Reply<VerifyResult> reply) {
    if (!wellFormedCode(in.code.view())) return reply(invalidParameter("code", "must be 4 to 10 digits"));
    std::string subject;
    std::string earlier;
    std::string appName;
    if (in.id) {
        if (in.app || in.destination)
            return reply(invalidParameter("id", "give either id, or app and destination, not both"));
    } else {
        if (!in.app || !in.destination)
            return reply(invalidParameter(in.app ? "destination" : "app", "needed when no id is given"));
        const auto appIt = config_.apps.find(*in.app);
        if (appIt == config_.apps.end())
            return reply(Failure{"NoSuchApp", {{"app", *in.app}}, "no app named '" + *in.app + "' is configured"});
        auto parsed = parseDestination(*in.destination, appIt->second.defaultRegion);
        if (auto* err = std::get_if<DestinationError>(&parsed))
            return reply(Failure{"InvalidDestination", {{"reason", err->reason}}, "invalid destination: " + err->reason});
        subject = subjectHash(appIt->second, std::get<Destination>(parsed));
        earlier = earlierSubjectHash(appIt->second, std::get<Destination>(parsed));
        appName = *in.app;
    }

    auto bound = parseBinding(in.context);
    if (auto* err = std::get_if<BindingError>(&bound)) return reply(invalidParameter("context", err->reason));
    auto context = std::make_shared<BoundContext>(std::move(std::get<BoundContext>(bound)));
    auto state = std::make_shared<Pending<VerifyResult>>();
    auto code = std::make_shared<SecretString>(std::move(in.code));
    const std::string id = in.id.value_or("");
    store_.submit(
        [this, state, code, context, id, appName, subject, earlier, uid = in.caller](store::Transaction& t) {
            if (auto over = admitCall(t, uid, clock_.now())) {
                state->outcome = std::move(*over);
                return;
            }
            auto found = id.empty() ? t.findNewestPending(appName, subject) : findRequestFor(t, id, uid);
            if (!found && id.empty() && !earlier.empty()) found = t.findNewestPending(appName, earlier);
            if (!found) {
                record(t, auditRecord("verify", appName, uid, "failure", id, subject, "no such request"));
                state->outcome = id.empty() ? Failure{"NoSuchRequest", {{"id", ""}}, "no pending request for this destination"}
                                            : noSuchRequest(id);
                return;
            }
            OtpRequest r = std::move(*found);
            if (t.subjectFlags(r.subjectHash).restrictedAt) {  // GDPR Art. 18: nothing compared, nothing changed
                record(t, auditRecord("verify", r.app, uid, "refused:restricted", r.id, r.subjectHash));
                state->outcome = restricted();
                return;
            }
            const std::int64_t now = clock_.now();
            const Status s = r.effectiveStatus(now);
            VerifyResult result;
            std::string outcome = "rejected";
            std::string detail = std::string("request ") + statusName(s);
            if (s == Status::Expired && r.status == Status::Pending) {
                const bool ended = t.finishRequest(r.id, std::nullopt, s, now);
                r.finish(Status::Expired, now);
                if (ended) {
                    t.endDeliveryJob(r.id);
                    emitEvent(t, "verification.expired", r, now);
                }
            } else if (s == Status::Pending) {
                // Across requests: a locked-out subject gets no code compared, nothing counted.
                if (auto refusal = checkVerify(t, r.app, r.subjectHash, now)) {
                    logRefusal("verify of " + r.id, r.app, *refusal);
                    record(t, auditRecord("verify", r.app, uid, "refused:" + refusal->scope, r.id, r.subjectHash,
                                          "retry after " + std::to_string(refusal->retryAfter) + " s"));
                    state->outcome = rateLimited(*refusal);
                    return;
                }
                const auto expected = r.codeHash;
                const auto given = codeHash(pepper_, r.id, code->view(), context->canonical());
                const bool match = expected && crypto::constantTimeEqual(given.data(), given.size(), expected->data(),
                                                                         expected->size());
                // Conditional changes: of two verifies racing on one request
                // (on two nodes), one approves, and every wrong code counts.
                if (match && t.approveRequest(r.id, r.sends, *expected, now)) {
                    r.finish(Status::Approved, now);
                    result.approved = true;
                    recordVerifySuccess(t, r.app, r.subjectHash);
                    outcome = "approved";
                    detail.clear();
                    emitEvent(t, "verification.approved", r, now);
                } else if (match) {
                    // Another writer ended it or replaced the code since it was read.
                    if (auto current = t.findRequest(r.id)) r = std::move(*current);
                    detail = std::string("request ") + statusName(r.effectiveStatus(now));
                } else if (auto counted = t.countWrongCode(r.id, now)) {
                    recordVerifyFailure(t, rateLimits(r.app), r.app, r.subjectHash, now);
                    r.attempts = counted->attempts;
                    r.updatedAt = now;
                    if (counted->locked) r.finish(Status::Locked, now);
                    // Counted as a wrong code either way: a caller trying
                    // contexts gets no more tries than one trying codes.
                    const bool contextDiffers = t.requestBinding(r.id) != bindingDigest(bindingKey_, *context);
                    detail = std::string(contextDiffers ? "context differs from the one bound at send"
                                                        : "wrong code") +
                             ", attempt " + std::to_string(r.attempts) + " of " + std::to_string(r.maxAttempts) +
                             (r.status == Status::Locked ? ", now locked" : "");
                    emitEvent(t, "verification.failed", r, now);
                } else {
                    if (auto current = t.findRequest(r.id)) r = std::move(*current);
                    detail = std::string("request ") + statusName(r.effectiveStatus(now));
                }
                if (r.status != Status::Pending) t.endDeliveryJob(r.id);
            }
            // Fails closed: without its record the approval (or failure count) is undone.
            record(t, auditRecord("verify", r.app, uid, outcome, r.id, r.subjectHash, detail));
            result.status = r.effectiveStatus(now);
            result.request = std::move(r);
            state->outcome = std::move(result);
        },
        [this, state, reply](std::exception_ptr e) {
            if (e) return reply(storeFailure(e, "the verification could not be stored", "nothing was changed"));
            if (auto* v = std::get_if<VerifyResult>(&*state->outcome); v && v->request && v->status != Status::Pending)
                requestEnded(v->request->id);
            reply(std::move(*state->outcome));
        });
}

void OtpService::status(std::string id, Reply<OtpRequest> reply, Caller caller) {
    auto state = std::make_shared<Pending<OtpRequest>>();
    store_.submit(
        [this, state, id, caller](store::Transaction& t) {
            if (auto over = admitCall(t, caller, clock_.now())) state->outcome = std::move(*over);
            else if (auto r = findRequestFor(t, id, caller)) state->outcome = std::move(*r);
            else state->outcome = noSuchRequest(id);
        },
        [state, reply](std::exception_ptr e) {
            if (e) return reply(Failure{"StoreFailed", {}, "the store could not be read"});
            reply(std::move(*state->outcome));
        });
}

void OtpService::cancel(std::string id, Reply<OtpRequest> reply, Caller uid) {
    auto state = std::make_shared<Pending<OtpRequest>>();
    store_.submit(
        [this, state, id, uid](store::Transaction& t) {
            const std::int64_t now = clock_.now();
            auto found =
                loadPending(t, id, now, uid, [&](const OtpRequest& r) { emitEvent(t, "verification.expired", r, now); });
            if (auto* f = std::get_if<Failure>(&found)) {
                state->outcome = std::move(*f);
                return;
            }
            auto r = &std::get<OtpRequest>(found);
            if (!t.finishRequest(r->id, std::nullopt, Status::Canceled, now)) {
                state->outcome = superseded(r->id);
                return;
            }
            r->finish(Status::Canceled, now);
            t.endDeliveryJob(r->id);
            emitEvent(t, "verification.canceled", *r, now);
            record(t, auditRecord("cancel", r->app, uid, "success", r->id, r->subjectHash));
            state->outcome = std::move(*r);
        },
        [this, state, reply](std::exception_ptr e) {
            if (e) return reply(storeFailure(e, "the cancellation could not be stored", "nothing was changed"));
            if (auto* r = std::get_if<OtpRequest>(&*state->outcome)) requestEnded(r->id);
            reply(std::move(*state->outcome));
        });
}

void OtpService::resend(std::string id, Reply<SendResult> reply, Caller uid,
                        std::map<std::string, std::string> contextEntries) {
    auto bound = parseBinding(contextEntries);
    if (auto* err = std::get_if<BindingError>(&bound)) return reply(invalidParameter("context", err->reason));
    auto context = std::make_shared<BoundContext>(std::move(std::get<BoundContext>(bound)));
    auto state = std::make_shared<Pending<OtpRequest>>();
    auto code = std::make_shared<SecretString>();
    store_.submit(
        [this, state, code, context, id, uid](store::Transaction& t) {
            const std::int64_t now = clock_.now();
            auto found =
                loadPending(t, id, now, uid, [&](const OtpRequest& r) { emitEvent(t, "verification.expired", r, now); });
            if (auto* f = std::get_if<Failure>(&found)) {
                state->outcome = std::move(*f);
                return;
            }
            auto r = &std::get<OtpRequest>(found);
            if (t.subjectFlags(r->subjectHash).restrictedAt) {
                record(t, auditRecord("resend", r->app, uid, "refused:restricted", r->id, r->subjectHash));
                state->outcome = restricted();
                return;
            }
            if (r->channel == "whatsapp" && t.findOptOut(r->subjectHash)) {
                record(t, auditRecord("resend", r->app, uid, "refused:opted-out", r->id, r->subjectHash));
                state->outcome = optedOut();
                return;
            }
            if (r->channel == "email" &&
                t.findSuppression(suppressionHash(Destination{DestinationKind::Email, r->destination}))) {
                record(t, auditRecord("resend", r->app, uid, "refused:suppressed", r->id, r->subjectHash));
                state->outcome = suppressedFailure("destination");
                return;
            }
            // Only the digest of a bound context is kept: the caller brings
            // the context again, and it must be the one bound at send.
            if (t.requestBinding(r->id) != bindingDigest(bindingKey_, *context)) {
                record(t, auditRecord("resend", r->app, uid, "refused:context", r->id, r->subjectHash));
                state->outcome = Failure{"ContextMismatch", {{"id", r->id}},
                                         "request " + r->id + " is bound to another context than the one given "
                                         "(a bound request is resent with the context of its send)"};
                return;
            }
            if (r->sends >= r->maxSends) {
                record(t, auditRecord("resend", r->app, uid, "refused:max-sends", r->id, r->subjectHash));
                state->outcome = Failure{"TooManySends", {{"id", r->id}, {"maxSends", r->maxSends}},
                                         "request " + r->id + " was already sent " + std::to_string(r->sends) +
                                             " times (the limit)"};
                return;
            }
            if (auto refusal = admitSend(t, rateLimits(r->app), sendKeys(r->app, r->subjectHash, r->clientIp), now)) {
                logRefusal("resend of " + r->id, r->app, *refusal);
                record(t, auditRecord("resend", r->app, uid, "refused:" + refusal->scope, r->id, r->subjectHash,
                                      "retry after " + std::to_string(refusal->retryAfter) + " s"));
                state->outcome = rateLimited(*refusal);
                return;
            }
            // A new code replaces the old hash at once; the attempt counter stays.
            *code = generateCode(r->codeLength);
            const auto hash = codeHash(pepper_, r->id, code->view(), context->canonical());
            if (!t.replaceCode(r->id, r->sends, hash, now + r->ttl, now)) {
                state->outcome = superseded(r->id);
                return;
            }
            r->codeHash = hash;
            ++r->sends;
            r->expiresAt = now + r->ttl;
            r->updatedAt = now;
            t.putDeliveryJob(DeliveryJob{r->id, r->sends, 0, now, holder_, now + kLeaseSeconds, r->expiresAt, now, {}});
            record(t, auditRecord("resend", r->app, uid, "success", r->id, r->subjectHash,
                                  "send " + std::to_string(r->sends) + " of " + std::to_string(r->maxSends)));
            state->outcome = std::move(*r);
        },
        [this, state, code, context, reply](std::exception_ptr e) {
            if (e) return reply(storeFailure(e, "the resend could not be stored"));
            if (auto* r = std::get_if<OtpRequest>(&*state->outcome)) {
                deliver(std::move(*r), std::move(*code), true, reply, 0, std::chrono::milliseconds(0),
                        std::move(*context));
                return;
            }
            reply(std::get<Failure>(std::move(*state->outcome)));
        });
}

void OtpService::deliveryJobs(std::optional<std::string> requestId, int limit, Reply<std::vector<DeliveryJob>> reply) {
    if (limit < 1 || limit > 10000)
        return reply(Failure{"OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 10000}},
                             "limit must be between 1 and 10000"});
    auto jobs = std::make_shared<std::vector<DeliveryJob>>();
    store_.submit(
        [jobs, requestId, limit](store::Transaction& t) {
            jobs->clear();  // work may run again (Store::submit)
            if (!requestId) *jobs = t.listDeliveryJobs(limit);
            else if (auto j = t.findDeliveryJob(*requestId)) jobs->push_back(std::move(*j));
        },
        [jobs, reply](std::exception_ptr e) {
            if (e) return reply(Failure{"StoreFailed", {}, "the delivery jobs could not be read"});
            reply(std::move(*jobs));
        });
}

namespace {

// Where a request's message goes now: after a WhatsApp failure fell back to
// email, the stored channel is email and the address the fallback one.
std::string deliveryAddress(const OtpRequest& r) {
    if (r.channel == "email" && r.destination.find('@') == std::string::npos) return r.fallbackDestination;
    return r.destination;
}

struct Takeover {
    OtpRequest request;
    SecretString code;
    DeliveryJob job;
};

struct SweepResult {
    int claimed = 0;
    std::vector<Takeover> takeovers;
    std::vector<std::string> ended;
};

}  // namespace

void OtpService::sweepDeliveries(int limit, std::function<void(int)> done) {
    auto result = std::make_shared<SweepResult>();
    store_.submit(
        [this, result, limit](store::Transaction& t) {
            *result = {};  // work may run again (Store::submit)
            const std::int64_t now = clock_.now();
            auto claimed = t.claimDeliveryJobs(holder_, node_ + "/", now, now + kLeaseSeconds, limit);
            result->claimed = static_cast<int>(claimed.size());
            for (auto& job : claimed) {
                auto r = t.findRequest(job.requestId);
                if (!r) {
                    t.endDeliveryJob(job.requestId);
                    continue;
                }
                const Status s = r->effectiveStatus(now);
                if (s != Status::Pending) {
                    if (r->status == Status::Pending && t.finishRequest(r->id, std::nullopt, s, now)) {
                        r->finish(s, now);
                        emitEvent(t, "verification.expired", *r, now);
                    }
                    t.endDeliveryJob(r->id);
                    result->ended.push_back(r->id);
                    continue;
                }
                const auto app = config_.apps.find(r->app);
                const auto channel = channels_.find(r->channel);
                std::string refusal;
                if (app == config_.apps.end()) refusal = "the app is no longer configured";
                else if (channel == channels_.end() || !channel->second) refusal = "the channel is no longer configured";
                else if (deliveryAddress(*r).empty()) refusal = "the destination was cleared";
                // The context is not kept, so a fresh code could be neither
                // bound to it nor shown with it.
                else if (!t.requestBinding(r->id).empty())
                    refusal = "a bound request's context is not kept, so its code cannot be sent again; send anew";
                else if (job.attempts >= config_.retry.maxAttempts)
                    refusal = "delivery failed after " + std::to_string(job.attempts) + " attempts: " + job.lastError;
                if (!refusal.empty()) {
                    // Ended by another writer since the claim: its job went with it.
                    if (!t.finishRequest(r->id, r->sends, Status::Failed, now, refusal)) continue;
                    t.endDeliveryJob(r->id);
                    r->failure = refusal;
                    r->finish(Status::Failed, now);
                    emitEvent(t, "delivery.failed", *r, now);
                    result->ended.push_back(r->id);
                    log::warning("request " + r->id + ": delivery job ended: " + refusal);
                    continue;
                }
                // The code of the holder that is gone was never written down:
                // a fresh one replaces its hash, as a resend does, so no code
                // is ever delivered twice. Attempts (and the backoff) go on.
                SecretString code = generateCode(r->codeLength);
                const auto hash = codeHash(pepper_, r->id, code.view());
                // Resent or ended by another writer since the claim: the job
                // is the one of that send now, or gone.
                if (!t.replaceCode(r->id, r->sends, hash, now + r->ttl, now)) continue;
                r->codeHash = hash;
                ++r->sends;
                r->expiresAt = now + r->ttl;
                r->updatedAt = now;
                const std::string from = job.holder;
                job.send = r->sends;
                job.holder = holder_;
                job.leaseUntil = std::max(now, job.retryAt) + kLeaseSeconds;
                job.expiresAt = r->expiresAt;
                t.putDeliveryJob(job);
                record(t, auditRecord("resend", r->app, -1, "success", r->id, r->subjectHash,
                                      "delivery taken over from " + from + ", send " + std::to_string(r->sends) +
                                          " of " + std::to_string(r->maxSends)));
                result->takeovers.push_back(Takeover{std::move(*r), std::move(code), std::move(job)});
            }
        },
        [this, result, done](std::exception_ptr e) {
            if (e) {
                log::error("the delivery sweep could not claim its jobs");
                if (done) done(0);
                return;
            }
            for (const auto& id : result->ended) requestEnded(id);
            const std::int64_t now = clock_.now();
            for (auto& to : result->takeovers) {
                OtpRequest r = std::move(to.request);
                log::info("request " + r.id + ": delivery taken over (send " + std::to_string(r.sends) + ", " +
                          std::to_string(to.job.attempts) + " attempt(s) so far)");
                r.destination = deliveryAddress(r);
                const auto wait = std::chrono::seconds(std::max<std::int64_t>(0, to.job.retryAt - now));
                deliver(std::move(r), std::move(to.code), false, [](Outcome<SendResult>) {}, to.job.attempts, wait);
            }
            if (done) done(result->claimed);
        });
}

void OtpService::sweepExpired(int limit, std::function<void(int)> done) {
    auto ended = std::make_shared<std::vector<std::string>>();
    store_.submit(
        [this, ended, limit](store::Transaction& t) {
            ended->clear();  // work may run again (Store::submit)
            const std::int64_t now = clock_.now();
            for (auto& r : t.findExpiredPending(now, limit)) {
                // Ended by another writer since it was read: its event is that writer's.
                if (!t.finishRequest(r.id, std::nullopt, Status::Expired, now)) continue;
                t.endDeliveryJob(r.id);
                r.finish(Status::Expired, now);
                emitEvent(t, "verification.expired", r, now);
                ended->push_back(r.id);
            }
        },
        [this, ended, done](std::exception_ptr e) {
            if (e) log::error("the expiry sweep could not end its requests");
            else
                for (const auto& id : *ended) requestEnded(id);
            if (done) done(e ? 0 : static_cast<int>(ended->size()));
        });
}

void OtpService::endedRequests(std::vector<std::string> ids, Reply<std::vector<std::string>> reply) {
    if (ids.size() > 1000) ids.resize(1000);
    auto ended = std::make_shared<std::vector<std::string>>();
    store_.submit(
        [this, ids = std::move(ids), ended](store::Transaction& t) {
            ended->clear();  // work may run again (Store::submit)
            const std::int64_t now = clock_.now();
            for (const auto& id : ids) {
                auto r = t.findRequest(id);
                if (!r || r->effectiveStatus(now) != Status::Pending) ended->push_back(id);
            }
        },
        [ended, reply](std::exception_ptr e) {
            if (e) return reply(Failure{"StoreFailed", {}, "the requests could not be read"});
            reply(std::move(*ended));
        });
}

}  // namespace twofactor::otp
