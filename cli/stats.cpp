// twofactor apps, twofactor stats and twofactor cluster status: what is
// configured, how delivery and verification go, and which nodes serve, for
// operators and their monitoring.
#include "cli/common.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>

namespace twofactor::cli {

namespace {

class ObservationCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (pick.wants("apps")) apps_ = app.add_subcommand("apps", "list the configured apps: name, channels, code lifetime (operator)");
        if (pick.wants("stats")) {
            stats_ = app.add_subcommand("stats", "delivery and verification figures from the logs (operator)");
            stats_->add_option("--since", since_, std::string("from this time (default: 24 hours ago): ") + kTimeForms);
            stats_->add_option("--until", until_, std::string("before this time (default: now): ") + kTimeForms);
        }
        if (pick.wants("cluster")) {
            cluster_ = app.add_subcommand("cluster", "the nodes serving this store (operator)");
            cluster_->require_subcommand(1);
            clusterStatus_ = cluster_->add_subcommand("status", "nodes heard from in the last 10 minutes, lease "
                                                                "holders and queued delivery jobs");
        }
    }

    int run(const Globals& g) override {
        if (apps_ != nullptr && *apps_) return apps(g);
        if (stats_ != nullptr && *stats_) return stats(g);
        if (clusterStatus_ != nullptr && *clusterStatus_) return clusterStatus(g);
        return -1;
    }

private:
    static int apps(const Globals& g) {
        json out;
        if (int rc = call(g, "apps", "io.twofactor.Daemon.Apps", json::object(), out); rc >= 0) return rc;
        for (const auto& a : out["apps"]) {
            if (g.json) {
                std::printf("%s\n", a.dump().c_str());  // JSON lines
                continue;
            }
            std::string channels;
            for (const auto& c : a["channels"]) channels += (channels.empty() ? "" : ",") + c.get<std::string>();
            // The name first and alone in its column: the shell completions read it.
            std::printf("%-20s %-16s ttl %5ss  %s digits  %s attempts  %s\n", str(a, "name").c_str(),
                        channels.c_str(), str(a, "ttl").c_str(), str(a, "codeLength").c_str(),
                        str(a, "maxAttempts").c_str(), str(a, "displayName").c_str());
        }
        return kOk;
    }

    int stats(const Globals& g) const {
        json p = json::object(), out;
        if (!addTime("stats", "--since", since_, "since", p) || !addTime("stats", "--until", until_, "until", p))
            return kUsage;
        if (int rc = call(g, "stats", "io.twofactor.Daemon.Stats", p, out); rc >= 0) return rc;
        if (g.json) {
            std::printf("%s\n", out.dump().c_str());
            return kOk;
        }
        const std::int64_t from = out.value("coveredFrom", std::int64_t{0});
        std::printf("period         %s to %s%s\n", isoTime(out.value("since", std::int64_t{0})).c_str(),
                    isoTime(out.value("until", std::int64_t{0})).c_str(),
                    out.value("sampled", false) ? (" (more than the daemon reads at once: from " + isoTime(from) + ")").c_str()
                                                : "");
        std::printf("sends          %s\n", str(out, "sends").c_str());
        std::int64_t attempts = 0;
        for (const auto& d : out["deliveries"]) attempts += d.value("count", std::int64_t{0});
        std::printf("deliveries     %lld attempts\n", static_cast<long long>(attempts));
        for (const auto& d : out["deliveries"])
            std::printf("  %-8s %-8s %-8s %s\n", str(d, "channel").c_str(), str(d, "driver").c_str(),
                        str(d, "outcome").c_str(), str(d, "count").c_str());
        if (out.contains("deliverySuccessRate"))
            std::printf("success rate   %.1f%% of deliveries accepted by the provider\n",
                        out["deliverySuccessRate"].get<double>() * 100.0);
        else std::printf("success rate   - (no delivery ended)\n");
        if (out.contains("providerLatencyP50Ms"))
            std::printf("latency        p50 %s ms, p99 %s ms\n", str(out, "providerLatencyP50Ms").c_str(),
                        str(out, "providerLatencyP99Ms").c_str());
        auto counts = [](const char* title, const json& list) {
            std::printf("%-14s", title);
            if (list.empty()) std::printf(" none");
            bool first = true;
            for (const auto& c : list) {
                std::printf("%s %s %s", first ? "" : ",", str(c, "outcome").c_str(), str(c, "count").c_str());
                first = false;
            }
            std::printf("\n");
        };
        counts("verifications", out["verifications"]);
        counts("refusals", out["refusals"]);
        emailFeedback(out.value("emailFeedback", json::array()));
        return kOk;
    }

