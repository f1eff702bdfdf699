// io.twofactor.Privacy.BreachReport: the data processed in a window, for a
// breach notification (privacy/breach.hpp).
#include "server/server_impl.hpp"

#include "privacy/breach.hpp"

namespace twofactor::server::detail {

namespace {

// Rows per store work item: each page is short work for the writer, so sends
// go on while a report over months of traffic is collected.
constexpr int kBreachPage = 2000;
// Subjects per intermediate reply: replies stay far below the 16 MiB a client reads.
constexpr std::size_t kBreachSubjectsPerReply = 500;

struct BreachRun {
    explicit BreachRun(privacy::BreachWindow w, std::function<std::string(const std::string&)> hashOf)
        : window(w), report(std::move(w), std::move(hashOf)) {}
    privacy::BreachWindow window;
    privacy::BreachReport report;
    store::BreachPage page;
    bool deliveries = false;  // requests done, paging through the delivery log
    std::int64_t uid = -1;
    std::int64_t registerId = 0;
};

}  // namespace

void Server::addBreachMethods() {
    addStreaming(
        "io.twofactor.Privacy.BreachReport", Access::Dpo,
        [this](const Peer& peer, const json& p, Progress progress, Respond respond) {
            privacy::BreachWindow w;
            w.from = p.at("from").get<std::int64_t>();
            w.to = p.at("to").get<std::int64_t>();
            w.app = opt<std::string>(p, "app");
            if (w.from < 0 || w.to <= w.from) return respond(std::string(kPrivacy) + ".InvalidWindow",
                                                             {{"reason", "`to` must be later than `from`"}});
            if (w.to - w.from > privacy::kMaxBreachWindow)
                return respond(std::string(kPrivacy) + ".InvalidWindow",
                               {{"reason", "a window of at most 3660 days"}});
            auto hashOf = [service = service_.get()](const std::string& address) -> std::string {
                auto parsed = otp::parseDestination(address);
                auto* d = std::get_if<otp::Destination>(&parsed);
                return d ? service->subjectHashes(*d).front() : std::string();
            };
            auto run = std::make_shared<BreachRun>(w, hashOf);
            run->page.from = w.from;
            run->page.to = w.to;
            run->page.limit = kBreachPage;
            run->uid = peer.uid;
            log::info("uid " + std::to_string(peer.uid) + " started a breach report");
            breachStep(run, std::move(progress), onIo(std::move(respond)));
        },
        /*requiresMore=*/true);
}

void Server::breachStep(std::shared_ptr<void> state, Progress progress, Respond respond) {
    auto run = std::static_pointer_cast<BreachRun>(state);
    auto more = std::make_shared<bool>(false);
    store_->submit(
        [run, more](store::Transaction& t) {
            if (!run->deliveries) {
                auto rows = t.breachRequests(run->page);
                run->report.addRequests(rows);
                if (static_cast<int>(rows.size()) == run->page.limit) {
                    run->page.afterAt = rows.back().createdAt;
                    run->page.afterRow = rows.back().row;
                } else {
                    run->deliveries = true;
                    run->page.afterAt = 0;
                    run->page.afterRow = 0;
                }
                *more = true;
                return;
            }
            auto rows = t.breachDeliveries(run->page);
            run->report.addDeliveries(rows);
            if (static_cast<int>(rows.size()) == run->page.limit) {
                run->page.afterAt = rows.back().at;
                run->page.afterRow = rows.back().row;
                *more = true;
            }
        },
        [this, run, more, progress, respond](std::exception_ptr e) {
            if (e) {
                log::error("a breach report could not read the store");
                return respond(std::string(kPrivacy) + ".InternalError", json::object());
            }
            if (*more) return breachStep(run, progress, respond);
            breachFinish(run, progress, respond);
        });
}

void Server::breachFinish(std::shared_ptr<void> state, Progress progress, Respond respond) {
    auto run = std::static_pointer_cast<BreachRun>(state);
    const std::string window = "window " + std::to_string(run->window.from) + ".." + std::to_string(run->window.to) +
                               (run->window.app ? ", app " + *run->window.app : "");
    const std::string counts = std::to_string(run->report.subjectCount()) + " subject(s), " +
                               std::to_string(run->report.recordCount()) + " record(s)";
    // Recorded before anything leaves the daemon: no report without its
    // register entry and audit record (the audit log fails closed).
    store_->submit(
        [this, run, window, counts](store::Transaction& t) {
            const std::int64_t now = clock_->now();
            store::PrivacyRequest entry;
            entry.kind = "breach-report";
            entry.received = now;
            entry.due = now + 72 * 3600;  // Art. 33(1): the authority is told within 72 hours
            entry.completed = now;
            entry.uid = run->uid;
            entry.note = window + ": " + counts;
            run->registerId = t.insertPrivacyRequest(entry);
            service_->record(t, service_->auditRecord("breach-report", run->window.app.value_or(""), run->uid,
                                                      "success", "", "", window + ", " + counts));
        },
        [this, run, progress, respond, counts](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const otp::AuditWriteError&) {
                    return respond(std::string(kOtp) + ".AuditFailed", json::object());
                } catch (...) {
                }
                return respond(std::string(kPrivacy) + ".InternalError", json::object());
            }
            // Not on the writer's thread, which runs this completion: the
            // subjects of a large report take a while to put into JSON.
            asio::post(deliveryPool_, [this, run, progress, respond, counts] { breachAnswer(run, progress, respond, counts); });
        });
}

void Server::breachAnswer(std::shared_ptr<void> state, Progress progress, Respond respond, std::string counts) {
    auto run = std::static_pointer_cast<BreachRun>(state);
    const auto subjects = run->report.subjects();
    for (std::size_t i = 0; i < subjects.size(); i += kBreachSubjectsPerReply) {
        json chunk = json::array();
        for (std::size_t k = i; k < std::min(subjects.size(), i + kBreachSubjectsPerReply); ++k)
            chunk.push_back(subjects[k]);
        progress({{"subjects", std::move(chunk)}});
    }
    log::info("uid " + std::to_string(run->uid) + " made a breach report (register " +
              std::to_string(run->registerId) + ", " + counts + ")");
    json out = {{"from", run->window.from},
                {"to", run->window.to},
                {"generatedAt", clock_->now()},
                {"deliveryLogDays", config_.retention.deliveryLogs / 86400},
                {"notice", run->report.notice()},
                {"registerId", run->registerId}};
    if (run->window.app) out["app"] = *run->window.app;
    respond("", out);
}

}  // namespace twofactor::server::detail
