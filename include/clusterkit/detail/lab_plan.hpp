// The lab's pure half (sans-I/O: values in, text out): which roles and
// simulated GPUs each host gets, the inventory text, the cgroup mounts a host
// needs before its Docker engine can start, the engine's configuration files,
// and the Debian mirror the runtime image is bootstrapped from. Everything
// here is tested without root, processes or sockets; src/remote/lab_io.cpp
// does the I/O around it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clusterkit::detail {

/// The roles `lab up --roles` accepts, one per host (nas is its own host).
inline constexpr char const* lab_roles[] = {"head", "worker", "gpu", "download"};

/// What one lab host (h1..hN) is for.
struct LabHostRole {
  /// "" when the lab was made without --roles and without --gpus.
  std::string role;
  /// Simulated GPUs declared for it (0 for a download host).
  int gpus = 0;
  /// Inventory groups: always "lab", plus "gpu" for head/worker/gpu hosts
  /// and "download" for a download host.
  std::vector<std::string> groups;
};

/// Roles for h1..h`hosts`: `roles` positionally when given (exactly one per
/// host), else with gpus > 0 h1 head and the others worker, else none.
/// Throws Error(errc::invalid_argument) naming the bad role (with a "did you
/// mean"), a count that does not match, a second head or gpus < 0.
std::vector<LabHostRole> assign_lab_roles(int hosts, int gpus, std::vector<std::string> const& roles);

struct LabInventoryHost {
  std::string name;
  std::string address;
  bool nas = false;
  LabHostRole role;
};

/// What the lab's inventory.yaml says.
struct LabInventory {
  std::string lab;
  std::string identity_file;
  std::string known_hosts_file;
  /// The nas host's address ("" without --nas): its sshfs export goes into
  /// the defaults' vars.
  std::string nas_address;
  bool docker = false;
  std::string runtime_image;
  std::string serve_venv;
  std::string gpu_model;
  double gpu_memory_gib = 0;
  std::vector<LabInventoryHost> hosts;
};

/// The inventory text (YAML, the shape Inventory::parse accepts). Simulated
/// GPUs are declared `simulated: true` and said to be simulated in comments.
std::string lab_inventory_text(LabInventory const& inventory);

/// A symbolic link found in the machine's /sys/fs/cgroup (cgroup v1 on
/// systemd machines links cpu -> cpu,cpuacct and so on).
struct CgroupLink {
  std::string name;    // "cpu"
  std::string target;  // "cpu,cpuacct"
};

/// Shell lines that mount, inside a lab host, the cgroup hierarchies the
/// machine has (read from the machine's /proc/self/mountinfo): `ip netns
/// exec` mounts a fresh /sys for the host, whose /sys/fs/cgroup is empty, and
/// dockerd refuses to start without the hierarchies ("Devices cgroup isn't
/// mounted"). A tmpfs root (cgroup v1 or hybrid) is mounted, its hierarchy
/// folders made and mounted, its links made; a cgroup2 root (pure v2) is
/// mounted alone. The superblock options are kept exactly: cgroup2 applies
/// them to its one global root on every mount, so leaving `nsdelegate` out
/// would switch it off for the whole machine. Returns "" when the machine
/// has no cgroup mounts under /sys/fs/cgroup.
std::string cgroup_mount_script(std::string_view mountinfo, std::vector<CgroupLink> const& links = {});

/// The mount points of every cgroup hierarchy in a mountinfo text (where a
/// lab's container cgroups have to be removed after `lab down`).
std::vector<std::string> cgroup_roots(std::string_view mountinfo);

/// Where one host's Docker engine keeps everything (all under the lab's
/// state folder, deleted by `lab down`).
struct LabDockerPaths {
  std::string dir;               // <state>/docker-h1
  std::string socket;            // <state>/docker-h1.sock: DOCKER_HOST
  std::string daemon_json;       // dir/daemon.json
  std::string containerd_toml;   // dir/containerd.toml
  std::string containerd_socket; // dir/containerd/containerd.sock
  std::string data_root;         // dir/data
  std::string exec_root;         // dir/exec
  std::string pidfile;           // dir/docker.pid
  std::string key_file;          // dir/key.json
  std::string dockerd_log;       // dir/dockerd.log
  std::string containerd_log;    // dir/containerd.log
  /// "/ck-<lab>-h1": the engine's containers' cgroups, in every hierarchy.
  std::string cgroup_parent;
};
LabDockerPaths lab_docker_paths(std::string const& state_dir, std::string const& host, std::string const& netns);

/// dockerd's --config-file: no iptables, no forwarding, no bridge (any of
/// them would change the machine's own network and cut every lab's bridge),
/// cgroupfs (no systemd inside a host), overlay2, and a key file of its own
/// (20.10 writes /etc/docker/key.json otherwise, shared by every engine).
std::string docker_daemon_json(LabDockerPaths const& paths);
/// containerd's --config: its root, state and socket under `paths.dir`, the
/// CRI plugin off (Kubernetes is not used) and the `opt` plugin off (it
/// creates /opt/containerd on the machine).
std::string containerd_toml(LabDockerPaths const& paths);

/// The first `deb` mirror for `suite` in apt's sources, given as (file
/// name, text) pairs: `*.sources` files are deb822 stanzas, anything else
/// one-line `deb [options] URI suite components` entries. nullopt when none.
std::optional<std::string> debian_mirror_for(std::string_view suite,
                                             std::vector<std::pair<std::string, std::string>> const& sources);

}  // namespace clusterkit::detail
