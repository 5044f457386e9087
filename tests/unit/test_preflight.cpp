// Preflight's evaluation (pure: inventory + facts + probe results in, a
// report out) on the seed's cluster, one broken thing at a time; and the
// probe scripts' parsers.
#include "clusterkit/preflight.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "clusterkit/shell.hpp"

using namespace clusterkit;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;
constexpr std::uint64_t GiB = 1ull << 30;

fs::path const examples = fs::path(CK_SOURCE_DIR) / "examples" / "inventories";

Inventory seed_inventory(std::string const& extra_defaults = "") {
  // The seed's cluster (examples/inventories/seed-cluster.yaml), addresses kept.
  return Inventory::parse(R"(
defaults:
  user: root
  vars: {mount_point: /mnt)" + extra_defaults +
                          R"(}
hosts:
  gpu1: {address: 172.18.190.25, roles: [head, gpu], gpus: {count: 2, model: L20, memory_gib: 48}}
  gpu2: {address: 172.18.190.26, roles: [worker, gpu], gpus: {count: 2, model: L20, memory_gib: 48}}
  cpu1: {address: 172.18.190.27, roles: [download], gpus: {count: 0}}
  nas: {address: nas.example.internal, roles: [nas]}
)");
}

NetInterface iface(std::string name, std::string address, int mtu = 1500) {
  NetInterface i;
  i.name = std::move(name);
  i.up = true;
  i.mtu = mtu;
  i.addresses.push_back({"inet", std::move(address), 24, "global"});
  return i;
}

/// A healthy host of the seed cluster.
HostFactsOutcome healthy(std::string const& name, std::string const& address, bool gpu) {
  HostFactsOutcome o;
  o.host = name;
  o.duration = std::chrono::milliseconds(40);
  auto& f = o.facts;
  f.host = name;
  f.hostname = name;
  f.os = OsRelease{"ubuntu", "22.04", "Ubuntu 22.04.4 LTS", {}};
  f.kernel = KernelInfo{"Linux", "5.15.0-122-generic", "x86_64"};
  f.cpus = gpu ? 64 : 2;
  f.memory = MemoryInfo{512 * GiB, 500 * GiB, 400 * GiB, 0, 0};
  f.shm = DiskUsage{"/dev/shm", "tmpfs", "/dev/shm", 256 * GiB, 0, 256 * GiB};
  f.disks.push_back(DiskUsage{"/mnt", "nas:/share", "/mnt", 10000 * GiB, 2000 * GiB, 8000 * GiB});
  f.interfaces.push_back(NetInterface{"lo", true, true, 65536, "", {{"inet", "127.0.0.1", 8, "host"}}});
  f.interfaces.push_back(iface("eth0", address));
  RouteToPeer r;
  r.peer = "172.18.190.25";
  r.peer_address = "172.18.190.25";
  r.interface = "eth0";
  r.source_address = address;
  r.local = address == "172.18.190.25";
  f.routes.push_back(r);
  f.ephemeral_ports = std::pair<int, int>{32768, 60999};
  f.clock = ClockSample{1'800'000'000.010, 1'800'000'000.000, 1'800'000'000.020};
  f.python = PythonFacts{"/usr/bin/python3", "3.10.12", {}};
  if (gpu) {
    for (unsigned i = 0; i < 2; ++i) {
      GpuInfo g;
      g.index = i;
      g.uuid = "GPU-" + name + "-" + std::to_string(i);
      g.name = "NVIDIA L20";
      g.memory_total_bytes = 46068 * MiB;
      g.memory_used_bytes = 0;
      g.driver_version = "550.90.07";
      g.compute_capability = "8.9";
      f.gpus.push_back(g);
    }
    f.nvidia = NvidiaSmiHeader{"550.90.07", "550.90.07", "12.4"};
    DockerFacts d;
    d.client_version = d.server_version = "27.3.1";
    d.daemon_reachable = true;
    d.runtimes = {"io.containerd.runc.v2", "nvidia", "runc"};
    d.images["vllm/vllm-openai:v0.7.3"] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    f.docker = d;
    f.python->packages = {{"ray", "2.40.0"}, {"vllm", "0.7.3"}, {"torch", "2.5.1"}};
  }
  return o;
}

struct Cluster {
  Inventory inventory = seed_inventory();
  std::vector<HostFactsOutcome> facts = {healthy("gpu1", "172.18.190.25", true), healthy("gpu2", "172.18.190.26", true),
                                         healthy("cpu1", "172.18.190.27", false)};
  PreflightProbes probes;
  PreflightOptions options;

  Cluster() {
    options.disk_paths = {"/mnt"};
    options.docker_images = {"vllm/vllm-openai:v0.7.3"};
    PortProbeReport ports;
    ports.head = "gpu1";
    ports.listeners = {PortListener{"gpu1", true, "", {{6379, "ray"}, {29500, "rdzv"}, {41000, "ephemeral"}}, {}},
                       PortListener{"gpu2", true, "", {{42000, "ephemeral"}}, {}}};
    for (auto const& [from, src] : {std::pair{"gpu1", "172.18.190.25"}, std::pair{"gpu2", "172.18.190.26"}}) {
      ports.probes.push_back({from, "gpu1", "172.18.190.25", 6379, "ray", true, src, "", 0.4});
      ports.probes.push_back({from, "gpu1", "172.18.190.25", 29500, "rdzv", true, src, "", 0.4});
    }
    ports.probes.push_back({"gpu1", "gpu2", "172.18.190.26", 42000, "ephemeral", true, "172.18.190.25", "", 0.3});
    ports.probes.push_back({"gpu2", "gpu1", "172.18.190.25", 41000, "ephemeral", true, "172.18.190.26", "", 0.3});
    probes.ports = ports;
    NasProbeReport nas;
    nas.path = "/mnt";
    nas.token = "abc";
    for (auto const* h : {"cpu1", "gpu1", "gpu2"}) {
      NasRead r;
      r.host = h;
      r.directory = true;
      r.mount_point = true;
      r.filesystem_type = "nfs";
      r.written = true;
      r.seen = {"cpu1", "gpu1", "gpu2"};
      nas.reads.push_back(r);
    }
    probes.nas = nas;
  }

  HostFacts& f(std::string const& host) {
    for (auto& x : facts)
      if (x.host == host) return x.facts;
    FAIL("no host " << host);
    return facts[0].facts;
  }

  CheckReport evaluate() const { return evaluate_preflight(inventory.hosts(), facts, probes, options); }
};

CheckStatus status(CheckReport const& r, std::string const& host, std::string const& check) {
  auto const* x = r.find(host, check);
  if (!x) FAIL("no " << check << " row for " << host << "\n" << r.table());
  return x->status;
}

CheckResult row(CheckReport const& r, std::string const& host, std::string const& check) {
  auto const* x = r.find(host, check);
  if (!x) FAIL("no " << check << " row for " << host << "\n" << r.table());
  return *x;
}

}  // namespace

