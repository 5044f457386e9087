// `clusterkit ray up|status|down|logs`: the seed's Ray cluster (a head on one
// GPU server, a worker on every other), in Docker or bare, on an inventory.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <mutex>

#include "clusterkit/ray_cluster.hpp"
#include "common.hpp"
#include "core/block_on.hpp"

namespace clusterkit::cli {
namespace {

struct RayArgs {
  std::string group = "all";
  std::string head;
  std::string name = "ck";
  std::string runtime;
  std::string image;
  std::string shm_size;
  bool ipc_host = false;
  std::string docker_gpus;
  std::vector<std::string> volumes;
  std::string ray_command;
  std::string venv;
  int port = 0;
  int dashboard_port = 0;
  std::vector<std::string> env;
  double num_cpus = 0;
  std::uint64_t object_store_memory = 0;
  double timeout = 0;
  std::vector<std::string> ray_args;
  std::vector<std::string> docker_args;
  // logs
  unsigned tail = 200;
  std::string host;
};

void add_selection(CLI::App* sub, RayArgs& a) {
  sub->add_option("-g,--group", a.group, "Ray's hosts: all, a group, role:NAME or a list (storage/download-only hosts are left out)")
      ->capture_default_str();
  sub->add_option("--head", a.head, "The head (default: the host with role head, else the first)");
  sub->add_option("--name", a.name, "Cluster name: the container ck-ray-NAME, the temp dir /tmp/ck-ray-NAME")->capture_default_str();
  sub->add_option("--runtime", a.runtime, "docker (default) or bare (default: the inventory's vars.runtime)")
      ->check(CLI::IsMember({"docker", "bare"}));
  sub->add_option("--image", a.image, "docker: the image (default: vars.runtime_image, else vllm/vllm-openai)");
  sub->add_option("--venv", a.venv, "A venv with Ray (and vLLM) at the same path on every host (vars.serve_venv); "
                                    "docker mounts it read-only");
  sub->add_option("--ray", a.ray_command, "The ray program (default: ray from PATH, or VENV/bin/ray)");
  sub->add_option("--port", a.port, "The head's GCS port (default 6379)");
  sub->add_option("--dashboard-port", a.dashboard_port, "The dashboard's port, on the head's loopback (default 8265)");
}

void add_start_options(CLI::App* sub, RayArgs& a) {
  sub->add_option("--shm-size", a.shm_size, "docker: --shm-size (default 10.24g, as the seed)");
  sub->add_flag("--ipc-host", a.ipc_host, "docker: --ipc host instead of a private /dev/shm");
  sub->add_option("--docker-gpus", a.docker_gpus, "docker: --gpus all on auto (hosts with GPUs), all, none")
      ->check(CLI::IsMember({"auto", "all", "none"}));
  sub->add_option("-v,--volume", a.volumes, "docker: HOST:CONTAINER[:ro] (repeatable), e.g. /mnt/Qwen:/models");
  sub->add_option("-e,--env", a.env, "KEY=VALUE set in every node's environment when it starts (repeatable)");
  sub->add_option("--num-cpus", a.num_cpus, "Ray's CPU count per node (default: Ray counts them)");
  sub->add_option("--object-store-memory", a.object_store_memory, "Bytes of Ray's object store per node");
  sub->add_option("--timeout", a.timeout, "Seconds to wait for every node and GPU to show up (default 180)");
  sub->add_option("--ray-arg", a.ray_args, "An extra `ray start` argument (repeatable)");
  sub->add_option("--docker-arg", a.docker_args, "An extra `docker run` argument (repeatable)");
}

[[noreturn]] void bad(std::string const& message) { throw Error(make_error_code(errc::invalid_argument), message); }

/// The spec: library defaults, then the inventory's vars (the head's), then
/// the flags given.
RayClusterSpec spec_of(RayArgs const& a, InventoryHost const& head_host) {
  RayClusterSpec spec;
  auto vars = head_host.extra.contains("vars") ? head_host.extra.at("vars") : nlohmann::json();
  spec = ray_spec_from_vars(vars, spec);
  spec.name = a.name;
  if (!a.runtime.empty()) spec.runtime = *ray_runtime_from_string(a.runtime);
  if (!a.image.empty()) spec.image = a.image;
  if (!a.venv.empty()) spec = ray_spec_from_vars(nlohmann::json{{"serve_venv", a.venv}}, spec);
  if (!a.ray_command.empty()) spec.ray_command = a.ray_command;
  if (a.port) spec.port = a.port;
  if (a.dashboard_port) spec.dashboard_port = a.dashboard_port;
  if (!a.shm_size.empty()) spec.shm_size = a.shm_size;
  if (a.ipc_host) spec.ipc_host = true;
  if (!a.docker_gpus.empty()) spec.docker_gpus = a.docker_gpus;
  for (auto const& v : a.volumes) {
    auto first = v.find(':');
    if (first == std::string::npos) bad("--volume '" + v + "' is not HOST:CONTAINER[:ro]");
    auto second = v.find(':', first + 1);
    VolumeMount m{v.substr(0, first), v.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1), false};
    if (second != std::string::npos) {
      if (v.substr(second + 1) != "ro") bad("--volume '" + v + "': the only option after the second ':' is ro");
      m.read_only = true;
    }
    spec.volumes.push_back(m);
  }
  for (auto const& kv : a.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) bad("--env '" + kv + "' is not KEY=VALUE");
    spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (a.num_cpus < 0) bad("--num-cpus must be positive");
  if (a.num_cpus > 0) spec.num_cpus = a.num_cpus;
  if (a.object_store_memory) spec.object_store_memory = a.object_store_memory;
  if (a.timeout < 0 || a.timeout > 86400) bad("--timeout must be between 0 and 86400 seconds");
  if (a.timeout > 0) spec.join_timeout = std::chrono::seconds(static_cast<long long>(a.timeout));
  spec.ray_start_args = a.ray_args;
  spec.docker_args = a.docker_args;
  validate(spec);
  return spec;
}

RayCluster cluster_of(GlobalOptions const& g, RayArgs const& a, Runtime& rt) {
  auto inventory = load_inventory(g);
  auto selected = inventory.select(a.group);
  std::vector<Host> handles;
  for (auto const& h : selected) handles.push_back(rt.host(h.spec));
  auto hosts = ray_hosts_from_inventory(selected, handles, a.head);
  std::string head_name;
  for (auto const& r : hosts)
    if (r.head) head_name = r.host.name();
  InventoryHost const* head = &selected.front();
  for (auto const& h : selected)
    if (h.spec.name == head_name) head = &h;
  return RayCluster(spec_of(a, *head), std::move(hosts));
}

/// One progress line on stderr: redrawn in place on a terminal, printed when
/// it changes otherwise.
class ProgressLine {
public:
  void operator()(RayProgress const& p) {
    std::lock_guard lock(mutex_);
    char gpus[64];
    std::snprintf(gpus, sizeof gpus, "%g/%g", p.gpus, p.expected_gpus);
    std::string line = "ray: " + p.phase + ": " + std::to_string(p.alive_nodes) + "/" + std::to_string(p.expected_nodes) +
                       " nodes, " + gpus + " GPUs; " + p.message;
    if (line == last_) return;
    last_ = line;
    if (tty_)
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
  void end() {
    if (tty_ && !last_.empty()) std::fprintf(stderr, "\n");
  }

private:
  std::mutex mutex_;
  std::string last_;
  bool tty_ = ::isatty(2) != 0;
};

int print_up(GlobalOptions const& g, RayUpResult const& r, std::error_code ec) {
  if (g.json) {
    auto j = r.to_json();
    j["ok"] = !ec;
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return ec ? 1 : 0;
  }
  for (auto const& n : r.nodes)
    std::printf("%-12s %-8s %s%s\n", n.host.c_str(), std::string(to_string(n.action)).c_str(), n.error ? "FAILED: " : "",
                n.message.c_str());
  if (!ec) std::printf("%s", r.status.summary().c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%s (%.1f s)\n", r.message.c_str(), r.total_ms / 1000.0);
  return ec ? 1 : 0;
}

}  // namespace

void register_ray(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* ray = app.add_subcommand("ray", "The Ray cluster: a head and a worker per GPU host, in Docker or bare");
  ray->require_subcommand(1);

  auto u = std::make_shared<RayArgs>();
  auto* up = ray->add_subcommand("up", "Start Ray on every host (head first), wait until Ray reports every node and GPU; "
                                       "a cluster already up as asked is left alone");
  add_selection(up, *u);
  add_start_options(up, *u);
  up->callback([&g, &action, u] {
    action = [&g, u] {
      Runtime rt;
      auto cluster = cluster_of(g, *u, rt);
      ProgressLine progress;
      auto [ec, result] = detail::block_on<std::error_code, RayUpResult>(rt.executor(), "ray up", [&](auto h) {
        cluster.async_up([&progress](RayProgress const& p) { progress(p); }, std::move(h));
      });
      progress.end();
      return print_up(g, result, ec);
    };
  });

  auto s = std::make_shared<RayArgs>();
  auto* status = ray->add_subcommand("status", "Nodes (alive, dead, missing), resources and versions, per host");
  add_selection(status, *s);
  status->callback([&g, &action, s] {
    action = [&g, s] {
      Runtime rt;
      auto cluster = cluster_of(g, *s, rt);
      auto [ec, st] = detail::block_on<std::error_code, RayClusterStatus>(rt.executor(), "ray status",
                                                                          [&](auto h) { cluster.async_status(std::move(h)); });
      if (g.json)
        std::cout << st.to_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
      else
        std::printf("%s", st.summary().c_str());
      return st.healthy && !ec ? 0 : 1;
    };
  });

  auto d = std::make_shared<RayArgs>();
  auto* down = ray->add_subcommand("down", "Stop Ray and remove its containers (or processes and temp dir) on every host");
  add_selection(down, *d);
  down->callback([&g, &action, d] {
    action = [&g, d] {
      Runtime rt;
      auto cluster = cluster_of(g, *d, rt);
      auto [ec, outs] = detail::block_on<std::error_code, std::vector<RayDownOutcome>>(
          rt.executor(), "ray down", [&](auto h) { cluster.async_down(std::move(h)); });
      if (g.json) {
        nlohmann::json j = nlohmann::json::array();
        for (auto const& o : outs)
          j.push_back({{"host", o.host}, {"removed", o.removed}, {"message", o.message}, {"ok", !o.error}});
        std::cout << j.dump(2) << std::endl;
      } else {
        for (auto const& o : outs) std::printf("%-12s %s%s\n", o.host.c_str(), o.error ? "FAILED: " : "", o.message.c_str());
      }
      return ec ? 1 : 0;
    };
  });

  auto l = std::make_shared<RayArgs>();
  auto* logs = ray->add_subcommand("logs", "Each node's output and Ray's raylet/GCS logs");
  add_selection(logs, *l);
  logs->add_option("--tail", l->tail, "Last lines of each log (0: all)")->capture_default_str();
  logs->add_option("--host", l->host, "Only this host");
  logs->callback([&g, &action, l] {
    action = [&g, l] {
      Runtime rt;
      auto cluster = cluster_of(g, *l, rt);
      RayLogsOptions o;
      o.tail = l->tail;
      auto [ec, all] = detail::block_on<std::error_code, std::vector<RayHostLogs>>(
          rt.executor(), "ray logs", [&](auto h) { cluster.async_logs(o, std::move(h)); });
      bool found = l->host.empty();
      for (auto const& x : all) {
        if (!l->host.empty() && x.host != l->host) continue;
        found = true;
        std::printf("===== %s =====\n%s", x.host.c_str(), x.text.c_str());
        if (x.error) std::fprintf(stderr, "%s\n", x.message.c_str());
      }
      if (!found) bad("--host " + l->host + " is not one of the cluster's hosts");
      return ec ? 1 : 0;
    };
  });
}

}  // namespace clusterkit::cli
