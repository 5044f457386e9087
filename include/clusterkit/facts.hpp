// Host facts: what a machine is (OS, CPUs, memory, disks, /dev/shm, GPUs and
// their interconnect, driver and CUDA, Docker and the NVIDIA runtime, network
// interfaces and the route to a peer, clock, Python packages), gathered with
// ONE remote command per host over the host's shared connection.
//
// Two layers, as everywhere in clusterkit:
//  * Pure parsers: command output in, typed struct out. Each throws
//    Error(errc::parse_error) naming what was malformed, never crashes, and
//    refuses input larger than it would ever see from the real command
//    (so memory stays bounded whatever a broken host prints).
//  * Gathering: `facts_script()` is one POSIX sh script that prints
//    delimited sections (`@@ck-section NAME@@`, the command's stdout, then
//    `@@ck-status N@@` and the end of its stderr as `@@ck-stderr@@ ...`
//    lines, or `@@ck-absent PROGRAM@@` when the program is not installed).
//    Every command is optional and time-limited; a missing nvidia-smi,
//    docker or python only empties its section. `parse_facts_output()`
//    turns the whole output into HostFacts, recording every section that
//    was absent or unreadable as a FactIssue instead of failing.
//
//   clusterkit::Runtime rt;
//   std::vector<clusterkit::Host> hosts;
//   for (auto const& h : inventory.select("all")) hosts.push_back(rt.host(h.spec));
//   auto facts = clusterkit::gather_facts(hosts, {.disk_paths = {"/mnt"}, .peers = {"10.0.0.11"}});
//   facts[0].facts.gpus[0].name;   // "NVIDIA H100 80GB HBM3"
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/format.hpp"
#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"

namespace clusterkit {

// ---------------------------------------------------------------------------
// The facts
// ---------------------------------------------------------------------------

/// /etc/os-release.
struct OsRelease {
  std::string id;           // "debian", "ubuntu"
  std::string version_id;   // "12", "22.04"
  std::string pretty_name;  // "Debian GNU/Linux 12 (bookworm)"
  /// Every KEY=value line, unquoted.
  std::map<std::string, std::string> fields;
};

/// `uname -srm`.
struct KernelInfo {
  std::string system;   // "Linux"
  std::string release;  // "6.8.0-45-generic"
  std::string machine;  // "x86_64"
};

/// /proc/meminfo, in bytes.
struct MemoryInfo {
  std::uint64_t total_bytes = 0;
  std::uint64_t available_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::uint64_t swap_total_bytes = 0;
  std::uint64_t swap_free_bytes = 0;
};

/// One line of `df -P -B1`.
struct DiskUsage {
  /// The path asked about (empty when parsed from bare df output).
  std::string path;
  std::string filesystem;
  std::string mount_point;
  std::uint64_t total_bytes = 0;
  std::uint64_t used_bytes = 0;
  std::uint64_t available_bytes = 0;
};

/// One GPU, from `nvidia-smi --query-gpu=...`, or declared in the inventory
/// as simulated.
struct GpuInfo {
  unsigned index = 0;
  std::string uuid;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  std::uint64_t memory_total_bytes = 0;
  std::uint64_t memory_used_bytes = 0;
  std::string driver_version;      // "580.159.04"
  std::string compute_capability;  // "9.0"
  std::string pci_bus_id;          // "00000000:00:06.0"
  /// Declared in the inventory (`gpus: {simulated: true}`), not found on
  /// the host. Shown as "simulated" wherever it appears.
  bool simulated = false;
};

/// How two devices of `nvidia-smi topo -m` are connected.
enum class GpuLink {
  self,     // X
  nvlink,   // NV# (a bonded set of # NVLinks)
  pix,      // at most one PCIe bridge
  pxb,      // several PCIe bridges, no host bridge
  phb,      // through a PCIe host bridge (the CPU)
  node,     // between PCIe host bridges of one NUMA node
  sys,      // across NUMA nodes (QPI/UPI)
  unknown,  // anything else nvidia-smi may print
};
std::string_view to_string(GpuLink link) noexcept;

/// `nvidia-smi topo -m`: the matrix between GPUs (and NICs when listed).
struct GpuTopology {
  /// Column names in order: "GPU0", "GPU1", "NIC0", ...
  std::vector<std::string> devices;
  /// links[i][j] as printed: "X", "NV18", "PIX", "SYS", ...
  std::vector<std::vector<std::string>> links;
  /// Per device row; empty when not printed (NIC rows).
  std::vector<std::string> cpu_affinity;
  std::vector<std::string> numa_affinity;

