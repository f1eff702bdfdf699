#include "webhook/webhook.hpp"

#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <optional>
#include <vector>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>

using namespace twofactor;
using namespace twofactor::webhook;

namespace {

// The envelopes as documented in providers.md.
const std::string kDelivered = R"({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234","conversation":{"id":"CONV1","origin":{"type":"authentication"}},"pricing":{"billable":true,"category":"authentication"}}]}}]}]})";

const std::string kFailed = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.FAILED1","status":"failed","timestamp":"1750263800","recipient_id":"4915112345678","errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Receiver is incapable of receiving this message"}},{"code":131056,"title":"(Business Account, Consumer Account) pair rate limit hit"}]}]}}]}]})";

const std::string kReadOnly = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.READ1","status":"read","timestamp":"1750263900","recipient_id":"33612345678"}]}}]}]})";

const std::string kInboundStop = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Kerry Fisher"},"wa_id":"16315551181"}],"messages":[{"from":"16315551181","id":"wamid.IN1","timestamp":"1750264000","type":"text","text":{"body":" STOP "}}]}}]}]})";

// Two entries, statuses and messages together, plus kinds we do not handle.
const std::string kMixed = R"({"object":"whatsapp_business_account","entry":[
  {"id":"WABA1","changes":[
    {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}},
    {"field":"messages","value":{
      "statuses":[{"id":"wamid.S1","status":"sent","timestamp":"1","recipient_id":"16505551234"},
                  {"id":"wamid.S2","status":"deleted","timestamp":"2","recipient_id":"16505551234"},
                  {"status":"sent","timestamp":"3","recipient_id":"16505551234"},
                  {"id":"wamid.S4","status":"sent","timestamp":"4","recipient_id":"not-a-number"}],
      "messages":[{"from":"16315551181","id":"wamid.IMG","timestamp":"5","type":"image","image":{"id":"MEDIA"}},
                  {"from":"16315551181","id":"wamid.T1","timestamp":"6","type":"text","text":{"body":"hello"},"unknown":true}]}}]},
  {"id":"WABA2","changes":[{"field":"messages","value":{
      "statuses":[{"id":"wamid.S5","status":"delivered","timestamp":1700000000,"recipient_id":"447700900123"}],
      "messages":[{"from":"447700900123","id":"wamid.T2","timestamp":"7","type":"text","text":{"body":"arrêt"}}]}}]}]})";

std::string sign(std::string_view secret, std::string_view body) {
    return "sha256=" + crypto::hex(crypto::hmacSha256(secret, body));
}

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "twofactor-webhook-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string write(const std::string& name, const std::string& content, unsigned mode = 0600) const {
        const std::string p = path_ + "/" + name;
        std::ofstream(p, std::ios::binary) << content;
        ::chmod(p.c_str(), mode);
        return p;
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

const std::string kToken = "verify-token-0123456789";
const std::string kSecret = "app-secret-abcdef";

// Tests must not pick up a systemd credential directory from the environment.
struct NoCredentialsDirectory {
    NoCredentialsDirectory() { ::unsetenv("CREDENTIALS_DIRECTORY"); }
};

config::Webhook testConfig(const TempDir& dir) {
    config::Webhook c;
    c.enabled = true;
    c.listen = "127.0.0.1";
    c.port = 0;
    c.path = "/whatsapp";
    c.verifyTokenFile = dir.write("verify-token", kToken + "\n");
    c.appSecretFile = dir.write("app-secret", kSecret + "\n");
    c.maxBodyBytes = 4096;
    return c;
}

// What the handlers saw, from the server's worker threads.
struct Recorder {
    std::mutex mutex;
    std::vector<StatusUpdate> statuses;
    std::vector<InboundText> inbound;

    Handlers handlers() {
        return Handlers{
            [this](const StatusUpdate& s) {
                std::lock_guard lock(mutex);
                statuses.push_back(s);
            },
            [this](const InboundText& t) {
                std::lock_guard lock(mutex);
                inbound.push_back(t);
            },
        };
    }
    std::size_t calls() {
        std::lock_guard lock(mutex);
        return statuses.size() + inbound.size();
    }
};

