// The seed's step 1 with the async API and C++20 coroutines: download a
// model on one host, copy it into the NAS, and check every GPU host sees it
// whole, with progress as it goes.
//
//   example_model_store INVENTORY DOWNLOAD_HOST GPU_GROUP MODEL_ID [ENDPOINT [DOWNLOAD_ROOT]]
//   e.g. example_model_store inventory.yaml cpu1 gpu Qwen/Qwen2.5-72B-Instruct
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <clusterkit/clusterkit.hpp>
#include <cstdio>
#include <exception>

namespace asio = boost::asio;
using namespace clusterkit;

void show(TransferProgress const& p) {
  std::fprintf(stderr, "\r%s %s %.1f / %.1f MiB, %.1f MiB/s   ", p.host.c_str(), p.phase.c_str(),
               double(p.bytes_done) / (1 << 20), double(p.bytes_total) / (1 << 20), p.bytes_per_second / (1 << 20));
}

asio::awaitable<int> step_one(Host cpu, std::vector<Host> gpus, std::string model_id, std::string endpoint,
                              std::string download_root) {
  ModelStore store({.root = "/mnt", .container_root = "/models"});
  // Download to the CPU server's own disk first (as the seed does), ...
  DownloadSpec download{.model_id = model_id, .endpoint = endpoint};
  download.local_dir = download_root + "/" + modelscope_folder_name(model_id);
  auto [derr, got] = co_await store.async_download(cpu, download, show, asio::as_tuple(asio::use_awaitable));
  std::fprintf(stderr, "\n%s\n", got.message.c_str());
  if (derr) co_return 1;
  // ... then into the NAS, four rsync streams at once, ...
  SyncSpec sync{.source = got.dir, .destination = store.path_for(model_id), .streams = 4};
  auto [serr, copied] = co_await store.async_sync(cpu, sync, show, asio::as_tuple(asio::use_awaitable));
  std::fprintf(stderr, "\n%s\n", copied.message.c_str());
  if (serr) co_return 1;
  // ... and ask every GPU host what it sees there.
  RemoteVerifyOptions verify;
  verify.read_all = true;  // every byte, through each host's own mount
  auto seen = co_await store.async_verify(gpus, sync.destination, verify, asio::use_awaitable);
  int bad = 0;
  for (auto const& v : seen) {
    std::printf("%s: %s (container path %s)\n", v.host.c_str(), v.message.c_str(), v.container_path.c_str());
    bad += !v.ok();
  }
  co_return bad == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s INVENTORY DOWNLOAD_HOST GPU_GROUP MODEL_ID [ENDPOINT [DOWNLOAD_ROOT]]\n", argv[0]);
    return 2;
  }
  asio::io_context io;
  try {
    auto inventory = Inventory::load(argv[1]);
    auto cpu = Host(io.get_executor(), inventory.select(argv[2]).at(0).spec);
    std::vector<Host> gpus;
    for (auto const& h : inventory.select(argv[3])) gpus.emplace_back(io.get_executor(), h.spec);
    int rc = 1;
    asio::co_spawn(io, step_one(cpu, gpus, argv[4], argc > 5 ? argv[5] : "", argc > 6 ? argv[6] : "/data"), [&](std::exception_ptr e, int r) {
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
