// Host facts (facts.hpp), preflight (preflight.hpp) and the NCCL/Gloo check
// (nccl_check.hpp). The gathering calls run on the shared runtime and are
// waited for with the GIL released; Ctrl-C stops waiting (the remote work
// ends by itself, bounded by its own timeouts). The parsers are pure.
#include "json_support.hpp"

#include "clusterkit/facts.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/nccl_check.hpp"
#include "clusterkit/preflight.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>

#include <map>
#include <sstream>
#include <type_traits>

namespace ckpy {
namespace {

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }
std::string repr_str(std::string const& s) { return py_repr(py::str(s)); }

// Types that were dicts before they were typed: `obj["field"]` still reads a
// field (KeyError for a name that is not one). `aliases` maps a dict key to
// the attribute that holds it ("from" -> "source": a Python keyword).
template <class C>
C readable_as_dict(C cls, std::map<std::string, std::string> aliases = {}) {
  cls.def("__getitem__", [aliases](py::object self, std::string const& key) -> py::object {
    auto const a = aliases.find(key);
    auto const name = a == aliases.end() ? key : a->second;
    if (name.empty() || name.front() == '_' || !py::hasattr(self, name.c_str())) throw py::key_error(key);
    py::object v = self.attr(name.c_str());
    if (PyCallable_Check(v.ptr())) throw py::key_error(key);
    return v;
  });
  return cls;
}

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

std::chrono::milliseconds positive_ms(double seconds, char const* what) {
  if (!(seconds > 0) || seconds > 1e9) throw py::value_error(std::string(what) + " must be a positive number of seconds");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000.0)));
}

/// Start an asynchronous clusterkit operation whose handler takes one value,
/// and wait for it (GIL released, Ctrl-C aware).
template <class Value, class Initiate>
Value run_and_wait(asio::any_io_executor executor, Initiate&& initiate) {
  auto op = Operation::create(std::move(executor));
  auto promise = std::make_shared<std::promise<Value>>();
  auto future = promise->get_future();
  initiate(asio::bind_cancellation_slot(op->slot(), [op, promise](Value v) {
    op->mark_finished();
    promise->set_value(std::move(v));
  }));
  // Ctrl-C: the operation is cancelled and waited for, as every blocking
  // call does (README, "One rule for ... blocking calls").
  return wait_for(*op, future);
}

/// Blocking (GIL released, Ctrl-C aware) when `done` is None; else started,
/// done(Value) called on the I/O thread, and the Operation returned: what
/// the asyncio forms (gather_facts_async, ...) await.
template <class Value, class Initiate>
py::object run_or_start(asio::any_io_executor executor, py::object done, char const* what, Initiate&& initiate) {
  if (done.is_none()) {
    refuse_blocking_on_runtime_thread(what);
    return py::cast(run_and_wait<Value>(std::move(executor), std::forward<Initiate>(initiate)));
  }
  auto op = Operation::create(std::move(executor));
  initiate(asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](Value v) {
    deliver(*op, d, [&] { return py::cast(std::move(v)); });
  }));
  return py::cast(op);
}

// ---------------------------------------------------------------------------
// Facts

/// `inventory=` (its hosts' `gpus:` entries) and/or `declared_gpus=`
/// ({host: {count, model, memory_gib, simulated}}; wins per host).
std::map<std::string, ck::DeclaredGpus> declared_gpus_arg(py::object const& declared_gpus, py::object const& inventory) {
  std::map<std::string, ck::DeclaredGpus> out;
  if (!inventory.is_none()) out = ck::declared_gpus_of(inventory.cast<ck::Inventory const&>().hosts());
  if (!declared_gpus.is_none()) {
    for (auto item : declared_gpus.cast<py::dict>()) {
      auto spec = item.second.cast<py::dict>();
      ck::DeclaredGpus d;
      auto const count = spec.contains("count") ? integer_of(spec["count"], "declared_gpus count") : 0;
      if (count < 0 || count > 4096) throw py::value_error("declared_gpus count must be 0 to 4096, not " + std::to_string(count));
      d.count = static_cast<unsigned>(count);
      d.model = spec.contains("model") ? spec["model"].cast<std::string>() : "";
      d.memory_gib = spec.contains("memory_gib") ? number_of(spec["memory_gib"], "declared_gpus memory_gib") : 0;
      d.simulated = spec.contains("simulated") ? spec["simulated"].cast<bool>() : false;
      out[item.first.cast<std::string>()] = d;
    }
  }
  return out;
}

