// Fan-out: one operation per host, a bounded number in flight, outcomes in
// the hosts' order. One engine serves both commands and uploads.
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

/// `Outcome` has `host`, `error`, `result` (a `Result`) and `success()`.
template <class Outcome, class Result>
struct FanoutOp : std::enable_shared_from_this<FanoutOp<Outcome, Result>> {
  using Done = asio::any_completion_handler<void(std::error_code, Result)>;
  /// Starts host i's operation; it must complete `done`, and stop when the
  /// slot is signalled.
  using StartOne = std::function<void(std::size_t, Host&, asio::cancellation_slot, Done)>;

  std::vector<Host> hosts;
  std::size_t concurrency;
  bool fail_fast;
  char const* skipped_what;
  // Why the hosts not yet started were skipped; set by whoever stops.
  std::string stop_reason = "the operation was cancelled";
  StartOne start_one;
  asio::any_completion_handler<void(std::vector<Outcome>)> handler;
  asio::strand<asio::any_io_executor> strand;

  std::vector<Outcome> outcomes;
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::vector<bool> started;
  std::size_t next = 0, running = 0;
  bool stopping = false, finished = false;

  FanoutOp(std::vector<Host> h, std::size_t limit, bool fail, char const* what, StartOne s,
           asio::any_completion_handler<void(std::vector<Outcome>)> hd)
      : hosts(std::move(h)),
        concurrency(limit == 0 ? 1 : limit),
        fail_fast(fail),
        skipped_what(what),
        start_one(std::move(s)),
        handler(std::move(hd)),
        strand(asio::make_strand(hosts.front().get_executor())),
        outcomes(hosts.size()),
        started(hosts.size(), false) {
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      outcomes[i].host = hosts[i].name();
      signals.push_back(std::make_unique<asio::cancellation_signal>());
    }
  }

  void start() {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<FanoutOp>(this->shared_from_this())](asio::cancellation_type type) {
        if (auto self = weak.lock()) asio::dispatch(self->strand, [self, type] { self->stop_all(type); });
      });
    }
    launch();
  }

  void launch() {
    while (!stopping && running < concurrency && next < hosts.size()) {
      auto i = next++;
      ++running;
      started[i] = true;
      start_one(i, hosts[i], signals[i]->slot(),
                asio::bind_executor(strand, [self = this->shared_from_this(), i](std::error_code ec, Result r) {
                  self->on_host_done(i, ec, std::move(r));
                }));
    }
    maybe_complete();
  }

  void on_host_done(std::size_t i, std::error_code ec, Result r) {
    --running;
    outcomes[i].error = ec;
    outcomes[i].result = std::move(r);
    if (fail_fast && !outcomes[i].ok() && !stopping) {
      stop_reason = hosts[i].name() + " failed first (fail-fast)";
      stop_all(asio::cancellation_type::partial);
    }
    launch();
  }

  void stop_all(asio::cancellation_type type) {
    if (stopping) return;
    stopping = true;
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
        outcomes[i].result.message = hosts[i].name() + ": " + skipped_what + ", because " + stop_reason;
      }
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    complete_on_associated(std::move(handler), strand, std::move(outcomes));
  }
};

template <class Outcome, class Result>
void start_bounded(std::vector<Host> hosts, std::size_t concurrency, bool fail_fast, char const* skipped_what,
                   typename FanoutOp<Outcome, Result>::StartOne start_one,
                   asio::any_completion_handler<void(std::vector<Outcome>)> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<Outcome>{});
    return;
  }
  auto op = std::make_shared<FanoutOp<Outcome, Result>>(std::move(hosts), concurrency, fail_fast, skipped_what,
                                                        std::move(start_one), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace

void start_fanout(std::vector<Host> hosts, Command command, FanoutOptions options,
                  asio::any_completion_handler<FanoutSignature> handler) {
  auto const concurrency = options.concurrency;
  auto const fail_fast = options.fail_fast;
  auto start_one = [command = std::move(command), options = std::move(options)](
                       std::size_t, Host& host, asio::cancellation_slot slot,
                       asio::any_completion_handler<void(std::error_code, RunResult)> done) {
    RunOptions run = options.run;
    if (options.on_line)
      run.on_line = [cb = options.on_line, name = host.name()](OutputLine const& line) { cb(name, line); };
    else
      run.on_line = nullptr;
    host.async_run(command, std::move(run), asio::bind_cancellation_slot(slot, std::move(done)));
  };
  start_bounded<HostOutcome, RunResult>(std::move(hosts), concurrency, fail_fast, "not run", std::move(start_one),
                                        std::move(handler));
}

void start_upload_fanout(std::vector<Host> hosts, std::string local_path, std::string remote_path,
                         UploadFanoutOptions options, asio::any_completion_handler<UploadFanoutSignature> handler) {
  auto const concurrency = options.concurrency;
  auto const fail_fast = options.fail_fast;
  auto start_one = [from = std::move(local_path), to = std::move(remote_path), options = std::move(options)](
                       std::size_t, Host& host, asio::cancellation_slot slot,
                       asio::any_completion_handler<void(std::error_code, TransferResult)> done) {
    TransferOptions t = options.transfer;
    if (options.on_progress)
      t.on_progress = [cb = options.on_progress, name = host.name()](std::uint64_t d, std::uint64_t total) {
        cb(name, d, total);
      };
    else
      t.on_progress = nullptr;
    host.async_upload(from, to, std::move(t), asio::bind_cancellation_slot(slot, std::move(done)));
  };
  start_bounded<TransferOutcome, TransferResult>(std::move(hosts), concurrency, fail_fast, "not copied",
                                                 std::move(start_one), std::move(handler));
}

}  // namespace clusterkit::detail
