// ModelStore: models on shared storage, and the three jobs that put them
// there: download on a chosen host (through the hub's own CLI, which knows
// the hub's protocol, mirrors and resume), copy into the NAS (rsync, several
// streams at once for the large shards), and verify from every GPU host
// through the path the serving container will see.
//
// The seed's procedure, step 1, becomes:
//
//   clusterkit::ModelStore store({.root = "/mnt"});
//   auto got = co_await store.async_download(cpu, {.model_id = "Qwen/Qwen2.5-72B-Instruct",
//                                                  .local_dir = "/data/models/Qwen2___5-72B-Instruct"}, on_progress, use_awaitable);
//   auto copied = co_await store.async_sync(cpu, {.source = got.dir, .destination = store.path_for(id)}, on_progress, use_awaitable);
//   auto seen = co_await store.async_verify(gpu_hosts, store.path_for(id), {}, use_awaitable);
//
// Like NasMount, each operation is a pure part (the scripts a host runs, the
// parsers of what the CLIs and rsync print, the plan of copy streams; all
// tested without hosts) wrapped by a coroutine that runs them over Host.
// Nothing here needs clusterkit installed on the hosts: only sh, coreutils,
// rsync for copies, and the hub CLI for downloads.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/host.hpp"
#include "clusterkit/model.hpp"

namespace clusterkit {

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

/// Where a download or copy stands. Byte totals are 0 while unknown.
struct TransferProgress {
  std::string host;
  /// "download", "copy" or "verify".
  std::string phase;
  /// The file being worked on, when the tool says.
  std::string file;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::size_t files_done = 0;
  std::size_t files_total = 0;
  /// Bytes per second over the last few seconds (0 while unknown).
  double bytes_per_second = 0;
  std::chrono::steady_clock::duration elapsed{};

