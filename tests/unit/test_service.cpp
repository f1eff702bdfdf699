#include "config/config.hpp"
#include "otp/service.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <condition_variable>
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
        channel::DeliveryResult r;
        {
            std::lock_guard lock(mutex);
            texts.push_back(m.text.str());
            codes.push_back(m.code.str());
            r.driver = "recording";
            r.outcome = channel::DeliveryOutcome::Accepted;
            r.providerMessageId = "msg-" + std::to_string(codes.size());
            if (transientFailures > 0) {
                --transientFailures;
                r.outcome = channel::DeliveryOutcome::Retryable;
                r.errorClass = "throttled";
                r.statusCode = 429;
                r.error = "TooManyRequestsException: slow down, " + m.destination;
            } else if (ioError) {  // as the outbox reports a full disk
                r.outcome = channel::DeliveryOutcome::Permanent;
                r.errorClass = "io";
                r.error = "cannot create a file in /var/lib/twofactor/outbox/tmp: No space left on device";
            } else if (fail) {
                r.outcome = channel::DeliveryOutcome::Permanent;
                r.errorClass = "rejected";
                r.error = "mailbox unavailable";
            }
        }
        done(std::move(r));
    }
    std::mutex mutex;
    std::vector<std::string> texts, codes;
    bool fail = false;
    bool ioError = false;
    int transientFailures = 0;
};

// Delayed tasks wait here until a test runs them.
struct ManualScheduler {
    std::mutex mutex;
    std::condition_variable added;
    std::vector<std::pair<std::chrono::milliseconds, std::function<void()>>> tasks;

    void push(std::chrono::milliseconds d, std::function<void()> f) {
        {
            std::lock_guard lock(mutex);
            tasks.emplace_back(d, std::move(f));
        }
        added.notify_all();
    }
    // Runs queued tasks shorter than `below` (retries), leaving longer ones
    // (send_wait), until none has turned up for a while: a retry is queued
    // only after the store's writer thread answered.
    int runBelow(std::chrono::milliseconds below) {
        int n = 0;
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lock(mutex);
                auto pick = [&] { return std::find_if(tasks.begin(), tasks.end(), [&](auto& t) { return t.first < below; }); };
                if (!added.wait_for(lock, std::chrono::milliseconds(500), [&] { return pick() != tasks.end(); }))
                    return n;
                auto it = pick();
                job = std::move(it->second);
                tasks.erase(it);
            }
            job();
            ++n;
        }
    }
};

