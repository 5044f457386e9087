// The serving layer against the real thing, on the lab: real Docker engines
// (one per lab host), real Ray 2.60.0 and real vLLM (its CPU build 0.32.0),
// all from scripts/install-serving.sh; a small Qwen2 made locally
// (tests/fixtures/make_tiny_qwen2.py) on the lab's sshfs NAS. GPUs are
// SIMULATED: Ray is given 2 logical GPUs per host, and vLLM's CPU build runs
// on them through the lab-only patch the install script applies.
//
// Nothing here is mocked. A missing component fails the test with the line
// that installs it.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <algorithm>
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "clusterkit/deployment.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/nas.hpp"
#include "clusterkit/openai_client.hpp"
#include "clusterkit/ray_cluster.hpp"
#include "clusterkit/runtime.hpp"
#include "clusterkit/vllm_serve.hpp"

using namespace clusterkit;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr char const* kLab = "tsrv";
constexpr char const* kSubnet = "10.88.61";
constexpr char const* kVenv = "/opt/ck-serve";
constexpr char const* kModelHost = "/mnt/Qwen/Tiny2___5-4M-Instruct";

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// Fails, naming the install step, when a real component is missing.
void require_serving_stack() {
  auto missing = [](std::string const& what) {
    FAIL(what << " is missing: run scripts/install-serving.sh (Docker, debootstrap, and the Ray + vLLM CPU venv in "
              << kVenv << ")");
  };
  if (!fs::exists(std::string(kVenv) + "/bin/ray")) missing(std::string(kVenv) + "/bin/ray");
  if (!fs::exists(std::string(kVenv) + "/bin/vllm")) missing(std::string(kVenv) + "/bin/vllm");
  if (!fs::exists("/usr/sbin/dockerd") && !fs::exists("/usr/bin/dockerd")) missing("dockerd (Debian's docker.io)");
  if (!fs::exists("/usr/sbin/debootstrap")) missing("debootstrap");
}

struct Lab {
  LabStatus status;
  Inventory inventory;
  Runtime rt;

  static Lab& get() {
    static Lab lab;
    return lab;
  }
  Host host(std::string const& name) { return rt.host(inventory.find(name)->spec); }
  RunResult sh(std::string const& name, std::string const& script) {
    auto h = host(name);
    return run(h, Command::shell(script));
  }
  /// The seed's two GPU servers (2 simulated GPUs each), h1 the head.
  std::vector<RayHost> gpu_hosts() {
    auto selected = inventory.select("gpu");
    std::vector<Host> handles;
    for (auto const& h : selected) handles.push_back(rt.host(h.spec));
    return ray_hosts_from_inventory(selected, handles);
  }
  /// The lab's runtime (the image, the venv mounted) from its inventory.
  RayClusterSpec spec(std::string const& name, RayRuntimeKind runtime) {
    RayClusterSpec s = ray_spec_from_vars(inventory.find("h1")->extra.at("vars"));
    s.name = name;
    s.runtime = runtime;
    s.object_store_memory = 256ull << 20;
    s.join_timeout = std::chrono::seconds(120);
    return s;
  }

private:
  Lab() {
    REQUIRE(::geteuid() == 0);  // the lab creates namespaces: run the lab tests as root
    require_serving_stack();
    // API keys go to $XDG_CONFIG_HOME/clusterkit/keys: a folder of the test's.
    char tmpl[] = "/tmp/ck-serve-config-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    config_home = tmpl;
    ::setenv("XDG_CONFIG_HOME", tmpl, 1);
    LabOptions o;
    o.name = kLab;
    o.subnet = kSubnet;
    o.hosts = 3;
    o.nas = true;
    o.docker = true;
    o.gpus = 2;
    o.roles = {"head", "worker", "download"};
    status = lab_up(o);
    inventory = Inventory::load(status.inventory_path);
    // The NAS on every host but the NAS, and the model made on the download
    // host as the seed's CPU server would (no hub: made locally).
    NasMount nas(nas_spec_from_vars(inventory.find("h1")->extra.at("vars"), "h1"));
    std::vector<Host> clients;
    for (auto const& h : inventory.select("lab")) clients.push_back(rt.host(h.spec));
    for (auto const& m : mount_nas(nas, clients)) REQUIRE(m.ok());
    // The script goes in on stdin: a checkout under /tmp is hidden from the
    // lab hosts (each has a /tmp of its own).
    std::ifstream script(std::string(CK_SOURCE_DIR) + "/tests/fixtures/make_tiny_qwen2.py");
    RunOptions ro;
    ro.stdin_data.assign(std::istreambuf_iterator<char>(script), {});
    REQUIRE(!ro.stdin_data.empty());
    auto h3 = host("h3");
    auto made = run(h3, Command::shell(std::string(kVenv) + "/bin/python3 - /mnt"), ro);
    INFO(made.stderr_text);
    REQUIRE(made.exit_code == 0);
  }
  ~Lab() {
    // The download host's folder is the machine's /var/tmp (lab hosts share
    // it): leave nothing there.
    if (inventory.find("h3")) (void)sh("h3", "rm -rf /var/tmp/ck-download");
    for (auto const& h : inventory.hosts()) close_connection(h.spec);
    lab_down(kLab);
    std::error_code ec;
    fs::remove_all(config_home, ec);
  }

public:
  std::string config_home;
};

RayHostStatus const& host_status(RayClusterStatus const& st, std::string const& name) {
  for (auto const& h : st.hosts)
    if (h.host == name) return h;
  FAIL("no host " << name << " in the status");
  return st.hosts.front();
}

/// Polls `done` until it holds or `seconds` pass.
template <class F>
bool eventually(double seconds, F done) {
  auto t0 = clock_type::now();
  while (seconds_since(t0) < seconds) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return done();
}

}  // namespace

namespace {

/// A plain listener holds the head's Ray port (6379 on h1) while `up` runs:
/// refused before anything starts, naming the port and the program.
void expect_refused_for_the_taken_head_port(Lab& lab, RayCluster const& ray) {
  auto pid = lab.sh("h1", "setsid python3 -c \"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                          "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 6379)); s.listen(); time.sleep(120)\" "
                          "</dev/null >/dev/null 2>&1 & echo $!")
                 .stdout_text;
  struct Stop {
    Lab& lab;
    std::string pid;
    ~Stop() { lab.sh("h1", "kill " + pid); }  // by its pid
  } stop{lab, pid};
  REQUIRE(eventually(10, [&] { return lab.sh("h1", "ss -ltnH 'sport = :6379' | wc -l").stdout_text == "1\n"; }));
  try {
    ray_up(ray);
    FAIL("ray up started with the port taken");
  } catch (Error const& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK_THAT(std::string(e.what()), Contains("port 6379 is already taken by python3"));
  }
}

}  // namespace

