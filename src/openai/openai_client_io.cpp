// OpenAIClient over Boost.Beast.
//
// Layout of this file:
//   - URLs, NO_PROXY matching, small helpers
//   - Connection: one keep-alive HTTP/1.1 connection (TCP or TLS)
//   - OpenAIClientImpl: options, TLS context, the connection pool (on a strand)
//   - Call: one logical request with its retries; the attempt coroutine
//   - the typed operations and the blocking wrappers
//
// Every operation is a C++20 coroutine on the client's strand. Cancellation
// does not rely on each Beast operation supporting per-operation
// cancellation: the handler's slot flips the call's state on the strand and
// closes whatever the call is waiting on (socket, resolver or timer), so a
// cancelled stream always ends with its connection closed.
#include "clusterkit/openai_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <random>
#include <spdlog/spdlog.h>

#include "clusterkit/detail/openai_chunk.hpp"
#include "clusterkit/sse.hpp"
#include "core/text.hpp"
#include "core/completion.hpp"
#include "core/block_on.hpp"

namespace clusterkit {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using std::chrono::steady_clock;
using namespace std::chrono_literals;

using detail::lower;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxBodyBytes = 64u << 20;
constexpr std::size_t kReadChunk = 64u << 10;

// ---------------------------------------------------------------------------
// URLs

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets
  int port = 0;
  std::string path;    // "" or "/..."
  std::string userinfo;

  bool tls() const { return scheme == "https"; }
  std::string host_port() const {
    bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  std::string origin() const { return scheme + "://" + host_port(); }
};

std::optional<Url> parse_url(std::string_view text, std::string_view default_scheme, std::string& why) {
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    if (default_scheme.empty()) {
      why = "it has no scheme (write http://... or https://...)";
      return std::nullopt;
    }
    u.scheme = default_scheme;
  } else {
    u.scheme = lower(std::string(text.substr(0, sep)));
    text.remove_prefix(sep + 3);
  }
  if (u.scheme != "http" && u.scheme != "https") {
    why = "the scheme '" + u.scheme + "' is not http or https";
    return std::nullopt;
  }
  auto slash = text.find_first_of("/?#");
  auto authority = text.substr(0, slash);
  u.path = slash == std::string_view::npos ? std::string() : std::string(text.substr(slash));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    u.userinfo = std::string(authority.substr(0, at));
    authority.remove_prefix(at + 1);
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "an IPv6 address lacks its ']'";
      return std::nullopt;
    }
    u.host = std::string(authority.substr(1, close - 1));
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        why = "unexpected text after the IPv6 address";
        return std::nullopt;
      }
      port_text = rest.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) {
    why = "it names no host";
    return std::nullopt;
  }
  u.host = lower(u.host);
  u.port = u.tls() ? 443 : 80;
  if (!port_text.empty()) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || p < 1 || p > 65535) {
      why = "the port '" + std::string(port_text) + "' is not 1-65535";
      return std::nullopt;
    }
    u.port = p;
  }
  // Query strings and fragments have no place in a base URL.
  if (auto q = u.path.find_first_of("?#"); q != std::string::npos) u.path.resize(q);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  return u;
}

std::string env(char const* name) {
  char const* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string base64(std::string_view in) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
  }
  return out;
}

std::string ms_text(std::chrono::milliseconds ms) {
  if (ms.count() >= 1000 && ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
  return std::to_string(ms.count()) + " ms";
}

bool ipv4_in_cidr(std::string const& host, std::string_view cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string_view::npos) return false;
  boost::system::error_code e1, e2;
  auto addr = asio::ip::make_address_v4(host, e1);
  auto net = asio::ip::make_address_v4(std::string(cidr.substr(0, slash)), e2);
  if (e1 || e2) return false;
  int bits = 0;
  auto tail = cidr.substr(slash + 1);
  auto [ptr, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), bits);
  if (ec != std::errc() || bits < 0 || bits > 32) return false;
  std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t(0) << (32 - bits);
  return (addr.to_uint() & mask) == (net.to_uint() & mask);
}

}  // namespace

bool no_proxy_matches(std::string const& no_proxy, std::string const& host_in, int port) {
  std::string host = lower(host_in);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::size_t pos = 0;
  while (pos <= no_proxy.size()) {
    auto end = no_proxy.find_first_of(", ", pos);
    if (end == std::string::npos) end = no_proxy.size();
    std::string entry = lower(no_proxy.substr(pos, end - pos));
    pos = end + 1;
    if (entry.empty()) continue;
    if (entry == "*") return true;
    if (entry.find('/') != std::string::npos) {
      if (ipv4_in_cidr(host, entry)) return true;
      continue;
    }
    // host:port (but not a bare IPv6 address)
    int entry_port = 0;
    if (entry.front() == '[') {
      auto close = entry.find(']');
      if (close != std::string::npos) {
        if (close + 1 < entry.size() && entry[close + 1] == ':') entry_port = std::atoi(entry.c_str() + close + 2);
        entry = entry.substr(1, close - 1);
      }
    } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
      auto colon = entry.find(':');
      entry_port = std::atoi(entry.c_str() + colon + 1);
      entry.resize(colon);
    }
    if (entry_port != 0 && entry_port != port) continue;
    if (entry.rfind("*.", 0) == 0) entry.erase(0, 1);
    if (entry.front() == '.') entry.erase(0, 1);
    if (host == entry) return true;
    if (host.size() > entry.size() && host.compare(host.size() - entry.size(), entry.size(), entry) == 0 &&
        host[host.size() - entry.size() - 1] == '.')
      return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Request bodies

ChatRequest ChatRequest::simple(std::string model, std::string prompt, std::string system) {
  ChatRequest r;
  r.model = std::move(model);
  if (!system.empty()) r.messages.push_back({{"role", "system"}, {"content", std::move(system)}});
  r.messages.push_back({{"role", "user"}, {"content", std::move(prompt)}});
  return r;
}

namespace {

void add_common(nlohmann::json& j, std::optional<std::int64_t> max_tokens, std::optional<double> temperature,
                std::optional<double> top_p, nlohmann::json const& extra, bool stream) {
  if (max_tokens) j["max_tokens"] = *max_tokens;
  if (temperature) j["temperature"] = *temperature;
  if (top_p) j["top_p"] = *top_p;
  if (stream) {
    j["stream"] = true;
    j["stream_options"] = {{"include_usage", true}};
  }
  if (extra.is_object())
    for (auto const& [k, v] : extra.items()) j[k] = v;
}

}  // namespace

nlohmann::json ChatRequest::body(bool stream) const {
  nlohmann::json j = {{"model", model}, {"messages", messages}};
  add_common(j, max_tokens, temperature, top_p, extra, stream);
  return j;
}

nlohmann::json CompletionRequest::body(bool stream) const {
  nlohmann::json j = {{"model", model}, {"prompt", prompt}};
  add_common(j, max_tokens, temperature, top_p, extra, stream);
  return j;
}

std::string const& CompletionResult::text() const {
  static std::string const empty;
  return choices.empty() ? empty : choices.front().text;
}

// ---------------------------------------------------------------------------
// Response parsing

namespace {

std::string string_or_empty(nlohmann::json const& j, char const* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<Usage> parse_usage(nlohmann::json const& j) {
  auto it = j.find("usage");
  if (it == j.end() || !it->is_object()) return std::nullopt;
  Usage u;
  u.prompt_tokens = it->value("prompt_tokens", std::int64_t{0});
  u.completion_tokens = it->value("completion_tokens", std::int64_t{0});
  u.total_tokens = it->value("total_tokens", u.prompt_tokens + u.completion_tokens);
  return u;
}

CompletionResult parse_completion(nlohmann::json raw, bool chat) {
  CompletionResult r;
  r.id = string_or_empty(raw, "id");
  r.model = string_or_empty(raw, "model");
  r.usage = parse_usage(raw);
  if (auto it = raw.find("choices"); it != raw.end() && it->is_array()) {
    for (auto const& c : *it) {
      Choice choice;
      choice.index = c.value("index", 0);
      choice.finish_reason = string_or_empty(c, "finish_reason");
      if (chat) {
        if (auto m = c.find("message"); m != c.end() && m->is_object()) {
          choice.text = string_or_empty(*m, "content");
          choice.role = string_or_empty(*m, "role");
        }
      } else {
        choice.text = string_or_empty(c, "text");
      }
      r.choices.push_back(std::move(choice));
    }
  }
  r.raw = std::move(raw);
  return r;
}

// The server's own words from an error body: OpenAI's {"error": {"message"}},
// FastAPI's {"detail": ...}, {"message": ...}, or the text itself.
std::string server_message_raw(std::string const& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_object() && e->contains("message") && (*e)["message"].is_string())
        return (*e)["message"].get<std::string>();
      if (e->is_string()) return e->get<std::string>();
    }
    if (auto m = j.find("message"); m != j.end() && m->is_string()) return m->get<std::string>();
    if (auto d = j.find("detail"); d != j.end()) return d->is_string() ? d->get<std::string>() : d->dump();
  }
  std::string text = body.substr(0, 500);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

// The same, printable: it ends up on terminals (chat, bench, logs).
std::string server_message_from(std::string const& body) {
  return detail::without_control_characters(server_message_raw(body));
}

}  // namespace

