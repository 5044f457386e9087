// VllmServe: the seed's steps 4-5, `vllm serve` across the Ray cluster, then
// proof that it answers.
//
// Two layers, as everywhere in clusterkit:
//  * Pure code, tested without hosts: typed options to the `vllm serve`
//    argv (defaults from the planner's Layout, so `plan` and `serve` never
//    disagree), the launch/stop/watch scripts, the reader of the engine's
//    own log (progress: weights, KV cache, compile, "Application startup
//    complete"), the diagnosis of a log that ends badly (one sentence with
//    the fix, for the multi-node failures users hit: placement group never
//    satisfied, Ray refused, wrong node IP, Gloo/NCCL interface, /dev/shm,
//    model path missing, version mismatch, no GPU, KV cache too small, port
//    in use), and the judgement of an engine's status (healthy, DEGRADED
//    when /health says 200 while a Ray worker is dead: vllm#16259).
//  * Operations: `async_up` launches the engine in the cluster's runtime
//    (inside the head's container for docker, detached with a log file and
//    a pid for bare) and returns at once; `async_wait_ready` follows the log
//    and ends when /health is 200, /v1/models lists the served name and one
//    real streamed token came back; `async_status`, `async_down` (graceful
//    stop, then kill; nothing left), `async_logs`.
//
// Secure by default: an API key is generated unless one is given, stored
// mode 0600 on this machine, handed to the engine through a 0600 file and
// the VLLM_API_KEY variable (never an argument: `ps` shows arguments), and
// used by the client side (`chat`, `bench`) automatically.
//
//   clusterkit::VllmServe serve(spec, ray);     // ray: the RayCluster it runs on
//   co_await serve.async_up(asio::use_awaitable);
//   auto ready = co_await serve.async_wait_ready(on_progress, asio::use_awaitable);
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/planner.hpp"
#include "clusterkit/ray_cluster.hpp"

namespace clusterkit {

enum class ExecutorBackend {
  /// `--distributed-executor-backend ray`: the engine on the head, its
  /// workers placed by Ray on every node (the seed's way).
  ray,
  /// `--distributed-executor-backend mp`: one host, worker processes.
  mp,
  /// vLLM's Ray-free multi-node form: `vllm serve` on every host with
  /// `--nnodes N --node-rank I --master-addr HEAD` (`--headless` on all but
  /// the head). Only where the installed vLLM has those options.
  multinode,
};
std::string_view to_string(ExecutorBackend backend) noexcept;
std::optional<ExecutorBackend> executor_backend_from_string(std::string_view text) noexcept;

struct VllmServeSpec {
  /// Names the engine's files on the head (/tmp/ck-vllm-NAME: log, pid,
  /// key) and the key file on this machine. 1-32 of [a-z0-9-].
  std::string name = "ck";
  /// The model as the engine sees it (in the container: /models/...).
  std::string model;
  /// `--served-model-name`; default: the folder's name.
  std::string served_model_name;
  unsigned tensor_parallel = 1;
  unsigned pipeline_parallel = 1;
  std::optional<std::uint64_t> max_model_len;
  std::optional<double> gpu_memory_utilization;
  /// "" = vLLM's auto.
  std::string dtype;
  /// Where the API listens, on the head.
  std::string host = "0.0.0.0";
  int port = 8000;
  ExecutorBackend backend = ExecutorBackend::ray;
  /// Extra `vllm serve` arguments, as given.
  std::vector<std::string> extra_args;
  /// The engine's environment (on top of the node's, which the runtime
  /// already has: VLLM_HOST_IP, GLOO_SOCKET_IFNAME...).
  std::map<std::string, std::string> env;
  /// The `vllm` program ("vllm" from PATH, or a venv's bin/vllm).
  std::string vllm_command = "vllm";
  /// The API key. Empty: use the one stored for this engine, or generate
  /// one. Never logged, never in an argv.
  std::string api_key;
  /// Serve without a key (vLLM's own default; the port is then open to
  /// anyone who reaches it: REFERENCES #12). Off unless asked.
  bool no_api_key = false;
  /// Where the key is kept on this machine (mode 0600). Empty:
  /// $XDG_CONFIG_HOME/clusterkit/keys/NAME.key (~/.config/...).
  std::string api_key_file;
  /// How long wait_ready waits for the engine.
  std::chrono::seconds ready_timeout{1800};
  /// How long "Waiting for creating a placement group" may go on before
  /// wait_ready gives up with the diagnosis (Ray will not find the GPUs).
  std::chrono::seconds placement_group_timeout{180};

