#include "server/denials.hpp"

namespace twofactor::server {

bool DenialLedger::deny(uid_t uid, const std::string& method) {
    const auto key = static_cast<std::int64_t>(uid);
    auto it = uids_.find(key);
    if (it == uids_.end()) {
        if (uids_.size() >= maxUids_) {
            carry(kOtherUids, 1, method);
            return false;
        }
        uids_.emplace(key, Entry{});
        return true;
    }
    ++it->second.count;
    if (it->second.lastMethod != method) it->second.lastMethod = method;
    return false;
}

std::vector<DenialLedger::Summary> DenialLedger::close() {
    std::vector<Summary> out;
    for (auto it = uids_.begin(); it != uids_.end();) {
        if (it->second.count == 0) {
            it = uids_.erase(it);
            continue;
        }
        out.push_back(Summary{it->first, it->second.count, it->second.lastMethod});
        it->second.count = 0;
        ++it;
    }
    return out;
}

void DenialLedger::carry(std::int64_t uid, std::uint64_t count, const std::string& method) {
    // The overflow bucket may exceed maxUids_ by this one entry.
    auto& e = uids_[uid];
    e.count += count;
    e.lastMethod = method;
}

}  // namespace twofactor::server
