// [http]: the HTTPS API listener.
#include "config/sections.hpp"

#include <arpa/inet.h>

namespace twofactor::config::detail {

namespace {

bool validAddress(const std::string& host) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// "203.0.113.7:8443" or "[2001:db8::1]:8443"; port 0 (tests) picks a free one.
bool validListen(const std::string& s) {
    std::string host;
    std::string port;
    if (s.starts_with('[')) {
        const auto close = s.find("]:");
        if (close == std::string::npos) return false;
        host = s.substr(1, close - 1);
        port = s.substr(close + 2);
        if (host.find(':') == std::string::npos) return false;
    } else {
        const auto colon = s.rfind(':');
        if (colon == std::string::npos) return false;
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (host.find(':') != std::string::npos) return false;
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
    return validAddress(host) && std::stoi(port) <= 65535;
}

bool validNetwork(const std::string& s) {
    const auto slash = s.find('/');
    const std::string host = s.substr(0, slash);
    if (!validAddress(host)) return false;
    if (slash == std::string::npos) return true;
    const std::string bits = s.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos) return false;
    return std::stoi(bits) <= (host.find(':') == std::string::npos ? 32 : 128);
}

}  // namespace

void readHttp(const Reader& reader, const toml::table& t, Http& http) {
    reader.allowOnly(t, "http",
                     {"listen", "cert_file", "key_file", "min_tls", "trusted_proxies", "header_timeout",
                      "body_timeout", "idle_timeout", "max_header_bytes", "max_header_count", "max_body_bytes",
                      "max_connections", "max_connections_per_ip", "key_requests_per_minute"});
    if (const toml::node* n = t.get("listen")) {
        http.listen = reader.stringArray(*n, "http.listen");
        for (std::size_t i = 0; i < http.listen.size(); ++i)
            if (!validListen(http.listen[i]))
                reader.fail(*n->as_array()->get(i), indexKey("http.listen", i),
                            "must be ADDRESS:PORT (\"0.0.0.0:8443\", \"[::]:8443\"), not \"" + http.listen[i] + "\"");
    }
    if (const toml::node* n = t.get("cert_file")) http.certFile = reader.absolutePath(*n, "http.cert_file");
    if (const toml::node* n = t.get("key_file")) http.keyFile = reader.absolutePath(*n, "http.key_file");
    if (const toml::node* n = t.get("min_tls")) http.minTls = reader.oneOf(*n, "http.min_tls", {"1.3", "1.2"});
    if (const toml::node* n = t.get("trusted_proxies")) {
        http.trustedProxies = reader.stringArray(*n, "http.trusted_proxies");
        for (std::size_t i = 0; i < http.trustedProxies.size(); ++i)
            if (!validNetwork(http.trustedProxies[i]))
                reader.fail(*n->as_array()->get(i), indexKey("http.trusted_proxies", i),
                            "must be an IP address or a CIDR network, not \"" + http.trustedProxies[i] + "\"");
    }
    if (const toml::node* n = t.get("header_timeout"))
        http.headerTimeout = std::chrono::seconds(reader.integer(*n, "http.header_timeout", 1, 300, "seconds"));
    if (const toml::node* n = t.get("body_timeout"))
        http.bodyTimeout = std::chrono::seconds(reader.integer(*n, "http.body_timeout", 1, 600, "seconds"));
    if (const toml::node* n = t.get("idle_timeout"))
        http.idleTimeout = std::chrono::seconds(reader.integer(*n, "http.idle_timeout", 1, 3600, "seconds"));
    if (http.bodyTimeout < http.headerTimeout) {
        if (const toml::node* n = t.get("body_timeout"))
            reader.fail(*n, "http.body_timeout", "must not be shorter than http.header_timeout");
        else
            reader.fail(*t.get("header_timeout"), "http.header_timeout",
                        "must not be longer than http.body_timeout (30 s unless set)");
    }
    if (const toml::node* n = t.get("max_header_bytes"))
        http.maxHeaderBytes =
            static_cast<std::size_t>(reader.integer(*n, "http.max_header_bytes", 1024, 1024 * 1024, "bytes"));
    if (const toml::node* n = t.get("max_header_count"))
        http.maxHeaderCount = static_cast<std::size_t>(reader.integer(*n, "http.max_header_count", 8, 1000));
    if (const toml::node* n = t.get("max_body_bytes"))
        http.maxBodyBytes =
            static_cast<std::size_t>(reader.integer(*n, "http.max_body_bytes", 1024, 16 * 1024 * 1024, "bytes"));
    if (const toml::node* n = t.get("max_connections"))
        http.maxConnections = static_cast<int>(reader.integer(*n, "http.max_connections", 1, 100000));
    if (const toml::node* n = t.get("max_connections_per_ip"))
        http.maxConnectionsPerIp = static_cast<int>(reader.integer(*n, "http.max_connections_per_ip", 1, 100000));
    if (const toml::node* n = t.get("key_requests_per_minute"))
        http.keyRequestsPerMinute = static_cast<int>(reader.integer(*n, "http.key_requests_per_minute", 0, 1000000));
    if (!http.listen.empty() && http.certFile.empty() && http.keyFile.empty() &&
        (!haveCredential("http-cert") || !haveCredential("http-key")))
        reader.fail(*t.get("listen"), "http.listen",
                    "needs a certificate: set cert_file and key_file, or pass the systemd credentials http-cert and "
                    "http-key");
    if (!http.listen.empty() && (http.certFile.empty() != http.keyFile.empty())) {
        const toml::node* n = t.get(http.certFile.empty() ? "key_file" : "cert_file");
        reader.fail(*n, http.certFile.empty() ? "http.key_file" : "http.cert_file",
                    "needs its pair: set both cert_file and key_file (or neither, for the systemd credentials "
                    "http-cert and http-key)");
    }
}

}  // namespace twofactor::config::detail
