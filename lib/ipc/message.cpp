#include "ipc/message.hpp"

#include <cstring>

namespace twofactor::ipc {

using nlohmann::json;

// ---------------------------------------------------------------- framing

FrameReader::FrameReader(std::size_t maxMessageBytes) : maxMessageBytes_(maxMessageBytes) {}

FrameReader::Status FrameReader::feed(const char* data, std::size_t size) {
    if (tooLarge_) {
        return Status::TooLarge;
    }
    const char* end = data + size;
    while (data < end) {
        const auto* nul = static_cast<const char*>(std::memchr(data, '\0', static_cast<std::size_t>(end - data)));
        const char* stop = nul != nullptr ? nul : end;
        const auto chunk = static_cast<std::size_t>(stop - data);
        // Checked before appending so an oversized chunk is never copied.
        if (chunk > maxMessageBytes_ - partial_.size()) {
            tooLarge_ = true;
            partial_.clear();
            partial_.shrink_to_fit();
            return Status::TooLarge;
        }
        partial_.append(data, chunk);
        if (nul == nullptr) {
            break;
        }
        complete_.push_back(std::move(partial_));
        partial_.clear();
        data = nul + 1;
    }
    return Status::Ok;
}

std::optional<std::string> FrameReader::next() {
    if (complete_.empty()) {
        return std::nullopt;
    }
    std::string message = std::move(complete_.front());
    complete_.pop_front();
    return message;
}

bool FrameReader::hasPartial() const { return !partial_.empty(); }

// ---------------------------------------------------------------- depth scan

bool withinDepth(std::string_view text, int maxDepth) {
    int depth = 0;
    bool inString = false;
    bool escaped = false;
    for (const char c : text) {
        if (inString) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                inString = false;
            }
            continue;
        }
        switch (c) {
        case '"':
            inString = true;
            break;
        case '{':
        case '[':
            if (++depth > maxDepth) {
                return false;
            }
            break;
        case '}':
        case ']':
            // Unbalanced closers are the parser's problem, not a depth problem.
            if (depth > 0) {
                --depth;
            }
            break;
        default:
            break;
        }
    }
    return true;
}

// ---------------------------------------------------------------- names

namespace {

bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isLower(c) || isUpper(c) || isDigit(c); }

// One segment of an interface name: alphanumerics with inner hyphens.
bool isSegment(std::string_view s, bool allowUpper) {
    if (s.empty() || s.front() == '-' || s.back() == '-') {
        return false;
    }
    for (const char c : s) {
        if (!(isLower(c) || isDigit(c) || c == '-' || (allowUpper && isUpper(c)))) {
            return false;
        }
    }
    return true;
}

}  // namespace

bool isInterfaceName(std::string_view name) {
    if (name.empty() || !(isLower(name.front()) || isUpper(name.front()))) {
        return false;
    }
    int segments = 0;
    while (true) {
        const auto dot = name.find('.');
        const bool last = dot == std::string_view::npos;
        if (!isSegment(name.substr(0, dot), last)) {
            return false;
        }
        ++segments;
        if (last) {
            break;
        }
        name.remove_prefix(dot + 1);
    }
    return segments >= 2;
}

bool isMemberName(std::string_view name) {
    if (name.empty() || !isUpper(name.front())) {
        return false;
    }
    for (const char c : name) {
        if (!isAlnum(c)) {
            return false;
        }
    }
    return true;
}

std::optional<std::pair<std::string_view, std::string_view>> splitQualifiedName(std::string_view qualified) {
    const auto dot = qualified.rfind('.');
    if (dot == std::string_view::npos) {
        return std::nullopt;
    }
    const auto iface = qualified.substr(0, dot);
    const auto member = qualified.substr(dot + 1);
    if (!isInterfaceName(iface) || !isMemberName(member)) {
        return std::nullopt;
    }
    return std::pair{iface, member};
}

// ---------------------------------------------------------------- parsing