TEST_CASE("the seed cluster, healthy: every check passes", "[preflight]") {
  Cluster c;
  auto r = c.evaluate();
  INFO(r.table());
  CHECK(r.ok());
  CHECK(r.count(CheckStatus::fail) == 0);
  CHECK(r.count(CheckStatus::warn) == 0);
  CHECK(r.head == "gpu1");
  CHECK(r.hosts == std::vector<std::string>{"gpu1", "gpu2", "cpu1"});  // the NAS appliance is not checked over ssh
  for (auto const* check : {"ssh", "role", "gpus", "driver", "cuda", "python", "ray", "vllm", "torch", "docker",
                            "nvidia-runtime", "image", "shm", "disk", "nas", "network", "ray-port", "nccl-ports", "clock"}) {
    CHECK(status(r, "gpu1", check) == CheckStatus::pass);
    CHECK(status(r, "gpu2", check) == CheckStatus::pass);
  }
  CHECK(status(r, "cpu1", "role") == CheckStatus::pass);
  CHECK(status(r, "cpu1", "gpus") == CheckStatus::skip);
  CHECK(status(r, "cpu1", "disk") == CheckStatus::pass);
  CHECK(status(r, "cpu1", "nas") == CheckStatus::pass);
  CHECK(r.recommended_env.at("gpu2").at("VLLM_HOST_IP") == "172.18.190.26");
  CHECK(r.recommended_env.at("gpu2").at("NCCL_SOCKET_IFNAME") == "eth0");
  CHECK(r.recommended_env.at("gpu1").at("GLOO_SOCKET_IFNAME") == "eth0");
  CHECK_THAT(row(r, "gpu1", "gpus").message, Contains("2x NVIDIA L20 45.0 GiB"));
  auto j = r.to_json();
  CHECK(j["ok"] == true);
  CHECK(j["counts"]["fail"] == 0);
  CHECK(j["results"].size() == r.results.size());
  auto table = r.table();
  CHECK_THAT(table, Contains("gpu1"));
  CHECK_THAT(table, Contains("VLLM_HOST_IP=172.18.190.26"));
  CHECK_THAT(table, Contains("0 failed"));
  // Every skip says why (issue 14: 39 checks were "skipped" with no reason).
  REQUIRE(r.count(CheckStatus::skip) > 0);
  CHECK_THAT(table, Contains("skipped (-):"));
  for (auto const& x : r.results)
    if (x.status == CheckStatus::skip) {
      CHECK_FALSE(x.message.empty());
      CHECK_THAT(table, Contains(x.message));
    }
  CHECK_THAT(table, Contains("gpus on cpu1"));
}

