// Mutations of a YAML (or JSON) document for the parsers' fuzz tests: what a
// careless edit or a hostile file does to a real example. Each mutation is
// one of: a byte replaced by a character YAML gives meaning to, a token
// inserted (anchors, aliases, merge keys, tags, flow brackets, numbers past
// any range, NUL, ESC, invalid UTF-8, shell syntax), a span deleted, a line
// duplicated, or the text cut short. Deterministic for a given rng seed, so
// a failure names the seed and mutation number that reproduce it.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <typeinfo>

#include "clusterkit/error.hpp"

namespace clusterkit::test {

inline std::string mutate_yaml(std::string s, std::mt19937& rng) {
  static constexpr std::array<char, 22> kChars = {':', '&', '*', '[', ']', '{', '}', '\t', '\0', '\n', '-', '\'',
                                                  '"', '!', '|', '>', '%', '@', '`', '#', '\xff', '\x1b'};
  static constexpr std::array<std::string_view, 24> kTokens = {
      "&x ", "*x", "<<: *x\n", "!!binary ", "? ", "- ", "{", "[", "99999999999999999999", "-1", "nan", ".inf", "~",
      "\n  ", "\n\t", "${HOME}", "$(touch /run/ck-fuzz)", "1e309", "0x7fffffff", "\xc3\x28", "\x1b[2J", ": :",
      "!!python/object:os.system ", "&a [*a]"};
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
  int const edits = 1 + static_cast<int>(pick(3));
  for (int e = 0; e < edits; ++e) {
    if (s.empty()) s = "x";
    switch (pick(5)) {
      case 0: s[pick(s.size())] = kChars[pick(kChars.size())]; break;
      case 1: s.insert(pick(s.size() + 1), kTokens[pick(kTokens.size())]); break;
      case 2: {
        auto at = pick(s.size());
        s.erase(at, 1 + pick(16));
        break;
      }
      case 3: {
        auto at = s.rfind('\n', pick(s.size()));
        auto start = at == std::string::npos ? 0 : at + 1;
        auto end = s.find('\n', start);
        auto line = s.substr(start, end == std::string::npos ? std::string::npos : end - start + 1);
        s.insert(start, line);
        break;
      }
      default: s.resize(pick(s.size() + 1)); break;
    }
  }
  return s;
}

/// The mutations per document: CK_FUZZ_ITERATIONS, else `fallback`.
inline int fuzz_iterations(int fallback) {
  if (char const* e = std::getenv("CK_FUZZ_ITERATIONS")) return std::max(1, std::atoi(e));
  return fallback;
}

struct FuzzCounts {
  int parsed = 0;
  int refused = 0;
};

/// `parse` on `iterations` mutations of `original`: each parses or throws
/// clusterkit::Error within 2 s, with a message that is bounded and safe to
/// print (no ESC or NUL from the file reaches a terminal); anything else
/// fails, naming the document, the mutation and the seed that reproduce it.
template <class Parse>
void fuzz_yaml(std::string const& name, std::string const& original, std::uint32_t seed, int iterations, Parse&& parse,
               FuzzCounts& counts) {
  std::mt19937 rng(seed);
  for (int i = 0; i < iterations; ++i) {
    auto const input = mutate_yaml(original, rng);
    auto const started = std::chrono::steady_clock::now();
    try {
      parse(input);
      ++counts.parsed;
    } catch (Error const& e) {
      std::string const m = e.what();
      INFO(name << " mutation " << i << " (seed " << seed << "): " << m);
      CHECK_FALSE(m.empty());
      CHECK(m.size() < 20000);
      CHECK(m.find('\x1b') == std::string::npos);
      CHECK(m.find('\0') == std::string::npos);
      ++counts.refused;
    } catch (std::exception const& e) {
      FAIL(name << " mutation " << i << " (seed " << seed << ") threw " << typeid(e).name() << ": " << e.what());
    }
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
  }
}

}  // namespace clusterkit::test
