// VllmServe, the I/O half: the key kept on this machine, the engine launched
// in the cluster's runtime (one command on the head: write the key from
// stdin, start detached), its start followed from its own log, then proved
// over HTTP from this machine (/health, /v1/models, one streamed token).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include "clusterkit/openai_client.hpp"
#include "clusterkit/shell.hpp"
#include "clusterkit/vllm_serve.hpp"
#include "core/block_on.hpp"
#include "core/coro.hpp"
#include "core/task_group.hpp"
#include "remote/run_each.hpp"

namespace clusterkit {
namespace fs = std::filesystem;

namespace {

std::string head_address(RayCluster const& c) {
  auto const& spec = c.head().host.spec();
  if (spec.local) return spec.address.empty() || spec.address == "localhost" ? "127.0.0.1" : spec.address;
  return spec.address.empty() ? spec.name : spec.address;
}

std::string read_key_file(fs::path const& path) {
  std::ifstream in(path);
  std::string line, key;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') key = line;
  return key;
}

/// Writes the key file mode 0600 (its folder 0700), atomically.
void write_key_file(fs::path const& path, std::string const& key, std::string const& endpoint) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ::chmod(path.parent_path().c_str(), 0700);
  auto tmp = path;
  tmp += ".new";
  {
    mode_t old = ::umask(077);
    std::ofstream out(tmp, std::ios::trunc);
    ::umask(old);
    out << "# clusterkit: the API key of the vLLM engine at this endpoint; keep it secret\n"
        << "# endpoint " << endpoint << "\n"
        << key << "\n";
    if (!out)
      throw Error(make_error_code(errc::local_file_error), "cannot write the API key file " + tmp.string() +
                                                              "; set api_key_file to a writable place");
  }
  ::chmod(tmp.c_str(), 0600);
  fs::rename(tmp, path, ec);
  if (ec) throw Error(make_error_code(errc::local_file_error), "cannot write " + path.string() + ": " + ec.message());
}

}  // namespace

VllmServe::VllmServe(VllmServeSpec spec, RayCluster cluster) : spec_(std::move(spec)), cluster_(std::move(cluster)) {
  validate(spec_);
  // The engine from the same installation as Ray, unless told otherwise.
  if (auto const& ray = cluster_.spec().ray_command; spec_.vllm_command == "vllm" && ray.find('/') != std::string::npos)
    spec_.vllm_command = ray.substr(0, ray.rfind('/')) + "/vllm";
}

std::string VllmServe::endpoint() const { return "http://" + head_address(cluster_) + ":" + std::to_string(spec_.port); }

std::string const& VllmServe::ensure_api_key() {
  if (spec_.no_api_key) {
    api_key_->clear();
    return *api_key_;
  }
  auto path = vllm_api_key_path(spec_);
  if (!spec_.api_key.empty()) {
    *api_key_ = spec_.api_key;
    if (read_key_file(path) != spec_.api_key) write_key_file(path, spec_.api_key, endpoint());
    return *api_key_;
  }
  if (api_key_->empty()) {
    auto stored = read_key_file(path);
    *api_key_ = stored.empty() ? generate_api_key() : stored;
    if (stored.empty()) write_key_file(path, *api_key_, endpoint());
  }
  return *api_key_;
}

