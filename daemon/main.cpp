// twofactord: the OTP daemon. A thin main over libtwofactor.
#include "build_config.h"
#include "config/config.hpp"
#include "ipc/paths.hpp"
#include "server/server.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <utility>

using namespace twofactor;

namespace {

// --state-dir moves the state directory and every path still at its default beneath it.
void rebaseStateDir(config::Config& c, const std::string& dir) {
    const std::string old = c.stateDir;
    auto rebase = [&](std::string& path, const char* suffix) {
        if (path == old + suffix) path = dir + suffix;
    };
    rebase(c.databasePath, "/twofactor.db");
    rebase(c.storeKeyFile, "/keys/store.key");
    rebase(c.pepperFile, "/keys/pepper.key");
    rebase(c.outboxDir, "/outbox");
    c.stateDir = dir;
}

}  // namespace

int main(int argc, char** argv) {
    // The database, its WAL and SHM, keys and outbox files are the daemon's
    // alone, whatever umask the caller had; the socket is opened up explicitly.
    ::umask(0077);
    CLI::App app{"twofactord - one-time-password daemon (Varlink over a Unix socket)", "twofactord"};
    std::string configPath;
    std::string stateDir;
    std::string socketPath;
    std::string clockFile;
    bool checkConfig = false;
    bool version = false;
    bool printMethods = false;
    app.add_option("-c,--config", configPath,
                   "configuration file (default " TWOFACTOR_CONFIG_PATH "; without one, the embedded default runs)");
    app.add_option("--state-dir", stateDir, "state directory (database, keys, outbox), overriding the configuration");
    app.add_option("--socket", socketPath, "socket path, overriding the configuration");
    app.add_flag("--check-config", checkConfig, "validate the configuration, print a summary and exit");
    app.add_option("--clock-file", clockFile,
                   "for tests: read the current time (Unix seconds) from this file instead of the system clock");
    app.add_flag("--print-methods", printMethods,
                 "print every Varlink method and the role it needs (anyone, operator, dpo, admin) and exit");
    app.add_flag("--version", version, "print the version and exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::fprintf(stderr, "twofactord: %s (see twofactord --help)\n", e.what());
        return 2;
    }
    if (version) {
        std::printf("twofactord %s\n", TWOFACTOR_VERSION);
        return 0;
    }
    if (printMethods) {
        for (const auto& m : server::methodTable())
            std::printf("%s %s\n", m.name.c_str(), server::accessName(m.access));
        return 0;
    }

    config::Config cfg;
    try {
        if (configPath.empty() && files::exists(paths::systemConfigPath())) configPath = paths::systemConfigPath();
        if (configPath.empty()) {
            cfg = config::embeddedDefault();
        } else {
            // Every mistake in the file at once, sorted by line: fixing them
            // one start at a time is slow, and worse under systemd.
            config::CheckResult checked = config::checkFile(configPath);
            for (const auto& e : checked.errors) std::fprintf(stderr, "twofactord: %s\n", e.what());
            if (!checked.config) return 2;
            cfg = std::move(*checked.config);
        }
    } catch (const std::exception& e) {  // e.g. no home directory for the embedded default
        std::fprintf(stderr, "twofactord: %s\n", e.what());
        return 2;
    }
    if (!stateDir.empty()) {
        if (stateDir.front() != '/') {
            std::fprintf(stderr, "twofactord: --state-dir: must be an absolute path\n");
            return 2;
        }
        rebaseStateDir(cfg, stateDir);
    }
    if (!socketPath.empty()) cfg.socketPath = socketPath;

    if (checkConfig) {
        std::printf("%s: ok\n", cfg.embedded ? "embedded default" : cfg.sourcePath.c_str());
        std::printf("socket   %s\nstate    %s\ndatabase %s\n", cfg.socketPath.c_str(), cfg.stateDir.c_str(),
                    cfg.databasePath.c_str());
        for (const auto& [name, a] : cfg.apps) {
            std::string channels;
            for (const auto& c : a.channels) channels += (channels.empty() ? "" : ",") + c;
            std::printf("app      %s (%s; ttl %llds; %d digits; %d attempts)\n", name.c_str(), channels.c_str(),
                        static_cast<long long>(a.ttl.count()), a.codeLength, a.maxAttempts);
        }
        return 0;
    }

    log::Level level = log::Level::Info;
    if (log::parseLevel(cfg.logLevel, level)) log::setLevel(level);
    try {
        return server::runDaemon(cfg, server::DaemonOptions{clockFile});
    } catch (const std::exception& e) {
        log::error(e.what());
        return 1;
    }
}
