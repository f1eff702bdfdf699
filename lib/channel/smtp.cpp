#include "channel/smtp.hpp"

#include "channel/aws_credentials.hpp"
#include "email/sigv4.hpp"
#include "util/crypto.hpp"
#include "util/files.hpp"

#include <openssl/crypto.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace twofactor::channel {

namespace smtp {

namespace {

std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
}

bool plainAddress(std::string_view a) {
    const auto at = a.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return false;
    // Whatever could end the address early or smuggle a second one into the envelope.
    return std::none_of(a.begin(), a.end(), [](unsigned char c) {
        return c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\';
    });
}

std::string base64(std::string_view in) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16 |
                           static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8 |
                           static_cast<unsigned char>(in[i + 2]);
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16;
        out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        const unsigned v = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16 |
                           static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8;
        out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
    }
    return out;
}

}  // namespace

bool parseMailbox(std::string_view text, Mailbox& out) {
    if (std::any_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) return false;
    text = trim(text);
    Mailbox m;
    if (const auto open = text.rfind('<'); open != std::string_view::npos) {
        if (text.back() != '>') return false;
        m.address = std::string(text.substr(open + 1, text.size() - open - 2));
        std::string_view display = trim(text.substr(0, open));
        if (display.size() >= 2 && display.front() == '"' && display.back() == '"') {
            display = display.substr(1, display.size() - 2);
            for (std::size_t i = 0; i < display.size(); ++i) {
                if (display[i] == '\\' && i + 1 < display.size()) ++i;
                m.display += display[i];
            }
        } else {
            m.display = std::string(display);
        }
    } else {
        m.address = std::string(text);
    }
    if (!plainAddress(m.address)) return false;
    out = std::move(m);
    return true;
}

std::string encodeHeaderText(std::string_view text, std::size_t used) {
    // Control characters would end the header (CR LF) or confuse readers; a
    // template's stray newline becomes a space.
    std::string clean(text);
    for (char& c : clean)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    const bool ascii = std::none_of(clean.begin(), clean.end(), [](unsigned char c) { return c >= 0x80; });
    // Plain text that merely looks like an encoded word would be decoded by readers.
    if (ascii && clean.find("=?") == std::string::npos) return clean;

    // A word is at most 75 characters and a line holding one at most 76
    // (RFC 2047 2): "=?UTF-8?B?" + "?=" take 12, the rest is base64 of whole
    // 3-byte groups. The first line also holds "Subject: " (`used`); folded
    // lines start with a space. A word must hold whole characters (RFC 2047
    // 5), so a chunk ends before a UTF-8 continuation byte.
    auto bytesFor = [](std::size_t lineRoom) {
        const std::size_t word = std::min<std::size_t>(75, lineRoom);
        return word > 16 ? (word - 12) / 4 * 3 : 3;
    };
    std::string out;
    std::size_t pos = 0;
    while (pos < clean.size()) {
        const std::size_t maxBytes = out.empty() ? bytesFor(used < 76 ? 76 - used : 0) : bytesFor(75);
        std::size_t end = std::min(pos + maxBytes, clean.size());
        if (end < clean.size()) {
            std::size_t cut = end;
            while (cut > pos && (static_cast<unsigned char>(clean[cut]) & 0xC0) == 0x80) --cut;
            if (cut > pos) end = cut;  // else invalid UTF-8: split bytes rather than loop forever
        }
        if (!out.empty()) out += "\r\n ";
        out += "=?UTF-8?B?" + base64(std::string_view(clean).substr(pos, end - pos)) + "?=";
        pos = end;
    }
    OPENSSL_cleanse(clean.data(), clean.size());  // a subject may carry the code
    return out;
}

std::string formatMailbox(const Mailbox& mailbox) {
    if (mailbox.display.empty()) return mailbox.address;
    const std::string& d = mailbox.display;
    std::string phrase;
    if (std::any_of(d.begin(), d.end(), [](unsigned char c) { return c >= 0x80; }) || d.find("=?") != std::string::npos) {
        phrase = encodeHeaderText(d, std::string_view("From: ").size());
    } else if (d.find_first_of("()<>[]:;@\\,.\"") != std::string::npos) {
        phrase = "\"";
        for (char c : d) {
            if (c == '"' || c == '\\') phrase += '\\';
            phrase += c;
        }
        phrase += '"';
    } else {
        phrase = d;
    }
    return phrase + " <" + mailbox.address + ">";
}

