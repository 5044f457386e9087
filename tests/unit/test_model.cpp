// Model folders, safetensors headers, inspection and verification. Every
// model here is written by the test itself into a temporary folder.
#include "clusterkit/model.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>

namespace fs = std::filesystem;
using clusterkit::Error;
using clusterkit::errc;
using nlohmann::json;

namespace {

/// A temporary folder removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ck-model-XXXXXX").string();
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

struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
};

std::uint64_t dtype_size(std::string const& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "BF16" || d == "F16") return 2;
  if (d == "I64" || d == "F64") return 8;
  return 1;
}

std::uint64_t elements(std::vector<std::uint64_t> const& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

/// The header bytes (8-byte length + JSON padded with spaces to 8 bytes)
/// for tensors laid out back to back; `data_bytes` gets the data size.
std::string header_bytes(std::vector<TensorSpec> const& tensors, std::uint64_t& data_bytes,
                         json metadata = json(nullptr)) {
  json h = json::object();
  std::uint64_t off = 0;
  for (auto const& t : tensors) {
    auto size = elements(t.shape) * dtype_size(t.dtype);
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + size}}};
    off += size;
  }
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  auto text = h.dump();
  while (text.size() % 8) text.push_back(' ');
  std::string out(8, '\0');
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  data_bytes = off;
  return out + text;
}

std::string raw_header(std::string const& json_text) {
  std::string out(8, '\0');
  std::uint64_t n = json_text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json_text;
}

/// Writes a safetensors file; the data is a byte pattern (or a hole when
/// sparse). Returns the file size.
std::uint64_t write_safetensors(fs::path const& path, std::vector<TensorSpec> const& tensors, bool sparse = false) {
  std::uint64_t data = 0;
  auto head = header_bytes(tensors, data, json{{"format", "pt"}});
  {
    std::ofstream out(path, std::ios::binary);
    out.write(head.data(), static_cast<std::streamsize>(head.size()));
    if (!sparse) {
      std::string bytes(data, '\0');
      for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 31 + 7);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
  }
  if (sparse) fs::resize_file(path, head.size() + data);
  return head.size() + data;
}

void write_text(fs::path const& path, std::string const& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

/// A small Qwen2-like model: 2 layers, hidden 8, 2 shards plus an index.
struct SmallModel {
  std::vector<TensorSpec> shard1, shard2;
  std::uint64_t params = 0;
};

SmallModel write_small_model(fs::path const& dir, bool tied = false) {
  fs::create_directories(dir);
  json config = {{"architectures", {"Qwen2ForCausalLM"}},
                 {"model_type", "qwen2"},
                 {"hidden_size", 8},
                 {"intermediate_size", 16},
                 {"num_hidden_layers", 2},
                 {"num_attention_heads", 4},
                 {"num_key_value_heads", 2},
                 {"vocab_size", 32},
                 {"max_position_embeddings", 128},
                 {"tie_word_embeddings", tied},
                 {"torch_dtype", "bfloat16"}};
  write_text(dir / "config.json", config.dump(2));
  SmallModel m;
  auto layer = [](int i) {
    auto p = "model.layers." + std::to_string(i) + ".";
    return std::vector<TensorSpec>{{p + "self_attn.q_proj.weight", "BF16", {8, 8}},
                                   {p + "self_attn.q_proj.bias", "BF16", {8}},
                                   {p + "self_attn.k_proj.weight", "BF16", {4, 8}},
                                   {p + "self_attn.k_proj.bias", "BF16", {4}},
                                   {p + "self_attn.v_proj.weight", "BF16", {4, 8}},
                                   {p + "self_attn.v_proj.bias", "BF16", {4}},
                                   {p + "self_attn.o_proj.weight", "BF16", {8, 8}},
                                   {p + "mlp.gate_proj.weight", "BF16", {16, 8}},
                                   {p + "mlp.up_proj.weight", "BF16", {16, 8}},
                                   {p + "mlp.down_proj.weight", "BF16", {8, 16}},
                                   {p + "input_layernorm.weight", "F32", {8}},
                                   {p + "post_attention_layernorm.weight", "F32", {8}}};
  };
  m.shard1 = layer(0);
  m.shard1.push_back({"model.embed_tokens.weight", "BF16", {32, 8}});
  m.shard2 = layer(1);
  m.shard2.push_back({"model.norm.weight", "F32", {8}});
  if (!tied) m.shard2.push_back({"lm_head.weight", "BF16", {32, 8}});
  write_safetensors(dir / "model-00001-of-00002.safetensors", m.shard1);
  write_safetensors(dir / "model-00002-of-00002.safetensors", m.shard2);
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  std::uint64_t total = 0;
  for (auto const* shard : {&m.shard1, &m.shard2})
    for (auto const& t : *shard) {
      index["weight_map"][t.name] =
          shard == &m.shard1 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
      m.params += elements(t.shape);
      total += elements(t.shape) * dtype_size(t.dtype);
    }
  index["metadata"]["total_size"] = total;
  write_text(dir / "model.safetensors.index.json", index.dump(2));
  return m;
}

/// Expect a parse_error whose message contains `needle`.
void expect_parse_error(std::string const& bytes, std::optional<std::uint64_t> file_size, std::string const& needle) {
  try {
    clusterkit::parse_safetensors_header(bytes, file_size, "shard.safetensors");
    FAIL("no error; expected one mentioning: " << needle);
  } catch (Error const& e) {
    CHECK(e.code() == errc::parse_error);
    std::string what = e.what();
    INFO(what);
    CHECK(what.find(needle) != std::string::npos);
    CHECK(what.find("shard.safetensors") != std::string::npos);
  }
}

}  // namespace

