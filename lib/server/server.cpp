#include "server/server_impl.hpp"

#include "otp/phone.hpp"

#include "build_config.h"
#ifdef HAVE_POSTGRESQL
#include "store/postgres/store.hpp"
#endif
#include "util/crypto.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace twofactor::server {

using json = nlohmann::json;
using asio::local::stream_protocol;

bool Peer::may(Access access) const {
    if (access == Access::Anyone) return true;
    if (roles.count(config::Role::Admin)) return true;
    if (access == Access::Operator) return roles.count(config::Role::Operator) > 0;
    if (access == Access::Dpo) return roles.count(config::Role::Dpo) > 0;
    return false;
}

Peer resolvePeer(const config::Config& config, uid_t uid, gid_t gid, pid_t pid) {
    Peer p;
    p.uid = uid;
    p.gid = gid;
    p.pid = pid;
    std::vector<gid_t> groups{gid};
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) {
        p.user = pw.pw_name;
        int n = 64;
        std::vector<gid_t> list(static_cast<std::size_t>(n));
        if (getgrouplist(pw.pw_name, pw.pw_gid, list.data(), &n) == -1) {
            list.resize(static_cast<std::size_t>(n));
            getgrouplist(pw.pw_name, pw.pw_gid, list.data(), &n);
        }
        list.resize(static_cast<std::size_t>(std::max(n, 0)));
        groups.insert(groups.end(), list.begin(), list.end());
    }
    std::set<std::string> groupNames;
    for (gid_t g : groups) {
        groupNames.insert(std::to_string(g));
        struct group gr {};
        struct group* gfound = nullptr;
        if (getgrgid_r(g, &gr, buf.data(), buf.size(), &gfound) == 0 && gfound) groupNames.insert(gr.gr_name);
    }
    for (const auto& [role, grant] : config.access) {
        bool granted = false;
        for (const auto& u : grant.users)
            if (u == std::to_string(uid) || (!p.user.empty() && u == p.user)) granted = true;
        for (const auto& g : grant.groups)
            if (groupNames.count(g)) granted = true;
        if (granted) p.roles.insert(role);
    }
    return p;
}

std::vector<std::string> declaredMethods() {
    std::vector<std::string> out;
    for (const auto& e : ipc::embeddedInterfaces()) {
        const auto iface = ipc::idl::Interface::parse(e.description);
        for (const auto& m : iface.methodNames()) out.push_back(iface.name() + "." + m);
    }
    return out;
}

namespace detail {

json countsJson(const store::PurgeCounts& c) {
    json out = json::object();
    for (store::PurgeKind k : store::kPurgeKinds) out[store::purgeKindName(k)] = c[k];
    return out;
}

std::string countsText(const store::PurgeCounts& c) {
    std::string out;
    for (store::PurgeKind k : store::kPurgeKinds) {
        if (!out.empty()) out += ", ";
        out += std::string(store::purgeKindName(k)) + " " + std::to_string(c[k]);
    }
    return out;
}

json requestJson(const otp::OtpRequest& r, std::int64_t now) {
    const otp::Destination d{r.destination.find('@') != std::string::npos ? otp::DestinationKind::Email
                                                                          : otp::DestinationKind::Phone,
                             r.destination};
    json j = {
        {"id", r.id},
        {"app", r.app},
        {"channel", r.channel},
        // Retention clears it after delivery_logs: the request is then known by its keyed subject hash only.
        {"destination", r.destination.empty() ? std::string("(cleared)") : otp::maskDestination(d)},
        {"purpose", r.purpose},
        {"locale", r.locale},
        {"status", otp::statusName(r.effectiveStatus(now))},
        {"attempts", r.attempts},
        {"maxAttempts", r.maxAttempts},
        {"sends", r.sends},
        {"maxSends", r.maxSends},
        {"createdAt", r.createdAt},
        {"expiresAt", r.expiresAt},
    };
    if (!r.reference.empty()) j["reference"] = r.reference;
    if (!r.failure.empty()) j["failure"] = r.failure;
    // Only a WhatsApp send carries a fallback address; once WhatsApp failed for
    // good and the code went by email, `channel` says email and `destination`
    // is still the number that was tried first.
    if (!r.fallbackDestination.empty()) {
        j["fallbackDestination"] =
            otp::maskDestination(otp::Destination{otp::DestinationKind::Email, r.fallbackDestination});
        j["fellBack"] = r.channel == "email";
    }
    return j;
}

json sendJson(const otp::SendResult& res, std::int64_t now) {
    return json{{"request", requestJson(res.request, now)}, {"delivery", otp::deliveryStateName(res.delivery)}};
}

json attemptJson(const otp::DeliveryAttempt& a) {
    json j = {{"requestId", a.requestId}, {"app", a.app},         {"channel", a.channel},
              {"driver", a.driver},       {"send", a.send},       {"attempt", a.attempt},
              {"at", a.at},               {"outcome", a.outcome}, {"durationMs", a.durationMs},
              {"ambiguous", a.ambiguous}};
    if (!a.providerMessageId.empty()) j["providerMessageId"] = a.providerMessageId;
    if (a.statusCode != 0) j["statusCode"] = a.statusCode;
    if (!a.errorClass.empty()) j["errorClass"] = a.errorClass;
    if (!a.error.empty()) j["error"] = a.error;
    if (!a.providerStatus.empty()) {
        j["providerStatus"] = a.providerStatus;
        j["providerStatusAt"] = a.providerStatusAt;
    }
    if (!a.providerError.empty()) j["providerError"] = a.providerError;
    return j;
}

json jobJson(const otp::DeliveryJob& j) {
    json out = {{"requestId", j.requestId}, {"send", j.send},           {"attempts", j.attempts},
                {"nextAttemptAt", j.retryAt}, {"expiresAt", j.expiresAt}, {"createdAt", j.createdAt}};
    if (!j.holder.empty()) {
        out["holder"] = j.holder;
        out["leaseUntil"] = j.leaseUntil;
    }
    if (!j.lastError.empty()) out["lastError"] = j.lastError;
    return out;
}

json auditJson(const otp::AuditRecord& r) {
    json j = {{"chain", r.chain},     {"seq", r.seq},           {"time", r.at},    {"event", r.event},
              {"outcome", r.outcome}, {"prevHash", r.prevHash}, {"hash", r.hash}};
    if (!r.app.empty()) j["app"] = r.app;
    if (r.uid >= 0) j["uid"] = r.uid;
    if (!r.requestId.empty()) j["requestId"] = r.requestId;
    if (!r.subject.empty()) j["subject"] = r.subject;
    if (!r.detail.empty()) j["detail"] = r.detail;
    return j;
}

json optOutJson(const otp::OptOut& e) {
    json j = {{"destination", e.destination}, {"createdAt", e.createdAt}, {"source", e.source}};
    if (!e.reason.empty()) j["reason"] = e.reason;
    return j;
}


// ---- Connection ----

Connection::Connection(Server& server, stream_protocol::socket socket, Peer peer)
    : server_(server),
      socket_(std::move(socket)),
      timer_(server.io()),
      peer_(std::move(peer)),
      frames_(server.limits().maxMessageBytes) {}

void Connection::start() {
    armTimer();
    read();
}

void Connection::close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    timer_.cancel();
    socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
    server_.connectionClosed(peer_);
}

void Connection::armTimer() {
    if (closed_) return;
    const auto& limits = server_.limits();
    if (frames_.hasPartial()) {
        // A message must arrive whole within the request timeout, however slowly it trickles.
        if (partialSince_ == std::chrono::steady_clock::time_point{}) partialSince_ = std::chrono::steady_clock::now();
        timer_.expires_at(partialSince_ + limits.requestTimeout);
    } else {
        partialSince_ = {};
        timer_.expires_after(limits.idleTimeout);
    }
    timer_.async_wait([self = shared_from_this()](const error_code& ec) {
        if (ec || self->closed_) return;
        if (self->busy_) {  // a call in progress is not idleness
            self->armTimer();
            return;
        }
        log::debug("closing connection of uid " + std::to_string(self->peer_.uid) + ": timed out");
        self->close();
    });
}

void Connection::read() {
    if (closed_ || reading_ || closeAfterWrite_) return;
    // Back-pressure: a client that pipelines faster than we answer waits, its
    // calls beyond the limit left unread in the socket.
    if (calls_.size() >= static_cast<std::size_t>(server_.limits().maxCallsPerConnection) || frames_.hasMessage() ||
        output_.size() >= 16)
        return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](const error_code& ec,
                                                                               std::size_t n) {
        self->reading_ = false;
        if (self->closed_) return;
        if (ec) {
            self->close();
            return;
        }
        if (self->frames_.feed(self->buffer_.data(), n) == ipc::FrameReader::Status::TooLarge) {
            log::warning("uid " + std::to_string(self->peer_.uid) + " sent a message over " +
                         std::to_string(self->server_.limits().maxMessageBytes) + " bytes; closing");
            self->send(ipc::encodeError(std::string(kDaemonIface) + ".InvalidMessage",
                                        {{"reason", "message exceeds " +
                                                        std::to_string(self->server_.limits().maxMessageBytes) +
                                                        " bytes"}}),
                       true);
            return;
        }
        if (!self->takeCalls()) return;
        self->armTimer();
        self->processNext();
        self->read();
    });
}

