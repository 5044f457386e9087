#include "clusterkit/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace clusterkit {

namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

void skip_blanks(std::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
}

std::string_view take_name(std::string_view& s) {
  if (s.empty() || !is_name_start(s.front())) return {};
  std::size_t n = 1;
  while (n < s.size() && is_name_char(s[n])) ++n;
  auto name = s.substr(0, n);
  s.remove_prefix(n);
  return name;
}

std::string_view take_token(std::string_view& s) {
  std::size_t n = 0;
  while (n < s.size() && s[n] != ' ' && s[n] != '\t') ++n;
  auto t = s.substr(0, n);
  s.remove_prefix(n);
  return t;
}

std::optional<double> parse_value(std::string_view t) {
  if (t == "+Inf" || t == "Inf" || t == "inf" || t == "+inf") return std::numeric_limits<double>::infinity();
  if (t == "-Inf" || t == "-inf") return -std::numeric_limits<double>::infinity();
  if (t == "NaN" || t == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (t.empty()) return std::nullopt;
  if (t.front() == '+') t.remove_prefix(1);
  double v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size()) return std::nullopt;
  return v;
}

// {a="x",b="y\"z"} with the escapes \\, \" and \n. Trailing comma allowed.
bool parse_labels(std::string_view& s, std::vector<std::pair<std::string, std::string>>& labels) {
  s.remove_prefix(1);  // '{'
  for (;;) {
    skip_blanks(s);
    if (s.empty()) return false;
    if (s.front() == '}') {
      s.remove_prefix(1);
      return true;
    }
    auto key = take_name(s);
    if (key.empty()) return false;
    skip_blanks(s);
    if (s.empty() || s.front() != '=') return false;
    s.remove_prefix(1);
    skip_blanks(s);
    if (s.empty() || s.front() != '"') return false;
    s.remove_prefix(1);
    std::string value;
    for (;;) {
      if (s.empty()) return false;
      char c = s.front();
      s.remove_prefix(1);
      if (c == '"') break;
      if (c == '\\') {
        if (s.empty()) return false;
        char e = s.front();
        s.remove_prefix(1);
        value.push_back(e == 'n' ? '\n' : e);
      } else {
        value.push_back(c);
      }
    }
    labels.emplace_back(std::string(key), std::move(value));
    skip_blanks(s);
    if (!s.empty() && s.front() == ',') s.remove_prefix(1);
  }
}

void parse_comment(std::string_view line, PrometheusText& out) {
  line.remove_prefix(1);  // '#'
  skip_blanks(line);
  auto keyword = take_token(line);
  if (keyword != "TYPE" && keyword != "HELP") return;  // a plain comment
  skip_blanks(line);
  auto name = take_name(line);
  if (name.empty()) return;
  skip_blanks(line);
  if (keyword == "TYPE")
    out.types[std::string(name)] = std::string(take_token(line));
  else
    out.help[std::string(name)] = std::string(line);
}

}  // namespace

std::string_view PrometheusSample::label(std::string_view key) const {
  for (auto const& [k, v] : labels)
    if (k == key) return v;
  return {};
}

PrometheusText parse_prometheus_text(std::string_view text) {
  PrometheusText out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    skip_blanks(line);
    if (line.empty()) continue;
    if (line.front() == '#') {
      parse_comment(line, out);
      continue;
    }
    PrometheusSample sample;
    auto name = take_name(line);
    bool ok = !name.empty();
    if (ok) {
      sample.name = std::string(name);
      skip_blanks(line);
      if (!line.empty() && line.front() == '{') ok = parse_labels(line, sample.labels);
    }
    if (ok) {
      skip_blanks(line);
      auto v = parse_value(take_token(line));
      ok = v.has_value();
      if (ok) sample.value = *v;
    }
    if (ok) {
      skip_blanks(line);
      if (!line.empty()) {
        auto ts = take_token(line);
        std::int64_t t = 0;
        auto [ptr, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
        ok = ec == std::errc() && ptr == ts.data() + ts.size();
        if (ok) sample.timestamp_ms = t;
        skip_blanks(line);
        ok = ok && line.empty();
      }
    }
    if (ok)
      out.samples.push_back(std::move(sample));
    else
      out.bad_lines.push_back(line_no);
  }
  return out;
}

std::vector<PrometheusSample const*> PrometheusText::find(std::string_view name) const {
  std::vector<PrometheusSample const*> found;
  for (auto const& s : samples)
    if (s.name == name) found.push_back(&s);
  return found;
}

std::optional<double> PrometheusText::sum(std::string_view name) const {
  std::optional<double> total;
  for (auto const& s : samples)
    if (s.name == name) total = total.value_or(0) + s.value;
  return total;
}

std::optional<double> PrometheusText::max(std::string_view name) const {
  std::optional<double> best;
  for (auto const& s : samples)
    if (s.name == name && (!best || s.value > *best)) best = s.value;
  return best;
}

VllmGauges vllm_gauges(PrometheusText const& text) {
  VllmGauges g;
  g.requests_running = text.sum("vllm:num_requests_running");
  g.requests_waiting = text.sum("vllm:num_requests_waiting");
  g.requests_swapped = text.sum("vllm:num_requests_swapped");
  // vLLM renamed the KV gauge when V1 became the default; servers in the
  // transition export both, with the same value.
  for (auto const* name : {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}) {
    if (auto v = text.max(name)) {
      g.kv_cache_usage = v;
      g.kv_cache_metric = name;
      break;
    }
  }
  g.prompt_tokens_total = text.sum("vllm:prompt_tokens_total");
  g.generation_tokens_total = text.sum("vllm:generation_tokens_total");
  g.preemptions_total = text.sum("vllm:num_preemptions_total");
  for (auto const& s : text.samples) {
    if (s.name.rfind("vllm:", 0) != 0) continue;
    auto m = s.label("model_name");
    if (!m.empty() && std::find(g.models.begin(), g.models.end(), m) == g.models.end()) g.models.emplace_back(m);
  }
  return g;
}

}  // namespace clusterkit