  /// The spec the planner's layout implies: TP, PP, max model length and
  /// GPU memory utilisation as `plan` prints them.
  static VllmServeSpec from_layout(Layout const& layout, std::string model, std::string served_model_name = {});
};

// ---------------------------------------------------------------------------
// Pure pieces

/// Throws Error(errc::invalid_argument) naming the field when the spec
/// cannot work (no model, name, port, sizes, TP x PP of 0, an env name).
void validate(VllmServeSpec const& spec);
/// The served name: spec.served_model_name, else the model folder's name.
std::string served_name(VllmServeSpec const& spec);
/// `vllm serve MODEL ...` for node `node_rank` of `nodes` (multinode only;
/// 0 otherwise). No key in it.
std::vector<std::string> vllm_serve_argv(VllmServeSpec const& spec, unsigned node_rank = 0, unsigned nodes = 1,
                                         std::string const& master_addr = {});
/// The folder of the engine's files on the head.
std::string vllm_state_dir(VllmServeSpec const& spec);
/// The key file on this machine (see api_key_file).
std::filesystem::path vllm_api_key_path(VllmServeSpec const& spec);
/// A new random key ("ck-" and 48 hex digits).
std::string generate_api_key();

/// The script that writes the key (read from stdin, never an argument) and
/// launches the engine detached with its log and pid in the state dir.
/// `env` is added to the engine's environment (RAY_ADDRESS, the node's).
/// Prints `@@ck-vllm-launched PID` or `@@ck-vllm-running PID` (the same
/// engine is already up: left alone) or `@@ck-vllm-failed WHY`.
/// `key_digest` (a hash of the key, never the key) joins the fingerprint, so
/// an engine started with another key counts as another engine.
std::string vllm_launch_script(VllmServeSpec const& spec, std::vector<std::string> const& argv,
                               std::map<std::string, std::string> const& env, std::string const& key_digest = {});
/// One look at the engine: `@@ck-vllm-alive 0|1`, its uptime, the log's
/// size, and the log's bytes from `offset` (at most 256 KiB).
std::string vllm_watch_script(VllmServeSpec const& spec, std::uint64_t offset);
/// The most of the log one look returns; a full look means more is waiting.
inline constexpr std::uint64_t vllm_watch_log_bytes = 256u << 10;
struct VllmWatch {
  bool state_dir = false;
  bool alive = false;
  int pid = 0;
  double uptime_seconds = 0;
  std::uint64_t log_size = 0;
  /// The log from the offset asked for.
  std::string log;
  /// The fingerprint of the running engine's argv (for `up` twice).
  std::string fingerprint;
  /// The engine's argv as launched (shell-quoted words).
  std::string argv;
  /// Its --served-model-name, read from that argv.
  std::string served_model_name;
  /// The executor backend it was launched with, read from that argv
  /// (none when there is no argv): `status` asks Ray only about an engine
  /// that uses Ray, whatever the caller's spec says.
  std::optional<ExecutorBackend> backend;
};
VllmWatch parse_vllm_watch(std::string_view output);
/// Stops the engine: SIGTERM to it, SIGTERM to its whole session half way
/// through `grace`, then SIGKILL (an engine waiting for a placement group
/// ignores SIGTERM); removes the files vLLM's CPU backend leaves in
/// /dev/shm and the engine's state dir. Prints `@@ck-vllm-stopped WHAT`.
std::string vllm_stop_script(VllmServeSpec const& spec, std::chrono::seconds grace = std::chrono::seconds(30));

/// What the engine's log says about its start so far.
struct VllmLogProgress {
  /// "starting", "loading", "kv-cache", "compiling", "api", "ready".
  std::string phase = "starting";
  std::string version;
  std::optional<double> weights_seconds;
  /// "GPU KV cache size: 64,816 tokens" / "CPU KV cache size: ...".
  std::optional<std::uint64_t> kv_cache_tokens;
  std::optional<double> max_concurrency;
  std::optional<double> init_engine_seconds;
  bool waiting_for_placement_group = false;
  bool api_started = false;
  bool startup_complete = false;
  /// The last interesting line, for a progress display.
  std::string last;
  /// Every phase the log went through, in order: one look at the log may
  /// read several (a small model loads between two looks), and a progress
  /// display shows each.
  std::vector<std::string> phases;
};
/// Reads `chunk` (the log's next bytes) into `progress`.
void read_vllm_log(std::string_view chunk, VllmLogProgress& progress);

/// A log that ended badly, explained.
struct VllmDiagnosis {
  /// A short stable name: "placement-group", "platform-no-ray", "gloo-interface",
  /// "shm", "model-missing", "version-mismatch", "no-gpu", "kv-cache",
  /// "nccl-interface", "out-of-memory", "port-in-use", "no-compiler", "worker-lost",
  /// "stopped", "cpu-binding", "cpu-multinode", "max-model-len", "engine-dead",
  /// "unknown".
  std::string cause;
  /// One sentence: what happened and the fix.
  std::string message;
  /// The log line it was read from.
  std::string evidence;
};
/// Explains why the engine died or does not become ready, from its own log
/// (the whole log, or its tail). `context` fills in what the log does not
/// say (the cluster's GPUs, the port).
struct VllmDiagnosisContext {
  double cluster_gpus = 0;
  unsigned tensor_parallel = 1;
  unsigned pipeline_parallel = 1;
  int port = 8000;
  std::string model;
};
VllmDiagnosis diagnose_vllm_log(std::string_view log, VllmDiagnosisContext const& context = {});

/// The planner against the CPU backend: the KV tokens vLLM's CPU build
/// reports for `kv_cache_bytes` per worker (VLLM_CPU_KVCACHE_SPACE GiB, or
/// --kv-cache-memory-bytes): bytes / (2 x layers of the stage x
/// max(1, kv_heads / TP) x head_dim x dtype bytes), on the stage with the
/// most layers.
std::uint64_t predict_cpu_kv_cache_tokens(ModelFacts const& model, unsigned tp, unsigned pp, std::uint64_t kv_cache_bytes,
                                          std::string_view kv_cache_dtype = "auto");

// ---------------------------------------------------------------------------
// Operations

struct VllmProgress {
  /// The log's phase, then "http" (waiting for /health, /v1/models and a
  /// token), then "ready".
  std::string phase;
  double elapsed_seconds = 0;
  std::string message;
  std::optional<std::uint64_t> kv_cache_tokens;
};
using VllmProgressCallback = std::function<void(VllmProgress const&)>;

struct VllmUpResult {
  /// "launched", "running" (the same engine was up: left alone).
  std::string action;
  int pid = 0;
  std::string endpoint;
  /// Where the key is on this machine ("" with no_api_key).
  std::string api_key_file;
  std::vector<std::string> argv;
  std::string message;
};

struct VllmReady {
  std::string endpoint;
  std::string served_model_name;
  /// From the engine's log.
  VllmLogProgress log;
  /// Seconds from `wait_ready`'s start: the log said "Application startup
  /// complete", /health answered 200, the first token came back.
  double startup_complete_seconds = 0;
  double health_seconds = 0;
  double ready_seconds = 0;
  /// The engine's own start time (its uptime when startup completed).
  double engine_start_seconds = 0;
  /// Seconds spent waiting for the engine's answers to the readiness
  /// requests (/health, /v1/models, the first token): the engine's own work,
  /// as a benchmark's requests are (a deployment's own time leaves it out).
  double answer_seconds = 0;
  std::string first_token;
  std::string message;
  nlohmann::json to_json() const;
};

struct VllmStatus {
  std::string endpoint;
  /// "up", "DEGRADED", "starting", "down".
  std::string state = "down";
  bool process_alive = false;
  int pid = 0;
  double uptime_seconds = 0;
  int health_status = 0;
  std::vector<std::string> served_models;
  /// From /metrics.
  std::optional<double> running_requests;
  std::optional<double> waiting_requests;
  std::optional<double> kv_cache_usage;
  /// Ray's view (backend ray): is every node alive?
  std::optional<RayClusterStatus> ray;
  std::vector<std::string> problems;
  std::optional<VllmDiagnosis> diagnosis;
  nlohmann::json to_json() const;
  std::string summary() const;
};

/// Judges the pieces (pure): DEGRADED when the HTTP side answers but Ray
/// reports a node dead, or the process is gone while something still
/// answers on the port.
std::string judge_vllm_state(bool process_alive, int health_status, bool served_name_listed,
                             std::optional<RayClusterStatus> const& ray, std::vector<std::string>& problems);

struct VllmDownResult {
  std::string stopped;
  std::string message;
};

struct VllmLogsOptions {
  /// The last lines first (0: the whole log).
  unsigned tail = 200;
  /// Keep reading as the log grows, like `tail -F`: every line to on_line
  /// (the tail's first), until the operation is cancelled (Ctrl-C in the
  /// CLI); it then completes with errc::cancelled. Nothing stays running on
  /// the head: each look is one short command reading from where the last
  /// one stopped, so no line is lost or shown twice, however fast the
  /// engine writes; a log that starts again (a new engine) is followed from
  /// its start, saying so.
  bool follow = false;
  /// With follow: one call per line (no newline), on the head's executor.
  std::function<void(std::string_view line)> on_line;
  std::chrono::milliseconds poll_interval{1000};
};

/// `follow`'s bookkeeping, without I/O: where the next look starts and the
/// line begun but not yet ended.
struct VllmLogFollower {
  std::uint64_t offset = 0;
  std::string partial;
  bool alive_seen = false;
  bool alive = false;
  /// The engine whose log this is: another pid means another log (the new
  /// engine's), read from its start, even if it already grew past `offset`.
  int pid = 0;
  /// The first look, read from `from` (the log's size less up to
  /// 256 KiB): its last `tail` complete lines (0: all), the first one
  /// dropped when `from` cut it.
  std::vector<std::string> start(VllmWatch const& look, std::uint64_t from, unsigned tail);
  /// Each later look (parse_vllm_watch of vllm_watch_script(offset)): the
  /// lines it completes, and notes of clusterkit's own, which begin with
  /// "clusterkit: " (the engine stopped, ran again, the log started again).
  std::vector<std::string> take(VllmWatch const& look);
};

using VllmUpSignature = void(std::error_code, VllmUpResult);
using VllmReadySignature = void(std::error_code, VllmReady);
using VllmStatusSignature = void(std::error_code, VllmStatus);
using VllmDownSignature = void(std::error_code, VllmDownResult);
using VllmLogsSignature = void(std::error_code, std::string);

class VllmServe;
namespace detail {
void start_vllm_up(VllmServe serve, asio::any_completion_handler<VllmUpSignature> h);
void start_vllm_wait_ready(VllmServe serve, VllmProgressCallback progress, asio::any_completion_handler<VllmReadySignature> h);
void start_vllm_status(VllmServe serve, asio::any_completion_handler<VllmStatusSignature> h);
void start_vllm_down(VllmServe serve, asio::any_completion_handler<VllmDownSignature> h);
void start_vllm_logs(VllmServe serve, VllmLogsOptions options, asio::any_completion_handler<VllmLogsSignature> h);
}  // namespace detail

class VllmServe {
public:
  /// The engine on `cluster`: its runtime (container or venv), its head
  /// (where the engine and its API run) and its hosts. Throws
  /// Error(errc::invalid_argument) when the spec cannot work.
  VllmServe(VllmServeSpec spec, RayCluster cluster);

