// Inventory: the hosts of a cluster, their groups and roles, from a YAML or
// JSON file (JSON is read as YAML, so both get line numbers in errors).
//
//   defaults: {user: root, identity_file: ~/.ssh/id_ed25519}
//   hosts:
//     gpu1: {address: 10.0.0.11, roles: [head, gpu], groups: [gpu]}
//     gpu2: {address: 10.0.0.12, roles: [gpu]}
//   groups:
//     gpu: [gpu1, gpu2]
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/host.hpp"

namespace clusterkit {

struct InventoryHost {
  HostSpec spec;
  /// Groups this host is in (from its own `groups:` and the top-level
  /// `groups:` map), sorted, without "all".
  std::vector<std::string> groups;
  /// What the host is for in a deployment: head, worker, gpu, download, nas.
  std::vector<std::string> roles;
  /// Fields later capabilities read (`gpus:`, `vars:`), kept as given.
  nlohmann::json extra = nlohmann::json::object();
};

class Inventory {
public:
  /// Read a file. Throws Error(errc::inventory_invalid) whose message names
  /// the file, the line and the field, and says what would be accepted.
  static Inventory load(std::filesystem::path const& path);
  /// Parse text; `source` names it in errors.
  static Inventory parse(std::string_view text, std::string source = "<inventory>");

  std::vector<InventoryHost> const& hosts() const { return hosts_; }
  std::string const& source() const { return source_; }
  InventoryHost const* find(std::string_view name) const;
  /// Group names, sorted ("all" is implicit and not listed).
  std::vector<std::string> groups() const;

  /// Hosts matching a selector: "all", a group, a host name, "role:NAME", or
  /// a comma-separated list of those; in inventory order, no duplicates.
  /// Throws Error(errc::unknown_host_or_group) naming what did not match.
  std::vector<InventoryHost> select(std::string_view selector) const;

  /// The inventory as JSON (the shape `load` accepts), hosts in order.
  nlohmann::ordered_json to_json() const;

private:
  std::string source_;
  std::vector<InventoryHost> hosts_;
};

}  // namespace clusterkit
