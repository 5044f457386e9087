#include "clusterkit/planner.hpp"
#include "clusterkit/format.hpp"
#include "core/text.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>

namespace clusterkit {

using nlohmann::json;

namespace {

[[noreturn]] void fail(errc code, std::string const& message) { throw Error(make_error_code(code), message); }

using detail::lower;

constexpr std::uint64_t GiB = 1ull << 30;
constexpr std::uint64_t MiB = 1ull << 20;

std::string gib_signed(std::int64_t bytes) {
  return bytes < 0 ? "-" + format_gib(static_cast<std::uint64_t>(-bytes)) : format_gib(static_cast<std::uint64_t>(bytes));
}

std::string format_fraction(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return b ? a / b + (a % b != 0) : a; }

/// ceil(a * num / den) without overflowing a * num (num and den are head
/// counts: small).
std::uint64_t mul_div_ceil(std::uint64_t a, std::uint64_t num, std::uint64_t den) {
  auto const q = a / den, rem = a % den;
  return q * num + ceil_div(rem * num, den);
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t m) { return m ? ceil_div(v, m) * m : v; }

// ---------------------------------------------------------------------------
// Known GPUs: memory.total as nvidia-smi prints it (ECC on where the card
// has it). Users can always give the exact figure ("46068MiB").
// ---------------------------------------------------------------------------

struct KnownGpu {
  char const* key;
  double nominal_gb;
  std::uint64_t mib;
};

constexpr KnownGpu known_gpus[] = {
    {"H100", 80, 81559}, {"H800", 80, 81559}, {"H200", 141, 143771}, {"A100", 80, 81920}, {"A100", 40, 40960},
    {"A800", 80, 81920}, {"A10", 24, 23028},  {"A10G", 24, 23028},   {"L20", 48, 46068},  {"L40", 48, 46068},
    {"L40S", 48, 46068}, {"L4", 24, 23034},   {"4090", 24, 24564},   {"T4", 16, 15360},
};

std::vector<std::string> name_tokens(std::string_view model) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : model) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      cur.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace

std::optional<std::uint64_t> known_gpu_memory_bytes(std::string_view gpu_model, double nominal_gb) {
  auto tokens = name_tokens(gpu_model);
  std::vector<KnownGpu const*> matches;
  for (auto const& k : known_gpus)
    if (std::find(tokens.begin(), tokens.end(), k.key) != tokens.end()) matches.push_back(&k);
  if (nominal_gb > 0) {
    for (auto const* k : matches)
      if (std::fabs(k->nominal_gb - nominal_gb) < 0.5) return k->mib * MiB;
    return std::nullopt;
  }
  if (matches.size() == 1) return matches.front()->mib * MiB;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Inventory
// ---------------------------------------------------------------------------

unsigned GpuInventory::total_gpus() const noexcept {
  unsigned n = 0;
  for (auto const& node : nodes) n += node.gpu_count;
  return n;
}

unsigned GpuInventory::max_gpus_per_node() const noexcept {
  unsigned n = 0;
  for (auto const& node : nodes) n = std::max(n, node.gpu_count);
  return n;
}

std::uint64_t GpuInventory::min_memory_bytes() const noexcept {
  std::uint64_t m = 0;
  for (auto const& node : nodes)
    if (m == 0 || node.memory_bytes < m) m = node.memory_bytes;
  return m;
}

std::string GpuInventory::describe() const {
  // Group consecutive identical nodes: "2 nodes x 2 L20 (44.99 GiB)".
  std::string out;
  for (std::size_t i = 0; i < nodes.size();) {
    std::size_t j = i;
    while (j < nodes.size() && nodes[j].gpu_count == nodes[i].gpu_count && nodes[j].gpu_model == nodes[i].gpu_model &&
           nodes[j].memory_bytes == nodes[i].memory_bytes)
      ++j;
    if (!out.empty()) out += " + ";
    auto count = j - i;
    out += std::to_string(count) + (count == 1 ? " node x " : " nodes x ") + std::to_string(nodes[i].gpu_count) + " " +
           nodes[i].gpu_model + " (" + format_gib(nodes[i].memory_bytes) + ")";
    i = j;
  }
  return out.empty() ? "no GPUs" : out;
}

json GpuInventory::to_json() const {
  json j;
  j["total_gpus"] = total_gpus();
  j["description"] = describe();
  auto& list = j["nodes"] = json::array();
  for (auto const& n : nodes)
    list.push_back({{"name", n.name},
                    {"gpu_count", n.gpu_count},
                    {"gpu_model", n.gpu_model},
                    {"memory_bytes", n.memory_bytes},
                    {"memory_source", n.memory_source}});
  return j;
}

namespace {

constexpr char const* inventory_forms =
    "write it like '2 nodes x 2 L20 48GB', '2x2 L20 48GB', '8x A10 24GB', '4x H100 80GB' or '2x2 L20 46068MiB'";

bool is_word(std::string_view w, std::initializer_list<char const*> words) {
  auto l = lower(w);
  for (auto const* x : words)
    if (l == x) return true;
  return false;
}

void parse_group(std::string_view group, std::string_view whole, GpuInventory& inv) {
  auto bad = [&](std::string const& why) {
    fail(errc::invalid_argument, "could not read the GPU inventory '" + std::string(whole) + "': " + why + "; " +
                                     inventory_forms);
  };
  std::string s(group);
  // "×" (UTF-8) reads as 'x'.
  for (std::size_t p; (p = s.find("\xC3\x97")) != std::string::npos;) s.replace(p, 2, " x ");
  std::size_t pos = 0;
  auto skip_ws = [&] {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  };
  auto peek_word = [&](std::size_t at) {
    std::size_t e = at;
    while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
    return std::string_view(s).substr(at, e - at);
  };
  enum class Role { unknown, nodes, gpus };
  std::vector<std::pair<std::uint64_t, Role>> counts;
  for (;;) {
    skip_ws();
    if (pos >= s.size()) break;
    if (std::isdigit(static_cast<unsigned char>(s[pos]))) {
      std::size_t e = pos;
      while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      // A count ends at a space, an 'x' separator or the end; "48GB",
      // "2.5" or "4090" (as in "RTX 4090") are not counts.
      bool const is_count = e == s.size() || std::isspace(static_cast<unsigned char>(s[e])) || s[e] == 'x' ||
                            s[e] == 'X' || s[e] == '*';
      if (!is_count) break;
      std::uint64_t n = 0;
      for (std::size_t i = pos; i < e; ++i) {
        n = n * 10 + static_cast<std::uint64_t>(s[i] - '0');
        if (n > 1000000) bad("count " + s.substr(pos, e - pos) + " is too large");
      }
      pos = e;
      skip_ws();
      Role role = Role::unknown;
      auto w = peek_word(pos);
      if (is_word(w, {"node", "nodes", "server", "servers", "host", "hosts", "machine", "machines"})) {
        role = Role::nodes;
        pos += w.size();
      } else if (is_word(w, {"gpu", "gpus", "card", "cards"})) {
        role = Role::gpus;
        pos += w.size();
      }
      skip_ws();
      // The separator: "2x2", "2 x 2", "2xL20", "2 * 4". No GPU model starts
      // with an x.
      if (pos < s.size() && (s[pos] == 'x' || s[pos] == 'X' || s[pos] == '*')) ++pos;
      counts.emplace_back(n, role);
      continue;
    }
    auto w = peek_word(pos);
    if (!w.empty() && is_word(w, {"with", "of", "each", "per", "node", "nodes", "gpu", "gpus", "and"}) &&
        (pos + w.size() == s.size() || !std::isalnum(static_cast<unsigned char>(s[pos + w.size()])))) {
      // "2 nodes with 2 L20", "2 nodes of 4 x A10", "per node"
      if (is_word(w, {"gpu", "gpus"}) && !counts.empty()) counts.back().second = Role::gpus;
      pos += w.size();
      continue;
    }
    break;
  }
  std::string rest = s.substr(pos);
  // Trailing filler: "each", "per gpu", "memory".
  auto trim = [](std::string& t) {
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    std::size_t b = 0;
    while (b < t.size() && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
    t.erase(0, b);
  };
  trim(rest);
  for (bool again = true; again;) {
    again = false;
    for (auto const* tail : {" each", " per gpu", " per card", " memory", " vram", " per node", " gpus", " gpu"}) {
      std::string t = tail;
      if (rest.size() > t.size() && lower(rest.substr(rest.size() - t.size())) == t) {
        rest.erase(rest.size() - t.size());
        trim(rest);
        again = true;
      }
    }
  }
  if (rest.empty()) bad("no GPU model named");
  if (rest[0] == '-' || rest[0] == '+')
    bad("'" + rest.substr(0, rest.find(' ')) + "' is not a count (counts are whole numbers from 1)");

  // Memory at the end: "48GB", "48 GB", "-48G", "46068MiB", "0.5TB".
  std::optional<std::uint64_t> memory;
  std::string memory_source;
  double nominal_gb = 0;
  {
    std::size_t e = rest.size();
    std::size_t u = e;
    while (u > 0 && std::isalpha(static_cast<unsigned char>(rest[u - 1]))) --u;
    auto unit = lower(std::string_view(rest).substr(u, e - u));
    std::size_t v = u;
    while (v > 0 && rest[v - 1] == ' ') --v;
    std::size_t num_end = v;
    while (v > 0 && (std::isdigit(static_cast<unsigned char>(rest[v - 1])) || rest[v - 1] == '.')) --v;
    bool unit_ok = unit == "gb" || unit == "g" || unit == "gib" || unit == "gi" || unit == "mib" || unit == "mb" ||
                   unit == "m" || unit == "tb" || unit == "tib";
    bool boundary = v == 0 || rest[v - 1] == ' ' || rest[v - 1] == '-' || rest[v - 1] == '_' || rest[v - 1] == ',';
    // "L20-48GB" names a variant; "L20 -5GB" is a negative size.
    if (unit_ok && num_end > v && v > 1 && rest[v - 1] == '-' && rest[v - 2] == ' ')
      bad("memory '" + rest.substr(v - 1) + "' is negative");
    if (unit_ok && num_end > v && boundary) {
      auto number = rest.substr(v, num_end - v);
      char* endp = nullptr;
      double value = std::strtod(number.c_str(), &endp);
      if (endp != number.c_str() + number.size() || !(value > 0) || value > 1e7)
        bad("memory '" + rest.substr(v) + "' is not a size (a number above 0 and at most 1e7 in its unit: GB, GiB, MiB or TB)");
      if (v > 0) {
        rest.erase(v);
        while (!rest.empty() && (rest.back() == ' ' || rest.back() == '-' || rest.back() == '_')) rest.pop_back();
      } else {
        rest.clear();
      }
      if (unit == "gib" || unit == "gi") {
        memory = static_cast<std::uint64_t>(value * static_cast<double>(GiB));
        memory_source = "given as " + number + " GiB";
      } else if (unit == "mib" || unit == "m") {
        memory = static_cast<std::uint64_t>(value * static_cast<double>(MiB));
        memory_source = "given as " + number + " MiB";
      } else if (unit == "tib") {
        memory = static_cast<std::uint64_t>(value * static_cast<double>(GiB) * 1024);
        memory_source = "given as " + number + " TiB";
      } else if (unit == "mb") {
        memory = static_cast<std::uint64_t>(value * 1e6);
        memory_source = "given as " + number + " MB";
      } else {
        nominal_gb = unit == "tb" ? value * 1000 : value;
      }
    } else {
      // A last word that tries to be a size and is not one ("nanGB",
      // "1e300GB", "-5GB"): refuse it rather than read it as part of the name.
      auto space = rest.rfind(' ');
      auto last = lower(std::string_view(rest).substr(space == std::string::npos ? 0 : space + 1));
      bool size_unit = false;
      for (std::string_view u : {"gib", "gb", "mib", "mb", "tib", "tb"})
        if (last.size() > u.size() && last.ends_with(u)) size_unit = true;
      bool const looks_numeric = std::any_of(last.begin(), last.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
                                 last.starts_with("nan") || last.starts_with("inf") || last.starts_with("-");
      if (size_unit && looks_numeric && space != std::string::npos)
        bad("memory '" + rest.substr(space + 1) + "' is not a size (a number above 0 and at most 1e7 in its unit: GB, GiB, MiB or TB)");
      // A bare number at the end ("L20 48") has no unit: say so.
      std::size_t d = rest.size();
      while (d > 0 && std::isdigit(static_cast<unsigned char>(rest[d - 1]))) --d;
      if (d < rest.size() && d > 0 && rest[d - 1] == ' ') {
        auto number = rest.substr(d);
        bool model_number = std::any_of(std::begin(known_gpus), std::end(known_gpus),
                                        [&](KnownGpu const& k) { return number == k.key; });
        if (!model_number) bad("memory '" + number + "' needs a unit (GB, GiB or MiB)");
      }
    }
  }
  if (rest.empty()) bad("no GPU model named (only a memory size)");
  std::string model = rest;
  if (!memory) {
    if (auto known = known_gpu_memory_bytes(model, nominal_gb)) {
      memory = *known;
      memory_source = "nvidia-smi total of " + model + (nominal_gb > 0 ? " " + format_fraction(nominal_gb) + "GB" : "") +
                      ": " + std::to_string(*known / MiB) + " MiB";
    } else if (nominal_gb > 0) {
      memory = static_cast<std::uint64_t>(nominal_gb * 1e9);
      memory_source = format_fraction(nominal_gb) + " GB taken as " + format_fraction(nominal_gb) +
                      "e9 bytes (pass MiB from nvidia-smi for the exact figure)";
    } else {
      bad("no memory size for '" + model + "' (add it, e.g. '" + model + " 48GB')");
    }
  }
  if (*memory < 256 * MiB) bad("memory " + std::to_string(*memory) + " bytes per GPU is too small");

  std::uint64_t node_count = 1, per_node = 1;
  if (counts.size() == 1) {
    (counts[0].second == Role::nodes ? node_count : per_node) = counts[0].first;
  } else if (counts.size() == 2) {
    if (counts[0].second == Role::gpus || counts[1].second == Role::nodes) {
      per_node = counts[0].first;
      node_count = counts[1].first;
    } else {
      node_count = counts[0].first;
      per_node = counts[1].first;
    }
  } else if (counts.size() > 2) {
    bad("more than two counts (nodes x GPUs per node)");
  }
  if (node_count == 0 || per_node == 0) bad("a count of 0");
  if (per_node > 64) bad(std::to_string(per_node) + " GPUs in one node is more than any server holds");
  if (node_count + inv.nodes.size() > 4096) bad("more than 4096 nodes");
  for (std::uint64_t i = 0; i < node_count; ++i) {
    GpuNode node;
    node.name = "node" + std::to_string(inv.nodes.size() + 1);
    node.gpu_count = static_cast<unsigned>(per_node);
    node.gpu_model = model;
    node.memory_bytes = *memory;
    node.memory_source = memory_source;
    inv.nodes.push_back(std::move(node));
  }
}

}  // namespace

GpuInventory parse_gpu_inventory(std::string_view text) {
  GpuInventory inv;
  std::size_t start = 0;
  bool any = false;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '+' || text[i] == ',' || text[i] == ';') {
      auto part = text.substr(start, i - start);
      if (part.find_first_not_of(" \t\r\n") != std::string_view::npos) {
        parse_group(part, text, inv);
        any = true;
      }
      start = i + 1;
    }
  }
  if (!any)
    fail(errc::invalid_argument, std::string("the GPU inventory is empty; ") + inventory_forms);
  return inv;
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

std::vector<std::uint64_t> pipeline_partition(std::uint64_t layers, unsigned pp) {
  if (pp == 0) return {};
  std::vector<std::uint64_t> parts(pp, layers / pp);
  auto remaining = layers % pp;
  // vLLM (get_pp_indices): the remainder goes to the stages before the
  // last, starting from the second to last.
  for (std::uint64_t i = 2; i < remaining + 2; ++i) parts[pp - i] += 1;
  return parts;
}

namespace {

std::uint64_t quant_group_size(ModelFacts const& f) {
  if (!f.quantization_config.is_object()) return 0;
  auto it = f.quantization_config.find("group_size");
  if (it != f.quantization_config.end() && it->is_number_integer() && it->get<std::int64_t>() > 0)
    return it->get<std::uint64_t>();
  return 0;
}

std::string tp_refusal(ModelFacts const& f, unsigned tp, std::uint64_t group_size, std::string_view quant_name) {
  auto const h = f.num_attention_heads, kv = f.num_key_value_heads;
  if (h % tp)
    return std::to_string(h) + " attention heads are not divisible by TP=" + std::to_string(tp);
  if (!f.kv_lora_rank && kv && kv % tp && tp % kv)
    return std::to_string(kv) + " KV heads and TP=" + std::to_string(tp) +
           ": vLLM needs one to divide the other (KV heads split, or replicated when TP > KV heads)";
  if (f.intermediate_size && f.intermediate_size % tp)
    return "intermediate_size " + std::to_string(f.intermediate_size) + " is not divisible by TP=" +
           std::to_string(tp);
  if (f.vocab_size && round_up(f.vocab_size, 64) % tp)
    return "the vocabulary padded to " + std::to_string(round_up(f.vocab_size, 64)) + " is not divisible by TP=" +
           std::to_string(tp);
  if (group_size && f.intermediate_size && (f.intermediate_size / tp) % group_size)
    return "with " + std::string(quant_name) + " group size " + std::to_string(group_size) + ", intermediate_size / TP = " +
           std::to_string(f.intermediate_size / tp) + " is not a multiple of the group size";
  return {};
}

}  // namespace

std::string tensor_parallel_refusal(ModelFacts const& facts, unsigned tp) {
  if (tp == 0) return "TP must be at least 1";
  auto method = facts.quant_method.empty() ? std::string("quantization") : upper(facts.quant_method);
  return tp_refusal(facts, tp, quant_group_size(facts), method);
}

std::uint64_t kv_cache_dtype_bytes(ModelFacts const& facts, std::string_view name) {
  auto n = lower(name);
  if (n.empty() || n == "auto") return facts.dtype_bytes();
  if (n.starts_with("fp8")) return 1;
  if (n == "bfloat16" || n == "float16" || n == "half" || n == "bf16" || n == "fp16") return 2;
  if (n == "float32" || n == "float" || n == "fp32") return 4;
  fail(errc::invalid_argument, "unknown --kv-cache-dtype '" + std::string(name) +
                                   "' (auto, fp8, fp8_e4m3, fp8_e5m2, bfloat16, float16 or float32)");
}

// ---------------------------------------------------------------------------
// Tensor placement
// ---------------------------------------------------------------------------

namespace {

enum class Where { layer, first, last, embedding, lm_head };
enum class Split { none, column, row, kv, qkv, vocab };

struct PlacedTensor {
  Where where = Where::last;
  std::uint64_t layer = 0;
  Split split = Split::none;
  std::uint64_t bytes = 0;
  std::uint64_t rows = 0;  // vocabulary rows for Split::vocab
  bool linear_weight = false;  // a decoder-layer matrix a quantizer would shrink
};

bool in(std::string_view s, std::initializer_list<std::string_view> set) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

/// "model.layers.12.mlp.up_proj.weight" -> 12 when it has a layer index.
std::optional<std::uint64_t> layer_index(std::vector<std::string_view> const& parts) {
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!in(parts[i], {"layers", "h", "layer", "blocks"})) continue;
    auto const& d = parts[i + 1];
    if (d.empty() || d.size() > 9 || !std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    return std::stoull(std::string(d));
  }
  return std::nullopt;
}

PlacedTensor place(ModelTensor const& t) {
  PlacedTensor p;
  p.bytes = t.bytes;
  std::vector<std::string_view> parts;
  std::string_view name = t.name;
  for (std::size_t start = 0;;) {
    auto dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  auto lname = lower(name);
  std::string_view param = parts.back();
  std::string_view module = parts.size() >= 2 ? parts[parts.size() - 2] : std::string_view();
  bool const encoder = lname.find("visual") != std::string::npos || lname.find("vision") != std::string::npos ||
                       lname.find("audio") != std::string::npos || lname.find("mm_projector") != std::string::npos ||
                       lname.find("multi_modal_projector") != std::string::npos ||
                       lname.find("image_newline") != std::string::npos;
  if (encoder) {
    p.where = Where::first;
    return p;
  }
  if (name == "lm_head.weight" || name.ends_with(".lm_head.weight") || name == "embed_out.weight" ||
      name == "output.weight" || (module == "lm_head")) {
    p.where = Where::lm_head;
    p.split = Split::vocab;
    p.rows = t.shape.empty() ? 0 : t.shape[0];
    return p;
  }
  if (in(module, {"embed_tokens", "wte", "word_embeddings", "tok_embeddings"}) && param == "weight") {
    p.where = Where::embedding;
    p.split = Split::vocab;
    p.rows = t.shape.empty() ? 0 : t.shape[0];
    return p;
  }
  auto layer = layer_index(parts);
  if (!layer) {
    p.where = Where::last;  // final norm and the like
    return p;
  }
  p.where = Where::layer;
  p.layer = *layer;
  auto classify = [&](std::string_view m) -> std::optional<Split> {
    if (in(m, {"q_proj", "wq", "query", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj", "gate_up_proj", "w1", "w3",
               "fc1", "c_fc", "dense_h_to_4h", "gate_up"}))
      return Split::column;
    if (in(m, {"k_proj", "v_proj", "wk", "wv", "key", "value"})) return Split::kv;
    if (in(m, {"qkv_proj", "c_attn", "query_key_value", "W_pack", "Wqkv", "wqkv"})) return Split::qkv;
    if (in(m, {"o_proj", "down_proj", "dense", "c_proj", "w2", "fc2", "dense_4h_to_h", "out_proj", "wo"}))
      return Split::row;
    return std::nullopt;
  };
  auto split = classify(module);
  if (!split) split = classify(param);  // fused expert tensors: "...experts.gate_up_proj"
  if (split) {
    p.split = *split;
    if (p.split == Split::row && param == "bias") p.split = Split::none;
    p.linear_weight = param != "bias" && t.shape.size() >= 2;
  }
  return p;
}

std::uint64_t per_rank_bytes(PlacedTensor const& p, ModelFacts const& f, unsigned tp) {
  if (tp == 1) {
    if (p.split == Split::vocab && p.rows) return p.bytes / p.rows * round_up(p.rows, 64);
    return p.bytes;
  }
  auto const kv = std::max<std::uint64_t>(f.num_key_value_heads, 1);
  auto const kv_rank = std::max<std::uint64_t>(kv / tp, 1);
  switch (p.split) {
    case Split::none: return p.bytes;
    case Split::column:
    case Split::row: return ceil_div(p.bytes, tp);
    case Split::kv: return mul_div_ceil(p.bytes, kv_rank, kv);
    case Split::qkv: {
      auto const h = f.num_attention_heads;
      if (!h) return ceil_div(p.bytes, tp);
      return mul_div_ceil(p.bytes, h / tp + 2 * kv_rank, h + 2 * kv);
    }
    case Split::vocab: {
      if (!p.rows) return ceil_div(p.bytes, tp);
      auto const per_row = p.bytes / p.rows;
      return per_row * ceil_div(round_up(p.rows, 64), tp);
    }
  }
  return p.bytes;
}

// ---------------------------------------------------------------------------
// Evaluation of layouts
// ---------------------------------------------------------------------------

struct Resolved {
  double util = 0.9;
  std::uint64_t max_model_len = 0;
  std::uint64_t kv_bytes = 2;
  std::string kv_dtype = "auto";
  std::uint64_t seq_len = 0;
  std::uint64_t batched_tokens = 0;
  std::uint64_t max_seqs = 0;
  bool batched_given = false;
  bool seqs_given = false;
  std::optional<std::uint64_t> reserve_override;
  std::uint64_t reserve_fixed = GiB;
  std::uint64_t block = 16;
  bool allow_pp_within_node = false;
};

struct Model {
  ModelFacts const* facts;
  std::vector<PlacedTensor> tensors;
  bool has_lm_head = false;
  std::uint64_t group_size = 0;  // for the TP rule
  std::string quant_name;
};

Model prepare(ModelFacts const& f) {
  Model m;
  m.facts = &f;
  m.tensors.reserve(f.tensors.size());
  for (auto const& t : f.tensors) {
    m.tensors.push_back(place(t));
    if (m.tensors.back().where == Where::lm_head) m.has_lm_head = true;
  }
  m.group_size = quant_group_size(f);
  m.quant_name = f.quant_method.empty() ? "quantization" : upper(f.quant_method);
  return m;
}

/// Where the layout's stages go: one stage per node when possible.
struct Placement {
  bool possible = false;
  bool within_node = false;
  unsigned nodes = 0;
  std::uint64_t min_memory = 0;
  std::string gpu_model;
};

Placement place_stages(GpuInventory const& inv, unsigned tp, unsigned pp) {
  Placement pl;
  std::vector<GpuNode const*> fit;
  for (auto const& n : inv.nodes)
    if (n.gpu_count >= tp) fit.push_back(&n);
  std::stable_sort(fit.begin(), fit.end(), [](GpuNode const* a, GpuNode const* b) {
    return a->memory_bytes != b->memory_bytes ? a->memory_bytes > b->memory_bytes : a->gpu_count > b->gpu_count;
  });
  auto take = [&](std::size_t count) {
    pl.possible = true;
    pl.nodes = static_cast<unsigned>(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (pl.min_memory == 0 || fit[i]->memory_bytes < pl.min_memory) {
        pl.min_memory = fit[i]->memory_bytes;
        pl.gpu_model = fit[i]->gpu_model;
      }
    }
  };
  if (pp <= fit.size()) {
    take(pp);
    return pl;
  }
  unsigned slots = 0;
  for (std::size_t i = 0; i < fit.size(); ++i) {
    slots += fit[i]->gpu_count / tp;
    if (slots >= pp) {
      pl.within_node = true;
      take(i + 1);
      return pl;
    }
  }
  return pl;
}

using BytesOf = std::function<std::uint64_t(PlacedTensor const&)>;

/// Per-GPU weight bytes at one TP size, by where they sit: computed once per
/// TP, so that every PP split is a sum over layers.
struct TpWeights {
  /// Decoder layer i (index num_hidden_layers collects layers beyond it,
  /// e.g. MTP layers vLLM puts on the last stage).
  std::vector<std::uint64_t> layer;
  std::uint64_t first = 0;      // encoders and the like
  std::uint64_t last = 0;       // final norm, lm_head
  std::uint64_t embedding = 0;  // the input embedding
};

TpWeights weights_for_tp(Model const& m, unsigned tp, BytesOf const& bytes_of) {
  auto const& f = *m.facts;
  TpWeights w;
  w.layer.assign(f.num_hidden_layers + 1, 0);
  for (auto const& t : m.tensors) {
    PlacedTensor scaled = t;
    if (bytes_of) scaled.bytes = bytes_of(t);
    auto b = per_rank_bytes(scaled, f, tp);
    switch (t.where) {
      case Where::layer: w.layer[std::min<std::uint64_t>(t.layer, f.num_hidden_layers)] += b; break;
      case Where::first: w.first += b; break;
      case Where::last:
      case Where::lm_head: w.last += b; break;
      case Where::embedding: w.embedding += b; break;
    }
  }
  return w;
}

Layout evaluate(Model const& m, Resolved const& r, unsigned tp, unsigned pp, Placement const& pl, unsigned total_gpus,
                TpWeights const& tw) {
  auto const& f = *m.facts;
  Layout L;
  L.tp = tp;
  L.pp = pp;
  L.gpus = tp * pp;
  L.nodes = pl.nodes;
  L.uses_all_gpus = L.gpus == total_gpus;
  L.pp_within_node = pl.within_node;
  L.allowed = !pl.within_node || r.allow_pp_within_node;
  L.gpu_memory_bytes = pl.min_memory;

  auto parts = pipeline_partition(f.num_hidden_layers, pp);
  std::vector<std::uint64_t> first(pp), end(pp), weights(pp, 0);
  std::uint64_t acc = 0;
  for (unsigned s = 0; s < pp; ++s) {
    first[s] = acc;
    acc += parts[s];
    end[s] = acc;
    for (auto i = first[s]; i < end[s]; ++i) weights[s] += tw.layer[i];
  }
  weights[pp - 1] += tw.layer[f.num_hidden_layers] + tw.last;
  weights[0] += tw.first + tw.embedding;
  // A tied lm_head is the embedding; with PP the last stage holds its own copy.
  if (pp > 1 && f.tie_word_embeddings && !m.has_lm_head) weights[pp - 1] += tw.embedding;

  auto const kv_heads_rank = std::max<std::uint64_t>(f.num_key_value_heads / tp, 1);
  auto const budget = static_cast<std::uint64_t>(std::floor(static_cast<long double>(pl.min_memory) * r.util));
  auto const act_width = 2 * f.hidden_size + 3 * (f.intermediate_size ? f.intermediate_size : 4 * f.hidden_size) / tp +
                         (f.num_attention_heads / tp + 2 * kv_heads_rank) * f.head_dim;
  auto const activation = r.batched_tokens * 2 * act_width;
  auto const sampler = r.max_seqs * std::max<std::uint64_t>(f.vocab_size, 1) * 4 * 3;
  auto const need_tokens = round_up(r.max_model_len, r.block);

  L.kv_cache_tokens = UINT64_MAX;
  for (unsigned s = 0; s < pp; ++s) {
    LayoutStage st;
    st.index = s;
    st.first_layer = first[s];
    st.end_layer = end[s];
    st.weight_bytes = weights[s];
    auto const layers = end[s] - first[s];
    st.kv_bytes_per_token = f.kv_lora_rank ? layers * (f.kv_lora_rank + f.qk_rope_head_dim) * r.kv_bytes
                                           : 2 * layers * kv_heads_rank * f.head_dim * r.kv_bytes;
    st.reserve_bytes = r.reserve_override ? *r.reserve_override
                                          : r.reserve_fixed + activation + (s + 1 == pp ? sampler : 0);
    st.budget_bytes = budget;
    st.kv_cache_bytes = static_cast<std::int64_t>(budget) - static_cast<std::int64_t>(st.weight_bytes) -
                        static_cast<std::int64_t>(st.reserve_bytes);
    if (st.kv_cache_bytes > 0 && st.kv_bytes_per_token > 0) {
      st.kv_cache_tokens = static_cast<std::uint64_t>(st.kv_cache_bytes) / st.kv_bytes_per_token;
      st.kv_cache_tokens -= st.kv_cache_tokens % r.block;
    } else if (st.kv_cache_bytes > 0) {
      st.kv_cache_tokens = UINT64_MAX / 2;  // a stage without layers holds no cache and limits nothing
    }
    L.weight_bytes_per_gpu = std::max(L.weight_bytes_per_gpu, st.weight_bytes);
    L.kv_bytes_per_token_per_gpu = std::max(L.kv_bytes_per_token_per_gpu, st.kv_bytes_per_token);
    L.reserve_bytes_per_gpu = std::max(L.reserve_bytes_per_gpu, st.reserve_bytes);
    if (st.kv_cache_tokens < L.kv_cache_tokens) {
      L.kv_cache_tokens = st.kv_cache_tokens;
      L.bottleneck_stage = s;
    }
    auto const need = static_cast<std::int64_t>(need_tokens * st.kv_bytes_per_token);
    if (need > st.kv_cache_bytes)
      L.missing_bytes_per_gpu =
          std::max(L.missing_bytes_per_gpu, static_cast<std::uint64_t>(need - st.kv_cache_bytes));
    L.stages.push_back(st);
  }
  L.fits = L.kv_cache_tokens >= r.max_model_len && L.missing_bytes_per_gpu == 0;
  L.max_concurrent_sequences = r.seq_len ? L.kv_cache_tokens / r.seq_len : 0;

  L.vllm_args = {"--tensor-parallel-size", std::to_string(tp), "--pipeline-parallel-size", std::to_string(pp),
                 "--max-model-len", std::to_string(r.max_model_len), "--gpu-memory-utilization",
                 format_fraction(r.util)};
  if (lower(r.kv_dtype) != "auto") {
    L.vllm_args.push_back("--kv-cache-dtype");
    L.vllm_args.push_back(r.kv_dtype);
  }
  if (r.batched_given) {
    L.vllm_args.push_back("--max-num-batched-tokens");
    L.vllm_args.push_back(std::to_string(r.batched_tokens));
  }
  if (r.seqs_given) {
    L.vllm_args.push_back("--max-num-seqs");
    L.vllm_args.push_back(std::to_string(r.max_seqs));
  }
  return L;
}

bool better(Layout const& a, Layout const& b) {
  bool const ao = a.fits && a.allowed, bo = b.fits && b.allowed;
  if (ao != bo) return ao;
  if (ao) {
    if (a.tp != b.tp) return a.tp > b.tp;
    if (a.gpus != b.gpus) return a.gpus > b.gpus;
    if (a.kv_cache_tokens != b.kv_cache_tokens) return a.kv_cache_tokens > b.kv_cache_tokens;
    return a.pp < b.pp;
  }
  if (a.allowed != b.allowed) return a.allowed;
  if (a.missing_bytes_per_gpu != b.missing_bytes_per_gpu) return a.missing_bytes_per_gpu < b.missing_bytes_per_gpu;
  if (a.tp != b.tp) return a.tp > b.tp;
  return a.gpus < b.gpus;
}

struct Enumeration {
  std::vector<Layout> layouts;  // sorted, best first
  std::vector<RejectedLayout> rejected;
};

Enumeration enumerate(Model const& m, Resolved const& r, GpuInventory const& inv,
                      BytesOf const& bytes_of = {}, std::uint64_t group_size = 0,
                      std::string_view quant_name = {}) {
  auto const& f = *m.facts;
  Enumeration e;
  auto const total = inv.total_gpus();
  auto const per_node = inv.max_gpus_per_node();
  auto const gs = bytes_of ? group_size : m.group_size;
  auto const qn = bytes_of ? std::string(quant_name) : m.quant_name;
  for (unsigned tp = 1; tp <= total; ++tp) {
    auto why = tp_refusal(f, tp, gs, qn);
    if (tp > per_node) {
      if (why.empty())
        e.rejected.push_back({tp, 0,
                              "TP=" + std::to_string(tp) + " would span nodes (at most " + std::to_string(per_node) +
                                  " GPUs per node): tensor parallelism all-reduces twice per layer, which needs "
                                  "NVLink/PCIe inside one node; use PP across nodes"});
      continue;
    }
    if (!why.empty()) {
      e.rejected.push_back({tp, 0, "vLLM refuses TP=" + std::to_string(tp) + ": " + why});
      continue;
    }
    auto const tw = weights_for_tp(m, tp, bytes_of);
    for (unsigned pp = 1; tp * pp <= total; ++pp) {
      if (pp > f.num_hidden_layers) {
        e.rejected.push_back({tp, pp, "PP=" + std::to_string(pp) + " exceeds the " +
                                          std::to_string(f.num_hidden_layers) + " layers"});
        break;
      }
      auto pl = place_stages(inv, tp, pp);
      if (!pl.possible) continue;
      e.layouts.push_back(evaluate(m, r, tp, pp, pl, total, tw));
    }
  }
  std::stable_sort(e.layouts.begin(), e.layouts.end(), better);
  return e;
}

std::string layout_name(Layout const& l) { return "TP=" + std::to_string(l.tp) + " PP=" + std::to_string(l.pp); }

void explain(std::vector<Layout>& layouts, Resolved const& r) {
  Layout const* rec = !layouts.empty() && layouts[0].fits && layouts[0].allowed ? &layouts[0] : nullptr;
  if (rec) layouts[0].recommended = true;
  for (std::size_t i = rec ? 1 : 0; i < layouts.size(); ++i) {
    auto& l = layouts[i];
    std::string why;
    if (!l.allowed) {
      why = "PP=" + std::to_string(l.pp) + " on " + std::to_string(l.nodes) + (l.nodes == 1 ? " node" : " nodes") +
            " puts several pipeline stages on one node; TP over the same GPUs avoids pipeline bubbles and the extra "
            "hops (allow_pp_within_node permits it)";
      if (!l.fits) why += "; it would not fit either";
    } else if (!l.fits) {
      // Worst stage by missing bytes.
      LayoutStage const* worst = &l.stages[0];
      for (auto const& s : l.stages)
        if (s.kv_cache_bytes - static_cast<std::int64_t>(round_up(r.max_model_len, r.block) * s.kv_bytes_per_token) <
            worst->kv_cache_bytes -
                static_cast<std::int64_t>(round_up(r.max_model_len, r.block) * worst->kv_bytes_per_token))
          worst = &s;
      if (worst->kv_cache_bytes <= 0) {
        why = "does not fit by " + format_gib(l.missing_bytes_per_gpu) + " per GPU: " + format_gib(worst->weight_bytes) +
              " of weights + " + format_gib(worst->reserve_bytes) + " reserve exceed the " + format_gib(worst->budget_bytes) +
              " budget (" + format_gib(l.gpu_memory_bytes) + " x " + format_fraction(r.util) + ")";
        if (worst->kv_cache_bytes < 0) why += " by " + gib_signed(-worst->kv_cache_bytes);
        why += ", and " + std::to_string(r.max_model_len) + " tokens of KV cache need " +
               format_gib(round_up(r.max_model_len, r.block) * worst->kv_bytes_per_token) + " more";
      } else {
        why = "does not fit by " + format_gib(l.missing_bytes_per_gpu) + " per GPU: the KV cache holds " +
              std::to_string(l.kv_cache_tokens) + " tokens, fewer than --max-model-len " +
              std::to_string(r.max_model_len);
      }
    } else if (rec) {
      if (l.tp < rec->tp)
        why = "TP=" + std::to_string(l.tp) + " is smaller than " + layout_name(*rec) +
              "'s TP=" + std::to_string(rec->tp) + " (larger TP within a node is faster per token)";
      else if (l.gpus < rec->gpus)
        why = "uses " + std::to_string(l.gpus) + " of the GPUs; " + layout_name(*rec) + " uses " +
              std::to_string(rec->gpus) + " and holds " + std::to_string(rec->kv_cache_tokens) +
              " KV tokens against " + std::to_string(l.kv_cache_tokens);
      else
        why = "fewer KV tokens than " + layout_name(*rec) + " (" + std::to_string(l.kv_cache_tokens) + " vs " +
              std::to_string(rec->kv_cache_tokens) + ")";
    }
    l.reason = why;
  }
}

/// Weight bytes of the model quantized: decoder-layer matrices shrink,
/// embeddings, lm_head and norms stay in 16 bits (what FP8 and AWQ
/// checkpoints do).
std::uint64_t quantized_bytes(PlacedTensor const& t, ModelFacts const& f, std::string_view scheme) {
  if (t.where != Where::layer || !t.linear_weight) return t.bytes;
  auto const elements = t.bytes / std::max<std::uint64_t>(f.dtype_bytes(), 1);
  if (scheme == "fp8") {
    // 1 byte per weight + a float32 scale per output channel (rows unknown
    // here: bounded by elements / hidden_size).
    return elements + 4 * (f.hidden_size ? elements / f.hidden_size : 0);
  }
  // AWQ int4, group size 128: 4 bits per weight + an fp16 scale and a 4-bit
  // zero point per group of 128.
  return elements / 2 + ceil_div(elements, 128) * 2 + ceil_div(ceil_div(elements, 128), 2);
}

}  // namespace

// ---------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------

Layout const* Plan::recommended_layout() const noexcept {
  for (auto const& l : layouts)
    if (l.recommended) return &l;
  return nullptr;
}

json Layout::to_json() const {
  json j;
  j["tp"] = tp;
  j["pp"] = pp;
  j["gpus"] = gpus;
  j["nodes"] = nodes;
  j["uses_all_gpus"] = uses_all_gpus;
  j["pp_within_node"] = pp_within_node;
  j["allowed"] = allowed;
  j["gpu_memory_bytes"] = gpu_memory_bytes;
  j["weight_bytes_per_gpu"] = weight_bytes_per_gpu;
  j["kv_bytes_per_token_per_gpu"] = kv_bytes_per_token_per_gpu;
  j["reserve_bytes_per_gpu"] = reserve_bytes_per_gpu;
  j["kv_cache_tokens"] = kv_cache_tokens;
  j["bottleneck_stage"] = bottleneck_stage;
  j["max_concurrent_sequences"] = max_concurrent_sequences;
  j["fits"] = fits;
  j["missing_bytes_per_gpu"] = missing_bytes_per_gpu;
  j["recommended"] = recommended;
  j["reason"] = reason;
  j["vllm_args"] = vllm_args;
  auto& st = j["stages"] = json::array();
  for (auto const& s : stages)
    st.push_back({{"stage", s.index},
                  {"first_layer", s.first_layer},
                  {"end_layer", s.end_layer},
                  {"weight_bytes", s.weight_bytes},
                  {"kv_bytes_per_token", s.kv_bytes_per_token},
                  {"reserve_bytes", s.reserve_bytes},
                  {"budget_bytes", s.budget_bytes},
                  {"kv_cache_bytes", s.kv_cache_bytes},
                  {"kv_cache_tokens", s.kv_cache_tokens}});
  return j;
}

json Plan::to_json() const {
  json j;
  j["model"] = model;
  j["parameter_count"] = parameter_count;
  j["total_weight_bytes"] = total_weight_bytes;
  j["kv_bytes_per_token"] = kv_bytes_per_token;
  j["kv_dtype_bytes"] = kv_dtype_bytes;
  j["gpus"] = gpus.to_json();
  j["options"] = {{"gpu_memory_utilization", gpu_memory_utilization},
                  {"max_model_len", max_model_len},
                  {"sequence_length", sequence_length},
                  {"max_num_batched_tokens", max_num_batched_tokens},
                  {"max_num_seqs", max_num_seqs},
                  {"kv_cache_dtype", kv_cache_dtype}};
  auto const* rec = recommended_layout();
  j["recommended"] = rec ? json{{"tp", rec->tp}, {"pp", rec->pp}, {"vllm_args", rec->vllm_args}} : json(nullptr);
  auto& ls = j["layouts"] = json::array();
  for (auto const& l : layouts) ls.push_back(l.to_json());
  auto& rj = j["rejected"] = json::array();
  for (auto const& r : rejected) rj.push_back({{"tp", r.tp}, {"pp", r.pp}, {"reason", r.reason}});
  if (shortfall) {
    auto const& s = *shortfall;
    json q = json::array();
    for (auto const& o : s.quantized)
      q.push_back({{"name", o.name},
                   {"weight_bytes", o.weight_bytes},
                   {"tp", o.tp},
                   {"pp", o.pp},
                   {"kv_cache_tokens", o.kv_cache_tokens},
                   {"note", o.note}});
    j["shortfall"] = {{"best_tp", s.best_tp},
                      {"best_pp", s.best_pp},
                      {"missing_bytes_per_gpu", s.missing_bytes_per_gpu},
                      {"nodes_needed", s.nodes_needed},
                      {"gpus_needed", s.gpus_needed},
                      {"nodes_needed_tp", s.nodes_needed_tp},
                      {"nodes_needed_pp", s.nodes_needed_pp},
                      {"max_model_len_that_fits", s.max_model_len_that_fits},
                      {"quantized", q},
                      {"suggestions", s.suggestions}};
  } else {
    j["shortfall"] = nullptr;
  }
  j["notes"] = notes;
  return j;
}

std::string Plan::summary() const {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%s: %.2f B parameters, %s of weights, %llu bytes (%.0f KiB) of KV cache per token\n",
                model.c_str(), static_cast<double>(parameter_count) / 1e9, format_gib(total_weight_bytes).c_str(),
                static_cast<unsigned long long>(kv_bytes_per_token), static_cast<double>(kv_bytes_per_token) / 1024);
  out += line;
  out += "GPUs: " + gpus.describe() + "; --max-model-len " + std::to_string(max_model_len) +
         ", --gpu-memory-utilization " + format_fraction(gpu_memory_utilization) + "\n\n";
  std::snprintf(line, sizeof line, "  %-3s %-3s %-4s %12s %10s %10s %9s %4s\n", "TP", "PP", "GPUs", "weights/GPU",
                "KV B/tok", "KV tokens", "seqs", "fits");
  out += line;
  for (auto const& l : layouts) {
    std::snprintf(line, sizeof line, "  %-3u %-3u %-4u %12s %10llu %10llu %9llu %4s  ", l.tp, l.pp, l.gpus,
                  format_gib(l.weight_bytes_per_gpu).c_str(), static_cast<unsigned long long>(l.kv_bytes_per_token_per_gpu),
                  static_cast<unsigned long long>(l.kv_cache_tokens),
                  static_cast<unsigned long long>(l.max_concurrent_sequences), l.fits ? "yes" : "no");
    out += line;
    out += l.recommended ? std::string("<- recommended") : l.reason;
    out += "\n";
  }
  for (auto const& r : rejected) out += "  (TP=" + std::to_string(r.tp) + ") " + r.reason + "\n";
  if (auto const* rec = recommended_layout()) {
    out += "\nRecommended: " + layout_name(*rec) + "\n  vllm serve <model>";
    for (auto const& a : rec->vllm_args) out += " " + a;
    out += "\n";
  }
  if (shortfall)
    for (auto const& s : shortfall->suggestions) out += "  - " + s + "\n";
  for (auto const& n : notes) out += "note: " + n + "\n";
  return out;
}

Plan plan_deployment(ModelFacts const& facts, GpuInventory const& gpus, PlanOptions const& options) {
  auto const& f = facts;
  if (!f.num_hidden_layers || !f.num_attention_heads || !f.hidden_size || !f.head_dim)
    fail(errc::invalid_argument,
         "the model's config lacks num_hidden_layers, num_attention_heads or hidden_size: cannot plan");
  if (f.tensors.empty()) {
    // Facts from config.json alone (a model not downloaded yet): estimate
    // the tensors here rather than refuse, and say so in the plan.
    ModelFacts estimated = f;
    try {
      estimate_tensors_from_config(estimated);
    } catch (Error const& e) {
      fail(errc::invalid_argument, std::string("the model facts have no tensors, and config.json alone cannot describe "
                                               "them (") + e.what() + "): inspect the downloaded model folder instead (inspect_model)");
    }
    auto plan = plan_deployment(estimated, gpus, options);
    plan.notes.insert(plan.notes.begin(),
                      "tensor sizes estimated from config.json (estimate_tensors_from_config): no weights were read");
    return plan;
  }
  if (gpus.nodes.empty() || gpus.total_gpus() == 0) fail(errc::invalid_argument, "the GPU inventory is empty");
  for (auto const& n : gpus.nodes)
    if (n.memory_bytes == 0) fail(errc::invalid_argument, "node " + n.name + " has no GPU memory size");
  if (!(options.gpu_memory_utilization > 0 && options.gpu_memory_utilization <= 1))
    fail(errc::invalid_argument, "gpu_memory_utilization (--gpu-memory-utilization) must be in (0, 1], not " +
                                     format_fraction(options.gpu_memory_utilization));
  if (options.block_size == 0) fail(errc::invalid_argument, "block_size must be positive");

  Resolved r;
  r.util = options.gpu_memory_utilization;
  auto const positions = f.max_position_embeddings ? f.max_position_embeddings : 32768;
  r.max_model_len = options.max_model_len.value_or(std::min<std::uint64_t>(positions, 32768));
  if (r.max_model_len == 0) fail(errc::invalid_argument, "max_model_len (--max-model-len) must be positive");
  r.kv_dtype = options.kv_cache_dtype.empty() ? "auto" : options.kv_cache_dtype;
  r.kv_bytes = kv_cache_dtype_bytes(f, r.kv_dtype);
  r.seq_len = options.sequence_length.value_or(r.max_model_len);
  if (r.seq_len == 0) fail(errc::invalid_argument, "the sequence length must be positive");
  bool big = gpus.min_memory_bytes() >= 70 * GiB;
  for (auto const& n : gpus.nodes)
    if (lower(n.gpu_model).find("a100") != std::string::npos) big = false;
  r.batched_tokens = options.max_num_batched_tokens.value_or(big ? 8192 : 2048);
  r.max_seqs = options.max_num_seqs.value_or(big ? 1024 : 256);
  r.batched_given = options.max_num_batched_tokens.has_value();
  r.seqs_given = options.max_num_seqs.has_value();
  r.reserve_override = options.reserve_bytes_per_gpu;
  r.reserve_fixed = options.reserve_fixed_bytes;
  r.block = options.block_size;
  r.allow_pp_within_node = options.allow_pp_within_node;

  Plan plan;
  plan.model = f.dir.filename().string();
  if (plan.model.empty()) plan.model = !f.architectures.empty() ? f.architectures.front() : f.model_type;
  if (plan.model.empty()) plan.model = "model";
  plan.parameter_count = f.parameter_count;
  plan.total_weight_bytes = f.total_tensor_bytes;
  plan.kv_dtype_bytes = r.kv_bytes;
  plan.kv_bytes_per_token = f.kv_bytes_per_token(r.kv_bytes);
  plan.gpus = gpus;
  plan.gpu_memory_utilization = r.util;
  plan.max_model_len = r.max_model_len;
  plan.sequence_length = r.seq_len;
  plan.max_num_batched_tokens = r.batched_tokens;
  plan.max_num_seqs = r.max_seqs;
  plan.kv_cache_dtype = r.kv_dtype;

  auto model = prepare(f);
  auto e = enumerate(model, r, gpus);
  plan.layouts = std::move(e.layouts);
  plan.rejected = std::move(e.rejected);
  explain(plan.layouts, r);

  if (f.weights_estimated)
    plan.notes.push_back("weights estimated from config.json (no safetensors inspected)");
  if (f.max_position_embeddings > 32768 && !options.max_model_len)
    plan.notes.push_back("--max-model-len defaults to 32768 of the model's " +
                         std::to_string(f.max_position_embeddings) + " positions");
  {
    std::set<std::pair<unsigned, std::uint64_t>> shapes;
    for (auto const& n : gpus.nodes) shapes.insert({n.gpu_count, n.memory_bytes});
    if (shapes.size() > 1)
      plan.notes.push_back("the nodes differ: each layout is sized for the smallest GPU among the nodes it uses");
  }
  if (f.kv_lora_rank)
    plan.notes.push_back("MLA model: the KV cache per token is kv_lora_rank + qk_rope_head_dim per layer on every TP rank");

  if (plan.recommended_layout() == nullptr) {
    Shortfall s;
    Layout const* best = nullptr;
    for (auto const& l : plan.layouts)
      if (l.allowed) {
        best = &l;
        break;
      }
    if (best) {
      s.best_tp = best->tp;
      s.best_pp = best->pp;
      s.missing_bytes_per_gpu = best->missing_bytes_per_gpu;
      s.max_model_len_that_fits = best->kv_cache_tokens;
      s.suggestions.push_back("nothing fits: the closest layout, " + layout_name(*best) + ", lacks " +
                              format_gib(best->missing_bytes_per_gpu) + " on its most loaded GPU");
      if (best->kv_cache_tokens > 0)
        s.suggestions.push_back("a shorter context: " + layout_name(*best) + " serves --max-model-len " +
                                std::to_string(best->kv_cache_tokens));
    } else {
      s.suggestions.push_back("no layout can be placed on these GPUs");
    }
    // More nodes of the same kind.
    if (!gpus.nodes.empty()) {
      auto const& shape = *std::min_element(gpus.nodes.begin(), gpus.nodes.end(),
                                            [](GpuNode const& a, GpuNode const& b) { return a.memory_bytes < b.memory_bytes; });
      for (unsigned n = static_cast<unsigned>(gpus.nodes.size()) + 1; n <= 64; ++n) {
        GpuInventory more;
        for (unsigned i = 0; i < n; ++i) {
          auto node = shape;
          node.name = "node" + std::to_string(i + 1);
          more.nodes.push_back(node);
        }
        auto e2 = enumerate(model, r, more);
        if (!e2.layouts.empty() && e2.layouts[0].fits && e2.layouts[0].allowed) {
          s.nodes_needed = n;
          s.gpus_needed = n * shape.gpu_count;
          s.nodes_needed_tp = e2.layouts[0].tp;
          s.nodes_needed_pp = e2.layouts[0].pp;
          s.suggestions.push_back("more GPUs: " + std::to_string(n) + " nodes x " + std::to_string(shape.gpu_count) +
                                  " " + shape.gpu_model + " (" + std::to_string(s.gpus_needed) + " GPUs) fit with " +
                                  layout_name(e2.layouts[0]) + " and " + std::to_string(e2.layouts[0].kv_cache_tokens) +
                                  " KV tokens");
          break;
        }
      }
      if (!s.nodes_needed) s.suggestions.push_back("more GPUs of this kind: no layout fits even with 64 nodes");
    }
    // FP8 KV cache.
    if (r.kv_bytes > 1) {
      auto r8 = r;
      r8.kv_bytes = 1;
      r8.kv_dtype = "fp8";
      auto e8 = enumerate(model, r8, gpus);
      if (!e8.layouts.empty() && e8.layouts[0].fits && e8.layouts[0].allowed)
        s.suggestions.push_back("--kv-cache-dtype fp8 halves the KV cache: " + layout_name(e8.layouts[0]) +
                                " then fits with " + std::to_string(e8.layouts[0].kv_cache_tokens) + " KV tokens");
    }
    // A quantized checkpoint.
    if (!f.quantized) {
      for (std::string scheme : {"fp8", "awq-int4"}) {
        auto scaler = [&](PlacedTensor const& t) { return quantized_bytes(t, f, scheme); };
        QuantizedOption q;
        q.name = scheme;
        for (auto const& t : model.tensors) q.weight_bytes += scaler(t);
        // No group-size rule here: published INT4 checkpoints pad
        // intermediate_size so that the usual TP sizes work (Qwen2.5-72B's
        // AWQ/GPTQ versions use 29696 instead of 29568).
        auto eq = enumerate(model, r, gpus, scaler, 0, "AWQ");
        Layout const* qbest = nullptr;
        for (auto const& l : eq.layouts)
          if (l.allowed) {
            qbest = &l;
            break;
          }
        if (qbest && qbest->fits) {
          q.tp = qbest->tp;
          q.pp = qbest->pp;
          q.kv_cache_tokens = qbest->kv_cache_tokens;
          q.note = "fits with " + layout_name(*qbest) + " and " + std::to_string(q.kv_cache_tokens) + " KV tokens";
        } else if (qbest && qbest->kv_cache_tokens > 0) {
          q.kv_cache_tokens = qbest->kv_cache_tokens;
          q.note = "does not hold " + std::to_string(r.max_model_len) + " tokens either; with " +
                   layout_name(*qbest) + " it would serve --max-model-len " + std::to_string(qbest->kv_cache_tokens);
        } else {
          q.note = "does not fit either";
        }
        s.suggestions.push_back((scheme == "fp8" ? std::string("an FP8") : std::string("an AWQ INT4")) +
                                " checkpoint (about " + format_gib(q.weight_bytes) + " of weights) " + q.note);
        s.quantized.push_back(std::move(q));
      }
    }
    plan.shortfall = std::move(s);
  }
  return plan;
}

}  // namespace clusterkit
