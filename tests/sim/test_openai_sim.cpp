// OpenAIClient against llm-d-inference-sim, a vLLM SIMULATOR (no model, no
// GPU): every test starts its own simulator on a free loopback port with the
// latency and failure settings it needs, and stops it by pid at the end.
#include "clusterkit/openai_client.hpp"  // first: the header stands on its own

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <sstream>

#include "clusterkit/bench.hpp"
#include "clusterkit/runtime.hpp"
#include "sim/sim_server.hpp"
#include "support/wait.hpp"

using namespace clusterkit;
using namespace std::chrono_literals;
using cktest::Simulator;

namespace {

// A machine without the simulator fails these tests (it must not pass them
// without testing anything).
#define REQUIRE_SIMULATOR()                                                                   \
  do {                                                                                        \
    if (!Simulator::available())                                                              \
      FAIL("llm-d-inference-sim (a vLLM simulator) not found: run scripts/install-sim.sh");   \
  } while (0)

ClientOptions options_for(Simulator const& sim) {
  ClientOptions o;
  o.base_url = sim.url();
  o.proxy_from_environment = false;
  o.initial_backoff = 20ms;
  o.max_backoff = 200ms;
  return o;
}

ChatRequest echo_chat(std::string prompt, int max_tokens = 16) {
  auto r = ChatRequest::simple(Simulator::kModel, std::move(prompt));
  r.max_tokens = max_tokens;
  return r;
}

// Blocking on an async call with a cancellation signal of our own.
template <class Result>
struct Pending {
  std::promise<std::pair<std::error_code, Result>> promise;
  std::future<std::pair<std::error_code, Result>> future = promise.get_future();
  auto handler() {
    return [this](std::error_code ec, Result r) { promise.set_value({ec, std::move(r)}); };
  }
};

}  // namespace

TEST_CASE("sim: /v1/models lists the simulator's model", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim;
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto models = list_models(client);
  REQUIRE(models.models.size() == 1);
  CHECK(models.models[0].id == Simulator::kModel);
  CHECK(models.models[0].max_model_len == 1024);
  CHECK(models.raw["object"] == "list");
  CHECK(models.meta.status == 200);
  CHECK(models.meta.attempts == 1);
}

TEST_CASE("sim: a model the server does not serve: the 404 names the served models and the nearest", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim;
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto const expect_404 = [&](std::string const& model, bool streamed) -> std::string {
    auto req = ChatRequest::simple(model, "hi");
    try {
      if (streamed)
        chat_stream(client, req, [](StreamChunk const&) {});
      else
        chat(client, req);
    } catch (Error const& e) {
      CHECK(e.code() == make_error_code(errc::http_error));
      return e.what();
    }
    FAIL("model '" << model << "' was answered, though the simulator serves only " << Simulator::kModel);
    return {};
  };
  // The hub id where the server has a served name: the usual mix-up.
  for (bool streamed : {false, true}) {
    auto what = expect_404("Qwen/Qwen2.5-72B-Instruct", streamed);
    CHECK_THAT(what, Catch::Contains("answered 404"));
    CHECK_THAT(what, Catch::Contains("; " + sim.url() + " serves " + Simulator::kModel + "; did you mean '" +
                                     Simulator::kModel + "'?"));
  }
  // A name like none of them: the list, no guess.
  auto what = expect_404("llama-3-8b", false);
  CHECK_THAT(what, Catch::Contains(sim.url() + " serves " + Simulator::kModel));
  CHECK_THAT(what, !Catch::Contains("did you mean"));
}

