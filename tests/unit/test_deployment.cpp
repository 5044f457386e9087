// Deployment's pure half, without hosts: the two example specs
// (examples/deployments/) read as the seed and the lab, a spec with several
// mistakes reported all at once with file:line:column and "did you mean",
// the fingerprint, the record's JSON round trip, and the texts people read
// (DeploymentRecord::summary, DeploymentPlanResult::text) checked word for
// word. tests/python/test_deployment.py checks the same through Python.
#include "clusterkit/deployment.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/yaml_mutations.hpp"

using namespace clusterkit;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

namespace fs = std::filesystem;

fs::path source_dir() { return fs::path(CK_SOURCE_DIR); }
fs::path deployments_dir() { return source_dir() / "examples" / "deployments"; }

std::string read_text(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The lab's inventory as `clusterkit lab up --hosts 3 --nas --docker --gpus 2
/// --roles head,worker,download` writes it (src/remote/lab.cpp), inline.
constexpr char const* kLabInventory = R"(inventory:
  defaults:
    user: root
    identity_file: /run/clusterkit/lab-ck/id_ed25519
    known_hosts_file: /run/clusterkit/lab-ck/known_hosts
    vars: {mount_point: /mnt, nas_type: sshfs, nas_export: "root@10.88.0.14:/srv/nas", runtime_image: "clusterkit/lab-runtime:bookworm", serve_venv: /opt/ck-serve}
  hosts:
    h1: {address: 10.88.0.11, roles: [head], groups: [lab, gpu], gpus: {count: 2, model: "L20", memory_gib: 48, simulated: true}}
    h2: {address: 10.88.0.12, roles: [worker], groups: [lab, gpu], gpus: {count: 2, model: "L20", memory_gib: 48, simulated: true}}
    h3: {address: 10.88.0.13, roles: [download], groups: [lab, download]}
    nas: {address: 10.88.0.14, roles: [nas], groups: [storage]}
)";

/// lab.yaml with its `inventory:` line (a lab's file that may not exist)
/// replaced by the lab's inventory inline.
std::string lab_spec_text() {
  auto text = read_text(deployments_dir() / "lab.yaml");
  auto at = text.find("\ninventory:");
  REQUIRE(at != std::string::npos);
  auto end = text.find('\n', at + 1);
  return text.substr(0, at + 1) + kLabInventory + text.substr(end + 1);
}

/// Every message line of a spec's Error (after the "N mistakes" header).
std::vector<std::string> mistakes(std::string const& what) {
  std::vector<std::string> out;
  std::istringstream in(what);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line))
    if (line.rfind("  ", 0) == 0) out.push_back(line.substr(2));
  return out;
}

DeploymentRecord hand_made_record() {
  DeploymentRecord r;
  r.name = "qwen72b";
  r.spec_file = "examples/deployments/qwen72b-two-node.yaml";
  r.spec_fingerprint = "0123456789abcdef";
  r.status = "up";
  r.started_at = "2025-01-02T03:04:05Z";
  r.finished_at = "2025-01-02T03:07:25Z";
  r.total_seconds = 200.0;
  r.own_seconds = 12.5;
  r.endpoint = "http://172.18.190.25:8000";
  r.served_model_name = "qwen2.5-72b-instruct";
  r.api_key_file = "/root/.config/clusterkit/keys/qwen72b.key";
  r.versions = {{"vllm", "0.9.1"}, {"ray", "2.60.0"}};
  r.layout = {{"tp", 2}, {"pp", 2}, {"max_model_len", 32768}};
  r.node_env = {{"gpu1", {{"NCCL_SOCKET_IFNAME", "eth0"}, {"VLLM_HOST_IP", "172.18.190.25"}}}};
  StepRecord preflight{"preflight", "ok", "4 hosts ready", 0.0, 2.5, {}, nlohmann::json::object()};
  preflight.hosts.push_back({"gpu1", "ok", "", 0.0, 2.4});
  preflight.hosts.push_back({"gpu2", "ok", "", 0.0, 2.5});
  r.steps.push_back(preflight);
  r.steps.push_back({"nas", "skipped", "mounted on every host", 2.5, 3.0, {}, nlohmann::json::object()});
  r.steps.push_back({"serve", "ok", "ready", 3.0, 183.0, {}, {{"kv_cache_tokens", 64816}}});
  r.smoke = {{"text", "I am Qwen."}};
  r.bench = {{"requests", 20}, {"requests_per_second", 1.5}, {"output_tokens_per_second", 96.0}, {"ttft_p50_ms", 250.0}};
  r.simulated = {"the GPUs"};
  return r;
}

}  // namespace

