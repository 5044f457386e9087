// Runtime: an io_context on a thread of its own, and the blocking forms of
// the Host operations, which wait on it.
#include "clusterkit/runtime.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <thread>

#include "core/block_on.hpp"

namespace clusterkit {

using detail::IoThreadScope;

struct Runtime::Impl {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::thread thread{[this] {
    IoThreadScope marked;  // blocking calls from handlers are refused, not hung
    context.run();
  }};
};

Runtime::Runtime() : impl_(std::make_unique<Impl>()) {}

Runtime::~Runtime() {
  impl_->guard.reset();
  impl_->context.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

asio::any_io_executor Runtime::executor() const { return impl_->context.get_executor(); }

Host Runtime::host(HostSpec spec) const { return Host(executor(), std::move(spec)); }


RunResult run(Host& host, Command command, RunOptions options) {
  auto [ec, result] = detail::block_on<std::error_code, RunResult>(host.get_executor(), "clusterkit::run", [&](auto cb) {
    host.async_run(std::move(command), std::move(options), std::move(cb));
  });
  detail::throw_if_failed(ec, result.message);
  return std::move(result);
}

void connect(Host& host) {
  auto [ec] = detail::block_on<std::error_code>(host.get_executor(), "clusterkit::connect",
                                                [&](auto cb) { host.async_connect(std::move(cb)); });
  detail::throw_if_failed(ec, host.last_message());
}

TransferResult upload(Host& host, std::string local_path, std::string remote_path, TransferOptions options) {
  auto [ec, result] = detail::block_on<std::error_code, TransferResult>(host.get_executor(), "clusterkit::upload", [&](auto cb) {
    host.async_upload(std::move(local_path), std::move(remote_path), std::move(options), std::move(cb));
  });
  detail::throw_if_failed(ec, result.message);
  return result;
}

TransferResult download(Host& host, std::string remote_path, std::string local_path, TransferOptions options) {
  auto [ec, result] = detail::block_on<std::error_code, TransferResult>(host.get_executor(), "clusterkit::download", [&](auto cb) {
    host.async_download(std::move(remote_path), std::move(local_path), std::move(options), std::move(cb));
  });
  detail::throw_if_failed(ec, result.message);
  return result;
}

std::vector<HostOutcome> run_on_hosts(std::vector<Host> hosts, Command command, FanoutOptions options) {
  if (hosts.empty()) return {};
  auto ex = hosts.front().get_executor();
  return detail::block_on_value<std::vector<HostOutcome>>(ex, "clusterkit::run_on_hosts", [&](auto cb) {
    async_run_on_hosts(std::move(hosts), std::move(command), std::move(options), std::move(cb));
  });
}

std::vector<TransferOutcome> upload_to_hosts(std::vector<Host> hosts, std::string local_path, std::string remote_path,
                                             UploadFanoutOptions options) {
  if (hosts.empty()) return {};
  auto ex = hosts.front().get_executor();
  return detail::block_on_value<std::vector<TransferOutcome>>(ex, "clusterkit::upload_to_hosts", [&](auto cb) {
    async_upload_to_hosts(std::move(hosts), std::move(local_path), std::move(remote_path), std::move(options),
                          std::move(cb));
  });
}

}  // namespace clusterkit
