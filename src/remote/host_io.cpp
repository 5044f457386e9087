// Host: commands and transfers over one multiplexed OpenSSH connection.
//
// Layout of this file:
//   - control directory and control socket paths
//   - HostImpl: the per-host state (connection, session slots), on a strand
//   - MasterOp: opens the shared connection (`ssh -M -N -f`)
//   - RunOp: one command under the remote wrapper (detail/remote_script)
//   - TransferOp: an upload or download through the same connection
#include "clusterkit/host.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <spdlog/spdlog.h>

#include "clusterkit/detail/remote_script.hpp"
#include "clusterkit/detail/ssh_diagnosis.hpp"
#include "clusterkit/shell.hpp"
#include "core/completion.hpp"
#include "core/process.hpp"

namespace bp = boost::process::v2;
namespace fs = std::filesystem;

namespace clusterkit {

using std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Control sockets

std::string control_directory() {
  // Never destroyed (as ssh_program()'s path): close_connection() may run in
  // another object's static destructor, after function statics are gone.
  static std::once_flag once;
  static std::string& dir = *new std::string;
  static std::string& failure = *new std::string;
  std::call_once(once, [] {
    std::string base;
    if (char const* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg && fs::is_directory(xdg))
      base = std::string(xdg) + "/clusterkit";
    else
      base = "/tmp/clusterkit-" + std::to_string(::getuid());
    if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
      failure = "cannot create the control socket directory " + base + ": " + std::strerror(errno);
      return;
    }
    struct stat st {};
    // A directory someone else made (or a symlink planted in /tmp) would let
    // them hijack our connections: refuse it.
    if (::lstat(base.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid() ||
        (st.st_mode & 077) != 0) {
      failure = "the control socket directory " + base +
                " is not a private directory owned by you (mode 0700); remove it and try again";
      return;
    }
    dir = base;
  });
  if (!failure.empty()) throw Error(make_error_code(errc::local_file_error), failure);
  return dir;
}

namespace {

// Stable across processes and builds, so the next CLI run finds the same
// socket (std::hash makes no such promise), and free of any library state:
// a connection closed from a static destructor at exit still computes its
// path (OpenSSL's digests are torn down by then).
std::string fnv1a_hex(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

std::string const& ssh_program() {
  static std::string const& path = *new std::string([] {
    auto p = bp::environment::find_executable("ssh");
    return p.empty() ? std::string() : p.string();
  }());
  return path;
}

bool socket_accepts(std::string const& path) {
  // A live master accepts at once; a stale socket file refuses. Cheaper
  // than spawning `ssh -O check`.
  asio::io_context ctx;
  asio::local::stream_protocol::socket s(ctx);
  boost::system::error_code ec;
  s.connect(asio::local::stream_protocol::endpoint(path), ec);
  return !ec;
}

std::string signal_name_for(asio::cancellation_type type) {
  if ((type & asio::cancellation_type::terminal) != asio::cancellation_type::none) return "KILL";
  if ((type & asio::cancellation_type::partial) != asio::cancellation_type::none) return "TERM";
  return "INT";
}

std::string duration_text(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
  return std::to_string(ms.count()) + " ms";
}

}  // namespace

// ---------------------------------------------------------------------------
// HostImpl

std::string control_path_for(HostSpec const& spec) {
  // Every setting that changes what ssh would accept is part of the key:
  // a host entry with strict checking must never run through a connection
  // another entry opened with accept-new, another known_hosts file or other
  // -o options (and disconnecting one must not close the other's).
  // Each field length-prefixed, so that no two settings spell the same key
  // (ssh_options {"A|B"} and {"A", "B"} would, joined by a separator).
  std::string key;
  auto field = [&](std::string_view f) { key += std::to_string(f.size()) + ":" + std::string(f) + ";"; };
  for (std::string_view f : {std::string_view(spec.user), std::string_view(spec.address), std::string_view(spec.jump_host),
                             std::string_view(spec.ssh_config_file), std::string_view(spec.identity_file),
                             std::string_view(spec.known_hosts_file)})
    field(f);
  field(std::to_string(spec.port));
  field(spec.host_key_policy == HostKeyPolicy::accept_new ? "accept-new" : "strict");
  field(std::to_string(spec.ssh_options.size()));
  for (auto const& o : spec.ssh_options) field(o);
  // 16 hex digits (64 bits) keep the socket path inside its 108 bytes.
  return control_directory() + "/cm-" + fnv1a_hex(key);
}

void close_connection(HostSpec const& spec) {
  if (spec.local) return;
  auto path = control_path_for(spec);
  if (!fs::exists(path)) return;
  std::vector<std::string> args{"-o", "ControlPath=" + path, "-O", "exit", "--", spec.address};
  try {
    asio::io_context ctx;
    bp::process p(ctx, ssh_program(), args, bp::process_stdio{nullptr, nullptr, nullptr}, detail::default_child_signals{});
    p.wait();
  } catch (std::exception const& e) {
    spdlog::debug("{}: ssh -O exit failed: {}", spec.name, e.what());
  }
}

namespace detail {

struct HostImpl : std::enable_shared_from_this<HostImpl> {
  HostImpl(asio::any_io_executor ex, HostSpec s) : strand(asio::make_strand(ex)), spec(std::move(s)) {
    ignore_sigpipe_once();
    if (spec.name.empty()) spec.name = spec.local ? "localhost" : spec.address;
    if (!spec.local) control_path = control_path_for(spec);
  }

  asio::strand<asio::any_io_executor> strand;
  HostSpec spec;
  std::string control_path;

  enum class Link { down, connecting, up } link = Link::down;
  std::vector<asio::any_completion_handler<ConnectSignature>> connect_waiters;

  mutable std::mutex diagnostic_mutex;
  std::string diagnostic;

  int sessions_in_use = 0;
  std::deque<std::function<void()>> session_waiters;