void register_facts_types(py::module_& m) {
  using G = ck::GpuInfo;
  py::class_<G>(m, "GpuInfo", "One GPU, from nvidia-smi, or declared in the inventory as simulated.")
      .def_readonly("index", &G::index)
      .def_readonly("uuid", &G::uuid)
      .def_readonly("name", &G::name)
      .def_readonly("memory_total_bytes", &G::memory_total_bytes)
      .def_readonly("memory_used_bytes", &G::memory_used_bytes)
      .def_readonly("driver_version", &G::driver_version)
      .def_readonly("compute_capability", &G::compute_capability)
      .def_readonly("pci_bus_id", &G::pci_bus_id)
      .def_readonly("simulated", &G::simulated, "Declared in the inventory, not found on the host.")
      .def("__repr__", [](G const& g) {
        return "GpuInfo(" + std::to_string(g.index) + ", " + repr_str(g.name) +
               ", memory_total_bytes=" + std::to_string(g.memory_total_bytes) + (g.simulated ? ", simulated" : "") + ")";
      });

  using T = ck::GpuTopology;
  py::class_<T>(m, "GpuTopology", "`nvidia-smi topo -m`: how GPUs (and NICs) are connected.")
      .def_readonly("devices", &T::devices, "'GPU0', 'GPU1', 'NIC0', ...")
      .def_readonly("links", &T::links, "links[i][j] as printed: 'X', 'NV18', 'PIX', 'SYS', ...")
      .def_readonly("cpu_affinity", &T::cpu_affinity)
      .def_readonly("numa_affinity", &T::numa_affinity)
      .def(
          "link", [](T const& t, std::size_t i, std::size_t j) { return std::string(ck::to_string(t.link(i, j))); },
          py::arg("i"), py::arg("j"), "'self', 'NVLink', 'PIX', 'PXB', 'PHB', 'NODE', 'SYS' or 'unknown'.")
      .def("nvlinks", &T::nvlinks, py::arg("i"), py::arg("j"), "NVLinks between i and j (0 when not NVLink).")
      .def("all_gpus_nvlinked", &T::all_gpus_nvlinked)
      .def("__repr__", [](T const& t) { return "GpuTopology(" + py_repr(py::cast(t.devices)) + ")"; });

  using I = ck::FactIssue;
  py::class_<I>(m, "FactIssue", "A section of the facts that is missing or could not be read.")
      .def_readonly("section", &I::section)
      .def_property_readonly("kind", [](I const& i) { return i.kind == I::Kind::absent ? "absent" : "failed"; },
                             "'absent' (the program is not installed) or 'failed'.")
      .def_readonly("message", &I::message)
      .def("__repr__", [](I const& i) {
        return "FactIssue(" + repr_str(i.section) + ", " + (i.kind == I::Kind::absent ? "'absent'" : "'failed'") +
               ", " + repr_str(i.message) + ")";
      });

  // The sections, typed. `section["field"]` still reads a field (the
  // sections were dicts before): KeyError for a name that is not one.
  auto record = [&m](auto* tag, char const* name, char const* doc) {
    using R = std::remove_pointer_t<decltype(tag)>;
    return readable_as_dict(py::class_<R>(m, name, doc));
  };
  record(static_cast<ck::OsRelease*>(nullptr), "OsRelease", "/etc/os-release.")
      .def_readonly("id", &ck::OsRelease::id)
      .def_readonly("version_id", &ck::OsRelease::version_id)
      .def_readonly("pretty_name", &ck::OsRelease::pretty_name)
      .def_readonly("fields", &ck::OsRelease::fields, "Every KEY=value of the file.")
      .def("__repr__", [](ck::OsRelease const& o) { return "OsRelease(" + repr_str(o.pretty_name) + ")"; });
  record(static_cast<ck::KernelInfo*>(nullptr), "KernelInfo", "`uname -srm`.")
      .def_readonly("system", &ck::KernelInfo::system)
      .def_readonly("release", &ck::KernelInfo::release)
      .def_readonly("machine", &ck::KernelInfo::machine)
      .def("__repr__", [](ck::KernelInfo const& k) { return "KernelInfo(" + repr_str(k.release) + ", " + repr_str(k.machine) + ")"; });
  record(static_cast<ck::MemoryInfo*>(nullptr), "MemoryInfo", "/proc/meminfo, in bytes.")
      .def_readonly("total_bytes", &ck::MemoryInfo::total_bytes)
      .def_readonly("available_bytes", &ck::MemoryInfo::available_bytes)
      .def_readonly("free_bytes", &ck::MemoryInfo::free_bytes)
      .def_readonly("swap_total_bytes", &ck::MemoryInfo::swap_total_bytes)
      .def_readonly("swap_free_bytes", &ck::MemoryInfo::swap_free_bytes)
      .def("__repr__", [](ck::MemoryInfo const& x) {
        return "MemoryInfo(total_bytes=" + std::to_string(x.total_bytes) + ", available_bytes=" + std::to_string(x.available_bytes) + ")";
      });
  record(static_cast<ck::DiskUsage*>(nullptr), "DiskUsage", "One line of `df -P -B1`.")
      .def_readonly("path", &ck::DiskUsage::path)
      .def_readonly("filesystem", &ck::DiskUsage::filesystem)
      .def_readonly("mount_point", &ck::DiskUsage::mount_point)
      .def_readonly("total_bytes", &ck::DiskUsage::total_bytes)
      .def_readonly("used_bytes", &ck::DiskUsage::used_bytes)
      .def_readonly("available_bytes", &ck::DiskUsage::available_bytes)
      .def("__repr__", [](ck::DiskUsage const& d) {
        return "DiskUsage(" + repr_str(d.mount_point) + ", available_bytes=" + std::to_string(d.available_bytes) + ")";
      });
  record(static_cast<ck::DockerFacts*>(nullptr), "DockerFacts", "`docker version` and `docker info`.")
      .def_readonly("client_version", &ck::DockerFacts::client_version)
      .def_readonly("client_api_version", &ck::DockerFacts::client_api_version)
      .def_readonly("daemon_reachable", &ck::DockerFacts::daemon_reachable)
      .def_readonly("server_version", &ck::DockerFacts::server_version)
      .def_readonly("daemon_error", &ck::DockerFacts::daemon_error)
      .def_readonly("runtimes", &ck::DockerFacts::runtimes)
      .def_readonly("nvidia_toolkit", &ck::DockerFacts::nvidia_toolkit)
      .def_readonly("images", &ck::DockerFacts::images, "Image reference -> image ID ('' when absent).")
      .def_property_readonly("nvidia_runtime_registered", &ck::DockerFacts::nvidia_runtime_registered)
      .def_property_readonly("can_run_gpu_containers", &ck::DockerFacts::can_run_gpu_containers)
      .def("__repr__", [](ck::DockerFacts const& d) {
        return "DockerFacts(server_version=" + repr_str(d.server_version) + ", daemon_reachable=" +
               (d.daemon_reachable ? "True" : "False") + ")";
      });
  record(static_cast<ck::NetAddress*>(nullptr), "NetAddress", "An address of an interface.")
      .def_readonly("family", &ck::NetAddress::family)
      .def_readonly("address", &ck::NetAddress::address)
      .def_readonly("prefix_length", &ck::NetAddress::prefix_length)
      .def_readonly("scope", &ck::NetAddress::scope)
      .def("__repr__", [](ck::NetAddress const& a) { return "NetAddress(" + repr_str(a.address + "/" + std::to_string(a.prefix_length)) + ")"; });
  record(static_cast<ck::NetInterface*>(nullptr), "NetInterface", "`ip -j addr`: one interface.")
      .def_readonly("name", &ck::NetInterface::name)
      .def_readonly("up", &ck::NetInterface::up)
      .def_readonly("loopback", &ck::NetInterface::loopback)
      .def_readonly("mtu", &ck::NetInterface::mtu)
      .def_readonly("mac", &ck::NetInterface::mac)
      .def_readonly("addresses", &ck::NetInterface::addresses)
      .def_property_readonly("ipv4", &ck::NetInterface::ipv4, "The first global IPv4 address, or ''.")
      .def("__repr__", [](ck::NetInterface const& i) { return "NetInterface(" + repr_str(i.name) + ", ipv4=" + repr_str(i.ipv4()) + ")"; });
  record(static_cast<ck::RouteToPeer*>(nullptr), "RouteToPeer", "`ip -j route get PEER`: how this host reaches a peer.")
      .def_readonly("peer", &ck::RouteToPeer::peer)
      .def_readonly("peer_address", &ck::RouteToPeer::peer_address)
      .def_readonly("interface", &ck::RouteToPeer::interface, "What NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME must name.")
      .def_readonly("source_address", &ck::RouteToPeer::source_address, "What VLLM_HOST_IP must be.")
      .def_readonly("gateway", &ck::RouteToPeer::gateway)
      .def_readonly("local", &ck::RouteToPeer::local, "The peer is one of this host's own addresses.")
      .def("__repr__", [](ck::RouteToPeer const& r) {
        return "RouteToPeer(" + repr_str(r.peer) + ", interface=" + repr_str(r.interface) + ", source_address=" + repr_str(r.source_address) + ")";
      });
  record(static_cast<ck::ClockSample*>(nullptr), "ClockSample", "The host's clock against this machine's, from one round trip.")
      .def_readonly("remote_epoch", &ck::ClockSample::remote_epoch)
      .def_readonly("local_sent", &ck::ClockSample::local_sent)
      .def_readonly("local_received", &ck::ClockSample::local_received)
      .def_property_readonly("offset_seconds", &ck::ClockSample::offset_seconds, "Remote minus the local midpoint.")
      .def_property_readonly("uncertainty_seconds", &ck::ClockSample::uncertainty_seconds, "Half the round trip.")
      .def("__repr__", [](ck::ClockSample const& c) {
        std::ostringstream o;
        o << "ClockSample(offset_seconds=" << c.offset_seconds() << ", uncertainty_seconds=" << c.uncertainty_seconds() << ")";
        return o.str();
      });
  record(static_cast<ck::PythonFacts*>(nullptr), "PythonFacts", "The Python on the host and the packages that must match across nodes.")
      .def_readonly("executable", &ck::PythonFacts::executable)
      .def_readonly("version", &ck::PythonFacts::version)
      .def_readonly("packages", &ck::PythonFacts::packages, "Package -> version, for those installed.")
      .def("package", &ck::PythonFacts::package, py::arg("name"), "The package's version, '' when not installed.")
      .def("__repr__", [](ck::PythonFacts const& p) { return "PythonFacts(" + repr_str(p.version) + ", packages=" + std::to_string(p.packages.size()) + ")"; });

  using F = ck::HostFacts;
  py::class_<F>(m, "HostFacts",
                "What a machine is, every section typed (None when the host did not report it; issue(section) says "
                "why). to_json() gives the same as dicts.")
      .def_readonly("host", &F::host)
      .def_readonly("hostname", &F::hostname, "`uname -n` on the host.")
      .def_readonly("cpus", &F::cpus)
      .def_readonly("gpus", &F::gpus)
      .def_readonly("gpus_simulated", &F::gpus_simulated)
      .def_readonly("topology", &F::topology)
      .def_readonly("issues", &F::issues)
      .def_property_readonly("driver_version", &F::driver_version, "'' when unknown.")
      .def_property_readonly("cuda_version", &F::cuda_version, "The highest CUDA the driver supports; '' when unknown.")
      .def_property_readonly("gpu_memory_total_bytes", &F::gpu_memory_total_bytes)
      .def_readonly("os", &F::os)
      .def_readonly("kernel", &F::kernel)
      .def_readonly("memory", &F::memory)
      .def_readonly("shm", &F::shm)
      .def_readonly("disks", &F::disks)
      .def_readonly("docker", &F::docker)
      .def_readonly("interfaces", &F::interfaces)
      .def_readonly("routes", &F::routes)
      .def_readonly("clock", &F::clock)
      .def_readonly("python", &F::python)
      .def_readonly("ephemeral_ports", &F::ephemeral_ports, "(low, high) of net.ipv4.ip_local_port_range, or None.")
      .def(
          "issue",
          [](F const& f, std::string_view section) -> std::optional<I> {
            if (auto const* i = f.issue(section)) return *i;
            return std::nullopt;
          },
          py::arg("section"), "The issue of a section ('gpus', 'docker', ...), or None.")
      .def("to_json", [](F const& f) { return json_to_python(f.to_json()); })
      .def("__repr__", [](F const& f) {
        return "HostFacts(" + repr_str(f.host) + ", gpus=" + std::to_string(f.gpus.size()) +
               (f.gpus_simulated ? " simulated" : "") + ", issues=" + std::to_string(f.issues.size()) + ")";
      });

  using O = ck::HostFactsOutcome;
  py::class_<O>(m, "HostFactsOutcome", "One host's part of gather_facts.")
      .def_readonly("host", &O::host)
      .def_property_readonly("ok", &O::ok, "The facts script ran (facts may still have issues).")
      .def_property_readonly(
          "error",
          [](O const& o) { return error_or_none(o.error, o.message); },
          "None, or a clusterkit.Error (connection, timeout).")
      .def_readonly("message", &O::message)
      .def_readonly("facts", &O::facts)
      .def_property_readonly("duration", [](O const& o) { return to_seconds(o.duration); }, "Seconds.")
      .def_property_readonly("raw_output", [](O const& o) { return decode(o.raw_output); },
                             "The facts script's output as it came.")
      .def("describe", &ck::describe_facts, "A few lines for people (GPUs marked 'simulated' where they are).")
      .def("to_json", [](O const& o) { return json_to_python(o.to_json()); })
      .def("__repr__", [](O const& o) {
        std::string s = "HostFactsOutcome(" + repr_str(o.host);
        if (o.error) s += ", error=" + repr_str(error_code_name(o.error));
        else s += ", gpus=" + std::to_string(o.facts.gpus.size());
        return s + ")";
      });

  m.def(
      "gather_facts",
      [](py::object const& hosts_in, py::object const& disk_paths, py::object const& peers,
         py::object const& docker_images, std::string python, double command_timeout, double timeout,
         std::size_t concurrency, py::object const& declared_gpus, py::object const& inventory, py::object done) -> py::object {
        auto hosts = host_list(hosts_in);
        if (concurrency < 1) throw py::value_error("concurrency must be >= 1");
        ck::FactsOptions o;
        o.disk_paths = string_list(disk_paths, "disk_paths");
        o.peers = string_list(peers, "peers");
        o.docker_images = string_list(docker_images, "docker_images");
        o.python = std::move(python);
        o.command_timeout = whole_seconds(command_timeout, "command_timeout");
        o.timeout = positive_ms(timeout, "timeout");
        o.concurrency = concurrency;
        o.declared_gpus = declared_gpus_arg(declared_gpus, inventory);
        auto executor = hosts.empty() ? runtime().executor() : hosts.front().get_executor();
        return run_or_start<std::vector<ck::HostFactsOutcome>>(executor, std::move(done), "gather_facts()", [&](auto handler) {
          ck::async_gather_facts(std::move(hosts), std::move(o), std::move(handler));
        });
      },
      py::arg("hosts"), py::kw_only(), py::arg("disk_paths") = std::vector<std::string>{},
      py::arg("peers") = std::vector<std::string>{}, py::arg("docker_images") = std::vector<std::string>{},
      py::arg("python") = "python3", py::arg("command_timeout") = 20.0, py::arg("timeout") = 90.0,
      py::arg("concurrency") = 64, py::arg("declared_gpus") = py::none(), py::arg("inventory") = py::none(),
      py::arg("_done") = py::none(),
      "Gather facts on every host at once: one remote command each. One HostFactsOutcome per host, in order; "
      "never raises for a host's failure (see .error). `inventory` (or `declared_gpus`, {host: {count, model, "
      "memory_gib, simulated}}) supplies simulated GPUs for hosts without nvidia-smi.");

  m.def("parse_gpu_query", &ck::parse_gpu_query, py::arg("text"),
        "Parse `nvidia-smi --query-gpu=...` CSV (with a header line: by column names, units allowed; without: in "
        "gpu_query_fields() order). Raises clusterkit.Error('parse_error').");
  m.def("gpu_query_fields", [] { return std::string(ck::gpu_query_fields()); },
        "The --query-gpu columns parse_gpu_query expects without a header.");
  m.def("parse_gpu_topology", &ck::parse_gpu_topology, py::arg("text"), "Parse `nvidia-smi topo -m`.");
  m.def("format_bytes", &ck::format_bytes, py::arg("bytes"), "'79.6 GiB', '64.0 MiB'.");
}

