// Models on disk: find a model's folder, read what it is without loading its
// weights, and check that it is complete.
//
// Everything here is local file work and pure parsing; the parts that run on
// remote hosts (download, copy into the NAS, verify from every GPU host) wrap
// these functions.
//
//   auto where = clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", "/mnt");
//   auto facts = clusterkit::inspect_model(where.dir);   // milliseconds
//   auto report = clusterkit::verify_model(where.dir);   // sizes, index, sha256
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/error.hpp"

namespace clusterkit {

// ---------------------------------------------------------------------------
// Finding a model's folder
// ---------------------------------------------------------------------------

/// How a model folder is laid out on disk.
enum class ModelLayout {
  /// A folder given as a path, or `<root>/<id>` (e.g. `--local-dir` downloads).
  plain,
  /// ModelScope's cache: `<root>/Qwen/Qwen2___5-72B-Instruct`.
  modelscope,
  /// Hugging Face's cache: `<root>/models--Qwen--Qwen2.5-72B-Instruct/snapshots/<rev>`
  /// (also under `<root>/hub/`, which is what HF_HOME holds).
  huggingface,
};

std::string_view to_string(ModelLayout layout) noexcept;

/// `Qwen/Qwen2.5-72B-Instruct` -> `Qwen/Qwen2___5-72B-Instruct`: ModelScope
/// replaces every '.' of the model id with "___" when it names the folder.
std::string modelscope_folder_name(std::string_view model_id);

/// `Qwen/Qwen2.5-72B-Instruct` -> `models--Qwen--Qwen2.5-72B-Instruct`.
std::string huggingface_cache_folder_name(std::string_view model_id);

/// One place `resolve_model` looked.
struct ModelCandidate {
  std::filesystem::path path;
  ModelLayout layout = ModelLayout::plain;
  /// Empty when the candidate matched; otherwise why it did not
  /// ("does not exist", "has no config.json", ...).
  std::string rejected_because;
};

/// The candidate folders for `id_or_path` under `root`, in the order they are
/// tried. Pure: touches no file. A path that starts with '/', "./", "../" or
/// '~' is taken as a plain folder only. For the HF layout the path is the
/// repository folder (`.../models--Org--Name`); the snapshot is picked later.
std::vector<ModelCandidate> model_candidates(std::string_view id_or_path,
                                             std::filesystem::path const& root);

struct ModelLocation {
  /// The folder holding config.json (for HF: the snapshot folder).
  std::filesystem::path dir;
  ModelLayout layout = ModelLayout::plain;
  /// HF only: the snapshot (commit hash) that was picked.
  std::string revision;
  /// Every place looked at, including the one that matched (last).
  std::vector<ModelCandidate> tried;
};

/// Find a model's folder: a plain path, `<root>/<modelscope name>`,
/// `<root>/<id>`, or the HF cache under `<root>` or `<root>/hub`. A candidate
/// matches when it is a folder with a config.json in it. For the HF layout
/// the snapshot is `revision` (a ref such as "main" or a commit hash) when
/// given, else the one refs/main names, else the only snapshot; several and
/// no refs/main is an error that lists them.
/// Throws Error(errc::local_file_error) listing every path tried and why each
/// was rejected; Error(errc::invalid_argument) when the HF snapshot is
/// ambiguous.
ModelLocation resolve_model(std::string_view id_or_path, std::filesystem::path const& root = {},
                            std::string_view revision = {});

// ---------------------------------------------------------------------------
// safetensors headers
// ---------------------------------------------------------------------------

/// A header longer than this is refused before anything is allocated. Real
/// headers are kilobytes to a few megabytes (the format's own reader caps at
/// 100 MB too).
inline constexpr std::uint64_t max_safetensors_header_bytes = 100ull * 1024 * 1024;

/// Bytes per element of a safetensors dtype ("BF16" -> 2), or 0 when the
/// dtype is unknown. Sub-byte formats are not accepted.
std::uint64_t safetensors_dtype_size(std::string_view dtype) noexcept;

/// One tensor as its header describes it.
struct TensorInfo {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  /// Offsets into the data region (which starts at 8 + header_bytes).
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  std::uint64_t bytes() const noexcept { return end - begin; }
  /// Product of the shape (1 for a scalar).
  std::uint64_t elements() const noexcept;
};

struct SafetensorsHeader {
  /// N: the length of the JSON header (the file's first 8 bytes).
  std::uint64_t header_bytes = 0;
  /// Sorted by data offset.
  std::vector<TensorInfo> tensors;
  /// The "__metadata__" map (string to string).
  std::map<std::string, std::string> metadata;
  /// End of the last tensor: the size of the data region the header needs.
  std::uint64_t data_bytes = 0;