std::string rfc5322Date(std::int64_t unixSeconds) {
    // strftime's %a and %b follow the locale; RFC 5322 wants English names.
    static const char* const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t t = static_cast<std::time_t>(unixSeconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
                  months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

}  // namespace smtp

namespace {

std::string trimmedSecret(std::string_view v) {
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
    return std::string(v);
}

// A part's body handed to curl by callback rather than copied with
// curl_mime_data, so the code is not left in curl's freed buffers.
struct BodySource {
    std::string_view data;
    std::size_t pos = 0;
};

std::size_t readBody(char* buffer, std::size_t size, std::size_t items, void* arg) {
    auto* src = static_cast<BodySource*>(arg);
    const std::size_t n = std::min(size * items, src->data.size() - src->pos);
    std::memcpy(buffer, src->data.data() + src->pos, n);
    src->pos += n;
    return n;
}

int seekBody(void* arg, curl_off_t offset, int origin) {
    auto* src = static_cast<BodySource*>(arg);
    if (origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
    if (offset < 0 || static_cast<std::size_t>(offset) > src->data.size()) return CURL_SEEKFUNC_FAIL;
    src->pos = static_cast<std::size_t>(offset);
    return CURL_SEEKFUNC_OK;
}

// SMTP wants CRLF line ends, and curl's quoted-printable encoder would
// encode a bare LF as "=0A" instead of breaking the line.
SecretString crlf(const SecretString& in) {
    std::string out;
    out.reserve(in.size() + in.size() / 16 + 2);
    const std::string& s = in.str();
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
        out += s[i];
    }
    return SecretString(std::move(out));
}

// The server's replies, as curl hands them to the header callback (every
// reply line of the SMTP conversation; the client's own lines, and so the
// credentials, never pass here).
struct ReplyTracker {
    std::string current;       // the reply being read (continuation lines joined)
    // The last complete reply refusing something (4xx/5xx): curl says QUIT
    // after a failure, so the very last reply is usually just "221 Bye".
    std::string failure;
    bool dataStarted = false;  // 354 seen: the body may be on its way
    bool dataAnswered = false; // a reply arrived after the body
};

std::size_t onReply(char* buffer, std::size_t size, std::size_t items, void* arg) {
    auto* t = static_cast<ReplyTracker*>(arg);
    const std::size_t n = size * items;
    std::string_view line(buffer, n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.size() < 3 || !std::all_of(line.begin(), line.begin() + 3, [](char c) { return c >= '0' && c <= '9'; }))
        return n;
    const bool complete = line.size() == 3 || line[3] != '-';  // "250-" continues, "250 " ends
    std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
    if (t->current.empty()) t->current = std::string(line.substr(0, 3));
    if (!text.empty() && t->current.size() < 300) {
        t->current += ' ';
        for (char c : text) t->current += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
        if (t->current.size() > 300) t->current.resize(300);
    }
    if (complete) {
        const int code = std::atoi(t->current.substr(0, 3).c_str());
        if (t->dataStarted) t->dataAnswered = true;
        if (code == 354) t->dataStarted = true;
        if (code >= 400) t->failure = t->current;
        t->current.clear();
    }
    return n;
}

bool isTlsFailure(CURLcode rc) {
    switch (rc) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CLIENTCERT:
        case CURLE_USE_SSL_FAILED:
            return true;
        default:
            return false;
    }
}

bool isNetworkFailure(CURLcode rc) {
    switch (rc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_WEIRD_SERVER_REPLY:
            return true;
        default:
            return false;
    }
}

bool isAuthReply(long code) { return code == 530 || code == 534 || code == 535 || code == 538; }

bool mentionsThrottling(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text.find("rate") != std::string::npos || text.find("throttl") != std::string::npos;
}

// Frees what the transfer borrowed. curl copies neither lists nor header
// strings' secrecy: a subject may carry the code, so the list is wiped first.
struct TransferResources {
    curl_mime* mime = nullptr;
    curl_slist* headers = nullptr;
    curl_slist* recipients = nullptr;
    TransferResources() = default;
    TransferResources(const TransferResources&) = delete;
    TransferResources& operator=(const TransferResources&) = delete;
    ~TransferResources() {
        curl_mime_free(mime);
        for (curl_slist* s = headers; s; s = s->next) OPENSSL_cleanse(s->data, std::strlen(s->data));
        curl_slist_free_all(headers);
        curl_slist_free_all(recipients);
    }
};

}  // namespace

