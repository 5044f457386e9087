// `clusterkit upload` / `clusterkit download`: files through the shared
// connection, placed atomically, with progress.
#include <cstdio>
#include <future>
#include <iostream>
#include <mutex>

#include "common.hpp"

namespace clusterkit::cli {

void register_transfer(CLI::App& app, GlobalOptions& g, Action& action) {
  struct Options {
    std::string group = "all";
    std::string host;
    std::string from, to;
    std::string mode;
    bool quiet = false;
  };
  auto up = std::make_shared<Options>();
  auto* u = app.add_subcommand("upload", "Copy a local file to every selected host");
  u->add_option("-g,--group", up->group, "Hosts: all, a group, a host, role:NAME, or a comma list")->capture_default_str();
  u->add_option("--mode", up->mode, "Octal permissions for the placed file (e.g. 0755)");
  u->add_flag("-q,--quiet", up->quiet, "No progress");
  u->add_option("local", up->from, "Local file")->required();
  u->add_option("remote", up->to, "Path on the hosts")->required();
  u->callback([&g, &action, up] {
    action = [&g, up] {
      auto inventory = load_inventory(g);
      Runtime rt;
      auto hosts = make_hosts(rt, inventory, up->group);
      TransferOptions t;
      if (!up->mode.empty()) t.mode = std::stoi(up->mode, nullptr, 8);
      std::vector<HostOutcome> outcomes(hosts.size());
      std::vector<std::promise<void>> promises(hosts.size());
      std::mutex m;
      for (std::size_t i = 0; i < hosts.size(); ++i) {
        auto opts = t;
        if (!up->quiet && !g.json)
          opts.on_progress = [&, name = hosts[i].name(), last = std::uint64_t(0)](std::uint64_t done, std::uint64_t total) mutable {
            if (done != total && done - last < (8u << 20)) return;
            last = done;
            std::lock_guard lock(m);
            std::fprintf(stderr, "%s: %llu/%llu bytes\n", name.c_str(), static_cast<unsigned long long>(done),
                         static_cast<unsigned long long>(total));
          };
        outcomes[i].host = hosts[i].name();
        hosts[i].async_upload(up->from, up->to, opts, [&, i](std::error_code ec, TransferResult r) {
          outcomes[i].error = ec;
          outcomes[i].result.exit_code = ec ? -1 : 0;
          outcomes[i].result.diagnostic = r.diagnostic;
          outcomes[i].result.duration = r.duration;
          promises[i].set_value();
        });
      }
      for (auto& p : promises) p.get_future().wait();
      if (g.json) {
        auto arr = nlohmann::json::array();
        for (auto const& out : outcomes) arr.push_back(outcome_to_json(out));
        std::cout << arr.dump(2) << std::endl;
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
        std::cout << nlohmann::json{{"host", hosts[0].name()}, {"bytes", r.bytes},
                                    {"duration_ms", std::chrono::duration<double, std::milli>(r.duration).count()}}
                         .dump(2)
                  << std::endl;
      return 0;
    };
  });
}

}  // namespace clusterkit::cli
