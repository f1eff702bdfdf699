// [apps.NAME.templates]: message templates, their placeholders and files, and
// the built-in ones.
#include "config/plural.hpp"
#include "config/sections.hpp"
#include "config/validators.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace twofactor::config::detail {

namespace {

// Purposes a template can be specific to: [apps.NAME.templates.LOCALE.PURPOSE].
const std::vector<std::string> kPurposes = {"login", "verify", "recovery"};
// text_file and html_file: read once, at load, never at send time.
constexpr std::size_t kMaxTemplateFile = 64 * 1024;

// Checks a template string: only {{code}}, {{app}}, {{minutes}},
// {{context.KEY}} and {{minutes|FORM|FORM}} (as many forms as the locale's plural rule has),
// nothing unterminated. Returns an error message ("" when fine) and sets `at`
// to the offending offset and `hasCode` to whether {{code}} occurs.
std::string placeholderError(std::string_view s, std::size_t& at, bool& hasCode, const std::string& locale) {
    hasCode = false;
    std::size_t pos = 0;
    while ((pos = s.find("{{", pos)) != std::string_view::npos) {
        at = pos;
        std::size_t end = s.find("}}", pos + 2);
        if (end == std::string_view::npos) {
            return "unterminated placeholder \"{{\"";
        }
        std::string_view name = s.substr(pos + 2, end - pos - 2);
        if (name == "code") {
            hasCode = true;
        } else if (name.substr(0, 8) == "minutes|") {
            const std::string placeholder = "{{" + std::string(name) + "}}";
            const auto wanted = pluralFormCount(locale);
            if (!wanted) {
                return placeholder + ": there are no plural rules for locale \"" + locale +
                       "\" (known: languages with the forms one and other, such as en, de, fr, es)";
            }
            const auto forms = static_cast<std::size_t>(std::count(name.begin(), name.end(), '|'));
            if (forms != *wanted) {
                return placeholder + ": locale \"" + locale + "\" needs " + std::to_string(*wanted) +
                       " forms (one|other, such as {{minutes|minute|minutes}}), not " + std::to_string(forms);
            }
        } else if (name.substr(0, 8) == "context.") {
            // A bound send's context (otp/binding.hpp): the key's syntax.
            const std::string_view key = name.substr(8);
            bool ok = !key.empty() && key.size() <= 32 && key[0] >= 'a' && key[0] <= 'z';
            for (char c : key) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
            if (!ok)
                return "placeholder \"{{" + std::string(name) +
                       "}}\": a context key is a lower-case letter, then letters, digits or '_', at most 32 bytes";
        } else if (name != "app" && name != "minutes") {
            return "unknown placeholder \"{{" + std::string(name) +
                   "}}\" (allowed: {{code}}, {{app}}, {{minutes}}, {{minutes|ONE|OTHER}}, {{context.KEY}})";
        }
        pos = end + 2;
    }
    return "";
}

// Inline strings: errors point at the TOML value. Returns whether {{code}} occurs.
bool checkPlaceholders(const Reader& reader, const toml::node& node, const std::string& key, std::string_view s,
                       const std::string& locale) {
    std::size_t at = 0;
    bool hasCode = false;
    std::string error = placeholderError(s, at, hasCode, locale);
    if (!error.empty()) {
        reader.fail(node, key, error);
    }
    return hasCode;
}

// Reads a text_file or html_file at load time: a regular file of at most
// 64 KiB of UTF-8 without NUL, whose placeholders are checked like inline
// text (errors name the file and the line in it). Must contain {{code}}.
std::string readTemplateFile(const Reader& reader, const toml::node& node, const std::string& key,
                             const std::string& locale) {
    const std::string path = reader.absolutePath(node, key);
    // O_NONBLOCK: a FIFO named here must not hang the daemon's start.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        reader.fail(node, key, path + ": " + std::strerror(err));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        reader.fail(node, key, path + ": " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        reader.fail(node, key, path + ": not a regular file");
    }
    const std::string tooLarge = path + ": larger than " + std::to_string(kMaxTemplateFile) + " bytes";
    if (static_cast<std::uint64_t>(st.st_size) > kMaxTemplateFile) {
        reader.fail(node, key, tooLarge);
    }
    std::string text;
    char buffer[8192];
    while (true) {
        ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int err = errno;
            reader.fail(node, key, path + ": " + std::strerror(err));
        }
        if (n == 0) {
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > kMaxTemplateFile) {
            reader.fail(node, key, tooLarge);  // it grew while we read it
        }
    }
    if (!validUtf8(text)) {
        reader.fail(node, key, path + ": not valid UTF-8");
    }
    auto lineOf = [&](std::size_t offset) {
        return std::to_string(1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
    };
    if (std::size_t nul = text.find('\0'); nul != std::string::npos) {
        reader.fail(node, key, path + ":" + lineOf(nul) + ": contains a NUL character");
    }
    std::size_t at = 0;
    bool hasCode = false;
    std::string error = placeholderError(text, at, hasCode, locale);
    if (!error.empty()) {
        reader.fail(node, key, path + ":" + lineOf(at) + ": " + error);
    }
    if (!hasCode) {
        reader.fail(node, key, path + ": must contain {{code}}");
    }
    return text;
}

