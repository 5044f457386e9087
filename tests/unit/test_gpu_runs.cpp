// The real GPU runs recorded in docs/gpu-runs/: `clusterkit facts` and
// `clusterkit nccl-check` were run on machines with 2 and 4 NVIDIA H100s
// (see each folder's machine.txt). Here every field clusterkit parsed there
// (facts.json) is checked against the raw output captured beside it: the
// nvidia-smi CSV, `nvidia-smi -q -x`, `nvidia-smi -L`, `topo -m` and the
// nvidia-smi banner.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "clusterkit/facts.hpp"

using namespace clusterkit;
namespace fs = std::filesystem;

namespace {

fs::path runs_dir() { return fs::path(CK_SOURCE_DIR) / "docs" / "gpu-runs"; }

std::string slurp(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool xml_has(std::string const& xml, std::string const& tag, std::string const& value) {
  return xml.find("<" + tag + ">" + value + "</" + tag + ">") != std::string::npos;
}

}  // namespace

TEST_CASE("facts parsed on real GPU machines match the raw nvidia-smi output", "[facts][gpu]") {
  std::size_t runs = 0;
  for (auto const& entry : fs::directory_iterator(runs_dir())) {
    auto dir = entry.path();
    INFO("run " << dir.filename().string());
    ++runs;
    auto facts = nlohmann::json::parse(slurp(dir / "facts.json")).at(0);
    auto const& gpus = facts.at("gpus");
    REQUIRE(gpus.size() >= 2);
    CHECK_FALSE(facts.at("gpus_simulated").get<bool>());

    // The CSV query, parsed again here, gives the same GPUs.
    auto parsed = parse_gpu_query(slurp(dir / "query.csv"));
    REQUIRE(parsed.size() == gpus.size());
    auto xml = slurp(dir / "q.xml");
    auto list = slurp(dir / "list.txt");
    for (std::size_t i = 0; i < parsed.size(); ++i) {
      auto const& g = gpus[i];
      CHECK(g.at("index") == parsed[i].index);
      CHECK(g.at("uuid") == parsed[i].uuid);
      CHECK(g.at("name") == parsed[i].name);
      CHECK(g.at("memory_total_bytes") == parsed[i].memory_total_bytes);
      CHECK(g.at("memory_used_bytes") == parsed[i].memory_used_bytes);
      CHECK(g.at("driver_version") == parsed[i].driver_version);
      CHECK(g.at("compute_capability") == parsed[i].compute_capability);
      CHECK(g.at("pci_bus_id") == parsed[i].pci_bus_id);
      // ...and an independent source, the XML report, agrees.
      CHECK(xml_has(xml, "uuid", g.at("uuid").get<std::string>()));
      CHECK(xml_has(xml, "product_name", g.at("name").get<std::string>()));
      CHECK(xml_has(xml, "driver_version", g.at("driver_version").get<std::string>()));
      CHECK(xml_has(xml, "pci_bus_id", g.at("pci_bus_id").get<std::string>()));
      CHECK(xml_has(xml, "total", std::to_string(g.at("memory_total_bytes").get<std::uint64_t>() >> 20) + " MiB"));
      CHECK(list.find(g.at("uuid").get<std::string>()) != std::string::npos);
    }

    auto header = parse_nvidia_smi_header(slurp(dir / "nvidia-smi.txt"));
    CHECK(facts.at("driver_version") == header.driver_version);
    CHECK(facts.at("cuda_version") == header.cuda_version);
    CHECK(xml_has(xml, "cuda_version", header.cuda_version));

    auto topo = parse_gpu_topology(slurp(dir / "topo.txt"));
    CHECK(facts.at("topology").at("devices") == topo.devices);
    CHECK(facts.at("topology").at("links") == topo.links);
    CHECK(topo.all_gpus_nvlinked());

    // The NCCL/Gloo check ran on every GPU and reported bandwidth.
    auto nccl = nlohmann::json::parse(slurp(dir / "nccl-check.json"));
    CHECK(nccl.at("ok") == true);
    CHECK(nccl.at("nccl_ok") == true);
    CHECK(nccl.at("gloo_ok") == true);
    CHECK(nccl.at("world_size") == gpus.size());
    REQUIRE_FALSE(nccl.at("bandwidth").empty());
    for (auto const& b : nccl.at("bandwidth")) CHECK(b.at("busbw_gbps").get<double>() > 0);
  }
  CHECK(runs >= 2);
}
