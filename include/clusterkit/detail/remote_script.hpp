// The POSIX sh wrapper every command runs under (sans-I/O: text in, text out).
//
// Why a wrapper: without a pty, closing an ssh channel does not signal the
// remote command; it keeps running until it happens to write. The wrapper
// starts the command in a session of its own and keeps the channel's stdin
// as a control line: a signal name written there is sent to the command's
// process group, and end-of-file (we cancelled, timed out or died) stops the
// group with SIGTERM, then SIGKILL after a grace period.
//
// It also reports on stderr, in lines starting with the ASCII record
// separator (\x1e), whether the command started (`\x1eck:start PID`) or the
// working directory was missing (`\x1eck:nocwd`), and when it ends
// (`\x1eck:exit N`), so that neither an ssh failure nor a dropped connection
// is ever confused with a command that exited 255.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "clusterkit/host.hpp"

namespace clusterkit::detail {

/// Marker that opens every control line on stderr.
inline constexpr char control_marker = '\x1e';

struct WrapperRequest {
  Command const* command = nullptr;
  std::map<std::string, std::string> const* env = nullptr;
  std::string_view working_directory;
  std::size_t stdin_bytes = 0;
  std::chrono::milliseconds kill_grace{2000};
};

/// The sh script (to be run as `/bin/sh -c SCRIPT`). Throws
/// Error(errc::bad_environment_name) for an invalid variable name.
std::string wrapper_script(WrapperRequest const& request);

/// The command string handed to ssh: runs the wrapper with /bin/sh whatever
/// the remote user's login shell is.
std::string remote_command_line(std::string const& script);

/// A parsed control line from the wrapper.
struct ControlLine {
  enum Kind { started, exited, no_working_directory } kind;
  /// The command's pid (started) or exit status (exited).
  long pid = 0;
};

/// Parse one stderr line; nullopt when it is ordinary output.
std::optional<ControlLine> parse_control_line(std::string_view line);

/// Script for an atomic upload: reads exactly `size` bytes from stdin into a
/// temporary file next to `remote_path`, then renames it into place; a short
/// read (cancelled transfer) removes the temporary file. When `remote_path`
/// is a directory the file goes in it under `file_name`, as cp and scp do;
/// a path ending in '/' must be a directory.
std::string upload_script(std::string_view remote_path, std::uint64_t size, int mode, std::string_view file_name = {});
/// Script for a download: prints the file's size on the first line, then
/// its bytes.
std::string download_script(std::string_view remote_path);

}  // namespace clusterkit::detail
