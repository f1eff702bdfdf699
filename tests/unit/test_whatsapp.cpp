// The WhatsApp Cloud API driver against tests/mock/graph_server.py, which
// checks the bearer token, the path and the exact template JSON, and answers
// per recipient as a control file says.
#include "channel/whatsapp.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace twofactor;
using namespace twofactor::channel;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kCode = "739152";
constexpr const char* kToken = "EAAGtestTOKENwhatsapp0123456789abcdef";
constexpr const char* kWrongToken = "EAAGwrongTOKEN9876543210";
constexpr const char* kPhoneNumberId = "106540352242922";

void writePrivateFile(const fs::path& path, const std::string& content) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + path.string());
    const bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
    ::close(fd);
    if (!ok) throw std::runtime_error("cannot write " + path.string());
}

std::string readAll(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The mock, started once for the whole executable and stopped at exit.
class MockGraph {
public:
    MockGraph() {
        char pattern[] = "/tmp/twofactor-test-whatsapp-XXXXXX";
        if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        writePrivateFile(dir_ / "token", std::string(kToken) + "\n");
        writePrivateFile(dir_ / "token-wrong", kWrongToken);
        control_ = dir_ / "control.json";
        writeControl();

        const std::string script = TWOFACTOR_SOURCE_DIR "/tests/mock/graph_server.py";
        const std::string portFile = (dir_ / "port").string();
        const std::string log = (dir_ / "requests.jsonl").string();
        const std::string control = control_.string();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // Dies with the test even if the test crashes; --max-seconds backs this up.
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            ::execl(kPython, kPython, script.c_str(), "--port-file", portFile.c_str(), "--log", log.c_str(), "--token",
                    kToken, "--phone-number-id", kPhoneNumberId, "--control", control.c_str(), "--max-seconds", "300",
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!fs::exists(portFile)) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                    throw std::runtime_error(std::string("cannot run ") + kPython + " (apt-get install python3)");
                throw std::runtime_error("the Graph mock exited before listening (status " + std::to_string(status) +
                                         ")");
            }
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the Graph mock did not start");
            std::this_thread::sleep_for(20ms);
        }
        port_ = std::stoi(readAll(portFile));
        log_ = log;
    }
    MockGraph(const MockGraph&) = delete;
    MockGraph& operator=(const MockGraph&) = delete;
    ~MockGraph() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    const fs::path& dir() const { return dir_; }

    // The answers for a number, given in turn (then success); the mock re-reads the file per request.
    void answer(const std::string& number, json answers) {
        answers_[number] = std::move(answers);
        writeControl();
    }

    // The requests the mock received for one number, oldest first.
    std::vector<json> requestsTo(const std::string& number) const {
        std::vector<json> out;
        std::ifstream in(log_);
        for (std::string line; std::getline(in, line);) {
            const json entry = json::parse(line);
            const json& doc = entry["json"];
            if (doc.is_object() && doc.value("to", "") == number) out.push_back(entry);
        }
        return out;
    }

private:
    void writeControl() {
        const fs::path tmp = dir_ / "control.json.tmp";
        std::ofstream(tmp) << json(answers_).dump();
        fs::rename(tmp, control_);
    }

    fs::path dir_;
    fs::path log_;
    fs::path control_;
    std::map<std::string, json> answers_;
    pid_t pid_ = -1;
    int port_ = 0;
};

MockGraph& mock() {
    static std::optional<MockGraph> instance;
    if (!instance) {
        // The token must come from the files we name, not from the test's environment.
        ::unsetenv("CREDENTIALS_DIRECTORY");
        instance.emplace();
    }
    return *instance;
}

// A number no other test case uses, so the mock's per-number answers do not mix.
std::string freshNumber() {
    static std::atomic<int> next{10000001};
    return "+49151" + std::to_string(next++);
}