TEST_CASE("sim: chat, plain and streamed, give the same text and consistent usage", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--mode", "echo"});
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  std::string const prompt = "The quick brown fox jumps over the lazy dog";
  auto plain = chat(client, echo_chat(prompt, 64));
  CHECK(plain.text() == prompt);  // echo mode answers with the last message
  REQUIRE(plain.choices.size() == 1);
  CHECK(plain.choices[0].role == "assistant");
  CHECK(plain.choices[0].finish_reason == "stop");
  REQUIRE(plain.usage);
  CHECK(plain.usage->total_tokens == plain.usage->prompt_tokens + plain.usage->completion_tokens);
  CHECK(plain.raw["object"] == "chat.completion");

  std::vector<StreamChunk> chunks;
  std::string assembled;
  auto streamed = chat_stream(client, echo_chat(prompt, 64), [&](StreamChunk const& c) {
    chunks.push_back(c);
    assembled += c.delta;
  });
  CHECK(streamed.text == plain.text());
  CHECK(assembled == streamed.text);
  CHECK(streamed.role == "assistant");
  CHECK(streamed.finish_reason == "stop");
  CHECK(streamed.done_marker);
  REQUIRE(streamed.usage);
  CHECK(streamed.usage->prompt_tokens == plain.usage->prompt_tokens);
  CHECK(streamed.usage->completion_tokens == plain.usage->completion_tokens);
  CHECK(streamed.usage->total_tokens == streamed.usage->prompt_tokens + streamed.usage->completion_tokens);
  // One chunk per token in the simulator; usage arrives alone, last.
  CHECK(static_cast<std::int64_t>(streamed.content_chunks) == streamed.usage->completion_tokens);
  REQUIRE(!chunks.empty());
  CHECK(chunks.back().usage.has_value());
  CHECK(chunks.back().raw["choices"].empty());
  CHECK(chunks.front().raw["object"] == "chat.completion.chunk");
  CHECK(streamed.time_to_first_token > 0ns);
}

TEST_CASE("sim: with chunk_json off, the scanner reads the same stream", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--mode", "echo"});
  Runtime rt;
  auto o = options_for(sim);
  OpenAIClient with_json(rt.executor(), o);
  o.chunk_json = false;
  OpenAIClient scanned(rt.executor(), o);
  std::string const prompt = "Pack my box with five dozen \"liquor\" jugs \\ caf\u00e9 \u2013 na\u00efve \U0001F600";
  for (bool chat_endpoint : {true, false}) {
    INFO((chat_endpoint ? "chat" : "completions"));
    auto run = [&](OpenAIClient& client, std::vector<StreamChunk>& chunks) {
      auto on_chunk = [&](StreamChunk const& c) { chunks.push_back(c); };
      if (chat_endpoint) return chat_stream(client, echo_chat(prompt, 64), on_chunk);
      CompletionRequest req;
      req.model = Simulator::kModel;
      req.prompt = prompt;
      req.max_tokens = 64;
      return complete_stream(client, req, on_chunk);
    };
    std::vector<StreamChunk> a, b;
    auto ra = run(with_json, a);
    auto rb = run(scanned, b);
    // Quotes and backslashes come back escaped in JSON (the simulator's dummy
    // tokenizer drops the non-ASCII letters, in both runs alike).
    CHECK(rb.text.find("five dozen \"liquor\" jugs \\") != std::string::npos);
    CHECK(rb.text == ra.text);
    CHECK(rb.role == ra.role);
    CHECK(rb.finish_reason == ra.finish_reason);
    CHECK(rb.model == ra.model);
    CHECK(!rb.id.empty());
    CHECK(rb.chunks == ra.chunks);
    CHECK(rb.content_chunks == ra.content_chunks);
    CHECK(rb.done_marker);
    REQUIRE(rb.usage);
    REQUIRE(ra.usage);
    CHECK(rb.usage->prompt_tokens == ra.usage->prompt_tokens);
    CHECK(rb.usage->completion_tokens == ra.usage->completion_tokens);
    CHECK(rb.usage->total_tokens == ra.usage->total_tokens);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      CHECK(b[i].delta == a[i].delta);
      CHECK(b[i].role == a[i].role);
      CHECK(b[i].finish_reason == a[i].finish_reason);
      CHECK(b[i].index == a[i].index);
      CHECK(b[i].id == rb.id);  // ids differ between the two requests
      CHECK(b[i].usage.has_value() == a[i].usage.has_value());
      CHECK(a[i].raw.is_object());
      CHECK(b[i].raw.is_null());  // not parsed when not asked for
    }
  }
}

