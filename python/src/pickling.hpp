// Pickling of plain result structs, member by member.
//
// Results travel to other processes (multiprocessing pools, Ray tasks,
// concurrent.futures): they must pickle. A struct's state is the tuple of
// all of its members in declaration order, nested structs (bound to Python
// or not) as tuples too, containers element by element. Numbers go
// through pybind11's own casters; a few types get their own form: strings
// and paths as bytes (lossless: a log or a file's head need not be UTF-8),
// error codes as (category, value), JSON as its text, enums, durations and
// time points as numbers.
//
// The member lists live in register_pickling.cpp (CK_PICKLE_MEMBERS). Every
// member must be listed, or the copy silently loses it: the Python tests'
// assert_pickles (tests/python/pickles.py) compares every public field and
// to_json() of a real result before and after.
#pragma once

#include "support.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace ckpy::pickling {

/// members<T>::list: a tuple of T's member pointers (CK_PICKLE_MEMBERS).
template <class T>
struct members;

template <class T>
concept with_members = requires { members<T>::list; };

// std::vector<bool> is left to pybind11 (a list of bools).
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class A>
struct is_vector<std::vector<bool, A>> : std::false_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};
template <class T>
struct is_time_point : std::false_type {};
template <class C, class D>
struct is_time_point<std::chrono::time_point<C, D>> : std::true_type {};
template <class T>
struct is_duration : std::false_type {};
template <class R, class P>
struct is_duration<std::chrono::duration<R, P>> : std::true_type {};

template <class V>
py::object to_state(V const& v) {
  if constexpr (with_members<V>) {
    return std::apply([&](auto... m) { return py::object(py::make_tuple(to_state(v.*m)...)); }, members<V>::list);
  } else if constexpr (std::is_same_v<V, std::string>) {
    return py::bytes(v);
  } else if constexpr (std::is_same_v<V, std::filesystem::path>) {
    return py::bytes(v.native());
  } else if constexpr (std::is_same_v<V, std::error_code>) {
    return pickle_error_code(v);
  } else if constexpr (std::is_same_v<V, nlohmann::json>) {
    return py::str(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else if constexpr (std::is_enum_v<V>) {
    return py::int_(static_cast<long long>(v));  // bound to Python or not
  } else if constexpr (is_duration<V>::value) {
    return py::cast(v.count());
  } else if constexpr (is_time_point<V>::value) {
    return py::cast(v.time_since_epoch().count());  // a steady clock's: for processes on the same machine
  } else if constexpr (is_optional<V>::value) {
    return v ? to_state(*v) : py::object(py::none());
  } else if constexpr (is_pair<V>::value) {
    return py::make_tuple(to_state(v.first), to_state(v.second));
  } else if constexpr (is_vector<V>::value) {
    py::list l(v.size());
    std::size_t i = 0;
    for (auto const& x : v) l[i++] = to_state(x);
    return l;
  } else if constexpr (is_map<V>::value) {
    py::list l(v.size());
    std::size_t i = 0;
    for (auto const& [k, x] : v) l[i++] = py::make_tuple(to_state(k), to_state(x));
    return l;
  } else {
    return py::cast(v, py::return_value_policy::copy);
  }
}

template <class V>
void from_state(V& v, py::handle h) {
  if constexpr (with_members<V>) {
    auto t = py::reinterpret_borrow<py::tuple>(h);
    std::apply(
        [&](auto... m) {
          if (t.size() != sizeof...(m)) throw py::value_error("not a pickled clusterkit result (wrong number of fields)");
          std::size_t i = 0;
          (from_state(v.*m, t[i++]), ...);
        },
        members<V>::list);
  } else if constexpr (std::is_same_v<V, std::filesystem::path>) {
    v = std::filesystem::path(h.cast<std::string>());
  } else if constexpr (std::is_same_v<V, std::error_code>) {
    v = unpickle_error_code(h);
  } else if constexpr (std::is_same_v<V, nlohmann::json>) {
    v = nlohmann::json::parse(h.cast<std::string>(), nullptr, false);
  } else if constexpr (std::is_enum_v<V>) {
    v = static_cast<V>(h.cast<long long>());
  } else if constexpr (is_duration<V>::value) {
    v = V(h.cast<typename V::rep>());
  } else if constexpr (is_time_point<V>::value) {
    v = V(typename V::duration(h.cast<typename V::rep>()));
  } else if constexpr (is_optional<V>::value) {
    if (h.is_none()) {
      v.reset();
    } else {
      v.emplace();
      from_state(*v, h);
    }
  } else if constexpr (is_pair<V>::value) {
    auto t = py::reinterpret_borrow<py::tuple>(h);
    from_state(v.first, t[0]);
    from_state(v.second, t[1]);
  } else if constexpr (is_vector<V>::value) {
    v.clear();
    for (auto x : py::reinterpret_borrow<py::list>(h)) from_state(v.emplace_back(), x);
  } else if constexpr (is_map<V>::value) {
    v.clear();
    for (auto x : py::reinterpret_borrow<py::list>(h)) {
      auto kv = py::reinterpret_borrow<py::tuple>(x);
      typename V::key_type k{};
      from_state(k, kv[0]);
      from_state(v[k], kv[1]);
    }
  } else {
    v = h.cast<V>();
  }
}

/// Makes the registered class `cls` picklable through members<T>.
template <class T>
void define_pickle_on(py::object registered) {
  py::class_<T> cls{registered};
  cls.def(py::pickle([](T const& t) { return py::make_tuple(to_state(t)); },
                     [](py::tuple const& state) {
                       if (state.size() != 1) throw py::value_error("not a pickled clusterkit result");
                       T t{};
                       from_state(t, state[0]);
                       return t;
                     }));
}

/// The same for the class `name` of `m`.
template <class T>
void define_pickle(py::module_& m, char const* name) {
  define_pickle_on<T>(m.attr(name));
}

}  // namespace ckpy::pickling

/// The members of T, all of them, as &T::member (base members too).
#define CK_PICKLE_MEMBERS(T, ...)                          \
  template <>                                              \
  struct ckpy::pickling::members<T> {                      \
    static constexpr auto list = std::make_tuple(__VA_ARGS__); \
  }