TEST_CASE("preflight gathers what it checks", "[preflight]") {
  Cluster c;
  auto f = preflight_facts_options(c.inventory.hosts(), c.options);
  CHECK(f.disk_paths == std::vector<std::string>{"/mnt"});
  CHECK(f.peers == std::vector<std::string>{"172.18.190.25"});
  CHECK(f.docker_images == c.options.docker_images);
  CHECK(f.declared_gpus.count("gpu1"));
  auto roles = cluster_roles(c.inventory.hosts());
  CHECK(roles.head == "gpu1");
  CHECK(roles.head_declared);
  CHECK(roles.gpu_hosts == std::vector<std::string>{"gpu1", "gpu2"});
  CHECK(roles.download_hosts == std::vector<std::string>{"cpu1"});
  CHECK(roles.storage_hosts == std::vector<std::string>{"nas"});
  CHECK(nas_path_of(c.inventory.hosts(), c.options) == "/mnt");
  CHECK(head_address_of(c.inventory.hosts()) == "172.18.190.25");
}

TEST_CASE("different drivers fail, naming both versions", "[preflight][versions]") {
  Cluster c;
  for (auto& g : c.f("gpu2").gpus) g.driver_version = "535.183.01";
  c.f("gpu2").nvidia->cuda_version = "12.2";
  auto r = c.evaluate();
  CHECK_FALSE(r.ok());
  auto d = row(r, "gpu2", "driver");
  CHECK(d.status == CheckStatus::fail);
  CHECK_THAT(d.message, Contains("535.183.01"));
  CHECK_THAT(d.message, Contains("550.90.07"));
  CHECK_THAT(d.message, Contains("gpu1"));
  CHECK_THAT(d.fix, Contains("same NVIDIA driver"));
  CHECK(status(r, "gpu1", "driver") == CheckStatus::pass);  // the head is the reference
  CHECK(status(r, "gpu2", "cuda") == CheckStatus::fail);
}

TEST_CASE("different Ray versions: fail outside Docker, warn with an image", "[preflight][versions]") {
  Cluster docker;
  docker.f("gpu2").python->packages["ray"] = "2.41.0";
  auto r = docker.evaluate();
  CHECK(status(r, "gpu2", "ray") == CheckStatus::warn);
  Cluster bare;
  bare.inventory = seed_inventory(", runtime: none");
  bare.f("gpu2").python->packages["ray"] = "2.41.0";
  bare.f("gpu2").python->packages.erase("vllm");
  auto b = bare.evaluate();
  auto ray = row(b, "gpu2", "ray");
  CHECK(ray.status == CheckStatus::fail);
  CHECK_THAT(ray.message, Contains("2.41.0"));
  CHECK_THAT(ray.message, Contains("2.40.0"));
  CHECK_THAT(ray.fix, Contains("pip install 'ray==2.40.0'"));
  auto vllm = row(b, "gpu2", "vllm");
  CHECK(vllm.status == CheckStatus::fail);
  CHECK_THAT(vllm.message, Contains("not installed on gpu2"));
  // runtime none: Docker does not matter.
  CHECK(status(b, "gpu1", "docker") == CheckStatus::skip);
  CHECK(status(b, "gpu1", "nvidia-runtime") == CheckStatus::skip);
}

TEST_CASE("Docker without the NVIDIA runtime fails with the toolkit fix (REFERENCES #8)", "[preflight][docker]") {
  Cluster c;
  c.f("gpu2").docker->runtimes = {"io.containerd.runc.v2", "runc"};
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "nvidia-runtime");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("could not select device driver"));
  CHECK_THAT(x.fix, Contains("nvidia-container-toolkit"));
  CHECK_THAT(x.fix, Contains("nvidia-ctk runtime configure --runtime=docker"));
  // The toolkit's hook alone is enough for --gpus.
  c.f("gpu2").docker->nvidia_toolkit = {"/usr/bin/nvidia-container-runtime-hook"};
  CHECK(status(c.evaluate(), "gpu2", "nvidia-runtime") == CheckStatus::pass);
}

TEST_CASE("Docker missing or its daemon down", "[preflight][docker]") {
  Cluster c;
  c.f("gpu2").docker->daemon_reachable = false;
  c.f("gpu2").docker->daemon_error =
      "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock";
  auto r = c.evaluate();
  CHECK(status(r, "gpu2", "docker") == CheckStatus::fail);
  CHECK_THAT(row(r, "gpu2", "docker").fix, Contains("docker group"));
  CHECK(status(r, "gpu2", "nvidia-runtime") == CheckStatus::skip);
  CHECK(status(r, "gpu2", "image") == CheckStatus::skip);
  c.f("gpu1").docker.reset();
  c.f("gpu1").issues.push_back({"docker", FactIssue::Kind::absent, "docker is not installed (not on PATH)"});
  auto r2 = c.evaluate();
  CHECK(status(r2, "gpu1", "docker") == CheckStatus::fail);
  CHECK_THAT(row(r2, "gpu1", "docker").fix, Contains("install Docker Engine"));
}

