// ModelStore, the pure half: what the hub CLIs and rsync print, turned into
// progress; the scripts hosts run; the plan of copy streams; the snapshot a
// host reports of a model folder. Nothing here touches a host.
#include "clusterkit/model_store.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "clusterkit/shell.hpp"
#include "core/text.hpp"

#include <array>

namespace clusterkit {

using detail::lines_of;
using detail::trim;

namespace {

[[noreturn]] void invalid(std::string message) { throw Error(make_error_code(errc::invalid_argument), std::move(message)); }
[[noreturn]] void malformed(std::string message) { throw Error(make_error_code(errc::parse_error), std::move(message)); }

bool contains(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

bool contains_any(std::string_view text, std::initializer_list<std::string_view> needles) {
  for (auto n : needles)
    if (contains(text, n)) return true;
  return false;
}

/// "2.07M" -> 2070000, "642" -> 642, "10.5MB" -> 10500000 (tqdm's
/// unit_scale: powers of 1000). `had_b`: the value carried a "B".
std::optional<double> scaled_number(std::string_view text, bool& had_b) {
  text = trim(text);
  had_b = false;
  if (text.empty()) return std::nullopt;
  if (text.back() == 'B') {
    had_b = true;
    text.remove_suffix(1);
  }
  double scale = 1;
  if (!text.empty()) {
    static constexpr std::string_view prefixes = "kMGTPEZY";
    if (auto p = prefixes.find(text.back()); p != std::string_view::npos) {
      scale = std::pow(1000.0, static_cast<double>(p + 1));
      text.remove_suffix(1);
    }
  }
  auto v = detail::to_double(trim(text));
  if (!v) return std::nullopt;
  return *v * scale;
}

/// The unit of a tqdm rate field: "1.84MB/s" / "?B/s" -> "B", "23.69file/s"
/// -> "file", "?it/s" -> "it", "1.58s/it" -> "it".
std::string rate_unit(std::string_view rate) {
  rate = trim(rate);
  if (auto slash = rate.find("s/"); slash != std::string_view::npos && !rate.ends_with("/s"))
    return std::string(rate.substr(slash + 2));
  if (!rate.ends_with("/s")) return {};
  rate.remove_suffix(2);
  while (!rate.empty() && (std::isdigit(static_cast<unsigned char>(rate.front())) || rate.front() == '.' ||
                           rate.front() == '?'))
    rate.remove_prefix(1);
  if (rate.size() == 2 && rate.back() == 'B' && std::string_view("kMGTPEZY").find(rate.front()) != std::string_view::npos)
    return "B";
  return std::string(rate);
}

std::string join_quoted(std::vector<std::string> const& argv) { return shell::join(argv); }

}  // namespace

// ---------------------------------------------------------------------------
// Progress

nlohmann::json TransferProgress::to_json() const {
  return {{"host", host},
          {"phase", phase},
          {"file", file},
          {"bytes_done", bytes_done},
          {"bytes_total", bytes_total},
          {"files_done", files_done},
          {"files_total", files_total},
          {"bytes_per_second", bytes_per_second},
          {"elapsed_seconds", std::chrono::duration<double>(elapsed).count()}};
}

std::string strip_ansi(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\x1b') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '[') {
      // CSI: parameters and intermediates, then one final byte 0x40-0x7E.
      std::size_t j = i + 2;
      while (j < text.size() && !(text[j] >= 0x40 && text[j] <= 0x7e)) ++j;
      i = j;
    } else {
      ++i;  // a two-byte escape
    }
  }
  return out;
}

std::optional<TqdmBar> parse_tqdm_bar(std::string_view segment) {
  // LABEL: NN%|BAR| COUNTS [TIMING, RATE]  or  LABEL: BAR| COUNTS
  auto first_bar = segment.find('|');
  if (first_bar == std::string_view::npos) return std::nullopt;
  auto second_bar = segment.find('|', first_bar + 1);
  auto head = segment.substr(0, first_bar);
  std::string_view tail;
  if (second_bar == std::string_view::npos) {
    // "Download complete: ████| 25.1MB": the bar itself is before the one '|'.
    tail = segment.substr(first_bar + 1);
  } else {
    tail = segment.substr(second_bar + 1);
  }
  auto colon = head.rfind(": ");
  if (colon == std::string_view::npos) {
    if (head.ends_with(":")) colon = head.size() - 1;
    else return std::nullopt;
  }
  TqdmBar bar;
  bar.label = std::string(trim(head.substr(0, colon)));
  if (bar.label.empty()) return std::nullopt;

  std::string_view timing;
  if (auto bracket = tail.find('['); bracket != std::string_view::npos) {
    timing = tail.substr(bracket + 1);
    if (auto close = timing.find(']'); close != std::string_view::npos) timing = timing.substr(0, close);
    tail = tail.substr(0, bracket);
  }
  tail = trim(tail);
  if (tail.empty()) return std::nullopt;
  bool n_b = false, total_b = false;
  if (auto slash = tail.find('/'); slash != std::string_view::npos) {
    auto n = scaled_number(tail.substr(0, slash), n_b);
    auto total = scaled_number(tail.substr(slash + 1), total_b);
    if (!n || !total) return std::nullopt;
    bar.n = *n;
    bar.total = *total;
  } else {
    auto n = scaled_number(tail, n_b);
    if (!n) return std::nullopt;
    bar.n = *n;
  }
  if (n_b || total_b) {
    bar.unit = "B";
  } else if (!timing.empty()) {
    auto comma = timing.rfind(',');
    bar.unit = rate_unit(comma == std::string_view::npos ? timing : timing.substr(comma + 1));
  }
  return bar;
}

bool DownloadProgressParser::feed(std::string_view raw) {
  auto clean = strip_ansi(raw);
  auto bar = parse_tqdm_bar(trim(clean));
  if (!bar) return false;
  if (bar->unit != "B") {
    if (bar->total <= 0) return false;
    files_done_ = static_cast<std::size_t>(bar->n);
    files_total_ = static_cast<std::size_t>(bar->total);
    return true;
  }
  auto const n = static_cast<std::uint64_t>(std::llround(bar->n));
  auto const total = static_cast<std::uint64_t>(std::llround(bar->total));
  // huggingface_hub draws aggregate byte bars; ModelScope one bar per file,
  // labelled with the file's name.
  auto const& label = bar->label;
  if (label.starts_with("Downloading bytes") || label.starts_with("Reconstruct") ||
      label.starts_with("Download complete")) {
    aggregate_done_ = std::max(aggregate_done_, n);
    if (total) aggregate_total_ = std::max(aggregate_total_, total);
    return true;
  }
  current_file_ = label;
  for (auto& f : files_)
    if (f.name == label) {
      f.done = std::max(f.done, n);
      if (total) f.total = total;
      return true;
    }
  files_.push_back({label, n, total});
  return true;
}

std::uint64_t DownloadProgressParser::bytes_done() const {
  // tqdm does not always redraw a file's bar at 100% before closing it;
  // the counting bar at its end means every byte is there.
  if (files_total_ && files_done_ >= files_total_) return bytes_total();
  std::uint64_t sum = 0;
  for (auto const& f : files_) sum += f.done;
  return std::max(sum, aggregate_done_);
}

std::uint64_t DownloadProgressParser::bytes_total() const {
  std::uint64_t sum = 0;
  for (auto const& f : files_) sum += f.total;
  return std::max(sum, aggregate_total_);
}

std::optional<std::uint64_t> parse_rsync_stat(std::string_view line, std::string_view name) {
  line = trim(line);
  if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ':') return std::nullopt;
  auto value = trim(line.substr(name.size() + 1));
  std::string digits;
  for (char c : value) {
    if (c == ',' || c == '.') continue;
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    digits.push_back(c);
  }
  return detail::to_u64(digits);
}

