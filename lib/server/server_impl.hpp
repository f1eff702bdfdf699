// twofactord's server internals, shared by the files that add methods to the
// table (server.cpp, privacy_methods.cpp, maintenance_methods.cpp). Not an API.
#pragma once

#include "channel/curl_util.hpp"
#include "channel/outbox.hpp"
#include "channel/ses.hpp"
#include "channel/smtp.hpp"
#include "channel/whatsapp.hpp"
#include "http/server.hpp"
#include "ipc/idl.hpp"
#include "ipc/message.hpp"
#include "ipc/varlink_interfaces.hpp"
#include "otp/destination.hpp"
#include "otp/service.hpp"
#include "privacy/cron.hpp"
#include "privacy/subjects.hpp"
#include "server/metrics.hpp"
#include "store/keys.hpp"
#include "store/sqlcipher/store.hpp"
#include "util/clock.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "webhook/sns.hpp"
#include "webhook/webhook.hpp"

#include "util/asio.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "server/denials.hpp"
#include "server/event_webhooks.hpp"
#include "server/server.hpp"

namespace twofactor::server::detail {

using json = nlohmann::json;
using asio::local::stream_protocol;


inline constexpr const char* kOtp = "io.twofactor.Otp";
// Deliveries block on I/O (the outbox fsyncs a file and its directory), so
// more threads than cores keep the disk busy; measured in bench/.
inline constexpr std::size_t kDeliveryThreads = 16;
inline constexpr const char* kDaemonIface = "io.twofactor.Daemon";
inline constexpr const char* kPrivacy = "io.twofactor.Privacy";


// JSON shapes shared by several methods (server.cpp).
json countsJson(const store::PurgeCounts& c);
std::string countsText(const store::PurgeCounts& c);
json requestJson(const otp::OtpRequest& r, std::int64_t now);
json sendJson(const otp::SendResult& res, std::int64_t now);
json attemptJson(const otp::DeliveryAttempt& a);
json auditJson(const otp::AuditRecord& r);
json optOutJson(const otp::OptOut& e);
// Per app with the email channel: sends, bounces and complaints over 24 h and
// 7 days, their rates, and warnings near SES's pause thresholds (suppression_methods.cpp).
json emailFeedbackStats(store::Transaction& t, const config::Config& config, std::int64_t now);

// Removes the temporary copies an interrupted backup left in the state
// directory (maintenance_methods.cpp).
void removeBackupLeftovers(const std::string& stateDir);

template <typename T>
std::optional<T> opt(const json& params, const char* key) {
    auto it = params.find(key);
    if (it == params.end() || it->is_null()) return std::nullopt;
    return it->get<T>();
}


class Server;
struct ApiCall;  // http_api.cpp

class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(Server& server, stream_protocol::socket socket, Peer peer);
    void start();
    void close();
    const Peer& peer() const { return peer_; }
    // An intermediate reply of the call in progress (I/O thread only).
    void sendContinue(json parameters);

private:
    void read();
    // Moves received messages into calls_, up to max_calls_per_connection;
    // false when one was invalid (answered, and the connection closes).
    bool takeCalls();
    void armTimer();
    void processNext();
    void finishCall(bool oneway, std::string error, json parameters);
    void send(std::string data, bool closeAfter = false);
    void flush();

    Server& server_;
    stream_protocol::socket socket_;
    asio::steady_timer timer_;
    Peer peer_;
    ipc::FrameReader frames_;
    std::array<char, 16384> buffer_{};
    std::deque<ipc::Call> calls_;
    std::deque<std::string> output_;
    bool busy_ = false;
    bool writing_ = false;
    bool reading_ = false;
    bool closed_ = false;
    bool closeAfterWrite_ = false;
    std::chrono::steady_clock::time_point partialSince_{};
};

