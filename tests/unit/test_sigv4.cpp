#include "email/sigv4.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

using namespace twofactor;
using namespace twofactor::email;
namespace fs = std::filesystem;

namespace {

// AWS's published suite (2015-08-30 edition), shared with the other projects.
const fs::path kSuiteDir = fs::path(TWOFACTOR_SOURCE_DIR "/../shared/testdata/aws-sig-v4-test-suite");
constexpr const char* kAccessKeyId = "AKIDEXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kDate = "20150830T123600Z";
constexpr const char* kRegion = "us-east-1";
constexpr const char* kService = "service";
// get-vanilla-with-session-token's credentials carry this token; the suite
// states it only inside the expected canonical request.
constexpr const char* kSuiteSessionToken = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";

AwsCredentials suiteCredentials(std::string sessionToken = "") {
    return AwsCredentials{kAccessKeyId, SecretString(kSecret), std::move(sessionToken)};
}

std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct SuiteCase {
    std::string name;  // relative to the suite, e.g. "normalize-path/get-slash"
    fs::path base;     // the files' path without extension
};

std::vector<SuiteCase> suiteCases() {
    std::vector<SuiteCase> cases;
    for (const auto& entry : fs::recursive_directory_iterator(kSuiteDir)) {
        if (entry.path().extension() != ".req") continue;
        fs::path base = entry.path();
        base.replace_extension();
        cases.push_back({fs::relative(entry.path().parent_path(), kSuiteDir).generic_string(), base});
    }
    std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return cases;
}

// A .req file: "METHOD URI HTTP/1.1", header lines (a line starting with
// whitespace continues the previous one), a blank line, the body. The URI is
// taken up to the last space because normalize-path/get-space has a raw space
// in it. X-Amz-Date is returned separately, since the signer adds it itself.
struct ParsedRequest {
    HttpRequestToSign request;
    std::string amzDate;
};

ParsedRequest parseRequest(const std::string& raw) {
    ParsedRequest parsed;
    std::istringstream in(raw);
    std::string line;
    std::getline(in, line);
    const auto firstSpace = line.find(' '), lastSpace = line.rfind(' ');
    parsed.request.method = line.substr(0, firstSpace);
    const std::string uri = line.substr(firstSpace + 1, lastSpace - firstSpace - 1);
    const auto q = uri.find('?');
    parsed.request.path = uri.substr(0, q);
    if (q != std::string::npos) parsed.request.query = uri.substr(q + 1);

    HttpHeaders headers;
    while (std::getline(in, line) && !line.empty()) {
        if (line[0] == ' ' || line[0] == '\t') {
            headers.back().second += ' ' + line;  // obsolete line folding (RFC 7230 3.2.4): one space
            continue;
        }
        const auto colon = line.find(':');
        headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
    for (auto& header : headers) {
        if (header.first == "X-Amz-Date")
            parsed.amzDate = header.second;
        else
            parsed.request.headers.push_back(std::move(header));
    }
    parsed.request.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return parsed;
}

const SigV4Result& requireSigned(const std::variant<SigV4Result, SigV4Error>& outcome) {
    if (const auto* error = std::get_if<SigV4Error>(&outcome)) FAIL("signing failed: " << error->reason);
    return std::get<SigV4Result>(outcome);
}

HttpRequestToSign vanillaGet() {
    HttpRequestToSign request;
    request.method = "GET";
    request.path = "/";
    request.headers = {{"Host", "example.amazonaws.com"}};
    return request;
}

// From the suite's get-vanilla case.
constexpr const char* kVanillaSignature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

}  // namespace

TEST_CASE("SigV4 matches every case of AWS's test suite", "[sigv4]") {
    if (!fs::is_directory(kSuiteDir))
        FAIL("the AWS SigV4 test suite is missing: expected it at " << kSuiteDir.string());
    const auto cases = suiteCases();
    // Guards against cases silently disappearing (a bad copy, a changed layout).
    REQUIRE(cases.size() == 34);

    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            const ParsedRequest parsed = parseRequest(readFile(c.base.string() + ".req"));
            REQUIRE(parsed.amzDate == kDate);
            const auto credentials =
                suiteCredentials(c.name == "get-vanilla-with-session-token" ? kSuiteSessionToken : "");
            const auto outcome = signV4(parsed.request, credentials, kRegion, kService, parsed.amzDate);
            const SigV4Result& result = requireSigned(outcome);
            CHECK(result.canonicalRequest == readFile(c.base.string() + ".creq"));
            CHECK(result.stringToSign == readFile(c.base.string() + ".sts"));
            CHECK(result.authorization == readFile(c.base.string() + ".authz"));
            // Not compared with .sreq: get-vanilla-with-session-token.sreq carries
            // get-vanilla's signature, contradicting its own .authz.
        }
    }
}