  void set_diagnostic(std::string text) {
    std::lock_guard lock(diagnostic_mutex);
    diagnostic = std::move(text);
  }

  std::string who() const { return spec.name + " (" + spec.display() + ")"; }

  std::string diagnostic_copy_or(std::error_code ec) const {
    std::lock_guard lock(diagnostic_mutex);
    return diagnostic.empty() ? who() + ": " + ec.message() : diagnostic;
  }

  // Options shared by the master and every client.
  std::vector<std::string> common_options() const {
    std::vector<std::string> a;
    if (!spec.ssh_config_file.empty()) a.insert(a.end(), {"-F", spec.ssh_config_file});
    // Never prompt: a password prompt would hang a fan-out forever.
    a.insert(a.end(), {"-o", "BatchMode=yes"});
    a.insert(a.end(), {"-o", std::string("StrictHostKeyChecking=") +
                                 (spec.host_key_policy == HostKeyPolicy::accept_new ? "accept-new" : "yes")});
    if (!spec.known_hosts_file.empty()) a.insert(a.end(), {"-o", "UserKnownHostsFile=" + spec.known_hosts_file});
    if (!spec.identity_file.empty())
      a.insert(a.end(), {"-i", spec.identity_file, "-o", "IdentitiesOnly=yes"});
    if (!spec.jump_host.empty()) a.insert(a.end(), {"-J", spec.jump_host});
    if (!spec.user.empty()) a.insert(a.end(), {"-l", spec.user});
    if (spec.port != 0) a.insert(a.end(), {"-p", std::to_string(spec.port)});
    a.insert(a.end(), {"-o", "ConnectTimeout=" + std::to_string(spec.connect_timeout.count())});
    a.insert(a.end(), {"-o", "ServerAliveInterval=" + std::to_string(spec.server_alive_interval.count())});
    a.insert(a.end(), {"-o", "ServerAliveCountMax=" + std::to_string(spec.server_alive_count)});
    for (auto const& o : spec.ssh_options) a.insert(a.end(), {"-o", o});
    return a;
  }

  // `leading`: this client opens the shared connection itself and leaves it
  // in the background (ControlPersist) when its command ends.
  std::vector<std::string> client_options(bool leading = false) const {
    auto a = common_options();
    if (leading)
      a.insert(a.end(), {"-o", "ControlMaster=auto", "-o",
                         "ControlPersist=" + std::to_string(spec.control_persist.count())});
    else
      a.insert(a.end(), {"-o", "ControlMaster=no"});
    a.insert(a.end(), {"-o", "ControlPath=" + control_path, "-T"});
    return a;
  }

  // argv for running `script` on this host (ssh, or /bin/sh locally).
  std::vector<std::string> script_argv(std::string const& script, bool leading = false) const {
    if (spec.local) return {"/bin/sh", "-c", script};
    auto a = client_options(leading);
    a.push_back("--");
    a.push_back(spec.address);
    a.push_back(detail::remote_command_line(script));
    return a;
  }

  std::string program() const { return spec.local ? std::string("/bin/sh") : ssh_program(); }

  void acquire_session(std::function<void()> start) {
    if (spec.local || sessions_in_use < std::max(1, spec.max_sessions)) {
      ++sessions_in_use;
      start();
    } else {
      session_waiters.push_back(std::move(start));
    }
  }

  void release_session() {
    --sessions_in_use;
    if (!session_waiters.empty()) {
      auto next = std::move(session_waiters.front());
      session_waiters.pop_front();
      ++sessions_in_use;
      asio::post(strand, std::move(next));
    }
  }

  // Runs `then(ec)` on the strand once the shared connection is up.
  void ensure_connected(asio::any_completion_handler<ConnectSignature> then);
  void on_master_result(std::error_code ec, std::string const& message);

  // A jump host that did not connect us, without ssh's reason (OpenSSH sends
  // the proxy's stderr to /dev/null under ControlPersist): asks the jump
  // host alone (a few seconds at most) and tells `d` again with its answer.
  // Other diagnoses go to `then` at once. `then` runs on the strand.
  void explain_jump(detail::SshDiagnosis d, std::function<void(detail::SshDiagnosis)> then);

  // A command on a host with no connection up opens it itself: one
  // handshake and one ssh process, as pdsh would spend, instead of a
  // separate master first. Other operations wait for it. True when the
  // caller takes that role.
  bool lead_connection() {
    if (spec.local || link == Link::connecting) return false;
    if (link == Link::up && fs::exists(control_path)) return false;
    if (fs::exists(control_path)) {
      if (socket_accepts(control_path)) {
        link = Link::up;  // a master from an earlier process: warm
        return false;
      }
      ::unlink(control_path.c_str());  // stale: ssh would refuse to listen there
    }
    link = Link::connecting;
    return true;
  }

  // The leading command could not open the connection. Its ssh error is the
  // waiters' error too; anything else (it was cancelled, timed out) leaves
  // the waiters to open the connection on their own.
  void lead_failed(std::error_code ec, std::string const& message, bool ssh_error) {
    if (ssh_error) return on_master_result(ec, message);
    link = Link::down;
    if (connect_waiters.empty()) return;
    link = Link::connecting;
    start_master();
  }

  void start_master();
};

// ---------------------------------------------------------------------------
// MasterOp: `ssh -M -N -f` authenticates, forks the master into the
// background and exits; its exit status is the connection's verdict. The
// master's log goes to a file because the backgrounded master would keep a
// stderr pipe open forever.

struct MasterOp : std::enable_shared_from_this<MasterOp> {
  std::shared_ptr<HostImpl> host;
  std::optional<bp::process> proc;
  std::string log_path;

  explicit MasterOp(std::shared_ptr<HostImpl> h) : host(std::move(h)) {}

