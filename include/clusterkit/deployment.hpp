// Deployment: the whole seed in one file and one command.
//
// The seed is one job done by hand in five steps on four machines: download
// the model on a CPU server and rsync it into the NAS, start a Ray head and a
// worker in Docker on two GPU servers, check `ray status` shows 4 GPUs, run
// `vllm serve` with TP 2 x PP 2, try it with the OpenAI client. A deployment
// spec says all of that once (YAML; `examples/deployments/`), and `up` does
// it, each step on every host at once, with the checks a person would run:
//
//   preflight -> nas (mounted and checked on every host) -> model (found on
//   the NAS and verified, or downloaded on the download host and synced in;
//   the hub's config.json comes first, and a model no layout fits is refused
//   before its weights) -> verify (from every GPU host, as the engine will
//   see it) -> layout (the planner on the real headers; a layout that does
//   not fit is refused with what would) -> ray ->
//   serve (launched, followed until a real token comes back) -> smoke (a real
//   streamed answer) -> bench (a short load).
//
// Idempotent and resumable: every step first looks at what is there (a NAS
// already mounted is kept, a model already verified is not copied, a Ray
// cluster of the same shape is left alone, the same engine is not
// restarted), so `up` twice converges, and `up` after a failure or Ctrl-C
// picks up where it stopped. A healthy deployment answers `up` from a quick
// look at its record and its live state. `down` removes what `up` started
// (engine, Ray, containers); the NAS and the model stay unless asked.
//
// Every run leaves a record (JSON, in the deployment's state folder):
// versions, the layout, each node's environment, each step's timing per
// host, the smoke test and the benchmark: the evidence a team keeps.
//
// Pure pieces (the spec parser with file:line:column errors, the step plan,
// the record) are tested without hosts; the operations run against the lab.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/inventory.hpp"
#include "clusterkit/model_store.hpp"
#include "clusterkit/nas.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/ray_cluster.hpp"
#include "clusterkit/vllm_serve.hpp"

namespace clusterkit {

struct DeploymentModel {
  /// The hub id ("Qwen/Qwen2.5-72B-Instruct").
  std::string id;
  /// "modelscope", "hf", or "none": the files are already in download_dir
  /// on the download host (made or copied there another way), or already on
  /// the NAS.
  std::string hub = "modelscope";
  std::string revision;
  /// A hub mirror (HF_ENDPOINT / MODELSCOPE_ENDPOINT).
  std::string endpoint;
  /// The environment variable (on this machine) that holds the hub token.
  std::string token_env;
  /// The host that downloads (default: the one with role `download`).
  std::string download_host;
  /// Where it downloads to on that host, before the copy into the NAS
  /// (default: /data/ + the folder's layout path).
  std::string download_dir;
  /// Where models live on the NAS (ModelStore root; default the mount point).
  std::string root;
  /// Where the serving containers see `root` (the seed: -v /mnt/Qwen:/models
  /// puts /mnt/Qwen/X at /models/X; here `root` is mounted whole, so
  /// /mnt/Qwen/Qwen2___5-72B-Instruct appears as /models/Qwen/Qwen2___5-...).
  std::string container_root = "/models";
  /// rsync streams for the copy into the NAS.
  unsigned sync_streams = 4;
};

struct DeploymentChecks {
  bool preflight = true;
  bool smoke = true;
  /// A short benchmark after the smoke test (0 requests: none).
  unsigned bench_requests = 20;
  unsigned bench_concurrency = 4;
  unsigned bench_max_tokens = 32;
  unsigned bench_prompt_words = 64;
};

struct DeploymentSpec {
  std::string name = "ck";
  /// The spec file (for messages and relative paths).
  std::string source;
  Inventory inventory;
  /// The NAS; from the spec's `nas:` or the inventory's vars (nas_export,
  /// ...). Unset: no NAS step (the model folder must already be at the same
  /// path on every host).
  std::optional<NasSpec> nas;
  DeploymentModel model;
  /// The Ray cluster's runtime and settings (image, venv, shm, env, ports).
  RayClusterSpec ray;
  std::string head;
  /// Ray's workers (default: every other GPU host).
  std::vector<std::string> workers;
  /// The engine. tensor/pipeline parallel 0 means "auto": the planner's.
  VllmServeSpec serve;
  /// max_model_len unset and this set: the planner's.
  bool max_model_len_auto = true;
  DeploymentChecks checks;
  /// Where the record and the key live on this machine (default:
  /// $XDG_STATE_HOME/clusterkit/deployments/NAME, ~/.local/state/...).
  std::string state_dir;

