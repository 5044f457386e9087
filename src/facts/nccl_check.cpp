// The NCCL/Gloo sanity check: the pure half (the program, the plan, the
// output parser and the verdict).
#include "clusterkit/nccl_check.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "clusterkit/facts.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/shell.hpp"
#include "core/text.hpp"

namespace clusterkit {

using nlohmann::json;

namespace {

// vLLM's troubleshooting check (NCCL all_reduce of ones, the sum checked;
// the same through a Gloo group), then the bandwidth sweep. Every result is
// one `@@ck-nccl {json}` line; an exception becomes an "error" line and
// exit status 1.
constexpr char const* kScript = R"PY(# clusterkit NCCL/Gloo sanity check (generated; see clusterkit/nccl_check.hpp)
import argparse
import json
import os
import socket
import sys
import time
import traceback


def emit(**fields):
    fields.setdefault("rank", int(os.environ.get("RANK", "-1")))
    sys.stdout.write("@@ck-nccl " + json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1048576,4194304,16777216,67108864,268435456")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl")
    try:
        nccl_version = ".".join(str(v) for v in torch.cuda.nccl.version())
    except Exception:
        nccl_version = ""
    emit(event="init", world_size=world, local_rank=local_rank, hostname=socket.gethostname(),
         device=torch.cuda.get_device_name(local_rank), torch=torch.__version__,
         cuda=torch.version.cuda or "", nccl=nccl_version)

    # NCCL: every rank contributes ones; the mean of the sum is the world size.
    data = torch.FloatTensor([1.0] * 128).to("cuda")
    dist.all_reduce(data, op=dist.ReduceOp.SUM)
    torch.cuda.synchronize()
    value = data.mean().item()
    nccl_ok = value == world
    emit(event="nccl_allreduce", ok=nccl_ok, value=value, expected=world)

    # Gloo, the CPU path vLLM also uses.
    gloo_group = dist.new_group(ranks=list(range(world)), backend="gloo")
    cpu_data = torch.FloatTensor([1.0] * 128)
    dist.all_reduce(cpu_data, op=dist.ReduceOp.SUM, group=gloo_group)
    value = cpu_data.mean().item()
    gloo_ok = value == world
    emit(event="gloo_allreduce", ok=gloo_ok, value=value, expected=world)

