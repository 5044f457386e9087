#include "clusterkit/model.hpp"
#include "core/text.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace clusterkit {

namespace fs = std::filesystem;
using nlohmann::json;

using detail::join;

namespace {

[[noreturn]] void fail(errc code, std::string const& message) { throw Error(make_error_code(code), message); }

std::string squote(std::string_view s) {
  std::string out = "'";
  out += s;
  out += "'";
  return out;
}

std::string with_commas(std::uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  int n = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (n && n % 3 == 0) out.push_back(',');
    out.push_back(*it);
    ++n;
  }
  return {out.rbegin(), out.rend()};
}

/// RAII file descriptor.
class Fd {
public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd const&) = delete;
  Fd& operator=(Fd const&) = delete;
  int get() const { return fd_; }

private:
  int fd_;
};

std::string errno_text(int err) { return std::strerror(err); }

/// pread until `len` bytes are read; false on a short file.
bool pread_full(int fd, char* buf, std::size_t len, std::uint64_t offset, int& err) {
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return false;
    }
    if (n == 0) {
      err = 0;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads a small text file (config, index, manifest) with a size cap.
std::string read_small_file(fs::path const& path, std::uint64_t cap = 64ull << 20) {
  // O_NONBLOCK: a FIFO under a model file's name must not hang the open (it is
  // refused below as not a regular file); no effect on regular files.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) fail(errno == ENOENT ? errc::file_not_found : errc::local_file_error, "cannot open " + path.string() + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    fail(errc::local_file_error, "cannot stat " + path.string() + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(errc::local_file_error, path.string() + " is not a regular file");
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > cap)
    fail(errc::parse_error, path.string() + " is " + with_commas(size) + " bytes, more than the " +
                                with_commas(cap) + " bytes such a file can reasonably have");
  std::string text(size, '\0');
  int err = 0;
  if (size && !pread_full(fd.get(), text.data(), size, 0, err))
    fail(errc::local_file_error, "cannot read " + path.string() + ": " + (err ? errno_text(err) : "file shrank"));
  return text;
}

json parse_json_file(fs::path const& path) {
  auto text = read_small_file(path);
  try {
    return json::parse(text);
  } catch (json::exception const& e) {
    fail(errc::parse_error, path.string() + " is not valid JSON: " + e.what());
  }
}

bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

// --- safetensors SAX handler ------------------------------------------------
//
// Builds TensorInfo records straight from the token stream: no DOM, bounded
// nesting, a bounded number of dimensions, so memory stays proportional to
// the (already capped) header size.

constexpr std::size_t max_dims = 64;

class HeaderSax {
public:
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  std::string error;

  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return value_error("null"); }
  bool boolean(bool) { return value_error("a boolean"); }
  bool number_integer(number_integer_t v) {
    if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
    return number_error("is negative (" + std::to_string(v) + ")");
  }
  bool number_unsigned(number_unsigned_t v) {
    if (state_ == State::shape) {
      auto& t = tensors.back();
      if (t.shape.size() >= max_dims) return set_error(tensor_ref() + ": shape has more than 64 dimensions");
      t.shape.push_back(v);
      return true;
    }
    if (state_ == State::offsets) {
      if (offsets_seen_ >= 2) return set_error(tensor_ref() + ": data_offsets must have exactly 2 numbers");
      (offsets_seen_ == 0 ? tensors.back().begin : tensors.back().end) = v;
      ++offsets_seen_;
      return true;
    }
    return value_error("a number");
  }
  bool number_float(number_float_t, string_t const& text) {
    return number_error("is not a whole number in range (" + text + ")");
  }
  bool string(string_t& s) {
    if (state_ == State::metadata_value) {
      metadata[pending_key_] = s;
      state_ = State::metadata;
      return true;
    }
    if (state_ == State::tensor_value && field_ == Field::dtype) {
      tensors.back().dtype = s;
      state_ = State::tensor;
      return true;
    }
    return value_error("a string");
  }
  bool binary(binary_t&) { return value_error("binary data"); }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::start: state_ = State::top; return true;
      case State::top_value:
        if (pending_key_ == "__metadata__") {
          if (seen_metadata_) return set_error("\"__metadata__\" appears twice");
          seen_metadata_ = true;
          state_ = State::metadata;
        } else {
          tensors.push_back(TensorInfo{pending_key_, {}, {}, 0, 0});
          have_ = 0;
          state_ = State::tensor;
        }
        return true;
      default: return value_error("an object");
    }
  }
  bool key(string_t& k) {
    switch (state_) {
      case State::top:
        pending_key_ = k;
        state_ = State::top_value;
        return true;
      case State::metadata:
        pending_key_ = k;
        state_ = State::metadata_value;
        return true;
      case State::tensor: {
        Field f;
        if (k == "dtype") f = Field::dtype;
        else if (k == "shape") f = Field::shape;
        else if (k == "data_offsets") f = Field::offsets;
        else return set_error(tensor_ref() + ": unknown field " + squote(k));
        unsigned bit = 1u << static_cast<unsigned>(f);
        if (have_ & bit) return set_error(tensor_ref() + ": field " + squote(k) + " appears twice");
        have_ |= bit;
        field_ = f;
        state_ = State::tensor_value;
        return true;
      }
      default: return set_error("unexpected key " + squote(k));
    }
  }
  bool end_object() {
    switch (state_) {
      case State::top: state_ = State::done; return true;
      case State::metadata: state_ = State::top; return true;
      case State::tensor:
        if (have_ != 7u) {
          std::string missing;
          if (!(have_ & 1u)) missing += " dtype";
          if (!(have_ & 2u)) missing += " shape";
          if (!(have_ & 4u)) missing += " data_offsets";
          return set_error(tensor_ref() + ": missing field(s):" + missing);
        }
        state_ = State::top;
        return true;
      default: return set_error("unexpected end of object");
    }
  }
  bool start_array(std::size_t) {
    if (state_ == State::tensor_value && field_ == Field::shape) {
      state_ = State::shape;
      return true;
    }
    if (state_ == State::tensor_value && field_ == Field::offsets) {
      state_ = State::offsets;
      offsets_seen_ = 0;
      return true;
    }
    return value_error("an array");
  }
  bool end_array() {
    if (state_ == State::shape) {
      state_ = State::tensor;
      return true;
    }
    if (state_ == State::offsets) {
      if (offsets_seen_ != 2) return set_error(tensor_ref() + ": data_offsets must have exactly 2 numbers");
      state_ = State::tensor;
      return true;
    }
    return set_error("unexpected end of array");
  }
  bool parse_error(std::size_t position, std::string const&, nlohmann::detail::exception const& ex) {
    if (error.empty()) error = "invalid JSON at byte " + std::to_string(position) + ": " + ex.what();
    return false;
  }

private:
  enum class State { start, top, top_value, metadata, metadata_value, tensor, tensor_value, shape, offsets, done };
  enum class Field : unsigned { dtype = 0, shape = 1, offsets = 2 };

  std::string tensor_ref() const {
    return tensors.empty() ? std::string("header") : "tensor " + squote(tensors.back().name);
  }
  bool set_error(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  bool number_error(std::string const& what) {
    if (state_ == State::shape) return set_error(tensor_ref() + ": a shape dimension " + what);
    if (state_ == State::offsets) return set_error(tensor_ref() + ": a data offset " + what);
    return value_error("a number");
  }
  bool value_error(std::string const& what) {
    switch (state_) {
      case State::start: return set_error("the header is not a JSON object (found " + what + ")");
      case State::top_value:
        return set_error(pending_key_ == "__metadata__"
                             ? "\"__metadata__\" must be an object of strings, found " + what
                             : "tensor " + squote(pending_key_) + " must be an object, found " + what);
      case State::metadata_value:
        return set_error("\"__metadata__\" value " + squote(pending_key_) + " must be a string, found " + what);
      case State::tensor_value:
        switch (field_) {
          case Field::dtype: return set_error(tensor_ref() + ": dtype must be a string, found " + what);
          case Field::shape: return set_error(tensor_ref() + ": shape must be an array, found " + what);
          case Field::offsets: return set_error(tensor_ref() + ": data_offsets must be an array, found " + what);
        }
        break;
      case State::shape: return set_error(tensor_ref() + ": shape holds " + what + ", not a dimension");
      case State::offsets: return set_error(tensor_ref() + ": data_offsets holds " + what + ", not an offset");
      default: break;
    }
    return set_error("unexpected " + what);
  }

  State state_ = State::start;
  Field field_ = Field::dtype;
  std::string pending_key_;
  unsigned have_ = 0;
  unsigned offsets_seen_ = 0;
  bool seen_metadata_ = false;
};

