#include "support.hpp"
#include "clusterkit/shell.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <thread>
#include <vector>

namespace ckpy {

// ---------------------------------------------------------------------------
// The runtime

namespace {

struct RuntimeSlot {
  std::mutex mutex;
  ck::Runtime* runtime = nullptr;  // leaked on purpose: never joined at exit
  std::thread::id thread;
};

// Pointers, not objects: a forked child swaps in fresh ones and leaks the
// parent's (whose thread does not exist in the child).
RuntimeSlot* g_slot = new RuntimeSlot;

RuntimeSlot& runtime_slot() { return *g_slot; }

std::atomic<bool> g_exiting{false};

// Operations not finished yet, so that interpreter exit can stop them.
struct Registry {
  std::mutex mutex;
  std::map<Operation const*, std::weak_ptr<Operation>> live;
};

Registry* g_registry = new Registry;

Registry& registry() { return *g_registry; }

bool python_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

}  // namespace

ck::Runtime& runtime() {
  auto& slot = runtime_slot();
  std::lock_guard lock(slot.mutex);
  if (!slot.runtime) {
    slot.runtime = new ck::Runtime();
    std::promise<std::thread::id> id;
    auto future = id.get_future();
    asio::post(slot.runtime->executor(), [&id] { id.set_value(std::this_thread::get_id()); });
    slot.thread = future.get();
  }
  return *slot.runtime;
}

bool on_runtime_thread() {
  auto& slot = runtime_slot();
  std::lock_guard lock(slot.mutex);
  return slot.runtime && slot.thread == std::this_thread::get_id();
}

void refuse_blocking_on_runtime_thread(char const* what) {
  if (on_runtime_thread())
    raise_error(ck::errc::invalid_argument,
                std::string(what) +
                    " blocks, and was called from a clusterkit callback (on_line, on_progress or done), which runs on "
                    "clusterkit's I/O thread; start the operation from another thread, or use the *_async form");
}

void check_same_runtime(ck::Host const& host) {
  auto& theirs = asio::query(host.get_executor(), asio::execution::context);
  auto& ours = asio::query(runtime().executor(), asio::execution::context);
  if (&theirs != &ours)
    raise_error(ck::errc::invalid_argument,
                "host '" + host.name() +
                    "' was created before this process forked, and its I/O thread stayed with the parent; create "
                    "a new Host in this process");
}

bool interpreter_exiting() { return g_exiting.load() || python_finalizing(); }

void shutdown_operations() {
  g_exiting.store(true);
  std::vector<std::shared_ptr<Operation>> live;
  {
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    for (auto& [key, weak] : r.live)
      if (auto op = weak.lock()) live.push_back(std::move(op));
  }
  if (runtime_slot().runtime == nullptr) return;
  py::gil_scoped_release nogil;
  for (auto& op : live) op->cancel(asio::cancellation_type::terminal);
  // Give stopped commands a moment to report, then make sure any callback
  // that was already waiting for the GIL has returned.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto& op : live)
    while (!op->finished() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  live.clear();
  std::promise<void> drained;
  auto future = drained.get_future();
  asio::post(runtime().executor(), [&drained] { drained.set_value(); });
  future.wait_for(std::chrono::seconds(2));
}

void reset_after_fork() {
  // The parent's runtime thread does not exist here; its io_context shares
  // the parent's epoll instance. Leak it and start afresh on next use.
  g_slot = new RuntimeSlot;
  g_registry = new Registry;
}

// ---------------------------------------------------------------------------
// Python objects owned from C++

SharedObject share(py::object object) {
  return SharedObject(new py::object(std::move(object)), [](py::object* p) {
    if (interpreter_exiting()) {
      // Too late to take the GIL safely: leak the reference.
      p->release();
      delete p;
      return;
    }
    py::gil_scoped_acquire gil;
    delete p;
  });
}

void raise_instance(py::handle exc) {
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

py::str decode(std::string_view bytes) {
  PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "surrogateescape");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

// ---------------------------------------------------------------------------
// Operations

Operation::Operation(asio::any_io_executor cancel_executor) : cancel_executor_(std::move(cancel_executor)) {}

std::shared_ptr<Operation> Operation::create(asio::any_io_executor cancel_executor) {
  std::shared_ptr<Operation> op(new Operation(std::move(cancel_executor)));
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.live.emplace(op.get(), op);
  return op;
}

Operation::~Operation() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.live.erase(this);
}

void Operation::cancel(asio::cancellation_type type) {
  cancel_requested_.store(true);
  if (finished_.load()) return;
  asio::post(cancel_executor_, [self = shared_from_this(), type] {
    if (!self->finished_.load()) self->signal_.emit(type);
  });
}

void Operation::mark_finished() {
  finished_.store(true);
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.live.erase(this);
}

void Operation::record_callback_error(py::object exception) {
  {
    std::lock_guard lock(mutex_);
    if (callback_error_) return;
    callback_error_ = share(std::move(exception));
  }
  callback_failed_.store(true);
  cancel(asio::cancellation_type::terminal);
}

void Operation::record_current_exception() {
  try {
    throw;
  } catch (py::error_already_set& e) {
    py::object value = e.value();
    PyObject* tb = PyException_GetTraceback(value.ptr());
    if (!tb && e.trace()) PyException_SetTraceback(value.ptr(), e.trace().ptr());
    Py_XDECREF(tb);
    record_callback_error(std::move(value));
  } catch (ck::Error const& e) {
    record_callback_error(make_error(e.code(), e.what()));
  } catch (py::builtin_exception const& e) {
    e.set_error();
    py::error_already_set err;
    record_callback_error(err.value());
  } catch (std::exception const& e) {
    record_callback_error(py::reinterpret_borrow<py::object>(PyExc_RuntimeError)(e.what()));
  } catch (...) {
    record_callback_error(py::reinterpret_borrow<py::object>(PyExc_RuntimeError)("unknown C++ exception in a callback"));
  }
}

py::object Operation::callback_error() const {
  std::lock_guard lock(mutex_);
  return callback_error_ ? *callback_error_ : py::none();
}

// ---------------------------------------------------------------------------
// Conversions

std::chrono::seconds whole_seconds(double seconds, char const* what) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e9)
    throw py::value_error(std::string(what) + " must be a finite number of seconds >= 0");
  return std::chrono::seconds(static_cast<std::int64_t>(std::ceil(seconds)));
}

