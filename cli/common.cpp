#include "cli/common.hpp"

#include "ipc/paths.hpp"

#include <cstdio>
#include <string_view>
#include <sys/stat.h>
#include <fcntl.h>
#include <cstring>
#include <csignal>
#include <cerrno>
#include <ctime>
#include <unistd.h>

namespace twofactor::cli {

namespace {

std::string shortName(const std::string& error) { return error.substr(error.rfind('.') + 1); }

std::string flagFor(const std::string& parameter) {
    if (parameter == "destination") return "--to";
    if (parameter == "clientIp") return "--ip";
    if (parameter == "id" || parameter == "app" || parameter == "code" || parameter == "ttl" ||
        parameter == "length" || parameter == "purpose" || parameter == "locale" || parameter == "channel" ||
        parameter == "device" || parameter == "reference")
        return "--" + parameter;
    return parameter;
}

}  // namespace

Selection Selection::fromArguments(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--json") continue;
        if (arg == "--socket") {
            ++i;
            continue;
        }
        if (arg.rfind("--socket=", 0) == 0) continue;
        // An option before the command (--help, --version, a typo): the whole tree.
        if (arg.empty() || arg[0] == '-') return all();
        return Selection{arg};
    }
    return all();
}

std::string str(const json& p, const char* key) {
    auto it = p.find(key);
    if (it == p.end()) return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

int reportError(const std::string& command, const ipc::Reply& reply) {
    const std::string name = shortName(*reply.error);
    const json& p = reply.parameters;
    std::string message;
    int code = kUsage;
    if (name == "InvalidParameter") {
        const std::string parameter = str(p, "parameter");
        if (parameter == "fallbackEmail")
            message = "--fallback-email refused: it applies only to a WhatsApp send of an app that falls back to "
                      "email (fallback_to_email = true and email among its channels), and must be an email address";
        else if (parameter == "context")
            message = "--bind refused: at most 8 KEY=VALUE entries, KEY a lower-case letter then letters, digits or "
                      "'_' (at most 32), VALUE 1 to 200 bytes of text without control characters, \"{{\" or \"}}\"; "
                      "email sends only; every {{context.KEY}} the app's template shows must be bound";
        else if (parameter == "received")
            message = "--received must lie between 2000-01-01 and today (twofactord's clock): "
                      "a request cannot arrive in the future";
        else
            message = "invalid " + flagFor(parameter);
    } else if (name == "PermissionDenied") {
        message = "permission denied: uid " + std::to_string(::getuid()) + " holds no role that may do this";
        code = kDenied;
    } else if (name == "NoSuchApp") message = "no app named '" + str(p, "app") + "' is configured";
    else if (name == "InvalidDestination") message = "invalid destination: " + str(p, "reason");
    else if (name == "ChannelNotAllowed") message = "app '" + str(p, "app") + "' does not send by " + str(p, "channel");
    else if (name == "OutOfRange")
        message = flagFor(str(p, "parameter")) + " must be between " + str(p, "min") + " and " + str(p, "max");
    else if (name == "NoSuchRequest") {
        const std::string id = str(p, "id");
        message = id.empty() ? "no pending request for that app and destination" : "no request with id " + id;
        code = command == "verify" ? kRejected : kNotFound;
    } else if (name == "NotPending") {
        message = "request " + str(p, "id") + " is " + str(p, "status");
        code = kRejected;
    } else if (name == "ContextMismatch") {
        message = "request " + str(p, "id") + " is bound to another context: resend it with the --bind entries of its send";
        code = kRejected;
    } else if (name == "TooManySends") {
        message = "request " + str(p, "id") + " reached its limit of " + str(p, "maxSends") + " sends";
        code = kPolicy;
    } else if (name == "Suppressed") {
        message = std::string("refused: suppressed (") +
                  (str(p, "parameter") == "fallbackEmail" ? "the --fallback-email address" : "the address") +
                  " is on the email suppression list: it bounced for good or its owner complained; "
                  "twofactor suppression remove takes it off)";
        code = kPolicy;
    } else if (name == "OptedOut") {
        message = "refused: opted-out (the recipient replied STOP to WhatsApp messages)";
        code = kPolicy;
    } else if (name == "RateLimited") {
        const std::string scope = str(p, "scope");
        std::string what = "rate limit";
        if (scope == "destination-cooldown") what = "resend cooldown for this destination";
        else if (scope == "destination") what = "send limit for this destination";
        else if (scope == "ip") what = "send limit for this client IP";
        else if (scope == "prefix") what = "send limit for this client's network";
        else if (scope == "app") what = "send limit for this app";
        else if (scope == "subject-lockout") what = "lockout after too many failed verifications";
        else if (scope.rfind("fraud:", 0) == 0) what = "fraud rule " + scope.substr(6);
        message = "refused: rate limited (" + scope + ": " + what + "); retry in " + str(p, "retryAfter") + " s";
        code = kPolicy;
    } else if (name == "CountryNotAllowed") {
        message = "refused: the app does not send to numbers of " + str(p, "country");
        code = kPolicy;
    } else if (name == "ClientCountryNotAllowed") {
        message = "refused: the app does not send for clients in " + str(p, "country") + " (by the client IP, --ip)";
        code = kPolicy;
    } else if (name == "DeliveryFailed") {
        message = "delivery failed: " + str(p, "reason") + " (request " + str(p, "id") + ")";
        code = kDeliveryFailed;
    } else if (name == "StoreFailed") {
        // The daemon says what failed and what that means (a refused verify changed nothing, a refused send sent nothing).
        message = p.contains("reason") ? "twofactord: " + str(p, "reason") + " (see its log)"
                                       : "twofactord could not use its store (see its log)";
        code = kUnreachable;
    } else if (name == "StoreUnavailable") {
        message = p.contains("reason") ? "twofactord: " + str(p, "reason") + "; it reconnects by itself, retry shortly"
                                       : "twofactord cannot reach its database; it reconnects by itself, retry shortly";
        code = kUnreachable;
    } else if (name == "AuditFailed") {
        message = "twofactord could not write the audit record; nothing was done (see its log)";
        code = kUnreachable;
    } else if (name == "RetentionBusy") {
        message = "a retention purge is already running; try again when it has finished";
        code = kPolicy;
    // Maintenance
    } else if (name == "MaintenanceBusy") {
        message = "another key rotation or backup is running; try again when it has finished";
        code = kPolicy;
    } else if (name == "KeyFromCredential") {
        message = "the store key is the systemd credential '" + str(p, "credential") +
                  "', which twofactord cannot rewrite; rotate it offline (see KEYS in twofactord(8))";
        code = kPolicy;
    } else if (name == "RotationFailed") {
        const std::string key = str(p, "databaseKey");
        message = "key rotation failed: " + str(p, "reason") +
                  (key == "old"   ? "; the old key still opens the database and stays in use"
                   : key == "new" ? "; the database now opens only with the new key"
                                  : "; the database opens with neither key: stop twofactord and restore a backup");
        code = kUnreachable;
    } else if (name == "BackupFailed") {
        message = "backup failed: " + str(p, "reason") + "; nothing was written";
        code = kUnreachable;
    // Maintenance end
    // Privacy
    } else if (name == "NoSuchSubject") {
        message = "nothing is held about that subject";
        code = kNotFound;
    } else if (name == "InvalidSubject") {
        message = "invalid --" + str(p, "parameter") + ": " + str(p, "reason");
    } else if (name == "Restricted") {
        message = "refused: restricted (the data subject asked to restrict processing, GDPR Art. 18; "
                  "a dpo lifts it with twofactor gdpr unrestrict)";
        code = kPolicy;
    } else if (name == "InvalidWindow") {
        message = "invalid window: " + str(p, "reason");
        code = kUsage;
    // Privacy end
    } else if (name == "InternalError") {
        message = "twofactord failed internally (see its log)";
        code = kUnreachable;
    } else if (name == "Busy") {
        message = "twofactord is busy (more work queued than its store takes); nothing was done, try again shortly";
        code = kUnreachable;
    } else if (name == "TooManyConnections") {
        message = "twofactord refused the connection: this user already has " + str(p, "limit") + " open";
        code = kPolicy;
    } else if (name == "InvalidMessage") {
        message = "twofactord refused the message: " + str(p, "reason");
    } else if (name == "MethodNotFound" || name == "InterfaceNotFound") {
        message = "twofactord does not know this command (is it older than this client?)";
        code = kUnreachable;
    } else {
        message = *reply.error + (p.empty() ? "" : " " + p.dump());
        code = kUnreachable;
    }
    std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), message.c_str());
    return code;
}

