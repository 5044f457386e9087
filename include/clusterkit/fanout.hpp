// Fan-out: one command (or one file upload) on many hosts, a bounded number
// at once, with one outcome per host in the order the hosts were given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "clusterkit/host.hpp"

namespace clusterkit {

struct FanoutOptions {
  /// Hosts in flight at once (connections being opened count too).
  std::size_t concurrency = 64;
  /// Stop at the first host that fails (error or non-zero exit): running
  /// commands are stopped (SIGTERM), hosts not started are `errc::skipped`.
  bool fail_fast = false;
  /// Options for every host's command. Its `on_line` is ignored; use
  /// `on_line` below, which also says which host the line came from.
  RunOptions run;
  std::function<void(std::string_view host, OutputLine const&)> on_line;
};

struct HostOutcome {
  std::string host;
  std::error_code error;
  RunResult result;

  /// Ran to the end and exited 0.
  bool ok() const { return !error && result.exit_code == 0; }
};

using FanoutSignature = void(std::vector<HostOutcome>);

namespace detail {
void start_fanout(std::vector<Host> hosts, Command command, FanoutOptions options,
                  asio::any_completion_handler<FanoutSignature> handler);
}

/// Options for copying one file to many hosts.
struct UploadFanoutOptions {
  /// Uploads in flight at once. Copies share the uplink of this machine:
  /// a few at a time finish sooner in total than all at once, and a
  /// hundred hosts do not open a hundred connections at one instant.
  std::size_t concurrency = 4;
  /// Stop at the first host that fails: transfers in flight are cancelled,
  /// hosts not started are `errc::skipped`.
  bool fail_fast = false;
  /// Options for every host's transfer. Its `on_progress` is ignored; use
  /// `on_progress` below, which also says which host it is about.
  TransferOptions transfer;
  std::function<void(std::string_view host, std::uint64_t done, std::uint64_t total)> on_progress;
};

struct TransferOutcome {
  std::string host;
  std::error_code error;
  TransferResult result;

  bool ok() const { return !error; }
};

using UploadFanoutSignature = void(std::vector<TransferOutcome>);

namespace detail {
void start_upload_fanout(std::vector<Host> hosts, std::string local_path, std::string remote_path,
                         UploadFanoutOptions options, asio::any_completion_handler<UploadFanoutSignature> handler);
}

/// Copy `local_path` to `remote_path` on every host, placed atomically on
/// each (see Host::async_upload), `options.concurrency` at once. Never
/// completes with an error of its own: each host's error is in its outcome.
/// Cancelling stops the transfers in flight and skips the rest.
template <class CompletionToken = asio::deferred_t>
auto async_upload_to_hosts(std::vector<Host> hosts, std::string local_path, std::string remote_path,
                           UploadFanoutOptions options = {}, CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, UploadFanoutSignature>(
      [](auto handler, std::vector<Host> h, std::string from, std::string to, UploadFanoutOptions o) {
        detail::start_upload_fanout(std::move(h), std::move(from), std::move(to), std::move(o), std::move(handler));
      },
      token, std::move(hosts), std::move(local_path), std::move(remote_path), std::move(options));
}

/// Run `command` on every host. Never completes with an error of its own:
/// each host's error is in its outcome. Cancelling the operation stops every
/// running command and skips the rest.
template <class CompletionToken = asio::deferred_t>
auto async_run_on_hosts(std::vector<Host> hosts, Command command, FanoutOptions options = {},
                        CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, FanoutSignature>(
      [](auto handler, std::vector<Host> h, Command c, FanoutOptions o) {
        detail::start_fanout(std::move(h), std::move(c), std::move(o), std::move(handler));
      },
      token, std::move(hosts), std::move(command), std::move(options));
}

}  // namespace clusterkit