namespace {

// Parses without exceptions; nullopt carries the reason in `error`.
std::optional<json> parseObject(std::string_view text, int maxDepth, MessageError& error) {
    if (!withinDepth(text, maxDepth)) {
        error.reason = "nesting deeper than " + std::to_string(maxDepth);
        return std::nullopt;
    }
    json value;
    try {
        // allow_exceptions=false reports syntax errors and invalid UTF-8 as a
        // discarded value; the catch is only a guard against anything else.
        value = json::parse(text.begin(), text.end(), nullptr, false);
    } catch (const json::exception&) {
        value = json(json::value_t::discarded);
    }
    if (value.is_discarded()) {
        error.reason = "not valid JSON";
        return std::nullopt;
    }
    if (!value.is_object()) {
        error.reason = "message must be a JSON object";
        return std::nullopt;
    }
    return value;
}

bool readFlag(const json& value, bool& out, std::string_view key, MessageError& error) {
    if (!value.is_boolean()) {
        error.reason = "'" + std::string(key) + "' must be a boolean";
        return false;
    }
    out = value.get<bool>();
    return true;
}

std::string dumpWithNul(const json& value) {
    // replace: a string holding invalid UTF-8 must not turn a reply into an exception.
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    text.push_back('\0');
    return text;
}

json objectOrEmpty(const json& parameters) { return parameters.is_null() ? json::object() : parameters; }

}  // namespace

std::variant<Call, MessageError> parseCall(std::string_view text, int maxDepth) {
    MessageError error;
    auto value = parseObject(text, maxDepth, error);
    if (!value) {
        return error;
    }
    Call call;
    bool haveMethod = false;
    for (auto& [key, item] : value->items()) {
        if (key == "method") {
            if (!item.is_string()) {
                return MessageError{"'method' must be a string"};
            }
            call.method = item.get<std::string>();
            if (!splitQualifiedName(call.method)) {
                return MessageError{"'method' must be of the form interface.Method"};
            }
            haveMethod = true;
        } else if (key == "parameters") {
            if (!item.is_object()) {
                return MessageError{"'parameters' must be an object"};
            }
            call.parameters = std::move(item);
        } else if (key == "oneway") {
            if (!readFlag(item, call.oneway, key, error)) {
                return error;
            }
        } else if (key == "more") {
            if (!readFlag(item, call.more, key, error)) {
                return error;
            }
        } else if (key == "upgrade") {
            if (!readFlag(item, call.upgrade, key, error)) {
                return error;
            }
        } else {
            return MessageError{"unknown field '" + key + "'"};
        }
    }
    if (!haveMethod) {
        return MessageError{"'method' is missing"};
    }
    return call;
}

std::variant<Reply, MessageError> parseReply(std::string_view text, int maxDepth) {
    MessageError error;
    auto value = parseObject(text, maxDepth, error);
    if (!value) {
        return error;
    }
    Reply reply;
    for (auto& [key, item] : value->items()) {
        if (key == "error") {
            if (!item.is_string()) {
                return MessageError{"'error' must be a string"};
            }
            reply.error = item.get<std::string>();
            if (!splitQualifiedName(*reply.error)) {
                return MessageError{"'error' must be of the form interface.Error"};
            }
        } else if (key == "parameters") {
            // Some implementations send null for "no parameters"; a reply is
            // read leniently, a call strictly.
            if (item.is_null()) {
                continue;
            }
            if (!item.is_object()) {
                return MessageError{"'parameters' must be an object"};
            }
            reply.parameters = std::move(item);
        } else if (key == "continues") {
            if (!readFlag(item, reply.continues, key, error)) {
                return error;
            }
        }
    }
    return reply;
}

// ---------------------------------------------------------------- encoding

std::string encodeCall(std::string_view method, const json& parameters, bool more, bool oneway) {
    json message = json::object();
    message["method"] = std::string(method);
    message["parameters"] = objectOrEmpty(parameters);
    if (more) {
        message["more"] = true;
    }
    if (oneway) {
        message["oneway"] = true;
    }
    return dumpWithNul(message);
}

std::string encodeReply(const json& parameters, bool continues) {
    json message = json::object();
    message["parameters"] = objectOrEmpty(parameters);
    if (continues) {
        message["continues"] = true;
    }
    return dumpWithNul(message);
}

std::string encodeError(std::string_view error, const json& parameters) {
    json message = json::object();
    message["error"] = std::string(error);
    message["parameters"] = objectOrEmpty(parameters);
    return dumpWithNul(message);
}

}  // namespace twofactor::ipc
