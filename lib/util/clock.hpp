// Time, injectable so tests can move it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace twofactor {

class Clock {
public:
    virtual ~Clock() = default;
    // Seconds since the Unix epoch.
    [[nodiscard]] virtual std::int64_t now() const = 0;
};

class SystemClock final : public Clock {
public:
    std::int64_t now() const override;
};

// A clock tests can set: holds an explicit time.
class ManualClock final : public Clock {
public:
    explicit ManualClock(std::int64_t start) : now_(start) {}
    std::int64_t now() const override { return now_; }
    void set(std::int64_t t) { now_ = t; }
    void advance(std::int64_t seconds) { now_ += seconds; }

private:
    std::int64_t now_;
};

// For integration tests of the real daemon (twofactord --clock-file): the
// time is the integer in the file, re-read when the file changes; the system
// clock while the file does not exist.
class FileClock final : public Clock {
public:
    explicit FileClock(std::string path) : path_(std::move(path)) {}
    std::int64_t now() const override;

private:
    std::string path_;
};

}  // namespace twofactor
