// Breach support (GDPR Art. 33, 34): who had data processed in a time window
// and what, for notifying the supervisory authority within 72 hours and the
// subjects themselves.
//
// Subjects are grouped by their keyed subject hash. While a request still
// holds its address (the delivery-log period) the subject is listed in
// contactable form, with the client IPs and devices held; after that only the
// hash is left, and the subject is listed as that hash with counts. The
// totals per app and category are what an Art. 33(3)(a) notice asks for.
#pragma once

#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace twofactor::privacy {

struct BreachWindow {
    std::int64_t from = 0;  // inclusive, Unix seconds
    std::int64_t to = 0;    // exclusive
    std::optional<std::string> app;  // only this app's data
};

// The longest window one report covers: everything the store keeps is younger
// than the longest retention period (authentication_metadata, at most ten years).
inline constexpr std::int64_t kMaxBreachWindow = 3660LL * 86400;

class BreachReport {
public:
    // hashOf: the keyed subject hash an email fallback address is filed under
    // (the fallback's own requests are under it); "" when it is not an address.
    BreachReport(BreachWindow window, std::function<std::string(const std::string&)> hashOf);

    void addRequests(const std::vector<store::BreachRequestRow>& rows);
    void addDeliveries(const std::vector<store::BreachDeliveryRow>& rows);

    // The subjects, contactable ones first, each in the order first seen.
    [[nodiscard]] std::vector<nlohmann::json> subjects() const;
    // Art. 33(3)(a): the categories and approximate numbers of data subjects
    // and of records concerned, per app and in total.
    [[nodiscard]] nlohmann::json notice() const;
    [[nodiscard]] std::int64_t subjectCount() const { return static_cast<std::int64_t>(order_.size()); }
    [[nodiscard]] std::int64_t recordCount() const { return requests_ + deliveries_; }

private:
    struct Subject {
        std::string hash;
        std::string address;  // "" once only the hash is held
        std::string kind;     // "email", "phone", or "" when unknown
        std::set<std::string> apps;
        std::int64_t requests = 0;
        std::int64_t deliveries = 0;
        std::int64_t withClientIp = 0;  // requests that still hold a client IP
        std::int64_t withDevice = 0;
        std::set<std::string> clientIps;
        std::set<std::string> devices;
        std::int64_t first = 0, last = 0;
    };
    struct AppTotals {
        std::set<std::string> subjects;
        std::int64_t requests = 0, deliveries = 0, clientIps = 0, devices = 0, unattributed = 0;
    };
    Subject& subject(const std::string& hash, const std::string& app, std::int64_t at);
    void noteAddress(Subject& s, const std::string& address);
    [[nodiscard]] bool wanted(const std::string& app) const { return !window_.app || *window_.app == app; }

    BreachWindow window_;
    std::function<std::string(const std::string&)> hashOf_;
    std::map<std::string, Subject> byHash_;
    std::vector<std::string> order_;
    std::map<std::string, AppTotals> apps_;
    std::int64_t requests_ = 0, deliveries_ = 0;
};

}  // namespace twofactor::privacy
