// The lab: real hosts on one Linux machine. Each host is a network, pid,
// mount and uts namespace running a real sshd, joined by a bridge; keys, a
// known_hosts file and an inventory are written for the user. An optional
// `nas` host exports a folder over SFTP for sshfs mounts. With `docker`, each
// host (not the nas) runs its own real Docker engine; with `gpus`, the
// inventory declares SIMULATED GPUs on the GPU hosts (they do not exist:
// planning and preflight count them, nothing can compute on them).
//
// Needs root. Every process the lab starts is tracked by pid and stopped by
// pid; nothing is mounted in the machine's own mount namespace.
#pragma once

#include <stop_token>
#include <string>
#include <vector>

namespace clusterkit {

struct LabOptions {
  /// Lab name; namespaces, the bridge and the state folder derive from it,
  /// so several labs can coexist.
  std::string name = "ck";
  int hosts = 2;
  /// Add a host named "nas" that exports /srv/nas over SFTP.
  bool nas = false;
  /// First three octets of the lab subnet; the bridge is .1, hosts .11 up.
  std::string subnet = "10.88.0";
  /// Where state, keys and the inventory go ("" = /run/clusterkit/lab-<name>).
  std::string state_dir;
  /// One real dockerd (with its own containerd) per host, started inside the
  /// host's namespaces, so `docker run --network host` there gets the host's
  /// own address and hostname. `docker` over ssh talks to it (DOCKER_HOST).
  /// The runtime image (`runtime_image`) is built once with debootstrap,
  /// cached under /var/cache/clusterkit and imported into every engine.
  /// Needs docker.io and debootstrap (scripts/install-serving.sh).
  bool docker = false;
  /// SIMULATED GPUs declared on each GPU host (head, worker, gpu) in the
  /// inventory (`gpus: {count, model, memory_gib, simulated: true}`); 0 =
  /// none. They do not exist: nvidia-smi is absent, `docker run --gpus` fails.
  int gpus = 0;
  std::string gpu_model = "NVIDIA L20";
  double gpu_memory_gib = 48;
  /// Roles of h1..hN in order, one per host: head, worker, gpu, download (a
  /// download host gets no GPUs). Empty: with gpus, h1 head and the others
  /// worker; without, no roles.
  std::vector<std::string> roles;
  /// The image deployments run (imported into each engine under this name).
  std::string runtime_image = "clusterkit/lab-runtime:bookworm";
  /// The Ray/vLLM venv on the machine that deployments mount into containers
  /// at the same path (made by scripts/install-serving.sh); only written
  /// into the inventory's vars.
  std::string serve_venv = "/opt/ck-serve";
};

struct LabHostStatus {
  std::string name;
  std::string address;
  std::string netns;
  /// The host's sshd, as seen from this machine (pid 1 inside the host).
  int sshd_pid = 0;
  bool running = false;
  /// "head", "worker", "gpu", "download", "nas" or "" (none).
  std::string role;
  /// SIMULATED GPUs the inventory declares for the host (0: none).
  int gpus = 0;
  /// The host's own Docker engine (labs made with `docker`; not the nas).
  bool docker = false;
  /// dockerd as seen from this machine (0 when not found).
  int dockerd_pid = 0;
  /// dockerd alive and answering on its socket.
  bool docker_running = false;
  /// What DOCKER_HOST is on the host ("unix://<state>/docker-hN.sock").
  std::string docker_host;
};

struct LabStatus {
  std::string name;
  bool exists = false;
  std::string state_dir;
  std::string inventory_path;
  std::string identity_file;
  std::string known_hosts_file;
  std::string bridge;
  /// Made with LabOptions::docker / gpus (simulated GPUs per GPU host).
  bool docker = false;
  int gpus = 0;
  /// The image imported into every engine ("" without docker).
  std::string runtime_image;
  std::vector<LabHostStatus> hosts;
};

/// Bring the lab up. Idempotent: a healthy lab of the same shape is left as
/// it is; a broken or different one is taken down and rebuilt. Throws
/// Error(errc::lab_needs_root) when not root, Error(errc::lab_failed) naming
/// the step that failed.
///
/// `stop`: a stop request (Ctrl-C in the CLI and in Python) kills the step's
/// running command, takes down what was made so far, and throws
/// Error(errc::cancelled); nothing of the lab is left. Taking a lab down is
/// never cut short: lab_down (and the clean-up here) run to their end, seconds.
LabStatus lab_up(LabOptions const& options, std::stop_token stop = {});
/// What is there now, from the state folder and the live namespaces.
LabStatus lab_status(std::string const& name = "ck", std::string const& state_dir = "");
/// Stop every process of the lab by pid, delete its namespaces, bridge,
/// container cgroups and state (Docker's data and exec roots with it). Also
/// cleans up after a crashed `lab_up`. Safe when nothing is up.
void lab_down(std::string const& name = "ck", std::string const& state_dir = "");

}  // namespace clusterkit
