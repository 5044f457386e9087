// The Ray cluster as the CLI describes it (`ray`, `serve`): which hosts, which
// runtime, and the flags that shape the nodes; shared by the verbs that need
// a RayCluster.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "clusterkit/ray_cluster.hpp"
#include "common.hpp"

namespace clusterkit::cli {

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
  // Unset unless given: `--port 0` is a mistake to name, not "the default".
  std::optional<int> port;
  std::optional<int> dashboard_port;
  std::vector<std::string> env;
  std::optional<double> num_cpus;
  std::optional<std::uint64_t> object_store_memory;
  double timeout = 0;
  std::vector<std::string> ray_args;
  std::vector<std::string> docker_args;
  // logs
  unsigned tail = 200;
  std::string host;
};

/// -g, --head, --name, --runtime, --image, --venv, --ray, --port.
void add_selection(CLI::App* sub, RayArgs& a);
/// What shapes a node: --shm-size, --ipc-host, -v, -e, ...
void add_start_options(CLI::App* sub, RayArgs& a);
/// The cluster: library defaults, then the inventory's vars (the head's),
/// then the flags given.
RayCluster cluster_of(GlobalOptions const& g, RayArgs const& a, Runtime& rt);

/// One progress line on stderr: redrawn in place on a terminal, printed
/// when it changes otherwise.
class ProgressLine {
public:
  void show(std::string const& line);
  void end();

private:
  std::mutex mutex_;
  std::string last_;
  bool tty_;

public:
  ProgressLine();
};

[[noreturn]] void bad_argument(std::string const& message);

}  // namespace clusterkit::cli
