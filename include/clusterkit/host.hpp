// Host: one machine we run commands on, over the user's own OpenSSH client
// (so ~/.ssh/config, agents and jump hosts all apply) or locally.
//
// Every command on a host rides one multiplexed connection (ControlMaster):
// the first operation opens it, later ones pay about a process spawn instead
// of a handshake. The master outlives this process for `control_persist`, so
// the next CLI invocation is warm too.
//
// Remote commands are wrapped in a small POSIX sh script that starts them in a
// session of their own and watches the ssh channel: when we cancel, time out,
// or simply die, the channel closes and the script kills the whole process
// group on the remote side. Nothing a cancelled command started stays behind.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "clusterkit/error.hpp"

namespace clusterkit {

namespace asio = boost::asio;

/// What to do with a host key that is not in known_hosts yet.
enum class HostKeyPolicy {
  /// Refuse unknown and changed keys (ssh's StrictHostKeyChecking=yes).
  strict,
  /// Record unknown keys on first contact, refuse changed ones. An explicit
  /// choice for fresh machines; never the default.
  accept_new,
};

/// Where and how to reach a host. Empty fields defer to ssh's own defaults
/// and the user's ~/.ssh/config.
struct HostSpec {
  /// Label used in output, inventories and errors ("gpu1").
  std::string name;
  /// Host name or IP address given to ssh. Ignored when `local` is set.
  std::string address;
  /// Run on this machine directly, without ssh.
  bool local = false;
  std::string user;
  /// 0 means ssh's default (22 or ~/.ssh/config).
  int port = 0;
  std::string identity_file;
  /// ssh -J syntax: [user@]host[:port][,...]
  std::string jump_host;
  std::string known_hosts_file;
  /// An ssh_config file to use instead of ~/.ssh/config (ssh -F).
  std::string ssh_config_file;
  HostKeyPolicy host_key_policy = HostKeyPolicy::strict;
  std::chrono::seconds connect_timeout{10};
  /// How long the shared connection stays up after its last use.
  std::chrono::seconds control_persist{600};
  /// Keepalive: a host that stops answering is declared lost after
  /// interval x count.
  std::chrono::seconds server_alive_interval{3};
  int server_alive_count = 3;
  /// Channels at once on the shared connection. sshd's MaxSessions defaults
  /// to 10; past it ssh silently opens a second full connection.
  int max_sessions = 8;
  /// Extra `-o Key=Value` options for ssh.
  std::vector<std::string> ssh_options;

  /// The local machine, named `name`.
  static HostSpec local_machine(std::string name = "localhost");
  /// "user@address:port" as a person would write it (for messages).
  std::string display() const;
};

/// A command: an argv executed as is, or a shell script run by /bin/sh.
struct Command {
  std::vector<std::string> argv;
  std::string script;

  static Command args(std::vector<std::string> argv) { return Command{std::move(argv), {}}; }
  static Command shell(std::string script) { return Command{{}, std::move(script)}; }
  /// For messages: the argv joined, or the script's first line.
  std::string display() const;
};

enum class Stream { out, err };

/// One line of output, without its newline, delivered while the command runs.
struct OutputLine {
  Stream stream;
  std::string_view text;
};

struct RunOptions {
  std::map<std::string, std::string> env;
  /// Empty: the login directory (remote) or the current one (local).
  std::string working_directory;
  /// Bytes given to the command's standard input (none: /dev/null).
  std::string stdin_data;
  /// Zero: no limit. On expiry the command is stopped and the operation
  /// completes with errc::timed_out and the output so far.
  std::chrono::milliseconds timeout{0};
  /// Between SIGTERM and SIGKILL when a command is stopped.
  std::chrono::milliseconds kill_grace{2000};
  /// Called on the host's executor for every complete line.
  std::function<void(OutputLine const&)> on_line;
  /// A carriage return also ends a line for `on_line`, so that progress
  /// bars redrawn in place (tqdm, rsync --info=progress2) arrive as they
  /// are drawn instead of as one line at the end. The captured text keeps
  /// a newline in place of each such carriage return.
  bool split_on_carriage_return = false;
  /// Captured bytes per stream; output past it is still streamed to
  /// `on_line` but not kept.
  std::size_t max_captured_bytes = 64u << 20;
};

struct RunResult {
  /// The command's exit status; -1 when it never ran or was stopped before
  /// it reported one.
  int exit_code = -1;
  /// Signal that ended the command, when known (0 otherwise). Remote shells
  /// report a signal as 128+N; we decode it the same way.
  int signal = 0;
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::chrono::nanoseconds duration{0};
  /// On error: what failed, on which host, and what to do about it.
  std::string message;

