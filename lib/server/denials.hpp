// Denied calls counted per uid and window, so that a peer with no role costs
// the daemon a bounded amount however fast it calls: its first denial is
// reported at once, the rest only as one count per window.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <sys/types.h>
#include <vector>

namespace twofactor::server {

class DenialLedger {
public:
    // Denials of uids beyond `maxUids` distinct ones in a window are counted
    // together (uid kOtherUids), so memory stays bounded too.
    explicit DenialLedger(std::size_t maxUids = 4096) : maxUids_(maxUids) {}

    static constexpr std::int64_t kOtherUids = -1;

    // Counts one denial. True when it is the first of its uid since a window
    // without any: report it now. Otherwise it is counted for close().
    [[nodiscard]] bool deny(uid_t uid, const std::string& method);

    struct Summary {
        std::int64_t uid = 0;     // or kOtherUids
        std::uint64_t count = 0;  // denials counted (not reported at once) in the window
        std::string lastMethod;
    };
    // Ends the window: the counts of uids that had any, in uid order. A uid
    // with none in this window is forgotten, so its next denial is reported
    // at once again; one still denied goes on being counted.
    [[nodiscard]] std::vector<Summary> close();

    // Adds back a count that could not be recorded, for the next window.
    void carry(std::int64_t uid, std::uint64_t count, const std::string& method);

    [[nodiscard]] std::size_t trackedUids() const { return uids_.size(); }

private:
    struct Entry {
        std::uint64_t count = 0;
        std::string lastMethod;
    };
    std::size_t maxUids_;
    std::map<std::int64_t, Entry> uids_;
};

}  // namespace twofactor::server
