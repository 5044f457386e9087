// Host over real OpenSSH, against lab hosts (sshd in namespaces). Needs
// root. One lab for the whole binary; destructive cases use host h3 and
// repair or replace it, and check that h1 and h2 are not disturbed.
#include <signal.h>
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <catch2/catch.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <future>
#include <thread>

#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/runtime.hpp"
#include "clusterkit/shell.hpp"
#include "support/wait.hpp"

using namespace clusterkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr char const* kLab = "tssh";
constexpr char const* kSubnet = "10.88.8";

std::string sh(std::string const& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

// The lab is shared by every test case in this binary and taken down when
// the binary exits, together with the connections the tests opened.
struct SharedLab {
  LabStatus status;
  Inventory inventory;

  static SharedLab& get() {
    static SharedLab lab;
    return lab;
  }

  HostSpec spec(std::string const& name) const { return inventory.find(name)->spec; }

  void restart_h3() {
    lab_down(kLab);
    start();
  }

private:
  SharedLab() { start(); }
  void start() {
    REQUIRE(::geteuid() == 0);  // the lab creates namespaces: run the lab tests as root
    LabOptions o;
    o.name = kLab;
    o.hosts = 3;
    o.subnet = kSubnet;
    status = lab_up(o);
    inventory = Inventory::load(status.inventory_path);
  }
  ~SharedLab() {
    for (auto const& h : inventory.hosts()) close_connection(h.spec);
    lab_down(kLab);
  }
};

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/ck-ssh-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

long first_number(std::string const& text) { return std::stol(text); }

// Alive and not a zombie (a zombie runs nothing; its reaping is up to the
// host's pid 1).
bool remote_pid_alive(Host& host, long pid) {
  auto status = "/proc/" + std::to_string(pid) + "/status";
  auto r = run(host, Command::shell("[ -e " + status + " ] && ! grep -q '^State:.*Z' " + status));
  return r.exit_code == 0;
}

bool remote_pid_gone_within(Host& host, long pid, std::chrono::milliseconds limit) {
  return cktest::wait_until([&] { return !remote_pid_alive(host, pid); }, limit);
}

int established_connections_to(std::string const& address) {
  auto out = sh("ss -Htn state established dst " + address + ":22 | wc -l");
  return std::stoi(out);
}

}  // namespace

TEST_CASE("each lab host answers as itself", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  for (auto name : {"h1", "h2", "h3"}) {
    auto host = rt.host(lab.spec(name));
    auto r = run(host, Command::args({"hostname"}));
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_text == std::string(name) + "\n");
  }
}

TEST_CASE("argv with quotes, $(), ;, newlines and non-ASCII arrives intact over ssh", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h1"));
  std::vector<std::string> tricky = {"a'b",       "\"dq\"",   "$(touch /tmp/ck-pwned)", "`id`", "x; echo injected",
                                     "l1\nl2",    "caf\xc3\xa9 \xe6\x97\xa5", "",          "*",   "$HOME",
                                     "\\", "-n"};
  std::vector<std::string> argv = {"printf", "<%s>\\n"};
  argv.insert(argv.end(), tricky.begin(), tricky.end());
  auto r = run(host, Command::args(argv));
  std::string expected;
  for (auto const& t : tricky) expected += "<" + t + ">\n";
  CHECK(r.stdout_text == expected);
  CHECK(run(host, Command::args({"test", "-e", "/tmp/ck-pwned"})).exit_code == 1);
}

TEST_CASE("exit codes, stderr and 255 from the command are not ssh errors", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h2"));
  auto r = run(host, Command::shell("echo to-err >&2; exit 255"));
  CHECK(r.exit_code == 255);
  CHECK(r.stderr_text == "to-err\n");
  RunOptions o;
  o.env = {{"CK_X", "v a l"}};
  o.working_directory = "/tmp";
  o.stdin_data = "piped input\n";
  auto e = run(host, Command::shell("echo \"$CK_X\"; pwd; cat"), o);
  CHECK(e.stdout_text == "v a l\n/tmp\npiped input\n");
}

