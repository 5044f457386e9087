// The Prometheus text exposition format (what vLLM serves on /metrics),
// parsed without I/O, and the handful of vLLM gauges a person watches while
// a server is under load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clusterkit {

struct PrometheusSample {
  /// Full sample name ("vllm:e2e_request_latency_seconds_bucket").
  std::string name;
  /// Labels in the order written, values unescaped.
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
  std::optional<std::int64_t> timestamp_ms;

  /// The value of label `key`, or empty when absent.
  std::string_view label(std::string_view key) const;
};

struct PrometheusText {
  std::vector<PrometheusSample> samples;
  /// Metric family -> "counter", "gauge", "histogram", "summary", "untyped".
  std::map<std::string, std::string, std::less<>> types;
  std::map<std::string, std::string, std::less<>> help;
  /// Lines that could not be read (kept out of `samples`), 1-based.
  std::vector<std::size_t> bad_lines;

  /// Every sample named `name`.
  std::vector<PrometheusSample const*> find(std::string_view name) const;
  /// Sum over every series of `name`; nullopt when there is none.
  std::optional<double> sum(std::string_view name) const;
  /// Largest value over every series of `name`; nullopt when there is none.
  std::optional<double> max(std::string_view name) const;
};

/// Parse exposition text. Malformed lines are skipped and listed in
/// `bad_lines`, so one odd exporter line does not hide the rest.
PrometheusText parse_prometheus_text(std::string_view text);

/// What a person watches on a vLLM server. Each is nullopt when the server
/// does not export it. Series are combined over every label set (several
/// models, data-parallel engines): counts summed, KV usage the largest.
struct VllmGauges {
  /// vllm:num_requests_running — requests in the running batch.
  std::optional<double> requests_running;
  /// vllm:num_requests_waiting — requests queued for a slot.
  std::optional<double> requests_waiting;
  /// KV-cache blocks in use, 0..1: vllm:kv_cache_usage_perc (vLLM V1 and the
  /// llm-d simulator), or vllm:gpu_cache_usage_perc (older vLLM).
  std::optional<double> kv_cache_usage;
  /// Which metric `kv_cache_usage` came from.
  std::string kv_cache_metric;
  /// vllm:num_requests_swapped (older vLLM only).
  std::optional<double> requests_swapped;
  /// Counters: vllm:prompt_tokens_total, vllm:generation_tokens_total,
  /// vllm:num_preemptions_total.
  std::optional<double> prompt_tokens_total;
  std::optional<double> generation_tokens_total;
  std::optional<double> preemptions_total;
  /// Model names seen in the `model_name` label.
  std::vector<std::string> models;
};

VllmGauges vllm_gauges(PrometheusText const& text);

}  // namespace clusterkit
