// OpenAIClient without a server: URLs, NO_PROXY matching, request bodies, and
// the scanner that reads streamed chunks (detail/openai_chunk.hpp).
#include "clusterkit/openai_client.hpp"  // first: the header stands on its own

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <random>
#include <tuple>

#include "clusterkit/detail/openai_chunk.hpp"

using namespace clusterkit;

TEST_CASE("NO_PROXY matching", "[openai]") {
  CHECK(no_proxy_matches("localhost,127.0.0.1", "127.0.0.1", 8000));
  CHECK(no_proxy_matches("localhost,127.0.0.1", "LOCALHOST", 8000));
  CHECK_FALSE(no_proxy_matches("localhost", "127.0.0.1", 8000));
  CHECK(no_proxy_matches("*", "anything.example", 1));
  CHECK(no_proxy_matches(".example.com", "api.example.com", 443));
  CHECK(no_proxy_matches("example.com", "api.example.com", 443));
  CHECK(no_proxy_matches("example.com", "example.com", 443));
  CHECK_FALSE(no_proxy_matches("example.com", "badexample.com", 443));
  CHECK(no_proxy_matches("*.example.com", "a.example.com", 443));
  CHECK(no_proxy_matches("10.0.0.0/8, 192.168.1.0/24", "10.1.2.3", 80));
  CHECK_FALSE(no_proxy_matches("10.0.0.0/8", "11.1.2.3", 80));
  CHECK(no_proxy_matches("host:8000", "host", 8000));
  CHECK_FALSE(no_proxy_matches("host:8000", "host", 9000));
  CHECK(no_proxy_matches("::1", "::1", 80));
  CHECK(no_proxy_matches("[::1]:80", "::1", 80));
  CHECK_FALSE(no_proxy_matches("", "host", 80));
}

TEST_CASE("Request bodies carry extra fields through", "[openai]") {
  auto r = ChatRequest::simple("m", "hi", "be brief");
  r.max_tokens = 5;
  r.extra = {{"tools", nlohmann::json::array({{{"type", "function"}}})}, {"top_k", 3}, {"max_tokens", 7}};
  auto b = r.body(true);
  CHECK(b["model"] == "m");
  CHECK(b["messages"].size() == 2);
  CHECK(b["messages"][0]["role"] == "system");
  CHECK(b["stream"] == true);
  CHECK(b["stream_options"]["include_usage"] == true);
  CHECK(b["top_k"] == 3);
  CHECK(b["tools"][0]["type"] == "function");
  CHECK(b["max_tokens"] == 7);  // extra wins
  CHECK_FALSE(r.body(false).contains("stream"));
  CompletionRequest c;
  c.model = "m";
  c.prompt = nlohmann::json::array({1, 2, 3});
  CHECK(c.body(false)["prompt"].size() == 3);
}

TEST_CASE("Bad URLs and proxies are refused up front", "[openai]") {
  boost::asio::io_context io;
  auto make = [&](std::string url, std::string proxy = {}) {
    ClientOptions o;
    o.base_url = std::move(url);
    o.proxy = std::move(proxy);
    o.proxy_from_environment = false;
    return OpenAIClient(io.get_executor(), o);
  };
  CHECK_THROWS_AS(make("localhost:8000"), Error);
  CHECK_THROWS_AS(make("ftp://host"), Error);
  CHECK_THROWS_AS(make("http://host:99999"), Error);
  CHECK_THROWS_AS(make("http://user:pw@host"), Error);
  CHECK_THROWS_AS(make("http://host", "https://proxy:3128"), Error);
  CHECK_NOTHROW(make("http://[::1]:8000/v1"));
  CHECK_NOTHROW(make("https://api.example.com/v1/"));
  CHECK(make("http://host", "proxy:3128").proxy_in_use() == "http://proxy:3128");
  ClientOptions o;
  o.base_url = "http://h";
  o.api_key = "sk\r\nInjected: yes";
  CHECK_THROWS_AS(OpenAIClient(io.get_executor(), o), Error);
}

// ---------------------------------------------------------------------------
// The chunk scanner against nlohmann: whenever it answers, the answer is what
// parsing the text gives; where it declines, the caller parses.

