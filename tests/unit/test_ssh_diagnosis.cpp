#include "clusterkit/detail/ssh_diagnosis.hpp"
#include "clusterkit/host.hpp"

#include <catch2/catch.hpp>

using namespace clusterkit;
using namespace clusterkit::detail;

namespace {
HostSpec gpu1() {
  HostSpec h;
  h.name = "gpu1";
  h.address = "10.88.0.11";
  h.user = "root";
  h.identity_file = "/run/lab/id_ed25519";
  h.known_hosts_file = "/run/lab/known_hosts";
  return h;
}
}  // namespace

// Messages as OpenSSH 9.2 prints them (captured from the lab's sshd).
TEST_CASE("ssh failures are classified with a fix", "[ssh]") {
  auto h = gpu1();
  auto d = diagnose_ssh_failure(h, "root@10.88.0.11: Permission denied (publickey).\n");
  CHECK(d.code == errc::authentication_failed);
  CHECK(d.message.find("gpu1 (root@10.88.0.11)") == 0);
  CHECK(d.message.find("/run/lab/id_ed25519") != std::string::npos);

  d = diagnose_ssh_failure(h, "ssh: connect to host 10.88.0.11 port 22: Connection refused\n");
  CHECK(d.code == errc::connection_refused);
  CHECK(d.message.find("Is sshd running") != std::string::npos);

  d = diagnose_ssh_failure(h, "ssh: connect to host 10.88.0.11 port 22: Connection timed out\n");
  CHECK(d.code == errc::host_unreachable);

  d = diagnose_ssh_failure(h, "ssh: connect to host 10.88.0.11 port 22: No route to host\n");
  CHECK(d.code == errc::host_unreachable);

  d = diagnose_ssh_failure(h, "ssh: Could not resolve hostname nohost: Name or service not known\n");
  CHECK(d.code == errc::name_resolution_failed);

  d = diagnose_ssh_failure(h,
                           "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                           "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
                           "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                           "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
                           "Host key for 10.88.0.11 has changed and you have requested strict checking.\n"
                           "Host key verification failed.\n");
  CHECK(d.code == errc::host_key_changed);
  CHECK(d.message.find("ssh-keygen -R '10.88.0.11' -f /run/lab/known_hosts") != std::string::npos);

  d = diagnose_ssh_failure(h,
                           "No ED25519 host key is known for 10.88.0.11 and you have requested strict checking.\n"
                           "Host key verification failed.\n");
  CHECK(d.code == errc::host_key_unknown);
  CHECK(d.message.find("accept-new") != std::string::npos);

  d = diagnose_ssh_failure(h, "something odd\n");
  CHECK(d.code == errc::ssh_failed);
  CHECK(d.message.find("something odd") != std::string::npos);
}

// Captured with OpenSSH 9.2 on this machine (issue 15: both were misleading).
TEST_CASE("a missing identity file and a failing jump host are named as such", "[ssh]") {
  auto h = gpu1();
  h.identity_file = "/nonexistent/id";
  auto d = diagnose_ssh_failure(h,
                                "Warning: Identity file /nonexistent/id not accessible: No such file or directory.\n"
                                "root@10.88.0.11: Permission denied (publickey).\n");
  CHECK(d.code == errc::authentication_failed);
  CHECK(d.message.find("identity_file /nonexistent/id does not exist or cannot be read") != std::string::npos);

  h = gpu1();
  h.jump_host = "root@x2";
  d = diagnose_ssh_failure(h,
                           "kex_exchange_identification: Connection closed by remote host\n"
                           "Connection closed by UNKNOWN port 65535\n");
  CHECK(d.code == errc::host_unreachable);
  CHECK(d.message.find("the jump host root@x2 did not connect us to 10.88.0.11 port 22") != std::string::npos);
  CHECK(d.message.find("ssh -o BatchMode=yes root@x2 true") != std::string::npos);
  CHECK(d.message.find("rebooted") == std::string::npos);

  // With the jump's own words (the master's stderr, where the ProxyJump's
  // `ssh -W` writes): quoted, and not taken for the target's name failing.
  d = diagnose_ssh_failure(h,
                           "ssh: Could not resolve hostname x2: Name or service not known\r\n"
                           "kex_exchange_identification: Connection closed by remote host\n"
                           "Connection closed by UNKNOWN port 65535\n");
  CHECK(d.code == errc::host_unreachable);
  CHECK(d.message.find("the jump host root@x2 did not connect us to 10.88.0.11 port 22; on the way, ssh said: ssh: Could "
                       "not resolve hostname x2: Name or service not known") != std::string::npos);
  d = diagnose_ssh_failure(h,
                           "root@x2: Permission denied (publickey).\n"
                           "Connection closed by UNKNOWN port 65535\n");
  CHECK(d.code == errc::host_unreachable);
  CHECK(d.message.find("ssh said: root@x2: Permission denied (publickey)") != std::string::npos);
}

