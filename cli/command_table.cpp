// The CLI's own command tree as JSON (`twofactor --list-commands`, not in
// --help): the shell completions are generated from it at build time, so
// they cannot drift from what the parser accepts.
#include "cli/common.hpp"

#include <string>

namespace twofactor::cli {

namespace {

// CLI::IsMember shows its choices in the type name: "TEXT:{email,whatsapp}".
json choicesOf(const CLI::Option& option) {
    json choices = json::array();
    const std::string type = option.get_type_name();
    const auto open = type.find('{'), close = type.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close < open) return choices;
    std::string item;
    for (char c : type.substr(open + 1, close - open - 1)) {
        if (c == ',') {
            if (!item.empty()) choices.push_back(item);
            item.clear();
        } else if (c != ' ') item.push_back(c);
    }
    if (!item.empty()) choices.push_back(item);
    return choices;
}

json describe(const CLI::App& app, const std::string& path) {
    json options = json::array(), positionals = json::array(), commands = json::array();
    for (const CLI::Option* o : app.get_options([](const CLI::Option*) { return true; })) {
        if (!o->nonpositional()) {
            positionals.push_back({{"name", o->get_name(true)}, {"help", o->get_description()}});
            continue;
        }
        json names = json::array();
        for (const auto& n : o->get_lnames()) names.push_back("--" + n);
        for (const auto& n : o->get_snames()) names.push_back("-" + n);
        options.push_back({{"names", names},
                           {"takesValue", o->get_type_size_max() > 0},
                           {"choices", choicesOf(*o)},
                           {"help", o->get_description()}});
    }
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        commands.push_back(describe(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name()));
    return {{"path", path},
            {"help", app.get_description()},
            {"options", options},
            {"positionals", positionals},
            {"commands", commands}};
}

}  // namespace

json commandTable(const CLI::App& app) { return describe(app, ""); }

}  // namespace twofactor::cli
