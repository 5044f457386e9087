// `clusterkit nas mount|umount|check`: one shared folder at the same path on
// every host, so a model copied once is seen by every GPU host.
#include <cstdio>
#include <iostream>

#include "clusterkit/nas.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

struct NasArgs {
  std::string group = "all";
  std::string kind = "nfs";
  NasSpec spec;
  double timeout = 120;
  bool no_allow_other = false;
  // umount
  bool lazy = false;
  bool remove_fstab_entry = false;
};

void add_target(CLI::App* sub, NasArgs& a) {
  sub->add_option("-g,--group", a.group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  sub->add_option("--path", a.spec.mount_point, "Where the folder appears on every host")->capture_default_str();
}

int print_outcomes(GlobalOptions const& g, std::vector<MountOutcome> const& outcomes) {
  std::size_t ok = 0;
  for (auto const& o : outcomes) ok += o.ok();
  if (g.json) {
    nlohmann::json j = nlohmann::json::array();
    for (auto const& o : outcomes) j.push_back(o.to_json());
    print_json(j);
  } else {
    for (auto const& o : outcomes)
      std::printf("%-12s %-8s %s%s\n", o.host.c_str(), o.action.c_str(), o.ok() ? "" : "FAILED: ", terminal_safe(o.message).c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "%zu/%zu hosts succeeded\n", ok, outcomes.size());
  }
  return ok == outcomes.size() ? 0 : 1;
}

/// The NAS the inventory's vars describe; every selected host must agree.
/// Options given on the command line win over the inventory's.
NasSpec spec_from_inventory(std::vector<InventoryHost> const& hosts, NasSpec const& cli, bool kind_given,
                            bool path_given) {
  std::optional<NasSpec> agreed;
  std::string first;
  for (auto const& h : hosts) {
    auto vars = h.extra.contains("vars") ? h.extra.at("vars") : nlohmann::json();
    auto spec = nas_spec_from_vars(vars, h.spec.name, cli);
    if (kind_given) spec.kind = cli.kind;
    if (path_given) spec.mount_point = cli.mount_point;
    if (!cli.identity_file.empty()) spec.identity_file = cli.identity_file;
    if (!cli.known_hosts_file.empty()) spec.known_hosts_file = cli.known_hosts_file;
    if (!cli.options.empty()) spec.options = cli.options;
    if (!agreed) {
      agreed = spec;
      first = h.spec.name;
    } else if (spec.source != agreed->source || spec.kind != agreed->kind || spec.mount_point != agreed->mount_point) {
      throw Error(make_error_code(errc::inventory_invalid),
                  "the inventory gives " + first + " and " + h.spec.name + " different NASes (" + agreed->source +
                      " at " + agreed->mount_point + " vs " + spec.source + " at " + spec.mount_point +
                      "); mount them one group at a time (-g)");
    }
  }
  return agreed ? *agreed : cli;
}

}  // namespace