  /// A hash of what defines the deployment (a changed spec is not "up").
  std::string fingerprint() const;
  /// The model folder on the NAS, and as the engine sees it.
  std::string model_path() const;
  std::string engine_model_path() const;
};

/// Read a spec. Every mistake is reported at once (file:line:column: field:
/// what is wrong; did you mean ...), in one Error(errc::inventory_invalid);
/// nothing is started. `inventory:` is a path (relative to the spec) or an
/// inline inventory.
DeploymentSpec load_deployment_spec(std::filesystem::path const& path);
DeploymentSpec parse_deployment_spec(std::string_view text, std::string source = "<deployment>",
                                     std::filesystem::path const& base_dir = {});

/// The steps, in order.
std::vector<std::string> const& deployment_steps();

/// Why `tp` x `pp` cannot run on `gpus` whatever the model (more GPUs than
/// there are), with what would: "" when the count allows it, or when tp or
/// pp is 0 (`auto`: the planner decides). `gpus` must hold every GPU host
/// (a host left out would make the total too low). `up` checks it before
/// anything starts when every GPU host declares its GPUs, again once the
/// hosts' facts are in, and `plan` says it; the planner's memory check
/// comes once the model is there, or before anything starts for a model
/// clusterkit ships the config of (known_model_fit_refusal).
std::string layout_count_refusal(unsigned tp, unsigned pp, GpuInventory const& gpus);

/// The layout `up` serves from a plan: the planner's recommendation when
/// `tp` and `pp` are both 0 (`auto`), else the planned layout of that shape
/// (one of them 0: the first that fits with the other). Throws
/// Error(errc::invalid_argument) when it does not fit, naming why and
/// what would (another layout, or the shortfall's suggestions).
Layout choose_layout(Plan const& plan, unsigned tp, unsigned pp);

/// The planner's memory check before anything is downloaded, for a model
/// whose config.json clusterkit ships (known_model_config: the seed's
/// Qwen2.5-72B-Instruct among them): why `tp` x `pp` (0: auto) cannot run
/// on `gpus`, from the config alone (tensor sizes estimated, and said so),
/// and what would. "" when it fits, when the model is not one of them, or
/// when `gpus` is empty or a node's per-GPU memory is not known. Options
/// out of range throw Error(errc::invalid_argument), as plan_deployment. `up` refuses at preflight with it, so that a
/// 145 GB download is never made for a model that cannot be served; the
/// layout step checks again from the real headers.
std::string known_model_fit_refusal(std::string_view model_id, unsigned tp, unsigned pp, GpuInventory const& gpus,
                                    PlanOptions const& options = {});

// ---------------------------------------------------------------------------
// The record

struct StepHostRecord {
  std::string host;
  /// "ok", "skipped" (already done), "failed".
  std::string status;
  std::string message;
  double started_s = 0;
  double ended_s = 0;
};

struct StepRecord {
  std::string step;
  /// "pending", "running", "ok", "skipped", "failed".
  std::string status = "pending";
  std::string message;
  /// Seconds from the start of the run.
  double started_s = 0;
  double ended_s = 0;
  std::vector<StepHostRecord> hosts;
  nlohmann::json detail = nlohmann::json::object();
};

struct DeploymentRecord {
  std::string name;
  std::string spec_file;
  std::string spec_fingerprint;
  /// "up", "failed", "running", "down".
  std::string status = "running";
  std::string message;
  /// Wall clock, ISO 8601 UTC.
  std::string started_at;
  std::string finished_at;
  double total_seconds = 0;
  /// clusterkit's part: the total minus the components' own work: the
  /// engine's start, Ray's start or the data copy (they run side by side:
  /// the longer), and the engine's answers to the checks (readiness, smoke
  /// test, benchmark). `own_breakdown` has each figure.
  double own_seconds = 0;
  /// {"total", "engine_start", "ray_start", "data_copy", "engine_answers",
  /// "own"} in seconds, as subtracted; {} before the first full `up`.
  nlohmann::json own_breakdown = nlohmann::json::object();
  std::string endpoint;
  std::string served_model_name;
  std::string api_key_file;
  /// vllm, ray, python, driver, cuda, image (and its id), per what was found.
  std::map<std::string, std::string> versions;
  nlohmann::json layout = nlohmann::json::object();
  /// Each node's environment as started (no secrets: the key is a file).
  std::map<std::string, std::map<std::string, std::string>> node_env;
  std::vector<StepRecord> steps;
  nlohmann::json smoke = nlohmann::json::object();
  nlohmann::json bench = nlohmann::json::object();
  /// What is simulated in this deployment (the lab's GPUs, a local hub).
  std::vector<std::string> simulated;

