// The text subcommands of glmctl (tokenize, detokenize, render-chat) as plain functions that
// return the JSON line to print; glmctl_main.cc parses the flags and prints.
#ifndef GLM_COORDINATOR_CLI_TEXT_COMMANDS_H_
#define GLM_COORDINATOR_CLI_TEXT_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"

namespace glm::cli {

// `glmctl tokenize --tokenizer PATH --text-file F` (or `--prompt TEXT`) -> {"ids":[...]} (no
// special tokens added, as Hugging Face's add_special_tokens=False). PATH: tokenizer.json or a
// model directory (glmctl passes --model's when --tokenizer is not given). The text is F's, else
// `prompt`.
absl::StatusOr<std::string> RunTokenizeCommand(const std::string& tokenizer_path, const std::string& text_file,
                                               const std::string& prompt = "");

// `glmctl detokenize --tokenizer PATH --ids 1,2,3` -> {"text":"..."}.
absl::StatusOr<std::string> RunDetokenizeCommand(const std::string& tokenizer_path,
                                                 const std::string& ids_csv);

// `glmctl render-chat --tokenizer-config PATH --request-file R.json` -> {"text":"..."}.
// R.json: {"messages": [...], "tools": [...]?, "add_generation_prompt": bool?,
// "special_tokens": {...}?, "chat_template_kwargs": {...}?}; the same fields may also sit under
// "inputs" (the layout of chat_template_vectors.json cases). Any other top-level field is
// passed to the template as an extra variable (e.g. "enable_thinking").
absl::StatusOr<std::string> RunRenderChatCommand(const std::string& tokenizer_config_path,
                                                 const std::string& request_file);

}  // namespace glm::cli

#endif  // GLM_COORDINATOR_CLI_TEXT_COMMANDS_H_
