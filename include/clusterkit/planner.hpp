// The capacity planner: which tensor-parallel x pipeline-parallel layouts
// vLLM accepts for a model on a set of GPUs, how much memory each leaves for
// the KV cache, which one to run, and what is missing when none fits.
//
// Pure code: model facts in (see model.hpp), numbers out.
//
//   auto gpus = clusterkit::parse_gpu_inventory("2 nodes x 2 L20 48GB");
//   auto plan = clusterkit::plan_deployment(facts, gpus);
//   plan.recommended_layout()->vllm_args;  // --tensor-parallel-size 2 ...
//
// How the numbers are made (each one is a field of Layout / LayoutStage):
//  * Weights per GPU are summed tensor by tensor from the safetensors headers:
//    decoder layer i goes to the pipeline stage vLLM's get_pp_indices gives
//    it (layers // pp each; the remainder r adds one layer to stages
//    pp-2, pp-3, ..., pp-1-r, never the last); embeddings on the first stage,
//    lm_head and the final norm on the last (and a tied embedding on the
//    last too when pp > 1). Within a stage, column-parallel projections
//    (q/k/v/gate/up) and row-parallel weights (o/down) are divided by TP,
//    K/V by the KV heads each rank holds (a replicated head when TP > KV
//    heads), embeddings/lm_head by TP after padding the vocabulary to a
//    multiple of 64; norms, routers and row-parallel biases are replicated.
//  * KV bytes per token per GPU = 2 x layers on the stage x max(1, kv_heads /
//    TP) x head_dim x KV dtype bytes (MLA: layers x (kv_lora_rank +
//    qk_rope_head_dim) x bytes, on every TP rank).
//  * Reserve per GPU (the part of the budget that is neither weights nor KV
//    cache), following what vLLM's memory profiling subtracts:
//      - fixed 1 GiB: non-torch allocations (NCCL communicators and vLLM's
//        custom all-reduce buffers, cuBLAS workspaces), typically a few
//        hundred MiB to about 1.5 GiB. vLLM has captured CUDA graphs after
//        sizing the KV cache, so they come out of the (1 -
//        gpu_memory_utilization) slack; raise reserve_fixed_bytes if a
//        version counts them or startup runs out of memory.
//      - activation peak of the profiling forward pass over
//        max_num_batched_tokens tokens: T x dtype x (2 hidden + 3
//        intermediate / TP + (heads + 2 kv_heads) x head_dim / TP);
//      - on the last stage, the sampler's float32 logits, probabilities and
//        log-probabilities for max_num_seqs sequences: S x vocab x 4 x 3.
//    max_num_batched_tokens / max_num_seqs default to what vLLM's API
//    server picks: 8192 / 1024 on GPUs with >= 70 GiB that are not A100,
//    else 2048 / 256.
//  * KV tokens = floor((memory x utilization - weights - reserve) / KV bytes
//    per token), rounded down to whole 16-token blocks, on each stage; the
//    layout's figure is the smallest (vLLM sizes every worker's cache to the
//    smallest). A layout fits when it holds max_model_len tokens (else vLLM
//    refuses to start).
//
// Which layouts are listed: every TP x PP that vLLM accepts and that can be
// placed with each TP group inside one node, using all GPUs or fewer (a
// smaller layout may leave nodes free for another replica). TP across nodes
// and TP values vLLM refuses are listed under `rejected` with the reason.
// PP stages sharing a node are listed but not allowed unless
// allow_pp_within_node (TP over the same GPUs is faster).
//
// The recommendation, among layouts that fit and are allowed: the largest
// TP (within a node), then the most GPUs (PP across the nodes: the cluster
// was rented for this model and more stages hold more KV cache), then the
// most KV tokens. On 2 nodes x 2 L20 48 GB this is TP=2 PP=2, the layout of
// the seed's hand-written deployment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/error.hpp"
#include "clusterkit/model.hpp"

namespace clusterkit {

// ---------------------------------------------------------------------------
// GPU inventory
// ---------------------------------------------------------------------------

/// One machine's GPUs (all of one kind).
struct GpuNode {
  /// Host name when discovered; "node1", "node2", ... when parsed.
  std::string name;
  unsigned gpu_count = 0;
  /// "L20", "NVIDIA H100 80GB HBM3", ...
  std::string gpu_model;
  /// Per GPU: what nvidia-smi reports as memory.total (vLLM's
  /// gpu_memory_utilization is a fraction of this).
  std::uint64_t memory_bytes = 0;
  /// Where memory_bytes came from ("given as 46068 MiB", "nvidia-smi total
  /// of an L20 48GB: 46068 MiB", "48 GB taken as 48e9 bytes").
  std::string memory_source;
};

struct GpuInventory {
  std::vector<GpuNode> nodes;

