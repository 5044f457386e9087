// Host facts: the pure half. Parsers for each command's output, the one
// script that prints them all, and the assembly of its sections into
// HostFacts. No processes, no sockets (gathering is in facts_gather.cpp).
//
// Every parser bounds its input (a size no real command comes near) and
// only allocates in proportion to it, so a broken or hostile host can make
// a parse fail but never exhaust memory or crash us.
#include "clusterkit/facts.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "clusterkit/planner.hpp"
#include "clusterkit/shell.hpp"
#include "core/text.hpp"

namespace clusterkit {

using nlohmann::json;

namespace {

[[noreturn]] void fail(std::string const& message) { throw Error(make_error_code(errc::parse_error), message); }

constexpr std::size_t kSmallLimit = 64 * 1024;     // one-line outputs, os-release, meminfo
constexpr std::size_t kMediumLimit = 1024 * 1024;  // df, nvidia-smi, topo, docker, python
constexpr std::size_t kLargeLimit = 8 * 1024 * 1024;  // ip addr on hosts with many interfaces
constexpr std::size_t kMaxGpus = 1024;
constexpr std::size_t kMaxTopologyDevices = 512;

void check_size(std::string_view text, std::size_t limit, char const* what) {
  if (text.size() > limit)
    fail(std::string(what) + " output is " + std::to_string(text.size()) + " bytes, more than the " +
         std::to_string(limit) + " expected: not the output of the command asked for");
}

using detail::lines_of;
using detail::split_ws;
using detail::to_u64;
using detail::trim;

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

/// A short, printable excerpt of input for error messages.
std::string excerpt(std::string_view s, std::size_t max = 80) {
  std::string out;
  for (char c : detail::utf8_prefix(s, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u == '\n') out += "\\n";
    else if (u == '\t') out += "\\t";
    else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else out.push_back(c);
  }
  if (s.size() > max) out += "...";
  return "'" + out + "'";
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::uint64_t> mul_checked(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > UINT64_MAX / a) return std::nullopt;
  return a * b;
}

/// JSON with the nesting bounded before parsing (a deep `[[[[...` must not
/// reach the parser's recursion or the value's destructor).
json parse_json(std::string_view text, char const* what, std::size_t limit) {
  check_size(text, limit, what);
  if (!detail::json_nesting_within(text, 32)) fail(std::string(what) + ": JSON nested deeper than 32 levels");
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) fail(std::string(what) + ": not valid JSON: " + excerpt(trim(text)));
  return j;
}

std::string json_string(json const& j, char const* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string unquote_os_release(std::string_view v, std::size_t line_no) {
  if (v.empty()) return {};
  char q = v.front();
  if (q != '"' && q != '\'') {
    for (char c : v)
      if (std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\'' || c == '`' || c == '$')
        fail("os-release line " + std::to_string(line_no) + ": unquoted value with " + excerpt(std::string(1, c)) +
             ": " + excerpt(v));
    return std::string(v);
  }
  if (v.size() < 2 || v.back() != q) fail("os-release line " + std::to_string(line_no) + ": unterminated quote in " + excerpt(v));
  std::string out;
  auto inner = v.substr(1, v.size() - 2);
  for (std::size_t i = 0; i < inner.size(); ++i) {
    if (q == '"' && inner[i] == '\\' && i + 1 < inner.size()) {
      out.push_back(inner[++i]);
      continue;
    }
    out.push_back(inner[i]);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Simple files

OsRelease parse_os_release(std::string_view text) {
  check_size(text, kSmallLimit, "os-release");
  OsRelease out;
  std::size_t n = 0;
  for (auto raw : lines_of(text)) {
    ++n;
    auto line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0)
      fail("os-release line " + std::to_string(n) + " is not KEY=value: " + excerpt(line));
    auto key = line.substr(0, eq);
    for (char c : key)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
        fail("os-release line " + std::to_string(n) + ": bad key " + excerpt(key));
    out.fields[std::string(key)] = unquote_os_release(line.substr(eq + 1), n);
  }
  if (out.fields.empty()) fail("os-release is empty");
  auto get = [&](char const* k) {
    auto it = out.fields.find(k);
    return it == out.fields.end() ? std::string() : it->second;
  };
  out.id = get("ID");
  out.version_id = get("VERSION_ID");
  out.pretty_name = get("PRETTY_NAME");
  if (out.pretty_name.empty()) {
    std::string joined = get("NAME") + " " + get("VERSION");
    out.pretty_name = std::string(trim(joined));
  }
  return out;
}

KernelInfo parse_uname(std::string_view text) {
  check_size(text, 4096, "uname");
  auto t = trim(text);
  if (t.find('\n') != std::string_view::npos) fail("uname -srm printed more than one line: " + excerpt(t));
  auto words = split_ws(t);
  if (words.size() != 3) fail("uname -srm should print 3 words (system, release, machine), got " + excerpt(t));
  return {std::string(words[0]), std::string(words[1]), std::string(words[2])};
}

unsigned parse_nproc(std::string_view text) {
  check_size(text, 4096, "nproc");
  auto t = trim(text);
  auto v = to_u64(t);
  if (!v || *v == 0 || *v > 1'000'000) fail("nproc printed " + excerpt(t) + ", not a CPU count");
  return static_cast<unsigned>(*v);
}

MemoryInfo parse_meminfo(std::string_view text) {
  check_size(text, kSmallLimit, "/proc/meminfo");
  std::map<std::string_view, std::uint64_t> values;
  std::size_t n = 0;
  for (auto raw : lines_of(text)) {
    ++n;
    auto line = trim(raw);
    if (line.empty()) continue;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      fail("/proc/meminfo line " + std::to_string(n) + " has no 'Key:': " + excerpt(line));
    auto key = line.substr(0, colon);
    auto words = split_ws(line.substr(colon + 1));
    if (words.empty() || words.size() > 2) fail("/proc/meminfo line " + std::to_string(n) + ": " + excerpt(line));
    auto v = to_u64(words[0]);
    if (!v) fail("/proc/meminfo line " + std::to_string(n) + ": " + excerpt(words[0]) + " is not a number");
    std::uint64_t factor = 1;
    if (words.size() == 2) {
      if (words[1] == "kB") factor = 1024;
      else fail("/proc/meminfo line " + std::to_string(n) + ": unknown unit " + excerpt(words[1]));
    }
    auto bytes = mul_checked(*v, factor);
    if (!bytes) fail("/proc/meminfo line " + std::to_string(n) + ": value too large");
    values[key] = *bytes;
  }
  auto total = values.find("MemTotal");
  if (total == values.end()) fail("/proc/meminfo has no MemTotal line");
  MemoryInfo out;
  out.total_bytes = total->second;
  auto get = [&](std::string_view k) {
    auto it = values.find(k);
    return it == values.end() ? std::uint64_t{0} : it->second;
  };
  out.free_bytes = get("MemFree");
  out.available_bytes = values.count("MemAvailable") ? get("MemAvailable") : get("MemFree") + get("Buffers") + get("Cached");
  out.swap_total_bytes = get("SwapTotal");
  out.swap_free_bytes = get("SwapFree");
  return out;
}

std::vector<DiskUsage> parse_df(std::string_view text) {
  check_size(text, kMediumLimit, "df");
  auto lines = lines_of(text);
  std::size_t i = 0;
  while (i < lines.size() && trim(lines[i]).empty()) ++i;
  if (i == lines.size()) fail("df printed nothing");
  if (!starts_with(trim(lines[i]), "Filesystem")) fail("df output does not start with its header: " + excerpt(lines[i]));
  std::vector<DiskUsage> out;
  for (++i; i < lines.size(); ++i) {
    auto line = lines[i];
    if (trim(line).empty()) continue;
    // Tokens with their positions, so the mount point keeps its spaces.
    std::vector<std::pair<std::size_t, std::size_t>> tok;
    for (std::size_t p = 0; p < line.size();) {
      while (p < line.size() && std::isspace(static_cast<unsigned char>(line[p]))) ++p;
      std::size_t q = p;
      while (q < line.size() && !std::isspace(static_cast<unsigned char>(line[q]))) ++q;
      if (q > p) tok.emplace_back(p, q - p);
      p = q;
    }
    auto word = [&](std::size_t k) { return line.substr(tok[k].first, tok[k].second); };
    std::optional<std::size_t> at;
    for (std::size_t k = 1; k + 4 < tok.size(); ++k) {
      auto cap = word(k + 3);
      bool cap_ok = cap == "-" || (cap.size() >= 2 && cap.back() == '%' && all_digits(cap.substr(0, cap.size() - 1)));
      if (all_digits(word(k)) && all_digits(word(k + 1)) && all_digits(word(k + 2)) && cap_ok) {
        at = k;
        break;
      }
    }
    if (!at || *at + 4 >= tok.size())
      fail("df line " + std::to_string(i + 1) + " is not 'FILESYSTEM SIZE USED AVAIL USE% MOUNTPOINT': " + excerpt(line));
    DiskUsage d;
    d.filesystem = std::string(trim(line.substr(0, tok[*at].first)));
    d.mount_point = std::string(trim(line.substr(tok[*at + 4].first)));
    auto total = to_u64(word(*at)), used = to_u64(word(*at + 1)), avail = to_u64(word(*at + 2));
    if (!total || !used || !avail) fail("df line " + std::to_string(i + 1) + ": a size does not fit 64 bits");
    d.total_bytes = *total;
    d.used_bytes = *used;
    d.available_bytes = *avail;
    out.push_back(std::move(d));
  }
  if (out.empty()) fail("df printed its header and no filesystem");
  return out;
}

double parse_epoch_seconds(std::string_view text) {
  check_size(text, 4096, "date");
  auto t = trim(text);
  auto dot = t.find('.');
  auto whole = t.substr(0, dot);
  auto secs = to_u64(whole);
  if (!secs || *secs == 0 || *secs > 100'000'000'000ull) fail("date +%s.%N printed " + excerpt(t) + ", not seconds since 1970");
  double out = static_cast<double>(*secs);
  if (dot != std::string_view::npos) {
    auto frac = t.substr(dot + 1);
    // A date without %N prints "%N" or "N": keep the whole seconds.
    if (all_digits(frac) && frac.size() <= 18) out += static_cast<double>(*to_u64(frac)) / std::pow(10.0, double(frac.size()));
    else if (frac != "%N" && frac != "N") fail("date +%s.%N printed " + excerpt(t) + ": bad fraction");
  }
  return out;
}

std::pair<int, int> parse_port_range(std::string_view text) {
  check_size(text, 4096, "ip_local_port_range");
  auto w = split_ws(trim(text));
  if (w.size() != 2) fail("ip_local_port_range should be two ports, got " + excerpt(trim(text)));
  auto lo = to_u64(w[0]), hi = to_u64(w[1]);
  if (!lo || !hi || *lo == 0 || *hi > 65535 || *lo > *hi) fail("ip_local_port_range " + excerpt(trim(text)) + " is not a port range");
  return {static_cast<int>(*lo), static_cast<int>(*hi)};
}

// ---------------------------------------------------------------------------
// nvidia-smi

std::string_view gpu_query_fields() noexcept {
  return "index,uuid,name,memory.total,memory.used,driver_version,compute_cap,pci.bus_id";
}

namespace {

bool not_available(std::string_view v) { return v == "[N/A]" || v == "N/A" || v == "[Not Supported]" || v.empty(); }

/// "81559", "81559 MiB" -> bytes (MiB is what nvidia-smi reports).
std::uint64_t parse_mib(std::string_view v, std::size_t line_no, char const* field) {
  v = trim(v);
  if (not_available(v)) return 0;
  std::uint64_t factor = 1ull << 20;
  auto w = split_ws(v);
  if (w.size() == 2) {
    if (w[1] == "MiB") factor = 1ull << 20;
    else if (w[1] == "GiB") factor = 1ull << 30;
    else if (w[1] == "KiB") factor = 1ull << 10;
    else fail(std::string("nvidia-smi line ") + std::to_string(line_no) + ": " + field + " has unit " + excerpt(w[1]));
  } else if (w.size() != 1) {
    fail(std::string("nvidia-smi line ") + std::to_string(line_no) + ": " + field + " is " + excerpt(v));
  }
  auto n = to_u64(w[0]);
  if (!n) fail(std::string("nvidia-smi line ") + std::to_string(line_no) + ": " + field + " is " + excerpt(v) + ", not a number");
  auto b = mul_checked(*n, factor);
  if (!b) fail(std::string("nvidia-smi line ") + std::to_string(line_no) + ": " + field + " is too large");
  return *b;
}

std::vector<std::string_view> split_csv(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    auto c = line.find(',');
    out.push_back(trim(line.substr(0, c)));
    if (c == std::string_view::npos) break;
    line.remove_prefix(c + 1);
  }
  return out;
}

/// "memory.total [MiB]" -> "memory.total".
std::string column_name(std::string_view h) {
  h = trim(h);
  auto b = h.find(" [");
  if (b != std::string_view::npos) h = h.substr(0, b);
  std::string out(h);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<GpuInfo> parse_gpu_query(std::string_view text) {
  check_size(text, kMediumLimit, "nvidia-smi --query-gpu");
  std::vector<std::string_view> lines;
  for (auto l : lines_of(text))
    if (!trim(l).empty()) lines.push_back(l);
  if (lines.empty()) fail("nvidia-smi --query-gpu printed nothing");
  // Fixed order (noheader) unless the first line is a header.
  std::map<std::string, std::size_t> col;
  std::size_t first = 0;
  std::size_t columns = 8;
  auto head = split_csv(lines[0]);
  bool header = !head.empty() && !all_digits(head[0]) &&
                std::any_of(head.begin(), head.end(), [](std::string_view h) { return column_name(h) == "index"; });
  if (header) {
    for (std::size_t i = 0; i < head.size(); ++i) col[column_name(head[i])] = i;
    for (char const* need : {"index", "name", "memory.total"})
      if (!col.count(need)) fail(std::string("nvidia-smi --query-gpu header has no ") + need + " column: " + excerpt(lines[0]));
    columns = head.size();
    first = 1;
  } else {
    std::size_t i = 0;
    for (auto f : {"index", "uuid", "name", "memory.total", "memory.used", "driver_version", "compute_cap", "pci.bus_id"})
      col[f] = i++;
  }
  if (lines.size() - first > kMaxGpus) fail("nvidia-smi listed more than " + std::to_string(kMaxGpus) + " GPUs");
  std::vector<GpuInfo> out;
  for (std::size_t li = first; li < lines.size(); ++li) {
    auto fields = split_csv(lines[li]);
    std::size_t n = li + 1;
    if (fields.size() != columns) {
      // nvidia-smi's own complaints ("No devices were found", "NVIDIA-SMI has failed ...").
      fail("nvidia-smi line " + std::to_string(n) + ": expected " + std::to_string(columns) + " comma-separated fields, got " +
           std::to_string(fields.size()) + ": " + excerpt(lines[li], 160));
    }
    auto get = [&](char const* name) -> std::string_view {
      auto it = col.find(name);
      return it == col.end() ? std::string_view() : fields[it->second];
    };
    GpuInfo g;
    auto idx = to_u64(get("index"));
    if (!idx || *idx >= 100000) fail("nvidia-smi line " + std::to_string(n) + ": index " + excerpt(get("index")) + " is not a GPU index");
    g.index = static_cast<unsigned>(*idx);
    g.uuid = std::string(not_available(get("uuid")) ? "" : get("uuid"));
    g.name = std::string(get("name"));
    if (g.name.empty()) fail("nvidia-smi line " + std::to_string(n) + ": empty GPU name");
    g.memory_total_bytes = parse_mib(get("memory.total"), n, "memory.total");
    g.memory_used_bytes = parse_mib(get("memory.used"), n, "memory.used");
    g.driver_version = std::string(not_available(get("driver_version")) ? "" : get("driver_version"));
    auto cc = get("compute_cap");
    g.compute_capability = std::string(not_available(cc) ? "" : cc);
    g.pci_bus_id = std::string(not_available(get("pci.bus_id")) ? "" : get("pci.bus_id"));
    out.push_back(std::move(g));
  }
  if (out.empty()) fail("nvidia-smi --query-gpu listed no GPU");
  return out;
}

NvidiaSmiHeader parse_nvidia_smi_header(std::string_view text) {
  check_size(text, kMediumLimit, "nvidia-smi");
  NvidiaSmiHeader h;
  auto value_after = [](std::string_view line, std::string_view key) -> std::string {
    auto p = line.find(key);
    if (p == std::string_view::npos) return {};
    auto rest = trim(line.substr(p + key.size()));
    auto w = split_ws(rest);
    if (w.empty() || w[0] == "|") return {};
    return std::string(w[0]);
  };
  std::size_t n = 0;
  for (auto line : lines_of(text)) {
    if (++n > 40) break;
    if (h.smi_version.empty()) h.smi_version = value_after(line, "NVIDIA-SMI ");
    if (h.driver_version.empty()) h.driver_version = value_after(line, "Driver Version:");
    if (h.cuda_version.empty()) h.cuda_version = value_after(line, "CUDA Version:");
  }
  if (h.driver_version.empty()) {
    auto t = trim(text);
    fail("nvidia-smi printed no 'Driver Version:' header: " + excerpt(t.substr(0, t.find('\n')), 160));
  }
  if (h.cuda_version == "N/A") h.cuda_version.clear();
  return h;
}

std::string_view to_string(GpuLink link) noexcept {
  switch (link) {
    case GpuLink::self: return "self";
    case GpuLink::nvlink: return "NVLink";
    case GpuLink::pix: return "PIX";
    case GpuLink::pxb: return "PXB";
    case GpuLink::phb: return "PHB";
    case GpuLink::node: return "NODE";
    case GpuLink::sys: return "SYS";
    case GpuLink::unknown: break;
  }
  return "unknown";
}

GpuLink GpuTopology::link(std::size_t i, std::size_t j) const noexcept {
  if (i >= links.size() || j >= links[i].size()) return GpuLink::unknown;
  auto const& s = links[i][j];
  if (s == "X") return GpuLink::self;
  if (s.size() > 2 && s.compare(0, 2, "NV") == 0 && all_digits(std::string_view(s).substr(2))) return GpuLink::nvlink;
  if (s == "PIX") return GpuLink::pix;
  if (s == "PXB") return GpuLink::pxb;
  if (s == "PHB") return GpuLink::phb;
  if (s == "NODE") return GpuLink::node;
  if (s == "SYS") return GpuLink::sys;
  return GpuLink::unknown;
}

unsigned GpuTopology::nvlinks(std::size_t i, std::size_t j) const noexcept {
  if (link(i, j) != GpuLink::nvlink) return 0;
  auto v = to_u64(std::string_view(links[i][j]).substr(2));
  return v && *v < 1000 ? static_cast<unsigned>(*v) : 0;
}

bool GpuTopology::all_gpus_nvlinked() const noexcept {
  bool any = false;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    if (devices[i].rfind("GPU", 0) != 0) continue;
    for (std::size_t j = 0; j < devices.size(); ++j) {
      if (i == j || devices[j].rfind("GPU", 0) != 0) continue;
      any = true;
      if (link(i, j) != GpuLink::nvlink) return false;
    }
  }
  return any;
}

namespace {

std::string strip_ansi(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && !(s[i] >= '@' && s[i] <= '~')) ++i;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

bool is_topology_device(std::string_view w) {
  for (std::string_view prefix : {"GPU", "NIC"})
    if (w.size() > prefix.size() && starts_with(w, prefix) && all_digits(w.substr(prefix.size()))) return true;
  return false;
}

}  // namespace

GpuTopology parse_gpu_topology(std::string_view text) {
  check_size(text, kMediumLimit, "nvidia-smi topo -m");
  auto clean = strip_ansi(text);
  auto lines = lines_of(clean);
  std::size_t i = 0;
  while (i < lines.size() && trim(lines[i]).empty()) ++i;
  if (i == lines.size()) fail("nvidia-smi topo -m printed nothing");
  GpuTopology t;
  for (auto w : split_ws(lines[i])) {
    if (!is_topology_device(w)) break;
    t.devices.emplace_back(w);
  }
  if (t.devices.empty()) fail("nvidia-smi topo -m header names no device (GPU0 ...): " + excerpt(lines[i], 160));
  if (t.devices.size() > kMaxTopologyDevices) fail("nvidia-smi topo -m lists more than 512 devices");
  std::size_t const n = t.devices.size();
  t.links.resize(n);
  t.cpu_affinity.resize(n);
  t.numa_affinity.resize(n);
  std::vector<bool> seen(n, false);
  for (++i; i < lines.size(); ++i) {
    auto line = trim(lines[i]);
    if (line.empty() || starts_with(line, "Legend")) break;
    auto w = split_ws(line);
    auto it = std::find(t.devices.begin(), t.devices.end(), w[0]);
    if (it == t.devices.end()) fail("nvidia-smi topo -m row " + excerpt(w[0]) + " is not a device of the header");
    std::size_t r = static_cast<std::size_t>(it - t.devices.begin());
    if (seen[r]) fail("nvidia-smi topo -m lists " + std::string(w[0]) + " twice");
    if (w.size() < n + 1)
      fail("nvidia-smi topo -m row " + std::string(w[0]) + " has " + std::to_string(w.size() - 1) + " links for " +
           std::to_string(n) + " devices");
    seen[r] = true;
    for (std::size_t c = 0; c < n; ++c) {
      auto cell = w[c + 1];
      if (cell.size() > 16) fail("nvidia-smi topo -m row " + std::string(w[0]) + ": link " + excerpt(cell) + " is not a link type");
      t.links[r].emplace_back(cell);
    }
    if (t.links[r][r] != "X") fail("nvidia-smi topo -m row " + std::string(w[0]) + " is not X against itself");
    if (w.size() > n + 1) t.cpu_affinity[r] = std::string(w[n + 1]);
    if (w.size() > n + 2) t.numa_affinity[r] = std::string(w[n + 2]);
  }
  for (std::size_t r = 0; r < n; ++r)
    if (!seen[r]) fail("nvidia-smi topo -m has no row for " + t.devices[r]);
  return t;
}

// ---------------------------------------------------------------------------
// Docker

bool DockerFacts::nvidia_runtime_registered() const {
  return std::find(runtimes.begin(), runtimes.end(), "nvidia") != runtimes.end();
}

bool DockerFacts::can_run_gpu_containers() const {
  if (nvidia_runtime_registered()) return true;
  for (auto const& p : nvidia_toolkit) {
    auto base = p.substr(p.rfind('/') + 1);
    if (base == "nvidia-container-runtime-hook" || base == "nvidia-container-cli") return true;
  }
  return false;
}

DockerFacts parse_docker_version(std::string_view json_text) {
  auto j = parse_json(trim(json_text), "docker version", kMediumLimit);
  if (!j.is_object()) fail("docker version did not print a JSON object: " + excerpt(trim(json_text)));
  DockerFacts d;
  auto client = j.find("Client");
  if (client == j.end() || !client->is_object()) fail("docker version JSON has no Client object");
  d.client_version = json_string(*client, "Version");
  d.client_api_version = json_string(*client, "ApiVersion");
  if (d.client_version.empty()) fail("docker version JSON has no Client.Version");
  auto server = j.find("Server");
  if (server != j.end() && server->is_object()) {
    d.server_version = json_string(*server, "Version");
    d.daemon_reachable = true;
  }
  return d;
}

std::vector<std::string> parse_docker_runtimes(std::string_view json_text) {
  auto j = parse_json(trim(json_text), "docker info Runtimes", kMediumLimit);
  std::vector<std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) fail("docker info Runtimes is not a JSON object: " + excerpt(trim(json_text)));
  for (auto it = j.begin(); it != j.end(); ++it) out.push_back(it.key());
  return out;
}

// ---------------------------------------------------------------------------
// Network

std::string NetInterface::ipv4() const {
  for (auto const& a : addresses)
    if (a.family == "inet" && a.scope != "host") return a.address;
  for (auto const& a : addresses)
    if (a.family == "inet") return a.address;
  return {};
}

namespace {

std::vector<NetInterface> parse_ip_addr_json(json const& j) {
  if (!j.is_array()) fail("ip -j addr did not print a JSON array");
  std::vector<NetInterface> out;
  for (auto const& e : j) {
    if (!e.is_object()) fail("ip -j addr: an entry is not an object");
    NetInterface i;
    i.name = json_string(e, "ifname");
    if (i.name.empty()) continue;  // ip prints {} for interfaces it cannot show
    if (auto f = e.find("flags"); f != e.end() && f->is_array()) {
      for (auto const& flag : *f) {
        if (!flag.is_string()) continue;
        if (flag == "UP") i.up = true;
        if (flag == "LOOPBACK") i.loopback = true;
      }
    }
    if (auto m = e.find("mtu"); m != e.end() && m->is_number_integer()) i.mtu = m->get<int>();
    i.mac = json_string(e, "address");
    if (auto ai = e.find("addr_info"); ai != e.end() && ai->is_array()) {
      for (auto const& a : *ai) {
        if (!a.is_object()) continue;
        NetAddress na;
        na.family = json_string(a, "family");
        na.address = json_string(a, "local");
        if (auto p = a.find("prefixlen"); p != a.end() && p->is_number_integer()) na.prefix_length = p->get<int>();
        na.scope = json_string(a, "scope");
        if (!na.address.empty()) i.addresses.push_back(std::move(na));
      }
    }
    out.push_back(std::move(i));
  }
  return out;
}

// `ip -o addr`: "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\       valid_lft ..."
std::vector<NetInterface> parse_ip_addr_oneline(std::string_view text) {
  std::vector<NetInterface> out;
  std::size_t n = 0;
  for (auto line : lines_of(text)) {
    ++n;
    if (trim(line).empty()) continue;
    auto w = split_ws(line);
    if (w.size() < 4 || w[0].empty() || w[0].back() != ':' || !all_digits(w[0].substr(0, w[0].size() - 1)))
      fail("ip -o addr line " + std::to_string(n) + " is not 'N: IFACE FAMILY ADDRESS/PREFIX ...': " + excerpt(line));
    std::string name(w[1]);
    if (auto at = name.find('@'); at != std::string::npos) name.resize(at);
    auto it = std::find_if(out.begin(), out.end(), [&](NetInterface const& i) { return i.name == name; });
    if (it == out.end()) {
      NetInterface i;
      i.name = name;
      i.up = true;  // `ip -o addr` lists addresses, not link state
      i.loopback = name == "lo";
      out.push_back(std::move(i));
      it = out.end() - 1;
    }
    if (w[2] != "inet" && w[2] != "inet6") continue;  // link/ether lines of some versions
    NetAddress a;
    a.family = std::string(w[2]);
    auto slash = w[3].find('/');
    a.address = std::string(w[3].substr(0, slash));
    if (slash != std::string_view::npos) {
      auto p = to_u64(w[3].substr(slash + 1));
      if (!p || *p > 128) fail("ip -o addr line " + std::to_string(n) + ": bad prefix in " + excerpt(w[3]));
      a.prefix_length = static_cast<int>(*p);
    }
    for (std::size_t k = 4; k + 1 < w.size(); ++k)
      if (w[k] == "scope") a.scope = std::string(w[k + 1]);
    it->addresses.push_back(std::move(a));
  }
  if (out.empty()) fail("ip -o addr listed no interface");
  return out;
}

}  // namespace

std::vector<NetInterface> parse_ip_addr(std::string_view text) {
  auto t = trim(text);
  if (t.empty()) fail("ip addr printed nothing");
  if (t.front() == '[') return parse_ip_addr_json(parse_json(t, "ip -j addr", kLargeLimit));
  check_size(t, kLargeLimit, "ip -o addr");
  return parse_ip_addr_oneline(t);
}

RouteToPeer parse_ip_route_get(std::string_view text) {
  auto t = trim(text);
  if (t.empty()) fail("ip route get printed nothing");
  RouteToPeer r;
  if (t.front() == '[') {
    auto j = parse_json(t, "ip -j route get", kSmallLimit);
    if (!j.is_array() || j.empty() || !j[0].is_object()) fail("ip -j route get did not print one route: " + excerpt(t));
    auto const& e = j[0];
    r.peer_address = json_string(e, "dst");
    r.interface = json_string(e, "dev");
    r.source_address = json_string(e, "prefsrc");
    r.gateway = json_string(e, "gateway");
    r.local = json_string(e, "type") == "local";
  } else {
    check_size(t, kSmallLimit, "ip route get");
    auto first = t.substr(0, t.find('\n'));
    auto w = split_ws(first);
    std::size_t k = 0;
    if (!w.empty() && (w[0] == "local" || w[0] == "unicast" || w[0] == "broadcast")) {
      r.local = w[0] == "local";
      ++k;
    }
    if (k < w.size()) r.peer_address = std::string(w[k]);
    for (; k + 1 < w.size(); ++k) {
      if (w[k] == "dev") r.interface = std::string(w[k + 1]);
      else if (w[k] == "src") r.source_address = std::string(w[k + 1]);
      else if (w[k] == "via") r.gateway = std::string(w[k + 1]);
    }
  }
  if (r.interface.empty()) fail("ip route get names no interface (dev): " + excerpt(t));
  if (r.interface == "lo" && !r.local) r.local = true;
  return r;
}

// ---------------------------------------------------------------------------
// Python

std::string PythonFacts::package(std::string const& name) const {
  auto it = packages.find(name);
  return it == packages.end() ? std::string() : it->second;
}

PythonFacts parse_python_facts(std::string_view json_text) {
  auto j = parse_json(trim(json_text), "python facts", kSmallLimit);
  if (!j.is_object()) fail("the python facts line is not a JSON object: " + excerpt(trim(json_text)));
  PythonFacts p;
  p.executable = json_string(j, "executable");
  p.version = json_string(j, "version");
  if (p.version.empty()) fail("the python facts have no version: " + excerpt(trim(json_text)));
  if (auto pk = j.find("packages"); pk != j.end()) {
    if (!pk->is_object()) fail("the python facts' packages are not an object");
    for (auto it = pk->begin(); it != pk->end(); ++it)
      if (it->is_string() && !it->get<std::string>().empty()) p.packages[it.key()] = it->get<std::string>();
  }
  return p;
}

// ---------------------------------------------------------------------------
// HostFacts

FactIssue const* HostFacts::issue(std::string_view section) const {
  for (auto const& i : issues)
    if (i.section == section) return &i;
  return nullptr;
}

RouteToPeer const* HostFacts::route_to(std::string_view peer) const {
  for (auto const& r : routes)
    if (r.peer == peer || r.peer_address == peer) return &r;
  return nullptr;
}

NetInterface const* HostFacts::interface_named(std::string_view name) const {
  for (auto const& i : interfaces)
    if (i.name == name) return &i;
  return nullptr;
}

NetInterface const* HostFacts::interface_with_address(std::string_view address) const {
  for (auto const& i : interfaces)
    for (auto const& a : i.addresses)
      if (a.address == address) return &i;
  return nullptr;
}

DiskUsage const* HostFacts::disk(std::string_view path) const {
  for (auto const& d : disks)
    if (d.path == path) return &d;
  return nullptr;
}

std::string HostFacts::driver_version() const {
  for (auto const& g : gpus)
    if (!g.driver_version.empty()) return g.driver_version;
  return nvidia ? nvidia->driver_version : std::string();
}

std::string HostFacts::cuda_version() const { return nvidia ? nvidia->cuda_version : std::string(); }

std::uint64_t HostFacts::gpu_memory_total_bytes() const {
  std::uint64_t t = 0;
  for (auto const& g : gpus) t += g.memory_total_bytes;
  return t;
}

namespace {

json disk_json(DiskUsage const& d) {
  return {{"path", d.path},
          {"filesystem", d.filesystem},
          {"mount_point", d.mount_point},
          {"total_bytes", d.total_bytes},
          {"used_bytes", d.used_bytes},
          {"available_bytes", d.available_bytes}};
}

}  // namespace

json HostFacts::to_json() const {
  json j;
  j["host"] = host;
  j["hostname"] = hostname;
  if (os) j["os"] = {{"id", os->id}, {"version_id", os->version_id}, {"pretty_name", os->pretty_name}};
  else j["os"] = nullptr;
  if (kernel) j["kernel"] = {{"system", kernel->system}, {"release", kernel->release}, {"machine", kernel->machine}};
  else j["kernel"] = nullptr;
  j["cpus"] = cpus ? json(*cpus) : json(nullptr);
  if (memory)
    j["memory"] = {{"total_bytes", memory->total_bytes},
                   {"available_bytes", memory->available_bytes},
                   {"free_bytes", memory->free_bytes},
                   {"swap_total_bytes", memory->swap_total_bytes},
                   {"swap_free_bytes", memory->swap_free_bytes}};
  else j["memory"] = nullptr;
  j["shm"] = shm ? disk_json(*shm) : json(nullptr);
  j["disks"] = json::array();
  for (auto const& d : disks) j["disks"].push_back(disk_json(d));
  j["gpus"] = json::array();
  for (auto const& g : gpus)
    j["gpus"].push_back({{"index", g.index},
                         {"uuid", g.uuid},
                         {"name", g.name},
                         {"memory_total_bytes", g.memory_total_bytes},
                         {"memory_used_bytes", g.memory_used_bytes},
                         {"driver_version", g.driver_version},
                         {"compute_capability", g.compute_capability},
                         {"pci_bus_id", g.pci_bus_id},
                         {"simulated", g.simulated}});
  j["gpus_simulated"] = gpus_simulated;
  j["driver_version"] = driver_version();
  j["cuda_version"] = cuda_version();
  if (topology) {
    json t;
    t["devices"] = topology->devices;
    t["links"] = topology->links;
    t["cpu_affinity"] = topology->cpu_affinity;
    t["numa_affinity"] = topology->numa_affinity;
    t["all_gpus_nvlinked"] = topology->all_gpus_nvlinked();
    j["topology"] = t;
  } else {
    j["topology"] = nullptr;
  }
  if (docker) {
    j["docker"] = {{"client_version", docker->client_version},
                   {"client_api_version", docker->client_api_version},
                   {"daemon_reachable", docker->daemon_reachable},
                   {"server_version", docker->server_version},
                   {"daemon_error", docker->daemon_error},
                   {"runtimes", docker->runtimes},
                   {"nvidia_toolkit", docker->nvidia_toolkit},
                   {"nvidia_runtime_registered", docker->nvidia_runtime_registered()},
                   {"can_run_gpu_containers", docker->can_run_gpu_containers()},
                   {"images", docker->images}};
  } else {
    j["docker"] = nullptr;
  }
  j["interfaces"] = json::array();
  for (auto const& i : interfaces) {
    json a = json::array();
    for (auto const& x : i.addresses)
      a.push_back({{"family", x.family}, {"address", x.address}, {"prefix_length", x.prefix_length}, {"scope", x.scope}});
    j["interfaces"].push_back(
        {{"name", i.name}, {"up", i.up}, {"loopback", i.loopback}, {"mtu", i.mtu}, {"mac", i.mac}, {"addresses", a}});
  }
  j["routes"] = json::array();
  for (auto const& r : routes)
    j["routes"].push_back({{"peer", r.peer},
                           {"peer_address", r.peer_address},
                           {"interface", r.interface},
                           {"source_address", r.source_address},
                           {"gateway", r.gateway},
                           {"local", r.local}});
  if (ephemeral_ports) j["ephemeral_ports"] = {ephemeral_ports->first, ephemeral_ports->second};
  else j["ephemeral_ports"] = nullptr;
  if (clock)
    j["clock"] = {{"remote_epoch", clock->remote_epoch},
                  {"local_sent", clock->local_sent},
                  {"local_received", clock->local_received},
                  {"offset_seconds", clock->offset_seconds()},
                  {"uncertainty_seconds", clock->uncertainty_seconds()}};
  else j["clock"] = nullptr;
  if (python)
    j["python"] = {{"executable", python->executable}, {"version", python->version}, {"packages", python->packages}};
  else j["python"] = nullptr;
  j["issues"] = json::array();
  for (auto const& i : issues)
    j["issues"].push_back(
        {{"section", i.section}, {"kind", i.kind == FactIssue::Kind::absent ? "absent" : "failed"}, {"message", i.message}});
  return j;
}

json HostFactsOutcome::to_json() const {
  json j = facts.to_json();
  j["host"] = host;
  j["ok"] = ok();
  j["error"] = error ? json(error.message()) : json(nullptr);
  j["message"] = message;
  j["duration_ms"] = std::chrono::duration<double, std::milli>(duration).count();
  return j;
}

// ---------------------------------------------------------------------------
// Declared GPUs

std::optional<DeclaredGpus> declared_gpus(InventoryHost const& host) {
  if (!host.extra.is_object()) return std::nullopt;
  auto it = host.extra.find("gpus");
  if (it == host.extra.end() || !it->is_object()) return std::nullopt;
  DeclaredGpus d;
  auto const& g = *it;
  if (auto c = g.find("count"); c != g.end() && c->is_number_integer() && c->get<long long>() >= 0)
    d.count = static_cast<unsigned>(std::min<long long>(c->get<long long>(), 1 << 20));
  if (auto m = g.find("model"); m != g.end() && m->is_string()) d.model = m->get<std::string>();
  if (auto m = g.find("memory_gib"); m != g.end() && m->is_number()) d.memory_gib = m->get<double>();
  if (auto s = g.find("simulated"); s != g.end() && s->is_boolean()) d.simulated = s->get<bool>();
  return d;
}

std::map<std::string, DeclaredGpus> declared_gpus_of(std::vector<InventoryHost> const& hosts) {
  std::map<std::string, DeclaredGpus> out;
  for (auto const& h : hosts)
    if (auto d = declared_gpus(h)) out[h.spec.name] = *d;
  return out;
}

void apply_declared_gpus(HostFacts& facts, DeclaredGpus const& declared) {
  if (!declared.simulated) return;
  if (!facts.gpus.empty() && !facts.gpus_simulated) {
    facts.issues.push_back({"gpus-declared", FactIssue::Kind::failed,
                            "the inventory declares simulated GPUs, but nvidia-smi found " + std::to_string(facts.gpus.size()) +
                                " real ones; the real GPUs are used"});
    return;
  }
  facts.gpus.clear();
  unsigned const count = std::min<unsigned>(declared.count, kMaxGpus);
  for (unsigned i = 0; i < count; ++i) {
    GpuInfo g;
    g.index = i;
    g.uuid = "SIMULATED-" + facts.host + "-" + std::to_string(i);
    g.name = declared.model.empty() ? "simulated GPU" : declared.model;
    // One source of truth with the planner: a known model's declared size is
    // its nominal one ("L20 48": 48 GB), and the memory the planner uses is
    // what nvidia-smi reports for it (46068 MiB); unknown models as declared.
    double bytes = declared.memory_gib * double(1ull << 30);
    if (auto known = known_gpu_memory_bytes(g.name, declared.memory_gib)) bytes = static_cast<double>(*known);
    g.memory_total_bytes = bytes > 0 && bytes < 1e18 ? static_cast<std::uint64_t>(bytes) : 0;
    g.simulated = true;
    facts.gpus.push_back(std::move(g));
  }
  facts.gpus_simulated = count > 0;
}

// ---------------------------------------------------------------------------
// The script

namespace {

void check_argument(std::string const& s, char const* what) {
  if (s.empty() || s.find('\n') != std::string::npos || s.find('\0') != std::string::npos || s.find('\r') != std::string::npos)
    throw Error(make_error_code(errc::invalid_argument),
                std::string("facts: ") + what + " " + excerpt(s) + " is empty or contains a newline");
}

// Prints one JSON line: the interpreter and the versions of the packages
// that must match across nodes. importlib.metadata reads the installed
// metadata without importing the packages (importing torch or vllm takes
// seconds). No single quotes: it is embedded in a single-quoted argument.
constexpr char const* kPythonFacts =
    "import json, platform, sys\n"
    "try:\n"
    "    from importlib import metadata\n"
    "except ImportError:\n"
    "    metadata = None\n"
    "packages = {}\n"
    "for name in (\"ray\", \"vllm\", \"torch\", \"transformers\", \"nvidia-nccl-cu12\", \"nvidia-nccl-cu13\",\n"
    "             \"flashinfer-python\", \"huggingface-hub\", \"modelscope\"):\n"
    "    try:\n"
    "        packages[name] = metadata.version(name) if metadata else None\n"
    "    except Exception:\n"
    "        packages[name] = None\n"
    "print(json.dumps({\"executable\": sys.executable, \"version\": platform.python_version(), \"packages\": packages}))\n";

}  // namespace

std::string facts_script(FactsOptions const& options) {
  for (auto const& p : options.disk_paths) check_argument(p, "disk path");
  for (auto const& p : options.peers) check_argument(p, "peer");
  for (auto const& p : options.docker_images) check_argument(p, "docker image");
  check_argument(options.python, "python");
  auto q = [](std::string const& s) { return shell::quote(s); };
  long limit = std::max<long>(1, static_cast<long>(options.command_timeout.count()));
  std::ostringstream s;
  s << "# clusterkit facts: one section per fact; every command optional and time-limited.\n"
       "LC_ALL=C; export LC_ALL\n"
       "PATH=\"$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; export PATH\n"
       "ck_err=$(mktemp 2>/dev/null) || ck_err=/tmp/.ck-facts-$$\n"
       "trap 'rm -f \"$ck_err\"' EXIT\n"
       "ck_limit=\n"
       "if command -v timeout >/dev/null 2>&1; then ck_limit=\"timeout "
    << limit
    << "\"; fi\n"
       "ck_section() { printf '@@ck-section %s@@\\n' \"$1\"; }\n"
       "# ck_run SECTION PROGRAM ARGS...: stdout, exit status, end of stderr;\n"
       "# or a note that PROGRAM is not installed.\n"
       "ck_run() {\n"
       "  ck_section \"$1\"; shift\n"
       "  if ! command -v \"$1\" >/dev/null 2>&1; then printf '@@ck-absent %s@@\\n' \"$1\"; return 0; fi\n"
       "  $ck_limit \"$@\" </dev/null 2>\"$ck_err\"\n"
       "  printf '\\n@@ck-status %s@@\\n' \"$?\"\n"
       "  tail -c 2000 \"$ck_err\" 2>/dev/null | sed 's/^/@@ck-stderr@@ /'\n"
       "}\n"
       // The clock first: its line is timed on arrival.
       "ck_run clock date +%s.%N\n"
       "ck_run hostname uname -n\n"
       "ck_run os-release cat /etc/os-release\n"
       "ck_run uname uname -srm\n"
       "ck_run nproc nproc\n"
       "ck_run meminfo cat /proc/meminfo\n"
       "ck_run shm df -P -B1 /dev/shm\n";
  for (std::size_t i = 0; i < options.disk_paths.size(); ++i)
    s << "ck_run 'disk " << i << "' df -P -B1 -- " << q(options.disk_paths[i]) << "\n";
  s << "ck_run port-range cat /proc/sys/net/ipv4/ip_local_port_range\n"
    << "ck_run gpus nvidia-smi --query-gpu=" << gpu_query_fields() << " --format=csv,noheader,nounits\n"
    << "ck_run nvidia-smi nvidia-smi\n"
       "ck_run topology nvidia-smi topo -m\n"
       "ck_run docker-version docker version --format '{{json .}}'\n"
       "ck_run docker-runtimes docker info --format '{{json .Runtimes}}'\n"
       "ck_section nvidia-toolkit\n"
       "for ck_p in nvidia-container-runtime nvidia-container-runtime-hook nvidia-container-cli nvidia-ctk; do\n"
       "  command -v \"$ck_p\" 2>/dev/null\n"
       "done\n"
       "printf '@@ck-status 0@@\\n'\n";
  for (std::size_t i = 0; i < options.docker_images.size(); ++i)
    s << "ck_run 'image " << i << "' docker image inspect --format '{{.Id}}' " << q(options.docker_images[i]) << "\n";
  s << "if ip -j addr >/dev/null 2>&1; then ck_run addresses ip -j addr; else ck_run addresses ip -o addr; fi\n";
  for (std::size_t i = 0; i < options.peers.size(); ++i) {
    auto peer = q(options.peers[i]);
    s << "ck_a=$( (getent ahostsv4 " << peer << " || getent ahosts " << peer
      << ") 2>/dev/null | awk 'NR==1{print $1; exit}'); [ -n \"$ck_a\" ] || ck_a=" << peer << "\n"
      << "ck_section 'resolve " << i << "'; printf '%s\\n@@ck-status 0@@\\n' \"$ck_a\"\n"
      << "if ip -j route get \"$ck_a\" >/dev/null 2>&1; then ck_run 'route " << i
      << "' ip -j route get \"$ck_a\"; else ck_run 'route " << i << "' ip route get \"$ck_a\"; fi\n";
  }
  s << "ck_run python " << q(options.python) << " -c " << q(kPythonFacts) << "\n"
    << "ck_section end; printf '@@ck-status 0@@\\n'\n";
  return s.str();
}

std::vector<FactsSection> split_facts_sections(std::string_view output) {
  std::vector<FactsSection> out;
  FactsSection* cur = nullptr;
  bool closed = false;  // past the status line
  auto marker = [](std::string_view line, std::string_view head) -> std::optional<std::string_view> {
    if (!starts_with(line, head) || line.size() < head.size() + 2 || line.substr(line.size() - 2) != "@@") return std::nullopt;
    return line.substr(head.size(), line.size() - head.size() - 2);
  };
  for (auto line : lines_of(output)) {
    if (auto name = marker(line, "@@ck-section ")) {
      if (out.size() >= 4096) break;
      out.push_back({});
      cur = &out.back();
      cur->name = std::string(*name);
      closed = false;
      continue;
    }
    if (!cur) continue;
    if (auto st = marker(line, "@@ck-status ")) {
      auto v = to_u64(*st);
      cur->exit_status = v && *v < 100000 ? std::optional<int>(static_cast<int>(*v)) : std::optional<int>(-1);
      closed = true;
      continue;
    }
    if (auto prog = marker(line, "@@ck-absent ")) {
      cur->absent_program = std::string(*prog);
      closed = true;
      continue;
    }
    if (starts_with(line, "@@ck-stderr@@")) {
      auto text = line.substr(13);
      if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
      if (cur->stderr_tail.size() < 4000) {
        cur->stderr_tail.append(text);
        cur->stderr_tail.push_back('\n');
      }
      continue;
    }
    if (closed) continue;
    cur->body.append(line);
    cur->body.push_back('\n');
  }
  for (auto& sec : out) {
    sec.name = detail::valid_utf8(sec.name);
    sec.body = detail::valid_utf8(sec.body);
    sec.stderr_tail = detail::valid_utf8(sec.stderr_tail);
    sec.absent_program = detail::valid_utf8(sec.absent_program);
    while (!sec.body.empty() && (sec.body.back() == '\n')) sec.body.pop_back();
    if (!sec.body.empty()) sec.body.push_back('\n');
    while (!sec.stderr_tail.empty() && sec.stderr_tail.back() == '\n') sec.stderr_tail.pop_back();
  }
  return out;
}

namespace {

/// The first line of what a failed command said, for messages.
std::string what_it_said(FactsSection const& s) {
  auto pick = [](std::string_view text) -> std::string {
    for (auto l : lines_of(text)) {
      auto t = trim(l);
      if (!t.empty()) return std::string(t.substr(0, 300));
    }
    return {};
  };
  auto e = pick(s.stderr_tail);
  if (!e.empty()) return e;
  return pick(s.body);
}

std::string failure_message(FactsSection const& s, std::string_view command) {
  std::string msg = std::string(command);
  if (s.exit_status && *s.exit_status == 124) msg += " did not finish in time (stopped by timeout)";
  else if (s.exit_status) msg += " exited with status " + std::to_string(*s.exit_status);
  else msg += " did not report an exit status (output cut short)";
  auto said = what_it_said(s);
  if (!said.empty()) msg += ": " + said;
  return msg;
}


}  // namespace

HostFacts parse_facts_output(std::string_view output, FactsOptions const& options) {
  HostFacts f;
  auto sections = split_facts_sections(output);
  std::map<std::string, FactsSection const*> by_name;
  for (auto const& s : sections) by_name.emplace(s.name, &s);

  auto add_issue = [&](std::string section, FactIssue::Kind kind, std::string message) {
    f.issues.push_back({std::move(section), kind, std::move(message)});
  };
  // Runs `parse` on the section's body when the command ran and succeeded
  // (or, with `any_status`, whenever it printed something).
  auto with = [&](std::string const& name, std::string const& issue_name, std::string_view command, auto&& parse,
                  bool any_status = false) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      add_issue(issue_name, FactIssue::Kind::failed, "no output for " + std::string(command) + " (the facts script was cut short?)");
      return;
    }
    auto const& s = *it->second;
    if (!s.absent_program.empty()) {
      add_issue(issue_name, FactIssue::Kind::absent, s.absent_program + " is not installed (not on PATH)");
      return;
    }
    bool ran_ok = s.exit_status && *s.exit_status == 0;
    if (!ran_ok && !(any_status && !trim(s.body).empty())) {
      add_issue(issue_name, FactIssue::Kind::failed, failure_message(s, command));
      return;
    }
    try {
      parse(s);
    } catch (Error const& e) {
      add_issue(issue_name, FactIssue::Kind::failed, e.what());
    } catch (std::exception const& e) {  // never expected; keep one host's garbage from stopping the rest
      add_issue(issue_name, FactIssue::Kind::failed, std::string(command) + ": " + e.what());
    }
  };

  with("clock", "clock", "date +%s.%N", [&](FactsSection const& s) {
    ClockSample c;
    c.remote_epoch = parse_epoch_seconds(s.body);
    f.clock = c;
  });
  with("hostname", "hostname", "uname -n", [&](FactsSection const& s) {
    auto t = trim(s.body);
    if (t.empty() || t.size() > 255 || t.find('\n') != std::string_view::npos) fail("uname -n printed " + excerpt(t));
    f.hostname = std::string(t);
  });
  with("os-release", "os", "cat /etc/os-release", [&](FactsSection const& s) { f.os = parse_os_release(s.body); });
  with("uname", "kernel", "uname -srm", [&](FactsSection const& s) { f.kernel = parse_uname(s.body); });
  with("nproc", "cpus", "nproc", [&](FactsSection const& s) { f.cpus = parse_nproc(s.body); });
  with("meminfo", "memory", "cat /proc/meminfo", [&](FactsSection const& s) { f.memory = parse_meminfo(s.body); });
  with("shm", "shm", "df /dev/shm", [&](FactsSection const& s) {
    auto d = parse_df(s.body);
    d.front().path = "/dev/shm";
    f.shm = d.front();
  });
  for (std::size_t i = 0; i < options.disk_paths.size(); ++i) {
    auto const& path = options.disk_paths[i];
    with("disk " + std::to_string(i), "disk " + path, "df " + path, [&](FactsSection const& s) {
      auto d = parse_df(s.body);
      d.front().path = path;
      f.disks.push_back(d.front());
    });
  }
  with("port-range", "port-range", "cat /proc/sys/net/ipv4/ip_local_port_range",
       [&](FactsSection const& s) { f.ephemeral_ports = parse_port_range(s.body); });
  with("gpus", "gpus", "nvidia-smi --query-gpu", [&](FactsSection const& s) { f.gpus = parse_gpu_query(s.body); });
  with("nvidia-smi", "cuda", "nvidia-smi", [&](FactsSection const& s) { f.nvidia = parse_nvidia_smi_header(s.body); });
  with("topology", "topology", "nvidia-smi topo -m", [&](FactsSection const& s) { f.topology = parse_gpu_topology(s.body); });
  // docker version exits 1 with the client's JSON when the daemon is down.
  with(
      "docker-version", "docker", "docker version",
      [&](FactsSection const& s) {
        auto d = parse_docker_version(s.body);
        if (!d.daemon_reachable) {
          d.daemon_error = what_it_said(FactsSection{"", "", s.exit_status, "", s.stderr_tail});
          if (d.daemon_error.empty()) d.daemon_error = "the Docker daemon did not answer";
        }
        f.docker = std::move(d);
      },
      /*any_status=*/true);
  if (f.docker && f.docker->daemon_reachable) {
    with("docker-runtimes", "docker-runtimes", "docker info",
         [&](FactsSection const& s) { f.docker->runtimes = parse_docker_runtimes(s.body); });
  }
  if (f.docker) {
    if (auto it = by_name.find("nvidia-toolkit"); it != by_name.end())
      for (auto l : lines_of(it->second->body))
        if (auto t = trim(l); !t.empty() && t.front() == '/' && f.docker->nvidia_toolkit.size() < 16)
          f.docker->nvidia_toolkit.emplace_back(t);
    for (std::size_t i = 0; i < options.docker_images.size(); ++i) {
      auto const& image = options.docker_images[i];
      auto it = by_name.find("image " + std::to_string(i));
      std::string id;
      if (it != by_name.end() && it->second->exit_status == 0) {
        auto t = trim(it->second->body);
        if (starts_with(t, "sha256:") && t.size() < 200 && t.find('\n') == std::string_view::npos) id = std::string(t);
      }
      f.docker->images[image] = id;
    }
  }
  with("addresses", "addresses", "ip addr", [&](FactsSection const& s) { f.interfaces = parse_ip_addr(s.body); });
  for (std::size_t i = 0; i < options.peers.size(); ++i) {
    auto const& peer = options.peers[i];
    with("route " + std::to_string(i), "route " + peer, "ip route get " + peer, [&](FactsSection const& s) {
      auto r = parse_ip_route_get(s.body);
      r.peer = peer;
      if (r.peer_address.empty())
        if (auto it = by_name.find("resolve " + std::to_string(i)); it != by_name.end())
          r.peer_address = std::string(trim(it->second->body));
      if (r.local) {
        // The peer is this host: name the interface that holds the address,
        // not `lo` (NCCL must not be pointed at loopback).
        auto address = r.source_address.empty() ? r.peer_address : r.source_address;
        if (auto const* iface = f.interface_with_address(address)) r.interface = iface->name;
        if (r.source_address.empty()) r.source_address = r.peer_address;
      }
      f.routes.push_back(std::move(r));
    });
  }
  with("python", "python", options.python + " -c (versions)", [&](FactsSection const& s) {
    f.python = parse_python_facts(s.body);
  });
  if (by_name.find("end") == by_name.end())
    add_issue("script", FactIssue::Kind::failed, "the facts script did not reach its end (cut short or killed)");
  // Section names that were never expected are ignored: another version of
  // the script may print more.
  return f;
}

}  // namespace clusterkit

