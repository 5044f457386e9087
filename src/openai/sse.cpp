#include "clusterkit/sse.hpp"

#include <algorithm>
#include <cstring>

namespace clusterkit {

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// The next CR or LF at or after `p`. OpenAI data lines are a few hundred
// bytes of JSON: two vectorised memchr calls (LF, then a CR before it) cost
// far less than a loop over each byte. `lf` keeps the LF found last so that
// a stream of lone-CR lines does not search the rest of the input for an LF
// once per line.
char const* find_eol(char const* p, char const* end, char const*& lf) {
  if (lf == nullptr || lf < p) {
    lf = static_cast<char const*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (!lf) lf = end;
  }
  auto const* cr = static_cast<char const*>(std::memchr(p, '\r', static_cast<std::size_t>(lf - p)));
  return cr ? cr : lf;
}

}  // namespace

void SseParser::reset() { *this = SseParser(max_event_bytes_); }

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  return feed(bytes, [&out](SseEventView const& e) {
    SseEvent& copy = out.emplace_back();
    copy.event.assign(e.event);
    copy.data.assign(e.data);
    copy.id.assign(e.id);
    copy.retry_ms = e.retry_ms;
  });
}

bool SseParser::feed_impl(std::string_view bytes, Sink sink, void* ctx) {
  if (overflowed_) return false;
  bytes_ += bytes.size();
  char const* p = bytes.data();
  char const* const end = p + bytes.size();
  if (skip_lf_ && p != end) {
    if (*p == '\n') ++p;
    skip_lf_ = false;
  }
  bool ok = true;
  char const* lf = nullptr;
  while (p != end) {
    char const* eol = find_eol(p, end, lf);
    if (eol == end) {
      line_.append(p, end);
      if (line_.size() + data_size() > max_event_bytes_) ok = false;
      break;
    }
    if (line_.empty()) {
      process_line(std::string_view(p, static_cast<std::size_t>(eol - p)), true, sink, ctx);
    } else {
      line_.append(p, eol);
      process_line(line_, false, sink, ctx);
      line_.clear();
    }
    if (data_size() > max_event_bytes_) {
      ok = false;
      break;
    }
    p = eol + 1;
    if (*eol == '\r') {
      if (p == end)
        skip_lf_ = true;
      else if (*p == '\n')
        ++p;
    }
  }
  // The input goes away after this call: an event still being built keeps
  // its own copy of its data.
  if (data_in_input_) {
    data_.assign(data_view_);
    data_in_input_ = false;
  }
  if (!ok) overflowed_ = true;
  return ok;
}

void SseParser::process_line(std::string_view line, bool in_input, Sink sink, void* ctx) {
  if (at_start_) {
    at_start_ = false;
    if (line.substr(0, kBom.size()) == kBom) line.remove_prefix(kBom.size());
  }
  if (line.empty()) {
    dispatch(sink, ctx);
    return;
  }
  if (line.front() == ':') {
    ++comments_;
    return;
  }
  std::string_view field = line;
  std::string_view value;
  if (auto colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  pending_ = true;
  if (field == "data") {
    if (!has_data_ && in_input) {
      data_view_ = value;  // the common case: one data line, taken as a view
      data_in_input_ = true;
    } else {
      if (data_in_input_) {
        data_.assign(data_view_);
        data_in_input_ = false;
      }
      if (has_data_) data_.push_back('\n');
      data_.append(value);
    }
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  } else if (field == "retry") {
    if (!value.empty() && value.size() <= 19 &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      std::uint64_t ms = 0;
      for (char c : value) ms = ms * 10 + static_cast<std::uint64_t>(c - '0');
      retry_ = ms;
    }
  }
  // Unknown fields are ignored, as the spec says.
}

void SseParser::dispatch(Sink sink, void* ctx) {
  pending_ = false;
  if (has_data_) {
    SseEventView e;
    e.event = event_;
    e.data = data_in_input_ ? data_view_ : std::string_view(data_);
    e.id = last_id_;
    e.retry_ms = retry_;
    sink(ctx, e);
  }
  // Without data the event type and retry are dropped; the id persists.
  data_.clear();
  data_in_input_ = false;
  event_.clear();
  retry_.reset();
  has_data_ = false;
}

bool SseParser::finish() {
  bool const partial = pending_ || !line_.empty();
  line_.clear();
  data_.clear();
  data_in_input_ = false;
  event_.clear();
  retry_.reset();
  has_data_ = false;
  pending_ = false;
  skip_lf_ = false;
  return partial;
}

}  // namespace clusterkit