namespace detail {
namespace {

using asio::awaitable;
using clock_type = std::chrono::steady_clock;
constexpr auto use_awaitable = asio::use_awaitable;

RunOptions run_options(std::chrono::seconds timeout, std::string stdin_data = {}) {
  RunOptions o;
  o.timeout = timeout;
  o.max_captured_bytes = 2u << 20;
  o.stdin_data = std::move(stdin_data);
  return o;
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
}

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::string failure_text(std::error_code ec, RunResult const& r, std::string const& host) {
  return r.message.empty() ? host + ": " + ec.message() : r.message;
}

/// The hosts the engine runs on: the head, or every host (multinode).
std::vector<RayHost> engine_hosts(VllmServe const& s) {
  if (s.spec().backend == ExecutorBackend::multinode) return s.cluster().hosts();
  return {s.cluster().head()};
}

/// Each engine host's identity towards the head (node IP, interface).
awaitable<std::vector<RayNodeProbe>> routes(VllmServe const& s, std::vector<RayHost> const& hosts) {
  std::vector<RunEachItem> items;
  for (auto const& h : hosts)
    items.push_back({h.host, Command::shell(ray_route_script(head_address(s.cluster())) + "echo @@ck-ray-end\n"),
                     run_options(std::chrono::seconds(30))});
  auto outs = co_await async_run_each(std::move(items), use_awaitable);
  std::vector<RayNodeProbe> probes;
  for (auto const& o : outs) {
    RayNodeProbe p;
    p.host = o.host;
    if (o.ok()) {
      try {
        p = parse_ray_probe(o.host, o.result.stdout_text);
      } catch (Error const&) {
      }
    }
    probes.push_back(std::move(p));
  }
  co_return probes;
}

/// The engine's environment on a host: the node's identity (as Ray's own
/// nodes have it), the cluster's env, RAY_ADDRESS, then the spec's env.
std::map<std::string, std::string> engine_env(VllmServe const& s, RayNodeProbe const& self, RayNodeProbe const& head) {
  std::map<std::string, std::string> env;
  if (!self.node_ip.empty()) {
    env["VLLM_HOST_IP"] = self.node_ip;
    env["RAY_NODE_IP_ADDRESS"] = self.node_ip;
  }
  if (!self.interface.empty()) {
    env["NCCL_SOCKET_IFNAME"] = self.interface;
    env["GLOO_SOCKET_IFNAME"] = self.interface;
  }
  for (auto const& [k, v] : s.cluster().spec().env) env[k] = v;
  if (s.spec().backend == ExecutorBackend::ray && !head.node_ip.empty())
    env["RAY_ADDRESS"] = head.node_ip + ":" + std::to_string(s.cluster().spec().port);
  for (auto const& [k, v] : s.spec().env) env[k] = v;
  return env;
}

/// A short public hash of the key (never the key): part of the engine's
/// fingerprint.
std::string digest_of(std::string const& key) {
  if (key.empty()) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(key.data(), key.size(), md, &n, EVP_sha256(), nullptr);
  static char const* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 4 && i < n; ++i) out += std::string{hex[md[i] >> 4], hex[md[i] & 15]};
  return out;
}

std::string marker_value(std::string const& out, std::string_view marker) {
  auto p = out.find(marker);
  if (p == std::string::npos) return {};
  return first_line(std::string_view(out).substr(p + marker.size()));
}

awaitable<std::pair<std::error_code, VllmUpResult>> up(VllmServe s) {
  co_await accept_every_cancellation();
  VllmUpResult result;
  result.endpoint = s.endpoint();
  std::string key;
  try {
    key = s.ensure_api_key();
  } catch (Error const& e) {
    result.message = e.what();
    co_return std::pair{e.code(), std::move(result)};
  }
  result.api_key_file = s.spec().no_api_key ? std::string() : vllm_api_key_path(s.spec()).string();
  auto hosts = engine_hosts(s);
  auto const key_digest = digest_of(key);
  auto probes = co_await routes(s, hosts);
  auto const& head = probes.front();
  if (head.node_ip.empty()) {
    result.message = hosts.front().host.name() + ": cannot tell its address towards itself (`ip route get` gave nothing); "
                                                 "is it reachable?";
    co_return std::pair{make_error_code(errc::engine_failed), std::move(result)};
  }
  // Launch (rank 0 last for multinode: the headless ranks wait for it).
  std::vector<std::size_t> order;
  for (std::size_t i = hosts.size(); i-- > 1;) order.push_back(i);
  order.push_back(0);
  for (bool retried = false;;) {
    bool other = false;
    for (auto i : order) {
      auto argv = vllm_serve_argv(s.spec(), static_cast<unsigned>(i), static_cast<unsigned>(hosts.size()), head.node_ip);
      auto env = engine_env(s, probes[i], head);
      auto cmd = ray_runtime_command(s.cluster().spec(), vllm_launch_script(s.spec(), argv, env, key_digest), true);
      auto host = hosts[i].host;
      auto [ec, r] = co_await host.async_run(cmd, run_options(std::chrono::seconds(60), key), asio::as_tuple(use_awaitable));
      if (ec) {
        result.message = failure_text(ec, r, host.name());
        co_return std::pair{ec, std::move(result)};
      }
      if (i == 0) result.argv = argv;
      if (auto pid = marker_value(r.stdout_text, "@@ck-vllm-launched "); !pid.empty()) {
        if (i == 0) {
          result.action = "launched";
          result.pid = static_cast<int>(to_long(pid).value_or(0));
        }
      } else if (auto pid2 = marker_value(r.stdout_text, "@@ck-vllm-running "); !pid2.empty()) {
        if (i == 0) {
          result.action = "running";
          result.pid = static_cast<int>(to_long(pid2).value_or(0));
        }
      } else if (!marker_value(r.stdout_text, "@@ck-vllm-other ").empty()) {
        other = true;
        break;
      } else {
        auto why = marker_value(r.stdout_text, "@@ck-vllm-failed ");
        result.message = host.name() + ": the engine did not start: " + (why.empty() ? failure_of(HostOutcome{host.name(), ec, r}) : why);
        if (s.cluster().spec().runtime == RayRuntimeKind::docker && r.stderr_text.find("No such container") != std::string::npos)
          result.message = host.name() + ": the runtime container " + ray_container_name(s.cluster().spec().name) +
                           " is not there; bring the Ray cluster up first (`clusterkit ray up`)";
        co_return std::pair{make_error_code(errc::engine_failed), std::move(result)};
      }
    }
    if (!other) break;
    if (retried) {
      result.message = "an engine with other arguments is still running after it was stopped; `clusterkit serve down` and retry";
      co_return std::pair{make_error_code(errc::engine_failed), std::move(result)};
    }
    // Another engine of this name with other arguments: replace it.
    for (auto const& h : hosts) {
      auto host = h.host;
      co_await host.async_run(ray_runtime_command(s.cluster().spec(), vllm_stop_script(s.spec())), run_options(std::chrono::seconds(90)),
                              asio::as_tuple(use_awaitable));
    }
    retried = true;
  }
  result.message = result.action == "running"
                       ? "the engine is already running as asked (pid " + std::to_string(result.pid) + ") at " + result.endpoint
                       : "launched the engine (pid " + std::to_string(result.pid) + ") on " + hosts.front().host.name() +
                             "; it serves at " + result.endpoint + " once ready";
  co_return std::pair{std::error_code(), std::move(result)};
}

ClientOptions client_options(VllmServe const& s, std::string const& key) {
  ClientOptions o;
  o.base_url = s.endpoint();
  o.api_key = key;
  o.connect_timeout = std::chrono::milliseconds(3000);
  o.request_timeout = std::chrono::milliseconds(60000);
  o.first_token_timeout = std::chrono::milliseconds(60000);
  o.max_retries = 0;
  o.proxy_from_environment = false;
  return o;
}

awaitable<VllmWatch> watch(VllmServe const& s, std::uint64_t offset, std::error_code& ec, std::string& failure) {
  auto head = s.cluster().head().host;
  auto [e, r] = co_await head.async_run(ray_runtime_command(s.cluster().spec(), vllm_watch_script(s.spec(), offset)),
                                        run_options(std::chrono::seconds(30)), asio::as_tuple(use_awaitable));
  ec = e;
  if (e) failure = failure_text(e, r, head.name());
  else if (r.exit_code != 0 && r.stdout_text.find("@@ck-vllm") == std::string::npos)
    failure = head.name() + ": " + failure_of(HostOutcome{head.name(), e, r});
  co_return parse_vllm_watch(r.stdout_text);
}

VllmDiagnosisContext diagnosis_context(VllmServe const& s, double gpus) {
  VllmDiagnosisContext c;
  c.cluster_gpus = gpus;
  c.tensor_parallel = s.spec().tensor_parallel;
  c.pipeline_parallel = s.spec().pipeline_parallel;
  c.port = s.spec().port;
  c.model = s.spec().model;
  return c;
}

awaitable<double> cluster_gpus(VllmServe const& s) {
  auto [ec, st] = co_await s.cluster().async_status(asio::as_tuple(use_awaitable));
  co_return ec ? 0.0 : st.gpus_total;
}

awaitable<std::pair<std::error_code, VllmReady>> wait_ready(VllmServe s, VllmProgressCallback progress) {
  co_await accept_every_cancellation();
  auto const t0 = clock_type::now();
  VllmReady ready;
  ready.endpoint = s.endpoint();
  ready.served_model_name = served_name(s.spec());
  auto fail = [&](std::error_code ec, std::string m) {
    ready.message = std::move(m);
    return std::pair{ec, std::move(ready)};
  };
  std::string key = s.spec().no_api_key ? std::string() : read_key_file(vllm_api_key_path(s.spec()));
  if (!s.spec().api_key.empty()) key = s.spec().api_key;
  auto ex = co_await asio::this_coro::executor;
  OpenAIClient client(ex, client_options(s, key));
  std::uint64_t offset = 0;
  std::string tail;  // the log's last 512 KiB, for the diagnosis
  std::string last_reported;
  std::size_t phases_reported = 0;  // of ready.log.phases, the current one included
  std::optional<clock_type::time_point> pg_since;
  bool health_ok = false;
  auto report = [&](std::string phase, std::string message) {
    std::string line = phase + "|" + message;
    if (line == last_reported || !progress) return;
    last_reported = line;
    progress(VllmProgress{std::move(phase), seconds_since(t0), std::move(message), ready.log.kv_cache_tokens});
  };
  for (;;) {
    std::error_code ec;
    std::string failure;
    auto w = co_await watch(s, offset, ec, failure);
    if (ec || !failure.empty()) co_return fail(ec ? ec : make_error_code(errc::engine_failed), failure);
    if (!w.state_dir)
      co_return fail(make_error_code(errc::engine_failed),
                     "no engine named '" + s.spec().name + "' on " + s.cluster().head().host.name() + "; start it with `clusterkit serve up`");
    read_vllm_log(w.log, ready.log);
    offset += w.log.size();
    tail += w.log;
    if (tail.size() > (512u << 10)) tail.erase(0, tail.size() - (512u << 10));
    if (!ready.log.startup_complete) {
      // Phases this look passed through, each said once, then where it is.
      auto const& seen = ready.log.phases;
      for (; phases_reported + 1 < seen.size(); ++phases_reported) report(seen[phases_reported], seen[phases_reported]);
      report(ready.log.phase, ready.log.last.empty() ? "starting" : ready.log.last);
      phases_reported = std::max<std::size_t>(phases_reported, seen.size());
    }
    if (!w.alive) {
      auto d = diagnose_vllm_log(tail, diagnosis_context(s, 0));
      if (d.cause == "placement-group") d = diagnose_vllm_log(tail, diagnosis_context(s, co_await cluster_gpus(s)));
      co_return fail(make_error_code(errc::engine_failed), "the engine stopped after " + std::to_string(static_cast<int>(seconds_since(t0))) +
                                                               " s: " + d.message);
    }
    if (ready.log.waiting_for_placement_group) {
      if (!pg_since) pg_since = clock_type::now();
      if (clock_type::now() - *pg_since > s.spec().placement_group_timeout) {
        auto d = diagnose_vllm_log(tail, diagnosis_context(s, co_await cluster_gpus(s)));
        co_return fail(make_error_code(errc::engine_failed),
                       "the engine waited " + std::to_string(s.spec().placement_group_timeout.count()) +
                           " s for Ray's GPUs: " + d.message + ". It is still waiting; `clusterkit serve down` stops it");
      }
    } else {
      pg_since.reset();
    }
    if (ready.log.startup_complete) {
      if (ready.startup_complete_seconds == 0) {
        ready.startup_complete_seconds = seconds_since(t0);
        ready.engine_start_seconds = w.uptime_seconds;
      }
      report("http", "the API is up; asking /health, /v1/models and for one token");
      if (!health_ok) {
        auto const asked = clock_type::now();
        auto [hec, h] = co_await client.async_health(asio::as_tuple(use_awaitable));
        ready.answer_seconds += seconds_since(asked);
        if (!hec && h.ok()) {
          health_ok = true;
          ready.health_seconds = seconds_since(t0);
        }
      }
      if (health_ok) {
        auto asked = clock_type::now();
        auto [mec, models] = co_await client.async_list_models(asio::as_tuple(use_awaitable));
        ready.answer_seconds += seconds_since(asked);
        if (mec) {
          if (mec == errc::http_error && models.meta.status == 401)
            co_return fail(make_error_code(errc::engine_failed),
                           "the engine refuses the API key in " + vllm_api_key_path(s.spec()).string() +
                               " (HTTP 401): another key was set when it started; `clusterkit serve down` and up again");
        } else {
          bool listed = false;
          std::vector<std::string> names;
          for (auto const& m : models.models) {
            names.push_back(m.id);
            listed = listed || m.id == ready.served_model_name;
          }
          if (!listed)
            co_return fail(make_error_code(errc::engine_failed), "the engine serves " + join(names) + ", not " +
                                                                     ready.served_model_name);
          auto request = ChatRequest::simple(ready.served_model_name, "Say hello.");
          request.max_tokens = 4;
          std::string first;
          asked = clock_type::now();
          auto [cec, streamed] = co_await client.async_chat_stream(
              request, [&first](StreamChunk const& c) {
                if (first.empty()) first = c.delta;
              },
              asio::as_tuple(use_awaitable));
          ready.answer_seconds += seconds_since(asked);
          if (!cec && (streamed.content_chunks > 0 || (streamed.usage && streamed.usage->completion_tokens > 0))) {
            ready.first_token = first;
            ready.ready_seconds = seconds_since(t0);
            report("ready", "ready");
            ready.message = "the engine serves " + ready.served_model_name + " at " + ready.endpoint + " (ready after " +
                            std::to_string(static_cast<int>(ready.ready_seconds)) + " s; first token " +
                            std::to_string(static_cast<int>(streamed.time_to_first_token.count() / 1000000)) + " ms)";
            co_return std::pair{std::error_code(), std::move(ready)};
          }
          if (cec && cec != errc::timed_out && cec != errc::connection_refused && streamed.meta.status >= 400 &&
              streamed.meta.status != 503)
            co_return fail(make_error_code(errc::engine_failed),
                           "the engine answered the first request with HTTP " + std::to_string(streamed.meta.status) + ": " +
                               streamed.meta.server_message);
        }
      }
    }
    if (clock_type::now() - t0 > s.spec().ready_timeout) {
      auto d = diagnose_vllm_log(tail, diagnosis_context(s, co_await cluster_gpus(s)));
      co_return fail(make_error_code(errc::timed_out), "the engine was not ready within " + std::to_string(s.spec().ready_timeout.count()) +
                                                           " s (phase: " + ready.log.phase + "): " + d.message);
    }
    if (co_await was_cancelled()) co_return fail(make_error_code(errc::cancelled), "cancelled while waiting for the engine");
    // Each look at the log is an ssh command and, in Docker, a `docker exec`
    // on the head (~0.1 s of CPU there): every 250 ms while a bad argument
    // or the API's last steps would show, every second while the engine
    // loads and compiles, so that polling does not slow an engine starting
    // on a few cores (on the lab, 4 looks a second ran beside vLLM's CPU
    // build on 2 cores).
    bool const quick = ready.log.startup_complete || seconds_since(t0) < 3;
    co_await sleep_for(std::chrono::milliseconds(quick ? 250 : 1000));
  }
}

awaitable<std::pair<std::error_code, VllmStatus>> status(VllmServe s) {
  co_await accept_every_cancellation();
  VllmStatus st;
  st.endpoint = s.endpoint();
  std::error_code ec;
  std::string failure;
  // Three looks at once (a quick `up` on a running deployment is this
  // call): the engine's process and log on the head, its HTTP API, and Ray.
  // Ray is asked when the spec runs the engine over Ray; the running
  // engine's own backend, known once the first look is back, decides.
  std::string key = s.spec().no_api_key ? std::string() : read_key_file(vllm_api_key_path(s.spec()));
  if (!s.spec().api_key.empty()) key = s.spec().api_key;
  auto ex = co_await asio::this_coro::executor;
  OpenAIClient client(ex, client_options(s, key));
  std::vector<std::string> served;
  auto look_at_api = [&]() -> awaitable<void> {
    auto [hec, h] = co_await client.async_health(asio::as_tuple(use_awaitable));
    st.health_status = h.meta.status;
    if (st.health_status != 200) co_return;
    auto [mec, models] = co_await client.async_list_models(asio::as_tuple(use_awaitable));
    for (auto const& m : models.models) served.push_back(m.id);
    auto [xec, metrics] = co_await client.async_metrics(asio::as_tuple(use_awaitable));
    if (!xec) {
      st.running_requests = metrics.gauges.requests_running;
      st.waiting_requests = metrics.gauges.requests_waiting;
      st.kv_cache_usage = metrics.gauges.kv_cache_usage;
    }
  };
  std::optional<RayClusterStatus> ray_seen;
  auto look_at_ray = [&]() -> awaitable<void> {
    auto [rec, ray] = co_await s.cluster().async_status(asio::as_tuple(use_awaitable));
    ray_seen = std::move(ray);
  };
  // The API and Ray looks run beside this coroutine's own look at the
  // process (they write this frame's locals: joined before they are read).
  TaskGroup beside(ex);
  beside.spawn(look_at_api());
  if (s.spec().backend == ExecutorBackend::ray) beside.spawn(look_at_ray());
  auto w = co_await watch(s, ~std::uint64_t{0} >> 1, ec, failure);
  co_await beside.join();
  if (ec) {
    st.problems.push_back(failure);
    st.state = "unknown";
    co_return std::pair{ec, std::move(st)};
  }
  st.process_alive = w.alive;
  st.pid = w.pid;
  st.uptime_seconds = w.uptime_seconds;
  // The name the running engine was started with (status is often asked
  // without the spec that started it).
  auto const wanted = !w.served_model_name.empty() ? w.served_model_name : served_name(s.spec());
  bool listed = false;
  for (auto const& id : served) {
    st.served_models.push_back(id);
    listed = listed || id == wanted;
  }
  // The backend the running engine was launched with, when it is known.
  if (w.backend.value_or(s.spec().backend) == ExecutorBackend::ray) {
    if (!ray_seen) {
      auto [rec, ray] = co_await s.cluster().async_status(asio::as_tuple(use_awaitable));
      ray_seen = std::move(ray);
    }
    st.ray = std::move(ray_seen);
  }
  st.state = judge_vllm_state(st.process_alive, st.health_status, listed, st.ray, st.problems);
  if (!st.process_alive && w.state_dir) {
    // Why it stopped, from the end of its log.
    auto tail = co_await watch(s, w.log_size > vllm_watch_log_bytes ? w.log_size - vllm_watch_log_bytes : 0, ec, failure);
    st.diagnosis = diagnose_vllm_log(tail.log, diagnosis_context(s, st.ray ? st.ray->gpus_total : 0));
  }
  co_return std::pair{std::error_code(), std::move(st)};
}

awaitable<std::pair<std::error_code, VllmDownResult>> down(VllmServe s) {
  co_await accept_every_cancellation();
  VllmDownResult result;
  std::error_code first;
  std::vector<std::string> stopped;
  auto hosts = engine_hosts(s);
  for (auto const& h : hosts) {
    auto host = h.host;
    auto [ec, r] = co_await host.async_run(ray_runtime_command(s.cluster().spec(), vllm_stop_script(s.spec())),
                                           run_options(std::chrono::seconds(120)), asio::as_tuple(use_awaitable));
    auto what = marker_value(r.stdout_text, "@@ck-vllm-stopped ");
    if (ec || what.empty()) {
      // No container means no engine either.
      if (!ec && s.cluster().spec().runtime == RayRuntimeKind::docker && r.stderr_text.find("No such container") != std::string::npos) {
        stopped.push_back(host.name() + ": nothing (no runtime container)");
        continue;
      }
      auto m = ec ? failure_text(ec, r, host.name()) : host.name() + ": could not stop the engine: " + failure_of(HostOutcome{host.name(), ec, r});
      result.message += (result.message.empty() ? "" : "; ") + m;
      if (!first) first = ec ? ec : make_error_code(errc::engine_failed);
      continue;
    }
    stopped.push_back(host.name() + ": " + what);
  }
  result.stopped = join(stopped, "; ");
  if (!first) result.message = "stopped " + result.stopped;
  co_return std::pair{first, std::move(result)};
}

// `tail -F` without a process left on the head: one short look a second,
// each from where the last one stopped (VllmLogFollower). Ends only when
// cancelled, or when the head cannot be reached.
awaitable<std::pair<std::error_code, std::string>> follow_logs(VllmServe s, VllmLogsOptions options) {
  auto emit = [&](std::vector<std::string> const& lines) {
    if (options.on_line)
      for (auto const& l : lines) options.on_line(l);
  };
  std::error_code ec;
  std::string failure;
  auto failed = [&] { return std::pair{ec ? ec : make_error_code(errc::engine_failed), failure}; };
  // The log's size first (a look past any end reads nothing), then up to
  // its last vllm_watch_log_bytes for the first lines.
  auto sized = co_await watch(s, std::uint64_t(1) << 62, ec, failure);
  if (ec || !failure.empty()) co_return failed();
  if (!sized.state_dir)
    emit({"clusterkit: no engine named '" + s.spec().name + "' on " + s.cluster().head().host.name() +
          " yet; its log is followed once `serve up` starts one"});
  std::uint64_t const from = options.tail == 0 || sized.log_size <= vllm_watch_log_bytes ? 0 : sized.log_size - vllm_watch_log_bytes;
  VllmLogFollower follower;
  auto first = co_await watch(s, from, ec, failure);
  if (ec || !failure.empty()) co_return failed();
  emit(follower.start(first, from, options.tail));
  bool more = first.log.size() >= vllm_watch_log_bytes;
  while (!(co_await was_cancelled())) {
    if (!more) co_await sleep_for(options.poll_interval);
    if (co_await was_cancelled()) break;
    auto look = co_await watch(s, follower.offset, ec, failure);
    if (co_await was_cancelled()) break;
    if (ec || !failure.empty()) co_return failed();
    emit(follower.take(look));
    more = look.log.size() >= vllm_watch_log_bytes;  // a full look: the next one at once
  }
  if (!follower.partial.empty()) emit({valid_utf8(follower.partial)});
  co_return std::pair{make_error_code(errc::cancelled), std::string("stopped following the engine's log")};
}

awaitable<std::pair<std::error_code, std::string>> logs(VllmServe s, VllmLogsOptions options) {
  co_await accept_every_cancellation();
  if (options.follow) co_return co_await follow_logs(std::move(s), std::move(options));
  auto head = s.cluster().head().host;
  std::string n = options.tail == 0 ? std::string("+1") : std::to_string(options.tail);
  auto d = shell::quote(vllm_state_dir(s.spec()));
  auto [ec, r] = co_await head.async_run(
      ray_runtime_command(s.cluster().spec(), "if [ -f " + d + "/vllm.log ]; then tail -n " + n + " " + d +
                                                  "/vllm.log; else echo 'no engine log on this host (not started, or stopped)'; fi"),
      run_options(std::chrono::seconds(60)), asio::as_tuple(use_awaitable));
  if (ec) co_return std::pair{ec, failure_text(ec, r, head.name())};
  co_return std::pair{std::error_code(), valid_utf8(r.stdout_text)};
}

}  // namespace

