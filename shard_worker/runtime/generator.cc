#include "shard_worker/runtime/generator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace glm::runtime {

absl::StatusOr<GenerateResult> Generate(const model::Glm5Model& model, const std::vector<int32_t>& prompt,
                                        const GenerateOptions& options) {
  const model::ModelConfig& c = model.config();
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (options.max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  if (static_cast<int64_t>(prompt.size()) + options.max_new_tokens > c.max_position_embeddings)
    return absl::InvalidArgumentError(absl::StrCat("prompt (", prompt.size(), ") + max_new_tokens (",
                                                   options.max_new_tokens, ") exceeds the context of ",
                                                   c.max_position_embeddings));
  auto cache = model.NewCache();
  GenerateResult result;
  result.finish_reason = "length";
  std::vector<int32_t> history = prompt;
  std::vector<float> logits;
  const int64_t chunk = std::max<int64_t>(1, options.prefill_chunk);
  for (size_t begin = 0; begin < prompt.size(); begin += chunk) {
    size_t end = std::min(prompt.size(), begin + chunk);
    std::vector<model::SequenceInput> batch(1);
    batch[0].cache = cache.get();
    batch[0].tokens.assign(prompt.begin() + begin, prompt.begin() + end);
    auto out = model.Forward(batch, end == prompt.size() ? model::LogitRows::kLast : model::LogitRows::kNone);
    if (!out.ok()) return out.status();
    if (end == prompt.size()) logits = std::move(out->logits);
  }
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    // Token `step`'s own generator (TokenSeed): the cluster draws the same one.
    SamplingParams sp = options.sampling;
    sp.seed = TokenSeed(options.sampling.seed, step);
    Sampler sampler(sp);
    if (auto s = CheckLogitsFinite(logits.data(), 1, c.vocab_size); !s.ok()) return s;
    int32_t next = sampler.Sample(logits.data(), c.vocab_size, history, prompt.size());
    result.tokens.push_back(next);
    history.push_back(next);
    bool is_eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if (options.on_token && !options.on_token(next)) break;
    if (is_eos && !options.ignore_eos) {
      result.finish_reason = "stop";
      break;
    }
    if (step + 1 == options.max_new_tokens) break;
    std::vector<model::SequenceInput> batch(1);
    batch[0].cache = cache.get();
    batch[0].tokens = {next};
    auto out = model.Forward(batch, model::LogitRows::kLast);
    if (!out.ok()) return out.status();
    result.decode_weight_bytes += out->weight_bytes_read;
    logits = std::move(out->logits);
  }
  return result;
}

}  // namespace glm::runtime
