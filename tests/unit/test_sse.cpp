// The SSE parser alone: fixtures, every split point, and random mutations.
#include "clusterkit/sse.hpp"  // first: the header stands on its own

#include <catch2/catch.hpp>

#include <random>

using clusterkit::SseEvent;
using clusterkit::SseParser;

namespace {

std::vector<SseEvent> parse_whole(std::string_view text) {
  SseParser p;
  std::vector<SseEvent> out;
  p.feed(text, out);
  return out;
}

std::vector<SseEvent> parse_split(std::string_view text, std::vector<std::size_t> cuts) {
  SseParser p;
  std::vector<SseEvent> out;
  std::size_t at = 0;
  for (auto c : cuts) {
    p.feed(text.substr(at, c - at), out);
    at = c;
  }
  p.feed(text.substr(at), out);
  return out;
}

SseEvent ev(std::string data, std::string event = {}, std::string id = {}) {
  SseEvent e;
  e.data = std::move(data);
  e.event = std::move(event);
  e.id = std::move(id);
  return e;
}

// What real servers send: vLLM/OpenAI chat chunks, usage last, [DONE].
std::string const kOpenAIStream =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":2,\"total_tokens\":8}}\n\n"
    "data: [DONE]\n\n";

std::vector<std::string> const kFixtures = {
    kOpenAIStream,
    // CRLF, comments, multi-line data, event and id fields.
    ": keep-alive\r\n\r\nevent: update\r\nid: 7\r\ndata: line one\r\ndata: line two\r\n\r\ndata: [DONE]\r\n\r\n",
    // Lone CRs, a field without a space, retry.
    "data:x\r\rretry: 1500\rdata: y\r\r:comment\rdata\r\r",
    // BOM, unknown field, empty data, id with no data.
    "\xEF\xBB\xBF" "data: first\n\nfoo: bar\ndata:\n\nid: 9\n\ndata: after id\n\n",
    // Mixed terminators and an event left unterminated at the end.
    "data: a\r\n\ndata: b\n\r\ndata: c\r\r\ndata: cut off",
};

}  // namespace

TEST_CASE("SSE: an OpenAI stream", "[sse]") {
  auto events = parse_whole(kOpenAIStream);
  REQUIRE(events.size() == 5);
  CHECK(events[1].data.find("\"Hel\"") != std::string::npos);
  CHECK(events[3].data.find("usage") != std::string::npos);
  CHECK(events[4].is_done());
  CHECK_FALSE(events[0].is_done());
}

TEST_CASE("SSE: fields, comments, multi-line data, CRLF", "[sse]") {
  SseParser p;
  std::vector<SseEvent> out;
  p.feed(kFixtures[1], out);
  REQUIRE(out.size() == 2);
  CHECK(out[0] == ev("line one\nline two", "update", "7"));
  CHECK(out[1].is_done());
  CHECK(out[1].id == "7");  // the id persists
  CHECK(p.comments() == 1);
}

TEST_CASE("SSE: lone CR line ends, retry, a field without a value", "[sse]") {
  auto out = parse_whole(kFixtures[2]);
  REQUIRE(out.size() == 3);
  CHECK(out[0].data == "x");
  CHECK(out[1].data == "y");
  CHECK(out[1].retry_ms == 1500u);
  CHECK(out[2].data == "");  // "data" alone: an empty data line
}

TEST_CASE("SSE: BOM, unknown fields, empty data, id-only events", "[sse]") {
  auto out = parse_whole(kFixtures[3]);
  REQUIRE(out.size() == 3);
  CHECK(out[0].data == "first");
  CHECK(out[1].data == "");  // "data:" then blank line: an event with empty data
  CHECK(out[2] == ev("after id", "", "9"));
}

TEST_CASE("SSE: a CR at the end of one read and its LF at the start of the next", "[sse]") {
  SseParser p;
  std::vector<SseEvent> out;
  p.feed("data: a\r", out);
  p.feed("\n\r", out);
  p.feed("\n", out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].data == "a");
  p.feed("data: b\n\n", out);
  REQUIRE(out.size() == 2);  // the LF was not taken for an empty line
}

TEST_CASE("SSE: an unterminated event is dropped and reported by finish()", "[sse]") {
  SseParser p;
  std::vector<SseEvent> out;
  p.feed(kFixtures[4], out);
  CHECK(out.size() == 3);
  CHECK(p.finish());
  SseParser clean;
  clean.feed("data: x\n\n", out);
  CHECK_FALSE(clean.finish());
}

