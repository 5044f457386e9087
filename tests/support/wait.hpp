// Waiting in tests: poll a condition until it holds or a deadline passes.
//
// Never sleep for a fixed time and hope that something has happened by then:
// on a loaded 2-core CI machine it has not, and on a fast one the test waits
// for nothing. wait_until returns as soon as the condition holds, and false
// (for a CHECK/REQUIRE) when the deadline passed first.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace cktest {

/// Polls `condition` every 10 ms until it returns true (then true) or
/// `limit` has passed (then one last look).
template <class Condition>
bool wait_until(Condition&& condition, std::chrono::milliseconds limit) {
  auto const until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return static_cast<bool>(condition());
}

/// Alive and not a zombie (a zombie runs nothing; its reaping is up to its
/// parent, or to the machine's init, which on some VMs takes seconds).
inline bool pid_alive(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  auto paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'Z';
}

inline bool gone_within(long pid, std::chrono::milliseconds limit) {
  return wait_until([&] { return !pid_alive(pid); }, limit);
}

}  // namespace cktest
