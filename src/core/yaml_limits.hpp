// Bounds on the YAML clusterkit reads (inventories, deployment specs), so
// that a hostile or broken file fails in milliseconds with a sentence naming
// the limit, instead of exhausting memory or the stack:
//  * only regular files, at most `max_bytes` (`-i /dev/zero` read until
//    std::bad_alloc; a FIFO would block);
//  * nesting at most `max_depth` levels, checked on the text before
//    yaml-cpp parses it (its parser recurses per level and reports a deep
//    file only as "bad file");
//  * at most `max_nodes` nodes with every alias expanded: yaml-cpp shares
//    an aliased node instead of copying it, so a chain of aliases ("billion
//    laughs") parses small but expands to billions of nodes in any walk.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace clusterkit::detail {

struct YamlLimits {
  std::size_t max_bytes = 4u << 20;
  std::size_t max_nodes = 100'000;
  int max_depth = 64;
};

/// The whole file, or an Error(code) that names `path` and what is wrong
/// with it: missing, not a regular file (a device, a FIFO, a folder),
/// larger than limits.max_bytes. `what` is "inventory", "deployment spec".
std::string read_yaml_file(std::filesystem::path const& path, std::string const& what, std::error_code code,
                           YamlLimits const& limits = {});

struct YamlProblem {
  YAML::Mark mark = YAML::Mark::null_mark();  // where, when it is a place
  std::string message;
};

/// Before parsing: nesting deeper than the limit (and where), or the size.
std::optional<YamlProblem> yaml_text_problem(std::string_view text, YamlLimits const& limits = {});

/// yaml-cpp's message for a parse error, with what it does not say: a tab
/// in the indentation at or before the error ("illegal map value" for what
/// is a tab), a key longer than its 1024-character limit.
std::string yaml_parse_error_text(std::string_view text, YAML::Mark const& mark, std::string const& message);

/// After parsing: the first limit the document breaks (nodes with aliases
/// expanded, depth), as a sentence; nullopt when it is within them.
std::optional<std::string> yaml_tree_problem(YAML::Node const& root, YamlLimits const& limits = {});

}  // namespace clusterkit::detail
