// Host facts: the parsers on real captured output (a 2x H100 host's
// nvidia-smi, this machine and a lab host for everything else), the facts
// script and its sections, simulated GPUs, and fuzzing: thousands of random
// mutations and truncations of every fixture give an Error, never a crash.
#include "clusterkit/facts.hpp"
#include "clusterkit/planner.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "clusterkit/runtime.hpp"

using namespace clusterkit;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

fs::path const fixtures = fs::path(CK_SOURCE_DIR) / "tests" / "fixtures";

std::string read(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string h100(char const* name) { return read(fixtures / "nvidia-smi" / "h100x2" / name); }
std::string facts_fixture(char const* name) { return read(fixtures / "facts" / name); }

constexpr std::uint64_t MiB = 1ull << 20;

/// The message of the parse_error `f` throws; fails when it throws nothing
/// or something else.
template <class F>
std::string parse_failure(F&& f) {
  try {
    f();
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::parse_error));
    return e.what();
  }
  FAIL("the parser accepted malformed input");
  return {};
}

// The options the facts fixtures were captured with (clusterkit facts
// --disk / --disk /mnt --disk /nonexistent --peer ...).
FactsOptions lab_options() {
  FactsOptions o;
  o.disk_paths = {"/", "/mnt", "/nonexistent"};
  o.peers = {"10.88.11.11"};
  return o;
}
FactsOptions local_options() {
  FactsOptions o;
  o.disk_paths = {"/", "/mnt", "/nonexistent"};
  o.peers = {"10.88.11.11", "127.0.0.1"};
  return o;
}

// The query of a noheader,nounits run, holding the values of the real
// query.csv of the same host (that one was captured with a header and units).
constexpr char const* kH100NoHeader =
    "0, GPU-ba0a1ca6-b342-92ca-6e06-8fb97448a729, NVIDIA H100 80GB HBM3, 81559, 0, 580.159.04, 9.0, 00000000:00:06.0\n"
    "1, GPU-5454c17d-a746-134b-536f-351e5c5ac5d2, NVIDIA H100 80GB HBM3, 81559, 0, 580.159.04, 9.0, 00000000:00:07.0\n";

// Docker with the NVIDIA runtime, as `docker version`/`docker info` print it
// (hand-written in the documented shape: no Docker daemon on this machine).
constexpr char const* kDockerVersion =
    R"({"Client":{"Platform":{"Name":"Docker Engine - Community"},"Version":"27.3.1","ApiVersion":"1.47","DefaultAPIVersion":"1.47","GitCommit":"ce12230","GoVersion":"go1.22.7","Os":"linux","Arch":"amd64","BuildTime":"Fri Sep 20 11:40:59 2024","Context":"default"},"Server":{"Platform":{"Name":"Docker Engine - Community"},"Components":[{"Name":"Engine","Version":"27.3.1"}],"Version":"27.3.1","ApiVersion":"1.47","MinAPIVersion":"1.24","GitCommit":"41ca978","GoVersion":"go1.22.7","Os":"linux","Arch":"amd64","KernelVersion":"5.15.0-122-generic","BuildTime":"2024-09-20T11:40:59.000000000+00:00"}})";
constexpr char const* kDockerRuntimes =
    R"({"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}})";

std::string section(std::string const& name, std::string const& body, int status = 0) {
  return "@@ck-section " + name + "@@\n" + body + (body.empty() || body.back() == '\n' ? "" : "\n") + "\n@@ck-status " +
         std::to_string(status) + "@@\n";
}

