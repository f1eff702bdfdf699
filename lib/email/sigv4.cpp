#include "email/sigv4.hpp"

#include "util/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <initializer_list>

namespace twofactor::email {

namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

// An intermediate or final signing key. Each one is as good as the secret for
// the scope it covers, so it is wiped as soon as it goes out of scope.
struct SigningKey {
    crypto::Digest bytes{};

    SigningKey() = default;
    SigningKey(const SigningKey&) = delete;
    SigningKey& operator=(const SigningKey&) = delete;
    ~SigningKey() { OPENSSL_cleanse(bytes.data(), bytes.size()); }

    std::string_view view() const { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }
};

// HMAC("AWS4" + secret, steps[0]), then each further step keyed by the previous result.
void deriveKey(SigningKey& key, const SecretString& secret, std::initializer_list<std::string_view> steps) {
    SecretBytes seed(4 + secret.size());
    std::memcpy(seed.data(), "AWS4", 4);
    if (!secret.empty()) std::memcpy(seed.data() + 4, secret.view().data(), secret.size());
    bool first = true;
    for (std::string_view step : steps) {
        key.bytes = first ? crypto::hmacSha256(seed, step) : crypto::hmacSha256(key.view(), step);
        first = false;
    }
}

bool isUnreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

// RFC 3986 percent-encoding of everything but the unreserved characters,
// with upper-case hex digits as AWS requires.
void uriEncode(std::string& out, std::string_view in) {
    static const char digits[] = "0123456789ABCDEF";
    for (unsigned char c : in) {
        if (isUnreserved(c)) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A stray '%' without two hex digits stays literal, so it is re-encoded as
// %25, the same way AWS reads it.
std::string percentDecode(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size()) {
            const int hi = hexValue(in[i + 1]), lo = hexValue(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(in[i]);
    }
    return out;
}

// RFC 3986 section 5.2.4 dot-segment removal plus collapsing of empty
// segments, then each segment encoded. The path is not decoded first: AWS
// signs the encoding of the path as sent, i.e. it is encoded twice in total.
std::string canonicalPath(std::string_view path) {
    std::vector<std::string_view> segments;
    bool trailingSlash = false;
    std::size_t start = 0;
    while (start <= path.size()) {
        const std::size_t end = std::min(path.find('/', start), path.size());
        const std::string_view segment = path.substr(start, end - start);
        const bool last = end == path.size();
        if (segment == "..") {
            if (!segments.empty()) segments.pop_back();
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        // "/a/" and "/a/b/.." both name a directory; "/a" does not.
        if (last) trailingSlash = segment.empty() || segment == "." || segment == "..";
        start = end + 1;
    }
    std::string out = "/";
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (i > 0) out.push_back('/');
        uriEncode(out, segments[i]);
    }
    if (trailingSlash && !segments.empty()) out.push_back('/');
    return out;
}

// Parameters are decoded and re-encoded so that "%e1%88%b4", "%E1%88%B4" and
// the raw bytes all sign alike, then sorted by key and value (byte order).
std::string canonicalQuery(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> params;
    std::size_t start = 0;
    while (start < query.size()) {
        const std::size_t end = std::min(query.find('&', start), query.size());
        const std::string_view item = query.substr(start, end - start);
        start = end + 1;
        if (item.empty()) continue;
        const std::size_t eq = item.find('=');
        std::string key, value;
        uriEncode(key, percentDecode(item.substr(0, eq)));
        if (eq != std::string_view::npos) uriEncode(value, percentDecode(item.substr(eq + 1)));
        params.emplace_back(std::move(key), std::move(value));
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [key, value] : params) {
        if (!out.empty()) out.push_back('&');
        out += key;
        out.push_back('=');
        out += value;
    }
    return out;
}

std::string toLower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// Headers that proxies and HTTP libraries add, drop or rewrite in transit;
// signing them would make the signature fail for reasons outside our control.
bool isUnsignable(std::string_view lowerName) {
    static constexpr std::string_view names[] = {"connection",        "expect",  "keep-alive", "te", "trailer",
                                                 "transfer-encoding", "upgrade", "user-agent"};
    return lowerName.starts_with("proxy-") ||
           std::find(std::begin(names), std::end(names), lowerName) != std::end(names);
}

bool isValidHeaderName(std::string_view name) {
    if (name.empty()) return false;
    for (unsigned char c : name)
        if (c <= ' ' || c >= 0x7f || c == ':') return false;
    return true;
}

// Trimmed, with each run of spaces and tabs reduced to one space.
std::string canonicalValue(std::string_view value) {
    std::string out;
    bool pendingSpace = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') {
            pendingSpace = !out.empty();
            continue;
        }
        if (pendingSpace) out.push_back(' ');
        pendingSpace = false;
        out.push_back(c);
    }
    return out;
}

bool isAmzDate(std::string_view d) {
    if (d.size() != 16 || d[8] != 'T' || d[15] != 'Z') return false;
    for (std::size_t i = 0; i < 15; ++i)
        if (i != 8 && (d[i] < '0' || d[i] > '9')) return false;
    return true;
}

// Region and service become part of the credential scope, which is '/'-separated.
bool isScopePart(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

}  // namespace

std::variant<SigV4Result, SigV4Error> signV4(const HttpRequestToSign& request, const AwsCredentials& credentials,
                                             std::string_view region, std::string_view service,
                                             std::string_view amzDate) {
    if (!isAmzDate(amzDate)) return SigV4Error{"the request date is not in the form 20150830T123600Z"};
    if (!isScopePart(region)) return SigV4Error{"the region is empty or has characters other than a-z, 0-9 and '-'"};
    if (!isScopePart(service)) return SigV4Error{"the service is empty or has characters other than a-z, 0-9 and '-'"};
    if (service == "s3") return SigV4Error{"S3's canonical path rules are not implemented"};
    if (credentials.accessKeyId.empty() || credentials.secretAccessKey.empty())
        return SigV4Error{"the access key id or the secret access key is empty"};
    if (credentials.sessionToken.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
        return SigV4Error{"the session token contains a line break or NUL"};

    std::vector<std::pair<std::string, std::string>> headers;  // lower-case name, canonical value
    bool hasHost = false;
    for (const auto& [name, value] : request.headers) {
        if (!isValidHeaderName(name)) return SigV4Error{"a header name is empty or not a token"};
        if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            return SigV4Error{"the value of header " + name + " contains a line break or NUL"};
        std::string lower = toLower(name);
        if (lower == "x-amz-date" || lower == "authorization" ||
            (lower == "x-amz-security-token" && !credentials.sessionToken.empty()))
            return SigV4Error{"the request already carries " + name + ", which the signer adds"};
        if (isUnsignable(lower)) continue;
        hasHost |= lower == "host";
        headers.emplace_back(std::move(lower), canonicalValue(value));
    }
    if (!hasHost) return SigV4Error{"the request has no Host header"};

    SigV4Result result;
    result.headersToAdd.emplace_back("X-Amz-Date", std::string(amzDate));
    headers.emplace_back("x-amz-date", std::string(amzDate));
    if (!credentials.sessionToken.empty()) {
        // Signed, as the AWS SDKs do; SES accepts it either way.
        result.headersToAdd.emplace_back("X-Amz-Security-Token", credentials.sessionToken);
        headers.emplace_back("x-amz-security-token", canonicalValue(credentials.sessionToken));
    }
    // Stable, so repeated headers keep the order in which they are sent.
    std::stable_sort(headers.begin(), headers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

    std::string canonicalHeaders, signedHeaders;
    for (std::size_t i = 0; i < headers.size(); ++i) {
        if (i > 0 && headers[i].first == headers[i - 1].first) {
            canonicalHeaders.back() = ',';  // replaces the previous line's '\n'
        } else {
            if (!signedHeaders.empty()) signedHeaders.push_back(';');
            signedHeaders += headers[i].first;
            canonicalHeaders += headers[i].first;
            canonicalHeaders.push_back(':');
        }
        canonicalHeaders += headers[i].second;
        canonicalHeaders.push_back('\n');
    }

    result.canonicalRequest = request.method + '\n' + canonicalPath(request.path) + '\n' +
                              canonicalQuery(request.query) + '\n' + canonicalHeaders + '\n' + signedHeaders + '\n' +
                              crypto::hex(crypto::sha256(request.body));

    const std::string_view day = amzDate.substr(0, 8);
    std::string scope(day);
    scope.append("/").append(region).append("/").append(service).append("/aws4_request");
    result.stringToSign = std::string(kAlgorithm) + '\n' + std::string(amzDate) + '\n' + scope + '\n' +
                          crypto::hex(crypto::sha256(result.canonicalRequest));

    SigningKey key;
    deriveKey(key, credentials.secretAccessKey, {day, region, service, "aws4_request"});
    result.signature = crypto::hex(crypto::hmacSha256(key.view(), result.stringToSign));

    result.authorization = std::string(kAlgorithm) + " Credential=" + credentials.accessKeyId + '/' + scope +
                           ", SignedHeaders=" + signedHeaders + ", Signature=" + result.signature;
    result.headersToAdd.emplace_back("Authorization", result.authorization);
    return result;
}

std::string amzDate(std::int64_t unixSeconds) {
    const auto t = static_cast<std::time_t>(unixSeconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return std::string(buf, n);
}

std::string amzDateNow() { return amzDate(static_cast<std::int64_t>(std::time(nullptr))); }

SecretString sesSmtpPassword(const SecretString& secretAccessKey, std::string_view region) {
    // The fixed date and the "SendRawEmail" message are part of the published
    // algorithm; the leading 0x04 tells SES which version derived the password.
    SigningKey key;
    deriveKey(key, secretAccessKey, {"11111111", region, "ses", "aws4_request", "SendRawEmail"});
    SecretBytes raw(1 + key.bytes.size());
    raw.data()[0] = 0x04;
    std::memcpy(raw.data() + 1, key.bytes.data(), key.bytes.size());

    std::string encoded(4 * ((raw.size() + 2) / 3) + 1, '\0');  // + 1 for the NUL EVP_EncodeBlock writes
    const int n =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()), raw.data(), static_cast<int>(raw.size()));
    encoded.resize(static_cast<std::size_t>(n));
    return SecretString(std::move(encoded));
}

}  // namespace twofactor::email
