// Host, the pure part: HostSpec and Command helpers that need no Asio
// machinery, so that the inventory and the messages can use them cheaply
// (the I/O half is host_io.cpp).
#include "clusterkit/host.hpp"
#include "clusterkit/shell.hpp"

namespace clusterkit {

HostSpec HostSpec::local_machine(std::string name) {
  HostSpec spec;
  spec.address = "localhost";
  spec.name = std::move(name);
  spec.local = true;
  return spec;
}

std::string HostSpec::display() const {
  if (local) return "local";
  std::string out;
  if (!user.empty()) out += user + "@";
  std::string const& host = address.empty() ? name : address;
  bool const ipv6 = host.find(':') != std::string::npos;
  if (port != 0 && ipv6)
    out += "[" + host + "]";
  else
    out += host;
  if (port != 0) out += ":" + std::to_string(port);
  return out;
}

std::string Command::display() const {
  if (!argv.empty()) {
    return shell::join_for_display(argv);
  }
  // The script's first non-blank line, with "..." when more follows.
  std::string_view rest = script;
  std::string_view first;
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    std::size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) continue;
    std::size_t e = line.find_last_not_of(" \t\r");
    first = line.substr(b, e - b + 1);
    break;
  }
  std::string out(first);
  if (rest.find_first_not_of(" \t\r\n") != std::string_view::npos) out += " ...";
  return out;
}

}  // namespace clusterkit
