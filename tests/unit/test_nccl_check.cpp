// The NCCL/Gloo check: the generated program (run here against a stand-in
// torch: there are no GPUs or PyTorch on this machine), the torchrun plan,
// the output parser (fuzzed) and the verdict.
#include "clusterkit/nccl_check.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "clusterkit/shell.hpp"

using namespace clusterkit;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path const fixtures = fs::path(CK_SOURCE_DIR) / "tests" / "fixtures";

struct Ran {
  int status = -1;
  std::string out;
};

Ran sh(std::string const& cmd) {
  Ran r;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
    int st = ::pclose(f);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  return r;
}

// The program needs only Python's standard library (and torch, here the
// stand-in). python3 runs with -S (no site-packages: a torch installed on this
// machine can never take the stand-in's place or answer for a missing one)
// and, where nothing of ours is on its path either, -I (no PYTHONPATH, no user
// site).
void require_python() {
  if (sh("command -v python3 >/dev/null 2>&1 && echo yes").out != "yes\n")
    FAIL("python3 not found: run scripts/install-deps.sh");
}

struct ScriptFile {
  fs::path path;
  ScriptFile() {
    char tmpl[] = "/tmp/ck-nccl-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
    std::ofstream(path) << nccl_check_script();
  }
  ~ScriptFile() { fs::remove(path); }
};

/// Runs the program as rank `rank` of `world` against the fake torch.
Ran run_rank(ScriptFile const& s, int rank, int world, std::string const& extra_env = "", std::string const& args = "") {
  return sh("cd /tmp && env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=" + shell::quote((fixtures / "fake_torch").string()) + " RANK=" + std::to_string(rank) +
            " WORLD_SIZE=" + std::to_string(world) + " LOCAL_RANK=" + std::to_string(rank % 2) + " " + extra_env +
            " python3 -S -s " + shell::quote(s.path.string()) + " --iterations=2 --warmup=1 " + args + " 2>&1");
}

NcclHostRun host_run(std::string host, int exit_code, std::string tail = {}) {
  NcclHostRun h;
  h.host = std::move(host);
  h.exit_code = exit_code;
  h.output_tail = std::move(tail);
  return h;
}

}  // namespace

TEST_CASE("the program: vLLM's checks, then the bandwidth sweep", "[nccl]") {
  auto s = nccl_check_script();
  CHECK_THAT(s, Contains("dist.init_process_group(backend=\"nccl\")"));
  CHECK_THAT(s, Contains("dist.all_reduce(data, op=dist.ReduceOp.SUM)"));
  CHECK_THAT(s, Contains("backend=\"gloo\""));
  CHECK_THAT(s, Contains("busbw = algbw * 2 * (world - 1) / world"));
  CHECK_THAT(s, Contains("@@ck-nccl "));
  CHECK(default_nccl_sizes() == std::vector<std::uint64_t>{1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20});
  require_python();
  ScriptFile f;
  CHECK(sh("python3 -I -S -m py_compile " + shell::quote(f.path.string()) + " 2>&1").status == 0);
}

TEST_CASE("the program against a stand-in torch: two ranks pass", "[nccl][local]") {
  require_python();
  ScriptFile f;
  auto r0 = run_rank(f, 0, 2, "", "--sizes=1048576,4194304");
  auto r1 = run_rank(f, 1, 2, "", "--sizes=1048576,4194304");
  INFO(r0.out << r1.out);
  CHECK(r0.status == 0);
  CHECK(r1.status == 0);
  std::vector<NcclHostRun> runs = {host_run("a", 0), host_run("b", 0)};
  auto result = evaluate_nccl_check(runs, {r0.out, r1.out}, 2);
  INFO(result.summary());
  CHECK(result.ok());
  CHECK(result.nccl_ok());
  CHECK(result.gloo_ok());
  // ok() follows the members: a problem found before the run (a host's
  // facts), or a host that exited non-zero, is not ok, with no flag to set.
  auto with_early_problem = result;
  with_early_problem.problems.push_back("b: facts failed");
  CHECK_FALSE(with_early_problem.ok());
  auto host_failed = result;
  host_failed.hosts[1].exit_code = 1;
  CHECK_FALSE(host_failed.ok());
  CHECK_FALSE(NcclCheckResult{}.ok());  // nothing ran
  REQUIRE(result.ranks.size() == 2);
  CHECK(result.ranks[1].device == "Fake GPU 1");
  CHECK(result.ranks[0].nccl_version == "2.21.5");
  REQUIRE(result.bandwidth.size() == 2);  // rank 0 reports them
  CHECK(result.bandwidth[0].bytes == 1048576);
  CHECK(result.bandwidth[1].bytes == 4194304);
  CHECK(result.bandwidth[0].busbw_gbps == Approx(result.bandwidth[0].algbw_gbps));  // 2(n-1)/n = 1 for n = 2
  CHECK(result.bandwidth[0].dtype == "float32");
  CHECK_THAT(result.summary(), Contains("NCCL all_reduce: pass, Gloo all_reduce: pass"));
  CHECK_THAT(result.summary(), Contains("4 MiB"));
  auto j = result.to_json();
  CHECK(j["ok"] == true);
  CHECK(j["bandwidth"].size() == 2);
}