TEST_CASE("deployment: the seed's spec is the seed") {
  auto spec = load_deployment_spec(deployments_dir() / "qwen72b-two-node.yaml");
  CHECK(spec.name == "qwen72b");
  CHECK(spec.head == "gpu1");
  CHECK(spec.workers == std::vector<std::string>{"gpu2"});
  CHECK(spec.model.download_host == "cpu1");
  CHECK(spec.model.id == "Qwen/Qwen2.5-72B-Instruct");
  CHECK(spec.model.hub == "modelscope");
  CHECK(spec.model.download_dir == "/data/Qwen/Qwen2___5-72B-Instruct");
  // The NAS from the inventory's vars.
  REQUIRE(spec.nas);
  CHECK(spec.nas->kind == NasKind::nfs);
  CHECK(spec.nas->source == "nas.example.internal:/share");
  CHECK(spec.nas->mount_point == "/mnt");
  CHECK(spec.serve.tensor_parallel == 2);
  CHECK(spec.serve.pipeline_parallel == 2);
  CHECK(spec.serve.served_model_name == "qwen2.5-72b-instruct");
  CHECK(spec.serve.port == 8000);
  CHECK(spec.ray.runtime == RayRuntimeKind::docker);
  CHECK(spec.ray.image == "vllm/vllm-openai");
  CHECK(spec.ray.shm_size == "10.24g");
  CHECK(spec.ray.port == 6379);
  CHECK(spec.checks.bench_requests == 20);
  CHECK(spec.checks.bench_max_tokens == 64);
  CHECK(spec.model_path() == "/mnt/Qwen/Qwen2___5-72B-Instruct");
  CHECK(spec.engine_model_path() == "/models/Qwen2___5-72B-Instruct");
  CHECK(spec.inventory.hosts().size() == 4);
  CHECK(deployment_steps() ==
        std::vector<std::string>{"preflight", "nas", "model", "verify", "layout", "ray", "serve", "smoke", "bench"});
}

TEST_CASE("deployment: the lab's spec has the seed's shape, layout auto") {
  auto spec = parse_deployment_spec(lab_spec_text(), "lab.yaml", deployments_dir());
  CHECK(spec.name == "lab");
  CHECK(spec.head == "h1");
  CHECK(spec.workers == std::vector<std::string>{"h2"});
  CHECK(spec.model.download_host == "h3");
  CHECK(spec.serve.tensor_parallel == 0);  // auto: the planner's
  CHECK(spec.serve.pipeline_parallel == 0);
  CHECK(spec.serve.max_model_len == 512u);
  CHECK_FALSE(spec.max_model_len_auto);
  CHECK(spec.serve.served_model_name == "tiny");
  CHECK(spec.ray.runtime == RayRuntimeKind::docker);
  CHECK(spec.ray.ipc_host);
  CHECK(spec.ray.env.at("OMP_NUM_THREADS") == "1");
  CHECK(spec.serve.env.at("VLLM_CPU_KVCACHE_SPACE") == "1");
  REQUIRE(spec.nas);
  CHECK(spec.nas->kind == NasKind::sshfs);
  CHECK(spec.model_path() == "/mnt/Qwen/Tiny2___5-4M-Instruct");
  CHECK(spec.engine_model_path() == "/models/Tiny2___5-4M-Instruct");
  CHECK(spec.checks.bench_requests == 16);
}