std::uint64_t read_le64(char const* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------

std::string_view to_string(ModelLayout layout) noexcept {
  switch (layout) {
    case ModelLayout::plain: return "plain";
    case ModelLayout::modelscope: return "modelscope";
    case ModelLayout::huggingface: return "huggingface";
  }
  return "plain";
}

std::string modelscope_folder_name(std::string_view model_id) {
  std::string out;
  out.reserve(model_id.size() + 8);
  for (char c : model_id) {
    if (c == '.') out += "___";
    else out.push_back(c);
  }
  return out;
}

std::string huggingface_cache_folder_name(std::string_view model_id) {
  std::string out = "models--";
  for (char c : model_id) {
    if (c == '/') out += "--";
    else out.push_back(c);
  }
  return out;
}

namespace {

bool looks_like_path(std::string_view s) {
  return s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s.starts_with('~') || s == "." ||
         s == "..";
}

fs::path expand_home(std::string_view s) {
  if (s.starts_with('~')) {
    char const* home = std::getenv("HOME");
    if (home && (s.size() == 1 || s[1] == '/')) return fs::path(home) / std::string(s.substr(s.size() > 1 ? 2 : 1));
  }
  return fs::path(std::string(s));
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> list_subdirs(fs::path const& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (it->is_directory(ec2)) out.push_back(it->path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Checks a plain / ModelScope candidate; returns why it is rejected or "".
std::string check_model_dir(fs::path const& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return "does not exist";
  if (!fs::is_directory(dir, ec)) return "is not a folder";
  if (!fs::exists(dir / "config.json", ec)) return "has no config.json";
  return {};
}

/// Picks the snapshot of an HF cache repository folder. Sets `why` when the
/// candidate is rejected; throws when it is ambiguous.
fs::path pick_hf_snapshot(fs::path const& repo, std::string_view revision, std::string& rev_out, std::string& why) {
  std::error_code ec;
  if (!fs::exists(repo, ec)) {
    why = "does not exist";
    return {};
  }
  auto snapshots_dir = repo / "snapshots";
  auto snapshots = list_subdirs(snapshots_dir);
  auto read_ref = [&](std::string_view ref) -> std::string {
    auto ref_path = repo / "refs" / std::string(ref);
    if (!fs::is_regular_file(ref_path, ec)) return {};
    try {
      return trim(read_small_file(ref_path, 4096));
    } catch (Error const&) {
      return {};
    }
  };
  std::string chosen;
  if (!revision.empty()) {
    chosen = read_ref(revision);
    if (chosen.empty()) chosen = std::string(revision);
    if (!std::binary_search(snapshots.begin(), snapshots.end(), chosen)) {
      why = "has no snapshot for revision " + squote(revision) +
            (snapshots.empty() ? " (no snapshots)" : " (snapshots: " + join(snapshots, ", ") + ")");
      return {};
    }
  } else if (auto main = read_ref("main"); !main.empty()) {
    if (!std::binary_search(snapshots.begin(), snapshots.end(), main)) {
      why = "refs/main names " + main + ", which is not in snapshots/";
      return {};
    }
    chosen = main;
  } else if (snapshots.size() == 1) {
    chosen = snapshots.front();
  } else if (snapshots.empty()) {
    why = "has no snapshots";
    return {};
  } else {
    fail(errc::invalid_argument, repo.string() + " has several snapshots (" + join(snapshots, ", ") +
                                     ") and no refs/main: name the revision to use");
  }
  auto dir = snapshots_dir / chosen;
  if (auto w = check_model_dir(dir); !w.empty()) {
    why = "snapshot " + chosen + " " + w;
    return {};
  }
  rev_out = chosen;
  return dir;
}

}  // namespace

std::vector<ModelCandidate> model_candidates(std::string_view id_or_path, fs::path const& root) {
  if (trim(id_or_path).empty()) fail(errc::invalid_argument, "a model id or folder is needed (e.g. Qwen/Qwen2.5-72B-Instruct)");
  std::vector<ModelCandidate> out;
  auto add = [&](fs::path p, ModelLayout layout) {
    for (auto const& c : out)
      if (c.path == p) return;
    out.push_back({std::move(p), layout, {}});
  };
  if (looks_like_path(id_or_path)) {
    add(expand_home(id_or_path), ModelLayout::plain);
    return out;
  }
  std::string id(id_or_path);
  while (!id.empty() && id.back() == '/') id.pop_back();
  if (!root.empty()) {
    auto ms = modelscope_folder_name(id);
    if (ms != id) add(root / ms, ModelLayout::modelscope);
    add(root / id, ModelLayout::plain);
    if (std::count(id.begin(), id.end(), '/') == 1) {
      auto hf = huggingface_cache_folder_name(id);
      add(root / hf, ModelLayout::huggingface);
      add(root / "hub" / hf, ModelLayout::huggingface);
    }
  }
  add(fs::path(id), ModelLayout::plain);
  return out;
}

ModelLocation resolve_model(std::string_view id_or_path, fs::path const& root, std::string_view revision) {
  ModelLocation loc;
  for (auto cand : model_candidates(id_or_path, root)) {
    if (cand.layout == ModelLayout::huggingface) {
      std::string rev;
      auto dir = pick_hf_snapshot(cand.path, revision, rev, cand.rejected_because);
      loc.tried.push_back(cand);
      if (cand.rejected_because.empty()) {
        loc.dir = dir;
        loc.layout = cand.layout;
        loc.revision = rev;
        return loc;
      }
    } else {
      cand.rejected_because = check_model_dir(cand.path);
      loc.tried.push_back(cand);
      if (cand.rejected_because.empty()) {
        loc.dir = cand.path;
        loc.layout = cand.layout;
        return loc;
      }
    }
  }
  std::string msg = "model " + squote(id_or_path) + " not found";
  if (!root.empty()) msg += " under " + root.string();
  msg += "; looked in:";
  for (auto const& c : loc.tried) msg += "\n  " + c.path.string() + " (" + std::string(to_string(c.layout)) + "): " + c.rejected_because;
  fail(errc::file_not_found, msg);
}

// ---------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------

std::uint64_t safetensors_dtype_size(std::string_view dtype) noexcept {
  static constexpr std::pair<std::string_view, std::uint64_t> table[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8},
  };
  for (auto const& [name, size] : table)
    if (name == dtype) return size;
  return 0;
}

std::uint64_t TensorInfo::elements() const noexcept {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors_header(std::string_view prefix, std::optional<std::uint64_t> file_size,
                                           std::string_view source) {
  auto bad = [&](std::string const& what) -> void { fail(errc::parse_error, std::string(source) + ": " + what); };
  if (prefix.size() < 8) {
    bad("too short for a safetensors file (" + std::to_string(prefix.size()) + " bytes, the length alone takes 8)");
  }
  SafetensorsHeader h;
  h.header_bytes = read_le64(prefix.data());
  auto const n = h.header_bytes;
  if (n > max_safetensors_header_bytes)
    bad("header length " + with_commas(n) + " is larger than the " + with_commas(max_safetensors_header_bytes) +
        "-byte limit (not a safetensors file, or corrupted)");
  if (file_size && n > *file_size - std::min<std::uint64_t>(*file_size, 8))
    bad("header length " + with_commas(n) + " is larger than the file (" + with_commas(*file_size) + " bytes)");
  if (n < 2) bad("header length " + std::to_string(n) + " is too small for a JSON object");
  if (prefix.size() - 8 < n)
    bad("header is cut short: it is " + with_commas(n) + " bytes but only " + with_commas(prefix.size() - 8) +
        " follow the length");

  std::string_view text = prefix.substr(8, n);
  HeaderSax sax;
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax);
  } catch (json::exception const& e) {
    if (sax.error.empty()) sax.error = std::string("invalid JSON: ") + e.what();
  }
  if (!ok || !sax.error.empty()) bad(sax.error.empty() ? "invalid JSON header" : sax.error);

  // Names must be unique (JSON allows duplicate keys; a hidden duplicate
  // would make two tensors claim one name).
  {
    std::vector<std::string_view> names;
    names.reserve(sax.tensors.size());
    for (auto const& t : sax.tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) bad("tensor " + squote(*dup) + " appears twice");
  }

  for (auto const& t : sax.tensors) {
    auto ref = "tensor " + squote(t.name);
    auto size = safetensors_dtype_size(t.dtype);
    if (size == 0) bad(ref + ": unknown dtype " + squote(t.dtype));
    if (t.begin > t.end)
      bad(ref + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] run backwards");
    std::uint64_t count = 1;
    for (auto d : t.shape)
      if (!checked_mul(count, d, count)) bad(ref + ": shape overflows 64 bits");
    std::uint64_t need = 0;
    if (!checked_mul(count, size, need)) bad(ref + ": shape x dtype size overflows 64 bits");
    if (need != t.end - t.begin) {
      std::string shape;
      for (std::size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
      bad(ref + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] cover " +
          with_commas(t.end - t.begin) + " bytes but shape [" + shape + "] x " + t.dtype + " needs " +
          with_commas(need));
    }
  }

  h.tensors = std::move(sax.tensors);
  std::sort(h.tensors.begin(), h.tensors.end(), [](TensorInfo const& a, TensorInfo const& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t expected = 0;
  TensorInfo const* prev = nullptr;
  for (auto const& t : h.tensors) {
    if (t.begin < expected)
      bad("tensor " + squote(t.name) + " (bytes " + std::to_string(t.begin) + ".." + std::to_string(t.end) +
          ") overlaps tensor " + squote(prev->name) + " (bytes " + std::to_string(prev->begin) + ".." +
          std::to_string(prev->end) + ")");
    if (t.begin > expected)
      bad("hole of " + with_commas(t.begin - expected) + " bytes before tensor " + squote(t.name) + " (data offset " +
          std::to_string(expected) + " to " + std::to_string(t.begin) + " belongs to no tensor)");
    expected = t.end;
    prev = &t;
  }
  h.data_bytes = expected;
  h.metadata = std::move(sax.metadata);

  if (file_size) {
    auto region = *file_size - 8 - n;
    if (h.data_bytes > region) {
      auto const* last = h.tensors.empty() ? nullptr : &h.tensors.back();
      bad("tensor " + squote(last ? last->name : "") + " ends at data offset " + with_commas(h.data_bytes) +
          " but the file holds only " + with_commas(region) + " bytes of data (truncated: " +
          with_commas(h.data_bytes - region) + " bytes missing)");
    }
    if (h.data_bytes < region)
      bad(with_commas(region - h.data_bytes) + " bytes follow the last tensor (the data region is " +
          with_commas(region) + " bytes, the tensors end at " + with_commas(h.data_bytes) + ")");
  }
  return h;
}

SafetensorsFile read_safetensors_header(fs::path const& path) {
  SafetensorsFile out;
  out.path = path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));  // a FIFO: refused below, not waited on
  if (fd.get() < 0) fail(errno == ENOENT ? errc::file_not_found : errc::local_file_error, "cannot open " + path.string() + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail(errc::local_file_error, "cannot stat " + path.string() + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(errc::local_file_error, path.string() + " is not a regular file");
  out.file_size = static_cast<std::uint64_t>(st.st_size);
  if (out.file_size < 8)
    fail(errc::parse_error, path.string() + ": " + std::to_string(out.file_size) +
                                " bytes, too short for a safetensors file (the header length alone takes 8)");
  char len_bytes[8];
  int err = 0;
  if (!pread_full(fd.get(), len_bytes, 8, 0, err))
    fail(errc::local_file_error, "cannot read " + path.string() + ": " + (err ? errno_text(err) : "file shrank"));
  auto n = read_le64(len_bytes);
  // Check before allocating: the parser repeats these checks for callers
  // that hand it bytes directly.
  if (n > max_safetensors_header_bytes || n > out.file_size - 8) {
    parse_safetensors_header(std::string_view(len_bytes, 8), out.file_size, path.string());
  }
  std::string buf(8 + n, '\0');
  std::memcpy(buf.data(), len_bytes, 8);
  if (n && !pread_full(fd.get(), buf.data() + 8, n, 8, err))
    fail(errc::local_file_error, "cannot read the header of " + path.string() + ": " +
                                     (err ? errno_text(err) : "file shrank while reading"));
  out.header = parse_safetensors_header(buf, std::nullopt, path.string());
  return out;
}

// ---------------------------------------------------------------------------
// Model facts
// ---------------------------------------------------------------------------

namespace {

json const* text_config_of(json const& config) {
  auto has_layers = [](json const& j) {
    return j.contains("num_hidden_layers") || j.contains("n_layer") || j.contains("num_layers") ||
           j.contains("n_layers");
  };
  if (has_layers(config)) return &config;
  for (auto const* key : {"text_config", "llm_config", "language_config"}) {
    auto it = config.find(key);
    if (it != config.end() && it->is_object() && has_layers(*it)) return &*it;
  }
  if (auto it = config.find("thinker_config"); it != config.end() && it->is_object()) {
    if (auto t = it->find("text_config"); t != it->end() && t->is_object() && has_layers(*t)) return &*t;
  }
  return &config;
}

json const* find_field(json const& primary, json const& fallback, std::initializer_list<char const*> names) {
  for (auto const* obj : {&primary, &fallback}) {
    for (auto const* name : names) {
      auto it = obj->find(name);
      if (it != obj->end() && !it->is_null()) return &*it;
    }
  }
  return nullptr;
}

std::uint64_t get_count(json const& primary, json const& fallback, std::initializer_list<char const*> names,
                        std::string_view source) {
  auto const* v = find_field(primary, fallback, names);
  if (!v) return 0;
  if (v->is_number_unsigned()) return v->get<std::uint64_t>();
  if (v->is_number_integer() && v->get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v->get<std::int64_t>());
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (d >= 0 && d < 1e18 && d == static_cast<double>(static_cast<std::uint64_t>(d)))
      return static_cast<std::uint64_t>(d);
  }
  fail(errc::parse_error, std::string(source) + ": " + *names.begin() + " must be a non-negative integer, found " +
                              v->dump());
}

std::string get_string(json const& primary, json const& fallback, std::initializer_list<char const*> names) {
  auto const* v = find_field(primary, fallback, names);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

std::string torch_dtype_of_safetensors(std::string_view dtype) {
  if (dtype == "BF16") return "bfloat16";
  if (dtype == "F16") return "float16";
  if (dtype == "F32") return "float32";
  if (dtype == "F64") return "float64";
  if (dtype.starts_with("F8")) return "float8";
  return {};
}

std::string safetensors_of_torch_dtype(std::string_view dtype) {
  if (dtype == "bfloat16" || dtype == "bf16") return "BF16";
  if (dtype == "float16" || dtype == "half" || dtype == "fp16") return "F16";
  if (dtype == "float32" || dtype == "float" || dtype == "fp32") return "F32";
  return {};
}

void add_tensor_totals(ModelFacts& f, ModelTensor const& t) {
  std::uint64_t elems = 1;
  for (auto d : t.shape) elems *= d;
  f.parameter_count += elems;
  f.total_tensor_bytes += t.bytes;
  f.bytes_per_dtype[t.dtype] += t.bytes;
  f.parameters_per_dtype[t.dtype] += elems;
}

bool is_lm_head_name(std::string_view name) {
  return name == "lm_head.weight" || name.ends_with(".lm_head.weight") || name == "embed_out.weight" ||
         name == "output.weight";
}

/// The shard names an index maps to, and the tensor -> shard map.
struct IndexInfo {
  std::vector<std::string> shards;
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::optional<std::uint64_t> total_size;
};

/// model.safetensors.index.json read as a token stream: a 72B model's
/// index maps 963 tensors, a 235B MoE's 37k, and building a DOM of it was
/// half of `inspect_model`'s time (bench/models). Only weight_map and
/// metadata.total_size are kept; other fields are skipped at any depth.
class IndexSax {
public:
  IndexInfo info;
  std::string error;
  bool saw_weight_map = false;

  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(number_integer_t) { return scalar("a number"); }
  bool number_unsigned(number_unsigned_t v) {
    if (depth_ == 2 && section_ == Section::metadata && key_ == "total_size") info.total_size = v;
    return scalar("a number");
  }
  bool number_float(number_float_t, string_t const&) { return scalar("a number"); }
  bool binary(binary_t&) { return scalar("binary data"); }
  bool string(string_t& s) {
    if (depth_ == 2 && section_ == Section::weight_map) {
      info.weight_map.emplace_back(std::move(key_), std::move(s));
      return true;
    }
    return scalar("a string");
  }
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(string_t& k) {
    if (depth_ == 1) {
      section_ = k == "weight_map" ? Section::weight_map : k == "metadata" ? Section::metadata : Section::other;
      top_key_ = k;
    } else if (depth_ == 2) {
      key_ = std::move(k);
    }
    return true;
  }
  bool parse_error(std::size_t, std::string const&, nlohmann::detail::exception const& ex) {
    if (error.empty()) error = std::string("not valid JSON: ") + ex.what();
    return false;
  }

private:
  enum class Section { other, weight_map, metadata };

  bool open(bool object) {
    if (depth_ == 0 && !object) return fail_with("not a JSON object");
    if (depth_ == 1 && section_ == Section::weight_map) {
      if (!object) return fail_with("no \"weight_map\" object");
      saw_weight_map = true;
    }
    if (depth_ == 2 && section_ == Section::weight_map)
      return fail_with("weight_map[" + squote(key_) + "] must be a file name");
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  bool scalar(char const* what) {
    if (depth_ == 0) return fail_with(std::string("not a JSON object (found ") + what + ")");
    if (depth_ == 1 && section_ == Section::weight_map) return fail_with("no \"weight_map\" object");
    if (depth_ == 2 && section_ == Section::weight_map)
      return fail_with("weight_map[" + squote(key_) + "] must be a file name");
    return true;
  }
  bool fail_with(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }

  int depth_ = 0;
  Section section_ = Section::other;
  std::string top_key_;
  std::string key_;
};

IndexInfo parse_index_text(std::string_view text, std::string const& where) {
  IndexSax sax;
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax);
  } catch (json::exception const& e) {
    if (sax.error.empty()) sax.error = std::string("not valid JSON: ") + e.what();
  }
  if (!ok || !sax.error.empty()) {
    auto const& e = sax.error;
    fail(errc::parse_error, where + (e.starts_with("not valid JSON") ? " is " : ": ") + (e.empty() ? "invalid JSON" : e));
  }
  if (!sax.saw_weight_map) fail(errc::parse_error, where + ": no \"weight_map\" object");
  IndexInfo info = std::move(sax.info);
  // Each shard once (37k tensors name ~100 files), with the first tensor
  // that names it for the message.
  std::map<std::string_view, std::string_view> shards;
  for (auto const& [tensor, file] : info.weight_map) shards.emplace(file, tensor);
  for (auto const& [file, tensor] : shards) {
    fs::path p(file);
    bool escapes = file.empty() || p.is_absolute();
    for (auto const& part : p)
      if (part == "..") escapes = true;
    if (escapes)
      fail(errc::parse_error, where + ": weight_map[" + squote(tensor) + "] = " + squote(file) +
                                  " is not a file inside the model folder");
    info.shards.emplace_back(file);
  }
  return info;
}

IndexInfo parse_index(fs::path const& path) { return parse_index_text(read_small_file(path), path.string()); }

std::vector<std::string> list_safetensors(fs::path const& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    auto name = it->path().filename().string();
    if (name.ends_with(".safetensors") && it->is_regular_file(ec2)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// *.safetensors entries that are not regular files, each with what it is
// instead: said when no usable shard is left, rather than "no files".
std::vector<std::string> unusable_safetensors(fs::path const& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (!name.ends_with(".safetensors")) continue;
    std::error_code e1, e2;
    auto target = fs::status(it->path(), e1);
    auto self = fs::symlink_status(it->path(), e2);
    if (fs::is_regular_file(target)) continue;
    std::string what;
    if (fs::is_symlink(self) && e1 == std::errc::too_many_symbolic_link_levels) what = "a symlink that loops";
    else if (fs::is_symlink(self) && !fs::exists(target)) what = "a symlink to nothing";
    else if (fs::is_fifo(target)) what = "a FIFO";
    else if (fs::is_directory(target)) what = "a folder";
    else if (fs::is_block_file(target) || fs::is_character_file(target)) what = "a device";
    else if (fs::is_socket(target)) what = "a socket";
    else what = "not a regular file";
    out.push_back(name + " is " + what);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool config_states_tie(json const& config) {
  auto const& text = *text_config_of(config);
  return text.contains("tie_word_embeddings") || config.contains("tie_word_embeddings");
}

}  // namespace

std::uint64_t ModelFacts::dtype_bytes() const {
  // vLLM's dtype "auto" serves bfloat16/float16 checkpoints as they are and
  // float32 ones in 16 bits; quantized checkpoints compute (and keep the KV
  // cache) in their torch_dtype, which is 16-bit too.
  return 2;
}

std::uint64_t ModelFacts::kv_bytes_per_token(std::uint64_t kv_dtype_bytes) const {
  if (kv_dtype_bytes == 0) kv_dtype_bytes = dtype_bytes();
  if (kv_lora_rank) return num_hidden_layers * (kv_lora_rank + qk_rope_head_dim) * kv_dtype_bytes;
  return 2 * num_hidden_layers * num_key_value_heads * head_dim * kv_dtype_bytes;
}

ModelFacts model_facts_from_config(json const& config, std::string_view source) {
  if (!config.is_object()) fail(errc::parse_error, std::string(source) + ": not a JSON object");
  ModelFacts f;
  f.config = config;
  auto const& text = *text_config_of(config);
  auto const& top = config;
  if (auto const* a = find_field(top, text, {"architectures"}); a && a->is_array())
    for (auto const& e : *a)
      if (e.is_string()) f.architectures.push_back(e.get<std::string>());
  f.model_type = get_string(top, text, {"model_type"});
  f.hidden_size = get_count(text, top, {"hidden_size", "n_embd", "d_model"}, source);
  f.intermediate_size = get_count(text, top, {"intermediate_size", "ffn_hidden_size", "n_inner"}, source);
  f.num_hidden_layers = get_count(text, top, {"num_hidden_layers", "n_layer", "num_layers", "n_layers"}, source);
  f.num_attention_heads = get_count(text, top, {"num_attention_heads", "n_head", "num_heads", "n_heads"}, source);
  f.num_key_value_heads =
      get_count(text, top, {"num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads", "multi_query_group_num"},
                source);
  if (f.num_key_value_heads == 0) f.num_key_value_heads = f.num_attention_heads;
  f.head_dim = get_count(text, top, {"head_dim"}, source);
  if (f.head_dim == 0 && f.num_attention_heads) f.head_dim = f.hidden_size / f.num_attention_heads;
  f.vocab_size = get_count(text, top, {"vocab_size", "padded_vocab_size"}, source);
  f.max_position_embeddings =
      get_count(text, top, {"max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"}, source);
  if (auto const* t = find_field(text, top, {"tie_word_embeddings"}); t && t->is_boolean())
    f.tie_word_embeddings = t->get<bool>();
  f.torch_dtype = get_string(top, text, {"torch_dtype", "dtype"});
  if (auto const* q = find_field(top, text, {"quantization_config", "compression_config"}); q && q->is_object()) {
    f.quantized = true;
    f.quantization_config = *q;
    if (auto m = q->find("quant_method"); m != q->end() && m->is_string()) f.quant_method = m->get<std::string>();
  }
  f.kv_lora_rank = get_count(text, top, {"kv_lora_rank"}, source);
  f.qk_rope_head_dim = get_count(text, top, {"qk_rope_head_dim"}, source);
  return f;
}

void estimate_tensors_from_config(ModelFacts& f) {
  auto const& cfg = f.config;
  auto const& text = *text_config_of(cfg);
  for (auto const* key : {"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"}) {
    if (auto const* v = find_field(text, cfg, {key}); v && v->is_number() && v->get<double>() > 0)
      fail(errc::invalid_argument, "estimating weights from config.json covers dense models only; this one has " +
                                       std::string(key) + " (inspect the downloaded safetensors instead)");
  }
  if (f.kv_lora_rank)
    fail(errc::invalid_argument, "estimating weights from config.json does not cover MLA models (kv_lora_rank)");
  if (!f.hidden_size || !f.num_hidden_layers || !f.num_attention_heads || !f.intermediate_size || !f.vocab_size)
    fail(errc::invalid_argument,
         "config.json lacks hidden_size, num_hidden_layers, num_attention_heads, intermediate_size or vocab_size");
  auto dtype = safetensors_of_torch_dtype(f.torch_dtype);
  if (dtype.empty()) dtype = "BF16";
  auto const es = safetensors_dtype_size(dtype);
  bool qkv_bias = f.model_type.starts_with("qwen2");
  if (auto const* b = find_field(text, cfg, {"attention_bias"}); b && b->is_boolean()) qkv_bias = b->get<bool>();
  auto const h = f.hidden_size, hd = f.head_dim, q = f.num_attention_heads * hd, kv = f.num_key_value_heads * hd,
             inter = f.intermediate_size;
  f.tensors.clear();
  f.shards.clear();
  f.parameter_count = f.total_tensor_bytes = 0;
  f.bytes_per_dtype.clear();
  f.parameters_per_dtype.clear();
  auto add = [&](std::string name, std::vector<std::uint64_t> shape) {
    ModelTensor t{std::move(name), dtype, std::move(shape), 0, 0};
    std::uint64_t e = 1;
    for (auto d : t.shape) e *= d;
    t.bytes = e * es;
    add_tensor_totals(f, t);
    f.tensors.push_back(std::move(t));
  };
  add("model.embed_tokens.weight", {f.vocab_size, h});
  for (std::uint64_t i = 0; i < f.num_hidden_layers; ++i) {
    auto p = "model.layers." + std::to_string(i) + ".";
    add(p + "self_attn.q_proj.weight", {q, h});
    add(p + "self_attn.k_proj.weight", {kv, h});
    add(p + "self_attn.v_proj.weight", {kv, h});
    if (qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    add(p + "self_attn.o_proj.weight", {h, q});
    add(p + "mlp.gate_proj.weight", {inter, h});
    add(p + "mlp.up_proj.weight", {inter, h});
    add(p + "mlp.down_proj.weight", {h, inter});
    add(p + "input_layernorm.weight", {h});
    add(p + "post_attention_layernorm.weight", {h});
  }
  add("model.norm.weight", {h});
  if (!f.tie_word_embeddings) add("lm_head.weight", {f.vocab_size, h});
  f.weights_estimated = true;
}

namespace {

/// One shard as inspection sees it: its header and the file's size.
struct InspectedShard {
  std::string name;
  SafetensorsHeader header;
  std::uint64_t file_size = 0;
};

/// The facts from config.json and the shards' headers: tensors, totals,
/// tied embeddings, the dtype. Shared by inspect_model (this machine's disk)
/// and inspect_snapshot (what a host sent).
// `f` comes from model_facts_from_config, read before the shards so that a
// bad config.json is reported as such even when the weights are missing too.
ModelFacts facts_from_headers(ModelFacts f, fs::path const& dir, std::vector<InspectedShard> shards,
                              std::optional<std::uint64_t> index_total, bool have_index) {
  auto const& config = f.config;
  f.dir = dir;
  std::unordered_map<std::string, std::size_t> seen;
  for (auto& shard : shards) {
    auto& header = shard.header;
    ShardInfo info{shard.name, header.header_bytes, header.data_bytes, header.expected_file_size(), shard.file_size,
                   header.tensors.size()};
    auto shard_index = f.shards.size();
    f.shards.push_back(info);
    for (auto& t : header.tensors) {
      if (auto [it, fresh] = seen.emplace(t.name, shard_index); !fresh)
        f.warnings.push_back("tensor " + squote(t.name) + " is in both " + f.shards[it->second].file + " and " + shard.name);
      ModelTensor mt{std::move(t.name), std::move(t.dtype), std::move(t.shape), t.end - t.begin, shard_index};
      add_tensor_totals(f, mt);
      f.tensors.push_back(std::move(mt));
    }
    if (shard.file_size != info.expected_file_size)
      f.warnings.push_back(shard.name + " is " + with_commas(shard.file_size) + " bytes but its header needs " +
                           with_commas(info.expected_file_size) + " (run verify)");
  }
  (void)have_index;
  if (index_total && *index_total != f.total_tensor_bytes)
    f.warnings.push_back("model.safetensors.index.json says total_size " + with_commas(*index_total) +
                         " but the headers add up to " + with_commas(f.total_tensor_bytes));
  if (!config_states_tie(config)) {
    f.tie_word_embeddings = std::none_of(f.tensors.begin(), f.tensors.end(),
                                         [](ModelTensor const& t) { return is_lm_head_name(t.name); });
  }
  if (f.torch_dtype.empty()) {
    std::string best;
    std::uint64_t most = 0;
    for (auto const& [dt, b] : f.bytes_per_dtype)
      if (b > most) most = b, best = dt;
    f.torch_dtype = torch_dtype_of_safetensors(best);
  }
  return f;
}

}  // namespace

ModelFacts inspect_model(fs::path const& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(fs::exists(dir, ec) ? errc::local_file_error : errc::file_not_found,
         dir.string() + (fs::exists(dir, ec) ? " is not a folder" : " does not exist"));
  auto config_path = dir / "config.json";
  if (!fs::exists(config_path, ec))
    fail(errc::local_file_error, dir.string() + " has no config.json (not a model folder, or the download is incomplete)");
  auto config = parse_json_file(config_path);
  auto from_config = model_facts_from_config(config, config_path.string());

  auto index_path = dir / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::optional<std::uint64_t> index_total;
  bool have_index = fs::exists(index_path, ec);
  if (have_index) {
    auto idx = parse_index(index_path);
    shard_names = std::move(idx.shards);
    index_total = idx.total_size;
  } else {
    shard_names = list_safetensors(dir);
  }
  if (shard_names.empty()) {
    if (auto unusable = unusable_safetensors(dir); !unusable.empty()) {
      std::string list;
      for (auto const& u : unusable) list += (list.empty() ? "" : "; ") + u;
      fail(errc::local_file_error, dir.string() + " has no usable *.safetensors file: " + list +
                                       " (a shard must be a regular file, or a symlink to one)");
    }
    fail(errc::local_file_error,
         dir.string() + " has no *.safetensors files (a .bin-only checkpoint? vLLM and clusterkit need safetensors)");
  }
  std::vector<InspectedShard> shards;
  for (auto const& name : shard_names) {
    auto path = dir / name;
    if (!fs::exists(path, ec))
      fail(errc::local_file_error, "shard " + name + (have_index ? " listed in model.safetensors.index.json" : "") +
                                       " is missing from " + dir.string() +
                                       " (incomplete download or copy; `clusterkit model verify` lists every problem)");
    auto file = read_safetensors_header(path);
    shards.push_back({name, std::move(file.header), file.file_size});
  }
  auto facts = facts_from_headers(std::move(from_config), dir, std::move(shards), index_total, have_index);
  // Without an index the shards are the folder's *.safetensors files: one
  // that cannot be read (a looping symlink, a FIFO) is left out, not silently.
  if (!have_index)
    for (auto const& u : unusable_safetensors(dir))
      facts.warnings.push_back(u + ": left out (a shard must be a regular file, or a symlink to one)");
  return facts;
}

ModelFacts inspect_snapshot(ModelSnapshot const& snapshot) {
  auto where = snapshot.dir;
  if (!snapshot.config_json)
    fail(errc::local_file_error, where + " has no config.json (not a model folder, or the download is incomplete)");
  if (!detail::json_nesting_within(*snapshot.config_json, 64)) fail(errc::parse_error, where + "/config.json is nested too deeply");
  auto config = json::parse(*snapshot.config_json, nullptr, false);
  if (config.is_discarded()) fail(errc::parse_error, where + "/config.json is not valid JSON");
  auto from_config = model_facts_from_config(config, where + "/config.json");
  std::optional<std::uint64_t> index_total;
  bool have_index = snapshot.index_json.has_value();
  if (have_index) index_total = parse_index_text(*snapshot.index_json, where + "/model.safetensors.index.json").total_size;
  if (snapshot.shards.empty())
    fail(errc::local_file_error, where + " has no *.safetensors files (a .bin-only checkpoint? vLLM and clusterkit need safetensors)");
  std::vector<InspectedShard> shards;
  for (auto const& sh : snapshot.shards) {
    if (!sh.exists)
      fail(errc::local_file_error, "shard " + sh.name + " is missing from " + where + " (`clusterkit model verify` lists every problem)");
    shards.push_back({sh.name, parse_safetensors_header(sh.head, std::nullopt, where + "/" + sh.name), sh.size});
  }
  return facts_from_headers(std::move(from_config), fs::path(where), std::move(shards), index_total, have_index);
}

json ModelFacts::to_json(bool with_tensors) const {
  json j;
  j["dir"] = dir.string();
  j["architectures"] = architectures;
  j["model_type"] = model_type;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j["quantized"] = quantized;
  j["quant_method"] = quant_method;
  if (kv_lora_rank) {
    j["kv_lora_rank"] = kv_lora_rank;
    j["qk_rope_head_dim"] = qk_rope_head_dim;
  }
  j["parameter_count"] = parameter_count;
  j["total_tensor_bytes"] = total_tensor_bytes;
  j["bytes_per_dtype"] = bytes_per_dtype;
  j["parameters_per_dtype"] = parameters_per_dtype;
  j["kv_bytes_per_token"] = kv_bytes_per_token();
  j["tensor_count"] = tensors.size();
  j["weights_estimated"] = weights_estimated;
  auto& shard_list = j["shards"] = json::array();
  for (auto const& s : shards)
    shard_list.push_back({{"file", s.file},
                          {"header_bytes", s.header_bytes},
                          {"data_bytes", s.data_bytes},
                          {"expected_file_size", s.expected_file_size},
                          {"file_size", s.file_size},
                          {"tensor_count", s.tensor_count}});
  j["warnings"] = warnings;
  if (with_tensors) {
    auto& tl = j["tensors"] = json::array();
    for (auto const& t : tensors)
      tl.push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}, {"bytes", t.bytes}, {"shard", t.shard}});
  }
  return j;
}

// ---------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------

std::vector<ManifestEntry> parse_sha256_manifest(std::string_view text, std::string_view source) {
  std::vector<ManifestEntry> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    auto bad = [&](std::string const& why) {
      fail(errc::parse_error, std::string(source) + " line " + std::to_string(line_no) + ": " + why +
                                  " (expected '<64 hex digits>  <file>' as sha256sum prints it)");
    };
    if (line.size() < 66) bad("too short");
    ManifestEntry e;
    for (std::size_t i = 0; i < 64; ++i) {
      char c = line[i];
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) bad("not a SHA-256 hex digest");
      e.sha256.push_back(c);
    }
    if (line[64] != ' ' || (line[65] != ' ' && line[65] != '*')) bad("the digest must be followed by two spaces");
    e.file = std::string(line.substr(66));
    if (e.file.empty()) bad("no file name");
    // The manifest names files of the model folder; anything else (an
    // absolute path, a way out through ..) is refused, never read.
    bool escapes = e.file.front() == '/';
    for (auto const& part : fs::path(e.file)) escapes = escapes || part == "..";
    if (escapes) bad("'" + e.file + "' is outside the model folder (absolute paths and .. are refused)");
    out.push_back(std::move(e));
  }
  return out;
}

std::string format_sha256_manifest(std::vector<ManifestEntry> const& entries) {
  std::string out;
  for (auto const& e : entries) out += e.sha256 + "  " + e.file + "\n";
  return out;
}

namespace {

struct EvpCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~EvpCtx() { EVP_MD_CTX_free(ctx); }
  EvpCtx() = default;
  EvpCtx(EvpCtx const&) = delete;
  EvpCtx& operator=(EvpCtx const&) = delete;
};

std::string to_hex(unsigned char const* d, unsigned n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  return out;
}

/// Hashes one file into `digest`; returns "" or an error text. `on_chunk`
/// gets the byte count of each buffer; returning false stops (cancel).
template <class OnChunk>
std::string hash_one(fs::path const& path, EVP_MD_CTX* ctx, std::vector<unsigned char>& buf, std::string& digest,
                     std::uint64_t& bytes, OnChunk&& on_chunk) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));  // a FIFO must not hang the open
  if (fd.get() < 0) return "cannot open " + path.string() + ": " + errno_text(errno);
  if (struct stat st {}; ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return path.string() + " is not a regular file";
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) return "OpenSSL could not start SHA-256";
  bytes = 0;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return "cannot read " + path.string() + ": " + errno_text(errno);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<std::size_t>(n));
    bytes += static_cast<std::uint64_t>(n);
    if (!on_chunk(static_cast<std::uint64_t>(n))) return "cancelled";
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx, md, &len) != 1) return "OpenSSL could not finish SHA-256";
  digest = to_hex(md, len);
  return {};
}

}  // namespace

