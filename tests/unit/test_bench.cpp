// The pure half of the benchmark (src/openai/bench.cpp): the spec's checks,
// statistics, the report and the plot.
#include "clusterkit/bench.hpp"  // first: the header stands on its own

#include "clusterkit/error.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

using namespace clusterkit;

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
  s[0] = {0.0, 0.050, 0.150, 10, 11, {}, ""};  // TPOT = (150-50)/(11-1) = 10 ms
  s[1] = {0.5, 0.060, 0.560, 10, 51, {}, ""};  // TPOT = 500/50 = 10 ms
  s[2] = {1.0, -1, 0.010, 0, 0, make_error_code(errc::http_error), "HTTP 429: slow down"};
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
  auto j = sum.to_json();
  CHECK(j["ttft_ms"]["p50"].get<double>() == Approx(55));
  CHECK(sum.to_text().find("TPOT") != std::string::npos);
}

TEST_CASE("bench: the SVG plot is well-formed and names both panels", "[bench]") {
  std::vector<BenchSample> s;
  for (int i = 0; i < 500; ++i) s.push_back({i * 0.01, 0.05 + i * 1e-5, 0.2 + i * 1e-4, 8, 16, {}, ""});
  auto svg = latency_svg(s, "title <&>");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(svg.find("Time to first token") != std::string::npos);
  CHECK(svg.find("End-to-end latency") != std::string::npos);
  CHECK(svg.find("title &lt;&amp;&gt;") != std::string::npos);
  CHECK(latency_svg({}, "empty").find("no data") != std::string::npos);
}

TEST_CASE("bench: every out-of-range setting is named with its range", "[bench]") {
  BenchSpec ok;
  ok.url = "http://127.0.0.1:8000";
  CHECK(ok.problems().empty());
  CHECK(ok.mode() == "concurrency 1");

  BenchSpec bad;
  bad.url = "127.0.0.1:8000";
  bad.endpoint = "embeddings";
  bad.concurrency = 0;
  bad.rate = std::nan("");
  bad.requests = 0;
  bad.duration = -5;
  bad.max_tokens = 0;
  bad.timeout = 1e10;
  bad.poll_interval_us = -1;
  auto p = bad.problems();
  auto has = [&](std::string const& text) {
    for (auto const& x : p)
      if (x.find(text) != std::string::npos) return true;
    return false;
  };
  CHECK(p.size() == 9);
  CHECK(has("url (--url): '127.0.0.1:8000' is not an http:// or https:// URL"));
  CHECK(has("endpoint (--endpoint): 'embeddings' is neither chat nor completions"));
  CHECK(has("concurrency (--concurrency): 0 is not in 1..1000000"));
  CHECK(has("rate (--rate): nan is not a number of requests per second in (0, 1000000]"));
  CHECK(has("requests (--requests): 0 is not in 1..10000000"));
  CHECK(has("duration (--duration): -5 is not a number of seconds"));
  CHECK(has("max_tokens (--max-tokens): 0 is not in 1..10000000"));
  CHECK(has("timeout (--timeout): 1e+10 is not a number of seconds in (0, 1000000]"));
  CHECK(has("poll_interval_us (--poll-interval): -1"));

  BenchSpec zero_rate = ok;
  zero_rate.rate = 0;
  CHECK(zero_rate.problems().size() == 1);
  BenchSpec negative_rate = ok;
  negative_rate.rate = -1;
  CHECK(negative_rate.problems().size() == 1);
  BenchSpec infinite = ok;
  infinite.duration = std::numeric_limits<double>::infinity();
  CHECK(infinite.problems().size() == 1);
  // A rate and a duration that would plan more requests than a run keeps.
  BenchSpec huge = ok;
  huge.rate = 1e6;
  huge.duration = 1e6;
  REQUIRE(huge.problems().size() == 1);
  CHECK(huge.problems()[0].find("set requests") != std::string::npos);
  huge.requests = 1000;
  CHECK(huge.problems().empty());
  CHECK(huge.mode() == "rate 1e+06 req/s (Poisson, seed 0)");
}

TEST_CASE("bench: synthetic prompts are distinct, sized and reproducible", "[bench]") {
  auto a = synthetic_prompts(16, 7, 4);
  REQUIRE(a.size() == 4);
  CHECK(a == synthetic_prompts(16, 7, 4));
  CHECK(a != synthetic_prompts(16, 8, 4));
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(std::count(a[i].begin(), a[i].end(), ' ') == 15);  // 16 words
    CHECK(a[i].rfind(std::to_string(i) + " ", 0) == 0);       // its own prefix
  }
}

TEST_CASE("bench: the report keeps every request and never the API key", "[bench]") {
  BenchResult r;
  r.spec.url = "http://h:8000";
  r.spec.model = "m";
  r.spec.api_key = "";  // run_bench clears it; the report has no field for it either
  r.spec.concurrency = 2;
  r.samples = {{0.0, 0.05, 0.15, 10, 11, {}, "", 0.001}, {0.1, -1, 0.2, 0, 0, make_error_code(errc::http_error), "HTTP 500: boom", -1}};
  r.summary = summarize(r.samples, {});
  auto j = r.to_json();
  CHECK(j["requests"].size() == 2);
  CHECK(j["requests"][1]["error"] == "HTTP 500: boom");
  CHECK(j["requests"][1]["ttft_ms"].is_null());
  CHECK(j["config"]["concurrency"] == 2);
  CHECK(j["cancelled"] == false);
  CHECK(j.dump().find("api_key") == std::string::npos);
  CHECK(r.title() == "clusterkit bench: m @ http://h:8000, concurrency 2");
  CHECK(r.to_text().find("1 ok, 1 failed") != std::string::npos);
  CHECK(r.latency_svg().find("<svg") == 0);
}
