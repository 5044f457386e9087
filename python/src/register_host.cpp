// HostSpec, Host (blocking calls and start_* for asyncio), RunResult,
// TransferResult, Operation, and the fan-out (run_on_hosts).
#include "clusterkit/detail/ssh_diagnosis.hpp"
#include "support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include <sstream>

namespace ckpy {
namespace {

[[noreturn]] void raise_command_failed(std::string const& what, ck::RunResult const& r);

constexpr std::size_t kDefaultCapture = 64u << 20;

// ---------------------------------------------------------------------------
// HostSpec

std::string policy_name(ck::HostKeyPolicy p) { return p == ck::HostKeyPolicy::accept_new ? "accept-new" : "strict"; }

ck::HostKeyPolicy parse_policy(std::string const& s) {
  if (s == "strict") return ck::HostKeyPolicy::strict;
  if (s == "accept-new" || s == "accept_new") return ck::HostKeyPolicy::accept_new;
  throw py::value_error("host_key_policy must be 'strict' or 'accept-new', not '" + s + "'");
}

std::string optional_path(py::object const& value) { return value.is_none() ? std::string() : path_string(value); }

int checked_port(int port) {
  if (port < 0 || port > 65535) throw py::value_error("port must be 0 (ssh's default) or 1-65535");
  return port;
}

int checked_positive(int value, char const* what) {
  if (value < 1) throw py::value_error(std::string(what) + " must be >= 1");
  return value;
}

ck::HostSpec make_spec(std::string name, std::string address, bool local, std::string user, int port,
                       py::object identity_file, std::string jump_host, py::object known_hosts_file,
                       py::object ssh_config_file, std::string host_key_policy, double connect_timeout,
                       double control_persist, double server_alive_interval, int server_alive_count, int max_sessions,
                       std::vector<std::string> ssh_options) {
  ck::HostSpec s;
  s.name = std::move(name);
  s.address = std::move(address);
  s.local = local;
  s.user = std::move(user);
  s.port = checked_port(port);
  s.identity_file = optional_path(identity_file);
  s.jump_host = std::move(jump_host);
  s.known_hosts_file = optional_path(known_hosts_file);
  s.ssh_config_file = optional_path(ssh_config_file);
  s.host_key_policy = parse_policy(host_key_policy);
  s.connect_timeout = whole_seconds(connect_timeout, "connect_timeout");
  s.control_persist = whole_seconds(control_persist, "control_persist");
  s.server_alive_interval = whole_seconds(server_alive_interval, "server_alive_interval");
  s.server_alive_count = checked_positive(server_alive_count, "server_alive_count");
  s.max_sessions = checked_positive(max_sessions, "max_sessions");
  s.ssh_options = std::move(ssh_options);
  return s;
}

bool same_spec(ck::HostSpec const& a, ck::HostSpec const& b) {
  return a.name == b.name && a.address == b.address && a.local == b.local && a.user == b.user && a.port == b.port &&
         a.identity_file == b.identity_file && a.jump_host == b.jump_host && a.known_hosts_file == b.known_hosts_file &&
         a.ssh_config_file == b.ssh_config_file && a.host_key_policy == b.host_key_policy &&
         a.connect_timeout == b.connect_timeout && a.control_persist == b.control_persist &&
         a.server_alive_interval == b.server_alive_interval && a.server_alive_count == b.server_alive_count &&
         a.max_sessions == b.max_sessions && a.ssh_options == b.ssh_options;
}

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }

std::string spec_repr(ck::HostSpec const& s) {
  // Fields that differ from the defaults, in declaration order.
  ck::HostSpec d;
  std::ostringstream out;
  out << "HostSpec(name=" << py_repr(py::str(s.name));
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (s.address != d.address) field("address", py::str(s.address));
  if (s.local) field("local", py::bool_(true));
  if (s.user != d.user) field("user", py::str(s.user));
  if (s.port != d.port) field("port", py::int_(s.port));
  if (s.identity_file != d.identity_file) field("identity_file", py::str(s.identity_file));
  if (s.jump_host != d.jump_host) field("jump_host", py::str(s.jump_host));
  if (s.known_hosts_file != d.known_hosts_file) field("known_hosts_file", py::str(s.known_hosts_file));
  if (s.ssh_config_file != d.ssh_config_file) field("ssh_config_file", py::str(s.ssh_config_file));
  if (s.host_key_policy != d.host_key_policy) field("host_key_policy", py::str(policy_name(s.host_key_policy)));
  if (s.connect_timeout != d.connect_timeout) field("connect_timeout", py::float_(double(s.connect_timeout.count())));
  if (s.control_persist != d.control_persist) field("control_persist", py::float_(double(s.control_persist.count())));
  if (s.server_alive_interval != d.server_alive_interval)
    field("server_alive_interval", py::float_(double(s.server_alive_interval.count())));
  if (s.server_alive_count != d.server_alive_count) field("server_alive_count", py::int_(s.server_alive_count));
  if (s.max_sessions != d.max_sessions) field("max_sessions", py::int_(s.max_sessions));
  if (s.ssh_options != d.ssh_options) field("ssh_options", py::cast(s.ssh_options));
  out << ")";
  return out.str();
}

void register_spec(py::module_& m) {
  using S = ck::HostSpec;
  py::class_<S>(m, "HostSpec",
                "Where and how to reach a host. Empty fields defer to ssh's own defaults and ~/.ssh/config.\n"
                "Durations are seconds (whole seconds are used; fractions round up).")
      .def(py::init(&make_spec), py::arg("name") = "", py::arg("address") = "", py::kw_only(),
           py::arg("local") = false, py::arg("user") = "", py::arg("port") = 0, py::arg("identity_file") = py::none(),
           py::arg("jump_host") = "", py::arg("known_hosts_file") = py::none(),
           py::arg("ssh_config_file") = py::none(), py::arg("host_key_policy") = "strict",
           py::arg("connect_timeout") = 10.0, py::arg("control_persist") = 600.0,
           py::arg("server_alive_interval") = 3.0, py::arg("server_alive_count") = 3, py::arg("max_sessions") = 8,
           py::arg("ssh_options") = std::vector<std::string>{})
      .def_static("local_machine", &S::local_machine, py::arg("name") = "localhost",
                  "A spec for this machine, run directly without ssh.")
      .def_readwrite("name", &S::name)
      .def_readwrite("address", &S::address)
      .def_readwrite("local", &S::local)
      .def_readwrite("user", &S::user)
      .def_property(
          "port", [](S const& s) { return s.port; }, [](S& s, int p) { s.port = checked_port(p); })
      .def_property(
          "identity_file", [](S const& s) { return s.identity_file; },
          [](S& s, py::object v) { s.identity_file = optional_path(v); })
      .def_readwrite("jump_host", &S::jump_host)
      .def_property(
          "known_hosts_file", [](S const& s) { return s.known_hosts_file; },
          [](S& s, py::object v) { s.known_hosts_file = optional_path(v); })
      .def_property(
          "ssh_config_file", [](S const& s) { return s.ssh_config_file; },
          [](S& s, py::object v) { s.ssh_config_file = optional_path(v); })
      .def_property(
          "host_key_policy", [](S const& s) { return policy_name(s.host_key_policy); },
          [](S& s, std::string const& v) { s.host_key_policy = parse_policy(v); })
      .def_property(
          "connect_timeout", [](S const& s) { return double(s.connect_timeout.count()); },
          [](S& s, double v) { s.connect_timeout = whole_seconds(v, "connect_timeout"); })
      .def_property(
          "control_persist", [](S const& s) { return double(s.control_persist.count()); },
          [](S& s, double v) { s.control_persist = whole_seconds(v, "control_persist"); })
      .def_property(
          "server_alive_interval", [](S const& s) { return double(s.server_alive_interval.count()); },
          [](S& s, double v) { s.server_alive_interval = whole_seconds(v, "server_alive_interval"); })
      .def_property(
          "server_alive_count", [](S const& s) { return s.server_alive_count; },
          [](S& s, int v) { s.server_alive_count = checked_positive(v, "server_alive_count"); })
      .def_property(
          "max_sessions", [](S const& s) { return s.max_sessions; },
          [](S& s, int v) { s.max_sessions = checked_positive(v, "max_sessions"); })
      .def_readwrite("ssh_options", &S::ssh_options)
      .def("display", &S::display, "'user@address:port' as a person would write it.")
      .def("__eq__", [](S const& a, S const& b) { return same_spec(a, b); }, py::is_operator())
      .def("__copy__", [](S const& s) { return S(s); })
      .def("__deepcopy__", [](S const& s, py::dict) { return S(s); }, py::arg("memo"))
      .def("__repr__", &spec_repr);
}

// ---------------------------------------------------------------------------
// Results

py::bytes as_bytes(std::string const& s) { return py::bytes(s.data(), s.size()); }

void register_results(py::module_& m) {
  using R = ck::RunResult;
  py::class_<R>(m, "RunResult", "What a command did. A non-zero exit is a result, not an error.")
      .def(py::pickle(
          [](R const& r) {
            return py::make_tuple(r.exit_code, r.signal, py::bytes(r.stdout_text), py::bytes(r.stderr_text),
                                  r.stdout_truncated, r.stderr_truncated, r.duration.count(), r.message);
          },
          [](py::tuple const& t) {
            if (t.size() != 8) throw py::value_error("not a pickled RunResult");
            R r;
            r.exit_code = t[0].cast<int>();
            r.signal = t[1].cast<int>();
            r.stdout_text = t[2].cast<std::string>();
            r.stderr_text = t[3].cast<std::string>();
            r.stdout_truncated = t[4].cast<bool>();
            r.stderr_truncated = t[5].cast<bool>();
            r.duration = std::chrono::nanoseconds(t[6].cast<std::int64_t>());
            r.message = t[7].cast<std::string>();
            return r;
          }))
      .def(
          "check",
          [](R const& r) -> R const& {
            if (!r.ok()) raise_command_failed("the command", r);
            return r;
          },
          py::return_value_policy::reference_internal,
          "Return self when the command exited 0; else raise clusterkit.Error('command_failed') with this result "
          "as .result.")
      .def_readonly("exit_code", &R::exit_code, "Exit status; -1 when the command never ran or was stopped.")
      .def_readonly("signal", &R::signal, "Signal that ended the command (0 if none).")
      .def_property_readonly(
          "stdout", [](R const& r) { return decode(r.stdout_text); },
          "Standard output, decoded as UTF-8 (undecodable bytes as surrogate escapes).")
      .def_property_readonly("stderr", [](R const& r) { return decode(r.stderr_text); })
      .def_property_readonly("stdout_bytes", [](R const& r) { return as_bytes(r.stdout_text); })
      .def_property_readonly("stderr_bytes", [](R const& r) { return as_bytes(r.stderr_text); })
      .def_readonly("stdout_truncated", &R::stdout_truncated)
      .def_readonly("stderr_truncated", &R::stderr_truncated)
      .def_property_readonly(
          "duration", [](R const& r) { return to_seconds(r.duration); }, "Seconds.")
      .def_readonly("message", &R::message)
      .def_property_readonly("ok", &R::ok, "exit_code == 0")
      .def("__repr__", [](R const& r) {
        std::ostringstream out;
        out << "RunResult(exit_code=" << r.exit_code;
        if (r.signal) out << ", signal=" << r.signal;
        out << ", stdout=" << r.stdout_text.size() << " bytes, stderr=" << r.stderr_text.size()
            << " bytes, duration=" << to_seconds(r.duration) << ")";
        return out.str();
      });

  using T = ck::TransferResult;
  py::class_<T>(m, "TransferResult")
      .def(py::pickle([](T const& t) { return py::make_tuple(t.bytes, t.duration.count(), t.message); },
                      [](py::tuple const& t) {
                        if (t.size() != 3) throw py::value_error("not a pickled TransferResult");
                        T r;
                        r.bytes = t[0].cast<std::uint64_t>();
                        r.duration = std::chrono::nanoseconds(t[1].cast<std::int64_t>());
                        r.message = t[2].cast<std::string>();
                        return r;
                      }))
      .def_readonly("bytes", &T::bytes)
      .def_property_readonly(
          "duration", [](T const& t) { return to_seconds(t.duration); }, "Seconds.")
      .def_readonly("message", &T::message)
      .def("__repr__", [](T const& t) {
        return "TransferResult(bytes=" + std::to_string(t.bytes) + ", duration=" + std::to_string(to_seconds(t.duration)) +
               ")";
      });

  using O = ck::HostOutcome;
  py::class_<O>(m, "HostOutcome", "One host's part of run_on_hosts.")
      .def(py::pickle([](O const& o) { return py::make_tuple(o.host, pickle_error_code(o.error), o.result); },
                      [](py::tuple const& t) {
                        if (t.size() != 3) throw py::value_error("not a pickled HostOutcome");
                        return O{t[0].cast<std::string>(), unpickle_error_code(t[1]), t[2].cast<R>()};
                      }))
      .def_readonly("host", &O::host, "The host's name.")
      .def_property_readonly(
          "error",
          [](O const& o) -> py::object {
            if (!o.error) return py::none();
            return make_error(o.error, o.result.message, py::cast(o.result));
          },
          "None, or a clusterkit.Error (code 'skipped' for hosts not run after a fail-fast stop).")
      .def_readonly("result", &O::result)
      .def_property_readonly("ok", &O::ok, "Ran to the end and exited 0.")
      .def_property_readonly(
          "message", [](O const& o) { return o.result.message; },
          "Why it failed, as a sentence naming the host (result.message); '' when it worked.")
      .def("__repr__", [](O const& o) {
        std::string s = "HostOutcome(host=" + py_repr(py::str(o.host));
        if (o.error) s += ", error=" + py_repr(py::str(error_code_name(o.error)));
        else s += ", exit_code=" + std::to_string(o.result.exit_code);
        return s + ")";
      });

  using TO = ck::TransferOutcome;
  py::class_<TO>(m, "TransferOutcome", "One host's part of upload_to_hosts.")
      .def(py::pickle([](TO const& o) { return py::make_tuple(o.host, pickle_error_code(o.error), o.result); },
                      [](py::tuple const& t) {
                        if (t.size() != 3) throw py::value_error("not a pickled TransferOutcome");
                        return TO{t[0].cast<std::string>(), unpickle_error_code(t[1]), t[2].cast<T>()};
                      }))
      .def_readonly("host", &TO::host, "The host's name.")
      .def_property_readonly(
          "error",
          [](TO const& o) -> py::object {
            if (!o.error) return py::none();
            return make_error(o.error, o.result.message, py::cast(o.result));
          },
          "None, or a clusterkit.Error (code 'skipped' for hosts not copied to after a fail-fast stop).")
      .def_readonly("result", &TO::result)
      .def_property_readonly("ok", &TO::ok, "The file arrived whole.")
      .def_property_readonly(
          "message", [](TO const& o) { return o.result.message; },
          "Why it failed, as a sentence naming the host (result.message); '' when it worked.")
      .def("__repr__", [](TO const& o) {
        std::string s = "TransferOutcome(host=" + py_repr(py::str(o.host));
        if (o.error) s += ", error=" + py_repr(py::str(error_code_name(o.error)));
        else s += ", bytes=" + std::to_string(o.result.bytes);
        return s + ")";
      });
}

// ---------------------------------------------------------------------------
// Operation

asio::cancellation_type parse_cancel_kind(std::string const& kind) {
  if (kind == "terminal") return asio::cancellation_type::terminal;
  if (kind == "partial") return asio::cancellation_type::partial;
  if (kind == "total") return asio::cancellation_type::total;
  throw py::value_error("kind must be 'terminal' (SIGKILL), 'partial' (SIGTERM) or 'total' (SIGINT, then SIGTERM)");
}

void register_operation(py::module_& m) {
  py::class_<Operation, std::shared_ptr<Operation>>(
      m, "Operation", "A started operation (from Host.start_* or start_run_on_hosts).")
      .def(
          "cancel", [](Operation& op, std::string const& kind) { op.cancel(parse_cancel_kind(kind)); },
          py::arg("kind") = "terminal",
          "Stop it: 'terminal' kills the command's process group (SIGKILL), 'partial' sends SIGTERM, 'total' "
          "SIGINT then SIGTERM after kill_grace. The done callback still runs, with clusterkit.Error('cancelled').")
      .def("done", &Operation::finished, "True once the done callback has been called (or is being called).")
      .def("__repr__", [](Operation const& op) {
        return std::string("Operation(") + (op.finished() ? "done" : op.cancel_requested() ? "cancelling" : "running") + ")";
      });
}

// ---------------------------------------------------------------------------
// Host

char const* stream_name(ck::Stream s) { return s == ck::Stream::out ? "stdout" : "stderr"; }

std::function<void(ck::OutputLine const&)> line_callback(std::shared_ptr<Operation> const& op, py::object fn) {
  if (fn.is_none()) return {};
  return [op, f = share(std::move(fn))](ck::OutputLine const& line) {
    invoke_callback(*op, [&] { (*f)(py::str(stream_name(line.stream)), decode(line.text)); });
  };
}

std::function<void(std::uint64_t, std::uint64_t)> progress_callback(std::shared_ptr<Operation> const& op,
                                                                    py::object fn) {
  if (fn.is_none()) return {};
  return [op, f = share(std::move(fn))](std::uint64_t done, std::uint64_t total) {
    invoke_callback(*op, [&] { (*f)(done, total); });
  };
}

ck::TransferOptions make_transfer_options(std::shared_ptr<Operation> const& op, py::object const& mode,
                                          py::object const& timeout, py::object on_progress) {
  ck::TransferOptions o;
  if (!mode.is_none()) {
    auto m = integer_of(mode, "mode");
    if (m < 0 || m > 07777) throw py::value_error("mode must be permission bits such as 0o644");
    o.mode = static_cast<int>(m);
  }
  o.timeout = timeout_ms(timeout, "timeout");
  o.on_progress = progress_callback(op, std::move(on_progress));
  return o;
}

ck::HostSpec spec_from(py::object const& spec, py::kwargs const& kwargs) {
  if (!spec.is_none()) {
    if (kwargs.size() > 0) throw py::type_error("Host() takes a HostSpec or keyword arguments, not both");
    if (py::isinstance<py::str>(spec))
      throw py::type_error("Host() takes a HostSpec or HostSpec's keyword arguments (Host(name=..., address=...))");
    return spec.cast<ck::HostSpec>();
  }
  return py::type::of<ck::HostSpec>()(**kwargs).cast<ck::HostSpec>();
}

using RunOutcome = std::pair<std::error_code, ck::RunResult>;
using TransferOutcome = std::pair<std::error_code, ck::TransferResult>;


// check=True / RunResult.check(): a command that ran to its end but failed,
// raised with the result attached (asyncssh's and Fabric's check).
[[noreturn]] void raise_command_failed(std::string const& what, ck::RunResult const& r) {
  std::string message = what + " exited with " + std::to_string(r.exit_code);
  if (r.signal) message += " (signal " + std::to_string(r.signal) + ")";
  auto err = ck::detail::tail_lines(r.stderr_text, 3);
  if (!err.empty()) message += ": " + err;
  raise_error(ck::make_error_code(ck::errc::command_failed), message, py::cast(r));
}

ck::RunResult host_run(ck::Host& host, py::object const& argv, py::object const& script, py::object const& env,
                       py::object const& cwd, py::object const& stdin_data, py::object const& timeout,
                       double kill_grace, std::size_t max_captured_bytes, py::object on_line, bool check) {
  refuse_blocking_on_runtime_thread("Host.run()");
  auto command = make_command(argv, script);
  auto options = make_run_options(env, cwd, stdin_data, timeout, kill_grace, max_captured_bytes);
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  options.on_line = line_callback(op, std::move(on_line));
  auto const shown = command.display();
  auto [ec, result] = run_blocking<ck::RunResult>(op, [&](auto handler) {
    host.async_run(std::move(command), std::move(options), std::move(handler));
  });
  if (ec) raise_error(ec, result.message, py::cast(result));
  if (check && !result.ok()) raise_command_failed(host.spec().name + ": `" + shown + "`", result);
  return std::move(result);
}

std::shared_ptr<Operation> host_start_run(ck::Host& host, py::object const& argv, py::object const& script,
                                          py::object const& env, py::object const& cwd, py::object const& stdin_data,
                                          py::object const& timeout, double kill_grace,
                                          std::size_t max_captured_bytes, py::object on_line, py::object done) {
  auto command = make_command(argv, script);
  auto options = make_run_options(env, cwd, stdin_data, timeout, kill_grace, max_captured_bytes);
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  options.on_line = line_callback(op, std::move(on_line));
  host.async_run(std::move(command), std::move(options),
                 asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](std::error_code ec,
                                                                                          ck::RunResult r) {
                   deliver(*op, d, [&]() -> py::object {
                     if (ec) return make_error(ec, r.message, py::cast(r));
                     return py::cast(std::move(r));
                   });
                 }));
  return op;
}

