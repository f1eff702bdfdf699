// The Varlink IDL: grammar, malformed descriptions, the project's real
// .varlink files, and validating JSON against the parsed types.
#include "ipc/idl.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

using namespace twofactor::ipc::idl;
using nlohmann::json;
using Kind = Type::Kind;

namespace {

// Parses `text`, expecting an IdlError at line:column whose message mentions `needle`.
void expectIdlError(const std::string& text, int line, int column, const std::string& needle) {
    INFO("description:\n" << text);
    try {
        (void)Interface::parse(text);
        FAIL("parsed without error");
    } catch (const IdlError& e) {
        INFO("what(): " << e.what());
        CHECK(e.line() == line);
        CHECK(e.column() == column);
        CHECK(std::string(e.what()).find(needle) != std::string::npos);
        CHECK(std::string(e.what()).rfind(std::to_string(line) + ":" + std::to_string(column) + ": ", 0) == 0);
    }
}

const Type& fieldType(const Type& structType, const std::string& name) {
    const Field* field = structType.findField(name);
    if (field == nullptr) {
        FAIL("no field " << name);
    }
    REQUIRE(field->type);
    return *field->type;
}

#ifdef TWOFACTOR_SOURCE_DIR
// A minimal valid value for `type`: non-nullable fields only.
json sampleValue(const Interface& iface, const Type& type) {
    switch (type.kind) {
    case Kind::Bool:
        return false;
    case Kind::Int:
        return 1;
    case Kind::Float:
        return 1.5;
    case Kind::String:
        return "text";
    case Kind::Object:
    case Kind::Map:
        return json::object();
    case Kind::Array:
        return json::array();
    case Kind::Enum:
        return type.enumValues.at(0);
    case Kind::Named:
        return sampleValue(iface, *iface.findType(type.name));
    case Kind::Struct:
        break;
    }
    json value = json::object();
    for (const auto& field : type.fields) {
        if (!field.type->nullable) {
            value[field.name] = sampleValue(iface, *field.type);
        }
    }
    return value;
}

std::string readVarlink(const std::string& name) {
    const std::string path = std::string(TWOFACTOR_SOURCE_DIR) + "/lib/ipc/" + name + ".varlink";
    std::ifstream in(path, std::ios::binary);
    INFO("reading " << path);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}
#endif

// A small interface that exercises every kind of type.
const char* const kExample = R"(# An example.
interface io.example.Shop

type Item (
  sku: string,
  # a comment between fields
  count: int,
  price: float,
  tags: []string,
  attributes: [string]string,
  extra: ?object,
  color: (red, green, blue),
  size: ?(width: int, height: int),
  parent: ?Item
)

type Purpose (login, verify, recovery)

method Order(items: []Item, note: ?string, purpose: Purpose, flags: [string]bool) -> (id: string, total: float)
method Ping() -> ()
error OutOfStock (sku: string, available: int)
error Closed ()
)";

}  // namespace

// ---------------------------------------------------------------- grammar

TEST_CASE("A minimal interface parses", "[idl][parse]") {
    const std::string text = "interface org.example.ping\nmethod Ping(value: string) -> (value: string)\n";
    const Interface iface = Interface::parse(text);
    CHECK(iface.name() == "org.example.ping");
    CHECK(iface.description() == text);
    CHECK(iface.methodNames() == std::vector<std::string>{"Ping"});
    CHECK(iface.errorNames().empty());
    const Method* ping = iface.findMethod("Ping");
    REQUIRE(ping);
    CHECK(ping->name == "Ping");
    CHECK(ping->input.kind == Kind::Struct);
    REQUIRE(ping->input.fields.size() == 1);
    CHECK(ping->input.fields[0].name == "value");
    CHECK(ping->input.fields[0].type->kind == Kind::String);
    CHECK_FALSE(ping->input.fields[0].type->nullable);
    CHECK(iface.findMethod("ping") == nullptr);
    CHECK(iface.findMethod("Pong") == nullptr);
    CHECK(iface.findError("Ping") == nullptr);
    CHECK(iface.findType("Ping") == nullptr);
}

