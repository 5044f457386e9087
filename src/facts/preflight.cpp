// Preflight: the pure half. Roles, the probe scripts and their parsers, and
// the evaluation of facts + probes into a CheckReport. No I/O here
// (preflight_probe.cpp runs things).
#include "clusterkit/preflight.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "clusterkit/shell.hpp"
#include "core/text.hpp"

namespace clusterkit {

using nlohmann::json;

std::string_view to_string(CheckStatus status) noexcept {
  switch (status) {
    case CheckStatus::pass: return "pass";
    case CheckStatus::warn: return "warn";
    case CheckStatus::fail: return "fail";
    case CheckStatus::simulated: return "simulated";
    case CheckStatus::skip: return "skip";
  }
  return "skip";
}

namespace {

bool has_role(InventoryHost const& h, std::string_view role) {
  return std::find(h.roles.begin(), h.roles.end(), role) != h.roles.end();
}

using detail::lines_of;
using detail::split_ws;
using detail::to_double;
using detail::to_long;
using detail::trim;
using detail::join;
using detail::lower;

std::string fmt(char const* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string normalize_path(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------
// Roles

ClusterRoles cluster_roles(std::vector<InventoryHost> const& hosts) {
  ClusterRoles r;
  for (auto const& h : hosts) {
    auto const& name = h.spec.name;
    auto d = declared_gpus(h);
    bool gpu = has_role(h, "head") || has_role(h, "worker") || has_role(h, "gpu") || (d && d->count > 0);
    bool storage_only = has_role(h, "nas") && h.roles.size() == 1 && !gpu;
    if (storage_only) {
      r.storage_hosts.push_back(name);
      continue;
    }
    if (gpu) r.gpu_hosts.push_back(name);
    if (has_role(h, "download")) r.download_hosts.push_back(name);
    if (has_role(h, "head") && r.head.empty()) {
      r.head = name;
      r.head_declared = true;
    }
  }
  if (r.head.empty() && !r.gpu_hosts.empty()) r.head = r.gpu_hosts.front();
  return r;
}

std::string container_runtime_of(InventoryHost const& host, std::string const& fallback) {
  if (host.extra.is_object()) {
    auto v = host.extra.find("vars");
    if (v != host.extra.end() && v->is_object()) {
      auto r = v->find("runtime");
      if (r != v->end() && r->is_string()) return r->get<std::string>();
    }
  }
  return fallback;
}

// ---------------------------------------------------------------------------
// Probe scripts

namespace {

// The listener. Ports are bound on every address (0.0.0.0), as Ray and NCCL
// do; a port already taken is reported, not fatal. It stops by itself after
// the lifetime, whatever happens to us.
constexpr char const* kListener = R"PY(import select, socket, sys, time
spec = sys.argv[1]
ephemeral = int(sys.argv[2])
deadline = time.time() + float(sys.argv[3])
def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
socks = {}
def listen(port, purpose):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", port))
        s.listen(128)
    except OSError as e:
        say("@@ck-busy %d %s" % (port, (e.strerror or str(e)).replace("\n", " ")))
        s.close()
        return
    socks[s] = (s.getsockname()[1], purpose)
    say("@@ck-listen %d %s" % (s.getsockname()[1], purpose))
for item in filter(None, spec.split(",")):
    port, purpose = item.split(":")
    listen(int(port), purpose)
for _ in range(ephemeral):
    listen(0, "ephemeral")
say("@@ck-ready")
# Accepted connections are closed after the prober closes its end, so that
# TIME_WAIT stays on the prober's side and the port is free again at once.
conns = {}
while socks and time.time() < deadline:
    ready, _, _ = select.select(list(socks) + list(conns), [], [], 0.5)
    for s in ready:
        if s in conns:
            try:
                data = s.recv(64)
            except OSError:
                data = b""
            if not data:
                del conns[s]
                s.close()
            continue
        try:
            c, addr = s.accept()
        except OSError:
            continue
        say("@@ck-accept %d %s" % (socks[s][0], addr[0]))
        try:
            c.sendall(b"ck-ok\n")
            conns[c] = time.time()
        except OSError:
            c.close()
    for c, since in list(conns.items()):
        if time.time() - since > 5:
            del conns[c]
            c.close()
)PY";

// The prober: every target at once (threads), each with a connect timeout;
// reports the local address each connection came from.
constexpr char const* kProber = R"PY(import socket, sys, threading, time
timeout = float(sys.argv[1])
lock = threading.Lock()
def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def probe(index, address, port):
    t0 = time.time()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        source = s.getsockname()[0]
        greeting = b""
        try:
            greeting = s.recv(16)
        except OSError:
            pass
        say("@@ck-probe %d ok %s %.1f %s" % (index, source, (time.time() - t0) * 1000,
                                             "greeted" if greeting.startswith(b"ck-ok") else "silent"))
    except Exception as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        say("@@ck-probe %d fail %.1f %s" % (index, (time.time() - t0) * 1000, reason.replace("\n", " ")))
    finally:
        s.close()
threads = []
for arg in sys.argv[2:]:
    index, address, port = arg.split(",")
    t = threading.Thread(target=probe, args=(int(index), address, int(port)))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
)PY";

}  // namespace

std::string port_listener_script(std::vector<std::pair<int, std::string>> const& ports, unsigned ephemeral,
                                 std::chrono::seconds lifetime, std::string const& python) {
  std::string spec;
  for (auto const& [port, purpose] : ports) {
    if (!spec.empty()) spec += ",";
    spec += std::to_string(port) + ":" + purpose;
  }
  std::vector<std::string> argv = {python,          "-u", "-c", kListener, spec, std::to_string(ephemeral),
                                   std::to_string(std::max<long long>(1, lifetime.count()))};
  // `exec` so that the listener is the process the remote wrapper stops.
  return "exec " + shell::join(argv) + "\n";
}

PortListener parse_port_listener_output(std::string_view host, std::string_view output) {
  PortListener l;
  l.host = std::string(host);
  for (auto line : lines_of(output)) {
    auto w = split_ws(line, 3);
    if (w.empty()) continue;
    if (w[0] == "@@ck-ready") {
      l.started = true;
    } else if (w[0] == "@@ck-listen" && w.size() >= 3) {
      if (auto p = to_long(w[1]); p && *p > 0 && *p < 65536) l.ports.emplace_back(static_cast<int>(*p), std::string(w[2]));
    } else if (w[0] == "@@ck-busy" && w.size() >= 2) {
      if (auto p = to_long(w[1]); p && *p > 0 && *p < 65536)
        l.busy.emplace_back(static_cast<int>(*p), w.size() >= 3 ? std::string(w[2]) : std::string("in use"));
    }
    if (l.ports.size() + l.busy.size() > 1024) break;
  }
  return l;
}

std::string port_prober_script(std::vector<PortTarget> const& targets, std::chrono::milliseconds timeout,
                               std::string const& python) {
  double seconds = std::max<double>(0.1, static_cast<double>(timeout.count()) / 1000.0);
  std::vector<std::string> py = {python, "-c", kProber, fmt("%.3f", seconds)};
  std::ostringstream bash;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto const& t = targets[i];
    py.push_back(std::to_string(i) + "," + t.address + "," + std::to_string(t.port));
  }
  std::ostringstream s;
  s << "if command -v " << shell::quote(python) << " >/dev/null 2>&1; then\n  exec " << shell::join(py) << "\nfi\n";
  // Without Python: bash's /dev/tcp, one target after the other.
  long secs = std::max<long>(1, static_cast<long>(std::ceil(seconds)));
  s << "ck_probe() {\n"
       "  ck_t0=$(date +%s%N 2>/dev/null || echo 0)\n"
       "  if ck_g=$(timeout "
    << secs
    << " bash -c 'exec 3<>\"/dev/tcp/$1/$2\" && head -c 5 <&3' ck \"$2\" \"$3\" 2>&1); then\n"
       "    ck_ms=$(( ( $(date +%s%N 2>/dev/null || echo 0) - ck_t0 ) / 1000000 ))\n"
       "    if [ \"$ck_g\" = ck-ok ]; then printf '@@ck-probe %s ok - %s greeted\\n' \"$1\" \"$ck_ms\"; "
       "else printf '@@ck-probe %s ok - %s silent\\n' \"$1\" \"$ck_ms\"; fi\n"
       "  else\n"
       "    printf '@@ck-probe %s fail 0 %s\\n' \"$1\" \"$(printf '%s' \"${ck_g:-timed out}\" | tr '\\n' ' ' | cut -c1-200)\"\n"
       "  fi\n"
       "}\n";
  for (std::size_t i = 0; i < targets.size(); ++i)
    s << "ck_probe " << i << " " << shell::quote(targets[i].address) << " " << targets[i].port << "\n";
  return s.str();
}

std::vector<PortProbe> parse_port_prober_output(std::string_view from, std::vector<PortTarget> const& targets,
                                                std::string_view output) {
  std::vector<PortProbe> out(targets.size());
  std::vector<bool> seen(targets.size(), false);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    out[i].from = std::string(from);
    out[i].to = targets[i].to;
    out[i].address = targets[i].address;
    out[i].port = targets[i].port;
    out[i].purpose = targets[i].purpose;
  }
  for (auto line : lines_of(output)) {
    auto w = split_ws(line, 6);
    if (w.size() < 4 || w[0] != "@@ck-probe") continue;
    auto idx = to_long(w[1]);
    if (!idx || *idx < 0 || static_cast<std::size_t>(*idx) >= targets.size()) continue;
    auto& p = out[static_cast<std::size_t>(*idx)];
    seen[static_cast<std::size_t>(*idx)] = true;
    if (w[2] == "ok" && w.size() >= 5) {
      p.reached = true;
      p.source_address = w[3] == "-" ? std::string() : std::string(w[3]);
      p.milliseconds = to_double(w[4]).value_or(0);
      if (w.size() >= 6 && w[5] == "silent") {
        // Something answered that is not our listener.
        p.reached = false;
        p.error = "connected, but the listener did not answer (another program holds the port?)";
      }
    } else if (w[2] == "fail") {
      auto rest = split_ws(line, 5);
      p.reached = false;
      p.milliseconds = to_double(w[3]).value_or(0);
      p.error = rest.size() >= 5 ? std::string(rest[4]) : std::string("failed");
    }
  }
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (!seen[i]) out[i].error = "no result (the prober did not finish)";
  return out;
}

