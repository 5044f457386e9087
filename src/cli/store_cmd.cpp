// `clusterkit model download|sync` and `model verify -g`: put a model on the
// NAS and check every GPU host sees it whole. Progress goes to stderr: one
// line redrawn in place on a terminal, a line every few seconds otherwise.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "clusterkit/model_store.hpp"
#include "common.hpp"

namespace clusterkit::cli {
namespace {

std::string size_text(double bytes) {
  char buf[32];
  char const* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

/// Draws TransferProgress on stderr.
class ProgressLine {
public:
  explicit ProgressLine(bool quiet) : quiet_(quiet), tty_(::isatty(STDERR_FILENO) != 0) {}
  ~ProgressLine() { done(); }

  ProgressCallback callback() {
    return [this](TransferProgress const& p) { draw(p); };
  }

  void done() {
    if (drawn_ && tty_) std::fputs("\n", stderr);
    drawn_ = false;
  }

private:
  void draw(TransferProgress const& p) {
    if (quiet_) return;
    auto now = std::chrono::steady_clock::now();
    bool finished = p.bytes_total && p.bytes_done >= p.bytes_total;
    if (p.bytes_done < 65536 && !p.bytes_total && !p.files_total) return;  // nothing to say yet
    if (!tty_ && (finished ? finished_shown_ : now - last_ < std::chrono::seconds(5))) return;
    finished_shown_ = finished_shown_ || finished;
    last_ = now;
    std::string line = p.host + " " + p.phase + " " + size_text(static_cast<double>(p.bytes_done));
    if (p.bytes_total) {
      char pct[16];
      std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total));
      line += " / " + size_text(static_cast<double>(p.bytes_total)) + pct;
    }
    if (p.bytes_per_second > 0) line += "  " + size_text(p.bytes_per_second) + "/s";
    if (p.files_total) line += "  files " + std::to_string(p.files_done) + "/" + std::to_string(p.files_total);
    if (p.bytes_total && p.bytes_per_second > 0 && !finished) {
      auto left = static_cast<long>(static_cast<double>(p.bytes_total - p.bytes_done) / p.bytes_per_second);
      char eta[32];
      std::snprintf(eta, sizeof eta, "  ETA %ld:%02ld", left / 60, left % 60);
      line += eta;
    }
    if (!p.file.empty()) line += "  " + p.file;
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      drawn_ = true;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

  bool quiet_;
  bool tty_;
  bool drawn_ = false;
  bool finished_shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

Host one_host(Runtime& rt, GlobalOptions const& g, std::string const& selector) {
  auto hosts = load_inventory(g).select(selector);
  if (hosts.size() != 1)
    throw Error(make_error_code(errc::invalid_argument),
                "--on must name one host; '" + selector + "' matches " + std::to_string(hosts.size()));
  return rt.host(hosts.front().spec);
}

void print_verify(VerifyReport const& r, std::string const& where) {
  for (auto const& w : r.warnings) std::fprintf(stderr, "warning: %s\n", terminal_safe(w).c_str());
  for (auto const& p : r.problems) std::printf("problem: %s\n", terminal_safe(p.message).c_str());
  std::printf("%s: %zu shards, %zu tensors, %s; %s\n", terminal_safe(where).c_str(), r.shards_checked, r.tensors_checked,
              size_text(static_cast<double>(r.bytes_expected)).c_str(), r.ok() ? "complete" : "INCOMPLETE");
}

}  // namespace

void register_store(CLI::App& app, GlobalOptions& g, Action& action) {
  auto* model = app.get_subcommand("model");

  struct DownloadArgs {
    std::string host;
    std::string hub = "modelscope";
    std::string root = "/mnt";
    std::string layout = "modelscope";
    std::string token_env;
    double timeout = 0;
    bool quiet = false;
    bool no_verify = false;
    DownloadSpec spec;
  };
  auto d = std::make_shared<DownloadArgs>();
  auto* download = model->add_subcommand(
      "download", "Download a model on one host with the hub's CLI (resumed on failure), then check it there");
  download->add_option("model", d->spec.model_id, "Model id, e.g. Qwen/Qwen2.5-72B-Instruct")->required();
  download->add_option("--on", d->host, "The host that downloads (e.g. the CPU server)")->required();
  download->add_option("--hub", d->hub, "modelscope or huggingface")
      ->check(CLI::IsMember({"modelscope", "ms", "huggingface", "hf"}))
      ->capture_default_str();
  download->add_option("--revision", d->spec.revision, "Branch, tag or commit to pin");
  download->add_option("--endpoint", d->spec.endpoint, "A mirror or private hub, e.g. https://hf-mirror.com");
  download->add_option("--token-env", d->token_env,
                       "Environment variable holding an access token (default: HF_TOKEN or MODELSCOPE_API_TOKEN, if "
                       "set); the token travels on stdin, never in an argument or a log");
  download->add_option("--dir", d->spec.local_dir, "Folder on the host (default: ROOT/<folder in --layout>)");
  download->add_option("--root", d->root, "Store root when --dir is not given")->capture_default_str();
  download->add_option("--layout", d->layout, "Folder naming under --root: modelscope (dots become ___) or plain")
      ->check(CLI::IsMember({"modelscope", "plain"}))
      ->capture_default_str();
  download->add_option("--include", d->spec.include, "Only files matching this glob (repeatable)");
  download->add_option("--exclude", d->spec.exclude, "Skip files matching this glob (repeatable)");
  download->add_option("--cli", d->spec.cli, "The hub CLI to run on the host (default: found on its PATH)");
  download->add_option("--attempts", d->spec.attempts, "Runs before giving up; each resumes")->capture_default_str();
  download->add_option("--max-workers", d->spec.max_workers, "Files downloaded at once")->capture_default_str();
  download->add_option("--timeout", d->timeout, "Seconds for the whole download (0: none)");
  download->add_flag("--no-verify", d->no_verify, "Skip the check of the result");
  download->add_flag("-q,--quiet", d->quiet, "No progress");
  download->callback([&g, &action, d] {
    action = [&g, d] {
      auto spec = d->spec;
      spec.hub = *hub_from_string(d->hub);
      spec.verify = !d->no_verify;
      spec.timeout = std::chrono::duration_cast<std::chrono::seconds>(checked_seconds(d->timeout, "--timeout", 1, 604800, "none"));
      checked_count(spec.attempts, "--attempts", 1, 100, "runs before giving up");
      checked_count(spec.max_workers, "--max-workers", 1, 256, "files downloaded at once");
      auto var = !d->token_env.empty() ? d->token_env : spec.hub == Hub::huggingface ? "HF_TOKEN" : "MODELSCOPE_API_TOKEN";
      if (char const* t = std::getenv(var.c_str()); t && *t) spec.token = t;
      else if (!d->token_env.empty())
        throw Error(make_error_code(errc::invalid_argument), "--token-env " + d->token_env + ": that variable is not set");
      ModelStore store({.root = d->root, .layout = d->layout == "plain" ? ModelLayout::plain : ModelLayout::modelscope});
      Runtime rt;
      auto host = one_host(rt, g, d->host);
      ProgressLine line(d->quiet || g.json);
      std::error_code ec;  // the failure is printed from the result (JSON too)
      auto result = download_model(store, host, spec, line.callback(), ec);
      line.done();
      if (g.json) print_json(result.to_json());
      else if (result.ok()) std::printf("%s (%.1f s, %d attempt%s)\n", terminal_safe(result.message).c_str(), result.seconds, result.attempts, result.attempts == 1 ? "" : "s");
      else std::fprintf(stderr, "clusterkit: %s\n", terminal_safe(result.message).c_str());
      return result.ok() ? 0 : 1;
    };
  });

  struct SyncArgs {
    std::string host;
    double timeout = 0;
    bool quiet = false;
    bool no_verify = false;
    SyncSpec spec;
  };
  auto s = std::make_shared<SyncArgs>();
  auto* sync = model->add_subcommand(
      "sync", "Copy a model folder into the NAS on one host (rsync, several streams), then check the copy");
  sync->add_option("source", s->spec.source, "The folder to copy (on the host)")->required();
  sync->add_option("destination", s->spec.destination, "Where it goes, e.g. /mnt/Qwen/Qwen2___5-72B-Instruct")->required();
  sync->add_option("--on", s->host, "The host that copies (it sees both folders)")->required();
  sync->add_option("--streams", s->spec.streams, "rsync processes at once (files dealt largest first)")->capture_default_str();
  sync->add_option("--exclude", s->spec.exclude, "Leave out files matching this glob (repeatable)");
  sync->add_flag("--delete", s->spec.delete_extraneous,
                 "Afterwards remove files in the destination that the source lacks (or --exclude left out)");
  sync->add_flag("--checksum", s->spec.checksum, "Compare by checksum, not size and time (reads both sides)");
  sync->add_option("--timeout", s->timeout, "Seconds for the whole copy (0: none)");
  sync->add_flag("--no-verify", s->no_verify, "Skip the check of the copy");
  sync->add_flag("-q,--quiet", s->quiet, "No progress");
  sync->callback([&g, &action, s] {
    action = [&g, s] {
      auto spec = s->spec;
      spec.verify = !s->no_verify;
      spec.timeout = std::chrono::duration_cast<std::chrono::seconds>(checked_seconds(s->timeout, "--timeout", 1, 604800, "none"));
      checked_count(spec.streams, "--streams", 1, 256, "rsync processes at once");
      Runtime rt;
      auto host = one_host(rt, g, s->host);
      ProgressLine line(s->quiet || g.json);
      std::error_code ec;  // the failure is printed from the result (JSON too)
      auto result = sync_model(ModelStore(), host, spec, line.callback(), ec);
      line.done();
      if (g.json) print_json(result.to_json());
      else if (result.ok()) std::printf("%s (%.1f s)\n", terminal_safe(result.message).c_str(), result.seconds);
      else std::fprintf(stderr, "clusterkit: %s\n", terminal_safe(result.message).c_str());
      return result.ok() ? 0 : 1;
    };
  });
}

int verify_on_hosts(GlobalOptions const& g, std::string const& selector, std::string const& model, std::string const& root,
                    std::string const& container_root, bool read_all, bool checksums) {
  ModelStore store({.root = root.empty() ? "/mnt" : root, .container_root = container_root});
  auto dir = model.starts_with("/") ? model : store.path_for(model);
  Runtime rt;
  auto hosts = make_hosts(rt, load_inventory(g), selector);
  RemoteVerifyOptions o;
  o.read_all = read_all;
  o.checksums = checksums;
  auto seen = verify_model_on_hosts(store, hosts, dir, o);
  std::size_t ok = 0;
  for (auto const& v : seen) ok += v.ok();
  if (g.json) {
    nlohmann::json j = nlohmann::json::array();
    for (auto const& v : seen) j.push_back(v.to_json());
    print_json(j);
  } else {
    for (auto const& v : seen) {
      if (v.error && v.report.problems.empty()) {
        std::printf("%s: %s\n", v.host.c_str(), terminal_safe(v.message).c_str());
        continue;
      }
      std::printf("%s: ", v.host.c_str());
      print_verify(v.report, v.dir + (v.container_path != v.dir ? " (" + v.container_path + " in the container)" : ""));
    }
    std::fprintf(stderr, "%zu/%zu hosts see %s complete\n", ok, seen.size(), terminal_safe(dir).c_str());
  }
  return ok == seen.size() ? 0 : 1;
}

}  // namespace clusterkit::cli
