// `clusterkit bench`: load an OpenAI-compatible server (vLLM) by fixed
// concurrency or by a Poisson request rate and report TTFT, TPOT, ITL and
// end-to-end latency, throughput and errors.
//
// Every latency counts from the request's *scheduled* send time: when the
// client falls behind (a saturated pool, a busy core), that delay shows in
// TTFT instead of being hidden (vLLM issue 54101). One thread, one
// io_context: pin it with `taskset -c N` for comparable numbers.
// `clusterkit bench`: the flags of the load generator in
// include/clusterkit/bench.hpp, a progress bar, the report on stdout, and
// the --json / --plot files (checked before the run, so that a long run is
// never lost to a path that cannot be written).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "clusterkit/bench.hpp"
#include "clusterkit/version.hpp"
#include "clusterkit/shell.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

struct BenchArgs {
  BenchSpec spec;
  std::size_t concurrency = 0;
  double rate = 0;
  std::size_t requests = 0;
  double duration = 0;
  std::string api_key_file;
  std::string prompts_file;
  bool no_ignore_eos = false;
  std::string json_out;
  std::string plot_out;
  bool no_progress = false;
  bool no_warmup = false;
};

// The command that turns `svg` into `png`, or "" when neither rsvg-convert
// nor ImageMagick is installed.
std::string png_converter(std::string const& svg, std::string const& png) {
  if (std::system("command -v rsvg-convert >/dev/null 2>&1") == 0)
    return "rsvg-convert -o " + shell::quote(png) + " " + shell::quote(svg);
  if (std::system("command -v convert >/dev/null 2>&1") == 0) return "convert " + shell::quote(svg) + " " + shell::quote(png);
  return {};
}

// An output path must be writable now: its folder exists and takes files,
// and it is not itself a folder. Checked before the run starts.
void check_output_path(std::string const& flag, std::string const& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(make_error_code(errc::invalid_argument), flag + " " + path + " is a folder; give a file name in it");
  auto parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    throw Error(make_error_code(errc::invalid_argument),
                flag + " " + path + ": the folder " + parent.string() + " does not exist (create it first)");
  if (::access(parent.c_str(), W_OK) != 0)
    throw Error(make_error_code(errc::invalid_argument),
                flag + " " + path + ": cannot write into " + parent.string() + " (" + std::strerror(errno) + ")");
}

void write_plot(std::string const& path, std::string const& svg) {
  namespace fs = std::filesystem;
  auto ext = fs::path(path).extension().string();
  if (ext == ".png") {
    // PNG through a converter when one is installed; SVG needs none.
    auto tmp = fs::temp_directory_path() / ("ck-bench-" + std::to_string(::getpid()) + ".svg");
    std::ofstream(tmp) << svg;
    auto cmd = png_converter(tmp.string(), path);
    if (cmd.empty()) {
      fs::remove(tmp);
      throw Error(make_error_code(errc::program_missing),
                  "writing a PNG needs rsvg-convert (librsvg2-bin) or ImageMagick; or ask for an .svg plot");
    }
    int rc = std::system(cmd.c_str());
    fs::remove(tmp);
    if (rc != 0)
      throw Error(make_error_code(errc::local_file_error),
                  "`" + cmd.substr(0, cmd.find(' ')) + "` could not write " + path + " (exit " +
                      std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc) + "); ask for an .svg plot instead");
    return;
  }
  std::ofstream out(path);
  if (!out) throw Error(make_error_code(errc::local_file_error), "cannot write " + path);
  out << svg;
}

