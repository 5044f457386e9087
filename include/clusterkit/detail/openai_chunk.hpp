// The typed fields of one streamed OpenAI chunk (`data: {...}` of a chat or
// completion stream), read without building a JSON tree (sans-I/O).
//
// A server streaming at full speed sends tens of thousands of chunks a second
// and a client needs five fields of each. `scan_stream_chunk` walks the text
// once, validating all of it as strictly as nlohmann::json::parse does, and
// decodes only those fields. Where it cannot vouch for the answer (the text
// is not valid JSON, or is valid but unusual: a BOM, an escaped key, a float
// or a huge number where an integer is expected, deep nesting) it returns
// false and the caller parses the text with nlohmann instead, so the result
// is always what `stream_chunk_from_json` gives for the parsed text. The unit
// tests check exactly that, on fixtures and random mutations.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "clusterkit/openai_client.hpp"

namespace clusterkit::detail {

/// What a chunk carries beside the StreamChunk fields.
struct ChunkExtras {
  /// The top-level "model" when it is a string (filled only when asked).
  std::string model;
  /// A top-level "error" that is not null: the server failed mid-stream.
  bool error = false;
};

/// Fill `out`'s id, index, delta, role, finish_reason and usage (the other
/// fields are left alone) and `extras` from the chunk's JSON text. `chat`:
/// the delta is choices[0].delta.content (else choices[0].text). Returns
/// false, with `out` and `extras` in an unspecified state, when the caller
/// must parse the text itself.
bool scan_stream_chunk(std::string_view json, bool chat, bool want_model, StreamChunk& out, ChunkExtras& extras);

/// The same fields from parsed JSON (an object); the reference for the
/// scanner, and the path taken when it declines. Throws nlohmann's
/// type_error where a field has a type it cannot convert (an "index" that is
/// a string, a first choice that is not an object).
void stream_chunk_from_json(nlohmann::json const& j, bool chat, bool want_model, StreamChunk& out,
                            ChunkExtras& extras);

}  // namespace clusterkit::detail