std::string sha256_file(fs::path const& path, std::size_t buffer_bytes) {
  EvpCtx ctx;
  std::vector<unsigned char> buf(std::max<std::size_t>(buffer_bytes, 4096));
  std::string digest;
  std::uint64_t bytes = 0;
  auto err = hash_one(path, ctx.ctx, buf, digest, bytes, [](std::uint64_t) { return true; });
  std::error_code ec;
  if (!err.empty()) fail(fs::exists(fs::symlink_status(path, ec)) ? errc::local_file_error : errc::file_not_found, err);
  return digest;
}

std::vector<FileDigest> sha256_files(std::vector<fs::path> const& paths, HashOptions const& options) {
  std::vector<FileDigest> out(paths.size());
  std::vector<std::uint64_t> sizes(paths.size(), 0);
  HashProgress progress;
  progress.files_total = paths.size();
  for (std::size_t i = 0; i < paths.size(); ++i) {
    out[i].path = paths[i];
    std::error_code ec;
    auto s = fs::file_size(paths[i], ec);
    if (!ec) sizes[i] = s, progress.bytes_total += s;
  }
  std::vector<std::size_t> order(paths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return sizes[a] > sizes[b]; });

  unsigned threads = options.threads;
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(paths.size(), 1)));
  std::atomic<std::size_t> next{0};
  std::atomic<bool> cancelled{false};
  std::mutex mu;
  auto const buffer_bytes = std::max<std::size_t>(options.buffer_bytes, 4096);

  auto worker = [&] {
    EvpCtx ctx;
    std::vector<unsigned char> buf(buffer_bytes);
    for (;;) {
      auto k = next.fetch_add(1);
      if (k >= order.size() || cancelled.load()) return;
      auto& d = out[order[k]];
      try {
        auto err = hash_one(d.path, ctx.ctx, buf, d.sha256, d.bytes, [&](std::uint64_t n) {
          if (options.stop.stop_requested()) {
            cancelled = true;
            return false;
          }
          if (options.on_progress) {
            std::lock_guard lock(mu);
            progress.bytes_done += n;
            options.on_progress(progress);
          }
          return !cancelled.load();
        });
        if (!err.empty()) {
          d.error = err;
          d.sha256.clear();
        }
      } catch (std::exception const& e) {
        d.error = e.what();
        d.sha256.clear();
      }
      std::lock_guard lock(mu);
      ++progress.files_done;
      if (options.on_progress) {
        try {
          options.on_progress(progress);
        } catch (...) {
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (cancelled || options.stop.stop_requested()) fail(errc::cancelled, "SHA-256 hashing was cancelled");
  return out;
}

bool is_hub_bookkeeping(std::string_view path) {
  return path.starts_with(".cache/") || path.starts_with("._____temp/") || path.ends_with(".incomplete") ||
         path == ".mdl" || path == ".msc" || path == ".mv" || path.starts_with(".rsync-partial/");
}

std::vector<ManifestEntry> write_sha256_manifest(fs::path const& dir, HashOptions const& options) {
  std::vector<fs::path> paths;
  std::vector<ManifestEntry> entries;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    auto rel = fs::relative(it->path(), dir, ec).generic_string();
    if (rel == "sha256sums" || rel.ends_with(".clusterkit-new") || is_hub_bookkeeping(rel)) continue;
    paths.push_back(it->path());
    entries.push_back({"", rel});
  }
  if (ec) throw Error(make_error_code(errc::local_file_error), "cannot list " + dir.string() + ": " + ec.message());
  auto digests = sha256_files(paths, options);
  for (std::size_t i = 0; i < digests.size(); ++i) {
    if (!digests[i].error.empty()) throw Error(make_error_code(errc::local_file_error), digests[i].error);
    entries[i].sha256 = digests[i].sha256;
  }
  std::sort(entries.begin(), entries.end(), [](auto const& a, auto const& b) { return a.file < b.file; });
  auto tmp = dir / "sha256sums.clusterkit-new";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << format_sha256_manifest(entries);
    if (!out) throw Error(make_error_code(errc::local_file_error), "cannot write " + tmp.string());
  }
  fs::rename(tmp, dir / "sha256sums", ec);
  if (ec) throw Error(make_error_code(errc::local_file_error), "cannot write " + (dir / "sha256sums").string() + ": " + ec.message());
  return entries;
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

std::string_view to_string(VerifyProblemKind kind) noexcept {
  switch (kind) {
    case VerifyProblemKind::config_missing: return "config_missing";
    case VerifyProblemKind::config_invalid: return "config_invalid";
    case VerifyProblemKind::index_invalid: return "index_invalid";
    case VerifyProblemKind::no_weights: return "no_weights";
    case VerifyProblemKind::shard_missing: return "shard_missing";
    case VerifyProblemKind::header_invalid: return "header_invalid";
    case VerifyProblemKind::truncated: return "truncated";
    case VerifyProblemKind::trailing_bytes: return "trailing_bytes";
    case VerifyProblemKind::tensor_missing: return "tensor_missing";
    case VerifyProblemKind::duplicate_tensor: return "duplicate_tensor";
    case VerifyProblemKind::manifest_missing: return "manifest_missing";
    case VerifyProblemKind::manifest_invalid: return "manifest_invalid";
    case VerifyProblemKind::file_unreadable: return "file_unreadable";
    case VerifyProblemKind::checksum_mismatch: return "checksum_mismatch";
  }
  return "unknown";
}

json VerifyReport::to_json() const {
  json j;
  j["dir"] = dir.string();
  j["ok"] = ok();
  auto& pl = j["problems"] = json::array();
  for (auto const& p : problems) pl.push_back({{"kind", to_string(p.kind)}, {"file", p.file}, {"message", p.message}});
  j["warnings"] = warnings;
  j["shards_checked"] = shards_checked;
  j["tensors_checked"] = tensors_checked;
  j["bytes_expected"] = bytes_expected;
  j["manifest"] = manifest;
  j["files_hashed"] = files_hashed;
  j["bytes_hashed"] = bytes_hashed;
  j["hash_seconds"] = hash_seconds;
  return j;
}

std::optional<std::vector<std::string>> shards_named_by_index(std::string_view index_json, std::string_view source) {
  return parse_index_text(index_json, std::string(source)).shards;
}

ModelSnapshot read_model_snapshot(fs::path const& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(fs::exists(dir, ec) ? errc::local_file_error : errc::file_not_found,
         dir.string() + (fs::exists(dir, ec) ? " is not a folder" : " does not exist"));
  ModelSnapshot s;
  s.dir = dir.string();
  auto read_text = [&](char const* name, std::optional<std::string>& text, std::string& error) {
    if (!fs::exists(dir / name, ec)) return;
    try {
      text = read_small_file(dir / name);
    } catch (Error const& e) {
      error = e.what();
    }
  };
  read_text("config.json", s.config_json, s.config_error);
  read_text("model.safetensors.index.json", s.index_json, s.index_error);
  std::vector<std::string> names;
  try {
    if (s.index_json) names = *shards_named_by_index(*s.index_json, (dir / "model.safetensors.index.json").string());
    else names = list_safetensors(dir);
  } catch (Error const&) {
    names = list_safetensors(dir);  // verify_snapshot reports the broken index
  }
  for (auto const& name : names) {
    auto& shard = s.shards.emplace_back();
    shard.name = name;
    auto path = dir / name;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (fd.get() < 0) {
      if (errno == ENOENT) continue;
      shard.exists = true;
      shard.error = "cannot open " + path.string() + ": " + errno_text(errno);
      continue;
    }
    shard.exists = true;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      shard.error = path.string() + " is not a regular file";
      continue;
    }
    shard.size = static_cast<std::uint64_t>(st.st_size);
    // The length first, then the header it announces, if that is sane.
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(shard.size, 8));
    shard.head.resize(want);
    int err = 0;
    if (want && !pread_full(fd.get(), shard.head.data(), want, 0, err)) {
      shard.error = "cannot read " + path.string() + ": " + (err ? errno_text(err) : "file shrank");
      continue;
    }
    if (want < 8) continue;
    auto n = read_le64(shard.head.data());
    if (n > max_safetensors_header_bytes || n > shard.size - 8) continue;
    shard.head.resize(8 + n);
    if (n && !pread_full(fd.get(), shard.head.data() + 8, n, 8, err))
      shard.error = "cannot read the header of " + path.string() + ": " +
                    (err ? errno_text(err) : "file shrank while reading");
  }
  return s;
}

