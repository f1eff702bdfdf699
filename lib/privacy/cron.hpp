// Cron schedules for the retention purges: the 5-field syntax of crontab(5),
// so operators can write the schedule they already know.
//
// Schedules are in UTC, whatever TZ the daemon runs under: a purge must not
// run twice or be skipped when the host's local time jumps for daylight
// saving, and UTC is what the store's timestamps are in anyway.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace twofactor::privacy {

// Why an expression was rejected: column is 1-based within the expression;
// message names the field and the problem, e.g. "hour: 24 is out of range 0-23".
struct CronError {
    int column;
    std::string message;
};

// "minute hour day-of-month month day-of-week", as in crontab(5):
//   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or jan..dec,
//   day-of-week 0-7 or sun..sat (0 and 7 are Sunday);
//   each field '*', N, A-B, */S, A-B/S, or a comma-separated list of these.
// Names are case-insensitive. The macros @hourly, @daily, @midnight, @weekly,
// @monthly, @yearly and @annually stand for their usual expansions; @reboot
// is rejected, since a purge schedule needs a time.
//
// When both day-of-month and day-of-week are restricted, a day matches if
// EITHER matches (Vixie cron, and Debian's crontab(5)). As there, a field
// counts as restricted unless it starts with '*': "*/2" is unrestricted, so
// "0 0 */2 * mon" means odd days that are also Mondays.
class CronSchedule {
public:
    static std::variant<CronSchedule, CronError> parse(std::string_view expression);

    // The first matching minute strictly after `after` (Unix seconds, UTC),
    // or nullopt when there is none: only for schedules that can never match,
    // such as "0 0 30 2 *". The search covers 9 years, since a satisfiable
    // schedule can wait 8 years (Feb 29 across 2100, which is not a leap year).
    // Also nullopt within 9 years of the end of int64 time, where the answer
    // would not fit.
    std::optional<std::int64_t> next(std::int64_t after) const;

    // Whether the minute holding unixTime (UTC) is scheduled.
    bool matches(std::int64_t unixTime) const;

    // The expression as written.
    const std::string& text() const { return text_; }

private:
    CronSchedule() = default;

    bool dayMatches(unsigned dayOfMonth, unsigned weekday) const;

    std::string text_;
    std::uint64_t minutes_ = 0;   // bit n: minute n
    std::uint64_t hours_ = 0;     // bit n: hour n
    std::uint64_t days_ = 0;      // bit n: day-of-month n (1-31)
    std::uint64_t months_ = 0;    // bit n: month n (1-12)
    std::uint64_t weekdays_ = 0;  // bit n: weekday n (0-6, Sunday 0; 7 is folded into 0)
    bool daysRestricted_ = false;
    bool weekdaysRestricted_ = false;
};

}  // namespace twofactor::privacy
