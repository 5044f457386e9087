// Deployment, the I/O half: the steps of `up` one after the other, each on
// every host at once through the library's own operations (preflight,
// NasMount, ModelStore, the planner, RayCluster, VllmServe, OpenAIClient),
// the record written after every step, and the quick look that lets `up` on
// a healthy deployment answer in well under a second.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>

#include "clusterkit/deployment.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/openai_client.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/shell.hpp"
#include "core/block_on.hpp"
#include "core/coro.hpp"
#include "core/task_group.hpp"
#include "core/text.hpp"
#include "remote/run_each.hpp"

namespace clusterkit {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace detail {
std::string deployment_now_iso();
std::optional<Plan> known_model_plan(std::string_view model_id, GpuInventory const& gpus, PlanOptions const& options);
}

Deployment::Deployment(asio::any_io_executor executor, DeploymentSpec spec) : executor_(std::move(executor)), spec_(std::move(spec)) {
  auto const& inv = spec_.inventory;
  if (spec_.head.empty() || !inv.find(spec_.head))
    throw Error(make_error_code(errc::invalid_argument), "the deployment has no head among its hosts; set ray.head to a GPU host");
  gpu_hosts_.push_back(spec_.head);
  for (auto const& w : spec_.workers) {
    if (!inv.find(w)) throw Error(make_error_code(errc::invalid_argument), "ray worker \"" + w + "\" is not in the inventory");
    if (w != spec_.head) gpu_hosts_.push_back(w);
  }
  download_host_ = spec_.model.download_host;
  if (!download_host_.empty() && !inv.find(download_host_))
    throw Error(make_error_code(errc::invalid_argument), "download host \"" + download_host_ + "\" is not in the inventory");
}

Host Deployment::host(std::string const& name) const {
  auto const* h = spec_.inventory.find(name);
  if (!h) throw Error(make_error_code(errc::unknown_host_or_group), "no host \"" + name + "\" in the deployment's inventory");
  return Host(executor_, h->spec);
}

RayCluster Deployment::ray_cluster() const {
  auto spec = spec_.ray;
  if (spec.runtime == RayRuntimeKind::docker) {
    // As the seed: the model's parent folder at container_root (-v /mnt/Qwen:/models).
    auto path = spec_.model_path();
    auto parent = path.substr(0, path.rfind('/'));
    bool mounted = false;
    for (auto const& v : spec.volumes) mounted = mounted || v.container_path == spec_.model.container_root;
    if (!mounted) spec.volumes.push_back({parent, spec_.model.container_root, false});
  }
  std::vector<RayHost> hosts;
  for (auto const& name : gpu_hosts_) {
    RayHost r{host(name), name == spec_.head, std::nullopt, false};
    if (auto d = declared_gpus(*spec_.inventory.find(name)); d && d->count > 0) {
      r.gpus = d->count;
      r.gpus_simulated = d->simulated;
    }
    hosts.push_back(std::move(r));
  }
  return RayCluster(std::move(spec), std::move(hosts));
}

VllmServe Deployment::engine(unsigned tp, unsigned pp, std::optional<std::uint64_t> max_model_len) const {
  auto spec = spec_.serve;
  spec.name = spec_.name;
  spec.model = spec_.engine_model_path();
  if (spec.served_model_name.empty()) spec.served_model_name = served_name(spec);
  spec.tensor_parallel = tp ? tp : 1;
  spec.pipeline_parallel = pp ? pp : 1;
  if (max_model_len) spec.max_model_len = max_model_len;
  return VllmServe(std::move(spec), ray_cluster());
}

namespace detail {
namespace {

// GCC 12 destroys a brace-initialised temporary argument of a co_await
// expression twice (a crash: "free(): invalid pointer", seen here in the
// layout step): every argument below is a named object.
using asio::awaitable;
using clock_type = std::chrono::steady_clock;
constexpr auto use_awaitable = asio::use_awaitable;

double seconds_between(clock_type::time_point a, clock_type::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void save_record(DeploymentSpec const& spec, DeploymentRecord const& r) {
  auto path = deployment_record_path(spec);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ::chmod(path.parent_path().c_str(), 0700);
  auto tmp = path;
  tmp += ".new";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << r.to_json().dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  }
  fs::rename(tmp, path, ec);
}

/// The run's bookkeeping: the record, the clock, progress lines.
struct Run {
  Deployment const& d;
  DeploymentProgressCallback progress;
  clock_type::time_point t0 = clock_type::now();
  DeploymentRecord record;

  double now() const { return seconds_between(t0, clock_type::now()); }
  void tell(std::string const& step, std::string const& host, std::string const& status, std::string const& message) {
    if (progress) progress(DeploymentProgress{step, host, status, message, now()});
  }
  StepRecord& begin(std::string const& step, std::string const& what) {
    auto* s = record.step(step);
    s->status = "running";
    s->started_s = now();
    s->message = what;
    tell(step, "", "running", what);
    save_record(d.spec(), record);
    return *s;
  }
  /// `ended` < 0: now. A host's own end where the operation says it (its
  /// facts' duration, Ray's join time), so that the record's timeline shows
  /// the hosts of a step running side by side.
  void host_done(StepRecord& s, std::string const& host, std::string const& status, std::string const& message, double started,
                 double ended = -1) {
    s.hosts.push_back({host, status, message, started, ended < 0 ? now() : std::min(ended, now())});
    tell(s.step, host, status, message);
  }
  void end(StepRecord& s, std::string const& status, std::string const& message) {
    s.status = status;
    s.message = message;
    s.ended_s = now();
    tell(s.step, "", status, message);
    save_record(d.spec(), record);
  }
  /// The frame's cancellation state (Ctrl-C in the CLI, a cancelled task in
  /// Python): a step that fails after it was cancelled failed because of it.
  asio::cancellation_state cancel_state;
  bool cancelled() const { return cancel_state.cancelled() != asio::cancellation_type::none; }

