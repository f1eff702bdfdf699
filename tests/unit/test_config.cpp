#include "build_config.h"
#include "config/config.hpp"
#include "ipc/paths.hpp"

#include <catch2/catch.hpp>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>

using namespace twofactor::config;
namespace paths = twofactor::paths;

namespace {

const std::string kFile = "/etc/twofactor/twofactord.toml";

// what() of the error that parsing text raises, or "" when it is accepted.
std::string errorOf(const std::string& text) {
    try {
        parse(text, kFile);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

bool sameTemplate(const Template& a, const Template& b) {
    return a.subject == b.subject && a.text == b.text && a.html == b.html;
}

// A valid app, so error tests can focus on one other table.
const std::string kApp = "[apps.shop]\n";

// Sets an environment variable for one scope and restores it afterwards.
class EnvGuard {
public:
    EnvGuard(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~EnvGuard() {
        if (old_) {
            ::setenv(name_.c_str(), old_->c_str(), 1);
        } else {
            ::unsetenv(name_.c_str());
        }
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

private:
    std::string name_;
    std::optional<std::string> old_;
};

// Independent of the implementation's scanner: every {{...}} in s.
std::set<std::string> placeholders(const std::string& s) {
    std::set<std::string> out;
    static const std::regex re(R"(\{\{([^}]*)\}\})");
    for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator(); ++it) {
        out.insert((*it)[1].str());
    }
    return out;
}

const std::string kFull = R"([daemon]
socket = "/run/tf/tf.sock"
state_dir = "/srv/tf"
database = "/srv/db/tf.db"
store_key_file = "/etc/twofactor/store.key"
pepper_file = "/etc/twofactor/pepper.key"
generate_keys = true
synchronous = "normal"
log_level = "debug"

[limits]
max_message_bytes = 2048
max_depth = 8
idle_timeout = 120
request_timeout = 10
max_connections_per_uid = 7

[access.operator]
users = ["www-data", "1001"]
groups = ["twofactor"]

[access.dpo]
users = ["alice"]

[access.admin]
groups = ["0"]

[delivery]
email = "outbox"
whatsapp = "outbox"

[outbox]
directory = "/srv/outbox"

[apps.shop]
display_name = "Shop & Co"
channels = ["whatsapp", "email"]
code_length = 8
min_code_length = 7
max_code_length = 9
ttl = 300
max_ttl = 900
max_attempts = 3
max_sends = 4
default_locale = "pt-BR"
default_region = "DE"

[apps.shop.templates.en]
subject = "Your {{app}} login code"
text = "{{code}} is your {{app}} code. It expires in {{minutes}} minutes."
html = "<p><b>{{code}}</b> is your {{app}} code.</p>"

[apps.shop.templates.pt-BR]
subject = "Seu código {{app}}"
text = "{{code}} é o seu código."

[apps.blog-2]
)";

}  // namespace

TEST_CASE("a full configuration is read into every field", "[config]") {
    Config c = parse(kFull, kFile);
    CHECK(c.sourcePath == kFile);
    CHECK_FALSE(c.embedded);
    CHECK(c.socketPath == "/run/tf/tf.sock");
    CHECK(c.stateDir == "/srv/tf");
    CHECK(c.databasePath == "/srv/db/tf.db");
    CHECK(c.storeKeyFile == "/etc/twofactor/store.key");
    CHECK(c.pepperFile == "/etc/twofactor/pepper.key");
    CHECK(c.generateKeys);
    CHECK_FALSE(c.synchronousFull);
    CHECK(c.logLevel == "debug");

    CHECK(c.limits.maxMessageBytes == 2048);
    CHECK(c.limits.maxDepth == 8);
    CHECK(c.limits.idleTimeout == std::chrono::seconds(120));
    CHECK(c.limits.requestTimeout == std::chrono::seconds(10));
    CHECK(c.limits.maxConnectionsPerUid == 7);

    REQUIRE(c.access.size() == 3);
    CHECK(c.access.at(Role::Operator).users == std::vector<std::string>{"www-data", "1001"});
    CHECK(c.access.at(Role::Operator).groups == std::vector<std::string>{"twofactor"});
    CHECK(c.access.at(Role::Dpo).users == std::vector<std::string>{"alice"});
    CHECK(c.access.at(Role::Dpo).groups.empty());
    CHECK(c.access.at(Role::Admin).users.empty());
    CHECK(c.access.at(Role::Admin).groups == std::vector<std::string>{"0"});

    CHECK(c.drivers == std::map<std::string, std::string>{{"email", "outbox"}, {"whatsapp", "outbox"}});
    CHECK(c.outboxDir == "/srv/outbox");

    REQUIRE(c.apps.size() == 2);
    const App& shop = c.apps.at("shop");
    CHECK(shop.name == "shop");
    CHECK(shop.displayName == "Shop & Co");
    CHECK(shop.channels == std::vector<std::string>{"whatsapp", "email"});
    CHECK(shop.codeLength == 8);
    CHECK(shop.minCodeLength == 7);
    CHECK(shop.maxCodeLength == 9);
    CHECK(shop.ttl == std::chrono::seconds(300));
    CHECK(shop.maxTtl == std::chrono::seconds(900));
    CHECK(shop.maxAttempts == 3);
    CHECK(shop.maxSends == 4);
    CHECK(shop.defaultLocale == "pt-BR");
    CHECK(shop.defaultRegion == "DE");

    // The app's en replaces the built-in en; de, fr, es stay built-in.
    REQUIRE(shop.templates.count("en") == 1);
    CHECK(shop.templates.at("en").subject == "Your {{app}} login code");
    CHECK(shop.templates.at("en").text == "{{code}} is your {{app}} code. It expires in {{minutes}} minutes.");
    CHECK(shop.templates.at("en").html == "<p><b>{{code}}</b> is your {{app}} code.</p>");
    CHECK(shop.templates.at("pt-BR").subject == "Seu código {{app}}");
    CHECK(shop.templates.at("pt-BR").html.empty());
    CHECK(shop.templates.at("de").text == builtinTemplates().at("de").text);
    // The app's own en also replaces the built-in en purpose variants (its
    // wording wins); de's stay.
    CHECK(shop.templates.count("en.login") == 0);
    CHECK(shop.templates.count("en.verify") == 0);
    CHECK(shop.templates.count("en.recovery") == 0);
    CHECK(shop.templates.at("de.login").subject == builtinTemplates().at("de.login").subject);
    CHECK(shop.templates.size() == builtinTemplates().size() - 3 + 1);

    CHECK(c.apps.at("blog-2").displayName == "blog-2");
}

TEST_CASE("a file with only an app gets every default", "[config]") {
    Config c = parse(kApp, kFile);
    CHECK(c.sourcePath == kFile);
    CHECK_FALSE(c.embedded);
    CHECK(c.socketPath == paths::systemSocket());
    CHECK(c.stateDir == paths::systemStateDir());
    CHECK(c.databasePath == paths::systemStateDir() + "/twofactor.db");
    CHECK(c.storeKeyFile == paths::systemStateDir() + "/keys/store.key");
    CHECK(c.pepperFile == paths::systemStateDir() + "/keys/pepper.key");
    CHECK(c.outboxDir == paths::systemStateDir() + "/outbox");
    CHECK_FALSE(c.generateKeys);
    CHECK(c.synchronousFull);
    CHECK(c.logLevel == "info");

    CHECK(c.limits.maxMessageBytes == 65536);
    CHECK(c.limits.maxDepth == 16);
    CHECK(c.limits.idleTimeout == std::chrono::seconds(60));
    CHECK(c.limits.requestTimeout == std::chrono::seconds(30));
    CHECK(c.limits.maxConnectionsPerUid == 64);

    // Every role is present and empty: nobody is granted anything by accident.
    REQUIRE(c.access.size() == 3);
    for (const auto& [role, grant] : c.access) {
        CHECK(grant.users.empty());
        CHECK(grant.groups.empty());
    }
    CHECK(c.drivers == std::map<std::string, std::string>{{"email", "outbox"}, {"whatsapp", "outbox"}});

    REQUIRE(c.apps.size() == 1);
    const App& a = c.apps.at("shop");
    CHECK(a.name == "shop");
    CHECK(a.displayName == "shop");
    CHECK(a.channels == std::vector<std::string>{"email", "whatsapp"});
    CHECK(a.codeLength == 6);
    CHECK(a.minCodeLength == 6);
    CHECK(a.maxCodeLength == 10);
    CHECK(a.ttl == std::chrono::seconds(600));
    CHECK(a.maxTtl == std::chrono::seconds(600));
    CHECK(a.maxAttempts == 5);
    CHECK(a.maxSends == 5);
    CHECK(a.defaultLocale == "en");
    CHECK(a.defaultRegion.empty());
    CHECK(a.templates.size() == builtinTemplates().size());
    CHECK(a.templates.at("fr").subject == builtinTemplates().at("fr").subject);
}

TEST_CASE("derived paths follow state_dir", "[config]") {
    Config c = parse("[daemon]\nstate_dir = \"/srv/state/\"\n" + kApp, kFile);
    CHECK(c.stateDir == "/srv/state/");
    CHECK(c.databasePath == "/srv/state/twofactor.db");
    CHECK(c.storeKeyFile == "/srv/state/keys/store.key");
    CHECK(c.pepperFile == "/srv/state/keys/pepper.key");
    CHECK(c.outboxDir == "/srv/state/outbox");
}

TEST_CASE("ttl and max_ttl defaults depend on each other", "[config]") {
    SECTION("a long ttl raises the default max_ttl") {
        Config c = parse(kApp + "ttl = 1800\n", kFile);
        CHECK(c.apps.at("shop").ttl == std::chrono::seconds(1800));
        CHECK(c.apps.at("shop").maxTtl == std::chrono::seconds(1800));
    }
    SECTION("a short ttl keeps max_ttl at 600") {
        Config c = parse(kApp + "ttl = 60\n", kFile);
        CHECK(c.apps.at("shop").ttl == std::chrono::seconds(60));
        CHECK(c.apps.at("shop").maxTtl == std::chrono::seconds(600));
    }
    SECTION("a small max_ttl lowers the default ttl") {
        Config c = parse(kApp + "max_ttl = 120\n", kFile);
        CHECK(c.apps.at("shop").ttl == std::chrono::seconds(120));
        CHECK(c.apps.at("shop").maxTtl == std::chrono::seconds(120));
    }
    SECTION("a large min_code_length raises the default code_length") {
        Config c = parse(kApp + "min_code_length = 8\n", kFile);
        CHECK(c.apps.at("shop").codeLength == 8);
    }
    SECTION("a small max_code_length lowers the default code_length") {
        Config c = parse(kApp + "min_code_length = 4\nmax_code_length = 5\n", kFile);
        CHECK(c.apps.at("shop").codeLength == 5);
    }
}

TEST_CASE("delivery decides which channels an app may use", "[config]") {
    SECTION("only email configured: apps default to email alone") {
        Config c = parse("[delivery]\nemail = \"outbox\"\n" + kApp, kFile);
        CHECK(c.drivers == std::map<std::string, std::string>{{"email", "outbox"}});
        CHECK(c.apps.at("shop").channels == std::vector<std::string>{"email"});
    }
    SECTION("a channel without a driver is an error") {
        CHECK(errorOf("[delivery]\nemail = \"outbox\"\n[apps.shop]\nchannels = [\"email\", \"whatsapp\"]\n") ==
              kFile + ":4:22: apps.shop.channels[1]: channel \"whatsapp\" has no driver in [delivery]");
    }
    SECTION("an unknown driver is an error") {
        CHECK(errorOf("[delivery]\nemail = \"sendmail\"\n" + kApp) ==
              kFile + ":2:9: delivery.email: must be one of outbox, ses, smtp, not \"sendmail\"");
        // WhatsApp has the outbox and Meta's Cloud API, not the email drivers.
        CHECK(errorOf("[delivery]\nwhatsapp = \"ses\"\n" + kApp) ==
              kFile + ":2:12: delivery.whatsapp: must be one of outbox, whatsapp, not \"ses\"");
        CHECK(errorOf("[delivery]\nemail = \"whatsapp\"\n" + kApp) ==
              kFile + ":2:9: delivery.email: must be one of outbox, ses, smtp, not \"whatsapp\"");
    }
    SECTION("an unknown channel in delivery is an error") {
        CHECK_THAT(errorOf("[delivery]\nsms = \"outbox\"\n" + kApp),
                   Catch::StartsWith(kFile + ":2:1: delivery.sms: unknown key"));
    }
    SECTION("an empty delivery table is an error") {
        CHECK_THAT(errorOf("[delivery]\n" + kApp), Catch::StartsWith(kFile + ":1:1: delivery: must give a driver"));
    }
    SECTION("unknown, duplicate and empty channel lists are errors") {
        CHECK(errorOf(kApp + "channels = [\"sms\"]\n") ==
              kFile + ":2:13: apps.shop.channels[0]: unknown channel \"sms\" (expected one of: email, whatsapp)");
        CHECK(errorOf(kApp + "channels = [\"email\", \"email\"]\n") ==
              kFile + ":2:22: apps.shop.channels[1]: channel \"email\" is listed twice");
        CHECK(errorOf(kApp + "channels = []\n") ==
              kFile + ":2:12: apps.shop.channels: must name at least one channel");
    }
}

TEST_CASE("unknown keys and tables are errors with their position", "[config][errors]") {
    CHECK_THAT(errorOf(kApp + "\n[bogus]\n"), Catch::StartsWith(kFile + ":3:2: bogus: unknown table"));
    CHECK_THAT(errorOf("colour = 1\n" + kApp), Catch::StartsWith(kFile + ":1:1: colour: unknown key"));
    CHECK_THAT(errorOf("[daemon]\n  sockett = \"/x\"\n" + kApp),
               Catch::StartsWith(kFile + ":2:3: daemon.sockett: unknown key (expected one of: socket,"));
    CHECK_THAT(errorOf("[limits]\nmax_conns = 1\n" + kApp), Catch::StartsWith(kFile + ":2:1: limits.max_conns: unknown key"));
    CHECK_THAT(errorOf("[access.root]\nusers = []\n" + kApp), Catch::StartsWith(kFile + ":1:9: access.root: unknown table"));
    CHECK_THAT(errorOf("[access.admin]\nuser = [\"a\"]\n" + kApp),
               Catch::StartsWith(kFile + ":2:1: access.admin.user: unknown key (expected one of: users, groups)"));
    CHECK_THAT(errorOf("[outbox]\ndir = \"/x\"\n" + kApp), Catch::StartsWith(kFile + ":2:1: outbox.dir: unknown key"));
    CHECK_THAT(errorOf(kApp + "display_name = \"S\"\nmax_atempts = 3\n"),
               Catch::StartsWith(kFile + ":3:1: apps.shop.max_atempts: unknown key"));
    CHECK_THAT(errorOf(kApp + "[apps.shop.templates.en]\ntext = \"{{code}}\"\nbody = \"x\"\n"),
               Catch::StartsWith(kFile + ":4:1: apps.shop.templates.en.body: unknown key (expected one of: subject, "
                                          "text, html, text_file, html_file, login, verify, recovery)"));
    CHECK(errorOf(kApp + "[apps.shop.templates.en.login]\ntext = \"{{code}}\"\nlogin = \"x\"\n") ==
          kFile + ":4:1: apps.shop.templates.en.login.login: unknown key (expected one of: subject, text, html, "
                  "text_file, html_file)");
    CHECK_THAT(errorOf(kApp + "[apps.shop.templates.en.signup]\ntext = \"{{code}}\"\n"),
               Catch::StartsWith(kFile + ":2:25: apps.shop.templates.en.signup: unknown table"));
    CHECK_THAT(errorOf("[tls]\nverify = false\n" + kApp),
               Catch::StartsWith(kFile + ":2:1: tls.verify: unknown key (expected one of: min_version, ca_bundle)"));
    CHECK_THAT(errorOf("[ses]\nsender = \"a@b.example\"\n" + kApp), Catch::StartsWith(kFile + ":2:1: ses.sender: unknown key"));
    CHECK_THAT(errorOf("[smtp]\nhost = \"x\"\n" + kApp), Catch::StartsWith(kFile + ":2:1: smtp.host: unknown key"));
    CHECK_THAT(errorOf("[retry]\nattempts = 3\n" + kApp), Catch::StartsWith(kFile + ":2:1: retry.attempts: unknown key"));
    CHECK_THAT(errorOf(kApp + "ses_regoin = \"eu-west-1\"\n"),
               Catch::StartsWith(kFile + ":2:1: apps.shop.ses_regoin: unknown key"));
    CHECK_THAT(errorOf(kApp + "[apps.shop.extra]\n"), Catch::StartsWith(kFile + ":2:12: apps.shop.extra: unknown table"));
}

TEST_CASE("wrong types are errors", "[config][errors]") {
    CHECK(errorOf(kApp + "ttl = \"600\"\n") == kFile + ":2:7: apps.shop.ttl: must be an integer");
    CHECK(errorOf(kApp + "ttl = 600.0\n") == kFile + ":2:7: apps.shop.ttl: must be an integer");
    CHECK(errorOf("[daemon]\ngenerate_keys = \"yes\"\n" + kApp) ==
          kFile + ":2:17: daemon.generate_keys: must be true or false");
    CHECK(errorOf("[daemon]\nsocket = 5\n" + kApp) == kFile + ":2:10: daemon.socket: must be a string");
    CHECK(errorOf("daemon = 5\n" + kApp) == kFile + ":1:10: daemon: must be a table");
    CHECK(errorOf(kApp + "channels = \"email\"\n") == kFile + ":2:12: apps.shop.channels: must be an array of strings");
    CHECK(errorOf("[access.operator]\nusers = [\"a\", 7]\n" + kApp) ==
          kFile + ":2:15: access.operator.users[1]: must be a string");
    CHECK(errorOf("apps = 1\n") == kFile + ":1:8: apps: must be a table");
    CHECK(errorOf("[apps]\nshop = 1\n") == kFile + ":2:8: apps.shop: must be a table");
    CHECK(errorOf(kApp + "templates = 1\n") == kFile + ":2:13: apps.shop.templates: must be a table");
    CHECK(errorOf(kApp + "[apps.shop.templates]\nen = \"x\"\n") == kFile + ":3:6: apps.shop.templates.en: must be a table");
}

TEST_CASE("out-of-range numbers are errors", "[config][errors]") {
    CHECK(errorOf(kApp + "max_ttl = 600\nttl = 900\n") ==
          kFile + ":3:7: apps.shop.ttl: must be between 30 and 600 seconds");
    CHECK(errorOf(kApp + "ttl = 29\n") == kFile + ":2:7: apps.shop.ttl: must be between 30 and 86400 seconds");
    CHECK(errorOf(kApp + "max_ttl = 86401\n") == kFile + ":2:11: apps.shop.max_ttl: must be between 30 and 86400 seconds");
    CHECK(errorOf(kApp + "code_length = 11\n") == kFile + ":2:15: apps.shop.code_length: must be between 6 and 10");
    CHECK(errorOf(kApp + "min_code_length = 3\n") == kFile + ":2:19: apps.shop.min_code_length: must be between 4 and 10");
    CHECK(errorOf(kApp + "max_code_length = 11\n") == kFile + ":2:19: apps.shop.max_code_length: must be between 6 and 10");
    CHECK(errorOf(kApp + "min_code_length = 8\nmax_code_length = 7\n") ==
          kFile + ":3:19: apps.shop.max_code_length: must be between 8 and 10");
    CHECK(errorOf(kApp + "max_attempts = 0\n") == kFile + ":2:16: apps.shop.max_attempts: must be between 1 and 100");
    CHECK(errorOf(kApp + "max_sends = 101\n") == kFile + ":2:13: apps.shop.max_sends: must be between 1 and 100");
    CHECK(errorOf("[limits]\nmax_message_bytes = 1023\n" + kApp) ==
          kFile + ":2:21: limits.max_message_bytes: must be between 1024 and 16777216 bytes");
    CHECK(errorOf("[limits]\nmax_message_bytes = 16777217\n" + kApp) ==
          kFile + ":2:21: limits.max_message_bytes: must be between 1024 and 16777216 bytes");
    CHECK(errorOf("[limits]\nmax_depth = 1\n" + kApp) == kFile + ":2:13: limits.max_depth: must be between 2 and 64");
    CHECK(errorOf("[limits]\nmax_depth = 65\n" + kApp) == kFile + ":2:13: limits.max_depth: must be between 2 and 64");
    CHECK(errorOf("[limits]\nidle_timeout = 0\n" + kApp) ==
          kFile + ":2:16: limits.idle_timeout: must be between 1 and 86400 seconds");
    CHECK(errorOf("[limits]\nrequest_timeout = 3601\n" + kApp) ==
          kFile + ":2:19: limits.request_timeout: must be between 1 and 3600 seconds");
    CHECK(errorOf("[limits]\nmax_connections_per_uid = 10001\n" + kApp) ==
          kFile + ":2:27: limits.max_connections_per_uid: must be between 1 and 10000");
    // Boundaries are inclusive.
    CHECK_NOTHROW(parse("[limits]\nmax_message_bytes = 16777216\nmax_depth = 2\n" + kApp +
                            "ttl = 86400\nmin_code_length = 4\nmax_code_length = 4\nmax_attempts = 100\n",
                        kFile));
}

TEST_CASE("enumerated strings are checked", "[config][errors]") {
    CHECK(errorOf("[daemon]\nsynchronous = \"off\"\n" + kApp) ==
          kFile + ":2:15: daemon.synchronous: must be one of full, normal, not \"off\"");
    CHECK(errorOf("[daemon]\nlog_level = \"trace\"\n" + kApp) ==
          kFile + ":2:13: daemon.log_level: must be one of debug, info, warning, error, not \"trace\"");
    CHECK(errorOf(kApp + "default_region = \"de\"\n") ==
          kFile + ":2:18: apps.shop.default_region: must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"");
    CHECK_THAT(errorOf(kApp + "default_locale = \"en_US\"\n"),
               Catch::StartsWith(kFile + ":2:18: apps.shop.default_locale: is not a locale tag"));
    CHECK(errorOf(kApp + "default_locale = \"it\"\n") ==
          kFile + ":2:18: apps.shop.default_locale: has no template for \"it\" (available: de, en, es, fr)");
    CHECK_NOTHROW(parse(kApp + "default_locale = \"de\"\n", kFile));
}

TEST_CASE("bad app names are rejected", "[config][errors]") {
    CHECK_THAT(errorOf("[apps.Shop]\n"), Catch::StartsWith(kFile + ":1:7: apps.Shop: app names must be"));
    CHECK_THAT(errorOf("[apps._shop]\n"), Catch::StartsWith(kFile + ":1:7: apps._shop: app names must be"));
    CHECK_THAT(errorOf("[apps.\"my shop\"]\n"), Catch::StartsWith(kFile + ":1:7: apps.my shop: app names must be"));
    std::string longName(64, 'a');
    CHECK_THAT(errorOf("[apps." + longName + "]\n"), Catch::StartsWith(kFile + ":1:7: apps." + longName + ":"));
    CHECK_NOTHROW(parse("[apps." + std::string(63, 'a') + "]\n[apps.0-x_y]\n", kFile));
}

TEST_CASE("template placeholders are checked", "[config][errors]") {
    const std::string t = kApp + "[apps.shop.templates.en]\n";
    CHECK(errorOf(t + "text = \"{{code}} for {{context.amount}}\"\n").empty());
    CHECK(errorOf(t + "text = \"{{code}} for {{context.Amount}}\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: placeholder \"{{context.Amount}}\": a context key is a "
                  "lower-case letter, then letters, digits or '_', at most 32 bytes");
    CHECK(errorOf(t + "text = \"{{code}} for {{name}}\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: unknown placeholder \"{{name}}\" (allowed: {{code}}, {{app}}, "
                  "{{minutes}}, {{minutes|ONE|OTHER}}, {{context.KEY}})");
    CHECK_THAT(errorOf(t + "text = \"{{ code }}\"\n"),
               Catch::StartsWith(kFile + ":3:8: apps.shop.templates.en.text: unknown placeholder \"{{ code }}\""));
    CHECK(errorOf(t + "text = \"{{code}} {{app\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: unterminated placeholder \"{{\"");
    CHECK(errorOf(t + "text = \"Your code for {{app}}\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: must contain {{code}}");
    CHECK_THAT(errorOf(t + "subject = \"{{user}}\"\ntext = \"{{code}}\"\n"),
               Catch::StartsWith(kFile + ":3:11: apps.shop.templates.en.subject: unknown placeholder \"{{user}}\""));
    CHECK_THAT(errorOf(t + "text = \"{{code}}\"\nhtml = \"<p>{{codes}}</p>\"\n"),
               Catch::StartsWith(kFile + ":4:8: apps.shop.templates.en.html: unknown placeholder"));
    CHECK(errorOf(t + "text = \"{{code}}\"\nhtml = \"<p>{{app}}</p>\"\n") ==
          kFile + ":4:8: apps.shop.templates.en.html: must contain {{code}}");
    CHECK(errorOf(t + "subject = \"a\\r\\nBcc: x@example.com\"\ntext = \"{{code}}\"\n") ==
          kFile + ":3:11: apps.shop.templates.en.subject: must be one line without control characters");
    CHECK(errorOf(t + "subject = \"\"\ntext = \"{{code}}\"\n") ==
          kFile + ":3:11: apps.shop.templates.en.subject: must not be empty");
    CHECK(errorOf(t + "subject = \"x\"\n") == kFile + ":2:1: apps.shop.templates.en.text: is required");
    CHECK_THAT(errorOf(kApp + "[apps.shop.templates.EN]\ntext = \"{{code}}\"\n"),
               Catch::StartsWith(kFile + ":2:22: apps.shop.templates.EN: is not a locale tag"));
}

TEST_CASE("app templates merge over the built-ins", "[config]") {
    SECTION("a missing subject falls back to the built-in of that locale") {
        Config c = parse(kApp + "[apps.shop.templates.de]\ntext = \"Code {{code}}\"\n", kFile);
        const Template& de = c.apps.at("shop").templates.at("de");
        CHECK(de.subject == builtinTemplates().at("de").subject);
        CHECK(de.text == "Code {{code}}");
        CHECK(de.html.empty());
    }
    SECTION("a locale without a built-in needs its own subject") {
        CHECK(errorOf(kApp + "[apps.shop.templates.pt-BR]\ntext = \"{{code}}\"\n") ==
              kFile +
                  ":2:1: apps.shop.templates.pt-BR.subject: is required: there is no built-in template for locale "
                  "\"pt-BR\"");
    }
    SECTION("the app's own locale can be the default") {
        Config c = parse(kApp + "default_locale = \"it\"\n[apps.shop.templates.it]\nsubject = \"Codice {{app}}\"\n"
                                "text = \"{{code}} è il tuo codice.\"\n",
                         kFile);
        CHECK(c.apps.at("shop").defaultLocale == "it");
        CHECK(c.apps.at("shop").templates.at("it").subject == "Codice {{app}}");
    }
}

TEST_CASE("paths must be absolute", "[config][errors]") {
    for (std::string key : {"socket", "state_dir", "database", "store_key_file", "pepper_file"}) {
        INFO(key);
        CHECK(errorOf("[daemon]\n" + key + " = \"var/lib/x\"\n" + kApp) ==
              kFile + ":2:" + std::to_string(key.size() + 4) + ": daemon." + key + ": must be an absolute path");
    }
    CHECK(errorOf("[outbox]\ndirectory = \"\"\n" + kApp) == kFile + ":2:13: outbox.directory: must be an absolute path");
    CHECK(errorOf("[daemon]\nsocket = \"/" + std::string(107, 's') + "\"\n" + kApp) ==
          kFile + ":2:10: daemon.socket: must be at most 107 bytes (the Unix socket path limit)");
}

TEST_CASE("access entries are checked", "[config][errors]") {
    CHECK(errorOf("[access.dpo]\nusers = [\"alice, bob\"]\n" + kApp) ==
          kFile + ":2:10: access.dpo.users[0]: is not a valid user name or uid");
    CHECK(errorOf("[access.dpo]\ngroups = [\"\"]\n" + kApp) ==
          kFile + ":2:11: access.dpo.groups[0]: is not a valid group name or gid");
}

TEST_CASE("display names are checked", "[config][errors]") {
    CHECK(errorOf(kApp + "display_name = \"\"\n") == kFile + ":2:16: apps.shop.display_name: must not be empty");
    CHECK(errorOf(kApp + "display_name = \"a\\nb\"\n") ==
          kFile + ":2:16: apps.shop.display_name: must not contain control characters");
    CHECK(errorOf(kApp + "display_name = \"" + std::string(129, 'x') + "\"\n") ==
          kFile + ":2:16: apps.shop.display_name: must be at most 128 bytes");
}

TEST_CASE("a configuration without apps is an error", "[config][errors]") {
    CHECK(errorOf("") == kFile + ": apps: no apps configured");
    CHECK(errorOf("[daemon]\nlog_level = \"info\"\n") == kFile + ": apps: no apps configured");
    CHECK(errorOf("[apps]\n") == kFile + ":1:1: apps: no apps configured");
}

TEST_CASE("TOML syntax errors keep their line and column", "[config][errors]") {
    std::string what = errorOf("[daemon]\nlog_level = \"info\"\n\nttl = \n" + kApp);
    CHECK_THAT(what, Catch::StartsWith(kFile + ":4:"));
    try {
        parse("[apps.shop]\nttl = 1\nttl = 2\n", kFile);
        FAIL("duplicate key accepted");
    } catch (const ConfigError& e) {
        CHECK(e.file() == kFile);
        CHECK(e.line() == 3);
        CHECK(e.column() >= 1);
        CHECK(e.key().empty());
        CHECK_FALSE(e.message().empty());
    }
}

TEST_CASE("ConfigError carries its parts and omits the unknown ones", "[config]") {
    ConfigError full("/f.toml", 12, 7, "apps.shop.ttl", "must be between 30 and 600 seconds");
    CHECK(std::string(full.what()) == "/f.toml:12:7: apps.shop.ttl: must be between 30 and 600 seconds");
    CHECK(full.file() == "/f.toml");
    CHECK(full.line() == 12);
    CHECK(full.column() == 7);
    CHECK(full.key() == "apps.shop.ttl");
    CHECK(full.message() == "must be between 30 and 600 seconds");
    CHECK(std::string(ConfigError("/f.toml", 0, 0, "", "No such file").what()) == "/f.toml: No such file");
    CHECK(std::string(ConfigError("", 0, 0, "apps", "none").what()) == "apps: none");
    CHECK(std::string(ConfigError("/f.toml", 3, 0, "k", "m").what()) == "/f.toml:3: k: m");
}

TEST_CASE("roleName", "[config]") {
    CHECK(std::string(roleName(Role::Operator)) == "operator");
    CHECK(std::string(roleName(Role::Dpo)) == "dpo");
    CHECK(std::string(roleName(Role::Admin)) == "admin");
}

TEST_CASE("loadFile reads files and reports unreadable ones", "[config]") {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("twofactor-test-config-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{dir};

    SECTION("a missing file") {
        std::string path = (dir / "missing.toml").string();
        try {
            loadFile(path);
            FAIL("missing file accepted");
        } catch (const ConfigError& e) {
            CHECK(e.file() == path);
            CHECK(e.message() == std::strerror(ENOENT));
            CHECK(std::string(e.what()) == path + ": " + std::strerror(ENOENT));
        }
    }
    SECTION("a directory") {
        try {
            loadFile(dir.string());
            FAIL("directory accepted");
        } catch (const ConfigError& e) {
            CHECK(e.message() == std::strerror(EISDIR));
        }
    }
    SECTION("a valid file") {
        std::string path = (dir / "ok.toml").string();
        std::ofstream(path) << kFull;
        Config c = loadFile(path);
        CHECK(c.sourcePath == path);
        CHECK(c.apps.size() == 2);
    }
    SECTION("an invalid file names itself") {
        std::string path = (dir / "bad.toml").string();
        std::ofstream(path) << "[apps.shop]\nttl = 5\n";
        CHECK_THROWS_WITH(loadFile(path), path + ":2:7: apps.shop.ttl: must be between 30 and 86400 seconds");
    }
}

TEST_CASE("embeddedDefault is a usable personal configuration", "[config]") {
    EnvGuard runtime("XDG_RUNTIME_DIR", "/run/user/4242");
    EnvGuard state("XDG_STATE_HOME", "/home/u/.local/state");
    Config c = embeddedDefault();
    CHECK(c.embedded);
    CHECK(c.sourcePath.empty());
    CHECK(c.socketPath == "/run/user/4242/twofactor/twofactord.sock");
    CHECK(c.socketPath == paths::defaultSocket());
    CHECK(c.stateDir == "/home/u/.local/state/twofactor");
    CHECK(c.databasePath == c.stateDir + "/twofactor.db");
    CHECK(c.storeKeyFile == c.stateDir + "/keys/store.key");
    CHECK(c.pepperFile == c.stateDir + "/keys/pepper.key");
    CHECK(c.outboxDir == c.stateDir + "/outbox");
    CHECK(c.generateKeys);
    CHECK(c.synchronousFull);
    CHECK(c.logLevel == "info");
    CHECK(c.limits.maxMessageBytes == 65536);

    const std::string self = std::to_string(::getuid());
    REQUIRE(c.access.count(Role::Admin) == 1);
    CHECK(c.access.at(Role::Admin).users == std::vector<std::string>{self});
    CHECK(c.access.at(Role::Admin).groups.empty());
    // The header promises the running user every role, not just admin.
    REQUIRE(c.access.size() == 3);
    for (const auto& [role, grant] : c.access) {
        INFO(roleName(role));
        CHECK(grant.users == std::vector<std::string>{self});
    }

    CHECK(c.drivers == std::map<std::string, std::string>{{"email", "outbox"}, {"whatsapp", "outbox"}});
    REQUIRE(c.apps.size() == 1);
    const App& app = c.apps.at("default");
    CHECK(app.name == "default");
    CHECK(app.displayName == "twofactor");
    CHECK(app.channels == std::vector<std::string>{"email", "whatsapp"});
    CHECK(app.templates.size() == builtinTemplates().size());
    CHECK(app.templates.count(app.defaultLocale) == 1);
    CHECK(app.codeLength >= app.minCodeLength);
    CHECK(app.codeLength <= app.maxCodeLength);
    CHECK(app.ttl <= app.maxTtl);
}

TEST_CASE("built-in templates are complete and use only known placeholders", "[config]") {
    const auto& builtins = builtinTemplates();
    CHECK(builtins.size() == 16);
    std::vector<std::string> keys;
    for (std::string locale : {"en", "de", "fr", "es"}) {
        keys.push_back(locale);
        for (const char* purpose : {".login", ".verify", ".recovery"}) {
            keys.push_back(locale + purpose);
        }
    }
    std::set<std::string> subjects;
    std::set<std::string> texts;
    for (const auto& key : keys) {
        INFO(key);
        REQUIRE(builtins.count(key) == 1);
        const Template& t = builtins.at(key);
        // Each purpose has its own wording.
        CHECK(subjects.insert(t.subject).second);
        CHECK(texts.insert(t.text).second);
        CHECK_FALSE(t.subject.empty());
        CHECK_FALSE(t.text.empty());
        CHECK_FALSE(t.html.empty());
        // Lock screens and mail logs show subjects: never the code there.
        CHECK(placeholders(t.subject) == std::set<std::string>{"app"});
        // The number of minutes, and the word for it in the template's language.
        const std::map<std::string, std::string> plural = {{"en", "minutes|minute|minutes"},
                                                           {"de", "minutes|Minute|Minuten"},
                                                           {"fr", "minutes|minute|minutes"},
                                                           {"es", "minutes|minuto|minutos"}};
        const std::set<std::string> expected = {"code", "app", "minutes", plural.at(key.substr(0, 2))};
        CHECK(placeholders(t.text) == expected);
        CHECK(placeholders(t.html) == expected);
        CHECK(t.subject.find('\n') == std::string::npos);
        CHECK_THAT(t.html, Catch::StartsWith("<p>") && Catch::EndsWith("</p>"));
    }
    // Each built-in survives the same validation as a user's template.
    std::string file = kApp;
    for (const auto& [locale, t] : builtins) {
        file += "[apps.shop.templates." + locale + "]\nsubject = \"" + t.subject + "\"\ntext = \"" + t.text +
                "\"\nhtml = \"" + t.html + "\"\n";
    }
    Config c = parse(file, kFile);
    const auto& parsed = c.apps.at("shop").templates;
    REQUIRE(parsed.size() == builtins.size());
    for (const auto& [key, t] : builtins) {
        INFO(key);
        REQUIRE(parsed.count(key) == 1);
        CHECK(sameTemplate(parsed.at(key), t));
    }
}

TEST_CASE("built-in purpose templates say what the code is for", "[config]") {
    const auto& b = builtinTemplates();
    CHECK_THAT(b.at("en.login").subject, Catch::Contains("sign-in code"));
    CHECK_THAT(b.at("en.verify").text, Catch::Contains("confirm your email address or phone number"));
    CHECK_THAT(b.at("en.recovery").subject, Catch::Contains("account recovery code"));
    CHECK_THAT(b.at("en.recovery").text, Catch::Contains("someone may be trying to access it"));
    CHECK_THAT(b.at("de.login").subject, Catch::Contains("Anmeldecode"));
    CHECK_THAT(b.at("fr.recovery").subject, Catch::Contains("récupération"));
    CHECK_THAT(b.at("es.verify").subject, Catch::Contains("Confirma"));
    // The generic ones remain the fallback.
    CHECK_THAT(b.at("en").subject, Catch::Contains("verification code"));
}

TEST_CASE("default locations", "[paths]") {
    CHECK(paths::systemSocket() == TWOFACTOR_SOCKET_PATH);
    CHECK(paths::systemStateDir() == TWOFACTOR_STATE_DIR);
    CHECK(paths::systemConfigPath() == TWOFACTOR_CONFIG_PATH);

    SECTION("XDG_RUNTIME_DIR decides the socket") {
        EnvGuard runtime("XDG_RUNTIME_DIR", "/run/user/1000/");
        CHECK(paths::defaultSocket() == "/run/user/1000/twofactor/twofactord.sock");
    }
    SECTION("without a usable XDG_RUNTIME_DIR the socket depends on the uid") {
        EnvGuard runtime("XDG_RUNTIME_DIR", "relative/dir");
        if (::getuid() == 0) {
            CHECK(paths::defaultSocket() == paths::systemSocket());
        } else {
            CHECK(paths::defaultSocket() == "/tmp/twofactor-" + std::to_string(::getuid()) + "/twofactord.sock");
        }
    }
    SECTION("XDG_STATE_HOME decides the state directory") {
        EnvGuard state("XDG_STATE_HOME", "/s");
        CHECK(paths::defaultStateDir() == "/s/twofactor");
    }
    SECTION("without XDG_STATE_HOME: the system directory for root, else under HOME") {
        EnvGuard state("XDG_STATE_HOME", nullptr);
        EnvGuard home("HOME", "/home/someone");
        if (::getuid() == 0) {
            CHECK(paths::defaultStateDir() == paths::systemStateDir());
        } else {
            CHECK(paths::defaultStateDir() == "/home/someone/.local/state/twofactor");
        }
    }
    SECTION("without HOME the password database gives the home directory") {
        EnvGuard state("XDG_STATE_HOME", nullptr);
        EnvGuard home("HOME", nullptr);
        const passwd* pw = ::getpwuid(::getuid());
        if (::getuid() != 0 && pw != nullptr && pw->pw_dir[0] == '/') {
            std::string dir = pw->pw_dir;
            CHECK(paths::defaultStateDir() == (dir == "/" ? "" : dir) + "/.local/state/twofactor");
        }
    }
}

namespace {

// A private temporary directory, removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "twofactor-test-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string write(const std::string& name, const std::string& content) const {
        std::string file = (path / name).string();
        std::ofstream(file, std::ios::binary) << content;
        return file;
    }
};

// TOML basic-string quoting for a path.
std::string q(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

TEST_CASE("[tls] is read and checked", "[config][tls]") {
    TempDir dir;
    const std::string bundle = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");

    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        CHECK(c.tls.minVersion == "1.2");
        CHECK(c.tls.caBundle.empty());
    }
    SECTION("values") {
        Config c = parse("[tls]\nmin_version = \"1.3\"\nca_bundle = " + q(bundle) + "\n" + kApp, kFile);
        CHECK(c.tls.minVersion == "1.3");
        CHECK(c.tls.caBundle == bundle);
        CHECK(parse("[tls]\nmin_version = \"1.2\"\n" + kApp, kFile).tls.minVersion == "1.2");
    }
    SECTION("errors") {
        CHECK(errorOf("[tls]\nmin_version = \"1.1\"\n" + kApp) ==
              kFile + ":2:15: tls.min_version: must be one of 1.2, 1.3, not \"1.1\"");
        CHECK(errorOf("[tls]\nmin_version = 1.3\n" + kApp) == kFile + ":2:15: tls.min_version: must be a string");
        CHECK(errorOf("[tls]\nca_bundle = \"ca.pem\"\n" + kApp) ==
              kFile + ":2:13: tls.ca_bundle: must be an absolute path");
        const std::string missing = (dir.path / "missing.pem").string();
        CHECK(errorOf("[tls]\nca_bundle = " + q(missing) + "\n" + kApp) ==
              kFile + ":2:13: tls.ca_bundle: " + missing + ": " + std::strerror(ENOENT));
        CHECK(errorOf("[tls]\nca_bundle = " + q(dir.path.string()) + "\n" + kApp) ==
              kFile + ":2:13: tls.ca_bundle: " + dir.path.string() + ": not a regular file");
        CHECK(errorOf("tls = 1\n" + kApp) == kFile + ":1:7: tls: must be a table");
    }
}

TEST_CASE("[ses] is read and checked", "[config][ses]") {
    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        CHECK(c.ses.region.empty());
        CHECK(c.ses.endpoint.empty());
        CHECK(c.ses.from.empty());
        CHECK(c.ses.replyTo.empty());
        CHECK(c.ses.configurationSet.empty());
        CHECK(c.ses.accessKeyIdFile.empty());
        CHECK(c.ses.secretAccessKeyFile.empty());
        CHECK(c.ses.sessionTokenFile.empty());
        CHECK(c.ses.timeout == std::chrono::seconds(10));
    }
    SECTION("values") {
        Config c = parse(R"([delivery]
email = "ses"

[ses]
region = "eu-central-1"
endpoint = "https://email-fips.eu-central-1.amazonaws.com/"
from = "Example Shop <no-reply@mail.example.com>"
reply_to = ["support@example.com", "\"Support, Team\" <help@example.com>"]
configuration_set = "otp_Events-1"
access_key_id_file = "/etc/twofactor/aws-key-id"
secret_access_key_file = "/etc/twofactor/aws-secret"
session_token_file = "/etc/twofactor/aws-token"
timeout = 120
)" + kApp,
                         kFile);
        CHECK(c.drivers.at("email") == "ses");
        CHECK(c.ses.region == "eu-central-1");
        // Trailing slashes go: the driver appends its own path.
        CHECK(c.ses.endpoint == "https://email-fips.eu-central-1.amazonaws.com");
        CHECK(c.ses.from == "Example Shop <no-reply@mail.example.com>");
        CHECK(c.ses.replyTo == std::vector<std::string>{"support@example.com", "\"Support, Team\" <help@example.com>"});
        CHECK(c.ses.configurationSet == "otp_Events-1");
        CHECK(c.ses.accessKeyIdFile == "/etc/twofactor/aws-key-id");
        CHECK(c.ses.secretAccessKeyFile == "/etc/twofactor/aws-secret");
        CHECK(c.ses.sessionTokenFile == "/etc/twofactor/aws-token");
        CHECK(c.ses.timeout == std::chrono::seconds(120));
    }
    SECTION("regions") {
        for (const char* ok : {"eu-west-1", "us-gov-west-1", "ap-southeast-2", "me-central-1", "us-gov-east-1"}) {
            INFO(ok);
            CHECK(parse(std::string("[ses]\nregion = \"") + ok + "\"\n" + kApp, kFile).ses.region == ok);
        }
        for (const char* bad : {"EU-west-1", "eu-west", "eu-west-12", "eu_west_1", "europe-west-1", "eu-west-1 ",
                                "eu--1", "us-gov--1", ""}) {
            INFO(bad);
            CHECK(errorOf(std::string("[ses]\nregion = \"") + bad + "\"\n" + kApp) ==
                  kFile + ":2:10: ses.region: must be an AWS region such as \"eu-west-1\", not \"" + bad + "\"");
        }
    }
    SECTION("endpoints: https anywhere, http only on loopback") {
        for (const char* ok : {"https://ses.example.com", "https://ses.example.com:8443/prefix", "http://127.0.0.1:4566",
                               "http://localhost:8080", "http://[::1]:9000", "https://[2001:db8::1]"}) {
            INFO(ok);
            CHECK(parse(std::string("[ses]\nendpoint = \"") + ok + "\"\n" + kApp, kFile).ses.endpoint == ok);
        }
        auto err = [](const std::string& url) { return errorOf("[ses]\nendpoint = " + q(url) + "\n" + kApp); };
        const std::string at = kFile + ":2:12: ses.endpoint: ";
        CHECK(err("http://ses.example.com") ==
              at + "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
        CHECK(err("http://127.0.0.2") == at + "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
        CHECK(err("ftp://ses.example.com") == at + "must be an https:// URL");
        CHECK(err("HTTPS://ses.example.com") == at + "must be an https:// URL");
        CHECK(err("ses.example.com") == at + "must be a URL such as \"https://host\"");
        CHECK(err("https://") == at + "has no host");
        CHECK(err("https://ses.example.com?x=1") == at + "must not have a query or fragment");
        CHECK(err("https://u:p@ses.example.com") == at + "must not contain credentials");
        CHECK(err("https://ses.example.com:0") == at + "has an invalid port \"0\"");
        CHECK(err("https://ses.example.com:65536") == at + "has an invalid port \"65536\"");
        CHECK(err("https://ses.example.com:") == at + "has an empty port");
        CHECK(err("https://ses example.com") == at + "must be a URL without spaces or control characters");
        CHECK(err("https://ses_example.com") == at + "has an invalid host \"ses_example.com\"");
        CHECK(err("https://[::1") == at + "has an invalid IPv6 address");
    }
    SECTION("addresses") {
        for (const char* ok : {"a@example.com", "Shop <no-reply@example.com>", "<a@example.com>",
                               "\"Shop, Inc.\" <a.b+c@mail.example.co.uk>", "Café Müller <x@example.de>",
                               "Example Inc. <x@example.com>", "o.brien_1+x@sub-1.example.com"}) {
            INFO(ok);
            // A TOML literal string: no escapes needed for the quotes.
            CHECK(parse(std::string("[ses]\nfrom = '") + ok + "'\n" + kApp, kFile).ses.from == ok);
        }
        const std::string hint =
            "must be an email address such as \"no-reply@example.com\" or \"Example <no-reply@example.com>\" (quote a "
            "display name containing , ; : @ or parentheses)";
        for (const char* bad : {"", "example.com", "a@localhost", "@example.com", "a@", "a b@example.com",
                                "Shop <a@example.com", "Shop, Inc. <a@example.com>", "a@example.com\\r\\nBcc: x@y.com",
                                "Shop <a@-example.com>", "a..b@example.com", "\\\"Shop <a@example.com>"}) {
            INFO(bad);
            CHECK(errorOf(std::string("[ses]\nfrom = \"") + bad + "\"\n" + kApp) == kFile + ":2:8: ses.from: " + hint);
        }
        CHECK(errorOf("[ses]\nreply_to = [\"a@example.com\", \"nobody\"]\n" + kApp) ==
              kFile + ":2:30: ses.reply_to[1]: " + hint);
        CHECK(errorOf("[ses]\nreply_to = \"a@example.com\"\n" + kApp) ==
              kFile + ":2:12: ses.reply_to: must be an array of strings");
    }
    SECTION("configuration sets") {
        CHECK(parse("[ses]\nconfiguration_set = \"" + std::string(64, 'c') + "\"\n" + kApp, kFile)
                  .ses.configurationSet.size() == 64);
        const std::string msg = "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";
        CHECK(errorOf("[ses]\nconfiguration_set = \"" + std::string(65, 'c') + "\"\n" + kApp) ==
              kFile + ":2:21: ses.configuration_set: " + msg);
        CHECK(errorOf("[ses]\nconfiguration_set = \"\"\n" + kApp) == kFile + ":2:21: ses.configuration_set: " + msg);
        CHECK(errorOf("[ses]\nconfiguration_set = \"otp.events\"\n" + kApp) ==
              kFile + ":2:21: ses.configuration_set: " + msg);
    }
    SECTION("credential files") {
        CHECK(errorOf("[ses]\naccess_key_id_file = \"key\"\n" + kApp) ==
              kFile + ":2:22: ses.access_key_id_file: must be an absolute path");
        CHECK(errorOf("[ses]\nsecret_access_key_file = \"\"\n" + kApp) ==
              kFile + ":2:26: ses.secret_access_key_file: must be an absolute path");
        CHECK(errorOf("[ses]\nsession_token_file = \"t\"\n" + kApp) ==
              kFile + ":2:22: ses.session_token_file: must be an absolute path");
        CHECK(errorOf("[ses]\naccess_key_id_file = \"/k\"\n" + kApp) ==
              kFile + ":2:22: ses.access_key_id_file: needs ses.secret_access_key_file as well");
        CHECK(errorOf("[ses]\nsecret_access_key_file = \"/s\"\n" + kApp) ==
              kFile + ":2:26: ses.secret_access_key_file: needs ses.access_key_id_file as well");
        CHECK(errorOf("[ses]\nsession_token_file = \"/t\"\n" + kApp) ==
              kFile + ":2:22: ses.session_token_file: needs ses.access_key_id_file and ses.secret_access_key_file "
                      "as well");
    }
    SECTION("timeout") {
        CHECK(parse("[ses]\ntimeout = 1\n" + kApp, kFile).ses.timeout == std::chrono::seconds(1));
        CHECK(errorOf("[ses]\ntimeout = 0\n" + kApp) == kFile + ":2:11: ses.timeout: must be between 1 and 120 seconds");
        CHECK(errorOf("[ses]\ntimeout = 121\n" + kApp) ==
              kFile + ":2:11: ses.timeout: must be between 1 and 120 seconds");
    }
}

TEST_CASE("[smtp] is read and checked", "[config][smtp]") {
    EnvGuard credentials("CREDENTIALS_DIRECTORY", nullptr);
    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        CHECK(c.smtp.url.empty());
        CHECK(c.smtp.from.empty());
        CHECK(c.smtp.username.empty());
        CHECK(c.smtp.passwordFile.empty());
        CHECK(c.smtp.sesRegion.empty());
        CHECK(c.smtp.requireTls);
        CHECK(c.smtp.timeout == std::chrono::seconds(10));
    }
    SECTION("values") {
        Config c = parse(R"([delivery]
email = "smtp"

[smtp]
url = "smtp://mail.example.com:587"
from = "Shop <no-reply@example.com>"
username = "otp"
password_file = "/etc/twofactor/smtp-password"
require_tls = true
timeout = 30
)" + kApp,
                         kFile);
        CHECK(c.drivers.at("email") == "smtp");
        CHECK(c.smtp.url == "smtp://mail.example.com:587");
        CHECK(c.smtp.from == "Shop <no-reply@example.com>");
        CHECK(c.smtp.username == "otp");
        CHECK(c.smtp.passwordFile == "/etc/twofactor/smtp-password");
        CHECK(c.smtp.sesRegion.empty());
        CHECK(c.smtp.requireTls);
        CHECK(c.smtp.timeout == std::chrono::seconds(30));
    }
    SECTION("SES SMTP: the password comes from the AWS key") {
        Config c = parse("[smtp]\nurl = \"smtps://email-smtp.eu-west-1.amazonaws.com:465\"\nusername = \"AKIA\"\n"
                         "ses_region = \"eu-west-1\"\n" + kApp,
                         kFile);
        CHECK(c.smtp.sesRegion == "eu-west-1");
        CHECK(c.smtp.passwordFile.empty());
        CHECK(errorOf("[smtp]\nses_region = \"eu-west\"\n" + kApp) ==
              kFile + ":2:14: smtp.ses_region: must be an AWS region such as \"eu-west-1\", not \"eu-west\"");
    }
    SECTION("urls") {
        CHECK(parse("[smtp]\nurl = \"smtps://mail.example.com\"\n" + kApp, kFile).smtp.url == "smtps://mail.example.com");
        CHECK(parse("[smtp]\nurl = \"smtp://mail.example.com/client.example.com\"\n" + kApp, kFile).smtp.url ==
              "smtp://mail.example.com/client.example.com");
        const std::string at = kFile + ":2:7: smtp.url: ";
        CHECK(errorOf("[smtp]\nurl = \"https://mail.example.com\"\n" + kApp) ==
              at + "must start with smtp:// (STARTTLS) or smtps:// (implicit TLS), not \"https://\"");
        CHECK(errorOf("[smtp]\nurl = \"mail.example.com:587\"\n" + kApp) == at + "must be a URL such as \"https://host\"");
        CHECK(errorOf("[smtp]\nurl = \"smtp://user:pw@mail.example.com\"\n" + kApp) ==
              at + "must not contain credentials");
        CHECK(errorOf("[smtp]\nurl = \"smtp://mail.example.com/a/b\"\n" + kApp) ==
              at + "may only have a host name as its path (the EHLO name)");
        CHECK(errorOf("[smtp]\nurl = 587\n" + kApp) == at + "must be a string");
    }
    SECTION("passwords") {
        CHECK(errorOf("[smtp]\nusername = \"otp\"\n" + kApp) ==
              kFile + ":2:12: smtp.username: has no password: set password_file or ses_region, or pass the systemd "
                      "credential \"smtp-password\"");
        CHECK(errorOf("[smtp]\nusername = \"\"\n" + kApp) ==
              kFile + ":2:12: smtp.username: must not be empty or contain control characters");
        CHECK(errorOf("[smtp]\npassword_file = \"/p\"\n" + kApp) ==
              kFile + ":2:17: smtp.password_file: needs smtp.username as well");
        CHECK(errorOf("[smtp]\npassword_file = \"p\"\nusername = \"u\"\n" + kApp) ==
              kFile + ":2:17: smtp.password_file: must be an absolute path");
        const std::string exclusive =
            "password_file and ses_region are mutually exclusive (ses_region derives the password from the AWS "
            "secret key)";
        CHECK(errorOf("[smtp]\nusername = \"u\"\nses_region = \"eu-west-1\"\npassword_file = \"/p\"\n" + kApp) ==
              kFile + ":4:17: smtp.password_file: " + exclusive);
        CHECK(errorOf("[smtp]\nusername = \"u\"\npassword_file = \"/p\"\nses_region = \"eu-west-1\"\n" + kApp) ==
              kFile + ":4:14: smtp.ses_region: " + exclusive);
    }
    SECTION("a systemd credential is a password source") {
        TempDir dir;
        dir.write("smtp-password", "secret\n");
        EnvGuard withCredentials("CREDENTIALS_DIRECTORY", dir.path.c_str());
        CHECK(parse("[smtp]\nusername = \"otp\"\n" + kApp, kFile).smtp.username == "otp");
    }
    SECTION("require_tls = false only towards this host") {
        Config c = parse("[smtp]\nurl = \"smtp://127.0.0.1:2525\"\nrequire_tls = false\n" + kApp, kFile);
        CHECK_FALSE(c.smtp.requireTls);
        CHECK_FALSE(parse("[smtp]\nurl = \"smtp://[::1]:25\"\nrequire_tls = false\n" + kApp, kFile).smtp.requireTls);
        // smtps:// is TLS either way.
        CHECK_FALSE(parse("[smtp]\nurl = \"smtps://mail.example.com\"\nrequire_tls = false\n" + kApp, kFile).smtp.requireTls);
        CHECK(errorOf("[smtp]\nurl = \"smtp://mail.example.com\"\nrequire_tls = false\n" + kApp) ==
              kFile + ":3:15: smtp.require_tls: may only be false for a relay on 127.0.0.1, localhost or [::1] (or use "
                      "smtps://)");
        CHECK(errorOf("[smtp]\nrequire_tls = \"no\"\n" + kApp) == kFile + ":2:15: smtp.require_tls: must be true or false");
    }
    SECTION("timeout and from") {
        CHECK(errorOf("[smtp]\ntimeout = 121\n" + kApp) == kFile + ":2:11: smtp.timeout: must be between 1 and 120 seconds");
        CHECK_THAT(errorOf("[smtp]\nfrom = \"no-reply\"\n" + kApp),
                   Catch::StartsWith(kFile + ":2:8: smtp.from: must be an email address"));
    }
}

TEST_CASE("[retry] is read and checked", "[config][retry]") {
    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        CHECK(c.retry.maxAttempts == 5);
        CHECK(c.retry.baseDelay == std::chrono::milliseconds(1000));
        CHECK(c.retry.maxDelay == std::chrono::milliseconds(20000));
        CHECK(c.retry.sendWait == std::chrono::seconds(20));
    }
    SECTION("values and inclusive bounds") {
        Config c = parse("[retry]\nmax_attempts = 20\nbase_delay_ms = 10\nmax_delay_ms = 300000\nsend_wait = 300\n" + kApp,
                         kFile);
        CHECK(c.retry.maxAttempts == 20);
        CHECK(c.retry.baseDelay == std::chrono::milliseconds(10));
        CHECK(c.retry.maxDelay == std::chrono::milliseconds(300000));
        CHECK(c.retry.sendWait == std::chrono::seconds(300));
        Config d = parse("[retry]\nmax_attempts = 1\nbase_delay_ms = 500\nmax_delay_ms = 500\nsend_wait = 1\n" + kApp, kFile);
        CHECK(d.retry.maxDelay == std::chrono::milliseconds(500));
    }
    SECTION("a base above the default maximum raises the maximum") {
        Config c = parse("[retry]\nbase_delay_ms = 60000\n" + kApp, kFile);
        CHECK(c.retry.baseDelay == std::chrono::milliseconds(60000));
        CHECK(c.retry.maxDelay == std::chrono::milliseconds(60000));
    }
    SECTION("errors") {
        CHECK(errorOf("[retry]\nmax_attempts = 0\n" + kApp) == kFile + ":2:16: retry.max_attempts: must be between 1 and 20");
        CHECK(errorOf("[retry]\nmax_attempts = 21\n" + kApp) == kFile + ":2:16: retry.max_attempts: must be between 1 and 20");
        CHECK(errorOf("[retry]\nbase_delay_ms = 9\n" + kApp) ==
              kFile + ":2:17: retry.base_delay_ms: must be between 10 and 60000 ms");
        CHECK(errorOf("[retry]\nbase_delay_ms = 60001\n" + kApp) ==
              kFile + ":2:17: retry.base_delay_ms: must be between 10 and 60000 ms");
        // max_delay_ms is checked against base_delay_ms whatever the order in the file.
        CHECK(errorOf("[retry]\nmax_delay_ms = 400\nbase_delay_ms = 500\n" + kApp) ==
              kFile + ":2:16: retry.max_delay_ms: must be between 500 and 300000 ms");
        CHECK(errorOf("[retry]\nmax_delay_ms = 300001\n" + kApp) ==
              kFile + ":2:16: retry.max_delay_ms: must be between 1000 and 300000 ms");
        CHECK(errorOf("[retry]\nsend_wait = 0\n" + kApp) == kFile + ":2:13: retry.send_wait: must be between 1 and 300 seconds");
        CHECK(errorOf("[retry]\nsend_wait = 301\n" + kApp) ==
              kFile + ":2:13: retry.send_wait: must be between 1 and 300 seconds");
        CHECK(errorOf("[retry]\nsend_wait = 1.5\n" + kApp) == kFile + ":2:13: retry.send_wait: must be an integer");
    }
}

TEST_CASE("per-app email settings are read and checked", "[config][ses]") {
    Config c = parse(kApp + "ses_region = \"eu-north-1\"\nses_from = \"Shop <a@example.se>\"\n"
                            "ses_configuration_set = \"eu-events\"\nemail_from = \"b@example.se\"\n[apps.blog]\n",
                     kFile);
    const App& shop = c.apps.at("shop");
    CHECK(shop.sesRegion == "eu-north-1");
    CHECK(shop.sesFrom == "Shop <a@example.se>");
    CHECK(shop.sesConfigurationSet == "eu-events");
    CHECK(shop.emailFrom == "b@example.se");
    const App& blog = c.apps.at("blog");
    CHECK(blog.sesRegion.empty());
    CHECK(blog.sesFrom.empty());
    CHECK(blog.sesConfigurationSet.empty());
    CHECK(blog.emailFrom.empty());

    CHECK(errorOf(kApp + "ses_region = \"eu\"\n") ==
          kFile + ":2:14: apps.shop.ses_region: must be an AWS region such as \"eu-west-1\", not \"eu\"");
    CHECK_THAT(errorOf(kApp + "ses_from = \"Shop\"\n"),
               Catch::StartsWith(kFile + ":2:12: apps.shop.ses_from: must be an email address"));
    CHECK(errorOf(kApp + "ses_configuration_set = \"a b\"\n") ==
          kFile + ":2:25: apps.shop.ses_configuration_set: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
    CHECK_THAT(errorOf(kApp + "email_from = \"x@y\"\n"),
               Catch::StartsWith(kFile + ":2:14: apps.shop.email_from: must be an email address"));
    CHECK(errorOf(kApp + "email_from = 1\n") == kFile + ":2:14: apps.shop.email_from: must be a string");
}

TEST_CASE("email drivers need their settings, globally or per app", "[config][ses][smtp]") {
    EnvGuard credentials("CREDENTIALS_DIRECTORY", nullptr);
    const std::string ses = "[delivery]\nemail = \"ses\"\nwhatsapp = \"outbox\"\n";
    const std::string smtp = "[delivery]\nemail = \"smtp\"\nwhatsapp = \"outbox\"\n";

    SECTION("ses: region and from in [ses]") {
        CHECK_NOTHROW(parse(ses + "[ses]\nregion = \"eu-west-1\"\nfrom = \"a@example.com\"\n" + kApp, kFile));
    }
    SECTION("ses: a missing region names the app that lacks one") {
        CHECK(errorOf(ses + "[ses]\nfrom = \"a@example.com\"\n" + kApp) ==
              kFile + ":2:9: ses.region: is required by delivery.email = \"ses\" (apps.shop has no ses_region)");
        CHECK(errorOf(ses + "[ses]\nfrom = \"a@example.com\"\n[apps.a]\nses_region = \"eu-west-1\"\n[apps.b]\n") ==
              kFile + ":2:9: ses.region: is required by delivery.email = \"ses\" (apps.b has no ses_region)");
    }
    SECTION("ses: a missing from") {
        CHECK(errorOf(ses + "[ses]\nregion = \"eu-west-1\"\n" + kApp) ==
              kFile + ":2:9: ses.from: is required by delivery.email = \"ses\" (apps.shop has no ses_from)");
        CHECK(errorOf(ses + kApp) ==
              kFile + ":2:9: ses.region: is required by delivery.email = \"ses\" (apps.shop has no ses_region)");
    }
    SECTION("ses: per-app region and from suffice") {
        Config c = parse(ses + "[apps.eu]\nses_region = \"eu-west-1\"\nses_from = \"eu@example.com\"\n"
                               "[apps.us]\nses_region = \"us-east-1\"\nses_from = \"us@example.com\"\n",
                         kFile);
        CHECK(c.apps.at("eu").sesRegion == "eu-west-1");
        CHECK(c.apps.at("us").sesRegion == "us-east-1");
        // A mix: global defaults, one app overriding.
        CHECK_NOTHROW(parse(ses + "[ses]\nregion = \"us-east-1\"\n[apps.eu]\nses_region = \"eu-west-1\"\n"
                                  "ses_from = \"eu@example.com\"\n",
                            kFile));
    }
    SECTION("ses: apps without email need nothing") {
        CHECK_NOTHROW(parse(ses + "[apps.chat]\nchannels = [\"whatsapp\"]\n", kFile));
    }
    SECTION("smtp: url and from") {
        CHECK_NOTHROW(parse(smtp + "[smtp]\nurl = \"smtps://mail.example.com\"\nfrom = \"a@example.com\"\n" + kApp, kFile));
        CHECK(errorOf(smtp + "[smtp]\nfrom = \"a@example.com\"\n" + kApp) ==
              kFile + ":2:9: smtp.url: is required by delivery.email = \"smtp\"");
        CHECK(errorOf(smtp + "[apps.chat]\nchannels = [\"whatsapp\"]\n") ==
              kFile + ":2:9: smtp.url: is required by delivery.email = \"smtp\"");
        CHECK(errorOf(smtp + "[smtp]\nurl = \"smtps://mail.example.com\"\n" + kApp) ==
              kFile + ":2:9: smtp.from: is required by delivery.email = \"smtp\" (apps.shop has no email_from)");
        Config c = parse(smtp + "[smtp]\nurl = \"smtps://mail.example.com\"\n" + kApp + "email_from = \"s@example.com\"\n",
                         kFile);
        CHECK(c.apps.at("shop").emailFrom == "s@example.com");
    }
    SECTION("the outbox needs neither") {
        CHECK_NOTHROW(parse("[delivery]\nemail = \"outbox\"\n[ses]\ntimeout = 5\n[smtp]\ntimeout = 5\n" + kApp, kFile));
    }
}

TEST_CASE("purpose templates", "[config][templates]") {
    SECTION("a purpose sub-table adds LOCALE.PURPOSE and leaves the generic one") {
        Config c = parse(kApp + "[apps.shop.templates.en.login]\ntext = \"Sign in with {{code}}\"\n"
                                "[apps.shop.templates.de.recovery]\nsubject = \"Konto {{app}}\"\n"
                                "text = \"{{code}}\"\nhtml = \"<p>{{code}}</p>\"\n",
                         kFile);
        const auto& t = c.apps.at("shop").templates;
        const auto& b = builtinTemplates();
        CHECK(t.at("en.login").text == "Sign in with {{code}}");
        // No subject: the built-in one of the same purpose.
        CHECK(t.at("en.login").subject == b.at("en.login").subject);
        CHECK(t.at("en.login").html.empty());
        CHECK(sameTemplate(t.at("en"), b.at("en")));
        CHECK(sameTemplate(t.at("en.verify"), b.at("en.verify")));
        CHECK(t.at("de.recovery").subject == "Konto {{app}}");
        CHECK(t.at("de.recovery").html == "<p>{{code}}</p>");
        CHECK(t.size() == b.size());
    }
    SECTION("a generic table with purposes in the same locale") {
        Config c = parse(kApp + "[apps.shop.templates.fr]\ntext = \"Code {{code}}\"\n"
                                "[apps.shop.templates.fr.verify]\ntext = \"Vérif {{code}}\"\n",
                         kFile);
        const auto& t = c.apps.at("shop").templates;
        CHECK(t.at("fr").text == "Code {{code}}");
        CHECK(t.at("fr.verify").text == "Vérif {{code}}");
        CHECK(t.at("fr.verify").subject == builtinTemplates().at("fr.verify").subject);
        // The app's fr replaces the built-in fr purposes it does not give.
        CHECK(t.count("fr.login") == 0);
        CHECK(t.count("fr.recovery") == 0);
    }
    SECTION("inline purpose tables work too") {
        Config c = parse(kApp + "[apps.shop.templates.es]\nlogin = { text = \"{{code}}!\" }\n", kFile);
        CHECK(c.apps.at("shop").templates.at("es.login").text == "{{code}}!");
        CHECK(sameTemplate(c.apps.at("shop").templates.at("es"), builtinTemplates().at("es")));
    }
    SECTION("a new locale: the purpose takes the locale's own subject") {
        Config c = parse(kApp + "[apps.shop.templates.pt-BR]\nsubject = \"Código {{app}}\"\ntext = \"{{code}}\"\n"
                                "[apps.shop.templates.pt-BR.login]\ntext = \"Entrar: {{code}}\"\n",
                         kFile);
        CHECK(c.apps.at("shop").templates.at("pt-BR.login").subject == "Código {{app}}");
    }
    SECTION("a new locale without any subject is an error") {
        CHECK(errorOf(kApp + "[apps.shop.templates.it.login]\ntext = \"{{code}}\"\n") ==
              kFile + ":2:1: apps.shop.templates.it.login.subject: is required: there is no built-in template for "
                      "locale \"it\" and apps.shop.templates.it has no subject");
    }
    SECTION("a purpose alone is not a default locale") {
        CHECK(errorOf(kApp + "default_locale = \"it\"\n[apps.shop.templates.it.login]\nsubject = \"S\"\n"
                             "text = \"{{code}}\"\n") ==
              kFile + ":2:18: apps.shop.default_locale: has no template for \"it\" (available: de, en, es, fr)");
    }
    SECTION("purpose tables are validated like the generic ones") {
        const std::string t = kApp + "[apps.shop.templates.en.verify]\n";
        CHECK(errorOf(t + "text = \"confirm\"\n") == kFile + ":3:8: apps.shop.templates.en.verify.text: must contain {{code}}");
        CHECK(errorOf(t + "subject = \"x\"\n") == kFile + ":2:1: apps.shop.templates.en.verify.text: is required");
        CHECK(errorOf(t + "subject = \"{{code}} {{x}}\"\ntext = \"{{code}}\"\n") ==
              kFile + ":3:11: apps.shop.templates.en.verify.subject: unknown placeholder \"{{x}}\" (allowed: {{code}}, "
                      "{{app}}, {{minutes}}, {{minutes|ONE|OTHER}}, {{context.KEY}})");
        CHECK(errorOf(kApp + "[apps.shop.templates.en]\nlogin = \"x\"\n") ==
              kFile + ":3:9: apps.shop.templates.en.login: must be a table");
    }
    SECTION("an empty locale table still needs a text") {
        CHECK(errorOf(kApp + "[apps.shop.templates.en]\n") == kFile + ":2:1: apps.shop.templates.en.text: is required");
    }
}

TEST_CASE("template files are read at load", "[config][templates]") {
    TempDir dir;
    const std::string text = dir.write("en.txt", "Hello,\n\n{{code}} is your {{app}} code ({{minutes}} min).\n");
    const std::string html = dir.write("en.html", "<p><b>{{code}}</b></p>\n");
    const std::string t = kApp + "[apps.shop.templates.en]\n";

    SECTION("text_file and html_file") {
        Config c = parse(t + "text_file = " + q(text) + "\nhtml_file = " + q(html) + "\n"
                             "[apps.shop.templates.en.login]\nsubject = \"Sign in\"\ntext_file = " + q(text) + "\n",
                         kFile);
        const auto& tm = c.apps.at("shop").templates;
        CHECK(tm.at("en").text == "Hello,\n\n{{code}} is your {{app}} code ({{minutes}} min).\n");
        CHECK(tm.at("en").html == "<p><b>{{code}}</b></p>\n");
        CHECK(tm.at("en").subject == builtinTemplates().at("en").subject);
        CHECK(tm.at("en.login").text == tm.at("en").text);
        CHECK(tm.at("en.login").subject == "Sign in");
        // The file's content is kept; the daemon never reads it again.
        dir.write("en.txt", "changed {{code}}");
        CHECK(tm.at("en").text != "changed {{code}}");
    }
    SECTION("a file and inline text are mutually exclusive") {
        CHECK(errorOf(t + "text = \"{{code}}\"\ntext_file = " + q(text) + "\n") ==
              kFile + ":4:13: apps.shop.templates.en.text_file: text and text_file are mutually exclusive");
        CHECK(errorOf(t + "text = \"{{code}}\"\nhtml = \"{{code}}\"\nhtml_file = " + q(html) + "\n") ==
              kFile + ":5:13: apps.shop.templates.en.html_file: html and html_file are mutually exclusive");
    }
    SECTION("paths and unreadable files") {
        const std::string at = kFile + ":3:13: apps.shop.templates.en.text_file: ";
        CHECK(errorOf(t + "text_file = \"en.txt\"\n") == at + "must be an absolute path");
        const std::string missing = (dir.path / "missing.txt").string();
        CHECK(errorOf(t + "text_file = " + q(missing) + "\n") == at + missing + ": " + std::strerror(ENOENT));
        CHECK(errorOf(t + "text_file = " + q(dir.path.string()) + "\n") == at + dir.path.string() + ": not a regular file");
        REQUIRE(::mkfifo((dir.path / "fifo").c_str(), 0600) == 0);
        CHECK(errorOf(t + "text_file = " + q((dir.path / "fifo").string()) + "\n") ==
              at + (dir.path / "fifo").string() + ": not a regular file");
    }
    SECTION("at most 64 KiB") {
        std::string big = "{{code}}" + std::string(65536 - 8, 'x');
        CHECK(parse(t + "text_file = " + q(dir.write("max.txt", big)) + "\n", kFile).apps.at("shop").templates.at("en").text.size() ==
              65536);
        const std::string tooBig = dir.write("big.txt", big + "x");
        CHECK(errorOf(t + "text_file = " + q(tooBig) + "\n") ==
              kFile + ":3:13: apps.shop.templates.en.text_file: " + tooBig + ": larger than 65536 bytes");
    }
    SECTION("UTF-8 only, no NUL") {
        for (std::string bad : {std::string("{{code}} \xff"), std::string("{{code}} \xc3"), std::string("\xc0\xaf {{code}}"),
                                std::string("{{code}} \xed\xa0\x80"), std::string("{{code}} \xf4\x90\x80\x80")}) {
            const std::string file = dir.write("bad.txt", bad);
            CHECK(errorOf(t + "text_file = " + q(file) + "\n") ==
                  kFile + ":3:13: apps.shop.templates.en.text_file: " + file + ": not valid UTF-8");
        }
        const std::string good = dir.write("good.txt", "{{code}} \xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
        CHECK_NOTHROW(parse(t + "text_file = " + q(good) + "\n", kFile));
        const std::string nul = dir.write("nul.txt", std::string("{{code}}\nline\0two", 17));
        CHECK(errorOf(t + "text_file = " + q(nul) + "\n") ==
              kFile + ":3:13: apps.shop.templates.en.text_file: " + nul + ":2: contains a NUL character");
    }
    SECTION("placeholders are checked, with the line in the file") {
        const std::string unknown = dir.write("u.txt", "{{code}}\n\nDear {{name}},\n");
        CHECK(errorOf(t + "text_file = " + q(unknown) + "\n") ==
              kFile + ":3:13: apps.shop.templates.en.text_file: " + unknown +
                  ":3: unknown placeholder \"{{name}}\" (allowed: {{code}}, {{app}}, {{minutes}}, "
                  "{{minutes|ONE|OTHER}}, {{context.KEY}})");
        const std::string open = dir.write("o.txt", "{{code}} {{app");
        CHECK(errorOf(t + "text_file = " + q(open) + "\n") ==
              kFile + ":3:13: apps.shop.templates.en.text_file: " + open + ":1: unterminated placeholder \"{{\"");
        const std::string noCode = dir.write("n.html", "<p>{{app}}</p>");
        CHECK(errorOf(t + "text = \"{{code}}\"\nhtml_file = " + q(noCode) + "\n") ==
              kFile + ":4:13: apps.shop.templates.en.html_file: " + noCode + ": must contain {{code}}");
        const std::string empty = dir.write("e.txt", "");
        CHECK(errorOf(t + "text_file = " + q(empty) + "\n") ==
              kFile + ":3:13: apps.shop.templates.en.text_file: " + empty + ": must contain {{code}}");
    }
}

TEST_CASE("[whatsapp] is read and checked", "[config][whatsapp]") {
    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        CHECK(c.whatsapp.graphUrl == "https://graph.facebook.com");
        CHECK(c.whatsapp.apiVersion == "v21.0");
        CHECK(c.whatsapp.phoneNumberId.empty());
        CHECK(c.whatsapp.tokenFile.empty());
        CHECK(c.whatsapp.timeout == std::chrono::seconds(10));
        CHECK(c.whatsapp.pairBackoff == std::chrono::seconds(6));
    }
    SECTION("values and inclusive bounds") {
        Config c = parse(R"([whatsapp]
graph_url = "https://graph.example.com/proxy/"
api_version = "v22.0"
phone_number_id = "106540352242922"
token_file = "/etc/twofactor/whatsapp-token"
timeout = 120
pair_backoff = 600
)" + kApp,
                         kFile);
        // Trailing slashes go, as for [ses] endpoint.
        CHECK(c.whatsapp.graphUrl == "https://graph.example.com/proxy");
        CHECK(c.whatsapp.apiVersion == "v22.0");
        CHECK(c.whatsapp.phoneNumberId == "106540352242922");
        CHECK(c.whatsapp.tokenFile == "/etc/twofactor/whatsapp-token");
        CHECK(c.whatsapp.timeout == std::chrono::seconds(120));
        CHECK(c.whatsapp.pairBackoff == std::chrono::seconds(600));
        Config d = parse("[whatsapp]\ntimeout = 1\npair_backoff = 1\n" + kApp, kFile);
        CHECK(d.whatsapp.timeout == std::chrono::seconds(1));
        CHECK(d.whatsapp.pairBackoff == std::chrono::seconds(1));
    }
    SECTION("graph_url: https anywhere, http only on loopback") {
        for (const char* ok : {"https://graph.facebook.com", "http://127.0.0.1:8081", "http://localhost:9000",
                               "http://[::1]:8081", "https://[2001:db8::1]:8443"}) {
            INFO(ok);
            CHECK(parse(std::string("[whatsapp]\ngraph_url = \"") + ok + "\"\n" + kApp, kFile).whatsapp.graphUrl == ok);
        }
        auto err = [](const std::string& url) { return errorOf("[whatsapp]\ngraph_url = " + q(url) + "\n" + kApp); };
        const std::string at = kFile + ":2:13: whatsapp.graph_url: ";
        CHECK(err("http://graph.facebook.com") ==
              at + "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
        CHECK(err("http://10.0.0.1:8081") == at + "http:// is only allowed for 127.0.0.1, localhost and [::1]; use https://");
        CHECK(err("ftp://graph.facebook.com") == at + "must be an https:// URL");
        CHECK(err("graph.facebook.com") == at + "must be a URL such as \"https://host\"");
        CHECK(err("https://graph.facebook.com/?access_token=x") == at + "must not have a query or fragment");
        CHECK(err("https://token@graph.facebook.com") == at + "must not contain credentials");
        CHECK(err("https://graph.facebook.com:99999") == at + "has an invalid port \"99999\"");
        CHECK(errorOf("[whatsapp]\ngraph_url = 1\n" + kApp) == at + "must be a string");
    }
    SECTION("api_version") {
        for (const char* ok : {"v21.0", "v3.2", "v100.10"}) {
            INFO(ok);
            CHECK(parse(std::string("[whatsapp]\napi_version = \"") + ok + "\"\n" + kApp, kFile).whatsapp.apiVersion == ok);
        }
        for (const char* bad : {"21.0", "v21", "v21.0.1", "V21.0", "v.0", "v21.", "v21.0 ", ""}) {
            INFO(bad);
            CHECK(errorOf(std::string("[whatsapp]\napi_version = \"") + bad + "\"\n" + kApp) ==
                  kFile + ":2:15: whatsapp.api_version: must be a Graph API version such as \"v21.0\", not \"" + bad +
                      "\"");
        }
    }
    SECTION("phone_number_id") {
        CHECK(parse("[whatsapp]\nphone_number_id = \"" + std::string(32, '9') + "\"\n" + kApp, kFile)
                  .whatsapp.phoneNumberId.size() == 32);
        CHECK(parse("[whatsapp]\nphone_number_id = \"0\"\n" + kApp, kFile).whatsapp.phoneNumberId == "0");
        const std::string msg =
            "must be 1 to 32 digits (the phone number ID from WhatsApp Manager, not the phone number)";
        for (const std::string& bad : {std::string(""), std::string("+4915112345678"), std::string("12 34"),
                                       std::string("12a"), std::string(33, '1')}) {
            INFO(bad);
            CHECK(errorOf("[whatsapp]\nphone_number_id = " + q(bad) + "\n" + kApp) ==
                  kFile + ":2:19: whatsapp.phone_number_id: " + msg);
        }
        CHECK(errorOf("[whatsapp]\nphone_number_id = 106540352242922\n" + kApp) ==
              kFile + ":2:19: whatsapp.phone_number_id: must be a string");
    }
    SECTION("token_file, timeout, pair_backoff") {
        CHECK(errorOf("[whatsapp]\ntoken_file = \"token\"\n" + kApp) ==
              kFile + ":2:14: whatsapp.token_file: must be an absolute path");
        CHECK(errorOf("[whatsapp]\ntimeout = 0\n" + kApp) ==
              kFile + ":2:11: whatsapp.timeout: must be between 1 and 120 seconds");
        CHECK(errorOf("[whatsapp]\ntimeout = 121\n" + kApp) ==
              kFile + ":2:11: whatsapp.timeout: must be between 1 and 120 seconds");
        CHECK(errorOf("[whatsapp]\npair_backoff = 0\n" + kApp) ==
              kFile + ":2:16: whatsapp.pair_backoff: must be between 1 and 600 seconds");
        CHECK(errorOf("[whatsapp]\npair_backoff = 601\n" + kApp) ==
              kFile + ":2:16: whatsapp.pair_backoff: must be between 1 and 600 seconds");
        CHECK(errorOf("[whatsapp]\npair_backoff = \"6\"\n" + kApp) ==
              kFile + ":2:16: whatsapp.pair_backoff: must be an integer");
    }
    SECTION("unknown keys and wrong types") {
        CHECK(errorOf("[whatsapp]\ntoken = \"x\"\n" + kApp) ==
              kFile + ":2:1: whatsapp.token: unknown key (expected one of: graph_url, api_version, phone_number_id, "
                      "token_file, timeout, pair_backoff)");
        CHECK(errorOf("whatsapp = 1\n" + kApp) == kFile + ":1:12: whatsapp: must be a table");
    }
}

TEST_CASE("[webhook] is read and checked", "[config][webhook]") {
    EnvGuard credentials("CREDENTIALS_DIRECTORY", nullptr);
    const std::string files =
        "verify_token_file = \"/etc/twofactor/wa-verify\"\napp_secret_file = \"/etc/twofactor/wa-secret\"\n";

    SECTION("defaults: off, on loopback") {
        Config c = parse(kApp, kFile);
        CHECK_FALSE(c.webhook.enabled);
        CHECK(c.webhook.listen == "127.0.0.1");
        CHECK(c.webhook.port == 8443);
        CHECK(c.webhook.path == "/whatsapp");
        CHECK(c.webhook.verifyTokenFile.empty());
        CHECK(c.webhook.appSecretFile.empty());
        CHECK(c.webhook.maxBodyBytes == 256 * 1024);
        // Present but not enabled: nothing is required.
        CHECK_FALSE(parse("[webhook]\nport = 9000\n" + kApp, kFile).webhook.enabled);
    }
    SECTION("values and inclusive bounds") {
        Config c = parse("[webhook]\nenabled = true\nlisten = \"::\"\nport = 0\npath = \"/hooks/wa-1\"\n" + files +
                             "max_body_bytes = 1024\n" + kApp,
                         kFile);
        CHECK(c.webhook.enabled);
        CHECK(c.webhook.listen == "::");
        CHECK(c.webhook.port == 0);
        CHECK(c.webhook.path == "/hooks/wa-1");
        CHECK(c.webhook.verifyTokenFile == "/etc/twofactor/wa-verify");
        CHECK(c.webhook.appSecretFile == "/etc/twofactor/wa-secret");
        CHECK(c.webhook.maxBodyBytes == 1024);
        Config d = parse("[webhook]\nport = 65535\npath = \"/\"\nmax_body_bytes = 16777216\n" + kApp, kFile);
        CHECK(d.webhook.port == 65535);
        CHECK(d.webhook.path == "/");
        CHECK(d.webhook.maxBodyBytes == 16777216);
    }
    SECTION("listen: an address literal, loopback or not") {
        for (const char* ok : {"127.0.0.1", "0.0.0.0", "192.0.2.10", "::1", "::", "2001:db8::1", "fe80::1"}) {
            INFO(ok);
            CHECK(parse(std::string("[webhook]\nlisten = \"") + ok + "\"\n" + kApp, kFile).webhook.listen == ok);
        }
        for (const char* bad : {"localhost", "[::1]", "127.0.0.1:8443", "", "256.1.1.1", "1.2.3", "example.com",
                                " 127.0.0.1"}) {
            INFO(bad);
            CHECK(errorOf(std::string("[webhook]\nlisten = \"") + bad + "\"\n" + kApp) ==
                  kFile + ":2:10: webhook.listen: must be an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\" (no "
                          "host name, brackets or port)");
        }
    }
    SECTION("port") {
        CHECK(errorOf("[webhook]\nport = -1\n" + kApp) == kFile + ":2:8: webhook.port: must be between 0 and 65535");
        CHECK(errorOf("[webhook]\nport = 65536\n" + kApp) == kFile + ":2:8: webhook.port: must be between 0 and 65535");
        CHECK(errorOf("[webhook]\nport = \"8443\"\n" + kApp) == kFile + ":2:8: webhook.port: must be an integer");
    }
    SECTION("path") {
        for (const char* bad : {"whatsapp", "", "hooks/wa"}) {
            INFO(bad);
            CHECK(errorOf(std::string("[webhook]\npath = \"") + bad + "\"\n" + kApp) ==
                  kFile + ":2:8: webhook.path: must start with '/'");
        }
        for (const char* bad : {"/what sapp", "/whatsapp?x=1", "/whatsapp#top", "/whats\\tapp"}) {
            INFO(bad);
            CHECK(errorOf(std::string("[webhook]\npath = \"") + bad + "\"\n" + kApp) ==
                  kFile + ":2:8: webhook.path: must not contain spaces, control characters, '?' or '#'");
        }
    }
    SECTION("files and max_body_bytes") {
        CHECK(errorOf("[webhook]\nverify_token_file = \"verify\"\n" + kApp) ==
              kFile + ":2:21: webhook.verify_token_file: must be an absolute path");
        CHECK(errorOf("[webhook]\napp_secret_file = \"\"\n" + kApp) ==
              kFile + ":2:19: webhook.app_secret_file: must be an absolute path");
        CHECK(errorOf("[webhook]\nmax_body_bytes = 1023\n" + kApp) ==
              kFile + ":2:18: webhook.max_body_bytes: must be between 1024 and 16777216 bytes");
        CHECK(errorOf("[webhook]\nmax_body_bytes = 16777217\n" + kApp) ==
              kFile + ":2:18: webhook.max_body_bytes: must be between 1024 and 16777216 bytes");
    }
    SECTION("enabled needs the verify token and the app secret") {
        CHECK(errorOf("[webhook]\nenabled = true\n" + kApp) ==
              kFile + ":2:11: webhook.verify_token_file: is required by webhook.enabled = true (or pass the systemd "
                      "credential \"whatsapp-verify-token\")");
        CHECK(errorOf("[webhook]\nenabled = true\nverify_token_file = \"/v\"\n" + kApp) ==
              kFile + ":2:11: webhook.app_secret_file: is required by webhook.enabled = true (or pass the systemd "
                      "credential \"whatsapp-app-secret\")");
        CHECK(errorOf("[webhook]\nenabled = true\napp_secret_file = \"/s\"\n" + kApp) ==
              kFile + ":2:11: webhook.verify_token_file: is required by webhook.enabled = true (or pass the systemd "
                      "credential \"whatsapp-verify-token\")");
        CHECK(errorOf("[webhook]\nenabled = \"yes\"\n" + kApp) == kFile + ":2:11: webhook.enabled: must be true or false");
        CHECK_FALSE(parse("[webhook]\nenabled = false\n" + kApp, kFile).webhook.enabled);
    }
    SECTION("systemd credentials present at load replace the files") {
        TempDir dir;
        EnvGuard withCredentials("CREDENTIALS_DIRECTORY", dir.path.c_str());
        dir.write("whatsapp-verify-token", "verify\n");
        CHECK(errorOf("[webhook]\nenabled = true\n" + kApp) ==
              kFile + ":2:11: webhook.app_secret_file: is required by webhook.enabled = true (or pass the systemd "
                      "credential \"whatsapp-app-secret\")");
        dir.write("whatsapp-app-secret", "secret\n");
        Config c = parse("[webhook]\nenabled = true\n" + kApp, kFile);
        CHECK(c.webhook.enabled);
        CHECK(c.webhook.verifyTokenFile.empty());
        CHECK(c.webhook.appSecretFile.empty());
    }
    SECTION("unknown keys and wrong types") {
        CHECK(errorOf("[webhook]\nhost = \"x\"\n" + kApp) ==
              kFile + ":2:1: webhook.host: unknown key (expected one of: enabled, listen, port, path, verify_token_file, "
                      "app_secret_file, max_body_bytes)");
        CHECK(errorOf("webhook = true\n" + kApp) == kFile + ":1:11: webhook: must be a table");
    }
}

TEST_CASE("per-app WhatsApp settings are read and checked", "[config][whatsapp]") {
    SECTION("defaults") {
        Config c = parse(kApp, kFile);
        const App& a = c.apps.at("shop");
        CHECK(a.whatsappTemplates.empty());
        CHECK(a.allowedCountries.empty());
        CHECK(a.deniedCountries.empty());
        CHECK_FALSE(a.fallbackToEmail);
    }
    SECTION("values") {
        Config c = parse(kApp + R"(allowed_countries = ["DE", "AT", "CH"]
denied_countries = ["RU"]
fallback_to_email = true
whatsapp_templates = { en = { name = "otp_login", language = "en_US" } }
[apps.blog]
denied_countries = []
allowed_countries = []
fallback_to_email = false
[apps.blog.whatsapp_templates]
de = { name = "otp_login_de", language = "de" }
pt-BR = { language = "pt_BR", name = "otp_2" }
[apps.blog.whatsapp_templates.zh-Hant-TW]
name = "otp"
language = "zh_TW"
)",
                         kFile);
        const App& shop = c.apps.at("shop");
        CHECK(shop.allowedCountries == std::vector<std::string>{"DE", "AT", "CH"});
        CHECK(shop.deniedCountries == std::vector<std::string>{"RU"});
        CHECK(shop.fallbackToEmail);
        REQUIRE(shop.whatsappTemplates.size() == 1);
        CHECK(shop.whatsappTemplates.at("en").name == "otp_login");
        CHECK(shop.whatsappTemplates.at("en").language == "en_US");
        const App& blog = c.apps.at("blog");
        CHECK(blog.allowedCountries.empty());
        CHECK(blog.deniedCountries.empty());
        CHECK_FALSE(blog.fallbackToEmail);
        REQUIRE(blog.whatsappTemplates.size() == 3);
        CHECK(blog.whatsappTemplates.at("de").name == "otp_login_de");
        CHECK(blog.whatsappTemplates.at("de").language == "de");
        CHECK(blog.whatsappTemplates.at("pt-BR").name == "otp_2");
        CHECK(blog.whatsappTemplates.at("pt-BR").language == "pt_BR");
        CHECK(blog.whatsappTemplates.at("zh-Hant-TW").language == "zh_TW");
        // WhatsApp templates are separate from the message templates.
        CHECK(blog.templates.size() == builtinTemplates().size());
    }
    SECTION("template names and languages") {
        const std::string t = kApp + "[apps.shop.whatsapp_templates]\n";
        CHECK(parse(t + "en = { name = \"" + std::string(512, 'a') + "\", language = \"fil\" }\n", kFile)
                  .apps.at("shop")
                  .whatsappTemplates.at("en")
                  .name.size() == 512);
        const std::string nameMsg = "must be 1 to 512 characters of a-z, 0-9 and '_' (the approved template's name)";
        for (const std::string& bad : {std::string("OTP"), std::string("otp-login"), std::string(""),
                                       std::string("otp login"), std::string(513, 'a')}) {
            INFO(bad);
            CHECK(errorOf(t + "en = { name = " + q(bad) + ", language = \"en\" }\n") ==
                  kFile + ":3:15: apps.shop.whatsapp_templates.en.name: " + nameMsg);
        }
        for (const char* ok : {"en", "en_US", "pt_BR", "fil", "zh_CN"}) {
            INFO(ok);
            CHECK(parse(t + "en = { name = \"otp\", language = \"" + ok + "\" }\n", kFile)
                      .apps.at("shop")
                      .whatsappTemplates.at("en")
                      .language == ok);
        }
        for (const char* bad : {"en-US", "EN", "en_us", "e", "engl", "en_USA", "", "en_"}) {
            INFO(bad);
            CHECK(errorOf(t + "en = { name = \"otp\", language = \"" + bad + "\" }\n") ==
                  kFile + ":3:33: apps.shop.whatsapp_templates.en.language: must be a template language such as "
                          "\"en_US\", \"de\" or \"pt_BR\", not \"" +
                      bad + "\"");
        }
    }
    SECTION("template tables: locale keys, required and unknown keys, types") {
        const std::string t = kApp + "[apps.shop.whatsapp_templates]\n";
        CHECK(errorOf(t + "en_US = { name = \"otp\", language = \"en_US\" }\n") ==
              kFile + ":3:1: apps.shop.whatsapp_templates.en_US: is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        CHECK(errorOf(t + "EN = { name = \"otp\", language = \"en\" }\n") ==
              kFile + ":3:1: apps.shop.whatsapp_templates.EN: is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        CHECK(errorOf(t + "en = { language = \"en\" }\n") ==
              kFile + ":3:6: apps.shop.whatsapp_templates.en.name: is required");
        CHECK(errorOf(t + "en = { name = \"otp\" }\n") ==
              kFile + ":3:6: apps.shop.whatsapp_templates.en.language: is required");
        CHECK(errorOf(t + "en = { name = \"a\", lang = \"en\" }\n") ==
              kFile + ":3:20: apps.shop.whatsapp_templates.en.lang: unknown key (expected one of: name, language)");
        CHECK(errorOf(t + "en = \"otp_login\"\n") == kFile + ":3:6: apps.shop.whatsapp_templates.en: must be a table");
        CHECK(errorOf(t + "en = { name = 1, language = \"en\" }\n") ==
              kFile + ":3:15: apps.shop.whatsapp_templates.en.name: must be a string");
        CHECK(errorOf(kApp + "whatsapp_templates = [\"otp\"]\n") ==
              kFile + ":2:22: apps.shop.whatsapp_templates: must be a table");
        CHECK_NOTHROW(parse(t, kFile));
    }
    SECTION("countries") {
        const std::string msg = "must be an ISO 3166 alpha-2 code in upper case, such as \"DE\"";
        CHECK(errorOf(kApp + "allowed_countries = [\"DE\", \"de\"]\n") ==
              kFile + ":2:28: apps.shop.allowed_countries[1]: " + msg);
        for (const char* bad : {"DEU", "D", "", "D1", " DE"}) {
            INFO(bad);
            CHECK(errorOf(kApp + "denied_countries = [\"" + bad + "\"]\n") ==
                  kFile + ":2:21: apps.shop.denied_countries[0]: " + msg);
        }
        CHECK(errorOf(kApp + "denied_countries = [\"RU\", \"RU\"]\n") ==
              kFile + ":2:27: apps.shop.denied_countries[1]: \"RU\" is listed twice");
        CHECK(errorOf(kApp + "allowed_countries = [\"AT\", \"DE\", \"AT\"]\n") ==
              kFile + ":2:34: apps.shop.allowed_countries[2]: \"AT\" is listed twice");
        CHECK(errorOf(kApp + "allowed_countries = \"DE\"\n") ==
              kFile + ":2:21: apps.shop.allowed_countries: must be an array of strings");
        CHECK(errorOf(kApp + "denied_countries = [49]\n") == kFile + ":2:21: apps.shop.denied_countries[0]: must be a string");
    }
    SECTION("a code in both lists: the later list is wrong") {
        CHECK(errorOf(kApp + "allowed_countries = [\"DE\", \"AT\"]\ndenied_countries = [\"FR\", \"AT\"]\n") ==
              kFile + ":3:27: apps.shop.denied_countries[1]: \"AT\" is also in apps.shop.allowed_countries");
        CHECK(errorOf(kApp + "denied_countries = [\"AT\"]\nallowed_countries = [\"DE\", \"AT\"]\n") ==
              kFile + ":3:28: apps.shop.allowed_countries[1]: \"AT\" is also in apps.shop.denied_countries");
    }
    SECTION("fallback_to_email needs the email channel") {
        CHECK(parse(kApp + "channels = [\"whatsapp\", \"email\"]\nfallback_to_email = true\n", kFile)
                  .apps.at("shop")
                  .fallbackToEmail);
        CHECK(errorOf(kApp + "channels = [\"whatsapp\"]\nfallback_to_email = true\n") ==
              kFile + ":3:21: apps.shop.fallback_to_email: needs \"email\" in apps.shop.channels");
        // Default channels follow [delivery]: without an email driver there is no email.
        CHECK(errorOf("[delivery]\nwhatsapp = \"outbox\"\n" + kApp + "fallback_to_email = true\n") ==
              kFile + ":4:21: apps.shop.fallback_to_email: needs \"email\" in apps.shop.channels");
        CHECK_FALSE(parse(kApp + "channels = [\"whatsapp\"]\nfallback_to_email = false\n", kFile)
                        .apps.at("shop")
                        .fallbackToEmail);
        CHECK(errorOf(kApp + "fallback_to_email = 1\n") == kFile + ":2:21: apps.shop.fallback_to_email: must be true or false");
    }
    SECTION("unknown per-app keys still fail") {
        CHECK_THAT(errorOf(kApp + "whatsapp_template = {}\n"),
                   Catch::StartsWith(kFile + ":2:1: apps.shop.whatsapp_template: unknown table"));
        CHECK_THAT(errorOf(kApp + "allowed_regions = [\"DE\"]\n"),
                   Catch::StartsWith(kFile + ":2:1: apps.shop.allowed_regions: unknown key"));
    }
}

TEST_CASE("the WhatsApp driver needs its settings and a template per app", "[config][whatsapp]") {
    EnvGuard credentials("CREDENTIALS_DIRECTORY", nullptr);
    const std::string wa = "[delivery]\nemail = \"outbox\"\nwhatsapp = \"whatsapp\"\n";
    const std::string settings =
        "[whatsapp]\nphone_number_id = \"106540352242922\"\ntoken_file = \"/etc/twofactor/whatsapp-token\"\n";
    const std::string en = "[apps.shop.whatsapp_templates]\nen = { name = \"otp_login\", language = \"en_US\" }\n";
    const std::string at = kFile + ":3:12: ";

    SECTION("all there") {
        Config c = parse(wa + settings + kApp + en, kFile);
        CHECK(c.drivers == std::map<std::string, std::string>{{"email", "outbox"}, {"whatsapp", "whatsapp"}});
        CHECK(c.apps.at("shop").whatsappTemplates.at("en").name == "otp_login");
    }
    SECTION("phone_number_id and token_file") {
        CHECK(errorOf(wa + kApp + en) == at + "whatsapp.phone_number_id: is required by delivery.whatsapp = \"whatsapp\"");
        CHECK(errorOf(wa + "[whatsapp]\ntoken_file = \"/t\"\n" + kApp + en) ==
              at + "whatsapp.phone_number_id: is required by delivery.whatsapp = \"whatsapp\"");
        CHECK(errorOf(wa + "[whatsapp]\nphone_number_id = \"1\"\n" + kApp + en) ==
              at + "whatsapp.token_file: is required by delivery.whatsapp = \"whatsapp\" (or pass the systemd "
                   "credential \"whatsapp-token\")");
        // Required even when no app uses WhatsApp, like smtp.url.
        CHECK(errorOf(wa + "[apps.mail]\nchannels = [\"email\"]\n") ==
              at + "whatsapp.phone_number_id: is required by delivery.whatsapp = \"whatsapp\"");
    }
    SECTION("the systemd credential whatsapp-token replaces token_file") {
        TempDir dir;
        EnvGuard withCredentials("CREDENTIALS_DIRECTORY", dir.path.c_str());
        const std::string noToken = wa + "[whatsapp]\nphone_number_id = \"1\"\n" + kApp + en;
        CHECK_THAT(errorOf(noToken), Catch::StartsWith(at + "whatsapp.token_file: is required"));
        dir.write("whatsapp-token", "EAAG...\n");
        CHECK(parse(noToken, kFile).whatsapp.tokenFile.empty());
    }
    SECTION("an app using WhatsApp needs a template for its default_locale, its language or en") {
        CHECK(errorOf(wa + settings + kApp) ==
              at + "apps.shop.whatsapp_templates: is required by delivery.whatsapp = \"whatsapp\" (apps.shop has no "
                   "template for \"en\")");
        const std::string de = wa + settings + kApp + "default_locale = \"de\"\n[apps.shop.whatsapp_templates]\n";
        CHECK_NOTHROW(parse(de + "de = { name = \"otp\", language = \"de\" }\n", kFile));
        CHECK_NOTHROW(parse(de + "en = { name = \"otp\", language = \"en\" }\n", kFile));
        CHECK(errorOf(de + "fr = { name = \"otp\", language = \"fr\" }\n") ==
              at + "apps.shop.whatsapp_templates: is required by delivery.whatsapp = \"whatsapp\" (apps.shop has no "
                   "template for \"de\" or \"en\")");
        // A regional default locale: the locale itself, then its language.
        const std::string pt = wa + settings + kApp + "default_locale = \"pt-BR\"\n"
                               "[apps.shop.templates.pt-BR]\nsubject = \"Código\"\ntext = \"{{code}}\"\n"
                               "[apps.shop.whatsapp_templates]\n";
        CHECK_NOTHROW(parse(pt + "pt-BR = { name = \"otp\", language = \"pt_BR\" }\n", kFile));
        CHECK_NOTHROW(parse(pt + "pt = { name = \"otp\", language = \"pt_PT\" }\n", kFile));
        CHECK(errorOf(pt + "pt-PT = { name = \"otp\", language = \"pt_PT\" }\n") ==
              at + "apps.shop.whatsapp_templates: is required by delivery.whatsapp = \"whatsapp\" (apps.shop has no "
                   "template for \"pt-BR\", \"pt\" or \"en\")");
    }
    SECTION("the error names the app that lacks one; apps without WhatsApp need none") {
        CHECK(errorOf(wa + settings + "[apps.a]\nwhatsapp_templates = { en = { name = \"otp\", language = \"en\" } }\n"
                                      "[apps.b]\n") ==
              at + "apps.b.whatsapp_templates: is required by delivery.whatsapp = \"whatsapp\" (apps.b has no template "
                   "for \"en\")");
        CHECK_NOTHROW(parse(wa + settings + "[apps.mail]\nchannels = [\"email\"]\n", kFile));
    }
    SECTION("the outbox needs none of it") {
        Config c = parse("[delivery]\nwhatsapp = \"outbox\"\n[whatsapp]\ntimeout = 5\n" + kApp, kFile);
        CHECK(c.drivers.at("whatsapp") == "outbox");
        CHECK(c.apps.at("shop").whatsappTemplates.empty());
    }
    SECTION("[whatsapp] values are checked, and the cross-check still reports what else is missing") {
        const CheckResult r = check(wa + "[whatsapp]\nphone_number_id = \"+49\"\n" + kApp + en, kFile);
        REQUIRE(r.errors.size() == 2);
        CHECK(std::string(r.errors[0].what()) ==
              kFile + ":3:12: whatsapp.token_file: is required by delivery.whatsapp = \"whatsapp\" (or pass the systemd "
                      "credential \"whatsapp-token\")");
        // Not also "phone_number_id is required": it was given, wrongly.
        CHECK(std::string(r.errors[1].what()) ==
              kFile + ":5:19: whatsapp.phone_number_id: must be 1 to 32 digits (the phone number ID from WhatsApp "
                      "Manager, not the phone number)");
    }
}

TEST_CASE("embeddedDefault leaves WhatsApp on the outbox and the webhook off", "[config][whatsapp]") {
    Config c = embeddedDefault();
    CHECK(c.drivers.at("whatsapp") == "outbox");
    CHECK_FALSE(c.webhook.enabled);
    CHECK(c.whatsapp.phoneNumberId.empty());
    const App& app = c.apps.at("default");
    CHECK(app.whatsappTemplates.empty());
    CHECK(app.allowedCountries.empty());
    CHECK(app.deniedCountries.empty());
    CHECK_FALSE(app.fallbackToEmail);
}

TEST_CASE("[retention]: defaults, values and an invalid cron schedule", "[config][retention]") {
    const Config d = parse(kApp, kFile);
    CHECK(d.retention.schedule == "17 3 * * *");
    CHECK(d.retention.codeHashes == 86400);
    CHECK(d.retention.deliveryLogs == 90 * 86400);
    CHECK(d.retention.batchSize == 1000);

    const Config c = parse("[retention]\nschedule = \"*/15 1-5 * * mon-fri\"\ncode_hashes = 3600\n"
                           "delivery_logs = 604800\nbatch_size = 50\n" + kApp,
                           kFile);
    CHECK(c.retention.schedule == "*/15 1-5 * * mon-fri");
    CHECK(c.retention.codeHashes == 3600);
    CHECK(c.retention.deliveryLogs == 604800);
    CHECK(c.retention.batchSize == 50);

    CHECK(errorOf("[retention]\nschedule = \"0 24 * * *\"\n" + kApp) ==
          kFile + ":2:12: retention.schedule: invalid cron expression \"0 24 * * *\" (column 3: hour: 24 is out of range 0-23)");
    CHECK(errorOf("[retention]\nschedule = \"0 0 30 2 *\"\n" + kApp).find("never matches") != std::string::npos);
    CHECK(errorOf("[retention]\nbatch_size = 0\n" + kApp).find(":2:") != std::string::npos);
    CHECK(errorOf("[retention]\nkeep = 1\n" + kApp).find("retention.keep") != std::string::npos);
}

TEST_CASE("check reports every error in the file, sorted by line", "[config][check]") {
    const std::string text = R"([daemon]
socket = "relative.sock"
log_level = "loud"
bogus = 1

[apps.shop]
ttl = 5
channels = ["email", "pigeon"]
default_locale = "EN"

[retry]
max_attempts = 0

[apps.Bad]
)";
    const CheckResult r = check(text, kFile);
    CHECK_FALSE(r.config.has_value());
    std::vector<std::pair<int, std::string>> got;
    for (const auto& e : r.errors) {
        got.emplace_back(e.line(), e.key());
        CHECK(e.file() == kFile);
    }
    const std::vector<std::pair<int, std::string>> want = {
        {2, "daemon.socket"},      {3, "daemon.log_level"},          {4, "daemon.bogus"},
        {7, "apps.shop.ttl"},      {8, "apps.shop.channels[1]"},     {9, "apps.shop.default_locale"},
        {12, "retry.max_attempts"}, {14, "apps.Bad"},
    };
    CHECK(got == want);
    // parse() and loadFile() still stop the daemon with one error: the first by line.
    CHECK(errorOf(text) == kFile + ":2:10: daemon.socket: must be an absolute path");
}

TEST_CASE("check leaves out what only taking a wrong value out caused", "[config][check]") {
    // Without the bad region, ses.region would be "required by delivery.email".
    CheckResult r = check("[delivery]\nemail = \"ses\"\n[ses]\nregion = \"mars\"\nfrom = \"a@example.org\"\n" + kApp,
                          kFile);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].key() == "ses.region");
    CHECK(r.errors[0].line() == 4);

    // Without the unreadable text_file, "text is required" would follow.
    r = check(kApp + "[apps.shop.templates.en]\ntext_file = \"/nonexistent/en.txt\"\n", kFile);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].key() == "apps.shop.templates.en.text_file");

    // Every app a driver check finds wanting is named, not only the first.
    r = check("[delivery]\nemail = \"ses\"\n[ses]\nregion = \"eu-west-1\"\n[apps.a]\n[apps.b]\n", kFile);
    REQUIRE(r.errors.size() == 2);
    CHECK(std::string(r.errors[0].what()).find("apps.a has no ses_from") != std::string::npos);
    CHECK(std::string(r.errors[1].what()).find("apps.b has no ses_from") != std::string::npos);
}

