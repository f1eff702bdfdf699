// Plural forms for message templates: {{minutes|minute|minutes}} picks the
// word that goes with the number, by the CLDR cardinal rule of the template's
// language.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace twofactor::config {

// How many forms a plural placeholder needs in a locale ("de", "pt-BR"): the
// number of CLDR categories the language uses for whole numbers, one and
// other for every language known here. nullopt for a language without rules
// here.
[[nodiscard]] std::optional<std::size_t> pluralFormCount(std::string_view locale);

// Which of those forms goes with `n` (0-based, in CLDR order: one, then
// other); as in English for a language without rules.
[[nodiscard]] std::size_t pluralForm(std::string_view locale, long n);

}  // namespace twofactor::config