json PortProbeReport::to_json() const {
  json j;
  j["head"] = head;
  j["listeners"] = json::array();
  for (auto const& l : listeners) {
    json ports = json::array(), busy = json::array();
    for (auto const& [p, what] : l.ports) ports.push_back({{"port", p}, {"purpose", what}});
    for (auto const& [p, why] : l.busy) busy.push_back({{"port", p}, {"reason", why}});
    j["listeners"].push_back({{"host", l.host}, {"started", l.started}, {"error", l.error}, {"ports", ports}, {"busy", busy}});
  }
  j["probes"] = json::array();
  for (auto const& p : probes)
    j["probes"].push_back({{"from", p.from},
                           {"to", p.to},
                           {"address", p.address},
                           {"port", p.port},
                           {"purpose", p.purpose},
                           {"ok", p.ok()},
                           {"source_address", p.source_address},
                           {"error", p.error},
                           {"milliseconds", p.milliseconds}});
  return j;
}

// ---------------------------------------------------------------------------
// The report

bool CheckReport::ok() const noexcept { return count(CheckStatus::fail) == 0; }

std::size_t CheckReport::count(CheckStatus status) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(results.begin(), results.end(), [&](CheckResult const& r) { return r.status == status; }));
}

CheckResult const* CheckReport::find(std::string_view host, std::string_view check) const noexcept {
  for (auto const& r : results)
    if (r.host == host && r.check == check) return &r;
  return nullptr;
}

json CheckReport::to_json() const {
  json j;
  j["ok"] = ok();
  j["head"] = head;
  j["hosts"] = hosts;
  j["checks"] = checks;
  j["counts"] = {{"pass", count(CheckStatus::pass)},
                 {"warn", count(CheckStatus::warn)},
                 {"fail", count(CheckStatus::fail)},
                 {"simulated", count(CheckStatus::simulated)},
                 {"skip", count(CheckStatus::skip)}};
  j["results"] = json::array();
  for (auto const& r : results)
    j["results"].push_back(
        {{"host", r.host}, {"check", r.check}, {"status", to_string(r.status)}, {"message", r.message}, {"fix", r.fix}});
  j["recommended_env"] = recommended_env;
  return j;
}

std::string CheckReport::table() const {
  std::ostringstream s;
  std::size_t check_w = 10;
  for (auto const& c : checks) check_w = std::max(check_w, c.size());
  std::vector<std::size_t> col_w;
  for (auto const& h : hosts) col_w.push_back(std::max<std::size_t>(9, h.size()));
  auto cell = [&](std::string const& text, std::size_t w) {
    s << "  " << text << std::string(w > text.size() ? w - text.size() : 0, ' ');
  };
  cell("check", check_w);
  for (std::size_t i = 0; i < hosts.size(); ++i) cell(hosts[i], col_w[i]);
  s << "\n";
  for (auto const& c : checks) {
    cell(c, check_w);
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      auto const* r = find(hosts[i], c);
      std::string text = !r ? "" : r->status == CheckStatus::skip ? "-" : std::string(to_string(r->status));
      if (r && r->status == CheckStatus::fail) text = "FAIL";
      cell(text, col_w[i]);
    }
    s << "\n";
  }
  bool any = false;
  for (CheckStatus want : {CheckStatus::fail, CheckStatus::warn, CheckStatus::simulated}) {
    for (auto const& r : results) {
      if (r.status != want) continue;
      if (!any) s << "\n";
      any = true;
      std::string tag = want == CheckStatus::fail ? "FAIL" : want == CheckStatus::warn ? "warn" : "simulated";
      s << tag << " " << r.host << " " << r.check << ": " << r.message << "\n";
      if (!r.fix.empty()) s << "     fix: " << r.fix << "\n";
    }
  }
  // Every skip says why, grouped by reason so that twenty hosts skipping
  // the same check for the same reason make one line.
  std::vector<std::pair<std::string, std::vector<std::string>>> skips;  // reason -> "check on host" items, in order
  for (auto const& r : results) {
    if (r.status != CheckStatus::skip) continue;
    auto reason = r.message.empty() ? std::string("no reason recorded") : r.message;
    auto it = std::find_if(skips.begin(), skips.end(), [&](auto const& p) { return p.first == reason; });
    if (it == skips.end()) it = skips.insert(skips.end(), {reason, {}});
    it->second.push_back(r.check + " on " + r.host);
  }
  if (!skips.empty()) {
    s << "\nskipped (-):\n";
    for (auto const& [reason, items] : skips) {
      s << "  ";
      for (std::size_t i = 0; i < items.size() && i < 8; ++i) s << (i ? ", " : "") << items[i];
      if (items.size() > 8) s << " and " << items.size() - 8 << " more";
      s << ": " << reason << "\n";
    }
  }
  if (!recommended_env.empty()) {
    s << "\nStart each node with (set when the node or container starts, not in a later shell):\n";
    for (auto const& [host, env] : recommended_env) {
      s << "  " << host << ":";
      for (auto const& [k, v] : env) s << " " << k << "=" << v;
      s << "\n";
    }
  }
  s << "\n"
    << count(CheckStatus::pass) << " passed, " << count(CheckStatus::warn) << " warnings, " << count(CheckStatus::fail)
    << " failed, " << count(CheckStatus::simulated) << " simulated, " << count(CheckStatus::skip) << " skipped\n";
  return s.str();
}

// ---------------------------------------------------------------------------
// Evaluation