  unsigned total_gpus() const noexcept;
  unsigned max_gpus_per_node() const noexcept;
  /// Smallest per-GPU memory over all nodes.
  std::uint64_t min_memory_bytes() const noexcept;
  /// "2 nodes x 2 L20 (45.0 GiB)".
  std::string describe() const;
  nlohmann::json to_json() const;
};

/// Per-GPU memory that nvidia-smi reports for a well-known card with this
/// nominal size, e.g. ("L20", 48) -> 46068 MiB; nullopt when not in the
/// table. nominal_gb 0 picks the card's only size (A100 has two: nullopt).
std::optional<std::uint64_t> known_gpu_memory_bytes(std::string_view gpu_model, double nominal_gb = 0);

/// Parse a forgiving description: "2x2 L20 48GB", "2 nodes x 2 L20 48 GB",
/// "2 nodes with 2 L20 48GB each", "8x A10 24GB" (one node of 8),
/// "4x H100 80GB", "H100" (one GPU), "2x4xA10-24G", "2x2 L20 46068MiB";
/// several groups joined by '+', ',' or ';' ("2x H100 80GB + 4x A10 24GB").
/// One count is GPUs in one node unless it says "nodes"; two counts are
/// nodes x GPUs per node. Memory: "GiB"/"MiB" are exact; "GB"/"G" of a card
/// in the table (H100, H800, H200, A100, A800, A10, A10G, L20, L40, L40S,
/// L4, 4090, T4) becomes what nvidia-smi reports for it, otherwise 10^9
/// bytes per GB (the lower reading: a plan that fits stays fitting).
/// Throws Error(errc::invalid_argument) saying what was not understood and
/// showing the accepted forms.
GpuInventory parse_gpu_inventory(std::string_view text);

// ---------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------

struct PlanOptions {
  /// vLLM's --gpu-memory-utilization: the fraction of each GPU's memory
  /// vLLM may use for weights, activations and KV cache.
  double gpu_memory_utilization = 0.9;
  /// vLLM's --max-model-len; default min(max_position_embeddings, 32768).
  std::optional<std::uint64_t> max_model_len;
  /// vLLM's --kv-cache-dtype: "auto" (the model's dtype), "fp8",
  /// "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16", "float32".
  std::string kv_cache_dtype = "auto";
  /// Length of the sequences for max_concurrent_sequences; default
  /// max_model_len (the worst case).
  std::optional<std::uint64_t> sequence_length;
  /// Overrides the reserve estimate (see the file comment) with one figure.
  std::optional<std::uint64_t> reserve_bytes_per_gpu;
  /// The fixed part of the reserve.
  std::uint64_t reserve_fixed_bytes = 1ull << 30;
  /// vLLM's --max-num-batched-tokens / --max-num-seqs; defaults as vLLM's
  /// API server picks them for the GPU (see the file comment).
  std::optional<std::uint64_t> max_num_batched_tokens;
  std::optional<std::uint64_t> max_num_seqs;
  /// vLLM's KV cache block size: the token count is a multiple of it.
  std::uint64_t block_size = 16;
  /// Allow several pipeline stages on one node.
  bool allow_pp_within_node = false;
};

/// One pipeline stage of a layout (every GPU of the stage holds the same).
struct LayoutStage {
  unsigned index = 0;
  /// Decoder layers [first_layer, end_layer).
  std::uint64_t first_layer = 0;
  std::uint64_t end_layer = 0;
  std::uint64_t weight_bytes = 0;
  std::uint64_t kv_bytes_per_token = 0;
  std::uint64_t reserve_bytes = 0;
  /// memory x gpu_memory_utilization.
  std::uint64_t budget_bytes = 0;
  /// budget - weights - reserve; negative when the weights do not fit.
  std::int64_t kv_cache_bytes = 0;
  std::uint64_t kv_cache_tokens = 0;
};

struct Layout {
  unsigned tp = 1;
  unsigned pp = 1;
  unsigned gpus = 1;
  unsigned nodes = 1;
  bool uses_all_gpus = false;
  /// Some node holds more than one stage.
  bool pp_within_node = false;
  /// False when the options rule it out (pp_within_node).
  bool allowed = true;
  std::uint64_t gpu_memory_bytes = 0;
  /// Worst (largest) over the stages.
  std::uint64_t weight_bytes_per_gpu = 0;
  /// Worst (largest) over the stages.
  std::uint64_t kv_bytes_per_token_per_gpu = 0;
  /// Worst (largest) over the stages.
  std::uint64_t reserve_bytes_per_gpu = 0;
  /// Smallest over the stages: what vLLM's cache holds.
  std::uint64_t kv_cache_tokens = 0;
  /// The stage that sets kv_cache_tokens.
  unsigned bottleneck_stage = 0;
  /// kv_cache_tokens / sequence_length.
  std::uint64_t max_concurrent_sequences = 0;
  /// kv_cache_tokens >= max_model_len.
  bool fits = false;
  /// Bytes the bottleneck GPU lacks to hold one max_model_len sequence (0
  /// when it fits).
  std::uint64_t missing_bytes_per_gpu = 0;
  bool recommended = false;
  /// Why it was not recommended ("" for the recommended layout).
  std::string reason;
  std::vector<LayoutStage> stages;
  /// The vLLM arguments for this layout, argv style.
  std::vector<std::string> vllm_args;

