// Preflight: the I/O half. The port probe (listeners, then probers, then
// the listeners stopped), the NAS probe (write, read everywhere, remove),
// and the whole run (facts, both probes in parallel, evaluation).
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <future>
#include <memory>

#include "clusterkit/preflight.hpp"
#include "clusterkit/runtime.hpp"
#include "core/completion.hpp"
#include "remote/run_each.hpp"
#include "core/text.hpp"
#include "core/block_on.hpp"

namespace clusterkit::detail {
namespace {

// ---------------------------------------------------------------------------
// Ports

struct PortProbeOp : std::enable_shared_from_this<PortProbeOp> {
  std::vector<Host> hosts;
  PortProbeOptions options;
  asio::any_completion_handler<PortProbeSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer ready_timer;
  PortProbeReport report;

  struct Listener {
    std::unique_ptr<asio::cancellation_signal> stop = std::make_unique<asio::cancellation_signal>();
    std::string lines;  // what arrived so far
    bool ready = false;
    bool ended = false;
    bool given_up = false;
    std::string error;
  };
  std::vector<Listener> listeners;
  bool probing = false;
  bool probes_done = false;
  bool finished = false;

  PortProbeOp(std::vector<Host> h, PortProbeOptions o, asio::any_completion_handler<PortProbeSignature> hd)
      : hosts(std::move(h)),
        options(std::move(o)),
        handler(std::move(hd)),
        strand(asio::make_strand(hosts.front().get_executor())),
        ready_timer(strand),
        listeners(hosts.size()) {
    report.head = hosts.front().name();
  }

  std::string address_of(std::size_t i) const {
    auto it = options.addresses.find(hosts[i].name());
    if (it != options.addresses.end() && !it->second.empty()) return it->second;
    auto const& spec = hosts[i].spec();
    return spec.local && spec.address.empty() ? "127.0.0.1" : spec.address;
  }

