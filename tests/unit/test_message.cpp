// The Varlink wire codec: framing, the depth guard, strict call parsing, and
// encoders that round-trip through the parsers.
#include "ipc/message.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace twofactor::ipc;
using nlohmann::json;

namespace {

FrameReader::Status feedString(FrameReader& reader, const std::string& bytes) {
    return reader.feed(bytes.data(), bytes.size());
}

std::vector<std::string> drain(FrameReader& reader) {
    std::vector<std::string> messages;
    while (auto message = reader.next()) {
        messages.push_back(std::move(*message));
    }
    return messages;
}

Call expectCall(std::string_view text, int maxDepth = 16) {
    auto result = parseCall(text, maxDepth);
    if (const auto* error = std::get_if<MessageError>(&result)) {
        FAIL("unexpected MessageError: " << error->reason);
    }
    return std::get<Call>(result);
}

std::string expectCallError(std::string_view text, int maxDepth = 16) {
    auto result = parseCall(text, maxDepth);
    REQUIRE(std::holds_alternative<MessageError>(result));
    return std::get<MessageError>(result).reason;
}

Reply expectReply(std::string_view text, int maxDepth = 16) {
    auto result = parseReply(text, maxDepth);
    if (const auto* error = std::get_if<MessageError>(&result)) {
        FAIL("unexpected MessageError: " << error->reason);
    }
    return std::get<Reply>(result);
}

std::string expectReplyError(std::string_view text, int maxDepth = 16) {
    auto result = parseReply(text, maxDepth);
    REQUIRE(std::holds_alternative<MessageError>(result));
    return std::get<MessageError>(result).reason;
}

// Encoders append the NUL; the parsers take the text without it.
std::string_view withoutNul(const std::string& encoded) {
    REQUIRE(!encoded.empty());
    REQUIRE(encoded.back() == '\0');
    return std::string_view(encoded).substr(0, encoded.size() - 1);
}

}  // namespace

TEST_CASE("FrameReader returns one message per NUL", "[message][frame]") {
    FrameReader reader(1024);
    CHECK_FALSE(reader.next());
    CHECK_FALSE(reader.hasPartial());

    REQUIRE(feedString(reader, std::string("{\"a\":1}\0", 8)) == FrameReader::Status::Ok);
    auto message = reader.next();
    REQUIRE(message);
    CHECK(*message == "{\"a\":1}");
    CHECK_FALSE(reader.next());
    CHECK_FALSE(reader.hasPartial());
}

TEST_CASE("FrameReader reassembles a message split across feeds", "[message][frame]") {
    FrameReader reader(1024);
    const std::string wire = std::string("{\"method\":\"io.example.Foo.Bar\"}") + '\0';

    // One byte at a time: nothing is complete until the NUL arrives.
    for (std::size_t i = 0; i + 1 < wire.size(); ++i) {
        REQUIRE(reader.feed(&wire[i], 1) == FrameReader::Status::Ok);
        CHECK_FALSE(reader.next());
        CHECK(reader.hasPartial());
    }
    REQUIRE(reader.feed(&wire.back(), 1) == FrameReader::Status::Ok);
    CHECK_FALSE(reader.hasPartial());
    auto message = reader.next();
    REQUIRE(message);
    CHECK(*message == wire.substr(0, wire.size() - 1));

    // A zero-length feed is harmless.
    CHECK(reader.feed(wire.data(), 0) == FrameReader::Status::Ok);
    CHECK_FALSE(reader.next());
}

TEST_CASE("FrameReader splits several messages in one feed", "[message][frame]") {
    FrameReader reader(1024);
    const std::string wire = std::string("{\"n\":1}\0{\"n\":2}\0\0{\"n\":", 22);
    REQUIRE(feedString(reader, wire) == FrameReader::Status::Ok);
    CHECK(reader.hasPartial());

    const auto messages = drain(reader);
    REQUIRE(messages.size() == 3);
    CHECK(messages[0] == "{\"n\":1}");
    CHECK(messages[1] == "{\"n\":2}");
    CHECK(messages[2].empty());  // two NULs in a row frame an empty message

    REQUIRE(feedString(reader, std::string("3}\0", 3)) == FrameReader::Status::Ok);
    CHECK_FALSE(reader.hasPartial());
    const auto rest = drain(reader);
    REQUIRE(rest.size() == 1);
    CHECK(rest[0] == "{\"n\":3}");
}

