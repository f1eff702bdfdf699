// twofactor gdpr ... (dpo): data-subject requests and their register.
#include "cli/common.hpp"

#include <cstdio>
#include <ctime>
#include <string>
#include <sys/stat.h>

namespace twofactor::cli {

namespace {

std::string day(std::int64_t t) { return isoTime(t).substr(0, 10); }

class PrivacyCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("gdpr")) return;
        gdpr_ = app.add_subcommand("gdpr", "GDPR data-subject requests and their register (dpo, admin)");
        gdpr_->require_subcommand(1);
        auto subject = [this](CLI::App* c) {
            c->add_option("--subject", subject_, "the data subject: an email address or a phone number (+49...)")
                ->required();
            c->add_option("--received", received_,
                          std::string("when the subject's request arrived (default: now): ") + kTimeForms +
                              "; the answer is due 30 days later");
        };
        export_ = gdpr_->add_subcommand("export", "everything held about a subject, as one JSON document (Art. 15, 20)");
        subject(export_);
        export_->add_option("-o,--output", output_, "write the document to this file (created 0600) instead of stdout");
        export_->add_flag("--force", force_, "replace the file if it exists");
        delete_ = gdpr_->add_subcommand("delete", "erase everything held about a subject; prints whom to notify (Art. 17, 19)");
        subject(delete_);
        rectify_ = gdpr_->add_subcommand("rectify", "replace a subject's address or number everywhere (Art. 16)");
        subject(rectify_);
        rectify_->add_option("--to", to_, "the correct address or number")->required();
        restrict_ = gdpr_->add_subcommand("restrict", "restrict processing: data kept, every send and verify refused (Art. 18)");
        subject(restrict_);
        unrestrict_ = gdpr_->add_subcommand("unrestrict", "lift a restriction");
        subject(unrestrict_);
        object_ = gdpr_->add_subcommand("object", "record an objection: no IP, device or fraud profiling (Art. 21)");
        subject(object_);
        register_ = gdpr_->add_subcommand("register", "enter a request received by letter or mail, to be answered later");
        subject(register_);
        register_->add_option("--kind", kind_, "export, delete, rectify, restrict, unrestrict or object")
            ->required()
            ->check(CLI::IsMember({"export", "delete", "rectify", "restrict", "unrestrict", "object"}));
        register_->add_option("--note", note_, "a short note (no personal data: it is kept)");
        requests_ = gdpr_->add_subcommand("requests", "the register of requests: received, due, completed");
        auto* open = requests_->add_flag("--open", open_, "only requests not yet completed");
        requests_->add_flag("--overdue", overdue_, "only open requests past their due date")->excludes(open);
        requests_->add_option("--limit", limit_, "at most this many, the newest received (default 1000)");
    }

    int run(const Globals& g) override {
        if (gdpr_ == nullptr || !*gdpr_) return -1;
        json p = json::object();
        const std::string command = "gdpr " + std::string(gdpr_->get_subcommands().front()->get_name());
        if (!*requests_) {
            p["subject"] = subject_;
            // The daemon refuses a day in the future by its own clock.
            if (!addTime(command, "--received", received_, "received", p)) return kUsage;
        }
        json out;
        if (*export_) return runExport(g, command, p);
        if (*delete_) {
            if (int rc = call(g, command, "io.twofactor.Privacy.SubjectErase", p, out); rc >= 0) return rc;
            if (g.json) {
                std::printf("%s\n", out.dump().c_str());
                return kOk;
            }
            const json& e = out["erased"];
            std::printf("erased: %s request(s), %s delivery attempt(s), %s audit subject(s), %s opt-out(s), "
                        "%s outbox message(s) (register #%s)\n",
                        str(e, "requests").c_str(), str(e, "deliveries").c_str(), str(e, "auditRecords").c_str(),
                        str(e, "optOuts").c_str(), str(out, "outboxMessages").c_str(), str(out, "registerId").c_str());
            if (out["recipients"].empty()) std::printf("recipients to notify (Art. 19): none\n");
            else std::printf("recipients to notify (Art. 19):\n");
            for (const auto& r : out["recipients"]) {
                std::string ids;
                for (const auto& id : r["messageIds"]) ids += (ids.empty() ? "" : ", ") + id.get<std::string>();
                std::printf("  %s (%s): %s\n", str(r, "name").c_str(), str(r, "country").c_str(),
                            ids.empty() ? "no message ids" : ("message ids " + ids).c_str());
            }
            return kOk;
        }
        if (*rectify_) {
            p["to"] = to_;
            if (int rc = call(g, command, "io.twofactor.Privacy.SubjectRectify", p, out); rc >= 0) return rc;
            if (g.json) std::printf("%s\n", out.dump().c_str());
            else
                std::printf("rectified: %s request(s), %s fallback(s), %s opt-out(s) moved (register #%s)\n",
                            str(out["moved"], "requests").c_str(), str(out["moved"], "fallbacks").c_str(),
                            str(out["moved"], "optOuts").c_str(), str(out, "registerId").c_str());
            return kOk;
        }
        if (*restrict_ || *unrestrict_ || *object_) {
            const char* method = *restrict_     ? "io.twofactor.Privacy.SubjectRestrict"
                                 : *unrestrict_ ? "io.twofactor.Privacy.SubjectUnrestrict"
                                                : "io.twofactor.Privacy.SubjectObject";
            if (int rc = call(g, command, method, p, out); rc >= 0) return rc;
            if (g.json) {
                std::printf("%s\n", out.dump().c_str());
                return kOk;
            }
            const bool changed = out.value("changed", false);
            const char* state = *restrict_ ? "restricted" : *unrestrict_ ? "not restricted" : "objected";
            std::printf("%s%s (register #%s)\n", changed ? "" : "already ", state, str(out, "registerId").c_str());
            return kOk;
        }
        if (*register_) {
            p["kind"] = kind_;
            if (!note_.empty()) p["note"] = note_;
            if (int rc = call(g, command, "io.twofactor.Privacy.RegisterRequest", p, out); rc >= 0) return rc;
            if (g.json) std::printf("%s\n", out["request"].dump().c_str());
            else
                std::printf("#%s %s received %s, due %s\n", str(out["request"], "id").c_str(), kind_.c_str(),
                            day(out["request"].value("received", std::int64_t{0})).c_str(),
                            day(out["request"].value("due", std::int64_t{0})).c_str());
            return kOk;
        }
        // requests
        p = {{"limit", limit_}};
        if (open_) p["open"] = true;
        if (overdue_) p["overdue"] = true;
        if (int rc = call(g, command, "io.twofactor.Privacy.Requests", p, out); rc >= 0) return rc;
        for (const auto& q : out["requests"]) {
            if (g.json) {
                std::printf("%s\n", q.dump().c_str());  // JSON lines
                continue;
            }
            const std::string completed =
                q.contains("completed") ? day(q.value("completed", std::int64_t{0})) : (q.value("overdue", false) ? "OVERDUE" : "open");
            std::printf("#%-5s %-10s %s…  received %s  due %s  %-10s uid %-6s %s\n", str(q, "id").c_str(),
                        str(q, "kind").c_str(), str(q, "subject").substr(0, 12).c_str(),
                        day(q.value("received", std::int64_t{0})).c_str(), day(q.value("due", std::int64_t{0})).c_str(),
                        completed.c_str(), str(q, "uid").c_str(), str(q, "note").c_str());
        }
        return kOk;
    }