void register_nas(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* nas = app.add_subcommand("nas", "Mount a shared folder (NFS, sshfs, bind) at the same path on every host");
  nas->require_subcommand(1);

  auto m = std::make_shared<NasArgs>();
  auto* mount = nas->add_subcommand(
      "mount", "Mount SOURCE at --path on every host: kept where the same source is already there, refused where "
               "something else is");
  add_target(mount, *m);
  mount->add_option("--type", m->kind, "nfs, sshfs or bind")
      ->check(CLI::IsMember({"nfs", "sshfs", "bind"}))
      ->capture_default_str();
  mount->add_option("source", m->spec.source,
                    "nfs: SERVER:/EXPORT; sshfs: [USER@]HOST:/PATH; bind: /PATH on each host "
                    "(default: the inventory's vars.nas_export)");
  mount->add_option("--nfs-version", m->spec.nfs_version, "NFS protocol version: 3, 4, 4.0, 4.1 or 4.2")
      ->capture_default_str();
  mount->add_option("-o,--option", m->spec.options,
                    "A mount option (key=value or flag); one with a default's key replaces it (repeatable)");
  mount->add_flag("--read-only", m->spec.read_only, "Mount read-only");
  mount->add_option("--identity", m->spec.identity_file, "sshfs: the key the hosts use to reach the NAS (a path on them)");
  mount->add_option("--known-hosts", m->spec.known_hosts_file, "sshfs: known_hosts file on the hosts holding the NAS's key");
  mount->add_option("--port", m->spec.port, "sshfs: the NAS's ssh port (0: ssh's default, 22)");
  mount->add_flag("--no-allow-other", m->no_allow_other,
                  "sshfs: only the mounting user may read the mount (containers started by dockerd then cannot)");
  mount->add_flag("--persist", m->spec.persist, "Also add an /etc/fstab entry so the mount survives a reboot");
  mount->add_option("--fstab", m->spec.fstab_path, "The fstab to edit")->capture_default_str();
  mount->add_flag("--allow-non-empty", m->spec.allow_non_empty,
                  "Mount over a folder that has files in it (they are hidden until the unmount)");
  mount->add_option("--timeout", m->timeout, "Seconds a mount may take on one host")->capture_default_str();
  mount->callback([&g, &action, m, mount] {
    bool const kind_given = mount->count("--type") > 0, path_given = mount->count("--path") > 0;
    action = [&g, m, kind_given, path_given] {
      NasSpec spec = m->spec;
      spec.kind = *nas_kind_from_string(m->kind);
      spec.allow_other = !m->no_allow_other;
      spec.timeout = std::chrono::duration_cast<std::chrono::seconds>(checked_seconds(m->timeout, "--timeout", 1, 86400));
      auto inventory = load_inventory(g);
      auto selected = inventory.select(m->group);
      if (spec.source.empty()) spec = spec_from_inventory(selected, spec, kind_given, path_given);
      NasMount nas(spec);  // validates: a bad source fails here, before any host is touched
      if (spec.source.empty())
        throw Error(make_error_code(errc::invalid_argument),
                    "no NAS to mount: give SOURCE, or set vars.nas_export in the inventory (" + inventory.source() + ")");
      validate(spec, true);
      std::vector<std::string> servers;
      auto clients = nas_clients(selected, &servers);
      for (auto const& name : servers)
        std::fprintf(stderr, "%s: not mounted: it is the NAS host (role nas), it serves the folder\n", name.c_str());
      if (clients.empty())
        throw Error(make_error_code(errc::unknown_host_or_group),
                    "'" + m->group + "' selects only the NAS host; pick the hosts that mount it with -g");
      Runtime rt;
      std::vector<Host> hosts;
      for (auto const& h : clients) hosts.push_back(rt.host(h.spec));
      return print_outcomes(g, mount_nas(nas, hosts));
    };
  });

  auto u = std::make_shared<NasArgs>();
  auto* umount = nas->add_subcommand(
      "umount", "Unmount --path on every host (only a network or FUSE mount, or the one of --source)");
  add_target(umount, *u);
  umount->add_option("--source", u->spec.source, "Only unmount this source (nfs/sshfs form, or a bind's /PATH)");
  umount->add_option("--type", u->kind, "The kind of --source: nfs, sshfs or bind")
      ->check(CLI::IsMember({"nfs", "sshfs", "bind"}))
      ->capture_default_str();
  umount->add_flag("--lazy", u->lazy, "Detach now even if busy (umount -l); cleaned up when the last user is gone");
  umount->add_flag("--remove-fstab-entry", u->remove_fstab_entry, "Also remove the /etc/fstab entry for --path");
  umount->add_option("--fstab", u->spec.fstab_path, "The fstab to edit")->capture_default_str();
  umount->add_option("--timeout", u->timeout, "Seconds an unmount may take on one host")->capture_default_str();
  umount->callback([&g, &action, u] {
    action = [&g, u] {
      NasSpec spec = u->spec;
      spec.kind = *nas_kind_from_string(u->kind);
      spec.timeout = std::chrono::duration_cast<std::chrono::seconds>(checked_seconds(u->timeout, "--timeout", 1, 86400));
      Runtime rt;
      auto hosts = make_hosts(rt, load_inventory(g), u->group);
      UnmountOptions o;
      o.lazy = u->lazy;
      o.remove_fstab_entry = u->remove_fstab_entry;
      return print_outcomes(g, unmount_nas(NasMount(spec), hosts, o));
    };
  });

  auto c = std::make_shared<NasArgs>();
  auto* check = nas->add_subcommand(
      "check", "Does every host see the same folder at --path? Each writes a token file, each reads all of them");
  add_target(check, *c);
  check->callback([&g, &action, c] {
    action = [&g, c] {
      Runtime rt;
      auto hosts = make_hosts(rt, load_inventory(g), c->group);
      auto report = check_nas(NasMount(c->spec), hosts);
      if (g.json) {
        print_json(report.to_json());
      } else {
        for (auto const& h : report.hosts) {
          std::printf("%-12s %-8s %-30s sees %zu/%zu%s%s\n", h.host.c_str(), h.mounted ? h.fstype.c_str() : "-",
                      h.mounted ? terminal_safe(h.source).c_str() : "(not a mount)", h.sees.size(), report.hosts.size(),
                      h.problem.empty() ? "" : "  ", terminal_safe(h.problem).c_str());
        }
        for (auto const& p : report.problems) std::printf("problem: %s\n", terminal_safe(p).c_str());
        std::printf("%s: %s\n", terminal_safe(report.path).c_str(), report.ok() ? "every host sees the same folder" : "NOT shared");
      }
      return report.ok() ? 0 : 1;
    };
  });
}

}  // namespace clusterkit::cli
