// NasMount, the I/O half: one probe per host, the pure plan, at most one
// change per host, and a look at the mount table afterwards to confirm it.
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>

#include <future>

#include "clusterkit/nas.hpp"
#include "clusterkit/shell.hpp"
#include "core/coro.hpp"
#include "remote/run_each.hpp"
#include "core/block_on.hpp"

namespace clusterkit {
namespace detail {
namespace {

using asio::awaitable;
constexpr auto use_awaitable = asio::use_awaitable;

RunOptions probe_run() {
  RunOptions o;
  o.timeout = std::chrono::seconds(30);
  o.max_captured_bytes = 8u << 20;
  return o;
}

std::string failure_sentence(HostOutcome const& o, std::string_view what) {
  if (o.error) return o.result.message.empty() ? o.host + ": " + std::string(what) + ": " + o.error.message() : o.result.message;
  std::string err = o.result.stderr_text;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  if (auto nl = err.rfind('\n'); nl != std::string::npos) err = err.substr(nl + 1);
  return o.host + ": " + std::string(what) + " exited " + std::to_string(o.result.exit_code) + (err.empty() ? "" : ": " + err);
}

/// Writes `text` as the fstab (a backup of the old one beside it, then a
/// rename, so a reader never sees half a file).
Command fstab_write_command(std::string const& path) {
  auto f = shell::quote(path);
  return Command::shell("set -e\n"
                        "if [ -f " + f + " ]; then cp -p -- " + f + " " + f + ".clusterkit-backup; fi\n"
                        "ck_t=" + f + ".clusterkit-new.$$\n"
                        "cat > \"$ck_t\"\n"
                        "chmod 644 \"$ck_t\"\n"
                        "mv -f -- \"$ck_t\" " + f + "\n");
}

std::optional<MountEntry> entry_after(std::string const& stdout_text, std::string const& mount_point) {
  auto begin = stdout_text.find("@@ck-mountinfo\n");
  auto end = stdout_text.find("@@ck-mountinfo-end");
  if (begin == std::string::npos || end == std::string::npos || end < begin) return std::nullopt;
  auto mounts = parse_mountinfo(std::string_view(stdout_text).substr(begin + 15, end - begin - 15));
  return mount_at(mounts, mount_point);
}

awaitable<std::vector<HostOutcome>> run_each(std::vector<RunEachItem> items) {
  co_return co_await async_run_each(std::move(items), use_awaitable);
}

awaitable<std::vector<MountOutcome>> mount_or_unmount(NasSpec spec, std::vector<Host> hosts, bool unmount,
                                                     UnmountOptions uo) {
  co_await accept_every_cancellation();
  std::vector<MountOutcome> out(hosts.size());
  for (std::size_t i = 0; i < hosts.size(); ++i) out[i].host = hosts[i].name();
  bool const want_fstab = unmount ? uo.remove_fstab_entry : spec.persist;
  if (!unmount) {
    try {
      validate(spec, true);
    } catch (Error const& e) {
      for (auto& o : out) o.error = e.code(), o.action = "refuse", o.message = o.host + ": " + e.what();
      co_return out;
    }
  }

  // 1. Probe every host.
  FanoutOptions fo;
  fo.run = probe_run();
  auto probes = co_await async_run_on_hosts(hosts, Command::shell(mount_probe_script(spec, want_fstab)), fo, use_awaitable);

  // 2. Decide, per host.
  struct Step {
    std::size_t index;
    std::string script;
    std::optional<std::string> fstab;
  };
  std::vector<Step> steps;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    auto& o = out[i];
    if (!probes[i].ok()) {
      o.error = probes[i].error ? probes[i].error : make_error_code(errc::mount_failed);
      o.action = "refuse";
      o.message = failure_sentence(probes[i], "the mount probe");
      continue;
    }
    MountProbe probe;
    try {
      probe = parse_mount_probe(probes[i].result.stdout_text);
    } catch (Error const& e) {
      o.error = e.code();
      o.action = "refuse";
      o.message = o.host + ": " + e.what();
      continue;
    }
    if (!unmount) {
      auto plan = plan_mount(spec, probe, o.host);
      o.action = std::string(to_string(plan.action));
      o.message = plan.reason;
      if (plan.action == MountAction::refuse) {
        o.error = plan.refusal;
        continue;
      }
      if (plan.action == MountAction::keep) o.entry = mount_at(probe.mounts, spec.mount_point);
      steps.push_back({i, plan.script, plan.new_fstab});
    } else {
      auto plan = plan_unmount(spec, probe, o.host, uo);
      o.action = std::string(to_string(plan.action));
      o.message = plan.reason;
      o.entry = plan.entry;
      if (plan.action == UnmountAction::refuse) {
        o.error = plan.refusal;
        continue;
      }
      steps.push_back({i, plan.script, plan.new_fstab});
    }
  }
  if (co_await was_cancelled()) {
    for (auto& s : steps) out[s.index].error = make_error_code(errc::cancelled), out[s.index].message = out[s.index].host + ": cancelled before any change";
    co_return out;
  }

