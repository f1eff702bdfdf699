#include "cli/common.hpp"

#include "ipc/paths.hpp"

#include <cstdio>
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
    if (name == "InvalidParameter") message = "invalid " + flagFor(str(p, "parameter"));
    else if (name == "PermissionDenied") {
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
    } else if (name == "TooManySends") {
        message = "request " + str(p, "id") + " reached its limit of " + str(p, "maxSends") + " sends";
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
    } else if (name == "DeliveryFailed") {
        message = "delivery failed: " + str(p, "reason") + " (request " + str(p, "id") + ")";
        code = kDeliveryFailed;
    } else if (name == "StoreFailed") {
        message = "twofactord could not store the request; nothing was sent (see its log)";
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

std::optional<std::int64_t> parseTime(const std::string& text) {
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos && text.size() < 19)
        return std::stoll(text);
    std::tm tm{};
    const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) return std::nullopt;
    return static_cast<std::int64_t>(timegm(&tm));
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

bool PrivateFile::create(const std::string& target, std::string& error) {
    target_ = target;
    const auto slash = target.find_last_of('/');
    dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : target.substr(0, slash);
    const std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
    if (base.empty() || base == "." || base == "..") {
        error = target + " names a directory, not a file";
        return false;
    }
    struct stat st {};
    if (::stat(dir_.c_str(), &st) != 0) {
        error = "cannot write " + target + ": " +
                (errno == ENOENT ? "directory " + dir_ + " does not exist" : dir_ + ": " + std::strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        error = "cannot write " + target + ": " + dir_ + " is not a directory";
        return false;
    }
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
