// The lab against the real system: needs root; starts real sshd hosts in
// namespaces on subnet 10.88.7.0/24 (lab "tlab"), and always takes them
// down again, even when a check fails.
#include <catch2/catch.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "lab/machine_mounts.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace clusterkit;

namespace {

constexpr char const* kName = "tlab";
constexpr char const* kSubnet = "10.88.7";
std::string const kStateDir = "/tmp/clusterkit-test-lab-tlab";

struct Out {
  int status = -1;
  std::string text;
};

std::string quote(std::string const& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command line on the machine, capturing stdout.
Out sh(std::string const& cmd) {
  Out o;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return o;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.text.append(buf, n);
  int st = ::pclose(p);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  while (!o.text.empty() && (o.text.back() == '\n' || o.text.back() == ' ')) o.text.pop_back();
  return o;
}

// ssh with the lab's key and strict host key checking against its known_hosts.
Out ssh(LabStatus const& lab, std::string const& address, std::string const& command) {
  return sh("ssh -F /dev/null -i " + lab.identity_file + " -o UserKnownHostsFile=" + lab.known_hosts_file +
            " -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR root@" + address + " " +
            quote(command) + " 2>&1");
}

bool pid_alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

bool bridge_exists() { return fs::exists("/sys/class/net/ckbr-tlab"); }

std::vector<std::string> lab_netns() {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto const& e : fs::directory_iterator("/run/netns", ec))
    if (e.path().filename().string().rfind("ck-tlab-", 0) == 0) out.push_back(e.path().filename().string());
  return out;
}

std::vector<std::string> lab_veths() {
  std::vector<std::string> out;
  for (auto const& e : fs::directory_iterator("/sys/class/net"))
    if (e.path().filename().string().rfind("vtlab-", 0) == 0) out.push_back(e.path().filename().string());
  return out;
}

// The machine's mount table, without /run/netns: `ip netns add` itself keeps
// each named network namespace as a bind mount there (that is how named
// namespaces exist); everything else must stay exactly as it was.
std::string mountinfo_of_machine() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, out;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == "/run/netns" || mount_point.rfind("/run/netns/", 0) == 0) continue;
    out += line + "\n";
  }
  return out;
}

// Tears the test lab down whatever happens in the test body.
struct LabGuard {
  LabGuard() { lab_down(kName, kStateDir); }
  ~LabGuard() {
    try {
      lab_down(kName, kStateDir);
    } catch (std::exception const& e) {
      std::fprintf(stderr, "lab_down in guard failed: %s\n", e.what());
    }
  }
};

LabOptions options(int hosts, bool nas) {
  LabOptions o;
  o.name = kName;
  o.hosts = hosts;
  o.nas = nas;
  o.subnet = kSubnet;
  o.state_dir = kStateDir;
  return o;
}

void require_nothing_left(std::vector<int> const& pids) {
  CHECK(lab_netns().empty());
  CHECK(lab_veths().empty());
  CHECK_FALSE(bridge_exists());
  CHECK_FALSE(fs::exists(kStateDir));
  for (int pid : pids) CHECK_FALSE(pid_alive(pid));
  auto s = lab_status(kName, kStateDir);
  CHECK_FALSE(s.exists);
  CHECK(s.hosts.empty());
}

}  // namespace

