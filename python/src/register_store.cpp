// Shared storage for models: NasMount (nas.hpp) and ModelStore
// (model_store.hpp), plus the model folder snapshots of model.hpp they use.
// Operations on hosts run on the shared runtime: blocking forms wait with the
// GIL released (Ctrl-C cancels the remote commands), start_* forms call
// `done` on the I/O thread for the asyncio layer in
// python/clusterkit/__init__.py. Progress callbacks run on the I/O thread
// with the GIL held; an exception in one stops the operation and is raised
// from the call. The parsers and planners are pure.
#include "json_support.hpp"

#include "clusterkit/model.hpp"
#include "clusterkit/model_store.hpp"
#include "clusterkit/nas.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>

#include <cmath>
#include <sstream>

namespace ckpy {
namespace {

namespace fs = std::filesystem;

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }
std::string repr_str(std::string const& s) { return py_repr(py::str(s)); }

std::vector<ck::Host> host_list(py::handle hosts) {
  if (py::isinstance<py::str>(hosts)) throw py::type_error("hosts must be a list of Host");
  std::vector<ck::Host> out;
  for (auto h : py::iter(hosts)) {
    if (!py::isinstance<ck::Host>(h)) throw py::type_error("hosts must be Host objects, not " + type_name(h));
    out.push_back(h.cast<ck::Host>());
    check_same_runtime(out.back());
  }
  return out;
}

ck::Host one_host(py::handle host) {
  if (!py::isinstance<ck::Host>(host)) throw py::type_error("host must be a Host, not " + type_name(host));
  auto h = host.cast<ck::Host>();
  check_same_runtime(h);
  return h;
}

std::string optional_path(py::handle value) { return value.is_none() ? std::string() : path_string(value); }

/// A limit in seconds where 0 means none: None or 0 -> 0.
std::chrono::seconds optional_limit(py::handle value, char const* what) {
  if (value.is_none()) return std::chrono::seconds(0);
  return whole_seconds(number_of(value, what), what);
}
py::object limit_or_none(std::chrono::seconds s) {
  return s.count() > 0 ? py::object(py::float_(double(s.count()))) : py::object(py::none());
}

int at_least_one(int value, char const* what) {
  if (value < 1) throw py::value_error(std::string(what) + " must be >= 1");
  return value;
}

int checked_port(int port) {
  if (port < 0 || port > 65535) throw py::value_error("port must be 0 (ssh's default) or 1-65535");
  return port;
}

py::bytes as_bytes(std::string const& s) { return py::bytes(s.data(), s.size()); }
std::string bytes_or_str(py::handle value) {
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  auto data = py::reinterpret_steal<py::object>(PyBytes_FromObject(value.ptr()));
  if (!data) throw py::error_already_set();
  return data.cast<std::string>();
}
py::object optional_text(std::optional<std::string> const& s) {
  return s ? py::object(decode(*s)) : py::object(py::none());
}
std::optional<std::string> text_or_none(py::handle value) {
  if (value.is_none()) return std::nullopt;
  return bytes_or_str(value);
}

/// A progress callback for a C++ operation: the Python callable, called on
/// the I/O thread with the GIL held; an exception is recorded on `op`
/// (which cancels it) and raised once the operation has ended.
ck::ProgressCallback progress_callback(std::shared_ptr<Operation> const& op, py::object fn) {
  if (fn.is_none()) return {};
  if (!PyCallable_Check(fn.ptr())) throw py::type_error("on_progress must be callable, not " + type_name(fn));
  return [op, f = share(std::move(fn))](ck::TransferProgress const& p) {
    invoke_callback(*op, [&] { (*f)(py::cast(ck::TransferProgress(p))); });
  };
}

/// Start `initiate(handler)` for a handler of void(Value), and wait (GIL
/// released, Ctrl-C cancels and waits for the end).
template <class Value, class Initiate>
Value wait_one(std::shared_ptr<Operation> const& op, Initiate&& initiate) {
  auto promise = std::make_shared<std::promise<Value>>();
  auto future = promise->get_future();
  initiate(asio::bind_cancellation_slot(op->slot(), [op, promise](Value v) {
    op->mark_finished();
    promise->set_value(std::move(v));
  }));
  return wait_for(*op, future);
}

/// The same for void(std::error_code, Value): a failure is raised (the
/// blocking-call rule: an operation that did not do its job raises), with
/// the value attached as the exception's `.result`.
template <class Value, class Initiate>
Value wait_or_raise(std::shared_ptr<Operation> const& op, Initiate&& initiate) {
  auto [ec, v] = run_blocking<Value>(op, std::forward<Initiate>(initiate));
  if (ec) raise_error(ec, v.message.empty() ? ec.message() : v.message, py::cast(v));
  return std::move(v);
}

/// A handler of void(Value) that delivers the value to `done`.
template <class Value>
auto deliver_one(std::shared_ptr<Operation> const& op, py::object done) {
  return asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](Value v) {
    deliver(*op, d, [&] { return py::cast(std::move(v)); });
  });
}
template <class Value>
auto deliver_ec(std::shared_ptr<Operation> const& op, py::object done) {
  return asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](std::error_code ec, Value v) {
    deliver(*op, d, [&]() -> py::object {
      if (ec) return make_error(ec, v.message.empty() ? ec.message() : v.message, py::cast(v));
      return py::cast(std::move(v));
    });
  });
}

/// Complete at once with `value` (on the I/O thread, never inside the call).
template <class Value>
std::shared_ptr<Operation> completed(py::object done, Value value) {
  auto op = Operation::create(runtime().executor());
  asio::post(runtime().executor(), [op, d = share(std::move(done)), v = std::move(value)]() mutable {
    deliver(*op, d, [&] { return py::cast(std::move(v)); });
  });
  return op;
}

// ---------------------------------------------------------------------------
// Enums (accepted as the enum or its name)

ck::NasKind nas_kind_from(py::handle value) {
  if (py::isinstance<ck::NasKind>(value)) return value.cast<ck::NasKind>();
  if (py::isinstance<py::str>(value)) {
    auto text = value.cast<std::string>();
    if (auto k = ck::nas_kind_from_string(text)) return *k;
    throw py::value_error("NAS kind must be 'nfs', 'sshfs' or 'bind', not '" + text + "'");
  }
  throw py::type_error("kind must be a NasKind or 'nfs', 'sshfs', 'bind', not " + type_name(value));
}

ck::Hub hub_from(py::handle value) {
  if (py::isinstance<ck::Hub>(value)) return value.cast<ck::Hub>();
  if (py::isinstance<py::str>(value)) {
    auto text = value.cast<std::string>();
    if (auto h = ck::hub_from_string(text)) return *h;
    throw py::value_error("hub must be 'modelscope' ('ms') or 'huggingface' ('hf'), not '" + text + "'");
  }
  throw py::type_error("hub must be a Hub or 'modelscope', 'huggingface', not " + type_name(value));
}

ck::ModelLayout store_layout_from(std::string const& text) {
  if (text == "modelscope") return ck::ModelLayout::modelscope;
  if (text == "plain") return ck::ModelLayout::plain;
  throw py::value_error("layout must be 'modelscope' (Org/Name with '.' as '___') or 'plain' (Org/Name), not '" + text +
                        "'");
}

// ---------------------------------------------------------------------------
// NAS: specs and pure pieces

std::string nas_spec_repr(ck::NasSpec const& s) {
  ck::NasSpec d;
  std::ostringstream out;
  out << "NasSpec(" << repr_str(std::string(ck::to_string(s.kind))) << ", " << repr_str(s.source);
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (s.mount_point != d.mount_point) field("mount_point", py::str(s.mount_point));
  if (s.nfs_version != d.nfs_version) field("nfs_version", py::str(s.nfs_version));
  if (s.options != d.options) field("options", py::cast(s.options));
  if (s.read_only) field("read_only", py::bool_(true));
  if (s.identity_file != d.identity_file) field("identity_file", py::str(s.identity_file));
  if (s.known_hosts_file != d.known_hosts_file) field("known_hosts_file", py::str(s.known_hosts_file));
  if (s.port != d.port) field("port", py::int_(s.port));
  if (s.allow_other != d.allow_other) field("allow_other", py::bool_(s.allow_other));
  if (s.persist) field("persist", py::bool_(true));
  if (s.fstab_path != d.fstab_path) field("fstab_path", py::str(s.fstab_path));
  if (s.allow_non_empty) field("allow_non_empty", py::bool_(true));
  if (s.timeout != d.timeout) field("timeout", py::float_(double(s.timeout.count())));
  out << ")";
  return out.str();
}

