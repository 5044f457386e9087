// Preflight against the lab: real sshd hosts, a real NAS over sshfs, real
// listeners and connections. The lab has no GPUs, so the derived inventory
// declares simulated ones: GPU checks must say "simulated", every other
// check runs for real and passes; then one thing at a time is broken (a
// small /dev/shm, a host without the NAS, a busy Ray port) and preflight
// must fail on that host with the fix.
//
// Needs root. The lab ("tpre", 10.88.11.0/24) is brought up and torn down
// by this binary. Every mount happens inside a lab host's own mount
// namespace; the test checks that the machine's mounts are untouched.
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <set>
#include <sstream>

#include "clusterkit/facts.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/runtime.hpp"
#include "machine_mounts.hpp"

using namespace clusterkit;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

using cktest::machine_mounts;

constexpr char const* kLab = "tpre";
constexpr char const* kSubnet = "10.88.11";

std::uint64_t machine_shm_bytes() {
  struct statvfs st {};
  REQUIRE(::statvfs("/dev/shm", &st) == 0);
  return static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
}

struct SharedLab {
  LabStatus status;
  Inventory inventory;
  std::set<std::string> mounts_before;
  std::uint64_t shm_before = 0;
  Runtime rt;

  static SharedLab& get() {
    static SharedLab lab;
    return lab;
  }

  /// Runs a shell command as root on a lab host.
  RunResult root(std::string const& host, std::string const& script) {
    auto h = rt.host(inventory.find(host)->spec);
    return run(h, Command::shell(script));
  }

  void mount_nas(std::string const& host) {
    auto r = root(host, "mountpoint -q /mnt && grep -q ' /mnt fuse.sshfs ' /proc/mounts || sshfs -o reconnect,IdentityFile=" +
                            status.identity_file + ",UserKnownHostsFile=" + status.known_hosts_file +
                            ",StrictHostKeyChecking=yes,BatchMode=yes root@" + kSubnet + ".250:/srv/nas /mnt");
    INFO(r.stderr_text);
    REQUIRE(r.exit_code == 0);
  }

  PreflightRun preflight() {
    PreflightOptions o;
    o.disk_paths = {"/"};
    o.disk_min_free_gib = 1;
    return run_preflight(rt, inventory.hosts(), o);
  }

  void check_machine_untouched() {
    CHECK(machine_mounts() == mounts_before);
    CHECK(machine_shm_bytes() == shm_before);
  }

private:
  SharedLab() {
    REQUIRE(::geteuid() == 0);  // the lab creates namespaces: run the lab tests as root
    mounts_before = machine_mounts();
    shm_before = machine_shm_bytes();
    LabOptions o;
    o.name = kLab;
    o.hosts = 3;
    o.nas = true;
    o.subnet = kSubnet;
    status = lab_up(o);
    // The lab's own inventory, with roles, simulated GPUs and the NAS: the
    // seed's cluster in miniature (two GPU hosts, a download host, a NAS).
    std::string s = std::string(kSubnet);
    inventory = Inventory::parse(
        "defaults:\n"
        "  user: root\n"
        "  identity_file: " + status.identity_file + "\n"
        "  known_hosts_file: " + status.known_hosts_file + "\n"
        "  host_key_policy: strict\n"
        "  vars: {runtime: none, mount_point: /mnt}\n"
        "hosts:\n"
        "  h1: {address: " + s + ".11, roles: [head, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
        "  h2: {address: " + s + ".12, roles: [worker, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
        "  h3: {address: " + s + ".13, roles: [download]}\n"
        "  nas: {address: " + s + ".250, roles: [nas]}\n",
        "tpre-derived");
    for (auto const* h : {"h1", "h2", "h3"}) mount_nas(h);
  }
  ~SharedLab() {
    for (auto const& h : inventory.hosts()) close_connection(h.spec);
    lab_down(kLab);
  }
};

CheckResult row(CheckReport const& r, std::string const& host, std::string const& check) {
  auto const* x = r.find(host, check);
  if (!x) FAIL("no " << check << " row for " << host << "\n" << r.table());
  return *x;
}

}  // namespace

