// OpenAIClient for Python: blocking calls that release the GIL (Ctrl-C
// cancels the request and closes its connection), streams as iterators,
// start_* forms with completion callbacks for the asyncio layer in
// python/clusterkit/__init__.py, the result types with their raw JSON as
// Python dicts, and OpenAIError (a clusterkit.Error with the HTTP status and
// the server's message).
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include <cctype>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>

#include <pybind11/eval.h>

#include "clusterkit/bench.hpp"
#include "clusterkit/openai_client.hpp"
#include "json_support.hpp"
#include "support.hpp"

namespace ckpy {
namespace {

// ---------------------------------------------------------------------------
// JSON <-> Python

nlohmann::json from_python(py::handle value, char const* what) {
  if (value.is_none()) return nullptr;
  auto text = py::module_::import("json").attr("dumps")(value).cast<std::string>();
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw py::value_error(std::string(what) + " is not JSON-serialisable");
  return j;
}

std::chrono::milliseconds optional_ms(py::object const& seconds, char const* what) {
  if (seconds.is_none()) return std::chrono::milliseconds(0);
  double s = number_of(seconds, what);
  if (s < 0) throw py::value_error(std::string(what) + " must be >= 0 seconds (or None)");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(s * 1000)));
}

ck::ClientOptions make_options(std::string base_url, py::object api_key, bool tls_verify, py::object ca_file,
                               py::object proxy, py::object no_proxy, bool proxy_from_environment,
                               py::object connect_timeout, py::object first_token_timeout,
                               py::object inter_token_timeout, py::object request_timeout, int max_retries,
                               double initial_backoff, double max_backoff, std::size_t pool_size,
                               std::map<std::string, std::string> headers) {
  ck::ClientOptions o;
  o.base_url = std::move(base_url);
  if (!api_key.is_none()) o.api_key = api_key.cast<std::string>();
  o.tls_verify = tls_verify;
  if (!ca_file.is_none()) o.ca_file = path_string(ca_file);
  if (!proxy.is_none()) o.proxy = proxy.cast<std::string>();
  if (!no_proxy.is_none()) o.no_proxy = no_proxy.cast<std::string>();
  o.proxy_from_environment = proxy_from_environment;
  o.connect_timeout = optional_ms(connect_timeout, "connect_timeout");
  o.first_token_timeout = optional_ms(first_token_timeout, "first_token_timeout");
  o.inter_token_timeout = optional_ms(inter_token_timeout, "inter_token_timeout");
  o.request_timeout = optional_ms(request_timeout, "request_timeout");
  if (max_retries < 0) throw py::value_error("max_retries must be >= 0");
  o.max_retries = max_retries;
  o.initial_backoff = optional_ms(py::float_(initial_backoff), "initial_backoff");
  o.max_backoff = optional_ms(py::float_(max_backoff), "max_backoff");
  if (pool_size < 1) throw py::value_error("pool_size must be >= 1");
  o.pool_size = pool_size;
  o.headers = std::move(headers);
  return o;
}

// ---------------------------------------------------------------------------
// Requests

ck::ChatRequest make_chat(std::string model, py::object const& messages, py::object const& prompt,
                          py::object const& system, py::object const& max_tokens, py::object const& temperature,
                          py::object const& top_p, py::object const& extra) {
  ck::ChatRequest r;
  if (!messages.is_none() && !prompt.is_none()) throw py::type_error("pass messages or prompt, not both");
  if (!messages.is_none()) {
    r = ck::ChatRequest{};
    r.messages = from_python(messages, "messages");
    if (!r.messages.is_array()) throw py::type_error("messages must be a list of dicts");
  } else if (!prompt.is_none()) {
    r = ck::ChatRequest::simple("", prompt.cast<std::string>(), system.is_none() ? "" : system.cast<std::string>());
  } else {
    throw py::type_error("chat needs messages=[...] or prompt='...'");
  }
  r.model = std::move(model);
  if (!max_tokens.is_none()) r.max_tokens = integer_of(max_tokens, "max_tokens");
  if (!temperature.is_none()) r.temperature = number_of(temperature, "temperature");
  if (!top_p.is_none()) r.top_p = number_of(top_p, "top_p");
  if (!extra.is_none()) {
    r.extra = from_python(extra, "extra");
    if (!r.extra.is_object()) throw py::type_error("extra must be a dict");
  }
  return r;
}

ck::CompletionRequest make_completion(std::string model, py::object const& prompt, py::object const& max_tokens,
                                      py::object const& temperature, py::object const& top_p,
                                      py::object const& extra) {
  ck::CompletionRequest r;
  r.model = std::move(model);
  r.prompt = from_python(prompt, "prompt");
  if (!max_tokens.is_none()) r.max_tokens = integer_of(max_tokens, "max_tokens");
  if (!temperature.is_none()) r.temperature = number_of(temperature, "temperature");
  if (!top_p.is_none()) r.top_p = number_of(top_p, "top_p");
  if (!extra.is_none()) {
    r.extra = from_python(extra, "extra");
    if (!r.extra.is_object()) throw py::type_error("extra must be a dict");
  }
  return r;
}

// ---------------------------------------------------------------------------
// Errors: clusterkit.OpenAIError, a clusterkit.Error with the HTTP status,
// the server's message and the call's ResponseMeta.

py::object& openai_error_factory() {
  static auto* type = new py::object;  // leaked: outlives interpreter teardown order
  return *type;
}

void define_openai_error(py::module_& m) {
  py::dict ns;
  ns["__builtins__"] = py::module_::import("builtins");
  ns["__name__"] = "clusterkit";
  ns["Error"] = m.attr("Error");
  ns["_OSErrorMixin"] = m.attr("_OSErrorMixin");
  py::exec(R"PY(
class OpenAIError(Error):
    """An OpenAIClient call failed (a clusterkit.Error: ``except clusterkit.Error`` catches it).

    ``code`` says why ("http_error", "timed_out", "connection_refused",
    "connection_lost", "tls_error", "protocol_error", "cancelled", ...);
    ``status`` is the HTTP status of the last attempt (0 when no answer came);
    ``server_message`` the server's own message (error.message of its JSON
    body); ``meta`` the call's ResponseMeta (attempts, duration), or None.
    The API key never appears in any of them.
    """

    def __init__(self, message, code="http_error", result=None, status=0, server_message="", meta=None):
        Error.__init__(self, message, code, result)
        self.status = status
        self.server_message = server_message
        self.meta = meta

    def __reduce__(self):
        return (type(self), (self.message, self.code, None, self.status, self.server_message))

    def __repr__(self):
        return "clusterkit.%s(%r, code=%r, status=%r)" % (type(self).__name__, self.message, self.code, self.status)


class OpenAITimeoutError(_OSErrorMixin, OpenAIError, __builtins__.TimeoutError):
    """The server did not answer in time (code "timed_out"): also a built-in TimeoutError, as
    ``asyncio.wait_for`` raises for the same thing."""


class OpenAIConnectionError(_OSErrorMixin, OpenAIError, __builtins__.ConnectionError):
    """The server could not be reached, or the connection dropped (codes connection_refused,
    host_unreachable, name_resolution_failed, connection_lost, tls_error): also a built-in
    ConnectionError."""


_CLASSES = {
    "timed_out": OpenAITimeoutError,
    "connection_refused": OpenAIConnectionError,
    "host_unreachable": OpenAIConnectionError,
    "name_resolution_failed": OpenAIConnectionError,
    "connection_lost": OpenAIConnectionError,
    "tls_error": OpenAIConnectionError,
}


def _openai_error_for(message, code, result, status, server_message, meta):
    return _CLASSES.get(code, OpenAIError)(message, code, result, status, server_message, meta)
)PY",
           ns);
  openai_error_factory() = ns["_openai_error_for"];
  m.attr("OpenAIError") = ns["OpenAIError"];
  m.attr("OpenAITimeoutError") = ns["OpenAITimeoutError"];
  m.attr("OpenAIConnectionError") = ns["OpenAIConnectionError"];
}

