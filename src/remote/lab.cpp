// The lab's pure half; see clusterkit/detail/lab_plan.hpp.
#include "clusterkit/detail/lab_plan.hpp"

#include "clusterkit/error.hpp"
#include "clusterkit/shell.hpp"
#include "core/text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <set>
#include <sstream>

namespace clusterkit::detail {
namespace {

[[noreturn]] void invalid(std::string const& message) { throw Error(make_error_code(errc::invalid_argument), message); }

bool is_gpu_role(std::string_view role) { return role == "head" || role == "worker" || role == "gpu"; }

// Levenshtein distance, for "did you mean".
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    prev.swap(cur);
  }
  return prev[b.size()];
}

std::string known_roles_text() {
  std::string out;
  for (auto const* r : lab_roles) out += (out.empty() ? "" : ", ") + std::string(r);
  return out;
}

// 48 -> "48", 47.5 -> "47.5": the shortest text that reads back the same.
std::string number_text(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string yaml_string(std::string const& s) { return nlohmann::json(s).dump(); }

std::string list_text(std::vector<std::string> const& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
std::string unescape_mountinfo(std::string_view s) {
  std::string out;
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

struct MountEntry {
  std::string mount_point;
  std::vector<std::string> mount_options;  // per mount (field 6)
  std::string fstype;
  std::vector<std::string> super_options;  // per superblock (last field)
};

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto c = s.find(',');
    auto part = s.substr(0, c);
    if (!part.empty()) out.emplace_back(part);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  for (auto line : lines_of(text)) {
    auto fields = split_ws(line);
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
    if (dash == fields.end() || std::distance(fields.begin(), dash) < 6 || std::distance(dash, fields.end()) < 4) continue;
    MountEntry e;
    e.mount_point = unescape_mountinfo(fields[4]);
    e.mount_options = split_commas(fields[5]);
    e.fstype = std::string(*(dash + 1));
    e.super_options = split_commas(*(dash + 3));
    out.push_back(std::move(e));
  }
  return out;
}

constexpr std::string_view kCgroupRoot = "/sys/fs/cgroup";

bool under_cgroup_root(std::string const& p) {
  return p == kCgroupRoot || (p.size() > kCgroupRoot.size() && p.compare(0, kCgroupRoot.size(), kCgroupRoot) == 0 &&
                              p[kCgroupRoot.size()] == '/');
}

// The options to mount with: nosuid/nodev/noexec of the mount, then the
// superblock's own options without rw/ro (the host mounts read-write: dockerd
// creates cgroups) and without release_agent (a v1 hierarchy's agent is the
// machine's business, not to be restated from inside a lab host).
std::string options_for(MountEntry const& e) {
  std::vector<std::string> opts;
  for (auto const& o : e.mount_options)
    if (o == "nosuid" || o == "nodev" || o == "noexec") opts.push_back(o);
  for (auto const& o : e.super_options)
    if (o != "rw" && o != "ro" && o.rfind("release_agent=", 0) != 0) opts.push_back(o);
  std::string out;
  for (auto const& o : opts) out += (out.empty() ? "" : ",") + o;
  return out;
}

}  // namespace

std::vector<LabHostRole> assign_lab_roles(int hosts, int gpus, std::vector<std::string> const& roles) {
  if (gpus < 0 || gpus > 64)
    invalid("lab: " + std::to_string(gpus) + " simulated GPUs per host asked for; give 0 to 64 (--gpus).");
  if (!roles.empty() && static_cast<int>(roles.size()) != hosts)
    invalid("lab: " + std::to_string(hosts) + " hosts but " + std::to_string(roles.size()) +
            " roles given; give one role per host, in order h1..h" + std::to_string(hosts) + " (e.g. --roles head" +
            (hosts > 1 ? ",worker" : "") + (hosts > 2 ? ",download" : "") + ").");
  int heads = 0;
  std::vector<LabHostRole> out;
  for (int i = 0; i < hosts; ++i) {
    LabHostRole r;
    if (!roles.empty()) {
      r.role = std::string(trim(roles[i]));
      bool known = std::any_of(std::begin(lab_roles), std::end(lab_roles), [&](char const* k) { return r.role == k; });
      if (!known) {
        std::string msg = "lab: role \"" + r.role + "\" for h" + std::to_string(i + 1) + " is not one of " + known_roles_text();
        if (r.role == "nas") {
          msg += "; the nas is a host of its own: add it with --nas";
        } else {
          char const* best = nullptr;
          std::size_t best_d = 3;
          for (auto const* k : lab_roles)
            if (auto d = distance(r.role, k); d < best_d) best_d = d, best = k;
          if (best && !r.role.empty()) msg += std::string("; did you mean \"") + best + "\"?";
        }
        invalid(msg + ".");
      }
    } else if (gpus > 0) {
      r.role = i == 0 ? "head" : "worker";
    }
    if (r.role == "head" && ++heads > 1)
      invalid("lab: more than one host has the role \"head\" (h" + std::to_string(i + 1) +
              " is the second); a Ray cluster has one head, the other GPU hosts are \"worker\".");
    r.gpus = is_gpu_role(r.role) ? gpus : 0;
    r.groups.push_back("lab");
    if (is_gpu_role(r.role)) r.groups.push_back("gpu");
    if (r.role == "download") r.groups.push_back("download");
    out.push_back(std::move(r));
  }
  return out;
}

std::string lab_inventory_text(LabInventory const& inv) {
  bool const any_gpus = std::any_of(inv.hosts.begin(), inv.hosts.end(), [](auto const& h) { return h.role.gpus > 0; });
  std::ostringstream y;
  y << "# Written by `clusterkit lab up` (lab \"" << inv.lab << "\"). Lab hosts are namespaces on one machine; "
    << (any_gpus ? "they have no real GPUs.\n" : "they have no GPUs.\n");
  if (any_gpus)
    y << "# SIMULATED GPUs: each `gpus:` entry below (simulated: true) declares GPUs that do\n"
      << "# not exist. Planning and preflight count them (marked simulated), Ray can be\n"
      << "# given them as logical GPUs (--num-gpus); nvidia-smi is absent and\n"
      << "# `docker run --gpus` fails as on a server without the NVIDIA toolkit.\n";
  if (inv.docker)
    y << "# Docker: each host runs its own real engine (`docker` over ssh talks to it).\n"
      << "# runtime_image is a local Debian bookworm image; the Ray/vLLM venv is on the\n"
      << "# machine and is mounted into containers at the same path (serve_venv).\n";
  y << "defaults:\n"
    << "  user: root\n"
    << "  identity_file: " << inv.identity_file << "\n"
    << "  known_hosts_file: " << inv.known_hosts_file << "\n"
    << "  host_key_policy: strict\n";
  std::vector<std::string> vars;
  if (!inv.nas_address.empty()) {
    // `clusterkit nas mount -g lab` mounts the lab's NAS with no more said.
    vars.push_back("mount_point: /mnt");
    vars.push_back("nas_type: sshfs");
    vars.push_back("nas_export: \"root@" + inv.nas_address + ":/srv/nas\"");
    vars.push_back("nas_identity_file: " + inv.identity_file);
    vars.push_back("nas_known_hosts_file: " + inv.known_hosts_file);
  }
  if (inv.docker) {
    vars.push_back("runtime_image: " + inv.runtime_image);
    vars.push_back("serve_venv: " + inv.serve_venv);
  }
  if (!vars.empty()) {
    y << "  vars: {";
    for (std::size_t i = 0; i < vars.size(); ++i) y << (i ? ", " : "") << vars[i];
    y << "}\n";
  }
  y << "hosts:\n";
  for (auto const& h : inv.hosts) {
    if (h.nas) {
      y << "  " << h.name << ": {address: " << h.address << ", roles: [nas], groups: [storage]}\n";
      continue;
    }
    y << "  " << h.name << ": {address: " << h.address;
    if (!h.role.role.empty()) y << ", roles: [" << h.role.role << "]";
    y << ", groups: " << list_text(h.role.groups.empty() ? std::vector<std::string>{"lab"} : h.role.groups);
    if (h.role.gpus > 0)
      y << ", gpus: {count: " << h.role.gpus << ", model: " << yaml_string(inv.gpu_model)
        << ", memory_gib: " << number_text(inv.gpu_memory_gib) << ", simulated: true}";
    y << "}\n";
  }
  return y.str();
}

std::string cgroup_mount_script(std::string_view mountinfo, std::vector<CgroupLink> const& links) {
  // The top mount at each path under /sys/fs/cgroup, shallow paths first.
  std::vector<MountEntry> mounts;
  for (auto& e : parse_mountinfo(mountinfo)) {
    if (!under_cgroup_root(e.mount_point)) continue;
    if (e.fstype != "tmpfs" && e.fstype != "cgroup" && e.fstype != "cgroup2") continue;
    auto same = std::find_if(mounts.begin(), mounts.end(), [&](auto const& m) { return m.mount_point == e.mount_point; });
    if (same != mounts.end())
      *same = std::move(e);  // mounted over: the later one is what is seen
    else
      mounts.push_back(std::move(e));
  }
  if (mounts.empty()) return {};
  std::stable_sort(mounts.begin(), mounts.end(), [](auto const& a, auto const& b) {
    return std::count(a.mount_point.begin(), a.mount_point.end(), '/') <
           std::count(b.mount_point.begin(), b.mount_point.end(), '/');
  });
  std::ostringstream s;
  bool tmpfs_root = false;
  if (mounts.front().mount_point != kCgroupRoot) {
    // Hierarchies without a root mount of their own: give them one.
    s << "mount -t tmpfs -o mode=755 cgroup " << kCgroupRoot << "\n";
    tmpfs_root = true;
  }
  for (auto const& m : mounts) {
    std::string opts = options_for(m);
    std::string o = opts.empty() ? "" : " -o " + shell::quote(opts);
    std::string path = shell::quote(m.mount_point);
    if (m.mount_point == kCgroupRoot) {
      if (m.fstype == "tmpfs") {
        s << "mount -t tmpfs" << o << " cgroup " << path << "\n";
        tmpfs_root = true;
      } else {
        s << "mount -t " << m.fstype << o << " " << m.fstype << " " << path << "\n";
      }
      continue;
    }
    s << "mkdir -p " << path << "\n";
    s << "mount -t " << m.fstype << o << " " << m.fstype << " " << path << "\n";
  }
  if (tmpfs_root)
    for (auto const& l : links) {
      if (l.name.empty() || l.name.find('/') != std::string::npos) continue;
      s << "ln -s " << shell::quote(l.target) << " " << shell::quote(std::string(kCgroupRoot) + "/" + l.name) << "\n";
    }
  return s.str();
}

std::vector<std::string> cgroup_roots(std::string_view mountinfo) {
  std::vector<std::string> out;
  for (auto const& e : parse_mountinfo(mountinfo))
    if ((e.fstype == "cgroup" || e.fstype == "cgroup2") &&
        std::find(out.begin(), out.end(), e.mount_point) == out.end())
      out.push_back(e.mount_point);
  return out;
}

LabDockerPaths lab_docker_paths(std::string const& state_dir, std::string const& host, std::string const& netns) {
  LabDockerPaths p;
  p.dir = state_dir + "/docker-" + host;
  p.socket = state_dir + "/docker-" + host + ".sock";
  p.daemon_json = p.dir + "/daemon.json";
  p.containerd_toml = p.dir + "/containerd.toml";
  p.containerd_socket = p.dir + "/containerd/containerd.sock";
  p.data_root = p.dir + "/data";
  p.exec_root = p.dir + "/exec";
  p.pidfile = p.dir + "/docker.pid";
  p.key_file = p.dir + "/key.json";
  p.dockerd_log = p.dir + "/dockerd.log";
  p.containerd_log = p.dir + "/containerd.log";
  p.cgroup_parent = "/" + netns;
  return p;
}

std::string docker_daemon_json(LabDockerPaths const& paths) {
  nlohmann::ordered_json j{{"iptables", false},
                           {"ip6tables", false},
                           {"ip-forward", false},
                           {"ip-masq", false},
                           {"bridge", "none"},
                           {"exec-opts", {"native.cgroupdriver=cgroupfs"}},
                           {"storage-driver", "overlay2"},
                           {"deprecated-key-path", paths.key_file}};
  return j.dump(2) + "\n";
}

std::string containerd_toml(LabDockerPaths const& paths) {
  auto q = [](std::string const& s) { return nlohmann::json(s).dump(); };  // a TOML basic string
  std::ostringstream t;
  t << "# Written by `clusterkit lab up`: this host's containerd, for its dockerd only.\n"
    << "version = 2\n"
    << "root = " << q(paths.dir + "/containerd/root") << "\n"
    << "state = " << q(paths.dir + "/containerd/state") << "\n"
    << "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\"]\n"
    << "[grpc]\n"
    << "  address = " << q(paths.containerd_socket) << "\n";
  return t.str();
}

std::optional<std::string> debian_mirror_for(std::string_view suite,
                                             std::vector<std::pair<std::string, std::string>> const& sources) {
  auto clean = [](std::string uri) {
    while (uri.size() > 1 && uri.back() == '/') uri.pop_back();
    return uri;
  };
  auto usable = [](std::string_view uri) {
    return uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0 || uri.rfind("file:/", 0) == 0;
  };
  for (auto const& [file, text] : sources) {
    bool deb822 = file.size() >= 8 && file.compare(file.size() - 8, 8, ".sources") == 0;
    if (!deb822) {
      for (auto line : lines_of(text)) {
        line = trim(line.substr(0, line.find('#')));
        auto f = split_ws(line);
        if (f.empty() || f[0] != "deb") continue;
        std::size_t i = 1;
        if (i < f.size() && !f[i].empty() && f[i][0] == '[') {  // [options]
          while (i < f.size() && f[i].back() != ']') ++i;
          ++i;
        }
        if (i + 1 < f.size() && f[i + 1] == suite && usable(f[i])) return clean(std::string(f[i]));
      }
      continue;
    }
    // deb822: stanzas separated by blank lines; a field may continue on
    // lines that start with white space.
    std::vector<std::pair<std::string, std::string>> fields;
    auto finish = [&]() -> std::optional<std::string> {
      std::string types, uris, suites, enabled = "yes";
      for (auto const& [k, v] : fields) {
        std::string key = k;
        std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
        if (key == "types") types = v;
        if (key == "uris") uris = v;
        if (key == "suites") suites = v;
        if (key == "enabled") enabled = std::string(trim(v));
      }
      fields.clear();
      if (enabled == "no") return std::nullopt;
      auto t = split_ws(types);
      auto s = split_ws(suites);
      if (std::find(t.begin(), t.end(), std::string_view("deb")) == t.end()) return std::nullopt;
      if (std::find(s.begin(), s.end(), suite) == s.end()) return std::nullopt;
      for (auto u : split_ws(uris))
        if (usable(u)) return clean(std::string(u));
      return std::nullopt;
    };
    for (auto line : lines_of(text)) {
      if (!line.empty() && line[0] == '#') continue;
      if (trim(line).empty()) {
        if (auto m = finish()) return m;
        continue;
      }
      if ((line[0] == ' ' || line[0] == '\t') && !fields.empty()) {
        fields.back().second += " " + std::string(trim(line));
        continue;
      }
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      fields.emplace_back(std::string(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
    }
    if (auto m = finish()) return m;
  }
  return std::nullopt;
}

}  // namespace clusterkit::detail