TEST_CASE("deployment: every mistake of a spec at once, with file:line:column and did you mean") {
  std::string const text = R"(name: qwen72b
inventory: ../inventories/seed-cluster.yaml
model:
  hub: modelscop
  download_host: cpu1
serve:
  tensor_paralel: 2
  port: eighty
ray:
  head: gpu3
)";
  try {
    parse_deployment_spec(text, "bad.yaml", deployments_dir());
    FAIL("a spec with five mistakes was accepted");
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::inventory_invalid));
    std::string const what = e.what();
    CHECK_THAT(what, Contains("5 mistakes in the deployment spec, nothing was started"));
    auto lines = mistakes(what);
    REQUIRE(lines.size() == 5);
    auto find = [&](std::string const& needle) {
      for (auto const& l : lines)
        if (l.find(needle) != std::string::npos) return l;
      FAIL("no mistake mentions " << needle << " in:\n" << what);
      return std::string();
    };
    CHECK(find("model.hub") == "bad.yaml:4:8: model.hub: \"modelscop\" is not a hub; use modelscope, hf or none");
    CHECK(find("model.id") == "bad.yaml:4:3: model.id: missing: the model's hub id (Qwen/Qwen2.5-72B-Instruct)");
    CHECK(find("tensor_paralel") ==
          "bad.yaml:7:3: serve.tensor_paralel: unknown field 'tensor_paralel'; did you mean 'tensor_parallel'?");
    CHECK(find("serve.port") == "bad.yaml:8:9: serve.port: expected a whole number from 1 to 65535");
    // (Where: the spec's first line for now; the head's own line would be better.)
    auto head = find("ray.head");
    CHECK(head.rfind("bad.yaml:", 0) == 0);
    CHECK_THAT(head, Contains(": ray.head: no host \"gpu3\" in the inventory; did you mean 'gpu"));
  }
}

TEST_CASE("deployment: the fingerprint follows what defines the deployment") {
  auto a = load_deployment_spec(deployments_dir() / "qwen72b-two-node.yaml");
  auto b = load_deployment_spec(deployments_dir() / "qwen72b-two-node.yaml");
  CHECK(a.fingerprint().size() == 16);
  CHECK(a.fingerprint() == b.fingerprint());
  b.serve.tensor_parallel = 4;
  b.serve.pipeline_parallel = 1;
  CHECK(a.fingerprint() != b.fingerprint());
  auto c = a;
  c.checks.bench_requests = 0;  // the checks are not the deployment
  CHECK(a.fingerprint() == c.fingerprint());
}

TEST_CASE("deployment: a record round-trips through JSON") {
  auto r = hand_made_record();
  auto j = r.to_json();
  auto back = DeploymentRecord::from_json(j);
  CHECK(back.to_json() == j);
  CHECK(back.summary() == r.summary());
  REQUIRE(back.step("preflight"));
  CHECK(back.step("preflight")->hosts.size() == 2);
  CHECK(back.step("serve")->detail.at("kv_cache_tokens") == 64816);
  CHECK(back.step("bench") == nullptr);
  CHECK(back.layout.at("tp") == 2);
  CHECK(back.node_env.at("gpu1").at("VLLM_HOST_IP") == "172.18.190.25");
  // From the file's text, as load_deployment_record reads it.
  auto again = DeploymentRecord::from_json(nlohmann::json::parse(j.dump()));
  CHECK(again.to_json() == j);
}