std::optional<RsyncProgress> parse_rsync_progress(std::string_view segment) {
  auto words = detail::split_ws(segment);
  if (words.size() < 4) return std::nullopt;
  std::string digits;
  for (char c : words[0]) {
    if (c == ',' || c == '.') continue;  // thousands separators of any locale
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    digits.push_back(c);
  }
  if (digits.empty() || !words[1].ends_with("%")) return std::nullopt;
  auto bytes = detail::to_u64(digits);
  auto percent = detail::to_long(words[1].substr(0, words[1].size() - 1));
  if (!bytes || !percent || !words[2].ends_with("/s")) return std::nullopt;
  RsyncProgress p;
  p.bytes = *bytes;
  p.percent = static_cast<int>(*percent);
  if (auto x = segment.find("xfr#"); x != std::string_view::npos) {
    auto end = segment.find_first_of(",)", x);
    if (auto v = detail::to_u64(segment.substr(x + 4, end == std::string_view::npos ? end : end - x - 4)))
      p.transferred = static_cast<std::size_t>(*v);
  }
  for (auto key : {std::string_view("to-chk="), std::string_view("ir-chk=")}) {
    if (auto c = segment.find(key); c != std::string_view::npos) {
      auto rest = segment.substr(c + key.size());
      auto slash = rest.find('/');
      auto close = rest.find(')');
      if (slash == std::string_view::npos || close == std::string_view::npos || close < slash) continue;
      auto left = detail::to_u64(rest.substr(0, slash));
      auto total = detail::to_u64(rest.substr(slash + 1, close - slash - 1));
      if (left && total) {
        p.to_check = static_cast<std::size_t>(*left);
        if (key == "to-chk=") p.total_files = static_cast<std::size_t>(*total);
      }
    }
  }
  return p;
}

