// twofactor key rotate, twofactor backup (admin).
#include "cli/common.hpp"

namespace twofactor::cli {

namespace {

class MaintenanceCommands final : public CommandGroup {
public:
    void add(CLI::App&) override {}
    int run(const Globals&) override { return -1; }
};

}  // namespace

std::unique_ptr<CommandGroup> maintenanceCommands() { return std::make_unique<MaintenanceCommands>(); }

}  // namespace twofactor::cli