  StepRecord* step(std::string_view name);
  StepRecord const* step(std::string_view name) const;
  nlohmann::json to_json() const;
  static DeploymentRecord from_json(nlohmann::json const& j);
  /// The end-of-run summary for people: what runs where, the endpoint, the
  /// key's file, and a `chat` line to copy.
  std::string summary() const;
};

/// The record's file in a spec's state folder.
std::filesystem::path deployment_record_path(DeploymentSpec const& spec);
std::optional<DeploymentRecord> load_deployment_record(DeploymentSpec const& spec);

// ---------------------------------------------------------------------------
// Operations

/// One line of progress: a step on a host (host "" for the whole step).
struct DeploymentProgress {
  std::string step;
  std::string host;
  /// "running", "ok", "skipped", "failed", or a step's own phase.
  std::string status;
  std::string message;
  double elapsed_seconds = 0;
};
using DeploymentProgressCallback = std::function<void(DeploymentProgress const&)>;

/// A dry run: each step, each host's commands, and what would be skipped
/// because it is already done (read-only probes of the hosts).
struct PlannedCommand {
  std::string host;
  /// The command line, or what a long script does (one line for people).
  std::string command;
  /// The whole script it runs, when `command` is its summary (the facts
  /// script, the mount script, the download script...): `plan --full`
  /// prints it, so every command `up` would run can be read beforehand.
  std::string script;
};
struct PlannedStep {
  std::string step;
  std::string what;
  /// Empty unless it would be skipped.
  std::string skip_reason;
  std::vector<PlannedCommand> commands;
};
struct DeploymentPlanResult {
  std::vector<PlannedStep> steps;
  std::vector<std::string> notes;
  nlohmann::json to_json() const;
  /// Numbered steps, each host's command (its first 200 characters); with
  /// `full`, every command and script whole.
  std::string text(bool full = false) const;
};

/// One host of a deployment as `status` found it: the first layer, under
/// the NAS, the model, Ray and the engine (a host that does not answer
/// explains the others' failures, so it is said first).
struct DeploymentHostLook {
  std::string host;
  /// What the deployment uses it for: "head", "worker", "download".
  std::vector<std::string> roles;
  bool reachable = false;
  /// How long a tiny command took there, connection included (0 when none
  /// answered).
  double answer_seconds = 0;
  /// Since the host booted (a reboot explains a NAS no longer mounted) and
  /// its load averages over 1, 5 and 15 minutes; 0 and empty when unknown.
  double uptime_seconds = 0;
  std::string load;
  /// Why it could not be asked (ssh's reason and the fix), when not reachable.
  std::string message;
  nlohmann::json to_json() const;
  /// "h1 (head): answered in 0.01 s, up 3 h 2 min, load 0.52 0.40 0.31".
  std::string summary() const;
};

/// Reads the answer of the hosts' probe ("UPTIME IDLE\nL1 L5 L15 ...") into
/// `look`; false when it is not that shape.
bool parse_host_probe(std::string_view text, DeploymentHostLook& look);

struct DeploymentStatus {
  std::string name;
  /// "up", "DEGRADED", "down", "failed" (the last run's outcome when
  /// nothing runs).
  std::string state = "down";
  std::optional<DeploymentRecord> record;
  /// Every host of the deployment (GPU hosts, then the download host).
  std::vector<DeploymentHostLook> hosts;
  std::optional<NasCheckReport> nas;
  std::vector<HostVerify> model;
  std::optional<RayClusterStatus> ray;
  std::optional<VllmStatus> engine;
  std::vector<std::string> problems;
  nlohmann::json to_json() const;
  std::string summary() const;
};

struct DeploymentDownOptions {
  /// Also unmount the NAS on every host.
  bool unmount_nas = false;
  /// Also delete the model folder on the NAS and the download folder.
  bool remove_model = false;
};

struct DeploymentDownResult {
  std::vector<std::string> removed;
  std::vector<std::string> problems;
};

using DeploymentUpSignature = void(std::error_code, DeploymentRecord);
using DeploymentPlanSignature = void(std::error_code, DeploymentPlanResult);
using DeploymentStatusSignature = void(std::error_code, DeploymentStatus);
using DeploymentDownSignature = void(std::error_code, DeploymentDownResult);
using DeploymentLogsSignature = void(std::error_code, std::string);

class Deployment;
namespace detail {
void start_deployment_up(Deployment d, DeploymentProgressCallback p, asio::any_completion_handler<DeploymentUpSignature> h);
void start_deployment_plan(Deployment d, asio::any_completion_handler<DeploymentPlanSignature> h);
void start_deployment_status(Deployment d, asio::any_completion_handler<DeploymentStatusSignature> h);
void start_deployment_down(Deployment d, DeploymentDownOptions o, asio::any_completion_handler<DeploymentDownSignature> h);
void start_deployment_logs(Deployment d, std::string host, VllmLogsOptions options, asio::any_completion_handler<DeploymentLogsSignature> h);
}  // namespace detail

class Deployment {
public:
  /// Throws Error(errc::invalid_argument) naming the field when the spec's
  /// hosts do not add up (no GPU host, an unknown head or download host).
  Deployment(asio::any_io_executor executor, DeploymentSpec spec);

