#include "clusterkit/detail/remote_script.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "clusterkit/shell.hpp"

using namespace clusterkit;
using namespace clusterkit::detail;

namespace {

// `sh -n` parses without running: the generated scripts must be valid POSIX
// sh (dash is Debian's /bin/sh and the strictest common one).
bool parses_as_sh(std::string const& script) {
  auto cmd = "/bin/sh -n -c " + clusterkit::shell::quote(script) + " 2>/dev/null";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

TEST_CASE("control lines are recognised only with the marker", "[wrapper]") {
  auto started = parse_control_line("\x1e" "ck:start 4242");
  REQUIRE(started);
  CHECK(started->kind == ControlLine::started);
  CHECK(started->pid == 4242);
  auto nocwd = parse_control_line("\x1e" "ck:nocwd");
  REQUIRE(nocwd);
  CHECK(nocwd->kind == ControlLine::no_working_directory);
  CHECK_FALSE(parse_control_line("ck:start 1"));
  CHECK_FALSE(parse_control_line("\x1e" "ck:start"));
  CHECK_FALSE(parse_control_line("\x1e" "ck:start 12x"));
  CHECK_FALSE(parse_control_line("\x1e" "ck:other"));
  CHECK_FALSE(parse_control_line(""));
}

TEST_CASE("the wrapper quotes argv, env and cwd and parses as sh", "[wrapper]") {
  auto cmd = Command::args({"echo", "it's $(danger)", "a;b"});
  std::map<std::string, std::string> env{{"K", "v'al"}};
  WrapperRequest req;
  req.command = &cmd;
  req.env = &env;
  req.working_directory = "/tmp/with space";
  req.stdin_bytes = 5;
  auto s = wrapper_script(req);
  CHECK(s.find("'it'\\''s $(danger)'") != std::string::npos);
  CHECK(s.find("'K=v'\\''al'") != std::string::npos);
  CHECK(s.find("cd -- '/tmp/with space'") != std::string::npos);
  CHECK(s.find("head -c 5") != std::string::npos);
  CHECK(s.find("setsid") != std::string::npos);
  CHECK(parses_as_sh(s));
  CHECK(parses_as_sh(wrapper_script(WrapperRequest{&cmd, nullptr, {}, 0})));
  auto script = Command::shell("for i in 1 2; do echo $i; done | tr 1 x");
  CHECK(parses_as_sh(wrapper_script(WrapperRequest{&script, nullptr, {}, 0})));
}

TEST_CASE("invalid environment names are refused", "[wrapper]") {
  auto cmd = Command::args({"true"});
  std::map<std::string, std::string> env{{"NOT-OK", "x"}};
  WrapperRequest req;
  req.command = &cmd;
  req.env = &env;
  CHECK_THROWS_AS(wrapper_script(req), Error);
}

TEST_CASE("the remote command line survives any login shell's quoting", "[wrapper]") {
  auto line = remote_command_line("echo 'x'");
  CHECK(line == "exec /bin/sh -c 'echo '\\''x'\\'''");
}

TEST_CASE("transfer scripts parse as sh and quote paths", "[wrapper][transfer]") {
  auto up = upload_script("/srv/my file's.bin", 1234, 0644);
  CHECK(up.find("head -c 1234") != std::string::npos);
  CHECK(up.find("chmod 644") != std::string::npos);
  CHECK(up.find("'/srv/my file'\\''s.bin'") != std::string::npos);
  CHECK(parses_as_sh(up));
  // Into a directory under the local file's name, as cp and scp do.
  auto into = upload_script("/srv/", 3, -1, "a b.txt");
  CHECK(into.find("d=\"${d%/}/\"'a b.txt'") != std::string::npos);
  CHECK(parses_as_sh(into));
  auto down = download_script("/etc/host name");
  CHECK(down.find("'/etc/host name'") != std::string::npos);
  CHECK(parses_as_sh(down));
}
