#include "channel/outbox.hpp"

#include "util/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <set>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace twofactor::channel {

namespace {

std::runtime_error sysError(const std::string& what, const std::string& path) {
    return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

void fsyncDirectory(const std::string& directory) {
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw sysError("cannot open", directory);
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    errno = saved;
    if (rc != 0) throw sysError("cannot fsync", directory);
}

}  // namespace

OutboxChannel::OutboxChannel(std::string directory, DirectorySync sync)
    : directory_(std::move(directory)), sync_(sync ? std::move(sync) : DirectorySync(fsyncDirectory)) {
    files::ensureDirectory(directory_, 0700);
    files::ensureDirectory(directory_ + "/tmp", 0700);
    files::ensureDirectory(directory_ + "/new", 0700);
}

namespace {

std::string base64(std::string_view in) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                           static_cast<unsigned char>(in[i + 2]);
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
    }
    return out;
}

// RFC 2047: a header value with non-ASCII text becomes an encoded word.
std::string headerText(std::string_view value) {
    for (unsigned char c : value)
        if (c >= 0x80) return "=?UTF-8?B?" + base64(value) + "?=";
    return std::string(value);
}

}  // namespace

std::string OutboxChannel::format(const Message& m, std::int64_t unixTime) {
    char date[64];
    const std::time_t t = static_cast<std::time_t>(unixTime);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    // Email gets both parts, as a mail relay would; WhatsApp text is plain.
    const bool multipart = m.channel == "email" && !m.html.empty();
    const std::string boundary = "=_twofactor_" + m.requestId + "_" + std::to_string(m.attempt);
    std::string out;
    out += "Date: " + std::string(date) + "\n";
    out += "To: " + m.destination + "\n";
    out += "Subject: " + headerText(m.subject.view()) + "\n";
    out += "Auto-Submitted: auto-generated\n";
    out += "X-Twofactor-Request: " + m.requestId + "\n";
    out += "X-Twofactor-App: " + m.app + "\n";
    out += "X-Twofactor-Channel: " + m.channel + "\n";
    out += "X-Twofactor-Purpose: " + m.purpose + "\n";
    out += "X-Twofactor-Locale: " + m.locale + "\n";
    out += "X-Twofactor-Attempt: " + std::to_string(m.attempt) + "\n";
    out += "MIME-Version: 1.0\n";
    auto part = [&](const char* type, const SecretString& body) {
        out += std::string("Content-Type: ") + type + "; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n";
        out += body.str();
        if (out.back() != '\n') out += "\n";
    };
    if (multipart) {
        out += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\n\n";
        out += "--" + boundary + "\n";
        part("text/plain", m.text);
        out += "--" + boundary + "\n";
        part("text/html", m.html);
        out += "--" + boundary + "--\n";
    } else {
        part("text/plain", m.text);
    }
    return out;
}

namespace {
std::string sixDigits(long long v) {
    std::string s = std::to_string(v);
    return std::string(s.size() < 6 ? 6 - s.size() : 0, '0') + s;
}
}  // namespace

void OutboxChannel::writeMessageFile(const std::string& name, std::string_view content) const {
    std::string tmp = directory_ + "/tmp/." + name + ".XXXXXX";
    const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0) throw sysError("cannot create a file in", directory_ + "/tmp");
    auto fail = [&](const char* what) {
        const auto error = sysError(what, tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return error;
    };
    if (::fchmod(fd, 0600) != 0) throw fail("cannot chmod");
    while (!content.empty()) {
        const ssize_t n = ::write(fd, content.data(), content.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw fail("cannot write");
        }
        content.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fsync(fd) != 0) throw fail("cannot fsync");
    if (::close(fd) != 0) {
        const auto error = sysError("cannot close", tmp);
        ::unlink(tmp.c_str());
        throw error;
    }
    const std::string target = directory_ + "/new/" + name;
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const auto error = sysError("cannot rename into", target);
        ::unlink(tmp.c_str());
        throw error;
    }
}

