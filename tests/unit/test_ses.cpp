// The SES driver against tests/mock/ses_server.py, which checks every
// signature with botocore (not with our signer) and answers per recipient.
#include "channel/ses.hpp"

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

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
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
constexpr const char* kAccessKeyA = "AKIDTWOFACTORTESTA";
constexpr const char* kSecretA = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTKEYA";
constexpr const char* kTokenA = "IQoJb3JpZ2luX2VjEXAMPLETOKEN/with+slashes=";
constexpr const char* kAccessKeyB = "AKIDTWOFACTORTESTB";
constexpr const char* kSecretB = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEYB";

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
class MockSes {
public:
    MockSes() {
        char pattern[] = "/tmp/twofactor-test-ses-XXXXXX";
        if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = pattern;
        writePrivateFile(dir_ / "akid-a", kAccessKeyA);
        writePrivateFile(dir_ / "secret-a", std::string(kSecretA) + "\n");
        writePrivateFile(dir_ / "token-a", kTokenA);
        writePrivateFile(dir_ / "akid-b", kAccessKeyB);
        writePrivateFile(dir_ / "secret-b", kSecretB);
        // Same key id as B, another secret: only a verifying server notices.
        writePrivateFile(dir_ / "secret-wrong", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbWRONGSECRET");
        const json creds =
            json::array({{{"accessKeyId", kAccessKeyA}, {"secretAccessKey", kSecretA}, {"sessionToken", kTokenA}},
                         {{"accessKeyId", kAccessKeyB}, {"secretAccessKey", kSecretB}}});
        writePrivateFile(dir_ / "mock-credentials.json", creds.dump());

        const std::string script = TWOFACTOR_SOURCE_DIR "/tests/mock/ses_server.py";
        const std::string portFile = (dir_ / "port").string();
        const std::string log = (dir_ / "requests.jsonl").string();
        const std::string credsFile = (dir_ / "mock-credentials.json").string();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // Dies with the test even if the test crashes; --max-seconds backs this up.
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            ::execl(kPython, kPython, script.c_str(), "--port-file", portFile.c_str(), "--log", log.c_str(),
                    "--credentials", credsFile.c_str(), "--max-seconds", "300", "--slow-seconds", "3",
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!fs::exists(portFile)) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
                    throw std::runtime_error(std::string(kPython) +
                                             " cannot import botocore, which the SES mock needs to check "
                                             "signatures: apt-get install python3-botocore");
                if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                    throw std::runtime_error(std::string("cannot run ") + kPython + " (apt-get install python3)");
                throw std::runtime_error("the SES mock exited before listening (status " + std::to_string(status) +
                                         ")");
            }
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the SES mock did not start");
            std::this_thread::sleep_for(20ms);
        }
        port_ = std::stoi(readAll(portFile));
        log_ = log;
    }
    MockSes(const MockSes&) = delete;
    MockSes& operator=(const MockSes&) = delete;
    ~MockSes() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }

    int port() const { return port_; }
    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    const fs::path& dir() const { return dir_; }

    // The requests the mock received for one recipient, oldest first.
    std::vector<json> requestsTo(const std::string& address) const {
        std::vector<json> out;
        std::ifstream in(log_);
        for (std::string line; std::getline(in, line);) {
            const json entry = json::parse(line);
            const json& doc = entry["json"];
            if (doc.is_object() && doc.contains("Destination") &&
                doc["Destination"].value("ToAddresses", json::array()) == json::array({address}))
                out.push_back(entry);
        }
        return out;
    }

private:
    fs::path dir_;
    fs::path log_;
    pid_t pid_ = -1;
    int port_ = 0;
};

MockSes& mock() {
    static std::optional<MockSes> instance;
    if (!instance) {
        // Credentials must come from the files we name, not from the test's environment.
        ::unsetenv("CREDENTIALS_DIRECTORY");
        ::unsetenv("AWS_ACCESS_KEY_ID");
        ::unsetenv("AWS_SECRET_ACCESS_KEY");
        ::unsetenv("AWS_SESSION_TOKEN");
        instance.emplace();
    }
    return *instance;
}

enum class Keys { A, B, WrongSecret };

config::Config sesConfig(Keys keys = Keys::A, std::chrono::seconds timeout = 5s) {
    MockSes& m = mock();
    config::Config c;
    c.ses.region = "eu-west-1";
    c.ses.endpoint = m.endpoint();
    c.ses.from = "Example OTP <no-reply@example.com>";
    c.ses.replyTo = {"support@example.com"};
    c.ses.configurationSet = "otp-set";
    c.ses.timeout = timeout;
    c.ses.accessKeyIdFile = (m.dir() / (keys == Keys::A ? "akid-a" : "akid-b")).string();
    c.ses.secretAccessKeyFile = (m.dir() / (keys == Keys::A   ? "secret-a"
                                            : keys == Keys::B ? "secret-b"
                                                              : "secret-wrong"))
                                    .string();
    if (keys == Keys::A) c.ses.sessionTokenFile = (m.dir() / "token-a").string();
    return c;
}

