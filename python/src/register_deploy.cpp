// Deployment (deployment.hpp): the whole seed from one YAML spec. The spec
// and its parts (readable and writable), the parser (every mistake at once,
// file:line:column), the record (JSON in and out, the summary people read),
// and Deployment's up / plan / status / down / logs.
//
// As register_serve.cpp: operations run on the shared runtime; blocking forms
// wait with the GIL released (Ctrl-C cancels the commands on the hosts, then
// raises KeyboardInterrupt) and raise clusterkit.Error with the result's
// message when the operation fails (the record or result is the error's
// `.result`); start_* forms call `done` on the I/O thread with the result or
// that Error, for the asyncio layer in python/clusterkit/__init__.py.
// on_progress(DeploymentProgress) runs on the I/O thread with the GIL held;
// an exception in it stops the operation and is raised from the call.
#include "json_support.hpp"

#include "clusterkit/deployment.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include <sstream>

namespace ckpy {
namespace {

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }
std::string repr_str(std::string const& s) { return py_repr(py::str(s)); }
std::string number(double v) { return py_repr(py::float_(v)); }

/// A JSON field (layout, smoke, bench, detail) set from Python: a dict (or
/// any JSON-compatible value).
nlohmann::json json_from(py::handle value, char const* what) {
  if (value.is_none()) return nlohmann::json::object();
  return python_to_json(value, what);
}

// ---------------------------------------------------------------------------
// Operations (run_blocking is in support.hpp)

/// The sentence a failed operation is raised with (as the C++ blocking forms).
std::string failure_message(ck::DeploymentRecord const& r) { return r.message; }
std::string failure_message(ck::DeploymentPlanResult const& r) { return r.notes.empty() ? std::string() : r.notes.back(); }
std::string failure_message(ck::DeploymentStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); }
std::string failure_message(ck::DeploymentDownResult const& r) {
  std::string out;
  for (auto const& p : r.problems) out += (out.empty() ? "" : "; ") + p;
  return out;
}

template <class Value>
py::object outcome(std::error_code ec, Value&& v) {
  if (!ec) return py::cast(std::forward<Value>(v));
  auto message = failure_message(v);
  if (message.empty()) message = ec.message();
  return make_error(ec, message, py::cast(std::forward<Value>(v)));
}
py::object outcome(std::error_code ec, std::string&& text) {
  if (!ec) return py::str(text);
  return make_error(ec, text.empty() ? ec.message() : text);
}

template <class Value>
Value value_or_raise(std::pair<std::error_code, Value>&& r) {
  if (r.first) {
    py::object e = outcome(r.first, std::move(r.second));
    raise_instance(e);
  }
  return std::move(r.second);
}

template <class Value>
auto deliver_outcome(std::shared_ptr<Operation> const& op, py::object done) {
  if (!PyCallable_Check(done.ptr())) throw py::type_error("done must be callable, not " + type_name(done));
  return asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](std::error_code ec, Value v) {
    deliver(*op, d, [&] { return outcome(ec, std::move(v)); });
  });
}

ck::DeploymentProgressCallback progress_callback(std::shared_ptr<Operation> const& op, py::object fn) {
  if (fn.is_none()) return {};
  if (!PyCallable_Check(fn.ptr())) throw py::type_error("on_progress must be callable, not " + type_name(fn));
  return [op, f = share(std::move(fn))](ck::DeploymentProgress const& p) {
    invoke_callback(*op, [&] { (*f)(py::cast(ck::DeploymentProgress(p))); });
  };
}

/// A Deployment made before os.fork() runs on the parent's I/O thread.
void check_same_runtime(ck::Deployment const& d) {
  auto& theirs = asio::query(d.get_executor(), asio::execution::context);
  auto& ours = asio::query(runtime().executor(), asio::execution::context);
  if (&theirs != &ours)
    raise_error(ck::errc::invalid_argument,
                "deployment '" + d.spec().name +
                    "' was created before this process forked, and its I/O thread stayed with the parent; create a "
                    "new Deployment in this process");
}

std::shared_ptr<Operation> deployment_operation(ck::Deployment const& d) {
  check_same_runtime(d);
  return Operation::create(d.get_executor());
}

// ---------------------------------------------------------------------------
// The spec

std::string model_repr(ck::DeploymentModel const& m) {
  ck::DeploymentModel d;
  std::ostringstream out;
  out << "DeploymentModel(" << repr_str(m.id) << ", hub=" << repr_str(m.hub);
  auto field = [&](char const* name, std::string const& v, std::string const& def) {
    if (v != def) out << ", " << name << "=" << repr_str(v);
  };
  field("revision", m.revision, d.revision);
  field("endpoint", m.endpoint, d.endpoint);
  field("token_env", m.token_env, d.token_env);
  field("download_host", m.download_host, d.download_host);
  field("download_dir", m.download_dir, d.download_dir);
  field("root", m.root, d.root);
  field("container_root", m.container_root, d.container_root);
  if (m.sync_streams != d.sync_streams) out << ", sync_streams=" << m.sync_streams;
  out << ")";
  return out.str();
}

