// The I/O half of the benchmark (include/clusterkit/bench.hpp): one
// io_context driven on one thread, an OpenAIClient with one connection per
// worker, arrivals on a timer, samples taken as chunks arrive.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <thread>

#include "clusterkit/bench.hpp"
#include "clusterkit/error.hpp"
#include "clusterkit/openai_client.hpp"
#include "core/block_on.hpp"
#include "core/text.hpp"

namespace clusterkit {
namespace {

using clock = std::chrono::steady_clock;

double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string iso_now() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

// Every connection is a descriptor: a run that needs more than the process
// may open would fail request by request with EMFILE. Raise the soft limit
// to the hard one when that is enough, else say so before anything starts.
void ensure_descriptors(std::size_t connections) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  auto const needed = static_cast<rlim_t>(connections) + 64;  // + what the process already holds
  if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= needed) return;
  if (lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= needed) {
    rlimit raised = lim;
    raised.rlim_cur = needed;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  throw Error(make_error_code(errc::invalid_argument),
              "concurrency (--concurrency) " + std::to_string(connections) + " needs about " + std::to_string(needed) +
                  " open files, and this process may open " + std::to_string(lim.rlim_cur) + " (hard limit " +
                  (lim.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(lim.rlim_max)) +
                  "): lower concurrency, or raise the limit (ulimit -n " + std::to_string(needed) + ")");
}

// Why a request failed, short and the same for the same cause, so that the
// summary can count them: the HTTP status for an error status, else the
// client's sentence (a timeout says which, a dropped connection when).
std::string failure_reason(std::error_code ec, StreamResult const& r) {
  if (r.meta.status >= 400)
    return "HTTP " + std::to_string(r.meta.status) +
           (r.meta.server_message.empty() ? "" : ": " + r.meta.server_message.substr(0, 160));
  if (!r.meta.message.empty()) return r.meta.message.substr(0, 240);
  return ec.message();
}

class BenchRunner : public std::enable_shared_from_this<BenchRunner> {
public:
  BenchRunner(BenchSpec spec, BenchProgressCallback progress)
      : spec_(std::move(spec)), progress_cb_(std::move(progress)), progress_timer_(io_), arrivals_(io_) {}

  /// Any thread: stop sending and end the requests in flight.
  void stop() {
    stop_requested_.store(true);
    asio::post(io_, [self = shared_from_this()] { self->stop_now(); });
  }

  std::pair<std::error_code, BenchResult> run() {
    BenchResult result;
    if (auto problems = spec_.problems(); !problems.empty())
      return {make_error_code(errc::invalid_argument), fail_result(result, detail::join(problems, "; "))};
    // Defaults, as documented on BenchSpec.
    if (!spec_.rate && !spec_.concurrency) spec_.concurrency = 1;
    if (!spec_.requests && !spec_.duration) spec_.requests = 100;
    concurrency_ = spec_.concurrency.value_or(0);
    try {
      ensure_descriptors(connections_used());
      client_.emplace(io_.get_executor(), client_options());
      resolve_model();
    } catch (Error const& e) {
      return {e.code(), fail_result(result, e.what())};
    }
    if (stop_requested_) return {make_error_code(errc::cancelled), fail_result(result, "cancelled before the first request")};
    if (spec_.prompts.empty()) {
      // 256 distinct prompts, fewer when they are long (at most ~32 MiB).
      auto const count = std::clamp<std::size_t>((32u << 20) / (spec_.prompt_tokens * 6 + 1), 1, 256);
      prompts_ = synthetic_prompts(spec_.prompt_tokens, spec_.seed, count);
    }
    result.date = iso_now();
    if (spec_.warmup) warm_up();
    start_ = clock::now();
    if (!stopped_) {
      if (spec_.rate) {
        plan_arrivals();
        schedule_next_arrival();
      } else {
        for (std::size_t w = 0; w < concurrency_ && may_launch(); ++w) launch(clock::now());
      }
    }
    tick();
    if (stopped_) maybe_end();  // stopped during the warm-up: nothing was sent
    drive();
    result.samples = std::move(samples_);
    result.itl = std::move(itl_);
    result.summary = summarize(result.samples, result.itl);
    result.warmed_connections = warmed_;
    result.cancelled = stopped_;
    result.spec = spec_;
    result.spec.api_key.clear();
    result.spec.prompts.clear();
    if (stopped_) return {make_error_code(errc::cancelled), std::move(result)};
    return {{}, std::move(result)};
  }

private:
  struct Live {
    clock::time_point scheduled;
    clock::time_point last;
    bool first = false;
    std::unique_ptr<asio::cancellation_signal> cancel;
  };