// The request log's rows wait here and reach the store as one reserved work
// item at a time: calls never put more than one item for it in the store's
// queue, so a flood of calls cannot fill that queue with log rows, and rows
// beyond kMaxPending (the writer far behind) are counted as dropped.
// Rows wait in memory and go to the store as one work item. With `gather`
// 0 that item is queued at once (SQLCipher: its group commit takes whatever
// has come meanwhile); otherwise `gather` after the first row of a batch, so
// that a store whose work items run side by side (PostgreSQL) writes many
// rows in one transaction instead of a transaction per call.
class CallLog {
public:
    CallLog(store::Store& store, asio::io_context& io, std::chrono::milliseconds gather)
        : store_(store), timer_(io), gather_(gather) {}
    void add(store::CallRecord record);
    // Queues what is waiting now (shutdown: before the store closes); then
    // runs `then` once it is written (at once when nothing waits), so that a
    // read of the request log sees every call answered before it.
    void flush(std::function<void()> then = {});
    // The same, waiting for it (not on the I/O thread).
    void flushAndWait();
    // Rows dropped since the last call.
    [[nodiscard]] std::uint64_t takeDropped();

private:
    void submit(std::function<void()> then = {});
    static constexpr std::size_t kMaxPending = 8192;
    store::Store& store_;
    asio::steady_timer timer_;  // used on the io thread only
    std::chrono::milliseconds gather_;
    std::mutex mutex_;
    std::vector<store::CallRecord> pending_;
    bool queued_ = false;
    std::uint64_t dropped_ = 0;
};

class Server {
public:
    Server(const config::Config& config, const DaemonOptions& options)
        : config_(config),
          clock_(options.clockFile.empty() ? std::unique_ptr<Clock>(new SystemClock)
                                           : std::unique_ptr<Clock>(new FileClock(options.clockFile))),
          acceptor_(io_),
          signals_(io_, SIGINT, SIGTERM),
          deliveryPool_(kDeliveryThreads),
          started_(std::chrono::steady_clock::now()),
          // Tests move a file clock: look at it often. The system clock only needs
          // to be caught within the scheduled minute.
          retentionTick_(options.clockFile.empty() ? std::chrono::seconds(30) : std::chrono::seconds(1)) {
        for (const auto& e : ipc::embeddedInterfaces()) interfaces_.emplace(std::string(e.name), ipc::idl::Interface::parse(e.description));
        buildMethodTable();
    }

    ~Server() {
        if (stateLock_ >= 0) ::close(stateLock_);
    }
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int run();
    // The HTTPS API's routes (http_api.cpp).
    std::vector<std::pair<std::string, std::string>> routeTable();
    std::vector<MethodAccess> methodAccess() const {
        std::vector<MethodAccess> out;
        for (const auto& [name, entry] : methods_) out.push_back(MethodAccess{name, entry.access});
        return out;
    }

    // Called by connections.
    void dispatch(const std::shared_ptr<Connection>& conn, const ipc::Call& call, Respond respond);
    asio::io_context& io() { return io_; }
    const config::Limits& limits() const { return config_.limits; }
    bool stopping() const { return stopping_; }
    void callStarted() { ++inFlight_; }
    void callFinished() {
        if (--inFlight_ == 0 && stopping_) io_.stop();
    }
    void connectionClosed(const Peer& peer) {
        if (--perUid_[peer.uid] <= 0) perUid_.erase(peer.uid);
        --connections_;
    }

private:
    void buildMethodTable();
    void add(std::string name, Access access, Handler handler) {
        if (methods_.count(name)) throw std::logic_error("method registered twice: " + name);
        methods_.emplace(name, MethodEntry{name, access, std::move(handler), {}});
    }
    void addStreaming(std::string name, Access access, StreamHandler handler, bool requiresMore = false) {
        if (methods_.count(name)) throw std::logic_error("method registered twice: " + name);
        methods_.emplace(name, MethodEntry{name, access, {}, std::move(handler), requiresMore});
    }
    // Method groups kept in files of their own.
    void addPrivacyMethods();      // privacy_methods.cpp: io.twofactor.Privacy
    void addMaintenanceMethods();  // maintenance_methods.cpp: io.twofactor.Maintenance
    void addApiKeyMethods();       // http_api.cpp: io.twofactor.ApiKey
    // breach_methods.cpp: io.twofactor.Privacy.BreachReport, one store page per step.
    void addBreachMethods();
    void breachStep(std::shared_ptr<void> run, Progress progress, Respond respond);
    void breachFinish(std::shared_ptr<void> run, Progress progress, Respond respond);
    void breachAnswer(std::shared_ptr<void> run, Progress progress, Respond respond, std::string counts);
    void addSuppressionMethods();  // suppression_methods.cpp: io.twofactor.Suppression
    void addEventMethods();        // event_methods.cpp: io.twofactor.Events
    // Event webhooks (event_methods.cpp): a tick every eventTick_ claims due
    // events and, when an app wants them, ends expired requests.
    void startEvents();
    void eventTick();

