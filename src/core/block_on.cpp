// The deadlock guard of block_on: which threads run clusterkit's I/O.
#include "core/block_on.hpp"

#include "clusterkit/error.hpp"

#include <atomic>
#include <mutex>
#include <string>

namespace clusterkit::detail {

namespace {
thread_local int io_thread_depth = 0;
std::mutex stop_token_mutex;
std::stop_token process_stop_token;
std::atomic<int> calls_in_flight{0};
}  // namespace

int blocking_calls_in_flight() noexcept { return calls_in_flight.load(); }
BlockingCallScope::BlockingCallScope() noexcept { ++calls_in_flight; }
BlockingCallScope::~BlockingCallScope() { --calls_in_flight; }

void set_blocking_stop_token(std::stop_token token) {
  std::lock_guard lock(stop_token_mutex);
  process_stop_token = std::move(token);
}

std::stop_token blocking_stop_token() {
  std::lock_guard lock(stop_token_mutex);
  return process_stop_token;
}

IoThreadScope::IoThreadScope() { ++io_thread_depth; }
IoThreadScope::~IoThreadScope() { --io_thread_depth; }

bool on_io_thread() noexcept { return io_thread_depth > 0; }

bool running_in_this_thread(boost::asio::any_io_executor const& executor) noexcept {
  namespace asio = boost::asio;
  if (on_io_thread()) return true;
  if (!executor) return false;
  if (auto const* ex = executor.target<asio::io_context::executor_type>()) return ex->running_in_this_thread();
  if (auto const* ex = executor.target<asio::strand<asio::io_context::executor_type>>()) return ex->running_in_this_thread();
  if (auto const* ex = executor.target<asio::strand<asio::any_io_executor>>()) return ex->running_in_this_thread();
  return false;
}

void refuse_blocking_here(boost::asio::any_io_executor const& executor, std::string_view what) {
  if (running_in_this_thread(executor))
    throw Error(make_error_code(errc::invalid_argument),
                std::string(what) +
                    " blocks until its operation ends, and was called on the thread that runs clusterkit's I/O (from "
                    "a callback or a handler), where it would wait forever; use the async_ form there, or call it "
                    "from another thread");
}

void throw_if_failed(std::error_code ec, std::string const& message) {
  if (ec) throw Error(ec, message.empty() ? ec.message() : message);
}

}  // namespace clusterkit::detail