config::Config waConfig(std::chrono::seconds pairBackoff = 1s, std::chrono::seconds timeout = 5s) {
    MockGraph& m = mock();
    config::Config c;
    c.whatsapp.graphUrl = m.url();
    c.whatsapp.apiVersion = "v21.0";
    c.whatsapp.phoneNumberId = kPhoneNumberId;
    c.whatsapp.tokenFile = (m.dir() / "token").string();
    c.whatsapp.timeout = timeout;
    c.whatsapp.pairBackoff = pairBackoff;
    return c;
}

config::App shopApp() {
    config::App app;
    app.name = "shop";
    app.displayName = "Shop";
    app.channels = {"whatsapp"};
    app.defaultLocale = "en";
    app.whatsappTemplates["en"] = {"otp_login", "en_US"};
    app.whatsappTemplates["de"] = {"otp_login_de", "de"};
    return app;
}

const config::App& defaultApp() {
    static const config::App app = shopApp();
    return app;
}

Message otpMessage(const std::string& number, const config::App& app = defaultApp(), const std::string& locale = "en") {
    Message m;
    m.requestId = "req-0001";
    m.app = app.name;
    m.appDisplayName = app.displayName;
    m.channel = "whatsapp";
    m.destination = number;
    m.purpose = "login";
    m.locale = locale;
    m.appConfig = &app;
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) + 600;
    m.code = SecretString(kCode);
    return m;
}

DeliveryResult deliver(WhatsappChannel& channel, Message message) {
    int calls = 0;
    DeliveryResult got;
    channel.deliver(std::move(message), [&](DeliveryResult r) {
        ++calls;
        got = std::move(r);
    });
    REQUIRE(calls == 1);
    CHECK(got.driver == "whatsapp");
    return got;
}

DeliveryResult deliverTo(WhatsappChannel& channel, const std::string& number) {
    return deliver(channel, otpMessage(number));
}

std::string outcomeName(DeliveryOutcome o) {
    switch (o) {
        case DeliveryOutcome::Accepted:
            return "Accepted";
        case DeliveryOutcome::Retryable:
            return "Retryable";
        case DeliveryOutcome::Permanent:
            return "Permanent";
    }
    return "?";
}

// What the process writes to stderr (where log:: writes) while it lives.
class StderrCapture {
public:
    StderrCapture() {
        std::fflush(stderr);
        path_ = mock().dir() / ("stderr-" + std::to_string(counter_++));
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) throw std::runtime_error("cannot create " + path_.string());
        saved_ = ::dup(STDERR_FILENO);
        ::dup2(fd, STDERR_FILENO);
        ::close(fd);
    }
    StderrCapture(const StderrCapture&) = delete;
    StderrCapture& operator=(const StderrCapture&) = delete;
    ~StderrCapture() { restore(); }
    std::string text() {
        restore();
        return readAll(path_);
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }
    static inline int counter_ = 0;
    fs::path path_;
    int saved_ = -1;
};

// A port on loopback that nothing listens on (bound, then released).
int closedPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ::close(fd);
    return ntohs(addr.sin_port);
}

}  // namespace

TEST_CASE("WhatsApp accepts the authentication template with the code in body and button, and keeps the wamid") {
    WhatsappChannel channel(waConfig());
    CHECK(channel.driverName() == "whatsapp");
    const std::string number = freshNumber();
    const DeliveryResult r = deliverTo(channel, number);
    INFO(r.error);
    REQUIRE(outcomeName(r.outcome) == "Accepted");
    CHECK(r.statusCode == 200);
    CHECK(r.errorClass.empty());
    CHECK(r.error.empty());
    CHECK_FALSE(r.ambiguous);
    CHECK_FALSE(r.retryAfter.has_value());

    auto requests = mock().requestsTo(number);
    REQUIRE(requests.size() == 1);
    json& req = requests[0];  // non-const: a missing key reads as null instead of asserting
    CHECK(req["status"] == 200);
    CHECK(r.providerMessageId.rfind("wamid.", 0) == 0);
    CHECK(r.providerMessageId == req["messageId"].get<std::string>());
    CHECK(req["path"] == std::string("/v21.0/") + kPhoneNumberId + "/messages");
    CHECK(req["headers"]["authorization"] == std::string("Bearer ") + kToken);
    CHECK(req["headers"]["content-type"] == "application/json");

    const json button = {{"type", "button"},
                         {"sub_type", "url"},
                         {"index", "0"},
                         {"parameters", json::array({{{"type", "text"}, {"text", kCode}}})}};
    const json expected = {
        {"messaging_product", "whatsapp"},
        {"recipient_type", "individual"},
        {"to", number},
        {"type", "template"},
        {"template",
         {{"name", "otp_login"},
          {"language", {{"code", "en_US"}}},
          {"components",
           json::array(
               {{{"type", "body"}, {"parameters", json::array({{{"type", "text"}, {"text", kCode}}})}}, button})}}}};
    CHECK(req["json"] == expected);
}

