// The statistics and plot of `clusterkit bench` (src/cli/bench_report).
#include "bench_report.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

using namespace clusterkit::cli;

TEST_CASE("bench: percentiles interpolate like numpy", "[bench]") {
  std::vector<double> v{1, 2, 3, 4};
  CHECK(percentile(v, 50) == Approx(2.5));
  CHECK(percentile(v, 0) == 1);
  CHECK(percentile(v, 100) == 4);
  CHECK(percentile(v, 90) == Approx(3.7));
  CHECK(percentile({}, 50) == 0);
  auto d = distribution({5, 1, 3});
  CHECK(d.p50 == 3);
  CHECK(d.mean == Approx(3));
  CHECK(d.min == 1);
  CHECK(d.max == 5);
}

TEST_CASE("bench: TPOT, throughput and errors from samples", "[bench]") {
  std::vector<BenchSample> s(3);
  s[0] = {0.0, 0.050, 0.150, 10, 11, true, ""};  // TPOT = (150-50)/(11-1) = 10 ms
  s[1] = {0.5, 0.060, 0.560, 10, 51, true, ""};  // TPOT = 500/50 = 10 ms
  s[2] = {1.0, -1, 0.010, 0, 0, false, "HTTP 429: slow down"};
  auto sum = summarize(s, {0.01, 0.01, 0.02});
  CHECK(sum.completed == 2);
  CHECK(sum.failed == 1);
  CHECK(sum.errors.at("HTTP 429: slow down") == 1);
  CHECK(sum.duration == Approx(1.06));  // first scheduled send to last completion
  CHECK(sum.tpot.mean == Approx(0.010));
  CHECK(sum.ttft.p50 == Approx(0.055));
  CHECK(sum.output_tokens == 62);
  CHECK(sum.request_throughput == Approx(2 / 1.06));
  CHECK(sum.itl.count == 3);
  auto j = summary_to_json(sum);
  CHECK(j["ttft_ms"]["p50"].get<double>() == Approx(55));
  CHECK(format_summary(sum).find("TPOT") != std::string::npos);
}

TEST_CASE("bench: the SVG plot is well-formed and names both panels", "[bench]") {
  std::vector<BenchSample> s;
  for (int i = 0; i < 500; ++i) s.push_back({i * 0.01, 0.05 + i * 1e-5, 0.2 + i * 1e-4, 8, 16, true, ""});
  auto svg = latency_svg(s, "title <&>");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(svg.find("Time to first token") != std::string::npos);
  CHECK(svg.find("End-to-end latency") != std::string::npos);
  CHECK(svg.find("title &lt;&amp;&gt;") != std::string::npos);
  CHECK(latency_svg({}, "empty").find("no data") != std::string::npos);
}
