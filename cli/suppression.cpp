// twofactor suppression list|add|remove: the email suppression list
// (list and add: operator; remove: admin).
#include "cli/common.hpp"

#include <cstdio>
#include <string>

namespace twofactor::cli {

namespace {

class SuppressionCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("suppression")) return;
        top_ = app.add_subcommand("suppression",
                                  "the email suppression list: addresses that bounced or complained (operator, admin)");
        top_->require_subcommand(1);
        list_ = top_->add_subcommand("list", "show the list: hash prefix, reason, date (addresses are not kept)");
        list_->add_option("--limit", limit_, "at most this many entries, the newest (default 1000)");
        add_ = top_->add_subcommand("add", "send no more email to an address");
        add_->add_option("address", address_, "the email address")->required();
        add_->add_option("--reason", reason_, "why, for the record (no personal data: it is kept)")->required();
        remove_ = top_->add_subcommand("remove", "send email to an address again (admin)");
        remove_->add_option("address", address_, "the email address")->required();
    }

    int run(const Globals& g) override {
        if (top_ == nullptr || !*top_) return -1;
        json out;
        if (*add_) {
            if (int rc = call(g, "suppression add", "io.twofactor.Suppression.Add",
                              {{"address", address_}, {"reason", reason_}}, out);
                rc >= 0)
                return rc;
            if (g.json) std::printf("%s\n", out.dump().c_str());
            else if (!out.value("added", false))
                std::printf("already suppressed since %s (%s)\n",
                            isoTime(out["entry"].value("at", std::int64_t{0})).c_str(),
                            str(out["entry"], "reason").c_str());
            else std::printf("suppressed %s…\n", str(out["entry"], "addressHash").substr(0, 12).c_str());
            return kOk;
        }
        if (*remove_) {
            if (int rc = call(g, "suppression remove", "io.twofactor.Suppression.Remove", {{"address", address_}}, out);
                rc >= 0)
                return rc;
            if (g.json) std::printf("%s\n", out.dump().c_str());
            if (!out.value("removed", false)) {
                if (!g.json) std::fprintf(stderr, "twofactor suppression remove: that address is not on the list\n");
                return kNotFound;
            }
            if (!g.json) std::printf("removed\n");
            return kOk;
        }
        if (int rc = call(g, "suppression list", "io.twofactor.Suppression.List", {{"limit", limit_}}, out); rc >= 0)
            return rc;
        for (const auto& e : out["entries"]) {
            if (g.json) {
                std::printf("%s\n", e.dump().c_str());  // JSON lines
                continue;
            }
            std::printf("%s…  %-9s %s  %-3s %s\n", str(e, "addressHash").substr(0, 12).c_str(),
                        str(e, "reason").c_str(), isoTime(e.value("at", std::int64_t{0})).c_str(),
                        str(e, "source").c_str(), str(e, "detail").c_str());
        }
        return kOk;
    }

private:
    CLI::App *top_ = nullptr, *list_ = nullptr, *add_ = nullptr, *remove_ = nullptr;
    std::string address_, reason_;
    int limit_ = 1000;
};

}  // namespace

std::unique_ptr<CommandGroup> suppressionCommands() { return std::make_unique<SuppressionCommands>(); }

}  // namespace twofactor::cli