// ---------------------------------------------------------------------------
// Preflight

void register_preflight(py::module_& m) {
  using C = ck::CheckResult;
  py::class_<C>(m, "CheckResult", "One check on one host (or 'cluster').")
      .def_readonly("host", &C::host)
      .def_readonly("check", &C::check)
      .def_property_readonly("status", [](C const& c) { return std::string(ck::to_string(c.status)); },
                             "'pass', 'warn', 'fail', 'simulated' or 'skip'.")
      .def_readonly("message", &C::message)
      .def_readonly("fix", &C::fix, "What to do about it ('' on pass/skip).")
      .def("__repr__", [](C const& c) {
        return "CheckResult(" + repr_str(c.host) + ", " + repr_str(c.check) + ", " +
               repr_str(std::string(ck::to_string(c.status))) + ", " + repr_str(c.message) + ")";
      });

  using R = ck::CheckReport;
  py::class_<R>(m, "CheckReport", "Every preflight check on every host.")
      .def_readonly("hosts", &R::hosts)
      .def_readonly("checks", &R::checks)
      .def_readonly("results", &R::results)
      .def_readonly("recommended_env", &R::recommended_env,
                    "Per host: VLLM_HOST_IP, NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME to start it with.")
      .def_readonly("head", &R::head)
      .def_property_readonly("ok", &R::ok, "No check failed.")
      .def(
          "count",
          [](R const& r, std::string const& status) {
            for (auto s : {ck::CheckStatus::pass, ck::CheckStatus::warn, ck::CheckStatus::fail,
                           ck::CheckStatus::simulated, ck::CheckStatus::skip})
              if (ck::to_string(s) == status) return r.count(s);
            throw py::value_error("status must be 'pass', 'warn', 'fail', 'simulated' or 'skip', not '" + status + "'");
          },
          py::arg("status"))
      .def(
          "find",
          [](R const& r, std::string_view host, std::string_view check) -> std::optional<C> {
            if (auto const* c = r.find(host, check)) return *c;
            return std::nullopt;
          },
          py::arg("host"), py::arg("check"), "The result of `check` on `host`, or None.")
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); })
      .def("table", &R::table, "For people: checks down, hosts across, then failures and warnings with their fixes.")
      .def("__bool__", &R::ok)
      .def("__repr__", [](R const& r) {
        return "CheckReport(ok=" + std::string(r.ok() ? "True" : "False") + ", hosts=" + py_repr(py::cast(r.hosts)) +
               ", fail=" + std::to_string(r.count(ck::CheckStatus::fail)) + ")";
      });

  // What the active probes found, typed (the checks in the report are
  // their verdicts; these are the raw connections and reads behind them).
  // `probes["ports"]["probes"][0]["from"]` still reads a field (they were
  // dicts before, shaped as to_json()).
  using PL = ck::PortListener;
  readable_as_dict(py::class_<PL>(m, "PortListener", "One listener host's view: the ports it listened on, and those it could not bind."))
      .def_readonly("host", &PL::host)
      .def_readonly("started", &PL::started)
      .def_readonly("error", &PL::error, "Why it did not start ('' when it did).")
      .def_readonly("ports", &PL::ports, "(port, purpose) pairs it listened on; purpose 'ray', 'rdzv' or 'ephemeral'.")
      .def_readonly("busy", &PL::busy, "(port, reason) pairs it could not bind.")
      .def("__repr__", [](PL const& l) {
        return "PortListener(" + repr_str(l.host) + ", started=" + (l.started ? "True" : "False") + ", ports=" +
               std::to_string(l.ports.size()) + ", busy=" + std::to_string(l.busy.size()) + ")";
      });
  using PP = ck::PortProbe;
  readable_as_dict(py::class_<PP>(m, "PortProbe", "One connection attempt from a host to another's listener."), {{"from", "source"}, {"to", "target"}})
      .def_readonly("source", &PP::from, "The host that connected ('from' in to_json()).")
      .def_readonly("target", &PP::to, "The listening host ('to' in to_json()).")
      .def_readonly("address", &PP::address)
      .def_readonly("port", &PP::port)
      .def_readonly("purpose", &PP::purpose, "'ray', 'rdzv' or 'ephemeral'.")
      .def_property_readonly("ok", &PP::ok, "Connected, and our listener answered.")
      .def_readonly("source_address", &PP::source_address, "The local address the connection came from.")
      .def_readonly("error", &PP::error)
      .def_readonly("milliseconds", &PP::milliseconds)
      .def("__repr__", [](PP const& p) {
        return "PortProbe(" + repr_str(p.from) + " -> " + repr_str(p.to) + ":" + std::to_string(p.port) + ", " + repr_str(p.purpose) +
               ", ok=" + (p.ok() ? "True" : "False") + ")";
      });
  using PR = ck::PortProbeReport;
  readable_as_dict(py::class_<PR>(m, "PortProbeReport", "The port probe: listeners on every host, connections from every host to them."))
      .def_readonly("head", &PR::head, "The host that got the Ray and rendezvous listeners.")
      .def_readonly("listeners", &PR::listeners)
      .def_readonly("probes", &PR::probes)
      .def("to_json", [](PR const& r) { return json_to_python(r.to_json()); }, "As a dict.")
      .def("__repr__", [](PR const& r) {
        return "PortProbeReport(head=" + repr_str(r.head) + ", probes=" + std::to_string(r.probes.size()) + ")";
      });
  using NR = ck::NasRead;
  readable_as_dict(py::class_<NR>(m, "NasRead", "One host's look at the NAS path: is it a mount, whose token files it sees."))
      .def_readonly("host", &NR::host)
      .def_readonly("directory", &NR::directory, "The path exists and is a directory.")
      .def_readonly("mount_point", &NR::mount_point, "Something is mounted there.")
      .def_readonly("filesystem_type", &NR::filesystem_type)
      .def_readonly("written", &NR::written, "This host wrote its token file under the path.")
      .def_readonly("write_error", &NR::write_error)
      .def_readonly("seen", &NR::seen, "The hosts whose token files this host sees (itself included when it wrote one).")
      .def_readonly("model_present", &NR::model_present, "The model folder with config.json at the same path; None when not asked.")
      .def_readonly("error", &NR::error, "The probe itself failed (connection...).")
      .def("__repr__", [](NR const& r) {
        return "NasRead(" + repr_str(r.host) + ", mount_point=" + (r.mount_point ? "True" : "False") + ", seen=" +
               std::to_string(r.seen.size()) + ")";
      });
  using NPR = ck::NasProbeReport;
  readable_as_dict(py::class_<NPR>(m, "NasProbeReport", "The NAS probe: each host writes a token file and reads everyone's."))
      .def_readonly("path", &NPR::path)
      .def_readonly("model_path", &NPR::model_path)
      .def_readonly("token", &NPR::token, "The random name part of this run's token files.")
      .def_readonly("reads", &NPR::reads)
      .def("to_json", [](NPR const& r) { return json_to_python(r.to_json()); }, "As a dict.")
      .def("__repr__", [](NPR const& r) { return "NasProbeReport(" + repr_str(r.path) + ", reads=" + std::to_string(r.reads.size()) + ")"; });
  using PPs = ck::PreflightProbes;
  readable_as_dict(py::class_<PPs>(m, "PreflightProbes", "The port and NAS probes preflight ran; None (with the reason) where one did not run."))
      .def_readonly("ports", &PPs::ports)
      .def_readonly("nas", &PPs::nas)
      .def_readonly("ports_skipped", &PPs::ports_skipped, "Why the port probe did not run ('' when it did).")
      .def_readonly("nas_skipped", &PPs::nas_skipped, "Why the NAS probe did not run ('' when it did).")
      .def("__repr__", [](PPs const& p) {
        return std::string("PreflightProbes(ports=") + (p.ports ? "PortProbeReport" : "None") + ", nas=" + (p.nas ? "NasProbeReport" : "None") + ")";
      });

  using P = ck::PreflightRun;
  py::class_<P>(m, "PreflightRun", "What preflight found: the report, each host's facts, the probes.")
      .def_readonly("report", &P::report)
      .def_readonly("facts", &P::facts)
      .def_readonly("probes", &P::probes, "The port and NAS probes, typed (to_json()['probes'] is the same as a dict).")
      .def_property_readonly("ok", [](P const& p) { return p.report.ok(); })
      .def("to_json", [](P const& p) { return json_to_python(p.to_json()); })
      .def("__repr__", [](P const& p) {
        return "PreflightRun(ok=" + std::string(p.report.ok() ? "True" : "False") +
               ", hosts=" + py_repr(py::cast(p.report.hosts)) + ")";
      });

  m.def(
      "run_preflight",
      [](py::object const& hosts_in, std::string const& selector, double shm_min_gib, py::object const& disk_paths,
         double disk_min_free_gib, py::object const& nas_path, py::object const& model_path, py::object const& model,
         double gpu_memory_utilization, py::object const& max_model_len, std::string kv_cache_dtype, int ray_port,
         int rdzv_port, unsigned ephemeral_ports, bool probe_ports, bool probe_nas, double max_clock_offset_seconds,
         py::object const& docker_images, std::string container_runtime, std::string python, double facts_timeout,
         py::object done) -> py::object {
        std::vector<ck::InventoryHost> hosts;
        if (py::isinstance<ck::Inventory>(hosts_in)) {
          hosts = hosts_in.cast<ck::Inventory const&>().select(selector);
        } else {
          if (selector != "all") throw py::value_error("selector applies to an Inventory, not to a list of hosts");
          for (auto h : py::iter(hosts_in)) {
            if (!py::isinstance<ck::InventoryHost>(h))
              throw py::type_error("hosts must be an Inventory or InventoryHost objects, not " +
                                   std::string(py::str(py::type::of(h).attr("__name__"))));
            hosts.push_back(h.cast<ck::InventoryHost>());
          }
        }
        if (container_runtime != "docker" && container_runtime != "none")
          throw py::value_error("container_runtime must be 'docker' or 'none'");
        // Ranges: validate_preflight_options, as for C++ callers (the
        // setting named), when the run starts.
        ck::PreflightOptions o;
        o.shm_min_gib = shm_min_gib;
        o.disk_paths = string_list(disk_paths, "disk_paths");
        o.disk_min_free_gib = disk_min_free_gib;
        if (!nas_path.is_none()) o.nas_path = path_string(nas_path);
        if (!model_path.is_none()) o.model_path = path_string(model_path);
        if (!model.is_none()) o.model = model.cast<ck::ModelFacts>();
        o.plan.gpu_memory_utilization = gpu_memory_utilization;
        if (!max_model_len.is_none()) o.plan.max_model_len = max_model_len.cast<std::uint64_t>();
        o.plan.kv_cache_dtype = std::move(kv_cache_dtype);
        o.ray_port = ray_port;
        o.rdzv_port = rdzv_port;
        o.ephemeral_ports = ephemeral_ports;
        o.probe_ports = probe_ports;
        o.probe_nas = probe_nas;
        o.max_clock_offset_seconds = max_clock_offset_seconds;
        o.docker_images = string_list(docker_images, "docker_images");
        o.container_runtime = std::move(container_runtime);
        o.python = std::move(python);
        o.facts_timeout = positive_ms(facts_timeout, "facts_timeout");
        auto executor = runtime().executor();
        return run_or_start<ck::PreflightRun>(executor, std::move(done), "run_preflight()", [&](auto handler) {
          ck::async_preflight(executor, std::move(hosts), std::move(o), std::move(handler));
        });
      },
      py::arg("hosts"), py::arg("selector") = "all", py::kw_only(), py::arg("shm_min_gib") = 10.0,
      py::arg("disk_paths") = std::vector<std::string>{}, py::arg("disk_min_free_gib") = 10.0,
      py::arg("nas_path") = py::none(), py::arg("model_path") = py::none(), py::arg("model") = py::none(),
      py::arg("gpu_memory_utilization") = 0.9, py::arg("max_model_len") = py::none(),
      py::arg("kv_cache_dtype") = "auto", py::arg("ray_port") = 6379, py::arg("rdzv_port") = 29500,
      py::arg("ephemeral_ports") = 2, py::arg("probe_ports") = true, py::arg("probe_nas") = true,
      py::arg("max_clock_offset_seconds") = 5.0, py::arg("docker_images") = std::vector<std::string>{},
      py::arg("container_runtime") = "docker", py::arg("python") = "python3", py::arg("facts_timeout") = 90.0,
      py::arg("_done") = py::none(),
      "Check that an inventory's hosts can run a multi-node vLLM: facts on every host, port and NAS probes, then "
      "every check (see CheckReport.table()). `hosts`: an Inventory (with `selector`) or a list of InventoryHost. "
      "nas_path None: the hosts' vars.mount_point. `model` (ModelFacts) adds the model-fits check.");
}

