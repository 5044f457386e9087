#include "clusterkit/runtime.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <future>
#include <thread>

namespace clusterkit {

struct Runtime::Impl {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::thread thread{[this] { context.run(); }};
};

Runtime::Runtime() : impl_(std::make_unique<Impl>()) {}

Runtime::~Runtime() {
  impl_->guard.reset();
  impl_->context.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

asio::any_io_executor Runtime::executor() const { return impl_->context.get_executor(); }

Host Runtime::host(HostSpec spec) const { return Host(executor(), std::move(spec)); }

namespace {

// Waits for an operation on another thread. Blocking on the thread that
// runs the executor would deadlock, so that is refused up front.
template <class Result, class Start>
std::pair<std::error_code, Result> wait_for(Host& host, Start&& start) {
  if (host.get_executor().target<asio::strand<asio::any_io_executor>>() &&
      host.get_executor().target<asio::strand<asio::any_io_executor>>()->running_in_this_thread())
    throw Error(make_error_code(errc::invalid_argument),
                "a blocking clusterkit call was made on the thread that runs its io_context; use the async_ form there");
  std::promise<std::pair<std::error_code, Result>> promise;
  auto future = promise.get_future();
  start([&promise](std::error_code ec, Result r) { promise.set_value({ec, std::move(r)}); });
  return future.get();
}

}  // namespace

RunResult run(Host& host, Command command, RunOptions options) {
  auto [ec, result] = wait_for<RunResult>(host, [&](auto cb) {
    host.async_run(std::move(command), std::move(options), std::move(cb));
  });
  if (ec) throw Error(ec, result.diagnostic.empty() ? ec.message() : result.diagnostic);
  return std::move(result);
}

void connect(Host& host) {
  auto [ec, ignored] = wait_for<int>(host, [&](auto cb) {
    host.async_connect([cb = std::move(cb)](std::error_code e) mutable { cb(e, 0); });
  });
  if (ec) throw Error(ec, host.last_diagnostic().empty() ? ec.message() : host.last_diagnostic());
}

TransferResult upload(Host& host, std::string local_path, std::string remote_path, TransferOptions options) {
  auto [ec, result] = wait_for<TransferResult>(host, [&](auto cb) {
    host.async_upload(std::move(local_path), std::move(remote_path), std::move(options), std::move(cb));
  });
  if (ec) throw Error(ec, result.diagnostic.empty() ? ec.message() : result.diagnostic);
  return result;
}

TransferResult download(Host& host, std::string remote_path, std::string local_path, TransferOptions options) {
  auto [ec, result] = wait_for<TransferResult>(host, [&](auto cb) {
    host.async_download(std::move(remote_path), std::move(local_path), std::move(options), std::move(cb));
  });
  if (ec) throw Error(ec, result.diagnostic.empty() ? ec.message() : result.diagnostic);
  return result;
}

std::vector<HostOutcome> run_on_hosts(std::vector<Host> hosts, Command command, FanoutOptions options) {
  if (hosts.empty()) return {};
  std::promise<std::vector<HostOutcome>> promise;
  auto future = promise.get_future();
  async_run_on_hosts(std::move(hosts), std::move(command), std::move(options),
                     [&promise](std::vector<HostOutcome> o) { promise.set_value(std::move(o)); });
  return future.get();
}

}  // namespace clusterkit
