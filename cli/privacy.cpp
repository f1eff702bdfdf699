// twofactor gdpr ... (dpo): data-subject requests and their register.
#include "cli/common.hpp"

namespace twofactor::cli {

namespace {

class PrivacyCommands final : public CommandGroup {
public:
    void add(CLI::App&) override {}
    int run(const Globals&) override { return -1; }
};

}  // namespace

std::unique_ptr<CommandGroup> privacyCommands() { return std::make_unique<PrivacyCommands>(); }

}  // namespace twofactor::cli