TEST_CASE("lab: hosts are separate machines reachable over ssh", "[lab]") {
  if (::geteuid() != 0) {
    WARN("lab tests need root; skipped");
    return;
  }
  LabGuard guard;
  std::string const machine_mounts = mountinfo_of_machine();
  bool const srv_nas_before = fs::exists("/srv/nas");

  auto t0 = std::chrono::steady_clock::now();
  LabStatus lab = lab_up(options(3, true));
  auto up_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  WARN("lab_up with 3 hosts + nas took " << up_ms << " ms");

  REQUIRE(lab.exists);
  CHECK(lab.name == kName);
  CHECK(lab.state_dir == kStateDir);
  CHECK(lab.bridge == "ckbr-tlab");
  REQUIRE(lab.hosts.size() == 4);
  std::vector<std::string> const names{"h1", "h2", "h3", "nas"};
  std::vector<std::string> const addrs{"10.88.7.11", "10.88.7.12", "10.88.7.13", "10.88.7.250"};
  std::set<int> pids;
  for (size_t i = 0; i < 4; ++i) {
    CHECK(lab.hosts[i].name == names[i]);
    CHECK(lab.hosts[i].address == addrs[i]);
    CHECK(lab.hosts[i].netns == "ck-tlab-" + names[i]);
    CHECK(lab.hosts[i].running);
    CHECK(pid_alive(lab.hosts[i].sshd_pid));
    pids.insert(lab.hosts[i].sshd_pid);
  }
  CHECK(pids.size() == 4);
  CHECK(bridge_exists());
  CHECK(lab_netns().size() == 4);

  // State folder: private, with keys, known_hosts and the inventory.
  CHECK((fs::status(kStateDir).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK(fs::exists(lab.identity_file));
  {
    std::ifstream kh(lab.known_hosts_file);
    std::string line;
    int lines = 0;
    while (std::getline(kh, line)) {
      CHECK(line.rfind(addrs[lines] + " ssh-ed25519 ", 0) == 0);
      ++lines;
    }
    CHECK(lines == 4);
  }
  {
    std::ifstream in(lab.inventory_path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string const expected =
        "# Written by `clusterkit lab up` (lab \"tlab\"). Lab hosts are namespaces on one machine; they have no GPUs.\n"
        "defaults:\n"
        "  user: root\n"
        "  identity_file: " + kStateDir + "/id_ed25519\n"
        "  known_hosts_file: " + kStateDir + "/known_hosts\n"
        "  host_key_policy: strict\n"
        "  vars: {mount_point: /mnt, nas_type: sshfs, nas_export: \"root@10.88.7.250:/srv/nas\", nas_identity_file: " +
        kStateDir + "/id_ed25519, nas_known_hosts_file: " + kStateDir + "/known_hosts}\n"
        "hosts:\n"
        "  h1: {address: 10.88.7.11, groups: [lab]}\n"
        "  h2: {address: 10.88.7.12, groups: [lab]}\n"
        "  h3: {address: 10.88.7.13, groups: [lab]}\n"
        "  nas: {address: 10.88.7.250, roles: [nas], groups: [storage]}\n";
    CHECK(ss.str() == expected);
  }

  // Status agrees with what lab_up returned.
  {
    auto s = lab_status(kName, kStateDir);
    REQUIRE(s.exists);
    REQUIRE(s.hosts.size() == 4);
    for (size_t i = 0; i < 4; ++i) {
      CHECK(s.hosts[i].running);
      CHECK(s.hosts[i].sshd_pid == lab.hosts[i].sshd_pid);
    }
  }

  // Each host answers over ssh with strict host key checking, under its own
  // hostname, with its own pid namespace in which sshd is pid 1.
  std::string const machine_hostname = sh("hostname").text;
  std::string const machine_pidns = sh("readlink /proc/self/ns/pid").text;
  std::set<std::string> pidns;
  for (size_t i = 0; i < 4; ++i) {
    INFO("host " << names[i]);
    auto hn = ssh(lab, addrs[i], "hostname");
    CHECK(hn.status == 0);
    CHECK(hn.text == names[i]);
    CHECK(hn.text != machine_hostname);
    auto ns = ssh(lab, addrs[i], "readlink /proc/self/ns/pid; cat /proc/1/comm; ps -e --no-headers | wc -l");
    REQUIRE(ns.status == 0);
    std::istringstream lines(ns.text);
    std::string pid_ns, comm, count;
    std::getline(lines, pid_ns);
    std::getline(lines, comm);
    std::getline(lines, count);
    CHECK(pid_ns != machine_pidns);
    pidns.insert(pid_ns);
    CHECK(comm == "sshd");
    CHECK(std::stoi(count) < 15);  // sshd, its session, the shell, ps, wc
    // root's slow ~/.bashrc is hidden behind an empty file.
    CHECK(ssh(lab, addrs[i], "wc -c < /root/.bashrc").text == "0");
    // /mnt is a private tmpfs, ready for sshfs.
    CHECK(ssh(lab, addrs[i], "stat -f -c %T /mnt").text == "tmpfs");
  }
  CHECK(pidns.size() == 4);

  // A file in /tmp on h1 is invisible on h2 and on the machine.
  std::string const marker = "/tmp/clusterkit-lab-private-" + std::to_string(::getpid());
  REQUIRE(ssh(lab, addrs[0], "echo hello > " + marker).status == 0);
  CHECK(ssh(lab, addrs[0], "cat " + marker).text == "hello");
  CHECK(ssh(lab, addrs[1], "test -e " + marker).status == 1);
  CHECK_FALSE(fs::exists(marker));
  // Hosts reach each other over the bridge.
  CHECK(ssh(lab, addrs[0], "timeout 3 bash -c 'exec 3<>/dev/tcp/10.88.7.12/22; head -c 4 <&3'").text == "SSH-");

  // The nas exports /srv/nas, backed by the state folder's nas-export, over
  // ssh and sftp; nothing appears on the machine's /srv.
  REQUIRE(ssh(lab, addrs[3], "test -d /srv/nas && echo from-nas > /srv/nas/a.txt").status == 0);
  {
    std::ifstream in(kStateDir + "/nas-export/a.txt");
    std::string got;
    std::getline(in, got);
    CHECK(got == "from-nas");
  }
  std::ofstream(kStateDir + "/nas-export/b.txt") << "from-machine\n";
  CHECK(ssh(lab, addrs[3], "cat /srv/nas/b.txt").text == "from-machine");
  CHECK(ssh(lab, addrs[0], "test -e /srv/nas/a.txt").status == 1);
  auto sftp = sh("echo 'ls /srv/nas' | sftp -F /dev/null -i " + lab.identity_file + " -o UserKnownHostsFile=" +
                 lab.known_hosts_file + " -o StrictHostKeyChecking=yes -o BatchMode=yes -b - root@" + addrs[3] + " 2>&1");
  CHECK(sftp.status == 0);
  CHECK(sftp.text.find("a.txt") != std::string::npos);
  CHECK(fs::exists("/srv/nas") == srv_nas_before);

  // A GPU host mounts the nas with sshfs in its own /mnt (the lab's key and
  // known_hosts are visible inside the hosts at the same paths).
  {
    auto mounted = ssh(lab, addrs[0],
                       "sshfs -o reconnect,IdentityFile=" + lab.identity_file + ",UserKnownHostsFile=" +
                           lab.known_hosts_file + ",StrictHostKeyChecking=yes,BatchMode=yes root@" + addrs[3] +
                           ":/srv/nas /mnt && cat /mnt/a.txt && echo from-h1 > /mnt/c.txt && fusermount -u /mnt");
    CHECK(mounted.status == 0);
    CHECK(mounted.text == "from-nas");
    std::ifstream in(kStateDir + "/nas-export/c.txt");
    std::string got;
    std::getline(in, got);
    CHECK(got == "from-h1");
    CHECK_FALSE(fs::exists("/mnt/a.txt"));
  }

  // Nothing was mounted in the machine's own mount namespace.
  CHECK(mountinfo_of_machine() == machine_mounts);

  // lab_up again with the same shape is a no-op.
  auto t1 = std::chrono::steady_clock::now();
  LabStatus again = lab_up(options(3, true));
  auto again_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
  WARN("lab_up on a healthy lab took " << again_ms << " ms");
  REQUIRE(again.hosts.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CHECK(again.hosts[i].sshd_pid == lab.hosts[i].sshd_pid);
    CHECK(again.hosts[i].running);
  }
  CHECK(ssh(lab, addrs[0], "cat " + marker).text == "hello");  // h1 was not restarted

  auto t2 = std::chrono::steady_clock::now();
  lab_down(kName, kStateDir);
  auto down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t2).count();
  WARN("lab_down with 3 hosts + nas took " << down_ms << " ms");
  require_nothing_left({pids.begin(), pids.end()});
  CHECK_FALSE(fs::exists(std::string("/run/clusterkit/lab-") + kName + ".lock"));  // nothing left, the lock neither
  CHECK(mountinfo_of_machine() == machine_mounts);
}

TEST_CASE("lab: down cleans up without state.json", "[lab]") {
  if (::geteuid() != 0) return;
  LabGuard guard;
  LabStatus lab = lab_up(options(2, false));
  REQUIRE(lab.hosts.size() == 2);
  std::vector<int> pids{lab.hosts[0].sshd_pid, lab.hosts[1].sshd_pid};
  for (int pid : pids) REQUIRE(pid_alive(pid));
  // A session on h1 that keeps a child process running inside the host.
  REQUIRE(ssh(lab, "10.88.7.11", "nohup sleep 987654 > /dev/null 2>&1 & echo started").text == "started");
  CHECK(sh("ps -eo args | grep -c '^sleep 987654$'").text == "1");

  // As if lab_up crashed before writing its state.
  fs::remove(kStateDir + "/state.json");
  auto s = lab_status(kName, kStateDir);
  CHECK(s.exists);
  REQUIRE(s.hosts.size() == 2);
  CHECK(s.hosts[0].running);
  CHECK(s.hosts[0].sshd_pid == pids[0]);

  lab_down(kName, kStateDir);
  require_nothing_left(pids);
  // The sleep inside h1 died with its pid namespace.
  CHECK(sh("ps -eo args | grep -c '^sleep 987654$'").text == "0");
}

TEST_CASE("lab: down cleans up a half-written state.json", "[lab]") {
  if (::geteuid() != 0) return;
  LabGuard guard;
  LabStatus lab = lab_up(options(2, true));
  std::vector<int> pids;
  for (auto const& h : lab.hosts) pids.push_back(h.sshd_pid);
  {
    std::ofstream truncated(kStateDir + "/state.json", std::ios::trunc);
    truncated << "{\"version\": 1, \"hosts\": [";
  }
  lab_down(kName, kStateDir);
  require_nothing_left(pids);
}

TEST_CASE("lab: up rebuilds a broken or reshaped lab", "[lab]") {
  if (::geteuid() != 0) return;
  LabGuard guard;
  LabStatus lab = lab_up(options(2, false));
  REQUIRE(lab.hosts.size() == 2);
  int const dead = lab.hosts[1].sshd_pid;
  REQUIRE(::kill(dead, SIGKILL) == 0);
  for (int i = 0; i < 100 && pid_alive(dead); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto s = lab_status(kName, kStateDir);
  REQUIRE(s.hosts.size() == 2);
  CHECK(s.hosts[0].running);
  CHECK_FALSE(s.hosts[1].running);

  LabStatus rebuilt = lab_up(options(2, false));
  REQUIRE(rebuilt.hosts.size() == 2);
  CHECK(rebuilt.hosts[0].running);
  CHECK(rebuilt.hosts[1].running);
  CHECK(rebuilt.hosts[1].sshd_pid != dead);
  CHECK_FALSE(pid_alive(lab.hosts[0].sshd_pid));  // the whole lab was rebuilt
  CHECK(ssh(rebuilt, "10.88.7.12", "hostname").text == "h2");

  // A different shape is a rebuild too.
  LabStatus bigger = lab_up(options(3, false));
  REQUIRE(bigger.hosts.size() == 3);
  for (auto const& h : bigger.hosts) CHECK(h.running);
  CHECK_FALSE(pid_alive(rebuilt.hosts[0].sshd_pid));
  CHECK(ssh(bigger, "10.88.7.13", "hostname").text == "h3");
  CHECK(lab_netns().size() == 3);

  std::vector<int> pids;
  for (auto const& h : bigger.hosts) pids.push_back(h.sshd_pid);
  lab_down(kName, kStateDir);
  require_nothing_left(pids);
}

TEST_CASE("lab: a host that cannot start fails lab_up cleanly", "[lab]") {
  if (::geteuid() != 0) return;
  LabGuard guard;
  // An `sshd` that refuses to start, found first on PATH. It lives under
  // /run because each host has a private /tmp.
  std::string const fake_dir = "/run/clusterkit-test-fakebin-" + std::to_string(::getpid());
  fs::create_directories(fake_dir);
  {
    std::ofstream f(fake_dir + "/sshd");
    f << "#!/bin/sh\necho 'fake sshd refuses to start' >&2\nexit 1\n";
  }
  fs::permissions(fake_dir + "/sshd", fs::perms::owner_all);
  std::string const old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (fake_dir + ":" + old_path).c_str(), 1);
  std::error_code code;
  std::string message;
  auto t0 = std::chrono::steady_clock::now();
  try {
    lab_up(options(2, false));
  } catch (Error const& e) {
    code = e.code();
    message = e.what();
  }
  auto waited = std::chrono::steady_clock::now() - t0;
  ::setenv("PATH", old_path.c_str(), 1);
  fs::remove_all(fake_dir);
  CHECK(code == errc::lab_failed);
  CHECK(message.find("start sshd in each host") != std::string::npos);
  CHECK(message.find("h1 (10.88.7.11") != std::string::npos);
  CHECK(message.find("fake sshd refuses to start") != std::string::npos);
  CHECK(waited < std::chrono::seconds(3));  // a dead host is not waited for
  require_nothing_left({});
}

TEST_CASE("lab: bad arguments are refused with a clear error", "[lab]") {
  auto code_of = [](auto const& fn) {
    try {
      fn();
    } catch (Error const& e) {
      CHECK(std::string(e.what()).size() > 20);
      return e.code();
    }
    return std::error_code{};
  };
  LabOptions o = options(2, false);
  o.name = "Bad-Name";
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o.name = "toolongname";
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o = options(2, false);
  o.subnet = "10.88";
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o.subnet = "10.300.0";
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o = options(0, false);
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o = options(240, false);
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o = options(2, false);
  o.state_dir = "/mnt/lab";
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  CHECK(code_of([&] { lab_down("x y"); }) == errc::invalid_argument);
  // Roles and simulated GPUs are checked before anything is made.
  o = options(2, false);
  o.roles = {"head"};
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o.roles = {"head", "wroker"};
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o.roles = {"head", "head"};
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  o.roles = {};
  o.gpus = -1;
  CHECK(code_of([&] { lab_up(o); }) == errc::invalid_argument);
  CHECK_FALSE(fs::exists("/mnt/lab"));
  CHECK(lab_netns().empty());
}

TEST_CASE("lab: up refuses to run without root", "[lab]") {
  if (::geteuid() != 0) {
    CHECK_THROWS_WITH(lab_up(options(2, false)), Catch::Contains("Run it with sudo"));
    return;
  }
  // Drop the effective uid for a moment (the real uid stays root, so it can
  // be restored).
  REQUIRE(::seteuid(65534) == 0);
  std::error_code code;
  std::string message;
  try {
    lab_up(options(2, false));
  } catch (Error const& e) {
    code = e.code();
    message = e.what();
  }
  auto status = lab_status(kName, kStateDir);  // readable without root
  REQUIRE(::seteuid(0) == 0);
  CHECK(code == errc::lab_needs_root);
  CHECK(message.find("clusterkit lab needs root") != std::string::npos);
  CHECK(message.find("sudo") != std::string::npos);
  CHECK_FALSE(status.exists);
  CHECK(lab_netns().empty());
  CHECK_FALSE(bridge_exists());
}

TEST_CASE("lab: status and down of a lab that does not exist", "[lab]") {
  auto s = lab_status("tlabnone", "/tmp/clusterkit-test-lab-none");
  CHECK_FALSE(s.exists);
  CHECK(s.hosts.empty());
  CHECK_NOTHROW(lab_down("tlabnone", "/tmp/clusterkit-test-lab-none"));
  CHECK_FALSE(fs::exists("/tmp/clusterkit-test-lab-none"));
}

// ---------------------------------------------------------------------------
// Docker: one real engine per lab host. Lab "tldk" on 10.88.71.0/24, its own
// name and subnet so that it never meets the plain lab above.

namespace {

constexpr char const* kDockerLab = "tldk";
constexpr char const* kDockerSubnet = "10.88.71";
std::string const kDockerState = "/tmp/clusterkit-test-lab-tldk";
constexpr char const* kImage = "clusterkit/lab-runtime:bookworm";

// What the Docker tests need. They FAIL when something is missing: a test
// that passes or skips without the thing it tests proves nothing.
std::string docker_components_missing() {
  std::string missing;
  if (::geteuid() != 0) return "root (the lab makes namespaces; run the lab tests with sudo)";
  for (char const* p : {"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/debootstrap"})
    if (::access(p, X_OK) != 0 && sh(std::string("command -v ") + fs::path(p).filename().string()).status != 0)
      missing += std::string(missing.empty() ? "" : ", ") + p;
  if (::access("/opt/ck-serve/bin/python3", X_OK) != 0) missing += std::string(missing.empty() ? "" : ", ") + "/opt/ck-serve";
  if (missing.empty()) return {};
  return missing + " not installed: run scripts/install-serving.sh (Debian's docker.io, containerd, runc, debootstrap "
                   "and the Ray/vLLM venv /opt/ck-serve)";
}

struct DockerLabGuard {
  DockerLabGuard() { lab_down(kDockerLab, kDockerState); }
  ~DockerLabGuard() {
    try {
      lab_down(kDockerLab, kDockerState);
    } catch (std::exception const& e) {
      std::fprintf(stderr, "lab_down in guard failed: %s\n", e.what());
    }
  }
};

LabOptions docker_options(int hosts, int gpus = 0, std::vector<std::string> roles = {}) {
  LabOptions o;
  o.name = kDockerLab;
  o.hosts = hosts;
  o.subnet = kDockerSubnet;
  o.state_dir = kDockerState;
  o.docker = true;
  o.gpus = gpus;
  o.roles = std::move(roles);
  return o;
}

long long ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

std::string slurp(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int> all_pids() {
  std::vector<int> out;
  std::error_code ec;
  for (auto const& e : fs::directory_iterator("/proc", ec)) {
    auto n = e.path().filename().string();
    if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit)) out.push_back(std::stoi(n));
  }
  return out;
}

// Processes whose command line mentions `needle` (dockerd, containerd and the
// shims all name the lab's state folder; a container's command is unique).
std::vector<std::string> processes_mentioning(std::string const& needle) {
  std::vector<std::string> out;
  for (int pid : all_pids()) {
    std::string cmd = slurp("/proc/" + std::to_string(pid) + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(needle) != std::string::npos && pid != ::getpid()) out.push_back(std::to_string(pid) + ": " + cmd);
  }
  return out;
}

// Mounts of the state folder in ANY mount namespace on the machine (a host's
// overlay2 mounts, its bind of the data root), not just the machine's own.
std::vector<std::string> mounts_mentioning(std::string const& needle) {
  std::set<std::string> out;
  for (int pid : all_pids())
    for (auto const& line : [&] {
           std::vector<std::string> v;
           std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/mountinfo"));
           for (std::string l; std::getline(in, l);) v.push_back(l);
           return v;
         }())
      if (line.find(needle) != std::string::npos) out.insert("pid " + std::to_string(pid) + ": " + line);
  return {out.begin(), out.end()};
}

// cgroups the lab's engines made (`--cgroup-parent /ck-tldk-hI`), in every
// hierarchy of the machine.
std::vector<std::string> lab_cgroups() {
  std::vector<std::string> out;
  std::istringstream in(slurp("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream after(line.substr(dash + 3));
    std::string fstype;
    after >> fstype;
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    std::istringstream before(line);
    std::string f[5];
    for (auto& x : f) before >> x;
    std::error_code ec;
    for (auto const& e : fs::directory_iterator(f[4], ec))
      if (e.path().filename().string().rfind("ck-tldk-", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

long rss_kib(int pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

// containerd of a host: the child of its pid 1 named containerd.
int containerd_of(int pid1) {
  for (int pid : all_pids()) {
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || stat.find("(containerd)") == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid1) return pid;
  }
  return 0;
}

std::string dir_listing(std::string const& dir) {
  std::string out;
  std::error_code ec;
  for (auto const& e : fs::directory_iterator(dir, ec)) out += e.path().filename().string() + "\n";
  return out;
}

void require_docker_lab_gone(std::vector<int> const& pids) {
  CHECK(sh("ls /run/netns | grep -c '^ck-tldk-'").text == "0");
  CHECK_FALSE(fs::exists("/sys/class/net/ckbr-tldk"));
  CHECK_FALSE(fs::exists(kDockerState));  // with every engine's data and exec roots
  for (int pid : pids) CHECK_FALSE(pid_alive(pid));
  CHECK(processes_mentioning(kDockerState).empty());
  CHECK(processes_mentioning("sleep 987655").empty());
  CHECK(mounts_mentioning(kDockerState).empty());
  CHECK(lab_cgroups().empty());
  CHECK_FALSE(lab_status(kDockerLab, kDockerState).exists);
}

}  // namespace

TEST_CASE("lab: --docker gives each host its own real Docker engine", "[lab][docker]") {
  std::string const missing = docker_components_missing();
  if (!missing.empty()) FAIL(missing);
  DockerLabGuard guard;
  auto const machine_mounts = cktest::machine_mounts();
  std::string const etc_docker_before = dir_listing("/etc/docker");
  bool const opt_containerd_before = fs::exists("/opt/containerd");

  auto t0 = std::chrono::steady_clock::now();
  LabStatus lab = lab_up(docker_options(2, 2));
  auto up_ms = ms_since(t0);
  WARN("lab_up --docker --gpus 2 with 2 hosts took " << up_ms << " ms (" << up_ms / 2
                                                     << " ms per host; includes the image build on a fresh machine)");

  REQUIRE(lab.hosts.size() == 2);
  CHECK(lab.docker);
  CHECK(lab.gpus == 2);
  CHECK(lab.runtime_image == kImage);
  std::vector<std::string> const addrs{"10.88.71.11", "10.88.71.12"};
  std::vector<int> pids;
  for (size_t i = 0; i < 2; ++i) {
    auto const& h = lab.hosts[i];
    INFO(h.name);
    CHECK(h.running);
    CHECK(h.docker);
    CHECK(h.docker_running);
    CHECK(pid_alive(h.dockerd_pid));
    CHECK(h.dockerd_pid != h.sshd_pid);
    CHECK(h.docker_host == "unix://" + kDockerState + "/docker-" + h.name + ".sock");
    CHECK(h.gpus == 2);
    pids.push_back(h.sshd_pid);
    pids.push_back(h.dockerd_pid);
    int containerd = containerd_of(h.sshd_pid);
    CHECK(containerd > 0);
    pids.push_back(containerd);
    WARN(h.name << ": dockerd " << rss_kib(h.dockerd_pid) / 1024 << " MiB + containerd " << rss_kib(containerd) / 1024
                << " MiB resident, idle");
  }
  CHECK(lab.hosts[0].role == "head");
  CHECK(lab.hosts[1].role == "worker");

  // The inventory declares the simulated GPUs and says which image to use.
  {
    auto inv = Inventory::load(lab.inventory_path);
    auto const* h1 = inv.find("h1");
    REQUIRE(h1);
    CHECK(h1->roles == std::vector<std::string>{"head"});
    auto gpus = declared_gpus(*h1);
    REQUIRE(gpus);
    CHECK(gpus->count == 2);
    CHECK(gpus->simulated);
    CHECK(h1->extra.at("vars").at("runtime_image") == kImage);
    CHECK(h1->extra.at("vars").at("serve_venv") == "/opt/ck-serve");
    CHECK(inv.select("gpu").size() == 2);
  }

  // `docker` over ssh talks to the host's own engine, as on a real server:
  // the client on PATH (28.x here) negotiates down to dockerd 20.10's API.
  auto version = ssh(lab, addrs[0], "echo $DOCKER_HOST; docker version --format '{{.Client.Version}} {{.Client.APIVersion}} {{.Server.Version}}'");
  REQUIRE(version.status == 0);
  CHECK(version.text.rfind("unix://" + kDockerState + "/docker-h1.sock\n", 0) == 0);
  WARN("docker version over ssh on h1 (client, negotiated API, server): " << version.text.substr(version.text.find('\n') + 1));
  CHECK(ssh(lab, addrs[0], "/usr/bin/docker version --format '{{.Server.Version}}'").status == 0);
  CHECK(ssh(lab, addrs[0], "docker images --format '{{.Repository}}:{{.Tag}}'").text == kImage);

  // --network host: the container gets the HOST's hostname and address.
  auto t1 = std::chrono::steady_clock::now();
  auto net = ssh(lab, addrs[0], std::string("docker run --rm --network host ") + kImage + " sh -c 'hostname; ip -o -4 addr'");
  WARN("docker run --rm over ssh took " << ms_since(t1) << " ms");
  REQUIRE(net.status == 0);
  CHECK(net.text.rfind("h1\n", 0) == 0);
  CHECK(net.text.find("inet 10.88.71.11/24") != std::string::npos);
  CHECK(net.text.find("10.88.71.12") == std::string::npos);

  // Separate engines: a container on h1 is not on h2, and each engine has
  // its own ID.
  auto started = ssh(lab, addrs[0], std::string("docker run -d --name tlsleep ") + kImage + " sleep 987655");
  REQUIRE(started.status == 0);
  CHECK(ssh(lab, addrs[0], "docker ps --format '{{.Names}}'").text == "tlsleep");
  auto h2ps = ssh(lab, addrs[1], "docker ps -a --format '{{.Names}}'");
  CHECK(h2ps.status == 0);
  CHECK(h2ps.text.empty());
  CHECK(ssh(lab, addrs[0], "docker info --format '{{.ID}}'").text != ssh(lab, addrs[1], "docker info --format '{{.ID}}'").text);
  CHECK(processes_mentioning("sleep 987655").size() == 1);

  // No NVIDIA runtime: --gpus fails with the real error of a server without
  // nvidia-container-toolkit (the GPUs in the inventory are simulated).
  auto gpus = ssh(lab, addrs[0], std::string("docker run --rm --gpus all ") + kImage + " true");
  CHECK(gpus.status != 0);
  CHECK(gpus.text.find("could not select device driver \"\" with capabilities: [[gpu]]") != std::string::npos);

  // The Ray/vLLM venv on the machine runs inside the image: same Debian,
  // same Python.
  auto t2 = std::chrono::steady_clock::now();
  auto ray = ssh(lab, addrs[1],
                 std::string("docker run --rm --network host -v /opt/ck-serve:/opt/ck-serve:ro ") + kImage +
                     " /opt/ck-serve/bin/python3 -c 'import sys, ray; print(ray.__version__, sys.version.split()[0])'");
  INFO(ray.text);
  CHECK(ray.status == 0);
  WARN("import ray in a container on h2: " << ray.text << " (" << ms_since(t2) << " ms)");

  // Nothing of Docker landed on the machine itself.
  CHECK(cktest::machine_mounts() == machine_mounts);
  CHECK(dir_listing("/etc/docker") == etc_docker_before);  // each engine has its own key.json
  CHECK(fs::exists("/opt/containerd") == opt_containerd_before);
  CHECK(dir_listing("/run/docker").empty());
  CHECK(dir_listing("/run/containerd").empty());

  // lab_up again with the same shape leaves it all alone.
  auto t3 = std::chrono::steady_clock::now();
  LabStatus again = lab_up(docker_options(2, 2));
  WARN("lab_up --docker on a healthy lab took " << ms_since(t3) << " ms");
  REQUIRE(again.hosts.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(again.hosts[i].sshd_pid == lab.hosts[i].sshd_pid);
    CHECK(again.hosts[i].dockerd_pid == lab.hosts[i].dockerd_pid);
  }
  CHECK(ssh(lab, addrs[0], "docker ps --format '{{.Names}}'").text == "tlsleep");

  // `lab status` never shows a live host as "pid 0 DOWN", even when
  // state.json lost its pid (a crash between starting and recording it).
  {
    std::string state = slurp(kDockerState + "/state.json");
    auto pos = state.find("\"sshd_pid\": " + std::to_string(lab.hosts[0].sshd_pid));
    REQUIRE(pos != std::string::npos);
    state.replace(pos, std::string("\"sshd_pid\": " + std::to_string(lab.hosts[0].sshd_pid)).size(), "\"sshd_pid\": 0");
    std::ofstream(kDockerState + "/state.json", std::ios::trunc) << state;
    auto s = lab_status(kDockerLab, kDockerState);
    REQUIRE(s.hosts.size() == 2);
    CHECK(s.hosts[0].running);
    CHECK(s.hosts[0].sshd_pid == lab.hosts[0].sshd_pid);
    CHECK(s.hosts[0].docker_running);
  }

  auto t4 = std::chrono::steady_clock::now();
  lab_down(kDockerLab, kDockerState);
  WARN("lab_down with 2 Docker hosts (one container running) took " << ms_since(t4) << " ms");
  require_docker_lab_gone(pids);
  CHECK(cktest::machine_mounts() == machine_mounts);
}

TEST_CASE("lab: a lab of another shape (docker, gpus, roles) is rebuilt", "[lab][docker]") {
  std::string const missing = docker_components_missing();
  if (!missing.empty()) FAIL(missing);
  DockerLabGuard guard;
  LabStatus first = lab_up(docker_options(2, 2));
  REQUIRE(first.hosts.size() == 2);

  // Other roles: rebuilt; a download host has no GPUs.
  LabStatus download = lab_up(docker_options(2, 2, {"head", "download"}));
  REQUIRE(download.hosts.size() == 2);
  CHECK(download.hosts[0].sshd_pid != first.hosts[0].sshd_pid);
  CHECK(download.hosts[1].role == "download");
  CHECK(download.hosts[1].gpus == 0);
  CHECK(download.hosts[1].docker_running);
  {
    auto inv = Inventory::load(download.inventory_path);
    CHECK_FALSE(declared_gpus(*inv.find("h2")));
    CHECK(inv.select("download").size() == 1);
  }

  // Without Docker: rebuilt, no engine left behind.
  LabOptions plain = docker_options(2, 2, {"head", "download"});
  plain.docker = false;
  LabStatus nodocker = lab_up(plain);
  REQUIRE(nodocker.hosts.size() == 2);
  CHECK_FALSE(nodocker.docker);
  CHECK_FALSE(pid_alive(download.hosts[0].dockerd_pid));
  for (auto const& h : nodocker.hosts) {
    CHECK_FALSE(h.docker);
    CHECK(h.dockerd_pid == 0);
  }
  CHECK(processes_mentioning(kDockerState + "/docker-").empty());
  CHECK(ssh(nodocker, "10.88.71.11", "echo \"[$DOCKER_HOST]\"").text == "[]");
  lab_down(kDockerLab, kDockerState);
  require_docker_lab_gone({first.hosts[0].dockerd_pid, download.hosts[1].dockerd_pid});
}

TEST_CASE("lab: down cleans up after a crashed lab up --docker", "[lab][docker]") {
  std::string const missing = docker_components_missing();
  if (!missing.empty()) FAIL(missing);
  DockerLabGuard guard;
  LabStatus lab = lab_up(docker_options(2));
  REQUIRE(lab.hosts.size() == 2);
  REQUIRE(ssh(lab, "10.88.71.12", std::string("docker run -d --name tlsleep ") + kImage + " sleep 987655").status == 0);
  std::vector<int> pids;
  for (auto const& h : lab.hosts) pids.push_back(h.sshd_pid), pids.push_back(h.dockerd_pid);
  REQUIRE(!lab_cgroups().empty());  // the container's

  // As if lab_up crashed before writing its state: what is running is still
  // found through the namespaces.
  fs::remove(kDockerState + "/state.json");
  auto s = lab_status(kDockerLab, kDockerState);
  REQUIRE(s.hosts.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(s.hosts[i].running);
    CHECK(s.hosts[i].sshd_pid == lab.hosts[i].sshd_pid);
    CHECK(s.hosts[i].dockerd_pid == lab.hosts[i].dockerd_pid);
  }
  lab_down(kDockerLab, kDockerState);
  require_docker_lab_gone(pids);
}

TEST_CASE("lab: an engine that cannot start fails lab up --docker with its log", "[lab][docker]") {
  std::string const missing = docker_components_missing();
  if (!missing.empty()) FAIL(missing);
  DockerLabGuard guard;
  // A `dockerd` that refuses to start, found first on PATH (under /run:
  // each host has a private /tmp).
  std::string const fake_dir = "/run/clusterkit-test-fakedockerd-" + std::to_string(::getpid());
  fs::create_directories(fake_dir);
  std::ofstream(fake_dir + "/dockerd") << "#!/bin/sh\necho 'level=fatal msg=\"fake dockerd refuses to start\"' >&2\nexit 1\n";
  fs::permissions(fake_dir + "/dockerd", fs::perms::owner_all);
  std::string const old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (fake_dir + ":" + old_path).c_str(), 1);
  std::error_code code;
  std::string message;
  auto t0 = std::chrono::steady_clock::now();
  try {
    lab_up(docker_options(2));
  } catch (Error const& e) {
    code = e.code();
    message = e.what();
  }
  auto waited = ms_since(t0);
  ::setenv("PATH", old_path.c_str(), 1);
  fs::remove_all(fake_dir);
  INFO(message);
  CHECK(code == errc::lab_failed);
  CHECK(message.find("start the Docker engine in each host") != std::string::npos);
  CHECK(message.find("h1 (10.88.71.11)") != std::string::npos);
  CHECK(message.find("h2 (10.88.71.12)") != std::string::npos);
  CHECK(message.find("fake dockerd refuses to start") != std::string::npos);
  CHECK(waited < 15000);  // a dead engine is not waited for until the deadline
  require_docker_lab_gone({});
}