TEST_CASE("WhatsApp picks the template by locale, then its language, then the app default, then en") {
    struct Case {
        std::string locale;
        std::string defaultLocale;
        std::string name;
        std::string language;
    };
    const Case c = GENERATE(values<Case>({
        {"de", "en", "otp_login_de", "de"},
        {"de-AT", "en", "otp_login_de", "de"},
        {"en", "de", "otp_login", "en_US"},
        {"fr", "de", "otp_login_de", "de"},
        {"pt-BR", "it", "otp_login", "en_US"},
    }));
    config::App app = shopApp();
    app.defaultLocale = c.defaultLocale;
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    const DeliveryResult r = deliver(channel, otpMessage(number, app, c.locale));
    INFO(c.locale << " / default " << c.defaultLocale << ": " << r.error);
    REQUIRE(outcomeName(r.outcome) == "Accepted");
    auto requests = mock().requestsTo(number);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0]["json"]["template"]["name"] == c.name);
    CHECK(requests[0]["json"]["template"]["language"]["code"] == c.language);
}

TEST_CASE("WhatsApp uses a regional template when the app has one") {
    config::App app = shopApp();
    app.whatsappTemplates["pt"] = {"otp_login_pt", "pt_PT"};
    app.whatsappTemplates["pt-BR"] = {"otp_login_br", "pt_BR"};
    WhatsappChannel channel(waConfig());
    const std::string br = freshNumber();
    const std::string pt = freshNumber();
    REQUIRE(outcomeName(deliver(channel, otpMessage(br, app, "pt-BR")).outcome) == "Accepted");
    REQUIRE(outcomeName(deliver(channel, otpMessage(pt, app, "pt-AO")).outcome) == "Accepted");
    CHECK(mock().requestsTo(br).at(0)["json"]["template"]["language"]["code"] == "pt_BR");
    CHECK(mock().requestsTo(pt).at(0)["json"]["template"]["language"]["code"] == "pt_PT");
}

TEST_CASE("WhatsApp without a template for the locale is a permanent config error and sends nothing") {
    config::App app;
    app.name = "shop";
    app.defaultLocale = "fr";
    app.whatsappTemplates["de"] = {"otp_login_de", "de"};
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    const DeliveryResult r = deliver(channel, otpMessage(number, app, "it"));
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "config");
    CHECK(r.error.rfind("no WhatsApp template for locale it", 0) == 0);
    CHECK(r.statusCode == 0);

    Message noApp = otpMessage(number);
    noApp.appConfig = nullptr;
    const DeliveryResult r2 = deliver(channel, std::move(noApp));
    CHECK(outcomeName(r2.outcome) == "Permanent");
    CHECK(r2.errorClass == "config");
    CHECK(mock().requestsTo(number).empty());
}