TEST_CASE("RayCluster in Docker: the seed's cluster, 2 nodes and 4 GPUs, faults and cleanup", "[ray][lab][docker]") {
  auto& lab = Lab::get();
  RayCluster ray(lab.spec("seed", RayRuntimeKind::docker), lab.gpu_hosts());
  REQUIRE(ray.head().host.name() == "h1");
  REQUIRE(ray.hosts().size() == 2);  // h3 (download) is never part of Ray

  auto t0 = clock_type::now();
  std::vector<std::string> phases;
  auto up = ray_up(ray, [&](RayProgress const& p) { phases.push_back(p.phase); });
  WARN("ray up (docker, 2 hosts): " << seconds_since(t0) << " s");
  CHECK(up.status.healthy);
  CHECK(up.status.alive_nodes == 2);
  CHECK(up.status.gpus_total == 4.0);
  CHECK(up.status.gpus_simulated);
  CHECK(std::find(phases.begin(), phases.end(), "start-head") != phases.end());
  CHECK(phases.back() == "ready");
  for (auto const& n : up.nodes) CHECK(n.action == RayNodeAction::start);

  // The seed's own check: `ray status` inside the head's container shows 4
  // GPUs. Its text comes from the autoscaler, which refreshes every few
  // seconds, behind the GCS's node table that `up` waits on.
  RayStatusText text;
  CHECK(eventually(20, [&] {
    auto seed_check = lab.sh("h1", "docker exec ck-ray-seed " + std::string(kVenv) + "/bin/ray status");
    if (seed_check.exit_code != 0) return false;
    text = parse_ray_status(seed_check.stdout_text);
    return text.active.size() == 2 && text.usage.count("GPU") && text.usage.at("GPU").total == 4.0;
  }));
  // Each node's identity was set when its container was created (vllm#6803).
  auto env = lab.sh("h2", "docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' ck-ray-seed");
  CHECK_THAT(env.stdout_text, Contains("VLLM_HOST_IP=10.88.61.12"));
  CHECK_THAT(env.stdout_text, Contains("GLOO_SOCKET_IFNAME=eth0"));

  // `up` twice converges: the same cluster is left alone, quickly.
  t0 = clock_type::now();
  auto again = ray_up(ray);
  double again_s = seconds_since(t0);
  WARN("ray up on a healthy cluster: " << again_s << " s");
  for (auto const& n : again.nodes) CHECK(n.action == RayNodeAction::keep);
  CHECK(again_s < 5);

  SECTION("the worker's Ray killed: status names the dead node, up heals it") {
    REQUIRE(lab.sh("h2", "docker kill ck-ray-seed >/dev/null").exit_code == 0);
    t0 = clock_type::now();
    auto st = ray_status(ray);
    WARN("status after the kill: " << seconds_since(t0) << " s");
    CHECK_FALSE(st.healthy);
    CHECK(st.degraded);
    CHECK_THAT(host_status(st, "h2").problem, Contains("h2") && Contains("not running"));
    CHECK(host_status(st, "h1").problem.empty());
    auto healed = ray_up(ray);
    CHECK(healed.status.healthy);
    CHECK(healed.nodes[1].action == RayNodeAction::replace);
    CHECK(healed.nodes[0].action == RayNodeAction::keep);
  }

  SECTION("the worker host cut off: a clear error within seconds, the head undisturbed") {
    std::string veth = std::string("v") + kLab + "-2";
    REQUIRE(std::system(("ip link set " + veth + " down").c_str()) == 0);
    struct Restore {
      std::string veth;
      ~Restore() { std::system(("ip link set " + veth + " up").c_str()); }
    } restore{veth};
    close_connection(lab.inventory.find("h2")->spec);  // as a new CLI run would: no live connection
    t0 = clock_type::now();
    auto st = ray_status(ray);
    double took = seconds_since(t0);
    WARN("status with h2 cut off: " << took << " s");
    CHECK(took < 30);
    CHECK_FALSE(st.healthy);
    CHECK(host_status(st, "h2").runtime_state == "unreachable");
    CHECK_THAT(host_status(st, "h2").problem, Contains("h2 does not answer"));
    CHECK(host_status(st, "h1").ray_state == "ALIVE");
  }

  SECTION("another shape replaces the cluster, saying so") {
    auto spec = ray.spec();
    spec.object_store_memory = 300ull << 20;
    RayCluster other(spec, ray.hosts());
    auto r = ray_up(other);
    CHECK(r.status.healthy);
    for (auto const& n : r.nodes) {
      CHECK(n.action == RayNodeAction::replace);
      CHECK_THAT(n.message, Contains("replaced"));
    }
  }

  auto down = ray_down(ray);
  for (auto const& d : down) CHECK_FALSE(d.error);
  for (auto const& h : {"h1", "h2"}) CHECK(lab.sh(h, "docker ps -a -q | wc -l").stdout_text == "0\n");
  // Idempotent.
  for (auto const& d : ray_down(ray)) CHECK(d.removed == "nothing");
}

TEST_CASE("RayCluster in Docker: the head's port taken, and down after a half-failed up", "[ray][lab][docker]") {
  auto& lab = Lab::get();
  auto spec = lab.spec("dfault", RayRuntimeKind::docker);
  // A volume only this test has: on h2 its host path cannot be made (a
  // file stands where a folder must be), so h2's `docker run` fails after
  // the head's container started.
  spec.volumes.push_back(VolumeMount{"/tmp/ck-ray-dfault/cache", "/ck-dfault-cache", false});
  RayCluster ray(spec, lab.gpu_hosts());
  auto const container = ray_container_name(spec.name);
  auto containers = [&](std::string const& h) {
    return lab.sh(h, "docker ps -a -q --filter name=^/" + container + "$ | wc -l").stdout_text;
  };

  SECTION("the head's port taken: refused, naming the port and the program, no container made") {
    expect_refused_for_the_taken_head_port(lab, ray);
    CHECK(containers("h1") == "0\n");
    CHECK(containers("h2") == "0\n");
  }

  SECTION("down after a half-failed up leaves nothing") {
    REQUIRE(lab.sh("h2", "touch /tmp/ck-ray-dfault").exit_code == 0);
    try {
      ray_up(ray);
      FAIL("ray up succeeded with a worker whose container cannot start");
    } catch (Error const& e) {
      WARN("a worker's docker run failing: " << e.what());
      CHECK_THAT(std::string(e.what()), Contains("h2: Docker cannot mount /tmp/ck-ray-dfault/cache at /ck-dfault-cache (a file stands "
                                                 "where a folder must be, or the reverse); fix that path on h2"));
    }
    CHECK(containers("h1") == "1\n");  // the head started
    lab.sh("h2", "rm -f /tmp/ck-ray-dfault");
    for (auto const& d : ray_down(ray)) CHECK_FALSE(d.error);
    for (auto const& h : {"h1", "h2"}) {
      CHECK(containers(h) == "0\n");
      CHECK(lab.sh(h, "docker ps -a -q | wc -l").stdout_text == "0\n");
    }
  }
  lab.sh("h1", "rm -rf /tmp/ck-ray-dfault");
  lab.sh("h2", "rm -rf /tmp/ck-ray-dfault");
}

