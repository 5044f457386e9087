// `clusterkit lab up|status|down`: real sshd hosts in namespaces on this
// machine, for trying every capability without renting servers.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <stop_token>
#include <string>

#include "clusterkit/lab.hpp"
#include "common.hpp"
#include "signals.hpp"

namespace clusterkit::cli {
namespace {

nlohmann::json status_json(LabStatus const& s) {
  nlohmann::json j{{"name", s.name},
                   {"exists", s.exists},
                   {"state_dir", s.state_dir},
                   {"inventory", s.inventory_path},
                   {"identity_file", s.identity_file},
                   {"known_hosts_file", s.known_hosts_file},
                   {"bridge", s.bridge},
                   {"docker", s.docker},
                   {"gpus", s.gpus},
                   {"gpus_simulated", s.gpus > 0},
                   {"hosts", nlohmann::json::array()}};
  if (s.docker) j["runtime_image"] = s.runtime_image;
  for (auto const& h : s.hosts) {
    nlohmann::json hj{{"name", h.name},        {"address", h.address}, {"netns", h.netns},
                      {"sshd_pid", h.sshd_pid}, {"running", h.running}, {"role", h.role},
                      {"gpus", h.gpus}};
    if (h.gpus > 0) hj["gpus_simulated"] = true;
    if (h.docker)
      hj["docker"] = {{"dockerd_pid", h.dockerd_pid}, {"running", h.docker_running}, {"docker_host", h.docker_host}};
    j["hosts"].push_back(std::move(hj));
  }
  return j;
}

void print_status(LabStatus const& s) {
  if (!s.exists) {
    std::printf("lab '%s': not up\n", s.name.c_str());
    return;
  }
  std::size_t running = 0;
  for (auto const& h : s.hosts) running += h.running;
  std::printf("lab '%s': %zu/%zu hosts running (namespaces on this machine, %s)\n", s.name.c_str(), running,
              s.hosts.size(), s.gpus > 0 ? "no real GPUs: the GPUs below are SIMULATED" : "no GPUs");
  // A pid of 0 means none was found: say so rather than print "pid 0".
  auto pid_text = [](int pid) { return pid > 0 ? std::to_string(pid) : std::string("-"); };
  for (auto const& h : s.hosts) {
    std::string line = "  " + h.name;
    line.resize(std::max<std::size_t>(line.size() + 1, 9), ' ');
    line += h.address;
    line.resize(std::max<std::size_t>(line.size() + 1, 25), ' ');
    line += "sshd pid " + pid_text(h.sshd_pid) + (h.running ? " running" : " DOWN");
    if (!h.role.empty()) line += "  role " + h.role;
    if (h.gpus > 0) line += "  " + std::to_string(h.gpus) + " GPUs (simulated)";
    if (h.docker)
      line += "  docker: dockerd pid " + pid_text(h.dockerd_pid) + (h.docker_running ? " running" : " DOWN");
    std::printf("%s\n", terminal_safe(line).c_str());
  }
  if (s.docker) std::printf("docker:    one engine per host; image %s\n", terminal_safe(s.runtime_image).c_str());
  std::printf("inventory: %s\n", terminal_safe(s.inventory_path).c_str());
  std::printf("try:       clusterkit -i %s exec -- hostname\n", terminal_safe(s.inventory_path).c_str());
}

}  // namespace

void register_lab(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* lab = app.add_subcommand("lab", "A lab of real sshd hosts in namespaces on this machine (needs root)");
  lab->require_subcommand(1);
  auto opts = std::make_shared<LabOptions>();
  auto* up = lab->add_subcommand("up", "Bring the lab up (idempotent)");
  up->add_option("-n,--hosts", opts->hosts, "Number of hosts")->capture_default_str();
  up->add_flag("--nas", opts->nas, "Add a 'nas' host exporting /srv/nas over SFTP");
  up->add_option("--name", opts->name, "Lab name (several labs can coexist)")->capture_default_str();
  up->add_option("--subnet", opts->subnet, "First three octets of the lab subnet")->capture_default_str();
  up->add_option("--state-dir", opts->state_dir, "Where keys, state and the inventory go");
  up->add_flag("--docker", opts->docker,
               "Run a real Docker engine in each host (not the nas), with a local Debian image; needs "
               "scripts/install-serving.sh");
  up->add_option("--gpus", opts->gpus, "SIMULATED GPUs declared per GPU host in the inventory (they do not exist)")
      ->capture_default_str();
  up->add_option("--gpu-model", opts->gpu_model, "Model name of the simulated GPUs")->capture_default_str();
  up->add_option("--gpu-memory-gib", opts->gpu_memory_gib, "Memory of each simulated GPU, GiB")->capture_default_str();
  up->add_option("--roles", opts->roles,
                 "Role of h1..hN in order, one per host: head, worker, gpu, download (default with --gpus: "
                 "head,worker,...)")
      ->delimiter(',');
  up->callback([&g, &action, opts] {
    action = [&g, opts] {
      LabStatus s;
      // The lab's commands run in their own process groups, so the
      // terminal's Ctrl-C reaches only us: we stop the step and take down
      // what was made.
      auto& signals = SignalsToStop::current();
      signals.explain("taking down what lab up made so far",
                      "`clusterkit lab down --name " + opts->name + "` removes what is left");
      s = lab_up(*opts, signals.token());
      if (g.json)
        print_json(status_json(s));
      else
        print_status(s);
      return 0;
    };
  });
  auto name = std::make_shared<std::string>("ck");
  auto state_dir = std::make_shared<std::string>();
  auto* st = lab->add_subcommand("status", "Show the lab's hosts");
  st->add_option("--name", *name, "Lab name")->capture_default_str();
  st->add_option("--state-dir", *state_dir, "State folder given to `lab up`");
  st->callback([&g, &action, name, state_dir] {
    action = [&g, name, state_dir] {
      auto s = lab_status(*name, *state_dir);
      if (g.json)
        print_json(status_json(s));
      else
        print_status(s);
      bool all = s.exists;
      for (auto const& h : s.hosts) all = all && h.running;
      return all ? 0 : 1;
    };
  });
  auto* down = lab->add_subcommand("down", "Stop every lab process by pid and delete its namespaces");
  down->add_option("--name", *name, "Lab name")->capture_default_str();
  down->add_option("--state-dir", *state_dir, "State folder given to `lab up`");
  down->callback([&action, name, state_dir] {
    action = [name, state_dir] {
      // The clean-up runs to its end (seconds): lab_down takes no stop.
      SignalsToStop::current().explain("finishing the clean-up first, a few seconds",
                                       "`clusterkit lab down --name " + *name + "` removes what is left");
      lab_down(*name, *state_dir);
      std::printf("lab '%s' is down\n", name->c_str());
      return 0;
    };
  });
}

}  // namespace clusterkit::cli
