#include "coordinator/cli/model_commands.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/placement/expert_load.h"
#include "coordinator/placement/model_name.h"
#include "shard_worker/model/model_file.h"
#include "coordinator/placement/planner.h"
#include "coordinator/placement/size_flags.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/safetensors_file.h"
#include "shard_worker/model/quantized_checkpoint.h"
#include "shard_worker/model/synth_checkpoint.h"
#include "shard_worker/runtime/generator.h"
#include "shard_worker/runtime/speculative_generator.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/incremental_detokenizer.h"
#include "coordinator/tokenizer/reasoning_marker.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/tokenizer/tool_call_parser.h"
#include "nlohmann/json.hpp"

namespace glm::cli {
namespace {

struct LoadedModel {
  std::unique_ptr<kernels::ThreadPool> pool;
  std::unique_ptr<model::Glm5Model> model;
};

absl::StatusOr<LoadedModel> LoadModel(const ModelCommandOptions& o) {
  if (o.model_dir.empty()) return absl::InvalidArgumentError("--model DIR is required");
  // Capped like a plan's cores: each is a thread started now, and 2000000000 ended in an
  // uncaught std::system_error.
  if (o.threads < 0 || o.threads > placement::kMaxRankCores)
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be 0..", placement::kMaxRankCores, " (0 = all cores), got ", o.threads));
  model::LoadOptions load;
  if (auto s = model::ParseWeightDType(o.weight_dtype, &load); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("--weight-dtype: ", s.message()));
  if (!model::ParseQuantizeScope(o.quantize_scope, &load.quantize_scope))
    return absl::InvalidArgumentError(
        absl::StrCat("--quantize-scope '", o.quantize_scope, "' is not one of experts, all, mtp"));
  bool bf16_activations = false;
  if (!kernels::ParseActivationDType(o.activation_dtype, &bf16_activations))
    return absl::InvalidArgumentError(absl::StrCat("--activation-dtype '", o.activation_dtype, "' is not one of f32, bf16"));
  kernels::SetBf16Activations(bf16_activations);
  kernels::SetAmxTilesEnabled(o.amx_tiles);
  kv_cache::KvDType kv_dtype = kv_cache::KvDType::kF32;
  if (!kv_cache::ParseKvDType(o.kv_cache_dtype, &kv_dtype))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("--kv-cache-dtype", o.kv_cache_dtype));
  kv_cache::KvDType index_key_dtype = kv_cache::KvDType::kF32;
  if (!kv_cache::ParseKvDType(o.index_key_dtype, &index_key_dtype))
    return absl::InvalidArgumentError(kv_cache::KvDTypeNameError("--index-key-dtype", o.index_key_dtype));
  auto expert_bytes = placement::GibFlagBytes("--expert-memory-gib", o.expert_memory_gib, "all routed experts resident");
  if (!expert_bytes.ok()) return expert_bytes.status();
  load.expert_memory_bytes = *expert_bytes;
  auto ckpt = model::Checkpoint::Open(o.model_dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = model::ModelWeights::Load(**ckpt, load);
  if (!weights.ok()) return weights.status();
  LoadedModel m;
  int threads = o.threads > 0 ? o.threads : glm::kernels::AvailableCpus();
  m.pool = std::make_unique<kernels::ThreadPool>(threads);
  auto created = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), m.pool.get());
  if (!created.ok()) return created.status();
  m.model = std::move(*created);
  m.model->set_kv_cache_dtype(kv_dtype);
  m.model->set_index_key_dtype(index_key_dtype);
  return m;
}

