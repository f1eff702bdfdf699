#include "channel/outbox.hpp"

#include "util/files.hpp"

#include <chrono>
#include <ctime>
#include <unistd.h>

namespace twofactor::channel {

OutboxChannel::OutboxChannel(std::string directory) : directory_(std::move(directory)) {
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
        files::writeFileAtomic(directory_ + "/tmp", directory_ + "/new", name, body.view());
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

}  // namespace twofactor::channel