// Sends `request` as is on a fresh connection and returns everything the
// server answers. With `pauseAt`, the bytes from there on follow 200 ms later,
// in a segment of their own, as a slow client's would.
std::string rawExchange(int port, const std::string& request, std::size_t pauseAt = std::string::npos) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    const std::string_view first = std::string_view(request).substr(0, pauseAt);
    const std::string_view rest = pauseAt < request.size() ? std::string_view(request).substr(pauseAt) : "";
    REQUIRE(::send(fd, first.data(), first.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(first.size()));
    if (!rest.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        // The server may have closed already: that is what some tests want.
        (void)::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    }
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

int statusOf(const std::string& rawResponse) {
    if (rawResponse.size() < 12 || !rawResponse.starts_with("HTTP/1.1 ")) return -1;
    return std::stoi(rawResponse.substr(9, 3));
}

// A small HTTP/1.1 client over a plain socket: one request per connection.
using Headers = std::vector<std::pair<std::string, std::string>>;

struct TestResponse {
    int status = 0;
    std::string body;
    Headers headers;
    [[nodiscard]] bool has_header(std::string_view name) const { return !get_header_value(name).empty(); }
    [[nodiscard]] std::string get_header_value(std::string_view name) const {
        for (const auto& [k, v] : headers)
            if (k.size() == name.size() &&
                std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
                return v;
        return "";
    }
};

class TestClient {
public:
    TestClient(const char*, int port) : port_(port) {}
    std::optional<TestResponse> Get(const std::string& target) { return exchange("GET", target, {}, "", ""); }
    std::optional<TestResponse> Head(const std::string& target) { return exchange("HEAD", target, {}, "", ""); }
    std::optional<TestResponse> Options(const std::string& target) { return exchange("OPTIONS", target, {}, "", ""); }
    std::optional<TestResponse> Delete(const std::string& target) { return exchange("DELETE", target, {}, "", ""); }
    std::optional<TestResponse> Post(const std::string& target, const Headers& h, const std::string& body,
                                     const std::string& type) {
        return exchange("POST", target, h, body, type);
    }
    std::optional<TestResponse> Put(const std::string& target, const std::string& body, const std::string& type) {
        return exchange("PUT", target, {}, body, type);
    }
    std::optional<TestResponse> Patch(const std::string& target, const std::string& body, const std::string& type) {
        return exchange("PATCH", target, {}, body, type);
    }

private:
    std::optional<TestResponse> exchange(const std::string& method, const std::string& target, const Headers& headers,
                                         const std::string& body, const std::string& type) {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return std::nullopt;
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
            ::close(fd);
            return std::nullopt;
        }
        std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
        for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
        if (!type.empty()) req += "Content-Type: " + type + "\r\n";
        if (method != "GET" && method != "HEAD" && method != "OPTIONS" && method != "DELETE")
            req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
        req += "\r\n" + body;
        (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        std::string raw;
        char buf[4096];
        for (;;) {
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) break;
            raw.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
        if (raw.size() < 12 || !raw.starts_with("HTTP/1.1 ")) return std::nullopt;
        TestResponse r;
        r.status = std::stoi(raw.substr(9, 3));
        const auto end = raw.find("\r\n\r\n");
        if (end == std::string::npos) return std::nullopt;
        std::size_t pos = raw.find("\r\n") + 2;
        while (pos < end) {
            const auto eol = raw.find("\r\n", pos);
            const std::string line = raw.substr(pos, eol - pos);
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string v = line.substr(colon + 1);
                while (!v.empty() && v.front() == ' ') v.erase(0, 1);
                r.headers.emplace_back(line.substr(0, colon), v);
            }
            pos = eol + 2;
        }
        r.body = raw.substr(end + 4);
        return r;
    }
    int port_;
};

}  // namespace

// ---- classifyOptText ---------------------------------------------------------

