// VllmServe, the pure half: the `vllm serve` argv, the launch/watch/stop
// scripts, the reader of the engine's log, the diagnosis of a log that ends
// badly, the planner's KV figure for the CPU backend, and the judgement of
// an engine's state. Tested on real vLLM logs (tests/fixtures/vllm-cpu).
#include "clusterkit/vllm_serve.hpp"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "clusterkit/shell.hpp"
#include "core/text.hpp"

namespace clusterkit {

using detail::lines_of;
using detail::split_ws;
using detail::trim;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void invalid(std::string const& message) { throw Error(make_error_code(errc::invalid_argument), message); }

bool contains(std::string_view text, std::string_view what) { return text.find(what) != std::string_view::npos; }

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v == std::floor(v) && std::fabs(v) < 1e15 ? "%.0f" : "%g", v);
  return buf;
}

/// "1,234,567" -> 1234567.
std::optional<std::uint64_t> grouped_number(std::string_view s) {
  std::string digits;
  for (char c : s) {
    if (c >= '0' && c <= '9') digits.push_back(c);
    else if (c != ',') break;
  }
  if (digits.empty()) return std::nullopt;
  return detail::to_u64(digits);
}

/// The number right after `marker` in `line`.
std::optional<double> number_after(std::string_view line, std::string_view marker) {
  auto p = line.find(marker);
  if (p == std::string_view::npos) return std::nullopt;
  auto rest = line.substr(p + marker.size());
  std::size_t i = 0;
  while (i < rest.size() && rest[i] == ' ') ++i;
  std::size_t j = i;
  while (j < rest.size() && ((rest[j] >= '0' && rest[j] <= '9') || rest[j] == '.' || rest[j] == ',')) ++j;
  std::string n;
  for (char c : rest.substr(i, j - i))
    if (c != ',') n.push_back(c);
  return detail::to_double(n);
}

/// A log line without vLLM's "(Proc pid=N) LEVEL MM-DD HH:MM:SS [file.py:N] "
/// prefix, and without ANSI colours.
std::string message_of(std::string_view line) {
  std::string clean;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b') {
      while (i < line.size() && !(line[i] >= '@' && line[i] <= '~' && line[i] != '[')) ++i;
      continue;
    }
    clean.push_back(line[i]);
  }
  if (auto b = clean.find("] "); b != std::string::npos && clean.find(" [") != std::string::npos && b < 160)
    return clean.substr(b + 2);
  return clean;
}

/// The first line that states an exception ("ValueError: ...",
/// "torch._inductor.exc.InductorError: ..."), from the top; WARNING lines
/// (which quote errors they only fear) never count.
std::string first_exception(std::vector<std::string_view> const& lines) {
  for (auto l : lines) {
    if (contains(l, " WARNING ")) continue;
    auto m = message_of(l);
    std::string_view t = trim(m);
    std::size_t i = 0;
    while (i < t.size() && (std::isalnum(static_cast<unsigned char>(t[i])) || t[i] == '_' || t[i] == '.')) ++i;
    if (i == 0 || i >= t.size() || t[i] != ':') continue;
    auto name = t.substr(0, i);
    if (name.ends_with("Error") || name.ends_with("Exception") || name.ends_with("Exit") || name.ends_with("Interrupt"))
      return std::string(t.substr(0, 300));
  }
  return {};
}

}  // namespace

std::string_view to_string(ExecutorBackend backend) noexcept {
  switch (backend) {
    case ExecutorBackend::ray: return "ray";
    case ExecutorBackend::mp: return "mp";
    case ExecutorBackend::multinode: return "multinode";
  }
  return "ray";
}

std::optional<ExecutorBackend> executor_backend_from_string(std::string_view text) noexcept {
  if (text == "ray") return ExecutorBackend::ray;
  if (text == "mp") return ExecutorBackend::mp;
  if (text == "multinode") return ExecutorBackend::multinode;
  return std::nullopt;
}

VllmServeSpec VllmServeSpec::from_layout(Layout const& layout, std::string model, std::string served_model_name) {
  VllmServeSpec s;
  s.model = std::move(model);
  s.served_model_name = std::move(served_model_name);
  s.tensor_parallel = layout.tp;
  s.pipeline_parallel = layout.pp;
  // The rest exactly as the planner wrote it for this layout.
  auto const& a = layout.vllm_args;
  for (std::size_t i = 0; i + 1 < a.size(); ++i) {
    if (a[i] == "--max-model-len") s.max_model_len = detail::to_u64(a[i + 1]);
    if (a[i] == "--gpu-memory-utilization") s.gpu_memory_utilization = detail::to_double(a[i + 1]);
  }
  s.backend = layout.nodes > 1 ? ExecutorBackend::ray : (layout.gpus > 1 ? ExecutorBackend::mp : ExecutorBackend::ray);
  return s;
}

