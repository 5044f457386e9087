// Host on the local machine: the same wrapper, pipes, timeouts and
// cancellation as remote commands, without ssh. Real processes, no mocks.
#include "clusterkit/host.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "clusterkit/fanout.hpp"
#include "clusterkit/runtime.hpp"
#include "support/wait.hpp"

using namespace clusterkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using cktest::gone_within;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/ck-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<long> read_pids(fs::path const& file) {
  std::ifstream in(file);
  std::vector<long> pids;
  long p;
  while (in >> p) pids.push_back(p);
  return pids;
}

}  // namespace

TEST_CASE("argv reaches the command byte for byte", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  std::vector<std::string> tricky = {"a'b", "\"double\"", "$(whoami)", "`id`", "x; rm -rf /nonexistent", "line1\nline2",
                                     "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "", "*", "--", "\\back\\slash"};
  std::vector<std::string> argv = {"printf", "[%s]\\n"};
  argv.insert(argv.end(), tricky.begin(), tricky.end());
  auto r = run(host, Command::args(argv));
  std::string expected;
  for (auto const& t : tricky) expected += "[" + t + "]\n";
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_text == expected);
  CHECK(r.stderr_text.empty());
}

TEST_CASE("exit status, stderr and duration are reported", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  auto r = run(host, Command::shell("echo out; echo err >&2; exit 7"));
  CHECK(r.exit_code == 7);
  CHECK_FALSE(r.ok());
  CHECK(r.stdout_text == "out\n");
  CHECK(r.stderr_text == "err\n");
  CHECK(r.signal == 0);
  CHECK(r.duration > 0ns);
}

TEST_CASE("stderr that does not end with a newline is kept as it is, and the command's end is seen", "[host][local]") {
  // Once reported as "the connection was lost" (exit -1): the wrapper's
  // last word shared the command's unfinished stderr line.
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  auto r = run(host, Command::shell("printf 'no newline' >&2; printf 'out'; exit 3"));
  CHECK(r.exit_code == 3);
  CHECK(r.stderr_text == "no newline");
  CHECK(r.stdout_text == "out");
  auto progress = run(host, Command::shell("printf '10%%\r50%%\r100%%' >&2"));
  CHECK(progress.exit_code == 0);
  CHECK(progress.stderr_text == "10%\r50%\r100%");
  std::vector<std::string> lines;
  RunOptions o;
  o.on_line = [&](OutputLine const& l) {
    if (l.stream == Stream::err) lines.emplace_back(l.text);
  };
  auto streamed = run(host, Command::shell("echo first >&2; printf last >&2"), o);
  CHECK(streamed.exit_code == 0);
  CHECK(lines == std::vector<std::string>{"first", "last"});
}

TEST_CASE("a program that is not there: what a shell says, exit 127", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  auto r = run(host, Command::args({"ck-no-such-program", "-L"}));
  CHECK(r.exit_code == 127);
  CHECK(r.stderr_text == "ck-no-such-program: command not found\n");
  // With PATH set for the command, the command's own PATH decides: left to it.
  RunOptions o;
  o.env = {{"PATH", "/usr/bin:/bin"}};
  auto with_path = run(host, Command::args({"sh", "-c", "echo $PATH"}), o);
  CHECK(with_path.stdout_text == "/usr/bin:/bin\n");
}

TEST_CASE("a command killed by a signal reports it", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  auto r = run(host, Command::shell("kill -s TERM $$"));
  CHECK(r.exit_code == 143);
  CHECK(r.signal == SIGTERM);
}

TEST_CASE("environment, working directory and stdin", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  TempDir dir;
  RunOptions o;
  o.env = {{"CK_GREETING", "hello world; $(not run)"}, {"CK_EMPTY", ""}};
  o.working_directory = dir.path.string();
  std::string binary("bin\0ary\nline two\n", 17);
  o.stdin_data = binary;
  auto r = run(host, Command::shell("printf '%s|%s|' \"$CK_GREETING\" \"$CK_EMPTY\"; pwd; od -An -tx1 | tr -d ' \\n'"), o);
  REQUIRE(r.exit_code == 0);
  CHECK(r.stdout_text.starts_with("hello world; $(not run)||" + dir.path.string() + "\n"));
  // "bin\0ary\nline two\n" in hex: the NUL and newlines arrive intact.
  CHECK(r.stdout_text.ends_with("62696e006172790a6c696e652074776f0a"));

  SECTION("a missing working directory is an error naming it") {
    RunOptions bad;
    bad.working_directory = "/nonexistent/ck-dir";
    try {
      run(host, Command::args({"true"}), bad);
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::bad_working_directory);
      CHECK(std::string(e.what()).find("/nonexistent/ck-dir") != std::string::npos);
    }
  }
  SECTION("an invalid variable name is refused before anything runs") {
    RunOptions bad;
    bad.env = {{"BAD-NAME", "x"}};
    try {
      run(host, Command::args({"true"}), bad);
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::bad_environment_name);
      CHECK(std::string(e.what()).find("BAD-NAME") != std::string::npos);
    }
  }
}

