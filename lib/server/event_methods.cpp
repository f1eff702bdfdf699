// io.twofactor.Events (the event delivery log, re-enabling an endpoint) and
// the daemon's side of event webhooks: the dispatcher's tick and its alert.
#include "server/server_impl.hpp"

namespace twofactor::server::detail {

namespace {

json eventAttemptJson(const otp::EventAttempt& a) {
    json j = {{"eventId", a.eventId}, {"app", a.app},         {"type", a.type},
              {"attempt", a.attempt}, {"at", a.at},           {"outcome", a.outcome},
              {"durationMs", a.durationMs}};
    if (a.statusCode != 0) j["statusCode"] = a.statusCode;
    if (!a.error.empty()) j["error"] = a.error;
    return j;
}

json endpointJson(const otp::EventEndpoint& e) {
    json j = {{"app", e.app}, {"failures", e.failures}};
    if (e.disabledAt != 0) j["disabledAt"] = e.disabledAt;
    if (!e.lastError.empty()) j["lastError"] = e.lastError;
    return j;
}

}  // namespace

void Server::addEventMethods() {
    add("io.twofactor.Events.Deliveries", Access::Operator, [this](const Peer&, const json& p, Respond r) {
        otp::EventAttemptQuery q;
        q.app = opt<std::string>(p, "app");
        q.eventId = opt<std::string>(p, "eventId");
        q.failedOnly = opt<bool>(p, "failed").value_or(false);
        const auto limit = opt<std::int64_t>(p, "limit").value_or(100);
        if (limit < 1 || limit > 10000)
            return r("io.twofactor.Otp.OutOfRange", {{"parameter", "limit"}, {"min", 1}, {"max", 10000}});
        q.limit = static_cast<int>(limit);
        auto attempts = std::make_shared<std::vector<otp::EventAttempt>>();
        auto endpoints = std::make_shared<std::vector<otp::EventEndpoint>>();
        store_->submit(
            [q, attempts, endpoints](store::Transaction& t) {
                *attempts = t.findEventAttempts(q);
                *endpoints = t.listEventEndpoints();
            },
            [r = onIo(r), attempts, endpoints, app = q.app](std::exception_ptr e) {
                if (e) return r("io.twofactor.Otp.StoreFailed", {{"reason", "the event delivery log could not be read"}});
                json a = json::array(), en = json::array();
                for (const auto& x : *attempts) a.push_back(eventAttemptJson(x));
                for (const auto& x : *endpoints)
                    if (!app || x.app == *app) en.push_back(endpointJson(x));
                r("", {{"attempts", a}, {"endpoints", en}});
            });
    });
    add("io.twofactor.Events.Enable", Access::Operator, [this](const Peer& peer, const json& p, Respond r) {
        const std::string app = p.at("app").get<std::string>();
        const auto it = config_.apps.find(app);
        if (it == config_.apps.end()) return r("io.twofactor.Events.NoSuchApp", {{"app", app}});
        if (!it->second.events) return r("io.twofactor.Events.NoEvents", {{"app", app}});
        auto enabled = std::make_shared<bool>(false);
        const std::int64_t now = clock_->now();
        store_->submit(
            [this, app, now, enabled, uid = peer.uid](store::Transaction& t) {
                *enabled = t.enableEvents(app, now);
                if (*enabled)
                    service_->record(t, service_->auditRecord("events-enable", app, uid, "success", {}, {},
                                                              "event endpoint enabled again"));
            },
            [this, r = onIo(r), enabled, app, uid = peer.uid](std::exception_ptr e) {
                if (e) return r("io.twofactor.Otp.StoreFailed", {{"reason", "the endpoint could not be enabled"}});
                if (*enabled) {
                    log::info("uid " + std::to_string(uid) + " enabled the event endpoint of app " + app + " again");
                    asio::post(io_, [this] { eventTicks_ = 0; });  // the gauge is refreshed on the next tick
                }
                r("", {{"enabled", *enabled}});
            });
    });
}

void Server::startEvents() {
    events_ = std::make_unique<EventWebhooks>(
        config_, *store_, *clock_, service_->deliveryHolder(),
        service_->deliveryHolder().substr(0, service_->deliveryHolder().find('/') + 1),
        [this](std::function<void()> job) { asio::post(eventPool_, std::move(job)); });
    if (!events_->any()) return;
    events_->onAttempt = [this](const otp::EventAttempt& a) { metrics_.eventAttempt(a.outcome); };
    events_->onDisabled = [this](const std::string& app, int failures, const std::string& error) {
        log::warning("events: the endpoint of app " + app + " is disabled after " + std::to_string(failures) +
                     " consecutive failed attempts (last: " + error + "); its events wait until `twofactor events "
                     "enable " + app + "`");
        asio::post(io_, [this] { eventTicks_ = 0; });
    };
    eventTimer_ = std::make_unique<asio::steady_timer>(io_);
    eventTick();
}

void Server::eventTick() {
    events_->tick();
    if (events_->wantsExpiries()) service_->sweepExpired(kSweepBatch, {});
    // The disabled endpoints gauge, now and then and after each change.
    if (eventTicks_++ % 30 == 0) {
        auto endpoints = std::make_shared<std::vector<otp::EventEndpoint>>();
        store_->submit([endpoints](store::Transaction& t) { *endpoints = t.listEventEndpoints(); },
                       [this, endpoints](std::exception_ptr e) {
                           if (e) return;
                           std::int64_t disabled = 0;
                           for (const auto& x : *endpoints) disabled += x.disabledAt != 0;
                           metrics_.eventEndpointsDisabled(disabled);
                       });
    }
    eventTimer_->expires_after(eventTick_);
    eventTimer_->async_wait([this](const error_code& ec) {
        if (ec || stopping_) return;
        eventTick();
    });
}

}  // namespace twofactor::server::detail
