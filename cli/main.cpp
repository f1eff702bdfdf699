// twofactor: the command-line client of twofactord. Output on stdout is for
// scripts (an id, a status); errors are one line on stderr; the exit code
// says what happened (see twofactor(1)). Shared pieces: common.hpp; command
// groups in files of their own: audit.cpp, privacy.cpp (gdpr), maintenance.cpp (key, backup).
#include "build_config.h"
#include "cli/common.hpp"
#include "ipc/paths.hpp"

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

using namespace twofactor;
using namespace twofactor::cli;

namespace {

void printRequest(const json& r) {
    auto line = [](const char* k, const std::string& v) { std::printf("%-12s %s\n", k, v.c_str()); };
    line("id", str(r, "id"));
    line("app", str(r, "app"));
    if (r.value("fellBack", false)) {
        // Tried by WhatsApp, delivered by email: both, each with its destination.
        line("channel", "whatsapp, then email (fallback)");
        line("destination", str(r, "destination") + " (whatsapp), " + str(r, "fallbackDestination") + " (email)");
    } else {
        line("channel", str(r, "channel"));
        line("destination", str(r, "destination"));
        if (r.contains("fallbackDestination")) line("fallback", str(r, "fallbackDestination") + " (email, if WhatsApp fails)");
    }
    line("purpose", str(r, "purpose"));
    line("locale", str(r, "locale"));
    line("status", str(r, "status"));
    line("attempts", str(r, "attempts") + "/" + str(r, "maxAttempts"));
    line("sends", str(r, "sends") + "/" + str(r, "maxSends"));
    line("created", isoTime(r.value("createdAt", std::int64_t{0})));
    line("expires", isoTime(r.value("expiresAt", std::int64_t{0})));
    if (r.contains("reference")) line("reference", str(r, "reference"));
    if (r.contains("failure")) line("failure", str(r, "failure"));
}

// stdio rather than std::cin: iostreams cost every run their start-up.
bool readCodeFromStdin(std::string& code) {
    char* buf = nullptr;
    std::size_t capacity = 0;
    const ssize_t n = ::getline(&buf, &capacity, stdin);
    std::string line = n < 0 ? "" : std::string(buf, static_cast<std::size_t>(n));
    std::free(buf);
    if (n < 0) return false;
    if (!line.empty() && line.back() == '\n') line.pop_back();
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    std::size_t start = line.find_first_not_of(" \t");
    code = start == std::string::npos ? "" : line.substr(start);
    return true;
}

// Returned by a run built for one command whose parse failed: the whole
// tree parses again, and reports.
constexpr int kParseAgain = -2;

bool chosen(const CLI::App* command) { return command != nullptr && command->parsed(); }

// The default socket as --help states it: the user's own, then the system's,
// once when they are the same (root without XDG_RUNTIME_DIR).
std::string socketDefaults() {
    const std::string own = paths::defaultSocket(), system = paths::systemSocket();
    return own == system ? own : own + ", else " + system;
}

// Edit distance with adjacent transpositions ("sned" is one from "send").
std::size_t editDistance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

// The command closest to a mistyped word, if one is close enough to be meant.
std::string nearestCommand(const CLI::App& level, const std::string& word) {
    std::string best;
    std::size_t bestDistance = 3;  // at most two edits...
    for (const CLI::App* c : level.get_subcommands([](const CLI::App*) { return true; })) {
        const std::string& name = c->get_name();
        const std::size_t distance = name.rfind(word, 0) == 0 ? 1 : editDistance(word, name);
        if (distance < bestDistance && distance * 2 < std::max(word.size(), name.size())) {  // ...in a long word
            best = name;
            bestDistance = distance;
        }
    }
    return best;
}

// A parse error as one line, like every other error, naming the command it
// belongs to and that command's --help. A missing or mistyped command says
// so rather than CLI11's "A subcommand is required".
int reportUsageError(CLI::App& app, const CLI::ParseError& e) {
    CLI::App* level = &app;
    std::string command = "twofactor";
    for (auto chosen = level->get_subcommands(); !chosen.empty(); chosen = level->get_subcommands()) {
        level = chosen.front();
        command += " " + level->get_name();
    }
    const bool wantsCommand = level->get_require_subcommand_min() > 0 && level->get_subcommands().empty();
    if (!wantsCommand) {
        std::fprintf(stderr, "%s: %s (see %s --help)\n", command.c_str(), e.what(), command.c_str());
        return kUsage;
    }
    // The first word left over that is not an option or an option's value.
    std::string word;
    const std::vector<std::string> rest = app.remaining(true);
    for (std::size_t i = 0; i < rest.size() && word.empty(); ++i) {
        if (rest[i].empty() || rest[i][0] != '-') word = rest[i];
        else if (rest[i].find('=') == std::string::npos) ++i;
    }
    if (word.empty()) {
        std::string names;
        for (const CLI::App* c : level->get_subcommands([](const CLI::App*) { return true; }))
            names += (names.empty() ? "" : ", ") + c->get_name();
        std::fprintf(stderr, "%s: a command is required: %s (see %s --help)\n", command.c_str(), names.c_str(),
                     command.c_str());
        return kUsage;
    }
    const std::string nearest = nearestCommand(*level, word);
    std::fprintf(stderr, "%s: unknown command '%s'%s; see %s --help\n", command.c_str(), word.c_str(),
                 nearest.empty() ? "" : (" (did you mean '" + nearest + "'?)").c_str(), command.c_str());
    return kUsage;
}

}  // namespace