TEST_CASE("model folder names follow ModelScope and Hugging Face", "[model]") {
  CHECK(clusterkit::modelscope_folder_name("Qwen/Qwen2.5-72B-Instruct") == "Qwen/Qwen2___5-72B-Instruct");
  CHECK(clusterkit::modelscope_folder_name("a.b/c.d.e") == "a___b/c___d___e");
  CHECK(clusterkit::huggingface_cache_folder_name("Qwen/Qwen2.5-72B-Instruct") ==
        "models--Qwen--Qwen2.5-72B-Instruct");

  auto c = clusterkit::model_candidates("Qwen/Qwen2.5-72B-Instruct", "/mnt");
  REQUIRE(c.size() == 5);
  CHECK(c[0].path == "/mnt/Qwen/Qwen2___5-72B-Instruct");
  CHECK(c[0].layout == clusterkit::ModelLayout::modelscope);
  CHECK(c[1].path == "/mnt/Qwen/Qwen2.5-72B-Instruct");
  CHECK(c[2].path == "/mnt/models--Qwen--Qwen2.5-72B-Instruct");
  CHECK(c[3].path == "/mnt/hub/models--Qwen--Qwen2.5-72B-Instruct");
  CHECK(c[4].path == "Qwen/Qwen2.5-72B-Instruct");
  auto p = clusterkit::model_candidates("/models/qwen", "/mnt");
  REQUIRE(p.size() == 1);
  CHECK(p[0].path == "/models/qwen");
  CHECK_THROWS_AS(clusterkit::model_candidates("  ", "/mnt"), Error);
}