void register_nas_spec(py::module_& m) {
  py::enum_<ck::NasKind>(m, "NasKind", "How the shared folder is mounted. Wherever a NasKind is taken, its name is too.")
      .value("nfs", ck::NasKind::nfs, "mount -t nfs SERVER:/EXPORT (needs mount.nfs).")
      .value("sshfs", ck::NasKind::sshfs, "sshfs [USER@]HOST:/PATH over SFTP (needs sshfs and FUSE).")
      .value("bind", ck::NasKind::bind, "mount --bind /PATH of a folder on the host itself.");

  using S = ck::NasSpec;
  py::class_<S>(m, "NasSpec",
                "One shared folder: what to mount (kind, source), where (mount_point) and how. Durations are "
                "seconds (whole seconds are used; fractions round up). NasMount(spec) validates it.")
      .def(py::init([](py::object kind, std::string source, py::object mount_point, std::string nfs_version,
                       py::object options, bool read_only, py::object identity_file, py::object known_hosts_file,
                       int port, bool allow_other, bool persist, py::object fstab_path, bool allow_non_empty,
                       double timeout) {
             S s;
             s.kind = nas_kind_from(kind);
             s.source = std::move(source);
             s.mount_point = path_string(mount_point);
             s.nfs_version = std::move(nfs_version);
             s.options = string_list(options, "options");
             s.read_only = read_only;
             s.identity_file = optional_path(identity_file);
             s.known_hosts_file = optional_path(known_hosts_file);
             s.port = checked_port(port);
             s.allow_other = allow_other;
             s.persist = persist;
             s.fstab_path = path_string(fstab_path);
             s.allow_non_empty = allow_non_empty;
             s.timeout = whole_seconds(timeout, "timeout");
             return s;
           }),
           py::arg("kind") = "nfs", py::arg("source") = "", py::kw_only(), py::arg("mount_point") = "/mnt",
           py::arg("nfs_version") = "3", py::arg("options") = std::vector<std::string>{},
           py::arg("read_only") = false, py::arg("identity_file") = py::none(),
           py::arg("known_hosts_file") = py::none(), py::arg("port") = 0, py::arg("allow_other") = true,
           py::arg("persist") = false, py::arg("fstab_path") = "/etc/fstab", py::arg("allow_non_empty") = false,
           py::arg("timeout") = 120.0)
      .def_property(
          "kind", [](S const& s) { return s.kind; }, [](S& s, py::object v) { s.kind = nas_kind_from(v); })
      .def_readwrite("source", &S::source, "nfs: 'SERVER:/EXPORT'; sshfs: '[USER@]HOST:/PATH'; bind: '/PATH'.")
      .def_property(
          "mount_point", [](S const& s) { return s.mount_point; },
          [](S& s, py::object v) { s.mount_point = path_string(v); }, "Where the folder appears on every host.")
      .def_readwrite("nfs_version", &S::nfs_version, "'3' (the default), '4', '4.0', '4.1' or '4.2'.")
      .def_readwrite("options", &S::options, "Extra mount options; one with a default's key replaces it.")
      .def_readwrite("read_only", &S::read_only)
      .def_property(
          "identity_file", [](S const& s) { return s.identity_file; },
          [](S& s, py::object v) { s.identity_file = optional_path(v); },
          "sshfs: the key the mounting host uses to reach the NAS (a path on that host).")
      .def_property(
          "known_hosts_file", [](S const& s) { return s.known_hosts_file; },
          [](S& s, py::object v) { s.known_hosts_file = optional_path(v); })
      .def_property(
          "port", [](S const& s) { return s.port; }, [](S& s, int p) { s.port = checked_port(p); })
      .def_readwrite("allow_other", &S::allow_other, "sshfs: let other users (and containers) read the mount.")
      .def_readwrite("persist", &S::persist, "Also write an fstab entry so the mount survives a reboot.")
      .def_property(
          "fstab_path", [](S const& s) { return s.fstab_path; }, [](S& s, py::object v) { s.fstab_path = path_string(v); })
      .def_readwrite("allow_non_empty", &S::allow_non_empty, "Mount over a folder that has files in it.")
      .def_property(
          "timeout", [](S const& s) { return double(s.timeout.count()); },
          [](S& s, double v) { s.timeout = whole_seconds(v, "timeout"); }, "Seconds a mount or unmount may take.")
      .def("__copy__", [](S const& s) { return S(s); })
      .def("__deepcopy__", [](S const& s, py::dict) { return S(s); }, py::arg("memo"))
      .def("__repr__", &nas_spec_repr);

  using U = ck::UnmountOptions;
  py::class_<U>(m, "UnmountOptions", "How NasMount.unmount() goes about it.")
      .def(py::init([](bool remove_fstab_entry, bool lazy) { return U{remove_fstab_entry, lazy}; }), py::kw_only(),
           py::arg("remove_fstab_entry") = false, py::arg("lazy") = false)
      .def_readwrite("remove_fstab_entry", &U::remove_fstab_entry, "Also remove the fstab entry for the mount point.")
      .def_readwrite("lazy", &U::lazy, "umount -l: detach now, clean up when the last user closes its files.")
      .def("__repr__", [](U const& u) {
        return std::string("UnmountOptions(remove_fstab_entry=") + (u.remove_fstab_entry ? "True" : "False") +
               ", lazy=" + (u.lazy ? "True" : "False") + ")";
      });

  using E = ck::MountEntry;
  py::class_<E>(m, "MountEntry", "One line of /proc/self/mountinfo.")
      .def_readonly("id", &E::id)
      .def_readonly("parent", &E::parent)
      .def_readonly("device", &E::device, "'MAJOR:MINOR'.")
      .def_readonly("root", &E::root, "The folder of the filesystem mounted here ('/' for a whole filesystem).")
      .def_readonly("mount_point", &E::mount_point)
      .def_readonly("mount_options", &E::mount_options)
      .def_readonly("fstype", &E::fstype)
      .def_readonly("source", &E::source)
      .def_readonly("super_options", &E::super_options)
      .def("__repr__", [](E const& e) {
        return "MountEntry(" + repr_str(e.mount_point) + ", " + repr_str(e.fstype) + ", " + repr_str(e.source) + ")";
      });

  using P = ck::MountProbe;
  py::class_<P>(m, "MountProbe", "What a host reported before a mount (parse_mount_probe), for plan_mount.")
      .def(py::init([](std::vector<E> mounts, bool mount_point_exists, bool mount_point_is_directory,
                       bool mount_point_empty, std::vector<std::string> mount_point_entries, bool helper_present,
                       std::string bind_source_real, int uid, py::object fstab) {
             P p;
             p.mounts = std::move(mounts);
             p.mount_point_exists = mount_point_exists;
             p.mount_point_is_directory = mount_point_is_directory;
             p.mount_point_empty = mount_point_empty;
             p.mount_point_entries = std::move(mount_point_entries);
             p.helper_present = helper_present;
             p.bind_source_real = std::move(bind_source_real);
             p.uid = uid;
             if (!fstab.is_none()) p.fstab = fstab.cast<std::string>();
             return p;
           }),
           py::kw_only(), py::arg("mounts") = std::vector<E>{}, py::arg("mount_point_exists") = false,
           py::arg("mount_point_is_directory") = false, py::arg("mount_point_empty") = true,
           py::arg("mount_point_entries") = std::vector<std::string>{}, py::arg("helper_present") = true,
           py::arg("bind_source_real") = "", py::arg("uid") = -1, py::arg("fstab") = py::none())
      .def_readwrite("mounts", &P::mounts)
      .def_readwrite("mount_point_exists", &P::mount_point_exists)
      .def_readwrite("mount_point_is_directory", &P::mount_point_is_directory)
      .def_readwrite("mount_point_empty", &P::mount_point_empty)
      .def_readwrite("mount_point_entries", &P::mount_point_entries)
      .def_readwrite("helper_present", &P::helper_present, "The programs the kind needs are on the host.")
      .def_readwrite("bind_source_real", &P::bind_source_real)
      .def_readwrite("uid", &P::uid)
      .def_readwrite("fstab", &P::fstab, "The fstab's text (read only when persisting), or None.")
      .def("__repr__", [](P const& p) {
        return "MountProbe(mounts=" + std::to_string(p.mounts.size()) +
               ", mount_point_exists=" + (p.mount_point_exists ? "True" : "False") +
               ", helper_present=" + (p.helper_present ? "True" : "False") + ")";
      });

  using MP = ck::MountPlan;
  py::class_<MP>(m, "MountPlan", "What plan_mount decided for one host.")
      .def_property_readonly("action", [](MP const& p) { return std::string(ck::to_string(p.action)); },
                             "'keep', 'mount' or 'refuse'.")
      .def_readonly("reason", &MP::reason, "keep: what is mounted; refuse: what is wrong and the fix.")
      .def_property_readonly(
          "refusal", [](MP const& p) { return error_or_none(p.refusal, p.reason); },
          "None, or a clusterkit.Error ('mount_conflict', 'program_missing', 'invalid_argument') when refused.")
      .def_readonly("script", &MP::script, "The script a mount runs ('' otherwise).")
      .def_readonly("new_fstab", &MP::new_fstab, "The fstab to write (persist), or None.")
      .def("__repr__", [](MP const& p) {
        return "MountPlan(" + repr_str(std::string(ck::to_string(p.action))) + ", " + repr_str(p.reason) + ")";
      });

  m.def(
      "nas_clients",
      [](std::vector<ck::InventoryHost> const& selected) {
        std::vector<std::string> skipped;
        auto clients = ck::nas_clients(selected, &skipped);
        return py::make_tuple(std::move(clients), std::move(skipped));
      },
      py::arg("selected"),
      "(clients, skipped): the hosts that mount the NAS, of those selected (every one but the NAS host itself, role "
      "'nas', which serves the folder), and the names left out.");
  m.def("nas_mount_options", &ck::nas_mount_options, py::arg("spec"),
        "The options a mount of `spec` uses: the kind's recommended defaults, then spec.options, then 'ro'. Raises "
        "clusterkit.Error('invalid_argument') for an unknown NFS version or a bad option.");
  m.def("nas_mount_argv", &ck::nas_mount_argv, py::arg("spec"),
        "The command that mounts `spec`, e.g. ['mount', '-t', 'nfs', '-o', 'vers=3,...', 'SERVER:/EXPORT', '/mnt'].");
  m.def("nas_mount_script", &ck::nas_mount_script, py::arg("spec"),
        "The shell script a host runs to mount `spec` (mount point, mount, and the mount table line).");
  m.def("validate_nas_spec", &ck::validate, py::arg("spec"), py::arg("source_required") = true,
        "Raise clusterkit.Error('invalid_argument') naming the field when `spec` cannot work.");
  m.def(
      "nas_spec_from_vars",
      [](py::object const& vars, std::string const& host, std::optional<S> base) {
        return ck::nas_spec_from_vars(python_to_json(vars, "vars"), host, base ? *base : S{});
      },
      py::arg("vars"), py::arg("host"), py::arg("base") = py::none(),
      "The NAS an inventory host's vars describe (nas_export, nas_type, mount_point, nas_nfs_version, nas_options, "
      "nas_identity_file, nas_known_hosts_file); what vars lack keeps `base`'s value. Raises "
      "clusterkit.Error('inventory_invalid').");
  m.def("fstab_line", &ck::fstab_line, py::arg("spec"), "The /etc/fstab line for `spec`.");
  m.def("parse_mountinfo", &ck::parse_mountinfo, py::arg("text"),
        "Parse /proc/self/mountinfo (octal escapes decoded; malformed lines skipped).");
  m.def("mount_at", &ck::mount_at, py::arg("mounts"), py::arg("path"),
        "The mount visible at `path` (the last one mounted there), or None.");
  m.def("mount_probe_script", &ck::mount_probe_script, py::arg("spec"), py::arg("read_fstab") = false,
        "The script whose output parse_mount_probe reads.");
  m.def("parse_mount_probe", &ck::parse_mount_probe, py::arg("output"),
        "The MountProbe in mount_probe_script's output. Raises clusterkit.Error('parse_error').");
  m.def("plan_mount", &ck::plan_mount, py::arg("spec"), py::arg("probe"), py::arg("host"),
        "Decide what to do on a host named `host` from its probe: keep, mount or refuse.");
}