namespace {

// A probe's check that has nothing to judge says why: the probe was off,
// had nothing to probe from, or this host did not answer.
std::string not_probed(std::string const& reason, std::string const& host) {
  return "not probed: " + (reason.empty() ? host + " did not answer (see its ssh check)" : reason);
}

constexpr char const* kCheckOrder[] = {"ssh",   "role",  "gpus",       "driver",  "cuda",       "python", "ray",
                                       "vllm",  "torch", "docker",     "nvidia-runtime", "image", "shm",  "disk",
                                       "nas",   "model-path", "network", "ray-port", "nccl-ports", "clock", "model-fits"};

struct Evaluator {
  std::vector<InventoryHost> const& hosts;
  PreflightProbes const& probes;
  PreflightOptions const& options;
  ClusterRoles roles;
  std::map<std::string, InventoryHost const*> inv;
  std::map<std::string, HostFactsOutcome const*> facts;
  CheckReport report;
  std::string head_address;

  Evaluator(std::vector<InventoryHost> const& h, std::vector<HostFactsOutcome> const& f, PreflightProbes const& p,
            PreflightOptions const& o)
      : hosts(h), probes(p), options(o), roles(cluster_roles(h)) {
    for (auto const& x : hosts) inv[x.spec.name] = &x;
    for (auto const& x : f) facts[x.host] = &x;
    report.head = roles.head;
    if (!roles.head.empty()) head_address = address_of(roles.head);
  }

  void add(std::string host, std::string check, CheckStatus status, std::string message, std::string fix = {}) {
    report.results.push_back({std::move(host), std::move(check), status, std::move(message), std::move(fix)});
  }

  bool is_gpu_host(std::string const& h) const {
    return std::find(roles.gpu_hosts.begin(), roles.gpu_hosts.end(), h) != roles.gpu_hosts.end();
  }
  bool is_storage(std::string const& h) const {
    return std::find(roles.storage_hosts.begin(), roles.storage_hosts.end(), h) != roles.storage_hosts.end();
  }
  HostFacts const* facts_of(std::string const& h) const {
    auto it = facts.find(h);
    if (it == facts.end() || !it->second->ok()) return nullptr;
    return &it->second->facts;
  }
  std::string runtime_of(std::string const& h) const {
    auto it = inv.find(h);
    return it == inv.end() ? options.container_runtime : container_runtime_of(*it->second, options.container_runtime);
  }
  std::string address_of(std::string const& h) const {
    auto it = inv.find(h);
    if (it == inv.end()) return {};
    auto const& spec = it->second->spec;
    if (spec.local && spec.address.empty()) return "127.0.0.1";
    return spec.address;
  }
  std::string display_of(std::string const& h) const {
    auto it = inv.find(h);
    return it == inv.end() ? h : it->second->spec.display();
  }

  std::vector<std::string> checked_hosts() const {
    std::vector<std::string> out;
    for (auto const& h : hosts)
      if (!is_storage(h.spec.name)) out.push_back(h.spec.name);
    return out;
  }

  CheckReport run() {
    auto names = checked_hosts();
    report.hosts = names;
    std::vector<std::string> reachable;
    for (auto const& h : names) {
      auto it = facts.find(h);
      if (it == facts.end()) {
        add(h, "ssh", CheckStatus::fail, "no facts were gathered from " + h, "run `clusterkit facts -g " + h + "` to see why");
        continue;
      }
      auto const& o = *it->second;
      if (!o.ok()) {
        add(h, "ssh", CheckStatus::fail, o.message.empty() ? o.error.message() : o.message,
            "make `ssh " + display_of(h) + " true` work from this machine (key, known_hosts, address), then run again");
        continue;
      }
      add(h, "ssh", CheckStatus::pass,
          "facts gathered in " + fmt("%.0f", std::chrono::duration<double, std::milli>(o.duration).count()) + " ms");
      reachable.push_back(h);
    }
    for (auto const& h : reachable) {
      check_role(h);
      check_gpus(h);
    }
    check_same_value("driver", reachable, [](HostFacts const& f) { return f.driver_version(); }, "NVIDIA driver");
    check_same_value("cuda", reachable, [](HostFacts const& f) { return f.cuda_version(); }, "CUDA (driver)");
    check_python(reachable);
    for (auto const& h : reachable) {
      check_docker(h, reachable);
      check_images(h);
      check_shm(h);
      check_disk(h);
      check_nas(h);
      check_network(h);
      check_ports(h);
      check_clock(h);
    }
    check_model_fits();
    // Every check row present on every host keeps the table square.
    std::set<std::string> used;
    for (auto const& r : report.results) used.insert(r.check);
    for (auto const* c : kCheckOrder)
      if (used.count(c)) report.checks.push_back(c);
    if (std::any_of(report.results.begin(), report.results.end(), [](CheckResult const& r) { return r.host == "cluster"; }))
      report.hosts.push_back("cluster");
    return std::move(report);
  }

  // -- role ---------------------------------------------------------------

  void check_role(std::string const& h) {
    auto const& ih = *inv.at(h);
    auto const& f = *facts_of(h);
    bool has_gpus = !f.gpus.empty();
    bool is_head = h == roles.head;
    bool download = has_role(ih, "download");
    bool serve = has_role(ih, "serve");
    if (has_role(ih, "head") && h != roles.head) {
      add(h, "role", CheckStatus::fail, "two hosts have the head role (" + roles.head + " and " + h + ")",
          "give the head role to one host only: the Ray head and the vLLM API server run there");
      return;
    }
    if ((is_head || serve) && !has_gpus) {
      std::string what = is_head ? "the head" : "the serve host";
      add(h, "role", CheckStatus::fail,
          h + " is " + what + " but has no GPU" + (download ? " (it is the download host)" : "") +
              ": `vllm serve` there fails with \"Current node has no GPU available\" (vllm#2406)",
          "give the head role to a GPU host (roles: [head, gpu]); the CPU download host only downloads");
      return;
    }
    if (is_head && !roles.head_declared) {
      add(h, "role", CheckStatus::warn, "no host has the head role; " + h + " (the first GPU host) is taken as the head",
          "mark the head in the inventory: roles: [head, gpu]");
      return;
    }
    std::vector<std::string> what;
    if (is_head) what.push_back("head");
    else if (is_gpu_host(h)) what.push_back("GPU worker");
    if (download) what.push_back("download host");
    if (what.empty()) what.push_back("no serving role");
    add(h, "role", CheckStatus::pass, join(what, ", "));
  }

  // -- gpus ---------------------------------------------------------------

  void check_gpus(std::string const& h) {
    auto const& f = *facts_of(h);
    auto decl = declared_gpus(*inv.at(h));
    if (!is_gpu_host(h)) {
      add(h, "gpus", CheckStatus::skip,
          f.gpus.empty() ? "not a GPU host" : std::to_string(f.gpus.size()) + " GPU(s), unused (no GPU role)");
      return;
    }
    if (f.gpus.empty()) {
      auto const* issue = f.issue("gpus");
      add(h, "gpus", CheckStatus::fail,
          "no GPU found on a GPU host" + (issue ? ": " + issue->message : std::string()),
          "install the NVIDIA driver so that `nvidia-smi` lists the GPUs, or (lab) declare them: "
          "gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}");
      return;
    }
    auto const& g0 = f.gpus.front();
    std::string desc = std::to_string(f.gpus.size()) + "x " + g0.name + " " + format_bytes(g0.memory_total_bytes);
    if (f.gpus_simulated) {
      std::string size_note;
      if (decl && decl->memory_gib > 0 && std::fabs(double(g0.memory_total_bytes) / double(1ull << 30) - decl->memory_gib) > 0.05)
        size_note = "; memory_gib " + fmt("%g", decl->memory_gib) + " read as the " + g0.name + "'s nvidia-smi total of " +
                    std::to_string(g0.memory_total_bytes >> 20) + " MiB, as `plan` does";
      add(h, "gpus", CheckStatus::simulated,
          desc + " (simulated: declared in the inventory, no nvidia-smi on the host" + size_note + ")");
      return;
    }
    std::vector<std::string> problems, warnings;
    std::string fix;
    if (decl && decl->count > 0 && decl->count != f.gpus.size()) {
      problems.push_back("the inventory declares " + std::to_string(decl->count) + " GPUs, nvidia-smi lists " +
                         std::to_string(f.gpus.size()));
      fix = "check `nvidia-smi` on " + h + " (a GPU fallen off the bus?) or correct gpus.count in the inventory";
    }
    if (decl && decl->memory_gib > 0) {
      double have = double(g0.memory_total_bytes) / double(1ull << 30);
      if (have < decl->memory_gib * 0.85) {
        problems.push_back("each GPU has " + format_bytes(g0.memory_total_bytes) + ", the inventory declares " +
                           fmt("%.0f", decl->memory_gib) + " GiB");
        if (fix.empty()) fix = "correct gpus.memory_gib in the inventory (plans are made from it)";
      }
    }
    if (decl && !decl->model.empty() && lower(g0.name).find(lower(decl->model)) == std::string::npos)
      warnings.push_back("the inventory says " + decl->model + ", the host has " + g0.name);
    for (auto const& g : f.gpus) {
      if (g.memory_total_bytes && g.memory_used_bytes * 10 > g.memory_total_bytes)
        warnings.push_back("GPU" + std::to_string(g.index) + " has " + format_bytes(g.memory_used_bytes) +
                           " in use already (vLLM needs --gpu-memory-utilization of the total free)");
    }
    // Hosts of one deployment should match: pipeline stages get equal GPUs.
    if (!roles.head.empty() && h != roles.head)
      if (auto const* hf = facts_of(roles.head); hf && !hf->gpus.empty() && !hf->gpus_simulated &&
                                                 hf->gpus.size() != f.gpus.size())
        warnings.push_back(std::to_string(f.gpus.size()) + " GPUs here, " + std::to_string(hf->gpus.size()) + " on the head " +
                           roles.head + " (each pipeline stage needs the same number)");
    if (!problems.empty()) {
      add(h, "gpus", CheckStatus::fail, desc + ": " + join(problems, "; "), fix);
    } else if (!warnings.empty()) {
      add(h, "gpus", CheckStatus::warn, desc + ": " + join(warnings, "; "),
          "free the GPUs (nvidia-smi shows which process holds memory) and make the inventory match the hosts");
    } else {
      add(h, "gpus", CheckStatus::pass, desc);
    }
  }