TEST_CASE("resolve_model finds ModelScope, HF cache and plain folders", "[model]") {
  TempDir tmp;
  auto const root = tmp.path;

  SECTION("ModelScope layout") {
    write_text(root / "Qwen" / "Qwen2___5-72B-Instruct" / "config.json", "{}");
    auto loc = clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", root);
    CHECK(loc.dir == root / "Qwen" / "Qwen2___5-72B-Instruct");
    CHECK(loc.layout == clusterkit::ModelLayout::modelscope);
    CHECK(loc.tried.size() == 1);
  }
  SECTION("HF cache with refs/main, under hub/") {
    auto repo = root / "hub" / "models--Qwen--Qwen2.5-72B-Instruct";
    write_text(repo / "snapshots" / "aaaa" / "config.json", "{}");
    write_text(repo / "snapshots" / "bbbb" / "config.json", "{}");
    write_text(repo / "refs" / "main", "bbbb\n");
    auto loc = clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", root);
    CHECK(loc.dir == repo / "snapshots" / "bbbb");
    CHECK(loc.layout == clusterkit::ModelLayout::huggingface);
    CHECK(loc.revision == "bbbb");
    // A pinned revision wins over refs/main.
    auto pinned = clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", root, "aaaa");
    CHECK(pinned.revision == "aaaa");
    CHECK_THROWS_AS(clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", root, "cccc"), Error);
  }
  SECTION("HF cache with symlinked files, as huggingface_hub writes them") {
    auto repo = root / "models--Org--Small";
    write_small_model(repo / "blobs-src");
    fs::create_directories(repo / "snapshots" / "abcd");
    for (auto const& e : fs::directory_iterator(repo / "blobs-src"))
      fs::create_symlink(e.path(), repo / "snapshots" / "abcd" / e.path().filename());
    auto loc = clusterkit::resolve_model("Org/Small", root);
    CHECK(loc.revision == "abcd");
    auto f = clusterkit::inspect_model(loc.dir);
    CHECK(f.parameter_count == 1736);
    CHECK(clusterkit::verify_model(loc.dir).ok());
  }
  SECTION("HF cache: the only snapshot, or an error listing several") {
    auto repo = root / "models--Org--Model";
    write_text(repo / "snapshots" / "1111" / "config.json", "{}");
    CHECK(clusterkit::resolve_model("Org/Model", root).revision == "1111");
    write_text(repo / "snapshots" / "2222" / "config.json", "{}");
    try {
      clusterkit::resolve_model("Org/Model", root);
      FAIL("expected an ambiguity error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::invalid_argument);
      std::string what = e.what();
      CHECK(what.find("1111, 2222") != std::string::npos);
    }
  }
  SECTION("plain folder path") {
    write_text(root / "my-model" / "config.json", "{}");
    auto loc = clusterkit::resolve_model((root / "my-model").string());
    CHECK(loc.dir == root / "my-model");
    CHECK(loc.layout == clusterkit::ModelLayout::plain);
  }
  SECTION("not found lists every path tried and why") {
    fs::create_directories(root / "Qwen" / "Qwen2___5-72B-Instruct");  // no config.json
    try {
      clusterkit::resolve_model("Qwen/Qwen2.5-72B-Instruct", root);
      FAIL("expected not found");
    } catch (Error const& e) {
      CHECK(e.code() == errc::file_not_found);
      std::string what = e.what();
      INFO(what);
      CHECK(what.find((root / "Qwen" / "Qwen2___5-72B-Instruct").string() + " (modelscope): has no config.json") !=
            std::string::npos);
      CHECK(what.find((root / "Qwen" / "Qwen2.5-72B-Instruct").string() + " (plain): does not exist") !=
            std::string::npos);
      CHECK(what.find("models--Qwen--Qwen2.5-72B-Instruct (huggingface): does not exist") != std::string::npos);
    }
  }
}

TEST_CASE("a valid safetensors header parses exactly", "[model][safetensors]") {
  std::uint64_t data = 0;
  auto bytes = header_bytes({{"b", "F32", {3, 5}}, {"a", "BF16", {2, 4}}, {"s", "I64", {}}, {"z", "U8", {0}}}, data,
                            json{{"format", "pt"}});
  REQUIRE(data == 60 + 16 + 8);
  auto file_size = bytes.size() + data;
  auto h = clusterkit::parse_safetensors_header(bytes, file_size, "x.safetensors");
  CHECK(h.header_bytes == bytes.size() - 8);
  CHECK(h.data_bytes == 84);
  CHECK(h.expected_file_size() == file_size);
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.tensors[0].name == "b");
  CHECK(h.tensors[0].elements() == 15);
  CHECK(h.tensors[0].bytes() == 60);
  CHECK(h.tensors[1].name == "a");
  CHECK(h.tensors[1].begin == 60);
  CHECK(h.tensors[2].name == "s");
  CHECK(h.tensors[2].elements() == 1);
  CHECK(h.tensors[3].name == "z");  // zero-size tensor at the end
  CHECK(h.tensors[3].bytes() == 0);
  CHECK(h.metadata.at("format") == "pt");
  // More bytes than the header (the start of the data) are fine.
  CHECK(clusterkit::parse_safetensors_header(bytes + "0123", std::nullopt).tensors.size() == 4);
  // An empty header is a valid, empty file.
  CHECK(clusterkit::parse_safetensors_header(raw_header("{}"), 10).tensors.empty());
}

TEST_CASE("hostile safetensors headers are errors, never crashes", "[model][safetensors]") {
  auto with_len = [](std::uint64_t n) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out + "{}";
  };
  expect_parse_error("abc", std::nullopt, "too short");
  expect_parse_error(with_len(1ull << 62), std::nullopt, "larger than the 104,857,600-byte limit");
  expect_parse_error(with_len(~0ull), std::nullopt, "larger than the");
  expect_parse_error(with_len(1000), 200, "larger than the file (200 bytes)");
  expect_parse_error(with_len(1000), std::nullopt, "cut short");
  expect_parse_error(raw_header("{\"a\": {\"dtype\": \"F32\", "), std::nullopt, "invalid JSON");
  expect_parse_error(raw_header("[1, 2]"), std::nullopt, "not a JSON object");
  expect_parse_error(raw_header("{} trailing"), std::nullopt, "invalid JSON");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})"), std::nullopt,
                     "tensor 'a': unknown dtype 'F33'");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})"),
                     std::nullopt, "tensor 'a': data_offsets [0, 20] cover 20 bytes but shape [2, 3] x F32 needs 24");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})"),
                     std::nullopt, "tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})"),
                     std::nullopt, "hole of 8 bytes before tensor 'b'");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})"), std::nullopt,
                     "hole of 8 bytes before tensor 'a'");
  {
    auto h = raw_header(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})");
    expect_parse_error(h, h.size() + 10, "truncated: 6 bytes missing");
    expect_parse_error(h, h.size() + 20, "4 bytes follow the last tensor");
    CHECK(clusterkit::parse_safetensors_header(h, h.size() + 16).data_bytes == 16);
  }
  expect_parse_error(
      raw_header(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
      std::nullopt, "tensor 'a': shape overflows 64 bits");
  expect_parse_error(
      raw_header(R"({"a": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"),
      std::nullopt, "shape x dtype size overflows 64 bits");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})"), std::nullopt,
                     "tensor 'a': a shape dimension is negative (-1)");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})"),
                     std::nullopt, "is not a whole number");
  expect_parse_error(
      raw_header(R"({"a": {"dtype": "F32", "shape": [99999999999999999999999], "data_offsets": [0, 4]}})"),
      std::nullopt, "is not a whole number in range");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})"), std::nullopt,
                     "run backwards");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})"),
                     std::nullopt, "exactly 2 numbers");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1]}})"), std::nullopt,
                     "missing field(s): data_offsets");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})"),
                     std::nullopt, "unknown field 'x'");
  expect_parse_error(raw_header(R"({"a": [1, 2]})"), std::nullopt, "tensor 'a' must be an object");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [[1]], "data_offsets": [0, 4]}})"), std::nullopt,
                     "shape holds an array");
  expect_parse_error(raw_header(R"({"__metadata__": {"k": 1}})"), std::nullopt, "must be a string");
  expect_parse_error(raw_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})"),
                     std::nullopt, "tensor 'a' appears twice");
  // Deep nesting is refused at the second level, not recursed into.
  expect_parse_error(raw_header(std::string(100000, '[') + std::string(100000, ']')), std::nullopt,
                     "not a JSON object");
  expect_parse_error(raw_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [" + std::string(50000, '[')), std::nullopt,
                     "shape holds an array");
}

