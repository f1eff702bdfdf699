// [apps.NAME.events]: where an app's events go, which ones, and how hard to try.
#include "config/sections.hpp"

#include "otp/events.hpp"

namespace twofactor::config::detail {

AppEvents readAppEvents(const Reader& reader, const toml::table& t, const std::string& prefix) {
    reader.allowOnly(t, prefix,
                     {"url", "secret_file", "events", "ca_file", "timeout", "max_failures", "retry_base", "retry_for"});
    AppEvents e;
    const toml::node* url = t.get("url");
    if (url == nullptr) reader.fail(t, prefix, "needs url = \"https://...\": where the events are sent");
    e.url = reader.string(*url, prefix + ".url");
    // Events name requests and their outcomes: they go encrypted and to a
    // verified peer only, never over plain http.
    if (e.url.rfind("https://", 0) != 0 || e.url.size() <= 8 || e.url.find_first_of(" \t\r\n") != std::string::npos)
        reader.fail(*url, prefix + ".url", "must be an https:// URL, not \"" + e.url + "\"");
    const toml::node* secret = t.get("secret_file");
    if (secret == nullptr)
        reader.fail(t, prefix, "needs secret_file: a file holding the signing secret \"whsec_<base64>\"");
    e.secretFile = reader.absolutePath(*secret, prefix + ".secret_file");
    const toml::node* events = t.get("events");
    if (events == nullptr) reader.fail(t, prefix, "needs events = [...]: the event types to send");
    e.events = reader.stringArray(*events, prefix + ".events");
    if (e.events.empty()) reader.fail(*events, prefix + ".events", "must name at least one event type");
    std::vector<std::string> known;
    for (const char* type : otp::kEventTypes) known.emplace_back(type);
    for (std::size_t i = 0; i < e.events.size(); ++i) {
        if (!otp::knownEventType(e.events[i]))
            reader.fail(*events->as_array()->get(i), indexKey(prefix + ".events", i),
                        "unknown event type \"" + e.events[i] + "\" (known: " + joinList(known) + ")");
        for (std::size_t j = 0; j < i; ++j)
            if (e.events[j] == e.events[i])
                reader.fail(*events->as_array()->get(i), indexKey(prefix + ".events", i),
                            "\"" + e.events[i] + "\" is named twice");
    }
    if (const toml::node* n = t.get("ca_file")) e.caFile = reader.absolutePath(*n, prefix + ".ca_file");
    if (const toml::node* n = t.get("timeout"))
        e.timeout = std::chrono::seconds(reader.integer(*n, prefix + ".timeout", 1, 120, "seconds"));
    if (const toml::node* n = t.get("max_failures"))
        e.maxFailures = static_cast<int>(reader.integer(*n, prefix + ".max_failures", 1, 10000));
    if (const toml::node* n = t.get("retry_base"))
        e.retryBase = std::chrono::seconds(reader.integer(*n, prefix + ".retry_base", 1, 3600, "seconds"));
    if (const toml::node* n = t.get("retry_for"))
        e.retryFor = std::chrono::seconds(reader.integer(*n, prefix + ".retry_for", 60, 604800, "seconds"));
    return e;
}

}  // namespace twofactor::config::detail