// ---------------------------------------------------------------------------
// NAS: outcomes and NasMount

std::shared_ptr<Operation> nas_operation(std::vector<ck::Host> const& hosts) {
  return Operation::create(hosts.empty() ? runtime().executor() : hosts.front().get_executor());
}

ck::UnmountOptions unmount_options(py::object const& options) {
  if (options.is_none()) return {};
  return options.cast<ck::UnmountOptions>();
}

ck::NasSpec nas_spec_from(py::object const& spec, py::kwargs const& kwargs) {
  if (!spec.is_none()) {
    if (kwargs.size() > 0) throw py::type_error("NasMount() takes a NasSpec or NasSpec's keyword arguments, not both");
    if (!py::isinstance<ck::NasSpec>(spec))
      throw py::type_error("NasMount() takes a NasSpec or keyword arguments (NasMount(kind='nfs', source=...)), not " +
                           type_name(spec));
    return spec.cast<ck::NasSpec>();
  }
  return py::type::of<ck::NasSpec>()(**kwargs).cast<ck::NasSpec>();
}

void register_nas_mount(py::module_& m) {
  using O = ck::MountOutcome;
  py::class_<O>(m, "MountOutcome", "One host's part of NasMount.mount() or unmount().")
      .def_readonly("host", &O::host)
      .def_property_readonly(
          "error", [](O const& o) { return error_or_none(o.error, o.message); },
          "None on success (mounted or kept; nothing to do or unmounted), else a clusterkit.Error "
          "('mount_conflict', 'mount_failed', 'program_missing', ...).")
      .def_readonly("action", &O::action,
                    "Mounts: 'keep', 'mount' or 'refuse'; unmounts: 'nothing', 'unmount' or 'refuse'.")
      .def_readonly("message", &O::message, "What was done, or what is wrong and the fix.")
      .def_readonly("entry", &O::entry, "The mount table entry afterwards (mounts) or the one removed (unmounts).")
      .def_readonly("fstab_changed", &O::fstab_changed)
      .def_property_readonly("ok", &O::ok)
      .def("to_json", [](O const& o) { return json_to_python(o.to_json()); })
      .def("__bool__", &O::ok)
      .def("__repr__", [](O const& o) {
        std::string s = "MountOutcome(" + repr_str(o.host) + ", " + repr_str(o.action);
        if (o.error) s += ", error=" + repr_str(error_code_name(o.error));
        return s + ")";
      });

  using V = ck::NasHostView;
  py::class_<V>(m, "NasHostView", "One host's part of NasMount.check().")
      .def_readonly("host", &V::host)
      .def_readonly("source", &V::source, "What is mounted at the path ('' for a plain folder).")
      .def_readonly("fstype", &V::fstype)
      .def_readonly("mounted", &V::mounted)
      .def_readonly("sees", &V::sees, "The hosts whose token files this host saw (itself included).")
      .def_readonly("misses", &V::misses, "The hosts whose token files it did not see.")
      .def_readonly("problem", &V::problem, "A sentence; '' when fine.")
      .def("__repr__", [](V const& v) {
        return "NasHostView(" + repr_str(v.host) + ", mounted=" + (v.mounted ? "True" : "False") +
               ", source=" + repr_str(v.source) + ", misses=" + py_repr(py::cast(v.misses)) + ")";
      });

  using R = ck::NasCheckReport;
  py::class_<R>(m, "NasCheckReport", "Does every host see the same folder at the path?")
      .def_readonly("path", &R::path)
      .def_readonly("hosts", &R::hosts)
      .def_property_readonly("ok", &R::ok,
                    "Every host has the path mounted from the same source and saw every other host's token file.")
      .def_readonly("problems", &R::problems, "Cluster-wide findings, sentences.")
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); })
      .def("__bool__", [](R const& r) { return r.ok(); })
      .def("__repr__", [](R const& r) {
        return "NasCheckReport(" + repr_str(r.path) + ", ok=" + (r.ok() ? "True" : "False") +
               ", hosts=" + std::to_string(r.hosts.size()) + ", problems=" + std::to_string(r.problems.size()) + ")";
      });

  using N = ck::NasMount;
  py::class_<N>(m, "NasMount",
                "One shared folder mounted at the same path on a set of hosts. NasMount(spec) or "
                "NasMount(kind=..., source=..., mount_point=...); raises clusterkit.Error('invalid_argument') when "
                "the spec cannot work (the source may be empty for unmount and check). Blocking calls release the "
                "GIL; Ctrl-C stops the commands on the hosts.")
      .def(py::init([](py::object spec, py::kwargs kwargs) { return N(nas_spec_from(spec, kwargs)); }),
           py::arg("spec") = py::none())
      .def_property_readonly("spec", [](N const& n) { return n.spec(); }, "A copy of the NasSpec.")
      .def(
          "mount",
          [](N const& n, py::object const& hosts_in) {
            refuse_blocking_on_runtime_thread("NasMount.mount()");
            auto hosts = host_list(hosts_in);
            if (hosts.empty()) return std::vector<ck::MountOutcome>{};
            auto op = nas_operation(hosts);
            return wait_one<std::vector<ck::MountOutcome>>(
                op, [&](auto handler) { n.async_mount(std::move(hosts), std::move(handler)); });
          },
          py::arg("hosts"),
          "Mount on every host at once: probe, then mount, keep (the same source is there) or refuse (something "
          "else is). One MountOutcome per host, in order; a host's failure is in its outcome, never raised.")
      .def(
          "unmount",
          [](N const& n, py::object const& hosts_in, py::object const& options) {
            refuse_blocking_on_runtime_thread("NasMount.unmount()");
            auto hosts = host_list(hosts_in);
            auto o = unmount_options(options);
            if (hosts.empty()) return std::vector<ck::MountOutcome>{};
            auto op = nas_operation(hosts);
            return wait_one<std::vector<ck::MountOutcome>>(
                op, [&](auto handler) { n.async_unmount(std::move(hosts), o, std::move(handler)); });
          },
          py::arg("hosts"), py::arg("options") = py::none(),
          "Unmount on every host. With spec.source set, only a mount of that source; with it empty, any network "
          "or FUSE mount at the mount point (a disk or tmpfs there is refused).")
      .def(
          "check",
          [](N const& n, py::object const& hosts_in) {
            refuse_blocking_on_runtime_thread("NasMount.check()");
            auto hosts = host_list(hosts_in);
            auto op = nas_operation(hosts);
            return wait_one<ck::NasCheckReport>(op,
                                                [&](auto handler) { n.async_check(std::move(hosts), std::move(handler)); });
          },
          py::arg("hosts"),
          "Does every host see the same folder at the mount point? Each host's mount table, then token files "
          "written by each host and read by all.")
      .def(
          "_start_mount",
          [](N const& n, py::object const& hosts_in, py::object done) {
            auto hosts = host_list(hosts_in);
            if (hosts.empty()) return completed(std::move(done), std::vector<ck::MountOutcome>{});
            auto op = nas_operation(hosts);
            n.async_mount(std::move(hosts), deliver_one<std::vector<ck::MountOutcome>>(op, std::move(done)));
            return op;
          },
          py::arg("hosts"), py::kw_only(), py::arg("done"),
          "Start mount(); done(list[MountOutcome]) is called on the I/O thread.")
      .def(
          "_start_unmount",
          [](N const& n, py::object const& hosts_in, py::object const& options, py::object done) {
            auto hosts = host_list(hosts_in);
            auto o = unmount_options(options);
            if (hosts.empty()) return completed(std::move(done), std::vector<ck::MountOutcome>{});
            auto op = nas_operation(hosts);
            n.async_unmount(std::move(hosts), o, deliver_one<std::vector<ck::MountOutcome>>(op, std::move(done)));
            return op;
          },
          py::arg("hosts"), py::arg("options") = py::none(), py::kw_only(), py::arg("done"),
          "Start unmount(); done(list[MountOutcome]) is called on the I/O thread.")
      .def(
          "_start_check",
          [](N const& n, py::object const& hosts_in, py::object done) {
            auto hosts = host_list(hosts_in);
            auto op = nas_operation(hosts);
            n.async_check(std::move(hosts), deliver_one<ck::NasCheckReport>(op, std::move(done)));
            return op;
          },
          py::arg("hosts"), py::kw_only(), py::arg("done"),
          "Start check(); done(NasCheckReport) is called on the I/O thread.")
      .def("__repr__", [](N const& n) { return "NasMount(" + nas_spec_repr(n.spec()) + ")"; });
}