TEST_CASE("mutated headers only ever throw clusterkit::Error", "[model][safetensors][fuzz]") {
  std::uint64_t data = 0;
  auto const valid = header_bytes({{"model.embed.weight", "BF16", {16, 8}},
                                   {"model.layers.0.w", "F32", {8, 8}},
                                   {"model.layers.0.b", "F16", {8}},
                                   {"scalar", "I64", {}}},
                                  data, json{{"format", "pt"}, {"k", "v"}});
  std::mt19937_64 rng(20240607);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1)); };
  static char const tokens[] = "{}[],:\"0123456789-.eE \\uFfnulltrue";
  int parsed = 0, refused = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string b = valid;
    int edits = 1 + static_cast<int>(pick(4));
    for (int k = 0; k < edits; ++k) {
      if (b.size() <= 8) break;  // cut into the length: nothing left to edit
      switch (pick(7)) {
        case 0: b[8 + pick(b.size() - 8)] = static_cast<char>(rng()); break;
        case 1: b[8 + pick(b.size() - 8)] = tokens[pick(sizeof tokens - 1)]; break;
        case 2: b.insert(8 + pick(b.size() - 8), 1, tokens[pick(sizeof tokens - 1)]); break;
        case 3: {
          auto at = 8 + pick(b.size() - 8);
          b.erase(at, pick(8));
          break;
        }
        case 4: b[pick(8)] = static_cast<char>(rng()); break;  // the length
        case 5: b.resize(pick(b.size() + 1)); break;           // cut short
        case 6: {
          // Swap a digit inside the JSON for a huge number.
          auto at = b.find_first_of("0123456789", 8 + pick(b.size() - 8));
          if (at != std::string::npos) b.insert(at, "18446744073709551615");
          break;
        }
      }
    }
    std::optional<std::uint64_t> size;
    if (pick(2)) size = pick(4) == 0 ? rng() : b.size() + data - 8 + pick(16);
    try {
      auto h = clusterkit::parse_safetensors_header(b, size, "fuzz");
      // Whatever parses is self-consistent.
      std::uint64_t expect = 0;
      for (auto const& t : h.tensors) {
        REQUIRE(t.begin == expect);
        expect = t.end;
      }
      REQUIRE(h.data_bytes == expect);
      ++parsed;
    } catch (Error const& e) {
      REQUIRE(e.code() == errc::parse_error);
      ++refused;
    } catch (std::exception const& e) {
      FAIL("unexpected exception type: " << e.what());
    }
  }
  CHECK(parsed + refused == 20000);
  CHECK(refused > 10000);
  CHECK(parsed > 0);
}