TEST_CASE("Every kind of type parses into the right structure", "[idl][parse]") {
    const Interface iface = Interface::parse(kExample);
    CHECK(iface.name() == "io.example.Shop");
    CHECK(iface.description() == kExample);
    CHECK(iface.methodNames() == std::vector<std::string>{"Order", "Ping"});
    CHECK(iface.errorNames() == std::vector<std::string>{"OutOfStock", "Closed"});
    CHECK(iface.typeNames() == std::vector<std::string>{"Item", "Purpose"});

    const Type* item = iface.findType("Item");
    REQUIRE(item);
    REQUIRE(item->kind == Kind::Struct);
    REQUIRE(item->fields.size() == 9);
    // Fields keep their file order.
    CHECK(item->fields[0].name == "sku");
    CHECK(item->fields[8].name == "parent");

    CHECK(fieldType(*item, "sku").kind == Kind::String);
    CHECK(fieldType(*item, "count").kind == Kind::Int);
    CHECK(fieldType(*item, "price").kind == Kind::Float);

    const Type& tags = fieldType(*item, "tags");
    CHECK(tags.kind == Kind::Array);
    REQUIRE(tags.element);
    CHECK(tags.element->kind == Kind::String);

    const Type& attributes = fieldType(*item, "attributes");
    CHECK(attributes.kind == Kind::Map);
    REQUIRE(attributes.element);
    CHECK(attributes.element->kind == Kind::String);

    const Type& extra = fieldType(*item, "extra");
    CHECK(extra.kind == Kind::Object);
    CHECK(extra.nullable);

    const Type& color = fieldType(*item, "color");
    CHECK(color.kind == Kind::Enum);
    CHECK(color.enumValues == std::vector<std::string>{"red", "green", "blue"});
    CHECK_FALSE(color.nullable);

    const Type& size = fieldType(*item, "size");
    CHECK(size.kind == Kind::Struct);
    CHECK(size.nullable);
    REQUIRE(size.fields.size() == 2);
    CHECK(size.fields[1].name == "height");
    CHECK(size.fields[1].type->kind == Kind::Int);

    const Type& parent = fieldType(*item, "parent");
    CHECK(parent.kind == Kind::Named);
    CHECK(parent.name == "Item");
    CHECK(parent.nullable);

    const Type* purpose = iface.findType("Purpose");
    REQUIRE(purpose);
    CHECK(purpose->kind == Kind::Enum);
    CHECK(purpose->enumValues == std::vector<std::string>{"login", "verify", "recovery"});

    const Method* order = iface.findMethod("Order");
    REQUIRE(order);
    const Type& items = fieldType(order->input, "items");
    CHECK(items.kind == Kind::Array);
    CHECK(items.element->kind == Kind::Named);
    CHECK(items.element->name == "Item");
    CHECK(fieldType(order->input, "flags").element->kind == Kind::Bool);
    CHECK(fieldType(order->output, "total").kind == Kind::Float);

    const Method* ping = iface.findMethod("Ping");
    REQUIRE(ping);
    CHECK(ping->input.kind == Kind::Struct);
    CHECK(ping->input.fields.empty());
    CHECK(ping->output.fields.empty());

    const ErrorDef* outOfStock = iface.findError("OutOfStock");
    REQUIRE(outOfStock);
    CHECK(outOfStock->name == "OutOfStock");
    REQUIRE(outOfStock->parameters.fields.size() == 2);
    CHECK(fieldType(outOfStock->parameters, "available").kind == Kind::Int);
    const ErrorDef* closed = iface.findError("Closed");
    REQUIRE(closed);
    CHECK(closed->parameters.fields.empty());
}

