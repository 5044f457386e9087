// The NCCL/Gloo sanity check: the I/O half. Facts, upload, one torchrun per
// host at once, clean-up, verdict.
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>

#include "clusterkit/facts.hpp"
#include "clusterkit/nccl_check.hpp"
#include "core/completion.hpp"
#include "remote/run_each.hpp"
#include "core/text.hpp"
#include "core/block_on.hpp"

namespace clusterkit::detail {
namespace {

std::string tail(std::string const& s, std::size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }

struct NcclCheckOp : std::enable_shared_from_this<NcclCheckOp> {
  std::vector<Host> hosts;
  NcclCheckOptions options;
  asio::any_completion_handler<NcclCheckSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer grace;
  std::string run_id = "ck-" + random_hex(6);
  std::string rdzv;
  std::string local_script;
  std::string remote_script;
  std::vector<NcclNodeLaunch> launches;
  std::vector<NcclHostRun> runs;
  std::vector<std::string> outputs;
  std::vector<std::unique_ptr<asio::cancellation_signal>> stops;
  std::vector<bool> finished;
  std::size_t pending = 0;
  bool stopping = false;
  std::vector<std::string> early_problems;

  NcclCheckOp(std::vector<Host> h, NcclCheckOptions o, asio::any_completion_handler<NcclCheckSignature> hd)
      : hosts(std::move(h)),
        options(std::move(o)),
        handler(std::move(hd)),
        strand(asio::make_strand(hosts.front().get_executor())),
        grace(strand) {
    rdzv = options.rdzv_host;
    if (rdzv.empty()) {
      auto const& spec = hosts.front().spec();
      rdzv = spec.local && spec.address.empty() ? "127.0.0.1" : spec.address;
    }
    while (options.remote_dir.size() > 1 && options.remote_dir.back() == '/') options.remote_dir.pop_back();
    remote_script = options.remote_dir + "/clusterkit-nccl-check-" + run_id + ".py";
  }

  void start() {
    FactsOptions f;
    f.peers = {rdzv};
    f.python = options.python;
    async_gather_facts(hosts, f, asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostFactsOutcome> facts) {
                         self->on_facts(std::move(facts));
                       }));
  }

  void fail_early(std::string problem) {
    early_problems.push_back(std::move(problem));
    finish();
  }