// ---------------------------------------------------------------------------
// Download

std::string_view to_string(Hub hub) noexcept { return hub == Hub::modelscope ? "modelscope" : "huggingface"; }

std::optional<Hub> hub_from_string(std::string_view text) noexcept {
  if (text == "modelscope" || text == "ms") return Hub::modelscope;
  if (text == "huggingface" || text == "hf") return Hub::huggingface;
  return std::nullopt;
}

namespace {

void validate_download(DownloadSpec const& spec) {
  auto const& id = spec.model_id;
  auto slash = id.find('/');
  bool shape = slash != std::string::npos && slash > 0 && slash + 1 < id.size() && id.find('/', slash + 1) == std::string::npos;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' || c == '.')) shape = false;
  if (!shape)
    invalid("the model id '" + id + "' is not ORG/NAME (e.g. Qwen/Qwen2.5-72B-Instruct)");
  if (spec.local_dir.empty() || spec.local_dir.front() != '/')
    invalid("the download folder '" + spec.local_dir + "' must be an absolute path on the host");
  for (auto const* field : {&spec.revision, &spec.endpoint, &spec.cli, &spec.local_dir})
    if (field->find_first_of("\n\r") != std::string::npos) invalid("a download setting contains a line break");
  if (spec.token.find_first_of("\n\r") != std::string::npos) invalid("the access token contains a line break");
  if (!spec.endpoint.empty() && !spec.endpoint.starts_with("http://") && !spec.endpoint.starts_with("https://"))
    invalid("the hub endpoint '" + spec.endpoint + "' must start with http:// or https:// (e.g. https://hf-mirror.com)");
  if (spec.attempts < 1 || spec.attempts > 100)
    invalid("attempts must be between 1 and 100, not " + std::to_string(spec.attempts) + " (runs before giving up; --attempts)");
  if (spec.max_workers < 1 || spec.max_workers > 256)
    invalid("max_workers must be between 1 and 256, not " + std::to_string(spec.max_workers) + " (files at once; --max-workers)");
}

std::vector<std::string> cli_candidates(DownloadSpec const& spec) {
  if (!spec.cli.empty()) return {spec.cli};
  if (spec.hub == Hub::modelscope) return {"modelscope"};
  return {"hf", "huggingface-cli"};
}

}  // namespace