    // Idempotency keys (idempotency.cpp), for Varlink's Send and the HTTPS
    // API's POSTs: claim before the call; after its answer, keep the answer
    // for retries or give the key back.
    enum class IdempotencyClaim { Fresh, Replay, Reused, InUse, StoreFailed };
    static constexpr std::int64_t kIdempotencyWindow = 24 * 3600;
    void claimIdempotency(std::string keyId, std::string key, std::string bodyHash, std::int64_t now,
                          std::function<void(IdempotencyClaim, const store::IdempotencyRecord& first)> next);
    void finishIdempotency(std::string keyId, std::string key, bool keep, int status, std::string response);

    // The HTTPS API (http_api.cpp): the listener, its routes, and the stages
    // every call goes through (key, scope, rate limit, Idempotency-Key).
    using ApiAction = std::function<void(std::shared_ptr<ApiCall>)>;
    void startHttp();
    void waitForReload();  // SIGHUP
    void reloadHttpCertificate();
    void addHttpRoutes(http::Router& router);
    void addMetricsRoute(http::Router& router);
    void apiRoute(http::Router& router, std::string method, std::string pattern, std::string scope, ApiAction action);
    void apiAuthenticate(const std::shared_ptr<ApiCall>& call, const std::string& scope, const ApiAction& action);
    [[nodiscard]] otp::Caller apiCaller(const std::shared_ptr<ApiCall>& call) const;
    void apiIdempotent(const std::shared_ptr<ApiCall>& call, const ApiAction& action);
    std::optional<json> apiBody(const std::shared_ptr<ApiCall>& call,
                                const std::vector<std::pair<std::string, json::value_t>>& fields);
    template <typename T, typename F>
    void apiAnswer(const std::shared_ptr<ApiCall>& call, otp::Outcome<T> o, int status, F&& body);
    void apiFinish(const std::shared_ptr<ApiCall>& call, http::Response response, const std::string& result);
    void apiFail(const std::shared_ptr<ApiCall>& call, const std::string& error, const json& parameters,
                 std::string detail);
    // Roles of a peer. The user and group databases are read at most every few
    // seconds per uid/gid: a script's CLI calls would otherwise each cost a scan
    // of /etc/passwd and /etc/group.
    Peer peerFor(const struct ucred& cred) {
        const auto now = std::chrono::steady_clock::now();
        const auto key = std::make_pair(cred.uid, cred.gid);
        auto it = peers_.find(key);
        if (it == peers_.end() || now - it->second.second > std::chrono::seconds(5)) {
            if (peers_.size() > 1024) peers_.clear();
            it = peers_.insert_or_assign(key, std::make_pair(resolvePeer(config_, cred.uid, cred.gid, cred.pid), now))
                     .first;
        }
        Peer p = it->second.first;
        p.pid = cred.pid;
        return p;
    }
    void openStore();
    void openPostgresStore();
    void recordStart();
    // Retention: the scheduler (a timer re-checking the daemon's clock) and one run.
    void scheduleRetention();
    void retentionTick();
    using RetentionDone = std::function<void(std::exception_ptr, const store::RetentionRun&)>;
    bool startRetention(std::string trigger, bool dryRun, RetentionDone done,
                        std::function<void(const store::PurgeCounts&)> progress = {});
    // Durable delivery: a sweep at start and every deliverySweepTick_ claims
    // due and orphaned jobs (at most kSweepBatch a tick); every
    // kOutboxSweepTicks ticks, and after each retention run, outbox messages of
    // requests that ended go.
    void deliverySweepTick();
    void sweepOutbox();
    static constexpr int kSweepBatch = 64;
    // The cluster: each node registers itself and beats every
    // kHeartbeatSeconds from the event loop; ClusterStatus lists the nodes
    // heard from in the last kNodeForgottenAfter seconds, and counts at most
    // kJobsCounted queued jobs. A scheduled retention run holds its lease
    // row for kRetentionLeaseSeconds at most.
    void heartbeatTick(bool first = false);
    static constexpr int kHeartbeatSeconds = 10;
    static constexpr std::int64_t kNodeForgottenAfter = 600;
    static constexpr std::size_t kJobsCounted = 1000;
    static constexpr std::int64_t kRetentionLeaseSeconds = 3600;
    static constexpr int kOutboxSweepTicks = 15;
    Respond logged(const ipc::Call& call, std::int64_t uid, Respond respond);
    void startWebhook();
    // The client IP country rules' database: opened at start and on each SIGHUP.
    void loadCountryDatabase();
    void startMetrics();
    // Counts a call a limit refused, by the limit's scope.
    template <typename T>
    void countRefusal(const otp::Outcome<T>& outcome) {
        if (auto* f = std::get_if<otp::Failure>(&outcome); f && f->error == "RateLimited")
            metrics_.refusal(f->parameters.value("scope", std::string("other")));
    }
    void listen();
    void accept();
    // Waits before accepting again after EMFILE and the like: the pending
    // connection stays in the backlog, and retrying at once would spin.
    void acceptLater(const error_code& ec);