TEST_CASE("output is streamed line by line while the command runs", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  std::mutex m;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> lines;
  RunOptions o;
  o.on_line = [&](OutputLine const& l) {
    std::lock_guard lock(m);
    lines.emplace_back(std::string(l.stream == Stream::out ? "out:" : "err:") + std::string(l.text),
                       std::chrono::steady_clock::now());
  };
  auto r = run(host, Command::shell("echo first; echo warn >&2; sleep 1; printf 'last-no-newline'"), o);
  auto end = std::chrono::steady_clock::now();
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].first == "out:first");
  CHECK(lines[2].first == "out:last-no-newline");
  // The first line arrived well before the command ended.
  CHECK(end - lines[0].second > 500ms);
  CHECK(r.stdout_text == "first\nlast-no-newline");
}

TEST_CASE("progress bars redrawn with \\r arrive as they are drawn when asked", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  std::mutex m;
  std::vector<std::string> lines;
  RunOptions o;
  o.on_line = [&](OutputLine const& l) {
    std::lock_guard lock(m);
    lines.emplace_back(std::string(l.stream == Stream::out ? "out:" : "err:") + std::string(l.text));
  };
  auto script = Command::shell("printf ' 10%%\\r 50%%\\r100%%\\ndone\\n'; printf 'a\\rb\\n' >&2");
  // The two streams are read apart: compare each on its own.
  auto of = [&](char const* prefix) {
    std::vector<std::string> out;
    for (auto const& l : lines)
      if (l.starts_with(prefix)) out.push_back(l.substr(4));
    return out;
  };
  run(host, script, o);
  // Default: \r is part of the line.
  CHECK(of("out:") == std::vector<std::string>{" 10%\r 50%\r100%", "done"});
  CHECK(of("err:") == std::vector<std::string>{"a\rb"});
  lines.clear();
  o.split_on_carriage_return = true;
  run(host, script, o);
  CHECK(of("out:") == std::vector<std::string>{" 10%", " 50%", "100%", "done"});
  CHECK(of("err:") == std::vector<std::string>{"a", "b"});
}

TEST_CASE("megabytes of output arrive intact; the capture limit is honoured", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  auto r = run(host, Command::shell("head -c 20000000 /dev/zero | tr '\\0' a"));
  CHECK(r.stdout_text.size() == 20000000u);
  CHECK(r.stdout_text.find_first_not_of('a') == std::string::npos);
  RunOptions o;
  o.max_captured_bytes = 1000;
  auto t = run(host, Command::shell("head -c 50000 /dev/zero"), o);
  CHECK(t.stdout_text.size() == 1000u);
  CHECK(t.stdout_truncated);
  CHECK(t.exit_code == 0);
}

TEST_CASE("a timeout stops the command and everything it started", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  TempDir dir;
  auto pidfile = dir.path / "pids";
  RunOptions o;
  o.timeout = 500ms;
  o.kill_grace = 300ms;
  // A child that ignores SIGTERM forces the escalation to SIGKILL.
  auto script = "sleep 300 & echo $! >> '" + pidfile.string() + "'; (trap '' TERM; sleep 300) & echo $! >> '" +
                pidfile.string() + "'; echo $$ >> '" + pidfile.string() + "'; wait";
  auto started = std::chrono::steady_clock::now();
  try {
    run(host, Command::shell(script), o);
    FAIL("expected a timeout");
  } catch (Error const& e) {
    CHECK(e.code() == errc::timed_out);
    CHECK(std::string(e.what()).find("timed out after 500 ms") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  auto pids = read_pids(pidfile);
  REQUIRE(pids.size() == 3);
  for (auto p : pids) CHECK(gone_within(p, 3s));
}

TEST_CASE("cancellation maps onto signals and stops the process group", "[host][local]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  TempDir dir;
  auto pidfile = dir.path / "pids";
  auto type = GENERATE(asio::cancellation_type::terminal, asio::cancellation_type::partial,
                       asio::cancellation_type::total);
  asio::cancellation_signal signal;
  std::promise<std::pair<std::error_code, RunResult>> done;
  RunOptions o;
  o.kill_grace = 300ms;
  o.on_line = [&](OutputLine const& l) {
    if (l.text == "ready") signal.emit(type);
  };
  host.async_run(Command::shell("sleep 300 & echo $! > '" + pidfile.string() + "'; echo ready; wait"), o,
                 asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, RunResult r) {
                   done.set_value({ec, std::move(r)});
                 }));
  auto fut = done.get_future();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  auto [ec, r] = fut.get();
  CHECK(ec == errc::cancelled);
  auto pids = read_pids(pidfile);
  REQUIRE(pids.size() == 1);
  CHECK(gone_within(pids[0], 3s));
}

