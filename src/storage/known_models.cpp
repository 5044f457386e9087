// config.json of a few popular models, compiled in so that `plan` can size
// them offline, before anything is downloaded. The same files are in
// examples/models/ (tests/unit/test_model.cpp keeps the two equal).
#include "clusterkit/model.hpp"
#include "core/text.hpp"

namespace clusterkit {
namespace {

using detail::lower;

struct KnownModel {
  char const* id;
  char const* folder;
  char const* config;
};

// clang-format off
KnownModel const known_models[] = {
    {"Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B-Instruct", R"JSON({"architectures":["Qwen2ForCausalLM"],"attention_dropout":0.0,"bos_token_id":151643,"eos_token_id":151645,"hidden_act":"silu","hidden_size":8192,"initializer_range":0.02,"intermediate_size":29568,"max_position_embeddings":32768,"max_window_layers":70,"model_type":"qwen2","num_attention_heads":64,"num_hidden_layers":80,"num_key_value_heads":8,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":131072,"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.43.1","use_cache":true,"use_sliding_window":false,"vocab_size":152064})JSON"},
    {"Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct", R"JSON({"architectures":["Qwen2ForCausalLM"],"attention_dropout":0.0,"bos_token_id":151643,"eos_token_id":151645,"hidden_act":"silu","hidden_size":3584,"initializer_range":0.02,"intermediate_size":18944,"max_position_embeddings":32768,"max_window_layers":28,"model_type":"qwen2","num_attention_heads":28,"num_hidden_layers":28,"num_key_value_heads":4,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":131072,"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.43.1","use_cache":true,"use_sliding_window":false,"vocab_size":152064})JSON"},
    {"meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct", R"JSON({"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":14336,"max_position_embeddings":131072,"mlp_bias":false,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.43.0.dev0","use_cache":true,"vocab_size":128256})JSON"},
};
// clang-format on

}  // namespace

std::optional<nlohmann::json> known_model_config(std::string_view id) {
  // "Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b-instruct" and ModelScope's
  // folder name "Qwen2___5-72B-Instruct" all name the same model.
  std::string const given = lower(id);
  std::string want;
  for (std::size_t i = 0; i < given.size(); ++i) {
    if (given.compare(i, 3, "___") == 0) {
      want += '.';
      i += 2;
    } else {
      want += given[i];
    }
  }
  while (!want.empty() && want.back() == '/') want.pop_back();
  for (auto const& m : known_models) {
    auto full = lower(m.id);
    auto folder = lower(m.folder);
    auto tail = want.substr(want.rfind('/') == std::string::npos ? 0 : want.rfind('/') + 1);
    if (want == full || want == folder || (want.find('/') == std::string::npos && tail == folder))
      return nlohmann::json::parse(m.config);
  }
  return std::nullopt;
}

std::vector<std::string> known_model_ids() {
  std::vector<std::string> ids;
  for (auto const& m : known_models) ids.emplace_back(m.id);
  return ids;
}

}  // namespace clusterkit