/// A GPU host's facts output, assembled from the real H100 fixtures and the
/// lab fixture for the non-GPU sections.
std::string assembled_gpu_host() {
  auto lab = facts_fixture("lab-h1.txt");
  // Drop the lab's nvidia/docker/python sections, keep the rest.
  std::string out;
  for (auto const& s : split_facts_sections(lab)) {
    if (s.name == "gpus" || s.name == "nvidia-smi" || s.name == "topology" || s.name == "docker-version" ||
        s.name == "docker-runtimes" || s.name == "nvidia-toolkit" || s.name == "python" || s.name == "end")
      continue;
    out += section(s.name, s.body, s.exit_status.value_or(0));
  }
  out += section("gpus", kH100NoHeader);
  out += section("nvidia-smi", h100("nvidia-smi.txt"));
  out += section("topology", h100("topo.txt"));
  out += section("docker-version", kDockerVersion);
  out += section("docker-runtimes", kDockerRuntimes);
  out += section("nvidia-toolkit", "/usr/bin/nvidia-container-runtime\n/usr/bin/nvidia-ctk\n");
  out += section("python",
                 R"({"executable": "/usr/bin/python3", "version": "3.12.3", "packages": {"ray": "2.40.0", "vllm": "0.7.3", "torch": "2.5.1", "transformers": null}})");
  out += section("end", "");
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// nvidia-smi (real 2x H100)

TEST_CASE("the GPU query of a real 2x H100 host, with header and units", "[facts][gpu]") {
  auto gpus = parse_gpu_query(h100("query.csv"));
  REQUIRE(gpus.size() == 2);
  CHECK(gpus[0].index == 0);
  CHECK(gpus[0].uuid == "GPU-ba0a1ca6-b342-92ca-6e06-8fb97448a729");
  CHECK(gpus[0].name == "NVIDIA H100 80GB HBM3");
  CHECK(gpus[0].memory_total_bytes == 81559 * MiB);
  CHECK(gpus[0].memory_used_bytes == 0);
  CHECK(gpus[0].driver_version == "580.159.04");
  CHECK(gpus[0].compute_capability == "9.0");
  CHECK(gpus[0].pci_bus_id == "00000000:00:06.0");
  CHECK(gpus[1].index == 1);
  CHECK(gpus[1].uuid == "GPU-5454c17d-a746-134b-536f-351e5c5ac5d2");
  CHECK(gpus[1].pci_bus_id == "00000000:00:07.0");
  CHECK_FALSE(gpus[0].simulated);
}

TEST_CASE("the GPU query in the form the facts script asks for (noheader, nounits)", "[facts][gpu]") {
  CHECK(gpu_query_fields() == "index,uuid,name,memory.total,memory.used,driver_version,compute_cap,pci.bus_id");
  auto gpus = parse_gpu_query(kH100NoHeader);
  auto real = parse_gpu_query(h100("query.csv"));
  REQUIRE(gpus.size() == real.size());
  for (std::size_t i = 0; i < gpus.size(); ++i) {
    CHECK(gpus[i].uuid == real[i].uuid);
    CHECK(gpus[i].name == real[i].name);
    CHECK(gpus[i].memory_total_bytes == real[i].memory_total_bytes);
    CHECK(gpus[i].driver_version == real[i].driver_version);
    CHECK(gpus[i].compute_capability == real[i].compute_capability);
    CHECK(gpus[i].pci_bus_id == real[i].pci_bus_id);
  }
  // A header in another order is read by its names.
  auto reordered = parse_gpu_query("name, index, memory.total [MiB]\nNVIDIA L20, 0, 46068 MiB\n");
  CHECK(reordered[0].name == "NVIDIA L20");
  CHECK(reordered[0].memory_total_bytes == 46068 * MiB);
  // [N/A] fields (older drivers have no compute_cap) are empty, not errors.
  auto na = parse_gpu_query("0, GPU-x, Tesla T4, 15360, [N/A], 470.57.02, [N/A], 00000000:00:04.0\n");
  CHECK(na[0].memory_used_bytes == 0);
  CHECK(na[0].compute_capability.empty());
}

TEST_CASE("nvidia-smi's own complaints are parse errors that quote it", "[facts][gpu]") {
  auto msg = parse_failure([] { parse_gpu_query("No devices were found\n"); });
  CHECK_THAT(msg, Contains("No devices were found"));
  msg = parse_failure([] {
    parse_gpu_query(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA "
        "driver is installed and running.\n");
  });
  CHECK_THAT(msg, Contains("couldn't communicate with the NVIDIA driver"));
  CHECK_THAT(parse_failure([] { parse_gpu_query("x, GPU-1, A, 1, 1, 1, 1, 1\n"); }), Contains("index"));
  CHECK_THAT(parse_failure([] { parse_gpu_query("0, GPU-1, A, lots, 1, 1, 1, 1\n"); }), Contains("memory.total"));
  CHECK_THAT(parse_failure([] { parse_gpu_query(""); }), Contains("printed nothing"));
}

TEST_CASE("the nvidia-smi header of a real H100 host", "[facts][gpu]") {
  auto h = parse_nvidia_smi_header(h100("nvidia-smi.txt"));
  CHECK(h.smi_version == "580.159.04");
  CHECK(h.driver_version == "580.159.04");
  CHECK(h.cuda_version == "13.0");
  CHECK_THAT(parse_failure([] { parse_nvidia_smi_header("Failed to initialize NVML: Driver/library version mismatch\n"); }),
             Contains("Driver/library version mismatch"));
}

TEST_CASE("a real H200 host: the nvidia-smi header and what facts made of it", "[facts][gpu]") {
  auto dir = fixtures / "nvidia-smi" / "h200x1";
  auto header = parse_nvidia_smi_header(read(dir / "nvidia-smi.txt"));
  CHECK(header.driver_version == "580.159.04");
  CHECK(header.cuda_version == "13.0");
  // facts --json, as it ran there, agrees with the raw outputs beside it.
  auto facts = nlohmann::json::parse(read(dir / "facts.json")).at(0);
  auto const& gpus = facts.at("gpus");
  REQUIRE(gpus.size() == 1);
  CHECK(gpus[0].at("name") == "NVIDIA H200");
  CHECK(gpus[0].at("memory_total_bytes") == 143771ull << 20);  // "0MiB / 143771MiB" in nvidia-smi
  CHECK(read(dir / "nvidia-smi-L.txt").find(gpus[0].at("uuid").get<std::string>()) != std::string::npos);
  CHECK(facts.at("driver_version") == header.driver_version);
  CHECK_FALSE(facts.at("gpus_simulated").get<bool>());
}

TEST_CASE("nvidia-smi topo -m of a real H100 host: NVLink between the two GPUs", "[facts][gpu]") {
  auto t = parse_gpu_topology(h100("topo.txt"));
  REQUIRE(t.devices == std::vector<std::string>{"GPU0", "GPU1"});
  CHECK(t.links[0][0] == "X");
  CHECK(t.links[0][1] == "NV18");
  CHECK(t.link(0, 1) == GpuLink::nvlink);
  CHECK(t.link(1, 1) == GpuLink::self);
  CHECK(t.nvlinks(0, 1) == 18);
  CHECK(t.all_gpus_nvlinked());
  CHECK(t.cpu_affinity[0] == "0-31");
  CHECK(t.numa_affinity[1] == "0");
}

TEST_CASE("topo -m of a PCIe host with NICs (the documented layout)", "[facts][gpu]") {
  // The layout nvidia-smi prints on PCIe machines with a NIC (hand-written).
  std::string text =
      "\tGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
      "GPU0\t X \tPIX\tNODE\tSYS\tNODE\t0-23,48-71\t0\t\tN/A\n"
      "GPU1\tPIX\t X \tNODE\tSYS\tNODE\t0-23,48-71\t0\t\tN/A\n"
      "GPU2\tNODE\tNODE\t X \tSYS\tPXB\t0-23,48-71\t0\t\tN/A\n"
      "GPU3\tSYS\tSYS\tSYS\t X \tSYS\t24-47,72-95\t1\t\tN/A\n"
      "NIC0\tNODE\tNODE\tPXB\tSYS\t X \n"
      "\nLegend:\n\n  X    = Self\n\nNIC Legend:\n\n  NIC0: mlx5_0\n";
  auto t = parse_gpu_topology(text);
  REQUIRE(t.devices.size() == 5);
  CHECK(t.link(0, 1) == GpuLink::pix);
  CHECK(t.link(0, 2) == GpuLink::node);
  CHECK(t.link(0, 3) == GpuLink::sys);
  CHECK(t.link(2, 4) == GpuLink::pxb);
  CHECK_FALSE(t.all_gpus_nvlinked());
  CHECK(t.cpu_affinity[3] == "24-47,72-95");
  CHECK(t.cpu_affinity[4].empty());
  CHECK_THAT(parse_failure([] { parse_gpu_topology("GPU0\tGPU1\nGPU0\t X \tNV4\n"); }), Contains("no row for GPU1"));
  CHECK_THAT(parse_failure([] { parse_gpu_topology("hello\n"); }), Contains("names no device"));
}

// ---------------------------------------------------------------------------
// The rest, on real output of this machine and a lab host

TEST_CASE("small parsers on real output", "[facts]") {
  auto os = parse_os_release(
      "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n");
  CHECK(os.id == "debian");
  CHECK(os.version_id == "12");
  CHECK(os.pretty_name == "Debian GNU/Linux 12 (bookworm)");
  auto k = parse_uname("Linux 6.18.44-fc-v669 x86_64\n");
  CHECK(k.system == "Linux");
  CHECK(k.release == "6.18.44-fc-v669");
  CHECK(k.machine == "x86_64");
  CHECK(parse_nproc("2\n") == 2);
  CHECK(parse_port_range("32768\t60999\n") == std::pair<int, int>{32768, 60999});
  CHECK(parse_epoch_seconds("1795807404.196870472\n") == Approx(1795807404.196870472));
  CHECK(parse_epoch_seconds("1795807404.%N\n") == 1795807404.0);  // busybox date
  auto df = parse_df("Filesystem        1-blocks  Used   Available Capacity Mounted on\n"
                     "tmpfs          25276502016     0 25276502016       0% /dev/shm\n");
  REQUIRE(df.size() == 1);
  CHECK(df[0].filesystem == "tmpfs");
  CHECK(df[0].total_bytes == 25276502016ull);
  CHECK(df[0].mount_point == "/dev/shm");
  auto spaced = parse_df("Filesystem 1-blocks Used Available Capacity Mounted on\n"
                         "//nas/share a 1000 10 990 1% /mnt/my models\n");
  CHECK(spaced[0].filesystem == "//nas/share a");
  CHECK(spaced[0].mount_point == "/mnt/my models");
}

TEST_CASE("plain ip output (iproute2 without JSON) from a lab host", "[facts][network]") {
  auto ifaces = parse_ip_addr(facts_fixture("lab-h2-ip-o-addr.txt"));
  REQUIRE(ifaces.size() == 2);
  CHECK(ifaces[0].name == "lo");
  CHECK(ifaces[0].loopback);
  CHECK(ifaces[1].name == "eth0");
  CHECK(ifaces[1].ipv4() == "10.88.11.12");
  CHECK(ifaces[1].addresses[0].prefix_length == 24);
  auto r = parse_ip_route_get(facts_fixture("lab-h2-ip-route-get.txt"));
  CHECK(r.peer_address == "10.88.11.11");
  CHECK(r.interface == "eth0");
  CHECK(r.source_address == "10.88.11.12");
  CHECK_FALSE(r.local);
  auto self = parse_ip_route_get(facts_fixture("lab-h2-ip-route-get-self.txt"));
  CHECK(self.local);
  CHECK(self.interface == "lo");
  auto json_route = parse_ip_route_get(R"([{"dst":"8.8.8.8","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.2","flags":[],"uid":0,"cache":[]}])");
  CHECK(json_route.gateway == "192.0.2.1");
  CHECK(json_route.source_address == "192.0.2.2");
}

TEST_CASE("docker version without a daemon (real) and with the NVIDIA runtime", "[facts][docker]") {
  auto d = parse_docker_version(facts_fixture("docker-version-no-daemon.json"));
  CHECK(d.client_version == "28.2.2");
  CHECK(d.client_api_version == "1.50");
  CHECK_FALSE(d.daemon_reachable);
  auto up = parse_docker_version(kDockerVersion);
  CHECK(up.daemon_reachable);
  CHECK(up.server_version == "27.3.1");
  up.runtimes = parse_docker_runtimes(kDockerRuntimes);
  CHECK(up.runtimes == std::vector<std::string>{"io.containerd.runc.v2", "nvidia", "runc"});
  CHECK(up.nvidia_runtime_registered());
  CHECK(up.can_run_gpu_containers());
  up.runtimes = {"runc"};
  CHECK_FALSE(up.can_run_gpu_containers());
  up.nvidia_toolkit = {"/usr/bin/nvidia-container-runtime-hook"};
  CHECK(up.can_run_gpu_containers());  // `--gpus` goes through the hook
  CHECK(parse_docker_runtimes("null").empty());
  CHECK_THAT(parse_failure([] { parse_docker_version("Cannot connect to the Docker daemon"); }), Contains("not valid JSON"));
  CHECK_THAT(parse_failure([] { parse_docker_version(std::string(100, '[')); }), Contains("nested"));
}

TEST_CASE("a lab host's whole facts output", "[facts]") {
  auto f = parse_facts_output(facts_fixture("lab-h1.txt"), lab_options());
  CHECK(f.hostname == "h1");
  REQUIRE(f.os);
  CHECK(f.os->id == "debian");
  REQUIRE(f.kernel);
  CHECK(f.kernel->machine == "x86_64");
  CHECK(f.cpus == 2u);
  REQUIRE(f.memory);
  CHECK(f.memory->total_bytes == 24684084ull * 1024);
  REQUIRE(f.shm);
  CHECK(f.shm->mount_point == "/dev/shm");
  CHECK(f.shm->total_bytes > (1ull << 30));
  REQUIRE(f.disks.size() == 2);  // "/" and "/mnt"; /nonexistent is an issue
  CHECK(f.disks[0].path == "/");
  CHECK(f.disks[1].path == "/mnt");
  CHECK(f.disks[1].filesystem == "lab-mnt");
  REQUIRE(f.issue("disk /nonexistent"));
  CHECK_THAT(f.issue("disk /nonexistent")->message, Contains("No such file or directory"));
  CHECK(f.ephemeral_ports == std::pair<int, int>{32768, 60999});
  CHECK(f.gpus.empty());
  REQUIRE(f.issue("gpus"));
  CHECK(f.issue("gpus")->kind == FactIssue::Kind::absent);
  CHECK_THAT(f.issue("gpus")->message, Contains("nvidia-smi is not installed"));
  REQUIRE(f.docker);
  CHECK_FALSE(f.docker->daemon_reachable);
  CHECK_THAT(f.docker->daemon_error, Contains("Cannot connect to the Docker daemon"));
  REQUIRE(f.interface_named("eth0"));
  CHECK(f.interface_named("eth0")->ipv4() == "10.88.11.11");
  // The route to the host's own address: the interface holding it, not lo.
  auto const* r = f.route_to("10.88.11.11");
  REQUIRE(r);
  CHECK(r->local);
  CHECK(r->interface == "eth0");
  CHECK(r->source_address == "10.88.11.11");
  REQUIRE(f.clock);
  CHECK(f.clock->remote_epoch > 1.7e9);
  REQUIRE(f.python);
  CHECK(f.python->version == "3.11.2");
  CHECK(f.python->package("vllm").empty());
  CHECK_FALSE(f.issue("script"));
}

TEST_CASE("this machine's whole facts output (90 interfaces, several routes)", "[facts]") {
  auto f = parse_facts_output(facts_fixture("local-debian12.txt"), local_options());
  CHECK(f.interfaces.size() > 50);
  REQUIRE(f.interface_named("eth0"));
  CHECK(f.interface_named("eth0")->mtu == 1400);
  REQUIRE(f.routes.size() == 2);
  CHECK(f.routes[0].peer == "10.88.11.11");
  CHECK(f.routes[0].interface == "ckbr-tpre");
  CHECK(f.routes[0].source_address == "10.88.11.1");
  CHECK(f.routes[1].local);
  CHECK(f.routes[1].interface == "lo");
  CHECK(f.python->executable == "/root/.pyenv/versions/3.11.7/bin/python3");
  auto j = f.to_json();
  CHECK(j["routes"][0]["interface"] == "ckbr-tpre");
  CHECK(j["gpus"].empty());
}

TEST_CASE("a GPU host's facts, assembled from the real H100 output", "[facts][gpu]") {
  auto f = parse_facts_output(assembled_gpu_host(), lab_options());
  REQUIRE(f.gpus.size() == 2);
  CHECK_FALSE(f.gpus_simulated);
  CHECK(f.driver_version() == "580.159.04");
  CHECK(f.cuda_version() == "13.0");
  REQUIRE(f.topology);
  CHECK(f.topology->all_gpus_nvlinked());
  REQUIRE(f.docker);
  CHECK(f.docker->nvidia_runtime_registered());
  CHECK(f.docker->nvidia_toolkit.size() == 2);
  CHECK(f.python->package("vllm") == "0.7.3");
  CHECK(f.python->package("transformers").empty());
  CHECK_FALSE(f.issue("gpus"));
  HostFactsOutcome o;
  o.host = "gpu1";
  o.facts = f;
  auto text = describe_facts(o);
  CHECK_THAT(text, Contains("2x NVIDIA H100 80GB HBM3, 79.6 GiB each, compute 9.0"));
  CHECK_THAT(text, Contains("GPU0-GPU1 NV18"));
  CHECK_THAT(text, Contains("580.159.04, CUDA 13.0"));
  CHECK_THAT(text, Contains("vllm 0.7.3"));
}

TEST_CASE("simulated GPUs from the inventory, only when there are no real ones", "[facts][simulated]") {
  auto inv = Inventory::parse(R"(
hosts:
  h1: {address: 10.0.0.1, roles: [head, gpu], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}
  h2: {address: 10.0.0.2, roles: [gpu], gpus: {count: 2, model: L20, memory_gib: 48}}
  h3: {address: 10.0.0.3, roles: [download]}
)");
  auto declared = declared_gpus_of(inv.hosts());
  REQUIRE(declared.size() == 2);
  CHECK(declared["h1"].simulated);
  CHECK(declared["h1"].count == 2);
  CHECK(declared["h1"].model == "L20");
  CHECK(declared["h1"].memory_gib == 48);
  CHECK_FALSE(declared["h2"].simulated);

  auto lab = parse_facts_output(facts_fixture("lab-h1.txt"), lab_options());
  lab.host = "h1";
  apply_declared_gpus(lab, declared["h1"]);
  REQUIRE(lab.gpus.size() == 2);
  CHECK(lab.gpus_simulated);
  CHECK(lab.gpus[0].simulated);
  CHECK(lab.gpus[0].name == "L20");
  // One source of truth with the planner (issue 14): "L20, 48" is the L20's
  // nvidia-smi total, 46068 MiB, as `plan --gpus "2x L20 48GB"` reads it.
  CHECK(lab.gpus[0].memory_total_bytes == 46068ull << 20);
  CHECK(lab.gpus[0].memory_total_bytes == parse_gpu_inventory("2x L20 48GB").nodes[0].memory_bytes);
  DeclaredGpus unknown = declared["h1"];
  unknown.model = "FancyGPU";
  apply_declared_gpus(lab, unknown);
  CHECK(lab.gpus[0].memory_total_bytes == 48ull << 30);  // an unknown model: as declared
  CHECK(lab.to_json()["gpus"][0]["simulated"] == true);
  HostFactsOutcome o;
  o.host = "h1";
  o.facts = lab;
  CHECK_THAT(describe_facts(o), Contains("[simulated"));

  // Not simulated: nothing is invented.
  auto plain = parse_facts_output(facts_fixture("lab-h1.txt"), lab_options());
  apply_declared_gpus(plain, declared["h2"]);
  CHECK(plain.gpus.empty());
  // Real GPUs win over a simulated declaration.
  auto gpu = parse_facts_output(assembled_gpu_host(), lab_options());
  apply_declared_gpus(gpu, declared["h1"]);
  CHECK(gpu.gpus.size() == 2);
  CHECK_FALSE(gpu.gpus_simulated);
  CHECK(gpu.gpus[0].name == "NVIDIA H100 80GB HBM3");
  CHECK(gpu.issue("gpus-declared"));
}

// ---------------------------------------------------------------------------
// The script

TEST_CASE("the facts script: one section per fact, arguments quoted", "[facts][script]") {
  FactsOptions o;
  o.disk_paths = {"/mnt/my models", "/data/it's"};
  o.peers = {"gpu1.example", "10.0.0.11"};
  o.docker_images = {"vllm/vllm-openai:v0.7.3"};
  auto s = facts_script(o);
  for (auto name : {"clock", "hostname", "os-release", "uname", "nproc", "meminfo", "shm", "disk 0", "disk 1", "gpus",
                    "nvidia-smi", "topology", "docker-version", "docker-runtimes", "image 0", "addresses", "route 0", "route 1",
                    "python", "port-range"})
    CHECK_THAT(s, Contains(std::string(name)));
  CHECK_THAT(s, Contains("'/mnt/my models'"));
  CHECK_THAT(s, Contains("'/data/it'\\''s'"));
  CHECK_THAT(s, Contains("--query-gpu=index,uuid,name,memory.total,memory.used,driver_version,compute_cap,pci.bus_id"));
  CHECK_THAT(s, Contains("--format=csv,noheader,nounits"));
  CHECK_THAT(s, Contains("timeout 20"));
  o.disk_paths = {"/bad\npath"};
  CHECK_THROWS_AS(facts_script(o), Error);
}

TEST_CASE("sections: status, absent program, stderr, cut output", "[facts][script]") {
  auto secs = split_facts_sections(
      "noise before\n@@ck-section a@@\nline1\nline2\n\n@@ck-status 0@@\n@@ck-section b@@\n@@ck-absent nvidia-smi@@\n"
      "@@ck-section c@@\n\n@@ck-status 1@@\n@@ck-stderr@@ df: /x: No such file or directory\n@@ck-section d@@\npartial");
  REQUIRE(secs.size() == 4);
  CHECK(secs[0].body == "line1\nline2\n");
  CHECK(secs[0].exit_status == 0);
  CHECK(secs[1].absent_program == "nvidia-smi");
  CHECK_FALSE(secs[1].exit_status);
  CHECK(secs[2].exit_status == 1);
  CHECK(secs[2].stderr_tail == "df: /x: No such file or directory");
  CHECK(secs[3].body == "partial\n");
  CHECK_FALSE(secs[3].exit_status);
  // A cut output: what is there is parsed, the rest becomes issues.
  auto lab = facts_fixture("lab-h1.txt");
  auto f = parse_facts_output(lab.substr(0, lab.find("@@ck-section meminfo@@")), lab_options());
  CHECK(f.cpus == 2u);
  CHECK_FALSE(f.memory);
  CHECK(f.issue("memory"));
  CHECK(f.issue("script"));
}

TEST_CASE("the facts script on this machine, through Host", "[facts][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine("here"));
  FactsOptions o;
  o.disk_paths = {"/", "/nonexistent-ck"};
  o.peers = {"127.0.0.1"};
  o.declared_gpus["here"] = DeclaredGpus{2, "L20", 48, true};
  auto out = gather_facts({host}, o);
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].ok());
  auto const& f = out[0].facts;
  CHECK(f.host == "here");
  CHECK(f.os);
  CHECK(f.kernel);
  CHECK(f.cpus);
  CHECK(f.memory);
  CHECK(f.shm);
  CHECK(f.disks.size() == 1);
  CHECK(f.issue("disk /nonexistent-ck"));
  REQUIRE(f.clock);
  // The same clock: the offset is within the round trip.
  CHECK(std::abs(f.clock->offset_seconds()) <= f.clock->uncertainty_seconds() + 0.01);
  CHECK(f.clock->uncertainty_seconds() < 2);
  CHECK(f.routes.size() == 1);
  auto const* gpus = f.issue("gpus");
  if (gpus && gpus->kind == FactIssue::Kind::absent) {
    // No nvidia-smi here: the declared GPUs are simulated.
    CHECK(f.gpus_simulated);
    CHECK(f.gpus.size() == 2);
  } else {
    // A machine with nvidia-smi: its real GPUs win over the declared ones.
    CHECK_FALSE(f.gpus_simulated);
    CHECK_FALSE(f.gpus.empty());
  }
  CHECK_FALSE(f.issue("script"));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(out[0].duration).count();
  WARN("facts on this machine took " << ms << " ms");
}