// ---------------------------------------------------------------------------
// Model store: progress and the pure parsers

void register_progress(py::module_& m) {
  using T = ck::TransferProgress;
  py::class_<T>(m, "TransferProgress", "Where a download, copy or verify stands (byte totals 0 while unknown).")
      .def_readonly("host", &T::host)
      .def_readonly("phase", &T::phase, "'download', 'copy' or 'verify'.")
      .def_readonly("file", &T::file, "The file being worked on, when the tool says.")
      .def_readonly("bytes_done", &T::bytes_done)
      .def_readonly("bytes_total", &T::bytes_total)
      .def_readonly("files_done", &T::files_done)
      .def_readonly("files_total", &T::files_total)
      .def_readonly("bytes_per_second", &T::bytes_per_second, "Over the last few seconds (0 while unknown).")
      .def_property_readonly("elapsed", [](T const& t) { return to_seconds(t.elapsed); }, "Seconds.")
      .def("to_json", [](T const& t) { return json_to_python(t.to_json()); })
      .def("__repr__", [](T const& t) {
        return "TransferProgress(" + repr_str(t.host) + ", " + repr_str(t.phase) + ", bytes=" +
               std::to_string(t.bytes_done) + "/" + std::to_string(t.bytes_total) +
               ", files=" + std::to_string(t.files_done) + "/" + std::to_string(t.files_total) + ")";
      });

  using B = ck::TqdmBar;
  py::class_<B>(m, "TqdmBar", "One refresh of a tqdm progress bar, as the hub CLIs draw them.")
      .def_readonly("label", &B::label, "The text before the colon: a file name, 'Fetching 5 files', ...")
      .def_readonly("n", &B::n, "Position in the bar's unit (bytes for unit 'B').")
      .def_readonly("total", &B::total, "0 when the bar has none.")
      .def_readonly("unit", &B::unit, "'B' for byte bars; 'it' / 'file' for counting bars.")
      .def("__repr__", [](B const& b) {
        return "TqdmBar(" + repr_str(b.label) + ", n=" + py_repr(py::float_(b.n)) +
               ", total=" + py_repr(py::float_(b.total)) + ", unit=" + repr_str(b.unit) + ")";
      });

  using D = ck::DownloadProgressParser;
  py::class_<D>(m, "DownloadProgressParser",
                "Turns what a hub CLI writes to stderr into progress: feed it segments (the text split at \\r and "
                "\\n); it keeps the last state of each bar.")
      .def(py::init<>())
      .def("feed", [](D& d, std::string_view segment) { return d.feed(segment); }, py::arg("segment"),
           "True when the segment changed the progress.")
      .def_property_readonly("files_done", &D::files_done)
      .def_property_readonly("files_total", &D::files_total)
      .def_property_readonly("bytes_done", &D::bytes_done)
      .def_property_readonly("bytes_total", &D::bytes_total)
      .def_property_readonly("current_file", [](D const& d) { return d.current_file(); },
                             "The last file a per-file bar named.")
      .def("__repr__", [](D const& d) {
        return "DownloadProgressParser(files=" + std::to_string(d.files_done()) + "/" +
               std::to_string(d.files_total()) + ", bytes=" + std::to_string(d.bytes_done()) + "/" +
               std::to_string(d.bytes_total()) + ")";
      });

  using RP = ck::RsyncProgress;
  py::class_<RP>(m, "RsyncProgress", "One rsync --info=progress2 line.")
      .def_readonly("bytes", &RP::bytes, "Bytes so far, for the whole run.")
      .def_readonly("percent", &RP::percent)
      .def_readonly("transferred", &RP::transferred, "xfr#N: files transferred so far.")
      .def_readonly("to_check", &RP::to_check, "Files left to check (to-chk=N/M), or None.")
      .def_readonly("total_files", &RP::total_files, "Files in all (to-chk=N/M), or None.")
      .def("__repr__", [](RP const& p) {
        return "RsyncProgress(bytes=" + std::to_string(p.bytes) + ", percent=" + std::to_string(p.percent) +
               ", transferred=" + std::to_string(p.transferred) + ")";
      });

  m.def("parse_tqdm_bar", &ck::parse_tqdm_bar, py::arg("segment"),
        "Parse one refresh of a tqdm bar ('model.safetensors:  12%|...| 250k/2.07M [...]'), escape sequences and "
        "carriage returns already removed; None for anything else.");
  m.def("strip_ansi", &ck::strip_ansi, py::arg("text"), "Remove ANSI escape sequences (colours, cursor moves).");
  m.def("parse_rsync_progress", &ck::parse_rsync_progress, py::arg("segment"),
        "Parse an rsync --info=progress2 line; None for other lines.");
  m.def("parse_rsync_stat", &ck::parse_rsync_stat, py::arg("line"), py::arg("name"),
        "A number from rsync --stats ('Total transferred file size: 1,234 bytes' for that name); None otherwise.");
}

