#include "privacy/cron.hpp"

#include <catch2/catch.hpp>

#include <ctime>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

using twofactor::privacy::CronError;
using twofactor::privacy::CronSchedule;

namespace {

// Unix seconds for a UTC civil time, via libc's timegm so the expectations do
// not share the calendar arithmetic under test.
std::int64_t utc(int year, int month, int day, int hour = 0, int minute = 0, int second = 0) {
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    return static_cast<std::int64_t>(timegm(&tm));
}

// "YYYY-MM-DD HH:MM" in UTC, so failures print readable times.
std::string show(std::optional<std::int64_t> t) {
    if (!t) return "none";
    const auto tt = static_cast<std::time_t>(*t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buffer[64];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S %a", &tm);
    return buffer;
}

CronSchedule mustParse(const std::string& expression) {
    auto result = CronSchedule::parse(expression);
    if (auto* error = std::get_if<CronError>(&result))
        FAIL("'" << expression << "' rejected at column " << error->column << ": " << error->message);
    return std::get<CronSchedule>(std::move(result));
}

std::optional<std::int64_t> nextOf(const std::string& expression, std::int64_t after) {
    return mustParse(expression).next(after);
}

}  // namespace

TEST_CASE("cron: parse accepts valid expressions", "[cron]") {
    const std::vector<std::string> valid = {
        "* * * * *",
        "0 0 * * *",
        "59 23 31 12 7",
        "0 0 1 1 0",
        "*/15 * * * *",
        "0-30/10 8-18/2 1-31/7 */3 1-5",
        "1,2,3 4,5 6,7 8,9 0,6",
        "0,*/5,7-9 * * * *",
        "0 0 * jan-mar,DEC mon-FRI",
        "0 0 * Feb Sun",
        "0 0 * * sat,sun",
        "0 0 * * 0-7",
        "0 0 * * 5-7",
        "  0\t3 * * *  ",
        "*/60 */24 */31 */12 */8",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@DAILY",
        "  @weekly  ",
    };
    for (const auto& expression : valid) {
        CAPTURE(expression);
        auto result = CronSchedule::parse(expression);
        if (auto* error = std::get_if<CronError>(&result)) FAIL(error->column << ": " << error->message);
        CHECK(std::get<CronSchedule>(result).text() == expression);
    }
}

TEST_CASE("cron: parse rejects invalid expressions with column and message", "[cron]") {
    struct Case {
        std::string expression;
        int column;
        std::string message;
    };
    const std::vector<Case> cases = {
        {"", 1, "expected 5 fields, got 0"},
        {"   ", 1, "expected 5 fields, got 0"},
        {"0 0 * *", 8, "expected 5 fields, got 4"},
        {"0 0 * * * *", 11, "expected 5 fields, got 6"},
        {"60 * * * *", 1, "minute: 60 is out of range 0-59"},
        {"0 24 * * *", 3, "hour: 24 is out of range 0-23"},
        {"0 0 0 * *", 5, "day-of-month: 0 is out of range 1-31"},
        {"0 0 32 * *", 5, "day-of-month: 32 is out of range 1-31"},
        {"0 0 * 13 *", 7, "month: 13 is out of range 1-12"},
        {"0 0 * 0 *", 7, "month: 0 is out of range 1-12"},
        {"0 0 * * 8", 9, "day-of-week: 8 is out of range 0-7"},
        {"99999999999999999999 * * * *", 1, "minute: 99999999999999999999 is out of range 0-59"},
        {"*/0 * * * *", 3, "minute: step 0"},
        {"* 1-5/0 * * *", 7, "hour: step 0"},
        {"*/61 * * * *", 3, "minute: step 61 is out of range 1-60"},
        {"* * * * */9", 11, "day-of-week: step 9 is out of range 1-8"},
        {"5/10 * * * *", 2, "minute: a step needs '*' or a range before it, as in */10 or 5-59/10"},
        {"*/ * * * *", 3, "minute: expected a number after '/'"},
        {"*/x * * * *", 3, "minute: expected a number, got 'x'"},
        {"30-10 * * * *", 1, "minute: range 30-10 goes backwards"},
        {"0 0 * * fri-mon", 9, "day-of-week: range fri-mon goes backwards"},
        {"0 0 * dec-jan *", 7, "month: range dec-jan goes backwards"},
        {"1,,2 * * * *", 3, "minute: empty list element"},
        {"1, * * * *", 3, "minute: empty list element"},
        {",1 * * * *", 1, "minute: empty list element"},
        {"0 5- * * *", 5, "hour: expected a number after '-'"},
        {"0 -5 * * *", 3, "hour: expected a number, got '-'"},
        {"0 0 * * -1", 9, "day-of-week: expected a number or name, got '-'"},
        {"abc * * * *", 1, "minute: expected a number, got 'abc'"},
        {"0 0 mon * *", 5, "day-of-month: expected a number, got 'mon'"},
        {"0 0 * mon *", 7, "month: unknown name 'mon'"},
        {"0 0 * * jan", 9, "day-of-week: unknown name 'jan'"},
        {"0 0 * * monday", 9, "day-of-week: unknown name 'monday'"},
        {"0 0 * * 1x", 10, "day-of-week: unexpected 'x'"},
        {"0 0 * * 1-2-3", 12, "day-of-week: unexpected '-'"},
        {"*-5 * * * *", 2, "minute: unexpected '-'"},
        {"0 0 * * **", 10, "day-of-week: unexpected '*'"},
        {"0 0 * * 1;2", 10, "day-of-week: unexpected ';'"},
        {"@reboot", 1, "unknown macro @reboot"},
        {"@sometimes", 1, "unknown macro @sometimes"},
        {"  @daily 0", 10, "expected nothing after @daily"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.expression);
        auto result = CronSchedule::parse(c.expression);
        auto* error = std::get_if<CronError>(&result);
        REQUIRE(error != nullptr);
        CHECK(error->message == c.message);
        CHECK(error->column == c.column);
    }
}

TEST_CASE("cron: next() against hand-computed times", "[cron]") {
    struct Case {
        std::string expression;
        std::int64_t after;
        std::optional<std::int64_t> expected;
    };
    const std::vector<Case> cases = {
        // Every quarter hour; strictly after, so an exact hit moves on.
        {"*/15 * * * *", utc(2024, 5, 10, 12, 7, 30), utc(2024, 5, 10, 12, 15)},
        {"*/15 * * * *", utc(2024, 5, 10, 12, 15), utc(2024, 5, 10, 12, 30)},
        {"*/15 * * * *", utc(2024, 5, 10, 12, 14, 59), utc(2024, 5, 10, 12, 15)},
        {"*/15 * * * *", utc(2024, 5, 10, 12, 59, 59), utc(2024, 5, 10, 13, 0)},
        // Daily at 03:00 UTC.
        {"0 3 * * *", utc(2024, 5, 10, 2, 59, 59), utc(2024, 5, 10, 3, 0)},
        {"0 3 * * *", utc(2024, 5, 10, 3, 0), utc(2024, 5, 11, 3, 0)},
        {"0 3 * * *", utc(2024, 5, 10, 3, 0, 30), utc(2024, 5, 11, 3, 0)},
        {"0 3 * * *", utc(2024, 2, 28, 4, 0), utc(2024, 2, 29, 3, 0)},
        // Monthly, across months of different lengths.
        {"30 2 1 * *", utc(2024, 1, 31, 10, 0), utc(2024, 2, 1, 2, 30)},
        {"30 2 1 * *", utc(2024, 2, 1, 2, 30), utc(2024, 3, 1, 2, 30)},
        {"30 2 1 * *", utc(2024, 2, 1, 2, 29), utc(2024, 2, 1, 2, 30)},
        // 2024-05-10 is a Friday: the next weekday midnight is Monday the 13th.
        {"0 0 * * mon-fri", utc(2024, 5, 10, 0, 0), utc(2024, 5, 13, 0, 0)},
        {"0 0 * * 1-5", utc(2024, 5, 9, 12, 0), utc(2024, 5, 10, 0, 0)},
        {"0 0 * * sat,sun", utc(2024, 5, 8), utc(2024, 5, 11)},
        {"0 0 * * 7", utc(2024, 5, 8), utc(2024, 5, 12)},
        {"0 0 * * 0", utc(2024, 5, 8), utc(2024, 5, 12)},
        // Feb 29 only exists in leap years.
        {"0 0 29 2 *", utc(2024, 3, 1), utc(2028, 2, 29)},
        {"0 0 29 2 *", utc(2024, 2, 28, 23, 59), utc(2024, 2, 29)},
        // ... and 2100 is not one: an 8-year wait, still found.
        {"0 0 29 2 *", utc(2096, 3, 1), utc(2104, 2, 29)},
        // dom/dow both restricted: either matches. 2024-10-11 is a Friday, the
        // 13th a Sunday, so the 13th comes before Friday the 18th.
        {"0 0 13 * fri", utc(2024, 10, 11), utc(2024, 10, 13)},
        {"0 0 13 * fri", utc(2024, 10, 13), utc(2024, 10, 18)},
        {"0 0 13 * fri", utc(2024, 9, 1), utc(2024, 9, 6)},
        // dom starts with '*', so it and dow must both match: odd-day Mondays
        // in May 2024 (6, 13, 20, 27) are just the 13th.
        {"0 0 */2 * mon", utc(2024, 5, 1), utc(2024, 5, 13)},
        {"0 0 */2 * mon", utc(2024, 5, 13), utc(2024, 5, 27)},
        {"0 0 */2 * mon", utc(2024, 5, 27), utc(2024, 6, 3)},
        // Sunday midnight; 2024-05-08 is a Wednesday.
        {"@weekly", utc(2024, 5, 8, 9, 0), utc(2024, 5, 12)},
        {"@weekly", utc(2024, 5, 12), utc(2024, 5, 19)},
        {"@hourly", utc(2024, 5, 8, 9, 0), utc(2024, 5, 8, 10, 0)},
        {"@daily", utc(2024, 5, 8, 9, 0), utc(2024, 5, 9)},
        {"@monthly", utc(2024, 12, 8), utc(2025, 1, 1)},
        {"@yearly", utc(2024, 1, 1), utc(2025, 1, 1)},
        // Year rollover.
        {"* * * * *", utc(2023, 12, 31, 23, 59), utc(2024, 1, 1, 0, 0)},
        {"0 0 * * *", utc(2023, 12, 31, 23, 59), utc(2024, 1, 1, 0, 0)},
        {"59 23 31 12 *", utc(2023, 12, 31, 23, 59), utc(2024, 12, 31, 23, 59)},
        {"0 0 1 jan *", utc(2023, 12, 31, 23, 59, 59), utc(2024, 1, 1)},
        // Restricted month skips whole months.
        {"0 12 15 jun,sep *", utc(2024, 6, 15, 12, 0), utc(2024, 9, 15, 12, 0)},
        // Hours skipped: the next scheduled hour starts at its first minute.
        {"10,40 9-17/4 * * *", utc(2024, 5, 8, 9, 41), utc(2024, 5, 8, 13, 10)},
        {"10,40 9-17/4 * * *", utc(2024, 5, 8, 17, 40), utc(2024, 5, 9, 9, 10)},
        // Before the epoch, where floor division matters.
        {"0 0 * * *", utc(1969, 12, 31, 12, 0), utc(1970, 1, 1)},
        {"30 * * * *", -1, utc(1970, 1, 1, 0, 30)},
        {"0 0 29 2 *", utc(1960, 3, 1), utc(1964, 2, 29)},
        // Never matches.
        {"0 0 31 4 *", utc(2024, 1, 1), std::nullopt},
        {"0 0 30 2 *", utc(2024, 1, 1), std::nullopt},
        {"0 0 31 feb,apr,jun,sep,nov *", utc(2024, 1, 1), std::nullopt},
    };
    for (const auto& c : cases) {
        CAPTURE(c.expression, show(c.after));
        const auto actual = nextOf(c.expression, c.after);
        CHECK(show(actual) == show(c.expected));
    }
}

TEST_CASE("cron: next() at the edges of the 64-bit range", "[cron]") {
    const auto schedule = mustParse("* * * * *");
    CHECK_FALSE(schedule.next(INT64_MAX).has_value());
    CHECK(schedule.next(INT64_MIN).has_value());
    CHECK(schedule.matches(INT64_MIN));
    CHECK(schedule.matches(INT64_MAX));
    CHECK(schedule.next(INT64_MAX - 400LL * 86400 * 366).has_value());
    CHECK(schedule.next(0) == 60);
}

TEST_CASE("cron: matches() at minute resolution", "[cron]") {
    const auto daily = mustParse("0 3 * * *");
    CHECK(daily.matches(utc(2024, 5, 10, 3, 0, 0)));
    CHECK(daily.matches(utc(2024, 5, 10, 3, 0, 59)));
    CHECK_FALSE(daily.matches(utc(2024, 5, 10, 3, 1, 0)));
    CHECK_FALSE(daily.matches(utc(2024, 5, 10, 2, 59, 59)));
    CHECK_FALSE(daily.matches(utc(2024, 5, 10, 4, 0, 0)));

    const auto friday13 = mustParse("0 0 13 * fri");
    CHECK(friday13.matches(utc(2024, 10, 13)));  // Sunday the 13th
    CHECK(friday13.matches(utc(2024, 10, 18)));  // Friday the 18th
    CHECK_FALSE(friday13.matches(utc(2024, 10, 14)));

    const auto weekdays = mustParse("0 0 * * mon-fri");
    CHECK(weekdays.matches(utc(2024, 5, 10)));
    CHECK_FALSE(weekdays.matches(utc(2024, 5, 11)));
    CHECK_FALSE(weekdays.matches(utc(2024, 5, 12)));

    const auto sunday7 = mustParse("0 0 * * 7");
    CHECK(sunday7.matches(utc(2024, 5, 12)));
    CHECK_FALSE(sunday7.matches(utc(2024, 5, 11)));

    const auto leap = mustParse("0 0 29 feb *");
    CHECK(leap.matches(utc(2000, 2, 29)));
    CHECK(leap.matches(utc(1968, 2, 29)));
    CHECK_FALSE(leap.matches(utc(2000, 3, 1)));

    // One second before the epoch is 23:59 on Wednesday 1969-12-31.
    CHECK(mustParse("59 23 * * wed").matches(-1));
    CHECK(mustParse("59 23 31 12 *").matches(-1));
    CHECK_FALSE(mustParse("59 23 * * thu").matches(-1));
    CHECK_FALSE(mustParse("0 0 * * *").matches(-1));
}

namespace {

// A randomly generated field: its text, and the values it must mean,
// derived from how it was built rather than by parsing it.
struct GeneratedField {
    std::string text;
    std::uint64_t mask = 0;
};

struct GeneratedSpec {
    int min;
    int max;
    const char* const* names;  // value v's name is names[v - nameBase], or nullptr
    int nameBase;
    int nameCount;
};

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

class Generator {
public:
    explicit Generator(std::uint32_t seed) : rng_(seed) {}

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

