#include "coordinator/api/openai_protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "coordinator/api/api_status.h"
#include "coordinator/api/json_fields.h"
#include "coordinator/api/response_format.h"
#include "coordinator/tokenizer/tool_call_parser.h"

namespace glm::api {
namespace {

using json = nlohmann::json;

absl::Status GetInt(const json& body, const char* key, int64_t* out, bool* present = nullptr) {
  if (!Present(body, key)) return absl::OkStatus();
  const json& v = body[key];
  // 16.0 is accepted (some clients send floats); 16.5 is not.
  if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9e15) {
    *out = static_cast<int64_t>(v.get<double>());
  } else if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidField(key, absl::StrCat(v.get<uint64_t>(), " is too large"));  // get<int64_t> would wrap
  } else if (v.is_number_integer()) {
    *out = v.get<int64_t>();
  } else {
    return InvalidField(key, "must be an integer");
  }
  if (present != nullptr) *present = true;
  return absl::OkStatus();
}

absl::Status GetTokenIds(const json& v, const std::string& field, std::vector<int32_t>* out) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) return InvalidField(absl::StrCat(field, "[", i, "]"), "must be an integer token id");
    if (v[i].is_number_unsigned() && v[i].get<uint64_t>() > static_cast<uint64_t>(INT32_MAX))  // not wrapped
      return InvalidField(absl::StrCat(field, "[", i, "]"), absl::StrCat(v[i].get<uint64_t>(), " is out of range"));
    const int64_t id = v[i].get<int64_t>();
    if (id < INT32_MIN || id > INT32_MAX)
      return InvalidField(absl::StrCat(field, "[", i, "]"), absl::StrCat(id, " is out of range"));
    out->push_back(static_cast<int32_t>(id));
  }
  return absl::OkStatus();
}

#define GLM_API_RETURN_IF_ERROR(expr) \
  do {                                \
    absl::Status _s = (expr);         \
    if (!_s.ok()) return _s;          \
  } while (0)

// OpenAI's predicted outputs: {"type": "content", "content": "..." | [{"type": "text", "text": "..."}]}.
absl::Status ParsePrediction(const json& p, std::string* text) {
  if (!p.is_object()) return InvalidField("prediction", "must be an object {\"type\": \"content\", \"content\": ...}");
  const auto type = p.find("type");
  if (type == p.end() || !type->is_string() || *type != "content")
    return InvalidField("prediction.type", "must be \"content\"");
  const auto content = p.find("content");
  if (content == p.end() || content->is_null()) return InvalidField("prediction.content", "is required");
  if (content->is_string()) {
    *text = content->get<std::string>();
  } else if (content->is_array()) {
    for (size_t i = 0; i < content->size(); ++i) {
      const json& part = (*content)[i];
      const std::string field = absl::StrCat("prediction.content[", i, "]");
      if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string())
        return InvalidField(field, "must be a text part {\"type\": \"text\", \"text\": \"...\"}");
      *text += part["text"].get<std::string>();
    }
  } else {
    return InvalidField("prediction.content", "must be a string or an array of text parts");
  }
  return absl::OkStatus();  // its size is TextFrontend::Prepare's to check, for both front ends
}

