// `clusterkit upload` / `clusterkit download`: files through the shared
// connection, placed atomically, with progress.
#include <optional>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

#include "clusterkit/runtime.hpp"
#include "common.hpp"

namespace clusterkit::cli {

void register_transfer(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group = "all";
    std::string host;
    std::string from, to;
    std::string mode;
    long long concurrency = 4;
    bool fail_fast = false;
    bool quiet = false;
  };
  auto up = std::make_shared<Options>();
  auto* u = app.add_subcommand("upload", "Copy a local file to every selected host");
  u->add_option("-g,--group", up->group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  u->add_option("--mode", up->mode, "Octal permissions for the placed file (e.g. 0755)");
  u->add_option("-j,--concurrency", up->concurrency, "Hosts copied to at once (they share this machine's uplink)")
      ->capture_default_str();
  u->add_flag("--fail-fast", up->fail_fast, "Stop at the first host that fails; the rest are skipped");
  u->add_flag("-q,--quiet", up->quiet, "No progress");
  u->add_option("local", up->from, "Local file")->required();
  u->add_option("remote", up->to, "Path on the hosts")->required();
  u->callback([&g, &action, up] {
    action = [&g, up] {
      // Octal permission bits, 0 to 07777, and nothing else: checked before
      // the inventory is read ("9999" used to fail in stoi, "0755;x" to pass as 0755).
      std::optional<unsigned> mode;
      if (!up->mode.empty()) {
        bool octal = up->mode.size() <= 5 && up->mode.find_first_not_of("01234567") == std::string::npos;
        unsigned value = octal ? static_cast<unsigned>(std::stoul(up->mode, nullptr, 8)) : 0;
        if (!octal || value > 07777)
          throw Error(make_error_code(errc::invalid_argument),
                      "--mode '" + up->mode + "' is not octal permission bits (0 to 7777, e.g. 0644 or 755)");
        mode = value;
      }
      auto const at_once = hosts_at_once(up->concurrency, "-j/--concurrency");
      auto inventory = load_inventory(g);
      Runtime rt;
      auto hosts = make_hosts(rt, inventory, up->group);
      UploadFanoutOptions options;
      options.concurrency = at_once;
      options.fail_fast = up->fail_fast;
      if (mode) options.transfer.mode = *mode;
      if (!up->quiet && !g.json) {
        // A line per host every 8 MiB and at the end; callbacks come from
        // the runtime's one thread, so the map needs no lock.
        auto last = std::make_shared<std::map<std::string, std::uint64_t, std::less<>>>();
        options.on_progress = [last](std::string_view host, std::uint64_t done, std::uint64_t total) {
          auto& seen = (*last)[std::string(host)];
          if (done != total && done - seen < (8u << 20)) return;
          seen = done;
          std::fprintf(stderr, "%.*s: %llu/%llu bytes\n", static_cast<int>(host.size()), host.data(),
                       static_cast<unsigned long long>(done), static_cast<unsigned long long>(total));
        };
      }
      auto transfers = upload_to_hosts(std::move(hosts), up->from, up->to, std::move(options));
      std::vector<HostOutcome> outcomes;
      for (auto const& t : transfers) {
        HostOutcome o;
        o.host = t.host;
        o.error = t.error;
        o.result.exit_code = t.error ? -1 : 0;
        o.result.message = t.result.message;
        o.result.duration = t.result.duration;
        outcomes.push_back(std::move(o));
      }
      if (g.json) {
        auto arr = nlohmann::json::array();
        for (std::size_t i = 0; i < outcomes.size(); ++i) {
          auto j = outcome_to_json(outcomes[i]);
          j["bytes"] = transfers[i].result.bytes;
          arr.push_back(std::move(j));
        }
        print_json(arr);
      }
      return summarize(outcomes, g.json);
    };
  });

  auto down = std::make_shared<Options>();
  auto* d = app.add_subcommand("download", "Copy a file from one host to this machine");
  d->add_option("host", down->host, "Host name in the inventory")->required();
  d->add_option("remote", down->from, "Path on the host")->required();
  d->add_option("local", down->to, "Local path")->required();
  d->add_flag("-q,--quiet", down->quiet, "No progress");
  d->callback([&g, &action, down] {
    action = [&g, down] {
      auto inventory = load_inventory(g);
      Runtime rt;
      auto hosts = make_hosts(rt, inventory, down->host);
      if (hosts.size() != 1)
        throw Error(make_error_code(errc::invalid_argument),
                    "download takes one host; '" + down->host + "' selects " + std::to_string(hosts.size()));
      TransferOptions t;
      if (!down->quiet && !g.json)
        t.on_progress = [last = std::uint64_t(0)](std::uint64_t done, std::uint64_t total) mutable {
          if (done != total && done - last < (8u << 20)) return;
          last = done;
          std::fprintf(stderr, "%llu/%llu bytes\n", static_cast<unsigned long long>(done),
                       static_cast<unsigned long long>(total));
        };
      auto r = download(hosts[0], down->from, down->to, t);
      if (g.json)
        print_json({{"host", hosts[0].name()}, {"bytes", r.bytes},
                    {"duration_ms", std::chrono::duration<double, std::milli>(r.duration).count()}});
      return 0;
    };
  });
}

}  // namespace clusterkit::cli
