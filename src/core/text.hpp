// Text helpers shared by every layer: text from remote hosts made safe to
// keep and to put in JSON, lines and words, numbers, joining, and a bound on
// JSON nesting checked before any parser sees the text.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace clusterkit::detail {

/// The text with every byte that is not part of valid UTF-8 replaced by
/// U+FFFD (as --json output and prompts are): what hosts print ends up in
/// JSON, which must be valid UTF-8.
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
      out.append("\xEF\xBF\xBD");
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

/// Lines without their terminators ("\r\n" too); no empty last line for a
/// text that ends with a newline.
inline std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

/// Words separated by whitespace. With `max_parts`, the last part is the
/// rest of the line (trimmed), spaces and all.
inline std::vector<std::string_view> split_ws(std::string_view s, std::size_t max_parts = 0) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    if (max_parts && out.size() + 1 == max_parts) {
      out.push_back(trim(s.substr(i)));
      break;
    }
    std::size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

/// The whole of `s` as a number, or nullopt (no sign for unsigned, no
/// trailing characters).
template <class Number>
std::optional<Number> parse_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  Number v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

/// Standard base64 (padding optional, whitespace skipped); nullopt on a
/// character outside the alphabet. In model_store.cpp.
std::optional<std::string> base64_decode(std::string_view in);

/// The items joined with `sep` (any range of things a string can append).
template <class Range>
std::string join(Range const& items, std::string_view sep = ", ") {
  std::string out;
  bool first = true;
  for (auto const& item : items) {
    if (!first) out += sep;
    first = false;
    out += item;
  }
  return out;
}

/// ASCII lower case.
inline std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// At most `max` bytes of `s`, never ending inside a UTF-8 sequence (a cut
/// U+FFFD or é would make the JSON it goes into invalid).
inline std::string_view utf8_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

/// The first non-empty line, at most `max` bytes.
inline std::string first_line(std::string_view text, std::size_t max = 300) {
  for (auto line : lines_of(text)) {
    auto t = trim(line);
    if (!t.empty()) return std::string(utf8_prefix(t, max));
  }
  return {};
}

/// The last non-empty line.
inline std::string last_line(std::string_view text) {
  std::string_view last;
  for (auto line : lines_of(text))
    if (auto t = trim(line); !t.empty()) last = t;
  return std::string(last);
}

/// False when `text` (JSON, or anything) nests brackets deeper than
/// `limit` outside strings. Checked before parsing: a deep `[[[[...` must
/// reach neither a recursive parser nor a recursive destructor.
inline bool json_nesting_within(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

/// `text` safe to print on a terminal: C0 and C1 control characters (ESC
/// above all: an ANSI sequence in a server's error body would reach the
/// user's terminal) become '?'; tabs and newlines stay. So does every byte
/// that is not part of valid UTF-8: a lone 0x9b is CSI to a terminal in an
/// 8-bit mode, and a cut sequence could swallow the byte after it.
inline std::string without_control_characters(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  auto const byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  auto const continuation = [&](std::size_t i) { return i < text.size() && (byte(i) & 0xc0) == 0x80; };
  for (std::size_t i = 0; i < text.size();) {
    auto const c = byte(i);
    if (c < 0x80) {
      out.push_back((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : static_cast<char>(c));
      ++i;
      continue;
    }
    // The length of a well-formed sequence starting here (RFC 3629: no
    // overlong forms, nothing past U+10FFFF, no surrogates); 0 if none.
    std::size_t n = 0;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) n = 3;
    else if (c >= 0xf0 && c <= 0xf4) n = 4;
    for (std::size_t k = 1; k < n; ++k)
      if (!continuation(i + k)) n = 0;
    if (n >= 3) {
      auto const c1 = byte(i + 1);
      if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f)) n = 0;
    }
    if (n == 0) {
      out.push_back('?');
      ++i;
    } else if (n == 2 && c == 0xc2 && byte(i + 1) <= 0x9f) {
      out.push_back('?');  // U+0080..U+009F, the C1 controls (CSI is U+009B)
      i += 2;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps),
/// ignoring case.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

/// The candidate closest to `word`, when it is close enough to be a typo
/// (and not merely another short name: "b" does not suggest "a").
template <class Range>
std::optional<std::string> suggest(std::string_view word, Range const& candidates) {
  std::size_t const limit = std::min<std::size_t>(word.size() <= 3 ? 1 : word.size() <= 7 ? 2 : 3,
                                                  word.empty() ? 0 : word.size() - 1);
  std::optional<std::string> best;
  std::size_t best_distance = limit + 1;
  for (auto const& c : candidates) {
    std::string_view candidate{c};
    std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  if (!best && word.size() >= 3) {
    // "identity" for "identity_file": a prefix is a good enough hint.
    for (auto const& c : candidates) {
      std::string_view candidate{c};
      if (candidate.starts_with(word)) return std::string(candidate);
    }
  }
  return best;
}

/// The served model name `word` likely meant: a near spelling, or the same
/// name without or with an organisation ("qwen2.5-72b-instruct" for
/// "Qwen/Qwen2.5-72B-Instruct"), ignoring case.
template <class Range>
std::optional<std::string> suggest_model_name(std::string_view word, Range const& served) {
  if (auto near = suggest(word, served)) return near;
  auto tail = [](std::string_view s) { return s.substr(s.rfind('/') == std::string_view::npos ? 0 : s.rfind('/') + 1); };
  std::optional<std::string> best;
  std::size_t best_distance = 3;  // at most 2 edits between the names without organisation
  for (auto const& c : served) {
    std::string_view candidate{c};
    std::size_t distance = edit_distance(tail(word), tail(candidate));
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best;
}

inline std::optional<long> to_long(std::string_view s) { return parse_number<long>(s); }
inline std::optional<double> to_double(std::string_view s) { return parse_number<double>(s); }
inline std::optional<std::uint64_t> to_u64(std::string_view s) { return parse_number<std::uint64_t>(s); }

}  // namespace clusterkit::detail