SmtpChannel::SmtpChannel(const config::Config& config)
    : smtp_(config.smtp), tls_(config.tls), username_(config.smtp.username) {
    curlGlobalInit();
    smtp::Mailbox from;
    if (!smtp_.from.empty() && !smtp::parseMailbox(smtp_.from, from))
        throw std::runtime_error("[smtp] from is not a usable address: \"" + smtp_.from + "\"");

    const bool authConfigured = !smtp_.username.empty() || !smtp_.sesRegion.empty();
    if (!authConfigured) {
        if (!smtp_.passwordFile.empty())
            throw std::runtime_error("[smtp] password_file is set but username is empty: set [smtp] username "
                                     "(or remove password_file to send without AUTH)");
        return;
    }
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir && *dir) {
        const std::string path = std::string(dir) + "/smtp-password";
        if (files::exists(path)) password_ = SecretString(trimmedSecret(files::readCredentialFile(path).view()));
    }
    if (password_.empty() && !smtp_.passwordFile.empty()) {
        if (!files::exists(smtp_.passwordFile))
            throw std::runtime_error("[smtp] password_file " + smtp_.passwordFile + " does not exist");
        password_ = SecretString(trimmedSecret(files::readSecretFile(smtp_.passwordFile).view()));
    }
    if (password_.empty() && !smtp_.sesRegion.empty()) {
        // SES SMTP: the password is derived from the AWS secret key, the user is the key id.
        AwsCredentials aws = loadAwsCredentials(config.ses);
        password_ = email::sesSmtpPassword(aws.secretAccessKey, smtp_.sesRegion);
        if (username_.empty()) username_ = aws.accessKeyId;
    }
    if (password_.empty())
        throw std::runtime_error("[smtp] username is set but no SMTP password was found: provide the systemd "
                                 "credential smtp-password, [smtp] password_file, or [smtp] ses_region with AWS "
                                 "credentials");
}