TEST_CASE("Nested array, map and nullable types compose", "[idl][parse]") {
    const Interface iface = Interface::parse(
        "interface io.example.nest\nmethod M(a: [][string]?int, b: ?[]?string, c: [string][]bool) -> ()");
    const Type& input = iface.findMethod("M")->input;

    const Type& a = fieldType(input, "a");
    CHECK(a.kind == Kind::Array);
    CHECK_FALSE(a.nullable);
    CHECK(a.element->kind == Kind::Map);
    CHECK(a.element->element->kind == Kind::Int);
    CHECK(a.element->element->nullable);

    const Type& b = fieldType(input, "b");
    CHECK(b.kind == Kind::Array);
    CHECK(b.nullable);
    CHECK(b.element->kind == Kind::String);
    CHECK(b.element->nullable);

    const Type& c = fieldType(input, "c");
    CHECK(c.kind == Kind::Map);
    CHECK(c.element->kind == Kind::Array);
    CHECK(c.element->element->kind == Kind::Bool);
}

TEST_CASE("Whitespace, newlines and comments are allowed between any tokens", "[idl][parse]") {
    const std::string text =
        "  # leading comment\n\n"
        "interface # the name follows\n"
        "  io.example.spaced\n"
        "type # comment\n T\t(\n a # after a name\n : # after a colon\n ? # after ?\n [ # inside brackets\n ] string ,\n"
        " b:[\nstring\n]int)\n"
        "method M(t:T)->(x:int)# trailing comment without newline";
    const Interface iface = Interface::parse(text);
    CHECK(iface.name() == "io.example.spaced");
    const Type* t = iface.findType("T");
    REQUIRE(t);
    REQUIRE(t->fields.size() == 2);
    CHECK(t->fields[0].type->kind == Kind::Array);
    CHECK(t->fields[0].type->nullable);
    CHECK(t->fields[1].type->kind == Kind::Map);
    CHECK(t->fields[1].type->element->kind == Kind::Int);
    CHECK(iface.findMethod("M") != nullptr);
    // Windows line endings too.
    CHECK(Interface::parse("interface io.example.crlf\r\nmethod M() -> ()\r\n").methodNames() ==
          std::vector<std::string>{"M"});
}

TEST_CASE("Types may be used before they are defined, and recursively", "[idl][parse]") {
    const Interface iface = Interface::parse(
        "interface io.example.tree\nmethod Get() -> (root: Node)\ntype Node (value: int, children: []Node)\n");
    CHECK(iface.findType("Node") != nullptr);
}

