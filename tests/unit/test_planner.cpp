// The capacity planner: GPU inventories, vLLM's layout rules, and the worked
// cases of issue 4 with a synthetic Qwen2.5-72B-Instruct (its real config and
// 37 safetensors files whose headers describe the real tensor set; the data
// regions are sparse, so the 145 GB model costs no disk).
#include "clusterkit/planner.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;
using clusterkit::Error;
using clusterkit::errc;
using nlohmann::json;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;
constexpr std::uint64_t GiB = 1ull << 30;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ck-plan-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(TempDir const&) = delete;
  TempDir& operator=(TempDir const&) = delete;
};

// Qwen2.5-72B-Instruct (config.json of the published model).
constexpr std::uint64_t H = 8192, I = 29568, L = 80, V = 152064, HEADS = 64, KV = 8, HD = 128;

json qwen_config() {
  return json{{"architectures", {"Qwen2ForCausalLM"}},
              {"attention_dropout", 0.0},
              {"bos_token_id", 151643},
              {"eos_token_id", 151645},
              {"hidden_act", "silu"},
              {"hidden_size", H},
              {"initializer_range", 0.02},
              {"intermediate_size", I},
              {"max_position_embeddings", 32768},
              {"max_window_layers", 70},
              {"model_type", "qwen2"},
              {"num_attention_heads", HEADS},
              {"num_hidden_layers", L},
              {"num_key_value_heads", KV},
              {"rms_norm_eps", 1e-06},
              {"rope_theta", 1000000.0},
              {"sliding_window", 131072},
              {"tie_word_embeddings", false},
              {"torch_dtype", "bfloat16"},
              {"transformers_version", "4.43.1"},
              {"use_cache", true},
              {"use_sliding_window", false},
              {"vocab_size", V}};
}

struct Spec {
  std::string name;
  std::vector<std::uint64_t> shape;
};

std::vector<Spec> qwen_tensors() {
  std::vector<Spec> t;
  t.push_back({"model.embed_tokens.weight", {V, H}});
  for (std::uint64_t i = 0; i < L; ++i) {
    auto p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "self_attn.q_proj.weight", {H, H}});
    t.push_back({p + "self_attn.q_proj.bias", {H}});
    t.push_back({p + "self_attn.k_proj.weight", {KV * HD, H}});
    t.push_back({p + "self_attn.k_proj.bias", {KV * HD}});
    t.push_back({p + "self_attn.v_proj.weight", {KV * HD, H}});
    t.push_back({p + "self_attn.v_proj.bias", {KV * HD}});
    t.push_back({p + "self_attn.o_proj.weight", {H, H}});
    t.push_back({p + "mlp.gate_proj.weight", {I, H}});
    t.push_back({p + "mlp.up_proj.weight", {I, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, I}});
    t.push_back({p + "input_layernorm.weight", {H}});
    t.push_back({p + "post_attention_layernorm.weight", {H}});
  }
  t.push_back({"model.norm.weight", {H}});
  t.push_back({"lm_head.weight", {V, H}});
  return t;
}

