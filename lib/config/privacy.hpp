// [privacy]: who answers for the personal data twofactor processes, named in
// every GDPR subject export (Art. 13(1)(a)/(b), Art. 15). Kept apart from the
// section readers so that its rules are read in one place.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace twofactor::config {

struct Privacy {
    std::string controller;  // controller: the controller's name and postal address
    std::string contact;     // contact: how the controller is reached (email address, URL or postal address)
    std::string dpo;         // dpo: the data protection officer's contact, where one is appointed
};

inline constexpr std::size_t kMaxPrivacyText = 300;

// What is wrong with a [privacy] value, or nothing: one line of printable
// text (valid UTF-8 is checked by the reader), at most kMaxPrivacyText bytes;
// a value that looks like an email address (an '@', no spaces) must have
// text on both sides of a single '@' and a dot in its domain.
[[nodiscard]] inline std::optional<std::string> privacyTextProblem(std::string_view value) {
    if (value.empty()) return "must not be empty (leave the key out instead)";
    if (value.size() > kMaxPrivacyText) return "must be at most " + std::to_string(kMaxPrivacyText) + " bytes";
    for (unsigned char c : value)
        if (c < 0x20 || c == 0x7f) return std::string("must be one line without control characters");
    if (value.front() == ' ' || value.back() == ' ') return std::string("must not start or end with a space");
    const auto at = value.find('@');
    if (at != std::string_view::npos && value.find(' ') == std::string_view::npos &&
        value.find("://") == std::string_view::npos) {
        const auto domain = value.substr(at + 1);
        if (at == 0 || domain.empty() || domain.find('@') != std::string_view::npos ||
            domain.find('.') == std::string_view::npos || domain.front() == '.' || domain.back() == '.')
            return std::string("is not a valid email address");
    }
    return std::nullopt;
}

}  // namespace twofactor::config