TEST_CASE("sim: stream deadlines: an inter-token timeout longer than the gaps never fires; request_timeout does", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--inter-token-latency", "40ms"});
  Runtime rt;
  for (bool json : {true, false}) {
    INFO("chunk_json " << json);
    auto o = options_for(sim);
    o.chunk_json = json;
    o.inter_token_timeout = 150ms;  // re-armed lazily: it goes off early and is set again
    o.first_token_timeout = 2s;
    OpenAIClient client(rt.executor(), o);
    auto req = echo_chat("hi", 20);
    req.extra = {{"ignore_eos", true}};
    auto r = chat_stream(client, req);
    REQUIRE(r.usage);
    CHECK(r.usage->completion_tokens == 20);
    CHECK(client.stats().requests_sent == 1);
    o.request_timeout = 300ms;
    OpenAIClient short_lived(rt.executor(), o);
    try {
      chat_stream(short_lived, req);
      FAIL("expected a timeout");
    } catch (Error const& e) {
      CHECK(e.code() == errc::timed_out);
      CHECK(std::string(e.what()).find("request_timeout") != std::string::npos);
    }
    CHECK(short_lived.stats().open_connections == 0);
  }
}

TEST_CASE("sim: extra request fields pass through (ignore_eos, max_tokens honoured)", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim;
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto req = echo_chat("hello", 12);
  req.extra = {{"ignore_eos", true}, {"top_k", 5}, {"seed", 7}};
  auto r = chat_stream(client, req);
  REQUIRE(r.usage);
  CHECK(r.usage->completion_tokens == 12);
  CHECK(r.finish_reason == "length");
}

TEST_CASE("sim: completions, plain and streamed", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--mode", "echo"});
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  CompletionRequest req;
  req.model = Simulator::kModel;
  req.prompt = "one two three four";
  req.max_tokens = 32;
  auto plain = complete(client, req);
  CHECK(plain.text() == "one two three four");
  CHECK(plain.raw["object"] == "text_completion");
  REQUIRE(plain.usage);
  auto streamed = complete_stream(client, req);
  CHECK(streamed.text == plain.text());
  REQUIRE(streamed.usage);
  CHECK(streamed.usage->completion_tokens == plain.usage->completion_tokens);
  CHECK(streamed.usage->prompt_tokens == plain.usage->prompt_tokens);
}

TEST_CASE("sim: /health and /metrics (parsed gauges)", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim;
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto h = health(client);
  CHECK(h.ok());
  CHECK(h.meta.status == 200);
  for (int i = 0; i < 3; ++i) chat(client, echo_chat("count me", 4));
  auto m = metrics(client);
  CHECK(m.parsed.bad_lines.empty());
  CHECK(m.gauges.requests_running.has_value());
  CHECK(m.gauges.requests_waiting.has_value());
  CHECK(m.gauges.kv_cache_metric == "vllm:kv_cache_usage_perc");
  REQUIRE(m.gauges.kv_cache_usage.has_value());
  CHECK(*m.gauges.kv_cache_usage >= 0.0);
  CHECK(*m.gauges.kv_cache_usage <= 1.0);
  REQUIRE(m.gauges.prompt_tokens_total.has_value());
  CHECK(*m.gauges.prompt_tokens_total > 0);
  CHECK(m.gauges.models == std::vector<std::string>{Simulator::kModel});
  // The base URL may carry /v1 as OpenAI clients write it.
  auto o = options_for(sim);
  o.base_url = sim.url() + "/v1";
  OpenAIClient with_v1(rt.executor(), o);
  CHECK(health(with_v1).ok());
  CHECK(list_models(with_v1).models.size() == 1);
}

