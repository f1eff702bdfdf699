// libphonenumber, behind a module of its own (twofactor-phone.so) that the
// daemon loads on the first phone number it meets: libphonenumber brings
// protobuf, ICU and abseil, about 4 MiB of resident memory and a dozen
// libraries at every start, which a site that sends only email never needs.
#pragma once

#include <string>
#include <string_view>

namespace twofactor::otp::phone {

// What the module made of a cleaned number (ASCII digits, '+' and simple
// separators): the E.164 form, or why it is not a valid number.
struct Parsed {
    bool ok = false;
    std::string e164;
    std::string reason;
};
// `region`: upper-case ISO 3166 code, "" for numbers that must carry +CC.
[[nodiscard]] Parsed parse(std::string_view cleaned, std::string_view region);
// The country calling code of an E.164 number, 0 when it has none.
[[nodiscard]] int countryCode(std::string_view e164);
// The ISO 3166 region of an E.164 number, "" when none or several share it.
[[nodiscard]] std::string region(std::string_view e164);

// Whether the module is there to load: the daemon checks at start when a
// channel takes phone numbers, so an incomplete installation stops the start
// rather than a send, and loads it only on the first number it meets.
// Throws std::runtime_error naming the path when it is missing.
void checkInstalled();
// Where the module is looked for: next to the build tree's binaries when
// running from it, else the installed path.
[[nodiscard]] std::string modulePath();

}  // namespace twofactor::otp::phone