TEST_CASE("images: missing or different", "[preflight][docker]") {
  Cluster c;
  c.f("gpu2").docker->images["vllm/vllm-openai:v0.7.3"] = "";
  CHECK(status(c.evaluate(), "gpu2", "image") == CheckStatus::fail);
  CHECK_THAT(row(c.evaluate(), "gpu2", "image").fix, Contains("docker pull vllm/vllm-openai:v0.7.3"));
  c.f("gpu2").docker->images["vllm/vllm-openai:v0.7.3"] = "sha256:2222222222222222222222222222222222222222";
  CHECK(status(c.evaluate(), "gpu2", "image") == CheckStatus::fail);
}

TEST_CASE("a small /dev/shm fails (REFERENCES #7); with Docker it warns", "[preflight][shm]") {
  Cluster c;
  c.inventory = seed_inventory(", runtime: none");
  c.f("gpu2").shm = DiskUsage{"/dev/shm", "tmpfs", "/dev/shm", 64 * MiB, 0, 64 * MiB};
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "shm");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("64.0 MiB"));
  CHECK_THAT(x.message, Contains("10.0 GiB"));
  CHECK_THAT(x.fix, Contains("mount -o remount,size="));
  CHECK_THAT(x.fix, Contains("--shm-size"));
  c.options.shm_min_gib = 0.05;
  CHECK(status(c.evaluate(), "gpu2", "shm") == CheckStatus::pass);
  Cluster d;
  d.f("gpu2").shm = DiskUsage{"/dev/shm", "tmpfs", "/dev/shm", 64 * MiB, 0, 64 * MiB};
  CHECK(status(d.evaluate(), "gpu2", "shm") == CheckStatus::warn);
}

TEST_CASE("disk: missing path or too little free", "[preflight][disk]") {
  Cluster c;
  c.f("cpu1").disks[0].available_bytes = 1 * GiB;
  auto r = c.evaluate();
  CHECK(status(r, "cpu1", "disk") == CheckStatus::fail);
  CHECK_THAT(row(r, "cpu1", "disk").message, Contains("1.0 GiB free"));
  c.f("cpu1").disks.clear();
  c.f("cpu1").issues.push_back({"disk /mnt", FactIssue::Kind::failed, "df /mnt exited with status 1: No such file"});
  CHECK_THAT(row(c.evaluate(), "cpu1", "disk").message, Contains("No such file"));
}

TEST_CASE("the download host cannot be the head (REFERENCES #10)", "[preflight][roles]") {
  Cluster c;
  c.inventory = Inventory::parse(R"(
hosts:
  gpu1: {address: 172.18.190.25, roles: [gpu]}
  gpu2: {address: 172.18.190.26, roles: [worker, gpu]}
  cpu1: {address: 172.18.190.27, roles: [download, head]}
)");
  auto r = c.evaluate();
  auto x = row(r, "cpu1", "role");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("Current node has no GPU available"));
  CHECK_THAT(x.message, Contains("download host"));
  CHECK_THAT(x.fix, Contains("roles: [head, gpu]"));
  // cpu1 is a "GPU host" by role (head) without GPUs: the gpus row fails too.
  CHECK(status(r, "cpu1", "gpus") == CheckStatus::fail);
}

TEST_CASE("no declared head: the first GPU host, with a warning", "[preflight][roles]") {
  Cluster c;
  c.inventory = Inventory::parse(R"(
hosts:
  gpu1: {address: 172.18.190.25, roles: [gpu]}
  gpu2: {address: 172.18.190.26, roles: [gpu]}
  cpu1: {address: 172.18.190.27, roles: [download]}
)");
  auto r = c.evaluate();
  CHECK(r.head == "gpu1");
  CHECK(status(r, "gpu1", "role") == CheckStatus::warn);
}

TEST_CASE("GPUs: fewer than declared, memory in use", "[preflight][gpus]") {
  Cluster c;
  c.f("gpu2").gpus.pop_back();
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "gpus");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("declares 2 GPUs, nvidia-smi lists 1"));
  Cluster d;
  d.f("gpu1").gpus[1].memory_used_bytes = 20 * GiB;
  auto w = row(d.evaluate(), "gpu1", "gpus");
  CHECK(w.status == CheckStatus::warn);
  CHECK_THAT(w.message, Contains("GPU1 has 20.0 GiB in use"));
}

TEST_CASE("several interfaces: warn and name the values to start with (REFERENCES #1, #3)", "[preflight][network]") {
  Cluster c;
  c.f("gpu2").interfaces.push_back(iface("ens2f0", "203.0.113.7"));
  c.f("gpu2").interfaces.push_back(iface("docker0", "172.17.0.1"));  // virtual: not a candidate
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "network");
  CHECK(x.status == CheckStatus::warn);
  CHECK_THAT(x.message, Contains("2 interfaces have addresses (eth0 172.18.190.26, ens2f0 203.0.113.7)"));
  CHECK_THAT(x.fix, Contains("VLLM_HOST_IP=172.18.190.26 NCCL_SOCKET_IFNAME=eth0 GLOO_SOCKET_IFNAME=eth0"));
  CHECK(r.ok());  // a warning, not a failure
  // MTU mismatch.
  Cluster m;
  m.f("gpu2").interfaces[1].mtu = 9000;
  CHECK_THAT(row(m.evaluate(), "gpu2", "network").message, Contains("MTU 9000"));
  // No route to the head.
  Cluster n;
  n.f("gpu2").routes.clear();
  CHECK(status(n.evaluate(), "gpu2", "network") == CheckStatus::fail);
}

