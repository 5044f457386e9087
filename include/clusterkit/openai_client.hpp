// OpenAIClient: an OpenAI-compatible HTTP client for the servers clusterkit
// deploys (vLLM), and what its readiness checks, CLI and benchmark share.
//
// HTTP/1.1 over Boost.Beast with a keep-alive connection pool, TLS through
// OpenSSL with certificate verification on by default, HTTPS_PROXY /
// HTTP_PROXY / NO_PROXY honoured, the API key sent as a bearer token and
// never logged. Streams (server-sent events) are delivered chunk by chunk as
// they arrive. Retries with backoff on 429, 503 and connections that drop
// before any answer, never once part of a stream was delivered.
//
// Beast and OpenSSL stay out of this header: everything is compiled once in
// src/openai_client.cpp.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "clusterkit/error.hpp"
#include "clusterkit/prometheus.hpp"

namespace clusterkit {

namespace asio = boost::asio;

struct ClientOptions {
  /// "http://host:8000" or "https://host/v1". The API lives under /v1 (added
  /// when missing); /health and /metrics under the part before it.
  std::string base_url;
  /// Sent as "Authorization: Bearer ..."; never logged or put in messages.
  std::string api_key;
  /// Verify the server's certificate and host name. Turning it off is an
  /// explicit opt-out for self-signed test servers.
  bool tls_verify = true;
  /// A PEM file of CAs to trust (besides the system's).
  std::string ca_file;
  /// Proxy URL ("http://[user:pass@]proxy:3128"). Empty and
  /// `proxy_from_environment`: HTTPS_PROXY/https_proxy for https servers,
  /// HTTP_PROXY/http_proxy for http ones, ALL_PROXY as a fallback.
  std::string proxy;
  /// Hosts reached directly: comma-separated names, ".suffix" or "suffix"
  /// for a domain and its subdomains, IP addresses, host:port, or "*".
  /// Appended to NO_PROXY/no_proxy when `proxy_from_environment`.
  std::string no_proxy;
  bool proxy_from_environment = true;

  /// TCP connect, TLS handshake and proxy CONNECT, per connection.
  std::chrono::milliseconds connect_timeout{10000};
  /// Streams: from sending the request to the first content token.
  /// Zero: no limit.
  std::chrono::milliseconds first_token_timeout{0};
  /// Streams: the longest gap between two events after the first token.
  std::chrono::milliseconds inter_token_timeout{0};
  /// One attempt from start to end (zero: no limit). Non-streamed requests
  /// rely on this one.
  std::chrono::milliseconds request_timeout{600000};
  /// Retries on 429, 502-504, a connection refused or timed out, and a
  /// connection reset before any answer; never after part of a stream.
  int max_retries = 2;
  /// First backoff; doubled each retry up to `max_backoff`, with jitter.
  /// A Retry-After header (seconds) is honoured up to `max_backoff`.
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{8000};
  /// Connections open at once to the server; more requests wait for one.
  std::size_t pool_size = 64;
  /// Streams: parse every chunk into StreamChunk::raw. The typed fields
  /// (delta, usage, ...) never need it: off, they are read straight from the
  /// text without building a JSON tree, which is most of the client's CPU
  /// per chunk at high token rates (clusterkit bench turns it off).
  bool chunk_json = true;
  /// Extra headers on every request.
  std::map<std::string, std::string> headers;
  std::string user_agent = "clusterkit/0.1";
};

struct Usage {
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t total_tokens = 0;
};

/// What every result carries beside its payload.
struct ResponseMeta {
  /// HTTP status of the last attempt; 0 when no response came.
  int status = 0;
  /// Attempts made (1 + retries).
  int attempts = 0;
  /// On an HTTP error: the server's own message (error.message of its JSON,
  /// or the body's text).
  std::string server_message;
  /// On error: what failed, against which server, and what to do.
  std::string message;
  std::chrono::nanoseconds duration{0};
};

struct ModelInfo {
  std::string id;
  std::string owned_by;
  std::int64_t created = 0;
  std::optional<std::int64_t> max_model_len;
  nlohmann::json raw;
};

struct ModelList {
  std::vector<ModelInfo> models;
  nlohmann::json raw;
  ResponseMeta meta;
};

/// POST /v1/chat/completions. `extra` is merged into the body as is (tools,
/// response_format, vLLM's top_k, ignore_eos, ...), overriding typed fields.
struct ChatRequest {
  std::string model;
  /// The OpenAI messages array (tool calls and multi-part content allowed).
  nlohmann::json messages = nlohmann::json::array();
  std::optional<std::int64_t> max_tokens;
  std::optional<double> temperature;
  std::optional<double> top_p;
  nlohmann::json extra = nlohmann::json::object();