Message otpMessage(const std::string& address, bool html = true) {
    Message m;
    m.requestId = "req-0001";
    m.app = "shop";
    m.appDisplayName = "Shop";
    m.channel = "email";
    m.destination = address;
    m.purpose = "login";
    m.locale = "en";
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) + 600;
    m.code = SecretString(kCode);
    m.subject = SecretString("Your Shop code");
    m.text = SecretString(std::string(kCode) + " is your Shop code. It expires in 10 minutes.");
    if (html) m.html = SecretString(std::string("<p><b>") + kCode + "</b> is your Shop code.</p>");
    return m;
}

DeliveryResult deliver(SesChannel& channel, Message message) {
    int calls = 0;
    DeliveryResult got;
    channel.deliver(std::move(message), [&](DeliveryResult r) {
        ++calls;
        got = std::move(r);
    });
    REQUIRE(calls == 1);
    CHECK(got.driver == "ses");
    return got;
}

DeliveryResult deliverTo(SesChannel& channel, const std::string& address) {
    return deliver(channel, otpMessage(address));
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

TEST_CASE("SES accepts a signed SendEmail carrying the code in text and HTML, UTF-8, with app/purpose tags only") {
    SesChannel channel(sesConfig(Keys::A));
    const std::string address = "alice.smith@accepted.example.org";
    const DeliveryResult r = deliverTo(channel, address);
    INFO(r.error);
    REQUIRE(outcomeName(r.outcome) == "Accepted");
    CHECK(r.statusCode == 200);
    CHECK(r.errorClass.empty());
    CHECK(r.error.empty());
    CHECK_FALSE(r.ambiguous);
    CHECK_FALSE(r.retryAfter.has_value());

    const auto requests = mock().requestsTo(address);
    REQUIRE(requests.size() == 1);
    const json& req = requests[0];
    CHECK(req["status"] == 200);
    CHECK(r.providerMessageId == req["messageId"].get<std::string>());
    CHECK(req["path"] == "/v2/email/outbound-emails");
    CHECK(req["scope"]["region"] == "eu-west-1");
    CHECK(req["scope"]["service"] == "ses");
    CHECK(req["headers"]["content-type"] == "application/json");
    CHECK(req["headers"]["x-amz-security-token"] == kTokenA);

    const json& doc = req["json"];
    CHECK(doc["FromEmailAddress"] == "Example OTP <no-reply@example.com>");
    CHECK(doc["Destination"]["ToAddresses"] == json::array({address}));
    CHECK(doc["ReplyToAddresses"] == json::array({"support@example.com"}));
    CHECK(doc["ConfigurationSetName"] == "otp-set");
    const json& simple = doc["Content"]["Simple"];
    CHECK(simple["Subject"]["Data"] == "Your Shop code");
    CHECK(simple["Subject"]["Charset"] == "UTF-8");
    CHECK(simple["Body"]["Text"]["Charset"] == "UTF-8");
    CHECK(simple["Body"]["Html"]["Charset"] == "UTF-8");
    CHECK(simple["Body"]["Text"]["Data"].get<std::string>().find(kCode) != std::string::npos);
    CHECK(simple["Body"]["Html"]["Data"].get<std::string>().find(kCode) != std::string::npos);
    const json expectedTags =
        json::array({{{"Name", "app"}, {"Value", "shop"}}, {{"Name", "purpose"}, {"Value", "login"}}});
    CHECK(doc["EmailTags"] == expectedTags);
    const std::string tags = doc["EmailTags"].dump();
    CHECK(tags.find("alice") == std::string::npos);
    CHECK(tags.find(kCode) == std::string::npos);
}

TEST_CASE("SES without a session token sends no X-Amz-Security-Token, and text-only mail has no Html part") {
    SesChannel channel(sesConfig(Keys::B));
    const std::string address = "bob@notoken.example.org";
    const DeliveryResult r = deliver(channel, otpMessage(address, false));
    INFO(r.error);
    REQUIRE(outcomeName(r.outcome) == "Accepted");
    const auto requests = mock().requestsTo(address);
    REQUIRE(requests.size() == 1);
    CHECK_FALSE(requests[0]["headers"].contains("x-amz-security-token"));
    CHECK_FALSE(requests[0]["json"]["Content"]["Simple"]["Body"].contains("Html"));
    CHECK(requests[0]["json"]["Content"]["Simple"]["Body"]["Text"]["Data"].get<std::string>().find(kCode) !=
          std::string::npos);
}

TEST_CASE("SES per-app region, sender and configuration set override [ses]; tag values are sanitised") {
    SesChannel channel(sesConfig(Keys::B));
    config::App app;
    app.name = "web shop/ü";
    app.sesRegion = "eu-central-1";
    app.sesFrom = "EU Shop <otp@eu.example.com>";
    app.sesConfigurationSet = "eu-set";
    Message m = otpMessage("carol@perapp.example.org");
    // Non-ASCII in the signed body: the mock's botocore hashes the bytes as received.
    m.subject = SecretString("Dein Code für Shop – ✓");
    m.app = app.name;
    m.purpose = "re:verify";
    m.appConfig = &app;
    const DeliveryResult r = deliver(channel, std::move(m));
    INFO(r.error);
    REQUIRE(outcomeName(r.outcome) == "Accepted");
    const auto requests = mock().requestsTo("carol@perapp.example.org");
    REQUIRE(requests.size() == 1);
    CHECK(requests[0]["scope"]["region"] == "eu-central-1");
    CHECK(requests[0]["json"]["FromEmailAddress"] == "EU Shop <otp@eu.example.com>");
    CHECK(requests[0]["json"]["ConfigurationSetName"] == "eu-set");
    CHECK(requests[0]["json"]["Content"]["Simple"]["Subject"]["Data"] == "Dein Code für Shop – ✓");
    const json expectedTags =
        json::array({{{"Name", "app"}, {"Value", "web_shop___"}}, {{"Name", "purpose"}, {"Value", "re_verify"}}});
    CHECK(requests[0]["json"]["EmailTags"] == expectedTags);

    CHECK(SesChannel::tagValue("") == "none");
    CHECK(SesChannel::tagValue(std::string(300, 'a')) == std::string(256, 'a'));
    CHECK(SesChannel::tagValue("A-z_9") == "A-z_9");
}

TEST_CASE("SES delivers from several worker threads at once through one channel") {
    SesChannel channel(sesConfig(Keys::A));
    constexpr int kThreads = 8;
    std::vector<DeliveryResult> results(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            channel.deliver(otpMessage("par-" + std::to_string(i) + "@parallel.example.org"),
                            [&results, i](DeliveryResult r) { results[static_cast<std::size_t>(i)] = std::move(r); });
        });
    for (auto& t : threads) t.join();
    std::set<std::string> ids;
    for (int i = 0; i < kThreads; ++i) {
        const DeliveryResult& r = results[static_cast<std::size_t>(i)];
        INFO(i << ": " << r.error);
        CHECK(outcomeName(r.outcome) == "Accepted");
        ids.insert(r.providerMessageId);
        const auto requests = mock().requestsTo("par-" + std::to_string(i) + "@parallel.example.org");
        REQUIRE(requests.size() == 1);
        CHECK(requests[0]["messageId"] == r.providerMessageId);
    }
    CHECK(ids.size() == kThreads);
}

