// Loading and validating twofactord.toml. Everything is checked here, once, so
// the daemon never runs with a value it would have to second-guess later.
#include "config/config.hpp"
#include "privacy/cron.hpp"

#include "ipc/paths.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <regex>
#include <set>
#include <string_view>
#include <utility>

namespace twofactor::config {

namespace {

std::string formatWhat(const std::string& file, int line, int column, const std::string& key,
                       const std::string& message) {
    std::string out;
    if (!file.empty()) {
        out += file;
        if (line > 0) {
            out += ':' + std::to_string(line);
            if (column > 0) {
                out += ':' + std::to_string(column);
            }
        }
        out += ": ";
    } else if (line > 0) {
        out += "line " + std::to_string(line);
        if (column > 0) {
            out += ':' + std::to_string(column);
        }
        out += ": ";
    }
    if (!key.empty()) {
        out += key + ": ";
    }
    return out + message;
}

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key, std::string message)
    : std::runtime_error(formatWhat(file, line, column, key, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      message_(std::move(message)) {}

const char* roleName(Role role) {
    switch (role) {
        case Role::Operator: return "operator";
        case Role::Dpo: return "dpo";
        case Role::Admin: return "admin";
    }
    return "unknown";
}

namespace {

constexpr std::int64_t kMinTtl = 30;
constexpr std::int64_t kMaxTtl = 86400;
constexpr std::int64_t kDefaultMaxTtl = 600;
constexpr int kMinCodeLength = 4;
constexpr int kMaxCodeLength = 10;
// The display name lands in subjects, SMS-sized WhatsApp bodies and logs.
constexpr std::size_t kMaxDisplayName = 128;
// sockaddr_un::sun_path is 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

const std::vector<std::string> kChannels = {"email", "whatsapp"};
// Drivers per channel.
const std::vector<std::string> kEmailDrivers = {"outbox", "ses", "smtp"};
const std::vector<std::string> kWhatsappDrivers = {"outbox", "whatsapp"};
// Purposes a template can be specific to: [apps.NAME.templates.LOCALE.PURPOSE].
const std::vector<std::string> kPurposes = {"login", "verify", "recovery"};
// text_file and html_file: read once, at load, never at send time.
constexpr std::size_t kMaxTemplateFile = 64 * 1024;
constexpr std::int64_t kMaxProviderTimeout = 120;
// [whatsapp] pair_backoff: Meta's pair rate limit is about one message per
// six seconds; ten minutes is already far beyond any code's usefulness.
constexpr std::int64_t kMaxPairBackoff = 600;
// [webhook] max_body_bytes: Meta batches status updates, but never megabytes.
constexpr std::int64_t kMinWebhookBody = 1024;
constexpr std::int64_t kMaxWebhookBody = 16 * 1024 * 1024;

std::string joinPath(std::string dir, std::string_view tail) {
    while (dir.size() > 1 && dir.back() == '/') {
        dir.pop_back();
    }
    if (dir != "/") {
        dir += '/';
    }
    return dir.append(tail);
}

std::string joinList(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += ", ";
        }
        out += item;
    }
    return out;
}

bool contains(const std::vector<std::string>& items, std::string_view item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

bool hasControl(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// [a-z0-9][a-z0-9_-]{0,62}: app names appear in file names, logs and the API.
bool validAppName(std::string_view name) {
    if (name.empty() || name.size() > 63 || !(isLower(name[0]) || isDigit(name[0]))) {
        return false;
    }
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return isLower(c) || isDigit(c) || c == '_' || c == '-'; });
}

// A small BCP 47 subset: language, optional Script, optional REGION or UN M.49
// area: en, de, pt-BR, zh-Hant-TW, es-419. Enough for message templates, and
// strict enough that "EN" and "en_US" are caught instead of never matching.
bool validLocale(std::string_view tag) {
    std::size_t i = 0;
    auto count = [&](auto pred) {
        std::size_t n = 0;
        while (i + n < tag.size() && pred(tag[i + n])) {
            ++n;
        }
        return n;
    };
    std::size_t lang = count(isLower);
    if (lang < 2 || lang > 3) {
        return false;
    }
    i += lang;
    if (i == tag.size()) {
        return true;
    }
    if (tag[i] != '-') {
        return false;
    }
    ++i;
    if (i + 4 <= tag.size() && isUpper(tag[i]) && isLower(tag[i + 1]) && isLower(tag[i + 2]) &&
        isLower(tag[i + 3]) && (i + 4 == tag.size() || tag[i + 4] == '-')) {
        i += 4;
        if (i == tag.size()) {
            return true;
        }
        ++i;
    }
    std::size_t rest = tag.size() - i;
    if (rest == 2) {
        return isUpper(tag[i]) && isUpper(tag[i + 1]);
    }
    if (rest == 3) {
        return isDigit(tag[i]) && isDigit(tag[i + 1]) && isDigit(tag[i + 2]);
    }
    return false;
}

bool validRegion(std::string_view region) {
    return region.size() == 2 && isUpper(region[0]) && isUpper(region[1]);
}

// The Graph API version in the request path: v[0-9]+\.[0-9]+, e.g. "v21.0".
bool validApiVersion(const std::string& version) {
    static const std::regex re("v[0-9]+\\.[0-9]+");
    return std::regex_match(version, re);
}

// A WhatsApp Business phone number id: Meta's numeric id, not the number.
bool validPhoneNumberId(std::string_view id) {
    return !id.empty() && id.size() <= 32 && std::all_of(id.begin(), id.end(), isDigit);
}

// An approved message template's name: [a-z0-9_]{1,512}, as Meta allows.
bool validWhatsappTemplateName(std::string_view name) {
    return !name.empty() && name.size() <= 512 &&
           std::all_of(name.begin(), name.end(), [](char c) { return isLower(c) || isDigit(c) || c == '_'; });
}

// A template's language as Meta spells it: [a-z]{2,3}(_[A-Z]{2})?, e.g. "de",
// "en_US", "pt_BR" (an underscore, unlike locale tags).
bool validWhatsappLanguage(const std::string& language) {
    static const std::regex re("[a-z]{2,3}(_[A-Z]{2})?");
    return std::regex_match(language, re);
}

// An IPv4 or IPv6 address literal, without brackets or a port.
bool validIpLiteral(const std::string& address) {
    in_addr v4{};
    in6_addr v6{};
    return ::inet_pton(AF_INET, address.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, address.c_str(), &v6) == 1;
}

// Names are resolved later with getpwnam/getgrnam; whitespace, ':' or control
// characters can never match and usually mean a typo such as "a, b" in one string.
bool validPrincipal(std::string_view name) {
    return !name.empty() && !hasControl(name) &&
           std::none_of(name.begin(), name.end(), [](char c) { return c == ' ' || c == ':'; });
}

// An AWS region such as "eu-west-1" or "us-gov-west-1": [a-z]{2}(-gov)?-[a-z]+-[0-9].
bool validAwsRegion(const std::string& region) {
    static const std::regex re("[a-z]{2}(-gov)?-[a-z]+-[0-9]");
    return std::regex_match(region, re);
}

// An SES configuration set name: [A-Za-z0-9_-]{1,64}.
bool validConfigurationSet(std::string_view name) {
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return isLower(c) || isUpper(c) || isDigit(c) || c == '_' || c == '-';
    });
}

bool isAlnum(char c) { return isLower(c) || isUpper(c) || isDigit(c); }

// A DNS name of at least two labels: letters, digits and inner hyphens.
bool validDomain(std::string_view domain) {
    if (domain.empty() || domain.size() > 253) {
        return false;
    }
    std::size_t labels = 0;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = domain.find('.', start);
        std::string_view label = domain.substr(start, dot == std::string_view::npos ? dot : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
            !std::all_of(label.begin(), label.end(), [](char c) { return isAlnum(c) || c == '-'; })) {
            return false;
        }
        ++labels;
        if (dot == std::string_view::npos) {
            break;
        }
        start = dot + 1;
    }
    return labels >= 2;
}

// local@domain, with a dot-atom local part (printable ASCII without specials).
bool validAddrSpec(std::string_view addr) {
    std::size_t at = addr.rfind('@');
    if (at == std::string_view::npos || at == 0 || at > 64) {
        return false;
    }
    std::string_view local = addr.substr(0, at);
    static constexpr std::string_view kSpecials = "<>()[],;:\\\"@ ";
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos ||
        !std::all_of(local.begin(), local.end(), [](char c) {
            auto u = static_cast<unsigned char>(c);
            return u > 0x20 && u < 0x7f && kSpecials.find(c) == std::string_view::npos;
        })) {
        return false;
    }
    return validDomain(addr.substr(at + 1));
}

// "addr@example.com", "Name <addr@example.com>" or "\"Name, Inc.\" <addr@example.com>".
// The drivers put it into mail headers: no control characters, and a display
// name with specials must be quoted.
bool validMailbox(std::string_view s) {
    if (s.empty() || hasControl(s)) {
        return false;
    }
    if (s.back() != '>') {
        return validAddrSpec(s);
    }
    std::size_t open = s.rfind('<');
    if (open == std::string_view::npos) {
        return false;
    }
    if (!validAddrSpec(s.substr(open + 1, s.size() - open - 2))) {
        return false;
    }
    std::string_view name = s.substr(0, open);
    while (!name.empty() && name.back() == ' ') {
        name.remove_suffix(1);
    }
    if (name.empty()) {
        return true;
    }
    if (name.front() == '"') {
        if (name.size() < 2 || name.back() != '"') {
            return false;
        }
        std::string_view inner = name.substr(1, name.size() - 2);
        return inner.find_first_of("\"\\") == std::string_view::npos;
    }
    return name.find_first_of("<>()[]:;@\\,\"") == std::string_view::npos;
}

