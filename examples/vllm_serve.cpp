// The seed's steps 4-5 with the async API and C++20 coroutines: `vllm serve`
// with tensor parallel 2 x pipeline parallel 2 over the seed's Ray cluster
// (the engine on the head, in its container), followed from its own log with
// a progress line until /health, /v1/models and one streamed token answer,
// then one chat through OpenAIClient with the key stored for the endpoint
// (stored_api_key_for: the engine's key is generated on the first launch,
// kept mode 0600 on this machine, handed to the engine through a 0600 file
// and VLLM_API_KEY, never an argument, and never printed here).
//
//   example_vllm_serve                                   # Qwen2.5-72B-Instruct on examples/inventories/seed-cluster.yaml
//   example_vllm_serve --inventory cluster.yaml --model /models/Qwen2___5-72B-Instruct --tp 2 --pp 2
//   example_vllm_serve --down                            # stop the engine (Ray stays: example_ray_cluster --down)
//   example_vllm_serve --follow                          # the engine's log as it grows, until Ctrl-C
//
// The Ray cluster is the one example_ray_cluster brings up (the same spec,
// seed_cluster.hpp: kept when already up, started when not).
//
// Against the lab (see examples/python/vllm_serve.py for bringing it up and
// making the tiny model):
//
//   sudo example_vllm_serve --inventory /run/clusterkit/lab-ck/inventory.yaml --models-dir /var/tmp/ck-models/Qwen
//
// What is SIMULATED in the lab: the GPUs. The inventory declares 2 per host
// (`simulated: true`); Ray counts them as logical GPUs, and the engine is
// vLLM's *CPU* build from the lab's venv, patched (lab only, by
// scripts/install-serving.sh) to take Ray's logical GPUs as its devices: TP 2
// x PP 2 really runs as 4 CPU workers, 2 per host. The model is the tiny
// random Qwen2 of tests/fixtures/make_tiny_qwen2.py (served as "tiny": its
// answers are random words), with --max-model-len 512 and --dtype bfloat16.
// Everything else (ssh, Docker, Ray, vLLM's API server, the key, the HTTP
// checks, the chat) is the real thing.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "seed_cluster.hpp"

namespace asio = boost::asio;
using namespace clusterkit;

namespace {

struct Args {
  std::string inventory = CK_EXAMPLES_DIR "/inventories/seed-cluster.yaml";
  std::string name = "ck";
  std::string models_dir = "/mnt/Qwen";
  std::string model;              // default: the seed's, or the lab's tiny one
  std::string served_model_name;  // default: qwen2.5-72b-instruct, or tiny
  unsigned tp = 2, pp = 2;
  std::string prompt = "Who are you?";
  bool down = false;
  bool follow = false;
};

VllmServeSpec engine_spec(Args const& a, RayCluster const& cluster) {
  bool const lab = seed::is_lab(cluster);
  VllmServeSpec spec;
  spec.name = a.name;
  spec.model = !a.model.empty() ? a.model : lab ? "/models/Tiny2___5-4M-Instruct" : "/models/Qwen2___5-72B-Instruct";
  spec.served_model_name = !a.served_model_name.empty() ? a.served_model_name : lab ? "tiny" : "qwen2.5-72b-instruct";
  spec.tensor_parallel = a.tp;
  spec.pipeline_parallel = a.pp;
  // The vllm beside the cluster's ray when that is a venv's (as `clusterkit serve`).
  auto const& ray = cluster.spec().ray_command;
  if (ray.find('/') != std::string::npos) spec.vllm_command = ray.substr(0, ray.rfind('/')) + "/vllm";
  if (lab) {
    // vLLM's CPU build on logical GPUs (tests/fixtures/vllm-cpu/README.md).
    spec.max_model_len = 512;
    spec.dtype = "bfloat16";
    spec.env = {{"HF_HUB_OFFLINE", "1"}, {"VLLM_CPU_KVCACHE_SPACE", "1"}, {"OMP_NUM_THREADS", "1"}};
  }
  return spec;
}

asio::awaitable<int> serve_and_chat(RayCluster cluster, VllmServe serve, std::string prompt) {
  // The Ray cluster first (left alone when it is already up as asked).
  auto [rec, ray] = co_await cluster.async_up({}, asio::as_tuple(asio::use_awaitable));
  std::fprintf(stderr, "%s\n", ray.message.c_str());
  if (rec) co_return 1;

  auto [uec, launched] = co_await serve.async_up(asio::as_tuple(asio::use_awaitable));
  std::fprintf(stderr, "%s\n", launched.message.c_str());
  if (uec) co_return 1;

  // Minutes on the seed (weights, KV cache, CUDA graphs): one line per phase change.
  std::string last_phase;
  auto progress = [&last_phase](VllmProgress const& p) {
    if (p.phase == last_phase) return;
    last_phase = p.phase;
    std::fprintf(stderr, "vllm: %6.0f s %-10s %s\n", p.elapsed_seconds, p.phase.c_str(), p.message.c_str());
  };
  auto [rdec, ready] = co_await serve.async_wait_ready(progress, asio::as_tuple(asio::use_awaitable));
  std::printf("%s\n", ready.message.c_str());  // on failure: the log's diagnosis and the fix
  if (rdec) co_return 1;
  std::printf("endpoint:  %s/v1  (model %s)\n", ready.endpoint.c_str(), ready.served_model_name.c_str());
  std::printf("api key:   %s (mode 0600)\n", launched.api_key_file.c_str());

  // A client finds the key by the endpoint alone, as `clusterkit chat` does.
  ClientOptions options;
  options.base_url = ready.endpoint;
  options.api_key = stored_api_key_for(ready.endpoint);
  OpenAIClient client(co_await asio::this_coro::executor, options);
  auto request = ChatRequest::simple(ready.served_model_name, prompt);
  request.max_tokens = 64;
  auto [cec, answer] = co_await client.async_chat(request, asio::as_tuple(asio::use_awaitable));
  if (cec) {
    std::fprintf(stderr, "chat failed: %s\n", cec.message().c_str());
    co_return 1;
  }
  std::printf("chat:      %s\n", answer.text().c_str());
  if (answer.usage)
    std::printf("usage:     %lld prompt + %lld completion tokens\n", static_cast<long long>(answer.usage->prompt_tokens),
                static_cast<long long>(answer.usage->completion_tokens));
  co_return 0;
}

asio::awaitable<int> take_down(VllmServe serve) {
  auto [ec, r] = co_await serve.async_down(asio::as_tuple(asio::use_awaitable));
  std::printf("%s\n", r.message.c_str());
  co_return ec ? 1 : 0;
}

// --follow: the log's last lines, then each one as the engine writes it,
// until Ctrl-C, which cancels the operation (nothing is left on the head).
asio::awaitable<int> follow_log(VllmServe serve) {
  VllmLogsOptions o;
  o.tail = 20;
  o.follow = true;
  o.on_line = [](std::string_view line) {
    std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
    std::fflush(stdout);
  };
  asio::signal_set ctrl_c(co_await asio::this_coro::executor, SIGINT);
  asio::cancellation_signal stop;
  ctrl_c.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) stop.emit(asio::cancellation_type::terminal);
  });
  auto [ec, text] = co_await serve.async_logs(o, asio::bind_cancellation_slot(stop.slot(), asio::as_tuple(asio::use_awaitable)));
  ctrl_c.cancel();
  if (ec == make_error_code(errc::cancelled)) co_return 130;
  std::fprintf(stderr, "%s\n", text.c_str());
  co_return 1;
}