TEST_CASE("Malformed descriptions are rejected with line and column", "[idl][parse]") {
    SECTION("syntax") {
        expectIdlError("", 1, 1, "expected 'interface', got end of input");
        expectIdlError("# only a comment\n", 2, 1, "expected 'interface'");
        expectIdlError("method Foo() -> ()", 1, 1, "expected 'interface', got 'method'");
        expectIdlError("interface io.example.x\nmethod Foo() -> ()\nfunction Bar()", 3, 1,
                       "expected 'type', 'method' or 'error', got 'function'");
        expectIdlError("interface io.example.x\nmethod Foo() ()", 2, 14, "expected '->'");
        expectIdlError("interface io.example.x\nmethod Foo()", 2, 13, "expected '->', got end of input");
        expectIdlError("interface io.example.x\nmethod Foo(a: int b: int) -> ()", 2, 19, "expected ',' or ')'");
        expectIdlError("interface io.example.x\nmethod Foo(a: int,) -> ()", 2, 19, "invalid field name ')'");
        expectIdlError("interface io.example.x\nmethod Foo(a int) -> ()", 2, 14, "expected ':'");
        expectIdlError("interface io.example.x\nmethod Foo(a:) -> ()", 2, 14, "expected a type, got ')'");
        expectIdlError("interface io.example.x\nmethod Foo(a: [int]string) -> ()", 2, 16,
                       "expected ']' or 'string]'");
        expectIdlError("interface io.example.x\nmethod Foo(a: ??int) -> ()", 2, 16, "nullable");
        expectIdlError("interface io.example.x\nmethod Foo(a: integer) -> ()", 2, 15, "unknown type 'integer'");
        expectIdlError("interface io.example.x\nmethod Foo(a: int) -> (\n  b: string", 3, 12,
                       "got end of input");
        expectIdlError("interface io.example.x\nmethod Foo(a: int) -> () $", 2, 26, "unexpected '$'");
        expectIdlError("interface io.example.x\nerror Foo", 2, 10, "expected '('");
        expectIdlError("interface io.example.x\ntype Foo string", 2, 10, "expected '('");
        // Enums are for types and fields, not for a method's parameter list.
        expectIdlError("interface io.example.x\nmethod Foo(a, b) -> ()", 2, 13, "expected ':'");
        // A struct cannot switch to enum values halfway (or the other way round).
        expectIdlError("interface io.example.x\ntype Foo (a: int, b)", 2, 20, "expected ':'");
        expectIdlError("interface io.example.x\ntype Foo (a, b: int)", 2, 15, "expected ',' or ')'");
    }
    SECTION("names") {
        expectIdlError("interface example\n", 1, 11, "invalid interface name 'example'");
        expectIdlError("interface io.Example.x\n", 1, 11, "invalid interface name");
        expectIdlError("interface io..x\n", 1, 11, "invalid interface name");
        expectIdlError("interface io.example-.x\n", 1, 11, "invalid interface name");
        expectIdlError("interface io.example.x\nmethod foo() -> ()", 2, 8, "invalid method name 'foo' (must be CamelCase)");
        expectIdlError("interface io.example.x\nerror not_found ()", 2, 7, "invalid error name 'not_found'");
        expectIdlError("interface io.example.x\ntype my-type ()", 2, 6, "invalid type name 'my-type'");
        expectIdlError("interface io.example.x\nmethod Foo(Bad-name: int) -> ()", 2, 12, "invalid field name 'Bad-name'");
        expectIdlError("interface io.example.x\nmethod Foo(a__b: int) -> ()", 2, 12, "invalid field name 'a__b'");
        expectIdlError("interface io.example.x\nmethod Foo(1a: int) -> ()", 2, 12, "invalid field name '1a'");
        expectIdlError("interface io.example.x\ntype Color (red, Green-ish)", 2, 18, "invalid enum value 'Green-ish'");
    }
    SECTION("duplicates and unknown types") {
        expectIdlError("interface io.example.x\nmethod Foo() -> ()\nmethod Foo() -> ()", 3, 8, "duplicate name 'Foo'");
        expectIdlError("interface io.example.x\ntype Foo ()\nerror Foo ()", 3, 7, "duplicate name 'Foo'");
        expectIdlError("interface io.example.x\nmethod Foo(a: int, a: string) -> ()", 2, 20, "duplicate field 'a'");
        expectIdlError("interface io.example.x\ntype Color (red, green, red)", 2, 25, "duplicate enum value 'red'");
        expectIdlError("interface io.example.x\nmethod Foo() -> (\n  r: []Missing\n)", 3, 8, "unknown type 'Missing'");
    }
}

// ---------------------------------------------------------------- the real files

