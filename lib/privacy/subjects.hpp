// GDPR data-subject requests (issue 5): access/portability (Art. 15, 20),
// erasure with the recipients to notify (Art. 17, 19), rectification (Art.
// 16), restriction (Art. 18), objection (Art. 21), and the register of
// requests with their one-month deadline (Art. 12(3)).
//
// A subject is an email address or a phone number, normalised exactly as at
// send time and found by the keyed subject hash. Each operation is one store
// work item together with its register entry and its audit record: it happens
// whole, recorded, or not at all.
#pragma once

#include "config/config.hpp"
#include "otp/service.hpp"
#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace twofactor::privacy {

inline constexpr std::int64_t kAnswerWithin = 30 * 86400;  // Art. 12(3): one month
inline constexpr const char* kRequestKinds[] = {"export", "delete", "rectify", "restrict", "unrestrict", "object"};
[[nodiscard]] bool validRequestKind(std::string_view kind);

// Who else processed a subject's messages, for the Art. 19 notice.
struct Recipient {
    std::string name;     // "Amazon Web Services (Amazon SES)", ...
    std::string driver;   // ses, smtp, whatsapp
    std::string provider;  // as recorded with the attempts: "aws-ses", "meta", the SMTP relay's host
    std::string region;    // the AWS region the attempts used; "" when none
    std::string channel;   // email or whatsapp: what it received
    std::string country;  // where it processes, from the recorded region
    std::vector<std::string> messageIds;  // the provider's ids of the messages it accepted
};

struct Erasure {
    store::SubjectCounts counts;
    std::int64_t outboxMessages = 0;  // messages to the subject still in the outbox, removed
    std::int64_t suppressions = 0;    // the address's entry on the email suppression list, removed
    std::vector<Recipient> recipients;
    std::int64_t registerId = 0;
};

struct FlagChange {
    bool changed = false;             // false: it was already so
    std::optional<std::int64_t> since;  // restriction / objection in force since
    std::int64_t registerId = 0;
};

struct Rectification {
    store::SubjectCounts counts;
    std::int64_t registerId = 0;
};

struct ExportResult {
    nlohmann::json document;
    bool empty = true;  // nothing is held about the subject
    std::int64_t registerId = 0;
};

// Common to every request: who asked, and when the request was received
// (default: now) for the deadline.
struct RequestContext {
    std::int64_t uid = -1;
    std::optional<std::int64_t> received;
};

class SubjectService {
public:
    template <typename T>
    using Reply = std::function<void(otp::Outcome<T>)>;

    SubjectService(const config::Config& config, otp::OtpService& service);

    void exportData(std::string subject, RequestContext ctx, Reply<ExportResult> reply);
    void erase(std::string subject, RequestContext ctx, Reply<Erasure> reply);
    void rectify(std::string subject, std::string to, RequestContext ctx, Reply<Rectification> reply);
    void restrict(std::string subject, bool on, RequestContext ctx, Reply<FlagChange> reply);
    void object(std::string subject, RequestContext ctx, Reply<FlagChange> reply);

    // Records a request received (by letter, mail, ...) to be answered later.
    void registerRequest(std::string kind, std::string subject, std::string note, RequestContext ctx,
                         Reply<store::PrivacyRequest> reply);
    void listRequests(store::PrivacyRequestQuery query, Reply<std::vector<store::PrivacyRequest>> reply);

    // The Art. 15 context of an export: the controller ([privacy]), purposes,
    // categories, the recipients that received the subject's data and their
    // countries, retention periods, rights, complaint, source, automated decisions.
    [[nodiscard]] nlohmann::json article15Context(const std::vector<Recipient>& recipients) const;

private:
    struct Subject {
        std::string address;  // normalised, as given
        std::string hash;     // the hash of its match form: the register's key
        // Every hash the subject's data may be filed under (hash first; then the
        // exact form's, for apps with email_local_part = "exact" and data stored
        // before local parts were matched without case).
        std::vector<std::string> hashes;
        bool email = true;
    };
    // The subject's data under every one of its hashes, as one.
    [[nodiscard]] static store::SubjectData findAll(store::Transaction& t, const Subject& subject);
    [[nodiscard]] std::variant<Subject, otp::Failure> parseSubject(const std::string& text,
                                                                   const char* parameter) const;
    [[nodiscard]] std::optional<otp::Failure> checkReceived(const RequestContext& ctx) const;
    // The subject and the request context checked; on failure the reply is
    // sent and nullopt returned.
    template <typename T>
    [[nodiscard]] std::optional<Subject> begin(const std::string& text, const RequestContext& ctx,
                                               const Reply<T>& reply) const;
    // A store completion answering with *result, or the store's failure.
    template <typename T>
    static std::function<void(std::exception_ptr)> answerWith(std::shared_ptr<T> result, Reply<T> reply);
    void setFlag(std::string kind, std::string text, bool on, RequestContext ctx, Reply<FlagChange> reply);
    // Completes the oldest open register entry of that kind for the subject, or
    // adds a completed one. Returns its id.
    std::int64_t completeRequest(store::Transaction& t, const std::string& kind, const std::string& subjectHash,
                                 const RequestContext& ctx, const std::string& note) const;
    std::int64_t removeOutboxMessages(const std::vector<std::string>& names) const;
    [[nodiscard]] std::vector<Recipient> recipientsOf(const std::vector<otp::DeliveryAttempt>& deliveries) const;
    [[nodiscard]] std::string recipientName(const std::string& driver, const std::string& provider,
                                            const std::string& region) const;
    [[nodiscard]] std::string recipientCountry(const std::string& driver, const std::string& provider,
                                               const std::string& region) const;

    const config::Config& config_;
    otp::OtpService& service_;
    std::string phoneRegion_;  // the default region every app shares, else "" (E.164 required)
};

}  // namespace twofactor::privacy