const char* const kMailboxHint =
    "must be an email address such as \"no-reply@example.com\" or \"Example <no-reply@example.com>\" (quote a "
    "display name containing , ; : @ or parentheses)";

// The parts of an http(s):// or smtp(s):// URL that the checks need.
struct Url {
    std::string scheme;
    std::string host;  // IPv6 literals keep their brackets
    std::string path;  // "" or starting with '/'
};

// Splits SCHEME://HOST[:PORT][/PATH]; returns an error message or "".
std::string parseUrl(std::string_view s, Url& out) {
    if (s.empty() || hasControl(s) || s.find(' ') != std::string_view::npos) {
        return "must be a URL without spaces or control characters";
    }
    std::size_t sep = s.find("://");
    if (sep == std::string_view::npos) {
        return "must be a URL such as \"https://host\"";
    }
    out.scheme = std::string(s.substr(0, sep));
    std::string_view rest = s.substr(sep + 3);
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return "must not have a query or fragment";
    }
    std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    out.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
    if (authority.find('@') != std::string_view::npos) {
        return "must not contain credentials";
    }
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos || close == 1) {
            return "has an invalid IPv6 address";
        }
        std::string_view inner = authority.substr(1, close - 1);
        if (!std::all_of(inner.begin(), inner.end(), [](char c) {
                return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
            })) {
            return "has an invalid IPv6 address";
        }
        out.host = std::string(authority.substr(0, close + 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return "has an invalid host";
            }
            port = after.substr(1);
            if (port.empty()) {
                return "has an empty port";
            }
        }
    } else {
        std::size_t colon = authority.find(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) {
                return "has an empty port";
            }
        }
        if (out.host.empty()) {
            return "has no host";
        }
        if (!std::all_of(out.host.begin(), out.host.end(), [](char c) { return isAlnum(c) || c == '.' || c == '-'; })) {
            return "has an invalid host \"" + out.host + "\"";
        }
    }
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), isDigit) || std::stoi(std::string(port)) < 1 ||
            std::stoi(std::string(port)) > 65535) {
            return "has an invalid port \"" + std::string(port) + "\"";
        }
    }
    return "";
}

bool isLoopbackHost(std::string_view host) {
    return host == "127.0.0.1" || host == "localhost" || host == "[::1]";
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool validUtf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= s.size()) {
            return false;  // truncated sequence
        }
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3F);
        }
        static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

std::string keyJoin(std::string_view prefix, std::string_view key) {
    if (prefix.empty()) {
        return std::string(key);
    }
    std::string out(prefix);
    out += '.';
    out += key;
    return out;
}

std::string indexKey(std::string_view key, std::size_t index) {
    return std::string(key) + '[' + std::to_string(index) + ']';
}

// Reads typed values from a parsed document and turns every problem into a
// ConfigError pointing at the offending node.
class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    [[noreturn]] void fail(const toml::source_region& where, const std::string& key,
                           const std::string& message) const {
        throw ConfigError(file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), key,
                          message);
    }
    [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& message) const {
        fail(node.source(), key, message);
    }

    const toml::table& table(const toml::node& node, const std::string& key) const {
        const toml::table* t = node.as_table();
        if (t == nullptr) {
            fail(node, key, "must be a table");
        }
        return *t;
    }

    // Unknown keys are errors, not warnings: a misspelt "max_atempts" silently
    // ignored would leave the default in force without anyone noticing.
    void allowOnly(const toml::table& t, std::string_view prefix,
                   std::initializer_list<std::string_view> allowed) const {
        for (auto&& [k, v] : t) {
            if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) {
                continue;
            }
            std::string expected;
            for (auto a : allowed) {
                if (!expected.empty()) {
                    expected += ", ";
                }
                expected += a;
            }
            fail(k.source(), keyJoin(prefix, k.str()),
                 std::string(v.is_table() ? "unknown table" : "unknown key") + " (expected one of: " + expected +
                     ")");
        }
    }

    std::string string(const toml::node& node, const std::string& key) const {
        const auto* s = node.as_string();
        if (s == nullptr) {
            fail(node, key, "must be a string");
        }
        if (s->get().find('\0') != std::string::npos) {
            fail(node, key, "must not contain NUL characters");
        }
        return s->get();
    }

    std::string oneOf(const toml::node& node, const std::string& key, const std::vector<std::string>& allowed) const {
        std::string value = string(node, key);
        if (!contains(allowed, value)) {
            fail(node, key, "must be one of " + joinList(allowed) + ", not \"" + value + "\"");
        }
        return value;
    }

    bool boolean(const toml::node& node, const std::string& key) const {
        const auto* b = node.as_boolean();
        if (b == nullptr) {
            fail(node, key, "must be true or false");
        }
        return b->get();
    }

    std::int64_t integer(const toml::node& node, const std::string& key, std::int64_t min, std::int64_t max,
                         std::string_view unit = {}) const {
        const auto* i = node.as_integer();
        if (i == nullptr) {
            fail(node, key, "must be an integer");
        }
        std::int64_t value = i->get();
        if (value < min || value > max) {
            std::string message = "must be between " + std::to_string(min) + " and " + std::to_string(max);
            if (!unit.empty()) {
                message += ' ';
                message += unit;
            }
            fail(node, key, message);
        }
        return value;
    }

    // Relative paths would depend on the daemon's working directory, which
    // systemd and the CLI-started daemon set differently.
    std::string absolutePath(const toml::node& node, const std::string& key) const {
        std::string value = string(node, key);
        if (value.empty() || value[0] != '/') {
            fail(node, key, "must be an absolute path");
        }
        return value;
    }

    std::vector<std::string> stringArray(const toml::node& node, const std::string& key) const {
        const toml::array* a = node.as_array();
        if (a == nullptr) {
            fail(node, key, "must be an array of strings");
        }
        std::vector<std::string> out;
        for (std::size_t i = 0; i < a->size(); ++i) {
            out.push_back(string(*a->get(i), indexKey(key, i)));
        }
        return out;
    }

private:
    std::string file_;
};

// Checks a template string: only {{code}}, {{app}} and {{minutes}}, nothing
// unterminated. Returns an error message ("" when fine) and sets `at` to the
// offending offset and `hasCode` to whether {{code}} occurs.
std::string placeholderError(std::string_view s, std::size_t& at, bool& hasCode) {
    hasCode = false;
    std::size_t pos = 0;
    while ((pos = s.find("{{", pos)) != std::string_view::npos) {
        at = pos;
        std::size_t end = s.find("}}", pos + 2);
        if (end == std::string_view::npos) {
            return "unterminated placeholder \"{{\"";
        }
        std::string_view name = s.substr(pos + 2, end - pos - 2);
        if (name == "code") {
            hasCode = true;
        } else if (name != "app" && name != "minutes") {
            return "unknown placeholder \"{{" + std::string(name) + "}}\" (allowed: {{code}}, {{app}}, {{minutes}})";
        }
        pos = end + 2;
    }
    return "";
}

// Inline strings: errors point at the TOML value. Returns whether {{code}} occurs.
bool checkPlaceholders(const Reader& reader, const toml::node& node, const std::string& key, std::string_view s) {
    std::size_t at = 0;
    bool hasCode = false;
    std::string error = placeholderError(s, at, hasCode);
    if (!error.empty()) {
        reader.fail(node, key, error);
    }
    return hasCode;
}

// Reads a text_file or html_file at load time: a regular file of at most
// 64 KiB of UTF-8 without NUL, whose placeholders are checked like inline
// text (errors name the file and the line in it). Must contain {{code}}.
std::string readTemplateFile(const Reader& reader, const toml::node& node, const std::string& key) {
    const std::string path = reader.absolutePath(node, key);
    // O_NONBLOCK: a FIFO named here must not hang the daemon's start.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        reader.fail(node, key, path + ": " + std::strerror(err));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        reader.fail(node, key, path + ": " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        reader.fail(node, key, path + ": not a regular file");
    }
    const std::string tooLarge = path + ": larger than " + std::to_string(kMaxTemplateFile) + " bytes";
    if (static_cast<std::uint64_t>(st.st_size) > kMaxTemplateFile) {
        reader.fail(node, key, tooLarge);
    }
    std::string text;
    char buffer[8192];
    while (true) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int err = errno;
            reader.fail(node, key, path + ": " + std::strerror(err));
        }
        if (n == 0) {
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > kMaxTemplateFile) {
            reader.fail(node, key, tooLarge);  // it grew while we read it
        }
    }
    if (!validUtf8(text)) {
        reader.fail(node, key, path + ": not valid UTF-8");
    }
    auto lineOf = [&](std::size_t offset) {
        return std::to_string(1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
    };
    if (std::size_t nul = text.find('\0'); nul != std::string::npos) {
        reader.fail(node, key, path + ":" + lineOf(nul) + ": contains a NUL character");
    }
    std::size_t at = 0;
    bool hasCode = false;
    std::string error = placeholderError(text, at, hasCode);
    if (!error.empty()) {
        reader.fail(node, key, path + ":" + lineOf(at) + ": " + error);
    }
    if (!hasCode) {
        reader.fail(node, key, path + ": must contain {{code}}");
    }
    return text;
}

const std::initializer_list<std::string_view> kTemplateKeys = {"subject", "text", "html", "text_file", "html_file"};

bool hasTemplateKeys(const toml::table& t) {
    return std::any_of(kTemplateKeys.begin(), kTemplateKeys.end(),
                       [&](std::string_view k) { return t.get(k) != nullptr; });
}