bool Connection::takeCalls() {
    const auto limit = static_cast<std::size_t>(server_.limits().maxCallsPerConnection);
    while (calls_.size() < limit) {
        auto text = frames_.next();
        if (!text) break;
        auto parsed = ipc::parseCall(*text, server_.limits().maxDepth);
        if (auto* err = std::get_if<ipc::MessageError>(&parsed)) {
            log::warning("uid " + std::to_string(peer_.uid) + " sent an invalid message (" + err->reason +
                         "); closing");
            send(ipc::encodeError(std::string(kDaemonIface) + ".InvalidMessage", {{"reason", err->reason}}), true);
            return false;
        }
        calls_.push_back(std::move(std::get<ipc::Call>(parsed)));
    }
    return true;
}

void Connection::processNext() {
    if (busy_ || calls_.empty() || closed_ || closeAfterWrite_ || server_.stopping()) return;
    busy_ = true;
    server_.callStarted();
    ipc::Call call = std::move(calls_.front());
    calls_.pop_front();
    const bool oneway = call.oneway;
    auto self = shared_from_this();
    server_.dispatch(self, call, [self, oneway](std::string error, json params) {
        self->finishCall(oneway, std::move(error), std::move(params));
    });
}

void Connection::finishCall(bool oneway, std::string error, json parameters) {
    busy_ = false;
    server_.callFinished();
    if (closed_) return;
    if (!oneway) send(error.empty() ? ipc::encodeReply(parameters) : ipc::encodeError(error, parameters));
    if (!takeCalls()) return;
    processNext();
    read();
}

void Connection::sendContinue(json parameters) {
    if (closed_ || !busy_) return;
    send(ipc::encodeReply(parameters, /*continues=*/true));
}

void Connection::send(std::string data, bool closeAfter) {
    if (closed_) return;
    if (closeAfter) closeAfterWrite_ = true;
    output_.push_back(std::move(data));
    flush();
}

void Connection::flush() {
    if (writing_ || output_.empty() || closed_) return;
    writing_ = true;
    asio::async_write(socket_, asio::buffer(output_.front()),
                      [self = shared_from_this()](const error_code& ec, std::size_t) {
                          self->writing_ = false;
                          if (self->closed_) return;
                          if (ec) {
                              self->close();
                              return;
                          }
                          self->output_.pop_front();
                          if (self->output_.empty() && self->closeAfterWrite_) {
                              self->close();
                              return;
                          }
                          self->flush();
                          self->read();
                      });
}

// ---- Server ----

void CallLog::add(store::CallRecord record) {
    {
        std::lock_guard lock(mutex_);
        if (pending_.size() >= kMaxPending) {
            ++dropped_;
            return;
        }
        pending_.push_back(std::move(record));
        if (queued_) return;
        queued_ = true;
    }
    if (gather_.count() == 0) return submit();
    asio::post(timer_.get_executor(), [this] {
        timer_.expires_after(gather_);
        timer_.async_wait([this](const error_code& e) {
            if (!e) submit();
        });
    });
}

void CallLog::flush(std::function<void()> then) {
    {
        std::lock_guard lock(mutex_);
        if (!queued_ || pending_.empty()) {
            if (then) then();
            return;
        }
    }
    submit(std::move(then));
}

void CallLog::flushAndWait() {
    std::promise<void> written;
    flush([&written] { written.set_value(); });
    written.get_future().wait();
}

void CallLog::submit(std::function<void()> then) {
    store_.submitReserved(
        [this](store::Transaction& t) {
            std::vector<store::CallRecord> rows;
            {
                std::lock_guard lock(mutex_);
                rows.swap(pending_);
                queued_ = false;
            }
            t.insertCalls(rows);
        },
        [then = std::move(then)](std::exception_ptr e) {
            if (e) log::error("calls could not be written to the request log");
            if (then) then();
        });
}

std::uint64_t CallLog::takeDropped() {
    std::lock_guard lock(mutex_);
    return std::exchange(dropped_, 0);
}

// The request log: one row per call, written after the reply has gone out,
// through the store's queue (group commit, see CallLog), so it never delays
// the call. The retention job deletes it after [retention] delivery_logs (90 days).
Respond Server::logged(const ipc::Call& call, std::int64_t uid, Respond respond) {
    if (!callLog_) return respond;
    constexpr std::size_t kMaxMethod = 256;
    return [this, respond = std::move(respond), method = call.method.substr(0, kMaxMethod), uid,
            at = clock_->now(), started = std::chrono::steady_clock::now()](std::string error, json params) {
        store::CallRecord rec;
        rec.at = at;
        rec.method = method;
        rec.uid = uid;
        rec.result = error.empty() ? "ok" : error;
        rec.durationMs =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
        respond(std::move(error), std::move(params));
        callLog_->add(std::move(rec));
    };
}

void Server::dispatch(const std::shared_ptr<Connection>& conn, const ipc::Call& call, Respond respond) {
    const Peer& peer = conn->peer();
    const auto dot = call.method.rfind('.');
    const std::string ifaceName = call.method.substr(0, dot);
    auto entry = methods_.find(call.method);
    // Introspection and WhoAmI may be called by anyone as often as they like
    // and change nothing: no per-call rows. Nor for a peer with no role: every
    // call it can make is one of those, a denial (counted instead) or an
    // unknown method, so what it costs the daemon stays bounded.
    const bool open = entry != methods_.end() && entry->second.access == Access::Anyone;
    if (!open && !peer.roles.empty()) respond = logged(call, peer.uid, std::move(respond));
    if (entry == methods_.end()) {
        if (!interfaces_.count(ifaceName))
            return respond("org.varlink.service.InterfaceNotFound", {{"interface", ifaceName}});
        return respond("org.varlink.service.MethodNotFound", {{"method", call.method}});
    }
    if (!peer.may(entry->second.access)) return refuseDenied(peer, call.method, std::move(respond));
    if (call.upgrade) return respond("org.varlink.service.InvalidParameter", {{"parameter", "upgrade"}});
    const auto& iface = interfaces_.at(ifaceName);
    const auto* method = iface.findMethod(call.method.substr(dot + 1));
    if (auto violation = ipc::idl::validate(iface, method->input, call.parameters)) {
        log::debug("invalid parameter from uid " + std::to_string(peer.uid) + " in " + call.method + ": " +
                   violation->parameter + " " + violation->reason);
        return respond("org.varlink.service.InvalidParameter", {{"parameter", violation->parameter}});
    }
    if (!open && storeSaturated()) return respond(std::string(kDaemonIface) + ".Busy", json::object());
    try {
        if (entry->second.stream) {
            if (entry->second.requiresMore && !call.more)
                return respond("org.varlink.service.ExpectedMore", json::object());
            Progress progress = [this, conn, more = call.more](json params) {
                if (!more) return;
                asio::post(io_, [conn, params = std::move(params)]() mutable { conn->sendContinue(std::move(params)); });
            };
            entry->second.stream(peer, call.parameters, std::move(progress), respond);
            return;
        }
        entry->second.handler(peer, call.parameters, respond);
    } catch (const std::exception& e) {
        log::error(call.method + " failed: " + e.what());
        respond(std::string(kDaemonIface) + ".InternalError", json::object());
    }
}

namespace {
// A bound send's context ([string]string, checked against the IDL before the
// handler runs); its values are never logged.
std::map<std::string, std::string> contextParameter(const json& p) {
    std::map<std::string, std::string> out;
    auto it = p.find("context");
    if (it == p.end() || !it->is_object()) return out;
    for (const auto& [k, v] : it->items())
        if (v.is_string()) out[k] = v.get<std::string>();
    return out;
}
}  // namespace
// A Verify call's outcome as the metrics label it: a closed set.
static const char* verificationOutcome(const otp::Outcome<otp::VerifyResult>& o) {
    if (const auto* f = std::get_if<otp::Failure>(&o)) {
        if (f->error == "NoSuchRequest") return "no_such_request";
        if (f->error == "RateLimited") return "rate_limited";
        return "error";
    }
    const auto& v = std::get<otp::VerifyResult>(o);
    if (v.approved) return "approved";
    switch (v.status) {
    case otp::Status::Pending: return "wrong_code";
    case otp::Status::Approved: return "replayed";
    case otp::Status::Locked: return "locked";
    case otp::Status::Expired: return "expired";
    default: return "not_pending";
    }
}