  std::pair<std::error_code, DeploymentRecord> fail(StepRecord& s, std::error_code ec, std::string message) {
    if (cancelled()) {
      ec = make_error_code(errc::cancelled);
      message = "stopped (cancelled) while it ran; `up` again resumes from this step" +
                (message.empty() ? std::string() : " (it said: " + message + ")");
    }
    end(s, "failed", message);
    record.status = "failed";
    record.message = s.step + ": " + message;
    record.finished_at = deployment_now_iso();
    record.total_seconds = now();
    save_record(d.spec(), record);
    return {ec ? ec : make_error_code(errc::deployment_failed), record};
  }
  /// Between steps: a cancellation ends the run here, recorded on the step
  /// that would come next, so that the next `up` resumes from it.
  std::optional<std::pair<std::error_code, DeploymentRecord>> stop_before(std::string const& step) {
    if (!cancelled()) return std::nullopt;
    auto& s = *record.step(step);
    s.started_s = now();
    return fail(s, make_error_code(errc::cancelled), "");
  }
};

// One call per host, all at once, each host's end noted on the run's clock:
// the record's timeline shows when each host finished, not the batch's end
// (one call over every host answers only when the slowest is done).
// `op(std::vector<Host>{h})` answers one result for its one host.
template <class Result>
using OneHostOp = std::function<awaitable<std::vector<Result>>(std::vector<Host>)>;

template <class Result>
awaitable<void> one_host(OneHostOp<Result> op, Host host, Run const* run, std::optional<Result>* out, double* ended) {
  std::vector<Host> just_this;  // not a braced list: GCC 12 rejects one in a co_await's operand ("array used as initializer")
  just_this.push_back(std::move(host));
  auto r = co_await op(std::move(just_this));
  *ended = run->now();
  if (!r.empty()) *out = std::move(r.front());
}

template <class Result>
awaitable<std::vector<std::pair<Result, double>>> each_host(Run const& run, std::vector<std::string> const& names, OneHostOp<Result> op) {
  std::vector<std::optional<Result>> got(names.size());
  std::vector<double> ended(names.size(), 0);
  auto const ex = co_await asio::this_coro::executor;
  TaskGroup group(ex);
  for (std::size_t i = 0; i < names.size(); ++i) group.spawn(one_host<Result>(op, run.d.host(names[i]), &run, &got[i], &ended[i]));
  co_await group.join();
  std::vector<std::pair<Result, double>> out;
  for (std::size_t i = 0; i < names.size(); ++i)
    if (got[i]) out.emplace_back(std::move(*got[i]), ended[i]);
  co_return out;
}

// What `up` asks of preflight (and `plan --full` shows the facts script of).
PreflightOptions preflight_options_of(DeploymentSpec const& spec) {
  PreflightOptions o;
  o.probe_nas = false;  // the NAS step mounts and checks it
  o.ray_port = spec.ray.port;
  o.container_runtime = spec.ray.runtime == RayRuntimeKind::docker ? "docker" : "none";
  if (spec.ray.runtime == RayRuntimeKind::docker) o.docker_images = {spec.ray.image};
  o.shm_min_gib = spec.ray.ipc_host || spec.ray.runtime == RayRuntimeKind::bare ? 1 : 10;
  return o;
}

std::vector<InventoryHost> inventory_hosts(DeploymentSpec const& spec, std::vector<std::string> const& names) {
  std::vector<InventoryHost> out;
  for (auto const& n : names) out.push_back(*spec.inventory.find(n));
  return out;
}

std::vector<std::string> all_hosts(Deployment const& d) {
  auto hosts = d.gpu_hosts();
  if (!d.download_host().empty() && std::find(hosts.begin(), hosts.end(), d.download_host()) == hosts.end())
    hosts.push_back(d.download_host());
  return hosts;
}

std::vector<Host> handles(Deployment const& d, std::vector<std::string> const& names) {
  std::vector<Host> out;
  for (auto const& n : names) out.push_back(d.host(n));
  return out;
}

ModelStore store_of(DeploymentSpec const& spec) {
  ModelStoreSpec s;
  s.root = spec.model.root.empty() ? (spec.nas ? spec.nas->mount_point : std::string("/mnt")) : spec.model.root;
  return ModelStore(s);
}

/// The GPUs each GPU host has: the facts' (real) or the inventory's
/// declaration (simulated in the lab).
GpuInventory gpu_inventory(Deployment const& d, std::vector<HostFactsOutcome> const& facts) {
  GpuInventory inv;
  for (auto const& name : d.gpu_hosts()) {
    GpuNode node;
    node.name = name;
    for (auto const& f : facts)
      if (f.host == name && !f.facts.gpus.empty()) {
        node.gpu_count = static_cast<unsigned>(f.facts.gpus.size());
        node.gpu_model = f.facts.gpus.front().name;
        node.memory_bytes = f.facts.gpus.front().memory_total_bytes;
        node.memory_source = f.facts.gpus_simulated ? "declared in the inventory (SIMULATED)" : "nvidia-smi";
      }
    if (node.gpu_count == 0)
      if (auto declared = declared_gpu_node(*d.spec().inventory.find(name))) node = std::move(*declared);
    if (node.gpu_count > 0) inv.nodes.push_back(node);
  }
  return inv;
}

// The GPU hosts' inventory when every one's GPUs are known (declared or
// found), else nullopt: a total without one host would be too low.
std::optional<GpuInventory> every_gpu_host(Deployment const& d, std::vector<HostFactsOutcome> const& facts) {
  auto gpus = gpu_inventory(d, facts);
  if (gpus.nodes.size() != d.gpu_hosts().size()) return std::nullopt;
  return gpus;
}

bool every_memory_known(GpuInventory const& gpus) {
  return std::none_of(gpus.nodes.begin(), gpus.nodes.end(), [](GpuNode const& n) { return n.memory_bytes == 0; });
}

PlanOptions plan_options(DeploymentSpec const& spec) {
  PlanOptions po;
  if (spec.serve.gpu_memory_utilization) po.gpu_memory_utilization = *spec.serve.gpu_memory_utilization;
  if (spec.serve.max_model_len) po.max_model_len = spec.serve.max_model_len;
  return po;
}

// Both checks that need no model on disk: the GPU count, and for a model
// clusterkit ships the config of, the memory. "" when neither refuses or
// a GPU host's GPUs are not known yet.
std::string early_refusal(Deployment const& d, std::vector<HostFactsOutcome> const& facts) {
  auto const& spec = d.spec();
  auto gpus = every_gpu_host(d, facts);
  if (!gpus) return {};
  if (auto why = layout_count_refusal(spec.serve.tensor_parallel, spec.serve.pipeline_parallel, *gpus); !why.empty()) return why;
  try {
    return known_model_fit_refusal(spec.model.id, spec.serve.tensor_parallel, spec.serve.pipeline_parallel, *gpus, plan_options(spec));
  } catch (Error const&) {
    return {};  // a config the estimate cannot describe: the layout step plans from the real headers
  }
}

// The planner's memory check before a hub download's weights: the hub's
// own config.json first (a few KB, into the download folder, where the
// whole download later finds it), then the layout on these GPUs. Why it
// cannot run, or "" when it fits, or when it cannot be told (GPUs not all
// known, no config.json, a config the estimate cannot describe): the
// layout step checks again from the real headers.
awaitable<std::string> hub_config_refusal(Deployment const& d, ModelStore const& store, Host host, DownloadSpec ds,
                                          std::vector<HostFactsOutcome> const& facts) {
  auto const& spec = d.spec();
  auto gpus = every_gpu_host(d, facts);
  if (!gpus || !every_memory_known(*gpus)) co_return std::string();
  ds.include = {"config.json"};
  ds.exclude.clear();
  ds.verify = false;
  ds.attempts = 1;  // a hub that does not answer: the whole download retries, and says why
  ds.timeout = std::chrono::seconds(300);
  ProgressCallback quiet;
  auto [ec, got] = co_await store.async_download(host, ds, quiet, asio::as_tuple(use_awaitable));
  if (ec) co_return std::string();  // the whole download says what is wrong
  RunOptions ro;
  ro.timeout = std::chrono::seconds(30);
  auto [rec, r] = co_await host.async_run(Command::shell("head -c 1048576 " + shell::quote(ds.local_dir + "/config.json")), ro,
                                          asio::as_tuple(use_awaitable));
  if (rec || r.exit_code != 0) co_return std::string();
  std::optional<Plan> plan;
  try {
    auto facts_m = model_facts_from_config(json::parse(r.stdout_text), spec.model.id + " config.json from the hub");
    // A quantized checkpoint (AWQ, GPTQ, FP8) is smaller than its config's
    // dtype says, and the estimate cannot tell by how much: no refusal.
    if (facts_m.quantized) co_return std::string();
    estimate_tensors_from_config(facts_m);
    plan = plan_deployment(facts_m, *gpus, plan_options(spec));
    plan->model = spec.model.id;
  } catch (std::exception const&) {
    // Not JSON, or a config the estimate cannot describe (MoE, MLA): the
    // whole download's check and the layout step say what they find.
    co_return std::string();
  }
  try {
    (void)choose_layout(*plan, spec.serve.tensor_parallel, spec.serve.pipeline_parallel);
  } catch (Error const& e) {
    co_return std::string(e.what()) + " (planned from the hub's config.json, tensor sizes estimated, before the weights' "
                                      "download: only config.json was fetched, into " + ds.local_dir + " on " + host.name() + ")";
  }
  co_return std::string();
}

struct BenchFigures {
  unsigned ok = 0, failed = 0;
  double seconds = 0;
  std::vector<double> ttft_ms;
  std::uint64_t output_tokens = 0;
  std::string first_error;
};

/// "19/20 ok, 1.23 req/s, ..." (outside the coroutine: GCC 12 refuses a
/// local array in a coroutine frame).
std::string bench_line(json const& b) {
  char line[160];
  std::snprintf(line, sizeof line, "%d/%d ok, %.2f req/s, %.1f output tok/s, TTFT p50 %.0f ms", b.value("ok", 0), b.value("requests", 0),
                b.value("requests_per_second", 0.0), b.value("output_tokens_per_second", 0.0), b.value("ttft_p50_ms", 0.0));
  return line;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

/// A short load: `requests` streamed chats, `concurrency` at once.
awaitable<BenchFigures> short_bench(OpenAIClient client, std::string model, DeploymentChecks checks) {
  BenchFigures b;
  std::string prompt;
  for (unsigned i = 0; i < checks.bench_prompt_words; ++i) prompt += (i ? " " : "") + std::string(i % 2 ? "cluster" : "model");
  auto t0 = clock_type::now();
  unsigned next = 0;
  auto worker = [&]() -> awaitable<void> {
    // Each worker's own cancellation state (TaskGroup forwards the frame's):
    // a cancelled request must not be followed by the next one.
    while (next < checks.bench_requests && !co_await was_cancelled()) {
      ++next;
      auto req = ChatRequest::simple(model, prompt);
      req.max_tokens = checks.bench_max_tokens;
      req.extra["ignore_eos"] = true;
      ChunkCallback ignore_chunks = [](StreamChunk const&) {};
      auto [ec, r] = co_await client.async_chat_stream(req, ignore_chunks, asio::as_tuple(use_awaitable));
      if (ec) {
        ++b.failed;
        if (b.first_error.empty()) b.first_error = r.meta.message.empty() ? ec.message() : r.meta.message;
        continue;
      }
      ++b.ok;
      b.ttft_ms.push_back(std::chrono::duration<double, std::milli>(r.time_to_first_token).count());
      if (r.usage) b.output_tokens += static_cast<std::uint64_t>(r.usage->completion_tokens);
    }
  };
  // The workers run at once on this coroutine's strand (they share `next`
  // and `b` safely).
  TaskGroup workers(co_await asio::this_coro::executor);
  for (unsigned i = 0, n = std::max(1u, checks.bench_concurrency); i < n; ++i) workers.spawn(worker());
  co_await workers.join();
  b.seconds = seconds_between(t0, clock_type::now());
  co_return b;
}

awaitable<DeploymentStatus> look(Deployment d, unsigned tp, unsigned pp);

awaitable<std::pair<std::error_code, DeploymentRecord>> up(Deployment d, DeploymentProgressCallback progress) {
  co_await accept_every_cancellation();
  auto const& spec = d.spec();
  Run run{d, std::move(progress)};
  run.cancel_state = co_await asio::this_coro::cancellation_state;
  auto& rec = run.record;
  rec.name = spec.name;
  rec.spec_file = spec.source;
  rec.spec_fingerprint = spec.fingerprint();
  rec.started_at = deployment_now_iso();
  for (auto const& s : deployment_steps()) rec.steps.push_back(StepRecord{s});
  for (auto const& name : d.gpu_hosts())
    if (auto dg = declared_gpus(*spec.inventory.find(name)); dg && dg->simulated) {
      rec.simulated.push_back("GPUs: the inventory declares " + std::to_string(dg->count) + " per GPU host; Ray gets them as "
                              "logical GPUs and vLLM's CPU build runs on them (lab-only patch); no device is used");
      break;
    }

  // --- A healthy deployment of this very spec: a quick look, and done.
  if (auto prev = load_deployment_record(spec); prev && prev->status == "up" && prev->spec_fingerprint == rec.spec_fingerprint) {
    auto st = co_await look(d, prev->layout.value("tp", 1u), prev->layout.value("pp", 1u));
    if (st.state == "up") {
      DeploymentRecord r = *prev;
      r.message = "already up (checked in " + std::to_string(static_cast<int>(run.now() * 1000)) + " ms: " +
                  (spec.nas ? "the NAS shared, " : "") + "the model whole on every GPU host, Ray healthy, the engine serves)";
      run.tell("up", "", "ok", r.message);
      co_return std::pair{std::error_code(), std::move(r)};
    }
    run.tell("up", "", "running",
             "the last run left it up, but now: " + st.state + (st.problems.empty() ? "" : " (" + st.problems.front() + ")") + "; converging");
  }
  if (auto stop = run.stop_before("preflight")) co_return std::move(*stop);
  rec.status = "running";
  save_record(spec, rec);
  auto hosts = all_hosts(d);

  // --- 1. preflight
  std::vector<HostFactsOutcome> facts;
  {
    auto& s = run.begin("preflight", "every check that can fail a multi-node deployment, on " + std::to_string(hosts.size()) + " hosts");
    // A layout asking for more GPUs than there are fails whatever the
    // model: said before anything starts (not after a download of hours),
    // from the inventory's GPUs, and again below from the hosts' own.
    if (auto why = early_refusal(d, {}); !why.empty())
      co_return run.fail(s, make_error_code(errc::invalid_argument), why + "; nothing was started");
    if (!spec.checks.preflight) {
      run.end(s, "skipped", "checks.preflight is false");
    } else {
      auto o = preflight_options_of(spec);
      // Resuming: this deployment's own Ray holds its ports; probing them
      // would report them taken.
      auto [rec_ec, ray_now] = co_await d.ray_cluster().async_status(asio::as_tuple(use_awaitable));
      bool ours_up = false;
      for (auto const& h : ray_now.hosts) ours_up = ours_up || h.runtime_state == "running";
      if (ours_up) {
        o.probe_ports = false;
        s.detail["ports"] = "not probed: this deployment's Ray is running and holds them";
      }
      auto pre = co_await async_preflight(d.get_executor(), inventory_hosts(spec, hosts), o, use_awaitable);
      facts = pre.facts;
      s.detail = {{"passed", pre.report.count(CheckStatus::pass)}, {"failed", pre.report.count(CheckStatus::fail)},
                  {"warnings", pre.report.count(CheckStatus::warn)}};
      for (auto const& f : facts) {
        if (f.facts.python) {
          rec.versions["python"] = f.facts.python->version;
          if (auto v = f.facts.python->package("ray"); !v.empty()) rec.versions["ray"] = v;
        }
        if (f.facts.nvidia) {
          rec.versions["driver"] = f.facts.nvidia->driver_version;
          rec.versions["cuda"] = f.facts.nvidia->cuda_version;
        }
      }
      // The image's ID on every GPU host (the content digest of the image
      // the containers run): one value, or each host's when they differ.
      if (spec.ray.runtime == RayRuntimeKind::docker) {
        std::map<std::string, std::string> ids;
        for (auto const& f : facts)
          if (f.facts.docker && std::count(d.gpu_hosts().begin(), d.gpu_hosts().end(), f.host))
            if (auto i = f.facts.docker->images.find(spec.ray.image); i != f.facts.docker->images.end() && !i->second.empty())
              ids[f.host] = i->second;
        rec.versions["image"] = spec.ray.image;
        std::set<std::string> distinct;
        for (auto const& [h, id] : ids) distinct.insert(id);
        if (distinct.size() == 1) {
          rec.versions["image_id"] = *distinct.begin();
        } else if (distinct.size() > 1) {
          std::string each;
          for (auto const& [h, id] : ids) each += (each.empty() ? "" : ", ") + h + "=" + id;
          rec.versions["image_id"] = "differs between hosts: " + each;
        }
      }
      std::vector<std::string> failures;
      for (auto const& c : pre.report.results)
        if (c.status == CheckStatus::fail) failures.push_back(c.host + " " + c.check + ": " + c.message + (c.fix.empty() ? "" : " (fix: " + c.fix + ")"));
      for (auto const& h : hosts) {
        std::size_t bad = 0;
        for (auto const& c : pre.report.results) bad += c.host == h && c.status == CheckStatus::fail;
        double ended = -1;  // the host's facts: its own part of the step
        for (auto const& f : facts)
          if (f.host == h && f.duration.count() > 0) ended = s.started_s + std::chrono::duration<double>(f.duration).count();
        run.host_done(s, h, bad ? "failed" : "ok", bad ? std::to_string(bad) + " checks failed" : "all checks passed", s.started_s, ended);
      }
      if (!failures.empty()) co_return run.fail(s, make_error_code(errc::deployment_failed), join(failures, "; "));
      if (auto why = early_refusal(d, facts); !why.empty())
        co_return run.fail(s, make_error_code(errc::invalid_argument), why + "; nothing was started");
      run.end(s, "ok", std::to_string(pre.report.count(CheckStatus::pass)) + " checks passed, " +
                           std::to_string(pre.report.count(CheckStatus::warn)) + " warnings");
    }
  }

  if (auto stop = run.stop_before("nas")) co_return std::move(*stop);

  // --- 2. nas
  if (spec.nas) {
    auto& s = run.begin("nas", spec.nas->source + " at " + spec.nas->mount_point + " on every host");
    NasMount nas(*spec.nas);
    // Named, not a temporary in the co_await's operand: GCC 12 destroys such
    // a temporary twice (a double free of the NasSpec inside was seen).
    OneHostOp<MountOutcome> const mount_one = [nas](std::vector<Host> h) -> awaitable<std::vector<MountOutcome>> {
      return nas.async_mount(std::move(h), use_awaitable);
    };
    auto outcomes = co_await each_host<MountOutcome>(run, hosts, mount_one);
    std::vector<std::string> failed;
    for (auto const& [o, ended] : outcomes) {
      run.host_done(s, o.host, o.ok() ? (o.action == "keep" ? "skipped" : "ok") : "failed", o.message, s.started_s, ended);
      if (!o.ok()) failed.push_back(o.message);
    }
    if (!failed.empty()) co_return run.fail(s, make_error_code(errc::mount_failed), join(failed, "; "));
    auto check = co_await nas.async_check(handles(d, hosts), use_awaitable);
    if (!check.ok()) {
      std::vector<std::string> why = check.problems;
      for (auto const& h : check.hosts)
        if (!h.problem.empty()) why.push_back(h.problem);
      co_return run.fail(s, make_error_code(errc::mount_failed), "the hosts do not share " + spec.nas->mount_point + ": " + join(why, "; "));
    }
    run.end(s, "ok", "every host sees the same folder at " + spec.nas->mount_point);
  } else {
    run.end(run.begin("nas", "no NAS in the spec or the inventory"), "skipped", "no NAS: the model must be at the same path on every host");
  }

  if (auto stop = run.stop_before("model")) co_return std::move(*stop);

  // Ray starts while the model is found or copied (a 145 GB copy takes
  // long; Ray is ready by then); the NAS is mounted already, so the
  // containers' model volume is the NAS's folder. Both must end before up
  // goes on, or returns.
  struct Failure {
    StepRecord* step;
    std::error_code ec;
    std::string message;
  };
  double ray_own = 0;
  bool ray_replaced = false;
  auto cluster = d.ray_cluster();
  auto ray_step = [&]() -> awaitable<std::optional<Failure>> {
  // --- 6. ray
  {
    auto& s = run.begin("ray", std::string(to_string(spec.ray.runtime)) + ": head " + spec.head + ", " +
                                   std::to_string(d.gpu_hosts().size() - 1) + " workers");
    auto [ec, r] = co_await cluster.async_up(
        [&](RayProgress const& p) { run.tell("ray", "", p.phase, p.message); }, asio::as_tuple(use_awaitable));
    for (auto const& n : r.nodes) {
      // The node's own times from the start of Ray's up: probed, started, seen alive.
      double const own_ms = n.joined_ms > 0 ? n.joined_ms : n.started_ms > 0 ? n.started_ms : n.probed_ms;
      run.host_done(s, n.host, n.error ? "failed" : n.action == RayNodeAction::keep ? "skipped" : "ok", n.message, s.started_s,
                    own_ms > 0 ? s.started_s + own_ms / 1000 : -1);
      ray_replaced = ray_replaced || n.action == RayNodeAction::replace;
      ray_own = std::max(ray_own, n.started_ms / 1000.0);
    }
    for (auto const& p : r.plans) rec.node_env[p.host] = p.env;
    if (ec) co_return Failure{&s, ec, r.message};
    if (!r.status.ray_version.empty()) rec.versions["ray"] = r.status.ray_version;
    if (spec.ray.runtime == RayRuntimeKind::docker) {
      // The registry digest a team re-pulls the same image by (the image ID
      // above says which image ran; a locally built one has no digest).
      RunOptions ro;
      ro.timeout = std::chrono::seconds(30);
      auto [dec, dr] = co_await d.host(spec.head).async_run(
          Command::shell("docker image inspect --format '{{json .RepoDigests}}' -- " + shell::quote(spec.ray.image)), ro,
          asio::as_tuple(use_awaitable));
      std::vector<std::string> digests;
      if (!dec && dr.exit_code == 0) {
        auto const j = json::parse(dr.stdout_text, nullptr, false);
        if (j.is_array())
          for (auto const& x : j)
            if (x.is_string()) digests.push_back(x.get<std::string>());
        rec.versions["image_digest"] = digests.empty() ? "none: a local image, never pulled from a registry (image_id identifies it)" : join(digests, ", ");
      }
    }
    s.detail = r.to_json();
    run.end(s, "ok", r.message);
  }

    co_return std::nullopt;
  };
  std::optional<Failure> ray_failure;
  TaskGroup ray_beside(co_await asio::this_coro::executor);
  auto ray_task = [&]() -> awaitable<void> {
    try {
      ray_failure = co_await ray_step();
    } catch (std::exception const& e) {
      ray_failure = Failure{rec.step("ray"), make_error_code(errc::ray_failed), e.what()};
    }
  };
  ray_beside.spawn(ray_task());

  unsigned tp = spec.serve.tensor_parallel, pp = spec.serve.pipeline_parallel;
  std::optional<std::uint64_t> max_len = spec.serve.max_model_len;
  auto store = store_of(spec);
  auto const path = spec.model_path();
  double data_seconds = 0;
  auto const source_host = d.download_host().empty() ? spec.head : d.download_host();
  auto model_chain = [&]() -> awaitable<std::optional<Failure>> {
  // --- 3. model: on the NAS and whole, or downloaded and copied in
  {
    auto& s = run.begin("model", spec.model.id + " at " + path);
    RemoteVerifyOptions vo;
    std::vector<std::string> const source_only{source_host};
    auto found = co_await store.async_verify(handles(d, source_only), path, vo, use_awaitable);
    // A cancellation reaches the operation in flight once; later ones (a
    // download of hours) must not start: checked after each.
    if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
    if (!found.empty() && found.front().ok()) {
      run.host_done(s, source_host, "skipped", "complete on the NAS already", s.started_s);
      run.end(s, "skipped", "found on the NAS, complete");
    } else {
      if (spec.model.hub != "none") {
        DownloadSpec ds;
        ds.model_id = spec.model.id;
        ds.hub = spec.model.hub == "hf" ? Hub::huggingface : Hub::modelscope;
        ds.revision = spec.model.revision;
        ds.endpoint = spec.model.endpoint;
        ds.local_dir = spec.model.download_dir;
        if (!spec.model.token_env.empty())
          if (char const* t = std::getenv(spec.model.token_env.c_str())) ds.token = t;
        {
          run.tell("model", source_host, "download", "config.json first: sizing the model on the GPUs before its weights");
          auto t = clock_type::now();
          auto why = co_await hub_config_refusal(d, store, d.host(source_host), ds, facts);
          data_seconds += seconds_between(t, clock_type::now());
          if (!why.empty()) co_return Failure{&s, make_error_code(errc::invalid_argument), why};
          if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
        }
        double last = -10;
        auto t = clock_type::now();
        auto [ec, got] = co_await store.async_download(d.host(source_host), ds,
                                                       [&](TransferProgress const& p) {
                                                         if (run.now() - last < 2) return;
                                                         last = run.now();
                                                         run.tell("model", source_host, "download",
                                                                  format_bytes(p.bytes_done) + " of " + format_bytes(p.bytes_total) + ", " +
                                                                      std::to_string(p.files_done) + "/" + std::to_string(p.files_total) + " files");
                                                       },
                                                       asio::as_tuple(use_awaitable));
        data_seconds += seconds_between(t, clock_type::now());
        if (ec) co_return Failure{&s, ec, got.message};
        run.host_done(s, source_host, "ok", got.message, s.started_s);
        if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
      }
      SyncSpec ss;
      ss.source = spec.model.download_dir;
      ss.destination = path;
      ss.streams = static_cast<int>(spec.model.sync_streams);
      auto t = clock_type::now();
      ProgressCallback no_progress;
      auto [ec, copied] = co_await store.async_sync(d.host(source_host), ss, no_progress, asio::as_tuple(use_awaitable));
      data_seconds += seconds_between(t, clock_type::now());
      if (ec) co_return Failure{&s, ec, copied.message};
      run.host_done(s, source_host, "ok", copied.message, s.started_s);
      run.end(s, "ok", copied.message);
    }
  }

  // --- 4. verify from every GPU host, as the engine will see it
  {
    auto& s = run.begin("verify", "the model from " + std::to_string(d.gpu_hosts().size()) + " GPU hosts");
    RemoteVerifyOptions vo;
    vo.container_path = spec.ray.runtime == RayRuntimeKind::docker ? spec.engine_model_path() : "";
    auto verify_each = [&]() {
      return each_host<HostVerify>(run, d.gpu_hosts(), [store, path, vo](std::vector<Host> h) -> awaitable<std::vector<HostVerify>> {
        return store.async_verify(std::move(h), path, vo, use_awaitable);
      });
    };
    auto seen = co_await verify_each();
    if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
    bool all_ok = std::all_of(seen.begin(), seen.end(), [](auto const& v) { return v.first.ok(); });
    if (!all_ok && !d.download_host().empty()) {
      // One repair: copy again from the download host (rsync only moves
      // what differs), then look again.
      run.tell("verify", "", "repair", "a GPU host sees the model incomplete; syncing again from " + source_host);
      SyncSpec ss;
      ss.source = spec.model.download_dir;
      ss.destination = path;
      ss.streams = static_cast<int>(spec.model.sync_streams);
      ss.checksum = true;
      auto t = clock_type::now();
      ProgressCallback no_progress;
      auto [ec, copied] = co_await store.async_sync(d.host(source_host), ss, no_progress, asio::as_tuple(use_awaitable));
      data_seconds += seconds_between(t, clock_type::now());
      if (!ec) s.detail["repaired"] = copied.message;
      if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
      seen = co_await verify_each();
    }
    std::vector<std::string> bad;
    for (auto const& [v, ended] : seen) {
      run.host_done(s, v.host, v.ok() ? "ok" : "failed", v.ok() ? "sees it whole at " + (v.container_path.empty() ? v.dir : v.container_path) : v.message,
                    s.started_s, ended);
      if (!v.ok()) bad.push_back(v.message);
    }
    if (!bad.empty()) co_return Failure{&s, make_error_code(errc::model_incomplete), join(bad, "; ")};
    run.end(s, "ok", "every GPU host sees it whole");
  }

  // --- 5. layout, from the model's own headers on the NAS
  {
    auto& s = run.begin("layout", "the planner on " + std::to_string(d.gpu_hosts().size()) + " GPU hosts");
    auto head = d.host(spec.head);
    RunOptions ro;
    ro.timeout = std::chrono::seconds(120);
    auto [ec, r] = co_await head.async_run(Command::shell(model_snapshot_script(path)), ro, asio::as_tuple(use_awaitable));
    if (run.cancelled()) co_return Failure{&s, make_error_code(errc::cancelled), ""};
    if (ec || r.exit_code != 0) co_return Failure{&s, ec, "cannot read the model's headers on " + spec.head + ": " + failure_of(HostOutcome{spec.head, ec, r})};
    try {
      auto facts_m = inspect_snapshot(parse_model_snapshot(r.stdout_text));
      auto gpus = gpu_inventory(d, facts);
      if (gpus.nodes.empty()) co_return Failure{&s, make_error_code(errc::invalid_argument), "no GPUs on the GPU hosts (declare them in the inventory's gpus:)"};
      auto po = plan_options(spec);
      if (max_len) po.max_model_len = max_len;
      auto plan = plan_deployment(facts_m, gpus, po);
      plan.model = spec.model.id;
      auto const chosen_layout = choose_layout(plan, tp, pp);
      auto const* chosen = &chosen_layout;
      tp = chosen->tp;
      pp = chosen->pp;
      if (!max_len && spec.max_model_len_auto) max_len = plan.max_model_len;
      rec.layout = {{"tp", tp}, {"pp", pp}, {"max_model_len", max_len ? json(*max_len) : json(nullptr)},
                    {"kv_cache_tokens", chosen->kv_cache_tokens}, {"gpus", gpus.describe()}, {"vllm_args", chosen->vllm_args},
                    {"weight_bytes_per_gpu", chosen->weight_bytes_per_gpu}};
      run.end(s, "ok", "TP " + std::to_string(tp) + " x PP " + std::to_string(pp) + " on " + gpus.describe() + ", " +
                           std::to_string(chosen->kv_cache_tokens) + " KV tokens");
    } catch (Error const& e) {
      co_return Failure{&s, e.code(), e.what()};
    }
  }

    co_return std::nullopt;
  };
  // Ray's task uses this frame's locals: it must end before the frame does,
  // also when the chain throws (a C++ exception, not a failed step).
  std::optional<Failure> chain_failure;
  std::exception_ptr chain_exception;
  try {
    chain_failure = co_await model_chain();
  } catch (...) {
    chain_exception = std::current_exception();
    ray_beside.cancel();
  }
  co_await ray_beside.join();
  if (chain_exception) std::rethrow_exception(chain_exception);
  if (chain_failure && ray_failure) {
    // Both branches failed (a host lost is seen by both): record each
    // step as failed, and name both in the one error.
    run.end(*ray_failure->step, "failed", ray_failure->message);
    co_return run.fail(*chain_failure->step, chain_failure->ec,
                       chain_failure->message + "; and " + ray_failure->step->step + ": " + ray_failure->message);
  }
  if (chain_failure) co_return run.fail(*chain_failure->step, chain_failure->ec, chain_failure->message);
  if (ray_failure) co_return run.fail(*ray_failure->step, ray_failure->ec, ray_failure->message);
  if (auto stop = run.stop_before("serve")) co_return std::move(*stop);

  // --- 7. serve
  double engine_start = 0;
  // The engine's answers to clusterkit's checks (readiness, smoke test,
  // benchmark): its own work, left out of clusterkit's own time.
  double measured = 0;
  auto engine = d.engine(tp, pp, max_len);
  {
    auto& s = run.begin("serve", "vllm serve " + engine.spec().model + " (TP " + std::to_string(tp) + " x PP " + std::to_string(pp) + ") on " + spec.head);
    if (ray_replaced) {
      // The engine's workers went with the replaced nodes: restart it.
      auto [dec, dr] = co_await engine.async_down(asio::as_tuple(use_awaitable));
      if (!dec) run.tell("serve", spec.head, "restart", "Ray nodes were replaced; stopped the engine (" + dr.stopped + ")");
    }
    if (run.cancelled()) co_return run.fail(s, make_error_code(errc::cancelled), "");
    auto [ec, launched] = co_await engine.async_up(asio::as_tuple(use_awaitable));
    if (ec) co_return run.fail(s, ec, launched.message);
    if (run.cancelled()) co_return run.fail(s, make_error_code(errc::cancelled), "the engine was launched (`clusterkit down` stops it)");
    run.tell("serve", spec.head, launched.action, launched.message);
    auto [wec, ready] = co_await engine.async_wait_ready(
        [&](VllmProgress const& p) { run.tell("serve", spec.head, p.phase, p.message.substr(0, 160)); }, asio::as_tuple(use_awaitable));
    if (wec) co_return run.fail(s, wec, ready.message);
    engine_start = launched.action == "launched" ? ready.engine_start_seconds : 0;
    measured += ready.answer_seconds;
    rec.endpoint = ready.endpoint;
    rec.served_model_name = ready.served_model_name;
    rec.api_key_file = launched.api_key_file;
    if (!ready.log.version.empty()) rec.versions["vllm"] = ready.log.version;
    s.detail = ready.to_json();
    s.detail["argv"] = launched.argv;
    // The engine's environment as set (the API key is in a 0600 file, never
    // in the environment or the record); a value whose name says it is a
    // secret (token, key, secret, password) is kept out too.
    json env = json::object();
    for (auto const& [k, v] : engine.spec().env) {
      auto const low = detail::lower(k);
      bool const secret = low.find("token") != std::string::npos || low.find("key") != std::string::npos ||
                          low.find("secret") != std::string::npos || low.find("passw") != std::string::npos;
      env[k] = secret ? json("(hidden: a secret)") : json(v);
    }
    s.detail["env"] = std::move(env);
    run.host_done(s, spec.head, "ok", ready.message, s.started_s);
    run.end(s, "ok", ready.message);
  }

  // --- 8. smoke and 9. bench, through the client the users have
  if (auto stop = run.stop_before("smoke")) co_return std::move(*stop);
  auto ex = co_await asio::this_coro::executor;
  ClientOptions co;
  co.base_url = rec.endpoint;
  co.api_key = engine.api_key();  // loaded or made by the serve step
  co.proxy_from_environment = false;
  co.first_token_timeout = std::chrono::milliseconds(120000);
  OpenAIClient client(ex, co);
  {
    auto& s = run.begin("smoke", "one streamed answer from " + rec.endpoint);
    if (!spec.checks.smoke) {
      run.end(s, "skipped", "checks.smoke is false");
    } else {
      auto req = ChatRequest::simple(rec.served_model_name, "Who are you?");
      req.max_tokens = 32;
      auto t = clock_type::now();
      ChunkCallback ignore_chunks = [](StreamChunk const&) {};
      auto [ec, r] = co_await client.async_chat_stream(req, ignore_chunks, asio::as_tuple(use_awaitable));
      measured += seconds_between(t, clock_type::now());
      if (ec || r.content_chunks == 0) co_return run.fail(s, ec, r.meta.message.empty() ? "no token came back" : r.meta.message);
      rec.smoke = {{"ok", true}, {"ttft_ms", std::chrono::duration<double, std::milli>(r.time_to_first_token).count()},
                   {"chunks", r.content_chunks}, {"text", r.text.substr(0, 200)},
                   {"completion_tokens", r.usage ? r.usage->completion_tokens : 0}};
      run.end(s, "ok", std::to_string(r.content_chunks) + " tokens streamed, first after " +
                           std::to_string(static_cast<int>(rec.smoke["ttft_ms"].get<double>())) + " ms");
    }
  }
  if (auto stop = run.stop_before("bench")) co_return std::move(*stop);
  {
    auto& s = run.begin("bench", std::to_string(spec.checks.bench_requests) + " requests, " +
                                     std::to_string(spec.checks.bench_concurrency) + " at once");
    if (spec.checks.bench_requests == 0) {
      run.end(s, "skipped", "checks.bench is off");
    } else {
      auto b = co_await short_bench(client, rec.served_model_name, spec.checks);
      measured += b.seconds;
      if (run.cancelled()) co_return run.fail(s, make_error_code(errc::cancelled), "");
      rec.bench = {{"requests", b.ok + b.failed}, {"ok", b.ok}, {"failed", b.failed}, {"seconds", b.seconds},
                   {"requests_per_second", b.seconds > 0 ? b.ok / b.seconds : 0},
                   {"output_tokens_per_second", b.seconds > 0 ? static_cast<double>(b.output_tokens) / b.seconds : 0},
                   {"ttft_p50_ms", percentile(b.ttft_ms, 50)}, {"ttft_p90_ms", percentile(b.ttft_ms, 90)},
                   {"concurrency", spec.checks.bench_concurrency}, {"max_tokens", spec.checks.bench_max_tokens},
                   {"first_error", b.first_error}};
      if (b.ok == 0) co_return run.fail(s, make_error_code(errc::engine_failed), "every benchmark request failed: " + b.first_error);
      run.end(s, "ok", bench_line(rec.bench));
    }
  }

  rec.status = "up";
  rec.finished_at = deployment_now_iso();
  rec.total_seconds = run.now();
  // clusterkit's own part: everything but the components' own work (the
  // engine's start, Ray's start, the data copy) and the measurements.
  // Ray's start and the data copy ran side by side: the longer one counts.
  rec.own_seconds = std::max(0.0, rec.total_seconds - engine_start - std::max(ray_own, data_seconds) - measured);
  rec.own_breakdown = {{"total", rec.total_seconds}, {"engine_start", engine_start}, {"ray_start", ray_own},
                       {"data_copy", data_seconds}, {"engine_answers", measured}, {"own", rec.own_seconds}};
  rec.message = "serving " + rec.served_model_name + " at " + rec.endpoint;
  save_record(spec, rec);
  co_return std::pair{std::error_code(), rec};
}

// Every layer at once (the NAS shared, the model whole from every GPU host,
// the engine, and Ray through the engine's look): what `status` says, and
// the quick look of `up` on a running deployment, which must also see a NAS
// unmounted or a shard cut under a healthy engine.
awaitable<DeploymentStatus> look(Deployment d, unsigned tp, unsigned pp) {
  DeploymentStatus st;
  st.name = d.spec().name;
  auto hosts = all_hosts(d);
  auto ex = co_await asio::this_coro::executor;
  std::optional<NasCheckReport> nas_seen;
  auto look_at_nas = [&]() -> awaitable<void> {
    NasMount nas(*d.spec().nas);
    nas_seen = co_await nas.async_check(handles(d, hosts), use_awaitable);
  };
  // The hosts first in what is said: one that does not answer explains
  // every other layer's failure there. A tiny read over the shared
  // connection (the other looks reuse it), all hosts at once.
  st.hosts.resize(hosts.size());
  auto look_at_host = [&](std::size_t i) -> awaitable<void> {
    auto& seen = st.hosts[i];
    seen.host = hosts[i];
    if (seen.host == d.spec().head) seen.roles.push_back("head");
    else if (std::find(d.gpu_hosts().begin(), d.gpu_hosts().end(), seen.host) != d.gpu_hosts().end()) seen.roles.push_back("worker");
    if (seen.host == d.download_host()) seen.roles.push_back("download");
    RunOptions ro;
    ro.timeout = std::chrono::seconds(30);
    auto const t0 = std::chrono::steady_clock::now();
    auto [ec, r] = co_await d.host(seen.host).async_run(Command::shell("cat /proc/uptime /proc/loadavg"), ro, asio::as_tuple(use_awaitable));
    if (ec) {
      seen.message = r.message.empty() ? ec.message() : r.message;
      co_return;
    }
    seen.reachable = true;
    seen.answer_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)parse_host_probe(r.stdout_text, seen);  // a host without /proc answers all the same
  };
  auto look_at_model = [&]() -> awaitable<void> {
    RemoteVerifyOptions vo;
    st.model = co_await store_of(d.spec()).async_verify(handles(d, d.gpu_hosts()), d.spec().model_path(), vo, use_awaitable);
  };
  // Beside the engine's look; they write this frame's locals, joined
  // before they are read.
  TaskGroup beside(ex);
  for (std::size_t i = 0; i < hosts.size(); ++i) beside.spawn(look_at_host(i));
  if (d.spec().nas) beside.spawn(look_at_nas());
  beside.spawn(look_at_model());
  auto engine = d.engine(tp, pp, std::nullopt);
  auto [eec, es] = co_await engine.async_status(asio::as_tuple(use_awaitable));
  co_await beside.join();
  for (auto const& h : st.hosts)
    if (!h.reachable) st.problems.push_back(h.host + " does not answer: " + h.message);
  if (nas_seen) {
    st.nas = std::move(nas_seen);
    if (!st.nas->ok()) st.problems.push_back("the NAS is not shared by every host at " + d.spec().nas->mount_point);
  }
  for (auto const& m : st.model)
    if (!m.ok()) st.problems.push_back(m.message);
  st.engine = es;
  st.ray = es.ray;
  if (!st.ray) {
    auto [rec, rs] = co_await d.ray_cluster().async_status(asio::as_tuple(use_awaitable));
    st.ray = rs;
  }
  for (auto const& p : es.problems) st.problems.push_back(p);
  if (st.ray && !st.ray->healthy)
    for (auto const& p : st.ray->problems) st.problems.push_back("ray: " + p);
  if (es.state == "up" && st.problems.empty()) st.state = "up";
  else if (es.state == "up" || es.state == "DEGRADED" || (st.ray && st.ray->alive_nodes > 0)) st.state = "DEGRADED";
  else st.state = "down";
  co_return st;
}

awaitable<std::pair<std::error_code, DeploymentStatus>> status(Deployment d) {
  co_await accept_every_cancellation();
  auto record = load_deployment_record(d.spec());
  unsigned tp = 1, pp = 1;
  if (record && record->layout.is_object()) {
    tp = record->layout.value("tp", 1u);
    pp = record->layout.value("pp", 1u);
  }
  auto st = co_await look(d, tp, pp);
  st.record = std::move(record);
  if (st.state == "down" && st.record && st.record->status == "failed") st.state = "failed";
  co_return std::pair{std::error_code(), std::move(st)};
}

awaitable<std::pair<std::error_code, DeploymentDownResult>> down(Deployment d, DeploymentDownOptions options) {
  co_await accept_every_cancellation();
  DeploymentDownResult result;
  auto record = load_deployment_record(d.spec());
  unsigned tp = 1, pp = 1;
  if (record && record->layout.is_object()) {
    tp = record->layout.value("tp", 1u);
    pp = record->layout.value("pp", 1u);
  }
  auto engine = d.engine(tp, pp, std::nullopt);
  auto [eec, er] = co_await engine.async_down(asio::as_tuple(use_awaitable));
  if (eec) result.problems.push_back(er.message);
  else result.removed.push_back("engine: " + er.stopped);
  auto [rec, rr] = co_await d.ray_cluster().async_down(asio::as_tuple(use_awaitable));
  for (auto const& o : rr) {
    if (o.error) result.problems.push_back(o.message);
    else result.removed.push_back("ray on " + o.host + ": " + o.removed);
  }
  auto hosts = all_hosts(d);
  if (options.remove_model) {
    auto path = d.spec().model_path();
    std::string script = "rm -rf -- " + shell::quote(path) + "\n";
    RunOptions ro;
    ro.timeout = std::chrono::seconds(600);
    auto [mec, mr] = co_await d.host(d.spec().head).async_run(Command::shell(script), ro, asio::as_tuple(use_awaitable));
    if (mec || mr.exit_code) result.problems.push_back("could not remove " + path + ": " + failure_of(HostOutcome{d.spec().head, mec, mr}));
    else result.removed.push_back("model " + path);
    // And the download host's copy (the hub's files before the sync).
    if (auto const& dl = d.download_host(); !dl.empty() && !d.spec().model.download_dir.empty()) {
      auto const dir = d.spec().model.download_dir;
      // And its organisation's folder (Qwen/ of Qwen/Qwen2___5-...) when
      // nothing else is left in it: rmdir removes only an empty one.
      // The script is built before the co_await: GCC 12 destroys a
      // temporary made by ?: inside a co_await's operand twice (a double
      // free was seen here).
      auto const parent = fs::path(dir).parent_path().string();
      std::string script = "rm -rf -- " + shell::quote(dir) + "\n";
      if (parent.size() > 1) script += "rmdir -- " + shell::quote(parent) + " 2>/dev/null || true\n";
      auto [dec, dr] = co_await d.host(dl).async_run(Command::shell(script), ro, asio::as_tuple(use_awaitable));
      if (dec || dr.exit_code) result.problems.push_back("could not remove " + dir + " on " + dl + ": " + failure_of(HostOutcome{dl, dec, dr}));
      else result.removed.push_back("download " + dl + ":" + dir);
    }
  }
  if (options.unmount_nas && d.spec().nas) {
    NasMount nas(*d.spec().nas);
    UnmountOptions uo;
    auto outs = co_await nas.async_unmount(handles(d, hosts), uo, use_awaitable);
    for (auto const& o : outs) {
      if (!o.ok()) result.problems.push_back(o.message);
      else result.removed.push_back("NAS on " + o.host + ": " + o.action);
    }
  }
  if (record) {
    record->status = "down";
    record->message = "taken down at " + deployment_now_iso();
    save_record(d.spec(), *record);
  }
  co_return std::pair{result.problems.empty() ? std::error_code() : make_error_code(errc::deployment_failed), std::move(result)};
}

awaitable<std::pair<std::error_code, DeploymentPlanResult>> plan(Deployment d) {
  co_await accept_every_cancellation();
  auto const& spec = d.spec();
  DeploymentPlanResult out;
  auto hosts = all_hosts(d);
  auto record = load_deployment_record(spec);
  // Read-only looks at what is there: mount tables, the model, Ray, the engine.
  std::set<std::string> mounted;
  if (spec.nas) {
    FanoutOptions fo;
    fo.run.timeout = std::chrono::seconds(30);
    auto tables = co_await async_run_on_hosts(handles(d, hosts), Command::shell("cat /proc/self/mountinfo"), fo, use_awaitable);
    for (auto const& t : tables)
      if (t.ok())
        if (auto m = mount_at(parse_mountinfo(t.result.stdout_text), spec.nas->mount_point); m && mount_matches(*spec.nas, *m))
          mounted.insert(t.host);
  }
  auto store = store_of(spec);
  auto const path = spec.model_path();
  auto const source_host = d.download_host().empty() ? spec.head : d.download_host();
  RemoteVerifyOptions vo;
  std::vector<std::string> const source_only{source_host};
  auto on_nas = co_await store.async_verify(handles(d, source_only), path, vo, use_awaitable);
  bool model_ok = !on_nas.empty() && on_nas.front().ok();
  auto cluster = d.ray_cluster();
  auto [rec, ray_st] = co_await cluster.async_status(asio::as_tuple(use_awaitable));

  auto add = [&](std::string step, std::string what, std::string skip) -> PlannedStep& {
    out.steps.push_back({std::move(step), std::move(what), std::move(skip), {}});
    return out.steps.back();
  };
  {
    auto& s = add("preflight", "gather facts and run every check on " + join(hosts), spec.checks.preflight ? "" : "checks.preflight is false");
    auto const facts_text = facts_script(preflight_facts_options(inventory_hosts(spec, hosts), preflight_options_of(spec)));
    for (auto const& h : hosts)
      s.commands.push_back({h, "facts script (OS, GPUs, Docker, interfaces, route to " + spec.head + ", Python packages), port probes", facts_text});
  }
  if (spec.nas) {
    auto& s = add("nas", "mount " + spec.nas->source + " at " + spec.nas->mount_point,
                  mounted.size() == hosts.size() ? "mounted on every host already" : "");
    for (auto const& h : hosts)
      s.commands.push_back({h, mounted.count(h) ? "(mounted already: kept)" : shell::join_for_display(nas_mount_argv(*spec.nas)),
                            mounted.count(h) ? std::string() : nas_mount_script(*spec.nas)});
  }
  {
    auto& s = add("model", spec.model.id + " -> " + path, model_ok ? "complete on the NAS already" : "");
    if (!model_ok) {
      if (spec.model.hub != "none") {
        DownloadSpec ds;
        ds.model_id = spec.model.id;
        ds.hub = spec.model.hub == "hf" ? Hub::huggingface : Hub::modelscope;
        ds.revision = spec.model.revision;
        ds.endpoint = spec.model.endpoint;
        std::string script;
        try {
          script = download_script(ds, spec.model.download_dir);
        } catch (Error const&) {
          // A spec the download refuses says so when it runs; the command line stands.
        }
        s.commands.push_back({source_host, shell::join_for_display(download_arguments(ds, spec.model.hub == "hf" ? "hf" : "modelscope", spec.model.download_dir)),
                              script});
      }
      SyncSpec ss;
      ss.source = spec.model.download_dir;
      ss.destination = path;
      s.commands.push_back({source_host, shell::join_for_display(rsync_stream_argv(ss)) + " (x" + std::to_string(spec.model.sync_streams) + " streams)"});
    }
  }
  {
    auto& s = add("verify", "config, index and every shard's header from each GPU host", "");
    auto const snapshot = model_snapshot_script(path);
    for (auto const& h : d.gpu_hosts()) s.commands.push_back({h, "snapshot script on " + path + " (sh, coreutils)", snapshot});
  }
  // `auto` before the first up, for a model clusterkit ships the config of:
  // the layout the planner would choose now, from that config.
  std::optional<Layout> foreseen;
  if ((!spec.serve.tensor_parallel || !spec.serve.pipeline_parallel) && !(record && record->layout.contains("tp")))
    if (auto gpus = every_gpu_host(d, {}))
      try {
        if (auto p = known_model_plan(spec.model.id, *gpus, plan_options(spec)))
          foreseen = choose_layout(*p, spec.serve.tensor_parallel, spec.serve.pipeline_parallel);
      } catch (Error const&) {
        // Refused: early_refusal's note below says why.
      }
  add("layout", foreseen ? "the planner's choice, TP " + std::to_string(foreseen->tp) + " x PP " + std::to_string(foreseen->pp) + " on " +
                               gpu_inventory(d, {}).describe() + " (" + std::to_string(foreseen->kv_cache_tokens) +
                               " KV tokens), from the config.json clusterkit ships for " + spec.model.id +
                               "; checked again on the model's own headers once it is on the NAS"
      : spec.serve.tensor_parallel ? "TP " + std::to_string(spec.serve.tensor_parallel) + " x PP " + std::to_string(spec.serve.pipeline_parallel) + " (checked by the planner)"
                                           : record && record->layout.contains("tp")
                                                 ? "the planner's recommended layout (the last up chose TP " +
                                                       std::to_string(record->layout.value("tp", 0u)) + " x PP " +
                                                       std::to_string(record->layout.value("pp", 0u)) + ")"
                                                 : "the planner's recommended layout (<auto> below), from the model's "
                                                   "config once it is on the NAS; `clusterkit plan MODEL --gpus ...` shows "
                                                   "it now",
      "");
  {
    bool healthy = !rec && ray_st.healthy;
    auto& s = add("ray", std::string(to_string(spec.ray.runtime)) + " head " + spec.head + (spec.workers.empty() ? std::string(", no workers") : ", workers " + join(spec.workers)),
                  healthy ? "a healthy cluster of this shape is up" : "");
    for (auto const& rh : cluster.hosts()) {
      auto p = plan_ray_node(cluster.spec(), rh.host.name(), rh.head, "<" + rh.host.name() + "'s IP>", "<its interface>", rh.gpus, false,
                             "<head IP>", rh.gpus_simulated);
      s.commands.push_back({rh.host.name(), spec.ray.runtime == RayRuntimeKind::docker ? shell::join_for_display(p.docker_run_argv)
                                                                                       : shell::join_for_display(p.ray_start_argv)});
    }
  }
  {
    unsigned tp = spec.serve.tensor_parallel ? spec.serve.tensor_parallel
                  : foreseen                 ? foreseen->tp
                                             : (record ? record->layout.value("tp", 1u) : 1u);
    unsigned pp = spec.serve.pipeline_parallel ? spec.serve.pipeline_parallel
                  : foreseen                   ? foreseen->pp
                                               : (record ? record->layout.value("pp", 1u) : 1u);
    auto engine = d.engine(tp, pp, spec.serve.max_model_len);
    auto [eec, es] = co_await engine.async_status(asio::as_tuple(use_awaitable));
    auto& s = add("serve", "launch vLLM and wait for a real token", es.state == "up" ? "the engine serves already" : "");
    // `auto` with no layout recorded yet: the planner decides once the
    // model is on the NAS; show that, not a made-up 1.
    auto argv = vllm_serve_argv(engine.spec());
    bool const tp_unknown = !spec.serve.tensor_parallel && !foreseen && !(record && record->layout.contains("tp"));
    bool const pp_unknown = !spec.serve.pipeline_parallel && !foreseen && !(record && record->layout.contains("pp"));
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--tensor-parallel-size" && tp_unknown) argv[i + 1] = "<auto>";
      if (argv[i] == "--pipeline-parallel-size" && pp_unknown) argv[i + 1] = "<auto>";
    }
    s.commands.push_back({spec.head, (spec.ray.runtime == RayRuntimeKind::docker ? "docker exec " + ray_container_name(cluster.spec().name) + " " : std::string()) +
                                         shell::join_for_display(argv) + "  (key: VLLM_API_KEY from a 0600 file)"});
  }
  if (auto why = early_refusal(d, {}); !why.empty())
    out.notes.push_back("`up` would refuse this spec at once: " + why);
  add("smoke", "one streamed chat through the OpenAI API", spec.checks.smoke ? "" : "checks.smoke is false");
  add("bench", std::to_string(spec.checks.bench_requests) + " requests, " + std::to_string(spec.checks.bench_concurrency) + " at once",
      spec.checks.bench_requests ? "" : "checks.bench is off");
  out.notes.push_back("nothing was changed: this was a dry run (clusterkit up " + spec.source + " does it)");
  co_return std::pair{std::error_code(), std::move(out)};
}

awaitable<std::pair<std::error_code, std::string>> logs(Deployment d, std::string host, VllmLogsOptions options) {
  co_await accept_every_cancellation();
  if (host.empty() || host == d.spec().head) {
    auto record = load_deployment_record(d.spec());
    unsigned tp = record ? record->layout.value("tp", 1u) : 1u, pp = record ? record->layout.value("pp", 1u) : 1u;
    auto [ec, text] = co_await d.engine(tp, pp, std::nullopt).async_logs(std::move(options), asio::as_tuple(use_awaitable));
    co_return std::pair{ec, std::move(text)};
  }
  if (options.follow)
    co_return std::pair{make_error_code(errc::invalid_argument),
                        "following is for the engine's log on the head (" + d.spec().head + "); " + host +
                            "'s Ray logs are read once: leave out follow (--follow)"};
  RayLogsOptions o;
  o.tail = options.tail;
  auto [ec, all] = co_await d.ray_cluster().async_logs(o, asio::as_tuple(use_awaitable));
  for (auto const& l : all)
    if (l.host == host) co_return std::pair{l.error, l.text};
  co_return std::pair{make_error_code(errc::unknown_host_or_group), host + " is not one of the deployment's Ray hosts"};
}

template <class R>
std::function<std::pair<std::error_code, R>(std::exception_ptr)> failing(std::function<void(R&, std::string const&)> set) {
  return [set](std::exception_ptr ep) {
    R r{};
    set(r, exception_text(ep));
    return std::pair{make_error_code(errc::deployment_failed), std::move(r)};
  };
}

}  // namespace

void start_deployment_up(Deployment d, DeploymentProgressCallback p, asio::any_completion_handler<DeploymentUpSignature> h) {
  auto ex = d.get_executor();
  launch_ec<DeploymentRecord>(ex, std::move(h), [d, p]() mutable { return up(std::move(d), std::move(p)); },
                              failing<DeploymentRecord>([](DeploymentRecord& r, std::string const& m) {
                                r.status = "failed";
                                r.message = m;
                              }));
}

void start_deployment_plan(Deployment d, asio::any_completion_handler<DeploymentPlanSignature> h) {
  auto ex = d.get_executor();
  launch_ec<DeploymentPlanResult>(ex, std::move(h), [d]() mutable { return plan(std::move(d)); },
                                  failing<DeploymentPlanResult>([](DeploymentPlanResult& r, std::string const& m) { r.notes.push_back(m); }));
}

void start_deployment_status(Deployment d, asio::any_completion_handler<DeploymentStatusSignature> h) {
  auto ex = d.get_executor();
  launch_ec<DeploymentStatus>(ex, std::move(h), [d]() mutable { return status(std::move(d)); },
                              failing<DeploymentStatus>([](DeploymentStatus& s, std::string const& m) { s.problems.push_back(m); }));
}

void start_deployment_down(Deployment d, DeploymentDownOptions o, asio::any_completion_handler<DeploymentDownSignature> h) {
  auto ex = d.get_executor();
  launch_ec<DeploymentDownResult>(ex, std::move(h), [d, o]() mutable { return down(std::move(d), o); },
                                  failing<DeploymentDownResult>([](DeploymentDownResult& r, std::string const& m) { r.problems.push_back(m); }));
}

void start_deployment_logs(Deployment d, std::string host, VllmLogsOptions o, asio::any_completion_handler<DeploymentLogsSignature> h) {
  auto ex = d.get_executor();
  launch_ec<std::string>(ex, std::move(h), [d, host, o]() mutable { return logs(std::move(d), std::move(host), std::move(o)); },
                         failing<std::string>([](std::string& r, std::string const& m) { r = m; }));
}

}  // namespace detail

