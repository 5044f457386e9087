// `clusterkit inventory`: check an inventory and show what it selects.
#include <cstdio>
#include <iostream>

#include "common.hpp"

namespace clusterkit::cli {

void register_inventory(CLI::App& app, GlobalOptions& g, Action& action) {
  auto group = std::make_shared<std::string>("all");
  auto* sub = app.add_subcommand("inventory", "Validate the inventory and list the selected hosts");
  sub->add_option("-g,--group", *group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  sub->callback([&g, &action, group] {
    action = [&g, group] {
      auto inventory = load_inventory(g);
      auto hosts = inventory.select(*group);
      if (g.json) {
        auto j = inventory.to_json();
        j["selected"] = nlohmann::json::array();
        for (auto const& h : hosts) j["selected"].push_back(h.spec.name);
        print_json(j);
        return 0;
      }
      std::printf("%s: %zu hosts selected by '%s'\n", terminal_safe(inventory.source()).c_str(), hosts.size(), terminal_safe(*group).c_str());
      for (auto const& h : hosts) {
        std::string roles, groups;
        for (auto const& r : h.roles) roles += (roles.empty() ? "" : ",") + r;
        for (auto const& gr : h.groups) groups += (groups.empty() ? "" : ",") + gr;
        std::printf("  %-12s %-28s roles=%-16s groups=%s\n", h.spec.name.c_str(), h.spec.display().c_str(),
                    roles.empty() ? "-" : roles.c_str(), groups.empty() ? "-" : groups.c_str());
      }
      return 0;
    };
  });
}

}  // namespace clusterkit::cli