void Server::buildMethodTable() {
    // org.varlink.service: introspection is open to every peer; it reveals only the API.
    add("org.varlink.service.GetInfo", Access::Anyone, [this](const Peer&, const json&, Respond r) {
        json names = json::array();
        for (const auto& [name, iface] : interfaces_) names.push_back(name);
        r("", {{"vendor", "twofactor"},
               {"product", "twofactord"},
               {"version", TWOFACTOR_VERSION},
               {"url", "https://twofactor.invalid/"},
               {"interfaces", names}});
    });
    add("org.varlink.service.GetInterfaceDescription", Access::Anyone, [this](const Peer&, const json& p, Respond r) {
        const std::string name = p.at("interface").get<std::string>();
        auto it = interfaces_.find(name);
        if (it == interfaces_.end()) return r("org.varlink.service.InterfaceNotFound", {{"interface", name}});
        r("", {{"description", it->second.description()}});
    });

    add("io.twofactor.Daemon.WhoAmI", Access::Anyone, [](const Peer& peer, const json&, Respond r) {
        json roles = json::array();
        for (auto role : peer.roles) roles.push_back(config::roleName(role));
        r("", {{"uid", peer.uid}, {"gid", peer.gid}, {"user", peer.user}, {"roles", roles}});
    });
    add("io.twofactor.Daemon.GetStatus", Access::Admin, [this](const Peer&, const json&, Respond r) {
        json apps = json::array();
        for (const auto& [name, app] : config_.apps) apps.push_back(name);
        json out = {{"version", TWOFACTOR_VERSION},
                    {"uptime", std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                                started_)
                                   .count()},
                    {"apps", apps},
                    {"database", store_->description()},
                    {"connections", connections_}};
        if (outbox_) out["outbox"] = outbox_->directory();
        r("", out);
    });

    add("io.twofactor.Daemon.Apps", Access::Operator, [this](const Peer&, const json&, Respond r) {
        json apps = json::array();
        for (const auto& [name, app] : config_.apps)
            apps.push_back({{"name", name},
                            {"displayName", app.displayName},
                            {"channels", app.channels},
                            {"ttl", app.ttl.count()},
                            {"codeLength", app.codeLength},
                            {"maxAttempts", app.maxAttempts}});
        r("", {{"apps", apps}});
    });

    add("io.twofactor.Daemon.Stats", Access::Operator, [this](const Peer&, const json& p, Respond r) {
        store::ActivityQuery q;
        q.until = opt<std::int64_t>(p, "until").value_or(clock_->now() + 1);
        q.since = opt<std::int64_t>(p, "since").value_or(q.until - 1 - 86400);
        if (q.since >= q.until) return r("org.varlink.service.InvalidParameter", {{"parameter", "since"}});
        auto deliveries = std::make_shared<std::vector<store::ActivityDelivery>>();
        auto events = std::make_shared<std::vector<store::ActivityEvent>>();
        auto feedback = std::make_shared<json>();
        store_->submit(
            [this, q, deliveries, events, feedback](store::Transaction& t) {
                *deliveries = t.recentDeliveries(q);
                *events = t.recentEvents(q);
                // The rates are always the last 24 h and 7 days, whatever the period.
                *feedback = emailFeedbackStats(t, config_, clock_->now());
            },
            [q, deliveries, events, feedback, r = onIo(r)](std::exception_ptr e) {
                if (e) return r(std::string(kDaemonIface) + ".InternalError", json::object());
                json out = metrics::summarizeActivity(q, *deliveries, *events);
                out["emailFeedback"] = std::move(*feedback);
                r("", out);
            });
    });

    add("io.twofactor.Daemon.ClusterStatus", Access::Operator, [this](const Peer&, const json&, Respond r) {
        struct Status {
            std::vector<store::NodeInfo> nodes;
            std::vector<store::Lease> leases;
            std::size_t jobs = 0;
        };
        auto st = std::make_shared<Status>();
        const std::int64_t since = clock_->now() - kNodeForgottenAfter;
        store_->submit(
            [st, since](store::Transaction& t) {
                st->nodes = t.listNodes(since, 1000);
                st->leases = t.listLeases(100);
                st->jobs = t.listDeliveryJobs(kJobsCounted + 1).size();
            },
            [this, st, r = onIo(r)](std::exception_ptr e) {
                if (e) return r(std::string(kDaemonIface) + ".InternalError", json::object());
                json nodes = json::array(), leases = json::array();
                for (const auto& n : st->nodes) {
                    json node = {{"id", n.id},           {"host", n.host},          {"version", n.version},
                                 {"started", n.started}, {"heartbeat", n.heartbeat}};
                    if (n.keyVersion > 0) node["keyVersion"] = n.keyVersion;
                    nodes.push_back(std::move(node));
                }
                for (const auto& l : st->leases)
                    leases.push_back({{"name", l.name}, {"holder", l.holder}, {"slot", l.slot}, {"expires", l.expiresAt}});
                r("", {{"backend", config_.store.backend},
                       {"self", service_->deliveryHolder()},
                       {"nodes", nodes},
                       {"leases", leases},
                       {"queuedJobs", std::min<std::size_t>(st->jobs, kJobsCounted)},
                       {"queuedJobsCapped", st->jobs > kJobsCounted}});
            });
    });

    add("io.twofactor.Daemon.RequestLog", Access::Admin, [this](const Peer&, const json& p, Respond r) {
        store::CallQuery q;
        q.since = opt<std::int64_t>(p, "since");
        q.until = opt<std::int64_t>(p, "until");
        const std::int64_t limit = opt<std::int64_t>(p, "limit").value_or(1000);
        if (limit < 1 || limit > 100000)
            return r("org.varlink.service.InvalidParameter", {{"parameter", "limit"}});
        q.limit = static_cast<int>(limit);
        auto list = std::make_shared<std::vector<store::CallRecord>>();
        auto read = [this, list, q, r] {
            store_->submit([list, q](store::Transaction& t) { *list = t.findCalls(q); },
                           [list, r = onIo(r)](std::exception_ptr e) {
                               if (e) return r(std::string(kDaemonIface) + ".InternalError", json::object());
                               json entries = json::array();
                               for (const auto& c : *list) {
                                   json e = {{"time", c.at},
                                             {"method", c.method},
                                             {"durationMs", c.durationMs},
                                             {"result", c.result},
                                             {"uid", c.uid}};
                                   if (!c.keyId.empty()) e["keyId"] = c.keyId;
                                   if (!c.clientIp.empty()) e["clientIp"] = c.clientIp;
                                   if (c.status != 0) e["status"] = c.status;
                                   entries.push_back(std::move(e));
                               }
                               r("", {{"entries", entries}});
                           });
        };
        // Calls answered before this one are in the log it reads.
        if (callLog_) return callLog_->flush(std::move(read));
        read();
    });

    add("io.twofactor.Otp.Send", Access::Operator, [this](const Peer& peer, const json& p, Respond r) {
        otp::SendInput in;
        in.app = p.at("app").get<std::string>();
        in.destination = p.at("destination").get<std::string>();
        in.channel = opt<std::string>(p, "channel");
        in.purpose = opt<std::string>(p, "purpose");
        in.locale = opt<std::string>(p, "locale");
        in.clientIp = opt<std::string>(p, "clientIp");
        in.device = opt<std::string>(p, "device");
        in.reference = opt<std::string>(p, "reference");
        in.ttl = opt<std::int64_t>(p, "ttl");
        in.length = opt<std::int64_t>(p, "length");
        in.wait = opt<bool>(p, "wait").value_or(true);
        in.fallbackEmail = opt<std::string>(p, "fallbackEmail");
        in.context = contextParameter(p);
        in.caller.uid = peer.uid;
        const uid_t uid = peer.uid;
        const auto idem = opt<std::string>(p, "idempotencyKey");
        const auto send = [this, uid](otp::SendInput input, Respond respond) {
            service_->send(std::move(input), [this, r = onIo(respond), uid](otp::Outcome<otp::SendResult> o) {
                if (auto* res = std::get_if<otp::SendResult>(&o))
                    log::write(log::Level::Info,
                               "uid " + std::to_string(uid) + " sent request " + res->request.id + " (" +
                                   res->request.app + ", " + res->request.channel + ", " + res->request.purpose +
                                   "): " + otp::deliveryStateName(res->delivery),
                               {log::Event::None, res->request.id, res->request.app});
                if (std::holds_alternative<otp::SendResult>(o)) metrics_.send();
                countRefusal(o);
                answer(r, o, [this](const otp::SendResult& res) { return sendJson(res); });
            });
        };
        if (!idem) return send(std::move(in), std::move(r));
        if (idem->empty() || idem->size() > 255)
            return r("org.varlink.service.InvalidParameter", {{"parameter", "idempotencyKey"}});
        // The same records as the HTTPS API's Idempotency-Key, under the caller's uid.
        json rest = p;
        rest.erase("idempotencyKey");
        const std::string keyId = "uid:" + std::to_string(uid);
        const std::string bodyHash = crypto::hex(crypto::sha256("io.twofactor.Otp.Send\n" + rest.dump()));
        auto input = std::make_shared<otp::SendInput>(std::move(in));
        claimIdempotency(keyId, *idem, bodyHash, clock_->now(),
                         [this, keyId, key = *idem, input, send, r](IdempotencyClaim claim,
                                                                    const store::IdempotencyRecord& first) {
            switch (claim) {
                case IdempotencyClaim::StoreFailed: return r(std::string(kOtp) + ".StoreFailed", json::object());
                case IdempotencyClaim::Reused:
                    return r(std::string(kOtp) + ".IdempotencyKeyReused", {{"idempotencyKey", key}});
                case IdempotencyClaim::InUse:
                    return r(std::string(kOtp) + ".IdempotencyKeyInUse", {{"idempotencyKey", key}});
                case IdempotencyClaim::Replay: {
                    const json answer = json::parse(first.response, nullptr, false);
                    if (answer.is_object())
                        return r(answer.value("error", std::string()), answer.value("parameters", json::object()));
                    return r(std::string(kOtp) + ".IdempotencyKeyInUse", {{"idempotencyKey", key}});
                }
                case IdempotencyClaim::Fresh: break;
            }
            send(std::move(*input), [this, r, keyId, key](std::string error, json params) {
                // As over HTTPS (a 429 or 5xx there): an answer another try could
                // change frees the key.
                static constexpr std::string_view kRetryable[] = {"RateLimited", "StoreFailed", "StoreUnavailable",
                                                                  "Busy", "InternalError", "DeliveryFailed"};
                const bool keep = std::none_of(std::begin(kRetryable), std::end(kRetryable), [&](std::string_view n) {
                    return error.find(n) != std::string::npos;
                });
                finishIdempotency(keyId, key, keep, 200, json{{"error", error}, {"parameters", params}}.dump());
                r(std::move(error), std::move(params));
            });
        });
    });
    add("io.twofactor.Otp.Verify", Access::Operator, [this](const Peer& peer, const json& p, Respond r) {
        otp::VerifyInput in;
        in.id = opt<std::string>(p, "id");
        in.app = opt<std::string>(p, "app");
        in.destination = opt<std::string>(p, "destination");
        in.code = SecretString(p.at("code").get<std::string>());
        in.context = contextParameter(p);
        in.caller.uid = peer.uid;
        const uid_t uid = peer.uid;
        service_->verify(std::move(in), [this, r = onIo(r), uid](otp::Outcome<otp::VerifyResult> o) {
            if (auto* v = std::get_if<otp::VerifyResult>(&o); v && v->request)
                // Authentication log: outcome only, never the code.
                log::write(log::Level::Info,
                           "verify " + v->request->id + " by uid " + std::to_string(uid) + ": " +
                               (v->approved ? "success" : "failure") + " (" + otp::statusName(v->status) + ")",
                           {log::Event::None, v->request->id, v->request->app});
            metrics_.verification(verificationOutcome(o));
            countRefusal(o);
            answer(r, o, [this](const otp::VerifyResult& v) {
                json out = {{"approved", v.approved}, {"status", otp::statusName(v.status)}};
                if (v.request) out["request"] = requestJson(*v.request, clock_->now());
                return out;
            });
        });
    });
    auto requestReply = [this](Respond r) {
        return [this, r = onIo(r)](otp::Outcome<otp::OtpRequest> o) {
            answer(r, o, [this](const otp::OtpRequest& req) { return json{{"request", requestJson(req, clock_->now())}}; });
        };
    };
    add("io.twofactor.Otp.Status", Access::Operator, [this, requestReply](const Peer&, const json& p, Respond r) {
        service_->status(p.at("id").get<std::string>(), requestReply(r));
    });
    add("io.twofactor.Otp.Cancel", Access::Operator, [this, requestReply](const Peer& peer, const json& p, Respond r) {
        service_->cancel(p.at("id").get<std::string>(), requestReply(r), peer.uid);
    });
    add("io.twofactor.Otp.Resend", Access::Operator, [this](const Peer& peer, const json& p, Respond r) {
        service_->resend(
            p.at("id").get<std::string>(),
            [this, r = onIo(r)](otp::Outcome<otp::SendResult> o) {
                if (std::holds_alternative<otp::SendResult>(o)) metrics_.send();
                countRefusal(o);
                answer(r, o, [this](const otp::SendResult& res) { return sendJson(res); });
            },
            peer.uid, contextParameter(p));
    });
    add("io.twofactor.Otp.Deliveries", Access::Operator, [this](const Peer&, const json& p, Respond r) {
        otp::DeliveryQuery q;
        q.requestId = opt<std::string>(p, "id");
        q.since = opt<std::int64_t>(p, "since");
        q.until = opt<std::int64_t>(p, "until");
        q.limit = static_cast<int>(std::clamp<std::int64_t>(opt<std::int64_t>(p, "limit").value_or(100), -1, 100000));
        // With the jobs still queued, so that a send waiting for its retry (or
        // for a takeover after a restart) shows up before it has a log entry.
        // A time range asks for the log only.
        const bool withJobs = !q.since && !q.until;
        const auto id = q.requestId;
        const int limit = q.limit;
        service_->deliveries(std::move(q), [this, r = onIo(r), withJobs, id, limit](
                                               otp::Outcome<std::vector<otp::DeliveryAttempt>> o) {
            auto* list = std::get_if<std::vector<otp::DeliveryAttempt>>(&o);
            if (!list) return answer(r, o, [](const auto&) { return json::object(); });
            json attempts = json::array();
            for (const auto& a : *list) attempts.push_back(attemptJson(a));
            if (!withJobs) return r("", json{{"attempts", attempts}, {"jobs", json::array()}});
            service_->deliveryJobs(id, std::max(limit, 1), [this, r, attempts](otp::Outcome<std::vector<otp::DeliveryJob>> j) {
                answer(r, j, [&attempts](const std::vector<otp::DeliveryJob>& jobs) {
                    json out = json::array();
                    for (const auto& job : jobs) out.push_back(jobJson(job));
                    return json{{"attempts", attempts}, {"jobs", out}};
                });
            });
        });
    });

    add("io.twofactor.OptOut.Add", Access::Admin, [this](const Peer& peer, const json& p, Respond r) {
        const uid_t uid = peer.uid;
        service_->optOutAdd(p.at("destination").get<std::string>(), opt<std::string>(p, "reason").value_or(""), "cli",
                            [this, r = onIo(r), uid](otp::Outcome<otp::OptOut> o) {
                                if (std::holds_alternative<otp::OptOut>(o))
                                    log::info("uid " + std::to_string(uid) + " added a number to the opt-out list");
                                answer(r, o, [](const otp::OptOut& e) { return json{{"entry", optOutJson(e)}}; });
                            },
                            peer.uid);
    });
    add("io.twofactor.OptOut.Remove", Access::Admin, [this](const Peer& peer, const json& p, Respond r) {
        const uid_t uid = peer.uid;
        service_->optOutRemove(p.at("destination").get<std::string>(), [this, r = onIo(r), uid](otp::Outcome<bool> o) {
            if (auto* removed = std::get_if<bool>(&o); removed && *removed)
                log::info("uid " + std::to_string(uid) + " removed a number from the opt-out list");
            answer(r, o, [](bool removed) { return json{{"removed", removed}}; });
        }, peer.uid);
    });
    add("io.twofactor.OptOut.List", Access::Admin, [this](const Peer&, const json& p, Respond r) {
        const int limit = static_cast<int>(std::clamp<std::int64_t>(opt<std::int64_t>(p, "limit").value_or(1000), -1, 1000000));
        service_->optOutList(limit, [this, r = onIo(r)](otp::Outcome<std::vector<otp::OptOut>> o) {
            answer(r, o, [](const std::vector<otp::OptOut>& list) {
                json entries = json::array();
                for (const auto& e : list) entries.push_back(optOutJson(e));
                return json{{"entries", entries}};
            });
        });
    });

    // The audit log: personal-data officers and admins read it; only admins verify the chain.
    auto auditReply = [this](Respond r) {
        return [this, r = onIo(r)](otp::Outcome<std::vector<otp::AuditRecord>> o) {
            answer(r, o, [](const std::vector<otp::AuditRecord>& list) {
                json records = json::array();
                for (const auto& rec : list) records.push_back(auditJson(rec));
                return json{{"records", records}};
            });
        };
    };
    add("io.twofactor.Audit.List", Access::Dpo, [this, auditReply](const Peer&, const json& p, Respond r) {
        otp::AuditQuery q;
        q.since = opt<std::int64_t>(p, "since");
        q.until = opt<std::int64_t>(p, "until");
        q.app = opt<std::string>(p, "app");
        q.outcome = opt<std::string>(p, "outcome");
        q.newest = true;
        q.limit = static_cast<int>(std::clamp<std::int64_t>(opt<std::int64_t>(p, "limit").value_or(1000), -1, 1000000));
        service_->auditList(std::move(q), auditReply(r));
    });
    add("io.twofactor.Audit.Export", Access::Dpo, [this, auditReply](const Peer& peer, const json& p, Respond r) {
        otp::AuditQuery q;
        q.since = opt<std::int64_t>(p, "from");
        q.until = opt<std::int64_t>(p, "to");
        q.limit = 100000;
        log::info("uid " + std::to_string(peer.uid) + " exported the audit log");
        service_->auditList(std::move(q), auditReply(r));
    });
    add("io.twofactor.Audit.Verify", Access::Admin, [this](const Peer&, const json& p, Respond r) {
        std::vector<otp::AuditCheckpoint> checkpoint;
        if (const auto it = p.find("checkpoint"); it != p.end() && !it->is_null()) {
            for (const auto& h : *it) {
                const std::int64_t chain = h.value("chain", std::int64_t{0});
                for (const auto& c : checkpoint)
                    if (c.chain == chain)
                        return r("org.varlink.service.InvalidParameter", {{"parameter", "checkpoint"}});
                checkpoint.push_back(otp::AuditCheckpoint{h.at("seq").get<std::int64_t>(), h.at("hash").get<std::string>(),
                                                          h.at("time").get<std::int64_t>(), chain});
            }
        }
        service_->auditVerify([this, r = onIo(r)](otp::Outcome<otp::AuditVerification> o) {
            answer(r, o, [](const otp::AuditVerification& v) {
                json out = {{"ok", v.ok},           {"records", v.records},          {"erased", v.erased},
                            {"firstSeq", v.prunedBefore}, {"lastSeq", v.lastSeq}, {"anchorSealed", v.anchorSealed}};
                if (v.firstBroken) {
                    out["firstBroken"] = *v.firstBroken;
                    out["brokenChain"] = v.brokenChain;
                }
                if (!v.reason.empty()) out["reason"] = v.reason;
                json chains = json::array();
                for (const auto& c : v.chains)
                    chains.push_back({{"chain", c.chain}, {"records", c.records}, {"firstSeq", c.firstSeq},
                                      {"lastSeq", c.lastSeq}});
                out["chains"] = chains;
                switch (v.checkpoint) {
                    case otp::CheckpointMatch::None: break;
                    case otp::CheckpointMatch::Matched: out["checkpoint"] = "matched"; break;
                    case otp::CheckpointMatch::Pruned: out["checkpoint"] = "pruned"; break;
                    case otp::CheckpointMatch::Failed: out["checkpoint"] = "failed"; break;
                }
                return out;
            });
        }, std::move(checkpoint));
    });
    add("io.twofactor.Audit.Checkpoint", Access::Dpo, [this](const Peer&, const json&, Respond r) {
        service_->auditHeads([this, r = onIo(r)](otp::Outcome<std::vector<otp::AuditCheckpoint>> o) {
            answer(r, o, [](const std::vector<otp::AuditCheckpoint>& heads) {
                json list = json::array();
                for (const auto& c : heads)
                    list.push_back({{"chain", c.chain}, {"seq", c.seq}, {"hash", c.hash}, {"time", c.at}});
                return json{{"heads", list}};
            });
        });
    });

    addPrivacyMethods();
    addBreachMethods();
    addSuppressionMethods();
    addMaintenanceMethods();
    addApiKeyMethods();
    addEventMethods();

    // The table and the interface files must agree, in both directions.
    const auto declared = declaredMethods();
    for (const auto& name : declared)
        if (!methods_.count(name)) throw std::logic_error("method declared in IDL but not implemented: " + name);
    for (const auto& [name, entry] : methods_)
        if (std::find(declared.begin(), declared.end(), name) == declared.end())
            throw std::logic_error("method implemented but not declared in IDL: " + name);
}

