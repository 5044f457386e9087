// The lab: N hosts on one Linux machine, each a network + pid + mount + uts
// namespace running a real sshd, joined to the machine by a bridge.
//
// Layout of a lab named NAME with subnet S (three octets):
//   bridge     ckbr-NAME            S.1/24 on the machine
//   host hI    netns ck-NAME-hI     eth0 = S.(10+I), peer veth vNAME-I on the bridge
//   nas        netns ck-NAME-nas    eth0 = S.250,    peer veth vNAME-nas
// Inside each netns: `unshare --pid --fork --mount --uts --mount-proc
// --propagation private sh -c '...; exec sshd -D'`, so sshd is pid 1 of the
// host's pid namespace and every mount the host makes stays in its own mount
// namespace. Nothing here mounts anything in the machine's own namespace.
//
// Processes are only ever signalled by pid, after checking (through a pidfd,
// so a recycled pid can never be hit) that the pid still lives in one of the
// lab's own network namespaces.
//
// Local commands (ip, ssh-keygen) run through a small synchronous
// posix_spawn helper below; this file deliberately stays away from Asio so it
// is cheap to compile.
#include "clusterkit/lab.hpp"

#include "clusterkit/detail/lab_plan.hpp"
#include "clusterkit/error.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/shell.hpp"
#include "core/text.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <cmath>
#include <sstream>
#include <string>
#include <string_view>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace clusterkit {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kMaxHosts = 239;  // S.11 .. S.249; S.250 is the nas.
constexpr char const* kMarker = ".clusterkit-lab";
constexpr char const* kStateFile = "state.json";
constexpr char const* kHostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

long long elapsed_ms(clock_type::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - since).count();
}

[[noreturn]] void fail(errc code, std::string const& message) { throw Error(make_error_code(code), message); }

// The stop request of the lab_up running on this thread (none elsewhere).
// Thread-local rather than a parameter of every helper: run(), the waits and
// parallel_for's workers all see it, and lab_down's clean-up after a stop
// runs with it cleared.
thread_local std::stop_token t_stop;

bool stop_requested() { return t_stop.stop_requested(); }

[[noreturn]] void fail_stopped(std::string const& what) {
  fail(errc::cancelled, "lab up: stopped (interrupted) while " + what + ".");
}

void throw_if_stopped(std::string const& what) {
  if (stop_requested()) fail_stopped(what);
}

// flock(LOCK_EX) that a stop request interrupts (another lab_up may hold the
// lock for minutes while it builds the runtime image).
void lock_exclusive(int fd, std::string const& what) {
  if (!t_stop.stop_possible()) {
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    return;
  }
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return;  // as the blocking form would
    if (stop_requested()) fail_stopped("waiting for " + what);
    std::this_thread::sleep_for(50ms);
  }
}

using detail::lines_of;
using detail::split_ws;

std::string trim(std::string_view s) { return std::string(detail::trim(s)); }

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string tail(std::string const& text, size_t max_chars = 1500) {
  std::string t = trim(text);
  if (t.size() <= max_chars) return t;
  return "..." + t.substr(t.size() - max_chars);
}

std::string read_file(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes through a temporary file and rename(), so a crash never leaves a
// half-written file behind.
void write_file(std::string const& path, std::string const& content, mode_t mode = 0644) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    fail(errc::local_file_error, "lab: cannot write " + tmp + ": " + std::strerror(errno) + ".");
  ::fchmod(fd, mode);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      fail(errc::local_file_error, "lab: cannot write " + tmp + ": " + std::strerror(e) + ".");
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(errc::local_file_error, "lab: cannot rename " + tmp + " to " + path + ": " + std::strerror(errno) + ".");
}

// ---------------------------------------------------------------- programs

struct Program {
  char const* name;
  char const* package;
  /// Set for what the serving layer needs: the script that installs it.
  bool serving = false;
};

constexpr Program kIp{"ip", "iproute2"};
constexpr Program kUnshare{"unshare", "util-linux"};
constexpr Program kSshd{"sshd", "openssh-server"};
constexpr Program kSshKeygen{"ssh-keygen", "openssh-client"};
constexpr Program kMount{"mount", "mount"};
constexpr Program kUmount{"umount", "mount"};
constexpr Program kHostname{"hostname", "hostname"};
constexpr Program kSh{"sh", "dash"};
constexpr Program kSsh{"ssh", "openssh-client"};
// LabOptions::docker: the engine, its containerd and runc, the client, and
// debootstrap for the runtime image.
constexpr Program kDockerd{"dockerd", "docker.io", true};
constexpr Program kDockerCli{"docker", "docker.io", true};
constexpr Program kContainerd{"containerd", "containerd", true};
constexpr Program kContainerdShim{"containerd-shim-runc-v2", "containerd", true};
constexpr Program kRunc{"runc", "runc", true};
constexpr Program kDebootstrap{"debootstrap", "debootstrap", true};
constexpr Program kTar{"tar", "tar"};

std::optional<std::string> which(std::string const& name) {
  std::string path;
  if (char const* p = std::getenv("PATH")) path = p;
  // sudo and cron may leave the sbin folders off PATH; ip and sshd live there.
  path += std::string(":") + kHostPath;
  std::set<std::string> seen;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = path.substr(i, j - i);
    i = j + 1;
    if (dir.empty() || dir[0] != '/' || !seen.insert(dir).second) continue;
    std::string full = dir + "/" + name;
    if (::access(full.c_str(), X_OK) == 0) return full;
  }
  return std::nullopt;
}

std::string require(Program const& p) {
  auto found = which(p.name);
  if (!found && p.serving)
    fail(errc::program_missing, std::string("clusterkit lab --docker needs `") + p.name +
                                    "`, which is not installed (not found on PATH or in " + kHostPath +
                                    "). Run scripts/install-serving.sh (it installs Debian's docker.io, containerd, "
                                    "runc and debootstrap, and the Ray/vLLM venv), or apt-get install " + p.package +
                                    ", and try again.");
  if (!found)
    fail(errc::program_missing, std::string("clusterkit lab needs `") + p.name + "`, which is not installed (not found on PATH or in " +
                                    kHostPath + "). Install the Debian package " + p.package +
                                    " (apt-get install " + p.package + ") and try again.");
  return *found;
}

// ---------------------------------------------------------------- commands

struct Result {
  int status = -1;  // exit status, or 128+signal
  std::string out;
  std::string err;
};

