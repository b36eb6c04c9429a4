// Structured outputs at the API boundary (over the fake engine): which requests carry a format
// to the engine, in the schema's own key order, through chat, completions, Responses and gRPC;
// and the refusals, each naming its field.
#include <set>
#include <string>
#include <tuple>

#include "tests/coordinator/api/api_test_fixture.h"

namespace glm::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
namespace pb = glm::inference::v1;

class StructuredOutputApiTest : public ApiTest {
 protected:
  httplib::Result PostText(const std::string& path, const std::string& body) {
    httplib::Client client("127.0.0.1", server_->http_port());
    client.set_read_timeout(30, 0);
    return client.Post(path.c_str(), body, "application/json");
  }
  // Feeds `text` (tokenized) through the constraint the engine received: whether the format
  // accepts it whole.
  bool ConstraintAccepts(const std::string& text) {
    auto constraint = engine_->last_request().constraint;
    EXPECT_NE(constraint, nullptr);
    if (constraint == nullptr) return false;
    auto ids = tokenizer_->Encode(text);
    EXPECT_TRUE(ids.ok());
    for (int32_t id : *ids)
      if (!constraint->Accept(id).ok()) return false;
    return constraint->CanEnd();
  }
  // Runs a gRPC Generate to its end; its final status.
  grpc::Status Drain(const pb::GenerateRequest& r) {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, r);
    pb::GenerateResponse resp;
    while (reader->Read(&resp)) {
    }
    return reader->Finish();
  }
  json Error(const httplib::Result& res, int status) {
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, status) << res->body;
    return json::parse(res->body, nullptr, false)["error"];
  }
};

// Properties are listed "zeta" before "alpha": the order the client wrote, not the parsed
// body's sorted one.
constexpr char kSchemaFormat[] =
    R"({"type":"json_schema","json_schema":{"name":"pair","strict":true,"schema":{"type":"object",
        "properties":{"zeta":{"type":"integer"},"alpha":{"type":"string"}},"required":["zeta","alpha"],
        "additionalProperties":false}}})";

TEST_F(StructuredOutputApiTest, ChatCarriesTheSchemaInTheClientsKeyOrder) {
  ScriptText("{}");
  auto res = PostText("/v1/chat/completions", std::string(R"({"messages":[{"role":"user","content":"hi"}],"response_format":)") +
                                                 kSchemaFormat + "}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  ASSERT_NE(engine_->last_request().constraint, nullptr);
  EXPECT_TRUE(ConstraintAccepts(R"({"zeta": 3, "alpha": "x"})"));
  ScriptText("{}");
  PostText("/v1/chat/completions", std::string(R"({"messages":[{"role":"user","content":"hi"}],"response_format":)") +
                                       kSchemaFormat + "}");
  EXPECT_FALSE(ConstraintAccepts(R"({"alpha": "x", "zeta": 3})"));
  // Without a format (or with "text") the engine gets no constraint.
  ScriptText("ok");
  PostText("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"}})");
  EXPECT_EQ(engine_->last_request().constraint, nullptr);
}

// n choices: each engine request gets its own constraint (one output's progress each).
TEST_F(StructuredOutputApiTest, EachChoiceHasItsOwnConstraint) {
  ScriptText("{}");
  auto res = PostText("/v1/completions", R"({"prompt":["x","y"],"n":2,"response_format":{"type":"json_object"}})");
  ASSERT_EQ(res->status, 200) << res->body;
  const auto requests = engine_->requests();
  ASSERT_GE(requests.size(), 4u);
  std::set<const scheduler::TokenConstraint*> distinct;
  for (size_t i = requests.size() - 4; i < requests.size(); ++i) distinct.insert(requests[i].constraint.get());
  EXPECT_EQ(distinct.size(), 4u);
  EXPECT_EQ(distinct.count(nullptr), 0u);
  // /metrics counts the constrained requests (one per prompt) and the masks taken (the first of
  // each: a JSON object's opening, computed once, then from the cache).
  std::string bitmap;
  for (size_t i = requests.size() - 4; i < requests.size(); ++i) requests[i].constraint->AllowedTokens(4096, &bitmap);
  httplib::Client http("127.0.0.1", server_->http_port());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("glm:structured_output_requests_total{model_name=\"glm5-tiny-code\"} 2"));
  EXPECT_THAT(metrics->body, HasSubstr("glm:structured_output_mask_cache_misses_total{model_name=\"glm5-tiny-code\"} 1"));
  EXPECT_THAT(metrics->body, HasSubstr("glm:structured_output_mask_cache_hits_total{model_name=\"glm5-tiny-code\"} 3"));
}

