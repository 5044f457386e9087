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

TEST_CASE("without_control_characters: what a server sends cannot drive the terminal", "[text]") {
  using clusterkit::detail::without_control_characters;
  // Plain text, tabs, newlines and real UTF-8 (2, 3 and 4 bytes) stay.
  CHECK(without_control_characters("model\tnot found\n") == "model\tnot found\n");
  CHECK(without_control_characters("caf\xc3\xa9 \xe6\xa8\xa1\xe5\x9e\x8b \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xe6\xa8\xa1\xe5\x9e\x8b \xf0\x9f\x98\x80");
  // ESC sequences, BEL, DEL, C1 controls in UTF-8 (U+009B is CSI).
  CHECK(without_control_characters("\x1b[31mred\x1b[0m\a\x7f") == "?[31mred?[0m??");
  CHECK(without_control_characters("a\xc2\x9b" "2Jb") == "a?2Jb");
  // Bytes that are not UTF-8: a lone C1 byte (CSI to an 8-bit terminal), a
  // lone continuation, a cut sequence (the next byte kept), overlong forms,
  // surrogates, past U+10FFFF.
  CHECK(without_control_characters("a\x9b" "2Jb") == "a?2Jb");
  CHECK(without_control_characters("\x80x") == "?x");
  CHECK(without_control_characters("\xe6\xa8x") == "??x");
  CHECK(without_control_characters("\xc0\xaf") == "??");
  CHECK(without_control_characters("\xe0\x80\xaf") == "???");
  CHECK(without_control_characters("\xed\xa0\x80") == "???");
  CHECK(without_control_characters("\xf4\x90\x80\x80") == "????");
  CHECK(without_control_characters("\xff\xfe") == "??");
}
