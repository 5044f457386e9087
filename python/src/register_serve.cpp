// Serving: RayCluster (ray_cluster.hpp), a Ray head and workers in Docker or
// bare, and VllmServe (vllm_serve.hpp), `vllm serve` on that cluster, with
// their results and the pure helpers (plans, parsers, diagnosis, argv).
//
// Operations on hosts run on the shared runtime, as in register_store.cpp:
// blocking forms wait with the GIL released (Ctrl-C cancels the commands on
// the hosts, then raises KeyboardInterrupt) and raise clusterkit.Error with
// the result's message when the operation fails (the result is the error's
// `.result`); start_* forms call `done` on the I/O thread with the result or
// that Error, for the asyncio layer in python/clusterkit/__init__.py.
// Progress callbacks run on the I/O thread with the GIL held; an exception in
// one stops the operation and is raised from the call.
#include "json_support.hpp"

#include "clusterkit/inventory.hpp"
#include "clusterkit/ray_cluster.hpp"
#include "clusterkit/vllm_serve.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>

#include <cmath>
#include <sstream>

namespace ckpy {
namespace {

// ---------------------------------------------------------------------------
// Small helpers

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }
std::string repr_str(std::string const& s) { return py_repr(py::str(s)); }
char const* py_bool(bool b) { return b ? "True" : "False"; }

std::string number(double v) { return py_repr(py::float_(v)); }

ck::Host one_host(py::handle host) {
  if (!py::isinstance<ck::Host>(host)) throw py::type_error("host must be a Host, not " + type_name(host));
  auto h = host.cast<ck::Host>();
  check_same_runtime(h);
  return h;
}

/// Seconds in Python (float) <-> whole seconds (rounded up).
std::chrono::seconds seconds_from(double v, char const* what) { return whole_seconds(v, what); }
double seconds_of(std::chrono::seconds s) { return double(s.count()); }

std::map<std::string, std::string> string_map(py::handle value, char const* what) {
  std::map<std::string, std::string> out;
  if (value.is_none()) return out;
  if (!py::isinstance<py::dict>(value)) throw py::type_error(std::string(what) + " must be a dict of str to str");
  for (auto item : value.cast<py::dict>()) {
    if (!py::isinstance<py::str>(item.first) || !py::isinstance<py::str>(item.second))
      throw py::type_error(std::string(what) + " must be a dict of str to str");
    out[item.first.cast<std::string>()] = item.second.cast<std::string>();
  }
  return out;
}

/// Keys only: values may be secrets (HF_TOKEN...).
std::string env_keys_repr(std::map<std::string, std::string> const& env) {
  std::vector<std::string> keys;
  for (auto const& [k, v] : env) keys.push_back(k);
  return py_repr(py::cast(keys));
}

// ---------------------------------------------------------------------------
// Operations: blocking and start_* forms


/// The sentence a failed operation is raised with (as the C++ blocking forms).
std::string failure_message(ck::RayUpResult const& r) { return r.message; }
std::string failure_message(ck::RayClusterStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); }
std::string failure_message(std::vector<ck::RayDownOutcome> const& v) {
  for (auto const& d : v)
    if (d.error) return d.message;
  return {};
}
std::string failure_message(std::vector<ck::RayHostLogs> const& v) {
  for (auto const& l : v)
    if (l.error) return l.message;
  return {};
}
std::string failure_message(ck::VllmUpResult const& r) { return r.message; }
std::string failure_message(ck::VllmReady const& r) { return r.message; }
std::string failure_message(ck::VllmStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); }
std::string failure_message(ck::VllmDownResult const& r) { return r.message; }

/// The Python value of an outcome: the result, or a clusterkit.Error carrying
/// it as `.result`. GIL held.
template <class Value>
py::object outcome(std::error_code ec, Value&& v) {
  if (!ec) return py::cast(std::forward<Value>(v));
  auto message = failure_message(v);
  return make_error(ec, message, py::cast(std::forward<Value>(v)));
}
// logs of the engine: the string is the text, or the failure's sentence.
py::object outcome(std::error_code ec, std::string&& text) {
  if (!ec) return py::str(text);
  return make_error(ec, text);
}

template <class Value>
Value value_or_raise(std::pair<std::error_code, Value>&& r) {
  if (r.first) {
    py::object e = outcome(r.first, std::move(r.second));
    raise_instance(e);
  }
  return std::move(r.second);
}

/// A handler of void(error_code, Value) that hands the outcome to `done`.
template <class Value>
auto deliver_outcome(std::shared_ptr<Operation> const& op, py::object done) {
  if (!PyCallable_Check(done.ptr())) throw py::type_error("done must be callable, not " + type_name(done));
  return asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](std::error_code ec, Value v) {
    deliver(*op, d, [&] { return outcome(ec, std::move(v)); });
  });
}

template <class Progress>
std::function<void(Progress const&)> progress_callback(std::shared_ptr<Operation> const& op, py::object fn) {
  if (fn.is_none()) return {};
  if (!PyCallable_Check(fn.ptr())) throw py::type_error("on_progress must be callable, not " + type_name(fn));
  return [op, f = share(std::move(fn))](Progress const& p) { invoke_callback(*op, [&] { (*f)(py::cast(Progress(p))); }); };
}

// ---------------------------------------------------------------------------
// Enums (accepted as the enum or its name)

ck::RayRuntimeKind runtime_from(py::handle value) {
  if (py::isinstance<ck::RayRuntimeKind>(value)) return value.cast<ck::RayRuntimeKind>();
  if (py::isinstance<py::str>(value)) {
    auto text = value.cast<std::string>();
    if (auto k = ck::ray_runtime_from_string(text)) return *k;
    throw py::value_error("runtime must be 'docker' or 'bare', not '" + text + "'");
  }
  throw py::type_error("runtime must be a RayRuntimeKind or 'docker', 'bare', not " + type_name(value));
}

ck::ExecutorBackend backend_from(py::handle value) {
  if (py::isinstance<ck::ExecutorBackend>(value)) return value.cast<ck::ExecutorBackend>();
  if (py::isinstance<py::str>(value)) {
    auto text = value.cast<std::string>();
    if (auto b = ck::executor_backend_from_string(text)) return *b;
    throw py::value_error("backend must be 'ray', 'mp' or 'multinode', not '" + text + "'");
  }
  throw py::type_error("backend must be an ExecutorBackend or 'ray', 'mp', 'multinode', not " + type_name(value));
}

std::string docker_gpus_from(std::string value) {
  if (value != "auto" && value != "all" && value != "none")
    throw py::value_error("docker_gpus must be 'auto', 'all' or 'none', not '" + value + "'");
  return value;
}

int checked_port(int port, char const* what) {
  if (port < 1 || port > 65535) throw py::value_error(std::string(what) + " must be 1-65535");
  return port;
}

// ---------------------------------------------------------------------------
// Ray: specs

ck::VolumeMount volume_from(py::handle value) {
  if (py::isinstance<ck::VolumeMount>(value)) return value.cast<ck::VolumeMount>();
  if (py::isinstance<py::str>(value)) {
    // "HOST:CONTAINER[:ro]", as `docker run -v` and `clusterkit ray up -v`.
    auto v = value.cast<std::string>();
    auto first = v.find(':');
    if (first == std::string::npos || first == 0 || first + 1 == v.size())
      throw py::value_error("volume '" + v + "' is not HOST:CONTAINER[:ro]");
    auto second = v.find(':', first + 1);
    ck::VolumeMount m{v.substr(0, first),
                      v.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1), false};
    if (second != std::string::npos) {
      if (v.substr(second + 1) != "ro") throw py::value_error("volume '" + v + "': the only option after the second ':' is ro");
      m.read_only = true;
    }
    return m;
  }
  throw py::type_error("volumes must be VolumeMount or 'HOST:CONTAINER[:ro]' strings, not " + type_name(value));
}

std::vector<ck::VolumeMount> volume_list(py::handle value) {
  if (py::isinstance<py::str>(value)) throw py::type_error("volumes must be a list, not a str");
  std::vector<ck::VolumeMount> out;
  for (auto item : py::iter(value)) out.push_back(volume_from(item));
  return out;
}

std::string volume_repr(ck::VolumeMount const& v) {
  return "VolumeMount(" + repr_str(v.host_path) + ", " + repr_str(v.container_path) + (v.read_only ? ", read_only=True" : "") + ")";
}

std::string ray_spec_repr(ck::RayClusterSpec const& s) {
  ck::RayClusterSpec d;
  std::ostringstream out;
  out << "RayClusterSpec(name=" << repr_str(s.name) << ", runtime=" << repr_str(std::string(ck::to_string(s.runtime)));
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (s.image != d.image) field("image", py::str(s.image));
  if (s.shm_size != d.shm_size) field("shm_size", py::str(s.shm_size));
  if (s.ipc_host) field("ipc_host", py::bool_(true));
  if (s.docker_gpus != d.docker_gpus) field("docker_gpus", py::str(s.docker_gpus));
  if (!s.volumes.empty()) {
    out << ", volumes=[";
    for (std::size_t i = 0; i < s.volumes.size(); ++i) out << (i ? ", " : "") << volume_repr(s.volumes[i]);
    out << "]";
  }
  if (!s.docker_args.empty()) field("docker_args", py::cast(s.docker_args));
  if (s.ray_command != d.ray_command) field("ray_command", py::str(s.ray_command));
  if (s.port != d.port) field("port", py::int_(s.port));
  if (s.dashboard_port != d.dashboard_port) field("dashboard_port", py::int_(s.dashboard_port));
  if (!s.env.empty()) out << ", env_keys=" << env_keys_repr(s.env);
  if (s.num_cpus) field("num_cpus", py::float_(*s.num_cpus));
  if (s.object_store_memory) field("object_store_memory", py::int_(*s.object_store_memory));
  if (!s.ray_start_args.empty()) field("ray_start_args", py::cast(s.ray_start_args));
  if (s.join_timeout != d.join_timeout) field("join_timeout", py::float_(seconds_of(s.join_timeout)));
  out << ")";
  return out.str();
}

