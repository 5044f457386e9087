// Preflight: every check that can fail a multi-node vLLM deployment before
// anything starts, on every host at once, with the fix for each failure.
//
// Three layers:
//  * `evaluate_preflight()` is pure: the inventory's hosts, their facts
//    (facts.hpp) and what the active probes found in, a CheckReport out.
//  * Active probes, for what facts cannot tell: `async_probe_ports()`
//    (listeners on every GPU host with a bounded lifetime; every GPU host
//    connects to the head's Ray and rendezvous ports and to ephemeral ports
//    on every GPU peer, as NCCL does) and `async_probe_nas()` (every host
//    writes a random token file under the NAS path, then every host lists
//    the ones it sees: hosts that see each other's share the NAS).
//  * `async_preflight()` runs facts, then both probes in parallel, then the
//    evaluation; `run_preflight()` is its blocking form.
//
// Checks (rows of the report, one per host; "cluster" for cluster-wide):
//   ssh            facts were gathered (the connection works)
//   role           the head has GPUs; a download host without GPUs is never
//                  the head or serve host (REFERENCES #10)
//   gpus           GPU hosts (roles head/worker/gpu) have GPUs, as many and
//                  as large as the inventory declares; memory already in use
//   driver, cuda   same NVIDIA driver and CUDA version on every GPU host (#5)
//   python, ray, vllm, torch
//                  same versions on every GPU host (#5)
//   docker         Docker installed and its daemon answering (runtime docker)
//   nvidia-runtime Docker can give containers GPUs (#8)
//   image          the serving image is present with the same ID everywhere
//   shm            /dev/shm at least shm_min_gib (#7)
//   disk           free space at the given paths
//   nas            the NAS path is mounted and shows the same content (#9)
//   model-path     the model folder is at the same path on every host (#9)
//   network        the interface and address each host reaches the head by:
//                  the VLLM_HOST_IP / NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME
//                  to start it with (#1, #3); MTU equal across GPU hosts
//   ray-port       each GPU host connects to the head's Ray port
//   nccl-ports     each GPU host connects to the head's rendezvous port and
//                  to ephemeral ports on every GPU peer (#3, #6)
//   clock          clock offset against the head under a threshold
//   model-fits     (cluster) the planner finds a layout for the model on the
//                  GPUs found
//
// Statuses: pass, warn (works, but look), fail (will break: the fix says
// what to do), simulated (a GPU check answered from the inventory's
// simulated GPUs: nothing real was checked), skip (does not apply).
//
// Container runtime: `vars: {runtime: docker}` (the default, as in vLLM's
// run_cluster.sh) or `vars: {runtime: none}` (vLLM installed on the host).
// With `none` the Docker checks are skipped and the host's Python packages
// are what must match; with `docker` the image is what runs, so host-level
// Python package differences are only warnings, and /dev/shm below the
// minimum is a warning (containers get their own /dev/shm from
// --shm-size).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/facts.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/nas.hpp"
#include "clusterkit/planner.hpp"

namespace clusterkit {

enum class CheckStatus { pass, warn, fail, simulated, skip };
std::string_view to_string(CheckStatus status) noexcept;

struct CheckResult {
  /// A host name, or "cluster" for a cluster-wide check.
  std::string host;
  /// "shm", "ray-port", ... (see the file comment).
  std::string check;
  CheckStatus status = CheckStatus::skip;
  /// What was found, as a sentence.
  std::string message;
  /// What to do about it (empty on pass/skip).
  std::string fix;
};

struct CheckReport {
  /// Hosts in inventory order (then "cluster" when a cluster row exists).
  std::vector<std::string> hosts;
  /// Checks in the order they are listed.
  std::vector<std::string> checks;
  std::vector<CheckResult> results;
  /// Per host: VLLM_HOST_IP, NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME to
  /// start the node with (from the route to the head).
  std::map<std::string, std::map<std::string, std::string>> recommended_env;
  /// The host acting as head (declared, or chosen: the first GPU host).
  std::string head;