// Runs argv (argv[0] an absolute path) to completion, feeding `input` on
// stdin and capturing stdout and stderr. No shell is involved.
Result run(std::vector<std::string> const& argv, std::string const& input = {},
           std::chrono::milliseconds timeout = 60s) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) fail(errc::lab_failed, "lab: pipe() failed: " + std::string(std::strerror(errno)));
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]), ::close(in_pipe[1]);
    fail(errc::lab_failed, "lab: pipe() failed: " + std::string(std::strerror(errno)));
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]), ::close(in_pipe[1]), ::close(out_pipe[0]), ::close(out_pipe[1]);
    fail(errc::lab_failed, "lab: pipe() failed: " + std::string(std::strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  // Its own process group: Ctrl-C at the terminal reaches clusterkit (which
  // stops the step and cleans up) rather than killing `ip` or `tar` half-way.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> cargv;
  for (auto const& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(in_pipe[1]), ::close(out_pipe[0]), ::close(err_pipe[0]);
    fail(rc == ENOENT ? errc::program_missing : errc::lab_failed,
         "lab: cannot start `" + shell::join_for_display(argv) + "`: " + std::strerror(rc) + ".");
  }

  // A child that exits without reading its input would make our write()
  // raise SIGPIPE; block it in this thread and swallow it below.
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigset_t pending_before;
  sigpending(&pending_before);
  bool const pipe_was_pending = sigismember(&pending_before, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);

  Result r;
  int in_fd = in_pipe[1];
  size_t in_off = 0;
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  } else {
    ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  auto deadline = clock_type::now() + timeout;
  bool timed_out = false, stopped = false;
  int const poll_ms = t_stop.stop_possible() ? 100 : 1000;
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    pollfd fds[3];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1;
    if (in_fd >= 0) idx_in = n, fds[n++] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) idx_out = n, fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) idx_err = n, fds[n++] = {err_fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    if (left <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);  // our own child, by pid
      break;
    }
    if (stop_requested()) {
      stopped = true;
      ::kill(pid, SIGKILL);  // our own child, by pid
      break;
    }
    int pr = ::poll(fds, n, static_cast<int>(std::min<long long>(left, poll_ms)));
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    char buf[8192];
    auto drain = [&](int idx, int& fd, std::string& into) {
      if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got > 0) {
        into.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fd);
        fd = -1;
      }
    };
    drain(idx_out, out_fd, r.out);
    drain(idx_err, err_fd, r.err);
    if (idx_in >= 0 && (fds[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t put = ::write(in_fd, input.data() + in_off, input.size() - in_off);
      if (put > 0) in_off += static_cast<size_t>(put);
      if ((put < 0 && errno != EAGAIN && errno != EINTR) || in_off >= input.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  sigset_t pending_after;
  sigpending(&pending_after);
  if (!pipe_was_pending && sigismember(&pending_after, SIGPIPE)) {
    timespec zero{0, 0};
    ::sigtimedwait(&pipe_set, nullptr, &zero);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status))
    r.status = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.status = 128 + WTERMSIG(status);
  // A child that died of the stop's signal some other way counts as stopped.
  if (stopped || stop_requested()) fail_stopped("running `" + shell::join_for_display(argv) + "`");
  if (timed_out) r.err += "\n(killed after " + std::to_string(timeout.count() / 1000) + " s without finishing)";
  return r;
}

// Runs and throws errc::lab_failed naming the step when the command fails.
Result run_checked(std::string const& step, std::vector<std::string> const& argv, std::string const& input = {},
                   std::string const& advice = {}, std::chrono::milliseconds timeout = 60s) {
  Result r = run(argv, input, timeout);
  if (r.status != 0) {
    std::string msg = "lab: " + step + " failed: `" + shell::join_for_display(argv) + "` exited with status " +
                      std::to_string(r.status);
    std::string err = tail(r.err.empty() ? r.out : r.err);
    msg += err.empty() ? " and printed nothing." : ": " + err;
    if (!input.empty()) msg += "\nIts input was:\n" + tail(input, 800);
    if (!advice.empty()) msg += "\n" + advice;
    fail(errc::lab_failed, msg);
  }
  return r;
}

// Runs fn(0..n-1) on a few threads (the work is mostly waiting for child
// processes). Rethrows the first exception.
template <class F>
void parallel_for(size_t n, F const& fn) {
  if (n == 0) return;
  size_t workers = std::min<size_t>(n, std::max(4u, std::thread::hardware_concurrency() * 2));
  std::atomic<size_t> next{0};
  std::exception_ptr first;
  std::mutex m;
  std::stop_token const stop = t_stop;
  auto body = [&] {
    t_stop = stop;
    for (;;) {
      size_t i = next++;
      if (i >= n) return;
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(m);
        if (!first) first = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t k = 1; k < workers; ++k) threads.emplace_back(body);
  body();
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

// ---------------------------------------------------------------- /proc

struct NsId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator<(NsId const& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
  bool operator==(NsId const& o) const { return dev == o.dev && ino == o.ino; }
  bool valid() const { return ino != 0; }
};

std::optional<NsId> ns_of_path(std::string const& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return NsId{st.st_dev, st.st_ino};
}

std::optional<NsId> netns_of_pid(int pid) { return ns_of_path("/proc/" + std::to_string(pid) + "/ns/net"); }

std::string netns_file(std::string const& ns) { return "/run/netns/" + ns; }

// NSpid of /proc/<pid>/status: the pid as seen from each nested pid namespace.
std::vector<long> nspids(int pid) {
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  for (auto line : lines_of(status)) {
    if (!starts_with(line, "NSpid:")) continue;
    std::vector<long> out;
    for (auto f : split_ws(line.substr(6))) out.push_back(detail::to_long(f).value_or(0));
    return out;
  }
  return {};
}

// Field 22 of /proc/<pid>/stat: start time in clock ticks after boot. With
// the pid it identifies a process for good (pids get recycled, this does not).
unsigned long long start_time(int pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  auto fields = split_ws(std::string_view(stat).substr(close + 1));
  if (fields.size() < 20) return 0;
  return detail::to_u64(fields[19]).value_or(0);
}

size_t own_pidns_depth() {
  static size_t const depth = [] {
    auto v = nspids(static_cast<int>(::getpid()));
    return v.empty() ? size_t{1} : v.size();
  }();
  return depth;
}

// True when pid is the init (pid 1) of a pid namespace one level below ours.
bool is_pidns_init(int pid) {
  auto v = nspids(pid);
  return v.size() == own_pidns_depth() + 1 && v.back() == 1;
}

// Every process whose network namespace is one of `targets` (what
// `ip netns pids` does, for all namespaces in one pass over /proc).
std::map<NsId, std::vector<int>> pids_in_netns(std::set<NsId> const& targets) {
  std::map<NsId, std::vector<int>> out;
  if (targets.empty()) return out;
  std::error_code ec;
  for (auto const& entry : fs::directory_iterator("/proc", ec)) {
    std::string const name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    int pid = std::atoi(name.c_str());
    auto ns = netns_of_pid(pid);
    if (ns && targets.count(*ns)) out[*ns].push_back(pid);
  }
  return out;
}

int pidfd_open(int pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_kill(int pidfd) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0)); }

// SIGKILLs pid only if it is (still) one of ours as `owned` decides. The pid
// is pinned with a pidfd first, so the check and the signal are about the
// same process even if the pid is recycled in between. Returns the pidfd to
// wait on (-1 when nothing was signalled).
template <class Owned>
int kill_if_ours(int pid, Owned const& owned) {
  if (pid <= 1) return -1;
  int fd = pidfd_open(pid);
  if (fd < 0) {
    if (errno != ENOSYS) return -1;  // gone already
    // Kernels before 5.3: check, then kill. Best we can do there.
    if (!owned(pid)) return -1;
    ::kill(pid, SIGKILL);
    return -1;
  }
  if (!owned(pid) || pidfd_kill(fd) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Waits until every pidfd is readable (its process has exited) or until
// the deadline; closes them.
void wait_pidfds(std::vector<int>& fds, clock_type::time_point deadline) {
  std::vector<pollfd> p;
  for (int fd : fds)
    if (fd >= 0) p.push_back({fd, POLLIN, 0});
  while (!p.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    if (left <= 0) break;
    int r = ::poll(p.data(), p.size(), static_cast<int>(left));
    if (r < 0 && errno != EINTR) break;
    std::vector<pollfd> still;
    for (auto const& e : p) {
      if (e.revents)
        ::close(e.fd);
      else
        still.push_back({e.fd, POLLIN, 0});
    }
    p.swap(still);
  }
  for (auto const& e : p) ::close(e.fd);
  fds.clear();
}

// ---------------------------------------------------------------- ssh probe

// Connects to addr:22 on every address until sshd answers with its
// "SSH-" banner or the deadline passes. All at once, no threads. Every
// 100 ms, `dead` may mark hosts not worth waiting for any more.
std::vector<bool> probe_sshd(std::vector<std::string> const& addrs, clock_type::time_point deadline,
                             std::function<void(std::vector<bool>& dead)> const& dead = {}) {
  struct Probe {
    int fd = -1;
    bool connected = false;
    bool done = false;
    clock_type::time_point retry_at{};
    std::string got;
  };
  std::vector<Probe> probes(addrs.size());
  std::vector<bool> ok(addrs.size(), false);
  auto reset = [](Probe& p, clock_type::time_point now) {
    if (p.fd >= 0) ::close(p.fd);
    p.fd = -1;
    p.connected = false;
    p.got.clear();
    p.retry_at = now + 20ms;
  };
  auto next_dead_check = clock_type::now() + 100ms;
  for (;;) {
    if (stop_requested()) {
      for (auto& p : probes)
        if (p.fd >= 0) ::close(p.fd);
      fail_stopped("waiting for the hosts' sshd");
    }
    auto now = clock_type::now();
    if (dead && now >= next_dead_check) {
      next_dead_check = now + 100ms;
      std::vector<bool> gone(addrs.size(), false);
      dead(gone);
      for (size_t i = 0; i < probes.size(); ++i)
        if (gone[i] && !probes[i].done) {
          reset(probes[i], now);
          probes[i].done = true;
        }
    }
    std::vector<pollfd> fds;
    std::vector<size_t> which_probe;
    bool pending = false;
    for (size_t i = 0; i < probes.size(); ++i) {
      auto& p = probes[i];
      if (p.done) continue;
      pending = true;
      if (p.fd < 0 && now >= p.retry_at) {
        p.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(22);
        ::inet_pton(AF_INET, addrs[i].c_str(), &sa.sin_addr);
        int r = ::connect(p.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        if (r == 0)
          p.connected = true;
        else if (errno != EINPROGRESS)
          reset(p, now);
      }
      if (p.fd >= 0) {
        fds.push_back({p.fd, static_cast<short>(p.connected ? POLLIN : POLLOUT), 0});
        which_probe.push_back(i);
      }
    }
    if (!pending || now >= deadline) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int r = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 20)));
    if (r < 0 && errno != EINTR) break;
    now = clock_type::now();
    for (size_t k = 0; k < fds.size(); ++k) {
      if (!fds[k].revents) continue;
      auto& p = probes[which_probe[k]];
      if (!p.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          reset(p, now);
          continue;
        }
        p.connected = true;
        continue;
      }
      char buf[256];
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n > 0) {
        p.got.append(buf, static_cast<size_t>(n));
        if (p.got.size() >= 4) {
          if (starts_with(p.got, "SSH-")) {
            ok[which_probe[k]] = true;
            p.done = true;
            ::close(p.fd);
            p.fd = -1;
          } else {
            reset(p, now);
          }
        }
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        reset(p, now);
      }
    }
  }
  for (auto& p : probes)
    if (p.fd >= 0) ::close(p.fd);
  return ok;
}

// ---------------------------------------------------------------- naming

struct HostPlan {
  std::string name;     // h1 .. hN, nas
  std::string address;  // S.11 ..
  std::string netns;    // ck-NAME-h1
  std::string veth;     // vNAME-1 (machine side; eth0 inside)
  bool nas = false;
  detail::LabHostRole role;
  bool docker = false;  // runs its own Docker engine
};

void validate_name(std::string const& name) {
  bool ok = !name.empty() && name.size() <= 8 &&
            std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
  if (!ok)
    fail(errc::invalid_argument, "lab name \"" + name +
                                     "\" is not valid: use 1 to 8 lower-case letters or digits (it becomes part of "
                                     "interface names, which Linux limits to 15 characters).");
}

void validate_subnet(std::string const& subnet) {
  auto bad = [&](std::string const& why) {
    fail(errc::invalid_argument, "lab subnet \"" + subnet + "\" is not valid: " + why +
                                     ". Give the first three octets of a private /24, like \"10.88.0\".");
  };
  // "10.89.0.0/24", as a person writes a network: name the form wanted.
  if (auto slash = subnet.find('/'); slash != std::string::npos) {
    auto base = subnet.substr(0, slash);
    auto last_dot = base.rfind('.');
    bad("a lab is always a /24 and takes only its first three octets" +
        (last_dot != std::string::npos && std::count(base.begin(), base.end(), '.') == 3
             ? std::string(": for ") + subnet + " give \"" + base.substr(0, last_dot) + "\""
             : std::string()));
  }
  int parts = 0;
  size_t i = 0;
  std::vector<int> octets;
  while (i <= subnet.size()) {
    size_t j = subnet.find('.', i);
    if (j == std::string::npos) j = subnet.size();
    std::string part = subnet.substr(i, j - i);
    if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      bad("each octet must be a number from 0 to 255");
    int v = std::atoi(part.c_str());
    if (v > 255) bad("each octet must be a number from 0 to 255");
    octets.push_back(v);
    ++parts;
    i = j + 1;
  }
  if (parts != 3) bad("it must have exactly three octets");
  if (octets[0] == 0 || octets[0] == 127 || octets[0] >= 224) bad("it must not be a loopback, zero or multicast network");
}

std::string default_state_dir(std::string const& name) { return "/run/clusterkit/lab-" + name; }

std::string normalize_state_dir(std::string const& name, std::string const& given) {
  std::string dir = given.empty() ? default_state_dir(name) : given;
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  bool safe = std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' || c == '-' || c == '+';
  });
  if (!safe)
    fail(errc::invalid_argument, "lab state folder \"" + s +
                                     "\" has characters the lab cannot put in sshd configs and inventories; use "
                                     "letters, digits, '/', '.', '_', '-' or '+'.");
  if (s == "/" || s == "/tmp" || s == "/run")
    fail(errc::invalid_argument, "lab state folder \"" + s + "\" must be a folder of its own, like /run/clusterkit/lab-" + name + ".");
  for (char const* hidden : {"/mnt", "/srv"})
    if (s == hidden || starts_with(s, std::string(hidden) + "/"))
      fail(errc::invalid_argument, "lab state folder \"" + s + "\" is under " + hidden +
                                       ", which every lab host covers with a private mount; choose another folder "
                                       "(the default is /run/clusterkit/lab-" + name + ").");
  return s;
}