  void start() {
    if (ssh_program().empty()) {
      host->on_master_result(make_error_code(errc::ssh_not_found),
                             host->who() + ": no `ssh` on PATH; install the OpenSSH client (apt-get install openssh-client).");
      return;
    }
    log_path = host->control_path + ".log";
    ::unlink(log_path.c_str());
    // A stale socket from a dead master would make ssh refuse to listen.
    if (fs::exists(host->control_path)) ::unlink(host->control_path.c_str());
    auto args = host->common_options();
    args.insert(args.end(), {"-o", "ControlMaster=yes", "-o", "ControlPath=" + host->control_path, "-o",
                             "ControlPersist=" + std::to_string(host->spec.control_persist.count()), "-E", log_path,
                             "-N", "-f", "--", host->spec.address});
    try {
      proc.emplace(host->strand, ssh_program(), args, bp::process_stdio{nullptr, nullptr, nullptr},
                   detail::default_child_signals{});
    } catch (std::exception const& e) {
      host->on_master_result(make_error_code(errc::ssh_not_found),
                             host->who() + ": could not start ssh: " + e.what());
      return;
    }
    proc->async_wait([self = shared_from_this()](boost::system::error_code, int) { self->on_exit(); });
  }

  void on_exit() {
    int raw = proc->native_exit_code();
    std::string log;
    {
      std::ifstream in(log_path);
      log.assign(std::istreambuf_iterator<char>(in), {});
    }
    ::unlink(log_path.c_str());
    if (WIFEXITED(raw) && WEXITSTATUS(raw) == 0 && fs::exists(host->control_path)) {
      host->on_master_result({}, {});
      return;
    }
    host->explain_jump(detail::diagnose_ssh_failure(host->spec, log),
                       [h = host](detail::SshDiagnosis d) { h->on_master_result(d.code, d.message); });
  }
};

void HostImpl::ensure_connected(asio::any_completion_handler<ConnectSignature> then) {
  if (spec.local) return std::move(then)(std::error_code{});
  if (link == Link::up) {
    // The master may have gone (ControlPersist expired, host rebooted,
    // someone ran `ssh -O exit`). A missing socket is the cheap tell.
    if (fs::exists(control_path)) return std::move(then)(std::error_code{});
    link = Link::down;
  }
  connect_waiters.push_back(std::move(then));
  if (link == Link::connecting) return;
  link = Link::connecting;
  if (fs::exists(control_path) && socket_accepts(control_path)) {
    // A master from an earlier process is still up: warm start.
    on_master_result({}, {});
    return;
  }
  start_master();
}

void HostImpl::start_master() { std::make_shared<MasterOp>(shared_from_this())->start(); }

// ---------------------------------------------------------------------------
// JumpProbe: `ssh -E LOG ssh://JUMP true`, its exit and log read once it ends.

struct JumpProbe : std::enable_shared_from_this<JumpProbe> {
  std::shared_ptr<HostImpl> host;
  detail::SshDiagnosis diagnosis;
  std::function<void(detail::SshDiagnosis)> then;
  std::optional<bp::process> proc;
  std::string log_path;
  std::optional<asio::steady_timer> deadline;

  void start() {
    // One log per probe: commands on one host may fail together.
    static std::atomic<unsigned> counter{0};
    log_path = host->control_path + ".jump" + std::to_string(++counter) + ".log";
    ::unlink(log_path.c_str());
    try {
      proc.emplace(host->strand, ssh_program(), detail::jump_probe_argv(host->spec, log_path),
                   bp::process_stdio{nullptr, nullptr, nullptr}, detail::default_child_signals{});
    } catch (std::exception const&) {
      return then(std::move(diagnosis));  // no probe: the first diagnosis stands
    }
    // ConnectTimeout does not bound everything (a stalled key exchange, the
    // jump host's own ProxyCommand in ssh_config): 8 s, then it is stopped.
    deadline.emplace(host->strand, std::chrono::seconds(8));
    deadline->async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->proc->terminate(ignored);
    });
    proc->async_wait([self = shared_from_this()](boost::system::error_code, int) { self->on_exit(); });
  }

  void on_exit() {
    deadline->cancel();
    int raw = proc->native_exit_code();
    std::string log;
    {
      std::ifstream in(log_path);
      log.assign(std::istreambuf_iterator<char>(in), {});
    }
    ::unlink(log_path.c_str());
    then(detail::explain_jump_probe(host->spec, diagnosis, WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, log));
  }
};

void HostImpl::explain_jump(detail::SshDiagnosis d, std::function<void(detail::SshDiagnosis)> then) {
  if (!d.jump_unexplained || spec.jump_host.empty() || ssh_program().empty()) return then(std::move(d));
  auto probe = std::make_shared<JumpProbe>();
  probe->host = shared_from_this();
  probe->diagnosis = std::move(d);
  probe->then = std::move(then);
  probe->start();
}

void HostImpl::on_master_result(std::error_code ec, std::string const& message) {
  link = ec ? Link::down : Link::up;
  if (ec) {
    set_diagnostic(message);
    spdlog::debug("{}: connection failed: {}", spec.name, message);
  }
  auto waiters = std::move(connect_waiters);
  connect_waiters.clear();
  for (auto& w : waiters) detail::complete_on_associated(std::move(w), strand, ec);
}

// ---------------------------------------------------------------------------
// Line splitting shared by commands and downloads.

struct LineBuffer {
  /// A line longer than this is passed on in pieces of about this size:
  /// output without a newline (`cat /dev/zero`, a binary file) must not grow
  /// without bound in memory (issue 15).
  static constexpr std::size_t max_line = std::size_t(1) << 20;
  std::string partial;
  // "\n", or "\n\r" when a carriage return ends a line too (progress bars).
  std::string_view breaks = "\n";