struct Fixture {
    fs::path dir;
    config::Config cfg;
    ManualClock clock{1'800'000'000};
    RecordingChannel channel;
    ManualScheduler scheduler;
    std::unique_ptr<store::Store> store;
    std::unique_ptr<otp::OtpService> service;

    Fixture() {
        char tmpl[] = "/tmp/tf-service-XXXXXX";
        dir = ::mkdtemp(tmpl);
        cfg = config::embeddedDefault();
        cfg.retry.sendWait = std::chrono::seconds(300);
        store::SqlcipherOptions o;
        o.path = (dir / "t.db").string();
        o.key = crypto::randomSecret(32);
        store = store::openSqlcipherStore(std::move(o));
        service = std::make_unique<otp::OtpService>(cfg, *store,
                                                    std::map<std::string, channel::Channel*>{{"email", &channel},
                                                                                             {"whatsapp", &channel}},
                                                    clock, crypto::randomSecret(32),
                                                    [](std::function<void()> f) { f(); },
                                                    [this](std::chrono::milliseconds d, std::function<void()> f) {
                                                        scheduler.push(d, std::move(f));
                                                    });
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
    otp::Outcome<otp::SendResult> send(otp::SendInput in) {
        return wait<otp::SendResult>([&](auto cb) { service->send(std::move(in), cb); });
    }
    otp::OtpRequest sendOk(const std::string& to, std::optional<std::int64_t> ttl = std::nullopt) {
        otp::SendInput in;
        in.app = "default";
        in.destination = to;
        in.ttl = ttl;
        auto o = send(std::move(in));
        REQUIRE(std::holds_alternative<otp::SendResult>(o));
        CHECK(std::get<otp::SendResult>(o).delivery == otp::DeliveryState::Accepted);
        return std::get<otp::SendResult>(o).request;
    }
    std::vector<otp::DeliveryAttempt> log(const std::string& id) {
        otp::DeliveryQuery q;
        q.requestId = id;
        auto o = wait<std::vector<otp::DeliveryAttempt>>([&](auto cb) { service->deliveries(q, cb); });
        REQUIRE(std::holds_alternative<std::vector<otp::DeliveryAttempt>>(o));
        return std::get<std::vector<otp::DeliveryAttempt>>(o);
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

template <typename T>
std::string failure(const otp::Outcome<T>& o) {
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
    clock.advance(30);  // past the resend cooldown
    auto o = wait<otp::SendResult>([&](auto cb) { service->resend(r.id, cb); });
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    CHECK(std::get<otp::SendResult>(o).request.attempts == 1);
    CHECK(std::get<otp::SendResult>(o).request.sends == 2);
    const std::string second = lastCode();
    if (first != second) CHECK_FALSE(verify(r.id, first).approved);
    for (int i = 0; i < 3; ++i) {
        clock.advance(30);
        auto again = wait<otp::SendResult>([&](auto cb) { service->resend(r.id, cb); });
        REQUIRE(std::holds_alternative<otp::SendResult>(again));
    }
    clock.advance(30);
    auto capped = wait<otp::SendResult>([&](auto cb) { service->resend(r.id, cb); });
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
    clock.advance(30);  // past the resend cooldown
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
    const auto attempts = log(id);
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].outcome == "failed");
    CHECK(attempts[0].errorClass == "rejected");
}

TEST_CASE_METHOD(Fixture, "transient failures are retried and logged; the send answers when one is accepted",
                 "[service][delivery]") {
    channel.transientFailures = 2;
    otp::SendInput in;
    in.app = "default";
    in.destination = "retry@example.org";
    std::promise<otp::Outcome<otp::SendResult>> p;
    auto f = p.get_future();
    service->send(std::move(in), [&](otp::Outcome<otp::SendResult> o) { p.set_value(std::move(o)); });
    CHECK(f.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);  // still retrying
    CHECK(scheduler.runBelow(std::chrono::seconds(300)) == 2);
    auto o = f.get();
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    const auto& r = std::get<otp::SendResult>(o);
    CHECK(r.delivery == otp::DeliveryState::Accepted);
    const auto attempts = log(r.request.id);
    REQUIRE(attempts.size() == 3);
    CHECK(attempts[0].outcome == "retry");
    CHECK(attempts[0].statusCode == 429);
    CHECK(attempts[0].error.find("retry@example.org") == std::string::npos);  // scrubbed
    CHECK(attempts[0].error.find("r***@example.org") != std::string::npos);
    CHECK(attempts[1].attempt == 2);
    CHECK(attempts[2].outcome == "accepted");
    CHECK(attempts[2].providerMessageId == "msg-3");
    // The same code each time: retries resend the message, they do not issue new codes.
    CHECK(channel.codes[0] == channel.codes[2]);
    CHECK(verify(r.request.id, channel.codes[2]).approved);
}

TEST_CASE_METHOD(Fixture, "retries stop after max_attempts and fail the request", "[service][delivery]") {
    channel.transientFailures = 100;
    otp::SendInput in;
    in.app = "default";
    in.destination = "down@example.org";
    std::promise<otp::Outcome<otp::SendResult>> p;
    auto f = p.get_future();
    service->send(std::move(in), [&](otp::Outcome<otp::SendResult> o) { p.set_value(std::move(o)); });
    scheduler.runBelow(std::chrono::seconds(300));
    auto o = f.get();
    REQUIRE(failure(o) == "DeliveryFailed");
    CHECK(channel.codes.size() == static_cast<std::size_t>(cfg.retry.maxAttempts));
    const std::string id = std::get<otp::Failure>(o).parameters["id"];
    const auto attempts = log(id);
    REQUIRE(attempts.size() == static_cast<std::size_t>(cfg.retry.maxAttempts));
    CHECK(attempts.back().outcome == "failed");
}

TEST_CASE_METHOD(Fixture, "send_wait answers 'retrying' while retries go on", "[service][delivery]") {
    channel.transientFailures = 1;
    otp::SendInput in;
    in.app = "default";
    in.destination = "slow@example.org";
    std::promise<otp::Outcome<otp::SendResult>> p;
    auto f = p.get_future();
    service->send(std::move(in), [&](otp::Outcome<otp::SendResult> o) { p.set_value(std::move(o)); });
    scheduler.runBelow(std::chrono::hours(1000) /* the send_wait timer comes first in the queue */);
    auto o = f.get();
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    CHECK(std::get<otp::SendResult>(o).delivery == otp::DeliveryState::Retrying);
    // The retry still happened and was accepted.
    CHECK(log(std::get<otp::SendResult>(o).request.id).back().outcome == "accepted");
}

TEST_CASE_METHOD(Fixture, "a resend ends the retries of the old code", "[service][delivery]") {
    channel.transientFailures = 1;
    otp::SendInput in;
    in.app = "default";
    in.destination = "re@example.org";
    in.wait = false;
    auto o = send(std::move(in));
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    CHECK(std::get<otp::SendResult>(o).delivery == otp::DeliveryState::Queued);
    const std::string id = std::get<otp::SendResult>(o).request.id;
    clock.advance(30);  // past the resend cooldown
    auto re = wait<otp::SendResult>([&](auto cb) { service->resend(id, cb); });
    REQUIRE(std::holds_alternative<otp::SendResult>(re));
    const std::size_t before = channel.codes.size();
    scheduler.runBelow(std::chrono::seconds(300));  // the old code's retry finds a newer send
    CHECK(channel.codes.size() == before);
}

TEST_CASE_METHOD(Fixture, "subject hashes are keyed and stable", "[service]") {
    CHECK(service->subjectHash("a@example.org") == service->subjectHash("a@example.org"));
    CHECK(service->subjectHash("a@example.org") != service->subjectHash("b@example.org"));
    CHECK(service->subjectHash("a@example.org") != crypto::hex(crypto::sha256("a@example.org")));
}

namespace {

// A daemon start over the fixture's store and channel: a restart is a second
// one with the same pepper (the key file) and a new holder id.
std::unique_ptr<otp::OtpService> start(Fixture& f, const SecretBytes& pepper) {
    return std::make_unique<otp::OtpService>(
        f.cfg, *f.store, std::map<std::string, channel::Channel*>{{"email", &f.channel}, {"whatsapp", &f.channel}},
        f.clock, pepper.clone(), [](std::function<void()> job) { job(); },
        [&f](std::chrono::milliseconds d, std::function<void()> job) { f.scheduler.push(d, std::move(job)); });
}

// The daemon dies: its timers (the pending retry) go with it.
void crash(Fixture& f) {
    store::runSync(*f.store, [](store::Transaction&) {});  // what it committed stays
    std::lock_guard lock(f.scheduler.mutex);
    f.scheduler.tasks.clear();
}

int sweep(Fixture& f, otp::OtpService& s) {
    std::promise<int> p;
    auto claimed = p.get_future();
    s.sweepDeliveries(64, [&](int n) { p.set_value(n); });
    const int n = claimed.get();
    store::runSync(*f.store, [](store::Transaction&) {});  // the takeovers' delivery log
    return n;
}

std::string queuedSend(Fixture& f, otp::OtpService& s, const std::string& to) {
    otp::SendInput in;
    in.app = "default";
    in.destination = to;
    in.wait = false;
    auto o = f.wait<otp::SendResult>([&](auto cb) { s.send(std::move(in), cb); });
    REQUIRE(std::holds_alternative<otp::SendResult>(o));
    return std::get<otp::SendResult>(o).request.id;
}

}  // namespace

TEST_CASE_METHOD(Fixture, "a send's job outlives a crash: the next start delivers a fresh code, once",
                 "[service][jobs]") {
    const SecretBytes pepper = crypto::randomSecret(32);
    auto first = start(*this, pepper);
    channel.transientFailures = 1;  // the provider is down for the first try
    const std::string id = queuedSend(*this, *first, "crash@example.org");
    const std::string oldCode = lastCode();
    // While the first start holds the job (its retry is due), its own sweep leaves it alone.
    CHECK(sweep(*this, *first) == 0);
    auto job = wait<std::vector<otp::DeliveryJob>>([&](auto cb) { first->deliveryJobs(id, 10, cb); });
    REQUIRE(std::get<std::vector<otp::DeliveryJob>>(job).size() == 1);
    CHECK(std::get<std::vector<otp::DeliveryJob>>(job)[0].attempts == 1);
    crash(*this);
    first.reset();

    auto second = start(*this, pepper);
    CHECK(second->deliveryHolder() != std::get<std::vector<otp::DeliveryJob>>(job)[0].holder);
    clock.advance(5);  // past the recorded backoff
    CHECK(sweep(*this, *second) == 1);
    REQUIRE(channel.codes.size() == 2);
    const std::string newCode = lastCode();
    // Taken over once: a second sweep and a third start find nothing to deliver.
    CHECK(sweep(*this, *second) == 0);
    CHECK(sweep(*this, *start(*this, pepper)) == 0);
    CHECK(channel.codes.size() == 2);
    auto st = wait<otp::OtpRequest>([&](auto cb) { second->status(id, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(st));
    CHECK(std::get<otp::OtpRequest>(st).sends == 2);  // counted as a send
    CHECK(std::get<otp::OtpRequest>(st).attempts == 0);
    const auto attempts = log(id);
    REQUIRE(attempts.size() == 2);
    CHECK(attempts[1].send == 2);
    CHECK(attempts[1].attempt == 2);  // the tries go on counting
    CHECK(attempts[1].outcome == "accepted");
    // The old code was never stored, so only the fresh one verifies.
    service = std::move(second);
    if (oldCode != newCode) CHECK_FALSE(verify(id, oldCode).approved);
    CHECK(verify(id, newCode).approved);
    auto none = wait<std::vector<otp::DeliveryJob>>([&](auto cb) { service->deliveryJobs(id, 10, cb); });
    CHECK(std::get<std::vector<otp::DeliveryJob>>(none).empty());
}

TEST_CASE_METHOD(Fixture, "jobs end with their request: verified, canceled or expired ones are not delivered",
                 "[service][jobs]") {
    const SecretBytes pepper = crypto::randomSecret(32);
    auto first = start(*this, pepper);
    channel.transientFailures = 3;
    const std::string expiring = queuedSend(*this, *first, "late@example.org");
    const std::string canceled = queuedSend(*this, *first, "cancel@example.org");
    auto c = wait<otp::OtpRequest>([&](auto cb) { first->cancel(canceled, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(c));
    crash(*this);
    first.reset();
    const std::size_t before = channel.codes.size();
    clock.advance(cfg.apps.at("default").ttl.count() + 1);
    auto second = start(*this, pepper);
    CHECK(sweep(*this, *second) == 1);  // the canceled one's job ended with it
    CHECK(channel.codes.size() == before);
    auto st = wait<otp::OtpRequest>([&](auto cb) { second->status(expiring, cb); });
    REQUIRE(std::holds_alternative<otp::OtpRequest>(st));
    CHECK(std::get<otp::OtpRequest>(st).status == otp::Status::Expired);
    auto jobs = wait<std::vector<otp::DeliveryJob>>([&](auto cb) { second->deliveryJobs(std::nullopt, 10, cb); });
    CHECK(std::get<std::vector<otp::DeliveryJob>>(jobs).empty());
}

TEST_CASE_METHOD(Fixture, "a failed write ends the request as failed and names no path", "[service][jobs]") {
    channel.ioError = true;
    otp::SendInput in;
    in.app = "default";
    in.destination = "full@example.org";
    auto o = send(std::move(in));
    REQUIRE(failure(o) == "DeliveryFailed");
    const auto& f = std::get<otp::Failure>(o);
    CHECK(f.message.find("/var/lib") == std::string::npos);
    CHECK(f.message.find("No space left on device") != std::string::npos);
    const std::string id = f.parameters["id"];
    CHECK(log(id).at(0).error == "the message could not be written (No space left on device)");
    auto jobs = wait<std::vector<otp::DeliveryJob>>([&](auto cb) { service->deliveryJobs(id, 10, cb); });
    CHECK(std::get<std::vector<otp::DeliveryJob>>(jobs).empty());
    auto st = wait<otp::OtpRequest>([&](auto cb) { service->status(id, cb); });
    CHECK(std::get<otp::OtpRequest>(st).status == otp::Status::Failed);
}

namespace {

// A store whose queue is always full, as a flood leaves it.
class FullStore final : public store::Store {
public:
    void submit(Work, Done done) override {
        if (done) done(std::make_exception_ptr(store::StoreBusy()));
    }
    void checkpoint(Done done) override {
        if (done) done(std::make_exception_ptr(store::StoreBusy()));
    }
    void close() override {}
    std::string description() const override { return "full"; }
};

}  // namespace

TEST_CASE("a full store queue answers Busy, which the caller may retry, not StoreFailed", "[service][busy]") {
    const config::Config cfg = config::embeddedDefault();
    ManualClock clock{1'800'000'000};
    RecordingChannel channel;
    FullStore full;
    otp::OtpService service(cfg, full, {{"email", &channel}}, clock, crypto::randomSecret(32),
                            [](std::function<void()> f) { f(); }, [](std::chrono::milliseconds, std::function<void()>) {});
    otp::SendInput in;
    in.app = "default";
    in.destination = "busy@example.org";
    std::promise<otp::Outcome<otp::SendResult>> p;
    service.send(std::move(in), [&](otp::Outcome<otp::SendResult> o) { p.set_value(std::move(o)); });
    const auto o = p.get_future().get();
    REQUIRE(std::holds_alternative<otp::Failure>(o));
    CHECK(std::get<otp::Failure>(o).error == "io.twofactor.Daemon.Busy");
    CHECK(channel.codes.empty());  // nothing was sent
}
