// Multi-step operations on hosts (probe, decide, change, confirm) read best
// as coroutines. These helpers start one for a type-erased handler: on a
// strand, with the caller's cancellation passed to whatever step is in
// flight (every cancellation type, so partial -> SIGTERM still holds), and
// with the handler completed on its own executor.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <functional>
#include <utility>

#include "core/completion.hpp"

namespace clusterkit::detail {

namespace asio = boost::asio;

/// Call first in a coroutine started by `launch`: every cancellation type
/// reaches the awaited operations, and a cancelled coroutine is not thrown
/// at; it checks `was_cancelled()` between steps instead.
inline asio::awaitable<void> accept_every_cancellation() {
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation(),
                                                     asio::enable_total_cancellation());
  co_await asio::this_coro::throw_if_cancelled(false);
}

inline asio::awaitable<bool> was_cancelled() {
  auto state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

/// Start `make()` for a handler of signature void(R). `on_exception` turns
/// an exception that escaped the coroutine into a result, so the handler is
/// always called exactly once.
template <class R, class Make>
void launch(asio::any_io_executor executor, asio::any_completion_handler<void(R)> handler, Make make,
            std::function<R(std::exception_ptr)> on_exception) {
  auto strand = asio::make_strand(executor);
  auto slot = asio::get_associated_cancellation_slot(handler);
  auto done = [executor, on_exception = std::move(on_exception), h = std::move(handler)](std::exception_ptr ep,
                                                                                         R result) mutable {
    if (ep) result = on_exception(ep);
    complete_on_associated(std::move(h), executor, std::move(result));
  };
  if (slot.is_connected())
    asio::co_spawn(strand, make(), asio::bind_cancellation_slot(slot, std::move(done)));
  else
    asio::co_spawn(strand, make(), std::move(done));
}

/// The same for void(std::error_code, R): the coroutine returns both.
template <class R, class Make>
void launch_ec(asio::any_io_executor executor, asio::any_completion_handler<void(std::error_code, R)> handler,
               Make make, std::function<std::pair<std::error_code, R>(std::exception_ptr)> on_exception) {
  auto strand = asio::make_strand(executor);
  auto slot = asio::get_associated_cancellation_slot(handler);
  auto done = [executor, on_exception = std::move(on_exception), h = std::move(handler)](
                  std::exception_ptr ep, std::pair<std::error_code, R> result) mutable {
    if (ep) result = on_exception(ep);
    complete_on_associated(std::move(h), executor, result.first, std::move(result.second));
  };
  if (slot.is_connected())
    asio::co_spawn(strand, make(), asio::bind_cancellation_slot(slot, std::move(done)));
  else
    asio::co_spawn(strand, make(), std::move(done));
}

/// "what went wrong" of an exception, for a result's message.
inline std::string exception_text(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (std::exception const& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace clusterkit::detail