TEST_CASE("deployment: the record's summary, word for word") {
  std::string const expected =
      "deployment 'qwen72b': up\n"
      "  preflight  ok           2.5 s  4 hosts ready\n"
      "  nas        skipped      0.5 s  mounted on every host\n"
      "  serve      ok         180.0 s  ready\n"
      "endpoint:  http://172.18.190.25:8000/v1  (model qwen2.5-72b-instruct)\n"
      "api key:   /root/.config/clusterkit/keys/qwen72b.key (mode 0600; chat and bench use it)\n"
      "try:       clusterkit chat --url http://172.18.190.25:8000 --model qwen2.5-72b-instruct \"Who are you?\"\n"
      "bench:     20 requests, 1.50 req/s, 96.0 output tok/s, TTFT p50 250 ms\n"
      "time:      200.0 s in all, 12.5 s of it clusterkit's own\n"
      "SIMULATED: the GPUs\n";
  CHECK(hand_made_record().summary() == expected);

  // A failed run: the message, no endpoint lines.
  // With the breakdown (every full `up` writes one), the time line shows it.
  auto timed = hand_made_record();
  timed.own_breakdown = {{"total", 200.0}, {"engine_start", 170.0}, {"ray_start", 9.0}, {"data_copy", 4.0},
                         {"engine_answers", 8.5}, {"own", 12.5}};
  CHECK_THAT(timed.summary(),
             Catch::Contains("time:      200.0 s in all, 12.5 s of it clusterkit's own (the rest: engine start 170.0 s, Ray "
                             "start 9.0 s beside the data copy 4.0 s, the engine answering the checks 8.5 s)\n"));
  CHECK(DeploymentRecord::from_json(timed.to_json()).own_breakdown == timed.own_breakdown);

  auto failed = hand_made_record();
  failed.status = "failed";
  failed.message = "serve: the engine died: out of memory";
  failed.bench = nlohmann::json::object();
  failed.simulated.clear();
  failed.steps.back().status = "failed";
  CHECK(failed.summary() ==
        "deployment 'qwen72b': failed (serve: the engine died: out of memory)\n"
        "  preflight  ok           2.5 s  4 hosts ready\n"
        "  nas        skipped      0.5 s  mounted on every host\n"
        "  serve      failed     180.0 s  ready\n"
        "time:      200.0 s in all, 12.5 s of it clusterkit's own\n");
}

TEST_CASE("deployment: status's hosts layer, from the probe's real answer, word for word") {
  // /proc/uptime and /proc/loadavg as a lab host answered them.
  DeploymentHostLook h1;
  h1.host = "h1";
  h1.roles = {"head"};
  h1.reachable = true;
  h1.answer_seconds = 0.0123;
  REQUIRE(parse_host_probe("11107.46 21630.17\n0.52 0.40 0.31 2/311 48211\n", h1));
  CHECK(h1.uptime_seconds == Approx(11107.46));
  CHECK(h1.load == "0.52 0.40 0.31");
  CHECK(h1.summary() == "h1 (head): answered in 0.01 s, up 3 h 5 min, load 0.52 0.40 0.31");
  h1.uptime_seconds = 2 * 86400 + 3 * 3600 + 59;
  CHECK_THAT(h1.summary(), Contains("up 2 d 3 h,"));
  h1.uptime_seconds = 59;
  CHECK_THAT(h1.summary(), Contains("up 0 min,"));

  // Not that shape: nothing read, nothing made up.
  DeploymentHostLook odd;
  CHECK_FALSE(parse_host_probe("", odd));
  CHECK_FALSE(parse_host_probe("cat: /proc/uptime: No such file or directory\n", odd));
  CHECK_FALSE(parse_host_probe("12.0 3.0\n0.5 nan; 0.3 1/2 3\n", odd));
  CHECK_FALSE(parse_host_probe("-5 3.0\n0.5 0.4 0.3 1/2 3\n", odd));
  CHECK(odd.uptime_seconds == 0);
  CHECK(odd.load.empty());

  DeploymentHostLook h2;
  h2.host = "h2";
  h2.roles = {"worker", "download"};
  h2.message = "ssh: connect to host 10.77.0.3 port 22: No route to host";
  CHECK(h2.summary() == "h2 (worker, download): UNREACHABLE: ssh: connect to host 10.77.0.3 port 22: No route to host");
  auto const j = h2.to_json();
  CHECK(j.at("reachable") == false);
  CHECK(j.at("uptime_seconds").is_null());
  CHECK(j.at("message") == h2.message);

  // First in status's text, before the NAS.
  DeploymentStatus st;
  st.name = "lab";
  st.state = "DEGRADED";
  st.hosts = {h1, h2};
  st.problems = {"h2 does not answer: " + h2.message};
  auto const text = st.summary();
  CHECK_THAT(text, StartsWith("deployment 'lab': DEGRADED\n  host h1 (head): answered in 0.01 s, up 0 min, load 0.52 0.40 0.31\n"
                              "  host h2 (worker, download): UNREACHABLE: "));
  CHECK(st.to_json().at("hosts").size() == 2);
}