TEST_CASE("SES throttling (429) is retryable, and the next try succeeds") {
    SesChannel channel(sesConfig());
    const std::string address = "throttle-1@throttle.example.org";
    const DeliveryResult first = deliverTo(channel, address);
    CHECK(outcomeName(first.outcome) == "Retryable");
    CHECK(first.statusCode == 429);
    CHECK(first.errorClass == "throttled");
    CHECK(first.error == "TooManyRequestsException: Maximum sending rate exceeded.");
    CHECK_FALSE(first.retryAfter.has_value());
    CHECK_FALSE(first.ambiguous);
    CHECK(first.providerMessageId.empty());

    const DeliveryResult second = deliverTo(channel, address);
    INFO(second.error);
    CHECK(outcomeName(second.outcome) == "Accepted");
    CHECK(second.statusCode == 200);
    CHECK(mock().requestsTo(address).size() == 2);
}

TEST_CASE("SES Retry-After is passed on") {
    SesChannel channel(sesConfig());
    const DeliveryResult r = deliverTo(channel, "retryafter@ra.example.org");
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "throttled");
    REQUIRE(r.retryAfter.has_value());
    CHECK(r.retryAfter->count() == 2000);
}

TEST_CASE("SES LimitExceededException (HTTP 400) counts as throttling") {
    SesChannel channel(sesConfig());
    const DeliveryResult r = deliverTo(channel, "limit@limit.example.org");
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.statusCode == 400);
    CHECK(r.errorClass == "throttled");
    CHECK(r.error.rfind("LimitExceededException: ", 0) == 0);
}

TEST_CASE("SES 5xx is retryable as a server error") {
    SesChannel channel(sesConfig());
    const std::string address = "fail500-1@fail.example.org";
    const DeliveryResult first = deliverTo(channel, address);
    CHECK(outcomeName(first.outcome) == "Retryable");
    CHECK(first.statusCode == 500);
    CHECK(first.errorClass == "server");
    CHECK(first.error.rfind("InternalFailure: ", 0) == 0);
    CHECK(outcomeName(deliverTo(channel, address).outcome) == "Accepted");
}