TEST_F(StructuredOutputApiTest, CompletionsResponsesAndGrpcCarryAFormatToo) {
  ScriptText("{}");
  auto res = PostText("/v1/completions", R"({"prompt":"x","response_format":{"type":"json_object"}})");
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(ConstraintAccepts(R"({"any": [1, {"b": null}]})"));
  ScriptText("{}");
  PostText("/v1/completions", R"({"prompt":"x","response_format":{"type":"json_object"}})");
  EXPECT_FALSE(ConstraintAccepts("[1]"));  // json_object: an object

  ScriptText("{}");
  res = PostText("/v1/responses", R"({"input":"hi","text":{"format":{"type":"json_schema","name":"n",
      "schema":{"type":"object","properties":{"b":{"type":"boolean"},"a":{"type":"null"}},"required":["b","a"]}}}})");
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(ConstraintAccepts(R"({"b": true, "a": null})"));

  ScriptText("{}");
  res = PostText("/v1/messages", R"({"max_tokens":50,"messages":[{"role":"user","content":"hi"}],
      "output_format":{"type":"json_schema","schema":{"type":"array","items":{"type":"integer"},"maxItems":2}}})");
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(ConstraintAccepts("[1, 2]"));
  ScriptText("{}");
  PostText("/v1/messages", R"({"max_tokens":50,"messages":[{"role":"user","content":"hi"}],
      "output_format":{"type":"json_schema","schema":{"type":"array","items":{"type":"integer"},"maxItems":2}}})");
  EXPECT_FALSE(ConstraintAccepts("[1, 2, 3]"));

  ScriptText("{}");
  pb::GenerateRequest r;
  r.set_text("x");
  r.set_response_format_json(kSchemaFormat);
  ASSERT_TRUE(Drain(r).ok());
  EXPECT_TRUE(ConstraintAccepts(R"({"zeta": -1, "alpha": ""})"));
}

constexpr char kWeatherTools[] = R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{
    "type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}},
    {"type":"function","function":{"name":"now"}}])";
constexpr char kWeatherCall[] =
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo, Norway</arg_value>\n"
    "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>";