TEST_CASE("deployment: the plan's text, word for word") {
  DeploymentPlanResult plan;
  plan.steps.push_back({"nas",
                        "mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1",
                        "",
                        {{"gpu1", "mkdir -p /mnt\nmount -t nfs -o vers=3 nas.example.internal:/share /mnt"},
                         {"gpu2", "mount -t nfs -o vers=3 nas.example.internal:/share /mnt"}}});
  plan.steps.push_back({"model", "download Qwen/Qwen2.5-72B-Instruct on cpu1, copy into /mnt/Qwen/Qwen2___5-72B-Instruct",
                        "already on the NAS and verified", {}});
  plan.steps.push_back({"serve", "vllm serve, TP 2 x PP 2", "", {{"gpu1", std::string(250, 'x')}}});
  plan.notes.push_back("nothing was changed");
  std::string const expected =
      "1. nas: mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1\n"
      "     gpu1: mkdir -p /mnt ...\n"
      "     gpu2: mount -t nfs -o vers=3 nas.example.internal:/share /mnt\n"
      "2. model: download Qwen/Qwen2.5-72B-Instruct on cpu1, copy into /mnt/Qwen/Qwen2___5-72B-Instruct  "
      "[skip: already on the NAS and verified]\n"
      "3. serve: vllm serve, TP 2 x PP 2\n"
      "     gpu1: " + std::string(197, 'x') + "...\n"
      "note: nothing was changed\n";
  CHECK(plan.text() == expected);
  auto j = plan.to_json();
  CHECK(j.at("steps").size() == 3);
  CHECK(j.at("steps")[1].at("skip") == "already on the NAS and verified");
  CHECK(j.at("steps")[0].at("commands")[1].at("host") == "gpu2");
  CHECK(j.at("notes")[0] == "nothing was changed");
  CHECK_FALSE(j.at("steps")[0].at("commands")[0].contains("script"));

  // A script behind a one-line summary: the summary by default, the whole
  // script with `full` (and in the JSON); long lines whole too.
  plan.steps[0].commands[1].script = "set -e\nmount -t nfs nas:/share /mnt\n";
  plan.steps[0].commands[1].command = "mount script";
  CHECK_THAT(plan.text(), Contains("     gpu2: mount script\n2. model"));
  std::string const full =
      "1. nas: mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1\n"
      "     gpu1:\n"
      "         mkdir -p /mnt\n"
      "         mount -t nfs -o vers=3 nas.example.internal:/share /mnt\n"
      "     gpu2:\n"
      "         mount script\n"
      "       the script, whole:\n"
      "         set -e\n"
      "         mount -t nfs nas:/share /mnt\n"
      "2. model: download Qwen/Qwen2.5-72B-Instruct on cpu1, copy into /mnt/Qwen/Qwen2___5-72B-Instruct  "
      "[skip: already on the NAS and verified]\n"
      "3. serve: vllm serve, TP 2 x PP 2\n"
      "     gpu1:\n"
      "         " + std::string(250, 'x') + "\n"
      "note: nothing was changed\n";
  CHECK(plan.text(true) == full);
  CHECK(plan.to_json().at("steps")[0].at("commands")[1].at("script") == "set -e\nmount -t nfs nas:/share /mnt\n");
}

TEST_CASE("deployment: the record's file is in the spec's state folder") {
  auto spec = load_deployment_spec(deployments_dir() / "qwen72b-two-node.yaml");
  auto dir = fs::temp_directory_path() / ("ck-deploy-test-" + std::to_string(::getpid()));
  spec.state_dir = dir.string();
  CHECK(deployment_record_path(spec) == dir / "record.json");
  CHECK_FALSE(load_deployment_record(spec));
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "record.json");
    out << hand_made_record().to_json().dump(2);
  }
  auto loaded = load_deployment_record(spec);
  REQUIRE(loaded);
  CHECK(loaded->summary() == hand_made_record().summary());
  fs::remove_all(dir);
}