void Server::scheduleRetention() {
    auto parsed = privacy::CronSchedule::parse(config_.retention.schedule);
    if (auto* e = std::get_if<privacy::CronError>(&parsed))
        throw std::runtime_error("retention.schedule: " + e->message);  // the config check rejects these
    schedule_.emplace(std::get<privacy::CronSchedule>(parsed));
    nextRetention_ = schedule_->next(clock_->now()).value_or(0);
    retentionTimer_ = std::make_unique<asio::steady_timer>(io_);
    log::info("retention purges scheduled \"" + schedule_->text() + "\" (UTC), next at " +
              (nextRetention_ != 0 ? log::timestamp(nextRetention_) : std::string("never")));
    retentionTick();
}

void Server::retentionTick() {
    const std::int64_t now = clock_->now();
    if (nextRetention_ != 0 && now >= nextRetention_) {
        // Every node of a cluster has the schedule; the lease row for this
        // scheduled time lets exactly one of them run it.
        const std::int64_t slot = nextRetention_;
        auto took = std::make_shared<bool>(false);
        store_->submit(
            [took, slot, now, holder = service_->deliveryHolder()](store::Transaction& t) {
                *took = t.takeLease("retention", slot, holder, now, now + kRetentionLeaseSeconds);
            },
            [this, took, slot](std::exception_ptr e) {
                asio::post(io_, [this, took, slot, e] {
                    if (e) return log::warning("scheduled retention purge skipped: its lease could not be taken");
                    if (!*took) return log::info("scheduled retention purge of " + log::timestamp(slot) +
                                                 " runs on another node");
                    if (!startRetention("schedule", false, {}))
                        log::warning("scheduled retention purge skipped: a purge is still running");
                });
            });
        nextRetention_ = schedule_->next(now).value_or(0);
    }
    retentionTimer_->expires_after(retentionTick_);
    retentionTimer_->async_wait([this](const error_code& ec) {
        if (ec || stopping_) return;
        retentionTick();
    });
}