std::vector<std::pair<std::string, std::string>> download_environment(DownloadSpec const& spec) {
  std::vector<std::pair<std::string, std::string>> env{{"NO_COLOR", "1"}, {"PYTHONUNBUFFERED", "1"}};
  if (spec.hub == Hub::huggingface) {
    env.emplace_back("HF_HUB_DISABLE_UPDATE_CHECK", "1");
    env.emplace_back("HF_HUB_DISABLE_TELEMETRY", "1");
    // huggingface_hub hides its byte bars without a terminal; this is its
    // own switch to show them (they move every 10 MiB).
    env.emplace_back("TQDM_POSITION", "-1");
    if (!spec.endpoint.empty()) env.emplace_back("HF_ENDPOINT", spec.endpoint);
  } else {
    // ModelScope redraws every bar many times a second; once a second is
    // plenty over ssh.
    env.emplace_back("TQDM_MININTERVAL", "1");
    if (!spec.endpoint.empty()) env.emplace_back("MODELSCOPE_ENDPOINT", spec.endpoint);
  }
  return env;
}

std::vector<std::string> download_arguments(DownloadSpec const& spec, std::string_view kind, std::string const& dir) {
  std::vector<std::string> a{"download", spec.model_id, "--local-dir", dir, "--max-workers",
                             std::to_string(spec.max_workers)};
  if (!spec.revision.empty()) a.insert(a.end(), {"--revision", spec.revision});
  // `hf` (typer) takes a pattern per flag; huggingface-cli and modelscope
  // (argparse, nargs) take the patterns after one flag.
  auto patterns = [&](char const* flag, std::vector<std::string> const& globs) {
    if (globs.empty()) return;
    if (kind == "hf") {
      for (auto const& g : globs) a.insert(a.end(), {flag, g});
    } else {
      a.push_back(flag);
      a.insert(a.end(), globs.begin(), globs.end());
    }
  };
  patterns("--include", spec.include);
  patterns("--exclude", spec.exclude);
  return a;
}

std::string download_script(DownloadSpec const& spec, std::string const& dir) {
  auto checked = spec;
  checked.local_dir = dir;
  validate_download(checked);
  auto const token_var = spec.hub == Hub::huggingface ? "HF_TOKEN" : "MODELSCOPE_API_TOKEN";
  std::ostringstream s;
  s << "ck_dir=" << shell::quote(dir) << "\n"
    // The token arrives on standard input: never in an argv or a log.
    << "IFS= read -r ck_token || true\n"
    << "if [ -n \"$ck_token\" ]; then " << token_var << "=$ck_token; export " << token_var << "; fi\n"
    << "unset ck_token\n";
  for (auto const& [k, v] : download_environment(spec)) s << k << "=" << shell::quote(v) << "; export " << k << "\n";
  s << "ck_cli=\n"
    << "for ck_c in";
  for (auto const& c : cli_candidates(spec)) s << " " << shell::quote(c);
  s << "; do\n"
    << "  case \"$ck_c\" in /*) [ -x \"$ck_c\" ] && { ck_cli=$ck_c; break; }; continue;; esac\n"
    << "  if command -v \"$ck_c\" >/dev/null 2>&1; then ck_cli=$(command -v \"$ck_c\"); break; fi\n"
    << "  for ck_d in \"$HOME/.local/bin\" /opt/ck-hubcli/bin /usr/local/bin; do\n"
    << "    if [ -x \"$ck_d/$ck_c\" ]; then ck_cli=$ck_d/$ck_c; break 2; fi\n"
    << "  done\n"
    << "done\n"
    << "if [ -z \"$ck_cli\" ]; then echo '@@ck-nocli' >&2; exit 127; fi\n"
    << "ck_kind=${ck_cli##*/}\n"
    << "echo \"@@ck-cli $ck_kind $ck_cli\"\n"
    << "mkdir -p -- \"$ck_dir\" || exit 73\n"
    // Bytes on disk, once a second: progress whatever the CLI draws.
    << "( while :; do printf '@@ck-bytes %s\\n' \"$(du -sb -- \"$ck_dir\" 2>/dev/null | cut -f1)\"; sleep 1; done ) &\n"
    << "ck_watch=$!\n"
    << "case \"$ck_kind\" in\n";
  for (auto const* kind : {"hf", "huggingface-cli", "modelscope"})
    s << "  " << kind << ") \"$ck_cli\" " << join_quoted(download_arguments(spec, kind, dir)) << "; ck_rc=$?;;\n";
  s << "  *) \"$ck_cli\" " << join_quoted(download_arguments(spec, spec.hub == Hub::modelscope ? "modelscope" : "hf", dir))
    << "; ck_rc=$?;;\n"
    << "esac\n"
    << "kill \"$ck_watch\" 2>/dev/null; wait \"$ck_watch\" 2>/dev/null\n"
    << "printf '@@ck-bytes %s\\n' \"$(du -sb -- \"$ck_dir\" 2>/dev/null | cut -f1)\"\n"
    << "exit $ck_rc\n";
  return s.str();
}