    std::string value(const GeneratedSpec& spec, int v) {
        const int index = v - spec.nameBase;
        if (spec.names && index >= 0 && index < spec.nameCount && uniform(0, 2) == 0) {
            std::string name = spec.names[index];
            for (auto& c : name)
                if (uniform(0, 3) == 0) c = static_cast<char>(c - 'a' + 'A');
            return name;
        }
        return std::to_string(v);
    }

    GeneratedField field(const GeneratedSpec& spec) {
        GeneratedField out;
        // Plenty of bare stars keeps most schedules matching within the window.
        if (uniform(0, 9) < 4) {
            out.text = "*";
            for (int v = spec.min; v <= spec.max; ++v) out.mask |= std::uint64_t{1} << v;
            return out;
        }
        const int elements = uniform(1, 3);
        for (int e = 0; e < elements; ++e) {
            if (e > 0) out.text += ",";
            int lo = spec.min, hi = spec.max, step = 1;
            switch (uniform(0, 4)) {
                case 0:
                    out.text += "*";
                    break;
                case 1:
                    lo = hi = uniform(spec.min, spec.max);
                    out.text += value(spec, lo);
                    break;
                case 2:
                    lo = uniform(spec.min, spec.max);
                    hi = uniform(lo, spec.max);
                    out.text += value(spec, lo) + "-" + value(spec, hi);
                    break;
                case 3:
                    step = uniform(1, spec.max - spec.min + 1);
                    out.text += "*/" + std::to_string(step);
                    break;
                default:
                    lo = uniform(spec.min, spec.max);
                    hi = uniform(lo, spec.max);
                    step = uniform(1, spec.max - spec.min + 1);
                    out.text += value(spec, lo) + "-" + value(spec, hi) + "/" + std::to_string(step);
                    break;
            }
            for (int v = lo; v <= hi; v += step) out.mask |= std::uint64_t{1} << v;
        }
        return out;
    }

private:
    std::mt19937 rng_;
};

// The schedule a generated expression must mean, matched the slow way.
struct Reference {
    std::uint64_t minutes, hours, days, months, weekdays;
    bool daysRestricted, weekdaysRestricted;

