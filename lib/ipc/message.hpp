// The Varlink wire format: NUL-terminated JSON objects on a stream socket.
// Shared by the daemon and the CLI, so it depends on nlohmann_json and the
// standard library only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace twofactor::ipc {

// Splits a byte stream into NUL-terminated messages, refusing any message
// longer than maxMessageBytes (the NUL not counted). The limit is checked as
// bytes arrive, so a peer that never sends a NUL cannot grow the buffer past it.
class FrameReader {
public:
    explicit FrameReader(std::size_t maxMessageBytes);

    enum class Status { Ok, TooLarge };

    // Appends received bytes. TooLarge is sticky: the stream can no longer be
    // framed reliably, so the caller should answer with an error and close.
    // Messages completed before the oversized one are still returned by next().
    [[nodiscard]] Status feed(const char* data, std::size_t size);

    // The next complete message (without its NUL), if any.
    [[nodiscard]] std::optional<std::string> next();

    // Bytes of an incomplete message are buffered (e.g. the peer hung up mid-message).
    [[nodiscard]] bool hasPartial() const;

    // A complete message waits for next().
    [[nodiscard]] bool hasMessage() const { return !complete_.empty(); }

private:
    std::size_t maxMessageBytes_;
    std::deque<std::string> complete_;
    std::string partial_;
    bool tooLarge_ = false;
};

// True when the JSON text nests objects/arrays no deeper than maxDepth ("{}" is
// depth 1, a scalar depth 0). A byte scan that respects strings and escapes; it
// runs before parsing, so a hostile megabyte of '[' never reaches the parser
// or the recursive destructor of nlohmann::json.
[[nodiscard]] bool withinDepth(std::string_view json, int maxDepth);

// Varlink names. An interface is a reverse domain name ("io.twofactor.Otp"):
// at least two dot-separated segments of letters, digits and inner hyphens,
// starting with a letter; all but the last segment lower-case (the last one
// names the interface and may be CamelCase, as in io.twofactor.Otp).
[[nodiscard]] bool isInterfaceName(std::string_view name);
// Methods, errors and types: CamelCase, [A-Z][A-Za-z0-9]*.
[[nodiscard]] bool isMemberName(std::string_view name);
// Splits "interface.Member" at the last dot when both halves are valid names.
[[nodiscard]] std::optional<std::pair<std::string_view, std::string_view>> splitQualifiedName(
    std::string_view qualified);

struct Call {
    std::string method;
    nlohmann::json parameters = nlohmann::json::object();
    bool oneway = false;
    bool more = false;
    bool upgrade = false;
};

// Why a message was refused, fit to show to the peer, e.g. "not valid JSON",
// "nesting deeper than 16", "'method' must be a string", "unknown field 'foo'".
struct MessageError {
    std::string reason;
};

// Strict: a JSON object; "method" a string of the form interface.Method;
// "parameters" absent or an object; oneway/more/upgrade booleans; any other
// top-level key is an error. Never throws.
[[nodiscard]] std::variant<Call, MessageError> parseCall(std::string_view text, int maxDepth);

struct Reply {
    std::optional<std::string> error;  // qualified error name when the call failed
    nlohmann::json parameters = nlohmann::json::object();
    bool continues = false;
};

// A JSON object; "error" absent or a qualified name; "parameters" absent, null
// or an object; "continues" a boolean. Unknown top-level keys are ignored, unlike in
// parseCall, so a CLI keeps working against a newer daemon. Never throws.
[[nodiscard]] std::variant<Reply, MessageError> parseReply(std::string_view text, int maxDepth);

// Encoders return the JSON text WITH the trailing NUL byte. Invalid UTF-8 in
// strings is replaced by U+FFFD rather than throwing. Null parameters are sent
// as {} (Varlink wants an object); "more"/"oneway"/"continues" only when true.
[[nodiscard]] std::string encodeCall(std::string_view method, const nlohmann::json& parameters, bool more = false,
                                     bool oneway = false);
[[nodiscard]] std::string encodeReply(const nlohmann::json& parameters, bool continues = false);
[[nodiscard]] std::string encodeError(std::string_view error,
                                      const nlohmann::json& parameters = nlohmann::json::object());

}  // namespace twofactor::ipc