// ---------------------------------------------------------------------------
// Connection

namespace detail {

struct Connection {
  explicit Connection(beast::tcp_stream s) : tcp(std::move(s)) {}

  std::optional<beast::tcp_stream> tcp;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::unique_ptr<char[]> body_chunk{new char[kReadChunk]};
  std::uint64_t served = 0;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *tcp; }
  void close() { lowest().close(); }

  // A keep-alive connection the server closed while it sat idle reads as
  // readable (EOF, or a TLS close_notify): do not send a request on it.
  bool looks_alive() {
    auto& s = lowest().socket();
    if (!s.is_open()) return false;
    char byte;
    auto n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
};

template <class F>
auto with_stream(Connection& c, F&& f) {
  if (c.tls) return f(*c.tls);
  return f(*c.tcp);
}

// ---------------------------------------------------------------------------
// The client's shared state

struct CallState {
  bool cancelled = false;
  bool finished = false;
  // What to close or cancel if the call is cancelled now (set around awaits).
  std::function<void()> cancel_current;
};

struct OpenAIClientImpl : std::enable_shared_from_this<OpenAIClientImpl> {
  OpenAIClientImpl(asio::any_io_executor ex, ClientOptions o)
      : executor(ex), strand(asio::make_strand(ex)), options(std::move(o)), rng(std::random_device{}()) {}

  asio::any_io_executor executor;
  asio::strand<asio::any_io_executor> strand;
  ClientOptions options;
  Url server;
  std::string api_prefix;   // "/v1" or "/prefix/v1"
  std::string root_prefix;  // "" or "/prefix"
  std::string host_header;
  std::string authorization;

  std::optional<Url> proxy;
  std::string proxy_text;  // for messages, without credentials
  std::string proxy_authorization;

  std::optional<ssl::context> tls_context;

  // Pool, on the strand.
  std::vector<std::unique_ptr<Connection>> idle;
  std::size_t open = 0;
  std::deque<asio::steady_timer*> waiters;
  std::optional<tcp::resolver::results_type> resolved;
  steady_clock::time_point resolved_at;
  std::minstd_rand rng;

  mutable std::mutex stats_mutex;
  ClientStats stats;

  template <class F>
  void count(F&& f) {
    std::lock_guard lock(stats_mutex);
    f(stats);
    stats.open_connections = open;
    stats.idle_connections = idle.size();
  }

  Url const& connect_target() const { return proxy ? *proxy : server; }

  std::string url_for(std::string const& target) const { return server.origin() + target; }

  void wake_one() {
    if (waiters.empty()) return;
    auto* t = waiters.front();
    waiters.pop_front();
    t->cancel();
  }

  void release(std::unique_ptr<Connection> c, bool reusable) {
    if (reusable && c->lowest().socket().is_open()) {
      ++c->served;
      idle.push_back(std::move(c));
    } else {
      c->close();
      --open;
      count([](ClientStats& s) { ++s.connections_closed; });
    }
    count([](ClientStats&) {});
    wake_one();
  }

  void close_idle_now() {
    for (auto& c : idle) {
      c->close();
      --open;
      count([](ClientStats& s) { ++s.connections_closed; });
    }
    idle.clear();
    count([](ClientStats&) {});
  }

  std::chrono::milliseconds backoff(int retry, std::optional<std::chrono::milliseconds> retry_after) {
    auto base = options.initial_backoff * (1LL << std::min(retry, 20));
    auto capped = std::min<std::chrono::milliseconds>(base, options.max_backoff);
    // Full jitter in [50%, 100%]: many clients retrying at once spread out.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(capped.count()) * jitter(rng)));
    if (retry_after) wait = std::max(wait, std::min(*retry_after, options.max_backoff));
    return wait;
  }
};

// Returns a connection to the pool, or closes it, when the attempt ends
// however it ends (an exception, a cancellation, the frame destroyed).
struct Lease {
  std::shared_ptr<OpenAIClientImpl> impl;
  std::unique_ptr<Connection> conn;
  bool reusable = false;
  bool reused = false;

  Lease() = default;
  Lease(Lease&&) = default;
  Lease& operator=(Lease&& other) {
    reset();
    impl = std::move(other.impl);
    conn = std::move(other.conn);
    reusable = other.reusable;
    reused = other.reused;
    return *this;
  }
  ~Lease() { reset(); }
  void reset() {
    if (conn && impl) impl->release(std::move(conn), reusable);
    conn.reset();
  }
};

}  // namespace detail

using detail::CallState;
using detail::Connection;
using detail::Lease;
using detail::OpenAIClientImpl;
using Impl = OpenAIClientImpl;
using ImplPtr = std::shared_ptr<OpenAIClientImpl>;

namespace {

// ---------------------------------------------------------------------------
// One logical request

struct Call {
  http::verb method = http::verb::get;
  std::string target;  // origin-form ("/v1/models")
  std::string body;
  bool stream = false;
  bool chat = false;
  bool accept_any_status = false;  // /health: a 503 is an answer
  ChunkCallback on_chunk;