TEST_CASE("FrameReader accepts a message exactly at the limit and refuses one byte more", "[message][frame]") {
    constexpr std::size_t limit = 16;

    SECTION("exactly at the limit") {
        FrameReader reader(limit);
        REQUIRE(feedString(reader, std::string(limit, 'x') + '\0') == FrameReader::Status::Ok);
        auto message = reader.next();
        REQUIRE(message);
        CHECK(message->size() == limit);
    }
    SECTION("at the limit, assembled from several feeds") {
        FrameReader reader(limit);
        REQUIRE(feedString(reader, std::string(10, 'x')) == FrameReader::Status::Ok);
        REQUIRE(feedString(reader, std::string(6, 'y')) == FrameReader::Status::Ok);
        REQUIRE(feedString(reader, std::string(1, '\0')) == FrameReader::Status::Ok);
        auto message = reader.next();
        REQUIRE(message);
        CHECK(*message == std::string(10, 'x') + std::string(6, 'y'));
    }
    SECTION("one byte over, complete") {
        FrameReader reader(limit);
        CHECK(feedString(reader, std::string(limit + 1, 'x') + '\0') == FrameReader::Status::TooLarge);
        CHECK_FALSE(reader.next());
    }
    SECTION("one byte over, detected before any NUL arrives") {
        // A peer that never sends a NUL must not grow the buffer without bound.
        FrameReader reader(limit);
        REQUIRE(feedString(reader, std::string(limit, 'x')) == FrameReader::Status::Ok);
        CHECK(feedString(reader, "x") == FrameReader::Status::TooLarge);
        CHECK_FALSE(reader.hasPartial());
    }
    SECTION("the limit applies to each message, not to the feed") {
        FrameReader reader(limit);
        std::string wire;
        for (int i = 0; i < 4; ++i) {
            wire += std::string(limit, static_cast<char>('a' + i)) + '\0';
        }
        REQUIRE(feedString(reader, wire) == FrameReader::Status::Ok);
        CHECK(drain(reader).size() == 4);
    }
    SECTION("TooLarge is sticky, and earlier messages are still delivered") {
        FrameReader reader(limit);
        const std::string wire = std::string("ok") + '\0' + std::string(limit + 5, 'x') + '\0' + "later" + '\0';
        CHECK(feedString(reader, wire) == FrameReader::Status::TooLarge);
        CHECK(feedString(reader, std::string("{}\0", 3)) == FrameReader::Status::TooLarge);
        const auto messages = drain(reader);
        REQUIRE(messages.size() == 1);
        CHECK(messages[0] == "ok");
    }
}

TEST_CASE("A NUL inside a string is escaped, so it cannot split a message", "[message][frame]") {
    const std::string secret = std::string("a\0b", 3);
    const std::string wire = encodeCall("io.example.Foo.Bar", json{{"text", secret}});
    CHECK(std::count(wire.begin(), wire.end(), '\0') == 1);
    CHECK(wire.find("\\u0000") != std::string::npos);

    FrameReader reader(1024);
    REQUIRE(feedString(reader, wire) == FrameReader::Status::Ok);
    const auto messages = drain(reader);
    REQUIRE(messages.size() == 1);
    const Call call = expectCall(messages[0]);
    CHECK(call.parameters.at("text").get<std::string>() == secret);
}

TEST_CASE("withinDepth counts object and array nesting", "[message][depth]") {
    CHECK(withinDepth("1", 0));
    CHECK(withinDepth("\"text\"", 0));
    CHECK_FALSE(withinDepth("{}", 0));
    CHECK(withinDepth("{}", 1));
    CHECK(withinDepth("{\"a\":[1,2],\"b\":{}}", 2));
    CHECK_FALSE(withinDepth("{\"a\":[[1]]}", 2));
    CHECK(withinDepth("{\"a\":[[1]]}", 3));
    // Siblings do not add up: depth goes back down after each close.
    CHECK(withinDepth("[[],[],[],[],[]]", 2));
    CHECK(withinDepth("[[[1]]]", 3));
    CHECK_FALSE(withinDepth("[[[1]]]", 2));
}