TEST_CASE("files move atomically with progress", "[host][local][transfer]") {
  Runtime rt;
  auto host = rt.host(HostSpec::local_machine());
  TempDir dir;
  auto src = dir.path / "src.bin";
  {
    std::ofstream out(src, std::ios::binary);
    for (int i = 0; i < 3 * 1024 * 1024; ++i) out.put(static_cast<char>(i * 31));
  }
  std::uint64_t last_done = 0, last_total = 0;
  int calls = 0;
  TransferOptions t;
  t.on_progress = [&](std::uint64_t done, std::uint64_t total) {
    CHECK(done >= last_done);
    last_done = done;
    last_total = total;
    ++calls;
  };
  t.mode = 0600;
  auto up = upload(host, src.string(), (dir.path / "up.bin").string(), t);
  CHECK(up.bytes == 3u * 1024 * 1024);
  CHECK(last_done == up.bytes);
  CHECK(last_total == up.bytes);
  CHECK(calls > 1);
  CHECK(fs::file_size(dir.path / "up.bin") == up.bytes);
  CHECK((fs::status(dir.path / "up.bin").permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));

  auto down = download(host, (dir.path / "up.bin").string(), (dir.path / "down.bin").string());
  CHECK(down.bytes == up.bytes);
  std::ifstream a(src, std::ios::binary), b(dir.path / "down.bin", std::ios::binary);
  std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
  CHECK(sa == sb);

  SECTION("a missing remote file is a clear error and leaves nothing behind") {
    try {
      download(host, (dir.path / "missing").string(), (dir.path / "never.bin").string());
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::transfer_failed);
      CHECK(std::string(e.what()).find("not a readable file") != std::string::npos);
    }
    CHECK_FALSE(fs::exists(dir.path / "never.bin"));
    for (auto const& entry : fs::directory_iterator(dir.path))
      CHECK(entry.path().filename().string().find("ck-part") == std::string::npos);
  }
  SECTION("a device or a folder is refused by name, never streamed; a missing folder for an upload is said before the copy") {
    for (auto const& [remote, said] : {std::pair{std::string("/dev/zero"), std::string("/dev/zero is not a regular file")},
                                       std::pair{dir.path.string(), dir.path.string() + " is a folder on this host"}}) {
      try {
        download(host, remote, (dir.path / "never.bin").string());
        FAIL("expected an error");
      } catch (Error const& e) {
        CHECK(e.code() == errc::transfer_failed);
        CHECK(std::string(e.what()).find(said) != std::string::npos);
      }
      CHECK_FALSE(fs::exists(dir.path / "never.bin"));
    }
    try {
      upload(host, src.string(), (dir.path / "no-such-dir" / "f.bin").string());
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(std::string(e.what()).find("the folder " + (dir.path / "no-such-dir").string() + " does not exist on this host; make it first") !=
            std::string::npos);
      CHECK(std::string(e.what()).find("ck-part") == std::string::npos);
    }
  }
  SECTION("into a directory: under the file's own name, as cp and scp do") {
    fs::create_directory(dir.path / "into");
    CHECK(upload(host, src.string(), (dir.path / "into").string()).bytes == 3u * 1024 * 1024);
    CHECK(fs::file_size(dir.path / "into" / "src.bin") == 3u * 1024 * 1024);
    CHECK(upload(host, src.string(), (dir.path / "into").string() + "/").bytes == 3u * 1024 * 1024);
    for (auto const& entry : fs::directory_iterator(dir.path / "into"))
      CHECK(entry.path().filename() == "src.bin");
    try {
      upload(host, src.string(), (dir.path / "no-such-dir").string() + "/");
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(std::string(e.what()).find("is not a directory") != std::string::npos);
    }
  }
  SECTION("download into a directory: under the remote file's name; a missing folder fails before the copy") {
    fs::create_directory(dir.path / "down-into");
    CHECK(download(host, src.string(), (dir.path / "down-into").string()).bytes == 3u * 1024 * 1024);
    CHECK(fs::file_size(dir.path / "down-into" / "src.bin") == 3u * 1024 * 1024);
    CHECK(download(host, src.string(), (dir.path / "down-into").string() + "/").bytes == 3u * 1024 * 1024);
    for (auto const& entry : fs::directory_iterator(dir.path / "down-into"))
      CHECK(entry.path().filename() == "src.bin");
    try {
      download(host, src.string(), (dir.path / "no-such-dir").string() + "/");
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::local_file_error);
      CHECK(std::string(e.what()).find("the folder does not exist") != std::string::npos);
    }
    CHECK_FALSE(fs::exists(dir.path / "no-such-dir"));
  }
  SECTION("a missing local file names it") {
    try {
      upload(host, (dir.path / "nope").string(), (dir.path / "x").string());
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::file_not_found);
      CHECK(std::string(e.what()).find("nope") != std::string::npos);
    }
  }
  SECTION("a FIFO to upload is refused at once, not waited on") {
    auto fifo = dir.path / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto t0 = std::chrono::steady_clock::now();
    try {
      upload(host, fifo.string(), (dir.path / "x").string());
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::local_file_error);
      CHECK(std::string(e.what()).find("not a regular file") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  }
  SECTION("a negative timeout is refused (it used to mean none)") {
    RunOptions o;
    o.timeout = std::chrono::milliseconds(-5);
    try {
      run(host, Command::args({"true"}), o);
      FAIL("expected an error");
    } catch (Error const& e) {
      CHECK(e.code() == errc::invalid_argument);
      CHECK(std::string(e.what()).find("must not be negative") != std::string::npos);
    }
    TransferOptions t;
    t.timeout = std::chrono::milliseconds(-1);
    CHECK_THROWS_AS(upload(host, "/etc/hostname", (dir.path / "y").string(), t), Error);
  }
}

