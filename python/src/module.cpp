// clusterkit._core: the C++ library bound with pybind11, one register_*
// function per area. The Pythonic layer (asyncio, conveniences) lives in
// python/clusterkit/__init__.py.
#include "support.hpp"
#include "clusterkit/version.hpp"

namespace py = pybind11;

namespace ckpy {
// register_deploy.cpp and register_pickling.cpp (declared here rather than
// in support.hpp, which every register_*.cpp includes).
void register_deploy(py::module_& m);
void register_pickling(py::module_& m);
}  // namespace ckpy

PYBIND11_MODULE(_core, m) {
  m.doc() = "clusterkit's C++ core. Import `clusterkit` rather than this module.";
  ckpy::register_errors(m);
  ckpy::register_host(m);
  ckpy::register_inventory(m);
  ckpy::register_lab(m);
  ckpy::register_model(m);
  ckpy::register_facts(m);
  ckpy::register_openai(m);
  ckpy::register_bench(m);
  ckpy::register_store(m);
  ckpy::register_serve(m);
  ckpy::register_deploy(m);
  ckpy::register_pickling(m);

  // Stop what is still running before the interpreter goes away, and give a
  // forked child its own I/O thread.
  py::module_::import("atexit").attr("register")(py::cpp_function(&ckpy::shutdown_operations));
  py::module_::import("os").attr("register_at_fork")(py::arg("after_in_child") =
                                                          py::cpp_function(&ckpy::reset_after_fork));
  m.attr("__version__") = clusterkit::version_string;
}
