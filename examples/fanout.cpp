// Run one command on hosts from an inventory, with the async API and C++20
// coroutines; output is prefixed by host as it arrives.
//
//   example_fanout INVENTORY SELECTOR CMD...   e.g. example_fanout lab.yaml all uname -r
//   example_fanout --local CMD...              two "hosts" on this machine, no ssh
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <clusterkit/clusterkit.hpp>
#include <cstdio>
#include <exception>

namespace asio = boost::asio;
using namespace clusterkit;

asio::awaitable<int> run_everywhere(std::vector<Host> hosts, Command command) {
  FanoutOptions options;
  options.concurrency = 32;
  options.run.timeout = std::chrono::seconds(60);
  options.on_line = [](std::string_view host, OutputLine const& line) {
    std::printf("%.*s: %.*s\n", int(host.size()), host.data(), int(line.text.size()), line.text.data());
  };
  auto outcomes = co_await async_run_on_hosts(std::move(hosts), std::move(command), options, asio::use_awaitable);
  int failures = 0;
  for (auto const& o : outcomes) {
    if (o.ok()) continue;
    ++failures;
    if (o.error)
      std::fprintf(stderr, "%s: %s\n", o.host.c_str(), o.result.message.c_str());
    else
      std::fprintf(stderr, "%s: exit %d\n", o.host.c_str(), o.result.exit_code);
  }
  std::printf("%zu hosts, %d failed\n", outcomes.size(), failures);
  co_return failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s INVENTORY SELECTOR CMD... | --local CMD...\n", argv[0]);
    return 2;
  }
  asio::io_context io;
  std::vector<Host> hosts;
  int first_arg;
  try {
    if (std::string_view(argv[1]) == "--local") {
      hosts = {Host(io.get_executor(), HostSpec::local_machine("local-a")),
               Host(io.get_executor(), HostSpec::local_machine("local-b"))};
      first_arg = 2;
    } else {
      auto inventory = Inventory::load(argv[1]);
      for (auto const& h : inventory.select(argv[2])) hosts.emplace_back(io.get_executor(), h.spec);
      first_arg = 3;
    }
  } catch (Error const& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  auto command = Command::args(std::vector<std::string>(argv + first_arg, argv + argc));
  int status = 1;
  asio::co_spawn(io, run_everywhere(std::move(hosts), std::move(command)), [&](std::exception_ptr e, int rc) {
    if (e) std::rethrow_exception(e);
    status = rc;
  });
  io.run();
  return status;
}
