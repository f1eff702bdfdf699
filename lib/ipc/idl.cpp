#include "ipc/idl.hpp"

#include "ipc/message.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace twofactor::ipc::idl {

using nlohmann::json;

IdlError::IdlError(int line, int column, const std::string& message)
    : std::runtime_error(std::to_string(line) + ":" + std::to_string(column) + ": " + message),
      line_(line),
      column_(column) {}

const Field* Type::findField(std::string_view fieldName) const {
    for (const auto& field : fields) {
        if (field.name == fieldName) {
            return &field;
        }
    }
    return nullptr;
}

// ---------------------------------------------------------------- lexer

namespace {

struct Token {
    enum class Kind { Word, Punct, Arrow, End };
    Kind kind = Kind::End;
    std::string text;
    int line = 1;
    int column = 1;
};

bool isWordStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

std::vector<Token> tokenize(std::string_view text) {
    std::vector<Token> tokens;
    int line = 1;
    int column = 1;
    std::size_t i = 0;
    auto advance = [&](std::size_t n) {
        for (std::size_t k = 0; k < n; ++k, ++i) {
            if (text[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
    };
    while (i < text.size()) {
        const char c = text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            advance(1);
        } else if (c == '#') {
            while (i < text.size() && text[i] != '\n') {
                advance(1);
            }
        } else if (c == '-' && i + 1 < text.size() && text[i + 1] == '>') {
            tokens.push_back({Token::Kind::Arrow, "->", line, column});
            advance(2);
        } else if (c == '(' || c == ')' || c == ',' || c == ':' || c == '?' || c == '[' || c == ']') {
            tokens.push_back({Token::Kind::Punct, std::string(1, c), line, column});
            advance(1);
        } else if (isWordStart(c)) {
            // Dots and hyphens belong to words so that an interface name is one
            // token; the parser checks what kind of name each word must be.
            // A hyphen followed by '>' is the arrow, not part of the word.
            std::size_t end = i + 1;
            while (end < text.size() &&
                   (isWordStart(text[end]) || text[end] == '.' ||
                    (text[end] == '-' && !(end + 1 < text.size() && text[end + 1] == '>')))) {
                ++end;
            }
            tokens.push_back({Token::Kind::Word, std::string(text.substr(i, end - i)), line, column});
            advance(end - i);
        } else {
            const auto byte = static_cast<unsigned char>(c);
            const std::string shown =
                byte >= 0x20 && byte < 0x7f ? "'" + std::string(1, c) + "'" : "byte " + std::to_string(byte);
            throw IdlError(line, column, "unexpected " + shown);
        }
    }
    tokens.push_back({Token::Kind::End, "", line, column});
    return tokens;
}

// Field names and enum values: a letter, then letters and digits with single
// inner underscores (the Varlink spec's [A-Za-z](_?[A-Za-z0-9])*).
bool isFieldName(std::string_view name) {
    auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (name.empty() || !letter(name.front()) || name.back() == '_') {
        return false;
    }
    for (std::size_t i = 1; i < name.size(); ++i) {
        const char c = name[i];
        if (c == '_') {
            if (name[i - 1] == '_') {
                return false;
            }
        } else if (!letter(c) && !(c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

std::string quoted(const Token& token) {
    return token.kind == Token::Kind::End ? std::string("end of input") : "'" + token.text + "'";
}

}  // namespace

// ---------------------------------------------------------------- parser

namespace detail {

class InterfaceParser {
public:
    explicit InterfaceParser(std::string_view text) : tokens_(tokenize(text)) {}

    Interface run(std::string_view text) {
        Interface iface;
        iface.description_ = std::string(text);
        expectWord("interface");
        const Token& name = take();
        if (name.kind != Token::Kind::Word || !isInterfaceName(name.text)) {
            fail(name, "invalid interface name " + quoted(name) +
                           " (expected a reverse domain name like io.example.Service)");
        }
        iface.name_ = name.text;

        while (peek().kind != Token::Kind::End) {
            const Token& keyword = take();
            if (keyword.kind != Token::Kind::Word ||
                (keyword.text != "type" && keyword.text != "method" && keyword.text != "error")) {
                fail(keyword, "expected 'type', 'method' or 'error', got " + quoted(keyword));
            }
            const Token& member = take();
            if (member.kind != Token::Kind::Word || !isMemberName(member.text)) {
                fail(member, "invalid " + keyword.text + " name " + quoted(member) + " (must be CamelCase)");
            }
            if (iface.findType(member.text) != nullptr || iface.findMethod(member.text) != nullptr ||
                iface.findError(member.text) != nullptr) {
                fail(member, "duplicate name '" + member.text + "'");
            }
            if (keyword.text == "type") {
                expectPunct("(");
                iface.types_.push_back({member.text, parseStructOrEnum(true)});
            } else if (keyword.text == "method") {
                Method method{member.text, {}, {}};
                expectPunct("(");
                method.input = parseStructOrEnum(false);
                const Token& arrow = take();
                if (arrow.kind != Token::Kind::Arrow) {
                    fail(arrow, "expected '->', got " + quoted(arrow));
                }
                expectPunct("(");
                method.output = parseStructOrEnum(false);
                iface.methods_.push_back(std::move(method));
            } else {
                expectPunct("(");
                iface.errors_.push_back({member.text, parseStructOrEnum(false)});
            }
        }

        // Types may be used before they are defined, so references resolve last.
        for (const auto& ref : references_) {
            if (iface.findType(ref.text) == nullptr) {
                fail(ref, "unknown type '" + ref.text + "'");
            }
        }
        return iface;
    }

private:
    const Token& peek(std::size_t ahead = 0) const {
        return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
    }
    const Token& take() {
        const Token& token = peek();
        if (pos_ < tokens_.size() - 1) {
            ++pos_;
        }
        return token;
    }
    bool isPunct(const Token& token, std::string_view p) const {
        return token.kind == Token::Kind::Punct && token.text == p;
    }
    [[noreturn]] static void fail(const Token& token, const std::string& message) {
        throw IdlError(token.line, token.column, message);
    }
    void expectWord(std::string_view word) {
        const Token& token = take();
        if (token.kind != Token::Kind::Word || token.text != word) {
            fail(token, "expected '" + std::string(word) + "', got " + quoted(token));
        }
    }
    void expectPunct(std::string_view p) {
        const Token& token = take();
        if (!isPunct(token, p)) {
            fail(token, "expected '" + std::string(p) + "', got " + quoted(token));
        }
    }

    // After the opening '(': "name: type, ..." or, when allowed, "value, ...".
    Type parseStructOrEnum(bool allowEnum) {
        Type type;
        type.kind = Type::Kind::Struct;
        if (isPunct(peek(), ")")) {
            take();
            return type;
        }
        const bool isEnum = peek().kind == Token::Kind::Word && !isPunct(peek(1), ":");
        if (isEnum && !allowEnum) {
            fail(peek(1), "expected ':', got " + quoted(peek(1)));
        }
        type.kind = isEnum ? Type::Kind::Enum : Type::Kind::Struct;
        while (true) {
            const Token& name = take();
            if (name.kind != Token::Kind::Word || !isFieldName(name.text)) {
                fail(name, std::string(isEnum ? "invalid enum value " : "invalid field name ") + quoted(name));
            }
            if (isEnum) {
                for (const auto& value : type.enumValues) {
                    if (value == name.text) {
                        fail(name, "duplicate enum value '" + name.text + "'");
                    }
                }
                type.enumValues.push_back(name.text);
            } else {
                if (type.findField(name.text) != nullptr) {
                    fail(name, "duplicate field '" + name.text + "'");
                }
                expectPunct(":");
                type.fields.push_back({name.text, std::make_shared<const Type>(parseType())});
            }
            const Token& sep = take();
            if (isPunct(sep, ")")) {
                return type;
            }
            if (!isPunct(sep, ",")) {
                fail(sep, "expected ',' or ')', got " + quoted(sep));
            }
        }
    }

    Type parseType() {
        if (isPunct(peek(), "?")) {
            take();
            if (isPunct(peek(), "?")) {
                fail(peek(), "a nullable type cannot be made nullable again");
            }
            Type type = parseNonNullType();
            type.nullable = true;
            return type;
        }
        return parseNonNullType();
    }

    Type parseNonNullType() {
        const Token& token = take();
        Type type;
        if (isPunct(token, "[")) {
            const Token& inner = take();
            if (isPunct(inner, "]")) {
                type.kind = Type::Kind::Array;
            } else if (inner.kind == Token::Kind::Word && inner.text == "string") {
                expectPunct("]");
                type.kind = Type::Kind::Map;
            } else {
                fail(inner, "expected ']' or 'string]', got " + quoted(inner));
            }
            type.element = std::make_shared<const Type>(parseType());
            return type;
        }
        if (isPunct(token, "(")) {
            return parseStructOrEnum(true);
        }
        if (token.kind != Token::Kind::Word) {
            fail(token, "expected a type, got " + quoted(token));
        }
        if (token.text == "bool") {
            type.kind = Type::Kind::Bool;
        } else if (token.text == "int") {
            type.kind = Type::Kind::Int;
        } else if (token.text == "float") {
            type.kind = Type::Kind::Float;
        } else if (token.text == "string") {
            type.kind = Type::Kind::String;
        } else if (token.text == "object") {
            type.kind = Type::Kind::Object;
        } else if (isMemberName(token.text)) {
            type.kind = Type::Kind::Named;
            type.name = token.text;
            references_.push_back(token);
        } else {
            fail(token, "unknown type " + quoted(token));
        }
        return type;
    }

    std::vector<Token> tokens_;
    std::size_t pos_ = 0;
    std::vector<Token> references_;
};

}  // namespace detail

// ---------------------------------------------------------------- interface

Interface Interface::parse(std::string_view description) {
    detail::InterfaceParser parser(description);
    return parser.run(description);
}

const Method* Interface::findMethod(std::string_view methodName) const {
    for (const auto& method : methods_) {
        if (method.name == methodName) {
            return &method;
        }
    }
    return nullptr;
}

const ErrorDef* Interface::findError(std::string_view errorName) const {
    for (const auto& error : errors_) {
        if (error.name == errorName) {
            return &error;
        }
    }
    return nullptr;
}

const Type* Interface::findType(std::string_view typeName) const {
    for (const auto& def : types_) {
        if (def.name == typeName) {
            return &def.type;
        }
    }
    return nullptr;
}

std::vector<std::string> Interface::methodNames() const {
    std::vector<std::string> names;
    names.reserve(methods_.size());
    for (const auto& method : methods_) {
        names.push_back(method.name);
    }
    return names;
}

std::vector<std::string> Interface::errorNames() const {
    std::vector<std::string> names;
    names.reserve(errors_.size());
    for (const auto& error : errors_) {
        names.push_back(error.name);
    }
    return names;
}

std::vector<std::string> Interface::typeNames() const {
    std::vector<std::string> names;
    names.reserve(types_.size());
    for (const auto& def : types_) {
        names.push_back(def.name);
    }
    return names;
}

// ---------------------------------------------------------------- validation

namespace {

std::string join(const std::string& path, const std::string& name) { return path.empty() ? name : path + "." + name; }

std::optional<Violation> checkValue(const Interface& iface, const Type& type, const json& value,
                                    const std::string& path);

std::optional<Violation> checkStruct(const Interface& iface, const Type& type, const json& value,
                                     const std::string& path) {
    if (!value.is_object()) {
        return Violation{path, "expected object"};
    }
    for (const auto& [key, item] : value.items()) {
        if (type.findField(key) == nullptr) {
            return Violation{join(path, key), "unknown field"};
        }
    }
    for (const auto& field : type.fields) {
        const auto it = value.find(field.name);
        if (it == value.end() || it->is_null()) {
            if (!field.type->nullable) {
                return Violation{join(path, field.name), "missing"};
            }
            continue;
        }
        if (auto violation = checkValue(iface, *field.type, *it, join(path, field.name))) {
            return violation;
        }
    }
    return std::nullopt;
}

// What a value of this type looks like, for "expected ..." reasons.
std::string expected(const Interface& iface, const Type& type) {
    switch (type.kind) {
    case Type::Kind::Bool:
        return "expected bool";
    case Type::Kind::Int:
        return "expected int";
    case Type::Kind::Float:
        return "expected float";
    case Type::Kind::String:
    case Type::Kind::Enum:
        return "expected string";
    case Type::Kind::Array:
        return "expected array";
    case Type::Kind::Object:
    case Type::Kind::Struct:
    case Type::Kind::Map:
        return "expected object";
    case Type::Kind::Named:
        if (const Type* resolved = iface.findType(type.name)) {
            return expected(iface, *resolved);
        }
        return "unknown type '" + type.name + "'";
    }
    return "unexpected value";
}

std::optional<Violation> checkValue(const Interface& iface, const Type& type, const json& value,
                                    const std::string& path) {
    if (value.is_null()) {
        if (type.nullable) {
            return std::nullopt;
        }
        return Violation{path, expected(iface, type)};
    }
    auto wrong = [&] { return Violation{path, expected(iface, type)}; };
    switch (type.kind) {
    case Type::Kind::Bool:
        if (!value.is_boolean()) {
            return wrong();
        }
        return std::nullopt;
    case Type::Kind::Int:
        if (!value.is_number_integer()) {
            return wrong();
        }
        // Varlink ints are int64; nlohmann keeps larger integers as uint64.
        if (value.is_number_unsigned() &&
            value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return Violation{path, "out of range for int"};
        }
        return std::nullopt;
    case Type::Kind::Float:
        if (!value.is_number()) {
            return wrong();
        }
        return std::nullopt;
    case Type::Kind::String:
        if (!value.is_string()) {
            return wrong();
        }
        return std::nullopt;
    case Type::Kind::Object:
        if (!value.is_object()) {
            return wrong();
        }
        return std::nullopt;
    case Type::Kind::Struct:
        return checkStruct(iface, type, value, path);
    case Type::Kind::Enum: {
        if (!value.is_string()) {
            return wrong();
        }
        const auto& text = value.get_ref<const std::string&>();
        for (const auto& allowed : type.enumValues) {
            if (allowed == text) {
                return std::nullopt;
            }
        }
        std::string reason = "not one of: ";
        for (std::size_t i = 0; i < type.enumValues.size(); ++i) {
            reason += (i == 0 ? "" : ", ") + type.enumValues[i];
        }
        return Violation{path, reason};
    }
    case Type::Kind::Array: {
        if (!value.is_array() || !type.element) {
            return wrong();
        }
        for (std::size_t i = 0; i < value.size(); ++i) {
            if (auto violation = checkValue(iface, *type.element, value[i], path + "[" + std::to_string(i) + "]")) {
                return violation;
            }
        }
        return std::nullopt;
    }
    case Type::Kind::Map: {
        if (!value.is_object() || !type.element) {
            return wrong();
        }
        for (const auto& [key, item] : value.items()) {
            if (auto violation = checkValue(iface, *type.element, item, join(path, key))) {
                return violation;
            }
        }
        return std::nullopt;
    }
    case Type::Kind::Named: {
        const Type* resolved = iface.findType(type.name);
        if (resolved == nullptr) {
            return Violation{path, "unknown type '" + type.name + "'"};
        }
        // Nullability belongs to the reference, and null was handled above.
        return checkValue(iface, *resolved, value, path);
    }
    }
    return wrong();
}

}  // namespace

std::optional<Violation> validate(const Interface& iface, const Type& structType, const json& value) {
    static const json empty = json::object();
    const json& actual = value.is_null() ? empty : value;
    const Type* type = &structType;
    if (type->kind == Type::Kind::Named) {
        type = iface.findType(type->name);
        if (type == nullptr) {
            return Violation{"", "unknown type '" + structType.name + "'"};
        }
    }
    return checkStruct(iface, *type, actual, "");
}

}  // namespace twofactor::ipc::idl
