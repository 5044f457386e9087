// ModelStore, the I/O half: the download, the copy and the check, each a
// coroutine over Host that runs the scripts of model_store.cpp and feeds what
// comes back through its parsers.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>

#include <deque>
#include <set>
#include <future>

#include "clusterkit/model_store.hpp"
#include "clusterkit/shell.hpp"
#include "core/coro.hpp"
#include "remote/run_each.hpp"
#include "core/text.hpp"
#include "core/block_on.hpp"

namespace clusterkit {
namespace detail {
namespace {

using asio::awaitable;
using clusterkit::detail::lines_of;
using clusterkit::detail::trim;
using clusterkit::detail::split_ws;
using clock = std::chrono::steady_clock;
constexpr auto use_awaitable = asio::use_awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

/// The last lines of a stream, for the error message (the captured text
/// keeps the first bytes; a CLI says what went wrong at the end).
class LastLines {
public:
  void add(std::string_view line) {
    if (line.empty()) return;
    lines_.emplace_back(line.substr(0, 2000));
    if (lines_.size() > 60) lines_.pop_front();
  }
  std::string text() const {
    std::string out;
    for (auto const& l : lines_) out += l + "\n";
    return out;
  }

private:
  std::deque<std::string> lines_;
};

/// Bytes per second over the samples of the last few seconds.
class RateMeter {
public:
  double add(std::uint64_t bytes, clock::time_point at) {
    samples_.emplace_back(at, bytes);
    while (samples_.size() > 2 && at - samples_.front().first > std::chrono::seconds(5)) samples_.pop_front();
    auto const& [t0, b0] = samples_.front();
    auto dt = std::chrono::duration<double>(at - t0).count();
    return dt > 0 && bytes >= b0 ? static_cast<double>(bytes - b0) / dt : 0;
  }

private:
  std::deque<std::pair<clock::time_point, std::uint64_t>> samples_;
};

std::string problems_sentence(VerifyReport const& r, std::size_t max = 3) {
  std::string out;
  for (std::size_t i = 0; i < r.problems.size() && i < max; ++i) out += (i ? "; " : "") + r.problems[i].message;
  if (r.problems.size() > max) out += "; and " + std::to_string(r.problems.size() - max) + " more";
  return out;
}

awaitable<std::vector<HostOutcome>> run_each(std::vector<RunEachItem> items) {
  co_return co_await async_run_each(std::move(items), use_awaitable);
}

/// Compares what sha256sum printed on a host with the folder's manifest.
void check_sums(std::string_view text, std::string const& host, std::string const& dir, VerifyReport& report) {
  auto problem = [&](VerifyProblemKind kind, std::string file, std::string message) {
    report.problems.push_back({kind, std::move(file), std::move(message)});
  };
  if (text.find("@@ck-nosums") != std::string_view::npos) {
    problem(VerifyProblemKind::manifest_missing, "sha256sums",
            dir + " has no sha256sums to check against (`clusterkit model verify --write-manifest` writes one)");
    return;
  }
  auto m = text.find("@@ck-manifest\n"), b = text.find("@@ck-sums\n"), e = text.find("@@ck-sums-end");
  if (m == std::string_view::npos || b == std::string_view::npos || e == std::string_view::npos || !(m < b && b < e)) {
    problem(VerifyProblemKind::file_unreadable, "sha256sums", host + ": the checksum run was cut short");
    return;
  }
  report.manifest = dir + "/sha256sums";
  std::vector<ManifestEntry> expected;
  try {
    auto manifest_b64 = trim(text.substr(m + 14, b - m - 14));
    auto manifest = detail::base64_decode(manifest_b64);
    if (!manifest) throw Error(make_error_code(errc::parse_error), "sha256sums arrived garbled");
    expected = parse_sha256_manifest(*manifest, dir + "/sha256sums");
  } catch (Error const& err) {
    problem(VerifyProblemKind::manifest_invalid, "sha256sums", err.what());
    return;
  }
  std::map<std::string, std::string, std::less<>> got;
  std::set<std::string, std::less<>> outside;
  for (auto line : lines_of(text.substr(b + 10, e - b - 10))) {
    if (line.size() > 66 && line[64] == ' ' && (line[65] == ' ' || line[65] == '*')) {
      got[std::string(line.substr(66))] = std::string(line.substr(0, 64));
    } else if (line.starts_with("@@ck-outside ")) {
      auto f = std::string(line.substr(13));
      problem(VerifyProblemKind::file_unreadable, f, f + " on " + host + " leads outside " + dir + " (a symlink); not read");
      outside.insert(f);
    } else if (!line.empty()) {
      problem(VerifyProblemKind::file_unreadable, "", host + ": " + std::string(line));
    }
  }
  for (auto const& want : expected) {
    if (outside.count(want.file)) continue;
    auto it = got.find(want.file);
    if (it == got.end()) {
      problem(VerifyProblemKind::file_unreadable, want.file, want.file + " could not be hashed on " + host);
      continue;
    }
    ++report.files_hashed;
    if (it->second != want.sha256)
      problem(VerifyProblemKind::checksum_mismatch, want.file,
              want.file + " has SHA-256 " + it->second + " on " + host + " but sha256sums expects " + want.sha256);
  }
}

/// Runs the snapshot script on each host and checks what it reports.
/// A host's verify, as progress: totals and each file done, from the marker
/// lines of the script (and sha256sum's own lines).
struct VerifyWatch {
  TransferProgress p;
  clock::time_point started = clock::now();
  bool in_sums = false;
  ProgressCallback progress;