TEST_CASE("classifyOptText recognises the opt-out and opt-in keywords", "[webhook]") {
    struct Row {
        std::string text;
        OptCommand expected;
    };
    const std::vector<Row> rows = {
        {"STOP", OptCommand::Stop},
        {"stop", OptCommand::Stop},
        {"Stop", OptCommand::Stop},
        {"  sToP \n", OptCommand::Stop},
        {"\tSTOP\r\n", OptCommand::Stop},
        {"UNSUBSCRIBE", OptCommand::Stop},
        {"unsubscribe", OptCommand::Stop},
        {"ARRET", OptCommand::Stop},
        {"arret", OptCommand::Stop},
        {"ARR\xC3\x8AT", OptCommand::Stop},         // ARRÊT
        {"arr\xC3\xAAt", OptCommand::Stop},         // arrêt
        {"Arr\xC3\xAAt", OptCommand::Stop},
        {"ARRE\xCC\x82T", OptCommand::Stop},        // decomposed: E + combining circumflex
        {"arre\xCC\x82t", OptCommand::Stop},
        {"BAJA", OptCommand::Stop},
        {"baja", OptCommand::Stop},
        {"\xC2\xA0STOP\xC2\xA0", OptCommand::Stop},  // no-break spaces
        {"\xE3\x80\x80STOP\xE3\x80\x80", OptCommand::Stop},  // ideographic (full-width) spaces
        {"\xE2\x80\x8BSTOP\xE2\x80\x8B", OptCommand::Stop},  // zero-width spaces
        {"\xEF\xBB\xBFSTOP", OptCommand::Stop},               // BOM
        {"\xE2\x80\xAF stop \xE2\x80\xA8", OptCommand::Stop},
        {"\xEF\xBC\xB3\xEF\xBC\xB4\xEF\xBC\xAF\xEF\xBC\xB0", OptCommand::Stop},  // full-width ＳＴＯＰ
        {"\xEF\xBD\x93\xEF\xBD\x94\xEF\xBD\x8F\xEF\xBD\x90", OptCommand::Stop},  // full-width ｓｔｏｐ
        {"START", OptCommand::Start},
        {"start", OptCommand::Start},
        {" Start\n", OptCommand::Start},
        {"", OptCommand::None},
        {"   ", OptCommand::None},
        {"\xE3\x80\x80", OptCommand::None},
        {"STOPP", OptCommand::None},
        {"STO", OptCommand::None},
        {"S TOP", OptCommand::None},
        {"please stop", OptCommand::None},
        {"STOP!", OptCommand::None},
        {"STOP STOP", OptCommand::None},
        {"STARTS", OptCommand::None},
        {"ARR\xC3\x89T", OptCommand::None},  // ARRÉT: a different accent
        {"123456", OptCommand::None},
        {"\xFF\xFE", OptCommand::None},       // invalid UTF-8
        {std::string(2000, ' ') + "STOP", OptCommand::None},
    };
    for (const auto& row : rows) {
        INFO("text: \"" << row.text << "\"");
        CHECK(classifyOptText(row.text) == row.expected);
    }
}

// ---- parseWebhook ------------------------------------------------------------

