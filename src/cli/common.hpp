// Shared pieces of the command-line tool: global options, inventory lookup,
// output helpers. Each verb lives in its own file and registers itself.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/runtime.hpp"

namespace clusterkit::cli {

struct GlobalOptions {
  std::string inventory;
  bool json = false;
  bool verbose = false;
};

/// The inventory to use: -i, else $CLUSTERKIT_INVENTORY, else ./inventory.yaml,
/// else the default lab's. Throws Error naming what was tried.
Inventory load_inventory(GlobalOptions const& g);

/// Hosts of `selector` in `inventory`, as Host handles on `rt`.
std::vector<Host> make_hosts(Runtime& rt, Inventory const& inventory, std::string const& selector);

nlohmann::json outcome_to_json(HostOutcome const& o);

/// Prints a --json answer on stdout, with "clusterkit_version" in it (in
/// the object; in each object of a per-host array), so that a result kept
/// in a file says which clusterkit made it. Invalid UTF-8 is replaced.
void print_json(nlohmann::json j);

/// `text` for a person's terminal: a path, a flag's value, a host's or a
/// program's message inside a report may carry ESC and other control bytes
/// (issue 15: a `--disk` value with an ANSI sequence reached the terminal
/// through facts' problem line); they become '?', as in every error the CLI
/// prints. Output that is the data itself (exec's, logs', --json, --raw) is
/// left alone.
std::string terminal_safe(std::string_view text);

/// A report on stdout, terminal-safe (above).
void print_report(std::string_view text);

/// A log read to its end (`serve logs`, `logs SPEC`): its bytes as they are
/// on stdout, or with --json one object {"ok", "text"} (or {"ok": false,
/// "message"}); a failure's message on stderr. 0 or 1.
int print_log(GlobalOptions const& g, std::error_code ec, std::string const& text);

/// Why --json and --follow do not go together.
inline constexpr char const* logs_json_follow_refusal =
    "--json with --follow: a followed log is a stream of lines, not one JSON document; leave out --json, or --follow "
    "to get the log so far as JSON";

/// One line on stdout, flushed at once (`logs --follow`: a pipe or a
/// terminal sees each line as it comes).
void print_line(std::string_view line);

/// How many hosts a verb works on at once (`-f`, `-j`), checked before
/// anything connects: 1 to 100000, else Error(invalid_argument) naming the flag.
std::size_t hosts_at_once(long long value, std::string const& flag);

/// A duration flag in seconds, checked before anything connects: finite and
/// between `least` and `most`, or 0 when `zero_means` says what 0 is ("none",
/// "the default"). Else Error(invalid_argument) naming the flag, the range
/// and the value (NaN passes every comparison; 0.5 would round to 0).
std::chrono::milliseconds checked_seconds(double value, std::string const& flag, double least, double most,
                                          char const* zero_means = nullptr);

/// A whole-number flag, checked before anything connects: `least` to
/// `most`, else Error(invalid_argument) naming the flag, the range, the
/// value and (`what`) what it counts.
long long checked_count(long long value, std::string const& flag, long long least, long long most, char const* what = nullptr);
/// A number flag: finite and `least` to `most`, else the same error.
double checked_number(double value, std::string const& flag, double least, double most, char const* what = nullptr);

/// Every unsigned option of `app` and its verbs refuses a leading '-'
/// (CLI11 would read "-1" as 2^64 - 1).
void refuse_negative_whole_numbers(CLI::App& app);

/// Print a human summary of fan-out outcomes to stderr; returns the exit
/// status for the tool (0 when every host succeeded).
int summarize(std::vector<HostOutcome> const& outcomes, bool quiet_success = false);

/// The API key for an endpoint: --api-key (or $OPENAI_API_KEY), else the
/// first line of --api-key-file, else the key `serve up` stored for that
/// endpoint (so chat and bench need nothing more after a deployment).
std::string resolve_api_key(std::string const& given, std::string const& key_file, std::string const& url);

using Action = std::function<int()>;

/// Each verb registers its subcommand and sets `action` when chosen.
void register_exec(CLI::App& app, GlobalOptions& g, Action& action);
void register_transfer(CLI::App& app, GlobalOptions& g, Action& action);
void register_inventory(CLI::App& app, GlobalOptions& g, Action& action);
void register_lab(CLI::App& app, GlobalOptions& g, Action& action);
void register_connection(CLI::App& app, GlobalOptions& g, Action& action);
void register_model(CLI::App& app, GlobalOptions& g, Action& action);
void register_plan(CLI::App& app, GlobalOptions& g, Action& action);
void register_chat(CLI::App& app, GlobalOptions& g, Action& action);
void register_bench(CLI::App& app, GlobalOptions& g, Action& action);
void register_facts(CLI::App& app, GlobalOptions& g, Action& action);
void register_preflight(CLI::App& app, GlobalOptions& g, Action& action);
void register_nccl_check(CLI::App& app, GlobalOptions& g, Action& action);
void register_nas(CLI::App& app, GlobalOptions& g, Action& action);
void register_ray(CLI::App& app, GlobalOptions& g, Action& action);
void register_serve(CLI::App& app, GlobalOptions& g, Action& action);
/// `up|status|logs|down SPEC`.
void register_deploy(CLI::App& app, GlobalOptions& g, Action& action);
/// `plan SPEC`: the deployment's dry run.
int run_deployment_plan(GlobalOptions const& g, std::string const& spec_path, bool full = false);
/// `model download|sync`; after register_model (it adds to `model`).
void register_store(CLI::App& app, GlobalOptions& g, Action& action);

}  // namespace clusterkit::cli
