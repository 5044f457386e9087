// A streamed chunk's typed fields without a JSON tree; see
// include/clusterkit/detail/openai_chunk.hpp for the contract.
#include "clusterkit/detail/openai_chunk.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>

namespace clusterkit::detail {

namespace {

std::string string_or_empty(nlohmann::json const& j, char const* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Bytes a string scan must stop at: the closing quote, a backslash, control
// characters (invalid in JSON strings) and the lead bytes of UTF-8 sequences.
constexpr auto kStringStop = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  for (int c = 0x80; c < 0x100; ++c) t[c] = true;
  t['"'] = t['\\'] = true;
  return t;
}();

bool stops_string(char c) { return kStringStop[static_cast<unsigned char>(c)]; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// A one-pass JSON reader over a chunk's text. Every method returns false
// where the text is not valid JSON or is not worth handling here; the caller
// then declines, and nlohmann decides.
class Reader {
public:
  explicit Reader(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}

  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool at_end() const { return p_ == end_; }
  char peek() const { return p_ != end_ ? *p_ : '\0'; }
  bool eat(char c) {
    ws();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  // An object's members: `on_member(key)` reads the value. Keys with escapes
  // are declined (they would have to be decoded to be matched).
  template <class F>
  bool object(F&& on_member) {
    if (!eat('{')) return false;
    ws();
    if (peek() == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      std::string_view key;
      if (!raw_key(key) || !eat(':')) return false;
      ws();
      if (!on_member(key)) return false;
      ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        return true;
      }
      return false;
    }
  }

  // A string value, decoded into `out` when given, else only validated.
  bool string(std::string* out) {
    if (p_ == end_ || *p_ != '"') return false;
    ++p_;
    if (out) out->clear();
    char const* run = p_;
    for (;;) {
      while (p_ != end_ && !stops_string(*p_)) ++p_;
      if (p_ == end_) return false;
      auto const c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        if (out) out->append(run, p_);
        ++p_;
        return true;
      }
      if (c == '\\') {
        if (out) out->append(run, p_);
        if (!escape(out)) return false;
        run = p_;
        continue;
      }
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++p_;
        continue;
      }
      if (!utf8_sequence()) return false;
    }
  }

  // A string (decoded into `out`), or any other value (skipped, `out`
  // cleared): what "string or empty" means for a field.
  bool string_or_clear(std::string& out) {
    if (peek() == '"') return string(&out);
    out.clear();
    return skip_value();
  }

  // An integer that fits in 18 digits; anything else (a float, a string, a
  // bool) is declined.
  bool integer(std::int64_t& v) {
    bool is_integer = false;
    return number(&v, &is_integer) && is_integer;
  }

  bool skip_value() {
    // Iterative, with a bounded stack: deeper nesting is declined.
    constexpr int kMaxDepth = 64;
    char stack[kMaxDepth];
    int depth = 0;
    for (;;) {
      ws();
      if (p_ == end_) return false;
      char const c = *p_;
      bool value_done = true;
      if (c == '{' || c == '[') {
        ++p_;
        ws();
        char const close = c == '{' ? '}' : ']';
        if (peek() == close) {
          ++p_;
        } else {
          if (depth == kMaxDepth) return false;
          stack[depth++] = close;
          if (close == '}' && !(skip_key() && eat(':'))) return false;
          value_done = false;
        }
      } else if (c == '"') {
        if (!string(nullptr)) return false;
      } else if (c == 't') {
        if (!literal("true")) return false;
      } else if (c == 'f') {
        if (!literal("false")) return false;
      } else if (c == 'n') {
        if (!literal("null")) return false;
      } else if (c == '-' || is_digit(c)) {
        if (!number(nullptr, nullptr)) return false;
      } else {
        return false;
      }
      if (!value_done) continue;
      // Close what ends here; stop at a ',' (another value follows).
      for (;;) {
        if (depth == 0) return true;
        ws();
        if (p_ == end_) return false;
        if (*p_ == ',') {
          ++p_;
          if (stack[depth - 1] == '}' && !(skip_key() && eat(':'))) return false;
          break;
        }
        if (*p_ != stack[depth - 1]) return false;
        ++p_;
        --depth;
      }
    }
  }