void validate(VllmServeSpec const& spec) {
  bool name_ok = !spec.name.empty() && spec.name.size() <= 32 && spec.name.front() != '-' &&
                 std::all_of(spec.name.begin(), spec.name.end(),
                             [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
  if (!name_ok) invalid("serve name \"" + spec.name + "\" is not valid: use 1 to 32 of a-z, 0-9 and '-'");
  if (spec.model.empty()) invalid("serve: no model; give the model's path as the engine sees it (e.g. /models/Qwen2___5-72B-Instruct)");
  if (spec.tensor_parallel == 0 || spec.pipeline_parallel == 0)
    invalid("serve: tensor_parallel and pipeline_parallel must be at least 1");
  if (spec.tensor_parallel * spec.pipeline_parallel > 4096) invalid("serve: tensor_parallel x pipeline_parallel is absurdly large");
  if (spec.port < 1 || spec.port > 65535) invalid("serve port " + std::to_string(spec.port) + " is not a TCP port (1-65535)");
  if (spec.gpu_memory_utilization &&
      !(std::isfinite(*spec.gpu_memory_utilization) && *spec.gpu_memory_utilization > 0 && *spec.gpu_memory_utilization <= 1))
    invalid("serve gpu_memory_utilization must be in (0, 1], not " + number_text(*spec.gpu_memory_utilization));
  if (spec.max_model_len && *spec.max_model_len == 0) invalid("serve max_model_len must be positive");
  for (auto const& [k, v] : spec.env)
    if (!shell::is_valid_variable_name(k)) invalid("serve env: \"" + k + "\" is not a valid environment variable name");
  if (spec.vllm_command.empty()) invalid("serve: vllm_command is empty; give \"vllm\" or a venv's bin/vllm");
  if (spec.ready_timeout.count() <= 0) invalid("serve ready_timeout must be positive");
  for (char c : spec.api_key)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
      invalid("serve api_key has a space or a control character; use printable ASCII");
}

std::string served_name(VllmServeSpec const& spec) {
  if (!spec.served_model_name.empty()) return spec.served_model_name;
  auto m = spec.model;
  while (m.size() > 1 && m.back() == '/') m.pop_back();
  auto slash = m.rfind('/');
  return slash == std::string::npos ? m : m.substr(slash + 1);
}

std::vector<std::string> vllm_serve_argv(VllmServeSpec const& spec, unsigned node_rank, unsigned nodes,
                                         std::string const& master_addr) {
  std::vector<std::string> a{spec.vllm_command, "serve", spec.model, "--served-model-name", served_name(spec),
                             "--host", spec.host, "--port", std::to_string(spec.port),
                             "--tensor-parallel-size", std::to_string(spec.tensor_parallel),
                             "--pipeline-parallel-size", std::to_string(spec.pipeline_parallel)};
  if (spec.backend == ExecutorBackend::ray) a.insert(a.end(), {"--distributed-executor-backend", "ray"});
  if (spec.backend == ExecutorBackend::mp && spec.tensor_parallel * spec.pipeline_parallel > 1)
    a.insert(a.end(), {"--distributed-executor-backend", "mp"});
  if (spec.backend == ExecutorBackend::multinode) {
    a.insert(a.end(), {"--nnodes", std::to_string(nodes), "--node-rank", std::to_string(node_rank), "--master-addr", master_addr});
    if (node_rank > 0) a.push_back("--headless");
  }
  if (spec.max_model_len) a.insert(a.end(), {"--max-model-len", std::to_string(*spec.max_model_len)});
  if (spec.gpu_memory_utilization) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", *spec.gpu_memory_utilization);
    a.insert(a.end(), {"--gpu-memory-utilization", buf});
  }
  if (!spec.dtype.empty()) a.insert(a.end(), {"--dtype", spec.dtype});
  for (auto const& x : spec.extra_args) a.push_back(x);
  return a;
}

std::string vllm_state_dir(VllmServeSpec const& spec) { return "/tmp/ck-vllm-" + spec.name; }

fs::path vllm_api_key_path(VllmServeSpec const& spec) {
  if (!spec.api_key_file.empty()) return spec.api_key_file;
  fs::path base;
  if (char const* x = std::getenv("XDG_CONFIG_HOME"); x && *x) base = x;
  else if (char const* h = std::getenv("HOME"); h && *h) base = fs::path(h) / ".config";
  else base = "/tmp";
  return base / "clusterkit" / "keys" / (spec.name + ".key");
}

std::string generate_api_key() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw Error(make_error_code(errc::local_file_error), "could not draw random bytes for the API key (OpenSSL RAND_bytes failed)");
  static char const* hex = "0123456789abcdef";
  std::string key = "ck-";
  for (unsigned char b : bytes) {
    key.push_back(hex[b >> 4]);
    key.push_back(hex[b & 15]);
  }
  return key;
}