void host_connect(ck::Host& host) {
  refuse_blocking_on_runtime_thread("Host.connect()");
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  auto [ec, ignored] = run_blocking<int>(op, [&](auto handler) {
    host.async_connect([h = std::move(handler)](std::error_code e) mutable { std::move(h)(e, 0); });
  });
  if (ec) raise_error(ec, host.last_message());
}

std::shared_ptr<Operation> host_start_connect(ck::Host& host, py::object done) {
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  host.async_connect([op, d = share(std::move(done)), host](std::error_code ec) {
    deliver(*op, d, [&]() -> py::object {
      if (ec) return make_error(ec, host.last_message());
      return py::none();
    });
  });
  return op;
}

ck::TransferResult host_transfer(bool upload, ck::Host& host, py::object const& from, py::object const& to,
                                 py::object const& mode, py::object const& timeout, py::object on_progress) {
  refuse_blocking_on_runtime_thread(upload ? "Host.upload()" : "Host.download()");
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  auto options = make_transfer_options(op, mode, timeout, std::move(on_progress));
  auto a = path_string(from), b = path_string(to);
  auto [ec, result] = run_blocking<ck::TransferResult>(op, [&](auto handler) {
    if (upload)
      host.async_upload(std::move(a), std::move(b), std::move(options), std::move(handler));
    else
      host.async_download(std::move(a), std::move(b), std::move(options), std::move(handler));
  });
  if (ec) raise_error(ec, result.message);
  return result;
}

