// Models on disk (model.hpp) and the capacity planner (planner.hpp).
// Everything here is local: inspect/verify/hash run on a worker thread with
// the GIL released (Ctrl-C stops them); the planner is pure and quick.
#include "json_support.hpp"
#include "clusterkit/deployment.hpp"

#include "clusterkit/model.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/preflight.hpp"

#include <filesystem>
#include <mutex>
#include <sstream>

namespace ckpy {
namespace {

namespace fs = std::filesystem;

std::string py_repr(py::handle value) { return py::repr(value).cast<std::string>(); }
std::string repr_str(std::string const& s) { return py_repr(py::str(s)); }

std::optional<std::uint64_t> optional_count(py::object const& value, char const* what) {
  if (value.is_none()) return std::nullopt;
  auto v = integer_of(value, what);
  if (v < 0) throw py::value_error(std::string(what) + " must be >= 0");
  return static_cast<std::uint64_t>(v);
}

// ---------------------------------------------------------------------------
// Hash progress from worker threads

/// Bridges HashOptions::on_progress (worker threads) to a Python callback:
/// takes the GIL for each call; an exception is kept and stops the hashing.
struct ProgressBridge {
  SharedObject callback;
  std::stop_source stop;
  std::mutex mutex;
  SharedObject error;

  void attach(ck::HashOptions& options) {
    options.stop = stop.get_token();
    if (!callback) return;
    options.on_progress = [this](ck::HashProgress const& p) {
      if (stop.stop_requested() || interpreter_exiting()) return;
      py::gil_scoped_acquire gil;
      try {
        (*callback)(p);
      } catch (py::error_already_set& e) {
        std::lock_guard lock(mutex);
        if (!error) error = share(e.value());
        stop.request_stop();
      }
    };
  }
  /// Raise the callback's exception, if there was one. GIL held.
  void raise_if_failed() {
    std::lock_guard lock(mutex);
    if (error) raise_instance(*error);
  }
};

template <class Work>
auto hash_work(ProgressBridge& bridge, Work&& work) {
  try {
    return run_on_thread([&](std::stop_token token) {
      std::stop_callback forward(token, [&bridge] { bridge.stop.request_stop(); });
      return work();
    });
  } catch (ck::Error const&) {
    bridge.raise_if_failed();  // a cancellation caused by the callback's exception
    throw;
  }
}

// ---------------------------------------------------------------------------
// resolve_model

void register_location(py::module_& m) {
  py::class_<ck::ModelCandidate>(m, "ModelCandidate", "One place resolve_model looked.")
      .def_property_readonly("path", [](ck::ModelCandidate const& c) { return c.path.string(); })
      .def_property_readonly("layout", [](ck::ModelCandidate const& c) { return std::string(ck::to_string(c.layout)); },
                             "'plain', 'modelscope' or 'huggingface'.")
      .def_readonly("rejected_because", &ck::ModelCandidate::rejected_because, "'' when it matched.")
      .def("__repr__", [](ck::ModelCandidate const& c) {
        return "ModelCandidate(" + repr_str(c.path.string()) + ", " + repr_str(std::string(ck::to_string(c.layout))) +
               (c.rejected_because.empty() ? "" : ", rejected_because=" + repr_str(c.rejected_because)) + ")";
      });

  py::class_<ck::ModelLocation>(m, "ModelLocation", "Where resolve_model found a model.")
      .def_property_readonly("dir", [](ck::ModelLocation const& l) { return l.dir.string(); },
                             "The folder holding config.json (for HF: the snapshot folder).")
      .def_property_readonly("layout", [](ck::ModelLocation const& l) { return std::string(ck::to_string(l.layout)); })
      .def_readonly("revision", &ck::ModelLocation::revision, "HF only: the snapshot picked.")
      .def_readonly("tried", &ck::ModelLocation::tried, "Every place looked at; the match is last.")
      .def("__repr__", [](ck::ModelLocation const& l) {
        return "ModelLocation(" + repr_str(l.dir.string()) + ", " + repr_str(std::string(ck::to_string(l.layout))) + ")";
      });

  m.def(
      "resolve_model",
      [](std::string const& id_or_path, py::object const& root, std::string const& revision) {
        auto r = root.is_none() ? std::string() : path_string(root);
        py::gil_scoped_release nogil;
        return ck::resolve_model(id_or_path, r, revision);
      },
      py::arg("id_or_path"), py::arg("root") = "", py::arg("revision") = "",
      "Find a model's folder: a path, <root>/<ModelScope name>, <root>/<id>, or the Hugging Face cache under "
      "<root> (or <root>/hub). Raises clusterkit.FileNotFoundError ('file_not_found') listing every path tried.");
  m.def("modelscope_folder_name", &ck::modelscope_folder_name, py::arg("model_id"),
        "'Qwen/Qwen2.5-72B-Instruct' -> 'Qwen/Qwen2___5-72B-Instruct'.");
  m.def("huggingface_cache_folder_name", &ck::huggingface_cache_folder_name, py::arg("model_id"),
        "'Qwen/Qwen2.5-72B-Instruct' -> 'models--Qwen--Qwen2.5-72B-Instruct'.");
}

// ---------------------------------------------------------------------------
// ModelFacts

void register_facts_class(py::module_& m) {
  using SI = ck::ShardInfo;
  py::class_<SI>(m, "ShardInfo", "One safetensors file of a model.")
      .def_readonly("file", &SI::file)
      .def_readonly("header_bytes", &SI::header_bytes)
      .def_readonly("data_bytes", &SI::data_bytes)
      .def_readonly("expected_file_size", &SI::expected_file_size)
      .def_readonly("file_size", &SI::file_size)
      .def_readonly("tensor_count", &SI::tensor_count)
      .def("__repr__", [](SI const& s) {
        return "ShardInfo(" + repr_str(s.file) + ", tensors=" + std::to_string(s.tensor_count) +
               ", file_size=" + std::to_string(s.file_size) + ")";
      });

  using MT = ck::ModelTensor;
  py::class_<MT>(m, "ModelTensor", "One tensor of a model (from a header, or estimated from the config).")
      .def_readonly("name", &MT::name)
      .def_readonly("dtype", &MT::dtype)
      .def_readonly("shape", &MT::shape)
      .def_readonly("bytes", &MT::bytes)
      .def_readonly("shard", &MT::shard, "Index into ModelFacts.shards.")
      .def("__repr__", [](MT const& t) {
        return "ModelTensor(" + repr_str(t.name) + ", " + repr_str(t.dtype) + ", " + py_repr(py::cast(t.shape)) + ")";
      });

  using F = ck::ModelFacts;
  py::class_<F>(m, "ModelFacts",
                "What a model is, from its config.json and safetensors headers (inspect_model), or from a config "
                "alone (model_facts_from_config + estimate_tensors_from_config). Fields the config lacks are 0 / ''.")
      .def(py::init<F const&>(), py::arg("other"), "A copy.")
      .def_property_readonly("dir", [](F const& f) { return f.dir.string(); })
      .def_readonly("architectures", &F::architectures)
      .def_readonly("model_type", &F::model_type)
      .def_readonly("hidden_size", &F::hidden_size)
      .def_readonly("intermediate_size", &F::intermediate_size)
      .def_readonly("num_hidden_layers", &F::num_hidden_layers)
      .def_readonly("num_attention_heads", &F::num_attention_heads)
      .def_readonly("num_key_value_heads", &F::num_key_value_heads)
      .def_readonly("head_dim", &F::head_dim)
      .def_readonly("vocab_size", &F::vocab_size)
      .def_readonly("max_position_embeddings", &F::max_position_embeddings)
      .def_readonly("tie_word_embeddings", &F::tie_word_embeddings)
      .def_readonly("torch_dtype", &F::torch_dtype)
      .def_readonly("quantized", &F::quantized)
      .def_property_readonly("quantization_config", [](F const& f) { return json_to_python(f.quantization_config); },
                             "As given in config.json (None when absent).")
      .def_readonly("quant_method", &F::quant_method)
      .def_readonly("kv_lora_rank", &F::kv_lora_rank)
      .def_readonly("qk_rope_head_dim", &F::qk_rope_head_dim)
      .def_property_readonly("config", [](F const& f) { return json_to_python(f.config); },
                             "The whole config.json, as a dict (a new copy on each access).")
      .def_readonly("parameter_count", &F::parameter_count)
      .def_readonly("total_tensor_bytes", &F::total_tensor_bytes)
      .def_readonly("bytes_per_dtype", &F::bytes_per_dtype)
      .def_readonly("parameters_per_dtype", &F::parameters_per_dtype)
      .def_readonly("shards", &F::shards)
      .def_readonly("tensors", &F::tensors, "Every tensor (a copy: large for big models).")
      .def_readonly("weights_estimated", &F::weights_estimated, "True when the tensors came from the config.")
      .def_readonly("warnings", &F::warnings)
      .def_property_readonly("tensor_count", &F::tensor_count)
      .def("dtype_bytes", &F::dtype_bytes, "Bytes per element of the model's dtype (float32 counts as 2).")
      .def("kv_bytes_per_token", &F::kv_bytes_per_token, py::arg("kv_dtype_bytes") = 0,
           "KV-cache bytes per token for the whole model; 0 kv_dtype_bytes means the model's dtype.")
      .def(
          "to_json", [](F const& f, bool with_tensors) { return json_to_python(f.to_json(with_tensors)); },
          py::arg("with_tensors") = false, "The facts as a dict.")
      .def("__copy__", [](F const& f) { return F(f); })
      .def("__deepcopy__", [](F const& f, py::dict) { return F(f); }, py::arg("memo"))
      .def("__repr__", [](F const& f) {
        std::ostringstream out;
        out << "ModelFacts(" << repr_str(f.model_type) << ", parameters=" << f.parameter_count
            << ", layers=" << f.num_hidden_layers << ", tensors=" << f.tensors.size();
        if (f.weights_estimated) out << ", estimated";
        out << ")";
        return out.str();
      });

  m.def(
      "inspect_model",
      [](py::object const& dir) {
        fs::path p = path_string(dir);
        return run_on_thread([&](std::stop_token) { return ck::inspect_model(p); });
      },
      py::arg("dir"),
      "Read config.json and every safetensors header (never the weights). Raises clusterkit.Error "
      "('file_not_found', a FileNotFoundError, for a missing folder; 'local_file_error' for files that cannot be read; 'parse_error' for malformed ones).");
  m.def(
      "model_facts_from_config",
      [](py::object const& config, std::string const& source) {
        return ck::model_facts_from_config(python_to_json(config, "config"), source);
      },
      py::arg("config"), py::arg("source") = "config.json",
      "ModelFacts from a config.json given as a dict (or its JSON text); no tensors until "
      "estimate_tensors_from_config.");
  m.def(
      "estimate_tensors_from_config",
      [](F& facts) -> F& {
        ck::estimate_tensors_from_config(facts);
        return facts;
      },
      py::arg("facts"), py::return_value_policy::reference_internal,
      "Fill `facts` (in place, and return it) with the tensors a dense decoder-only model of its config has. "
      "Raises clusterkit.Error('invalid_argument') for configs it cannot describe (MoE, MLA, missing sizes).");
  m.def(
      "known_model_config",
      [](std::string const& id) -> py::object {
        auto c = ck::known_model_config(id);
        return c ? json_to_python(*c) : py::object(py::none());
      },
      py::arg("id"),
      "config.json (a dict) of a model clusterkit ships (examples/models/), by id ('Qwen/Qwen2.5-72B-Instruct'), in "
      "any case, or by folder name; None for others. For planning before anything is downloaded.");
  m.def("known_model_ids", &ck::known_model_ids, "The ids known_model_config answers.");
  m.def("safetensors_dtype_size", &ck::safetensors_dtype_size, py::arg("dtype"),
        "Bytes per element of a safetensors dtype ('BF16' -> 2); 0 when unknown.");
}

// ---------------------------------------------------------------------------
// Verification and hashing

void register_verify(py::module_& m) {
  using P = ck::VerifyProblem;
  py::class_<P>(m, "VerifyProblem")
      .def_property_readonly("kind", [](P const& p) { return std::string(ck::to_string(p.kind)); },
                             "'truncated', 'shard_missing', 'checksum_mismatch', ...")
      .def_readonly("file", &P::file, "Relative to the model folder ('' for the folder itself).")
      .def_readonly("message", &P::message)
      .def("__repr__", [](P const& p) {
        return "VerifyProblem(" + repr_str(std::string(ck::to_string(p.kind))) + ", " + repr_str(p.file) + ", " +
               repr_str(p.message) + ")";
      });

  using R = ck::VerifyReport;
  py::class_<R>(m, "VerifyReport", "Everything verify_model found wrong with a model folder.")
      .def_property_readonly("dir", [](R const& r) { return r.dir.string(); })
      .def_property_readonly("ok", &R::ok, "No problem found.")
      .def_readonly("problems", &R::problems)
      .def_readonly("warnings", &R::warnings)
      .def_readonly("shards_checked", &R::shards_checked)
      .def_readonly("tensors_checked", &R::tensors_checked)
      .def_readonly("bytes_expected", &R::bytes_expected)
      .def_readonly("manifest", &R::manifest, "The manifest used ('' when none).")
      .def_readonly("files_hashed", &R::files_hashed)
      .def_readonly("bytes_hashed", &R::bytes_hashed)
      .def_readonly("hash_seconds", &R::hash_seconds)
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); })
      .def("__bool__", &R::ok)
      .def("__repr__", [](R const& r) {
        return "VerifyReport(" + repr_str(r.dir.string()) + ", ok=" + (r.ok() ? "True" : "False") +
               ", problems=" + std::to_string(r.problems.size()) + ")";
      });

  using HP = ck::HashProgress;
  py::class_<HP>(m, "HashProgress", "Passed to on_progress while files are hashed.")
      .def_readonly("files_done", &HP::files_done)
      .def_readonly("files_total", &HP::files_total)
      .def_readonly("bytes_done", &HP::bytes_done)
      .def_readonly("bytes_total", &HP::bytes_total)
      .def("__repr__", [](HP const& p) {
        return "HashProgress(files=" + std::to_string(p.files_done) + "/" + std::to_string(p.files_total) +
               ", bytes=" + std::to_string(p.bytes_done) + "/" + std::to_string(p.bytes_total) + ")";
      });

  using FD = ck::FileDigest;
  py::class_<FD>(m, "FileDigest")
      .def_property_readonly("path", [](FD const& d) { return d.path.string(); })
      .def_readonly("sha256", &FD::sha256, "Lowercase hex; '' when the file could not be read.")
      .def_readonly("bytes", &FD::bytes)
      .def_readonly("error", &FD::error, "Why it could not be read ('' on success).")
      .def("__repr__", [](FD const& d) {
        return "FileDigest(" + repr_str(d.path.string()) + ", " + repr_str(d.error.empty() ? d.sha256 : d.error) + ")";
      });

  m.def(
      "verify_model",
      [](py::object const& dir, py::object const& manifest, bool skip_checksums, unsigned threads,
         py::object on_progress) {
        fs::path p = path_string(dir);
        ck::VerifyOptions o;
        if (!manifest.is_none()) o.manifest = fs::path(path_string(manifest));
        o.skip_checksums = skip_checksums;
        o.hashing.threads = threads;
        ProgressBridge bridge;
        if (!on_progress.is_none()) bridge.callback = share(std::move(on_progress));
        bridge.attach(o.hashing);
        auto report = hash_work(bridge, [&] { return ck::verify_model(p, o); });
        bridge.raise_if_failed();
        return report;
      },
      py::arg("dir"), py::kw_only(), py::arg("manifest") = py::none(), py::arg("skip_checksums") = false,
      py::arg("threads") = 0, py::arg("on_progress") = py::none(),
      "Check a model folder for completeness (config, index, every shard's header and size, and the SHA-256 of "
      "every file in the manifest: `manifest`, else <dir>/sha256sums when present). Problems are in the report; "
      "raises only when `dir` is not a folder. on_progress(HashProgress) is called from hashing threads.");
  m.def(
      "sha256_file",
      [](py::object const& path) {
        fs::path p = path_string(path);
        return run_on_thread([&](std::stop_token) { return ck::sha256_file(p); });
      },
      py::arg("path"), "SHA-256 of one file, lowercase hex. Raises clusterkit.FileNotFoundError ('file_not_found') when it does not exist, else clusterkit.Error('local_file_error').");
  m.def(
      "sha256_files",
      [](py::iterable const& paths, unsigned threads, py::object on_progress) {
        std::vector<fs::path> ps;
        for (auto item : paths) ps.emplace_back(path_string(item));
        ck::HashOptions o;
        o.threads = threads;
        ProgressBridge bridge;
        if (!on_progress.is_none()) bridge.callback = share(std::move(on_progress));
        bridge.attach(o);
        auto digests = hash_work(bridge, [&] { return ck::sha256_files(ps, o); });
        bridge.raise_if_failed();
        return digests;
      },
      py::arg("paths"), py::kw_only(), py::arg("threads") = 0, py::arg("on_progress") = py::none(),
      "Hash files in parallel; one FileDigest per path, in order (an unreadable file has `error` set).");
  m.def(
      "write_sha256_manifest",
      [](py::object const& dir, unsigned threads, py::object on_progress) {
        ck::HashOptions o;
        o.threads = threads;
        ProgressBridge bridge;
        if (!on_progress.is_none()) bridge.callback = share(std::move(on_progress));
        bridge.attach(o);
        fs::path d = path_string(dir);
        auto entries = hash_work(bridge, [&] { return ck::write_sha256_manifest(d, o); });
        bridge.raise_if_failed();
        std::vector<std::pair<std::string, std::string>> out;
        for (auto& e : entries) out.emplace_back(std::move(e.file), std::move(e.sha256));
        return out;
      },
      py::arg("dir"), py::kw_only(), py::arg("threads") = 0, py::arg("on_progress") = py::none(),
      "Hash every file of a model folder (hub bookkeeping left out) in parallel and write <dir>/sha256sums "
      "atomically, as `clusterkit model verify --write-manifest` does; returns [(file, sha256)], sorted. verify_model and "
      "ModelStore.verify then check every file against it. Raises clusterkit.Error naming an unreadable file.");
}