  /// A system message (when not empty) and one user message.
  static ChatRequest simple(std::string model, std::string prompt, std::string system = {});
  /// The request body; `stream` adds stream and stream_options.include_usage.
  nlohmann::json body(bool stream) const;
};

/// POST /v1/completions.
struct CompletionRequest {
  std::string model;
  /// A string, or an array of strings or token ids.
  nlohmann::json prompt = "";
  std::optional<std::int64_t> max_tokens;
  std::optional<double> temperature;
  std::optional<double> top_p;
  nlohmann::json extra = nlohmann::json::object();

  nlohmann::json body(bool stream) const;
};

struct Choice {
  int index = 0;
  /// message.content (chat) or text (completion); empty when null.
  std::string text;
  std::string role;
  /// Empty when the server sent null.
  std::string finish_reason;
};

/// The answer to a non-streamed chat or completion request.
struct CompletionResult {
  std::string id;
  std::string model;
  std::vector<Choice> choices;
  std::optional<Usage> usage;
  nlohmann::json raw;
  ResponseMeta meta;

  /// The first choice's text (empty when there is none).
  std::string const& text() const;
};

/// One chunk of a stream, as it arrives.
struct StreamChunk {
  std::string id;
  int index = 0;
  /// delta.content (chat) or text (completion) of the first choice.
  std::string delta;
  /// delta.role, when the chunk carries it.
  std::string role;
  std::string finish_reason;
  /// Usage, in the last chunk when include_usage was asked for.
  std::optional<Usage> usage;
  /// The chunk's JSON as sent; null when ClientOptions::chunk_json is off.
  nlohmann::json raw;
  /// When the chunk's bytes arrived.
  std::chrono::steady_clock::time_point arrived;
};

/// Called for every chunk, on the client's executor, in order. The chunk is
/// only valid during the call.
using ChunkCallback = std::function<void(StreamChunk const&)>;

/// What a stream added up to.
struct StreamResult {
  std::string id;
  std::string model;
  /// Deltas of the first choice joined.
  std::string text;
  std::string role;
  std::string finish_reason;
  std::optional<Usage> usage;
  std::size_t chunks = 0;
  /// Chunks whose delta was not empty.
  std::size_t content_chunks = 0;
  /// From sending the request to the first non-empty delta (zero if none).
  std::chrono::nanoseconds time_to_first_token{0};
  /// True when the server ended the stream with [DONE].
  bool done_marker = false;
  /// When the (last attempt's) request started to be written: the time
  /// between asking and this is spent in the client (pool, retries).
  std::chrono::steady_clock::time_point request_sent;
  ResponseMeta meta;
};

struct HealthResult {
  /// 200 from /health.
  bool ok() const { return meta.status == 200 && meta.message.empty(); }
  std::string body;
  ResponseMeta meta;
};

struct MetricsResult {
  std::string text;
  PrometheusText parsed;
  VllmGauges gauges;
  ResponseMeta meta;
};

/// Counters of the connection pool, for tests and the benchmark.
struct ClientStats {
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_closed = 0;
  std::uint64_t requests_sent = 0;
  /// Requests sent over a connection that had served an earlier one.
  std::uint64_t requests_reused = 0;
  std::uint64_t retries = 0;
  std::size_t open_connections = 0;
  std::size_t idle_connections = 0;
};

using ModelsSignature = void(std::error_code, ModelList);
using CompletionSignature = void(std::error_code, CompletionResult);
using StreamSignature = void(std::error_code, StreamResult);
using HealthSignature = void(std::error_code, HealthResult);
using MetricsSignature = void(std::error_code, MetricsResult);

namespace detail {
struct OpenAIClientImpl;
}

/// Copies share the connection pool. Operations may be started from any
/// thread; they run on a strand of the executor, handlers on their
/// associated executor. Per-operation cancellation (any type) stops the
/// request and closes its connection; the operation completes with
/// errc::cancelled. Errors: errc::http_error (status and server message in
/// meta), timed_out, tls_error, connection_refused, connection_lost,
/// name_resolution_failed, protocol_error.
class OpenAIClient {
public:
  using executor_type = asio::any_io_executor;

