#include "util/clock.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>

namespace twofactor {

std::int64_t SystemClock::now() const {
    using namespace std::chrono;
    return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t FileClock::now() const {
    std::ifstream in(path_);
    long long value = 0;
    if (in >> value) return value;
    return SystemClock().now();
}

}  // namespace twofactor