TEST_CASE("the program against a stand-in torch: a wrong Gloo sum fails", "[nccl][local]") {
  require_python();
  ScriptFile f;
  auto r0 = run_rank(f, 0, 2, "CK_FAKE_TORCH_BREAK=gloo", "--sizes=1048576");
  auto r1 = run_rank(f, 1, 2, "CK_FAKE_TORCH_BREAK=gloo", "--sizes=1048576");
  CHECK(r0.status == 2);
  auto result = evaluate_nccl_check({host_run("a", r0.status), host_run("b", r1.status)}, {r0.out, r1.out}, 2);
  CHECK_FALSE(result.ok());
  CHECK(result.nccl_ok());
  CHECK_FALSE(result.gloo_ok());
  auto text = result.summary();
  CHECK_THAT(text, Contains("Gloo all_reduce gave 1, expected 2"));
  CHECK_THAT(text, Contains("GLOO_SOCKET_IFNAME"));  // the hint for REFERENCES #3
  // Without torch at all: an error line and exit 1.
  auto none = sh("cd /tmp && RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 python3 -I -S " + shell::quote(f.path.string()) + " 2>&1");
  CHECK(none.status == 1);
  auto parsed = parse_nccl_check_output(none.out);
  REQUIRE(parsed.ranks.size() == 1);
  CHECK_THAT(parsed.ranks[0].error, Contains("No module named 'torch'"));
  CHECK_FALSE(parsed.ranks[0].initialized);
}