// ---------------------------------------------------------------------------
// GPU inventory and the planner

ck::GpuInventory inventory_from(py::handle gpus) {
  if (py::isinstance<py::str>(gpus)) return ck::parse_gpu_inventory(gpus.cast<std::string>());
  if (py::isinstance<ck::GpuInventory>(gpus)) return gpus.cast<ck::GpuInventory>();
  if (py::isinstance<ck::Inventory>(gpus)) {
    auto inv = ck::declared_gpu_inventory(gpus.cast<ck::Inventory const&>().hosts());
    if (inv.nodes.empty())
      throw py::value_error("no host of the inventory declares GPUs (gpus: {count: 2, model: L20, memory_gib: 48}); declare them, or "
                            "pass gpus='2 nodes x 2 L20 48GB'");
    return inv;
  }
  throw py::type_error("gpus must be a description such as '2 nodes x 2 L20 48GB', a GpuInventory, or an Inventory whose hosts declare gpus:");
}

void register_planner(py::module_& m) {
  using N = ck::GpuNode;
  py::class_<N>(m, "GpuNode", "One machine's GPUs (all of one kind).")
      .def(py::init([](std::string name, unsigned gpu_count, std::string gpu_model, std::uint64_t memory_bytes) {
             N n;
             n.name = std::move(name);
             n.gpu_count = gpu_count;
             n.gpu_model = std::move(gpu_model);
             n.memory_bytes = memory_bytes;
             n.memory_source = "given";
             return n;
           }),
           py::arg("name"), py::arg("gpu_count"), py::arg("gpu_model"), py::arg("memory_bytes"))
      .def_readonly("name", &N::name)
      .def_readonly("gpu_count", &N::gpu_count)
      .def_readonly("gpu_model", &N::gpu_model)
      .def_readonly("memory_bytes", &N::memory_bytes, "Per GPU, as nvidia-smi reports memory.total.")
      .def_readonly("memory_source", &N::memory_source)
      .def("__repr__", [](N const& n) {
        return "GpuNode(" + repr_str(n.name) + ", " + std::to_string(n.gpu_count) + "x " + repr_str(n.gpu_model) +
               ", memory_bytes=" + std::to_string(n.memory_bytes) + ")";
      });

  using GI = ck::GpuInventory;
  py::class_<GI>(m, "GpuInventory", "The GPUs to plan for: nodes of GPUs.")
      .def(py::init([](std::vector<N> nodes) {
             GI g;
             g.nodes = std::move(nodes);
             return g;
           }),
           py::arg("nodes"))
      .def_readonly("nodes", &GI::nodes)
      .def_property_readonly("total_gpus", &GI::total_gpus)
      .def_property_readonly("max_gpus_per_node", &GI::max_gpus_per_node)
      .def_property_readonly("min_memory_bytes", &GI::min_memory_bytes)
      .def("describe", &GI::describe, "'2 nodes x 2 L20 (45.0 GiB)'.")
      .def("to_json", [](GI const& g) { return json_to_python(g.to_json()); })
      .def("__repr__", [](GI const& g) { return "GpuInventory(" + repr_str(g.describe()) + ")"; });

  m.def("parse_gpu_inventory", &ck::parse_gpu_inventory, py::arg("text"),
        "Parse '2 nodes x 2 L20 48GB', '8x A10 24GB', '2x H100 80GB + 4x A10 24GB', ... Raises "
        "clusterkit.Error('invalid_argument') showing the accepted forms.");
  m.def(
      "declared_gpu_inventory", [](ck::Inventory const& inventory) { return ck::declared_gpu_inventory(inventory.hosts()); },
      py::arg("inventory"),
      "The GPUs an inventory declares (gpus: {count, model, memory_gib}), one node per host that declares some; memory "
      "from the table the planner and preflight share, else the declared size. What plan_deployment(facts, inventory) "
      "plans on.");
  m.def("known_gpu_memory_bytes", &ck::known_gpu_memory_bytes, py::arg("gpu_model"), py::arg("nominal_gb") = 0.0,
        "What nvidia-smi reports as memory.total for a well-known card of this nominal size; None when unknown.");

  using S = ck::LayoutStage;
  py::class_<S>(m, "LayoutStage", "One pipeline stage of a layout (per GPU).")
      .def_readonly("index", &S::index)
      .def_readonly("first_layer", &S::first_layer)
      .def_readonly("end_layer", &S::end_layer)
      .def_readonly("weight_bytes", &S::weight_bytes)
      .def_readonly("kv_bytes_per_token", &S::kv_bytes_per_token)
      .def_readonly("reserve_bytes", &S::reserve_bytes)
      .def_readonly("budget_bytes", &S::budget_bytes)
      .def_readonly("kv_cache_bytes", &S::kv_cache_bytes, "Negative when the weights do not fit.")
      .def_readonly("kv_cache_tokens", &S::kv_cache_tokens)
      .def("__repr__", [](S const& s) {
        return "LayoutStage(" + std::to_string(s.index) + ", layers=[" + std::to_string(s.first_layer) + ", " +
               std::to_string(s.end_layer) + "), kv_cache_tokens=" + std::to_string(s.kv_cache_tokens) + ")";
      });

  using L = ck::Layout;
  py::class_<L>(m, "Layout", "One tensor-parallel x pipeline-parallel layout and what it leaves for the KV cache.")
      .def_readonly("tp", &L::tp)
      .def_readonly("pp", &L::pp)
      .def_readonly("gpus", &L::gpus)
      .def_readonly("nodes", &L::nodes)
      .def_readonly("uses_all_gpus", &L::uses_all_gpus)
      .def_readonly("pp_within_node", &L::pp_within_node)
      .def_readonly("allowed", &L::allowed)
      .def_readonly("gpu_memory_bytes", &L::gpu_memory_bytes)
      .def_readonly("weight_bytes_per_gpu", &L::weight_bytes_per_gpu)
      .def_readonly("kv_bytes_per_token_per_gpu", &L::kv_bytes_per_token_per_gpu)
      .def_readonly("reserve_bytes_per_gpu", &L::reserve_bytes_per_gpu)
      .def_readonly("kv_cache_tokens", &L::kv_cache_tokens)
      .def_readonly("bottleneck_stage", &L::bottleneck_stage)
      .def_readonly("max_concurrent_sequences", &L::max_concurrent_sequences)
      .def_readonly("fits", &L::fits)
      .def_readonly("missing_bytes_per_gpu", &L::missing_bytes_per_gpu)
      .def_readonly("recommended", &L::recommended)
      .def_readonly("reason", &L::reason, "Why it was not recommended ('' for the recommended layout).")
      .def_readonly("stages", &L::stages)
      .def_readonly("vllm_args", &L::vllm_args, "The vLLM arguments for this layout, argv style.")
      .def("to_json", [](L const& l) { return json_to_python(l.to_json()); })
      .def("__repr__", [](L const& l) {
        return "Layout(tp=" + std::to_string(l.tp) + ", pp=" + std::to_string(l.pp) +
               ", fits=" + (l.fits ? "True" : "False") + ", kv_cache_tokens=" + std::to_string(l.kv_cache_tokens) +
               (l.recommended ? ", recommended" : "") + ")";
      });

  using RL = ck::RejectedLayout;
  py::class_<RL>(m, "RejectedLayout", "A TP size considered and refused.")
      .def_readonly("tp", &RL::tp)
      .def_readonly("pp", &RL::pp, "0: every PP.")
      .def_readonly("reason", &RL::reason)
      .def("__repr__", [](RL const& r) {
        return "RejectedLayout(tp=" + std::to_string(r.tp) + ", pp=" + std::to_string(r.pp) + ", " +
               repr_str(r.reason) + ")";
      });

  using Q = ck::QuantizedOption;
  py::class_<Q>(m, "QuantizedOption", "An estimate for the same model quantized.")
      .def_readonly("name", &Q::name)
      .def_readonly("weight_bytes", &Q::weight_bytes)
      .def_readonly("tp", &Q::tp)
      .def_readonly("pp", &Q::pp)
      .def_readonly("kv_cache_tokens", &Q::kv_cache_tokens)
      .def_readonly("note", &Q::note)
      .def("__repr__", [](Q const& q) {
        return "QuantizedOption(" + repr_str(q.name) + ", tp=" + std::to_string(q.tp) + ", pp=" + std::to_string(q.pp) +
               ")";
      });

  using SF = ck::Shortfall;
  py::class_<SF>(m, "Shortfall", "What to do when no layout fits.")
      .def_readonly("best_tp", &SF::best_tp)
      .def_readonly("best_pp", &SF::best_pp)
      .def_readonly("missing_bytes_per_gpu", &SF::missing_bytes_per_gpu)
      .def_readonly("nodes_needed", &SF::nodes_needed)
      .def_readonly("gpus_needed", &SF::gpus_needed)
      .def_readonly("nodes_needed_tp", &SF::nodes_needed_tp)
      .def_readonly("nodes_needed_pp", &SF::nodes_needed_pp)
      .def_readonly("max_model_len_that_fits", &SF::max_model_len_that_fits)
      .def_readonly("quantized", &SF::quantized)
      .def_readonly("suggestions", &SF::suggestions)
      .def("__repr__", [](SF const& s) {
        return "Shortfall(best_tp=" + std::to_string(s.best_tp) + ", best_pp=" + std::to_string(s.best_pp) +
               ", nodes_needed=" + std::to_string(s.nodes_needed) + ")";
      });

  using P = ck::Plan;
  py::class_<P>(m, "Plan", "The layouts vLLM accepts for a model on some GPUs, preferred first.")
      .def_readonly("model", &P::model)
      .def_readonly("parameter_count", &P::parameter_count)
      .def_readonly("total_weight_bytes", &P::total_weight_bytes)
      .def_readonly("kv_bytes_per_token", &P::kv_bytes_per_token)
      .def_readonly("kv_dtype_bytes", &P::kv_dtype_bytes)
      .def_readonly("gpus", &P::gpus)
      .def_readonly("gpu_memory_utilization", &P::gpu_memory_utilization)
      .def_readonly("max_model_len", &P::max_model_len)
      .def_readonly("sequence_length", &P::sequence_length)
      .def_readonly("max_num_batched_tokens", &P::max_num_batched_tokens)
      .def_readonly("max_num_seqs", &P::max_num_seqs)
      .def_readonly("kv_cache_dtype", &P::kv_cache_dtype)
      .def_readonly("layouts", &P::layouts, "Preferred first: the recommended layout, when one fits, is layouts[0].")
      .def_readonly("rejected", &P::rejected)
      .def_readonly("shortfall", &P::shortfall, "None when a layout fits.")
      .def_readonly("notes", &P::notes)
      .def_property_readonly(
          "recommended",
          [](P const& p) -> std::optional<L> {
            if (auto const* l = p.recommended_layout()) return *l;
            return std::nullopt;
          },
          "The recommended Layout, or None when nothing fits.")
      .def("to_json", [](P const& p) { return json_to_python(p.to_json()); })
      .def("summary", &P::summary, "A table for people: one line per layout, the recommendation and the reasons.")
      .def("__repr__", [](P const& p) {
        std::string s = "Plan(" + repr_str(p.model) + ", " + repr_str(p.gpus.describe());
        if (auto const* l = p.recommended_layout())
          s += ", recommended tp=" + std::to_string(l->tp) + " pp=" + std::to_string(l->pp);
        else
          s += ", nothing fits";
        return s + ")";
      });

  m.def(
      "plan_deployment",
      [](ck::ModelFacts const& facts, py::object const& gpus, double gpu_memory_utilization,
         py::object const& max_model_len, std::string kv_cache_dtype, bool allow_pp_within_node,
         py::object const& sequence_length, py::object const& reserve_bytes_per_gpu, std::uint64_t reserve_fixed_bytes,
         py::object const& max_num_batched_tokens, py::object const& max_num_seqs, std::uint64_t block_size) {
        auto inventory = inventory_from(gpus);
        ck::PlanOptions o;
        o.gpu_memory_utilization = gpu_memory_utilization;
        o.max_model_len = optional_count(max_model_len, "max_model_len");
        o.kv_cache_dtype = std::move(kv_cache_dtype);
        o.allow_pp_within_node = allow_pp_within_node;
        o.sequence_length = optional_count(sequence_length, "sequence_length");
        o.reserve_bytes_per_gpu = optional_count(reserve_bytes_per_gpu, "reserve_bytes_per_gpu");
        o.reserve_fixed_bytes = reserve_fixed_bytes;
        o.max_num_batched_tokens = optional_count(max_num_batched_tokens, "max_num_batched_tokens");
        o.max_num_seqs = optional_count(max_num_seqs, "max_num_seqs");
        o.block_size = block_size;
        return ck::plan_deployment(facts, inventory, o);
      },
      py::arg("facts"), py::arg("gpus"), py::kw_only(), py::arg("gpu_memory_utilization") = 0.9,
      py::arg("max_model_len") = py::none(), py::arg("kv_cache_dtype") = "auto",
      py::arg("allow_pp_within_node") = false, py::arg("sequence_length") = py::none(),
      py::arg("reserve_bytes_per_gpu") = py::none(), py::arg("reserve_fixed_bytes") = std::uint64_t(1) << 30,
      py::arg("max_num_batched_tokens") = py::none(), py::arg("max_num_seqs") = py::none(),
      py::arg("block_size") = 16,
      "Plan a vLLM deployment of `facts` on `gpus` (a description such as '2 nodes x 2 L20 48GB', or a "
      "GpuInventory). Raises clusterkit.Error('invalid_argument') when the model lacks what planning needs.");
  m.def("choose_layout", &ck::choose_layout, py::arg("plan"), py::arg("tp") = 0u, py::arg("pp") = 0u,
        "The layout a deployment serves from `plan`: the recommendation when tp and pp are both 0 (auto), else the "
        "planned layout of that shape. Raises clusterkit.Error('invalid_argument'), also a ValueError, when it does "
        "not fit, naming why and what would.");
  m.def(
      "known_model_fit_refusal",
      [](std::string const& model_id, unsigned tp, unsigned pp, py::object const& gpus, double gpu_memory_utilization,
         py::object const& max_model_len) {
        ck::PlanOptions o;
        o.gpu_memory_utilization = gpu_memory_utilization;
        o.max_model_len = optional_count(max_model_len, "max_model_len");
        return ck::known_model_fit_refusal(model_id, tp, pp, inventory_from(gpus), o);
      },
      py::arg("model_id"), py::arg("tp"), py::arg("pp"), py::arg("gpus"), py::kw_only(), py::arg("gpu_memory_utilization") = 0.9,
      py::arg("max_model_len") = py::none(),
      "Why TP x PP (0: auto) of a model whose config clusterkit ships (known_model_ids()) cannot run on `gpus`, from "
      "the config alone, with what would; '' when it fits or the model is not one of them. Deployment.up() refuses "
      "with it before anything is downloaded.");
  m.def("tensor_parallel_refusal", &ck::tensor_parallel_refusal, py::arg("facts"), py::arg("tp"),
        "Why vLLM refuses TP=`tp` for this model ('' when accepted).");
  m.def("pipeline_partition", &ck::pipeline_partition, py::arg("layers"), py::arg("pp"),
        "vLLM's split of `layers` over `pp` stages: the layer count of each stage.");
}

}  // namespace

void register_model(py::module_& m) {
  register_location(m);
  register_facts_class(m);
  register_verify(m);
  register_planner(m);
}

}  // namespace ckpy
