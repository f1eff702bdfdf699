// The SMTP driver against a real SMTP server (tests/mock/smtp_server.py,
// aiosmtpd) with STARTTLS under a throwaway CA, and the header helpers.
#include "channel/smtp.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace twofactor;
using namespace twofactor::channel;
namespace fs = std::filesystem;

namespace {

constexpr const char* kPython = "/usr/bin/python3";
const std::string kMockScript = TWOFACTOR_SOURCE_DIR "/tests/mock/smtp_server.py";
const std::string kSubject = "Ihr Bestätigungscode für die Anmeldung bei Müller & Söhne GmbH (gültig 10 Minuten)";
constexpr const char* kCode = "482913";
// SES SMTP password for this (documentation) secret in us-east-1, computed independently.
constexpr const char* kSesSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kSesPassword = "BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7";

std::string readFile(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const fs::path& p, const std::string& content, fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
    std::ofstream(p, std::ios::binary) << content;
    fs::permissions(p, perms);
}

int run(const std::string& command) {
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A private directory removed at exit of the test process.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "twofactor-smtp-XXXXXX").string();
        if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
        path = templ;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// The CA the driver trusts, a server certificate it signed, and a second CA
// that signed nothing the server presents.
struct Pki {
    TempDir dir;
    fs::path ca, serverCert, serverKey, otherCa;
    bool ok = false;
    Pki() {
        const std::string d = dir.path.string();
        ca = dir.path / "ca.pem";
        serverCert = dir.path / "server.pem";
        serverKey = dir.path / "server.key";
        otherCa = dir.path / "other-ca.pem";
        writeFile(dir.path / "ext.cnf", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        const std::string q = " >/dev/null 2>&1";
        ok = run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=twofactor-test-ca -keyout " + d +
                 "/ca.key -out " + ca.string() + q) == 0 &&
             run("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + serverKey.string() + " -out " + d +
                 "/server.csr" + q) == 0 &&
             run("openssl x509 -req -days 2 -in " + d + "/server.csr -CA " + ca.string() + " -CAkey " + d +
                 "/ca.key -CAcreateserial -extfile " + d + "/ext.cnf -out " + serverCert.string() + q) == 0 &&
             run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=twofactor-other-ca -keyout " + d +
                 "/other.key -out " + otherCa.string() + q) == 0;
    }
};

const Pki& pki() {
    static Pki p;
    return p;
}

bool haveAiosmtpd() {
    static const bool have = run(std::string(kPython) + " -c 'import aiosmtpd.controller' >/dev/null 2>&1") == 0;
    return have;
}

// Fails the test (rather than skipping it) when the environment is incomplete.
void requireEnvironment() {
    if (!haveAiosmtpd()) FAIL(std::string(kPython) + " cannot import aiosmtpd: apt-get install python3-aiosmtpd");
    REQUIRE(pki().ok);
}

struct MockOptions {
    bool starttls = true;
    std::string user;
    std::string password;
};

