// Varlink interface descriptions (.varlink files): parsing, and checking call
// parameters and replies against them so handlers only ever see valid input.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::ipc::idl {

struct Type;
namespace detail {
class InterfaceParser;
}

struct Field {
    std::string name;
    std::shared_ptr<const Type> type;
};

struct Type {
    enum class Kind { Bool, Int, Float, String, Object, Struct, Enum, Array, Map, Named };
    Kind kind = Kind::Struct;
    bool nullable = false;
    std::vector<Field> fields;            // Struct
    std::vector<std::string> enumValues;  // Enum
    std::shared_ptr<const Type> element;  // Array, Map (map keys are strings)
    std::string name;                     // Named

    // The field called `name`, or nullptr (Struct only).
    const Field* findField(std::string_view name) const;
};

struct Method {
    std::string name;
    Type input;
    Type output;
};

struct ErrorDef {
    std::string name;
    Type parameters;
};

// A malformed description. what() is "LINE:COLUMN: message"; both are 1-based,
// the column counted in bytes.
class IdlError : public std::runtime_error {
public:
    IdlError(int line, int column, const std::string& message);
    int line() const { return line_; }
    int column() const { return column_; }

private:
    int line_;
    int column_;
};

class Interface {
public:
    // Throws IdlError on a syntax error, a malformed name, a duplicate member,
    // field or enum value, or a reference to an undefined type.
    static Interface parse(std::string_view description);

    const std::string& name() const { return name_; }
    const std::string& description() const { return description_; }  // the original text, verbatim
    const Method* findMethod(std::string_view name) const;           // nullptr if absent
    const ErrorDef* findError(std::string_view name) const;
    const Type* findType(std::string_view name) const;
    std::vector<std::string> methodNames() const;  // in file order
    std::vector<std::string> errorNames() const;
    std::vector<std::string> typeNames() const;

private:
    struct TypeDef {
        std::string name;
        Type type;
    };
    friend class detail::InterfaceParser;

    std::string name_;
    std::string description_;
    std::vector<Method> methods_;
    std::vector<ErrorDef> errors_;
    std::vector<TypeDef> types_;
};

// parameter: the path to the offending value, e.g. "request", "request.id",
// "tags[2]" or, for map entries, "labels.key" ("" for the value itself).
// reason: "missing", "unknown field", "expected int", "out of range for int",
// "not one of: login, verify, recovery", ...
struct Violation {
    std::string parameter;
    std::string reason;
};

// Checks `value` against a struct type (a method's input or output, or an
// error's parameters). Null means {}. Reports the first offence: within a
// struct, unknown fields first (they are usually misspellings of the missing
// ones), then declared fields in declaration order. Nullable fields may be
// absent or null; a null non-nullable field counts as missing. int accepts
// JSON integers in the int64 range only (not 1.5, 1.0, "1" or true); float
// any number; object any JSON object; named types resolve through `iface`.
[[nodiscard]] std::optional<Violation> validate(const Interface& iface, const Type& structType,
                                                const nlohmann::json& value);

}  // namespace twofactor::ipc::idl