  /// Throws Error(invalid_argument) for a bad URL or proxy, and
  /// Error(local_file_error) for an unreadable ca_file.
  OpenAIClient(executor_type executor, ClientOptions options);

  executor_type get_executor() const;
  ClientOptions const& options() const;
  /// The proxy used for this server ("" when direct).
  std::string const& proxy_in_use() const;
  ClientStats stats() const;
  /// Close idle connections now.
  void close_idle();
  /// True on the client's strand (where the blocking wrappers would
  /// deadlock, and where chunk callbacks run).
  bool running_in_this_thread() const;

  /// GET /v1/models.
  template <class CompletionToken = asio::deferred_t>
  auto async_list_models(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, ModelsSignature>(
        [this](auto handler) { start_list_models(std::move(handler)); }, token);
  }

  /// POST /v1/chat/completions, not streamed.
  template <class CompletionToken = asio::deferred_t>
  auto async_chat(ChatRequest request, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, CompletionSignature>(
        [this](auto handler, ChatRequest r) { start_chat(std::move(r), std::move(handler)); }, token,
        std::move(request));
  }

  /// POST /v1/completions, not streamed.
  template <class CompletionToken = asio::deferred_t>
  auto async_complete(CompletionRequest request, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, CompletionSignature>(
        [this](auto handler, CompletionRequest r) { start_complete(std::move(r), std::move(handler)); }, token,
        std::move(request));
  }

  /// POST /v1/chat/completions with stream=true and usage in the last
  /// chunk; `on_chunk` sees every chunk as it arrives.
  template <class CompletionToken = asio::deferred_t>
  auto async_chat_stream(ChatRequest request, ChunkCallback on_chunk, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, StreamSignature>(
        [this](auto handler, ChatRequest r, ChunkCallback cb) {
          start_chat_stream(std::move(r), std::move(cb), std::move(handler));
        },
        token, std::move(request), std::move(on_chunk));
  }

  /// POST /v1/completions, streamed.
  template <class CompletionToken = asio::deferred_t>
  auto async_complete_stream(CompletionRequest request, ChunkCallback on_chunk, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, StreamSignature>(
        [this](auto handler, CompletionRequest r, ChunkCallback cb) {
          start_complete_stream(std::move(r), std::move(cb), std::move(handler));
        },
        token, std::move(request), std::move(on_chunk));
  }

  /// GET /health. A non-200 answer is a result (ok=false), not an error.
  template <class CompletionToken = asio::deferred_t>
  auto async_health(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, HealthSignature>(
        [this](auto handler) { start_health(std::move(handler)); }, token);
  }

  /// GET /metrics, parsed.
  template <class CompletionToken = asio::deferred_t>
  auto async_metrics(CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, MetricsSignature>(
        [this](auto handler) { start_metrics(std::move(handler)); }, token);
  }

private:
  void start_list_models(asio::any_completion_handler<ModelsSignature> handler);
  void start_chat(ChatRequest request, asio::any_completion_handler<CompletionSignature> handler);
  void start_complete(CompletionRequest request, asio::any_completion_handler<CompletionSignature> handler);
  void start_chat_stream(ChatRequest request, ChunkCallback on_chunk,
                         asio::any_completion_handler<StreamSignature> handler);
  void start_complete_stream(CompletionRequest request, ChunkCallback on_chunk,
                             asio::any_completion_handler<StreamSignature> handler);
  void start_health(asio::any_completion_handler<HealthSignature> handler);
  void start_metrics(asio::any_completion_handler<MetricsSignature> handler);

  std::shared_ptr<detail::OpenAIClientImpl> impl_;
};

/// Blocking wrappers (for scripts, tests, the Python binding): each throws
/// clusterkit::Error with the diagnostic when the operation fails. Never call
/// them on a thread that runs the client's executor.
ModelList list_models(OpenAIClient& client);
CompletionResult chat(OpenAIClient& client, ChatRequest request);
CompletionResult complete(OpenAIClient& client, CompletionRequest request);
StreamResult chat_stream(OpenAIClient& client, ChatRequest request, ChunkCallback on_chunk = {});
StreamResult complete_stream(OpenAIClient& client, CompletionRequest request, ChunkCallback on_chunk = {});
HealthResult health(OpenAIClient& client);
MetricsResult metrics(OpenAIClient& client);

/// Whether `host` (and `port`) matches a NO_PROXY-style list.
bool no_proxy_matches(std::string const& no_proxy, std::string const& host, int port);

}  // namespace clusterkit