TEST_CASE("parseWebhook reads a delivered status", "[webhook]") {
    const auto p = parseWebhook(kDelivered);
    REQUIRE(p);
    REQUIRE(p->statuses.size() == 1);
    CHECK(p->messages.empty());
    const auto& s = p->statuses[0];
    CHECK(s.messageId == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA");
    CHECK(s.status == "delivered");
    CHECK(s.timestamp == 1750263773);
    CHECK(s.recipient == "+16505551234");
    CHECK(s.errors.empty());
}

TEST_CASE("parseWebhook reads a failed status with its errors", "[webhook]") {
    const auto p = parseWebhook(kFailed);
    REQUIRE(p);
    REQUIRE(p->statuses.size() == 1);
    const auto& s = p->statuses[0];
    CHECK(s.messageId == "wamid.FAILED1");
    CHECK(s.status == "failed");
    CHECK(s.timestamp == 1750263800);
    CHECK(s.recipient == "+4915112345678");
    REQUIRE(s.errors.size() == 2);
    CHECK(s.errors[0].first == 131026);
    CHECK(s.errors[0].second == "Message undeliverable");
    CHECK(s.errors[1].first == 131056);
    CHECK(s.errors[1].second == "(Business Account, Consumer Account) pair rate limit hit");
}

TEST_CASE("parseWebhook passes on a read status that came without delivered", "[webhook]") {
    const auto p = parseWebhook(kReadOnly);
    REQUIRE(p);
    REQUIRE(p->statuses.size() == 1);
    CHECK(p->statuses[0].status == "read");
    CHECK(p->statuses[0].messageId == "wamid.READ1");
    CHECK(p->statuses[0].recipient == "+33612345678");
    CHECK(p->statuses[0].timestamp == 1750263900);
}

TEST_CASE("parseWebhook reads an inbound STOP", "[webhook]") {
    const auto p = parseWebhook(kInboundStop);
    REQUIRE(p);
    CHECK(p->statuses.empty());
    REQUIRE(p->messages.size() == 1);
    const auto& m = p->messages[0];
    CHECK(m.from == "+16315551181");
    CHECK(m.messageId == "wamid.IN1");
    CHECK(m.timestamp == 1750264000);
    CHECK(m.body == " STOP ");
    CHECK(classifyOptText(m.body) == OptCommand::Stop);
}

TEST_CASE("parseWebhook handles a mixed batch and skips what it does not know", "[webhook]") {
    const auto p = parseWebhook(kMixed);
    REQUIRE(p);
    REQUIRE(p->statuses.size() == 2);
    CHECK(p->statuses[0].messageId == "wamid.S1");
    CHECK(p->statuses[0].status == "sent");
    CHECK(p->statuses[0].timestamp == 1);
    CHECK(p->statuses[1].messageId == "wamid.S5");
    CHECK(p->statuses[1].status == "delivered");
    CHECK(p->statuses[1].timestamp == 1700000000);  // a number instead of a string
    CHECK(p->statuses[1].recipient == "+447700900123");
    REQUIRE(p->messages.size() == 2);
    CHECK(p->messages[0].messageId == "wamid.T1");
    CHECK(p->messages[0].body == "hello");
    CHECK(classifyOptText(p->messages[0].body) == OptCommand::None);
    CHECK(p->messages[1].messageId == "wamid.T2");
    CHECK(p->messages[1].from == "+447700900123");
    CHECK(classifyOptText(p->messages[1].body) == OptCommand::Stop);
}

TEST_CASE("parseWebhook refuses malformed JSON and other objects", "[webhook]") {
    CHECK_FALSE(parseWebhook(""));
    CHECK_FALSE(parseWebhook("{"));
    CHECK_FALSE(parseWebhook("not json"));
    CHECK_FALSE(parseWebhook(kDelivered.substr(0, kDelivered.size() - 1)));
    CHECK_FALSE(parseWebhook(kDelivered + "x"));
    CHECK_FALSE(parseWebhook("[]"));
    CHECK_FALSE(parseWebhook("\"whatsapp_business_account\""));
    CHECK_FALSE(parseWebhook(R"({"entry":[]})"));
    CHECK_FALSE(parseWebhook(R"({"object":"page","entry":[]})"));
    CHECK_FALSE(parseWebhook(R"({"object":"instagram","entry":[{"changes":[{"field":"messages","value":{}}]}]})"));
    CHECK_FALSE(parseWebhook(R"({"object":42})"));
    CHECK_FALSE(parseWebhook("{\"object\":\"whatsapp_business_account\",\"x\":\"\xFF\"}"));  // invalid UTF-8
    // Deep nesting: refused or accepted, but never a crash.
    const std::string deep = R"({"object":"whatsapp_business_account","entry":)" + std::string(100000, '[') +
                             std::string(100000, ']') + "}";
    const auto p = parseWebhook(deep);
    if (p) CHECK(p->statuses.empty());
}

TEST_CASE("parseWebhook tolerates odd but valid shapes", "[webhook]") {
    auto p = parseWebhook(R"({"object":"whatsapp_business_account"})");
    REQUIRE(p);
    CHECK(p->statuses.empty());
    CHECK(p->messages.empty());
    p = parseWebhook(R"({"object":"whatsapp_business_account","entry":[1,"x",{"changes":{}},{"changes":[null,{"field":"messages"},{"field":"messages","value":[]},{"field":"messages","value":{"statuses":{},"messages":"x"}}]}]})");
    REQUIRE(p);
    CHECK(p->statuses.empty());
    CHECK(p->messages.empty());
    // Wrong types inside an item: the item is skipped, not the batch.
    p = parseWebhook(R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[
        {"id":7,"status":"sent","recipient_id":"16505551234"},
        {"id":"wamid.OK","status":"failed","timestamp":"x","recipient_id":"+16505551234","errors":[{"code":"131026","title":"t"},{"code":131047}]}],
      "messages":[{"from":"16315551181","id":"wamid.X","type":"text","text":{"body":5}},
                  {"from":"0123","id":"wamid.Y","type":"text","text":{"body":"STOP"}}]}}]}]})");
    REQUIRE(p);
    REQUIRE(p->statuses.size() == 1);
    CHECK(p->statuses[0].messageId == "wamid.OK");
    CHECK(p->statuses[0].timestamp == 0);
    CHECK(p->statuses[0].recipient == "+16505551234");
    REQUIRE(p->statuses[0].errors.size() == 1);
    CHECK(p->statuses[0].errors[0] == std::pair<int, std::string>{131047, ""});
    CHECK(p->messages.empty());
}