void register_ray_spec(py::module_& m) {
  py::enum_<ck::RayRuntimeKind>(m, "RayRuntimeKind",
                                "Where each node's Ray runs. Wherever a RayRuntimeKind is taken, its name is too.")
      .value("docker", ck::RayRuntimeKind::docker,
             "One container per host (docker run --network host ...), Ray started inside it: the seed's way.")
      .value("bare", ck::RayRuntimeKind::bare, "Ray from a venv (or any installation) on the host itself, detached.");

  using V = ck::VolumeMount;
  py::class_<V>(m, "VolumeMount", "A `-v HOST:CONTAINER[:ro]` of the docker runtime.")
      .def(py::init([](py::object host_path, py::object container_path, bool read_only) {
             return V{path_string(host_path), path_string(container_path), read_only};
           }),
           py::arg("host_path"), py::arg("container_path"), py::arg("read_only") = false)
      .def_static(
          "parse", [](std::string const& text) { return volume_from(py::str(text)); }, py::arg("text"),
          "'HOST:CONTAINER[:ro]' -> VolumeMount. Raises ValueError.")
      .def_readwrite("host_path", &V::host_path)
      .def_readwrite("container_path", &V::container_path)
      .def_readwrite("read_only", &V::read_only)
      .def("__eq__",
           [](V const& a, V const& b) {
             return a.host_path == b.host_path && a.container_path == b.container_path && a.read_only == b.read_only;
           },
           py::is_operator())
      .def("__repr__", &volume_repr);

  using S = ck::RayClusterSpec;
  py::class_<S>(m, "RayClusterSpec",
                "What the Ray cluster is and how each node starts. Durations are seconds (whole seconds are used; "
                "fractions round up). RayCluster(spec, hosts) validates it.")
      .def(py::init([](std::string name, py::object runtime, std::string image, std::string shm_size, bool ipc_host,
                       std::string docker_gpus, py::object volumes, py::object docker_args, py::object ray_command,
                       int port, int dashboard_port, py::object env, std::optional<double> num_cpus,
                       std::optional<std::uint64_t> object_store_memory, py::object ray_start_args,
                       double join_timeout) {
             S s;
             s.name = std::move(name);
             s.runtime = runtime_from(runtime);
             s.image = std::move(image);
             s.shm_size = std::move(shm_size);
             s.ipc_host = ipc_host;
             s.docker_gpus = docker_gpus_from(std::move(docker_gpus));
             s.volumes = volume_list(volumes);
             s.docker_args = string_list(docker_args, "docker_args");
             s.ray_command = path_string(ray_command);
             s.port = checked_port(port, "port");
             s.dashboard_port = checked_port(dashboard_port, "dashboard_port");
             s.env = string_map(env, "env");
             s.num_cpus = num_cpus;
             s.object_store_memory = object_store_memory;
             s.ray_start_args = string_list(ray_start_args, "ray_start_args");
             s.join_timeout = seconds_from(join_timeout, "join_timeout");
             return s;
           }),
           py::kw_only(), py::arg("name") = "ck", py::arg("runtime") = "docker", py::arg("image") = "vllm/vllm-openai",
           py::arg("shm_size") = "10.24g", py::arg("ipc_host") = false, py::arg("docker_gpus") = "auto",
           py::arg("volumes") = py::list(), py::arg("docker_args") = py::list(), py::arg("ray_command") = "ray",
           py::arg("port") = 6379, py::arg("dashboard_port") = 8265, py::arg("env") = py::dict(),
           py::arg("num_cpus") = py::none(), py::arg("object_store_memory") = py::none(),
           py::arg("ray_start_args") = py::list(), py::arg("join_timeout") = 180.0)
      .def_readwrite("name", &S::name, "Names the cluster's things on every host: container ck-ray-NAME, temp dir "
                                       "/tmp/ck-ray-NAME. 1-32 of [a-z0-9-].")
      .def_property(
          "runtime", [](S const& s) { return s.runtime; }, [](S& s, py::object v) { s.runtime = runtime_from(v); })
      .def_readwrite("image", &S::image, "docker: the serving image (it must hold Ray, or get it through volumes).")
      .def_readwrite("shm_size", &S::shm_size, "docker: --shm-size (vLLM needs far more than Docker's 64 MB).")
      .def_readwrite("ipc_host", &S::ipc_host, "docker: --ipc host instead of a private /dev/shm.")
      .def_property(
          "docker_gpus", [](S const& s) { return s.docker_gpus; },
          [](S& s, std::string v) { s.docker_gpus = docker_gpus_from(std::move(v)); },
          "docker: --gpus all on 'auto' (hosts where nvidia-smi finds GPUs), 'all', 'none'.")
      .def_property(
          "volumes", [](S const& s) { return s.volumes; }, [](S& s, py::object v) { s.volumes = volume_list(v); },
          "docker: VolumeMounts (or 'HOST:CONTAINER[:ro]' strings when set); a copy.")
      .def_readwrite("docker_args", &S::docker_args, "Extra `docker run` arguments, as given.")
      .def_property(
          "ray_command", [](S const& s) { return s.ray_command; },
          [](S& s, py::object v) { s.ray_command = path_string(v); },
          "The ray program: 'ray' from PATH (docker: the image's), or a path such as /opt/venv/bin/ray.")
      .def_property(
          "port", [](S const& s) { return s.port; }, [](S& s, int v) { s.port = checked_port(v, "port"); },
          "The head's GCS port.")
      .def_property(
          "dashboard_port", [](S const& s) { return s.dashboard_port; },
          [](S& s, int v) { s.dashboard_port = checked_port(v, "dashboard_port"); },
          "The dashboard's port (bound to the head's 127.0.0.1).")
      .def_property(
          "env", [](S const& s) { return s.env; }, [](S& s, py::object v) { s.env = string_map(v, "env"); },
          "Set in every node's environment when it starts (a copy: assign a new dict to change it).")
      .def_readwrite("num_cpus", &S::num_cpus, "--num-cpus for every node; None: Ray counts them.")
      .def_readwrite("object_store_memory", &S::object_store_memory, "--object-store-memory in bytes; None: Ray's 30%.")
      .def_readwrite("ray_start_args", &S::ray_start_args, "Extra `ray start` arguments, as given.")
      .def_property(
          "join_timeout", [](S const& s) { return seconds_of(s.join_timeout); },
          [](S& s, double v) { s.join_timeout = seconds_from(v, "join_timeout"); },
          "Seconds up() waits for every node and GPU to show up in Ray.")
      .def("__copy__", [](S const& s) { return S(s); })
      .def("__deepcopy__", [](S const& s, py::dict) { return S(s); }, py::arg("memo"))
      .def("__repr__", &ray_spec_repr);

  using H = ck::RayHost;
  py::class_<H>(m, "RayHost", "One host of a Ray cluster: the Host, whether it is the head, its GPUs for Ray.")
      .def(py::init([](py::object host, bool head, std::optional<unsigned> gpus, bool gpus_simulated) {
             return H{one_host(host), head, gpus, gpus_simulated};
           }),
           py::arg("host"), py::kw_only(), py::arg("head") = false, py::arg("gpus") = py::none(),
           py::arg("gpus_simulated") = false)
      .def_property(
          "host", [](H const& h) { return h.host; }, [](H& h, py::object v) { h.host = one_host(v); })
      .def_property_readonly("name", [](H const& h) { return h.host.name(); })
      .def_readwrite("head", &H::head)
      .def_readwrite("gpus", &H::gpus, "--num-gpus: Ray's GPU resource on this node; None: what nvidia-smi -L finds.")
      .def_readwrite("gpus_simulated", &H::gpus_simulated,
                     "The GPUs are SIMULATED (the inventory says so): logical GPUs for Ray, no devices.")
      .def("__repr__", [](H const& h) {
        std::string s = "RayHost(" + repr_str(h.host.name());
        if (h.head) s += ", head=True";
        if (h.gpus) s += ", gpus=" + std::to_string(*h.gpus);
        if (h.gpus_simulated) s += ", gpus_simulated=True";
        return s + ")";
      });
}

// ---------------------------------------------------------------------------
// Ray: plans, probes and what Ray reports

/// A Command as Host.run's keyword arguments: {'argv': [...], 'script': None}
/// or {'argv': None, 'script': '...'}.
py::dict command_dict(ck::Command const& c) {
  py::dict d;
  d["argv"] = c.argv.empty() ? py::object(py::none()) : py::object(py::cast(c.argv));
  d["script"] = c.argv.empty() ? py::object(py::str(c.script)) : py::object(py::none());
  return d;
}