void usage(char const* argv0) {
  std::printf("usage: %s [--inventory PATH] [--name NAME] [--models-dir DIR] [--model PATH] [--served-model-name NAME]\n"
              "          [--tp N] [--pp N] [--prompt TEXT] [--down | --follow]\n"
              "  The seed's `vllm serve` (TP 2 x PP 2 over Ray) on the seed's Ray cluster, then one chat.\n"
              "  Default inventory: %s\n",
              argv0, CK_EXAMPLES_DIR "/inventories/seed-cluster.yaml");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto count = [&]() -> unsigned {
      auto text = value();
      char* end = nullptr;
      auto n = std::strtoul(text.c_str(), &end, 10);
      if (text.empty() || *end || n < 1 || n > 64) {
        std::fprintf(stderr, "%s must be a number from 1 to 64, not '%s'\n", arg.c_str(), text.c_str());
        std::exit(2);
      }
      return static_cast<unsigned>(n);
    };
    if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      return 0;
    }
    if (arg == "--inventory" || arg == "-i") a.inventory = value();
    else if (arg == "--name") a.name = value();
    else if (arg == "--models-dir") a.models_dir = value();
    else if (arg == "--model") a.model = value();
    else if (arg == "--served-model-name") a.served_model_name = value();
    else if (arg == "--tp") a.tp = count();
    else if (arg == "--pp") a.pp = count();
    else if (arg == "--prompt") a.prompt = value();
    else if (arg == "--down") a.down = true;
    else if (arg == "--follow") a.follow = true;
    else {
      usage(argv[0]);
      return 2;
    }
  }
  asio::io_context io;
  try {
    auto cluster = seed::seed_cluster(io.get_executor(), Inventory::load(a.inventory), a.name, a.models_dir);
    VllmServe serve(engine_spec(a, cluster), cluster);
    std::fprintf(stderr, "engine %s: %s, TP %u x PP %u on %s (head %s)%s\n", serve.spec().name.c_str(), serve.spec().model.c_str(),
                 serve.spec().tensor_parallel, serve.spec().pipeline_parallel, serve.endpoint().c_str(),
                 cluster.head().host.name().c_str(), seed::is_lab(cluster) ? ", SIMULATED GPUs" : "");
    int rc = 1;
    asio::co_spawn(io, a.down ? take_down(serve) : a.follow ? follow_log(serve) : serve_and_chat(cluster, serve, a.prompt),
                   [&](std::exception_ptr e, int r) {
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
