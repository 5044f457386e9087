// Blocking on an asynchronous operation, for the plain-function forms of the
// API (`clusterkit::run`, `mount_nas`, `gather_facts`, ...). One helper, so
// that every blocking call refuses the one thing that would hang it for good:
// waiting on the thread whose event loop must run the operation.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace clusterkit::detail {

/// Marks the current thread, while the object lives, as one that runs
/// clusterkit's I/O (a Runtime's thread, the Python binding's). Blocking
/// calls made on such a thread are refused instead of waiting forever.
class IoThreadScope {
public:
  IoThreadScope();
  ~IoThreadScope();
  IoThreadScope(IoThreadScope const&) = delete;
  IoThreadScope& operator=(IoThreadScope const&) = delete;
};

/// True on a thread inside an IoThreadScope.
bool on_io_thread() noexcept;

/// True when the current thread is the one running `executor`'s work: a
/// marked I/O thread, or (for io_contexts and strands the caller owns) a
/// handler of that executor running right now.
bool running_in_this_thread(boost::asio::any_io_executor const& executor) noexcept;

/// Throws Error(errc::invalid_argument) naming `what` when waiting here would
/// deadlock (see running_in_this_thread).
void refuse_blocking_here(boost::asio::any_io_executor const& executor, std::string_view what);

/// The blocking forms' one rule (README, "Errors"): an operation that did not
/// do its job throws Error(ec) with its result's sentence, or the code's own
/// message when the result has none. Nothing when `ec` is clear.
void throw_if_failed(std::error_code ec, std::string const& message);

/// A stop token for every blocking call of the process: the CLI sets the one
/// its Ctrl-C (SIGINT, SIGTERM) requests; a library caller leaves it unset
/// and nothing changes. While one is set, block_on ties its operation to it:
/// a stop request cancels the operation (terminal, emitted on the
/// operation's executor), which then ends as any cancelled operation does:
/// its remote commands stopped, its handler called with errc::cancelled (or
/// the result it had so far). A stop requested earlier cancels at once.
void set_blocking_stop_token(std::stop_token token);
std::stop_token blocking_stop_token();

/// How many blocking calls are waiting on the stop token right now (the
/// CLI's watcher: with none, nothing runs that a stop could clean up, and
/// the first Ctrl-C quits at once, as a plain program does).
int blocking_calls_in_flight() noexcept;

/// Counts one blocking call while it lives (see blocking_calls_in_flight).
class BlockingCallScope {
public:
  BlockingCallScope() noexcept;
  ~BlockingCallScope();
  BlockingCallScope(BlockingCallScope const&) = delete;
  BlockingCallScope& operator=(BlockingCallScope const&) = delete;
};

/// What ties one blocking call's operation to the stop token.
struct BlockingStopLink {
  boost::asio::cancellation_signal signal;  // emitted on the operation's executor only
  std::atomic<bool> finished{false};
};

/// Starts an operation with `start(handler)` and waits for its handler,
/// whose arguments come back as a tuple: block_on<std::error_code, RunResult>
/// for void(error_code, RunResult). `executor` is the one the operation runs
/// on (for the deadlock check); `what` names the call in the refusal.
template <class... Args, class Start>
std::tuple<std::decay_t<Args>...> block_on(boost::asio::any_io_executor const& executor, std::string_view what,
                                           Start&& start) {
  refuse_blocking_here(executor, what);
  std::promise<std::tuple<std::decay_t<Args>...>> promise;
  auto future = promise.get_future();
  auto const token = blocking_stop_token();
  if (!token.stop_possible()) {
    std::forward<Start>(start)([&promise](Args... args) { promise.set_value({std::move(args)...}); });
    return future.get();
  }
  BlockingCallScope counted;
  auto link = std::make_shared<BlockingStopLink>();
  std::forward<Start>(start)(
      boost::asio::bind_cancellation_slot(link->signal.slot(), [&promise, link](Args... args) {
        link->finished = true;
        promise.set_value({std::move(args)...});
      }));
  // Registered once the operation has connected its slot (in start), and
  // emitted on `executor`. The CLI, the one setter of the token, runs every
  // operation on a Runtime's single thread, so the emit never runs beside
  // the operation's own handlers; a multi-threaded context would need the
  // operation's strand here.
  std::stop_callback on_stop(token, [executor, link] {
    boost::asio::post(executor, [link] {
      if (!link->finished) link->signal.emit(boost::asio::cancellation_type::terminal);
    });
  });
  return future.get();
}

/// The same for an operation whose handler takes one value: returns it.
template <class R, class Start>
R block_on_value(boost::asio::any_io_executor const& executor, std::string_view what, Start&& start) {
  return std::get<0>(block_on<R>(executor, what, std::forward<Start>(start)));
}

}  // namespace clusterkit::detail