// tool_choice "required" / a named function: one call in GLM's format, its tags the tokenizer's
// special tokens, its arguments per the tool's schema; plain text is not a reply.
TEST_F(StructuredOutputApiTest, ForcedToolChoiceConstrainsTheReplyToOneCall) {
  const std::string chat = std::string(R"({"messages":[{"role":"user","content":"hi"}],)") + kWeatherTools;
  ScriptText("{}");
  ASSERT_EQ(PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required"})")->status, 200);
  EXPECT_TRUE(ConstraintAccepts(kWeatherCall));
  ScriptText("{}");
  PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required"})");
  EXPECT_FALSE(ConstraintAccepts("It is sunny."));
  ScriptText("{}");
  PostText("/v1/chat/completions", chat + R"(,"tool_choice":{"type":"function","function":{"name":"now"}}})");
  EXPECT_FALSE(ConstraintAccepts(kWeatherCall));  // only "now" may be called
  ScriptText("{}");
  PostText("/v1/chat/completions", chat + R"(,"tool_choice":{"type":"function","function":{"name":"now"}}})");
  EXPECT_TRUE(ConstraintAccepts("<tool_call>now\n</tool_call>"));
  ScriptText("{}");
  ASSERT_EQ(PostText("/v1/messages", R"({"max_tokens":50,"messages":[{"role":"user","content":"hi"}],
      "tools":[{"name":"now","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}})")->status,
            200);
  EXPECT_TRUE(ConstraintAccepts("<tool_call>now\n</tool_call>"));
  ScriptText("{}");
  ASSERT_EQ(PostText("/v1/responses", R"({"input":"hi","tools":[{"type":"function","name":"now"}],
      "tool_choice":{"type":"function","name":"now"}})")->status, 200);
  EXPECT_TRUE(ConstraintAccepts("<tool_call>now\n</tool_call>"));
  // Parallel calls: several unless the request asks for one (each API's own switch).
  const std::string two_calls = std::string(kWeatherCall) + "\n<tool_call>now\n</tool_call>";
  ScriptText("{}");
  PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required"})");
  EXPECT_TRUE(ConstraintAccepts(two_calls));
  ScriptText("{}");
  PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required","parallel_tool_calls":false})");
  EXPECT_FALSE(ConstraintAccepts(two_calls));
  ScriptText("{}");
  PostText("/v1/responses", R"({"input":"hi","tools":[{"type":"function","name":"now"}],"tool_choice":"required",
      "parallel_tool_calls":false})");
  EXPECT_FALSE(ConstraintAccepts("<tool_call>now\n</tool_call><tool_call>now\n</tool_call>"));
  ScriptText("{}");
  PostText("/v1/messages", R"({"max_tokens":50,"messages":[{"role":"user","content":"hi"}],
      "tools":[{"name":"now","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}})");
  EXPECT_FALSE(ConstraintAccepts("<tool_call>now\n</tool_call><tool_call>now\n</tool_call>"));
  ScriptText("{}");
  PostText("/v1/messages", R"({"max_tokens":50,"messages":[{"role":"user","content":"hi"}],
      "tools":[{"name":"now","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}})");
  EXPECT_TRUE(ConstraintAccepts("<tool_call>now\n</tool_call><tool_call>now\n</tool_call>"));
  EXPECT_EQ(Error(PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required","parallel_tool_calls":1})"), 400)["param"],
            "parallel_tool_calls");
  json e = Error(PostText("/v1/chat/completions", chat + R"(,"tool_choice":"required","response_format":{"type":"json_object"}})"), 400);
  EXPECT_EQ(e["param"], "tool_choice");
  e = Error(PostText("/v1/chat/completions", std::string(R"({"messages":[{"role":"user","content":"hi"}],
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
      "when":{"type":"integer","multipleOf":2}}}}}],"tool_choice":"required"})")), 400);
  EXPECT_EQ(e["param"], "tools[0].parameters/properties/when/multipleOf");
}

// gRPC chat's tool_choice_json: the same choices, a bare keyword or JSON; errors name the field.
TEST_F(StructuredOutputApiTest, GrpcChatForcesToolCallsToo) {
  auto generate = [this](const std::string& choice, const std::string& format = "") {
    pb::GenerateRequest r;
    pb::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content("hi");
    r.mutable_chat()->set_tools_json(json::parse(std::string("{") + kWeatherTools + "}")["tools"].dump());
    r.mutable_chat()->set_tool_choice_json(choice);
    r.set_response_format_json(format);
    return Drain(r);
  };
  ScriptText("{}");
  ASSERT_TRUE(generate("required").ok());
  EXPECT_TRUE(ConstraintAccepts(kWeatherCall));
  ScriptText("{}");
  ASSERT_TRUE(generate(R"("required")").ok());
  EXPECT_FALSE(ConstraintAccepts("It is sunny."));
  ScriptText("{}");
  ASSERT_TRUE(generate(R"({"type":"function","function":{"name":"now"}})").ok());
  EXPECT_TRUE(ConstraintAccepts("<tool_call>now\n</tool_call>"));
  ScriptText("{}");
  ASSERT_TRUE(generate("required").ok());
  EXPECT_TRUE(ConstraintAccepts(std::string(kWeatherCall) + kWeatherCall));  // parallel calls by default
  ScriptText("{}");
  ASSERT_TRUE(generate("auto").ok());
  EXPECT_EQ(engine_->last_request().constraint, nullptr);
  for (const auto& [choice, format, says] :
       {std::tuple<std::string, std::string, std::string>{"sometimes", "", "'sometimes' is not one of"},
        {R"({"type":"function","function":{"name":"fly"}})", "", "names 'fly', which is not among the tools"},
        {R"({"type":"function"})", "", "chat.tool_choice_json.function.name"},
        {"{", "", "chat.tool_choice_json"},
        {"required", R"({"type":"json_object"})", "cannot be combined with response_format_json"}}) {
    const grpc::Status g = generate(choice, format);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << choice;
    EXPECT_THAT(g.error_message(), HasSubstr(says)) << choice;
  }
}