absl::Status ParseSampling(const json& body, const std::string* raw_body, OpenAiRequest* r) {
  ApiRequest& a = r->api;
  a.temperature = 1.0f;  // OpenAI's default
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "temperature", &a.temperature));
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "top_p", &a.top_p));
  int64_t top_k = 0;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "top_k", &top_k));
  if (top_k < INT32_MIN || top_k > INT32_MAX) return InvalidField("top_k", "is out of range");
  a.top_k = static_cast<int32_t>(top_k);
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "min_p", &a.min_p));
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "repetition_penalty", &a.repetition_penalty));
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "presence_penalty", &a.presence_penalty));
  GLM_API_RETURN_IF_ERROR(GetOptionalFloat(body, "frequency_penalty", &a.frequency_penalty));
  if (Present(body, "logit_bias")) {
    // OpenAI's shape: {"token id as a string": bias}. Ranges are checked with the other fields.
    const json& bias = body["logit_bias"];
    if (!bias.is_object()) return InvalidField("logit_bias", "must be an object mapping token ids to biases");
    for (const auto& [key, value] : bias.items()) {
      const std::string field = absl::StrCat("logit_bias[\"", key, "\"]");
      int64_t id = 0;
      if (!absl::SimpleAtoi(key, &id) || id < INT32_MIN || id > INT32_MAX)
        return InvalidField(field, "the key must be a token id");
      float b = 0;
      GLM_API_RETURN_IF_ERROR(ToFloat(value, field, &b));
      a.logit_bias.emplace_back(static_cast<int32_t>(id), b);
    }
  }
  if (Present(body, "seed")) {
    int64_t seed = 0;
    GLM_API_RETURN_IF_ERROR(GetInt(body, "seed", &seed));
    a.seed = static_cast<uint64_t>(seed);
  }
  // max_completion_tokens is the newer spelling; it wins when both are present.
  int64_t max_tokens = 0;
  bool has_max = false;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "max_tokens", &max_tokens, &has_max));
  if (Present(body, "max_completion_tokens")) {
    GLM_API_RETURN_IF_ERROR(GetInt(body, "max_completion_tokens", &max_tokens, &has_max));
    a.max_tokens_field = "max_completion_tokens";
  }
  // OpenAI and vLLM refuse 0: taking it as "no limit" would run to the end of the context.
  if (has_max && max_tokens < 1) return InvalidField(a.max_tokens_field, "must be >= 1 (or null for the default)");
  if (has_max) a.max_tokens = max_tokens;
  if (Present(body, "stop")) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      a.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (size_t i = 0; i < stop.size(); ++i) {
        if (!stop[i].is_string()) return InvalidField(absl::StrCat("stop[", i, "]"), "must be a string");
        a.stop.push_back(stop[i].get<std::string>());
      }
    } else {
      return InvalidField("stop", "must be a string or an array of strings");
    }
  }
  if (Present(body, "stop_token_ids")) {
    if (!body["stop_token_ids"].is_array()) return InvalidField("stop_token_ids", "must be an array of token ids");
    GLM_API_RETURN_IF_ERROR(GetTokenIds(body["stop_token_ids"], "stop_token_ids", &a.stop_token_ids));
  }
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "ignore_eos", &a.ignore_eos));
  int64_t min_tokens = 0;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "min_tokens", &min_tokens));
  if (min_tokens < 0 || min_tokens > INT32_MAX) return InvalidField("min_tokens", "must be a non-negative integer");
  a.min_tokens = static_cast<int32_t>(min_tokens);
  if (Present(body, "allowed_token_ids")) {
    if (!body["allowed_token_ids"].is_array() || body["allowed_token_ids"].empty())
      return InvalidField("allowed_token_ids", "must be a non-empty array of token ids");
    GLM_API_RETURN_IF_ERROR(GetTokenIds(body["allowed_token_ids"], "allowed_token_ids", &a.allowed_token_ids));
  }
  int64_t truncate = 0;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "truncate_prompt_tokens", &truncate));
  if (truncate < -1 || truncate > INT32_MAX)
    return InvalidField("truncate_prompt_tokens", "must be -1 (the model's context), 0 (none) or a token count");
  a.truncate_prompt_tokens = static_cast<int32_t>(truncate);
  if (Present(body, "cache_salt")) {
    if (!body["cache_salt"].is_string() || body["cache_salt"].get<std::string>().empty())
      return InvalidField("cache_salt", "must be a non-empty string");
    a.cache_salt = body["cache_salt"].get<std::string>();
  }
  int64_t priority = 0;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "priority", &priority));
  if (priority < INT32_MIN || priority > INT32_MAX) return InvalidField("priority", "must be a 32-bit integer");
  a.priority = static_cast<int32_t>(priority);
  if (Present(body, "bad_words")) {
    const json& words = body["bad_words"];
    if (!words.is_array()) return InvalidField("bad_words", "must be an array of strings");
    for (size_t i = 0; i < words.size(); ++i) {
      if (!words[i].is_string()) return InvalidField(absl::StrCat("bad_words[", i, "]"), "must be a string");
      a.bad_words.push_back(words[i].get<std::string>());
    }
  }
  // vLLM's other sampling extensions would change the output if honoured: refused, not ignored.
  if (Present(body, "use_beam_search") && body["use_beam_search"] != false)
    return InvalidField("use_beam_search", "is not supported by this server");
  if (Present(body, "logits_processors") && !(body["logits_processors"].is_array() && body["logits_processors"].empty()))
    return InvalidField("logits_processors", "is not supported by this server");
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "skip_special_tokens", &a.skip_special_tokens));
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "include_stop_str_in_output", &a.include_stop_str_in_output));
  int64_t n = 1;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "n", &n));
  if (n < 1 || n > kMaxChoices) return InvalidField("n", absl::StrCat("must be in [1, ", kMaxChoices, "]"));
  r->n = static_cast<int>(n);
  int64_t best_of = 1;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "best_of", &best_of));
  if (best_of != 1) return InvalidField("best_of", "only best_of = 1 is supported");
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "stream", &r->stream));
  if (Present(body, "stream_options")) {
    if (!body["stream_options"].is_object()) return InvalidField("stream_options", "must be an object");
    const json& so = body["stream_options"];
    if (Present(so, "include_usage")) {
      if (!so["include_usage"].is_boolean()) return InvalidField("stream_options.include_usage", "must be true or false");
      r->include_usage = so["include_usage"].get<bool>();
    }
    if (Present(so, "continuous_usage_stats")) {  // vLLM's: usage on every chunk (with include_usage)
      if (!so["continuous_usage_stats"].is_boolean())
        return InvalidField("stream_options.continuous_usage_stats", "must be true or false");
      r->continuous_usage = so["continuous_usage_stats"].get<bool>();
    }
    // As vLLM: options for a stream that is not one are a client mistake, not something to ignore.
    if (!r->stream) return InvalidField("stream_options", "is only allowed when stream is true");
  }
  if (Present(body, "response_format")) {
    auto grammar = ParseResponseFormat(body["response_format"], {"response_format", false, raw_body, {"response_format"}});
    if (!grammar.ok()) return grammar.status();
    a.output_grammar = *std::move(grammar);
    a.output_format_field = "response_format";
  }
  std::shared_ptr<const structured::JsonGrammar> guided;
  std::string guided_field;
  GLM_API_RETURN_IF_ERROR(ParseGuidedDecoding(body, raw_body, &guided, &guided_field));
  if (guided != nullptr) {
    if (a.output_grammar != nullptr) return InvalidField(guided_field, "cannot be combined with response_format");
    a.output_grammar = std::move(guided);
    a.output_format_field = guided_field;
  }
  if (Present(body, "speculative")) {
    if (!body["speculative"].is_string()) return InvalidField("speculative", "must be a string");
    a.speculative = body["speculative"].get<std::string>();
  }
  if (Present(body, "prediction")) GLM_API_RETURN_IF_ERROR(ParsePrediction(body["prediction"], &a.prediction));
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyReasoningEffort(const json& effort, const std::string& field, json* template_kwargs) {
  if (effort.is_null()) return absl::OkStatus();
  static constexpr const char* kEfforts[] = {"none", "minimal", "low", "medium", "high", "xhigh"};
  if (!effort.is_string() ||
      std::none_of(std::begin(kEfforts), std::end(kEfforts), [&](const char* e) { return effort == e; }))
    return InvalidField(field, "must be one of none, minimal, low, medium, high, xhigh");
  if (effort == "none" && !(template_kwargs->is_object() && template_kwargs->contains("enable_thinking")))
    (*template_kwargs)["enable_thinking"] = false;
  return absl::OkStatus();
}

