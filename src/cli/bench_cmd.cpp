// `clusterkit bench`: load an OpenAI-compatible server (vLLM) by fixed
// concurrency or by a Poisson request rate and report TTFT, TPOT, ITL and
// end-to-end latency, throughput and errors.
//
// Every latency counts from the request's *scheduled* send time: when the
// client falls behind (a saturated pool, a busy core), that delay shows in
// TTFT instead of being hidden (vLLM issue 54101). One thread, one
// io_context: pin it with `taskset -c N` for comparable numbers.
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>

#include "bench_report.hpp"
#include "clusterkit/openai_client.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

using clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string url;
  std::string model;
  std::string api_key;
  std::string api_key_file;
  std::string endpoint = "chat";
  std::size_t concurrency = 0;
  double rate = 0;
  std::size_t requests = 0;
  double duration = 0;
  std::size_t prompt_tokens = 128;
  std::string prompts_file;
  std::int64_t max_tokens = 128;
  bool no_ignore_eos = false;
  std::uint64_t seed = 0;
  std::string json_out;
  std::string plot_out;
  std::string ca_file;
  bool insecure = false;
  bool no_progress = false;
  bool no_warmup = false;
  double poll_interval_us = 50;
  double timeout = 600;
};

std::vector<std::string> load_prompts(BenchArgs const& a) {
  std::vector<std::string> prompts;
  if (!a.prompts_file.empty()) {
    std::ifstream in(a.prompts_file);
    if (!in) throw Error(make_error_code(errc::local_file_error), "cannot read the prompts file " + a.prompts_file);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line.front() == '{') {
        // JSON lines: {"prompt": ...} or {"text": ...}
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.is_object()) {
          for (auto const* key : {"prompt", "text", "content"})
            if (j.contains(key) && j[key].is_string()) {
              prompts.push_back(j[key].get<std::string>());
              break;
            }
          continue;
        }
      }
      prompts.push_back(line);
    }
    if (prompts.empty()) throw Error(make_error_code(errc::invalid_argument), a.prompts_file + " holds no prompt");
    return prompts;
  }
  // Synthetic prompts of about `prompt_tokens` words (a word is about a
  // token for most tokenizers, exactly one for the simulator's), each with
  // its own prefix so a server's prefix cache cannot serve it.
  static char const* const words[] = {"time", "person", "year",  "way",    "day",   "thing", "man",    "world",
                                      "life", "hand",   "part",  "child",  "eye",   "woman", "place",  "work",
                                      "week", "case",   "point", "number", "group", "fact",  "system", "water",
                                      "room", "mother", "area",  "money",  "story", "month", "lot",    "right"};
  std::mt19937_64 rng(a.seed ^ 0x9e3779b97f4a7c15ull);
  std::size_t const distinct = 256;
  for (std::size_t i = 0; i < distinct; ++i) {
    std::string p = std::to_string(i);
    for (std::size_t w = 1; w < a.prompt_tokens; ++w) {
      p += ' ';
      p += words[rng() % std::size(words)];
    }
    prompts.push_back(std::move(p));
  }
  return prompts;
}

class BenchRun {
public:
  BenchRun(BenchArgs const& a, std::vector<std::string> prompts)
      : a_(a), prompts_(std::move(prompts)), client_(io_.get_executor(), client_options(a)), progress_(io_),
        arrivals_(io_) {
    progress_tty_ = !a.no_progress && ::isatty(2);
    progress_plain_ = !a.no_progress && !progress_tty_;
  }

  void run() {
    if (!a_.no_warmup) warm_up();
    start_ = clock::now();
    if (a_.rate > 0) plan_arrivals();
    if (a_.rate > 0)
      schedule_next_arrival();
    else
      for (std::size_t w = 0; w < a_.concurrency && may_launch(); ++w) launch(clock::now());
    tick();
    drive();
    if (progress_tty_) std::fputs("\r\033[K", stderr);
  }

  std::vector<BenchSample> const& samples() const { return samples_; }
  std::size_t warmed_connections() const { return warmed_; }
  std::vector<double> const& itl() const { return itl_; }
  std::string const& model() const { return a_.model; }

private:
  struct Live {
    clock::time_point scheduled;
    clock::time_point last;
    bool first = false;
  };