  /// 8 + N + data_bytes: the size a complete file has.
  std::uint64_t expected_file_size() const noexcept { return 8 + header_bytes + data_bytes; }
};

/// Parse a safetensors header from the first bytes of a file (at least the
/// 8-byte length and the N bytes of JSON; more is fine, it is not read).
/// Strict: N above the cap or above what the file holds, bad JSON, a
/// non-object, unknown dtypes, negative, fractional or overflowing shape
/// dimensions, data_offsets that disagree with shape x dtype size, overlap,
/// holes, and (when `file_size` is given) data past the end of the file or
/// trailing bytes after the last tensor are all errors. Nesting deeper than
/// the format needs is refused before it is built.
/// Throws Error(errc::parse_error) naming `source` and the tensor; never
/// allocates more than the header's own size.
SafetensorsHeader parse_safetensors_header(std::string_view file_prefix,
                                           std::optional<std::uint64_t> file_size = std::nullopt,
                                           std::string_view source = "<memory>");

/// Read one file's header: 8 bytes, then N bytes; the weights are never read.
/// The data region is NOT checked against the file size here (so that
/// `verify_model` can say "truncated, N bytes missing" instead of failing);
/// compare `header.expected_file_size()` with `file_size`.
struct SafetensorsFile {
  std::filesystem::path path;
  std::uint64_t file_size = 0;
  SafetensorsHeader header;
};
/// Throws Error(errc::local_file_error) when the file cannot be read,
/// Error(errc::parse_error) when its header is malformed.
SafetensorsFile read_safetensors_header(std::filesystem::path const& path);

// ---------------------------------------------------------------------------
// Model facts
// ---------------------------------------------------------------------------

struct ShardInfo {
  /// File name relative to the model folder.
  std::string file;
  std::uint64_t header_bytes = 0;
  std::uint64_t data_bytes = 0;
  /// 8 + header_bytes + data_bytes.
  std::uint64_t expected_file_size = 0;
  /// What is on disk (differs from expected when truncated or padded).
  std::uint64_t file_size = 0;
  std::size_t tensor_count = 0;
};

/// A tensor of the model, as the planner needs it.
struct ModelTensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t bytes = 0;
  /// Index into ModelFacts::shards (0 for estimated tensors).
  std::size_t shard = 0;
};

/// What the planner and a person need to know about a model. Fields the
/// config does not give are 0 / empty.
struct ModelFacts {
  std::filesystem::path dir;

  // From config.json (text_config / llm_config / language_config of
  // multimodal configs fills the text fields the top level lacks).
  std::vector<std::string> architectures;
  std::string model_type;
  std::uint64_t hidden_size = 0;
  std::uint64_t intermediate_size = 0;
  std::uint64_t num_hidden_layers = 0;
  std::uint64_t num_attention_heads = 0;
  /// Defaults to num_attention_heads when the config has none (no GQA).
  std::uint64_t num_key_value_heads = 0;
  /// The config's head_dim, else hidden_size / num_attention_heads.
  std::uint64_t head_dim = 0;
  std::uint64_t vocab_size = 0;
  std::uint64_t max_position_embeddings = 0;
  /// From the config when it says; otherwise true exactly when there is no
  /// lm_head tensor.
  bool tie_word_embeddings = false;
  /// "bfloat16", "float16", ... (config's torch_dtype or dtype).
  std::string torch_dtype;
  bool quantized = false;
  /// quantization_config as given (null when absent).
  nlohmann::json quantization_config;
  /// quantization_config.quant_method ("awq", "gptq", "fp8", ...).
  std::string quant_method;
  /// Multi-head latent attention (DeepSeek V2/V3): KV cache per token is
  /// kv_lora_rank + qk_rope_head_dim per layer, replicated across TP.
  std::uint64_t kv_lora_rank = 0;
  std::uint64_t qk_rope_head_dim = 0;
  /// The whole config.json.
  nlohmann::json config;

  // From the safetensors headers.
  /// Elements of every tensor as stored (packed int4 counts packed words).
  std::uint64_t parameter_count = 0;
  std::uint64_t total_tensor_bytes = 0;
  std::map<std::string, std::uint64_t> bytes_per_dtype;
  std::map<std::string, std::uint64_t> parameters_per_dtype;
  std::vector<ShardInfo> shards;
  std::vector<ModelTensor> tensors;
  /// True when `tensors` were derived from the config (no weights on disk).
  bool weights_estimated = false;
  /// Things worth a look that do not stop the planner (duplicate tensors,
  /// index total_size disagreeing with the headers, ...).
  std::vector<std::string> warnings;