  BenchResult fail_result(BenchResult& r, std::string const& message) {
    r.spec = spec_;
    r.spec.api_key.clear();
    r.spec.prompts.clear();
    r.message = message;
    return std::move(r);
  }

  ClientOptions client_options() const {
    ClientOptions o;
    o.base_url = spec_.url;
    o.api_key = spec_.api_key;
    o.tls_verify = !spec_.insecure;
    o.ca_file = spec_.ca_file;
    o.max_retries = 0;  // a benchmark counts failures, it does not hide them
    o.request_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(spec_.timeout * 1000));
    // Fixed concurrency: one connection per worker. Rate mode: as many as
    // the rate needs (a bounded pool would queue in the client; that
    // queueing would still be counted, from the scheduled time).
    o.pool_size = concurrency_ > 0 ? concurrency_ : 100000;
    o.chunk_json = false;  // the typed fields are all the benchmark reads
    return o;
  }

  // No model given: the first the server lists, as `chat` does. A model
  // given that the server lists otherwise would fail every request with a
  // 404: refuse it up front, naming the served ones. (A server that cannot
  // list its models is left to answer the requests, which are counted.)
  void resolve_model() {
    std::error_code ec;
    ModelList models;
    client_->async_list_models([&](std::error_code e, ModelList m) {
      ec = e;
      models = std::move(m);
    });
    io_.run();
    io_.restart();
    if (!spec_.model.empty()) {
      if (ec || models.models.empty()) return;
      std::string ids;
      std::vector<std::string> names;
      for (auto const& m : models.models) {
        if (m.id == spec_.model) return;
        ids += (ids.empty() ? "" : ", ") + detail::without_control_characters(m.id);
        names.push_back(m.id);
      }
      auto near = detail::suggest_model_name(spec_.model, names);
      throw Error(make_error_code(errc::invalid_argument),
                  "model (--model) '" + detail::without_control_characters(spec_.model) + "' is not served by " + spec_.url +
                      "; it serves " + ids + (near ? "; did you mean '" + detail::without_control_characters(*near) + "'?" : ""));
    }
    if (ec) throw Error(ec, models.meta.message.empty() ? ec.message() : models.meta.message);
    if (models.models.empty()) throw Error(make_error_code(errc::protocol_error), spec_.url + " serves no model");
    spec_.model = models.models.front().id;
  }

  // The event loop. A thread that sleeps in epoll_wait is woken by the
  // core that queued the data; on loopback that is the server's core, once
  // per event when the client keeps up, which can cost a server on the same
  // machine a good part of its core (bench/openai/README.md has the
  // profile). So while events come faster than poll_interval_us apart, the
  // loop sleeps that long and takes everything that arrived meanwhile in
  // one pass, which wakes nobody; when a whole interval brings nothing it
  // blocks in epoll_wait again. The cost: an arrival is seen up to one
  // interval late while events come that fast.
  void drive() {
    if (spec_.poll_interval_us <= 0) {
      io_.run();
      return;
    }
    auto const interval = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double, std::micro>(spec_.poll_interval_us));
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

  // The connections a run opens at once: one per worker, but never more
  // than there are requests; with a rate and no cap, about a second's worth.
  std::size_t connections_used() const {
    std::size_t n = concurrency_ > 0 ? concurrency_ : std::min<std::size_t>(256, static_cast<std::size_t>(*spec_.rate) + 1);
    if (spec_.requests) n = std::min(n, *spec_.requests);
    return n;
  }

  // Open the connections the run will use before the clock starts (one
  // GET /v1/models per connection, all at once).
  void warm_up() {
    std::size_t const n = connections_used();
    for (std::size_t k = 0; k < n; ++k)
      client_->async_list_models([this](std::error_code ec, ModelList) {
        if (!ec) ++warmed_;
      });
    io_.run();
    io_.restart();
  }

