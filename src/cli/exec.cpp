// `clusterkit exec`: one command on many hosts, output prefixed by host.
#include <cstdio>
#include <iostream>
#include <mutex>
#include <sstream>

#include <cmath>

#include "clusterkit/shell.hpp"
#include "common.hpp"

namespace clusterkit::cli {

void register_exec(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group = "all";
    std::vector<std::string> command;
    bool shell = false;
    double timeout = 0;
    long long concurrency = 64;
    bool fail_fast = false;
    std::vector<std::string> env;
    std::string cwd;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("exec", "Run a command on every selected host");
  sub->add_option("-g,--group", o->group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  sub->add_flag("--sh", o->shell, "Run the words as one shell script (pipes, $VARS) instead of an exact argv");
  sub->add_option("-t,--timeout", o->timeout, "Seconds before the command is stopped on a host (0: none)");
  sub->add_option("-f,--concurrency", o->concurrency, "Hosts at once")->capture_default_str();
  sub->add_flag("--fail-fast", o->fail_fast, "Stop everything at the first failing host");
  sub->add_option("-e,--env", o->env, "KEY=VALUE for the command (repeatable)");
  sub->add_option("-C,--cwd", o->cwd, "Working directory on the host");
  sub->add_option("command", o->command, "The command and its arguments (after --)")->required();
  sub->callback([&g, &action, o] {
    action = [&g, o] {
      auto shortest = [](double v) {
        std::ostringstream out;
        out << v;  // -5, 1e+10, inf, nan
        return out.str();
      };
      // Checked before anything connects: NaN passes every range
      // comparison, and a tiny timeout would round to none.
      if (!std::isfinite(o->timeout) || o->timeout < 0 || o->timeout > 604800 || (o->timeout > 0 && o->timeout < 0.001))
        throw Error(make_error_code(errc::invalid_argument),
                    "-t/--timeout must be 0 (none) or between 0.001 and 604800 seconds, not " + shortest(o->timeout));
      auto const at_once = hosts_at_once(o->concurrency, "-f/--concurrency");
      FanoutOptions f;
      // Every argument is checked before the inventory is read or a host contacted.
      for (auto const& kv : o->env) {
        auto eq = kv.find('=');
        if (eq == std::string::npos)
          throw Error(make_error_code(errc::invalid_argument), "-e/--env '" + kv + "' is not KEY=VALUE");
        auto name = kv.substr(0, eq);
        if (!shell::is_valid_variable_name(name))
          throw Error(make_error_code(errc::invalid_argument),
                      "-e/--env '" + kv + "': '" + name + "' is not a variable name (letters, digits and _, not starting with a digit)");
        f.run.env[name] = kv.substr(eq + 1);
      }
      auto inventory = load_inventory(g);
      Runtime rt;
      auto hosts = make_hosts(rt, inventory, o->group);
      f.concurrency = at_once;
      f.fail_fast = o->fail_fast;
      f.run.timeout = std::chrono::milliseconds(static_cast<long long>(o->timeout * 1000));
      f.run.working_directory = o->cwd;
      std::size_t width = 0;
      for (auto const& h : hosts) width = std::max(width, h.name().size());
      std::mutex out_mutex;
      if (!g.json) {
        f.on_line = [&](std::string_view host, OutputLine const& line) {
          std::lock_guard lock(out_mutex);
          auto* stream = line.stream == Stream::out ? stdout : stderr;
          // fwrite, not printf's %s: the line's bytes pass through as they
          // are, NUL bytes included.
          std::string text(host);
          text.resize(std::max(width, host.size()), ' ');
          text += ": ";
          text += line.text;
          text += '\n';
          std::fwrite(text.data(), 1, text.size(), stream);
        };
      }
      Command cmd;
      if (o->shell) {
        std::string script;
        for (auto const& w : o->command) script += (script.empty() ? "" : " ") + w;
        cmd = Command::shell(script);
      } else {
        cmd = Command::args(o->command);
      }
      auto outcomes = run_on_hosts(hosts, cmd, f);
      if (g.json) {
        auto arr = nlohmann::json::array();
        for (auto const& out : outcomes) arr.push_back(outcome_to_json(out));
        print_json(arr);
        for (auto const& out : outcomes)
          for (auto [cut, name] : {std::pair{out.result.stdout_truncated, "stdout"}, std::pair{out.result.stderr_truncated, "stderr"}})
            if (cut)
              std::fprintf(stderr,
                           "%s: warning: %s was cut at %zu MiB in the JSON (\"%s_truncated\": true); write large output "
                           "to a file on the host instead\n",
                           out.host.c_str(), name, f.run.max_captured_bytes >> 20, name);
      }
      return summarize(outcomes, g.json);
    };
  });
}

}  // namespace clusterkit::cli
