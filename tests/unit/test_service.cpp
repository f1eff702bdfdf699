#include "config/config.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher_store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <future>
#include <regex>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

// Records what it is given, as a provider would receive it.
class RecordingChannel final : public channel::Channel {
public:
    std::string driverName() const override { return "recording"; }
    void deliver(channel::Message m, Done done) override {
        std::lock_guard lock(mutex);
        texts.push_back(m.text.str());
        codes.push_back(m.code.str());
        channel::DeliveryResult r;
        r.driver = "recording";
        r.outcome = fail ? channel::DeliveryOutcome::Permanent : channel::DeliveryOutcome::Accepted;
        if (fail) r.error = "mailbox unavailable";
        done(std::move(r));
    }
    std::mutex mutex;
    std::vector<std::string> texts, codes;
    bool fail = false;
};

struct Fixture {
    fs::path dir;
    config::Config cfg;
    ManualClock clock{1'800'000'000};
    RecordingChannel channel;
    std::unique_ptr<store::Store> store;
    std::unique_ptr<otp::OtpService> service;

    Fixture() {
        char tmpl[] = "/tmp/tf-service-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = crypto::randomSecret(32);
        store = store::openSqlcipherStore(std::move(o));
        service = std::make_unique<otp::OtpService>(cfg, *store,
                                                    std::map<std::string, channel::Channel*>{{"email", &channel},
                                                                                             {"whatsapp", &channel}},
                                                    clock, crypto::randomSecret(32),
                                                    [](std::function<void()> f) { f(); });
    }
    ~Fixture() {
        store->close();
        fs::remove_all(dir);
    }

    template <typename T, typename F>
    otp::Outcome<T> wait(F&& start) {
        std::promise<otp::Outcome<T>> p;
        auto f = p.get_future();
        start([&](otp::Outcome<T> o) { p.set_value(std::move(o)); });
        return f.get();
    }
    otp::Outcome<otp::OtpRequest> send(otp::SendInput in) {
        return wait<otp::OtpRequest>([&](auto cb) { service->send(std::move(in), cb); });
    }
    otp::OtpRequest sendOk(const std::string& to, std::optional<std::int64_t> ttl = std::nullopt) {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        in.ttl = ttl;
        auto o = send(std::move(in));
        REQUIRE(std::holds_alternative<otp::OtpRequest>(o));
        return std::get<otp::OtpRequest>(o);
    }
    otp::VerifyResult verify(const std::string& id, const std::string& code) {
        otp::VerifyInput in;
        in.id = id;
        in.code = SecretString(code);
        auto o = wait<otp::VerifyResult>([&](auto cb) { service->verify(std::move(in), cb); });
        REQUIRE(std::holds_alternative<otp::VerifyResult>(o));
        return std::get<otp::VerifyResult>(o);
    }
    std::string lastCode() {
        std::lock_guard lock(channel.mutex);
        return channel.codes.back();
    }
    static std::string wrong(const std::string& code) {
        std::string w = code;
        w[0] = w[0] == '9' ? '0' : static_cast<char>(w[0] + 1);
        return w;
    }
};

std::string failure(const otp::Outcome<otp::OtpRequest>& o) {
    const auto* f = std::get_if<otp::Failure>(&o);
    return f ? f->error : "";
}

}  // namespace

TEST_CASE_METHOD(Fixture, "send delivers a rendered code that verifies once", "[service]") {
    const auto r = sendOk("user@example.org");
    CHECK(r.status == otp::Status::Pending);
    CHECK(r.channel == "email");
    const std::string code = lastCode();
    CHECK(std::regex_match(code, std::regex("[0-9]{6}")));
    CHECK(channel.texts.back().find(code) != std::string::npos);
    CHECK(channel.texts.back().find("10 minutes") != std::string::npos);
    auto v = verify(r.id, code);
    CHECK(v.approved);
    CHECK(v.status == otp::Status::Approved);
    v = verify(r.id, code);
    CHECK_FALSE(v.approved);
    CHECK(v.status == otp::Status::Approved);
}

TEST_CASE_METHOD(Fixture, "wrong codes count and lock the request after five", "[service]") {
    const auto r = sendOk("user@example.org");
    const std::string code = lastCode();
    for (int i = 1; i <= 4; ++i) {
        auto v = verify(r.id, wrong(code));
        CHECK(v.status == otp::Status::Pending);
        CHECK(v.request->attempts == i);
    }
    CHECK(verify(r.id, wrong(code)).status == otp::Status::Locked);
    auto v = verify(r.id, code);
    CHECK_FALSE(v.approved);
    CHECK(v.status == otp::Status::Locked);
}

TEST_CASE_METHOD(Fixture, "a code verifies at TTL-1 and is expired at TTL", "[service]") {
    const auto a = sendOk("a@example.org", 120);
    const auto codeA = lastCode();
    const auto b = sendOk("b@example.org", 120);
    const auto codeB = lastCode();
    clock.advance(119);
    CHECK(verify(a.id, codeA).approved);
    clock.advance(1);
    auto v = verify(b.id, codeB);
    CHECK_FALSE(v.approved);
    CHECK(v.status == otp::Status::Expired);
}