  std::size_t tensor_count() const noexcept { return tensors.size(); }
  /// Bytes per element of the model's dtype (torch_dtype; float32 counts as
  /// 2 because vLLM's "auto" serves float32 checkpoints in 16 bits). Falls
  /// back to the dtype holding the most bytes, then 2.
  std::uint64_t dtype_bytes() const;
  /// KV-cache bytes per token for the whole model (all layers, all KV heads):
  /// 2 x layers x kv_heads x head_dim x kv_dtype_bytes (MLA: layers x
  /// (kv_lora_rank + qk_rope_head_dim) x bytes). 0 kv_dtype_bytes means the
  /// model's dtype.
  std::uint64_t kv_bytes_per_token(std::uint64_t kv_dtype_bytes = 0) const;

  nlohmann::json to_json(bool with_tensors = false) const;
};

/// Fill the config fields of ModelFacts from a parsed config.json.
/// `source` names it in errors. Throws Error(errc::parse_error) when a field
/// has the wrong type.
ModelFacts model_facts_from_config(nlohmann::json const& config, std::string_view source = "config.json");

/// For planning before a model is downloaded: the tensor set a dense
/// decoder-only model (Llama, Qwen2, Mistral, ...) of this config has,
/// in the model's dtype, so weights and parameters follow from the config
/// alone. Sets weights_estimated. Throws Error(errc::invalid_argument) for
/// configs it cannot describe (MoE, MLA, missing sizes).
void estimate_tensors_from_config(ModelFacts& facts);

/// config.json of a model clusterkit ships (examples/models/), for planning
/// before anything is downloaded: by id ("Qwen/Qwen2.5-72B-Instruct"), in
/// any case, or by folder name (ModelScope's "Qwen2___5-72B-Instruct" too).
std::optional<nlohmann::json> known_model_config(std::string_view id);
/// The ids known_model_config answers.
std::vector<std::string> known_model_ids();

/// Read config.json and the header of every safetensors file (following
/// model.safetensors.index.json when present), never the weights.
/// Throws Error(errc::local_file_error) for a missing config, missing shard
/// or no safetensors at all (e.g. a .bin-only model), and
/// Error(errc::parse_error) for malformed files.
ModelFacts inspect_model(std::filesystem::path const& dir);

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// "<64 hex>  <file>" or "<64 hex> *<file>" lines, as `sha256sum` writes
/// them. Empty lines and lines starting with '#' are skipped.
struct ManifestEntry {
  std::string sha256;  // lowercase hex
  std::string file;
};
/// Throws Error(errc::parse_error) naming `source` and the line.
std::vector<ManifestEntry> parse_sha256_manifest(std::string_view text,
                                                 std::string_view source = "sha256sums");
/// The text `sha256sum` would print for these entries.
std::string format_sha256_manifest(std::vector<ManifestEntry> const& entries);

struct HashProgress {
  std::size_t files_done = 0;
  std::size_t files_total = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
};

struct HashOptions {
  /// 0: min(hardware threads, 8).
  unsigned threads = 0;
  std::size_t buffer_bytes = 4 * 1024 * 1024;
  /// Called from worker threads, one call at a time, after each buffer.
  std::function<void(HashProgress const&)> on_progress;
  /// Stops hashing; the call then throws Error(errc::cancelled).
  std::stop_token stop;
};

struct FileDigest {
  std::filesystem::path path;
  /// Lowercase hex; empty when the file could not be read.
  std::string sha256;
  std::uint64_t bytes = 0;
  /// Why it could not be read (empty on success).
  std::string error;
};

/// SHA-256 of one file (OpenSSL EVP, large sequential reads).
/// Throws Error(errc::local_file_error).
std::string sha256_file(std::filesystem::path const& path, std::size_t buffer_bytes = 4 * 1024 * 1024);

/// Hash files in parallel on a pool of threads (largest first, so one big
/// shard does not start last). Results are in the order of `paths`; a file
/// that cannot be read has `error` set rather than throwing.
std::vector<FileDigest> sha256_files(std::vector<std::filesystem::path> const& paths,
                                     HashOptions const& options = {});

/// True for what the hub CLIs keep beside a model's files, and for the
/// sync's own partial files: huggingface_hub's .cache/ and *.incomplete,
/// ModelScope's ._____temp/ and its .mdl/.msc/.mv markers, rsync's
/// .rsync-partial/. `path` is relative to the model folder, with '/'.
/// The one list: `model sync` never copies these, and manifests never list
/// them.
bool is_hub_bookkeeping(std::string_view relative_path);