TEST_CASE("sim: 429 and 503 are retried with backoff, then reported with status and message", "[sim]") {
  REQUIRE_SIMULATOR();
  Runtime rt;
  SECTION("always rate limited: a clear error after the retries") {
    Simulator sim({"--failure-injection-rate", "100", "--failure-types", "rate_limit"});
    OpenAIClient client(rt.executor(), options_for(sim));
    try {
      chat(client, echo_chat("hi"));
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::http_error);
      std::string what = e.what();
      INFO(what);
      CHECK(what.find("429") != std::string::npos);
      CHECK(what.find("after 3 attempts") != std::string::npos);
    }
    Pending<CompletionResult> p;
    client.async_chat(echo_chat("hi"), p.handler());
    auto [ec, r] = p.future.get();
    CHECK(ec == errc::http_error);
    CHECK(r.meta.status == 429);
    CHECK(r.meta.attempts == 3);
    CHECK(!r.meta.server_message.empty());
    // Two backoffs of at least 10 ms and 20 ms (20 ms doubling, jitter >= 50%).
    CHECK(r.meta.duration >= 30ms);
    CHECK(client.stats().retries == 4);
  }
  SECTION("half the requests fail with 503: retries get every one through") {
    Simulator sim({"--failure-injection-rate", "50", "--failure-types", "server_error"});
    auto o = options_for(sim);
    o.max_retries = 12;
    OpenAIClient client(rt.executor(), o);
    for (int i = 0; i < 10; ++i) {
      auto r = chat(client, echo_chat("hi"));
      CHECK(r.meta.status == 200);
    }
    for (int i = 0; i < 5; ++i) CHECK(chat_stream(client, echo_chat("hi")).done_marker);
    CHECK(client.stats().retries > 0);
  }
  SECTION("no retries asked: the first 503 is the answer") {
    Simulator sim({"--failure-injection-rate", "100", "--failure-types", "server_error"});
    auto o = options_for(sim);
    o.max_retries = 0;
    OpenAIClient client(rt.executor(), o);
    Pending<StreamResult> p;
    client.async_chat_stream(echo_chat("hi"), {}, p.handler());
    auto [ec, r] = p.future.get();
    CHECK(ec == errc::http_error);
    CHECK(r.meta.status == 503);
    CHECK(r.meta.attempts == 1);
    CHECK(r.meta.server_message.find("overloaded") != std::string::npos);
  }
}

TEST_CASE("sim: first-token and inter-token timeouts", "[sim]") {
  REQUIRE_SIMULATOR();
  Runtime rt;
  SECTION("first token") {
    Simulator sim({"--time-to-first-token", "3s"});
    auto o = options_for(sim);
    o.first_token_timeout = 300ms;
    OpenAIClient client(rt.executor(), o);
    auto t0 = std::chrono::steady_clock::now();
    try {
      chat_stream(client, echo_chat("hi"));
      FAIL("expected a timeout");
    } catch (Error const& e) {
      CHECK(e.code() == errc::timed_out);
      CHECK(std::string(e.what()).find("first_token_timeout") != std::string::npos);
    }
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 300ms);
    CHECK(took < 2s);
    CHECK(client.stats().open_connections == 0);  // a timed-out connection is not reused
  }
  SECTION("between tokens") {
    Simulator sim({"--inter-token-latency", "1s"});
    auto o = options_for(sim);
    o.inter_token_timeout = 200ms;
    OpenAIClient client(rt.executor(), o);
    auto req = echo_chat("hi", 10);
    req.extra = {{"ignore_eos", true}};
    try {
      chat_stream(client, req);
      FAIL("expected a timeout");
    } catch (Error const& e) {
      CHECK(e.code() == errc::timed_out);
      CHECK(std::string(e.what()).find("inter_token_timeout") != std::string::npos);
    }
  }
  SECTION("nothing listening: connection refused, at once") {
    auto o = ClientOptions{};
    o.base_url = "http://127.0.0.1:" + std::to_string(cktest::free_port());
    o.proxy_from_environment = false;
    OpenAIClient client(rt.executor(), o);
    try {
      list_models(client);
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::connection_refused);
    }
  }
}