  bool time_up() const { return spec_.duration && seconds(clock::now() - start_) >= *spec_.duration; }
  bool may_launch() const { return !stopped_ && !(spec_.requests && launched_ >= *spec_.requests) && !time_up(); }

  void plan_arrivals() {
    std::mt19937_64 rng(spec_.seed);
    std::exponential_distribution<double> gap(*spec_.rate);
    double t = 0;
    std::size_t n = spec_.requests ? *spec_.requests : std::numeric_limits<std::size_t>::max();
    for (std::size_t i = 0; i < n; ++i) {
      if (spec_.duration && t >= *spec_.duration) break;
      arrivals_at_.push_back(t);
      t += gap(rng);
    }
  }

  clock::time_point arrival(std::size_t k) const {
    return start_ + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(arrivals_at_[k]));
  }

  void schedule_next_arrival() {
    if (stopped_ || next_arrival_ >= arrivals_at_.size()) return;
    arrivals_.expires_at(arrival(next_arrival_));
    arrivals_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      auto now = clock::now();
      while (next_arrival_ < arrivals_at_.size()) {
        auto when = arrival(next_arrival_);
        if (when > now) break;
        ++next_arrival_;
        if (concurrency_ > 0 && in_flight_ >= concurrency_)
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
    live_.push_back(Live{scheduled, scheduled, false, std::make_unique<asio::cancellation_signal>()});
    samples_[i].scheduled = seconds(scheduled - start_);
    ++launched_;
    ++in_flight_;
    auto const& prompts = spec_.prompts.empty() ? prompts_ : spec_.prompts;
    auto const& prompt = prompts[i % prompts.size()];
    nlohmann::json extra = nlohmann::json::object();
    if (spec_.ignore_eos) extra["ignore_eos"] = true;
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
    auto done = asio::bind_cancellation_slot(live_[i].cancel->slot(),
                                             [this, i](std::error_code ec, StreamResult r) { finish(i, ec, r); });
    if (spec_.endpoint == "completions") {
      CompletionRequest req;
      req.model = spec_.model;
      req.prompt = prompt;
      req.max_tokens = spec_.max_tokens;
      req.extra = std::move(extra);
      client_->async_complete_stream(std::move(req), on_chunk, std::move(done));
    } else {
      auto req = ChatRequest::simple(spec_.model, prompt);
      req.max_tokens = spec_.max_tokens;
      req.extra = std::move(extra);
      client_->async_chat_stream(std::move(req), on_chunk, std::move(done));
    }
  }

  void finish(std::size_t i, std::error_code ec, StreamResult const& r) {
    auto now = clock::now();
    auto& s = samples_[i];
    s.e2e = seconds(now - live_[i].scheduled);
    live_[i].cancel.reset();
    if (r.request_sent != clock::time_point{}) s.send_delay = seconds(r.request_sent - live_[i].scheduled);
    if (r.usage) {
      s.prompt_tokens = r.usage->prompt_tokens;
      s.output_tokens = r.usage->completion_tokens;
    } else {
      s.output_tokens = static_cast<std::int64_t>(r.content_chunks);
    }
    if (ec) {
      ++failed_;
      s.error = ec;
      s.message = stopped_ && ec == errc::cancelled ? "cancelled (the run was stopped)" : failure_reason(ec, r);
      if (first_errors_.size() < 3) first_errors_.push_back(r.meta.message.empty() ? s.message : r.meta.message);
    }
    ++completed_;
    --in_flight_;
    if (!waiting_.empty() && !stopped_) {
      auto when = waiting_.front();
      waiting_.pop_front();
      launch(when);
    } else if (!spec_.rate && may_launch()) {
      launch(clock::now());
    }
    maybe_end();
  }

  void maybe_end() {
    bool const nothing_left = stopped_ || (spec_.rate ? next_arrival_ >= arrivals_at_.size() : !may_launch());
    if (in_flight_ == 0 && (waiting_.empty() || stopped_) && nothing_left) {
      report_progress();
      progress_timer_.cancel();
      arrivals_.cancel();
      if (client_) client_->close_idle();
    }
  }

  void stop_now() {
    if (stopped_) return;
    stopped_ = true;
    waiting_.clear();  // never sent: not counted
    arrivals_.cancel();
    for (auto& l : live_)
      if (l.cancel) l.cancel->emit(asio::cancellation_type::terminal);
    if (start_ != clock::time_point{}) maybe_end();
  }

  void report_progress() {
    if (!progress_cb_) return;
    BenchProgress p;
    p.launched = launched_;
    p.completed = completed_;
    p.failed = failed_;
    p.in_flight = in_flight_;
    p.elapsed = seconds(clock::now() - start_);
    if (spec_.requests)
      p.fraction = static_cast<double>(completed_) / static_cast<double>(*spec_.requests);
    else if (spec_.duration)
      p.fraction = std::min(1.0, p.elapsed / *spec_.duration);
    p.first_errors = first_errors_;
    progress_cb_(p);
  }

  void tick() {
    if (!progress_cb_) return;
    report_progress();
    progress_timer_.expires_after(std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(spec_.progress_interval)));
    progress_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) tick();
    });
  }

  BenchSpec spec_;
  BenchProgressCallback progress_cb_;
  asio::io_context io_{1};
  std::optional<OpenAIClient> client_;
  asio::steady_timer progress_timer_;
  asio::steady_timer arrivals_;
  std::atomic<bool> stop_requested_{false};
  bool stopped_ = false;
  std::size_t concurrency_ = 0;
  std::vector<std::string> prompts_;
  clock::time_point start_{};
  std::vector<double> arrivals_at_;
  std::size_t next_arrival_ = 0;
  std::deque<clock::time_point> waiting_;
  std::vector<BenchSample> samples_;
  std::vector<Live> live_;
  std::vector<double> itl_;
  std::vector<std::string> first_errors_;
  std::size_t launched_ = 0, completed_ = 0, failed_ = 0, in_flight_ = 0;
  std::size_t warmed_ = 0;
  std::size_t chunks_ = 0;
};

}  // namespace