VerifyReport verify_snapshot(ModelSnapshot const& s) {
  VerifyReport r;
  r.dir = s.dir;
  auto const dir = fs::path(s.dir);
  auto problem = [&](VerifyProblemKind kind, std::string file, std::string message) {
    r.problems.push_back({kind, std::move(file), std::move(message)});
  };

  // config.json
  if (!s.config_json && s.config_error.empty()) {
    problem(VerifyProblemKind::config_missing, "config.json", s.dir + " has no config.json");
  } else if (!s.config_error.empty()) {
    problem(VerifyProblemKind::config_invalid, "config.json", s.config_error);
  } else {
    try {
      json config;
      try {
        config = json::parse(*s.config_json);
      } catch (json::exception const& e) {
        fail(errc::parse_error, (dir / "config.json").string() + " is not valid JSON: " + e.what());
      }
      model_facts_from_config(config, "config.json");
    } catch (Error const& e) {
      problem(VerifyProblemKind::config_invalid, "config.json", e.what());
    }
  }

  // Shards: from the index when there is one.
  std::optional<IndexInfo> index;
  auto const index_where = (dir / "model.safetensors.index.json").string();
  if (!s.index_error.empty()) {
    problem(VerifyProblemKind::index_invalid, "model.safetensors.index.json", s.index_error);
  } else if (s.index_json) {
    try {
      index = parse_index_text(*s.index_json, index_where);
    } catch (Error const& e) {
      problem(VerifyProblemKind::index_invalid, "model.safetensors.index.json", e.what());
    }
  }
  std::vector<std::string> shard_names;
  if (index) shard_names = index->shards;
  else
    for (auto const& shard : s.shards) shard_names.push_back(shard.name);
  if (shard_names.empty() && !index)
    problem(VerifyProblemKind::no_weights, "", s.dir + " has no *.safetensors files");

  std::map<std::string, ModelSnapshot::Shard const*> by_name;
  for (auto const& shard : s.shards) by_name.emplace(shard.name, &shard);
  std::map<std::string, std::unordered_set<std::string>> shard_tensors;  // loaded shards only
  std::unordered_map<std::string, std::string> tensor_home;
  std::uint64_t data_sum = 0;
  for (auto const& name : shard_names) {
    auto it = by_name.find(name);
    if (it == by_name.end() || !it->second->exists) {
      problem(VerifyProblemKind::shard_missing, name,
              name + (index ? " is listed in model.safetensors.index.json but" : "") + " is missing from " + s.dir);
      continue;
    }
    auto const& shard = *it->second;
    auto const where = (dir / name).string();
    if (!shard.error.empty()) {
      problem(VerifyProblemKind::file_unreadable, name, shard.error);
      continue;
    }
    SafetensorsHeader header;
    try {
      if (shard.size < 8)
        fail(errc::parse_error, where + ": " + std::to_string(shard.size) +
                                    " bytes, too short for a safetensors file (the header length alone takes 8)");
      // A length past the cap or the file is refused with the file size in
      // view; otherwise the header is parsed alone (the data region is
      // compared with the size below, to say how much is missing).
      if (shard.head.size() <= 8) header = parse_safetensors_header(shard.head, shard.size, where);
      else header = parse_safetensors_header(shard.head, std::nullopt, where);
    } catch (Error const& e) {
      problem(VerifyProblemKind::header_invalid, name, e.what());
      continue;
    }
    ++r.shards_checked;
    data_sum += header.data_bytes;
    auto expected = header.expected_file_size();
    r.bytes_expected += expected;
    if (shard.size < expected) {
      problem(VerifyProblemKind::truncated, name,
              name + " is truncated: it has " + with_commas(shard.size) + " bytes, its header needs " +
                  with_commas(expected) + " (" + with_commas(expected - shard.size) + " bytes missing)");
    } else if (shard.size > expected) {
      problem(VerifyProblemKind::trailing_bytes, name,
              name + " has " + with_commas(shard.size - expected) + " bytes after its last tensor (" +
                  with_commas(shard.size) + " bytes, the header accounts for " + with_commas(expected) + ")");
    }
    auto& names = shard_tensors[name];
    for (auto const& t : header.tensors) {
      names.insert(t.name);
      ++r.tensors_checked;
      if (auto [home, fresh] = tensor_home.emplace(t.name, name); !fresh)
        problem(VerifyProblemKind::duplicate_tensor, name,
                "tensor " + squote(t.name) + " is in both " + home->second + " and " + name);
    }
  }

  if (index) {
    std::map<std::string, std::vector<std::string>> missing;  // shard -> tensors
    for (auto const& [tensor, shard] : index->weight_map) {
      auto it = shard_tensors.find(shard);
      if (it == shard_tensors.end()) continue;  // shard missing or unreadable: reported above
      if (!it->second.count(tensor)) missing[shard].push_back(tensor);
    }
    for (auto& [shard, tensors] : missing) {
      std::sort(tensors.begin(), tensors.end());
      std::string list;
      for (std::size_t i = 0; i < tensors.size() && i < 5; ++i) list += (i ? ", " : "") + squote(tensors[i]);
      if (tensors.size() > 5) list += " and " + std::to_string(tensors.size() - 5) + " more";
      problem(VerifyProblemKind::tensor_missing, shard,
              "model.safetensors.index.json maps " + std::to_string(tensors.size()) + " tensor(s) to " + shard +
                  " that it does not contain: " + list);
    }
    if (index->total_size && r.shards_checked == shard_names.size() && data_sum != *index->total_size)
      r.warnings.push_back("model.safetensors.index.json says total_size " + with_commas(*index->total_size) +
                           " but the shard headers add up to " + with_commas(data_sum) + " bytes of tensors");
  }
  return r;
}

