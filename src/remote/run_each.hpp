// A different command on each of several hosts, all at once: the fan-out for
// steps where every host gets its own script (probes, torchrun ranks).
#pragma once

#include <vector>

#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "core/text.hpp"

namespace clusterkit::detail {

struct RunEachItem {
  Host host;
  Command command;
  RunOptions options;
};

using RunEachSignature = void(std::vector<HostOutcome>);

/// Starts every item at once; completes with one outcome per item, in
/// order. Cancelling the handler's slot stops every running command (the
/// cancellation type is passed on).
void start_run_each(std::vector<RunEachItem> items, asio::any_completion_handler<RunEachSignature> handler);

template <class CompletionToken>
auto async_run_each(std::vector<RunEachItem> items, CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, RunEachSignature>(
      [](auto handler, std::vector<RunEachItem> i) { start_run_each(std::move(i), std::move(handler)); }, token,
      std::move(items));
}

/// Why a command on a host did not succeed, in a few words for a message:
/// the diagnostic when it could not run to its end, else its exit status and
/// the first line it printed on stderr (or stdout).
inline std::string failure_of(HostOutcome const& o) {
  if (o.error) return valid_utf8(o.result.message.empty() ? o.error.message() : o.result.message);
  std::string said = first_line(o.result.stderr_text);
  if (said.empty()) said = first_line(o.result.stdout_text);
  return valid_utf8("exit " + std::to_string(o.result.exit_code) + (said.empty() ? "" : ": " + said));
}

/// Seconds since the epoch, this machine's wall clock.
double wall_clock_now();

/// A random hex string of `bytes` random bytes.
std::string random_hex(std::size_t bytes);

}  // namespace clusterkit::detail