TEST_CASE_METHOD(Fixture, "resend replaces the code, keeps attempts, and is capped", "[service]") {
    const auto r = sendOk("user@example.org");
    const std::string first = lastCode();
    CHECK_FALSE(verify(r.id, wrong(first)).approved);
    auto o = wait<otp::OtpRequest>([&](auto cb) { service->resend(r.id, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(o));
    CHECK(std::get<otp::OtpRequest>(o).attempts == 1);
    CHECK(std::get<otp::OtpRequest>(o).sends == 2);
    const std::string second = lastCode();
    if (first != second) CHECK_FALSE(verify(r.id, first).approved);
    for (int i = 0; i < 3; ++i) {
        auto again = wait<otp::OtpRequest>([&](auto cb) { service->resend(r.id, cb); });
        REQUIRE(std::holds_alternative<otp::OtpRequest>(again));
    }
    auto capped = wait<otp::OtpRequest>([&](auto cb) { service->resend(r.id, cb); });
    CHECK(failure(capped) == "TooManySends");
    CHECK(verify(r.id, lastCode()).approved);
}

TEST_CASE_METHOD(Fixture, "cancel ends a request; status reports it", "[service]") {
    const auto r = sendOk("user@example.org");
    auto c = wait<otp::OtpRequest>([&](auto cb) { service->cancel(r.id, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(c));
    CHECK(std::get<otp::OtpRequest>(c).status == otp::Status::Canceled);
    CHECK(verify(r.id, lastCode()).status == otp::Status::Canceled);
    auto again = wait<otp::OtpRequest>([&](auto cb) { service->cancel(r.id, cb); });
    CHECK(failure(again) == "NotPending");
    auto missing = wait<otp::OtpRequest>([&](auto cb) { service->status("nope", cb); });
    CHECK(failure(missing) == "NoSuchRequest");
}

TEST_CASE_METHOD(Fixture, "verify by app and destination finds the newest pending request", "[service]") {
    (void)sendOk("+49 151 12345678");
    const auto newer = sendOk("+4915112345678");
    CHECK(newer.channel == "whatsapp");
    otp::VerifyInput in;
    in.app = "default";
    in.destination = "+49 (151) 1234-5678";
    in.code = SecretString(lastCode());
    auto o = wait<otp::VerifyResult>([&](auto cb) { service->verify(std::move(in), cb); });
    REQUIRE(std::holds_alternative<otp::VerifyResult>(o));
    CHECK(std::get<otp::VerifyResult>(o).approved);
    CHECK(std::get<otp::VerifyResult>(o).request->id == newer.id);
}

TEST_CASE_METHOD(Fixture, "bad input is refused with a named error and nothing is sent", "[service]") {
    auto make = [](std::string to) {
        otp::SendInput in;
        in.app = "default";
        in.destination = std::move(to);
        return in;
    };
    CHECK(failure(send(make("nobody"))) == "InvalidDestination");
    auto in = make("a@example.org");
    in.app = "missing";
    CHECK(failure(send(std::move(in))) == "NoSuchApp");
    in = make("a@example.org");
    in.ttl = 10;
    CHECK(failure(send(std::move(in))) == "OutOfRange");
    in = make("a@example.org");
    in.length = 11;
    CHECK(failure(send(std::move(in))) == "OutOfRange");
    in = make("a@example.org");
    in.channel = "whatsapp";
    CHECK(failure(send(std::move(in))) == "InvalidDestination");
    in = make("a@example.org");
    in.clientIp = "300.0.0.1";
    CHECK(failure(send(std::move(in))) == "org.varlink.service.InvalidParameter");
    CHECK(channel.codes.empty());
}

TEST_CASE_METHOD(Fixture, "a failed delivery marks the request failed", "[service]") {
    channel.fail = true;
    otp::SendInput in;
    in.app = "default";
    in.destination = "a@example.org";
    auto o = send(std::move(in));
    REQUIRE(failure(o) == "DeliveryFailed");
    const std::string id = std::get<otp::Failure>(o).parameters["id"];
    auto st = wait<otp::OtpRequest>([&](auto cb) { service->status(id, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(st));
    CHECK(std::get<otp::OtpRequest>(st).status == otp::Status::Failed);
    CHECK(std::get<otp::OtpRequest>(st).failure == "mailbox unavailable");
}

TEST_CASE_METHOD(Fixture, "subject hashes are keyed and stable", "[service]") {
    CHECK(service->subjectHash("a@example.org") == service->subjectHash("a@example.org"));
    CHECK(service->subjectHash("a@example.org") != service->subjectHash("b@example.org"));
    CHECK(service->subjectHash("a@example.org") != crypto::hex(crypto::sha256("a@example.org")));
}