std::string checks_repr(ck::DeploymentChecks const& c) {
  auto b = [](bool v) { return v ? "True" : "False"; };
  return std::string("DeploymentChecks(preflight=") + b(c.preflight) + ", smoke=" + b(c.smoke) +
         ", bench_requests=" + std::to_string(c.bench_requests) + ", bench_concurrency=" +
         std::to_string(c.bench_concurrency) + ", bench_max_tokens=" + std::to_string(c.bench_max_tokens) +
         ", bench_prompt_words=" + std::to_string(c.bench_prompt_words) + ")";
}

std::string spec_repr(ck::DeploymentSpec const& s) {
  auto layout = [](unsigned v) { return v == 0 ? std::string("'auto'") : std::to_string(v); };
  return "DeploymentSpec(" + repr_str(s.name) + ", source=" + repr_str(s.source) + ", model=" + repr_str(s.model.id) +
         ", head=" + repr_str(s.head) + ", workers=" + py_repr(py::cast(s.workers)) + ", download_host=" +
         repr_str(s.model.download_host) + ", tensor_parallel=" + layout(s.serve.tensor_parallel) +
         ", pipeline_parallel=" + layout(s.serve.pipeline_parallel) + ", runtime=" +
         repr_str(std::string(ck::to_string(s.ray.runtime))) + ")";
}