// ---- verifySignature ----------------------------------------------------------

TEST_CASE("verifySignature checks X-Hub-Signature-256", "[webhook]") {
    const SecretString secret(kSecret);
    const std::string body = kDelivered;
    const std::string good = sign(kSecret, body);
    REQUIRE(good.size() == 7 + 64);

    CHECK(verifySignature(secret, body, good));
    // Independent value: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
    CHECK(verifySignature(SecretString("key"), "The quick brown fox jumps over the lazy dog",
                          "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"));
    // Upper-case hex is the same value.
    std::string upper = good;
    for (std::size_t i = 7; i < upper.size(); ++i)
        if (upper[i] >= 'a' && upper[i] <= 'f') upper[i] = static_cast<char>(upper[i] - 'a' + 'A');
    CHECK(verifySignature(secret, body, upper));

    CHECK_FALSE(verifySignature(secret, body + " ", good));                  // body changed
    CHECK_FALSE(verifySignature(SecretString("other"), body, good));         // other secret
    CHECK_FALSE(verifySignature(SecretString(), body, sign("", body)));      // no secret configured
    CHECK_FALSE(verifySignature(secret, body, good.substr(7)));              // missing prefix
    CHECK_FALSE(verifySignature(secret, body, "sha1=" + good.substr(7)));
    CHECK_FALSE(verifySignature(secret, body, "SHA256=" + good.substr(7)));
    CHECK_FALSE(verifySignature(secret, body, good.substr(0, good.size() - 2)));  // too short
    CHECK_FALSE(verifySignature(secret, body, good + "00"));                       // too long
    CHECK_FALSE(verifySignature(secret, body, good.substr(0, good.size() - 1)));   // odd length
    CHECK_FALSE(verifySignature(secret, body, ""));
    CHECK_FALSE(verifySignature(secret, body, "sha256="));
    std::string flipped = good;
    flipped.back() = flipped.back() == '0' ? '1' : '0';
    CHECK_FALSE(verifySignature(secret, body, flipped));
    std::string nonHex = good;
    nonHex[10] = 'g';
    CHECK_FALSE(verifySignature(secret, body, nonHex));
}

// ---- WebhookServer ------------------------------------------------------------

TEST_CASE("WebhookServer refuses to start without its secrets", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    auto c = testConfig(dir);

    auto missing = c;
    missing.appSecretFile = dir.path() + "/nope";
    CHECK_THROWS_AS(WebhookServer(missing, {}), std::runtime_error);
    missing = c;
    missing.verifyTokenFile.clear();
    CHECK_THROWS_AS(WebhookServer(missing, {}), std::runtime_error);

    auto empty = c;
    empty.verifyTokenFile = dir.write("empty-token", "\n");
    CHECK_THROWS_AS(WebhookServer(empty, {}), std::runtime_error);

    auto open = c;
    open.appSecretFile = dir.write("open-secret", kSecret, 0644);
    CHECK_THROWS_AS(WebhookServer(open, {}), std::runtime_error);

    auto badPath = c;
    badPath.path = "whatsapp";
    CHECK_THROWS_AS(WebhookServer(badPath, {}), std::runtime_error);

    CHECK_NOTHROW(WebhookServer(c, {}));
}

TEST_CASE("WebhookServer prefers systemd credentials", "[webhook]") {
    TempDir dir;
    auto c = testConfig(dir);
    TempDir creds;
    creds.write("whatsapp-verify-token", "credential-token\n");
    creds.write("whatsapp-app-secret", "credential-secret\n");
    ::setenv("CREDENTIALS_DIRECTORY", creds.path().c_str(), 1);
    Recorder rec;
    WebhookServer server(c, rec.handlers());
    ::unsetenv("CREDENTIALS_DIRECTORY");
    server.start();
    TestClient cli("127.0.0.1", server.port());
    auto r = cli.Get("/whatsapp?hub.mode=subscribe&hub.challenge=42&hub.verify_token=credential-token");
    REQUIRE(r);
    CHECK(r->status == 200);
    r = cli.Get("/whatsapp?hub.mode=subscribe&hub.challenge=42&hub.verify_token=" + kToken);
    REQUIRE(r);
    CHECK(r->status == 403);
    r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign("credential-secret", kReadOnly)}},
                 kReadOnly, "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(rec.calls() == 1);
}

