// Fan-out: one command on many hosts, a bounded number at once, with one
// outcome per host in the order the hosts were given.
#pragma once

#include <cstddef>
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
  bool success() const { return !error && result.exit_code == 0; }
};

using FanoutSignature = void(std::vector<HostOutcome>);

namespace detail {
void start_fanout(std::vector<Host> hosts, Command command, FanoutOptions options,
                  asio::any_completion_handler<FanoutSignature> handler);
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
