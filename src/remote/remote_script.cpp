#include "clusterkit/detail/remote_script.hpp"

#include <charconv>
#include <algorithm>
#include <cstdio>

#include "clusterkit/shell.hpp"

namespace clusterkit::detail {

std::string wrapper_script(WrapperRequest const& request) {
  auto const& cmd = *request.command;
  std::string s;
  // fd 3 keeps the channel's stdin (the control line); the command itself
  // never reads it.
  s += "exec 3<&0 </dev/null\n";
  s += "ck_in=/dev/null\n";
  if (!request.working_directory.empty()) {
    s += "cd -- " + shell::quote(request.working_directory) +
         " 2>/dev/null || { printf '\\036ck:nocwd\\n' >&2; exit 1; }\n";
  }
  if (request.stdin_bytes > 0) {
    // Exactly N bytes are the command's input; the rest of the channel stays
    // the control line.
    s += "ck_in=$(mktemp) || exit 1\n";
    s += "head -c " + std::to_string(request.stdin_bytes) + " <&3 >\"$ck_in\"\n";
  }
  std::string invocation = "setsid ";
  if (request.env && !request.env->empty()) {
    invocation += "env";
    for (auto const& [k, v] : *request.env) {
      if (!shell::is_valid_variable_name(k))
        throw Error(make_error_code(errc::bad_environment_name),
                    "environment variable name '" + k +
                        "' is not valid in a shell; use letters, digits and underscores, not starting with a digit");
      invocation += " " + shell::quote(k + "=" + v);
    }
    invocation += " ";
  }
  if (!cmd.argv.empty()) {
    invocation += shell::join(cmd.argv);
  } else {
    invocation += "/bin/sh -c " + shell::quote(cmd.script) + " sh";
  }
  if (!cmd.argv.empty() && !(request.env && request.env->count("PATH"))) {
    // Say what a shell says for a program that is not there (setsid's own
    // words, "failed to execute", read as a clusterkit fault). In the
    // background job itself, so the start line and the exit code keep
    // their usual path; `exec` keeps the job's pid the command's pid.
    auto program = shell::quote(cmd.argv.front());
    s += "( command -v -- " + program + " >/dev/null 2>&1 || { printf '%s: command not found\\n' " + program +
         " >&2; exit 127; }; exec " + invocation + " ) <\"$ck_in\" 3<&- &\n";
  } else {
    s += invocation + " <\"$ck_in\" 3<&- &\n";
  }
  s += "ck_p=$!\n";
  s += "printf '\\036ck:start %s\\n' \"$ck_p\" >&2\n";
  // The watcher owns the control line. A line is a signal for the command's
  // group; end-of-file means stop: SIGTERM, then SIGKILL once the grace
  // period is over if anything is left. It tells the wrapper (SIGUSR1) that
  // a stop began, so the wrapper waits for the escalation instead of
  // killing the watcher when the group leader exits. It signals both the
  // group and the pid: in the first microseconds `setsid` may not have made
  // the group yet. It is a subshell, not a new program: a fork instead of
  // two execs per command, which is most of the wrapper's cost on a busy host.
  auto ticks = std::max<long long>(1, static_cast<long long>(request.kill_grace.count() / 100));
  s += "trap 'ck_stop=1' USR1\n";
  s += "ck_stop=\n";
  s += "ck_me=$$\n";
  s += "( trap - USR1; p=$ck_p; "
       "while IFS= read -r s; do kill -s USR1 \"$ck_me\" 2>/dev/null; kill -s \"$s\" -- \"-$p\" \"$p\" 2>/dev/null; done; "
       "kill -s USR1 \"$ck_me\" 2>/dev/null; kill -s TERM -- \"-$p\" \"$p\" 2>/dev/null; "
       "i=0; while kill -s 0 -- \"-$p\" 2>/dev/null && [ $i -lt " +
       std::to_string(ticks) +
       " ]; do sleep 0.1; i=$((i+1)); done; "
       "kill -s KILL -- \"-$p\" \"$p\" 2>/dev/null ) <&3 >/dev/null 2>&1 &\n";
  s += "ck_w=$!\n";
  s += "exec 3<&-\n";
  // `2>/dev/null` silences the shell's "Terminated" job report. A trapped
  // SIGUSR1 interrupts `wait`; wait again while the command lives.
  s += "wait \"$ck_p\" 2>/dev/null; ck_rc=$?\n";
  s += "while [ -n \"$ck_stop\" ] && kill -0 \"$ck_p\" 2>/dev/null; do wait \"$ck_p\" 2>/dev/null; ck_rc=$?; done\n";
  // Stopping and something of the command is left: let the watcher finish
  // the escalation. Otherwise the command ended by itself; what it left in
  // the background on purpose (nohup ... &) stays.
  s += "if [ -n \"$ck_stop\" ] && kill -s 0 -- \"-$ck_p\" 2>/dev/null; then\n"
       "  while kill -0 \"$ck_w\" 2>/dev/null; do wait \"$ck_w\" 2>/dev/null; done\n"
       "fi\n";
  s += "kill -s KILL \"$ck_w\" 2>/dev/null\n";
  s += "[ \"$ck_in\" = /dev/null ] || rm -f -- \"$ck_in\"\n";
  // The last word: proves the wrapper ran to its end, so an ssh exit of
  // 255 without it means the connection died, not the command.
  s += "printf '\\036ck:exit %s\\n' \"$ck_rc\" >&2\n";
  s += "exit $ck_rc\n";
  return s;
}

std::string remote_command_line(std::string const& script) {
  // The login shell (bash, zsh, fish...) only has to run one exec with a
  // single-quoted argument; from there on it is POSIX sh.
  return "exec /bin/sh -c " + shell::quote(script);
}

std::optional<ControlLine> parse_control_line(std::string_view line) {
  if (line.size() < 4 || line[0] != control_marker || line.substr(1, 3) != "ck:") return std::nullopt;
  auto body = line.substr(4);
  if (body.starts_with("start ")) {
    ControlLine c{ControlLine::started, 0};
    auto digits = body.substr(6);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), c.pid);
    if (ec != std::errc{} || ptr != digits.data() + digits.size()) return std::nullopt;
    return c;
  }
  if (body.starts_with("exit ")) {
    ControlLine c{ControlLine::exited, 0};
    auto digits = body.substr(5);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), c.pid);
    if (ec != std::errc{} || ptr != digits.data() + digits.size()) return std::nullopt;
    return c;
  }
  if (body == "nocwd") return ControlLine{ControlLine::no_working_directory, 0};
  return std::nullopt;
}

