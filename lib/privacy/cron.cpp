#include "privacy/cron.hpp"

#include <array>
#include <bit>
#include <algorithm>
#include <limits>
#include <vector>

namespace twofactor::privacy {

namespace {

// ---- UTC calendar arithmetic -----------------------------------------------
// Howard Hinnant's days_from_civil / civil_from_days
// (https://howardhinnant.github.io/date_algorithms.html): pure arithmetic, so
// unlike timegm/gmtime it reads no TZ, takes no lock, and covers any year.

struct Civil {
    std::int64_t year;
    unsigned month;  // 1-12
    unsigned day;    // 1-31
};

constexpr std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

constexpr std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = floorDiv(y, 400);
    const auto yoe = static_cast<unsigned>(y - era * 400);                 // [0, 399]
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr Civil civilFromDays(std::int64_t z) {
    z += 719468;
    const std::int64_t era = floorDiv(z, 146097);
    const auto doe = static_cast<unsigned>(z - era * 146097);                  // [0, 146096]
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              // [0, 365]
    const unsigned mp = (5 * doy + 2) / 153;                                   // [0, 11]
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;                           // [1, 31]
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;                              // [1, 12]
    return {static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

// 0 = Sunday; day 0 (1970-01-01) was a Thursday.
constexpr unsigned weekdayFromDays(std::int64_t z) {
    return static_cast<unsigned>(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6);
}

static_assert(daysFromCivil(1970, 1, 1) == 0);
static_assert(daysFromCivil(2000, 3, 1) == 11017);
static_assert(civilFromDays(11016).month == 2 && civilFromDays(11016).day == 29);
static_assert(weekdayFromDays(0) == 4 && weekdayFromDays(-1) == 3);

constexpr std::int64_t kSecondsPerDay = 86400;
// See next(): long enough for any schedule that can match at all.
constexpr std::int64_t kSearchDays = 9 * 366;
constexpr std::int64_t kSearchSeconds = (kSearchDays + 1) * kSecondsPerDay;

// The lowest set bit of mask at or above `from`, or -1.
int nextBit(std::uint64_t mask, unsigned from) {
    if (from >= 64) return -1;
    mask &= ~std::uint64_t{0} << from;
    return mask == 0 ? -1 : std::countr_zero(mask);
}

// ---- Parsing ----------------------------------------------------------------

struct FieldSpec {
    const char* name;
    int min;
    int max;
    const std::array<const char*, 12>* names;  // names[i] is value i + nameBase
    int nameBase;
};

constexpr std::array<const char*, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                     "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 12> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri",
                                                   "sat", nullptr, nullptr, nullptr, nullptr, nullptr};

const std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, nullptr, 0},
    {"hour", 0, 23, nullptr, 0},
    {"day-of-month", 1, 31, nullptr, 0},
    {"month", 1, 12, &kMonthNames, 1},
    {"day-of-week", 0, 7, &kDayNames, 0},
}};

struct Macro {
    const char* name;
    const char* expansion;
};

constexpr std::array<Macro, 7> kMacros = {{
    {"@hourly", "0 * * * *"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
}};

bool isSpace(char c) { return c == ' ' || c == '\t'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

struct Token {
    std::string_view text;
    int column;  // 1-based
};

std::vector<Token> splitFields(std::string_view s) {
    std::vector<Token> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && isSpace(s[i])) ++i;
        if (i == s.size()) break;
        const std::size_t start = i;
        while (i < s.size() && !isSpace(s[i])) ++i;
        out.push_back({s.substr(start, i - start), static_cast<int>(start) + 1});
    }
    return out;
}

// Reads one field, reporting errors with the field's name and exact column.
class FieldParser {
public:
    FieldParser(const FieldSpec& spec, Token field) : spec_(spec), text_(field.text), column_(field.column) {}

    // The field's values as a bit mask, or the first error.
    std::variant<std::uint64_t, CronError> parse() {
        std::uint64_t mask = 0;
        std::size_t start = 0;
        while (true) {
            const std::size_t comma = text_.find(',', start);
            const std::size_t end = comma == std::string_view::npos ? text_.size() : comma;
            if (!element(start, end, mask)) return *error_;
            if (comma == std::string_view::npos) return mask;
            start = comma + 1;
        }
    }

private:
    bool fail(std::size_t at, std::string problem) {
        error_ = CronError{column_ + static_cast<int>(at), std::string(spec_.name) + ": " + problem};
        return false;
    }