TEST_CASE("check: a TOML syntax error is the only one; a valid file has none", "[config][check]") {
    CheckResult r = check("[daemon]\nsocket = \"/a\"\nlog_level = \n[apps.shop]\nttl = 5\n", kFile);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line() == 3);
    CHECK(r.errors[0].key().empty());

    r = check(kApp + "ttl = 300\n", kFile);
    CHECK(r.errors.empty());
    REQUIRE(r.config.has_value());
    CHECK(r.config->apps.at("shop").ttl.count() == 300);

    r = check("[daemon]\nlog_level = \"loud\"\n", kFile);
    REQUIRE(r.errors.size() == 2);
    CHECK(r.errors[0].key() == "daemon.log_level");
    CHECK(r.errors[1].key() == "apps");  // no place in the file: last
    CHECK(r.errors[1].line() == 0);

    const auto missing = checkFile("/nonexistent/twofactord.toml");
    REQUIRE(missing.errors.size() == 1);
    CHECK(std::string(missing.errors[0].what()) == "/nonexistent/twofactord.toml: No such file or directory");
}

TEST_CASE("plural placeholders need as many forms as the locale's rule has", "[config][templates]") {
    CHECK(errorOf(kApp + "[apps.shop.templates.de]\ntext = \"{{code}}: {{minutes}} {{minutes|Minute|Minuten}}\"\n")
              .empty());
    CHECK(errorOf(kApp + "[apps.shop.templates.pt-BR]\nsubject = \"S\"\n"
                         "text = \"{{code}} {{minutes}} {{minutes|minuto|minutos}}\"\n")
              .empty());
    CHECK(errorOf(kApp + "[apps.shop.templates.en]\ntext = \"{{code}} {{minutes}} {{minutes|minutes}}\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: {{minutes|minutes}}: locale \"en\" needs 2 forms "
                  "(one|other, such as {{minutes|minute|minutes}}), not 1");
    CHECK(errorOf(kApp + "[apps.shop.templates.pl]\nsubject = \"S\"\n"
                         "text = \"{{code}} {{minutes|minuta|minuty|minut}}\"\n")
              .find("there are no plural rules for locale \"pl\"") != std::string::npos);
    // Built-in templates pass their own checks: every locale's forms are complete.
    for (const auto& [key, t] : builtinTemplates()) {
        const std::string locale = key.substr(0, key.find('.'));
        const std::string purpose = key.find('.') == std::string::npos ? "" : "." + key.substr(key.find('.') + 1);
        INFO(key);
        CHECK(errorOf(kApp + "[apps.shop.templates." + locale + purpose + "]\ntext = \"\"\"" + t.text +
                      "\"\"\"\nhtml = \"\"\"" + t.html + "\"\"\"\n")
                  .empty());
    }
}

TEST_CASE("[privacy] names the controller; bad values are refused with the key", "[config][privacy]") {
    const Config c = parse("[privacy]\ncontroller = \"Example GmbH, Hauptstr. 1, 10115 Berlin\"\n"
                           "contact = \"privacy@example.org\"\ndpo = \"https://example.org/dpo\"\n" + kApp,
                           kFile);
    CHECK(c.privacy.controller == "Example GmbH, Hauptstr. 1, 10115 Berlin");
    CHECK(c.privacy.contact == "privacy@example.org");
    CHECK(c.privacy.dpo == "https://example.org/dpo");
    CHECK(parse(kApp, kFile).privacy.controller.empty());
    CHECK(errorOf("[privacy]\ndpo = \"dpo@localhost\"\n" + kApp).find("privacy.dpo: is not a valid email address") !=
          std::string::npos);
    CHECK(errorOf("[privacy]\ncontact = \"\"\n" + kApp).find("privacy.contact: must not be empty") != std::string::npos);
    CHECK(errorOf("[privacy]\ncontroller = \"A\\nB\"\n" + kApp).find("privacy.controller: must be one line") !=
          std::string::npos);
    CHECK(errorOf("[privacy]\ncontroller = \"" + std::string(301, 'x') + "\"\n" + kApp).find("at most 300") !=
          std::string::npos);
    CHECK(errorOf("[privacy]\nowner = \"x\"\n" + kApp).find("privacy.owner") != std::string::npos);
}

TEST_CASE("[store]: SQLCipher by default; PostgreSQL when built with libpq", "[config][store]") {
    Config plain = parse(kApp, kFile);
    CHECK(plain.store.backend == "sqlcipher");
    CHECK(plain.store.connections == 4);
    Config c = parse("[store]\nbackend = \"sqlcipher\"\ndsn_file = \"/etc/twofactor/store-dsn\"\nconnections = 8\n" + kApp,
                     kFile);
    CHECK(c.store.backend == "sqlcipher");
    CHECK(c.store.dsnFile == "/etc/twofactor/store-dsn");
    CHECK(c.store.connections == 8);
    CHECK(plain.store.preparedStatements);
    CHECK_FALSE(parse("[store]\nprepared_statements = false\n" + kApp, kFile).store.preparedStatements);
    CHECK(errorOf("[store]\nprepared_statements = \"no\"\n" + kApp).find("store.prepared_statements") !=
          std::string::npos);
#ifdef HAVE_POSTGRESQL
    CHECK(parse("[store]\nbackend = \"postgresql\"\n" + kApp, kFile).store.backend == "postgresql");
#else
    CHECK_THAT(errorOf("[store]\nbackend = \"postgresql\"\n" + kApp),
               Catch::StartsWith(kFile + ":2:11: store.backend: \"postgresql\" is not available"));
#endif
    CHECK(errorOf("[store]\nbackend = \"mysql\"\n" + kApp) ==
          kFile + ":2:11: store.backend: must be one of sqlcipher, postgresql, not \"mysql\"");
    CHECK(errorOf("[store]\nconnections = 0\n" + kApp) == kFile + ":2:15: store.connections: must be between 1 and 64");
    CHECK(plain.store.cacheMiB == 16);
    CHECK(parse("[store]\ncache_size = 64\n" + kApp, kFile).store.cacheMiB == 64);
    CHECK(errorOf("[store]\ncache_size = 1\n" + kApp) == kFile + ":2:14: store.cache_size: must be between 2 and 4096");
    CHECK(errorOf("[store]\ndsn = \"host=db\"\n" + kApp).find("store.dsn") != std::string::npos);
}