private:
    int runExport(const Globals& g, const std::string& command, const json& p) {
        // Refuse before asking the daemon: an existing file is never overwritten without --force.
        struct stat st {};
        if (!output_.empty() && !force_ && ::lstat(output_.c_str(), &st) == 0) {
            std::fprintf(stderr, "twofactor %s: %s already exists; it was left as it is (--force replaces it)\n",
                         command.c_str(), output_.c_str());
            return kUsage;
        }
        ProgressLine progress(command);
        progress.show("collecting...");
        json out;
        const int rc = call(g, command, "io.twofactor.Privacy.SubjectExport", p, out);
        progress.finish();
        if (rc >= 0) return rc;
        const std::string text = out["document"].dump(2) + "\n";
        if (out.value("empty", false))
            std::fprintf(stderr, "twofactor %s: nothing is held about that subject; the document says so\n",
                         command.c_str());
        const json& controller = out["document"]["context"]["controller"];
        if (!controller.is_object() || !controller.value("name", json()).is_string() ||
            !controller.value("contact", json()).is_string())
            std::fprintf(stderr,
                         "twofactor %s: warning: the export does not name the controller or how to reach them: set "
                         "[privacy] controller and contact in twofactord.toml (GDPR Art. 13(1)(a), 15)\n",
                         command.c_str());
        if (output_.empty()) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            return kOk;
        }
        PrivateFile file;
        std::string err;
        if (!file.create(output_, err) || !file.write(text) || !file.commit(force_, err)) {
            if (err.empty()) err = "cannot write " + output_ + ": " + file.writeError();
            std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), err.c_str());
            return kUsage;
        }
        if (!g.json) std::fprintf(stderr, "twofactor %s: wrote %s (register #%s)\n", command.c_str(), output_.c_str(),
                                  str(out, "registerId").c_str());
        return kOk;
    }

    CLI::App *gdpr_ = nullptr, *export_ = nullptr, *delete_ = nullptr, *rectify_ = nullptr, *restrict_ = nullptr,
             *unrestrict_ = nullptr, *object_ = nullptr, *register_ = nullptr, *requests_ = nullptr;
    std::string subject_, received_, output_, to_, kind_, note_;
    bool force_ = false, open_ = false, overdue_ = false;
    int limit_ = 1000;
};

}  // namespace

std::unique_ptr<CommandGroup> privacyCommands() { return std::make_unique<PrivacyCommands>(); }

}  // namespace twofactor::cli