std::vector<std::string> read_prompts_file(std::string const& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw Error(make_error_code(errno == ENOENT ? errc::file_not_found : errc::local_file_error),
                "cannot read the prompts file " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw Error(make_error_code(errc::local_file_error), "the prompts file " + path + " is not a regular file");
  constexpr std::size_t most = 64u << 20;
  if (static_cast<std::size_t>(st.st_size) > most)
    throw Error(make_error_code(errc::local_file_error),
                "the prompts file " + path + " holds " + std::to_string(st.st_size) + " bytes; at most 64 MiB");
  std::ifstream in(path);
  if (!in) throw Error(make_error_code(errc::local_file_error), "cannot read the prompts file " + path);
  std::vector<std::string> prompts;
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
  if (prompts.empty()) throw Error(make_error_code(errc::invalid_argument), path + " holds no prompt");
  return prompts;
}

BenchResult run_bench(BenchSpec const& spec, BenchProgressCallback progress) {
  auto runner = std::make_shared<BenchRunner>(spec, std::move(progress));
  // The process's stop (the CLI's Ctrl-C; see block_on): the run stops as a
  // cancelled async_run_bench does, and what was measured is returned.
  detail::BlockingCallScope counted;
  std::stop_callback on_stop(detail::blocking_stop_token(), [runner] { runner->stop(); });
  auto [ec, result] = runner->run();
  if (ec && ec != errc::cancelled) throw Error(ec, result.message.empty() ? ec.message() : result.message);
  return std::move(result);
}

namespace detail {

void start_bench(asio::any_io_executor ex, BenchSpec spec, BenchProgressCallback progress,
                 asio::any_completion_handler<BenchSignature> handler) {
  auto runner = std::make_shared<BenchRunner>(std::move(spec), std::move(progress));
  auto slot = asio::get_associated_cancellation_slot(handler);
  if (slot.is_connected()) slot.assign([runner](asio::cancellation_type) { runner->stop(); });
  auto work = asio::make_work_guard(ex);
  std::thread([runner, handler = std::move(handler), ex, work = std::move(work)]() mutable {
    auto outcome = runner->run();
    asio::post(ex, [handler = std::move(handler), outcome = std::move(outcome)]() mutable {
      auto slot = asio::get_associated_cancellation_slot(handler);
      if (slot.is_connected()) slot.clear();
      // On the handler's own executor (a strand, say), as Asio promises.
      asio::dispatch(asio::append(std::move(handler), outcome.first, std::move(outcome.second)));
    });
    work.reset();
  }).detach();
}

}  // namespace detail
}  // namespace clusterkit