  // -- versions -----------------------------------------------------------

  /// The value every GPU host should have: the head's, else the most common.
  template <class Get>
  std::pair<std::string, std::string> reference(std::vector<std::string> const& reachable, Get&& get) const {
    if (auto const* hf = facts_of(roles.head); hf && is_gpu_host(roles.head)) {
      auto v = get(*hf);
      if (!v.empty()) return {v, roles.head + " (the head)"};
    }
    std::map<std::string, int> votes;
    for (auto const& h : reachable)
      if (is_gpu_host(h))
        if (auto v = get(*facts_of(h)); !v.empty()) ++votes[v];
    std::string best;
    int n = 0;
    for (auto const& [v, c] : votes)
      if (c > n) {
        best = v;
        n = c;
      }
    for (auto const& h : reachable)
      if (is_gpu_host(h) && get(*facts_of(h)) == best) return {best, h};
    return {};
  }

  template <class Get>
  void check_same_value(std::string const& check, std::vector<std::string> const& reachable, Get&& get,
                        std::string const& what) {
    auto [ref, ref_host] = reference(reachable, get);
    std::size_t gpu_count = 0;
    for (auto const& h : reachable) gpu_count += is_gpu_host(h) ? 1 : 0;
    for (auto const& h : reachable) {
      auto const& f = *facts_of(h);
      if (!is_gpu_host(h)) {
        add(h, check, CheckStatus::skip, "not a GPU host");
        continue;
      }
      if (f.gpus_simulated) {
        add(h, check, CheckStatus::simulated, "simulated GPUs: no " + what + " to compare");
        continue;
      }
      auto v = get(f);
      if (v.empty()) {
        add(h, check, CheckStatus::skip, "unknown (no working nvidia-smi; see gpus)");
        continue;
      }
      if (v != ref) {
        add(h, check, CheckStatus::fail, what + " " + v + " on " + h + ", but " + ref + " on " + ref_host,
            "install the same " + what + " on every GPU host (" + ref + ", as on " + ref_host +
                "): mixed versions fail at start-up or in NCCL (REFERENCES #5)");
        continue;
      }
      add(h, check, CheckStatus::pass, what + " " + v + (gpu_count > 1 ? " (same on every GPU host)" : ""));
    }
  }

  void check_python(std::vector<std::string> const& reachable) {
    struct Item {
      char const* check;
      char const* package;  // "" = the interpreter
      char const* pretty;
    };
    for (Item item : {Item{"python", "", "Python"}, Item{"ray", "ray", "Ray"}, Item{"vllm", "vllm", "vLLM"},
                      Item{"torch", "torch", "PyTorch"}}) {
      auto get = [&](HostFacts const& f) -> std::string {
        if (!f.python) return {};
        return *item.package ? f.python->package(item.package) : f.python->version;
      };
      auto [ref, ref_host] = reference(reachable, get);
      for (auto const& h : reachable) {
        auto const& f = *facts_of(h);
        if (!is_gpu_host(h)) {
          add(h, item.check, CheckStatus::skip, "not a GPU host");
          continue;
        }
        bool docker = runtime_of(h) == "docker";
        auto v = get(f);
        auto mismatch_status = docker ? CheckStatus::warn : CheckStatus::fail;
        std::string where = docker ? " on the host (vLLM runs from the image, runtime: docker)" : "";
        if (ref.empty()) {
          // Absent on every GPU host.
          if (docker) {
            add(h, item.check, CheckStatus::skip, std::string(item.pretty) + " not on the host: vLLM runs from the image");
          } else if (!*item.package) {
            add(h, item.check, CheckStatus::fail,
                std::string(options.python) + " is not installed (runtime: none runs vLLM from the host's Python)",
                "install Python 3 on every GPU host, the same version everywhere");
          } else {
            add(h, item.check, CheckStatus::warn,
                std::string(item.pretty) + " is not installed on any GPU host (runtime: none runs vLLM from the host's Python)",
                "pip install vllm (it brings Ray and PyTorch) on every GPU host, the same version everywhere");
          }
          continue;
        }
        if (v.empty()) {
          add(h, item.check, mismatch_status,
              std::string(item.pretty) + " is not installed on " + h + where + ", but " + ref + " is on " + ref_host,
              std::string("install ") + item.pretty + " " + ref + " on " + h +
                  (*item.package ? " (pip install '" + std::string(item.package) + "==" + ref + "')" : std::string()) +
                  ": every node must run the same versions (REFERENCES #5)");
          continue;
        }
        if (v != ref) {
          add(h, item.check, mismatch_status,
              std::string(item.pretty) + " " + v + " on " + h + where + ", but " + ref + " on " + ref_host,
              std::string("install the same ") + item.pretty + " everywhere" +
                  (*item.package ? " (pip install '" + std::string(item.package) + "==" + ref + "')" : std::string()) +
                  ": Ray refuses to join nodes with different versions (\"Version mismatch\", REFERENCES #5)");
          continue;
        }
        add(h, item.check, CheckStatus::pass, std::string(item.pretty) + " " + v + where);
      }
    }
  }

  // -- docker -------------------------------------------------------------

