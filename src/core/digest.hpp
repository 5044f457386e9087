// SHA-256 of a string as lowercase hex, for fingerprints (a Ray node's
// settings, a deployment's spec). Files are hashed in storage/, streaming.
#pragma once

#include <string>
#include <string_view>

namespace clusterkit::detail {

std::string sha256_hex(std::string_view data);

}  // namespace clusterkit::detail