TEST_CASE("sim: cancelling mid-stream closes the connection", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--inter-token-latency", "100ms"});
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto req = echo_chat("hi", 100);
  req.extra = {{"ignore_eos", true}};
  asio::cancellation_signal signal;
  Pending<StreamResult> p;
  std::atomic<int> seen{0};
  std::atomic<int> open_during{0};
  auto t0 = std::chrono::steady_clock::now();
  asio::post(client.get_executor(), [&] {
    client.async_chat_stream(
        req,
        [&](StreamChunk const& c) {
          if (c.delta.empty()) return;
          if (++seen == 3) {
            open_during = cktest::established_to(sim.port());
            // The callback runs on the client's strand, so emitting here is safe.
            signal.emit(asio::cancellation_type::terminal);
          }
        },
        asio::bind_cancellation_slot(signal.slot(), p.handler()));
  });
  auto [ec, r] = p.future.get();
  CHECK(ec == errc::cancelled);
  CHECK(seen == 3);
  CHECK(r.content_chunks == 3);
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);  // 100 tokens would take 10 s
  CHECK(open_during == 1);
  CHECK(client.stats().open_connections == 0);
  CHECK(client.stats().connections_closed == 1);
  CHECK(cktest::established_to(sim.port()) == 0);
  // The client is fine afterwards, on a new connection.
  CHECK(list_models(client).models.size() == 1);
  CHECK(client.stats().connections_opened == 2);
}

TEST_CASE("sim: cancelling while waiting for the first token", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--time-to-first-token", "5s"});
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  asio::cancellation_signal signal;
  Pending<StreamResult> p;
  asio::post(client.get_executor(), [&] {
    client.async_chat_stream(echo_chat("hi"), {}, asio::bind_cancellation_slot(signal.slot(), p.handler()));
  });
  // Once the request is out (the simulator holds the first token for 5 s).
  REQUIRE(cktest::wait_until([&] { return client.stats().requests_sent == 1; }, 5s));
  asio::post(client.get_executor(), [&] { signal.emit(asio::cancellation_type::terminal); });
  REQUIRE(p.future.wait_for(2s) == std::future_status::ready);
  auto [ec, r] = p.future.get();
  CHECK(ec == errc::cancelled);
  CHECK(cktest::established_to(sim.port()) == 0);
}

TEST_CASE("sim: sequential requests reuse one kept-alive connection", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim;
  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  for (int i = 0; i < 10; ++i) {
    if (i % 2)
      chat(client, echo_chat("again"));
    else
      chat_stream(client, echo_chat("again"));
  }
  health(client);
  metrics(client);
  auto s = client.stats();
  CHECK(s.connections_opened == 1);
  CHECK(s.requests_sent == 12);
  CHECK(s.requests_reused == 11);
  CHECK(s.idle_connections == 1);
  CHECK(cktest::established_to(sim.port()) == 1);  // what the kernel sees
  client.close_idle();
  CHECK(cktest::wait_until([&] { return client.stats().open_connections == 0; }, 5s));
}

TEST_CASE("sim: concurrent streams stay within the pool size", "[sim]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--max-num-seqs", "64", "--inter-token-latency", "5ms"});
  Runtime rt;
  auto o = options_for(sim);
  o.pool_size = 4;
  OpenAIClient client(rt.executor(), o);
  std::vector<std::unique_ptr<Pending<StreamResult>>> pending;
  for (int i = 0; i < 20; ++i) {
    pending.push_back(std::make_unique<Pending<StreamResult>>());
    client.async_chat_stream(echo_chat("parallel", 8), {}, pending.back()->handler());
  }
  for (auto& p : pending) {
    auto [ec, r] = p->future.get();
    CHECK_FALSE(ec);
    CHECK(r.done_marker);
  }
  auto s = client.stats();
  CHECK(s.connections_opened == 4);
  CHECK(s.requests_sent == 20);
}

