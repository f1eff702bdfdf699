#include "otp/phone.hpp"

#include "module_paths.h"

#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace twofactor::otp::phone {

namespace {

struct Module {
    int (*parse)(const char*, const char*, char*, std::size_t) = nullptr;
    int (*countryCode)(const char*) = nullptr;
    void (*region)(const char*, char*, std::size_t) = nullptr;
};

template <typename F>
F symbol(void* handle, const char* name, const std::string& path) {
    void* p = dlsym(handle, name);
    if (!p) throw std::runtime_error(path + " has no " + name + ": not a twofactor-phone module of this version");
    return reinterpret_cast<F>(p);
}

const Module& module() {
    static std::once_flag once;
    static Module m;
    static std::string error;
    std::call_once(once, [] {
        const std::string path = modulePath();
        // RTLD_LOCAL: libphonenumber's and protobuf's symbols stay the module's.
        void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            const char* why = dlerror();
            error = "cannot load the phone number module " + path + " (" + (why ? why : "unknown error") +
                    "); phone numbers need it: is twofactor installed completely?";
            return;
        }
        try {
            if (symbol<int (*)()>(handle, "twofactor_phone_abi", path)() != 1)
                throw std::runtime_error(path + " is a twofactor-phone module of another version");
            m.parse = symbol<decltype(m.parse)>(handle, "twofactor_phone_parse", path);
            m.countryCode = symbol<decltype(m.countryCode)>(handle, "twofactor_phone_country_code", path);
            m.region = symbol<decltype(m.region)>(handle, "twofactor_phone_region", path);
        } catch (const std::exception& e) {
            error = e.what();
            m = Module{};
        }
    });
    if (!m.parse) throw std::runtime_error(error);
    return m;
}

// '+' and 1 to 15 digits: anything else never reaches libphonenumber.
bool looksE164(std::string_view s) {
    if (s.size() < 2 || s.size() > 16 || s.front() != '+') return false;
    for (std::size_t i = 1; i < s.size(); ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

}  // namespace

std::string modulePath() {
    std::array<char, PATH_MAX> exe{};
    const ssize_t n = readlink("/proc/self/exe", exe.data(), exe.size() - 1);
    const std::string self = n > 0 ? std::string(exe.data(), static_cast<std::size_t>(n)) : std::string();
    const std::string buildRoot = TWOFACTOR_BUILD_ROOT "/";
    if (self.compare(0, buildRoot.size(), buildRoot) == 0) return TWOFACTOR_BUILD_ROOT "/lib/twofactor-phone.so";
    return TWOFACTOR_MODULE_DIR "/twofactor-phone.so";
}

void checkInstalled() {
    const std::string path = modulePath();
    if (access(path.c_str(), R_OK) != 0)
        throw std::runtime_error("the phone number module " + path + " is missing (" + std::strerror(errno) +
                                 "); phone numbers need it: is twofactor installed completely?");
}

Parsed parse(std::string_view cleaned, std::string_view region) {
    const Module& m = module();
    std::array<char, 256> out{};
    Parsed p;
    p.ok = m.parse(std::string(cleaned).c_str(), std::string(region).c_str(), out.data(), out.size()) == 1;
    (p.ok ? p.e164 : p.reason) = out.data();
    return p;
}

int countryCode(std::string_view e164) {
    if (!looksE164(e164)) return 0;
    return module().countryCode(std::string(e164).c_str());
}

std::string region(std::string_view e164) {
    if (!looksE164(e164)) return "";
    std::array<char, 8> out{};
    module().region(std::string(e164).c_str(), out.data(), out.size());
    return out.data();
}

}  // namespace twofactor::otp::phone
