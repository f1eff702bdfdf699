// The .varlink files, embedded at build time (see embed_varlink.py).
#pragma once

#include <string_view>
#include <vector>

namespace twofactor::ipc {

struct EmbeddedInterface {
    std::string_view name;
    std::string_view description;
};

const std::vector<EmbeddedInterface>& embeddedInterfaces();

}  // namespace twofactor::ipc