model::SafetensorsWriter::Entry F32Entry(const std::string& name, const std::vector<float>& v, int64_t rows, int64_t cols) {
  model::SafetensorsWriter::Entry e;
  e.name = name;
  e.dtype = "F32";
  e.shape = {rows, cols};
  e.bytes.resize(v.size() * sizeof(float));
  std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
  return e;
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& csv) {
  std::vector<int32_t> ids;
  if (csv.empty()) return absl::InvalidArgumentError("--tokens is empty");
  for (absl::string_view part : absl::StrSplit(csv, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t v = 0;
    bool digits = !part.empty() && part.find_first_not_of("0123456789") == absl::string_view::npos;
    if (!digits || !absl::SimpleAtoi(part, &v) || v > INT32_MAX)
      return absl::InvalidArgumentError(absl::StrCat("token id '", part, "' is not a non-negative integer"));
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

absl::StatusOr<std::string> RunForwardCommand(const ModelCommandOptions& o) {
  if (o.out.empty()) return absl::InvalidArgumentError("--out FILE.safetensors is required");
  auto tokens = ParseTokenList(o.tokens_csv);
  if (!tokens.ok()) return tokens.status();
  auto m = LoadModel(o);
  if (!m.ok()) return m.status();
  const model::ModelConfig& c = m->model->config();
  if (o.mtp && !c.has_mtp()) return absl::InvalidArgumentError("--mtp: this model has no MTP layer");
  if (o.mtp && tokens->size() < 2) return absl::InvalidArgumentError("--mtp needs at least 2 tokens");
  auto cache = m->model->NewCache();
  std::vector<model::SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens = *tokens;
  auto out = m->model->Forward(batch, model::LogitRows::kAll);
  if (!out.ok()) return out.status();
  const int64_t n = static_cast<int64_t>(tokens->size());
  model::SafetensorsWriter writer;
  writer.Add(F32Entry("logits", out->logits, n, c.vocab_size));
  if (o.mtp) {
    auto mtp_cache = m->model->NewMtpCache();
    std::vector<model::SequenceInput> mtp(1);
    mtp[0].cache = mtp_cache.get();
    mtp[0].tokens.assign(tokens->begin() + 1, tokens->end());
    mtp[0].prev_hidden.assign(out->hidden.begin(), out->hidden.begin() + (n - 1) * c.hidden_size);
    auto mout = m->model->ForwardMtp(mtp, model::LogitRows::kAll);
    if (!mout.ok()) return mout.status();
    writer.Add(F32Entry("mtp_logits", mout->logits, n - 1, c.vocab_size));
  }
  auto written = writer.Write(o.out);
  if (!written.ok()) return written.status();
  return absl::StrCat("{\"out\":\"", o.out, "\",\"tokens\":", n, "}");
}

namespace {

absl::StatusOr<runtime::GenerateOptions> GenerateOptionsFrom(const ModelCommandOptions& o) {
  // Written so that NaN fails each test (it compares false), and infinities are refused too.
  if (!(o.temperature >= 0 && std::isfinite(o.temperature)))
    return absl::InvalidArgumentError("--temperature must be a finite number >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) return absl::InvalidArgumentError("--top_p must be in (0, 1]");
  if (o.top_k < 0) return absl::InvalidArgumentError("--top_k must be >= 0");
  if (!(o.min_p >= 0 && o.min_p <= 1)) return absl::InvalidArgumentError("--min-p must be in [0, 1]");
  if (!(o.repetition_penalty > 0 && std::isfinite(o.repetition_penalty)))
    return absl::InvalidArgumentError("--repetition-penalty must be a finite number > 0");
  if (!(o.presence_penalty >= -2 && o.presence_penalty <= 2))
    return absl::InvalidArgumentError("--presence-penalty must be in [-2, 2]");
  if (!(o.frequency_penalty >= -2 && o.frequency_penalty <= 2))
    return absl::InvalidArgumentError("--frequency-penalty must be in [-2, 2]");
  if (o.max_new_tokens < 0) return absl::InvalidArgumentError("--max-new-tokens must be >= 0");
  runtime::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.ignore_eos = o.ignore_eos;
  g.sampling.temperature = static_cast<float>(o.temperature);
  g.sampling.top_p = static_cast<float>(o.top_p);
  g.sampling.top_k = o.top_k;
  g.sampling.min_p = static_cast<float>(o.min_p);
  g.sampling.repetition_penalty = static_cast<float>(o.repetition_penalty);
  g.sampling.presence_penalty = static_cast<float>(o.presence_penalty);
  g.sampling.frequency_penalty = static_cast<float>(o.frequency_penalty);
  g.sampling.seed = o.seed;
  return g;
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> ModelTokenizer(const std::string& dir) {
  auto tok = tokenizer::Tokenizer::FromFile(dir);
  if (!tok.ok())
    return absl::Status(tok.status().code(),
                        absl::StrCat("this model directory has no usable tokenizer (use --tokens): ", tok.status().message()));
  return tok;
}

// The generated tokens' text: EOS and other special tokens are not printed.
absl::StatusOr<std::string> GeneratedText(const tokenizer::Tokenizer& tok, const std::vector<int32_t>& ids) {
  return tok.Decode(ids, /*skip_special_tokens=*/true);
}

}  // namespace

absl::StatusOr<std::string> RunGenerateCommand(const ModelCommandOptions& o) {
  if (!o.prompt.empty() && !o.tokens_csv.empty()) return absl::InvalidArgumentError("give --tokens or --prompt, not both");
  auto g = GenerateOptionsFrom(o);
  if (!g.ok()) return g.status();
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::vector<int32_t> prompt;
  if (!o.prompt.empty()) {
    if (o.model_dir.empty()) return absl::InvalidArgumentError("--model DIR is required");
    auto t = ModelTokenizer(o.model_dir);
    if (!t.ok()) return t.status();
    tok = std::move(*t);
    auto ids = tok->Encode(o.prompt);
    if (!ids.ok()) return ids.status();
    prompt = *ids;
  } else {
    if (o.tokens_csv.empty()) return absl::InvalidArgumentError("generate needs a prompt: --prompt TEXT (not empty) or --tokens IDS");
    auto tokens = ParseTokenList(o.tokens_csv);
    if (!tokens.ok()) return tokens.status();
    prompt = *tokens;
  }
  auto spec = runtime::ParseSpeculative(o.speculative);
  if (!spec.ok()) return absl::InvalidArgumentError(absl::StrCat("--speculative ", spec.status().message()));
  if (o.draft_vocab < 0) return absl::InvalidArgumentError("--draft-vocab must be 0 (off) or positive");
  spec->draft_vocab = o.draft_vocab;
  auto m = LoadModel(o);
  if (!m.ok()) return m.status();
  // --stream: the prompt, then each token's text as soon as it completes a character.
  const bool streamed = o.on_text != nullptr && tok != nullptr && !o.json;
  std::unique_ptr<tokenizer::IncrementalDetokenizer> detok;
  if (streamed) {
    detok = std::make_unique<tokenizer::IncrementalDetokenizer>(tok.get(), /*skip_special_tokens=*/true);
    o.on_text(o.prompt);
    g->on_token = [&](int32_t id) {
      if (auto t = detok->Push(id); t.ok() && !t->empty()) o.on_text(*t);
      return true;
    };
  }
  runtime::SpeculativeStats stats;
  auto result = runtime::GenerateSpeculative(*m->model, prompt, *g, *spec, &stats);
  if (!result.ok()) return result.status();
  if (streamed) {
    o.on_text(detok->Flush());
    return std::string("\n");
  }
  // --json carries the text whenever the model has a tokenizer, --tokens or not (as through --server).
  if (tok == nullptr && o.json && std::filesystem::exists(std::filesystem::path(o.model_dir) / "tokenizer.json"))
    if (auto t = tokenizer::Tokenizer::FromFile(o.model_dir); t.ok()) tok = std::move(*t);
  std::string text;
  if (tok) {
    auto t = GeneratedText(*tok, result->tokens);
    if (!t.ok()) return t.status();
    text = *t;
  }
  if (o.json) {
    nlohmann::ordered_json j;
    j["tokens"] = result->tokens;
    j["finish_reason"] = result->finish_reason;
    if (tok) j["text"] = text;
    if (spec->method != runtime::SpeculativeConfig::Method::kNone) {
      j["speculative"] = {{"method", o.speculative}, {"drafted", stats.drafted}, {"accepted", stats.accepted},
                          {"acceptance_rate", stats.acceptance_rate()}, {"verify_steps", stats.steps},
                          {"drafted_per_position", stats.drafted_at}, {"accepted_per_position", stats.accepted_at},
                          // verify steps whose MTP drafts were made alongside (SpeculativeConfig::draft_alongside)
                          {"alongside_steps", stats.alongside_steps}};
    }
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  return tok ? o.prompt + text : absl::StrJoin(result->tokens, ",");
}

absl::StatusOr<std::string> RunChatCommand(const ModelCommandOptions& o) {
  if (o.message.empty()) return absl::InvalidArgumentError("--message is required");
  if (o.model_dir.empty()) return absl::InvalidArgumentError("--model DIR is required");
  auto g = GenerateOptionsFrom(o);
  if (!g.ok()) return g.status();
  auto tok = ModelTokenizer(o.model_dir);
  if (!tok.ok()) return tok.status();
  auto tmpl = tokenizer::ChatTemplate::FromTokenizerConfig(o.model_dir);
  if (!tmpl.ok()) return tmpl.status();
  nlohmann::json messages = nlohmann::json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  messages.push_back({{"role", "user"}, {"content", o.message}});
  auto rendered = (*tmpl)->Render(messages, nlohmann::json(), /*add_generation_prompt=*/true);
  if (!rendered.ok()) return rendered.status();
  auto prompt = (*tok)->Encode(*rendered);
  if (!prompt.ok()) return prompt.status();
  auto m = LoadModel(o);
  if (!m.ok()) return m.status();
  // The parser must see GLM's markup (<think>, <tool_call>, ... are special tokens); the other
  // special tokens are dropped, as the server does (RequestOutput). It starts in reasoning when
  // the template's generation prompt opened <think>.
  absl::flat_hash_set<int32_t> markup;
  for (std::string_view t : tokenizer::ToolCallParser::kMarkupTokens)
    if (auto id = (*tok)->TokenToId(t)) markup.insert(*id);
  auto shown = [&](int32_t id) { return !(*tok)->IsSpecial(id) || markup.contains(id); };
  tokenizer::ToolCallParser::Options parser_options;
  const absl::string_view tail = absl::StripTrailingAsciiWhitespace(*rendered);
  parser_options.starts_in_reasoning = absl::EndsWith(tail, "<think>") && (*tok)->TokenToId("</think>").has_value();
  // --stream: each token's text through the reasoning / tool-call parser as it comes (the
  // parser holds back what might start markup until it knows).
  const bool streamed = o.on_text != nullptr && !o.json;
  tokenizer::IncrementalDetokenizer detok(tok->get(), /*skip_special_tokens=*/false);
  tokenizer::ToolCallParser live(parser_options);
  tokenizer::ReasoningMarker marker(o.on_text);
  auto show = [&](const absl::StatusOr<tokenizer::ParsedDelta>& d) {
    if (d.ok()) marker.Write(d->reasoning, d->content);
  };
  if (streamed)
    g->on_token = [&](int32_t id) {
      if (!shown(id)) return true;
      if (auto t = detok.Push(id); t.ok() && !t->empty()) show(live.Push(*t));
      return true;
    };
  auto result = runtime::Generate(*m->model, *prompt, *g);
  if (!result.ok()) return result.status();
  if (streamed) {
    if (std::string rest = detok.Flush(); !rest.empty()) show(live.Push(rest));
    show(live.Finish());
    marker.Finish();
    return std::string("\n");
  }
  std::vector<int32_t> kept;
  for (int32_t id : result->tokens)
    if (shown(id)) kept.push_back(id);
  auto text = (*tok)->Decode(kept, /*skip_special_tokens=*/false);
  if (!text.ok()) return text.status();
  // Split reasoning and tool calls from the content the way the server does.
  tokenizer::ToolCallParser parser(parser_options);
  std::string content, reasoning;
  nlohmann::ordered_json tool_calls = nlohmann::ordered_json::array();
  if (auto d = parser.Push(*text); d.ok()) {
    content += d->content;
    reasoning += d->reasoning;
    for (const auto& c : d->tool_calls) tool_calls.push_back(tokenizer::ToolCallParser::ToOpenAi({c})[0]);
  }
  if (auto d = parser.Finish(); d.ok()) {
    content += d->content;
    reasoning += d->reasoning;
    for (const auto& c : d->tool_calls) tool_calls.push_back(tokenizer::ToolCallParser::ToOpenAi({c})[0]);
  }
  if (o.json) {
    nlohmann::ordered_json j;
    j["prompt_tokens"] = prompt->size();
    j["tokens"] = result->tokens;
    j["text"] = content;
    if (!reasoning.empty()) j["reasoning"] = reasoning;
    if (!tool_calls.empty()) j["tool_calls"] = tool_calls;
    j["finish_reason"] = tool_calls.empty() ? result->finish_reason : "tool_calls";
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  return content;
}

absl::StatusOr<std::string> RunSynthCommand(const ModelCommandOptions& o) {
  if (o.out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  auto preset = model::SynthPresetByName(o.preset);
  if (!preset.ok()) return preset.status();
  auto summary = model::WriteSynthCheckpoint(*preset, o.out, o.seed, /*replace=*/o.force);
  if (!summary.ok()) return summary.status();
  return *summary;
}

absl::StatusOr<std::string> RunQuantizeCommand(const ModelCommandOptions& o) {
  if (o.model_dir.empty()) return absl::InvalidArgumentError("--model DIR is required");
  if (o.out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  model::LoadOptions load;
  if (auto s = model::ParseWeightDType(o.weight_dtype, &load); !s.ok()) return s;
  if (!load.matrix_dtype || !kernels::IsGroupQuantized(*load.matrix_dtype))
    return absl::InvalidArgumentError(absl::StrCat("quantize: --weight-dtype must be an integer format (int8, int8-row, int4, "
                                                   "int{8,4}-g<N>), got '", o.weight_dtype, "'"));
  if (o.quantize_scope != "experts")
    return absl::InvalidArgumentError("quantize: only the experts are stored pre-quantised (--quantize-scope experts); "
                                      "other scopes re-quantise at load from the stored checkpoint");
  model::QuantizeCheckpointOptions q;
  q.dtype = *load.matrix_dtype;
  q.group_size = load.matrix_group_size;
  q.replace = o.force;
  q.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  return model::WriteQuantizedCheckpoint(o.model_dir, o.out, q);
}

absl::StatusOr<std::string> RunExpertLoadCommand(const ModelCommandOptions& o) {
  if (o.text_file.empty() == o.tokens_csv.empty())
    return absl::InvalidArgumentError("expert-load needs exactly one of --text-file FILE and --tokens IDS");
  if (o.window < 1) return absl::InvalidArgumentError(absl::StrCat("--window must be at least 1, got ", o.window));
  std::vector<int32_t> ids;
  if (!o.tokens_csv.empty()) {
    auto parsed = ParseTokenList(o.tokens_csv);
    if (!parsed.ok()) return parsed.status();
    ids = *std::move(parsed);
  } else {
    auto read = model::ReadModelFile(o.text_file, model::kMaxLargeModelFileBytes);
    if (!read.ok()) return absl::Status(read.status().code(), absl::StrCat("--text-file: ", read.status().message()));
    const std::string& text = *read;
    if (o.model_dir.empty()) return absl::InvalidArgumentError("--model DIR is required");
    auto tok = ModelTokenizer(o.model_dir);
    if (!tok.ok()) return tok.status();
    auto encoded = (*tok)->Encode(text);
    if (!encoded.ok()) return encoded.status();
    ids = *std::move(encoded);
  }
  if (ids.empty()) return absl::InvalidArgumentError("expert-load: the input has no tokens");
  auto m = LoadModel(o);
  if (!m.ok()) return m.status();
  const model::ModelConfig& c = m->model->config();
  for (int32_t id : ids)
    if (id < 0 || id >= c.vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary (", c.vocab_size, ")"));
  // Sequences of `window` tokens (at most the model's context), each from an empty cache; the
  // model counts every token's expert choices (Glm5Model::routed_tokens, as serving workers do).
  const int64_t window = std::min<int64_t>(o.window, c.max_position_embeddings);
  for (size_t begin = 0; begin < ids.size(); begin += window) {
    auto cache = m->model->NewCache();
    std::vector<model::SequenceInput> in(1);
    in[0].cache = cache.get();
    in[0].tokens.assign(ids.begin() + begin, ids.begin() + std::min(ids.size(), begin + window));
    if (auto out = m->model->Forward(in, model::LogitRows::kNone); !out.ok()) return out.status();
  }
  placement::ExpertLoad load;
  load.model = placement::ModelNameFromPath(o.model_dir);
  load.tokens_per_expert = m->model->routed_tokens();
  load.tokens = static_cast<int64_t>(ids.size());
  return SaveExpertLoad(load, c.n_routed_experts, o.out);
}

absl::StatusOr<std::string> SaveExpertLoad(const placement::ExpertLoad& load, int64_t n_routed_experts,
                                           const std::string& out_path) {
  const std::string json = placement::ExpertLoadToJson(load);
  if (out_path.empty()) return json;
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!(out << json) || !out.flush())
    return absl::PermissionDeniedError(absl::StrCat("--out ", out_path, ": cannot write"));
  if (load.tokens_per_expert.empty())
    return absl::StrCat("no routing recorded yet (no tokens ran); written to ", out_path, "\n");
  // How skewed the routing is: the most-chosen expert's share of each layer's choices.
  double low = 1, high = 0;
  for (const auto& [layer, counts] : load.tokens_per_expert) {
    int64_t sum = 0, top = 0;
    for (int64_t n : counts) sum += n, top = std::max(top, n);
    if (sum > 0) low = std::min(low, static_cast<double>(top) / sum), high = std::max(high, static_cast<double>(top) / sum);
  }
  return absl::StrFormat(
      "routing of %d tokens over %d MoE layers written to %s; the most-chosen expert takes %.1f-%.1f%% of a layer's "
      "choices (%.1f%% if even)\n",
      load.tokens, load.tokens_per_expert.size(), out_path, 100 * low, 100 * high, 100.0 / n_routed_experts);
}

}  // namespace glm::cli
