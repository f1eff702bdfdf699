// Where a code is sent: classification, validation and normalisation of
// e-mail addresses and phone numbers, plus masking for operator display.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace twofactor::otp {

enum class DestinationKind { Email, Phone };

struct Destination {
    DestinationKind kind;
    std::string normalized;  // "user@xn--bcher-kva.de" or E.164 "+4915112345678"
};

// A human sentence naming what is wrong. It never contains the input itself:
// destinations are personal data and reasons may end up in logs.
struct DestinationError {
    std::string reason;
};

// Classifies (contains '@' => e-mail, otherwise phone) and normalises.
//
// E-mail: surrounding whitespace trimmed; <= 254 octets in total (measured on
// the normalised, A-label form, which is what travels over SMTP); local part
// 1..64 octets, an RFC 5322 dot-atom whose atoms may also contain UTF-8
// (RFC 6531); quoted local parts and domain literals are not accepted.
// Domain: at least two labels of 1..63 octets, letters/digits/hyphens with no
// hyphen at either end, top-level label not all-numeric. Unicode labels are
// converted to A-labels ("xn--...") with an RFC 3492 Punycode encoder.
// Limitations, deliberately: the domain is lower-cased for ASCII and for the
// Latin-1, Latin Extended-A, basic Greek and basic Cyrillic letters only; no
// full Unicode case folding, no NFC normalisation and no IDNA2008 code point
// tables (only obvious spoofing/invisible characters are refused). The local
// part is kept exactly as given (its case may matter to the receiving MTA).
//
// Phone: parsed with libphonenumber using `defaultRegion` (ISO 3166 alpha-2,
// e.g. "DE"; "" means the number must start with + and a country code), must
// be a valid number (not merely a possible one); output is E.164. Accepts the
// separators people type (spaces, dashes, dots, slashes, parentheses) and an
// international "00" prefix where the region uses it; refuses letters and
// extensions, because a code cannot be delivered to either.
[[nodiscard]] std::variant<Destination, DestinationError> parseDestination(std::string_view input,
                                                                          std::string_view defaultRegion = "");

// The ISO 3166 region of an E.164 number ("DE"); "" when unknown, including
// non-geographic numbers (+800, +882, ...) which have no ISO region.
[[nodiscard]] std::string phoneRegion(std::string_view e164);

// The form an email address is matched by, for apps that match local parts
// case-insensitively (the default; `email_local_part = "exact"` opts out):
// the local part lower-cased with the same letters the domain is, so
// "John.Doe@Example.org" and "john.doe@example.org" are one subject. The
// address a code is sent to keeps the case it was given in. Phone numbers
// (and anything that is not an email address) come back unchanged.
[[nodiscard]] std::string emailMatchForm(const Destination& d);

// For display to operators: "j***@example.org", "+49151*****678". Works on
// normalised destinations; anything unexpected is masked more, never less.
[[nodiscard]] std::string maskDestination(const Destination& d);

// The channel a destination uses by default: Email -> "email", Phone -> "whatsapp".
[[nodiscard]] const char* defaultChannel(DestinationKind kind);

// RFC 3492 Punycode encoding of one label's code points (no "xn--" prefix).
// Basic code points are copied as given. nullopt on arithmetic overflow,
// which only absurdly long inputs can reach. Exposed for tests.
[[nodiscard]] std::optional<std::string> punycodeEncode(std::u32string_view input);

}  // namespace twofactor::otp