TEST_CASE("RayCluster bare: Ray from the venv, and refusals before anything starts", "[ray][lab]") {
  auto& lab = Lab::get();
  RayCluster ray(lab.spec("bare", RayRuntimeKind::bare), lab.gpu_hosts());
  auto ray_pids = [&](std::string const& h) {
    // Ray processes of any cluster, counted inside the host's own pid namespace.
    return lab.sh(h, "ps -eo args | grep -c '[/]ray/'").stdout_text;
  };

  SECTION("up, twice, then down leaves no process and no temp dir") {
    auto up = ray_up(ray);
    CHECK(up.status.healthy);
    CHECK(up.status.gpus_total == 4.0);
    CHECK(up.status.runtime == RayRuntimeKind::bare);
    for (auto const& n : ray_up(ray).nodes) CHECK(n.action == RayNodeAction::keep);
    // Per host, what Ray accounts: used and total (idle: nothing used).
    // The dashboard's node view fills in a few seconds after the nodes join.
    RayClusterStatus st;
    CHECK(eventually(20, [&] {
      st = ray_status(ray);
      return std::all_of(st.hosts.begin(), st.hosts.end(), [](RayHostStatus const& h) { return h.usage.count("GPU") > 0; });
    }));
    for (auto const& h : st.hosts) {
      INFO(h.host);
      // Each host's installed Ray and Python (the venv's files).
      CHECK(h.ray_version == "2.60.0");
      CHECK_FALSE(h.python_version.empty());
      if (!h.usage.count("GPU")) continue;  // failed above
      CHECK(h.usage.at("GPU").total == 2.0);
      CHECK(h.usage.at("GPU").used == 0.0);
      CHECK(h.usage.at("memory").total > 0);
    }
    auto logs = ray_logs(ray, {0});
    CHECK_THAT(logs[0].text, Contains("Ray runtime started"));
    ray_down(ray);
    for (auto const& h : {"h1", "h2"}) {
      // What is left, if anything, named in the failure (once in CI one
      // Ray process outlived `down`).
      INFO(h << ": " << lab.sh(h, "ps -eo pid,sid,args | grep '[/]ray/\\|ray::'").stdout_text);
      CHECK(ray_pids(h) == "0\n");
      CHECK(lab.sh(h, "test -e /tmp/ck-ray-bare && echo there || echo gone").stdout_text == "gone\n");
    }
  }

  SECTION("the head's port taken: refused, naming the port and the program, nothing started") {
    expect_refused_for_the_taken_head_port(lab, ray);
    CHECK(ray_pids("h1") == "0\n");
    CHECK(ray_pids("h2") == "0\n");
  }

  SECTION("a worker that cannot reach the head: refused before, or named after the join timeout") {
    auto spec = ray.spec();
    spec.join_timeout = std::chrono::seconds(30);
    RayCluster cut(spec, ray.hosts());
    auto const head_ip = std::string(kSubnet) + ".11";
    // No route from h2 to the head at all (a blackhole route in h2's own
    // network namespace; ssh from here still works): found by the probe,
    // before anything starts.
    REQUIRE(lab.sh("h2", "ip route add blackhole " + head_ip + "/32").exit_code == 0);
    try {
      ray_up(cut);
      FAIL("ray up started with no route from h2 to the head");
    } catch (Error const& e) {
      CHECK_THAT(std::string(e.what()), Contains("Ray was not started on any host: h2: cannot tell which address it reaches the head by"));
    }
    CHECK(ray_pids("h1") == "0\n");
    lab.sh("h2", "ip route del blackhole " + head_ip + "/32");
    // A route that leads nowhere (through a gateway no host answers for):
    // the probe passes, the worker's Ray never reaches the head, and `up`
    // names h2 once the join timeout is over, with what Ray said.
    REQUIRE(lab.sh("h2", "ip route add " + head_ip + "/32 via " + std::string(kSubnet) + ".250").exit_code == 0);
    auto t0 = clock_type::now();
    try {
      ray_up(cut);
      FAIL("ray up succeeded with a worker cut off from the head");
    } catch (Error const& e) {
      std::string what = e.what();
      WARN("a worker cut off from the head (" << seconds_since(t0) << " s): " << what);
      CHECK(e.code() == errc::timed_out);
      CHECK_THAT(what, Contains("h2 (" + std::string(kSubnet) + ".12) did not join within 30 s"));
      // What Ray said (its own line, from the node's log), and what to check.
      CHECK_THAT(what, Contains("cannot reach the head's GCS on port 6379") && Contains(head_ip + ":6379"));
    }
    // The join timeout, not a fixed 120 s (which it was until this test).
    CHECK(seconds_since(t0) < 75);
    lab.sh("h2", "ip route del " + head_ip + "/32");
    ray_down(cut);
    CHECK(ray_pids("h1") == "0\n");
    CHECK(ray_pids("h2") == "0\n");
  }

  SECTION("Ray missing: refused with the install line") {
    auto spec = ray.spec();
    spec.ray_command = "/nonexistent/venv/bin/ray";
    try {
      ray_up(RayCluster(spec, ray.hosts()));
      FAIL("ray up went ahead without Ray");
    } catch (Error const& e) {
      CHECK(e.code() == errc::program_missing);
      CHECK_THAT(std::string(e.what()), Contains("h1") && Contains("pip install 'ray[default]'"));
    }
  }

  SECTION("down after a half-failed up leaves nothing") {
    // h2 cannot make its temp dir: the head starts, the worker does not.
    REQUIRE(lab.sh("h2", "touch /tmp/ck-ray-bare").exit_code == 0);
    try {
      ray_up(ray);
      FAIL("ray up succeeded with a worker that cannot start");
    } catch (Error const& e) {
      CHECK_THAT(std::string(e.what()), Contains("h2"));
    }
    CHECK(ray_pids("h1") != "0\n");
    lab.sh("h2", "rm -f /tmp/ck-ray-bare");
    ray_down(ray);
    CHECK(ray_pids("h1") == "0\n");
    CHECK(ray_pids("h2") == "0\n");
  }
}