  void check_docker(std::string const& h, std::vector<std::string> const& reachable) {
    auto const& f = *facts_of(h);
    if (!is_gpu_host(h)) {
      add(h, "docker", CheckStatus::skip, "not a GPU host");
      add(h, "nvidia-runtime", CheckStatus::skip, "not a GPU host");
      return;
    }
    if (runtime_of(h) != "docker") {
      add(h, "docker", CheckStatus::skip, "runtime: " + runtime_of(h) + " (vLLM runs on the host, not in Docker)");
      add(h, "nvidia-runtime", CheckStatus::skip, "runtime: " + runtime_of(h));
      return;
    }
    bool usable = false;
    if (!f.docker) {
      auto const* issue = f.issue("docker");
      add(h, "docker", CheckStatus::fail,
          "Docker is not installed" + (issue && issue->kind == FactIssue::Kind::failed ? ": " + issue->message : std::string()),
          "install Docker Engine (https://docs.docker.com/engine/install/), then `systemctl enable --now docker`; "
          "or set vars: {runtime: none} for hosts that run vLLM without Docker");
    } else if (!f.docker->daemon_reachable) {
      bool denied = lower(f.docker->daemon_error).find("permission denied") != std::string::npos;
      add(h, "docker", CheckStatus::fail, "the Docker daemon does not answer: " + f.docker->daemon_error,
          denied ? "connect as root, or add the ssh user to the docker group: `usermod -aG docker USER` (then log in again)"
                 : "start it: `systemctl enable --now docker` (and check `journalctl -u docker`)");
    } else {
      usable = true;
      std::string msg = "Docker " + f.docker->server_version;
      auto const* hf = facts_of(roles.head);
      if (h != roles.head && hf && hf->docker && hf->docker->daemon_reachable &&
          hf->docker->server_version != f.docker->server_version)
        add(h, "docker", CheckStatus::warn,
            msg + ", but " + hf->docker->server_version + " on the head " + roles.head,
            "run the same Docker version on every GPU host");
      else
        add(h, "docker", CheckStatus::pass, msg);
    }
    (void)reachable;
    // The NVIDIA runtime.
    bool toolkit = f.docker && f.docker->can_run_gpu_containers();
    if (f.gpus_simulated) {
      add(h, "nvidia-runtime", CheckStatus::simulated,
          std::string("simulated GPUs: `docker run --gpus` not checked (toolkit ") + (toolkit ? "found" : "not found") + ")");
      return;
    }
    if (!usable) {
      add(h, "nvidia-runtime", CheckStatus::skip, "Docker is not usable (see docker)");
      return;
    }
    if (toolkit) {
      add(h, "nvidia-runtime", CheckStatus::pass,
          f.docker->nvidia_runtime_registered() ? "nvidia runtime registered with Docker"
                                                : "NVIDIA container toolkit found (" + join(f.docker->nvidia_toolkit, ", ") + ")");
      return;
    }
    add(h, "nvidia-runtime", CheckStatus::fail,
        "Docker cannot give containers GPUs: `docker run --gpus all` fails with "
        "'could not select device driver \"\" with capabilities: [[gpu]]' (REFERENCES #8)",
        "install nvidia-container-toolkit "
        "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), then "
        "`nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`");
  }

  void check_images(std::string const& h) {
    if (options.docker_images.empty()) return;
    auto const& f = *facts_of(h);
    if (!is_gpu_host(h) || runtime_of(h) != "docker") {
      add(h, "image", CheckStatus::skip, is_gpu_host(h) ? "runtime: " + runtime_of(h) : "not a GPU host");
      return;
    }
    if (!f.docker || !f.docker->daemon_reachable) {
      add(h, "image", CheckStatus::skip, "Docker is not usable (see docker)");
      return;
    }
    std::vector<std::string> missing, differ, fine;
    auto const* hf = facts_of(roles.head);
    for (auto const& image : options.docker_images) {
      auto it = f.docker->images.find(image);
      std::string id = it == f.docker->images.end() ? "" : it->second;
      if (id.empty()) {
        missing.push_back(image);
        continue;
      }
      std::string ref;
      if (hf && hf->docker)
        if (auto r = hf->docker->images.find(image); r != hf->docker->images.end()) ref = r->second;
      if (!ref.empty() && ref != id) differ.push_back(image + " is " + id.substr(0, 19) + " here, " + ref.substr(0, 19) + " on " + roles.head);
      else fine.push_back(image + " " + id.substr(0, 19));
    }
    if (!missing.empty())
      add(h, "image", CheckStatus::fail, "not on " + h + ": " + join(missing, ", "),
          "docker pull " + missing.front() + " on " + h + " (the same tag or digest as on the other hosts)");
    else if (!differ.empty())
      add(h, "image", CheckStatus::fail, join(differ, "; "),
          "pull the same image by digest on every GPU host (docker pull IMAGE@sha256:...): different images mean "
          "different vLLM, Ray and Python versions (REFERENCES #5)");
    else
      add(h, "image", CheckStatus::pass, join(fine, ", "));
  }

  // -- shm and disks ------------------------------------------------------

  void check_shm(std::string const& h) {
    auto const& f = *facts_of(h);
    if (!is_gpu_host(h)) {
      add(h, "shm", CheckStatus::skip, "not a GPU host");
      return;
    }
    auto min = static_cast<std::uint64_t>(std::max(0.0, options.shm_min_gib) * double(1ull << 30));
    std::string fix =
        "make /dev/shm larger: `mount -o remount,size=" + fmt("%.0f", std::ceil(std::max(options.shm_min_gib, 1.0) * 1.6)) +
        "G /dev/shm` now and the same size in /etc/fstab (tmpfs /dev/shm tmpfs defaults,size=...); in Docker pass "
        "--shm-size 10.24g or --ipc=host (NCCL's shared-memory transport fails with bus errors otherwise, vllm#1710)";
    if (!f.shm) {
      auto const* issue = f.issue("shm");
      add(h, "shm", CheckStatus::fail, "/dev/shm is not there" + (issue ? ": " + issue->message : std::string()), fix);
      return;
    }
    bool docker = runtime_of(h) == "docker";
    if (f.shm->total_bytes < min) {
      add(h, "shm", docker ? CheckStatus::warn : CheckStatus::fail,
          "/dev/shm is " + format_bytes(f.shm->total_bytes) + ", below " + format_bytes(min) +
              (docker ? " (containers get their own from --shm-size; this matters with --ipc=host or outside Docker)" : ""),
          fix);
    } else if (f.shm->available_bytes < min) {
      add(h, "shm", CheckStatus::warn,
          "/dev/shm is " + format_bytes(f.shm->total_bytes) + " but only " + format_bytes(f.shm->available_bytes) + " is free",
          "remove stale files from /dev/shm (old NCCL or Ray segments) or make it larger");
    } else {
      add(h, "shm", CheckStatus::pass, "/dev/shm " + format_bytes(f.shm->total_bytes) + " (" + format_bytes(f.shm->available_bytes) + " free)");
    }
  }

  void check_disk(std::string const& h) {
    if (options.disk_paths.empty()) return;
    auto const& f = *facts_of(h);
    auto min = static_cast<std::uint64_t>(std::max(0.0, options.disk_min_free_gib) * double(1ull << 30));
    std::vector<std::string> bad, good;
    std::string fix;
    for (auto const& p : options.disk_paths) {
      auto const* d = f.disk(p);
      if (!d) {
        auto const* issue = f.issue("disk " + p);
        bad.push_back(p + ": " + (issue ? issue->message : "not checked"));
        if (fix.empty()) fix = "create or mount " + p + " on " + h;
        continue;
      }
      if (d->available_bytes < min) {
        bad.push_back(p + " has " + format_bytes(d->available_bytes) + " free, below " + format_bytes(min));
        if (fix.empty()) fix = "free space on " + d->mount_point + " (" + d->filesystem + ") on " + h + ", or use another path";
        continue;
      }
      good.push_back(p + " " + format_bytes(d->available_bytes) + " free");
    }
    if (!bad.empty()) add(h, "disk", CheckStatus::fail, join(bad, "; "), fix);
    else add(h, "disk", CheckStatus::pass, join(good, ", "));
  }

  // -- NAS ----------------------------------------------------------------

  std::string nas_path() const {
    if (!options.nas_path.empty()) return normalize_path(options.nas_path);
    for (auto const& h : hosts) {
      if (is_storage(h.spec.name) || !h.extra.is_object()) continue;
      auto v = h.extra.find("vars");
      if (v != h.extra.end() && v->is_object())
        if (auto m = v->find("mount_point"); m != v->end() && m->is_string()) return normalize_path(m->get<std::string>());
    }
    return {};
  }

  /// The view of the NAS most hosts share (the set of token files seen);
  /// ties go to the view that includes the head.
  std::vector<std::string> reference_nas_view() const {
    std::map<std::vector<std::string>, int> votes;
    for (auto const& r : probes.nas->reads)
      if (r.error.empty() && r.directory && !r.seen.empty()) ++votes[r.seen];
    std::vector<std::string> best;
    int n = 0;
    bool best_has_head = false;
    for (auto const& [view, count] : votes) {
      bool has_head = std::find(view.begin(), view.end(), roles.head) != view.end();
      if (count > n || (count == n && has_head && !best_has_head)) {
        best = view;
        n = count;
        best_has_head = has_head;
      }
    }
    return best;
  }