TEST_CASE("one multiplexed connection per host carries concurrent commands", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto spec = lab.spec("h1");
  spec.max_sessions = 4;
  auto host = rt.host(spec);
  connect(host);
  CHECK(host.connection_alive());
  // 20 commands at once, at most 4 channels at a time. Each says on stderr
  // when it has started.
  std::vector<std::promise<RunResult>> promises(20);
  std::atomic<int> started{0};
  RunOptions o;
  o.on_line = [&](OutputLine const& l) {
    if (l.stream == Stream::err && l.text == "started") ++started;
  };
  for (std::size_t i = 0; i < promises.size(); ++i)
    host.async_run(Command::args({"sh", "-c", "echo started >&2; sleep 0.2; echo " + std::to_string(i)}), o,
                   [&, i](std::error_code ec, RunResult r) {
                     if (ec) r.exit_code = -100;
                     promises[i].set_value(std::move(r));
                   });
  // While 4 of them run at once:
  REQUIRE(cktest::wait_until([&] { return started >= 4; }, 10s));
  CHECK(established_connections_to(spec.address) == 1);
  for (std::size_t i = 0; i < promises.size(); ++i) {
    auto r = promises[i].get_future().get();
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_text == std::to_string(i) + "\n");
  }
  CHECK(established_connections_to(spec.address) == 1);
}

TEST_CASE("a timeout over ssh stops the remote command and its children", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h2"));
  RunOptions o;
  o.timeout = 700ms;
  o.kill_grace = 500ms;
  std::string pid_line;
  o.on_line = [&](OutputLine const& l) {
    if (l.stream == Stream::out && pid_line.empty()) pid_line = std::string(l.text);
  };
  auto started = std::chrono::steady_clock::now();
  try {
    run(host, Command::shell("(trap '' TERM; sleep 300) & echo $!; sleep 300"), o);
    FAIL("expected a timeout");
  } catch (Error const& e) {
    CHECK(e.code() == errc::timed_out);
    CHECK(std::string(e.what()).find("h2") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  REQUIRE_FALSE(pid_line.empty());
  CHECK(remote_pid_gone_within(host, first_number(pid_line), 3s));
}

TEST_CASE("cancelling over ssh stops the remote process group", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h1"));
  asio::cancellation_signal signal;
  std::promise<std::error_code> done;
  std::string pid_line;
  RunOptions o;
  o.kill_grace = 300ms;
  o.on_line = [&](OutputLine const& l) {
    if (pid_line.empty()) {
      pid_line = std::string(l.text);
      signal.emit(asio::cancellation_type::terminal);
    }
  };
  host.async_run(Command::shell("sleep 300 & echo $!; wait"), o,
                 asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, RunResult) { done.set_value(ec); }));
  auto f = done.get_future();
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  CHECK(f.get() == errc::cancelled);
  CHECK(remote_pid_gone_within(host, first_number(pid_line), 3s));
}

TEST_CASE("megabytes of output over ssh", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h2"));
  auto r = run(host, Command::shell("head -c 16000000 /dev/urandom | base64 -w 100"));
  CHECK(r.exit_code == 0);
  // 16 MB base64-encoded in 100-column lines.
  CHECK(r.stdout_text.size() > 21000000u);
  CHECK(r.stdout_text.back() == '\n');
}

TEST_CASE("files go both ways through the shared connection", "[ssh][lab][transfer]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h1"));
  TempDir dir;
  auto src = dir.path / "blob";
  sh("head -c 5000000 /dev/urandom > " + src.string());
  std::uint64_t progress_calls = 0, last = 0;
  TransferOptions t;
  t.on_progress = [&](std::uint64_t done, std::uint64_t) {
    ++progress_calls;
    last = done;
  };
  auto up = upload(host, src.string(), "/tmp/ck-blob", t);
  CHECK(up.bytes == 5000000u);
  CHECK(last == 5000000u);
  CHECK(progress_calls > 1);
  auto sum_remote = run(host, Command::args({"sha256sum", "/tmp/ck-blob"})).stdout_text.substr(0, 64);
  auto sum_local = sh("sha256sum " + src.string()).substr(0, 64);
  CHECK(sum_remote == sum_local);
  auto down = download(host, "/tmp/ck-blob", (dir.path / "back").string());
  CHECK(down.bytes == 5000000u);
  CHECK(sh("sha256sum < " + (dir.path / "back").string()).substr(0, 64) == sum_local);
  // Nothing half-written is left on either side.
  CHECK(run(host, Command::shell("ls /tmp | grep -c ck-part || true")).stdout_text == "0\n");

  SECTION("a cancelled upload places nothing") {
    asio::cancellation_signal signal;
    std::promise<std::error_code> done;
    TransferOptions c;
    bool cancelled = false;
    c.on_progress = [&](std::uint64_t, std::uint64_t) {
      if (!cancelled) {
        cancelled = true;
        signal.emit(asio::cancellation_type::terminal);
      }
    };
    host.async_upload(src.string(), "/tmp/ck-cancelled", c,
                      asio::bind_cancellation_slot(signal.slot(),
                                                   [&](std::error_code ec, TransferResult) { done.set_value(ec); }));
    CHECK(done.get_future().get() == errc::cancelled);
    // Once no remote process works on it any more (the pattern does not match
    // the shell that runs pgrep)...
    CHECK(cktest::wait_until(
        [&] { return run(host, Command::shell("pgrep -f 'ck-cancelle[d]' || echo none")).stdout_text == "none\n"; },
        5s));
    CHECK(run(host, Command::args({"test", "-e", "/tmp/ck-cancelled"})).exit_code == 1);
    CHECK(run(host, Command::shell("ls /tmp | grep -c ck-part || true")).stdout_text == "0\n");
  }
}

