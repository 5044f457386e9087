#include "remote/run_each.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <chrono>
#include <memory>
#include <random>

#include "core/completion.hpp"

namespace clusterkit::detail {
namespace {

struct RunEachOp : std::enable_shared_from_this<RunEachOp> {
  std::vector<RunEachItem> items;
  asio::any_completion_handler<RunEachSignature> handler;
  asio::strand<asio::any_io_executor> strand;
  std::vector<HostOutcome> outcomes;
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::size_t running = 0;
  bool finished = false;

  RunEachOp(std::vector<RunEachItem> i, asio::any_completion_handler<RunEachSignature> h)
      : items(std::move(i)), handler(std::move(h)), strand(asio::make_strand(items.front().host.get_executor())) {
    outcomes.resize(items.size());
    for (std::size_t k = 0; k < items.size(); ++k) {
      outcomes[k].host = items[k].host.name();
      signals.push_back(std::make_unique<asio::cancellation_signal>());
    }
  }

  void start() {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
      slot.assign([weak = std::weak_ptr<RunEachOp>(shared_from_this())](asio::cancellation_type type) {
        if (auto self = weak.lock())
          asio::dispatch(self->strand, [self, type] {
            for (auto& s : self->signals) s->emit(type);
          });
      });
    }
    running = items.size();
    for (std::size_t k = 0; k < items.size(); ++k) {
      items[k].host.async_run(
          items[k].command, items[k].options,
          asio::bind_cancellation_slot(signals[k]->slot(),
                                       asio::bind_executor(strand, [self = shared_from_this(), k](std::error_code ec, RunResult r) {
                                         self->outcomes[k].error = ec;
                                         self->outcomes[k].result = std::move(r);
                                         if (--self->running == 0) self->finish();
                                       })));
    }
  }

  void finish() {
    if (finished) return;
    finished = true;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    complete_on_associated(std::move(handler), strand, std::move(outcomes));
  }
};

}  // namespace

void start_run_each(std::vector<RunEachItem> items, asio::any_completion_handler<RunEachSignature> handler) {
  if (items.empty()) {
    asio::any_io_executor fallback = asio::system_executor();
    complete_on_associated(std::move(handler), fallback, std::vector<HostOutcome>{});
    return;
  }
  auto op = std::make_shared<RunEachOp>(std::move(items), std::move(handler));
  asio::dispatch(op->strand, [op] { op->start(); });
}

double wall_clock_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_hex(std::size_t bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<unsigned>(rd()) & 0xffu;
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

}  // namespace clusterkit::detail
