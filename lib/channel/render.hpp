// Renders a template into a message, in memory only.
#pragma once

#include "channel/channel.hpp"
#include "config/config.hpp"
#include "otp/binding.hpp"

#include <string>
#include <string_view>

namespace twofactor::channel {

struct RenderValues {
    std::string_view code;
    std::string_view app;  // display name
    long minutes = 10;
    std::string_view locale = "en";  // the template's: picks {{minutes|ONE|OTHER}}'s form
    const otp::BoundContext* context = nullptr;  // a bound send's context: {{context.KEY}}
};

// Replaces {{code}}, {{app}}, {{minutes}} and {{context.KEY}}, and
// {{minutes|ONE|OTHER}} with the form the locale's plural rule picks for
// `minutes` (template text, so never escaped); with html=true the values are
// HTML-escaped.
[[nodiscard]] std::string renderTemplate(std::string_view text, const RenderValues& values, bool html);

// "key: value" lines (paragraphs in HTML) of a whole context: added to a
// body whose template shows none of it, so the reader always sees what the
// code approves.
[[nodiscard]] std::string contextLines(const otp::BoundContext& context, bool html);

// The KEYs of the {{context.KEY}} placeholders in a template text, in order.
[[nodiscard]] std::vector<std::string> contextPlaceholders(std::string_view text);

[[nodiscard]] std::string htmlEscape(std::string_view text);

// The template for a locale and purpose ("login", "verify", "recovery", or ""
// for none). Candidate locales, in order: the requested one, its language part
// ("pt-BR" -> "pt"), the app's default locale, "en". For each candidate L:
// the app's "L.PURPOSE", the app's "L", the built-in "L.PURPOSE", the built-in
// "L". Sets `usedLocale` to the candidate chosen (without the purpose).
[[nodiscard]] const config::Template& selectTemplate(const config::App& app, std::string_view locale,
                                                     std::string_view purpose, std::string& usedLocale);

}  // namespace twofactor::channel