TEST_CASE("a dropped master is detected and re-opened", "[ssh][lab]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto host = rt.host(lab.spec("h2"));
  CHECK(run(host, Command::args({"true"})).exit_code == 0);
  REQUIRE(host.connection_alive());
  // Kill the master by its pid, as a crash or an OOM kill would.
  auto check = sh("ssh -o ControlPath=" + host.control_path() + " -O check x 2>&1");
  auto at = check.find("pid=");
  REQUIRE(at != std::string::npos);
  auto const master = std::stol(check.substr(at + 4));
  ::kill(static_cast<pid_t>(master), SIGKILL);
  REQUIRE(cktest::gone_within(master, 5s));
  CHECK_FALSE(host.connection_alive());
  auto r = run(host, Command::args({"hostname"}));
  CHECK(r.stdout_text == "h2\n");
  CHECK(r.stderr_text.empty());  // ssh's complaint about the stale socket is not the command's output
  CHECK(run(host, Command::args({"true"})).exit_code == 0);
  CHECK(host.connection_alive());
}

TEST_CASE("wrong key, unknown and changed host keys are refused with a fix", "[ssh][lab][faults]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  TempDir dir;

  SECTION("a key the host does not know") {
    sh("ssh-keygen -q -t ed25519 -N '' -f " + (dir.path / "other").string());
    auto spec = lab.spec("h1");
    spec.identity_file = (dir.path / "other").string();
    auto host = rt.host(spec);
    try {
      run(host, Command::args({"true"}));
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::authentication_failed);
      CHECK(std::string(e.what()).find("h1") != std::string::npos);
      CHECK(std::string(e.what()).find("authorized_keys") != std::string::npos);
    }
  }
  SECTION("an unknown host key under strict checking, then accept-new") {
    auto spec = lab.spec("h1");
    spec.known_hosts_file = (dir.path / "empty_known_hosts").string();
    std::ofstream(spec.known_hosts_file).close();
    spec.ssh_options.push_back("ControlPersist=no");
    {
      auto host = rt.host(spec);
      close_connection(spec);
      try {
        run(host, Command::args({"true"}));
        FAIL("expected an error");
      } catch (Error const& e) {
        CHECK(e.code() == errc::host_key_unknown);
      }
    }
    spec.host_key_policy = HostKeyPolicy::accept_new;
    auto host = rt.host(spec);
    CHECK(run(host, Command::args({"true"})).exit_code == 0);
    // Debian hashes known_hosts entries; ssh-keygen -F finds them anyway.
    CHECK(sh("ssh-keygen -F " + spec.address + " -f " + spec.known_hosts_file + " | grep -vc '^#'") == "1\n");
    host.disconnect();
  }
  SECTION("strict checking is never bypassed through another entry's open connection") {
    // Issue 15: the shared connection was keyed without known_hosts_file,
    // host_key_policy and ssh_options, so this strict entry ran through the
    // lab entry's connection to the same address.
    auto open_spec = lab.spec("h1");
    auto open_host = rt.host(open_spec);
    REQUIRE(run(open_host, Command::args({"true"})).exit_code == 0);  // its connection is up and persists
    auto strict = open_spec;
    strict.known_hosts_file = (dir.path / "empty_known_hosts").string();
    std::ofstream(strict.known_hosts_file).close();
    strict.host_key_policy = HostKeyPolicy::strict;
    REQUIRE(control_path_for(strict) != control_path_for(open_spec));
    auto strict_host = rt.host(strict);
    try {
      run(strict_host, Command::args({"true"}));
      FAIL("the strict entry ran through the other entry's connection");
    } catch (Error const& e) {
      CHECK(e.code() == errc::host_key_unknown);
    }
    // Disconnecting one entry leaves the other's connection alone.
    strict_host.disconnect();
    CHECK(fs::exists(control_path_for(open_spec)));
    CHECK(run(open_host, Command::args({"true"})).exit_code == 0);
  }
  SECTION("a changed host key") {
    auto spec = lab.spec("h1");
    sh("ssh-keygen -q -t ed25519 -N '' -f " + (dir.path / "impostor").string());
    auto pub = sh("cut -d' ' -f1,2 " + (dir.path / "impostor.pub").string());
    spec.known_hosts_file = (dir.path / "known_hosts").string();
    std::ofstream(spec.known_hosts_file) << spec.address << " " << pub;
    // A distinct identity path gives this spec its own control socket, so
    // the lab's open master for h1 is not reused.
    fs::copy_file(lab.status.identity_file, dir.path / "id");
    fs::permissions(dir.path / "id", fs::perms::owner_read | fs::perms::owner_write);
    spec.identity_file = (dir.path / "id").string();
    auto host = rt.host(spec);
    try {
      run(host, Command::args({"true"}));
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::host_key_changed);
      CHECK(std::string(e.what()).find("ssh-keygen -R") != std::string::npos);
    }
  }
}

