// `clusterkit nccl-check`: vLLM's multi-node NCCL/Gloo sanity check plus an
// all-reduce bandwidth sweep, launched with torchrun on every GPU host.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "clusterkit/facts.hpp"
#include "clusterkit/nccl_check.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/shell.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

std::vector<std::string> words(std::string const& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::pair<std::string, std::string> key_value(std::string const& kv, char const* flag) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(make_error_code(errc::invalid_argument), std::string(flag) + " '" + kv + "' is not KEY=VALUE");
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

}  // namespace

void register_nccl_check(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group;
    NcclCheckOptions n;
    std::vector<double> sizes_mib;
    std::string launcher = "torchrun";
    std::string exec_prefix;
    std::vector<std::string> env;
    std::vector<std::string> host_env;
    double timeout = 600;
    bool print_script = false;
    bool dry_run = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("nccl-check",
                                 "NCCL and Gloo all_reduce across every GPU host with torchrun (vLLM's sanity check), "
                                 "plus all-reduce bandwidth; exit status 1 on failure");
  sub->add_option("-g,--group", o->group, "Hosts (default: the GPU hosts, the head first)");
  sub->add_flag("--json", g.json, "Machine-readable output on stdout");
  sub->add_option("--rdzv-host", o->n.rdzv_host, "The head's address for the rendezvous (default: its inventory address)");
  sub->add_option("--port", o->n.rdzv_port, "Rendezvous port on the head")->capture_default_str();
  sub->add_option("--nproc", o->n.nproc_per_node, "GPUs per host (default: what nvidia-smi lists)");
  sub->add_option("--sizes", o->sizes_mib, "Bandwidth sizes in MiB (default 1 4 16 64 256)");
  sub->add_option("--iterations", o->n.iterations, "Timed all_reduce calls per size")->capture_default_str();
  sub->add_option("--warmup", o->n.warmup, "Untimed calls per size")->capture_default_str();
  sub->add_option("--dtype", o->n.dtype, "torch dtype of the bandwidth tensors")->capture_default_str();
  sub->add_option("--launcher", o->launcher, "How to start torchrun, e.g. \"python3 -m torch.distributed.run\"")
      ->capture_default_str();
  sub->add_option("--exec-prefix", o->exec_prefix, "Run inside a container, e.g. \"docker exec node\"");
  sub->add_option("--remote-dir", o->n.remote_dir, "Where the script goes on each host (visible in the container)")
      ->capture_default_str();
  sub->add_option("-e,--env", o->env, "KEY=VALUE for every host (repeatable), e.g. NCCL_DEBUG=INFO");
  sub->add_option("--host-env", o->host_env, "HOST:KEY=VALUE for one host (repeatable), e.g. h1:CUDA_VISIBLE_DEVICES=0");
  sub->add_flag("!--no-ifname", o->n.socket_ifname_from_route,
                "Do not set NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME from the route to the head");
  sub->add_option("-t,--timeout", o->timeout, "Seconds for the whole run on a host")->capture_default_str();
  sub->add_flag("--print-script", o->print_script, "Print the generated Python program and exit");
  sub->add_flag("--dry-run", o->dry_run, "Gather facts and print each host's command and environment; run nothing");
  sub->callback([&g, &action, o] {
    action = [&g, o] {
      if (o->print_script) {
        std::cout << nccl_check_script();
        return 0;
      }
      auto options = o->n;
      options.launcher = words(o->launcher);
      options.exec_prefix = words(o->exec_prefix);
      options.timeout = std::chrono::duration_cast<std::chrono::seconds>(checked_seconds(o->timeout, "-t/--timeout", 1, 86400));
      for (double mib : o->sizes_mib) {
        if (!(mib > 0 && mib <= 65536)) {  // NaN fails this too
          std::ostringstream v;
          v << mib;
          throw Error(make_error_code(errc::invalid_argument), "--sizes: each size is in MiB, above 0 and at most 65536, not " + v.str());
        }
        options.sizes.push_back(std::max<std::uint64_t>(1, static_cast<std::uint64_t>(mib * 1024 * 1024)));
      }
      for (auto const& kv : o->env) options.env.insert(key_value(kv, "--env"));
      for (auto const& hkv : o->host_env) {
        auto colon = hkv.find(':');
        if (colon == std::string::npos)
          throw Error(make_error_code(errc::invalid_argument), "--host-env '" + hkv + "' is not HOST:KEY=VALUE");
        options.host_env[hkv.substr(0, colon)].insert(key_value(hkv.substr(colon + 1), "--host-env"));
      }
      validate_nccl_check_options(options);  // before anything connects
      auto inventory = load_inventory(g);
      auto selected = nccl_check_hosts(inventory, o->group);
      options.declared_gpus = declared_gpus_of(selected);
      Runtime rt;
      std::vector<Host> hosts;
      for (auto const& h : selected) hosts.push_back(rt.host(h.spec));
      if (o->dry_run) {
        std::string rdzv = options.rdzv_host;
        if (rdzv.empty()) rdzv = hosts.front().spec().local && hosts.front().spec().address.empty() ? "127.0.0.1"
                                                                                              : hosts.front().spec().address;
        FactsOptions f;
        f.peers = {rdzv};
        auto facts = gather_facts(hosts, f);
        std::vector<NcclNodeInput> nodes;
        for (auto const& fo : facts) {
          if (!fo.ok()) throw Error(fo.error, fo.host + ": " + fo.message);
          NcclNodeInput n{fo.host, static_cast<unsigned>(fo.facts.gpus.size()), "", std::nullopt};
          if (auto const* r = fo.facts.route_to(rdzv)) n.interface = r->interface;
          if (auto d = options.declared_gpus.find(fo.host); d != options.declared_gpus.end()) n.declared = d->second;
          nodes.push_back(n);
        }
        auto plan = plan_nccl_check(nodes, rdzv, options.remote_dir + "/clusterkit-nccl-check-RUNID.py", "ck-RUNID", options);
        for (auto const& l : plan) {
          std::cout << l.host << " (node rank " << l.node_rank << ", " << l.nproc << " GPUs):\n  ";
          for (auto const& [k, v] : l.env) std::cout << k << "=" << shell::quote(v) << " ";
          std::cout << shell::join(l.argv) << "\n";
        }
        return 0;
      }
      auto result = nccl_check(hosts, options);
      if (g.json) print_json(result.to_json());
      else print_report(result.summary()), std::fflush(stdout);
      return result.ok() ? 0 : 1;
    };
  });
}

}  // namespace clusterkit::cli
