#include "server/event_webhooks.hpp"

#include "build_config.h"

#include "channel/http_common.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

#include <chrono>
#include <stdexcept>
#include <vector>

namespace twofactor::server {

namespace {

// How long a claim holds an event beyond its request's own timeout: a daemon
// that dies mid-post frees it for the other nodes that much later (its own
// node's next start takes it over at once).
constexpr std::int64_t kLeaseMargin = 30;

std::size_t discardBody(char*, std::size_t size, std::size_t n, void*) { return size * n; }

}  // namespace

EventWebhooks::EventWebhooks(const config::Config& config, store::Store& store, const Clock& clock,
                             std::string holder, std::string nodePrefix, Executor executor)
    : config_(config),
      store_(store),
      clock_(clock),
      holder_(std::move(holder)),
      nodePrefix_(std::move(nodePrefix)),
      executor_(std::move(executor)) {
    for (const auto& [name, app] : config_.apps) {
        if (!app.events) continue;
        const SecretString text = files::readSecretFile(app.events->secretFile);
        auto secret = otp::parseWebhookSecret(text.view());
        if (!secret)
            throw std::runtime_error("apps." + name + ".events.secret_file " + app.events->secretFile +
                                     ": not a Standard Webhooks secret (\"whsec_\" and 16 to 64 bytes in base64)");
        endpoints_.emplace(name, Endpoint{&*app.events, std::move(*secret)});
        for (const auto& type : app.events->events)
            if (type == "verification.expired") wantsExpiries_ = true;
    }
    if (!endpoints_.empty()) channel::curlGlobalInit();
}

void EventWebhooks::tick() {
    const int room = std::min(kBatch, kMaxInFlight - inFlight_.load());
    if (room <= 0) return;
    auto claimed = std::make_shared<std::vector<otp::EventJob>>();
    const std::int64_t now = clock_.now();
    std::int64_t longest = 1;
    for (const auto& [name, e] : endpoints_) longest = std::max<std::int64_t>(longest, e.config->timeout.count());
    inFlight_ += room;  // held until the claim is known, so ticks do not pile up claims
    store_.submit(
        [this, claimed, now, room, leaseUntil = now + longest + kLeaseMargin](store::Transaction& t) {
            claimed->clear();  // work may run again (Store::submit)
            for (auto& job : t.claimEvents(holder_, nodePrefix_, now, leaseUntil, room)) {
                const auto endpoint = endpoints_.find(job.app);
                std::string giveUp;
                if (endpoint == endpoints_.end()) giveUp = "the app no longer sends events";
                else if (now >= job.createdAt + endpoint->second.config->retryFor.count())
                    giveUp = "given up: not delivered within retry_for (" + std::to_string(job.attempts) +
                             " attempt(s)" + (job.lastError.empty() ? "" : ", last: " + job.lastError) + ")";
                if (!giveUp.empty()) {
                    t.insertEventAttempt(otp::EventAttempt{0, job.id, job.app, job.type, job.attempts + 1, now,
                                                           "failed", 0, 0, giveUp});
                    (void)t.finishEvent(job.id, holder_);
                    continue;
                }
                claimed->push_back(std::move(job));
            }
        },
        [this, claimed, room](std::exception_ptr e) {
            inFlight_ -= room;
            if (e) {
                log::error("events: the event queue could not be claimed");
                return;
            }
            for (auto& job : *claimed) {
                ++inFlight_;
                executor_([this, job = std::move(job)]() mutable { deliver(std::move(job)); });
            }
        });
}

void EventWebhooks::deliver(otp::EventJob job) {
    const auto& endpoint = endpoints_.at(job.app);
    const std::int64_t at = clock_.now();
    Result result = post(endpoint, job, at);
    record(std::move(job), std::move(result), at);
}

EventWebhooks::Result EventWebhooks::post(const Endpoint& endpoint, const otp::EventJob& job, std::int64_t timestamp) {
    Result result;
    channel::PooledCurl handle = curlPool_.acquire();
    CURL* curl = handle.get();
    if (curl == nullptr) {
        result.error = "curl could not start a transfer";
        return result;
    }
    config::Tls tls = config_.tls;
    if (!endpoint.config->caFile.empty()) tls.caBundle = endpoint.config->caFile;
    std::string policyError;
    if (!channel::applyTransportPolicy(curl, endpoint.config->url, tls, {"https"}, policyError)) {
        result.error = policyError;
        return result;
    }
    channel::http::CurlHeaders headers;
    const std::string signature = otp::webhookSignature(endpoint.secret, job.id, timestamp, job.payload);
    if (!headers.add("Content-Type: application/json") || !headers.add("webhook-id: " + job.id) ||
        !headers.add("webhook-timestamp: " + std::to_string(timestamp)) ||
        !headers.add("webhook-signature: " + signature) || !headers.add("Expect:")) {
        result.error = "out of memory building the request";
        return result;
    }
    char errbuf[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, job.payload.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(job.payload.size()));
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "twofactord/" TWOFACTOR_VERSION);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(endpoint.config->timeout.count() * 1000));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discardBody);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    const auto started = std::chrono::steady_clock::now();
    const CURLcode rc = curl_easy_perform(curl);
    result.durationMs =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    // The header list (it holds the signature) goes before the handle returns to the pool.
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    if (rc != CURLE_OK) {
        result.error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(": ") + errbuf : "");
        return result;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    result.statusCode = static_cast<int>(status);
    if (status < 200 || status > 299) result.error = "the endpoint answered HTTP " + std::to_string(status);
    return result;
}

