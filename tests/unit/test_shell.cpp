#include "clusterkit/shell.hpp"
#include "clusterkit/version.hpp"

#include <fstream>
#include <iterator>

#include <catch2/catch.hpp>

using namespace clusterkit;

TEST_CASE("quote wraps in single quotes and escapes only the quote", "[shell]") {
  CHECK(shell::quote("") == "''");
  CHECK(shell::quote("plain") == "'plain'");
  CHECK(shell::quote("a'b") == "'a'\\''b'");
  CHECK(shell::quote("$(id) `id` ; \\ \n") == "'$(id) `id` ; \\ \n'");
  CHECK(shell::quote("''") == "''\\'''\\'''");
}

TEST_CASE("join quotes every argument", "[shell]") {
  std::vector<std::string> argv{"printf", "%s\\n", "two words", "it's"};
  CHECK(shell::join(argv) == "'printf' '%s\\n' 'two words' 'it'\\''s'");
  CHECK(shell::join(std::vector<std::string>{}).empty());
}

TEST_CASE("environment variable names", "[shell]") {
  CHECK(shell::is_valid_variable_name("PATH"));
  CHECK(shell::is_valid_variable_name("_x1"));
  CHECK_FALSE(shell::is_valid_variable_name(""));
  CHECK_FALSE(shell::is_valid_variable_name("1X"));
  CHECK_FALSE(shell::is_valid_variable_name("A-B"));
  CHECK_FALSE(shell::is_valid_variable_name("A B"));
  CHECK_FALSE(shell::is_valid_variable_name("A=B"));
}

TEST_CASE("one version everywhere: the header, CMake's project() and pyproject.toml", "[version]") {
  CHECK(std::string(clusterkit::version_string) == CK_PROJECT_VERSION);
  std::ifstream in(std::string(CK_SOURCE_DIR) + "/pyproject.toml");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  CHECK(text.find("\nversion = \"" + std::string(clusterkit::version_string) + "\"\n") != std::string::npos);
}