std::string isoTime(std::int64_t t) {
    char buf[32];
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::optional<std::int64_t> parseTime(std::string_view text) {
    if (!text.empty() && text.size() < 19 && text.find_first_not_of("0123456789") == std::string_view::npos)
        return std::stoll(std::string(text));
    // Fixed-width digits at `pos`, or -1.
    auto number = [&](std::size_t pos, std::size_t width) {
        if (pos + width > text.size()) return -1;
        int n = 0;
        for (std::size_t i = pos; i < pos + width; ++i) {
            if (text[i] < '0' || text[i] > '9') return -1;
            n = n * 10 + (text[i] - '0');
        }
        return n;
    };
    auto at = [&](std::size_t pos, std::string_view chars) {
        return pos < text.size() && chars.find(text[pos]) != std::string_view::npos;
    };
    const int year = number(0, 4), month = number(5, 2), day = number(8, 2);
    if (year < 1970 || !at(4, "-") || !at(7, "-") || month < 1 || month > 12 || day < 1) return std::nullopt;
    static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > kDays[month - 1] || (month == 2 && day == 29 && !leap)) return std::nullopt;
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    if (text.size() == 10) return static_cast<std::int64_t>(timegm(&tm));
    // RFC 3339: a time of day with seconds and a zone; 'T' may be 't' or a space.
    const int hour = number(11, 2), minute = number(14, 2), second = number(17, 2);
    if (!at(10, "Tt ") || !at(13, ":") || !at(16, ":") || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 60)
        return std::nullopt;
    std::size_t pos = 19;
    if (at(pos, ".")) {
        const std::size_t digits = pos + 1;
        while (at(pos + 1, "0123456789")) ++pos;
        if (pos + 1 == digits) return std::nullopt;
        ++pos;
    }
    std::int64_t offset = 0;
    if (at(pos, "Zz") && pos + 1 == text.size()) {
    } else if (at(pos, "+-") && pos + 6 == text.size() && at(pos + 3, ":")) {
        const int oh = number(pos + 1, 2), om = number(pos + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return std::nullopt;
        offset = (text[pos] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    } else {
        return std::nullopt;
    }
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second == 60 ? 59 : second;  // a leap second counts as the one before it
    return static_cast<std::int64_t>(timegm(&tm)) - offset;
}

bool addTime(const std::string& command, const char* flag, const std::string& text, const char* key, json& params) {
    if (text.empty()) return true;
    const auto t = parseTime(text);
    if (!t) {
        std::fprintf(stderr, "twofactor %s: %s: '%s' is not a time: give %s\n", command.c_str(), flag, text.c_str(),
                     kTimeForms);
        return false;
    }
    params[key] = *t;
    return true;
}

int call(const Globals& g, const std::string& command, const char* method, const json& params, json& out) {
    return callMore(g, command, method, params, nullptr, out);
}

int callMore(const Globals& g, const std::string& command, const char* method, const json& params,
             const std::function<void(const json&)>& onProgress, json& out) {
    ipc::Client client;
    std::string error;
    const std::string socket = g.socket.empty() ? paths::clientSocket() : g.socket;
    if (!ipc::Client::connect(socket, client, error)) {
        std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), error.c_str());
        return kUnreachable;
    }
    ipc::Reply reply;
    const bool ok = onProgress ? client.callMore(method, params, onProgress, reply, error)
                               : client.call(method, params, reply, error);
    if (!ok) {
        std::fprintf(stderr, "twofactor %s: %s\n", command.c_str(), error.c_str());
        return kUnreachable;
    }
    if (reply.error) return reportError(command, reply);
    out = std::move(reply.parameters);
    return -1;
}