TEST_CASE("withinDepth ignores brackets inside strings", "[message][depth]") {
    CHECK(withinDepth(R"({"a":"[[[[[[{{{{"})", 1));
    CHECK(withinDepth(R"(["]]]]]]", [1]])", 2));
    // An escaped quote does not end the string, so the brackets after it are text.
    CHECK(withinDepth(R"({"a":"x\"[[[["})", 1));
    // An escaped backslash does end the string before the quote: the brackets
    // after it are structure again.
    CHECK(withinDepth(R"(["x\\",[[1]]])", 3));
    CHECK_FALSE(withinDepth(R"(["x\\",[[1]]])", 2));
    // Closers inside strings must not lower the depth either.
    CHECK_FALSE(withinDepth(R"([["]]]]"],[[[1]]]])", 3));
}

TEST_CASE("withinDepth refuses a hostile megabyte of brackets without parsing it", "[message][depth]") {
    const std::string hostile(1 << 20, '[');
    CHECK_FALSE(withinDepth(hostile, 64));
    const std::string reason = expectCallError(hostile, 16);
    CHECK(reason == "nesting deeper than 16");
}

TEST_CASE("parseCall accepts well-formed calls", "[message][call]") {
    SECTION("minimal") {
        const Call call = expectCall(R"({"method":"io.twofactor.Otp.Send"})");
        CHECK(call.method == "io.twofactor.Otp.Send");
        CHECK(call.parameters == json::object());
        CHECK_FALSE(call.oneway);
        CHECK_FALSE(call.more);
        CHECK_FALSE(call.upgrade);
    }
    SECTION("all fields") {
        const Call call = expectCall(
            R"({"method":"org.varlink.service.GetInfo","parameters":{"x":[1,{"y":null}]},"oneway":true,"more":true,"upgrade":true})");
        CHECK(call.method == "org.varlink.service.GetInfo");
        CHECK(call.parameters == json{{"x", json::array({1, json{{"y", nullptr}}})}});
        CHECK(call.oneway);
        CHECK(call.more);
        CHECK(call.upgrade);
    }
    SECTION("explicit false flags") {
        const Call call = expectCall(R"({"method":"io.example.Foo.Bar","more":false,"oneway":false})");
        CHECK_FALSE(call.more);
        CHECK_FALSE(call.oneway);
    }
    SECTION("whitespace around the object") {
        const Call call = expectCall(" \n{ \"method\" : \"io.example.Foo.Bar\" }\n");
        CHECK(call.method == "io.example.Foo.Bar");
    }
    SECTION("nesting exactly at the limit") {
        // Message object (1) -> parameters (2) -> a (3).
        CHECK(expectCall(R"({"method":"io.example.Foo.Bar","parameters":{"a":[]}})", 3).parameters.contains("a"));
        CHECK(expectCallError(R"({"method":"io.example.Foo.Bar","parameters":{"a":[]}})", 2) ==
              "nesting deeper than 2");
    }
}

TEST_CASE("parseCall rejects each malformed call with a reason", "[message][call]") {
    struct Case {
        const char* text;
        const char* reason;
    };
    const Case cases[] = {
        {"", "not valid JSON"},
        {"{", "not valid JSON"},
        {R"({"method":"io.example.Foo.Bar"} trailing)", "not valid JSON"},
        {R"({"method":"io.example.Foo.Bar",})", "not valid JSON"},
        {"[]", "message must be a JSON object"},
        {"\"io.example.Foo.Bar\"", "message must be a JSON object"},
        {"null", "message must be a JSON object"},
        {"{}", "'method' is missing"},
        {R"({"parameters":{}})", "'method' is missing"},
        {R"({"method":42})", "'method' must be a string"},
        {R"({"method":null})", "'method' must be a string"},
        {R"({"method":"Bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":""})", "'method' must be of the form interface.Method"},
        {R"({"method":"io.example.Foo."})", "'method' must be of the form interface.Method"},
        {R"({"method":"io.example.Foo.bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":"io.example.Foo.Bar-Baz"})", "'method' must be of the form interface.Method"},
        {R"({"method":"Foo.Bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":".io.example.Bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":"io..example.Bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":"IO.example.Foo.Bar"})", "'method' must be of the form interface.Method"},
        {R"({"method":"io.example.Foo.Bar","parameters":[]})", "'parameters' must be an object"},
        {R"({"method":"io.example.Foo.Bar","parameters":null})", "'parameters' must be an object"},
        {R"({"method":"io.example.Foo.Bar","parameters":"x"})", "'parameters' must be an object"},
        {R"({"method":"io.example.Foo.Bar","oneway":1})", "'oneway' must be a boolean"},
        {R"({"method":"io.example.Foo.Bar","more":"true"})", "'more' must be a boolean"},
        {R"({"method":"io.example.Foo.Bar","upgrade":null})", "'upgrade' must be a boolean"},
        {R"({"method":"io.example.Foo.Bar","foo":1})", "unknown field 'foo'"},
        {R"({"method":"io.example.Foo.Bar","Method":"x"})", "unknown field 'Method'"},
        {R"({"method":"io.example.Foo.Bar","continues":true})", "unknown field 'continues'"},
    };
    for (const auto& c : cases) {
        INFO("input: " << c.text);
        CHECK(expectCallError(c.text) == c.reason);
    }
}

