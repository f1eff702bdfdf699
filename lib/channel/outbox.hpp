// The outbox channel: each message becomes one file in a maildir-like
// directory (tmp/ then rename into new/), mode 0600. For trying the product,
// for tests, and for sites that hand messages on to another system.
//
// A message is acknowledged only once it is durable: its file written and
// fsynced in tmp/, renamed into new/, and new/ fsynced. Deliveries running at
// the same time share the directory's fsync (group commit, as the store
// shares a transaction): the first to finish its rename syncs new/ for every
// rename done before it began; those that finish meanwhile join the next one.
#pragma once

#include "channel/channel.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace twofactor::channel {

class OutboxChannel final : public Channel {
public:
    // Makes the entries of a directory durable; throws std::runtime_error
    // naming the directory when it cannot. The default fsyncs it. Tests pass
    // their own to watch which renames each sync covers.
    using DirectorySync = std::function<void(const std::string& directory)>;

    // Creates DIR/tmp and DIR/new (mode 0700) if missing.
    explicit OutboxChannel(std::string directory, DirectorySync sync = {});
    std::string driverName() const override { return "outbox"; }
    void deliver(Message message, Done done) override;
    const std::string& directory() const { return directory_; }

    // The file's text: an RFC 5322 message; email with an HTML template is
    // multipart/alternative (text, then HTML), everything else text/plain.
    [[nodiscard]] static std::string format(const Message& message, std::int64_t unixTime);

    // Removal. A message holds a plaintext code and an address, useless once
    // its request ended: these find messages by the request id in their names
    // (maildir: new/NAME, or cur/NAME:2,FLAGS once a reader marked them).
    // `includeCur` false leaves cur/ to a consumer that moves what it picked
    // up there ([outbox] keep = "until-pickup").
    // Removes the messages of these requests; returns how many went.
    static std::size_t removeRequests(const std::string& directory, const std::vector<std::string>& requestIds,
                                      bool includeCur);
    // The request ids of the messages in the outbox (each once), at most `limit`.
    [[nodiscard]] static std::vector<std::string> requestIds(const std::string& directory, bool includeCur,
                                                             std::size_t limit);
    // The request id in a message's file name, or "" when it is not ours.
    [[nodiscard]] static std::string requestIdOf(std::string_view fileName);

private:
    // Writes the file into tmp/, fsyncs it and renames it into new/.
    void writeMessageFile(const std::string& name, std::string_view content) const;
    // Returns once new/ has been synced after this thread's rename; throws
    // when that sync failed.
    void awaitDirectorySync();

    // One directory sync and the renames it covers.
    struct SyncRound {
        bool done = false;
        std::string error;  // empty when the sync succeeded
    };

    std::string directory_;
    DirectorySync sync_;
    std::atomic<unsigned long> sequence_{0};
    std::mutex syncMutex_;
    std::condition_variable syncDone_;
    std::shared_ptr<SyncRound> openRound_;  // joined by renames finished since the running sync began
    bool syncing_ = false;
};

}  // namespace twofactor::channel
