#include "channel/render.hpp"

#include "config/plural.hpp"

#include <map>
#include <string>

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

namespace {
// The form for values.minutes out of "ONE|OTHER". Config validation gives
// every template as many forms as its locale's rule has; the last form
// stands in for any that is missing.
std::string_view pluralForm(std::string_view forms, const RenderValues& values) {
    std::size_t index = config::pluralForm(values.locale, values.minutes);
    std::size_t start = 0;
    for (; index > 0; --index) {
        const auto bar = forms.find('|', start);
        if (bar == std::string_view::npos) break;
        start = bar + 1;
    }
    return forms.substr(start, forms.find('|', start) - start);
}
}  // namespace

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
        pos = close + 2;
        if (name.substr(0, 8) == "minutes|") {
            out.append(pluralForm(name.substr(8), values));
            continue;
        }
        std::string value;
        if (name.substr(0, 8) == "context.") {
            // A send refuses a context that lacks a key its template shows.
            if (values.context)
                if (auto v = values.context->value(name.substr(8))) value = std::string(*v);
        } else if (name == "code") value = std::string(values.code);
        else if (name == "app") value = std::string(values.app);
        else if (name == "minutes") value = std::to_string(values.minutes);
        else value = std::string(text.substr(open, close + 2 - open));  // config validation rejects these
        out += html ? htmlEscape(value) : value;
    }
    out.append(text.substr(pos));
    return out;
}

std::string contextLines(const otp::BoundContext& context, bool html) {
    std::string out;
    for (const auto& key : context.keys()) {
        const std::string v(*context.value(key));
        if (html) out += "<p>" + htmlEscape(key) + ": " + htmlEscape(v) + "</p>";
        else out += "\n" + key + ": " + v;
    }
    if (!html && !out.empty()) out += "\n";
    return out;
}

std::vector<std::string> contextPlaceholders(std::string_view text) {
    std::vector<std::string> out;
    for (auto pos = text.find("{{context."); pos != std::string_view::npos; pos = text.find("{{context.", pos)) {
        const auto close = text.find("}}", pos);
        if (close == std::string_view::npos) break;
        out.emplace_back(text.substr(pos + 10, close - pos - 10));
        pos = close + 2;
    }
    return out;
}

namespace {
const config::Template* find(const std::map<std::string, config::Template>& templates, const std::string& key) {
    auto it = templates.find(key);
    return it == templates.end() ? nullptr : &it->second;
}

const config::Template* lookup(const config::App& app, const std::string& locale, std::string_view purpose) {
    const auto& builtins = config::builtinTemplates();
    const std::string specific = purpose.empty() ? std::string() : locale + "." + std::string(purpose);
    if (!specific.empty()) {
        if (const auto* t = find(app.templates, specific)) return t;
    }
    if (const auto* t = find(app.templates, locale)) return t;
    if (!specific.empty()) {
        if (const auto* t = find(builtins, specific)) return t;
    }
    return find(builtins, locale);
}
}  // namespace

const config::Template& selectTemplate(const config::App& app, std::string_view locale, std::string_view purpose,
                                       std::string& usedLocale) {
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
        // A '.' would turn a locale into another locale's purpose key.
        if (candidates[i].empty() || candidates[i].find('.') != std::string::npos) continue;
        if (const auto* t = lookup(app, candidates[i], purpose)) {
            usedLocale = candidates[i];
            return *t;
        }
    }
    // Config validation guarantees the default locale resolves; "en" is built in.
    usedLocale = "en";
    return config::builtinTemplates().at("en");
}

}  // namespace twofactor::channel