  /// No check failed.
  bool ok() const noexcept;
  std::size_t count(CheckStatus status) const noexcept;
  CheckResult const* find(std::string_view host, std::string_view check) const noexcept;
  nlohmann::json to_json() const;
  /// For people: a matrix (checks down, hosts across), then every failure
  /// and warning with its fix, then the environment to start nodes with.
  std::string table() const;
};

// ---------------------------------------------------------------------------
// Roles

/// Who does what, from the inventory.
struct ClusterRoles {
  /// The head: the host with role `head`; else the first GPU host.
  std::string head;
  bool head_declared = false;
  /// Hosts with role head, worker or gpu, or declared GPUs (count > 0).
  std::vector<std::string> gpu_hosts;
  std::vector<std::string> download_hosts;
  /// Hosts whose only role is `nas`: storage, not checked over ssh.
  std::vector<std::string> storage_hosts;
};
ClusterRoles cluster_roles(std::vector<InventoryHost> const& hosts);

/// The container runtime of a host: its `vars.runtime`, else `fallback`.
std::string container_runtime_of(InventoryHost const& host, std::string const& fallback = "docker");

/// The address the other hosts reach the head by (its inventory address;
/// 127.0.0.1 for a local head without one); "" without a head.
std::string head_address_of(std::vector<InventoryHost> const& hosts);

// ---------------------------------------------------------------------------
// Probes

struct PortProbeOptions {
  int ray_port = 6379;
  /// torch.distributed / torchrun rendezvous (MASTER_PORT).
  int rdzv_port = 29500;
  /// Ephemeral ports opened on every GPU host (what NCCL and Gloo use).
  unsigned ephemeral_ports = 2;
  /// The address others reach each host by (host name -> address); a host
  /// missing here is reached by its inventory address.
  std::map<std::string, std::string> addresses;
  /// Connect timeout for each probe.
  std::chrono::milliseconds connect_timeout{3000};
  /// Listeners stop by themselves after this, whatever happens.
  std::chrono::seconds listener_lifetime{60};
  std::string python = "python3";
};

/// One listener host's view.
struct PortListener {
  std::string host;
  bool started = false;
  /// Why it did not start (python missing, ...).
  std::string error;
  /// Ports it listened on, with their purpose ("ray", "rdzv", "ephemeral").
  std::vector<std::pair<int, std::string>> ports;
  /// Ports it could not bind (already in use), with the reason.
  std::vector<std::pair<int, std::string>> busy;
};

/// One connection attempt.
struct PortProbe {
  std::string from;
  std::string to;
  std::string address;
  int port = 0;
  /// "ray", "rdzv" or "ephemeral".
  std::string purpose;
  /// Connected, and our listener answered.
  bool reached = false;
  bool ok() const { return reached; }
  /// The local address the connection came from (the prober's view).
  std::string source_address;
  std::string error;
  double milliseconds = 0;
};

struct PortProbeReport {
  /// The first host given: it gets the Ray and rendezvous listeners.
  std::string head;
  std::vector<PortListener> listeners;
  std::vector<PortProbe> probes;
  nlohmann::json to_json() const;
};


struct PreflightProbes {
  std::optional<PortProbeReport> ports;
  std::optional<NasProbeReport> nas;
  /// Why a probe did not run (its checks say "not probed: <this>").
  std::string ports_skipped;
  std::string nas_skipped;
};

// Pieces of the probes, pure (tested without hosts).

/// The listener: a Python program printing `@@ck-listen PORT PURPOSE`,
/// `@@ck-busy PORT REASON`, then `@@ck-ready`, accepting (and reporting
/// `@@ck-accept PORT PEER`) until `lifetime` ends.
std::string port_listener_script(std::vector<std::pair<int, std::string>> const& ports, unsigned ephemeral,
                                 std::chrono::seconds lifetime, std::string const& python = "python3");
PortListener parse_port_listener_output(std::string_view host, std::string_view output);
/// A target of a prober: (to host, address, port, purpose).
struct PortTarget {
  std::string to;
  std::string address;
  int port = 0;
  std::string purpose;
};
/// The prober: one `@@ck-probe ...` line per target; Python when present,
/// else bash's /dev/tcp.
std::string port_prober_script(std::vector<PortTarget> const& targets, std::chrono::milliseconds timeout,
                               std::string const& python = "python3");
std::vector<PortProbe> parse_port_prober_output(std::string_view from, std::vector<PortTarget> const& targets,
                                                std::string_view output);

using PortProbeSignature = void(PortProbeReport);

namespace detail {
void start_probe_ports(std::vector<Host> hosts, PortProbeOptions options,
                       asio::any_completion_handler<PortProbeSignature> handler);
}  // namespace detail

/// Listeners on every host (the first is the head: Ray + rendezvous +
/// ephemeral ports; the others ephemeral ports), then every host connects to
/// the head's ports and to every other host's ephemeral ports; then the
/// listeners are stopped. Never completes with an error of its own.
template <class CompletionToken = asio::deferred_t>
auto async_probe_ports(std::vector<Host> hosts, PortProbeOptions options = {}, CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, PortProbeSignature>(
      [](auto handler, std::vector<Host> h, PortProbeOptions o) {
        detail::start_probe_ports(std::move(h), std::move(o), std::move(handler));
      },
      token, std::move(hosts), std::move(options));
}


// ---------------------------------------------------------------------------
// Evaluation and the whole run

struct PreflightOptions {
  double shm_min_gib = 10;
  /// Paths whose free space to check on every host (the NAS path is added).
  std::vector<std::string> disk_paths;
  double disk_min_free_gib = 10;
  /// The NAS mount point; empty: the hosts' `vars.mount_point`, else none.
  std::string nas_path;
  /// The model folder every host must see at the same path (on the NAS).
  std::string model_path;
  /// For model-fits: the model (model.hpp) and the planner's options.
  std::optional<ModelFacts> model;
  PlanOptions plan;
  int ray_port = 6379;
  int rdzv_port = 29500;
  unsigned ephemeral_ports = 2;
  bool probe_ports = true;
  bool probe_nas = true;
  /// Clock difference to the head above which the clock check fails.
  double max_clock_offset_seconds = 5;
  /// Docker images that must be present with the same ID on GPU hosts.
  std::vector<std::string> docker_images;
  /// Runtime for hosts without `vars.runtime`: "docker" or "none".
  std::string container_runtime = "docker";
  std::string python = "python3";
  std::chrono::milliseconds facts_timeout{90000};
};

/// Throws Error(errc::invalid_argument) naming the first option out of
/// range: shm_min_gib and disk_min_free_gib (0 to 1048576), ray_port and
/// rdzv_port (1-65535), ephemeral_ports (up to 64), max_clock_offset_seconds
/// (above 0, up to 86400), facts_timeout (1 s to a day), the planner's
/// gpu_memory_utilization (0, 1] and max_model_len (1 up). async_preflight
/// calls it before anything connects.
void validate_preflight_options(PreflightOptions const& options);

/// The pure evaluation. `facts` are matched to `hosts` by name; a host
/// without facts counts as unreachable.
CheckReport evaluate_preflight(std::vector<InventoryHost> const& hosts, std::vector<HostFactsOutcome> const& facts,
                               PreflightProbes const& probes, PreflightOptions const& options = {});

/// The GPUs an inventory declares (`gpus: {count, model, memory_gib}`), one
/// node per host that declares some, in the inventory's order; each GPU's
/// usable memory from the one table the planner and preflight share
/// (known_gpu_memory_bytes), else the declared size. What `plan MODEL -i
/// INVENTORY` plans on without --gpus.
GpuInventory declared_gpu_inventory(std::vector<InventoryHost> const& hosts);
/// One host's node: nullopt when it declares no GPUs.
std::optional<GpuNode> declared_gpu_node(InventoryHost const& host);

/// The NAS mount point to check: options.nas_path, else the first
/// `vars.mount_point` of a compute host, else "".
std::string nas_path_of(std::vector<InventoryHost> const& hosts, PreflightOptions const& options);

/// The FactsOptions preflight gathers with (disk paths, head as peer,
/// images, declared GPUs).
FactsOptions preflight_facts_options(std::vector<InventoryHost> const& hosts, PreflightOptions const& options);

/// Everything preflight found, for callers that want more than the report.
struct PreflightRun {
  CheckReport report;
  std::vector<HostFactsOutcome> facts;
  PreflightProbes probes;
  nlohmann::json to_json() const;
};

using PreflightSignature = void(PreflightRun);

namespace detail {
void start_preflight(asio::any_io_executor executor, std::vector<InventoryHost> hosts, PreflightOptions options,
                     asio::any_completion_handler<PreflightSignature> handler);
}

/// Facts on every host (storage-only hosts are left out), then the port and
/// NAS probes in parallel, then the evaluation. Options out of range throw
/// (validate_preflight_options) before anything connects. Hosts are reached through
/// `executor` (their shared connections are reused).
template <class CompletionToken = asio::deferred_t>
auto async_preflight(asio::any_io_executor executor, std::vector<InventoryHost> hosts, PreflightOptions options = {},
                     CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, PreflightSignature>(
      [](auto handler, asio::any_io_executor ex, std::vector<InventoryHost> h, PreflightOptions o) {
        detail::start_preflight(std::move(ex), std::move(h), std::move(o), std::move(handler));
      },
      token, std::move(executor), std::move(hosts), std::move(options));
}

class Runtime;
/// Blocking wrapper (never from the runtime's own thread).
PreflightRun run_preflight(Runtime& runtime, std::vector<InventoryHost> hosts, PreflightOptions options = {});

}  // namespace clusterkit