TEST_CASE("read_safetensors_header reads only the header", "[model][safetensors]") {
  TempDir tmp;
  auto path = tmp.path / "big.safetensors";
  // 1 GiB of (sparse) weights: only the header is read.
  auto size = write_safetensors(path, {{"w", "BF16", {32768, 16384}}}, /*sparse=*/true);
  auto f = clusterkit::read_safetensors_header(path);
  CHECK(f.file_size == size);
  CHECK(f.header.data_bytes == 1073741824ull);
  CHECK(f.header.expected_file_size() == size);

  // A length prefix of 2^60 is refused before anything is allocated.
  {
    std::string bad = raw_header("{}");
    bad[7] = 0x10;
    write_text(tmp.path / "huge.safetensors", bad);
    try {
      clusterkit::read_safetensors_header(tmp.path / "huge.safetensors");
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::parse_error);
      CHECK(std::string(e.what()).find("huge.safetensors") != std::string::npos);
    }
  }
  write_text(tmp.path / "tiny.safetensors", "abc");
  CHECK_THROWS_AS(clusterkit::read_safetensors_header(tmp.path / "tiny.safetensors"), Error);
  CHECK_THROWS_AS(clusterkit::read_safetensors_header(tmp.path / "absent.safetensors"), Error);
}

TEST_CASE("inspect_model sums the headers exactly", "[model]") {
  TempDir tmp;
  auto m = write_small_model(tmp.path);
  auto f = clusterkit::inspect_model(tmp.path);
  // Per layer: q 64+8, k 32+4, v 32+4, o 64, gate 128, up 128, down 128,
  // norms 16 = 608; embed 256, lm_head 256, norm 8 -> 2 x 608 + 520 = 1736.
  CHECK(m.params == 1736);
  CHECK(f.parameter_count == 1736);
  CHECK(f.bytes_per_dtype.at("F32") == (2 * 16 + 8) * 4);
  CHECK(f.bytes_per_dtype.at("BF16") == (1736 - 40) * 2);
  CHECK(f.total_tensor_bytes == 160 + 3392);
  CHECK(f.tensor_count() == 27);
  CHECK(f.hidden_size == 8);
  CHECK(f.num_key_value_heads == 2);
  CHECK(f.head_dim == 2);
  CHECK_FALSE(f.tie_word_embeddings);
  CHECK(f.torch_dtype == "bfloat16");
  CHECK(f.architectures == std::vector<std::string>{"Qwen2ForCausalLM"});
  // KV per token: 2 x 2 layers x 2 heads x 2 dims x 2 bytes.
  CHECK(f.kv_bytes_per_token() == 32);
  CHECK(f.kv_bytes_per_token(1) == 16);
  REQUIRE(f.shards.size() == 2);
  CHECK(f.shards[0].file == "model-00001-of-00002.safetensors");
  CHECK(f.shards[0].data_bytes == (608 - 16) * 2 + 16 * 4 + 256 * 2);
  CHECK(f.shards[0].expected_file_size == f.shards[0].file_size);
  CHECK(f.shards[0].expected_file_size == 8 + f.shards[0].header_bytes + f.shards[0].data_bytes);
  CHECK(f.warnings.empty());
  auto j = f.to_json();
  CHECK(j["parameter_count"] == 1736);
  CHECK(j["shards"].size() == 2);
}

TEST_CASE("inspect_model without an index, tied embeddings and nested text_config", "[model]") {
  TempDir tmp;
  json config = {{"architectures", {"SomeVLForConditionalGeneration"}},
                 {"model_type", "some_vl"},
                 {"torch_dtype", "bfloat16"},
                 {"text_config",
                  {{"hidden_size", 4},
                   {"num_hidden_layers", 1},
                   {"num_attention_heads", 2},
                   {"vocab_size", 10},
                   {"intermediate_size", 8}}}};
  write_text(tmp.path / "config.json", config.dump());
  write_safetensors(tmp.path / "model.safetensors",
                    {{"model.embed_tokens.weight", "BF16", {10, 4}}, {"model.layers.0.mlp.up_proj.weight", "BF16", {8, 4}}});
  auto f = clusterkit::inspect_model(tmp.path);
  CHECK(f.parameter_count == 72);
  CHECK(f.hidden_size == 4);
  CHECK(f.num_key_value_heads == 2);  // defaults to the attention heads
  CHECK(f.head_dim == 2);
  CHECK(f.tie_word_embeddings);  // no lm_head tensor and the config does not say
  CHECK(f.architectures.front() == "SomeVLForConditionalGeneration");
  CHECK(f.shards.size() == 1);
}