namespace {

absl::Status ParseChat(const json& body, const std::string* raw_body, OpenAiRequest* r) {
  ApiRequest& a = r->api;
  a.input = ApiRequest::Input::kChat;
  a.input_field = "messages";
  if (!Present(body, "messages")) return InvalidField("messages", "is required");
  // What the template prints, in the client's key order (ApiRequest::messages says why).
  nlohmann::ordered_json ordered = OrderedBody(body, raw_body);
  a.messages = std::move(ordered["messages"]);
  if (Present(body, "tools")) a.tools = std::move(ordered["tools"]);
  GLM_API_RETURN_IF_ERROR(TextFrontend::ValidateTools(a.tools, "tools"));
  if (a.tools.is_array() && a.tools.empty()) a.tools = nullptr;
  if (Present(body, "tool_choice")) {
    // "auto" (the default), "none", or forced: "required" (some call) and a named function
    // ({"type": "function", "function": {"name"}}) are honoured by constrained decoding.
    std::string forced;  // "" = not forced; "*" = any tool
    GLM_API_RETURN_IF_ERROR(ParseToolChoice(body["tool_choice"], "tool_choice", /*flat=*/false, &a.tools, &forced));
    bool parallel = true;  // OpenAI's default: a forced reply may make several calls
    GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "parallel_tool_calls", &parallel));
    if (!forced.empty()) {
      if (a.output_grammar != nullptr)
        return InvalidField("tool_choice", absl::StrCat("a forced tool call cannot be combined with ", a.output_format_field));
      auto grammar = ForcedToolCall(a.tools, forced == "*" ? "" : forced, "tool_choice", parallel);
      if (!grammar.ok()) return grammar.status();
      a.output_grammar = *std::move(grammar);
      a.output_format_field = "tool_choice";
    }
  }
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "add_generation_prompt", &a.add_generation_prompt));
  // vLLM's chat extensions: the final assistant message continued (no generation prompt after it),
  // special tokens added around the rendered text; a template or an echo of the request's own is
  // refused (the model's template renders every prompt here), as is vLLM's token-id logprob format.
  bool continue_final = false;
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "continue_final_message", &continue_final));
  if (continue_final) {
    if (Present(body, "add_generation_prompt") && a.add_generation_prompt)
      return InvalidField("continue_final_message", "cannot be combined with add_generation_prompt: true");
    const nlohmann::ordered_json& last =
        a.messages.is_array() && !a.messages.empty() ? a.messages.back() : nlohmann::ordered_json();
    // (json::value would throw on a role that is no string: the messages are checked later.)
    if (!last.is_object() || !last.contains("role") || last["role"] != "assistant")
      return InvalidField("continue_final_message", "needs the last message to be the assistant's");
    a.add_generation_prompt = false;
    a.continue_final_message = true;  // cut after its content, as transformers does (EncodeChat)
  }
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "add_special_tokens", &a.chat_add_special_tokens));
  if (Present(body, "chat_template"))
    return InvalidField("chat_template", "is not supported in a request: the model's own template renders the chat");
  bool chat_echo = false;
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "echo", &chat_echo));
  if (chat_echo) return InvalidField("echo", "is not supported on chat completions (it is on /v1/completions)");
  if (Present(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object()) return InvalidField("chat_template_kwargs", "must be an object");
    a.template_kwargs = body["chat_template_kwargs"];
  }
  // vLLM's `documents` (RAG): the chat template's `documents` variable, as transformers passes it
  // (a chat_template_kwargs.documents of the same request wins).
  if (Present(body, "documents")) {
    const json& docs = body["documents"];
    if (!docs.is_array()) return InvalidField("documents", "must be an array of objects");
    for (size_t i = 0; i < docs.size(); ++i)
      if (!docs[i].is_object()) return InvalidField(absl::StrCat("documents[", i, "]"), "must be an object");
    if (!a.template_kwargs.contains("documents")) a.template_kwargs["documents"] = docs;
  }
  if (Present(body, "reasoning_effort"))
    GLM_API_RETURN_IF_ERROR(ApplyReasoningEffort(body["reasoning_effort"], "reasoning_effort", &a.template_kwargs));
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "logprobs", &r->logprobs));
  int64_t top = 0;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "top_logprobs", &top));
  if (top < 0 || top > TextFrontend::kMaxTopLogprobs)
    return InvalidField("top_logprobs", absl::StrCat("must be in [0, ", TextFrontend::kMaxTopLogprobs, "]"));
  if (top > 0 && !r->logprobs) return InvalidField("top_logprobs", "needs logprobs = true");
  a.logprobs = r->logprobs;
  a.top_logprobs = static_cast<int32_t>(top);
  return absl::OkStatus();
}

