// twofactor breach report (dpo): who had data processed in a window, and the
// totals a notice to the supervisory authority needs (GDPR Art. 33, 34).
#include "cli/common.hpp"

#include <cstdio>
#include <string>
#include <sys/stat.h>

namespace twofactor::cli {

namespace {

class BreachCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("breach")) return;
        breach_ = app.add_subcommand("breach", "breach support: what was processed in a time window (dpo, admin)");
        breach_->require_subcommand(1);
        report_ = breach_->add_subcommand(
            "report", "the data subjects whose data were processed in a window, and the totals for the notice (Art. 33)");
        report_->add_option("--from", from_, std::string("the window's start (inclusive): ") + kTimeForms)->required();
        report_->add_option("--to", to_, std::string("the window's end (exclusive): ") + kTimeForms)->required();
        report_->add_option("--app", app_, "only this app's data");
        report_->add_option("-o,--output", output_,
                            "write the report (JSON) to this file, created 0600, instead of stdout");
        report_->add_flag("--force", force_, "replace the file if it exists");
    }

    int run(const Globals& g) override {
        if (breach_ == nullptr || !*breach_) return -1;
        const std::string command = "breach report";
        json p = json::object();
        if (!addTime(command, "--from", from_, "from", p) || !addTime(command, "--to", to_, "to", p)) return kUsage;
        if (!app_.empty()) p["app"] = app_;
        struct stat st {};
        if (!output_.empty() && !force_ && ::lstat(output_.c_str(), &st) == 0) {
            std::fprintf(stderr, "twofactor %s: %s already exists; it was left as it is (--force replaces it)\n",
                         command.c_str(), output_.c_str());
            return kUsage;
        }
        std::string err;
        if (!output_.empty() && !PrivateFile::checkTarget(output_, err)) {
            std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), err.c_str());
            return kUsage;
        }
        ProgressLine progress(command);
        progress.show("collecting...");
        json subjects = json::array(), out;
        const int rc = callMore(
            g, command, "io.twofactor.Privacy.BreachReport", p,
            [&](const json& part) {
                for (const auto& s : part.value("subjects", json::array())) subjects.push_back(s);
                progress.show(std::to_string(subjects.size()) + " subject(s)...");
            },
            out);
        progress.finish();
        if (rc >= 0) return rc;
        json document = {{"format", "twofactor-breach-report/1"},
                         {"generatedAt", out["generatedAt"]},
                         {"window", {{"from", out["from"]}, {"to", out["to"]}}},
                         {"app", out.value("app", json(nullptr))},
                         {"deliveryLogDays", out["deliveryLogDays"]},
                         {"notice", out["notice"]},
                         {"subjects", subjects},
                         {"registerId", out["registerId"]}};
        if (!output_.empty()) {
            PrivateFile file;
            const std::string text = document.dump(2) + "\n";
            if (!file.create(output_, err) || !file.write(text) || !file.commit(force_, err)) {
                if (err.empty()) err = "cannot write " + output_ + ": " + file.writeError();
                std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), err.c_str());
                return kUsage;
            }
        }
        if (g.json) {
            // With -o the file holds the subjects: stdout gets the notice alone.
            if (!output_.empty()) document.erase("subjects");
            std::printf("%s\n", document.dump().c_str());
            return kOk;
        }
        printSummary(document, output_.empty());
        if (!output_.empty())
            std::fprintf(stderr, "twofactor %s: wrote %s (register #%s)\n", command.c_str(), output_.c_str(),
                         str(out, "registerId").c_str());
        return kOk;
    }

private:
    static void printSummary(const json& d, bool withSubjects) {
        const json& n = d["notice"];
        std::printf("window         %s to %s%s\n", isoTime(d["window"].value("from", std::int64_t{0})).c_str(),
                    isoTime(d["window"].value("to", std::int64_t{0})).c_str(),
                    d["app"].is_string() ? (", app " + d["app"].get<std::string>()).c_str() : "");
        std::printf("data subjects  %s (%s contactable, %s only as a keyed hash: past the %s-day delivery-log period)\n",
                    str(n, "dataSubjects").c_str(), str(n, "contactable").c_str(), str(n, "onlyHashed").c_str(),
                    str(d, "deliveryLogDays").c_str());
        std::printf("records        %s\n", str(n, "records").c_str());
        for (const auto& c : n["categoriesOfData"])
            std::printf("  %-56s %s %s\n", str(c, "category").c_str(),
                        c.contains("dataSubjects") ? str(c, "dataSubjects").c_str() : str(c, "records").c_str(),
                        c.contains("dataSubjects") ? "subject(s)" : "record(s)");
        std::printf("per app\n");
        for (const auto& a : n["perApp"])
            std::printf("  %-20s %s subject(s), %s request(s), %s delivery attempt(s)\n", str(a, "app").c_str(),
                        str(a, "dataSubjects").c_str(), str(a, "requests").c_str(), str(a, "deliveries").c_str());
        if (!withSubjects) return;
        std::printf("subjects\n");
        for (const auto& s : d["subjects"]) {
            const std::string who = s.value("contactable", false) ? str(s, "address") : "hash " + str(s, "subjectHash");
            std::printf("  %-40s %s request(s), %s delivery attempt(s)", who.c_str(), str(s, "requests").c_str(),
                        str(s, "deliveries").c_str());
            if (s.contains("clientIps") && !s["clientIps"].empty()) {
                std::string ips;
                for (const auto& ip : s["clientIps"]) ips += (ips.empty() ? "" : ", ") + ip.get<std::string>();
                std::printf(", IPs %s", ips.c_str());
            }
            if (s.contains("devices") && !s["devices"].empty())
                std::printf(", %zu device(s)", s["devices"].size());
            std::printf("\n");
        }
    }

    CLI::App *breach_ = nullptr, *report_ = nullptr;
    std::string from_, to_, app_, output_;
    bool force_ = false;
};

}  // namespace

std::unique_ptr<CommandGroup> breachCommands() { return std::make_unique<BreachCommands>(); }

}  // namespace twofactor::cli
