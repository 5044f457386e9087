// The whole seed through the API: Qwen2.5-72B-Instruct on two servers with
// 2x L20 each (Ray head gpu1, worker gpu2, in Docker), downloaded on the CPU
// server cpu1 and copied into the NAS at /mnt, served by `vllm serve` with TP 2
// x PP 2 as qwen2.5-72b-instruct on port 8000, smoke-tested and benchmarked:
// one spec (examples/deployments/qwen72b-two-node.yaml), one call.
//
//   example_qwen72b_two_node                 # the plan: every step and command, nothing changed (the default)
//   example_qwen72b_two_node --up            # deploy (idempotent, resumable: run it again after a failure)
//   example_qwen72b_two_node --status        # every layer: NAS, model, Ray nodes, the engine
//   example_qwen72b_two_node --down          # remove the engine, Ray and the containers (NAS and model stay)
//   example_qwen72b_two_node SPEC --up       # another spec (examples/deployments/lab.yaml: the same on the lab)
//
// Everything runs on one io_context with C++20 coroutines (asio::use_awaitable);
// Ctrl-C cancels the operation in flight (the commands on the hosts are
// stopped; `--up` again picks up where it stopped). The same through the CLI:
// `clusterkit plan|up|status|down SPEC`; through Python:
// examples/python/qwen72b_two_node.py.
//
// examples/deployments/lab.yaml runs the same steps on the project's lab, where
// the GPUs (2 per host, Ray's logical GPUs; vLLM's CPU build) and the model hub
// (a local fake serving a tiny Qwen2) are SIMULATED; the record and the summary
// say so.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <clusterkit/clusterkit.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

namespace asio = boost::asio;
using namespace clusterkit;

namespace {

enum class Mode { plan, up, status, down };

asio::awaitable<int> plan(Deployment d) {
  auto [ec, plan] = co_await d.async_plan(asio::as_tuple(asio::use_awaitable));
  std::printf("%s", plan.text().c_str());
  co_return ec ? 1 : 0;
}

asio::awaitable<int> up(Deployment d) {
  // One line per step per host, as they happen.
  auto progress = [](DeploymentProgress const& p) {
    std::fprintf(stderr, "[%6.1fs] %-9s %-6s %-8s %s\n", p.elapsed_seconds, p.step.c_str(), p.host.c_str(), p.status.c_str(),
                 p.message.c_str());
  };
  auto [ec, record] = co_await d.async_up(progress, asio::as_tuple(asio::use_awaitable));
  // Success or not, the record says what happened, step by step.
  std::printf("%s", record.summary().c_str());
  std::printf("record:    %s\n", deployment_record_path(d.spec()).c_str());
  co_return ec ? 1 : 0;
}

asio::awaitable<int> status(Deployment d) {
  auto [ec, st] = co_await d.async_status(asio::as_tuple(asio::use_awaitable));
  std::printf("%s", st.summary().c_str());
  co_return !ec && st.state == "up" ? 0 : 1;
}

asio::awaitable<int> down(Deployment d, DeploymentDownOptions options) {
  auto [ec, r] = co_await d.async_down(options, asio::as_tuple(asio::use_awaitable));
  for (auto const& x : r.removed) std::printf("removed: %s\n", x.c_str());
  for (auto const& x : r.problems) std::fprintf(stderr, "problem: %s\n", x.c_str());
  co_return ec ? 1 : 0;
}

void usage(char const* argv0) {
  std::printf("usage: %s [SPEC] [--plan | --up | --status | --down [--unmount-nas] [--remove-model]]\n"
              "  The seed (Qwen2.5-72B-Instruct, TP 2 x PP 2 on 2 servers x 2 L20) from one deployment spec.\n"
              "  Default SPEC: %s; default action: --plan (a dry run).\n",
              argv0, CK_EXAMPLES_DIR "/deployments/qwen72b-two-node.yaml");
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec_path = CK_EXAMPLES_DIR "/deployments/qwen72b-two-node.yaml";
  Mode mode = Mode::plan;
  DeploymentDownOptions down_options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(argv[0]);
      return 0;
    }
    if (a == "--plan") mode = Mode::plan;
    else if (a == "--up") mode = Mode::up;
    else if (a == "--status") mode = Mode::status;
    else if (a == "--down") mode = Mode::down;
    else if (a == "--unmount-nas") down_options.unmount_nas = true;
    else if (a == "--remove-model") down_options.remove_model = true;
    else if (!a.empty() && a[0] != '-') spec_path = a;
    else {
      usage(argv[0]);
      return 2;
    }
  }

  asio::io_context io;
  try {
    // Every mistake of the spec at once (file:line:column; did you mean ...), before anything starts.
    Deployment d(io.get_executor(), load_deployment_spec(spec_path));
    auto const& s = d.spec();
    std::fprintf(stderr, "deployment %s: %s on %s (head) + %zu worker(s), TP %s x PP %s, downloaded on %s\n", s.name.c_str(),
                 s.model.id.c_str(), s.head.c_str(), s.workers.size(),
                 s.serve.tensor_parallel ? std::to_string(s.serve.tensor_parallel).c_str() : "auto",
                 s.serve.pipeline_parallel ? std::to_string(s.serve.pipeline_parallel).c_str() : "auto",
                 d.download_host().empty() ? "(nowhere: already there)" : d.download_host().c_str());

    // Ctrl-C cancels the operation in flight: the commands on the hosts are stopped.
    asio::cancellation_signal cancel;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int) {
      if (!ec) cancel.emit(asio::cancellation_type::terminal);
    });

    asio::awaitable<int> work = mode == Mode::up       ? up(d)
                                : mode == Mode::status ? status(d)
                                : mode == Mode::down   ? down(d, down_options)
                                                       : plan(d);
    int rc = 1;
    asio::co_spawn(io, std::move(work), asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, int r) {
                     signals.cancel();
                     if (e) std::rethrow_exception(e);
                     rc = r;
                   }));
    io.run();
    return rc;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