const std::initializer_list<std::string_view> kTemplateKeys = {"subject", "text", "html", "text_file", "html_file"};

bool hasTemplateKeys(const toml::table& t) {
    return std::any_of(kTemplateKeys.begin(), kTemplateKeys.end(),
                       [&](std::string_view k) { return t.get(k) != nullptr; });
}

// The keys of one template table (the caller has checked for unknown keys).
// `subjectFallback` is used when there is no subject; without one, a missing
// subject is an error saying `noSubject`.
Template readTemplate(const Reader& reader, const toml::table& t, const std::string& prefix, const std::string& locale,
                      const Template* subjectFallback, const std::string& noSubject) {
    Template out;

    if (const toml::node* n = t.get("subject")) {
        std::string key = prefix + ".subject";
        out.subject = reader.string(*n, key);
        if (out.subject.empty()) {
            reader.fail(*n, key, "must not be empty");
        }
        // A line break in a subject is a mail header injection.
        if (hasControl(out.subject)) {
            reader.fail(*n, key, "must be one line without control characters");
        }
        checkPlaceholders(reader, *n, key, out.subject, locale);
    } else {
        if (subjectFallback == nullptr) {
            reader.fail(t, prefix + ".subject", "is required: " + noSubject);
        }
        out.subject = subjectFallback->subject;
    }

    const toml::node* text = t.get("text");
    const toml::node* textFile = t.get("text_file");
    if (text != nullptr && textFile != nullptr) {
        reader.fail(*textFile, prefix + ".text_file", "text and text_file are mutually exclusive");
    }
    if (textFile != nullptr) {
        out.text = readTemplateFile(reader, *textFile, prefix + ".text_file", locale);
    } else {
        if (text == nullptr) {
            reader.fail(t, prefix + ".text", "is required");
        }
        out.text = reader.string(*text, prefix + ".text");
        if (!checkPlaceholders(reader, *text, prefix + ".text", out.text, locale)) {
            reader.fail(*text, prefix + ".text", "must contain {{code}}");
        }
    }

    const toml::node* html = t.get("html");
    const toml::node* htmlFile = t.get("html_file");
    if (html != nullptr && htmlFile != nullptr) {
        reader.fail(*htmlFile, prefix + ".html_file", "html and html_file are mutually exclusive");
    }
    if (htmlFile != nullptr) {
        out.html = readTemplateFile(reader, *htmlFile, prefix + ".html_file", locale);
    } else if (html != nullptr) {
        std::string key = prefix + ".html";
        out.html = reader.string(*html, key);
        // Mail clients show the HTML part instead of the text: one without the
        // code would deliver a message the recipient cannot use.
        if (!checkPlaceholders(reader, *html, key, out.html, locale) && !out.html.empty()) {
            reader.fail(*html, key, "must contain {{code}}");
        }
    }
    return out;
}

const Template* findTemplate(const std::map<std::string, Template>& templates, const std::string& key) {
    auto it = templates.find(key);
    return it == templates.end() ? nullptr : &it->second;
}

}  // namespace