  void on_line(OutputLine const& line) {
    if (line.stream != Stream::out) return;
    std::string_view t = line.text;
    if (t.starts_with("@@ck-progress-total ")) {
      auto w = split_ws(t.substr(20));
      if (w.size() == 2) {
        p.files_total += detail::to_u64(w[0]).value_or(0);
        p.bytes_total += detail::to_u64(w[1]).value_or(0);
      }
      return;
    }
    if (t == "@@ck-sums") in_sums = true;
    if (t == "@@ck-sums-end") in_sums = false;
    if (t.starts_with("@@ck-progress-file ")) {
      auto rest = t.substr(19);
      auto space = rest.find(' ');
      if (space == std::string_view::npos) return;
      p.bytes_done += detail::to_u64(rest.substr(0, space)).value_or(0);
      p.file = std::string(rest.substr(space + 1));
    } else if (in_sums && t.size() > 66 && t[64] == ' ') {
      p.file = std::string(t.substr(66));
    } else {
      return;
    }
    ++p.files_done;
    p.elapsed = clock::now() - started;
    progress(p);
  }
};

awaitable<std::vector<HostVerify>> verify_on(std::vector<Host> hosts, std::string dir, RemoteVerifyOptions options) {
  std::vector<RunEachItem> items;
  std::vector<std::shared_ptr<VerifyWatch>> watches;
  for (auto const& h : hosts) {
    RunOptions ro;
    ro.timeout = options.timeout;
    ro.max_captured_bytes = 512u << 20;
    if (options.on_progress) {
      auto w = std::make_shared<VerifyWatch>();
      w->p.host = h.name();
      w->p.phase = "verify";
      w->progress = options.on_progress;
      ro.on_line = [w](OutputLine const& line) { w->on_line(line); };
      watches.push_back(std::move(w));
    }
    std::string script = model_snapshot_script(dir);
    if (options.read_all)
      script = "cd -- " + shell::quote(dir) +
               // The total counts what is read: regular files (and links
               // to them), never a FIFO or a looping link of that name.
               " 2>/dev/null && { n=0; s=0; for f in *.safetensors; do [ -f \"$f\" ] || continue; n=$((n + 1)); "
               "s=$((s + $(stat -L -c %s -- \"$f\"))); done; [ \"$n\" -gt 0 ] && echo \"@@ck-progress-total $n $s\"; "
               "for f in *.safetensors; do [ -f \"$f\" ] || continue; cat -- \"$f\" >/dev/null || "
               "echo \"@@ck-readfail $f\"; echo \"@@ck-progress-file $(stat -c %s -- \"$f\") $f\"; done; }\n" + script;
    if (options.checksums)
      script += "cd -- " + shell::quote(dir) +
                " 2>/dev/null && if [ -f sha256sums ]; then echo \"@@ck-progress-total $(grep -c . sha256sums) 0\"; "
                "echo @@ck-manifest; base64 -w0 sha256sums; echo; "
                "echo @@ck-sums; sed -n 's/^[0-9a-fA-F]\\{64\\} [ *]\\(.*\\)$/\\1/p' sha256sums | "
                // Only files of the folder, only regular ones: no absolute
                // path, no .., no device (the manifest's parser refuses the
                // names; here they are never read).
                "grep -v -e '^/' -e '^\\.\\./' -e '/\\.\\./' -e '/\\.\\.$' -e '^\\.\\.$' | tr '\\n' '\\0' | "
                // ... and nothing a symlink leads to outside the folder
                // (an HF cache snapshot's links into its ../../blobs are
                // the one exception: that is its layout).
                "{ CK_BASE=$(pwd -P); CK_BLOBS=$CK_BASE; "
                "if [ \"$(basename \"$(dirname \"$CK_BASE\")\")\" = snapshots ] && [ -d ../../blobs ]; then CK_BLOBS=$(cd ../../blobs && pwd -P); fi; "
                "export CK_BASE CK_BLOBS; "
                "xargs -0 -r -P 4 -n 1 sh -c 'for f; do [ -f \"$f\" ] || continue; r=$(realpath -e -- \"$f\") || continue; "
                "case \"$r\" in \"$CK_BASE\"/*|\"$CK_BLOBS\"/*) sha256sum -- \"$f\";; *) echo \"@@ck-outside $f\";; esac; done; true' sh 2>&1; }; "
                "echo @@ck-sums-end; else echo @@ck-nosums; fi\n";
    items.push_back({h, Command::shell(std::move(script)), std::move(ro)});
  }
  auto outcomes = co_await run_each(std::move(items));
  std::vector<HostVerify> out;
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    auto const& o = outcomes[i];
    HostVerify v;
    v.host = o.host;
    v.dir = dir;
    v.container_path = options.container_path.empty() ? dir : options.container_path;
    v.report.dir = dir;
    if (!o.ok()) {
      v.error = o.error ? o.error : make_error_code(errc::model_incomplete);
      v.message = o.result.message.empty()
                      ? o.host + ": the check of " + dir + " failed (exit " + std::to_string(o.result.exit_code) + ")" +
                            (o.result.stderr_text.empty() ? "" : ": " + detail::last_line(o.result.stderr_text))
                      : o.result.message;
      out.push_back(std::move(v));
      continue;
    }
    auto const& text = o.result.stdout_text;
    try {
      auto snap_begin = text.find("@@ck-");
      auto snapshot = parse_model_snapshot(snap_begin == std::string::npos ? text : text.substr(snap_begin));
      snapshot.dir = dir;
      v.report = verify_snapshot(snapshot);
      v.report.dir = dir;
    } catch (Error const& e) {
      v.error = make_error_code(errc::model_incomplete);
      v.message = o.host + ": " + dir + ": " + e.what();
      out.push_back(std::move(v));
      continue;
    }
    for (auto line : lines_of(text))
      if (line.starts_with("@@ck-readfail "))
        v.report.problems.push_back({VerifyProblemKind::file_unreadable, std::string(line.substr(14)),
                                     std::string(line.substr(14)) + " could not be read to its end on " + o.host});
    if (options.checksums) check_sums(text, o.host, dir, v.report);
    if (!v.report.ok()) {
      v.error = make_error_code(errc::model_incomplete);
      v.message = o.host + " sees " + dir + " incomplete: " + problems_sentence(v.report);
    } else {
      v.message = o.host + " sees " + dir + " complete: " + std::to_string(v.report.shards_checked) + " shard(s), " +
                  std::to_string(v.report.tensors_checked) + " tensors, " + std::to_string(v.report.bytes_expected) +
                  " bytes";
    }
    out.push_back(std::move(v));
  }
  // Once per host, at its end: done, whatever was counted on the way.
  for (std::size_t i = 0; i < watches.size() && i < out.size(); ++i) {
    auto& p = watches[i]->p;
    auto const& r = out[i].report;
    p.file.clear();
    p.files_total = std::max<std::size_t>(p.files_total, r.shards_checked);
    p.files_done = p.files_total;
    p.bytes_total = std::max<std::uint64_t>(p.bytes_total, r.bytes_expected);
    p.bytes_done = p.bytes_total;
    p.elapsed = clock::now() - watches[i]->started;
    watches[i]->progress(p);
  }
  co_return out;
}

awaitable<std::pair<std::error_code, std::vector<CopyItem>>> list_files(Host host, std::string dir, std::string& message) {
  RunOptions ro;
  ro.timeout = std::chrono::seconds(120);
  ro.max_captured_bytes = 256u << 20;
  auto ran = co_await host.async_run(
      Command::shell("cd -- " + shell::quote(dir) + " || exit 66\nfind . -type f -printf '%s\\t%P\\n'\n"), ro,
      as_tuple_awaitable);
  auto ec = std::get<0>(ran);
  auto const& r = std::get<1>(ran);
  if (ec) {
    message = r.message.empty() ? host.name() + ": listing " + dir + ": " + ec.message() : r.message;
    co_return std::pair{std::error_code(ec), std::vector<CopyItem>{}};
  }
  if (r.exit_code == 66) {
    message = host.name() + ": " + dir + " does not exist or cannot be entered";
    co_return std::pair{make_error_code(errc::copy_failed), std::vector<CopyItem>{}};
  }
  if (r.exit_code != 0) {
    message = host.name() + ": listing " + dir + " failed: " + detail::last_line(r.stderr_text);
    co_return std::pair{make_error_code(errc::copy_failed), std::vector<CopyItem>{}};
  }
  try {
    co_return std::pair{std::error_code{}, parse_file_listing(r.stdout_text)};
  } catch (Error const& e) {
    message = host.name() + ": " + e.what();
    co_return std::pair{e.code(), std::vector<CopyItem>{}};
  }
}

/// One run of a hub CLI: what it reports, turned into progress.
struct DownloadWatch {
  std::string host;
  clock::time_point started;
  ProgressCallback progress;
  DownloadProgressParser parser;
  RateMeter rate;
  LastLines err_tail;
  std::uint64_t on_disk = 0;
  std::string cli;

