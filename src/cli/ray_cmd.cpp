// `clusterkit ray up|status|down|logs`: the seed's Ray cluster (a head on one
// GPU server, a worker on every other), in Docker or bare, on an inventory.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <mutex>

#include "clusterkit/ray_cluster.hpp"
#include "cluster_args.hpp"
#include "common.hpp"
#include "signals.hpp"
#include "core/block_on.hpp"

namespace clusterkit::cli {
namespace {

int print_up(GlobalOptions const& g, RayUpResult const& r, std::error_code ec) {
  if (g.json) {
    auto j = r.to_json();
    j["ok"] = !ec;
    print_json(j);
    return ec ? 1 : 0;
  }
  for (auto const& n : r.nodes)
    std::printf("%-12s %-8s %s%s\n", n.host.c_str(), std::string(to_string(n.action)).c_str(), n.error ? "FAILED: " : "",
                terminal_safe(n.message).c_str());
  if (!ec) print_report(r.status.summary());
  std::fflush(stdout);
  std::fprintf(stderr, "%s (%.1f s)\n", terminal_safe(r.message).c_str(), r.total_ms / 1000.0);
  return ec ? 1 : 0;
}

}  // namespace

void register_ray(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* ray = app.add_subcommand("ray", "The Ray cluster: a head and a worker per GPU host, in Docker or bare");
  ray->require_subcommand(1);

  auto u = std::make_shared<RayArgs>();
  auto* up = ray->add_subcommand("up", "Start Ray on every host (head first), wait until Ray reports every node and GPU; "
                                       "a cluster already up as asked is left alone");
  add_selection(up, *u);
  add_start_options(up, *u);
  up->callback([&g, &action, u] {
    action = [&g, u] {
      SignalsToStop::current().explain("cancelling Ray's start on the hosts",
                                       "`clusterkit ray down` with the same options removes what started");
      Runtime rt;
      auto cluster = cluster_of(g, *u, rt);
      ProgressLine progress;
      auto [ec, result] = detail::block_on<std::error_code, RayUpResult>(rt.executor(), "ray up", [&](auto h) {
        cluster.async_up(
            [&progress](RayProgress const& p) {
              char gpus[64];
              std::snprintf(gpus, sizeof gpus, "%g/%g", p.gpus, p.expected_gpus);
              progress.show("ray: " + p.phase + ": " + std::to_string(p.alive_nodes) + "/" + std::to_string(p.expected_nodes) +
                            " nodes, " + gpus + " GPUs; " + p.message);
            },
            std::move(h));
      });
      progress.end();
      return print_up(g, result, ec);
    };
  });

  auto s = std::make_shared<RayArgs>();
  auto* status = ray->add_subcommand("status", "Nodes (alive, dead, missing), resources and versions, per host");
  add_selection(status, *s);
  status->callback([&g, &action, s] {
    action = [&g, s] {
      Runtime rt;
      auto cluster = cluster_of(g, *s, rt);
      auto [ec, st] = detail::block_on<std::error_code, RayClusterStatus>(rt.executor(), "ray status",
                                                                          [&](auto h) { cluster.async_status(std::move(h)); });
      if (g.json)
        print_json(st.to_json());
      else
        print_report(st.summary());
      return st.healthy && !ec ? 0 : 1;
    };
  });

  auto d = std::make_shared<RayArgs>();
  auto* down = ray->add_subcommand("down", "Stop Ray and remove its containers (or processes and temp dir) on every host");
  add_selection(down, *d);
  down->callback([&g, &action, d] {
    action = [&g, d] {
      Runtime rt;
      auto cluster = cluster_of(g, *d, rt);
      auto [ec, outs] = detail::block_on<std::error_code, std::vector<RayDownOutcome>>(
          rt.executor(), "ray down", [&](auto h) { cluster.async_down(std::move(h)); });
      if (g.json) {
        nlohmann::json j = nlohmann::json::array();
        for (auto const& o : outs)
          j.push_back({{"host", o.host}, {"removed", o.removed}, {"message", o.message}, {"ok", !o.error}});
        print_json(j);
      } else {
        for (auto const& o : outs) std::printf("%-12s %s%s\n", o.host.c_str(), o.error ? "FAILED: " : "", terminal_safe(o.message).c_str());
      }
      return ec ? 1 : 0;
    };
  });

  auto l = std::make_shared<RayArgs>();
  auto* logs = ray->add_subcommand("logs", "Each node's output and Ray's raylet/GCS logs");
  add_selection(logs, *l);
  logs->add_option("--tail", l->tail, "Last lines of each log (0: all)")->capture_default_str();
  logs->add_option("--host", l->host, "Only this host");
  logs->callback([&g, &action, l] {
    action = [&g, l] {
      Runtime rt;
      auto cluster = cluster_of(g, *l, rt);
      RayLogsOptions o;
      o.tail = l->tail;
      auto [ec, all] = detail::block_on<std::error_code, std::vector<RayHostLogs>>(
          rt.executor(), "ray logs", [&](auto h) { cluster.async_logs(o, std::move(h)); });
      bool found = l->host.empty();
      auto as_json = nlohmann::json::array();
      for (auto const& x : all) {
        if (!l->host.empty() && x.host != l->host) continue;
        found = true;
        if (g.json) {
          // One object per host: the logs as text (invalid UTF-8 replaced).
          as_json.push_back({{"host", x.host}, {"ok", !x.error}, {"text", x.text}, {"message", x.message}});
          continue;
        }
        std::printf("===== %s =====\n", x.host.c_str());
        std::fwrite(x.text.data(), 1, x.text.size(), stdout);
        if (x.error) std::fprintf(stderr, "%s\n", terminal_safe(x.message).c_str());
      }
      if (!found) bad_argument("--host " + l->host + " is not one of the cluster's hosts");
      if (g.json) print_json(as_json);
      return ec ? 1 : 0;
    };
  });
}

}  // namespace clusterkit::cli
