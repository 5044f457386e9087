// Ctrl-C (SIGINT) and SIGTERM for the whole command line tool: one policy
// for every verb, so that a stop never leaves commands running on the hosts
// unknown to the user.
#pragma once

#include <stop_token>
#include <string>

namespace clusterkit::cli {

/// Made by main before any thread starts (the signals are blocked in every
/// thread and taken by one watcher). The first signal requests a stop: every
/// blocking call's operation is cancelled (detail::set_blocking_stop_token),
/// which stops its remote commands, and the verb returns; main then exits
/// 130. When no blocking call is waiting and the verb did not explain() a
/// stop of its own, nothing runs that a stop would clean up: it quits at
/// once. A second signal quits at once. A signal the parent set to be
/// ignored (`nohup`, a script's background job) stays ignored. Children get
/// an empty mask (detail::default_child_signals).
class SignalsToStop {
public:
  SignalsToStop();
  ~SignalsToStop();
  SignalsToStop(SignalsToStop const&) = delete;
  SignalsToStop& operator=(SignalsToStop const&) = delete;

  std::stop_token token() const;
  bool stop_requested() const;

  /// What stopping means for the verb running, in the first signal's line
  /// ("clusterkit: stopping: ... (again to quit at once)"), and what to run
  /// after a quit at once ("clusterkit: quit; ...").
  void explain(std::string stopping, std::string after_quit);

  /// The instance main made; a verb calls explain() on it.
  static SignalsToStop& current();

private:
  struct Impl;
  Impl* impl_;
};

}  // namespace clusterkit::cli