std::string bridge_name(std::string const& name) { return "ckbr-" + name; }
std::string netns_prefix(std::string const& name) { return "ck-" + name + "-"; }
std::string veth_prefix(std::string const& name) { return "v" + name + "-"; }

std::vector<HostPlan> plan_hosts(LabOptions const& o) {
  auto roles = detail::assign_lab_roles(o.hosts, o.gpus, o.roles);
  if (!std::isfinite(o.gpu_memory_gib) || o.gpu_memory_gib <= 0 || o.gpu_memory_gib > 4096) {
    std::ostringstream v;
    v << o.gpu_memory_gib;
    fail(errc::invalid_argument, "lab: simulated GPUs of " + v.str() + " GiB asked for; give a size above 0 and at most 4096 GiB "
                                 "(--gpu-memory-gib).");
  }
  std::vector<HostPlan> out;
  for (int i = 1; i <= o.hosts; ++i)
    out.push_back({"h" + std::to_string(i), o.subnet + "." + std::to_string(10 + i), netns_prefix(o.name) + "h" + std::to_string(i),
                   veth_prefix(o.name) + std::to_string(i), false, roles[static_cast<size_t>(i - 1)], o.docker});
  if (o.nas) {
    HostPlan nas{"nas", o.subnet + ".250", netns_prefix(o.name) + "nas", veth_prefix(o.name) + "nas", true, {}, false};
    nas.role.role = "nas";
    nas.role.groups = {"storage"};
    out.push_back(std::move(nas));
  }
  std::string const& name = o.name;
  for (auto const& h : out)
    if (h.veth.size() > 15)
      fail(errc::invalid_argument, "lab: interface name \"" + h.veth + "\" is longer than Linux's 15 characters; use a shorter lab name.");
  if (bridge_name(name).size() > 15)
    fail(errc::invalid_argument, "lab: bridge name \"" + bridge_name(name) + "\" is longer than Linux's 15 characters; use a shorter lab name.");
  return out;
}

// ---------------------------------------------------------------- state

struct Paths {
  std::string dir;
  std::string state() const { return dir + "/" + kStateFile; }
  std::string marker() const { return dir + "/" + kMarker; }
  std::string identity() const { return dir + "/id_ed25519"; }
  std::string known_hosts() const { return dir + "/known_hosts"; }
  std::string authorized_keys() const { return dir + "/authorized_keys"; }
  std::string inventory() const { return dir + "/inventory.yaml"; }
  std::string empty_bashrc() const { return dir + "/empty-bashrc"; }
  std::string nas_export() const { return dir + "/nas-export"; }
  std::string host_key(std::string const& h) const { return dir + "/hostkey-" + h; }
  std::string sshd_config(std::string const& h) const { return dir + "/sshd-" + h + ".conf"; }
  std::string sshd_log(std::string const& h) const { return dir + "/sshd-" + h + ".log"; }
  std::string start_log(std::string const& h) const { return dir + "/start-" + h + ".log"; }
  detail::LabDockerPaths docker(HostPlan const& h) const { return detail::lab_docker_paths(dir, h.name, h.netns); }
};

std::optional<json> load_state(Paths const& paths) {
  std::string text = read_file(paths.state());
  if (text.empty()) return std::nullopt;
  try {
    json j = json::parse(text);
    if (!j.is_object()) return std::nullopt;
    return j;
  } catch (std::exception const& e) {
    spdlog::debug("lab: {} is unreadable ({}); falling back to scanning", paths.state(), e.what());
    return std::nullopt;
  }
}

void save_state(Paths const& paths, json const& j) { write_file(paths.state(), j.dump(2) + "\n", 0600); }

json host_json(HostPlan const& h, Paths const& paths) {
  json j{{"name", h.name}, {"address", h.address}, {"netns", h.netns}, {"veth", h.veth}, {"nas", h.nas},
         {"role", h.role.role}, {"gpus", h.role.gpus}, {"docker", h.docker}};
  if (h.docker) {
    auto d = paths.docker(h);
    j["docker_dir"] = d.dir;
    j["docker_socket"] = d.socket;
    j["cgroup_parent"] = d.cgroup_parent;
  }
  return j;
}

// ---------------------------------------------------------------- live objects

std::vector<std::string> list_lab_netns(std::string const& name) {
  std::vector<std::string> out;
  std::error_code ec;
  std::string prefix = netns_prefix(name);
  for (auto const& e : fs::directory_iterator("/run/netns", ec)) {
    std::string n = e.path().filename().string();
    if (starts_with(n, prefix)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool link_exists(std::string const& ifname) {
  std::error_code ec;
  return fs::exists("/sys/class/net/" + ifname, ec);
}

std::vector<std::string> list_lab_veths(std::string const& name) {
  std::vector<std::string> out;
  std::error_code ec;
  std::string prefix = veth_prefix(name);
  for (auto const& e : fs::directory_iterator("/sys/class/net", ec)) {
    std::string n = e.path().filename().string();
    if (starts_with(n, prefix)) out.push_back(n);
  }
  return out;
}

// A host's sshd as recorded in state.json, checked against the live system.
bool sshd_alive(json const& h) {
  int pid = h.value("sshd_pid", 0);
  if (pid <= 1) return false;
  auto live = ns_of_path(netns_file(h.value("netns", "")));
  auto of_pid = netns_of_pid(pid);
  if (!live || !of_pid || !(*live == *of_pid)) return false;
  unsigned long long st = h.value("sshd_start_time", 0ull);
  if (st != 0 && start_time(pid) != st) return false;
  return is_pidns_init(pid);
}

// Field 4 of /proc/<pid>/stat.
int parent_of(int pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  auto fields = split_ws(std::string_view(stat).substr(close + 1));
  return fields.size() > 1 ? static_cast<int>(detail::to_long(fields[1]).value_or(0)) : 0;
}

std::string comm_of(int pid) { return trim(read_file("/proc/" + std::to_string(pid) + "/comm")); }

// What runs in a host right now, found through its network namespace: pid 1
// of its pid namespace (sshd) and the dockerd that pid 1 started.
struct LiveHost {
  int pid1 = 0;
  int dockerd = 0;
};

std::map<std::string, LiveHost> live_hosts(std::vector<std::string> const& netns_names) {
  std::map<NsId, std::string> by_id;
  std::set<NsId> targets;
  for (auto const& n : netns_names)
    if (auto id = ns_of_path(netns_file(n))) by_id[*id] = n, targets.insert(*id);
  std::map<std::string, LiveHost> out;
  for (auto const& [ns, pids] : pids_in_netns(targets)) {
    LiveHost& live = out[by_id[ns]];
    for (int pid : pids)
      if (is_pidns_init(pid)) live.pid1 = pid;
    if (live.pid1 == 0) continue;
    for (int pid : pids)
      if (parent_of(pid) == live.pid1 && comm_of(pid) == "dockerd") live.dockerd = pid;
  }
  return out;
}

// Docker's health check, `GET /_ping` on the engine's socket: what `docker`
// does first, without starting a process. A path-named unix socket is
// reachable from any network namespace, so this machine can ask directly.
bool docker_ping(std::string const& socket_path, std::chrono::milliseconds timeout = 1000ms) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof sa.sun_path) return false;
  std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    static constexpr char request[] = "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    if (::send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof request - 1)) {
      std::string got;
      char buf[512];
      ssize_t n;
      while (got.size() < 4096 && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
      auto first = got.substr(0, got.find('\r'));
      ok = starts_with(first, "HTTP/1.") && first.find(" 200") != std::string::npos;
    }
  }
  ::close(fd);
  return ok;
}

LabStatus status_from_state(std::string const& name, Paths const& paths, json const& state, bool probe) {
  LabStatus s;
  s.name = name;
  s.exists = true;
  s.state_dir = paths.dir;
  s.inventory_path = paths.inventory();
  s.identity_file = paths.identity();
  s.known_hosts_file = paths.known_hosts();
  s.bridge = state.value("bridge", bridge_name(name));
  s.docker = state.value("docker", false);
  s.gpus = state.value("gpus", 0);
  if (s.docker) s.runtime_image = state.value("runtime_image", "");
  std::vector<std::string> addrs, netns;
  auto const hosts = state.value("hosts", json::array());
  for (auto const& h : hosts) netns.push_back(h.value("netns", ""));
  auto live = live_hosts(netns);
  for (auto const& h : hosts) {
    LabHostStatus hs;
    hs.name = h.value("name", "");
    hs.address = h.value("address", "");
    hs.netns = h.value("netns", "");
    hs.role = h.value("role", "");
    hs.gpus = h.value("gpus", 0);
    hs.sshd_pid = h.value("sshd_pid", 0);
    hs.running = sshd_alive(h);
    auto const& l = live[hs.netns];
    if (!hs.running && l.pid1 > 0) {
      // Not (or no longer) what state.json recorded, e.g. after a crash
      // between starting the host and writing its pid: pid 1 of the host's
      // namespaces is its sshd all the same.
      hs.sshd_pid = l.pid1;
      hs.running = true;
    }
    hs.docker = h.value("docker", false);
    if (hs.docker) {
      hs.docker_host = "unix://" + h.value("docker_socket", "");
      hs.dockerd_pid = l.dockerd;
      hs.docker_running = l.dockerd > 0;
    }
    s.hosts.push_back(hs);
    addrs.push_back(hs.address);
  }
  if (probe) {
    // Only hosts whose sshd process is alive are worth a connection.
    std::vector<std::string> alive;
    std::vector<size_t> index;
    for (size_t i = 0; i < s.hosts.size(); ++i)
      if (s.hosts[i].running) alive.push_back(addrs[i]), index.push_back(i);
    auto ok = probe_sshd(alive, clock_type::now() + 2s);
    for (size_t k = 0; k < index.size(); ++k) s.hosts[index[k]].running = ok[k];
    for (size_t i = 0; i < s.hosts.size(); ++i) {
      auto& hs = s.hosts[i];
      if (hs.docker_running) hs.docker_running = docker_ping(hosts[i].value("docker_socket", ""));
    }
  }
  return s;
}

// ---------------------------------------------------------------- files