void start_vllm_up(VllmServe s, asio::any_completion_handler<VllmUpSignature> h) {
  auto ex = s.cluster().head().host.get_executor();
  launch_ec<VllmUpResult>(ex, std::move(h), [s]() mutable { return up(std::move(s)); }, [](std::exception_ptr ep) {
    VllmUpResult r;
    r.message = "serve up failed: " + exception_text(ep);
    return std::pair{make_error_code(errc::engine_failed), std::move(r)};
  });
}

void start_vllm_wait_ready(VllmServe s, VllmProgressCallback p, asio::any_completion_handler<VllmReadySignature> h) {
  auto ex = s.cluster().head().host.get_executor();
  launch_ec<VllmReady>(ex, std::move(h), [s, p]() mutable { return wait_ready(std::move(s), std::move(p)); },
                       [](std::exception_ptr ep) {
                         VllmReady r;
                         r.message = "waiting for the engine failed: " + exception_text(ep);
                         return std::pair{make_error_code(errc::engine_failed), std::move(r)};
                       });
}

void start_vllm_status(VllmServe s, asio::any_completion_handler<VllmStatusSignature> h) {
  auto ex = s.cluster().head().host.get_executor();
  launch_ec<VllmStatus>(ex, std::move(h), [s]() mutable { return status(std::move(s)); }, [](std::exception_ptr ep) {
    VllmStatus st;
    st.state = "unknown";
    st.problems.push_back("serve status failed: " + exception_text(ep));
    return std::pair{make_error_code(errc::engine_failed), std::move(st)};
  });
}