TEST_CASE("deployment: a Deployment from the seed's spec, no host touched") {
  asio::io_context io;
  Deployment d(io.get_executor(), load_deployment_spec(deployments_dir() / "qwen72b-two-node.yaml"));
  CHECK(d.gpu_hosts() == std::vector<std::string>{"gpu1", "gpu2"});
  CHECK(d.download_host() == "cpu1");
  auto ray = d.ray_cluster();
  CHECK(ray.head().host.name() == "gpu1");
  REQUIRE(ray.hosts().size() == 2);
  CHECK(ray.hosts()[0].gpus == 2u);
  bool models_mounted = false;
  for (auto const& v : ray.spec().volumes) models_mounted = models_mounted || (v.host_path == "/mnt/Qwen" && v.container_path == "/models");
  CHECK(models_mounted);  // -v /mnt/Qwen:/models, as the seed
  auto engine = d.engine(2, 2, std::nullopt);
  CHECK(engine.spec().model == "/models/Qwen2___5-72B-Instruct");
  CHECK(engine.spec().tensor_parallel == 2);
  CHECK(engine.spec().pipeline_parallel == 2);
  CHECK(engine.spec().served_model_name == "qwen2.5-72b-instruct");
  CHECK(engine.endpoint() == "http://172.18.190.25:8000");
}

TEST_CASE("deployment: a layout asking for more GPUs than there are is refused, saying what would run") {
  auto gpus = parse_gpu_inventory("2 nodes x 2 L20 48GB");
  CHECK(layout_count_refusal(2, 2, gpus).empty());  // the seed's shape
  CHECK(layout_count_refusal(2, 1, gpus).empty());  // fewer is allowed
  CHECK(layout_count_refusal(0, 2, gpus).empty());  // auto: the planner decides
  auto why = layout_count_refusal(4, 2, gpus);
  CHECK_THAT(why, Contains("TP 4 x PP 2 needs 8 GPUs, and the GPU hosts have 4 ("));
  CHECK_THAT(why, Contains("at most 4 (TP 2 x PP 2 uses them all), or both to auto"));
  GpuInventory uneven;
  uneven.nodes = {GpuNode{"a", 4, "H100", 80ull << 30, ""}, GpuNode{"b", 2, "H100", 80ull << 30, ""}};
  auto odd = layout_count_refusal(4, 2, uneven);
  CHECK_THAT(odd, Contains("needs 8 GPUs, and the GPU hosts have 6 (a: 4, b: 2)"));
  CHECK_THAT(odd, Contains("at most 6, or both to auto"));  // unlike hosts: no shape that uses them all
  CHECK(layout_count_refusal(1, 1, GpuInventory{}).empty());  // no GPUs known: the planner says it later
}

TEST_CASE("deployment: a model clusterkit ships the config of is sized before anything is downloaded") {
  auto const seed = parse_gpu_inventory("2 nodes x 2 L20 48GB");
  // The seed's own layout fits (the planner's numbers, from the config).
  CHECK(known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 2, seed).empty());
  CHECK(known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 0, 0, seed).empty());
  // 145 GB of bf16 weights on one server's two cards: refused, saying what fits.
  auto half = known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 1, seed);
  CHECK_THAT(half, Contains("TP 2 x PP 1 for Qwen/Qwen2.5-72B-Instruct on "));
  CHECK_THAT(half, Contains("what fits: TP 2 x PP 2"));
  CHECK_THAT(half, Contains("from the config.json clusterkit ships for it; tensor sizes estimated"));
  // Nothing fits on four 24 GB cards: the shortfall's suggestions.
  auto small = known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 0, 0, parse_gpu_inventory("2 nodes x 2 L4 24GB"));
  CHECK_THAT(small, StartsWith("Qwen/Qwen2.5-72B-Instruct on 2 nodes x 2 L4 (22.49 GiB): nothing fits: the closest layout"));
  CHECK(small.find("nothing fits: nothing fits") == std::string::npos);
  CHECK_THAT(small, Contains("an AWQ INT4 checkpoint"));
  // ModelScope's folder spelling names the same model.
  CHECK_FALSE(known_model_fit_refusal("Qwen/Qwen2___5-72B-Instruct", 2, 1, seed).empty());
  // Not refused: a model it does not know, no GPUs, a node's memory unknown.
  CHECK(known_model_fit_refusal("acme/unknown-model", 2, 1, seed).empty());
  CHECK(known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 1, GpuInventory{}).empty());
  GpuInventory unknown_memory;
  unknown_memory.nodes = {GpuNode{"a", 2, "L20", 0, ""}};
  CHECK(known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 1, unknown_memory).empty());
  // Options out of range are the caller's mistake, thrown, not a refusal.
  PlanOptions bad;
  bad.gpu_memory_utilization = 1.5;
  CHECK_THROWS_AS(known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 2, seed, bad), Error);
}