namespace {

std::string fingerprint_of(std::vector<std::string> const& argv, std::map<std::string, std::string> const& env) {
  // Not a secret: the argv and environment never hold the key.
  std::string text = shell::join(argv);
  for (auto const& [k, v] : env) text += "\n" + k + "=" + v;
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: a label, not a defence
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

/// Shell functions over /proc only (procps may be missing in an image):
/// ck_session S prints the pids of session S; ck_uptime P its age in s.
constexpr char const* kProcFunctions =
    "ck_session() { for ck_p in /proc/[0-9]*; do ck_s=$(sed 's/.*) //' \"$ck_p/stat\" 2>/dev/null | awk '{print $4}'); "
    "[ \"$ck_s\" = \"$1\" ] && echo \"${ck_p#/proc/}\"; done; }\n"
    "ck_uptime() { ck_hz=$(getconf CLK_TCK 2>/dev/null || echo 100); ck_st=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | "
    "awk '{print $20}'); awk -v u=\"$(cut -d' ' -f1 /proc/uptime)\" -v s=\"${ck_st:-0}\" -v hz=\"$ck_hz\" "
    "'BEGIN { printf \"%.1f\", u - s / hz }'; }\n";

}  // namespace

std::string vllm_launch_script(VllmServeSpec const& spec, std::vector<std::string> const& argv,
                               std::map<std::string, std::string> const& env, std::string const& key_digest) {
  auto d = shell::quote(vllm_state_dir(spec));
  auto fp = fingerprint_of(argv, env) + key_digest.substr(0, 8);
  std::ostringstream s;
  s << "umask 077\n"
    << "ck_d=" << d << "\n"
    << "mkdir -p \"$ck_d\" || { echo \"@@ck-vllm-failed cannot create $ck_d\"; exit 0; }\n"
    << "ck_old=$(cat \"$ck_d/pid\" 2>/dev/null)\n"
    << "if [ -n \"$ck_old\" ] && kill -0 \"$ck_old\" 2>/dev/null; then\n"
    << "  if [ \"$(cat \"$ck_d/fingerprint\" 2>/dev/null)\" = " << fp << " ]; then cat > /dev/null; echo \"@@ck-vllm-running $ck_old\"; exit 0; fi\n"
    << "  cat > /dev/null; echo \"@@ck-vllm-other $ck_old\"; exit 0\n"
    << "fi\n"
    // The key arrives on stdin (never an argument) and goes to a 0600 file.
    << "cat > \"$ck_d/api-key\"\n"
    << "printf '%s\\n' " << fp << " > \"$ck_d/fingerprint\"\n"
    << "printf '%s\\n' " << shell::quote(shell::join(argv)) << " > \"$ck_d/argv\"\n"
    // What /dev/shm held before, so stop removes only what this engine left.
    << "ls /dev/shm > \"$ck_d/shm-before\" 2>/dev/null\n"
    << "rm -f \"$ck_d/pid\"\n"
    << ": > \"$ck_d/vllm.log\"\n";
  for (auto const& [k, v] : env) s << k << "=" << shell::quote(v) << "; export " << k << "\n";
  // vLLM's temporary files (vllm_dist_*) go with the engine's state.
  s << "TMPDIR=\"$ck_d\"; export TMPDIR\n"
    // The engine in a session of its own (stop takes the whole session),
    // its pid recorded by the shell that becomes it (exec), the key read
    // into VLLM_API_KEY there: `ps` shows `$(cat ...)`, never the key.
    << "setsid sh -c 'echo $$ > \"$0/pid\"; if [ -s \"$0/api-key\" ]; then VLLM_API_KEY=$(cat \"$0/api-key\"); export VLLM_API_KEY; fi; "
       "exec \"$@\"' \"$ck_d\" "
    << shell::join(argv) << " > \"$ck_d/vllm.log\" 2>&1 < /dev/null &\n"
    << "ck_i=0; while [ ! -s \"$ck_d/pid\" ] && [ $ck_i -lt 100 ]; do sleep 0.05; ck_i=$((ck_i + 1)); done\n"
    << "if [ -s \"$ck_d/pid\" ]; then echo \"@@ck-vllm-launched $(cat \"$ck_d/pid\")\"; else echo '@@ck-vllm-failed the engine did not start'; "
       "tail -n 20 \"$ck_d/vllm.log\"; fi\n";
  return s.str();
}

std::string vllm_watch_script(VllmServeSpec const& spec, std::uint64_t offset) {
  std::ostringstream s;
  s << kProcFunctions << "ck_d=" << shell::quote(vllm_state_dir(spec)) << "\n"
    << "if [ ! -d \"$ck_d\" ]; then echo @@ck-vllm-nostate; exit 0; fi\n"
    << "ck_p=$(cat \"$ck_d/pid\" 2>/dev/null)\n"
    << "if [ -n \"$ck_p\" ] && kill -0 \"$ck_p\" 2>/dev/null; then echo \"@@ck-vllm-alive 1 $ck_p $(ck_uptime $ck_p)\"; "
       "else echo \"@@ck-vllm-alive 0 ${ck_p:-0} 0\"; fi\n"
    << "echo \"@@ck-vllm-fingerprint $(cat \"$ck_d/fingerprint\" 2>/dev/null)\"\n"
    << "echo \"@@ck-vllm-argv $(head -c 8192 \"$ck_d/argv\" 2>/dev/null | head -n 1)\"\n"
    << "echo \"@@ck-vllm-log-size $(wc -c < \"$ck_d/vllm.log\" 2>/dev/null || echo 0)\"\n"
    << "echo @@ck-vllm-log-begin\n"
    << "tail -c +" << (offset + 1) << " \"$ck_d/vllm.log\" 2>/dev/null | head -c " << vllm_watch_log_bytes << "\n"
    << "echo; echo @@ck-vllm-log-end\n";
  return s.str();
}

namespace {
// Complete lines of `text` appended to `out`; the unfinished rest stays in
// `partial`. Invalid UTF-8 is replaced: the lines go to terminals and Python.
void complete_lines(std::string& partial, std::string_view text, std::vector<std::string>& out) {
  partial.append(text);
  std::size_t begin = 0;
  for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n', begin)) {
    auto line = std::string_view(partial).substr(begin, nl - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(detail::valid_utf8(line));
    begin = nl + 1;
  }
  partial.erase(0, begin);
}

void note_liveness(VllmLogFollower& f, VllmWatch const& look, std::vector<std::string>& out) {
  if (f.alive_seen && f.alive != look.alive)
    out.push_back(look.alive ? "clusterkit: an engine runs again (pid " + std::to_string(look.pid) + ")"
                             : "clusterkit: the engine (pid " + std::to_string(look.pid) +
                                   ") is not running any more; still following its log");
  f.alive_seen = true;
  f.alive = look.alive;
}
}  // namespace

std::vector<std::string> VllmLogFollower::start(VllmWatch const& look, std::uint64_t from, unsigned tail) {
  std::vector<std::string> lines;
  partial.clear();
  complete_lines(partial, look.log, lines);
  if (from > 0 && !lines.empty() && !look.log.empty()) lines.erase(lines.begin());  // begun before `from`
  if (tail > 0 && lines.size() > tail) lines.erase(lines.begin(), lines.end() - tail);
  offset = from + look.log.size();
  alive_seen = true;
  alive = look.alive;
  pid = look.pid;
  return lines;
}

std::vector<std::string> VllmLogFollower::take(VllmWatch const& look) {
  std::vector<std::string> out;
  bool const other_engine = look.pid != 0 && pid != 0 && look.pid != pid;
  if (look.log_size < offset || other_engine) {
    // Shorter than what was read, or another engine's: a new log (the
    // engine was started again). What this look read is from the old
    // offset of the new log: dropped, and the next look reads from 0.
    if (!partial.empty()) out.push_back(detail::valid_utf8(partial));
    partial.clear();
    offset = 0;
    out.push_back("clusterkit: the engine's log started again (a new engine); following it from its start");
    note_liveness(*this, look, out);
    if (look.pid != 0) pid = look.pid;
    return out;
  }
  complete_lines(partial, look.log, out);
  offset += look.log.size();
  note_liveness(*this, look, out);
  if (look.pid != 0) pid = look.pid;
  return out;
}

VllmWatch parse_vllm_watch(std::string_view output) {
  VllmWatch w;
  auto begin = output.find("@@ck-vllm-log-begin\n");
  auto end = output.rfind("\n@@ck-vllm-log-end");
  std::string_view head = begin == std::string_view::npos ? output : output.substr(0, begin);
  for (auto line : lines_of(head)) {
    auto f = split_ws(line);
    if (f.empty()) continue;
    if (f[0] == "@@ck-vllm-alive" && f.size() >= 3) {
      w.state_dir = true;
      w.alive = f[1] == "1";
      w.pid = static_cast<int>(detail::to_long(f[2]).value_or(0));
      if (f.size() >= 4) w.uptime_seconds = detail::to_double(f[3]).value_or(0);
    } else if (f[0] == "@@ck-vllm-fingerprint" && f.size() >= 2) {
      w.fingerprint = std::string(f[1]);
    } else if (f[0] == "@@ck-vllm-argv") {
      w.argv = std::string(trim(line.substr(std::min(line.size(), std::string_view("@@ck-vllm-argv").size()))));
      // The words as a POSIX shell splits single-quoted ones ('a'\''b').
      std::vector<std::string> words;
      std::string cur;
      bool in_word = false, quoted = false;
      for (std::size_t i = 0; i < w.argv.size(); ++i) {
        char c = w.argv[i];
        if (quoted) {
          if (c == '\'') quoted = false;
          else cur.push_back(c);
        } else if (c == '\'') {
          quoted = in_word = true;
        } else if (c == '\\' && i + 1 < w.argv.size()) {
          cur.push_back(w.argv[++i]);
          in_word = true;
        } else if (c == ' ') {
          if (in_word) words.push_back(cur), cur.clear(), in_word = false;
        } else {
          cur.push_back(c);
          in_word = true;
        }
      }
      if (in_word) words.push_back(cur);
      for (std::size_t i = 0; i + 1 < words.size(); ++i)
        if (words[i] == "--served-model-name") w.served_model_name = words[i + 1];
      if (!words.empty()) {
        // Without either flag the engine runs in one process (mp).
        w.backend = ExecutorBackend::mp;
        for (std::size_t i = 0; i < words.size(); ++i) {
          if (words[i] == "--nnodes") w.backend = ExecutorBackend::multinode;
          if (i + 1 < words.size() && words[i] == "--distributed-executor-backend")
            if (auto b = executor_backend_from_string(words[i + 1])) w.backend = *b;
        }
      }
    } else if (f[0] == "@@ck-vllm-log-size" && f.size() >= 2) {
      w.log_size = detail::to_u64(f[1]).value_or(0);
    }
  }
  if (begin != std::string_view::npos && end != std::string_view::npos && end >= begin + 20) {
    // Exactly the log's bytes: the newline the script's `echo` adds after
    // them belongs to the end marker's line (the caller's offset counts on it).
    w.log = std::string(output.substr(begin + 20, end - begin - 20));
  }
  return w;
}

std::string vllm_stop_script(VllmServeSpec const& spec, std::chrono::seconds grace) {
  std::ostringstream s;
  auto tenths = std::to_string(std::max<long long>(1, grace.count() * 10));
  s << kProcFunctions << "ck_d=" << shell::quote(vllm_state_dir(spec)) << "\n"
    << "if [ ! -d \"$ck_d\" ]; then echo '@@ck-vllm-stopped nothing'; exit 0; fi\n"
    << "ck_p=$(cat \"$ck_d/pid\" 2>/dev/null)\n"
    << "ck_what=nothing\n"
    << "if [ -n \"$ck_p\" ] && [ -n \"$(ck_session $ck_p)\" ]; then\n"
    // vLLM's API server shuts down cleanly on SIGTERM (engine core, workers,
    // Ray actors). One waiting for a placement group ignores it: half way
    // through the grace period the whole session gets SIGTERM, at the end
    // SIGKILL.
    << "  kill -TERM \"$ck_p\" 2>/dev/null\n"
    << "  ck_i=0; while [ -n \"$(ck_session $ck_p)\" ] && [ $ck_i -lt " << tenths << " ]; do\n"
    << "    [ $ck_i -eq " << std::max<long long>(1, grace.count() * 5) << " ] && ck_session $ck_p | xargs -r kill -TERM 2>/dev/null\n"
    << "    sleep 0.1; ck_i=$((ck_i + 1)); done\n"
    << "  ck_left=$(ck_session $ck_p)\n"
    << "  if [ -n \"$ck_left\" ]; then echo $ck_left | xargs -r kill -KILL 2>/dev/null; ck_what=\"the engine (pid $ck_p; killed after "
    << grace.count() << " s)\"; else ck_what=\"the engine (pid $ck_p)\"; fi\n"
    << "fi\n"
    // vLLM's CPU backend leaves shared-memory files behind: remove the ones
    // that appeared since this engine was launched.
    << "if [ -f \"$ck_d/shm-before\" ]; then for ck_f in /dev/shm/*; do ck_n=${ck_f#/dev/shm/}; "
       "case \"$ck_n\" in *cpushm*|psm_*|*vllm*) grep -qxF \"$ck_n\" \"$ck_d/shm-before\" || rm -f \"$ck_f\";; esac; done; fi\n"
    << "rm -rf \"$ck_d\"\n"
    << "echo \"@@ck-vllm-stopped $ck_what\"\n";
  return s.str();
}

// ---------------------------------------------------------------------------
// The log

void read_vllm_log(std::string_view chunk, VllmLogProgress& p) {
  // Called on every line's way out, whichever branch it took.
  auto note_phase = [&p] {
    if (p.phases.empty() || p.phases.back() != p.phase) p.phases.push_back(p.phase);
  };
  for (auto raw : lines_of(chunk)) {
    note_phase();
    if (raw.empty()) continue;
    auto msg = message_of(raw);
    std::string_view m = msg;
    if (auto v = m.find(" version "); v != std::string_view::npos && p.version.empty() && contains(m, "\u2588")) {
      auto w = split_ws(m.substr(v + 9));
      if (!w.empty()) p.version = std::string(w[0]);
    }
    if (contains(m, "Waiting for creating a placement group")) {
      p.waiting_for_placement_group = true;
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "Loading weights took") || contains(m, "Model loading took") || contains(m, "Loading safetensors checkpoint")) {
      if (p.phase == "starting") p.phase = "loading";
      if (auto s = number_after(m, "Loading weights took")) p.weights_seconds = *s;
      p.waiting_for_placement_group = false;
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "KV cache size:")) {
      p.phase = "kv-cache";
      auto at = m.find("KV cache size:");
      p.kv_cache_tokens = grouped_number(trim(m.substr(at + 14)));
      if (auto c = number_after(m, "per request:")) p.max_concurrency = *c;
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "Warming up model") || contains(m, "Capturing CUDA graph") || contains(m, "torch.compile") ||
               contains(m, "Compiling a graph")) {
      if (p.phase != "api" && p.phase != "ready") p.phase = "compiling";
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "init engine (profile, create kv cache, warmup model) took")) {
      p.init_engine_seconds = number_after(m, "warmup model) took");
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "Starting vLLM server on") || contains(m, "Starting vLLM API server")) {
      p.phase = "api";
      p.api_started = true;
      p.last = std::string(trim(m)).substr(0, 200);
    } else if (contains(m, "Application startup complete")) {
      p.phase = "ready";
      p.startup_complete = true;
      p.last = "Application startup complete";
    }
  }
  note_phase();
}