TEST_CASE("The project's .varlink files parse", "[idl][files]") {
#ifndef TWOFACTOR_SOURCE_DIR
    WARN("TWOFACTOR_SOURCE_DIR not defined; skipping the real .varlink files");
#else
    SECTION("org.varlink.service") {
        const std::string text = readVarlink("org.varlink.service");
        const Interface iface = Interface::parse(text);
        CHECK(iface.name() == "org.varlink.service");
        CHECK(iface.description() == text);
        CHECK(iface.methodNames() == std::vector<std::string>{"GetInfo", "GetInterfaceDescription"});
        CHECK(iface.errorNames() == std::vector<std::string>{"InterfaceNotFound", "MethodNotFound",
                                                             "MethodNotImplemented", "InvalidParameter",
                                                             "PermissionDenied", "ExpectedMore"});
        const Method* getInfo = iface.findMethod("GetInfo");
        REQUIRE(getInfo);
        CHECK(fieldType(getInfo->output, "interfaces").kind == Kind::Array);
        CHECK(iface.findError("PermissionDenied")->parameters.fields.empty());
        // Field names may be keywords.
        CHECK(fieldType(iface.findMethod("GetInterfaceDescription")->input, "interface").kind == Kind::String);
        CHECK(fieldType(iface.findError("MethodNotFound")->parameters, "method").kind == Kind::String);
    }
    SECTION("io.twofactor.Otp") {
        // The project's interfaces grow, so check what is there rather than exact lists.
        const Interface iface = Interface::parse(readVarlink("io.twofactor.Otp"));
        CHECK(iface.name() == "io.twofactor.Otp");
        const auto methods = iface.methodNames();
        REQUIRE(methods.size() >= 5);
        CHECK(std::vector<std::string>(methods.begin(), methods.begin() + 5) ==
              std::vector<std::string>{"Send", "Verify", "Status", "Cancel", "Resend"});
        CHECK(iface.findError("NoSuchApp") != nullptr);
        CHECK(fieldType(iface.findError("OutOfRange")->parameters, "max").kind == Kind::Int);
        const Type* request = iface.findType("Request");
        REQUIRE(request);
        CHECK(fieldType(*request, "attempts").kind == Kind::Int);
        CHECK(fieldType(*request, "reference").nullable);
        const Method* send = iface.findMethod("Send");
        REQUIRE(send);
        CHECK_FALSE(fieldType(send->input, "app").nullable);
        CHECK(fieldType(send->input, "ttl").nullable);
        CHECK(fieldType(send->output, "request").kind == Kind::Named);
    }
    SECTION("io.twofactor.Daemon") {
        const Interface iface = Interface::parse(readVarlink("io.twofactor.Daemon"));
        CHECK(iface.name() == "io.twofactor.Daemon");
        CHECK(iface.findMethod("WhoAmI") != nullptr);
        CHECK(fieldType(iface.findMethod("WhoAmI")->output, "roles").element->kind == Kind::String);
        CHECK(fieldType(iface.findMethod("GetStatus")->output, "outbox").nullable);
    }
#endif
}

TEST_CASE("Otp.Send parameters validate against the real description", "[idl][files][validate]") {
#ifndef TWOFACTOR_SOURCE_DIR
    WARN("TWOFACTOR_SOURCE_DIR not defined; skipping the real .varlink files");
#else
    const Interface iface = Interface::parse(readVarlink("io.twofactor.Otp"));
    const Method& send = *iface.findMethod("Send");
    CHECK_FALSE(validate(iface, send.input, {{"app", "shop"}, {"destination", "a@example.com"}}));
    CHECK_FALSE(validate(iface, send.input, {{"app", "shop"}, {"destination", "x"}, {"ttl", 300}, {"locale", nullptr}}));
    auto violation = validate(iface, send.input, {{"app", "shop"}, {"destination", "x"}, {"ttl", "300"}});
    REQUIRE(violation);
    CHECK(violation->parameter == "ttl");
    CHECK(violation->reason == "expected int");

    // Built from the Request type itself, so the test follows the file as it grows.
    const json request = sampleValue(iface, *iface.findType("Request"));
    REQUIRE(request.contains("expiresAt"));
    CHECK_FALSE(validate(iface, send.output, {{"request", request}, {"delivery", "accepted"}}));
    json broken = request;
    broken.erase("expiresAt");
    violation = validate(iface, send.output, {{"request", broken}, {"delivery", "accepted"}});
    REQUIRE(violation);
    CHECK(violation->parameter == "request.expiresAt");
    CHECK(violation->reason == "missing");
#endif
}

// ---------------------------------------------------------------- validation

namespace {

const Interface& shop() {
    static const Interface iface = Interface::parse(kExample);
    return iface;
}

const Type& orderInput() { return shop().findMethod("Order")->input; }

json validItem() {
    return {{"sku", "A1"},
            {"count", 2},
            {"price", 9.5},
            {"tags", json::array({"new"})},
            {"attributes", {{"material", "wool"}}},
            {"color", "red"}};
}

json validOrder() { return {{"items", json::array({validItem()})}, {"purpose", "login"}, {"flags", json::object()}}; }

// Validates `value` against Order's input, expecting exactly this violation.
void expectViolation(const json& value, const std::string& parameter, const std::string& reason) {
    INFO("value: " << value.dump());
    const auto violation = validate(shop(), orderInput(), value);
    REQUIRE(violation);
    CHECK(violation->parameter == parameter);
    CHECK(violation->reason == reason);
}

json orderWithItem(const std::string& key, const json& value) {
    json order = validOrder();
    order["items"][0][key] = value;
    return order;
}

}  // namespace