  // Calls `emit(line, true)` for each complete line in `data`, and
  // `emit(piece, false)` for a piece of a line that grew past max_line (its
  // end comes in a later call: nothing is to be added after a piece).
  template <class Emit>
  void feed(std::string_view data, Emit&& emit) {
    std::size_t pos = 0;
    while (pos < data.size()) {
      auto nl = data.find_first_of(breaks, pos);
      if (nl == std::string_view::npos) {
        partial.append(data.substr(pos));
        while (partial.size() >= max_line) {
          // Never cut into a control word of the remote wrapper (it starts
          // with \x1e and is a few bytes long): the cut goes before it.
          auto cut = max_line;
          auto const marker = std::string_view(partial).substr(max_line - 64, 64).rfind('\x1e');
          if (marker != std::string_view::npos) cut = max_line - 64 + marker;
          emit(std::string_view(partial).substr(0, cut), false);
          partial.erase(0, cut);
        }
        return;
      }
      if (partial.empty()) {
        emit(data.substr(pos, nl - pos), true);
      } else {
        partial.append(data.substr(pos, nl - pos));
        emit(std::string_view(partial), true);
        partial.clear();
      }
      pos = nl + 1;
    }
  }

  template <class Emit>
  void finish(Emit&& emit) {
    if (!partial.empty()) {
      emit(std::string_view(partial), true);
      partial.clear();
    }
  }
};

// ---------------------------------------------------------------------------
// RunOp

/// What RunOp and TransferOp share at their start: the caller's cancellation
/// and the timeout reach the operation (on the host's strand), then the
/// host's shared connection (opened by this operation when it is the first
/// one) and a session slot, then `spawn()`.
template <class Op, class OnCancel, class OnTimeout>
void watch_cancellation_and_timeout(std::shared_ptr<Op> const& self, asio::cancellation_slot slot,
                                    std::chrono::milliseconds timeout, OnCancel on_cancel, OnTimeout on_timeout) {
  if (slot.is_connected()) {
    slot.assign([weak = std::weak_ptr<Op>(self), on_cancel](asio::cancellation_type type) {
      if (auto op = weak.lock()) asio::dispatch(op->host->strand, [op, type, on_cancel] { on_cancel(*op, type); });
    });
  }
  if (timeout.count() > 0) {
    self->timeout_timer.expires_after(timeout);
    self->timeout_timer.async_wait([self, on_timeout](boost::system::error_code ec) {
      if (!ec) on_timeout(*self);
    });
  }
}

template <class Op>
void connect_then_spawn(std::shared_ptr<Op> const& self) {
  // Only an operation that reports when its ssh is authenticated (RunOp's
  // wrapper prints a control line) can lead: the others would leave the
  // host "connecting" for good, and every later operation waiting on it.
  if (Op::can_lead_connection && self->host->lead_connection()) {
    self->leading = true;
    self->host->acquire_session([self] { self->spawn(); });
    return;
  }
  self->host->ensure_connected([self](std::error_code ec) {
    if (self->finished) return;
    if (ec) return self->fail(ec, self->host->diagnostic_copy_or(ec));
    self->host->acquire_session([self] { self->spawn(); });
  });
}

struct RunOp : std::enable_shared_from_this<RunOp> {
  static constexpr bool can_lead_connection = true;
  std::shared_ptr<HostImpl> host;
  Command command;
  RunOptions options;
  asio::any_completion_handler<RunSignature> handler;
  asio::cancellation_slot cancel_slot;

  std::optional<bp::process> proc;
  asio::writable_pipe in;
  asio::readable_pipe out, err;
  asio::steady_timer timeout_timer, escalate_timer, drain_timer;
  // Set while the jump host is asked why ssh failed (HostImpl::explain_jump).
  std::optional<detail::SshDiagnosis> diagnosing;
  std::array<char, 65536> out_buf{}, err_buf{};
  LineBuffer out_lines, err_lines;

  RunResult result;
  steady_clock::time_point started_at;
  bool exited = false, out_eof = false, err_eof = false, finished = false;
  bool wrapper_started = false, wrapper_exited = false, no_cwd = false, stale_master = false;
  int raw_status = 0;
  std::error_code stop_reason;

  std::deque<std::string> write_queue;
  bool writing = false, close_when_written = false, stdin_closed = false;

  RunOp(std::shared_ptr<HostImpl> h, Command c, RunOptions o, asio::any_completion_handler<RunSignature> hd)
      : host(std::move(h)),
        command(std::move(c)),
        options(std::move(o)),
        handler(std::move(hd)),
        in(host->strand),
        out(host->strand),
        err(host->strand),
        timeout_timer(host->strand),
        escalate_timer(host->strand),
        drain_timer(host->strand) {}

  void start() {
    started_at = steady_clock::now();
    // A negative duration would silently mean "none": refused, as the CLI
    // and Python refuse it.
    if (options.timeout.count() < 0 || options.kill_grace.count() < 0)
      return fail(make_error_code(errc::invalid_argument),
                  host->who() + ": RunOptions::timeout and kill_grace must not be negative (a timeout of 0 means none)");
    if (options.split_on_carriage_return) out_lines.breaks = err_lines.breaks = "\n\r";
    cancel_slot = asio::get_associated_cancellation_slot(handler);
    watch_cancellation_and_timeout(
        shared_from_this(), cancel_slot, options.timeout,
        [](RunOp& op, asio::cancellation_type type) { op.stop(make_error_code(errc::cancelled), type); },
        [](RunOp& op) { op.stop(make_error_code(errc::timed_out), asio::cancellation_type::partial); });
    connect_then_spawn(shared_from_this());
  }

  // This command opens the host's shared connection (see lead_connection).
  bool leading = false;
  bool lead_resolved = false;
  bool failed_in_ssh = false;

