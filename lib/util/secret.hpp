// Holders for secrets (keys, peppers, plaintext codes): non-copyable, wiped on destruction.
#pragma once

#include <openssl/crypto.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twofactor {

// Bytes that must never be logged or copied by accident. Moving transfers
// ownership; the moved-from holder is left empty and wiped.
class SecretBytes final {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::size_t size) : data_(size) {}
    SecretBytes(const void* data, std::size_t size)
        : data_(static_cast<const std::uint8_t*>(data), static_cast<const std::uint8_t*>(data) + size) {}
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    SecretBytes(SecretBytes&& other) noexcept : data_(std::move(other.data_)) { other.wipe(); }
    SecretBytes& operator=(SecretBytes&& other) noexcept {
        if (this != &other) {
            wipe();
            data_ = std::move(other.data_);
            other.wipe();
        }
        return *this;
    }
    ~SecretBytes() { wipe(); }

    [[nodiscard]] SecretBytes clone() const { return SecretBytes(data_.data(), data_.size()); }
    std::uint8_t* data() { return data_.data(); }
    const std::uint8_t* data() const { return data_.data(); }
    std::size_t size() const { return data_.size(); }
    bool empty() const { return data_.empty(); }
    std::string_view view() const { return {reinterpret_cast<const char*>(data_.data()), data_.size()}; }

    void wipe() {
        if (!data_.empty()) OPENSSL_cleanse(data_.data(), data_.size());
        data_.clear();
    }

private:
    std::vector<std::uint8_t> data_;
};

// A secret string (a plaintext code, a rendered message body).
class SecretString final {
public:
    SecretString() = default;
    explicit SecretString(std::string value) : value_(std::move(value)) {}
    SecretString(const SecretString&) = delete;
    SecretString& operator=(const SecretString&) = delete;
    SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
    SecretString& operator=(SecretString&& other) noexcept {
        if (this != &other) {
            wipe();
            value_ = std::move(other.value_);
            other.wipe();
        }
        return *this;
    }
    ~SecretString() { wipe(); }

    [[nodiscard]] SecretString clone() const { return SecretString(value_); }
    const std::string& str() const { return value_; }
    std::string_view view() const { return value_; }
    bool empty() const { return value_.empty(); }
    std::size_t size() const { return value_.size(); }

    void wipe() {
        if (!value_.empty()) OPENSSL_cleanse(value_.data(), value_.size());
        value_.clear();
    }

private:
    std::string value_;
};

}  // namespace twofactor
