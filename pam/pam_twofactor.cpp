// pam_twofactor.so: a second factor for SSH, sudo and login, delivered by
// twofactord (email or WhatsApp). The module is a small Varlink client: it
// links the client library only, so nothing of the store, curl or
// libphonenumber is loaded into sshd or sudo.
#include "ipc/client.hpp"
#include "ipc/paths.hpp"

#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using twofactor::ipc::Client;
using twofactor::ipc::Reply;

enum class NoUser { Deny, Ignore };

struct Options {
    std::string app;
    std::string map;
    bool gecos = false;
    NoUser nouser = NoUser::Deny;
    // Fail closed: a daemon that cannot be reached, or answers with an error,
    // denies the login unless the administrator chose otherwise.
    bool unavailableIgnore = false;
    std::string socket;
    std::string channel;
    int timeoutMs = 15000;
};

bool parseOptions(pam_handle_t* pamh, int argc, const char** argv, Options& o) {
    bool ok = true;
    for (int i = 0; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&](std::string_view key) -> std::optional<std::string> {
            if (a.size() > key.size() && a.substr(0, key.size()) == key && a[key.size()] == '=')
                return std::string(a.substr(key.size() + 1));
            return std::nullopt;
        };
        if (auto v = value("app"))
            o.app = *v;
        else if (auto v = value("map"))
            o.map = *v;
        else if (auto v = value("socket"))
            o.socket = *v;
        else if (auto v = value("channel"))
            o.channel = *v;
        else if (auto v = value("nouser")) {
            if (*v == "ignore")
                o.nouser = NoUser::Ignore;
            else if (*v == "deny")
                o.nouser = NoUser::Deny;
            else {
                pam_syslog(pamh, LOG_ERR, "nouser=%s: expected ignore or deny", v->c_str());
                ok = false;
            }
        } else if (auto v = value("unavailable")) {
            if (*v == "ignore")
                o.unavailableIgnore = true;
            else if (*v == "deny")
                o.unavailableIgnore = false;
            else {
                pam_syslog(pamh, LOG_ERR, "unavailable=%s: expected ignore or deny", v->c_str());
                ok = false;
            }
        } else if (auto v = value("timeout")) {
            char* end = nullptr;
            const long s = std::strtol(v->c_str(), &end, 10);
            if (end == v->c_str() || *end != '\0' || s < 1 || s > 300) {
                pam_syslog(pamh, LOG_ERR, "timeout=%s: expected seconds from 1 to 300", v->c_str());
                ok = false;
            } else {
                o.timeoutMs = static_cast<int>(s * 1000);
            }
        } else if (a == "gecos")
            o.gecos = true;
        else {
            pam_syslog(pamh, LOG_ERR, "unknown option '%s'", argv[i]);
            ok = false;
        }
    }
    if (o.app.empty()) {
        pam_syslog(pamh, LOG_ERR, "app= is required");
        ok = false;
    }
    if (o.map.empty() && !o.gecos) {
        pam_syslog(pamh, LOG_ERR, "neither map= nor gecos is given: no user has a destination");
        ok = false;
    }
    if (o.socket.empty()) o.socket = twofactor::paths::systemSocket();
    return ok;
}

std::string trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return std::string(s);
}

bool isAddress(const char* text) {
    unsigned char buf[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, text, buf) == 1 || ::inet_pton(AF_INET6, text, buf) == 1;
}

enum class Lookup { Found, NotFound, Unusable };

// The map names where each user's code goes ("user  destination" per line,
// '#' comments). Whoever can write it can redirect any user's code, so it
// must be a regular file owned by root and writable by root only.
Lookup lookupMap(pam_handle_t* pamh, const std::string& path, const char* user, std::string& out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        pam_syslog(pamh, LOG_ERR, "cannot open the user map %s: %s", path.c_str(), std::strerror(errno));
        return Lookup::Unusable;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        pam_syslog(pamh, LOG_ERR,
                   "refusing the user map %s: it must be a regular file owned by root and not "
                   "writable by group or others",
                   path.c_str());
        ::close(fd);
        return Lookup::Unusable;
    }
    std::FILE* f = ::fdopen(fd, "r");
    if (f == nullptr) {
        ::close(fd);
        return Lookup::Unusable;
    }
    char* line = nullptr;
    std::size_t cap = 0;
    Lookup result = Lookup::NotFound;
    while (::getline(&line, &cap, f) > 0) {
        std::string_view l = line;
        if (auto hash = l.find('#'); hash != std::string_view::npos) l = l.substr(0, hash);
        const std::string t = trim(l);
        if (t.empty()) continue;
        const auto space = t.find_first_of(" \t");
        if (space == std::string::npos) continue;
        if (t.substr(0, space) != user) continue;
        out = trim(std::string_view(t).substr(space));
        result = out.empty() ? Lookup::NotFound : Lookup::Found;
        break;
    }
    std::free(line);
    std::fclose(f);
    return result;
}

