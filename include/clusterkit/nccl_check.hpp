// The multi-node NCCL/Gloo sanity check, in the spirit of vLLM's
// troubleshooting script: torch.distributed with NCCL, an all_reduce whose
// sum is checked, the same over a Gloo group, then all-reduce bandwidth
// over growing sizes (algbw/busbw as nccl-tests reports them).
//
// clusterkit generates the Python program (`nccl_check_script()`), plans
// one torchrun per GPU host (`plan_nccl_check()`: node rank, GPUs per node,
// the rendezvous on the head, NCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME from
// the route each host takes to the head), uploads and runs it on every host
// at once (`async_nccl_check()`), and reads the JSON lines it prints
// (`parse_nccl_check_output()`, `evaluate_nccl_check()`).
//
// Output lines of the program: `@@ck-nccl {json}` with "event" one of
// init, nccl_allreduce, gloo_allreduce, bandwidth (rank 0 only), done,
// error. torchrun may prefix lines ("[rank0]: "); the marker is found
// anywhere in a line.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"

namespace clusterkit {

struct NcclCheckOptions {
  /// The head's address as the other hosts reach it (the rendezvous).
  /// Empty: the first host's address (127.0.0.1 for a local host).
  std::string rdzv_host;
  int rdzv_port = 29500;
  /// Processes (GPUs) per host; 0: the GPUs nvidia-smi lists on each host
  /// (the smallest count, torchrun needs the same everywhere).
  unsigned nproc_per_node = 0;
  /// Message sizes in bytes for the bandwidth sweep (default 1, 4, 16, 64,
  /// 256 MiB).
  std::vector<std::uint64_t> sizes;
  unsigned warmup = 5;
  unsigned iterations = 20;
  /// torch dtype of the bandwidth tensors.
  std::string dtype = "float32";
  /// How torchrun is started: {"torchrun"}, or {"python3", "-m",
  /// "torch.distributed.run"} where torchrun is not on PATH.
  std::vector<std::string> launcher = {"torchrun"};
  /// Put before the launcher, e.g. {"docker", "exec", "node"} to run inside
  /// the serving container (the script's folder must be visible there).
  std::vector<std::string> exec_prefix;
  /// Where the script is uploaded on each host.
  std::string remote_dir = "/tmp";
  /// Environment for every host (NCCL_DEBUG=INFO, ...).
  std::map<std::string, std::string> env;
  /// Environment per host name (CUDA_VISIBLE_DEVICES for lab hosts sharing
  /// one machine's GPUs, ...).
  std::map<std::string, std::map<std::string, std::string>> host_env;
  /// Set NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME on each host to the
  /// interface of its route to the head (not when that is loopback).
  bool socket_ifname_from_route = true;
  /// Limit for the whole run on a host.
  std::chrono::seconds timeout{600};
  /// When a host fails, the others are stopped after this (they would
  /// wait for it at the rendezvous).
  std::chrono::seconds failure_grace{15};
  /// The Python used for facts (GPU count, route).
  std::string python = "python3";
  /// GPUs the inventory declares, per host name (declared_gpus_of). A real
  /// count is the processes for that host when nproc_per_node is 0 (a host
  /// may be given fewer GPUs than it has); it may not exceed what
  /// nvidia-smi lists. Simulated GPUs cannot run NCCL: the check refuses,
  /// naming the host, instead of failing inside torchrun.
  std::map<std::string, DeclaredGpus> declared_gpus;
};

/// One host's launch, as planned.
struct NcclNodeLaunch {
  std::string host;
  unsigned node_rank = 0;
  unsigned nproc = 0;
  /// The full command: exec_prefix + launcher + torchrun arguments + script
  /// + script arguments.
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
};

/// What the planner needs per host.
struct NcclNodeInput {
  std::string host;
  /// GPUs nvidia-smi lists.
  unsigned gpus = 0;
  /// The interface of the route to the head ("" unknown).
  std::string interface;
  /// What the inventory declares, if anything.
  std::optional<DeclaredGpus> declared;
};

/// The Python program (self-contained; reads sizes etc. from its argv).
std::string nccl_check_script();

/// The hosts the check runs on, the head first (node rank 0 and the
/// rendezvous): with an empty `selector`, every GPU host of the inventory
/// (roles head/worker/gpu or declared GPUs, as preflight reads them);
/// otherwise what the selector picks, in the inventory's order. Throws
/// Error(unknown_host_or_group) naming the fix when nothing is selected.
std::vector<InventoryHost> nccl_check_hosts(Inventory const& inventory, std::string const& selector = "");

/// Default bandwidth sizes: 1, 4, 16, 64, 256 MiB.
std::vector<std::uint64_t> default_nccl_sizes();

/// Plan one torchrun per host: node ranks in order (the first host is the
/// head), the same --nproc-per-node everywhere, the c10d rendezvous on
/// `rdzv_host`:rdzv_port with `run_id`, the script at `script_path`.
/// Throws Error(errc::invalid_argument) when there is no host, a host has
/// no GPU, or an option is out of range.
std::vector<NcclNodeLaunch> plan_nccl_check(std::vector<NcclNodeInput> const& nodes, std::string const& rdzv_host,
                                            std::string const& script_path, std::string const& run_id,
                                            NcclCheckOptions const& options);

struct NcclRankReport {
  int rank = -1;
  int world_size = 0;
  int local_rank = -1;
  std::string hostname;
  std::string device;
  std::string torch_version;
  std::string cuda_version;
  std::string nccl_version;
  bool initialized = false;
  /// nullopt: not reported.
  std::optional<bool> nccl_ok;
  double nccl_value = 0;
  std::optional<bool> gloo_ok;
  double gloo_value = 0;
  bool done = false;
  std::string error;
};

struct NcclBandwidth {
  std::uint64_t bytes = 0;
  unsigned iterations = 0;
  double time_us = 0;
  /// bytes / time.
  double algbw_gbps = 0;
  /// algbw x 2(n-1)/n: comparable across world sizes (nccl-tests' busbw).
  double busbw_gbps = 0;
  std::string dtype;
};

/// What one output stream (one host's, or all concatenated) says.
struct NcclCheckOutput {
  std::vector<NcclRankReport> ranks;
  std::vector<NcclBandwidth> bandwidth;
  /// Marker lines that were not valid JSON or not understood.
  std::vector<std::string> malformed;
};

/// Pure, bounded: never throws for odd input (odd lines land in
/// `malformed`); input over 64 MiB is read up to there.
NcclCheckOutput parse_nccl_check_output(std::string_view text);

struct NcclHostRun {
  std::string host;
  NcclNodeLaunch launch;
  std::error_code error;
  int exit_code = -1;
  /// What went wrong on this host, for a person.
  std::string message;
  /// The last lines of the host's output (stdout and stderr).
  std::string output_tail;
};

struct NcclCheckResult {
  int world_size = 0;
  std::vector<NcclRankReport> ranks;
  std::vector<NcclBandwidth> bandwidth;
  std::vector<NcclHostRun> hosts;
  /// What went wrong, with hints (interface, ports), for people.
  std::vector<std::string> problems;