    std::string quoted(std::size_t at) const { return "'" + std::string(1, text_[at]) + "'"; }

    // One list element in text_[start, end): *, N, A-B, */S or A-B/S.
    bool element(std::size_t start, std::size_t end, std::uint64_t& mask) {
        if (start == end) return fail(start, "empty list element");
        std::size_t pos = start;
        int lo = spec_.min;
        int hi = spec_.max;
        bool isRange = true;
        if (text_[pos] == '*') {
            ++pos;
        } else {
            if (!value(pos, end, spec_.names, lo)) return false;
            hi = lo;
            isRange = false;
            if (pos < end && text_[pos] == '-') {
                ++pos;
                if (!value(pos, end, spec_.names, hi)) return false;
                if (hi < lo)
                    return fail(start, "range " + std::string(text_.substr(start, pos - start)) +
                                           " goes backwards");
                isRange = true;
            }
        }
        int step = 1;
        if (pos < end && text_[pos] == '/') {
            // Some crons read "5/10" as "5-max/10", others reject it; refusing
            // it avoids guessing which one the operator had in mind.
            if (!isRange) return fail(pos, "a step needs '*' or a range before it, as in */10 or 5-59/10");
            ++pos;
            const std::size_t stepAt = pos;
            if (!value(pos, end, nullptr, step, /*checkRange=*/false)) return false;
            const int span = spec_.max - spec_.min + 1;
            if (step == 0) return fail(stepAt, "step 0");
            if (step > span)
                return fail(stepAt, "step " + std::string(text_.substr(stepAt, pos - stepAt)) +
                                        " is out of range 1-" + std::to_string(span));
        }
        if (pos < end) return fail(pos, "unexpected " + quoted(pos));
        for (int v = lo; v <= hi; v += step) mask |= std::uint64_t{1} << v;
        return true;
    }

    // A number, or a name when the field has names, starting at pos.
    bool value(std::size_t& pos, std::size_t end, const std::array<const char*, 12>* names, int& out,
               bool checkRange = true) {
        const std::size_t start = pos;
        const char* expected = names ? "a number or name" : "a number";
        if (pos == end)
            return pos == 0 ? fail(pos, std::string("expected ") + expected)
                            : fail(pos, std::string("expected ") + expected + " after " + quoted(pos - 1));
        if (isDigit(text_[pos])) {
            // Saturates rather than overflowing, so "99999999999" is reported
            // as out of range instead of wrapping into it.
            long value = 0;
            while (pos < end && isDigit(text_[pos])) {
                value = std::min(value * 10 + (text_[pos] - '0'), 1000000L);
                ++pos;
            }
            out = static_cast<int>(value);
            if (checkRange && (out < spec_.min || out > spec_.max))
                return fail(start, std::string(text_.substr(start, pos - start)) + " is out of range " +
                                       std::to_string(spec_.min) + "-" + std::to_string(spec_.max));
            return true;
        }
        if (isAlpha(text_[pos])) {
            while (pos < end && isAlpha(text_[pos])) ++pos;
            const std::string_view word = text_.substr(start, pos - start);
            if (!names) return fail(start, std::string("expected a number, got '") + std::string(word) + "'");
            for (std::size_t i = 0; i < names->size(); ++i) {
                if ((*names)[i] && equalsIgnoreCase(word, (*names)[i])) {
                    out = static_cast<int>(i) + spec_.nameBase;
                    return true;
                }
            }
            return fail(start, "unknown name '" + std::string(word) + "'");
        }
        return fail(start, std::string("expected ") + expected + ", got " + quoted(start));
    }

    const FieldSpec& spec_;
    std::string_view text_;
    int column_;
    std::optional<CronError> error_;
};

}  // namespace