TEST_F(StructuredOutputApiTest, RefusalsNameTheirField) {
  const std::string chat = R"({"messages":[{"role":"user","content":"hi"}],)";
  json e = Error(PostText("/v1/chat/completions", chat + R"("response_format":{"type":"json_schema","json_schema":{"name":"d",
      "schema":{"type":"object","properties":{"n":{"type":"integer","multipleOf":2}}}}}})"), 400);
  EXPECT_EQ(e["param"], "response_format.json_schema.schema/properties/n/multipleOf");
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("'multipleOf' is not supported"));
  e = Error(PostText("/v1/chat/completions", chat + R"("response_format":{"type":"json_object"},
      "chat_template_kwargs":{"enable_thinking":true}})"), 400);
  EXPECT_EQ(e["param"], "response_format");
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("enable_thinking"));
  e = Error(PostText("/v1/responses", R"({"input":"hi","text":{"format":{"type":"json_schema","name":"n",
      "schema":{"$ref":"#/$defs/missing"}}}})"), 400);
  EXPECT_EQ(e["param"], "text.format.schema/$ref");
  pb::GenerateRequest r;
  r.set_text("x");
  r.set_response_format_json(R"({"type":"json_schema","json_schema":{"schema":{"type":"string","pattern":"(a"}}})");
  const grpc::Status g = Drain(r);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(g.error_message(), HasSubstr("response_format_json.json_schema.schema/pattern"));
  // A json_object chat without tools is served.
  ScriptText("{}");
  ASSERT_EQ(PostText("/v1/chat/completions", chat + R"("response_format":{"type":"json_object"}})")->status, 200);
}

