// The SNS envelope, the string SNS signs, the URLs a message may name and SES
// notifications (lib/webhook/sns.hpp). Signatures are tested end to end in
// tests/integration/test_sns.py, with a CA and certificate of the test's own.
#include "webhook/sns.hpp"

#include <catch2/catch.hpp>

using namespace twofactor::webhook::sns;

namespace {

const char* kNotification = R"({"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:eu-west-1:123456789012:t",
"Subject":"s","Message":"hello","Timestamp":"2026-12-01T12:00:00.000Z","SignatureVersion":"2","Signature":"c2ln",
"SigningCertURL":"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem","UnsubscribeURL":"x"})";

}  // namespace

TEST_CASE("a Notification's canonical string lists its fields in SNS's order", "[sns]") {
    auto m = parseMessage(kNotification);
    REQUIRE(m);
    CHECK(canonicalString(*m) ==
          "Message\nhello\nMessageId\nm-1\nSubject\ns\nTimestamp\n2026-12-01T12:00:00.000Z\n"
          "TopicArn\narn:aws:sns:eu-west-1:123456789012:t\nType\nNotification\n");
    m->subject.reset();  // no Subject: no Subject line
    CHECK(canonicalString(*m).find("Subject") == std::string::npos);
}

TEST_CASE("a SubscriptionConfirmation signs SubscribeURL and Token, and needs them", "[sns]") {
    const std::string body = R"({"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"arn:aws:sns:eu-west-1:123456789012:t",
"Message":"hi","Timestamp":"T","Token":"tok","SubscribeURL":"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
"SignatureVersion":"1","Signature":"c2ln","SigningCertURL":"https://sns.eu-west-1.amazonaws.com/a.pem"})";
    auto m = parseMessage(body);
    REQUIRE(m);
    CHECK(canonicalString(*m) ==
          "Message\nhi\nMessageId\nm\nSubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription\n"
          "Timestamp\nT\nToken\ntok\nTopicArn\narn:aws:sns:eu-west-1:123456789012:t\nType\nSubscriptionConfirmation\n");
    std::string noToken = body;
    noToken.replace(noToken.find("\"Token\""), 7, "\"Tokens\"");
    CHECK_FALSE(parseMessage(noToken));
}

TEST_CASE("envelopes that are not SNS messages are refused", "[sns]") {
    CHECK_FALSE(parseMessage("not json"));
    CHECK_FALSE(parseMessage("[]"));
    CHECK_FALSE(parseMessage(R"({"Type":"Notification"})"));
    std::string other = kNotification;
    other.replace(other.find("Notification"), 12, "Gossip");
    CHECK_FALSE(parseMessage(other));
    std::string number = kNotification;
    number.replace(number.find("\"2\""), 3, "2");
    CHECK_FALSE(parseMessage(number));
}

TEST_CASE("only https://sns.REGION.amazonaws.com/NAME.pem is a signing certificate URL", "[sns]") {
    std::string name, region;
    CHECK(validCertUrl("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", name, region));
    CHECK((name == "SimpleNotificationService-abc.pem" && region == "eu-west-1"));
    CHECK(validCertUrl("https://sns.cn-north-1.amazonaws.com.cn/x.pem", name, region));
    for (const char* bad : {"http://sns.eu-west-1.amazonaws.com/a.pem", "https://sns.eu-west-1.amazonaws.com.evil.example/a.pem",
                            "https://evil.example/sns.eu-west-1.amazonaws.com/a.pem", "https://sns.eu-west-1.amazonaws.com:8443/a.pem",
                            "https://user@sns.eu-west-1.amazonaws.com/a.pem", "https://sns.eu-west-1.amazonaws.com/a.pem?x=1",
                            "https://sns.eu-west-1.amazonaws.com/../a.pem", "https://sns.eu-west-1.amazonaws.com/dir/a.pem",
                            "https://sns.eu-west-1.amazonaws.com/a.txt", "https://sqs.eu-west-1.amazonaws.com/a.pem"}) {
        INFO(bad);
        CHECK_FALSE(validCertUrl(bad, name, region));
    }
}

TEST_CASE("a SubscribeURL must be on the topic's region's SNS host", "[sns]") {
    std::string rest;
    CHECK(validSubscribeUrl("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t", "eu-west-1", rest));
    CHECK(rest == "/?Action=ConfirmSubscription&Token=t");
    CHECK_FALSE(validSubscribeUrl("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", "eu-west-1", rest));
    CHECK_FALSE(validSubscribeUrl("https://evil.example/?Action=ConfirmSubscription", "eu-west-1", rest));
    CHECK_FALSE(validSubscribeUrl("https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe", "eu-west-1", rest));
    CHECK(topicRegion("arn:aws:sns:eu-central-1:123456789012:ses") == "eu-central-1");
    CHECK(topicRegion("arn:aws:sqs:eu-central-1:123456789012:ses").empty());
}

TEST_CASE("SES notifications: permanent and transient bounces, complaints", "[sns]") {
    auto n = parseSesNotification(R"({"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
"bouncedRecipients":[{"emailAddress":"a@example.org"},{"emailAddress":"b@example.org"}]},"mail":{"messageId":"ses-1"}})");
    REQUIRE(n);
    CHECK(n->kind == SesNotification::Kind::PermanentBounce);
    CHECK(n->recipients == std::vector<std::string>{"a@example.org", "b@example.org"});
    CHECK((n->messageId == "ses-1" && n->detail == "Permanent/General"));
    n = parseSesNotification(R"({"eventType":"Bounce","bounce":{"bounceType":"Undetermined","bouncedRecipients":[]}})");
    REQUIRE(n);
    CHECK(n->kind == SesNotification::Kind::TransientBounce);
    n = parseSesNotification(R"({"notificationType":"Complaint","complaint":{"complaintFeedbackType":"abuse",
"complainedRecipients":[{"emailAddress":"c@example.org"}]},"mail":{"messageId":"ses-2"}})");
    REQUIRE(n);
    CHECK((n->kind == SesNotification::Kind::Complaint && n->detail == "abuse" && n->recipients.size() == 1));
    n = parseSesNotification(R"({"notificationType":"Delivery","mail":{"messageId":"ses-3"}})");
    REQUIRE(n);
    CHECK(n->kind == SesNotification::Kind::Other);
    CHECK_FALSE(parseSesNotification("{"));
}

TEST_CASE("a Timestamp is SNS's UTC form or nothing", "[sns]") {

    CHECK(parseTimestamp("2012-04-26T20:45:04.751Z") == 1335473104);
    CHECK(parseTimestamp("2012-04-26T20:45:04Z") == 1335473104);
    CHECK(parseTimestamp("1970-01-01T00:00:00.000Z") == 0);
    CHECK(parseTimestamp("2024-02-29T23:59:59.1Z") == 1709251199);
    for (const char* bad : {"", "2012-04-26T20:45:04.751", "2012-04-26 20:45:04.751Z", "2012-04-26T20:45:04.Z",
                            "2012-4-26T20:45:04.751Z", "2012-04-26T24:00:00Z", "2023-02-29T00:00:00Z",
                            "2012-13-01T00:00:00Z", "2012-04-26T20:45:04.7510000000Z", "2012-04-26T20:45:04+01:00",
                            "abcd-04-26T20:45:04Z"})
        CHECK_FALSE(parseTimestamp(bad));
}