  GpuLink link(std::size_t i, std::size_t j) const noexcept;
  /// NVLinks between i and j (the # of NV#), 0 when not NVLink.
  unsigned nvlinks(std::size_t i, std::size_t j) const noexcept;
  /// Every pair of GPU devices is joined by NVLink.
  bool all_gpus_nvlinked() const noexcept;
};

/// The header of plain `nvidia-smi`.
struct NvidiaSmiHeader {
  std::string smi_version;
  std::string driver_version;
  /// The highest CUDA version the driver supports ("13.0").
  std::string cuda_version;
};

/// `docker version --format '{{json .}}'` (+ `docker info` runtimes).
struct DockerFacts {
  std::string client_version;
  std::string client_api_version;
  /// The daemon answered (`Server` was not null).
  bool daemon_reachable = false;
  std::string server_version;
  /// What docker said when the daemon did not answer.
  std::string daemon_error;
  /// Keys of `docker info`'s Runtimes ("io.containerd.runc.v2", "nvidia", "runc").
  std::vector<std::string> runtimes;
  /// Paths of the NVIDIA container toolkit programs found on PATH
  /// (nvidia-container-runtime, -runtime-hook, nvidia-container-cli, nvidia-ctk).
  std::vector<std::string> nvidia_toolkit;
  /// Image reference -> image ID ("" when the image is not on the host), for
  /// the images asked about in FactsOptions::docker_images.
  std::map<std::string, std::string> images;

  /// Docker has an "nvidia" runtime registered.
  bool nvidia_runtime_registered() const;
  /// `docker run --gpus` can work: an nvidia runtime is registered, or the
  /// toolkit's hook/CLI that `--gpus` calls is installed.
  bool can_run_gpu_containers() const;
};

struct NetAddress {
  std::string family;  // "inet" or "inet6"
  std::string address;
  int prefix_length = 0;
  std::string scope;  // "global", "host", "link"
};

/// One interface of `ip -j addr` (or `ip -o addr`).
struct NetInterface {
  std::string name;
  bool up = false;
  bool loopback = false;
  int mtu = 0;
  std::string mac;
  std::vector<NetAddress> addresses;

  /// The first global IPv4 address, or "".
  std::string ipv4() const;
};

/// `ip -j route get PEER`: how this host reaches a peer.
struct RouteToPeer {
  /// The peer as asked (a name or an address).
  std::string peer;
  /// The address looked up (the name resolved on the host).
  std::string peer_address;
  /// The interface packets leave by: what NCCL_SOCKET_IFNAME and
  /// GLOO_SOCKET_IFNAME must name. For a peer that is this host itself
  /// ("local" route over lo), the interface that holds the address.
  std::string interface;
  /// The source address: what VLLM_HOST_IP must be.
  std::string source_address;
  /// Next hop when the peer is not on a directly attached network.
  std::string gateway;
  /// The peer is one of this host's own addresses.
  bool local = false;
};

/// The host's clock against this machine's, from one round trip.
struct ClockSample {
  /// Remote `date +%s.%N`.
  double remote_epoch = 0;
  /// Local wall clock (seconds since the epoch) when the command was
  /// started and when the remote time arrived.
  double local_sent = 0;
  double local_received = 0;

  /// Remote minus the local midpoint of the round trip.
  double offset_seconds() const noexcept { return remote_epoch - (local_sent + local_received) / 2; }
  /// Half the round trip: the true offset is within +- this.
  double uncertainty_seconds() const noexcept { return (local_received - local_sent) / 2; }
};

/// The Python interpreter on the host and the versions of the packages
/// that must match across nodes.
struct PythonFacts {
  std::string executable;
  std::string version;  // "3.11.7"
  /// Package -> version, for those installed (ray, vllm, torch, ...).
  std::map<std::string, std::string> packages;

