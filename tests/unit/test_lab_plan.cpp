// The lab's pure half: roles and simulated GPUs, the inventory it writes
// (read back with the real inventory parser), the cgroup mounts a Docker
// host needs (from mount tables captured on real machines), the engine's
// configuration and the apt mirror. No root, no processes.
#include "clusterkit/detail/lab_plan.hpp"

#include <catch2/catch.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/shell.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

using namespace clusterkit;
using namespace clusterkit::detail;

namespace {

std::string error_of(std::function<void()> const& fn, std::error_code* code = nullptr) {
  try {
    fn();
  } catch (Error const& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return {};
}

bool parses_as_sh(std::string const& script) {
  auto cmd = "/bin/sh -n -c " + shell::quote(script) + " 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

// /proc/self/mountinfo of this project's Debian 12 machine (cgroup v1
// hybrid), the lines under /sys/fs/cgroup and a few around them.
constexpr char const* kHybridMountinfo =
    "23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "25 23 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "31 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "60 23 0:50 / /run/netns rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,mode=755\n";

// A pure cgroup v2 machine with systemd (Debian 12 / Ubuntu 24.04 default).
constexpr char const* kV2Mountinfo =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "24 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "31 24 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:5 - pstore pstore rw\n";

// systemd's hybrid layout on an older distribution: a read-only tmpfs, the
// v1 controllers co-mounted (cpu,cpuacct) with links to them, a
// release_agent on the named hierarchy.
constexpr char const* kSystemdHybridMountinfo =
    "25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755,inode64\n"
    "26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
    "27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup "
    "rw,xattr,name=systemd,release_agent=/lib/systemd/systemd-cgroups-agent\n"
    "30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct\n"
    "31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n";

}  // namespace

TEST_CASE("lab plan: roles and simulated GPUs per host", "[lab_plan]") {
  SECTION("no roles, no GPUs: a plain lab") {
    auto r = assign_lab_roles(3, 0, {});
    REQUIRE(r.size() == 3);
    for (auto const& h : r) {
      CHECK(h.role.empty());
      CHECK(h.gpus == 0);
      CHECK(h.groups == std::vector<std::string>{"lab"});
    }
  }
  SECTION("GPUs without roles: h1 head, the others worker") {
    auto r = assign_lab_roles(3, 2, {});
    CHECK(r[0].role == "head");
    CHECK(r[1].role == "worker");
    CHECK(r[2].role == "worker");
    for (auto const& h : r) {
      CHECK(h.gpus == 2);
      CHECK(h.groups == std::vector<std::string>{"lab", "gpu"});
    }
  }
  SECTION("roles in order; a download host gets no GPUs") {
    auto r = assign_lab_roles(3, 2, {"head", "worker", "download"});
    CHECK(r[0].role == "head");
    CHECK(r[0].gpus == 2);
    CHECK(r[2].role == "download");
    CHECK(r[2].gpus == 0);
    CHECK(r[2].groups == std::vector<std::string>{"lab", "download"});
    auto g = assign_lab_roles(2, 4, {"gpu", "gpu"});
    CHECK(g[1].gpus == 4);
    CHECK(g[1].groups == std::vector<std::string>{"lab", "gpu"});
  }
  SECTION("mistakes are refused with what to type instead") {
    std::error_code code;
    auto msg = error_of([] { assign_lab_roles(3, 2, {"head", "worker"}); }, &code);
    CHECK(code == errc::invalid_argument);
    CHECK(msg.find("3 hosts but 2 roles") != std::string::npos);
    CHECK(msg.find("--roles head,worker,download") != std::string::npos);
    msg = error_of([] { assign_lab_roles(2, 2, {"head", "wroker"}); });
    CHECK(msg.find("role \"wroker\" for h2") != std::string::npos);
    CHECK(msg.find("did you mean \"worker\"") != std::string::npos);
    msg = error_of([] { assign_lab_roles(2, 2, {"head", "nas"}); });
    CHECK(msg.find("--nas") != std::string::npos);
    msg = error_of([] { assign_lab_roles(2, 2, {"head", "head"}); });
    CHECK(msg.find("one head") != std::string::npos);
    CHECK(error_of([] { assign_lab_roles(2, -1, {}); }).find("0 to 64") != std::string::npos);
  }
}

TEST_CASE("lab plan: the inventory reads back with the simulated GPUs, roles, groups and vars", "[lab_plan]") {
  LabInventory inv;
  inv.lab = "tl";
  inv.identity_file = "/run/clusterkit/lab-tl/id_ed25519";
  inv.known_hosts_file = "/run/clusterkit/lab-tl/known_hosts";
  inv.docker = true;
  inv.runtime_image = "clusterkit/lab-runtime:bookworm";
  inv.serve_venv = "/opt/ck-serve";
  inv.gpu_model = "NVIDIA L20";
  inv.gpu_memory_gib = 47.5;
  inv.nas_address = "10.88.70.250";
  auto roles = assign_lab_roles(3, 2, {"head", "worker", "download"});
  inv.hosts = {{"h1", "10.88.70.11", false, roles[0]},
               {"h2", "10.88.70.12", false, roles[1]},
               {"h3", "10.88.70.13", false, roles[2]},
               {"nas", "10.88.70.250", true, {"nas", 0, {"storage"}}}};
  std::string text = lab_inventory_text(inv);
  INFO(text);
  CHECK(text.find("# SIMULATED GPUs:") != std::string::npos);
  CHECK(text.find("they have no real GPUs") != std::string::npos);
  CHECK(text.find("# Docker: each host runs its own real engine") != std::string::npos);

  auto parsed = Inventory::parse(text, "lab inventory");
  REQUIRE(parsed.hosts().size() == 4);
  auto const* h1 = parsed.find("h1");
  REQUIRE(h1);
  CHECK(h1->roles == std::vector<std::string>{"head"});
  CHECK(h1->groups == std::vector<std::string>{"gpu", "lab"});
  auto gpus = declared_gpus(*h1);
  REQUIRE(gpus);
  CHECK(gpus->count == 2);
  CHECK(gpus->model == "NVIDIA L20");
  CHECK(gpus->memory_gib == 47.5);
  CHECK(gpus->simulated);
  auto const* h3 = parsed.find("h3");
  REQUIRE(h3);
  CHECK(h3->roles == std::vector<std::string>{"download"});
  CHECK_FALSE(declared_gpus(*h3));
  CHECK(parsed.select("gpu").size() == 2);
  CHECK(parsed.select("download").size() == 1);
  CHECK(parsed.select("role:worker").front().spec.name == "h2");
  // The defaults' vars reach every host: the NAS's and Docker's together.
  auto const& vars = h1->extra.at("vars");
  CHECK(vars.at("runtime_image") == "clusterkit/lab-runtime:bookworm");
  CHECK(vars.at("serve_venv") == "/opt/ck-serve");
  CHECK(vars.at("nas_export") == "root@10.88.70.250:/srv/nas");
  CHECK(parsed.find("nas")->roles == std::vector<std::string>{"nas"});

  // Without GPUs and Docker the text is what plain labs have always had.
  LabInventory plain;
  plain.lab = "tl";
  plain.identity_file = "/k";
  plain.known_hosts_file = "/kh";
  plain.hosts = {{"h1", "10.88.70.11", false, assign_lab_roles(1, 0, {})[0]}};
  CHECK(lab_inventory_text(plain) ==
        "# Written by `clusterkit lab up` (lab \"tl\"). Lab hosts are namespaces on one machine; they have no GPUs.\n"
        "defaults:\n"
        "  user: root\n"
        "  identity_file: /k\n"
        "  known_hosts_file: /kh\n"
        "  host_key_policy: strict\n"
        "hosts:\n"
        "  h1: {address: 10.88.70.11, groups: [lab]}\n");
}

TEST_CASE("lab plan: cgroup mounts mirror the machine's", "[lab_plan]") {
  SECTION("cgroup v1 hybrid (this project's machines)") {
    std::string s = cgroup_mount_script(kHybridMountinfo);
    INFO(s);
    CHECK(s ==
          "mount -t tmpfs -o 'mode=755' cgroup '/sys/fs/cgroup'\n"
          "mkdir -p '/sys/fs/cgroup/cpu'\nmount -t cgroup -o 'cpu' cgroup '/sys/fs/cgroup/cpu'\n"
          "mkdir -p '/sys/fs/cgroup/cpuacct'\nmount -t cgroup -o 'cpuacct' cgroup '/sys/fs/cgroup/cpuacct'\n"
          "mkdir -p '/sys/fs/cgroup/cpuset'\nmount -t cgroup -o 'cpuset' cgroup '/sys/fs/cgroup/cpuset'\n"
          "mkdir -p '/sys/fs/cgroup/memory'\nmount -t cgroup -o 'memory' cgroup '/sys/fs/cgroup/memory'\n"
          "mkdir -p '/sys/fs/cgroup/devices'\nmount -t cgroup -o 'devices' cgroup '/sys/fs/cgroup/devices'\n"
          "mkdir -p '/sys/fs/cgroup/freezer'\nmount -t cgroup -o 'freezer' cgroup '/sys/fs/cgroup/freezer'\n"
          "mkdir -p '/sys/fs/cgroup/blkio'\nmount -t cgroup -o 'blkio' cgroup '/sys/fs/cgroup/blkio'\n"
          "mkdir -p '/sys/fs/cgroup/pids'\nmount -t cgroup -o 'pids' cgroup '/sys/fs/cgroup/pids'\n"
          "mkdir -p '/sys/fs/cgroup/systemd'\nmount -t cgroup -o 'name=systemd' cgroup '/sys/fs/cgroup/systemd'\n"
          "mkdir -p '/sys/fs/cgroup/unified'\nmount -t cgroup2 cgroup2 '/sys/fs/cgroup/unified'\n");
    CHECK(parses_as_sh(s));
    CHECK(cgroup_roots(kHybridMountinfo).size() == 10);
  }
  SECTION("pure cgroup v2: one mount, its global options kept") {
    std::string s = cgroup_mount_script(kV2Mountinfo, {{"ignored", "x"}});
    CHECK(s == "mount -t cgroup2 -o 'nosuid,nodev,noexec,nsdelegate,memory_recursiveprot' cgroup2 '/sys/fs/cgroup'\n");
    CHECK(cgroup_roots(kV2Mountinfo) == std::vector<std::string>{"/sys/fs/cgroup"});
  }
  SECTION("systemd hybrid: co-mounted controllers, links, no release_agent, a writable root") {
    std::string s = cgroup_mount_script(kSystemdHybridMountinfo, {{"cpu", "cpu,cpuacct"}, {"cpuacct", "cpu,cpuacct"}});
    INFO(s);
    CHECK(s.find("mount -t tmpfs -o 'nosuid,nodev,noexec,mode=755,inode64' cgroup '/sys/fs/cgroup'\n") == 0);
    CHECK(s.find("mount -t cgroup -o 'nosuid,nodev,noexec,cpu,cpuacct' cgroup '/sys/fs/cgroup/cpu,cpuacct'") !=
          std::string::npos);
    CHECK(s.find("mount -t cgroup -o 'nosuid,nodev,noexec,xattr,name=systemd' cgroup") != std::string::npos);
    CHECK(s.find("release_agent") == std::string::npos);
    CHECK(s.find("mount -t cgroup2 -o 'nosuid,nodev,noexec,nsdelegate' cgroup2 '/sys/fs/cgroup/unified'") !=
          std::string::npos);
    CHECK(s.find("ln -s 'cpu,cpuacct' '/sys/fs/cgroup/cpu'\n") != std::string::npos);
    CHECK(parses_as_sh(s));
  }
  SECTION("no cgroups at all") {
    CHECK(cgroup_mount_script("23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n").empty());
    CHECK(cgroup_mount_script("").empty());
  }
  SECTION("escaped mount points") {
    std::string s = cgroup_mount_script("31 25 0:28 / /sys/fs/cgroup/a\\040b rw - cgroup cgroup rw,pids\n");
    CHECK(s.find("'/sys/fs/cgroup/a b'") != std::string::npos);
  }
}

TEST_CASE("lab plan: each engine's files stay in the lab's state folder", "[lab_plan]") {
  auto p = lab_docker_paths("/run/clusterkit/lab-tl", "h2", "ck-tl-h2");
  CHECK(p.socket == "/run/clusterkit/lab-tl/docker-h2.sock");
  CHECK(p.data_root == "/run/clusterkit/lab-tl/docker-h2/data");
  CHECK(p.exec_root == "/run/clusterkit/lab-tl/docker-h2/exec");
  CHECK(p.cgroup_parent == "/ck-tl-h2");
  auto j = nlohmann::json::parse(docker_daemon_json(p));
  // Each of these left at Docker's default would change the machine's own
  // network (FORWARD policy DROP, ip_forward, a docker0 bridge).
  CHECK(j.at("iptables") == false);
  CHECK(j.at("ip6tables") == false);
  CHECK(j.at("ip-forward") == false);
  CHECK(j.at("ip-masq") == false);
  CHECK(j.at("bridge") == "none");
  CHECK(j.at("exec-opts") == nlohmann::json{"native.cgroupdriver=cgroupfs"});
  CHECK(j.at("storage-driver") == "overlay2");
  CHECK(j.at("deprecated-key-path") == "/run/clusterkit/lab-tl/docker-h2/key.json");
  auto t = containerd_toml(p);
  CHECK(t.find("root = \"/run/clusterkit/lab-tl/docker-h2/containerd/root\"") != std::string::npos);
  CHECK(t.find("state = \"/run/clusterkit/lab-tl/docker-h2/containerd/state\"") != std::string::npos);
  CHECK(t.find("address = \"/run/clusterkit/lab-tl/docker-h2/containerd/containerd.sock\"") != std::string::npos);
  CHECK(t.find("\"io.containerd.internal.v1.opt\"") != std::string::npos);
}

TEST_CASE("lab plan: the Debian mirror from apt's sources", "[lab_plan]") {
  // This project's machines (deb822).
  std::string const debian_sources =
      "Types: deb\n"
      "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
      "URIs: http://deb.debian.org/debian\n"
      "Suites: bookworm bookworm-updates\n"
      "Components: main\n"
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
      "\n"
      "Types: deb\n"
      "URIs: http://deb.debian.org/debian-security\n"
      "Suites: bookworm-security\n"
      "Components: main\n";
  CHECK(debian_mirror_for("bookworm", {{"/etc/apt/sources.list", ""},
                                       {"/etc/apt/sources.list.d/debian.sources", debian_sources}}) ==
        "http://deb.debian.org/debian");
  CHECK_FALSE(debian_mirror_for("trixie", {{"/etc/apt/sources.list.d/debian.sources", debian_sources}}));
  // One-line format, with options, after a deb-src and a security line.
  std::string const list =
      "# comment\n"
      "deb-src http://src.example/debian bookworm main\n"
      "deb http://security.debian.org/debian-security bookworm-security main\n"
      "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://mirror.example/debian/ bookworm main contrib\n";
  CHECK(debian_mirror_for("bookworm", {{"/etc/apt/sources.list", list}}) == "https://mirror.example/debian");
  // A disabled stanza is skipped; continuation lines are read.
  std::string const disabled =
      "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
      "Types: deb deb-src\nURIs:\n http://on.example/debian\nSuites: bookworm\n";
  CHECK(debian_mirror_for("bookworm", {{"x.sources", disabled}}) == "http://on.example/debian");
  CHECK_FALSE(debian_mirror_for("bookworm", {}));
}