// ---------------------------------------------------------------------------
// Model store: specs

std::string download_spec_repr(ck::DownloadSpec const& s) {
  ck::DownloadSpec d;
  std::ostringstream out;
  out << "DownloadSpec(" << repr_str(s.model_id) << ", hub=" << repr_str(std::string(ck::to_string(s.hub)));
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (!s.revision.empty()) field("revision", py::str(s.revision));
  if (!s.endpoint.empty()) field("endpoint", py::str(s.endpoint));
  // The token is a secret: only whether there is one.
  if (!s.token.empty()) out << ", token='***'";
  if (!s.local_dir.empty()) field("local_dir", py::str(s.local_dir));
  if (!s.include.empty()) field("include", py::cast(s.include));
  if (!s.exclude.empty()) field("exclude", py::cast(s.exclude));
  if (!s.cli.empty()) field("cli", py::str(s.cli));
  if (s.max_workers != d.max_workers) field("max_workers", py::int_(s.max_workers));
  if (s.attempts != d.attempts) field("attempts", py::int_(s.attempts));
  if (s.retry_delay != d.retry_delay) field("retry_delay", py::float_(double(s.retry_delay.count())));
  if (s.timeout.count() > 0) field("timeout", py::float_(double(s.timeout.count())));
  if (!s.verify) field("verify", py::bool_(false));
  out << ")";
  return out.str();
}

std::string sync_spec_repr(ck::SyncSpec const& s) {
  ck::SyncSpec d;
  std::ostringstream out;
  out << "SyncSpec(" << repr_str(s.source) << ", " << repr_str(s.destination);
  auto field = [&](char const* name, py::object value) { out << ", " << name << "=" << py_repr(value); };
  if (s.streams != d.streams) field("streams", py::int_(s.streams));
  if (s.delete_extraneous) field("delete_extraneous", py::bool_(true));
  if (s.checksum) field("checksum", py::bool_(true));
  if (!s.exclude.empty()) field("exclude", py::cast(s.exclude));
  if (s.timeout.count() > 0) field("timeout", py::float_(double(s.timeout.count())));
  if (!s.verify) field("verify", py::bool_(false));
  out << ")";
  return out.str();
}

std::vector<ck::CopyItem> copy_items(py::handle files) {
  if (py::isinstance<py::str>(files)) throw py::type_error("files must be a list of CopyItem or (path, bytes) pairs");
  std::vector<ck::CopyItem> out;
  for (auto item : py::iter(files)) {
    if (py::isinstance<ck::CopyItem>(item)) {
      out.push_back(item.cast<ck::CopyItem>());
    } else if (py::isinstance<py::tuple>(item) && py::len(item) == 2) {
      auto t = item.cast<py::tuple>();
      auto bytes = t[1].cast<long long>();
      if (bytes < 0) throw py::value_error("file sizes must be >= 0");
      out.push_back({path_string(t[0]), static_cast<std::uint64_t>(bytes)});
    } else {
      throw py::type_error("files must be CopyItem objects or (path, bytes) pairs, not " + type_name(item));
    }
  }
  return out;
}

