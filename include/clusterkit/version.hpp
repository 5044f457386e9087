// clusterkit's version, for `clusterkit --version`, `--json` outputs and
// `clusterkit.__version__`. Kept equal to project(VERSION) in
// CMakeLists.txt and to pyproject.toml by tests/unit/test_shell.cpp.
#pragma once

namespace clusterkit {

inline constexpr char const* version_string = "0.1.0";

}  // namespace clusterkit
