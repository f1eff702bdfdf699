// io.twofactor.Privacy: retention, data-subject requests and their register (issue 5).
#include "server/server_impl.hpp"

namespace twofactor::server::detail {

void Server::addPrivacyMethods() {
    add("io.twofactor.Privacy.RetentionRun", Access::Dpo, [this](const Peer& peer, const json& p, Respond r) {
        const bool dryRun = opt<bool>(p, "dryRun").value_or(false);
        log::info("uid " + std::to_string(peer.uid) + " started a retention " + (dryRun ? "dry run" : "purge"));
        const bool started = startRetention(dryRun ? "manual-dry-run" : "manual", dryRun,
                                            [dryRun, r = onIo(r)](std::exception_ptr e, const store::RetentionRun& run) {
                                                if (e) return r(std::string(kPrivacy) + ".InternalError", json::object());
                                                r("", {{"dryRun", dryRun},
                                                       {"started", run.started},
                                                       {"finished", run.finished},
                                                       {"counts", countsJson(run.counts)}});
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

}

}  // namespace twofactor::server::detail