TEST_CASE("dead sshd, cut-off host: clear errors in time, others undisturbed", "[ssh][lab][faults]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  auto h3spec = lab.spec("h3");
  h3spec.connect_timeout = 2s;
  h3spec.server_alive_interval = 1s;
  h3spec.server_alive_count = 2;
  std::vector<Host> all = {rt.host(lab.spec("h1")), rt.host(lab.spec("h2")), rt.host(h3spec)};
  auto ns = "ck-" + std::string(kLab) + "-h3";

  SECTION("cut off while a command runs: connection lost, within seconds") {
    auto h3 = all[2];
    h3.disconnect();
    REQUIRE(run(h3, Command::args({"true"})).exit_code == 0);
    std::promise<std::pair<std::error_code, RunResult>> done;
    std::atomic<bool> running{false};
    RunOptions o;
    o.on_line = [&](OutputLine const&) { running = true; };
    h3.async_run(Command::shell("echo running; exec sleep 60"), o,
                 [&](std::error_code ec, RunResult r) { done.set_value({ec, std::move(r)}); });
    REQUIRE(cktest::wait_until([&] { return running.load(); }, 10s));
    sh("ip -n " + ns + " link set eth0 down");
    auto started = std::chrono::steady_clock::now();
    auto f = done.get_future();
    REQUIRE(f.wait_for(15s) == std::future_status::ready);
    auto [ec, r] = f.get();
    CHECK(std::chrono::steady_clock::now() - started < 10s);
    CHECK(ec == errc::connection_lost);
    CHECK(r.message.find("h3") != std::string::npos);
    sh("ip -n " + ns + " link set eth0 up");
  }
  SECTION("cut off before connecting: unreachable after the connect timeout, others fine") {
    all[2].disconnect();
    sh("ip -n " + ns + " link set eth0 down");
    auto started = std::chrono::steady_clock::now();
    auto outcomes = run_on_hosts(all, Command::args({"hostname"}));
    CHECK(std::chrono::steady_clock::now() - started < 8s);
    CHECK(outcomes[0].ok());
    CHECK(outcomes[1].ok());
    CHECK(outcomes[0].result.stdout_text == "h1\n");
    CHECK(outcomes[2].error == errc::host_unreachable);
    CHECK(outcomes[2].result.message.find("h3") != std::string::npos);
    sh("ip -n " + ns + " link set eth0 up");
  }
  SECTION("sshd killed: connection refused, others fine") {
    all[2].disconnect();
    int pid = 0;
    for (auto const& h : lab.status.hosts)
      if (h.name == "h3") pid = h.sshd_pid;
    REQUIRE(pid > 0);
    ::kill(pid, SIGKILL);  // the host's pid 1: the whole host stops
    REQUIRE(cktest::gone_within(pid, 5s));
    auto outcomes = run_on_hosts(all, Command::args({"hostname"}));
    CHECK(outcomes[0].ok());
    CHECK(outcomes[1].ok());
    CHECK(outcomes[2].error == errc::connection_refused);
    CHECK(outcomes[2].result.message.find("Is sshd running") != std::string::npos);
    lab.restart_h3();
  }
}