absl::Status ParseCompletion(const json& body, OpenAiRequest* r) {
  ApiRequest& a = r->api;
  a.input_field = "prompt";
  if (!Present(body, "prompt")) return InvalidField("prompt", "is required");
  const json& p = body["prompt"];
  if (p.is_string()) {
    a.input = ApiRequest::Input::kText;
    a.text = p.get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    a.input = ApiRequest::Input::kTokenIds;
    GLM_API_RETURN_IF_ERROR(GetTokenIds(p, "prompt", &a.token_ids));
  } else if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
    // Several prompts: strings or token-id arrays (OpenAI's batch form).
    for (size_t i = 0; i < p.size(); ++i) {
      PromptInput in;
      in.field = absl::StrCat("prompt[", i, "]");
      if (p[i].is_string()) {
        in.input = ApiRequest::Input::kText;
        in.text = p[i].get<std::string>();
      } else if (p[i].is_array() && !p[i].empty()) {
        in.input = ApiRequest::Input::kTokenIds;
        GLM_API_RETURN_IF_ERROR(GetTokenIds(p[i], in.field, &in.token_ids));
      } else {
        return InvalidField(in.field, "must be a string or a non-empty array of token ids");
      }
      r->prompts.push_back(std::move(in));
    }
    a.input = r->prompts[0].input;
    a.text = r->prompts[0].text;
    a.token_ids = r->prompts[0].token_ids;
    a.input_field = r->prompts[0].field;
    if (r->prompts.size() == 1) r->prompts.clear();
    if (static_cast<int64_t>(r->prompts.size()) * r->n > kMaxGenerations)
      return InvalidField("prompt", absl::StrCat(r->prompts.size(), " prompts × n = ", r->n, " is more than ",
                                                 kMaxGenerations, " generations"));
  } else if (p.is_array() && p.empty()) {
    return InvalidField("prompt", "is empty");
  } else {
    return InvalidField("prompt", "must be a string or an array of token ids");
  }
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "echo", &r->echo));
  if (Present(body, "suffix") && !(body["suffix"].is_string() && body["suffix"].get<std::string>().empty()))
    return InvalidField("suffix", "is not supported by this server");
  // The legacy completions API stops at 16 tokens unless told otherwise.
  if (!a.max_tokens.has_value()) a.max_tokens = 16;
  int64_t logprobs = 0;
  bool has_logprobs = false;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "logprobs", &logprobs, &has_logprobs));
  if (has_logprobs) {
    if (logprobs < 0 || logprobs > TextFrontend::kMaxTopLogprobs)
      return InvalidField("logprobs", absl::StrCat("must be in [0, ", TextFrontend::kMaxTopLogprobs, "]"));
    r->logprobs = true;
    a.logprobs = true;
    a.top_logprobs = static_cast<int32_t>(logprobs);
    a.top_logprobs_field = "logprobs";
    // Echo with logprobs scores the prompt too (what lm-evaluation-harness's loglikelihood uses).
    if (r->echo) a.prompt_logprobs = a.top_logprobs;
  }
  return absl::OkStatus();
}

}  // namespace