// The keys of one template table (the caller has checked for unknown keys).
// `subjectFallback` is used when there is no subject; without one, a missing
// subject is an error saying `noSubject`.
Template readTemplate(const Reader& reader, const toml::table& t, const std::string& prefix,
                      const Template* subjectFallback, const std::string& noSubject) {
    Template out;

    if (const toml::node* n = t.get("subject")) {
        std::string key = prefix + ".subject";
        out.subject = reader.string(*n, key);
        if (out.subject.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        // A line break in a subject is a mail header injection.
        if (hasControl(out.subject)) {
            reader.fail(*n, key, "must be one line without control characters");
        }
        checkPlaceholders(reader, *n, key, out.subject);
    } else {
        if (subjectFallback == nullptr) {
            reader.fail(t.source(), prefix + ".subject", "is required: " + noSubject);
        }
        out.subject = subjectFallback->subject;
    }

    const toml::node* text = t.get("text");
    const toml::node* textFile = t.get("text_file");
    if (text != nullptr && textFile != nullptr) {
        reader.fail(*textFile, prefix + ".text_file", "text and text_file are mutually exclusive");
    }
    if (textFile != nullptr) {
        out.text = readTemplateFile(reader, *textFile, prefix + ".text_file");
    } else {
        if (text == nullptr) {
            reader.fail(t.source(), prefix + ".text", "is required");
        }
        out.text = reader.string(*text, prefix + ".text");
        if (!checkPlaceholders(reader, *text, prefix + ".text", out.text)) {
            reader.fail(*text, prefix + ".text", "must contain {{code}}");
        }
    }

    const toml::node* html = t.get("html");
    const toml::node* htmlFile = t.get("html_file");
    if (html != nullptr && htmlFile != nullptr) {
        reader.fail(*htmlFile, prefix + ".html_file", "html and html_file are mutually exclusive");
    }
    if (htmlFile != nullptr) {
        out.html = readTemplateFile(reader, *htmlFile, prefix + ".html_file");
    } else if (html != nullptr) {
        std::string key = prefix + ".html";
        out.html = reader.string(*html, key);
        // Mail clients show the HTML part instead of the text: one without the
        // code would deliver a message the recipient cannot use.
        if (!checkPlaceholders(reader, *html, key, out.html) && !out.html.empty()) {
            reader.fail(*html, key, "must contain {{code}}");
        }
    }
    return out;
}

const Template* findTemplate(const std::map<std::string, Template>& templates, const std::string& key) {
    auto it = templates.find(key);
    return it == templates.end() ? nullptr : &it->second;
}

// [apps.NAME.templates]: generic LOCALE tables and their PURPOSE sub-tables,
// merged over the built-ins. An app's own generic LOCALE template replaces the
// built-in purpose variants of that locale too, except those it gives itself:
// its wording wins over the built-in purpose wording.
void readTemplates(const Reader& reader, const toml::table& templates, const std::string& key, App& app) {
    const auto& builtins = builtinTemplates();
    std::set<std::string> ownGeneric;
    std::set<std::string> own;
    for (auto&& [k, v] : templates) {
        std::string locale(k.str());
        std::string localeKey = keyJoin(key, locale);
        if (!validLocale(locale)) {
            reader.fail(k.source(), localeKey, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        const toml::table& lt = reader.table(v, localeKey);
        reader.allowOnly(lt, localeKey,
                         {"subject", "text", "html", "text_file", "html_file", "login", "verify", "recovery"});
        bool anyPurpose = std::any_of(kPurposes.begin(), kPurposes.end(),
                                      [&](const std::string& p) { return lt.get(p) != nullptr; });
        const Template* generic = nullptr;
        if (hasTemplateKeys(lt) || !anyPurpose) {
            app.templates[locale] =
                readTemplate(reader, lt, localeKey, findTemplate(builtins, locale),
                             "there is no built-in template for locale \"" + locale + "\"");
            generic = &app.templates[locale];
            ownGeneric.insert(locale);
        }
        for (const auto& purpose : kPurposes) {
            const toml::node* n = lt.get(purpose);
            if (n == nullptr) {
                continue;
            }
            std::string purposeKey = localeKey + "." + purpose;
            const toml::table& pt = reader.table(*n, purposeKey);
            reader.allowOnly(pt, purposeKey, kTemplateKeys);
            // The subject: the built-in one for this purpose, else this
            // locale's own, else the built-in generic one.
            const Template* fallback = findTemplate(builtins, locale + "." + purpose);
            if (fallback == nullptr) {
                fallback = generic != nullptr ? generic : findTemplate(builtins, locale);
            }
            app.templates[locale + "." + purpose] =
                readTemplate(reader, pt, purposeKey, fallback,
                             "there is no built-in template for locale \"" + locale + "\" and " + localeKey +
                                 " has no subject");
            own.insert(locale + "." + purpose);
        }
    }
    for (const auto& locale : ownGeneric) {
        for (const auto& purpose : kPurposes) {
            std::string k = locale + "." + purpose;
            if (own.count(k) == 0) {
                app.templates.erase(k);
            }
        }
    }
}

std::string readAwsRegion(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validAwsRegion(value)) {
        reader.fail(node, key, "must be an AWS region such as \"eu-west-1\", not \"" + value + "\"");
    }
    return value;
}

std::string readMailbox(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validMailbox(value)) {
        reader.fail(node, key, kMailboxHint);
    }
    return value;
}

std::string readConfigurationSet(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    if (!validConfigurationSet(value)) {
        reader.fail(node, key, "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
    }
    return value;
}

bool usesChannel(const App& app, std::string_view channel) { return contains(app.channels, channel); }

// [apps.NAME.whatsapp_templates]: LOCALE = { name = "...", language = "..." }.
void readWhatsappTemplates(const Reader& reader, const toml::table& templates, const std::string& key, App& app) {
    for (auto&& [k, v] : templates) {
        std::string locale(k.str());
        std::string localeKey = keyJoin(key, locale);
        if (!validLocale(locale)) {
            reader.fail(k.source(), localeKey, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        const toml::table& lt = reader.table(v, localeKey);
        reader.allowOnly(lt, localeKey, {"name", "language"});
        WhatsappTemplate out;
        const toml::node* name = lt.get("name");
        if (name == nullptr) {
            reader.fail(lt.source(), localeKey + ".name", "is required");
        }
        out.name = reader.string(*name, localeKey + ".name");
        if (!validWhatsappTemplateName(out.name)) {
            reader.fail(*name, localeKey + ".name",
                        "must be 1 to 512 characters of a-z, 0-9 and '_' (the approved template's name)");
        }
        const toml::node* language = lt.get("language");
        if (language == nullptr) {
            reader.fail(lt.source(), localeKey + ".language", "is required");
        }
        out.language = reader.string(*language, localeKey + ".language");
        if (!validWhatsappLanguage(out.language)) {
            reader.fail(*language, localeKey + ".language",
                        "must be a template language such as \"en_US\", \"de\" or \"pt_BR\", not \"" +
                            out.language + "\"");
        }
        app.whatsappTemplates.emplace(std::move(locale), std::move(out));
    }
}

// allowed_countries / denied_countries: upper-case ISO 3166 alpha-2 codes, each once.
std::vector<std::string> readCountries(const Reader& reader, const toml::node& node, const std::string& key) {
    std::vector<std::string> codes = reader.stringArray(node, key);
    for (std::size_t i = 0; i < codes.size(); ++i) {
        const toml::node& element = *node.as_array()->get(i);
        if (!validRegion(codes[i])) {
            reader.fail(element, indexKey(key, i), "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
        }
        if (std::find(codes.begin(), codes.begin() + static_cast<std::ptrdiff_t>(i), codes[i]) !=
            codes.begin() + static_cast<std::ptrdiff_t>(i)) {
            reader.fail(element, indexKey(key, i), "\"" + codes[i] + "\" is listed twice");
        }
    }
    return codes;
}

void readRateLimits(const Reader& reader, const toml::table& t, const std::string& prefix, RateLimits& limits) {
    reader.allowOnly(t, prefix,
                     {"resend_cooldown", "destination_sends", "destination_window", "ip_sends", "ip_window",
                      "prefix_sends", "prefix_window", "app_sends", "app_window", "max_subject_failures",
                      "subject_lockout", "subject_max_lockout"});
    const auto count = [&](const char* key, int& out) {
        if (const toml::node* n = t.get(key)) {
            out = static_cast<int>(reader.integer(*n, prefix + "." + key, 1, 1000000));
        }
    };
    const auto seconds = [&](const char* key, std::chrono::seconds& out, std::int64_t min) {
        if (const toml::node* n = t.get(key)) {
            out = std::chrono::seconds(reader.integer(*n, prefix + "." + key, min, 86400, "seconds"));
        }
    };
    if (const toml::node* n = t.get("resend_cooldown")) {
        limits.resendCooldown =
            std::chrono::seconds(reader.integer(*n, prefix + ".resend_cooldown", 0, 3600, "seconds"));
    }
    count("destination_sends", limits.destinationSends);
    seconds("destination_window", limits.destinationWindow, 1);
    count("ip_sends", limits.ipSends);
    seconds("ip_window", limits.ipWindow, 1);
    count("prefix_sends", limits.prefixSends);
    seconds("prefix_window", limits.prefixWindow, 1);
    count("app_sends", limits.appSends);
    seconds("app_window", limits.appWindow, 1);
    // NIST SP 800-63B 5.2.2: never more than 100 consecutive failures.
    if (const toml::node* n = t.get("max_subject_failures")) {
        limits.maxSubjectFailures = static_cast<int>(reader.integer(*n, prefix + ".max_subject_failures", 1, 100));
    }
    seconds("subject_lockout", limits.subjectLockout, 1);
    if (const toml::node* n = t.get("subject_max_lockout")) {
        limits.subjectMaxLockout = std::chrono::seconds(reader.integer(
            *n, prefix + ".subject_max_lockout", limits.subjectLockout.count(), 86400, "seconds"));
    } else if (limits.subjectMaxLockout < limits.subjectLockout) {
        limits.subjectMaxLockout = limits.subjectLockout;
    }
}

void readFraudRule(const Reader& reader, const toml::table& t, const std::string& prefix, FraudRule& rule) {
    reader.allowOnly(t, prefix, {"threshold", "window", "action"});
    if (const toml::node* n = t.get("threshold")) {
        rule.threshold = static_cast<int>(reader.integer(*n, prefix + ".threshold", 1, 1000000));
    }
    if (const toml::node* n = t.get("window")) {
        rule.window = std::chrono::seconds(reader.integer(*n, prefix + ".window", 1, 86400, "seconds"));
    }
    if (const toml::node* n = t.get("action")) {
        rule.block = reader.oneOf(*n, prefix + ".action", {"flag", "block"}) == "block";
    }
}

void readFraudRules(const Reader& reader, const toml::table& t, const std::string& prefix, FraudRules& rules) {
    reader.allowOnly(t, prefix,
                     {"distinct_destinations_per_ip", "distinct_devices_per_destination", "destination_prefix"});
    const auto rule = [&](const char* key, FraudRule& out) {
        if (const toml::node* n = t.get(key)) {
            const std::string k = prefix + "." + key;
            readFraudRule(reader, reader.table(*n, k), k, out);
        }
    };
    rule("distinct_destinations_per_ip", rules.distinctDestinationsPerIp);
    rule("distinct_devices_per_destination", rules.distinctDevicesPerDestination);
    rule("destination_prefix", rules.destinationPrefix);
}

App readApp(const Reader& reader, const toml::table& t, const std::string& name,
            const std::map<std::string, std::string>& drivers) {
    const std::string prefix = "apps." + name;
    reader.allowOnly(t, prefix,
                     {"display_name", "channels", "code_length", "min_code_length", "max_code_length", "ttl",
                      "max_ttl", "max_attempts", "max_sends", "default_locale", "default_region", "templates",
                      "ses_region", "ses_from", "ses_configuration_set", "email_from", "whatsapp_templates",
                      "allowed_countries", "denied_countries", "fallback_to_email", "rate_limits", "fraud"});
    App app;
    app.name = name;
    app.displayName = name;

    if (const toml::node* n = t.get("display_name")) {
        std::string key = prefix + ".display_name";
        app.displayName = reader.string(*n, key);
        if (app.displayName.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        if (app.displayName.size() > kMaxDisplayName) {
            reader.fail(*n, key, "must be at most " + std::to_string(kMaxDisplayName) + " bytes");
        }
        // It is substituted into mail subjects; see the subject check.
        if (hasControl(app.displayName)) {
            reader.fail(*n, key, "must not contain control characters");
        }
    }

    if (const toml::node* n = t.get("channels")) {
        std::string key = prefix + ".channels";
        auto channels = reader.stringArray(*n, key);
        if (channels.empty()) {
            reader.fail(*n, key, "must name at least one channel");
        }
        const toml::array& array = *n->as_array();
        for (std::size_t i = 0; i < channels.size(); ++i) {
            const toml::node& element = *array.get(i);
            std::string elementKey = indexKey(key, i);
            if (!contains(kChannels, channels[i])) {
                reader.fail(element, elementKey,
                            "unknown channel \"" + channels[i] + "\" (expected one of: " + joinList(kChannels) + ")");
            }
            if (std::find(channels.begin(), channels.begin() + static_cast<std::ptrdiff_t>(i), channels[i]) !=
                channels.begin() + static_cast<std::ptrdiff_t>(i)) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" is listed twice");
            }
            if (drivers.find(channels[i]) == drivers.end()) {
                reader.fail(element, elementKey, "channel \"" + channels[i] + "\" has no driver in [delivery]");
            }
        }
        app.channels = std::move(channels);
    } else {
        // Every channel that can deliver: "both" with the default [delivery].
        for (const auto& channel : kChannels) {
            if (drivers.find(channel) != drivers.end()) {
                app.channels.push_back(channel);
            }
        }
    }

    if (const toml::node* n = t.get("min_code_length")) {
        app.minCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".min_code_length", kMinCodeLength, kMaxCodeLength));
    }
    if (const toml::node* n = t.get("max_code_length")) {
        app.maxCodeLength =
            static_cast<int>(reader.integer(*n, prefix + ".max_code_length", app.minCodeLength, kMaxCodeLength));
    } else if (app.maxCodeLength < app.minCodeLength) {
        app.maxCodeLength = app.minCodeLength;
    }
    if (const toml::node* n = t.get("code_length")) {
        app.codeLength =
            static_cast<int>(reader.integer(*n, prefix + ".code_length", app.minCodeLength, app.maxCodeLength));
    } else {
        app.codeLength = std::clamp(app.codeLength, app.minCodeLength, app.maxCodeLength);
    }

    const toml::node* ttlNode = t.get("ttl");
    const toml::node* maxTtlNode = t.get("max_ttl");
    std::int64_t maxTtl = kMaxTtl;
    if (maxTtlNode != nullptr) {
        maxTtl = reader.integer(*maxTtlNode, prefix + ".max_ttl", kMinTtl, kMaxTtl, "seconds");
    }
    std::int64_t ttl = app.ttl.count();
    if (ttlNode != nullptr) {
        ttl = reader.integer(*ttlNode, prefix + ".ttl", kMinTtl, maxTtl, "seconds");
    } else if (ttl > maxTtl) {
        // A max_ttl below the default ttl lowers the default with it.
        ttl = maxTtl;
    }
    app.ttl = std::chrono::seconds(ttl);
    app.maxTtl = std::chrono::seconds(maxTtlNode != nullptr ? maxTtl : std::max(ttl, kDefaultMaxTtl));

    if (const toml::node* n = t.get("max_attempts")) {
        app.maxAttempts = static_cast<int>(reader.integer(*n, prefix + ".max_attempts", 1, 100));
    }
    if (const toml::node* n = t.get("max_sends")) {
        app.maxSends = static_cast<int>(reader.integer(*n, prefix + ".max_sends", 1, 100));
    }

    if (const toml::node* n = t.get("default_region")) {
        std::string key = prefix + ".default_region";
        app.defaultRegion = reader.string(*n, key);
        if (!validRegion(app.defaultRegion)) {
            reader.fail(*n, key, "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
        }
    }

    if (const toml::node* n = t.get("ses_region")) {
        app.sesRegion = readAwsRegion(reader, *n, prefix + ".ses_region");
    }
    if (const toml::node* n = t.get("ses_from")) {
        app.sesFrom = readMailbox(reader, *n, prefix + ".ses_from");
    }
    if (const toml::node* n = t.get("ses_configuration_set")) {
        app.sesConfigurationSet = readConfigurationSet(reader, *n, prefix + ".ses_configuration_set");
    }
    if (const toml::node* n = t.get("email_from")) {
        app.emailFrom = readMailbox(reader, *n, prefix + ".email_from");
    }

    if (const toml::node* n = t.get("whatsapp_templates")) {
        std::string key = prefix + ".whatsapp_templates";
        readWhatsappTemplates(reader, reader.table(*n, key), key, app);
    }

    const toml::node* allowed = t.get("allowed_countries");
    const toml::node* denied = t.get("denied_countries");
    if (allowed != nullptr) {
        app.allowedCountries = readCountries(reader, *allowed, prefix + ".allowed_countries");
    }
    if (denied != nullptr) {
        app.deniedCountries = readCountries(reader, *denied, prefix + ".denied_countries");
    }
    if (allowed != nullptr && denied != nullptr) {
        // A code in both lists means one of them is a mistake; the error
        // points at the later of the two in the file.
        bool deniedLater = denied->source().begin > allowed->source().begin;
        const toml::node& later = deniedLater ? *denied : *allowed;
        const auto& laterCodes = deniedLater ? app.deniedCountries : app.allowedCountries;
        const auto& earlierCodes = deniedLater ? app.allowedCountries : app.deniedCountries;
        std::string laterKey = prefix + (deniedLater ? ".denied_countries" : ".allowed_countries");
        std::string earlierKey = prefix + (deniedLater ? ".allowed_countries" : ".denied_countries");
        for (std::size_t i = 0; i < laterCodes.size(); ++i) {
            if (contains(earlierCodes, laterCodes[i])) {
                reader.fail(*later.as_array()->get(i), indexKey(laterKey, i),
                            "\"" + laterCodes[i] + "\" is also in " + earlierKey);
            }
        }
    }

    if (const toml::node* n = t.get("fallback_to_email")) {
        std::string key = prefix + ".fallback_to_email";
        app.fallbackToEmail = reader.boolean(*n, key);
        if (app.fallbackToEmail && !usesChannel(app, "email")) {
            reader.fail(*n, key, "needs \"email\" in " + prefix + ".channels");
        }
    }

    if (const toml::node* n = t.get("rate_limits")) {
        std::string key = prefix + ".rate_limits";
        readRateLimits(reader, reader.table(*n, key), key, app.rateLimits);
    }
    if (const toml::node* n = t.get("fraud")) {
        std::string key = prefix + ".fraud";
        readFraudRules(reader, reader.table(*n, key), key, app.fraud);
    }

    app.templates = builtinTemplates();
    if (const toml::node* n = t.get("templates")) {
        std::string key = prefix + ".templates";
        readTemplates(reader, reader.table(*n, key), key, app);
    }

    if (const toml::node* n = t.get("default_locale")) {
        std::string key = prefix + ".default_locale";
        app.defaultLocale = reader.string(*n, key);
        if (!validLocale(app.defaultLocale)) {
            reader.fail(*n, key, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        // Only a generic template serves every purpose.
        if (app.templates.find(app.defaultLocale) == app.templates.end()) {
            std::vector<std::string> known;
            for (const auto& [locale, tmpl] : app.templates) {
                if (locale.find('.') == std::string::npos) {
                    known.push_back(locale);
                }
            }
            reader.fail(*n, key,
                        "has no template for \"" + app.defaultLocale + "\" (available: " + joinList(known) + ")");
        }
    }
    return app;
}

void readDaemon(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "daemon",
                     {"socket", "state_dir", "database", "store_key_file", "pepper_file", "generate_keys",
                      "synchronous", "log_level"});
    if (const toml::node* n = t.get("socket")) {
        config.socketPath = reader.absolutePath(*n, "daemon.socket");
        if (config.socketPath.size() > kMaxSocketPath) {
            reader.fail(*n, "daemon.socket",
                        "must be at most " + std::to_string(kMaxSocketPath) + " bytes (the Unix socket path limit)");
        }
    }
    if (const toml::node* n = t.get("state_dir")) {
        config.stateDir = reader.absolutePath(*n, "daemon.state_dir");
    }
    if (const toml::node* n = t.get("database")) {
        config.databasePath = reader.absolutePath(*n, "daemon.database");
    }
    if (const toml::node* n = t.get("store_key_file")) {
        config.storeKeyFile = reader.absolutePath(*n, "daemon.store_key_file");
    }
    if (const toml::node* n = t.get("pepper_file")) {
        config.pepperFile = reader.absolutePath(*n, "daemon.pepper_file");
    }
    if (const toml::node* n = t.get("generate_keys")) {
        config.generateKeys = reader.boolean(*n, "daemon.generate_keys");
    }
    if (const toml::node* n = t.get("synchronous")) {
        config.synchronousFull = reader.oneOf(*n, "daemon.synchronous", {"full", "normal"}) == "full";
    }
    if (const toml::node* n = t.get("log_level")) {
        config.logLevel = reader.oneOf(*n, "daemon.log_level", {"debug", "info", "warning", "error"});
    }
}

void readLimits(const Reader& reader, const toml::table& t, Limits& limits) {
    reader.allowOnly(t, "limits",
                     {"max_message_bytes", "max_depth", "idle_timeout", "request_timeout",
                      "max_connections_per_uid"});
    if (const toml::node* n = t.get("max_message_bytes")) {
        limits.maxMessageBytes =
            static_cast<std::size_t>(reader.integer(*n, "limits.max_message_bytes", 1024, 16 * 1024 * 1024, "bytes"));
    }
    if (const toml::node* n = t.get("max_depth")) {
        limits.maxDepth = static_cast<int>(reader.integer(*n, "limits.max_depth", 2, 64));
    }
    if (const toml::node* n = t.get("idle_timeout")) {
        limits.idleTimeout = std::chrono::seconds(reader.integer(*n, "limits.idle_timeout", 1, 86400, "seconds"));
    }
    if (const toml::node* n = t.get("request_timeout")) {
        limits.requestTimeout =
            std::chrono::seconds(reader.integer(*n, "limits.request_timeout", 1, 3600, "seconds"));
    }
    if (const toml::node* n = t.get("max_connections_per_uid")) {
        limits.maxConnectionsPerUid = static_cast<int>(reader.integer(*n, "limits.max_connections_per_uid", 1, 10000));
    }
}

void readRetention(const Reader& reader, const toml::table& t, Retention& retention) {
    reader.allowOnly(t, "retention", {"schedule", "code_hashes", "delivery_logs", "authentication_metadata",
                                       "removed_apps", "batch_size"});
    if (const toml::node* n = t.get("schedule")) {
        std::string text = reader.string(*n, "retention.schedule");
        auto parsed = privacy::CronSchedule::parse(text);
        if (const auto* e = std::get_if<privacy::CronError>(&parsed)) {
            reader.fail(*n, "retention.schedule",
                        "invalid cron expression \"" + text + "\" (column " + std::to_string(e->column) + ": " +
                            e->message + ")");
        }
        if (!std::get<privacy::CronSchedule>(parsed).next(0)) {
            reader.fail(*n, "retention.schedule", "\"" + text + "\" never matches");
        }
        retention.schedule = std::move(text);
    }
    if (const toml::node* n = t.get("code_hashes")) {
        retention.codeHashes = reader.integer(*n, "retention.code_hashes", 60, 31536000, "seconds");
    }
    if (const toml::node* n = t.get("delivery_logs")) {
        retention.deliveryLogs = reader.integer(*n, "retention.delivery_logs", 3600, 3650LL * 86400, "seconds");
    }
    if (const toml::node* n = t.get("authentication_metadata")) {
        retention.authenticationMetadata =
            reader.integer(*n, "retention.authentication_metadata", 86400, 3650LL * 86400, "seconds");
    }
    if (const toml::node* n = t.get("removed_apps")) {
        retention.removedApps = reader.integer(*n, "retention.removed_apps", 0, 3650LL * 86400, "seconds");
    }
    // Authentication metadata outlives the delivery log it was distilled from.
    if (retention.authenticationMetadata < retention.deliveryLogs)
        reader.fail(t, "retention.authentication_metadata",
                    "must not be shorter than retention.delivery_logs (" + std::to_string(retention.deliveryLogs) +
                        " s)");
    if (const toml::node* n = t.get("batch_size")) {
        retention.batchSize = static_cast<int>(reader.integer(*n, "retention.batch_size", 1, 100000));
    }
}

void readAccess(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "access", {"operator", "dpo", "admin"});
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        const toml::node* n = t.get(roleName(role));
        if (n == nullptr) {
            continue;
        }
        std::string prefix = std::string("access.") + roleName(role);
        const toml::table& grant = reader.table(*n, prefix);
        reader.allowOnly(grant, prefix, {"users", "groups"});
        RoleGrant& out = config.access[role];
        for (auto [field, list] : {std::pair{"users", &out.users}, std::pair{"groups", &out.groups}}) {
            const toml::node* f = grant.get(field);
            if (f == nullptr) {
                continue;
            }
            std::string key = prefix + "." + field;
            *list = reader.stringArray(*f, key);
            for (std::size_t i = 0; i < list->size(); ++i) {
                if (!validPrincipal((*list)[i])) {
                    reader.fail(*f->as_array()->get(i), indexKey(key, i),
                                std::string("is not a valid ") + (list == &out.users ? "user name or uid" : "group name or gid"));
                }
            }
        }
    }
}

void readDelivery(const Reader& reader, const toml::table& t, Config& config) {
    reader.allowOnly(t, "delivery", {"email", "whatsapp"});
    if (t.empty()) {
        reader.fail(t.source(), "delivery", "must give a driver for at least one channel");
    }
    for (auto&& [k, v] : t) {
        std::string key = keyJoin("delivery", k.str());
        config.drivers[std::string(k.str())] =
            reader.oneOf(v, key, k.str() == "email" ? kEmailDrivers : kWhatsappDrivers);
    }
}

std::int64_t readTimeout(const Reader& reader, const toml::node& node, const std::string& key) {
    return reader.integer(node, key, 1, kMaxProviderTimeout, "seconds");
}

void readTls(const Reader& reader, const toml::table& t, Tls& tls) {
    reader.allowOnly(t, "tls", {"min_version", "ca_bundle"});
    if (const toml::node* n = t.get("min_version")) {
        tls.minVersion = reader.oneOf(*n, "tls.min_version", {"1.2", "1.3"});
    }
    if (const toml::node* n = t.get("ca_bundle")) {
        tls.caBundle = reader.absolutePath(*n, "tls.ca_bundle");
        // Checked now: a typo here would otherwise surface as a TLS failure
        // on the first send, hours later.
        struct stat st {};
        if (::stat(tls.caBundle.c_str(), &st) != 0) {
            int err = errno;
            reader.fail(*n, "tls.ca_bundle", tls.caBundle + ": " + std::strerror(err));
        }
        if (!S_ISREG(st.st_mode)) {
            reader.fail(*n, "tls.ca_bundle", tls.caBundle + ": not a regular file");
        }
    }
}

// An http(s) base URL of a provider's API ([ses] endpoint, [whatsapp]
// graph_url), without trailing slashes: the drivers append their own paths.
std::string readApiUrl(const Reader& reader, const toml::node& node, const std::string& key) {
    std::string value = reader.string(node, key);
    Url url;
    std::string error = parseUrl(value, url);
    if (!error.empty()) {
        reader.fail(node, key, error);
    }
    if (url.scheme != "https" && url.scheme != "http") {
        reader.fail(node, key, "must be an https:// URL");
    }
    // Plain HTTP would carry the message (and the code) in clear text:
    // only for a local test server.
    if (url.scheme == "http" && !isLoopbackHost(url.host)) {
        reader.fail(node, key, "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
    }
    while (value.size() > url.scheme.size() + 3 && value.back() == '/') {
        value.pop_back();
    }
    return value;
}

void readSes(const Reader& reader, const toml::table& t, Ses& ses) {
    reader.allowOnly(t, "ses",
                     {"region", "endpoint", "from", "reply_to", "configuration_set", "access_key_id_file",
                      "secret_access_key_file", "session_token_file", "timeout"});
    if (const toml::node* n = t.get("region")) {
        ses.region = readAwsRegion(reader, *n, "ses.region");
    }
    if (const toml::node* n = t.get("endpoint")) {
        ses.endpoint = readApiUrl(reader, *n, "ses.endpoint");
    }
    if (const toml::node* n = t.get("from")) {
        ses.from = readMailbox(reader, *n, "ses.from");
    }
    if (const toml::node* n = t.get("reply_to")) {
        ses.replyTo = reader.stringArray(*n, "ses.reply_to");
        for (std::size_t i = 0; i < ses.replyTo.size(); ++i) {
            if (!validMailbox(ses.replyTo[i])) {
                reader.fail(*n->as_array()->get(i), indexKey("ses.reply_to", i), kMailboxHint);
            }
        }
    }
    if (const toml::node* n = t.get("configuration_set")) {
        ses.configurationSet = readConfigurationSet(reader, *n, "ses.configuration_set");
    }
    const toml::node* keyId = t.get("access_key_id_file");
    const toml::node* secret = t.get("secret_access_key_file");
    const toml::node* token = t.get("session_token_file");
    if (keyId != nullptr) {
        ses.accessKeyIdFile = reader.absolutePath(*keyId, "ses.access_key_id_file");
    }
    if (secret != nullptr) {
        ses.secretAccessKeyFile = reader.absolutePath(*secret, "ses.secret_access_key_file");
    }
    if (token != nullptr) {
        ses.sessionTokenFile = reader.absolutePath(*token, "ses.session_token_file");
    }
    if (keyId != nullptr && secret == nullptr) {
        reader.fail(*keyId, "ses.access_key_id_file", "needs ses.secret_access_key_file as well");
    }
    if (secret != nullptr && keyId == nullptr) {
        reader.fail(*secret, "ses.secret_access_key_file", "needs ses.access_key_id_file as well");
    }
    if (token != nullptr && keyId == nullptr) {
        reader.fail(*token, "ses.session_token_file",
                    "needs ses.access_key_id_file and ses.secret_access_key_file as well");
    }
    if (const toml::node* n = t.get("timeout")) {
        ses.timeout = std::chrono::seconds(readTimeout(reader, *n, "ses.timeout"));
    }
}

// Whether systemd passed the named credential (present in
// $CREDENTIALS_DIRECTORY now, at load).
bool haveCredential(std::string_view name) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
        return false;
    }
    struct stat st {};
    return ::stat(joinPath(dir, name).c_str(), &st) == 0;
}

void readSmtp(const Reader& reader, const toml::table& t, Smtp& smtp) {
    reader.allowOnly(t, "smtp",
                     {"url", "from", "username", "password_file", "ses_region", "require_tls", "timeout"});
    const toml::node* urlNode = t.get("url");
    Url url;
    if (urlNode != nullptr) {
        smtp.url = reader.string(*urlNode, "smtp.url");
        std::string error = parseUrl(smtp.url, url);
        if (!error.empty()) {
            reader.fail(*urlNode, "smtp.url", error);
        }
        if (url.scheme != "smtp" && url.scheme != "smtps") {
            reader.fail(*urlNode, "smtp.url",
                        "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS), not \"" + url.scheme + "://\"");
        }
        // libcurl takes a path as the name to send in EHLO; nothing else.
        if (!url.path.empty() && !std::all_of(url.path.begin() + 1, url.path.end(),
                                              [](char c) { return isAlnum(c) || c == '.' || c == '-'; })) {
            reader.fail(*urlNode, "smtp.url", "may only have a host name as its path (the EHLO name)");
        }
    }
    if (const toml::node* n = t.get("from")) {
        smtp.from = readMailbox(reader, *n, "smtp.from");
    }
    const toml::node* username = t.get("username");
    if (username != nullptr) {
        smtp.username = reader.string(*username, "smtp.username");
        if (smtp.username.empty() || hasControl(smtp.username)) {
            reader.fail(*username, "smtp.username", "must not be empty or contain control characters");
        }
    }
    const toml::node* passwordFile = t.get("password_file");
    const toml::node* sesRegion = t.get("ses_region");
    if (passwordFile != nullptr) {
        smtp.passwordFile = reader.absolutePath(*passwordFile, "smtp.password_file");
    }
    if (sesRegion != nullptr) {
        smtp.sesRegion = readAwsRegion(reader, *sesRegion, "smtp.ses_region");
    }
    if (passwordFile != nullptr && sesRegion != nullptr) {
        const toml::node& later =
            passwordFile->source().begin > sesRegion->source().begin ? *passwordFile : *sesRegion;
        reader.fail(later, &later == passwordFile ? "smtp.password_file" : "smtp.ses_region",
                    "password_file and ses_region are mutually exclusive (ses_region derives the password from the "
                    "AWS secret key)");
    }
    if (username != nullptr && passwordFile == nullptr && sesRegion == nullptr && !haveCredential("smtp-password")) {
        reader.fail(*username, "smtp.username",
                    "has no password: set password_file or ses_region, or pass the systemd credential "
                    "\"smtp-password\"");
    }
    if (passwordFile != nullptr && username == nullptr) {
        reader.fail(*passwordFile, "smtp.password_file", "needs smtp.username as well");
    }
    if (const toml::node* n = t.get("require_tls")) {
        smtp.requireTls = reader.boolean(*n, "smtp.require_tls");
        // Without TLS the code and the password cross the network in clear
        // text: only towards a relay on this host.
        if (!smtp.requireTls && urlNode != nullptr && url.scheme == "smtp" && !isLoopbackHost(url.host)) {
            reader.fail(*n, "smtp.require_tls",
                        "may only be false for a relay on 127.0.0.1, localhost or [::1] (or use smtps://)");
        }
    }
    if (const toml::node* n = t.get("timeout")) {
        smtp.timeout = std::chrono::seconds(readTimeout(reader, *n, "smtp.timeout"));
    }
}

void readWhatsapp(const Reader& reader, const toml::table& t, Whatsapp& whatsapp) {
    reader.allowOnly(t, "whatsapp",
                     {"graph_url", "api_version", "phone_number_id", "token_file", "timeout", "pair_backoff"});
    if (const toml::node* n = t.get("graph_url")) {
        whatsapp.graphUrl = readApiUrl(reader, *n, "whatsapp.graph_url");
    }
    if (const toml::node* n = t.get("api_version")) {
        whatsapp.apiVersion = reader.string(*n, "whatsapp.api_version");
        if (!validApiVersion(whatsapp.apiVersion)) {
            reader.fail(*n, "whatsapp.api_version",
                        "must be a Graph API version such as \"v21.0\", not \"" + whatsapp.apiVersion + "\"");
        }
    }
    if (const toml::node* n = t.get("phone_number_id")) {
        // A string: TOML integers would lose leading zeros and 64-bit range.
        whatsapp.phoneNumberId = reader.string(*n, "whatsapp.phone_number_id");
        if (!validPhoneNumberId(whatsapp.phoneNumberId)) {
            reader.fail(*n, "whatsapp.phone_number_id",
                        "must be 1 to 32 digits (the phone number ID from WhatsApp Manager, not the phone number)");
        }
    }
    if (const toml::node* n = t.get("token_file")) {
        whatsapp.tokenFile = reader.absolutePath(*n, "whatsapp.token_file");
    }
    if (const toml::node* n = t.get("timeout")) {
        whatsapp.timeout = std::chrono::seconds(readTimeout(reader, *n, "whatsapp.timeout"));
    }
    if (const toml::node* n = t.get("pair_backoff")) {
        whatsapp.pairBackoff =
            std::chrono::seconds(reader.integer(*n, "whatsapp.pair_backoff", 1, kMaxPairBackoff, "seconds"));
    }
}

void readWebhook(const Reader& reader, const toml::table& t, Webhook& webhook) {
    reader.allowOnly(t, "webhook",
                     {"enabled", "listen", "port", "path", "verify_token_file", "app_secret_file", "max_body_bytes"});
    const toml::node* enabled = t.get("enabled");
    if (enabled != nullptr) {
        webhook.enabled = reader.boolean(*enabled, "webhook.enabled");
    }
    if (const toml::node* n = t.get("listen")) {
        webhook.listen = reader.string(*n, "webhook.listen");
        // A literal only: a host name would be resolved at bind time, and
        // could resolve to something else than the administrator meant.
        if (!validIpLiteral(webhook.listen)) {
            reader.fail(*n, "webhook.listen",
                        "must be an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\" (no host name, brackets "
                        "or port)");
        }
    }
    if (const toml::node* n = t.get("port")) {
        webhook.port = static_cast<int>(reader.integer(*n, "webhook.port", 0, 65535));
    }
    if (const toml::node* n = t.get("path")) {
        webhook.path = reader.string(*n, "webhook.path");
        if (webhook.path.empty() || webhook.path[0] != '/') {
            reader.fail(*n, "webhook.path", "must start with '/'");
        }
        if (hasControl(webhook.path) || webhook.path.find_first_of(" ?#") != std::string::npos) {
            reader.fail(*n, "webhook.path", "must not contain spaces, control characters, '?' or '#'");
        }
    }
    const toml::node* verifyToken = t.get("verify_token_file");
    const toml::node* appSecret = t.get("app_secret_file");
    if (verifyToken != nullptr) {
        webhook.verifyTokenFile = reader.absolutePath(*verifyToken, "webhook.verify_token_file");
    }
    if (appSecret != nullptr) {
        webhook.appSecretFile = reader.absolutePath(*appSecret, "webhook.app_secret_file");
    }
    if (const toml::node* n = t.get("max_body_bytes")) {
        webhook.maxBodyBytes = static_cast<std::size_t>(
            reader.integer(*n, "webhook.max_body_bytes", kMinWebhookBody, kMaxWebhookBody, "bytes"));
    }
    // Without the verify token Meta's handshake cannot succeed; without the
    // app secret no signature can be checked, and unsigned posts are refused.
    if (webhook.enabled) {
        if (verifyToken == nullptr && !haveCredential("whatsapp-verify-token")) {
            reader.fail(*enabled, "webhook.verify_token_file",
                        "is required by webhook.enabled = true (or pass the systemd credential "
                        "\"whatsapp-verify-token\")");
        }
        if (appSecret == nullptr && !haveCredential("whatsapp-app-secret")) {
            reader.fail(*enabled, "webhook.app_secret_file",
                        "is required by webhook.enabled = true (or pass the systemd credential "
                        "\"whatsapp-app-secret\")");
        }
    }
}

void readRetry(const Reader& reader, const toml::table& t, Retry& retry) {
    reader.allowOnly(t, "retry", {"max_attempts", "base_delay_ms", "max_delay_ms", "send_wait"});
    if (const toml::node* n = t.get("max_attempts")) {
        retry.maxAttempts = static_cast<int>(reader.integer(*n, "retry.max_attempts", 1, 20));
    }
    if (const toml::node* n = t.get("base_delay_ms")) {
        retry.baseDelay = std::chrono::milliseconds(reader.integer(*n, "retry.base_delay_ms", 10, 60000, "ms"));
    }
    if (const toml::node* n = t.get("max_delay_ms")) {
        retry.maxDelay =
            std::chrono::milliseconds(reader.integer(*n, "retry.max_delay_ms", retry.baseDelay.count(), 300000, "ms"));
    } else if (retry.maxDelay < retry.baseDelay) {
        // A base above the default maximum raises the maximum with it.
        retry.maxDelay = retry.baseDelay;
    }
    if (const toml::node* n = t.get("send_wait")) {
        retry.sendWait = std::chrono::seconds(reader.integer(*n, "retry.send_wait", 1, 300, "seconds"));
    }
}

// What a driver needs but one table alone cannot tell: settings that may be
// given globally or per app. Errors point at the [delivery] entry.
void checkEmailDriver(const Reader& reader, const toml::table* delivery, const Config& config) {
    auto driver = config.drivers.find("email");
    if (driver == config.drivers.end() || delivery == nullptr) {
        return;
    }
    const toml::node& where = *delivery->get("email");
    const std::string because = "is required by delivery.email = \"" + driver->second + "\"";
    if (driver->second == "ses") {
        for (const auto& [name, app] : config.apps) {
            if (!usesChannel(app, "email")) {
                continue;
            }
            if (config.ses.region.empty() && app.sesRegion.empty()) {
                reader.fail(where, "ses.region", because + " (apps." + name + " has no ses_region)");
            }
            if (config.ses.from.empty() && app.sesFrom.empty()) {
                reader.fail(where, "ses.from", because + " (apps." + name + " has no ses_from)");
            }
        }
    } else if (driver->second == "smtp") {
        if (config.smtp.url.empty()) {
            reader.fail(where, "smtp.url", because);
        }
        for (const auto& [name, app] : config.apps) {
            if (usesChannel(app, "email") && config.smtp.from.empty() && app.emailFrom.empty()) {
                reader.fail(where, "smtp.from", because + " (apps." + name + " has no email_from)");
            }
        }
    }
}

// The WhatsApp template an app sends for a locale: the locale's own, its
// language's, else "en". The same order the driver uses.
std::vector<std::string> whatsappTemplateCandidates(const std::string& locale) {
    std::vector<std::string> out = {locale};
    std::string language = locale.substr(0, locale.find('-'));
    for (const std::string& candidate : {language, std::string("en")}) {
        if (!contains(out, candidate)) {
            out.push_back(candidate);
        }
    }
    return out;
}

void checkWhatsappDriver(const Reader& reader, const toml::table* delivery, const Config& config) {
    auto driver = config.drivers.find("whatsapp");
    if (driver == config.drivers.end() || delivery == nullptr || driver->second != "whatsapp") {
        return;
    }
    const toml::node& where = *delivery->get("whatsapp");
    const std::string because = "is required by delivery.whatsapp = \"whatsapp\"";
    if (config.whatsapp.phoneNumberId.empty()) {
        reader.fail(where, "whatsapp.phone_number_id", because);
    }
    if (config.whatsapp.tokenFile.empty() && !haveCredential("whatsapp-token")) {
        reader.fail(where, "whatsapp.token_file", because + " (or pass the systemd credential \"whatsapp-token\")");
    }
    for (const auto& [name, app] : config.apps) {
        if (!usesChannel(app, "whatsapp")) {
            continue;
        }
        auto candidates = whatsappTemplateCandidates(app.defaultLocale);
        bool found = std::any_of(candidates.begin(), candidates.end(), [&](const std::string& locale) {
            return app.whatsappTemplates.count(locale) != 0;
        });
        if (!found) {
            std::string wanted;
            for (std::size_t i = 0; i < candidates.size(); ++i) {
                if (i > 0) {
                    wanted += i + 1 == candidates.size() ? " or " : ", ";
                }
                wanted += "\"" + candidates[i] + "\"";
            }
            reader.fail(where, "apps." + name + ".whatsapp_templates",
                        because + " (apps." + name + " has no template for " + wanted + ")");
        }
    }
}

void fillAccessRoles(Config& config) {
    // Every role present, possibly empty, so lookups never need a find().
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        config.access[role];
    }
}