void register_store_specs(py::module_& m) {
  py::enum_<ck::Hub>(m, "Hub", "Where a model is downloaded from. Wherever a Hub is taken, its name is too "
                               "('modelscope' or 'ms', 'huggingface' or 'hf').")
      .value("modelscope", ck::Hub::modelscope, "modelscope.cn through the `modelscope` CLI.")
      .value("huggingface", ck::Hub::huggingface, "huggingface.co through `hf` (or `huggingface-cli`).");

  using DS = ck::DownloadSpec;
  py::class_<DS>(m, "DownloadSpec",
                 "What to download and how. The token is a secret: it reaches the CLI through its standard input, "
                 "never an argv, a log line, an error message or repr(). Durations are seconds; timeout None: no "
                 "limit.")
      .def(py::init([](std::string model_id, py::object hub, std::string revision, std::string endpoint,
                       std::string token, py::object local_dir, py::object include, py::object exclude,
                       py::object cli, int max_workers, int attempts, double retry_delay, py::object timeout,
                       bool verify) {
             DS s;
             s.model_id = std::move(model_id);
             s.hub = hub_from(hub);
             s.revision = std::move(revision);
             s.endpoint = std::move(endpoint);
             s.token = std::move(token);
             s.local_dir = optional_path(local_dir);
             s.include = string_list(include, "include");
             s.exclude = string_list(exclude, "exclude");
             s.cli = optional_path(cli);
             s.max_workers = at_least_one(max_workers, "max_workers");
             s.attempts = at_least_one(attempts, "attempts");
             s.retry_delay = whole_seconds(retry_delay, "retry_delay");
             s.timeout = optional_limit(timeout, "timeout");
             s.verify = verify;
             return s;
           }),
           py::arg("model_id") = "", py::kw_only(), py::arg("hub") = "modelscope", py::arg("revision") = "",
           py::arg("endpoint") = "", py::arg("token") = "", py::arg("local_dir") = py::none(),
           py::arg("include") = std::vector<std::string>{}, py::arg("exclude") = std::vector<std::string>{},
           py::arg("cli") = py::none(), py::arg("max_workers") = 8, py::arg("attempts") = 3,
           py::arg("retry_delay") = 5.0, py::arg("timeout") = py::none(), py::arg("verify") = true)
      .def_readwrite("model_id", &DS::model_id, "'Qwen/Qwen2.5-72B-Instruct'.")
      .def_property(
          "hub", [](DS const& s) { return s.hub; }, [](DS& s, py::object v) { s.hub = hub_from(v); })
      .def_readwrite("revision", &DS::revision, "Branch, tag or commit; '' for the hub's default branch.")
      .def_readwrite("endpoint", &DS::endpoint, "A mirror or private hub (HF_ENDPOINT / MODELSCOPE_ENDPOINT).")
      .def_readwrite("token", &DS::token, "An access token for gated or private models (never shown by repr()).")
      .def_property(
          "local_dir", [](DS const& s) { return s.local_dir; },
          [](DS& s, py::object v) { s.local_dir = optional_path(v); },
          "Where the files go on the host; '' for the store's folder of the model (ModelStore.path_for).")
      .def_readwrite("include", &DS::include, "Only files matching these globs.")
      .def_readwrite("exclude", &DS::exclude)
      .def_property(
          "cli", [](DS const& s) { return s.cli; }, [](DS& s, py::object v) { s.cli = optional_path(v); },
          "The CLI to run (a path on the host); '' to look for hf / huggingface-cli / modelscope.")
      .def_property(
          "max_workers", [](DS const& s) { return s.max_workers; },
          [](DS& s, int v) { s.max_workers = at_least_one(v, "max_workers"); })
      .def_property(
          "attempts", [](DS const& s) { return s.attempts; },
          [](DS& s, int v) { s.attempts = at_least_one(v, "attempts"); },
          "Runs of the CLI before giving up; each resumes what the last left.")
      .def_property(
          "retry_delay", [](DS const& s) { return double(s.retry_delay.count()); },
          [](DS& s, double v) { s.retry_delay = whole_seconds(v, "retry_delay"); },
          "Seconds between attempts (doubled each time).")
      .def_property(
          "timeout", [](DS const& s) { return limit_or_none(s.timeout); },
          [](DS& s, py::object v) { s.timeout = optional_limit(v, "timeout"); },
          "The whole download's limit in seconds; None for none.")
      .def_readwrite("verify", &DS::verify, "Check the result on the host (config, index, headers, sizes).")
      .def("__copy__", [](DS const& s) { return DS(s); })
      .def("__deepcopy__", [](DS const& s, py::dict) { return DS(s); }, py::arg("memo"))
      .def("__repr__", &download_spec_repr);

  using SS = ck::SyncSpec;
  py::class_<SS>(m, "SyncSpec",
                 "A copy of one folder into another on the same host (the NAS mounted there), several rsync "
                 "streams at once. timeout None: no limit.")
      .def(py::init([](py::object source, py::object destination, int streams, bool delete_extraneous, bool checksum,
                       py::object exclude, py::object timeout, bool verify) {
             SS s;
             s.source = optional_path(source);
             s.destination = optional_path(destination);
             s.streams = at_least_one(streams, "streams");
             s.delete_extraneous = delete_extraneous;
             s.checksum = checksum;
             s.exclude = string_list(exclude, "exclude");
             s.timeout = optional_limit(timeout, "timeout");
             s.verify = verify;
             return s;
           }),
           py::arg("source") = "", py::arg("destination") = "", py::kw_only(), py::arg("streams") = 4,
           py::arg("delete_extraneous") = false, py::arg("checksum") = false,
           py::arg("exclude") = std::vector<std::string>{}, py::arg("timeout") = py::none(), py::arg("verify") = true)
      .def_property(
          "source", [](SS const& s) { return s.source; }, [](SS& s, py::object v) { s.source = optional_path(v); })
      .def_property(
          "destination", [](SS const& s) { return s.destination; },
          [](SS& s, py::object v) { s.destination = optional_path(v); })
      .def_property(
          "streams", [](SS const& s) { return s.streams; }, [](SS& s, int v) { s.streams = at_least_one(v, "streams"); },
          "rsync processes at once; files are dealt to them largest first.")
      .def_readwrite("delete_extraneous", &SS::delete_extraneous, "Remove files the source lacks.")
      .def_readwrite("checksum", &SS::checksum, "Compare by checksum instead of size and time (reads both sides).")
      .def_readwrite("exclude", &SS::exclude, "Relative globs left out (the CLIs' bookkeeping always is).")
      .def_property(
          "timeout", [](SS const& s) { return limit_or_none(s.timeout); },
          [](SS& s, py::object v) { s.timeout = optional_limit(v, "timeout"); })
      .def_readwrite("verify", &SS::verify, "Check the copy where it landed.")
      .def("__copy__", [](SS const& s) { return SS(s); })
      .def("__deepcopy__", [](SS const& s, py::dict) { return SS(s); }, py::arg("memo"))
      .def("__repr__", &sync_spec_repr);

  using RV = ck::RemoteVerifyOptions;
  py::class_<RV>(m, "RemoteVerifyOptions", "How ModelStore.verify() checks a folder on each host.")
      .def(py::init([](bool read_all, bool checksums, std::string container_path, double timeout) {
             RV o;
             o.read_all = read_all;
             o.checksums = checksums;
             o.container_path = std::move(container_path);
             o.timeout = whole_seconds(timeout, "timeout");
             return o;
           }),
           py::kw_only(), py::arg("read_all") = false, py::arg("checksums") = false, py::arg("container_path") = "",
           py::arg("timeout") = 600.0)
      .def_readwrite("read_all", &RV::read_all, "Also read every shard to its end (through each host's mount).")
      .def_readwrite("checksums", &RV::checksums, "Compare with the folder's sha256sums on each host.")
      .def_readwrite("container_path", &RV::container_path,
                     "The path the serving container uses for the folder ('' for the store's container root).")
      .def_property(
          "timeout", [](RV const& o) { return double(o.timeout.count()); },
          [](RV& o, double v) { o.timeout = whole_seconds(v, "timeout"); })
      .def("__repr__", [](RV const& o) {
        return std::string("RemoteVerifyOptions(read_all=") + (o.read_all ? "True" : "False") +
               ", checksums=" + (o.checksums ? "True" : "False") + ", container_path=" + repr_str(o.container_path) +
               ", timeout=" + std::to_string(o.timeout.count()) + ".0)";
      });

  using MS = ck::ModelStoreSpec;
  py::class_<MS>(m, "ModelStoreSpec", "Where models live on every host, and how the serving container sees them.")
      .def(py::init([](py::object root, std::string const& layout, py::object container_root) {
             MS s;
             s.root = path_string(root);
             s.layout = store_layout_from(layout);
             s.container_root = optional_path(container_root);
             return s;
           }),
           py::arg("root") = "/mnt", py::kw_only(), py::arg("layout") = "modelscope",
           py::arg("container_root") = "")
      .def_property(
          "root", [](MS const& s) { return s.root; }, [](MS& s, py::object v) { s.root = path_string(v); },
          "The NAS mount point, or a folder under it.")
      .def_property(
          "layout", [](MS const& s) { return std::string(ck::to_string(s.layout)); },
          [](MS& s, std::string const& v) { s.layout = store_layout_from(v); },
          "'modelscope' (Qwen/Qwen2___5-72B-Instruct) or 'plain' (Qwen/Qwen2.5-72B-Instruct).")
      .def_property(
          "container_root", [](MS const& s) { return s.container_root; },
          [](MS& s, py::object v) { s.container_root = optional_path(v); },
          "Where the serving container mounts root ('' for none).")
      .def("__repr__", [](MS const& s) {
        return "ModelStoreSpec(" + repr_str(s.root) + ", layout=" + repr_str(std::string(ck::to_string(s.layout))) +
               (s.container_root.empty() ? std::string() : ", container_root=" + repr_str(s.container_root)) + ")";
      });

  using CI = ck::CopyItem;
  py::class_<CI>(m, "CopyItem", "A file to copy: its path relative to the source, and its size.")
      .def(py::init([](py::object path, std::uint64_t bytes) { return CI{path_string(path), bytes}; }),
           py::arg("path"), py::arg("bytes") = 0)
      .def_readwrite("path", &CI::path)
      .def_readwrite("bytes", &CI::bytes)
      .def("__eq__", [](CI const& a, CI const& b) { return a.path == b.path && a.bytes == b.bytes; }, py::is_operator())
      .def("__repr__", [](CI const& c) { return "CopyItem(" + repr_str(c.path) + ", " + std::to_string(c.bytes) + ")"; });

  m.def(
      "plan_copy_streams",
      [](py::object const& files, int streams) { return ck::plan_copy_streams(copy_items(files), streams); },
      py::arg("files"), py::arg("streams"),
      "Deal files (CopyItem or (path, bytes)) to `streams` lists: largest first, each to the stream with the "
      "fewest bytes so far. No list is empty; fewer lists when there are fewer files.");
  m.def("parse_file_listing", &ck::parse_file_listing, py::arg("text"),
        "'SIZE\\tPATH' lines to CopyItems, the hub CLIs' bookkeeping left out. Raises clusterkit.Error('parse_error').");
  m.def("rsync_stream_argv", &ck::rsync_stream_argv, py::arg("spec"),
        "The rsync argv of one copy stream (its file list comes on standard input).");
  m.def("download_environment", &ck::download_environment, py::arg("spec"),
        "The environment the hub CLI runs with (endpoint, no update checks, byte bars); never the token.");
  m.def("download_arguments", &ck::download_arguments, py::arg("spec"), py::arg("kind"), py::arg("dir"),
        "The CLI's arguments after the program name, for kind 'hf', 'huggingface-cli' or 'modelscope'.");
  m.def("download_script", &ck::download_script, py::arg("spec"), py::arg("dir"),
        "The script a host runs to download (the token comes on its standard input). Raises "
        "clusterkit.Error('invalid_argument') naming a bad field.");
  m.def("explain_download_failure", &ck::explain_download_failure, py::arg("spec"), py::arg("host"),
        py::arg("exit_code"), py::arg("stderr_text"),
        "What a failed download means and what to do, from the CLI's stderr.");
}

// ---------------------------------------------------------------------------
// Model snapshots (model.hpp)

