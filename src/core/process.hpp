// Boost.Process v2 as shipped in Boost 1.81 forgets a few includes when
// built with BOOST_PROCESS_USE_STD_FS; every file that uses it goes through
// this header instead.
#pragma once

#include <type_traits>
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
#include <boost/type_traits/is_constructible.hpp>
#include <boost/type_traits/remove_pointer.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <mutex>

namespace clusterkit::detail {

// Writing to a pipe whose reader is gone (ssh exited while we still sent it
// stdin) must be an EPIPE error for us, not a signal that kills the whole
// program. Asio does not handle this for pipes, so we ignore SIGPIPE, once,
// when the first process is started; Python does the same at startup.
inline void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

// Runs in each child between fork and exec:
// - SIGPIPE back to the default, so that `yes | head` behaves as in a
//   terminal;
// - no signal blocked: the CLI blocks SIGINT/SIGTERM in all its threads for
//   its signal watcher (cli/signals.cpp), and a mask survives fork and exec;
//   a local command, an ssh client or a persisting ssh master must still
//   die of the TERM it is sent;
// - a session of its own. With the kernel's autogroup scheduling (on by
//   default on desktop and cloud kernels) the CPU is shared first between
//   sessions: 64 ssh handshakes in our one session would get one session's
//   share against everything else on the machine, and ran up to 2.8x slower
//   than pdsh, which does the same (bench/RESULTS.md). It also keeps a
//   terminal's Ctrl-C from killing the clients behind our back: we stop
//   remote commands ourselves, through the wrapper.
struct default_child_signals {
  template <class Launcher>
  boost::process::v2::error_code on_exec_setup(Launcher&, boost::process::v2::filesystem::path const&,
                                               char const* const*&) {
    std::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setsid();
    return {};
  }
};

}  // namespace clusterkit::detail