// [apps.NAME.templates]: generic LOCALE tables and their PURPOSE sub-tables,
// merged over the built-ins. An app's own generic LOCALE template replaces the
// built-in purpose variants of that locale too, except those it gives itself:
// its wording wins over the built-in purpose wording.
void readTemplates(const Reader& reader, const toml::table& templates, const std::string& key, App& app) {
    const auto& builtins = builtinTemplates();
    std::set<std::string> ownGeneric;
    std::set<std::string> own;
    for (auto&& [k, v] : templates) {
        std::string locale(k.str());
        std::string localeKey = keyJoin(key, locale);
        if (!validLocale(locale)) {
            reader.fail(v, k.source(), localeKey, "is not a locale tag such as \"en\", \"de\" or \"pt-BR\"");
        }
        const toml::table& lt = reader.table(v, localeKey);
        reader.allowOnly(lt, localeKey,
                         {"subject", "text", "html", "text_file", "html_file", "login", "verify", "recovery"});
        bool anyPurpose =
            std::any_of(kPurposes.begin(), kPurposes.end(), [&](const std::string& p) { return lt.get(p) != nullptr; });
        const Template* generic = nullptr;
        if (hasTemplateKeys(lt) || !anyPurpose) {
            app.templates[locale] = readTemplate(reader, lt, localeKey, locale, findTemplate(builtins, locale),
                                                 "there is no built-in template for locale \"" + locale + "\"");
            generic = &app.templates[locale];
            ownGeneric.insert(locale);
        }
        for (const auto& purpose : kPurposes) {
            const toml::node* n = lt.get(purpose);
            if (n == nullptr) {
                continue;
            }
            std::string purposeKey = localeKey + "." + purpose;
            const toml::table& pt = reader.table(*n, purposeKey);
            reader.allowOnly(pt, purposeKey, kTemplateKeys);
            // The subject: the built-in one for this purpose, else this
            // locale's own, else the built-in generic one.
            const Template* fallback = findTemplate(builtins, locale + "." + purpose);
            if (fallback == nullptr) {
                fallback = generic != nullptr ? generic : findTemplate(builtins, locale);
            }
            app.templates[locale + "." + purpose] = readTemplate(
                reader, pt, purposeKey, locale, fallback,
                "there is no built-in template for locale \"" + locale + "\" and " + localeKey + " has no subject");
            own.insert(locale + "." + purpose);
        }
    }
    for (const auto& locale : ownGeneric) {
        for (const auto& purpose : kPurposes) {
            std::string k = locale + "." + purpose;
            if (own.count(k) == 0) {
                app.templates.erase(k);
            }
        }
    }
}

}  // namespace twofactor::config::detail

