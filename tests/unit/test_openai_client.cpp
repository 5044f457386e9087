// OpenAIClient without a server: URLs, NO_PROXY matching, request bodies.
#include "clusterkit/openai_client.hpp"  // first: the header stands on its own

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

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