void register_deploy_spec(py::module_& m) {
  using M = ck::DeploymentModel;
  py::class_<M>(m, "DeploymentModel", "The model of a deployment: where it comes from and where it goes.")
      .def(py::init([](std::string id, std::string hub, std::string revision, std::string endpoint, std::string token_env,
                       std::string download_host, std::string download_dir, std::string root,
                       std::string container_root, unsigned sync_streams) {
             return M{std::move(id),       std::move(hub),          std::move(revision),     std::move(endpoint),
                      std::move(token_env), std::move(download_host), std::move(download_dir), std::move(root),
                      std::move(container_root), sync_streams};
           }),
           py::arg("id") = "", py::kw_only(), py::arg("hub") = "modelscope", py::arg("revision") = "",
           py::arg("endpoint") = "", py::arg("token_env") = "", py::arg("download_host") = "",
           py::arg("download_dir") = "", py::arg("root") = "", py::arg("container_root") = "/models",
           py::arg("sync_streams") = 4u)
      .def_readwrite("id", &M::id, "The hub id ('Qwen/Qwen2.5-72B-Instruct').")
      .def_readwrite("hub", &M::hub, "'modelscope', 'hf', or 'none' (the files are already there).")
      .def_readwrite("revision", &M::revision)
      .def_readwrite("endpoint", &M::endpoint, "A hub mirror (HF_ENDPOINT / MODELSCOPE_ENDPOINT).")
      .def_readwrite("token_env", &M::token_env, "The variable (on this machine) that holds the hub token.")
      .def_readwrite("download_host", &M::download_host, "The host that downloads (default: the one with role download).")
      .def_readwrite("download_dir", &M::download_dir, "Where it downloads to on that host, before the copy into the NAS.")
      .def_readwrite("root", &M::root, "Where models live on the NAS ('' = the mount point).")
      .def_readwrite("container_root", &M::container_root,
                     "Where the serving containers see the model's parent folder (-v /mnt/Qwen:/models).")
      .def_readwrite("sync_streams", &M::sync_streams, "rsync streams for the copy into the NAS.")
      .def("__copy__", [](M const& x) { return M(x); })
      .def("__deepcopy__", [](M const& x, py::dict) { return M(x); }, py::arg("memo"))
      .def("__repr__", &model_repr);

  using C = ck::DeploymentChecks;
  py::class_<C>(m, "DeploymentChecks", "The checks up() runs: preflight, a smoke test, a short benchmark.")
      .def(py::init([](bool preflight, bool smoke, unsigned requests, unsigned concurrency, unsigned max_tokens,
                       unsigned prompt_words) { return C{preflight, smoke, requests, concurrency, max_tokens, prompt_words}; }),
           py::kw_only(), py::arg("preflight") = true, py::arg("smoke") = true, py::arg("bench_requests") = 20u,
           py::arg("bench_concurrency") = 4u, py::arg("bench_max_tokens") = 32u, py::arg("bench_prompt_words") = 64u)
      .def_readwrite("preflight", &C::preflight)
      .def_readwrite("smoke", &C::smoke)
      .def_readwrite("bench_requests", &C::bench_requests, "0: no benchmark.")
      .def_readwrite("bench_concurrency", &C::bench_concurrency)
      .def_readwrite("bench_max_tokens", &C::bench_max_tokens)
      .def_readwrite("bench_prompt_words", &C::bench_prompt_words)
      .def("__copy__", [](C const& x) { return C(x); })
      .def("__deepcopy__", [](C const& x, py::dict) { return C(x); }, py::arg("memo"))
      .def("__repr__", &checks_repr);

  using S = ck::DeploymentSpec;
  py::class_<S>(m, "DeploymentSpec",
                "A deployment: hosts, NAS, model, runtime, Ray, the engine, the checks. Usually read from YAML "
                "(load_deployment_spec / parse_deployment_spec, examples/deployments/). The parts (model, ray, "
                "serve, checks, inventory) are the spec's own: `spec.serve.port = 8001` changes it; `nas` is a "
                "copy (assign a NasSpec or None). serve.tensor_parallel / pipeline_parallel 0 means 'auto' (the "
                "planner's).")
      .def(py::init<>(), "An empty spec (name 'ck').")
      .def(py::init<S const&>(), py::arg("other"), "A copy.")
      .def_readwrite("name", &S::name, "Names the Ray cluster, the engine and the state folder. 1-32 of [a-z0-9-].")
      .def_readwrite("source", &S::source, "The spec file (for messages and relative paths).")
      .def_readwrite("inventory", &S::inventory, "The hosts.")
      .def_property(
          "nas", [](S const& s) { return s.nas; }, [](S& s, std::optional<ck::NasSpec> v) { s.nas = std::move(v); },
          "The NAS (from the spec's nas: or the inventory's vars), or None: no NAS step. A copy.")
      .def_readwrite("model", &S::model)
      .def_readwrite("ray", &S::ray, "The Ray cluster's runtime and settings (image, venv, shm, env, ports).")
      .def_readwrite("head", &S::head, "The Ray head (a GPU host).")
      .def_readwrite("workers", &S::workers, "Ray's workers (default: every other GPU host).")
      .def_readwrite("serve", &S::serve, "The engine (model and name are filled in by the deployment).")
      .def_readwrite("max_model_len_auto", &S::max_model_len_auto,
                     "serve.max_model_len unset and this set: the planner's.")
      .def_readwrite("checks", &S::checks)
      .def_readwrite("state_dir", &S::state_dir,
                     "Where the record and the key live on this machine ('' = "
                     "$XDG_STATE_HOME/clusterkit/deployments/NAME).")
      .def("fingerprint", &S::fingerprint, "A hash of what defines the deployment (a changed spec is not 'up').")
      .def("model_path", &S::model_path, "The model folder on the NAS (/mnt/Qwen/Qwen2___5-72B-Instruct).")
      .def("engine_model_path", &S::engine_model_path,
           "The model folder as the engine sees it (/models/Qwen2___5-72B-Instruct with docker).")
      .def("__copy__", [](S const& x) { return S(x); })
      .def("__deepcopy__", [](S const& x, py::dict) { return S(x); }, py::arg("memo"))
      .def("__repr__", &spec_repr);

  m.def(
      "load_deployment_spec", [](py::object path) { return ck::load_deployment_spec(path_string(path)); }, py::arg("path"),
      "Read a deployment spec (YAML). Every mistake is reported at once in one clusterkit.Error('inventory_invalid'): "
      "file:line:column: field: what is wrong; did you mean ...? Nothing is started.");
  m.def(
      "parse_deployment_spec",
      [](std::string_view text, std::string source, py::object base_dir) {
        return ck::parse_deployment_spec(text, std::move(source), base_dir.is_none() ? std::string() : path_string(base_dir));
      },
      py::arg("text"), py::arg("source") = "<deployment>", py::arg("base_dir") = "",
      "Parse spec text; `source` names it in messages, `base_dir` is where a relative inventory path starts.");
  m.def("deployment_steps", &ck::deployment_steps,
        "The steps of up(), in order: preflight, nas, model, verify, layout, ray, serve, smoke, bench.");
  m.def("layout_count_refusal", &ck::layout_count_refusal, py::arg("tp"), py::arg("pp"), py::arg("gpus"),
        "Why TP x PP cannot run on these GPUs whatever the model (more GPUs than there are), with what would; '' when "
        "it can, or when tp or pp is 0 (auto). up() checks it before anything starts.");
}

// ---------------------------------------------------------------------------
// The record

std::string step_repr(ck::StepRecord const& s) {
  return "StepRecord(" + repr_str(s.step) + ", " + repr_str(s.status) + ", seconds=" + number(s.ended_s - s.started_s) +
         (s.message.empty() ? std::string() : ", " + repr_str(s.message)) + ")";
}