// vLLM's structured-output fields: structured_outputs {json, regex, choice, json_object, grammar}
// and the older guided_json / guided_regex / guided_choice / guided_grammar, on chat and
// completions; llama.cpp's `grammar` and `json_schema`.
TEST_F(StructuredOutputApiTest, VllmGuidedDecodingFieldsCarryAFormat) {
  const std::string chat = R"({"messages":[{"role":"user","content":"hi"}],)";
  struct Case {
    std::string path, body, good, bad;
  };
  const Case cases[] = {
      {"/v1/chat/completions", chat + R"("guided_regex":"(yes|no), [0-9]{2}"})", "no, 42", "maybe"},
      {"/v1/completions", R"({"prompt":"x","guided_choice":["red wine","white"]})", "red wine", "red"},
      {"/v1/completions", R"({"prompt":"x","structured_outputs":{"choice":["a+b","c"]}})", "a+b", "aab"},
      {"/v1/chat/completions", chat + R"("structured_outputs":{"regex":"\\d+"}})", "2026", "x1"},
      {"/v1/chat/completions", chat + R"("guided_json":{"type":"object","properties":{"z":{"type":"integer"},
          "a":{"type":"string","format":"date"}},"required":["z","a"]}})", R"({"z": 1, "a": "2026-12-06"})",
       R"({"a": "2026-12-06", "z": 1})"},
      {"/v1/completions", R"({"prompt":"x","guided_json":"{\"type\":\"array\",\"maxItems\":1}"})", "[true]", "[1, 2]"},
      {"/v1/chat/completions", chat + R"("structured_outputs":{"json":{"type":"string","pattern":"[a-c]{3}"}}})",
       R"("abc")", R"("abcd")"},
      {"/v1/completions", R"({"prompt":"x","structured_outputs":{"json_object":true}})", R"({"k": []})", "[]"},
      // GBNF: vLLM's guided_grammar / structured_outputs.grammar and llama.cpp's grammar.
      {"/v1/chat/completions", chat + R"("guided_grammar":"root ::= item (\", \" item)*\nitem ::= [a-z]+ \"=\" [0-9]{1,3}"})",
       "a=1, bc=200", "a=1,b=2"},
      {"/v1/completions", R"({"prompt":"x","structured_outputs":{"grammar":"root ::= \"(\" root \")\" | \"x\""}})", "((x))",
       "((x)"},
      {"/v1/completions", R"({"prompt":"x","grammar":"root ::= (\"yes\" | \"no\") \"!\"?"})", "no!", "yes!!"},
      {"/v1/chat/completions", chat + R"("json_schema":{"type":"array","items":{"type":"integer"}}})", "[1, 2]", "[true]"},
  };
  for (const Case& c : cases) {
    for (const std::string* text : {&c.good, &c.bad}) {
      ScriptText("{}");
      auto res = PostText(c.path, c.body);
      ASSERT_TRUE(res);
      ASSERT_EQ(res->status, 200) << c.body << ": " << res->body;
      EXPECT_EQ(ConstraintAccepts(*text), text == &c.good) << c.body << " with " << *text;
    }
  }
}

TEST_F(StructuredOutputApiTest, VllmGuidedDecodingRefusalsNameTheirField) {
  const std::string chat = R"({"messages":[{"role":"user","content":"hi"}],)";
  struct Case {
    std::string body, param, message;
  };
  const Case cases[] = {
      {R"("guided_grammar":"root ::= \"a\" bogus"})", "guided_grammar", "line 1, column 14: rule 'bogus' is not defined"},
      {R"("structured_outputs":{"grammar":"x"}})", "structured_outputs.grammar", "line 1, column 2: expected ::="},
      {R"("grammar":"root ::= \"a\" root"})", "grammar", "root can never finish"},
      {R"("grammar":7})", "grammar", "must be a non-empty string"},
      {R"("structured_outputs":{"structural_tag":{}}})", "structured_outputs.structural_tag", "not supported"},
      {R"("guided_regex":"a","response_format":{"type":"json_object"}})", "guided_regex", "cannot be combined with response_format"},
      {R"("guided_regex":"a","guided_choice":["b"]})", "guided_choice", "cannot be combined with guided_regex"},
      {R"j("guided_regex":"a(?=b)"})j", "guided_regex", "offset 1: lookaround assertions are not supported"},
      {R"("guided_regex":7})", "guided_regex", "non-empty string"},
      {R"("guided_choice":[]})", "guided_choice", "non-empty array"},
      {R"("structured_outputs":"x"})", "structured_outputs", "must be an object"},
      // A misspelt key left the output unconstrained without a word.
      {R"("structured_outputs":{"regexp":"a+"}})", "structured_outputs.regexp", "is not a structured_outputs key"},
      {R"("guided_json":"{not json"})", "guided_json", "a JSON schema"},
      {R"("guided_json":{"type":"string","pattern":"[z-a]"}})", "guided_json/pattern", "out of order"},
      {R"("guided_whitespace_pattern":" *"})", "guided_whitespace_pattern", "not supported"},
      {R"("guided_regex":"a",)" + std::string(kWeatherTools) + R"(,"tool_choice":"required"})", "tool_choice",
       "cannot be combined with guided_regex"},
  };
  for (const Case& c : cases) {
    json e = Error(PostText("/v1/chat/completions", chat + c.body), 400);
    EXPECT_EQ(e["param"], c.param) << c.body;
    EXPECT_THAT(e["message"].get<std::string>(), HasSubstr(c.message)) << c.body;
  }
}

