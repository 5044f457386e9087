#include "signals.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/block_on.hpp"

namespace clusterkit::cli {

namespace {
SignalsToStop* the_instance = nullptr;
}

struct SignalsToStop::Impl {
  sigset_t set{}, old{};
  std::stop_source source;
  std::atomic<bool> done{false};
  std::mutex mutex;
  std::string stopping = "cancelling what runs on the hosts, a few seconds";
  std::string after_quit = "commands started on the hosts may still run";
  bool explained = false;  // the verb stops on its own (lab): never quit at once
  std::thread watcher;

  void watch() {
    timespec const tick{0, 50'000'000};
    int seen = 0;
    while (!done) {
      int sig = ::sigtimedwait(&set, nullptr, &tick);
      if (sig < 0) continue;
      std::lock_guard lock(mutex);
      // Nothing running that a stop would clean up (local work: a plan, a
      // manifest's hashes): quit at once, as a plain program does.
      if (seen == 0 && !explained && detail::blocking_calls_in_flight() == 0) std::_Exit(128 + sig);
      if (++seen == 1) {
        std::fprintf(stderr, "\nclusterkit: stopping: %s (again to quit at once)\n", stopping.c_str());
        std::fflush(stderr);
        source.request_stop();
        continue;
      }
      std::fprintf(stderr, "clusterkit: quit; %s\n", after_quit.c_str());
      std::_Exit(128 + sig);
    }
  }
};

SignalsToStop::SignalsToStop() : impl_(new Impl) {
  sigemptyset(&impl_->set);
  for (int sig : {SIGINT, SIGTERM}) {
    struct sigaction now {};
    if (::sigaction(sig, nullptr, &now) == 0 && now.sa_handler != SIG_IGN) sigaddset(&impl_->set, sig);
  }
  // Blocked before any other thread starts, so that every thread inherits
  // the mask and only the watcher takes these signals.
  ::pthread_sigmask(SIG_BLOCK, &impl_->set, &impl_->old);
  impl_->watcher = std::thread([this] { impl_->watch(); });
  detail::set_blocking_stop_token(impl_->source.get_token());
  assert(!the_instance);
  the_instance = this;
}

SignalsToStop::~SignalsToStop() {
  the_instance = nullptr;
  detail::set_blocking_stop_token({});
  impl_->done = true;
  impl_->watcher.join();
  ::pthread_sigmask(SIG_SETMASK, &impl_->old, nullptr);
  delete impl_;
}

std::stop_token SignalsToStop::token() const { return impl_->source.get_token(); }
bool SignalsToStop::stop_requested() const { return impl_->source.stop_requested(); }

void SignalsToStop::explain(std::string stopping, std::string after_quit) {
  std::lock_guard lock(impl_->mutex);
  impl_->stopping = std::move(stopping);
  impl_->after_quit = std::move(after_quit);
  impl_->explained = true;
}

SignalsToStop& SignalsToStop::current() {
  assert(the_instance);
  return *the_instance;
}

}  // namespace clusterkit::cli