  // The event loop. A thread that sleeps in epoll_wait is woken by the
  // core that queued the data; on loopback that is the server's core, once
  // per event when the client keeps up, which can cost a server on the same
  // machine a good part of its core (bench/openai/README.md has the
  // profile). So while events come faster than --poll-interval apart, the loop
  // sleeps that long and takes everything that arrived meanwhile in one
  // pass, which wakes nobody; when a whole interval brings nothing it blocks
  // in epoll_wait again. The cost: an arrival is seen up to one interval
  // late while events come that fast.
  void drive() {
    if (a_.poll_interval_us <= 0) {
      io_.run();
      return;
    }
    auto const interval = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double, std::micro>(a_.poll_interval_us));
    auto const ns = std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count();
    timespec const pause{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    ::prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);  // sleep what was asked, not +50 us
    auto last_pass = clock::now();
    while (!io_.stopped()) {
      io_.run_one();
      io_.poll();
      auto now = clock::now();
      bool busy = now - last_pass < interval;
      last_pass = now;
      while (busy && !io_.stopped()) {
        std::size_t const before = chunks_;
        ::nanosleep(&pause, nullptr);
        io_.poll();
        busy = chunks_ != before;
        last_pass = clock::now();
      }
    }
  }

  // Open the connections the run will use before the clock starts (one
  // GET /v1/models per connection, all at once), so TTFT measures the
  // server, not TCP and TLS handshakes. --no-warmup counts them in.
  void warm_up() {
    std::size_t const n = a_.concurrency > 0 ? a_.concurrency : std::min<std::size_t>(256, static_cast<std::size_t>(a_.rate) + 1);
    std::size_t pending = n;
    for (std::size_t k = 0; k < n; ++k)
      client_.async_list_models([this, &pending](std::error_code ec, ModelList) {
        if (!ec) ++warmed_;
        --pending;
      });
    io_.run();
    io_.restart();
  }

  static ClientOptions client_options(BenchArgs const& a) {
    ClientOptions o;
    o.base_url = a.url;
    o.api_key = a.api_key;
    o.tls_verify = !a.insecure;
    o.ca_file = a.ca_file;
    o.max_retries = 0;  // a benchmark counts failures, it does not hide them
    o.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(a.timeout * 1000));
    // Fixed concurrency: one connection per worker. Rate mode: as many as
    // the rate needs (a bounded pool would queue in the client; that
    // queueing would still be counted, from the scheduled time).
    o.pool_size = a.concurrency > 0 ? a.concurrency : 100000;
    o.chunk_json = false;  // the typed fields are all bench reads
    return o;
  }

  bool time_up() const {
    return a_.duration > 0 && std::chrono::duration<double>(clock::now() - start_).count() >= a_.duration;
  }
  bool may_launch() const { return !(a_.requests > 0 && launched_ >= a_.requests) && !time_up(); }

  void plan_arrivals() {
    std::mt19937_64 rng(a_.seed);
    std::exponential_distribution<double> gap(a_.rate);
    double t = 0;
    std::size_t n = a_.requests > 0 ? a_.requests : std::numeric_limits<std::size_t>::max();
    for (std::size_t i = 0; i < n; ++i) {
      if (a_.duration > 0 && t >= a_.duration) break;
      arrivals_at_.push_back(t);
      t += gap(rng);
    }
  }

  void schedule_next_arrival() {
    if (next_arrival_ >= arrivals_at_.size()) return;
    auto when = start_ + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(arrivals_at_[next_arrival_]));
    arrivals_.expires_at(when);
    arrivals_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      auto now = clock::now();
      while (next_arrival_ < arrivals_at_.size()) {
        auto when = start_ + std::chrono::duration_cast<clock::duration>(
                                 std::chrono::duration<double>(arrivals_at_[next_arrival_]));
        if (when > now) break;
        ++next_arrival_;
        if (a_.concurrency > 0 && in_flight_ >= a_.concurrency)
          waiting_.push_back(when);  // over the cap: waits, and the wait counts
        else
          launch(when);
      }
      schedule_next_arrival();
    });
  }

  void launch(clock::time_point scheduled) {
    std::size_t const i = samples_.size();
    samples_.emplace_back();
    live_.push_back(Live{scheduled, scheduled, false});
    samples_[i].scheduled = seconds(scheduled - start_);
    ++launched_;
    ++in_flight_;
    auto const& prompt = prompts_[i % prompts_.size()];
    nlohmann::json extra = nlohmann::json::object();
    if (!a_.no_ignore_eos) extra["ignore_eos"] = true;
    auto on_chunk = [this, i](StreamChunk const& c) {
      ++chunks_;
      if (c.delta.empty()) return;
      auto& l = live_[i];
      if (!l.first) {
        l.first = true;
        samples_[i].ttft = seconds(c.arrived - l.scheduled);
      } else {
        itl_.push_back(seconds(c.arrived - l.last));
      }
      l.last = c.arrived;
    };
    auto done = [this, i](std::error_code ec, StreamResult r) { finish(i, ec, r); };
    if (a_.endpoint == "completions") {
      CompletionRequest req;
      req.model = a_.model;
      req.prompt = prompt;
      req.max_tokens = a_.max_tokens;
      req.extra = std::move(extra);
      client_.async_complete_stream(std::move(req), on_chunk, done);
    } else {
      auto req = ChatRequest::simple(a_.model, prompt);
      req.max_tokens = a_.max_tokens;
      req.extra = std::move(extra);
      client_.async_chat_stream(std::move(req), on_chunk, done);
    }
  }

  void finish(std::size_t i, std::error_code ec, StreamResult const& r) {
    auto now = clock::now();
    auto& s = samples_[i];
    s.e2e = seconds(now - live_[i].scheduled);
    s.ok = !ec;
    if (r.request_sent != clock::time_point{}) s.send_delay = seconds(r.request_sent - live_[i].scheduled);
    if (r.usage) {
      s.prompt_tokens = r.usage->prompt_tokens;
      s.output_tokens = r.usage->completion_tokens;
    } else {
      s.output_tokens = static_cast<std::int64_t>(r.content_chunks);
    }
    if (ec) {
      ++failed_;
      if (r.meta.status != 0)
        s.error = "HTTP " + std::to_string(r.meta.status) +
                  (r.meta.server_message.empty() ? "" : ": " + r.meta.server_message.substr(0, 160));
      else
        s.error = ec.message();
      if (failed_ <= 3) spdlog_once(r.meta.diagnostic.empty() ? ec.message() : r.meta.diagnostic);
    }
    ++completed_;
    --in_flight_;
    if (!waiting_.empty()) {
      auto when = waiting_.front();
      waiting_.pop_front();
      launch(when);
    } else if (a_.rate <= 0 && may_launch()) {
      launch(clock::now());
    }
    if (in_flight_ == 0 && waiting_.empty() && (a_.rate <= 0 ? !may_launch() : next_arrival_ >= arrivals_at_.size())) {
      progress_.cancel();
      arrivals_.cancel();
      client_.close_idle();
    }
  }

  static void spdlog_once(std::string const& text) { std::fprintf(stderr, "\r\033[Kbench: request failed: %s\n", text.c_str()); }

  void tick() {
    if (progress_tty_ || progress_plain_) draw_progress();
    progress_.expires_after(progress_tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000));
    progress_.async_wait([this](boost::system::error_code ec) {
      if (!ec) tick();
    });
  }

  void draw_progress() {
    double elapsed = seconds(clock::now() - start_);
    double frac = 0;
    if (a_.requests > 0)
      frac = static_cast<double>(completed_) / static_cast<double>(a_.requests);
    else if (a_.duration > 0)
      frac = std::min(1.0, elapsed / a_.duration);
    constexpr int width = 30;
    int filled = static_cast<int>(frac * width);
    char bar[width + 1];
    for (int k = 0; k < width; ++k) bar[k] = k < filled ? '#' : '-';
    bar[width] = 0;
    double rate = elapsed > 0 ? static_cast<double>(completed_) / elapsed : 0;
    std::fprintf(stderr, "%s[%s] %3.0f%%  %zu done  %.1f req/s  %zu in flight  %zu errors  %.1f s%s",
                 progress_tty_ ? "\r\033[K" : "", bar, frac * 100, completed_, rate, in_flight_, failed_, elapsed,
                 progress_tty_ ? "" : "\n");
    std::fflush(stderr);
  }

  static double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

  BenchArgs const& a_;
  std::vector<std::string> prompts_;
  boost::asio::io_context io_{1};
  OpenAIClient client_;
  boost::asio::steady_timer progress_;
  boost::asio::steady_timer arrivals_;
  bool progress_tty_ = false;
  bool progress_plain_ = false;
  clock::time_point start_;
  std::vector<double> arrivals_at_;
  std::size_t next_arrival_ = 0;
  std::deque<clock::time_point> waiting_;
  std::vector<BenchSample> samples_;
  std::vector<Live> live_;
  std::vector<double> itl_;
  std::size_t launched_ = 0, completed_ = 0, failed_ = 0, in_flight_ = 0;
  std::size_t warmed_ = 0;
  std::size_t chunks_ = 0;
};

