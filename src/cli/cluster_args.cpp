// The Ray cluster as the CLI describes it (see cluster_args.hpp).
#include "cluster_args.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "clusterkit/vllm_serve.hpp"

namespace clusterkit::cli {


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

[[noreturn]] void bad_argument(std::string const& message) { throw Error(make_error_code(errc::invalid_argument), message); }

/// The spec: library defaults, then the inventory's vars (the head's), then
/// the flags given.
namespace {
RayClusterSpec spec_of(RayArgs const& a, InventoryHost const& head_host) {
  RayClusterSpec spec;
  auto vars = head_host.extra.contains("vars") ? head_host.extra.at("vars") : nlohmann::json();
  spec = ray_spec_from_vars(vars, spec);
  spec.name = a.name;
  if (!a.runtime.empty()) spec.runtime = *ray_runtime_from_string(a.runtime);
  if (!a.image.empty()) spec.image = a.image;
  if (!a.venv.empty()) spec = ray_spec_from_vars(nlohmann::json{{"serve_venv", a.venv}}, spec);
  if (!a.ray_command.empty()) spec.ray_command = a.ray_command;
  if (a.port) spec.port = *a.port;
  if (a.dashboard_port) spec.dashboard_port = *a.dashboard_port;
  if (!a.shm_size.empty()) spec.shm_size = a.shm_size;
  if (a.ipc_host) spec.ipc_host = true;
  if (!a.docker_gpus.empty()) spec.docker_gpus = a.docker_gpus;
  for (auto const& v : a.volumes) {
    auto first = v.find(':');
    if (first == std::string::npos) bad_argument("--volume '" + v + "' is not HOST:CONTAINER[:ro]");
    auto second = v.find(':', first + 1);
    VolumeMount m{v.substr(0, first), v.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1), false};
    if (second != std::string::npos) {
      if (v.substr(second + 1) != "ro") bad_argument("--volume '" + v + "': the only option after the second ':' is ro");
      m.read_only = true;
    }
    spec.volumes.push_back(m);
  }
  for (auto const& kv : a.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) bad_argument("--env '" + kv + "' is not KEY=VALUE");
    spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (a.num_cpus) spec.num_cpus = *a.num_cpus;  // the spec's checks name the range
  if (a.object_store_memory) spec.object_store_memory = *a.object_store_memory;
  if (auto t = checked_seconds(a.timeout, "--timeout", 1, 86400, "the default, 180"); t.count() > 0)
    spec.join_timeout = std::chrono::duration_cast<std::chrono::seconds>(t);
  spec.ray_start_args = a.ray_args;
  spec.docker_args = a.docker_args;
  validate(spec);
  return spec;
}

}  // namespace

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

std::string resolve_api_key(std::string const& given, std::string const& key_file, std::string const& url) {
  if (!given.empty()) return given;
  if (!key_file.empty()) {
    std::ifstream in(key_file);
    if (!in) bad_argument("--api-key-file " + key_file + " cannot be read");
    std::string line;
    while (std::getline(in, line))
      if (!line.empty() && line[0] != '#') return line;
    bad_argument("--api-key-file " + key_file + " holds no key");
  }
  return stored_api_key_for(url);
}

ProgressLine::ProgressLine() : tty_(::isatty(2) != 0) {}

void ProgressLine::show(std::string const& line) {
  std::lock_guard lock(mutex_);
  if (line == last_) return;
  last_ = line;
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

void ProgressLine::end() {
  std::lock_guard lock(mutex_);
  if (tty_ && !last_.empty()) std::fprintf(stderr, "\n");
  last_.clear();
}

}  // namespace clusterkit::cli
