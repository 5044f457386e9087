// RayCluster: the seed's Ray cluster (steps 2-3), started for real on the
// hosts: a head on one GPU server and a worker on every other, in Docker (one
// container per host, as vLLM's run_cluster.sh does) or bare (Ray from a
// venv on the host), then a wait until Ray itself reports every node and
// every GPU.
//
// Two layers, as everywhere in clusterkit:
//  * Pure code, tested without hosts: the `docker run` / `ray start` command
//    lines, each node's environment (VLLM_HOST_IP, RAY_NODE_IP_ADDRESS,
//    NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, set when the node starts: Ray
//    workers never see variables exported later, vllm#6803), a fingerprint of
//    what defines each node (so that `up` twice converges), the parsers of
//    what a host and Ray report (a node probe, `ray status`, the dashboard's
//    /api/v0/nodes), the decision per host (keep, start, replace, refuse),
//    the evaluation of the cluster against what was expected, and the
//    sentences for failures (a worker that never joins, a port taken, a
//    version mismatch, Docker without the NVIDIA toolkit).
//  * Operations on hosts: `async_up` (probe every host, refuse what cannot
//    work, head first, then every worker at once, then wait for Ray to
//    report the expected nodes and GPUs), `async_status`, `async_down` and
//    `async_logs`. Every node is a fixed, predictable thing: the container
//    `ck-ray-NAME` (docker), or the processes under the temp dir
//    /tmp/ck-ray-NAME (bare), so a re-run finds and reuses or replaces its
//    own and `down` stops exactly those, by pid, never by name.
//
//   clusterkit::RayCluster ray(spec, hosts);        // hosts[0] or the `head` one is the head
//   auto up = co_await ray.async_up({}, asio::use_awaitable);
//   std::cout << up.status.summary();               // 2 nodes alive, 0.0/4.0 GPU ...
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"

namespace clusterkit {

enum class RayRuntimeKind {
  /// One container per host (`docker run --network host ...`), Ray started
  /// inside it: the seed's way, vLLM's run_cluster.sh.
  docker,
  /// Ray from a venv (or any installation) on the host itself, started
  /// detached, its temp dir and logs in known places.
  bare,
};
std::string_view to_string(RayRuntimeKind kind) noexcept;
std::optional<RayRuntimeKind> ray_runtime_from_string(std::string_view text) noexcept;

/// A `-v HOST:CONTAINER[:ro]` of the docker runtime.
struct VolumeMount {
  std::string host_path;
  std::string container_path;
  bool read_only = false;
};

struct RayClusterSpec {
  /// Names the cluster's things on every host: container `ck-ray-NAME`,
  /// temp dir `/tmp/ck-ray-NAME`. 1-32 of [a-z0-9-].
  std::string name = "ck";
  RayRuntimeKind runtime = RayRuntimeKind::docker;

  // --- docker ---
  /// The serving image (the seed's is vllm/vllm-openai). It must hold Ray
  /// (and vLLM, for serving) or get them through `volumes` + `ray_command`.
  std::string image = "vllm/vllm-openai";
  /// `--shm-size`: vLLM's shared-memory traffic (NCCL, the CPU backend's
  /// tensor passing) needs far more than Docker's 64 MB default (#7).
  std::string shm_size = "10.24g";
  /// `--ipc host` instead of a private /dev/shm: what vLLM's docs offer as
  /// the alternative to --shm-size (the lab needs it: vLLM's CPU build
  /// passes tensors between pipeline stages through /dev/shm files).
  bool ipc_host = false;
  /// `--gpus all`: "auto" on hosts whose facts or inventory show NVIDIA
  /// GPUs, "all" on every host, "none" never.
  std::string docker_gpus = "auto";
  /// The model folder at the same path on every host (seed: -v
  /// /mnt/Qwen:/models), the hub cache (-v HF_HOME:/root/.cache/huggingface),
  /// anything else the image needs.
  std::vector<VolumeMount> volumes;
  /// Extra `docker run` arguments, as given.
  std::vector<std::string> docker_args;