TEST_CASE("WhatsApp retries throttling and server errors by error code, whatever the HTTP status") {
    struct Case {
        int code;
        std::string errorClass;
        int status;
    };
    const Case c = GENERATE(values<Case>({
        {4, "throttled", 400},
        {80007, "throttled", 400},
        {130429, "throttled", 400},
        {131000, "server", 500},
        {131016, "server", 400},
        {2, "server", 500},
    }));
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    mock().answer(number, json::array({c.code}));
    const DeliveryResult first = deliverTo(channel, number);
    INFO(c.code << ": " << first.error);
    CHECK(outcomeName(first.outcome) == "Retryable");
    CHECK(first.errorClass == c.errorClass);
    CHECK(first.statusCode == c.status);
    CHECK(first.error.rfind("(#" + std::to_string(c.code) + ") ", 0) == 0);
    CHECK(first.error.find(kCode) == std::string::npos);
    CHECK_FALSE(first.retryAfter.has_value());
    CHECK_FALSE(first.ambiguous);
    CHECK(first.providerMessageId.empty());

    const DeliveryResult second = deliverTo(channel, number);
    CHECK(outcomeName(second.outcome) == "Accepted");
    CHECK(mock().requestsTo(number).size() == 2);
}

TEST_CASE("WhatsApp final errors are permanent with their class; only some alert the operator") {
    struct Case {
        int code;
        std::string errorClass;
        bool alert;
    };
    const Case c = GENERATE(values<Case>({
        {131026, "undeliverable", false},
        {132000, "config", false},
        {132001, "config", true},
        {131047, "rejected", false},
        {131048, "rejected", false},
        {131049, "rejected", false},
        {131031, "config", true},
        {368, "config", true},
        {190, "config", true},
    }));
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    mock().answer(number, json::array({c.code}));
    StderrCapture capture;
    const DeliveryResult r = deliverTo(channel, number);
    const std::string logged = capture.text();
    INFO(c.code << ": " << r.error << " / log: " << logged);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == c.errorClass);
    CHECK(r.statusCode == 400);
    CHECK(r.error.rfind("(#" + std::to_string(c.code) + ") ", 0) == 0);
    CHECK(mock().requestsTo(number).size() == 1);
    const bool alerted = logged.find("WhatsApp operator alert") != std::string::npos;
    CHECK(alerted == c.alert);
    if (alerted) CHECK(logged.find(std::to_string(c.code)) != std::string::npos);
    CHECK(logged.find(number.substr(1)) == std::string::npos);
    CHECK(logged.find(kCode) == std::string::npos);
    CHECK(logged.find(kToken) == std::string::npos);
}

TEST_CASE("WhatsApp error text is (#code) message: details, without the recipient's number") {
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    mock().answer(
        number,
        json::array({{{"code", 131026},
                      {"message", "Message undeliverable"},
                      {"details", "Recipient " + number + " (wa_id " + number.substr(1) + ") cannot be reached"}}}));
    const DeliveryResult r = deliverTo(channel, number);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "undeliverable");
    CHECK(r.error == "(#131026) Message undeliverable: Recipient <recipient> (wa_id <recipient>) cannot be reached");
}

TEST_CASE("WhatsApp unknown error codes: retryable on 5xx, else permanent rejected") {
    const int status = GENERATE(400, 403, 500, 503);
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    mock().answer(number, json::array({{{"code", 100123}, {"status", status}, {"message", "Something new"}}}));
    const DeliveryResult r = deliverTo(channel, number);
    INFO(status << ": " << r.error);
    CHECK(r.statusCode == status);
    CHECK(r.error.rfind("(#100123) Something new", 0) == 0);
    if (status >= 500) {
        CHECK(outcomeName(r.outcome) == "Retryable");
        CHECK(r.errorClass == "server");
    } else {
        CHECK(outcomeName(r.outcome) == "Permanent");
        CHECK(r.errorClass == "rejected");
    }
}

TEST_CASE("WhatsApp non-JSON 5xx from a proxy is a retryable server error") {
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    mock().answer(number, json::array({{{"status", 502}, {"raw", "Bad Gateway"}}}));
    const DeliveryResult r = deliverTo(channel, number);
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "server");
    CHECK(r.statusCode == 502);
    CHECK(r.error == "HTTP 502");
}