// ---------------------------------------------------------------------------
// NCCL check

void register_nccl(py::module_& m) {
  using RR = ck::NcclRankReport;
  py::class_<RR>(m, "NcclRankReport", "What one rank of the NCCL check reported.")
      .def_readonly("rank", &RR::rank)
      .def_readonly("world_size", &RR::world_size)
      .def_readonly("local_rank", &RR::local_rank)
      .def_readonly("hostname", &RR::hostname)
      .def_readonly("device", &RR::device)
      .def_readonly("torch_version", &RR::torch_version)
      .def_readonly("cuda_version", &RR::cuda_version)
      .def_readonly("nccl_version", &RR::nccl_version)
      .def_readonly("initialized", &RR::initialized)
      .def_readonly("nccl_ok", &RR::nccl_ok, "None: not reported.")
      .def_readonly("nccl_value", &RR::nccl_value)
      .def_readonly("gloo_ok", &RR::gloo_ok, "None: not reported.")
      .def_readonly("gloo_value", &RR::gloo_value)
      .def_readonly("done", &RR::done)
      .def_readonly("error", &RR::error)
      .def("__repr__", [](RR const& r) {
        return "NcclRankReport(rank=" + std::to_string(r.rank) + ", " + repr_str(r.hostname) +
               ", done=" + (r.done ? "True" : "False") + ")";
      });

  using B = ck::NcclBandwidth;
  py::class_<B>(m, "NcclBandwidth", "One all-reduce size of the bandwidth sweep.")
      .def_readonly("bytes", &B::bytes)
      .def_readonly("iterations", &B::iterations)
      .def_readonly("time_us", &B::time_us)
      .def_readonly("algbw_gbps", &B::algbw_gbps)
      .def_readonly("busbw_gbps", &B::busbw_gbps)
      .def_readonly("dtype", &B::dtype)
      .def("__repr__", [](B const& b) {
        std::ostringstream out;
        out << "NcclBandwidth(bytes=" << b.bytes << ", busbw_gbps=" << b.busbw_gbps << ")";
        return out.str();
      });

  using L = ck::NcclNodeLaunch;
  py::class_<L>(m, "NcclNodeLaunch", "One host's torchrun, as planned.")
      .def_readonly("host", &L::host)
      .def_readonly("node_rank", &L::node_rank)
      .def_readonly("nproc", &L::nproc)
      .def_readonly("argv", &L::argv)
      .def_readonly("env", &L::env)
      .def("__repr__", [](L const& l) {
        return "NcclNodeLaunch(host=" + py_repr(py::cast(l.host)) + ", node_rank=" + std::to_string(l.node_rank) +
               ", nproc=" + std::to_string(l.nproc) + ")";
      });

  using HR = ck::NcclHostRun;
  py::class_<HR>(m, "NcclHostRun", "One host's run of the NCCL check.")
      .def_readonly("host", &HR::host)
      .def_readonly("launch", &HR::launch)
      .def_property_readonly(
          "error",
          [](HR const& h) { return error_or_none(h.error, h.message); },
          "None, or a clusterkit.Error.")
      .def_readonly("exit_code", &HR::exit_code)
      .def_readonly("message", &HR::message)
      .def_readonly("output_tail", &HR::output_tail)
      .def("__repr__", [](HR const& h) {
        return "NcclHostRun(" + repr_str(h.host) + ", exit_code=" + std::to_string(h.exit_code) + ")";
      });

  using O = ck::NcclCheckOutput;
  py::class_<O>(m, "NcclCheckOutput", "What the check program printed (parse_nccl_check_output).")
      .def_readonly("ranks", &O::ranks)
      .def_readonly("bandwidth", &O::bandwidth)
      .def_readonly("malformed", &O::malformed)
      .def("__repr__", [](O const& o) {
        return "NcclCheckOutput(ranks=" + std::to_string(o.ranks.size()) + ", bandwidth=" + std::to_string(o.bandwidth.size()) +
               ", malformed=" + std::to_string(o.malformed.size()) + ")";
      });

  using NR = ck::NcclCheckResult;
  py::class_<NR>(m, "NcclCheckResult", "The verdict of the NCCL/Gloo check.")
      .def_property_readonly("ok", &NR::ok,
                    "Every rank initialized, both all_reduce sums were right, every rank finished, every host exited 0.")
      .def_property_readonly("nccl_ok", &NR::nccl_ok)
      .def_property_readonly("gloo_ok", &NR::gloo_ok)
      .def_readonly("world_size", &NR::world_size)
      .def_readonly("ranks", &NR::ranks)
      .def_readonly("bandwidth", &NR::bandwidth)
      .def_readonly("hosts", &NR::hosts)
      .def_readonly("problems", &NR::problems, "What went wrong, with hints, for people.")
      .def("to_json", [](NR const& r) { return json_to_python(r.to_json()); })
      .def("summary", &NR::summary)
      .def("__bool__", [](NR const& r) { return r.ok(); })
      .def("__repr__", [](NR const& r) {
        return "NcclCheckResult(ok=" + std::string(r.ok() ? "True" : "False") +
               ", world_size=" + std::to_string(r.world_size) + ", problems=" + std::to_string(r.problems.size()) + ")";
      });

  m.def("nccl_check_hosts", &ck::nccl_check_hosts, py::arg("inventory"), py::arg("selector") = "",
        "The hosts nccl_check runs on, the head first (node rank 0 and the rendezvous): with no selector every GPU "
        "host of the inventory, else what the selector picks. Raises clusterkit.Error naming what exists when "
        "nothing is selected.");
  m.def(
      "nccl_check",
      [](py::object const& hosts_in, std::string rdzv_host, int rdzv_port, unsigned nproc_per_node,
         py::object const& sizes, unsigned warmup, unsigned iterations, std::string dtype, py::object const& launcher,
         py::object const& exec_prefix, std::string remote_dir, std::map<std::string, std::string> env,
         std::map<std::string, std::map<std::string, std::string>> host_env, bool socket_ifname_from_route,
         double timeout, double failure_grace, std::string python, py::object const& declared_gpus,
         py::object const& inventory, py::object done) -> py::object {
        auto hosts = host_list(hosts_in);
        if (hosts.empty()) throw py::value_error("nccl_check needs at least one host");
        ck::NcclCheckOptions o;
        o.rdzv_host = std::move(rdzv_host);
        o.rdzv_port = rdzv_port;
        o.nproc_per_node = nproc_per_node;
        if (!sizes.is_none()) o.sizes = sizes.cast<std::vector<std::uint64_t>>();
        o.warmup = warmup;
        o.iterations = iterations;
        o.dtype = std::move(dtype);
        o.launcher = string_list(launcher, "launcher");
        if (o.launcher.empty()) throw py::value_error("launcher must not be empty");
        o.exec_prefix = string_list(exec_prefix, "exec_prefix");
        o.remote_dir = std::move(remote_dir);
        o.env = std::move(env);
        o.host_env = std::move(host_env);
        o.socket_ifname_from_route = socket_ifname_from_route;
        o.timeout = whole_seconds(timeout, "timeout");
        o.failure_grace = whole_seconds(failure_grace, "failure_grace");
        o.python = std::move(python);
        o.declared_gpus = declared_gpus_arg(declared_gpus, inventory);
        auto executor = hosts.front().get_executor();
        // Arguments out of range: ValueError (clusterkit.Error
        // 'invalid_argument') before anything runs, the argument named.
        ck::validate_nccl_check_options(o);
        return run_or_start<ck::NcclCheckResult>(executor, std::move(done), "nccl_check()", [&](auto handler) {
          ck::async_nccl_check(std::move(hosts), std::move(o), std::move(handler));
        });
      },
      py::arg("hosts"), py::kw_only(), py::arg("rdzv_host") = "", py::arg("rdzv_port") = 29500,
      py::arg("nproc_per_node") = 0, py::arg("sizes") = py::none(), py::arg("warmup") = 5,
      py::arg("iterations") = 20, py::arg("dtype") = "float32",
      py::arg("launcher") = std::vector<std::string>{"torchrun"}, py::arg("exec_prefix") = std::vector<std::string>{},
      py::arg("remote_dir") = "/tmp", py::arg("env") = std::map<std::string, std::string>{},
      py::arg("host_env") = std::map<std::string, std::map<std::string, std::string>>{},
      py::arg("socket_ifname_from_route") = true, py::arg("timeout") = 600.0, py::arg("failure_grace") = 15.0,
      py::arg("python") = "python3", py::arg("declared_gpus") = py::none(), py::arg("inventory") = py::none(),
      py::arg("_done") = py::none(),
      "The multi-node NCCL/Gloo check: one torchrun per host (the first is the head, node rank 0), an all_reduce "
      "checked over NCCL and over Gloo, then all-reduce bandwidth. Problems are in the result, never raised. "
      "`inventory` (or `declared_gpus`, {host: {count, model, memory_gib, simulated}}): a declared count of real "
      "GPUs is the processes for that host; declared simulated GPUs are refused, naming the host.");
  m.def("nccl_check_script", &ck::nccl_check_script, "The Python program the NCCL check runs on every host.");
  m.def("default_nccl_sizes", &ck::default_nccl_sizes, "1, 4, 16, 64 and 256 MiB.");
  m.def("parse_nccl_check_output", &ck::parse_nccl_check_output, py::arg("text"),
        "Read the `@@ck-nccl {json}` lines of the check's output; odd lines land in .malformed.");
}

}  // namespace

void register_facts(py::module_& m) {
  register_facts_types(m);
  register_preflight(m);
  register_nccl(m);
}

}  // namespace ckpy