void register_snapshot(py::module_& m) {
  using MSn = ck::ModelSnapshot;
  using Sh = MSn::Shard;
  py::class_<MSn> snapshot(m, "ModelSnapshot",
                           "What verifying a model folder needs of it, without its weights: config.json and the "
                           "index as text, each safetensors file's size and first bytes.");
  py::class_<Sh>(snapshot, "Shard", "One safetensors file of a snapshot.")
      .def(py::init([](std::string name, bool exists, std::uint64_t size, py::object head, std::string error) {
             Sh s;
             s.name = std::move(name);
             s.exists = exists;
             s.size = size;
             s.head = bytes_or_str(head);
             s.error = std::move(error);
             return s;
           }),
           py::arg("name") = "", py::kw_only(), py::arg("exists") = false, py::arg("size") = 0,
           py::arg("head") = py::bytes(), py::arg("error") = "")
      .def_readwrite("name", &Sh::name, "Relative to the snapshot's dir.")
      .def_readwrite("exists", &Sh::exists)
      .def_readwrite("size", &Sh::size)
      .def_property(
          "head", [](Sh const& s) { return as_bytes(s.head); }, [](Sh& s, py::object v) { s.head = bytes_or_str(v); },
          "The file's first bytes: the 8-byte length and the JSON header.")
      .def_readwrite("error", &Sh::error, "Why it could not be read ('' on success).")
      .def("__repr__", [](Sh const& s) {
        return "ModelSnapshot.Shard(" + repr_str(s.name) + ", exists=" + (s.exists ? "True" : "False") +
               ", size=" + std::to_string(s.size) + ")";
      });
  snapshot
      .def(py::init([](std::string dir, py::object config_json, py::object index_json, std::string config_error,
                       std::string index_error, std::vector<Sh> shards) {
             MSn s;
             s.dir = std::move(dir);
             s.config_json = text_or_none(config_json);
             s.index_json = text_or_none(index_json);
             s.config_error = std::move(config_error);
             s.index_error = std::move(index_error);
             s.shards = std::move(shards);
             return s;
           }),
           py::arg("dir") = "", py::kw_only(), py::arg("config_json") = py::none(), py::arg("index_json") = py::none(),
           py::arg("config_error") = "", py::arg("index_error") = "", py::arg("shards") = std::vector<Sh>{})
      .def_readwrite("dir", &MSn::dir, "The folder as its host names it.")
      .def_property(
          "config_json", [](MSn const& s) { return optional_text(s.config_json); },
          [](MSn& s, py::object v) { s.config_json = text_or_none(v); }, "config.json's text; None when absent.")
      .def_property(
          "index_json", [](MSn const& s) { return optional_text(s.index_json); },
          [](MSn& s, py::object v) { s.index_json = text_or_none(v); },
          "model.safetensors.index.json's text; None when absent.")
      .def_readwrite("config_error", &MSn::config_error)
      .def_readwrite("index_error", &MSn::index_error)
      .def_readwrite("shards", &MSn::shards, "Every shard the index names, else every *.safetensors file (a copy).")
      .def("__repr__", [](MSn const& s) {
        return "ModelSnapshot(" + repr_str(s.dir) + ", config=" + (s.config_json ? "True" : "False") +
               ", index=" + (s.index_json ? "True" : "False") + ", shards=" + std::to_string(s.shards.size()) + ")";
      });

  m.def(
      "read_model_snapshot",
      [](py::object const& dir) {
        fs::path p = path_string(dir);
        py::gil_scoped_release nogil;
        return ck::read_model_snapshot(p);
      },
      py::arg("dir"),
      "The snapshot of a folder on this machine. Raises clusterkit.FileNotFoundError when it does not exist, clusterkit.Error('local_file_error') when it is not a "
      "folder.");
  m.def("verify_snapshot", &ck::verify_snapshot, py::arg("snapshot"),
        "The structural checks of verify_model (everything but checksums) on a snapshot. Pure.");
  m.def("model_snapshot_script", &ck::model_snapshot_script, py::arg("dir"),
        "The script that prints a model folder's snapshot for parse_model_snapshot.");
  m.def("parse_model_snapshot", &ck::parse_model_snapshot, py::arg("output"),
        "The ModelSnapshot in model_snapshot_script's output. Raises clusterkit.Error('parse_error').");
}

// ---------------------------------------------------------------------------
// Model store: results and ModelStore

ck::ModelStoreSpec store_spec_from(py::object const& spec, py::kwargs const& kwargs) {
  if (!spec.is_none()) {
    if (py::isinstance<py::str>(spec) || py::hasattr(spec, "__fspath__")) {
      // ModelStore("/mnt", container_root="/models"): the root, then the other fields.
      if (kwargs.contains("root")) throw py::type_error("ModelStore() got the root twice (positional and root=)");
      return py::type::of<ck::ModelStoreSpec>()(spec, **kwargs).cast<ck::ModelStoreSpec>();
    }
    if (kwargs.size() > 0)
      throw py::type_error("ModelStore() takes a ModelStoreSpec or ModelStoreSpec's keyword arguments, not both");
    if (!py::isinstance<ck::ModelStoreSpec>(spec))
      throw py::type_error("ModelStore() takes a ModelStoreSpec, a root path, or keyword arguments, not " +
                           type_name(spec));
    return spec.cast<ck::ModelStoreSpec>();
  }
  return py::type::of<ck::ModelStoreSpec>()(**kwargs).cast<ck::ModelStoreSpec>();
}

ck::DownloadSpec download_spec_for(ck::ModelStore const& store, py::handle spec) {
  if (!py::isinstance<ck::DownloadSpec>(spec)) throw py::type_error("spec must be a DownloadSpec, not " + type_name(spec));
  auto s = spec.cast<ck::DownloadSpec>();
  if (s.local_dir.empty()) s.local_dir = store.path_for(s.model_id);
  ck::download_script(s, s.local_dir);  // raises clusterkit.Error('invalid_argument') before anything starts
  return s;
}

ck::SyncSpec sync_spec_for(py::handle spec) {
  if (!py::isinstance<ck::SyncSpec>(spec)) throw py::type_error("spec must be a SyncSpec, not " + type_name(spec));
  return spec.cast<ck::SyncSpec>();
}

ck::RemoteVerifyOptions verify_options(py::object const& options) {
  if (options.is_none()) return {};
  return options.cast<ck::RemoteVerifyOptions>();
}

