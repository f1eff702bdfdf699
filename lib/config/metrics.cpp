// [metrics]: where the Prometheus endpoint listens.
#include "config/sections.hpp"

#include <arpa/inet.h>

namespace twofactor::config::detail {

void readMetrics(const Reader& reader, const toml::table& t, Config::Metrics& metrics) {
    reader.allowOnly(t, "metrics", {"listen"});
    const toml::node* n = t.get("listen");
    if (n == nullptr) return;
    const std::string text = reader.string(*n, "metrics.listen");
    // HOST:PORT or [IPV6]:PORT, numeric: no name resolution at start.
    std::string host, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':') {
            host = text.substr(1, close - 1);
            port = text.substr(close + 2);
        }
    } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    int portNumber = 0;
    for (char c : port) portNumber = (c >= '0' && c <= '9' && portNumber < 65536) ? portNumber * 10 + (c - '0') : 65536;
    if (host.empty() || port.empty() || portNumber < 1 || portNumber > 65535)
        reader.fail(*n, "metrics.listen", "\"" + text + "\" is not ADDRESS:PORT (e.g. \"127.0.0.1:9464\")");
    // Loopback only: the counts are not secret, but nothing else in the
    // daemon listens beyond this host, and a scraper elsewhere goes through
    // a proxy that the admin secures.
    in_addr v4{};
    in6_addr v6{};
    const bool loopback = (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) ||
                          (inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6));
    if (!loopback)
        reader.fail(*n, "metrics.listen",
                    "\"" + host + "\" is not a loopback address (127.0.0.0/8 or [::1]); the metrics endpoint "
                    "serves this host only");
    metrics.listen = text;
    metrics.address = host;
    metrics.port = portNumber;
}

}  // namespace twofactor::config::detail