std::string DumpJson(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, const json& body,
                                                 const std::string& served_name, const std::string* raw_body) {
  if (!body.is_object()) return InvalidField("body", "must be a JSON object");
  OpenAiRequest r;
  r.endpoint = endpoint;
  r.model = served_name;
  if (Present(body, "model")) {
    if (!body["model"].is_string()) return InvalidField("model", "must be a string");
    if (!body["model"].get<std::string>().empty()) r.model = body["model"].get<std::string>();
  }
  GLM_API_RETURN_IF_ERROR(ParseSampling(body, raw_body, &r));
  GLM_API_RETURN_IF_ERROR(endpoint == OpenAiEndpoint::kChat ? ParseChat(body, raw_body, &r) : ParseCompletion(body, &r));
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "return_token_ids", &r.return_token_ids));
  GLM_API_RETURN_IF_ERROR(GetOptionalBool(body, "return_tokens_as_token_ids", &r.tokens_as_ids));
  int64_t prompt_logprobs = -1;
  bool has_prompt_logprobs = false;
  GLM_API_RETURN_IF_ERROR(GetInt(body, "prompt_logprobs", &prompt_logprobs, &has_prompt_logprobs));
  if (has_prompt_logprobs) {
    if (prompt_logprobs < 0 || prompt_logprobs > TextFrontend::kMaxTopLogprobs)
      return InvalidField("prompt_logprobs", absl::StrCat("must be in [0, ", TextFrontend::kMaxTopLogprobs,
                                                          "] (-1, the whole vocabulary, is not available here)"));
    if (r.stream) return InvalidField("prompt_logprobs", "is not available with stream: true");
    r.prompt_logprobs = static_cast<int>(prompt_logprobs);
    r.api.prompt_logprobs = std::max(r.api.prompt_logprobs, r.prompt_logprobs);
  }
  return r;
}

OpenAiResponseBuilder::OpenAiResponseBuilder(const OpenAiRequest* request, const TextFrontend* frontend,
                                             std::string id, int64_t created, int choice_index, int prompt_index)
    : request_(request),
      frontend_(frontend),
      id_(std::move(id)),
      created_(created),
      index_(choice_index),
      prompt_index_(prompt_index) {}

json OpenAiResponseBuilder::Chunk(json choice) const {
  const bool chat = request_->endpoint == OpenAiEndpoint::kChat;
  json c = {{"id", id_},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created_},
            {"model", request_->model},
            {"choices", json::array()}};
  if (!choice.is_null()) c["choices"].push_back(std::move(choice));
  // include_usage: null on the choices' chunks (OpenAI), or, with vLLM's continuous_usage_stats,
  // the choice's usage so far.
  if (request_->include_usage) c["usage"] = request_->continuous_usage && !c["choices"].empty() ? Usage() : json(nullptr);
  return c;
}

json OpenAiResponseBuilder::Usage() const { return UsageOf({this}); }

json OpenAiResponseBuilder::UsageOf(const std::vector<const OpenAiResponseBuilder*>& choices) {
  // Each prompt's tokens (and the part served from the cache) once, from its first choice;
  // every choice's output.
  int32_t prompt = 0, cached = 0, completion = 0, reasoning = 0, accepted = 0, rejected = 0;
  std::set<int> counted;
  for (const auto* c : choices) {
    completion += c->completion_tokens_;
    reasoning += c->reasoning_tokens_;
    accepted += c->accepted_prediction_tokens_;
    rejected += c->rejected_prediction_tokens_;
    if (!counted.insert(c->prompt_index_).second) continue;
    prompt += c->prompt_tokens_;
    cached += c->cached_tokens_;
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}},
          {"completion_tokens_details",
           {{"reasoning_tokens", reasoning},
            {"accepted_prediction_tokens", accepted},
            {"rejected_prediction_tokens", rejected}}}};
}