TEST_CASE("WebhookServer answers the verification handshake", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    WebhookServer server(testConfig(dir), {});
    server.start();
    REQUIRE(server.port() > 0);
    TestClient cli("127.0.0.1", server.port());

    auto r = cli.Get("/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=" + kToken);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "1158201444");
    CHECK(r->get_header_value("Content-Type").starts_with("text/plain"));

    const auto statusFor = [&](const std::string& target) {
        auto res = cli.Get(target);
        REQUIRE(res);
        return res->status;
    };
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong") == 403);
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=" + kToken + "x") == 403);
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=") == 403);
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=1") == 403);
    CHECK(statusFor("/whatsapp?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=" + kToken) == 403);
    CHECK(statusFor("/whatsapp?hub.challenge=1&hub.verify_token=" + kToken) == 403);
    CHECK(statusFor("/whatsapp") == 403);
    // The challenge is echoed only when it is short printable text.
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.verify_token=" + kToken) == 403);
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=%3Cscript%0A&hub.verify_token=" + kToken) == 403);
    CHECK(statusFor("/whatsapp?hub.mode=subscribe&hub.challenge=" + std::string(257, '7') +
                    "&hub.verify_token=" + kToken) == 403);
    r = cli.Get("/whatsapp?hub.mode=subscribe&hub.challenge=" + std::string(256, '7') + "&hub.verify_token=" + kToken);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == std::string(256, '7'));
}

TEST_CASE("WebhookServer delivers signed notifications to the handlers", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    Recorder rec;
    WebhookServer server(testConfig(dir), rec.handlers());
    server.start();
    TestClient cli("127.0.0.1", server.port());

    auto r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, kFailed)}}, kFailed,
                      "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, kMixed)}}, kMixed,
                 "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, kInboundStop)}}, kInboundStop,
                 "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);

    std::lock_guard lock(rec.mutex);
    REQUIRE(rec.statuses.size() == 3);
    CHECK(rec.statuses[0].messageId == "wamid.FAILED1");
    CHECK(rec.statuses[0].status == "failed");
    CHECK(rec.statuses[0].recipient == "+4915112345678");
    REQUIRE(rec.statuses[0].errors.size() == 2);
    CHECK(rec.statuses[0].errors[0].first == 131026);
    CHECK(rec.statuses[1].messageId == "wamid.S1");
    CHECK(rec.statuses[2].messageId == "wamid.S5");
    REQUIRE(rec.inbound.size() == 3);
    CHECK(rec.inbound[0].body == "hello");
    CHECK(rec.inbound[1].body == "arr\xC3\xAAt");
    CHECK(rec.inbound[2].from == "+16315551181");
    CHECK(rec.inbound[2].messageId == "wamid.IN1");
    CHECK(rec.inbound[2].timestamp == 1750264000);
    CHECK(classifyOptText(rec.inbound[2].body) == OptCommand::Stop);
}

TEST_CASE("WebhookServer rejects unsigned and badly signed notifications", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    Recorder rec;
    WebhookServer server(testConfig(dir), rec.handlers());
    server.start();
    TestClient cli("127.0.0.1", server.port());

    const auto post = [&](const Headers& headers, const std::string& body) {
        auto res = cli.Post("/whatsapp", headers, body, "application/json");
        REQUIRE(res);
        return res->status;
    };
    CHECK(post({}, kInboundStop) == 401);
    CHECK(post({{"X-Hub-Signature-256", ""}}, kInboundStop) == 401);
    CHECK(post({{"X-Hub-Signature-256", sign("wrong-secret", kInboundStop)}}, kInboundStop) == 401);
    CHECK(post({{"X-Hub-Signature-256", sign(kSecret, kInboundStop).substr(7)}}, kInboundStop) == 401);
    CHECK(post({{"X-Hub-Signature-256", sign(kSecret, kInboundStop)}}, kInboundStop + " ") == 401);  // body changed
    CHECK(post({{"X-Hub-Signature", sign(kSecret, kInboundStop)}}, kInboundStop) == 401);  // the SHA-1 header name
    // Malformed JSON is checked only after the signature.
    CHECK(post({}, "{not json") == 401);
    CHECK(rec.calls() == 0);

    // Signed but malformed, or not WhatsApp: 400, handlers untouched.
    CHECK(post({{"X-Hub-Signature-256", sign(kSecret, "{not json")}}, "{not json") == 400);
    const std::string page = R"({"object":"page","entry":[]})";
    CHECK(post({{"X-Hub-Signature-256", sign(kSecret, page)}}, page) == 400);
    CHECK(rec.calls() == 0);

    // And a good one still works on the same server.
    CHECK(post({{"X-Hub-Signature-256", sign(kSecret, kInboundStop)}}, kInboundStop) == 200);
    CHECK(rec.calls() == 1);
}

