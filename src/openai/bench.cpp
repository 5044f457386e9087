// The pure half of the benchmark (include/clusterkit/bench.hpp): the spec's
// checks, synthetic prompts, statistics, the report and the plot. No clock,
// no sockets.
#include "clusterkit/bench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <ctime>
#include <limits>
#include <random>
#include <sstream>

namespace clusterkit {

double percentile(std::vector<double> const& sorted, double p) {
  if (sorted.empty()) return 0;
  double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  auto lo = static_cast<std::size_t>(std::floor(rank));
  auto hi = std::min(lo + 1, sorted.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Distribution distribution(std::vector<double> values) {
  Distribution d;
  d.count = values.size();
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  d.min = values.front();
  d.max = values.back();
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  double sq = 0;
  for (double v : values) sq += (v - d.mean) * (v - d.mean);
  d.stddev = std::sqrt(sq / static_cast<double>(values.size()));
  d.p50 = percentile(values, 50);
  d.p90 = percentile(values, 90);
  d.p99 = percentile(values, 99);
  return d;
}

nlohmann::json Distribution::to_json(double scale) const {
  return {{"count", count},        {"mean", mean * scale}, {"std", stddev * scale}, {"min", min * scale},
          {"max", max * scale},    {"p50", p50 * scale},   {"p90", p90 * scale},    {"p99", p99 * scale}};
}

BenchSummary summarize(std::vector<BenchSample> const& samples, std::vector<double> const& itl) {
  BenchSummary s;
  std::vector<double> ttft, tpot, e2e, send_delay;
  double first = 0, last = 0;
  bool any = false;
  for (auto const& r : samples) {
    if (!any || r.scheduled < first) first = r.scheduled;
    last = std::max(last, r.scheduled + r.e2e);
    any = true;
    if (!r.ok()) {
      ++s.failed;
      ++s.errors[r.message];  // not ok(): the sentence says why
      continue;
    }
    ++s.completed;
    if (r.send_delay >= 0) send_delay.push_back(r.send_delay);
    s.output_tokens += r.output_tokens;
    s.prompt_tokens += r.prompt_tokens;
    if (r.ttft >= 0) ttft.push_back(r.ttft);
    e2e.push_back(r.e2e);
    // TPOT = (latency - TTFT) / (output tokens - 1), as vLLM's benchmark.
    if (r.output_tokens > 1 && r.ttft >= 0) tpot.push_back((r.e2e - r.ttft) / static_cast<double>(r.output_tokens - 1));
  }
  s.duration = any ? last - first : 0;
  if (s.duration > 0) {
    s.request_throughput = static_cast<double>(s.completed) / s.duration;
    s.output_token_throughput = static_cast<double>(s.output_tokens) / s.duration;
    s.total_token_throughput = static_cast<double>(s.output_tokens + s.prompt_tokens) / s.duration;
  }
  s.ttft = distribution(std::move(ttft));
  s.tpot = distribution(std::move(tpot));
  s.itl = distribution(itl);
  s.e2e = distribution(std::move(e2e));
  s.send_delay = distribution(std::move(send_delay));
  return s;
}

std::string BenchSummary::to_text() const {
  auto const& s = *this;
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "requests:   %zu ok, %zu failed in %.3f s\n", s.completed, s.failed, s.duration);
  out << line;
  std::snprintf(line, sizeof line, "throughput: %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
                s.request_throughput, s.output_token_throughput, s.total_token_throughput);
  out << line;
  std::snprintf(line, sizeof line, "tokens:     %lld prompt, %lld output\n", static_cast<long long>(s.prompt_tokens),
                static_cast<long long>(s.output_tokens));
  out << line;
  out << "latency (ms)        mean       p50       p90       p99       max\n";
  auto row = [&](char const* name, Distribution const& d) {
    std::snprintf(line, sizeof line, "  %-12s %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, d.mean * 1e3, d.p50 * 1e3,
                  d.p90 * 1e3, d.p99 * 1e3, d.max * 1e3);
    out << line;
  };
  row("TTFT", s.ttft);
  row("TPOT", s.tpot);
  row("ITL", s.itl);
  row("E2E", s.e2e);
  if (s.send_delay.count) row("send delay", s.send_delay);
  for (auto const& [what, n] : s.errors) out << "error x" << n << ": " << what << "\n";
  return out.str();
}

nlohmann::json BenchSummary::to_json() const {
  auto const& s = *this;
  nlohmann::json errors = nlohmann::json::object();
  for (auto const& [what, n] : s.errors) errors[what] = n;
  return {{"completed", s.completed},
          {"failed", s.failed},
          {"duration_s", s.duration},
          {"request_throughput", s.request_throughput},
          {"output_token_throughput", s.output_token_throughput},
          {"total_token_throughput", s.total_token_throughput},
          {"prompt_tokens", s.prompt_tokens},
          {"output_tokens", s.output_tokens},
          {"ttft_ms", s.ttft.to_json()},
          {"tpot_ms", s.tpot.to_json()},
          {"itl_ms", s.itl.to_json()},
          {"e2e_ms", s.e2e.to_json()},
          {"send_delay_ms", s.send_delay.to_json()},
          {"errors", errors}};
}

namespace {

std::string esc(std::string const& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

// A "nice" axis step for a range (1, 2 or 5 times a power of ten).
double nice_step(double range, int ticks) {
  if (range <= 0) return 1;
  double raw = range / ticks;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string fmt(double v) {
  char b[32];
  if (std::fabs(v) >= 100 || v == std::floor(v))
    std::snprintf(b, sizeof b, "%.0f", v);
  else if (std::fabs(v) >= 1)
    std::snprintf(b, sizeof b, "%.1f", v);
  else
    std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

void panel(std::ostringstream& svg, double x0, double y0, double w, double h, std::vector<double> values,
           std::string const& name, char const* color) {
  svg << "<g transform=\"translate(" << x0 << "," << y0 << ")\">\n";
  svg << "<text x=\"" << w / 2 << "\" y=\"-12\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
      << esc(name) << "</text>\n";
  svg << "<rect x=\"0\" y=\"0\" width=\"" << w << "\" height=\"" << h << "\" fill=\"none\" stroke=\"#888\"/>\n";
  if (values.empty()) {
    svg << "<text x=\"" << w / 2 << "\" y=\"" << h / 2 << "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</g>\n";
    return;
  }
  std::sort(values.begin(), values.end());
  for (auto& v : values) v *= 1e3;  // ms
  double lo = values.front(), hi = values.back();
  // Show to p99.9 so one outlier does not squash the rest; the max is noted.
  double shown_hi = percentile(values, 99.9);
  if (shown_hi <= lo) shown_hi = lo + std::max(1e-3, lo * 0.01);
  double step = nice_step(shown_hi - lo, 6);
  double axis_lo = std::floor(lo / step) * step;
  double axis_hi = std::ceil(shown_hi / step) * step;
  if (axis_hi <= axis_lo) axis_hi = axis_lo + step;
  auto X = [&](double v) { return (std::clamp(v, axis_lo, axis_hi) - axis_lo) / (axis_hi - axis_lo) * w; };
  constexpr int bins = 40;
  std::vector<std::size_t> count(bins, 0);
  for (double v : values) {
    auto b = static_cast<int>((std::clamp(v, axis_lo, axis_hi) - axis_lo) / (axis_hi - axis_lo) * bins);
    ++count[static_cast<std::size_t>(std::clamp(b, 0, bins - 1))];
  }
  std::size_t peak = *std::max_element(count.begin(), count.end());
  double bw = w / bins;
  for (int b = 0; b < bins; ++b) {
    if (!count[b]) continue;
    double bh = static_cast<double>(count[b]) / static_cast<double>(peak) * (h - 10);
    svg << "<rect x=\"" << b * bw + 0.5 << "\" y=\"" << h - bh << "\" width=\"" << std::max(bw - 1, 0.5)
        << "\" height=\"" << bh << "\" fill=\"" << color << "\" fill-opacity=\"0.35\"/>\n";
  }
  // CDF (right axis, 0-100 %).
  svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
  std::size_t const n = values.size();
  std::size_t stride = std::max<std::size_t>(1, n / 400);
  for (std::size_t i = 0; i < n; i += stride)
    svg << X(values[i]) << "," << h - static_cast<double>(i + 1) / static_cast<double>(n) * h << " ";
  svg << X(values.back()) << "," << 0 << "\"/>\n";
  // Axes.
  for (double t = axis_lo; t <= axis_hi + step / 2; t += step) {
    double x = X(t);
    svg << "<line x1=\"" << x << "\" y1=\"" << h << "\" x2=\"" << x << "\" y2=\"" << h + 5 << "\" stroke=\"#444\"/>"
        << "<text x=\"" << x << "\" y=\"" << h + 18 << "\" text-anchor=\"middle\" font-size=\"11\">" << fmt(t)
        << "</text>\n";
  }
  for (int p = 0; p <= 100; p += 25) {
    double y = h - p / 100.0 * h;
    svg << "<line x1=\"" << w << "\" y1=\"" << y << "\" x2=\"" << w + 5 << "\" y2=\"" << y << "\" stroke=\"#444\"/>"
        << "<text x=\"" << w + 8 << "\" y=\"" << y + 4 << "\" font-size=\"11\">" << p << "%</text>\n";
  }
  svg << "<text x=\"" << w / 2 << "\" y=\"" << h + 36 << "\" text-anchor=\"middle\" font-size=\"12\">"
      << "milliseconds (bars: histogram, line: cumulative share)</text>\n";
  // Percentile markers.
  double p50 = percentile(values, 50), p99 = percentile(values, 99);
  for (auto [label, v] : {std::pair{"p50", p50}, std::pair{"p99", p99}}) {
    double x = X(v);
    svg << "<line x1=\"" << x << "\" y1=\"0\" x2=\"" << x << "\" y2=\"" << h
        << "\" stroke=\"#333\" stroke-dasharray=\"4,3\"/>"
        << "<text x=\"" << x + 3 << "\" y=\"" << (label[1] == '5' ? 14 : 28) << "\" font-size=\"11\">" << label << " "
        << fmt(v) << " ms</text>\n";
  }
  svg << "<text x=\"" << w / 2 << "\" y=\"" << h + 52 << "\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">n=" << n << ", min " << fmt(lo)
      << ", max " << fmt(hi) << " ms</text>\n";
  svg << "</g>\n";
}

}  // namespace

std::string latency_svg(std::vector<BenchSample> const& samples, std::string const& title) {
  std::vector<double> ttft, e2e;
  for (auto const& s : samples) {
    if (!s.ok()) continue;
    if (s.ttft >= 0) ttft.push_back(s.ttft);
    e2e.push_back(s.e2e);
  }
  double const W = 1000, H = 420, pw = 400, ph = 280;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
      << " " << H << "\" font-family=\"sans-serif\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << W / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">" << esc(title) << "</text>\n";
  panel(svg, 50, 70, pw, ph, ttft, "Time to first token", "#1f77b4");
  panel(svg, 530, 70, pw, ph, e2e, "End-to-end latency", "#d62728");
  svg << "</svg>\n";
  return svg.str();
}

// ---------------------------------------------------------------------------
// The spec

namespace {

std::string number(double v) {
  if (std::isnan(v)) return "nan";  // not "-nan"
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// The most requests one run plans (each keeps a sample: about 100 bytes).
constexpr std::size_t max_requests = 10'000'000;
// Longest synthetic prompt, in words.
constexpr std::size_t max_prompt_words = 131'072;

}  // namespace

std::vector<std::string> BenchSpec::problems() const {
  std::vector<std::string> p;
  auto positive_seconds = [&](char const* flag, double v, double most, char const* most_text) {
    if (!std::isfinite(v) || v <= 0 || v > most)
      p.push_back(std::string(flag) + ": " + number(v) + " is not a number of seconds in (0, " + most_text + "]");
  };
  if (url.empty()) p.push_back("url (--url): missing; give the server's URL, e.g. http://10.0.0.1:8000");
  else if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    p.push_back("url (--url): '" + url + "' is not an http:// or https:// URL");
  if (endpoint != "chat" && endpoint != "completions")
    p.push_back("endpoint (--endpoint): '" + endpoint + "' is neither chat nor completions");
  if (concurrency && (*concurrency == 0 || *concurrency > 1'000'000))
    p.push_back("concurrency (--concurrency): " + std::to_string(*concurrency) + " is not in 1..1000000");
  if (rate && (!std::isfinite(*rate) || *rate <= 0 || *rate > 1e6))
    p.push_back("rate (--rate): " + number(*rate) + " is not a number of requests per second in (0, 1000000]");
  if (requests && (*requests == 0 || *requests > max_requests))
    p.push_back("requests (--requests): " + std::to_string(*requests) + " is not in 1.." + std::to_string(max_requests));
  if (duration) positive_seconds("duration (--duration)", *duration, 1e7, "10000000");
  if (rate && duration && !requests && std::isfinite(*rate) && std::isfinite(*duration) && *rate > 0 &&
      *duration > 0 && *rate * *duration > static_cast<double>(max_requests))
    p.push_back("rate " + number(*rate) + " for duration " + number(*duration) + " (--rate, --duration) plans about " +
                number(*rate * *duration) + " requests; at most " + std::to_string(max_requests) +
                " in one run (set requests, or a shorter duration)");
  if (prompts.empty() && (prompt_tokens == 0 || prompt_tokens > max_prompt_words))
    p.push_back("prompt_tokens (--prompt-tokens): " + std::to_string(prompt_tokens) + " is not in 1.." + std::to_string(max_prompt_words));
  if (max_tokens < 1 || max_tokens > 10'000'000)
    p.push_back("max_tokens (--max-tokens): " + std::to_string(max_tokens) + " is not in 1..10000000");
  positive_seconds("timeout (--timeout)", timeout, 1e6, "1000000");
  if (!std::isfinite(poll_interval_us) || poll_interval_us < 0 || poll_interval_us > 1e6)
    p.push_back("poll_interval_us (--poll-interval): " + number(poll_interval_us) + " is not a number of microseconds in [0, 1000000]");
  if (!std::isfinite(progress_interval) || progress_interval <= 0 || progress_interval > 3600)
    p.push_back("progress_interval: " + number(progress_interval) + " is not a number of seconds in (0, 3600]");
  return p;
}

std::string BenchSpec::mode() const {
  if (rate)
    return "rate " + number(*rate) + " req/s (Poisson, seed " + std::to_string(seed) + ")" +
           (concurrency ? ", at most " + std::to_string(*concurrency) + " in flight" : "");
  return "concurrency " + std::to_string(concurrency.value_or(1));
}

std::vector<std::string> synthetic_prompts(std::size_t words, std::uint64_t seed, std::size_t count) {
  // About `words` words (a word is about a token for most tokenizers,
  // exactly one for the simulator's), each with its own prefix so a
  // server's prefix cache cannot serve it.
  static char const* const vocabulary[] = {
      "time", "person", "year",  "way",    "day",   "thing", "man",    "world", "life",  "hand",  "part",
      "child", "eye",   "woman", "place",  "work",  "week",  "case",   "point", "number", "group", "fact",
      "system", "water", "room", "mother", "area",  "money", "story",  "month", "lot",   "right"};
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<std::string> prompts;
  prompts.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::string p = std::to_string(i);
    for (std::size_t w = 1; w < words; ++w) {
      p += ' ';
      p += vocabulary[rng() % std::size(vocabulary)];
    }
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// ---------------------------------------------------------------------------
// The result

std::string BenchResult::title() const { return "clusterkit bench: " + spec.model + " @ " + spec.url + ", " + spec.mode(); }

std::string BenchResult::to_text() const {
  return title() + (cancelled ? " (stopped early)" : "") + "\n" + summary.to_text();
}

std::string BenchResult::latency_svg() const { return clusterkit::latency_svg(samples, title()); }

nlohmann::json BenchResult::to_json() const {
  using nlohmann::json;
  json report = summary.to_json();
  report["date"] = date;
  report["config"] = {{"url", spec.url},
                      {"model", spec.model},
                      {"endpoint", spec.endpoint},
                      {"concurrency", spec.concurrency.value_or(0)},
                      {"rate", spec.rate.value_or(0)},
                      {"requests", spec.requests.value_or(0)},
                      {"duration", spec.duration.value_or(0)},
                      {"prompt_tokens", spec.prompts.empty() ? json(spec.prompt_tokens) : json()},
                      {"max_tokens", spec.max_tokens},
                      {"ignore_eos", spec.ignore_eos},
                      {"seed", spec.seed},
                      {"poll_interval_us", spec.poll_interval_us}};
  report["latency_reference"] = "scheduled send time";
  report["warmed_connections"] = warmed_connections;
  report["cancelled"] = cancelled;
  json rows = json::array();
  for (auto const& s : samples)
    rows.push_back({{"scheduled_ms", s.scheduled * 1e3},
                    {"ttft_ms", s.ttft >= 0 ? json(s.ttft * 1e3) : json()},
                    {"e2e_ms", s.e2e * 1e3},
                    {"prompt_tokens", s.prompt_tokens},
                    {"output_tokens", s.output_tokens},
                    {"error", s.ok() ? json() : json(s.message)}});
  report["requests"] = std::move(rows);
  return report;
}

}  // namespace clusterkit