// --bind KEY=VALUE, repeated: the transaction a code is bound to. The daemon
// checks the entries in full; here only their shape, so that a typo is named.
bool bindingsJson(const char* command, const std::vector<std::string>& binds, json& out) {
    out = json::object();
    for (const auto& b : binds) {
        const auto eq = b.find('=');
        if (eq == std::string::npos || eq == 0) {
            std::fprintf(stderr, "twofactor %s: --bind takes KEY=VALUE, e.g. --bind 'amount=49.90 EUR'\n", command);
            return false;
        }
        const std::string key = b.substr(0, eq);
        if (out.contains(key)) {
            std::fprintf(stderr, "twofactor %s: --bind %s given twice\n", command, key.c_str());
            return false;
        }
        out[key] = b.substr(eq + 1);
    }
    return true;
}

int run(int argc, char** argv, const Selection& pick) {
    CLI::App app{"twofactor - issue and verify one-time passwords through twofactord", "twofactor"};
    app.require_subcommand(1);
    app.fallthrough();
    Globals g;
    app.add_option("--socket", g.socket, "twofactord's socket (default: " + socketDefaults() + ")")
        ->envname("TWOFACTOR_SOCKET");
    app.add_flag("--json", g.json, "print the full JSON objects instead of text");
    app.set_version_flag("--version", "twofactor " TWOFACTOR_VERSION);

    // send
    std::string sApp, sTo, sChannel, sPurpose, sLocale, sIp, sDevice, sReference;
    std::optional<std::int64_t> sTtl, sLength;
    bool sNoWait = false;
    std::string sFallback;
    std::vector<std::string> sBind;
    CLI::App* send = nullptr;
    if (pick.wants("send")) {
        send = app.add_subcommand("send", "issue a code and deliver it; prints the request id");
        send->add_option("--app", sApp, "the app (from the configuration)")->required();
        send->add_option("--to", sTo, "email address or phone number (E.164, e.g. +4915112345678)")->required();
        send->add_option("--channel", sChannel, "email or whatsapp (default: from the destination)")
            ->check(CLI::IsMember({"email", "whatsapp"}));
        send->add_option("--purpose", sPurpose, "login, verify or recovery (default login)")
            ->check(CLI::IsMember({"login", "verify", "recovery"}));
        send->add_option("--locale", sLocale, "message language, e.g. de or pt-BR");
        send->add_option("--ip", sIp, "the end user's IP address");
        send->add_option("--device", sDevice, "the end user's device or user agent");
        send->add_option("--reference", sReference, "your own reference, stored with the request");
        send->add_option("--ttl", sTtl, "lifetime in seconds (within the app's bounds)");
        send->add_option("--length", sLength, "number of digits (within the app's bounds)");
        send->add_flag("--no-wait", sNoWait, "return once the request is stored; deliver in the background");
        send->add_option("--fallback-email", sFallback,
                         "WhatsApp only: deliver to this address instead if WhatsApp fails for good");
        send->add_option("--bind", sBind,
                         "KEY=VALUE, repeatable: bind the code to this transaction (shown in the message; "
                         "verify must give the same)");
    }

    // verify
    std::string vId, vApp, vTo, vCode;
    std::vector<std::string> vBind;
    CLI::App* verify = nullptr;
    if (pick.wants("verify")) {
        verify = app.add_subcommand("verify", "check a code; prints the status; exit 0 only when approved");
        auto* idOpt = verify->add_option("--id", vId, "the request id");
        auto* appOpt = verify->add_option("--app", vApp, "the app (with --to: the newest pending request)");
        auto* toOpt = verify->add_option("--to", vTo, "the destination (with --app)");
        verify->add_option("--code", vCode, "the code, or - to read it from standard input")->required();
        verify->add_option("--bind", vBind, "KEY=VALUE, repeatable: the transaction the code was bound to at send");
        idOpt->excludes(appOpt)->excludes(toOpt);
        appOpt->needs(toOpt);
        toOpt->needs(appOpt);
    }

    std::string rid;
    CLI::App *status = nullptr, *cancel = nullptr, *resend = nullptr, *whoami = nullptr;
    if (pick.wants("status")) {
        status = app.add_subcommand("status", "show a request");
        status->add_option("id", rid, "the request id")->required();
    }
    if (pick.wants("cancel")) {
        cancel = app.add_subcommand("cancel", "cancel a pending request; its code no longer verifies");
        cancel->add_option("id", rid, "the request id")->required();
    }
    if (pick.wants("resend")) {
        resend = app.add_subcommand("resend", "send a new code for a pending request (the old one stops working)");
        resend->add_option("id", rid, "the request id")->required();
        resend->add_option("--bind", vBind, "KEY=VALUE, repeatable: a bound request's context, as given at send");
    }
    if (pick.wants("whoami")) whoami = app.add_subcommand("whoami", "show your uid and the roles twofactord grants you");

    std::string oDest, oReason;
    int oLimit = 1000;
    CLI::App *optout = nullptr, *optoutAdd = nullptr, *optoutRemove = nullptr;
    if (pick.wants("optout")) {
        optout = app.add_subcommand("optout", "the WhatsApp opt-out list (admin)");
        optout->require_subcommand(1);
        optoutAdd = optout->add_subcommand("add", "stop WhatsApp messages to a number");
        optoutAdd->add_option("number", oDest, "the phone number (E.164)")->required();
        optoutAdd->add_option("--reason", oReason, "why, for the record");
        optoutRemove = optout->add_subcommand("remove", "allow WhatsApp messages to a number again");
        optoutRemove->add_option("number", oDest, "the phone number (E.164)")->required();
        auto* optoutList = optout->add_subcommand("list", "show the opt-out list");
        optoutList->add_option("--limit", oLimit, "at most this many entries, the newest (default 1000)");
    }

    std::string dId, dSince, dUntil;
    int dLimit = 100;
    CLI::App* deliveries = nullptr;
    if (pick.wants("deliveries")) {
        deliveries = app.add_subcommand("deliveries", "show the delivery log and the sends still queued, by request or by time");
        deliveries->add_option("id", dId, "a request id (default: all requests)");
        deliveries->add_option("--since", dSince, std::string("from this time: ") + kTimeForms);
        deliveries->add_option("--until", dUntil, std::string("before this time: ") + kTimeForms);
        deliveries->add_option("--limit", dLimit, "at most this many attempts, the newest (default 100)");
    }

    std::string cSince, cUntil;
    int cLimit = 1000;
    CLI::App* calls = nullptr;
    if (pick.wants("calls")) {
        calls = app.add_subcommand("calls", "show the request log: Varlink calls to twofactord (admin)");
        calls->add_option("--since", cSince, std::string("from this time: ") + kTimeForms);
        calls->add_option("--until", cUntil, std::string("before this time: ") + kTimeForms);
        calls->add_option("--limit", cLimit, "at most this many calls, the newest (default 1000)");
    }

    bool rDryRun = false;
    CLI::App *retention = nullptr, *retentionRun = nullptr;
    if (pick.wants("retention")) {
        retention = app.add_subcommand("retention", "the retention purge (dpo, admin)");
        retention->require_subcommand(1);
        retentionRun = retention->add_subcommand("run", "purge now what the retention periods allow; prints rows per category");
        retentionRun->add_flag("--dry-run", rDryRun, "only count what would be purged; delete nothing");
        retention->add_subcommand("status", "show the last run, the next scheduled run and rows purged");
    }

    std::unique_ptr<CommandGroup> groups[] = {auditCommands(), privacyCommands(), maintenanceCommands(),
                                              apiKeyCommands(), observationCommands(), breachCommands(),
                                              suppressionCommands(), eventCommands()};
    for (auto& group : groups) group->add(app, pick);

    if (pick.everything() && argc == 2 && std::string_view(argv[1]) == "--list-commands") {
        std::printf("%s\n", commandTable(app).dump().c_str());
        return kOk;
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // Only the whole tree reports a parse error, so its messages, help and
        // version read the same however a run was built.
        if (!pick.everything()) return kParseAgain;
        if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
        return reportUsageError(app, e);
    }

    for (auto& group : groups)
        if (int rc = group->run(g); rc >= 0) return rc;

    json out;
    if (chosen(send)) {
        json p = {{"app", sApp}, {"destination", sTo}};
        if (!sChannel.empty()) p["channel"] = sChannel;
        if (!sPurpose.empty()) p["purpose"] = sPurpose;
        if (!sLocale.empty()) p["locale"] = sLocale;
        if (!sIp.empty()) p["clientIp"] = sIp;
        if (!sDevice.empty()) p["device"] = sDevice;
        if (!sReference.empty()) p["reference"] = sReference;
        if (sTtl) p["ttl"] = *sTtl;
        if (sLength) p["length"] = *sLength;
        if (sNoWait) p["wait"] = false;
        if (!sFallback.empty()) {
            // Caught here because only this side knows the send's channel for
            // certain before anything is stored; the daemon checks the rest.
            if (sChannel == "email" || (sChannel.empty() && sTo.find('@') != std::string::npos)) {
                std::fprintf(stderr, "twofactor send: --fallback-email applies only to a WhatsApp send; this one goes "
                                     "by email already\n");
                return kUsage;
            }
            p["fallbackEmail"] = sFallback;
        }
        if (!sBind.empty()) {
            json context;
            if (!bindingsJson("send", sBind, context)) return kUsage;
            p["context"] = context;
        }
        if (int rc = call(g, "send", "io.twofactor.Otp.Send", p, out); rc >= 0) return rc;
        if (!g.json && str(out, "delivery") == "retrying")
            std::fprintf(stderr, "twofactor send: not delivered yet; retrying in the background (see twofactor deliveries %s)\n",
                         str(out["request"], "id").c_str());
        if (g.json) std::printf("%s\n", out.dump().c_str());
        else std::printf("%s\n", str(out["request"], "id").c_str());
        return kOk;
    }
    if (chosen(optout)) {
        if (*optoutAdd) {
            json p = {{"destination", oDest}};
            if (!oReason.empty()) p["reason"] = oReason;
            if (int rc = call(g, "optout add", "io.twofactor.OptOut.Add", p, out); rc >= 0) return rc;
            if (g.json) std::printf("%s\n", out["entry"].dump().c_str());
            return kOk;
        }
        if (*optoutRemove) {
            if (int rc = call(g, "optout remove", "io.twofactor.OptOut.Remove", {{"destination", oDest}}, out); rc >= 0)
                return rc;
            if (g.json) std::printf("%s\n", out.dump().c_str());
            if (!out.value("removed", false)) {
                std::fprintf(stderr, "twofactor optout remove: that number is not on the opt-out list\n");
                return kNotFound;
            }
            return kOk;
        }
        if (int rc = call(g, "optout list", "io.twofactor.OptOut.List", {{"limit", oLimit}}, out); rc >= 0) return rc;
        for (const auto& e : out["entries"]) {
            if (g.json) std::printf("%s\n", e.dump().c_str());
            else
                std::printf("%s  %s  %-7s %s\n", isoTime(e.value("createdAt", std::int64_t{0})).c_str(),
                            str(e, "destination").c_str(), str(e, "source").c_str(), str(e, "reason").c_str());
        }
        return kOk;
    }
    if (chosen(retention)) {
        static const char* const kCategories[] = {"codeHashes",   "deliveries",   "requestLog",      "clientData",
                                                  "rateCounters", "fraudSets",    "subjectFailures", "authMetadata",
                                                  "auditRecords", "removedApps"};
        auto printCounts = [](const json& counts) {
            for (const char* k : kCategories) std::printf("%-16s %s\n", k, str(counts, k).c_str());
        };
        if (*retentionRun) {
            ProgressLine progress("retention run");
            progress.show(rDryRun ? "counting..." : "purging...");
            json p = json::object();
            if (rDryRun) p["dryRun"] = true;
            const auto onProgress = [&](const json& partial) {
                std::int64_t n = 0;
                for (const auto& [k, v] : partial["counts"].items()) n += v.get<std::int64_t>();
                progress.show(std::string(rDryRun ? "counted " : "purged ") + std::to_string(n) + " rows so far");
            };
            const int rc = callMore(g, "retention run", "io.twofactor.Privacy.RetentionRun", p,
                                    progress.enabled() ? std::function<void(const json&)>(onProgress) : nullptr, out);
            progress.finish();
            if (rc >= 0) return rc;
            if (g.json) std::printf("%s\n", out.dump().c_str());
            else {
                if (rDryRun) std::printf("dry run: nothing was deleted; would purge:\n");
                printCounts(out["counts"]);
            }
            return kOk;
        }
        if (int rc = call(g, "retention status", "io.twofactor.Privacy.RetentionStatus", json::object(), out); rc >= 0)
            return rc;
        if (g.json) {
            std::printf("%s\n", out.dump().c_str());
            return kOk;
        }
        std::printf("schedule  %s (UTC)\n", str(out, "schedule").c_str());
        const std::int64_t next = out.value("nextRun", std::int64_t{0});
        std::printf("next run  %s\n", next ? isoTime(next).c_str() : "never");
        if (!out.contains("lastStarted")) {
            std::printf("last run  never\n");
            return kOk;
        }
        std::printf("last run  %s to %s (%s)\n", isoTime(out.value("lastStarted", std::int64_t{0})).c_str(),
                    isoTime(out.value("lastFinished", std::int64_t{0})).c_str(), str(out, "lastTrigger").c_str());
        printCounts(out["lastCounts"]);
        return kOk;
    }
    if (chosen(calls)) {
        json p = {{"limit", cLimit}};
        if (!addTime("calls", "--since", cSince, "since", p) || !addTime("calls", "--until", cUntil, "until", p))
            return kUsage;
        if (int rc = call(g, "calls", "io.twofactor.Daemon.RequestLog", p, out); rc >= 0) return rc;
        for (const auto& c : out["entries"]) {
            if (g.json) {
                std::printf("%s\n", c.dump().c_str());  // JSON lines
                continue;
            }
            std::printf("%s  uid %-6s %6sms  %-40s %s\n", isoTime(c.value("time", std::int64_t{0})).c_str(),
                        str(c, "uid").c_str(), str(c, "durationMs").c_str(), str(c, "method").c_str(),
                        str(c, "result").c_str());
        }
        return kOk;
    }
    if (chosen(deliveries)) {
        json p = {{"limit", dLimit}};
        if (!dId.empty()) p["id"] = dId;
        if (!addTime("deliveries", "--since", dSince, "since", p) || !addTime("deliveries", "--until", dUntil, "until", p))
            return kUsage;
        if (int rc = call(g, "deliveries", "io.twofactor.Otp.Deliveries", p, out); rc >= 0) return rc;
        const json jobs = out.contains("jobs") ? out["jobs"] : json::array();
        if (g.json) {
            for (const auto& a : out["attempts"]) std::printf("%s\n", a.dump().c_str());  // JSON lines
            // A job still queued follows, as a line with outcome "queued".
            for (auto j : jobs) {
                j["outcome"] = "queued";
                std::printf("%s\n", j.dump().c_str());
            }
            return kOk;
        }
        for (const auto& a : out["attempts"]) {
            std::string detail = a.contains("providerMessageId") ? str(a, "providerMessageId") : "";
            if (a.contains("error")) detail = str(a, "errorClass") + ": " + str(a, "error");
            if (a.value("ambiguous", false)) detail += " (ambiguous: may have been delivered)";
            if (a.contains("providerStatus"))
                detail += " [" + str(a, "providerStatus") + " " + isoTime(a.value("providerStatusAt", std::int64_t{0})) +
                          (a.contains("providerError") ? ": " + str(a, "providerError") : "") + "]";
            std::printf("%s  %s  %s.%s  %-7s %-6s %-8s %5s %6sms  %s\n", isoTime(a.value("at", std::int64_t{0})).c_str(),
                        str(a, "requestId").c_str(), str(a, "send").c_str(), str(a, "attempt").c_str(),
                        str(a, "channel").c_str(), str(a, "driver").c_str(), str(a, "outcome").c_str(),
                        a.contains("statusCode") ? str(a, "statusCode").c_str() : "-", str(a, "durationMs").c_str(),
                        detail.c_str());
        }
        for (const auto& j : jobs) {
            std::string detail = "next try " + isoTime(j.value("nextAttemptAt", std::int64_t{0}));
            if (j.contains("holder"))
                detail += ", held by " + str(j, "holder") + " until " + isoTime(j.value("leaseUntil", std::int64_t{0}));
            if (j.contains("lastError")) detail += "; last error " + str(j, "lastError");
            std::printf("queued                %s  %s.%s  %s\n", str(j, "requestId").c_str(), str(j, "send").c_str(),
                        str(j, "attempts").c_str(), detail.c_str());
        }
        return kOk;
    }
    if (chosen(verify)) {
        if (vId.empty() && vApp.empty()) {
            std::fprintf(stderr, "twofactor verify: give --id, or --app and --to\n");
            return kUsage;
        }
        if (vCode == "-" && !readCodeFromStdin(vCode)) {
            std::fprintf(stderr, "twofactor verify: --code -: nothing to read on standard input\n");
            return kUsage;
        }
        json p = {{"code", vCode}};
        if (!vId.empty()) p["id"] = vId;
        else {
            p["app"] = vApp;
            p["destination"] = vTo;
        }
        if (!vBind.empty()) {
            json context;
            if (!bindingsJson("verify", vBind, context)) return kUsage;
            p["context"] = context;
        }
        if (int rc = call(g, "verify", "io.twofactor.Otp.Verify", p, out); rc >= 0) return rc;
        const bool approved = out.value("approved", false);
        if (g.json) std::printf("%s\n", out.dump().c_str());
        // "approved" on stdout only when this very call approved the code: a
        // replayed code must not read as success to a script that checks stdout.
        else if (!approved && str(out, "status") == "approved") std::printf("already-approved\n");
        else std::printf("%s\n", str(out, "status").c_str());
        return approved ? kOk : kRejected;
    }
    if (chosen(status) || chosen(cancel) || chosen(resend)) {
        const std::string command = chosen(status) ? "status" : chosen(cancel) ? "cancel" : "resend";
        const std::string method = "io.twofactor.Otp." + std::string(chosen(status) ? "Status" : chosen(cancel) ? "Cancel" : "Resend");
        json p = {{"id", rid}};
        if (chosen(resend) && !vBind.empty()) {
            json context;
            if (!bindingsJson("resend", vBind, context)) return kUsage;
            p["context"] = context;
        }
        if (int rc = call(g, command, method.c_str(), p, out); rc >= 0) return rc;
        if (g.json) std::printf("%s\n", (chosen(resend) ? out : out["request"]).dump().c_str());
        else if (chosen(status)) printRequest(out["request"]);
        else if (chosen(cancel)) std::printf("%s\n", str(out["request"], "status").c_str());
        else std::printf("%s\n", str(out["request"], "id").c_str());
        return kOk;
    }
    if (chosen(whoami)) {
        if (int rc = call(g, "whoami", "io.twofactor.Daemon.WhoAmI", json::object(), out); rc >= 0) return rc;
        if (g.json) {
            std::printf("%s\n", out.dump().c_str());
        } else {
            std::string roles;
            for (const auto& r : out["roles"]) roles += (roles.empty() ? "" : ", ") + r.get<std::string>();
            // A uid without a passwd entry has no user name to show.
            const std::string user = str(out, "user");
            std::printf("uid %s%s\nroles %s\n", str(out, "uid").c_str(), user.empty() ? "" : (" (" + user + ")").c_str(),
                        roles.empty() ? "(none)" : roles.c_str());
        }
        return kOk;
    }
    return kUsage;
}

int main(int argc, char** argv) {
    const Selection one = Selection::fromArguments(argc, argv);
    if (!one.everything())
        if (const int rc = run(argc, argv, one); rc != kParseAgain) return rc;
    return run(argc, argv, Selection::all());
}
