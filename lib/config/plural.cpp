#include "config/plural.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace twofactor::config {

namespace {

enum class Rule {
    OneIsOne,      // one: n = 1 (en, de, es, it, nl, ...)
    OneIsZeroOne,  // one: n = 0 or 1 (fr, and pt outside Portugal)
};

struct Language {
    std::string_view tag;
    Rule rule;
};

// CLDR's cardinal rules restricted to whole numbers, for languages that have
// just the categories one and other there. Languages with more (Polish,
// Russian, Arabic, ...) are left out rather than half right.
constexpr std::array<Language, 20> kLanguages = {{
    {"bg", Rule::OneIsOne},     {"ca", Rule::OneIsOne},     {"da", Rule::OneIsOne}, {"de", Rule::OneIsOne},
    {"el", Rule::OneIsOne},     {"en", Rule::OneIsOne},     {"es", Rule::OneIsOne}, {"et", Rule::OneIsOne},
    {"fi", Rule::OneIsOne},     {"fr", Rule::OneIsZeroOne}, {"hu", Rule::OneIsOne}, {"it", Rule::OneIsOne},
    {"nb", Rule::OneIsOne},     {"nl", Rule::OneIsOne},     {"nn", Rule::OneIsOne}, {"no", Rule::OneIsOne},
    {"pt", Rule::OneIsZeroOne}, {"sv", Rule::OneIsOne},     {"tr", Rule::OneIsOne}, {"gl", Rule::OneIsOne},
}};

std::optional<Rule> ruleFor(std::string_view locale) {
    // European Portuguese counts like English; the rest of "pt" like French.
    if (locale.substr(0, 5) == "pt-PT") {
        return Rule::OneIsOne;
    }
    const std::string_view language = locale.substr(0, locale.find_first_of("-_"));
    auto it = std::find_if(kLanguages.begin(), kLanguages.end(), [&](const Language& l) { return l.tag == language; });
    if (it == kLanguages.end()) {
        return std::nullopt;
    }
    return it->rule;
}

}  // namespace

std::optional<std::size_t> pluralFormCount(std::string_view locale) {
    if (!ruleFor(locale)) {
        return std::nullopt;
    }
    return 2;
}

std::size_t pluralForm(std::string_view locale, long n) {
    switch (ruleFor(locale).value_or(Rule::OneIsOne)) {
        case Rule::OneIsOne:
            return n == 1 ? 0 : 1;
        case Rule::OneIsZeroOne:
            return n == 0 || n == 1 ? 0 : 1;
    }
    return 1;
}

}  // namespace twofactor::config