  // --- both ---
  /// The `ray` program: "ray" from PATH (docker: the image's), or a path
  /// such as /opt/venv/bin/ray.
  std::string ray_command = "ray";
  /// The head's GCS port and the dashboard's (bound to 127.0.0.1: Ray's
  /// dashboard runs jobs for anyone who reaches it).
  int port = 6379;
  int dashboard_port = 8265;
  /// Set in every node's environment when the node starts (after the
  /// node's own VLLM_HOST_IP etc., which it may override).
  std::map<std::string, std::string> env;
  /// `--num-cpus` for every node (unset: Ray counts them).
  std::optional<double> num_cpus;
  /// `--object-store-memory` in bytes (unset: Ray's 30% of memory).
  std::optional<std::uint64_t> object_store_memory;
  /// Extra `ray start` arguments, as given.
  std::vector<std::string> ray_start_args;
  /// How long `up` waits for every node and GPU to show up in Ray.
  std::chrono::seconds join_timeout{180};
};

/// One host of the cluster as given to RayCluster.
struct RayHost {
  Host host;
  bool head = false;
  /// `--num-gpus`: Ray's GPU resource on this node. Unset: what the probe
  /// finds (nvidia-smi -L). In the lab GPUs are *logical*: Ray schedules
  /// on them, nothing more (SIMULATED, and said so in every report).
  std::optional<unsigned> gpus;
  /// The GPUs are simulated (the inventory says so): reports label them.
  bool gpus_simulated = false;
};

/// The cluster's hosts from an inventory: the selector's hosts, the head
/// being `head` if given, else the host with role `head`, else the first;
/// GPUs from each host's `gpus:` entry. Hosts whose only role is `nas` or
/// `download` are left out (the download box must never be the head:
/// REFERENCES #10). Throws Error(errc::invalid_argument) when no host is
/// left or `head` is not among them.
std::vector<RayHost> ray_hosts_from_inventory(std::vector<InventoryHost> const& hosts, std::vector<Host> handles,
                                              std::string const& head = {});

/// The cluster an inventory's `vars` describe (the defaults' vars merged
/// with the head's), over `base`: `runtime` (docker or bare), `runtime_image`,
/// `serve_venv` (a venv with Ray and vLLM at the same path on every host:
/// `ray_command` becomes VENV/bin/ray, and the docker runtime mounts it
/// read-only at the same path), `shm_size`, `ipc_host`, `ray_port`,
/// `ray_env` (a map set in every node's environment). Throws
/// Error(errc::inventory_invalid) naming the field.
RayClusterSpec ray_spec_from_vars(nlohmann::json const& vars, RayClusterSpec base = {});

// ---------------------------------------------------------------------------
// Pure pieces: commands

/// Everything that defines one node, as planned.
struct RayNodePlan {
  std::string host;
  bool head = false;
  /// The address other nodes reach this one by: VLLM_HOST_IP,
  /// RAY_NODE_IP_ADDRESS and `--node-ip-address`.
  std::string node_ip;
  /// The interface that address is on: NCCL_SOCKET_IFNAME and
  /// GLOO_SOCKET_IFNAME.
  std::string interface;
  std::optional<unsigned> gpus;
  bool gpus_simulated = false;
  /// docker: `--gpus all` is passed.
  bool docker_gpus = false;
  /// The node's environment, as set when it starts.
  std::map<std::string, std::string> env;
  /// `ray start ...` (docker: with --block, the container's main process).
  std::vector<std::string> ray_start_argv;
  /// docker: the whole `docker run` argv; bare: empty.
  std::vector<std::string> docker_run_argv;
  /// bare: the script that starts Ray detached; docker: empty.
  std::string bare_start_script;
  /// A hash of all of the above: equal fingerprints mean "the same node".
  std::string fingerprint;
};

/// The container a cluster named `name` uses on every host.
std::string ray_container_name(std::string_view cluster_name);
/// The temp dir Ray uses on every host (bare), or inside the container.
std::string ray_temp_dir(RayClusterSpec const& spec);
/// Throws Error(errc::invalid_argument) naming the field when the spec
/// cannot work (name, ports, an env name, a volume path, the shm size).
void validate(RayClusterSpec const& spec);
/// The node as it will be started. `head_ip` is the head's node IP.
RayNodePlan plan_ray_node(RayClusterSpec const& spec, std::string const& host, bool head, std::string const& node_ip,
                          std::string const& interface, std::optional<unsigned> gpus, bool docker_gpus,
                          std::string const& head_ip, bool gpus_simulated = false);
/// A command run "in the cluster's runtime" on a host: inside its container
/// (`docker exec [-i] ck-ray-NAME sh -c ...`) or on the host with the venv
/// of `ray_command` first on PATH (bare). Used by VllmServe.
Command ray_runtime_command(RayClusterSpec const& spec, std::string const& script, bool with_stdin = false);

// ---------------------------------------------------------------------------
// Pure pieces: what hosts and Ray report

/// What one host said before anything starts (one command per host).
struct RayNodeProbe {
  std::string host;
  /// Address/interface by which the host reaches the head (route lookup).
  std::string node_ip;
  std::string interface;
  /// `nvidia-smi -L` lines (0 when absent).
  unsigned gpus_found = 0;
  bool nvidia_smi = false;
  // docker
  bool docker = false;
  std::string docker_error;
  bool docker_nvidia_runtime = false;
  bool image_present = false;
  /// The cluster's container on this host: "" (none), "running", "exited", ...
  std::string container_state;
  std::string container_fingerprint;
  // bare
  bool ray_found = false;
  std::string ray_error;
  /// Processes of this cluster (bare): pids under its temp dir.
  std::vector<int> cluster_pids;
  std::string bare_fingerprint;
  // both
  std::string python_version;
  std::string ray_version;
  /// Something listens on the head's GCS port (head only), and what.
  bool port_in_use = false;
  std::string port_owner;
};

/// The probe script for a host; `head_address` is the head's inventory
/// address (resolved on each host).
std::string ray_probe_script(RayClusterSpec const& spec, std::string const& head_address, bool is_head);
/// Only the route part of the probe (node IP and interface towards the
/// head), for callers that need a node's identity and nothing else; its
/// output parses with parse_ray_probe.
std::string ray_route_script(std::string const& head_address);
/// Throws Error(errc::parse_error) when the output is not the probe's.
RayNodeProbe parse_ray_probe(std::string_view host, std::string_view output);

/// Ray's resource figures of one kind ("GPU", "CPU", "memory", ...).
struct RayResource {
  double used = 0;
  double total = 0;
};

/// One node as Ray reports it.
struct RayNodeState {
  std::string node_id;
  std::string node_ip;
  bool is_head = false;
  /// "ALIVE" or "DEAD".
  std::string state;
  std::string state_message;
  std::map<std::string, double> resources_total;
  /// What is in use of each, from the dashboard's per-node view ("CPU",
  /// "GPU", "memory" and "object_store_memory" in bytes); empty when the
  /// dashboard did not say.
  std::map<std::string, RayResource> usage;
  bool alive() const { return state == "ALIVE"; }
};

/// `ray status` (the autoscaler's text, also /api/cluster_status?format=1).
struct RayStatusText {
  /// Active node ids (without the "node_" prefix), pending and failed lines.
  std::vector<std::string> active;
  std::vector<std::string> pending;
  std::vector<std::string> failed;
  /// "GPU" -> used/total, "CPU", "memory" (bytes), "object_store_memory".
  std::map<std::string, RayResource> usage;
  /// "(4.0 used of 4.0 reserved in placement groups)" and the like.
  std::map<std::string, std::string> usage_notes;
  /// Lines under "Pending Demands:" other than "(no resource demands)".
  std::vector<std::string> pending_demands;
};
/// Throws Error(errc::parse_error) when the text is not `ray status`'s.
RayStatusText parse_ray_status(std::string_view text);
/// The dashboard's /api/v0/nodes answer (with or without detail).
/// Throws Error(errc::parse_error).
std::vector<RayNodeState> parse_ray_nodes_json(std::string_view text);
/// "1.2Gi"-style amounts of `ray status` ("40.13GiB", "512.00MiB", "0B")
/// in bytes; nullopt when not an amount.
std::optional<double> parse_ray_amount(std::string_view text);

/// Stops this cluster's node on a host and removes what it left: the
/// container (docker: `docker stop` with a grace period, then `rm -f`), or
/// the processes whose command line names the cluster's temp dir (bare:
/// SIGTERM, SIGKILL after 5 s, by pid) and the temp dir. Prints
/// `@@ck-ray-removed WHAT`. Never touches another cluster's Ray.
std::string ray_stop_script(RayClusterSpec const& spec);
/// Prints `@@ck-ray-state STATE`: the container's state, "absent", or
/// (bare) "running" / "absent" from the cluster's processes.
std::string ray_node_state_script(RayClusterSpec const& spec);
/// The node's output and Ray's own logs, last `tail` lines of each.
std::string ray_logs_script(RayClusterSpec const& spec, unsigned tail);
/// Starts the planned node and returns when Ray says it started or failed
/// (`@@ck-ray-started` / `@@ck-ray-failed ...` then the node's last
/// output); `replace` stops what is there first. `versions` ("PYTHON RAY",
/// as the probe found them) is kept with the node (a container label, a
/// file in the temp dir) for `status`, when no venv's files say them.
std::string ray_start_script(RayClusterSpec const& spec, RayNodePlan const& plan, bool replace,
                             std::string const& versions = {});

/// The status script run on the head (in the runtime): prints the
/// dashboard's node list, and `ray status` when asked or when the dashboard
/// does not answer (`ray status` costs a Python start and a GCS round trip,
/// and its resource usage lags the node list by a few seconds).
std::string ray_status_script(RayClusterSpec const& spec, bool with_ray_status = true);

/// What the head's status script returned, parsed.
struct RayReport {
  std::vector<RayNodeState> nodes;
  std::optional<RayStatusText> status;
  std::string ray_version;
  /// Where the figures came from: "dashboard" or "ray status".
  std::string source;
  /// Set when Ray could not be asked (its own words).
  std::string error;
};
RayReport parse_ray_report(std::string_view output);
/// The dashboard's per-node usage (`/nodes?view=summary`, its
/// data.nodeLogicalResources: node id -> `ray status` usage lines), by node
/// id. Throws Error(errc::parse_error) when it is not that.
std::map<std::string, std::map<std::string, RayResource>> parse_ray_node_usage(std::string_view json_text);

// ---------------------------------------------------------------------------
// Pure pieces: deciding and judging

enum class RayNodeAction {
  /// The same node is up: left alone.
  keep,
  start,
  /// Something of ours is there but differs (or is dead): removed, then
  /// started, saying so.
  replace,
  /// Cannot work as asked (no Docker, image missing, port taken, version
  /// mismatch); nothing is started anywhere.
  refuse,
};
std::string_view to_string(RayNodeAction action) noexcept;

struct RayNodeDecision {
  std::string host;
  RayNodeAction action = RayNodeAction::refuse;
  /// keep/replace: what is there and why; refuse: what is wrong and the fix.
  std::string reason;
  std::error_code refusal;
};

/// Decide per host from the plans and the probes (same order; the head
/// first). Version checks: Python and Ray equal on every node (bare: the
/// venv; docker: the image), else refuse naming both versions (#5).
std::vector<RayNodeDecision> decide_ray_nodes(RayClusterSpec const& spec, std::vector<RayNodePlan> const& plans,
                                              std::vector<RayNodeProbe> const& probes);

/// One host's part of the cluster's status.
struct RayHostStatus {
  std::string host;
  bool head = false;
  std::string node_ip;
  /// Ray's view of the node at node_ip: "ALIVE", "DEAD", or "MISSING".
  std::string ray_state = "MISSING";
  /// The host's own view: its container's state, or whether its Ray
  /// processes run ("running", "exited", "absent", "unreachable").
  std::string runtime_state;
  std::map<std::string, double> resources_total;
  /// Used and total per resource on this node ("GPU", "CPU", "memory" and
  /// "object_store_memory" in bytes), as Ray accounts them; empty when Ray
  /// did not say (node not alive, or no dashboard).
  std::map<std::string, RayResource> usage;
  /// The node's Ray and Python, from its venv's files (bare, or a venv
  /// mounted into the container); "" when only the image's own Python
  /// could say (the cluster's ray_version is the head's).
  std::string ray_version;
  std::string python_version;
  std::string problem;
};

struct RayClusterStatus {
  std::string name;
  RayRuntimeKind runtime = RayRuntimeKind::docker;
  std::string ray_version;
  std::vector<RayHostStatus> hosts;
  /// Nodes Ray knows that are none of ours (another cluster joined ours?).
  std::vector<RayNodeState> other_nodes;
  std::map<std::string, RayResource> usage;
  unsigned alive_nodes = 0;
  unsigned expected_nodes = 0;
  double gpus_total = 0;
  double expected_gpus = 0;
  bool gpus_simulated = false;
  /// Every expected node alive with its GPUs, and nothing else wrong.
  bool healthy = false;
  /// Some but not all: a node dead or missing.
  bool degraded = false;
  /// Sentences: what is wrong, and the fix.
  std::vector<std::string> problems;
  std::string source;

