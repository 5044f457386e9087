// detail text helpers (src/core/text.hpp) that decide what reaches JSON and
// terminals: bytes that are not UTF-8 become U+FFFD, one per byte, as the
// README's limits table says (and as --json output and prompts do).
#include <catch2/catch.hpp>

#include <string>

#include "core/text.hpp"

using clusterkit::detail::valid_utf8;

TEST_CASE("valid_utf8: each invalid byte becomes U+FFFD, valid text stays as it is", "[text]") {
  CHECK(valid_utf8("caf\xc3\xa9 \xe2\x9c\x93") == "caf\xc3\xa9 \xe2\x9c\x93");  // é and a check mark: kept
  CHECK(valid_utf8("a\xff" "b") == "a\xEF\xBF\xBD" "b");
  CHECK(valid_utf8("\xc0\xaf") == "\xEF\xBF\xBD\xEF\xBF\xBD");                   // an overlong '/': two bytes, two marks
  CHECK(valid_utf8("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a UTF-16 surrogate
  CHECK(valid_utf8("x\xe2\x9c") == "x\xEF\xBF\xBD\xEF\xBF\xBD");                // cut short at the end
  CHECK(valid_utf8(std::string("nul\0kept", 8)) == std::string("nul\0kept", 8));
}

TEST_CASE("utf8_prefix: a cut never ends inside a character", "[text]") {
  using clusterkit::detail::utf8_prefix;
  std::string const s = "ab\xEF\xBF\xBD" "cd";  // a, b, U+FFFD, c, d
  CHECK(utf8_prefix(s, 2) == "ab");
  CHECK(utf8_prefix(s, 3) == "ab");  // not the first byte of U+FFFD alone
  CHECK(utf8_prefix(s, 4) == "ab");
  CHECK(utf8_prefix(s, 5) == "ab\xEF\xBF\xBD");
  CHECK(utf8_prefix(s, 100) == s);
  // first_line cuts the same way: a valid line stays valid.
  CHECK(clusterkit::detail::first_line("ab\xEF\xBF\xBD", 3) == "ab");
}