void register_deploy_record(py::module_& m) {
  using H = ck::StepHostRecord;
  py::class_<H>(m, "StepHostRecord", "One host's part of a step.")
      .def(py::init([](std::string host, std::string status, std::string message, double started_s, double ended_s) {
             return H{std::move(host), std::move(status), std::move(message), started_s, ended_s};
           }),
           py::arg("host") = "", py::arg("status") = "", py::arg("message") = "", py::kw_only(),
           py::arg("started_s") = 0.0, py::arg("ended_s") = 0.0)
      .def_readwrite("host", &H::host)
      .def_readwrite("status", &H::status, "'ok', 'skipped' (already done), 'failed'.")
      .def_readwrite("message", &H::message)
      .def_readwrite("started_s", &H::started_s, "Seconds from the start of the run.")
      .def_readwrite("ended_s", &H::ended_s)
      .def("__repr__", [](H const& h) {
        return "StepHostRecord(" + repr_str(h.host) + ", " + repr_str(h.status) +
               (h.message.empty() ? std::string() : ", " + repr_str(h.message)) + ")";
      });

  using S = ck::StepRecord;
  py::class_<S>(m, "StepRecord", "One step of a run: its outcome, timing, each host's part, and what it found.")
      .def(py::init([](std::string step, std::string status, std::string message, double started_s, double ended_s,
                       std::vector<H> hosts, py::object detail) {
             S s;
             s.step = std::move(step);
             s.status = std::move(status);
             s.message = std::move(message);
             s.started_s = started_s;
             s.ended_s = ended_s;
             s.hosts = std::move(hosts);
             s.detail = json_from(detail, "detail");
             return s;
           }),
           py::arg("step") = "", py::arg("status") = "pending", py::arg("message") = "", py::kw_only(),
           py::arg("started_s") = 0.0, py::arg("ended_s") = 0.0, py::arg("hosts") = std::vector<H>{},
           py::arg("detail") = py::none())
      .def_readwrite("step", &S::step)
      .def_readwrite("status", &S::status, "'pending', 'running', 'ok', 'skipped', 'failed'.")
      .def_readwrite("message", &S::message)
      .def_readwrite("started_s", &S::started_s, "Seconds from the start of the run.")
      .def_readwrite("ended_s", &S::ended_s)
      .def_property(
          "hosts", [](S const& s) { return s.hosts; }, [](S& s, std::vector<H> v) { s.hosts = std::move(v); },
          "Each host's part (a copy: assign a new list to change it).")
      .def_property(
          "detail", [](S const& s) { return json_to_python(s.detail); },
          [](S& s, py::object v) { s.detail = json_from(v, "detail"); }, "What the step found, as a dict (a copy).")
      .def_property_readonly("seconds", [](S const& s) { return s.ended_s - s.started_s; })
      .def("__repr__", &step_repr);

  using R = ck::DeploymentRecord;
  py::class_<R>(m, "DeploymentRecord",
                "What a run of up() did: versions, the layout, each node's environment, each step's timing per host, "
                "the smoke test and the benchmark. Kept as JSON in the deployment's state folder "
                "(deployment_record_path). Lists and dicts are copies: assign new ones to change them.")
      .def(py::init<>())
      .def(py::init<R const&>(), py::arg("other"), "A copy.")
      .def_readwrite("name", &R::name)
      .def_readwrite("spec_file", &R::spec_file)
      .def_readwrite("spec_fingerprint", &R::spec_fingerprint)
      .def_readwrite("status", &R::status, "'up', 'failed', 'running', 'down'.")
      .def_readwrite("message", &R::message)
      .def_readwrite("started_at", &R::started_at, "Wall clock, ISO 8601 UTC.")
      .def_readwrite("finished_at", &R::finished_at)
      .def_readwrite("total_seconds", &R::total_seconds)
      .def_readwrite("own_seconds", &R::own_seconds,
                     "Total minus the components' own work (engine start; Ray start or data copy, the longer; the "
                     "engine's answers to the checks); own_breakdown has each figure.")
      .def_property_readonly(
          "own_breakdown", [](R const& r) { return json_to_python(r.own_breakdown); },
          "{'total', 'engine_start', 'ray_start', 'data_copy', 'engine_answers', 'own'} in seconds.")
      .def_readwrite("endpoint", &R::endpoint)
      .def_readwrite("served_model_name", &R::served_model_name)
      .def_readwrite("api_key_file", &R::api_key_file, "The key's file on this machine (mode 0600); never the key.")
      .def_readwrite("versions", &R::versions, "vllm, ray, python, driver, cuda, image ... -> version.")
      .def_property(
          "layout", [](R const& r) { return json_to_python(r.layout); },
          [](R& r, py::object v) { r.layout = json_from(v, "layout"); }, "The planner's layout (tp, pp, ...), as a dict.")
      .def_readwrite("node_env", &R::node_env, "Each node's environment as started (no secrets).")
      .def_property(
          "steps", [](R const& r) { return r.steps; }, [](R& r, std::vector<S> v) { r.steps = std::move(v); },
          "The steps, in order (a copy).")
      .def_property(
          "smoke", [](R const& r) { return json_to_python(r.smoke); },
          [](R& r, py::object v) { r.smoke = json_from(v, "smoke"); }, "The smoke test, as a dict.")
      .def_property(
          "bench", [](R const& r) { return json_to_python(r.bench); },
          [](R& r, py::object v) { r.bench = json_from(v, "bench"); }, "The benchmark's figures, as a dict.")
      .def_readwrite("simulated", &R::simulated, "What is SIMULATED in this deployment (the lab's GPUs, a local hub).")
      .def(
          "step",
          [](R const& r, std::string_view name) -> std::optional<S> {
            if (auto const* s = r.step(name)) return *s;
            return std::nullopt;
          },
          py::arg("name"), "The step named `name` (a copy), or None.")
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); }, "As a dict (the record file's content).")
      .def_static(
          "from_json",
          [](py::object j) {
            auto data = python_to_json(j, "record");
            if (!data.is_object()) throw py::value_error("a deployment record is a JSON object (a dict), not " + std::string(data.type_name()));
            try {
              return R::from_json(data);
            } catch (nlohmann::json::exception const& e) {
              throw py::value_error(std::string("not a deployment record (to_json()'s shape): ") + e.what());
            }
          },
          py::arg("data"), "From a dict (or JSON text) in to_json()'s shape; missing fields keep their defaults. Raises ValueError.")
      .def("summary", &R::summary,
           "The end-of-run summary for people: each step, the endpoint, the key's file, a `chat` line to copy, the "
           "benchmark, the time, what is SIMULATED.")
      .def("__copy__", [](R const& x) { return R(x); })
      .def("__deepcopy__", [](R const& x, py::dict) { return R(x); }, py::arg("memo"))
      .def("__repr__", [](R const& r) {
        return "DeploymentRecord(" + repr_str(r.name) + ", " + repr_str(r.status) + ", steps=" + std::to_string(r.steps.size()) +
               (r.endpoint.empty() ? std::string() : ", endpoint=" + repr_str(r.endpoint)) + ")";
      });

  m.def(
      "deployment_record_path", [](ck::DeploymentSpec const& s) { return ck::deployment_record_path(s).string(); },
      py::arg("spec"), "The record's file in a spec's state folder.");
  m.def(
      "load_deployment_record",
      [](ck::DeploymentSpec const& s) {
        try {
          return ck::load_deployment_record(s);
        } catch (nlohmann::json::exception const& e) {
          // A JSON object of another shape (the C++ call lets its type errors through).
          throw py::value_error(ck::deployment_record_path(s).string() + " is not a deployment record: " + e.what());
        }
      },
      py::arg("spec"), "The spec's last record, or None (no run yet, or an unreadable file). Raises ValueError for a "
      "JSON file of another shape.");
}

