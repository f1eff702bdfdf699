#include "channel/render.hpp"

namespace twofactor::channel {

std::string htmlEscape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out.push_back(c);
        }
    }
    return out;
}

std::string renderTemplate(std::string_view text, const RenderValues& values, bool html) {
    std::string out;
    out.reserve(text.size() + 16);
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto open = text.find("{{", pos);
        if (open == std::string_view::npos) break;
        const auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos) break;
        out.append(text.substr(pos, open - pos));
        const std::string_view name = text.substr(open + 2, close - open - 2);
        std::string value;
        if (name == "code") value = std::string(values.code);
        else if (name == "app") value = std::string(values.app);
        else if (name == "minutes") value = std::to_string(values.minutes);
        else value = std::string(text.substr(open, close + 2 - open));  // config validation rejects these
        out += html ? htmlEscape(value) : value;
        pos = close + 2;
    }
    out.append(text.substr(pos));
    return out;
}

namespace {
const config::Template* lookup(const config::App& app, const std::string& locale) {
    if (auto it = app.templates.find(locale); it != app.templates.end()) return &it->second;
    const auto& builtins = config::builtinTemplates();
    if (auto it = builtins.find(locale); it != builtins.end()) return &it->second;
    return nullptr;
}
}  // namespace

const config::Template& selectTemplate(const config::App& app, std::string_view locale, std::string& usedLocale) {
    std::string candidates[4];
    int n = 0;
    if (!locale.empty()) {
        candidates[n++] = std::string(locale);
        if (auto dash = locale.find_first_of("-_"); dash != std::string_view::npos)
            candidates[n++] = std::string(locale.substr(0, dash));
    }
    candidates[n++] = app.defaultLocale;
    candidates[n++] = "en";
    for (int i = 0; i < n; ++i) {
        if (const auto* t = lookup(app, candidates[i])) {
            usedLocale = candidates[i];
            return *t;
        }
    }
    // Config validation guarantees the default locale resolves; "en" is built in.
    usedLocale = "en";
    return config::builtinTemplates().at("en");
}

}  // namespace twofactor::channel