TEST_CASE("sim: TLS with a self-signed certificate", "[sim][tls]") {
  REQUIRE_SIMULATOR();
  cktest::SelfSignedCert cert;
  Simulator sim({"--ssl-certfile", cert.cert, "--ssl-keyfile", cert.key}, true);
  Runtime rt;
  SECTION("verification is on by default and refuses it, saying why and what to do") {
    OpenAIClient client(rt.executor(), options_for(sim));
    try {
      list_models(client);
      FAIL("expected a TLS error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::tls_error);
      std::string what = e.what();
      INFO(what);
      CHECK(what.find("self-signed") != std::string::npos);
      CHECK(what.find("ca_file") != std::string::npos);
      CHECK(what.find("tls_verify=false") != std::string::npos);
    }
  }
  SECTION("trusted through ca_file") {
    auto o = options_for(sim);
    o.ca_file = cert.cert;
    OpenAIClient client(rt.executor(), o);
    CHECK(list_models(client).models.size() == 1);
    CHECK(chat_stream(client, echo_chat("over tls")).done_marker);
    CHECK(client.stats().connections_opened == 1);
  }
  SECTION("the right CA but the wrong name is still refused") {
    auto o = options_for(sim);
    o.ca_file = cert.cert;
    o.base_url = "https://127.0.0.2:" + std::to_string(sim.port());
    OpenAIClient client(rt.executor(), o);
    try {
      list_models(client);
      FAIL("expected a TLS error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::tls_error);
    }
  }
  SECTION("verification explicitly off") {
    auto o = options_for(sim);
    o.tls_verify = false;
    OpenAIClient client(rt.executor(), o);
    CHECK(list_models(client).models.size() == 1);
  }
  SECTION("an unreadable CA file is refused up front") {
    auto o = options_for(sim);
    o.ca_file = "/nonexistent/ca.pem";
    CHECK_THROWS_AS(OpenAIClient(rt.executor(), o), Error);
  }
}

TEST_CASE("sim: proxies: absolute-form for http, CONNECT for https, NO_PROXY honoured", "[sim][proxy]") {
  REQUIRE_SIMULATOR();
  Runtime rt;
  SECTION("http through the proxy") {
    Simulator sim;
    cktest::TinyProxy proxy;
    auto o = options_for(sim);
    o.proxy = proxy.url();
    OpenAIClient client(rt.executor(), o);
    CHECK(client.proxy_in_use() == proxy.url());
    CHECK(list_models(client).models.size() == 1);
    CHECK(chat(client, echo_chat("via proxy")).meta.status == 200);
    auto lines = proxy.first_lines();
    REQUIRE(lines.size() == 1);  // one kept-alive connection
    CHECK(lines[0] == "GET " + sim.url() + "/v1/models HTTP/1.1");
  }
  SECTION("https through a CONNECT tunnel") {
    cktest::SelfSignedCert cert;
    Simulator sim({"--ssl-certfile", cert.cert, "--ssl-keyfile", cert.key}, true);
    cktest::TinyProxy proxy;
    auto o = options_for(sim);
    o.proxy = proxy.url();
    o.ca_file = cert.cert;
    OpenAIClient client(rt.executor(), o);
    CHECK(chat_stream(client, echo_chat("tunnelled")).done_marker);
    auto lines = proxy.first_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "CONNECT 127.0.0.1:" + std::to_string(sim.port()) + " HTTP/1.1");
  }
  SECTION("from the environment, and NO_PROXY") {
    Simulator sim;
    cktest::TinyProxy proxy;
    auto o = options_for(sim);
    o.proxy_from_environment = true;
    ::setenv("HTTP_PROXY", proxy.url().c_str(), 1);
    ::unsetenv("http_proxy");
    ::unsetenv("NO_PROXY");
    ::unsetenv("no_proxy");
    {
      OpenAIClient client(rt.executor(), o);
      CHECK(client.proxy_in_use() == proxy.url());
      list_models(client);
    }
    CHECK(proxy.first_lines().size() == 1);
    for (auto const* np : {"127.0.0.1", "localhost,127.0.0.1", "127.0.0.0/8", "*"}) {
      ::setenv("NO_PROXY", np, 1);
      OpenAIClient client(rt.executor(), o);
      CHECK(client.proxy_in_use().empty());
      list_models(client);
    }
    ::unsetenv("HTTP_PROXY");
    ::unsetenv("NO_PROXY");
    CHECK(proxy.first_lines().size() == 1);  // nothing more went through it
  }
}

TEST_CASE("sim: the API key is sent but never logged", "[sim]") {
  REQUIRE_SIMULATOR();
  std::string const key = "sk-clusterkit-test-SECRET-0123456789";
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::trace);
  auto previous = spdlog::default_logger();
  auto previous_level = spdlog::get_level();
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::trace);
  std::string diagnostics;
  {
    Simulator sim({"--failure-injection-rate", "50", "--failure-types", "rate_limit"});
    Runtime rt;
    auto o = options_for(sim);
    o.api_key = key;
    o.max_retries = 1;
    OpenAIClient client(rt.executor(), o);
    for (int i = 0; i < 6; ++i) {
      Pending<StreamResult> p;
      client.async_chat_stream(echo_chat("secret?"), {}, p.handler());
      auto [ec, r] = p.future.get();
      diagnostics += r.meta.message;
      Pending<CompletionResult> q;
      client.async_chat(echo_chat("secret?"), q.handler());
      auto [ec2, r2] = q.future.get();
      diagnostics += r2.meta.message;
    }
  }
  spdlog::set_default_logger(previous);
  spdlog::set_level(previous_level);
  auto text = log.str();
  INFO(text);
  CHECK(text.find("POST") != std::string::npos);  // debug logging did happen
  CHECK(text.find(key) == std::string::npos);
  CHECK(text.find("SECRET") == std::string::npos);
  CHECK(diagnostics.find("SECRET") == std::string::npos);
}