TEST_CASE("ports: Ray port closed, busy, or an ephemeral port blocked", "[preflight][ports]") {
  Cluster c;
  for (auto& p : c.probes.ports->probes)
    if (p.from == "gpu2" && p.purpose == "ray") {
      p.reached = false;
      p.error = "timed out";
    }
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "ray-port");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("172.18.190.25:6379"));
  CHECK_THAT(x.message, Contains("timed out"));
  CHECK_THAT(x.fix, Contains("allow TCP 6379"));

  Cluster busy;
  busy.probes.ports->listeners[0].busy = {{6379, "Address already in use"}};
  busy.probes.ports->listeners[0].ports.erase(busy.probes.ports->listeners[0].ports.begin());
  std::erase_if(busy.probes.ports->probes, [](PortProbe const& p) { return p.purpose == "ray"; });
  auto b = busy.evaluate();
  CHECK(status(b, "gpu1", "ray-port") == CheckStatus::fail);
  CHECK_THAT(row(b, "gpu1", "ray-port").fix, Contains("ray stop"));
  CHECK(status(b, "gpu2", "ray-port") == CheckStatus::skip);

  Cluster eph;
  for (auto& p : eph.probes.ports->probes)
    if (p.from == "gpu2" && p.purpose == "ephemeral") {
      p.reached = false;
      p.error = "Connection refused";
    }
  auto e = eph.evaluate();
  auto n = row(e, "gpu2", "nccl-ports");
  CHECK(n.status == CheckStatus::fail);
  CHECK_THAT(n.message, Contains("gpu1 172.18.190.25:41000 (ephemeral): Connection refused"));
  CHECK_THAT(n.fix, Contains("32768-60999"));

  Cluster nolisten;
  nolisten.probes.ports->listeners[1] = PortListener{"gpu2", false, "exit 127: sh: 1: exec: python3: not found", {}, {}};
  CHECK(status(nolisten.evaluate(), "gpu2", "nccl-ports") == CheckStatus::fail);
}

TEST_CASE("a probe that did not run: its checks are skipped, saying why", "[preflight][ports][nas]") {
  Cluster c;
  c.probes.ports.reset();
  c.probes.ports_skipped = "turned off (--no-port-probe, PreflightOptions::probe_ports)";
  c.probes.nas.reset();
  c.probes.nas_skipped = "no NAS path given (--nas-path, or the inventory's vars.mount_point)";
  auto r = c.evaluate();
  for (auto const* check : {"ray-port", "nccl-ports"}) {
    auto const* x = r.find("gpu2", check);
    REQUIRE(x);
    CHECK(x->status == CheckStatus::skip);
    CHECK(x->message == "not probed: turned off (--no-port-probe, PreflightOptions::probe_ports)");
  }
  auto const* nas = r.find("gpu1", "nas");
  REQUIRE(nas);
  CHECK(nas->message == "not probed: no NAS path given (--nas-path, or the inventory's vars.mount_point)");
  // The probe ran, but not on this host: it did not answer.
  Cluster partial;
  partial.probes.nas->reads.pop_back();  // gpu2's
  auto const partial_report = partial.evaluate();
  auto const* gpu2 = partial_report.find("gpu2", "nas");
  REQUIRE(gpu2);
  CHECK(gpu2->message == "not probed: gpu2 did not answer (see its ssh check)");
}

TEST_CASE("NAS: a local filesystem at the NAS path fails even when every host agrees with itself", "[preflight][nas]") {
  // Issue 14: a tmpfs /mnt on the reference host passed, and the fix said
  // `mount -t nfs` for an sshfs NAS.
  Cluster c;
  c.inventory = seed_inventory(", nas_type: sshfs, nas_export: 'root@nas:/srv/nas'");
  for (auto& r : c.probes.nas->reads) {
    r.filesystem_type = "tmpfs";
    r.seen = {r.host};
  }
  c.probes.nas->reads[1].seen = c.probes.nas->reads[2].seen = {"gpu1"};  // the majority view: only gpu1's file
  auto r = c.evaluate();
  auto x = row(r, "gpu1", "nas");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("/mnt on gpu1 is tmpfs: no NAS is mounted there"));
  CHECK_THAT(x.fix, Contains("`clusterkit nas mount -g gpu1` (sshfs from root@nas:/srv/nas"));
  CHECK_THAT(x.fix, !Contains("mount -t nfs"));
  CHECK_THAT(x.fix, !Contains("--path"));  // /mnt: what `nas mount` takes by itself
  // Checked at another path (--nas-path /data): the fix names it.
  Cluster other = c;
  other.options.nas_path = "/data";
  auto xo = row(other.evaluate(), "gpu1", "nas");
  CHECK_THAT(xo.fix, Contains("`clusterkit nas mount -g gpu1 --path /data` (sshfs from root@nas:/srv/nas"));
  // A bind "NAS" (one machine's own folder) is a local filesystem by design.
  Cluster bind;
  bind.inventory = seed_inventory(", nas_type: bind");
  for (auto& rd : bind.probes.nas->reads) rd.filesystem_type = "ext4";
  CHECK(status(bind.evaluate(), "gpu1", "nas") == CheckStatus::pass);
}