    // The daemon's own protections against a local flood (server.cpp, "Flood").
    // A denied call: answered at once; counted per uid and window.
    void refuseDenied(const Peer& peer, const std::string& method, Respond respond);
    // One audit record of denials: the first of a window (count 1, the
    // method), or a window's count.
    void auditDenials(std::int64_t uid, std::uint64_t count, const std::string& method, bool summary,
                      std::int64_t seconds);
    void scheduleFloodTick();
    void closeDenialWindow(std::int64_t now);
    // Whether the store's queue is too full to start a call now.
    bool storeSaturated();
    // State directory: private (no group or other access) and locked by one daemon.
    void checkStateDirectory() const;
    void lockStateDirectory();

    // Posts a completion from a store or delivery thread back to the I/O thread.
    Respond onIo(Respond respond) {
        return [this, respond](std::string error, json params) {
            asio::post(io_, [respond, error = std::move(error), params = std::move(params)]() mutable {
                respond(std::move(error), std::move(params));
            });
        };
    }
    json sendJson(const otp::SendResult& res) const { return detail::sendJson(res, clock_->now()); }

    template <typename T, typename F>
    void answer(Respond respond, const otp::Outcome<T>& outcome, F&& success) {
        if (auto* f = std::get_if<otp::Failure>(&outcome)) {
            respond(f->error.find('.') == std::string::npos ? std::string(kOtp) + "." + f->error : f->error,
                    f->parameters);
            return;
        }
        respond("", success(std::get<T>(outcome)));
    }