  // 3. Mount or unmount where needed, all hosts at once.
  std::vector<RunEachItem> changes;
  std::vector<std::size_t> changed_index;
  for (auto const& s : steps) {
    if (s.script.empty()) continue;
    RunOptions ro;
    ro.timeout = spec.timeout;
    ro.max_captured_bytes = 8u << 20;
    changes.push_back({hosts[s.index], Command::shell(s.script), ro});
    changed_index.push_back(s.index);
  }
  auto results = co_await run_each(std::move(changes));
  std::vector<bool> change_failed(hosts.size(), false);
  for (std::size_t k = 0; k < results.size(); ++k) {
    auto i = changed_index[k];
    auto& o = out[i];
    auto const& r = results[k];
    if (r.error == errc::timed_out) {
      o.error = make_error_code(errc::mount_failed);
      o.message = o.host + ": " + (unmount ? "unmounting " : "mounting ") + spec.source + " at " + spec.mount_point +
                  " did not finish within " + std::to_string(spec.timeout.count()) + " s and was stopped" +
                  (spec.kind == NasKind::nfs && !unmount ? "; can " + o.host + " reach the NFS server (port 2049)?" : "");
    } else if (r.error) {
      o.error = r.error;
      o.message = r.result.message.empty() ? o.host + ": " + r.error.message() : r.result.message;
    } else if (r.result.exit_code != 0) {
      o.error = make_error_code(errc::mount_failed);
      o.message = explain_mount_failure(spec, o.host, r.result.stderr_text, unmount);
    } else {
      auto after = entry_after(r.result.stdout_text, spec.mount_point);
      if (!unmount) {
        o.entry = after;
        if (!after) {
          o.error = make_error_code(errc::mount_failed);
          o.message = o.host + ": the mount command succeeded but nothing is mounted at " + spec.mount_point;
        } else {
          o.message = "mounted " + spec.source + " at " + spec.mount_point + " on " + o.host + " (" + after->fstype + ")";
        }
      } else {
        o.message = "unmounted " + (o.entry ? o.entry->source : spec.source) + " from " + spec.mount_point + " on " + o.host;
      }
    }
    if (o.error) change_failed[i] = true;
  }