  /// It worked: every host ran and exited 0, every rank of world_size
  /// initialized and finished, both all_reduce sums were right, and there
  /// is no problem to report. Computed from the members above (no flag to
  /// keep in step with them).
  bool ok() const;
  bool nccl_ok() const;
  bool gloo_ok() const;
  nlohmann::json to_json() const;
  std::string summary() const;
};

/// Throws Error(errc::invalid_argument) naming the first option out of
/// range: rdzv_port (1-65535), nproc_per_node (0 = found, up to 1024),
/// sizes (1 byte to 64 GiB each), iterations (1 to 1000000), warmup (up to
/// 1000000), an empty launcher. async_nccl_check reports it as the
/// result's problem before anything connects.
void validate_nccl_check_options(NcclCheckOptions const& options);

/// Pure: the verdict over every host's run and output.
NcclCheckResult evaluate_nccl_check(std::vector<NcclHostRun> runs, std::vector<std::string> const& outputs,
                                    int expected_world_size);

using NcclCheckSignature = void(NcclCheckResult);

namespace detail {
void start_nccl_check(std::vector<Host> hosts, NcclCheckOptions options,
                      asio::any_completion_handler<NcclCheckSignature> handler);
}

/// Facts (GPUs, route to the head), upload of the script, one torchrun per
/// host at once (the first host is the head and node rank 0), then the
/// verdict. A host that fails stops the others after failure_grace. Never
/// completes with an error of its own: problems are in the result (options
/// out of range too, before anything connects).
template <class CompletionToken = asio::deferred_t>
auto async_nccl_check(std::vector<Host> hosts, NcclCheckOptions options = {}, CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, NcclCheckSignature>(
      [](auto handler, std::vector<Host> h, NcclCheckOptions o) {
        detail::start_nccl_check(std::move(h), std::move(o), std::move(handler));
      },
      token, std::move(hosts), std::move(options));
}

/// Blocking wrapper (never from the thread running the hosts' executor).
NcclCheckResult nccl_check(std::vector<Host> hosts, NcclCheckOptions options = {});

}  // namespace clusterkit