  /// The command exited 0.
  bool ok() const { return exit_code == 0; }
};

struct TransferOptions {
  /// Called on the host's executor as bytes move: (done, total).
  std::function<void(std::uint64_t, std::uint64_t)> on_progress;
  /// Permission bits for the placed file; -1 keeps the default (0644 less
  /// umask on upload, the local umask on download).
  int mode = -1;
  std::chrono::milliseconds timeout{0};
};

struct TransferResult {
  std::uint64_t bytes = 0;
  std::chrono::nanoseconds duration{0};
  /// On error: what failed and what to do about it.
  std::string message;
};

using RunSignature = void(std::error_code, RunResult);
using TransferSignature = void(std::error_code, TransferResult);
using ConnectSignature = void(std::error_code);

namespace detail {
struct HostImpl;
}

/// A handle to one host. Copies share the connection and its session limit.
/// Operations may be started from any thread; handlers run on their
/// associated executor (the host's executor by default).
class Host {
public:
  using executor_type = asio::any_io_executor;

  Host(executor_type executor, HostSpec spec);

  HostSpec const& spec() const;
  std::string const& name() const;
  executor_type get_executor() const;

  /// Open the shared connection if it is not up. Completes with the error
  /// ssh reported, classified (errc::authentication_failed, ...); the
  /// sentence for a person is `last_message()`.
  template <class CompletionToken = asio::deferred_t>
  auto async_connect(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, ConnectSignature>(
        [this](auto handler) { start_connect(std::move(handler)); }, token);
  }

  /// Run a command. Completes with an error only when the command could not
  /// run to its end (connection, timeout, cancellation); a non-zero exit is
  /// a result, not an error. Per-operation cancellation is supported:
  /// terminal -> SIGKILL, partial -> SIGTERM, total -> SIGINT then SIGTERM
  /// after `kill_grace`, always on the remote process group.
  template <class CompletionToken = asio::deferred_t>
  auto async_run(Command command, RunOptions options = {}, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, RunSignature>(
        [this](auto handler, Command c, RunOptions o) {
          start_run(std::move(c), std::move(o), std::move(handler));
        },
        token, std::move(command), std::move(options));
  }

  /// Copy a local file to the host through the shared connection. The file
  /// appears under its final name only when complete (temporary name, then
  /// rename), so a reader never sees half a file.
  template <class CompletionToken = asio::deferred_t>
  auto async_upload(std::string local_path, std::string remote_path, TransferOptions options = {},
                    CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, TransferSignature>(
        [this](auto handler, std::string l, std::string r, TransferOptions o) {
          start_transfer(true, std::move(l), std::move(r), std::move(o), std::move(handler));
        },
        token, std::move(local_path), std::move(remote_path), std::move(options));
  }

  /// Copy a file from the host, placed atomically on this machine.
  template <class CompletionToken = asio::deferred_t>
  auto async_download(std::string remote_path, std::string local_path, TransferOptions options = {},
                      CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, TransferSignature>(
        [this](auto handler, std::string r, std::string l, TransferOptions o) {
          start_transfer(false, std::move(l), std::move(r), std::move(o), std::move(handler));
        },
        token, std::move(remote_path), std::move(local_path), std::move(options));
  }

  /// Close the shared connection now (`ssh -O exit`). Safe when none is up.
  void disconnect();
  /// True when a shared connection is up and answering (`ssh -O check`).
  bool connection_alive() const;
  /// Path of the control socket of this host's shared connection.
  std::string const& control_path() const;
  /// The last connection failure, as a sentence naming the host and the fix.
  std::string last_message() const;
  /// The ssh argv (without the remote command) every operation uses; for
  /// tools that want to reuse the connection (rsync -e, sshfs).
  std::vector<std::string> ssh_argv() const;

private:
  void start_connect(asio::any_completion_handler<ConnectSignature> handler);
  void start_run(Command command, RunOptions options, asio::any_completion_handler<RunSignature> handler);
  void start_transfer(bool upload, std::string local_path, std::string remote_path, TransferOptions options,
                      asio::any_completion_handler<TransferSignature> handler);

  std::shared_ptr<detail::HostImpl> impl_;
};

/// The directory holding control sockets (private, mode 0700). Created on
/// first use under $XDG_RUNTIME_DIR, or /tmp/clusterkit-<uid>.
std::string control_directory();

/// The control socket a Host for `spec` uses; stable across processes, so a
/// later process finds a master an earlier one left up.
std::string control_path_for(HostSpec const& spec);

/// Close the shared connection for `spec` if one is up (`ssh -O exit`,
/// addressed through its socket, never by process name).
void close_connection(HostSpec const& spec);

}  // namespace clusterkit