std::uint64_t elements(std::vector<std::uint64_t> const& s) {
  std::uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

/// Writes the synthetic model: config.json, 37 sparse shards and the index.
void write_qwen(fs::path const& dir) {
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << qwen_config().dump(2);
  auto tensors = qwen_tensors();
  std::uint64_t total = 0;
  for (auto const& t : tensors) total += elements(t.shape) * 2;
  constexpr int shards = 37;
  std::vector<std::vector<Spec const*>> by_shard(shards);
  std::uint64_t before = 0;
  for (auto const& t : tensors) {
    auto s = std::min<std::uint64_t>(shards - 1, before * shards / total);
    by_shard[s].push_back(&t);
    before += elements(t.shape) * 2;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", json::object()}};
  for (int s = 0; s < shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
    json h = {{"__metadata__", {{"format", "pt"}}}};
    std::uint64_t off = 0;
    for (auto const* t : by_shard[s]) {
      auto b = elements(t->shape) * 2;
      h[t->name] = {{"dtype", "BF16"}, {"shape", t->shape}, {"data_offsets", {off, off + b}}};
      off += b;
      index["weight_map"][t->name] = name;
    }
    auto text = h.dump();
    while (text.size() % 8) text.push_back(' ');
    std::string head(8, '\0');
    for (int i = 0; i < 8; ++i) head[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
    {
      std::ofstream out(dir / name, std::ios::binary);
      out << head << text;
    }
    fs::resize_file(dir / name, 8 + text.size() + off);  // sparse: no disk used
  }
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
}

/// The model, inspected once for all test cases.
clusterkit::ModelFacts const& qwen() {
  static clusterkit::ModelFacts facts = [] {
    TempDir tmp;
    auto dir = tmp.path / "Qwen" / "Qwen2___5-72B-Instruct";
    write_qwen(dir);
    auto start = std::chrono::steady_clock::now();
    auto f = clusterkit::inspect_model(dir);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    // Milliseconds, not the minutes reading 145 GB would take.
    CHECK(ms < 1000);
    std::printf("inspect_model on 37 shards (145 GB described): %.2f ms\n", ms);
    return f;
  }();
  return facts;
}

// Independent arithmetic for the expected numbers.
constexpr std::uint64_t layer_params = 2 * H * H + H + 2 * (KV * HD * H + KV * HD) + 3 * I * H + 2 * H;
constexpr std::uint64_t total_params = L * layer_params + 2 * V * H + H;
/// One decoder layer on one GPU at TP=tp (tp <= 8: KV heads split, norms
/// replicated, no row-parallel biases in Qwen2).
constexpr std::uint64_t layer_bytes_per_gpu(std::uint64_t tp) { return 2 * ((layer_params - 2 * H) / tp + 2 * H); }
constexpr std::uint64_t vocab_bytes_per_gpu(std::uint64_t tp) { return 2 * V * H / tp; }
/// The reserve of the last stage (first stage: without the sampler).
constexpr std::uint64_t reserve(std::uint64_t tp, std::uint64_t tokens, std::uint64_t seqs, bool last) {
  auto kv_rank = KV / tp > 0 ? KV / tp : 1;
  return GiB + tokens * 2 * (2 * H + 3 * I / tp + (HEADS / tp + 2 * kv_rank) * HD) + (last ? seqs * V * 4 * 3 : 0);
}
std::uint64_t tokens_for(std::uint64_t budget, std::uint64_t weights, std::uint64_t res, std::uint64_t kv_per_token) {
  auto t = (budget - weights - res) / kv_per_token;
  return t - t % 16;
}

/// CK_PLAN_VERBOSE=1 prints each worked case's table.
void show(clusterkit::Plan const& plan) {
  if (std::getenv("CK_PLAN_VERBOSE")) std::printf("%s\n", plan.summary().c_str());
}

clusterkit::Layout const& find(clusterkit::Plan const& plan, unsigned tp, unsigned pp) {
  for (auto const& l : plan.layouts)
    if (l.tp == tp && l.pp == pp) return l;
  FAIL("no layout TP=" << tp << " PP=" << pp);
  throw 0;
}

}  // namespace

TEST_CASE("GPU inventories in many spellings", "[planner][inventory]") {
  auto seed = clusterkit::parse_gpu_inventory("2x2 L20 48GB");
  REQUIRE(seed.nodes.size() == 2);
  CHECK(seed.nodes[0].gpu_count == 2);
  CHECK(seed.nodes[0].gpu_model == "L20");
  CHECK(seed.nodes[0].memory_bytes == 46068 * MiB);
  CHECK(seed.total_gpus() == 4);
  CHECK(seed.describe() == "2 nodes x 2 L20 (44.99 GiB)");

  for (auto const* text : {"2 nodes x 2 L20 48 GB", "2 nodes with 2 L20 48GB each", "2 x 2 x L20-48G",
                           "2 nodes x 2 GPUs L20 48GB", "2×2 L20 48GB", "2xL20 48GB + 2x L20 48GB"}) {
    INFO(text);
    auto inv = clusterkit::parse_gpu_inventory(text);
    REQUIRE(inv.nodes.size() == 2);
    CHECK(inv.nodes[1].gpu_count == 2);
    CHECK(inv.nodes[1].gpu_model == "L20");
    CHECK(inv.nodes[1].memory_bytes == 46068 * MiB);
  }
  CHECK(clusterkit::parse_gpu_inventory("8 A10 24G").nodes[0].gpu_count == 8);  // the seed's wording
  auto a10 = clusterkit::parse_gpu_inventory("8x A10 24GB");
  REQUIRE(a10.nodes.size() == 1);
  CHECK(a10.nodes[0].gpu_count == 8);
  CHECK(a10.nodes[0].memory_bytes == 23028 * MiB);
  auto h100 = clusterkit::parse_gpu_inventory("4x H100 80GB");
  REQUIRE(h100.nodes.size() == 1);
  CHECK(h100.nodes[0].gpu_count == 4);
  CHECK(h100.nodes[0].memory_bytes == 81559 * MiB);
  CHECK(clusterkit::parse_gpu_inventory("H100").nodes[0].memory_bytes == 81559 * MiB);
  CHECK(clusterkit::parse_gpu_inventory("2 RTX 4090").nodes[0].memory_bytes == 24564 * MiB);
  CHECK(clusterkit::parse_gpu_inventory("2x4 A10 24GB").total_gpus() == 8);
  auto exact = clusterkit::parse_gpu_inventory("2x2 L20 46068MiB");
  CHECK(exact.nodes[0].memory_bytes == 46068 * MiB);
  CHECK(clusterkit::parse_gpu_inventory("1x Foo 48GiB").nodes[0].memory_bytes == 48 * GiB);
  // Unknown card, nominal GB: the lower, decimal reading.
  auto unknown = clusterkit::parse_gpu_inventory("4 nodes x 8 MI300X 192GB");
  CHECK(unknown.total_gpus() == 32);
  CHECK(unknown.nodes[0].gpu_model == "MI300X");
  CHECK(unknown.nodes[0].memory_bytes == 192000000000ull);
  // A size that is not the card's: taken as given.
  CHECK(clusterkit::parse_gpu_inventory("H100 94GB").nodes[0].memory_bytes == 94000000000ull);

  for (auto const* bad : {"", "2x2", "2x2 48GB", "A100", "2x2x2 L20 48GB", "L20 48", "0x L20 48GB", "2x2 Foo"}) {
    INFO(bad);
    try {
      clusterkit::parse_gpu_inventory(bad);
      FAIL("accepted");
    } catch (Error const& e) {
      CHECK(e.code() == errc::invalid_argument);
      CHECK(std::string(e.what()).find("2 nodes x 2 L20 48GB") != std::string::npos);
    }
  }
}

TEST_CASE("vLLM's layer split and TP rules", "[planner]") {
  using V64 = std::vector<std::uint64_t>;
  CHECK(clusterkit::pipeline_partition(80, 1) == V64{80});
  CHECK(clusterkit::pipeline_partition(80, 2) == V64{40, 40});
  CHECK(clusterkit::pipeline_partition(80, 3) == V64{27, 27, 26});
  CHECK(clusterkit::pipeline_partition(10, 4) == V64{2, 3, 3, 2});
  CHECK(clusterkit::pipeline_partition(81, 4) == V64{20, 20, 21, 20});
  CHECK(clusterkit::pipeline_partition(83, 4) == V64{21, 21, 21, 20});

  auto f = clusterkit::model_facts_from_config(qwen_config());
  CHECK(clusterkit::tensor_parallel_refusal(f, 1).empty());
  CHECK(clusterkit::tensor_parallel_refusal(f, 8).empty());
  CHECK(clusterkit::tensor_parallel_refusal(f, 16).empty());  // 16 KV ranks: 8 heads replicated twice
  CHECK(clusterkit::tensor_parallel_refusal(f, 3) == "64 attention heads are not divisible by TP=3");
  auto gqa = f;
  gqa.num_attention_heads = 48;
  gqa.num_key_value_heads = 12;
  CHECK(clusterkit::tensor_parallel_refusal(gqa, 8).find("12 KV heads and TP=8") == 0);
  auto awq = f;
  awq.quantized = true;
  awq.quant_method = "awq";
  awq.quantization_config = {{"quant_method", "awq"}, {"group_size", 128}, {"bits", 4}};
  // Qwen's AWQ group size 128 with the unpadded intermediate size (29568 =
  // 231 x 128): any TP > 1 leaves a partial group per rank, which is why the
  // published AWQ checkpoint pads to 29696.
  CHECK(clusterkit::tensor_parallel_refusal(awq, 1).empty());
  CHECK(clusterkit::tensor_parallel_refusal(awq, 2) ==
        "with AWQ group size 128, intermediate_size / TP = 14784 is not a multiple of the group size");
  auto padded = awq;
  padded.intermediate_size = 29696;
  CHECK(clusterkit::tensor_parallel_refusal(padded, 8).empty());

  CHECK(clusterkit::kv_cache_dtype_bytes(f, "auto") == 2);
  CHECK(clusterkit::kv_cache_dtype_bytes(f, "fp8_e5m2") == 1);
  CHECK_THROWS_AS(clusterkit::kv_cache_dtype_bytes(f, "int3"), Error);
}

TEST_CASE("Qwen2.5-72B-Instruct: inspection of 37 shards is exact", "[planner][qwen]") {
  auto const& f = qwen();
  CHECK(total_params == 72706203648ull);  // "about 72.7 B"
  CHECK(f.parameter_count == total_params);
  CHECK(f.total_tensor_bytes == 2 * total_params);  // 145,412,407,296 bytes: "about 145 GB"
  CHECK(f.bytes_per_dtype.at("BF16") == 145412407296ull);
  CHECK(f.shards.size() == 37);
  CHECK(f.tensor_count() == 2 + 80 * 12 + 1);
  CHECK(f.num_key_value_heads == 8);
  CHECK(f.head_dim == 128);
  CHECK_FALSE(f.tie_word_embeddings);
  CHECK(f.warnings.empty());
  // 2 (K,V) x 80 layers x 8 heads x 128 x 2 bytes = 320 KiB.
  CHECK(f.kv_bytes_per_token() == 327680);
  std::uint64_t expected_sizes = 0;
  for (auto const& s : f.shards) {
    CHECK(s.file_size == s.expected_file_size);
    expected_sizes += s.data_bytes;
  }
  CHECK(expected_sizes == 145412407296ull);

  // The estimate from config.json alone agrees with the headers.
  auto est = clusterkit::model_facts_from_config(qwen_config());
  clusterkit::estimate_tensors_from_config(est);
  CHECK(est.parameter_count == total_params);
  CHECK(est.total_tensor_bytes == f.total_tensor_bytes);
}

TEST_CASE("Qwen2.5-72B on 2 nodes x 2 L20 48 GB: TP=2 PP=2, the seed's layout", "[planner][qwen]") {
  auto const& f = qwen();
  auto plan = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("2 nodes x 2 L20 48GB"));
  show(plan);
  auto const* rec = plan.recommended_layout();
  REQUIRE(rec != nullptr);
  CHECK(rec->tp == 2);
  CHECK(rec->pp == 2);
  CHECK(rec->fits);
  CHECK(rec->uses_all_gpus);
  CHECK(rec->nodes == 2);
  CHECK_FALSE(rec->pp_within_node);
  CHECK(&plan.layouts[0] == rec);
  CHECK(plan.max_model_len == 32768);
  CHECK(plan.max_num_batched_tokens == 2048);
  CHECK(plan.max_num_seqs == 256);
  CHECK(rec->vllm_args == std::vector<std::string>{"--tensor-parallel-size", "2", "--pipeline-parallel-size", "2",
                                                   "--max-model-len", "32768", "--gpu-memory-utilization", "0.9"});

  // Exact weights per stage: 40 layers each; embeddings on stage 0, lm_head
  // and the final norm on stage 1.
  REQUIRE(rec->stages.size() == 2);
  auto const w0 = 40 * layer_bytes_per_gpu(2) + vocab_bytes_per_gpu(2);
  auto const w1 = 40 * layer_bytes_per_gpu(2) + vocab_bytes_per_gpu(2) + 2 * H;
  CHECK(rec->stages[0].weight_bytes == w0);
  CHECK(rec->stages[1].weight_bytes == w1);
  CHECK(w1 == 36353769472ull);  // 33.86 GiB
  CHECK(rec->weight_bytes_per_gpu == w1);
  // KV per token per GPU: 2 x 40 layers x 4 heads x 128 x 2 bytes.
  CHECK(rec->kv_bytes_per_token_per_gpu == 81920);
  auto const budget = static_cast<std::uint64_t>(46068 * MiB * 0.9);
  CHECK(rec->stages[1].budget_bytes == budget);
  CHECK(rec->stages[0].reserve_bytes == reserve(2, 2048, 256, false));
  CHECK(rec->stages[1].reserve_bytes == reserve(2, 2048, 256, true));
  auto const t0 = tokens_for(budget, w0, reserve(2, 2048, 256, false), 81920);
  auto const t1 = tokens_for(budget, w1, reserve(2, 2048, 256, true), 81920);
  CHECK(rec->stages[0].kv_cache_tokens == t0);
  CHECK(rec->stages[1].kv_cache_tokens == t1);
  CHECK(rec->kv_cache_tokens == std::min(t0, t1));
  CHECK(rec->kv_cache_tokens == 64816);
  CHECK(rec->bottleneck_stage == 1);
  CHECK(rec->max_concurrent_sequences == 1);  // of 32768 tokens

  // The others, and why they lost.
  CHECK(plan.layouts.size() == 6);
  auto const& tp2pp1 = find(plan, 2, 1);
  CHECK_FALSE(tp2pp1.fits);
  CHECK(tp2pp1.weight_bytes_per_gpu == 80 * layer_bytes_per_gpu(2) + 2 * vocab_bytes_per_gpu(2) + 2 * H);
  CHECK(tp2pp1.reason.find("does not fit by") == 0);
  CHECK(tp2pp1.kv_cache_tokens == 0);
  // One GPU holds everything: exactly the safetensors total.
  CHECK(find(plan, 1, 1).weight_bytes_per_gpu == f.total_tensor_bytes);
  auto const& tp1pp4 = find(plan, 1, 4);
  CHECK(tp1pp4.pp_within_node);
  CHECK_FALSE(tp1pp4.allowed);
  CHECK(tp1pp4.reason.find("PP=4 on 2 nodes puts several pipeline stages on one node") == 0);
  auto const& tp1pp2 = find(plan, 1, 2);
  CHECK_FALSE(tp1pp2.fits);
  REQUIRE(plan.rejected.size() == 1);  // TP=4 would need both nodes
  CHECK(plan.rejected[0].tp == 4);
  CHECK(plan.rejected[0].reason.find("TP=4 would span nodes (at most 2 GPUs per node)") == 0);

  // The JSON the CLI prints.
  auto j = plan.to_json();
  CHECK(j["recommended"]["tp"] == 2);
  CHECK(j["layouts"].size() == 6);
  for (auto const& l : j["layouts"])
    for (auto const* key : {"tp", "pp", "weight_bytes_per_gpu", "kv_bytes_per_token_per_gpu", "kv_cache_tokens", "fits",
                            "reason"})
      CHECK(l.contains(key));
  CHECK(j["layouts"][0]["kv_cache_tokens"] == 64816);
  CHECK(j["shortfall"].is_null());

  // PP within a node allowed: TP=1 PP=4 is then a candidate, but TP=2 still wins.
  clusterkit::PlanOptions within;
  within.allow_pp_within_node = true;
  auto p2 = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("2 nodes x 2 L20 48GB"), within);
  CHECK(p2.recommended_layout()->tp == 2);
  CHECK(find(p2, 1, 4).allowed);
  CHECK(find(p2, 1, 4).fits);

  // FP8 KV cache and a shorter context: twice the tokens per byte.
  clusterkit::PlanOptions fp8;
  fp8.kv_cache_dtype = "fp8";
  fp8.max_model_len = 8192;
  fp8.sequence_length = 2048;
  auto p3 = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("2 nodes x 2 L20 48GB"), fp8);
  auto const* r3 = p3.recommended_layout();
  REQUIRE(r3 != nullptr);
  CHECK(r3->kv_bytes_per_token_per_gpu == 40960);
  CHECK(r3->kv_cache_tokens == tokens_for(budget, w1, reserve(2, 2048, 256, true), 40960));
  CHECK(r3->max_concurrent_sequences == r3->kv_cache_tokens / 2048);
  CHECK(r3->vllm_args.back() == "fp8");
}

