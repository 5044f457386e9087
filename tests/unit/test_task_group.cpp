// detail::TaskGroup (src/core/task_group.hpp): the tasks a deployment, an
// engine's status and a benchmark run beside their own coroutine. Timers
// only, on one io_context: no processes or sockets.
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/task_group.hpp"

namespace asio = boost::asio;
using clusterkit::detail::TaskGroup;
using namespace std::chrono_literals;

namespace {

/// Waits `d` on a timer; the error code says whether it was cancelled.
asio::awaitable<boost::system::error_code> wait_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

struct Outcome {
  bool ended = false;
  std::exception_ptr exception;
};

/// Runs `frame` on a strand of a fresh io_context until it ends, emitting a
/// terminal cancellation at it after `cancel_after` when that is not zero.
template <class Frame>
Outcome run_frame(Frame frame, std::chrono::milliseconds cancel_after = 0ms) {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  asio::cancellation_signal cancel;
  Outcome out;
  asio::co_spawn(strand, frame(), asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr ep) {
                   out.ended = true;
                   out.exception = ep;
                 }));
  asio::steady_timer canceller(io, cancel_after);
  if (cancel_after > 0ms) canceller.async_wait([&](boost::system::error_code) { cancel.emit(asio::cancellation_type::terminal); });
  io.run_for(20s);
  return out;
}

}  // namespace

TEST_CASE("join returns once every task has ended, and sees what each wrote") {
  std::vector<int> order;
  auto frame = [&]() -> asio::awaitable<void> {
    co_await clusterkit::detail::accept_every_cancellation();
    TaskGroup group(co_await asio::this_coro::executor);
    auto task = [&](int id, std::chrono::milliseconds d) -> asio::awaitable<void> {
      co_await wait_for(d);
      order.push_back(id);
    };
    group.spawn(task(3, 30ms));
    group.spawn(task(1, 10ms));
    group.spawn(task(2, 20ms));
    CHECK(group.running() == 3);
    co_await group.join();
    CHECK(group.running() == 0);
    CHECK(order == std::vector<int>{1, 2, 3});
    co_await group.join();  // again, with nothing left: returns at once
  };
  auto const t0 = std::chrono::steady_clock::now();
  auto out = run_frame(frame);
  REQUIRE(out.ended);
  REQUIRE_FALSE(out.exception);
  CHECK(order.size() == 3);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("a cancellation of the frame while it joins reaches every task") {
  std::vector<std::string> seen;
  auto frame = [&]() -> asio::awaitable<void> {
    co_await clusterkit::detail::accept_every_cancellation();
    TaskGroup group(co_await asio::this_coro::executor);
    auto task = [&](std::string name) -> asio::awaitable<void> {
      auto ec = co_await wait_for(60s);
      seen.push_back(name + (ec == asio::error::operation_aborted ? " cancelled" : " ran out"));
    };
    group.spawn(task("a"));
    group.spawn(task("b"));
    co_await group.join();
  };
  auto const t0 = std::chrono::steady_clock::now();
  auto out = run_frame(frame, 50ms);
  REQUIRE(out.ended);
  REQUIRE_FALSE(out.exception);
  CHECK(seen == std::vector<std::string>{"a cancelled", "b cancelled"});
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("a cancellation that came while the frame awaited its own step is forwarded at join") {
  // The deployment's shape: Ray starts beside, the frame awaits the model
  // chain (cancelled by Ctrl-C), then joins: Ray's start must stop too.
  std::string own_step, beside;
  auto frame = [&]() -> asio::awaitable<void> {
    co_await clusterkit::detail::accept_every_cancellation();
    TaskGroup group(co_await asio::this_coro::executor);
    auto task = [&]() -> asio::awaitable<void> {
      auto ec = co_await wait_for(60s);
      beside = ec == asio::error::operation_aborted ? "cancelled" : "ran out";
    };
    group.spawn(task());
    auto ec = co_await wait_for(60s);
    own_step = ec == asio::error::operation_aborted ? "cancelled" : "ran out";
    co_await group.join();
    // A task spawned after the cancellation does not run.
    std::string late = "never ran";
    auto late_task = [&]() -> asio::awaitable<void> {
      auto lec = co_await wait_for(60s);
      late = lec == asio::error::operation_aborted ? "cancelled" : "ran out";
    };
    group.spawn(late_task());
    co_await group.join();
    CHECK(late == "never ran");
  };
  auto const t0 = std::chrono::steady_clock::now();
  auto out = run_frame(frame, 50ms);
  REQUIRE(out.ended);
  REQUIRE_FALSE(out.exception);
  CHECK(own_step == "cancelled");
  CHECK(beside == "cancelled");
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("a task's exception is rethrown by join, after the other tasks ended") {
  bool other_ended = false;
  auto frame = [&]() -> asio::awaitable<void> {
    co_await clusterkit::detail::accept_every_cancellation();
    TaskGroup group(co_await asio::this_coro::executor);
    auto thrower = [&]() -> asio::awaitable<void> {
      co_await wait_for(5ms);
      throw std::runtime_error("the task failed");
    };
    auto other = [&]() -> asio::awaitable<void> {
      co_await wait_for(40ms);
      other_ended = true;
    };
    group.spawn(thrower());
    group.spawn(other());
    co_await group.join();
  };
  auto out = run_frame(frame);
  REQUIRE(out.ended);
  REQUIRE(out.exception);
  CHECK(other_ended);
  CHECK_THROWS_WITH(std::rethrow_exception(out.exception), "the task failed");
}