namespace twofactor::config {

namespace {

// A purpose template from its subject, its first sentence (which starts with
// {{code}}) and the rest; the HTML part has the code in bold.
std::pair<const std::string, Template> purpose(std::string subject, std::string_view lead, std::string_view rest,
                                               std::string key) {
    constexpr std::string_view kCode = "{{code}}";
    std::string text = std::string(lead) + ' ' + std::string(rest);
    std::string html = "<p><strong>{{code}}</strong>" + std::string(lead.substr(kCode.size())) + "</p><p>" +
                       std::string(rest) + "</p>";
    return {std::move(key), Template{std::move(subject), std::move(text), std::move(html)}};
}

}  // namespace

const std::map<std::string, Template>& builtinTemplates() {
    // Never the code in a subject: subjects show on lock screens, in
    // notification previews and in mail logs.
    static const std::map<std::string, Template> templates = {
        {"en",
         {"Your {{app}} verification code",
          "{{code}} is your {{app}} verification code. It expires in {{minutes}} {{minutes|minute|minutes}}. "
          "If you did not request it, you can ignore this message.",
          "<p><strong>{{code}}</strong> is your {{app}} verification code.</p>"
          "<p>It expires in {{minutes}} {{minutes|minute|minutes}}. If you did not request it, you can ignore this "
          "message.</p>"}},
        {"de",
         {"Ihr Bestätigungscode für {{app}}",
          "{{code}} ist Ihr Bestätigungscode für {{app}}. Er ist {{minutes}} {{minutes|Minute|Minuten}} gültig. "
          "Falls Sie ihn nicht angefordert haben, können Sie diese Nachricht ignorieren.",
          "<p><strong>{{code}}</strong> ist Ihr Bestätigungscode für {{app}}.</p>"
          "<p>Er ist {{minutes}} {{minutes|Minute|Minuten}} gültig. Falls Sie ihn nicht angefordert haben, können Sie "
          "diese Nachricht ignorieren.</p>"}},
        {"fr",
         {"Votre code de vérification {{app}}",
          "{{code}} est votre code de vérification {{app}}. Il expire dans {{minutes}} {{minutes|minute|minutes}}. "
          "Si vous ne l'avez pas demandé, vous pouvez ignorer ce message.",
          "<p><strong>{{code}}</strong> est votre code de vérification {{app}}.</p>"
          "<p>Il expire dans {{minutes}} {{minutes|minute|minutes}}. Si vous ne l'avez pas demandé, vous pouvez "
          "ignorer ce message.</p>"}},
        {"es",
         {"Tu código de verificación de {{app}}",
          "{{code}} es tu código de verificación de {{app}}. Caduca en {{minutes}} {{minutes|minuto|minutos}}. "
          "Si no lo has solicitado, puedes ignorar este mensaje.",
          "<p><strong>{{code}}</strong> es tu código de verificación de {{app}}.</p>"
          "<p>Caduca en {{minutes}} {{minutes|minuto|minutos}}. Si no lo has solicitado, puedes ignorar este "
          "mensaje.</p>"}},

        // Purpose variants. `lead` starts with {{code}}; the HTML part puts it in bold.
        purpose("Your {{app}} sign-in code", "{{code}} is your {{app}} sign-in code.",
                "It expires in {{minutes}} {{minutes|minute|minutes}}. If you did not try to sign in, you can ignore "
                "this message. Never share this code with anyone.",
                "en.login"),
        purpose("Confirm your email address for {{app}}", "{{code}} is your {{app}} confirmation code.",
                "Enter it to confirm your email address or phone number. It expires in {{minutes}} "
                "{{minutes|minute|minutes}}. "
                "If you did not request it, you can ignore this message.",
                "en.verify"),
        purpose("Your {{app}} account recovery code", "{{code}} is your {{app}} account recovery code.",
                "It expires in {{minutes}} {{minutes|minute|minutes}}. If you did not ask to recover your account, "
                "someone may be trying to access it: do not share this code with anyone.",
                "en.recovery"),

        purpose("Ihr Anmeldecode für {{app}}", "{{code}} ist Ihr Anmeldecode für {{app}}.",
                "Er ist {{minutes}} {{minutes|Minute|Minuten}} gültig. Falls Sie sich nicht anmelden wollten, können "
                "Sie diese Nachricht ignorieren. Geben Sie den Code an niemanden weiter.",
                "de.login"),
        purpose("Bestätigen Sie Ihre E-Mail-Adresse für {{app}}", "{{code}} ist Ihr Bestätigungscode für {{app}}.",
                "Geben Sie ihn ein, um Ihre E-Mail-Adresse oder Telefonnummer zu bestätigen. Er ist {{minutes}} "
                "{{minutes|Minute|Minuten}} gültig. Falls Sie ihn nicht angefordert haben, können Sie diese Nachricht "
                "ignorieren.",
                "de.verify"),
        purpose("Ihr Code zur Wiederherstellung Ihres Kontos bei {{app}}",
                "{{code}} ist Ihr Code zur Wiederherstellung Ihres Kontos bei {{app}}.",
                "Er ist {{minutes}} {{minutes|Minute|Minuten}} gültig. Falls Sie die Wiederherstellung nicht "
                "angefordert haben, versucht möglicherweise jemand, auf Ihr Konto zuzugreifen: Geben Sie diesen Code "
                "an niemanden weiter.",
                "de.recovery"),

        purpose("Votre code de connexion {{app}}", "{{code}} est votre code de connexion {{app}}.",
                "Il expire dans {{minutes}} {{minutes|minute|minutes}}. Si vous n'avez pas essayé de vous connecter, "
                "vous pouvez ignorer ce message. Ne communiquez ce code à personne.",
                "fr.login"),
        purpose(
            "Confirmez votre adresse e-mail pour {{app}}", "{{code}} est votre code de confirmation {{app}}.",
            "Saisissez-le pour confirmer votre adresse e-mail ou votre numéro de téléphone. Il expire dans "
            "{{minutes}} {{minutes|minute|minutes}}. Si vous ne l'avez pas demandé, vous pouvez ignorer ce message.",
            "fr.verify"),
        purpose("Votre code de récupération de compte {{app}}",
                "{{code}} est votre code de récupération de compte {{app}}.",
                "Il expire dans {{minutes}} {{minutes|minute|minutes}}. Si vous n'avez pas demandé à récupérer votre "
                "compte, quelqu'un essaie peut-être d'y accéder : ne communiquez ce code à personne.",
                "fr.recovery"),

        purpose("Tu código de inicio de sesión de {{app}}", "{{code}} es tu código de inicio de sesión de {{app}}.",
                "Caduca en {{minutes}} {{minutes|minuto|minutos}}. Si no has intentado iniciar sesión, puedes ignorar "
                "este mensaje. No compartas este código con nadie.",
                "es.login"),
        purpose("Confirma tu dirección de correo electrónico en {{app}}",
                "{{code}} es tu código de confirmación de {{app}}.",
                "Introdúcelo para confirmar tu dirección de correo electrónico o tu número de teléfono. Caduca en "
                "{{minutes}} {{minutes|minuto|minutos}}. Si no lo has solicitado, puedes ignorar este mensaje.",
                "es.verify"),
        purpose("Tu código de recuperación de cuenta de {{app}}",
                "{{code}} es tu código de recuperación de cuenta de {{app}}.",
                "Caduca en {{minutes}} {{minutes|minuto|minutos}}. Si no has pedido recuperar tu cuenta, es posible "
                "que alguien esté intentando acceder a ella: no compartas este código con nadie.",
                "es.recovery"),
    };
    return templates;
}

}  // namespace twofactor::config
