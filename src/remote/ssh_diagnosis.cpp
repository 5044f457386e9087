#include "clusterkit/detail/ssh_diagnosis.hpp"

#include <algorithm>
#include <vector>

namespace clusterkit::detail {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string known_hosts_hint(HostSpec const& host) {
  std::string target = host.address;
  if (host.port != 0 && host.port != 22) target = "[" + host.address + "]:" + std::to_string(host.port);
  std::string file = host.known_hosts_file.empty() ? std::string("~/.ssh/known_hosts") : host.known_hosts_file;
  return "ssh-keygen -R '" + target + "' -f " + file;
}

}  // namespace

std::string tail_lines(std::string_view text, std::size_t max_lines) {
  std::vector<std::string_view> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    auto end = nl == std::string_view::npos ? text.size() : nl;
    auto line = text.substr(pos, end - pos);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (!line.empty()) lines.push_back(line);
    pos = end + 1;
  }
  std::string out;
  auto first = lines.size() > max_lines ? lines.size() - max_lines : 0;
  for (auto i = first; i < lines.size(); ++i) {
    if (!out.empty()) out += " | ";
    out += lines[i];
  }
  return out;
}

bool is_ssh_noise_line(std::string_view line) {
  // A master that died leaves its socket behind; ssh says so and falls back
  // to a direct connection. The command's output must not carry that.
  return line.starts_with("Control socket connect(") || line.starts_with("ControlSocket ") ||
         line.starts_with("mux_client_") || line.starts_with("Warning: Permanently added");
}

SshDiagnosis diagnose_ssh_failure(HostSpec const& host, std::string_view err) {
  std::string who = host.name.empty() ? host.display() : host.name + " (" + host.display() + ")";
  auto said = tail_lines(err, 3);
  auto make = [&](errc e, std::string what) {
    return SshDiagnosis{make_error_code(e), who + ": " + what + (said.empty() ? "" : " [ssh: " + said + "]")};
  };
  if (contains(err, "REMOTE HOST IDENTIFICATION HAS CHANGED") || contains(err, "Host key for") ||
      contains(err, "host key has changed"))
    return make(errc::host_key_changed,
                "the host key changed since it was recorded in known_hosts; this is refused because it is what a "
                "man-in-the-middle looks like. If the host was reinstalled and the change is expected, remove the "
                "old key with `" +
                    known_hosts_hint(host) + "` and connect again.");
  if (contains(err, "No ED25519 host key is known") || contains(err, "No RSA host key is known") ||
      contains(err, "No ECDSA host key is known") || contains(err, "host key is known for") ||
      (contains(err, "Host key verification failed") && !contains(err, "CHANGED")))
    return make(errc::host_key_unknown,
                "the host key is not in known_hosts and strict checking is on. Verify the key and add it "
                "(ssh-keyscan), or choose host_key_policy: accept-new for first contact with fresh machines.");
  // Through a jump host, a connection closed before the target's ssh spoke
  // ("port 65535" is the proxy's pipe) is the jump failing. Checked before
  // the generic causes: the proxy's own words ("Could not resolve hostname
  // x2", "Permission denied") are about the jump host, not the target. With
  // ControlPersist (clusterkit's shared connections) OpenSSH sends the
  // proxy's stderr to /dev/null, so they are quoted only when ssh passed
  // them on (control_persist 0); otherwise the message says how to see them.
  if (!host.jump_host.empty() && (contains(err, "UNKNOWN port 65535") || contains(err, "kex_exchange_identification"))) {
    std::string said;
    std::size_t pos = 0;
    while (pos < err.size() && said.empty()) {
      auto nl = err.find('\n', pos);
      auto line = err.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      pos = nl == std::string_view::npos ? err.size() : nl + 1;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
      if (!line.empty() && !contains(line, "kex_exchange_identification") && !contains(line, "port 65535") &&
          !is_ssh_noise_line(line) && !line.starts_with("** "))
        said = std::string(line.substr(0, 300));
    }
    auto d = make(errc::host_unreachable,
                "the jump host " + host.jump_host + " did not connect us to " + host.address + " port " +
                    std::to_string(host.port ? host.port : 22) +
                    (said.empty() ? ": it does not resolve or answer, refuses our key, or cannot reach the host. `ssh -o BatchMode=yes " +
                                        host.jump_host + " true` shows the jump host's own answer."
                                  : "; on the way, ssh said: " + said + ". Check the jump_host entry (`ssh -o BatchMode=yes " +
                                        host.jump_host + " true` tries it alone)."));
    d.jump_unexplained = said.empty();
    return d;
  }
  // ssh warns and carries on with other keys when the identity file is
  // missing, then the server refuses those: the file is the thing to fix.
  if (!host.identity_file.empty() && contains(err, "Identity file") && contains(err, "not accessible") &&
      contains(err, "Permission denied"))
    return make(errc::authentication_failed,
                "identity_file " + host.identity_file +
                    " does not exist or cannot be read on this machine, and the server refused the other keys. "
                    "Fix the path in the inventory (it is a path on the machine running clusterkit).");
  if (contains(err, "Permission denied"))
    return make(errc::authentication_failed,
                "the server refused our key. Check the user name and identity_file (" +
                    (host.identity_file.empty() ? std::string("ssh's default keys") : host.identity_file) +
                    "), and that the public key is in the host's ~/.ssh/authorized_keys.");
  if (contains(err, "Could not resolve hostname") || contains(err, "Name or service not known") ||
      contains(err, "Temporary failure in name resolution"))
    return make(errc::name_resolution_failed,
                "the host name does not resolve; check the address in the inventory or ~/.ssh/config.");
  if (contains(err, "Connection refused"))
    return make(errc::connection_refused, "connection refused: nothing listens on port " +
                                              std::to_string(host.port ? host.port : 22) +
                                              ". Is sshd running, and is the port right?");
  if (contains(err, "timed out") || contains(err, "No route to host") || contains(err, "Network is unreachable") ||
      contains(err, "Host is unreachable"))
    return make(errc::host_unreachable,
                "the host does not answer. Check that it is up, the address is right, and no firewall drops port " +
                    std::to_string(host.port ? host.port : 22) + ".");
  if (contains(err, "Connection reset") || contains(err, "Broken pipe") || contains(err, "closed by remote host") ||
      contains(err, "Timeout, server") || contains(err, "not responding"))
    return make(errc::connection_lost, "the connection dropped. The host may have rebooted or been cut off.");
  if (contains(err, "No such file or directory") && contains(err, "Identity file"))
    return make(errc::authentication_failed, "the identity file does not exist: " + host.identity_file);
  return make(errc::ssh_failed, "ssh failed before the command started.");
}