py::object make_openai_error(std::error_code ec, ck::ResponseMeta const& meta) {
  return openai_error_factory()(meta.message.empty() ? ec.message() : meta.message, error_code_name(ec),
                             py::none(), meta.status, meta.server_message, py::cast(meta));
}

[[noreturn]] void raise_openai_error(std::error_code ec, ck::ResponseMeta const& meta) {
  raise_instance(make_openai_error(ec, meta));
}

// A client made before os.fork() runs on the parent's I/O thread, which the
// child does not have: every call would hang.
void check_client_runtime(ck::OpenAIClient const& client) {
  auto& theirs = asio::query(client.get_executor(), asio::execution::context);
  auto& ours = asio::query(runtime().executor(), asio::execution::context);
  if (&theirs != &ours)
    raise_error(ck::errc::invalid_argument,
                "this OpenAIClient was created before the process forked, and its I/O thread stayed with the "
                "parent; create a new OpenAIClient in this process");
}

// ---------------------------------------------------------------------------
// Blocking calls and their start_* forms

template <class Value, class Initiate>
Value call_blocking(ck::OpenAIClient& client, Initiate&& initiate) {
  refuse_blocking_on_runtime_thread("OpenAIClient");
  check_client_runtime(client);
  auto op = Operation::create(runtime().executor());
  auto promise = std::make_shared<std::promise<std::pair<std::error_code, Value>>>();
  auto future = promise->get_future();
  initiate(asio::bind_cancellation_slot(op->slot(), [op, promise](std::error_code ec, Value v) {
    op->mark_finished();
    promise->set_value({ec, std::move(v)});
  }));
  auto [ec, value] = wait_for(*op, future);
  if (ec) raise_openai_error(ec, value.meta);
  return std::move(value);
}

/// Starts `initiate(handler)`; done(Value | OpenAIError) is called on the I/O
/// thread when it ends. The returned Operation cancels it.
template <class Value, class Initiate>
std::shared_ptr<Operation> call_started(ck::OpenAIClient& client, py::object done, Initiate&& initiate) {
  check_client_runtime(client);
  auto op = Operation::create(runtime().executor());
  initiate(asio::bind_cancellation_slot(op->slot(), [op, d = share(std::move(done))](std::error_code ec, Value v) {
    deliver(*op, d, [&]() -> py::object {
      if (ec) return make_openai_error(ec, v.meta);
      return py::cast(std::move(v));
    });
  }));
  return op;
}

// ---------------------------------------------------------------------------
// Streams: a blocking iterator, and (with `notify`) the non-blocking side the
// asyncio layer polls.

struct StreamState {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<ck::StreamChunk> chunks;
  bool finished = false;
  std::error_code ec;
  ck::StreamResult result;
  /// Called (GIL taken, I/O thread) when a chunk lands in an empty queue and
  /// when the stream ends; dropped after the end.
  SharedObject notify;
};

void call_notify(SharedObject const& notify) {
  if (!notify || interpreter_exiting()) return;
  py::gil_scoped_acquire gil;
  try {
    (*notify)();
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("clusterkit: OpenAIClient stream notify callback");
  }
}

class Stream {
public:
  template <class Start>
  static std::shared_ptr<Stream> start(ck::OpenAIClient& client, py::object notify, Start&& start_op) {
    check_client_runtime(client);
    auto s = std::shared_ptr<Stream>(new Stream);
    auto state = s->state_;
    if (!notify.is_none()) state->notify = share(std::move(notify));
    s->op_ = Operation::create(runtime().executor());
    auto on_chunk = [state](ck::StreamChunk const& c) {
      SharedObject notify;
      {
        std::lock_guard lock(state->mutex);
        // Only on the first chunk of a batch: the reader drains the queue
        // before it waits again, so the GIL is not taken for every token.
        if (state->chunks.empty()) notify = state->notify;
        state->chunks.push_back(c);
      }
      state->ready.notify_one();
      // Never with the mutex held: the Python thread takes it with the GIL.
      call_notify(notify);
    };
    start_op(std::move(on_chunk),
             asio::bind_cancellation_slot(s->op_->slot(), [state, op = s->op_](std::error_code ec, ck::StreamResult r) {
               op->mark_finished();
               SharedObject notify;
               {
                 std::lock_guard lock(state->mutex);
                 state->ec = ec;
                 state->result = std::move(r);
                 state->finished = true;
                 notify = std::move(state->notify);
               }
               state->ready.notify_one();
               call_notify(notify);
             }));
    return s;
  }

  ~Stream() {
    // Dropped before its end (a `break` out of the loop): stop it.
    if (op_ && !op_->finished()) op_->cancel(asio::cancellation_type::terminal);
  }

  /// Blocking: the next chunk, waiting with the GIL released (Ctrl-C cancels).
  py::object next() {
    using namespace std::chrono_literals;
    for (;;) {
      {
        py::gil_scoped_release nogil;
        std::unique_lock lock(state_->mutex);
        state_->ready.wait_for(lock, 100ms, [&] { return !state_->chunks.empty() || state_->finished; });
      }
      if (auto c = next_ready(); !c.is_none()) return c;
      if (PyErr_CheckSignals() != 0) {
        py::error_already_set interrupt;
        cancel();
        throw interrupt;
      }
    }
  }

  /// Non-blocking: the next chunk if one arrived, else None; at the end the
  /// stream's error (once), then StopIteration.
  py::object next_ready() {
    std::error_code ec;
    ck::ResponseMeta meta;
    {
      std::lock_guard lock(state_->mutex);
      if (!state_->chunks.empty()) {
        auto c = std::move(state_->chunks.front());
        state_->chunks.pop_front();
        return py::cast(std::move(c));
      }
      if (!state_->finished) return py::none();
      ec = state_->ec;
      meta = state_->result.meta;
    }
    if (ec && !reported_) {
      reported_ = true;
      raise_openai_error(ec, meta);
    }
    throw py::stop_iteration();
  }

  void cancel() {
    if (op_) op_->cancel(asio::cancellation_type::terminal);
  }

  /// The request has ended (its connection released or closed); chunks may
  /// still be waiting to be read.
  bool done() {
    std::lock_guard lock(state_->mutex);
    return state_->finished;
  }

  /// The stream's summary once it ended (None before).
  py::object result() {
    std::lock_guard lock(state_->mutex);
    if (!state_->finished) return py::none();
    return py::cast(state_->result);
  }

