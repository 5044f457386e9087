// The load generator behind `clusterkit bench`, for C++ and Python callers:
// load an OpenAI-compatible server (vLLM) at a fixed concurrency or a
// Poisson request rate, and report TTFT, TPOT, ITL, end-to-end latency,
// throughput and errors the way `vllm bench serve` defines them.
//
// Every latency counts from the request's *scheduled* send time: when the
// client falls behind (a saturated pool, a busy core), that delay shows in
// TTFT instead of being hidden (vLLM issue 54101). A run drives one
// io_context on one thread of its own, so the caller's other work cannot
// delay it (pin the process with `taskset` for comparable numbers).
//
// The pure half (BenchSpec::problems, summarize, the report, the plot) is in
// src/openai/bench.cpp and tested without sockets; the run in bench_io.cpp.
//
//   clusterkit::BenchSpec spec;
//   spec.url = "http://10.0.0.1:8000";
//   spec.concurrency = 8;
//   spec.requests = 200;
//   auto result = clusterkit::run_bench(spec);   // on this thread
//   std::cout << result.to_text();
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace clusterkit {

namespace asio = boost::asio;

/// What to run. Unset optional fields take the defaults below; a field that
/// is set must be in range (problems() names each one that is not).
struct BenchSpec {
  /// "http://host:8000" or "https://host/v1".
  std::string url;
  /// Empty: the first model the server lists.
  std::string model;
  /// Sent as a bearer token, never logged nor written to a report.
  std::string api_key;
  /// "chat" (/v1/chat/completions) or "completions" (/v1/completions).
  std::string endpoint = "chat";
  /// Requests in flight at once; with `rate`, the most in flight. Default 1
  /// without a rate, unbounded with one. At least 1 when set.
  std::optional<std::size_t> concurrency;
  /// Requests per second, Poisson arrivals seeded by `seed`. > 0 when set.
  std::optional<double> rate;
  /// How many requests. Default 100 unless `duration` is set. >= 1.
  std::optional<std::size_t> requests;
  /// Stop sending after this many seconds. > 0 when set.
  std::optional<double> duration;
  /// Length of synthetic prompts, in words (about a token each).
  std::size_t prompt_tokens = 128;
  /// Prompts to send in turn; empty: synthetic ones (read_prompts_file
  /// reads a file of them).
  std::vector<std::string> prompts;
  /// Tokens to generate per request (>= 1).
  std::int64_t max_tokens = 128;
  /// Ask the server to ignore end-of-sequence so every request generates
  /// exactly max_tokens (vLLM's `ignore_eos`).
  bool ignore_eos = true;
  std::uint64_t seed = 0;
  /// Seconds one request may take.
  double timeout = 600;
  /// PEM file of CAs to trust for https; `insecure` skips verification.
  std::string ca_file;
  bool insecure = false;
  /// Open the connections the run will use before the clock starts (at
  /// most min(concurrency, requests) of them), so TTFT measures the
  /// server, not TCP and TLS handshakes.
  bool warmup = true;
  /// While events come faster than this many microseconds apart, read them
  /// in batches this often instead of waking for each one (a server on the
  /// same machine loses less of its core to the client); 0: wake for each.
  double poll_interval_us = 50;
  /// How often the progress callback is called, in seconds.
  double progress_interval = 0.1;

  /// Every setting that is out of range, as "--flag: what is wrong; the
  /// range" sentences (the CLI's flag names). Empty when the spec can run.
  std::vector<std::string> problems() const;
  /// "concurrency 8" or "rate 2 req/s (Poisson, seed 0), at most 8 in
  /// flight", with the defaults applied.
  std::string mode() const;
};

/// One request, every time in seconds from the run's start. Latencies count
/// from the request's scheduled send time, so time spent queued in the
/// client is part of them.
struct BenchSample {
  double scheduled = 0;
  /// -1 when no token arrived.
  double ttft = -1;
  double e2e = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  /// Why it failed, as every result says it (README, "One rule for
  /// results"): the code (errc::http_error, timed_out, connection_refused,
  /// cancelled, ...) and a sentence: "HTTP 429: slow down", "no complete
  /// answer within 600 s", ... The summary groups failures by `message`.
  std::error_code error;
  std::string message;
  bool ok() const { return !error; }
  /// From the scheduled time to the request's first byte on the wire: time
  /// spent in the client (waiting for a connection, connecting). -1: unknown.
  double send_delay = -1;
};

struct Distribution {
  std::size_t count = 0;
  double mean = 0, stddev = 0, min = 0, max = 0, p50 = 0, p90 = 0, p99 = 0;
  nlohmann::json to_json(double scale = 1000.0) const;
};

/// Linear interpolation between closest ranks (numpy's default), like
/// `vllm bench serve`. `sorted` must be sorted.
double percentile(std::vector<double> const& sorted, double p);
Distribution distribution(std::vector<double> values);

struct BenchSummary {
  std::size_t completed = 0;
  std::size_t failed = 0;
  /// From the first scheduled send to the last completion.
  double duration = 0;
  double request_throughput = 0;
  double output_token_throughput = 0;
  double total_token_throughput = 0;
  std::int64_t output_tokens = 0;
  std::int64_t prompt_tokens = 0;
  Distribution ttft, tpot, itl, e2e, send_delay;
  /// Failures by reason, with their counts.
  std::map<std::string, std::size_t> errors;

  /// The report printed for a person.
  std::string to_text() const;
  nlohmann::json to_json() const;
};

/// `itl`: every gap between two content chunks of every successful request.
BenchSummary summarize(std::vector<BenchSample> const& samples, std::vector<double> const& itl);

/// Histograms and CDFs of TTFT and end-to-end latency, side by side (SVG).
std::string latency_svg(std::vector<BenchSample> const& samples, std::string const& title);

/// About `words` words each, `count` of them, each with its own prefix so a
/// server's prefix cache cannot serve it; the same for the same seed.
std::vector<std::string> synthetic_prompts(std::size_t words, std::uint64_t seed, std::size_t count = 256);
/// One prompt per line, or JSON lines with "prompt" (or "text"/"content").
/// Throws clusterkit::Error naming the file when it cannot be read, is not
/// a regular file, is over 64 MiB, or holds no prompt.
std::vector<std::string> read_prompts_file(std::string const& path);

struct BenchProgress {
  std::size_t launched = 0;
  std::size_t completed = 0;
  std::size_t failed = 0;
  std::size_t in_flight = 0;
  double elapsed = 0;
  /// 0..1 of the requests or of the duration.
  double fraction = 0;
  /// The client's full sentences for the first three failed requests.
  std::vector<std::string> first_errors;
};
using BenchProgressCallback = std::function<void(BenchProgress const&)>;

struct BenchResult {
  /// As run: defaults applied, the model resolved, the API key left out.
  BenchSpec spec;
  /// ISO 8601 UTC of the start.
  std::string date;
  std::vector<BenchSample> samples;
  /// Every gap between two content chunks of every successful request.
  std::vector<double> itl;
  BenchSummary summary;
  /// Connections opened before the clock started.
  std::size_t warmed_connections = 0;
  /// The run was stopped (cancellation) before every request was sent.
  bool cancelled = false;
  /// Why the run did not start (async_run_bench's error); empty otherwise.
  std::string message;

  /// "clusterkit bench: MODEL @ URL, MODE".
  std::string title() const;
  /// title() and the summary.
  std::string to_text() const;
  /// The report `clusterkit bench --json` writes: the summary, "config",
  /// "date", "requests" (one row per request) and "warmed_connections".
  nlohmann::json to_json() const;
  std::string latency_svg() const;
};

/// Runs on the calling thread until every request has ended. Throws
/// clusterkit::Error: invalid_argument (problems(), every one named), the
/// client's error when the model must be looked up and cannot be, or a
/// prompts file that cannot be read. Failed requests are not errors: they
/// are counted in the result (summary.completed == 0 when none succeeded).
BenchResult run_bench(BenchSpec const& spec, BenchProgressCallback progress = {});

using BenchSignature = void(std::error_code, BenchResult);

namespace detail {
void start_bench(asio::any_io_executor ex, BenchSpec spec, BenchProgressCallback progress,
                 asio::any_completion_handler<BenchSignature> handler);
}

/// The same on a thread of its own (so its timing is not disturbed by the
/// caller's executor); completes on `ex` (or the handler's executor).
/// Cancellation (any type) stops sending, ends the requests in flight and
/// completes with errc::cancelled and what was measured so far
/// (result.cancelled). The progress callback runs on the bench's thread.
template <class CompletionToken = asio::deferred_t>
auto async_run_bench(asio::any_io_executor ex, BenchSpec spec, BenchProgressCallback progress = {},
                     CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, BenchSignature>(
      [ex](auto handler, BenchSpec s, BenchProgressCallback p) {
        detail::start_bench(ex, std::move(s), std::move(p), std::move(handler));
      },
      token, std::move(spec), std::move(progress));
}

}  // namespace clusterkit