  DownloadWatch(std::string h, clock::time_point s, ProgressCallback p)
      : host(std::move(h)), started(s), progress(std::move(p)) {}

  void on_line(OutputLine const& line) {
    if (line.stream == Stream::err) {
      err_tail.add(line.text);
      parser.feed(line.text);
      return;
    }
    if (line.text.starts_with("@@ck-bytes ")) {
      if (auto v = detail::to_u64(line.text.substr(11))) {
        on_disk = *v;
        report();
      }
    } else if (line.text.starts_with("@@ck-cli ")) {
      auto rest = line.text.substr(9);
      cli = std::string(rest.substr(0, rest.find(' ')));
    }
  }

  // Once a second (each du sample): bytes on disk, or what the CLI's bars
  // say when they are ahead; totals and file counts from the bars.
  void report() {
    if (!progress) return;
    TransferProgress p;
    p.host = host;
    p.phase = "download";
    p.file = parser.current_file();
    p.bytes_done = std::max(on_disk, parser.bytes_done());
    p.bytes_total = parser.bytes_total();
    if (p.bytes_total && p.bytes_done > p.bytes_total) p.bytes_total = p.bytes_done;
    p.files_done = parser.files_done();
    p.files_total = parser.files_total();
    auto now = clock::now();
    p.elapsed = now - started;
    p.bytes_per_second = rate.add(p.bytes_done, now);
    progress(p);
  }
};

/// Ends a download or copy with an error: the result says what and when.
template <class Result>
std::pair<std::error_code, Result> failed(Result& result, clock::time_point started, std::error_code ec, std::string message) {
  result.error = ec;
  result.message = std::move(message);
  result.seconds = std::chrono::duration<double>(clock::now() - started).count();
  return {ec, result};
}

/// A download is not worth repeating when the hub said no.
bool permanent_failure(int exit_code, std::string_view message) {
  return exit_code == 127 || exit_code == 73 || message.find("has no model") != std::string_view::npos ||
         message.find("has no revision") != std::string_view::npos ||
         message.find("gated or private") != std::string_view::npos || message.find("is full") != std::string_view::npos;
}

awaitable<std::pair<std::error_code, DownloadResult>> download(Host host, DownloadSpec spec, ProgressCallback progress) {
  co_await accept_every_cancellation();
  DownloadResult result;
  result.host = host.name();
  result.dir = spec.local_dir;
  auto const started = clock::now();
  auto fail = [&](std::error_code ec, std::string message) { return failed(result, started, ec, std::move(message)); };
  std::string script, invalid_spec;
  std::error_code invalid_code;
  try {
    script = download_script(spec, spec.local_dir);
  } catch (Error const& e) {
    invalid_code = e.code();
    invalid_spec = e.what();
  }
  if (invalid_code) co_return fail(invalid_code, invalid_spec);

  auto delay = spec.retry_delay;
  for (int attempt = 1; attempt <= spec.attempts; ++attempt) {
    result.attempts = attempt;
    auto watch = std::make_shared<DownloadWatch>(host.name(), started, progress);
    RunOptions ro;
    ro.stdin_data = spec.token + "\n";
    ro.split_on_carriage_return = true;
    ro.max_captured_bytes = 1u << 20;
    if (spec.timeout.count() > 0) {
      auto left = spec.timeout - std::chrono::duration_cast<std::chrono::seconds>(clock::now() - started);
      if (left.count() <= 0)
        co_return fail(make_error_code(errc::timed_out), host.name() + ": the download of " + spec.model_id +
                                                             " did not finish within " + std::to_string(spec.timeout.count()) + " s");
      ro.timeout = left;
    }
    ro.on_line = [watch](OutputLine const& line) { watch->on_line(line); };
    auto ran = co_await host.async_run(Command::shell(script), std::move(ro), as_tuple_awaitable);
    auto ec = std::get<0>(ran);
    auto const& r = std::get<1>(ran);
    if (ec == errc::timed_out)
      co_return fail(ec, host.name() + ": the download of " + spec.model_id + " did not finish within " +
                             std::to_string(spec.timeout.count()) + " s and was stopped; what arrived is kept and the next run resumes");
    if (ec) co_return fail(ec, r.message.empty() ? host.name() + ": " + ec.message() : r.message);
    if (!watch->cli.empty()) result.cli = watch->cli;
    if (r.exit_code == 0) break;
    auto why = explain_download_failure(spec, host.name(), r.exit_code, watch->err_tail.text());
    if (!watch->cli.empty()) result.cli = watch->cli;
    if (attempt == spec.attempts || permanent_failure(r.exit_code, why))
      co_return fail(make_error_code(errc::download_failed),
                     why + (attempt > 1 ? " (after " + std::to_string(attempt) + " attempts)" : std::string()));
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor, delay);
    auto waited = co_await timer.async_wait(as_tuple_awaitable);
    bool const cancelled = co_await was_cancelled();
    if (std::get<0>(waited) || cancelled) co_return fail(make_error_code(errc::cancelled), host.name() + ": the download was cancelled between attempts");
    delay *= 2;
  }