std::shared_ptr<Operation> host_start_transfer(bool upload, ck::Host& host, py::object const& from,
                                               py::object const& to, py::object const& mode,
                                               py::object const& timeout, py::object on_progress, py::object done) {
  check_same_runtime(host);
  auto op = Operation::create(host.get_executor());
  auto options = make_transfer_options(op, mode, timeout, std::move(on_progress));
  auto a = path_string(from), b = path_string(to);
  auto handler = asio::bind_cancellation_slot(
      op->slot(), [op, d = share(std::move(done))](std::error_code ec, ck::TransferResult r) {
        deliver(*op, d, [&]() -> py::object {
          if (ec) return make_error(ec, r.message);
          return py::cast(std::move(r));
        });
      });
  if (upload)
    host.async_upload(std::move(a), std::move(b), std::move(options), std::move(handler));
  else
    host.async_download(std::move(a), std::move(b), std::move(options), std::move(handler));
  return op;
}

void register_host_class(py::module_& m) {
  using H = ck::Host;
  py::class_<H>(m, "Host",
                "One machine, reached over the user's OpenSSH client (or locally). Operations run on one shared "
                "background I/O thread; blocking calls release the GIL and honour Ctrl-C.")
      .def(py::init([](py::object spec, py::kwargs kwargs) { return H(runtime().executor(), spec_from(spec, kwargs)); }),
           py::arg("spec") = py::none())
      .def_property_readonly("name", [](H const& h) { return h.name(); })
      .def_property_readonly("spec", [](H const& h) { return h.spec(); }, "A copy of the host's HostSpec.")
      .def_property_readonly("control_path", [](H const& h) { return h.control_path(); })
      .def_property_readonly("last_message", [](H const& h) { return h.last_message(); })
      .def("ssh_argv", &H::ssh_argv, "The ssh argv (without a remote command) every operation uses.")
      .def("run", &host_run, py::arg("argv") = py::none(), py::kw_only(), py::arg("script") = py::none(),
           py::arg("env") = py::none(), py::arg("cwd") = py::none(), py::arg("stdin") = py::none(),
           py::arg("timeout") = py::none(), py::arg("kill_grace") = 2.0,
           py::arg("max_captured_bytes") = kDefaultCapture, py::arg("on_line") = py::none(), py::arg("check") = false,
           "Run a command (argv list, or script= for /bin/sh) and wait for it. Raises clusterkit.Error when it could "
           "not run to its end (connection, timeout, cancellation); a non-zero exit is a result, unless check=True: "
           "then it raises clusterkit.Error('command_failed') with the RunResult as .result.\n\n"
           "on_line(stream, line) is called for every line as it arrives ('stdout' or 'stderr'), on clusterkit's "
           "I/O thread with the GIL held: keep it short. If it raises, the command is stopped and the exception "
           "is raised from run(). Ctrl-C stops the command (SIGKILL to its process group) before run() raises "
           "KeyboardInterrupt.")
      .def("_start_run", &host_start_run, py::arg("argv") = py::none(), py::kw_only(), py::arg("script") = py::none(),
           py::arg("env") = py::none(), py::arg("cwd") = py::none(), py::arg("stdin") = py::none(),
           py::arg("timeout") = py::none(), py::arg("kill_grace") = 2.0,
           py::arg("max_captured_bytes") = kDefaultCapture, py::arg("on_line") = py::none(), py::arg("done"),
           "Start a command; done(RunResult | clusterkit.Error) is called on the I/O thread when it ends.")
      .def("connect", &host_connect, "Open the shared connection now (raises clusterkit.Error).")
      .def("_start_connect", &host_start_connect, py::kw_only(), py::arg("done"))
      .def(
          "upload",
          [](H& h, py::object local, py::object remote, py::object mode, py::object timeout, py::object on_progress) {
            return host_transfer(true, h, local, remote, mode, timeout, std::move(on_progress));
          },
          py::arg("local"), py::arg("remote"), py::kw_only(), py::arg("mode") = py::none(),
          py::arg("timeout") = py::none(), py::arg("on_progress") = py::none(),
          "Copy a local file to the host; it appears under its final name only when complete.")
      .def(
          "download",
          [](H& h, py::object remote, py::object local, py::object mode, py::object timeout, py::object on_progress) {
            return host_transfer(false, h, remote, local, mode, timeout, std::move(on_progress));
          },
          py::arg("remote"), py::arg("local"), py::kw_only(), py::arg("mode") = py::none(),
          py::arg("timeout") = py::none(), py::arg("on_progress") = py::none(),
          "Copy a file from the host, placed atomically on this machine.")
      .def(
          "_start_upload",
          [](H& h, py::object local, py::object remote, py::object mode, py::object timeout, py::object on_progress,
             py::object done) {
            return host_start_transfer(true, h, local, remote, mode, timeout, std::move(on_progress), std::move(done));
          },
          py::arg("local"), py::arg("remote"), py::kw_only(), py::arg("mode") = py::none(),
          py::arg("timeout") = py::none(), py::arg("on_progress") = py::none(), py::arg("done"))
      .def(
          "_start_download",
          [](H& h, py::object remote, py::object local, py::object mode, py::object timeout, py::object on_progress,
             py::object done) {
            return host_start_transfer(false, h, remote, local, mode, timeout, std::move(on_progress),
                                       std::move(done));
          },
          py::arg("remote"), py::arg("local"), py::kw_only(), py::arg("mode") = py::none(),
          py::arg("timeout") = py::none(), py::arg("on_progress") = py::none(), py::arg("done"))
      .def("disconnect", &H::disconnect, py::call_guard<py::gil_scoped_release>(),
           "Close the shared connection (ssh -O exit). Safe when none is up.")
      .def("connection_alive", &H::connection_alive, py::call_guard<py::gil_scoped_release>(),
           "True when a shared connection is up and answering.")
      .def("__repr__", [](H const& h) {
        return "Host(" + py_repr(py::str(h.name())) + ", " + py_repr(py::str(h.spec().local ? "local" : h.spec().display())) +
               ")";
      });
}