  VllmServeSpec const& spec() const { return spec_; }
  RayCluster const& cluster() const { return cluster_; }
  /// http://HEAD:PORT
  std::string endpoint() const;
  /// The key the engine uses (loaded or generated by async_up; "" before,
  /// or with no_api_key).
  std::string const& api_key() const { return *api_key_; }

  /// Launch the engine and return at once (its start takes minutes: follow
  /// it with async_wait_ready). An engine already running with the same
  /// arguments is left alone; another one is stopped first.
  template <class CompletionToken = asio::deferred_t>
  auto async_up(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, VllmUpSignature>(
        [s = *this](auto handler) { detail::start_vllm_up(s, std::move(handler)); }, token);
  }

  /// Follow the engine's start from its log until it serves (see the file
  /// comment); fails with the log's diagnosis when it dies or times out.
  template <class CompletionToken = asio::deferred_t>
  auto async_wait_ready(VllmProgressCallback progress = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, VllmReadySignature>(
        [s = *this](auto handler, VllmProgressCallback p) { detail::start_vllm_wait_ready(s, std::move(p), std::move(handler)); },
        token, std::move(progress));
  }

  template <class CompletionToken = asio::deferred_t>
  auto async_status(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, VllmStatusSignature>(
        [s = *this](auto handler) { detail::start_vllm_status(s, std::move(handler)); }, token);
  }