namespace {

void syncDirectory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

// The temporary file a backup is written to, next to FILE, so that FILE only
// ever appears complete. An interrupt (SIGINT, SIGTERM, SIGHUP) removes it too.
char gPartial[4096];
extern "C" void removePartialAndExit(int sig) {
    if (gPartial[0]) ::unlink(gPartial);
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

}  // namespace

bool PrivateFile::checkTarget(const std::string& target, std::string& error) {
    const auto slash = target.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : target.substr(0, slash);
    const std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
    if (base.empty() || base == "." || base == "..") {
        error = target + " names a directory, not a file";
        return false;
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        error = "cannot write " + target + ": " +
                (errno == ENOENT ? "directory " + dir + " does not exist" : dir + ": " + std::strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        error = "cannot write " + target + ": " + dir + " is not a directory";
        return false;
    }
    return true;
}

bool PrivateFile::create(const std::string& target, std::string& error) {
    if (!checkTarget(target, error)) return false;
    target_ = target;
    const auto slash = target.find_last_of('/');
    dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : target.substr(0, slash);
    const std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
    tmp_ = dir_ + "/." + base + ".XXXXXX";
    if (tmp_.size() >= sizeof gPartial) {
        error = "path too long: " + target;
        return false;
    }
    fd_ = ::mkostemp(tmp_.data(), O_CLOEXEC);  // mode 0600
    if (fd_ < 0) {
        error = "cannot create a file in " + dir_ + ": " + std::strerror(errno);
        return false;
    }
    std::memcpy(gPartial, tmp_.c_str(), tmp_.size() + 1);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, removePartialAndExit);
    return true;
}

PrivateFile::~PrivateFile() { discard(); }

bool PrivateFile::write(const unsigned char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::write(fd_, data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            writeError_ = std::strerror(errno);
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

bool PrivateFile::commit(bool force, std::string& error) {
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
        fd_ = -1;
        error = "cannot write " + target_ + ": " + std::strerror(errno);
        return false;
    }
    fd_ = -1;
    if (force ? ::rename(tmp_.c_str(), target_.c_str()) != 0 : ::link(tmp_.c_str(), target_.c_str()) != 0) {
        error = errno == EEXIST ? target_ + " exists; --force replaces it"
                                : "cannot create " + target_ + ": " + std::strerror(errno);
        return false;
    }
    if (!force) ::unlink(tmp_.c_str());
    tmp_.clear();
    gPartial[0] = '\0';
    syncDirectory(dir_);
    return true;
}

void PrivateFile::discard() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
    gPartial[0] = '\0';
}

ProgressLine::ProgressLine(std::string command) : command_(std::move(command)), enabled_(::isatty(STDERR_FILENO) == 1) {}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::show(const std::string& text) {
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[Ktwofactor %s: %s", command_.c_str(), text.c_str());
    std::fflush(stderr);
    shown_ = true;
}

void ProgressLine::finish() {
    if (!enabled_ || !shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
}

}  // namespace twofactor::cli
