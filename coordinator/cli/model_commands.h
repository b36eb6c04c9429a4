// The model-facing glmctl subcommands (forward, generate, synth), as functions returning the
// text to print, so tests can call them without a process.
#ifndef GLM_COORDINATOR_CLI_MODEL_COMMANDS_H_
#define GLM_COORDINATOR_CLI_MODEL_COMMANDS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/placement/expert_load.h"

namespace glm::cli {

struct ModelCommandOptions {
  std::string model_dir;
  std::string tokens_csv;
  std::string prompt;
  std::string out;
  bool mtp = false;
  int64_t max_new_tokens = 16;
  double temperature = 0.0;
  double top_p = 1.0;
  int32_t top_k = 0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool json = false;
  int32_t threads = 0;
  std::string preset;
  bool force = false;  // synth: replace the model files of a non-empty --out directory
  std::string message;  // chat: the user message
  std::string system;   // chat: a system message before it ("" = none)
  std::string text_file;  // expert-load: a text to run through the model (instead of --tokens)
  int64_t window = 2048;  // expert-load: tokens per sequence the text is cut into
  std::string speculative;  // generate/chat: mtp:K | ngram:K
  int64_t draft_vocab = 0;  // with mtp:K: SpeculativeConfig::draft_vocab
  // How the model is loaded (as the cluster's --weight-dtype, --quantize-scope and
  // --expert-memory-gib): model::ParseWeightDType / ParseQuantizeScope names; GiB of routed
  // experts held in memory, the rest streamed from disk (0 = all resident).
  std::string weight_dtype = "stored";
  std::string quantize_scope = "experts";
  double expert_memory_gib = 0;
  std::string activation_dtype = "f32";  // f32 | bf16 (kernels::SetBf16Activations for this process)
  bool amx_tiles = true;                 // bf16 on AMX tiles where the CPU has them (kernels/matmul_amx.h)
  std::string kv_cache_dtype = "f32";    // f32 | bf16 | int8 | fp8: the KV rows (kv_cache::ParseKvDType)
  std::string index_key_dtype = "f32";   // the same names: the DSA indexer key rows
  // generate --prompt / chat without json (glmctl --stream): the text as it is generated (chat:
  // reasoning between "<think>" and "</think>"); the command's result then only ends the line.
  std::function<void(const std::string& text)> on_text;
};

// "1,2,3" -> {1, 2, 3}; rejects empty items, signs, and non-digits.
absl::StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& csv);

absl::StatusOr<std::string> RunForwardCommand(const ModelCommandOptions& options);
absl::StatusOr<std::string> RunGenerateCommand(const ModelCommandOptions& options);
absl::StatusOr<std::string> RunSynthCommand(const ModelCommandOptions& options);
// quantize --model DIR --out DIR2 --weight-dtype int8|int4|int{8,4}-g<N>|int8-row [--force]: the
// checkpoint with its experts stored pre-quantised (model/quantized_checkpoint.h).
absl::StatusOr<std::string> RunQuantizeCommand(const ModelCommandOptions& options);
// Routing statistics for the planner's hot-expert replicas (placement/expert_load.h): runs the
// text (--text-file, tokenized with the model's tokenizer, or --tokens) through the model in
// sequences of `window` tokens and counts how many tokens chose each routed expert of each main
// model MoE layer. Writes the JSON to --out (and returns a summary), or returns the JSON.
absl::StatusOr<std::string> RunExpertLoadCommand(const ModelCommandOptions& options);
// A routing record (recorded here, or fetched from a server: `glmctl --server ... expert-load`)
// into `out_path` as JSON, returning a one-line summary of how skewed it is; without a path,
// returns the JSON.
absl::StatusOr<std::string> SaveExpertLoad(const placement::ExpertLoad& load, int64_t n_routed_experts,
                                           const std::string& out_path);
// Applies the model's chat template to one user message, generates, prints the reply (the
// text, or JSON with --json: tokens, text, reasoning and finish_reason).
absl::StatusOr<std::string> RunChatCommand(const ModelCommandOptions& options);

}  // namespace glm::cli

#endif  // GLM_COORDINATOR_CLI_MODEL_COMMANDS_H_
