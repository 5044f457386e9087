// `clusterkit model inspect|verify` and `clusterkit plan`: what a model is,
// whether its files are whole, and how it fits on the GPUs at hand.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <algorithm>
#include <iostream>

#include "clusterkit/format.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/preflight.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

struct ModelArgs {
  std::string model;
  std::string root;
  std::string revision;
  bool from_config = false;
};

void add_model_args(CLI::App* sub, ModelArgs& a) {
  sub->add_option("model", a.model, "Model folder, or an id (Qwen/Qwen2.5-72B-Instruct) looked up under --root")->required();
  sub->add_option("--root", a.root, "Where models are stored (ModelScope or Hugging Face cache layout)");
  sub->add_option("--revision", a.revision, "Hugging Face snapshot to use");
}

ModelFacts facts_for(ModelArgs const& a) {
  ModelLocation where;
  try {
    where = resolve_model(a.model, a.root, a.revision);
  } catch (Error const& e) {
    // Not on this machine: a model clusterkit ships the config of is planned
    // from that config (an estimate, said so); otherwise say what would help.
    if (auto config = known_model_config(a.model)) {
      std::fprintf(stderr,
                   "%s is not on this machine; planning from its config.json shipped with clusterkit "
                   "(examples/models/): tensor sizes are estimated from the config, not read from weights\n",
                   a.model.c_str());
      auto facts = model_facts_from_config(*config, a.model + " (config shipped with clusterkit)");
      estimate_tensors_from_config(facts);
      return facts;
    }
    std::string hint;
    if (a.root.empty() && a.model.find('/') != std::string::npos && a.model.front() != '/' && a.model.front() != '.')
      hint += "\na model id is looked up under --root (the folder the models were downloaded to, e.g. --root /mnt)";
    std::string ids;
    for (auto const& id : known_model_ids()) ids += (ids.empty() ? "" : ", ") + id;
    hint += "\nplanned offline without weights: " + ids;
    throw Error(e.code(), std::string(e.what()) + hint);
  }
  if (a.from_config) {
    std::ifstream in(where.dir / "config.json");
    auto facts = model_facts_from_config(nlohmann::json::parse(in), (where.dir / "config.json").string());
    estimate_tensors_from_config(facts);
    return facts;
  }
  try {
    return inspect_model(where.dir);
  } catch (Error const& e) {
    std::error_code ec;
    if (std::string(e.what()).find("has no *.safetensors files") != std::string::npos &&
        std::filesystem::exists(where.dir / "config.json", ec))
      throw Error(e.code(), std::string(e.what()) +
                                "; to plan from config.json alone (before the weights are downloaded), add --from-config");
    throw;
  }
}

/// sha256sums for every file of a model folder (the library's one list of
/// hub bookkeeping left out), hashed in parallel, written atomically.
void write_manifest(std::filesystem::path const& dir) {
  auto entries = write_sha256_manifest(dir);
  std::fprintf(stderr, "wrote %s (%zu files)\n", (dir / "sha256sums").c_str(), entries.size());
}

}  // namespace

int verify_on_hosts(GlobalOptions const& g, std::string const& selector, std::string const& model, std::string const& root,
                    std::string const& container_root, bool read_all, bool checksums);

void register_model(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* model = app.add_subcommand(
      "model", "Inspect, verify, download and copy models (here, or on hosts of the inventory)");
  model->require_subcommand(1);

  auto inspect_args = std::make_shared<ModelArgs>();
  auto* inspect = model->add_subcommand("inspect", "Read config.json and every safetensors header (never the weights)");
  add_model_args(inspect, *inspect_args);
  inspect->callback([&g, &action, inspect_args] {
    action = [&g, inspect_args] {
      auto facts = facts_for(*inspect_args);
      auto j = facts.to_json();
      if (g.json) {
        print_json(j);
        return 0;
      }
      std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    };
  });

  auto verify_args = std::make_shared<ModelArgs>();
  auto manifest = std::make_shared<std::string>();
  auto no_checksums = std::make_shared<bool>(false);
  auto* verify = model->add_subcommand("verify", "Check every shard is present and whole (and checksums, if a manifest exists)");
  add_model_args(verify, *verify_args);
  verify->add_option("--manifest", *manifest, "sha256sum-style manifest (default: <model>/sha256sums if present)");
  verify->add_flag("--no-checksums", *no_checksums, "Skip hashing");
  struct Remote {
    std::string group;
    std::string container_root;
    bool read_all = false;
    bool checksums = false;
    bool write_manifest = false;
  };
  auto remote = std::make_shared<Remote>();
  verify->add_option("-g,--group", remote->group,
                     "Check on these hosts instead (all, a group, host, role:NAME): MODEL is a path on them, or an id "
                     "under --root (default /mnt) in ModelScope's layout");
  verify->add_option("--container-root", remote->container_root, "Where the container mounts --root (for the report)");
  verify->add_flag("--read-all", remote->read_all, "With -g: also read every shard to its end through the mount");
  verify->add_flag("--checksums", remote->checksums, "With -g: hash on each host and compare with <model>/sha256sums");
  verify->add_flag("--write-manifest", remote->write_manifest,
                   "Hash every file of a local model in parallel and write <model>/sha256sums");
  verify->callback([&g, &action, verify_args, manifest, no_checksums, remote] {
    action = [&g, verify_args, manifest, no_checksums, remote] {
      if (!remote->group.empty())
        return verify_on_hosts(g, remote->group, verify_args->model, verify_args->root, remote->container_root,
                               remote->read_all, remote->checksums);
      auto where = resolve_model(verify_args->model, verify_args->root, verify_args->revision);
      if (remote->write_manifest) write_manifest(where.dir);
      VerifyOptions o;
      if (!manifest->empty()) o.manifest = *manifest;
      // The manifest just written holds the sums just computed: hashing
      // every file again to compare them with themselves would double the
      // time (bench/models found it) and prove nothing.
      o.skip_checksums = *no_checksums || remote->write_manifest;
      auto report = verify_model(where.dir, o);
      if (g.json) {
        print_json(report.to_json());
      } else {
        for (auto const& w : report.warnings) std::fprintf(stderr, "warning: %s\n", terminal_safe(w).c_str());
        for (auto const& p : report.problems) std::printf("problem: %s\n", terminal_safe(p.message).c_str());
        std::printf("%s: %zu shards, %zu tensors, %s; %s\n", terminal_safe(where.dir.string()).c_str(), report.shards_checked,
                    report.tensors_checked, clusterkit::format_gib(report.bytes_expected).c_str(),
                    report.ok() ? "complete" : "INCOMPLETE");
      }
      return report.ok() ? 0 : 1;
    };
  });
}