  DeploymentSpec const& spec() const { return spec_; }
  asio::any_io_executor get_executor() const { return executor_; }
  /// The hosts, as handles on the executor.
  Host host(std::string const& name) const;
  std::vector<std::string> const& gpu_hosts() const { return gpu_hosts_; }
  std::string const& download_host() const { return download_host_; }
  /// The Ray cluster and the engine this deployment runs.
  RayCluster ray_cluster() const;
  VllmServe engine(unsigned tp, unsigned pp, std::optional<std::uint64_t> max_model_len) const;

  template <class CompletionToken = asio::deferred_t>
  auto async_up(DeploymentProgressCallback progress = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, DeploymentUpSignature>(
        [d = *this](auto h, DeploymentProgressCallback p) { detail::start_deployment_up(d, std::move(p), std::move(h)); },
        token, std::move(progress));
  }
  template <class CompletionToken = asio::deferred_t>
  auto async_plan(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, DeploymentPlanSignature>(
        [d = *this](auto h) { detail::start_deployment_plan(d, std::move(h)); }, token);
  }
  template <class CompletionToken = asio::deferred_t>
  auto async_status(CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, DeploymentStatusSignature>(
        [d = *this](auto h) { detail::start_deployment_status(d, std::move(h)); }, token);
  }
  template <class CompletionToken = asio::deferred_t>
  auto async_down(DeploymentDownOptions options = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, DeploymentDownSignature>(
        [d = *this](auto h, DeploymentDownOptions o) { detail::start_deployment_down(d, o, std::move(h)); }, token,
        options);
  }
  /// The engine's log (host empty or the head), or a host's Ray logs.
  template <class CompletionToken = asio::deferred_t>
  auto async_logs(std::string host = {}, unsigned tail = 200, CompletionToken&& token = {}) const {
    VllmLogsOptions o;
    o.tail = tail;
    return async_logs(std::move(host), std::move(o), std::forward<CompletionToken>(token));
  }
  /// The same with the engine log's options: `follow` (the engine's log
  /// only: a Ray host's logs are read once) runs until cancelled.
  template <class CompletionToken = asio::deferred_t>
  auto async_logs(std::string host, VllmLogsOptions options, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, DeploymentLogsSignature>(
        [d = *this](auto h, std::string host_name, VllmLogsOptions o) {
          detail::start_deployment_logs(d, std::move(host_name), std::move(o), std::move(h));
        },
        token, std::move(host), std::move(options));
  }

private:
  asio::any_io_executor executor_;
  DeploymentSpec spec_;
  std::vector<std::string> gpu_hosts_;
  std::string download_host_;
};

/// Blocking forms (throw Error with the record's message on failure).
DeploymentRecord deployment_up(Deployment const& d, DeploymentProgressCallback progress = {});
DeploymentPlanResult deployment_plan(Deployment const& d);
DeploymentStatus deployment_status(Deployment const& d);
DeploymentDownResult deployment_down(Deployment const& d, DeploymentDownOptions options = {});
std::string deployment_logs(Deployment const& d, std::string host = {}, unsigned tail = 200);

}  // namespace clusterkit