TEST_CASE("plan: one torchrun per host, the head first", "[nccl]") {
  NcclCheckOptions o;
  o.env["NCCL_DEBUG"] = "INFO";
  o.host_env["gpu2"]["CUDA_VISIBLE_DEVICES"] = "0,1";
  auto plan = plan_nccl_check({{"gpu1", 2, "eth0"}, {"gpu2", 4, "ens3"}}, "172.18.190.25", "/tmp/check.py", "ck-1a2b", o);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].host == "gpu1");
  CHECK(plan[0].node_rank == 0);
  CHECK(plan[1].node_rank == 1);
  CHECK(plan[0].nproc == 2);  // the smallest GPU count, everywhere
  CHECK(plan[1].nproc == 2);
  CHECK(plan[1].argv == std::vector<std::string>{"torchrun", "--nnodes=2", "--nproc_per_node=2", "--node_rank=1",
                                                 "--rdzv_backend=c10d", "--rdzv_endpoint=172.18.190.25:29500",
                                                 "--rdzv_id=ck-1a2b", "--rdzv_conf=join_timeout=300", "--max_restarts=0",
                                                 "/tmp/check.py", "--sizes=1048576,4194304,16777216,67108864,268435456",
                                                 "--warmup=5", "--iterations=20", "--dtype=float32"});
  CHECK(plan[0].env.at("NCCL_SOCKET_IFNAME") == "eth0");
  CHECK(plan[1].env.at("GLOO_SOCKET_IFNAME") == "ens3");
  CHECK(plan[1].env.at("NCCL_DEBUG") == "INFO");
  CHECK(plan[1].env.at("CUDA_VISIBLE_DEVICES") == "0,1");
  CHECK_FALSE(plan[0].env.count("CUDA_VISIBLE_DEVICES"));

  // Inside the serving container, with python -m, fixed GPUs, sizes.
  o.exec_prefix = {"docker", "exec", "node"};
  o.launcher = {"python3", "-m", "torch.distributed.run"};
  o.nproc_per_node = 1;
  o.sizes = {1 << 20};
  o.rdzv_port = 29600;
  auto c = plan_nccl_check({{"local", 2, "lo"}}, "127.0.0.1", "/tmp/x.py", "r", o);
  CHECK(std::vector<std::string>(c[0].argv.begin(), c[0].argv.begin() + 7) ==
        std::vector<std::string>{"docker", "exec", "node", "python3", "-m", "torch.distributed.run", "--nnodes=1"});
  CHECK_THAT(shell::join(c[0].argv), Contains("'--nproc_per_node=1'"));
  CHECK_THAT(shell::join(c[0].argv), Contains("'--rdzv_endpoint=127.0.0.1:29600'"));
  CHECK_FALSE(c[0].env.count("NCCL_SOCKET_IFNAME"));  // never pinned to loopback
  auto v6 = plan_nccl_check({{"a", 1, ""}}, "fd00::1", "/tmp/x.py", "r", NcclCheckOptions{});
  CHECK_THAT(shell::join(v6[0].argv), Contains("--rdzv_endpoint=[fd00::1]:29500"));

  auto refuse = [](auto&& f) {
    try {
      f();
    } catch (Error const& e) {
      CHECK(e.code() == make_error_code(errc::invalid_argument));
      return std::string(e.what());
    }
    FAIL("accepted");
    return std::string();
  };
  CHECK_THAT(refuse([] { plan_nccl_check({}, "h", "/s", "r", {}); }), Contains("no GPU host"));
  CHECK_THAT(refuse([] { plan_nccl_check({{"cpu1", 0, "eth0"}}, "h", "/s", "r", {}); }), Contains("cpu1 has no GPU"));
  // The flag is --nproc (the API's option is nproc_per_node): both named.
  CHECK_THAT(refuse([] { plan_nccl_check({{"cpu1", 0, "eth0"}}, "h", "/s", "r", {}); }),
             Contains("--nproc N; nproc_per_node in the API"));
  CHECK_THAT(refuse([] {
               NcclCheckOptions bad;
               bad.env["NOT-A-NAME"] = "x";
               plan_nccl_check({{"a", 1, ""}}, "h", "/s", "r", bad);
             }),
             Contains("NOT-A-NAME"));
  CHECK_THAT(refuse([] {
               NcclCheckOptions bad;
               bad.rdzv_port = 70000;
               plan_nccl_check({{"a", 1, ""}}, "h", "/s", "r", bad);
             }),
             Contains("is not a TCP port (1-65535"));
}

TEST_CASE("output parser: prefixes, noise, malformed lines", "[nccl]") {
  std::string text =
      "W1127 18:27:50.907000 616 torch/distributed/run.py:851] *****\n"
      "[rank0]: @@ck-nccl {\"event\": \"init\", \"rank\": 0, \"world_size\": 2, \"local_rank\": 0, \"hostname\": \"gpu1\", "
      "\"device\": \"NVIDIA H100 80GB HBM3\", \"torch\": \"2.5.1\", \"cuda\": \"12.4\", \"nccl\": \"2.21.5\"}\n"
      "@@ck-nccl {\"event\": \"nccl_allreduce\", \"rank\": 0, \"ok\": true, \"value\": 2.0, \"expected\": 2}\n"
      "@@ck-nccl {\"event\": \"bandwidth\", \"rank\": 0, \"bytes\": 268435456, \"iterations\": 20, \"time_us\": 1500.0, "
      "\"algbw_gbps\": 178.9, \"busbw_gbps\": 178.9, \"dtype\": \"float32\"}\n"
      "@@ck-nccl {not json\n"
      "@@ck-nccl [1, 2]\n"
      "@@ck-nccl {\"event\": \"mystery\", \"rank\": 0}\n"
      "@@ck-nccl {\"event\": \"init\", \"rank\": 99999999999}\n";
  auto p = parse_nccl_check_output(text);
  REQUIRE(p.ranks.size() == 1);
  CHECK(p.ranks[0].hostname == "gpu1");
  CHECK(p.ranks[0].device == "NVIDIA H100 80GB HBM3");
  CHECK(p.ranks[0].nccl_ok == true);
  CHECK_FALSE(p.ranks[0].gloo_ok);
  REQUIRE(p.bandwidth.size() == 1);
  CHECK(p.bandwidth[0].bytes == 268435456);
  CHECK(p.bandwidth[0].algbw_gbps == Approx(178.9));
  CHECK(p.malformed.size() == 4);
  // The real torchrun output of the H100 host (another program's format):
  // no marker lines, nothing invented.
  std::ifstream in(fixtures / "nvidia-smi" / "h100x2" / "torchrun-nccl-allreduce.txt");
  std::stringstream real;
  real << in.rdbuf();
  auto none = parse_nccl_check_output(real.str());
  CHECK(none.ranks.empty());
  CHECK(none.bandwidth.empty());
}

