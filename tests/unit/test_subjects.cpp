// GDPR answers about one subject (lib/privacy/subjects.hpp): recipients come
// from what each delivery attempt recorded (provider, region) when it was
// made, not from the configuration now; the export names the controller and
// holds the subject's entries in the register of requests.
#include "privacy/subjects.hpp"

#include "config/config.hpp"
#include "otp/recipient.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <future>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

// Accepts every message as the SES driver would.
class SesLikeChannel final : public channel::Channel {
public:
    std::string driverName() const override { return "ses"; }
    void deliver(channel::Message, Done done) override {
        channel::DeliveryResult r;
        r.driver = "ses";
        r.outcome = channel::DeliveryOutcome::Accepted;
        r.providerMessageId = "ses-" + std::to_string(++sent);
        done(std::move(r));
    }
    int sent = 0;
};

struct Fixture {
    fs::path dir;
    config::Config cfg;
    ManualClock clock{1'800'000'000};
    SesLikeChannel channel;
    SecretBytes pepper = crypto::randomSecret(32);
    std::unique_ptr<store::Store> store;
    std::unique_ptr<otp::OtpService> service;

    Fixture() {
        char tmpl[] = "/tmp/tf-subjects-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        cfg.drivers["email"] = "ses";
        cfg.ses.region = "us-east-1";
        cfg.apps["default"].sesRegion = "eu-central-1";  // the app sends from Frankfurt
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = crypto::randomSecret(32);
        store = store::openSqlcipherStore(std::move(o));
        service = std::make_unique<otp::OtpService>(
            cfg, *store, std::map<std::string, channel::Channel*>{{"email", &channel}}, clock, pepper.clone(),
            [](std::function<void()> f) { f(); }, [](std::chrono::milliseconds, std::function<void()>) {});
    }
    ~Fixture() {
        service.reset();
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
    void send(const std::string& to) {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        in.caller.uid = 1234;
        auto o = wait<otp::SendResult>([&](auto cb) { service->send(std::move(in), cb); });
        REQUIRE(std::holds_alternative<otp::SendResult>(o));
    }
    nlohmann::json exportOf(const config::Config& config, const std::string& subject) {
        privacy::SubjectService subjects(config, *service);
        auto o = wait<privacy::ExportResult>(
            [&](auto cb) { subjects.exportData(subject, privacy::RequestContext{1234, std::nullopt}, cb); });
        REQUIRE(std::holds_alternative<privacy::ExportResult>(o));
        return std::get<privacy::ExportResult>(o).document;
    }
};

}  // namespace

TEST_CASE("a delivery attempt records who received the address", "[subjects]") {
    config::Config cfg = config::embeddedDefault();
    cfg.ses.region = "us-east-1";
    cfg.apps["default"].sesRegion = "eu-central-1";
    cfg.apps["other"] = cfg.apps["default"];
    cfg.apps["other"].sesRegion.clear();
    cfg.smtp.url = "smtp://relay.example.net:587";
    CHECK(otp::deliveryRecipient(cfg, "default", "ses").region == "eu-central-1");
    CHECK(otp::deliveryRecipient(cfg, "other", "ses").region == "us-east-1");
    CHECK(otp::deliveryRecipient(cfg, "default", "ses").provider == "aws-ses");
    CHECK(otp::deliveryRecipient(cfg, "default", "smtp").provider == "relay.example.net");
    CHECK(otp::deliveryRecipient(cfg, "default", "whatsapp").provider == "meta");
}

TEST_CASE_METHOD(Fixture, "recipients are what the attempts recorded, after a config change too", "[subjects]") {
    send("frankfurt@example.org");
    const auto attempts = store::runSync(*store, [](store::Transaction& t) { return t.findDeliveryAttempts({}); });
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].provider == "aws-ses");
    CHECK(attempts[0].region == "eu-central-1");

    // Later the app moves to the global region; what happened stays as it was.
    config::Config changed = cfg;
    changed.apps["default"].sesRegion.clear();
    changed.ses.region = "eu-west-1";
    const auto doc = exportOf(changed, "frankfurt@example.org");
    const auto& recipients = doc["context"]["recipients"];
    REQUIRE(recipients.size() == 1);
    CHECK(recipients[0]["region"] == "eu-central-1");
    CHECK(recipients[0]["country"].get<std::string>().find("Germany") != std::string::npos);
    CHECK(recipients[0]["name"].get<std::string>().find("Amazon SES") != std::string::npos);
    CHECK(doc.dump().find("us-east-1") == std::string::npos);
    CHECK(recipients.dump().find("Meta") == std::string::npos);  // nothing went to WhatsApp
}

TEST_CASE_METHOD(Fixture, "the export names the controller and holds the subject's register entries", "[subjects]") {
    send("register.me@example.org");
    SECTION("controller configured") {
        config::Config withController = cfg;
        withController.privacy = {"Example GmbH, Hauptstr. 1, 10115 Berlin", "privacy@example.org", "dpo@example.org"};
        const auto doc = exportOf(withController, "register.me@example.org");
        const auto& c = doc["context"]["controller"];
        CHECK(c["name"] == "Example GmbH, Hauptstr. 1, 10115 Berlin");
        CHECK(c["contact"] == "privacy@example.org");
        CHECK(c["dpo"] == "dpo@example.org");
    }
    SECTION("controller missing: named as missing, not as placeholder text") {
        const auto doc = exportOf(cfg, "register.me@example.org");
        CHECK(doc["context"]["controller"]["name"].is_null());
        CHECK(doc["context"]["controller"]["contact"].is_null());
    }
    SECTION("register entries") {
        privacy::SubjectService subjects(cfg, *service);
        auto reg = wait<store::PrivacyRequest>([&](auto cb) {
            subjects.registerRequest("delete", "register.me@example.org", "letter of 3 Jan",
                                     privacy::RequestContext{1234, clock.now() - 86400}, cb);
        });
        REQUIRE(std::holds_alternative<store::PrivacyRequest>(reg));
        // Another subject's entry stays out of this one's export.
        auto other = wait<store::PrivacyRequest>([&](auto cb) {
            subjects.registerRequest("export", "someone.else@example.org", "", privacy::RequestContext{1234, {}}, cb);
        });
        REQUIRE(std::holds_alternative<store::PrivacyRequest>(other));
        const auto doc = exportOf(cfg, "register.me@example.org");
        const auto& entries = doc["data"]["privacyRequests"];
        REQUIRE(entries.size() == 2);  // the delete registered, and this export, completed
        CHECK(entries[0]["kind"] == "delete");
        CHECK(entries[0]["note"] == "letter of 3 Jan");
        CHECK(entries[0]["completed"].is_null());
        CHECK(entries[0]["due"] == clock.now() - 86400 + privacy::kAnswerWithin);
        CHECK(entries[1]["kind"] == "export");
        CHECK(entries[1]["completed"] == clock.now());
    }
}