  std::string message;
  auto listed = co_await list_files(host, spec.local_dir, message);
  auto lec = listed.first;
  auto const& files = listed.second;
  if (lec) co_return fail(lec, message);
  for (auto const& f : files) result.bytes += f.bytes;
  result.files = files.size();
  if (progress) {
    TransferProgress p;
    p.host = host.name();
    p.phase = "download";
    p.bytes_done = p.bytes_total = result.bytes;
    p.files_done = p.files_total = result.files;
    p.elapsed = clock::now() - started;
    progress(p);
  }
  if (spec.verify) {
    // Named, not `{host}` / `{}` in the co_await expression: GCC 12 cannot
    // put an initializer_list's array in a coroutine frame, and destroys a
    // brace-initialised temporary argument twice.
    std::vector<Host> on(1, host);
    RemoteVerifyOptions options;
    auto seen = co_await verify_on(std::move(on), spec.local_dir, std::move(options));
    result.verify = seen.front().report;
    if (!seen.front().ok()) {
      auto why = seen.front().message;
      if (spec.hub == Hub::modelscope && !spec.revision.empty() && result.files == 0)
        why += ". ModelScope answers a revision it does not have with an empty file list: check that '" +
               spec.revision + "' exists";
      co_return fail(make_error_code(errc::model_incomplete), why);
    }
  }
  result.seconds = std::chrono::duration<double>(clock::now() - started).count();
  // (std::string() in the conditional: GCC 12 miscompiles a bare "" there in a coroutine.)
  result.message = "downloaded " + spec.model_id + (spec.revision.empty() ? std::string() : "@" + spec.revision) + " to " +
                   spec.local_dir + " on " + host.name() + ": " + std::to_string(result.files) + " files, " +
                   std::to_string(result.bytes) + " bytes";
  co_return std::pair{std::error_code{}, result};
}

std::string explain_rsync_failure(SyncSpec const& spec, std::string const& host, int exit_code, std::string const& tail) {
  auto what = host + ": copying " + spec.source + " to " + spec.destination + " failed";
  if (exit_code == 127 || tail.find("@@ck-norsync") != std::string::npos)
    return what + ": rsync is not installed on " + host + " (`apt-get install -y rsync` / `dnf install -y rsync`)";
  if (tail.find("No space left on device") != std::string::npos)
    return what + ": the destination is full. Free space on the NAS or copy fewer files";
  if (tail.find("Permission denied") != std::string::npos || tail.find("Read-only file system") != std::string::npos)
    return what + ": " + host + " may not write under " + spec.destination + " (" + detail::last_line(tail) +
           "). Mount the NAS read-write, or fix its permissions";
  return what + " (rsync exit " + std::to_string(exit_code) + ")" + (tail.empty() ? "" : ": " + detail::last_line(tail)) +
         ". Run the same sync again: it resumes where it stopped";
}

awaitable<std::pair<std::error_code, SyncResult>> sync(Host host, SyncSpec spec, ProgressCallback progress) {
  co_await accept_every_cancellation();
  SyncResult result;
  result.host = host.name();
  result.source = spec.source;
  result.destination = spec.destination;
  auto const started = clock::now();
  auto fail = [&](std::error_code ec, std::string message) { return failed(result, started, ec, std::move(message)); };
  auto strip = [](std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
  };
  spec.source = strip(spec.source);
  spec.destination = strip(spec.destination);
  if (spec.source.empty() || spec.source.front() != '/' || spec.destination.empty() || spec.destination.front() != '/')
    co_return fail(make_error_code(errc::invalid_argument), "the source and destination of a copy must be absolute paths on " + host.name());
  if (spec.source == spec.destination || spec.destination.starts_with(spec.source + "/") || spec.source.starts_with(spec.destination + "/"))
    co_return fail(make_error_code(errc::invalid_argument), "the copy's source " + spec.source + " and destination " +
                                                                spec.destination + " overlap; pick a destination outside the source");
  if (spec.streams < 1 || spec.streams > 256)
    co_return fail(make_error_code(errc::invalid_argument),
                   "streams must be between 1 and 256, not " + std::to_string(spec.streams) + " (rsync processes at once; --streams)");

  std::string message;
  auto listed = co_await list_files(host, spec.source, message);
  auto lec = listed.first;
  auto files = without_excluded(listed.second, spec.exclude);
  if (lec) co_return fail(lec, message);
  if (files.empty()) co_return fail(make_error_code(errc::copy_failed), host.name() + ": " + spec.source + " has no files to copy");
  std::uint64_t total = 0;
  for (auto const& f : files) total += f.bytes;
  auto plan = plan_copy_streams(files, spec.streams);
  result.streams = static_cast<int>(plan.size());
  result.files = files.size();

  auto stream_bytes = std::make_shared<std::vector<std::uint64_t>>(plan.size(), 0);
  auto stream_files = std::make_shared<std::vector<std::size_t>>(plan.size(), 0);
  auto moved = std::make_shared<std::pair<std::size_t, std::uint64_t>>(0, 0);
  auto tails = std::make_shared<std::vector<LastLines>>(plan.size());
  auto meter = std::make_shared<RateMeter>();
  auto last_report = std::make_shared<clock::time_point>();
  // rsync's name1 lines: a line that is one of the files to copy names the
  // file whose copy begins (rsync also names folders; those are not files).
  auto names = std::make_shared<std::set<std::string, std::less<>>>();
  for (auto const& f : files) names->insert(f.path);
  auto current = std::make_shared<std::string>();
  auto emit = [=, name = host.name()](bool force) {
    if (!progress) return;
    auto now = clock::now();
    if (!force && now - *last_report < std::chrono::milliseconds(200)) return;
    *last_report = now;
    TransferProgress p;
    p.host = name;
    p.phase = "copy";
    p.file = *current;
    for (auto b : *stream_bytes) p.bytes_done += b;
    p.bytes_total = total;
    p.bytes_done = std::min(p.bytes_done, total);
    p.files_total = files.size();
    for (auto f : *stream_files) p.files_done += f;
    p.elapsed = now - started;
    p.bytes_per_second = meter->add(p.bytes_done, now);
    progress(p);
  };

  auto const argv = rsync_stream_argv(spec);
  std::vector<RunEachItem> items;
  for (std::size_t k = 0; k < plan.size(); ++k) {
    RunOptions ro;
    ro.timeout = spec.timeout;
    ro.split_on_carriage_return = true;
    ro.max_captured_bytes = 1u << 20;
    for (auto const& f : plan[k]) ro.stdin_data += f.path + '\0';
    ro.on_line = [=](OutputLine const& line) {
      if (line.stream == Stream::err) {
        (*tails)[k].add(line.text);
        return;
      }
      if (auto p = parse_rsync_progress(line.text)) {
        (*stream_bytes)[k] = p->bytes;
        if (p->to_check && p->total_files) (*stream_files)[k] = *p->total_files - std::min(*p->total_files, *p->to_check);
        emit(false);
      } else if (auto n = parse_rsync_stat(line.text, "Number of regular files transferred")) {
        moved->first += *n;
      } else if (auto b = parse_rsync_stat(line.text, "Total transferred file size")) {
        moved->second += *b;
      } else if (names->contains(line.text)) {
        *current = line.text;
        emit(false);
      }
    };
    auto script = "command -v rsync >/dev/null 2>&1 || { echo @@ck-norsync >&2; exit 127; }\n"
                  "mkdir -p -- " + shell::quote(spec.destination) + " || exit 73\n"
                  "exec " + shell::join(argv) + "\n";
    items.push_back({host, Command::shell(std::move(script)), std::move(ro)});
  }
  auto outcomes = co_await run_each(std::move(items));
  for (std::size_t k = 0; k < outcomes.size(); ++k) {
    auto const& o = outcomes[k];
    if (o.error == errc::timed_out)
      co_return fail(o.error, host.name() + ": the copy into " + spec.destination + " did not finish within " +
                                  std::to_string(spec.timeout.count()) + " s; run it again to resume");
    if (o.error) co_return fail(o.error, o.result.message.empty() ? host.name() + ": " + o.error.message() : o.result.message);
    if (o.result.exit_code == 73)
      co_return fail(make_error_code(errc::copy_failed), host.name() + ": cannot create " + spec.destination + " (is the NAS mounted read-write?)");
    if (o.result.exit_code != 0)
      co_return fail(make_error_code(errc::copy_failed), explain_rsync_failure(spec, host.name(), o.result.exit_code, (*tails)[k].text()));
  }
  result.bytes = total;
  result.files_transferred = moved->first;
  result.bytes_transferred = moved->second;
  for (std::size_t k = 0; k < plan.size(); ++k) (*stream_files)[k] = plan[k].size();
  for (auto& b : *stream_bytes) b = total / plan.size();
  (*stream_bytes)[0] += total % plan.size();
  emit(true);
  if (spec.delete_extraneous) {
    auto there = co_await list_files(host, spec.destination, message);
    if (there.first) co_return fail(there.first, message);
    auto extra = extraneous_files(files, there.second);
    if (!extra.empty()) {
      RunOptions ro;
      ro.timeout = std::chrono::seconds(300);
      for (auto const& f : extra) ro.stdin_data += f + '\0';
      auto removed = co_await host.async_run(
          Command::shell("cd -- " + shell::quote(spec.destination) + " && xargs -0 rm -f --"), std::move(ro), as_tuple_awaitable);
      if (std::get<0>(removed) || std::get<1>(removed).exit_code != 0)
        co_return fail(make_error_code(errc::copy_failed),
                       host.name() + ": the copy is complete but removing " + std::to_string(extra.size()) +
                           " extra file(s) from " + spec.destination + " failed: " +
                           detail::last_line(std::get<1>(removed).stderr_text + std::get<1>(removed).message));
    }
    result.files_deleted = extra.size();
  }
  if (spec.verify) {
    std::vector<Host> on(1, host);
    RemoteVerifyOptions options;
    auto seen = co_await verify_on(std::move(on), spec.destination, std::move(options));
    result.verify = seen.front().report;
    if (!seen.front().ok()) co_return fail(make_error_code(errc::model_incomplete), seen.front().message);
  }
  result.seconds = std::chrono::duration<double>(clock::now() - started).count();
  result.message = "copied " + std::to_string(result.files_transferred) + " of " + std::to_string(result.files) +
                   " files (" + std::to_string(result.bytes_transferred) + " of " + std::to_string(result.bytes) +
                   " bytes; the rest was already there) from " + spec.source + " to " + spec.destination + " on " +
                   host.name() + " with " + std::to_string(result.streams) + " stream(s)" +
                   (result.files_deleted ? "; removed " + std::to_string(result.files_deleted) + " file(s) the source lacks"
                                         : std::string());
  co_return std::pair{std::error_code{}, result};
}

}  // namespace