VllmDiagnosis diagnose_vllm_log(std::string_view log, VllmDiagnosisContext const& ctx) {
  auto lines = lines_of(log);
  // The first line (from the top) carrying `needle`: the root cause comes
  // first; later lines repeat it through the layers that re-raise it.
  // Traceback source lines ("raise HFValidationError(", "File ...") quote
  // the error's name; the evidence is the line that states it.
  auto is_code = [](std::string_view m) {
    m = trim(m);
    return m.starts_with("raise ") || m.starts_with("File \"") || m.starts_with("^") || m.starts_with("return ");
  };
  auto find = [&](std::initializer_list<std::string_view> needles) -> std::string {
    for (auto l : lines)
      for (auto n : needles)
        if (contains(l, n)) {
          auto m = message_of(l);
          if (is_code(m)) continue;
          return std::string(trim(m)).substr(0, 300);
        }
    return {};
  };
  unsigned const need = ctx.tensor_parallel * ctx.pipeline_parallel;
  std::string const model = ctx.model.empty() ? std::string("the model path") : ctx.model;
  VllmDiagnosis d;
  auto hit = [&](std::string cause, std::string evidence, std::string message) {
    d.cause = std::move(cause);
    d.evidence = std::move(evidence);
    d.message = std::move(message);
    return d;
  };
  // A Ray worker of the engine died (its node lost): the engine stops
  // serving, though /health may stay 200 (vllm#16259).
  if (auto e = find({"died unexpectedly, shutting down executor"}); !e.empty())
    return hit("worker-lost", e,
               "a worker of the engine died (\"" + e + "\"): its Ray node was lost; the engine no longer answers. "
               "`clusterkit up` restarts the Ray nodes and the engine");
  // An engine stopped on request logs EngineDeadError too: not a death,
  // unless an exception came before the stop.
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (contains(lines[i], "[shutdown] API server: shutdown triggered")) {
      std::vector<std::string_view> before(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(i));
      if (first_exception(before).empty())
        return hit("stopped", std::string(trim(message_of(lines[i]))), "the engine was stopped on request");
      break;
    }
  if (auto e = find({"does not support ray"}); !e.empty())
    return hit("platform-no-ray", e,
               "this vLLM build refuses Ray as its executor (\"" + e + "\"). vLLM's CPU build needs the lab-only patch "
               "that scripts/install-serving.sh applies (ray_device_key on the CPU platform); on GPU servers use vLLM's "
               "CUDA build (the vllm/vllm-openai image)");
  if (auto e = find({"open shm in SHMManager failed"}); !e.empty())
    return hit("shm", e,
               "vLLM's CPU backend passes tensors between its workers through /dev/shm files, and a worker on another "
               "host could not open them (\"" + e + "\"): every host must see the same /dev/shm, which only holds in "
               "the lab (containers with --ipc host). GPU servers pass tensors over NCCL and do not need this");
  if (auto e = find({"Gloo connectFullMesh failed", "connectFullMesh", "Gloo] failed to connect", "gloo/transport"}); !e.empty())
    return hit("gloo-interface", e,
               "Gloo could not connect the workers (\"" + e + "\"): it used the wrong interface or address. Set "
               "GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME to the interface the hosts reach each other by, and VLLM_HOST_IP "
               "to each host's address on it, in the environment Ray starts with (clusterkit sets them from each host's "
               "route to the head)");
  if (auto e = find({"NCCL WARN Net", "ncclSystemError", "ncclInternalError", "NCCL error", "ncclRemoteError"}); !e.empty())
    return hit("nccl-interface", e,
               "NCCL failed between the workers (\"" + e + "\"): usually the wrong interface (set NCCL_SOCKET_IFNAME), "
               "blocked ports between the hosts, or P2P/IB settings; run `clusterkit nccl-check` to test NCCL alone");
  if (auto e = find({"No available node types can fulfill resource request"}); !e.empty())
    return hit("placement-group", e,
               "Ray cannot place the engine's " + std::to_string(need) + " workers (\"" + e + "\"). Ray sees " +
                   number_text(ctx.cluster_gpus) + " GPUs; on hosts with several interfaces this usually means a node "
                   "registered with another address than VLLM_HOST_IP (vllm#7815): check `clusterkit ray status`");
  if (auto e = find({"Current node has no GPU available", "No CUDA GPUs are available", "Failed to infer device type",
                     "found no NVIDIA driver"});
      !e.empty())
    return hit("no-gpu", e,
               "the engine runs where it sees no GPU (\"" + e + "\"): it must start on a GPU host (the head), in a "
               "container with --gpus all; the download host must never be the head (vllm#2406)");
  if (auto e = find({"Version mismatch", "version mismatch"}); !e.empty())
    return hit("version-mismatch", e,
               "versions differ between the nodes (\"" + e + "\"): run the same image (or venv) with the same Ray, "
               "Python and vLLM on every host");
  if (auto e = find({"Not enough allowed NUMA nodes to bind threads"}); !e.empty())
    return hit("cpu-binding", e,
               "vLLM's CPU build could not bind each worker's threads to a NUMA node of its own (\"" + e + "\"): set "
               "VLLM_CPU_OMP_THREADS_BIND=nobind (or explicit core lists like 0|1) in the engine's environment");
  if (auto e = find({"is greater than the derived max_model_len"}); !e.empty())
    return hit("max-model-len", e,
               "--max-model-len is longer than the model allows (\"" + e + "\"): lower it to the model's "
               "max_position_embeddings, or leave it out");
  if (auto e = find({"does not appear to have a file named config.json", "Invalid repository ID or local directory",
                     "Cannot find an appropriate cached snapshot folder",
                     "HFValidationError", "Repo id must be in the form", "is not a local folder and is not a valid model identifier",
                     "Cannot find model", "We couldn't connect to 'https://huggingface.co'", "No such file or directory: '" +
                         (ctx.model.empty() ? std::string("/models") : ctx.model)});
      !e.empty())
    return hit("model-missing", e,
               model + " is not there where the engine (or one of its workers) runs (\"" + e + "\"); it must be at the "
               "same path on every node, or vLLM tries to download it (vllm#2289). Check with `clusterkit model verify -g gpu`");
  if (auto e = find({"larger than the maximum number of tokens that can be stored in KV cache", "which is larger than the available KV cache memory",
                     "No available memory for the cache blocks", "insufficient memory for the KV cache", "KV cache is needed"});
      !e.empty()) {
    // vLLM says how long a sequence would fit: "estimated maximum model length is 384".
    std::string fits;
    if (auto n = number_after(e, "estimated maximum model length is")) fits = " (at most " + number_text(*n) + " here)";
    return hit("kv-cache", e,
               "the KV cache cannot hold one sequence of --max-model-len: lower --max-model-len" + fits +
                   ", raise --gpu-memory-utilization (VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build), or use more GPUs; "
                   "`clusterkit plan` shows what fits");
  }
  if (auto e = find({"CUDA out of memory", "OutOfMemoryError", "out of memory"}); !e.empty())
    return hit("out-of-memory", e,
               "the engine ran out of GPU memory (\"" + e + "\"): lower --gpu-memory-utilization's competitors (other "
               "processes on the GPUs), --max-num-seqs or --max-model-len, or use more GPUs (`clusterkit plan`)");
  if (auto e = find({"Address already in use", "[Errno 98]"}); !e.empty())
    return hit("port-in-use", e,
               "port " + std::to_string(ctx.port) + " on the head is taken (\"" + e + "\"): stop what holds it (`ss -ltnp` "
               "shows it) or serve on another port");
  if (auto e = find({"Bus error", "No space left on device"}); !e.empty())
    return hit("shm", e,
               "shared memory ran out (\"" + e + "\"): /dev/shm is too small for NCCL and vLLM; give the containers "
               "--shm-size 10.24g (or --ipc host)");
  if (auto e = find({"Waiting for creating a placement group"}); !e.empty())
    return hit("placement-group", e,
               "Ray never had the " + std::to_string(need) + " GPUs the layout needs (TP " + std::to_string(ctx.tensor_parallel) +
                   " x PP " + std::to_string(ctx.pipeline_parallel) + ") free: it sees " + number_text(ctx.cluster_gpus) +
                   " (vllm#13909). Start the missing workers (`clusterkit ray status` shows which), or serve a layout "
                   "that fits");
  if (auto e = find({"No working C++ compiler", "InvalidCxxCompiler"}); !e.empty())
    return hit("no-compiler", e,
               "torch.compile found no C++ compiler where the engine runs (\"" + e + "\"): vLLM's CPU build compiles its "
               "model at start-up; install g++ in the runtime image (the lab's image has it), or serve with "
               "--enforce-eager (not with pipeline parallelism on vLLM CPU 0.32, which then crashes on the first request)");
  // The first exception raised is the root cause; what follows re-raises it.
  auto root = first_exception(lines);
  if (contains(log, "assert local_message_queue is not None"))
    return hit("cpu-multinode", "assert local_message_queue is not None",
               "vLLM's CPU build cannot run several workers per node in the --nnodes form (it counts one device per "
               "node): serve with the Ray backend, or one worker per node (tensor parallel 1)");
  if (auto e = find({"EngineDeadError", "EngineCore encountered a fatal error", "Engine core initialization failed"}); !e.empty())
    return hit("engine-dead", root.empty() ? e : root,
               "the engine died (\"" + (root.empty() ? e : root) + "\"); `clusterkit serve logs` has its whole log");
  // Unknown: the first exception, else the last line.
  std::string last = root;
  if (last.empty())
    for (auto it = lines.rbegin(); it != lines.rend(); ++it)
      if (!trim(*it).empty()) {
        last = std::string(trim(message_of(*it))).substr(0, 300);
        break;
      }
  return hit("unknown", last, "the engine stopped" + (last.empty() ? std::string(" without a word in its log") : ": \"" + last + "\""));
}