TEST_CASE("one file to many hosts, a bounded number at once", "[ssh][lab][transfer]") {
  auto& lab = SharedLab::get();
  Runtime rt;
  std::vector<Host> hosts;
  for (auto const* name : {"h1", "h2", "h3"}) hosts.push_back(rt.host(lab.spec(name)));
  TempDir dir;
  auto src = dir.path / "blob";
  sh("head -c 3000000 /dev/urandom > " + src.string());
  auto const sum_local = sh("sha256sum " + src.string()).substr(0, 64);

  SECTION("every host gets the same bytes; never more than `concurrency` in flight") {
    // Cold: the uploads are the first operations on these hosts (a transfer
    // once took the lead in opening the connection and never let go: every
    // later command on the host waited forever).
    for (auto const* name : {"h1", "h2", "h3"}) close_connection(lab.spec(name));
    // Progress is reported on the runtime's one thread: no lock needed.
    std::set<std::string> in_flight, reported;
    std::size_t most_in_flight = 0;
    UploadFanoutOptions o;
    o.concurrency = 2;
    o.on_progress = [&](std::string_view host, std::uint64_t done, std::uint64_t total) {
      reported.insert(std::string(host));
      if (done < total) in_flight.insert(std::string(host));
      else in_flight.erase(std::string(host));
      most_in_flight = std::max(most_in_flight, in_flight.size());
    };
    auto outcomes = upload_to_hosts(hosts, src.string(), "/tmp/ck-fanout-blob", o);
    REQUIRE(outcomes.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(outcomes[i].host == hosts[i].name());
      CHECK(outcomes[i].ok());
      CHECK(outcomes[i].result.bytes == 3000000u);
      RunOptions quick;
      quick.timeout = 30s;
      CHECK(run(hosts[i], Command::args({"sha256sum", "/tmp/ck-fanout-blob"}), quick).stdout_text.substr(0, 64) == sum_local);
    }
    CHECK(reported == std::set<std::string>{"h1", "h2", "h3"});
    CHECK(most_in_flight <= 2);
    CHECK(in_flight.empty());
  }

  SECTION("a host that cannot be reached fails alone; with fail_fast the rest are skipped") {
    auto spec = lab.spec("h2");
    spec.port = 1;  // nothing listens there
    std::vector<Host> mixed{hosts[0], rt.host(spec), hosts[2]};
    auto outcomes = upload_to_hosts(mixed, src.string(), "/tmp/ck-fanout-mixed");
    CHECK(outcomes[0].ok());
    CHECK(outcomes[1].error == errc::connection_refused);
    CHECK(outcomes[1].result.message.find("h2") != std::string::npos);
    CHECK(outcomes[2].ok());

    UploadFanoutOptions one_at_a_time;
    one_at_a_time.concurrency = 1;
    one_at_a_time.fail_fast = true;
    std::vector<Host> bad_first{rt.host(spec), hosts[0]};
    auto stopped = upload_to_hosts(bad_first, src.string(), "/tmp/ck-fanout-skipped", one_at_a_time);
    CHECK(stopped[0].error == errc::connection_refused);
    CHECK(stopped[1].error == errc::skipped);
    CHECK(stopped[1].result.message.find("not copied") != std::string::npos);
    CHECK(run(hosts[0], Command::args({"test", "-e", "/tmp/ck-fanout-skipped"})).exit_code == 1);
  }

  SECTION("a missing local file is an error on every host, naming the file") {
    auto outcomes = upload_to_hosts(hosts, (dir.path / "nope").string(), "/tmp/ck-fanout-nope");
    for (auto const& o : outcomes) {
      CHECK_FALSE(o.ok());
      CHECK(o.result.message.find("nope") != std::string::npos);
    }
  }
}
