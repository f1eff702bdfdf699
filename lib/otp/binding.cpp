#include "otp/binding.hpp"

#include "util/crypto.hpp"

namespace twofactor::otp {

namespace {

bool validKey(std::string_view k) {
    if (k.empty() || k.size() > kMaxBindingKey || k[0] < 'a' || k[0] > 'z') return false;
    for (char c : k)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

// Valid UTF-8 (no overlong forms, no surrogates) without C0/C1 controls or DEL.
bool validValue(std::string_view v) {
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const std::size_t n = v.size();
    for (std::size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) return false;
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + len > n) return false;
        for (std::size_t j = 1; j < len; ++j) {
            if ((p[i + j] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return false;
        i += len;
    }
    return true;
}

}  // namespace

std::optional<std::string_view> BoundContext::value(std::string_view key) const {
    std::string_view rest = canonical();
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const std::string_view entry = rest.substr(0, nl);
        const auto eq = entry.find('=');
        if (entry.substr(0, eq) == key) return entry.substr(eq + 1);
        if (nl == std::string_view::npos) break;
        rest.remove_prefix(nl + 1);
    }
    return std::nullopt;
}

std::vector<std::string> BoundContext::keys() const {
    std::vector<std::string> out;
    std::string_view rest = canonical();
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const std::string_view entry = rest.substr(0, nl);
        out.emplace_back(entry.substr(0, entry.find('=')));
        if (nl == std::string_view::npos) break;
        rest.remove_prefix(nl + 1);
    }
    return out;
}

BoundContext BoundContext::clone() const { return BoundContext(std::string(canonical())); }

std::variant<BoundContext, BindingError> parseBinding(const std::map<std::string, std::string>& entries) {
    if (entries.size() > kMaxBindings)
        return BindingError{"at most " + std::to_string(kMaxBindings) + " entries, not " +
                            std::to_string(entries.size())};
    std::string canonical;
    for (const auto& [k, v] : entries) {  // std::map: sorted by key
        if (!validKey(k))
            return BindingError{"key '" + (validValue(k) && k.size() <= 64 ? k : std::string("?")) +
                                "': keys are a lower-case letter, then letters, digits or '_', at most " +
                                std::to_string(kMaxBindingKey) + " bytes"};
        if (v.empty() || v.size() > kMaxBindingValue)
            return BindingError{"the value of '" + k + "' must have 1 to " + std::to_string(kMaxBindingValue) +
                                " bytes"};
        if (!validValue(v))
            return BindingError{"the value of '" + k + "' must be UTF-8 text without control characters"};
        if (v.find("{{") != std::string::npos || v.find("}}") != std::string::npos)
            return BindingError{"the value of '" + k + "' must not contain \"{{\" or \"}}\""};
        if (!canonical.empty()) canonical.push_back('\n');
        canonical += k;
        canonical.push_back('=');
        canonical += v;
    }
    return BindingParser::make(std::move(canonical));
}

std::string bindingDigest(const SecretBytes& key, const BoundContext& context) {
    if (context.empty()) return {};
    SecretString message(std::string("binding v1\n") + std::string(context.canonical()));
    return crypto::hex(crypto::hmacSha256(key, message.view()));
}

}  // namespace twofactor::otp
