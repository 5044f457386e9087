#include "clusterkit/fanout.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <memory>

#include "core/completion.hpp"

namespace clusterkit::detail {
namespace {

struct FanoutOp : std::enable_shared_from_this<FanoutOp> {
  std::vector<Host> hosts;
  Command command;
  FanoutOptions options;
  asio::any_completion_handler<FanoutSignature> handler;
  asio::strand<asio::any_io_executor> strand;

  std::vector<HostOutcome> outcomes;
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::vector<bool> started;
  std::size_t next = 0, running = 0;
  bool stopping = false, finished = false;
  asio::cancellation_type stop_type = asio::cancellation_type::partial;

  FanoutOp(std::vector<Host> h, Command c, FanoutOptions o, asio::any_completion_handler<FanoutSignature> hd)
      : hosts(std::move(h)),
        command(std::move(c)),
        options(std::move(o)),
        handler(std::move(hd)),
        strand(asio::make_strand(hosts.front().get_executor())),
        outcomes(hosts.size()),
        started(hosts.size(), false) {
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      outcomes[i].host = hosts[i].name();
      signals.push_back(std::make_unique<asio::cancellation_signal>());
    }
    if (options.concurrency == 0) options.concurrency = 1;
  }

  void start() {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<FanoutOp>(shared_from_this())](asio::cancellation_type type) {
        if (auto self = weak.lock()) asio::dispatch(self->strand, [self, type] { self->stop_all(type); });
      });
    }
    launch();
  }

  void launch() {
    while (!stopping && running < options.concurrency && next < hosts.size()) {
      auto i = next++;
      ++running;
      started[i] = true;
      RunOptions run = options.run;
      if (options.on_line) {
        run.on_line = [cb = options.on_line, name = hosts[i].name()](OutputLine const& line) { cb(name, line); };
      } else {
        run.on_line = nullptr;
      }
      hosts[i].async_run(command, std::move(run),
                         asio::bind_cancellation_slot(
                             signals[i]->slot(),
                             asio::bind_executor(strand, [self = shared_from_this(), i](std::error_code ec, RunResult r) {
                               self->on_host_done(i, ec, std::move(r));
                             })));
    }
    maybe_complete();
  }

  void on_host_done(std::size_t i, std::error_code ec, RunResult r) {
    --running;
    outcomes[i].error = ec;
    outcomes[i].result = std::move(r);
    if (options.fail_fast && !outcomes[i].success() && !stopping) stop_all(asio::cancellation_type::partial);
    launch();
  }

  void stop_all(asio::cancellation_type type) {
    if (stopping) return;
    stopping = true;
    stop_type = type;
    for (std::size_t i = 0; i < hosts.size(); ++i)
      if (started[i]) signals[i]->emit(type);
    maybe_complete();
  }

  void maybe_complete() {
    if (finished || running > 0) return;
    if (!stopping && next < hosts.size()) return;
    finished = true;
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      if (!started[i]) {
        outcomes[i].error = make_error_code(errc::skipped);
        outcomes[i].result.diagnostic = hosts[i].name() + ": not run, because another host failed first (fail-fast)";
      }
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    complete_on_associated(std::move(handler), strand, std::move(outcomes));
  }
};

}  // namespace

void start_fanout(std::vector<Host> hosts, Command command, FanoutOptions options,
                  asio::any_completion_handler<FanoutSignature> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<HostOutcome>{});
    return;
  }
  auto op = std::make_shared<FanoutOp>(std::move(hosts), std::move(command), std::move(options), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace clusterkit::detail