TEST_CASE("NAS: the host that does not share the others' files fails (REFERENCES #9)", "[preflight][nas]") {
  Cluster c;
  // cpu1 (the writer in the real probe) has its own /mnt: it sees only its
  // own file, the GPU hosts see each other's.
  c.probes.nas->reads[0].seen = {"cpu1"};
  c.probes.nas->reads[0].filesystem_type = "ext2/ext3";
  c.probes.nas->reads[0].mount_point = false;
  c.probes.nas->reads[1].seen = {"gpu1", "gpu2"};
  c.probes.nas->reads[2].seen = {"gpu1", "gpu2"};
  auto r = c.evaluate();
  auto x = row(r, "cpu1", "nas");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("does not show the files written on gpu1, gpu2"));
  CHECK_THAT(x.message, Contains("not a mount point"));
  CHECK_THAT(x.fix, Contains("mount the NAS at /mnt on cpu1"));
  CHECK(status(r, "gpu1", "nas") == CheckStatus::pass);
  CHECK(status(r, "gpu2", "nas") == CheckStatus::pass);

  Cluster ro;  // GPU hosts may mount it read-only; the download host must write
  ro.probes.nas->reads[1].written = false;
  ro.probes.nas->reads[1].write_error = "Read-only file system";
  for (auto& rd : ro.probes.nas->reads) rd.seen = {"cpu1", "gpu2"};
  auto rr = ro.evaluate();
  CHECK(status(rr, "gpu1", "nas") == CheckStatus::pass);
  CHECK_THAT(row(rr, "gpu1", "nas").message, Contains("read-only"));
  ro.probes.nas->reads[0].written = false;
  ro.probes.nas->reads[0].write_error = "Read-only file system";
  CHECK(status(ro.evaluate(), "cpu1", "nas") == CheckStatus::fail);

  Cluster missing;
  missing.probes.nas->reads[2].directory = false;
  CHECK_THAT(row(missing.evaluate(), "gpu2", "nas").message, Contains("/mnt does not exist on gpu2"));

  Cluster model;
  model.options.model_path = "/mnt/Qwen/Qwen2___5-72B-Instruct";
  for (auto& rd : model.probes.nas->reads) rd.model_present = rd.host != "gpu2";
  auto m = model.evaluate();
  CHECK(status(m, "gpu1", "model-path") == CheckStatus::pass);
  CHECK(status(m, "gpu2", "model-path") == CheckStatus::fail);
  CHECK_THAT(row(m, "gpu2", "model-path").fix, Contains("vllm#2289"));
}

TEST_CASE("clocks: against the head, within the measurement's uncertainty", "[preflight][clock]") {
  Cluster c;
  c.f("gpu2").clock->remote_epoch += 30;
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "clock");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("+30.000 s against the head gpu1"));
  CHECK_THAT(x.fix, Contains("timedatectl set-ntp true"));
  CHECK(status(r, "gpu1", "clock") == CheckStatus::pass);
  // Beyond the threshold only within the uncertainty: a warning.
  Cluster w;
  w.f("gpu2").clock->remote_epoch += 5.3;
  w.f("gpu2").clock->local_received += 0.5;
  CHECK(status(w.evaluate(), "gpu2", "clock") == CheckStatus::warn);
}