void OutboxChannel::awaitDirectorySync() {
    std::unique_lock lock(syncMutex_);
    // Joined after the rename: whichever sync begins from here on covers it.
    if (!openRound_) openRound_ = std::make_shared<SyncRound>();
    const std::shared_ptr<SyncRound> round = openRound_;
    while (!round->done) {
        if (syncing_ || openRound_ != round) {
            syncDone_.wait(lock);
            continue;
        }
        // Lead this round: renames finishing from now on join the next one.
        syncing_ = true;
        openRound_.reset();
        lock.unlock();
        std::string error;
        try {
            sync_(directory_ + "/new");
        } catch (const std::exception& e) {
            error = e.what();
        }
        lock.lock();
        round->done = true;
        round->error = std::move(error);
        syncing_ = false;
        syncDone_.notify_all();
    }
    // A failed sync fails every message it covered, even if a later one succeeds:
    // after an fsync error the kernel may have dropped what it was to write.
    if (!round->error.empty()) throw std::runtime_error(round->error);
}

void OutboxChannel::deliver(Message message, Done done) {
    const auto start = std::chrono::steady_clock::now();
    DeliveryResult result;
    result.driver = driverName();
    try {
        const auto now = std::chrono::system_clock::now();
        const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
        // Maildir-style unique name: time, request, attempt, a per-process sequence and pid.
        const std::string name = std::to_string(micros / 1000000) + "." + sixDigits(micros % 1000000) + "." +
                                 message.requestId + "." + std::to_string(message.attempt) + "." +
                                 std::to_string(sequence_++) + "." + std::to_string(::getpid()) + ".msg";
        SecretString body(format(message, micros / 1000000));
        writeMessageFile(name, body.view());
        awaitDirectorySync();
        result.outcome = DeliveryOutcome::Accepted;
        result.providerMessageId = name;
    } catch (const std::exception& e) {
        // A full disk or a permission problem will not fix itself within a request's lifetime.
        result.outcome = DeliveryOutcome::Permanent;
        result.errorClass = "io";
        result.error = e.what();
    }
    result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    done(std::move(result));
}

std::string OutboxChannel::requestIdOf(std::string_view name) {
    // SECONDS.MICROS.REQUEST.SEND.SEQUENCE.PID.msg, with ":2,FLAGS" in cur/
    std::size_t start = 0;
    for (int field = 0; field < 2; ++field) {
        start = name.find('.', start);
        if (start == std::string_view::npos) return {};
        ++start;
    }
    const std::size_t end = name.find('.', start);
    if (end == std::string_view::npos || end == start || name.find(".msg") == std::string_view::npos) return {};
    return std::string(name.substr(start, end - start));
}

namespace {

// Calls f(directory, name) for each message file in new/ (and cur/).
template <typename F>
void forEachMessage(const std::string& directory, bool includeCur, F&& f) {
    for (const char* sub : {"/new", "/cur"}) {
        if (!includeCur && std::string_view(sub) == "/cur") break;
        const std::string dir = directory + sub;
        DIR* d = ::opendir(dir.c_str());
        if (!d) continue;
        while (const dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            if (!f(dir, std::string_view(e->d_name))) break;
        }
        ::closedir(d);
    }
}

}  // namespace

std::size_t OutboxChannel::removeRequests(const std::string& directory, const std::vector<std::string>& requestIds,
                                          bool includeCur) {
    if (requestIds.empty() || directory.empty()) return 0;
    const std::set<std::string, std::less<>> wanted(requestIds.begin(), requestIds.end());
    std::vector<std::string> doomed;
    forEachMessage(directory, includeCur, [&](const std::string& dir, std::string_view name) {
        if (wanted.count(requestIdOf(name))) doomed.push_back(dir + "/" + std::string(name));
        return true;
    });
    std::size_t removed = 0;
    for (const auto& path : doomed)
        if (::unlink(path.c_str()) == 0) ++removed;
    return removed;
}

std::vector<std::string> OutboxChannel::requestIds(const std::string& directory, bool includeCur, std::size_t limit) {
    std::set<std::string> ids;
    forEachMessage(directory, includeCur, [&](const std::string&, std::string_view name) {
        if (auto id = requestIdOf(name); !id.empty()) ids.insert(std::move(id));
        return ids.size() < limit;
    });
    return {ids.begin(), ids.end()};
}

}  // namespace twofactor::channel
