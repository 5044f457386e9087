// RayCluster's pure half, without hosts: the parsers on real captures of Ray
// 2.60.0 (tests/fixtures/ray), the command lines and environment of each
// node, the fingerprint, the decision per host, the judgement of a cluster,
// and the failure sentences. The same code runs against real Ray in the lab
// in tests/lab/test_ray_lab.cpp; the probe and stop scripts run here under
// this machine's /bin/sh.
#include "clusterkit/ray_cluster.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <tuple>

using namespace clusterkit;
using Catch::Matchers::Contains;

namespace {

std::string fixture(std::string const& rel) {
  std::ifstream in(std::string(CK_SOURCE_DIR) + "/tests/fixtures/" + rel, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The body after the "== PATH" line of ray-dashboard-api.txt.
std::string dashboard_answer(std::string const& path) {
  auto text = fixture("ray/ray-dashboard-api.txt");
  auto at = text.find("== " + path + "\n");
  REQUIRE(at != std::string::npos);
  auto begin = at + path.size() + 4;
  return text.substr(begin, text.find('\n', begin) - begin);
}

bool has(std::vector<std::string> const& v, std::string const& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

/// Runs a script under this machine's /bin/sh and returns its stdout.
std::string run_sh(std::string const& script) {
  char path[] = "/tmp/ck-ray-test-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size()));
  ::close(fd);
  std::string out;
  FILE* p = ::popen(("/bin/sh " + std::string(path) + " 2>/dev/null").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  ::unlink(path);
  return out;
}

RayClusterSpec docker_spec() {
  RayClusterSpec s;
  s.name = "seed";
  s.image = "vllm/vllm-openai";
  s.volumes = {{"/mnt/Qwen", "/models", false}, {"/root/.cache/huggingface", "/root/.cache/huggingface", false}};
  return s;
}

}  // namespace

TEST_CASE("ray status: the autoscaler's text, idle and with vLLM's placement group", "[ray][parse]") {
  auto idle = parse_ray_status(fixture("ray/ray-status.txt"));
  CHECK(idle.active == std::vector<std::string>{"c02bf94a50d65c64322f28681be4e95af7acaa78f919562076059ef4",
                                                "11dfc12f314b0f4896cd2078c2ad909f547c698cc33683aebd2c2e90"});
  CHECK(idle.pending.empty());
  CHECK(idle.failed.empty());
  CHECK(idle.usage.at("GPU").used == 0.0);
  CHECK(idle.usage.at("GPU").total == 4.0);
  CHECK(idle.usage.at("CPU").total == 4.0);
  CHECK(idle.usage.at("memory").total == Approx(40.13 * 1024 * 1024 * 1024));
  CHECK(idle.usage.at("object_store_memory").total == 512.0 * 1024 * 1024);
  CHECK(idle.pending_demands.empty());

  auto busy = parse_ray_status(fixture("ray/ray-status-with-vllm.txt"));
  CHECK(busy.active.size() == 2);
  CHECK(busy.usage.at("GPU").used == 4.0);
  CHECK(busy.usage_notes.at("GPU") == "(4.0 used of 4.0 reserved in placement groups)");

  // The dashboard's formatted status is the same text.
  auto j = nlohmann::json::parse(dashboard_answer("/api/cluster_status?format=1"));
  auto same = parse_ray_status(j["data"]["clusterStatus"].get<std::string>());
  CHECK(same.active == idle.active);

  CHECK_THROWS_AS(parse_ray_status("ray: command not found\n"), Error);
  CHECK(parse_ray_amount("0B") == 0.0);
  CHECK(parse_ray_amount("1.5KiB") == 1536.0);
  CHECK_FALSE(parse_ray_amount("GPU"));
}

TEST_CASE("ray nodes: the dashboard's /api/v0/nodes", "[ray][parse]") {
  for (auto path : {"/api/v0/nodes", "/api/v0/nodes?detail=1"}) {
    auto nodes = parse_ray_nodes_json(dashboard_answer(path));
    REQUIRE(nodes.size() == 2);
    CHECK(nodes[0].node_ip == "10.77.0.11");
    CHECK(nodes[0].is_head);
    CHECK(nodes[0].alive());
    CHECK(nodes[0].resources_total.at("GPU") == 2.0);
    CHECK(nodes[0].resources_total.at("CPU") == 2.0);
    CHECK(nodes[1].node_ip == "10.77.0.12");
    CHECK_FALSE(nodes[1].is_head);
    CHECK(nodes[1].node_id == "c02bf94a50d65c64322f28681be4e95af7acaa78f919562076059ef4");
  }
  CHECK_THROWS_WITH(parse_ray_nodes_json("{\"result\": false, \"msg\": \"no GCS\"}"), Contains("no GCS"));
  CHECK_THROWS_AS(parse_ray_nodes_json(std::string(100, '[')), Error);
  CHECK_THROWS_AS(parse_ray_nodes_json("<html>"), Error);
}

TEST_CASE("ray report: dashboard first, `ray status` as the fallback", "[ray][parse]") {
  std::string out = "@@ck-ray-nodes " + dashboard_answer("/api/v0/nodes?detail=1") + "\n@@ck-ray-version 2.60.0\n" +
                    "@@ck-ray-source dashboard\n@@ck-ray-status-begin\n" + fixture("ray/ray-status.txt") + "@@ck-ray-status-end 0\n";
  auto r = parse_ray_report(out);
  CHECK(r.source == "dashboard");
  CHECK(r.nodes.size() == 2);
  CHECK(r.ray_version == "2.60.0");
  REQUIRE(r.status);
  CHECK(r.error.empty());

  auto fallback = parse_ray_report("@@ck-ray-dashboard-error <urlopen error [Errno 111] Connection refused>\n@@ck-ray-status-begin\n" +
                                   fixture("ray/ray-status.txt") + "@@ck-ray-status-end 0\n");
  CHECK(fallback.source == "ray status");
  CHECK(fallback.nodes.empty());
  CHECK(fallback.status->active.size() == 2);

  auto none = parse_ray_report("@@ck-ray-dashboard-error refused\n@@ck-ray-status-begin\n@@ck-ray-status-end 1\n"
                               "@@ck-ray-status-error ConnectionError: Could not find any running Ray instance.\n");
  CHECK(none.source.empty());
  CHECK_THAT(none.error, Contains("Could not find any running Ray instance"));
}

TEST_CASE("ray per-node usage: the dashboard's node view, joined to the nodes by id", "[ray][parse]") {
  auto const text = fixture("ray/dashboard-node-usage.txt");
  auto const usage_json = text.substr(text.find('\n') + 1, text.find("\n== /api") - text.find('\n') - 1);
  auto const nodes_json = text.substr(text.find("detail=1\n") + 9);
  auto usage = parse_ray_node_usage(usage_json);
  REQUIRE(usage.size() == 2);
  auto const& worker = usage.at("e52e6cfd515b15f53c64157ae748bc261a277f10bdcc252ebcbee876");
  CHECK(worker.at("GPU").used == 1.0);
  CHECK(worker.at("GPU").total == 2.0);
  CHECK(worker.at("CPU").used == 1.0);
  CHECK(worker.at("memory").used == 0.0);
  CHECK(worker.at("memory").total == Approx(15.58 * 1024 * 1024 * 1024));
  CHECK(worker.at("object_store_memory").total == Approx(6.68 * 1024 * 1024 * 1024));
  CHECK_THROWS_AS(parse_ray_node_usage("[1, 2]"), Error);
  CHECK_THROWS_AS(parse_ray_node_usage(std::string(100, '{')), Error);
  CHECK(parse_ray_node_usage("{\"x\": 5, \"y\": \"not a usage line\"}").at("y").empty());

  // In the status script's output: each node gets its own figures.
  auto report = parse_ray_report("@@ck-ray-nodes " + nodes_json + "@@ck-ray-node-usage " + usage_json +
                                 "\n@@ck-ray-version 2.60.0\n@@ck-ray-source dashboard\n");
  REQUIRE(report.nodes.size() == 2);
  for (auto const& n : report.nodes) {
    CHECK(n.usage.at("GPU").used == 1.0);
    CHECK(n.usage.at("GPU").total == n.resources_total.at("GPU"));
  }
  // A broken usage line loses only the per-node figures.
  auto partial = parse_ray_report("@@ck-ray-nodes " + nodes_json + "@@ck-ray-node-usage {broken\n");
  CHECK(partial.source == "dashboard");
  CHECK(partial.nodes.size() == 2);
  CHECK(partial.nodes[0].usage.empty());

  // Judged per host, and printed: used/total where Ray said it.
  RayClusterSpec spec;
  spec.runtime = RayRuntimeKind::bare;
  std::vector<RayNodePlan> plans(2);
  plans[0].host = "h1";
  plans[0].head = true;
  plans[0].node_ip = "10.89.0.11";
  plans[0].gpus = 2;
  plans[1].host = "h2";
  plans[1].node_ip = "10.89.0.12";
  plans[1].gpus = 2;
  auto st = evaluate_ray_cluster(spec, plans, report, {"running", "running"});
  CHECK(st.healthy);
  REQUIRE(st.hosts.size() == 2);
  CHECK(st.hosts[1].usage.at("CPU").used == 1.0);
  CHECK(st.to_json()["hosts"][1]["usage"]["GPU"] == nlohmann::json{{"used", 1.0}, {"total", 2.0}});
  CHECK_THAT(st.summary(), Contains("GPUs 1/2  CPUs 1/2  memory 0 B/15.6 GiB"));
}

TEST_CASE("the seed's nodes: docker run as run_cluster.sh, with a fixed name and the node's environment", "[ray][plan]") {
  auto spec = docker_spec();
  auto head = plan_ray_node(spec, "gpu1", true, "172.18.190.25", "eth0", std::nullopt, true, "172.18.190.25");
  auto worker = plan_ray_node(spec, "gpu2", false, "172.18.190.26", "eth0", std::nullopt, true, "172.18.190.25");
  auto const& d = head.docker_run_argv;
  auto joined = [](std::vector<std::string> const& v) {
    std::string s;
    for (auto const& x : v) s += x + " ";
    return s;
  };
  // The seed's settings.
  CHECK_THAT(joined(d), Contains("docker run -d --name ck-ray-seed --network host"));
  CHECK_THAT(joined(d), Contains("--shm-size 10.24g"));
  CHECK_THAT(joined(d), Contains("--gpus all"));
  CHECK_THAT(joined(d), Contains("-v /mnt/Qwen:/models"));
  CHECK_THAT(joined(d), Contains("-v /root/.cache/huggingface:/root/.cache/huggingface"));
  // The node's identity set when the container is created (vllm#6803).
  CHECK(has(d, "VLLM_HOST_IP=172.18.190.25"));
  CHECK(has(d, "RAY_NODE_IP_ADDRESS=172.18.190.25"));
  CHECK(has(d, "NCCL_SOCKET_IFNAME=eth0"));
  CHECK(has(d, "GLOO_SOCKET_IFNAME=eth0"));
  CHECK(has(worker.docker_run_argv, "VLLM_HOST_IP=172.18.190.26"));
  // Ray: head on 6379 with the dashboard on loopback only; worker joins it.
  CHECK(has(head.ray_start_argv, "--head"));
  CHECK(has(head.ray_start_argv, "--block"));
  CHECK(has(head.ray_start_argv, "--port=6379"));
  CHECK(has(head.ray_start_argv, "--dashboard-host=127.0.0.1"));
  CHECK(has(head.ray_start_argv, "--node-ip-address=172.18.190.25"));
  CHECK(has(worker.ray_start_argv, "--address=172.18.190.25:6379"));
  CHECK_FALSE(has(worker.ray_start_argv, "--head"));
  CHECK(d.back().starts_with("exec ray start --block --head --port=6379"));
  CHECK(d[d.size() - 3] == "vllm/vllm-openai");

  // Same inputs, same fingerprint; any change that matters, another one.
  auto again = plan_ray_node(spec, "gpu1", true, "172.18.190.25", "eth0", std::nullopt, true, "172.18.190.25");
  CHECK(again.fingerprint == head.fingerprint);
  CHECK(has(d, "clusterkit.ray.fingerprint=" + head.fingerprint));
  auto other_image = spec;
  other_image.image = "vllm/vllm-openai:v0.8.5";
  CHECK(plan_ray_node(other_image, "gpu1", true, "172.18.190.25", "eth0", std::nullopt, true, "172.18.190.25").fingerprint !=
        head.fingerprint);
  CHECK(plan_ray_node(spec, "gpu1", true, "172.18.190.99", "eth0", std::nullopt, true, "172.18.190.25").fingerprint !=
        head.fingerprint);

  // The lab's shape: logical GPUs, --ipc host instead of a private /dev/shm.
  auto lab = spec;
  lab.ipc_host = true;
  lab.env["OMP_NUM_THREADS"] = "1";
  auto l = plan_ray_node(lab, "h1", true, "10.88.0.11", "eth0", 2u, false, "10.88.0.11", true);
  CHECK(has(l.ray_start_argv, "--num-gpus=2"));
  CHECK_THAT(joined(l.docker_run_argv), Contains("--ipc host"));
  CHECK_FALSE(has(l.docker_run_argv, "--shm-size"));
  CHECK_FALSE(has(l.docker_run_argv, "--gpus"));
  CHECK(l.env.at("OMP_NUM_THREADS") == "1");
}

TEST_CASE("bare nodes: ray start detached, its temp dir and log in known places", "[ray][plan]") {
  RayClusterSpec spec;
  spec.name = "lab";
  spec.runtime = RayRuntimeKind::bare;
  spec.ray_command = "/opt/ck-serve/bin/ray";
  spec.object_store_memory = 268435456;
  auto n = plan_ray_node(spec, "h2", false, "10.88.0.12", "eth0", 2u, false, "10.88.0.11");
  CHECK(n.docker_run_argv.empty());
  CHECK_FALSE(has(n.ray_start_argv, "--block"));
  CHECK(has(n.ray_start_argv, "--temp-dir=/tmp/ck-ray-lab"));
  CHECK(has(n.ray_start_argv, "--object-store-memory=268435456"));
  CHECK_THAT(n.bare_start_script, Contains("GLOO_SOCKET_IFNAME='eth0'; export GLOO_SOCKET_IFNAME"));
  CHECK_THAT(n.bare_start_script, Contains("ray-start /opt/ck-serve/bin/ray start --address=10.88.0.11:6379"));
  CHECK_THAT(n.bare_start_script, Contains("echo $$ >> .clusterkit-sessions"));
  CHECK_THAT(n.bare_start_script, Contains("> ray-start.log"));
  // The venv's bin comes first on PATH for commands run in the runtime.
  auto cmd = ray_runtime_command(spec, "vllm --version");
  CHECK_THAT(cmd.script, Contains("PATH='/opt/ck-serve/bin':\"$PATH\""));
  auto d = ray_runtime_command(docker_spec(), "ray status", true);
  CHECK(d.argv == std::vector<std::string>{"docker", "exec", "-i", "ck-ray-seed", "sh", "-c", "ray status"});
}

TEST_CASE("cluster specs that cannot work are refused with the field named", "[ray][validate]") {
  auto code_of = [](RayClusterSpec const& s) {
    try {
      validate(s);
    } catch (Error const& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  RayClusterSpec s;
  CHECK(code_of(s).empty());
  s.name = "Bad Name";
  CHECK_THAT(code_of(s), Contains("cluster name"));
  s = {};
  s.port = 70000;
  CHECK_THAT(code_of(s), Contains("70000"));
  s = {};
  s.dashboard_port = s.port;
  CHECK_THAT(code_of(s), Contains("different ports"));
  s = {};
  s.env["A B"] = "1";
  CHECK_THAT(code_of(s), Contains("\"A B\""));
  s = {};
  s.volumes = {{"relative", "/models", false}};
  CHECK_THAT(code_of(s), Contains("absolute"));
  s = {};
  s.shm_size = "lots";
  CHECK_THAT(code_of(s), Contains("shm_size"));
  s = {};
  s.docker_gpus = "some";
  CHECK_THAT(code_of(s), Contains("docker_gpus"));
}

TEST_CASE("the probe script runs under sh and its output parses", "[ray][probe]") {
  RayClusterSpec spec;
  spec.name = "unit";
  spec.runtime = RayRuntimeKind::bare;
  spec.ray_command = "/nonexistent/bin/ray";
  auto out = run_sh(ray_probe_script(spec, "127.0.0.1", true));
  auto p = parse_ray_probe("local", out);
  CHECK_FALSE(p.ray_found);
  CHECK_THAT(p.ray_error, Contains("/nonexistent/bin/ray not found"));
  // The route to 127.0.0.1 is local: the source is 127.0.0.1 itself.
  CHECK(p.node_ip == "127.0.0.1");
  // The probe's own shell never counts as one of the cluster's processes.
  CHECK(p.cluster_pids.empty());
  CHECK_THROWS_AS(parse_ray_probe("h1", "@@ck-ray route 10.0.0.1 eth0\n"), Error);

  auto parsed = parse_ray_probe("h1",
                                "@@ck-ray route 10.88.0.12 eth0 10.88.0.11\n@@ck-ray gpus 2\n@@ck-ray docker 20.10.24\n"
                                "@@ck-ray image yes\n@@ck-ray container running 0123abcd\n@@ck-ray versions 3.11.2 2.60.0\n"
                                "@@ck-ray port-in-use python3\n@@ck-ray-end\n");
  CHECK(parsed.node_ip == "10.88.0.12");
  CHECK(parsed.interface == "eth0");
  CHECK(parsed.gpus_found == 2);
  CHECK(parsed.docker);
  CHECK(parsed.image_present);
  CHECK(parsed.container_state == "running");
  CHECK(parsed.container_fingerprint == "0123abcd");
  CHECK(parsed.python_version == "3.11.2");
  CHECK(parsed.ray_version == "2.60.0");
  CHECK(parsed.port_in_use);
  CHECK(parsed.port_owner == "python3");
}

TEST_CASE("the stop script kills only this cluster's processes, by pid", "[ray][stop]") {
  RayClusterSpec spec;
  spec.name = "unitstop";
  spec.runtime = RayRuntimeKind::bare;
  // Stand-ins for Ray: a session leader of "this cluster" (its command line
  // names the temp dir) with a child that does not (as Ray's client server
  // and the dashboard's forkserver children), and one of another cluster
  // whose name shares the prefix.
  std::string mine = "/tmp/ck-ray-unitstop", other = "/tmp/ck-ray-unitstop2";
  std::filesystem::create_directories(mine);
  auto child_file = mine + "-child.pid";
  auto spawn = [&](std::string const& arg) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setsid();  // as the start script does: never this test's own session
      // `wait`, not a loop of `sleep 0.1`: each sleep is forked from this
      // shell, and a fork that has not exec'd yet carries this command line
      // (the temp dir) too, which the probe rightly counts as the cluster's.
      std::string loop = "sleep 300 & echo $! > '" + child_file + ".' ; mv '" + child_file + ".' '" + child_file +
                         "'; trap 'exit 0' TERM; wait";
      if (arg.find(other) != std::string::npos) loop = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
      ::execl("/bin/sh", "sh", "-c", loop.c_str(), arg.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  };
  auto cmdline_has = [](pid_t pid, std::string const& what) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find(what) != std::string::npos;
  };
  auto gone = [](pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = stat.rfind(')');
    return stat.empty() || (close != std::string::npos && stat.substr(close + 2, 1) == "Z");
  };
  pid_t a = spawn("--temp-dir=" + mine);
  pid_t b = spawn("--temp-dir=" + other);
  REQUIRE(a > 0);
  REQUIRE(b > 0);
  // Until both have exec'd and the child is there.
  for (int i = 0; i < 500 && !(cmdline_has(a, mine) && cmdline_has(b, other) && std::filesystem::exists(child_file)); ++i)
    ::usleep(10000);
  REQUIRE(cmdline_has(a, mine));
  pid_t child = 0;
  std::ifstream(child_file) >> child;
  REQUIRE(child > 0);

  // Without a recorded session, only the process naming the temp dir is ours.
  auto probe = parse_ray_probe("local", run_sh(ray_probe_script(spec, "127.0.0.1", false)));
  CHECK(probe.cluster_pids == std::vector<int>{a});
  // With a's session recorded (as the start script records it), its child too.
  std::ofstream(mine + "/.clusterkit-sessions") << a << "\n";
  probe = parse_ray_probe("local", run_sh(ray_probe_script(spec, "127.0.0.1", false)));
  auto listed = [&](pid_t p) { return std::find(probe.cluster_pids.begin(), probe.cluster_pids.end(), p) != probe.cluster_pids.end(); };
  CHECK(listed(a));
  CHECK(listed(child));
  CHECK_FALSE(listed(b));
  for (int p : probe.cluster_pids) CHECK(::getsid(p) == a);  // nothing outside a's session

  auto out = run_sh(ray_stop_script(spec));
  int status = 0;
  CHECK(::waitpid(a, &status, 0) == a);
  for (int i = 0; i < 500 && !gone(child); ++i) ::usleep(10000);
  CHECK(gone(child));
  CHECK(::waitpid(b, &status, WNOHANG) == 0);  // the other cluster's is untouched
  ::kill(b, SIGKILL);
  ::waitpid(b, &status, 0);
  CHECK_THAT(out, Contains("@@ck-ray-removed"));
  CHECK_THAT(out, Contains("Ray processes and /tmp/ck-ray-unitstop"));
  CHECK_FALSE(std::filesystem::exists(mine));  // the temp dir went with them
  std::filesystem::remove(child_file);
}

namespace {
/// A stand-in venv: bin/ray (the given script), bin/python3 that says
/// versions of its own, pyvenv.cfg and Ray's dist-info folder.
std::string fake_venv(std::string const& dir, std::string const& ray_body, bool with_dist_info) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/bin");
  auto script = [&](std::string const& name, std::string const& body) {
    std::ofstream(dir + "/bin/" + name) << "#!/bin/sh\n" << body << "\n";
    std::filesystem::permissions(dir + "/bin/" + name, std::filesystem::perms::owner_all);
  };
  script("ray", ray_body);
  script("python3", "echo '@@ck-ray versions 3.0.1 python-was-started'");
  std::ofstream(dir + "/pyvenv.cfg") << "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n";
  if (with_dist_info) std::filesystem::create_directories(dir + "/lib/python3.11/site-packages/ray-2.99.1.dist-info");
  return dir + "/bin/ray";
}
}  // namespace

TEST_CASE("the bare probe reads the versions from the venv's files, else asks its Python", "[ray][probe]") {
  RayClusterSpec spec;
  spec.name = "unitprobe";
  spec.runtime = RayRuntimeKind::bare;
  std::string dir = "/tmp/ck-unit-venv-probe";
  spec.ray_command = fake_venv(dir, "exit 0", true);
  auto p = parse_ray_probe("local", run_sh(ray_probe_script(spec, "127.0.0.1", false)));
  CHECK(p.python_version == "3.11.7");
  CHECK(p.ray_version == "2.99.1");
  // No dist-info (not a pip-installed Ray): Python is asked.
  spec.ray_command = fake_venv(dir, "exit 0", false);
  p = parse_ray_probe("local", run_sh(ray_probe_script(spec, "127.0.0.1", false)));
  CHECK(p.python_version == "3.0.1");
  CHECK(p.ray_version == "python-was-started");
  std::filesystem::remove_all(dir);
}

TEST_CASE("the docker probe reads the versions from a venv mounted from the host, else asks the image", "[ray][probe]") {
  // A stand-in `docker` first on PATH: an engine with the image and no
  // container; `docker run` says where the versions came from.
  std::string const bin = "/tmp/ck-unit-docker-probe-bin";
  std::filesystem::remove_all(bin);
  std::filesystem::create_directories(bin);
  std::ofstream(bin + "/docker") << "#!/bin/sh\n"
                                    "case \"$1\" in\n"
                                    "  version) echo 26.1.5 ;;\n"
                                    "  info) echo '{}' ;;\n"
                                    "  image) exit 0 ;;\n"
                                    "  inspect) exit 1 ;;\n"
                                    "  run) echo '@@ck-ray versions 3.0.1 container-was-started' ;;\n"
                                    "esac\n";
  std::filesystem::permissions(bin + "/docker", std::filesystem::perms::owner_all);
  RayClusterSpec spec;
  spec.name = "unitdprobe";
  spec.runtime = RayRuntimeKind::docker;
  spec.image = "clusterkit/lab-runtime:bookworm";
  std::string const host_dir = "/tmp/ck-unit-venv-dprobe";
  fake_venv(host_dir, "exit 0", true);
  // The venv is at /opt/venv in the container, mounted from host_dir.
  spec.ray_command = "/opt/venv/bin/ray";
  spec.volumes.push_back({host_dir, "/opt/venv", true});
  auto with_path = [&](std::string const& script) { return "PATH=" + bin + ":$PATH\n" + script; };
  auto p = parse_ray_probe("local", run_sh(with_path(ray_probe_script(spec, "127.0.0.1", false))));
  CHECK(p.docker);
  CHECK(p.python_version == "3.11.7");
  CHECK(p.ray_version == "2.99.1");
  // Mounted one level up (/opt holds the venv): the same files.
  std::string const parent = "/tmp/ck-unit-dprobe-opt";
  std::filesystem::remove_all(parent);
  std::filesystem::create_directories(parent);
  std::filesystem::create_directory_symlink(host_dir, parent + "/venv");
  spec.volumes = {{parent, "/opt", true}};
  p = parse_ray_probe("local", run_sh(with_path(ray_probe_script(spec, "127.0.0.1", false))));
  CHECK(p.ray_version == "2.99.1");
  std::filesystem::remove_all(parent);
  // The image's own Python (no volume holds it): a container is asked.
  spec.volumes.clear();
  p = parse_ray_probe("local", run_sh(with_path(ray_probe_script(spec, "127.0.0.1", false))));
  CHECK(p.python_version == "3.0.1");
  CHECK(p.ray_version == "container-was-started");
  std::filesystem::remove_all(host_dir);
  std::filesystem::remove_all(bin);
}

TEST_CASE("the bare start returns once Ray says the node runs, not when `ray start` exits", "[ray][start]") {
  RayClusterSpec spec;
  spec.name = "unitstart";
  spec.runtime = RayRuntimeKind::bare;
  std::string dir = "/tmp/ck-unit-venv-start", tmp = "/tmp/ck-ray-unitstart";
  std::filesystem::remove_all(tmp);
  auto start = [&](std::string const& ray_body) {
    spec.ray_command = fake_venv(dir, ray_body, true);
    auto plan = plan_ray_node(spec, "h1", true, "127.0.0.1", "lo", 2u, false, "127.0.0.1");
    auto t0 = std::chrono::steady_clock::now();
    auto out = run_sh(ray_start_script(spec, plan, false));
    return std::pair{out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  };
  auto wait_for_rc = [&] {
    for (int i = 0; i < 500 && !std::filesystem::exists(tmp + "/.clusterkit-start-rc"); ++i) ::usleep(10000);
    std::string rc;
    std::ifstream(tmp + "/.clusterkit-start-rc") >> rc;
    return rc;
  };
  // Like `ray start`: the line, then seconds more before it exits. The
  // command returns at the line (and holds no pipe of it: run_sh reads to
  // the end of the script's output).
  auto [out, seconds] = start("echo 'SUCC scripts.py:1085 -- Ray runtime started.'; sleep 2; exit 0");
  CHECK_THAT(out, Contains("@@ck-ray-started"));
  CHECK(seconds < 1.5);
  CHECK(wait_for_rc() == "0");  // and it went on to exit by itself

  // A start that fails: its status and its words.
  std::tie(out, seconds) = start("echo 'ConnectionError: could not reach the GCS at 10.0.0.1:6379'; exit 3");
  CHECK_THAT(out, Contains("@@ck-ray-failed 3") && Contains("could not reach the GCS"));
  // A start that exits 0 without the line (an older Ray): started.
  std::tie(out, seconds) = start("exit 0");
  CHECK_THAT(out, Contains("@@ck-ray-started"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(tmp);
}

TEST_CASE("deciding per host: keep, start, replace, refuse with the fix", "[ray][decide]") {
  auto spec = docker_spec();
  std::vector<RayNodePlan> plans{plan_ray_node(spec, "gpu1", true, "10.0.0.1", "eth0", 2u, true, "10.0.0.1"),
                                 plan_ray_node(spec, "gpu2", false, "10.0.0.2", "eth0", 2u, true, "10.0.0.1")};
  RayNodeProbe ok;
  ok.docker = true;
  ok.image_present = true;
  ok.docker_nvidia_runtime = true;
  ok.python_version = "3.12.3";
  ok.ray_version = "2.60.0";
  auto probes = std::vector<RayNodeProbe>{ok, ok};
  probes[0].host = "gpu1";
  probes[1].host = "gpu2";

  auto d = decide_ray_nodes(spec, plans, probes);
  CHECK(d[0].action == RayNodeAction::start);
  CHECK(d[1].action == RayNodeAction::start);

  // The same node already up: kept. Another one: replaced, saying so.
  probes[0].container_state = "running";
  probes[0].container_fingerprint = plans[0].fingerprint;
  probes[1].container_state = "running";
  probes[1].container_fingerprint = "something-else";
  d = decide_ray_nodes(spec, plans, probes);
  CHECK(d[0].action == RayNodeAction::keep);
  CHECK(d[1].action == RayNodeAction::replace);
  CHECK_THAT(d[1].reason, Contains("other settings"));
  // A replaced head takes its workers with it.
  probes[0].container_fingerprint = "old";
  probes[1].container_fingerprint = plans[1].fingerprint;
  d = decide_ray_nodes(spec, plans, probes);
  CHECK(d[0].action == RayNodeAction::replace);
  CHECK(d[1].action == RayNodeAction::replace);

  // Refusals name the host, what is wrong and the fix.
  auto refuse = [&](auto mutate) {
    auto p = std::vector<RayNodeProbe>{ok, ok};
    mutate(p);
    return decide_ray_nodes(spec, plans, p);
  };
  auto r = refuse([](auto& p) { p[1].docker_nvidia_runtime = false; });
  CHECK(r[1].action == RayNodeAction::refuse);
  CHECK_THAT(r[1].reason, Contains("could not select device driver") && Contains("nvidia-ctk runtime configure"));
  r = refuse([](auto& p) { p[1].ray_version = "2.40.0"; });
  CHECK(r[1].action == RayNodeAction::refuse);
  CHECK_THAT(r[1].reason, Contains("Ray 2.40.0") && Contains("Ray 2.60.0") && Contains("Version mismatch"));
  r = refuse([](auto& p) { p[0].port_in_use = true, p[0].port_owner = "redis-server"; });
  CHECK(r[0].action == RayNodeAction::refuse);
  CHECK_THAT(r[0].reason, Contains("port 6379 is already taken by redis-server"));
  r = refuse([](auto& p) { p[1].image_present = false; });
  CHECK_THAT(r[1].reason, Contains("docker pull vllm/vllm-openai"));
  r = refuse([](auto& p) { p[0].docker = false, p[0].docker_error = "Cannot connect to the Docker daemon"; });
  CHECK_THAT(r[0].reason, Contains("Docker does not answer"));
}

TEST_CASE("judging the cluster: healthy, a dead worker, a missing one", "[ray][evaluate]") {
  RayClusterSpec spec;
  spec.name = "lab";
  std::vector<RayNodePlan> plans{plan_ray_node(spec, "h1", true, "10.77.0.11", "eth0", 2u, false, "10.77.0.11", true),
                                 plan_ray_node(spec, "h2", false, "10.77.0.12", "eth0", 2u, false, "10.77.0.11", true)};
  RayReport report;
  report.nodes = parse_ray_nodes_json(dashboard_answer("/api/v0/nodes?detail=1"));
  report.status = parse_ray_status(fixture("ray/ray-status.txt"));
  report.source = "dashboard";
  auto st = evaluate_ray_cluster(spec, plans, report, {"running", "running"});
  CHECK(st.healthy);
  CHECK_FALSE(st.degraded);
  CHECK(st.alive_nodes == 2);
  CHECK(st.gpus_total == 4.0);
  CHECK(st.expected_gpus == 4.0);
  CHECK(st.gpus_simulated);
  CHECK_THAT(st.summary(), Contains("2/2 nodes alive, 4/4 GPUs (SIMULATED"));

  // The worker's Ray killed: Ray reports it DEAD (and the host says why).
  auto dead = report;
  dead.nodes[1].state = "DEAD";
  st = evaluate_ray_cluster(spec, plans, dead, {"running", "exited"});
  CHECK_FALSE(st.healthy);
  CHECK(st.degraded);
  CHECK(st.hosts[1].ray_state == "DEAD");
  CHECK_THAT(st.hosts[1].problem, Contains("h2") && Contains("not running"));
  // A worker restarted: Ray keeps the old DEAD entry beside the new one.
  auto back = report;
  back.nodes.push_back(back.nodes[1]);
  back.nodes[1].state = "DEAD";
  CHECK(evaluate_ray_cluster(spec, plans, back, {"running", "running"}).healthy);
  // A worker that never joined.
  auto missing = report;
  missing.nodes.pop_back();
  st = evaluate_ray_cluster(spec, plans, missing, {"running", "running"});
  CHECK_FALSE(st.healthy);
  CHECK_THAT(st.hosts[1].problem, Contains("has not joined"));
  // A stranger in our cluster.
  auto stranger = report;
  stranger.nodes.push_back(stranger.nodes[1]);
  stranger.nodes.back().node_ip = "10.77.0.99";
  st = evaluate_ray_cluster(spec, plans, stranger, {"running", "running"});
  CHECK_FALSE(st.healthy);
  CHECK_THAT(st.problems.back(), Contains("10.77.0.99"));
  // Only `ray status` (no dashboard): counted from the text.
  RayReport text_only;
  text_only.status = parse_ray_status(fixture("ray/ray-status.txt"));
  text_only.source = "ray status";
  CHECK(evaluate_ray_cluster(spec, plans, text_only, {"running", "running"}).healthy);
  // The head unreachable.
  st = evaluate_ray_cluster(spec, plans, RayReport{{}, {}, "", "", "connection refused"}, {"unreachable", "running"});
  CHECK_FALSE(st.healthy);
  CHECK_FALSE(st.degraded);
}

TEST_CASE("why a node did not start, in a sentence with the fix", "[ray][explain]") {
  auto spec = docker_spec();
  CHECK_THAT(explain_ray_failure("gpu1",
                                 "docker: Error response from daemon: could not select device driver \"\" with "
                                 "capabilities: [[gpu]].",
                                 spec),
             Contains("NVIDIA container toolkit") && Contains("nvidia-ctk"));
  CHECK_THAT(explain_ray_failure("gpu1", "Unable to find image 'vllm/vllm-openai:latest' locally\npull access denied", spec),
             Contains("docker pull vllm/vllm-openai"));
  CHECK_THAT(explain_ray_failure("gpu2", "RuntimeError: Version mismatch: The cluster was started with Ray 2.40.0", spec),
             Contains("version mismatch"));
  CHECK_THAT(explain_ray_failure("gpu1", "ValueError: Failed to bind to 0.0.0.0:6379 because it's already in use", spec),
             Contains("port Ray needs is taken"));
  CHECK_THAT(explain_ray_failure("gpu2", "Unable to connect to GCS (ray_syncer) at 10.0.0.1:6379", spec),
             Contains("cannot reach the head's GCS") && Contains("firewall"));
  CHECK_THAT(explain_ray_failure("gpu2", "sh: 1: exec: ray: not found", spec), Contains("Ray is not installed"));
  CHECK_THAT(explain_ray_failure("gpu2", "something else\nentirely", spec), Contains("something else | entirely"));
  // Real output of a `docker run -v` whose host path has a file in the way
  // (seen on the lab): the paths and the fix, not the shim's words.
  std::string const mount_failed =
      "b91f70eaadfd9df4aadf1328d8445f38dd2d6e6fac389f4e0da931fed56319c4\n"
      "docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: "
      "unable to start container process: error during container init: error mounting \"/tmp/ck-ray-dfault/cache\" to "
      "rootfs at \"/ck-dfault-cache\": stat /tmp/ck-ray-dfault/cache: not a directory: unknown: Are you trying to mount a "
      "directory onto a file (or vice-versa)? Check if the specified host path exists and is the expected type\n"
      "Run 'docker run --help' for more information\n";
  CHECK(explain_ray_failure("gpu2", mount_failed, spec) ==
        "gpu2: Docker cannot mount /tmp/ck-ray-dfault/cache at /ck-dfault-cache (a file stands where a folder must be, or "
        "the reverse); fix that path on gpu2, or the spec's volumes");
  // Any other failure of `docker run`: the reason, without the container's
  // ID, the help hint or the shim's prefix.
  auto other = explain_ray_failure(
      "gpu2",
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\ndocker: Error response from daemon: failed to "
      "create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during "
      "container init: open /dev/ck: permission denied: unknown\nRun 'docker run --help' for more information\n",
      spec);
  CHECK(other == "gpu2: Ray did not start: open /dev/ck: permission denied: unknown");
  // A mount refused for another reason: runc's reason, never Docker's help hint.
  auto denied = explain_ray_failure(
      "gpu2",
      "docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: "
      "unable to start container process: error during container init: error mounting \"/x\" to rootfs at \"/y\": "
      "stat /x: permission denied: unknown\nRun 'docker run --help' for more information\n",
      spec);
  CHECK(denied == "gpu2: Docker cannot mount /x at /y (stat /x: permission denied); fix that path on gpu2, or the spec's volumes");
}

TEST_CASE("a node keeps the versions it was started with, for status when no venv says them", "[ray][status]") {
  RayClusterSpec spec;
  spec.name = "unitver";
  spec.runtime = RayRuntimeKind::bare;
  std::string dir = "/tmp/ck-unit-venv-ver", tmp = "/tmp/ck-ray-unitver";
  std::filesystem::remove_all(tmp);
  // No dist-info: the venv's files do not say Ray's version.
  spec.ray_command = fake_venv(dir, "echo 'SUCC scripts.py:1085 -- Ray runtime started.'; exit 0", false);
  auto plan = plan_ray_node(spec, "h1", true, "127.0.0.1", "lo", 2u, false, "127.0.0.1");
  CHECK_THAT(run_sh(ray_start_script(spec, plan, false, "3.11.7 2.60.0")), Contains("@@ck-ray-started"));
  auto seen = parse_ray_probe("h1", run_sh(ray_node_state_script(spec) + "echo @@ck-ray-end\n"));
  CHECK(seen.python_version == "3.11.7");
  CHECK(seen.ray_version == "2.60.0");
  // The venv's files, when they say both, win: what is installed now.
  spec.ray_command = fake_venv(dir, "exit 0", true);
  auto installed = parse_ray_probe("h1", run_sh(ray_node_state_script(spec) + "echo @@ck-ray-end\n"));
  CHECK(installed.ray_version == "2.99.1");
  // Docker: a label on the container, read by `docker inspect` with the state.
  RayClusterSpec d;
  d.name = "unitver";
  d.runtime = RayRuntimeKind::docker;
  d.image = "vllm/vllm-openai";
  auto dplan = plan_ray_node(d, "h1", true, "127.0.0.1", "lo", 2u, false, "127.0.0.1");
  CHECK_THAT(ray_start_script(d, dplan, false, "3.12.9 2.60.0"),
             Contains("'--label' 'clusterkit.ray.versions=3.12.9 2.60.0' '--entrypoint'"));
  CHECK_THAT(ray_node_state_script(d), Contains("clusterkit.ray.versions"));
  CHECK(ray_start_script(d, dplan, false).find("clusterkit.ray.versions") == std::string::npos);
  std::filesystem::remove_all(tmp);
  std::filesystem::remove_all(dir);
}