TEST_CASE("SSE: id with NUL is ignored; retry must be digits", "[sse]") {
  using namespace std::string_literals;
  auto out = parse_whole("id: 1\ndata: a\n\nid: 2\0x\nretry: 12a\ndata: b\n\n"s);
  REQUIRE(out.size() == 2);
  CHECK(out[1].id == "1");
  CHECK_FALSE(out[1].retry_ms.has_value());
}

TEST_CASE("SSE: an event over the size limit stops the parser", "[sse]") {
  SseParser p(64);
  std::vector<SseEvent> out;
  CHECK(p.feed("data: " + std::string(100, 'x'), out) == false);
  CHECK(p.overflowed());
  CHECK(p.feed("\n\n", out) == false);
  CHECK(out.empty());
}

TEST_CASE("SSE fuzz: every fixture split at every byte gives the same events", "[sse][fuzz]") {
  for (auto const& f : kFixtures) {
    auto whole = parse_whole(f);
    for (std::size_t cut = 0; cut <= f.size(); ++cut) {
      INFO("cut at " << cut);
      REQUIRE(parse_split(f, {cut}) == whole);
    }
    for (std::size_t a = 0; a <= f.size(); a += 3)
      for (std::size_t b = a; b <= f.size(); b += 5) REQUIRE(parse_split(f, {a, b}) == whole);
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < f.size(); ++i) every.push_back(i);
    REQUIRE(parse_split(f, every) == whole);  // one byte at a time
  }
}

TEST_CASE("SSE fuzz: random mutations never crash and never depend on the split", "[sse][fuzz]") {
  std::mt19937 rng(20240601);
  std::string const alphabet = "data:event:id:retry: \r\n\n\r{}[DONE]\xEF\xBB\xBF\0x";
  std::size_t total_events = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string s = kFixtures[rng() % kFixtures.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      std::size_t at = s.empty() ? 0 : rng() % s.size();
      switch (rng() % 4) {
        case 0: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), alphabet[rng() % alphabet.size()]); break;
        case 1: if (!s.empty()) s.erase(at, 1 + rng() % 4); break;
        case 2: if (!s.empty()) s[at] = static_cast<char>(rng() & 0xff); break;
        case 3: s.insert(at, s.substr(rng() % (s.size() + 1), rng() % 16)); break;
      }
    }
    auto whole = parse_whole(s);
    total_events += whole.size();
    std::vector<std::size_t> cuts;
    for (std::size_t i = 0; i < s.size(); i += 1 + rng() % 7) cuts.push_back(i);
    REQUIRE(parse_split(s, cuts) == whole);
  }
  CHECK(total_events > 1000);
}

TEST_CASE("SSE: the visitor form sees what the vector form gets, views valid during the call", "[sse]") {
  for (auto const& f : kFixtures) {
    auto whole = parse_whole(f);
    for (std::size_t cut = 0; cut <= f.size(); ++cut) {
      INFO("cut at " << cut);
      SseParser p;
      std::vector<SseEvent> seen;
      auto visit = [&](clusterkit::SseEventView const& e) {
        seen.push_back(SseEvent{std::string(e.event), std::string(e.data), std::string(e.id), e.retry_ms});
      };
      // Each piece lives in its own buffer that is overwritten after the
      // call: a view kept past a feed would read garbage.
      std::string piece(f.substr(0, cut));
      p.feed(piece, visit);
      piece.assign(piece.size(), '#');
      piece = f.substr(cut);
      p.feed(piece, visit);
      piece.assign(piece.size(), '#');
      REQUIRE(seen == whole);
    }
  }
}

TEST_CASE("SSE: an event whose one data line arrives whole is handed over as a view of the input", "[sse]") {
  std::string const input = "data: {\"a\":1}\n\ndata: two\ndata: lines\n\n";
  SseParser p;
  std::vector<std::string_view> views;
  p.feed(input, [&](clusterkit::SseEventView const& e) { views.push_back(e.data); });
  REQUIRE(views.size() == 2);
  CHECK(views[0] == "{\"a\":1}");
  CHECK(views[0].data() == input.data() + 6);  // no copy
  // Several data lines are joined in the parser's own buffer.
  CHECK(!(views[1].data() >= input.data() && views[1].data() < input.data() + input.size()));
}