TEST_CASE("Valid values pass validation", "[idl][validate]") {
    CHECK_FALSE(validate(shop(), orderInput(), validOrder()));

    json full = validOrder();
    full["note"] = "gift";
    full["flags"] = {{"express", true}, {"wrap", false}};
    json& item = full["items"][0];
    item["extra"] = {{"anything", json::array({1, "two", nullptr})}};
    item["size"] = {{"width", 3}, {"height", 4}};
    item["parent"] = validItem();
    item["parent"]["parent"] = validItem();
    CHECK_FALSE(validate(shop(), orderInput(), full));

    // Empty method parameters accept {} and null (absent).
    const Type& pingInput = shop().findMethod("Ping")->input;
    CHECK_FALSE(validate(shop(), pingInput, json::object()));
    CHECK_FALSE(validate(shop(), pingInput, nullptr));
    CHECK_FALSE(validate(shop(), shop().findError("OutOfStock")->parameters, {{"sku", "A1"}, {"available", 0}}));
}

TEST_CASE("Missing and unknown fields are violations", "[idl][validate]") {
    json order = validOrder();
    order.erase("purpose");
    expectViolation(order, "purpose", "missing");

    // Null counts as absent, so it is missing for a non-nullable field.
    order = validOrder();
    order["purpose"] = nullptr;
    expectViolation(order, "purpose", "missing");

    expectViolation(nullptr, "items", "missing");
    expectViolation(json::object(), "items", "missing");

    order = validOrder();
    order["surprise"] = 1;
    expectViolation(order, "surprise", "unknown field");

    // Unknown fields are reported before missing ones: usually a misspelling.
    order = validOrder();
    order.erase("purpose");
    order["purpos"] = "login";
    expectViolation(order, "purpos", "unknown field");

    json item = validItem();
    item.erase("sku");
    order = validOrder();
    order["items"] = json::array({validItem(), item});
    expectViolation(order, "items[1].sku", "missing");

    expectViolation(orderWithItem("sizes", 1), "items[0].sizes", "unknown field");

    // The first offending field in declaration order is the one named.
    order = validOrder();
    order.erase("items");
    order.erase("flags");
    expectViolation(order, "items", "missing");
}

TEST_CASE("Nullable fields may be absent or null but not the wrong type", "[idl][validate]") {
    json order = validOrder();
    order["note"] = nullptr;
    CHECK_FALSE(validate(shop(), orderInput(), order));
    order["note"] = 5;
    expectViolation(order, "note", "expected string");

    CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("size", nullptr)));
    CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("extra", nullptr)));
    CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("parent", nullptr)));
    expectViolation(orderWithItem("extra", json::array()), "items[0].extra", "expected object");
}

TEST_CASE("Scalar types are checked strictly", "[idl][validate]") {
    SECTION("int accepts JSON integers only") {
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("count", -3)));
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("count", std::numeric_limits<std::int64_t>::max())));
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("count", std::numeric_limits<std::int64_t>::min())));
        expectViolation(orderWithItem("count", 1.5), "items[0].count", "expected int");
        expectViolation(orderWithItem("count", json::parse("1.0")), "items[0].count", "expected int");
        expectViolation(orderWithItem("count", "1"), "items[0].count", "expected int");
        expectViolation(orderWithItem("count", true), "items[0].count", "expected int");
        expectViolation(orderWithItem("count", json::parse("18446744073709551615")), "items[0].count",
                        "out of range for int");
    }
    SECTION("float accepts any number") {
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("price", 3)));
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("price", -0.25)));
        expectViolation(orderWithItem("price", "3.0"), "items[0].price", "expected float");
        expectViolation(orderWithItem("price", false), "items[0].price", "expected float");
    }
    SECTION("string and bool") {
        expectViolation(orderWithItem("sku", 12), "items[0].sku", "expected string");
        json order = validOrder();
        order["flags"] = {{"express", 1}};
        expectViolation(order, "flags.express", "expected bool");
    }
    SECTION("object accepts any JSON object and nothing else") {
        CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("extra", json::object())));
        expectViolation(orderWithItem("extra", "{}"), "items[0].extra", "expected object");
    }
}

