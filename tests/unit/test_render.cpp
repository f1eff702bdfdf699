#include "channel/outbox.hpp"
#include "channel/render.hpp"
#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using namespace twofactor;

TEST_CASE("placeholders are replaced; values HTML-escaped only in HTML", "[render]") {
    const channel::RenderValues v{"123456", "Shop & <Co>", 10};
    CHECK(channel::renderTemplate("{{code}} for {{app}}, {{minutes}} min", v, false) ==
          "123456 for Shop & <Co>, 10 min");
    CHECK(channel::renderTemplate("<b>{{code}}</b> {{app}}", v, true) == "<b>123456</b> Shop &amp; &lt;Co&gt;");
    CHECK(channel::renderTemplate("no placeholders", v, false) == "no placeholders");
    CHECK(channel::renderTemplate("{{code}}{{code}}", v, false) == "123456123456");
}

TEST_CASE("template selection falls back by language, app default, then English", "[render]") {
    config::App app;
    app.defaultLocale = "de";
    app.templates["fr"] = config::Template{"S", "T {{code}}", ""};
    std::string used;
    CHECK(channel::selectTemplate(app, "fr", used).subject == "S");
    CHECK(used == "fr");
    (void)channel::selectTemplate(app, "de-AT", used);
    CHECK(used == "de");
    (void)channel::selectTemplate(app, "xx", used);
    CHECK(used == "de");
    app.defaultLocale = "zz";
    (void)channel::selectTemplate(app, "", used);
    CHECK(used == "en");
}

TEST_CASE("outbox writes one private file per message", "[outbox]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("tf-outbox-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    channel::OutboxChannel outbox(dir.string());
    channel::Message m;
    m.requestId = "abc";
    m.app = "shop";
    m.channel = "email";
    m.destination = "a@example.org";
    m.subject = SecretString("Your code");
    m.text = SecretString("424242 is your code");
    channel::DeliveryResult result;
    outbox.deliver(std::move(m), [&](channel::DeliveryResult r) { result = std::move(r); });
    REQUIRE(result.outcome == channel::DeliveryOutcome::Accepted);
    const fs::path file = dir / "new" / result.providerMessageId;
    REQUIRE(fs::exists(file));
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("To: a@example.org\n") != std::string::npos);
    CHECK(text.find("\n\n424242 is your code\n") != std::string::npos);
    CHECK(fs::is_empty(dir / "tmp"));
    fs::remove_all(dir);
}

TEST_CASE("outbox reports a permanent failure when it cannot write", "[outbox]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("tf-outbox-ro-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    channel::OutboxChannel outbox(dir.string());
    fs::remove_all(dir / "new");  // the sink vanished
    channel::Message m;
    m.requestId = "abc";
    m.text = SecretString("x");
    channel::DeliveryResult result;
    outbox.deliver(std::move(m), [&](channel::DeliveryResult r) { result = std::move(r); });
    CHECK(result.outcome == channel::DeliveryOutcome::Permanent);
    CHECK_FALSE(result.error.empty());
    fs::remove_all(dir);
}