  void check_nas(std::string const& h) {
    auto path = nas_path();
    if (path.empty()) return;
    NasRead const* read = nullptr;
    if (probes.nas)
      for (auto const& r : probes.nas->reads)
        if (r.host == h) read = &r;
    auto const& ih = *inv.at(h);
    // The NAS as the inventory describes it (vars nas_type, nas_export), so
    // that the fix names the right kind of mount, sshfs or NFS.
    std::string nas_type, nas_export, mount_point = "/mnt";  // `nas mount`'s --path default
    if (ih.extra.is_object())
      if (auto v = ih.extra.find("vars"); v != ih.extra.end() && v->is_object()) {
        if (auto t = v->find("nas_type"); t != v->end() && t->is_string()) nas_type = t->get<std::string>();
        if (auto e = v->find("nas_export"); e != v->end() && e->is_string()) nas_export = e->get<std::string>();
        if (auto m = v->find("mount_point"); m != v->end() && m->is_string()) mount_point = m->get<std::string>();
      }
    // The path checked here (--nas-path) where it is not the one `nas mount`
    // takes by itself.
    auto const path_arg = path == mount_point ? std::string() : " " + shell::join_for_display(std::vector<std::string>{"--path", path});
    auto mount_fix = "mount the NAS at " + path + " on " + h + ": `clusterkit nas mount -g " + h + path_arg + "`" +
                     (nas_type.empty() && nas_export.empty()
                          ? std::string(" (it reads the NAS from the inventory's vars nas_type and nas_export; add them, "
                                        "e.g. nas_type: nfs, nas_export: NAS:/export)")
                          : " (" + (nas_type.empty() ? std::string("nfs") : nas_type) +
                                (nas_export.empty() ? std::string() : " from " + nas_export) + ", as the inventory says)");
    // What a NAS can be mounted as (the names `stat -f -c %T` and
    // /proc/mounts give; sshfs and other FUSE clients show as fuse or
    // fuseblk); anything else at the path is this host's own disk (a tmpfs
    // /mnt, the root filesystem), which nobody else sees.
    static constexpr std::string_view shared_types[] = {
        "nfs",  "nfs4", "fuse",   "fuseblk", "fuse.sshfs", "sshfs", "cifs", "smb2", "smb3", "ceph", "fuse.ceph-fuse",
        "glusterfs", "fuse.glusterfs", "lustre", "beegfs", "gpfs", "9p", "v9fs", "virtiofs", "fuse.juicefs", "fuse.s3fs"};
    bool const bind_nas = nas_type == "bind";
    bool writes = has_role(ih, "download");
    auto where = [&](NasRead const& r) {
      return r.filesystem_type + (r.mount_point ? ", mounted" : ", not a mount point");
    };
    if (!probes.nas || !read) {
      add(h, "nas", CheckStatus::skip, not_probed(probes.nas_skipped, h));
    } else if (!read->error.empty()) {
      add(h, "nas", CheckStatus::fail, "the NAS probe failed: " + read->error, "run `clusterkit facts -g " + h + "` to see why");
    } else if (!read->directory) {
      add(h, "nas", CheckStatus::fail, path + " does not exist on " + h, mount_fix);
    } else if (writes && !read->written) {
      add(h, "nas", CheckStatus::fail, "cannot write under " + path + " on " + h + ": " + read->write_error,
          "make " + path + " writable from " + h + " (the download host writes the model there)");
    } else {
      auto ref = reference_nas_view();
      std::string ro = read->written ? "" : " (read-only here: fine for a host that only reads the model)";
      if (ref.empty()) {
        add(h, "nas", writes ? CheckStatus::fail : CheckStatus::warn,
            path + " (" + where(*read) + ") could not be compared: no host could write a file under it",
            "make " + path + " writable from the download host");
      } else if (read->seen == ref && !bind_nas && !is_storage(h) &&
                 std::find(std::begin(shared_types), std::end(shared_types), read->filesystem_type) ==
                     std::end(shared_types)) {
        // Agreeing with the majority is not enough: alone (or with hosts
        // that all write to their own disks) a tmpfs /mnt agrees with itself.
        add(h, "nas", CheckStatus::fail,
            path + " on " + h + " is " +
                (read->filesystem_type.empty() ? std::string("a local folder") : read->filesystem_type) +
                (read->mount_point ? "" : ", not a mount point") +
                ": no NAS is mounted there, so what is written there stays on " + h,
            mount_fix);
      } else if (read->seen == ref) {
        add(h, "nas", CheckStatus::pass,
            path + " (" + where(*read) + ") shows the files written on " + join(ref, ", ") + ro);
      } else {
        std::vector<std::string> missing, extra;
        for (auto const& x : ref)
          if (std::find(read->seen.begin(), read->seen.end(), x) == read->seen.end()) missing.push_back(x);
        for (auto const& x : read->seen)
          if (std::find(ref.begin(), ref.end(), x) == ref.end()) extra.push_back(x);
        std::string msg = path + " on " + h + " (" + where(*read) + ") is not the NAS the others share";
        if (!missing.empty()) msg += ": it does not show the files written on " + join(missing, ", ");
        if (!extra.empty()) msg += std::string(missing.empty() ? ": " : "; ") + "it shows files the others do not (from " + join(extra, ", ") + ")";
        add(h, "nas", CheckStatus::fail, msg, mount_fix);
      }
    }
    if (options.model_path.empty()) return;
    if (!read || !read->model_present) {
      add(h, "model-path", CheckStatus::skip, not_probed(probes.nas_skipped, h));
    } else if (!*read->model_present) {
      add(h, "model-path", CheckStatus::fail, normalize_path(options.model_path) + "/config.json is missing on " + h,
          "vLLM needs the model at the same path on every node, or the worker tries to download it (vllm#2289): "
          "put it on the NAS or copy it to " + options.model_path + " on " + h);
    } else {
      add(h, "model-path", CheckStatus::pass, normalize_path(options.model_path) + " is there");
    }
  }

  // -- network ------------------------------------------------------------

  static bool virtual_interface(std::string_view name) {
    for (std::string_view p : {"docker", "br-", "veth", "virbr", "cni", "flannel", "cali", "tun", "tap", "lxc", "vxlan", "tailscale",
                               "zt", "wg", "kube", "ifb", "dummy"})
      if (name.substr(0, p.size()) == p) return true;
    return false;
  }

  /// The route a host takes to the head.
  RouteToPeer const* route_to_head(HostFacts const& f) const {
    if (head_address.empty()) return nullptr;
    return f.route_to(head_address);
  }

