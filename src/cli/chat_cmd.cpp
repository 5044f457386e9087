// `clusterkit chat`: one question to an OpenAI-compatible server, the answer
// streamed to the terminal as it is generated.
#include <cmath>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>

#include "clusterkit/openai_client.hpp"
#include "common.hpp"
#include "core/text.hpp"

namespace clusterkit::cli {
namespace {

struct ChatArgs {
  std::string url;
  std::string model;
  std::string api_key;
  std::string api_key_file;
  std::string system;
  std::string prompt;
  std::string ca_file;
  std::optional<std::int64_t> max_tokens;
  std::optional<double> temperature;
  double timeout = 600;
  bool insecure = false;
  bool no_stream = false;
};

int run_chat(GlobalOptions const& g, ChatArgs const& a) {
  std::string prompt = a.prompt;
  if (prompt.empty() || prompt == "-") {
    // Bounded: `chat - < /dev/zero` must not read until memory runs out.
    constexpr std::size_t most = 16u << 20;
    prompt.clear();
    char buffer[65536];
    while (std::cin.read(buffer, sizeof buffer) || std::cin.gcount() > 0) {
      prompt.append(buffer, static_cast<std::size_t>(std::cin.gcount()));
      if (prompt.size() > most)
        throw Error(make_error_code(errc::invalid_argument),
                    "the prompt on stdin is larger than 16 MiB; a prompt that long is more than any model's context");
    }
  }
  if (!std::isfinite(a.timeout) || a.timeout <= 0 || a.timeout > 1e6)
    throw Error(make_error_code(errc::invalid_argument), "--timeout must be a number of seconds in (0, 1000000]");
  if (a.max_tokens && (*a.max_tokens < 1 || *a.max_tokens > 10'000'000))
    throw Error(make_error_code(errc::invalid_argument),
                "--max-tokens: " + std::to_string(*a.max_tokens) + " is not in 1..10000000");
  if (a.temperature && !(std::isfinite(*a.temperature) && *a.temperature >= 0 && *a.temperature <= 2))
    throw Error(make_error_code(errc::invalid_argument),
                "--temperature: " + [&] {
                  char b[32];
                  std::snprintf(b, sizeof b, "%g", *a.temperature);
                  return std::string(b);
                }() + " is not in 0..2 (0 is greedy)");
  if (prompt.empty()) throw Error(make_error_code(errc::invalid_argument), "no prompt given (argument, or on stdin)");
  Runtime rt;
  ClientOptions o;
  o.base_url = a.url;
  o.api_key = resolve_api_key(a.api_key, a.api_key_file, a.url);
  o.tls_verify = !a.insecure;
  o.ca_file = a.ca_file;
  o.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout * 1000));
  o.chunk_json = false;  // only the deltas are printed
  OpenAIClient client(rt.executor(), o);
  std::string model = a.model;
  if (model.empty()) {
    auto models = list_models(client);
    if (models.models.empty())
      throw Error(make_error_code(errc::protocol_error), a.url + " serves no model; pass --model");
    model = models.models.front().id;
  }
  // A model name the server does not serve answers 404; the client's error
  // names the served ones (and the nearest): add the flag that takes them.
  auto with_served_models = [&](Error const& e) -> Error {
    std::string what = e.what();
    if (what.find("answered 404") == std::string::npos || what.find(" serves ") == std::string::npos) return e;
    return Error(e.code(), what + " (pass one with --model, or leave --model out for the first)");
  };
  auto req = ChatRequest::simple(model, prompt, a.system);
  if (a.max_tokens) req.max_tokens = *a.max_tokens;
  if (a.temperature) req.temperature = *a.temperature;
  try {
  if (a.no_stream || g.json) {
    auto r = chat(client, req);
    if (g.json)
      print_json(r.raw);  // the server's answer, with "clusterkit_version" beside its fields
    else
      std::cout << r.text() << std::endl;
    return 0;
  }
  auto r = chat_stream(client, req, [](StreamChunk const& c) {
    if (c.delta.empty()) return;
    std::fwrite(c.delta.data(), 1, c.delta.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (g.verbose || ::isatty(2)) {
    double ttft = std::chrono::duration<double, std::milli>(r.time_to_first_token).count();
    double total = std::chrono::duration<double>(r.meta.duration).count();
    if (r.usage)
      std::fprintf(stderr, "[%s: %lld prompt + %lld completion tokens, first token %.0f ms, %.1f s, finish: %s]\n",
                   model.c_str(), static_cast<long long>(r.usage->prompt_tokens),
                   static_cast<long long>(r.usage->completion_tokens), ttft, total,
                   r.finish_reason.empty() ? "-" : r.finish_reason.c_str());
  }
  return 0;
  } catch (Error const& e) {
    throw with_served_models(e);
  }
}

}  // namespace

void register_chat(CLI::App& app, GlobalOptions& g, Action& action) {
  auto a = std::make_shared<ChatArgs>();
  auto* sub = app.add_subcommand("chat", "Ask an OpenAI-compatible server (vLLM) and stream the answer as it comes");
  sub->add_option("--url", a->url, "Server URL (http://host:8000 or https://host/v1)")->required();
  sub->add_option("--model", a->model, "Model name (default: the first the server lists)");
  sub->add_option("--api-key", a->api_key, "Bearer token (default: $OPENAI_API_KEY, else the key `serve up` stored for --url)")
      ->envname("OPENAI_API_KEY");
  sub->add_option("--api-key-file", a->api_key_file, "Read the bearer token from this file (keeps it out of `ps`)");
  sub->add_option("--system", a->system, "A system message");
  sub->add_option("--max-tokens", a->max_tokens, "Longest answer in tokens");
  sub->add_option("--temperature", a->temperature, "Sampling temperature");
  sub->add_option("--timeout", a->timeout, "Seconds for the whole answer (default 600)");
  sub->add_option("--ca-file", a->ca_file, "PEM file of CAs to trust for https");
  sub->add_flag("--insecure", a->insecure, "Do not verify the server's TLS certificate (test servers only)");
  sub->add_flag("--no-stream", a->no_stream, "Wait for the whole answer instead of streaming");
  sub->add_option("prompt", a->prompt, "The question ('-' or nothing: read stdin)");
  sub->callback([&g, &action, a] { action = [&g, a] { return run_chat(g, *a); }; });
}

}  // namespace clusterkit::cli
