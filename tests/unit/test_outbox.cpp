// The outbox's write path: group commit of the directory sync, and that no
// message is acknowledged before the sync that covers its rename.
#include "channel/outbox.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace twofactor;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& tag) {
    const fs::path dir = fs::temp_directory_path() / ("tf-outbox-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    return dir;
}

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
}

channel::Message message(const std::string& id) {
    channel::Message m;
    m.requestId = id;
    m.app = "shop";
    m.channel = "email";
    m.destination = id + "@example.org";
    m.subject = SecretString("Your code");
    m.text = SecretString("code for " + id);
    return m;
}

// What happened, in the order it happened: a sync began (with what new/ held
// then), a sync ended, a delivery was acknowledged.
struct Event {
    enum Kind { SyncBegin, SyncEnd, Ack } kind;
    int sync = -1;                // SyncBegin, SyncEnd: which sync
    std::set<std::string> names;  // SyncBegin: new/ at that moment; Ack: the acknowledged file
    bool accepted = false;
};

}  // namespace

TEST_CASE("outbox: concurrent deliveries share directory syncs and each is acknowledged after one covering it",
          "[outbox]") {
    const fs::path dir = scratch("group");
    constexpr int kDeliveries = 64;
    std::mutex mutex;
    std::vector<Event> events;
    int syncs = 0;
    std::atomic<bool> gateTimedOut{false};
    channel::OutboxChannel outbox(dir.string(), [&](const std::string& newDir) {
        int n;
        {
            std::lock_guard lock(mutex);
            n = syncs++;
            events.push_back({Event::SyncBegin, n, listing(newDir), false});
        }
        // The first sync waits until every delivery has renamed its file, so the
        // others have to share the syncs that follow.
        if (n == 0) {
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            while (listing(newDir).size() < kDeliveries) {
                if (std::chrono::steady_clock::now() > deadline) {
                    gateTimedOut = true;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        }
        const int fd = ::open(newDir.c_str(), O_RDONLY | O_DIRECTORY);
        if (fd < 0 || ::fsync(fd) != 0) throw std::runtime_error("cannot fsync " + newDir);
        ::close(fd);
        std::lock_guard lock(mutex);
        events.push_back({Event::SyncEnd, n, {}, false});
    });

    std::vector<std::thread> threads;
    for (int i = 0; i < kDeliveries; ++i)
        threads.emplace_back([&, i] {
            outbox.deliver(message("r" + std::to_string(i)), [&](channel::DeliveryResult r) {
                std::lock_guard lock(mutex);
                events.push_back({Event::Ack, -1, {r.providerMessageId},
                                  r.outcome == channel::DeliveryOutcome::Accepted});
            });
        });
    for (auto& t : threads) t.join();
    REQUIRE_FALSE(gateTimedOut);

    // Every delivery landed in new/, whole, and tmp/ is empty.
    const auto files = listing(dir / "new");
    REQUIRE(files.size() == kDeliveries);
    CHECK(fs::is_empty(dir / "tmp"));
    for (int i = 0; i < kDeliveries; ++i) {
        const std::string id = "r" + std::to_string(i);
        const auto it = std::find_if(files.begin(), files.end(),
                                     [&](const std::string& f) { return f.find("." + id + ".1.") != std::string::npos; });
        REQUIRE(it != files.end());
        std::ifstream in(dir / "new" / *it);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(text.find("\n\ncode for " + id + "\n") != std::string::npos);
        struct stat st {};
        REQUIRE(::stat((dir / "new" / *it).c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
    }

    // Each acknowledgement comes after the end of a sync that began once its file was in new/.
    int acks = 0;
    for (std::size_t p = 0; p < events.size(); ++p) {
        if (events[p].kind != Event::Ack) continue;
        ++acks;
        CHECK(events[p].accepted);
        const std::string& name = *events[p].names.begin();
        bool covered = false;
        for (std::size_t q = 0; q < p && !covered; ++q) {
            if (events[q].kind != Event::SyncEnd) continue;
            for (std::size_t b = 0; b < q; ++b)
                if (events[b].kind == Event::SyncBegin && events[b].sync == events[q].sync &&
                    events[b].names.count(name))
                    covered = true;
        }
        INFO("acknowledged " << name);
        CHECK(covered);
    }
    CHECK(acks == kDeliveries);
    // Shared: far fewer directory syncs than messages.
    CHECK(syncs >= 1);
    CHECK(syncs <= kDeliveries / 2);
    fs::remove_all(dir);
}

TEST_CASE("outbox: a failed directory sync fails the deliveries it covered, and the next one succeeds", "[outbox]") {
    const fs::path dir = scratch("syncfail");
    bool failNext = true;
    channel::OutboxChannel outbox(dir.string(), [&](const std::string& newDir) {
        if (failNext) {
            failNext = false;
            throw std::runtime_error("cannot fsync " + newDir + ": Input/output error");
        }
    });
    channel::DeliveryResult first, second;
    outbox.deliver(message("a"), [&](channel::DeliveryResult r) { first = std::move(r); });
    CHECK(first.outcome == channel::DeliveryOutcome::Permanent);
    CHECK(first.errorClass == "io");
    CHECK(first.error.find("Input/output error") != std::string::npos);
    outbox.deliver(message("b"), [&](channel::DeliveryResult r) { second = std::move(r); });
    CHECK(second.outcome == channel::DeliveryOutcome::Accepted);
    CHECK(fs::exists(dir / "new" / second.providerMessageId));
    fs::remove_all(dir);
}