  /// The package's version, "" when not installed.
  std::string package(std::string const& name) const;
};

/// A section of the facts that is missing or could not be read.
struct FactIssue {
  enum class Kind {
    /// The program is not installed (nvidia-smi, docker, python).
    absent,
    /// The program ran and failed, or printed what the parser refused.
    failed,
  };
  std::string section;
  Kind kind = Kind::failed;
  std::string message;
};

struct HostFacts {
  std::string host;
  /// `uname -n` on the host.
  std::string hostname;
  std::optional<OsRelease> os;
  std::optional<KernelInfo> kernel;
  std::optional<unsigned> cpus;
  std::optional<MemoryInfo> memory;
  std::optional<DiskUsage> shm;
  /// One per FactsOptions::disk_paths that exists, in that order.
  std::vector<DiskUsage> disks;
  std::vector<GpuInfo> gpus;
  /// `gpus` are the inventory's simulated GPUs (nvidia-smi is absent).
  bool gpus_simulated = false;
  std::optional<NvidiaSmiHeader> nvidia;
  std::optional<GpuTopology> topology;
  std::optional<DockerFacts> docker;
  std::vector<NetInterface> interfaces;
  /// One per FactsOptions::peers that could be looked up, in that order.
  std::vector<RouteToPeer> routes;
  /// net.ipv4.ip_local_port_range: where NCCL and Gloo listen.
  std::optional<std::pair<int, int>> ephemeral_ports;
  std::optional<ClockSample> clock;
  std::optional<PythonFacts> python;
  std::vector<FactIssue> issues;

  FactIssue const* issue(std::string_view section) const;
  RouteToPeer const* route_to(std::string_view peer) const;
  NetInterface const* interface_named(std::string_view name) const;
  /// The interface holding `address`, or nullptr.
  NetInterface const* interface_with_address(std::string_view address) const;
  DiskUsage const* disk(std::string_view path) const;
  /// From nvidia-smi (query, else header); "" when unknown.
  std::string driver_version() const;
  std::string cuda_version() const;
  std::uint64_t gpu_memory_total_bytes() const;