namespace {

using clusterkit::detail::ChunkExtras;

struct Reference {
  bool valid = false;   // nlohmann parses it into an object
  bool throws = false;  // stream_chunk_from_json throws on it
  StreamChunk chunk;
  ChunkExtras extras;
};

Reference reference(std::string_view text, bool chat) {
  Reference r;
  auto j = nlohmann::json::parse(text, nullptr, false);
  r.valid = !j.is_discarded() && j.is_object();
  if (!r.valid) return r;
  try {
    clusterkit::detail::stream_chunk_from_json(j, chat, true, r.chunk, r.extras);
  } catch (nlohmann::json::exception const&) {
    r.throws = true;
  }
  return r;
}

bool same_fields(StreamChunk const& a, StreamChunk const& b) {
  auto usage = [](std::optional<Usage> const& u) {
    return u ? std::tuple(true, u->prompt_tokens, u->completion_tokens, u->total_tokens)
             : std::tuple(false, std::int64_t{0}, std::int64_t{0}, std::int64_t{0});
  };
  return a.id == b.id && a.index == b.index && a.delta == b.delta && a.role == b.role &&
         a.finish_reason == b.finish_reason && usage(a.usage) == usage(b.usage);
}

// Returns whether the scanner answered (and checks it answered right).
bool check_scan(std::string_view text, bool chat) {
  StreamChunk got;
  ChunkExtras extras;
  bool const answered = clusterkit::detail::scan_stream_chunk(text, chat, true, got, extras);
  if (!answered) return false;
  auto ref = reference(text, chat);
  INFO("text: " << text);
  REQUIRE(ref.valid);  // never vouches for invalid JSON
  REQUIRE(extras.error == ref.extras.error);
  if (ref.extras.error) return true;  // the fields are not read then
  REQUIRE_FALSE(ref.throws);
  CHECK(same_fields(got, ref.chunk));
  CHECK(extras.model == ref.extras.model);
  return true;
}

std::vector<std::string> const kChunks = {
    // llm-d-inference-sim, as it streams
    R"({"id":"chatcmpl-aa3cd177","model":"qwen2.5-72b-instruct","object":"chat.completion.chunk","created":1796237282,"usage":null,"choices":[{"index":0,"finish_reason":null,"delta":{"role":"assistant"}}]})",
    R"({"id":"chatcmpl-aa3cd177","model":"qwen2.5-72b-instruct","object":"chat.completion.chunk","created":1796237282,"usage":null,"choices":[{"index":0,"finish_reason":null,"delta":{"content":"Give "}}]})",
    R"({"id":"chatcmpl-aa3cd177","model":"qwen2.5-72b-instruct","object":"chat.completion.chunk","created":1796237282,"usage":null,"choices":[{"index":0,"finish_reason":"length","delta":{}}]})",
    R"({"id":"chatcmpl-aa3cd177","model":"qwen2.5-72b-instruct","object":"chat.completion.chunk","created":1796237282,"usage":{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}},"choices":[]})",
    // vLLM: logprobs, escapes, non-ASCII, several choices
    R"({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a\"b\\c\/\n\t\u00e9\ud83d\ude00 – ü"},"logprobs":{"content":[{"token":"a","logprob":-0.25,"bytes":[97]}]},"finish_reason":null},{"index":1,"delta":{"content":"x"}}]})",
    R"( { "id" : "x" , "choices" : [ { "index" : 2 , "text" : "completion text" , "finish_reason" : "stop" } ] , "usage" : { "prompt_tokens" : 3 , "completion_tokens" : 5 } } )",
    // an error mid-stream, and null fields
    R"({"error":{"message":"boom","type":"internal"}})",
    R"({"id":null,"error":null,"choices":[{"index":0,"delta":{"content":null,"role":null},"finish_reason":null}]})",
    // repeated keys: the last counts
    R"({"id":"a","id":"b","choices":[{"index":0,"delta":{"content":"one"}}],"choices":[{"index":0,"delta":{"content":"two"},"delta":{"role":"r"}}]})",
    // values the scanner leaves to nlohmann
    R"({"choices":[{"index":1.0,"delta":{"content":"x"}}]})",
    R"({"choices":[{"index":"0","delta":{"content":"x"}}]})",
    R"({"choices":["not an object"]})",
    R"({"usage":{"prompt_tokens":12345678901234567890}})",
    R"({"n":1e999,"choices":[]})",
    R"({"i\u0064":"escaped key"})",
    "\xEF\xBB\xBF{\"id\":\"bom\"}",
    R"([1,2,3])",
    R"({"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})",
    // invalid JSON
    R"({"id":"x",})",
    R"({"id":"x")",
    R"({"id":"\x"})",
    "{\"id\":\"\xC3\x28\"}",
    "{\"id\":\"a\x01\"}",
    R"({"id":01})",
    R"({"id":"\ud800"})",
    R"({} x)",
};

}  // namespace