  // 4. The fstab, where the mount is in place (or gone, for unmounts).
  std::vector<RunEachItem> writes;
  std::vector<std::size_t> write_index;
  for (auto const& s : steps) {
    if (!s.fstab || change_failed[s.index]) continue;
    RunOptions ro = probe_run();
    ro.stdin_data = *s.fstab;
    writes.push_back({hosts[s.index], fstab_write_command(spec.fstab_path), ro});
    write_index.push_back(s.index);
  }
  auto written = co_await run_each(std::move(writes));
  for (std::size_t k = 0; k < written.size(); ++k) {
    auto& o = out[write_index[k]];
    if (written[k].ok()) {
      o.fstab_changed = true;
      o.message += unmount ? "; its entry was removed from " + spec.fstab_path : "; " + spec.fstab_path + " has its entry";
    } else {
      o.error = make_error_code(errc::mount_failed);
      o.message += "; but " + spec.fstab_path + " could not be written: " + failure_sentence(written[k], "writing it");
    }
  }
  co_return out;
}

awaitable<NasCheckReport> check(NasSpec spec, std::vector<Host> hosts) {
  co_await accept_every_cancellation();
  FanoutOptions fo;
  fo.run = probe_run();
  auto tables = co_await async_run_on_hosts(
      hosts, Command::shell("echo @@ck-mountinfo\ncat /proc/self/mountinfo\necho @@ck-mountinfo-end\n"), fo, use_awaitable);
  std::vector<std::optional<std::vector<MountEntry>>> mounts;
  for (auto const& t : tables) {
    if (!t.ok()) {
      mounts.emplace_back();
      continue;
    }
    auto const& text = t.result.stdout_text;
    auto b = text.find("@@ck-mountinfo\n"), e = text.find("@@ck-mountinfo-end");
    if (b == std::string::npos || e == std::string::npos || e < b)
      mounts.emplace_back();
    else
      mounts.emplace_back(parse_mountinfo(std::string_view(text).substr(b + 15, e - b - 15)));
  }
  auto probe = co_await async_probe_nas(hosts, spec.mount_point, {}, use_awaitable);
  co_return evaluate_nas_check(spec.mount_point, mounts, probe);
}

// ---------------------------------------------------------------------------
// NAS

struct NasProbeOp : std::enable_shared_from_this<NasProbeOp> {
  std::vector<Host> hosts;
  asio::any_completion_handler<NasProbeSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  NasProbeReport report;
  std::vector<std::string> names;

  NasProbeOp(std::vector<Host> h, std::string path, std::string model_path, asio::any_completion_handler<NasProbeSignature> hd)
      : hosts(std::move(h)), handler(std::move(hd)), strand(asio::make_strand(hosts.front().get_executor())) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    report.path = std::move(path);
    report.model_path = std::move(model_path);
    report.token = random_hex(12);
    for (auto const& x : hosts) {
      names.push_back(x.name());
      report.reads.push_back({});
      report.reads.back().host = x.name();
    }
  }

  static RunOptions short_run() {
    RunOptions ro;
    ro.timeout = std::chrono::seconds(30);
    ro.max_captured_bytes = 64 * 1024;
    return ro;
  }

  // 1. Every host writes its own token file.
  void start() {
    std::vector<RunEachItem> items;
    for (std::size_t i = 0; i < hosts.size(); ++i)
      items.push_back({hosts[i], Command::shell(nas_write_script(report.path, report.token, i)), short_run()});
    async_run_each(std::move(items), asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostOutcome> outs) {
                     self->on_written(std::move(outs));
                   }));
  }

  void on_written(std::vector<HostOutcome> outs) {
    for (std::size_t i = 0; i < outs.size(); ++i) {
      auto& r = report.reads[i];
      auto const& text = outs[i].result.stdout_text;
      if (!outs[i].error && text.find("@@ck-nas-written") != std::string::npos) {
        r.written = true;
      } else if (auto p = text.find("@@ck-nas-error "); p != std::string::npos) {
        r.write_error = valid_utf8(first_line(std::string_view(text).substr(p + 15)));
      } else {
        r.write_error = failure_of(outs[i]);
      }
    }
    // 2. Every host lists the files it sees.
    FanoutOptions f;
    f.run = short_run();
    async_run_on_hosts(hosts, Command::shell(nas_read_script(report.path, report.token, hosts.size(), report.model_path)), std::move(f),
                       asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostOutcome> outs) {
                         self->on_read(std::move(outs));
                       }));
  }

  void on_read(std::vector<HostOutcome> outs) {
    for (std::size_t i = 0; i < outs.size(); ++i) {
      auto parsed = parse_nas_read_output(outs[i].host, report.token, names, valid_utf8(outs[i].result.stdout_text));
      auto& r = report.reads[i];
      parsed.written = r.written;
      parsed.write_error = r.write_error;
      if (outs[i].error || outs[i].result.exit_code != 0) parsed.error = failure_of(outs[i]);
      r = std::move(parsed);
    }
    // 3. Remove the files (each host removes what it can see; the writers
    // see their own).
    FanoutOptions f;
    f.run = short_run();
    async_run_on_hosts(hosts, Command::shell(nas_cleanup_script(report.path, report.token, hosts.size())), std::move(f),
                       asio::bind_executor(strand, [self = shared_from_this()](std::vector<HostOutcome>) { self->finish(); }));
  }

  void finish() { complete_on_associated(std::move(handler), strand, std::move(report)); }
};

}  // namespace