  nlohmann::json to_json() const;
};

/// GPUs an inventory declares for a host (`gpus: {count, model, memory_gib,
/// simulated}`).
struct DeclaredGpus {
  unsigned count = 0;
  std::string model;
  double memory_gib = 0;
  bool simulated = false;
};

/// The host's `gpus:` entry, if any.
std::optional<DeclaredGpus> declared_gpus(InventoryHost const& host);

/// When `declared` is simulated and the host has no real GPUs (nvidia-smi
/// absent), fill `facts.gpus` with the declared GPUs marked simulated. Real
/// GPUs always win: a host with a working nvidia-smi keeps what it reported
/// (and gets an issue saying the declaration was ignored).
void apply_declared_gpus(HostFacts& facts, DeclaredGpus const& declared);

// ---------------------------------------------------------------------------
// Pure parsers (throw Error(errc::parse_error))
// ---------------------------------------------------------------------------

OsRelease parse_os_release(std::string_view text);
/// `uname -srm`: "Linux 6.8.0-45-generic x86_64".
KernelInfo parse_uname(std::string_view text);
unsigned parse_nproc(std::string_view text);
MemoryInfo parse_meminfo(std::string_view text);
/// `df -P -B1 [PATHS]`: every line after the header. Mount points with
/// spaces are kept whole.
std::vector<DiskUsage> parse_df(std::string_view text);
/// `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,
/// driver_version,compute_cap,pci.bus_id --format=csv,noheader,nounits`, in
/// that column order. Output with a header line (`--format=csv`) is read by
/// its column names instead, in any order and with units ("81559 MiB").
std::vector<GpuInfo> parse_gpu_query(std::string_view text);
/// The columns `parse_gpu_query` expects without a header.
std::string_view gpu_query_fields() noexcept;
NvidiaSmiHeader parse_nvidia_smi_header(std::string_view text);
/// `nvidia-smi topo -m` (ANSI underline codes in the header are ignored).
GpuTopology parse_gpu_topology(std::string_view text);
/// `docker version --format '{{json .}}'`. `Server: null` (daemon down) is
/// a valid answer: daemon_reachable = false.
DockerFacts parse_docker_version(std::string_view json_text);
/// `docker info --format '{{json .Runtimes}}'`: the runtime names.
std::vector<std::string> parse_docker_runtimes(std::string_view json_text);
/// `ip -j addr`, or `ip -o addr` where iproute2 has no JSON.
std::vector<NetInterface> parse_ip_addr(std::string_view text);
/// `ip -j route get ADDR`, or its plain form.
RouteToPeer parse_ip_route_get(std::string_view text);
/// `date +%s.%N` -> seconds since the epoch (a date without %N support is
/// read to the second).
double parse_epoch_seconds(std::string_view text);
/// The JSON the facts script's Python one-liner prints.
PythonFacts parse_python_facts(std::string_view json_text);
/// /proc/sys/net/ipv4/ip_local_port_range.
std::pair<int, int> parse_port_range(std::string_view text);

// ---------------------------------------------------------------------------
// The script and its output
// ---------------------------------------------------------------------------

struct FactsOptions {
  /// Paths whose free space to report (the NAS mount, the model cache...).
  std::vector<std::string> disk_paths;
  /// Peers (names or addresses) to look up the route to: usually the head.
  std::vector<std::string> peers;
  /// Docker images whose ID to report on each host.
  std::vector<std::string> docker_images;
  /// The Python whose packages to report.
  std::string python = "python3";
  /// Limit for each command inside the script (nvidia-smi or docker can
  /// hang on a broken host).
  std::chrono::seconds command_timeout{20};
  /// Limit for the whole script on one host.
  std::chrono::milliseconds timeout{90000};
  /// Hosts gathered at once.
  std::size_t concurrency = 64;
  /// GPUs declared per host name (see apply_declared_gpus).
  std::map<std::string, DeclaredGpus> declared_gpus;
};

/// The one sh script that prints every section. Throws
/// Error(errc::invalid_argument) for a path, peer or image containing a
/// newline or NUL.
std::string facts_script(FactsOptions const& options);

/// One section of the script's output.
struct FactsSection {
  std::string name;
  std::string body;
  /// The command's exit status (nullopt: the program was absent, or the
  /// section has no status line because the output was cut).
  std::optional<int> exit_status;
  /// The program the section needed, when it is not installed.
  std::string absent_program;
  /// The end of the command's stderr.
  std::string stderr_tail;
};

/// Split the script's output into sections. Lines before the first
/// section are ignored.
std::vector<FactsSection> split_facts_sections(std::string_view output);

/// Every section parsed; never throws. What was absent or malformed is in
/// `issues`; `clock` has only the remote time (the caller knows the local
/// ones).
HostFacts parse_facts_output(std::string_view output, FactsOptions const& options = {});

// ---------------------------------------------------------------------------
// Gathering
// ---------------------------------------------------------------------------

struct HostFactsOutcome {
  std::string host;
  /// Set when the script could not run (connection, timeout); the facts
  /// are then empty.
  std::error_code error;
  /// What went wrong, for a person (host, cause, fix).
  std::string message;
  HostFacts facts;
  std::chrono::nanoseconds duration{0};
  /// The script's output as it came (for `clusterkit facts --raw` and for
  /// checking a parsed field against what the host printed).
  std::string raw_output;

  bool ok() const { return !error; }
  nlohmann::json to_json() const;
};

/// Declared GPUs of each host of an inventory selection, for
/// FactsOptions::declared_gpus.
std::map<std::string, DeclaredGpus> declared_gpus_of(std::vector<InventoryHost> const& hosts);

using FactsSignature = void(std::vector<HostFactsOutcome>);

namespace detail {
void start_gather_facts(std::vector<Host> hosts, FactsOptions options,
                        asio::any_completion_handler<FactsSignature> handler);
}

/// Gather facts on every host in parallel: connect (each host's shared
/// connection), then one run of `facts_script()` per host, timed for the
/// clock offset. One outcome per host, in the order given; never completes
/// with an error of its own.
template <class CompletionToken = asio::deferred_t>
auto async_gather_facts(std::vector<Host> hosts, FactsOptions options = {}, CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, FactsSignature>(
      [](auto handler, std::vector<Host> h, FactsOptions o) {
        detail::start_gather_facts(std::move(h), std::move(o), std::move(handler));
      },
      token, std::move(hosts), std::move(options));
}

/// Blocking wrapper (never from the thread running the hosts' executor).
std::vector<HostFactsOutcome> gather_facts(std::vector<Host> hosts, FactsOptions options = {});


/// A few lines for people: what the host is, GPUs (with "simulated" where
/// they are), driver/CUDA, Docker, network, clock, Python, and what is
/// missing.
std::string describe_facts(HostFactsOutcome const& outcome);

}  // namespace clusterkit