// ---------------------------------------------------------------------------
// Fuzzing: any input gives a value or an Error, never a crash

namespace {

std::string mutate(std::string s, std::mt19937& rng) {
  std::uniform_int_distribution<int> kind(0, 9);
  auto pos = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n)(rng); };
  static constexpr char const* tokens[] = {"@@ck-section gpus@@\n", "@@ck-status 1@@\n", "@@ck-absent x@@\n", "\n", ",",
                                           "[[[[[[[[[[[[", "{\"", "\"", "%", " X ", "NV", "\t", "\x1b[4m", "99999999999999999999",
                                           "-1", "MiB", "Filesystem", "GPU0", ":", "="};
  int rounds = 1 + static_cast<int>(pos(4));
  for (int r = 0; r < rounds; ++r) {
    switch (kind(rng)) {
      case 0:  // truncate
        s.resize(pos(s.size()));
        break;
      case 1:  // flip a byte
        if (!s.empty()) s[pos(s.size() - 1)] = static_cast<char>(pos(255));
        break;
      case 2:  // insert a token
        s.insert(pos(s.size()), tokens[pos(std::size(tokens) - 1)]);
        break;
      case 3:  // delete a span
        if (!s.empty()) {
          auto a = pos(s.size() - 1);
          s.erase(a, pos(std::min<std::size_t>(64, s.size() - a)));
        }
        break;
      case 4:  // duplicate a span
        if (!s.empty()) {
          auto a = pos(s.size() - 1);
          auto span = s.substr(a, pos(std::min<std::size_t>(200, s.size() - a)));
          s.insert(pos(s.size()), span);
        }
        break;
      case 5:  // replace a digit run with a huge number
        for (std::size_t i = pos(s.size()); i < s.size(); ++i)
          if (std::isdigit(static_cast<unsigned char>(s[i]))) {
            s.insert(i, "184467440737095516169");
            break;
          }
        break;
      case 6:  // cut a line in two
        s.insert(pos(s.size()), "\n");
        break;
      case 7:  // swap two bytes
        if (s.size() > 1) std::swap(s[pos(s.size() - 1)], s[pos(s.size() - 1)]);
        break;
      case 8:  // NUL and CR
        s.insert(pos(s.size()), pos(1) ? std::string(1, '\0') : std::string("\r"));
        break;
      default:  // empty it sometimes
        if (pos(20) == 0) s.clear();
        break;
    }
  }
  return s;
}

