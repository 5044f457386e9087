// The seed's Ray cluster on an inventory, shared by examples/ray_cluster.cpp
// and examples/vllm_serve.cpp (and built exactly as examples/python/ray_cluster.py
// builds it, so that the C++ and the Python examples converge on the same
// nodes: a second `up` from either keeps them).
//
// The hosts with role head/worker/gpu (never the download box, never the NAS),
// the head the host with role head; one container ck-ray-NAME per host running
// vllm/vllm-openai with the model folder at /models (-v /mnt/Qwen:/models, as
// the seed); then what the inventory's vars add (runtime, runtime_image,
// serve_venv, shm_size, ipc_host, ray_port, ray_env). On a lab's inventory
// (its GPUs are declared `simulated: true`), the containers share /dev/shm,
// every node starts with the CPU engine's settings, and Ray's object store is
// kept to 256 MiB.
#pragma once

#include <clusterkit/clusterkit.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace seed {

using namespace clusterkit;

/// The inventory declares SIMULATED GPUs (a lab made by `clusterkit lab up --gpus N`).
inline bool is_lab(std::vector<RayHost> const& hosts) {
  return std::any_of(hosts.begin(), hosts.end(), [](RayHost const& h) { return h.gpus_simulated; });
}
inline bool is_lab(RayCluster const& cluster) { return is_lab(cluster.hosts()); }

inline RayCluster seed_cluster(asio::any_io_executor executor, Inventory const& inventory, std::string const& name = "ck",
                               std::string const& models_dir = "/mnt/Qwen") {
  auto selected = inventory.select("all");
  std::vector<Host> handles;
  for (auto const& h : selected) handles.emplace_back(executor, h.spec);
  auto hosts = ray_hosts_from_inventory(selected, std::move(handles));
  std::string head_name;
  for (auto const& r : hosts)
    if (r.head) head_name = r.host.name();
  nlohmann::json vars;
  for (auto const& h : selected)
    if (h.spec.name == head_name && h.extra.contains("vars")) vars = h.extra.at("vars");

  RayClusterSpec base;
  base.name = name;
  base.volumes.push_back({models_dir, "/models", false});
  auto spec = ray_spec_from_vars(vars, base);
  if (is_lab(hosts)) {
    spec.ipc_host = true;  // vLLM's CPU build passes tensors between stages through /dev/shm
    for (auto const& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"OMP_NUM_THREADS", "1"}, {"VLLM_CPU_KVCACHE_SPACE", "1"}, {"HF_HUB_OFFLINE", "1"}})
      spec.env[k] = v;
    spec.object_store_memory = std::uint64_t(256) << 20;
  }
  return RayCluster(std::move(spec), std::move(hosts));
}

}  // namespace seed
