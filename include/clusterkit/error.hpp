// Errors: one error_code category for everything clusterkit reports, and an
// exception that carries the context a person needs to act (which host, what
// command, what to do next).
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace clusterkit {

/// Every failure clusterkit reports through an error_code.
enum class errc {
  /// Success (never returned as an error).
  ok = 0,
  /// The ssh client could not start (binary missing, fork failed).
  ssh_not_found,
  /// TCP connection refused: no sshd listens on the host's port.
  connection_refused,
  /// The host did not answer in time (cut off, wrong address, firewall).
  host_unreachable,
  /// The host name did not resolve.
  name_resolution_failed,
  /// The server refused every key we offered.
  authentication_failed,
  /// The host's key is not in known_hosts and strict checking is on.
  host_key_unknown,
  /// The host's key differs from the one in known_hosts: possible attack.
  host_key_changed,
  /// The connection dropped while a command was running.
  connection_lost,
  /// Another ssh failure; the diagnostic has ssh's own words.
  ssh_failed,
  /// The command did not finish within its timeout and was stopped.
  timed_out,
  /// The operation was cancelled by the caller and the command was stopped.
  cancelled,
  /// The working directory asked for does not exist on the host.
  bad_working_directory,
  /// An environment variable name is not a valid shell identifier.
  bad_environment_name,
  /// A file transfer failed or arrived incomplete.
  transfer_failed,
  /// A local file could not be read or written.
  local_file_error,
  /// An inventory file is malformed.
  inventory_invalid,
  /// A host or group name is not in the inventory.
  unknown_host_or_group,
  /// Skipped because an earlier host failed and fail-fast was asked for.
  skipped,
  /// The lab needs root (network namespaces, bridges).
  lab_needs_root,
  /// A lab step failed (ip, unshare, sshd).
  lab_failed,
  /// A required program is missing on this machine.
  program_missing,
  /// Output or input that a parser could not read.
  parse_error,
  /// A request that cannot work as given (bad argument, impossible layout).
  invalid_argument,
  /// An HTTP server answered with an error status; the result's diagnostic
  /// has the status and the server's own message.
  http_error,
  /// The TLS handshake failed (certificate not trusted, wrong host name,
  /// protocol mismatch).
  tls_error,
  /// A server's answer did not follow its protocol (HTTP, SSE, JSON).
  protocol_error,
  /// Something else is already mounted (or listed in fstab) where a mount
  /// was asked for; nothing was changed.
  mount_conflict,
  /// A mount or unmount command failed on a host; the diagnostic says why.
  mount_failed,
  /// A model download on a host failed (hub unreachable, unknown model or
  /// revision, disk full); the diagnostic has the CLI's own words.
  download_failed,
  /// Copying a model (rsync) failed or ended incomplete.
  copy_failed,
  /// A model folder failed its check (a shard missing, truncated or with a
  /// broken header); the report lists each problem.
  model_incomplete,
  /// A Ray node did not start or join, or Ray could not be asked.
  ray_failed,
  /// The vLLM engine died or did not become ready; the diagnostic says why,
  /// from its own log.
  engine_failed,
  /// A deployment step failed; the record names the step and the host.
  deployment_failed,
  /// A command ran to its end and exited non-zero (or by a signal), where the
  /// caller asked for success (Python's check=True / RunResult.check()).
  command_failed,
  /// A local file or folder that must exist does not (a file to upload, a
  /// model folder, a prompts file). Other local file problems (permissions,
  /// not a regular file) are local_file_error.
  file_not_found,
};

std::error_category const& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Thrown by the blocking wrappers. `what()` is a complete sentence naming
/// the thing that failed and the fix; `code()` is the machine-readable part.
class Error : public std::system_error {
public:
  Error(std::error_code code, std::string message) : std::system_error(code), message_(std::move(message)) {}
  // std::system_error would append ": " + code.message(); our messages are
  // already complete sentences.
  char const* what() const noexcept override { return message_.c_str(); }

private:
  std::string message_;
};

}  // namespace clusterkit

template <>
struct std::is_error_code_enum<clusterkit::errc> : std::true_type {};