TEST_CASE("Arrays, maps and nested structs are checked element by element", "[idl][validate]") {
    json order = validOrder();
    order["items"] = validItem();  // an object where an array belongs
    expectViolation(order, "items", "expected array");

    order = validOrder();
    order["items"] = json::array();
    CHECK_FALSE(validate(shop(), orderInput(), order));

    expectViolation(orderWithItem("tags", json::array({"ok", "fine", 3})), "items[0].tags[2]", "expected string");
    expectViolation(orderWithItem("tags", json::array({"ok", nullptr})), "items[0].tags[1]", "expected string");

    expectViolation(orderWithItem("attributes", json::array({"a"})), "items[0].attributes", "expected object");
    expectViolation(orderWithItem("attributes", {{"material", "wool"}, {"weight", 3}}), "items[0].attributes.weight",
                    "expected string");
    CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("attributes", json::object())));

    expectViolation(orderWithItem("size", {{"width", 1}}), "items[0].size.height", "missing");
    expectViolation(orderWithItem("size", {{"width", 1}, {"height", 2}, {"depth", 3}}), "items[0].size.depth",
                    "unknown field");
    expectViolation(orderWithItem("size", json::array({1, 2})), "items[0].size", "expected object");

    order = validOrder();
    order["items"] = json::array({"A1"});
    expectViolation(order, "items[0]", "expected object");
}

TEST_CASE("Enums accept only their values", "[idl][validate]") {
    // Inline enum in a field.
    CHECK_FALSE(validate(shop(), orderInput(), orderWithItem("color", "blue")));
    expectViolation(orderWithItem("color", "purple"), "items[0].color", "not one of: red, green, blue");
    expectViolation(orderWithItem("color", "Red"), "items[0].color", "not one of: red, green, blue");
    expectViolation(orderWithItem("color", 0), "items[0].color", "expected string");

    // Named enum type.
    json order = validOrder();
    order["purpose"] = "recovery";
    CHECK_FALSE(validate(shop(), orderInput(), order));
    order["purpose"] = "signup";
    expectViolation(order, "purpose", "not one of: login, verify, recovery");
}

TEST_CASE("Named types resolve through the interface, recursively", "[idl][validate]") {
    json parent = validItem();
    parent["parent"] = validItem();
    parent["parent"]["parent"] = validItem();
    parent["parent"]["parent"]["count"] = "many";
    expectViolation(orderWithItem("parent", parent), "items[0].parent.parent.parent.count", "expected int");

    // A named struct type can be validated directly, too.
    const Type* item = shop().findType("Item");
    REQUIRE(item);
    CHECK_FALSE(validate(shop(), *item, validItem()));
    Type named;
    named.kind = Kind::Named;
    named.name = "Item";
    CHECK_FALSE(validate(shop(), named, validItem()));
    json bad = validItem();
    bad["price"] = "free";
    auto violation = validate(shop(), named, bad);
    REQUIRE(violation);
    CHECK(violation->parameter == "price");
    CHECK(violation->reason == "expected float");

    // A hand-built type that names something undefined is reported, not crashed on.
    named.name = "Nowhere";
    violation = validate(shop(), named, json::object());
    REQUIRE(violation);
    CHECK(violation->reason == "unknown type 'Nowhere'");
}

TEST_CASE("A value that is not an object fails a struct type", "[idl][validate]") {
    for (const json& value : {json::array(), json("x"), json(1), json(true)}) {
        INFO("value: " << value.dump());
        const auto violation = validate(shop(), orderInput(), value);
        REQUIRE(violation);
        CHECK(violation->parameter.empty());
        CHECK(violation->reason == "expected object");
    }
}
