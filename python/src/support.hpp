// Shared by the register_*.cpp files of the Python binding: the one runtime
// every Host runs on, Python objects that may be dropped on any thread,
// operations that Python can wait on (Ctrl-C aware) or cancel, and the
// conversions between Python values and clusterkit's option structs.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "clusterkit/error.hpp"
#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/runtime.hpp"

namespace clusterkit {
struct VllmLogsOptions;
}

namespace ckpy {

namespace py = pybind11;
namespace ck = clusterkit;
namespace asio = boost::asio;

void register_errors(py::module_& m);
void register_host(py::module_& m);
void register_inventory(py::module_& m);
void register_lab(py::module_& m);
void register_model(py::module_& m);
void register_facts(py::module_& m);
void register_openai(py::module_& m);
void register_bench(py::module_& m);
void register_store(py::module_& m);
void register_serve(py::module_& m);

// ---------------------------------------------------------------------------
// The runtime

/// The process-wide runtime, created on first use and never destroyed (its
/// thread must not be joined during interpreter shutdown). A forked child
/// gets a fresh one.
ck::Runtime& runtime();
/// True on the runtime's own thread, where blocking calls would deadlock.
bool on_runtime_thread();
/// Raises clusterkit.Error(invalid_argument) when called on the runtime
/// thread (from an on_line / on_progress callback).
void refuse_blocking_on_runtime_thread(char const* what);

/// Raises clusterkit.Error(invalid_argument) for a Host made before
/// os.fork() (its I/O thread does not exist in the child).
void check_same_runtime(ck::Host const& host);

/// Set once the interpreter starts shutting down (atexit): from then on the
/// runtime thread neither calls into Python nor takes the GIL.
bool interpreter_exiting();
/// The atexit hook: stops every operation still running and lets the
/// runtime thread go quiet.
void shutdown_operations();
/// Called in a forked child.
void reset_after_fork();

// ---------------------------------------------------------------------------
// Python objects owned from C++ callbacks

/// A reference to a Python object that may be released on any thread: the
/// GIL is taken for the decref (or the reference is leaked during shutdown).
using SharedObject = std::shared_ptr<py::object>;
SharedObject share(py::object object);

/// Sets `exc` (an exception instance) as the current Python error and
/// throws so that pybind11 reports it.
[[noreturn]] void raise_instance(py::handle exc);

/// bytes -> str the way the os module does it (utf-8, surrogateescape).
py::str decode(std::string_view bytes);

// ---------------------------------------------------------------------------
// Errors

/// "timed_out", "connection_refused", ... (category:value for errors that
/// are not clusterkit's own).
std::string error_code_name(std::error_code ec);
/// An error code as pickled state, (category name, value), and back: the
/// categories are process-wide singletons, so the name travels, not the
/// address. A category this module does not know comes back as generic.
py::tuple pickle_error_code(std::error_code ec);
std::error_code unpickle_error_code(py::handle state);
/// A clusterkit.Error instance (not raised).
py::object make_error(std::error_code ec, std::string const& message, py::object result = py::none());
/// A result's `error` property: None when `ec` is empty, else make_error.
py::object error_or_none(std::error_code ec, std::string const& message);
/// Raise clusterkit.Error.
[[noreturn]] void raise_error(std::error_code ec, std::string const& message, py::object result = py::none());
[[noreturn]] void raise_error(ck::errc code, std::string const& message);

// ---------------------------------------------------------------------------
// Operations

/// One running operation, shared by the Python side (waiting or holding a
/// handle) and the completion handler on the runtime thread.
class Operation : public std::enable_shared_from_this<Operation> {
public:
  /// `cancel_executor`: where the cancellation is emitted; it must be the
  /// executor the operation starts on (the host's strand) so that a cancel
  /// requested right after the start is never emitted before the operation
  /// has connected its slot.
  static std::shared_ptr<Operation> create(asio::any_io_executor cancel_executor);
  ~Operation();

  /// Bind the completion handler to this (before starting; any thread).
  asio::cancellation_slot slot() { return signal_.slot(); }

  /// Ask the operation to stop; any thread, any number of times.
  void cancel(asio::cancellation_type type = asio::cancellation_type::terminal);
  /// Called by the completion handler (runtime thread).
  void mark_finished();
  bool finished() const { return finished_.load(); }
  /// True once cancel() was called (Ctrl-C, handle.cancel(), a callback that
  /// raised): later callbacks are not run, so that a callback cannot act
  /// (or raise, or interrupt again) on an operation the caller gave up.
  bool cancel_requested() const { return cancel_requested_.load(); }