void register_ray_pure(py::module_& m) {
  using P = ck::RayNodePlan;
  py::class_<P>(m, "RayNodePlan", "Everything that defines one node, as planned (plan_ray_node).")
      .def_readonly("host", &P::host)
      .def_readonly("head", &P::head)
      .def_readonly("node_ip", &P::node_ip, "VLLM_HOST_IP, RAY_NODE_IP_ADDRESS and --node-ip-address.")
      .def_readonly("interface", &P::interface, "NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME.")
      .def_readonly("gpus", &P::gpus)
      .def_readonly("gpus_simulated", &P::gpus_simulated)
      .def_readonly("docker_gpus", &P::docker_gpus, "docker: --gpus all is passed.")
      .def_readonly("env", &P::env, "The node's environment, as set when it starts.")
      .def_readonly("ray_start_argv", &P::ray_start_argv)
      .def_readonly("docker_run_argv", &P::docker_run_argv, "docker: the whole `docker run` argv; bare: [].")
      .def_readonly("bare_start_script", &P::bare_start_script, "bare: the script that starts Ray detached; docker: ''.")
      .def_readonly("fingerprint", &P::fingerprint, "Equal fingerprints mean the same node.")
      .def("__repr__", [](P const& p) {
        return "RayNodePlan(" + repr_str(p.host) + ", head=" + py_bool(p.head) + ", node_ip=" + repr_str(p.node_ip) +
               ", gpus=" + (p.gpus ? std::to_string(*p.gpus) : std::string("None")) + ")";
      });

  using Pr = ck::RayNodeProbe;
  py::class_<Pr>(m, "RayNodeProbe", "What one host said before anything starts (parse_ray_probe).")
      .def(py::init<>())
      .def_readwrite("host", &Pr::host)
      .def_readwrite("node_ip", &Pr::node_ip, "The address by which the host reaches the head.")
      .def_readwrite("interface", &Pr::interface)
      .def_readwrite("gpus_found", &Pr::gpus_found, "`nvidia-smi -L` lines (0 when absent).")
      .def_readwrite("nvidia_smi", &Pr::nvidia_smi)
      .def_readwrite("docker", &Pr::docker)
      .def_readwrite("docker_error", &Pr::docker_error)
      .def_readwrite("docker_nvidia_runtime", &Pr::docker_nvidia_runtime)
      .def_readwrite("image_present", &Pr::image_present)
      .def_readwrite("container_state", &Pr::container_state, "'' (none), 'running', 'exited', ...")
      .def_readwrite("container_fingerprint", &Pr::container_fingerprint)
      .def_readwrite("ray_found", &Pr::ray_found)
      .def_readwrite("ray_error", &Pr::ray_error)
      .def_readwrite("cluster_pids", &Pr::cluster_pids, "bare: pids of this cluster's processes.")
      .def_readwrite("bare_fingerprint", &Pr::bare_fingerprint)
      .def_readwrite("python_version", &Pr::python_version)
      .def_readwrite("ray_version", &Pr::ray_version)
      .def_readwrite("port_in_use", &Pr::port_in_use, "Something listens on the head's GCS port (head only).")
      .def_readwrite("port_owner", &Pr::port_owner)
      .def("__repr__", [](Pr const& p) {
        return "RayNodeProbe(" + repr_str(p.host) + ", node_ip=" + repr_str(p.node_ip) + ", ray_version=" +
               repr_str(p.ray_version) + ", docker=" + py_bool(p.docker) + ")";
      });

  using R = ck::RayResource;
  py::class_<R>(m, "RayResource", "Ray's figures of one resource: used of total.")
      .def_readonly("used", &R::used)
      .def_readonly("total", &R::total)
      .def("__repr__", [](R const& r) { return "RayResource(used=" + number(r.used) + ", total=" + number(r.total) + ")"; });

  using N = ck::RayNodeState;
  py::class_<N>(m, "RayNodeState", "One node as Ray reports it.")
      .def_readonly("node_id", &N::node_id)
      .def_readonly("node_ip", &N::node_ip)
      .def_readonly("is_head", &N::is_head)
      .def_readonly("state", &N::state, "'ALIVE' or 'DEAD'.")
      .def_readonly("state_message", &N::state_message)
      .def_readonly("resources_total", &N::resources_total, "'GPU', 'CPU', 'memory', ... -> amount.")
      .def_readonly("usage", &N::usage,
                    "'GPU', 'CPU', 'memory' (bytes), 'object_store_memory' -> RayResource (used, total), from the "
                    "dashboard's node view; {} when it did not say.")
      .def_property_readonly("alive", &N::alive)
      .def("__repr__", [](N const& n) {
        return "RayNodeState(" + repr_str(n.node_ip) + ", " + repr_str(n.state) + (n.is_head ? ", is_head=True" : "") + ")";
      });

  using T = ck::RayStatusText;
  py::class_<T>(m, "RayStatusText", "`ray status`, parsed (parse_ray_status).")
      .def_readonly("active", &T::active, "Active node ids (without 'node_').")
      .def_readonly("pending", &T::pending)
      .def_readonly("failed", &T::failed)
      .def_readonly("usage", &T::usage, "'GPU', 'CPU', 'memory' (bytes), 'object_store_memory' -> RayResource.")
      .def_readonly("usage_notes", &T::usage_notes, "'GPU' -> '(4.0 used of 4.0 reserved in placement groups)'.")
      .def_readonly("pending_demands", &T::pending_demands)
      .def("__repr__", [](T const& t) {
        std::string gpu;
        if (auto g = t.usage.find("GPU"); g != t.usage.end()) gpu = ", GPU=" + number(g->second.used) + "/" + number(g->second.total);
        return "RayStatusText(active=" + std::to_string(t.active.size()) + ", pending=" + std::to_string(t.pending.size()) +
               ", failed=" + std::to_string(t.failed.size()) + gpu + ")";
      });

  using Rp = ck::RayReport;
  py::class_<Rp>(m, "RayReport", "What the head's status script returned (parse_ray_report).")
      .def_readonly("nodes", &Rp::nodes)
      .def_readonly("status", &Rp::status, "`ray status` when it was asked, else None.")
      .def_readonly("ray_version", &Rp::ray_version)
      .def_readonly("source", &Rp::source, "'dashboard' or 'ray status'.")
      .def_readonly("error", &Rp::error, "Set when Ray could not be asked (its own words).")
      .def("__repr__", [](Rp const& r) {
        return "RayReport(nodes=" + std::to_string(r.nodes.size()) + ", source=" + repr_str(r.source) +
               (r.error.empty() ? std::string() : ", error=" + repr_str(r.error)) + ")";
      });

  using D = ck::RayNodeDecision;
  py::class_<D>(m, "RayNodeDecision", "What decide_ray_nodes decided for one host.")
      .def_readonly("host", &D::host)
      .def_property_readonly("action", [](D const& d) { return std::string(ck::to_string(d.action)); },
                             "'keep', 'start', 'replace' or 'refuse'.")
      .def_readonly("reason", &D::reason, "keep/replace: what is there and why; refuse: what is wrong and the fix.")
      .def_property_readonly("refusal", [](D const& d) { return error_or_none(d.refusal, d.reason); },
                             "None, or a clusterkit.Error when refused.")
      .def("__repr__", [](D const& d) {
        return "RayNodeDecision(" + repr_str(d.host) + ", " + repr_str(std::string(ck::to_string(d.action))) + ")";
      });

  using HS = ck::RayHostStatus;
  py::class_<HS>(m, "RayHostStatus", "One host's part of the cluster's status.")
      .def_readonly("host", &HS::host)
      .def_readonly("head", &HS::head)
      .def_readonly("node_ip", &HS::node_ip)
      .def_readonly("ray_state", &HS::ray_state, "Ray's view of the node: 'ALIVE', 'DEAD' or 'MISSING'.")
      .def_readonly("runtime_state", &HS::runtime_state,
                    "The host's own view: 'running', 'exited', 'absent', 'unreachable' ('' when unknown).")
      .def_readonly("resources_total", &HS::resources_total)
      .def_readonly("usage", &HS::usage,
                    "'GPU', 'CPU', 'memory' (bytes), 'object_store_memory' -> RayResource: used and total on this "
                    "node as Ray accounts them; {} when Ray did not say (node not alive, no dashboard).")
      .def_readonly("ray_version", &HS::ray_version,
                    "Ray installed on the host (its venv's files); '' when only the image's own Python could say.")
      .def_readonly("python_version", &HS::python_version)
      .def_readonly("problem", &HS::problem)
      .def("__repr__", [](HS const& h) {
        return "RayHostStatus(" + repr_str(h.host) + ", " + repr_str(h.node_ip) + ", ray_state=" + repr_str(h.ray_state) +
               ", runtime_state=" + repr_str(h.runtime_state) + ")";
      });

  using CS = ck::RayClusterStatus;
  py::class_<CS>(m, "RayClusterStatus", "Ray's view and each host's, judged against what was planned.")
      .def_readonly("name", &CS::name)
      .def_readonly("runtime", &CS::runtime)
      .def_readonly("ray_version", &CS::ray_version)
      .def_readonly("hosts", &CS::hosts)
      .def_readonly("other_nodes", &CS::other_nodes, "Nodes Ray knows that are none of ours.")
      .def_readonly("usage", &CS::usage, "'GPU', 'CPU', ... -> RayResource.")
      .def_readonly("alive_nodes", &CS::alive_nodes)
      .def_readonly("expected_nodes", &CS::expected_nodes)
      .def_readonly("gpus_total", &CS::gpus_total)
      .def_readonly("expected_gpus", &CS::expected_gpus)
      .def_readonly("gpus_simulated", &CS::gpus_simulated, "The GPUs are SIMULATED (logical GPUs, no devices).")
      .def_readonly("healthy", &CS::healthy, "Every expected node alive with its GPUs, and nothing else wrong.")
      .def_readonly("degraded", &CS::degraded, "Some but not all: a node dead or missing.")
      .def_readonly("problems", &CS::problems, "Sentences: what is wrong, and the fix.")
      .def_readonly("source", &CS::source)
      .def("to_json", [](CS const& s) { return json_to_python(s.to_json()); }, "As a dict.")
      .def("summary", &CS::summary, "For people: one line per host, then the resources.")
      .def("__repr__", [](CS const& s) {
        return "RayClusterStatus(" + repr_str(s.name) + ", nodes=" + std::to_string(s.alive_nodes) + "/" +
               std::to_string(s.expected_nodes) + ", gpus=" + number(s.gpus_total) + "/" + number(s.expected_gpus) +
               (s.gpus_simulated ? " (SIMULATED)" : "") + ", " +
               (s.healthy ? "healthy" : s.degraded ? "DEGRADED" : "DOWN") + ")";
      });

  m.def("ray_runtime_from_string",
        [](std::string_view text) -> std::optional<ck::RayRuntimeKind> { return ck::ray_runtime_from_string(text); },
        py::arg("text"), "'docker' or 'bare' -> RayRuntimeKind; None otherwise.");
  m.def("ray_container_name", [](std::string_view name) { return ck::ray_container_name(name); }, py::arg("cluster_name"),
        "The container a cluster uses on every host: 'ck-ray-NAME'.");
  m.def("ray_temp_dir", &ck::ray_temp_dir, py::arg("spec"), "The temp dir Ray uses on every host (or in the container).");
  m.def("validate_ray_cluster_spec", py::overload_cast<ck::RayClusterSpec const&>(&ck::validate), py::arg("spec"),
        "Raise clusterkit.Error('invalid_argument') naming the field when the spec cannot work.");
  m.def("plan_ray_node", &ck::plan_ray_node, py::arg("spec"), py::arg("host"), py::arg("head"), py::arg("node_ip"),
        py::arg("interface"), py::arg("gpus"), py::arg("docker_gpus"), py::arg("head_ip"), py::arg("gpus_simulated") = false,
        "The node as it will be started: environment, `ray start` argv, `docker run` argv or bare script, fingerprint.");
  m.def(
      "ray_runtime_command",
      [](ck::RayClusterSpec const& spec, std::string const& script, bool with_stdin) {
        return command_dict(ck::ray_runtime_command(spec, script, with_stdin));
      },
      py::arg("spec"), py::arg("script"), py::arg("with_stdin") = false,
      "`script` run in the cluster's runtime (inside the container, or with the venv of ray_command first on PATH), "
      "as {'argv': ..., 'script': ...} for Host.run(**command).");
  m.def("ray_probe_script", &ck::ray_probe_script, py::arg("spec"), py::arg("head_address"), py::arg("is_head"),
        "The script each host runs before anything starts (parse_ray_probe reads its output).");
  m.def("ray_route_script", &ck::ray_route_script, py::arg("head_address"),
        "Only the route part of the probe (node IP and interface towards the head).");
  m.def("parse_ray_probe", &ck::parse_ray_probe, py::arg("host"), py::arg("output"),
        "The RayNodeProbe in a probe's output. Raises clusterkit.Error('parse_error').");
  m.def("parse_ray_status", &ck::parse_ray_status, py::arg("text"),
        "`ray status` (or the dashboard's /api/cluster_status?format=1) parsed. Raises clusterkit.Error('parse_error').");
  m.def("parse_ray_node_usage", &ck::parse_ray_node_usage, py::arg("text"),
        "The dashboard's per-node usage (/nodes?view=summary, data.nodeLogicalResources) -> node id -> "
        "resource -> RayResource. Raises clusterkit.Error('parse_error').");
  m.def("parse_ray_nodes_json", &ck::parse_ray_nodes_json, py::arg("text"),
        "The dashboard's /api/v0/nodes answer. Raises clusterkit.Error('parse_error').");
  m.def("parse_ray_amount", &ck::parse_ray_amount, py::arg("text"),
        "'40.13GiB', '512.00MiB', '0B' in bytes; None when not an amount.");
  m.def("ray_stop_script", &ck::ray_stop_script, py::arg("spec"),
        "Stops this cluster's node on a host (container, or its processes by pid) and removes what it left.");
  m.def("ray_node_state_script", &ck::ray_node_state_script, py::arg("spec"), "Prints '@@ck-ray-state STATE'.");
  m.def("ray_logs_script", &ck::ray_logs_script, py::arg("spec"), py::arg("tail") = 200,
        "The node's output and Ray's own logs, last `tail` lines of each.");
  m.def("ray_start_script", &ck::ray_start_script, py::arg("spec"), py::arg("plan"), py::arg("replace") = false, py::arg("versions") = "",
        "Starts the planned node and returns when Ray says it started or failed.");
  m.def("ray_status_script", &ck::ray_status_script, py::arg("spec"), py::arg("with_ray_status") = true,
        "The status script run on the head, in the runtime (parse_ray_report reads its output).");
  m.def("parse_ray_report", &ck::parse_ray_report, py::arg("output"), "What the head's status script returned.");
  m.def("decide_ray_nodes", &ck::decide_ray_nodes, py::arg("spec"), py::arg("plans"), py::arg("probes"),
        "keep, start, replace or refuse, per host, from the plans and the probes (same order, head first).");
  m.def("evaluate_ray_cluster", &ck::evaluate_ray_cluster, py::arg("spec"), py::arg("plans"), py::arg("report"),
        py::arg("runtime_states"),
        "Judge Ray's report against the plans and each host's own view (runtime_states[i], '' when unknown).");
  m.def("explain_ray_failure", &ck::explain_ray_failure, py::arg("host"), py::arg("output"), py::arg("spec"),
        "Why a node did not start or join, in one sentence with the fix, from what it printed.");
  m.def(
      "ray_spec_from_vars",
      [](py::object const& vars, std::optional<ck::RayClusterSpec> base) {
        return ck::ray_spec_from_vars(vars.is_none() ? nlohmann::json() : python_to_json(vars, "vars"),
                                      base ? *base : ck::RayClusterSpec{});
      },
      py::arg("vars"), py::arg("base") = py::none(),
      "The cluster an inventory's vars describe, over `base`: runtime, runtime_image, serve_venv (ray_command "
      "VENV/bin/ray, mounted read-only in docker), shm_size, ipc_host, ray_port, ray_env. Raises "
      "clusterkit.Error('inventory_invalid') naming the field.");
  m.def(
      "ray_hosts_from_inventory",
      [](std::vector<ck::InventoryHost> const& hosts, py::object const& handles, std::string const& head) {
        std::vector<ck::Host> hs;
        if (py::isinstance<py::str>(handles)) throw py::type_error("handles must be a list of Host");
        for (auto h : py::iter(handles)) hs.push_back(one_host(h));
        return ck::ray_hosts_from_inventory(hosts, std::move(hs), head);
      },
      py::arg("hosts"), py::arg("handles"), py::arg("head") = "",
      "The cluster's hosts from inventory hosts and their Host handles (same order): the head is `head`, else the "
      "host with role head, else the first; GPUs from each host's gpus: entry; nas/download-only hosts left out.");
}