  bool is_null_literal() const { return end_ - p_ >= 4 && std::string_view(p_, 4) == "null"; }

private:
  bool raw_key(std::string_view& key) {
    ws();
    if (p_ == end_ || *p_ != '"') return false;
    char const* start = ++p_;
    for (; p_ != end_; ++p_) {
      if (!stops_string(*p_)) continue;
      auto const c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        key = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\' || c < 0x20) return false;
      if (c >= 0x80) {
        if (!utf8_sequence()) return false;
        --p_;  // the loop's ++p_ steps past the sequence's last byte
      }
    }
    return false;
  }

  bool skip_key() {
    ws();
    return string(nullptr);
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  // JSON's number grammar. Integers of up to 18 digits are returned in `v`;
  // longer ones are declined (nlohmann would make them unsigned or floats);
  // floats are checked to be finite, as nlohmann requires.
  bool number(std::int64_t* v, bool* is_integer) {
    char const* const start = p_;
    bool const negative = p_ != end_ && *p_ == '-';
    if (negative) ++p_;
    if (p_ == end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (is_digit(*p_)) {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    } else {
      return false;
    }
    char const* const int_end = p_;
    bool integer = true;
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) return false;
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) return false;
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    if (is_integer) *is_integer = integer;
    if (integer) {
      char const* digits = start + (negative ? 1 : 0);
      if (int_end - digits > 18) return false;
      if (v) {
        std::int64_t x = 0;
        for (char const* d = digits; d != int_end; ++d) x = x * 10 + (*d - '0');
        *v = negative ? -x : x;
      }
      return true;
    }
    double d = 0;
    auto [ptr, ec] = std::from_chars(start, p_, d);
    return ec == std::errc() && ptr == p_ && std::isfinite(d);
  }

  // After a backslash: one escape, decoded into `out` when given.
  bool escape(std::string* out) {
    ++p_;  // the backslash
    if (p_ == end_) return false;
    char const c = *p_++;
    char plain = 0;
    switch (c) {
      case '"': plain = '"'; break;
      case '\\': plain = '\\'; break;
      case '/': plain = '/'; break;
      case 'b': plain = '\b'; break;
      case 'f': plain = '\f'; break;
      case 'n': plain = '\n'; break;
      case 'r': plain = '\r'; break;
      case 't': plain = '\t'; break;
      case 'u': {
        std::uint32_t cp = 0;
        if (!hex4(cp)) return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a lone low surrogate
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          std::uint32_t low = 0;
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
          p_ += 2;
          if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        if (out) append_utf8(*out, cp);
        return true;
      }
      default: return false;
    }
    if (out) out->push_back(plain);
    return true;
  }

  bool hex4(std::uint32_t& cp) {
    if (end_ - p_ < 4) return false;
    for (int i = 0; i < 4; ++i) {
      int h = hex_value(p_[i]);
      if (h < 0) return false;
      cp = cp << 4 | static_cast<std::uint32_t>(h);
    }
    p_ += 4;
    return true;
  }

  // One well-formed multi-byte UTF-8 sequence (RFC 3629: no overlong forms,
  // no surrogates, nothing past U+10FFFF), as nlohmann's lexer demands.
  bool utf8_sequence() {
    auto byte = [&](std::ptrdiff_t i) { return static_cast<unsigned char>(p_[i]); };
    auto in = [](unsigned char b, unsigned char lo, unsigned char hi) { return b >= lo && b <= hi; };
    unsigned char const b0 = byte(0);
    std::ptrdiff_t const left = end_ - p_;
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (in(b0, 0xC2, 0xDF)) {
      n = 2;
    } else if (b0 == 0xE0) {
      n = 3, lo = 0xA0;
    } else if (in(b0, 0xE1, 0xEC) || in(b0, 0xEE, 0xEF)) {
      n = 3;
    } else if (b0 == 0xED) {
      n = 3, hi = 0x9F;
    } else if (b0 == 0xF0) {
      n = 4, lo = 0x90;
    } else if (in(b0, 0xF1, 0xF3)) {
      n = 4;
    } else if (b0 == 0xF4) {
      n = 4, hi = 0x8F;
    } else {
      return false;
    }
    if (left < n || !in(byte(1), lo, hi)) return false;
    for (int i = 2; i < n; ++i)
      if (!in(byte(i), 0x80, 0xBF)) return false;
    p_ += n;
    return true;
  }

