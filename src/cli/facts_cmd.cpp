// `clusterkit facts`: what each selected host is, gathered in parallel with
// one remote command per host.
#include <cstdio>
#include <iostream>

#include "clusterkit/facts.hpp"
#include "common.hpp"

namespace clusterkit::cli {

void register_facts(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group = "all";
    std::vector<std::string> disks;
    std::vector<std::string> peers;
    std::vector<std::string> images;
    std::string python = "python3";
    double timeout = 90;
    bool raw = false;
    bool script = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("facts", "OS, CPUs, memory, disks, /dev/shm, GPUs, driver, Docker, network, clock and "
                                          "Python versions of every selected host");
  sub->add_option("-g,--group", o->group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  sub->add_option("--disk", o->disks, "A path whose free space to report (repeatable; default: / and vars.mount_point)");
  sub->add_option("--peer", o->peers, "Look up the route to this address (repeatable; default: the head's address)");
  sub->add_option("--image", o->images, "Report this Docker image's ID (repeatable)");
  sub->add_option("--python", o->python, "The Python whose packages to report")->capture_default_str();
  sub->add_option("-t,--timeout", o->timeout, "Seconds for the facts script on one host")->capture_default_str();
  sub->add_flag("--json", g.json, "Machine-readable output on stdout");
  sub->add_flag("--raw", o->raw, "Print each host's raw section output too (to check the parsed fields against it)");
  sub->add_flag("--script", o->script, "Print the facts script and exit (nothing runs)");
  sub->callback([&g, &action, o] {
    action = [&g, o] {
      FactsOptions f;
      f.python = o->python;
      f.docker_images = o->images;
      f.timeout = checked_seconds(o->timeout, "-t/--timeout", 1, 86400);
      if (o->script) {
        f.disk_paths = o->disks.empty() ? std::vector<std::string>{"/"} : o->disks;
        f.peers = o->peers;
        std::cout << facts_script(f);
        return 0;
      }
      auto inventory = load_inventory(g);
      auto selected = inventory.select(o->group);
      f.disk_paths = o->disks;
      if (f.disk_paths.empty()) {
        f.disk_paths.push_back("/");
        for (auto const& h : selected)
          if (h.extra.contains("vars") && h.extra["vars"].is_object() && h.extra["vars"].contains("mount_point") &&
              h.extra["vars"]["mount_point"].is_string()) {
            auto mp = h.extra["vars"]["mount_point"].get<std::string>();
            if (std::find(f.disk_paths.begin(), f.disk_paths.end(), mp) == f.disk_paths.end()) f.disk_paths.push_back(mp);
          }
      }
      f.peers = o->peers;
      if (f.peers.empty())
        for (auto const& h : inventory.hosts())
          if (std::find(h.roles.begin(), h.roles.end(), "head") != h.roles.end() && !h.spec.address.empty()) {
            f.peers.push_back(h.spec.address);
            break;
          }
      f.declared_gpus = declared_gpus_of(selected);
      Runtime rt;
      std::vector<Host> hosts;
      for (auto const& h : selected) hosts.push_back(rt.host(h.spec));
      auto outcomes = gather_facts(hosts, f);
      int status = 0;
      if (g.json) {
        auto arr = nlohmann::json::array();
        for (auto const& out : outcomes) {
          auto j = out.to_json();
          if (o->raw) j["raw_output"] = out.raw_output;
          arr.push_back(std::move(j));
        }
        print_json(arr);
      } else {
        for (auto const& out : outcomes) {
          print_report(describe_facts(out));
          if (o->raw) std::cout << "---- raw output of " << out.host << " ----\n" << out.raw_output << "---- end ----\n";
          std::cout << "\n";
        }
      }
      for (auto const& out : outcomes)
        if (!out.ok()) status = 1;
      return status;
    };
  });
}

}  // namespace clusterkit::cli