void start_nas_mount(NasSpec spec, std::vector<Host> hosts, bool unmount, UnmountOptions options,
                     asio::any_completion_handler<MountSignature> handler) {
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<MountOutcome>{});
    return;
  }
  auto names = std::make_shared<std::vector<std::string>>();
  for (auto const& h : hosts) names->push_back(h.name());
  auto ex = hosts.front().get_executor();
  launch<std::vector<MountOutcome>>(
      ex, std::move(handler),
      [spec = std::move(spec), hosts = std::move(hosts), unmount, options]() mutable {
        return mount_or_unmount(std::move(spec), std::move(hosts), unmount, options);
      },
      [names](std::exception_ptr ep) {
        std::vector<MountOutcome> out;
        for (auto const& n : *names) {
          MountOutcome o;
          o.host = n;
          o.error = make_error_code(errc::mount_failed);
          o.action = "refuse";
          o.message = n + ": " + exception_text(ep);
          out.push_back(std::move(o));
        }
        return out;
      });
}

void start_nas_check(NasSpec spec, std::vector<Host> hosts, asio::any_completion_handler<NasCheckSignature> handler) {
  auto path = spec.mount_point;
  if (hosts.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    NasCheckReport r;
    r.path = path;
    r.problems.push_back("no hosts to check");
    complete_on_associated(std::move(handler), fallback, std::move(r));
    return;
  }
  auto ex = hosts.front().get_executor();
  launch<NasCheckReport>(
      ex, std::move(handler),
      [spec = std::move(spec), hosts = std::move(hosts)]() mutable { return check(std::move(spec), std::move(hosts)); },
      [path](std::exception_ptr ep) {
        NasCheckReport r;
        r.path = path;
        r.problems.push_back("the check failed: " + exception_text(ep));
        return r;
      });
}

void start_probe_nas(std::vector<Host> hosts, std::string path, std::string model_path,
                     asio::any_completion_handler<NasProbeSignature> handler) {
  if (hosts.empty() || path.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    NasProbeReport empty;
    empty.path = path;
    complete_on_associated(std::move(handler), fallback, std::move(empty));
    return;
  }
  auto op = std::make_shared<NasProbeOp>(std::move(hosts), std::move(path), std::move(model_path), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

}  // namespace detail

namespace {
asio::any_io_executor executor_of(std::vector<Host> const& hosts) {
  return hosts.empty() ? asio::any_io_executor() : hosts.front().get_executor();
}
}  // namespace

std::vector<MountOutcome> mount_nas(NasMount const& nas, std::vector<Host> hosts) {
  auto ex = executor_of(hosts);
  return detail::block_on_value<std::vector<MountOutcome>>(
      ex, "clusterkit::mount_nas", [&](auto h) { nas.async_mount(std::move(hosts), std::move(h)); });
}

std::vector<MountOutcome> unmount_nas(NasMount const& nas, std::vector<Host> hosts, UnmountOptions options) {
  auto ex = executor_of(hosts);
  return detail::block_on_value<std::vector<MountOutcome>>(
      ex, "clusterkit::unmount_nas", [&](auto h) { nas.async_unmount(std::move(hosts), options, std::move(h)); });
}

NasCheckReport check_nas(NasMount const& nas, std::vector<Host> hosts) {
  auto ex = executor_of(hosts);
  return detail::block_on_value<NasCheckReport>(ex, "clusterkit::check_nas",
                                                [&](auto h) { nas.async_check(std::move(hosts), std::move(h)); });
}

}  // namespace clusterkit