void start_model_download(Host host, DownloadSpec spec, ProgressCallback progress,
                          asio::any_completion_handler<DownloadSignature> handler) {
  auto name = host.name();
  auto dir = spec.local_dir;
  auto ex = host.get_executor();
  launch_ec<DownloadResult>(
      ex, std::move(handler),
      [host = std::move(host), spec = std::move(spec), progress = std::move(progress)]() mutable {
        return download(std::move(host), std::move(spec), std::move(progress));
      },
      [name, dir](std::exception_ptr ep) {
        DownloadResult r;
        r.host = name;
        r.dir = dir;
        r.error = make_error_code(errc::download_failed);
        r.message = name + ": " + exception_text(ep);
        return std::pair{r.error, r};
      });
}

void start_model_sync(Host host, SyncSpec spec, ProgressCallback progress, asio::any_completion_handler<SyncSignature> handler) {
  auto name = host.name();
  auto ex = host.get_executor();
  launch_ec<SyncResult>(
      ex, std::move(handler),
      [host = std::move(host), spec = std::move(spec), progress = std::move(progress)]() mutable {
        return sync(std::move(host), std::move(spec), std::move(progress));
      },
      [name](std::exception_ptr ep) {
        SyncResult r;
        r.host = name;
        r.error = make_error_code(errc::copy_failed);
        r.message = name + ": " + exception_text(ep);
        return std::pair{r.error, r};
      });
}