namespace clusterkit {

std::string describe_facts(HostFactsOutcome const& o) {
  std::ostringstream s;
  auto const& f = o.facts;
  if (o.error) {
    s << o.host << ": facts not gathered: " << (o.message.empty() ? o.error.message() : o.message) << "\n";
    return s.str();
  }
  s << o.host;
  std::vector<std::string> head;
  if (!f.hostname.empty() && f.hostname != o.host) head.push_back("hostname " + f.hostname);
  if (f.os) head.push_back(f.os->pretty_name);
  if (f.kernel) head.push_back(f.kernel->system + " " + f.kernel->release + " " + f.kernel->machine);
  if (!head.empty()) {
    s << " (";
    for (std::size_t i = 0; i < head.size(); ++i) s << (i ? ", " : "") << head[i];
    s << ")";
  }
  s << "\n";
  auto row = [&](char const* label) -> std::ostringstream& {
    char buf[16];
    std::snprintf(buf, sizeof buf, "  %-9s", label);
    s << buf;
    return s;
  };
  if (f.cpus || f.memory) {
    auto& r = row("cpu");
    if (f.cpus) r << *f.cpus << " CPUs";
    if (f.memory)
      r << (f.cpus ? ", " : "") << "memory " << format_bytes(f.memory->total_bytes) << " ("
        << format_bytes(f.memory->available_bytes) << " available)";
    r << "\n";
  }
  if (f.shm) row("shm") << "/dev/shm " << format_bytes(f.shm->total_bytes) << " (" << format_bytes(f.shm->available_bytes) << " free)\n";
  for (auto const& d : f.disks)
    row("disk") << d.path << ": " << format_bytes(d.available_bytes) << " free of " << format_bytes(d.total_bytes) << " ("
                << d.filesystem << " on " << d.mount_point << ")\n";
  if (!f.gpus.empty()) {
    // Group identical GPUs: "2x NVIDIA H100 80GB HBM3, 79.6 GiB each".
    auto const& g0 = f.gpus.front();
    bool same = std::all_of(f.gpus.begin(), f.gpus.end(), [&](GpuInfo const& g) {
      return g.name == g0.name && g.memory_total_bytes == g0.memory_total_bytes;
    });
    auto& r = row("gpus");
    if (same) r << f.gpus.size() << "x " << g0.name << ", " << format_bytes(g0.memory_total_bytes) << " each";
    else r << f.gpus.size() << " GPUs of different kinds";
    if (!g0.compute_capability.empty()) r << ", compute " << g0.compute_capability;
    if (f.gpus_simulated) r << " [simulated: declared in the inventory, no nvidia-smi on the host]";
    r << "\n";
    if (!f.gpus_simulated)
      for (auto const& g : f.gpus)
        s << "             GPU" << g.index << " " << g.name << " " << g.pci_bus_id << " " << g.uuid << ", "
          << format_bytes(g.memory_used_bytes) << " of " << format_bytes(g.memory_total_bytes) << " in use\n";
  } else {
    row("gpus") << "none\n";
  }
  if (!f.driver_version().empty() || !f.cuda_version().empty())
    row("driver") << (f.driver_version().empty() ? "-" : f.driver_version()) << ", CUDA "
                  << (f.cuda_version().empty() ? "-" : f.cuda_version()) << "\n";
  if (f.topology) {
    auto& r = row("topology");
    bool any = false;
    for (std::size_t i = 0; i < f.topology->devices.size(); ++i)
      for (std::size_t j = i + 1; j < f.topology->devices.size(); ++j) {
        if (f.topology->devices[i].rfind("GPU", 0) != 0 || f.topology->devices[j].rfind("GPU", 0) != 0) continue;
        r << (any ? ", " : "") << f.topology->devices[i] << "-" << f.topology->devices[j] << " " << f.topology->links[i][j];
        any = true;
      }
    if (!any) r << f.topology->devices.size() << " device(s)";
    r << "\n";
  }
  if (f.docker) {
    auto& r = row("docker");
    r << "client " << f.docker->client_version;
    if (f.docker->daemon_reachable) {
      r << ", daemon " << f.docker->server_version << ", runtimes ";
      for (std::size_t i = 0; i < f.docker->runtimes.size(); ++i) r << (i ? "," : "") << f.docker->runtimes[i];
      r << "; GPU containers: " << (f.docker->can_run_gpu_containers() ? "yes" : "no (no NVIDIA runtime)");
    } else {
      r << ", daemon not reachable: " << f.docker->daemon_error;
    }
    r << "\n";
    for (auto const& [image, id] : f.docker->images)
      row("image") << image << ": " << (id.empty() ? "not on this host" : id.substr(0, 19)) << "\n";
  }
  std::size_t unaddressed = 0;
  for (auto const& i : f.interfaces) {
    if (i.loopback) continue;
    bool routable = std::any_of(i.addresses.begin(), i.addresses.end(),
                                [](NetAddress const& a) { return a.scope != "link" && a.scope != "host"; });
    if (!routable) {
      ++unaddressed;
      continue;
    }
    auto& r = row("network");
    r << i.name;
    for (auto const& a : i.addresses)
      if (a.scope != "link") r << " " << a.address << "/" << a.prefix_length;
    r << " mtu " << i.mtu << (i.up ? " up" : " down") << "\n";
  }
  if (unaddressed) row("network") << "(" << unaddressed << " more interface(s) without a routable address)\n";
  for (auto const& rt : f.routes) {
    auto& r = row("route");
    r << "to " << rt.peer;
    if (rt.peer_address != rt.peer && !rt.peer_address.empty()) r << " (" << rt.peer_address << ")";
    r << ": " << (rt.local ? "this host, " : "") << "via " << rt.interface << " from " << rt.source_address;
    if (!rt.gateway.empty()) r << " through gateway " << rt.gateway;
    r << " -> VLLM_HOST_IP=" << rt.source_address << " NCCL_SOCKET_IFNAME=" << rt.interface
      << " GLOO_SOCKET_IFNAME=" << rt.interface << "\n";
  }
  if (f.clock) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%+.3f s against this machine (+-%.3f s)", f.clock->offset_seconds(),
                  f.clock->uncertainty_seconds());
    row("clock") << buf << "\n";
  }
  if (f.python) {
    auto& r = row("python");
    r << f.python->version << " (" << f.python->executable << ")";
    for (char const* p : {"ray", "vllm", "torch"}) {
      auto v = f.python->package(p);
      r << ", " << p << " " << (v.empty() ? "-" : v);
    }
    r << "\n";
  }
  for (auto const& i : f.issues)
    row(i.kind == FactIssue::Kind::absent ? "absent" : "problem") << i.section << ": " << i.message << "\n";
  return s.str();
}

}  // namespace clusterkit
