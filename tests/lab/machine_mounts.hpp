// What the lab tests check after every step: the machine's own mount table
// is untouched (every mount happens inside a lab host's namespace).
#pragma once

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace cktest {

/// The machine's own mounts, without the network namespace bind mounts
/// that labs (this one and others running at the same time) add and remove.
/// Mount ids and parent ids change when others remount; the rest is kept.
inline std::set<std::string> machine_mounts() {
  std::ifstream in("/proc/self/mountinfo");
  std::set<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (line.find("/run/netns") != std::string::npos) continue;
    std::istringstream s(line);
    std::string id, parent, rest;
    s >> id >> parent;
    std::getline(s, rest);
    out.insert(rest);
  }
  return out;
}

}  // namespace cktest