std::string iso_now() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

void write_plot(std::string const& path, std::string const& svg) {
  namespace fs = std::filesystem;
  auto ext = fs::path(path).extension().string();
  if (ext == ".png") {
    // PNG through a converter when one is installed; SVG needs none.
    auto tmp = fs::temp_directory_path() / ("ck-bench-" + std::to_string(::getpid()) + ".svg");
    std::ofstream(tmp) << svg;
    std::string cmd;
    if (std::system("command -v rsvg-convert >/dev/null 2>&1") == 0)
      cmd = "rsvg-convert -o '" + path + "' '" + tmp.string() + "'";
    else if (std::system("command -v convert >/dev/null 2>&1") == 0)
      cmd = "convert '" + tmp.string() + "' '" + path + "'";
    int rc = cmd.empty() ? -1 : std::system(cmd.c_str());
    fs::remove(tmp);
    if (rc != 0)
      throw Error(make_error_code(errc::program_missing),
                  "writing a PNG needs rsvg-convert (librsvg2-bin) or ImageMagick; or ask for an .svg plot");
    return;
  }
  std::ofstream out(path);
  if (!out) throw Error(make_error_code(errc::local_file_error), "cannot write " + path);
  out << svg;
}

int run_bench(GlobalOptions const& g, BenchArgs a) {
  if (a.concurrency == 0 && a.rate <= 0) a.concurrency = 1;
  if (a.requests == 0 && a.duration <= 0) a.requests = 100;
  a.api_key = resolve_api_key(a.api_key, a.api_key_file, a.url);
  if (a.endpoint != "chat" && a.endpoint != "completions")
    throw Error(make_error_code(errc::invalid_argument), "--endpoint must be chat or completions");
  if (a.model.empty()) {
    // Ask the server, as `chat` does.
    boost::asio::io_context io;
    ClientOptions o;
    o.base_url = a.url;
    o.api_key = a.api_key;
    o.tls_verify = !a.insecure;
    o.ca_file = a.ca_file;
    OpenAIClient probe(io.get_executor(), o);
    std::error_code ec;
    ModelList models;
    probe.async_list_models([&](std::error_code e, ModelList m) {
      ec = e;
      models = std::move(m);
    });
    io.run();
    if (ec) throw Error(ec, models.meta.diagnostic);
    if (models.models.empty()) throw Error(make_error_code(errc::protocol_error), a.url + " serves no model");
    a.model = models.models.front().id;
  }
  auto number = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return std::string(b);
  };
  std::string const mode = a.rate > 0 ? "rate " + number(a.rate) + " req/s (Poisson, seed " +
                                            std::to_string(a.seed) + ")" +
                                            (a.concurrency ? ", at most " + std::to_string(a.concurrency) + " in flight" : "")
                                      : "concurrency " + std::to_string(a.concurrency);
  std::fprintf(stderr, "bench: %s, model %s, %s, %s\n", a.url.c_str(), a.model.c_str(), mode.c_str(),
               (a.requests ? std::to_string(a.requests) + " requests" : number(a.duration) + " s").c_str());
  BenchRun run(a, load_prompts(a));
  run.run();
  auto summary = summarize(run.samples(), run.itl());
  std::string const title = "clusterkit bench: " + a.model + " @ " + a.url + ", " + mode;
  if (!g.json) {
    std::printf("%s\n%s", title.c_str(), format_summary(summary).c_str());
    std::fflush(stdout);
  }
  nlohmann::json report;
  if (!a.json_out.empty() || g.json) {
    report = summary_to_json(summary);
    report["date"] = iso_now();
    report["config"] = {{"url", a.url},
                        {"model", a.model},
                        {"endpoint", a.endpoint},
                        {"concurrency", a.concurrency},
                        {"rate", a.rate},
                        {"requests", a.requests},
                        {"duration", a.duration},
                        {"prompt_tokens", a.prompts_file.empty() ? nlohmann::json(a.prompt_tokens) : nlohmann::json()},
                        {"prompts_file", a.prompts_file},
                        {"max_tokens", a.max_tokens},
                        {"ignore_eos", !a.no_ignore_eos},
                        {"seed", a.seed},
                        {"poll_interval_us", a.poll_interval_us}};
    report["latency_reference"] = "scheduled send time";
    report["warmed_connections"] = run.warmed_connections();
    nlohmann::json rows = nlohmann::json::array();
    for (auto const& s : run.samples())
      rows.push_back({{"scheduled_ms", s.scheduled * 1e3},
                      {"ttft_ms", s.ttft >= 0 ? nlohmann::json(s.ttft * 1e3) : nlohmann::json()},
                      {"e2e_ms", s.e2e * 1e3},
                      {"prompt_tokens", s.prompt_tokens},
                      {"output_tokens", s.output_tokens},
                      {"error", s.ok ? nlohmann::json() : nlohmann::json(s.error)}});
    report["requests"] = std::move(rows);
  }
  if (g.json) std::cout << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  if (!a.json_out.empty()) {
    std::ofstream out(a.json_out);
    if (!out) throw Error(make_error_code(errc::local_file_error), "cannot write " + a.json_out);
    out << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  if (!a.plot_out.empty()) write_plot(a.plot_out, latency_svg(run.samples(), title));
  return summary.completed == 0 ? 1 : 0;
}

}  // namespace