  /// Drain the rest, then return the summary (raises the stream's error).
  ck::StreamResult collect() {
    try {
      for (;;) next();
    } catch (py::stop_iteration const&) {
    }
    std::lock_guard lock(state_->mutex);
    return state_->result;
  }

private:
  Stream() = default;
  std::shared_ptr<StreamState> state_ = std::make_shared<StreamState>();
  std::shared_ptr<Operation> op_;
  bool reported_ = false;
};

double seconds_of(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

py::object usage_or_none(std::optional<ck::Usage> const& u) { return u ? py::cast(*u) : py::none(); }

// A header a pickle must not carry: Authorization and the like.
bool looks_like_credential(std::string name) {
  for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (char const* word : {"auth", "cookie", "key", "token", "secret", "password"})
    if (name.find(word) != std::string::npos) return true;
  return false;
}

// Pickled state (results travel to other processes: multiprocessing, Ray
// tasks). JSON travels as its text; optionals as None.
std::string json_state(nlohmann::json const& j) {
  return j.is_null() ? std::string() : j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
nlohmann::json json_from_state(py::handle h) {
  auto text = h.cast<std::string>();
  return text.empty() ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
}
std::optional<ck::Usage> usage_from_state(py::handle h) {
  if (h.is_none()) return std::nullopt;
  return h.cast<ck::Usage>();
}
py::tuple state_of(py::tuple const& t, std::size_t size, char const* what) {
  if (t.size() != size) throw py::value_error(std::string("not a pickled ") + what);
  return t;
}

std::string quoted(std::string const& s) { return py::repr(py::str(s)).cast<std::string>(); }

std::string usage_repr(std::optional<ck::Usage> const& u) {
  if (!u) return "None";
  return "Usage(prompt_tokens=" + std::to_string(u->prompt_tokens) +
         ", completion_tokens=" + std::to_string(u->completion_tokens) +
         ", total_tokens=" + std::to_string(u->total_tokens) + ")";
}

/// At most `n` characters of `s`, with an ellipsis when cut.
std::string shortened(std::string const& s, std::size_t n = 60) {
  if (s.size() <= n) return quoted(s);
  std::size_t cut = n;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return quoted(s.substr(0, cut)) + "...";
}

}  // namespace

void register_openai(py::module_& m) {
  define_openai_error(m);

  py::class_<ck::Usage>(m, "Usage", "Token counts the server reported.")
      .def(py::pickle([](ck::Usage const& u) { return py::make_tuple(u.prompt_tokens, u.completion_tokens, u.total_tokens); },
                      [](py::tuple const& t) {
                        state_of(t, 3, "Usage");
                        return ck::Usage{t[0].cast<std::int64_t>(), t[1].cast<std::int64_t>(), t[2].cast<std::int64_t>()};
                      }))
      .def_readonly("prompt_tokens", &ck::Usage::prompt_tokens)
      .def_readonly("completion_tokens", &ck::Usage::completion_tokens)
      .def_readonly("total_tokens", &ck::Usage::total_tokens)
      .def("__repr__", [](ck::Usage const& u) { return usage_repr(u); });

  py::class_<ck::ResponseMeta>(m, "ResponseMeta", "HTTP status, attempts, the server's message and timing.")
      .def(py::pickle(
          [](ck::ResponseMeta const& x) {
            return py::make_tuple(x.status, x.attempts, x.server_message, x.message, x.duration.count());
          },
          [](py::tuple const& t) {
            state_of(t, 5, "ResponseMeta");
            ck::ResponseMeta x;
            x.status = t[0].cast<int>();
            x.attempts = t[1].cast<int>();
            x.server_message = t[2].cast<std::string>();
            x.message = t[3].cast<std::string>();
            x.duration = std::chrono::nanoseconds(t[4].cast<std::int64_t>());
            return x;
          }))
      .def_readonly("status", &ck::ResponseMeta::status, "HTTP status of the last attempt; 0 when no answer came.")
      .def_readonly("attempts", &ck::ResponseMeta::attempts, "1 + retries.")
      .def_readonly("server_message", &ck::ResponseMeta::server_message,
                    "On an HTTP error: the server's own message.")
      .def_readonly("message", &ck::ResponseMeta::message,
                    "On error: what failed, against which server, and what to do.")
      .def_property_readonly(
          "duration", [](ck::ResponseMeta const& x) { return seconds_of(x.duration); }, "Seconds.")
      .def("__repr__", [](ck::ResponseMeta const& x) {
        return "ResponseMeta(status=" + std::to_string(x.status) + ", attempts=" + std::to_string(x.attempts) +
               ", duration=" + std::to_string(seconds_of(x.duration)) + ")";
      });

  py::class_<ck::ModelInfo>(m, "ModelInfo", "One entry of /v1/models.")
      .def(py::pickle(
          [](ck::ModelInfo const& x) {
            return py::make_tuple(x.id, x.owned_by, x.created, x.max_model_len, json_state(x.raw));
          },
          [](py::tuple const& t) {
            state_of(t, 5, "ModelInfo");
            return ck::ModelInfo{t[0].cast<std::string>(), t[1].cast<std::string>(), t[2].cast<std::int64_t>(),
                                 t[3].cast<std::optional<std::int64_t>>(), json_from_state(t[4])};
          }))
      .def_readonly("id", &ck::ModelInfo::id)
      .def_readonly("owned_by", &ck::ModelInfo::owned_by)
      .def_readonly("created", &ck::ModelInfo::created)
      .def_readonly("max_model_len", &ck::ModelInfo::max_model_len, "vLLM's context length; None when not sent.")
      .def_property_readonly(
          "raw", [](ck::ModelInfo const& x) { return json_to_python(x.raw); }, "The entry's JSON as sent.")
      .def("__repr__", [](ck::ModelInfo const& x) { return "ModelInfo(id=" + quoted(x.id) + ")"; });

  py::class_<ck::ModelList>(m, "ModelList", "The answer of /v1/models.")
      .def(py::pickle([](ck::ModelList const& x) { return py::make_tuple(x.models, json_state(x.raw), x.meta); },
                      [](py::tuple const& t) {
                        state_of(t, 3, "ModelList");
                        return ck::ModelList{t[0].cast<std::vector<ck::ModelInfo>>(), json_from_state(t[1]),
                                             t[2].cast<ck::ResponseMeta>()};
                      }))
      .def_readonly("models", &ck::ModelList::models)
      .def_property_readonly(
          "raw", [](ck::ModelList const& x) { return json_to_python(x.raw); }, "The JSON as sent.")
      .def_readonly("meta", &ck::ModelList::meta)
      .def(
          "ids",
          [](ck::ModelList const& x) {
            std::vector<std::string> ids;
            for (auto const& mi : x.models) ids.push_back(mi.id);
            return ids;
          },
          "The model ids, in the server's order.")
      .def("__len__", [](ck::ModelList const& x) { return x.models.size(); })
      .def(
          "__iter__", [](ck::ModelList const& x) { return py::make_iterator(x.models.begin(), x.models.end()); },
          py::keep_alive<0, 1>())
      .def("__repr__", [](ck::ModelList const& x) {
        std::string s = "ModelList([";
        for (std::size_t i = 0; i < x.models.size(); ++i) s += (i ? ", " : "") + quoted(x.models[i].id);
        return s + "])";
      });

  py::class_<ck::Choice>(m, "Choice")
      .def(py::pickle([](ck::Choice const& x) { return py::make_tuple(x.index, x.text, x.role, x.finish_reason); },
                      [](py::tuple const& t) {
                        state_of(t, 4, "Choice");
                        return ck::Choice{t[0].cast<int>(), t[1].cast<std::string>(), t[2].cast<std::string>(),
                                          t[3].cast<std::string>()};
                      }))
      .def_readonly("index", &ck::Choice::index)
      .def_readonly("text", &ck::Choice::text, "message.content (chat) or text (completion); '' when null.")
      .def_readonly("role", &ck::Choice::role)
      .def_readonly("finish_reason", &ck::Choice::finish_reason, "'' when the server sent null.")
      .def("__repr__", [](ck::Choice const& x) {
        return "Choice(index=" + std::to_string(x.index) + ", text=" + shortened(x.text) +
               ", finish_reason=" + quoted(x.finish_reason) + ")";
      });

  py::class_<ck::CompletionResult>(m, "CompletionResult", "A whole (non-streamed) answer.")
      .def(py::pickle(
          [](ck::CompletionResult const& x) {
            return py::make_tuple(x.id, x.model, x.choices, usage_or_none(x.usage), json_state(x.raw), x.meta);
          },
          [](py::tuple const& t) {
            state_of(t, 6, "CompletionResult");
            return ck::CompletionResult{t[0].cast<std::string>(), t[1].cast<std::string>(),
                                        t[2].cast<std::vector<ck::Choice>>(), usage_from_state(t[3]),
                                        json_from_state(t[4]), t[5].cast<ck::ResponseMeta>()};
          }))
      .def_readonly("id", &ck::CompletionResult::id)
      .def_readonly("model", &ck::CompletionResult::model)
      .def_readonly("choices", &ck::CompletionResult::choices)
      .def_property_readonly("usage", [](ck::CompletionResult const& x) { return usage_or_none(x.usage); })
      .def_property_readonly(
          "text", [](ck::CompletionResult const& x) { return x.text(); }, "The first choice's text.")
      .def_property_readonly(
          "raw", [](ck::CompletionResult const& x) { return json_to_python(x.raw); },
          "The answer's JSON as sent (fields clusterkit does not type included).")
      .def_readonly("meta", &ck::CompletionResult::meta)
      .def("__repr__", [](ck::CompletionResult const& x) {
        return "CompletionResult(text=" + shortened(x.text()) + ", usage=" + usage_repr(x.usage) + ")";
      });

  py::class_<ck::StreamChunk>(m, "StreamChunk", "One chunk of a stream, as it arrived.")
      .def_readonly("id", &ck::StreamChunk::id)
      .def_readonly("index", &ck::StreamChunk::index)
      .def_readonly("delta", &ck::StreamChunk::delta, "delta.content (chat) or text (completion) of the first choice.")
      .def_readonly("role", &ck::StreamChunk::role)
      .def_readonly("finish_reason", &ck::StreamChunk::finish_reason)
      .def_property_readonly(
          "usage", [](ck::StreamChunk const& x) { return usage_or_none(x.usage); },
          "Usage, in the last chunk (stream_options.include_usage, on unless extra turns it off).")
      .def_property_readonly(
          "raw", [](ck::StreamChunk const& x) { return json_to_python(x.raw); },
          "The chunk's JSON as sent; None when the client was made with chunk_json=False.")
      .def("__repr__", [](ck::StreamChunk const& x) {
        std::string s = "StreamChunk(delta=" + quoted(x.delta);
        if (!x.role.empty()) s += ", role=" + quoted(x.role);
        if (!x.finish_reason.empty()) s += ", finish_reason=" + quoted(x.finish_reason);
        if (x.usage) s += ", usage=" + usage_repr(x.usage);
        return s + ")";
      });

  py::class_<ck::StreamResult>(m, "StreamResult", "What a stream added up to.")
      .def(py::pickle(
          // request_sent (a steady-clock instant) means nothing in another
          // process: it is not pickled.
          [](ck::StreamResult const& x) {
            return py::make_tuple(x.id, x.model, x.text, x.role, x.finish_reason, usage_or_none(x.usage), x.chunks,
                                  x.content_chunks, x.time_to_first_token.count(), x.done_marker, x.meta);
          },
          [](py::tuple const& t) {
            state_of(t, 11, "StreamResult");
            ck::StreamResult x;
            x.id = t[0].cast<std::string>();
            x.model = t[1].cast<std::string>();
            x.text = t[2].cast<std::string>();
            x.role = t[3].cast<std::string>();
            x.finish_reason = t[4].cast<std::string>();
            x.usage = usage_from_state(t[5]);
            x.chunks = t[6].cast<std::size_t>();
            x.content_chunks = t[7].cast<std::size_t>();
            x.time_to_first_token = std::chrono::nanoseconds(t[8].cast<std::int64_t>());
            x.done_marker = t[9].cast<bool>();
            x.meta = t[10].cast<ck::ResponseMeta>();
            return x;
          }))
      .def_readonly("id", &ck::StreamResult::id)
      .def_readonly("model", &ck::StreamResult::model)
      .def_readonly("text", &ck::StreamResult::text, "The first choice's deltas joined.")
      .def_readonly("role", &ck::StreamResult::role)
      .def_readonly("finish_reason", &ck::StreamResult::finish_reason)
      .def_property_readonly("usage", [](ck::StreamResult const& x) { return usage_or_none(x.usage); })
      .def_readonly("chunks", &ck::StreamResult::chunks)
      .def_readonly("content_chunks", &ck::StreamResult::content_chunks, "Chunks whose delta was not empty.")
      .def_property_readonly(
          "time_to_first_token", [](ck::StreamResult const& x) { return seconds_of(x.time_to_first_token); },
          "Seconds from sending the request to the first non-empty delta (0 if none).")
      .def_readonly("done_marker", &ck::StreamResult::done_marker, "The server ended the stream with [DONE].")
      .def_readonly("meta", &ck::StreamResult::meta)
      .def("__repr__", [](ck::StreamResult const& x) {
        return "StreamResult(text=" + shortened(x.text) + ", chunks=" + std::to_string(x.chunks) +
               ", finish_reason=" + quoted(x.finish_reason) + ", usage=" + usage_repr(x.usage) + ")";
      });

  py::class_<ck::HealthResult>(m, "HealthResult", "GET /health: a non-200 answer is ok=False, not an error.")
      .def(py::pickle([](ck::HealthResult const& x) { return py::make_tuple(x.body, x.meta); },
                      [](py::tuple const& t) {
                        state_of(t, 2, "HealthResult");
                        return ck::HealthResult{t[0].cast<std::string>(), t[1].cast<ck::ResponseMeta>()};
                      }))
      .def_property_readonly("ok", &ck::HealthResult::ok)
      .def_readonly("body", &ck::HealthResult::body)
      .def_readonly("meta", &ck::HealthResult::meta)
      .def("__bool__", [](ck::HealthResult const& x) { return x.ok(); })
      .def("__repr__", [](ck::HealthResult const& x) {
        return std::string("HealthResult(ok=") + (x.ok() ? "True" : "False") +
               ", status=" + std::to_string(x.meta.status) + ")";
      });

  py::class_<ck::VllmGauges>(m, "VllmGauges", "What a person watches on a vLLM server; None when not exported.")
      .def_readonly("requests_running", &ck::VllmGauges::requests_running)
      .def_readonly("requests_waiting", &ck::VllmGauges::requests_waiting)
      .def_readonly("kv_cache_usage", &ck::VllmGauges::kv_cache_usage, "0..1")
      .def_readonly("kv_cache_metric", &ck::VllmGauges::kv_cache_metric, "The metric kv_cache_usage came from.")
      .def_readonly("requests_swapped", &ck::VllmGauges::requests_swapped)
      .def_readonly("prompt_tokens_total", &ck::VllmGauges::prompt_tokens_total)
      .def_readonly("generation_tokens_total", &ck::VllmGauges::generation_tokens_total)
      .def_readonly("preemptions_total", &ck::VllmGauges::preemptions_total)
      .def_readonly("models", &ck::VllmGauges::models, "Model names seen in the model_name label.")
      .def("__repr__", [](ck::VllmGauges const& g) {
        auto num = [](std::optional<double> const& v) {
          if (!v) return std::string("None");
          char b[32];
          std::snprintf(b, sizeof b, "%g", *v);
          return std::string(b);
        };
        return "VllmGauges(requests_running=" + num(g.requests_running) + ", requests_waiting=" + num(g.requests_waiting) +
               ", kv_cache_usage=" + num(g.kv_cache_usage) + ")";
      });

  py::class_<ck::MetricsResult>(m, "MetricsResult", "GET /metrics, parsed.")
      .def_readonly("text", &ck::MetricsResult::text)
      .def_readonly("gauges", &ck::MetricsResult::gauges)
      .def_readonly("meta", &ck::MetricsResult::meta)
      .def(
          "samples",
          [](ck::MetricsResult const& x, py::object const& name) {
            py::list out;
            for (auto const& s : x.parsed.samples) {
              if (!name.is_none() && s.name != name.cast<std::string>()) continue;
              py::dict labels;
              for (auto const& [k, v] : s.labels) labels[py::str(k)] = py::str(v);
              out.append(py::make_tuple(s.name, labels, s.value));
            }
            return out;
          },
          py::arg("name") = py::none(), "(name, labels, value) for every sample, or those named `name`.")
      .def(
          "value", [](ck::MetricsResult const& x, std::string const& name) { return x.parsed.sum(name); },
          py::arg("name"), "The sum over every series of `name` (None when absent).")
      .def("__repr__", [](ck::MetricsResult const& x) {
        auto num = [](std::optional<double> const& v) { return v ? py::repr(py::float_(*v)).cast<std::string>() : "None"; };
        return "MetricsResult(requests_running=" + num(x.gauges.requests_running) +
               ", requests_waiting=" + num(x.gauges.requests_waiting) +
               ", kv_cache_usage=" + num(x.gauges.kv_cache_usage) + ")";
      });

  py::class_<Stream, std::shared_ptr<Stream>>(
      m, "ChatStream",
      "Chunks of a streamed chat or completion, as they arrive. Iterate it (the GIL is released while "
      "waiting; Ctrl-C cancels); `result` holds the StreamResult once it ended. Leaving a `with` block, "
      "cancel(), or dropping it before the end stops the request and closes its connection.")
      .def("__iter__", [](std::shared_ptr<Stream> s) { return s; })
      .def("__next__", &Stream::next)
      .def("next_ready", &Stream::next_ready,
           "The next chunk if one has arrived, else None, without waiting; at the end the stream's error "
           "(OpenAIError, once), then StopIteration.")
      .def("done", &Stream::done, "True once the request has ended (chunks may still be unread).")
      .def("__repr__", [](Stream& s) { return std::string("ChatStream(") + (s.done() ? "ended" : "streaming") + ")"; })
      .def("cancel", &Stream::cancel, "Stop the stream (its connection is closed); any thread.")
      .def_property_readonly("result", &Stream::result, "The StreamResult once the stream ended, else None.")
      .def("collect", &Stream::collect, "Read to the end and return the StreamResult (raises OpenAIError).")
      .def("__enter__", [](std::shared_ptr<Stream> s) { return s; })
      .def("__exit__", [](Stream& s, py::args) {
        s.cancel();
        return false;
      });

  auto chat_args = [](auto&&... tail) {
    return std::make_tuple(py::arg("model"), py::arg("messages") = py::none(), py::kw_only(),
                           py::arg("prompt") = py::none(), py::arg("system") = py::none(),
                           py::arg("max_tokens") = py::none(), py::arg("temperature") = py::none(),
                           py::arg("top_p") = py::none(), py::arg("extra") = py::none(), tail...);
  };
  auto completion_args = [](auto&&... tail) {
    return std::make_tuple(py::arg("model"), py::arg("prompt"), py::kw_only(), py::arg("max_tokens") = py::none(),
                           py::arg("temperature") = py::none(), py::arg("top_p") = py::none(),
                           py::arg("extra") = py::none(), tail...);
  };
  // def(name, fn, (args...), doc) with the arguments as a tuple.
  auto def_with = [](auto& cls, char const* name, auto fn, auto args, char const* doc) {
    std::apply([&](auto&&... a) { cls.def(name, fn, a..., doc); }, args);
  };

  using C = ck::OpenAIClient;
  py::class_<C> client(m, "OpenAIClient",
                       "An OpenAI-compatible client (vLLM): keep-alive connection pool, TLS verified by default, "
                       "proxies from the environment, retries on 429/503 with backoff. Blocking calls release "
                       "the GIL and Ctrl-C cancels them; start_* forms complete on a callback (the asyncio "
                       "layer uses them). The API key (api_key=, else $OPENAI_API_KEY) is sent as a bearer "
                       "token and never appears in repr(), messages or logs. Durations are seconds.");
  client
      .def(py::init([](std::string base_url, py::object api_key, bool tls_verify, py::object ca_file,
                       py::object proxy, py::object no_proxy, bool proxy_from_environment,
                       py::object connect_timeout, py::object first_token_timeout, py::object inter_token_timeout,
                       py::object request_timeout, int max_retries, double initial_backoff, double max_backoff,
                       std::size_t pool_size, std::map<std::string, std::string> headers, bool chunk_json) {
             if (api_key.is_none())
               if (auto env = py::module_::import("os").attr("environ").attr("get")("OPENAI_API_KEY");
                   !env.is_none())
                 api_key = env;
             auto options = make_options(std::move(base_url), api_key, tls_verify, ca_file, proxy, no_proxy,
                                         proxy_from_environment, connect_timeout, first_token_timeout,
                                         inter_token_timeout, request_timeout, max_retries, initial_backoff,
                                         max_backoff, pool_size, std::move(headers));
             options.chunk_json = chunk_json;
             return C(runtime().executor(), std::move(options));
           }),
           py::arg("base_url"), py::arg("api_key") = py::none(), py::kw_only(), py::arg("tls_verify") = true,
           py::arg("ca_file") = py::none(), py::arg("proxy") = py::none(), py::arg("no_proxy") = py::none(),
           py::arg("proxy_from_environment") = true, py::arg("connect_timeout") = 10.0,
           py::arg("first_token_timeout") = py::none(), py::arg("inter_token_timeout") = py::none(),
           py::arg("request_timeout") = 600.0, py::arg("max_retries") = 2, py::arg("initial_backoff") = 0.25,
           py::arg("max_backoff") = 8.0, py::arg("pool_size") = 64,
           py::arg("headers") = std::map<std::string, std::string>{}, py::arg("chunk_json") = true,
           "base_url: 'http://host:8000' or 'https://host/v1' (/v1 is added when missing). Timeouts: None is no "
           "limit; request_timeout bounds one attempt, first_token_timeout and inter_token_timeout guard "
           "streams. chunk_json=False skips parsing each chunk into StreamChunk.raw (less CPU per token). "
           "Raises clusterkit.Error for a bad URL, proxy or ca_file.")
      .def(py::pickle(
          // The client travels as its settings, without the key and without
          // headers that look like credentials (as BenchSpec): a pickle may
          // be stored (Ray spills objects to disk). In the other process
          // the key comes from $OPENAI_API_KEY, as for OpenAIClient(url).
          [](C const& c) {
            auto const& o = c.options();
            auto secs = [](std::chrono::milliseconds v) -> py::object {
              return v.count() == 0 ? py::object(py::none()) : py::object(py::float_(v.count() / 1000.0));
            };
            py::dict headers;
            for (auto const& [name, value] : o.headers)
              if (!looks_like_credential(name)) headers[py::str(name)] = value;
            py::dict d;
            d["base_url"] = o.base_url;
            d["tls_verify"] = o.tls_verify;
            d["ca_file"] = o.ca_file.empty() ? py::object(py::none()) : py::object(py::str(o.ca_file));
            d["proxy"] = o.proxy.empty() ? py::object(py::none()) : py::object(py::str(o.proxy));
            d["no_proxy"] = o.no_proxy.empty() ? py::object(py::none()) : py::object(py::str(o.no_proxy));
            d["proxy_from_environment"] = o.proxy_from_environment;
            d["connect_timeout"] = secs(o.connect_timeout);
            d["first_token_timeout"] = secs(o.first_token_timeout);
            d["inter_token_timeout"] = secs(o.inter_token_timeout);
            d["request_timeout"] = secs(o.request_timeout);
            d["max_retries"] = o.max_retries;
            d["initial_backoff"] = o.initial_backoff.count() / 1000.0;
            d["max_backoff"] = o.max_backoff.count() / 1000.0;
            d["pool_size"] = o.pool_size;
            d["headers"] = headers;
            d["chunk_json"] = o.chunk_json;
            return d;
          },
          [](py::dict const& d) {
            py::object api_key = py::module_::import("os").attr("environ").attr("get")("OPENAI_API_KEY");
            auto options = make_options(
                d["base_url"].cast<std::string>(), api_key, d["tls_verify"].cast<bool>(), d["ca_file"], d["proxy"],
                d["no_proxy"], d["proxy_from_environment"].cast<bool>(), d["connect_timeout"], d["first_token_timeout"],
                d["inter_token_timeout"], d["request_timeout"], d["max_retries"].cast<int>(),
                d["initial_backoff"].cast<double>(), d["max_backoff"].cast<double>(), d["pool_size"].cast<std::size_t>(),
                d["headers"].cast<std::map<std::string, std::string>>());
            options.chunk_json = d["chunk_json"].cast<bool>();
            return C(runtime().executor(), std::move(options));
          }))
      .def_property_readonly("base_url", [](C const& c) { return c.options().base_url; })
      .def_property_readonly("proxy_in_use", &C::proxy_in_use, "The proxy used for this server ('' when direct).")
      .def("stats",
           [](C const& c) {
             auto s = c.stats();
             py::dict d;
             d["connections_opened"] = s.connections_opened;
             d["connections_closed"] = s.connections_closed;
             d["requests_sent"] = s.requests_sent;
             d["requests_reused"] = s.requests_reused;
             d["retries"] = s.retries;
             d["open_connections"] = s.open_connections;
             d["idle_connections"] = s.idle_connections;
             return d;
           },
           "Counters of the connection pool.")
      .def("close_idle", &C::close_idle, "Close idle connections now.")
      .def("__repr__", [](C const& c) {
        // Never the key itself, nor the headers (they may carry credentials).
        return "OpenAIClient(" + quoted(c.options().base_url) +
               (c.options().api_key.empty() ? std::string() : std::string(", api_key='***'")) + ")";
      });

  client
      .def(
          "list_models",
          [](C& c) { return call_blocking<ck::ModelList>(c, [&](auto h) { c.async_list_models(std::move(h)); }); },
          "GET /v1/models (raises OpenAIError).")
      .def(
          "health",
          [](C& c) { return call_blocking<ck::HealthResult>(c, [&](auto h) { c.async_health(std::move(h)); }); },
          "GET /health; a non-200 answer is ok=False, not an error.")
      .def(
          "metrics",
          [](C& c) { return call_blocking<ck::MetricsResult>(c, [&](auto h) { c.async_metrics(std::move(h)); }); },
          "GET /metrics, parsed (gauges: running and waiting requests, KV-cache usage).")
      .def(
          "_start_list_models",
          [](C& c, py::object done) {
            return call_started<ck::ModelList>(c, std::move(done),
                                               [&](auto h) { c.async_list_models(std::move(h)); });
          },
          py::kw_only(), py::arg("done"))
      .def(
          "_start_health",
          [](C& c, py::object done) {
            return call_started<ck::HealthResult>(c, std::move(done), [&](auto h) { c.async_health(std::move(h)); });
          },
          py::kw_only(), py::arg("done"))
      .def(
          "_start_metrics",
          [](C& c, py::object done) {
            return call_started<ck::MetricsResult>(c, std::move(done),
                                                   [&](auto h) { c.async_metrics(std::move(h)); });
          },
          py::kw_only(), py::arg("done"));

  def_with(
      client, "chat",
      [](C& c, std::string model, py::object messages, py::object prompt, py::object system, py::object max_tokens,
         py::object temperature, py::object top_p, py::object extra) {
        auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
        return call_blocking<ck::CompletionResult>(c, [&](auto h) { c.async_chat(std::move(req), std::move(h)); });
      },
      chat_args(),
      "POST /v1/chat/completions and wait for the whole answer. messages=[{'role': ..., 'content': ...}] or "
      "prompt='...' (with an optional system='...'); extra is merged into the request body as is (tools, "
      "response_format, vLLM's top_k, ignore_eos, ...). Raises OpenAIError.");
  def_with(
      client, "chat_stream",
      [](C& c, std::string model, py::object messages, py::object prompt, py::object system, py::object max_tokens,
         py::object temperature, py::object top_p, py::object extra) {
        auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
        return Stream::start(c, py::none(), [&](auto on_chunk, auto handler) {
          c.async_chat_stream(std::move(req), std::move(on_chunk), std::move(handler));
        });
      },
      chat_args(),
      "POST /v1/chat/completions, streamed: a ChatStream of StreamChunk (usage in the last chunk).");
  def_with(
      client, "_start_chat",
      [](C& c, std::string model, py::object messages, py::object prompt, py::object system, py::object max_tokens,
         py::object temperature, py::object top_p, py::object extra, py::object done) {
        auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
        return call_started<ck::CompletionResult>(c, std::move(done),
                                                  [&](auto h) { c.async_chat(std::move(req), std::move(h)); });
      },
      chat_args(py::arg("done")),
      "Start chat(); done(CompletionResult | OpenAIError) is called on the I/O thread. Returns the Operation.");
  def_with(
      client, "_start_chat_stream",
      [](C& c, std::string model, py::object messages, py::object prompt, py::object system, py::object max_tokens,
         py::object temperature, py::object top_p, py::object extra, py::object notify) {
        auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
        return Stream::start(c, std::move(notify), [&](auto on_chunk, auto handler) {
          c.async_chat_stream(std::move(req), std::move(on_chunk), std::move(handler));
        });
      },
      chat_args(py::arg("notify")),
      "chat_stream() for an event loop: notify() is called on the I/O thread when a chunk arrives in an empty "
      "queue and when the stream ends; read with ChatStream.next_ready().");
  def_with(
      client, "complete",
      [](C& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature, py::object top_p,
         py::object extra) {
        auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
        return call_blocking<ck::CompletionResult>(c,
                                                   [&](auto h) { c.async_complete(std::move(req), std::move(h)); });
      },
      completion_args(),
      "POST /v1/completions and wait for the whole answer; prompt is a str, or a list of str or token ids.");
  def_with(
      client, "complete_stream",
      [](C& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature, py::object top_p,
         py::object extra) {
        auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
        return Stream::start(c, py::none(), [&](auto on_chunk, auto handler) {
          c.async_complete_stream(std::move(req), std::move(on_chunk), std::move(handler));
        });
      },
      completion_args(), "POST /v1/completions, streamed: a ChatStream of StreamChunk.");
  def_with(
      client, "_start_complete",
      [](C& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature, py::object top_p,
         py::object extra, py::object done) {
        auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
        return call_started<ck::CompletionResult>(c, std::move(done),
                                                  [&](auto h) { c.async_complete(std::move(req), std::move(h)); });
      },
      completion_args(py::arg("done")), "Start complete(); done(CompletionResult | OpenAIError) on the I/O thread.");
  def_with(
      client, "_start_complete_stream",
      [](C& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature, py::object top_p,
         py::object extra, py::object notify) {
        auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
        return Stream::start(c, std::move(notify), [&](auto on_chunk, auto handler) {
          c.async_complete_stream(std::move(req), std::move(on_chunk), std::move(handler));
        });
      },
      completion_args(py::arg("notify")), "complete_stream() for an event loop (see start_chat_stream).");
}

// ---------------------------------------------------------------------------
// The benchmark (include/clusterkit/bench.hpp)

namespace {

std::string bench_spec_repr(ck::BenchSpec const& s) {
  // Never the API key.
  return "BenchSpec(" + quoted(s.url) + (s.model.empty() ? std::string() : ", model=" + quoted(s.model)) + ", " +
         s.mode() + (s.api_key.empty() ? std::string() : ", api_key='***'") + ")";
}

}  // namespace

void register_bench(py::module_& m) {
  using S = ck::BenchSpec;
  py::class_<S>(m, "BenchSpec",
                "What clusterkit.run_bench runs: `clusterkit bench`'s settings. Unset (None) numbers take the "
                "defaults: concurrency 1 without a rate, 100 requests unless a duration.")
      .def(py::init([](std::string url, std::string model, std::optional<std::string> api_key, std::string endpoint,
                       std::optional<std::size_t> concurrency, std::optional<double> rate,
                       std::optional<std::size_t> requests, std::optional<double> duration, std::size_t prompt_tokens,
                       std::vector<std::string> prompts, std::int64_t max_tokens, bool ignore_eos, std::uint64_t seed,
                       double timeout, std::string ca_file, bool insecure, bool warmup, double poll_interval_us,
                       double progress_interval) {
             S s;
             s.url = std::move(url);
             s.model = std::move(model);
             s.api_key = api_key.value_or("");
             s.endpoint = std::move(endpoint);
             s.concurrency = concurrency;
             s.rate = rate;
             s.requests = requests;
             s.duration = duration;
             s.prompt_tokens = prompt_tokens;
             s.prompts = std::move(prompts);
             s.max_tokens = max_tokens;
             s.ignore_eos = ignore_eos;
             s.seed = seed;
             s.timeout = timeout;
             s.ca_file = std::move(ca_file);
             s.insecure = insecure;
             s.warmup = warmup;
             s.poll_interval_us = poll_interval_us;
             s.progress_interval = progress_interval;
             return s;
           }),
           py::arg("url"), py::kw_only(), py::arg("model") = "", py::arg("api_key") = py::none(),
           py::arg("endpoint") = "chat", py::arg("concurrency") = py::none(), py::arg("rate") = py::none(),
           py::arg("requests") = py::none(), py::arg("duration") = py::none(), py::arg("prompt_tokens") = 128,
           py::arg("prompts") = std::vector<std::string>{}, py::arg("max_tokens") = 128, py::arg("ignore_eos") = true,
           py::arg("seed") = 0, py::arg("timeout") = 600.0, py::arg("ca_file") = "", py::arg("insecure") = false,
           py::arg("warmup") = true, py::arg("poll_interval_us") = 50.0, py::arg("progress_interval") = 0.1)
      .def_readwrite("url", &S::url)
      .def_readwrite("model", &S::model, "'' : the first model the server lists.")
      .def_property(
          "api_key", [](S const& s) { return s.api_key.empty() ? py::object(py::none()) : py::object(py::str("***")); },
          [](S& s, std::optional<std::string> k) { s.api_key = k.value_or(""); },
          "Write-only in effect: reads give '***' (or None), never the key.")
      .def_readwrite("endpoint", &S::endpoint, "'chat' or 'completions'.")
      .def_readwrite("concurrency", &S::concurrency)
      .def_readwrite("rate", &S::rate, "Requests per second, Poisson arrivals.")
      .def_readwrite("requests", &S::requests)
      .def_readwrite("duration", &S::duration, "Seconds to keep sending.")
      .def_readwrite("prompt_tokens", &S::prompt_tokens)
      .def_readwrite("prompts", &S::prompts, "Prompts sent in turn; [] : synthetic ones.")
      .def_readwrite("max_tokens", &S::max_tokens)
      .def_readwrite("ignore_eos", &S::ignore_eos)
      .def_readwrite("seed", &S::seed)
      .def_readwrite("timeout", &S::timeout, "Seconds one request may take.")
      .def_readwrite("ca_file", &S::ca_file)
      .def_readwrite("insecure", &S::insecure)
      .def_readwrite("warmup", &S::warmup)
      .def_readwrite("poll_interval_us", &S::poll_interval_us)
      .def_readwrite("progress_interval", &S::progress_interval)
      .def("problems", &S::problems, "Every setting out of range, named with its range; [] when it can run.")
      .def("mode", &S::mode)
      .def("__repr__", &bench_spec_repr);

  using D = ck::Distribution;
  py::class_<D>(m, "Distribution", "Seconds: count, mean, stddev, min, max, p50, p90, p99.")
      .def_readonly("count", &D::count)
      .def_readonly("mean", &D::mean)
      .def_readonly("stddev", &D::stddev)
      .def_readonly("min", &D::min)
      .def_readonly("max", &D::max)
      .def_readonly("p50", &D::p50)
      .def_readonly("p90", &D::p90)
      .def_readonly("p99", &D::p99)
      .def("to_json", [](D const& d) { return json_to_python(d.to_json()); }, "In milliseconds, as the CLI's JSON.")
      .def("__repr__", [](D const& d) {
        char b[160];
        std::snprintf(b, sizeof b, "Distribution(count=%zu, mean=%.6g, p50=%.6g, p99=%.6g)", d.count, d.mean, d.p50, d.p99);
        return std::string(b);
      });

  using Sum = ck::BenchSummary;
  py::class_<Sum>(m, "BenchSummary")
      .def_readonly("completed", &Sum::completed)
      .def_readonly("failed", &Sum::failed)
      .def_readonly("duration", &Sum::duration)
      .def_readonly("request_throughput", &Sum::request_throughput)
      .def_readonly("output_token_throughput", &Sum::output_token_throughput)
      .def_readonly("total_token_throughput", &Sum::total_token_throughput)
      .def_readonly("output_tokens", &Sum::output_tokens)
      .def_readonly("prompt_tokens", &Sum::prompt_tokens)
      .def_readonly("ttft", &Sum::ttft)
      .def_readonly("tpot", &Sum::tpot)
      .def_readonly("itl", &Sum::itl)
      .def_readonly("e2e", &Sum::e2e)
      .def_readonly("send_delay", &Sum::send_delay)
      .def_readonly("errors", &Sum::errors, "Failures by reason, with their counts.")
      .def("to_text", &Sum::to_text)
      .def("to_json", [](Sum const& s) { return json_to_python(s.to_json()); })
      .def("__repr__", [](Sum const& s) {
        char b[200];
        std::snprintf(b, sizeof b, "BenchSummary(completed=%zu, failed=%zu, request_throughput=%.3g, ttft_p50=%.3g)",
                      s.completed, s.failed, s.request_throughput, s.ttft.p50);
        return std::string(b);
      });

  using Sample = ck::BenchSample;
  py::class_<Sample>(m, "BenchSample", "One request; seconds from the run's start, latencies from its scheduled send.")
      .def_readonly("scheduled", &Sample::scheduled)
      .def_readonly("ttft", &Sample::ttft, "-1 when no token arrived.")
      .def_readonly("e2e", &Sample::e2e)
      .def_readonly("prompt_tokens", &Sample::prompt_tokens)
      .def_readonly("output_tokens", &Sample::output_tokens)
      .def_property_readonly("ok", &Sample::ok)
      .def_property_readonly(
          "error", [](Sample const& x) { return error_or_none(x.error, x.message); },
          "None, or a clusterkit.Error ('http_error', 'timed_out', 'connection_refused', 'cancelled', ...).")
      .def_readonly("message", &Sample::message, "Why it failed: 'HTTP 429: slow down', ... ('' when ok).")
      .def_readonly("send_delay", &Sample::send_delay)
      .def("__repr__", [](Sample const& x) {
        char b[200];
        std::snprintf(b, sizeof b, "BenchSample(scheduled=%.4f, ttft=%.4f, e2e=%.4f, ok=%s)", x.scheduled, x.ttft, x.e2e,
                      x.ok() ? "True" : "False");
        return std::string(b) + (x.ok() ? "" : " message=" + quoted(x.message));
      });

  using P = ck::BenchProgress;
  py::class_<P>(m, "BenchProgress")
      .def_readonly("launched", &P::launched)
      .def_readonly("completed", &P::completed)
      .def_readonly("failed", &P::failed)
      .def_readonly("in_flight", &P::in_flight)
      .def_readonly("elapsed", &P::elapsed)
      .def_readonly("fraction", &P::fraction)
      .def_readonly("first_errors", &P::first_errors)
      .def("__repr__", [](P const& p) {
        char b[160];
        std::snprintf(b, sizeof b, "BenchProgress(completed=%zu, failed=%zu, in_flight=%zu, elapsed=%.3f)", p.completed,
                      p.failed, p.in_flight, p.elapsed);
        return std::string(b);
      });

  using R = ck::BenchResult;
  py::class_<R>(m, "BenchResult")
      .def_readonly("spec", &R::spec, "As run: defaults applied, the model resolved, no API key.")
      .def_readonly("date", &R::date)
      .def_readonly("samples", &R::samples)
      .def_readonly("itl", &R::itl)
      .def_readonly("summary", &R::summary)
      .def_readonly("warmed_connections", &R::warmed_connections)
      .def_readonly("cancelled", &R::cancelled)
      .def_readonly("message", &R::message)
      .def("title", &R::title)
      .def("to_text", &R::to_text)
      .def("to_json", [](R const& r) { return json_to_python(r.to_json()); }, "The report `clusterkit bench --json` writes.")
      .def("latency_svg", &R::latency_svg)
      .def("__repr__", [](R const& r) {
        char b[200];
        std::snprintf(b, sizeof b, "BenchResult(completed=%zu, failed=%zu, %.2f req/s, TTFT p50 %.3f ms%s)",
                      r.summary.completed, r.summary.failed, r.summary.request_throughput, r.summary.ttft.p50 * 1e3,
                      r.cancelled ? ", cancelled" : "");
        return std::string(b);
      });

  m.def("synthetic_prompts", &ck::synthetic_prompts, py::arg("words"), py::arg("seed") = 0, py::arg("count") = 256);
  m.def("read_prompts_file", &ck::read_prompts_file, py::arg("path"),
        "One prompt per line, or JSON lines with 'prompt'. Raises clusterkit.Error naming the file.");
  m.def(
      "run_bench",
      [](S spec, py::object on_progress) {
        refuse_blocking_on_runtime_thread("run_bench()");
        auto op = Operation::create(runtime().executor());
        ck::BenchProgressCallback progress;
        if (!on_progress.is_none())
          progress = [op, f = share(std::move(on_progress))](ck::BenchProgress const& p) {
            invoke_callback(*op, [&] { (*f)(py::cast(p)); });
          };
        auto [ec, result] = run_blocking<ck::BenchResult>(op, [&](auto handler) {
          ck::async_run_bench(runtime().executor(), std::move(spec), std::move(progress), std::move(handler));
        });
        if (ec && ec != ck::errc::cancelled) raise_error(ec, result.message.empty() ? ec.message() : result.message, py::cast(result));
        return result;
      },
      py::arg("spec"), py::arg("on_progress") = py::none(),
      "Load the server as `clusterkit bench` does, on a thread of its own (the GIL released), and return a "
      "BenchResult; failed requests are counted in it, not raised. Raises clusterkit.Error for settings out of "
      "range (every one named) or a model that cannot be looked up. on_progress(BenchProgress) is called every "
      "progress_interval seconds on the bench's thread. Ctrl-C stops the run (KeyboardInterrupt).");
}

}  // namespace ckpy