TEST_CASE("inspect_model errors name the missing piece", "[model]") {
  TempDir tmp;
  CHECK_THROWS_AS(clusterkit::inspect_model(tmp.path / "nope"), Error);
  write_text(tmp.path / "config.json", R"({"hidden_size": 8})");
  try {
    clusterkit::inspect_model(tmp.path);
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::local_file_error);
    CHECK(std::string(e.what()).find("no *.safetensors") != std::string::npos);
  }
  write_text(tmp.path / "config.json", R"({"hidden_size": "eight"})");
  try {
    clusterkit::inspect_model(tmp.path);
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::parse_error);
    CHECK(std::string(e.what()).find("hidden_size must be a non-negative integer") != std::string::npos);
  }
  TempDir tmp2;
  write_small_model(tmp2.path);
  fs::remove(tmp2.path / "model-00002-of-00002.safetensors");
  try {
    clusterkit::inspect_model(tmp2.path);
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::local_file_error);
    CHECK(std::string(e.what()).find("model-00002-of-00002.safetensors listed in model.safetensors.index.json is "
                                     "missing") != std::string::npos);
  }
}

TEST_CASE("shards that are not files are named as what they are", "[model]") {
  // Issue 15: a looping symlink and a FIFO named *.safetensors were reported
  // as "no *.safetensors files (a .bin-only checkpoint?)".
  TempDir tmp;
  write_text(tmp.path / "config.json", R"({"hidden_size": 8})");
  fs::create_symlink("loop.safetensors", tmp.path / "loop.safetensors");
  REQUIRE(::mkfifo((tmp.path / "model.safetensors").c_str(), 0600) == 0);
  fs::create_symlink("gone", tmp.path / "dangling.safetensors");
  try {
    clusterkit::inspect_model(tmp.path);
    FAIL("expected an error");
  } catch (Error const& e) {
    std::string what = e.what();
    CHECK(what.find("has no usable *.safetensors file") != std::string::npos);
    CHECK(what.find("loop.safetensors is a symlink that loops") != std::string::npos);
    CHECK(what.find("model.safetensors is a FIFO") != std::string::npos);
    CHECK(what.find("dangling.safetensors is a symlink to nothing") != std::string::npos);
    CHECK(what.find(".bin-only") == std::string::npos);
  }
}

