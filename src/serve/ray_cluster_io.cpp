// RayCluster, the I/O half: one probe per host, the pure decision, the head
// started (and waited for in the same remote command), every worker at once,
// then polling the head until Ray reports every node and GPU. Each step is
// one command per host over the host's shared ssh connection.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/system_executor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "clusterkit/ray_cluster.hpp"
#include "clusterkit/shell.hpp"
#include "core/block_on.hpp"
#include "core/coro.hpp"
#include "remote/run_each.hpp"

namespace clusterkit {
namespace detail {
namespace {

using asio::awaitable;
using clock_type = std::chrono::steady_clock;
constexpr auto use_awaitable = asio::use_awaitable;

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

RunOptions run_options(std::chrono::seconds timeout) {
  RunOptions o;
  o.timeout = timeout;
  o.max_captured_bytes = 4u << 20;
  return o;
}

awaitable<std::vector<HostOutcome>> run_each(std::vector<RunEachItem> items) {
  co_return co_await async_run_each(std::move(items), use_awaitable);
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
}

std::string head_address_of(RayCluster const& c) {
  auto const& spec = c.head().host.spec();
  if (spec.local) return spec.address.empty() || spec.address == "localhost" ? "127.0.0.1" : spec.address;
  return spec.address.empty() ? spec.name : spec.address;
}

std::string text_after(std::string const& out, std::string_view marker) {
  auto p = out.find(marker);
  if (p == std::string::npos) return {};
  return out.substr(p + marker.size());
}

/// "PYTHON RAY" as the probe found them, kept with the node for `status`.
std::string versions_of(RayNodeProbe const& p) {
  return p.python_version.empty() || p.ray_version.empty() ? std::string() : p.python_version + " " + p.ray_version;
}

/// The node's runtime state from ray_node_state_script's output.
std::string runtime_state_of(HostOutcome const& o) {
  if (o.error) return "unreachable";
  auto p = o.result.stdout_text.find("@@ck-ray-state ");
  if (p == std::string::npos) return "unknown";
  return first_line(std::string_view(o.result.stdout_text).substr(p + 15));
}

/// The plans, from the hosts and their probes (the head first).
std::vector<RayNodePlan> make_plans(RayCluster const& c, std::vector<RayNodeProbe> const& probes) {
  auto const& spec = c.spec();
  std::vector<RayNodePlan> plans;
  std::string head_ip = probes.empty() ? std::string() : probes.front().node_ip;
  for (std::size_t i = 0; i < c.hosts().size(); ++i) {
    auto const& h = c.hosts()[i];
    auto const& p = probes[i];
    std::optional<unsigned> gpus = h.gpus;
    if (!gpus && p.nvidia_smi && p.gpus_found > 0) gpus = p.gpus_found;
    bool docker_gpus = spec.docker_gpus == "all" || (spec.docker_gpus == "auto" && p.gpus_found > 0);
    plans.push_back(plan_ray_node(spec, h.host.name(), h.head, p.node_ip, p.interface, gpus, docker_gpus, head_ip,
                                  h.gpus_simulated));
  }
  return plans;
}

/// Probe every host; on failure, `error` names each host that could not be
/// probed and the fix.
struct ProbeRound {
  std::vector<RayNodeProbe> probes;
  std::vector<std::string> failures;
  std::error_code error;
};

awaitable<ProbeRound> probe_hosts(RayCluster const& c) {
  ProbeRound round;
  auto head_address = head_address_of(c);
  std::vector<RunEachItem> items;
  for (auto const& h : c.hosts())
    items.push_back({h.host, Command::shell(ray_probe_script(c.spec(), head_address, h.head)), run_options(std::chrono::seconds(60))});
  auto outs = co_await run_each(std::move(items));
  for (std::size_t i = 0; i < outs.size(); ++i) {
    auto const& o = outs[i];
    RayNodeProbe p;
    p.host = o.host;
    if (o.error) {
      round.failures.push_back(o.result.message.empty() ? o.host + ": " + o.error.message() : o.result.message);
      if (!round.error) round.error = o.error;
    } else {
      try {
        p = parse_ray_probe(o.host, o.result.stdout_text);
      } catch (Error const& e) {
        round.failures.push_back(e.what() + std::string(" (") + failure_of(o) + ")");
        if (!round.error) round.error = e.code();
      }
    }
    round.probes.push_back(std::move(p));
  }
  co_return round;
}

awaitable<RayReport> ask_head(RayCluster const& c, std::chrono::seconds timeout, bool with_ray_status) {
  auto host = c.head().host;
  auto [ec, r] = co_await host.async_run(c.runtime_command(ray_status_script(c.spec(), with_ray_status)), run_options(timeout),
                                         asio::as_tuple(use_awaitable));
  RayReport report;
  if (ec) {
    report.error = r.message.empty() ? ec.message() : r.message;
  } else {
    report = parse_ray_report(r.stdout_text);
    if (report.source.empty() && report.error == "Ray did not answer") {
      auto said = first_line(r.stderr_text);
      if (!said.empty()) report.error = said;
    }
  }
  co_return report;
}

std::string list_of(std::vector<std::string> const& v) {
  std::string out;
  for (auto const& s : v) out += (out.empty() ? "" : "; ") + s;
  return out;
}

// ---------------------------------------------------------------------------
// up

awaitable<std::pair<std::error_code, RayUpResult>> up(RayCluster c, RayProgressCallback progress) {
  co_await accept_every_cancellation();
  auto const t0 = clock_type::now();
  auto const& spec = c.spec();
  RayUpResult result;
  auto report_progress = [&](RayProgress const& p) {
    if (progress) progress(p);
  };
  auto fail = [&](std::error_code ec, std::string message) {
    result.message = std::move(message);
    result.total_ms = ms_since(t0);
    return std::pair{ec, std::move(result)};
  };
  for (auto const& h : c.hosts()) result.nodes.push_back(RayNodeOutcome{h.host.name()});

  // 1. Probe every host.
  report_progress({"probe", 0, static_cast<unsigned>(c.hosts().size()), 0, 0, "probing " + std::to_string(c.hosts().size()) + " hosts"});
  auto round = co_await probe_hosts(c);
  for (auto& n : result.nodes) n.probed_ms = ms_since(t0);
  if (round.error) {
    for (std::size_t i = 0; i < result.nodes.size(); ++i)
      if (round.probes[i].node_ip.empty() && round.probes[i].host.empty()) result.nodes[i].error = round.error;
    co_return fail(round.error, "Ray was not started: " + list_of(round.failures));
  }
  if (co_await was_cancelled()) co_return fail(make_error_code(errc::cancelled), "cancelled before anything started");

  // 2. Plan and decide.
  result.plans = make_plans(c, round.probes);
  auto decisions = decide_ray_nodes(spec, result.plans, round.probes);
  std::vector<std::string> refusals;
  std::error_code refusal;
  for (std::size_t i = 0; i < decisions.size(); ++i) {
    result.nodes[i].action = decisions[i].action;
    result.nodes[i].message = decisions[i].reason;
    if (decisions[i].action == RayNodeAction::refuse) {
      result.nodes[i].error = decisions[i].refusal;
      refusals.push_back(decisions[i].reason);
      if (!refusal) refusal = decisions[i].refusal;
    }
  }
  if (!refusals.empty()) co_return fail(refusal, "Ray was not started on any host: " + list_of(refusals));

  double expected_gpus = 0;
  for (auto const& p : result.plans)
    if (p.gpus) expected_gpus += *p.gpus;
  auto const expected_nodes = static_cast<unsigned>(result.plans.size());

  // 3. Start what needs starting: the head first (workers need its GCS),
  // then every worker at once. A replaced bare node is stopped first.
  // `started` counts the start commands that said the node runs;
  // `ready_early` is set when Ray listed every node before every start
  // command had returned (the rest were then stopped: their nodes run on,
  // detached from the command).
  auto started = std::make_shared<std::atomic<std::size_t>>(0);
  bool ready_early = false;
  // What a node that never came up says, and the causes that fit when Ray
  // itself says nothing clearer.
  // A worker has the join timeout, at least 30 s (a healthy start takes
  // 5-15 s on a busy host), to say its node runs: one that cannot reach the
  // head waits in `ray start` far longer. The head at least 120 s.
  auto start_timeout = [&](std::size_t i) {
    return std::max<std::chrono::seconds>(std::chrono::seconds(result.plans[i].head ? 120 : 30), spec.join_timeout);
  };
  auto likely_causes = [&](std::string const& explained) {
    return explained.find("did not start") == std::string::npos
               ? std::string()
               : ". Likely causes: the node IP is wrong on a host with several interfaces, the head's port " +
                     std::to_string(spec.port) + " is blocked between the hosts, or Ray/Python differ between the hosts";
  };
  auto start_nodes = [&](std::vector<std::size_t> const& which) -> awaitable<std::vector<std::string>> {
    std::vector<std::string> failures;
    std::vector<RunEachItem> stops;
    std::vector<std::size_t> stop_index;
    for (auto i : which)
      if (decisions[i].action == RayNodeAction::replace && spec.runtime == RayRuntimeKind::bare) {
        stops.push_back({c.hosts()[i].host, Command::shell(ray_stop_script(spec)), run_options(std::chrono::seconds(60))});
        stop_index.push_back(i);
      }
    auto stopped = co_await run_each(std::move(stops));
    for (std::size_t k = 0; k < stopped.size(); ++k)
      if (!stopped[k].ok()) failures.push_back(result.plans[stop_index[k]].host + ": could not stop the old node: " + failure_of(stopped[k]));
    if (!failures.empty()) co_return failures;
    std::vector<RunEachItem> items;
    for (auto i : which) {
      auto ro = run_options(start_timeout(i));
      ro.on_line = [started](OutputLine const& line) {
        if (line.stream == Stream::out && line.text == "@@ck-ray-started") ++*started;
      };
      items.push_back({c.hosts()[i].host,
                       Command::shell(ray_start_script(spec, result.plans[i], decisions[i].action == RayNodeAction::replace,
                                                       versions_of(round.probes[i]))),
                       std::move(ro)});
    }
    auto const dispatched_ms = ms_since(t0);
    auto outs = co_await run_each(std::move(items));
    // A start that ran out of time printed nothing of Ray's (its output
    // goes to the node's log): read each such node's log to say why.
    std::vector<RunEachItem> log_reads;
    std::vector<std::size_t> log_of;
    for (std::size_t k = 0; k < outs.size(); ++k)
      if (outs[k].error == errc::timed_out && !ready_early) {
        log_reads.push_back({c.hosts()[which[k]].host, Command::shell(ray_logs_script(spec, 40)), run_options(std::chrono::seconds(20))});
        log_of.push_back(k);
      }
    std::map<std::size_t, std::string> said_by;
    if (!log_reads.empty()) {
      auto logs = co_await run_each(std::move(log_reads));
      for (std::size_t j = 0; j < logs.size(); ++j) said_by[log_of[j]] = logs[j].result.stdout_text;
    }
    for (std::size_t k = 0; k < outs.size(); ++k) {
      auto i = which[k];
      auto& n = result.nodes[i];
      // Each node's own moment, not the slowest one's.
      n.started_ms = outs[k].result.duration.count() > 0
                         ? dispatched_ms + std::chrono::duration<double, std::milli>(outs[k].result.duration).count()
                         : ms_since(t0);
      auto const& o = outs[k];
      // Once Ray listed every node, a start command that was stopped (or ran
      // out of time meanwhile) says nothing against its node.
      if (ready_early && o.error) {
        n.started_ms = n.joined_ms > 0 ? n.joined_ms : ms_since(t0);
        n.message = std::string(n.action == RayNodeAction::replace ? "replaced" : "started") + " the Ray worker on " +
                    n.host + " (" + result.plans[i].node_ip + "); Ray listed it before its `ray start` had returned";
      } else if (o.error) {
        n.error = o.error;
        if (o.error == errc::timed_out) {
          auto const limit = start_timeout(i).count();
          auto explained = explain_ray_failure(n.host, said_by[k] + "\n" + o.result.stdout_text + o.result.stderr_text, spec);
          n.message = n.host + " (" + result.plans[i].node_ip + ") did not join within " + std::to_string(limit) +
                      " s (its `ray start` never said the node runs); " + explained + likely_causes(explained);
        } else {
          n.message = o.result.message.empty() ? n.host + ": " + o.error.message() : o.result.message;
        }
        failures.push_back(n.message);
      } else if (o.result.stdout_text.find("@@ck-ray-started") == std::string::npos) {
        n.error = make_error_code(errc::program_missing);
        auto said = text_after(o.result.stdout_text, "@@ck-ray-failed");
        n.message = explain_ray_failure(n.host, said + "\n" + o.result.stderr_text, spec);
        failures.push_back(n.message);
      } else {
        n.message = std::string(n.action == RayNodeAction::replace ? "replaced" : "started") + " the Ray " +
                    (result.plans[i].head ? "head" : "worker") + " on " + n.host + " (" + result.plans[i].node_ip + ")";
      }
    }
    co_return failures;
  };

  bool const head_starts = decisions.front().action != RayNodeAction::keep;
  if (head_starts) {
    report_progress({"start-head", 0, expected_nodes, 0, expected_gpus, "starting the Ray head on " + c.head().host.name()});
    std::vector<std::size_t> head_only{0};
    auto failures = co_await start_nodes(head_only);
    if (!failures.empty()) co_return fail(result.nodes[0].error, list_of(failures));
  }
  std::vector<std::size_t> workers;
  for (std::size_t i = 1; i < decisions.size(); ++i)
    if (decisions[i].action != RayNodeAction::keep) workers.push_back(i);
  std::set<std::string> joined;
  RayReport last;
  // Is the cluster whole, by Ray's own report? Records when each node joined.
  auto judge = [&](RayReport const& report) {
    std::vector<std::string> states(c.hosts().size());
    result.status = evaluate_ray_cluster(spec, result.plans, report, states);
    for (std::size_t i = 0; i < result.status.hosts.size(); ++i)
      if (result.status.hosts[i].ray_state == "ALIVE" && joined.insert(result.status.hosts[i].host).second)
        result.nodes[i].joined_ms = ms_since(t0);
    return result.status.alive_nodes == expected_nodes &&
           (expected_gpus <= 0 || result.status.gpus_total + 1e-9 >= expected_gpus);
  };
  // While the workers' start commands run: once one of them said its node
  // runs, ask Ray every 250 ms. Ray lists a node before its `ray start` has
  // printed its last line (0.3-1 s before, measured with 2 to 8 nodes on 2
  // cores); asking earlier would only take CPU from the starting nodes.
  auto ready_before_every_start_returned = [&]() -> awaitable<bool> {
    for (;;) {
      if (*started > 0) {
        last = co_await ask_head(c, std::chrono::seconds(30), false);
        if (co_await was_cancelled()) co_return false;
        bool const whole = judge(last);
        report_progress({"wait", result.status.alive_nodes, expected_nodes, result.status.gpus_total, expected_gpus,
                         "Ray lists " + std::to_string(result.status.alive_nodes) + " of " + std::to_string(expected_nodes) +
                             " nodes while the workers start"});
        if (whole) {
          ready_early = true;
          co_return true;
        }
      }
      co_await sleep_for(std::chrono::milliseconds(*started > 0 ? 250 : 50));
      if (co_await was_cancelled()) co_return false;
    }
  };
  if (!workers.empty()) {
    report_progress({"start-workers", 1, expected_nodes, 0, expected_gpus,
                     "starting " + std::to_string(workers.size()) + " Ray worker" + (workers.size() == 1 ? "" : "s")});
    using namespace asio::experimental::awaitable_operators;
    *started = 0;  // the head's line does not count: a worker's must come first
    auto first = co_await (start_nodes(workers) || ready_before_every_start_returned());
    std::vector<std::string> failures;
    if (first.index() == 0) failures = std::get<0>(std::move(first));
    if (!failures.empty()) {
      std::error_code ec;
      for (auto i : workers)
        if (result.nodes[i].error) ec = result.nodes[i].error;
      co_return fail(ec, list_of(failures));
    }
  }

  // 4. Wait until Ray itself reports every node and GPU (at once when it
  // did while the workers were starting).
  auto deadline = clock_type::now() + spec.join_timeout;
  while (!ready_early) {
    last = co_await ask_head(c, std::chrono::seconds(30), false);
    bool const whole = judge(last);
    std::vector<std::string> waiting;
    for (auto const& h : result.status.hosts)
      if (h.ray_state != "ALIVE") waiting.push_back(h.host + " (" + h.node_ip + ")");
    report_progress({"wait", result.status.alive_nodes, expected_nodes, result.status.gpus_total, expected_gpus,
                     waiting.empty() ? "waiting for Ray to count the GPUs" : "waiting for " + list_of(waiting)});
    if (whole) break;
    if (clock_type::now() >= deadline) {
      // Say why, from each missing node's own output.
      std::vector<RunEachItem> items;
      std::vector<std::size_t> idx;
      for (std::size_t i = 0; i < result.status.hosts.size(); ++i)
        if (result.status.hosts[i].ray_state != "ALIVE") {
          items.push_back({c.hosts()[i].host, Command::shell(ray_logs_script(spec, 40)), run_options(std::chrono::seconds(20))});
          idx.push_back(i);
        }
      auto logs = co_await run_each(std::move(items));
      std::vector<std::string> why;
      for (std::size_t k = 0; k < logs.size(); ++k) {
        auto i = idx[k];
        auto const& h = result.status.hosts[i];
        std::string said = logs[k].result.stdout_text;
        auto explained = explain_ray_failure(h.host, said, spec);
        std::string sentence = h.host + " (" + h.node_ip + ") did not join within " +
                               std::to_string(spec.join_timeout.count()) + " s (Ray reports it " + h.ray_state + "); " + explained +
                               likely_causes(explained);
        result.nodes[i].error = make_error_code(errc::timed_out);
        result.nodes[i].message = sentence;
        why.push_back(sentence);
      }
      if (!last.error.empty()) why.push_back("the head's Ray did not answer: " + last.error);
      if (why.empty()) why.push_back("Ray counts " + std::to_string(result.status.gpus_total) + " GPUs, " +
                                     std::to_string(expected_gpus) + " expected");
      co_return fail(make_error_code(errc::timed_out), list_of(why));
    }
    if (co_await was_cancelled()) co_return fail(make_error_code(errc::cancelled), "cancelled while waiting for the nodes to join");
    co_await sleep_for(std::chrono::milliseconds(250));
  }
  // A node Ray listed before its start command returned was started by then.
  for (auto& n : result.nodes)
    if (n.joined_ms > 0 && n.started_ms > n.joined_ms) n.started_ms = n.joined_ms;
  report_progress({"ready", result.status.alive_nodes, expected_nodes, result.status.gpus_total, expected_gpus, "ready"});
  unsigned kept = 0;
  for (auto const& d : decisions) kept += d.action == RayNodeAction::keep;
  result.total_ms = ms_since(t0);
  std::string gpus = std::to_string(static_cast<long long>(result.status.gpus_total));
  if (result.status.gpus_total != static_cast<double>(static_cast<long long>(result.status.gpus_total)))
    gpus = std::to_string(result.status.gpus_total);
  result.message = "Ray cluster '" + spec.name + "' is up: " + std::to_string(result.status.alive_nodes) + " nodes, " + gpus +
                   " GPUs" + (result.status.gpus_simulated ? " (SIMULATED)" : "") +
                   (kept == decisions.size() ? " (already running, left as it was)" : "");
  co_return std::pair{std::error_code(), std::move(result)};
}

// ---------------------------------------------------------------------------
// status, down, logs

/// A command of the runtime as a line of a host-side shell script.
std::string as_shell_line(Command const& cmd) { return cmd.argv.empty() ? cmd.script : shell::join(cmd.argv); }

awaitable<std::pair<std::error_code, RayClusterStatus>> status(RayCluster c) {
  co_await accept_every_cancellation();
  // One command per host, all at once: its route to the head and its node's
  // state; the head's also asks Ray. A host cut off costs one connect
  // timeout, not one per question.
  auto head_address = head_address_of(c);
  std::vector<RunEachItem> items;
  for (auto const& h : c.hosts()) {
    std::string script = ray_route_script(head_address) + ray_node_state_script(c.spec()) + "echo @@ck-ray-end\n";
    if (h.head) script += "echo @@ck-ray-report\n" + as_shell_line(c.runtime_command(ray_status_script(c.spec(), true))) + "\n";
    items.push_back({h.host, Command::shell(script), run_options(std::chrono::seconds(60))});
  }
  auto outs = co_await run_each(std::move(items));
  std::vector<RayNodeProbe> probes;
  std::vector<std::string> states;
  RayReport report;
  for (std::size_t i = 0; i < outs.size(); ++i) {
    auto const& o = outs[i];
    RayNodeProbe p;
    p.host = o.host;
    states.push_back(runtime_state_of(o));
    if (!o.error) {
      auto const& text = o.result.stdout_text;
      auto cut = text.find("@@ck-ray-report\n");
      try {
        p = parse_ray_probe(o.host, std::string_view(text).substr(0, cut));
      } catch (Error const&) {
      }
      if (c.hosts()[i].head) {
        report = cut == std::string::npos ? RayReport{} : parse_ray_report(std::string_view(text).substr(cut + 15));
        if (cut == std::string::npos) report.error = "the status script did not run: " + failure_of(o);
      }
    } else if (c.hosts()[i].head) {
      report.error = o.result.message.empty() ? o.error.message() : o.result.message;
    }
    // A host that cannot be asked is expected at its inventory address.
    if (p.node_ip.empty()) p.node_ip = c.hosts()[i].host.spec().address;
    probes.push_back(std::move(p));
  }
  auto plans = make_plans(c, probes);
  auto st = evaluate_ray_cluster(c.spec(), plans, report, states);
  // Versions per host, where the host's files say them. Ray refuses a node
  // of another version at join time; one upgraded in place since shows here.
  for (std::size_t i = 0; i < st.hosts.size() && i < probes.size(); ++i) {
    auto& h = st.hosts[i];
    h.ray_version = probes[i].ray_version;
    h.python_version = probes[i].python_version;
    if (!h.ray_version.empty() && !st.ray_version.empty() && h.ray_version != st.ray_version) {
      std::string problem = h.host + " has Ray " + h.ray_version + " installed, but the cluster runs " + st.ray_version +
                            "; restart it on one version (`clusterkit ray up` after installing the same Ray everywhere)";
      if (h.problem.empty()) h.problem = problem;
      st.problems.push_back(std::move(problem));
      st.healthy = false;
      st.degraded = st.alive_nodes > 0;
    }
  }
  std::error_code ec;
  if (states.front() == "unreachable") ec = make_error_code(errc::host_unreachable);
  co_return std::pair{ec, std::move(st)};
}

awaitable<std::pair<std::error_code, std::vector<RayDownOutcome>>> down(RayCluster c) {
  co_await accept_every_cancellation();
  // Workers first, then the head: a worker losing its head mid-stop only
  // logs reconnection attempts.
  auto run_stop = [&](std::vector<std::size_t> const& which) -> awaitable<std::vector<HostOutcome>> {
    std::vector<RunEachItem> items;
    for (auto i : which) items.push_back({c.hosts()[i].host, Command::shell(ray_stop_script(c.spec())), run_options(std::chrono::seconds(60))});
    co_return co_await run_each(std::move(items));
  };
  std::vector<std::size_t> workers;
  for (std::size_t i = 1; i < c.hosts().size(); ++i) workers.push_back(i);
  auto w = co_await run_stop(workers);
  std::vector<std::size_t> head_only{0};
  auto h = co_await run_stop(head_only);
  std::vector<HostOutcome> outs(c.hosts().size());
  outs[0] = std::move(h.front());
  for (std::size_t k = 0; k < workers.size(); ++k) outs[workers[k]] = std::move(w[k]);
  std::vector<RayDownOutcome> result;
  std::error_code first;
  for (auto const& o : outs) {
    RayDownOutcome d;
    d.host = o.host;
    auto removed = text_after(o.result.stdout_text, "@@ck-ray-removed ");
    if (o.error) {
      d.error = o.error;
      d.message = o.result.message.empty() ? o.host + ": " + o.error.message() : o.result.message;
    } else if (removed.empty()) {
      d.error = make_error_code(errc::program_missing);
      d.message = o.host + ": could not stop Ray: " + failure_of(o) + " " + first_line(text_after(o.result.stdout_text, "@@ck-ray-error "));
    } else {
      d.removed = first_line(removed);
      d.message = o.host + ": " + (d.removed == "nothing" ? "nothing of Ray cluster '" + c.spec().name + "' was there" : "removed " + d.removed);
    }
    if (d.error && !first) first = d.error;
    result.push_back(std::move(d));
  }
  co_return std::pair{first, std::move(result)};
}

awaitable<std::pair<std::error_code, std::vector<RayHostLogs>>> logs(RayCluster c, RayLogsOptions options) {
  co_await accept_every_cancellation();
  std::vector<RunEachItem> items;
  for (auto const& h : c.hosts())
    items.push_back({h.host, Command::shell(ray_logs_script(c.spec(), options.tail)), run_options(std::chrono::seconds(60))});
  auto outs = co_await run_each(std::move(items));
  std::vector<RayHostLogs> result;
  std::error_code first;
  for (auto const& o : outs) {
    RayHostLogs l;
    l.host = o.host;
    l.text = valid_utf8(o.result.stdout_text);
    if (o.error) {
      l.error = o.error;
      l.message = o.result.message.empty() ? o.host + ": " + o.error.message() : o.result.message;
      if (!first) first = o.error;
    }
    result.push_back(std::move(l));
  }
  co_return std::pair{first, std::move(result)};
}


}  // namespace

void start_ray_up(RayCluster cluster, RayProgressCallback progress, asio::any_completion_handler<RayUpSignature> h) {
  auto ex = cluster.head().host.get_executor();
  launch_ec<RayUpResult>(
      ex, std::move(h), [c = std::move(cluster), p = std::move(progress)]() mutable { return up(std::move(c), std::move(p)); },
      [](std::exception_ptr ep) {
        RayUpResult r;
        r.message = "ray up failed: " + exception_text(ep);
        return std::pair{make_error_code(errc::invalid_argument), std::move(r)};
      });
}

void start_ray_status(RayCluster cluster, asio::any_completion_handler<RayStatusSignature> h) {
  auto ex = cluster.head().host.get_executor();
  launch_ec<RayClusterStatus>(
      ex, std::move(h), [c = std::move(cluster)]() mutable { return status(std::move(c)); },
      [](std::exception_ptr ep) {
        RayClusterStatus s;
        s.problems.push_back("ray status failed: " + exception_text(ep));
        return std::pair{make_error_code(errc::invalid_argument), std::move(s)};
      });
}

void start_ray_down(RayCluster cluster, asio::any_completion_handler<RayDownSignature> h) {
  auto ex = cluster.head().host.get_executor();
  launch_ec<std::vector<RayDownOutcome>>(
      ex, std::move(h), [c = std::move(cluster)]() mutable { return down(std::move(c)); },
      [](std::exception_ptr ep) {
        RayDownOutcome d;
        d.error = make_error_code(errc::invalid_argument);
        d.message = "ray down failed: " + exception_text(ep);
        return std::pair{d.error, std::vector<RayDownOutcome>{d}};
      });
}

void start_ray_logs(RayCluster cluster, RayLogsOptions options, asio::any_completion_handler<RayLogsSignature> h) {
  auto ex = cluster.head().host.get_executor();
  launch_ec<std::vector<RayHostLogs>>(
      ex, std::move(h), [c = std::move(cluster), options]() mutable { return logs(std::move(c), options); },
      [](std::exception_ptr ep) {
        RayHostLogs l;
        l.error = make_error_code(errc::invalid_argument);
        l.message = "ray logs failed: " + exception_text(ep);
        return std::pair{l.error, std::vector<RayHostLogs>{l}};
      });
}

}  // namespace detail

RayCluster::RayCluster(RayClusterSpec spec, std::vector<RayHost> hosts) : spec_(std::move(spec)) {
  validate(spec_);
  if (hosts.empty()) throw Error(make_error_code(errc::invalid_argument), "a Ray cluster needs at least one host");
  std::size_t heads = 0;
  for (auto const& h : hosts) heads += h.head;
  if (heads > 1) throw Error(make_error_code(errc::invalid_argument), "more than one host is marked as the Ray head; mark one");
  if (heads == 0) {
    if (hosts.size() > 1)
      throw Error(make_error_code(errc::invalid_argument),
                  "no host is marked as the Ray head; mark one (the inventory's role `head`, or --head)");
    hosts.front().head = true;
  }
  std::set<std::string> names;
  for (auto const& h : hosts)
    if (!names.insert(h.host.name()).second)
      throw Error(make_error_code(errc::invalid_argument), "host " + h.host.name() + " is given twice to the Ray cluster");
  // The head first: it starts first and answers the status questions.
  std::stable_partition(hosts.begin(), hosts.end(), [](RayHost const& h) { return h.head; });
  hosts_ = std::move(hosts);
}

namespace {
template <class R, class Start>
R blocking_or_throw(RayCluster const& c, std::string_view what, Start&& start, std::string (*message)(R const&)) {
  auto [ec, r] = detail::block_on<std::error_code, R>(c.head().host.get_executor(), what, std::forward<Start>(start));
  if (ec) throw Error(ec, message(r).empty() ? ec.message() : message(r));
  return std::move(r);
}
}  // namespace

RayUpResult ray_up(RayCluster const& cluster, RayProgressCallback progress) {
  return blocking_or_throw<RayUpResult>(
      cluster, "clusterkit::ray_up", [&](auto h) { cluster.async_up(std::move(progress), std::move(h)); },
      [](RayUpResult const& r) { return r.message; });
}

RayClusterStatus ray_status(RayCluster const& cluster) {
  return blocking_or_throw<RayClusterStatus>(
      cluster, "clusterkit::ray_status", [&](auto h) { cluster.async_status(std::move(h)); },
      [](RayClusterStatus const& s) { return s.problems.empty() ? std::string() : s.problems.front(); });
}

std::vector<RayDownOutcome> ray_down(RayCluster const& cluster) {
  return blocking_or_throw<std::vector<RayDownOutcome>>(
      cluster, "clusterkit::ray_down", [&](auto h) { cluster.async_down(std::move(h)); },
      [](std::vector<RayDownOutcome> const& v) {
        for (auto const& d : v)
          if (d.error) return d.message;
        return std::string();
      });
}

std::vector<RayHostLogs> ray_logs(RayCluster const& cluster, RayLogsOptions options) {
  return blocking_or_throw<std::vector<RayHostLogs>>(
      cluster, "clusterkit::ray_logs", [&](auto h) { cluster.async_logs(options, std::move(h)); },
      [](std::vector<RayHostLogs> const& v) {
        for (auto const& l : v)
          if (l.error) return l.message;
        return std::string();
      });
}

nlohmann::json RayUpResult::to_json() const {
  nlohmann::json j{{"message", message}, {"total_ms", total_ms}, {"status", status.to_json()}, {"nodes", nlohmann::json::array()}};
  for (auto const& n : nodes)
    j["nodes"].push_back({{"host", n.host},
                          {"action", std::string(to_string(n.action))},
                          {"message", n.message},
                          {"error", n.error ? n.error.message() : ""},
                          {"probed_ms", n.probed_ms},
                          {"started_ms", n.started_ms},
                          {"joined_ms", n.joined_ms}});
  return j;
}

}  // namespace clusterkit
