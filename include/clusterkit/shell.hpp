// Quoting for POSIX shells. Remote commands pass through the login shell of
// the remote user, so every argument is single-quoted: inside single quotes
// nothing is special except the quote itself, which we close, escape and
// reopen. This is the only quoting that is safe for `$()`, backticks, `;`,
// newlines and arbitrary bytes alike.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clusterkit::shell {

/// Quote one argument so that a POSIX shell reads it back byte for byte.
std::string quote(std::string_view argument);

/// Quote every argument and join them with spaces: a command line that a
/// POSIX shell splits back into exactly `argv`.
std::string join(std::span<std::string const> argv);

/// `argument` as a person would type it: unchanged when a shell would read
/// it as one word without expanding anything, quoted otherwise. For
/// messages and dry runs; the command actually run always uses `quote`.
std::string quote_for_display(std::string_view argument);

/// Every argument through `quote_for_display`, joined with spaces.
std::string join_for_display(std::span<std::string const> argv);

/// True when `name` can be an environment variable name in a shell
/// (`[A-Za-z_][A-Za-z0-9_]*`).
bool is_valid_variable_name(std::string_view name);

}  // namespace clusterkit::shell