std::string upload_script(std::string_view remote_path, std::uint64_t size, int mode, std::string_view file_name) {
  auto dst = shell::quote(remote_path);
  std::string s;
  s += "d=" + dst + "\n";
  s += "case \"$d\" in */) [ -d \"$d\" ] || { echo \"clusterkit: $d is not a directory on this host\" >&2; exit 1; };; esac\n";
  if (!file_name.empty()) s += "[ -d \"$d\" ] && d=\"${d%/}/\"" + shell::quote(file_name) + "\n";
  // The folder the file goes into must exist: said in words, naming it
  // (sh's own "cannot create ...ck-part.N: Directory nonexistent" names our
  // temporary file, not the user's path).
  s += "case \"$d\" in */*) p=\"${d%/*}\"; p=\"${p:-/}\";; *) p=.;; esac\n";
  s += "[ -d \"$p\" ] || { printf \"clusterkit: the folder %s does not exist on this host; make it first "
       "(clusterkit exec -- mkdir -p '%s') or upload elsewhere\\n\" \"$p\" \"$p\" >&2; exit 1; }\n";
  s += "t=\"$d.ck-part.$$\"\n";
  s += "trap 'rm -f -- \"$t\"' EXIT\n";
  s += "head -c " + std::to_string(size) + " >\"$t\" || exit 1\n";
  s += "n=$(wc -c <\"$t\") || exit 1\n";
  s += "[ \"$n\" -eq " + std::to_string(size) +
       " ] || { echo \"clusterkit: upload to $d incomplete: $n of " + std::to_string(size) +
       " bytes arrived\" >&2; exit 1; }\n";
  if (mode >= 0) {
    char m[8];
    std::snprintf(m, sizeof m, "%o", mode & 07777);
    s += "chmod " + std::string(m) + " \"$t\" || exit 1\n";
  }
  s += "mv -f -- \"$t\" \"$d\" || exit 1\n";
  s += "trap - EXIT\n";
  return s;
}

std::string download_script(std::string_view remote_path) {
  auto src = shell::quote(remote_path);
  // Only a regular file is copied (a device such as /dev/zero would stream
  // without end), and each refusal says which case it is.
  return "f=" + src +
         "\nif [ -d \"$f\" ]; then echo \"clusterkit: $f is a folder on this host, not a file (download copies one "
         "file)\" >&2; exit 2\n"
         "elif [ ! -e \"$f\" ]; then echo \"clusterkit: $f does not exist on this host (not a readable file)\" >&2; exit 2\n"
         "elif [ ! -f \"$f\" ]; then echo \"clusterkit: $f is not a regular file (a device, FIFO or socket: not a "
         "readable file); only regular files are copied\" >&2; exit 2\n"
         "elif [ ! -r \"$f\" ]; then echo \"clusterkit: $f is not readable by this user (not a readable file)\" >&2; exit 2; fi\n"
         "wc -c <\"$f\" && exec cat -- \"$f\"\n";
}

}  // namespace clusterkit::detail