// Runs on the delivery pool: each batch waits for the writer, and the I/O
// thread must stay free. `done` runs on that pool thread.
bool Server::startRetention(std::string trigger, bool dryRun, RetentionDone done,
                            std::function<void(const store::PurgeCounts&)> progress) {
    if (retentionRunning_.exchange(true)) return false;
    asio::post(deliveryPool_, [this, trigger = std::move(trigger), dryRun, done = std::move(done),
                               progress = std::move(progress)] {
        store::RetentionRun run;
        run.trigger = trigger;
        run.started = clock_->now();
        std::exception_ptr error;
        try {
            store::RetentionPolicy policy;
            policy.codeHashes = config_.retention.codeHashes;
            policy.deliveryLogs = config_.retention.deliveryLogs;
            policy.authMetadata = config_.retention.authenticationMetadata;
            policy.removedApps = config_.retention.removedApps;
            service_->sealRetention(policy);
            // The calls answered so far are in the request log it purges and counts.
            if (callLog_) callLog_->flushAndWait();
            run.counts = store::purge(*store_, run.started, policy, config_.retention.batchSize, dryRun, progress);
            run.finished = clock_->now();
            if (!dryRun) store::runSync(*store_, [&](store::Transaction& t) { t.insertRetentionRun(run); });
            log::info(std::string(dryRun ? "retention dry run" : "retention purge") + " (" + run.trigger +
                      "): " + countsText(run.counts));
            if (!dryRun) sweepOutbox();
        } catch (const std::exception& e) {
            error = std::current_exception();
            log::error(std::string("retention purge failed: ") + e.what());
        }
        retentionRunning_ = false;
        if (done) done(error, run);
    });
    return true;
}

void Server::openStore() {
    files::ensureDirectory(config_.stateDir, 0700);
    checkStateDirectory();
    lockStateDirectory();
    // Copies of an interrupted backup (a crash while it ran) are not left behind.
    removeBackupLeftovers(config_.stateDir);
    SecretBytes pepper = store::loadKey("code-pepper", config_.pepperFile, config_.generateKeys);
    {
        // API key secrets get a key of their own, so neither hash says anything about the other.
        const auto derived = crypto::hmacSha256(pepper, "twofactor api key hash v1");
        apiKeyHashKey_ = SecretBytes(derived.data(), derived.size());
    }
    if (config_.store.backend == "postgresql") {
        openPostgresStore();
    } else {
        SecretBytes storeKey = store::loadKey("store-key", config_.storeKeyFile, config_.generateKeys);
        if (!store::keyFromCredential("store-key")) {
            // A key rotation that a crash interrupted left <keyFile>.new: keep whichever key opens the database.
            const std::string pending = store::pendingKeyFile(config_.storeKeyFile);
            switch (store::recoverPendingKey(config_.storeKeyFile, storeKey, [this](const SecretBytes& key) {
                return !files::exists(config_.databasePath) || store::keyOpensDatabase(config_.databasePath, key);
            })) {
                case store::PendingKeyRecovery::None: break;
                case store::PendingKeyRecovery::Discarded:
                    log::warning("removed " + pending + " left by an interrupted key rotation: the database still opens " +
                                 "with " + config_.storeKeyFile);
                    break;
                case store::PendingKeyRecovery::Completed:
                    log::warning("completed an interrupted key rotation: the database opens with the key of " + pending +
                                 ", which now replaces " + config_.storeKeyFile);
                    break;
                case store::PendingKeyRecovery::Unresolved:
                    throw std::runtime_error("cannot open database " + config_.databasePath + ": neither " +
                                             config_.storeKeyFile + " nor " + pending +
                                             " (left by an interrupted key rotation) opens it; both are kept");
            }
        }
        store::SqlcipherOptions so;
        so.path = config_.databasePath;
        so.key = std::move(storeKey);
        so.synchronousFull = config_.synchronousFull;
        so.cacheMiB = config_.store.cacheMiB;
        store_ = store::openSqlcipherStore(std::move(so));
    }
    // PostgreSQL runs work items side by side: a transaction per call would
    // cost a pair two commits and eight round trips more (bench/README).
    callLog_ = std::make_unique<CallLog>(*store_, io_,
                                         std::chrono::milliseconds(config_.store.backend == "postgresql" ? 50 : 0));

    std::map<std::string, channel::Channel*> channels;
    for (const auto& [channelName, driver] : config_.drivers) {
        if (driver == "outbox") {
            if (!outbox_) outbox_ = std::make_unique<channel::OutboxChannel>(config_.outboxDir);
            channels[channelName] = outbox_.get();
            continue;
        }
        auto& owned = drivers_[driver];
        if (!owned) {
            if (driver == "ses") owned = std::make_unique<channel::SesChannel>(config_);
            else if (driver == "smtp") owned = std::make_unique<channel::SmtpChannel>(config_);
            else if (driver == "whatsapp") owned = std::make_unique<channel::WhatsappChannel>(config_);
            else throw std::runtime_error("unknown delivery driver '" + driver + "' for channel " + channelName);
        }
        channels[channelName] = owned.get();
    }
    // Phone numbers arrive where a channel other than email takes them:
    // libphonenumber's module must be there (it is loaded on the first one).
    if (std::any_of(channels.begin(), channels.end(), [](const auto& c) { return c.first != "email"; }))
        otp::phone::checkInstalled();
    service_ = std::make_unique<otp::OtpService>(
        config_, *store_, channels, *clock_, std::move(pepper),
        [this](std::function<void()> job) { asio::post(deliveryPool_, std::move(job)); },
        [this](std::chrono::milliseconds delay, std::function<void()> job) {
            // Timers live on the I/O thread; the job itself runs on the delivery pool.
            asio::post(io_, [this, delay, job = std::move(job)]() mutable {
                auto timer = std::make_shared<asio::steady_timer>(io_, delay);
                timer->async_wait([this, timer, job = std::move(job)](const error_code& ec) mutable {
                    if (!ec) asio::post(deliveryPool_, std::move(job));
                });
            });
        });
    subjects_ = std::make_unique<privacy::SubjectService>(config_, *service_);
    if (outbox_)
        service_->onRequestEnded([dir = config_.outboxDir, cur = !config_.outboxKeepUntilPickup](const std::string& id) {
            if (const auto n = channel::OutboxChannel::removeRequests(dir, {id}, cur))
                log::debug("request " + id + " ended; " + std::to_string(n) + " outbox message(s) removed");
        });
}