// ---------------------------------------------------------------------------
// Fan-out

std::vector<ck::Host> host_list(py::handle hosts) {
  if (py::isinstance<py::str>(hosts)) throw py::type_error("hosts must be a list of Host");
  std::vector<ck::Host> out;
  for (auto h : py::iter(hosts)) {
    if (!py::isinstance<ck::Host>(h))
      throw py::type_error("hosts must be Host objects, not " + std::string(py::str(py::type::of(h).attr("__name__"))));
    out.push_back(h.cast<ck::Host>());
    check_same_runtime(out.back());
  }
  return out;
}

ck::FanoutOptions make_fanout_options(std::shared_ptr<Operation> const& op, std::size_t concurrency, bool fail_fast,
                                      py::object const& env, py::object const& cwd, py::object const& stdin_data,
                                      py::object const& timeout, double kill_grace, std::size_t max_captured_bytes,
                                      py::object on_line) {
  if (concurrency < 1) throw py::value_error("concurrency must be >= 1");
  ck::FanoutOptions o;
  o.concurrency = concurrency;
  o.fail_fast = fail_fast;
  o.run = make_run_options(env, cwd, stdin_data, timeout, kill_grace, max_captured_bytes);
  if (!on_line.is_none()) {
    o.on_line = [op, f = share(std::move(on_line))](std::string_view host, ck::OutputLine const& line) {
      invoke_callback(*op, [&] { (*f)(decode(host), py::str(stream_name(line.stream)), decode(line.text)); });
    };
  }
  return o;
}

