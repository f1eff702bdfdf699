#include "channel/outbox.hpp"
#include "channel/render.hpp"
#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
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
    CHECK(channel::selectTemplate(app, "fr", "", used).subject == "S");
    CHECK(used == "fr");
    (void)channel::selectTemplate(app, "de-AT", "", used);
    CHECK(used == "de");
    (void)channel::selectTemplate(app, "xx", "", used);
    CHECK(used == "de");
    (void)channel::selectTemplate(app, "pt_BR", "", used);
    CHECK(used == "de");
    app.defaultLocale = "zz";
    (void)channel::selectTemplate(app, "", "", used);
    CHECK(used == "en");
}

TEST_CASE("template selection by purpose: app L.PURPOSE, app L, built-in L.PURPOSE, built-in L", "[render]") {
    const auto& builtins = config::builtinTemplates();
    config::App app;
    app.defaultLocale = "de";
    app.templates["fr.login"] = config::Template{"fr-login", "{{code}}", ""};
    app.templates["fr"] = config::Template{"fr-generic", "{{code}}", ""};
    app.templates["pt"] = config::Template{"pt-generic", "{{code}}", ""};
    std::string used;

    // 1. the app's own template for the purpose
    CHECK(channel::selectTemplate(app, "fr", "login", used).subject == "fr-login");
    CHECK(used == "fr");
    // 2. the app's generic template beats the built-in purpose one
    CHECK(channel::selectTemplate(app, "fr", "verify", used).subject == "fr-generic");
    CHECK(used == "fr");
    // the language part is tried before the app's default locale
    CHECK(channel::selectTemplate(app, "fr-CA", "login", used).subject == "fr-login");
    CHECK(used == "fr");
    // 3. the built-in template for the purpose
    CHECK(channel::selectTemplate(app, "es", "login", used).subject == builtins.at("es.login").subject);
    CHECK(used == "es");
    CHECK(channel::selectTemplate(app, "es-MX", "recovery", used).subject == builtins.at("es.recovery").subject);
    CHECK(used == "es");
    // 4. the built-in generic template: no purpose, or one without variants
    CHECK(channel::selectTemplate(app, "es", "", used).subject == builtins.at("es").subject);
    CHECK(channel::selectTemplate(app, "es", "signup", used).subject == builtins.at("es").subject);
    CHECK(used == "es");

    // An unknown locale: the app's default locale, with the purpose.
    CHECK(channel::selectTemplate(app, "it", "recovery", used).subject == builtins.at("de.recovery").subject);
    CHECK(used == "de");
    // The app's generic template of the default locale beats the built-in en.login.
    app.defaultLocale = "pt";
    CHECK(channel::selectTemplate(app, "it", "login", used).subject == "pt-generic");
    CHECK(used == "pt");
    // Finally English, with the purpose.
    app.defaultLocale = "zz";
    CHECK(channel::selectTemplate(app, "it", "login", used).subject == builtins.at("en.login").subject);
    CHECK(used == "en");
    app.templates["en.login"] = config::Template{"en-login", "{{code}}", ""};
    CHECK(channel::selectTemplate(app, "it", "login", used).subject == "en-login");
    // A locale is never mistaken for a purpose key.
    CHECK(channel::selectTemplate(app, "fr.login", "", used).subject == builtins.at("en").subject);
    CHECK(used == "en");
}

TEST_CASE("selection over a loaded configuration", "[render]") {
    const config::Config c = config::parse(R"([apps.shop]
default_locale = "de"

[apps.shop.templates.en]
subject = "Shop code"
text = "Shop: {{code}}"

[apps.shop.templates.de.login]
text = "Anmelden: {{code}}"
)",
                                           "/test.toml");
    const config::App& app = c.apps.at("shop");
    const auto& builtins = config::builtinTemplates();
    std::string used;
    // The app's own en serves every purpose: its wording beats the built-in en.login.
    CHECK(channel::selectTemplate(app, "en-GB", "login", used).text == "Shop: {{code}}");
    CHECK(used == "en");
    CHECK(channel::selectTemplate(app, "en", "recovery", used).text == "Shop: {{code}}");
    // de.login is the app's; other German purposes stay built-in.
    CHECK(channel::selectTemplate(app, "de", "login", used).text == "Anmelden: {{code}}");
    CHECK(channel::selectTemplate(app, "de", "login", used).subject == builtins.at("de.login").subject);
    CHECK(channel::selectTemplate(app, "de", "verify", used).text == builtins.at("de.verify").text);
    CHECK(channel::selectTemplate(app, "nl", "verify", used).text == builtins.at("de.verify").text);
    CHECK(used == "de");
    CHECK(channel::selectTemplate(app, "fr", "verify", used).text == builtins.at("fr.verify").text);
}

TEST_CASE("built-in templates say 1 minute and 2 minutes in every shipped language", "[render]") {
    // What one minute and two minutes read as, in the text and the HTML part.
    const std::map<std::string, std::pair<std::string, std::string>> expected = {
        {"en", {"in 1 minute.", "in 2 minutes."}},
        {"de", {"1 Minute gültig", "2 Minuten gültig"}},
        {"fr", {"dans 1 minute.", "dans 2 minutes."}},
        {"es", {"en 1 minuto.", "en 2 minutos."}},
    };
    for (const auto& [key, t] : config::builtinTemplates()) {
        const std::string locale = key.substr(0, key.find('.'));
        INFO(key);
        REQUIRE(expected.count(locale) == 1);
        const auto& [one, two] = expected.at(locale);
        for (const std::string* part : {&t.text, &t.html}) {
            const channel::RenderValues v1{"123456", "Shop", 1, locale};
            const channel::RenderValues v2{"123456", "Shop", 2, locale};
            CHECK(channel::renderTemplate(*part, v1, part == &t.html).find(one) != std::string::npos);
            CHECK(channel::renderTemplate(*part, v2, part == &t.html).find(two) != std::string::npos);
        }
    }
}

TEST_CASE("plural forms follow the locale's rule", "[render]") {
    const std::string text = "{{minutes}} {{minutes|ONE|OTHER}}";
    auto render = [&](long minutes, std::string_view locale) {
        return channel::renderTemplate(text, channel::RenderValues{"1", "a", minutes, locale}, false);
    };
    CHECK(render(1, "en") == "1 ONE");
    CHECK(render(0, "en") == "0 OTHER");
    CHECK(render(21, "en") == "21 OTHER");
    // French counts 0 with 1; Portuguese too, except in Portugal.
    CHECK(render(0, "fr") == "0 ONE");
    CHECK(render(2, "fr-CA") == "2 OTHER");
    CHECK(render(0, "pt-BR") == "0 ONE");
    CHECK(render(0, "pt-PT") == "0 OTHER");
    CHECK(render(1, "de") == "1 ONE");
    // The forms are template text: not escaped in HTML, unlike the values.
    CHECK(channel::renderTemplate("{{minutes|<b>x</b>|y}} {{app}}", channel::RenderValues{"1", "<a>", 1, "en"}, true) ==
          "<b>x</b> &lt;a&gt;");
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