// The cluster's store: the connection string from the store-dsn credential
// or [store] dsn_file (never argv or the environment); the store key, which
// every node shares, seals the personal columns. A key rotation reseals
// them (the older keys kept in <keyFile>.previous); backups are PostgreSQL's
// own (twofactord(8)).
void Server::openPostgresStore() {
#ifdef HAVE_POSTGRESQL
    const std::string& keyFile = config_.storeKeyFile;
    const bool fromCredential = store::keyFromCredential("store-key");
    // withPending: the key of <keyFile>.new as the store key, the key file's among the older ones.
    const auto options = [&](bool withPending) {
        store::PostgresOptions po;
        po.dsn = store::loadDsn("store-dsn", config_.store.dsnFile);
        SecretBytes current = store::loadKey("store-key", keyFile, config_.generateKeys);
        // Keys before a rotation still open what was sealed under them.
        if (!fromCredential) po.previousKeys = store::loadPreviousKeys(keyFile);
        if (withPending) {
            po.previousKeys.insert(po.previousKeys.begin(), std::move(current));
            po.key = store::loadKey("store-key", store::pendingKeyFile(keyFile), false);
        } else {
            po.key = std::move(current);
        }
        po.connections = config_.store.connections;
        po.prepare = config_.store.preparedStatements;
        po.node = store::nodeName(config_.stateDir);
        return po;
    };
    // A key rotation that stopped after its reseal began left <keyFile>.new:
    // the database knows that key (a version of seal_keys) and values are
    // sealed under it, so it becomes the key, the old one kept in .previous.
    // A key the database does not know never sealed anything: it goes.
    const std::string pending = store::pendingKeyFile(keyFile);
    if (!fromCredential && files::exists(pending)) {
        try {
            store_ = store::openPostgresStore(options(true));
            store::keepPreviousKey(keyFile, store::loadKey("store-key", keyFile, false));
            store::commitPendingKey(keyFile);
            log::warning("completed an interrupted key rotation: the database knows the key of " + pending +
                         ", which now replaces " + keyFile + " (the old key is kept in " +
                         store::previousKeysFile(keyFile) + "); copy both files to the other nodes");
        } catch (const store::UnknownStoreKey&) {
            store::discardPendingKey(keyFile);
            log::warning("removed " + pending + " left by a key rotation that never registered its key: the "
                         "database still opens with " + keyFile);
        }
    }
    if (!store_) store_ = store::openPostgresStore(options(false));
    for (const auto& [channelName, driver] : config_.drivers)
        if (driver == "outbox")
            log::warning("channel " + channelName + " uses the outbox driver, which is node-local: with backend = "
                         "\"postgresql\" its messages are written only on the node that delivers them");
    log::info("store: " + store_->description());
#else
    throw std::runtime_error("backend = \"postgresql\": this twofactord was built without libpq");
#endif
}

// Registers this node and moves its heartbeat: reserved work (one row,
// bounded by the timer), so a full queue never makes a live node look dead.
// The first registers the node before it listens, so that `cluster status`
// lists a node as soon as it answers.
void Server::heartbeatTick(bool first) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "localhost");
    store::NodeInfo node{service_->deliveryHolder(), host, TWOFACTOR_VERSION, startedAt_, clock_->now(),
                         store_->keyVersion()};
    if (first) {
        try {
            store::runSync(*store_, [&node](store::Transaction& t) { t.heartbeatNode(node); }, true);
        } catch (const std::exception& e) {
            log::warning(std::string("the node's heartbeat could not be recorded: ") + e.what());
        }
    } else {
        store_->submitReserved([node](store::Transaction& t) { t.heartbeatNode(node); },
                               [](std::exception_ptr e) {
                                   if (e) log::warning("the node's heartbeat could not be recorded");
                               });
    }
    heartbeatTimer_->expires_after(std::chrono::seconds(kHeartbeatSeconds));
    heartbeatTimer_->async_wait([this](const error_code& ec) {
        if (ec || stopping_) return;
        heartbeatTick();
    });
}

void Server::deliverySweepTick() {
    service_->sweepDeliveries(kSweepBatch, [](int claimed) {
        if (claimed > 0) log::info("delivery sweep claimed " + std::to_string(claimed) + " job(s)");
    });
    if (++ticksSinceOutboxSweep_ >= kOutboxSweepTicks) {
        ticksSinceOutboxSweep_ = 0;
        sweepOutbox();
    }
    deliveryTimer_->expires_after(deliverySweepTick_);
    deliveryTimer_->async_wait([this](const error_code& ec) {
        if (ec || stopping_) return;
        deliverySweepTick();
    });
}

// Messages of requests that ended without this daemon seeing it (an expiry,
// a crash before the removal): their code is useless, their address is not.
void Server::sweepOutbox() {
    if (!outbox_) return;
    asio::post(deliveryPool_, [this] {
        const bool cur = !config_.outboxKeepUntilPickup;
        auto ids = channel::OutboxChannel::requestIds(config_.outboxDir, cur, 1000);
        if (ids.empty()) return;
        service_->endedRequests(std::move(ids), [this, cur](otp::Outcome<std::vector<std::string>> o) {
            auto* ended = std::get_if<std::vector<std::string>>(&o);
            if (!ended || ended->empty()) return;
            asio::post(deliveryPool_, [this, cur, ended = std::move(*ended)] {
                const auto n = channel::OutboxChannel::removeRequests(config_.outboxDir, ended, cur);
                if (n) log::info("removed " + std::to_string(n) + " outbox message(s) of requests that ended");
            });
        });
    });
}

// The daemon's start, with the configuration it loaded, is the first thing in
// the audit log of each run. A store that cannot take it does not serve.
void Server::recordStart() {
    // Apps that left the configuration: their data goes [retention] removed_apps later.
    std::vector<std::string> apps;
    for (const auto& [name, app] : config_.apps) apps.push_back(name);
    const auto removed =
        store::runSync(*store_, [&](store::Transaction& t) { return t.syncApps(apps, clock_->now()); });
    for (const auto& name : removed)
        log::info("app '" + name + "' is no longer configured; its data will be purged " +
                  std::to_string(config_.retention.removedApps / 86400) + " days from now");

    if (const auto adopted = service_->sealLegacyAuditAnchor())
        log::warning("the audit log's anchor, left by a retention cut before anchors were sealed, is now sealed as "
                     "found (audit record " + std::to_string(adopted->seq) + ")");

    otp::AuditRecord rec;
    rec.event = "config-load";
    rec.outcome = "success";
    rec.detail = std::string("twofactord " TWOFACTOR_VERSION ", ") + std::to_string(config_.apps.size()) + " app(s), " +
                 (config_.embedded ? "embedded default" : "config " + config_.sourcePath);
    std::promise<otp::Outcome<otp::AuditRecord>> done;
    auto written = done.get_future();
    service_->audit(std::move(rec), [&done](otp::Outcome<otp::AuditRecord> o) { done.set_value(std::move(o)); });
    if (auto o = written.get(); auto* f = std::get_if<otp::Failure>(&o))
        throw std::runtime_error("cannot write the audit log: " + f->message);
}

