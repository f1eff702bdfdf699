// twofactord's Varlink server: accepts connections on a Unix socket, frames
// and checks calls, authorises them from SO_PEERCRED, and dispatches through
// the one method table.
#pragma once

#include "config/config.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace twofactor::server {

// Who may call a method. Admin may call everything; Anyone needs no role.
enum class Access { Anyone, Operator, Dpo, Admin };

struct Peer {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    std::string user;
    std::set<config::Role> roles;
    [[nodiscard]] bool may(Access access) const;
};

// Resolves the roles the configuration grants a uid/gid (user names, numeric
// uids, group names, gids, supplementary groups).
[[nodiscard]] Peer resolvePeer(const config::Config& config, uid_t uid, gid_t gid, pid_t pid);

// error empty = success with `parameters`; otherwise a Varlink error name.
using Respond = std::function<void(std::string error, nlohmann::json parameters)>;
using Handler = std::function<void(const Peer& peer, const nlohmann::json& parameters, Respond respond)>;

// Sends an intermediate reply ("continues": true) when the caller asked for
// more; a no-op otherwise. Any thread. Long operations report progress with it.
using Progress = std::function<void(nlohmann::json parameters)>;
using StreamHandler =
    std::function<void(const Peer& peer, const nlohmann::json& parameters, Progress progress, Respond respond)>;

struct MethodEntry {
    std::string name;  // fully qualified: io.twofactor.Otp.Send
    Access access;
    Handler handler;       // one reply
    StreamHandler stream;  // or: progress replies while it runs, then one final reply
    // A stream whose replies carry the result itself (a backup's data), not
    // just progress: a call without "more" gets org.varlink.service.ExpectedMore.
    bool requiresMore = false;
};

struct DaemonOptions {
    std::string clockFile;  // tests: read the time from this file (FileClock)
};

// Runs the daemon until SIGTERM or SIGINT. Returns the process exit code.
int runDaemon(const config::Config& config, const DaemonOptions& options);

// The method names every interface file declares, for checking the table against the IDL.
[[nodiscard]] std::vector<std::string> declaredMethods();

// Every method the daemon serves and who may call it, in name order, from the
// one method table: `twofactord --print-methods` prints it, and the man page's
// access table is generated from that.
struct MethodAccess {
    std::string name;
    Access access;
};
[[nodiscard]] std::vector<MethodAccess> methodTable();
// Every route of the HTTPS API as (method, pattern), from the one route
// table; the OpenAPI document must list exactly these.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> httpRoutes(const config::Config& config);

// "anyone", "operator", "dpo" or "admin".
[[nodiscard]] const char* accessName(Access access);

}  // namespace twofactor::server