void SmtpChannel::deliver(Message message, Done done) {
    const auto started = std::chrono::steady_clock::now();
    DeliveryResult result;
    result.driver = "smtp";
    auto finish = [&](DeliveryOutcome outcome, std::string errorClass, std::string error) {
        result.outcome = outcome;
        result.errorClass = std::move(errorClass);
        result.error = std::move(error);
        result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        done(std::move(result));
    };

    const std::int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (message.expiresAt > 0 && now >= message.expiresAt)
        return finish(DeliveryOutcome::Permanent, "expired", "the request expired before delivery");

    const std::string& fromText =
        message.appConfig && !message.appConfig->emailFrom.empty() ? message.appConfig->emailFrom : smtp_.from;
    smtp::Mailbox from;
    if (!smtp::parseMailbox(fromText, from))
        return finish(DeliveryOutcome::Permanent, "config",
                      fromText.empty() ? "no sender: set [smtp] from or the app's email_from"
                                       : "the sender \"" + fromText + "\" is not a usable address");
    smtp::Mailbox to;
    if (!smtp::parseMailbox(message.destination, to) || !to.display.empty())
        return finish(DeliveryOutcome::Permanent, "rejected", "the destination is not a plain email address");

    PooledCurl handle = pool_.acquire();
    CURL* curl = handle.get();
    if (!curl) return finish(DeliveryOutcome::Retryable, "io", "curl_easy_init failed");

    std::string policyError;
    if (!applyTransportPolicy(curl, smtp_.url, tls_, {"smtp", "smtps"}, policyError))
        return finish(DeliveryOutcome::Permanent, "config", "[smtp] url: " + policyError);
    // smtps:// is TLS from the first byte; for smtp:// this decides whether
    // STARTTLS is mandatory (never "try" unless the operator opted out).
    curl_easy_setopt(curl, CURLOPT_USE_SSL,
                     static_cast<long>(smtp_.requireTls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
    const long timeoutMs = static_cast<long>(std::chrono::milliseconds(smtp_.timeout).count());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeoutMs);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeoutMs);
    if (!username_.empty()) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, username_.c_str());
        curl_easy_setopt(curl, CURLOPT_PASSWORD, password_.str().c_str());
    }

    TransferResources res;
    const std::string mailFrom = "<" + from.address + ">";
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, mailFrom.c_str());
    res.recipients = curl_slist_append(nullptr, ("<" + to.address + ">").c_str());
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, res.recipients);

    const std::string domain = from.address.substr(from.address.rfind('@') + 1);
    const std::string messageId = "<" + crypto::randomId(15) + "@" + domain + ">";
    const bool alternative = !message.html.empty();
    const std::string headerLines[] = {
        "Date: " + smtp::rfc5322Date(now),
        "From: " + smtp::formatMailbox(from),
        "To: " + to.address,
        "Subject: " + smtp::encodeHeaderText(message.subject.view(), std::string_view("Subject: ").size()),
        "Message-ID: " + messageId,
        // RFC 3834: no auto-replies, vacation notices or bounces-to-sender loops.
        "Auto-Submitted: auto-generated",
    };
    for (const auto& h : headerLines) res.headers = curl_slist_append(res.headers, h.c_str());
    // curl's root part would default to multipart/mixed; a user Content-Type
    // replaces the type and curl still appends the boundary.
    if (alternative) res.headers = curl_slist_append(res.headers, "Content-Type: multipart/alternative");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, res.headers);

    const SecretString text = crlf(message.text);
    const SecretString html = crlf(message.html);
    BodySource textSource{text.view()};
    BodySource htmlSource{html.view()};
    res.mime = curl_mime_init(curl);
    auto addPart = [&](BodySource& source, const char* type) {
        curl_mimepart* part = curl_mime_addpart(res.mime);
        curl_mime_data_cb(part, static_cast<curl_off_t>(source.data.size()), readBody, seekBody, nullptr, &source);
        curl_mime_type(part, type);
        // 7-bit safe for any relay (curl does not negotiate 8BITMIME), yet readable.
        curl_mime_encoder(part, "quoted-printable");
    };
    addPart(textSource, "text/plain; charset=UTF-8");
    if (alternative) addPart(htmlSource, "text/html; charset=UTF-8");
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, res.mime);

    char errorBuffer[CURL_ERROR_SIZE] = {};
    ReplyTracker replies;
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errorBuffer);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onReply);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &replies);

    const CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
        // curl 7.88 keeps a connection whose wait for the reply to the body
        // timed out ("left intact"): reused, the late 250 would be read as the
        // reply to the next MAIL FROM, and closing it politely blocks in QUIT
        // until the server answers. Shut it down so curl finds it dead.
        curl_socket_t socket = CURL_SOCKET_BAD;
        if (curl_easy_getinfo(curl, CURLINFO_ACTIVESOCKET, &socket) == CURLE_OK && socket != CURL_SOCKET_BAD)
            ::shutdown(socket, SHUT_RDWR);
    }
    // The pooled handle outlives this frame and its connection may say QUIT
    // later: drop every pointer into this frame before it goes.
    curl_easy_reset(curl);

    result.statusCode = static_cast<int>(code);
    if (rc == CURLE_OK) {
        result.providerMessageId = messageId;
        return finish(DeliveryOutcome::Accepted, "", "");
    }
    std::string error = errorBuffer[0] ? std::string(errorBuffer) : std::string(curl_easy_strerror(rc));
    if (!replies.failure.empty()) error += "; server: " + replies.failure;
    const bool ambiguous = replies.dataStarted && !replies.dataAnswered;

    if (isTlsFailure(rc)) return finish(DeliveryOutcome::Permanent, "config", error);
    if (rc == CURLE_LOGIN_DENIED || isAuthReply(code)) return finish(DeliveryOutcome::Permanent, "config", error);
    if (code >= 500) return finish(DeliveryOutcome::Permanent, "rejected", error);
    if (code >= 400) {
        const bool throttled = (code == 421 || code == 450 || code == 451 || code == 452 || code == 454) &&
                               mentionsThrottling(replies.failure);
        return finish(DeliveryOutcome::Retryable, throttled ? "throttled" : "server", error);
    }
    result.ambiguous = ambiguous;
    if (rc == CURLE_OPERATION_TIMEDOUT) return finish(DeliveryOutcome::Retryable, "timeout", error);
    if (isNetworkFailure(rc)) return finish(DeliveryOutcome::Retryable, "network", error);
    switch (rc) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_UNKNOWN_OPTION:
        case CURLE_FILESIZE_EXCEEDED:
            result.ambiguous = false;
            return finish(DeliveryOutcome::Permanent, "config", error);
        default:
            return finish(DeliveryOutcome::Retryable, "server", error);
    }
}

}  // namespace twofactor::channel