std::uint64_t predict_cpu_kv_cache_tokens(ModelFacts const& model, unsigned tp, unsigned pp, std::uint64_t kv_cache_bytes,
                                          std::string_view kv_cache_dtype) {
  if (tp == 0 || pp == 0 || model.num_hidden_layers == 0 || model.head_dim == 0)
    invalid("predict_cpu_kv_cache_tokens: the model needs layers and a head size, and TP/PP at least 1");
  auto stages = pipeline_partition(model.num_hidden_layers, pp);
  std::uint64_t layers = *std::max_element(stages.begin(), stages.end());
  std::uint64_t kv_heads = model.num_key_value_heads ? model.num_key_value_heads : model.num_attention_heads;
  std::uint64_t heads_per_rank = std::max<std::uint64_t>(1, kv_heads / tp);
  std::uint64_t per_token = 2 * layers * heads_per_rank * model.head_dim * kv_cache_dtype_bytes(model, kv_cache_dtype);
  return per_token == 0 ? 0 : kv_cache_bytes / per_token;
}

std::string judge_vllm_state(bool process_alive, int health_status, bool served_name_listed,
                             std::optional<RayClusterStatus> const& ray, std::vector<std::string>& problems) {
  bool const http_up = health_status == 200;
  // Ray's own problems stay in `ray` (its summary prints them).
  if (!process_alive && !http_up) return "down";
  if (!process_alive && http_up) {
    problems.push_back("the engine's process is gone but something still answers /health on its port");
    return "DEGRADED";
  }
  if (process_alive && !http_up) return health_status == 0 ? "starting" : "DEGRADED";
  if (!served_name_listed) {
    problems.push_back("/v1/models does not list the served model name");
    return "DEGRADED";
  }
  // /health stays 200 after a Ray worker died (vllm#16259): Ray decides.
  if (ray && !ray->healthy) return "DEGRADED";
  return "up";
}