TEST_CASE("Qwen2.5-72B on 8x A10 24 GB: one node of 8 (TP=8), or 2 nodes of 4 (TP=4 PP=2)", "[planner][qwen]") {
  auto const& f = qwen();
  auto const budget = static_cast<std::uint64_t>(23028 * MiB * 0.9);

  auto one = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("8x A10 24GB"));
  show(one);
  auto const* rec = one.recommended_layout();
  REQUIRE(rec != nullptr);
  CHECK(rec->tp == 8);
  CHECK(rec->pp == 1);
  auto const w = 80 * layer_bytes_per_gpu(8) + 2 * vocab_bytes_per_gpu(8) + 2 * H;
  CHECK(rec->weight_bytes_per_gpu == w);
  CHECK(w == 18178859008ull);  // 16.93 GiB
  CHECK(rec->kv_bytes_per_token_per_gpu == 40960);  // one KV head per GPU
  CHECK(rec->kv_cache_tokens == tokens_for(budget, w, reserve(8, 2048, 256, true), 40960));
  CHECK(rec->kv_cache_tokens == 46240);
  CHECK(rec->max_concurrent_sequences == 1);
  // TP 3, 5, 6, 7 are refused by the head count.
  REQUIRE(one.rejected.size() == 4);
  CHECK(one.rejected[0].tp == 3);
  CHECK(one.rejected[0].reason == "vLLM refuses TP=3: 64 attention heads are not divisible by TP=3");
  // TP=4 PP=2 inside one node: listed, not allowed.
  CHECK_FALSE(find(one, 4, 2).allowed);
  CHECK(find(one, 4, 1).reason.find("does not fit by") == 0);

  auto two = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("2 nodes x 4 A10 24GB"));
  show(two);
  auto const* r2 = two.recommended_layout();
  REQUIRE(r2 != nullptr);
  CHECK(r2->tp == 4);
  CHECK(r2->pp == 2);
  auto const w1 = 40 * layer_bytes_per_gpu(4) + vocab_bytes_per_gpu(4) + 2 * H;
  CHECK(r2->weight_bytes_per_gpu == w1);
  CHECK(r2->kv_bytes_per_token_per_gpu == 40960);  // 40 layers x 2 heads
  CHECK(r2->kv_cache_tokens == tokens_for(budget, w1, reserve(4, 2048, 256, true), 40960));
  CHECK(r2->kv_cache_tokens == 45040);
  // TP=8 would span the two nodes.
  bool spans = false;
  for (auto const& r : two.rejected)
    if (r.tp == 8) spans = r.reason.find("would span nodes") != std::string::npos;
  CHECK(spans);
}