  nlohmann::json to_json() const;
};
using ProgressCallback = std::function<void(TransferProgress const&)>;

/// One progress bar as tqdm drew it (what both hub CLIs print).
struct TqdmBar {
  /// The text before the colon: a file name, "Fetching 5 files",
  /// "Downloading", "Reconstructing (incomplete total...)".
  std::string label;
  /// Position and total in the bar's unit; total 0 when the bar has none.
  double n = 0;
  double total = 0;
  /// "B" for byte bars (n and total are then bytes, with k/M/G expanded);
  /// "it" / "file" for counting bars.
  std::string unit;
};

/// Parse one refresh of a tqdm bar ("model.safetensors:  12%|█▏ | 250k/2.07M
/// [00:00<00:00, 1.84MB/s]", "Fetching 5 files: 80%|...| 4/5 [...]",
/// "Download complete: |...| 25.1MB"). Escape sequences and carriage
/// returns must already be gone. nullopt for anything else.
std::optional<TqdmBar> parse_tqdm_bar(std::string_view segment);

/// Turns what a hub CLI writes to stderr (bars redrawn with \r, moved with
/// ESC[A, log lines, banners) into progress. Feed it segments as they come
/// (a line split at \r and \n); it keeps, per bar label, the last state.
class DownloadProgressParser {
public:
  /// True when the segment changed the progress.
  bool feed(std::string_view segment);
  /// Files done / total (the CLI's counting bar) and bytes of the byte bars
  /// (per-file bars summed; an aggregate bar when the CLI draws one).
  std::size_t files_done() const { return files_done_; }
  std::size_t files_total() const { return files_total_; }
  std::uint64_t bytes_done() const;
  std::uint64_t bytes_total() const;
  /// The last file a per-file bar named.
  std::string const& current_file() const { return current_file_; }

private:
  struct FileBar {
    std::string name;
    std::uint64_t done = 0, total = 0;
  };
  std::vector<FileBar> files_;
  std::uint64_t aggregate_done_ = 0, aggregate_total_ = 0;
  std::size_t files_done_ = 0, files_total_ = 0;
  std::string current_file_;
};

/// Remove ANSI escape sequences (colours, cursor moves) from CLI output.
std::string strip_ansi(std::string_view text);

/// rsync's --info=progress2 line ("  1,234,567  45%  12.34MB/s  0:00:03
/// (xfr#2, to-chk=3/5)"): bytes so far for the whole run, and the files
/// transferred and left when rsync says. nullopt for other lines.
struct RsyncProgress {
  std::uint64_t bytes = 0;
  int percent = 0;
  std::size_t transferred = 0;
  std::optional<std::size_t> to_check;
  std::optional<std::size_t> total_files;
};
std::optional<RsyncProgress> parse_rsync_progress(std::string_view segment);
/// A number from rsync's --stats ("Total transferred file size: 1,234
/// bytes" for name "Total transferred file size"); nullopt for other lines.
std::optional<std::uint64_t> parse_rsync_stat(std::string_view line, std::string_view name);

// ---------------------------------------------------------------------------
// Download
// ---------------------------------------------------------------------------

enum class Hub {
  /// modelscope.cn through the `modelscope` CLI (`pip install modelscope`).
  modelscope,
  /// huggingface.co through `hf` (or the older `huggingface-cli`),
  /// `pip install huggingface_hub`.
  huggingface,
};
std::string_view to_string(Hub hub) noexcept;
/// "modelscope"/"ms", "huggingface"/"hf"; nullopt otherwise.
std::optional<Hub> hub_from_string(std::string_view text) noexcept;

struct DownloadSpec {
  /// "Qwen/Qwen2.5-72B-Instruct".
  std::string model_id;
  Hub hub = Hub::modelscope;
  /// Branch, tag or commit to pin; empty: the hub's default branch.
  std::string revision;
  /// A mirror or private hub (sets HF_ENDPOINT / MODELSCOPE_ENDPOINT);
  /// empty: the CLI's default.
  std::string endpoint;
  /// An access token for gated or private models. A secret: it reaches the
  /// CLI through its environment, written to the command's standard input
  /// (never in an argv, a log line or an error message).
  std::string token;
  /// Where the files go on the host (created). Empty: the store's folder
  /// for the model (ModelStore::path_for).
  std::string local_dir;
  /// Only files matching these globs (e.g. "*.json", "*.safetensors").
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  /// The CLI to run (a path on the host). Empty: `hf`, `huggingface-cli`
  /// or `modelscope`, looked up on the host's PATH, ~/.local/bin and
  /// /opt/ck-hubcli/bin.
  std::string cli;
  int max_workers = 8;
  /// Runs of the CLI before giving up; each one resumes what the last left.
  int attempts = 3;
  /// Seconds between attempts (doubled each time).
  std::chrono::seconds retry_delay{5};
  /// A whole download's limit (0: none).
  std::chrono::seconds timeout{0};
  /// Check the result on the host (config, index, every header, sizes).
  bool verify = true;
};

/// The environment the CLI runs with (endpoint, no update checks, byte
/// progress bars on); never the token.
std::vector<std::pair<std::string, std::string>> download_environment(DownloadSpec const& spec);
/// The CLI's arguments after the program name, for `kind` "hf",
/// "huggingface-cli" or "modelscope".
std::vector<std::string> download_arguments(DownloadSpec const& spec, std::string_view kind, std::string const& dir);
/// The script a host runs: find the CLI, take the token from standard input,
/// report bytes on disk every second (`@@ck-bytes N`), run the CLI, report
/// its exit status. Throws Error(errc::invalid_argument) naming a bad field.
std::string download_script(DownloadSpec const& spec, std::string const& dir);

/// What a failed download means and what to do, from the CLI's stderr
/// (unknown model, unknown revision, gated model without a token, the hub
/// unreachable, disk full, no CLI installed).
std::string explain_download_failure(DownloadSpec const& spec, std::string_view host, int exit_code,
                                     std::string_view stderr_text);

struct DownloadResult {
  std::string host;
  std::string dir;
  /// "hf 2.4.0" / "modelscope 1.40.2": what ran.
  std::string cli;
  int attempts = 0;
  std::uint64_t bytes = 0;
  std::size_t files = 0;
  double seconds = 0;
  /// The structural check on the download host (when spec.verify).
  std::optional<VerifyReport> verify;
  /// Set when the download failed (errc::download_failed, ...), or its
  /// check found problems (errc::model_incomplete).
  std::error_code error;
  /// What was done, or what went wrong and the fix.
  std::string message;