namespace {
template <class R, class Start>
R blocking(Deployment const& d, std::string_view what, Start&& start, std::string (*message)(R const&)) {
  auto [ec, r] = detail::block_on<std::error_code, R>(d.get_executor(), what, std::forward<Start>(start));
  if (ec) throw Error(ec, message(r).empty() ? ec.message() : message(r));
  return std::move(r);
}
}  // namespace

DeploymentRecord deployment_up(Deployment const& d, DeploymentProgressCallback progress) {
  return blocking<DeploymentRecord>(d, "clusterkit::deployment_up", [&](auto h) { d.async_up(std::move(progress), std::move(h)); },
                                    [](DeploymentRecord const& r) { return r.message; });
}

DeploymentPlanResult deployment_plan(Deployment const& d) {
  return blocking<DeploymentPlanResult>(d, "clusterkit::deployment_plan", [&](auto h) { d.async_plan(std::move(h)); },
                                        [](DeploymentPlanResult const& r) { return r.notes.empty() ? std::string() : r.notes.back(); });
}

DeploymentStatus deployment_status(Deployment const& d) {
  return blocking<DeploymentStatus>(d, "clusterkit::deployment_status", [&](auto h) { d.async_status(std::move(h)); },
                                    [](DeploymentStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); });
}

DeploymentDownResult deployment_down(Deployment const& d, DeploymentDownOptions options) {
  return blocking<DeploymentDownResult>(d, "clusterkit::deployment_down", [&](auto h) { d.async_down(options, std::move(h)); },
                                        [](DeploymentDownResult const& r) { return detail::join(r.problems, "; "); });
}

std::string deployment_logs(Deployment const& d, std::string host, unsigned tail) {
  return blocking<std::string>(d, "clusterkit::deployment_logs", [&](auto h) { d.async_logs(std::move(host), tail, std::move(h)); },
                               [](std::string const& r) { return r; });
}

}  // namespace clusterkit