TEST_CASE("Qwen2.5-72B on 4x H100 80 GB: TP=4 in one node", "[planner][qwen]") {
  auto const& f = qwen();
  auto plan = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("4x H100 80GB"));
  show(plan);
  auto const* rec = plan.recommended_layout();
  REQUIRE(rec != nullptr);
  CHECK(rec->tp == 4);
  CHECK(rec->pp == 1);
  CHECK(rec->fits);
  CHECK(plan.max_num_batched_tokens == 8192);  // vLLM's default on >= 70 GiB GPUs other than A100
  CHECK(plan.max_num_seqs == 1024);
  auto const w = 80 * layer_bytes_per_gpu(4) + 2 * vocab_bytes_per_gpu(4) + 2 * H;
  CHECK(rec->weight_bytes_per_gpu == w);
  CHECK(rec->kv_bytes_per_token_per_gpu == 81920);  // 2 x 80 layers x 2 heads x 128 x 2 bytes
  auto const budget = static_cast<std::uint64_t>(81559 * MiB * 0.9);
  CHECK(rec->kv_cache_tokens == tokens_for(budget, w, reserve(4, 8192, 1024, true), 81920));
  CHECK(rec->kv_cache_tokens == 451616);
  CHECK(rec->max_concurrent_sequences == 13);
  auto const& tp2 = find(plan, 2, 1);
  CHECK_FALSE(tp2.fits);
  CHECK(tp2.kv_cache_tokens < 32768);
  CHECK(tp2.reason.find("the KV cache holds") != std::string::npos);
}