  /// A Python callback raised: keep the first exception and cancel. GIL held.
  void record_callback_error(py::object exception);
  /// Convert the C++ or Python exception in flight into a recorded error.
  /// Call from a catch block, GIL held.
  void record_current_exception();
  bool callback_failed() const { return callback_failed_.load(); }
  /// The recorded exception instance, or None. GIL held.
  py::object callback_error() const;

private:
  explicit Operation(asio::any_io_executor cancel_executor);

  asio::any_io_executor cancel_executor_;
  asio::cancellation_signal signal_;  // touched on the runtime thread only once started
  std::atomic<bool> finished_{false};
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> callback_failed_{false};
  mutable std::mutex mutex_;
  SharedObject callback_error_;
};

/// Block until `future` is ready, the GIL released, waking every 100 ms to
/// run Python's signal handlers. If one raises (KeyboardInterrupt), the
/// operation is cancelled, waited for, and the exception propagates. A
/// callback's exception is raised once the operation has ended.
template <class T>
T wait_for(Operation& op, std::future<T>& future) {
  using namespace std::chrono_literals;
  for (;;) {
    {
      py::gil_scoped_release nogil;
      if (future.wait_for(100ms) == std::future_status::ready) break;
    }
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupt;
      op.cancel(asio::cancellation_type::terminal);
      {
        py::gil_scoped_release nogil;
        future.wait();
      }
      throw interrupt;
    }
  }
  T value = future.get();
  if (op.callback_failed()) raise_instance(op.callback_error());
  return value;
}

/// Start `initiate(handler)` for a handler of void(error_code, Value), and
/// wait as wait_for does; returns (error_code, value).
template <class Value, class Initiate>
std::pair<std::error_code, Value> run_blocking(std::shared_ptr<Operation> const& op, Initiate&& initiate) {
  auto promise = std::make_shared<std::promise<std::pair<std::error_code, Value>>>();
  auto future = promise->get_future();
  initiate(asio::bind_cancellation_slot(op->slot(), [op, promise](std::error_code ec, Value v) {
    op->mark_finished();
    promise->set_value({ec, std::move(v)});
  }));
  return wait_for(*op, future);
}

/// Runs `call()` (which calls a Python callback) with the GIL, for an
/// operation's callback on the runtime thread; an exception is recorded on
/// `op` (which cancels it) and later callbacks are skipped, as are those of
/// an operation being cancelled.
template <class Call>
void invoke_callback(Operation& op, Call&& call) {
  if (op.callback_failed() || op.cancel_requested() || interpreter_exiting()) return;
  py::gil_scoped_acquire gil;
  try {
    call();
  } catch (...) {
    op.record_current_exception();
  }
}

/// Delivers an asynchronous operation's outcome to `done` (runtime thread).
/// `payload` builds the Python value under the GIL.
template <class Build>
void deliver(Operation& op, SharedObject const& done, Build&& payload) {
  op.mark_finished();
  if (interpreter_exiting()) return;
  py::gil_scoped_acquire gil;
  try {
    py::object value = op.callback_failed() ? op.callback_error() : payload();
    (*done)(value);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("clusterkit: operation done callback");
  } catch (std::exception const& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    py::error_already_set err;
    err.discard_as_unraisable("clusterkit: operation done callback");
  }
}

// ---------------------------------------------------------------------------
// Conversions

/// Seconds as a float -> whole seconds, rounded up (HostSpec fields).
std::chrono::seconds whole_seconds(double seconds, char const* what);

/// The Python type's name of `value` ("str"), for messages.
std::string type_name(py::handle value);

/// `value` as a number (an int or a float; not a bool, a str or None):
/// TypeError naming `what` otherwise.
double number_of(py::handle value, char const* what);

/// `value` as an int (not a bool): TypeError naming `what` otherwise,
/// ValueError past what a 64-bit integer holds.
long long integer_of(py::handle value, char const* what);
double to_seconds(std::chrono::nanoseconds d);
/// Timeout in float seconds (None: no limit) -> milliseconds, rounded up.
std::chrono::milliseconds timeout_ms(py::object const& seconds, char const* what);

/// argv (a sequence of str) xor script -> Command.
ck::Command make_command(py::object const& argv, py::object const& script);
/// Options of a run; `on_line` is not set here.
ck::RunOptions make_run_options(py::object const& env, py::object const& cwd, py::object const& stdin_data,
                                py::object const& timeout, double kill_grace, std::size_t max_captured_bytes);
/// os.fspath(value) as a string.
std::string path_string(py::handle value);
/// A list of str or path-likes -> strings; a bare str is refused (it would
/// iterate as characters), naming `what`.
std::vector<std::string> string_list(py::handle value, char const* what);

/// The engine log's options from Python's arguments (register_serve.cpp):
/// follow needs on_line, which gets each line as a str.
ck::VllmLogsOptions vllm_logs_options(std::shared_ptr<Operation> const& op, unsigned tail, bool follow, py::object on_line);

}  // namespace ckpy
