// Prometheus text parsing and the vLLM gauges, on captured text.
#include "clusterkit/prometheus.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

#include <cmath>

using namespace clusterkit;

namespace {

// As served by llm-d-inference-sim v0.10.2 (a vLLM simulator), trimmed.
std::string const kSimulator = R"(# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{model_name="qwen2.5-72b-instruct",le="0.3"} 2
vllm:e2e_request_latency_seconds_bucket{model_name="qwen2.5-72b-instruct",le="+Inf"} 2
vllm:e2e_request_latency_seconds_sum{model_name="qwen2.5-72b-instruct"} 0.002343399
vllm:e2e_request_latency_seconds_count{model_name="qwen2.5-72b-instruct"} 2
# HELP vllm:generation_tokens_total Total number of generated tokens.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="qwen2.5-72b-instruct"} 2
# HELP vllm:kv_cache_usage_perc Prometheus metric for the fraction of KV-cache blocks currently in use (from 0 to 1).
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="qwen2.5-72b-instruct"} 0.25
vllm:lora_requests_info{max_lora="1",running_lora_adapters="",waiting_lora_adapters=""} 1.795807113e+09
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="qwen2.5-72b-instruct"} 3
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="qwen2.5-72b-instruct"} 1
vllm:prompt_tokens_total{model_name="qwen2.5-72b-instruct"} 12
)";

// The shape older vLLM (V0 engine, prometheus_client) serves: the KV gauge
// under its old name, swapped requests, an engine label, a Python runtime
// metric, timestamps and escapes.
std::string const kOldVllm =
    "# HELP python_gc_objects_collected_total Objects collected during gc\n"
    "# TYPE python_gc_objects_collected_total counter\n"
    "python_gc_objects_collected_total{generation=\"0\"} 1234.0\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 4.0\n"
    "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2.0\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 7.0\r\n"
    "vllm:num_requests_swapped{model_name=\"m\"} 0.0\n"
    "vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.5\n"
    "vllm:gpu_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.75\n"
    "vllm:num_preemptions_total{model_name=\"m\"} 3 1700000000000\n"
    "odd{path=\"a\\\"b\\\\c\\nd\",} NaN\n"
    "not a metric line\n"
    "broken{x=\"1\" 5\n";

}  // namespace

TEST_CASE("Prometheus: the simulator's metrics", "[prometheus]") {
  auto t = parse_prometheus_text(kSimulator);
  CHECK(t.bad_lines.empty());
  CHECK(t.types.at("vllm:e2e_request_latency_seconds") == "histogram");
  CHECK(t.help.at("vllm:generation_tokens_total") == "Total number of generated tokens.");
  auto buckets = t.find("vllm:e2e_request_latency_seconds_bucket");
  REQUIRE(buckets.size() == 2);
  CHECK(buckets[1]->label("le") == "+Inf");
  CHECK(t.sum("vllm:lora_requests_info").value() == Approx(1.795807113e9));
  auto g = vllm_gauges(t);
  CHECK(g.requests_running == 3);
  CHECK(g.requests_waiting == 1);
  CHECK(g.kv_cache_usage == 0.25);
  CHECK(g.kv_cache_metric == "vllm:kv_cache_usage_perc");
  CHECK(g.prompt_tokens_total == 12);
  CHECK(g.generation_tokens_total == 2);
  CHECK_FALSE(g.requests_swapped.has_value());
  CHECK(g.models == std::vector<std::string>{"qwen2.5-72b-instruct"});
}

TEST_CASE("Prometheus: older vLLM names, several engines, escapes, bad lines", "[prometheus]") {
  auto t = parse_prometheus_text(kOldVllm);
  CHECK(t.bad_lines == std::vector<std::size_t>{13, 14});
  auto g = vllm_gauges(t);
  CHECK(g.requests_running == 6);  // summed over engines
  CHECK(g.requests_waiting == 7);
  CHECK(g.requests_swapped == 0);
  CHECK(g.kv_cache_usage == 0.75);  // the fullest engine
  CHECK(g.kv_cache_metric == "vllm:gpu_cache_usage_perc");
  CHECK(g.preemptions_total == 3);
  auto odd = t.find("odd");
  REQUIRE(odd.size() == 1);
  CHECK(odd[0]->label("path") == "a\"b\\c\nd");
  CHECK(std::isnan(odd[0]->value));
  auto pre = t.find("vllm:num_preemptions_total");
  REQUIRE(pre.size() == 1);
  CHECK(pre[0]->timestamp_ms == 1700000000000);
}

TEST_CASE("Prometheus: a server without vLLM metrics", "[prometheus]") {
  auto g = vllm_gauges(parse_prometheus_text("up 1\n"));
  CHECK_FALSE(g.requests_running.has_value());
  CHECK_FALSE(g.kv_cache_usage.has_value());
  CHECK(g.kv_cache_metric.empty());
}
