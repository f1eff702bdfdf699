// What both backends share: the purge categories' names and cutoffs, and the
// purge loop that drives a backend's purgeStep batch by batch.
#include "store/store.hpp"

#include "util/crypto.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>

namespace twofactor::store {

// What each category's cutoff is under the policy: rows older than it go.
std::int64_t purgeCutoff(PurgeKind kind, std::int64_t now, const RetentionPolicy& policy) {
    switch (kind) {
        case PurgeKind::CodeHashes: return now - policy.codeHashes;
        case PurgeKind::Deliveries:
        case PurgeKind::RequestLog:
        case PurgeKind::ClientData:
        case PurgeKind::SubjectFailures: return now - policy.deliveryLogs;
        case PurgeKind::RateCounters: return now - 86400;
        case PurgeKind::FraudSets: return now;
        case PurgeKind::AuthMetadata:
        case PurgeKind::AuditRecords: return now - policy.authMetadata;
        case PurgeKind::RemovedApps: return now - policy.removedApps;
    }
    return now;
}

const char* purgeKindName(PurgeKind kind) {
    switch (kind) {
        case PurgeKind::CodeHashes: return "codeHashes";
        case PurgeKind::Deliveries: return "deliveries";
        case PurgeKind::RequestLog: return "requestLog";
        case PurgeKind::ClientData: return "clientData";
        case PurgeKind::RateCounters: return "rateCounters";
        case PurgeKind::FraudSets: return "fraudSets";
        case PurgeKind::SubjectFailures: return "subjectFailures";
        case PurgeKind::AuthMetadata: return "authMetadata";
        case PurgeKind::AuditRecords: return "auditRecords";
        case PurgeKind::RemovedApps: return "removedApps";
    }
    return "?";
}

std::string nodeName(const std::string& stateDir) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "localhost");
    return std::string(host) + "~" + crypto::hex(crypto::sha256(stateDir)).substr(0, 8);
}

std::int64_t& PurgeCounts::operator[](PurgeKind k) {
    switch (k) {
        case PurgeKind::CodeHashes: return codeHashes;
        case PurgeKind::Deliveries: return deliveries;
        case PurgeKind::RequestLog: return requestLog;
        case PurgeKind::ClientData: return clientData;
        case PurgeKind::RateCounters: return rateCounters;
        case PurgeKind::FraudSets: return fraudSets;
        case PurgeKind::SubjectFailures: return subjectFailures;
        case PurgeKind::AuthMetadata: return authMetadata;
        case PurgeKind::AuditRecords: return auditRecords;
        case PurgeKind::RemovedApps: return removedApps;
    }
    return codeHashes;
}

std::int64_t PurgeCounts::total() const {
    std::int64_t n = 0;
    for (PurgeKind k : kPurgeKinds) n += (*this)[k];
    return n;
}

PurgeCounts purge(Store& store, std::int64_t now, const RetentionPolicy& policy, int batchSize, bool dryRun,
                  const std::function<void(const PurgeCounts&)>& progress) {
    PurgeCounts counts;
    if (batchSize < 1) batchSize = 1;
    for (PurgeKind kind : kPurgeOrder) {
        if (dryRun) {
            counts[kind] = runSync(
                store, [&](Transaction& t) { return t.purgeStep(kind, now, policy, batchSize, true); }, true);
            if (progress) progress(counts);
            continue;
        }
        // Each batch is its own work item: verify calls queue between them.
        // Its size adapts so that one takes about kPurgeBatchBudget of the
        // writer's time (at most batchSize rows): on a large, cold store a
        // batch of batchSize rows can hold the writer for many times that.
        // The time counted runs to the commit's end: the commit encrypts
        // and writes every page the batch dirtied, which for deletions
        // through random-keyed indexes costs as much as the deleting.
        int size = batchSize;
        for (;;) {
            std::chrono::steady_clock::time_point start{};
            std::chrono::steady_clock::duration took{};
            std::int64_t n = 0;
            std::promise<void> committed;
            auto future = committed.get_future();
            store.submitRedoable(
                [&](Transaction& t) {
                    start = std::chrono::steady_clock::now();
                    n = t.purgeStep(kind, now, policy, size, false);
                },
                [&](std::exception_ptr e) {
                    took = std::chrono::steady_clock::now() - start;
                    e ? committed.set_exception(e) : committed.set_value();
                });
            future.get();
            counts[kind] += n;
            if (progress) progress(counts);
            if (n < size) break;
            if (took > kPurgeBatchBudget && size > 16) size = std::max(16, size / 2);
            else if (took < kPurgeBatchBudget / 2 && size < batchSize) size = std::min(batchSize, size * 2);
        }
    }
    if (!dryRun) {
        std::promise<void> done;
        auto future = done.get_future();
        store.checkpoint([&](std::exception_ptr e) { e ? done.set_exception(e) : done.set_value(); });
        future.get();
    }
    return counts;
}

}  // namespace twofactor::store