std::string sshd_config_text(std::string const& lab, HostPlan const& h, Paths const& paths) {
  std::ostringstream c;
  c << "# Written by `clusterkit lab up` (lab \"" << lab << "\", host " << h.name << ").\n"
    << "ListenAddress 0.0.0.0\n"
    << "AddressFamily inet\n"
    << "Port 22\n"
    << "HostKey " << paths.host_key(h.name) << "\n"
    << "PidFile none\n"
    << "PermitRootLogin prohibit-password\n"
    << "PasswordAuthentication no\n"
    << "KbdInteractiveAuthentication no\n"
    << "UsePAM no\n"
    << "AuthorizedKeysFile " << paths.authorized_keys() << "\n"
    << "# The state folder may sit under /tmp (world-writable), which StrictModes\n"
    << "# would refuse; the folder itself is root's, mode 0700.\n"
    << "StrictModes no\n"
    << "Subsystem sftp internal-sftp\n"
    << "# ControlMaster connections multiplex many channels; the default of 10\n"
    << "# silently pushes clients onto extra full connections.\n"
    << "MaxSessions 64\n"
    << "MaxStartups 100:30:200\n"
    << "UseDNS no\n"
    << "X11Forwarding no\n"
    << "PrintMotd no\n"
    << "PrintLastLog no\n"
    << "AcceptEnv LANG LC_*\n"
    << "LogLevel INFO\n";
  if (h.docker) {
    // `docker` in any ssh session talks to this host's own engine, as on a
    // real server (where it is the default /var/run/docker.sock).
    c << "SetEnv DOCKER_HOST=unix://" << paths.docker(h).socket << "\n";
  }
  return c.str();
}

std::string inventory_text(LabOptions const& o, std::vector<HostPlan> const& hosts, Paths const& paths) {
  detail::LabInventory inv;
  inv.lab = o.name;
  inv.identity_file = paths.identity();
  inv.known_hosts_file = paths.known_hosts();
  inv.docker = o.docker;
  inv.runtime_image = o.runtime_image;
  inv.serve_venv = o.serve_venv;
  inv.gpu_model = o.gpu_model;
  inv.gpu_memory_gib = o.gpu_memory_gib;
  for (auto const& h : hosts) {
    if (h.nas) inv.nas_address = h.address;
    inv.hosts.push_back({h.name, h.address, h.nas, h.role});
  }
  return detail::lab_inventory_text(inv);
}

// What a host with LabOptions::docker needs to start its engine.
struct DockerLaunch {
  std::string dockerd;
  std::string containerd;
  /// cgroup_mount_script() of the machine's mount table.
  std::string cgroup_mounts;
};

// The script the host's namespaces run before becoming sshd. Every mount
// here happens in the host's own (private) mount namespace.
std::string host_script(HostPlan const& h, Paths const& paths, std::string const& sshd, bool have_bashrc,
                        DockerLaunch const* docker) {
  std::ostringstream s;
  s << "set -e\n"
    << "hostname " << shell::quote(h.name) << "\n"
    // `ip netns exec` copied the machine's /run/netns mounts into this mount
    // namespace; a private copy would pin every lab's network namespaces
    // alive after `ip netns del` until this host stops. Drop them.
    << "umount -l /run/netns 2>/dev/null || true\n";
  if (have_bashrc) {
    // root's ~/.bashrc on these machines runs `pyenv init` (~200 ms), and
    // bash reads ~/.bashrc for every command sshd runs, so each ssh command
    // would pay it. Hide it behind an empty file so lab hosts behave like
    // a server with a plain shell and timings measure clusterkit, not pyenv.
    s << "if [ -e /root/.bashrc ]; then mount --bind " << shell::quote(paths.empty_bashrc()) << " /root/.bashrc; fi\n";
  }
  // A private /mnt for sshfs mounts (the machine's own /mnt stays untouched).
  s << "mount -t tmpfs -o mode=0755 lab-mnt /mnt\n";
  bool state_in_tmp = starts_with(paths.dir, "/tmp/");
  if (state_in_tmp) {
    // The private /tmp below would hide the state folder (sshd config, keys,
    // logs): park it on /mnt/.state, then move it back into the new /tmp.
    s << "mkdir /mnt/.state\n"
      << "mount --bind " << shell::quote(paths.dir) << " /mnt/.state\n";
  }
  // A private /tmp: Ray and friends keep sockets and sessions there, and
  // two hosts must not see each other's.
  s << "mount -t tmpfs -o mode=1777 lab-tmp /tmp\n";
  if (state_in_tmp) {
    s << "mkdir -p " << shell::quote(paths.dir) << "\n"
      << "mount --move /mnt/.state " << shell::quote(paths.dir) << "\n"
      << "rmdir /mnt/.state\n";
  }
  if (h.nas) {
    // /srv/nas is the export. A private tmpfs on /srv gives it a mount
    // point without creating anything on the machine's disk.
    s << "mount -t tmpfs -o mode=0755 lab-srv /srv\n"
      << "mkdir /srv/nas\n"
      << "mount --bind " << shell::quote(paths.nas_export()) << " /srv/nas\n";
  }
  if (docker && h.docker) {
    auto d = paths.docker(h);
    auto q = [](std::string const& x) { return shell::quote(x); };
    // `ip netns exec` mounted a fresh /sys for this host, whose
    // /sys/fs/cgroup is empty: mount the machine's cgroup hierarchies again
    // (in this host's mount namespace only).
    s << docker->cgroup_mounts;
    // containerd's shims put their sockets in /run/containerd/s and dockerd
    // its plugin folder in /run/docker, whatever the configured roots: a
    // private tmpfs on each keeps them in this host (the empty mount points
    // are made on the machine by `lab up`).
    s << "mount -t tmpfs -o mode=0711 lab-containerd /run/containerd\n"
      << "mount -t tmpfs -o mode=0700 lab-docker /run/docker\n";
    // Both daemons are children of this shell, which becomes sshd: they live
    // and die with the host's pid namespace. containerd is started on its
    // own (not by dockerd) so that its configuration can keep it off the
    // machine's /opt; dockerd waits for its socket.
    s << docker->containerd << " --config " << q(d.containerd_toml) << " </dev/null >>" << q(d.containerd_log) << " 2>&1 &\n"
      << "(\n"
      << "  i=0\n"
      << "  while [ ! -S " << q(d.containerd_socket) << " ]; do\n"
      << "    i=$((i + 1))\n"
      << "    if [ $i -gt 600 ]; then echo \"clusterkit lab: containerd did not create its socket within 30 s; see "
      << d.containerd_log << "\"; exit 1; fi\n"
      << "    sleep 0.05\n"
      << "  done\n"
      << "  exec " << docker->dockerd << " --config-file " << q(d.daemon_json) << " --containerd " << q(d.containerd_socket)
      << " --data-root " << q(d.data_root) << " --exec-root " << q(d.exec_root) << " --pidfile " << q(d.pidfile)
      << " -H " << q("unix://" + d.socket) << " --cgroup-parent " << q(d.cgroup_parent) << "\n"
      << ") </dev/null >>" << q(d.dockerd_log) << " 2>&1 &\n";
  }
  s << "exec " << sshd << " -D -f " << shell::quote(paths.sshd_config(h.name)) << " -E " << shell::quote(paths.sshd_log(h.name)) << "\n";
  return s.str();
}