TEST_CASE("fan-out runs on every host with a concurrency limit", "[fanout][local]") {
  Runtime rt;
  std::vector<Host> hosts;
  for (int i = 0; i < 6; ++i) hosts.push_back(rt.host(HostSpec::local_machine("local" + std::to_string(i))));
  std::mutex m;
  std::vector<std::string> seen;
  FanoutOptions o;
  o.concurrency = 2;
  o.on_line = [&](std::string_view host, OutputLine const& l) {
    std::lock_guard lock(m);
    seen.push_back(std::string(host) + ":" + std::string(l.text));
  };
  auto started = std::chrono::steady_clock::now();
  auto outcomes = run_on_hosts(hosts, Command::shell("sleep 0.3; echo done"), o);
  auto took = std::chrono::steady_clock::now() - started;
  REQUIRE(outcomes.size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK(outcomes[i].host == "local" + std::to_string(i));
    CHECK(outcomes[i].ok());
    CHECK(outcomes[i].result.stdout_text == "done\n");
  }
  CHECK(seen.size() == 6);
  // Six 0.3 s commands two at a time take three rounds.
  CHECK(took >= 850ms);
  CHECK(took < 5s);

}

TEST_CASE("fail-fast: the first failure stops running commands and skips the rest", "[fanout][local]") {
  Runtime rt;
  TempDir dir;
  std::vector<Host> hosts;
  for (int i = 0; i < 5; ++i) hosts.push_back(rt.host(HostSpec::local_machine("h" + std::to_string(i))));
  FanoutOptions o;
  o.concurrency = 2;
  o.fail_fast = true;
  o.run.kill_grace = 200ms;
  // Whichever command makes the lock first fails at once; the other one
  // would sleep for 30 s unless fail-fast stops it.
  auto lock = (dir.path / "lock").string();
  auto started = std::chrono::steady_clock::now();
  auto outcomes = run_on_hosts(hosts, Command::shell("if mkdir '" + lock + "' 2>/dev/null; then exit 4; fi; sleep 30"), o);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  REQUIRE(outcomes.size() == 5);
  int failed = 0, cancelled = 0, skipped = 0;
  for (auto const& out : outcomes) {
    if (!out.error && out.result.exit_code == 4) ++failed;
    if (out.error == errc::cancelled) ++cancelled;
    if (out.error == errc::skipped) {
      ++skipped;
      CHECK(out.result.message.find("fail-fast") != std::string::npos);
    }
  }
  CHECK(failed == 1);
  CHECK(cancelled == 1);
  CHECK(skipped == 3);
}