TEST_CASE("WebhookServer caps the body size", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    Recorder rec;
    auto c = testConfig(dir);  // maxBodyBytes = 4096
    WebhookServer server(c, rec.handlers());
    server.start();

    // Refused from the headers alone, before a byte of the body is sent.
    auto raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          "X-Hub-Signature-256: sha256=00\r\nContent-Length: 10000000\r\n\r\n");
    CHECK(statusOf(raw) == 413);
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n\r\n");
    CHECK(statusOf(raw) == 413);
    // A length no integer holds is malformed, and refused as such.
    raw = rawExchange(server.port(),
                      "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    CHECK(statusOf(raw) == 400);

    // Exactly the limit is fine (and, unsigned here, reaches the signature check).
    std::string body(4096, ' ');
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4096\r\n\r\n" + body);
    CHECK(statusOf(raw) == 401);

    // A signed body over the limit is refused all the same.
    std::string big = kInboundStop;
    big.insert(big.size() - 1, ",\"pad\":\"" + std::string(5000, 'x') + "\"");
    TestClient cli("127.0.0.1", server.port());
    auto r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, big)}}, big,
                      "application/json");
    // The server may close before reading what the client still sends; then there is no response to see.
    if (r) CHECK(r->status == 413);
    CHECK(rec.calls() == 0);
}

TEST_CASE("WebhookServer refuses bodies it could not verify as sent", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    Recorder rec;
    WebhookServer server(testConfig(dir), rec.handlers());
    server.start();
    const std::string sig = sign(kSecret, kReadOnly);
    const std::string len = std::to_string(kReadOnly.size());

    // Chunked: Meta frames its bodies by length; anything else is not Meta.
    auto raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                          "X-Hub-Signature-256: " + sig + "\r\n\r\n" +
                                          [&] {
                                              char hex[32];
                                              std::snprintf(hex, sizeof(hex), "%zx", kReadOnly.size());
                                              return std::string(hex);
                                          }() + "\r\n" + kReadOnly + "\r\n0\r\n\r\n");
    CHECK(statusOf(raw) == 411);
    // No length at all.
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: " + sig + "\r\n\r\n");
    CHECK(statusOf(raw) == 411);
    // Compressed: the signature covers the bytes as sent, not inflated ones.
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: " +
                                         len + "\r\nX-Hub-Signature-256: " + sig + "\r\n\r\n" + kReadOnly);
    CHECK(statusOf(raw) == 415);
    // Form bodies are not what Meta sends.
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                                     "Content-Length: " + len + "\r\nX-Hub-Signature-256: " + sig + "\r\n\r\n" + kReadOnly);
    CHECK(statusOf(raw) == 415);
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n");
    CHECK(statusOf(raw) == 400);
    CHECK(rec.calls() == 0);

    // The same bytes, plainly framed, go through.
    raw = rawExchange(server.port(), "POST /whatsapp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                                     "Content-Length: " + len + "\r\nX-Hub-Signature-256: " + sig + "\r\n\r\n" + kReadOnly);
    CHECK(statusOf(raw) == 200);
    CHECK(rec.calls() == 1);
}

