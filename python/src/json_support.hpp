// Helpers shared by the register_*.cpp files: JSON values
// across the boundary (through Python's json module, so dicts and lists come
// out as plain Python objects), and waiting on work that runs on other
// threads while staying responsive to Ctrl-C.
#pragma once

#include "support.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

namespace ckpy {

/// nlohmann::json -> dict / list / str / int / float / bool / None, built
/// directly (no text round trip: stream chunks convert thousands of these a
/// second). Invalid UTF-8 in strings becomes U+FFFD, as json.loads of
/// nlohmann's "replace" dump would give.
inline py::object json_to_python(nlohmann::json const& j) {
  auto text = [](std::string const& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
  };
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    case nlohmann::json::value_t::string: return text(j.get_ref<std::string const&>());
    case nlohmann::json::value_t::array: {
      py::list l(j.size());
      std::size_t i = 0;
      for (auto const& v : j) l[i++] = json_to_python(v);
      return l;
    }
    case nlohmann::json::value_t::object: {
      py::dict d;
      for (auto const& [k, v] : j.items()) d[text(k)] = json_to_python(v);
      return d;
    }
    default: return py::none();
  }
}

/// A JSON-compatible Python value (or a str holding JSON text) -> nlohmann::json.
inline nlohmann::json python_to_json(py::handle value, char const* what) {
  std::string text;
  if (py::isinstance<py::str>(value) || py::isinstance<py::bytes>(value)) {
    text = value.cast<std::string>();
  } else {
    static auto* dumps = new py::object(py::module_::import("json").attr("dumps"));
    try {
      text = (*dumps)(value).cast<std::string>();
    } catch (py::error_already_set& e) {
      throw py::type_error(std::string(what) + " must be JSON-compatible (dict, list, str, int, float, bool, None): " +
                           e.what());
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (nlohmann::json::exception const& e) {
    throw py::value_error(std::string(what) + " is not valid JSON: " + e.what());
  }
}


/// Runs `work(stop_token)` on a new thread and waits for it, the GIL
/// released and Ctrl-C honoured: on KeyboardInterrupt the stop token is
/// triggered, the thread joined, and the interrupt re-raised. `work` must
/// not touch Python (callbacks that do take the GIL themselves). A C++
/// exception from `work` is rethrown here.
template <class Work>
auto run_on_thread(Work&& work) -> decltype(work(std::stop_token{})) {
  using T = decltype(work(std::stop_token{}));
  using namespace std::chrono_literals;
  std::stop_source stop;
  std::packaged_task<T()> task([&work, token = stop.get_token()] { return work(token); });
  auto future = task.get_future();
  std::thread thread(std::move(task));
  for (;;) {
    {
      py::gil_scoped_release nogil;
      if (future.wait_for(100ms) == std::future_status::ready) break;
    }
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupt;
      stop.request_stop();
      {
        py::gil_scoped_release nogil;
        thread.join();
      }
      throw interrupt;
    }
  }
  thread.join();
  return future.get();
}

}  // namespace ckpy
