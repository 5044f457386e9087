// OpenAIClient for Python: blocking calls that release the GIL (Ctrl-C
// cancels the request and closes its connection), streams as iterators, and
// the result types with their raw JSON as Python dicts.
#include <boost/asio/bind_cancellation_slot.hpp>

#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>

#include "clusterkit/openai_client.hpp"
#include "support.hpp"

namespace ckpy {
namespace {

// ---------------------------------------------------------------------------
// JSON <-> Python

py::object to_python(nlohmann::json const& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    case nlohmann::json::value_t::string: return py::str(j.get_ref<std::string const&>());
    case nlohmann::json::value_t::array: {
      py::list l;
      for (auto const& v : j) l.append(to_python(v));
      return std::move(l);
    }
    case nlohmann::json::value_t::object: {
      py::dict d;
      for (auto const& [k, v] : j.items()) d[py::str(k)] = to_python(v);
      return std::move(d);
    }
    default: return py::none();
  }
}

nlohmann::json from_python(py::handle value, char const* what) {
  if (value.is_none()) return nullptr;
  auto text = py::module_::import("json").attr("dumps")(value).cast<std::string>();
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw py::value_error(std::string(what) + " is not JSON-serialisable");
  return j;
}

std::chrono::milliseconds optional_ms(py::object const& seconds, char const* what) {
  if (seconds.is_none()) return std::chrono::milliseconds(0);
  double s = seconds.cast<double>();
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
  if (!max_tokens.is_none()) r.max_tokens = max_tokens.cast<std::int64_t>();
  if (!temperature.is_none()) r.temperature = temperature.cast<double>();
  if (!top_p.is_none()) r.top_p = top_p.cast<double>();
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
  if (!max_tokens.is_none()) r.max_tokens = max_tokens.cast<std::int64_t>();
  if (!temperature.is_none()) r.temperature = temperature.cast<double>();
  if (!top_p.is_none()) r.top_p = top_p.cast<double>();
  if (!extra.is_none()) {
    r.extra = from_python(extra, "extra");
    if (!r.extra.is_object()) throw py::type_error("extra must be a dict");
  }
  return r;
}

// ---------------------------------------------------------------------------
// Blocking calls

template <class Value, class Initiate>
Value call_blocking(Initiate&& initiate) {
  refuse_blocking_on_runtime_thread("OpenAIClient");
  auto op = Operation::create(runtime().executor());
  auto promise = std::make_shared<std::promise<std::pair<std::error_code, Value>>>();
  auto future = promise->get_future();
  initiate(asio::bind_cancellation_slot(op->slot(), [op, promise](std::error_code ec, Value v) {
    op->mark_finished();
    promise->set_value({ec, std::move(v)});
  }));
  auto [ec, value] = wait_for(*op, future);
  if (ec) raise_error(ec, value.meta.diagnostic.empty() ? ec.message() : value.meta.diagnostic);
  return std::move(value);
}

// ---------------------------------------------------------------------------
// Streams as iterators

struct StreamState {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<ck::StreamChunk> chunks;
  bool finished = false;
  std::error_code ec;
  ck::StreamResult result;
};

class Stream {
public:
  template <class Start>
  static std::shared_ptr<Stream> start(Start&& start_op) {
    auto s = std::shared_ptr<Stream>(new Stream);
    auto state = s->state_;
    s->op_ = Operation::create(runtime().executor());
    auto on_chunk = [state](ck::StreamChunk const& c) {
      std::lock_guard lock(state->mutex);
      state->chunks.push_back(c);
      state->ready.notify_one();
    };
    start_op(std::move(on_chunk),
             asio::bind_cancellation_slot(s->op_->slot(), [state, op = s->op_](std::error_code ec, ck::StreamResult r) {
               op->mark_finished();
               std::lock_guard lock(state->mutex);
               state->ec = ec;
               state->result = std::move(r);
               state->finished = true;
               state->ready.notify_one();
             }));
    return s;
  }

  ~Stream() {
    if (op_ && !op_->finished()) op_->cancel(asio::cancellation_type::terminal);
  }