std::string explain_download_failure(DownloadSpec const& spec, std::string_view host, int exit_code,
                                     std::string_view stderr_raw) {
  auto const text = strip_ansi(stderr_raw);
  std::string const who = std::string(host) + ": downloading " + spec.model_id +
                          (spec.revision.empty() ? "" : "@" + spec.revision) + " from " +
                          (spec.endpoint.empty() ? std::string(to_string(spec.hub)) : spec.endpoint) + " failed";
  auto const install = spec.hub == Hub::huggingface ? "pip install -U huggingface_hub" : "pip install -U modelscope";
  if (exit_code == 127 || contains(text, "@@ck-nocli"))
    return who + ": " + (spec.cli.empty() ? std::string(spec.hub == Hub::huggingface ? "neither hf nor huggingface-cli" : "modelscope") + " is installed"
                                          : spec.cli + " is not an executable") +
           " on " + std::string(host) + ". Install it there (`" + install + "`) or give its path (--cli)";
  if (exit_code == 73) return who + ": cannot create " + spec.local_dir + " on " + std::string(host) + " (permissions? a read-only mount?)";
  if (contains(text, "No space left on device"))
    return who + ": the disk under " + spec.local_dir + " on " + std::string(host) +
           " is full. Free space there or download elsewhere (--dir); a 72B bf16 model needs about 145 GB";
  if (contains_any(text, {"Connection refused", "Connection failed", "NewConnectionError", "Name or service not known",
                          "Temporary failure in name resolution", "timed out", "Network is unreachable",
                          "Max retries exceeded", "ConnectionError", "ConnectTimeout"}))
    return who + ": " + std::string(host) + " cannot reach " +
           (spec.endpoint.empty() ? "the hub" : spec.endpoint) +
           ". Check its network or proxy (HTTPS_PROXY), or use a mirror (--endpoint, e.g. https://hf-mirror.com); "
           "the files downloaded so far are kept and the next run resumes";
  if (contains_any(text, {"Revision not found", "RevisionNotFound", "Invalid rev id", "revision not found", "NotExist"}) &&
      !spec.revision.empty())
    return who + ": the hub has no revision '" + spec.revision + "' of " + spec.model_id +
           ". Check the branch, tag or commit on the model's page (the default branch is " +
           (spec.hub == Hub::huggingface ? "main" : "master") + ")";
  if (contains_any(text, {"GatedRepo", "gated", "Access to model", "403"}))
    return who + ": the model is gated or private. Accept its license on the hub page, then pass a token (--token-env VAR)";
  if (contains_any(text, {"not found", "NotFound", "does not exist", "[404]", "401 Client Error"}))
    return who + ": the hub has no model '" + spec.model_id +
           "' (check the spelling and the hub: ModelScope and Hugging Face ids can differ), or it is private (pass a token)";
  // The CLI's own last words.
  std::string last;
  for (auto line : lines_of(text)) {
    auto t = trim(line);
    if (auto cr = t.rfind('\r'); cr != std::string_view::npos) t = trim(t.substr(cr + 1));
    if (!t.empty() && !t.starts_with("Hint:") && !t.starts_with("@@ck")) last = std::string(t);
  }
  return who + " (exit " + std::to_string(exit_code) + ")" + (last.empty() ? "" : ": " + last);
}