void start_vllm_down(VllmServe s, asio::any_completion_handler<VllmDownSignature> h) {
  auto ex = s.cluster().head().host.get_executor();
  launch_ec<VllmDownResult>(ex, std::move(h), [s]() mutable { return down(std::move(s)); }, [](std::exception_ptr ep) {
    VllmDownResult r;
    r.message = "serve down failed: " + exception_text(ep);
    return std::pair{make_error_code(errc::engine_failed), std::move(r)};
  });
}

void start_vllm_logs(VllmServe s, VllmLogsOptions options, asio::any_completion_handler<VllmLogsSignature> h) {
  auto ex = s.cluster().head().host.get_executor();
  launch_ec<std::string>(ex, std::move(h), [s, options]() mutable { return logs(std::move(s), options); },
                         [](std::exception_ptr ep) {
                           return std::pair{make_error_code(errc::engine_failed), "serve logs failed: " + exception_text(ep)};
                         });
}

}  // namespace detail

namespace {
template <class R, class Start>
R blocking(VllmServe const& s, std::string_view what, Start&& start, std::string (*message)(R const&)) {
  auto [ec, r] = detail::block_on<std::error_code, R>(s.cluster().head().host.get_executor(), what, std::forward<Start>(start));
  if (ec) throw Error(ec, message(r).empty() ? ec.message() : message(r));
  return std::move(r);
}
}  // namespace

