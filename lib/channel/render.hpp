// Renders a template into a message, in memory only.
#pragma once

#include "channel/channel.hpp"
#include "config/config.hpp"

#include <string>
#include <string_view>

namespace twofactor::channel {

struct RenderValues {
    std::string_view code;
    std::string_view app;  // display name
    long minutes = 10;
};

// Replaces {{code}}, {{app}} and {{minutes}}; with html=true the values are HTML-escaped.
[[nodiscard]] std::string renderTemplate(std::string_view text, const RenderValues& values, bool html);

[[nodiscard]] std::string htmlEscape(std::string_view text);

// The template for a locale: the app's own, else the built-in, falling back
// from "pt-BR" to "pt", then to the app's default locale, then to "en".
// Sets `usedLocale` to the locale chosen.
[[nodiscard]] const config::Template& selectTemplate(const config::App& app, std::string_view locale,
                                                     std::string& usedLocale);

}  // namespace twofactor::channel
