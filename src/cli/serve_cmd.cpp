// `clusterkit serve up|status|logs|down`: `vllm serve` in the Ray cluster's
// runtime on the head (the seed's steps 4-5), followed until it answers.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "clusterkit/vllm_serve.hpp"
#include "cluster_args.hpp"
#include "common.hpp"
#include "signals.hpp"
#include "core/block_on.hpp"

namespace clusterkit::cli {
namespace {

struct ServeArgs {
  RayArgs ray;
  VllmServeSpec spec;
  std::string backend = "ray";
  std::string api_key_env;
  double ready_timeout = 0;
  bool no_wait = false;
  std::string vllm_command;
  std::vector<std::string> env;
  unsigned tail = 200;
  bool follow = false;
};

void add_engine_options(CLI::App* sub, ServeArgs& a) {
  sub->add_option("--model", a.spec.model, "The model's path as the engine sees it (e.g. /models/Qwen2___5-72B-Instruct)");
  sub->add_option("--served-model-name", a.spec.served_model_name, "The name clients ask for (default: the folder's name)");
  sub->add_option("--tp,--tensor-parallel-size", a.spec.tensor_parallel, "Tensor parallel size (`clusterkit plan` recommends one)")
      ->capture_default_str();
  sub->add_option("--pp,--pipeline-parallel-size", a.spec.pipeline_parallel, "Pipeline parallel size")->capture_default_str();
  sub->add_option("--max-model-len", a.spec.max_model_len, "vLLM's --max-model-len");
  sub->add_option("--gpu-memory-utilization", a.spec.gpu_memory_utilization, "vLLM's --gpu-memory-utilization, in (0, 1]");
  sub->add_option("--dtype", a.spec.dtype, "vLLM's --dtype (default: auto)");
  sub->add_option("--serve-port", a.spec.port, "The API's port on the head")->capture_default_str();
  sub->add_option("--serve-host", a.spec.host, "The API's address on the head")->capture_default_str();
  sub->add_option("--backend", a.backend, "ray (across the cluster), mp (one host), multinode (vLLM's --nnodes, no Ray)")
      ->check(CLI::IsMember({"ray", "mp", "multinode"}))
      ->capture_default_str();
  sub->add_option("--arg", a.spec.extra_args, "An extra `vllm serve` argument (repeatable; --arg=--enforce-eager)");
  sub->add_option("--engine-env", a.env, "KEY=VALUE in the engine's environment (repeatable)");
  sub->add_option("--vllm", a.vllm_command, "The vllm program (default: vllm from PATH, or VENV/bin/vllm)");
  sub->add_option("--api-key-env", a.api_key_env, "Take the API key from this environment variable (default: the stored one, "
                                                  "or a new one)");
  sub->add_flag("--no-api-key", a.spec.no_api_key, "Serve without an API key (anyone who reaches the port can use it)");
  sub->add_option("--api-key-file", a.spec.api_key_file, "Where the key is kept on this machine (mode 0600)");
  sub->add_option("--ready-timeout", a.ready_timeout, "Seconds to wait for the engine to serve (default 1800)");
}

VllmServe serve_of(GlobalOptions const& g, ServeArgs& a, Runtime& rt) {
  auto cluster = cluster_of(g, a.ray, rt);
  auto spec = a.spec;
  spec.name = a.ray.name;
  spec.backend = *executor_backend_from_string(a.backend);
  if (!a.vllm_command.empty()) {
    spec.vllm_command = a.vllm_command;
  } else if (auto const& ray = cluster.spec().ray_command; ray.find('/') != std::string::npos) {
    spec.vllm_command = ray.substr(0, ray.rfind('/')) + "/vllm";  // the same venv as Ray's
  }
  for (auto const& kv : a.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) bad_argument("--engine-env '" + kv + "' is not KEY=VALUE");
    spec.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (!a.api_key_env.empty()) {
    char const* v = std::getenv(a.api_key_env.c_str());
    if (!v || !*v) bad_argument("--api-key-env " + a.api_key_env + ": that variable is not set");
    spec.api_key = v;
  }
  if (auto t = checked_seconds(a.ready_timeout, "--ready-timeout", 1, 604800, "the default, 1800"); t.count() > 0)
    spec.ready_timeout = std::chrono::duration_cast<std::chrono::seconds>(t);
  return VllmServe(std::move(spec), std::move(cluster));
}

}  // namespace

void register_serve(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* serve = app.add_subcommand("serve", "vLLM on the Ray cluster: launch, follow until it answers, status, logs, stop");
  serve->require_subcommand(1);

  auto u = std::make_shared<ServeArgs>();
  auto* up = serve->add_subcommand("up", "Launch `vllm serve` on the head and wait until it answers a real request");
  add_selection(up, u->ray);
  add_engine_options(up, *u);
  up->add_flag("--no-wait", u->no_wait, "Return once launched; `serve status` follows it");
  up->callback([&g, &action, u] {
    if (u->spec.model.empty()) bad_argument("serve up needs --model (the model's path as the engine sees it)");
    action = [&g, u] {
      SignalsToStop::current().explain("stopped waiting; the engine, once launched, keeps starting",
                                       "`clusterkit serve down` with the same options stops the engine");
      Runtime rt;
      auto s = serve_of(g, *u, rt);
      auto [ec, launched] = detail::block_on<std::error_code, VllmUpResult>(rt.executor(), "serve up",
                                                                           [&](auto h) { s.async_up(std::move(h)); });
      if (ec) {
        std::fprintf(stderr, "%s\n", terminal_safe(launched.message).c_str());
        return 1;
      }
      std::fprintf(stderr, "%s\n", terminal_safe(launched.message).c_str());
      if (u->no_wait) return 0;
      ProgressLine progress;
      auto [wec, ready] = detail::block_on<std::error_code, VllmReady>(rt.executor(), "serve up", [&](auto h) {
        s.async_wait_ready(
            [&progress](VllmProgress const& p) {
              char head[64];
              std::snprintf(head, sizeof head, "vllm: %5.0f s %-10s ", p.elapsed_seconds, p.phase.c_str());
              progress.show(head + p.message.substr(0, 150));
            },
            std::move(h));
      });
      progress.end();
      if (g.json) {
        auto j = ready.to_json();
        j["ok"] = !wec;
        j["api_key_file"] = launched.api_key_file;
        print_json(j);
      } else {
        std::printf("%s\n", terminal_safe(ready.message).c_str());
        if (!wec) {
          std::printf("endpoint:  %s/v1\n", ready.endpoint.c_str());
          if (!launched.api_key_file.empty()) std::printf("api key:   %s (mode 0600)\n", launched.api_key_file.c_str());
          std::printf("try:       clusterkit chat --url %s --model %s \"Who are you?\"\n", ready.endpoint.c_str(),
                      ready.served_model_name.c_str());
        }
      }
      return wec ? 1 : 0;
    };
  });

  auto s = std::make_shared<ServeArgs>();
  auto* status = serve->add_subcommand("status", "The engine: up / DEGRADED / starting / down, served model, requests, KV cache, "
                                                 "Ray's nodes");
  add_selection(status, s->ray);
  add_engine_options(status, *s);
  status->callback([&g, &action, s] {
    action = [&g, s] {
      Runtime rt;
      if (s->spec.model.empty()) s->spec.model = "-";  // only the name matters here
      auto sv = serve_of(g, *s, rt);
      auto [ec, st] = detail::block_on<std::error_code, VllmStatus>(rt.executor(), "serve status",
                                                                    [&](auto h) { sv.async_status(std::move(h)); });
      if (g.json)
        print_json(st.to_json());
      else
        print_report(st.summary());
      return !ec && st.state == "up" ? 0 : 1;
    };
  });

  auto l = std::make_shared<ServeArgs>();
  auto* logs = serve->add_subcommand("logs", "The engine's log (on the head)");
  add_selection(logs, l->ray);
  logs->add_option("--tail", l->tail, "Last lines (0: all)")->capture_default_str();
  logs->add_flag("-f,--follow", l->follow, "Keep printing the log as it grows, like tail -F (Ctrl-C to stop)");
  logs->callback([&g, &action, l] {
    action = [&g, l] {
      Runtime rt;
      l->spec.model = "-";
      auto sv = serve_of(g, *l, rt);
      VllmLogsOptions o;
      o.tail = l->tail;
      if (l->follow) {
        o.follow = true;
        o.on_line = print_line;
      }
      if (l->follow && g.json) bad_argument(logs_json_follow_refusal);
      auto [ec, text] = detail::block_on<std::error_code, std::string>(rt.executor(), "serve logs",
                                                                       [&](auto h) { sv.async_logs(o, std::move(h)); });
      if (l->follow && ec == make_error_code(errc::cancelled)) return 130;  // Ctrl-C: how following ends
      return print_log(g, ec, text);
    };
  });

  auto d = std::make_shared<ServeArgs>();
  auto* down = serve->add_subcommand("down", "Stop the engine (SIGINT, then SIGKILL after 30 s) and remove its files");
  add_selection(down, d->ray);
  down->add_option("--backend", d->backend, "The backend it was started with (multinode stops every host)")
      ->check(CLI::IsMember({"ray", "mp", "multinode"}));
  down->callback([&g, &action, d] {
    action = [&g, d] {
      Runtime rt;
      d->spec.model = "-";
      auto sv = serve_of(g, *d, rt);
      auto [ec, r] = detail::block_on<std::error_code, VllmDownResult>(rt.executor(), "serve down",
                                                                       [&](auto h) { sv.async_down(std::move(h)); });
      std::fprintf(ec ? stderr : stdout, "%s\n", terminal_safe(r.message).c_str());
      return ec ? 1 : 0;
    };
  });
}

}  // namespace clusterkit::cli