  nlohmann::json to_json() const;
};

/// A TP size that was considered and refused, and why.
struct RejectedLayout {
  unsigned tp = 0;
  unsigned pp = 0;  // 0: every PP
  std::string reason;
};

/// An estimate for the same model quantized.
struct QuantizedOption {
  /// "fp8" or "awq-int4".
  std::string name;
  /// Estimated total weight bytes.
  std::uint64_t weight_bytes = 0;
  /// The layout the planner would pick for it on these GPUs (tp/pp 0: none fits).
  unsigned tp = 0;
  unsigned pp = 0;
  std::uint64_t kv_cache_tokens = 0;
  std::string note;
};

/// What to do when nothing fits.
struct Shortfall {
  /// The allowed layout that comes closest (the most KV bytes, i.e. the
  /// least missing on its bottleneck GPU).
  unsigned best_tp = 0;
  unsigned best_pp = 0;
  std::uint64_t missing_bytes_per_gpu = 0;
  /// Same nodes, more of them: the smallest node count with a fitting
  /// layout (0: none up to 64 nodes).
  unsigned nodes_needed = 0;
  unsigned gpus_needed = 0;
  unsigned nodes_needed_tp = 0;
  unsigned nodes_needed_pp = 0;
  /// The largest --max-model-len the best layout would serve (0: weights
  /// alone do not fit).
  std::uint64_t max_model_len_that_fits = 0;
  std::vector<QuantizedOption> quantized;
  /// The options in sentences.
  std::vector<std::string> suggestions;
};

struct Plan {
  std::string model;
  std::uint64_t parameter_count = 0;
  std::uint64_t total_weight_bytes = 0;
  /// Whole model, per token, in the KV dtype used.
  std::uint64_t kv_bytes_per_token = 0;
  std::uint64_t kv_dtype_bytes = 0;
  GpuInventory gpus;
  // Options as resolved.
  double gpu_memory_utilization = 0.9;
  std::uint64_t max_model_len = 0;
  std::uint64_t sequence_length = 0;
  std::uint64_t max_num_batched_tokens = 0;
  std::uint64_t max_num_seqs = 0;
  std::string kv_cache_dtype;

  /// Preferred first: the recommended layout (when one fits) is layouts[0].
  std::vector<Layout> layouts;
  std::vector<RejectedLayout> rejected;
  std::optional<Shortfall> shortfall;
  /// Assumptions worth showing (estimated weights, heterogeneous nodes...).
  std::vector<std::string> notes;

  Layout const* recommended_layout() const noexcept;
  nlohmann::json to_json() const;
  /// A table for people: one line per layout, the recommendation and the
  /// reasons.
  std::string summary() const;
};

/// Why TP=`tp` is refused by vLLM for this model ("" when accepted): heads
/// and KV heads divisibility, intermediate size, padded vocabulary, and
/// AWQ/GPTQ group size.
std::string tensor_parallel_refusal(ModelFacts const& facts, unsigned tp);

/// vLLM's split of `layers` over `pp` stages (get_pp_indices without
/// VLLM_PP_LAYER_PARTITION): the layer count of each stage.
std::vector<std::uint64_t> pipeline_partition(std::uint64_t layers, unsigned pp);

/// Bytes of the KV cache dtype: "auto" -> model dtype; throws
/// Error(errc::invalid_argument) for an unknown name.
std::uint64_t kv_cache_dtype_bytes(ModelFacts const& facts, std::string_view kv_cache_dtype);

/// Plan a deployment. Throws Error(errc::invalid_argument) when the model
/// lacks what planning needs (layers, heads, hidden size, tensors), the
/// inventory is empty, or an option is out of range.
Plan plan_deployment(ModelFacts const& facts, GpuInventory const& gpus, PlanOptions const& options = {});

}  // namespace clusterkit
