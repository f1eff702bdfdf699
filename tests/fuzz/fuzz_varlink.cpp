// The fuzz target for what a peer controls: the Varlink framing and codec
// (lib/ipc/message.cpp) and checking parameters against the interface
// descriptions (lib/ipc/idl.cpp). The first byte picks what the rest is fed
// to ('C' a call stream, 'R' a reply, 'I' an interface description; anything
// else: all three), so corpus files stay readable. Beyond "does not crash" it
// checks what the daemon relies on: no exception escapes the parsers, and a
// call that parses encodes back to the same call.
#include "ipc/idl.hpp"
#include "ipc/message.hpp"
#include "ipc/varlink_interfaces.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace {

using namespace twofactor::ipc;

[[noreturn]] void broken(const char* what) {
    std::fprintf(stderr, "fuzz-varlink: invariant broken: %s\n", what);
    std::abort();
}

const std::map<std::string, idl::Interface>& interfaces() {
    static const auto* all = [] {
        auto* m = new std::map<std::string, idl::Interface>;
        for (const auto& e : embeddedInterfaces()) m->emplace(std::string(e.name), idl::Interface::parse(e.description));
        return m;
    }();
    return *all;
}

// What the daemon does with one received message, short of running it.
void checkCall(std::string_view text) {
    auto parsed = parseCall(text, 16);
    auto* call = std::get_if<Call>(&parsed);
    if (!call) return;
    const auto qualified = splitQualifiedName(call->method);
    if (!qualified) broken("parseCall accepted a method name that does not split");
    const std::string encoded = encodeCall(call->method, call->parameters, call->more, call->oneway);
    if (encoded.empty() || encoded.back() != '\0') broken("encodeCall did not end in NUL");
    auto again = parseCall(std::string_view(encoded).substr(0, encoded.size() - 1), 64);
    auto* same = std::get_if<Call>(&again);
    if (!same) broken("an encoded call does not parse");
    if (same->method != call->method || same->parameters != call->parameters || same->more != call->more ||
        same->oneway != call->oneway)
        broken("an encoded call parses to another call");
    auto it = interfaces().find(std::string(qualified->first));
    if (it == interfaces().end()) return;
    if (const auto* method = it->second.findMethod(qualified->second)) {
        (void)idl::validate(it->second, method->input, call->parameters);
        (void)idl::validate(it->second, method->output, call->parameters);
    }
}

void feedCalls(std::string_view data) {
    // Two frame readers: one fed at once, one in uneven pieces; both must
    // yield the same messages.
    FrameReader whole(64 * 1024), pieces(64 * 1024);
    const bool wholeOk = whole.feed(data.data(), data.size()) == FrameReader::Status::Ok;
    bool piecesOk = true;
    for (std::size_t at = 0, step = 1; at < data.size(); at += step, step = step % 7 + 1)
        piecesOk = pieces.feed(data.data() + at, std::min(step, data.size() - at)) == FrameReader::Status::Ok &&
                   piecesOk;
    if (wholeOk != piecesOk) broken("framing depends on how the bytes arrive");
    for (;;) {
        auto a = whole.next();
        auto b = pieces.next();
        if (a.has_value() != b.has_value() || (a && *a != *b)) broken("framing depends on how the bytes arrive");
        if (!a) break;
        checkCall(*a);
    }
}

void feedReply(std::string_view data) {
    auto parsed = parseReply(data, 64);
    if (auto* reply = std::get_if<Reply>(&parsed)) {
        if (!reply->parameters.is_object()) broken("a reply's parameters are not an object");
        if (reply->error && !splitQualifiedName(*reply->error)) broken("parseReply accepted a bad error name");
    }
}

void feedInterface(std::string_view data) {
    try {
        const auto iface = idl::Interface::parse(data);
        if (iface.description() != data) broken("an interface does not keep its text");
        const auto again = idl::Interface::parse(iface.description());
        if (again.methodNames() != iface.methodNames() || again.errorNames() != iface.errorNames())
            broken("an interface parses differently twice");
        for (const auto& name : iface.methodNames()) {
            const auto* m = iface.findMethod(name);
            if (!m) broken("a listed method is not found");
            (void)idl::validate(iface, m->input, nlohmann::json::object());
        }
    } catch (const idl::IdlError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
    try {
        switch (bytes[0]) {
            case 'C': feedCalls(data); break;
            case 'R': feedReply(data); break;
            case 'I': feedInterface(data); break;
            default:
                feedCalls(data);
                feedReply(data);
                feedInterface(data);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz-varlink: exception escaped: %s\n", e.what());
        std::abort();
    }
    return 0;
}