VllmUpResult vllm_up(VllmServe& serve) {
  return blocking<VllmUpResult>(serve, "clusterkit::vllm_up", [&](auto h) { serve.async_up(std::move(h)); },
                                [](VllmUpResult const& r) { return r.message; });
}

VllmReady vllm_wait_ready(VllmServe const& serve, VllmProgressCallback progress) {
  return blocking<VllmReady>(serve, "clusterkit::vllm_wait_ready",
                             [&](auto h) { serve.async_wait_ready(std::move(progress), std::move(h)); },
                             [](VllmReady const& r) { return r.message; });
}

VllmStatus vllm_status(VllmServe const& serve) {
  return blocking<VllmStatus>(serve, "clusterkit::vllm_status", [&](auto h) { serve.async_status(std::move(h)); },
                              [](VllmStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); });
}

VllmDownResult vllm_down(VllmServe const& serve) {
  return blocking<VllmDownResult>(serve, "clusterkit::vllm_down", [&](auto h) { serve.async_down(std::move(h)); },
                                  [](VllmDownResult const& r) { return r.message; });
}

std::string vllm_logs(VllmServe const& serve, VllmLogsOptions options) {
  return blocking<std::string>(serve, "clusterkit::vllm_logs", [&](auto h) { serve.async_logs(options, std::move(h)); },
                               [](std::string const& r) { return r; });
}

}  // namespace clusterkit