TEST_CASE("Chunk scanner: fixtures", "[openai][chunk]") {
  CHECK(check_scan(kChunks[0], true));
  CHECK(check_scan(kChunks[1], true));
  CHECK(check_scan(kChunks[3], true));
  CHECK(check_scan(kChunks[4], true));
  CHECK(check_scan(kChunks[5], false));
  CHECK(check_scan(kChunks[6], true));
  CHECK(check_scan(kChunks[8], true));
  for (auto const& c : kChunks)
    for (bool chat : {true, false}) check_scan(c, chat);
  // What the fields come to.
  StreamChunk ch;
  ChunkExtras ex;
  REQUIRE(clusterkit::detail::scan_stream_chunk(kChunks[1], true, true, ch, ex));
  CHECK(ch.delta == "Give ");
  CHECK(ch.id == "chatcmpl-aa3cd177");
  CHECK(ex.model == "qwen2.5-72b-instruct");
  CHECK_FALSE(ch.usage);
  REQUIRE(clusterkit::detail::scan_stream_chunk(kChunks[3], true, false, ch, ex));
  REQUIRE(ch.usage);
  CHECK(ch.usage->total_tokens == 11);
  CHECK(ex.model.empty());  // not asked for
  REQUIRE(clusterkit::detail::scan_stream_chunk(kChunks[4], true, true, ch, ex));
  CHECK(ch.delta == "a\"b\\c/\n\t\xC3\xA9\xF0\x9F\x98\x80 \xE2\x80\x93 \xC3\xBC");
  REQUIRE(clusterkit::detail::scan_stream_chunk(kChunks[5], false, true, ch, ex));
  CHECK(ch.index == 2);
  CHECK(ch.delta == "completion text");
  CHECK(ch.usage->total_tokens == 8);  // prompt + completion when absent
  REQUIRE(clusterkit::detail::scan_stream_chunk(kChunks[8], true, true, ch, ex));
  CHECK(ch.id == "b");
  CHECK(ch.delta.empty());
  CHECK(ch.role == "r");
  // Declined: left to nlohmann (valid but unusual, or invalid).
  for (std::size_t i = 9; i < kChunks.size(); ++i) {
    INFO(kChunks[i]);
    CHECK_FALSE(clusterkit::detail::scan_stream_chunk(kChunks[i], true, true, ch, ex));
  }
}

TEST_CASE("Chunk scanner fuzz: random mutations never give an answer nlohmann would not", "[openai][chunk][fuzz]") {
  std::mt19937 rng(20261202);
  std::string const alphabet = "{}[]\":,\\ 0123456789.eE-+tfnul\"ux\xC3\xA9\xED\xA0\x80\xF4\x90\x01";
  std::size_t answered = 0, rounds = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = kChunks[rng() % 9];  // mutate the realistic ones
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      std::size_t at = s.empty() ? 0 : rng() % s.size();
      switch (rng() % 4) {
        case 0: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), alphabet[rng() % alphabet.size()]); break;
        case 1: if (!s.empty()) s.erase(at, 1 + rng() % 3); break;
        case 2: if (!s.empty()) s[at] = alphabet[rng() % alphabet.size()]; break;
        case 3: s.insert(at, s.substr(rng() % (s.size() + 1), rng() % 12)); break;
      }
    }
    ++rounds;
    if (check_scan(s, rng() % 2 == 0)) ++answered;
  }
  // Most single edits leave valid chunks the scanner takes itself.
  CHECK(answered > rounds / 10);
}
