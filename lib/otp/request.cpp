#include "otp/request.hpp"

namespace twofactor::otp {

namespace {
constexpr const char* kStatusNames[] = {"pending", "approved", "expired", "locked", "canceled", "failed"};
}

const char* statusName(Status s) { return kStatusNames[static_cast<int>(s)]; }

std::optional<Status> parseStatus(std::string_view name) {
    for (int i = 0; i < 6; ++i)
        if (name == kStatusNames[i]) return static_cast<Status>(i);
    return std::nullopt;
}

bool validPurpose(std::string_view purpose) {
    for (const char* p : kPurposes)
        if (purpose == p) return true;
    return false;
}

}  // namespace twofactor::otp