std::variant<CronSchedule, CronError> CronSchedule::parse(std::string_view expression) {
    std::vector<Token> fields = splitFields(expression);

    // A macro is parsed as its expansion, with errors placed on the macro.
    if (!fields.empty() && fields[0].text.front() == '@') {
        if (fields.size() > 1)
            return CronError{fields[1].column, "expected nothing after " + std::string(fields[0].text)};
        const Macro* found = nullptr;
        for (const auto& macro : kMacros)
            if (equalsIgnoreCase(fields[0].text, macro.name)) found = &macro;
        if (!found) return CronError{fields[0].column, "unknown macro " + std::string(fields[0].text)};
        auto result = parse(found->expansion);
        if (auto* schedule = std::get_if<CronSchedule>(&result)) schedule->text_ = std::string(expression);
        return result;
    }

    if (fields.size() != kFields.size()) {
        // Too few: point just past the last field, where the next belongs.
        const int column = fields.size() > kFields.size() ? fields[kFields.size()].column
                           : fields.empty()              ? 1
                                                         : fields.back().column + static_cast<int>(fields.back().text.size());
        return CronError{column, "expected 5 fields, got " + std::to_string(fields.size())};
    }

    CronSchedule schedule;
    schedule.text_ = std::string(expression);
    std::array<std::uint64_t, 5> masks{};
    for (std::size_t i = 0; i < kFields.size(); ++i) {
        auto result = FieldParser(kFields[i], fields[i]).parse();
        if (auto* error = std::get_if<CronError>(&result)) return std::move(*error);
        masks[i] = std::get<std::uint64_t>(result);
    }
    schedule.minutes_ = masks[0];
    schedule.hours_ = masks[1];
    schedule.days_ = masks[2];
    schedule.months_ = masks[3];
    // Sunday may be written 7; fold it into 0 so a weekday is one bit.
    schedule.weekdays_ = (masks[4] | (masks[4] >> 7)) & 0x7f;
    schedule.daysRestricted_ = fields[2].text.front() != '*';
    schedule.weekdaysRestricted_ = fields[4].text.front() != '*';
    return schedule;
}

bool CronSchedule::dayMatches(unsigned dayOfMonth, unsigned weekday) const {
    const bool day = (days_ >> dayOfMonth) & 1;
    const bool week = (weekdays_ >> weekday) & 1;
    return (daysRestricted_ && weekdaysRestricted_) ? (day || week) : (day && week);
}

bool CronSchedule::matches(std::int64_t unixTime) const {
    const std::int64_t days = floorDiv(unixTime, kSecondsPerDay);
    // Not unixTime - days * 86400: that product overflows for the first day of int64 time.
    const auto secondOfDay = static_cast<unsigned>((unixTime % kSecondsPerDay + kSecondsPerDay) % kSecondsPerDay);
    const Civil civil = civilFromDays(days);
    return ((months_ >> civil.month) & 1) && dayMatches(civil.day, weekdayFromDays(days)) &&
           ((hours_ >> (secondOfDay / 3600)) & 1) && ((minutes_ >> (secondOfDay / 60 % 60)) & 1);
}

std::optional<std::int64_t> CronSchedule::next(std::int64_t after) const {
    // Beyond this the result would not fit in 64 bits; nothing meaningful lives there.
    if (after > std::numeric_limits<std::int64_t>::max() - kSearchSeconds) return std::nullopt;
    // Likewise the first day of int64 time, 292 billion years ago, whose
    // midnight is not representable; starting a day later keeps the day
    // arithmetic below in range.
    after = std::max(after, std::numeric_limits<std::int64_t>::min() + kSecondsPerDay);

    // The first candidate is the start of the minute after the one holding `after`.
    const std::int64_t start = (floorDiv(after, 60) + 1) * 60;
    std::int64_t days = floorDiv(start, kSecondsPerDay);
    auto minuteOfDay = static_cast<unsigned>((start - days * kSecondsPerDay) / 60);
    const std::int64_t lastDay = days + kSearchDays;

    // Each step skips a whole non-matching month, day or hour, so this takes
    // at most a few thousand iterations even for schedules that never match.
    while (days <= lastDay) {
        const Civil civil = civilFromDays(days);
        if (!((months_ >> civil.month) & 1)) {
            days = civil.month == 12 ? daysFromCivil(civil.year + 1, 1, 1)
                                     : daysFromCivil(civil.year, civil.month + 1, 1);
            minuteOfDay = 0;
            continue;
        }
        if (!dayMatches(civil.day, weekdayFromDays(days))) {
            ++days;
            minuteOfDay = 0;
            continue;
        }
        const unsigned hour = minuteOfDay / 60;
        if ((hours_ >> hour) & 1) {
            const int minute = nextBit(minutes_, minuteOfDay % 60);
            if (minute >= 0) return days * kSecondsPerDay + hour * 3600 + minute * 60;
        }
        // The rest of this hour has nothing (or it is not scheduled at all);
        // the next scheduled hour today starts at its first scheduled minute.
        const int nextHour = nextBit(hours_, hour + 1);
        if (nextHour >= 0) return days * kSecondsPerDay + nextHour * 3600 + std::countr_zero(minutes_) * 60;
        ++days;
        minuteOfDay = 0;
    }
    return std::nullopt;
}

}  // namespace twofactor::privacy