  // Results
  int status = 0;
  std::string content_type;
  std::string response_body;
  StreamResult stream_result;
  bool delivered = false;  // a chunk reached the caller: never retry
  ResponseMeta meta;

  // Per attempt
  bool retryable = false;
  std::optional<std::chrono::milliseconds> retry_after;
  std::string what() const { return std::string(http::to_string(method)) + " "; }
};

std::error_code fail(Call& call, errc code, std::string diagnostic) {
  call.meta.message = detail::without_control_characters(diagnostic);
  return make_error_code(code);
}

std::string tls_failure_text(Connection& c, boost::system::error_code const& ec) {
  if (c.tls) {
    long verify = SSL_get_verify_result(c.tls->native_handle());
    if (verify != X509_V_OK) return X509_verify_cert_error_string(verify);
  }
  return ec.message();
}

}  // namespace

namespace {

template <class T>
using awaitable = asio::awaitable<T>;

std::error_code cancelled_error(Call& call, Impl const& impl) {
  return fail(call, errc::cancelled, call.what() + impl.url_for(call.target) + ": cancelled");
}

// ---------------------------------------------------------------------------
// Connecting

// Asio's resolver looks names up on a thread of its own, which Boost.Process
// stops around every fork (execution_context::notify_fork) and starts again
// only for the next lookup: a lookup queued just before a host's command
// starts would wait for good (seen: a health check started beside a Ray
// status never completed). While a lookup is pending, this starts a
// throwaway numeric one every 250 ms, which brings the thread back.
awaitable<void> keep_resolver_thread_running(asio::strand<asio::any_io_executor> strand, std::shared_ptr<bool> pending) {
  asio::steady_timer tick(strand);
  while (*pending) {
    tick.expires_after(250ms);
    co_await tick.async_wait(use_tuple);
    if (!*pending) break;
    auto kick = std::make_shared<tcp::resolver>(strand);
    kick->async_resolve("127.0.0.1", "0", tcp::resolver::numeric_host | tcp::resolver::numeric_service,
                        [kick](boost::system::error_code, tcp::resolver::results_type) {});
  }
}

awaitable<std::error_code> resolve(ImplPtr impl, CallState& st, Call& call, tcp::resolver::results_type& out) {
  if (impl->resolved && steady_clock::now() - impl->resolved_at < 60s) {
    out = *impl->resolved;
    co_return std::error_code{};
  }
  Url const& target = impl->connect_target();
  // An address needs no lookup (nor the resolver's thread).
  boost::system::error_code not_an_address;
  auto const address = asio::ip::make_address(target.host, not_an_address);
  if (!not_an_address) {
    out = tcp::resolver::results_type::create(tcp::endpoint(address, target.port), target.host, std::to_string(target.port));
    co_return std::error_code{};
  }
  tcp::resolver resolver(impl->strand);
  st.cancel_current = [&resolver] { resolver.cancel(); };
  auto pending = std::make_shared<bool>(true);
  asio::co_spawn(impl->strand, keep_resolver_thread_running(impl->strand, pending), asio::detached);
  auto [ec, results] = co_await resolver.async_resolve(target.host, std::to_string(target.port), use_tuple);
  *pending = false;
  st.cancel_current = nullptr;
  if (st.cancelled) co_return cancelled_error(call, *impl);
  if (ec)
    co_return fail(call, errc::name_resolution_failed,
                   "could not resolve " + (impl->proxy ? "the proxy " : std::string()) + target.host + ": " +
                       ec.message() + "; check the " + (impl->proxy ? "proxy setting" : "URL"));
  impl->resolved = results;
  impl->resolved_at = steady_clock::now();
  out = std::move(results);
  co_return std::error_code{};
}

awaitable<std::error_code> open_connection(ImplPtr impl, CallState& st, Call& call, std::unique_ptr<Connection>& out) {
  tcp::resolver::results_type endpoints;
  if (auto ec = co_await resolve(impl, st, call, endpoints)) co_return ec;
  auto const& o = impl->options;
  auto conn = std::make_unique<Connection>(beast::tcp_stream(impl->strand));
  auto arm = [&] {
    if (o.connect_timeout.count() > 0)
      conn->lowest().expires_after(o.connect_timeout);
    else
      conn->lowest().expires_never();
  };
  std::string const where = impl->connect_target().host_port() + (impl->proxy ? " (the proxy)" : "");
  arm();
  st.cancel_current = [c = conn.get()] { c->close(); };
  auto [cec, endpoint] = co_await conn->lowest().async_connect(endpoints, use_tuple);
  if (st.cancelled) co_return cancelled_error(call, *impl);
  if (cec) {
    st.cancel_current = nullptr;
    impl->resolved.reset();
    // Nothing was sent: retried like a reset before any answer, as the
    // openai package does (a server restarting refuses for a moment).
    call.retryable = true;
    if (cec == beast::error::timeout)
      co_return fail(call, errc::timed_out,
                     "could not connect to " + where + " within " + ms_text(o.connect_timeout) +
                         " (connect_timeout); is the address right and the port open?");
    if (cec == asio::error::connection_refused)
      co_return fail(call, errc::connection_refused,
                     where + " refused the connection: nothing listens on that port (is the server up yet?)");
    co_return fail(call, errc::host_unreachable, "could not connect to " + where + ": " + cec.message());
  }
  conn->lowest().socket().set_option(tcp::no_delay(true));
  impl->count([](ClientStats& s) { ++s.connections_opened; });

  if (impl->proxy && impl->server.tls()) {
    // A CONNECT tunnel: the proxy sees only the host and port, TLS runs end
    // to end through it.
    http::request<http::empty_body> req{http::verb::connect, impl->server.host_port(), 11};
    req.set(http::field::host, impl->server.host_port());
    req.set(http::field::user_agent, o.user_agent);
    if (!impl->proxy_authorization.empty()) req.set(http::field::proxy_authorization, impl->proxy_authorization);
    auto [wec, wn] = co_await http::async_write(*conn->tcp, req, use_tuple);
    http::response_parser<http::empty_body> p;
    p.skip(true);  // a 2xx answer to CONNECT has no body
    boost::system::error_code rec = wec;
    if (!rec) std::tie(rec, std::ignore) = co_await http::async_read(*conn->tcp, conn->buffer, p, use_tuple);
    if (st.cancelled) co_return cancelled_error(call, *impl);
    if (rec) {
      st.cancel_current = nullptr;
      co_return fail(call, rec == beast::error::timeout ? errc::timed_out : errc::connection_lost,
                     "the proxy " + impl->proxy_text + " did not open a tunnel to " + impl->server.host_port() + ": " +
                         (rec == beast::error::timeout ? "no answer within " + ms_text(o.connect_timeout) : rec.message()));
    }
    if (p.get().result_int() / 100 != 2) {
      st.cancel_current = nullptr;
      call.status = p.get().result_int();
      co_return fail(call, errc::http_error,
                     "the proxy " + impl->proxy_text + " refused to tunnel to " + impl->server.host_port() + ": " +
                         std::to_string(p.get().result_int()) + " " + std::string(p.get().reason()));
    }
  }

  if (impl->server.tls()) {
    conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*conn->tcp), *impl->tls_context);
    conn->tcp.reset();
    arm();
    SSL* ssl = conn->tls->native_handle();
    boost::system::error_code not_ip;
    asio::ip::make_address(impl->server.host, not_ip);
    if (not_ip) SSL_set_tlsext_host_name(ssl, impl->server.host.c_str());
    if (o.tls_verify) {
      if (not_ip)
        SSL_set1_host(ssl, impl->server.host.c_str());
      else
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), impl->server.host.c_str());
    }
    auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, use_tuple);
    if (st.cancelled) co_return cancelled_error(call, *impl);
    if (hec) {
      st.cancel_current = nullptr;
      std::string detail = hec == beast::error::timeout ? "no handshake within " + ms_text(o.connect_timeout)
                                                         : tls_failure_text(*conn, hec);
      std::string advice;
      if (SSL_get_verify_result(ssl) != X509_V_OK)
        advice = "; trust its CA with ca_file (--ca-file), or turn verification off with tls_verify=false "
                 "(--insecure) for a test server";
      co_return fail(call, hec == beast::error::timeout ? errc::timed_out : errc::tls_error,
                     "TLS with " + impl->server.host_port() + " failed: " + detail + advice);
    }
  }
  st.cancel_current = nullptr;
  conn->lowest().expires_never();
  out = std::move(conn);
  co_return std::error_code{};
}