void register_bench(CLI::App& app, GlobalOptions& g, Action& action) {
  auto a = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Load an OpenAI-compatible server (vLLM) and report TTFT, TPOT, ITL, latency, throughput");
  sub->add_option("--url", a->url, "Server URL (http://host:8000 or https://host/v1)")->required();
  sub->add_option("--model", a->model, "Model name (default: the first the server lists)");
  sub->add_option("--api-key", a->api_key, "Bearer token (default: $OPENAI_API_KEY, else the key `serve up` stored for --url)")
      ->envname("OPENAI_API_KEY");
  sub->add_option("--api-key-file", a->api_key_file, "Read the bearer token from this file (keeps it out of `ps`)");
  sub->add_option("--endpoint", a->endpoint, "chat (/v1/chat/completions) or completions (/v1/completions)");
  sub->add_option("--concurrency", a->concurrency, "Requests in flight at once (with --rate: the most in flight)");
  sub->add_option("--rate", a->rate, "Requests per second, Poisson arrivals (seeded by --seed)");
  sub->add_option("--requests", a->requests, "How many requests (default 100 unless --duration)");
  sub->add_option("--duration", a->duration, "Stop sending after this many seconds");
  sub->add_option("--prompt-tokens", a->prompt_tokens, "Length of synthetic prompts, in words (~tokens)");
  sub->add_option("--prompts", a->prompts_file, "A file of prompts: one per line, or JSON lines with \"prompt\"");
  sub->add_option("--max-tokens", a->max_tokens, "Tokens to generate per request");
  sub->add_flag("--no-ignore-eos", a->no_ignore_eos, "Let the model stop early (default: ignore_eos, exact lengths)");
  sub->add_option("--seed", a->seed, "Seed for arrivals and synthetic prompts");
  sub->add_option("--json", a->json_out, "Write the results as JSON to this file");
  sub->add_option("--plot", a->plot_out, "Write a latency plot (.svg; .png needs rsvg-convert or ImageMagick)");
  sub->add_option("--timeout", a->timeout, "Seconds one request may take (default 600)");
  sub->add_option("--ca-file", a->ca_file, "PEM file of CAs to trust for https");
  sub->add_flag("--insecure", a->insecure, "Do not verify the server's TLS certificate (test servers only)");
  sub->add_flag("--no-progress", a->no_progress, "No progress bar on stderr");
  sub->add_option("--poll-interval", a->poll_interval_us,
                  "While events come faster than this many microseconds apart, read them in batches this often "
                  "instead of waking for each one; 0: wake for each (default 50)");
  sub->add_flag("--no-warmup", a->no_warmup,
                "Do not open connections before the clock starts (handshakes then count in TTFT)");
  sub->callback([&g, &action, a] { action = [&g, a] { return run_bench(g, *a); }; });
}

}  // namespace clusterkit::cli
