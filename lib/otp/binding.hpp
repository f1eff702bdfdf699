// Transaction binding (PSD2 dynamic linking): a send may bind its code to a
// context ("amount" = "49.90 EUR", "payee" = "Shop GmbH"). The context is
// shown in the message, hashed into the code's HMAC, so that a verify must
// present the same context, and otherwise kept only as a keyed digest.
#pragma once

#include "util/secret.hpp"

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace twofactor::otp {

inline constexpr std::size_t kMaxBindings = 8;
inline constexpr std::size_t kMaxBindingKey = 32;
inline constexpr std::size_t kMaxBindingValue = 200;

// A validated context in its canonical form: the entries sorted by key, each
// "key=value", joined by '\n'. Keys hold no '=' and values no control
// character, so the form is unambiguous. Wiped with itself.
class BoundContext final {
public:
    BoundContext() = default;
    BoundContext(BoundContext&&) noexcept = default;
    BoundContext& operator=(BoundContext&&) noexcept = default;

    [[nodiscard]] bool empty() const { return canonical_.view().empty(); }
    [[nodiscard]] std::string_view canonical() const { return canonical_.view(); }
    // The value bound to `key`, if any.
    [[nodiscard]] std::optional<std::string_view> value(std::string_view key) const;
    // The keys, in order.
    [[nodiscard]] std::vector<std::string> keys() const;
    [[nodiscard]] BoundContext clone() const;

    friend struct BindingParser;

private:
    explicit BoundContext(std::string canonical) : canonical_(std::move(canonical)) {}
    SecretString canonical_;
};

// What was wrong with a context, naming the key (never the value).
struct BindingError {
    std::string reason;
};

// At most kMaxBindings entries; keys [a-z][a-z0-9_]* of at most
// kMaxBindingKey bytes; values of 1 to kMaxBindingValue bytes of valid UTF-8
// with no control characters and no "{{" or "}}" (a value is shown in a
// template, never parsed as one, but a message that seems to hold a
// placeholder would mislead its reader).
[[nodiscard]] std::variant<BoundContext, BindingError> parseBinding(const std::map<std::string, std::string>& entries);

struct BindingParser {
    static BoundContext make(std::string canonical) { return BoundContext(std::move(canonical)); }
};

// The keyed digest kept for audit: hex HMAC-SHA256(key, "binding v1\n" ||
// canonical). Empty for an empty context.
[[nodiscard]] std::string bindingDigest(const SecretBytes& key, const BoundContext& context);

}  // namespace twofactor::otp