std::vector<ck::HostOutcome> run_on_hosts(py::object const& hosts_in, py::object const& argv,
                                          py::object const& script, std::size_t concurrency, bool fail_fast,
                                          py::object const& env, py::object const& cwd, py::object const& stdin_data,
                                          py::object const& timeout, double kill_grace,
                                          std::size_t max_captured_bytes, py::object on_line) {
  refuse_blocking_on_runtime_thread("run_on_hosts()");
  auto hosts = host_list(hosts_in);
  auto command = make_command(argv, script);
  if (hosts.empty()) return {};
  auto op = Operation::create(hosts.front().get_executor());
  auto options = make_fanout_options(op, concurrency, fail_fast, env, cwd, stdin_data, timeout, kill_grace,
                                     max_captured_bytes, std::move(on_line));
  auto promise = std::make_shared<std::promise<std::vector<ck::HostOutcome>>>();
  auto future = promise->get_future();
  ck::async_run_on_hosts(std::move(hosts), std::move(command), std::move(options),
                         asio::bind_cancellation_slot(op->slot(), [op, promise](std::vector<ck::HostOutcome> v) {
                           op->mark_finished();
                           promise->set_value(std::move(v));
                         }));
  return wait_for(*op, future);
}

std::shared_ptr<Operation> start_run_on_hosts(py::object const& hosts_in, py::object const& argv,
                                              py::object const& script, std::size_t concurrency, bool fail_fast,
                                              py::object const& env, py::object const& cwd,
                                              py::object const& stdin_data, py::object const& timeout,
                                              double kill_grace, std::size_t max_captured_bytes, py::object on_line,
                                              py::object done) {
  auto hosts = host_list(hosts_in);
  auto command = make_command(argv, script);
  auto d = share(std::move(done));
  if (hosts.empty()) {
    // Complete as usual: on the I/O thread, never inside this call.
    auto op = Operation::create(runtime().executor());
    asio::post(runtime().executor(),
               [op, d] { deliver(*op, d, [] { return py::cast(std::vector<ck::HostOutcome>{}); }); });
    return op;
  }
  auto op = Operation::create(hosts.front().get_executor());
  auto options = make_fanout_options(op, concurrency, fail_fast, env, cwd, stdin_data, timeout, kill_grace,
                                     max_captured_bytes, std::move(on_line));
  ck::async_run_on_hosts(std::move(hosts), std::move(command), std::move(options),
                         asio::bind_cancellation_slot(op->slot(), [op, d](std::vector<ck::HostOutcome> v) {
                           deliver(*op, d, [&] { return py::cast(std::move(v)); });
                         }));
  return op;
}

