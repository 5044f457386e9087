// `clusterkit preflight`: every check that can fail a multi-node vLLM
// deployment, on every host in parallel, with the fix for each failure.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "clusterkit/model.hpp"
#include "clusterkit/preflight.hpp"
#include "common.hpp"

namespace clusterkit::cli {

void register_preflight(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group = "all";
    PreflightOptions p;
    std::string model;
    std::string model_root;
    bool model_from_config = false;
    std::optional<std::uint64_t> max_model_len;
    bool no_port_probe = false;
    bool no_nas_probe = false;
    double facts_timeout = 90;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand(
      "preflight", "Check every host before deploying: GPUs, versions, Docker and the NVIDIA runtime, /dev/shm, disk, "
                   "NAS, network interface, Ray and NCCL ports, clocks; exit status 1 on any failure");
  sub->add_option("-g,--group", o->group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  sub->add_flag("--json", g.json, "Machine-readable output on stdout");
  sub->add_option("--shm-min-gib", o->p.shm_min_gib, "Smallest acceptable /dev/shm")->capture_default_str();
  sub->add_option("--disk", o->p.disk_paths, "A path that needs free space on every host (repeatable)");
  sub->add_option("--disk-min-gib", o->p.disk_min_free_gib, "Free space needed at each --disk path")->capture_default_str();
  sub->add_option("--nas-path", o->p.nas_path, "Where the NAS is mounted on every host (default: vars.mount_point)");
  sub->add_option("--model-path", o->p.model_path, "The model folder every host must see at this path (on the NAS)");
  sub->add_option("--model", o->model, "A model folder or id on this machine: check that it fits on the GPUs found");
  sub->add_option("--root", o->model_root, "Where --model ids are looked up (ModelScope or Hugging Face cache layout)");
  sub->add_flag("--from-config", o->model_from_config, "Plan --model from config.json alone (before downloading)");
  sub->add_option("--max-model-len", o->max_model_len, "Context length the model must hold (model-fits)");
  sub->add_option("--image", o->p.docker_images, "A Docker image every GPU host must have, with the same ID (repeatable)");
  sub->add_option("--ray-port", o->p.ray_port, "The head's Ray port")->capture_default_str();
  sub->add_option("--rdzv-port", o->p.rdzv_port, "The torch.distributed rendezvous port on the head")->capture_default_str();
  sub->add_option("--runtime", o->p.container_runtime, "docker or none, for hosts without vars.runtime")
      ->check(CLI::IsMember({"docker", "none"}))
      ->capture_default_str();
  sub->add_option("--max-clock-offset", o->p.max_clock_offset_seconds, "Seconds a clock may differ from the head's")
      ->capture_default_str();
  sub->add_option("--python", o->p.python, "The Python on the hosts")->capture_default_str();
  sub->add_option("--facts-timeout", o->facts_timeout, "Seconds for the facts script on one host")->capture_default_str();
  sub->add_flag("--no-port-probe", o->no_port_probe, "Skip the Ray/NCCL port probe (it listens on the GPU hosts)");
  sub->add_flag("--no-nas-probe", o->no_nas_probe, "Skip writing a token file under the NAS path");
  sub->callback([&g, &action, o] {
    action = [&g, o] {
      auto inventory = load_inventory(g);
      auto hosts = inventory.select(o->group);
      auto options = o->p;
      options.probe_ports = !o->no_port_probe;
      options.probe_nas = !o->no_nas_probe;
      options.facts_timeout = checked_seconds(o->facts_timeout, "--facts-timeout", 1, 86400);
      if (o->max_model_len) options.plan.max_model_len = *o->max_model_len;
      validate_preflight_options(options);  // before the model is read or anything connects
      if (!o->model.empty()) {
        auto where = resolve_model(o->model, o->model_root);
        if (o->model_from_config) {
          std::ifstream in(where.dir / "config.json");
          auto facts = model_facts_from_config(nlohmann::json::parse(in), (where.dir / "config.json").string());
          estimate_tensors_from_config(facts);
          options.model = std::move(facts);
        } else {
          options.model = inspect_model(where.dir);
        }
      }
      Runtime rt;
      auto run = run_preflight(rt, hosts, options);
      if (g.json) print_json(run.to_json());
      else print_report(run.report.table()), std::fflush(stdout);
      return run.report.ok() ? 0 : 1;
    };
  });
}

}  // namespace clusterkit::cli