TEST_CASE("Qwen2.5-72B on 2 nodes x 2 A10: nothing fits, and what would", "[planner][qwen]") {
  auto const& f = qwen();
  auto plan = clusterkit::plan_deployment(f, clusterkit::parse_gpu_inventory("2 nodes x 2 A10 24GB"));
  show(plan);
  CHECK(plan.recommended_layout() == nullptr);
  REQUIRE(plan.shortfall.has_value());
  auto const& s = *plan.shortfall;
  CHECK(s.best_tp == 2);
  CHECK(s.best_pp == 2);
  auto const budget = static_cast<std::uint64_t>(23028 * MiB * 0.9);
  auto const w1 = 40 * layer_bytes_per_gpu(2) + vocab_bytes_per_gpu(2) + 2 * H;
  // Weights and reserve exceed the budget; plus 32768 tokens of KV cache.
  CHECK(s.missing_bytes_per_gpu == w1 + reserve(2, 2048, 256, true) + 32768ull * 81920 - budget);
  CHECK(s.max_model_len_that_fits == 0);
  // Same nodes, more of them: 5 nodes x 2 = TP=2 PP=5 (4 nodes hold only
  // 27376 tokens at TP=2 PP=4).
  CHECK(s.nodes_needed == 5);
  CHECK(s.gpus_needed == 10);
  CHECK(s.nodes_needed_tp == 2);
  CHECK(s.nodes_needed_pp == 5);
  REQUIRE(s.quantized.size() == 2);
  CHECK(s.quantized[0].name == "fp8");
  CHECK(s.quantized[1].name == "awq-int4");
  CHECK(s.quantized[1].weight_bytes < s.quantized[0].weight_bytes);
  CHECK(s.quantized[0].weight_bytes < f.total_tensor_bytes);
  CHECK(s.quantized[1].tp == 2);
  CHECK(s.quantized[1].pp == 2);
  CHECK_FALSE(s.suggestions.empty());
  auto j = plan.to_json();
  CHECK(j["recommended"].is_null());
  CHECK(j["shortfall"]["nodes_needed"] == 5);
}