TEST_CASE("verdict: missing ranks, failed hosts, hints", "[nccl]") {
  std::string rank0 =
      "@@ck-nccl {\"event\": \"init\", \"rank\": 0, \"world_size\": 4}\n"
      "@@ck-nccl {\"event\": \"nccl_allreduce\", \"rank\": 0, \"ok\": true, \"value\": 4}\n";
  auto r = evaluate_nccl_check({host_run("gpu1", 1, "RuntimeError: Gloo connectFullMesh failed with ...\n"),
                                host_run("gpu2", 0)},
                               {rank0 + "Gloo connectFullMesh failed\n", ""}, 4);
  CHECK_FALSE(r.ok());
  auto text = r.summary();
  CHECK_THAT(text, Contains("gpu1: torchrun exited with status 1"));
  CHECK_THAT(text, Contains("rank(s) 1, 2, 3 never reported"));
  CHECK_THAT(text, Contains("rank 0: no Gloo all_reduce result"));
  CHECK_THAT(text, Contains("GLOO_SOCKET_IFNAME"));
  CHECK_THAT(text, Contains("nccl-check FAILED"));
  auto nothing = evaluate_nccl_check({host_run("gpu1", 1), host_run("gpu2", 1)}, {"", ""}, 4);
  CHECK_THAT(nothing.summary(), Contains("no rank reported"));
  auto rendezvous = evaluate_nccl_check({host_run("gpu2", 1)}, {"torch.distributed.DistNetworkError: ... timed out"}, 2);
  CHECK_THAT(rendezvous.summary(), Contains("rendezvous"));
}

TEST_CASE("a wrong NCCL_SOCKET_IFNAME: the hint names the variable, its value and the host (seen on an H100)", "[nccl]") {
  // The program's lines from the real capture; NCCL's message alone was
  // "Bootstrap : no socket interface found".
  std::ifstream in(fixtures / "nvidia-smi" / "h100x1" / "nccl-wrong-nccl-ifname.txt");
  std::string line, program;
  while (std::getline(in, line))
    if (line.rfind("@@ck-nccl ", 0) == 0) program += line + "\n";
  REQUIRE_THAT(program, Contains("no socket interface found"));
  auto run = host_run("h200", 1);
  run.launch.env["NCCL_SOCKET_IFNAME"] = "nosuch0";
  auto r = evaluate_nccl_check({run}, {program}, 1);
  CHECK_FALSE(r.ok());
  auto text = r.summary();
  CHECK_THAT(text, Contains("no interface matching NCCL_SOCKET_IFNAME=nosuch0 on h200"));
  CHECK_THAT(text, Contains("ip -o route get"));
  // Unset: says so rather than naming a value.
  auto unset = evaluate_nccl_check({host_run("h200", 1)}, {program}, 1);
  CHECK_THAT(unset.summary(), Contains("NCCL_SOCKET_IFNAME is not set"));
  // Other failures get no such hint.
  auto other = evaluate_nccl_check({run}, {"RuntimeError: CUDA out of memory\n"}, 1);
  CHECK_THAT(other.summary(), !Contains("NCCL_SOCKET_IFNAME=nosuch0"));
}