std::vector<ck::TransferOutcome> upload_to_hosts(py::object const& hosts_in, py::object const& local,
                                                 py::object const& remote, std::size_t concurrency, bool fail_fast,
                                                 py::object const& mode, py::object const& timeout,
                                                 py::object on_progress) {
  refuse_blocking_on_runtime_thread("upload_to_hosts()");
  if (concurrency < 1) throw py::value_error("concurrency must be >= 1");
  auto hosts = host_list(hosts_in);
  if (hosts.empty()) return {};
  auto op = Operation::create(hosts.front().get_executor());
  ck::UploadFanoutOptions o;
  o.concurrency = concurrency;
  o.fail_fast = fail_fast;
  o.transfer = make_transfer_options(op, mode, timeout, py::none());
  if (!on_progress.is_none()) {
    o.on_progress = [op, f = share(std::move(on_progress))](std::string_view host, std::uint64_t done,
                                                            std::uint64_t total) {
      invoke_callback(*op, [&] { (*f)(decode(host), done, total); });
    };
  }
  auto promise = std::make_shared<std::promise<std::vector<ck::TransferOutcome>>>();
  auto future = promise->get_future();
  ck::async_upload_to_hosts(std::move(hosts), path_string(local), path_string(remote), std::move(o),
                            asio::bind_cancellation_slot(op->slot(), [op, promise](std::vector<ck::TransferOutcome> v) {
                              op->mark_finished();
                              promise->set_value(std::move(v));
                            }));
  return wait_for(*op, future);
}

