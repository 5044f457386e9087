// Text from remote hosts, made safe to keep and to put in JSON.
#pragma once

#include <string>
#include <string_view>

namespace clusterkit::detail {

/// The text with every byte that is not part of valid UTF-8 replaced by
/// '?': what hosts print ends up in JSON, which must be valid UTF-8.
inline std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto const* p = reinterpret_cast<unsigned char const*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 2) ok = c >= 0xc2;                                              // no overlong forms
    if (ok && len == 3) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);  // no surrogates
    if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90) && c <= 0xf4;
    if (!ok) {
      out.push_back('?');
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}


}  // namespace clusterkit::detail