  void spawn() {
    if (finished) return host->release_session();
    session_held = true;
    std::string script;
    try {
      detail::WrapperRequest req;
      req.command = &command;
      req.env = &options.env;
      req.working_directory = options.working_directory;
      req.stdin_bytes = options.stdin_data.size();
      req.kill_grace = options.kill_grace;
      script = detail::wrapper_script(req);
    } catch (Error const& e) {
      return fail(e.code(), host->who() + ": " + e.what());
    }
    if (host->program().empty())
      return fail(make_error_code(errc::ssh_not_found),
                  host->who() + ": no `ssh` on PATH; install the OpenSSH client (apt-get install openssh-client).");
    auto argv = host->script_argv(script, leading);
    try {
      proc.emplace(host->strand, host->program(), std::vector<std::string>(argv.begin() + (host->spec.local ? 1 : 0), argv.end()),
                   bp::process_stdio{in, out, err}, detail::default_child_signals{});
    } catch (std::exception const& e) {
      failed_in_ssh = true;
      return fail(make_error_code(errc::ssh_not_found), host->who() + ": could not start " + host->program() + ": " + e.what());
    }
    if (!options.stdin_data.empty()) queue_write(std::move(options.stdin_data));
    read_out();
    read_err();
    proc->async_wait([self = shared_from_this()](boost::system::error_code, int) {
      self->raw_status = self->proc->native_exit_code();
      self->exited = true;
      self->maybe_finish();
    });
  }

  bool session_held = false;

  void queue_write(std::string data) {
    if (stdin_closed) return;
    write_queue.push_back(std::move(data));
    pump_writes();
  }

  void pump_writes() {
    if (writing || stdin_closed) return;
    if (write_queue.empty()) {
      if (close_when_written) close_stdin();
      return;
    }
    writing = true;
    asio::async_write(in, asio::buffer(write_queue.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->writing = false;
                        self->write_queue.pop_front();
                        if (ec) {
                          self->write_queue.clear();
                          self->close_stdin();
                          return;
                        }
                        self->pump_writes();
                      });
  }

  void close_stdin() {
    if (stdin_closed) return;
    stdin_closed = true;
    boost::system::error_code ignored;
    in.close(ignored);
  }

  void capture(std::string& into, bool& truncated, std::string_view data) {
    auto room = options.max_captured_bytes > into.size() ? options.max_captured_bytes - into.size() : 0;
    if (data.size() > room) {
      truncated = true;
      data = data.substr(0, room);
    }
    into.append(data);
  }

  void read_out() {
    out.async_read_some(asio::buffer(out_buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (n > 0) {
        std::string_view data(self->out_buf.data(), n);
        self->capture(self->result.stdout_text, self->result.stdout_truncated, data);
        if (self->options.on_line)
          self->out_lines.feed(data, [&](std::string_view l, bool) { self->options.on_line(OutputLine{Stream::out, l}); });
      }
      if (ec) {
        if (self->options.on_line)
          self->out_lines.finish([&](std::string_view l, bool) { self->options.on_line(OutputLine{Stream::out, l}); });
        self->out_eof = true;
        return self->maybe_finish();
      }
      self->read_out();
    });
  }

  // `whole`: a line that ended (captured with its newline); else a piece of
  // a longer one (LineBuffer::max_line), captured as it is.
  void on_err_line(std::string_view line, bool whole) {
    // The wrapper's last word ends its stderr. It starts a line of its own,
    // unless the command's stderr did not end with a newline (`printf x >&2`,
    // a progress bar's last \r): then the command's bytes come first, kept
    // as they came (no newline added).
    if (wrapper_started) {
      static constexpr std::string_view exit_word{"\x1e" "ck:exit "};
      if (auto pos = line.rfind(exit_word); pos != std::string_view::npos) {
        if (auto c = detail::parse_control_line(line.substr(pos)); c && c->kind == detail::ControlLine::exited) {
          if (pos > 0) {
            capture(result.stderr_text, result.stderr_truncated, line.substr(0, pos));
            if (options.on_line) options.on_line(OutputLine{Stream::err, line.substr(0, pos)});
          }
          wrapper_exited = true;
          return;
        }
      }
    }
    if (!wrapper_started) {
      if (auto c = detail::parse_control_line(line)) {
        if (c->kind == detail::ControlLine::started) {
          wrapper_started = true;
          if (leading && !lead_resolved) {
            // Authenticated and running: the connection is up for the others.
            lead_resolved = true;
            host->on_master_result({}, {});
          }
        }
        if (c->kind == detail::ControlLine::no_working_directory) no_cwd = true;
        return;
      }
      if (detail::is_ssh_noise_line(line)) {
        if (line.starts_with("Control socket connect(")) stale_master = true;
        return;
      }
    }
    std::string with_newline(line);
    if (whole) with_newline.push_back('\n');
    capture(result.stderr_text, result.stderr_truncated, with_newline);
    if (options.on_line) options.on_line(OutputLine{Stream::err, line});
  }

  void read_err() {
    err.async_read_some(asio::buffer(err_buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (n > 0)
        self->err_lines.feed(std::string_view(self->err_buf.data(), n), [&](std::string_view l, bool whole) { self->on_err_line(l, whole); });
      if (ec) {
        self->err_lines.finish([&](std::string_view l, bool whole) { self->on_err_line(l, whole); });
        self->err_eof = true;
        return self->maybe_finish();
      }
      self->read_err();
    });
  }