void register_fanout(py::module_& m) {
  m.def("run_on_hosts", &run_on_hosts, py::arg("hosts"), py::arg("argv") = py::none(), py::kw_only(),
        py::arg("script") = py::none(), py::arg("concurrency") = 64, py::arg("fail_fast") = false,
        py::arg("env") = py::none(), py::arg("cwd") = py::none(), py::arg("stdin") = py::none(),
        py::arg("timeout") = py::none(), py::arg("kill_grace") = 2.0,
        py::arg("max_captured_bytes") = kDefaultCapture, py::arg("on_line") = py::none(),
        "Run one command on every host, `concurrency` at once; one HostOutcome per host, in the order given. "
        "on_line(host, stream, line) is called for every line as it arrives.");
  m.def("_start_run_on_hosts", &start_run_on_hosts, py::arg("hosts"), py::arg("argv") = py::none(), py::kw_only(),
        py::arg("script") = py::none(), py::arg("concurrency") = 64, py::arg("fail_fast") = false,
        py::arg("env") = py::none(), py::arg("cwd") = py::none(), py::arg("stdin") = py::none(),
        py::arg("timeout") = py::none(), py::arg("kill_grace") = 2.0,
        py::arg("max_captured_bytes") = kDefaultCapture, py::arg("on_line") = py::none(), py::arg("done"),
        "Start run_on_hosts; done(list[HostOutcome]) is called on the I/O thread when every host is done.");
  m.def("upload_to_hosts", &upload_to_hosts, py::arg("hosts"), py::arg("local"), py::arg("remote"), py::kw_only(),
        py::arg("concurrency") = 4, py::arg("fail_fast") = false, py::arg("mode") = py::none(),
        py::arg("timeout") = py::none(), py::arg("on_progress") = py::none(),
        "Copy one local file to `remote` on every host, `concurrency` at once (they share this machine's uplink); "
        "each placed atomically. One TransferOutcome per host, in the order given; fail_fast skips the rest after "
        "the first failure. on_progress(host, done, total) is called as bytes move. Ctrl-C cancels them all.");
}

}  // namespace

void register_host(py::module_& m) {
  register_spec(m);
  register_results(m);
  register_operation(m);
  register_host_class(m);
  register_fanout(m);
}

}  // namespace ckpy