json OpenAiResponseBuilder::ChatLogprobs(const std::vector<scheduler::TokenLogprob>& lps) const {
  auto entry = [this](int32_t token, float logprob) {
    // `bytes` are the token's own bytes: for part of a character, not U+FFFD's (the lossy text).
    const std::string bytes = frontend_->TokenBytes(token);
    // The token's (lossy) text as vLLM gives it: chat alternatives are a list, so tokens that
    // share a text stay apart, and `bytes` tells them apart.
    return json{{"token", request_->tokens_as_ids ? absl::StrCat("token_id:", token) : frontend_->TokenText(token)},
                {"logprob", logprob},
                {"bytes", std::vector<uint8_t>(bytes.begin(), bytes.end())}};
  };
  json content = json::array();
  for (const auto& lp : lps) {
    json e = entry(lp.token, lp.logprob);
    e["top_logprobs"] = json::array();
    for (const auto& [tok, logprob] : lp.top) e["top_logprobs"].push_back(entry(tok, logprob));
    content.push_back(std::move(e));
  }
  return {{"content", std::move(content)}};
}

json OpenAiResponseBuilder::EchoLogprobs(const std::vector<scheduler::TokenLogprob>& prompt_lps) const {
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  TextOffset offset;
  size_t at = 0;  // bytes of echo_text_ matched so far
  // The prompt may be scored with more alternatives (prompt_logprobs) than `logprobs` asks.
  const size_t alternatives = request_->prompt_logprobs > request_->api.top_logprobs
                                  ? static_cast<size_t>(request_->api.top_logprobs) : SIZE_MAX;
  for (size_t i = 0; i < prompt_ids_.size(); ++i) {
    out["tokens"].push_back(LogprobToken(prompt_ids_[i]));
    // A special token the echoed text does not show (the BOS a text prompt was encoded with)
    // takes no room in it.
    std::string bytes = frontend_->TokenBytes(prompt_ids_[i]);
    if (echo_text_.compare(at, bytes.size(), bytes) != 0 && frontend_->IsSpecialToken(prompt_ids_[i])) bytes.clear();
    at = std::min(echo_text_.size(), at + bytes.size());
    out["text_offset"].push_back(offset.Take(bytes));
    // Position i's logprob was computed from the tokens before it: none for the first.
    if (i == 0 || i - 1 >= prompt_lps.size()) {
      out["token_logprobs"].push_back(nullptr);
      out["top_logprobs"].push_back(nullptr);
      continue;
    }
    const scheduler::TokenLogprob& lp = prompt_lps[i - 1];
    out["token_logprobs"].push_back(lp.logprob);
    out["top_logprobs"].push_back(TopLogprobs(prompt_ids_[i], lp, alternatives));
  }
  return out;
}

json OpenAiResponseBuilder::TopLogprobs(int32_t token, const scheduler::TokenLogprob& lp, size_t limit) const {
  // OpenAI and vLLM: the `logprobs` best alternatives plus the token actually there, which need
  // not be among them (logprobs: 0 gives just that token). Written last, so an alternative with
  // the same text cannot hide its logprob.
  json top = json::object();
  for (size_t k = 0; k < std::min(limit, lp.top.size()); ++k) top[LogprobToken(lp.top[k].first)] = lp.top[k].second;
  top[LogprobToken(token)] = lp.logprob;
  return top;
}

std::string OpenAiResponseBuilder::LogprobToken(int32_t token) const {
  return request_->tokens_as_ids ? absl::StrCat("token_id:", token) : frontend_->LogprobTokenName(token);
}

OpenAiResponseBuilder::TextOffset OpenAiResponseBuilder::EchoEnd() const {
  TextOffset end;
  end.Take(echo_text_);
  end.continuation_left = 0;
  return end;
}

size_t OpenAiResponseBuilder::TextOffset::Take(std::string_view bytes) {
  auto continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
  const size_t at = !bytes.empty() && continuation(bytes[0]) && continuation_left > 0 && code_points > 0
                        ? code_points - 1
                        : code_points;
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (continuation(ch) && continuation_left > 0) {
      --continuation_left;
      continue;
    }
    // A lead byte starts a character; a stray continuation byte is one too (U+FFFD in the text).
    ++code_points;
    continuation_left = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  }
  return at;
}

std::string OpenAiResponseBuilder::EmittedBytes(int32_t token) const {
  if (request_->api.skip_special_tokens && frontend_->IsSpecialToken(token)) return "";
  return frontend_->TokenBytes(token);
}

// Appends completions-logprobs arrays `b` to `a` (each array, in order).
static void AppendLogprobs(json& a, const json& b) {
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
    for (const auto& v : b[key]) a[key].push_back(v);
}