// A connection for the next attempt: an idle one that is still up, a new one
// while the pool has room, else wait for one to come back.
awaitable<std::error_code> acquire(ImplPtr impl, CallState& st, Call& call, Lease& lease, bool fresh) {
  for (;;) {
    if (st.cancelled) co_return cancelled_error(call, *impl);
    while (!fresh && !impl->idle.empty()) {
      auto c = std::move(impl->idle.back());
      impl->idle.pop_back();
      if (c->looks_alive()) {
        lease.conn = std::move(c);
        lease.reused = true;
        impl->count([](ClientStats&) {});
        co_return std::error_code{};
      }
      c->close();
      --impl->open;
      impl->count([](ClientStats& s) { ++s.connections_closed; });
    }
    if (fresh && impl->open >= impl->options.pool_size && !impl->idle.empty()) {
      impl->idle.front()->close();
      impl->idle.erase(impl->idle.begin());
      --impl->open;
      impl->count([](ClientStats& s) { ++s.connections_closed; });
    }
    if (impl->open < impl->options.pool_size) {
      ++impl->open;
      std::unique_ptr<Connection> c;
      auto ec = co_await open_connection(impl, st, call, c);
      if (ec) {
        --impl->open;
        impl->wake_one();
        co_return ec;
      }
      lease.conn = std::move(c);
      lease.reused = false;
      impl->count([](ClientStats&) {});
      co_return std::error_code{};
    }
    asio::steady_timer wake(impl->strand, steady_clock::time_point::max());
    impl->waiters.push_back(&wake);
    st.cancel_current = [&wake] { wake.cancel(); };
    co_await wake.async_wait(use_tuple);
    st.cancel_current = nullptr;
    if (auto it = std::find(impl->waiters.begin(), impl->waiters.end(), &wake); it != impl->waiters.end())
      impl->waiters.erase(it);
    if (st.cancelled) {
      impl->wake_one();  // in case the wake-up meant for us is lost
      co_return cancelled_error(call, *impl);
    }
  }
}

// ---------------------------------------------------------------------------
// One exchange on one connection

bool is_stale_error(boost::system::error_code const& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}

struct Stale {
  bool value = false;
};

std::error_code transport_error(Impl const& impl, CallState& st, Call& call, Lease& lease,
                                boost::system::error_code const& ec, std::string_view stage, bool nothing_received,
                                steady_clock::time_point request_deadline, Stale& stale) {
  lease.reusable = false;
  if (st.cancelled) return cancelled_error(call, impl);
  auto const& o = impl.options;
  std::string what = call.what() + impl.url_for(call.target);
  if (ec == beast::error::timeout) {
    if (steady_clock::now() >= request_deadline)
      return fail(call, errc::timed_out,
                  what + ": no complete answer within " + ms_text(o.request_timeout) + " (request_timeout)");
    if (stage == "first token")
      return fail(call, errc::timed_out,
                  what + ": no first token within " + ms_text(o.first_token_timeout) + " (first_token_timeout)");
    if (stage == "next token")
      return fail(call, errc::timed_out,
                  what + ": no token for " + ms_text(o.inter_token_timeout) + " (inter_token_timeout)");
    return fail(call, errc::timed_out, what + ": timed out during " + std::string(stage));
  }
  stale.value = lease.reused && nothing_received && is_stale_error(ec);
  // Reset before any answer: the server may not have seen the request;
  // retrying is what every OpenAI client does.
  call.retryable = nothing_received && !call.delivered;
  return fail(call, errc::connection_lost,
              what + ": the connection dropped during " + std::string(stage) + " (" + ec.message() + ")");
}

// What a stream keeps from one event to the next: one chunk whose strings
// are reused, so that an event allocates nothing once they have grown.
struct StreamProgress {
  StreamChunk chunk;
  detail::ChunkExtras extras;
  bool first_token = false;
  steady_clock::time_point last_event;
};

