// Completing a type-erased handler the way Asio expects: never inside the
// initiating call, and on the handler's own executor (a coroutine's, a
// strand...), falling back to the I/O object's.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <utility>

namespace clusterkit::detail {

template <class Signature, class... Args>
void complete_on_associated(boost::asio::any_completion_handler<Signature> handler,
                            boost::asio::any_io_executor fallback, Args&&... args) {
  namespace asio = boost::asio;
  asio::post(fallback, [fallback, h = std::move(handler), ... a = std::forward<Args>(args)]() mutable {
    auto ex = asio::get_associated_executor(h, fallback);
    asio::dispatch(ex, [h = std::move(h), ... a = std::move(a)]() mutable { std::move(h)(std::move(a)...); });
  });
}

}  // namespace clusterkit::detail