// Starts `ip netns exec NS unshare ... sh -c SCRIPT` fully detached (double
// fork, own session, stdio to `log`), so the host outlives this process.
// Returns a pidfd of the started process (it becomes `unshare`, which lives
// as long as the host does), or -1 if none could be had.
int launch_detached(std::vector<std::string> const& argv, std::string const& log) {
  std::vector<char*> cargv;
  for (auto const& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::string path_env = std::string("PATH=") + kHostPath;
  char* envp[] = {const_cast<char*>(path_env.c_str()), const_cast<char*>("LANG=C.UTF-8"), nullptr};
  char const* log_c = log.c_str();
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) fail(errc::lab_failed, "lab: pipe() failed: " + std::string(std::strerror(errno)));

  pid_t child = ::fork();
  if (child < 0) {
    int e = errno;
    ::close(report[0]), ::close(report[1]);
    fail(errc::lab_failed, "lab: fork() failed: " + std::string(std::strerror(e)));
  }
  if (child == 0) {
    // Only async-signal-safe calls from here on (the parent may have threads).
    ::setsid();
    pid_t grand = ::fork();
    if (grand != 0) {
      if (grand > 0) (void)!::write(report[1], &grand, sizeof grand);
      ::_exit(grand < 0 ? 1 : 0);
    }
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_c, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in < 0 || out < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    ::umask(022);
    ::execve(cargv[0], cargv.data(), envp);
    ::_exit(127);
  }
  ::close(report[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  pid_t grand = 0;
  ssize_t got = 0;
  do
    got = ::read(report[0], &grand, sizeof grand);
  while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != static_cast<ssize_t>(sizeof grand))
    fail(errc::lab_failed, "lab: starting `" + shell::join_for_display(argv) + "` failed (the detaching fork did not succeed).");
  return pidfd_open(grand);
}

bool pidfd_exited(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Serializes lab_up/lab_down of one lab name across processes (the names of
// namespaces and the bridge derive from it, whatever the state folder). The
// lock file lives outside the state folder, which lab_down deletes.
class NameLock {
public:
  explicit NameLock(std::string const& name) : path_("/run/clusterkit/lab-" + name + ".lock") {
    std::error_code ec;
    fs::create_directories("/run/clusterkit", ec);
    // The file may be removed by the lab_down holding it while we wait: then
    // the lock we got is on a file no longer at the path, and the next comer
    // would lock a new one. Retry until the locked file is the one there.
    for (int attempt = 0; attempt < 100; ++attempt) {
      fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd_ < 0) {
        spdlog::debug("lab: no lock {} ({}); going on without", path_, std::strerror(errno));
        return;
      }
      try {
        lock_exclusive(fd_, "another clusterkit process working on lab \"" + name + "\" (" + path_ + ")");
      } catch (...) {
        ::close(fd_);  // no destructor runs for a constructor that throws
        throw;
      }
      struct stat held {}, there {};
      if (::fstat(fd_, &held) == 0 && ::stat(path_.c_str(), &there) == 0 && held.st_ino == there.st_ino &&
          held.st_dev == there.st_dev)
        return;
      ::close(fd_);
      fd_ = -1;
    }
  }
  /// lab_down, once the lab is gone: remove the file while still holding it
  /// (nothing of the lab is left behind, its lock file included).
  void remove_file() {
    if (fd_ >= 0) ::unlink(path_.c_str());
  }
  ~NameLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }
  NameLock(NameLock const&) = delete;
  NameLock& operator=(NameLock const&) = delete;

private:
  std::string path_;
  int fd_ = -1;
};

void require_root() {
  if (::geteuid() != 0)
    fail(errc::lab_needs_root,
         "clusterkit lab needs root: it creates network namespaces and a bridge. Run it with sudo.");
}

// Address conflicts: another interface already on (or overlapping) our /24
// would make the lab's addresses ambiguous.
void check_subnet_free(std::string const& ip, std::string const& subnet, std::string const& bridge) {
  Result r = run({ip, "-o", "-4", "addr", "show"});
  if (r.status != 0) return;  // not fatal: `ip` itself is checked by the real steps
  in_addr ours{};
  ::inet_pton(AF_INET, (subnet + ".0").c_str(), &ours);
  uint32_t our_net = ntohl(ours.s_addr);
  for (auto line : lines_of(r.out)) {
    auto f = split_ws(line);
    if (f.size() < 4 || f[2] != "inet") continue;
    std::string ifname(f[1]);
    if (ifname == bridge) continue;
    auto slash = f[3].find('/');
    if (slash == std::string_view::npos) continue;
    in_addr a{};
    if (::inet_pton(AF_INET, std::string(f[3].substr(0, slash)).c_str(), &a) != 1) continue;
    int prefix = static_cast<int>(detail::to_long(f[3].substr(slash + 1)).value_or(32));
    int common = std::min(prefix, 24);
    uint32_t mask = common == 0 ? 0 : ~uint32_t{0} << (32 - common);
    if ((ntohl(a.s_addr) & mask) == (our_net & mask))
      fail(errc::lab_failed, "lab: subnet " + subnet + ".0/24 overlaps " + std::string(f[3]) + " on interface " + ifname +
                                 " (another lab or a real network). Pick another subnet (LabOptions::subnet, "
                                 "`--subnet`) or take the other lab down.");
  }
}

// ---------------------------------------------------------------- runtime image

// No container registry is reachable from the lab, so the image deployments
// run is made here: a Debian bookworm rootfs from debootstrap, cached as a
// tarball and `docker import`ed into every engine. It stays small on
// purpose: Ray and vLLM are not in it, they are the venv on the machine
// (scripts/install-serving.sh, made from Debian's own python3.11) that
// deployments mount into containers at the same path, the way the seed
// mounts the model. Same Debian, same Python: the venv runs unchanged.
constexpr char const* kImageCacheDir = "/var/cache/clusterkit";
constexpr char const* kImageSuite = "bookworm";
// python3: the venv's interpreter is a link to /usr/bin/python3.11 and needs
//   its standard library; procps: ps and pkill (`ray stop` scans processes);
// iproute2: `ip` (addresses for VLLM_HOST_IP, checks); libstdc++6, libgomp1,
//   libnuma1: what the Ray, torch and vLLM CPU wheels load from the system;
// g++, python3-dev: vLLM's CPU build compiles its model with torch.compile,
//   whose inductor backend writes C++ and needs a compiler (without one the
//   engine dies in warm-up: "InvalidCxxCompiler: No working C++ compiler
//   found"; --enforce-eager avoids it but crashes with PP > 1 in vLLM 0.32);
// openssl: inductor runs the `openssl` program while it compiles (without
//   it: "FileNotFoundError: ... 'openssl'", also found on the lab).
constexpr char const* kImagePackages = "python3,python3-dev,procps,iproute2,libstdc++6,libgomp1,libnuma1,g++,openssl";
// Bump when what is done to the rootfs below changes: the cache is rebuilt.
constexpr int kImageRecipe = 3;
constexpr char const* kDefaultMirror = "http://deb.debian.org/debian";

struct RuntimeImage {
  std::string tarball;
  bool built = false;  // false: reused from the cache
  long long build_ms = 0;
};

// The Debian mirror this machine's apt uses for the suite, so the image
// comes from where the machine's own packages come from.
std::string apt_mirror() {
  std::vector<std::pair<std::string, std::string>> sources;
  sources.emplace_back("/etc/apt/sources.list", read_file("/etc/apt/sources.list"));
  std::vector<std::string> files;
  std::error_code ec;
  for (auto const& e : fs::directory_iterator("/etc/apt/sources.list.d", ec)) {
    std::string f = e.path().string();
    if (f.ends_with(".list") || f.ends_with(".sources")) files.push_back(f);
  }
  std::sort(files.begin(), files.end());
  for (auto const& f : files) sources.emplace_back(f, read_file(f));
  return detail::debian_mirror_for(kImageSuite, sources).value_or(kDefaultMirror);
}

// Builds the runtime image's tarball unless the cache has one made from the
// same recipe (suite, mirror, packages). Serialized across processes: labs
// brought up at the same time share one build.
RuntimeImage ensure_runtime_image() {
  auto t0 = clock_type::now();
  std::string const dir = kImageCacheDir;
  RuntimeImage img;
  img.tarball = dir + "/lab-runtime-" + kImageSuite + ".tar";
  std::string const stamp_path = img.tarball + ".stamp";
  std::string const mirror = apt_mirror();
  std::string const stamp = std::string("suite=") + kImageSuite + "\nmirror=" + mirror + "\npackages=" + kImagePackages +
                            "\nrecipe=" + std::to_string(kImageRecipe) + "\n";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(errc::local_file_error, "lab up --docker: cannot create " + dir + " for the runtime image: " + ec.message() + ".");
  int lock = ::open((dir + "/lab-runtime.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  struct Unlock {
    int fd;
    ~Unlock() {
      if (fd >= 0) ::close(fd);
    }
  } unlock{lock};
  if (lock >= 0) lock_exclusive(lock, "another lab up building the runtime image (" + dir + "/lab-runtime.lock)");
  if (fs::exists(img.tarball, ec) && read_file(stamp_path) == stamp) return img;

  std::string unshare = require(kUnshare);
  std::string debootstrap = require(kDebootstrap);
  std::string tar = require(kTar);
  std::string const work = dir + "/lab-runtime-" + kImageSuite + ".build";
  std::string const rootfs = work + "/rootfs";
  fs::remove_all(work, ec);  // a build cut short earlier (it had no mounts: see below)
  fs::create_directories(work, ec);
  spdlog::info("lab: building the runtime image (debootstrap {} from {}; about a minute, once)", kImageSuite, mirror);
  // debootstrap mounts /proc and /sys inside the new root while it installs;
  // its own private mount namespace keeps those mounts off the machine (and
  // a pid namespace stops anything a package script started).
  // --kill-child: a timeout or a stop kills `unshare`; debootstrap (pid 1 of
  // the new namespace) and everything it started go with it.
  Result r = run({unshare, "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc", debootstrap,
                  "--variant=minbase", std::string("--include=") + kImagePackages, kImageSuite, rootfs, mirror},
                 {}, 15min);
  if (r.status != 0) {
    std::string log = tail(read_file(rootfs + "/debootstrap/debootstrap.log"), 800);
    fs::remove_all(work, ec);
    fail(errc::lab_failed, "lab up --docker: building the runtime image failed: debootstrap " + std::string(kImageSuite) +
                               " from " + mirror + " exited with status " + std::to_string(r.status) + ": " +
                               tail(r.err.empty() ? r.out : r.err, 800) + (log.empty() ? "" : "\ndebootstrap.log: " + log) +
                               "\nIt needs the Debian mirror that /etc/apt/sources.list(.d) names; check that `apt-get "
                               "update` works here.");
  }
  // What a container never uses: downloaded packages, apt's lists (no
  // network to update them from), documentation. About 270 MB -> 130 MB.
  for (char const* sub : {"var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                          "usr/share/locale"}) {
    std::string p = rootfs + "/" + sub;
    for (auto const& e : fs::directory_iterator(p, ec))
      if (!(e.path().filename() == "partial" || e.path().filename() == "lock")) fs::remove_all(e.path(), ec);
  }
  std::string const tmp = img.tarball + ".tmp";
  run_checked("packing the runtime image", {tar, "--numeric-owner", "-C", rootfs, "-cf", tmp, "."}, {}, {}, 10min);
  if (::rename(tmp.c_str(), img.tarball.c_str()) != 0)
    fail(errc::local_file_error, "lab up --docker: cannot rename " + tmp + ": " + std::strerror(errno) + ".");
  write_file(stamp_path, stamp, 0644);
  fs::remove_all(work, ec);
  img.built = true;
  img.build_ms = elapsed_ms(t0);
  spdlog::info("lab: runtime image built in {} ms: {}", img.build_ms, img.tarball);
  return img;
}

// ---------------------------------------------------------------- engines

// Every cgroup hierarchy mounted on this machine.
std::vector<std::string> machine_cgroup_roots() { return detail::cgroup_roots(read_file("/proc/self/mountinfo")); }

// The cgroup_mount_script() for this machine.
std::string cgroup_mounts_for_hosts() {
  std::vector<detail::CgroupLink> links;
  std::error_code ec;
  for (auto const& e : fs::directory_iterator("/sys/fs/cgroup", ec))
    if (e.is_symlink(ec)) links.push_back({e.path().filename().string(), fs::read_symlink(e.path(), ec).string()});
  std::sort(links.begin(), links.end(), [](auto const& a, auto const& b) { return a.name < b.name; });
  std::string script = detail::cgroup_mount_script(read_file("/proc/self/mountinfo"), links);
  if (script.empty())
    fail(errc::lab_failed, "lab up --docker: this machine has no cgroup hierarchies mounted under /sys/fs/cgroup, and "
                           "dockerd needs them. Mount them (cgroup2 on /sys/fs/cgroup, or the v1 hierarchies) and try again.");
  return script;
}

// Waits until every engine answers `GET /_ping`. A host whose dockerd or
// containerd logged a fatal error, or whose start script gave up, is not
// waited for. Returns what failed, one "\n- host: ..." per host.
std::string wait_for_engines(std::vector<HostPlan> const& hosts, Paths const& paths, clock_type::time_point deadline) {
  std::vector<size_t> pending;
  for (size_t i = 0; i < hosts.size(); ++i)
    if (hosts[i].docker) pending.push_back(i);
  std::map<size_t, std::string> dead;
  auto next_log_check = clock_type::now();
  while (!pending.empty() && clock_type::now() < deadline) {
    throw_if_stopped("waiting for the hosts' Docker engines");
    std::vector<size_t> still;
    bool check_logs = clock_type::now() >= next_log_check;
    if (check_logs) next_log_check = clock_type::now() + 250ms;
    for (size_t i : pending) {
      auto d = paths.docker(hosts[i]);
      if (docker_ping(d.socket, 500ms)) continue;
      if (check_logs) {
        std::string dlog = read_file(d.dockerd_log), clog = read_file(d.containerd_log);
        if (dlog.find("level=fatal") != std::string::npos || dlog.find("clusterkit lab:") != std::string::npos ||
            clog.find("level=fatal") != std::string::npos) {
          dead[i] = "its engine stopped";
          continue;
        }
      }
      still.push_back(i);
    }
    pending.swap(still);
    if (!pending.empty()) std::this_thread::sleep_for(50ms);
  }
  std::string problems;
  auto report = [&](size_t i, std::string const& why) {
    auto d = paths.docker(hosts[i]);
    problems += "\n- " + hosts[i].name + " (" + hosts[i].address + "): " + why + " (unix://" + d.socket + ")";
    std::string dlog = tail(read_file(d.dockerd_log), 900), clog = tail(read_file(d.containerd_log), 600);
    if (!dlog.empty()) problems += "\n  dockerd log (" + d.dockerd_log + "): " + dlog;
    if (!clog.empty()) problems += "\n  containerd log (" + d.containerd_log + "): " + clog;
  };
  for (auto const& [i, why] : dead) report(i, why);
  for (size_t i : pending) report(i, "dockerd does not answer");
  return problems;
}

// Leftover cgroups of the lab's containers (`--cgroup-parent /ck-NAME-hI` in
// every hierarchy): the engines die with their hosts and never remove them.
// Their processes died with the hosts' pid namespaces; any still listed is
// killed by pid (it is in a cgroup only this lab's engines make). Returns
// what could not be removed.
std::vector<std::string> remove_lab_cgroups(std::string const& name) {
  std::string const prefix = netns_prefix(name);
  std::vector<std::string> remaining;
  std::error_code ec;
  auto ours = [&](int pid) {
    std::string cg = read_file("/proc/" + std::to_string(pid) + "/cgroup");
    return cg.find(":/" + prefix) != std::string::npos;
  };
  for (auto const& root : machine_cgroup_roots()) {
    std::vector<fs::path> tops;
    for (auto const& e : fs::directory_iterator(root, ec))
      if (e.is_directory(ec) && !e.is_symlink(ec) && starts_with(e.path().filename().string(), prefix)) tops.push_back(e.path());
    for (auto const& top : tops) {
      std::vector<fs::path> dirs{top};
      for (auto it = fs::recursive_directory_iterator(top, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path());
      }
      // Deepest first: a cgroup goes only once its children are gone.
      std::sort(dirs.begin(), dirs.end(), [](auto const& a, auto const& b) { return a.string().size() > b.string().size(); });
      auto deadline = clock_type::now() + 3s;
      for (auto const& d : dirs) {
        while (::rmdir(d.c_str()) != 0 && errno == EBUSY && clock_type::now() < deadline) {
          std::vector<int> waits;
          auto const procs = read_file((d / "cgroup.procs").string());  // lines_of views into it
          for (auto line : lines_of(procs))
            if (int pid = static_cast<int>(detail::to_long(trim(line)).value_or(0)); pid > 1) {
              int fd = kill_if_ours(pid, ours);
              if (fd >= 0) waits.push_back(fd);
            }
          wait_pidfds(waits, clock_type::now() + 1s);
          std::this_thread::sleep_for(20ms);
        }
        if (fs::exists(d, ec)) remaining.push_back("cgroup " + d.string());
      }
    }
  }
  return remaining;
}

void remove_state_dir(Paths const& paths, std::string const& name) {
  std::error_code ec;
  if (!fs::exists(paths.dir, ec)) return;
  // Only a folder the lab made itself (it holds our marker) is deleted as a
  // whole; anything else is left alone.
  if (!fs::exists(paths.marker(), ec) && paths.dir != default_state_dir(name)) {
    spdlog::warn("lab: not deleting {}: it has no {} marker, so the lab did not create it", paths.dir, kMarker);
    return;
  }
  fs::remove_all(paths.dir, ec);
  if (ec)
    fail(errc::local_file_error, "lab down: cannot delete the state folder " + paths.dir + ": " + ec.message() + ".");
}

void down_impl(std::string const& name, Paths const& paths) {
  auto t0 = clock_type::now();
  auto state = load_state(paths);

  // Everything that may be ours: what state.json recorded (written before
  // the objects were made) plus what exists under our names.
  std::set<std::string> netns_names;
  std::set<std::string> veths;
  std::vector<json> recorded;
  if (state) {
    for (auto const& h : state->value("hosts", json::array())) {
      recorded.push_back(h);
      if (h.contains("netns")) netns_names.insert(h.value("netns", ""));
      if (h.contains("veth")) veths.insert(h.value("veth", ""));
    }
  }
  for (auto const& n : list_lab_netns(name)) netns_names.insert(n);
  for (auto const& v : list_lab_veths(name)) veths.insert(v);
  std::string bridge = bridge_name(name);
  bool have_bridge = link_exists(bridge);
  netns_names.erase("");
  veths.erase("");

  std::error_code ec;
  bool have_dir = fs::exists(paths.dir, ec);
  if (netns_names.empty() && veths.empty() && !have_bridge) {
    // Container cgroups can outlive everything else (a crash between the
    // namespaces going and the cgroups being removed).
    if (::geteuid() == 0) {
      auto left = remove_lab_cgroups(name);
      if (!left.empty()) spdlog::warn("lab down: could not remove {}", left.front());
    }
    if (have_dir) remove_state_dir(paths, name);
    return;
  }
  require_root();
  std::string ip = require(kIp);

  // Close our shared ssh connections to the lab's hosts first (through
  // their control sockets): they are processes we started, and they would
  // otherwise linger until keepalives notice the hosts are gone.
  if (fs::exists(paths.inventory(), ec)) {
    try {
      auto const inventory = Inventory::load(paths.inventory());  // not a temporary: the loop outlives it
      for (auto const& h : inventory.hosts()) close_connection(h.spec);
    } catch (std::exception const& e) {
      spdlog::debug("lab {}: could not read its inventory to close connections: {}", name, e.what());
    }
  }

  // 1. Kill pid 1 of each host's pid namespace (the kernel then kills every
  //    process inside it). Killing `unshare` would not be enough.
  std::set<NsId> live_ns;
  std::map<std::string, NsId> ns_by_name;
  for (auto const& n : netns_names) {
    if (auto id = ns_of_path(netns_file(n))) {
      live_ns.insert(*id);
      ns_by_name[n] = *id;
    }
  }
  std::vector<int> waits;
  // Recorded sshd pids whose namespace file is gone (someone ran
  // `ip netns del`): ours only if start time and network namespace inode
  // still match what we recorded.
  for (auto const& h : recorded) {
    int pid = h.value("sshd_pid", 0);
    unsigned long long st = h.value("sshd_start_time", 0ull);
    unsigned long long ino = h.value("netns_inode", 0ull);
    if (pid <= 1 || st == 0 || ino == 0 || ns_by_name.count(h.value("netns", ""))) continue;
    std::optional<NsId> verified;
    int fd = kill_if_ours(pid, [&](int p) {
      auto ns = netns_of_pid(p);
      bool ours = ns && ns->ino == ino && start_time(p) == st && is_pidns_init(p);
      if (ours) verified = ns;
      return ours;
    });
    if (fd >= 0) {
      waits.push_back(fd);
      live_ns.insert(*verified);  // its namespace is ours: sweep it below too
    }
  }
  auto in_live_ns = [&](int p) {
    auto ns = netns_of_pid(p);
    return ns && live_ns.count(*ns) > 0;
  };
  for (auto const& [ns, pids] : pids_in_netns(live_ns))
    for (int pid : pids)
      if (is_pidns_init(pid)) {
        int fd = kill_if_ours(pid, [&](int p) { return in_live_ns(p) && is_pidns_init(p); });
        if (fd >= 0) waits.push_back(fd);
      }
  size_t killed = waits.size();
  wait_pidfds(waits, clock_type::now() + 5s);
  spdlog::debug("lab down: killed {} host init processes; {} ms", killed, elapsed_ms(t0));

  // 2. What is left in our network namespaces: the `unshare` parents (they
  //    exit by themselves once their child is gone) and anything someone ran
  //    with `ip netns exec`. Give them a moment, then kill them by pid.
  auto settle_deadline = clock_type::now() + 500ms;
  std::map<NsId, std::vector<int>> left = pids_in_netns(live_ns);
  while (!left.empty() && clock_type::now() < settle_deadline) {
    std::this_thread::sleep_for(10ms);
    left = pids_in_netns(live_ns);
  }
  for (auto const& [ns, pids] : left)
    for (int pid : pids) {
      int fd = kill_if_ours(pid, in_live_ns);
      if (fd >= 0) waits.push_back(fd);
    }
  if (!waits.empty()) spdlog::debug("lab down: killed {} leftover processes in the namespaces", waits.size());
  wait_pidfds(waits, clock_type::now() + 5s);
  spdlog::debug("lab down: namespaces empty after {} ms", elapsed_ms(t0));

  // 3. Namespaces and the bridge, in one `ip` process (-force: keep going
  //    past objects that are already gone). Each host's veth pair dies with
  //    its namespace; the kernel tears dead namespaces down in one batch,
  //    which is far quicker than `link del` one veth at a time (64 hosts:
  //    ~0.1 s instead of ~1 s).
  std::string batch;
  for (auto const& n : netns_names)
    if (fs::exists(netns_file(n), ec)) batch += "netns del " + n + "\n";
  if (have_bridge) batch += "link del " + bridge + "\n";
  if (!batch.empty()) {
    Result r = run({ip, "-force", "-batch", "-"}, batch);
    if (r.status != 0) spdlog::debug("lab down: ip -batch: {}", trim(r.err));
  }
  auto veth_deadline = clock_type::now() + 3s;
  while (!list_lab_veths(name).empty() && clock_type::now() < veth_deadline) std::this_thread::sleep_for(10ms);
  // Veths whose namespace is kept alive by something else: delete them.
  batch.clear();
  for (auto const& v : list_lab_veths(name)) batch += "link del " + v + "\n";
  if (!batch.empty()) {
    Result r = run({ip, "-force", "-batch", "-"}, batch);
    if (r.status != 0) spdlog::debug("lab down: ip -batch: {}", trim(r.err));
  }
  spdlog::debug("lab down: links and namespaces deleted after {} ms", elapsed_ms(t0));

  // 4. The cgroups the hosts' Docker engines made for their containers.
  std::vector<std::string> remaining = remove_lab_cgroups(name);
  spdlog::debug("lab down: container cgroups removed after {} ms", elapsed_ms(t0));

  // 5. Check: nothing of ours may remain.
  for (auto const& n : list_lab_netns(name)) remaining.push_back("network namespace " + n);
  for (auto const& v : list_lab_veths(name)) remaining.push_back("interface " + v);
  if (link_exists(bridge)) remaining.push_back("bridge " + bridge);
  for (auto const& [ns, pids] : pids_in_netns(live_ns))
    for (int pid : pids) remaining.push_back("process " + std::to_string(pid));
  if (!remaining.empty()) {
    std::string list;
    for (auto const& r : remaining) list += (list.empty() ? "" : ", ") + r;
    fail(errc::lab_failed, "lab down: could not remove everything of lab \"" + name + "\"; still there: " + list +
                               ". Run `clusterkit lab down` again; if it persists, remove them with `ip netns del` / "
                               "`ip link del` and kill the listed pids.");
  }
  // The state folder goes as a whole, with each engine's data and exec
  // roots in it (overlay2 leaves its layers there once the hosts' mounts are
  // gone with their namespaces): thousands of files per engine, deleted one
  // engine per thread first (3-20 s for two engines on a busy disk).
  if (fs::exists(paths.marker(), ec)) {
    std::vector<fs::path> engine_dirs;
    for (auto const& e : fs::directory_iterator(paths.dir, ec))
      if (starts_with(e.path().filename().string(), "docker-") && e.is_directory(ec) && !e.is_symlink(ec))
        engine_dirs.push_back(e.path());
    parallel_for(engine_dirs.size(), [&](size_t i) {
      std::error_code e;
      fs::remove_all(engine_dirs[i], e);
    });
  }
  remove_state_dir(paths, name);
  for (auto const& h : recorded)
    if (h.contains("docker_dir") && fs::exists(h.value("docker_dir", ""), ec))
      fail(errc::lab_failed, "lab down: the Docker data of " + h.value("name", "") + " is still there: " +
                                 h.value("docker_dir", "") + ". Delete it (`rm -rf`) once no process uses it.");
  spdlog::debug("lab down \"{}\": {} ms", name, elapsed_ms(t0));
}

LabStatus up_impl(LabOptions const& o, Paths const& paths) {
  auto t0 = clock_type::now();
  auto ms = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count(); };
  std::string ip = require(kIp);
  std::string unshare = require(kUnshare);
  std::string sshd = require(kSshd);
  std::string keygen = require(kSshKeygen);
  require(kMount);
  require(kUmount);
  require(kHostname);
  std::string sh = require(kSh);

  auto hosts = plan_hosts(o);
  std::string bridge = bridge_name(o.name);
  // Docker: everything it needs is checked, and the runtime image built (the
  // slow part, once per machine), before anything of the lab is made.
  std::optional<DockerLaunch> docker;
  std::string docker_cli;
  RuntimeImage image;
  if (o.docker) {
    docker.emplace();
    docker->dockerd = require(kDockerd);
    docker->containerd = require(kContainerd);
    require(kContainerdShim);
    require(kRunc);
    docker_cli = require(kDockerCli);
    for (auto const& h : hosts) {
      if (!h.docker) continue;
      auto d = paths.docker(h);
      // sockaddr_un holds 107 characters; containerd adds ".ttrpc".
      for (auto const& sock : {d.socket, d.containerd_socket + ".ttrpc"})
        if (sock.size() >= sizeof(sockaddr_un::sun_path))
          fail(errc::invalid_argument, "lab up --docker: the socket path " + sock + " is longer than the " +
                                           std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                           " characters a unix socket allows; use a shorter --state-dir (the default is "
                                           "/run/clusterkit/lab-" + o.name + ").");
    }
    docker->cgroup_mounts = cgroup_mounts_for_hosts();
    image = ensure_runtime_image();
    spdlog::debug("lab up: runtime image {} after {} ms", image.built ? "built" : "cached", ms());
  }
  check_subnet_free(ip, o.subnet, bridge);
  for (auto const& h : hosts)
    if (link_exists(h.veth))
      fail(errc::lab_failed, "lab up: interface " + h.veth + " already exists although lab \"" + o.name +
                                 "\" is down; delete it (`ip link del " + h.veth + "`) or use another lab name.");

  // State folder: new or empty, or one of ours.
  std::error_code ec;
  if (fs::exists(paths.dir, ec) && !fs::exists(paths.marker(), ec) && !fs::is_empty(paths.dir, ec))
    fail(errc::invalid_argument, "lab up: the state folder " + paths.dir +
                                     " already exists and holds files the lab did not write; give an empty or new "
                                     "folder (it is deleted by `lab down`).");
  fs::create_directories(paths.dir, ec);
  if (ec) fail(errc::local_file_error, "lab up: cannot create the state folder " + paths.dir + ": " + ec.message() + ".");
  ::chmod(paths.dir.c_str(), 0700);
  write_file(paths.marker(), "This folder belongs to a clusterkit lab; `clusterkit lab down` deletes it.\n", 0600);

  // Record every object before it is made, so `lab down` can clean up after
  // a crash half-way through.
  json state = {{"version", 1},      {"name", o.name},        {"subnet", o.subnet},        {"hosts_count", o.hosts},
                {"nas", o.nas},      {"bridge", bridge},      {"state_dir", paths.dir},    {"phase", "creating"},
                {"docker", o.docker}, {"gpus", o.gpus},       {"gpu_model", o.gpu_model},  {"gpu_memory_gib", o.gpu_memory_gib},
                {"hosts", json::array()}};
  if (o.docker) state["runtime_image"] = o.runtime_image;
  for (auto const& h : hosts) state["hosts"].push_back(host_json(h, paths));
  save_state(paths, state);

  // Keys: the client key and one host key per host, concurrently.
  std::vector<std::string> key_files{paths.identity()};
  for (auto const& h : hosts) key_files.push_back(paths.host_key(h.name));
  parallel_for(key_files.size(), [&](size_t i) {
    fs::remove(key_files[i]);
    fs::remove(key_files[i] + ".pub");
    std::string comment = i == 0 ? "clusterkit-lab-" + o.name : "clusterkit-lab-" + o.name + "-" + hosts[i - 1].name;
    run_checked("generating key " + key_files[i], {keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key_files[i]});
  });
  auto pub = [&](std::string const& f) {
    auto text = read_file(f + ".pub");
    auto parts = split_ws(text);
    if (parts.size() < 2) fail(errc::lab_failed, "lab up: " + f + ".pub is empty or malformed after ssh-keygen.");
    return std::string(parts[0]) + " " + std::string(parts[1]);
  };
  write_file(paths.authorized_keys(), pub(paths.identity()) + " clusterkit-lab-" + o.name + "\n", 0600);
  std::string known;
  for (auto const& h : hosts) known += h.address + " " + pub(paths.host_key(h.name)) + "\n";
  write_file(paths.known_hosts(), known, 0644);
  write_file(paths.empty_bashrc(), "", 0644);
  if (o.nas) {
    fs::create_directories(paths.nas_export(), ec);
    ::chmod(paths.nas_export().c_str(), 0755);
  }
  for (auto const& h : hosts) write_file(paths.sshd_config(h.name), sshd_config_text(o.name, h, paths), 0600);
  fs::create_directories("/run/sshd", ec);  // sshd's privilege separation folder
  ::chmod("/run/sshd", 0755);
  if (docker) {
    // Mount points for the hosts' private /run/docker and /run/containerd
    // (what a docker.io install has anyway). Empty folders on the machine,
    // shared by every lab and never removed: removing one would detach the
    // mounts other labs' hosts have on it.
    for (char const* d : {"/run/docker", "/run/containerd"}) {
      fs::create_directories(d, ec);
      if (!fs::is_directory(d, ec)) fail(errc::local_file_error, std::string("lab up --docker: cannot create ") + d + ".");
    }
    for (auto const& h : hosts) {
      if (!h.docker) continue;
      auto d = paths.docker(h);
      for (auto const& sub : {d.dir, d.data_root, d.exec_root, d.dir + "/containerd"}) {
        fs::create_directories(sub, ec);
        if (ec) fail(errc::local_file_error, "lab up --docker: cannot create " + sub + ": " + ec.message() + ".");
        ::chmod(sub.c_str(), 0700);
      }
      write_file(d.daemon_json, detail::docker_daemon_json(d), 0600);
      write_file(d.containerd_toml, detail::containerd_toml(d), 0600);
    }
  }
  spdlog::debug("lab up: keys and configs after {} ms", ms());

  // Network: bridge, namespaces and veth pairs in one `ip` process.
  std::string batch = "link add " + bridge + " type bridge\n" + "addr add " + o.subnet + ".1/24 dev " + bridge + "\n" +
                      "link set " + bridge + " up\n";
  for (auto const& h : hosts)
    batch += "netns add " + h.netns + "\n" + "link add " + h.veth + " type veth peer name eth0 netns " + h.netns + "\n" +
             "link set " + h.veth + " master " + bridge + " up\n";
  run_checked("creating the bridge, namespaces and veth pairs", {ip, "-batch", "-"}, batch,
              "Is another lab using the same names? Try `clusterkit lab down --name " + o.name + "` first.");
  // Inside each namespace: address, eth0 and lo up. `ip -batch` cannot
  // switch namespaces per line, so one small `ip -n NS -batch` per host.
  parallel_for(hosts.size(), [&](size_t i) {
    auto const& h = hosts[i];
    run_checked("configuring eth0 in " + h.netns, {ip, "-n", h.netns, "-batch", "-"},
                "addr add " + h.address + "/24 dev eth0\nlink set eth0 up\nlink set lo up\n");
  });
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto id = ns_of_path(netns_file(hosts[i].netns));
    if (!id) fail(errc::lab_failed, "lab up: " + netns_file(hosts[i].netns) + " is missing right after `ip netns add`.");
    state["hosts"][i]["netns_inode"] = static_cast<unsigned long long>(id->ino);
  }
  state["phase"] = "starting";
  save_state(paths, state);
  spdlog::debug("lab up: network after {} ms", ms());

  // Start the hosts.
  bool have_bashrc = fs::exists("/root/.bashrc", ec);
  std::vector<int> launched;
  struct CloseAll {
    std::vector<int>& fds;
    ~CloseAll() {
      for (int fd : fds)
        if (fd >= 0) ::close(fd);
    }
  } close_launched{launched};
  for (auto const& h : hosts) {
    launched.push_back(launch_detached({ip, "netns", "exec", h.netns, unshare, "--pid", "--fork", "--mount", "--uts", "--mount-proc",
                     "--propagation", "private", sh, "-c", host_script(h, paths, sshd, have_bashrc, docker ? &*docker : nullptr)},
                    paths.start_log(h.name)));
  }
  spdlog::debug("lab up: hosts launched after {} ms", ms());

  std::vector<std::string> addrs;
  for (auto const& h : hosts) addrs.push_back(h.address);
  auto deadline = clock_type::now() + 5s + std::chrono::milliseconds(100 * hosts.size());
  std::set<NsId> host_ns_set;
  std::vector<NsId> host_ns(hosts.size());
  for (size_t i = 0; i < hosts.size(); ++i) {
    host_ns[i] = *ns_of_path(netns_file(hosts[i].netns));
    host_ns_set.insert(host_ns[i]);
  }
  // A host whose `unshare` has exited has failed for good (its start script
  // stopped); no point waiting for it.
  auto answered = probe_sshd(addrs, deadline, [&](std::vector<bool>& dead) {
    for (size_t i = 0; i < hosts.size(); ++i) dead[i] = pidfd_exited(launched[i]);
  });
  spdlog::debug("lab up: sshd answering after {} ms", ms());

  // Find pid 1 of each host (the sshd listener) through its network namespace.
  auto by_ns = pids_in_netns(host_ns_set);
  std::string problems;
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto const& h = hosts[i];
    int pid1 = 0;
    for (int pid : by_ns[host_ns[i]])
      if (is_pidns_init(pid)) pid1 = pid;
    if (pid1 > 0) {
      state["hosts"][i]["sshd_pid"] = pid1;
      state["hosts"][i]["sshd_start_time"] = start_time(pid1);
    }
    if (!answered[i] || pid1 == 0) {
      problems += "\n- " + h.name + " (" + h.address + ", netns " + h.netns + "): " +
                  (pid1 == 0 ? "no sshd process in its namespaces" : "sshd does not answer on port 22");
      std::string start = tail(read_file(paths.start_log(h.name)), 600);
      std::string log = tail(read_file(paths.sshd_log(h.name)), 600);
      if (!start.empty()) problems += "\n  start log: " + start;
      if (!log.empty()) problems += "\n  sshd log: " + log;
    }
  }
  save_state(paths, state);
  if (!problems.empty())
    fail(errc::lab_failed, "lab up: step 'start sshd in each host' failed (waited " + std::to_string(ms()) +
                               " ms for port 22):" + problems + "\nCheck that `" + sshd + " -t -f " + paths.sshd_config(hosts[0].name) +
                               "` passes; the lab was taken down again.");

  if (docker) {
    state["phase"] = "starting docker";
    save_state(paths, state);
    size_t engines = static_cast<size_t>(std::count_if(hosts.begin(), hosts.end(), [](auto const& h) { return h.docker; }));
    auto started = clock_type::now();
    std::string failed = wait_for_engines(hosts, paths, started + 30s + std::chrono::seconds(2 * engines));
    if (!failed.empty())
      fail(errc::lab_failed, "lab up --docker: step 'start the Docker engine in each host' failed (waited " +
                                 std::to_string(elapsed_ms(started)) + " ms):" + failed +
                                 "\nThe lab was taken down again. dockerd's settings are in each host's daemon.json "
                                 "(see the lab section of the README).");
    spdlog::debug("lab up: engines answering after {} ms", ms());
    auto live = [&] {
      std::vector<std::string> names;
      for (auto const& h : hosts) names.push_back(h.netns);
      return live_hosts(names);
    }();
    // Every engine through the real client (as `docker` over ssh would: the
    // client on PATH negotiates the API version with dockerd), then the
    // runtime image into each, in parallel.
    std::vector<std::string> versions(hosts.size());
    parallel_for(hosts.size(), [&](size_t i) {
      if (!hosts[i].docker) return;
      auto d = paths.docker(hosts[i]);
      Result v = run_checked("asking " + hosts[i].name + "'s engine for its version",
                             {docker_cli, "-H", "unix://" + d.socket, "version", "--format", "{{.Server.Version}}"});
      versions[i] = trim(v.out);
    });
    // The same image (the same ID) on every engine, as a deployment's
    // preflight demands: `docker import` stamps a new creation time, hence a
    // new ID, each time; `docker load` of one saved archive keeps it. The
    // archive is made once, from an import into the first engine, and kept
    // beside the rootfs tarball.
    std::string const archive = image.tarball + ".image.tar";
    std::string const archive_stamp = read_file(image.tarball + ".stamp") + "image=" + o.runtime_image + "\n";
    std::size_t first = hosts.size();
    for (std::size_t i = 0; i < hosts.size() && first == hosts.size(); ++i)
      if (hosts[i].docker) first = i;
    std::error_code aec;
    if (first < hosts.size() && !(fs::exists(archive, aec) && read_file(archive + ".stamp") == archive_stamp)) {
      std::string host_arg = "unix://" + paths.docker(hosts[first]).socket;
      run_checked("importing the runtime image into " + hosts[first].name + "'s engine",
                  {docker_cli, "-H", host_arg, "import", "--change", "CMD [\"/bin/bash\"]", "--message",
                   "clusterkit lab runtime: Debian " + std::string(kImageSuite) + " minbase + " + kImagePackages, image.tarball,
                   o.runtime_image},
                  {}, "The image is cached at " + image.tarball + "; delete it (and its .stamp) to rebuild it.", 5min);
      run_checked("saving the runtime image", {docker_cli, "-H", host_arg, "save", "-o", archive + ".tmp", o.runtime_image}, {},
                  "Is there room in " + std::string(kImageCacheDir) + "?", 5min);
      if (::rename((archive + ".tmp").c_str(), archive.c_str()) != 0)
        fail(errc::lab_failed, "lab up --docker: cannot place " + archive + ": " + std::strerror(errno));
      write_file(archive + ".stamp", archive_stamp, 0644);
    }
    parallel_for(hosts.size(), [&](size_t i) {
      if (!hosts[i].docker) return;
      run_checked("loading the runtime image into " + hosts[i].name + "'s engine",
                  {docker_cli, "-H", "unix://" + paths.docker(hosts[i]).socket, "load", "-q", "-i", archive}, {},
                  "The image archive is " + archive + "; delete it (and its .stamp) to make it again.", 5min);
    });
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (!hosts[i].docker) continue;
      int pid = live[hosts[i].netns].dockerd;
      state["hosts"][i]["dockerd_pid"] = pid;
      state["hosts"][i]["dockerd_start_time"] = pid > 0 ? start_time(pid) : 0;
      state["hosts"][i]["docker_version"] = versions[i];
    }
    spdlog::debug("lab up: runtime image imported after {} ms", ms());
  }

  write_file(paths.inventory(), inventory_text(o, hosts, paths), 0644);
  state["phase"] = "up";
  save_state(paths, state);
  spdlog::debug("lab up \"{}\": {} hosts in {} ms", o.name, hosts.size(), ms());
  return status_from_state(o.name, paths, state, false);
}

}  // namespace

