// `clusterkit connect` / `clusterkit disconnect`: open or close the shared
// connections ahead of time (a warm start for what follows, or a clean slate).
#include <cstdio>
#include <future>
#include <iostream>

#include "common.hpp"

namespace clusterkit::cli {

void register_connection(CLI::App& app, GlobalOptions& g, Action& action) {
  auto group = std::make_shared<std::string>("all");
  auto* c = app.add_subcommand("connect", "Open the shared ssh connection to every selected host");
  c->add_option("-g,--group", *group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  c->callback([&g, &action, group] {
    action = [&g, group] {
      auto inventory = load_inventory(g);
      Runtime rt;
      auto hosts = make_hosts(rt, inventory, *group);
      std::vector<HostOutcome> outcomes(hosts.size());
      std::vector<std::promise<void>> done(hosts.size());
      for (std::size_t i = 0; i < hosts.size(); ++i) {
        outcomes[i].host = hosts[i].name();
        hosts[i].async_connect([&, i](std::error_code ec) {
          outcomes[i].error = ec;
          outcomes[i].result.exit_code = ec ? -1 : 0;
          if (ec) outcomes[i].result.message = hosts[i].last_message();
          done[i].set_value();
        });
      }
      for (auto& d : done) d.get_future().wait();
      if (g.json) {
        auto arr = nlohmann::json::array();
        for (auto const& o : outcomes) arr.push_back({{"host", o.host}, {"ok", !o.error}, {"message", o.result.message}});
        print_json(arr);
      }
      return summarize(outcomes, g.json);
    };
  });
  auto* d = app.add_subcommand("disconnect", "Close the shared ssh connections to the selected hosts");
  d->add_option("-g,--group", *group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  d->callback([&g, &action, group] {
    action = [&g, group] {
      auto inventory = load_inventory(g);
      for (auto const& h : inventory.select(*group)) close_connection(h.spec);
      return 0;
    };
  });
}

}  // namespace clusterkit::cli