TEST_CASE("parseCall and parseReply treat invalid UTF-8 as invalid JSON without throwing", "[message][call]") {
    const std::string bad = std::string("{\"method\":\"io.example.Foo.Bar\",\"parameters\":{\"s\":\"\xff\xfe\"}}");
    CHECK_NOTHROW(parseCall(bad, 16));
    CHECK(expectCallError(bad) == "not valid JSON");
    const std::string badReply = std::string("{\"parameters\":{\"s\":\"\xc3\"}}");
    CHECK(expectReplyError(badReply) == "not valid JSON");
}

TEST_CASE("parseReply reads replies, errors and continuations", "[message][reply]") {
    SECTION("plain reply") {
        const Reply reply = expectReply(R"({"parameters":{"ok":true}})");
        CHECK_FALSE(reply.error);
        CHECK(reply.parameters == json{{"ok", true}});
        CHECK_FALSE(reply.continues);
    }
    SECTION("empty reply") {
        const Reply reply = expectReply("{}");
        CHECK_FALSE(reply.error);
        CHECK(reply.parameters == json::object());
    }
    SECTION("null parameters read as {}") {
        CHECK(expectReply(R"({"parameters":null})").parameters == json::object());
    }
    SECTION("continues") {
        CHECK(expectReply(R"({"parameters":{},"continues":true})").continues);
        CHECK_FALSE(expectReply(R"({"parameters":{},"continues":false})").continues);
    }
    SECTION("error") {
        const Reply reply = expectReply(R"({"error":"io.twofactor.Otp.NoSuchApp","parameters":{"app":"x"}})");
        REQUIRE(reply.error);
        CHECK(*reply.error == "io.twofactor.Otp.NoSuchApp");
        CHECK(reply.parameters == json{{"app", "x"}});
    }
    SECTION("unknown keys are ignored") {
        const Reply reply = expectReply(R"({"parameters":{"a":1},"future":[1,2]})");
        CHECK(reply.parameters == json{{"a", 1}});
    }
    SECTION("malformed replies") {
        CHECK(expectReplyError("not json") == "not valid JSON");
        CHECK(expectReplyError("[1]") == "message must be a JSON object");
        CHECK(expectReplyError(R"({"error":7})") == "'error' must be a string");
        CHECK(expectReplyError(R"({"error":"NoSuchApp"})") == "'error' must be of the form interface.Error");
        CHECK(expectReplyError(R"({"parameters":[1]})") == "'parameters' must be an object");
        CHECK(expectReplyError(R"({"continues":"yes"})") == "'continues' must be a boolean");
        CHECK(expectReplyError(R"({"parameters":{"a":[[[]]]}})", 3) == "nesting deeper than 3");
    }
}

TEST_CASE("Encoded calls round-trip through parseCall", "[message][encode]") {
    const json parameters = {{"app", "shop"}, {"ttl", 300}, {"tags", json::array({"a", "b"})}, {"x", nullptr}};

    const std::string plain = encodeCall("io.twofactor.Otp.Send", parameters);
    const Call call = expectCall(withoutNul(plain));
    CHECK(call.method == "io.twofactor.Otp.Send");
    CHECK(call.parameters == parameters);
    CHECK_FALSE(call.more);
    CHECK_FALSE(call.oneway);
    // Flags are only sent when set.
    CHECK(plain.find("more") == std::string::npos);
    CHECK(plain.find("oneway") == std::string::npos);

    const Call more = expectCall(withoutNul(encodeCall("io.example.Foo.Watch", json::object(), true)));
    CHECK(more.more);
    CHECK_FALSE(more.oneway);

    const Call oneway = expectCall(withoutNul(encodeCall("io.example.Foo.Poke", json::object(), false, true)));
    CHECK_FALSE(oneway.more);
    CHECK(oneway.oneway);

    // Null parameters go out as {}, which a strict peer requires.
    const Call nullParams = expectCall(withoutNul(encodeCall("io.example.Foo.Bar", nullptr)));
    CHECK(nullParams.parameters == json::object());
}

