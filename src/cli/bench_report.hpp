// The pure half of `clusterkit bench`: per-request samples in, latency
// statistics, the JSON report and an SVG plot out. No clock, no sockets.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace clusterkit::cli {

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
  bool ok = false;
  std::string error;
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
  std::map<std::string, std::size_t> errors;
};

/// `itl`: every gap between two content chunks of every successful request.
BenchSummary summarize(std::vector<BenchSample> const& samples, std::vector<double> const& itl);

/// The report printed for a person.
std::string format_summary(BenchSummary const& s);

nlohmann::json summary_to_json(BenchSummary const& s);

/// Histograms and CDFs of TTFT and end-to-end latency, side by side.
std::string latency_svg(std::vector<BenchSample> const& samples, std::string const& title);

}  // namespace clusterkit::cli