  bool ok() const { return !error; }
  nlohmann::json to_json() const;
};

// ---------------------------------------------------------------------------
// Copy into the NAS
// ---------------------------------------------------------------------------

struct SyncSpec {
  /// Folders on the host that runs the copy (the NAS is mounted there).
  std::string source;
  std::string destination;
  /// rsync processes at once; files are dealt to them largest first, so
  /// each stream carries about the same bytes.
  int streams = 4;
  /// After the copy, remove files in the destination that the source lacks
  /// (or that `exclude` left out), so the folder is exactly the model.
  bool delete_extraneous = false;
  /// Compare by checksum instead of size and time (slow: reads both sides).
  bool checksum = false;
  /// Left out of the copy (relative globs); the hub CLIs' own bookkeeping
  /// (.cache/, ._____temp/, *.incomplete) is always left out.
  std::vector<std::string> exclude;
  std::chrono::seconds timeout{0};
  /// Check the copy where it landed (structure and sizes).
  bool verify = true;
};

/// A file to copy.
struct CopyItem {
  std::string path;  // relative to the source
  std::uint64_t bytes = 0;
};

/// Deal files to `streams` lists: largest first, each to the stream with
/// the fewest bytes so far. No stream is empty unless there are fewer files
/// than streams (then there are fewer lists). Pure.
std::vector<std::vector<CopyItem>> plan_copy_streams(std::vector<CopyItem> files, int streams);

/// The listing script's output ("SIZE\tPATH" lines) to items, skipping the
/// CLIs' bookkeeping. Throws Error(errc::parse_error) on a malformed line.
std::vector<CopyItem> parse_file_listing(std::string_view text);

/// `files` without those matching one of `globs` (fnmatch; a glob without
/// '/' is also tried against the file's name, so "*.bin" leaves out
/// "sub/x.bin"). Pure.
std::vector<CopyItem> without_excluded(std::vector<CopyItem> files, std::vector<std::string> const& globs);

/// What is in `destination` but not in `source` (both listings), never the
/// copy's own partial files. Pure.
std::vector<std::string> extraneous_files(std::vector<CopyItem> const& source, std::vector<CopyItem> const& destination);

/// The rsync argv of one stream (its file list comes on standard input).
std::vector<std::string> rsync_stream_argv(SyncSpec const& spec);

struct SyncResult {
  std::string host;
  std::string source;
  std::string destination;
  /// What the source holds, and what actually moved (the rest was
  /// already there, the same size and time).
  std::size_t files = 0;
  std::uint64_t bytes = 0;
  std::size_t files_transferred = 0;
  std::uint64_t bytes_transferred = 0;
  /// Removed from the destination (delete_extraneous).
  std::size_t files_deleted = 0;
  int streams = 0;
  double seconds = 0;
  std::optional<VerifyReport> verify;
  std::error_code error;
  std::string message;

  bool ok() const { return !error; }
  nlohmann::json to_json() const;
};

// ---------------------------------------------------------------------------
// Verify from the hosts
// ---------------------------------------------------------------------------

/// The script that prints a model folder's snapshot (config, index, every
/// shard's size and header bytes, base64) for `parse_model_snapshot`.
std::string model_snapshot_script(std::string const& dir);
/// Throws Error(errc::parse_error) when the text is not the script's.
ModelSnapshot parse_model_snapshot(std::string_view output);

struct RemoteVerifyOptions {
  /// Also read every shard to its end (cat > /dev/null): proves the bytes
  /// are readable through the mount, at the cost of reading the model once
  /// per host.
  bool read_all = false;
  /// Compare with sha256sums in the folder (runs sha256sum on each host,
  /// in parallel; reads everything).
  bool checksums = false;
  /// The path the serving container will use for the folder (for the
  /// report; "" when the same as on the host).
  std::string container_path;
  std::chrono::seconds timeout{600};
  /// Phase "verify", per host: after each shard read (read_all) and each
  /// file hashed (checksums), with its name, and once when the host's check
  /// is over (every host, whatever the options). On the hosts' executor.
  ProgressCallback on_progress;
};

struct HostVerify {
  std::string host;
  /// The folder checked on the host, and as the container will see it.
  std::string dir;
  std::string container_path;
  /// Empty when the host could not be asked (unreachable, ...).
  std::error_code error;
  std::string message;
  VerifyReport report;

  bool ok() const { return !error && report.ok(); }
  nlohmann::json to_json() const;
};

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

struct ModelStoreSpec {
  /// Where models live on every host (the NAS mount point or a folder
  /// under it).
  std::string root = "/mnt";
  /// The folder layout new downloads get: ModelScope's
  /// (`Qwen/Qwen2___5-72B-Instruct`), or plain `<id>`.
  ModelLayout layout = ModelLayout::modelscope;
  /// Where the serving container mounts `root` (the seed's
  /// `-v /mnt/Qwen:/models` is root /mnt/Qwen -> /models); "" for none.
  std::string container_root;
};

using DownloadSignature = void(std::error_code, DownloadResult);
using SyncSignature = void(std::error_code, SyncResult);
using VerifySignature = void(std::vector<HostVerify>);

namespace detail {
void start_model_download(Host host, DownloadSpec spec, ProgressCallback progress,
                          asio::any_completion_handler<DownloadSignature> handler);
void start_model_sync(Host host, SyncSpec spec, ProgressCallback progress,
                      asio::any_completion_handler<SyncSignature> handler);
void start_model_verify(std::vector<Host> hosts, std::string dir, RemoteVerifyOptions options,
                        asio::any_completion_handler<VerifySignature> handler);
}  // namespace detail

class ModelStore {
public:
  /// Throws Error(errc::invalid_argument) for a relative root.
  explicit ModelStore(ModelStoreSpec spec = {});