TEST_CASE("WhatsApp pair rate limit (131056) backs off this recipient only, and the next message waits") {
    WhatsappChannel channel(waConfig(2s));
    const std::string number = freshNumber();
    const std::string other = freshNumber();
    mock().answer(number, json::array({131056}));

    const auto start = std::chrono::steady_clock::now();
    const DeliveryResult first = deliverTo(channel, number);
    INFO(first.error);
    CHECK(outcomeName(first.outcome) == "Retryable");
    CHECK(first.errorClass == "pair-rate");
    CHECK(first.statusCode == 400);
    REQUIRE(first.retryAfter.has_value());
    CHECK(*first.retryAfter == 2000ms);

    // Another recipient is not held up.
    const DeliveryResult unrelated = deliverTo(channel, other);
    CHECK(outcomeName(unrelated.outcome) == "Accepted");
    CHECK(std::chrono::steady_clock::now() - start < 1500ms);

    // A new message to the same number waits out the backoff before it goes out.
    const DeliveryResult second = deliverTo(channel, number);
    CHECK(outcomeName(second.outcome) == "Accepted");
    CHECK(std::chrono::steady_clock::now() - start >= 1500ms);
    auto requests = mock().requestsTo(number);
    REQUIRE(requests.size() == 2);
    CHECK(requests[1]["time"].get<double>() - requests[0]["time"].get<double>() >= 1.5);
    auto others = mock().requestsTo(other);
    REQUIRE(others.size() == 1);
    CHECK(others[0]["time"].get<double>() < requests[1]["time"].get<double>());
}

TEST_CASE("WhatsApp does not hold a message whose request expires before the pair backoff ends") {
    WhatsappChannel channel(waConfig(30s));
    const std::string number = freshNumber();
    mock().answer(number, json::array({131056}));
    REQUIRE(deliverTo(channel, number).errorClass == "pair-rate");

    Message m = otpMessage(number);
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) + 5;
    const auto start = std::chrono::steady_clock::now();
    const DeliveryResult r = deliver(channel, std::move(m));
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "expired");
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    CHECK(mock().requestsTo(number).size() == 1);
}

TEST_CASE("WhatsApp with a wrong token gets 190 from the mock: permanent config and an operator alert") {
    config::Config c = waConfig();
    c.whatsapp.tokenFile = (mock().dir() / "token-wrong").string();
    WhatsappChannel channel(c);
    const std::string number = freshNumber();
    StderrCapture capture;
    const DeliveryResult r = deliverTo(channel, number);
    const std::string logged = capture.text();
    INFO(r.error << " / log: " << logged);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "config");
    CHECK(r.statusCode == 401);
    CHECK(r.error.rfind("(#190) ", 0) == 0);
    CHECK(r.error.find(kWrongToken) == std::string::npos);
    CHECK(logged.find("WhatsApp operator alert: error 190") != std::string::npos);
    CHECK(logged.find(kWrongToken) == std::string::npos);
    auto requests = mock().requestsTo(number);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0]["headers"]["authorization"] == std::string("Bearer ") + kWrongToken);
}

TEST_CASE("WhatsApp prefers the systemd credential whatsapp-token over token_file") {
    const fs::path creds = mock().dir() / "credentials";
    fs::create_directories(creds);
    writePrivateFile(creds / "whatsapp-token", kToken);
    config::Config c = waConfig();
    c.whatsapp.tokenFile = (mock().dir() / "token-wrong").string();
    ::setenv("CREDENTIALS_DIRECTORY", creds.c_str(), 1);
    std::optional<WhatsappChannel> channel;
    try {
        channel.emplace(c);
    } catch (...) {
        ::unsetenv("CREDENTIALS_DIRECTORY");
        throw;
    }
    ::unsetenv("CREDENTIALS_DIRECTORY");
    const DeliveryResult r = deliverTo(*channel, freshNumber());
    INFO(r.error);
    CHECK(outcomeName(r.outcome) == "Accepted");
}

