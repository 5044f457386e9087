#include "core/yaml_limits.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "clusterkit/error.hpp"

namespace clusterkit::detail {

std::string read_yaml_file(std::filesystem::path const& path, std::string const& what, std::error_code code,
                           YamlLimits const& limits) {
  auto fail = [&](std::string const& why) { return Error(code, "cannot read " + what + " " + path.string() + ": " + why); };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO must not block the open
  if (fd < 0) throw fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw fail(std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    char const* kind = S_ISDIR(st.st_mode)                          ? "a folder"
                       : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                       : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                    : "not a file";
    throw fail(std::string("it is ") + kind + ", not a regular file");
  }
  if (static_cast<std::size_t>(st.st_size) > limits.max_bytes) {
    ::close(fd);
    throw fail(std::to_string(st.st_size) + " bytes, over the limit of " + std::to_string(limits.max_bytes >> 20) +
               " MiB");
  }
  std::string text;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw fail(std::strerror(e));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > limits.max_bytes) {  // grew while read
      ::close(fd);
      throw fail("over the limit of " + std::to_string(limits.max_bytes >> 20) + " MiB");
    }
  }
  ::close(fd);
  return text;
}

namespace {
YAML::Mark mark_at(std::string_view text, std::size_t offset) {
  YAML::Mark mark;
  mark.pos = static_cast<int>(offset);
  mark.line = static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
  auto const line_start = text.rfind('\n', offset == 0 ? 0 : offset - 1);
  mark.column = static_cast<int>(line_start == std::string_view::npos || offset == 0 ? offset : offset - line_start - 1);
  return mark;
}
}  // namespace

std::string yaml_parse_error_text(std::string_view text, YAML::Mark const& mark, std::string const& message) {
  std::string out = "invalid YAML: " + message;
  if (mark.line < 0) return out;
  // The lines up to the error's: one indented with a tab?
  std::size_t pos = 0;
  for (int line = 0; line <= mark.line && pos <= text.size(); ++line) {
    auto end = text.find('\n', pos);
    auto const row = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    auto const first = row.find_first_not_of(' ');
    if (first != std::string_view::npos && row[first] == '\t')
      return out + " (line " + std::to_string(line + 1) + " is indented with a tab; YAML indents with spaces only)";
    if (line == mark.line) {
      auto const colon = row.find(':');
      if (colon != std::string_view::npos && colon > 1024)
        return out + " (a key of " + std::to_string(colon - row.find_first_not_of(' ')) +
               " characters; YAML keys are at most 1024)";
    }
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return out;
}

std::optional<YamlProblem> yaml_text_problem(std::string_view text, YamlLimits const& limits) {
  if (text.size() > limits.max_bytes)
    return YamlProblem{YAML::Mark::null_mark(),
                       std::to_string(text.size()) + " bytes, more than " + std::to_string(limits.max_bytes >> 20) + " MiB"};
  // yaml-cpp stops reading at a NUL and parses what came before it: a
  // truncated value ("10.0." of "10.0.\0.1") would pass as the whole.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return YamlProblem{mark_at(text, nul), "a NUL byte: YAML is text, and this file is not (a binary file, or a copy "
                                           "that went wrong?)"};
  // Depth = block indentation levels + open flow brackets, on each line. A
  // rough count (block scalars and "- - -" are not special), but never
  // below the real depth by much, and deep files are never legitimate here.
  std::vector<std::size_t> indents;
  int flow = 0;
  std::size_t line = 1, column = 0;
  std::size_t i = 0;
  // Values, counted on the text too: a flat list of millions is refused
  // before the parser builds it (4 MiB of "x," took 3 s and 0.9 GB to parse).
  // A line holds at least one value, a comma in a flow collection separates
  // two: a count that never exceeds the real one by much.
  std::size_t values = 0;
  auto too_many = [&]() -> std::optional<YamlProblem> {
    if (values <= limits.max_nodes) return std::nullopt;
    YAML::Mark mark;
    mark.line = static_cast<int>(line - 1);
    mark.column = static_cast<int>(column);
    return YamlProblem{mark, "more than " + std::to_string(limits.max_nodes) +
                                 " values (lines and list items); an inventory or spec holds a few hundred"};
  };
  auto too_deep = [&](std::size_t depth) -> std::optional<YamlProblem> {
    if (depth <= static_cast<std::size_t>(limits.max_depth)) return std::nullopt;
    YAML::Mark mark;
    mark.line = static_cast<int>(line - 1);
    mark.column = static_cast<int>(column);
    return YamlProblem{mark, "nesting deeper than " + std::to_string(limits.max_depth) + " levels"};
  };
  while (i < text.size()) {
    // Start of a line: its indentation (only outside flow collections).
    std::size_t indent = 0;
    while (i + indent < text.size() && text[i + indent] == ' ') ++indent;
    std::size_t j = i + indent;
    bool const blank = j >= text.size() || text[j] == '\n' || text[j] == '#' || text[j] == '\r';
    if (!blank) {
      ++values;
      if (auto p = too_many()) return p;
    }
    if (!blank && flow == 0) {
      while (!indents.empty() && indents.back() >= indent) indents.pop_back();
      indents.push_back(indent);
      column = indent;
      if (auto p = too_deep(indents.size())) return p;
    }
    // The rest of the line: brackets outside quotes and comments.
    char quote = 0;
    for (; j < text.size() && text[j] != '\n'; ++j) {
      char c = text[j];
      if (quote) {
        if (c == quote) quote = 0;
        continue;
      }
      if (c == '#' && (j == i || text[j - 1] == ' ' || text[j - 1] == '\t')) {
        while (j < text.size() && text[j] != '\n') ++j;
        break;
      }
      if (c == '"' || c == '\'') {
        if (j == i || std::strchr(" \t[{,:", text[j - 1])) quote = c;
      } else if (c == '[' || c == '{') {
        ++flow;
        column = j - i;
        if (auto p = too_deep(indents.size() + static_cast<std::size_t>(flow))) return p;
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      } else if (c == ',' && flow > 0) {
        ++values;
        column = j - i;
        if (auto p = too_many()) return p;
      }
    }
    i = j + 1;
    ++line;
  }
  return std::nullopt;
}

namespace {

struct Walk {
  YamlLimits const& limits;
  std::size_t nodes = 0;
  std::optional<std::string> problem;

  void visit(YAML::Node const& node, int depth) {
    if (problem) return;
    if (++nodes > limits.max_nodes) {
      problem = "more than " + std::to_string(limits.max_nodes) +
                " values once its aliases (*name) are expanded; a chain of aliases can stand for billions";
      return;
    }
    if (depth > limits.max_depth) {
      problem = "nesting deeper than " + std::to_string(limits.max_depth) + " levels";
      return;
    }
    if (node.IsSequence()) {
      for (auto const& item : node) visit(item, depth + 1);
    } else if (node.IsMap()) {
      for (auto const& kv : node) {
        visit(kv.first, depth + 1);
        visit(kv.second, depth + 1);
      }
    }
  }
};

}  // namespace

std::optional<std::string> yaml_tree_problem(YAML::Node const& root, YamlLimits const& limits) {
  Walk w{limits};
  w.visit(root, 0);
  return w.problem;
}

}  // namespace clusterkit::detail