void Server::startWebhook() {
    if (!config_.webhook.enabled) return;
    webhook::Handlers handlers;
    handlers.onStatus = [this](const webhook::StatusUpdate& u) {
        otp::ProviderStatus st;
        st.providerMessageId = u.messageId;
        st.status = u.status;
        st.at = u.timestamp != 0 ? u.timestamp : clock_->now();
        for (const auto& [code, title] : u.errors)
            st.error += (st.error.empty() ? "" : "; ") + ("(#" + std::to_string(code) + ") " + title);
        service_->providerStatus(std::move(st));
    };
    handlers.onInbound = [this](const webhook::InboundText& m) {
        switch (webhook::classifyOptText(m.body)) {
            case webhook::OptCommand::Stop:
                // One reason for every stop word and spelling ("stop", "Arrêt "), so the list reads alike.
                service_->optOutAdd(m.from, "replied STOP", "webhook",
                                    [](otp::Outcome<otp::OptOut> o) {
                                        if (std::holds_alternative<otp::OptOut>(o))
                                            log::info("a WhatsApp recipient opted out (STOP)");
                                        else
                                            log::warning("a STOP from WhatsApp could not be recorded: " +
                                                         std::get<otp::Failure>(o).message);
                                    });
                break;
            case webhook::OptCommand::Start:
                service_->optOutRemove(m.from, [](otp::Outcome<bool> o) {
                    if (auto* removed = std::get_if<bool>(&o); removed && *removed)
                        log::info("a WhatsApp recipient opted back in (START)");
                });
                break;
            case webhook::OptCommand::None:
                log::debug("inbound WhatsApp message ignored (not STOP or START)");
                break;
        }
    };
    webhook_ = std::make_unique<webhook::WebhookServer>(config_.webhook, std::move(handlers));
    if (config_.ses.notifications.enabled) {
        webhook::sns::Handlers sns;
        sns.onFeedback = [this](const webhook::sns::SesNotification& n, std::function<void(bool)> done) {
            otp::EmailFeedbackReport report;
            report.kind = n.kind == webhook::sns::SesNotification::Kind::Complaint ? store::EmailFeedback::Complaint
                                                                                   : store::EmailFeedback::Bounce;
            report.recipients = n.recipients;
            report.messageId = n.messageId;
            report.detail = n.detail;
            service_->emailFeedback(std::move(report), std::move(done));
        };
        sns.execute = [this](std::function<void()> work) { asio::post(deliveryPool_, std::move(work)); };
        sns.now = [this] { return clock_->now(); };
        sns_ = std::make_unique<webhook::sns::Endpoint>(config_.ses.notifications, config_.tls, std::move(sns));
        webhook_->mount([sns = sns_.get()](http::Router& router) { sns->addRoutes(router); });
        log::info("SNS: SES notifications of " + std::to_string(config_.ses.notifications.topicArns.size()) +
                  " topic(s) at " + config_.ses.notifications.path + " on the webhook listener");
    }
    webhook_->start();  // logs where it listens
}

void Server::listen() {
#ifdef HAVE_SYSTEMD
    if (sd_listen_fds(1) == 1) {
        acceptor_.assign(stream_protocol(), SD_LISTEN_FDS_START);
        log::info("listening on the socket systemd passed");
        return;
    }
#endif
    const std::string& path = config_.socketPath;
    if (path.size() >= sizeof(sockaddr_un::sun_path)) throw std::runtime_error("socket path too long: " + path);
    // The daemon's umask (0077) would make a new directory 0700: other users
    // with a role must reach the socket in it.
    const std::string dir = files::dirName(path);
    const bool created = !files::exists(dir);
    files::ensureDirectory(dir, 0755);
    if (created) ::chmod(dir.c_str(), 0755);
    files::checkPrivateDirectory(dir);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
        // A live daemon answers; a stale socket from a crash does not and is replaced.
        stream_protocol::socket probe(io_);
        error_code ec;
        probe.connect(stream_protocol::endpoint(path), ec);
        if (!ec) throw std::runtime_error("another twofactord is already listening on " + path);
        ::unlink(path.c_str());
    }
    acceptor_.open(stream_protocol());
    acceptor_.bind(stream_protocol::endpoint(path));
    // Everyone may connect; what a peer may do is decided per call from SO_PEERCRED.
    ::chmod(path.c_str(), 0666);
    acceptor_.listen(128);
    ownsSocketPath_ = true;
    log::info("listening on " + path);
}

void Server::accept() {
    acceptor_.async_accept([this](const error_code& ec, stream_protocol::socket socket) {
        if (ec) {
            if (ec != asio::error::operation_aborted && !stopping_) acceptLater(ec);
            return;
        }
        acceptBackoff_ = std::chrono::milliseconds(0);
        struct ucred cred {};
        socklen_t len = sizeof cred;
        if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            log::warning("cannot read peer credentials; connection closed");
            accept();
            return;
        }
        // Per uid, then all uids together; root is never refused by the
        // latter, so an administrator can always get in to see what holds them.
        int limit = 0;
        if (perUid_[cred.uid] >= config_.limits.maxConnectionsPerUid) {
            limit = config_.limits.maxConnectionsPerUid;
            acceptLog_.warning("uid " + std::to_string(cred.uid) + " has too many connections; refused");
        } else if (cred.uid != 0 && connections_ - rootConnections() >= config_.limits.maxConnections) {
            limit = config_.limits.maxConnections;
            acceptLog_.warning("max_connections (" + std::to_string(limit) + ") are open; uid " +
                               std::to_string(cred.uid) + " refused");
        }
        if (limit > 0) {
            if (perUid_[cred.uid] == 0) perUid_.erase(cred.uid);
            error_code ignored;
            std::string err = ipc::encodeError(std::string(kDaemonIface) + ".TooManyConnections", {{"limit", limit}});
            asio::write(socket, asio::buffer(err), ignored);
            socket.close(ignored);
            accept();
            return;
        }
        ++perUid_[cred.uid];
        ++connections_;
        auto conn = std::make_shared<Connection>(*this, std::move(socket), peerFor(cred));
        conn->start();
        accept();
    });
}

void Server::waitForReload() {
    reloadSignals_.async_wait([this](const error_code& ec, int) {
        if (ec || stopping_) return;
        log::info("received SIGHUP: reloading the HTTPS certificate and reopening the country database "
                  "(other settings need a restart)");
        reloadHttpCertificate();
        loadCountryDatabase();
        waitForReload();
    });
}

int Server::run() {
    openStore();
    recordStart();
    scheduleRetention();
    deliveryTimer_ = std::make_unique<asio::steady_timer>(io_);
    heartbeatTimer_ = std::make_unique<asio::steady_timer>(io_);
    startedAt_ = clock_->now();
    heartbeatTick(true);
    ticksSinceOutboxSweep_ = kOutboxSweepTicks;  // the first tick sweeps the outbox too
    // Before the first sweep, which may deliver on another thread at once.
    startMetrics();
    deliverySweepTick();
    startEvents();
    startWebhook();
    loadCountryDatabase();
    startHttp();
    listen();
    accept();
    waitForReload();
    scheduleFloodTick();
    signals_.async_wait([this](const error_code& ec, int sig) {
        if (ec) return;
        log::info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ", shutting down");
        error_code ignored;
        acceptor_.close(ignored);
        stopping_ = true;
        reloadSignals_.cancel(ignored);
        if (http_) http_->stopAccepting();
        if (retentionTimer_) retentionTimer_->cancel();
        if (deliveryTimer_) deliveryTimer_->cancel();
        if (eventTimer_) eventTimer_->cancel();
        if (heartbeatTimer_) heartbeatTimer_->cancel();
        if (floodTimer_) floodTimer_->cancel();
        if (acceptTimer_) acceptTimer_->cancel();
        // Denials counted so far are recorded before the store closes.
        closeDenialWindow(clock_->now());
        // Calls in progress (a code being delivered) finish and are answered first, for at most 10 s.
        if (inFlight_ == 0) {
            io_.stop();
            return;
        }
        shutdownTimer_ = std::make_unique<asio::steady_timer>(io_, std::chrono::seconds(10));
        shutdownTimer_->async_wait([this](const error_code& e) {
            if (e) return;
            log::warning(std::to_string(inFlight_) + " call(s) still running after 10 s; stopping anyway");
            io_.stop();
        });
    });
#ifdef HAVE_SYSTEMD
    sd_notify(0, "READY=1");
#endif
    log::info("twofactord " TWOFACTOR_VERSION " ready (" + std::to_string(config_.apps.size()) + " app(s), store " +
              store_->description() + (config_.embedded ? ", embedded default" : ", config " + config_.sourcePath) + ")");
    io_.run();
    if (http_) http_->stop();
    if (webhook_) webhook_->stop();
    if (metricsHttp_) metricsHttp_->stop();
    deliveryPool_.join();
    // Posts in flight end within their timeout; their outcome is stored, or
    // their lease runs out and the next start sends them again.
    eventPool_.join();
    if (callLog_) callLog_->flush();  // a batch still gathering
    // Off the registry: `cluster status` stops listing this node at once.
    store_->submitReserved([id = service_->deliveryHolder()](store::Transaction& t) { t.forgetNode(id); },
                           [](std::exception_ptr e) {
                               if (e) log::warning("the node could not be taken off the cluster's registry");
                           });
    store_->close();
    if (ownsSocketPath_) ::unlink(config_.socketPath.c_str());
    return 0;
}