TEST_CASE("deployment: choose_layout takes the recommendation for auto, the named shape otherwise") {
  auto facts = model_facts_from_config(*known_model_config("Qwen/Qwen2.5-7B-Instruct"));
  estimate_tensors_from_config(facts);
  auto plan = plan_deployment(facts, parse_gpu_inventory("2 nodes x 2 L20 48GB"));
  plan.model = "Qwen/Qwen2.5-7B-Instruct";
  auto best = choose_layout(plan, 0, 0);
  CHECK(best.fits);
  CHECK(best.tp == plan.recommended_layout()->tp);
  auto named = choose_layout(plan, 2, 2);
  CHECK((named.tp == 2 && named.pp == 2 && named.fits));
  // PP auto with TP 1 on one node of four: TP 1 x PP 2 would fit, but its
  // two stages share the node, which the planner does not allow by
  // default: refused with that reason, not chosen.
  auto facts72 = model_facts_from_config(*known_model_config("Qwen/Qwen2.5-72B-Instruct"));
  estimate_tensors_from_config(facts72);
  auto one_node = plan_deployment(facts72, parse_gpu_inventory("1x 4 H100 80GB"));
  one_node.model = "Qwen/Qwen2.5-72B-Instruct";
  CHECK_THROWS_WITH(choose_layout(one_node, 1, 0), Contains("TP 1 x PP auto for Qwen/Qwen2.5-72B-Instruct on ") && Contains("what fits: TP "));
  CHECK(choose_layout(one_node, 0, 0).pp == 1);
  auto tp_only = choose_layout(plan, 1, 0);  // PP auto: the first that fits with TP 1
  CHECK((tp_only.tp == 1 && tp_only.fits));
  // TP 3 does not divide 28 heads: vLLM refuses it, and so does the choice, saying why.
  try {
    (void)choose_layout(plan, 3, 1);
    FAIL("TP 3 was chosen");
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::invalid_argument));
    CHECK_THAT(std::string(e.what()), Contains("TP 3 x PP 1 for Qwen/Qwen2.5-7B-Instruct on "));
    CHECK_THAT(std::string(e.what()), Contains("what fits: TP "));
  }
}

// Mutations of both example specs (tests/support/yaml_mutations.hpp): each
// parses or throws clusterkit::Error, in bounded time, with a message that
// is bounded and safe to print. The seed's spec names its inventory by a
// relative path, read beside the spec as `up` reads it.
TEST_CASE("fuzz: deployment specs mutated as a careless edit or a hostile file would", "[deployment][fuzz]") {
  std::uint32_t seed = 20261207;
  test::FuzzCounts counts;
  for (auto const* name : {"qwen72b-two-node.yaml", "lab.yaml"}) {
    auto const path = deployments_dir() / name;
    auto original = read_text(path);
    // The lab's spec names the running lab's inventory: one of that shape
    // inline instead, so that what this test sees does not depend on a lab
    // being up (and the inventory is mutated with the rest).
    std::string_view const lab_inventory = "inventory: /run/clusterkit/lab-ck/inventory.yaml";
    if (auto at = original.find(lab_inventory); at != std::string::npos)
      original.replace(at, lab_inventory.size(),
                       "inventory:\n  hosts:\n"
                       "    h1: {address: 10.88.0.11, roles: [head], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
                       "    h2: {address: 10.88.0.12, gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
                       "    h3: {address: 10.88.0.13, roles: [download]}");
    REQUIRE_NOTHROW(parse_deployment_spec(original, path.string(), deployments_dir()));
    test::fuzz_yaml(name, original, seed++, test::fuzz_iterations(500),
                    [&](std::string const& text) { (void)parse_deployment_spec(text, path.string(), deployments_dir()); }, counts);
  }
  INFO(counts.parsed << " parsed, " << counts.refused << " refused");
  CHECK(counts.parsed > 0);
  CHECK(counts.refused > 0);
}