    const config::Config& config_;
    std::unique_ptr<Clock> clock_;
    asio::io_context io_;
    stream_protocol::acceptor acceptor_;
    asio::signal_set signals_;
    asio::thread_pool deliveryPool_;
    std::map<std::string, ipc::idl::Interface> interfaces_;
    std::map<std::string, MethodEntry> methods_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<channel::OutboxChannel> outbox_;
    std::map<std::string, std::unique_ptr<channel::Channel>> drivers_;  // by driver name: "ses", "smtp"
    std::unique_ptr<otp::OtpService> service_;
    std::unique_ptr<privacy::SubjectService> subjects_;
    std::unique_ptr<webhook::sns::Endpoint> sns_;  // served on webhook_'s listener: declared first, outlives it
    std::unique_ptr<webhook::WebhookServer> webhook_;
    std::unique_ptr<http::Server> http_;
    // The key API key secrets are hashed with, derived from the pepper.
    SecretBytes apiKeyHashKey_;
    // I/O thread: keys recently looked up (the lookup's result and when), and
    // when each key's last use was written.
    std::map<std::string, std::pair<std::optional<store::ApiKey>, std::chrono::steady_clock::time_point>> apiKeys_;
    std::map<std::string, std::int64_t> apiTouched_;
    // Set by the metrics exporter: its text is then served at GET /metrics on
    // the HTTPS listener (Prometheus text format).
    std::function<std::string()> metricsText_;
    asio::signal_set reloadSignals_{io_, SIGHUP};
    std::map<uid_t, int> perUid_;
    std::map<std::pair<uid_t, gid_t>, std::pair<Peer, std::chrono::steady_clock::time_point>> peers_;
    int connections_ = 0;
    int rootConnections() const {
        const auto it = perUid_.find(0);
        return it == perUid_.end() ? 0 : it->second;
    }
    std::chrono::steady_clock::time_point started_;
    bool ownsSocketPath_ = false;
    bool stopping_ = false;
    int inFlight_ = 0;
    std::unique_ptr<asio::steady_timer> shutdownTimer_;
    std::chrono::seconds retentionTick_;
    std::optional<privacy::CronSchedule> schedule_;
    std::int64_t nextRetention_ = 0;  // 0: the schedule never matches
    std::unique_ptr<asio::steady_timer> retentionTimer_;
    std::atomic<bool> retentionRunning_{false};
    std::chrono::seconds deliverySweepTick_{2};
    // Event webhooks: posts block on the network, so they get threads of
    // their own and never hold up code deliveries.
    std::unique_ptr<EventWebhooks> events_;
    asio::thread_pool eventPool_{4};
    std::unique_ptr<asio::steady_timer> eventTimer_;
    std::chrono::milliseconds eventTick_{1000};
    int eventTicks_ = 0;
    std::unique_ptr<asio::steady_timer> deliveryTimer_;
    std::unique_ptr<asio::steady_timer> heartbeatTimer_;
    std::int64_t startedAt_ = 0;
    int ticksSinceOutboxSweep_ = 0;

    // Flood protections (I/O thread).
    std::unique_ptr<CallLog> callLog_;
    DenialLedger denials_;
    std::int64_t denialWindowStart_ = 0;
    std::unique_ptr<asio::steady_timer> floodTimer_;
    std::uint64_t busyRefusals_ = 0;
    log::Throttled busyLog_{std::chrono::seconds(10)};
    log::Throttled acceptLog_{std::chrono::seconds(10)};
    log::Throttled callLogDrops_{std::chrono::seconds(60)};
    std::unique_ptr<asio::steady_timer> acceptTimer_;
    std::chrono::milliseconds acceptBackoff_{0};
    int stateLock_ = -1;  // the flock on <state_dir>/twofactord.lock, held while the daemon runs

    // Prometheus counters (any thread) and the [metrics] listener (I/O thread).
    metrics::Registry metrics_;
    std::unique_ptr<http::Server> metricsHttp_;  // [metrics] listen: /metrics in plain HTTP
};

}  // namespace twofactor::server::detail
