// twofactor audit list|export|verify|checkpoint (dpo, admin; verify admin only).
#include "cli/common.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace twofactor::cli {

namespace {

// A checkpoint file holds what `audit checkpoint` printed, as text or --json:
// one head per chain (a few dozen on a large cluster).
constexpr std::size_t kMaxCheckpointFile = 65536;

bool isHash(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

// Checks one head, with `where` naming it in the error ("chain 2: ").
bool checkHead(const json& c, const std::string& where, std::string& error) {
    if (c["seq"].get<std::int64_t>() < 0) {
        error = where + "seq is negative";
        return false;
    }
    if (!isHash(c["hash"].get<std::string>())) {
        error = where + "hash is not 64 lower-case hex digits";
        return false;
    }
    return true;
}

// A head from JSON: {"chain"?, "seq", "hash", "time"}.
std::optional<json> headFromJson(const json& j, std::string& error) {
    if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_integer() || !j.contains("hash") ||
        !j["hash"].is_string() || !j.contains("time") || !j["time"].is_number_integer()) {
        error = "the JSON lacks seq, hash or time";
        return std::nullopt;
    }
    if (j.contains("chain") && (!j["chain"].is_number_integer() || j["chain"].get<std::int64_t>() < 0)) {
        error = "the JSON's chain is not a chain number";
        return std::nullopt;
    }
    return json{{"chain", j.value("chain", std::int64_t{0})},
                {"seq", j["seq"].get<std::int64_t>()},
                {"hash", j["hash"].get<std::string>()},
                {"time", j["time"].get<std::int64_t>()}};
}

// A non-negative number, or nothing.
std::optional<std::int64_t> number(const std::string& value) {
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || n < 0) return std::nullopt;
    return static_cast<std::int64_t>(n);
}

// The checkpoint (every chain's head) as Verify takes it, or an error naming
// what is wrong. The forms written before there were chains (one head, no
// chain line or field) are chain 0's.
std::optional<json> parseCheckpoint(const std::string& text, std::string& error) {
    json heads = json::array();
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') {
        json j = json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            error = "not valid JSON";
            return std::nullopt;
        }
        if (j.contains("checkpoint")) j = j["checkpoint"];
        if (j.contains("heads")) {
            if (!j["heads"].is_array() || j["heads"].empty()) {
                error = "the JSON's heads is not a list of chain heads";
                return std::nullopt;
            }
            for (const auto& h : j["heads"]) {
                auto c = headFromJson(h, error);
                if (!c) return std::nullopt;
                heads.push_back(*c);
            }
        } else {
            auto c = headFromJson(j, error);
            if (!c) return std::nullopt;
            heads.push_back(*c);
        }
    } else {
        std::istringstream in(text);
        std::string line;
        json c = {{"chain", 0}};
        bool any = false;
        auto finish = [&]() {
            const std::string where = "chain " + c["chain"].dump() + ": ";
            for (const char* key : {"seq", "hash", "time"})
                if (!c.contains(key)) {
                    error = where + "no " + key + " line";
                    return false;
                }
            heads.push_back(c);
            return true;
        };
        while (std::getline(in, line)) {
            std::istringstream words(line);
            std::string key, value;
            if (!(words >> key) || key[0] == '#') continue;
            words >> value;
            if (key == "chain") {
                if (any && !finish()) return std::nullopt;
                const auto n = number(value);
                if (!n) {
                    error = "chain '" + value + "' is not a chain number";
                    return std::nullopt;
                }
                c = {{"chain", *n}};
            } else if (key == "seq") {
                const auto n = number(value);
                if (!n) {
                    error = "seq '" + value + "' is not a record number";
                    return std::nullopt;
                }
                c["seq"] = *n;
            } else if (key == "hash") {
                c["hash"] = value;
            } else if (key == "time") {
                const auto t = parseTime(value);
                if (!t) {
                    error = "time '" + value + "' is not a time (" + kTimeForms + ")";
                    return std::nullopt;
                }
                c["time"] = *t;
            } else {
                error = "unknown line '" + key + "' (expected chain, seq, hash and time)";
                return std::nullopt;
            }
            any = true;
        }
        if (!any) {
            error = "no seq line";
            return std::nullopt;
        }
        if (!finish()) return std::nullopt;
    }
    for (std::size_t i = 0; i < heads.size(); ++i) {
        const std::string where = heads.size() > 1 ? "chain " + heads[i]["chain"].dump() + ": " : "";
        if (!checkHead(heads[i], where, error)) return std::nullopt;
        for (std::size_t k = 0; k < i; ++k)
            if (heads[k]["chain"] == heads[i]["chain"]) {
                error = "chain " + heads[i]["chain"].dump() + " is named twice";
                return std::nullopt;
            }
    }
    return heads;
}

class AuditCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("audit")) return;
        audit_ = app.add_subcommand("audit", "the audit log (dpo, admin)");
        audit_->require_subcommand(1);
        list_ = audit_->add_subcommand("list", "show audit records, oldest first");
        list_->add_option("--since", since_, std::string("from this time: ") + kTimeForms);
        list_->add_option("--until", until_, std::string("before this time: ") + kTimeForms);
        list_->add_option("--app", app_, "only records of this app");
        list_->add_option("--outcome", outcome_, "only this outcome (a prefix when it ends in ':', e.g. refused:)");
        list_->add_option("--limit", limit_, "at most this many records, the newest (default 1000)");
        verify_ = audit_->add_subcommand(
            "verify", "check every hash chain and its sealed anchor; exit 1 at the first broken record (admin)");
        verify_->add_option("--checkpoint", checkpointFile_,
                            "also prove that no record up to this checkpoint (a file holding what `audit checkpoint` "
                            "printed) was cut");
        checkpoint_ = audit_->add_subcommand(
            "checkpoint",
            "print each chain's head (chain, seq, hash, time), to keep outside this host for `verify --checkpoint`");
        export_ = audit_->add_subcommand("export", "print records as JSON lines, for investigations");
        export_->add_option("--from", from_, std::string("from this time: ") + kTimeForms);
        export_->add_option("--to", to_, std::string("before this time: ") + kTimeForms);
    }

    int run(const Globals& g) override {
        if (audit_ == nullptr || !*audit_) return -1;
        if (*verify_) return verify(g);
        if (*checkpoint_) return checkpoint(g);
        return listOrExport(g);
    }