// The mock relay as a child process; killed (SIGTERM, then SIGKILL) when it goes.
class MockServer {
public:
    explicit MockServer(const MockOptions& options = {}) {
        maildir_ = dir_.path / "maildir";
        const fs::path portFile = dir_.path / "port";
        std::vector<std::string> args = {kPython, kMockScript, "--port-file", portFile.string(), "--maildir",
                                         maildir_.string(), "--max-seconds", "120"};
        if (options.starttls) {
            args.insert(args.end(), {"--cert", pki().serverCert.string(), "--key", pki().serverKey.string()});
        } else {
            args.push_back("--no-starttls");
        }
        if (!options.user.empty()) args.insert(args.end(), {"--user", options.user, "--password", options.password});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = fork();
        if (pid_ == 0) {
            execv(kPython, argv.data());
            _exit(127);
        }
        for (int i = 0; i < 200 && port_ == 0; ++i) {
            if (fs::exists(portFile)) {
                port_ = std::atoi(readFile(portFile).c_str());
                break;
            }
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    MockServer(const MockServer&) = delete;
    MockServer& operator=(const MockServer&) = delete;
    ~MockServer() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        for (int i = 0; i < 100; ++i) {
            if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    int port() const { return port_; }
    std::string url(const std::string& scheme = "smtp") const {
        return scheme + "://127.0.0.1:" + std::to_string(port_);
    }
    // Stored messages, oldest first.
    std::vector<fs::path> messages() const {
        std::vector<fs::path> out;
        if (!fs::exists(maildir_)) return out;
        for (const auto& e : fs::directory_iterator(maildir_))
            if (e.path().extension() == ".eml") out.push_back(e.path());
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    TempDir dir_;
    fs::path maildir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

config::Config smtpConfig(const std::string& url) {
    config::Config c;
    c.smtp.url = url;
    c.smtp.from = "Bücher & Co. <no-reply@books.example.com>";
    c.smtp.timeout = std::chrono::seconds(10);
    c.tls.caBundle = pki().ca.string();
    return c;
}

Message otpMessage(const std::string& to, bool withHtml = true) {
    Message m;
    m.requestId = "req1";
    m.app = "default";
    m.channel = "email";
    m.destination = to;
    m.purpose = "login";
    m.locale = "de";
    m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) + 600;
    m.code = SecretString(kCode);
    m.subject = SecretString(kSubject);
    m.text = SecretString(std::string("Ihr Code lautet ") + kCode + ".\nEr ist 10 Minuten gültig.\n");
    if (withHtml) m.html = SecretString(std::string("<p>Ihr Code lautet <b>") + kCode + "</b>.</p>");
    return m;
}

// Delivers and insists `done` ran exactly once, before deliver() returned.
DeliveryResult deliverOnce(Channel& channel, Message message) {
    int calls = 0;
    DeliveryResult result;
    channel.deliver(std::move(message), [&](DeliveryResult r) {
        ++calls;
        result = std::move(r);
    });
    REQUIRE(calls == 1);
    CHECK(result.driver == "smtp");
    UNSCOPED_INFO("error: " << result.error);
    return result;
}

// The message as Python's email package reads it (policy.default decodes RFC 2047).
nlohmann::json parseMessage(const fs::path& eml) {
    TempDir dir;
    const fs::path script = dir.path / "parse.py";
    writeFile(script, R"PY(
import email, json, sys
from email import policy
from email.utils import parsedate_to_datetime
raw = open(sys.argv[1], 'rb').read()
m = email.message_from_bytes(raw, policy=policy.default)
frm = m['From'].addresses[0]
parts = [p for p in m.walk() if not p.is_multipart()]
print(json.dumps({
    'content_type': m.get_content_type(),
    'subject': str(m['Subject']),
    'raw_subject_lines': [l for l in raw.split(b'\r\n\r\n')[0].decode('ascii').split('\r\n')
                          if l.startswith('Subject:') or l.startswith(' ')],
    'from_display': frm.display_name, 'from_addr': frm.addr_spec,
    'to': str(m['To']),
    'date_utc': parsedate_to_datetime(m['Date']).utcoffset().total_seconds() == 0,
    'date_age': abs(parsedate_to_datetime(m['Date']).timestamp() - __import__('time').time()),
    'message_id': str(m['Message-ID']),
    'auto_submitted': str(m['Auto-Submitted']),
    'mime_version': str(m['MIME-Version']),
    'parts': [{'type': p.get_content_type(), 'charset': p.get_content_charset(), 'content': p.get_content(),
               'disposition': p.get_content_disposition()} for p in parts],
    'defects': sum(len(p.defects) for p in m.walk()),
    'ascii_only': all(b < 128 for b in raw),
}))
)PY");
    const std::string command = std::string(kPython) + " " + script.string() + " " + eml.string();
    FILE* pipe = popen(command.c_str(), "r");
    REQUIRE(pipe);
    std::string out;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    REQUIRE(pclose(pipe) == 0);
    return nlohmann::json::parse(out);
}

// A TCP listener nobody should connect to: proves "refused without connecting".
class Tripwire {
public:
    Tripwire() {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 4) != 0 ||
            getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("tripwire listener failed");
        port_ = ntohs(a.sin_port);
    }
    Tripwire(const Tripwire&) = delete;
    Tripwire& operator=(const Tripwire&) = delete;
    ~Tripwire() { close(fd_); }
    int port() const { return port_; }
    bool touched() const {
        const int c = accept(fd_, nullptr, nullptr);
        if (c >= 0) close(c);
        return c >= 0;
    }

private:
    int fd_ = -1;
    int port_ = 0;
};

// Keeps CREDENTIALS_DIRECTORY and the AWS variables from leaking in from the
// environment the tests run in; restores nothing (the test process owns them).
void clearCredentialEnvironment() {
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}

}  // namespace

TEST_CASE("smtp: RFC 2047 subjects, mailboxes and dates", "[smtp]") {
    using namespace twofactor::channel::smtp;
    CHECK(encodeHeaderText("Your code") == "Your code");
    CHECK(encodeHeaderText("line\r\nBcc: x@y") == "line  Bcc: x@y");  // no header injection
    CHECK(encodeHeaderText("=?UTF-8?B?QQ==?=").rfind("=?UTF-8?B?", 0) == 0);  // look-alikes are encoded

    const std::string encoded = encodeHeaderText(kSubject);
    CHECK(encoded.rfind("=?UTF-8?B?", 0) == 0);
    std::size_t words = 0;
    std::size_t start = 0;
    while (start <= encoded.size()) {
        std::size_t end = encoded.find("\r\n ", start);
        const std::string word = encoded.substr(start, end == std::string::npos ? std::string::npos : end - start);
        INFO(word);
        CHECK(word.size() <= 75);
        CHECK(word.rfind("=?UTF-8?B?", 0) == 0);
        CHECK(word.substr(word.size() - 2) == "?=");
        ++words;
        if (end == std::string::npos) break;
        start = end + 3;
    }
    CHECK(words >= 2);  // the subject is long enough to need folding

    // 44 ASCII bytes then "ä": the chunk boundary falls inside the two-byte
    // sequence, which must move whole into the second word.
    const std::string boundary = std::string(44, 'a') + "ä";
    CHECK(encodeHeaderText(boundary) ==
          "=?UTF-8?B?YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=?=\r\n =?UTF-8?B?w6Q=?=");
    // After "Subject: " the first word must be shorter so its line stays within 76.
    const std::string afterSubject = encodeHeaderText(kSubject, 9);
    CHECK(9 + afterSubject.find("\r\n") <= 76);

    Mailbox m;
    REQUIRE(parseMailbox("Example OTP <no-reply@example.com>", m));
    CHECK(m.display == "Example OTP");
    CHECK(m.address == "no-reply@example.com");
    REQUIRE(parseMailbox("  no-reply@example.com ", m));
    CHECK(m.display.empty());
    CHECK(m.address == "no-reply@example.com");
    REQUIRE(parseMailbox("\"Support, Inc.\" <help@example.com>", m));
    CHECK(m.display == "Support, Inc.");
    CHECK(formatMailbox(m) == "\"Support, Inc.\" <help@example.com>");
    CHECK_FALSE(parseMailbox("user@example.com\r\nBcc: victim@example.org", m));
    CHECK_FALSE(parseMailbox("a@b>, <c@d", m));
    CHECK_FALSE(parseMailbox("no-at-sign", m));
    CHECK_FALSE(parseMailbox("Name <>", m));
    CHECK(formatMailbox({"Bücher", "a@b.example"}) == "=?UTF-8?B?QsO8Y2hlcg==?= <a@b.example>");
    CHECK(formatMailbox({"", "a@b.example"}) == "a@b.example");

    CHECK(rfc5322Date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(rfc5322Date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000");
}

TEST_CASE("smtp: delivers a multipart/alternative message over STARTTLS", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server;
    REQUIRE(server.port() > 0);
    SmtpChannel channel(smtpConfig(server.url()));
    CHECK(channel.driverName() == "smtp");

    const DeliveryResult r = deliverOnce(channel, otpMessage("alice@example.org"));
    REQUIRE(r.outcome == DeliveryOutcome::Accepted);
    CHECK(r.statusCode == 250);
    CHECK(r.errorClass.empty());
    CHECK_FALSE(r.ambiguous);

    const auto stored = server.messages();
    REQUIRE(stored.size() == 1);
    const auto envelope = nlohmann::json::parse(readFile(fs::path(stored[0]).replace_extension(".env")));
    CHECK(envelope["mail_from"] == "no-reply@books.example.com");  // the bare address
    CHECK(envelope["rcpt_tos"] == nlohmann::json::array({"alice@example.org"}));
    CHECK(envelope["tls"] == true);

    const auto msg = parseMessage(stored[0]);
    INFO(msg.dump(2));
    CHECK(msg["defects"] == 0);
    CHECK(msg["ascii_only"] == true);  // encoded for any relay, 8BITMIME or not
    CHECK(msg["content_type"] == "multipart/alternative");
    CHECK(msg["subject"] == kSubject);
    for (const auto& line : msg["raw_subject_lines"]) CHECK(line.get<std::string>().size() <= 76);
    CHECK(msg["from_display"] == "Bücher & Co.");
    CHECK(msg["from_addr"] == "no-reply@books.example.com");
    CHECK(msg["to"] == "alice@example.org");
    CHECK(msg["date_utc"] == true);
    CHECK(msg["date_age"].get<double>() < 300);
    CHECK(msg["auto_submitted"] == "auto-generated");
    CHECK(msg["mime_version"] == "1.0");
    const std::string messageId = msg["message_id"];
    CHECK(messageId == r.providerMessageId);
    CHECK(messageId.size() > 20);
    CHECK(messageId.front() == '<');
    CHECK(messageId.size() > std::string("@books.example.com>").size());
    CHECK(messageId.substr(messageId.size() - std::string("@books.example.com>").size()) == "@books.example.com>");

    REQUIRE(msg["parts"].size() == 2);
    CHECK(msg["parts"][0]["type"] == "text/plain");
    CHECK(msg["parts"][1]["type"] == "text/html");
    for (const auto& part : msg["parts"]) {
        CHECK(part["charset"] == "utf-8");
        CHECK(part["disposition"].is_null());  // inline, not an attachment
        CHECK(part["content"].get<std::string>().find(kCode) != std::string::npos);
    }
    CHECK(msg["parts"][0]["content"].get<std::string>().find("gültig") != std::string::npos);

    // A second message on the same channel: fresh Message-ID, pooled handle reused.
    const DeliveryResult again = deliverOnce(channel, otpMessage("bob@example.org"));
    CHECK(again.outcome == DeliveryOutcome::Accepted);
    CHECK(again.providerMessageId != r.providerMessageId);
    CHECK(server.messages().size() == 2);
}

TEST_CASE("smtp: a text-only message carries a single text part", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server;
    REQUIRE(server.port() > 0);
    auto cfg = smtpConfig(server.url());
    config::App app;
    app.emailFrom = "Shop <otp@shop.example.net>";  // the app's sender wins over [smtp] from
    Message m = otpMessage("carol@example.org", false);
    m.appConfig = &app;
    SmtpChannel channel(cfg);
    const DeliveryResult r = deliverOnce(channel, std::move(m));
    REQUIRE(r.outcome == DeliveryOutcome::Accepted);
    const auto stored = server.messages();
    REQUIRE(stored.size() == 1);
    const auto msg = parseMessage(stored[0]);
    INFO(msg.dump(2));
    CHECK(msg["defects"] == 0);
    REQUIRE(msg["parts"].size() == 1);
    CHECK(msg["parts"][0]["type"] == "text/plain");
    CHECK(msg["parts"][0]["content"].get<std::string>().find(kCode) != std::string::npos);
    CHECK(msg["from_addr"] == "otp@shop.example.net");
    CHECK(r.providerMessageId.find("@shop.example.net>") != std::string::npos);
}

TEST_CASE("smtp: AUTH with the right password works, a wrong one is a configuration error", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server({true, "otp-sender", "correct horse"});
    REQUIRE(server.port() > 0);
    TempDir dir;

    SECTION("password file") {
        auto cfg = smtpConfig(server.url());
        cfg.smtp.username = "otp-sender";
        cfg.smtp.passwordFile = (dir.path / "smtp-password").string();
        writeFile(cfg.smtp.passwordFile, "correct horse\n");
        SmtpChannel channel(cfg);
        const DeliveryResult r = deliverOnce(channel, otpMessage("dave@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Accepted);
        REQUIRE(server.messages().size() == 1);
        const auto envelope = nlohmann::json::parse(readFile(fs::path(server.messages()[0]).replace_extension(".env")));
        CHECK(envelope["authenticated"] == true);
    }
    SECTION("the systemd credential wins over the file") {
        const fs::path creds = dir.path / "creds";
        fs::create_directory(creds);
        writeFile(creds / "smtp-password", "correct horse");
        setenv("CREDENTIALS_DIRECTORY", creds.c_str(), 1);
        auto cfg = smtpConfig(server.url());
        cfg.smtp.username = "otp-sender";
        cfg.smtp.passwordFile = (dir.path / "stale-password").string();
        writeFile(cfg.smtp.passwordFile, "stale");
        SmtpChannel channel(cfg);
        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK(deliverOnce(channel, otpMessage("dave@example.org")).outcome == DeliveryOutcome::Accepted);
    }
    SECTION("wrong password") {
        auto cfg = smtpConfig(server.url());
        cfg.smtp.username = "otp-sender";
        cfg.smtp.passwordFile = (dir.path / "smtp-password").string();
        writeFile(cfg.smtp.passwordFile, "battery staple");
        SmtpChannel channel(cfg);
        const DeliveryResult r = deliverOnce(channel, otpMessage("dave@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.errorClass == "config");
        CHECK(r.statusCode == 535);
        CHECK(r.error.find("battery") == std::string::npos);  // never the password
        CHECK(server.messages().empty());
    }
    SECTION("no AUTH configured against a server that requires it") {
        SmtpChannel channel(smtpConfig(server.url()));
        const DeliveryResult r = deliverOnce(channel, otpMessage("dave@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.errorClass == "config");
        CHECK(r.statusCode == 530);
        CHECK(server.messages().empty());
    }
    SECTION("a user name without any password stops the constructor") {
        auto cfg = smtpConfig(server.url());
        cfg.smtp.username = "otp-sender";
        CHECK_THROWS_WITH(SmtpChannel(cfg), Catch::Contains("smtp-password") && Catch::Contains("password_file"));
    }
}

TEST_CASE("smtp: the SES SMTP password is derived from the AWS secret key", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server({true, "AKIDEXAMPLE", kSesPassword});
    REQUIRE(server.port() > 0);
    TempDir dir;
    auto cfg = smtpConfig(server.url());
    cfg.smtp.sesRegion = "us-east-1";  // no username: the access key id is used
    cfg.ses.accessKeyIdFile = (dir.path / "akid").string();
    cfg.ses.secretAccessKeyFile = (dir.path / "secret").string();
    writeFile(cfg.ses.accessKeyIdFile, "AKIDEXAMPLE\n");
    writeFile(cfg.ses.secretAccessKeyFile, std::string(kSesSecret) + "\n");
    SmtpChannel channel(cfg);
    const DeliveryResult r = deliverOnce(channel, otpMessage("erin@example.org"));
    CHECK(r.outcome == DeliveryOutcome::Accepted);
    CHECK(server.messages().size() == 1);

    // Another region derives another password, which the server refuses.
    cfg.smtp.sesRegion = "eu-west-1";
    SmtpChannel wrongRegion(cfg);
    const DeliveryResult refused = deliverOnce(wrongRegion, otpMessage("erin@example.org"));
    CHECK(refused.outcome == DeliveryOutcome::Permanent);
    CHECK(refused.errorClass == "config");
    CHECK(refused.error.find(kSesPassword) == std::string::npos);
}

TEST_CASE("smtp: replies map to outcomes", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server;
    REQUIRE(server.port() > 0);
    SmtpChannel channel(smtpConfig(server.url()));

    SECTION("451 rate limited is retryable throttling") {
        const DeliveryResult r = deliverOnce(channel, otpMessage("tempfail@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Retryable);
        CHECK(r.statusCode == 451);
        CHECK(r.errorClass == "throttled");
        CHECK(r.error.find("rate limited") != std::string::npos);
        CHECK_FALSE(r.ambiguous);
    }
    SECTION("550 is permanent") {
        const DeliveryResult r = deliverOnce(channel, otpMessage("reject@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.statusCode == 550);
        CHECK(r.errorClass == "rejected");
        CHECK(r.error.find("no such user") != std::string::npos);
    }
    SECTION("a timeout after the body was sent is ambiguous") {
        auto cfg = smtpConfig(server.url());
        cfg.smtp.timeout = std::chrono::seconds(1);
        const auto started = std::chrono::steady_clock::now();
        {
            SmtpChannel impatient(cfg);
            const DeliveryResult r = deliverOnce(impatient, otpMessage("stall@example.org"));
            CHECK(r.outcome == DeliveryOutcome::Retryable);
            CHECK(r.errorClass == "timeout");
            CHECK(r.statusCode == 354);
            CHECK(r.ambiguous);
            CHECK(r.duration < std::chrono::seconds(5));
            // The stalled connection must not be reused: the server's late
            // reply would be taken for the next message's.
            const DeliveryResult next = deliverOnce(impatient, otpMessage("judy@example.org"));
            CHECK(next.outcome == DeliveryOutcome::Accepted);
        }
        // Nor may closing the channel wait for the stalled server (curl's QUIT).
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
        const auto stored = server.messages();
        REQUIRE_FALSE(stored.empty());
        const auto envelope = nlohmann::json::parse(readFile(fs::path(stored[0]).replace_extension(".env")));
        CHECK(envelope["rcpt_tos"] == nlohmann::json::array({"judy@example.org"}));
        return;  // the stalled message may still arrive; the check below is for the others
    }
    SECTION("nothing listening is a retryable network failure") {
        auto cfg = smtpConfig("smtp://127.0.0.1:1");
        SmtpChannel nowhere(cfg);
        const DeliveryResult r = deliverOnce(nowhere, otpMessage("frank@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Retryable);
        CHECK(r.errorClass == "network");
        CHECK(r.statusCode == 0);
        CHECK_FALSE(r.ambiguous);
    }
    CHECK(server.messages().empty());
}

TEST_CASE("smtp: never sends in clear when TLS is required", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server({false, "", ""});
    REQUIRE(server.port() > 0);

    SECTION("STARTTLS missing") {
        SmtpChannel channel(smtpConfig(server.url()));
        const DeliveryResult r = deliverOnce(channel, otpMessage("grace@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.errorClass == "config");
        CHECK(server.messages().empty());
    }
    SECTION("require_tls = false lets the operator opt out") {
        auto cfg = smtpConfig(server.url());
        cfg.smtp.requireTls = false;
        SmtpChannel channel(cfg);
        CHECK(deliverOnce(channel, otpMessage("grace@example.org")).outcome == DeliveryOutcome::Accepted);
        CHECK(server.messages().size() == 1);
    }
}

TEST_CASE("smtp: a certificate from another CA is refused", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    MockServer server;
    REQUIRE(server.port() > 0);
    auto cfg = smtpConfig(server.url());
    cfg.tls.caBundle = pki().otherCa.string();
    SmtpChannel channel(cfg);
    const DeliveryResult r = deliverOnce(channel, otpMessage("heidi@example.org"));
    CHECK(r.outcome == DeliveryOutcome::Permanent);
    CHECK(r.errorClass == "config");
    CHECK(server.messages().empty());

    // smtps:// against a STARTTLS port: the TLS handshake fails, nothing is sent.
    SmtpChannel implicitTls(smtpConfig(server.url("smtps")));
    const DeliveryResult implicit = deliverOnce(implicitTls, otpMessage("heidi@example.org"));
    CHECK(implicit.outcome == DeliveryOutcome::Permanent);
    CHECK(implicit.errorClass == "config");
    CHECK(server.messages().empty());
}

TEST_CASE("smtp: refusals that never connect", "[smtp]") {
    requireEnvironment();
    clearCredentialEnvironment();
    Tripwire tripwire;
    const std::string hostPort = "127.0.0.1:" + std::to_string(tripwire.port());

    SECTION("a scheme other than smtp/smtps") {
        for (const std::string scheme : {"http", "https", "file", "imap"}) {
            SmtpChannel channel(smtpConfig(scheme + "://" + hostPort));
            const DeliveryResult r = deliverOnce(channel, otpMessage("ivan@example.org"));
            CHECK(r.outcome == DeliveryOutcome::Permanent);
            CHECK(r.errorClass == "config");
            CHECK(r.statusCode == 0);
        }
    }
    SECTION("an expired request") {
        SmtpChannel channel(smtpConfig("smtp://" + hostPort));
        Message m = otpMessage("ivan@example.org");
        m.expiresAt = static_cast<std::int64_t>(std::time(nullptr)) - 1;
        const DeliveryResult r = deliverOnce(channel, std::move(m));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.errorClass == "expired");
    }
    SECTION("a destination that would inject a second recipient or header") {
        SmtpChannel channel(smtpConfig("smtp://" + hostPort));
        for (const std::string bad : {"a@example.org>, <b@example.org", "a@example.org\r\nBcc: b@example.org",
                                      "Name <a@example.org>", "not-an-address"}) {
            const DeliveryResult r = deliverOnce(channel, otpMessage(bad));
            CHECK(r.outcome == DeliveryOutcome::Permanent);
            CHECK(r.errorClass == "rejected");
        }
    }
    SECTION("no sender configured") {
        auto cfg = smtpConfig("smtp://" + hostPort);
        cfg.smtp.from.clear();
        SmtpChannel channel(cfg);
        const DeliveryResult r = deliverOnce(channel, otpMessage("ivan@example.org"));
        CHECK(r.outcome == DeliveryOutcome::Permanent);
        CHECK(r.errorClass == "config");
    }
    CHECK_FALSE(tripwire.touched());
}