void fillDerivedPaths(Config& config) {
    if (config.databasePath.empty()) {
        config.databasePath = joinPath(config.stateDir, "twofactor.db");
    }
    if (config.storeKeyFile.empty()) {
        config.storeKeyFile = joinPath(config.stateDir, "keys/store.key");
    }
    if (config.pepperFile.empty()) {
        config.pepperFile = joinPath(config.stateDir, "keys/pepper.key");
    }
    if (config.outboxDir.empty()) {
        config.outboxDir = joinPath(config.stateDir, "outbox");
    }
}

Config fromTable(const Reader& reader, const toml::table& root, const std::string& sourceName) {
    reader.allowOnly(root, "",
                     {"daemon", "limits", "access", "delivery", "outbox", "tls", "ses", "smtp", "retry", "whatsapp",
                      "webhook", "retention", "privacy", "apps"});

    Config config;
    config.sourcePath = sourceName;
    config.embedded = false;
    config.socketPath = paths::systemSocket();
    config.stateDir = paths::systemStateDir();

    if (const toml::node* n = root.get("daemon")) {
        readDaemon(reader, reader.table(*n, "daemon"), config);
    }
    if (const toml::node* n = root.get("limits")) {
        readLimits(reader, reader.table(*n, "limits"), config.limits);
    }
    if (const toml::node* n = root.get("access")) {
        readAccess(reader, reader.table(*n, "access"), config);
    }
    fillAccessRoles(config);

    const toml::table* delivery = nullptr;
    if (const toml::node* n = root.get("delivery")) {
        delivery = &reader.table(*n, "delivery");
        readDelivery(reader, *delivery, config);
    } else {
        config.drivers = {{"email", "outbox"}, {"whatsapp", "outbox"}};
    }

    if (const toml::node* n = root.get("outbox")) {
        const toml::table& outbox = reader.table(*n, "outbox");
        reader.allowOnly(outbox, "outbox", {"directory"});
        if (const toml::node* d = outbox.get("directory")) {
            config.outboxDir = reader.absolutePath(*d, "outbox.directory");
        }
    }
    fillDerivedPaths(config);

    if (const toml::node* n = root.get("tls")) {
        readTls(reader, reader.table(*n, "tls"), config.tls);
    }
    if (const toml::node* n = root.get("ses")) {
        readSes(reader, reader.table(*n, "ses"), config.ses);
    }
    if (const toml::node* n = root.get("smtp")) {
        readSmtp(reader, reader.table(*n, "smtp"), config.smtp);
    }
    if (const toml::node* n = root.get("retry")) {
        readRetry(reader, reader.table(*n, "retry"), config.retry);
    }
    if (const toml::node* n = root.get("whatsapp")) {
        readWhatsapp(reader, reader.table(*n, "whatsapp"), config.whatsapp);
    }
    if (const toml::node* n = root.get("webhook")) {
        readWebhook(reader, reader.table(*n, "webhook"), config.webhook);
    }
    if (const toml::node* n = root.get("retention")) {
        readRetention(reader, reader.table(*n, "retention"), config.retention);
    }
    if (const toml::node* n = root.get("privacy")) {
        const toml::table& t = reader.table(*n, "privacy");
        reader.allowOnly(t, "privacy", {"controller", "contact", "dpo"});
        for (auto [key, out] : {std::pair{"controller", &config.privacy.controller},
                                std::pair{"contact", &config.privacy.contact}, std::pair{"dpo", &config.privacy.dpo}}) {
            const toml::node* v = t.get(key);
            if (v == nullptr) continue;
            const std::string name = std::string("privacy.") + key;
            *out = reader.string(*v, name);
            if (!validUtf8(*out)) reader.fail(*v, name, "must be valid UTF-8");
            if (auto problem = privacyTextProblem(*out)) reader.fail(*v, name, *problem);
        }
    }

    const toml::node* appsNode = root.get("apps");
    if (appsNode == nullptr) {
        throw ConfigError(sourceName, 0, 0, "apps", "no apps configured");
    }
    const toml::table& apps = reader.table(*appsNode, "apps");
    if (apps.empty()) {
        reader.fail(apps.source(), "apps", "no apps configured");
    }
    for (auto&& [k, v] : apps) {
        std::string name(k.str());
        std::string key = "apps." + name;
        if (!validAppName(name)) {
            reader.fail(k.source(), key,
                        "app names must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or "
                        "digit");
        }
        config.apps.emplace(name, readApp(reader, reader.table(v, key), name, config.drivers));
    }
    checkEmailDriver(reader, delivery, config);
    checkWhatsappDriver(reader, delivery, config);
    return config;
}

}  // namespace