  void check_network(std::string const& h) {
    auto const& f = *facts_of(h);
    if (!is_gpu_host(h)) {
      add(h, "network", CheckStatus::skip, "not a GPU host");
      return;
    }
    if (head_address.empty()) {
      add(h, "network", CheckStatus::skip, "the head has no address in the inventory");
      return;
    }
    auto const* r = route_to_head(f);
    if (!r) {
      auto const* issue = f.issue("route " + head_address);
      if (issue && issue->kind == FactIssue::Kind::absent) {
        // Seen on a real GPU machine: no iproute2. Not knowing the route is
        // not the same as having none; the port probes still test reachability.
        add(h, "network", CheckStatus::warn,
            "cannot look up the route to the head " + head_address + ": " + issue->message,
            "install iproute2 on " + h + " (apt-get install iproute2) so the interface for NCCL_SOCKET_IFNAME, "
            "GLOO_SOCKET_IFNAME and VLLM_HOST_IP can be determined");
        return;
      }
      add(h, "network", CheckStatus::fail,
          "no route to the head " + head_address + (issue ? ": " + issue->message : std::string()),
          "give " + h + " an address on the head's network, or use an address of the head that " + h + " can reach");
      return;
    }
    std::map<std::string, std::string> env = {
        {"VLLM_HOST_IP", r->source_address}, {"NCCL_SOCKET_IFNAME", r->interface}, {"GLOO_SOCKET_IFNAME", r->interface}};
    report.recommended_env[h] = env;
    std::string values = "VLLM_HOST_IP=" + r->source_address + " NCCL_SOCKET_IFNAME=" + r->interface +
                         " GLOO_SOCKET_IFNAME=" + r->interface;
    std::string base = (h == roles.head ? "the head itself, on " : "reaches the head " + head_address + " over ") +
                       r->interface + " from " + r->source_address;
    std::string env_fix = "start this node with " + values +
                          " (set when the node or container starts, e.g. docker run -e ...; a shell export later never "
                          "reaches Ray workers, vllm#6803)";
    std::vector<std::string> warnings;
    if (r->interface == "lo")
      warnings.push_back("the head address " + head_address + " is a loopback address: other hosts cannot reach it");
    if (!r->gateway.empty())
      warnings.push_back("the route goes through the gateway " + r->gateway + " (not the same subnet): NCCL traffic crosses a router");
    std::vector<std::string> candidates;
    for (auto const& i : f.interfaces) {
      if (i.loopback || !i.up || virtual_interface(i.name)) continue;
      auto v4 = i.ipv4();
      if (!v4.empty()) candidates.push_back(i.name + " " + v4);
    }
    if (candidates.size() > 1)
      warnings.push_back(std::to_string(candidates.size()) + " interfaces have addresses (" + join(candidates, ", ") +
                         "): Ray, NCCL and Gloo may pick the wrong one (vllm#7815, #5094)");
    auto ssh_address = address_of(h);
    if (!ssh_address.empty() && ssh_address != r->source_address && ssh_address != "127.0.0.1" &&
        f.interface_with_address(ssh_address) != nullptr && h != roles.head)
      warnings.push_back("ssh reaches " + h + " at " + ssh_address + ", but it reaches the head from " + r->source_address);
    if (h != roles.head)
      if (auto const* hf = facts_of(roles.head))
        if (auto const* hr = route_to_head(*hf))
          if (auto const* hi = hf->interface_named(hr->interface))
            if (auto const* mi = f.interface_named(r->interface); mi && hi->mtu && mi->mtu && hi->mtu != mi->mtu)
              warnings.push_back("MTU " + std::to_string(mi->mtu) + " on " + r->interface + ", but " + std::to_string(hi->mtu) +
                                 " on the head's " + hr->interface + " (mismatched MTUs make NCCL hang)");
    if (!warnings.empty())
      add(h, "network", CheckStatus::warn, base + "; " + join(warnings, "; "), env_fix);
    else
      add(h, "network", CheckStatus::pass, base + ": " + values);
  }

  // -- ports --------------------------------------------------------------

  void check_ports(std::string const& h) {
    if (!is_gpu_host(h)) {
      add(h, "ray-port", CheckStatus::skip, "not a GPU host");
      add(h, "nccl-ports", CheckStatus::skip, "not a GPU host");
      return;
    }
    if (!probes.ports) {
      add(h, "ray-port", CheckStatus::skip, not_probed(probes.ports_skipped, h));
      add(h, "nccl-ports", CheckStatus::skip, not_probed(probes.ports_skipped, h));
      return;
    }
    auto const& pr = *probes.ports;
    PortListener const* head_listener = nullptr;
    PortListener const* own = nullptr;
    for (auto const& l : pr.listeners) {
      if (l.host == pr.head) head_listener = &l;
      if (l.host == h) own = &l;
    }
    auto firewall_fix = [&](std::string const& ports) {
      return "allow TCP " + ports + " between the GPU hosts on the cluster network (e.g. `ufw allow from SUBNET` or "
             "`firewall-cmd --zone=trusted --add-source=SUBNET`), and check that " + head_address +
             " is the head's address on that network";
    };
    auto const* f = facts_of(h);
    std::string expected_source;
    if (f)
      if (auto const* r = route_to_head(*f)) expected_source = r->source_address;
    // Ray port.
    if (h == pr.head && head_listener && !head_listener->busy.empty()) {
      std::vector<std::string> busy;
      for (auto const& [p, why] : head_listener->busy) busy.push_back(std::to_string(p) + " (" + why + ")");
      add(h, "ray-port", CheckStatus::fail, "already in use on the head: " + join(busy, ", "),
          "stop what holds it (an old Ray head: `ray stop`, or `docker rm -f` the old container; vLLM's run_cluster.sh "
          "names them node-<random>), or choose other ports");
    } else if (!head_listener || !head_listener->started) {
      add(h, "ray-port", h == pr.head ? CheckStatus::fail : CheckStatus::skip,
          "no listener on the head: " + (head_listener ? head_listener->error : std::string("not started")),
          h == pr.head ? "install python3 on the head (the port probe listens with it)" : "");
    } else {
      PortProbe const* p = nullptr;
      for (auto const& x : pr.probes)
        if (x.from == h && x.purpose == "ray") p = &x;
      if (!p) {
        add(h, "ray-port", CheckStatus::skip, "the Ray port could not be probed (busy on the head?)");
      } else if (!p->ok()) {
        add(h, "ray-port", CheckStatus::fail,
            "cannot connect to the head " + p->address + ":" + std::to_string(p->port) + " (Ray): " + p->error,
            firewall_fix(std::to_string(p->port) + " (Ray) and the other Ray ports"));
      } else if (!expected_source.empty() && !p->source_address.empty() && p->source_address != expected_source) {
        add(h, "ray-port", CheckStatus::warn,
            "connected to " + p->address + ":" + std::to_string(p->port) + " from " + p->source_address + ", not from " +
                expected_source,
            "start this node with VLLM_HOST_IP=" + p->source_address);
      } else {
        add(h, "ray-port", CheckStatus::pass,
            "connected to " + p->address + ":" + std::to_string(p->port) + " in " + fmt("%.1f", p->milliseconds) + " ms" +
                (p->source_address.empty() ? "" : " from " + p->source_address));
      }
    }
    // Rendezvous and ephemeral ports.
    if (own && !own->started) {
      add(h, "nccl-ports", CheckStatus::fail, "could not listen on " + h + ": " + own->error,
          "install python3 on " + h + " (the port probe listens with it)");
      return;
    }
    std::vector<std::string> failed;
    std::size_t ok = 0;
    std::set<std::string> peers;
    for (auto const& x : pr.probes) {
      if (x.from != h || x.purpose == "ray") continue;
      if (x.ok()) {
        ++ok;
        peers.insert(x.to);
      } else {
        failed.push_back(x.to + " " + x.address + ":" + std::to_string(x.port) + " (" + x.purpose + "): " + x.error);
      }
    }
    if (!failed.empty()) {
      std::string range = "the ephemeral ports";
      if (f && f->ephemeral_ports)
        range = std::to_string(f->ephemeral_ports->first) + "-" + std::to_string(f->ephemeral_ports->second);
      auto shown = failed;
      if (shown.size() > 4) {
        shown.resize(4);
        shown.push_back("and " + std::to_string(failed.size() - 4) + " more");
      }
      add(h, "nccl-ports", CheckStatus::fail, std::to_string(failed.size()) + " connection(s) failed: " + join(shown, "; "),
          firewall_fix(std::to_string(options.rdzv_port) + " (rendezvous) and " + range +
                       " (NCCL and Gloo listen on ephemeral ports on every node)"));
    } else if (ok == 0) {
      add(h, "nccl-ports", CheckStatus::skip, "nothing to probe");
    } else {
      add(h, "nccl-ports", CheckStatus::pass,
          std::to_string(ok) + " connections to the rendezvous port and ephemeral ports of " + std::to_string(peers.size()) +
              " GPU host(s)");
    }
  }

  // -- clock --------------------------------------------------------------

