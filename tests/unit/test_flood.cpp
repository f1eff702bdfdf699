// What keeps a flood of local calls bounded: denials counted per uid and
// window, and the store's queue that refuses work when full.
#include "server/denials.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/crypto.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <future>
#include <stdexcept>

using namespace twofactor;
namespace fs = std::filesystem;

TEST_CASE("the first denial of a uid is reported at once, the rest counted per window") {
    server::DenialLedger ledger;
    CHECK(ledger.deny(65534, "io.twofactor.Otp.Send"));
    for (int i = 0; i < 41022; ++i) CHECK_FALSE(ledger.deny(65534, "io.twofactor.Otp.Send"));
    CHECK(ledger.deny(1000, "io.twofactor.Audit.List"));
    CHECK_FALSE(ledger.deny(65534, "io.twofactor.Otp.Verify"));

    auto window = ledger.close();
    REQUIRE(window.size() == 1);  // uid 1000 was denied once: reported already
    CHECK(window[0].uid == 65534);
    CHECK(window[0].count == 41023);
    CHECK(window[0].lastMethod == "io.twofactor.Otp.Verify");

    // Still denied in the next window: counted, not reported at once again;
    // uid 1000 had nothing more in the last one, so it is reported afresh.
    CHECK_FALSE(ledger.deny(65534, "io.twofactor.Otp.Send"));
    CHECK(ledger.deny(1000, "io.twofactor.Audit.List"));
    window = ledger.close();
    REQUIRE(window.size() == 1);
    CHECK(window[0].uid == 65534);
    CHECK(window[0].count == 1);

    // A quiet window forgets the uid: its next denial is reported at once.
    CHECK(ledger.close().empty());
    CHECK(ledger.trackedUids() == 0);
    CHECK(ledger.deny(65534, "io.twofactor.Otp.Send"));
}

TEST_CASE("denials of more uids than the ledger tracks are counted together") {
    server::DenialLedger ledger(2);
    CHECK(ledger.deny(1, "m"));
    CHECK(ledger.deny(2, "m"));
    for (uid_t uid = 3; uid < 1003; ++uid) CHECK_FALSE(ledger.deny(uid, "m"));
    CHECK(ledger.trackedUids() == 3);
    const auto window = ledger.close();
    REQUIRE(window.size() == 1);
    CHECK(window[0].uid == server::DenialLedger::kOtherUids);
    CHECK(window[0].count == 1000);
}

TEST_CASE("a count that could not be recorded is carried into the next window") {
    server::DenialLedger ledger;
    CHECK(ledger.deny(7, "m"));
    ledger.carry(7, 1, "m");  // the immediate record failed
    const auto window = ledger.close();
    REQUIRE(window.size() == 1);
    CHECK(window[0].count == 1);
}

TEST_CASE("a full store queue refuses new work at once with StoreBusy; reserved work still queues") {
    char tmpl[] = "/tmp/tf-flood-XXXXXX";
    const fs::path dir = ::mkdtemp(tmpl);
    SecretBytes key(32);
    crypto::randomBytes(key.data(), key.size());
    store::SqlcipherOptions o;
    o.path = (dir / "t.db").string();
    o.key = key.clone();
    o.maxQueued = 4;
    auto st = store::openSqlcipherStore(std::move(o));

    // Hold the writer inside one item so that the queue fills behind it.
    std::promise<void> entered, release;
    auto releaseFuture = release.get_future().share();
    st->submit([&entered, releaseFuture](store::Transaction&) {
        entered.set_value();
        releaseFuture.wait();
    }, nullptr);
    entered.get_future().wait();

    int committed = 0;
    std::atomic<int> done{0};
    for (int i = 0; i < 4; ++i)
        st->submit([&committed](store::Transaction&) { ++committed; }, [&done](std::exception_ptr e) {
            if (!e) ++done;
        });
    CHECK(st->saturated());  // already at three quarters

    bool busy = false;
    bool ran = false;
    st->submit([&ran](store::Transaction&) { ran = true; }, [&busy](std::exception_ptr e) {
        try {
            if (e) std::rethrow_exception(e);
        } catch (const store::StoreBusy&) {
            busy = true;
        }
    });
    CHECK(busy);  // refused on this thread, before anything ran

    std::promise<void> reservedDone;
    bool reservedRan = false;
    st->submitReserved([&reservedRan](store::Transaction&) { reservedRan = true; },
                       [&reservedDone](std::exception_ptr e) {
                           if (e) reservedDone.set_exception(e);
                           else reservedDone.set_value();
                       });
    release.set_value();
    reservedDone.get_future().get();
    CHECK(reservedRan);
    CHECK_FALSE(ran);
    CHECK(committed == 4);
    CHECK(done == 4);
    CHECK_FALSE(st->saturated());
    st->close();
    fs::remove_all(dir);
}