// ---------------------------------------------------------------------------
// Results

void register_deploy_results(py::module_& m) {
  using P = ck::DeploymentProgress;
  py::class_<P>(m, "DeploymentProgress", "One line of up()'s progress: a step on a host (host '' for the whole step).")
      .def(py::init([](std::string step, std::string host, std::string status, std::string message, double elapsed) {
             return P{std::move(step), std::move(host), std::move(status), std::move(message), elapsed};
           }),
           py::arg("step") = "", py::arg("host") = "", py::arg("status") = "", py::arg("message") = "", py::kw_only(),
           py::arg("elapsed_seconds") = 0.0)
      .def_readonly("step", &P::step)
      .def_readonly("host", &P::host)
      .def_readonly("status", &P::status, "'running', 'ok', 'skipped', 'failed', or a step's own phase.")
      .def_readonly("message", &P::message)
      .def_readonly("elapsed_seconds", &P::elapsed_seconds, "Seconds from the start of up().")
      .def("__repr__", [](P const& p) {
        return "DeploymentProgress(" + repr_str(p.step) + ", " + repr_str(p.host) + ", " + repr_str(p.status) + ", " +
               repr_str(p.message) + ", elapsed_seconds=" + number(p.elapsed_seconds) + ")";
      });

  using PC = ck::PlannedCommand;
  py::class_<PC>(m, "PlannedCommand", "A command plan() would run on a host.")
      .def(py::init([](std::string host, std::string command, std::string script) {
             return PC{std::move(host), std::move(command), std::move(script)};
           }),
           py::arg("host") = "", py::arg("command") = "", py::arg("script") = "")
      .def_readwrite("host", &PC::host)
      .def_readwrite("command", &PC::command, "The command line, or what a long script does.")
      .def_readwrite("script", &PC::script, "The whole script it runs, when command is its summary ('' otherwise).")
      .def("__repr__", [](PC const& c) { return "PlannedCommand(" + repr_str(c.host) + ", " + repr_str(c.command) + ")"; });

  using PS = ck::PlannedStep;
  py::class_<PS>(m, "PlannedStep", "A step as plan() sees it: what it would do, or why it would be skipped.")
      .def(py::init([](std::string step, std::string what, std::string skip_reason, std::vector<PC> commands) {
             return PS{std::move(step), std::move(what), std::move(skip_reason), std::move(commands)};
           }),
           py::arg("step") = "", py::arg("what") = "", py::kw_only(), py::arg("skip_reason") = "",
           py::arg("commands") = std::vector<PC>{})
      .def_readwrite("step", &PS::step)
      .def_readwrite("what", &PS::what)
      .def_readwrite("skip_reason", &PS::skip_reason, "'' unless it would be skipped.")
      .def_property(
          "commands", [](PS const& s) { return s.commands; }, [](PS& s, std::vector<PC> v) { s.commands = std::move(v); },
          "Each host's commands (a copy).")
      .def("__repr__", [](PS const& s) {
        return "PlannedStep(" + repr_str(s.step) + ", " + repr_str(s.what) +
               (s.skip_reason.empty() ? std::string() : ", skip_reason=" + repr_str(s.skip_reason)) +
               ", commands=" + std::to_string(s.commands.size()) + ")";
      });

  using PR = ck::DeploymentPlanResult;
  py::class_<PR>(m, "DeploymentPlanResult", "A dry run: each step, each host's commands, what would be skipped.")
      .def(py::init([](std::vector<PS> steps, std::vector<std::string> notes) { return PR{std::move(steps), std::move(notes)}; }),
           py::arg("steps") = std::vector<PS>{}, py::arg("notes") = std::vector<std::string>{})
      .def_property(
          "steps", [](PR const& r) { return r.steps; }, [](PR& r, std::vector<PS> v) { r.steps = std::move(v); },
          "The steps (a copy).")
      .def_readwrite("notes", &PR::notes)
      .def("to_json", [](PR const& r) { return json_to_python(r.to_json()); }, "As a dict.")
      .def("text", &PR::text, py::arg("full") = false,
           "For people: numbered steps, each host's command (its first 200 characters), the notes; full=True: every "
           "command and script whole.")
      .def("__repr__", [](PR const& r) {
        return "DeploymentPlanResult(steps=" + std::to_string(r.steps.size()) + ", notes=" + std::to_string(r.notes.size()) + ")";
      });

  using HL = ck::DeploymentHostLook;
  py::class_<HL>(m, "DeploymentHostLook", "One host of a deployment as status() found it.")
      .def_readonly("host", &HL::host)
      .def_readonly("roles", &HL::roles, "What the deployment uses it for: 'head', 'worker', 'download'.")
      .def_readonly("reachable", &HL::reachable)
      .def_readonly("answer_seconds", &HL::answer_seconds, "How long a tiny command took there, connection included.")
      .def_readonly("uptime_seconds", &HL::uptime_seconds, "Since the host booted (0: unknown).")
      .def_readonly("load", &HL::load, "Load averages over 1, 5 and 15 minutes ('' : unknown).")
      .def_readonly("message", &HL::message, "Why it could not be asked, when not reachable.")
      .def("to_json", [](HL const& h) { return json_to_python(h.to_json()); }, "As a dict.")
      .def("summary", &HL::summary, "For people.")
      .def("__repr__", [](HL const& h) {
        return "DeploymentHostLook(" + repr_str(h.host) + ", reachable=" + (h.reachable ? "True" : "False") + ")";
      });

  using St = ck::DeploymentStatus;
  py::class_<St>(m, "DeploymentStatus", "Every layer of a deployment: the hosts, the NAS, the model on each GPU host, Ray, the engine.")
      .def_readonly("name", &St::name)
      .def_readonly("state", &St::state, "'up', 'DEGRADED', 'down', 'failed' (the last run's outcome when nothing runs).")
      .def_readonly("record", &St::record, "The last run's record, or None.")
      .def_readonly("hosts", &St::hosts, "Every host: reachable or why not, uptime, load.")
      .def_readonly("nas", &St::nas, "The NAS check, or None (no NAS).")
      .def_readonly("model", &St::model, "The model folder as each GPU host sees it.")
      .def_readonly("ray", &St::ray)
      .def_readonly("engine", &St::engine)
      .def_readonly("problems", &St::problems, "Sentences: what is wrong.")
      .def("to_json", [](St const& s) { return json_to_python(s.to_json()); }, "As a dict.")
      .def("summary", &St::summary, "For people.")
      .def("__repr__", [](St const& s) {
        return "DeploymentStatus(" + repr_str(s.name) + ", " + repr_str(s.state) + ", problems=" +
               std::to_string(s.problems.size()) + ")";
      });

  using DO = ck::DeploymentDownOptions;
  py::class_<DO>(m, "DeploymentDownOptions", "What down() removes besides the engine and Ray.")
      .def(py::init([](bool unmount_nas, bool remove_model) { return DO{unmount_nas, remove_model}; }), py::kw_only(),
           py::arg("unmount_nas") = false, py::arg("remove_model") = false)
      .def_readwrite("unmount_nas", &DO::unmount_nas, "Also unmount the NAS on every host.")
      .def_readwrite("remove_model", &DO::remove_model, "Also delete the model folder on the NAS and the download host's copy.")
      .def("__repr__", [](DO const& o) {
        return std::string("DeploymentDownOptions(unmount_nas=") + (o.unmount_nas ? "True" : "False") +
               ", remove_model=" + (o.remove_model ? "True" : "False") + ")";
      });

  using DR = ck::DeploymentDownResult;
  py::class_<DR>(m, "DeploymentDownResult", "What down() removed, and what it could not.")
      .def_readonly("removed", &DR::removed)
      .def_readonly("problems", &DR::problems)
      .def("__repr__", [](DR const& r) {
        return "DeploymentDownResult(removed=" + py_repr(py::cast(r.removed)) + ", problems=" + py_repr(py::cast(r.problems)) + ")";
      });
}

