// Load an OpenAI-compatible endpoint (vLLM) with the library's benchmark and
// print the report `clusterkit bench` prints. The run goes on a thread of its
// own (async_run_bench); Ctrl-C cancels it, and what was measured until then
// is still reported.
//
//   example_bench http://gpu1:8000 [concurrency] [requests]
//
// Against the simulator (a vLLM SIMULATOR, no model, no GPU):
//
//   llm-d-inference-sim --model tiny --port 8000 --force-dummy-tokenizer &
//   example_bench http://127.0.0.1:8000 8 200
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "clusterkit/bench.hpp"
#include "clusterkit/error.hpp"

namespace asio = boost::asio;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s URL [concurrency] [requests]\n", argv[0]);
    return 2;
  }
  clusterkit::BenchSpec spec;
  spec.url = argv[1];
  spec.concurrency = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 4;
  spec.requests = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 100;
  spec.max_tokens = 64;
  if (auto problems = spec.problems(); !problems.empty()) {
    for (auto const& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
    return 2;
  }

  asio::io_context io;
  asio::cancellation_signal stop;
  asio::signal_set ctrl_c(io, SIGINT);
  ctrl_c.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) stop.emit(asio::cancellation_type::terminal);
  });
  int rc = 0;
  clusterkit::async_run_bench(
      io.get_executor(), spec,
      [](clusterkit::BenchProgress const& p) { std::fprintf(stderr, "\r%zu done, %zu in flight", p.completed, p.in_flight); },
      asio::bind_cancellation_slot(stop.slot(), [&](std::error_code ec, clusterkit::BenchResult result) {
        ctrl_c.cancel();
        std::fprintf(stderr, "\n");
        if (ec && ec != clusterkit::errc::cancelled) {
          std::fprintf(stderr, "bench: %s\n", result.message.c_str());
          rc = 1;
          return;
        }
        std::printf("%s", result.to_text().c_str());
        rc = result.summary.completed ? 0 : 1;
      }));
  io.run();
  return rc;
}
