// twofactor events deliveries|enable: the event webhooks' delivery log and
// endpoints disabled after repeated failures (operator).
#include "cli/common.hpp"

#include <cstdio>
#include <string>

namespace twofactor::cli {

namespace {

class EventCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("events")) return;
        events_ = app.add_subcommand("events", "outgoing event webhooks: delivery attempts, disabled endpoints");
        events_->require_subcommand(1);
        deliveries_ = events_->add_subcommand("deliveries", "show event delivery attempts, oldest first, and disabled endpoints");
        deliveries_->add_option("--app", app_, "only this app's events");
        deliveries_->add_option("--event-id", eventId_, "only this event (its webhook-id, msg_...)");
        deliveries_->add_flag("--failed", failed_, "only attempts that did not deliver");
        deliveries_->add_option("--limit", limit_, "at most this many attempts, the newest (default 100)");
        enable_ = events_->add_subcommand("enable", "turn a disabled endpoint on again; its waiting events go at once");
        enable_->add_option("app", app_, "the app whose endpoint to enable")->required();
    }

    int run(const Globals& g) override {
        if (events_ == nullptr || !*events_) return -1;
        if (*enable_) return enable(g);
        return deliveries(g);
    }

private:
    int deliveries(const Globals& g) {
        json p = {{"limit", limit_}};
        if (!app_.empty()) p["app"] = app_;
        if (!eventId_.empty()) p["eventId"] = eventId_;
        if (failed_) p["failed"] = true;
        json out;
        if (int rc = call(g, "events deliveries", "io.twofactor.Events.Deliveries", p, out); rc >= 0) return rc;
        if (g.json) {
            // JSON lines: attempts, then endpoints (with "endpoint": true).
            for (const auto& a : out["attempts"]) std::printf("%s\n", a.dump().c_str());
            for (auto e : out["endpoints"]) {
                e["endpoint"] = true;
                std::printf("%s\n", e.dump().c_str());
            }
            return kOk;
        }
        for (const auto& a : out["attempts"]) {
            const std::string status = a.contains("statusCode") ? std::to_string(a["statusCode"].get<int>()) : "-";
            std::printf("%s %-12s %-22s %-26s #%-2d %-9s %-3s %5lld ms%s%s\n",
                        isoTime(a["at"].get<std::int64_t>()).c_str(), str(a, "app").c_str(), str(a, "type").c_str(),
                        str(a, "eventId").c_str(), a["attempt"].get<int>(), str(a, "outcome").c_str(), status.c_str(),
                        static_cast<long long>(a["durationMs"].get<std::int64_t>()), a.contains("error") ? "  " : "",
                        a.value("error", std::string()).c_str());
        }
        for (const auto& e : out["endpoints"]) {
            if (e.contains("disabledAt"))
                std::printf("DISABLED endpoint of app %s since %s after %d consecutive failures (last: %s); "
                            "enable with: twofactor events enable %s\n",
                            str(e, "app").c_str(), isoTime(e["disabledAt"].get<std::int64_t>()).c_str(),
                            e["failures"].get<int>(), e.value("lastError", std::string("-")).c_str(),
                            str(e, "app").c_str());
            else if (e["failures"].get<int>() > 0)
                std::printf("endpoint of app %s: %d consecutive failures (last: %s)\n", str(e, "app").c_str(),
                            e["failures"].get<int>(), e.value("lastError", std::string("-")).c_str());
        }
        return kOk;
    }

    int enable(const Globals& g) {
        json out;
        if (int rc = call(g, "events enable", "io.twofactor.Events.Enable", {{"app", app_}}, out); rc >= 0) return rc;
        if (g.json) std::printf("%s\n", out.dump().c_str());
        else if (out.value("enabled", false)) std::printf("event endpoint of app %s enabled\n", app_.c_str());
        else std::printf("event endpoint of app %s was not disabled\n", app_.c_str());
        return kOk;
    }

    CLI::App* events_ = nullptr;
    CLI::App* deliveries_ = nullptr;
    CLI::App* enable_ = nullptr;
    std::string app_, eventId_;
    bool failed_ = false;
    int limit_ = 100;
};

}  // namespace

std::unique_ptr<CommandGroup> eventCommands() { return std::make_unique<EventCommands>(); }

}  // namespace twofactor::cli