std::error_code handle_event(Impl const& impl, CallState& st, Call& call, SseEventView const& e,
                             steady_clock::time_point now, steady_clock::time_point sent_at, StreamProgress& sp) {
  auto& sr = call.stream_result;
  if (e.is_done()) {
    sr.done_marker = true;
    return {};
  }
  StreamChunk& ch = sp.chunk;
  bool const want_model = sr.model.empty();
  bool const keep_json = impl.options.chunk_json;
  // The scanner reads the typed fields straight from the text; where it
  // declines (or the raw JSON is wanted anyway) nlohmann parses it.
  nlohmann::json j;
  if (keep_json || !detail::scan_stream_chunk(e.data, call.chat, want_model, ch, sp.extras)) {
    j = nlohmann::json::parse(e.data, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return fail(call, errc::protocol_error,
                  call.what() + impl.url_for(call.target) +
                      ": the stream carried an event that is not a JSON object: " +
                      std::string(e.data.substr(0, 200)));
    detail::stream_chunk_from_json(j, call.chat, want_model, ch, sp.extras);
  }
  if (sp.extras.error) {
    call.meta.server_message = server_message_from(std::string(e.data));
    return fail(call, errc::http_error,
                call.what() + impl.url_for(call.target) + ": the server reported an error mid-stream: " +
                    call.meta.server_message);
  }
  ch.arrived = now;
  if (sr.id.empty()) sr.id = ch.id;
  if (want_model) sr.model = sp.extras.model;
  ++sr.chunks;
  if (ch.index == 0) {
    sr.text += ch.delta;
    if (!ch.role.empty()) sr.role = ch.role;
    if (!ch.finish_reason.empty()) sr.finish_reason = ch.finish_reason;
  }
  if (ch.usage) sr.usage = ch.usage;
  if (!ch.delta.empty()) {
    ++sr.content_chunks;
    if (!sp.first_token) {
      sp.first_token = true;
      sr.time_to_first_token = now - sent_at;
    }
  }
  ch.raw = std::move(j);  // null unless chunk_json
  call.delivered = true;
  if (call.on_chunk) {
    try {
      call.on_chunk(ch);
    } catch (std::exception const& ex) {
      st.cancelled = true;
      return fail(call, errc::cancelled,
                  call.what() + impl.url_for(call.target) + ": stopped because the chunk callback threw: " + ex.what());
    } catch (...) {
      st.cancelled = true;
      return fail(call, errc::cancelled,
                  call.what() + impl.url_for(call.target) + ": stopped because the chunk callback threw");
    }
  }
  return {};
}

// A stream's deadlines (first token, gap between tokens, the whole request)
// kept by one timer armed lazily: an event moves the inter-token deadline
// later at no cost, and when the timer goes off before the deadline then in
// force it is set again for that one. Reads therefore carry no timer
// operations of their own. When a deadline passes, the socket is closed and
// the read in progress fails; `expired` tells that failure from others.
struct StreamWatch : std::enable_shared_from_this<StreamWatch> {
  explicit StreamWatch(asio::strand<asio::any_io_executor> const& strand) : timer(strand) {}

  asio::steady_timer timer;
  std::function<steady_clock::time_point()> deadline;  // the one in force now
  std::function<void()> on_expiry;
  bool active = true;
  bool expired = false;
  std::uint64_t generation = 0;
  steady_clock::time_point armed_for = steady_clock::time_point::max();

  // After the deadline may have moved earlier (the start, the first token).
  void arm() {
    auto const d = deadline();
    if (d == armed_for) return;
    set(d);
  }

  void stop() {
    active = false;
    if (armed_for != steady_clock::time_point::max()) timer.cancel();
  }

private:
  void set(steady_clock::time_point d) {
    armed_for = d;
    ++generation;
    if (d == steady_clock::time_point::max()) {
      timer.cancel();
      return;
    }
    timer.expires_at(d);
    timer.async_wait([self = shared_from_this(), g = generation](boost::system::error_code ec) {
      if (ec || !self->active || g != self->generation) return;
      auto const d = self->deadline();
      if (steady_clock::now() >= d) {
        self->expired = true;
        self->active = false;
        self->on_expiry();
      } else {
        self->set(d);
      }
    });
  }
};

// Reads directly from the socket (or the TLS stream) into the connection's
// buffer, at most 64 KiB at a time.
awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(Connection& c) {
  auto buffers = c.buffer.prepare(kReadChunk);
  if (c.tls) co_return co_await c.tls->async_read_some(buffers, use_tuple);
  co_return co_await c.tcp->socket().async_read_some(buffers, use_tuple);
}

// The body of a 2xx streamed answer. Beast's parser is used without its I/O:
// put() takes whatever arrived, eagerly, every HTTP chunk of a read in one
// call, and the SSE events it completes are handled as views into the body
// bytes. One read is one system call and one completion.
awaitable<std::error_code> read_stream(ImplPtr impl, CallState& st, Call& call, Lease& lease,
                                       http::response_parser<http::buffer_body>& p, steady_clock::time_point sent_at,
                                       steady_clock::time_point request_deadline,
                                       steady_clock::time_point first_token_deadline, Stale& stale) {
  Connection& c = *lease.conn;
  auto const& o = impl->options;
  auto const never = steady_clock::time_point::max();
  SseParser sse;
  StreamProgress sp;
  sp.last_event = sent_at;
  auto watch = std::make_shared<StreamWatch>(impl->strand);
  watch->deadline = [&] {
    auto phase = !sp.first_token                    ? first_token_deadline
                 : o.inter_token_timeout.count() > 0 ? sp.last_event + o.inter_token_timeout
                                                     : never;
    return std::min(request_deadline, phase);
  };
  watch->on_expiry = [&c] { c.close(); };
  struct StopWatch {
    StreamWatch& w;
    ~StopWatch() { w.stop(); }
  } stop_watch{*watch};
  c.lowest().expires_never();
  watch->arm();
  p.eager(true);

  std::error_code failure;
  auto now = steady_clock::now();
  auto on_event = [&](SseEventView const& e) {
    if (failure || st.cancelled) return;  // the stream is being abandoned
    sp.last_event = now;
    failure = handle_event(*impl, st, call, e, now, sent_at, sp);
  };
  for (;;) {
    while (c.buffer.size() != 0 && !p.is_done()) {
      p.get().body().data = c.body_chunk.get();
      p.get().body().size = kReadChunk;
      boost::system::error_code pec;
      std::size_t const used = p.put(c.buffer.data(), pec);
      c.buffer.consume(used);
      std::size_t const got = kReadChunk - p.get().body().size;
      if (got != 0) {
        bool const had_first = sp.first_token;
        if (!sse.feed(std::string_view(c.body_chunk.get(), got), on_event)) {
          lease.reusable = false;
          co_return fail(call, errc::protocol_error,
                         call.what() + impl->url_for(call.target) + ": a stream event is larger than 16 MiB");
        }
        if (failure) {
          lease.reusable = false;
          co_return failure;
        }
        if (st.cancelled) {
          lease.reusable = false;
          co_return cancelled_error(call, *impl);
        }
        if (!had_first && sp.first_token) watch->arm();
      }
      if (pec == http::error::need_more) break;
      if (pec && pec != http::error::need_buffer) {
        lease.reusable = false;
        co_return fail(call, errc::protocol_error,
                       call.what() + impl->url_for(call.target) + ": the stream's HTTP framing is broken (" +
                           pec.message() + ")");
      }
      if (used == 0 && got == 0) break;
    }
    if (p.is_done()) break;
    auto [rec, n] = co_await read_some(c);
    c.buffer.commit(n);
    now = steady_clock::now();
    if (watch->expired) rec = beast::error::timeout;
    if (rec == asio::error::eof && p.need_eof()) {
      boost::system::error_code eec;
      p.put_eof(eec);
      if (!eec) break;
    }
    if (rec) {
      char const* stage = sp.first_token ? "next token" : "first token";
      co_return transport_error(*impl, st, call, lease, rec, stage, false, request_deadline, stale);
    }
  }
  co_return std::error_code{};
}

awaitable<std::error_code> exchange(ImplPtr impl, CallState& st, Call& call, Lease& lease, Stale& stale) {
  Connection& c = *lease.conn;
  auto const& o = impl->options;
  bool const via_proxy_plain = impl->proxy && !impl->server.tls();
  http::request<http::string_body> req{call.method, via_proxy_plain ? impl->url_for(call.target) : call.target, 11};
  req.set(http::field::host, impl->host_header);
  req.set(http::field::user_agent, o.user_agent);
  req.set(http::field::accept, call.stream ? "text/event-stream" : "application/json");
  if (!impl->authorization.empty()) req.set(http::field::authorization, impl->authorization);
  if (via_proxy_plain && !impl->proxy_authorization.empty())
    req.set(http::field::proxy_authorization, impl->proxy_authorization);
  for (auto const& [k, v] : o.headers) req.set(k, v);
  if (call.method == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = call.body;
  }
  req.prepare_payload();

  auto const never = steady_clock::time_point::max();
  auto const sent_at = steady_clock::now();
  auto const request_deadline = o.request_timeout.count() > 0 ? sent_at + o.request_timeout : never;
  auto arm = [&](steady_clock::time_point phase) {
    auto d = std::min(request_deadline, phase);
    if (d == never)
      c.lowest().expires_never();
    else
      c.lowest().expires_at(d);
  };
  bool const reused = lease.reused;
  impl->count([reused](ClientStats& s) {
    ++s.requests_sent;
    if (reused) ++s.requests_reused;
  });
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("{} {}{}{}", std::string(http::to_string(call.method)), impl->url_for(call.target),
                  call.stream ? " (stream)" : "", reused ? " [reused connection]" : "");

  arm(never);
  st.cancel_current = [&c] { c.close(); };
  call.stream_result.request_sent = sent_at;
  auto [wec, wn] = co_await detail::with_stream(c, [&](auto& s) { return http::async_write(s, req, use_tuple); });
  if (wec) co_return transport_error(*impl, st, call, lease, wec, "sending the request", true, request_deadline, stale);

  http::response_parser<http::buffer_body> p;
  p.body_limit(boost::none);
  p.header_limit(64 * 1024);
  auto const first_token_deadline =
      call.stream && o.first_token_timeout.count() > 0 ? sent_at + o.first_token_timeout : never;
  arm(first_token_deadline);
  auto [hec, hn] =
      co_await detail::with_stream(c, [&](auto& s) { return http::async_read_header(s, c.buffer, p, use_tuple); });
  if (hec)
    co_return transport_error(*impl, st, call, lease, hec, call.stream ? "first token" : "reading the answer",
                              !p.got_some(), request_deadline, stale);

  auto const& head = p.get();
  call.status = head.result_int();
  call.content_type = std::string(head[http::field::content_type]);
  if (auto ra = head[http::field::retry_after]; !ra.empty()) {
    int seconds = 0;
    auto [ptr, ec] = std::from_chars(ra.data(), ra.data() + ra.size(), seconds);
    if (ec == std::errc() && seconds >= 0) call.retry_after = std::chrono::milliseconds(seconds * 1000LL);
  }
  bool const ok_status = call.status / 100 == 2 || call.accept_any_status;
  bool const streaming = call.stream && ok_status;
  call.response_body.clear();
  if (streaming) {
    if (auto ec = co_await read_stream(impl, st, call, lease, p, sent_at, request_deadline, first_token_deadline, stale))
      co_return ec;
  }
  while (!p.is_done()) {
    p.get().body().data = c.body_chunk.get();
    p.get().body().size = kReadChunk;
    arm(never);
    auto [rec, rn] =
        co_await detail::with_stream(c, [&](auto& s) { return http::async_read_some(s, c.buffer, p, use_tuple); });
    if (rec == http::error::need_buffer) rec = {};
    if (rec)
      co_return transport_error(*impl, st, call, lease, rec, "reading the answer", false, request_deadline, stale);
    std::size_t const got = kReadChunk - p.get().body().size;
    call.response_body.append(c.body_chunk.get(), got);
    if (call.response_body.size() > kMaxBodyBytes) {
      lease.reusable = false;
      co_return fail(call, errc::protocol_error,
                     call.what() + impl->url_for(call.target) + ": the answer is larger than 64 MiB");
    }
  }
  st.cancel_current = nullptr;
  lease.reusable = p.get().keep_alive();

  if (!ok_status) {
    call.meta.server_message = server_message_from(call.response_body);
    int const s = call.status;
    call.retryable = s == 429 || s == 502 || s == 503 || s == 504;
    co_return fail(call, errc::http_error,
                   call.what() + impl->url_for(call.target) + ": the server answered " + std::to_string(s) + " " +
                       std::string(head.reason()) +
                       (call.meta.server_message.empty() ? std::string() : ": " + call.meta.server_message));
  }
  if (streaming) {
    if (call.stream_result.chunks == 0 && !call.stream_result.done_marker) {
      // Some servers ignore "stream": true and answer with one JSON body.
      co_return fail(call, errc::protocol_error,
                     call.what() + impl->url_for(call.target) + ": the stream ended without a single event (" +
                         (call.content_type.empty() ? "no content type" : call.content_type) + ")");
    }
  }
  co_return std::error_code{};
}

awaitable<std::error_code> attempt(ImplPtr impl, CallState& st, Call& call) {
  call.retryable = false;
  call.retry_after.reset();
  call.status = 0;
  call.response_body.clear();
  bool fresh = false;
  for (int stale_retries = 0;; ++stale_retries) {
    Lease lease;
    lease.impl = impl;
    if (auto ec = co_await acquire(impl, st, call, lease, fresh)) co_return ec;
    Stale stale;
    auto ec = co_await exchange(impl, st, call, lease, stale);
    if (ec && stale.value && stale_retries < 2 && !st.cancelled) {
      // The server closed a kept-alive connection as we reused it; that is
      // not the request's fault and costs no retry.
      spdlog::debug("{}: kept-alive connection was closed by the server; reconnecting", impl->server.host_port());
      fresh = true;
      continue;
    }
    co_return ec;
  }
}

awaitable<std::error_code> perform(ImplPtr impl, std::shared_ptr<CallState> st, Call& call) {
  auto const start = steady_clock::now();
  std::error_code ec;
  for (int retry = 0;; ++retry) {
    ++call.meta.attempts;
    ec = co_await attempt(impl, *st, call);
    if (!ec || st->cancelled || call.delivered || !call.retryable || retry >= impl->options.max_retries) break;
    auto wait = impl->backoff(retry, call.retry_after);
    spdlog::debug("{}; retrying in {} ms", call.meta.message, wait.count());
    impl->count([](ClientStats& s) { ++s.retries; });
    asio::steady_timer timer(impl->strand, wait);
    st->cancel_current = [&timer] { timer.cancel(); };
    co_await timer.async_wait(use_tuple);
    st->cancel_current = nullptr;
    if (st->cancelled) {
      ec = cancelled_error(call, *impl);
      break;
    }
  }
  call.meta.duration = steady_clock::now() - start;
  call.meta.status = call.status;
  if (ec && call.meta.attempts > 1 && ec != make_error_code(errc::cancelled))
    call.meta.message += " (after " + std::to_string(call.meta.attempts) + " attempts)";
  co_return ec;
}

// ---------------------------------------------------------------------------
// Typed operations

template <class Result>
using Outcome = std::pair<std::error_code, Result>;

awaitable<Outcome<ModelList>> run_models(ImplPtr impl, std::shared_ptr<CallState> st);

// A 404 to a request that names a model is most often a name the server
// does not serve (a hub id where vLLM serves --served-model-name, or the
// other way round). The server's own message says only "does not exist";
// ask it what it serves and name the nearest, so the fix is in the error.
awaitable<void> name_served_models(ImplPtr impl, std::shared_ptr<CallState> st, Call& call) {
  if (call.status != 404 || st->cancelled) co_return;
  auto const request = nlohmann::json::parse(call.body, nullptr, false);
  if (!request.is_object()) co_return;
  auto const model = request.find("model");
  if (model == request.end() || !model->is_string()) co_return;
  auto [ec, served] = co_await run_models(impl, st);
  if (ec) co_return;  // the 404 stands as the server said it
  std::vector<std::string> names;
  std::string listed;
  for (auto const& m : served.models) {
    names.push_back(m.id);
    listed += (listed.empty() ? "" : ", ") + detail::without_control_characters(m.id);
  }
  auto const asked = model->get<std::string>();
  if (std::find(names.begin(), names.end(), asked) != names.end()) co_return;  // served: the 404 means something else
  call.meta.message += "; " + impl->server.origin() + " serves " + (names.empty() ? std::string("no model") : listed);
  if (auto near = detail::suggest_model_name(asked, names))
    call.meta.message += "; did you mean '" + detail::without_control_characters(*near) + "'?";
}

awaitable<Outcome<CompletionResult>> run_completion(ImplPtr impl, std::shared_ptr<CallState> st, std::string body,
                                                    bool chat) {
  Call call;
  call.method = http::verb::post;
  call.target = impl->api_prefix + (chat ? "/chat/completions" : "/completions");
  call.body = std::move(body);
  call.chat = chat;
  auto ec = co_await perform(impl, st, call);
  if (ec == make_error_code(errc::http_error)) co_await name_served_models(impl, st, call);
  CompletionResult r;
  if (!ec) {
    auto j = nlohmann::json::parse(call.response_body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      ec = fail(call, errc::protocol_error,
                "POST " + impl->url_for(call.target) + ": the answer is not a JSON object: " +
                    call.response_body.substr(0, 200));
    else
      r = parse_completion(std::move(j), chat);
  }
  r.meta = std::move(call.meta);
  co_return Outcome<CompletionResult>{ec, std::move(r)};
}

awaitable<Outcome<StreamResult>> run_stream(ImplPtr impl, std::shared_ptr<CallState> st, std::string body, bool chat,
                                            ChunkCallback on_chunk) {
  Call call;
  call.method = http::verb::post;
  call.target = impl->api_prefix + (chat ? "/chat/completions" : "/completions");
  call.body = std::move(body);
  call.chat = chat;
  call.stream = true;
  call.on_chunk = std::move(on_chunk);
  auto ec = co_await perform(impl, st, call);
  if (ec == make_error_code(errc::http_error)) co_await name_served_models(impl, st, call);
  StreamResult r = std::move(call.stream_result);
  r.meta = std::move(call.meta);
  co_return Outcome<StreamResult>{ec, std::move(r)};
}

awaitable<Outcome<ModelList>> run_models(ImplPtr impl, std::shared_ptr<CallState> st) {
  Call call;
  call.target = impl->api_prefix + "/models";
  auto ec = co_await perform(impl, st, call);
  ModelList r;
  if (!ec) {
    auto j = nlohmann::json::parse(call.response_body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array()) {
      ec = fail(call, errc::protocol_error,
                "GET " + impl->url_for(call.target) + ": the answer is not a model list: " +
                    call.response_body.substr(0, 200));
    } else {
      for (auto const& m : j["data"]) {
        ModelInfo info;
        info.id = string_or_empty(m, "id");
        info.owned_by = string_or_empty(m, "owned_by");
        if (auto c = m.find("created"); c != m.end() && c->is_number()) info.created = c->get<std::int64_t>();
        if (auto l = m.find("max_model_len"); l != m.end() && l->is_number()) info.max_model_len = l->get<std::int64_t>();
        info.raw = m;
        r.models.push_back(std::move(info));
      }
      r.raw = std::move(j);
    }
  }
  r.meta = std::move(call.meta);
  co_return Outcome<ModelList>{ec, std::move(r)};
}

awaitable<Outcome<HealthResult>> run_health(ImplPtr impl, std::shared_ptr<CallState> st) {
  Call call;
  call.target = impl->root_prefix + "/health";
  call.accept_any_status = true;
  auto ec = co_await perform(impl, st, call);
  HealthResult r;
  r.body = std::move(call.response_body);
  r.meta = std::move(call.meta);
  co_return Outcome<HealthResult>{ec, std::move(r)};
}

awaitable<Outcome<MetricsResult>> run_metrics(ImplPtr impl, std::shared_ptr<CallState> st) {
  Call call;
  call.target = impl->root_prefix + "/metrics";
  auto ec = co_await perform(impl, st, call);
  MetricsResult r;
  if (!ec) {
    r.text = std::move(call.response_body);
    r.parsed = parse_prometheus_text(r.text);
    r.gauges = vllm_gauges(r.parsed);
  }
  r.meta = std::move(call.meta);
  co_return Outcome<MetricsResult>{ec, std::move(r)};
}

// Starts `make(st)` on the strand with cancellation wired to the handler's
// slot, and completes the handler on its associated executor.
template <class Result, class Signature, class Make>
void launch(ImplPtr const& impl, asio::any_completion_handler<Signature> handler, Make&& make) {
  auto st = std::make_shared<CallState>();
  auto slot = asio::get_associated_cancellation_slot(handler);
  if (slot.is_connected()) {
    slot.assign([st, strand = impl->strand](asio::cancellation_type) {
      asio::dispatch(strand, [st] {
        if (st->finished || st->cancelled) return;
        st->cancelled = true;
        if (st->cancel_current) st->cancel_current();
      });
    });
  }
  asio::co_spawn(impl->strand, make(st),
                 [impl, st, slot, h = std::move(handler)](std::exception_ptr ep, Outcome<Result> outcome) mutable {
                   st->finished = true;
                   if (slot.is_connected()) slot.clear();
                   if (ep) {
                     outcome.first = make_error_code(errc::protocol_error);
                     try {
                       std::rethrow_exception(ep);
                     } catch (std::exception const& e) {
                       outcome.second.meta.message = std::string("request failed: ") + e.what();
                     } catch (...) {
                       outcome.second.meta.message = "request failed with an unknown exception";
                     }
                   }
                   detail::complete_on_associated(std::move(h), impl->executor, outcome.first,
                                                  std::move(outcome.second));
                 });
}

}  // namespace

// ---------------------------------------------------------------------------
// OpenAIClient

OpenAIClient::OpenAIClient(executor_type executor, ClientOptions options)
    : impl_(std::make_shared<detail::OpenAIClientImpl>(std::move(executor), std::move(options))) {
  auto& i = *impl_;
  auto& o = i.options;
  std::string why;
  auto url = parse_url(o.base_url, "", why);
  if (!url) throw Error(make_error_code(errc::invalid_argument), "the base URL '" + o.base_url + "' is not usable: " + why);
  if (!url->userinfo.empty())
    throw Error(make_error_code(errc::invalid_argument),
                "the base URL carries credentials; pass the API key as api_key instead");
  i.server = *url;
  auto const& path = i.server.path;
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, "/v1") == 0) {
    i.api_prefix = path;
    i.root_prefix = path.substr(0, path.size() - 3);
  } else {
    i.api_prefix = path + "/v1";
    i.root_prefix = path;
  }
  bool const default_port = i.server.port == (i.server.tls() ? 443 : 80);
  bool const v6 = i.server.host.find(':') != std::string::npos;
  i.host_header = (v6 ? "[" + i.server.host + "]" : i.server.host) + (default_port ? "" : ":" + std::to_string(i.server.port));
  if (o.api_key.find_first_of("\r\n") != std::string::npos)
    throw Error(make_error_code(errc::invalid_argument), "the API key contains a line break");
  if (!o.api_key.empty()) i.authorization = "Bearer " + o.api_key;
  if (o.pool_size == 0) o.pool_size = 1;

  std::string proxy = o.proxy;
  std::string no_proxy = o.no_proxy;
  if (o.proxy_from_environment) {
    auto first = [](std::initializer_list<char const*> names) {
      for (auto const* n : names)
        if (auto v = env(n); !v.empty()) return v;
      return std::string();
    };
    if (proxy.empty())
      proxy = i.server.tls() ? first({"https_proxy", "HTTPS_PROXY"}) : first({"http_proxy", "HTTP_PROXY"});
    if (proxy.empty()) proxy = first({"all_proxy", "ALL_PROXY"});
    no_proxy += "," + first({"no_proxy", "NO_PROXY"});
  }
  if (!proxy.empty() && !no_proxy_matches(no_proxy, i.server.host, i.server.port)) {
    auto purl = parse_url(proxy, "http", why);
    if (!purl) throw Error(make_error_code(errc::invalid_argument), "the proxy URL is not usable: " + why);
    if (purl->tls())
      throw Error(make_error_code(errc::invalid_argument),
                  "https:// proxies are not supported; use an http:// proxy (TLS to the server still runs end to end "
                  "through its CONNECT tunnel)");
    if (!purl->userinfo.empty()) i.proxy_authorization = "Basic " + base64(purl->userinfo);
    i.proxy_text = purl->origin();
    i.proxy = *purl;
  }

  if (i.server.tls()) {
    i.tls_context.emplace(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(i.tls_context->native_handle(), TLS1_2_VERSION);
    if (o.tls_verify) {
      boost::system::error_code ec;
      i.tls_context->set_default_verify_paths(ec);
      if (!o.ca_file.empty()) {
        if (!std::ifstream(o.ca_file))
          throw Error(make_error_code(errc::local_file_error), "cannot read the CA file " + o.ca_file);
        i.tls_context->load_verify_file(o.ca_file, ec);
        if (ec)
          throw Error(make_error_code(errc::local_file_error),
                      "the CA file " + o.ca_file + " holds no usable PEM certificate: " + ec.message());
      }
      i.tls_context->set_verify_mode(ssl::verify_peer);
    } else {
      i.tls_context->set_verify_mode(ssl::verify_none);
    }
  }
}