TEST_CASE("SES MessageRejected is permanent; the error names the code, never the recipient or the OTP") {
    SesChannel channel(sesConfig());
    const std::string address = "reject@Rejected.Example.org";
    const DeliveryResult r = deliverTo(channel, address);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.statusCode == 400);
    CHECK(r.errorClass == "rejected");
    CHECK(r.error.rfind("MessageRejected: Email address is not verified.", 0) == 0);
    // The mock, like SES, names the address in its message.
    CHECK(r.error.find("<recipient>") != std::string::npos);
    CHECK(r.error.find("reject@") == std::string::npos);
    CHECK(r.error.find(kCode) == std::string::npos);
}

TEST_CASE("SES account suspended or sending paused is a permanent configuration error") {
    SesChannel channel(sesConfig());
    const std::string address = GENERATE(as<std::string>{}, "suspended@acct.example.org", "paused@acct.example.org");
    const DeliveryResult r = deliverTo(channel, address);
    INFO(address);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.statusCode == 400);
    CHECK(r.errorClass == "config");
    // suspended@ names the code in x-amzn-ErrorType, paused@ only in the body's namespaced "__type".
    const std::string code =
        address.rfind("suspended", 0) == 0 ? "AccountSuspendedException: " : "SendingPausedException: ";
    CHECK(r.error.rfind(code, 0) == 0);
}

TEST_CASE("SES with a wrong secret gets 403 from the verifying mock: permanent, config") {
    SesChannel channel(sesConfig(Keys::WrongSecret));
    const std::string address = "dave@wrongsecret.example.org";
    const DeliveryResult r = deliverTo(channel, address);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.statusCode == 403);
    CHECK(r.errorClass == "config");
    CHECK(r.error.rfind("SignatureDoesNotMatch: ", 0) == 0);
    CHECK(r.error.find("WRONGSECRET") == std::string::npos);
    const auto requests = mock().requestsTo(address);
    REQUIRE(requests.size() == 1);
    CHECK(requests[0]["status"] == 403);
}

TEST_CASE("SES timeout after the request was sent is retryable and ambiguous") {
    SesChannel channel(sesConfig(Keys::A, 1s));
    const std::string address = "slow@timeout.example.org";
    const DeliveryResult r = deliverTo(channel, address);
    INFO(r.error);
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "timeout");
    CHECK(r.ambiguous);
    CHECK(r.statusCode == 0);
    CHECK(r.duration >= 900ms);
    // It was sent: the mock has it, which is exactly why a retry may deliver twice.
    CHECK(mock().requestsTo(address).size() == 1);
}

TEST_CASE("SES connection refused is a retryable network error, not ambiguous") {
    config::Config c = sesConfig();
    c.ses.endpoint = "http://127.0.0.1:" + std::to_string(closedPort());
    SesChannel channel(c);
    const DeliveryResult r = deliverTo(channel, "erin@refused.example.org");
    INFO(r.error);
    CHECK(outcomeName(r.outcome) == "Retryable");
    CHECK(r.errorClass == "network");
    CHECK_FALSE(r.ambiguous);
    CHECK(r.statusCode == 0);
}

TEST_CASE("SES refuses plain http to a non-loopback endpoint without connecting") {
    config::Config c = sesConfig();
    const std::string endpoint = GENERATE(as<std::string>{}, "http://example.com", "http://127.0.0.1.example.com:80",
                                          "ftp://127.0.0.1/", "https://user:pw@email.eu-west-1.amazonaws.com");
    c.ses.endpoint = endpoint;
    SesChannel channel(c);
    const DeliveryResult r = deliverTo(channel, "frank@nonloopback.example.org");
    INFO(endpoint << ": " << r.error);
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "config");
    CHECK(r.statusCode == 0);
    CHECK_FALSE(r.ambiguous);
}

TEST_CASE("SES does not send a message whose request has expired") {
    SesChannel channel(sesConfig());
    const std::string address = "grace@expired.example.org";
    Message m = otpMessage(address);
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) - 1;
    const DeliveryResult r = deliver(channel, std::move(m));
    CHECK(outcomeName(r.outcome) == "Permanent");
    CHECK(r.errorClass == "expired");
    CHECK(r.statusCode == 0);
    CHECK(mock().requestsTo(address).empty());
}

TEST_CASE("SES driver without credentials refuses to start, naming what is missing") {
    config::Config c = sesConfig();
    c.ses.accessKeyIdFile.clear();
    c.ses.secretAccessKeyFile.clear();
    c.ses.sessionTokenFile.clear();
    REQUIRE_THROWS_WITH(SesChannel(c), Catch::Contains("no AWS credentials"));
}