TEST_CASE("vLLM CPU on one host: launched, followed, proved, diagnosed, stopped", "[vllm][lab]") {
  auto& lab = Lab::get();
  // Bare runtime on h1 alone; the mp backend needs no Ray.
  auto hosts = lab.gpu_hosts();
  hosts.erase(hosts.begin() + 1, hosts.end());
  RayCluster runtime(lab.spec("one", RayRuntimeKind::bare), hosts);
  VllmServeSpec spec;
  spec.name = "one";
  spec.model = kModelHost;
  spec.served_model_name = "tiny";
  spec.backend = ExecutorBackend::mp;
  spec.max_model_len = 512;
  spec.dtype = "bfloat16";
  spec.vllm_command = std::string(kVenv) + "/bin/vllm";
  spec.env = {{"VLLM_CPU_KVCACHE_SPACE", "1"}, {"HF_HUB_OFFLINE", "1"}};
  spec.ready_timeout = std::chrono::seconds(600);
  auto key_file = vllm_api_key_path(spec);
  fs::remove(key_file);

  SECTION("served and proved") {
    VllmServe serve(spec, runtime);
    auto shm_before = lab.sh("h1", "ls /dev/shm | sort").stdout_text;
    auto launched = vllm_up(serve);
    CHECK(launched.action == "launched");
    REQUIRE_FALSE(serve.api_key().empty());
    struct stat st{};
    REQUIRE(::stat(key_file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // The key is in no process's command line on the host.
    CHECK(lab.sh("h1", "ps -eo args").stdout_text.find(serve.api_key()) == std::string::npos);

    std::vector<std::string> phases;
    auto ready = vllm_wait_ready(serve, [&](VllmProgress const& p) {
      if (phases.empty() || phases.back() != p.phase) phases.push_back(p.phase);
    });
    WARN("one host: ready after " << ready.ready_seconds << " s; startup complete at " << ready.startup_complete_seconds
                                  << " s; engine's own start " << ready.engine_start_seconds << " s");
    CHECK(ready.ready_seconds > 0);
    CHECK(std::find(phases.begin(), phases.end(), "loading") != phases.end());
    CHECK(phases.back() == "ready");
    // The planner's figure is the engine's own (1 GiB of KV space, one worker).
    auto facts = model_facts_from_config(nlohmann::json::parse(lab.sh("h1", std::string("cat ") + kModelHost + "/config.json").stdout_text),
                                         "tiny");
    REQUIRE(ready.log.kv_cache_tokens);
    CHECK(*ready.log.kv_cache_tokens == predict_cpu_kv_cache_tokens(facts, 1, 1, 1ull << 30));

    // A client with the stored key gets answers; one without is refused.
    ClientOptions with_key{serve.endpoint(), stored_api_key_for(serve.endpoint())};
    CHECK(with_key.api_key == serve.api_key());
    Runtime client_rt;
    OpenAIClient client(client_rt.executor(), with_key);
    auto answer = chat(client, ChatRequest::simple("tiny", "Who are you?"));
    CHECK_FALSE(answer.text().empty());
    OpenAIClient anonymous(client_rt.executor(), ClientOptions{serve.endpoint()});
    try {
      chat(anonymous, ChatRequest::simple("tiny", "hi"));
      FAIL("the engine answered without a key");
    } catch (Error const& e) {
      CHECK_THAT(std::string(e.what()), Contains("401"));
    }

    auto status = vllm_status(serve);
    CHECK(status.state == "up");
    CHECK(status.served_models == std::vector<std::string>{"tiny"});
    CHECK(status.running_requests);

    // `serve logs --follow`: the log's last lines, then each new one as the
    // engine writes it (here the access line of a request made meanwhile),
    // until cancelled; nothing is left running on the head.
    {
      std::mutex m;
      std::vector<std::string> followed;
      VllmLogsOptions o;
      o.tail = 5;
      o.follow = true;
      o.on_line = [&](std::string_view line) {
        std::lock_guard lock(m);
        followed.emplace_back(line);
      };
      auto count = [&](std::string const& what) {
        std::lock_guard lock(m);
        return std::count_if(followed.begin(), followed.end(), [&](auto const& l) { return l.find(what) != std::string::npos; });
      };
      boost::asio::cancellation_signal stop;
      std::promise<std::error_code> ended;
      serve.async_logs(o, boost::asio::bind_cancellation_slot(
                              stop.slot(), [&](std::error_code ec, std::string) { ended.set_value(ec); }));
      CHECK(eventually(20, [&] {
        std::lock_guard lock(m);
        return followed.size() >= 5;
      }));
      auto before = count("POST /v1/chat/completions");
      chat(client, ChatRequest::simple("tiny", "Followed?"));
      CHECK(eventually(20, [&] { return count("POST /v1/chat/completions") == before + 1; }));
      auto t0 = clock_type::now();
      boost::asio::post(runtime.head().host.get_executor(), [&] { stop.emit(boost::asio::cancellation_type::terminal); });
      auto done = ended.get_future();
      REQUIRE(done.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
      CHECK(done.get() == make_error_code(errc::cancelled));
      CHECK(seconds_since(t0) < 5);
      CHECK(count("POST /v1/chat/completions") == before + 1);  // once, not again
      CHECK(lab.sh("h1", "ps -eo args | grep -c '[t]ail -c'").stdout_text == "0\n");
    }
    // `up` again: the same engine, left alone.
    CHECK(vllm_up(serve).action == "running");

    auto down = vllm_down(serve);
    CHECK_THAT(down.stopped, Contains("the engine (pid"));
    CHECK(lab.sh("h1", "ps -eo args | grep -c '[v]llm serve'").stdout_text == "0\n");
    CHECK(lab.sh("h1", "ls /dev/shm | sort").stdout_text == shm_before);
    CHECK(vllm_status(serve).state == "down");
  }

  SECTION("a model path missing: the diagnosis says so, in seconds") {
    auto bad = spec;
    bad.model = "/mnt/Qwen/Qwen2___5-72B-Instruct";
    VllmServe serve(bad, runtime);
    vllm_up(serve);
    auto t0 = clock_type::now();
    try {
      vllm_wait_ready(serve);
      FAIL("ready without a model");
    } catch (Error const& e) {
      CHECK(e.code() == errc::engine_failed);
      CHECK_THAT(std::string(e.what()), Contains("/mnt/Qwen/Qwen2___5-72B-Instruct is not there") && Contains("model verify"));
    }
    CHECK(seconds_since(t0) < 120);
    vllm_down(serve);
  }

  SECTION("the port taken: the diagnosis names it") {
    auto listen = lab.sh("h1", "setsid python3 -m http.server 8000 --bind 0.0.0.0 </dev/null >/dev/null 2>&1 & echo $!");
    REQUIRE(eventually(10, [&] { return lab.sh("h1", "ss -ltnH 'sport = :8000' | wc -l").stdout_text == "1\n"; }));
    VllmServe serve(spec, runtime);
    vllm_up(serve);
    try {
      vllm_wait_ready(serve);
      FAIL("ready on a taken port");
    } catch (Error const& e) {
      CHECK_THAT(std::string(e.what()), Contains("port 8000 on the head is taken"));
    }
    vllm_down(serve);
    lab.sh("h1", "kill " + listen.stdout_text);
  }
  fs::remove(key_file);
}

// ---------------------------------------------------------------------------
// The whole seed from one spec: Deployment on the lab.

namespace {

/// tests/fixtures/fake_hub.py serving the tiny model, on the lab's bridge:
/// a SIMULATED hub the real modelscope CLI downloads from.
struct FakeHub {
  pid_t pid = 0;
  std::string root;
  int port = 0;
  FakeHub() {
    char tmpl[] = "/tmp/ck-serve-hub-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    root = tmpl;
    auto made = root + "/made";
    auto make = std::string(kVenv) + "/bin/python3 " + CK_SOURCE_DIR + "/tests/fixtures/make_tiny_qwen2.py " + made + " >/dev/null";
    REQUIRE(std::system(make.c_str()) == 0);
    fs::create_directories(root + "/hub/Qwen");
    fs::rename(made + "/Qwen/Tiny2___5-4M-Instruct", root + "/hub/Qwen/Tiny2.5-4M-Instruct");
    // A model no lab fits: Qwen2.5-72B's config with 200 layers (about 180 B
    // parameters, 360 GB in bf16), beside 4 MB standing for its weights.
    auto huge = root + "/hub/Qwen/Huge-Instruct";
    fs::create_directories(huge);
    auto config = *known_model_config("Qwen/Qwen2.5-72B-Instruct");
    config["num_hidden_layers"] = 200;
    std::ofstream(huge + "/config.json") << config.dump();
    std::ofstream(huge + "/model-00001-of-00001.safetensors") << std::string(4 << 20, 'w');
    // The same, quantized (AWQ): smaller than its dtype says, by an amount
    // the config alone cannot tell, so never refused from it.
    auto awq = root + "/hub/Qwen/Huge-Instruct-AWQ";
    fs::create_directories(awq);
    config["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", 128}};
    std::ofstream(awq + "/config.json") << config.dump();
    std::ofstream(awq + "/model-00001-of-00001.safetensors") << std::string(4 << 20, 'w');
    auto port_file = root + "/port";
    pid = ::fork();
    if (pid == 0) {
      ::setsid();
      std::string script = std::string(CK_SOURCE_DIR) + "/tests/fixtures/fake_hub.py";
      std::string hub = root + "/hub", host = std::string(kSubnet) + ".1";
      ::execlp("python3", "python3", script.c_str(), "--root", hub.c_str(), "--host", host.c_str(), "--port", "0", "--port-file",
               port_file.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    REQUIRE(eventually(20, [&] { return fs::exists(port_file) && fs::file_size(port_file) > 0; }));
    std::ifstream(port_file) >> port;
    REQUIRE(port > 0);
  }
  ~FakeHub() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

/// examples/deployments/lab.yaml (what the README's main command runs), with
/// this lab's inventory and hub, a test name and state folder, and a shorter
/// benchmark: each line replaced must be in the example as written, so the
/// example cannot drift from what is tested.
std::string lab_spec(Lab& lab, FakeHub const& hub, std::string const& name) {
  std::ifstream in(std::string(CK_SOURCE_DIR) + "/examples/deployments/lab.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto replace = [&](std::string const& from, std::string const& to) {
    auto at = text.find(from);
    REQUIRE(at != std::string::npos);  // the example changed: update this test with it
    text.replace(at, from.size(), to);
  };
  replace("\nname: lab\n", "\nname: " + name + "\n");
  replace("inventory: /run/clusterkit/lab-ck/inventory.yaml", "inventory: " + lab.status.inventory_path);
  replace("endpoint: http://10.88.0.1:8765", "endpoint: http://" + std::string(kSubnet) + ".1:" + std::to_string(hub.port));
  replace("  dtype: bfloat16\n", "  dtype: bfloat16\n  ready_timeout: 900\n");
  replace("bench: {requests: 16, concurrency: 4, max_tokens: 16}", "bench: {requests: 8, concurrency: 4, max_tokens: 8}");
  return text + "state_dir: " + lab.config_home + "/deploy-" + name + "\n";
}

StepRecord const& step_of(DeploymentRecord const& r, std::string const& name) {
  auto const* s = r.step(name);
  REQUIRE(s);
  return *s;
}

}  // namespace

TEST_CASE("Deployment: a model no layout fits is refused from the hub's config.json, before its weights", "[deploy][lab][docker]") {
  auto& lab = Lab::get();
  FakeHub hub;
  auto text = lab_spec(lab, hub, "huge");
  auto replace = [&](std::string const& from, std::string const& to) {
    auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
  };
  replace("id: Qwen/Tiny2.5-4M-Instruct", "id: Qwen/Huge-Instruct");
  replace("download_dir: /var/tmp/ck-download/Qwen/Tiny2___5-4M-Instruct", "download_dir: /var/tmp/ck-download/Qwen/Huge-Instruct");
  auto spec = parse_deployment_spec(text, "huge.yaml");
  REQUIRE(lab.sh("h3", "rm -rf /var/tmp/ck-download/Qwen/Huge-Instruct").exit_code == 0);
  Deployment d(lab.rt.executor(), spec);
  auto t0 = clock_type::now();
  try {
    deployment_up(d);
    FAIL("up went ahead with a model no layout fits");
  } catch (Error const& e) {
    std::string what = e.what();
    WARN("refused after " << seconds_since(t0) << " s: " << what);
    CHECK(e.code() == errc::invalid_argument);
    CHECK_THAT(what, Contains("Qwen/Huge-Instruct on 2 nodes x 2 ") && Contains("nothing fits"));
    CHECK_THAT(what, Contains("planned from the hub's config.json, tensor sizes estimated, before the weights' download: only "
                              "config.json was fetched, into /var/tmp/ck-download/Qwen/Huge-Instruct on h3"));
  }
  auto rec = load_deployment_record(spec);
  REQUIRE(rec);
  CHECK(step_of(*rec, "model").status == "failed");
  CHECK(step_of(*rec, "serve").status == "pending");
  // The weights never moved: config.json is all the download host has, and
  // nothing reached the NAS.
  auto fetched = lab.sh("h3", "cd /var/tmp/ck-download/Qwen/Huge-Instruct && find . -type f ! -path './.*' | sort");
  CHECK(fetched.stdout_text == "./config.json\n");
  CHECK(lab.sh("h3", "test -e /mnt/Qwen/Huge-Instruct && echo there || echo absent").stdout_text == "absent\n");
  deployment_down(d);
  for (auto const& h : {"h1", "h2"}) CHECK(lab.sh(h, "docker ps -a -q | wc -l").stdout_text == "0\n");
  lab.sh("h3", "rm -rf /var/tmp/ck-download/Qwen/Huge-Instruct");

  // Quantized: not refused from its config; the whole download goes ahead
  // (and its check finds these 4 MB are no safetensors file).
  auto awq_text = text;
  for (auto [from, to] : {std::pair<std::string, std::string>{"id: Qwen/Huge-Instruct", "id: Qwen/Huge-Instruct-AWQ"},
                          {"download_dir: /var/tmp/ck-download/Qwen/Huge-Instruct", "download_dir: /var/tmp/ck-download/Qwen/Huge-Instruct-AWQ"}}) {
    auto at = awq_text.find(from);
    REQUIRE(at != std::string::npos);
    awq_text.replace(at, from.size(), to);
  }
  auto awq_spec = parse_deployment_spec(awq_text, "huge-awq.yaml");
  Deployment quantized(lab.rt.executor(), awq_spec);
  try {
    deployment_up(quantized);
    FAIL("up went through with 4 MB of 'w' as the weights");
  } catch (Error const& e) {
    WARN("the quantized model: " << e.what());
    CHECK_THAT(std::string(e.what()), !Contains("planned from the hub's config.json"));
  }
  CHECK(lab.sh("h3", "test -e /var/tmp/ck-download/Qwen/Huge-Instruct-AWQ/model-00001-of-00001.safetensors && echo fetched")
            .stdout_text == "fetched\n");
  deployment_down(quantized);
  for (auto const& h : {"h1", "h2"}) CHECK(lab.sh(h, "docker ps -a -q | wc -l").stdout_text == "0\n");
  lab.sh("h3", "rm -rf /var/tmp/ck-download/Qwen/Huge-Instruct-AWQ");
}

TEST_CASE("Deployment: the seed from one spec, real end to end, with faults", "[deploy][lab][docker]") {
  auto& lab = Lab::get();
  FakeHub hub;
  auto containers = [&](std::string const& h) { return lab.sh(h, "docker ps -a -q | wc -l").stdout_text; };

  // A spec with mistakes: every one reported, nothing started.
  auto broken = lab_spec(lab, hub, "seed");
  broken += "serve2: {}\n";
  broken.replace(broken.find("hub: modelscope"), 15, "hub: modelscop");
  broken.replace(broken.find("ipc_host: true"), 14, "ipc_host: maybe");
  broken += "ray2: x\n";
  try {
    parse_deployment_spec(broken, "broken.yaml");
    FAIL("a broken spec was accepted");
  } catch (Error const& e) {
    std::string m = e.what();
    CHECK_THAT(m, Contains("4 mistakes") && Contains("nothing was started"));
    CHECK_THAT(m, Contains("broken.yaml:") && Contains("unknown field 'serve2'; did you mean 'serve'?"));
    CHECK_THAT(m, Contains("\"modelscop\" is not a hub"));
    CHECK_THAT(m, Contains("runtime.ipc_host: expected true or false"));
  }
  CHECK(containers("h1") == "0\n");

  // The seed's step 1 for real: nothing on the NAS, nothing downloaded yet.
  REQUIRE(lab.sh("h3", "rm -rf /mnt/Qwen/Tiny2___5-4M-Instruct /var/tmp/ck-download").exit_code == 0);
  auto spec = parse_deployment_spec(lab_spec(lab, hub, "seed"), "seed.yaml");
  Deployment d(lab.rt.executor(), spec);
  CHECK(d.gpu_hosts() == std::vector<std::string>{"h1", "h2"});
  CHECK(d.download_host() == "h3");

  // Ctrl-C during `up` (a cancellation: the CLI's first SIGINT is one) once
  // Ray is starting beside the model's download: both stop within seconds,
  // the record says the run was stopped, and the runs below resume from it.
  {
    boost::asio::cancellation_signal stop;
    std::promise<std::pair<std::error_code, DeploymentRecord>> done;
    auto ex = lab.rt.executor();
    auto asked = clock_type::time_point{};
    d.async_up(
        [&](DeploymentProgress const& p) {
          if (p.step == "ray" && p.status == "running" && asked == clock_type::time_point{}) {
            asked = clock_type::now();
            boost::asio::post(ex, [&] { stop.emit(boost::asio::cancellation_type::terminal); });
          }
        },
        boost::asio::bind_cancellation_slot(stop.slot(), [&](std::error_code ec, DeploymentRecord r) {
          done.set_value({ec, std::move(r)});
        }));
    auto [ec, stopped] = done.get_future().get();
    REQUIRE(asked != clock_type::time_point{});
    WARN("up stopped " << seconds_since(asked) << " s after the cancellation");
    CHECK(ec == make_error_code(errc::cancelled));
    CHECK(seconds_since(asked) < 30);
    CHECK(stopped.status == "failed");
    CHECK_THAT(stopped.message, Contains("stopped (cancelled) while it ran; `up` again resumes from this step"));
    auto kept = load_deployment_record(spec);
    REQUIRE(kept);
    CHECK(kept->status == "failed");
  }

  // A worker host cut off during `up`: a clear failure naming the step and
  // the host; `down` cleans up; the next `up` resumes (NAS and model kept).
  {
    std::string veth = std::string("v") + kLab + "-2";
    bool cut = false;
    try {
      deployment_up(d, [&](DeploymentProgress const& p) {
        if (p.step == "ray" && p.status == "running" && !cut) {
          cut = true;
          std::system(("ip link set " + veth + " down").c_str());
          close_connection(lab.inventory.find("h2")->spec);
        }
      });
      FAIL("up went through with h2 cut off");
    } catch (Error const& e) {
      CHECK_THAT(std::string(e.what()), Contains("ray") && Contains("h2"));
    }
    {
      // Still cut off: status says so first, the other hosts answer.
      auto const st = deployment_status(d);
      for (auto const& h : st.hosts) CHECK(h.reachable == (h.host != "h2"));
      REQUIRE_FALSE(st.problems.empty());
      CHECK_THAT(st.problems.front(), Catch::Matchers::StartsWith("h2 does not answer: "));
      CHECK_THAT(st.summary(), Contains("host h2 (worker): UNREACHABLE: "));
      CHECK(st.state != "up");
    }
    std::system(("ip link set " + veth + " up").c_str());
    auto rec = load_deployment_record(spec);
    REQUIRE(rec);
    CHECK(rec->status == "failed");
    // The model was copied by this run or by the stopped one above.
    CHECK((step_of(*rec, "model").status == "ok" || step_of(*rec, "model").status == "skipped"));
    CHECK(step_of(*rec, "ray").status == "failed");
    deployment_down(d);
    CHECK(containers("h1") == "0\n");
    CHECK(containers("h2") == "0\n");
  }

  auto t0 = clock_type::now();
  std::vector<std::string> lines;
  auto rec = deployment_up(d, [&](DeploymentProgress const& p) { lines.push_back(p.step + " " + p.host + " " + p.status); });
  WARN("deployment up (resumed): " << seconds_since(t0) << " s; clusterkit's own part " << rec.own_seconds << " s");
  CHECK(rec.status == "up");
  // The own part, with what was subtracted to get it.
  CHECK(rec.own_breakdown.value("own", -1.0) == rec.own_seconds);
  CHECK(rec.own_breakdown.value("engine_start", 0.0) > 0);
  CHECK(rec.own_breakdown.value("total", 0.0) == rec.total_seconds);
  for (auto const& s : rec.steps) CHECK((s.status == "ok" || s.status == "skipped"));
  CHECK(step_of(rec, "model").status == "skipped");  // resumed: found on the NAS, complete
  // The progress display: each step says it starts and how it ended, in
  // order, and the per-host steps name every host as it finishes.
  {
    auto at = [&](std::string const& l) { return std::find(lines.begin(), lines.end(), l) - lines.begin(); };
    auto has = [&](std::string const& l) { return std::find(lines.begin(), lines.end(), l) != lines.end(); };
    std::ptrdiff_t last = -1;
    for (auto const* step : {"preflight", "nas", "model", "verify", "layout", "serve", "smoke", "bench"}) {
      INFO(step);
      REQUIRE(has(std::string(step) + "  running"));
      CHECK(at(std::string(step) + "  running") > last);
      last = at(std::string(step) + "  running");
    }
    CHECK(has("ray  running"));  // beside model, verify and layout
    for (auto const* l : {"preflight h1 ok", "preflight h2 ok", "verify h1 ok", "verify h2 ok", "model h3 skipped", "layout  ok",
                          "serve  ok", "smoke  ok", "bench  ok"})
      CHECK(has(l));
    CHECK(at("layout  ok") < at("serve  running"));
  }
  // The record's timeline: a per-host step's hosts start together and
  // overlap (side by side, not one after the other); each ends at its own
  // time (its facts' duration; its own mount, or look at the model; Ray's
  // join), inside the step.
  for (auto const* name : {"preflight", "nas", "verify", "ray"}) {
    auto const& st = step_of(rec, name);
    INFO(name);
    REQUIRE(st.hosts.size() >= 2);
    double latest_start = 0, earliest_end = 1e9;
    std::set<double> ends;
    for (auto const& h : st.hosts) {
      CHECK(h.started_s >= st.started_s);
      CHECK(h.ended_s <= st.ended_s + 0.001);
      CHECK(h.ended_s >= h.started_s);
      latest_start = std::max(latest_start, h.started_s);
      earliest_end = std::min(earliest_end, h.ended_s);
      ends.insert(h.ended_s);
    }
    CHECK(latest_start < earliest_end);  // they overlap
    if (std::string(name) != "ray") CHECK(ends.size() == st.hosts.size());  // each its own end
  }
  CHECK(rec.layout.value("tp", 0) == 2);
  CHECK(rec.layout.value("pp", 0) == 2);
  // The engine's environment is in the record, as the spec set it.
  CHECK(step_of(rec, "serve").detail.value("env", nlohmann::json::object()).value("VLLM_CPU_KVCACHE_SPACE", "") == "1");
  // The seed's shape for real: TP 2 x PP 2 over Ray across two hosts in
  // Docker. The lab's two differences (said in the spec and README): the
  // containers share /dev/shm (vLLM's CPU build passes tensors between
  // pipeline stages through /dev/shm files; GPUs use NCCL) and
  // OMP_NUM_THREADS=1 in Ray's environment (2 cores for 4 workers).
  // 1 GiB of KV space per worker: the planner's figure is the engine's own.
  CHECK(step_of(rec, "serve").detail.value("kv_cache_tokens", 0) == 2097152);
  {
    auto st = ray_status(d.ray_cluster());
    CHECK(st.usage.at("GPU").used == 4.0);  // vLLM's placement group holds all 4
    // ... 2 on each host, as Ray accounts them per node (its node view
    // trails the cluster's figures by a few seconds).
    CHECK(eventually(20, [&] {
      auto now = ray_status(d.ray_cluster());
      return std::all_of(now.hosts.begin(), now.hosts.end(), [](RayHostStatus const& h) {
        return h.usage.count("GPU") && h.usage.at("GPU").used == 2.0 && h.usage.at("GPU").total == 2.0;
      });
    }));
  }
  CHECK(rec.smoke.value("ok", false));
  CHECK(rec.bench.value("ok", 0) == 8);
  CHECK(rec.versions.at("vllm") == "0.32.0");
  CHECK(rec.versions.at("image") == "clusterkit/lab-runtime:bookworm");
  CHECK_THAT(rec.versions.at("image_id"), Catch::Matchers::StartsWith("sha256:"));  // one ID, the same on h1 and h2
  // Built on the lab, never pulled: no registry digest, and the record says so.
  REQUIRE(rec.versions.count("image_digest") == 1);
  CHECK_THAT(rec.versions.at("image_digest"), Catch::Matchers::StartsWith("none: a local image"));
  CHECK(rec.node_env.at("h2").at("VLLM_HOST_IP") == std::string(kSubnet) + ".12");
  CHECK_FALSE(rec.simulated.empty());
  CHECK(fs::exists(deployment_record_path(spec)));
  CHECK_THAT(rec.summary(), Contains("clusterkit chat --url http://" + std::string(kSubnet) + ".11:8000 --model tiny"));

  // `up` again: already up, from a quick look.
  t0 = clock_type::now();
  auto again = deployment_up(d);
  double again_s = seconds_since(t0);
  WARN("deployment up on a running deployment: " << again_s << " s");
  CHECK_THAT(again.message, Contains("already up"));
  CHECK(again_s < 1.5);
  {
    // Every layer, the hosts first: each one answered, with its role.
    auto const st = deployment_status(d);
    CHECK(st.state == "up");
    std::map<std::string, DeploymentHostLook> by_name;
    for (auto const& h : st.hosts) by_name[h.host] = h;
    REQUIRE(by_name.size() == 3);
    CHECK(by_name["h1"].roles == std::vector<std::string>{"head"});
    CHECK(by_name["h2"].roles == std::vector<std::string>{"worker"});
    CHECK(by_name["h3"].roles == std::vector<std::string>{"download"});
    for (auto const& [name, h] : by_name) {
      CHECK(h.reachable);
      CHECK(h.uptime_seconds > 0);  // the lab host's /proc (its own pid namespace, the machine's uptime)
      CHECK_FALSE(h.load.empty());
    }
    CHECK_THAT(st.summary(), Contains("  host h1 (head): answered in "));
  }

  // `plan` on the running deployment: what `up` would skip, said per step;
  // nothing changed (the record and the containers are as they were).
  {
    auto const before = fs::last_write_time(deployment_record_path(spec));
    auto plan = deployment_plan(d);
    std::map<std::string, std::string> skip;
    for (auto const& st : plan.steps) skip[st.step] = st.skip_reason;
    CHECK(skip.at("nas") == "mounted on every host already");
    CHECK(skip.at("model") == "complete on the NAS already");
    CHECK(skip.at("ray") == "a healthy cluster of this shape is up");
    CHECK(skip.at("serve") == "the engine serves already");
    CHECK(fs::last_write_time(deployment_record_path(spec)) == before);
    CHECK(containers("h1") == "1\n");
  }

  // Under a healthy engine and Ray: the NAS gone from h2 and a shard cut
  // short on the NAS. `up`'s quick look sees both (not "already up"), and
  // the run mends them, keeping Ray and the engine as they are.
  auto shard = "/mnt/Qwen/Tiny2___5-4M-Instruct/model-00001-of-00001.safetensors";
  {
    auto const engine_pid = deployment_status(d).engine->pid;
    auto const ray_containers = lab.sh("h1", "docker ps -q").stdout_text + lab.sh("h2", "docker ps -q").stdout_text;
    REQUIRE(lab.sh("h3", std::string("truncate -s 100000 ") + shard).exit_code == 0);
    REQUIRE(lab.sh("h2", "umount -l /mnt").exit_code == 0);
    CHECK(deployment_status(d).state == "DEGRADED");
    std::vector<std::string> said;
    auto mended = deployment_up(d, [&](DeploymentProgress const& p) {
      if (p.step == "up") said.push_back(p.message);
    });
    REQUIRE_FALSE(said.empty());
    CHECK_THAT(said.front(), Contains("the last run left it up, but now: DEGRADED ("));
    CHECK_THAT(mended.message, !Contains("already up"));
    CHECK(step_of(mended, "nas").status == "ok");
    for (auto const& h : step_of(mended, "ray").hosts) CHECK(h.status == "skipped");  // kept
    CHECK(deployment_status(d).engine->pid == engine_pid);                           // the same engine
    CHECK(lab.sh("h1", "docker ps -q").stdout_text + lab.sh("h2", "docker ps -q").stdout_text == ray_containers);
    CHECK(lab.sh("h2", "mountpoint -q /mnt && echo mounted").stdout_text == "mounted\n");
    CHECK(deployment_status(d).state == "up");
    auto again_now = deployment_up(d);
    CHECK_THAT(again_now.message, Contains("already up") && Contains("the NAS shared, the model whole on every GPU host"));
  }

  // Faults after `up`: a worker's Ray container killed, the NAS gone from
  // h2, a shard cut short on the NAS. Status says DEGRADED; `up` heals it
  // all: the NAS mounted again, the shard repaired by a sync, the Ray worker
  // replaced, the engine restarted on it.
  REQUIRE(lab.sh("h2", "docker kill ck-ray-seed >/dev/null").exit_code == 0);
  REQUIRE(lab.sh("h3", std::string("truncate -s 100000 ") + shard).exit_code == 0);
  REQUIRE(lab.sh("h2", "umount -l /mnt").exit_code == 0);
  auto degraded = deployment_status(d);
  CHECK(degraded.state == "DEGRADED");
  CHECK_FALSE(degraded.problems.empty());
  REQUIRE(degraded.engine);
  WARN("engine after the worker's loss: " << degraded.engine->state << ", /health " << degraded.engine->health_status);
  CHECK(degraded.engine->state == "DEGRADED");  // vllm#16259: /health may still say 200
  t0 = clock_type::now();
  auto healed = deployment_up(d);
  WARN("deployment up healing: " << seconds_since(t0) << " s");
  CHECK(healed.status == "up");
  bool remounted = false;
  for (auto const& h : step_of(healed, "nas").hosts) remounted = remounted || (h.host == "h2" && h.status == "ok");
  CHECK(remounted);
  CHECK(step_of(healed, "model").status == "ok");  // copied again, not skipped
  CHECK(lab.sh("h1", std::string("stat -c %s ") + shard).stdout_text != "100000\n");
  CHECK(deployment_status(d).state == "up");

  auto logs = deployment_logs(d, "", 50);
  CHECK_FALSE(logs.empty());
  // `logs --host h2`: the worker's Ray logs (its container's output, then raylet's).
  auto worker_logs = deployment_logs(d, "h2", 50);
  CHECK_THAT(worker_logs, Contains("==> docker logs ck-ray-"));
  CHECK_THAT(worker_logs, Contains("raylet.out <=="));
  try {
    deployment_logs(d, "nope", 10);
    FAIL("logs of a host that is not the deployment's");
  } catch (Error const& e) {
    CHECK_THAT(std::string(e.what()), Contains("nope is not one of the deployment's Ray hosts"));
  }

  // down: the engine, Ray and the containers; the NAS and the model stay.
  auto down = deployment_down(d);
  CHECK(down.problems.empty());
  CHECK(containers("h1") == "0\n");
  CHECK(containers("h2") == "0\n");
  CHECK(lab.sh("h2", std::string("test -f ") + shard + " && echo kept").stdout_text == "kept\n");
  CHECK(load_deployment_record(spec)->status == "down");
  CHECK(deployment_status(d).state == "down");
  // Asked for: the model goes too, from the NAS and from the download host.
  auto gone = deployment_down(d, DeploymentDownOptions{.unmount_nas = false, .remove_model = true});
  CHECK(gone.problems.empty());
  CHECK(lab.sh("h2", std::string("test -e ") + shard + " && echo there || echo gone").stdout_text == "gone\n");
  CHECK(lab.sh("h3", "test -e /var/tmp/ck-download/Qwen/Tiny2___5-4M-Instruct && echo there || echo gone").stdout_text == "gone\n");
  // Its organisation's folder too, left empty by it (and only if empty).
  CHECK(lab.sh("h3", "test -e /var/tmp/ck-download/Qwen && echo there || echo gone").stdout_text == "gone\n");
  CHECK(std::find(gone.removed.begin(), gone.removed.end(), "download h3:/var/tmp/ck-download/Qwen/Tiny2___5-4M-Instruct") !=
        gone.removed.end());
}