// The GECOS field's first comma-separated entry that is an address or an
// E.164 number: "Ada Lovelace,,,ada@example.org" or ",,+4915112345678".
Lookup lookupGecos(const char* user, std::string& out) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwnam_r(user, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr || pw.pw_gecos == nullptr)
        return Lookup::NotFound;
    std::string_view g = pw.pw_gecos;
    while (!g.empty()) {
        const auto comma = g.find(',');
        const std::string field = trim(g.substr(0, comma));
        if (field.find('@') != std::string::npos || (field.size() > 1 && field[0] == '+')) {
            out = field;
            return Lookup::Found;
        }
        if (comma == std::string_view::npos) break;
        g.remove_prefix(comma + 1);
    }
    return Lookup::NotFound;
}

int converse(pam_handle_t* pamh, int style, const std::string& text, std::string* answer) {
    const struct pam_conv* conv = nullptr;
    if (pam_get_item(pamh, PAM_CONV, reinterpret_cast<const void**>(&conv)) != PAM_SUCCESS || conv == nullptr ||
        conv->conv == nullptr)
        return PAM_CONV_ERR;
    struct pam_message msg {};
    msg.msg_style = style;
    msg.msg = text.c_str();
    const struct pam_message* msgs[1] = {&msg};
    struct pam_response* resp = nullptr;
    const int rc = conv->conv(1, msgs, &resp, conv->appdata_ptr);
    if (rc != PAM_SUCCESS) {
        if (resp != nullptr) {
            if (resp->resp != nullptr) {
                ::explicit_bzero(resp->resp, std::strlen(resp->resp));
                std::free(resp->resp);
            }
            std::free(resp);
        }
        return rc;
    }
    if (answer != nullptr) {
        if (resp == nullptr || resp->resp == nullptr) {
            std::free(resp);
            return PAM_CONV_ERR;
        }
        answer->assign(resp->resp);
    }
    if (resp != nullptr) {
        if (resp->resp != nullptr) {
            ::explicit_bzero(resp->resp, std::strlen(resp->resp));
            std::free(resp->resp);
        }
        std::free(resp);
    }
    return PAM_SUCCESS;
}

// The answer to a failure the daemon reported, or of a daemon that could not
// be reached: deny (the default) or step aside.
int unavailable(const Options& o) { return o.unavailableIgnore ? PAM_IGNORE : PAM_AUTH_ERR; }

// Errors that say the daemon could not do the work (as opposed to a refusal
// by policy: opted out, restricted, country not allowed, permission denied).
bool daemonTrouble(const std::string& e) {
    return e == "Busy" || e == "StoreFailed" || e == "InternalError" || e == "AuditFailed" || e == "DeliveryFailed";
}

std::string shortError(const std::string& name) {
    const auto dot = name.rfind('.');
    return dot == std::string::npos ? name : name.substr(dot + 1);
}