  ModelStoreSpec const& spec() const { return spec_; }

  /// The folder of `model_id` under the root in the store's layout:
  /// `/mnt/Qwen/Qwen2___5-72B-Instruct`.
  std::string path_for(std::string_view model_id) const;
  /// `path` (under the root) as the serving container sees it; `path`
  /// unchanged when there is no container root or it is not under the root.
  std::string container_path(std::string_view path) const;

  /// Download on `host`: the CLI runs there (resumed on failure, up to
  /// spec.attempts), progress is reported about once a second, and the
  /// result is checked on the host. Completes with errc::download_failed
  /// and the CLI's own words in `result.message`.
  template <class CompletionToken = asio::deferred_t>
  auto async_download(Host host, DownloadSpec spec, ProgressCallback progress = {}, CompletionToken&& token = {}) const {
    if (spec.local_dir.empty()) spec.local_dir = path_for(spec.model_id);
    return asio::async_initiate<CompletionToken, DownloadSignature>(
        [](auto handler, Host h, DownloadSpec s, ProgressCallback p) {
          detail::start_model_download(std::move(h), std::move(s), std::move(p), std::move(handler));
        },
        token, std::move(host), std::move(spec), std::move(progress));
  }

  /// Copy a folder on `host` into another (the NAS), several rsync streams
  /// at once. A file appears under its final name only when complete; an
  /// interrupted copy resumes where it stopped.
  template <class CompletionToken = asio::deferred_t>
  auto async_sync(Host host, SyncSpec spec, ProgressCallback progress = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, SyncSignature>(
        [](auto handler, Host h, SyncSpec s, ProgressCallback p) {
          detail::start_model_sync(std::move(h), std::move(s), std::move(p), std::move(handler));
        },
        token, std::move(host), std::move(spec), std::move(progress));
  }

  /// Check `dir` on every host at once: the same structural check as
  /// `verify_model`, on what each host sees (through its own mount).
  /// With GCC 12, pass a named RemoteVerifyOptions, not `{}`, inside a
  /// co_await expression: that compiler destroys a brace-initialised
  /// temporary argument of a co_await expression twice (seen as a crash in
  /// examples/model_store.cpp).
  template <class CompletionToken = asio::deferred_t>
  auto async_verify(std::vector<Host> hosts, std::string dir, RemoteVerifyOptions options = {},
                    CompletionToken&& token = {}) const {
    if (options.container_path.empty()) options.container_path = container_path(dir);
    return asio::async_initiate<CompletionToken, VerifySignature>(
        [](auto handler, std::vector<Host> h, std::string d, RemoteVerifyOptions o) {
          detail::start_model_verify(std::move(h), std::move(d), std::move(o), std::move(handler));
        },
        token, std::move(hosts), std::move(dir), std::move(options));
  }

private:
  ModelStoreSpec spec_;
};

/// Blocking forms (never from the thread that runs the hosts' executor),
/// by the library's rule: a download or copy that failed throws
/// clusterkit::Error with the result's message; the overloads taking
/// `std::error_code&` set it instead and return the result (what was done,
/// how long it took). Verifying is a report: one HostVerify per host, each
/// with its ok() and message; it throws only for arguments that cannot work.
DownloadResult download_model(ModelStore const& store, Host host, DownloadSpec spec, ProgressCallback progress = {});
DownloadResult download_model(ModelStore const& store, Host host, DownloadSpec spec, ProgressCallback progress,
                              std::error_code& ec);
SyncResult sync_model(ModelStore const& store, Host host, SyncSpec spec, ProgressCallback progress = {});
SyncResult sync_model(ModelStore const& store, Host host, SyncSpec spec, ProgressCallback progress, std::error_code& ec);
std::vector<HostVerify> verify_model_on_hosts(ModelStore const& store, std::vector<Host> hosts, std::string dir,
                                              RemoteVerifyOptions options = {});

}  // namespace clusterkit