private:
    int verify(const Globals& g) {
        const std::string command = "audit verify";
        json p = json::object();
        if (!checkpointFile_.empty()) {
            // Read with the user's own rights: the daemon never opens a client's path.
            std::ifstream in(checkpointFile_, std::ios::binary);
            if (!in) {
                std::fprintf(stderr, "twofactor %s: --checkpoint: cannot read %s: %s\n", command.c_str(),
                             checkpointFile_.c_str(), std::strerror(errno));
                return kUsage;
            }
            std::string text(kMaxCheckpointFile + 1, '\0');
            in.read(text.data(), static_cast<std::streamsize>(text.size()));
            text.resize(static_cast<std::size_t>(in.gcount()));
            std::string error;
            std::optional<json> c;
            if (text.size() > kMaxCheckpointFile) error = "larger than a checkpoint can be";
            else c = parseCheckpoint(text, error);
            if (!c) {
                std::fprintf(stderr, "twofactor %s: --checkpoint: %s is not a checkpoint: %s\n", command.c_str(),
                             checkpointFile_.c_str(), error.c_str());
                return kUsage;
            }
            p["checkpoint"] = *c;
        }
        json out;
        if (int rc = call(g, command, "io.twofactor.Audit.Verify", p, out); rc >= 0) return rc;
        if (g.json) std::printf("%s\n", out.dump().c_str());
        const json chains = out.value("chains", json::array());
        const bool several = chains.size() > 1 || (chains.size() == 1 && chains[0].value("chain", 0) != 0);
        if (out.value("ok", false)) {
            if (!g.json) {
                std::printf("ok %s records", str(out, "records").c_str());
                if (several) {
                    std::printf(" in %zu chains", chains.size());
                    std::int64_t cut = 0;
                    for (const auto& c : chains) cut += c.value("firstSeq", std::int64_t{1}) > 1;
                    if (cut > 0) std::printf(" (%lld with older records cut by retention, sealed)", static_cast<long long>(cut));
                } else if (out.value("firstSeq", std::int64_t{1}) > 1) {
                    std::printf(" from seq %s (older ones cut by retention, sealed)", str(out, "firstSeq").c_str());
                }
                if (out.value("erased", std::int64_t{0}) > 0)
                    std::printf(", %s with an erased subject", str(out, "erased").c_str());
                const std::string match = out.value("checkpoint", std::string());
                const json& heads = p.contains("checkpoint") ? p["checkpoint"] : json::array();
                const std::string which = heads.size() == 1 ? "checkpoint seq " + heads[0]["seq"].dump()
                                                            : "checkpoint of " + std::to_string(heads.size()) + " chains";
                if (match == "matched") std::printf("; %s matches", which.c_str());
                else if (match == "pruned")
                    std::printf("; %s matches where retention has not cut it (older records cut, sealed)", which.c_str());
                std::printf("\n");
            }
            return kOk;
        }
        if (!g.json) {
            std::printf("broken at seq %s", str(out, "firstBroken").c_str());
            if (several) std::printf(" of chain %s", str(out, "brokenChain").c_str());
            std::printf(": %s\n", str(out, "reason").c_str());
        }
        return kRejected;
    }

    int checkpoint(const Globals& g) {
        json out;
        if (int rc = call(g, "audit checkpoint", "io.twofactor.Audit.Checkpoint", json::object(), out); rc >= 0)
            return rc;
        if (g.json) {
            std::printf("%s\n", json{{"heads", out["heads"]}}.dump().c_str());
            return kOk;
        }
        for (const auto& c : out["heads"])
            std::printf("chain %s\nseq %s\nhash %s\ntime %s\n", str(c, "chain").c_str(), str(c, "seq").c_str(),
                        str(c, "hash").c_str(), isoTime(c.value("time", std::int64_t{0})).c_str());
        return kOk;
    }

    int listOrExport(const Globals& g) {
        const bool listing = static_cast<bool>(*list_);
        const std::string command = listing ? "audit list" : "audit export";
        json p = json::object();
        const bool timesOk = listing ? addTime(command, "--since", since_, "since", p) &&
                                           addTime(command, "--until", until_, "until", p)
                                     : addTime(command, "--from", from_, "from", p) && addTime(command, "--to", to_, "to", p);
        if (!timesOk) return kUsage;
        if (listing) {
            p["limit"] = limit_;
            if (!app_.empty()) p["app"] = app_;
            if (!outcome_.empty()) p["outcome"] = outcome_;
        }
        const char* method = listing ? "io.twofactor.Audit.List" : "io.twofactor.Audit.Export";
        json out;
        if (int rc = call(g, command, method, p, out); rc >= 0) return rc;
        if (g.json || !listing) {
            for (const auto& r : out["records"]) std::printf("%s\n", r.dump().c_str());  // JSON lines
            return kOk;
        }
        // Columns as wide as their widest value (at least the usual width),
        // so a long outcome or app name does not shift the columns after it.
        // A record of a chain other than 0 shows as chain:seq.
        auto field = [](const json& r, const char* key) {
            if (std::string_view(key) == "seq" && r.value("chain", std::int64_t{0}) != 0)
                return str(r, "chain") + ":" + str(r, "seq");
            return r.contains(key) ? str(r, key) : "-";
        };
        static const char* const kColumns[] = {"seq", "event", "outcome", "app", "uid", "requestId"};
        int width[] = {6, 17, 22, 8, 6, 24};
        for (const auto& r : out["records"])
            for (std::size_t i = 0; i < std::size(kColumns); ++i)
                width[i] = std::max(width[i], static_cast<int>(field(r, kColumns[i]).size()));
        for (const auto& r : out["records"])
            std::printf("%*s  %s  %-*s %-*s %-*s uid %-*s %-*s %s\n", width[0], field(r, "seq").c_str(),
                        isoTime(r.value("time", std::int64_t{0})).c_str(), width[1], field(r, "event").c_str(), width[2],
                        field(r, "outcome").c_str(), width[3], field(r, "app").c_str(), width[4],
                        field(r, "uid").c_str(), width[5], field(r, "requestId").c_str(), str(r, "detail").c_str());
        return kOk;
    }

    CLI::App* audit_ = nullptr;
    CLI::App* list_ = nullptr;
    CLI::App* verify_ = nullptr;
    CLI::App* checkpoint_ = nullptr;
    CLI::App* export_ = nullptr;
    std::string since_, until_, app_, outcome_, from_, to_, checkpointFile_;
    int limit_ = 1000;
};

}  // namespace

std::unique_ptr<CommandGroup> auditCommands() { return std::make_unique<AuditCommands>(); }

}  // namespace twofactor::cli