TEST_CASE("sim: the OpenAI Python client sees the same content and usage", "[sim][crosscheck]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--mode", "echo"});
  std::string const prompt = "Pack my box with five dozen liquor jugs";
  auto dir = cktest::temp_dir("crosscheck");
  auto out_path = (dir / "openai.json").string();
  std::string cmd = "python3 '" CLUSTERKIT_SOURCE_DIR "/tests/sim/crosscheck_openai.py' --base-url '" + sim.url() +
                    "/v1' --model " + Simulator::kModel + " --prompt '" + prompt + "' > '" + out_path + "'";
  int rc = std::system(cmd.c_str());
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 3) {
    std::filesystem::remove_all(dir);
    FAIL("the openai Python package is not installed for python3: run scripts/install-deps.sh");
  }
  REQUIRE(rc == 0);
  std::ifstream in(out_path);
  auto py = nlohmann::json::parse(in);
  std::filesystem::remove_all(dir);

  Runtime rt;
  OpenAIClient client(rt.executor(), options_for(sim));
  auto usage_json = [](std::optional<Usage> const& u) {
    REQUIRE(u);
    return nlohmann::json{{"prompt_tokens", u->prompt_tokens},
                          {"completion_tokens", u->completion_tokens},
                          {"total_tokens", u->total_tokens}};
  };
  auto c = chat(client, echo_chat(prompt, 64));
  CHECK(c.text() == py["chat"]["text"]);
  CHECK(c.choices[0].role == py["chat"]["role"]);
  CHECK(c.choices[0].finish_reason == py["chat"]["finish_reason"]);
  CHECK(usage_json(c.usage) == py["chat"]["usage"]);

  auto cs = chat_stream(client, echo_chat(prompt, 64));
  CHECK(cs.text == py["chat_stream"]["text"]);
  CHECK(cs.role == py["chat_stream"]["role"]);
  CHECK(cs.finish_reason == py["chat_stream"]["finish_reason"]);
  CHECK(usage_json(cs.usage) == py["chat_stream"]["usage"]);
  CHECK(cs.chunks == py["chat_stream"]["chunks"].get<std::size_t>());

  CompletionRequest req;
  req.model = Simulator::kModel;
  req.prompt = prompt;
  req.max_tokens = 64;
  auto k = complete(client, req);
  CHECK(k.text() == py["completion"]["text"]);
  CHECK(usage_json(k.usage) == py["completion"]["usage"]);
  auto ks = complete_stream(client, req);
  CHECK(ks.text == py["completion_stream"]["text"]);
  CHECK(usage_json(ks.usage) == py["completion_stream"]["usage"]);
  CHECK(ks.chunks == py["completion_stream"]["chunks"].get<std::size_t>());
}