  // Stop the command: a signal over the control line, then end-of-file
  // (the remote watcher escalates to SIGTERM, then SIGKILL), and as a last
  // resort SIGKILL to the local ssh client if the host no longer answers.
  void stop(std::error_code reason, asio::cancellation_type type) {
    if (finished) return;
    // ssh had already failed; the jump host is being asked why: done now
    // with what ssh said (the answer, when it comes, finds the op done).
    if (diagnosing) return fail(diagnosing->code, diagnosing->message);
    if (!stop_reason) stop_reason = reason;
    if (!proc) {
      // Not spawned yet (waiting for the connection or a session slot).
      return fail(stop_reason, host->who() + ": " + describe_stop() + " before it started");
    }
    if (exited) return;
    auto sig = signal_name_for(type);
    queue_write(sig + "\n");
    if (sig == "INT") {
      escalate_timer.expires_after(options.kill_grace);
      escalate_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec) self->close_after_writes();
      });
    } else {
      close_after_writes();
    }
    drain_timer.expires_after(options.kill_grace * 2 + std::chrono::seconds(3));
    drain_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->exited) return;
      // The remote side did not confirm in time (host cut off?): stop our
      // client; the channel's end still reaches the host if it comes back.
      boost::system::error_code ignored;
      self->proc->terminate(ignored);
    });
  }

  void close_after_writes() {
    close_when_written = true;
    pump_writes();
  }

  std::string describe_stop() const {
    if (stop_reason == errc::timed_out)
      return "`" + command.display() + "` timed out after " + duration_text(options.timeout) + " and was stopped";
    return "`" + command.display() + "` was cancelled";
  }

  void maybe_finish() {
    if (finished || !exited) return;
    if (out_eof && err_eof) return finish();
    // A local command's background children may hold the pipes open; don't
    // wait for them forever once the command itself has exited.
    drain_timer.expires_after(std::chrono::milliseconds(300));
    drain_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->finished) return;
      boost::system::error_code ignored;
      self->out.close(ignored);
      self->err.close(ignored);
      self->finish();
    });
  }

  void finish() {
    if (finished || diagnosing) return;
    result.duration = steady_clock::now() - started_at;
    if (stale_master) host->link = HostImpl::Link::down;
    int code = -1;
    if (WIFEXITED(raw_status)) {
      code = WEXITSTATUS(raw_status);
    } else if (WIFSIGNALED(raw_status)) {
      result.signal = WTERMSIG(raw_status);
    }
    if (no_cwd)
      return fail(make_error_code(errc::bad_working_directory),
                  host->who() + ": working directory '" + options.working_directory +
                      "' does not exist; create it or pass an existing one");
    if (!wrapper_started) {
      if (stop_reason) return fail(stop_reason, host->who() + ": " + describe_stop() + " before it started");
      if (!host->spec.local && (code == 255 || code == -1)) {
        auto d = detail::diagnose_ssh_failure(host->spec, result.stderr_text);
        if (d.code != errc::host_key_changed && d.code != errc::authentication_failed) host->link = HostImpl::Link::down;
        failed_in_ssh = true;
        if (d.jump_unexplained) {  // ask the jump host alone first (a few seconds at most)
          diagnosing = d;          // what a stop meanwhile completes with
          drain_timer.cancel();
          host->explain_jump(std::move(d), [self = shared_from_this()](detail::SshDiagnosis d2) { self->fail(d2.code, d2.message); });
          return;
        }
        return fail(d.code, d.message);
      }
      return fail(make_error_code(errc::ssh_failed),
                  host->who() + ": the command wrapper did not start (exit " + std::to_string(code) +
                      "); is /bin/sh available there? stderr: " + detail::tail_lines(result.stderr_text, 3));
    }
    result.exit_code = code;
    if (code > 128 && code < 128 + 65) result.signal = code - 128;
    if (stop_reason) {
      result.message = host->who() + ": " + describe_stop();
      return done(stop_reason);
    }
    if (!wrapper_exited) {
      // The wrapper always reports its end; without that report the
      // channel died under the command (host cut off, rebooted, master
      // killed). What the command did meanwhile is unknown.
      host->link = HostImpl::Link::down;
      result.exit_code = -1;
      result.signal = 0;
      result.message = host->who() + ": the connection was lost while `" + command.display() +
                          "` was running; the host stopped answering or the connection was closed. "
                          "Check the host is up and reachable, then run the command again.";
      return done(make_error_code(errc::connection_lost));
    }
    done({});
  }

  void fail(std::error_code ec, std::string message) {
    result.message = std::move(message);
    result.duration = steady_clock::now() - started_at;
    done(ec);
  }

  void done(std::error_code ec) {
    if (finished) return;
    finished = true;
    if (leading && !lead_resolved) {
      lead_resolved = true;
      host->lead_failed(ec ? ec : make_error_code(errc::ssh_failed), result.message, failed_in_ssh);
    }
    boost::system::error_code ignored;
    timeout_timer.cancel();
    escalate_timer.cancel();
    drain_timer.cancel();
    close_stdin();
    if (proc && !exited) {
      // Only reached on paths where the command never got going; make sure
      // no client lingers.
      proc->terminate(ignored);
    }
    out.close(ignored);
    err.close(ignored);
    if (cancel_slot.is_connected()) cancel_slot.clear();
    if (session_held) host->release_session();
    if (ec) spdlog::debug("{}: {}", host->spec.name, result.message);
    detail::complete_on_associated(std::move(handler), host->strand, ec, std::move(result));
  }
};

// ---------------------------------------------------------------------------
// TransferOp

struct TransferOp : std::enable_shared_from_this<TransferOp> {
  static constexpr bool can_lead_connection = false;
  std::shared_ptr<HostImpl> host;
  bool upload;
  std::string local_path, remote_path;
  TransferOptions options;
  asio::any_completion_handler<TransferSignature> handler;

  std::optional<bp::process> proc;
  asio::writable_pipe in;
  asio::readable_pipe out, err;
  asio::steady_timer timeout_timer;
  std::vector<char> buffer = std::vector<char>(1 << 18);
  std::array<char, 8192> err_buf{};
  std::string stderr_text;
  int file = -1;
  std::string temp_path;
  std::uint64_t total = 0, moved = 0;
  bool header_read = false;
  std::string header;
  bool exited = false, out_eof = false, err_eof = false, finished = false, session_held = false;
  std::optional<detail::SshDiagnosis> diagnosing;  // as RunOp's
  int raw_status = 0;
  std::error_code stop_reason;
  steady_clock::time_point started_at;

