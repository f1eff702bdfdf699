// [retention]: the purge job's schedule and periods.
#include "config/sections.hpp"
#include "privacy/cron.hpp"

namespace twofactor::config::detail {

void readRetention(const Reader& reader, const toml::table& t, Retention& retention) {
    reader.allowOnly(t, "retention", {"schedule", "code_hashes", "delivery_logs", "authentication_metadata",
                                       "removed_apps", "batch_size"});
    if (const toml::node* n = t.get("schedule")) {
        std::string text = reader.string(*n, "retention.schedule");
        auto parsed = privacy::CronSchedule::parse(text);
        if (const auto* e = std::get_if<privacy::CronError>(&parsed)) {
            reader.fail(*n, "retention.schedule",
                        "invalid cron expression \"" + text + "\" (column " + std::to_string(e->column) + ": " +
                            e->message + ")");
        }
        if (!std::get<privacy::CronSchedule>(parsed).next(0)) {
            reader.fail(*n, "retention.schedule", "\"" + text + "\" never matches");
        }
        retention.schedule = std::move(text);
    }
    if (const toml::node* n = t.get("code_hashes")) {
        retention.codeHashes = reader.integer(*n, "retention.code_hashes", 60, 31536000, "seconds");
    }
    if (const toml::node* n = t.get("delivery_logs")) {
        retention.deliveryLogs = reader.integer(*n, "retention.delivery_logs", 3600, 3650LL * 86400, "seconds");
    }
    if (const toml::node* n = t.get("authentication_metadata")) {
        retention.authenticationMetadata =
            reader.integer(*n, "retention.authentication_metadata", 86400, 3650LL * 86400, "seconds");
    }
    if (const toml::node* n = t.get("removed_apps")) {
        retention.removedApps = reader.integer(*n, "retention.removed_apps", 0, 3650LL * 86400, "seconds");
    }
    // Authentication metadata outlives the delivery log it was distilled from.
    if (retention.authenticationMetadata < retention.deliveryLogs) {
        const toml::node* given = t.get("authentication_metadata");
        reader.fail(given != nullptr ? *given : *t.get("delivery_logs"), "retention.authentication_metadata",
                    "must not be shorter than retention.delivery_logs (" + std::to_string(retention.deliveryLogs) +
                        " s)");
    }
    if (const toml::node* n = t.get("batch_size")) {
        retention.batchSize = static_cast<int>(reader.integer(*n, "retention.batch_size", 1, 100000));
    }
}

}  // namespace twofactor::config::detail
