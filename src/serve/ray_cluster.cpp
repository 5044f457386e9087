// RayCluster, the pure half: command lines, the node environment and
// fingerprint, the probe and status scripts and their parsers, the decision
// per host, the judgement of the cluster, and the failure sentences. No
// processes, no sockets: tested on real captures of Ray's output
// (tests/fixtures/ray).
#include "clusterkit/ray_cluster.hpp"


#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "clusterkit/facts.hpp"
#include "clusterkit/format.hpp"
#include "clusterkit/shell.hpp"
#include "core/digest.hpp"
#include "core/text.hpp"

namespace clusterkit {

using detail::join;
using detail::lines_of;
using detail::split_ws;
using detail::trim;
using json = nlohmann::json;

namespace {

[[noreturn]] void invalid(std::string const& message) { throw Error(make_error_code(errc::invalid_argument), message); }
[[noreturn]] void malformed(std::string const& message) { throw Error(make_error_code(errc::parse_error), message); }

using detail::sha256_hex;

std::string number_text(double v) {
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// The directory of a program path ("" for a bare name found on PATH).
std::string program_dir(std::string const& program) {
  auto slash = program.rfind('/');
  return slash == std::string::npos ? std::string() : program.substr(0, slash == 0 ? 1 : slash);
}

/// The Python that runs Ray: beside `ray_command` when it is a path (a
/// venv's bin/), else python3 from PATH.
std::string python_for(RayClusterSpec const& spec) {
  auto dir = program_dir(spec.ray_command);
  return dir.empty() ? "python3" : dir + "/python3";
}

bool contains(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

/// Shell lines that set $ck_pv and $ck_rv (Python's and Ray's versions) from
/// a venv's files, pyvenv.cfg and Ray's dist-info folder, when `venv_dir`
/// (quoted) is one: no Python starts (~0.1 s of CPU per host, on the path
/// before anything starts). pyvenv.cfg keeps the version the venv was made
/// with; Ray's own check at join time still sees a later upgrade.
std::string venv_versions_script(std::string const& venv_dir) {
  return "ck_pv=; ck_rv=; ck_venv=" + venv_dir + "\n"
         "if [ -f \"$ck_venv/pyvenv.cfg\" ]; then\n"
         "  ck_pv=$(sed -n 's/^version\\(_info\\)\\{0,1\\} *= *\\([0-9][0-9]*\\.[0-9][0-9]*\\.[0-9][0-9]*\\).*/\\2/p' \"$ck_venv/pyvenv.cfg\" | head -n 1)\n"
         "  for ck_d in \"$ck_venv\"/lib/python*/site-packages/ray-*.dist-info; do\n"
         "    [ -d \"$ck_d\" ] && { ck_rv=${ck_d##*/ray-}; ck_rv=${ck_rv%.dist-info}; }\n"
         "  done\n"
         "fi\n";
}

/// Where the venv of the container's Python lies on the host, when a volume
/// mounts it there (the lab mounts the Ray/vLLM venv into a small image):
/// its files then say the versions without starting a container. "" when
/// the Python is the image's own (the seed's vllm/vllm-openai).
std::string host_venv_of(RayClusterSpec const& spec, std::string const& python) {
  auto const bin = program_dir(python);
  if (bin.empty()) return {};
  auto const venv = program_dir(bin);
  if (venv.empty() || venv == "/") return {};
  for (auto const& v : spec.volumes) {
    auto const& c = v.container_path;
    if (c.empty()) continue;
    if (venv == c) return v.host_path;
    auto const prefix = c.back() == '/' ? c : c + "/";
    if (venv.compare(0, prefix.size(), prefix) == 0)
      return (v.host_path.back() == '/' ? v.host_path : v.host_path + "/") + venv.substr(prefix.size());
  }
  return {};
}

/// Sets $ck_t to the cluster's temp dir without writing the path out whole:
/// scripts find the cluster's processes by that path in /proc/PID/cmdline,
/// and their own command line (the script text) must not match.
std::string temp_dir_variable(RayClusterSpec const& spec) {
  auto tmp = ray_temp_dir(spec);
  auto cut = tmp.size() / 2;
  return "ck_t=$(printf '%s%s' " + shell::quote(tmp.substr(0, cut)) + " " + shell::quote(tmp.substr(cut)) + ")\n";
}

/// A shell function `ck_pids` printing the pids of this cluster's processes:
/// those whose command line holds "$ck_t/" or "=$ck_t " (Ray passes the temp
/// dir to its daemons: --temp-dir, session and socket paths), and every
/// other process of their session when that session is one the start
/// script recorded in $ck_t/.clusterkit-sessions (`ray start` runs under
/// setsid, and what it starts stays in that session: the client server and
/// the dashboard's forkserver children do not name the temp dir). Both
/// conditions must hold, so neither a recycled session id nor a user's
/// shell session is ever taken for ours. The path reaches awk through the
/// environment, so awk never matches itself.
constexpr char const* kClusterPidsFunction =
    "ck_pids() { ck_s=$(tr '\\n' ' ' < \"$ck_t/.clusterkit-sessions\" 2>/dev/null); "
    // Read before `ps` runs: a reader of the file names the temp dir in its
    // own command line and would be taken for one of ours.
    "ps -eo pid=,sid=,args= 2>/dev/null | ck_t=\"$ck_t\" ck_s=\"$ck_s\" awk '\n"
    "  BEGIN { t = ENVIRON[\"ck_t\"]; n = split(ENVIRON[\"ck_s\"], r, \" \"); for (i = 1; i <= n; i++) recorded[r[i]] = 1 }\n"
    "  { pid = $1; sid = $2; $1 = \"\"; $2 = \"\"; a = $0 \" \"; session[pid] = sid;\n"
    "    if (index(a, t \"/\") || index(a, \"=\" t \" \")) { mine[pid] = 1; if (sid in recorded) ours[sid] = 1 }\n"
    // Ray's own processes in a session our start made, even once nothing
    // left names the temp dir (a straggler outlived `down` once in CI).
    "    else if ((sid in recorded) && (index(a, \"/ray/\") || index(a, \"ray::\"))) mine[pid] = 1 }\n"
    "  END { for (p in session) if ((p in mine) || (session[p] in ours)) print p }'; }\n";

std::string last_lines(std::string_view text, std::size_t n) {
  auto lines = lines_of(text);
  std::vector<std::string> kept;
  for (auto l : lines)
    if (!trim(l).empty()) kept.emplace_back(trim(l));
  if (kept.size() > n) kept.erase(kept.begin(), kept.end() - static_cast<std::ptrdiff_t>(n));
  return join(kept, " | ");
}

}  // namespace

std::string_view to_string(RayRuntimeKind kind) noexcept { return kind == RayRuntimeKind::docker ? "docker" : "bare"; }

std::optional<RayRuntimeKind> ray_runtime_from_string(std::string_view text) noexcept {
  if (text == "docker") return RayRuntimeKind::docker;
  if (text == "bare") return RayRuntimeKind::bare;
  return std::nullopt;
}

std::string_view to_string(RayNodeAction action) noexcept {
  switch (action) {
    case RayNodeAction::keep: return "keep";
    case RayNodeAction::start: return "start";
    case RayNodeAction::replace: return "replace";
    case RayNodeAction::refuse: return "refuse";
  }
  return "refuse";
}

std::string ray_container_name(std::string_view cluster_name) { return "ck-ray-" + std::string(cluster_name); }

std::string ray_temp_dir(RayClusterSpec const& spec) { return "/tmp/ck-ray-" + spec.name; }

void validate(RayClusterSpec const& spec) {
  bool name_ok = !spec.name.empty() && spec.name.size() <= 32 && spec.name.front() != '-' &&
                 std::all_of(spec.name.begin(), spec.name.end(),
                             [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
  if (!name_ok)
    invalid("ray cluster name \"" + spec.name +
            "\" is not valid: use 1 to 32 of a-z, 0-9 and '-' (it names the container ck-ray-NAME on every host)");
  auto port_ok = [](int p) { return p >= 1 && p <= 65535; };
  if (!port_ok(spec.port)) invalid("ray port " + std::to_string(spec.port) + " is not a TCP port (1-65535)");
  if (!port_ok(spec.dashboard_port))
    invalid("ray dashboard port " + std::to_string(spec.dashboard_port) + " is not a TCP port (1-65535)");
  if (spec.port == spec.dashboard_port)
    invalid("ray port and dashboard port are both " + std::to_string(spec.port) + "; give them different ports");
  for (auto const& [k, v] : spec.env)
    if (!shell::is_valid_variable_name(k))
      invalid("ray env: \"" + k + "\" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
  if (spec.ray_command.empty()) invalid("ray_command is empty; give \"ray\" or the path of a venv's bin/ray");
  // A program's name is one line of text: a newline in it could forge a
  // line of the probe's report.
  if (std::any_of(spec.ray_command.begin(), spec.ray_command.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    invalid("ray_command \"" + detail::without_control_characters(spec.ray_command) +
            "\" has control characters (a newline, ESC, ...); give \"ray\" or the path of a venv's bin/ray");
  if (spec.num_cpus && !(*spec.num_cpus > 0 && *spec.num_cpus <= 1000000 && std::isfinite(*spec.num_cpus)))
    invalid("ray num_cpus must be a positive number, at most 1000000, not " + number_text(*spec.num_cpus));
  // Ray refuses a smaller object store ("The configured object store size
  // ... is less than the minimum") only once the node starts.
  if (spec.object_store_memory && *spec.object_store_memory < 75ull * 1024 * 1024)
    invalid("ray object_store_memory must be at least 78643200 bytes (75 MiB, Ray's minimum), not " +
            std::to_string(*spec.object_store_memory));
  if (spec.join_timeout.count() <= 0) invalid("ray join_timeout must be positive");
  if (spec.runtime == RayRuntimeKind::docker) {
    if (spec.image.empty()) invalid("ray image is empty; the docker runtime needs the serving image (the seed's is vllm/vllm-openai)");
    for (auto const& v : spec.volumes) {
      if (v.host_path.empty() || v.host_path.front() != '/' || v.container_path.empty() || v.container_path.front() != '/')
        invalid("ray volume \"" + v.host_path + ":" + v.container_path + "\" must join two absolute paths (HOST:CONTAINER)");
      if (contains(v.host_path, ":") || contains(v.container_path, ":") || contains(v.host_path, ",") ||
          contains(v.container_path, ","))
        invalid("ray volume \"" + v.host_path + ":" + v.container_path + "\" has a ':' or ',' in a path, which docker -v cannot take");
    }
    if (!spec.ipc_host) {
      auto const& s = spec.shm_size;
      std::size_t i = 0;
      while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
      bool ok = i > 0 && (i == s.size() || (i + 1 == s.size() && std::string_view("bkmgBKMG").find(s[i]) != std::string_view::npos));
      if (!ok) invalid("ray shm_size \"" + s + "\" is not a size docker takes (like 10.24g, 512m)");
    }
    if (spec.docker_gpus != "auto" && spec.docker_gpus != "all" && spec.docker_gpus != "none")
      invalid("ray docker_gpus \"" + spec.docker_gpus + "\" must be auto, all or none");
  }
}

RayNodePlan plan_ray_node(RayClusterSpec const& spec, std::string const& host, bool head, std::string const& node_ip,
                          std::string const& interface, std::optional<unsigned> gpus, bool docker_gpus,
                          std::string const& head_ip, bool gpus_simulated) {
  RayNodePlan p;
  p.host = host;
  p.head = head;
  p.node_ip = node_ip;
  p.interface = interface;
  p.gpus = gpus;
  p.gpus_simulated = gpus_simulated;
  p.docker_gpus = spec.runtime == RayRuntimeKind::docker && docker_gpus;

  // The node's identity, where Ray and vLLM read it (vLLM's run_cluster.sh
  // passes the same three); set at start, because Ray's workers never see
  // what is exported later (vllm#6803).
  if (!node_ip.empty()) {
    p.env["VLLM_HOST_IP"] = node_ip;
    p.env["RAY_NODE_IP_ADDRESS"] = node_ip;
    p.env["RAY_OVERRIDE_NODE_IP_ADDRESS"] = node_ip;
  }
  if (!interface.empty()) {
    p.env["NCCL_SOCKET_IFNAME"] = interface;
    p.env["GLOO_SOCKET_IFNAME"] = interface;
  }
  p.env["RAY_USAGE_STATS_ENABLED"] = "0";
  for (auto const& [k, v] : spec.env) p.env[k] = v;

  auto& a = p.ray_start_argv;
  a = {spec.ray_command, "start"};
  if (spec.runtime == RayRuntimeKind::docker) a.push_back("--block");
  if (head) {
    a.push_back("--head");
    a.push_back("--port=" + std::to_string(spec.port));
    // The dashboard runs jobs for anyone who reaches it: loopback only.
    a.push_back("--dashboard-host=127.0.0.1");
    a.push_back("--dashboard-port=" + std::to_string(spec.dashboard_port));
  } else {
    a.push_back("--address=" + head_ip + ":" + std::to_string(spec.port));
  }
  if (!node_ip.empty()) a.push_back("--node-ip-address=" + node_ip);
  a.push_back("--temp-dir=" + ray_temp_dir(spec));
  if (gpus) a.push_back("--num-gpus=" + std::to_string(*gpus));
  if (spec.num_cpus) a.push_back("--num-cpus=" + number_text(*spec.num_cpus));
  if (spec.object_store_memory) a.push_back("--object-store-memory=" + std::to_string(*spec.object_store_memory));
  a.push_back("--disable-usage-stats");
  for (auto const& x : spec.ray_start_args) a.push_back(x);

  // The fingerprint covers what makes the node what it is; the container's
  // label carries it, so `up` twice finds "the same node" and leaves it.
  std::string identity = std::string(to_string(spec.runtime)) + "\n" + spec.image + "\n" + shell::join(a) + "\n";
  for (auto const& [k, v] : p.env) identity += k + "=" + v + "\n";
  if (spec.runtime == RayRuntimeKind::docker) {
    identity += (spec.ipc_host ? std::string("ipc=host") : "shm=" + spec.shm_size) + "\n";
    identity += p.docker_gpus ? "gpus=all\n" : "gpus=none\n";
    for (auto const& v : spec.volumes) identity += "-v " + v.host_path + ":" + v.container_path + (v.read_only ? ":ro" : "") + "\n";
    identity += shell::join(spec.docker_args) + "\n";
  }
  p.fingerprint = sha256_hex(identity).substr(0, 16);

  auto container = ray_container_name(spec.name);
  if (spec.runtime == RayRuntimeKind::docker) {
    auto& d = p.docker_run_argv;
    d = {"docker", "run", "-d", "--name", container, "--network", "host", "--init"};
    if (spec.ipc_host) {
      d.insert(d.end(), {"--ipc", "host"});
    } else {
      d.insert(d.end(), {"--shm-size", spec.shm_size});
    }
    if (p.docker_gpus) d.insert(d.end(), {"--gpus", "all"});
    d.insert(d.end(), {"--label", "clusterkit.ray.cluster=" + spec.name, "--label",
                       "clusterkit.ray.fingerprint=" + p.fingerprint, "--label",
                       std::string("clusterkit.ray.role=") + (head ? "head" : "worker")});
    for (auto const& v : spec.volumes)
      d.insert(d.end(), {"-v", v.host_path + ":" + v.container_path + (v.read_only ? ":ro" : "")});
    for (auto const& [k, v] : p.env) d.insert(d.end(), {"-e", k + "=" + v});
    for (auto const& x : spec.docker_args) d.push_back(x);
    // `exec`: Ray is the container's main process (docker stop reaches it);
    // --init puts a reaper in front of it (Ray's children must be reaped).
    d.insert(d.end(), {"--entrypoint", "/bin/sh", spec.image, "-c", "exec " + shell::join_for_display(a)});
  } else {
    auto tmp = ray_temp_dir(spec);
    std::ostringstream s;
    s << "set -e\n"
      << "mkdir -p " << shell::quote(tmp) << "\n"
      << "cd " << shell::quote(tmp) << "\n";
    for (auto const& [k, v] : p.env) s << k << "=" << shell::quote(v) << "; export " << k << "\n";
    // Python's tempfile (the dashboard's multiprocessing dirs, vLLM's files)
    // lands in the temp dir too, so `down` removes it with the rest.
    s << "TMPDIR=" << shell::quote(tmp) << "; export TMPDIR\n";
    // Detached from our session (setsid) so Ray outlives this command; its
    // own output goes to a log in the temp dir, where `logs` finds it.
    s << "printf '%s\\n' " << shell::quote(p.fingerprint) << " > .clusterkit-fingerprint\n"
      // Emptied here, before the start: the loop below must not find an
      // earlier start's line in it before `ray start`'s own redirection
      // has truncated it.
      << "rm -f .clusterkit-start-rc; : > ray-start.log\n"
      // The session id is recorded so that `down` stops all of it; the
      // session's shell writes `ray start`'s exit status to a file. Nothing
      // of it holds this command's output, so the command may end first.
      << "setsid sh -c 'echo $$ >> .clusterkit-sessions; \"$@\"; echo $? > .clusterkit-start-rc' ray-start "
      << shell::join_for_display(a) << " > ray-start.log 2>&1 < /dev/null &\n"
      // Done as soon as Ray says the node runs: `ray start` prints this once
      // the node is registered, then takes 0.3 to 3 s more to exit (more
      // with many nodes starting on few cores). Ray itself is asked next.
      << "while :; do\n"
      << "  if grep -q 'Ray runtime started' ray-start.log 2>/dev/null; then echo @@ck-ray-started; exit 0; fi\n"
      << "  if [ -s .clusterkit-start-rc ]; then\n"
      << "    ck_rc=$(cat .clusterkit-start-rc)\n"
      << "    if [ \"$ck_rc\" = 0 ]; then echo @@ck-ray-started; exit 0; fi\n"
      << "    echo \"@@ck-ray-failed $ck_rc\"; tail -n 40 ray-start.log; exit 0\n"
      << "  fi\n"
      << "  sleep 0.1\n"
      << "done\n";
    p.bare_start_script = s.str();
  }
  return p;
}

Command ray_runtime_command(RayClusterSpec const& spec, std::string const& script, bool with_stdin) {
  if (spec.runtime == RayRuntimeKind::docker) {
    std::vector<std::string> argv{"docker", "exec"};
    if (with_stdin) argv.push_back("-i");
    argv.insert(argv.end(), {ray_container_name(spec.name), "sh", "-c", script});
    return Command::args(std::move(argv));
  }
  auto dir = program_dir(spec.ray_command);
  if (dir.empty()) return Command::shell(script);
  return Command::shell("PATH=" + shell::quote(dir) + ":\"$PATH\"; export PATH\n" + script);
}

std::vector<RayHost> ray_hosts_from_inventory(std::vector<InventoryHost> const& hosts, std::vector<Host> handles,
                                              std::string const& head) {
  if (hosts.size() != handles.size()) invalid("ray_hosts_from_inventory: one Host handle per inventory host is needed");
  std::vector<RayHost> out;
  std::string chosen = head;
  auto has_role = [](InventoryHost const& h, std::string_view r) {
    return std::find(h.roles.begin(), h.roles.end(), r) != h.roles.end();
  };
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    auto const& h = hosts[i];
    bool const gpu_role = has_role(h, "head") || has_role(h, "worker") || has_role(h, "gpu");
    auto declared = declared_gpus(h);
    bool const only_storage = !gpu_role && (has_role(h, "nas") || has_role(h, "download")) &&
                              !(declared && declared->count > 0) && h.spec.name != head;
    if (only_storage) continue;
    RayHost r{handles[i], false, std::nullopt, false};
    if (declared && declared->count > 0) {
      r.gpus = declared->count;
      r.gpus_simulated = declared->simulated;
    }
    if (chosen.empty() && has_role(h, "head")) chosen = h.spec.name;
    out.push_back(std::move(r));
  }
  if (out.empty())
    invalid("no host for Ray: the selected hosts are all storage or download hosts (roles nas/download); select the GPU hosts");
  if (chosen.empty()) chosen = out.front().host.name();
  bool found = false;
  for (auto& r : out)
    if (r.host.name() == chosen) r.head = found = true;
  if (!found) {
    std::vector<std::string> names;
    for (auto const& r : out) names.push_back(r.host.name());
    invalid("the head \"" + chosen + "\" is not among the Ray hosts (" + join(names) + ")");
  }
  return out;
}

RayClusterSpec ray_spec_from_vars(json const& vars, RayClusterSpec base) {
  if (!vars.is_object()) return base;
  auto bad = [](std::string const& field, std::string const& want) {
    throw Error(make_error_code(errc::inventory_invalid), "inventory vars." + field + ": " + want);
  };
  auto str = [&](char const* key) -> std::optional<std::string> {
    auto it = vars.find(key);
    if (it == vars.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) bad(key, "must be a string");
    return it->get<std::string>();
  };
  if (auto r = str("runtime")) {
    auto k = ray_runtime_from_string(*r);
    if (!k) bad("runtime", "\"" + *r + "\" is not a runtime; use docker or bare");
    base.runtime = *k;
  }
  if (auto v = str("runtime_image")) base.image = *v;
  if (auto v = str("shm_size")) base.shm_size = *v;
  if (auto it = vars.find("ipc_host"); it != vars.end()) {
    if (!it->is_boolean()) bad("ipc_host", "must be true or false");
    base.ipc_host = it->get<bool>();
  }
  if (auto it = vars.find("ray_port"); it != vars.end()) {
    if (!it->is_number_integer()) bad("ray_port", "must be a port number");
    base.port = it->get<int>();
  }
  if (auto v = str("serve_venv")) {
    if (v->empty() || v->front() != '/') bad("serve_venv", "must be an absolute path (a venv with Ray and vLLM)");
    auto venv = *v;
    while (venv.size() > 1 && venv.back() == '/') venv.pop_back();
    base.ray_command = venv + "/bin/ray";
    bool mounted = false;
    for (auto const& m : base.volumes) mounted = mounted || m.container_path == venv;
    if (!mounted) base.volumes.push_back({venv, venv, true});
  }
  if (auto it = vars.find("ray_env"); it != vars.end()) {
    if (!it->is_object()) bad("ray_env", "must be a map of NAME: value");
    for (auto e = it->begin(); e != it->end(); ++e) {
      if (e->is_string()) base.env[e.key()] = e->get<std::string>();
      else if (e->is_number() || e->is_boolean()) base.env[e.key()] = e->dump();
      else bad("ray_env." + e.key(), "must be a string or a number");
    }
  }
  return base;
}

// ---------------------------------------------------------------------------
// Probe

std::string ray_route_script(std::string const& head_address) {
  std::ostringstream s;
  s << "LC_ALL=C; export LC_ALL\n"
    // How this host reaches the head: the source address and interface of
    // the route (the head's own address is a local route; its interface is
    // the one holding it).
    << "ck_head=" << shell::quote(head_address) << "\n"
    << "ck_ip=$(getent ahostsv4 \"$ck_head\" 2>/dev/null | awk 'NR==1{print $1}')\n"
    << "[ -n \"$ck_ip\" ] || ck_ip=$ck_head\n"
    << "ck_route=$(ip -o route get \"$ck_ip\" 2>/dev/null | head -n 1)\n"
    << "ck_src=$(printf '%s\\n' \"$ck_route\" | awk '{for(i=1;i<NF;i++) if($i==\"src\") print $(i+1)}')\n"
    << "ck_dev=$(printf '%s\\n' \"$ck_route\" | awk '{for(i=1;i<NF;i++) if($i==\"dev\") print $(i+1)}')\n"
    << "if [ \"$ck_dev\" = lo ] && [ -n \"$ck_src\" ]; then\n"
    << "  ck_dev=$(ip -o -4 addr show 2>/dev/null | awk -v a=\"$ck_src\" '{split($4,p,\"/\"); if (p[1]==a && $2!=\"lo\") {print $2; exit}}')\n"
    << "fi\n"
    << "echo \"@@ck-ray route ${ck_src:--} ${ck_dev:--} $ck_ip\"\n"
    << "if command -v nvidia-smi >/dev/null 2>&1; then echo \"@@ck-ray gpus $(nvidia-smi -L 2>/dev/null | grep -c '^GPU')\"; "
    << "else echo '@@ck-ray gpus none'; fi\n";
  return s.str();
}

/// The venv whose files say the node's Python and Ray (venv_versions_script):
/// docker, one mounted from the host; bare, the one of the ray program's
/// Python. "" when there is none (an image's own Python, a bare `python3`).
std::string versions_venv_of(RayClusterSpec const& spec) {
  auto const py = python_for(spec);
  if (spec.runtime == RayRuntimeKind::docker) return host_venv_of(spec, py);
  return py.find('/') == std::string::npos ? std::string() : program_dir(py) + "/..";
}

std::string ray_probe_script(RayClusterSpec const& spec, std::string const& head_address, bool is_head) {
  auto container = shell::quote(ray_container_name(spec.name));
  auto tmp = ray_temp_dir(spec);
  std::ostringstream s;
  s << ray_route_script(head_address);
  if (is_head) {
    // Something already listening on the GCS port? /proc/net/tcp{,6}:
    // state 0A is LISTEN; the local port is hex after the colon.
    char hexport[8];
    std::snprintf(hexport, sizeof hexport, "%04X", static_cast<unsigned>(spec.port));
    s << "if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4==\"0A\"{split($2,a,\":\"); if (a[2]==\"" << hexport
      << "\") f=1} END{exit !f}'; then\n"
      << "  ck_owner=$(ss -ltnpH \"sport = :" << spec.port << "\" 2>/dev/null | head -n 1 | sed -n 's/.*users:((\"\\([^\"]*\\)\".*/\\1/p')\n"
      << "  echo \"@@ck-ray port-in-use ${ck_owner:-unknown}\"\n"
      << "fi\n";
  }
  auto py = python_for(spec);
  std::string versions = "import sys\ntry:\n    import importlib.metadata as m\n    v = m.version('ray')\nexcept Exception:\n    v = '-'\nprint('@@ck-ray versions', sys.version.split()[0], v)\n";
  auto const venv = versions_venv_of(spec);
  auto const versions_from_files = venv_versions_script(venv.empty() ? std::string("/nonexistent") : shell::quote(venv));
  if (spec.runtime == RayRuntimeKind::docker) {
    s << "if ! command -v docker >/dev/null 2>&1; then echo '@@ck-ray docker-error docker is not installed'; exit 0; fi\n"
      << "if ! ck_dv=$(docker version --format '{{.Server.Version}}' 2>&1); then printf '@@ck-ray docker-error %s\\n' \"$(printf '%s' \"$ck_dv\" | tail -n 1)\"; exit 0; fi\n"
      << "echo \"@@ck-ray docker $ck_dv\"\n"
      << "if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then echo '@@ck-ray nvidia-runtime yes'; fi\n"
      << "if docker image inspect " << shell::quote(spec.image) << " >/dev/null 2>&1; then echo '@@ck-ray image yes'; else echo '@@ck-ray image no'; fi\n"
      << "ck_state=$(docker inspect -f '{{.State.Status}} {{index .Config.Labels \"clusterkit.ray.fingerprint\"}}' " << container
      << " 2>/dev/null) && echo \"@@ck-ray container $ck_state\"\n"
      // Versions inside the image, without starting Ray: importlib.metadata
      // reads the installed version without importing the package.
      // With the venv mounted from the host, its files say the versions
      // (starting a container or exec'ing Python in one costs ~0.5-1 s).
      << versions_from_files
      << "if [ -n \"$ck_pv\" ] && [ -n \"$ck_rv\" ]; then\n"
      << "  echo \"@@ck-ray versions $ck_pv $ck_rv\"\n"
      << "elif [ \"${ck_state%% *}\" = running ]; then\n"
      << "  docker exec " << container << " " << shell::quote(py) << " -c " << shell::quote(versions) << " 2>/dev/null\n"
      << "elif docker image inspect " << shell::quote(spec.image) << " >/dev/null 2>&1; then\n"
      << "  docker run --rm --network none --entrypoint " << shell::quote(py);
    for (auto const& v : spec.volumes)
      s << " -v " << shell::quote(v.host_path + ":" + v.container_path + (v.read_only ? ":ro" : ""));
    s << " " << shell::quote(spec.image) << " -c " << shell::quote(versions) << " 2>&1 | tail -n 1\n"
      << "fi\n";
  } else {
    s << "ck_ray=$(command -v " << shell::quote(spec.ray_command) << " 2>/dev/null)\n"
      // The program's name is quoted whole (it is the user's: a quote in
      // it must not end ours).
      << "if [ -z \"$ck_ray\" ]; then printf '%s\\n' " << shell::quote("@@ck-ray ray-error " + spec.ray_command + " not found")
      << "; else echo \"@@ck-ray ray $ck_ray\"; "
      // A venv says both versions in files (see venv_versions_script);
      // without one, Python is asked.
      << versions_from_files
      << "if [ -n \"$ck_pv\" ] && [ -n \"$ck_rv\" ]; then echo \"@@ck-ray versions $ck_pv $ck_rv\"; else "
      << shell::quote(py) << " -c " << shell::quote(versions) << " 2>/dev/null; fi; fi\n"
      // This cluster's processes: a cmdline naming our temp dir.
      << temp_dir_variable(spec) << kClusterPidsFunction
      << "for ck_p in $(ck_pids); do echo \"@@ck-ray pid $ck_p\"; done\n"
      << "if [ -f \"$ck_t/.clusterkit-fingerprint\" ]; then echo \"@@ck-ray bare-fingerprint $(cat \"$ck_t/.clusterkit-fingerprint\")\"; fi\n";
  }
  s << "echo @@ck-ray-end\n";
  return s.str();
}

RayNodeProbe parse_ray_probe(std::string_view host, std::string_view output) {
  RayNodeProbe p;
  p.host = std::string(host);
  bool ended = false;
  for (auto line : lines_of(output)) {
    if (line == "@@ck-ray-end") {
      ended = true;
      continue;
    }
    auto w = split_ws(line, 3);
    if (w.size() < 2 || w[0] != "@@ck-ray") continue;
    auto key = w[1];
    std::string rest = w.size() > 2 ? std::string(w[2]) : std::string();
    if (key == "route") {
      auto r = split_ws(rest);
      if (r.size() >= 2) {
        if (r[0] != "-") p.node_ip = std::string(r[0]);
        if (r[1] != "-") p.interface = std::string(r[1]);
      }
    } else if (key == "gpus") {
      p.nvidia_smi = rest != "none";
      if (p.nvidia_smi) p.gpus_found = static_cast<unsigned>(detail::to_long(rest).value_or(0));
    } else if (key == "port-in-use") {
      p.port_in_use = true;
      p.port_owner = rest == "unknown" ? "" : rest;
    } else if (key == "docker") {
      p.docker = true;
    } else if (key == "docker-error") {
      p.docker_error = rest;
    } else if (key == "nvidia-runtime") {
      p.docker_nvidia_runtime = true;
    } else if (key == "image") {
      p.image_present = rest == "yes";
    } else if (key == "container") {
      auto r = split_ws(rest);
      if (!r.empty()) p.container_state = std::string(r[0]);
      if (r.size() > 1) p.container_fingerprint = std::string(r[1]);
    } else if (key == "versions") {
      auto r = split_ws(rest);
      if (!r.empty()) p.python_version = std::string(r[0]);
      if (r.size() > 1 && r[1] != "-") p.ray_version = std::string(r[1]);
    } else if (key == "ray") {
      p.ray_found = true;
    } else if (key == "ray-error") {
      p.ray_error = rest;
    } else if (key == "pid") {
      if (auto v = detail::to_long(rest); v && *v > 0) p.cluster_pids.push_back(static_cast<int>(*v));
    } else if (key == "bare-fingerprint") {
      p.bare_fingerprint = rest;
    }
  }
  if (!ended) malformed(std::string(host) + ": the Ray probe did not run to its end (its output was cut off)");
  return p;
}

std::string ray_stop_script(RayClusterSpec const& spec) {
  std::ostringstream s;
  if (spec.runtime == RayRuntimeKind::docker) {
    auto c = shell::quote(ray_container_name(spec.name));
    s << "if docker inspect " << c << " >/dev/null 2>&1; then\n"
      << "  docker stop -t 10 " << c << " >/dev/null 2>&1 || true\n"
      << "  if ck_e=$(docker rm -f " << c << " 2>&1 >/dev/null); then echo '@@ck-ray-removed container " << ray_container_name(spec.name)
      << "'; else printf '@@ck-ray-error %s\\n' \"$ck_e\"; fi\n"
      << "else echo '@@ck-ray-removed nothing'; fi\n";
    return s.str();
  }
  auto tmp = ray_temp_dir(spec);
  s << temp_dir_variable(spec) << kClusterPidsFunction
    << "ck_n=$(ck_pids | wc -l)\n"
    // The raylet first: SIGTERM to every Ray process at once leaves the
    // raylet, the GCS and an agent waiting on each other until the SIGKILL
    // 5 s later; with the raylet gone (0.1-0.3 s) the rest exit at once
    // (bench/RESULTS.md, "Ray cluster"). The autoscaler's monitor ignores
    // SIGTERM: SIGKILL it straight away.
    << "ck_named() { for ck_p in $(ck_pids); do case \"$(cat /proc/$ck_p/comm 2>/dev/null) $(tr '\\000' ' ' < /proc/$ck_p/cmdline 2>/dev/null)\" in $1) echo $ck_p;; esac; done; }\n"
    << "ck_named 'raylet *' | xargs -r kill -TERM 2>/dev/null\n"
    << "ck_i=0; while [ -n \"$(ck_named 'raylet *')\" ] && [ $ck_i -lt 20 ]; do sleep 0.05; ck_i=$((ck_i + 1)); done\n"
    << "ck_named '*/monitor.py *' | xargs -r kill -KILL 2>/dev/null\n"
    << "ck_pids | xargs -r kill -TERM 2>/dev/null\n"
    << "ck_i=0; while [ -n \"$(ck_pids)\" ] && [ $ck_i -lt 100 ]; do sleep 0.05; ck_i=$((ck_i + 1)); done\n"
    << "ck_pids | xargs -r kill -KILL 2>/dev/null\n"
    << "ck_i=0; while [ -n \"$(ck_pids)\" ] && [ $ck_i -lt 50 ]; do sleep 0.1; ck_i=$((ck_i + 1)); done\n"
    << "rm -rf \"$ck_t\"\n"
    << "if [ \"$ck_n\" -gt 0 ]; then echo \"@@ck-ray-removed $ck_n Ray processes and " << tmp
    << "\"; else echo '@@ck-ray-removed nothing'; fi\n";
  return s.str();
}

std::string ray_node_state_script(RayClusterSpec const& spec) {
  std::ostringstream s;
  // The node's Python and Ray, when a venv's files say them (no Python
  // starts: status stays one quick command per host); else as the node
  // was started with them (ray_start_script kept them): an image's own
  // Python is not asked (a container start or exec costs 0.5-1 s).
  auto const venv = versions_venv_of(spec);
  s << "ck_vseen=\n";
  if (!venv.empty())
    s << venv_versions_script(shell::quote(venv))
      << "if [ -n \"$ck_pv\" ] && [ -n \"$ck_rv\" ]; then echo \"@@ck-ray versions $ck_pv $ck_rv\"; ck_vseen=1; fi\n";
  if (spec.runtime == RayRuntimeKind::docker) {
    // The state, and the versions the node was started with (a label set
    // at `docker run`): what an image's own Python says without a start.
    s << "ck_i=$(docker inspect -f '{{.State.Status}}|{{index .Config.Labels \"clusterkit.ray.versions\"}}' "
      << shell::quote(ray_container_name(spec.name)) << " 2>/dev/null) || ck_i=absent\n"
      << "echo \"@@ck-ray-state ${ck_i%%|*}\"\n"
      << "ck_lv=${ck_i#*|}\n"
      << "case \"$ck_i\" in *'|'*) if [ -z \"$ck_vseen\" ] && [ -n \"$ck_lv\" ] && [ \"$ck_lv\" != '<no value>' ]; then "
         "echo \"@@ck-ray versions $ck_lv\"; fi;; esac\n";
    return s.str();
  }
  // No `exit`: status() runs more after this in the same script.
  s << temp_dir_variable(spec) << kClusterPidsFunction << "ck_state=absent\n"
    << "for ck_p in $(ck_pids); do case \"$(tr '\\000' ' ' < /proc/$ck_p/cmdline 2>/dev/null)\" in *raylet*) "
    << "ck_state=running; break;; esac; done\n"
    << "echo \"@@ck-ray-state $ck_state\"\n"
    << "if [ -z \"$ck_vseen\" ] && [ -f \"$ck_t/.clusterkit-versions\" ]; then echo \"@@ck-ray versions $(head -n 1 \"$ck_t/.clusterkit-versions\")\"; fi\n";
  return s.str();
}

std::string ray_logs_script(RayClusterSpec const& spec, unsigned tail) {
  std::string n = tail == 0 ? std::string("+1") : std::to_string(tail);
  auto tmp = ray_temp_dir(spec);
  std::string ray_logs = "for f in " + shell::quote(tmp) + "/session_latest/logs/raylet.out " + shell::quote(tmp) +
                         "/session_latest/logs/gcs_server.out; do [ -f \"$f\" ] && { echo \"==> $f <==\"; tail -n " + n +
                         " \"$f\"; }; done; true";
  std::ostringstream s;
  if (spec.runtime == RayRuntimeKind::docker) {
    auto c = shell::quote(ray_container_name(spec.name));
    s << "if ! docker inspect " << c << " >/dev/null 2>&1; then echo 'no container " << ray_container_name(spec.name)
      << " on this host'; exit 0; fi\n"
      << "echo '==> docker logs " << ray_container_name(spec.name) << " <=='\n"
      << "docker logs --tail " << (tail == 0 ? std::string("all") : std::to_string(tail)) << " " << c << " 2>&1\n"
      << "docker exec " << c << " sh -c " << shell::quote(ray_logs) << " 2>/dev/null || true\n";
  } else {
    s << "if [ -f " << shell::quote(tmp + "/ray-start.log") << " ]; then echo '==> " << tmp << "/ray-start.log <=='; tail -n " << n
      << " " << shell::quote(tmp + "/ray-start.log") << "; else echo 'no Ray node of this cluster on this host'; fi\n"
      << ray_logs << "\n";
  }
  return s.str();
}

std::string ray_start_script(RayClusterSpec const& spec, RayNodePlan const& plan, bool replace, std::string const& versions) {
  std::ostringstream s;
  if (spec.runtime == RayRuntimeKind::docker) {
    auto c = shell::quote(ray_container_name(spec.name));
    auto argv = plan.docker_run_argv;
    if (!versions.empty())
      if (auto at = std::find(argv.begin(), argv.end(), "--entrypoint"); at != argv.end())
        argv.insert(at, {"--label", "clusterkit.ray.versions=" + versions});
    s << "docker rm -f " << c << " >/dev/null 2>&1 || true\n"
      << "if ! ck_out=$(" << shell::join(argv) << " 2>&1); then echo '@@ck-ray-failed docker run'; "
      << "printf '%s\\n' \"$ck_out\"; exit 0; fi\n"
      // Ray prints "Ray runtime started." once the node is up (head: GCS
      // and raylet; worker: joined). 0.1 s polls; the command's own
      // timeout bounds the loop.
      << "while :; do\n"
      << "  ck_log=$(docker logs " << c << " 2>&1)\n"
      << "  case \"$ck_log\" in *'Ray runtime started'*) echo @@ck-ray-started; exit 0;; esac\n"
      << "  ck_st=$(docker inspect -f '{{.State.Status}}' " << c << " 2>/dev/null || echo gone)\n"
      << "  if [ \"$ck_st\" != running ] && [ \"$ck_st\" != created ]; then echo \"@@ck-ray-failed container $ck_st\"; "
      << "printf '%s\\n' \"$ck_log\" | tail -n 40; exit 0; fi\n"
      << "  sleep 0.1\n"
      << "done\n";
  } else {
    // A replaced node is stopped by its own command first (ray_stop_script):
    // this script names the temp dir in full and would match itself.
    (void)replace;
    // The temp dir through $ck_t (split): a command line naming it in full
    // would count as one of the cluster's processes (ck_pids).
    s << temp_dir_variable(spec);
    if (!versions.empty())
      s << "mkdir -p \"$ck_t\" && printf '%s\\n' " << shell::quote(versions) << " > \"$ck_t/.clusterkit-versions\"\n";
    else
      s << "rm -f \"$ck_t/.clusterkit-versions\"\n";  // none known now: an older start's would mislead
    s << plan.bare_start_script;
  }
  return s.str();
}

// ---------------------------------------------------------------------------
// Ray's reports

std::optional<double> parse_ray_amount(std::string_view text) {
  text = trim(text);
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  auto number = detail::to_double(text.substr(0, i));
  if (!number) return std::nullopt;
  auto unit = text.substr(i);
  double scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "KiB") scale = 1024.0;
  else if (unit == "MiB") scale = 1024.0 * 1024;
  else if (unit == "GiB") scale = 1024.0 * 1024 * 1024;
  else if (unit == "TiB") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  else return std::nullopt;
  return *number * scale;
}

namespace {
struct UsageLine {
  std::string name;
  RayResource amount;
  std::string note;
};
// " 0.0/4.0 GPU (4.0 used of 4.0 reserved in placement groups)",
// " 0B/40.13GiB memory": `ray status`'s way, also the dashboard's per node.
std::optional<UsageLine> parse_usage_line(std::string_view line) {
  auto w = split_ws(trim(line), 3);
  if (w.size() < 2) return std::nullopt;
  auto slash = w[0].find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto used = parse_ray_amount(w[0].substr(0, slash));
  auto total = parse_ray_amount(w[0].substr(slash + 1));
  if (!used || !total) return std::nullopt;
  return UsageLine{std::string(w[1]), RayResource{*used, *total}, w.size() == 3 ? std::string(w[2]) : std::string()};
}
}  // namespace

std::map<std::string, std::map<std::string, RayResource>> parse_ray_node_usage(std::string_view text) {
  if (!detail::json_nesting_within(text, 8)) malformed("Ray's per-node usage is nested deeper than 8 levels");
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    malformed("Ray's per-node usage is not a JSON object: " + detail::first_line(text, 120));
  std::map<std::string, std::map<std::string, RayResource>> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it->is_string()) continue;
    auto& node = out[it.key()];
    for (auto line : lines_of(it->get_ref<std::string const&>()))
      if (auto u = parse_usage_line(line)) node[u->name] = u->amount;
  }
  return out;
}

RayStatusText parse_ray_status(std::string_view text) {
  RayStatusText st;
  enum class Section { none, active, pending, failures, usage, demands, requests } section = Section::none;
  bool saw_header = false;
  for (auto raw : lines_of(text)) {
    auto line = trim(raw);
    if (line.empty() || line.starts_with("---")) continue;
    if (line.starts_with("======== Autoscaler status") || line == "Node status" || line == "Resources") {
      saw_header = true;
      continue;
    }
    if (line == "Active:") { section = Section::active; continue; }
    if (line == "Pending:") { section = Section::pending; continue; }
    if (line == "Recent failures:") { section = Section::failures; continue; }
    if (line == "Total Usage:" || line == "Usage:") { section = Section::usage; saw_header = true; continue; }
    if (line == "Pending Demands:") { section = Section::demands; continue; }
    if (line == "From request_resources:" || line == "Total Constraints:" || line == "Total Demands:") {
      section = Section::requests;
      continue;
    }
    if (line.starts_with("(") && line.ends_with(")")) continue;  // "(no pending nodes)" etc.
    switch (section) {
      case Section::active:
      case Section::pending:
      case Section::failures: {
        // " 1 node_c02bf94a..." (count, then the node id or type).
        auto w = split_ws(line, 2);
        std::string id(w.size() == 2 ? w[1] : line);
        if (id.starts_with("node_")) id = id.substr(5);
        (section == Section::active ? st.active : section == Section::pending ? st.pending : st.failed).push_back(id);
        break;
      }
      case Section::usage: {
        auto u = parse_usage_line(line);
        if (!u) break;
        st.usage[u->name] = u->amount;
        if (!u->note.empty()) st.usage_notes[u->name] = u->note;
        break;
      }
      case Section::demands: st.pending_demands.emplace_back(line); break;
      default: break;
    }
  }
  if (!saw_header) malformed("not the output of `ray status` (no \"Node status\" or \"Resources\" section)");
  return st;
}

std::vector<RayNodeState> parse_ray_nodes_json(std::string_view text) {
  if (!detail::json_nesting_within(text, 32)) malformed("Ray's node list is nested deeper than 32 levels");
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) malformed("Ray's node list is not JSON: " + detail::first_line(text, 120));
  // {"result": true, "data": {"result": {"result": [ ...nodes... ]}}}
  json const* list = nullptr;
  if (auto d = j.find("data"); d != j.end() && d->is_object())
    if (auto r = d->find("result"); r != d->end() && r->is_object())
      if (auto n = r->find("result"); n != r->end() && n->is_array()) list = &*n;
  if (!list) {
    std::string msg = j.value("msg", std::string());
    malformed("Ray's node list has no data.result.result array" + (msg.empty() ? std::string() : " (Ray said: " + msg + ")"));
  }
  std::vector<RayNodeState> out;
  for (auto const& n : *list) {
    if (!n.is_object()) continue;
    RayNodeState s;
    auto str = [&](char const* key) {
      auto it = n.find(key);
      return it != n.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    s.node_id = str("node_id");
    s.node_ip = str("node_ip");
    s.state = str("state");
    s.state_message = str("state_message");
    if (auto h = n.find("is_head_node"); h != n.end() && h->is_boolean()) s.is_head = h->get<bool>();
    if (auto r = n.find("resources_total"); r != n.end() && r->is_object())
      for (auto it = r->begin(); it != r->end(); ++it)
        if (it->is_number()) s.resources_total[it.key()] = it->get<double>();
    out.push_back(std::move(s));
  }
  return out;
}

std::string ray_status_script(RayClusterSpec const& spec, bool with_ray_status) {
  // Runs in the cluster's runtime on the head. The dashboard answers in
  // milliseconds; `ray status` (a Python start and a GCS round trip) is the
  // fallback when the dashboard is not there (ray without [default]).
  std::string program =
      "import json, subprocess, sys, urllib.request\n"
      "base = 'http://127.0.0.1:" + std::to_string(spec.dashboard_port) + "'\n"
      "def get(path):\n"
      "    with urllib.request.urlopen(base + path, timeout=5) as r:\n"
      "        return r.read().decode('utf-8', 'replace')\n"
      "try:\n"
      "    print('@@ck-ray-nodes ' + json.dumps(json.loads(get('/api/v0/nodes?detail=1'))))\n"
      "    try:\n"
      "        print('@@ck-ray-version ' + json.loads(get('/api/version')).get('ray_version', ''))\n"
      "    except Exception:\n"
      "        pass\n"
      "    print('@@ck-ray-source dashboard')\n"
      "    need_status = False\n"
      "    if " + std::string(with_ray_status ? "True" : "False") + ":\n"
      // Used/total per node: the dashboard's node view has `ray status`'s
      // usage lines for every node (autoscaler v1 and v2 alike).
      "        try:\n"
      "            summary = json.loads(get('/nodes?view=summary'))\n"
      "            print('@@ck-ray-node-usage ' + json.dumps((summary.get('data') or {}).get('nodeLogicalResources') or {}))\n"
      "        except Exception:\n"
      "            pass\n"
      // The autoscaler's text, as `ray status` prints it, without starting
      // a Python with Ray in it (a second or more).
      "        st = json.loads(get('/api/cluster_status?format=1'))\n"
      "        text = ((st.get('data') or {}).get('clusterStatus') or '')\n"
      "        if text:\n"
      "            print('@@ck-ray-status-begin')\n"
      "            print(text)\n"
      "            print('@@ck-ray-status-end 0')\n"
      "        else:\n"
      "            need_status = True\n"
      "except Exception as e:\n"
      "    print('@@ck-ray-dashboard-error ' + str(e).replace('\\n', ' '))\n"
      "    need_status = True\n"
      "try:\n"
      "    if not need_status:\n"
      "        raise SystemExit(0)\n"
      "    r = subprocess.run([" + json(spec.ray_command).dump() + ", 'status', '--address', '127.0.0.1:" +
      std::to_string(spec.port) + "'], capture_output=True, text=True, timeout=15)\n"
      "    print('@@ck-ray-status-begin')\n"
      "    sys.stdout.write(r.stdout)\n"
      "    print('@@ck-ray-status-end ' + str(r.returncode))\n"
      "    if r.returncode != 0:\n"
      "        print('@@ck-ray-status-error ' + (r.stderr.strip().splitlines() or [''])[-1])\n"
      "except Exception as e:\n"
      "    print('@@ck-ray-status-error ' + str(e).replace('\\n', ' '))\n";
  return "python3 -c " + shell::quote(program) + "\n";
}

RayReport parse_ray_report(std::string_view output) {
  RayReport r;
  std::string status_text;
  bool in_status = false;
  std::string dashboard_error, status_error;
  std::map<std::string, std::map<std::string, RayResource>> node_usage;
  for (auto line : lines_of(output)) {
    if (in_status) {
      if (line.starts_with("@@ck-ray-status-end")) {
        in_status = false;
        continue;
      }
      status_text += std::string(line) + "\n";
      continue;
    }
    if (line.starts_with("@@ck-ray-nodes ")) {
      try {
        r.nodes = parse_ray_nodes_json(line.substr(15));
        r.source = "dashboard";
      } catch (Error const& e) {
        dashboard_error = e.what();
      }
    } else if (line.starts_with("@@ck-ray-node-usage ")) {
      try {
        node_usage = parse_ray_node_usage(line.substr(20));
      } catch (Error const&) {
        // Only the per-node figures are lost; the rest stands.
      }
    } else if (line.starts_with("@@ck-ray-version ")) {
      r.ray_version = std::string(trim(line.substr(17)));
    } else if (line.starts_with("@@ck-ray-dashboard-error ")) {
      dashboard_error = std::string(line.substr(25));
    } else if (line == "@@ck-ray-status-begin") {
      in_status = true;
    } else if (line.starts_with("@@ck-ray-status-error ")) {
      status_error = std::string(line.substr(22));
    }
  }
  for (auto& n : r.nodes)
    if (auto it = node_usage.find(n.node_id); it != node_usage.end()) n.usage = it->second;
  if (!status_text.empty()) {
    try {
      r.status = parse_ray_status(status_text);
      if (r.source.empty()) r.source = "ray status";
    } catch (Error const& e) {
      if (status_error.empty()) status_error = e.what();
    }
  }
  if (r.source.empty()) {
    r.error = !status_error.empty() ? status_error : !dashboard_error.empty() ? dashboard_error : "Ray did not answer";
  }
  return r;
}

// ---------------------------------------------------------------------------
// Decisions

std::vector<RayNodeDecision> decide_ray_nodes(RayClusterSpec const& spec, std::vector<RayNodePlan> const& plans,
                                              std::vector<RayNodeProbe> const& probes) {
  std::vector<RayNodeDecision> out(plans.size());
  // Versions must agree across nodes (#5); the head's are the reference.
  std::string ref_python, ref_ray, ref_host;
  for (std::size_t i = 0; i < plans.size() && i < probes.size(); ++i)
    if (!probes[i].python_version.empty() && ref_python.empty()) {
      ref_python = probes[i].python_version;
      ref_ray = probes[i].ray_version;
      ref_host = plans[i].host;
    }
  for (std::size_t i = 0; i < plans.size(); ++i) {
    auto const& plan = plans[i];
    auto& d = out[i];
    d.host = plan.host;
    if (i >= probes.size()) {
      d.action = RayNodeAction::refuse;
      d.reason = plan.host + ": not probed";
      d.refusal = make_error_code(errc::invalid_argument);
      continue;
    }
    auto const& p = probes[i];
    auto refuse = [&](errc code, std::string why) {
      d.action = RayNodeAction::refuse;
      d.reason = std::move(why);
      d.refusal = make_error_code(code);
    };
    if (plan.node_ip.empty()) {
      refuse(errc::invalid_argument, plan.host + ": cannot tell which address it reaches the head by (`ip route get` gave "
                                                 "nothing); check the head's address in the inventory and that " +
                                         plan.host + " has a route to it");
      continue;
    }
    bool ours_running = false, same = false;
    if (spec.runtime == RayRuntimeKind::docker) {
      if (!p.docker) {
        refuse(errc::program_missing,
               plan.host + ": Docker does not answer" + (p.docker_error.empty() ? "" : " (" + p.docker_error + ")") +
                   "; install Docker (apt-get install docker.io, or docker-ce) and start it, or use the bare runtime");
        continue;
      }
      ours_running = p.container_state == "running";
      same = ours_running && p.container_fingerprint == plan.fingerprint;
      if (!p.image_present && !same) {
        refuse(errc::program_missing, plan.host + ": the image " + spec.image + " is not on this host; run `docker pull " +
                                          spec.image + "` there (or `docker save | docker load` it from a host that has it)");
        continue;
      }
      if (plan.docker_gpus && !p.docker_nvidia_runtime && !same) {
        refuse(errc::program_missing,
               plan.host + ": Docker cannot give containers GPUs (no nvidia runtime registered): `docker run --gpus all` "
                           "would fail with `could not select device driver \"\" with capabilities: [[gpu]]`. Install the "
                           "NVIDIA container toolkit and restart Docker (`nvidia-ctk runtime configure --runtime=docker && "
                           "systemctl restart docker`), or set docker_gpus: none for hosts without GPUs");
        continue;
      }
    } else {
      if (!p.ray_found) {
        refuse(errc::program_missing,
               plan.host + ": " + (p.ray_error.empty() ? spec.ray_command + " not found" : p.ray_error) +
                   "; install Ray there (pip install 'ray[default]') or give ray_command the path of a venv's bin/ray");
        continue;
      }
      ours_running = !p.cluster_pids.empty();
      same = ours_running && p.bare_fingerprint == plan.fingerprint;
    }
    if (!ref_python.empty() && !p.python_version.empty() && (p.python_version != ref_python || p.ray_version != ref_ray)) {
      refuse(errc::invalid_argument, plan.host + " has Python " + p.python_version + " and Ray " +
                                         (p.ray_version.empty() ? "(none)" : p.ray_version) + ", but " + ref_host +
                                         " has Python " + ref_python + " and Ray " + (ref_ray.empty() ? "(none)" : ref_ray) +
                                         "; Ray refuses nodes whose versions differ (\"Version mismatch\"): install the "
                                         "same versions (the same image or venv) on every host");
      continue;
    }
    if (p.ray_version.empty() && !p.python_version.empty()) {
      refuse(errc::program_missing, plan.host + ": Ray is not installed in " +
                                        (spec.runtime == RayRuntimeKind::docker ? "the image " + spec.image : "the Python of " + spec.ray_command) +
                                        " (Python " + p.python_version + "); install ray[default] there");
      continue;
    }
    if (plan.head && p.port_in_use && !ours_running) {
      refuse(errc::invalid_argument, plan.host + ": port " + std::to_string(spec.port) + " is already taken" +
                                         (p.port_owner.empty() ? "" : " by " + p.port_owner) +
                                         "; Ray's head needs it for its GCS. Stop that program, or give the cluster another port");
      continue;
    }
    if (same) {
      d.action = RayNodeAction::keep;
      d.reason = plan.host + ": Ray node " +
                 (spec.runtime == RayRuntimeKind::docker ? "container " + ray_container_name(spec.name) : std::string("processes")) +
                 " already up as planned";
    } else if (ours_running || !p.container_state.empty() || !p.cluster_pids.empty()) {
      d.action = RayNodeAction::replace;
      std::string what = spec.runtime == RayRuntimeKind::docker
                             ? "container " + ray_container_name(spec.name) + " (" + p.container_state + ")"
                             : std::to_string(p.cluster_pids.size()) + " Ray processes";
      d.reason = plan.host + ": replacing its " + what + ": " +
                 (ours_running ? "it was started with other settings" : "it is not running");
    } else {
      d.action = RayNodeAction::start;
      d.reason = plan.host + ": starting";
    }
  }
  // A cluster is replaced as a whole when its head is: workers joined to an
  // old head would be left pointing at nothing.
  if (!out.empty() && out.front().action == RayNodeAction::replace)
    for (std::size_t i = 1; i < out.size(); ++i)
      if (out[i].action == RayNodeAction::keep) {
        out[i].action = RayNodeAction::replace;
        out[i].reason = out[i].host + ": restarting, because the head is replaced";
      }
  return out;
}

// ---------------------------------------------------------------------------
// Judgement

RayClusterStatus evaluate_ray_cluster(RayClusterSpec const& spec, std::vector<RayNodePlan> const& plans,
                                      RayReport const& report, std::vector<std::string> const& runtime_states) {
  RayClusterStatus st;
  st.name = spec.name;
  st.runtime = spec.runtime;
  st.ray_version = report.ray_version;
  st.source = report.source;
  st.expected_nodes = static_cast<unsigned>(plans.size());
  if (report.status) st.usage = report.status->usage;

  // Ray keeps DEAD entries for nodes that left; a node that came back has a
  // new ALIVE entry with the same IP. ALIVE wins.
  std::map<std::string, RayNodeState const*> by_ip;
  for (auto const& n : report.nodes) {
    auto& slot = by_ip[n.node_ip];
    if (!slot || (!slot->alive() && n.alive())) slot = &n;
  }
  std::set<std::string> ours;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    auto const& plan = plans[i];
    RayHostStatus h;
    h.host = plan.host;
    h.head = plan.head;
    h.node_ip = plan.node_ip;
    h.runtime_state = i < runtime_states.size() ? runtime_states[i] : "";
    if (plan.gpus) st.expected_gpus += *plan.gpus;
    st.gpus_simulated = st.gpus_simulated || plan.gpus_simulated;
    ours.insert(plan.node_ip);
    if (auto it = by_ip.find(plan.node_ip); it != by_ip.end()) {
      h.ray_state = it->second->state.empty() ? "UNKNOWN" : it->second->state;
      h.resources_total = it->second->resources_total;
      if (it->second->alive()) {
        h.usage = it->second->usage;
        ++st.alive_nodes;
        if (auto g = h.resources_total.find("GPU"); g != h.resources_total.end()) st.gpus_total += g->second;
      }
    } else if (report.nodes.empty()) {
      // No node list (only `ray status`, or nothing): judged below from
      // the count of active nodes.
      h.ray_state = "UNKNOWN";
    }
    bool const runtime_down = h.runtime_state == "exited" || h.runtime_state == "absent" || h.runtime_state == "dead" ||
                              h.runtime_state == "created";
    if (h.runtime_state == "unreachable") {
      h.problem = plan.host + " does not answer over ssh; Ray's view of it may be stale";
    } else if (runtime_down) {
      h.problem = plan.host + ": its Ray node is not running (" +
                  (spec.runtime == RayRuntimeKind::docker ? "container " + ray_container_name(spec.name) + " " + h.runtime_state
                                                          : "no Ray process") +
                  "); `clusterkit ray up` restarts it";
    } else if (h.ray_state == "DEAD") {
      h.problem = plan.host + " (" + plan.node_ip + "): Ray reports the node DEAD" +
                  (plan.head ? "" : "; `clusterkit ray up` restarts it");
    } else if (h.ray_state == "MISSING") {
      h.problem = plan.host + " (" + plan.node_ip + ") has not joined: Ray has no node with that address";
    }
    if (!h.problem.empty()) st.problems.push_back(h.problem);
    st.hosts.push_back(std::move(h));
  }
  for (auto const& n : report.nodes)
    if (n.alive() && !ours.count(n.node_ip)) st.other_nodes.push_back(n);
  // Totals from the node list (current); what is in use only `ray status`
  // knows, and its figures trail the node list by a few seconds.
  if (!report.nodes.empty()) {
    std::map<std::string, RayResource> totals;
    for (auto const& n : report.nodes)
      if (n.alive())
        for (auto const& [k, v] : n.resources_total)
          if (!k.starts_with("node:")) totals[k].total += v;
    for (auto& [k, v] : totals)
      if (auto it = st.usage.find(k); it != st.usage.end() && it->second.total == v.total) v.used = it->second.used;
    st.usage = std::move(totals);
  }
  if (!st.other_nodes.empty()) {
    std::vector<std::string> ips;
    for (auto const& n : st.other_nodes) ips.push_back(n.node_ip);
    st.problems.push_back("Ray has nodes that are none of this cluster's hosts (" + join(ips) +
                          "): another cluster's workers joined this head, or a host reports another address");
  }
  if (!report.error.empty()) st.problems.push_back("Ray did not answer on the head: " + report.error);
  // Without the node list (`ray status` only), count from the text.
  if (report.nodes.empty() && report.status) {
    st.alive_nodes = static_cast<unsigned>(report.status->active.size());
    if (auto g = report.status->usage.find("GPU"); g != report.status->usage.end()) st.gpus_total = g->second.total;
    if (st.alive_nodes >= st.expected_nodes) {
      for (auto& h : st.hosts)
        if (h.ray_state == "UNKNOWN") h.ray_state = "ALIVE";
    } else {
      st.problems.push_back("`ray status` shows " + std::to_string(st.alive_nodes) + " of " + std::to_string(st.expected_nodes) +
                            " nodes active");
    }
  }
  bool const gpus_ok = st.expected_gpus <= 0 || st.gpus_total + 1e-9 >= st.expected_gpus;
  st.healthy = report.error.empty() && st.alive_nodes == st.expected_nodes && gpus_ok && st.problems.empty();
  st.degraded = !st.healthy && st.alive_nodes > 0;
  if (st.healthy == false && gpus_ok == false && st.alive_nodes == st.expected_nodes)
    st.problems.push_back("Ray sees " + number_text(st.gpus_total) + " GPUs, " + number_text(st.expected_gpus) + " expected");
  return st;
}

namespace {
json usage_json(std::map<std::string, RayResource> const& usage) {
  json j = json::object();
  for (auto const& [k, v] : usage) j[k] = {{"used", v.used}, {"total", v.total}};
  return j;
}

// "1/2" for counts, "1.5 GiB/20 GiB" for bytes.
std::string usage_text(std::string const& name, RayResource const& r) {
  if (name == "memory" || name == "object_store_memory")
    return format_bytes(static_cast<std::uint64_t>(r.used)) + "/" + format_bytes(static_cast<std::uint64_t>(r.total));
  return number_text(r.used) + "/" + number_text(r.total);
}
}  // namespace

json RayClusterStatus::to_json() const {
  json j{{"name", name},
         {"runtime", std::string(to_string(runtime))},
         {"ray_version", ray_version},
         {"healthy", healthy},
         {"degraded", degraded},
         {"alive_nodes", alive_nodes},
         {"expected_nodes", expected_nodes},
         {"gpus", gpus_total},
         {"expected_gpus", expected_gpus},
         {"gpus_simulated", gpus_simulated},
         {"source", source},
         {"problems", problems},
         {"hosts", json::array()},
         {"usage", json::object()},
         {"other_nodes", json::array()}};
  for (auto const& h : hosts)
    j["hosts"].push_back({{"host", h.host},
                          {"head", h.head},
                          {"node_ip", h.node_ip},
                          {"ray_state", h.ray_state},
                          {"runtime_state", h.runtime_state},
                          {"resources", h.resources_total},
                          {"usage", usage_json(h.usage)},
                          {"ray_version", h.ray_version},
                          {"python_version", h.python_version},
                          {"problem", h.problem}});
  j["usage"] = usage_json(usage);
  for (auto const& n : other_nodes) j["other_nodes"].push_back({{"node_ip", n.node_ip}, {"state", n.state}});
  return j;
}

std::string RayClusterStatus::summary() const {
  std::ostringstream s;
  s << "ray cluster '" << name << "' (" << to_string(runtime) << (ray_version.empty() ? "" : ", Ray " + ray_version)
    << "): " << alive_nodes << "/" << expected_nodes << " nodes alive, " << number_text(gpus_total) << "/"
    << number_text(expected_gpus) << " GPUs" << (gpus_simulated ? " (SIMULATED: logical GPUs, no devices)" : "") << ", "
    << (healthy ? "healthy" : degraded ? "DEGRADED" : "DOWN") << "\n";
  for (auto const& h : hosts) {
    char line[256];
    // Used/total where Ray said what is in use, else the total alone.
    auto amount = [&](std::string const& name) -> std::string {
      if (auto u = h.usage.find(name); u != h.usage.end()) return usage_text(name, u->second);
      if (auto t = h.resources_total.find(name); t != h.resources_total.end())
        return name == "memory" ? format_bytes(static_cast<std::uint64_t>(t->second)) : number_text(t->second);
      return "-";
    };
    std::snprintf(line, sizeof line, "  %-10s %-6s %-15s ray %-8s %-10s GPUs %s  CPUs %s  memory %s\n", h.host.c_str(),
                  h.head ? "head" : "worker", h.node_ip.c_str(), h.ray_state.c_str(),
                  h.runtime_state.empty() ? "-" : h.runtime_state.c_str(), amount("GPU").c_str(), amount("CPU").c_str(),
                  amount("memory").c_str());
    s << line;
  }
  for (auto const& [k, v] : usage) {
    if (k == "memory" || k == "object_store_memory")
      s << "  " << k << ": " << format_bytes(static_cast<std::uint64_t>(v.used)) << " / "
        << format_bytes(static_cast<std::uint64_t>(v.total)) << "\n";
    else
      s << "  " << k << ": " << number_text(v.used) << " / " << number_text(v.total) << " used\n";
  }
  for (auto const& p : problems) s << "  problem: " << p << "\n";
  return s.str();
}

std::string explain_ray_failure(std::string_view host, std::string_view output, RayClusterSpec const& spec) {
  std::string h(host);
  if (contains(output, "could not select device driver") && contains(output, "[[gpu]]"))
    return h + ": Docker cannot give containers GPUs (`could not select device driver \"\" with capabilities: [[gpu]]`): the "
               "NVIDIA container toolkit is missing. Install nvidia-container-toolkit and restart Docker "
               "(`nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`)";
  if (contains(output, "Unable to find image") || contains(output, "pull access denied") || contains(output, "No such image"))
    return h + ": the image " + spec.image + " is not there; `docker pull " + spec.image + "` on " + h;
  if (contains(output, "Cannot connect to the Docker daemon") || contains(output, "permission denied while trying to connect to the Docker daemon"))
    return h + ": the Docker daemon does not answer (" + detail::first_line(output, 160) +
           "); start it (systemctl start docker) or add the user to the docker group";
  if (contains(output, "Version mismatch") || contains(output, "version mismatch"))
    return h + ": Ray refused the node for a version mismatch (" + last_lines(output, 1) +
           "); install the same Ray and Python on every host (the same image or venv)";
  if (contains(output, "already in use") || contains(output, "Address already in use") || contains(output, "port is already"))
    return h + ": a port Ray needs is taken (" + last_lines(output, 1) + "); stop what holds it (`ss -ltnp` shows it) or "
               "give the cluster another port";
  if (contains(output, "Unable to connect to GCS") || contains(output, "Failed to connect to GCS") ||
      contains(output, "Timed out while waiting for GCS") || contains(output, "failed to connect to all addresses") ||
      contains(output, "Could not read 'session_name'"))
    return h + ": cannot reach the head's GCS on port " + std::to_string(spec.port) + " (" + last_lines(output, 1) +
           "); check that " + h + " reaches the head at that address (firewall or security group, a wrong node IP on a "
           "host with several interfaces)";
  if (contains(output, "ray: not found") || contains(output, "ray: No such file") || contains(output, "executable file not found") ||
      contains(output, "No module named 'ray'") || contains(output, "No module named ray"))
    return h + ": Ray is not installed where it runs (" + last_lines(output, 1) + "); install ray[default] in the image or venv";
  if (contains(output, "error setting rlimit"))
    return h + ": Docker cannot set a resource limit (" + last_lines(output, 1) + "); drop the --ulimit from docker_args";
  if (auto at = output.find("error mounting \""); at != std::string_view::npos) {
    // runc's `error mounting "HOST" to rootfs at "CONTAINER": ...: REASON`
    auto from = at + 16;
    auto host_path = output.substr(from, output.find('"', from) - from);
    auto to = output.find("rootfs at \"", from);
    std::string_view container_path;
    if (to != std::string_view::npos) container_path = output.substr(to + 11, output.find('"', to + 11) - (to + 11));
    // runc's own reason follows the paths: `: stat /x: permission denied: unknown`.
    auto reason_at = to == std::string_view::npos ? std::string_view::npos : output.find("\": ", to + 11);
    auto reason = reason_at == std::string_view::npos ? std::string_view() : output.substr(reason_at + 3);
    reason = reason.substr(0, std::min(reason.find(": unknown"), reason.find('\n')));
    std::string why = contains(output, "not a directory") ? "a file stands where a folder must be, or the reverse"
                      : contains(output, "no such file")  ? "it does not exist"
                      : !reason.empty()                   ? std::string(reason)
                                                          : "Docker gave no reason";
    return h + ": Docker cannot mount " + std::string(host_path) + " at " + std::string(container_path) + " (" + why +
           "); fix that path on " + h + ", or the spec's volumes";
  }
  // Docker's own noise (the container's ID, its help hint, the shim's
  // prefix) is left out: what remains is the reason.
  std::string cleaned;
  for (auto line : lines_of(output)) {
    auto t = trim(line);
    if (t.size() == 64 && t.find_first_not_of("0123456789abcdef") == std::string_view::npos) continue;
    if (t.rfind("Run 'docker run --help'", 0) == 0) continue;
    if (auto init = t.find("error during container init: "); init != std::string_view::npos) t = t.substr(init + 29);
    cleaned += std::string(t) + "\n";
  }
  auto tail = last_lines(cleaned, 3);
  return h + ": Ray did not start" + (tail.empty() ? std::string() : ": " + tail);
}

}  // namespace clusterkit
