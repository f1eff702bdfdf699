#include "build_config.h"
#include "config/config.hpp"
#include "ipc/paths.hpp"

#include <catch2/catch.hpp>

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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
    CHECK(shop.templates.size() == 5);

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
        CHECK(errorOf("[delivery]\nemail = \"smtp\"\n" + kApp) ==
              kFile + ":2:9: delivery.email: must be one of outbox, not \"smtp\"");
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
                                          "text, html)"));
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
    CHECK(errorOf(t + "text = \"{{code}} for {{name}}\"\n") ==
          kFile + ":3:8: apps.shop.templates.en.text: unknown placeholder \"{{name}}\" (allowed: {{code}}, {{app}}, "
                  "{{minutes}})");
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
    CHECK(builtins.size() == 4);
    for (const char* locale : {"en", "de", "fr", "es"}) {
        INFO(locale);
        REQUIRE(builtins.count(locale) == 1);
        const Template& t = builtins.at(locale);
        CHECK_FALSE(t.subject.empty());
        CHECK_FALSE(t.text.empty());
        CHECK_FALSE(t.html.empty());
        // Lock screens and mail logs show subjects: never the code there.
        CHECK(placeholders(t.subject) == std::set<std::string>{"app"});
        CHECK(placeholders(t.text) == std::set<std::string>{"code", "app", "minutes"});
        CHECK(placeholders(t.html) == std::set<std::string>{"code", "app", "minutes"});
        CHECK(t.subject.find('\n') == std::string::npos);
        CHECK_THAT(t.html, Catch::StartsWith("<p>") && Catch::EndsWith("</p>"));
    }
    // Each built-in survives the same validation as a user's template.
    std::string file = kApp;
    for (const auto& [locale, t] : builtins) {
        file += "[apps.shop.templates." + locale + "]\nsubject = \"" + t.subject + "\"\ntext = \"" + t.text +
                "\"\nhtml = \"" + t.html + "\"\n";
    }
    CHECK_NOTHROW(parse(file, kFile));
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