int authenticate(pam_handle_t* pamh, int argc, const char** argv) {
    Options o;
    if (!parseOptions(pamh, argc, argv, o)) return PAM_SERVICE_ERR;

    const char* user = nullptr;
    if (pam_get_user(pamh, &user, nullptr) != PAM_SUCCESS || user == nullptr || *user == '\0') return PAM_USER_UNKNOWN;

    std::string destination;
    Lookup found = Lookup::NotFound;
    if (!o.map.empty()) found = lookupMap(pamh, o.map, user, destination);
    if (found == Lookup::Unusable) return PAM_AUTHINFO_UNAVAIL;
    if (found == Lookup::NotFound && o.gecos) found = lookupGecos(user, destination);
    if (found != Lookup::Found) {
        pam_syslog(pamh, LOG_NOTICE, "user %s has no destination for a code%s", user,
                   o.nouser == NoUser::Ignore ? "; not asked for one (nouser=ignore)" : "; denied");
        return o.nouser == NoUser::Ignore ? PAM_IGNORE : PAM_AUTH_ERR;
    }

    Client client;
    std::string error;
    if (!Client::connect(o.socket, client, error, o.timeoutMs)) {
        pam_syslog(pamh, LOG_ERR, "%s", error.c_str());
        return unavailable(o);
    }

    nlohmann::json send = {{"app", o.app}, {"destination", destination}, {"purpose", "login"}};
    if (!o.channel.empty()) send["channel"] = o.channel;
    const void* rhost = nullptr;
    // sshd sets PAM_RHOST to a host name when UseDNS is on: only an address
    // is a client IP (the daemon refuses anything else).
    if (pam_get_item(pamh, PAM_RHOST, &rhost) == PAM_SUCCESS && rhost != nullptr &&
        isAddress(static_cast<const char*>(rhost)))
        send["clientIp"] = static_cast<const char*>(rhost);
    const void* service = nullptr;
    if (pam_get_item(pamh, PAM_SERVICE, &service) == PAM_SUCCESS && service != nullptr)
        send["device"] = std::string("pam:") + static_cast<const char*>(service);
    send["reference"] = std::string("pam user ") + user;

    Reply reply;
    if (!client.call("io.twofactor.Otp.Send", send, reply, error)) {
        pam_syslog(pamh, LOG_ERR, "sending a code for %s: %s", user, error.c_str());
        return unavailable(o);
    }
    if (reply.error) {
        const std::string e = shortError(*reply.error);
        pam_syslog(pamh, LOG_ERR, "twofactord refused to send a code for %s: %s", user, e.c_str());
        if (e == "RateLimited") {
            (void)converse(pamh, PAM_ERROR_MSG, "Too many codes requested; try again later.", nullptr);
            return PAM_MAXTRIES;
        }
        return daemonTrouble(e) ? unavailable(o) : PAM_AUTH_ERR;
    }
    const auto& req = reply.parameters.value("request", nlohmann::json::object());
    const std::string id = req.value("id", "");
    const std::string masked = req.value("destination", "");
    if (id.empty()) {
        pam_syslog(pamh, LOG_ERR, "twofactord answered Send without a request id");
        return unavailable(o);
    }
    pam_syslog(pamh, LOG_INFO, "sent code request %s for %s to %s", id.c_str(), user, masked.c_str());

    if (converse(pamh, PAM_TEXT_INFO, "A code was sent to " + masked + ".", nullptr) != PAM_SUCCESS)
        return PAM_CONV_ERR;
    std::string code;
    const int crc = converse(pamh, PAM_PROMPT_ECHO_OFF, "Code: ", &code);
    if (crc != PAM_SUCCESS) return crc;
    const std::string entered = trim(code);
    ::explicit_bzero(code.data(), code.size());

    nlohmann::json verify = {{"id", id}, {"code", entered}};
    const bool sent = client.call("io.twofactor.Otp.Verify", verify, reply, error);
    // The JSON held the code: wipe what we can reach of it.
    auto& held = verify["code"].get_ref<std::string&>();
    ::explicit_bzero(held.data(), held.size());
    if (!sent) {
        pam_syslog(pamh, LOG_ERR, "verifying request %s: %s", id.c_str(), error.c_str());
        return unavailable(o);
    }
    if (reply.error) {
        const std::string e = shortError(*reply.error);
        pam_syslog(pamh, LOG_ERR, "twofactord refused to verify request %s: %s", id.c_str(), e.c_str());
        if (e == "RateLimited") return PAM_MAXTRIES;
        return PAM_AUTH_ERR;
    }
    const bool approved = reply.parameters.value("approved", false);
    const std::string status = reply.parameters.value("status", "");
    if (approved) {
        pam_syslog(pamh, LOG_INFO, "user %s passed the second factor (request %s)", user, id.c_str());
        return PAM_SUCCESS;
    }
    pam_syslog(pamh, LOG_NOTICE, "user %s failed the second factor (request %s: %s)", user, id.c_str(), status.c_str());
    // A request locked by its attempt limit will approve nothing more: tell
    // the application to stop asking.
    return status == "locked" ? PAM_MAXTRIES : PAM_AUTH_ERR;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int pam_sm_authenticate(pam_handle_t* pamh, int, int argc, const char** argv) {
    try {
        return authenticate(pamh, argc, argv);
    } catch (const std::exception& e) {
        // Never let an exception unwind into sshd or sudo.
        pam_syslog(pamh, LOG_ERR, "internal error: %s", e.what());
        return PAM_AUTH_ERR;
    } catch (...) {
        return PAM_AUTH_ERR;
    }
}

__attribute__((visibility("default"))) int pam_sm_setcred(pam_handle_t*, int, int, const char**) { return PAM_SUCCESS; }

}  // extern "C"
