#include "clusterkit/sse.hpp"

#include <algorithm>
#include <cstring>

namespace clusterkit {

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

char const* find_eol(char const* p, char const* end) {
  // Most lines are short JSON; a plain loop beats two memchr calls here.
  for (; p != end; ++p)
    if (*p == '\n' || *p == '\r') return p;
  return end;
}

}  // namespace

void SseParser::reset() { *this = SseParser(max_event_bytes_); }

bool SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (overflowed_) return false;
  bytes_ += bytes.size();
  char const* p = bytes.data();
  char const* const end = p + bytes.size();
  if (skip_lf_ && p != end) {
    if (*p == '\n') ++p;
    skip_lf_ = false;
  }
  while (p != end) {
    char const* eol = find_eol(p, end);
    if (eol == end) {
      line_.append(p, end);
      if (line_.size() + data_.size() > max_event_bytes_) {
        overflowed_ = true;
        return false;
      }
      return true;
    }
    if (line_.empty()) {
      process_line(std::string_view(p, static_cast<std::size_t>(eol - p)), out);
    } else {
      line_.append(p, eol);
      process_line(line_, out);
      line_.clear();
    }
    if (data_.size() > max_event_bytes_) {
      overflowed_ = true;
      return false;
    }
    p = eol + 1;
    if (*eol == '\r') {
      if (p == end)
        skip_lf_ = true;
      else if (*p == '\n')
        ++p;
    }
  }
  return true;
}

void SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (at_start_) {
    at_start_ = false;
    if (line.substr(0, kBom.size()) == kBom) line.remove_prefix(kBom.size());
  }
  if (line.empty()) {
    dispatch(out);
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
    data_.append(value);
    data_.push_back('\n');
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

void SseParser::dispatch(std::vector<SseEvent>& out) {
  pending_ = false;
  if (!has_data_) {
    // No data: the event type and retry are dropped; the id persists.
    event_.clear();
    retry_.reset();
    return;
  }
  data_.pop_back();  // the '\n' after the last data line
  SseEvent& e = out.emplace_back();
  e.data.swap(data_);
  e.event.swap(event_);
  e.id = last_id_;
  e.retry_ms = retry_;
  data_.clear();
  event_.clear();
  retry_.reset();
  has_data_ = false;
}

bool SseParser::finish() {
  bool const partial = pending_ || !line_.empty();
  line_.clear();
  data_.clear();
  event_.clear();
  retry_.reset();
  has_data_ = false;
  pending_ = false;
  skip_lf_ = false;
  return partial;
}

}  // namespace clusterkit