void start_model_verify(std::vector<Host> hosts, std::string dir, RemoteVerifyOptions options,
                        asio::any_completion_handler<VerifySignature> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<HostVerify>{});
    return;
  }
  auto names = std::make_shared<std::vector<std::string>>();
  for (auto const& h : hosts) names->push_back(h.name());
  auto ex = hosts.front().get_executor();
  launch<std::vector<HostVerify>>(
      ex, std::move(handler),
      [hosts = std::move(hosts), dir, options = std::move(options)]() mutable {
        return [](std::vector<Host> h, std::string d, RemoteVerifyOptions o) -> awaitable<std::vector<HostVerify>> {
          co_await accept_every_cancellation();
          co_return co_await verify_on(std::move(h), std::move(d), std::move(o));
        }(std::move(hosts), std::move(dir), std::move(options));
      },
      [names, dir](std::exception_ptr ep) {
        std::vector<HostVerify> out;
        for (auto const& n : *names) {
          HostVerify v;
          v.host = n;
          v.dir = dir;
          v.error = make_error_code(errc::model_incomplete);
          v.message = n + ": " + exception_text(ep);
          out.push_back(std::move(v));
        }
        return out;
      });
}

}  // namespace detail

DownloadResult download_model(ModelStore const& store, Host host, DownloadSpec spec, ProgressCallback progress,
                              std::error_code& ec) {
  auto ex = host.get_executor();
  auto [e, result] = detail::block_on<std::error_code, DownloadResult>(ex, "clusterkit::download_model", [&](auto h) {
    store.async_download(std::move(host), std::move(spec), std::move(progress), std::move(h));
  });
  ec = e;
  return std::move(result);
}