TEST_CASE("WhatsApp driver without a token or phone number id refuses to start, naming what is missing") {
    config::Config c = waConfig();
    c.whatsapp.tokenFile.clear();
    REQUIRE_THROWS_WITH(WhatsappChannel(c), Catch::Contains("whatsapp-token") && Catch::Contains("token_file"));
    c = waConfig();
    c.whatsapp.tokenFile = (mock().dir() / "no-such-token").string();
    REQUIRE_THROWS_WITH(WhatsappChannel(c), Catch::Contains("does not exist"));
    c = waConfig();
    c.whatsapp.phoneNumberId.clear();
    REQUIRE_THROWS_WITH(WhatsappChannel(c), Catch::Contains("phone_number_id"));
}

TEST_CASE("WhatsApp refuses plain http to a non-loopback Graph URL without connecting") {
    config::Config c = waConfig();
    const std::string url = GENERATE(as<std::string>{}, "http://example.com", "http://127.0.0.1.example.com:80",
                                     "ftp://127.0.0.1/", "https://user:pw@graph.facebook.com");
    c.whatsapp.graphUrl = url;
    WhatsappChannel channel(c);
    const DeliveryResult r = deliverTo(channel, freshNumber());
    INFO(url << ": " << r.error);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "config");
    CHECK(r.statusCode == 0);
    CHECK_FALSE(r.ambiguous);
}

TEST_CASE("WhatsApp does not send a message whose request has expired") {
    WhatsappChannel channel(waConfig());
    const std::string number = freshNumber();
    Message m = otpMessage(number);
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) - 1;
    const DeliveryResult r = deliver(channel, std::move(m));
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "expired");
    CHECK(r.statusCode == 0);
    CHECK(mock().requestsTo(number).empty());
}

TEST_CASE("WhatsApp timeout after the request was sent is retryable and ambiguous") {
    WhatsappChannel channel(waConfig(1s, 1s));
    const std::string number = freshNumber();
    mock().answer(number, json::array({{{"sleep", 3}}}));
    const DeliveryResult r = deliverTo(channel, number);
    INFO(r.error);
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "timeout");
    CHECK(r.ambiguous);
    CHECK(r.statusCode == 0);
    CHECK(mock().requestsTo(number).size() == 1);
}

TEST_CASE("WhatsApp connection refused is a retryable network error, not ambiguous") {
    config::Config c = waConfig();
    c.whatsapp.graphUrl = "http://127.0.0.1:" + std::to_string(closedPort());
    WhatsappChannel channel(c);
    const DeliveryResult r = deliverTo(channel, freshNumber());
    INFO(r.error);
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "network");
    CHECK_FALSE(r.ambiguous);
    CHECK(r.statusCode == 0);
}

TEST_CASE("WhatsApp delivers from several worker threads at once through one channel") {
    WhatsappChannel channel(waConfig());
    constexpr int kThreads = 6;
    std::vector<std::string> numbers;
    for (int i = 0; i < kThreads; ++i) numbers.push_back(freshNumber());
    std::vector<DeliveryResult> results(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            channel.deliver(otpMessage(numbers[static_cast<std::size_t>(i)]),
                            [&results, i](DeliveryResult r) { results[static_cast<std::size_t>(i)] = std::move(r); });
        });
    for (auto& t : threads) t.join();
    std::set<std::string> ids;
    for (int i = 0; i < kThreads; ++i) {
        const DeliveryResult& r = results[static_cast<std::size_t>(i)];
        INFO(i << ": " << r.error);
        CHECK(outcomeName(r.outcome) == "Accepted");
        ids.insert(r.providerMessageId);
        auto requests = mock().requestsTo(numbers[static_cast<std::size_t>(i)]);
        REQUIRE(requests.size() == 1);
        CHECK(requests[0]["messageId"] == r.providerMessageId);
    }
    CHECK(ids.size() == kThreads);
}
