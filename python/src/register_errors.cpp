// clusterkit.Error: one exception class for every failure, with the
// machine-readable `code` ("timed_out", ...) next to the sentence for a
// person. C++ clusterkit::Error is translated into it.
#include "support.hpp"

#include <pybind11/eval.h>

#include "core/text.hpp"

namespace ckpy {
namespace {

// The Python name of every errc value. A switch without `default`, so that
// the compiler points at a new errc value that has no name here yet (and
// tests/python/test_host_local.py compares ERROR_CODES with error.hpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic warning "-Wswitch"
char const* errc_name(ck::errc e) {
  switch (e) {
    case ck::errc::ok: return "ok";
    case ck::errc::ssh_not_found: return "ssh_not_found";
    case ck::errc::connection_refused: return "connection_refused";
    case ck::errc::host_unreachable: return "host_unreachable";
    case ck::errc::name_resolution_failed: return "name_resolution_failed";
    case ck::errc::authentication_failed: return "authentication_failed";
    case ck::errc::host_key_unknown: return "host_key_unknown";
    case ck::errc::host_key_changed: return "host_key_changed";
    case ck::errc::connection_lost: return "connection_lost";
    case ck::errc::ssh_failed: return "ssh_failed";
    case ck::errc::timed_out: return "timed_out";
    case ck::errc::cancelled: return "cancelled";
    case ck::errc::bad_working_directory: return "bad_working_directory";
    case ck::errc::bad_environment_name: return "bad_environment_name";
    case ck::errc::transfer_failed: return "transfer_failed";
    case ck::errc::local_file_error: return "local_file_error";
    case ck::errc::inventory_invalid: return "inventory_invalid";
    case ck::errc::unknown_host_or_group: return "unknown_host_or_group";
    case ck::errc::skipped: return "skipped";
    case ck::errc::lab_needs_root: return "lab_needs_root";
    case ck::errc::lab_failed: return "lab_failed";
    case ck::errc::program_missing: return "program_missing";
    case ck::errc::parse_error: return "parse_error";
    case ck::errc::invalid_argument: return "invalid_argument";
    case ck::errc::http_error: return "http_error";
    case ck::errc::tls_error: return "tls_error";
    case ck::errc::protocol_error: return "protocol_error";
    case ck::errc::mount_conflict: return "mount_conflict";
    case ck::errc::mount_failed: return "mount_failed";
    case ck::errc::download_failed: return "download_failed";
    case ck::errc::copy_failed: return "copy_failed";
    case ck::errc::model_incomplete: return "model_incomplete";
    case ck::errc::ray_failed: return "ray_failed";
    case ck::errc::engine_failed: return "engine_failed";
    case ck::errc::deployment_failed: return "deployment_failed";
    case ck::errc::command_failed: return "command_failed";
    case ck::errc::file_not_found: return "file_not_found";
  }
  return nullptr;
}
#pragma GCC diagnostic pop

py::object& error_type() {
  static auto* type = new py::object;  // leaked: outlives interpreter teardown order
  return *type;
}

}  // namespace

std::string error_code_name(std::error_code ec) {
  if (ec.category() == ck::error_category())
    if (char const* name = errc_name(static_cast<ck::errc>(ec.value()))) return name;
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value());
}

py::tuple pickle_error_code(std::error_code ec) {
  return py::make_tuple(std::string(ec.category().name()), ec.value());
}

std::error_code unpickle_error_code(py::handle state) {
  auto t = state.cast<py::tuple>();
  if (t.size() != 2) throw py::value_error("not a pickled error code");
  auto const category = t[0].cast<std::string>();
  int const value = t[1].cast<int>();
  if (value == 0) return {};
  if (category == ck::error_category().name()) return {value, ck::error_category()};
  if (category == std::system_category().name()) return {value, std::system_category()};
  return {value, std::generic_category()};
}

py::object make_error(std::error_code ec, std::string const& message, py::object result) {
  // Terminal-safe, as the CLI prints every error: a message quotes what a
  // host, a server, a file or an argument said, and `print(e)` must not
  // pass an ESC sequence on (nor fail on bytes that are not UTF-8).
  return error_type()(ck::detail::without_control_characters(message.empty() ? ec.message() : message), error_code_name(ec),
                      std::move(result));
}

py::object error_or_none(std::error_code ec, std::string const& message) {
  if (!ec) return py::none();
  return make_error(ec, message);
}

void raise_error(std::error_code ec, std::string const& message, py::object result) {
  raise_instance(make_error(ec, message, std::move(result)));
}

void raise_error(ck::errc code, std::string const& message) { raise_error(ck::make_error_code(code), message); }