// ---------------------------------------------------------------------------
// Deployment

ck::DeploymentDownOptions down_options(bool unmount_nas, bool remove_model) {
  ck::DeploymentDownOptions o;
  o.unmount_nas = unmount_nas;
  o.remove_model = remove_model;
  return o;
}

void register_deployment(py::module_& m) {
  using D = ck::Deployment;
  py::class_<D>(m, "Deployment",
                "The whole seed from one spec: up() runs preflight, nas, model, verify, layout, ray, serve, smoke "
                "and bench, each step on every host at once; idempotent and resumable (what is done is kept). "
                "Deployment(spec) or Deployment.from_file(path); raises clusterkit.Error('invalid_argument') when "
                "the spec's hosts do not add up. Blocking calls release the GIL; Ctrl-C stops the commands on the "
                "hosts. A failed operation raises clusterkit.Error with the record (up) or result as its .result. "
                "on_progress(DeploymentProgress) runs on clusterkit's I/O thread with the GIL held: keep it short; "
                "if it raises, up() is stopped and the exception raised from the call.")
      .def(py::init([](ck::DeploymentSpec spec) { return D(runtime().executor(), std::move(spec)); }), py::arg("spec"))
      .def(py::init([](D const& other) { return D(other); }), py::arg("other"), "A copy.")
      .def_static(
          "from_file", [](py::object path) { return D(runtime().executor(), ck::load_deployment_spec(path_string(path))); },
          py::arg("path"), "Deployment(load_deployment_spec(path)).")
      .def_property_readonly("spec", [](D const& d) { return d.spec(); }, "A copy of the DeploymentSpec.")
      .def_property_readonly("name", [](D const& d) { return d.spec().name; })
      .def_property_readonly("gpu_hosts", [](D const& d) { return d.gpu_hosts(); }, "The head first, then the workers.")
      .def_property_readonly("download_host", [](D const& d) { return d.download_host(); })
      .def_property_readonly("record_path", [](D const& d) { return ck::deployment_record_path(d.spec()).string(); },
                             "The record's file on this machine.")
      .def(
          "record",
          [](D const& d) {
            try {
              return ck::load_deployment_record(d.spec());
            } catch (nlohmann::json::exception const& e) {
              throw py::value_error(ck::deployment_record_path(d.spec()).string() + " is not a deployment record: " + e.what());
            }
          },
          "The last run's record, or None (see load_deployment_record).")
      .def(
          "host",
          [](D const& d, std::string const& name) {
            check_same_runtime(d);
            return d.host(name);
          },
          py::arg("name"), "A host of the deployment, as a Host.")
      .def(
          "ray_cluster",
          [](D const& d) {
            check_same_runtime(d);
            return d.ray_cluster();
          },
          "The RayCluster this deployment runs (the model's parent folder mounted at model.container_root).")
      .def(
          "engine",
          [](D const& d, unsigned tp, unsigned pp, std::optional<std::uint64_t> max_model_len) {
            check_same_runtime(d);
            return d.engine(tp, pp, max_model_len);
          },
          py::arg("tensor_parallel"), py::arg("pipeline_parallel"), py::arg("max_model_len") = py::none(),
          "The VllmServe this deployment runs with that layout (0: 1).")
      .def(
          "up",
          [](D const& d, py::object on_progress) {
            refuse_blocking_on_runtime_thread("Deployment.up()");
            auto op = deployment_operation(d);
            auto progress = progress_callback(op, std::move(on_progress));
            return value_or_raise(run_blocking<ck::DeploymentRecord>(
                op, [&](auto handler) { d.async_up(std::move(progress), std::move(handler)); }));
          },
          py::arg("on_progress") = py::none(),
          "Deploy: every step, each on every host at once, with the checks a person would run. A deployment "
          "already up as specified answers from a quick look. Returns the DeploymentRecord (also saved); raises "
          "clusterkit.Error('deployment_failed', ...) with the record as .result.")
      .def(
          "plan",
          [](D const& d) {
            refuse_blocking_on_runtime_thread("Deployment.plan()");
            auto op = deployment_operation(d);
            return value_or_raise(run_blocking<ck::DeploymentPlanResult>(op, [&](auto handler) { d.async_plan(std::move(handler)); }));
          },
          "A dry run: each step, each host's commands, and what would be skipped (read-only looks at the hosts).")
      .def(
          "status",
          [](D const& d) {
            refuse_blocking_on_runtime_thread("Deployment.status()");
            auto op = deployment_operation(d);
            return value_or_raise(run_blocking<ck::DeploymentStatus>(op, [&](auto handler) { d.async_status(std::move(handler)); }));
          },
          "Every layer: 'up', 'DEGRADED' (a part is down), 'down' or 'failed'. An unhealthy deployment is a result.")
      .def(
          "down",
          [](D const& d, bool unmount_nas, bool remove_model) {
            refuse_blocking_on_runtime_thread("Deployment.down()");
            auto op = deployment_operation(d);
            auto o = down_options(unmount_nas, remove_model);
            return value_or_raise(
                run_blocking<ck::DeploymentDownResult>(op, [&](auto handler) { d.async_down(o, std::move(handler)); }));
          },
          py::arg("unmount_nas") = false, py::arg("remove_model") = false,
          "Remove what up() started (engine, Ray, containers); the NAS and the model stay unless asked.")
      .def(
          "logs",
          [](D const& d, std::string host, unsigned tail, bool follow, py::object on_line) {
            refuse_blocking_on_runtime_thread("Deployment.logs()");
            auto op = deployment_operation(d);
            auto o = vllm_logs_options(op, tail, follow, std::move(on_line));
            return value_or_raise(
                run_blocking<std::string>(op, [&](auto handler) { d.async_logs(std::move(host), o, std::move(handler)); }));
          },
          py::arg("host") = "", py::arg("tail") = 200u, py::kw_only(), py::arg("follow") = false,
          py::arg("on_line") = py::none(),
          "The engine's log (host '' or the head), or a host's Ray logs; last `tail` lines (0: all). follow=True "
          "(the engine's log): each line to on_line as it is written, until cancelled.")
      .def(
          "_start_up",
          [](D const& d, py::object on_progress, py::object done) {
            auto op = deployment_operation(d);
            auto progress = progress_callback(op, std::move(on_progress));
            d.async_up(std::move(progress), deliver_outcome<ck::DeploymentRecord>(op, std::move(done)));
            return op;
          },
          py::arg("on_progress") = py::none(), py::kw_only(), py::arg("done"),
          "Start up(); done(DeploymentRecord | clusterkit.Error) is called on the I/O thread.")
      .def(
          "_start_plan",
          [](D const& d, py::object done) {
            auto op = deployment_operation(d);
            d.async_plan(deliver_outcome<ck::DeploymentPlanResult>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start plan(); done(DeploymentPlanResult | clusterkit.Error).")
      .def(
          "_start_status",
          [](D const& d, py::object done) {
            auto op = deployment_operation(d);
            d.async_status(deliver_outcome<ck::DeploymentStatus>(op, std::move(done)));
            return op;
          },
          py::kw_only(), py::arg("done"), "Start status(); done(DeploymentStatus | clusterkit.Error).")
      .def(
          "_start_down",
          [](D const& d, bool unmount_nas, bool remove_model, py::object done) {
            auto op = deployment_operation(d);
            d.async_down(down_options(unmount_nas, remove_model), deliver_outcome<ck::DeploymentDownResult>(op, std::move(done)));
            return op;
          },
          py::arg("unmount_nas") = false, py::arg("remove_model") = false, py::kw_only(), py::arg("done"),
          "Start down(); done(DeploymentDownResult | clusterkit.Error).")
      .def(
          "_start_logs",
          [](D const& d, std::string host, unsigned tail, py::object done, bool follow, py::object on_line) {
            auto op = deployment_operation(d);
            auto o = vllm_logs_options(op, tail, follow, std::move(on_line));
            d.async_logs(std::move(host), o, deliver_outcome<std::string>(op, std::move(done)));
            return op;
          },
          py::arg("host") = "", py::arg("tail") = 200u, py::kw_only(), py::arg("done"), py::arg("follow") = false,
          py::arg("on_line") = py::none(),
          "Start logs(); done(str | clusterkit.Error).")
      .def("__repr__", [](D const& d) {
        auto const& s = d.spec();
        return "Deployment(" + repr_str(s.name) + ", model=" + repr_str(s.model.id) + ", head=" + repr_str(s.head) +
               ", workers=" + py_repr(py::cast(s.workers)) + ", download_host=" + repr_str(d.download_host()) + ")";
      });
}

}  // namespace

void register_deploy(py::module_& m) {
  register_deploy_spec(m);
  register_deploy_record(m);
  register_deploy_results(m);
  register_deployment(m);
}

}  // namespace ckpy
