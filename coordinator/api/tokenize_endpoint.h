// vLLM's /tokenize and /detokenize, the HTTP twins of gRPC Tokenize/Detokenize: a client counts
// a prompt's tokens with the server's own tokenizer and chat template (to fit a context budget,
// to build an exact-length benchmark prompt) without generating anything. The JSON shapes are
// vLLM's, so tools written for vLLM work unchanged:
//
//   POST /tokenize {"prompt": "text", "add_special_tokens": true, "return_token_strs": false}
//               or {"messages": [...], "tools", "chat_template_kwargs", "add_generation_prompt": true,
//                   "add_special_tokens": false}
//     -> {"count": N, "max_model_len": M, "tokens": [ids], "token_strs": null | ["..."]}
//   POST /detokenize {"tokens": [ids], "skip_special_tokens": false} -> {"prompt": "text"}
//
// "messages" renders exactly as /v1/chat/completions does, so `count` equals that request's
// usage.prompt_tokens. A prompt longer than the context is still counted (that is what a client
// asks to find out); `max_model_len` is there to compare against.
#ifndef GLM_COORDINATOR_API_TOKENIZE_ENDPOINT_H_
#define GLM_COORDINATOR_API_TOKENIZE_ENDPOINT_H_

#include "absl/status/statusor.h"
#include "coordinator/api/text_frontend.h"
#include "nlohmann/json.hpp"

namespace glm::api {

// The response body of /tokenize for a parsed request body. INVALID_ARGUMENT names the field;
// NOT_FOUND for a model name this server does not accept. `raw_body`, the body's text, keeps
// chat messages and tools in the client's key order (ParseOpenAiRequest).
absl::StatusOr<nlohmann::json> TokenizeBody(const TextFrontend& frontend, const nlohmann::json& body,
                                            const std::string* raw_body = nullptr);

// The response body of /detokenize. Token ids outside [0, vocab) are INVALID_ARGUMENT
// ("tokens[i]"), as in a completions prompt.
absl::StatusOr<nlohmann::json> DetokenizeBody(const TextFrontend& frontend, const nlohmann::json& body);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_TOKENIZE_ENDPOINT_H_