  nlohmann::json to_json() const;
  /// For people: one line per host, then the resources.
  std::string summary() const;
};

/// Judge Ray's report against the plans (expected node IPs and GPUs) and
/// each host's own view (runtime_states[i], "" when unknown).
RayClusterStatus evaluate_ray_cluster(RayClusterSpec const& spec, std::vector<RayNodePlan> const& plans,
                                      RayReport const& report, std::vector<std::string> const& runtime_states);

/// Why a node did not start or join, in one sentence with the fix, from
/// what it printed (ray start's output, the container's log, Docker's
/// error): port taken, GCS unreachable, version mismatch, Docker without
/// the NVIDIA container toolkit, image missing, ray not found.
std::string explain_ray_failure(std::string_view host, std::string_view output, RayClusterSpec const& spec);

// ---------------------------------------------------------------------------
// Operations on hosts

/// Where `up` is, for a progress line.
struct RayProgress {
  /// "probe", "start-head", "start-workers", "wait", "ready".
  std::string phase;
  unsigned alive_nodes = 0;
  unsigned expected_nodes = 0;
  double gpus = 0;
  double expected_gpus = 0;
  /// "waiting for h2 (10.88.0.12)".
  std::string message;
};
using RayProgressCallback = std::function<void(RayProgress const&)>;

struct RayNodeOutcome {
  std::string host;
  RayNodeAction action = RayNodeAction::refuse;
  /// What was done, or what is wrong and the fix.
  std::string message;
  std::error_code error;
  /// Milliseconds from the start of `up`: the probe answered, the node was
  /// started, Ray reported it alive.
  double probed_ms = 0;
  double started_ms = 0;
  double joined_ms = 0;
};

struct RayUpResult {
  std::vector<RayNodeOutcome> nodes;
  RayClusterStatus status;
  std::vector<RayNodePlan> plans;
  /// Whole `up`, and the part spent in `ray start` on the slowest path.
  double total_ms = 0;
  /// A sentence: what happened, or why it failed and the fix.
  std::string message;
  nlohmann::json to_json() const;
};

struct RayDownOutcome {
  std::string host;
  /// What was removed ("container ck-ray-ck", "5 Ray processes", "nothing").
  std::string removed;
  std::string message;
  std::error_code error;
};

struct RayLogsOptions {
  /// Last lines per host (0: all).
  unsigned tail = 200;
};

struct RayHostLogs {
  std::string host;
  /// The node's output (`docker logs`, or ray start's log) and Ray's own
  /// raylet/GCS logs, each under a header line.
  std::string text;
  std::error_code error;
  std::string message;
};

using RayUpSignature = void(std::error_code, RayUpResult);
using RayStatusSignature = void(std::error_code, RayClusterStatus);
using RayDownSignature = void(std::error_code, std::vector<RayDownOutcome>);
using RayLogsSignature = void(std::error_code, std::vector<RayHostLogs>);

class RayCluster;
namespace detail {
void start_ray_up(RayCluster cluster, RayProgressCallback progress, asio::any_completion_handler<RayUpSignature> h);
void start_ray_status(RayCluster cluster, asio::any_completion_handler<RayStatusSignature> h);
void start_ray_down(RayCluster cluster, asio::any_completion_handler<RayDownSignature> h);
void start_ray_logs(RayCluster cluster, RayLogsOptions options, asio::any_completion_handler<RayLogsSignature> h);
}  // namespace detail

class RayCluster {
public:
  /// Throws Error(errc::invalid_argument) when the spec cannot work, no host
  /// is given, or more than one (or none, with several hosts) is the head.
  RayCluster(RayClusterSpec spec, std::vector<RayHost> hosts);