TEST_CASE("one rank: no bandwidth to report (seen on one H200: 9,253 GB/s of nothing)", "[nccl]") {
  // What the one-GPU run on a real H200 printed (tests/fixtures/nvidia-smi/
  // h200x1/nccl.txt): the all_reduce of one rank moves no data, so its
  // "algbw" grew with the size to 9,253 GB/s. Say so instead of a table.
  std::string one =
      "@@ck-nccl {\"event\": \"init\", \"rank\": 0, \"world_size\": 1, \"hostname\": \"vm\", \"device\": \"NVIDIA H200\"}\n"
      "@@ck-nccl {\"event\": \"nccl_allreduce\", \"rank\": 0, \"ok\": true, \"value\": 1.0, \"expected\": 1}\n"
      "@@ck-nccl {\"event\": \"gloo_allreduce\", \"rank\": 0, \"ok\": true, \"value\": 1.0, \"expected\": 1}\n"
      "@@ck-nccl {\"event\": \"bandwidth\", \"rank\": 0, \"bytes\": 268435456, \"iterations\": 20, \"time_us\": 29.0, "
      "\"algbw_gbps\": 9253.33, \"busbw_gbps\": 0.0, \"dtype\": \"float32\"}\n"
      "@@ck-nccl {\"event\": \"done\", \"rank\": 0}\n";
  auto r = evaluate_nccl_check({host_run("h200", 0)}, {one}, 1);
  auto text = r.summary();
  CHECK_THAT(text, Contains("one rank, no communication to measure"));
  CHECK_THAT(text, !Contains("9253"));
  CHECK_THAT(text, Contains("nccl-check passed"));
  // --json keeps the figures, with the note.
  CHECK(r.to_json()["bandwidth_note"] == "one rank: no communication to measure (run with 2 or more GPUs or hosts)");
  CHECK(r.to_json()["bandwidth"].size() == 1);
  // The real capture says what was printed before the fix.
  std::ifstream in(fixtures / "nvidia-smi" / "h200x1" / "nccl.txt");
  std::stringstream before;
  before << in.rdbuf();
  CHECK_THAT(before.str(), Contains("9253.33 GB/s"));
}

TEST_CASE("fuzz: the output parser on mutations of real program output", "[nccl][fuzz]") {
  std::string seed =
      "@@ck-nccl {\"cuda\": \"0.0\", \"device\": \"Fake GPU 0\", \"event\": \"init\", \"hostname\": \"vm\", \"local_rank\": 0, "
      "\"nccl\": \"2.21.5\", \"rank\": 0, \"torch\": \"0.0.0+fake\", \"world_size\": 2}\n"
      "@@ck-nccl {\"event\": \"nccl_allreduce\", \"expected\": 2, \"ok\": true, \"rank\": 0, \"value\": 2.0}\n"
      "@@ck-nccl {\"event\": \"gloo_allreduce\", \"expected\": 2, \"ok\": true, \"rank\": 0, \"value\": 2.0}\n"
      "@@ck-nccl {\"algbw_gbps\": 269.6, \"busbw_gbps\": 269.6, \"bytes\": 1048576, \"dtype\": \"float32\", \"event\": "
      "\"bandwidth\", \"iterations\": 3, \"rank\": 0, \"time_us\": 3.88}\n"
      "@@ck-nccl {\"event\": \"done\", \"ok\": true, \"rank\": 0}\n";
  std::mt19937 rng(777);
  auto pos = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n)(rng); };
  int iterations = 3000;
  if (char const* e = std::getenv("CK_FUZZ_ITERATIONS")) iterations = std::max(1, std::atoi(e));
  for (int i = 0; i < iterations; ++i) {
    std::string s = seed;
    for (int k = 0, n = 1 + static_cast<int>(pos(3)); k < n; ++k) {
      switch (pos(5)) {
        case 0: s.resize(pos(s.size())); break;
        case 1: if (!s.empty()) s[pos(s.size() - 1)] = static_cast<char>(pos(255)); break;
        case 2: s.insert(pos(s.size()), std::string(pos(40), '[')); break;
        case 3: s.insert(pos(s.size()), "1e400"); break;
        case 4: s.insert(pos(s.size()), "\"rank\": -5, "); break;
        default: s.insert(pos(s.size()), "@@ck-nccl "); break;
      }
    }
    try {
      auto p = parse_nccl_check_output(s);
      auto r = evaluate_nccl_check({host_run("a", 0)}, {s}, 2);
      (void)r.to_json().dump();
      (void)r.summary();
      (void)p;
    } catch (std::exception const& e) {
      FAIL("mutation " << i << " threw: " << e.what());
    }
  }
}

TEST_CASE("the check's hosts: the GPU hosts, the head first; a selection as given", "[nccl]") {
  auto inv = Inventory::parse(R"(
hosts:
  dl:   {roles: [download]}
  w1:   {roles: [worker], gpus: {count: 2}}
  head: {roles: [head], gpus: {count: 2}}
  nas:  {roles: [nas]}
)",
                              "lab.yaml");
  auto names = [](std::vector<InventoryHost> const& hs) {
    std::vector<std::string> n;
    for (auto const& h : hs) n.push_back(h.spec.name);
    return n;
  };
  // The head is node rank 0 and the rendezvous, wherever it is listed.
  CHECK(names(nccl_check_hosts(inv)) == std::vector<std::string>{"head", "w1"});
  CHECK(names(nccl_check_hosts(inv, "w1")) == std::vector<std::string>{"w1"});
  CHECK_THROWS_WITH(nccl_check_hosts(inv, "role:gpu"), Contains("selects no host") && Contains("role:head"));

  auto no_gpus = Inventory::parse("hosts: {a: {roles: [download]}, b: {roles: [nas]}}", "cpu.yaml");
  try {
    nccl_check_hosts(no_gpus);
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::unknown_host_or_group);
    CHECK_THAT(std::string(e.what()), Contains("no GPU host") && Contains("-g HOSTS"));
  }
}