  void check_clock(std::string const& h) {
    auto const& f = *facts_of(h);
    if (!f.clock) {
      add(h, "clock", CheckStatus::skip, "no clock reading");
      return;
    }
    double off = f.clock->offset_seconds(), unc = f.clock->uncertainty_seconds();
    auto const* hf = facts_of(roles.head);
    bool against_head = hf && hf->clock && h != roles.head;
    double ref = against_head ? hf->clock->offset_seconds() : 0;
    double ref_unc = against_head ? hf->clock->uncertainty_seconds() : 0;
    double diff = off - ref, bound = unc + ref_unc;
    std::string who = against_head ? "the head " + roles.head : "this machine";
    std::string text = fmt("%+.3f s", diff) + " against " + who + " (+-" + fmt("%.3f", bound) + " s)";
    if (h == roles.head) text = fmt("%+.3f s", off) + " against this machine (+-" + fmt("%.3f", unc) + " s); the reference";
    std::string fix = "enable time synchronisation on every host: `timedatectl set-ntp true` (systemd-timesyncd) or chrony";
    if (std::fabs(diff) - bound > options.max_clock_offset_seconds)
      add(h, "clock", CheckStatus::fail, text + ", more than " + fmt("%.1f", options.max_clock_offset_seconds) + " s", fix);
    else if (std::fabs(diff) > options.max_clock_offset_seconds)
      add(h, "clock", CheckStatus::warn, text + ": may exceed " + fmt("%.1f", options.max_clock_offset_seconds) + " s", fix);
    else
      add(h, "clock", CheckStatus::pass, text);
  }

  // -- model --------------------------------------------------------------

  void check_model_fits() {
    if (!options.model) return;
    GpuInventory inventory;
    bool simulated = false;
    for (auto const& h : roles.gpu_hosts) {
      auto const* f = facts_of(h);
      if (!f || f->gpus.empty()) continue;
      GpuNode node;
      node.name = h;
      node.gpu_count = static_cast<unsigned>(f->gpus.size());
      node.gpu_model = f->gpus.front().name;
      node.memory_bytes = f->gpus.front().memory_total_bytes;
      for (auto const& g : f->gpus) node.memory_bytes = std::min(node.memory_bytes, g.memory_total_bytes);
      node.memory_source = f->gpus_simulated ? "simulated (inventory)" : "nvidia-smi memory.total";
      simulated = simulated || f->gpus_simulated;
      inventory.nodes.push_back(std::move(node));
    }
    if (inventory.nodes.empty()) {
      add("cluster", "model-fits", CheckStatus::fail, "no GPUs found on the GPU hosts", "see the gpus check");
      return;
    }
    try {
      auto plan = plan_deployment(*options.model, inventory, options.plan);
      if (auto const* l = plan.recommended_layout()) {
        std::string args;
        for (auto const& a : l->vllm_args) args += (args.empty() ? "" : " ") + a;
        add("cluster", "model-fits", simulated ? CheckStatus::simulated : CheckStatus::pass,
            plan.model + " fits on " + inventory.describe() + ": TP=" + std::to_string(l->tp) + " PP=" + std::to_string(l->pp) +
                ", KV cache " + std::to_string(l->kv_cache_tokens) + " tokens (" + args + ")" +
                (simulated ? " [simulated GPUs]" : ""));
      } else {
        std::string fix = plan.shortfall && !plan.shortfall->suggestions.empty() ? join(plan.shortfall->suggestions, " ")
                                                                                 : "use more or larger GPUs";
        add("cluster", "model-fits", CheckStatus::fail, plan.model + " does not fit on " + inventory.describe(), fix);
      }
    } catch (Error const& e) {
      add("cluster", "model-fits", CheckStatus::fail, std::string("the planner refused: ") + e.what(),
          "check the model folder (config.json and safetensors headers)");
    }
  }
};

}  // namespace

void validate_preflight_options(PreflightOptions const& o) {
  auto bad = [](std::string const& what) { throw Error(make_error_code(errc::invalid_argument), "preflight: " + what); };
  auto number = [](double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  };
  auto gib = [&](double v, char const* name, char const* flag) {
    if (!std::isfinite(v) || v < 0 || v > 1048576)
      bad(std::string(name) + " must be between 0 and 1048576 GiB, not " + number(v) + " (" + flag + ")");
  };
  gib(o.shm_min_gib, "shm_min_gib", "--shm-min-gib");
  gib(o.disk_min_free_gib, "disk_min_free_gib", "--disk-min-gib");
  auto port = [&](int p, char const* name, char const* flag) {
    if (p < 1 || p > 65535) bad(std::string(name) + " " + std::to_string(p) + " is not a TCP port (1-65535; " + flag + ")");
  };
  port(o.ray_port, "ray_port", "--ray-port");
  port(o.rdzv_port, "rdzv_port", "--rdzv-port");
  if (o.ephemeral_ports > 64) bad("ephemeral_ports must be at most 64, not " + std::to_string(o.ephemeral_ports));
  if (!std::isfinite(o.max_clock_offset_seconds) || o.max_clock_offset_seconds <= 0 || o.max_clock_offset_seconds > 86400)
    bad("max_clock_offset_seconds must be above 0 and at most 86400, not " + number(o.max_clock_offset_seconds) +
        " (--max-clock-offset)");
  if (o.facts_timeout < std::chrono::seconds(1) || o.facts_timeout > std::chrono::hours(24))
    bad("facts_timeout must be between 1 s and a day, not " + std::to_string(o.facts_timeout.count()) + " ms (--facts-timeout)");
  if (!(o.plan.gpu_memory_utilization > 0 && o.plan.gpu_memory_utilization <= 1))
    bad("gpu_memory_utilization must be in (0, 1], not " + number(o.plan.gpu_memory_utilization));
  if (o.plan.max_model_len && *o.plan.max_model_len == 0) bad("max_model_len must be at least 1 (--max-model-len)");
}

CheckReport evaluate_preflight(std::vector<InventoryHost> const& hosts, std::vector<HostFactsOutcome> const& facts,
                               PreflightProbes const& probes, PreflightOptions const& options) {
  Evaluator e(hosts, facts, probes, options);
  return e.run();
}

std::string head_address_of(std::vector<InventoryHost> const& hosts) {
  return Evaluator(hosts, {}, PreflightProbes{}, PreflightOptions{}).head_address;
}

std::optional<GpuNode> declared_gpu_node(InventoryHost const& host) {
  auto dg = declared_gpus(host);
  if (!dg || dg->count == 0) return std::nullopt;
  GpuNode node;
  node.name = host.spec.name;
  node.gpu_count = dg->count;
  node.gpu_model = dg->model;
  auto known = known_gpu_memory_bytes(dg->model, dg->memory_gib);
  node.memory_bytes = known ? *known : static_cast<std::uint64_t>(dg->memory_gib * double(1ull << 30));
  node.memory_source = std::string("declared in the inventory") + (dg->simulated ? " (SIMULATED)" : "");
  return node;
}

GpuInventory declared_gpu_inventory(std::vector<InventoryHost> const& hosts) {
  GpuInventory inv;
  for (auto const& h : hosts)
    if (auto node = declared_gpu_node(h)) inv.nodes.push_back(std::move(*node));
  return inv;
}

std::string nas_path_of(std::vector<InventoryHost> const& hosts, PreflightOptions const& options) {
  return Evaluator(hosts, {}, PreflightProbes{}, options).nas_path();
}

FactsOptions preflight_facts_options(std::vector<InventoryHost> const& hosts, PreflightOptions const& options) {
  FactsOptions f;
  f.disk_paths = options.disk_paths;
  std::vector<HostFactsOutcome> const no_facts;
  PreflightProbes const no_probes;
  Evaluator e(hosts, no_facts, no_probes, options);
  auto nas = e.nas_path();
  if (!nas.empty() && std::find(f.disk_paths.begin(), f.disk_paths.end(), nas) == f.disk_paths.end())
    f.disk_paths.push_back(nas);
  if (!e.head_address.empty()) f.peers.push_back(e.head_address);
  f.docker_images = options.docker_images;
  f.python = options.python;
  f.timeout = options.facts_timeout;
  f.declared_gpus = declared_gpus_of(hosts);
  return f;
}

json PreflightRun::to_json() const {
  json j = report.to_json();
  j["facts"] = json::array();
  for (auto const& f : facts) j["facts"].push_back(f.to_json());
  j["probes"] = {{"ports", probes.ports ? probes.ports->to_json() : json(nullptr)},
                 {"nas", probes.nas ? probes.nas->to_json() : json(nullptr)}};
  return j;
}

}  // namespace clusterkit