  RayClusterSpec const& spec() const { return spec_; }
  /// The head first, then the workers in the order given.
  std::vector<RayHost> const& hosts() const { return hosts_; }
  RayHost const& head() const { return hosts_.front(); }

  /// Bring the cluster up (see the file comment). Completes with an error
  /// when a node was refused, did not start or did not join in time; the
  /// result says which and why. Idempotent: a healthy cluster of the same
  /// shape is left alone. Cancelling stops the commands in flight; what
  /// started stays (call async_down).
  template <class CompletionToken = asio::deferred_t>
  auto async_up(RayProgressCallback progress = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, RayUpSignature>(
        [c = *this](auto handler, RayProgressCallback p) { detail::start_ray_up(c, std::move(p), std::move(handler)); },
        token, std::move(progress));
  }

  /// Ray's view and each host's: nodes alive/dead/missing, resources,
  /// versions. Completes with an error only when the head cannot be asked.
  template <class CompletionToken = asio::deferred_t>
  auto async_status(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, RayStatusSignature>(
        [c = *this](auto handler) { detail::start_ray_status(c, std::move(handler)); }, token);
  }

  /// Stop Ray and remove the containers (or the processes and temp dir) on
  /// every host, workers first. Idempotent; works after a half-failed up.
  template <class CompletionToken = asio::deferred_t>
  auto async_down(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, RayDownSignature>(
        [c = *this](auto handler) { detail::start_ray_down(c, std::move(handler)); }, token);
  }

  template <class CompletionToken = asio::deferred_t>
  auto async_logs(RayLogsOptions options = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, RayLogsSignature>(
        [c = *this](auto handler, RayLogsOptions o) { detail::start_ray_logs(c, o, std::move(handler)); }, token,
        options);
  }

  /// `script` run in the cluster's runtime on `host` (see ray_runtime_command).
  Command runtime_command(std::string const& script, bool with_stdin = false) const {
    return ray_runtime_command(spec_, script, with_stdin);
  }

private:
  RayClusterSpec spec_;
  std::vector<RayHost> hosts_;
};

/// Blocking forms: throw Error with the result's message when the
/// operation fails (see README "Blocking calls").
RayUpResult ray_up(RayCluster const& cluster, RayProgressCallback progress = {});
RayClusterStatus ray_status(RayCluster const& cluster);
std::vector<RayDownOutcome> ray_down(RayCluster const& cluster);
std::vector<RayHostLogs> ray_logs(RayCluster const& cluster, RayLogsOptions options = {});

}  // namespace clusterkit