int fuzz_iterations() {
  if (char const* e = std::getenv("CK_FUZZ_ITERATIONS")) return std::max(1, std::atoi(e));
  return 3000;
}

/// Runs `parse` on `iterations` mutations of `seed`: it may return or throw
/// Error; anything else fails the test.
template <class Parse>
void fuzz(std::string const& name, std::string const& seed, Parse&& parse, std::uint32_t rng_seed) {
  std::mt19937 rng(rng_seed);
  int errors = 0, values = 0;
  for (int i = 0; i < fuzz_iterations(); ++i) {
    auto input = mutate(seed, rng);
    try {
      parse(input);
      ++values;
    } catch (Error const& e) {
      CHECK(e.code() == make_error_code(errc::parse_error));
      CHECK(std::string(e.what()).size() < 2000);  // messages quote excerpts, not the input
      ++errors;
    } catch (std::exception const& e) {
      FAIL(name << ": mutation " << i << " (seed " << rng_seed << ") threw a " << typeid(e).name() << ": " << e.what());
    }
  }
  INFO(name << ": " << values << " parsed, " << errors << " errors");
  CHECK(values + errors == fuzz_iterations());
}

}  // namespace

TEST_CASE("fuzz: every parser on mutations of every fixture", "[facts][fuzz]") {
  std::uint32_t seed = 20261127;
  fuzz("gpu query (csv)", h100("query.csv"), [](std::string const& s) { parse_gpu_query(s); }, seed++);
  fuzz("gpu query (noheader)", kH100NoHeader, [](std::string const& s) { parse_gpu_query(s); }, seed++);
  fuzz("nvidia-smi header", h100("nvidia-smi.txt"), [](std::string const& s) { parse_nvidia_smi_header(s); }, seed++);
  fuzz("topo -m", h100("topo.txt"), [](std::string const& s) { parse_gpu_topology(s); }, seed++);
  fuzz("docker version", facts_fixture("docker-version-no-daemon.json"), [](std::string const& s) { parse_docker_version(s); },
       seed++);
  fuzz("docker version (daemon)", kDockerVersion, [](std::string const& s) { parse_docker_version(s); }, seed++);
  fuzz("docker runtimes", kDockerRuntimes, [](std::string const& s) { parse_docker_runtimes(s); }, seed++);
  fuzz("ip -o addr", facts_fixture("lab-h2-ip-o-addr.txt"), [](std::string const& s) { parse_ip_addr(s); }, seed++);
  fuzz("ip route get", facts_fixture("lab-h2-ip-route-get.txt"), [](std::string const& s) { parse_ip_route_get(s); }, seed++);
  auto lab = facts_fixture("lab-h1.txt");
  for (auto const& sec : split_facts_sections(lab)) {
    if (sec.name == "os-release") fuzz("os-release", sec.body, [](std::string const& s) { parse_os_release(s); }, seed++);
    if (sec.name == "uname") fuzz("uname", sec.body, [](std::string const& s) { parse_uname(s); }, seed++);
    if (sec.name == "nproc") fuzz("nproc", sec.body, [](std::string const& s) { parse_nproc(s); }, seed++);
    if (sec.name == "meminfo") fuzz("meminfo", sec.body, [](std::string const& s) { parse_meminfo(s); }, seed++);
    if (sec.name == "shm") fuzz("df", sec.body, [](std::string const& s) { parse_df(s); }, seed++);
    if (sec.name == "clock") fuzz("date", sec.body, [](std::string const& s) { parse_epoch_seconds(s); }, seed++);
    if (sec.name == "port-range") fuzz("port range", sec.body, [](std::string const& s) { parse_port_range(s); }, seed++);
    if (sec.name == "addresses") fuzz("ip -j addr", sec.body, [](std::string const& s) { parse_ip_addr(s); }, seed++);
    if (sec.name == "route 0") fuzz("ip -j route get", sec.body, [](std::string const& s) { parse_ip_route_get(s); }, seed++);
    if (sec.name == "python") fuzz("python", sec.body, [](std::string const& s) { parse_python_facts(s); }, seed++);
  }
}

TEST_CASE("fuzz: the whole facts output never throws", "[facts][fuzz]") {
  auto const options = lab_options();
  std::mt19937 rng(4242);
  for (auto const& seed : {facts_fixture("lab-h1.txt"), assembled_gpu_host()}) {
    for (int i = 0; i < fuzz_iterations(); ++i) {
      auto input = mutate(seed, rng);
      try {
        auto f = parse_facts_output(input, options);
        (void)f.to_json().dump();
        HostFactsOutcome o;
        o.host = "x";
        o.facts = std::move(f);
        (void)describe_facts(o);
      } catch (std::exception const& e) {
        FAIL("parse_facts_output threw on mutation " << i << ": " << e.what());
      }
    }
  }
}
