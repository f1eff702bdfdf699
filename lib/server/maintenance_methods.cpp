// io.twofactor.Maintenance: key rotation and online backup (issue 5).
#include "server/server_impl.hpp"

#include "util/crypto.hpp"

#include <openssl/evp.h>

#include <dirent.h>
#include <fcntl.h>
#include <cerrno>
#include <cstring>

namespace twofactor::server::detail {

namespace {

constexpr const char* kMaintenance = "io.twofactor.Maintenance";
constexpr const char* kStoreKeyCredential = "store-key";
constexpr const char* kBackupPrefix = ".backup-";
// Raw bytes per "data" reply: about 700 KB of base64, far below the client's 16 MiB per message.
constexpr std::size_t kChunkBytes = 512 * 1024;

std::string errorName(const char* name) { return std::string(kMaintenance) + "." + name; }

// Which key opens the database after a rotation ended this way (RotationFailed's databaseKey).
const char* databaseKey(store::RekeyStatus status) {
    switch (status) {
        case store::RekeyStatus::Rotated:
        case store::RekeyStatus::NewKeyOnly:
            return "new";
        case store::RekeyStatus::NoKey:
            return "none";
        case store::RekeyStatus::OldKey:
        case store::RekeyStatus::Busy:
            return "old";
    }
    return "old";
}

// The daemon's own copy in its state directory (mode 0600), removed with
// anything SQLite put next to it, whatever happens.
class TemporaryCopy {
public:
    explicit TemporaryCopy(const std::string& dir) : path_(dir + "/" + kBackupPrefix + "XXXXXX") {
        const int fd = ::mkostemp(path_.data(), O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("cannot create a file in " + dir + ": " + std::strerror(errno));
        ::close(fd);
    }
    TemporaryCopy(const TemporaryCopy&) = delete;
    TemporaryCopy& operator=(const TemporaryCopy&) = delete;
    ~TemporaryCopy() {
        for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((path_ + suffix).c_str());
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

class File {
public:
    explicit File(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    ~File() { ::close(fd_); }
    // Fills `buf` as far as the file goes; returns the bytes read (0 at the end).
    std::size_t read(std::vector<unsigned char>& buf) {
        std::size_t got = 0;
        while (got < buf.size()) {
            const ssize_t n = ::read(fd_, buf.data() + got, buf.size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw std::runtime_error(std::string("cannot read the copy: ") + std::strerror(errno));
            if (n == 0) break;
            got += static_cast<std::size_t>(n);
        }
        return got;
    }

private:
    int fd_;
};

// SHA-256 and size of a file.
std::string fileDigest(const std::string& path, std::int64_t& size) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 unavailable");
    File file(path);
    std::vector<unsigned char> buf(kChunkBytes);
    size = 0;
    while (const std::size_t n = file.read(buf)) {
        EVP_DigestUpdate(ctx.get(), buf.data(), n);
        size += static_cast<std::int64_t>(n);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &len);
    return crypto::hex(digest, len);
}

std::string base64(const unsigned char* data, std::size_t size) {
    std::string out(4 * ((size + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

}  // namespace

void removeBackupLeftovers(const std::string& stateDir) {
    DIR* dir = ::opendir(stateDir.c_str());
    if (!dir) return;
    std::vector<std::string> leftovers;
    while (const dirent* e = ::readdir(dir))
        if (std::string_view(e->d_name).rfind(kBackupPrefix, 0) == 0) leftovers.push_back(stateDir + "/" + e->d_name);
    ::closedir(dir);
    for (const auto& path : leftovers)
        if (::unlink(path.c_str()) == 0) log::warning("removed " + path + ", left by an interrupted backup");
}

void Server::addMaintenanceMethods() {
    // Writes an audit record and waits for it (off the I/O thread only).
    auto audit = [this](const char* event, std::int64_t uid, const char* outcome, std::string detail) {
        otp::AuditRecord rec;
        rec.event = event;
        rec.uid = uid;
        rec.outcome = outcome;
        rec.detail = std::move(detail);
        std::promise<bool> written;
        auto future = written.get_future();
        service_->audit(std::move(rec), [&written](otp::Outcome<otp::AuditRecord> o) {
            written.set_value(std::holds_alternative<otp::AuditRecord>(o));
        });
        const bool ok = future.get();
        if (!ok)
            log::error(std::string("the ") + event + " by uid " + std::to_string(uid) + " could not be audited",
                       {log::Event::AuditFailure, {}, {}});
        return ok;
    };

    add(std::string(kMaintenance) + ".RotateKey", Access::Admin,
        [this, audit](const Peer& peer, const json&, Respond r) {
            if (store::keyFromCredential(kStoreKeyCredential)) {
                log::warning("uid " + std::to_string(peer.uid) +
                             " asked for a key rotation, but the store key is a systemd credential; refused");
                return r(errorName("KeyFromCredential"), {{"credential", kStoreKeyCredential}});
            }
            log::info("uid " + std::to_string(peer.uid) + " started a key rotation");
            // Blocking work (fsync, the rekey, the checks) runs on the pool, not on the I/O thread.
            asio::post(deliveryPool_, [this, audit, uid = std::int64_t{peer.uid}, r = onIo(r)] {
                const std::string& keyFile = config_.storeKeyFile;
                auto failed = [&](store::RekeyStatus status, const std::string& reason) {
                    const char* which = databaseKey(status);
                    log::error("key rotation by uid " + std::to_string(uid) + " failed: " + reason +
                               " (the database opens with the " + which + " key)");
                    audit("key-rotation", uid, "failure", reason + "; the database opens with the " + which + " key");
                    r(errorName("RotationFailed"), {{"reason", reason}, {"databaseKey", which}});
                };
                SecretBytes newKey = crypto::randomSecret(store::kKeyBytes);
                try {
                    if (store::writePendingKey(keyFile, newKey) == store::PendingKeyWrite::AlreadyPending) {
                        log::warning("key rotation by uid " + std::to_string(uid) +
                                     " refused: " + store::pendingKeyFile(keyFile) + " exists");
                        return r(errorName("MaintenanceBusy"), json::object());
                    }
                } catch (const std::exception& e) {
                    return failed(store::RekeyStatus::OldKey,
                                  std::string("cannot write the new key file (") + e.what() + "); nothing was changed");
                }
                // On PostgreSQL the old key goes on opening what other nodes seal
                // until they have the new one: it is kept, never dropped, and
                // kept before the reseal starts, so a rotation that stops at any
                // point leaves every key that sealed something on disk.
                if (config_.store.backend == "postgresql") {
                    try {
                        store::keepPreviousKey(keyFile, store::loadKey("store-key", keyFile, false));
                    } catch (const std::exception& e) {
                        store::discardPendingKey(keyFile);
                        return failed(store::RekeyStatus::OldKey, "cannot keep the old key in " +
                                                                      store::previousKeysFile(keyFile) + " (" + e.what() +
                                                                      "); nothing was changed");
                    }
                }
                std::promise<store::RekeyResult> rekeyed;
                auto future = rekeyed.get_future();
                store_->rekey(std::move(newKey),
                              [&rekeyed](store::RekeyResult res) { rekeyed.set_value(std::move(res)); });
                const store::RekeyResult res = future.get();
                switch (res.status) {
                    case store::RekeyStatus::Rotated:
                        try {
                            store::commitPendingKey(keyFile);
                        } catch (const std::exception& e) {
                            // The new key is safe in <keyFile>.new and only it opens the database.
                            return failed(store::RekeyStatus::NewKeyOnly,
                                          "the database was rekeyed and verified, but " + std::string(e.what()) +
                                              "; twofactord completes the rename at its next start");
                        }
                        log::info("uid " + std::to_string(uid) + " rotated the store key: " + res.detail);
                        audit("key-rotation", uid, "success", res.detail);
                        // The node's key version, in `cluster status` now rather than at the next beat.
                        asio::post(io_, [this] {
                            if (!stopping_) heartbeatTick();
                        });
                        return r("", {{"keyFile", keyFile}});
                    case store::RekeyStatus::Busy:
                        store::discardPendingKey(keyFile);
                        log::warning("key rotation by uid " + std::to_string(uid) + " refused: " + res.detail);
                        return r(errorName("MaintenanceBusy"), json::object());
                    case store::RekeyStatus::OldKey:
                        store::discardPendingKey(keyFile);
                        return failed(res.status, res.detail);
                    case store::RekeyStatus::NewKeyOnly:
                        try {
                            store::commitPendingKey(keyFile);
                        } catch (const std::exception& e) {
                            return failed(res.status, res.detail + "; " + e.what() +
                                                          ": twofactord completes the rename at its next start");
                        }
                        return failed(res.status, res.detail + "; the new key replaced the key file");
                    case store::RekeyStatus::NoKey:
                        return failed(res.status, res.detail + "; " + keyFile + " and " +
                                                      store::pendingKeyFile(keyFile) + " were both kept");
                }
            });
        });

    addStreaming(
        std::string(kMaintenance) + ".Backup", Access::Admin,
        [this, audit](const Peer& peer, const json&, Progress progress, Respond respond) {
            if (config_.store.backend == "postgresql") {
                // The database is not this node's to copy: PostgreSQL's own tools do it whole.
                log::warning("uid " + std::to_string(peer.uid) + " asked for a backup, refused on PostgreSQL");
                return respond(errorName("BackupFailed"),
                               {{"reason", "backend = \"postgresql\": twofactor backup copies a SQLCipher file only; "
                                           "back the database up with pg_dump or pg_basebackup (with WAL archiving), "
                                           "and keep the store key (" + config_.storeKeyFile + ", with " +
                                           store::previousKeysFile(config_.storeKeyFile) + " if it exists) and the "
                                           "code pepper (" + config_.pepperFile + ") apart from it: without them "
                                           "its sealed columns and code hashes are of no use"}});
            }
            log::info("uid " + std::to_string(peer.uid) + " started a backup");
            asio::post(deliveryPool_, [this, audit, uid = std::int64_t{peer.uid}, progress = std::move(progress),
                                       r = onIo(respond)] {
                auto failed = [&](const std::string& reason) {
                    log::error("backup for uid " + std::to_string(uid) + " failed: " + reason);
                    audit("backup", uid, "failure", reason);
                    r(errorName("BackupFailed"), {{"reason", reason}});
                };
                try {
                    TemporaryCopy copy(config_.stateDir);
                    int shown = -1;
                    const store::BackupResult result =
                        store_->backup(copy.path(), [&](std::int64_t done, std::int64_t total) {
                            const int percent = total > 0 ? static_cast<int>(done * 100 / total) : 100;
                            if (percent == shown) return;  // at most 101 progress replies
                            shown = percent;
                            progress({{"phase", "copy"}, {"pagesDone", done}, {"pagesTotal", total}});
                        });
                    if (result.status == store::BackupStatus::Busy) {
                        log::warning("backup for uid " + std::to_string(uid) + " refused: " + result.error);
                        return r(errorName("MaintenanceBusy"), json::object());
                    }
                    if (result.status == store::BackupStatus::Failed) return failed(result.error);
                    std::int64_t size = 0;
                    const std::string sha256 = fileDigest(copy.path(), size);
                    const std::string what =
                        std::to_string(result.pages) + " pages, " + std::to_string(size) + " bytes, sha256 " + sha256;
                    // Fails closed: a copy of the whole database leaves only once its record is written.
                    if (!audit("backup", uid, "success", what))
                        return r(errorName("BackupFailed"), {{"reason", "the audit record could not be written"}});
                    File file(copy.path());
                    std::vector<unsigned char> buf(kChunkBytes);
                    while (const std::size_t n = file.read(buf))
                        progress({{"phase", "data"}, {"data", base64(buf.data(), n)}, {"size", size}});
                    log::info("uid " + std::to_string(uid) + " made a backup: " + what);
                    r("", {{"phase", "done"}, {"size", size}, {"sha256", sha256}, {"pages", result.pages}});
                } catch (const std::exception& e) {
                    failed(e.what());
                }
            });
        },
        /*requiresMore=*/true);
}

}  // namespace twofactor::server::detail