TEST_CASE("nccl-check takes the GPU count the inventory declares") {
  auto const declared = [](unsigned count, bool simulated) { return DeclaredGpus{count, "NVIDIA L20", 48, simulated}; };
  // A host given 2 of its 8 GPUs: 2 processes there, and torchrun's one
  // count is the smallest.
  std::vector<NcclNodeInput> nodes{{"gpu1", 8, "eth0", declared(2, false)}, {"gpu2", 4, "eth0", std::nullopt}};
  auto plan = plan_nccl_check(nodes, "10.0.0.1", "/tmp/x.py", "r", NcclCheckOptions{});
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].nproc == 2);
  CHECK(plan[1].nproc == 2);
  // --nproc still wins.
  NcclCheckOptions three;
  three.nproc_per_node = 3;
  CHECK(plan_nccl_check(nodes, "10.0.0.1", "/tmp/x.py", "r", three)[0].nproc == 3);

  auto refused = [](std::vector<NcclNodeInput> const& n) {
    try {
      plan_nccl_check(n, "10.0.0.1", "/tmp/x.py", "r", NcclCheckOptions{});
    } catch (Error const& e) {
      CHECK(e.code() == make_error_code(errc::invalid_argument));
      return std::string(e.what());
    }
    FAIL("accepted");
    return std::string();
  };
  // More declared than the host has.
  CHECK_THAT(refused({{"gpu1", 2, "eth0", declared(4, false)}}),
             Contains("gpu1: the inventory declares 4 GPUs, nvidia-smi lists 2; fix the host's gpus.count"));
  // The lab's simulated GPUs: said before torchrun would fail on them.
  CHECK_THAT(refused({{"h1", 0, "eth0", declared(2, true)}}),
             Contains("h1's 2 GPUs are simulated (the inventory declares them; nvidia-smi lists none): NCCL needs real GPUs"));
  // Simulated declared on a host with real GPUs: the real ones count.
  CHECK(plan_nccl_check({{"g", 4, "eth0", declared(2, true)}}, "10.0.0.1", "/tmp/x.py", "r", NcclCheckOptions{})[0].nproc == 4);
}

TEST_CASE("nccl-check options out of range are refused, naming the setting and its flag", "[nccl]") {
  auto refusal = [](auto change) {
    NcclCheckOptions o;
    change(o);
    try {
      validate_nccl_check_options(o);
      return std::string("accepted");
    } catch (Error const& e) {
      return std::string(e.what());
    }
  };
  CHECK(refusal([](NcclCheckOptions&) {}) == "accepted");
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.rdzv_port = 0; }), Contains("rdzv_port 0 is not a TCP port (1-65535; --port)"));
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.nproc_per_node = 5000; }), Contains("nproc_per_node 5000 is more GPUs than a host has"));
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.iterations = 0; }), Contains("iterations must be between 1 and 1000000, not 0"));
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.warmup = 2000000; }), Contains("warmup must be between 0 and 1000000"));
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.sizes = {1, 0}; }), Contains("a bandwidth size of 0 bytes is out of range"));
  CHECK_THAT(refusal([](NcclCheckOptions& o) { o.launcher.clear(); }), Contains("the launcher is empty"));
  // The operation reports it as its one problem, before anything connects
  // (no host is reached: the one given does not exist).
  boost::asio::io_context io;
  HostSpec nowhere;
  nowhere.name = "nowhere";
  nowhere.address = "127.0.0.1";
  nowhere.port = 1;
  NcclCheckOptions bad;
  bad.iterations = 0;
  NcclCheckResult got;
  async_nccl_check({Host(io.get_executor(), nowhere)}, bad, [&](NcclCheckResult r) { got = std::move(r); });
  io.run();
  CHECK_FALSE(got.ok());
  REQUIRE(got.problems.size() == 1);
  CHECK_THAT(got.problems[0], Contains("iterations must be between 1 and 1000000"));
  CHECK(got.hosts.empty());
}