void register_model_store(py::module_& m) {
  using DR = ck::DownloadResult;
  py::class_<DR>(m, "DownloadResult", "What ModelStore.download() did. A failure is here, not raised.")
      .def_readonly("host", &DR::host)
      .def_readonly("dir", &DR::dir, "Where the files are on the host.")
      .def_readonly("cli", &DR::cli, "What ran: 'hf 2.4.0', 'modelscope 1.40.2'.")
      .def_readonly("attempts", &DR::attempts)
      .def_readonly("bytes", &DR::bytes)
      .def_readonly("files", &DR::files)
      .def_readonly("seconds", &DR::seconds)
      .def_readonly("verify", &DR::verify, "The check on the download host (spec.verify), or None.")
      .def_property_readonly(
          "error", [](DR const& r) { return error_or_none(r.error, r.message); },
          "None, or a clusterkit.Error ('download_failed', 'model_incomplete', 'timed_out', 'cancelled', ...).")
      .def_readonly("message", &DR::message, "What was done, or what went wrong and the fix.")
      .def_property_readonly("ok", &DR::ok)
      .def("to_json", [](DR const& r) { return json_to_python(r.to_json()); })
      .def("__bool__", &DR::ok)
      .def("__repr__", [](DR const& r) {
        std::string s = "DownloadResult(" + repr_str(r.host) + ", " + repr_str(r.dir);
        if (r.error) s += ", error=" + repr_str(error_code_name(r.error));
        else s += ", files=" + std::to_string(r.files) + ", bytes=" + std::to_string(r.bytes);
        return s + ")";
      });

  using SR = ck::SyncResult;
  py::class_<SR>(m, "SyncResult", "What ModelStore.sync() did. A failure is here, not raised.")
      .def_readonly("host", &SR::host)
      .def_readonly("source", &SR::source)
      .def_readonly("destination", &SR::destination)
      .def_readonly("files", &SR::files, "Files in the source.")
      .def_readonly("bytes", &SR::bytes)
      .def_readonly("files_transferred", &SR::files_transferred, "What actually moved (the rest was already there).")
      .def_readonly("bytes_transferred", &SR::bytes_transferred)
      .def_readonly("files_deleted", &SR::files_deleted, "Removed from the destination (spec.delete_extraneous).")
      .def_readonly("streams", &SR::streams)
      .def_readonly("seconds", &SR::seconds)
      .def_readonly("verify", &SR::verify, "The check of the copy (spec.verify), or None.")
      .def_property_readonly(
          "error", [](SR const& r) { return error_or_none(r.error, r.message); },
          "None, or a clusterkit.Error ('copy_failed', 'model_incomplete', 'invalid_argument', ...).")
      .def_readonly("message", &SR::message)
      .def_property_readonly("ok", &SR::ok)
      .def("to_json", [](SR const& r) { return json_to_python(r.to_json()); })
      .def("__bool__", &SR::ok)
      .def("__repr__", [](SR const& r) {
        std::string s = "SyncResult(" + repr_str(r.host) + ", " + repr_str(r.destination);
        if (r.error) s += ", error=" + repr_str(error_code_name(r.error));
        else s += ", files_transferred=" + std::to_string(r.files_transferred) + "/" + std::to_string(r.files);
        return s + ")";
      });

  using HV = ck::HostVerify;
  py::class_<HV>(m, "HostVerify", "One host's view of a model folder (ModelStore.verify()).")
      .def_readonly("host", &HV::host)
      .def_readonly("dir", &HV::dir, "The folder checked on the host.")
      .def_readonly("container_path", &HV::container_path, "The same folder as the serving container sees it.")
      .def_property_readonly(
          "error", [](HV const& v) { return error_or_none(v.error, v.message); },
          "None, or a clusterkit.Error ('model_incomplete' when the report has problems; 'timed_out', ... when "
          "the host could not be asked).")
      .def_readonly("message", &HV::message)
      .def_readonly("report", &HV::report)
      .def_property_readonly("ok", &HV::ok, "The host answered and the report has no problem.")
      .def("to_json", [](HV const& v) { return json_to_python(v.to_json()); })
      .def("__bool__", &HV::ok)
      .def("__repr__", [](HV const& v) {
        return "HostVerify(" + repr_str(v.host) + ", " + repr_str(v.dir) + ", ok=" + (v.ok() ? "True" : "False") +
               ", problems=" + std::to_string(v.report.problems.size()) + ")";
      });

  using MS = ck::ModelStore;
  py::class_<MS>(m, "ModelStore",
                 "Models on shared storage: download on a host through the hub's CLI, copy into the NAS with rsync, "
                 "verify from every host. ModelStore(spec), ModelStore('/mnt', container_root='/models') or "
                 "ModelStore(root=..., layout=..., container_root=...). Blocking calls release the GIL; Ctrl-C stops the commands on the hosts. "
                 "on_progress(TransferProgress) runs on clusterkit's I/O thread with the GIL held: keep it short; "
                 "if it raises, the operation is stopped and the exception raised from the call.")
      .def(py::init([](py::object spec, py::kwargs kwargs) { return MS(store_spec_from(spec, kwargs)); }),
           py::arg("spec") = py::none())
      .def_property_readonly("spec", [](MS const& s) { return s.spec(); }, "A copy of the ModelStoreSpec.")
      .def("path_for", &MS::path_for, py::arg("model_id"),
           "The folder of `model_id` under the root in the store's layout: '/mnt/Qwen/Qwen2___5-72B-Instruct'.")
      .def("container_path", &MS::container_path, py::arg("path"),
           "`path` (under the root) as the serving container sees it; unchanged otherwise.")
      .def(
          "download",
          [](MS const& store, py::object const& host_in, py::object const& spec_in, py::object on_progress) {
            refuse_blocking_on_runtime_thread("ModelStore.download()");
            auto host = one_host(host_in);
            auto spec = download_spec_for(store, spec_in);
            auto op = Operation::create(host.get_executor());
            auto progress = progress_callback(op, std::move(on_progress));
            return wait_or_raise<DR>(op, [&](auto handler) {
              store.async_download(std::move(host), std::move(spec), std::move(progress), std::move(handler));
            });
          },
          py::arg("host"), py::arg("spec"), py::kw_only(), py::arg("on_progress") = py::none(),
          "Download on `host` through the hub's CLI (resumed on failure, up to spec.attempts), then check the "
          "folder there. Returns a DownloadResult; a failure raises clusterkit.Error (a subclass by cause: "
          "clusterkit.InvalidArgument for a spec that cannot work) with the DownloadResult as its .result.")
      .def(
          "sync",
          [](MS const& store, py::object const& host_in, py::object const& spec_in, py::object on_progress) {
            refuse_blocking_on_runtime_thread("ModelStore.sync()");
            auto host = one_host(host_in);
            auto spec = sync_spec_for(spec_in);
            auto op = Operation::create(host.get_executor());
            auto progress = progress_callback(op, std::move(on_progress));
            return wait_or_raise<SR>(op, [&](auto handler) {
              store.async_sync(std::move(host), std::move(spec), std::move(progress), std::move(handler));
            });
          },
          py::arg("host"), py::arg("spec"), py::kw_only(), py::arg("on_progress") = py::none(),
          "Copy spec.source into spec.destination on `host`, several rsync streams at once; files appear under "
          "their final names only when complete, and a second run copies only what changed. Returns a "
          "SyncResult; a failure raises clusterkit.Error with the SyncResult as its .result.")
      .def(
          "verify",
          [](MS const& store, py::object const& hosts_in, py::object const& dir, py::object const& options,
             py::object on_progress) {
            refuse_blocking_on_runtime_thread("ModelStore.verify()");
            auto hosts = host_list(hosts_in);
            auto d = path_string(dir);
            auto o = verify_options(options);
            if (hosts.empty()) return std::vector<HV>{};
            auto op = Operation::create(hosts.front().get_executor());
            o.on_progress = progress_callback(op, std::move(on_progress));
            return wait_one<std::vector<HV>>(op, [&](auto handler) {
              store.async_verify(std::move(hosts), std::move(d), std::move(o), std::move(handler));
            });
          },
          py::arg("hosts"), py::arg("dir"), py::arg("options") = py::none(), py::kw_only(),
          py::arg("on_progress") = py::none(),
          "Check `dir` on every host at once (the structural check of verify_model, on what each host sees). One "
          "HostVerify per host, in order; never raises for a host's failure. on_progress(TransferProgress) "
          "(phase 'verify') follows each shard read and file hashed, and each host's end.")
      .def(
          "_start_download",
          [](MS const& store, py::object const& host_in, py::object const& spec_in, py::object on_progress,
             py::object done) {
            auto host = one_host(host_in);
            auto spec = download_spec_for(store, spec_in);
            auto op = Operation::create(host.get_executor());
            auto progress = progress_callback(op, std::move(on_progress));
            store.async_download(std::move(host), std::move(spec), std::move(progress),
                                 deliver_ec<DR>(op, std::move(done)));
            return op;
          },
          py::arg("host"), py::arg("spec"), py::kw_only(), py::arg("on_progress") = py::none(), py::arg("done"),
          "Start download(); done(DownloadResult) is called on the I/O thread.")
      .def(
          "_start_sync",
          [](MS const& store, py::object const& host_in, py::object const& spec_in, py::object on_progress,
             py::object done) {
            auto host = one_host(host_in);
            auto spec = sync_spec_for(spec_in);
            auto op = Operation::create(host.get_executor());
            auto progress = progress_callback(op, std::move(on_progress));
            store.async_sync(std::move(host), std::move(spec), std::move(progress), deliver_ec<SR>(op, std::move(done)));
            return op;
          },
          py::arg("host"), py::arg("spec"), py::kw_only(), py::arg("on_progress") = py::none(), py::arg("done"),
          "Start sync(); done(SyncResult) is called on the I/O thread.")
      .def(
          "_start_verify",
          [](MS const& store, py::object const& hosts_in, py::object const& dir, py::object const& options,
             py::object on_progress, py::object done) {
            auto hosts = host_list(hosts_in);
            auto d = path_string(dir);
            auto o = verify_options(options);
            if (hosts.empty()) return completed(std::move(done), std::vector<HV>{});
            auto op = Operation::create(hosts.front().get_executor());
            o.on_progress = progress_callback(op, std::move(on_progress));
            store.async_verify(std::move(hosts), std::move(d), std::move(o), deliver_one<std::vector<HV>>(op, std::move(done)));
            return op;
          },
          py::arg("hosts"), py::arg("dir"), py::arg("options") = py::none(), py::kw_only(),
          py::arg("on_progress") = py::none(), py::arg("done"),
          "Start verify(); done(list[HostVerify]) is called on the I/O thread.")
      .def("__repr__", [](MS const& s) {
        auto const& spec = s.spec();
        return "ModelStore(" + repr_str(spec.root) + ", layout=" + repr_str(std::string(ck::to_string(spec.layout))) +
               (spec.container_root.empty() ? std::string() : ", container_root=" + repr_str(spec.container_root)) +
               ")";
      });
}

}  // namespace

void register_store(py::module_& m) {
  register_nas_spec(m);
  register_nas_mount(m);
  register_progress(m);
  register_store_specs(m);
  register_snapshot(m);
  register_model_store(m);
}

}  // namespace ckpy