  TransferOp(std::shared_ptr<HostImpl> h, bool up, std::string l, std::string r, TransferOptions o,
             asio::any_completion_handler<TransferSignature> hd)
      : host(std::move(h)),
        upload(up),
        local_path(std::move(l)),
        remote_path(std::move(r)),
        options(std::move(o)),
        handler(std::move(hd)),
        in(host->strand),
        out(host->strand),
        err(host->strand),
        timeout_timer(host->strand) {}

  ~TransferOp() {
    if (file >= 0) ::close(file);
    if (!temp_path.empty()) ::unlink(temp_path.c_str());
  }

  void start() {
    started_at = steady_clock::now();
    if (options.mode < -1 || options.mode > 07777)
      return fail(make_error_code(errc::invalid_argument),
                  "TransferOptions::mode " + std::to_string(options.mode) + " is not permission bits (0 to 07777, or -1)");
    if (options.timeout.count() < 0)
      return fail(make_error_code(errc::invalid_argument), "TransferOptions::timeout must not be negative (0 means none)");
    if (upload) {
      // O_NONBLOCK: a FIFO must not hang the open (it is refused below).
      file = ::open(local_path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      struct stat st {};
      if (file < 0 || ::fstat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return fail(make_error_code(file < 0 && errno == ENOENT ? errc::file_not_found : errc::local_file_error),
                    "cannot upload '" + local_path + "': " + (file < 0 ? std::strerror(errno) : "not a regular file"));
      total = static_cast<std::uint64_t>(st.st_size);
    } else {
      // Into a folder, as cp and scp do: under the remote file's name. Decided
      // before anything moves (a folder target used to fail after the copy).
      std::error_code dir_ec;
      bool const names_folder = !local_path.empty() && local_path.back() == '/';
      if (fs::is_directory(local_path, dir_ec)) {
        auto name = fs::path(remote_path).filename();
        if (name.empty())
          return fail(make_error_code(errc::invalid_argument), "cannot download '" + remote_path + "': it names a folder, not a file");
        local_path = (fs::path(local_path) / name).string();
      } else if (names_folder) {
        return fail(make_error_code(errc::local_file_error),
                    "cannot download into '" + local_path + "': the folder does not exist (create it first)");
      }
      temp_path = local_path + ".ck-part." + std::to_string(::getpid());
      file = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                    options.mode >= 0 ? options.mode : 0666);
      if (file < 0) {
        temp_path.clear();
        return fail(make_error_code(errc::local_file_error),
                    "cannot write '" + local_path + "': " + std::strerror(errno) + "; check the folder exists and is writable");
      }
    }
    watch_cancellation_and_timeout(
        shared_from_this(), asio::get_associated_cancellation_slot(handler), options.timeout,
        [](TransferOp& op, asio::cancellation_type) { op.stop(make_error_code(errc::cancelled)); },
        [](TransferOp& op) { op.stop(make_error_code(errc::timed_out)); });
    connect_then_spawn(shared_from_this());
  }

  bool leading = false;  // never: see can_lead_connection

  void spawn() {
    session_held = true;
    if (finished) return done({});
    auto script = upload ? detail::upload_script(remote_path, total, options.mode, fs::path(local_path).filename().string())
                         : detail::download_script(remote_path);
    auto argv = host->script_argv(script);
    try {
      proc.emplace(host->strand, host->program(), std::vector<std::string>(argv.begin() + (host->spec.local ? 1 : 0), argv.end()),
                   bp::process_stdio{in, out, err}, detail::default_child_signals{});
    } catch (std::exception const& e) {
      return fail(make_error_code(errc::ssh_not_found), host->who() + ": could not start " + host->program() + ": " + e.what());
    }
    if (upload) {
      send_chunk();
      boost::system::error_code ignored;
      out.close(ignored);
      out_eof = true;
    } else {
      boost::system::error_code ignored;
      in.close(ignored);
      receive();
    }
    read_err();
    proc->async_wait([self = shared_from_this()](boost::system::error_code, int) {
      self->raw_status = self->proc->native_exit_code();
      self->exited = true;
      self->maybe_finish();
    });
  }

  void progress() {
    if (options.on_progress) options.on_progress(moved, total);
  }

  void send_chunk() {
    auto n = ::read(file, buffer.data(), buffer.size());
    if (n < 0) return stop_with(make_error_code(errc::local_file_error), std::string("read failed: ") + std::strerror(errno));
    if (n == 0) {
      boost::system::error_code ignored;
      in.close(ignored);
      return;
    }
    asio::async_write(in, asio::buffer(buffer.data(), static_cast<std::size_t>(n)),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t written) {
                        if (ec) return;  // the remote side ended; its status tells why
                        self->moved += written;
                        self->progress();
                        self->send_chunk();
                      });
  }