TEST_CASE("verify_model passes a complete model and reports every problem of a broken one", "[model][verify]") {
  TempDir tmp;
  auto const dir = tmp.path;
  write_small_model(dir);
  auto ok = clusterkit::verify_model(dir);
  CHECK(ok.ok());
  CHECK(ok.shards_checked == 2);
  CHECK(ok.tensors_checked == 27);
  CHECK(ok.files_hashed == 0);

  SECTION("truncated shard") {
    auto shard = dir / "model-00002-of-00002.safetensors";
    auto size = fs::file_size(shard);
    fs::resize_file(shard, size - 100);
    auto r = clusterkit::verify_model(dir);
    REQUIRE(r.problems.size() == 1);
    CHECK(r.problems[0].kind == clusterkit::VerifyProblemKind::truncated);
    CHECK(r.problems[0].file == "model-00002-of-00002.safetensors");
    CHECK(r.problems[0].message.find("(100 bytes missing)") != std::string::npos);
  }
  SECTION("missing shard, tensor not where the index says, trailing bytes: all reported") {
    fs::remove(dir / "model-00001-of-00002.safetensors");
    auto index = json::parse(std::ifstream(dir / "model.safetensors.index.json"));
    index["weight_map"]["model.layers.9.extra.weight"] = "model-00002-of-00002.safetensors";
    write_text(dir / "model.safetensors.index.json", index.dump());
    {
      std::ofstream out(dir / "model-00002-of-00002.safetensors", std::ios::binary | std::ios::app);
      out << "junk";
    }
    auto r = clusterkit::verify_model(dir);
    REQUIRE(r.problems.size() == 3);
    CHECK(r.problems[0].kind == clusterkit::VerifyProblemKind::shard_missing);
    CHECK(r.problems[0].file == "model-00001-of-00002.safetensors");
    CHECK(r.problems[1].kind == clusterkit::VerifyProblemKind::trailing_bytes);
    CHECK(r.problems[1].message.find("4 bytes after its last tensor") != std::string::npos);
    CHECK(r.problems[2].kind == clusterkit::VerifyProblemKind::tensor_missing);
    CHECK(r.problems[2].message.find("'model.layers.9.extra.weight'") != std::string::npos);
    auto j = r.to_json();
    CHECK(j["ok"] == false);
    CHECK(j["problems"][0]["kind"] == "shard_missing");
  }
  SECTION("sha256 manifest: match, then mismatch") {
    auto a = clusterkit::sha256_file(dir / "model-00001-of-00002.safetensors");
    auto b = clusterkit::sha256_file(dir / "model-00002-of-00002.safetensors");
    write_text(dir / "sha256sums", a + "  model-00001-of-00002.safetensors\n" + b +
                                       " *model-00002-of-00002.safetensors\n");
    auto r = clusterkit::verify_model(dir);
    CHECK(r.ok());
    CHECK(r.files_hashed == 2);
    CHECK(r.bytes_hashed == fs::file_size(dir / "model-00001-of-00002.safetensors") +
                                fs::file_size(dir / "model-00002-of-00002.safetensors"));
    // Same size, different content: only the checksum can tell.
    {
      std::fstream f(dir / "model-00002-of-00002.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-1, std::ios::end);
      f.put('\x55');
    }
    auto bad = clusterkit::verify_model(dir);
    REQUIRE(bad.problems.size() == 1);
    CHECK(bad.problems[0].kind == clusterkit::VerifyProblemKind::checksum_mismatch);
    CHECK(bad.problems[0].message.find("expects " + b) != std::string::npos);
    clusterkit::VerifyOptions skip;
    skip.skip_checksums = true;
    CHECK(clusterkit::verify_model(dir, skip).ok());
    clusterkit::VerifyOptions other;
    other.manifest = dir / "absent-manifest";
    auto m = clusterkit::verify_model(dir, other);
    REQUIRE(m.problems.size() == 1);
    CHECK(m.problems[0].kind == clusterkit::VerifyProblemKind::manifest_missing);
  }
}

TEST_CASE("sha256: known digests, manifests, parallel hashing", "[model][sha256]") {
  TempDir tmp;
  write_text(tmp.path / "abc", "abc");
  write_text(tmp.path / "empty", "");
  CHECK(clusterkit::sha256_file(tmp.path / "abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(clusterkit::sha256_file(tmp.path / "empty") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // 1,000,000 x 'a' (a NIST test vector), hashed with a small buffer.
  write_text(tmp.path / "million", std::string(1000000, 'a'));
  CHECK(clusterkit::sha256_file(tmp.path / "million", 4096) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

  clusterkit::HashOptions opt;
  opt.threads = 3;
  std::size_t calls = 0;
  std::uint64_t last_bytes = 0;
  opt.on_progress = [&](clusterkit::HashProgress const& p) {
    ++calls;
    last_bytes = p.bytes_done;
    CHECK(p.bytes_total == 1000003);
  };
  auto d = clusterkit::sha256_files({tmp.path / "abc", tmp.path / "missing", tmp.path / "million", tmp.path / "empty"},
                                    opt);
  REQUIRE(d.size() == 4);
  CHECK(d[0].sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(d[1].sha256.empty());
  CHECK(d[1].error.find("cannot open") != std::string::npos);
  CHECK(d[2].bytes == 1000000);
  CHECK(d[3].bytes == 0);
  CHECK(calls >= 4);
  CHECK(last_bytes == 1000003);

  std::stop_source stop;
  stop.request_stop();
  clusterkit::HashOptions cancelled;
  cancelled.stop = stop.get_token();
  try {
    clusterkit::sha256_files({tmp.path / "million"}, cancelled);
    FAIL("expected cancellation");
  } catch (Error const& e) {
    CHECK(e.code() == errc::cancelled);
  }

  auto entries = clusterkit::parse_sha256_manifest(
      "# comment\n\nBA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD  a b.txt\r\n" +
      std::string(64, '0') + " *bin\n");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(entries[0].file == "a b.txt");
  CHECK(entries[1].file == "bin");
  CHECK(clusterkit::format_sha256_manifest(entries) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a b.txt\n" + std::string(64, '0') +
            "  bin\n");
  try {
    clusterkit::parse_sha256_manifest("ok\n" + std::string(63, 'a') + "g  file\n", "sums");
    FAIL("expected an error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::parse_error);
    CHECK(std::string(e.what()).find("sums line 1") != std::string::npos);
  }
  CHECK_THROWS_AS(clusterkit::parse_sha256_manifest(std::string(64, 'a') + "  \n"), Error);
  // Only files of the model folder: a manifest cannot make verify read
  // /etc/shadow or climb out with .. (issue 15).
  for (auto const* outside : {"/etc/shadow", "../../../etc/shadow", "sub/../../x", ".."}) {
    try {
      clusterkit::parse_sha256_manifest(std::string(64, 'a') + "  " + outside + "\n", "sums");
      FAIL(std::string("accepted ") + outside);
    } catch (Error const& e) {
      CHECK(e.code() == errc::parse_error);
      CHECK(std::string(e.what()).find("is outside the model folder") != std::string::npos);
    }
  }
  CHECK(clusterkit::parse_sha256_manifest(std::string(64, 'a') + "  sub/a..b\n").at(0).file == "sub/a..b");
}

TEST_CASE("verify never reads what is not a regular file of the folder", "[model][verify]") {
  TempDir tmp;
  write_small_model(tmp.path);
  // A FIFO named in the manifest would block the hashing for ever.
  REQUIRE(::mkfifo((tmp.path / "pipe").c_str(), 0600) == 0);
  write_text(tmp.path / "sha256sums", std::string(64, 'a') + "  pipe\n");
  auto r = clusterkit::verify_model(tmp.path);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].kind == clusterkit::VerifyProblemKind::file_unreadable);
  CHECK(r.problems[0].message.find("not a regular file") != std::string::npos);
}

TEST_CASE("estimate_tensors_from_config matches a written model", "[model]") {
  TempDir tmp;
  write_small_model(tmp.path);
  auto inspected = clusterkit::inspect_model(tmp.path);
  auto f = clusterkit::model_facts_from_config(inspected.config);
  clusterkit::estimate_tensors_from_config(f);
  CHECK(f.weights_estimated);
  // The estimate keeps norms in the model dtype (the written model has F32
  // norms): same parameter count, 40 x 2 fewer bytes.
  CHECK(f.parameter_count == inspected.parameter_count);
  CHECK(f.total_tensor_bytes == inspected.total_tensor_bytes - 40 * 2);
  CHECK(f.tensor_count() == inspected.tensor_count());
  auto moe = inspected.config;
  moe["num_experts"] = 8;
  auto g = clusterkit::model_facts_from_config(moe);
  CHECK_THROWS_AS(clusterkit::estimate_tensors_from_config(g), Error);
}

TEST_CASE("known model configs: compiled in, equal to examples/models, found by id or folder", "[model][known]") {
  auto const root = fs::path(CK_SOURCE_DIR) / "examples" / "models";
  std::map<std::string, std::string> folder_of{{"Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B-Instruct"},
                                               {"Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct"},
                                               {"meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct"}};
  auto ids = clusterkit::known_model_ids();
  REQUIRE(ids.size() == folder_of.size());
  for (auto const& id : ids) {
    INFO(id);
    REQUIRE(folder_of.count(id));
    std::ifstream in(root / folder_of[id] / "config.json");
    REQUIRE(in);
    CHECK(*clusterkit::known_model_config(id) == nlohmann::json::parse(in));  // the shipped file, exactly
  }
  // Any case, the folder name, ModelScope's folder name.
  CHECK(clusterkit::known_model_config("qwen2.5-72b-instruct"));
  CHECK(clusterkit::known_model_config("Qwen2___5-72B-Instruct"));
  CHECK_FALSE(clusterkit::known_model_config("Qwen/Qwen2.5-72B"));
  CHECK_FALSE(clusterkit::known_model_config("other/Qwen2.5-72B-Instruct"));
  // The seed's model, sized from its config alone: REFERENCES.md's facts.
  auto facts = clusterkit::model_facts_from_config(*clusterkit::known_model_config("Qwen/Qwen2.5-72B-Instruct"));
  clusterkit::estimate_tensors_from_config(facts);
  CHECK(facts.num_hidden_layers == 80);
  CHECK(facts.num_key_value_heads == 8);
  CHECK(facts.kv_bytes_per_token() == 320 * 1024);
  CHECK(facts.parameter_count > 72600000000ull);
  CHECK(facts.parameter_count < 72800000000ull);
}