TEST_CASE("simulated GPUs: GPU checks say simulated, the rest are real", "[preflight][simulated]") {
  Cluster c;
  c.inventory = Inventory::parse(R"(
defaults: {vars: {runtime: none, mount_point: /mnt}}
hosts:
  gpu1: {address: 172.18.190.25, roles: [head, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}
  gpu2: {address: 172.18.190.26, roles: [worker, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}
  cpu1: {address: 172.18.190.27, roles: [download]}
)");
  auto declared = declared_gpus_of(c.inventory.hosts());
  for (auto const* h : {"gpu1", "gpu2"}) {
    auto& f = c.f(h);
    f.gpus.clear();
    f.nvidia.reset();
    f.docker.reset();
    apply_declared_gpus(f, declared.at(h));
  }
  c.options.docker_images.clear();
  auto r = c.evaluate();
  INFO(r.table());
  CHECK(r.ok());
  for (auto const* h : {"gpu1", "gpu2"}) {
    CHECK(status(r, h, "gpus") == CheckStatus::simulated);
    CHECK(status(r, h, "driver") == CheckStatus::simulated);
    CHECK(status(r, h, "cuda") == CheckStatus::simulated);
    CHECK(status(r, h, "shm") == CheckStatus::pass);
    CHECK(status(r, h, "ray-port") == CheckStatus::pass);
    CHECK(status(r, h, "python") == CheckStatus::pass);
  }
  CHECK_THAT(row(r, "gpu1", "gpus").message, Contains("simulated"));
  CHECK_THAT(r.table(), Contains("simulated"));
  // Docker hosts with simulated GPUs: the NVIDIA runtime is not checked.
  Cluster d;
  d.inventory = Inventory::parse(R"(
hosts:
  gpu1: {address: 172.18.190.25, roles: [head, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}
)");
  d.facts.resize(1);
  d.f("gpu1").gpus.clear();
  apply_declared_gpus(d.f("gpu1"), *declared_gpus(d.inventory.hosts()[0]));
  CHECK(status(d.evaluate(), "gpu1", "nvidia-runtime") == CheckStatus::simulated);
}

TEST_CASE("an unreachable host fails ssh with the diagnostic, and nothing else is guessed", "[preflight]") {
  Cluster c;
  c.facts[1] = HostFactsOutcome{};
  c.facts[1].host = "gpu2";
  c.facts[1].error = make_error_code(errc::host_unreachable);
  c.facts[1].message = "gpu2 (root@172.18.190.26): no answer within 10 s; check the address and the firewall";
  auto r = c.evaluate();
  auto x = row(r, "gpu2", "ssh");
  CHECK(x.status == CheckStatus::fail);
  CHECK_THAT(x.message, Contains("no answer within 10 s"));
  CHECK_FALSE(r.find("gpu2", "shm"));
  CHECK(status(r, "gpu1", "shm") == CheckStatus::pass);
}

TEST_CASE("model-fits: the planner on the GPUs found", "[preflight][model]") {
  nlohmann::json config = {{"architectures", {"Qwen2ForCausalLM"}},
                           {"hidden_size", 8192},
                           {"intermediate_size", 29568},
                           {"max_position_embeddings", 32768},
                           {"model_type", "qwen2"},
                           {"num_attention_heads", 64},
                           {"num_hidden_layers", 80},
                           {"num_key_value_heads", 8},
                           {"tie_word_embeddings", false},
                           {"torch_dtype", "bfloat16"},
                           {"vocab_size", 152064}};
  auto model = model_facts_from_config(config);
  estimate_tensors_from_config(model);
  Cluster c;
  c.options.model = model;
  auto r = c.evaluate();
  auto x = row(r, "cluster", "model-fits");
  CHECK(x.status == CheckStatus::pass);
  CHECK_THAT(x.message, Contains("TP=2 PP=2"));
  CHECK(r.hosts.back() == "cluster");
  // One node of 2x L20 holds no 145 GB model.
  Cluster one;
  one.options.model = model;
  one.inventory = Inventory::parse(R"(
hosts:
  gpu1: {address: 172.18.190.25, roles: [head, gpu]}
  cpu1: {address: 172.18.190.27, roles: [download]}
)");
  one.facts.erase(one.facts.begin() + 1);
  auto o = one.evaluate();
  CHECK(status(o, "cluster", "model-fits") == CheckStatus::fail);
  CHECK_FALSE(row(o, "cluster", "model-fits").fix.empty());
}

// ---------------------------------------------------------------------------
// Probe scripts and their parsers

TEST_CASE("the port listener and prober: scripts and output", "[preflight][probe]") {
  auto listener = port_listener_script({{6379, "ray"}, {29500, "rdzv"}}, 2, std::chrono::seconds(60));
  CHECK_THAT(listener, Contains("exec 'python3' '-u' '-c'"));
  CHECK_THAT(listener, Contains("'6379:ray,29500:rdzv' '2' '60'"));
  auto l = parse_port_listener_output("gpu1", "@@ck-busy 6379 Address already in use\n@@ck-listen 29500 rdzv\n"
                                              "@@ck-listen 41234 ephemeral\n@@ck-listen 99999 bogus\n@@ck-ready\n"
                                              "@@ck-accept 29500 10.0.0.2\n");
  CHECK(l.started);
  REQUIRE(l.ports.size() == 2);
  CHECK(l.ports[1] == std::pair<int, std::string>{41234, "ephemeral"});
  REQUIRE(l.busy.size() == 1);
  CHECK(l.busy[0].second == "Address already in use");

  std::vector<PortTarget> targets = {{"gpu1", "10.0.0.1", 6379, "ray"},
                                     {"gpu1", "10.0.0.1", 41234, "ephemeral"},
                                     {"gpu3", "10.0.0.3", 40000, "ephemeral"},
                                     {"gpu4", "10.0.0.4", 40001, "ephemeral"}};
  auto prober = port_prober_script(targets, std::chrono::milliseconds(2500));
  CHECK_THAT(prober, Contains("'2.500' '0,10.0.0.1,6379' '1,10.0.0.1,41234'"));
  CHECK_THAT(prober, Contains("/dev/tcp"));  // the fallback without Python
  auto p = parse_port_prober_output("gpu2", targets,
                                    "@@ck-probe 0 ok 10.0.0.2 0.8 greeted\n"
                                    "@@ck-probe 1 fail 2500.3 timed out\n"
                                    "@@ck-probe 2 ok 10.0.0.2 0.4 silent\n"
                                    "@@ck-probe 17 ok x 1 greeted\ngarbage\n");
  REQUIRE(p.size() == 4);
  CHECK(p[0].ok());
  CHECK(p[0].source_address == "10.0.0.2");
  CHECK(p[0].milliseconds == Approx(0.8));
  CHECK_FALSE(p[1].ok());
  CHECK(p[1].error == "timed out");
  CHECK_FALSE(p[2].ok());  // something else answered on that port
  CHECK_THAT(p[2].error, Contains("another program"));
  CHECK_FALSE(p[3].ok());
  CHECK_THAT(p[3].error, Contains("no result"));
}

TEST_CASE("the NAS probe scripts, run on this machine", "[preflight][probe][local]") {
  char tmpl[] = "/tmp/ck-nas-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl));
  fs::path dir = tmpl;
  auto sh = [](std::string const& script) {
    std::string out;
    std::string cmd = "sh -c " + shell::quote(script);
    if (FILE* f = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      ::pclose(f);
    }
    return out;
  };
  std::string token = "0123abcd";
  CHECK_THAT(sh(nas_write_script(dir.string() + "/", token, 0)), Contains("@@ck-nas-written"));
  CHECK_THAT(sh(nas_write_script(dir.string(), token, 1)), Contains("@@ck-nas-written"));
  fs::create_directories(dir / "model");
  std::ofstream(dir / "model" / "config.json") << "{}";
  auto read = parse_nas_read_output("h1", token, {"h1", "h2"}, sh(nas_read_script(dir.string(), token, 2, (dir / "model").string())));
  CHECK(read.directory);
  CHECK_FALSE(read.mount_point);
  CHECK_FALSE(read.filesystem_type.empty());
  CHECK(read.seen == std::vector<std::string>{"h1", "h2"});
  REQUIRE(read.model_present);
  CHECK(*read.model_present);
  // A stale or foreign file with the wrong content is not counted.
  std::ofstream(dir / (".clusterkit-preflight-" + token + "-1")) << "someone else\n";
  auto again = parse_nas_read_output("h1", token, {"h1", "h2"}, sh(nas_read_script(dir.string(), token, 2, "")));
  CHECK(again.seen == std::vector<std::string>{"h1"});
  CHECK_FALSE(again.model_present);
  sh(nas_cleanup_script(dir.string(), token, 2));
  CHECK_FALSE(fs::exists(dir / (".clusterkit-preflight-" + token + "-0")));
  CHECK_THAT(sh(nas_write_script((dir / "missing").string(), token, 0)), Contains("is not a directory"));
  fs::remove_all(dir);
}

TEST_CASE("preflight options out of range are refused, naming the setting and its flag", "[preflight]") {
  auto refusal = [](auto change) {
    PreflightOptions o;
    change(o);
    try {
      validate_preflight_options(o);
      return std::string("accepted");
    } catch (Error const& e) {
      CHECK(e.code() == make_error_code(errc::invalid_argument));
      return std::string(e.what());
    }
  };
  CHECK(refusal([](PreflightOptions&) {}) == "accepted");
  CHECK(refusal([](PreflightOptions& o) { o.shm_min_gib = 0; o.disk_min_free_gib = 0; }) == "accepted");  // no minimum
  CHECK_THAT(refusal([](PreflightOptions& o) { o.shm_min_gib = std::nan(""); }),
             Contains("shm_min_gib must be between 0 and 1048576 GiB, not nan (--shm-min-gib)"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.disk_min_free_gib = -1; }), Contains("disk_min_free_gib must be between 0"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.ray_port = 0; }), Contains("ray_port 0 is not a TCP port (1-65535; --ray-port)"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.rdzv_port = 65536; }), Contains("rdzv_port 65536 is not a TCP port"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.max_clock_offset_seconds = 0; }), Contains("max_clock_offset_seconds must be above 0"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.facts_timeout = std::chrono::milliseconds(10); }), Contains("facts_timeout must be between 1 s"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.plan.max_model_len = 0; }), Contains("max_model_len must be at least 1"));
  CHECK_THAT(refusal([](PreflightOptions& o) { o.plan.gpu_memory_utilization = 1.5; }), Contains("gpu_memory_utilization must be in (0, 1]"));
}