TEST_CASE("SigV4 with a session token signs it and adds it to the request", "[sigv4]") {
    const auto outcome = signV4(vanillaGet(), suiteCredentials("the-token"), kRegion, kService, kDate);
    const SigV4Result& result = requireSigned(outcome);
    CHECK(result.canonicalRequest.find("\nx-amz-security-token:the-token\n") != std::string::npos);
    CHECK(result.authorization.find("SignedHeaders=host;x-amz-date;x-amz-security-token,") != std::string::npos);
    CHECK(result.signature != kVanillaSignature);
    const HttpHeaders expected = {
        {"X-Amz-Date", kDate}, {"X-Amz-Security-Token", "the-token"}, {"Authorization", result.authorization}};
    CHECK(result.headersToAdd == expected);

    SECTION("without a token nothing is added for it") {
        const auto plain = signV4(vanillaGet(), suiteCredentials(), kRegion, kService, kDate);
        const HttpHeaders expectedPlain = {{"X-Amz-Date", kDate},
                                           {"Authorization", requireSigned(plain).authorization}};
        CHECK(requireSigned(plain).headersToAdd == expectedPlain);
        CHECK(requireSigned(plain).signature == kVanillaSignature);
    }
    SECTION("a token header in the request as well is refused") {
        auto request = vanillaGet();
        request.headers.emplace_back("X-Amz-Security-Token", "other");
        CHECK(std::holds_alternative<SigV4Error>(
            signV4(request, suiteCredentials("the-token"), kRegion, kService, kDate)));
    }
}

TEST_CASE("SigV4 leaves hop-by-hop and proxy headers unsigned", "[sigv4]") {
    auto request = vanillaGet();
    request.headers.insert(request.headers.end(), {{"Connection", "keep-alive"},
                                                   {"Expect", "100-continue"},
                                                   {"Keep-Alive", "timeout=5"},
                                                   {"TE", "trailers"},
                                                   {"Trailer", "X-Checksum"},
                                                   {"Transfer-Encoding", "chunked"},
                                                   {"Upgrade", "h2c"},
                                                   {"User-Agent", "twofactor/1.0"},
                                                   {"Proxy-Authorization", "Basic Zm9vOmJhcg=="},
                                                   {"proxy-connection", "close"}});
    const auto outcome = signV4(request, suiteCredentials(), kRegion, kService, kDate);
    const SigV4Result& result = requireSigned(outcome);
    CHECK(result.authorization.find("SignedHeaders=host;x-amz-date,") != std::string::npos);
    CHECK(result.signature == kVanillaSignature);
}

TEST_CASE("SigV4 signature depends on every byte of the secret", "[sigv4]") {
    const std::string secret = kSecret;
    for (std::size_t i = 0; i < secret.size(); ++i) {
        std::string wrong = secret;
        wrong[i] = static_cast<char>(wrong[i] ^ 0x01);
        const AwsCredentials credentials{kAccessKeyId, SecretString(wrong), ""};
        const auto outcome = signV4(vanillaGet(), credentials, kRegion, kService, kDate);
        INFO("byte " << i);
        CHECK(requireSigned(outcome).signature != kVanillaSignature);
    }
}

TEST_CASE("SigV4 refuses requests it cannot sign correctly", "[sigv4]") {
    const auto refused = [](const HttpRequestToSign& request, std::string_view region = kRegion,
                            std::string_view service = kService, std::string_view date = kDate) {
        return std::holds_alternative<SigV4Error>(signV4(request, suiteCredentials(), region, service, date));
    };
    CHECK(refused(vanillaGet(), kRegion, kService, "2015-08-30T12:36:00Z"));
    CHECK(refused(vanillaGet(), kRegion, kService, "20150830T123600"));
    CHECK(refused(vanillaGet(), "us-east-1/x"));
    CHECK(refused(vanillaGet(), kRegion, ""));
    CHECK(refused(vanillaGet(), kRegion, "s3"));

    auto noHost = vanillaGet();
    noHost.headers.clear();
    CHECK(refused(noHost));
    for (const char* reserved : {"X-Amz-Date", "authorization"}) {
        auto request = vanillaGet();
        request.headers.emplace_back(reserved, "x");
        CHECK(refused(request));
    }
    auto injected = vanillaGet();
    injected.headers.emplace_back("X-Note", "a\r\nX-Evil: 1");
    CHECK(refused(injected));
    auto badName = vanillaGet();
    badName.headers.emplace_back("Bad Name", "x");
    CHECK(refused(badName));
}

TEST_CASE("amzDate formats UTC in ISO 8601 basic form", "[sigv4]") {
    CHECK(amzDate(1440938160) == kDate);
    CHECK(amzDate(0) == "19700101T000000Z");
    CHECK(amzDateNow().size() == 16);
}

TEST_CASE("SES SMTP password from a secret access key", "[sigv4]") {
    // Not an AWS vector: computed independently (see providers.md, "SES SMTP interface").
    CHECK(sesSmtpPassword(SecretString(kSecret), "us-east-1").str() == "BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7");
    CHECK(sesSmtpPassword(SecretString(kSecret), "eu-west-1").str() != "BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7");
}
