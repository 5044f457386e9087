// The lab against the real system: needs root; starts real sshd hosts in
// namespaces on subnet 10.88.7.0/24 (lab "tlab"), and always takes them
// down again, even when a check fails.
#include <catch2/catch.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/lab.hpp"

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