  char const* p_;
  char const* end_;
};

bool scan_usage(Reader& r, Usage& u) {
  bool has_total = false;
  std::int64_t total = 0;
  bool ok = r.object([&](std::string_view key) {
    if (key == "prompt_tokens") return r.integer(u.prompt_tokens);
    if (key == "completion_tokens") return r.integer(u.completion_tokens);
    if (key == "total_tokens") {
      has_total = true;
      return r.integer(total);
    }
    return r.skip_value();
  });
  u.total_tokens = has_total ? total : u.prompt_tokens + u.completion_tokens;
  return ok;
}

bool scan_first_choice(Reader& r, bool chat, StreamChunk& out) {
  return r.object([&](std::string_view key) {
    if (key == "index") {
      std::int64_t v = 0;
      if (!r.integer(v)) return false;
      out.index = static_cast<int>(v);
      return true;
    }
    if (key == "finish_reason") return r.string_or_clear(out.finish_reason);
    if (chat && key == "delta") {
      out.delta.clear();
      out.role.clear();
      if (r.peek() != '{') return r.skip_value();
      return r.object([&](std::string_view k) {
        if (k == "content") return r.string_or_clear(out.delta);
        if (k == "role") return r.string_or_clear(out.role);
        return r.skip_value();
      });
    }
    if (!chat && key == "text") return r.string_or_clear(out.delta);
    return r.skip_value();
  });
}

bool scan_choices(Reader& r, bool chat, StreamChunk& out) {
  if (!r.eat('[')) return false;
  r.ws();
  if (r.peek() == ']') return r.eat(']');
  // The first choice must be an object (nlohmann's value() throws on
  // anything else); the others are only validated.
  if (r.peek() != '{' || !scan_first_choice(r, chat, out)) return false;
  for (;;) {
    r.ws();
    if (r.eat(']')) return true;
    if (!r.eat(',') || !r.skip_value()) return false;
  }
}

}  // namespace

bool scan_stream_chunk(std::string_view json, bool chat, bool want_model, StreamChunk& out, ChunkExtras& extras) {
  out.id.clear();
  out.index = 0;
  out.delta.clear();
  out.role.clear();
  out.finish_reason.clear();
  out.usage.reset();
  extras.model.clear();
  extras.error = false;
  Reader r(json);
  r.ws();
  if (r.peek() != '{') return false;  // not an object, or a BOM: nlohmann decides
  bool ok = r.object([&](std::string_view key) {
    if (key == "id") return r.string_or_clear(out.id);
    if (key == "choices") {
      // A repeated key: the last one counts, as in nlohmann's objects.
      out.index = 0;
      out.delta.clear();
      out.role.clear();
      out.finish_reason.clear();
      if (r.peek() != '[') return r.skip_value();
      return scan_choices(r, chat, out);
    }
    if (key == "usage") {
      if (r.peek() != '{') {
        out.usage.reset();
        return r.skip_value();
      }
      return scan_usage(r, out.usage.emplace());
    }
    if (key == "error") {
      extras.error = !r.is_null_literal();
      return r.skip_value();
    }
    if (want_model && key == "model") return r.string_or_clear(extras.model);
    return r.skip_value();
  });
  if (!ok) return false;
  r.ws();
  return r.at_end();
}

void stream_chunk_from_json(nlohmann::json const& j, bool chat, bool want_model, StreamChunk& out,
                            ChunkExtras& extras) {
  out.id.clear();
  out.index = 0;
  out.delta.clear();
  out.role.clear();
  out.finish_reason.clear();
  out.usage.reset();
  extras.model.clear();
  auto err = j.find("error");
  extras.error = err != j.end() && !err->is_null();
  if (extras.error) return;
  out.id = string_or_empty(j, "id");
  if (auto it = j.find("usage"); it != j.end() && it->is_object()) {
    Usage u;
    u.prompt_tokens = it->value("prompt_tokens", std::int64_t{0});
    u.completion_tokens = it->value("completion_tokens", std::int64_t{0});
    u.total_tokens = it->value("total_tokens", u.prompt_tokens + u.completion_tokens);
    out.usage = u;
  }
  if (auto choices = j.find("choices"); choices != j.end() && choices->is_array() && !choices->empty()) {
    auto const& c = choices->front();
    out.index = c.value("index", 0);
    out.finish_reason = string_or_empty(c, "finish_reason");
    if (chat) {
      if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
        out.delta = string_or_empty(*d, "content");
        out.role = string_or_empty(*d, "role");
      }
    } else {
      out.delta = string_or_empty(c, "text");
    }
  }
  if (want_model) extras.model = string_or_empty(j, "model");
}

}  // namespace clusterkit::detail