json VllmReady::to_json() const {
  return json{{"endpoint", endpoint},
              {"served_model_name", served_model_name},
              {"version", log.version},
              {"kv_cache_tokens", log.kv_cache_tokens ? json(*log.kv_cache_tokens) : json(nullptr)},
              {"init_engine_seconds", log.init_engine_seconds ? json(*log.init_engine_seconds) : json(nullptr)},
              {"startup_complete_seconds", startup_complete_seconds},
              {"health_seconds", health_seconds},
              {"ready_seconds", ready_seconds},
              {"answer_seconds", answer_seconds},
              {"engine_start_seconds", engine_start_seconds},
              {"first_token", first_token},
              {"message", message}};
}

json VllmStatus::to_json() const {
  json j{{"endpoint", endpoint},
         {"state", state},
         {"process_alive", process_alive},
         {"pid", pid},
         {"uptime_seconds", uptime_seconds},
         {"health_status", health_status},
         {"served_models", served_models},
         {"running_requests", running_requests ? json(*running_requests) : json(nullptr)},
         {"waiting_requests", waiting_requests ? json(*waiting_requests) : json(nullptr)},
         {"kv_cache_usage", kv_cache_usage ? json(*kv_cache_usage) : json(nullptr)},
         {"problems", problems},
         {"ray", ray ? ray->to_json() : json(nullptr)},
         {"diagnosis", nullptr}};
  if (diagnosis) j["diagnosis"] = {{"cause", diagnosis->cause}, {"message", diagnosis->message}, {"evidence", diagnosis->evidence}};
  return j;
}