TEST_CASE("a jump host that fails without a reason is asked alone, and its answer told", "[ssh]") {
  auto h = gpu1();
  h.jump_host = "root@x2:2200,bastion2";
  h.ssh_config_file = "/etc/ck/ssh_config";
  auto d = diagnose_ssh_failure(h, "kex_exchange_identification: Connection closed by remote host\n"
                                   "Connection closed by UNKNOWN port 65535\n");
  CHECK(d.jump_unexplained);
  // The first hop, alone: no shared connection, a short timeout, its words to a file.
  auto argv = jump_probe_argv(h, "/run/x.log");
  CHECK(argv == std::vector<std::string>{"-F", "/etc/ck/ssh_config", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o",
                                         "ControlMaster=no", "-o", "ControlPath=none", "-E", "/run/x.log", "--",
                                         "ssh://root@x2:2200", "true"});
  CHECK(jump_probe_argv(gpu1(), "/run/x.log").empty());
  // What ssh said to the jump host alone (OpenSSH 9.2's words), classified.
  auto told = explain_jump_probe(h, d, 255, "ssh: Could not resolve hostname x2: Name or service not known\r\n");
  CHECK(told.code == errc::name_resolution_failed);
  CHECK_FALSE(told.jump_unexplained);
  CHECK(told.message.find("the jump host root@x2:2200,bastion2 did not connect us to 10.88.0.11 port 22; ssh to the jump host "
                          "alone says: ssh: Could not resolve hostname x2: Name or service not known") != std::string::npos);
  auto refused = explain_jump_probe(h, d, 255, "ssh: connect to host x2 port 2200: Connection refused\r\n");
  CHECK(refused.code == errc::connection_refused);
  // The first of two hops answers alone: the next hop is the one to try.
  auto first_fine = explain_jump_probe(h, d, 0, "");
  CHECK(first_fine.message.find("the first jump host root@x2:2200 answers") != std::string::npos);
  CHECK(first_fine.message.find("ssh -J root@x2:2200 bastion2 true") != std::string::npos);
  // One hop that answers alone: the way from it to the target is the problem.
  h.jump_host = "root@x2:2200";
  auto fine = explain_jump_probe(h, d, 0, "");
  CHECK(fine.code == errc::host_unreachable);
  CHECK(fine.message.find("answers (ssh to it alone works), but it did not connect us to 10.88.0.11 port 22") != std::string::npos);
  // No words at all: the first diagnosis stands.
  CHECK(explain_jump_probe(h, d, 255, "").message == d.message);
}

TEST_CASE("the shared connection is keyed on every setting that changes what ssh accepts", "[ssh]") {
  auto base = gpu1();
  auto path = control_path_for(base);
  auto differs = [&](auto change) {
    auto h = base;
    change(h);
    return control_path_for(h) != path;
  };
  CHECK(control_path_for(base) == path);  // stable
  CHECK(differs([](HostSpec& h) { h.known_hosts_file = "/other/known_hosts"; }));
  CHECK(differs([](HostSpec& h) { h.host_key_policy = HostKeyPolicy::accept_new; }));
  CHECK(differs([](HostSpec& h) { h.ssh_options = {"Ciphers=aes128-ctr"}; }));
  CHECK(differs([](HostSpec& h) { h.identity_file = "/other/id"; }));
  CHECK(differs([](HostSpec& h) { h.jump_host = "bastion"; }));
  CHECK(differs([](HostSpec& h) { h.user = "ubuntu"; }));
  CHECK(!differs([](HostSpec& h) { h.name = "another-name"; }));  // a name alone changes nothing ssh does
  // No two settings spell the same key: options split differently, or a
  // field's text moved into its neighbour, are other connections.
  auto one = base, two = base;
  one.ssh_options = {"A=1|B=2"};
  two.ssh_options = {"A=1", "B=2"};
  CHECK(control_path_for(one) != control_path_for(two));
  auto moved_a = base, moved_b = base;
  moved_a.identity_file = "/k|";
  moved_b.identity_file = "/k";
  moved_b.known_hosts_file = "|" + base.known_hosts_file;
  CHECK(control_path_for(moved_a) != control_path_for(moved_b));
}

TEST_CASE("non-default ports appear in the known_hosts hint", "[ssh]") {
  auto h = gpu1();
  h.port = 2222;
  auto d = diagnose_ssh_failure(h, "Host key for [10.88.0.11]:2222 has changed and you have requested strict checking.\n");
  CHECK(d.code == errc::host_key_changed);
  CHECK(d.message.find("'[10.88.0.11]:2222'") != std::string::npos);
}

TEST_CASE("noise lines and tails", "[ssh]") {
  CHECK(is_ssh_noise_line("Control socket connect(/tmp/x): Connection refused"));
  CHECK(is_ssh_noise_line("Warning: Permanently added '10.0.0.1' (ED25519) to the list of known hosts."));
  CHECK_FALSE(is_ssh_noise_line("error: real output"));
  CHECK(tail_lines("a\n\nb\nc\nd\n", 2) == "c | d");
  CHECK(tail_lines("", 3).empty());
}
