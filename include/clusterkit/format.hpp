// Numbers as people read them, the same way in every message, table and
// report that clusterkit prints (the library, the CLI and the bindings).
#pragma once

#include <cstdint>
#include <string>

namespace clusterkit {

/// The largest binary unit that keeps the number at or above 1, one
/// decimal: "79.6 GiB", "64.0 MiB", "512 B".
std::string format_bytes(std::uint64_t bytes);

/// Always in GiB with two decimals ("44.99 GiB"): for memory budgets,
/// where the planner's figures must add up exactly as printed.
std::string format_gib(std::uint64_t bytes);

}  // namespace clusterkit