LabStatus lab_status(std::string const& name, std::string const& state_dir) {
  validate_name(name);
  Paths paths{normalize_state_dir(name, state_dir)};
  if (auto state = load_state(paths)) return status_from_state(name, paths, *state, true);

  // No (readable) state: report what exists under the lab's names.
  LabStatus s;
  s.name = name;
  s.state_dir = paths.dir;
  s.bridge = bridge_name(name);
  auto names = list_lab_netns(name);
  std::error_code ec;
  s.exists = !names.empty() || link_exists(s.bridge) || !list_lab_veths(name).empty() || fs::exists(paths.marker(), ec);
  auto live = live_hosts(names);
  for (auto const& n : names) {
    LabHostStatus h;
    h.netns = n;
    h.name = n.substr(netns_prefix(name).size());
    h.sshd_pid = live[n].pid1;
    h.running = h.sshd_pid > 0;
    h.dockerd_pid = live[n].dockerd;
    h.docker = h.docker_running = h.dockerd_pid > 0;
    s.hosts.push_back(h);
  }
  return s;
}

LabStatus lab_up(LabOptions const& options, std::stop_token stop) {
  // This thread's stop token for the helpers; cleared again on every way out.
  struct StopScope {
    explicit StopScope(std::stop_token s) { t_stop = std::move(s); }
    ~StopScope() { t_stop = {}; }
  } stop_scope{std::move(stop)};
  validate_name(options.name);
  validate_subnet(options.subnet);
  if (options.hosts < 1 || options.hosts > kMaxHosts)
    fail(errc::invalid_argument, "lab: " + std::to_string(options.hosts) + " hosts asked for; a lab has 1 to " +
                                     std::to_string(kMaxHosts) + " hosts (they share one /24).");
  Paths paths{normalize_state_dir(options.name, options.state_dir)};
  auto const plan = plan_hosts(options);  // checks roles and gpus before anything is done
  require_root();
  NameLock lock(options.name);

  // Idempotent: a healthy lab of the same shape stays as it is.
  if (auto state = load_state(paths)) {
    bool same = state->value("phase", "") == "up" && state->value("hosts_count", -1) == options.hosts &&
                state->value("nas", !options.nas) == options.nas && state->value("subnet", "") == options.subnet &&
                state->value("docker", false) == options.docker && state->value("gpus", 0) == options.gpus;
    if (same && options.docker) same = state->value("runtime_image", "") == options.runtime_image;
    if (same && options.gpus > 0)
      same = state->value("gpu_model", "") == options.gpu_model && state->value("gpu_memory_gib", 0.0) == options.gpu_memory_gib;
    auto const recorded = state->value("hosts", json::array());
    same = same && recorded.size() == plan.size();
    for (size_t i = 0; same && i < plan.size(); ++i)
      same = recorded[i].value("name", "") == plan[i].name && recorded[i].value("role", "") == plan[i].role.role &&
             recorded[i].value("gpus", 0) == plan[i].role.gpus;
    std::error_code ec;
    for (auto const& f : {paths.identity(), paths.known_hosts(), paths.inventory(), paths.authorized_keys()})
      same = same && fs::exists(f, ec);
    same = same && link_exists(bridge_name(options.name));
    if (same) {
      LabStatus s = status_from_state(options.name, paths, *state, true);
      bool healthy = !s.hosts.empty() && std::all_of(s.hosts.begin(), s.hosts.end(), [](LabHostStatus const& h) {
                       return h.running && (!h.docker || h.docker_running);
                     });
      if (healthy) {
        spdlog::debug("lab up: lab \"{}\" is already up and healthy", options.name);
        return s;
      }
    }
  }
  throw_if_stopped("starting");
  {
    // Taking down what is there runs to its end; a stop asked meanwhile is
    // seen right after.
    std::stop_token const keep = std::exchange(t_stop, {});
    down_impl(options.name, paths);
    t_stop = keep;
  }
  throw_if_stopped("taking down the previous lab");
  try {
    return up_impl(options, paths);
  } catch (...) {
    // Leave nothing half-made behind (after a stop request too: the clean-up
    // runs to its end); the error already carries the logs.
    t_stop = {};
    try {
      down_impl(options.name, paths);
    } catch (std::exception const& e) {
      spdlog::warn("lab up: cleaning up after the failure also failed: {}", e.what());
    }
    throw;
  }
}

void lab_down(std::string const& name, std::string const& state_dir) {
  validate_name(name);
  Paths paths{normalize_state_dir(name, state_dir)};
  std::error_code ec;
  if (list_lab_netns(name).empty() && list_lab_veths(name).empty() && !link_exists(bridge_name(name)) &&
      !fs::exists(paths.dir, ec)) {
    // Nothing there; a lab_up that failed before making anything may have
    // left its lock file, which goes too (under the lock: a lab_up running
    // now finishes first).
    if (!fs::exists("/run/clusterkit/lab-" + name + ".lock", ec)) return;
    NameLock lock(name);
    if (list_lab_netns(name).empty() && !fs::exists(paths.dir, ec)) {
      lock.remove_file();
      return;
    }
    down_impl(name, paths);
    lock.remove_file();
    return;
  }
  NameLock lock(name);
  down_impl(name, paths);
  lock.remove_file();
}

}  // namespace clusterkit