// gRPC: structured_outputs_json, vLLM's object as JSON text; refusals name it.
TEST_F(StructuredOutputApiTest, GrpcTakesStructuredOutputsToo) {
  auto generate = [&](const std::string& outputs, const std::string& format = "") {
    pb::GenerateRequest r;
    r.set_text("x");
    r.set_structured_outputs_json(outputs);
    r.set_response_format_json(format);
    return Drain(r);
  };
  ScriptText("{}");
  ASSERT_TRUE(generate(R"({"regex":"[0-9]{4}-[0-9]{2}"})").ok());
  EXPECT_TRUE(ConstraintAccepts("2026-12"));
  ScriptText("{}");
  ASSERT_TRUE(generate(R"({"json":{"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"null"}},
      "required":["b","a"]}})").ok());
  EXPECT_FALSE(ConstraintAccepts(R"({"a": null, "b": 1})"));  // the schema's own key order
  for (const auto& [outputs, format, message] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {R"({"regex":"(a"})", "", "structured_outputs_json.regex: pattern at offset 0: unterminated group"},
           {R"({"grammar":"x"})", "", "structured_outputs_json.grammar: line 1, column 2: expected ::="},
           {"[1]", "", "structured_outputs_json: must be an object"},
           {R"({"choice":["a"]})", R"({"type":"json_object"})", "structured_outputs_json: cannot be combined"}}) {
    const grpc::Status g = generate(outputs, format);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << outputs;
    EXPECT_THAT(g.error_message(), HasSubstr(message)) << outputs;
  }
}

// vLLM's bad_words: each word spelt as its own tokens and, where that is another spelling of as
// many tokens, after a space; the output may never complete one. With allowed_token_ids both apply.
// gRPC's sampling.bad_words is the same.
TEST_F(StructuredOutputApiTest, BadWordsBanTheirTokenSequences) {
  auto ids = [&](const std::string& text) { return *tokenizer_->Encode(text); };
  const std::vector<int32_t> tuple = ids("tuple"), spaced = ids(" tuple"), returns = ids("Returns");
  ASSERT_FALSE(tuple.empty());
  ScriptText("x");
  ASSERT_EQ(PostText("/v1/completions", R"({"prompt":"def f():","max_tokens":2,"bad_words":[" tuple","Returns"]})")->status, 200);
  std::shared_ptr<scheduler::TokenConstraint> c = engine_->last_request().constraint;
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->CanEnd());
  const int64_t vocab = tokenizer_->vocab_size();
  auto allowed = [&](scheduler::TokenConstraint& k, int32_t t) {
    std::string bitmap;
    k.AllowedTokens(vocab, &bitmap);
    return ((bitmap[t >> 3] >> (t & 7)) & 1) != 0;
  };
  // Each sequence's last token is refused right after the rest of the sequence, and only there.
  for (const std::vector<int32_t>& seq : {tuple, spaced, returns}) {
    if (seq == spaced && (spaced.size() != tuple.size() || spaced[0] == tuple[0])) continue;  // not a spelling of its own
    std::shared_ptr<scheduler::TokenConstraint> k = c->Clone();
    for (size_t i = 0; i + 1 < seq.size(); ++i) {
      EXPECT_TRUE(allowed(*k, seq[i]) || i > 0);
      ASSERT_TRUE(k->Accept(seq[i]).ok());
    }
    EXPECT_FALSE(allowed(*k, seq.back())) << tokenizer_->Decode(seq).value_or("?");
    EXPECT_FALSE(k->Accept(seq.back()).ok());
  }
  // With allowed_token_ids: the set, less what completes a bad word.
  ScriptText("x");
  const std::string set = absl::StrCat("[", tuple.back(), ",11]");
  ASSERT_EQ(PostText("/v1/completions", absl::StrCat(R"({"prompt":"def f():","max_tokens":2,"bad_words":["tuple"],)",
                                                     R"("allowed_token_ids":)", set, "}"))->status, 200);
  c = engine_->last_request().constraint;
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->CanEnd());
  EXPECT_TRUE(allowed(*c, 11));
  EXPECT_FALSE(allowed(*c, 12));
  EXPECT_EQ(allowed(*c, tuple.back()), tuple.size() > 1);

  pb::GenerateRequest r;
  r.set_text("def f():");
  r.mutable_sampling()->set_max_tokens(2);
  r.mutable_sampling()->add_bad_words("Returns");
  ScriptText("x");
  ASSERT_TRUE(Drain(r).ok());
  ASSERT_NE(engine_->last_request().constraint, nullptr);
  r.mutable_sampling()->add_bad_words("");
  const grpc::Status g = Drain(r);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(g.error_message(), HasSubstr("bad_words[1]"));
}