std::string VllmStatus::summary() const {
  std::ostringstream s;
  s << "engine " << endpoint << ": " << state;
  if (process_alive) s << " (pid " << pid << ", up " << number_text(std::round(uptime_seconds)) << " s)";
  s << "\n";
  if (!served_models.empty()) s << "  serves: " << detail::join(served_models) << "\n";
  if (health_status) s << "  /health: " << health_status << "\n";
  if (running_requests || waiting_requests || kv_cache_usage) {
    s << "  requests running " << (running_requests ? number_text(*running_requests) : "?") << ", waiting "
      << (waiting_requests ? number_text(*waiting_requests) : "?");
    if (kv_cache_usage) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f%%", *kv_cache_usage * 100);
      s << ", KV cache " << buf << " used";
    }
    s << "\n";
  }
  if (ray) s << "  " << ray->summary();
  for (auto const& p : problems) s << "  problem: " << p << "\n";
  if (diagnosis) s << "  why: " << diagnosis->message << "\n";
  return s.str();
}

std::string stored_api_key_for(std::string const& endpoint) {
  VllmServeSpec probe;
  auto dir = vllm_api_key_path(probe).parent_path();
  std::error_code ec;
  // Several engines may have served at one endpoint over time: the newest
  // key file wins.
  std::string best;
  fs::file_time_type best_time{};
  for (auto const& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.path().extension() != ".key") continue;
    std::ifstream in(e.path());
    std::string key, line, ep;
    while (std::getline(in, line)) {
      if (line.starts_with("# endpoint ")) ep = line.substr(11);
      else if (!line.empty() && line[0] != '#') key = line;
    }
    auto norm = [](std::string u) {
      while (!u.empty() && u.back() == '/') u.pop_back();
      if (u.ends_with("/v1")) u.resize(u.size() - 3);
      return u;
    };
    if (!key.empty() && norm(ep) == norm(endpoint)) {
      auto t = fs::last_write_time(e.path(), ec);
      if (best.empty() || t > best_time) best = key, best_time = t;
    }
  }
  return best;
}

}  // namespace clusterkit