/// Hashes every regular file of `dir` but the bookkeeping above and
/// `sha256sums` itself (in parallel), and writes `<dir>/sha256sums`
/// atomically (a temporary file, then a rename). Returns the entries, sorted
/// by file. Throws Error(errc::local_file_error) naming the file that could
/// not be read or written.
std::vector<ManifestEntry> write_sha256_manifest(std::filesystem::path const& dir, HashOptions const& options = {});

struct VerifyOptions {
  /// Check checksums from this manifest (relative file names are relative
  /// to the model folder). Without it, `<dir>/sha256sums` is used if present.
  std::optional<std::filesystem::path> manifest;
  /// Skip checksums even if a manifest is present.
  bool skip_checksums = false;
  HashOptions hashing;
};

enum class VerifyProblemKind {
  config_missing,
  config_invalid,
  index_invalid,
  no_weights,
  shard_missing,
  header_invalid,
  truncated,
  trailing_bytes,
  tensor_missing,
  duplicate_tensor,
  manifest_missing,
  manifest_invalid,
  file_unreadable,
  checksum_mismatch,
};
std::string_view to_string(VerifyProblemKind kind) noexcept;

struct VerifyProblem {
  VerifyProblemKind kind;
  /// Relative to the model folder ("" for the folder itself).
  std::string file;
  /// A complete sentence: what is wrong and by how much.
  std::string message;
};

struct VerifyReport {
  std::filesystem::path dir;
  std::vector<VerifyProblem> problems;
  std::vector<std::string> warnings;
  std::size_t shards_checked = 0;
  std::size_t tensors_checked = 0;
  /// Sum of the shards' expected sizes.
  std::uint64_t bytes_expected = 0;
  /// The manifest used ("" when none).
  std::string manifest;
  std::size_t files_hashed = 0;
  std::uint64_t bytes_hashed = 0;
  double hash_seconds = 0;

  bool ok() const noexcept { return problems.empty(); }
  nlohmann::json to_json() const;
};

/// Check a model folder for completeness and report every problem found (it
/// does not stop at the first): config.json readable; every shard the index
/// lists exists and has a valid header; each file's size equals 8 + N + end
/// of data; every tensor of the index's weight_map is in the shard it names;
/// no tensor in two shards; and, when a manifest is there or given, every
/// listed file's SHA-256. Throws only for cancellation (errc::cancelled) and
/// when `dir` is not a folder (errc::local_file_error).
/// It is `verify_snapshot(read_model_snapshot(dir))` plus the checksums.
VerifyReport verify_model(std::filesystem::path const& dir, VerifyOptions const& options = {});

/// What verifying a model folder needs to know of it, without its weights:
/// config.json and the index as text, and each safetensors file's size and
/// first bytes (the 8-byte length and the JSON header). Read from this
/// machine's disk by `read_model_snapshot`, or from a remote host's by
/// ModelStore (model_store.hpp), so both are checked by the same code.
struct ModelSnapshot {
  /// The folder as its host names it (used in messages).
  std::string dir;
  /// nullopt when the file is absent.
  std::optional<std::string> config_json;
  std::optional<std::string> index_json;
  /// Why config.json or the index could not be read (present but unreadable).
  std::string config_error;
  std::string index_error;
  struct Shard {
    /// Relative to `dir`.
    std::string name;
    bool exists = false;
    std::uint64_t size = 0;
    /// The file's first min(size, 8 + N) bytes; only the first 8 when N is
    /// above max_safetensors_header_bytes or past the end of the file.
    std::string head;
    /// Why it could not be read (empty on success).
    std::string error;
  };
  /// Every shard the index names, or every *.safetensors file when there is
  /// no index (sorted by name).
  std::vector<Shard> shards;
};

/// Read the snapshot of a folder on this machine. Throws
/// Error(errc::local_file_error) when `dir` is not a folder.
ModelSnapshot read_model_snapshot(std::filesystem::path const& dir);

/// The facts of a model from a snapshot (a remote host's folder, read by
/// ModelStore's snapshot script): exactly what inspect_model would find
/// there. Throws as inspect_model does.
ModelFacts inspect_snapshot(ModelSnapshot const& snapshot);

/// The structural checks of `verify_model` (everything but checksums) on a
/// snapshot. Pure.
VerifyReport verify_snapshot(ModelSnapshot const& snapshot);

/// The names of the shards a snapshot must describe: those the index lists
/// (when `index_json` parses), else nullopt (then every *.safetensors file).
/// Throws Error(errc::parse_error) for a malformed index.
std::optional<std::vector<std::string>> shards_named_by_index(std::string_view index_json,
                                                              std::string_view source = "model.safetensors.index.json");

}  // namespace clusterkit