std::vector<std::string> jump_probe_argv(HostSpec const& host, std::string const& log_file) {
  if (host.jump_host.empty()) return {};
  // The first hop of "a,b": ssh -J reaches it directly, as this probe does.
  auto first = host.jump_host.substr(0, host.jump_host.find(','));
  std::vector<std::string> a;
  if (!host.ssh_config_file.empty()) a.insert(a.end(), {"-F", host.ssh_config_file});
  auto timeout = std::min<long long>(host.connect_timeout.count() > 0 ? host.connect_timeout.count() : 5, 5);
  a.insert(a.end(), {"-o", "BatchMode=yes", "-o", "ConnectTimeout=" + std::to_string(timeout), "-o", "ControlMaster=no", "-o",
                     "ControlPath=none", "-E", log_file, "--", first.starts_with("ssh://") ? first : "ssh://" + first, "true"});
  return a;
}

SshDiagnosis explain_jump_probe(HostSpec const& host, SshDiagnosis const& d, int probe_exit, std::string_view probe_log) {
  std::string who = host.name.empty() ? host.display() : host.name + " (" + host.display() + ")";
  auto const target = host.address + " port " + std::to_string(host.port ? host.port : 22);
  SshDiagnosis out = d;
  out.jump_unexplained = false;
  if (probe_exit == 0 && host.jump_host.find(',') != std::string::npos) {
    auto first = host.jump_host.substr(0, host.jump_host.find(','));
    out.message = who + ": the first jump host " + first + " answers (ssh to it alone works), but the way on through " +
                  host.jump_host + " to " + target + " failed: try the next hop from it (`ssh -J " + first + " " +
                  host.jump_host.substr(host.jump_host.find(',') + 1) + " true`).";
    return out;
  }
  if (probe_exit == 0) {
    out.message = who + ": the jump host " + host.jump_host + " answers (ssh to it alone works), but it did not connect us to " +
                  target + ": from there that address does not answer, refuses, or is filtered. Check the address as the jump "
                  "host sees it (`ssh " + host.jump_host + " nc -zv " + host.address + " " +
                  std::to_string(host.port ? host.port : 22) + "`).";
    return out;
  }
  auto said = tail_lines(probe_log, 2);
  if (said.empty()) return d;
  // The jump host's own failure, classified as if it were the target's.
  HostSpec jump;
  jump.address = host.jump_host;
  auto j = diagnose_ssh_failure(jump, probe_log);
  out.code = j.code;
  out.message = who + ": the jump host " + host.jump_host + " did not connect us to " + target + "; ssh to the jump host alone says: " +
                said + ". Fix the jump_host entry (its name, port, user and key, and its host key in ~/.ssh/known_hosts).";
  return out;
}

}  // namespace clusterkit::detail