void register_plan(CLI::App& app, GlobalOptions& g, Action& action) {
  auto args = std::make_shared<ModelArgs>();
  auto gpus = std::make_shared<std::string>();
  auto options = std::make_shared<PlanOptions>();
  auto max_len = std::make_shared<std::optional<std::uint64_t>>();
  auto* plan = app.add_subcommand("plan", "Every TP x PP layout vLLM accepts for a model on given GPUs, and the best one; "
                                          "or, given a deployment spec (*.yaml), every step and command `up` would run");
  add_model_args(plan, *args);
  plan->add_option("--gpus", *gpus, "GPUs, e.g. \"2 nodes x 2 L20 48GB\", \"8x A10 24GB\", \"4x H100 80GB\"");
  plan->add_option("--gpu-memory-utilization", options->gpu_memory_utilization, "vLLM's setting")->capture_default_str();
  plan->add_option("--max-model-len", *max_len, "Context length to plan for (default: min(model max, 32768))");
  plan->add_option("--kv-cache-dtype", options->kv_cache_dtype, "auto, fp8, ...")->capture_default_str();
  plan->add_flag("--allow-pp-within-node", options->allow_pp_within_node, "Allow several pipeline stages on one node");
  plan->add_flag("--from-config", args->from_config, "Estimate tensors from config.json alone (before downloading)");
  auto full = std::make_shared<bool>(false);
  plan->add_flag("--full", *full, "With a deployment spec: print every command and script whole");
  plan->callback([&g, &action, args, gpus, options, max_len, full] {
    action = [&g, args, gpus, options, max_len, full] {
      auto const& m = args->model;
      if (m.ends_with(".yaml") || m.ends_with(".yml")) return run_deployment_plan(g, m, *full);
      if (*full)
        throw Error(make_error_code(errc::invalid_argument),
                    "--full prints a deployment's commands whole: give a deployment spec (*.yaml), not a model");
      GpuInventory inventory;
      if (!gpus->empty()) {
        inventory = parse_gpu_inventory(*gpus);  // before the model is read: the cheaper mistake first
      } else if (!g.inventory.empty() || std::getenv("CLUSTERKIT_INVENTORY")) {
        // The GPUs the inventory declares, as preflight and `up` see them
        // before facts are gathered.
        auto const inv = load_inventory(g);
        inventory = declared_gpu_inventory(inv.hosts());
        if (inventory.nodes.empty())
          throw Error(make_error_code(errc::invalid_argument),
                      "no host of the inventory declares GPUs (gpus: {count: 2, model: L20, memory_gib: 48}); declare them, "
                      "or give --gpus \"2 nodes x 2 L20 48GB\"");
        for (auto const& n : inventory.nodes)
          if (n.memory_bytes == 0)
            throw Error(make_error_code(errc::invalid_argument),
                        n.name + " declares " + std::to_string(n.gpu_count) + " " + (n.gpu_model.empty() ? "GPUs" : n.gpu_model) +
                            " of a size clusterkit does not know: add memory_gib to its gpus: entry, or give --gpus");
      } else {
        throw Error(make_error_code(errc::invalid_argument),
                    "plan needs the GPUs: --gpus \"2 nodes x 2 L20 48GB\", or -i INVENTORY whose hosts declare gpus:, "
                    "or a deployment spec (*.yaml) instead of a model");
      }
      if (*max_len && **max_len == 0)
        throw Error(make_error_code(errc::invalid_argument), "--max-model-len must be at least 1 (a context length in tokens)");
      auto facts = facts_for(*args);
      if (*max_len) options->max_model_len = **max_len;  // 0 given: the planner refuses it, naming the flag
      auto p = plan_deployment(facts, inventory, *options);
      if (g.json)
        print_json(p.to_json());
      else
        print_report(p.summary());
      return p.shortfall ? 1 : 0;
    };
  });
}

}  // namespace clusterkit::cli