namespace {
// Where `p` really is (symlinks followed) lies inside `dir`; or, for a
// Hugging Face cache snapshot (.../snapshots/REV), inside its ../../blobs,
// where that layout's links point.
bool within_model_folder(fs::path const& dir, fs::path const& p) {
  std::error_code ec;
  auto real = fs::canonical(p, ec);
  if (ec) return false;
  auto root = fs::canonical(dir, ec);
  if (ec) return false;
  auto inside = [&](fs::path const& base) {
    auto rel = real.lexically_relative(base);
    return !rel.empty() && *rel.begin() != "..";
  };
  if (inside(root)) return true;
  return root.parent_path().filename() == "snapshots" && inside(root.parent_path().parent_path() / "blobs");
}
}  // namespace

VerifyReport verify_model(fs::path const& dir, VerifyOptions const& options) {
  auto r = verify_snapshot(read_model_snapshot(dir));
  r.dir = dir;
  std::error_code ec;
  auto problem = [&](VerifyProblemKind kind, std::string file, std::string message) {
    r.problems.push_back({kind, std::move(file), std::move(message)});
  };

  // Checksums.
  if (!options.skip_checksums) {
    std::optional<fs::path> manifest = options.manifest;
    if (!manifest) {
      for (auto const* candidate : {"sha256sums", "SHA256SUMS"})
        if (fs::is_regular_file(dir / candidate, ec)) {
          manifest = dir / candidate;
          break;
        }
    }
    if (manifest) {
      r.manifest = manifest->string();
      std::vector<ManifestEntry> entries;
      bool readable = true;
      if (!fs::exists(*manifest, ec)) {
        problem(VerifyProblemKind::manifest_missing, manifest->string(),
                "the checksum manifest " + manifest->string() + " does not exist");
        readable = false;
      } else {
        try {
          entries = parse_sha256_manifest(read_small_file(*manifest), manifest->string());
        } catch (Error const& e) {
          problem(VerifyProblemKind::manifest_invalid, manifest->string(), e.what());
          readable = false;
        }
      }
      if (readable) {
        std::vector<fs::path> paths;
        std::vector<ManifestEntry const*> listed;
        for (auto const& e : entries) {
          fs::path p = dir / e.file;  // relative: parse_sha256_manifest refuses the rest
          if (!fs::exists(p, ec)) {
            problem(VerifyProblemKind::file_unreadable, e.file,
                    e.file + " is listed in " + manifest->filename().string() + " but missing from " + dir.string());
            continue;
          }
          if (!fs::is_regular_file(p, ec)) {  // a device or FIFO would hang the hashing
            problem(VerifyProblemKind::file_unreadable, e.file, e.file + " in " + dir.string() + " is not a regular file; not read");
            continue;
          }
          if (!within_model_folder(dir, p)) {
            problem(VerifyProblemKind::file_unreadable, e.file,
                    e.file + " in " + dir.string() + " leads outside the model folder (a symlink); not read");
            continue;
          }
          paths.push_back(p);
          listed.push_back(&e);
        }
        auto start = std::chrono::steady_clock::now();
        auto digests = sha256_files(paths, options.hashing);
        r.hash_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (std::size_t i = 0; i < digests.size(); ++i) {
          auto const& d = digests[i];
          auto const& e = *listed[i];
          if (!d.error.empty()) {
            problem(VerifyProblemKind::file_unreadable, e.file, d.error);
            continue;
          }
          ++r.files_hashed;
          r.bytes_hashed += d.bytes;
          if (d.sha256 != e.sha256)
            problem(VerifyProblemKind::checksum_mismatch, e.file,
                    e.file + " has SHA-256 " + d.sha256 + " but " + manifest->filename().string() + " expects " +
                        e.sha256);
        }
      }
    }
  }
  // Without checksums nothing was hashed: say once that the check is over
  // (the shards whose headers were read), so a progress display always ends.
  if (options.hashing.on_progress && r.files_hashed == 0 && r.bytes_hashed == 0) {
    HashProgress done{r.shards_checked, r.shards_checked, r.bytes_expected, r.bytes_expected};
    options.hashing.on_progress(done);
  }
  return r;
}

}  // namespace clusterkit
