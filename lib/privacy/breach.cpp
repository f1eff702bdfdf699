#include "privacy/breach.hpp"

#include <algorithm>

namespace twofactor::privacy {

using json = nlohmann::json;

BreachReport::BreachReport(BreachWindow window, std::function<std::string(const std::string&)> hashOf)
    : window_(std::move(window)), hashOf_(std::move(hashOf)) {}

BreachReport::Subject& BreachReport::subject(const std::string& hash, const std::string& app, std::int64_t at) {
    auto [it, added] = byHash_.try_emplace(hash);
    Subject& s = it->second;
    if (added) {
        s.hash = hash;
        s.first = at;
        order_.push_back(hash);
    }
    s.first = std::min(s.first, at);
    s.last = std::max(s.last, at);
    s.apps.insert(app);
    apps_[app].subjects.insert(hash);
    return s;
}

void BreachReport::noteAddress(Subject& s, const std::string& address) {
    if (address.empty()) return;
    // The newest form wins: a rectified or re-cased address is the one to write to.
    s.address = address;
    s.kind = address.find('@') != std::string::npos ? "email" : "phone";
}

void BreachReport::addRequests(const std::vector<store::BreachRequestRow>& rows) {
    for (const auto& r : rows) {
        if (!wanted(r.app)) continue;
        ++requests_;
        AppTotals& totals = apps_[r.app];
        ++totals.requests;
        Subject& s = subject(r.subjectHash, r.app, r.createdAt);
        ++s.requests;
        noteAddress(s, r.destination);
        if (s.kind.empty()) s.kind = r.channel == "whatsapp" ? "phone" : "email";
        if (!r.clientIp.empty()) {
            ++s.withClientIp;
            ++totals.clientIps;
            s.clientIps.insert(r.clientIp);
        }
        if (!r.device.empty()) {
            ++s.withDevice;
            ++totals.devices;
            s.devices.insert(r.device);
        }
        // The email fallback is another subject's address, held by this request.
        if (!r.fallbackDestination.empty()) {
            const std::string hash = hashOf_(r.fallbackDestination);
            if (!hash.empty()) {
                Subject& f = subject(hash, r.app, r.createdAt);
                ++f.requests;
                noteAddress(f, r.fallbackDestination);
            }
        }
    }
}

void BreachReport::addDeliveries(const std::vector<store::BreachDeliveryRow>& rows) {
    for (const auto& d : rows) {
        if (!wanted(d.app)) continue;
        ++deliveries_;
        AppTotals& totals = apps_[d.app];
        ++totals.deliveries;
        // An email attempt of a WhatsApp request went to its fallback address.
        const bool toFallback = d.channel == "email" && !d.fallbackDestination.empty() &&
                                d.destination.find('@') == std::string::npos;
        std::string hash = toFallback ? hashOf_(d.fallbackDestination) : d.subjectHash;
        if (hash.empty()) {
            ++totals.unattributed;  // its request is gone
            continue;
        }
        Subject& s = subject(hash, d.app, d.at);
        ++s.deliveries;
        noteAddress(s, toFallback ? d.fallbackDestination : d.destination);
        if (s.kind.empty()) s.kind = d.channel == "whatsapp" ? "phone" : "email";
    }
}

std::vector<json> BreachReport::subjects() const {
    std::vector<json> contactable, hashed;
    for (const auto& hash : order_) {
        const Subject& s = byHash_.at(hash);
        json j = {{"subjectHash", s.hash},
                  {"kind", s.kind.empty() ? json(nullptr) : json(s.kind)},
                  {"apps", s.apps},
                  {"requests", s.requests},
                  {"deliveries", s.deliveries},
                  {"firstAt", s.first},
                  {"lastAt", s.last}};
        if (!s.address.empty()) {
            j["contactable"] = true;
            j["address"] = s.address;
            j["clientIps"] = s.clientIps;
            j["devices"] = s.devices;
            contactable.push_back(std::move(j));
        } else {
            // Past the delivery-log period: neither the address nor the IPs and devices are held any more.
            j["contactable"] = false;
            j["requestsWithClientIp"] = s.withClientIp;
            j["requestsWithDevice"] = s.withDevice;
            hashed.push_back(std::move(j));
        }
    }
    contactable.insert(contactable.end(), std::make_move_iterator(hashed.begin()),
                       std::make_move_iterator(hashed.end()));
    return contactable;
}

json BreachReport::notice() const {
    json perApp = json::array();
    std::int64_t emails = 0, phones = 0, unknown = 0, contactable = 0, ips = 0, devices = 0, unattributed = 0;
    for (const auto& [hash, s] : byHash_) {
        (s.kind == "email" ? emails : s.kind == "phone" ? phones : unknown) += 1;
        if (!s.address.empty()) ++contactable;
    }
    for (const auto& [app, t] : apps_) {
        std::int64_t appContactable = 0;
        for (const auto& h : t.subjects)
            if (!byHash_.at(h).address.empty()) ++appContactable;
        perApp.push_back({{"app", app},
                          {"dataSubjects", static_cast<std::int64_t>(t.subjects.size())},
                          {"contactable", appContactable},
                          {"onlyHashed", static_cast<std::int64_t>(t.subjects.size()) - appContactable},
                          {"requests", t.requests},
                          {"deliveries", t.deliveries},
                          {"unattributedDeliveries", t.unattributed},
                          {"records", t.requests + t.deliveries},
                          {"requestsWithClientIp", t.clientIps},
                          {"requestsWithDevice", t.devices}});
        ips += t.clientIps;
        devices += t.devices;
        unattributed += t.unattributed;
    }
    json categories = json::array();
    categories.push_back({{"category", "email addresses"}, {"dataSubjects", emails}});
    categories.push_back({{"category", "phone numbers"}, {"dataSubjects", phones}});
    categories.push_back({{"category", "one-time code requests (app, purpose, times, outcome)"}, {"records", requests_}});
    categories.push_back({{"category", "delivery records (provider, message id, outcome)"}, {"records", deliveries_}});
    categories.push_back({{"category", "client IP addresses"}, {"records", ips}});
    categories.push_back({{"category", "device descriptions"}, {"records", devices}});
    return {{"dataSubjects", subjectCount()},
            {"contactable", contactable},
            {"onlyHashed", subjectCount() - contactable},
            {"unknownKind", unknown},
            {"records", recordCount()},
            {"unattributedDeliveries", unattributed},
            {"categoriesOfDataSubjects", json::array({"end users of the configured apps who were sent one-time codes"})},
            {"categoriesOfData", categories},
            {"perApp", perApp}};
}

}  // namespace twofactor::privacy