    # Bandwidth: the slowest rank's time decides (as nccl-tests reports it).
    dtype = getattr(torch, args.dtype)
    element = torch.tensor([], dtype=dtype).element_size()
    for size in [int(s) for s in args.sizes.split(",") if s]:
        count = max(1, size // element)
        tensor = torch.zeros(count, dtype=dtype, device="cuda")
        for _ in range(args.warmup):
            dist.all_reduce(tensor)
        torch.cuda.synchronize()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(args.iterations):
            dist.all_reduce(tensor)
        torch.cuda.synchronize()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device="cuda")
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        per_call = elapsed.item() / args.iterations
        nbytes = count * element
        algbw = nbytes / per_call / 1e9
        busbw = algbw * 2 * (world - 1) / world
        if rank == 0:
            emit(event="bandwidth", bytes=nbytes, iterations=args.iterations, time_us=per_call * 1e6,
                 algbw_gbps=algbw, busbw_gbps=busbw, dtype=args.dtype)
        del tensor
    dist.barrier()
    emit(event="done", ok=nccl_ok and gloo_ok)
    dist.destroy_process_group()
    return 0 if nccl_ok and gloo_ok else 2


try:
    sys.exit(main())
except Exception as exc:
    emit(event="error", error="%s: %s" % (type(exc).__name__, exc), traceback=traceback.format_exc()[-3000:])
    sys.exit(1)
)PY";

bool valid_env_name(std::string const& k) { return shell::is_valid_variable_name(k); }

std::string fmt(char const* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string size_label(std::uint64_t bytes) {
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " B";
}

}  // namespace

std::string nccl_check_script() { return kScript; }

std::vector<InventoryHost> nccl_check_hosts(Inventory const& inventory, std::string const& selector) {
  if (!selector.empty()) {
    auto selected = inventory.select(selector);
    if (selected.empty())
      throw Error(make_error_code(errc::unknown_host_or_group), "'" + selector + "' selects no host of the inventory");
    return selected;
  }
  auto roles = cluster_roles(inventory.hosts());
  std::vector<InventoryHost> hosts;
  if (!roles.head.empty()) hosts.push_back(*inventory.find(roles.head));
  for (auto const& name : roles.gpu_hosts)
    if (name != roles.head) hosts.push_back(*inventory.find(name));
  if (hosts.empty())
    throw Error(make_error_code(errc::unknown_host_or_group),
                "no GPU host in the inventory: give the GPU hosts a role (head, worker or gpu) or gpus.count, "
                "or pick them with -g HOSTS");
  return hosts;
}

std::vector<std::uint64_t> default_nccl_sizes() {
  return {1ull << 20, 4ull << 20, 16ull << 20, 64ull << 20, 256ull << 20};
}

void validate_nccl_check_options(NcclCheckOptions const& options) {
  auto bad = [](std::string const& what) { throw Error(make_error_code(errc::invalid_argument), "nccl-check: " + what); };
  if (options.rdzv_port <= 0 || options.rdzv_port > 65535)
    bad("rdzv_port " + std::to_string(options.rdzv_port) + " is not a TCP port (1-65535; --port)");
  if (options.nproc_per_node > 1024)
    bad("nproc_per_node " + std::to_string(options.nproc_per_node) + " is more GPUs than a host has (0: what nvidia-smi lists, or 1 to 1024; --nproc)");
  if (options.launcher.empty()) bad("the launcher is empty (torchrun, or python3 -m torch.distributed.run)");
  if (options.iterations == 0 || options.iterations > 1000000)
    bad("iterations must be between 1 and 1000000, not " + std::to_string(options.iterations) + " (--iterations)");
  if (options.warmup > 1000000) bad("warmup must be between 0 and 1000000, not " + std::to_string(options.warmup) + " (--warmup)");
  for (auto s : options.sizes)
    if (s == 0 || s > (64ull << 30))
      bad("a bandwidth size of " + std::to_string(s) + " bytes is out of range (1 byte to 64 GiB; --sizes in MiB)");
}

std::vector<NcclNodeLaunch> plan_nccl_check(std::vector<NcclNodeInput> const& nodes, std::string const& rdzv_host,
                                            std::string const& script_path, std::string const& run_id,
                                            NcclCheckOptions const& options) {
  auto bad = [](std::string const& what) { throw Error(make_error_code(errc::invalid_argument), "nccl-check: " + what); };
  if (nodes.empty()) bad("no GPU host to run on");
  if (rdzv_host.empty()) bad("no rendezvous address (give the head an address, or set rdzv_host)");
  validate_nccl_check_options(options);
  if (script_path.empty()) bad("no script path");
  for (char c : run_id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) bad("run id '" + run_id + "' has odd characters");
  auto const& sizes = options.sizes.empty() ? default_nccl_sizes() : options.sizes;
  // GPUs per host: what the inventory declares (real GPUs), else what
  // nvidia-smi lists; torchrun needs one count everywhere, the smallest.
  for (auto const& n : nodes) {
    if (!n.declared || n.declared->count == 0) continue;
    if (n.declared->simulated && n.gpus == 0)
      bad(n.host + "'s " + std::to_string(n.declared->count) +
          " GPUs are simulated (the inventory declares them; nvidia-smi lists none): NCCL needs real GPUs; run "
          "nccl-check on GPU servers, or leave " + n.host + " out");
    if (!n.declared->simulated && n.declared->count > n.gpus)
      bad(n.host + ": the inventory declares " + std::to_string(n.declared->count) + " GPUs, nvidia-smi lists " +
          std::to_string(n.gpus) + "; fix the host's gpus.count in the inventory");
  }
  unsigned nproc = options.nproc_per_node;
  if (nproc == 0) {
    nproc = UINT32_MAX;
    for (auto const& n : nodes) {
      unsigned const usable = n.declared && !n.declared->simulated && n.declared->count > 0 ? n.declared->count : n.gpus;
      if (usable == 0)
        bad(n.host + " has no GPU (nvidia-smi lists none); leave it out, or give the GPUs per host (--nproc N; "
                     "nproc_per_node in the API)");
      nproc = std::min(nproc, usable);
    }
  }
  std::string size_list;
  for (auto s : sizes) size_list += (size_list.empty() ? "" : ",") + std::to_string(s);

  std::vector<NcclNodeLaunch> out;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    NcclNodeLaunch l;
    l.host = nodes[i].host;
    l.node_rank = static_cast<unsigned>(i);
    l.nproc = nproc;
    l.argv = options.exec_prefix;
    l.argv.insert(l.argv.end(), options.launcher.begin(), options.launcher.end());
    std::vector<std::string> args = {
        "--nnodes=" + std::to_string(nodes.size()),
        "--nproc_per_node=" + std::to_string(nproc),
        "--node_rank=" + std::to_string(i),
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=" + (rdzv_host.find(':') != std::string::npos ? "[" + rdzv_host + "]" : rdzv_host) + ":" +
            std::to_string(options.rdzv_port),
        "--rdzv_id=" + run_id,
        "--rdzv_conf=join_timeout=" + std::to_string(std::max<long long>(30, options.timeout.count() / 2)),
        "--max_restarts=0",
        script_path,
        "--sizes=" + size_list,
        "--warmup=" + std::to_string(options.warmup),
        "--iterations=" + std::to_string(options.iterations),
        "--dtype=" + options.dtype,
    };
    l.argv.insert(l.argv.end(), args.begin(), args.end());
    l.env["OMP_NUM_THREADS"] = "1";
    if (options.socket_ifname_from_route && !nodes[i].interface.empty() && nodes[i].interface != "lo") {
      l.env["NCCL_SOCKET_IFNAME"] = nodes[i].interface;
      l.env["GLOO_SOCKET_IFNAME"] = nodes[i].interface;
    }
    for (auto const& [k, v] : options.env) l.env[k] = v;
    if (auto it = options.host_env.find(l.host); it != options.host_env.end())
      for (auto const& [k, v] : it->second) l.env[k] = v;
    for (auto const& [k, v] : l.env)
      if (!valid_env_name(k)) bad("environment variable name '" + k + "' is not valid");
    out.push_back(std::move(l));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Output

namespace {

constexpr std::size_t kMaxOutput = 64u << 20;
constexpr std::size_t kMaxLine = 64 * 1024;
constexpr std::size_t kMaxRanks = 65536;

std::string str(json const& j, char const* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
double num(json const& j, char const* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}
long long integer(json const& j, char const* key, long long fallback) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  double v = it->get<double>();
  if (!(v > -1e12 && v < 1e12)) return fallback;
  return static_cast<long long>(v);
}
std::optional<bool> boolean(json const& j, char const* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

}  // namespace

NcclCheckOutput parse_nccl_check_output(std::string_view text) {
  NcclCheckOutput out;
  if (text.size() > kMaxOutput) text = text.substr(0, kMaxOutput);
  std::map<int, NcclRankReport> ranks;
  auto rank_of = [&](int r) -> NcclRankReport& {
    auto& x = ranks[r];
    x.rank = r;
    return x;
  };
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    auto at = line.find("@@ck-nccl ");
    if (at == std::string_view::npos) continue;
    auto body = line.substr(at + 10);
    auto keep_malformed = [&](char const* why) {
      if (out.malformed.size() < 100) out.malformed.push_back(std::string(why) + ": " + std::string(body.substr(0, 200)));
    };
    if (body.size() > kMaxLine) {
      keep_malformed("line too long");
      continue;
    }
    if (!detail::json_nesting_within(body, 16)) {
      keep_malformed("nested too deep");
      continue;
    }
    json j = json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      keep_malformed("not a JSON object");
      continue;
    }
    auto event = str(j, "event");
    long long r = integer(j, "rank", -1);
    if (r < -1 || r >= static_cast<long long>(kMaxRanks)) {
      keep_malformed("rank out of range");
      continue;
    }
    int rank = static_cast<int>(r);
    if (event == "bandwidth") {
      NcclBandwidth b;
      double bytes = num(j, "bytes");
      b.bytes = bytes > 0 && bytes < 1e15 ? static_cast<std::uint64_t>(bytes) : 0;
      long long it = integer(j, "iterations", 0);
      b.iterations = it > 0 && it < 1000000000 ? static_cast<unsigned>(it) : 0;
      b.time_us = num(j, "time_us");
      b.algbw_gbps = num(j, "algbw_gbps");
      b.busbw_gbps = num(j, "busbw_gbps");
      b.dtype = str(j, "dtype");
      if (out.bandwidth.size() < 1000) out.bandwidth.push_back(std::move(b));
      continue;
    }
    if (rank < 0 || (ranks.size() >= kMaxRanks && !ranks.count(rank))) {
      keep_malformed("no rank");
      continue;
    }
    auto& x = rank_of(rank);
    if (event == "init") {
      x.initialized = true;
      x.world_size = static_cast<int>(std::clamp<long long>(integer(j, "world_size", 0), 0, kMaxRanks));
      x.local_rank = static_cast<int>(std::clamp<long long>(integer(j, "local_rank", -1), -1, kMaxRanks));
      x.hostname = str(j, "hostname");
      x.device = str(j, "device");
      x.torch_version = str(j, "torch");
      x.cuda_version = str(j, "cuda");
      x.nccl_version = str(j, "nccl");
    } else if (event == "nccl_allreduce") {
      x.nccl_ok = boolean(j, "ok").value_or(false);
      x.nccl_value = num(j, "value");
    } else if (event == "gloo_allreduce") {
      x.gloo_ok = boolean(j, "ok").value_or(false);
      x.gloo_value = num(j, "value");
    } else if (event == "done") {
      x.done = true;
    } else if (event == "error") {
      x.error = str(j, "error").substr(0, 2000);
    } else {
      keep_malformed("unknown event");
    }
  }
  for (auto& [r, x] : ranks) out.ranks.push_back(std::move(x));
  return out;
}

bool NcclCheckResult::ok() const {
  bool const runs_ok =
      !hosts.empty() && std::all_of(hosts.begin(), hosts.end(), [](NcclHostRun const& h) { return !h.error && h.exit_code == 0; });
  bool const ranks_done = std::all_of(ranks.begin(), ranks.end(), [](NcclRankReport const& x) { return x.done && x.error.empty(); });
  return runs_ok && ranks_done && nccl_ok() && gloo_ok() && problems.empty();
}

bool NcclCheckResult::nccl_ok() const {
  if (ranks.empty() || static_cast<int>(ranks.size()) != world_size) return false;
  return std::all_of(ranks.begin(), ranks.end(), [](NcclRankReport const& r) { return r.nccl_ok.value_or(false); });
}

bool NcclCheckResult::gloo_ok() const {
  if (ranks.empty() || static_cast<int>(ranks.size()) != world_size) return false;
  return std::all_of(ranks.begin(), ranks.end(), [](NcclRankReport const& r) { return r.gloo_ok.value_or(false); });
}

namespace {

std::string tail_lines(std::string const& text, std::size_t n) {
  std::size_t pos = text.size();
  while (pos > 0 && (text[pos - 1] == '\n')) --pos;
  std::size_t count = 0;
  std::size_t start = pos;
  while (start > 0) {
    if (text[start - 1] == '\n' && ++count == n) break;
    --start;
  }
  return text.substr(start, pos - start);
}

bool contains(std::string const& hay, std::string_view needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

NcclCheckResult evaluate_nccl_check(std::vector<NcclHostRun> runs, std::vector<std::string> const& outputs,
                                    int expected_world_size) {
  NcclCheckResult r;
  r.world_size = expected_world_size;
  std::map<int, NcclRankReport> ranks;
  std::string all;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    auto parsed = parse_nccl_check_output(outputs[i]);
    for (auto& x : parsed.ranks) {
      // A rank reports from one host only; keep what is known.
      auto& slot = ranks[x.rank];
      if (!slot.initialized && x.initialized) slot = x;
      else {
        if (slot.rank < 0) slot.rank = x.rank;
        if (x.nccl_ok) slot.nccl_ok = x.nccl_ok, slot.nccl_value = x.nccl_value;
        if (x.gloo_ok) slot.gloo_ok = x.gloo_ok, slot.gloo_value = x.gloo_value;
        slot.done = slot.done || x.done;
        if (!x.error.empty()) slot.error = x.error;
      }
    }
    for (auto& b : parsed.bandwidth) r.bandwidth.push_back(b);
    if (all.size() < (8u << 20)) all += outputs[i].substr(0, 1u << 20);
  }
  for (auto& [k, x] : ranks)
    if (k >= 0 && k < expected_world_size) r.ranks.push_back(x);
  for (auto const& h : runs) {
    if (h.error) r.problems.push_back(h.host + ": " + (h.message.empty() ? h.error.message() : h.message));
    else if (h.exit_code != 0)
      r.problems.push_back(h.host + ": torchrun exited with status " + std::to_string(h.exit_code) +
                           (h.output_tail.empty() ? "" : "; last output:\n" + tail_lines(h.output_tail, 8)));
  }
  std::set<int> seen;
  for (auto const& x : r.ranks) seen.insert(x.rank);
  if (seen.empty() && expected_world_size > 0) {
    r.problems.push_back("no rank reported: the program did not start (or never got past the rendezvous) on any host");
  } else {
    std::vector<std::string> missing;
    for (int k = 0; k < expected_world_size; ++k)
      if (!seen.count(k)) missing.push_back(std::to_string(k));
    if (!missing.empty()) {
      std::string list;
      for (std::size_t i = 0; i < missing.size() && i < 16; ++i) list += (i ? ", " : "") + missing[i];
      if (missing.size() > 16) list += ", ...";
      r.problems.push_back("rank(s) " + list + " never reported (did not start or did not join)");
    }
  }
  for (auto const& x : r.ranks) {
    auto who = "rank " + std::to_string(x.rank) + (x.hostname.empty() ? "" : " on " + x.hostname);
    if (!x.error.empty()) r.problems.push_back(who + ": " + x.error);
    if (x.world_size && x.world_size != expected_world_size)
      r.problems.push_back(who + " saw a world of " + std::to_string(x.world_size) + ", expected " +
                           std::to_string(expected_world_size));
    if (x.initialized && !x.nccl_ok) r.problems.push_back(who + ": no NCCL all_reduce result");
    else if (x.nccl_ok && !*x.nccl_ok)
      r.problems.push_back(who + ": NCCL all_reduce gave " + fmt("%g", x.nccl_value) + ", expected " +
                           std::to_string(expected_world_size));
    if (x.nccl_ok.value_or(false) && !x.gloo_ok) r.problems.push_back(who + ": no Gloo all_reduce result");
    else if (x.gloo_ok && !*x.gloo_ok)
      r.problems.push_back(who + ": Gloo all_reduce gave " + fmt("%g", x.gloo_value) + ", expected " +
                           std::to_string(expected_world_size));
    if (x.initialized && !x.done && x.error.empty()) r.problems.push_back(who + " did not finish");
  }
  // Hints for the failures users hit most (REFERENCES #3, #6).
  bool gloo_failed = std::any_of(r.ranks.begin(), r.ranks.end(), [](NcclRankReport const& x) {
    return x.nccl_ok.value_or(false) && !x.gloo_ok.value_or(false);
  });
  if (!r.problems.empty() && (contains(all, "connectFullMesh") || gloo_failed))
      r.problems.push_back("hint: Gloo failures usually mean the wrong interface: set GLOO_SOCKET_IFNAME (and "
                           "NCCL_SOCKET_IFNAME) to the interface each host reaches the head by (clusterkit preflight prints it)");
  // NCCL's own words for an interface that does not exist name neither the
  // variable nor the value (seen on an H100 with NCCL_SOCKET_IFNAME=nosuch0).
  for (std::size_t i = 0; i < runs.size() && i < outputs.size(); ++i) {
    if (!contains(outputs[i], "no socket interface found") && !contains(runs[i].output_tail, "no socket interface found"))
      continue;
    auto const& env = runs[i].launch.env;
    auto it = env.find("NCCL_SOCKET_IFNAME");
    std::string const setting =
        it == env.end() ? std::string("no interface NCCL could use (NCCL_SOCKET_IFNAME is not set)")
                        : "no interface matching NCCL_SOCKET_IFNAME=" + it->second;
    r.problems.push_back("hint: NCCL found " + setting + " on " + runs[i].host +
                         ": set NCCL_SOCKET_IFNAME (and GLOO_SOCKET_IFNAME) to the interface that host reaches the "
                         "head by (`ip -o route get HEAD_ADDRESS` there; clusterkit preflight prints it), or let "
                         "nccl-check set both from the route (drop --no-ifname and the -e for them)");
  }
  if (!r.problems.empty() && (contains(all, "NCCL WARN") || contains(all, "ncclSystemError") || contains(all, "ncclRemoteError")))
    r.problems.push_back("hint: NCCL failed between hosts: check NCCL_SOCKET_IFNAME and that TCP between the GPU hosts is "
                         "open on all ports (clusterkit preflight's nccl-ports check); NCCL_DEBUG=INFO shows more");
  if (!r.problems.empty() && (contains(all, "RendezvousConnectionError") || contains(all, "RendezvousTimeoutError") ||
                              contains(all, "DistNetworkError")))
    r.problems.push_back("hint: the rendezvous on the head could not be reached: check the head's address and that its "
                         "rendezvous port is open");
  r.hosts = std::move(runs);
  return r;
}

json NcclCheckResult::to_json() const {
  json j;
  j["ok"] = ok();
  j["world_size"] = world_size;
  j["nccl_ok"] = nccl_ok();
  j["gloo_ok"] = gloo_ok();
  j["ranks"] = json::array();
  for (auto const& x : ranks)
    j["ranks"].push_back({{"rank", x.rank},
                          {"world_size", x.world_size},
                          {"local_rank", x.local_rank},
                          {"hostname", x.hostname},
                          {"device", x.device},
                          {"torch", x.torch_version},
                          {"cuda", x.cuda_version},
                          {"nccl", x.nccl_version},
                          {"nccl_ok", x.nccl_ok ? json(*x.nccl_ok) : json(nullptr)},
                          {"gloo_ok", x.gloo_ok ? json(*x.gloo_ok) : json(nullptr)},
                          {"done", x.done},
                          {"error", x.error}});
  j["bandwidth"] = json::array();
  // One rank moves nothing: its "bandwidth" (thousands of GB/s) is a no-op's
  // timing. The figures stay, with the note a reader needs.
  if (world_size == 1)
    j["bandwidth_note"] = "one rank: no communication to measure (run with 2 or more GPUs or hosts)";
  for (auto const& b : bandwidth)
    j["bandwidth"].push_back({{"bytes", b.bytes},
                              {"iterations", b.iterations},
                              {"time_us", b.time_us},
                              {"algbw_gbps", b.algbw_gbps},
                              {"busbw_gbps", b.busbw_gbps},
                              {"dtype", b.dtype}});
  j["hosts"] = json::array();
  for (auto const& h : hosts)
    j["hosts"].push_back({{"host", h.host},
                          {"node_rank", h.launch.node_rank},
                          {"nproc", h.launch.nproc},
                          {"argv", h.launch.argv},
                          {"env", h.launch.env},
                          {"exit_code", h.exit_code},
                          {"error", h.error ? json(h.error.message()) : json(nullptr)},
                          {"message", h.message},
                          {"output_tail", h.output_tail}});
  j["problems"] = problems;
  return j;
}

std::string NcclCheckResult::summary() const {
  std::ostringstream s;
  std::set<std::string> hostnames;
  for (auto const& x : ranks)
    if (!x.hostname.empty()) hostnames.insert(x.hostname);
  s << "NCCL all_reduce: " << (nccl_ok() ? "pass" : "FAIL") << ", Gloo all_reduce: " << (gloo_ok() ? "pass" : "FAIL") << " ("
    << ranks.size() << " of " << world_size << " ranks reported, " << hosts.size() << " host(s))\n";
  if (!ranks.empty()) {
    auto const& r0 = ranks.front();
    s << "  " << r0.device << ", torch " << r0.torch_version << ", CUDA " << r0.cuda_version << ", NCCL " << r0.nccl_version
      << "\n";
  }
  if (!bandwidth.empty() && world_size <= 1) {
    // With one rank an all_reduce moves nothing: its "bandwidth" is a
    // local no-op's (9,253 GB/s was printed on one H200).
    s << "  all_reduce bandwidth: one rank, no communication to measure (run with 2 or more GPUs or hosts)\n";
  } else if (!bandwidth.empty()) {
    s << "  all_reduce bandwidth (" << (bandwidth.front().dtype.empty() ? "?" : bandwidth.front().dtype) << ", "
      << bandwidth.front().iterations << " iterations, slowest rank):\n";
    char buf[128];
    std::snprintf(buf, sizeof buf, "  %10s %12s %12s %12s\n", "size", "time", "algbw", "busbw");
    s << buf;
    for (auto const& b : bandwidth) {
      std::snprintf(buf, sizeof buf, "  %10s %9.1f us %7.2f GB/s %7.2f GB/s\n", size_label(b.bytes).c_str(), b.time_us,
                    b.algbw_gbps, b.busbw_gbps);
      s << buf;
    }
  }
  for (auto const& p : problems) s << "problem: " << p << "\n";
  s << (ok() ? "nccl-check passed\n" : "nccl-check FAILED\n");
  return s.str();
}

}  // namespace clusterkit