    // The bounce and complaint rates SES judges a sender by, per app.
    static void emailFeedback(const json& apps) {
        if (apps.empty()) return;
        std::printf("email feedback (SES pauses sending at 5%% bounces or 0.1%% complaints)\n");
        const auto rates = [](const json& r) {
            char buf[160];
            if (!r.contains("bounceRate"))
                std::snprintf(buf, sizeof buf, "%s sent", str(r, "sends").c_str());
            else
                std::snprintf(buf, sizeof buf, "%s sent, %s bounced (%.2f%%), %s complained (%.2f%%)",
                              str(r, "sends").c_str(), str(r, "bounces").c_str(),
                              r["bounceRate"].get<double>() * 100.0, str(r, "complaints").c_str(),
                              r["complaintRate"].get<double>() * 100.0);
            return std::string(buf);
        };
        for (const auto& a : apps) {
            std::printf("  %-16s 24 h: %s\n", str(a, "app").c_str(), rates(a["last24h"]).c_str());
            std::printf("  %-16s 7 days: %s\n", "", rates(a["last7d"]).c_str());
            for (const auto& w : a["warnings"])
                std::printf("  warning: app %s: %s\n", str(a, "app").c_str(), w.get<std::string>().c_str());
        }
    }

    static int clusterStatus(const Globals& g) {
        json out;
        if (int rc = call(g, "cluster status", "io.twofactor.Daemon.ClusterStatus", json::object(), out); rc >= 0)
            return rc;
        if (g.json) {
            std::printf("%s\n", out.dump().c_str());
            return kOk;
        }
        const std::string self = str(out, "self");
        std::printf("backend        %s\n", str(out, "backend").c_str());
        std::printf("nodes          %zu\n", out["nodes"].size());
        // A node's id is host~state directory/start: a later start of the
        // same daemon replaces the earlier, whose row lingers until it is
        // forgotten. Only the latest of each counts for the key versions.
        std::map<std::string, std::int64_t> latestStart;
        const auto daemonOf = [](const std::string& id) { return id.substr(0, id.rfind('/')); };
        for (const auto& n : out["nodes"]) {
            auto& latest = latestStart[daemonOf(str(n, "id"))];
            latest = std::max(latest, n.value("started", std::int64_t{0}));
        }
        std::set<std::int64_t> keyVersions;
        for (const auto& n : out["nodes"]) {
            const std::int64_t key = n.value("keyVersion", std::int64_t{0});
            const bool replaced = n.value("started", std::int64_t{0}) < latestStart[daemonOf(str(n, "id"))];
            if (key > 0 && !replaced) keyVersions.insert(key);
            std::printf("  %s%-40s %-16s %-8s %sstarted %s, heartbeat %s%s\n", str(n, "id") == self ? "*" : " ",
                        str(n, "id").c_str(), str(n, "host").c_str(), str(n, "version").c_str(),
                        key > 0 ? ("key " + std::to_string(key) + ", ").c_str() : "",
                        isoTime(n.value("started", std::int64_t{0})).c_str(),
                        isoTime(n.value("heartbeat", std::int64_t{0})).c_str(), replaced ? " (restarted since)" : "");
        }
        // After a key rotation the other nodes seal under the old key until
        // they are restarted with the new one: say which ones.
        if (keyVersions.size() > 1) {
            std::string list;
            for (auto v : keyVersions) list += (list.empty() ? "" : ", ") + std::to_string(v);
            std::printf("  the nodes seal under different store keys (versions %s): restart those below %lld "
                        "with the new key file\n",
                        list.c_str(), static_cast<long long>(*keyVersions.rbegin()));
        }
        std::printf("leases         %zu\n", out["leases"].size());
        for (const auto& l : out["leases"])
            std::printf("  %-12s %s, run of %s, until %s\n", str(l, "name").c_str(), str(l, "holder").c_str(),
                        isoTime(l.value("slot", std::int64_t{0})).c_str(),
                        isoTime(l.value("expires", std::int64_t{0})).c_str());
        std::printf("queued jobs    %s%s\n", out.value("queuedJobsCapped", false) ? "more than " : "",
                    str(out, "queuedJobs").c_str());
        return kOk;
    }

    CLI::App* apps_ = nullptr;
    CLI::App* stats_ = nullptr;
    CLI::App* cluster_ = nullptr;
    CLI::App* clusterStatus_ = nullptr;
    std::string since_, until_;
};

}  // namespace

std::unique_ptr<CommandGroup> observationCommands() { return std::make_unique<ObservationCommands>(); }

}  // namespace twofactor::cli
