// Turning ssh's own error output into an error code and a sentence a person
// can act on (sans-I/O: tested on the messages OpenSSH really prints).
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "clusterkit/host.hpp"

namespace clusterkit::detail {

struct SshDiagnosis {
  std::error_code code;
  /// "gpu1 (root@10.0.0.1:22): host key changed ... To accept the new key
  /// if the change is expected: ssh-keygen -R ..."
  std::string message;
  /// The jump host did not connect us and ssh did not say why (under
  /// ControlPersist OpenSSH sends the proxy's stderr to /dev/null): worth
  /// asking the jump host directly (jump_probe_argv, explain_jump_probe).
  bool jump_unexplained = false;
};

/// What to run to ask the first jump host by itself, why it does not
/// connect us: `ssh ... ssh://[user@]host[:port] true`, no shared
/// connection, a short timeout, ssh's own words to `log_file`. Empty when
/// the host has no jump_host.
std::vector<std::string> jump_probe_argv(HostSpec const& host, std::string const& log_file);

/// `d` told again with the probe's answer: its exit status and log.
SshDiagnosis explain_jump_probe(HostSpec const& host, SshDiagnosis const& d, int probe_exit, std::string_view probe_log);

/// Classify the stderr of an ssh client that exited 255 before the remote
/// command started.
SshDiagnosis diagnose_ssh_failure(HostSpec const& host, std::string_view ssh_stderr);

/// Lines ssh prints about its own connection handling that are not the
/// command's output (e.g. a stale control socket); removed from stderr.
bool is_ssh_noise_line(std::string_view line);

/// The last `max_lines` non-empty lines of `text`, for error messages.
std::string tail_lines(std::string_view text, std::size_t max_lines);

}  // namespace clusterkit::detail