TEST_CASE("preflight passes on the lab, GPU checks simulated", "[preflight][lab]") {
  auto& lab = SharedLab::get();
  auto t0 = std::chrono::steady_clock::now();
  auto run = lab.preflight();
  WARN("preflight on 3 lab hosts took "
       << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
  auto const& r = run.report;
  INFO(r.table());
  CHECK(r.ok());
  CHECK(r.count(CheckStatus::fail) == 0);
  CHECK(r.head == "h1");
  CHECK(r.hosts == std::vector<std::string>{"h1", "h2", "h3"});
  for (auto const* h : {"h1", "h2"}) {
    // GPUs: simulated, from the inventory.
    CHECK(row(r, h, "gpus").status == CheckStatus::simulated);
    CHECK_THAT(row(r, h, "gpus").message, Contains("2x L20 45.0 GiB (simulated"));
    CHECK_THAT(row(r, h, "gpus").message, Contains("memory_gib 48 read as the L20's nvidia-smi total of 46068 MiB"));
    CHECK(row(r, h, "driver").status == CheckStatus::simulated);
    CHECK(row(r, h, "cuda").status == CheckStatus::simulated);
    // Everything else: real, and passing.
    for (auto const* check : {"ssh", "role", "python", "shm", "disk", "nas", "network", "ray-port", "nccl-ports", "clock"}) {
      INFO(h << " " << check << ": " << row(r, h, check).message);
      CHECK(row(r, h, check).status == CheckStatus::pass);
    }
    CHECK(row(r, h, "docker").status == CheckStatus::skip);  // runtime: none
  }
  for (auto const* check : {"ssh", "role", "disk", "nas", "clock"}) CHECK(row(r, "h3", check).status == CheckStatus::pass);
  // The same Python on both GPU hosts (the machine's), named.
  CHECK_THAT(row(r, "h2", "python").message, Contains("Python 3."));
  // What to start each node with.
  CHECK(r.recommended_env.at("h1").at("VLLM_HOST_IP") == "10.88.11.11");
  CHECK(r.recommended_env.at("h2").at("VLLM_HOST_IP") == "10.88.11.12");
  CHECK(r.recommended_env.at("h2").at("NCCL_SOCKET_IFNAME") == "eth0");
  CHECK(r.recommended_env.at("h2").at("GLOO_SOCKET_IFNAME") == "eth0");
  // The probes were real: connections from h2's address to the head's ports.
  REQUIRE(run.probes.ports);
  bool ray_from_h2 = false;
  for (auto const& p : run.probes.ports->probes)
    if (p.from == "h2" && p.purpose == "ray") ray_from_h2 = p.ok() && p.source_address == "10.88.11.12" && p.port == 6379;
  CHECK(ray_from_h2);
  REQUIRE(run.probes.nas);
  for (auto const& read : run.probes.nas->reads) {
    CHECK(read.filesystem_type == "fuseblk");
    CHECK(read.seen == std::vector<std::string>{"h3", "h1", "h2"});  // the download host writes first
  }
  // Facts carry the simulated GPUs, labelled wherever they are shown.
  for (auto const& f : run.facts) {
    if (f.host == "h3") {
      CHECK(f.facts.gpus.empty());
      continue;
    }
    CHECK(f.facts.gpus_simulated);
    CHECK(f.facts.gpus.size() == 2);
    CHECK_THAT(describe_facts(f), Contains("simulated"));
  }
  CHECK_THAT(r.table(), Contains("simulated"));
  CHECK(run.to_json()["facts"][0]["gpus"][0]["simulated"] == true);
  lab.check_machine_untouched();
}

TEST_CASE("a small /dev/shm on one lab host fails with the fix", "[preflight][lab]") {
  auto& lab = SharedLab::get();
  // Inside h2's own mount namespace only.
  REQUIRE(lab.root("h2", "mount -t tmpfs -o size=64m ck-small-shm /dev/shm").exit_code == 0);
  lab.check_machine_untouched();
  auto run = lab.preflight();
  auto ok = lab.root("h2", "umount /dev/shm").exit_code == 0;
  auto const& r = run.report;
  INFO(r.table());
  CHECK_FALSE(r.ok());
  auto shm = row(r, "h2", "shm");
  CHECK(shm.status == CheckStatus::fail);
  CHECK_THAT(shm.message, Contains("/dev/shm is 64.0 MiB, below 10.0 GiB"));
  CHECK_THAT(shm.fix, Contains("mount -o remount,size="));
  CHECK(row(r, "h1", "shm").status == CheckStatus::pass);
  CHECK(r.count(CheckStatus::fail) == 1);
  CHECK(ok);
  lab.check_machine_untouched();
}

TEST_CASE("a lab host without the NAS fails with the fix", "[preflight][lab]") {
  auto& lab = SharedLab::get();
  REQUIRE(lab.root("h3", "fusermount -u /mnt").exit_code == 0);
  auto run = lab.preflight();
  lab.mount_nas("h3");
  auto const& r = run.report;
  INFO(r.table());
  CHECK_FALSE(r.ok());
  auto nas = row(r, "h3", "nas");
  CHECK(nas.status == CheckStatus::fail);
  CHECK_THAT(nas.message, Contains("does not show the files written on h1, h2"));
  CHECK_THAT(nas.fix, Contains("mount the NAS at /mnt on h3"));
  CHECK(row(r, "h1", "nas").status == CheckStatus::pass);
  CHECK(row(r, "h2", "nas").status == CheckStatus::pass);
  // No token file is left behind on the NAS (looked at on the NAS itself:
  // sshfs clients may list a folder from their cache).
  CHECK(lab.root("nas", "ls -A /srv/nas | grep -c clusterkit-preflight || true").stdout_text == "0\n");
  lab.check_machine_untouched();
}

TEST_CASE("a busy Ray port on the head fails with the fix", "[preflight][lab]") {
  auto& lab = SharedLab::get();
  auto head = lab.rt.host(lab.inventory.find("h1")->spec);
  // Something else holds 6379 on h1 (an old Ray head, say).
  std::promise<void> ready;
  auto ready_future = ready.get_future();
  bool signalled = false;
  RunOptions ro;
  ro.on_line = [&](OutputLine const& line) {
    if (line.text == "listening" && !signalled) {
      signalled = true;
      ready.set_value();
    }
  };
  asio::cancellation_signal stop;
  std::promise<std::error_code> done;
  auto done_future = done.get_future();
  head.async_run(Command::args({"python3", "-u", "-c",
                                "import socket, time\n"
                                "s = socket.socket()\n"
                                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                "s.bind(('0.0.0.0', 6379))\n"
                                "s.listen()\n"
                                "print('listening')\n"
                                "time.sleep(60)\n"}),
                 ro, asio::bind_cancellation_slot(stop.slot(), [&](std::error_code ec, RunResult) { done.set_value(ec); }));
  REQUIRE(ready_future.wait_for(20s) == std::future_status::ready);
  auto run = lab.preflight();
  asio::post(lab.rt.executor(), [&] { stop.emit(asio::cancellation_type::terminal); });
  REQUIRE(done_future.wait_for(20s) == std::future_status::ready);
  auto const& r = run.report;
  INFO(r.table());
  CHECK_FALSE(r.ok());
  auto ray = row(r, "h1", "ray-port");
  CHECK(ray.status == CheckStatus::fail);
  CHECK_THAT(ray.message, Contains("6379"));
  CHECK_THAT(ray.fix, Contains("ray stop"));
  // The other ports were still probed.
  CHECK(row(r, "h2", "nccl-ports").status == CheckStatus::pass);
}

TEST_CASE("facts of the lab hosts, gathered in one round trip each", "[facts][lab]") {
  auto& lab = SharedLab::get();
  std::vector<Host> hosts;
  for (auto const* h : {"h1", "h2", "h3"}) hosts.push_back(lab.rt.host(lab.inventory.find(h)->spec));
  FactsOptions o;
  o.disk_paths = {"/mnt"};
  o.peers = {std::string(kSubnet) + ".11"};
  o.declared_gpus = declared_gpus_of(lab.inventory.hosts());
  auto facts = gather_facts(hosts, o);
  REQUIRE(facts.size() == 3);
  for (auto const& f : facts) {
    INFO(describe_facts(f));
    REQUIRE(f.ok());
    CHECK(f.facts.hostname == f.host);
    REQUIRE(f.facts.disks.size() == 1);
    CHECK(f.facts.disks[0].filesystem == "root@10.88.11.250:/srv/nas");
    REQUIRE(f.facts.routes.size() == 1);
    CHECK(f.facts.routes[0].interface == "eth0");
    REQUIRE(f.facts.clock);
    CHECK(std::abs(f.facts.clock->offset_seconds()) < 1.0);  // one machine, one clock
    CHECK(f.facts.issue("gpus"));                            // no nvidia-smi in the lab
    CHECK_FALSE(f.facts.issue("script"));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(f.duration).count();
    WARN(f.host << ": facts in " << ms << " ms");
  }
  CHECK(facts[0].facts.routes[0].local);
  CHECK(facts[1].facts.routes[0].source_address == "10.88.11.12");
}
