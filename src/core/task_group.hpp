// Coroutines that run beside the one that starts them and that it waits for:
// a deployment finds the model while Ray starts; an engine's status asks the
// process, the API and Ray at once; a benchmark runs N clients.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <list>
#include <utility>

#include "core/coro.hpp"

namespace clusterkit::detail {

/// Tasks share the starting coroutine's locals, so:
/// - they run on its executor, which must be a strand (or a one-thread
///   context): no locks between them and the frame;
/// - the frame must `co_await join()` before it returns, on every path,
///   and before it reads what the tasks write.
/// A cancellation of the frame reaches every running task: `join` forwards
/// one that arrives while it waits and one that arrived before (while the
/// frame awaited steps of its own), as the frame's cancellation state shows
/// it. Tasks accept every cancellation type and are not thrown at (see
/// accept_every_cancellation); the frame should run the same way. The first
/// exception a task lets out is rethrown by `join` once every task ended.
class TaskGroup {
 public:
  explicit TaskGroup(asio::any_io_executor executor)
      : executor_(std::move(executor)), all_ended_(executor_, asio::steady_timer::time_point::max()) {}
  TaskGroup(TaskGroup const&) = delete;
  TaskGroup& operator=(TaskGroup const&) = delete;
  // No check that every task ended: an io_context destroyed while the owner
  // waits in join() destroys the suspended frames, this one among them.
  ~TaskGroup() = default;

  void spawn(asio::awaitable<void> task) {
    auto& t = tasks_.emplace_back();
    asio::co_spawn(executor_, run(this, std::move(task)),
                   asio::bind_cancellation_slot(t.signal.slot(), [this, &t](std::exception_ptr ep) {
                     t.running = false;
                     if (ep && !first_exception_) first_exception_ = ep;
                     if (--running_ == 0) all_ended_.cancel();
                   }));
    ++running_;  // after co_spawn: a throw there must not leave join() waiting (its start is posted)
  }

  /// Waits until every task has ended.
  asio::awaitable<void> join() {
    auto state = co_await asio::this_coro::cancellation_state;
    while (running_ > 0) {
      if (state.cancelled() != asio::cancellation_type::none && cancelled_ == asio::cancellation_type::none)
        cancel(state.cancelled());
      boost::system::error_code ignored;  // cancelled by the last task, or by the frame's cancellation
      co_await all_ended_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    if (first_exception_) std::rethrow_exception(std::exchange(first_exception_, nullptr));
  }

  /// Cancels every running task. A task that has not begun yet (spawn
  /// posts its start), or is spawned later, does not run at all.
  void cancel(asio::cancellation_type type = asio::cancellation_type::terminal) {
    cancelled_ = type;
    for (auto& t : tasks_)
      if (t.running) t.signal.emit(type);
  }

  std::size_t running() const { return running_; }

 private:
  struct Task {
    asio::cancellation_signal signal;
    bool running = true;
  };

  static asio::awaitable<void> run(TaskGroup* group, asio::awaitable<void> task) {
    co_await accept_every_cancellation();
    // A cancellation emitted before this point reached no operation of the
    // task's, and the line above started a fresh cancellation state.
    if (group->cancelled_ != asio::cancellation_type::none) co_return;
    co_await std::move(task);
  }

  asio::any_io_executor executor_;
  asio::steady_timer all_ended_;
  std::list<Task> tasks_;  // a list: each signal stays where its task's slot points
  std::size_t running_ = 0;
  asio::cancellation_type cancelled_ = asio::cancellation_type::none;
  std::exception_ptr first_exception_;
};

}  // namespace clusterkit::detail