// ---------------------------------------------------------------------------
// The benchmark's load generator (include/clusterkit/bench.hpp)

TEST_CASE("sim: run_bench at a fixed concurrency counts every request and token", "[sim][bench]") {
  REQUIRE_SIMULATOR();
  Simulator sim(std::vector<std::string>{});
  BenchSpec spec;
  spec.url = sim.url();
  spec.concurrency = 3;
  spec.requests = 12;
  spec.max_tokens = 5;
  spec.prompt_tokens = 10;
  std::vector<BenchProgress> progress;
  spec.progress_interval = 0.01;
  auto r = run_bench(spec, [&](BenchProgress const& p) { progress.push_back(p); });
  CHECK(r.spec.model == Simulator::kModel);  // looked up
  CHECK(r.summary.completed == 12);
  CHECK(r.summary.failed == 0);
  CHECK(r.summary.output_tokens == 12 * 5);  // ignore_eos: exactly max_tokens
  CHECK(r.samples.size() == 12);
  CHECK(r.warmed_connections == 3);
  CHECK(r.itl.size() == 12 * 4);  // 5 tokens: 4 gaps each
  for (auto const& x : r.samples) {
    CHECK(x.ok());
    CHECK(x.ttft > 0);
    CHECK(x.e2e >= x.ttft);
  }
  REQUIRE(!progress.empty());
  CHECK(progress.back().completed == 12);
  CHECK(progress.back().fraction == 1.0);
}

TEST_CASE("sim: run_bench at a rate sends the planned arrivals, over a cap they wait", "[sim][bench]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--time-to-first-token", "100ms"});
  BenchSpec spec;
  spec.url = sim.url();
  spec.model = Simulator::kModel;
  spec.rate = 200;  // far faster than one request in flight can go
  spec.concurrency = 1;
  spec.requests = 5;
  spec.max_tokens = 2;
  auto r = run_bench(spec);
  CHECK(r.summary.completed == 5);
  // One at a time, each ~100 ms: the last waited its turn, and that wait is in its TTFT.
  CHECK(r.samples.back().ttft > 0.3);
  CHECK(r.summary.duration > 0.45);
}

TEST_CASE("sim: async_run_bench stops on cancellation with what it measured", "[sim][bench]") {
  REQUIRE_SIMULATOR();
  Simulator sim({"--time-to-first-token", "5s"});
  Runtime rt;
  BenchSpec spec;
  spec.url = sim.url();
  spec.model = Simulator::kModel;
  spec.concurrency = 2;
  spec.requests = 6;
  spec.warmup = false;
  asio::cancellation_signal signal;
  std::promise<std::pair<std::error_code, BenchResult>> done;
  auto t0 = std::chrono::steady_clock::now();
  async_run_bench(rt.executor(), spec, {},
                  asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, BenchResult r) {
                    done.set_value({ec, std::move(r)});
                  }));
  REQUIRE(cktest::wait_until([&] { return cktest::established_to(sim.port()) == 2; }, 5s));
  asio::post(rt.executor(), [&] { signal.emit(asio::cancellation_type::terminal); });
  auto f = done.get_future();
  REQUIRE(f.wait_for(3s) == std::future_status::ready);
  auto [ec, r] = f.get();
  CHECK(ec == errc::cancelled);
  CHECK(r.cancelled);
  CHECK(r.samples.size() == 2);  // the two in flight, never the four not sent
  CHECK(r.summary.failed == 2);
  CHECK(r.summary.errors.count("cancelled (the run was stopped)") == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);
  CHECK(cktest::wait_until([&] { return cktest::established_to(sim.port()) == 0; }, 3s));
}

TEST_CASE("sim: run_bench refuses settings out of range before any request", "[sim][bench]") {
  BenchSpec spec;
  spec.url = "http://127.0.0.1:1";
  spec.requests = 0;
  spec.rate = -1;
  try {
    run_bench(spec);
    FAIL("no error");
  } catch (Error const& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("requests (--requests): 0 is not in 1..10000000") != std::string::npos);
    CHECK(std::string(e.what()).find("rate (--rate): -1") != std::string::npos);
  }
}