// ---------------------------------------------------------------------------
// Ray: results and RayCluster

std::vector<ck::RayHost> ray_host_list(py::handle hosts) {
  if (py::isinstance<py::str>(hosts)) throw py::type_error("hosts must be a list of RayHost or Host");
  std::vector<ck::RayHost> out;
  for (auto h : py::iter(hosts)) {
    if (py::isinstance<ck::RayHost>(h)) {
      out.push_back(h.cast<ck::RayHost>());
      check_same_runtime(out.back().host);
    } else if (py::isinstance<ck::Host>(h)) {
      out.push_back(ck::RayHost{one_host(h)});
    } else {
      throw py::type_error("hosts must be RayHost or Host objects, not " + type_name(h));
    }
  }
  return out;
}

std::shared_ptr<Operation> cluster_operation(ck::RayCluster const& c) { return Operation::create(c.head().host.get_executor()); }

/// RayCluster.from_inventory: as `cluster_of` in src/cli/cluster_args.cpp.
ck::RayCluster cluster_from_inventory(py::object const& inventory, std::string const& selector, py::object const& head,
                                      std::optional<ck::RayClusterSpec> const& base) {
  if (!py::isinstance<ck::Inventory>(inventory))
    throw py::type_error("inventory must be an Inventory, not " + type_name(inventory));
  auto const& inv = inventory.cast<ck::Inventory const&>();
  auto selected = inv.select(selector);
  // clusterkit.Inventory keeps one Host per name (shared connections): use it.
  bool cached = py::hasattr(inventory, "host");
  std::vector<ck::Host> handles;
  for (auto const& h : selected) {
    if (cached) handles.push_back(one_host(inventory.attr("host")(h.spec.name)));
    else handles.push_back(ck::Host(runtime().executor(), h.spec));
  }
  auto head_name = head.is_none() ? std::string() : head.cast<std::string>();
  auto hosts = ck::ray_hosts_from_inventory(selected, std::move(handles), head_name);
  std::string head_host;
  for (auto const& r : hosts)
    if (r.head) head_host = r.host.name();
  ck::InventoryHost const* h = &selected.front();
  for (auto const& s : selected)
    if (s.spec.name == head_host) h = &s;
  auto vars = h->extra.contains("vars") ? h->extra.at("vars") : nlohmann::json();
  auto spec = ck::ray_spec_from_vars(vars, base ? *base : ck::RayClusterSpec{});
  return ck::RayCluster(std::move(spec), std::move(hosts));
}

std::string cluster_repr(ck::RayCluster const& c) {
  std::vector<std::string> workers;
  for (std::size_t i = 1; i < c.hosts().size(); ++i) workers.push_back(c.hosts()[i].host.name());
  return "RayCluster(" + repr_str(c.spec().name) + ", runtime=" + repr_str(std::string(ck::to_string(c.spec().runtime))) +
         ", head=" + repr_str(c.head().host.name()) + ", workers=" + py_repr(py::cast(workers)) + ")";
}

