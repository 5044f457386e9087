// Host facts: the I/O half. Connect every host (bounded concurrency), then
// one fan-out of the facts script, with the clock line timed as it arrives.
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <future>
#include <memory>
#include <mutex>

#include "clusterkit/facts.hpp"
#include "core/completion.hpp"
#include "remote/run_each.hpp"
#include "core/text.hpp"
#include "core/block_on.hpp"

namespace clusterkit::detail {
namespace {

/// Arrival time of each host's clock line, filled from `on_line` (which
/// runs on the hosts' executors: guarded).
struct ClockStamps {
  std::mutex mutex;
  std::map<std::string, bool, std::less<>> in_clock;
  std::map<std::string, double, std::less<>> received;

  void on_line(std::string_view host, OutputLine const& line) {
    if (line.stream != Stream::out) return;
    std::lock_guard lock(mutex);
    if (received.count(host)) return;
    if (line.text == "@@ck-section clock@@") {
      in_clock[std::string(host)] = true;
      return;
    }
    auto it = in_clock.find(host);
    if (it != in_clock.end() && it->second) received[std::string(host)] = wall_clock_now();
  }
};

struct GatherOp : std::enable_shared_from_this<GatherOp> {
  std::vector<Host> hosts;
  FactsOptions options;
  asio::any_completion_handler<FactsSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  std::vector<HostFactsOutcome> outcomes;
  std::string script;
  std::size_t next_connect = 0, connecting = 0, connected_count = 0;
  std::vector<bool> connected;
  std::shared_ptr<ClockStamps> stamps = std::make_shared<ClockStamps>();
  double sent = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  GatherOp(std::vector<Host> h, FactsOptions o, asio::any_completion_handler<FactsSignature> hd)
      : hosts(std::move(h)),
        options(std::move(o)),
        handler(std::move(hd)),
        strand(asio::make_strand(hosts.front().get_executor())),
        outcomes(hosts.size()),
        connected(hosts.size(), false) {
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      outcomes[i].host = hosts[i].name();
      outcomes[i].facts.host = hosts[i].name();
    }
    if (options.concurrency == 0) options.concurrency = 1;
  }

  void start() {
    try {
      script = facts_script(options);
    } catch (Error const& e) {
      for (auto& o : outcomes) {
        o.error = e.code();
        o.message = e.what();
      }
      return finish();
    }
    launch_connects();
  }

  void launch_connects() {
    while (connecting < options.concurrency && next_connect < hosts.size()) {
      auto i = next_connect++;
      ++connecting;
      hosts[i].async_connect(asio::bind_executor(strand, [self = shared_from_this(), i](std::error_code ec) {
        self->on_connected(i, ec);
      }));
    }
  }

  void on_connected(std::size_t i, std::error_code ec) {
    --connecting;
    if (ec) {
      outcomes[i].error = ec;
      outcomes[i].message = valid_utf8(hosts[i].last_message());
      if (outcomes[i].message.empty()) outcomes[i].message = hosts[i].name() + ": " + ec.message();
    } else {
      connected[i] = true;
      ++connected_count;
    }
    if (next_connect < hosts.size()) return launch_connects();
    if (connecting == 0) run_script();
  }

  void run_script() {
    std::vector<Host> ready;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < hosts.size(); ++i)
      if (connected[i]) {
        ready.push_back(hosts[i]);
        index.push_back(i);
      }
    if (ready.empty()) return finish();
    FanoutOptions f;
    f.concurrency = options.concurrency;
    f.run.timeout = options.timeout;
    f.run.max_captured_bytes = 16u << 20;
    f.on_line = [stamps = stamps](std::string_view host, OutputLine const& line) { stamps->on_line(host, line); };
    sent = wall_clock_now();
    async_run_on_hosts(std::move(ready), Command::shell(script), std::move(f),
                       asio::bind_executor(strand, [self = shared_from_this(), index](std::vector<HostOutcome> r) {
                         self->on_ran(index, std::move(r));
                       }));
  }

  void on_ran(std::vector<std::size_t> const& index, std::vector<HostOutcome> results) {
    for (std::size_t k = 0; k < results.size() && k < index.size(); ++k) {
      auto& out = outcomes[index[k]];
      auto& r = results[k];
      out.duration = r.result.duration;
      if (r.error) {
        out.error = r.error;
        out.message = valid_utf8(r.result.message.empty() ? hosts[index[k]].name() + ": " + r.error.message()
                                                                 : r.result.message);
        continue;
      }
      out.facts = parse_facts_output(r.result.stdout_text, options);
      out.raw_output = std::move(r.result.stdout_text);
      out.facts.host = out.host;
      if (r.result.exit_code != 0)
        out.facts.issues.push_back({"script", FactIssue::Kind::failed,
                                    "the facts script exited with status " + std::to_string(r.result.exit_code)});
      if (r.result.stdout_truncated)
        out.facts.issues.push_back({"script", FactIssue::Kind::failed, "the facts output was larger than 16 MiB and was cut"});
      if (out.facts.clock) {
        std::lock_guard lock(stamps->mutex);
        auto it = stamps->received.find(out.host);
        out.facts.clock->local_sent = sent;
        out.facts.clock->local_received = it != stamps->received.end() ? it->second : wall_clock_now();
      }
    }
    for (auto& out : outcomes) {
      if (out.error) continue;
      auto d = options.declared_gpus.find(out.host);
      if (d != options.declared_gpus.end()) apply_declared_gpus(out.facts, d->second);
    }
    finish();
  }

  void finish() { complete_on_associated(std::move(handler), strand, std::move(outcomes)); }
};

}  // namespace

void start_gather_facts(std::vector<Host> hosts, FactsOptions options, asio::any_completion_handler<FactsSignature> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<HostFactsOutcome>{});
    return;
  }
  auto op = std::make_shared<GatherOp>(std::move(hosts), std::move(options), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace clusterkit::detail

namespace clusterkit {

std::vector<HostFactsOutcome> gather_facts(std::vector<Host> hosts, FactsOptions options) {
  if (hosts.empty()) return {};
  auto ex = hosts.front().get_executor();
  return detail::block_on_value<std::vector<HostFactsOutcome>>(ex, "clusterkit::gather_facts", [&](auto cb) {
    async_gather_facts(std::move(hosts), std::move(options), std::move(cb));
  });
}

}  // namespace clusterkit
