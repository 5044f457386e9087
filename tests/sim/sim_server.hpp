// Test fixtures for the simulator tests: llm-d-inference-sim (a vLLM
// SIMULATOR, not a real model server) on a free loopback port of its own,
// stopped by pid when the test ends; a self-signed certificate; a tiny HTTP
// proxy (CONNECT tunnels and absolute-form forwarding) that records what it
// was asked.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/wait.hpp"

extern char** environ;

namespace cktest {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// The simulator binary: $CLUSTERKIT_SIM, then PATH, then what
/// scripts/install-sim.sh installs. Empty when none is found.
inline std::string find_simulator() {
  if (char const* env = std::getenv("CLUSTERKIT_SIM"); env && *env && fs::exists(env)) return env;
  if (char const* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty() && ::access((dir + "/llm-d-inference-sim").c_str(), X_OK) == 0)
        return dir + "/llm-d-inference-sim";
  }
  for (auto const* p : {"/usr/local/bin/llm-d-inference-sim", CLUSTERKIT_SOURCE_DIR "/tools/bin/llm-d-inference-sim"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

/// A loopback port nobody listens on right now (bind port 0, read it back).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool port_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline fs::path temp_dir(std::string const& tag) {
  auto base = fs::temp_directory_path() / ("ck-" + tag + "-" + std::to_string(::getpid()) + "-" +
                                           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  fs::create_directories(base);
  return base;
}

/// One simulator process. Throws when it cannot start; `available()` says
/// whether a binary exists at all (the tests fail, naming
/// scripts/install-sim.sh, otherwise).
class Simulator {
public:
  static constexpr char const* kModel = "qwen2.5-72b-instruct";

  static bool available() { return !find_simulator().empty(); }

  explicit Simulator(std::vector<std::string> extra = {}, bool tls = false) : tls_(tls) {
    auto bin = find_simulator();
    if (bin.empty()) throw std::runtime_error("llm-d-inference-sim not found; run scripts/install-sim.sh");
    port_ = free_port();
    dir_ = temp_dir("sim");
    log_ = (dir_ / "sim.log").string();
    std::vector<std::string> args{bin, "--model", kModel, "--port", std::to_string(port_), "--force-dummy-tokenizer"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start " + bin);
    bool exited = false;
    auto up = wait_until(
        [&] {
          exited = ::waitpid(pid_, nullptr, WNOHANG) == pid_;
          return exited || port_accepts(port_);
        },
        30s);
    if (exited) {
      pid_ = 0;
      throw std::runtime_error("the simulator exited at start; its log: " + log_text());
    }
    if (!up) {
      stop();
      throw std::runtime_error("the simulator did not listen within 30 s; its log: " + log_text());
    }
  }

  ~Simulator() {
    stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Simulator(Simulator const&) = delete;
  Simulator& operator=(Simulator const&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_); }

  std::string log_text() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    auto t = s.str();
    return t.size() > 4000 ? t.substr(t.size() - 4000) : t;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (!wait_until([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }, 2s)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = 0;
  }

private:
  bool tls_;
  int port_ = 0;
  pid_t pid_ = 0;
  fs::path dir_;
  std::string log_;
};

/// ESTABLISHED TCP connections (IPv4, this network namespace) whose remote
/// end is 127.0.0.1:`port`: the client side of connections to a server.
inline int established_to(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, local, remote, state;
    f >> slot >> local >> remote >> state;
    auto colon = remote.find(':');
    if (colon == std::string::npos) continue;
    if (std::stoi(remote.substr(colon + 1), nullptr, 16) == port && state == "01") ++n;
  }
  return n;
}

/// A self-signed certificate for localhost and 127.0.0.1 (openssl CLI).
struct SelfSignedCert {
  fs::path dir = temp_dir("cert");
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();
  SelfSignedCert() {
    std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
                      "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout '" +
                      key + "' -out '" + cert + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl could not make a certificate");
  }
  ~SelfSignedCert() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

/// A minimal forward proxy: CONNECT host:port (a tunnel) and absolute-form
/// requests (forwarded to the host in the URL). Records each connection's
/// first request line.
class TinyProxy {
public:
  TinyProxy() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 64);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TinyProxy() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : workers_) t.join();
    ::close(fd_);
  }
  TinyProxy(TinyProxy const&) = delete;
  TinyProxy& operator=(TinyProxy const&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> first_lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }

private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  static int dial(std::string const& hostport) {
    auto colon = hostport.rfind(':');
    std::string host = hostport.substr(0, colon);
    int port = colon == std::string::npos ? 80 : std::stoi(hostport.substr(colon + 1));
    if (host == "localhost") host = "127.0.0.1";
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  static void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
      auto n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void serve(int client) {
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos && !stop_) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      auto n = ::recv(client, buf, sizeof buf, 0);
      if (n <= 0) break;
      head.append(buf, static_cast<std::size_t>(n));
    }
    auto eol = head.find("\r\n");
    if (eol == std::string::npos) {
      ::close(client);
      return;
    }
    std::string first = head.substr(0, eol);
    {
      std::lock_guard lock(mutex_);
      lines_.push_back(first);
    }
    std::istringstream f(first);
    std::string method, target;
    f >> method >> target;
    int upstream = -1;
    if (method == "CONNECT") {
      upstream = dial(target);
      send_all(client, upstream < 0 ? "HTTP/1.1 502 Bad Gateway\r\n\r\n" : "HTTP/1.1 200 Connection established\r\n\r\n");
      head.erase(0, head.find("\r\n\r\n") + 4);
    } else if (target.rfind("http://", 0) == 0) {
      auto rest = target.substr(7);
      auto slash = rest.find('/');
      upstream = dial(rest.substr(0, slash));
      // Origin-form upstream, as a real proxy does.
      head.replace(0, eol, method + " " + (slash == std::string::npos ? "/" : rest.substr(slash)) + " HTTP/1.1");
    }
    if (upstream < 0) {
      ::close(client);
      return;
    }
    send_all(upstream, head);
    // Later requests on a kept-alive connection pass through unchanged.
    pump(client, upstream);
    ::close(upstream);
    ::close(client);
  }

  void pump(int a, int b) {
    char buf[65536];
    while (!stop_) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        send_all(i == 0 ? b : a, std::string_view(buf, static_cast<std::size_t>(n)));
      }
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

}  // namespace cktest
