// twofactor apikey create|list|revoke: the HTTPS API's keys (admin).
#include "cli/common.hpp"

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace twofactor::cli {

namespace {

std::string joinScopes(const json& scopes) {
    std::string out;
    for (const auto& s : scopes) out += (out.empty() ? "" : ",") + s.get<std::string>();
    return out;
}

class ApiKeyCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (!pick.wants("apikey")) return;
        apikey_ = app.add_subcommand("apikey", "API keys of the HTTPS API (admin)");
        apikey_->require_subcommand(1);
        create_ = apikey_->add_subcommand("create", "create a key and print it, this once");
        create_->add_option("--app", app_, "the app the key acts for")->required();
        create_->add_option("--scope", scope_, "what it may do: send,verify,status,cancel (comma-separated)")->required();
        create_->add_option("--expires", expires_, std::string("refused from this time on: ") + kTimeForms);
        create_->add_option("--note", note_, "a note shown by apikey list (who uses the key)");
        list_ = apikey_->add_subcommand("list", "show keys, newest first (never their secret)");
        list_->add_option("--limit", limit_, "at most this many keys (default 1000)");
        revoke_ = apikey_->add_subcommand("revoke", "refuse a key from now on");
        revoke_->add_option("id", id_, "the key's id (the part after tfk_, or the whole key)")->required();
    }

    int run(const Globals& g) override {
        if (apikey_ == nullptr || !*apikey_) return -1;
        if (*create_) return create(g);
        if (*revoke_) return revoke(g);
        return list(g);
    }

private:
    int create(const Globals& g) {
        const std::string command = "apikey create";
        json p = {{"app", app_}, {"scopes", json::array()}};
        std::stringstream in(scope_);
        for (std::string s; std::getline(in, s, ',');) p["scopes"].push_back(s);
        if (!note_.empty()) p["note"] = note_;
        if (!addTime(command, "--expires", expires_, "expiresAt", p)) return kUsage;
        json out;
        if (int rc = call(g, command, "io.twofactor.ApiKey.Create", p, out); rc >= 0) return rc;
        if (g.json) {
            std::printf("%s\n", out.dump().c_str());
            return kOk;
        }
        // The key on stdout alone, so `KEY=$(twofactor apikey create ...)` works; the rest on stderr.
        std::printf("%s\n", str(out, "token").c_str());
        std::fprintf(stderr, "API key %s for app %s (%s). It is shown only now: store it in the application's secrets.\n",
                     str(out["key"], "id").c_str(), str(out["key"], "app").c_str(),
                     joinScopes(out["key"]["scopes"]).c_str());
        return kOk;
    }

    int revoke(const Globals& g) {
        std::string id = id_;
        // A whole key pasted in: its id is between "tfk_" and the next "_".
        if (id.rfind("tfk_", 0) == 0) id = id.substr(4, id.find('_', 4) - 4);
        json out;
        if (int rc = call(g, "apikey revoke", "io.twofactor.ApiKey.Revoke", {{"id", id}}, out); rc >= 0) return rc;
        if (g.json) std::printf("%s\n", out.dump().c_str());
        else std::printf("revoked %s (app %s)\n", str(out["key"], "id").c_str(), str(out["key"], "app").c_str());
        return kOk;
    }

    int list(const Globals& g) {
        json out;
        if (int rc = call(g, "apikey list", "io.twofactor.ApiKey.List", {{"limit", limit_}}, out); rc >= 0) return rc;
        if (g.json) {
            for (const auto& k : out["keys"]) std::printf("%s\n", k.dump().c_str());  // JSON lines
            return kOk;
        }
        const auto when = [](const json& k, const char* key) {
            return k.contains(key) ? isoTime(k[key].get<std::int64_t>()) : std::string("-");
        };
        for (const auto& k : out["keys"]) {
            const std::string state = k.contains("revokedAt") ? "revoked" : "active";
            std::printf("%-16s %-12s %-26s %-7s created %s expires %s last used %s%s%s\n", str(k, "id").c_str(),
                        str(k, "app").c_str(), joinScopes(k["scopes"]).c_str(), state.c_str(),
                        when(k, "createdAt").c_str(), when(k, "expiresAt").c_str(), when(k, "lastUsedAt").c_str(),
                        k.value("note", std::string()).empty() ? "" : "  ", k.value("note", std::string()).c_str());
        }
        return kOk;
    }

    CLI::App* apikey_ = nullptr;
    CLI::App* create_ = nullptr;
    CLI::App* list_ = nullptr;
    CLI::App* revoke_ = nullptr;
    std::string app_, scope_, expires_, note_, id_;
    int limit_ = 1000;
};

}  // namespace

std::unique_ptr<CommandGroup> apiKeyCommands() { return std::make_unique<ApiKeyCommands>(); }

}  // namespace twofactor::cli
