// `clusterkit up|status|logs|down SPEC` (and `plan SPEC`): the whole seed
// from one deployment spec (examples/deployments/).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <mutex>

#include "clusterkit/deployment.hpp"
#include "cluster_args.hpp"
#include "common.hpp"
#include "signals.hpp"
#include "core/block_on.hpp"

namespace clusterkit::cli {
namespace {

/// One line per step per host, as they happen; a step's own phases (the
/// engine's start) redraw one line on a terminal.
class DeployProgress {
public:
  void operator()(DeploymentProgress const& p) {
    std::lock_guard lock(mutex_);
    char head[64];
    std::snprintf(head, sizeof head, "[%6.1fs] %-9s %-6s ", p.elapsed_seconds, p.step.c_str(), p.host.c_str());
    bool const final_state = p.status == "ok" || p.status == "failed" || p.status == "skipped" || p.status == "running";
    std::string line = terminal_safe(head + (final_state ? p.status + "  " : std::string()) + p.message);
    if (line.size() > 220) line = line.substr(0, 217) + "...";
    if (!final_state && tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      transient_ = true;
    } else {
      if (transient_) std::fprintf(stderr, "\r\033[K");
      transient_ = false;
      if (final_state || !tty_) std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  void end() {
    std::lock_guard lock(mutex_);
    if (transient_) std::fprintf(stderr, "\n");
    transient_ = false;
  }

private:
  std::mutex mutex_;
  bool tty_ = ::isatty(2) != 0;
  bool transient_ = false;
};

struct DeployArgs {
  std::string spec;
  bool unmount_nas = false;
  bool remove_model = false;
  std::string host;
  unsigned tail = 200;
  bool follow = false;
};

}  // namespace

int run_deployment_plan(GlobalOptions const& g, std::string const& spec_path, bool full) {
  Runtime rt;
  Deployment d(rt.executor(), load_deployment_spec(spec_path));
  auto [ec, plan] = detail::block_on<std::error_code, DeploymentPlanResult>(rt.executor(), "plan",
                                                                             [&](auto h) { d.async_plan(std::move(h)); });
  if (g.json)
    print_json(plan.to_json());
  else
    print_report(plan.text(full));
  return ec ? 1 : 0;
}

void register_deploy(CLI::App& app, GlobalOptions& g, Action& action) {
  auto u = std::make_shared<DeployArgs>();
  auto* up = app.add_subcommand("up", "Deploy: preflight, NAS, model, verify, layout, Ray, vLLM, smoke test, benchmark (idempotent, "
                                      "resumable)");
  up->add_option("spec", u->spec, "The deployment spec (YAML; see examples/deployments/)")->required();
  up->callback([&g, &action, u] {
    action = [&g, u] {
      SignalsToStop::current().explain("the running step is cancelled and recorded; `clusterkit up " + u->spec + "` resumes from it",
                                       "`clusterkit down " + u->spec + "` removes what up started");
      Runtime rt;
      Deployment d(rt.executor(), load_deployment_spec(u->spec));
      DeployProgress progress;
      auto [ec, record] = detail::block_on<std::error_code, DeploymentRecord>(rt.executor(), "up", [&](auto h) {
        d.async_up([&progress](DeploymentProgress const& p) { progress(p); }, std::move(h));
      });
      progress.end();
      if (g.json) {
        auto j = record.to_json();
        j["ok"] = !ec;
        print_json(j);
      } else {
        print_report(record.summary());
        std::printf("record:    %s\n", deployment_record_path(d.spec()).c_str());
      }
      return ec ? 1 : 0;
    };
  });

  auto s = std::make_shared<DeployArgs>();
  auto* status = app.add_subcommand("status", "Every layer of a deployment: hosts, NAS, model, Ray nodes, the engine (DEGRADED "
                                              "when a part is down)");
  status->add_option("spec", s->spec, "The deployment spec")->required();
  status->callback([&g, &action, s] {
    action = [&g, s] {
      Runtime rt;
      Deployment d(rt.executor(), load_deployment_spec(s->spec));
      auto [ec, st] = detail::block_on<std::error_code, DeploymentStatus>(rt.executor(), "status",
                                                                          [&](auto h) { d.async_status(std::move(h)); });
      if (g.json)
        print_json(st.to_json());
      else
        print_report(st.summary());
      return !ec && st.state == "up" ? 0 : 1;
    };
  });

  auto l = std::make_shared<DeployArgs>();
  auto* logs = app.add_subcommand("logs", "The engine's log (or a host's Ray logs with --host)");
  logs->add_option("spec", l->spec, "The deployment spec")->required();
  logs->add_option("--host", l->host, "A Ray host's logs instead of the engine's");
  logs->add_option("--tail", l->tail, "Last lines (0: all)")->capture_default_str();
  logs->add_flag("-f,--follow", l->follow, "Keep printing the engine's log as it grows, like tail -F (Ctrl-C to stop)");
  logs->callback([&g, &action, l] {
    action = [&g, l] {
      Runtime rt;
      Deployment d(rt.executor(), load_deployment_spec(l->spec));
      VllmLogsOptions o;
      o.tail = l->tail;
      if (l->follow) {
        o.follow = true;
        o.on_line = print_line;
      }
      if (l->follow && g.json) bad_argument(logs_json_follow_refusal);
      auto [ec, text] = detail::block_on<std::error_code, std::string>(
          rt.executor(), "logs", [&](auto h) { d.async_logs(l->host, o, std::move(h)); });
      if (l->follow && ec == make_error_code(errc::cancelled)) return 130;  // Ctrl-C: how following ends
      return print_log(g, ec, text);
    };
  });

  auto d = std::make_shared<DeployArgs>();
  auto* down = app.add_subcommand("down", "Remove what `up` started (engine, Ray, containers); the NAS and the model stay unless asked");
  down->add_option("spec", d->spec, "The deployment spec")->required();
  down->add_flag("--unmount-nas", d->unmount_nas, "Also unmount the NAS on every host");
  down->add_flag("--remove-model", d->remove_model, "Also delete the model folder on the NAS and the download host's copy");
  down->callback([&g, &action, d] {
    action = [&g, d] {
      Runtime rt;
      Deployment dep(rt.executor(), load_deployment_spec(d->spec));
      DeploymentDownOptions o;
      o.unmount_nas = d->unmount_nas;
      o.remove_model = d->remove_model;
      auto [ec, r] = detail::block_on<std::error_code, DeploymentDownResult>(rt.executor(), "down",
                                                                             [&](auto h) { dep.async_down(o, std::move(h)); });
      for (auto const& x : r.removed) std::printf("removed: %s\n", terminal_safe(x).c_str());
      for (auto const& x : r.problems) std::fprintf(stderr, "problem: %s\n", terminal_safe(x).c_str());
      return ec ? 1 : 0;
    };
  });
}

}  // namespace clusterkit::cli