nlohmann::json DownloadResult::to_json() const {
  nlohmann::json j{{"host", host},       {"dir", dir},         {"cli", cli},         {"attempts", attempts},
                   {"bytes", bytes},     {"files", files},     {"seconds", seconds}, {"ok", ok()},
                   {"message", message}, {"verify", nullptr}};
  if (verify) j["verify"] = verify->to_json();
  if (error) j["error"] = error.message();
  return j;
}

// ---------------------------------------------------------------------------
// Copy


std::vector<CopyItem> parse_file_listing(std::string_view text) {
  std::vector<CopyItem> out;
  std::size_t line_no = 0;
  for (auto line : lines_of(text)) {
    ++line_no;
    if (line.empty()) continue;
    auto tab = line.find('\t');
    if (tab == std::string_view::npos) malformed("file listing line " + std::to_string(line_no) + " has no size");
    auto size = detail::to_u64(line.substr(0, tab));
    auto path = line.substr(tab + 1);
    if (!size || path.empty()) malformed("file listing line " + std::to_string(line_no) + " is not SIZE<TAB>PATH");
    if (is_hub_bookkeeping(path)) continue;
    out.push_back({std::string(path), *size});
  }
  return out;
}

std::vector<CopyItem> without_excluded(std::vector<CopyItem> files, std::vector<std::string> const& globs) {
  if (globs.empty()) return files;
  auto excluded = [&](std::string const& path) {
    auto slash = path.rfind('/');
    auto name = slash == std::string::npos ? path : path.substr(slash + 1);
    for (auto const& g : globs) {
      if (::fnmatch(g.c_str(), path.c_str(), 0) == 0) return true;
      if (g.find('/') == std::string::npos && ::fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
    }
    return false;
  };
  std::erase_if(files, [&](CopyItem const& f) { return excluded(f.path); });
  return files;
}

std::vector<std::string> extraneous_files(std::vector<CopyItem> const& source, std::vector<CopyItem> const& destination) {
  std::set<std::string_view> keep;
  for (auto const& f : source) keep.insert(f.path);
  std::vector<std::string> out;
  for (auto const& f : destination)
    if (!keep.count(f.path)) out.push_back(f.path);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::vector<CopyItem>> plan_copy_streams(std::vector<CopyItem> files, int streams) {
  if (streams < 1) streams = 1;
  std::stable_sort(files.begin(), files.end(), [](CopyItem const& a, CopyItem const& b) { return a.bytes > b.bytes; });
  auto const n = std::min<std::size_t>(static_cast<std::size_t>(streams), files.size());
  std::vector<std::vector<CopyItem>> out(n);
  std::vector<std::uint64_t> load(n, 0);
  for (auto& f : files) {
    auto k = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[k] += f.bytes;
    out[k].push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> rsync_stream_argv(SyncSpec const& spec) {
  // -a keeps times and modes (so a second sync skips what is there);
  // --partial-dir keeps a cut-off large shard for the next run to finish
  // instead of restarting it, out of sight of readers; --info=progress2
  // reports the stream's bytes as one line redrawn with \r, and name1 the
  // name of each file as its copy begins (for the progress's `file`).
  std::vector<std::string> argv{"rsync", "-a", "--files-from=-", "--from0", "--partial-dir=.rsync-partial",
                                "--info=progress2,stats2,name1", "--no-inc-recursive", "--outbuf=L"};
  if (spec.checksum) argv.push_back("--checksum");
  // Local to local (the NAS is a mounted folder): rsync already sends
  // whole files; say so for rsync builds that guess otherwise.
  argv.push_back("--whole-file");
  argv.push_back(spec.source + "/");
  argv.push_back(spec.destination + "/");
  return argv;
}

nlohmann::json SyncResult::to_json() const {
  nlohmann::json j{{"host", host},       {"source", source},   {"destination", destination},
                   {"files", files},     {"bytes", bytes},     {"files_transferred", files_transferred},
                   {"files_deleted", files_deleted},
                   {"bytes_transferred", bytes_transferred}, {"streams", streams}, {"seconds", seconds}, {"ok", ok()},
                   {"message", message}, {"verify", nullptr}};
  if (verify) j["verify"] = verify->to_json();
  if (error) j["error"] = error.message();
  return j;
}

// ---------------------------------------------------------------------------
// Snapshots of a folder on a host

std::string model_snapshot_script(std::string const& dir) {
  // For each shard: size, then the 8-byte length and the header it
  // announces, base64 (headers are JSON but a damaged file is anything).
  // `od -tu8` reads the length in the host's byte order: safetensors is
  // little-endian, as is every host vLLM runs on.
  std::ostringstream s;
  s << "ck_dir=" << shell::quote(dir) << "\n"
    << "cd -- \"$ck_dir\" 2>/dev/null || { echo '@@ck-nodir'; exit 0; }\n"
    << "ck_cap=" << max_safetensors_header_bytes << "\n"
    << "ck_text() { if [ -f \"$1\" ]; then if [ -r \"$1\" ]; then echo \"@@ck-file $1\"; base64 -w0 < \"$1\"; echo; "
       "else echo \"@@ck-unreadable $1\"; fi; fi; }\n"
    << "ck_text config.json\n"
    << "ck_text model.safetensors.index.json\n"
    << "for ck_f in *.safetensors; do\n"
    // A FIFO would hang `od`; a looping or dangling link is not -e: both
    // named, never opened (an unmatched glob is neither -L nor -e).
    << "  if [ ! -f \"$ck_f\" ]; then { [ -L \"$ck_f\" ] || [ -e \"$ck_f\" ]; } && echo \"@@ck-notfile $ck_f\"; continue; fi\n"
    << "  ck_size=$(stat -L -c %s -- \"$ck_f\" 2>/dev/null) || { echo \"@@ck-unreadable $ck_f\"; continue; }\n"
    << "  ck_n=0\n"
    << "  if [ \"$ck_size\" -ge 8 ]; then ck_n=$(od -An -tu8 -N8 -- \"$ck_f\" 2>/dev/null | tr -d ' ') || ck_n=; fi\n"
    << "  if [ -z \"$ck_n\" ]; then echo \"@@ck-unreadable $ck_f\"; continue; fi\n"
    << "  ck_take=8\n"
    << "  if [ \"$ck_size\" -lt 8 ]; then ck_take=$ck_size;\n"
    << "  elif [ \"$ck_n\" -le \"$ck_cap\" ] && [ \"$ck_n\" -le $((ck_size - 8)) ]; then ck_take=$((8 + ck_n)); fi\n"
    << "  echo \"@@ck-shard $ck_size $ck_f\"\n"
    << "  head -c \"$ck_take\" -- \"$ck_f\" | base64 -w0; echo\n"
    << "done\n"
    << "echo '@@ck-end'\n";
  return s.str();
}

namespace detail {

std::optional<std::string> base64_decode(std::string_view in) {
  static constexpr auto table = [] {
    std::array<signed char, 256> t{};
    t.fill(-1);
    constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    return t;
  }();
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    if (c == '\r' || c == '\n' || c == ' ') continue;
    auto v = table[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace detail

ModelSnapshot parse_model_snapshot(std::string_view output) {
  ModelSnapshot s;
  auto lines = lines_of(output);
  bool ended = false;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto line = lines[i];
    if (line == "@@ck-end") {
      ended = true;
      break;
    }
    if (line == "@@ck-nodir") malformed("the folder does not exist or cannot be entered");
    auto next_payload = [&]() -> std::string {
      if (i + 1 >= lines.size()) malformed("the snapshot ends in the middle of a file");
      auto decoded = detail::base64_decode(lines[++i]);
      if (!decoded) malformed("the snapshot has a line that is not base64");
      return std::move(*decoded);
    };
    if (line.starts_with("@@ck-file ")) {
      auto name = line.substr(10);
      auto text = next_payload();
      if (name == "config.json") s.config_json = std::move(text);
      else if (name == "model.safetensors.index.json") s.index_json = std::move(text);
    } else if (line.starts_with("@@ck-unreadable ")) {
      auto name = std::string(line.substr(16));
      if (name == "config.json") s.config_error = "config.json cannot be read (permissions?)";
      else if (name == "model.safetensors.index.json") s.index_error = "model.safetensors.index.json cannot be read (permissions?)";
      else {
        auto& shard = s.shards.emplace_back();
        shard.name = name;
        shard.exists = true;
        shard.error = "cannot read " + name + " (permissions, or an I/O error on the mount)";
      }
    } else if (line.starts_with("@@ck-notfile ")) {
      auto& shard = s.shards.emplace_back();
      shard.name = std::string(line.substr(13));
      shard.exists = true;
      shard.error = shard.name + " is not a regular file (a FIFO, a folder, or a link that loops or points nowhere); not opened";
    } else if (line.starts_with("@@ck-shard ")) {
      auto rest = line.substr(11);
      auto space = rest.find(' ');
      if (space == std::string_view::npos) malformed("a shard line has no name");
      auto size = detail::to_u64(rest.substr(0, space));
      if (!size) malformed("a shard line has no size");
      auto& shard = s.shards.emplace_back();
      shard.name = std::string(rest.substr(space + 1));
      shard.exists = true;
      shard.size = *size;
      shard.head = next_payload();
    }
  }
  if (!ended) malformed("the snapshot was cut short (no end marker)");
  // The index names the shards to check: those it names but the host lacks
  // stay absent (reported missing); files it does not name are ignored.
  if (s.index_json && s.index_error.empty()) {
    try {
      if (auto named = shards_named_by_index(*s.index_json)) {
        std::vector<ModelSnapshot::Shard> kept;
        for (auto const& n : *named) {
          auto it = std::find_if(s.shards.begin(), s.shards.end(), [&](auto const& x) { return x.name == n; });
          if (it != s.shards.end()) kept.push_back(std::move(*it));
        }
        s.shards = std::move(kept);
      }
    } catch (Error const&) {
      // verify_snapshot reports the broken index.
    }
  }
  std::sort(s.shards.begin(), s.shards.end(), [](auto const& a, auto const& b) { return a.name < b.name; });
  return s;
}

nlohmann::json HostVerify::to_json() const {
  nlohmann::json j{{"host", host}, {"dir", dir}, {"container_path", container_path}, {"ok", ok()}, {"message", message}};
  j["report"] = report.to_json();
  if (error) j["error"] = error.message();
  return j;
}

// ---------------------------------------------------------------------------
// The store

ModelStore::ModelStore(ModelStoreSpec spec) : spec_(std::move(spec)) {
  if (spec_.root.empty() || spec_.root.front() != '/')
    invalid("the model store root '" + spec_.root + "' must be an absolute path (e.g. /mnt)");
  while (spec_.root.size() > 1 && spec_.root.back() == '/') spec_.root.pop_back();
  while (spec_.container_root.size() > 1 && spec_.container_root.back() == '/') spec_.container_root.pop_back();
}

std::string ModelStore::path_for(std::string_view model_id) const {
  auto const name = spec_.layout == ModelLayout::modelscope ? modelscope_folder_name(model_id) : std::string(model_id);
  return (spec_.root == "/" ? "" : spec_.root) + "/" + name;
}

std::string ModelStore::container_path(std::string_view path) const {
  if (spec_.container_root.empty()) return std::string(path);
  std::string_view root = spec_.root;
  if (path == root) return spec_.container_root;
  if (root == "/" || (path.starts_with(root) && path.size() > root.size() && path[root.size()] == '/'))
    return spec_.container_root + std::string(path.substr(root == "/" ? 0 : root.size()));
  return std::string(path);
}

}  // namespace clusterkit