void register_ray_cluster(py::module_& m) {
  using P = ck::RayProgress;
  py::class_<P>(m, "RayProgress", "Where RayCluster.up() is, for a progress line.")
      .def_readonly("phase", &P::phase, "'probe', 'start-head', 'start-workers', 'wait', 'ready'.")
      .def_readonly("alive_nodes", &P::alive_nodes)
      .def_readonly("expected_nodes", &P::expected_nodes)
      .def_readonly("gpus", &P::gpus)
      .def_readonly("expected_gpus", &P::expected_gpus)
      .def_readonly("message", &P::message, "'waiting for h2 (10.88.0.12)'.")
      .def("__repr__", [](P const& p) {
        return "RayProgress(" + repr_str(p.phase) + ", nodes=" + std::to_string(p.alive_nodes) + "/" +
               std::to_string(p.expected_nodes) + ", gpus=" + number(p.gpus) + "/" + number(p.expected_gpus) + ", " +
               repr_str(p.message) + ")";
      });

  using O = ck::RayNodeOutcome;
  py::class_<O>(m, "RayNodeOutcome", "One host's part of RayCluster.up().")
      .def_readonly("host", &O::host)
      .def_property_readonly("action", [](O const& o) { return std::string(ck::to_string(o.action)); },
                             "'keep', 'start', 'replace' or 'refuse'.")
      .def_readonly("message", &O::message, "What was done, or what is wrong and the fix.")
      .def_property_readonly("error", [](O const& o) { return error_or_none(o.error, o.message); },
                             "None, or a clusterkit.Error ('program_missing', 'timed_out', ...).")
      .def_property_readonly("ok", [](O const& o) { return !o.error; })
      .def_readonly("probed_ms", &O::probed_ms, "Milliseconds from the start of up(): the probe answered.")
      .def_readonly("started_ms", &O::started_ms, "... the node was started (0 when kept).")
      .def_readonly("joined_ms", &O::joined_ms, "... Ray reported it alive.")
      .def("__repr__", [](O const& o) {
        std::string s = "RayNodeOutcome(" + repr_str(o.host) + ", " + repr_str(std::string(ck::to_string(o.action)));
        if (o.error) s += ", error=" + repr_str(error_code_name(o.error));
        return s + ")";
      });

  using U = ck::RayUpResult;
  py::class_<U>(m, "RayUpResult", "What RayCluster.up() did.")
      .def_readonly("nodes", &U::nodes, "One RayNodeOutcome per host, the head first.")
      .def_readonly("status", &U::status, "The cluster as Ray reported it at the end.")
      .def_readonly("plans", &U::plans)
      .def_readonly("total_ms", &U::total_ms)
      .def_readonly("message", &U::message, "What happened, or why it failed and the fix.")
      .def("to_json", [](U const& r) { return json_to_python(r.to_json()); }, "As a dict.")
      .def("__repr__", [](U const& r) {
        std::vector<std::string> actions;
        for (auto const& n : r.nodes) actions.push_back(n.host + ":" + std::string(ck::to_string(n.action)));
        return "RayUpResult(" + py_repr(py::cast(actions)) + ", nodes=" + std::to_string(r.status.alive_nodes) + "/" +
               std::to_string(r.status.expected_nodes) + ", gpus=" + number(r.status.gpus_total) + ", " +
               repr_str(r.message) + ")";
      });

  using D = ck::RayDownOutcome;
  py::class_<D>(m, "RayDownOutcome", "One host's part of RayCluster.down().")
      .def_readonly("host", &D::host)
      .def_readonly("removed", &D::removed, "'container ck-ray-ck', '5 Ray processes', 'nothing'.")
      .def_readonly("message", &D::message)
      .def_property_readonly("error", [](D const& d) { return error_or_none(d.error, d.message); })
      .def_property_readonly("ok", [](D const& d) { return !d.error; })
      .def("__repr__", [](D const& d) {
        std::string s = "RayDownOutcome(" + repr_str(d.host) + ", removed=" + repr_str(d.removed);
        if (d.error) s += ", error=" + repr_str(error_code_name(d.error));
        return s + ")";
      });

  using L = ck::RayHostLogs;
  py::class_<L>(m, "RayHostLogs", "One host's logs: the node's output and Ray's raylet/GCS logs, each under a header.")
      .def_readonly("host", &L::host)
      .def_readonly("text", &L::text)
      .def_readonly("message", &L::message)
      .def_property_readonly("error", [](L const& l) { return error_or_none(l.error, l.message); })
      .def("__repr__", [](L const& l) {
        return "RayHostLogs(" + repr_str(l.host) + ", " + std::to_string(l.text.size()) + " chars" +
               (l.error ? ", error=" + repr_str(error_code_name(l.error)) : std::string()) + ")";
      });

  using C = ck::RayCluster;
  py::class_<C>(m, "RayCluster",
                "A Ray head and a worker on every other host, in Docker (one container ck-ray-NAME per host) or bare "
                "(processes under /tmp/ck-ray-NAME), each a fixed thing that a re-run reuses and down() removes. "
                "RayCluster(spec, hosts) with hosts RayHost or Host (the head: the one marked head, else the only "
                "one), or RayCluster.from_inventory(inventory). Blocking calls release the GIL; Ctrl-C stops the "
                "commands on the hosts. A failed operation raises clusterkit.Error with the result as its .result. "
                "on_progress(RayProgress) runs on clusterkit's I/O thread with the GIL held: keep it short; if it "
                "raises, the operation is stopped and the exception raised from the call.")
      .def(py::init([](std::optional<ck::RayClusterSpec> spec, py::object const& hosts) {
             return C(spec ? *spec : ck::RayClusterSpec{}, ray_host_list(hosts));
           }),
           py::arg("spec"), py::arg("hosts"))
      .def(py::init([](C const& other) { return C(other); }), py::arg("other"), "A copy (sharing the hosts' connections).")
      .def_static(
          "from_inventory",
          [](py::object const& inventory, std::string const& selector, py::object const& head,
             std::optional<ck::RayClusterSpec> spec) { return cluster_from_inventory(inventory, selector, head, spec); },
          py::arg("inventory"), py::arg("selector") = "all", py::arg("head") = py::none(), py::arg("spec") = py::none(),
          "The cluster of an inventory, as `clusterkit ray` builds it: the selector's hosts (nas/download-only hosts "
          "left out), the head `head`, else the host with role head, else the first; GPUs from each host's gpus: "
          "entry (SIMULATED ones labelled); the spec is `spec` (default RayClusterSpec()) completed by the head's "
          "vars (runtime, runtime_image, serve_venv, shm_size, ipc_host, ray_port, ray_env), which win. With a "
          "clusterkit.Inventory the hosts are its Host objects (shared connections).")
      .def_property_readonly("spec", [](C const& c) { return c.spec(); }, "A copy of the RayClusterSpec.")
      .def_property_readonly("hosts", [](C const& c) { return c.hosts(); }, "The head first, then the workers.")
      .def_property_readonly("head", [](C const& c) { return c.head(); })
      .def(
          "runtime_command",
          [](C const& c, std::string const& script, bool with_stdin) {
            return command_dict(c.runtime_command(script, with_stdin));
          },
          py::arg("script"), py::arg("with_stdin") = false,
          "`script` run in the cluster's runtime, as {'argv': ..., 'script': ...}: host.run(**command).")
      .def(
          "up",
          [](C const& c, py::object on_progress) {
            refuse_blocking_on_runtime_thread("RayCluster.up()");
            auto op = cluster_operation(c);
            auto progress = progress_callback<ck::RayProgress>(op, std::move(on_progress));
            return value_or_raise(run_blocking<ck::RayUpResult>(
                op, [&](auto handler) { c.async_up(std::move(progress), std::move(handler)); }));
          },
          py::arg("on_progress") = py::none(),
          "Probe every host, refuse what cannot work (nothing is started then), start the head, then every worker "
          "at once, and wait until Ray reports every node and GPU. A cluster already up as planned is left alone "
          "(actions 'keep'). Returns a RayUpResult; raises clusterkit.Error naming the host and the fix.")
      .def(
          "status",
          [](C const& c) {
            refuse_blocking_on_runtime_thread("RayCluster.status()");
            auto op = cluster_operation(c);
            return value_or_raise(
                run_blocking<ck::RayClusterStatus>(op, [&](auto handler) { c.async_status(std::move(handler)); }));
          },
          "Ray's view and each host's: nodes alive/dead/missing, resources, versions. Raises only when the head "
          "cannot be asked; an unhealthy cluster is a result (see .healthy, .problems).")
      .def(
          "down",
          [](C const& c) {
            refuse_blocking_on_runtime_thread("RayCluster.down()");
            auto op = cluster_operation(c);
            return value_or_raise(
                run_blocking<std::vector<ck::RayDownOutcome>>(op, [&](auto handler) { c.async_down(std::move(handler)); }));
          },
          "Stop Ray and remove the containers (or the processes, by pid, and the temp dir) on every host, workers "
          "first. Idempotent. One RayDownOutcome per host; raises when a host could not be cleaned.")
      .def(
          "logs",
          [](C const& c, unsigned tail) {
            refuse_blocking_on_runtime_thread("RayCluster.logs()");
            auto op = cluster_operation(c);
            ck::RayLogsOptions o;
            o.tail = tail;
            return value_or_raise(
                run_blocking<std::vector<ck::RayHostLogs>>(op, [&](auto handler) { c.async_logs(o, std::move(handler)); }));
          },
          py::arg("tail") = 200u, "Each host's node output and Ray logs, last `tail` lines of each (0: all).")
      .def(
          "_start_up",
          [](C const& c, py::object on_progress, py::object done) {
            auto op = cluster_operation(c);
            auto progress = progress_callback<ck::RayProgress>(op, std::move(on_progress));
            c.async_up(std::move(progress), deliver_outcome<ck::RayUpResult>(op, std::move(done)));
            return op;
          },
          py::arg("on_progress") = py::none(), py::kw_only(), py::arg("done"),
          "Start up(); done(RayUpResult | clusterkit.Error) is called on the I/O thread.")
      .def(
          "_start_status",
          [](C const& c, py::object done) {
            auto op = cluster_operation(c);
            c.async_status(deliver_outcome<ck::RayClusterStatus>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start status(); done(RayClusterStatus | clusterkit.Error).")
      .def(
          "_start_down",
          [](C const& c, py::object done) {
            auto op = cluster_operation(c);
            c.async_down(deliver_outcome<std::vector<ck::RayDownOutcome>>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start down(); done(list[RayDownOutcome] | clusterkit.Error).")
      .def(
          "_start_logs",
          [](C const& c, unsigned tail, py::object done) {
            auto op = cluster_operation(c);
            ck::RayLogsOptions o;
            o.tail = tail;
            c.async_logs(o, deliver_outcome<std::vector<ck::RayHostLogs>>(op, std::move(done)));
            return op;
          },
          py::arg("tail") = 200u, py::kw_only(), py::arg("done"),
          "Start logs(); done(list[RayHostLogs] | clusterkit.Error).")
      .def("__repr__", &cluster_repr);
}

// ---------------------------------------------------------------------------
// vLLM: spec and pure pieces

std::string serve_spec_repr(ck::VllmServeSpec const& s) {
  ck::VllmServeSpec d;
  std::ostringstream out;
  out << "VllmServeSpec(" << repr_str(s.model);
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (s.name != d.name) field("name", py::str(s.name));
  if (!s.served_model_name.empty()) field("served_model_name", py::str(s.served_model_name));
  if (s.tensor_parallel != d.tensor_parallel) field("tensor_parallel", py::int_(s.tensor_parallel));
  if (s.pipeline_parallel != d.pipeline_parallel) field("pipeline_parallel", py::int_(s.pipeline_parallel));
  if (s.max_model_len) field("max_model_len", py::int_(*s.max_model_len));
  if (s.gpu_memory_utilization) field("gpu_memory_utilization", py::float_(*s.gpu_memory_utilization));
  if (!s.dtype.empty()) field("dtype", py::str(s.dtype));
  if (s.host != d.host) field("host", py::str(s.host));
  if (s.port != d.port) field("port", py::int_(s.port));
  if (s.backend != d.backend) field("backend", py::str(std::string(ck::to_string(s.backend))));
  if (!s.extra_args.empty()) field("extra_args", py::cast(s.extra_args));
  if (!s.env.empty()) out << ", env_keys=" << env_keys_repr(s.env);
  if (s.vllm_command != d.vllm_command) field("vllm_command", py::str(s.vllm_command));
  // The key is a secret: only whether there is one.
  if (!s.api_key.empty()) out << ", api_key='***'";
  if (s.no_api_key) field("no_api_key", py::bool_(true));
  if (!s.api_key_file.empty()) field("api_key_file", py::str(s.api_key_file));
  if (s.ready_timeout != d.ready_timeout) field("ready_timeout", py::float_(seconds_of(s.ready_timeout)));
  if (s.placement_group_timeout != d.placement_group_timeout)
    field("placement_group_timeout", py::float_(seconds_of(s.placement_group_timeout)));
  out << ")";
  return out.str();
}

unsigned at_least_one(unsigned v, char const* what) {
  if (v < 1) throw py::value_error(std::string(what) + " must be >= 1");
  return v;
}

void register_vllm_pure(py::module_& m) {
  py::enum_<ck::ExecutorBackend>(m, "ExecutorBackend",
                                 "How vLLM spreads over the hosts. Wherever an ExecutorBackend is taken, its name is too.")
      .value("ray", ck::ExecutorBackend::ray, "--distributed-executor-backend ray: the engine on the head, workers by Ray.")
      .value("mp", ck::ExecutorBackend::mp, "--distributed-executor-backend mp: one host, worker processes.")
      .value("multinode", ck::ExecutorBackend::multinode,
             "vLLM's Ray-free form: vllm serve on every host with --nnodes/--node-rank/--master-addr.");

  using S = ck::VllmServeSpec;
  py::class_<S>(m, "VllmServeSpec",
                "What `vllm serve` runs and how it is followed. Durations are seconds (whole seconds; fractions round "
                "up). The API key is a secret: it reaches the engine through a 0600 file and VLLM_API_KEY, never an "
                "argv, a log line or repr().")
      .def(py::init([](std::string model, std::string name, std::string served_model_name, unsigned tensor_parallel,
                       unsigned pipeline_parallel, std::optional<std::uint64_t> max_model_len,
                       std::optional<double> gpu_memory_utilization, std::string dtype, std::string host, int port,
                       py::object backend, py::object extra_args, py::object env, py::object vllm_command,
                       std::string api_key, bool no_api_key, py::object api_key_file, double ready_timeout,
                       double placement_group_timeout) {
             S s;
             s.model = std::move(model);
             s.name = std::move(name);
             s.served_model_name = std::move(served_model_name);
             s.tensor_parallel = at_least_one(tensor_parallel, "tensor_parallel");
             s.pipeline_parallel = at_least_one(pipeline_parallel, "pipeline_parallel");
             s.max_model_len = max_model_len;
             s.gpu_memory_utilization = gpu_memory_utilization;
             s.dtype = std::move(dtype);
             s.host = std::move(host);
             s.port = checked_port(port, "port");
             s.backend = backend_from(backend);
             s.extra_args = string_list(extra_args, "extra_args");
             s.env = string_map(env, "env");
             s.vllm_command = path_string(vllm_command);
             s.api_key = std::move(api_key);
             s.no_api_key = no_api_key;
             s.api_key_file = api_key_file.is_none() ? std::string() : path_string(api_key_file);
             s.ready_timeout = seconds_from(ready_timeout, "ready_timeout");
             s.placement_group_timeout = seconds_from(placement_group_timeout, "placement_group_timeout");
             return s;
           }),
           py::arg("model") = "", py::kw_only(), py::arg("name") = "ck", py::arg("served_model_name") = "",
           py::arg("tensor_parallel") = 1u, py::arg("pipeline_parallel") = 1u, py::arg("max_model_len") = py::none(),
           py::arg("gpu_memory_utilization") = py::none(), py::arg("dtype") = "", py::arg("host") = "0.0.0.0",
           py::arg("port") = 8000, py::arg("backend") = "ray", py::arg("extra_args") = py::list(),
           py::arg("env") = py::dict(), py::arg("vllm_command") = "vllm", py::arg("api_key") = "",
           py::arg("no_api_key") = false, py::arg("api_key_file") = py::none(), py::arg("ready_timeout") = 1800.0,
           py::arg("placement_group_timeout") = 180.0)
      .def_static("from_layout", &S::from_layout, py::arg("layout"), py::arg("model"), py::arg("served_model_name") = "",
                  "The spec the planner's Layout implies: TP, PP, max model length and GPU memory utilisation as "
                  "`clusterkit plan` prints them.")
      .def_readwrite("model", &S::model, "The model as the engine sees it (in the container: /models/...).")
      .def_readwrite("name", &S::name, "Names the engine's files on the head (/tmp/ck-vllm-NAME) and the key file.")
      .def_readwrite("served_model_name", &S::served_model_name, "--served-model-name; '' = the folder's name.")
      .def_property(
          "tensor_parallel", [](S const& s) { return s.tensor_parallel; },
          [](S& s, unsigned v) { s.tensor_parallel = at_least_one(v, "tensor_parallel"); })
      .def_property(
          "pipeline_parallel", [](S const& s) { return s.pipeline_parallel; },
          [](S& s, unsigned v) { s.pipeline_parallel = at_least_one(v, "pipeline_parallel"); })
      .def_readwrite("max_model_len", &S::max_model_len)
      .def_readwrite("gpu_memory_utilization", &S::gpu_memory_utilization)
      .def_readwrite("dtype", &S::dtype, "'' = vLLM's auto.")
      .def_readwrite("host", &S::host, "Where the API listens, on the head.")
      .def_property(
          "port", [](S const& s) { return s.port; }, [](S& s, int v) { s.port = checked_port(v, "port"); })
      .def_property(
          "backend", [](S const& s) { return s.backend; }, [](S& s, py::object v) { s.backend = backend_from(v); })
      .def_readwrite("extra_args", &S::extra_args, "Extra `vllm serve` arguments, as given.")
      .def_property(
          "env", [](S const& s) { return s.env; }, [](S& s, py::object v) { s.env = string_map(v, "env"); },
          "The engine's environment on top of the node's (a copy: assign a new dict to change it).")
      .def_property(
          "vllm_command", [](S const& s) { return s.vllm_command; },
          [](S& s, py::object v) { s.vllm_command = path_string(v); },
          "The vllm program: 'vllm' from PATH, or a venv's bin/vllm.")
      .def_readwrite("api_key", &S::api_key,
                     "The API key; '' = the one stored for this engine, or a new one. Never shown by repr().")
      .def_readwrite("no_api_key", &S::no_api_key, "Serve without a key (anyone who reaches the port can use it).")
      .def_property(
          "api_key_file", [](S const& s) { return s.api_key_file; },
          [](S& s, py::object v) { s.api_key_file = v.is_none() ? std::string() : path_string(v); },
          "Where the key is kept on this machine (mode 0600); '' = $XDG_CONFIG_HOME/clusterkit/keys/NAME.key.")
      .def_property(
          "ready_timeout", [](S const& s) { return seconds_of(s.ready_timeout); },
          [](S& s, double v) { s.ready_timeout = seconds_from(v, "ready_timeout"); })
      .def_property(
          "placement_group_timeout", [](S const& s) { return seconds_of(s.placement_group_timeout); },
          [](S& s, double v) { s.placement_group_timeout = seconds_from(v, "placement_group_timeout"); },
          "Seconds the engine may wait for Ray's placement group before wait_ready() gives up with the diagnosis.")
      .def("__copy__", [](S const& s) { return S(s); })
      .def("__deepcopy__", [](S const& s, py::dict) { return S(s); }, py::arg("memo"))
      .def("__repr__", &serve_spec_repr);

  using LP = ck::VllmLogProgress;
  py::class_<LP>(m, "VllmLogProgress", "What the engine's log says about its start so far (read_vllm_log).")
      .def(py::init<>())
      .def_readonly("phase", &LP::phase, "'starting', 'loading', 'kv-cache', 'compiling', 'api', 'ready'.")
      .def_readonly("version", &LP::version)
      .def_readonly("weights_seconds", &LP::weights_seconds)
      .def_readonly("kv_cache_tokens", &LP::kv_cache_tokens, "'GPU/CPU KV cache size: N tokens' (per worker).")
      .def_readonly("max_concurrency", &LP::max_concurrency)
      .def_readonly("init_engine_seconds", &LP::init_engine_seconds)
      .def_readonly("waiting_for_placement_group", &LP::waiting_for_placement_group)
      .def_readonly("api_started", &LP::api_started)
      .def_readonly("startup_complete", &LP::startup_complete)
      .def_readonly("last", &LP::last, "The last interesting line.")
      .def_readonly("phases", &LP::phases, "Every phase the log went through, in order.")
      .def("__repr__", [](LP const& p) {
        return "VllmLogProgress(" + repr_str(p.phase) + (p.version.empty() ? "" : ", version=" + repr_str(p.version)) +
               ", kv_cache_tokens=" + (p.kv_cache_tokens ? std::to_string(*p.kv_cache_tokens) : std::string("None")) +
               ", startup_complete=" + py_bool(p.startup_complete) + ")";
      });

  using Dg = ck::VllmDiagnosis;
  py::class_<Dg>(m, "VllmDiagnosis", "A log that ended badly, explained (diagnose_vllm_log).")
      .def_readonly("cause", &Dg::cause,
                    "'placement-group', 'platform-no-ray', 'gloo-interface', 'shm', 'model-missing', "
                    "'version-mismatch', 'no-gpu', 'kv-cache', 'nccl-interface', 'out-of-memory', 'port-in-use', "
                    "'no-compiler', 'engine-dead', 'unknown'.")
      .def_readonly("message", &Dg::message, "What happened and the fix.")
      .def_readonly("evidence", &Dg::evidence, "The log line it was read from.")
      .def("__repr__", [](Dg const& d) { return "VllmDiagnosis(" + repr_str(d.cause) + ", " + repr_str(d.message) + ")"; });

  using Cx = ck::VllmDiagnosisContext;
  py::class_<Cx>(m, "VllmDiagnosisContext", "What the log does not say, for diagnose_vllm_log.")
      .def(py::init([](double cluster_gpus, unsigned tensor_parallel, unsigned pipeline_parallel, int port,
                       std::string model) {
             return Cx{cluster_gpus, tensor_parallel, pipeline_parallel, port, std::move(model)};
           }),
           py::kw_only(), py::arg("cluster_gpus") = 0.0, py::arg("tensor_parallel") = 1u,
           py::arg("pipeline_parallel") = 1u, py::arg("port") = 8000, py::arg("model") = "")
      .def_readwrite("cluster_gpus", &Cx::cluster_gpus)
      .def_readwrite("tensor_parallel", &Cx::tensor_parallel)
      .def_readwrite("pipeline_parallel", &Cx::pipeline_parallel)
      .def_readwrite("port", &Cx::port)
      .def_readwrite("model", &Cx::model)
      .def("__repr__", [](Cx const& c) {
        return "VllmDiagnosisContext(cluster_gpus=" + number(c.cluster_gpus) + ", tensor_parallel=" +
               std::to_string(c.tensor_parallel) + ", pipeline_parallel=" + std::to_string(c.pipeline_parallel) +
               ", port=" + std::to_string(c.port) + ", model=" + repr_str(c.model) + ")";
      });

  using W = ck::VllmWatch;
  py::class_<W>(m, "VllmWatch", "One look at the engine (parse_vllm_watch).")
      .def_readonly("state_dir", &W::state_dir)
      .def_readonly("alive", &W::alive)
      .def_readonly("pid", &W::pid)
      .def_readonly("uptime_seconds", &W::uptime_seconds)
      .def_readonly("log_size", &W::log_size)
      .def_readonly("log", &W::log, "The log from the offset asked for.")
      .def_readonly("fingerprint", &W::fingerprint)
      .def_readonly("argv", &W::argv)
      .def_readonly("served_model_name", &W::served_model_name)
      .def("__repr__", [](W const& w) {
        return "VllmWatch(alive=" + std::string(py_bool(w.alive)) + ", pid=" + std::to_string(w.pid) +
               ", log_size=" + std::to_string(w.log_size) + ")";
      });

  m.def("executor_backend_from_string",
        [](std::string_view text) -> std::optional<ck::ExecutorBackend> { return ck::executor_backend_from_string(text); },
        py::arg("text"), "'ray', 'mp' or 'multinode' -> ExecutorBackend; None otherwise.");
  m.def("validate_vllm_serve_spec", py::overload_cast<ck::VllmServeSpec const&>(&ck::validate), py::arg("spec"),
        "Raise clusterkit.Error('invalid_argument') naming the field when the spec cannot work.");
  m.def("vllm_served_name", &ck::served_name, py::arg("spec"),
        "The served name: spec.served_model_name, else the model folder's name.");
  m.def("vllm_serve_argv", &ck::vllm_serve_argv, py::arg("spec"), py::arg("node_rank") = 0u, py::arg("nodes") = 1u,
        py::arg("master_addr") = "",
        "`vllm serve MODEL ...` for node `node_rank` of `nodes` (multinode; 0 otherwise). Never holds the key.");
  m.def("vllm_state_dir", &ck::vllm_state_dir, py::arg("spec"), "The folder of the engine's files on the head.");
  m.def("vllm_api_key_path", [](ck::VllmServeSpec const& s) { return ck::vllm_api_key_path(s).string(); },
        py::arg("spec"), "The key file on this machine.");
  m.def("generate_api_key", &ck::generate_api_key, "A new random key ('ck-' and 48 hex digits).");
  m.def("vllm_launch_script", &ck::vllm_launch_script, py::arg("spec"), py::arg("argv"), py::arg("env"),
        py::arg("key_digest") = "",
        "The script that writes the key (from stdin) and launches the engine detached. `key_digest` (a hash of the "
        "key, never the key) joins the engine's fingerprint.");
  m.def("vllm_watch_script", &ck::vllm_watch_script, py::arg("spec"), py::arg("offset") = 0,
        "One look at the engine (parse_vllm_watch reads its output).");
  m.def("parse_vllm_watch", &ck::parse_vllm_watch, py::arg("output"));
  m.def(
      "vllm_stop_script",
      [](ck::VllmServeSpec const& s, double grace) { return ck::vllm_stop_script(s, seconds_from(grace, "grace")); },
      py::arg("spec"), py::arg("grace") = 30.0,
      "Stops the engine (SIGINT/SIGTERM, SIGKILL after `grace` seconds) and removes its files.");
  m.def(
      "read_vllm_log",
      [](std::string_view chunk, py::object progress) {
        if (progress.is_none()) progress = py::cast(ck::VllmLogProgress{});
        if (!py::isinstance<ck::VllmLogProgress>(progress))
          throw py::type_error("progress must be a VllmLogProgress, not " + type_name(progress));
        ck::read_vllm_log(chunk, progress.cast<ck::VllmLogProgress&>());
        return progress;
      },
      py::arg("chunk"), py::arg("progress") = py::none(),
      "Read the log's next bytes into `progress` (updated in place and returned; a new one when None).");
  m.def(
      "diagnose_vllm_log",
      [](std::string_view log, std::optional<ck::VllmDiagnosisContext> context) {
        return ck::diagnose_vllm_log(log, context ? *context : ck::VllmDiagnosisContext{});
      },
      py::arg("log"), py::arg("context") = py::none(),
      "Why the engine died or does not become ready, from its own log, in one sentence with the fix.");
  m.def("predict_cpu_kv_cache_tokens", &ck::predict_cpu_kv_cache_tokens, py::arg("model"), py::arg("tp"), py::arg("pp"),
        py::arg("kv_cache_bytes"), py::arg("kv_cache_dtype") = "auto",
        "The KV tokens vLLM's CPU build reports for `kv_cache_bytes` per worker.");
  m.def(
      "judge_vllm_state",
      [](bool process_alive, int health_status, bool served_name_listed, std::optional<ck::RayClusterStatus> const& ray) {
        std::vector<std::string> problems;
        auto state = ck::judge_vllm_state(process_alive, health_status, served_name_listed, ray, problems);
        return py::make_tuple(state, problems);
      },
      py::arg("process_alive"), py::arg("health_status"), py::arg("served_name_listed"), py::arg("ray") = py::none(),
      "(state, problems): 'up', 'DEGRADED' (HTTP answers but a Ray node is dead, or the process is gone while "
      "something answers), 'starting' or 'down'.");
  m.def("stored_api_key_for", &ck::stored_api_key_for, py::arg("endpoint"),
        "The key stored for an endpoint's engine (the key files name their endpoint); '' when none matches.");
}

// ---------------------------------------------------------------------------
// vLLM: results and VllmServe

std::shared_ptr<Operation> serve_operation(ck::VllmServe const& s) {
  return Operation::create(s.cluster().head().host.get_executor());
}

/// VllmServe(spec, cluster); like `clusterkit serve`, a spec left at the
/// default vllm_command uses the vllm of the cluster's Ray venv.
ck::VllmServe make_serve(ck::VllmServeSpec spec, ck::RayCluster const& cluster) {
  auto const& ray = cluster.spec().ray_command;
  if (spec.vllm_command == "vllm" && ray.find('/') != std::string::npos) spec.vllm_command = ray.substr(0, ray.rfind('/')) + "/vllm";
  return ck::VllmServe(std::move(spec), cluster);
}

void register_vllm_serve(py::module_& m) {
  using P = ck::VllmProgress;
  py::class_<P>(m, "VllmProgress", "Where VllmServe.wait_ready() is, for a progress line.")
      .def_readonly("phase", &P::phase, "The log's phase, then 'http', then 'ready'.")
      .def_readonly("elapsed_seconds", &P::elapsed_seconds)
      .def_readonly("message", &P::message)
      .def_readonly("kv_cache_tokens", &P::kv_cache_tokens)
      .def("__repr__", [](P const& p) {
        return "VllmProgress(" + repr_str(p.phase) + ", elapsed_seconds=" + number(p.elapsed_seconds) + ", " +
               repr_str(p.message) + ")";
      });

  using U = ck::VllmUpResult;
  py::class_<U>(m, "VllmUpResult", "What VllmServe.up() did.")
      .def_readonly("action", &U::action, "'launched', or 'running' (the same engine was up: left alone).")
      .def_readonly("pid", &U::pid)
      .def_readonly("endpoint", &U::endpoint)
      .def_readonly("api_key_file", &U::api_key_file, "Where the key is on this machine ('' with no_api_key).")
      .def_readonly("argv", &U::argv)
      .def_readonly("message", &U::message)
      .def("__repr__", [](U const& r) {
        return "VllmUpResult(" + repr_str(r.action) + ", pid=" + std::to_string(r.pid) + ", endpoint=" + repr_str(r.endpoint) + ")";
      });

  using R = ck::VllmReady;
  py::class_<R>(m, "VllmReady", "The engine serves: when each step answered (seconds from wait_ready's start).")
      .def_readonly("endpoint", &R::endpoint)
      .def_readonly("served_model_name", &R::served_model_name)
      .def_readonly("log", &R::log, "The VllmLogProgress read from the engine's log.")
      .def_readonly("startup_complete_seconds", &R::startup_complete_seconds)
      .def_readonly("health_seconds", &R::health_seconds)
      .def_readonly("ready_seconds", &R::ready_seconds)
      .def_readonly("answer_seconds", &R::answer_seconds)
      .def_readonly("engine_start_seconds", &R::engine_start_seconds, "The engine's uptime when startup completed.")
      .def_readonly("first_token", &R::first_token)
      .def_readonly("message", &R::message)
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); }, "As a dict.")
      .def("__repr__", [](R const& r) {
        return "VllmReady(" + repr_str(r.endpoint) + ", " + repr_str(r.served_model_name) + ", ready_seconds=" +
               number(r.ready_seconds) + ")";
      });

  using St = ck::VllmStatus;
  py::class_<St>(m, "VllmStatus", "The engine: process, HTTP side, metrics, Ray's nodes, judged.")
      .def_readonly("endpoint", &St::endpoint)
      .def_readonly("state", &St::state, "'up', 'DEGRADED', 'starting', 'down' ('unknown' when the head did not answer).")
      .def_readonly("process_alive", &St::process_alive)
      .def_readonly("pid", &St::pid)
      .def_readonly("uptime_seconds", &St::uptime_seconds)
      .def_readonly("health_status", &St::health_status, "/health's HTTP status (0: no answer).")
      .def_readonly("served_models", &St::served_models)
      .def_readonly("running_requests", &St::running_requests)
      .def_readonly("waiting_requests", &St::waiting_requests)
      .def_readonly("kv_cache_usage", &St::kv_cache_usage)
      .def_readonly("ray", &St::ray, "Ray's view (backend ray), or None.")
      .def_readonly("problems", &St::problems)
      .def_readonly("diagnosis", &St::diagnosis, "Why it stopped, from its log, or None.")
      .def("to_json", [](St const& s) { return json_to_python(s.to_json()); }, "As a dict.")
      .def("summary", &St::summary)
      .def("__repr__", [](St const& s) {
        return "VllmStatus(" + repr_str(s.endpoint) + ", " + repr_str(s.state) + ", pid=" + std::to_string(s.pid) + ")";
      });

  using Dn = ck::VllmDownResult;
  py::class_<Dn>(m, "VllmDownResult", "What VllmServe.down() stopped.")
      .def_readonly("stopped", &Dn::stopped)
      .def_readonly("message", &Dn::message)
      .def("__repr__", [](Dn const& d) { return "VllmDownResult(" + repr_str(d.stopped) + ")"; });

  using V = ck::VllmServe;
  py::class_<V>(m, "VllmServe",
                "`vllm serve` on a RayCluster: launched in the cluster's runtime on the head (inside its container, or "
                "detached from the venv), followed from its own log until /health, /v1/models and one streamed token "
                "answer. VllmServe(spec, cluster); a spec left at vllm_command 'vllm' uses the vllm beside the "
                "cluster's ray_command when that is a path (as `clusterkit serve` does). An API key is generated "
                "unless given, stored 0600 on this machine, and never shown by repr(). Blocking calls release the "
                "GIL; Ctrl-C stops the commands. A failed operation raises clusterkit.Error with the result as its "
                ".result.")
      .def(py::init([](ck::VllmServeSpec spec, ck::RayCluster const& cluster) { return make_serve(std::move(spec), cluster); }),
           py::arg("spec"), py::arg("cluster"))
      .def(py::init([](V const& other) { return V(other); }), py::arg("other"), "A copy (sharing the key).")
      .def_property_readonly("spec", [](V const& s) { return s.spec(); }, "A copy of the VllmServeSpec.")
      .def_property_readonly("cluster", [](V const& s) { return s.cluster(); })
      .def_property_readonly("endpoint", &V::endpoint, "http://HEAD:PORT")
      .def_property_readonly("api_key", [](V const& s) { return s.api_key(); },
                             "The key the engine uses ('' before up() or ensure_api_key(), or with no_api_key).")
      .def_property_readonly("api_key_file", [](V const& s) { return ck::vllm_api_key_path(s.spec()).string(); },
                             "Where the key is kept on this machine.")
      .def("ensure_api_key", &V::ensure_api_key,
           "The key: the one given, else the stored one, else a new one (stored 0600). up() calls it.")
      .def(
          "up",
          [](V& s) {
            refuse_blocking_on_runtime_thread("VllmServe.up()");
            auto op = serve_operation(s);
            return value_or_raise(run_blocking<ck::VllmUpResult>(op, [&](auto handler) { s.async_up(std::move(handler)); }));
          },
          "Launch the engine and return at once (its start takes minutes: follow it with wait_ready()). An engine "
          "already running with the same arguments is left alone; another one of this name is stopped first.")
      .def(
          "wait_ready",
          [](V const& s, py::object on_progress) {
            refuse_blocking_on_runtime_thread("VllmServe.wait_ready()");
            auto op = serve_operation(s);
            auto progress = progress_callback<ck::VllmProgress>(op, std::move(on_progress));
            return value_or_raise(run_blocking<ck::VllmReady>(
                op, [&](auto handler) { s.async_wait_ready(std::move(progress), std::move(handler)); }));
          },
          py::arg("on_progress") = py::none(),
          "Follow the engine's start from its log until it serves; raises clusterkit.Error with the log's "
          "diagnosis when it dies or times out. on_progress(VllmProgress) runs on the I/O thread.")
      .def(
          "status",
          [](V const& s) {
            refuse_blocking_on_runtime_thread("VllmServe.status()");
            auto op = serve_operation(s);
            return value_or_raise(run_blocking<ck::VllmStatus>(op, [&](auto handler) { s.async_status(std::move(handler)); }));
          },
          "The engine's state; raises only when the head cannot be asked.")
      .def(
          "down",
          [](V const& s) {
            refuse_blocking_on_runtime_thread("VllmServe.down()");
            auto op = serve_operation(s);
            return value_or_raise(run_blocking<ck::VllmDownResult>(op, [&](auto handler) { s.async_down(std::move(handler)); }));
          },
          "Stop the engine (SIGINT/SIGTERM, then SIGKILL), remove its files; nothing left.")
      .def(
          "logs",
          [](V const& s, unsigned tail, bool follow, py::object on_line) {
            refuse_blocking_on_runtime_thread("VllmServe.logs()");
            auto op = serve_operation(s);
            auto o = vllm_logs_options(op, tail, follow, std::move(on_line));
            return value_or_raise(run_blocking<std::string>(op, [&](auto handler) { s.async_logs(o, std::move(handler)); }));
          },
          py::arg("tail") = 200u, py::kw_only(), py::arg("follow") = false, py::arg("on_line") = py::none(),
          "The engine's log on the head, last `tail` lines (0: all). follow=True: each line to on_line as the "
          "engine writes it, like tail -F, until cancelled (Ctrl-C; task.cancel() for logs_async); nothing stays "
          "running on the head.")
      .def(
          "_start_up",
          [](V& s, py::object done) {
            auto op = serve_operation(s);
            s.async_up(deliver_outcome<ck::VllmUpResult>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start up(); done(VllmUpResult | clusterkit.Error).")
      .def(
          "_start_wait_ready",
          [](V const& s, py::object on_progress, py::object done) {
            auto op = serve_operation(s);
            auto progress = progress_callback<ck::VllmProgress>(op, std::move(on_progress));
            s.async_wait_ready(std::move(progress), deliver_outcome<ck::VllmReady>(op, std::move(done)));
            return op;
          },
          py::arg("on_progress") = py::none(), py::kw_only(), py::arg("done"),
          "Start wait_ready(); done(VllmReady | clusterkit.Error).")
      .def(
          "_start_status",
          [](V const& s, py::object done) {
            auto op = serve_operation(s);
            s.async_status(deliver_outcome<ck::VllmStatus>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start status(); done(VllmStatus | clusterkit.Error).")
      .def(
          "_start_down",
          [](V const& s, py::object done) {
            auto op = serve_operation(s);
            s.async_down(deliver_outcome<ck::VllmDownResult>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start down(); done(VllmDownResult | clusterkit.Error).")
      .def(
          "_start_logs",
          [](V const& s, unsigned tail, py::object done, bool follow, py::object on_line) {
            auto op = serve_operation(s);
            auto o = vllm_logs_options(op, tail, follow, std::move(on_line));
            s.async_logs(o, deliver_outcome<std::string>(op, std::move(done)));
            return op;
          },
          py::arg("tail") = 200u, py::kw_only(), py::arg("done"), py::arg("follow") = false, py::arg("on_line") = py::none(),
          "Start logs(); done(str | clusterkit.Error).")
      .def("__repr__", [](V const& s) {
        auto const& sp = s.spec();
        return "VllmServe(" + repr_str(sp.name) + ", model=" + repr_str(sp.model) + ", endpoint=" + repr_str(s.endpoint()) +
               ", tp=" + std::to_string(sp.tensor_parallel) + ", pp=" + std::to_string(sp.pipeline_parallel) +
               ", backend=" + repr_str(std::string(ck::to_string(sp.backend))) + ", cluster=" + cluster_repr(s.cluster()) + ")";
      });
}

}  // namespace

/// The engine log's options from Python's arguments: follow needs on_line.
ck::VllmLogsOptions vllm_logs_options(std::shared_ptr<Operation> const& op, unsigned tail, bool follow, py::object on_line) {
  ck::VllmLogsOptions o;
  o.tail = tail;
  o.follow = follow;
  if (!on_line.is_none() && !PyCallable_Check(on_line.ptr()))
    throw py::type_error("on_line must be callable, not " + type_name(on_line));
  if (follow && on_line.is_none())
    throw py::value_error("follow=True needs on_line: a function called with each line (follow runs until cancelled)");
  if (!on_line.is_none())
    o.on_line = [op, f = share(std::move(on_line))](std::string_view line) {
      invoke_callback(*op, [&] {
        PyObject* text = PyUnicode_DecodeUTF8(line.data(), static_cast<Py_ssize_t>(line.size()), "replace");
        if (!text) throw py::error_already_set();
        (*f)(py::reinterpret_steal<py::str>(text));
      });
    };
  return o;
}


void register_serve(py::module_& m) {
  register_ray_spec(m);
  register_ray_pure(m);
  register_ray_cluster(m);
  register_vllm_pure(m);
  register_vllm_serve(m);
}

}  // namespace ckpy
