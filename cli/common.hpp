// What every twofactor command shares: exit codes, the daemon call, errors
// as one line on stderr, time formats.
#pragma once

#include "ipc/client.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::cli {

using json = nlohmann::json;

// Exit codes: the contract scripts rely on (twofactor(1)).
enum Exit : int {
    kOk = 0,
    kRejected = 1,
    kUsage = 2,
    kUnreachable = 3,
    kDenied = 4,
    kPolicy = 5,
    kDeliveryFailed = 6,
    kNotFound = 7,
};

struct Globals {
    std::string socket;
    bool json = false;
};

[[nodiscard]] std::string str(const json& p, const char* key);
[[nodiscard]] std::string isoTime(std::int64_t t);
// Every time option (--since, --until, --from, --to, --received) takes the
// same forms: Unix seconds, YYYY-MM-DD (midnight UTC), or RFC 3339 with a
// zone ("2026-11-26T03:00:00Z", "2026-11-26T04:00:00.5+01:00").
inline constexpr const char* kTimeForms = "Unix seconds, YYYY-MM-DD or RFC 3339 (2026-11-26T03:00:00Z)";
[[nodiscard]] std::optional<std::int64_t> parseTime(std::string_view text);
// Sets params[key] from a time option's text (nothing when empty); false,
// with the reason on stderr, when the text is not a time.
[[nodiscard]] bool addTime(const std::string& command, const char* flag, const std::string& text, const char* key,
                           json& params);
// One line naming what failed and why; returns the exit code for it.
int reportError(const std::string& command, const ipc::Reply& reply);

// Calls the daemon; on success fills `out` and returns -1, else an exit code.
int call(const Globals& g, const std::string& command, const char* method, const json& params, json& out);
// The same, asking for progress: each intermediate reply goes to onProgress.
int callMore(const Globals& g, const std::string& command, const char* method, const json& params,
             const std::function<void(const json&)>& onProgress, json& out);

// Progress on stderr, only when it is a terminal: one line rewritten in place.
class ProgressLine {
public:
    explicit ProgressLine(std::string command);
    ~ProgressLine();
    [[nodiscard]] bool enabled() const { return enabled_; }
    void show(const std::string& text);
    void finish();

private:
    std::string command_;
    bool enabled_;
    bool shown_ = false;
};

// A file the CLI writes for the user (a backup, a GDPR export): created
// 0600 as a temporary file next to the target, so that the target only ever
// appears complete; moved into place by commit (rename over it with force,
// else link, which fails if it exists). An interrupt (SIGINT, SIGTERM,
// SIGHUP) or any failure removes the temporary file.
class PrivateFile {
public:
    // Whether the target's directory exists, without writing anything.
    static bool checkTarget(const std::string& target, std::string& error);
    // Creates the temporary file; on failure `error` says why.
    bool create(const std::string& target, std::string& error);
    ~PrivateFile();
    bool write(const unsigned char* data, std::size_t size);
    bool write(const std::vector<unsigned char>& data) { return write(data.data(), data.size()); }
    bool write(std::string_view text) {
        return write(reinterpret_cast<const unsigned char*>(text.data()), text.size());
    }
    const std::string& writeError() const { return writeError_; }
    // fsync, then move into place.
    bool commit(bool force, std::string& error);
    void discard();

private:
    std::string target_, dir_, tmp_;
    int fd_ = -1;
    std::string writeError_;
};

// The top-level commands a run builds. Constructing CLI11's options is most
// of what a short command costs at start-up, so a run builds only the command
// named on its command line; help, version, anything it cannot tell from the
// first word, and every parse error get the whole tree.
class Selection {
public:
    static Selection all() { return Selection{{}}; }
    // The first word after the global options, if there is one to tell.
    static Selection fromArguments(int argc, char** argv);
    [[nodiscard]] bool everything() const { return command_.empty(); }
    [[nodiscard]] bool wants(std::string_view command) const { return everything() || command == command_; }

private:
    explicit Selection(std::string_view command) : command_(command) {}
    std::string_view command_;
};

// A group of subcommands kept in a file of its own.
class CommandGroup {
public:
    virtual ~CommandGroup() = default;
    // Adds the group's top-level commands that `pick` wants.
    virtual void add(CLI::App& app, const Selection& pick) = 0;
    // The exit code when one of the group's commands was chosen, else -1.
    virtual int run(const Globals& g) = 0;
};
std::unique_ptr<CommandGroup> auditCommands();        // audit (audit.cpp)
std::unique_ptr<CommandGroup> privacyCommands();      // gdpr (privacy.cpp)
std::unique_ptr<CommandGroup> maintenanceCommands();  // key, backup (maintenance.cpp)
std::unique_ptr<CommandGroup> apiKeyCommands();       // apikey (apikey.cpp)
std::unique_ptr<CommandGroup> observationCommands();  // apps, stats, cluster (stats.cpp)
std::unique_ptr<CommandGroup> breachCommands();       // breach (breach.cpp)
std::unique_ptr<CommandGroup> suppressionCommands();  // suppression (suppression.cpp)
std::unique_ptr<CommandGroup> eventCommands();        // events (events.cpp)

// The whole command tree, for the generated shell completions (command_table.cpp).
[[nodiscard]] json commandTable(const CLI::App& app);

}  // namespace twofactor::cli