Config parse(std::string_view text, const std::string& sourceName) {
    toml::table root;
    try {
        root = toml::parse(text, sourceName);
    } catch (const toml::parse_error& e) {
        throw ConfigError(sourceName, static_cast<int>(e.source().begin.line),
                          static_cast<int>(e.source().begin.column), "", std::string(e.description()));
    }
    return fromTable(Reader(sourceName), root, sourceName);
}

Config loadFile(const std::string& path) {
    std::FILE* file = std::fopen(path.c_str(), "rbe");
    if (file == nullptr) {
        int err = errno;
        throw ConfigError(path, 0, 0, "", std::strerror(err));
    }
    std::string text;
    char buffer[8192];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
        text.append(buffer, n);
    }
    // fopen succeeds on a directory; the read is what fails, with EISDIR.
    int err = std::ferror(file) ? errno : 0;
    std::fclose(file);
    if (err != 0) {
        throw ConfigError(path, 0, 0, "", std::strerror(err));
    }
    return parse(text, path);
}

Config embeddedDefault() {
    Config config;
    config.sourcePath.clear();
    config.embedded = true;
    config.socketPath = paths::defaultSocket();
    config.stateDir = paths::defaultStateDir();
    // No administrator has set anything up: the daemon creates its own keys.
    config.generateKeys = true;
    config.synchronousFull = true;
    fillDerivedPaths(config);

    // Whoever runs a personal daemon owns it; nobody else gets in.
    RoleGrant self;
    self.users.push_back(std::to_string(::getuid()));
    for (Role role : {Role::Operator, Role::Dpo, Role::Admin}) {
        config.access[role] = self;
    }

    config.drivers = {{"email", "outbox"}, {"whatsapp", "outbox"}};

    App app;
    app.name = "default";
    app.displayName = "twofactor";
    app.channels = kChannels;
    app.templates = builtinTemplates();
    config.apps.emplace(app.name, std::move(app));
    return config;
}