  ck::StreamChunk next() {
    using namespace std::chrono_literals;
    for (;;) {
      bool have = false, finished = false;
      {
        py::gil_scoped_release nogil;
        std::unique_lock lock(state_->mutex);
        state_->ready.wait_for(lock, 100ms, [&] { return !state_->chunks.empty() || state_->finished; });
        have = !state_->chunks.empty();
        finished = state_->finished;
      }
      if (have) {
        std::lock_guard lock(state_->mutex);
        auto c = std::move(state_->chunks.front());
        state_->chunks.pop_front();
        return c;
      }
      if (finished) {
        std::error_code ec;
        std::string diagnostic;
        {
          std::lock_guard lock(state_->mutex);
          ec = state_->ec;
          diagnostic = state_->result.meta.diagnostic;
        }
        if (ec && !reported_) {
          reported_ = true;
          raise_error(ec, diagnostic.empty() ? ec.message() : diagnostic);
        }
        throw py::stop_iteration();
      }
      if (PyErr_CheckSignals() != 0) {
        py::error_already_set interrupt;
        cancel();
        throw interrupt;
      }
    }
  }

  void cancel() {
    if (op_) op_->cancel(asio::cancellation_type::terminal);
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

}  // namespace

void register_openai(py::module_& m) {
  py::class_<ck::Usage>(m, "Usage", "Token counts the server reported.")
      .def_readonly("prompt_tokens", &ck::Usage::prompt_tokens)
      .def_readonly("completion_tokens", &ck::Usage::completion_tokens)
      .def_readonly("total_tokens", &ck::Usage::total_tokens)
      .def("__repr__", [](ck::Usage const& u) {
        return "Usage(prompt_tokens=" + std::to_string(u.prompt_tokens) +
               ", completion_tokens=" + std::to_string(u.completion_tokens) +
               ", total_tokens=" + std::to_string(u.total_tokens) + ")";
      });

  py::class_<ck::ResponseMeta>(m, "ResponseMeta", "HTTP status, attempts, the server's message and timing.")
      .def_readonly("status", &ck::ResponseMeta::status)
      .def_readonly("attempts", &ck::ResponseMeta::attempts)
      .def_readonly("server_message", &ck::ResponseMeta::server_message)
      .def_readonly("diagnostic", &ck::ResponseMeta::diagnostic)
      .def_property_readonly("duration", [](ck::ResponseMeta const& x) { return seconds_of(x.duration); });

  py::class_<ck::ModelInfo>(m, "ModelInfo")
      .def_readonly("id", &ck::ModelInfo::id)
      .def_readonly("owned_by", &ck::ModelInfo::owned_by)
      .def_readonly("created", &ck::ModelInfo::created)
      .def_readonly("max_model_len", &ck::ModelInfo::max_model_len)
      .def_property_readonly("raw", [](ck::ModelInfo const& x) { return to_python(x.raw); })
      .def("__repr__", [](ck::ModelInfo const& x) { return "ModelInfo(id=" + py::repr(py::str(x.id)).cast<std::string>() + ")"; });

  py::class_<ck::ModelList>(m, "ModelList")
      .def_readonly("models", &ck::ModelList::models)
      .def_property_readonly("raw", [](ck::ModelList const& x) { return to_python(x.raw); })
      .def_readonly("meta", &ck::ModelList::meta)
      .def("ids", [](ck::ModelList const& x) {
        std::vector<std::string> ids;
        for (auto const& mi : x.models) ids.push_back(mi.id);
        return ids;
      });

  py::class_<ck::Choice>(m, "Choice")
      .def_readonly("index", &ck::Choice::index)
      .def_readonly("text", &ck::Choice::text)
      .def_readonly("role", &ck::Choice::role)
      .def_readonly("finish_reason", &ck::Choice::finish_reason);

  py::class_<ck::CompletionResult>(m, "CompletionResult", "A whole (non-streamed) answer.")
      .def_readonly("id", &ck::CompletionResult::id)
      .def_readonly("model", &ck::CompletionResult::model)
      .def_readonly("choices", &ck::CompletionResult::choices)
      .def_property_readonly("usage", [](ck::CompletionResult const& x) { return usage_or_none(x.usage); })
      .def_property_readonly("text", [](ck::CompletionResult const& x) { return x.text(); })
      .def_property_readonly("raw", [](ck::CompletionResult const& x) { return to_python(x.raw); })
      .def_readonly("meta", &ck::CompletionResult::meta);

  py::class_<ck::StreamChunk>(m, "StreamChunk", "One chunk of a stream, as it arrived.")
      .def_readonly("id", &ck::StreamChunk::id)
      .def_readonly("index", &ck::StreamChunk::index)
      .def_readonly("delta", &ck::StreamChunk::delta)
      .def_readonly("role", &ck::StreamChunk::role)
      .def_readonly("finish_reason", &ck::StreamChunk::finish_reason)
      .def_property_readonly("usage", [](ck::StreamChunk const& x) { return usage_or_none(x.usage); })
      .def_property_readonly("raw", [](ck::StreamChunk const& x) { return to_python(x.raw); })
      .def("__repr__", [](ck::StreamChunk const& x) {
        return "StreamChunk(delta=" + py::repr(py::str(x.delta)).cast<std::string>() + ")";
      });

  py::class_<ck::StreamResult>(m, "StreamResult", "What a stream added up to.")
      .def_readonly("id", &ck::StreamResult::id)
      .def_readonly("model", &ck::StreamResult::model)
      .def_readonly("text", &ck::StreamResult::text)
      .def_readonly("role", &ck::StreamResult::role)
      .def_readonly("finish_reason", &ck::StreamResult::finish_reason)
      .def_property_readonly("usage", [](ck::StreamResult const& x) { return usage_or_none(x.usage); })
      .def_readonly("chunks", &ck::StreamResult::chunks)
      .def_readonly("content_chunks", &ck::StreamResult::content_chunks)
      .def_property_readonly("time_to_first_token",
                             [](ck::StreamResult const& x) { return seconds_of(x.time_to_first_token); })
      .def_readonly("done_marker", &ck::StreamResult::done_marker)
      .def_readonly("meta", &ck::StreamResult::meta);

  py::class_<ck::HealthResult>(m, "HealthResult")
      .def_readonly("ok", &ck::HealthResult::ok)
      .def_readonly("body", &ck::HealthResult::body)
      .def_readonly("meta", &ck::HealthResult::meta)
      .def("__bool__", [](ck::HealthResult const& x) { return x.ok; });

  py::class_<ck::VllmGauges>(m, "VllmGauges", "What a person watches on a vLLM server; None when not exported.")
      .def_readonly("requests_running", &ck::VllmGauges::requests_running)
      .def_readonly("requests_waiting", &ck::VllmGauges::requests_waiting)
      .def_readonly("kv_cache_usage", &ck::VllmGauges::kv_cache_usage)
      .def_readonly("kv_cache_metric", &ck::VllmGauges::kv_cache_metric)
      .def_readonly("requests_swapped", &ck::VllmGauges::requests_swapped)
      .def_readonly("prompt_tokens_total", &ck::VllmGauges::prompt_tokens_total)
      .def_readonly("generation_tokens_total", &ck::VllmGauges::generation_tokens_total)
      .def_readonly("preemptions_total", &ck::VllmGauges::preemptions_total)
      .def_readonly("models", &ck::VllmGauges::models);

  py::class_<ck::MetricsResult>(m, "MetricsResult")
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
      .def("value", [](ck::MetricsResult const& x, std::string const& name) { return x.parsed.sum(name); },
           "The sum over every series of `name` (None when absent).");

  py::class_<Stream, std::shared_ptr<Stream>>(m, "ChatStream",
                                              "Chunks as they arrive. Iterate it; `result` holds the summary once "
                                              "it ended; leaving a `with` block early cancels it.")
      .def("__iter__", [](std::shared_ptr<Stream> s) { return s; })
      .def("__next__", &Stream::next)
      .def("cancel", &Stream::cancel, "Stop the stream (its connection is closed).")
      .def_property_readonly("result", &Stream::result)
      .def("collect", &Stream::collect, "Read to the end and return the StreamResult.")
      .def("__enter__", [](std::shared_ptr<Stream> s) { return s; })
      .def("__exit__", [](Stream& s, py::args) {
        s.cancel();
        return false;
      });

  py::class_<ck::OpenAIClient>(m, "OpenAIClient",
                               "An OpenAI-compatible client (vLLM): keep-alive pool, TLS verified by default, "
                               "proxies from the environment, retries on 429/503. Calls release the GIL.")
      .def(py::init([](std::string base_url, py::object api_key, bool tls_verify, py::object ca_file,
                       py::object proxy, py::object no_proxy, bool proxy_from_environment,
                       py::object connect_timeout, py::object first_token_timeout, py::object inter_token_timeout,
                       py::object request_timeout, int max_retries, double initial_backoff, double max_backoff,
                       std::size_t pool_size, std::map<std::string, std::string> headers) {
             if (api_key.is_none())
               if (auto env = py::module_::import("os").attr("environ").attr("get")("OPENAI_API_KEY");
                   !env.is_none())
                 api_key = env;
             return ck::OpenAIClient(
                 runtime().executor(),
                 make_options(std::move(base_url), api_key, tls_verify, ca_file, proxy, no_proxy,
                              proxy_from_environment, connect_timeout, first_token_timeout, inter_token_timeout,
                              request_timeout, max_retries, initial_backoff, max_backoff, pool_size,
                              std::move(headers)));
           }),
           py::arg("base_url"), py::arg("api_key") = py::none(), py::kw_only(), py::arg("tls_verify") = true,
           py::arg("ca_file") = py::none(), py::arg("proxy") = py::none(), py::arg("no_proxy") = py::none(),
           py::arg("proxy_from_environment") = true, py::arg("connect_timeout") = 10.0,
           py::arg("first_token_timeout") = py::none(), py::arg("inter_token_timeout") = py::none(),
           py::arg("request_timeout") = 600.0, py::arg("max_retries") = 2, py::arg("initial_backoff") = 0.25,
           py::arg("max_backoff") = 8.0, py::arg("pool_size") = 64,
           py::arg("headers") = std::map<std::string, std::string>{})
      .def_property_readonly("base_url", [](ck::OpenAIClient const& c) { return c.options().base_url; })
      .def_property_readonly("proxy_in_use", &ck::OpenAIClient::proxy_in_use)
      .def("stats",
           [](ck::OpenAIClient const& c) {
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
           })
      .def("close_idle", &ck::OpenAIClient::close_idle)
      .def("list_models",
           [](ck::OpenAIClient& c) {
             return call_blocking<ck::ModelList>([&](auto h) { c.async_list_models(std::move(h)); });
           })
      .def(
          "chat",
          [](ck::OpenAIClient& c, std::string model, py::object messages, py::object prompt, py::object system,
             py::object max_tokens, py::object temperature, py::object top_p, py::object extra) {
            auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
            return call_blocking<ck::CompletionResult>(
                [&](auto h) { c.async_chat(std::move(req), std::move(h)); });
          },
          py::arg("model"), py::arg("messages") = py::none(), py::kw_only(), py::arg("prompt") = py::none(),
          py::arg("system") = py::none(), py::arg("max_tokens") = py::none(), py::arg("temperature") = py::none(),
          py::arg("top_p") = py::none(), py::arg("extra") = py::none())
      .def(
          "chat_stream",
          [](ck::OpenAIClient& c, std::string model, py::object messages, py::object prompt, py::object system,
             py::object max_tokens, py::object temperature, py::object top_p, py::object extra) {
            auto req = make_chat(std::move(model), messages, prompt, system, max_tokens, temperature, top_p, extra);
            return Stream::start([&](auto on_chunk, auto handler) {
              c.async_chat_stream(std::move(req), std::move(on_chunk), std::move(handler));
            });
          },
          py::arg("model"), py::arg("messages") = py::none(), py::kw_only(), py::arg("prompt") = py::none(),
          py::arg("system") = py::none(), py::arg("max_tokens") = py::none(), py::arg("temperature") = py::none(),
          py::arg("top_p") = py::none(), py::arg("extra") = py::none())
      .def(
          "complete",
          [](ck::OpenAIClient& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature,
             py::object top_p, py::object extra) {
            auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
            return call_blocking<ck::CompletionResult>(
                [&](auto h) { c.async_complete(std::move(req), std::move(h)); });
          },
          py::arg("model"), py::arg("prompt"), py::kw_only(), py::arg("max_tokens") = py::none(),
          py::arg("temperature") = py::none(), py::arg("top_p") = py::none(), py::arg("extra") = py::none())
      .def(
          "complete_stream",
          [](ck::OpenAIClient& c, std::string model, py::object prompt, py::object max_tokens, py::object temperature,
             py::object top_p, py::object extra) {
            auto req = make_completion(std::move(model), prompt, max_tokens, temperature, top_p, extra);
            return Stream::start([&](auto on_chunk, auto handler) {
              c.async_complete_stream(std::move(req), std::move(on_chunk), std::move(handler));
            });
          },
          py::arg("model"), py::arg("prompt"), py::kw_only(), py::arg("max_tokens") = py::none(),
          py::arg("temperature") = py::none(), py::arg("top_p") = py::none(), py::arg("extra") = py::none())
      .def("health",
           [](ck::OpenAIClient& c) {
             return call_blocking<ck::HealthResult>([&](auto h) { c.async_health(std::move(h)); });
           })
      .def("metrics", [](ck::OpenAIClient& c) {
        return call_blocking<ck::MetricsResult>([&](auto h) { c.async_metrics(std::move(h)); });
      });
}

}  // namespace ckpy