  void on_facts(std::vector<HostFactsOutcome> facts) {
    std::vector<NcclNodeInput> nodes;
    for (auto const& f : facts) {
      if (!f.ok()) return fail_early(f.host + ": facts not gathered: " + f.message);
      NcclNodeInput n;
      n.host = f.host;
      n.gpus = static_cast<unsigned>(f.facts.gpus.size());
      if (auto const* r = f.facts.route_to(rdzv)) n.interface = r->interface;
      if (auto d = options.declared_gpus.find(f.host); d != options.declared_gpus.end()) n.declared = d->second;
      nodes.push_back(std::move(n));
    }
    try {
      launches = plan_nccl_check(nodes, rdzv, remote_script, run_id, options);
    } catch (Error const& e) {
      return fail_early(e.what());
    }
    // The script, to a private local file, then to every host.
    char tmpl[] = "/tmp/clusterkit-nccl-check-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0) return fail_early("cannot create a temporary file for the script in /tmp");
    local_script = tmpl;
    auto text = nccl_check_script();
    bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!written) return fail_early("cannot write the script to " + local_script);
    pending = hosts.size();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      TransferOptions t;
      t.timeout = std::chrono::seconds(60);
      hosts[i].async_upload(local_script, remote_script, t,
                            asio::bind_executor(strand, [self = shared_from_this(), i](std::error_code ec, TransferResult r) {
                              if (ec)
                                self->early_problems.push_back(
                                    self->hosts[i].name() + ": upload of the script failed: " +
                                    valid_utf8(r.message.empty() ? ec.message() : r.message));
                              if (--self->pending == 0) self->on_uploaded();
                            }));
    }
  }

  void on_uploaded() {
    if (!early_problems.empty()) return cleanup();
    runs.resize(hosts.size());
    outputs.resize(hosts.size());
    finished.assign(hosts.size(), false);
    pending = hosts.size();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      stops.push_back(std::make_unique<asio::cancellation_signal>());
      runs[i].host = hosts[i].name();
      runs[i].launch = launches[i];
      RunOptions ro;
      ro.env = launches[i].env;
      ro.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout);
      ro.max_captured_bytes = 16u << 20;
      hosts[i].async_run(Command::args(launches[i].argv), std::move(ro),
                         asio::bind_cancellation_slot(stops[i]->slot(),
                                                      asio::bind_executor(strand, [self = shared_from_this(), i](std::error_code ec,
                                                                                                               RunResult r) {
                                                        self->on_ran(i, ec, std::move(r));
                                                      })));
    }
  }

  void on_ran(std::size_t i, std::error_code ec, RunResult r) {
    finished[i] = true;
    auto& run = runs[i];
    run.error = ec;
    run.exit_code = r.exit_code;
    run.message = valid_utf8(r.message);
    run.output_tail = valid_utf8(tail(r.stderr_text, 4000));
    if (!r.stdout_text.empty()) run.output_tail += (run.output_tail.empty() ? "" : "\n") + valid_utf8(tail(r.stdout_text, 2000));
    outputs[i] = std::move(r.stdout_text);
    outputs[i] += "\n";
    outputs[i] += r.stderr_text;
    bool failed = ec || r.exit_code != 0;
    if (failed && !stopping) {
      // The others would wait for this host at the rendezvous or in NCCL:
      // give them a moment to report, then stop them.
      stopping = true;
      grace.expires_after(options.failure_grace);
      grace.async_wait([self = shared_from_this()](std::error_code e) {
        if (e) return;
        for (std::size_t k = 0; k < self->hosts.size(); ++k)
          if (!self->finished[k]) self->stops[k]->emit(asio::cancellation_type::partial);
      });
    }
    if (--pending == 0) {
      grace.cancel();
      cleanup();
    }
  }

  void cleanup() {
    if (!local_script.empty()) {
      std::error_code ignored;
      std::filesystem::remove(local_script, ignored);
    }
    FanoutOptions f;
    f.run.timeout = std::chrono::seconds(20);
    async_run_on_hosts(hosts, Command::args({"rm", "-f", remote_script}), std::move(f),
                       asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostOutcome>) { self->finish(); }));
  }

  void finish() {
    int world = 0;
    for (auto const& l : launches) world += static_cast<int>(l.nproc);
    NcclCheckResult result;
    if (runs.empty()) {
      // Stopped before anything ran: facts, plan or upload failed.
      result.world_size = world;
      result.problems = early_problems;
      for (auto const& l : launches) {
        NcclHostRun h;
        h.host = l.host;
        h.launch = l;
        result.hosts.push_back(std::move(h));
      }
    } else {
      result = evaluate_nccl_check(runs, outputs, world);
      result.problems.insert(result.problems.begin(), early_problems.begin(), early_problems.end());  // and so not ok()
    }
    complete_on_associated(std::move(handler), strand, std::move(result));
  }
};

}  // namespace

void start_nccl_check(std::vector<Host> hosts, NcclCheckOptions options, asio::any_completion_handler<NcclCheckSignature> handler) {
  std::string refused = hosts.empty() ? "nccl-check: no host given" : "";
  try {
    validate_nccl_check_options(options);
  } catch (Error const& e) {
    refused = e.what();
  }
  if (!refused.empty()) {
    asio::any_io_executor fallback = hosts.empty() ? asio::any_io_executor(asio::system_executor()) : hosts.front().get_executor();
    NcclCheckResult r;
    r.problems.push_back(std::move(refused));
    complete_on_associated(std::move(handler), fallback, std::move(r));
    return;
  }
  auto op = std::make_shared<NcclCheckOp>(std::move(hosts), std::move(options), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace clusterkit::detail

namespace clusterkit {

NcclCheckResult nccl_check(std::vector<Host> hosts, NcclCheckOptions options) {
  asio::any_io_executor ex = hosts.empty() ? asio::any_io_executor() : hosts.front().get_executor();
  return detail::block_on_value<NcclCheckResult>(ex, "clusterkit::nccl_check", [&](auto h) {
    async_nccl_check(std::move(hosts), std::move(options), std::move(h));
  });
}

}  // namespace clusterkit