DownloadResult download_model(ModelStore const& store, Host host, DownloadSpec spec, ProgressCallback progress) {
  std::error_code ec;
  auto result = download_model(store, std::move(host), std::move(spec), std::move(progress), ec);
  detail::throw_if_failed(ec, result.message);
  return result;
}

SyncResult sync_model(ModelStore const& store, Host host, SyncSpec spec, ProgressCallback progress, std::error_code& ec) {
  auto ex = host.get_executor();
  auto [e, result] = detail::block_on<std::error_code, SyncResult>(ex, "clusterkit::sync_model", [&](auto h) {
    store.async_sync(std::move(host), std::move(spec), std::move(progress), std::move(h));
  });
  ec = e;
  return std::move(result);
}

SyncResult sync_model(ModelStore const& store, Host host, SyncSpec spec, ProgressCallback progress) {
  std::error_code ec;
  auto result = sync_model(store, std::move(host), std::move(spec), std::move(progress), ec);
  detail::throw_if_failed(ec, result.message);
  return result;
}

std::vector<HostVerify> verify_model_on_hosts(ModelStore const& store, std::vector<Host> hosts, std::string dir,
                                              RemoteVerifyOptions options) {
  asio::any_io_executor ex = hosts.empty() ? asio::any_io_executor() : hosts.front().get_executor();
  return detail::block_on_value<std::vector<HostVerify>>(ex, "clusterkit::verify_model_on_hosts", [&](auto h) {
    store.async_verify(std::move(hosts), std::move(dir), std::move(options), std::move(h));
  });
}

}  // namespace clusterkit
