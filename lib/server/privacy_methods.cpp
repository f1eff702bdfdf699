// io.twofactor.Privacy: retention, data-subject requests and their register (issue 5).
#include "server/server_impl.hpp"

#include "privacy/subjects.hpp"

namespace twofactor::server::detail {

void Server::addPrivacyMethods() {
    addStreaming("io.twofactor.Privacy.RetentionRun", Access::Dpo,
                 [this](const Peer& peer, const json& p, Progress progress, Respond r) {
        const bool dryRun = opt<bool>(p, "dryRun").value_or(false);
        log::info("uid " + std::to_string(peer.uid) + " started a retention " + (dryRun ? "dry run" : "purge"));
        const bool started = startRetention(
            dryRun ? "manual-dry-run" : "manual", dryRun,
            [dryRun, r = onIo(r)](std::exception_ptr e, const store::RetentionRun& run) {
                if (e) return r(std::string(kPrivacy) + ".InternalError", json::object());
                r("", {{"dryRun", dryRun}, {"started", run.started}, {"finished", run.finished},
                       {"counts", countsJson(run.counts)}});
            },
            [progress, dryRun](const store::PurgeCounts& c) {
                progress({{"dryRun", dryRun}, {"started", 0}, {"finished", 0}, {"counts", countsJson(c)}});
            });
        if (!started) r(std::string(kPrivacy) + ".RetentionBusy", json::object());
    });
    add("io.twofactor.Privacy.RetentionStatus", Access::Dpo, [this](const Peer&, const json&, Respond r) {
        auto last = std::make_shared<std::optional<store::RetentionRun>>();
        store_->submit([last](store::Transaction& t) { *last = t.lastRetentionRun(); },
                       [this, last, next = nextRetention_, r = onIo(r)](std::exception_ptr e) {
                           if (e) return r(std::string(kPrivacy) + ".InternalError", json::object());
                           json out = {{"schedule", config_.retention.schedule}, {"nextRun", next}};
                           if (*last) {
                               out["lastStarted"] = (*last)->started;
                               out["lastFinished"] = (*last)->finished;
                               out["lastTrigger"] = (*last)->trigger;
                               out["lastCounts"] = countsJson((*last)->counts);
                           }
                           r("", out);
                       });
    });

    // GDPR data-subject requests (dpo, admin).
    auto context = [](const Peer& peer, const json& p) {
        privacy::RequestContext ctx;
        ctx.uid = peer.uid;
        ctx.received = opt<std::int64_t>(p, "received");
        return ctx;
    };
    auto erasedJson = [](const store::SubjectCounts& c) {
        return json{{"requests", c.requests},         {"fallbacks", c.fallbacks}, {"deliveries", c.deliveries},
                    {"auditRecords", c.auditRecords}, {"optOuts", c.optOuts},     {"failures", c.failures},
                    {"flags", c.flags},               {"rateCounters", c.rateCounters},
                    {"fraudSets", c.fraudSets}};
    };
    add("io.twofactor.Privacy.SubjectExport", Access::Dpo, [this, context](const Peer& peer, const json& p, Respond r) {
        const auto uid = peer.uid;
        subjects_->exportData(p.at("subject").get<std::string>(), context(peer, p),
                              [this, uid, r = onIo(r)](otp::Outcome<privacy::ExportResult> o) {
                                  if (auto* res = std::get_if<privacy::ExportResult>(&o))
                                      log::info("uid " + std::to_string(uid) + " exported a data subject's data (register " +
                                                std::to_string(res->registerId) + ")");
                                  answer(r, o, [](const privacy::ExportResult& res) {
                                      return json{{"document", res.document}, {"empty", res.empty},
                                                  {"registerId", res.registerId}};
                                  });
                              });
    });
    add("io.twofactor.Privacy.SubjectErase", Access::Dpo,
        [this, context, erasedJson](const Peer& peer, const json& p, Respond r) {
            const auto uid = peer.uid;
            subjects_->erase(p.at("subject").get<std::string>(), context(peer, p),
                             [this, uid, erasedJson, r = onIo(r)](otp::Outcome<privacy::Erasure> o) {
                                 if (auto* res = std::get_if<privacy::Erasure>(&o))
                                     log::info("uid " + std::to_string(uid) + " erased a data subject (register " +
                                               std::to_string(res->registerId) + ", " +
                                               std::to_string(res->counts.requests) + " request(s))");
                                 answer(r, o, [erasedJson](const privacy::Erasure& res) {
                                     json recipients = json::array();
                                     for (const auto& rc : res.recipients) {
                                         json j = {{"name", rc.name},
                                                   {"provider", rc.driver},
                                                   {"country", rc.country},
                                                   {"messageIds", rc.messageIds}};
                                         if (!rc.region.empty()) j["region"] = rc.region;
                                         recipients.push_back(std::move(j));
                                     }
                                     return json{{"erased", erasedJson(res.counts)},
                                                 {"outboxMessages", res.outboxMessages},
                                                 {"suppressions", res.suppressions},
                                                 {"recipients", recipients},
                                                 {"registerId", res.registerId}};
                                 });
                             });
        });
    add("io.twofactor.Privacy.SubjectRectify", Access::Dpo,
        [this, context, erasedJson](const Peer& peer, const json& p, Respond r) {
            subjects_->rectify(p.at("subject").get<std::string>(), p.at("to").get<std::string>(), context(peer, p),
                               [this, erasedJson, r = onIo(r)](otp::Outcome<privacy::Rectification> o) {
                                   answer(r, o, [erasedJson](const privacy::Rectification& res) {
                                       return json{{"moved", erasedJson(res.counts)}, {"registerId", res.registerId}};
                                   });
                               });
        });
    for (const bool on : {true, false}) {
        add(on ? "io.twofactor.Privacy.SubjectRestrict" : "io.twofactor.Privacy.SubjectUnrestrict", Access::Dpo,
            [this, context, on](const Peer& peer, const json& p, Respond r) {
                subjects_->restrict(p.at("subject").get<std::string>(), on, context(peer, p),
                                    [this, on, r = onIo(r)](otp::Outcome<privacy::FlagChange> o) {
                                        answer(r, o, [on](const privacy::FlagChange& res) {
                                            json out = {{"changed", res.changed}, {"registerId", res.registerId}};
                                            if (on) out["since"] = res.since.value_or(0);
                                            return out;
                                        });
                                    });
            });
    }
    add("io.twofactor.Privacy.SubjectObject", Access::Dpo, [this, context](const Peer& peer, const json& p, Respond r) {
        subjects_->object(p.at("subject").get<std::string>(), context(peer, p),
                          [this, r = onIo(r)](otp::Outcome<privacy::FlagChange> o) {
                              answer(r, o, [](const privacy::FlagChange& res) {
                                  return json{{"changed", res.changed},
                                              {"since", res.since.value_or(0)},
                                              {"registerId", res.registerId}};
                              });
                          });
    });
    auto requestJson = [this](const store::PrivacyRequest& q) {
        json j = {{"id", q.id},   {"kind", q.kind}, {"subject", q.subjectHash}, {"received", q.received},
                  {"due", q.due}, {"uid", q.uid},   {"overdue", !q.completed && q.due < clock_->now()}};
        if (q.completed) j["completed"] = *q.completed;
        if (!q.note.empty()) j["note"] = q.note;
        return j;
    };
    add("io.twofactor.Privacy.RegisterRequest", Access::Dpo,
        [this, context, requestJson](const Peer& peer, const json& p, Respond r) {
            subjects_->registerRequest(p.at("kind").get<std::string>(), p.at("subject").get<std::string>(),
                                       opt<std::string>(p, "note").value_or(""), context(peer, p),
                                       [this, requestJson, r = onIo(r)](otp::Outcome<store::PrivacyRequest> o) {
                                           answer(r, o, [requestJson](const store::PrivacyRequest& q) {
                                               return json{{"request", requestJson(q)}};
                                           });
                                       });
        });
    add("io.twofactor.Privacy.Requests", Access::Dpo, [this, requestJson](const Peer&, const json& p, Respond r) {
        store::PrivacyRequestQuery q;
        q.openOnly = opt<bool>(p, "open").value_or(false);
        if (opt<bool>(p, "overdue").value_or(false)) q.overdueAt = clock_->now();
        const std::int64_t limit = opt<std::int64_t>(p, "limit").value_or(1000);
        if (limit < 1 || limit > 100000) return r("org.varlink.service.InvalidParameter", {{"parameter", "limit"}});
        q.limit = static_cast<int>(limit);
        subjects_->listRequests(q, [this, requestJson, r = onIo(r)](otp::Outcome<std::vector<store::PrivacyRequest>> o) {
            answer(r, o, [requestJson](const std::vector<store::PrivacyRequest>& list) {
                json out = json::array();
                for (const auto& q : list) out.push_back(requestJson(q));
                return json{{"requests", out}};
            });
        });
    });
}

}  // namespace twofactor::server::detail
