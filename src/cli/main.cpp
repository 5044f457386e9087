// clusterkit: deploy and drive a model-serving cluster over OpenSSH.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "clusterkit/version.hpp"
#include "common.hpp"
#include "signals.hpp"
#include "core/text.hpp"

namespace clusterkit::cli {

Inventory load_inventory(GlobalOptions const& g) {
  namespace fs = std::filesystem;
  if (!g.inventory.empty()) return Inventory::load(g.inventory);
  std::vector<std::string> tried;
  if (char const* env = std::getenv("CLUSTERKIT_INVENTORY"); env && *env) return Inventory::load(env);
  tried.push_back("$CLUSTERKIT_INVENTORY (unset)");
  for (auto const* candidate : {"inventory.yaml", "inventory.yml", "inventory.json", "/run/clusterkit/lab-ck/inventory.yaml"}) {
    if (fs::exists(candidate)) return Inventory::load(candidate);
    tried.push_back(candidate);
  }
  std::string list;
  for (auto const& t : tried) list += (list.empty() ? "" : ", ") + t;
  throw Error(make_error_code(errc::inventory_invalid),
              "no inventory given and none found (tried " + list +
                  "). Pass -i FILE, or run `clusterkit lab up` to make a lab and its inventory.");
}

std::vector<Host> make_hosts(Runtime& rt, Inventory const& inventory, std::string const& selector) {
  std::vector<Host> hosts;
  for (auto const& h : inventory.select(selector)) hosts.push_back(rt.host(h.spec));
  return hosts;
}

void print_line(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string terminal_safe(std::string_view text) { return detail::without_control_characters(text); }

void print_report(std::string_view text) { std::fputs(terminal_safe(text).c_str(), stdout); }

int print_log(GlobalOptions const& g, std::error_code ec, std::string const& text) {
  if (g.json) {
    print_json(ec ? nlohmann::json{{"ok", false}, {"message", text}} : nlohmann::json{{"ok", true}, {"text", text}});
  } else if (ec) {
    std::fprintf(stderr, "%s\n", terminal_safe(text).c_str());
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  return ec ? 1 : 0;
}

void print_json(nlohmann::json j) {
  auto stamp = [](nlohmann::json& o) {
    if (o.is_object() && !o.contains("clusterkit_version")) o["clusterkit_version"] = version_string;
  };
  if (j.is_array()) {
    for (auto& e : j) stamp(e);
  } else {
    stamp(j);
  }
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

std::size_t hosts_at_once(long long value, std::string const& flag) {
  if (value < 1 || value > 100000)
    throw Error(make_error_code(errc::invalid_argument),
                flag + " must be between 1 and 100000, not " + std::to_string(value) + " (how many hosts are worked on at once)");
  return static_cast<std::size_t>(value);
}

void refuse_negative_whole_numbers(CLI::App& app) {
  // CLI11 reads "-1" into an unsigned option as 18446744073709551615: a
  // sign is refused before conversion, naming the flag.
  for (auto* opt : app.get_options())
    if (opt->get_type_name().rfind("UINT", 0) == 0)
      opt->check(CLI::Validator(
          [](std::string& text) {
            auto const at = text.find_first_not_of(" \t");
            return at != std::string::npos && text[at] == '-' ? "expected a whole number from 0 up, not " + text : std::string();
          },
          "", "not negative"));
  for (auto* sub : app.get_subcommands({})) refuse_negative_whole_numbers(*sub);
}

long long checked_count(long long value, std::string const& flag, long long least, long long most, char const* what) {
  if (value < least || value > most)
    throw Error(make_error_code(errc::invalid_argument), flag + " must be between " + std::to_string(least) + " and " +
                                                             std::to_string(most) + ", not " + std::to_string(value) +
                                                             (what ? std::string(" (") + what + ")" : std::string()));
  return value;
}

double checked_number(double value, std::string const& flag, double least, double most, char const* what) {
  if (!std::isfinite(value) || value < least || value > most) {
    std::ostringstream out;
    out << flag << " must be a number between " << least << " and " << most << ", not " << value
        << (what ? std::string(" (") + what + ")" : std::string());
    throw Error(make_error_code(errc::invalid_argument), out.str());
  }
  return value;
}

std::chrono::milliseconds checked_seconds(double value, std::string const& flag, double least, double most,
                                          char const* zero_means) {
  if (zero_means && value == 0) return std::chrono::milliseconds(0);
  if (!std::isfinite(value) || value < least || value > most) {
    std::ostringstream out;
    out << flag << " must be " << (zero_means ? std::string("0 (") + zero_means + ") or " : std::string()) << "between "
        << least << " and " << most << " seconds, not " << value;
    throw Error(make_error_code(errc::invalid_argument), out.str());
  }
  return std::chrono::milliseconds(static_cast<long long>(value * 1000));
}

nlohmann::json outcome_to_json(HostOutcome const& o) {
  nlohmann::json j;
  j["host"] = o.host;
  j["ok"] = o.ok();
  j["exit_code"] = o.result.exit_code;
  j["signal"] = o.result.signal;
  j["stdout"] = o.result.stdout_text;
  j["stderr"] = o.result.stderr_text;
  // Captured output is capped (RunOptions::max_captured_bytes, 64 MiB):
  // say so rather than pass a cut stream off as the whole of it.
  j["stdout_truncated"] = o.result.stdout_truncated;
  j["stderr_truncated"] = o.result.stderr_truncated;
  j["duration_ms"] = std::chrono::duration<double, std::milli>(o.result.duration).count();
  if (o.error) {
    j["error"] = o.error.message();
    j["error_code"] = o.error.value();
    j["message"] = o.result.message;
  } else {
    j["error"] = nullptr;
  }
  return j;
}

int summarize(std::vector<HostOutcome> const& outcomes, bool quiet_success) {
  std::fflush(stdout);  // the hosts' output first, then the verdict
  std::size_t ok = 0;
  for (auto const& o : outcomes) {
    if (o.ok()) {
      ++ok;
      continue;
    }
    if (o.error)
      std::fprintf(stderr, "%s: error: %s\n", o.host.c_str(),
                   terminal_safe(o.result.message.empty() ? o.error.message() : o.result.message).c_str());
    else if (o.result.signal)
      std::fprintf(stderr, "%s: exit %d (signal %d)\n", o.host.c_str(), o.result.exit_code, o.result.signal);
    else
      std::fprintf(stderr, "%s: exit %d\n", o.host.c_str(), o.result.exit_code);
  }
  if (!quiet_success || ok != outcomes.size())
    std::fprintf(stderr, "%zu/%zu hosts succeeded\n", ok, outcomes.size());
  return ok == outcomes.size() ? 0 : 1;
}

}  // namespace clusterkit::cli

int main(int argc, char** argv) {
  using namespace clusterkit;
  CLI::App app{"clusterkit: run a model-serving cluster over OpenSSH"};
  app.require_subcommand(1);
  cli::GlobalOptions g;
  app.add_option("-i,--inventory", g.inventory, "Inventory file (YAML or JSON)")->envname("CLUSTERKIT_INVENTORY");
  app.add_flag("--json", g.json, "Machine-readable output on stdout");
  app.add_flag("-v,--verbose", g.verbose, "Log what clusterkit does (to stderr)");
  cli::Action action;
  cli::register_exec(app, g, action);
  cli::register_transfer(app, g, action);
  cli::register_inventory(app, g, action);
  cli::register_connection(app, g, action);
  cli::register_lab(app, g, action);
  cli::register_model(app, g, action);
  cli::register_store(app, g, action);
  cli::register_plan(app, g, action);
  cli::register_chat(app, g, action);
  cli::register_bench(app, g, action);
  cli::register_facts(app, g, action);
  cli::register_preflight(app, g, action);
  cli::register_nccl_check(app, g, action);
  cli::register_nas(app, g, action);
  cli::register_ray(app, g, action);
  cli::register_serve(app, g, action);
  cli::register_deploy(app, g, action);
  app.set_version_flag("--version", std::string("clusterkit ") + version_string);
  cli::refuse_negative_whole_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    // A verb that is not one (CLI11 says "A subcommand is required"): name
    // it, list the verbs, suggest the nearest.
    if (app.get_subcommands().empty() && !app.remaining().empty()) {
      auto const word = app.remaining().front();
      std::vector<std::string> verbs;
      for (auto const* sub : app.get_subcommands({})) verbs.push_back(sub->get_name());
      auto near = detail::suggest(word, verbs);
      std::fprintf(stderr, "clusterkit: unknown command '%s'%s; commands are: %s\n", detail::without_control_characters(word).c_str(),
                   near ? ("; did you mean '" + *near + "'?").c_str() : "", detail::join(verbs).c_str());
      return 2;
    }
    // CLI11's own codes (104 "could not convert", 109 "extra arguments",
    // ...) become the one status for a command line that is wrong: 2,
    // nothing done. --help and --version stay 0.
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // CLI11's message quotes the argument as typed: printed safe for the
    // terminal (an ESC in a value is '?'), as every other error is.
    std::fprintf(stderr, "%s\nRun with --help for more information.\n", detail::without_control_characters(e.what()).c_str());
    return 2;
  } catch (std::exception const& e) {
    // A check made while the command line is read (serve up without
    // --model, ...): the command line is wrong, nothing was done.
    std::fprintf(stderr, "clusterkit: %s\n", detail::without_control_characters(e.what()).c_str());
    return 2;
  }
  auto logger = spdlog::stderr_color_mt("clusterkit");
  spdlog::set_default_logger(logger);
  spdlog::set_level(g.verbose ? spdlog::level::debug : spdlog::level::warn);
  cli::SignalsToStop signals;
  try {
    int rc = action ? action() : 2;
    // Stopped by Ctrl-C or SIGTERM: the operation said what it left.
    return signals.stop_requested() ? 130 : rc;
  } catch (Error const& e) {
    // Messages quote what hosts, servers and files said: printed safe for
    // the terminal (control characters and invalid UTF-8 as '?').
    std::fprintf(stderr, "clusterkit: %s\n", detail::without_control_characters(e.what()).c_str());
    return e.code() == make_error_code(errc::cancelled) || signals.stop_requested() ? 130 : 2;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "clusterkit: %s\n", detail::without_control_characters(e.what()).c_str());
    return 2;
  }
}