TEST_CASE("Encoded replies and errors round-trip through parseReply", "[message][encode]") {
    const json parameters = {{"request", {{"id", "r1"}, {"attempts", 2}, {"reference", nullptr}}}};

    const Reply reply = expectReply(withoutNul(encodeReply(parameters)));
    CHECK_FALSE(reply.error);
    CHECK(reply.parameters == parameters);
    CHECK_FALSE(reply.continues);

    CHECK(expectReply(withoutNul(encodeReply(parameters, true))).continues);
    CHECK(expectReply(withoutNul(encodeReply(nullptr))).parameters == json::object());

    const Reply error = expectReply(withoutNul(encodeError("io.twofactor.Otp.NoSuchApp", {{"app", "shop"}})));
    REQUIRE(error.error);
    CHECK(*error.error == "io.twofactor.Otp.NoSuchApp");
    CHECK(error.parameters == json{{"app", "shop"}});

    const Reply bare = expectReply(withoutNul(encodeError("org.varlink.service.PermissionDenied")));
    REQUIRE(bare.error);
    CHECK(*bare.error == "org.varlink.service.PermissionDenied");
    CHECK(bare.parameters == json::object());
}

TEST_CASE("Encoders replace invalid UTF-8 instead of throwing", "[message][encode]") {
    const json parameters = {{"name", std::string("caf\xe9")}};  // Latin-1, not UTF-8
    std::string wire;
    REQUIRE_NOTHROW(wire = encodeReply(parameters));
    const Reply reply = expectReply(withoutNul(wire));
    CHECK(reply.parameters.at("name").get<std::string>() == "caf\xef\xbf\xbd");  // U+FFFD

    REQUIRE_NOTHROW(wire = encodeError("io.example.Foo.Failed", {{"reason", std::string("\xff")}}));
    CHECK(expectReply(withoutNul(wire)).error);
    REQUIRE_NOTHROW(wire = encodeCall("io.example.Foo.Bar", {{"s", std::string("\x80")}}));
    CHECK(expectCall(withoutNul(wire)).parameters.at("s").get<std::string>() == "\xef\xbf\xbd");
}

TEST_CASE("Varlink name rules", "[message][names]") {
    CHECK(isInterfaceName("org.varlink.service"));
    CHECK(isInterfaceName("io.twofactor.Otp"));
    CHECK(isInterfaceName("io.two-factor.v2"));
    CHECK(isInterfaceName("a.b"));
    CHECK_FALSE(isInterfaceName(""));
    CHECK_FALSE(isInterfaceName("service"));  // one segment is not a domain
    CHECK_FALSE(isInterfaceName("Io.twofactor.Otp"));
    CHECK_FALSE(isInterfaceName("io.TwoFactor.Otp"));
    CHECK_FALSE(isInterfaceName("1io.twofactor"));
    CHECK_FALSE(isInterfaceName("io..twofactor"));
    CHECK_FALSE(isInterfaceName("io.twofactor."));
    CHECK_FALSE(isInterfaceName("io.-twofactor"));
    CHECK_FALSE(isInterfaceName("io.twofactor-"));
    CHECK_FALSE(isInterfaceName("io.two_factor"));
    CHECK_FALSE(isInterfaceName("io.two factor"));

    CHECK(isMemberName("Send"));
    CHECK(isMemberName("GetInfo2"));
    CHECK_FALSE(isMemberName(""));
    CHECK_FALSE(isMemberName("send"));
    CHECK_FALSE(isMemberName("Get_Info"));
    CHECK_FALSE(isMemberName("2Get"));

    const auto split = splitQualifiedName("io.twofactor.Otp.Send");
    REQUIRE(split);
    CHECK(split->first == "io.twofactor.Otp");
    CHECK(split->second == "Send");
    CHECK_FALSE(splitQualifiedName("Send"));
    CHECK_FALSE(splitQualifiedName("io.twofactor.send"));
    CHECK_FALSE(splitQualifiedName("twofactor.Send"));  // the interface needs two segments
}