  template <class CompletionToken = asio::deferred_t>
  auto async_down(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, VllmDownSignature>(
        [s = *this](auto handler) { detail::start_vllm_down(s, std::move(handler)); }, token);
  }

  template <class CompletionToken = asio::deferred_t>
  auto async_logs(VllmLogsOptions options = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, VllmLogsSignature>(
        [s = *this](auto handler, VllmLogsOptions o) { detail::start_vllm_logs(s, o, std::move(handler)); }, token, options);
  }

  /// The key: the one given, else the stored one, else a new one (stored
  /// 0600). Called by async_up; safe to call again.
  std::string const& ensure_api_key();

private:
  VllmServeSpec spec_;
  RayCluster cluster_;
  std::shared_ptr<std::string> api_key_ = std::make_shared<std::string>();
};

/// Blocking forms: throw Error with the message when the operation fails.
VllmUpResult vllm_up(VllmServe& serve);
VllmReady vllm_wait_ready(VllmServe const& serve, VllmProgressCallback progress = {});
VllmStatus vllm_status(VllmServe const& serve);
VllmDownResult vllm_down(VllmServe const& serve);
std::string vllm_logs(VllmServe const& serve, VllmLogsOptions options = {});

/// The key stored for an endpoint's engine, for clients (chat, bench): the
/// key files under $XDG_CONFIG_HOME/clusterkit/keys/ name their endpoint
/// (a "# endpoint URL" line); "" when none matches.
std::string stored_api_key_for(std::string const& endpoint);

}  // namespace clusterkit