TEST_CASE("GPU inventories with negative, non-finite or absurd numbers are refused, naming them", "[planner][inventory]") {
  auto error_of = [](std::string const& text) {
    try {
      clusterkit::parse_gpu_inventory(text);
    } catch (Error const& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(error_of("2 nodes x 2 L20 -5GB"), Catch::Matchers::Contains("memory '-5GB' is negative"));
  CHECK_THAT(error_of("2 nodes x 2 L20 nanGB"), Catch::Matchers::Contains("memory 'nanGB' is not a size"));
  CHECK_THAT(error_of("2 nodes x 2 L20 infGB"), Catch::Matchers::Contains("memory 'infGB' is not a size"));
  CHECK_THAT(error_of("2 nodes x 2 L20 1e300GB"), Catch::Matchers::Contains("memory '1e300GB' is not a size"));
  CHECK_THAT(error_of("2 nodes x -2 L20 48GB"), Catch::Matchers::Contains("'-2' is not a count"));
  CHECK_THAT(error_of("99999999999 nodes x 2 L20 48GB"), Catch::Matchers::Contains("count 99999999999 is too large"));
  CHECK_THAT(error_of("2x L20 0GB"), Catch::Matchers::Contains("memory '0GB' is not a size"));
  CHECK_THAT(error_of("0x L20 48GB"), Catch::Matchers::Contains("a count of 0"));
  // Variants with a dash are still names with a size.
  CHECK(clusterkit::parse_gpu_inventory("2x A100-80GB").nodes[0].gpu_model == "A100");
}

TEST_CASE("planner input errors", "[planner]") {
  auto const& f = qwen();
  auto gpus = clusterkit::parse_gpu_inventory("2x2 L20 48GB");
  clusterkit::PlanOptions bad;
  bad.gpu_memory_utilization = 1.5;
  CHECK_THROWS_AS(clusterkit::plan_deployment(f, gpus, bad), Error);
  CHECK_THROWS_AS(clusterkit::plan_deployment(f, clusterkit::GpuInventory{}), Error);
  // Facts from config.json alone: the tensors are estimated, and the plan says so.
  auto no_tensors = clusterkit::model_facts_from_config(qwen_config());
  auto from_config = clusterkit::plan_deployment(no_tensors, gpus);
  REQUIRE(from_config.recommended_layout());
  CHECK(from_config.recommended_layout()->tp == 2);
  CHECK(from_config.recommended_layout()->pp == 2);
  REQUIRE_FALSE(from_config.notes.empty());
  CHECK(from_config.notes.front().find("estimated from config.json") != std::string::npos);
  // A config the estimate cannot describe is refused, naming what to do instead.
  auto mla = no_tensors;
  mla.kv_lora_rank = 512;  // DeepSeek's latent attention: not estimated from a config
  try {
    clusterkit::plan_deployment(mla, gpus);
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("inspect the downloaded model folder") != std::string::npos);
  }
}