class ProgressBar {
public:
  explicit ProgressBar(bool enabled) : tty_(enabled && ::isatty(2)), plain_(enabled && !tty_) {}
  double interval() const { return tty_ ? 0.1 : 5.0; }
  void operator()(BenchProgress const& p) {
    // The client's own sentence for the first few failures, as they happen.
    for (; errors_shown_ < p.first_errors.size(); ++errors_shown_)
      std::fprintf(stderr, "%sbench: request failed: %s\n", tty_ ? "\r\033[K" : "", p.first_errors[errors_shown_].c_str());
    if (!tty_ && !plain_) return;
    constexpr int width = 30;
    int filled = static_cast<int>(p.fraction * width);
    char bar[width + 1];
    for (int k = 0; k < width; ++k) bar[k] = k < filled ? '#' : '-';
    bar[width] = 0;
    double rate = p.elapsed > 0 ? static_cast<double>(p.completed) / p.elapsed : 0;
    std::fprintf(stderr, "%s[%s] %3.0f%%  %zu done  %.1f req/s  %zu in flight  %zu errors  %.1f s%s",
                 tty_ ? "\r\033[K" : "", bar, p.fraction * 100, p.completed, rate, p.in_flight, p.failed, p.elapsed,
                 tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void clear() const {
    if (tty_) std::fputs("\r\033[K", stderr);
  }

private:
  bool tty_, plain_;
  std::size_t errors_shown_ = 0;
};

int run_bench_cmd(GlobalOptions const& g, CLI::App const& sub, BenchArgs a) {
  auto& spec = a.spec;
  // Flags given are checked as given (--requests 0 is an error, not "the default").
  if (sub.count("--concurrency")) spec.concurrency = a.concurrency;
  if (sub.count("--rate")) spec.rate = a.rate;
  if (sub.count("--requests")) spec.requests = a.requests;
  if (sub.count("--duration")) spec.duration = a.duration;
  spec.ignore_eos = !a.no_ignore_eos;
  spec.warmup = !a.no_warmup;
  if (auto problems = spec.problems(); !problems.empty()) {
    std::string text;
    for (auto const& p : problems) text += (text.empty() ? "" : "\n  ") + p;
    throw Error(make_error_code(errc::invalid_argument), problems.size() == 1 ? text : "bad settings:\n  " + text);
  }
  if (!a.json_out.empty()) check_output_path("--json", a.json_out);
  if (!a.plot_out.empty()) {
    check_output_path("--plot", a.plot_out);
    if (std::filesystem::path(a.plot_out).extension() == ".png" && png_converter("x.svg", "x.png").empty())
      throw Error(make_error_code(errc::program_missing),
                  "--plot " + a.plot_out + ": writing a PNG needs rsvg-convert (librsvg2-bin) or ImageMagick; or ask for an .svg plot");
  }
  if (!a.prompts_file.empty()) spec.prompts = read_prompts_file(a.prompts_file);
  spec.api_key = resolve_api_key(spec.api_key, a.api_key_file, spec.url);

  std::string how_many = "100 requests";
  if (spec.requests) how_many = std::to_string(*spec.requests) + " requests";
  else if (spec.duration) {
    char b[32];
    std::snprintf(b, sizeof b, "%g s", *spec.duration);
    how_many = b;
  }
  std::fprintf(stderr, "bench: %s, model %s, %s, %s\n", spec.url.c_str(),
               spec.model.empty() ? "(the first the server lists)" : spec.model.c_str(), spec.mode().c_str(),
               how_many.c_str());
  ProgressBar bar(!a.no_progress);
  spec.progress_interval = bar.interval();
  auto result = run_bench(spec, [&bar](BenchProgress const& p) { bar(p); });
  bar.clear();
  if (!g.json) {
    std::printf("%s", result.to_text().c_str());
    std::fflush(stdout);
  }
  if (!a.json_out.empty() || g.json) {
    auto report = result.to_json();
    report["config"]["prompts_file"] = a.prompts_file;
    report["clusterkit_version"] = version_string;
    auto text = report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    if (g.json) std::cout << text << std::endl;
    if (!a.json_out.empty()) {
      std::ofstream out(a.json_out);
      if (!out) throw Error(make_error_code(errc::local_file_error), "cannot write " + a.json_out);
      out << text << "\n";
    }
  }
  if (!a.plot_out.empty()) write_plot(a.plot_out, result.latency_svg());
  return result.summary.completed == 0 ? 1 : 0;
}

}  // namespace

void register_bench(CLI::App& app, GlobalOptions& g, Action& action) {
  auto a = std::make_shared<BenchArgs>();
  auto& spec = a->spec;
  auto* sub = app.add_subcommand("bench", "Load an OpenAI-compatible server (vLLM) and report TTFT, TPOT, ITL, latency, throughput");
  sub->add_option("--url", spec.url, "Server URL (http://host:8000 or https://host/v1)")->required();
  sub->add_option("--model", spec.model, "Model name (default: the first the server lists)");
  sub->add_option("--api-key", spec.api_key, "Bearer token (default: $OPENAI_API_KEY, else the key `serve up` stored for --url)")
      ->envname("OPENAI_API_KEY");
  sub->add_option("--api-key-file", a->api_key_file, "Read the bearer token from this file (keeps it out of `ps`)");
  sub->add_option("--endpoint", spec.endpoint, "chat (/v1/chat/completions) or completions (/v1/completions)");
  sub->add_option("--concurrency", a->concurrency, "Requests in flight at once, 1..1000000 (with --rate: the most in flight)");
  sub->add_option("--rate", a->rate, "Requests per second (> 0), Poisson arrivals (seeded by --seed)");
  sub->add_option("--requests", a->requests, "How many requests, >= 1 (default 100 unless --duration)");
  sub->add_option("--duration", a->duration, "Stop sending after this many seconds (> 0)");
  sub->add_option("--prompt-tokens", spec.prompt_tokens, "Length of synthetic prompts, in words (~tokens)");
  sub->add_option("--prompts", a->prompts_file, "A file of prompts: one per line, or JSON lines with \"prompt\"");
  sub->add_option("--max-tokens", spec.max_tokens, "Tokens to generate per request");
  sub->add_flag("--no-ignore-eos", a->no_ignore_eos, "Let the model stop early (default: ignore_eos, exact lengths)");
  sub->add_option("--seed", spec.seed, "Seed for arrivals and synthetic prompts");
  sub->add_option("--json", a->json_out, "Write the results as JSON to this file (checked before the run)");
  sub->add_option("--plot", a->plot_out, "Write a latency plot (.svg; .png needs rsvg-convert or ImageMagick)");
  sub->add_option("--timeout", spec.timeout, "Seconds one request may take (default 600)");
  sub->add_option("--ca-file", spec.ca_file, "PEM file of CAs to trust for https");
  sub->add_flag("--insecure", spec.insecure, "Do not verify the server's TLS certificate (test servers only)");
  sub->add_flag("--no-progress", a->no_progress, "No progress bar on stderr");
  sub->add_option("--poll-interval", spec.poll_interval_us,
                  "While events come faster than this many microseconds apart, read them in batches this often "
                  "instead of waking for each one; 0: wake for each (default 50)");
  sub->add_flag("--no-warmup", a->no_warmup,
                "Do not open connections before the clock starts (handshakes then count in TTFT)");
  sub->callback([&g, &action, a, sub] { action = [&g, a, sub] { return run_bench_cmd(g, *sub, *a); }; });
}

}  // namespace clusterkit::cli
