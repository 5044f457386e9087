// The lab: real hosts on one Linux machine. Each host is a network, pid,
// mount and uts namespace running a real sshd, joined by a bridge; keys, a
// known_hosts file and an inventory are written for the user. An optional
// `nas` host exports a folder over SFTP for sshfs mounts.
//
// Needs root. Every process the lab starts is tracked by pid and stopped by
// pid; nothing is mounted in the machine's own mount namespace.
#pragma once

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
};

struct LabHostStatus {
  std::string name;
  std::string address;
  std::string netns;
  /// The host's sshd, as seen from this machine (pid 1 inside the host).
  int sshd_pid = 0;
  bool running = false;
};

struct LabStatus {
  std::string name;
  bool exists = false;
  std::string state_dir;
  std::string inventory_path;
  std::string identity_file;
  std::string known_hosts_file;
  std::string bridge;
  std::vector<LabHostStatus> hosts;
};

/// Bring the lab up. Idempotent: a healthy lab of the same shape is left as
/// it is; a broken or different one is taken down and rebuilt. Throws
/// Error(errc::lab_needs_root) when not root, Error(errc::lab_failed) naming
/// the step that failed.
LabStatus lab_up(LabOptions const& options);
/// What is there now, from the state folder and the live namespaces.
LabStatus lab_status(std::string const& name = "ck", std::string const& state_dir = "");
/// Stop every process of the lab by pid, delete its namespaces, bridge and
/// state. Also cleans up after a crashed `lab_up`. Safe when nothing is up.
void lab_down(std::string const& name = "ck", std::string const& state_dir = "");

}  // namespace clusterkit