namespace {

// A purpose template from its subject, its first sentence (which starts with
// {{code}}) and the rest; the HTML part has the code in bold.
std::pair<const std::string, Template> purpose(std::string subject, std::string_view lead, std::string_view rest,
                                               std::string key) {
    constexpr std::string_view kCode = "{{code}}";
    std::string text = std::string(lead) + ' ' + std::string(rest);
    std::string html = "<p><strong>{{code}}</strong>" + std::string(lead.substr(kCode.size())) + "</p><p>" +
                       std::string(rest) + "</p>";
    return {std::move(key), Template{std::move(subject), std::move(text), std::move(html)}};
}

}  // namespace

const std::map<std::string, Template>& builtinTemplates() {
    // Never the code in a subject: subjects show on lock screens, in
    // notification previews and in mail logs.
    static const std::map<std::string, Template> templates = {
        {"en",
         {"Your {{app}} verification code",
          "{{code}} is your {{app}} verification code. It expires in {{minutes}} minutes. "
          "If you did not request it, you can ignore this message.",
          "<p><strong>{{code}}</strong> is your {{app}} verification code.</p>"
          "<p>It expires in {{minutes}} minutes. If you did not request it, you can ignore this message.</p>"}},
        {"de",
         {"Ihr Bestätigungscode für {{app}}",
          "{{code}} ist Ihr Bestätigungscode für {{app}}. Er ist {{minutes}} Minuten gültig. "
          "Falls Sie ihn nicht angefordert haben, können Sie diese Nachricht ignorieren.",
          "<p><strong>{{code}}</strong> ist Ihr Bestätigungscode für {{app}}.</p>"
          "<p>Er ist {{minutes}} Minuten gültig. Falls Sie ihn nicht angefordert haben, können Sie diese "
          "Nachricht ignorieren.</p>"}},
        {"fr",
         {"Votre code de vérification {{app}}",
          "{{code}} est votre code de vérification {{app}}. Il expire dans {{minutes}} minutes. "
          "Si vous ne l'avez pas demandé, vous pouvez ignorer ce message.",
          "<p><strong>{{code}}</strong> est votre code de vérification {{app}}.</p>"
          "<p>Il expire dans {{minutes}} minutes. Si vous ne l'avez pas demandé, vous pouvez ignorer ce "
          "message.</p>"}},
        {"es",
         {"Tu código de verificación de {{app}}",
          "{{code}} es tu código de verificación de {{app}}. Caduca en {{minutes}} minutos. "
          "Si no lo has solicitado, puedes ignorar este mensaje.",
          "<p><strong>{{code}}</strong> es tu código de verificación de {{app}}.</p>"
          "<p>Caduca en {{minutes}} minutos. Si no lo has solicitado, puedes ignorar este mensaje.</p>"}},

        // Purpose variants. `lead` starts with {{code}}; the HTML part puts it in bold.
        purpose("Your {{app}} sign-in code", "{{code}} is your {{app}} sign-in code.",
                "It expires in {{minutes}} minutes. If you did not try to sign in, you can ignore this message. "
                "Never share this code with anyone.",
                "en.login"),
        purpose("Confirm your email address for {{app}}", "{{code}} is your {{app}} confirmation code.",
                "Enter it to confirm your email address or phone number. It expires in {{minutes}} minutes. "
                "If you did not request it, you can ignore this message.",
                "en.verify"),
        purpose("Your {{app}} account recovery code", "{{code}} is your {{app}} account recovery code.",
                "It expires in {{minutes}} minutes. If you did not ask to recover your account, someone may be "
                "trying to access it: do not share this code with anyone.",
                "en.recovery"),

        purpose("Ihr Anmeldecode für {{app}}", "{{code}} ist Ihr Anmeldecode für {{app}}.",
                "Er ist {{minutes}} Minuten gültig. Falls Sie sich nicht anmelden wollten, können Sie diese "
                "Nachricht ignorieren. Geben Sie den Code an niemanden weiter.",
                "de.login"),
        purpose("Bestätigen Sie Ihre E-Mail-Adresse für {{app}}", "{{code}} ist Ihr Bestätigungscode für {{app}}.",
                "Geben Sie ihn ein, um Ihre E-Mail-Adresse oder Telefonnummer zu bestätigen. Er ist {{minutes}} "
                "Minuten gültig. Falls Sie ihn nicht angefordert haben, können Sie diese Nachricht ignorieren.",
                "de.verify"),
        purpose("Ihr Code zur Wiederherstellung Ihres Kontos bei {{app}}",
                "{{code}} ist Ihr Code zur Wiederherstellung Ihres Kontos bei {{app}}.",
                "Er ist {{minutes}} Minuten gültig. Falls Sie die Wiederherstellung nicht angefordert haben, "
                "versucht möglicherweise jemand, auf Ihr Konto zuzugreifen: Geben Sie diesen Code an niemanden "
                "weiter.",
                "de.recovery"),

        purpose("Votre code de connexion {{app}}", "{{code}} est votre code de connexion {{app}}.",
                "Il expire dans {{minutes}} minutes. Si vous n'avez pas essayé de vous connecter, vous pouvez "
                "ignorer ce message. Ne communiquez ce code à personne.",
                "fr.login"),
        purpose("Confirmez votre adresse e-mail pour {{app}}", "{{code}} est votre code de confirmation {{app}}.",
                "Saisissez-le pour confirmer votre adresse e-mail ou votre numéro de téléphone. Il expire dans "
                "{{minutes}} minutes. Si vous ne l'avez pas demandé, vous pouvez ignorer ce message.",
                "fr.verify"),
        purpose("Votre code de récupération de compte {{app}}",
                "{{code}} est votre code de récupération de compte {{app}}.",
                "Il expire dans {{minutes}} minutes. Si vous n'avez pas demandé à récupérer votre compte, "
                "quelqu'un essaie peut-être d'y accéder : ne communiquez ce code à personne.",
                "fr.recovery"),

        purpose("Tu código de inicio de sesión de {{app}}", "{{code}} es tu código de inicio de sesión de {{app}}.",
                "Caduca en {{minutes}} minutos. Si no has intentado iniciar sesión, puedes ignorar este mensaje. "
                "No compartas este código con nadie.",
                "es.login"),
        purpose("Confirma tu dirección de correo electrónico en {{app}}",
                "{{code}} es tu código de confirmación de {{app}}.",
                "Introdúcelo para confirmar tu dirección de correo electrónico o tu número de teléfono. Caduca en "
                "{{minutes}} minutos. Si no lo has solicitado, puedes ignorar este mensaje.",
                "es.verify"),
        purpose("Tu código de recuperación de cuenta de {{app}}",
                "{{code}} es tu código de recuperación de cuenta de {{app}}.",
                "Caduca en {{minutes}} minutos. Si no has pedido recuperar tu cuenta, es posible que alguien esté "
                "intentando acceder a ella: no compartas este código con nadie.",
                "es.recovery"),
    };
    return templates;
}

}  // namespace twofactor::config