std::string type_name(py::handle value) { return py::str(py::type::of(value).attr("__name__")); }

// Anything that is a number to Python (int, float, numpy's scalars,
// Decimal, Fraction: __float__ or __index__) is taken; a str, bytes or bool
// is not, though float("1") would read one.
double number_of(py::handle value, char const* what) {
  if (value.is_none() || py::isinstance<py::bool_>(value) || py::isinstance<py::str>(value) || py::isinstance<py::bytes>(value) ||
      !(PyFloat_Check(value.ptr()) || PyIndex_Check(value.ptr()) || PyObject_HasAttrString(value.ptr(), "__float__")))
    throw py::type_error(std::string(what) + " must be a number, not " + type_name(value));
  double const v = PyFloat_AsDouble(value.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(what) + " is out of range (" + py::repr(value).cast<std::string>().substr(0, 40) + ")");
  }
  return v;
}

long long integer_of(py::handle value, char const* what) {
  if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr()))
    throw py::type_error(std::string(what) + " must be an int, not " + type_name(value));
  auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  auto const v = PyLong_AsLongLong(index.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(what) + " is out of range (" + py::repr(value).cast<std::string>().substr(0, 40) + ")");
  }
  return v;
}

double to_seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

std::chrono::milliseconds timeout_ms(py::object const& seconds, char const* what) {
  if (seconds.is_none()) return std::chrono::milliseconds(0);
  double s = number_of(seconds, what);
  if (!std::isfinite(s) || s <= 0 || s > 1e9)
    throw py::value_error(std::string(what) + " must be a positive number of seconds, or None for no limit");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(s * 1000.0)));
}