  void receive() {
    out.async_read_some(asio::buffer(buffer), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      std::string_view data(self->buffer.data(), n);
      if (!self->header_read && n > 0) {
        auto nl = data.find('\n');
        if (nl == std::string_view::npos) {
          self->header.append(data);
          data = {};
        } else {
          self->header.append(data.substr(0, nl));
          data.remove_prefix(nl + 1);
          self->header_read = true;
          try {
            self->total = std::stoull(self->header);
          } catch (...) {
            self->total = 0;
          }
        }
      }
      if (!data.empty()) {
        if (::write(self->file, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
          return self->stop_with(make_error_code(errc::local_file_error),
                                 "cannot write '" + self->temp_path + "': " + std::strerror(errno));
        self->moved += data.size();
        self->progress();
      }
      if (ec) {
        self->out_eof = true;
        return self->maybe_finish();
      }
      self->receive();
    });
  }

  void read_err() {
    err.async_read_some(asio::buffer(err_buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      self->stderr_text.append(self->err_buf.data(), n);
      if (ec) {
        self->err_eof = true;
        return self->maybe_finish();
      }
      self->read_err();
    });
  }

  std::string local_error;
  void stop_with(std::error_code reason, std::string message) {
    local_error = std::move(message);
    stop(reason);
  }

  void stop(std::error_code reason) {
    if (finished) return;
    if (diagnosing) return fail(diagnosing->code, diagnosing->message);  // as RunOp::stop
    if (!stop_reason) stop_reason = reason;
    if (!proc) return fail(reason, host->who() + ": transfer " + describe() + " stopped before it started");
    boost::system::error_code ignored;
    // Killing our client ends the channel; the remote side removes its
    // temporary file when the byte count falls short.
    proc->terminate(ignored);
  }

  std::string describe() const {
    return upload ? "of '" + local_path + "' to " + host->spec.name + ":" + remote_path
                  : "of " + host->spec.name + ":" + remote_path + " to '" + local_path + "'";
  }

  void maybe_finish() {
    if (!finished && !diagnosing && exited && out_eof && err_eof) finish();
  }

  void finish() {
    int code = WIFEXITED(raw_status) ? WEXITSTATUS(raw_status) : -1;
    if (stop_reason) {
      std::string why = stop_reason == errc::timed_out ? "timed out after " + duration_text(options.timeout)
                        : stop_reason == errc::cancelled ? std::string("was cancelled")
                                                         : local_error;
      return fail(stop_reason, host->who() + ": transfer " + describe() + " " + why + "; nothing was placed");
    }
    if (code != 0) {
      if (!host->spec.local && code == 255 && stderr_text.find("clusterkit:") == std::string::npos) {
        auto d = detail::diagnose_ssh_failure(host->spec, stderr_text);
        if (d.jump_unexplained) {
          diagnosing = d;
          host->explain_jump(std::move(d), [self = shared_from_this()](detail::SshDiagnosis d2) { self->fail(d2.code, d2.message); });
          return;
        }
        return fail(d.code, d.message);
      }
      return fail(make_error_code(errc::transfer_failed),
                  host->who() + ": transfer " + describe() + " failed: " + detail::tail_lines(stderr_text, 3));
    }
    if (!upload) {
      if (moved != total)
        return fail(make_error_code(errc::transfer_failed),
                    host->who() + ": transfer " + describe() + " incomplete: " + std::to_string(moved) + " of " +
                        std::to_string(total) + " bytes");
      if (::fsync(file) != 0 || ::close(file) != 0) {
        file = -1;
        return fail(make_error_code(errc::local_file_error), "cannot write '" + temp_path + "': " + std::strerror(errno));
      }
      file = -1;
      if (::rename(temp_path.c_str(), local_path.c_str()) != 0)
        return fail(make_error_code(errc::local_file_error),
                    "cannot place '" + local_path + "': " + std::strerror(errno));
      temp_path.clear();
    }
    TransferResult r;
    r.bytes = moved;
    r.duration = steady_clock::now() - started_at;
    finished = true;
    cleanup();
    detail::complete_on_associated(std::move(handler), host->strand, std::error_code{}, std::move(r));
  }

  void cleanup() {
    timeout_timer.cancel();
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    if (session_held) {
      session_held = false;
      host->release_session();
    }
  }

  void fail(std::error_code ec, std::string message) {
    if (finished) return;
    finished = true;
    if (proc && !exited) {
      boost::system::error_code ignored;
      proc->terminate(ignored);
    }
    cleanup();
    TransferResult r;
    r.bytes = moved;
    r.duration = steady_clock::now() - started_at;
    r.message = std::move(message);
    detail::complete_on_associated(std::move(handler), host->strand, ec, std::move(r));
  }

  void done(std::error_code ec) { fail(ec, {}); }
};

}  // namespace detail

// ---------------------------------------------------------------------------
// Host

Host::Host(executor_type executor, HostSpec spec)
    : impl_(std::make_shared<detail::HostImpl>(std::move(executor), std::move(spec))) {}

HostSpec const& Host::spec() const { return impl_->spec; }
std::string const& Host::name() const { return impl_->spec.name; }
Host::executor_type Host::get_executor() const { return impl_->strand; }
std::string const& Host::control_path() const { return impl_->control_path; }

std::string Host::last_message() const {
  std::lock_guard lock(impl_->diagnostic_mutex);
  return impl_->diagnostic;
}

std::vector<std::string> Host::ssh_argv() const {
  std::vector<std::string> a{ssh_program()};
  auto o = impl_->client_options();
  a.insert(a.end(), o.begin(), o.end());
  return a;
}

bool Host::connection_alive() const {
  if (impl_->spec.local) return true;
  return fs::exists(impl_->control_path) && socket_accepts(impl_->control_path);
}

void Host::disconnect() {
  close_connection(impl_->spec);
  asio::dispatch(impl_->strand, [impl = impl_] { impl->link = detail::HostImpl::Link::down; });
}

void Host::start_connect(asio::any_completion_handler<ConnectSignature> handler) {
  asio::dispatch(impl_->strand, [impl = impl_, h = std::move(handler)]() mutable {
    impl->ensure_connected([impl, h = std::move(h)](std::error_code ec) mutable {
      detail::complete_on_associated(std::move(h), impl->strand, ec);
    });
  });
}

void Host::start_run(Command command, RunOptions options, asio::any_completion_handler<RunSignature> handler) {
  auto op = std::make_shared<detail::RunOp>(impl_, std::move(command), std::move(options), std::move(handler));
  asio::dispatch(impl_->strand, [op] { op->start(); });
}

void Host::start_transfer(bool upload, std::string local_path, std::string remote_path, TransferOptions options,
                          asio::any_completion_handler<TransferSignature> handler) {
  auto op = std::make_shared<detail::TransferOp>(impl_, upload, std::move(local_path), std::move(remote_path),
                                                 std::move(options), std::move(handler));
  asio::dispatch(impl_->strand, [op] { op->start(); });
}

}  // namespace clusterkit