OpenAIClient::executor_type OpenAIClient::get_executor() const { return impl_->executor; }
ClientOptions const& OpenAIClient::options() const { return impl_->options; }
std::string const& OpenAIClient::proxy_in_use() const { return impl_->proxy_text; }
bool OpenAIClient::running_in_this_thread() const { return impl_->strand.running_in_this_thread(); }

ClientStats OpenAIClient::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

void OpenAIClient::close_idle() {
  asio::dispatch(impl_->strand, [impl = impl_] { impl->close_idle_now(); });
}

void OpenAIClient::start_list_models(asio::any_completion_handler<ModelsSignature> handler) {
  launch<ModelList>(impl_, std::move(handler), [impl = impl_](auto st) { return run_models(impl, st); });
}

namespace {
/// A request's JSON text. Invalid UTF-8 in a prompt (a byte \377 read from a
/// file) becomes U+FFFD instead of an exception that would end the call, or
/// a whole benchmark, with nlohmann's message.
std::string request_text(nlohmann::json const& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

void OpenAIClient::start_chat(ChatRequest request, asio::any_completion_handler<CompletionSignature> handler) {
  launch<CompletionResult>(impl_, std::move(handler), [impl = impl_, body = request_text(request.body(false))](auto st) {
    return run_completion(impl, st, body, true);
  });
}

void OpenAIClient::start_complete(CompletionRequest request, asio::any_completion_handler<CompletionSignature> handler) {
  launch<CompletionResult>(impl_, std::move(handler), [impl = impl_, body = request_text(request.body(false))](auto st) {
    return run_completion(impl, st, body, false);
  });
}

void OpenAIClient::start_chat_stream(ChatRequest request, ChunkCallback on_chunk,
                                     asio::any_completion_handler<StreamSignature> handler) {
  launch<StreamResult>(impl_, std::move(handler),
                       [impl = impl_, body = request_text(request.body(true)), &on_chunk](auto st) {
                         return run_stream(impl, st, body, true, std::move(on_chunk));
                       });
}

void OpenAIClient::start_complete_stream(CompletionRequest request, ChunkCallback on_chunk,
                                         asio::any_completion_handler<StreamSignature> handler) {
  launch<StreamResult>(impl_, std::move(handler),
                       [impl = impl_, body = request_text(request.body(true)), &on_chunk](auto st) {
                         return run_stream(impl, st, body, false, std::move(on_chunk));
                       });
}

void OpenAIClient::start_health(asio::any_completion_handler<HealthSignature> handler) {
  launch<HealthResult>(impl_, std::move(handler), [impl = impl_](auto st) { return run_health(impl, st); });
}

void OpenAIClient::start_metrics(asio::any_completion_handler<MetricsSignature> handler) {
  launch<MetricsResult>(impl_, std::move(handler), [impl = impl_](auto st) { return run_metrics(impl, st); });
}

// ---------------------------------------------------------------------------
// Blocking wrappers

namespace {

template <class Result, class Start>
Result wait_for(OpenAIClient& client, Start&& start) {
  if (client.running_in_this_thread())
    throw Error(make_error_code(errc::invalid_argument),
                "a blocking OpenAIClient call was made on the client's own strand; use the async_ form there");
  auto [ec, result] = detail::block_on<std::error_code, Result>(client.get_executor(), "a blocking OpenAIClient call",
                                                                std::forward<Start>(start));
  if (ec) throw Error(ec, result.meta.message.empty() ? ec.message() : result.meta.message);
  return std::move(result);
}

}  // namespace

ModelList list_models(OpenAIClient& client) {
  return wait_for<ModelList>(client, [&](auto cb) { client.async_list_models(std::move(cb)); });
}

CompletionResult chat(OpenAIClient& client, ChatRequest request) {
  return wait_for<CompletionResult>(client, [&](auto cb) { client.async_chat(std::move(request), std::move(cb)); });
}

CompletionResult complete(OpenAIClient& client, CompletionRequest request) {
  return wait_for<CompletionResult>(client, [&](auto cb) { client.async_complete(std::move(request), std::move(cb)); });
}

StreamResult chat_stream(OpenAIClient& client, ChatRequest request, ChunkCallback on_chunk) {
  return wait_for<StreamResult>(client, [&](auto cb) {
    client.async_chat_stream(std::move(request), std::move(on_chunk), std::move(cb));
  });
}

StreamResult complete_stream(OpenAIClient& client, CompletionRequest request, ChunkCallback on_chunk) {
  return wait_for<StreamResult>(client, [&](auto cb) {
    client.async_complete_stream(std::move(request), std::move(on_chunk), std::move(cb));
  });
}

HealthResult health(OpenAIClient& client) {
  return wait_for<HealthResult>(client, [&](auto cb) { client.async_health(std::move(cb)); });
}

MetricsResult metrics(OpenAIClient& client) {
  return wait_for<MetricsResult>(client, [&](auto cb) { client.async_metrics(std::move(cb)); });
}

}  // namespace clusterkit