// ---- Flood: what a local peer calling as fast as it can costs the daemon ----

namespace {

// Every window ends in one line and one audit record per uid still denied.
constexpr std::int64_t kDenialWindow = 60;  // seconds of the daemon's clock

std::string thousands(std::uint64_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
        out.push_back(digits[i]);
    }
    return out;
}

std::string uidText(std::int64_t uid) {
    return uid == DenialLedger::kOtherUids ? std::string("other uids") : "uid " + std::to_string(uid);
}

}  // namespace

void Server::refuseDenied(const Peer& peer, const std::string& method, Respond respond) {
    // No store work and no log line per denial: the first of a uid is logged
    // and audited at once, the rest counted for the window's summary.
    if (denials_.deny(peer.uid, method)) {
        log::warning("permission denied: uid " + std::to_string(peer.uid) + " (" +
                     (peer.user.empty() ? "unknown user" : peer.user) + ") called " + method +
                     "; further denials of this uid are counted and logged once per " + std::to_string(kDenialWindow) +
                     " s");
        auditDenials(peer.uid, 1, method, false, 0);
    }
    respond("org.varlink.service.PermissionDenied", json::object());
}

void Server::auditDenials(std::int64_t uid, std::uint64_t count, const std::string& method, bool summary,
                          std::int64_t seconds) {
    if (!service_) return;
    otp::AuditRecord rec;
    rec.event = "permission-denied";
    rec.uid = uid == DenialLedger::kOtherUids ? -1 : uid;
    rec.outcome = "denied";
    rec.detail = summary ? uidText(uid) + ": " + thousands(count) + " denied call" + (count == 1 ? "" : "s") + " in " +
                               std::to_string(seconds) + " s (last " + method + ")"
                         : method;
    // Not written (the store's queue is full): counted into the next window.
    service_->audit(std::move(rec), [this, uid, count, method](otp::Outcome<otp::AuditRecord> o) {
        if (!std::holds_alternative<otp::Failure>(o)) return;
        asio::post(io_, [this, uid, count, method] {
            denials_.carry(uid, count, method);
            busyLog_.warning("permission denials could not be audited yet; they are counted into the next window");
        });
    });
}

void Server::closeDenialWindow(std::int64_t now) {
    const std::int64_t seconds = std::max<std::int64_t>(1, now - denialWindowStart_);
    denialWindowStart_ = now;
    for (const auto& s : denials_.close()) {
        log::warning("permission denied: " + uidText(s.uid) + ": " + thousands(s.count) + " more denied call" +
                     (s.count == 1 ? "" : "s") + " in " + std::to_string(seconds) + " s (last " + s.lastMethod + ")");
        auditDenials(s.uid, s.count, s.lastMethod, true, seconds);
    }
    if (callLog_)
        if (const auto dropped = callLog_->takeDropped())
            callLogDrops_.warning("the request log fell behind: " + thousands(dropped) + " call(s) not recorded");
}

void Server::scheduleFloodTick() {
    if (denialWindowStart_ == 0) denialWindowStart_ = clock_->now();
    if (!floodTimer_) floodTimer_ = std::make_unique<asio::steady_timer>(io_);
    // Each second: tests move a file clock by a window at once.
    floodTimer_->expires_after(std::chrono::seconds(1));
    floodTimer_->async_wait([this](const error_code& ec) {
        if (ec || stopping_) return;
        const std::int64_t now = clock_->now();
        if (now - denialWindowStart_ >= kDenialWindow || now < denialWindowStart_) closeDenialWindow(now);
        scheduleFloodTick();
    });
}

void Server::startMetrics() {
    // Delivery attempts are counted where they are logged, on the delivery threads.
    service_->onDeliveryAttempt([this](const otp::DeliveryAttempt& a) {
        metrics_.delivery(a.channel, a.driver, a.outcome, static_cast<double>(a.durationMs) / 1000.0);
    });
    // Served at /metrics by [metrics] listen and by the HTTPS listener (addMetricsRoute).
    metricsText_ = [this, startedAt = std::time(nullptr)] {
        metrics::Snapshot s = metrics_.snapshot();
        s.storeQueueDepth = static_cast<std::int64_t>(store_->queueDepth());
        s.version = TWOFACTOR_VERSION;
        s.startTime = static_cast<double>(startedAt);
        return metrics::render(s);
    };
    if (config_.metrics.port == 0) return;
    // The daemon's HTTP server again, plain (a loopback scraper), with
    // tighter bounds than the API's: a whole exchange within 5 s, a request
    // head of at most 8 KiB, 16 connections at once.
    http::Limits limits;
    limits.headerTimeout = limits.bodyTimeout = limits.writeTimeout = limits.idleTimeout = std::chrono::seconds(5);
    limits.maxHeaderBytes = 8192;
    limits.maxHeaderCount = 64;
    limits.maxBodyBytes = 1024;
    limits.maxConnections = limits.maxConnectionsPerIp = 16;
    auto router = std::make_shared<http::Router>();
    addMetricsRoute(*router);
    metricsHttp_ = std::make_unique<http::Server>(io_, limits, std::move(router));
    try {
        metricsHttp_->listen(config_.metrics.address, config_.metrics.port);
    } catch (const std::exception& e) {
        throw std::runtime_error("[metrics] listen = \"" + config_.metrics.listen + "\": " + e.what());
    }
    log::info("metrics on http://" + config_.metrics.listen + "/metrics");
}

bool Server::storeSaturated() {
    if (!store_ || !store_->saturated()) return false;
    metrics_.refusal("busy");
    ++busyRefusals_;
    busyLog_.warning("the store's queue is full: calls are refused with Busy (" + thousands(busyRefusals_) +
                     " so far)");
    return true;
}

void Server::acceptLater(const error_code& ec) {
    // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits in
    // the backlog, so accepting again at once would fail again at once.
    // Back off from 10 ms up to 1 s; other errors (a peer gone before its
    // accept) concern one connection only.
    const bool resources = ec == asio::error::no_descriptors || ec.value() == ENFILE ||
                           ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
    acceptLog_.warning("accept failed: " + ec.message() +
                       (resources ? "; waiting before accepting again (raise LimitNOFILE= or lower "
                                    "max_connections_per_uid)"
                                  : ""));
    if (!resources) return accept();
    acceptBackoff_ = std::min(std::chrono::milliseconds(1000),
                              std::max(std::chrono::milliseconds(10), acceptBackoff_ * 2));
    if (!acceptTimer_) acceptTimer_ = std::make_unique<asio::steady_timer>(io_);
    acceptTimer_->expires_after(acceptBackoff_);
    acceptTimer_->async_wait([this](const error_code& e) {
        if (!e && !stopping_) accept();
    });
}

// ---- State directory ----

void Server::checkStateDirectory() const {
    struct stat st {};
    if (::stat(config_.stateDir.c_str(), &st) != 0)
        throw std::runtime_error("cannot stat state directory " + config_.stateDir + ": " + std::strerror(errno));
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw std::runtime_error("state directory " + config_.stateDir + " is accessible by group or others (mode " +
                                 mode + "); it holds the database and keys: fix with chmod 700 " + config_.stateDir);
    }
}

void Server::lockStateDirectory() {
    const std::string path = config_.stateDir + "/twofactord.lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char buf[32] = {};
        const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        if (err != EWOULDBLOCK) throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
        std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) pid = "unknown";
        throw std::runtime_error("another twofactord (pid " + pid + ") is using the state directory " +
                                 config_.stateDir + "; stop it first, or give this one its own --state-dir");
    }
    // The holder's pid, for the message above; the lock itself is the flock,
    // which ends with the process however it ends.
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        log::warning("cannot write the pid to " + path + ": " + std::strerror(errno));
    stateLock_ = fd;
}

}  // namespace detail


std::vector<MethodAccess> methodTable() {
    // A server that never runs: building the table opens nothing.
    const config::Config config;
    const detail::Server server(config, DaemonOptions{});
    return server.methodAccess();
}

const char* accessName(Access access) {
    switch (access) {
        case Access::Anyone: return "anyone";
        case Access::Operator: return "operator";
        case Access::Dpo: return "dpo";
        case Access::Admin: return "admin";
    }
    return "unknown";
}

int runDaemon(const config::Config& config, const DaemonOptions& options) {
    channel::curlGlobalInit();  // before any thread exists
    ::signal(SIGPIPE, SIG_IGN);
    // SIGHUP reloads the HTTPS certificate and reopens the country database
    // (the daemon's signal set takes it); anything else in the configuration
    // needs a restart.
    detail::Server server(config, options);
    return server.run();
}

}  // namespace twofactor::server