// vLLM's allowed_token_ids (a constraint of exactly those ids), cache_salt, priority,
// truncate_prompt_tokens (the prompt's last N tokens), and the extensions refused rather than ignored.
TEST_F(StructuredOutputApiTest, AllowedTokenIdsTruncationCacheSaltAndRefusedVllmExtensions) {
  ScriptText("x");
  auto res = PostText("/v1/completions", R"({"prompt":[5,6,7,8],"max_tokens":2,"allowed_token_ids":[9,3,9],
      "truncate_prompt_tokens":3,"bad_words":[],"use_beam_search":false,"cache_salt":"tenant-1","priority":-3})");
  ASSERT_EQ(res->status, 200) << res->body;
  const auto& seen = engine_->last_request();
  EXPECT_EQ(seen.prompt, (std::vector<int32_t>{6, 7, 8}));
  EXPECT_EQ(seen.cache_salt, "tenant-1");
  EXPECT_EQ(seen.priority, -3);  // vLLM's; the engine refuses it unless --scheduling-policy priority
  ASSERT_NE(seen.constraint, nullptr);
  std::string bitmap;
  seen.constraint->AllowedTokens(16, &bitmap);
  EXPECT_EQ(bitmap, std::string({'\x08', '\x02'}));  // ids 3 and 9
  EXPECT_FALSE(seen.constraint->CanEnd());
  EXPECT_FALSE(seen.constraint->Accept(4).ok());
  ScriptText("x");
  ASSERT_EQ(PostText("/v1/completions", R"({"prompt":[5,6,7],"max_tokens":2,"truncate_prompt_tokens":-1})")->status, 200);
  EXPECT_EQ(engine_->last_request().prompt, (std::vector<int32_t>{5, 6, 7}));  // within the context: kept whole
  const std::string chat = R"({"messages":[{"role":"user","content":"hi"}],)";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("allowed_token_ids":[1,99999]})", "allowed_token_ids[1]"},
      {R"("allowed_token_ids":[]})", "allowed_token_ids"},
      {R"("allowed_token_ids":[1],"guided_regex":"a"})", "allowed_token_ids"},
      {R"("truncate_prompt_tokens":-2})", "truncate_prompt_tokens"},
      {R"("bad_words":"x"})", "bad_words"},
      {R"("bad_words":["x",1]})", "bad_words[1]"},
      {R"("bad_words":["x","  "]})", "bad_words[1]"},
      {R"("use_beam_search":true})", "use_beam_search"},
      {R"("logits_processors":["x"]})", "logits_processors"},
      {R"("cache_salt":""})", "cache_salt"},
      {R"("priority":"high"})", "priority"},
      {R"("priority":1.5})", "priority"},
      {R"("priority":3000000000})", "priority"},
  };
  for (const auto& [body, param] : bad) EXPECT_EQ(Error(PostText("/v1/chat/completions", chat + body), 400)["param"], param) << body;
}

}  // namespace
}  // namespace glm::testing