  void start() {
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      std::vector<std::pair<int, std::string>> fixed;
      if (i == 0) fixed = {{options.ray_port, "ray"}, {options.rdzv_port, "rdzv"}};
      RunOptions ro;
      ro.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options.listener_lifetime) + std::chrono::seconds(15);
      ro.kill_grace = std::chrono::milliseconds(500);
      ro.max_captured_bytes = 1u << 20;
      ro.on_line = [self = shared_from_this(), i](OutputLine const& line) {
        if (line.stream != Stream::out) return;
        asio::dispatch(self->strand, [self, i, text = std::string(line.text)] { self->on_listener_line(i, text); });
      };
      hosts[i].async_run(
          Command::shell(port_listener_script(fixed, options.ephemeral_ports, options.listener_lifetime, options.python)),
          std::move(ro),
          asio::bind_cancellation_slot(listeners[i].stop->slot(),
                                       asio::bind_executor(strand, [self = shared_from_this(), i](std::error_code ec, RunResult r) {
                                         self->on_listener_end(i, ec, std::move(r));
                                       })));
    }
    // A listener that neither starts nor fails (a hung connection) must not
    // hold the probe up for its whole lifetime.
    ready_timer.expires_after(std::chrono::seconds(30));
    ready_timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->probing) return;
      for (auto& l : self->listeners)
        if (!l.ready && !l.ended) {
          l.given_up = true;
          l.error = "did not start within 30 s";
        }
      self->maybe_probe();
    });
  }

  void on_listener_line(std::size_t i, std::string const& text) {
    auto& l = listeners[i];
    if (l.lines.size() < (1u << 20)) {
      l.lines += valid_utf8(text);
      l.lines += '\n';
    }
    if (text == "@@ck-ready" && !l.ready) {
      l.ready = true;
      maybe_probe();
    }
  }

  void on_listener_end(std::size_t i, std::error_code ec, RunResult r) {
    auto& l = listeners[i];
    l.ended = true;
    if (!l.ready && l.error.empty()) {
      HostOutcome o{hosts[i].name(), ec, std::move(r)};
      l.error = failure_of(o);
    }
    if (!probing) maybe_probe();
    maybe_finish();
  }

  void maybe_probe() {
    if (probing) return;
    for (auto const& l : listeners)
      if (!l.ready && !l.ended && !l.given_up) return;
    probing = true;
    ready_timer.cancel();
    // What each listener offers.
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      auto pl = parse_port_listener_output(hosts[i].name(), listeners[i].lines);
      pl.started = listeners[i].ready;
      pl.error = listeners[i].error;
      report.listeners.push_back(std::move(pl));
    }
    std::vector<RunEachItem> items;
    std::vector<std::vector<PortTarget>> targets(hosts.size());
    for (std::size_t from = 0; from < hosts.size(); ++from) {
      for (std::size_t to = 0; to < hosts.size(); ++to) {
        auto const& l = report.listeners[to];
        if (!l.started) continue;
        for (auto const& [port, purpose] : l.ports) {
          // Every host, the head too, reaches the head's Ray and rendezvous
          // ports by the head's address; ephemeral ports of the others.
          if (purpose == "ephemeral" && to == from) continue;
          targets[from].push_back({hosts[to].name(), address_of(to), port, purpose});
        }
      }
      RunOptions ro;
      ro.timeout = options.connect_timeout * 3 + std::chrono::seconds(10);
      ro.max_captured_bytes = 1u << 20;
      items.push_back({hosts[from], Command::shell(port_prober_script(targets[from], options.connect_timeout, options.python)),
                       std::move(ro)});
    }
    async_run_each(std::move(items),
                   asio::bind_executor(strand, [self = shared_from_this(), targets](std::vector<HostOutcome> outs) {
                     for (std::size_t k = 0; k < outs.size(); ++k) {
                       auto probes =
                           parse_port_prober_output(outs[k].host, targets[k], valid_utf8(outs[k].result.stdout_text));
                       if (outs[k].error)
                         for (auto& p : probes)
                           if (!p.ok() && p.error.rfind("no result", 0) == 0) p.error = "the prober failed: " + failure_of(outs[k]);
                       for (auto& p : probes) self->report.probes.push_back(std::move(p));
                     }
                     self->probes_done = true;
                     // Done: stop the listeners (SIGTERM to their process groups).
                     for (auto& l : self->listeners)
                       if (!l.ended) l.stop->emit(asio::cancellation_type::partial);
                     self->maybe_finish();
                   }));
  }

  void maybe_finish() {
    if (finished || !probes_done) return;
    for (auto const& l : listeners)
      if (!l.ended) return;
    finished = true;
    complete_on_associated(std::move(handler), strand, std::move(report));
  }
};

// ---------------------------------------------------------------------------
// The whole run

struct PreflightOp : std::enable_shared_from_this<PreflightOp> {
  asio::any_io_executor executor;
  std::vector<InventoryHost> hosts;
  PreflightOptions options;
  asio::any_completion_handler<PreflightSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  ClusterRoles roles;
  std::vector<InventoryHost> checked;
  std::vector<Host> handles;
  PreflightRun run;
  int pending = 0;

  PreflightOp(asio::any_io_executor ex, std::vector<InventoryHost> h, PreflightOptions o,
              asio::any_completion_handler<PreflightSignature> hd)
      : executor(ex), hosts(std::move(h)), options(std::move(o)), handler(std::move(hd)), strand(asio::make_strand(ex)) {
    roles = cluster_roles(hosts);
    for (auto const& x : hosts)
      if (std::find(roles.storage_hosts.begin(), roles.storage_hosts.end(), x.spec.name) == roles.storage_hosts.end()) {
        checked.push_back(x);
        handles.emplace_back(executor, x.spec);
      }
  }

  Host const* handle(std::string const& name) const {
    for (auto const& h : handles)
      if (h.name() == name) return &h;
    return nullptr;
  }

