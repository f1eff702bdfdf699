// io.twofactor.Suppression: the email suppression list; and the bounce and
// complaint rates twofactor stats shows.
#include "server/server_impl.hpp"

#include <algorithm>
#include <cstdio>

namespace twofactor::server::detail {

namespace {

// SES reviews an account above these rates and pauses its sending.
constexpr double kSesBouncePause = 0.05;
constexpr double kSesComplaintPause = 0.001;

json suppressionJson(const store::Suppression& e) {
    json j = {{"addressHash", e.addressHash}, {"reason", e.reason}, {"at", e.at}, {"source", e.source}};
    if (!e.detail.empty()) j["detail"] = e.detail;
    if (!e.messageId.empty()) j["messageId"] = e.messageId;
    return j;
}

json ratesJson(const store::EmailFeedbackCounts& c) {
    json j = {{"sends", c.sends}, {"bounces", c.bounces}, {"complaints", c.complaints}};
    if (c.sends > 0) {
        j["bounceRate"] = static_cast<double>(c.bounces) / static_cast<double>(c.sends);
        j["complaintRate"] = static_cast<double>(c.complaints) / static_cast<double>(c.sends);
    }
    return j;
}

std::string percent(double rate) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f%%", rate * 100.0);
    return buf;
}

// A warning from half the pause threshold on: time to look before SES acts.
void warn(json& warnings, const json& rates, const char* window) {
    const auto check = [&](const char* key, const char* what, double pause) {
        if (!rates.contains(key)) return;
        const double rate = rates[key].get<double>();
        if (rate < pause / 2) return;
        warnings.push_back(std::string(what) + " rate " + percent(rate) + " over " + window + " is " +
                           (rate >= pause ? "above" : "approaching") + " the " + percent(pause) +
                           " at which SES pauses sending");
    };
    check("bounceRate", "bounce", kSesBouncePause);
    check("complaintRate", "complaint", kSesComplaintPause);
}

}  // namespace

json emailFeedbackStats(store::Transaction& t, const config::Config& config, std::int64_t now) {
    json out = json::array();
    for (const auto& [name, app] : config.apps) {
        if (std::find(app.channels.begin(), app.channels.end(), "email") == app.channels.end()) continue;
        const json day = ratesJson(t.emailFeedback(name, now - 86400));
        const json week = ratesJson(t.emailFeedback(name, now - 7 * 86400));
        json warnings = json::array();
        warn(warnings, day, "24 h");
        warn(warnings, week, "7 days");
        out.push_back({{"app", name}, {"last24h", day}, {"last7d", week}, {"warnings", warnings}});
    }
    return out;
}

void Server::addSuppressionMethods() {
    add("io.twofactor.Suppression.Add", Access::Operator, [this](const Peer& peer, const json& p, Respond r) {
        const auto uid = peer.uid;
        service_->suppressionAdd(p.at("address").get<std::string>(), "manual", opt<std::string>(p, "reason").value_or(""),
                                 [this, uid, r = onIo(r)](otp::Outcome<otp::SuppressionChange> o) {
                                     if (auto* c = std::get_if<otp::SuppressionChange>(&o); c && c->added)
                                         log::info("uid " + std::to_string(uid) + " suppressed an email address");
                                     answer(r, o, [](const otp::SuppressionChange& c) {
                                         return json{{"entry", suppressionJson(c.entry)}, {"added", c.added}};
                                     });
                                 },
                                 uid);
    });
    add("io.twofactor.Suppression.Remove", Access::Admin, [this](const Peer& peer, const json& p, Respond r) {
        const auto uid = peer.uid;
        service_->suppressionRemove(p.at("address").get<std::string>(), [this, uid, r = onIo(r)](otp::Outcome<bool> o) {
            if (auto* removed = std::get_if<bool>(&o); removed && *removed)
                log::info("uid " + std::to_string(uid) + " took an email address off the suppression list");
            answer(r, o, [](bool removed) { return json{{"removed", removed}}; });
        }, uid);
    });
    add("io.twofactor.Suppression.List", Access::Operator, [this](const Peer&, const json& p, Respond r) {
        const auto limit = static_cast<int>(opt<std::int64_t>(p, "limit").value_or(1000));
        service_->suppressionList(limit, [this, r = onIo(r)](otp::Outcome<std::vector<store::Suppression>> o) {
            answer(r, o, [](const std::vector<store::Suppression>& list) {
                json entries = json::array();
                for (const auto& e : list) entries.push_back(suppressionJson(e));
                return json{{"entries", entries}};
            });
        });
    });
}

}  // namespace twofactor::server::detail
