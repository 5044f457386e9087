// Numbers as people read them (see format.hpp).
#include "clusterkit/format.hpp"

#include <cstdio>

namespace clusterkit {

std::string format_bytes(std::uint64_t bytes) {
  char buf[48];
  double b = static_cast<double>(bytes);
  if (bytes >= (1ull << 40)) std::snprintf(buf, sizeof buf, "%.1f TiB", b / double(1ull << 40));
  else if (bytes >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1f GiB", b / double(1ull << 30));
  else if (bytes >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1ull << 20));
  else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  return buf;
}

std::string format_gib(std::uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / static_cast<double>(1ull << 30));
  return buf;
}

}  // namespace clusterkit
