// The seed's steps 2-3 with the async API and C++20 coroutines: a Ray head
// on gpu1 and a worker on gpu2, one container per host (`docker run --network
// host --shm-size 10.24g -v /mnt/Qwen:/models vllm/vllm-openai`, Ray started
// inside, as vLLM's run_cluster.sh does), then a wait until Ray itself
// reports every node and every GPU (the seed's `ray status` check: 4 GPUs),
// and the cluster's status. Run it again: a cluster already up as asked is
// left alone (every node "keep"). --down stops Ray and removes the containers.
//
//   example_ray_cluster                                  # examples/inventories/seed-cluster.yaml
//   example_ray_cluster --inventory cluster.yaml --models-dir /mnt/Qwen
//   example_ray_cluster --down
//
// Against the lab (real sshd hosts with their own Docker engines on this
// machine; root; see examples/python/ray_cluster.py for bringing it up):
//
//   sudo example_ray_cluster --inventory /run/clusterkit/lab-ck/inventory.yaml --models-dir /var/tmp/ck-models/Qwen
//
// What is SIMULATED in the lab: the GPUs. Its inventory declares 2 per host
// (`simulated: true`); they become Ray's *logical* GPU resource (`ray start
// --num-gpus=2`): Ray schedules on them, nothing computes on them, and the
// status says SIMULATED. The image is the lab's small Debian one with the
// Ray/vLLM venv mounted (vars.runtime_image, vars.serve_venv) instead of
// vllm/vllm-openai. The hosts, ssh, Docker, the containers and Ray itself are
// real.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "seed_cluster.hpp"

namespace asio = boost::asio;
using namespace clusterkit;

namespace {

asio::awaitable<int> up(RayCluster cluster) {
  auto progress = [](RayProgress const& p) {
    std::fprintf(stderr, "ray: %-13s %u/%u nodes, %g/%g GPUs  %s\n", p.phase.c_str(), p.alive_nodes, p.expected_nodes, p.gpus,
                 p.expected_gpus, p.message.c_str());
  };
  auto [ec, result] = co_await cluster.async_up(progress, asio::as_tuple(asio::use_awaitable));
  for (auto const& n : result.nodes)
    std::printf("%-10s %-8s %s\n", n.host.c_str(), std::string(to_string(n.action)).c_str(), n.message.c_str());
  std::fprintf(stderr, "%s (%.1f s)\n", result.message.c_str(), result.total_ms / 1000);
  if (ec) co_return 1;
  // What `ray status` shows, judged against what was asked: every node alive, every GPU there.
  auto [sec, status] = co_await cluster.async_status(asio::as_tuple(asio::use_awaitable));
  std::printf("%s", status.summary().c_str());
  for (auto const& p : status.problems) std::fprintf(stderr, "problem: %s\n", p.c_str());
  co_return !sec && status.healthy ? 0 : 1;
}

asio::awaitable<int> down(RayCluster cluster) {
  auto [ec, outcomes] = co_await cluster.async_down(asio::as_tuple(asio::use_awaitable));
  for (auto const& d : outcomes) std::printf("%-10s %s\n", d.host.c_str(), d.message.c_str());
  co_return ec ? 1 : 0;
}

void usage(char const* argv0) {
  std::printf("usage: %s [--inventory PATH] [--name NAME] [--models-dir DIR] [--down]\n"
              "  The seed's Ray cluster (head gpu1, worker gpu2, vllm/vllm-openai, -v /mnt/Qwen:/models)\n"
              "  up, then its status. Default inventory: %s\n",
              argv0, CK_EXAMPLES_DIR "/inventories/seed-cluster.yaml");
}

}  // namespace

int main(int argc, char** argv) {
  std::string inventory_path = CK_EXAMPLES_DIR "/inventories/seed-cluster.yaml";
  std::string name = "ck", models_dir = "/mnt/Qwen";
  bool take_down = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(argv[0]);
      return 0;
    }
    if (a == "--inventory" || a == "-i") inventory_path = value();
    else if (a == "--name") name = value();
    else if (a == "--models-dir") models_dir = value();
    else if (a == "--down") take_down = true;
    else {
      usage(argv[0]);
      return 2;
    }
  }
  asio::io_context io;
  try {
    auto cluster = seed::seed_cluster(io.get_executor(), Inventory::load(inventory_path), name, models_dir);
    std::fprintf(stderr, "cluster %s: head %s, %zu hosts%s\n", cluster.spec().name.c_str(), cluster.head().host.name().c_str(),
                 cluster.hosts().size(), seed::is_lab(cluster) ? " (SIMULATED GPUs)" : "");
    int rc = 1;
    asio::co_spawn(io, take_down ? down(cluster) : up(cluster), [&](std::exception_ptr e, int r) {
      if (e) std::rethrow_exception(e);
      rc = r;
    });
    io.run();
    return rc;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