  void start() {
    if (handles.empty()) return evaluate();
    async_gather_facts(handles, preflight_facts_options(hosts, options),
                       asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostFactsOutcome> f) {
                         self->run.facts = std::move(f);
                         self->probe();
                       }));
  }

  bool facts_ok(std::string const& name) const {
    for (auto const& f : run.facts)
      if (f.host == name) return f.ok();
    return false;
  }
  HostFacts const* facts_of(std::string const& name) const {
    for (auto const& f : run.facts)
      if (f.host == name && f.ok()) return &f.facts;
    return nullptr;
  }

  void probe() {
    auto head_address = head_address_of(hosts);
    // Ports: the GPU hosts that answered, the head first.
    if (!options.probe_ports)
      run.probes.ports_skipped = "turned off (--no-port-probe, PreflightOptions::probe_ports)";
    else if (roles.head.empty())
      run.probes.ports_skipped = "no head to probe from (give a host the role head)";
    else if (!facts_ok(roles.head))
      run.probes.ports_skipped = "the head " + roles.head + " did not answer";
    if (options.probe_ports && !roles.head.empty() && facts_ok(roles.head)) {
      std::vector<Host> gpu;
      PortProbeOptions po;
      po.ray_port = options.ray_port;
      po.rdzv_port = options.rdzv_port;
      po.ephemeral_ports = options.ephemeral_ports;
      po.python = options.python;
      std::vector<std::string> order = {roles.head};
      for (auto const& h : roles.gpu_hosts)
        if (h != roles.head) order.push_back(h);
      for (auto const& name : order) {
        auto const* h = handle(name);
        if (!h || !facts_ok(name)) continue;
        gpu.push_back(*h);
        // Peers are reached by the address this host uses toward the head
        // (what VLLM_HOST_IP will be), the head by its own address.
        if (name == roles.head) po.addresses[name] = head_address;
        else if (auto const* f = facts_of(name))
          if (auto const* r = f->route_to(head_address)) po.addresses[name] = r->source_address;
      }
      ++pending;
      async_probe_ports(std::move(gpu), std::move(po),
                        asio::bind_executor(strand, [self = shared_from_this()](PortProbeReport r) {
                          self->run.probes.ports = std::move(r);
                          self->one_done();
                        }));
    }
    // NAS: every compute host that answered; a download host writes.
    auto nas = nas_path_of(hosts, options);
    if (!options.probe_nas)
      run.probes.nas_skipped = "turned off (--no-nas-probe, PreflightOptions::probe_nas)";
    else if (nas.empty())
      run.probes.nas_skipped = "no NAS path given (--nas-path, or the inventory's vars.mount_point)";
    if (options.probe_nas && !nas.empty()) {
      std::vector<Host> all;
      std::vector<std::string> order = roles.download_hosts;
      for (auto const& x : checked)
        if (std::find(order.begin(), order.end(), x.spec.name) == order.end()) order.push_back(x.spec.name);
      for (auto const& name : order)
        if (auto const* h = handle(name); h && facts_ok(name)) all.push_back(*h);
      if (!all.empty()) {
        ++pending;
        async_probe_nas(std::move(all), nas, options.model_path,
                        asio::bind_executor(strand, [self = shared_from_this()](NasProbeReport r) {
                          self->run.probes.nas = std::move(r);
                          self->one_done();
                        }));
      }
    }
    if (pending == 0) evaluate();
  }

  void one_done() {
    if (--pending == 0) evaluate();
  }

  void evaluate() {
    run.report = evaluate_preflight(hosts, run.facts, run.probes, options);
    complete_on_associated(std::move(handler), strand, std::move(run));
  }
};

}  // namespace

void start_probe_ports(std::vector<Host> hosts, PortProbeOptions options, asio::any_completion_handler<PortProbeSignature> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, PortProbeReport{});
    return;
  }
  auto op = std::make_shared<PortProbeOp>(std::move(hosts), std::move(options), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

void start_preflight(asio::any_io_executor executor, std::vector<InventoryHost> hosts, PreflightOptions options,
                     asio::any_completion_handler<PreflightSignature> handler) {
  validate_preflight_options(options);
  auto op = std::make_shared<PreflightOp>(std::move(executor), std::move(hosts), std::move(options), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace clusterkit::detail

namespace clusterkit {

PreflightRun run_preflight(Runtime& runtime, std::vector<InventoryHost> hosts, PreflightOptions options) {
  return detail::block_on_value<PreflightRun>(runtime.executor(), "clusterkit::run_preflight", [&](auto h) {
    async_preflight(runtime.executor(), std::move(hosts), std::move(options), std::move(h));
  });
}

}  // namespace clusterkit
