// The lab: real sshd hosts in network namespaces on this machine (root).
// The calls block for seconds; they release the GIL meanwhile.
#include "support.hpp"

#include "clusterkit/lab.hpp"

#include <chrono>
#include <future>
#include <stop_token>

namespace ckpy {
namespace {

// lab_up on a thread of its own while this one runs Python's signal handlers
// every 100 ms: Ctrl-C (KeyboardInterrupt) asks lab_up to stop, which kills
// the step's command and takes down what was made; the KeyboardInterrupt is
// raised once that is done.
ck::LabStatus lab_up_interruptible(ck::LabOptions const& options) {
  using namespace std::chrono_literals;
  std::stop_source stop;
  auto done = std::async(std::launch::async, [&options, token = stop.get_token()] { return ck::lab_up(options, token); });
  for (;;) {
    {
      py::gil_scoped_release nogil;
      if (done.wait_for(100ms) == std::future_status::ready) break;
    }
    if (PyErr_CheckSignals() != 0) {
      py::error_already_set interrupt;
      stop.request_stop();
      {
        py::gil_scoped_release nogil;
        done.wait();
      }
      try {
        done.get();  // Error(cancelled), or a lab that came up just then
      } catch (...) {
      }
      throw interrupt;
    }
  }
  return done.get();
}

}  // namespace

void register_lab(py::module_& m) {
  using HS = ck::LabHostStatus;
  py::class_<HS>(m, "LabHostStatus")
      .def(py::init<>())
      .def(py::init<HS const&>(), py::arg("other"))
      .def_readonly("name", &HS::name)
      .def_readonly("address", &HS::address)
      .def_readonly("netns", &HS::netns)
      .def_readonly("sshd_pid", &HS::sshd_pid, "The host's sshd as seen from this machine (pid 1 inside the host).")
      .def_readonly("running", &HS::running)
      .def_readonly("role", &HS::role, "head, worker, gpu, download, nas or '' (none).")
      .def_readonly("gpus", &HS::gpus, "SIMULATED GPUs the inventory declares for the host (0: none).")
      .def_readonly("docker", &HS::docker, "The host runs its own Docker engine.")
      .def_readonly("dockerd_pid", &HS::dockerd_pid, "dockerd as seen from this machine (0: not found).")
      .def_readonly("docker_running", &HS::docker_running, "dockerd alive and answering on its socket.")
      .def_readonly("docker_host", &HS::docker_host, "DOCKER_HOST on the host (unix://...).")
      .def("__repr__", [](HS const& h) {
        return "LabHostStatus(" + py::repr(py::str(h.name)).cast<std::string>() + ", " +
               py::repr(py::str(h.address)).cast<std::string>() + ", running=" + (h.running ? "True" : "False") + ")";
      });

  using S = ck::LabStatus;
  py::class_<S>(m, "LabStatus")
      .def(py::init<>())
      .def(py::init<S const&>(), py::arg("other"))
      .def_readonly("name", &S::name)
      .def_readonly("exists", &S::exists)
      .def_readonly("state_dir", &S::state_dir)
      .def_readonly("inventory_path", &S::inventory_path)
      .def_readonly("identity_file", &S::identity_file)
      .def_readonly("known_hosts_file", &S::known_hosts_file)
      .def_readonly("bridge", &S::bridge)
      .def_readonly("docker", &S::docker)
      .def_readonly("gpus", &S::gpus, "SIMULATED GPUs per GPU host (0: none).")
      .def_readonly("runtime_image", &S::runtime_image)
      .def_readonly("hosts", &S::hosts)
      .def("__repr__", [](S const& s) {
        return "LabStatus(" + py::repr(py::str(s.name)).cast<std::string>() + ", exists=" +
               (s.exists ? "True" : "False") + ", " + std::to_string(s.hosts.size()) + " hosts)";
      });

  m.def(
      "lab_up",
      [](int hosts, bool nas, std::string name, std::string subnet, py::object state_dir, bool docker, int gpus,
         py::object roles, std::string gpu_model, double gpu_memory_gib) {
        if (hosts < 1) throw py::value_error("hosts must be >= 1");
        if (gpus < 0) throw py::value_error("gpus must be >= 0");
        ck::LabOptions o;
        o.hosts = hosts;
        o.nas = nas;
        o.name = std::move(name);
        o.subnet = std::move(subnet);
        o.state_dir = state_dir.is_none() ? std::string() : path_string(state_dir);
        o.docker = docker;
        o.gpus = gpus;
        if (!roles.is_none()) o.roles = string_list(roles, "roles");
        o.gpu_model = std::move(gpu_model);
        o.gpu_memory_gib = gpu_memory_gib;
        return lab_up_interruptible(o);
      },
      py::arg("hosts") = 2, py::arg("nas") = false, py::arg("name") = "ck", py::arg("subnet") = "10.88.0",
      py::arg("state_dir") = "", py::kw_only(), py::arg("docker") = false, py::arg("gpus") = 0,
      py::arg("roles") = py::none(), py::arg("gpu_model") = "NVIDIA L20", py::arg("gpu_memory_gib") = 48.0,
      "Bring a lab up (root only); idempotent. docker=True runs a real Docker engine in each host (needs "
      "scripts/install-serving.sh); gpus=N declares N SIMULATED GPUs per GPU host in the inventory; roles gives h1..hN "
      "their roles in order (head, worker, gpu, download). Raises clusterkit.Error ('lab_needs_root', 'lab_failed', "
      "'invalid_argument', 'program_missing'). Ctrl-C stops it and takes down what it made, then raises "
      "KeyboardInterrupt.");
  m.def(
      "lab_status",
      [](std::string name, py::object state_dir) {
        auto dir = state_dir.is_none() ? std::string() : path_string(state_dir);
        py::gil_scoped_release nogil;
        return ck::lab_status(name, dir);
      },
      py::arg("name") = "ck", py::arg("state_dir") = "", "What is there now.");
  m.def(
      "lab_down",
      [](std::string name, py::object state_dir) {
        auto dir = state_dir.is_none() ? std::string() : path_string(state_dir);
        py::gil_scoped_release nogil;
        ck::lab_down(name, dir);
      },
      py::arg("name") = "ck", py::arg("state_dir") = "",
      "Stop every process of the lab and delete its namespaces, bridge and state. Safe when nothing is up. Runs to "
      "its end (seconds); a Ctrl-C meanwhile raises KeyboardInterrupt after.");
}

}  // namespace ckpy