TEST_CASE("WebhookServer answers 404 and 405", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    Recorder rec;
    WebhookServer server(testConfig(dir), rec.handlers());
    server.start();
    TestClient cli("127.0.0.1", server.port());
    const std::string query = "?hub.mode=subscribe&hub.challenge=1&hub.verify_token=" + kToken;

    auto r = cli.Get("/other" + query);
    REQUIRE(r);
    CHECK(r->status == 404);
    r = cli.Get("/whatsapp/" + query);
    REQUIRE(r);
    CHECK(r->status == 404);
    r = cli.Get("/" + query);
    REQUIRE(r);
    CHECK(r->status == 404);
    r = cli.Post("/other", Headers{{"X-Hub-Signature-256", sign(kSecret, kInboundStop)}}, kInboundStop,
                 "application/json");
    REQUIRE(r);
    CHECK(r->status == 404);
    r = cli.Put("/whatsapp", kInboundStop, "application/json");
    REQUIRE(r);
    CHECK(r->status == 405);
    CHECK(r->get_header_value("Allow") == "GET, HEAD, POST");
    r = cli.Delete("/whatsapp");
    REQUIRE(r);
    CHECK(r->status == 405);
    r = cli.Patch("/whatsapp", kInboundStop, "application/json");
    REQUIRE(r);
    CHECK(r->status == 405);
    r = cli.Options("/whatsapp");
    REQUIRE(r);
    CHECK(r->status == 405);
    // HEAD is the handshake's GET without its body: nothing is handled either way.
    r = cli.Head("/whatsapp" + query);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.empty());
    CHECK(rec.calls() == 0);

    // A body left unread by an early answer is not taken for a request of its own.
    const std::string smuggled = "GET /whatsapp" + query + " HTTP/1.1\r\nHost: x\r\n\r\n";
    for (const std::string method : {"PUT", "POST"}) {
        const std::string first = method == "PUT" ? "PUT /whatsapp" : "POST /other";
        const std::string head =
            first + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(smuggled.size()) + "\r\n\r\n";
        const auto raw = rawExchange(server.port(), head + smuggled, head.size());
        INFO(raw);
        CHECK(statusOf(raw) == (method == "PUT" ? 405 : 404));
        CHECK(raw.find("HTTP/1.1 200") == std::string::npos);
    }
}

TEST_CASE("WebhookServer turns a handler exception into 500", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    std::atomic<int> statuses{0};
    std::atomic<int> inbound{0};
    Handlers h{
        [&](const StatusUpdate& s) {
            ++statuses;
            if (s.messageId == "wamid.S1") throw std::runtime_error("database is locked");
        },
        [&](const InboundText&) { ++inbound; },
    };
    WebhookServer server(testConfig(dir), std::move(h));
    server.start();
    TestClient cli("127.0.0.1", server.port());
    auto r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, kMixed)}}, kMixed,
                      "application/json");
    REQUIRE(r);
    CHECK(r->status == 500);
    CHECK_FALSE(r->has_header("EXCEPTION_WHAT"));
    CHECK(r->body.find("locked") == std::string::npos);
    // The other items were still handed over.
    CHECK(statuses == 2);
    CHECK(inbound == 2);
    // And the server keeps serving.
    r = cli.Post("/whatsapp", Headers{{"X-Hub-Signature-256", sign(kSecret, kReadOnly)}}, kReadOnly,
                 "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("WebhookServer start, port and stop", "[webhook]") {
    NoCredentialsDirectory noCreds;
    TempDir dir;
    auto c = testConfig(dir);
    WebhookServer first(c, {});
    CHECK(first.port() == 0);
    first.start();
    const int port = first.port();
    REQUIRE(port > 0);
    CHECK_THROWS_AS(first.start(), std::logic_error);

    // The port is ours alone: a second listener on it fails instead of sharing.
    auto same = c;
    same.port = port;
    WebhookServer second(same, {});
    CHECK_THROWS_AS(second.start(), std::runtime_error);

    auto badAddress = c;
    badAddress.listen = "192.0.2.1";  // TEST-NET-1: not an address of this host
    WebhookServer third(badAddress, {});
    CHECK_THROWS_AS(third.start(), std::runtime_error);

    first.stop();
    first.stop();  // idempotent
    TestClient cli("127.0.0.1", port);
    CHECK_FALSE(cli.Get("/whatsapp"));

    // Stopping right after starting, and destroying without stop, both return.
    for (int i = 0; i < 20; ++i) {
        WebhookServer quick(c, {});
        quick.start();
        quick.stop();
    }
    {
        WebhookServer dropped(c, {});
        dropped.start();
    }
    WebhookServer never(c, {});
    never.stop();
    CHECK_THROWS_AS(never.start(), std::logic_error);
}
