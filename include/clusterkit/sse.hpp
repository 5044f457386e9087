// Server-sent events (the WHATWG "text/event-stream" format) as a pure state
// machine: bytes in, split anywhere, events out. No sockets, so it is tested
// and fuzzed on its own.
//
// What it follows from the spec: lines end with LF, CRLF or a lone CR (also
// when a CR ends one read and its LF starts the next); a leading UTF-8 BOM is
// dropped; lines starting with ':' are comments; "field: value" loses one
// space after the colon; several `data:` lines join with '\n'; an empty line
// dispatches the event; an event without data is not dispatched; `id:`
// persists across events (and is ignored when it contains NUL); `retry:` takes
// digits only. OpenAI-style streams end with `data: [DONE]`.
//
// Two ways to take the events: `feed(bytes, vector)` appends owned copies;
// `feed(bytes, visitor)` calls the visitor with views, which is what a client
// reading thousands of events a second wants: an event whose one data line
// arrived whole in `bytes` is handed over without being copied at all, and
// nothing is allocated per event once the parser's buffers have grown.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace clusterkit {

struct SseEvent {
  /// The `event:` field; empty means the default type ("message").
  std::string event;
  /// The `data:` lines joined with '\n'.
  std::string data;
  /// The last event ID seen so far in the stream (it persists).
  std::string id;
  /// The `retry:` field of this event, in milliseconds, when present.
  std::optional<std::uint64_t> retry_ms;

  /// OpenAI's end-of-stream marker.
  bool is_done() const { return data == "[DONE]"; }
  bool operator==(SseEvent const&) const = default;
};

/// An event as the visitor form of SseParser::feed hands it over: the views
/// point into the parser or into the bytes being fed, and are valid only
/// during the visitor's call.
struct SseEventView {
  std::string_view event;
  std::string_view data;
  std::string_view id;
  std::optional<std::uint64_t> retry_ms;

  bool is_done() const { return data == "[DONE]"; }
};

class SseParser {
public:
  /// `max_event_bytes` bounds the event being built (a line or its data):
  /// a stream that exceeds it is broken, not buffered forever.
  explicit SseParser(std::size_t max_event_bytes = 16u << 20) : max_event_bytes_(max_event_bytes) {}

  /// Parse the next bytes of the stream and append every event they complete
  /// to `out`. Returns false (and ignores further input) once the stream went
  /// over `max_event_bytes`.
  bool feed(std::string_view bytes, std::vector<SseEvent>& out);

  /// The same, calling `on_event(SseEventView const&)` for each event as it
  /// completes. The visitor must not call back into this parser.
  template <class Visitor>
    requires std::invocable<Visitor&, SseEventView const&>
  bool feed(std::string_view bytes, Visitor&& on_event) {
    using V = std::remove_reference_t<Visitor>;
    return feed_impl(
        bytes, [](void* v, SseEventView const& e) { (*static_cast<V*>(v))(e); },
        const_cast<void*>(static_cast<void const*>(std::addressof(on_event))));
  }

  /// The stream ended. Per the spec an event not terminated by an empty line
  /// is discarded; this returns true when such a partial event was pending
  /// (useful to tell a cut-off stream from a clean end).
  bool finish();

  bool overflowed() const { return overflowed_; }
  std::string const& last_event_id() const { return last_id_; }
  /// Comment lines seen (": keep-alive" pings and such).
  std::size_t comments() const { return comments_; }
  /// Bytes taken so far.
  std::uint64_t bytes() const { return bytes_; }

  /// Forget everything (a new stream).
  void reset();

private:
  using Sink = void (*)(void*, SseEventView const&);
  bool feed_impl(std::string_view bytes, Sink sink, void* ctx);
  // `in_input`: `line` points into the bytes being fed (not into line_), so a
  // data value may be kept as a view until the end of this feed.
  void process_line(std::string_view line, bool in_input, Sink sink, void* ctx);
  void dispatch(Sink sink, void* ctx);
  std::size_t data_size() const { return (data_in_input_ ? data_view_.size() : data_.size()) + (has_data_ ? 1 : 0); }

  std::size_t max_event_bytes_;
  std::string line_;        // an incomplete line carried between reads
  std::string data_;        // data lines of the event being built, joined with '\n'
  std::string_view data_view_;  // ... or its one data line, still in the input
  bool data_in_input_ = false;
  std::string event_;
  std::optional<std::uint64_t> retry_;
  std::string last_id_;
  bool has_data_ = false;
  bool skip_lf_ = false;    // the previous read ended with CR
  bool at_start_ = true;    // for the BOM
  bool overflowed_ = false;
  bool pending_ = false;    // a field line seen since the last dispatch
  std::size_t comments_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace clusterkit