json OpenAiResponseBuilder::CompletionLogprobs(const std::vector<scheduler::TokenLogprob>& lps,
                                               TextOffset* offset) const {
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const auto& lp : lps) {
    out["tokens"].push_back(LogprobToken(lp.token));
    out["token_logprobs"].push_back(lp.logprob);
    out["top_logprobs"].push_back(TopLogprobs(lp.token, lp));
    out["text_offset"].push_back(offset->Take(EmittedBytes(lp.token)));
  }
  return out;
}

std::string OpenAiResponseBuilder::StreamChunks(const OutputDelta& d) {
  std::string out = StreamChoiceChunks(d);
  if (d.finished) out += StreamEnd(Usage());
  return out;
}

std::string OpenAiResponseBuilder::StreamEnd(const json& usage) const {
  std::string out;
  if (request_->include_usage) {
    json usage_chunk = Chunk(nullptr);
    usage_chunk["usage"] = usage;
    absl::StrAppend(&out, "data: ", DumpJson(usage_chunk), "\n\n");
  }
  return out + "data: [DONE]\n\n";
}

json OpenAiResponseBuilder::VllmPromptLogprobs() const {
  const std::vector<scheduler::TokenLogprob>& lps = PromptLogprobs();
  json out = json::array();
  for (size_t i = 0; i < prompt_ids_.size(); ++i) {
    if (i == 0 || i - 1 >= lps.size()) {  // the first token follows nothing
      out.push_back(nullptr);
      continue;
    }
    const scheduler::TokenLogprob& lp = lps[i - 1];
    json position = json::object();
    auto add = [&](int32_t token, float logprob, int32_t rank) {
      position[std::to_string(token)] = {{"logprob", logprob}, {"rank", rank}, {"decoded_token", LogprobToken(token)}};
    };
    const size_t n = std::min(lp.top.size(), static_cast<size_t>(request_->prompt_logprobs));
    for (size_t k = 0; k < n; ++k) add(lp.top[k].first, lp.top[k].second, static_cast<int32_t>(k + 1));
    add(prompt_ids_[i], lp.logprob, lp.rank);
    out.push_back(std::move(position));
  }
  return out;
}