void EventWebhooks::record(otp::EventJob job, Result result, std::int64_t at) {
    const auto& cfg = *endpoints_.at(job.app).config;
    auto attempt = std::make_shared<otp::EventAttempt>(
        otp::EventAttempt{0, job.id, job.app, job.type, job.attempts + 1, at,
                          result.error.empty() ? "delivered" : "retry", result.statusCode, result.durationMs,
                          result.error});
    auto disabled = std::make_shared<otp::EventFailure>();
    const std::int64_t now = clock_.now();
    store_.submit(
        [this, job, attempt, initial = *attempt, disabled, now, &cfg](store::Transaction& t) {
            // Work may run again (Store::submit): each run starts from the attempt as it came.
            *attempt = initial;
            *disabled = otp::EventFailure{};
            if (attempt->outcome == "delivered") {
                t.insertEventAttempt(*attempt);
                (void)t.finishEvent(job.id, holder_);
                t.clearEventFailures(job.app);
                return;
            }
            *disabled = t.countEventFailure(job.app, now, cfg.maxFailures, attempt->error);
            const std::int64_t retryAt = now + otp::eventRetryDelay(attempt->attempt, cfg.retryBase.count());
            if (retryAt >= job.createdAt + cfg.retryFor.count()) {
                attempt->outcome = "failed";
                attempt->error += "; given up after " + std::to_string(attempt->attempt) + " attempt(s)";
                (void)t.finishEvent(job.id, holder_);
            } else {
                if (disabled->disabled) attempt->outcome = "disabled";
                (void)t.retryEvent(job.id, holder_, attempt->attempt, retryAt, attempt->error);
            }
            t.insertEventAttempt(*attempt);
        },
        [this, job, attempt, disabled](std::exception_ptr e) {
            --inFlight_;
            if (e) {
                // The lease runs out and the event is tried again: nothing is lost.
                log::error("events: the outcome of event " + job.id + " for app " + job.app + " could not be stored");
                return;
            }
            if (attempt->outcome != "delivered")
                log::info("events: " + job.type + " " + job.id + " for app " + job.app + " attempt " +
                          std::to_string(attempt->attempt) + ": " + attempt->outcome + " (" + attempt->error + ")");
            if (onAttempt) onAttempt(*attempt);
            if (disabled->disabled && onDisabled) onDisabled(job.app, disabled->failures, attempt->error);
        });
}

}  // namespace twofactor::server