std::string path_string(py::handle value) {
  static auto* fspath = new py::object(py::module_::import("os").attr("fspath"));
  return (*fspath)(value).cast<std::string>();
}

std::vector<std::string> string_list(py::handle value, char const* what) {
  if (py::isinstance<py::str>(value)) throw py::type_error(std::string(what) + " must be a list of str, not a str");
  std::vector<std::string> out;
  for (auto item : py::iter(value)) {
    if (py::hasattr(item, "__fspath__")) out.push_back(path_string(item));
    else out.push_back(item.cast<std::string>());
  }
  return out;
}

ck::Command make_command(py::object const& argv, py::object const& script) {
  if (!argv.is_none() && !script.is_none()) throw py::value_error("pass either argv or script=, not both");
  if (argv.is_none() && script.is_none()) throw py::value_error("pass a command: an argv list, or script='...'");
  if (!script.is_none()) {
    if (!py::isinstance<py::str>(script)) throw py::type_error("script must be a str");
    return ck::Command::shell(script.cast<std::string>());
  }
  if (py::isinstance<py::str>(argv) || py::isinstance<py::bytes>(argv))
    throw py::type_error("argv must be a list of strings, e.g. ['ls', '-l']; for a shell command line use script='...'");
  std::vector<std::string> args;
  for (auto item : py::iter(argv)) {
    if (py::isinstance<py::str>(item) || py::isinstance<py::bytes>(item))
      args.push_back(item.cast<std::string>());
    else if (py::hasattr(item, "__fspath__"))
      args.push_back(path_string(item));
    else
      throw py::type_error("argv items must be str, bytes or os.PathLike, not " +
                           std::string(py::str(py::type::of(item).attr("__name__"))));
  }
  if (args.empty()) throw py::value_error("argv is empty");
  return ck::Command::args(std::move(args));
}

ck::RunOptions make_run_options(py::object const& env, py::object const& cwd, py::object const& stdin_data,
                                py::object const& timeout, double kill_grace, std::size_t max_captured_bytes) {
  ck::RunOptions o;
  if (!env.is_none()) {
    for (auto item : env.cast<py::dict>()) {
      if (!py::isinstance<py::str>(item.first)) throw py::type_error("env keys must be str");
      py::handle v = item.second;
      if (!py::isinstance<py::str>(v) && !py::isinstance<py::bytes>(v))
        throw py::type_error("env values must be str or bytes, not " +
                             std::string(py::str(py::type::of(v).attr("__name__"))) + " (for " +
                             item.first.cast<std::string>() + ")");
      auto name = item.first.cast<std::string>();
      // Refused here, before any host is reached (the script would refuse
      // it on each host, one failure per host).
      if (!ck::shell::is_valid_variable_name(name))
        throw ck::Error(ck::make_error_code(ck::errc::bad_environment_name),
                        "env: '" + name + "' is not a valid environment variable name; use letters, digits and "
                        "underscores, not starting with a digit");
      o.env[std::move(name)] = v.cast<std::string>();
    }
  }
  if (!cwd.is_none()) o.working_directory = path_string(cwd);
  if (!stdin_data.is_none()) {
    if (py::isinstance<py::str>(stdin_data)) {
      o.stdin_data = stdin_data.cast<std::string>();
    } else {
      // bytes, bytearray, memoryview...
      auto data = py::reinterpret_steal<py::object>(PyBytes_FromObject(stdin_data.ptr()));
      if (!data) throw py::error_already_set();
      o.stdin_data = data.cast<std::string>();
    }
  }
  o.timeout = timeout_ms(timeout, "timeout");
  if (!std::isfinite(kill_grace) || kill_grace < 0) throw py::value_error("kill_grace must be >= 0 seconds");
  o.kill_grace = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(kill_grace * 1000.0)));
  o.max_captured_bytes = max_captured_bytes;
  return o;
}

}  // namespace ckpy
