#include "otp/code.hpp"

#include <openssl/crypto.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace twofactor::otp {

SecretString generateCode(int length) {
    if (length < kMinCodeLength || length > kMaxCodeLength)
        throw std::invalid_argument("code length must be between 4 and 10 digits");

    std::uint64_t bound = 1;
    for (int i = 0; i < length; ++i) bound *= 10;  // 10^10 fits easily in 64 bits

    // A single draw over the whole range (rather than one draw per digit)
    // keeps every code equally likely; rejection sampling removes modulo bias.
    std::uint64_t value = crypto::randomBelow(bound);

    std::string digits(static_cast<std::size_t>(length), '0');
    for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
        *it = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    // The string is moved into the wiping holder; wipe the integer copy too.
    OPENSSL_cleanse(&value, sizeof value);
    return SecretString(std::move(digits));
}

crypto::Digest codeHash(const SecretBytes& pepper, std::string_view requestId, std::string_view code) {
    // The message contains the plaintext code, so it lives in a wiping holder.
    SecretBytes message(requestId.size() + 1 + code.size());
    std::uint8_t* p = message.data();
    for (char c : requestId) *p++ = static_cast<std::uint8_t>(c);
    *p++ = 0x00;
    for (char c : code) *p++ = static_cast<std::uint8_t>(c);
    return crypto::hmacSha256(pepper, message.view());
}

crypto::Digest codeHash(const SecretBytes& pepper, std::string_view requestId, std::string_view code,
                        std::string_view context) {
    if (context.empty()) return codeHash(pepper, requestId, code);
    SecretBytes message(requestId.size() + 1 + code.size() + 1 + context.size());
    std::uint8_t* p = message.data();
    for (char c : requestId) *p++ = static_cast<std::uint8_t>(c);
    *p++ = 0x00;
    for (char c : code) *p++ = static_cast<std::uint8_t>(c);
    *p++ = 0x01;
    for (char c : context) *p++ = static_cast<std::uint8_t>(c);
    return crypto::hmacSha256(pepper, message.view());
}

bool wellFormedCode(std::string_view code) {
    if (code.size() < static_cast<std::size_t>(kMinCodeLength) || code.size() > static_cast<std::size_t>(kMaxCodeLength))
        return false;
    for (char c : code)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace twofactor::otp