std::string OpenAiResponseBuilder::StreamChoiceChunks(const OutputDelta& d) {
  const bool chat = request_->endpoint == OpenAiEndpoint::kChat;
  prompt_tokens_ = d.prompt_tokens;
  completion_tokens_ = d.completion_tokens;
  cached_tokens_ = d.cached_tokens;
  reasoning_tokens_ = d.reasoning_tokens;
  accepted_prediction_tokens_ = d.accepted_prediction_tokens;
  rejected_prediction_tokens_ = d.rejected_prediction_tokens;
  std::string out;
  auto emit = [&out](const json& j) { absl::StrAppend(&out, "data: ", DumpJson(j), "\n\n"); };

  if (!d.prompt_logprobs.empty()) prompt_logprobs_ = d.prompt_logprobs;
  if (!chat && request_->echo && !echo_sent_) {
    // The prompt first, in a chunk of its own (with its tokens' logprobs when asked for);
    // generated tokens' text offsets then start after it.
    echo_sent_ = true;
    json choice = {{"index", index_}, {"text", echo_text_}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (request_->logprobs) {
      choice["logprobs"] = EchoLogprobs(PromptLogprobs());
      text_offset_ = EchoEnd();
    }
    emit(Chunk(std::move(choice)));
  }
  if (chat && !role_sent_) {
    role_sent_ = true;
    json chunk = Chunk({{"index", index_},
                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                        {"logprobs", nullptr},
                        {"finish_reason", nullptr}});
    if (request_->return_token_ids) chunk["prompt_token_ids"] = prompt_ids_;
    emit(chunk);
  }
  // return_token_ids: each chunk's new ids on its choice (completions: the prompt's on the first).
  auto add_ids = [&](json& choice) {
    if (!request_->return_token_ids) return;
    choice["token_ids"] = d.tokens;
    if (!chat && !prompt_ids_sent_) choice["prompt_token_ids"] = prompt_ids_;
    prompt_ids_sent_ = true;
  };
  // With return_token_ids a token that adds no text yet (part of a character) still gets a chunk.
  const bool has_news = !d.text.empty() || !d.reasoning.empty() || !d.tool_calls.empty() ||
                        (request_->logprobs && !d.logprobs.empty()) ||
                        (request_->return_token_ids && !d.tokens.empty() && !d.finished);
  if (has_news) {
    json choice = {{"index", index_}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (chat) {
      json delta = json::object();
      if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
      if (!d.text.empty()) delta["content"] = d.text;
      if (!d.tool_calls.empty()) {
        json calls = json::array();
        for (const auto& c : d.tool_calls) {
          calls.push_back({{"index", tool_index_++},
                           {"id", c.id},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        delta["tool_calls"] = std::move(calls);
      }
      choice["delta"] = std::move(delta);
      if (request_->logprobs && !d.logprobs.empty()) choice["logprobs"] = ChatLogprobs(d.logprobs);
    } else {
      choice["text"] = d.text;
      if (request_->logprobs && !d.logprobs.empty()) {
        choice["logprobs"] = CompletionLogprobs(d.logprobs, &text_offset_);
      }
    }
    add_ids(choice);
    emit(Chunk(std::move(choice)));
  }
  if (d.finished) {
    json choice = {{"index", index_}, {"logprobs", nullptr}, {"finish_reason", d.finish_reason}};
    if (chat) {
      choice["delta"] = json::object();
    } else {
      choice["text"] = "";
    }
    if (has_news) {
      if (request_->return_token_ids) choice["token_ids"] = json::array();  // sent with the text above
    } else {
      add_ids(choice);
    }
    emit(Chunk(std::move(choice)));
  }
  return out;
}

std::string OpenAiResponseBuilder::StreamError(const json& error) {
  return absl::StrCat("data: ", DumpJson(error), "\n\ndata: [DONE]\n\n");
}

void OpenAiResponseBuilder::Accumulate(const OutputDelta& d) {
  prompt_tokens_ = d.prompt_tokens;
  completion_tokens_ = d.completion_tokens;
  cached_tokens_ = d.cached_tokens;
  reasoning_tokens_ = d.reasoning_tokens;
  accepted_prediction_tokens_ = d.accepted_prediction_tokens;
  rejected_prediction_tokens_ = d.rejected_prediction_tokens;
  text_ += d.text;
  reasoning_ += d.reasoning;
  if (!d.prompt_logprobs.empty()) prompt_logprobs_ = d.prompt_logprobs;
  for (const auto& c : d.tool_calls) tool_calls_.push_back(c);
  if (request_->logprobs) logprobs_.insert(logprobs_.end(), d.logprobs.begin(), d.logprobs.end());
  if (request_->return_token_ids) token_ids_.insert(token_ids_.end(), d.tokens.begin(), d.tokens.end());
  if (d.finished) finish_reason_ = d.finish_reason;
}

json OpenAiResponseBuilder::Final() const { return FinalOf({this}); }

json OpenAiResponseBuilder::FinalOf(const std::vector<const OpenAiResponseBuilder*>& choices) {
  const OpenAiResponseBuilder& first = *choices.front();
  const bool chat = first.request_->endpoint == OpenAiEndpoint::kChat;
  json list = json::array();
  for (const auto* c : choices) list.push_back(c->FinalChoice());
  json out = {{"id", first.id_},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", first.created_},
              {"model", first.request_->model},
              {"choices", std::move(list)},
              {"usage", UsageOf(choices)}};
  if (chat && first.request_->return_token_ids) out["prompt_token_ids"] = first.prompt_ids_;
  if (chat && first.request_->prompt_logprobs >= 0) out["prompt_logprobs"] = first.VllmPromptLogprobs();
  return out;
}

json OpenAiResponseBuilder::FinalChoice() const {
  const bool chat = request_->endpoint == OpenAiEndpoint::kChat;
  json choice = {{"index", index_}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}};
  if (chat) {
    json message = {{"role", "assistant"}};
    // OpenAI: content is null when the reply is only tool calls.
    message["content"] = (text_.empty() && !tool_calls_.empty()) ? json(nullptr) : json(text_);
    if (!reasoning_.empty()) message["reasoning_content"] = reasoning_;
    if (!tool_calls_.empty()) message["tool_calls"] = tokenizer::ToolCallParser::ToOpenAi(tool_calls_);
    choice["message"] = std::move(message);
    if (request_->logprobs) choice["logprobs"] = ChatLogprobs(logprobs_);
  } else {
    if (!request_->echo) {
      choice["text"] = text_;
      TextOffset offset;
      if (request_->logprobs) choice["logprobs"] = CompletionLogprobs(logprobs_, &offset);
    } else {
      choice["text"] = echo_text_ + text_;
      if (request_->logprobs) {
        json lp = EchoLogprobs(PromptLogprobs());
        TextOffset offset = EchoEnd();
        AppendLogprobs(lp, CompletionLogprobs(logprobs_, &offset));
        choice["logprobs"] = std::move(lp);
      }
    }
    if (request_->return_token_ids) choice["prompt_token_ids"] = prompt_ids_;
    if (request_->prompt_logprobs >= 0) choice["prompt_logprobs"] = VllmPromptLogprobs();
  }
  if (request_->return_token_ids) choice["token_ids"] = token_ids_;
  return choice;
}

}  // namespace glm::api