void register_errors(py::module_& m) {
  // A plain Python class (exceptions cannot be pybind11 classes): defined
  // here so that the C++ side can create and raise it.
  py::dict ns;
  ns["__builtins__"] = py::module_::import("builtins");
  ns["__name__"] = "clusterkit";
  py::exec(R"PY(
class Error(Exception):
    """A clusterkit operation failed.

    ``str(e)`` / ``e.message`` is a sentence naming what failed and what to do;
    ``e.code`` is the machine-readable reason (one of ERROR_CODES, e.g. "timed_out");
    ``e.result`` is the RunResult with the output so far when a command was
    stopped (timeout, cancellation) or lost its connection, else None.
    """

    def __init__(self, message, code="invalid_argument", result=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code
        self.result = result

    def __reduce__(self):
        return (type(self), (self.message, self.code))

    def __repr__(self):
        return "%s(%r, code=%r)" % (_public_name(type(self)), self.message, self.code)


def _public_name(cls):
    return "clusterkit." + cls.__name__


# Subclasses that are also the builtin exceptions Python code already
# catches: `except TimeoutError` or `except ConnectionError` works on a
# clusterkit call as on a socket's, and `except clusterkit.Error` still
# catches everything. The class follows from `code`.
class _OSErrorMixin:
    # OSError's constructor reads (errno, strerror, filename) from its
    # arguments: give it the message alone, and print the message.
    def __new__(cls, message="", *args, **kwargs):
        return super().__new__(cls, message)

    def __str__(self):
        return self.message


class TimeoutError(_OSErrorMixin, Error, __builtins__.TimeoutError):
    """A command, a connection or a request ran past its time (code "timed_out")."""


class ConnectionError(_OSErrorMixin, Error, __builtins__.ConnectionError):
    """A host or server could not be reached, or the connection dropped (codes connection_refused,
    host_unreachable, name_resolution_failed, connection_lost, tls_error)."""


class FileNotFoundError(_OSErrorMixin, Error, __builtins__.FileNotFoundError):
    """A program, file or model that must exist does not (codes file_not_found, program_missing, ssh_not_found)."""


class InvalidArgument(Error, ValueError):
    """A setting, inventory or spec that cannot work, found before anything ran (codes invalid_argument,
    inventory_invalid, unknown_host_or_group, bad_environment_name, parse_error)."""


class Cancelled(Error):
    """The operation was cancelled (code "cancelled")."""


_ERROR_CLASSES = {
    "timed_out": TimeoutError,
    "connection_refused": ConnectionError,
    "host_unreachable": ConnectionError,
    "name_resolution_failed": ConnectionError,
    "connection_lost": ConnectionError,
    "tls_error": ConnectionError,
    "file_not_found": FileNotFoundError,
    "program_missing": FileNotFoundError,
    "ssh_not_found": FileNotFoundError,
    "invalid_argument": InvalidArgument,
    "inventory_invalid": InvalidArgument,
    "unknown_host_or_group": InvalidArgument,
    "bad_environment_name": InvalidArgument,
    "parse_error": InvalidArgument,
    "cancelled": Cancelled,
}


def _error_for(message, code, result=None):
    return _ERROR_CLASSES.get(code, Error)(message, code, result)
)PY",
           ns);
  py::object type = ns["Error"];
  error_type() = ns["_error_for"];
  m.attr("Error") = type;
  for (char const* name : {"TimeoutError", "ConnectionError", "FileNotFoundError", "InvalidArgument", "Cancelled", "_OSErrorMixin"})
    m.attr(name) = ns[name];

  // errc values are contiguous from ok = 0.
  py::list codes;
  for (int v = 0; char const* name = errc_name(static_cast<ck::errc>(v)); ++v) codes.append(py::str(name));
  m.attr("ERROR_CODES") = py::tuple(codes);

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (ck::Error const& e) {
      PyObject* instance = nullptr;
      try {
        auto obj = make_error(e.code(), e.what());
        instance = obj.release().ptr();
      } catch (py::error_already_set& failed) {
        failed.restore();
        return;
      }
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(instance)), instance);
      Py_DECREF(instance);
    }
  });
  // This module's own conversions and checks only (a local translator:
  // other pybind11 modules in the process keep their behaviour).
  // A value of the wrong type that reached a conversion without its own
  // check: TypeError (pybind11 would say RuntimeError), without the build
  // hint pybind11 appends.
  static constexpr auto wrong_type = [](std::string text) {
    if (auto cut = text.find(" (#define"); cut != std::string::npos) text.resize(cut);
    PyErr_SetString(PyExc_TypeError, ck::detail::without_control_characters("a value of the wrong type: " + text).c_str());
  };
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (py::value_error const& e) {
      // The bindings' own checks quote the value they refuse: terminal-safe
      // too (as make_error above).
      PyErr_SetString(PyExc_ValueError, ck::detail::without_control_characters(e.what()).c_str());
    } catch (py::type_error const& e) {
      PyErr_SetString(PyExc_TypeError, ck::detail::without_control_characters(e.what()).c_str());
    } catch (py::cast_error const& e) {
      wrong_type(e.what());
    } catch (py::reference_cast_error const& e) {
      wrong_type(e.what());
    }
  });
}

}  // namespace ckpy