    bool dayMatches(const std::tm& tm) const {
        const bool day = (days >> tm.tm_mday) & 1;
        const bool week = (weekdays >> tm.tm_wday) & 1;
        return (daysRestricted && weekdaysRestricted) ? (day || week) : (day && week);
    }

    bool matches(std::int64_t t) const {
        const auto tt = static_cast<std::time_t>(t);
        std::tm tm{};
        gmtime_r(&tt, &tm);
        return ((months >> (tm.tm_mon + 1)) & 1) && dayMatches(tm) && ((hours >> tm.tm_hour) & 1) &&
               ((minutes >> tm.tm_min) & 1);
    }
};

}  // namespace

TEST_CASE("cron: next() and matches() agree with a minute-by-minute search", "[cron]") {
    Generator gen(20240510);
    const GeneratedSpec specs[5] = {
        {0, 59, nullptr, 0, 0}, {0, 23, nullptr, 0, 0}, {1, 31, nullptr, 0, 0},
        {1, 12, kMonths, 1, 12}, {0, 7, kDays, 0, 7},
    };
    constexpr int kExpressions = 400;
    constexpr std::int64_t kWindowMinutes = 400 * 24 * 60;  // a little over a year
    int foundInWindow = 0;
    int notInWindow = 0;

    for (int i = 0; i < kExpressions; ++i) {
        GeneratedField fields[5];
        std::string expression;
        for (int f = 0; f < 5; ++f) {
            fields[f] = gen.field(specs[f]);
            expression += (f ? " " : "") + fields[f].text;
        }
        const Reference ref{fields[0].mask,
                            fields[1].mask,
                            fields[2].mask,
                            fields[3].mask,
                            (fields[4].mask | (fields[4].mask >> 7)) & 0x7f,
                            fields[2].text[0] != '*',
                            fields[4].text[0] != '*'};
        // Anywhere from 1901 to 2199, seconds included, before the epoch too.
        const std::int64_t after = utc(gen.uniform(1901, 2199), gen.uniform(1, 12), gen.uniform(1, 28),
                                       gen.uniform(0, 23), gen.uniform(0, 59), gen.uniform(0, 59));
        CAPTURE(expression, show(after));
        const auto schedule = mustParse(expression);

        // The naive search: every minute after `after`, for the window.
        std::optional<std::int64_t> expected;
        const std::int64_t first = (after / 60 + (after % 60 < 0 ? 0 : 1)) * 60;
        std::int64_t t = first;
        const Reference* r = &ref;
        std::tm day{};
        std::int64_t dayStart = 0;
        bool haveDay = false;
        bool dayOk = false;
        for (std::int64_t m = 0; m < kWindowMinutes; ++m, t += 60) {
            // The calendar part only changes at midnight: check it once a day.
            if (!haveDay || t - dayStart >= 86400) {
                haveDay = true;
                dayStart = t - (((t % 86400) + 86400) % 86400);
                const auto tt = static_cast<std::time_t>(dayStart);
                gmtime_r(&tt, &day);
                dayOk = ((r->months >> (day.tm_mon + 1)) & 1) && r->dayMatches(day);
            }
            if (!dayOk) continue;
            const std::int64_t secondOfDay = t - dayStart;
            if (((r->hours >> (secondOfDay / 3600)) & 1) && ((r->minutes >> (secondOfDay / 60 % 60)) & 1)) {
                expected = t;
                break;
            }
        }

        const auto actual = schedule.next(after);
        if (expected) {
            ++foundInWindow;
            CHECK(show(actual) == show(expected));
        } else {
            ++notInWindow;
            // Nothing in the window: next() must land beyond it, or nowhere.
            if (actual) {
                CHECK(*actual >= first + kWindowMinutes * 60);
                CHECK(ref.matches(*actual));
            }
        }

        // matches() against the reference, at the answer and at random times.
        if (actual) CHECK(schedule.matches(*actual));
        for (int k = 0; k < 20; ++k) {
            const std::int64_t probe = after + gen.uniform(0, 366 * 86400);
            CAPTURE(show(probe));
            CHECK(schedule.matches(probe) == ref.matches(probe));
        }
    }
    // Guards against a generator so restrictive that the comparison is vacuous.
    INFO("in window " << foundInWindow << ", not " << notInWindow);
    CHECK(foundInWindow > kExpressions * 3 / 4);
}
