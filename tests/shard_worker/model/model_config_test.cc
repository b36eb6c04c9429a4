// config.json values of the wrong type, out of range or absurdly nested get an InvalidArgument
// naming the field, never an exception, a crash, or a model that computes garbage.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "shard_worker/model/model_config.h"

namespace glm::model {
namespace {

const std::string kBase = R"({"model_type":"glm_moe_dsa","vocab_size":64,"hidden_size":32,"intermediate_size":64,
    "moe_intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":2,"n_routed_experts":4,
    "num_experts_per_tok":2,"q_lora_rank":16,"kv_lora_rank":8,"qk_nope_head_dim":8,"qk_rope_head_dim":4,
    "v_head_dim":8,"index_topk":4,"index_head_dim":8,"index_n_heads":2,"eos_token_id":1)";

absl::StatusOr<ModelConfig> With(const std::string& extra) { return ModelConfig::FromJson(kBase + "," + extra + "}"); }

void ExpectFieldError(const absl::StatusOr<ModelConfig>& c, const std::string& needle, const std::string& input) {
  ASSERT_FALSE(c.ok()) << input;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_NE(c.status().message().find(needle), std::string::npos) << input << " -> " << c.status();
}

TEST(ModelConfigTest, BaseParses) { ASSERT_TRUE(With(R"("hidden_act":"silu")").ok()) << With("").status(); }

// The RoPE pairing is fixed (interleaved, as transformers computes configs without these fields):
// a config asking for the other was loaded silently and would select wrong keys past index_topk.
TEST(ModelConfigTest, NonInterleavedRopeIsRefused) {
  for (const char* field : {"rope_interleave", "indexer_rope_interleave"}) {
    EXPECT_TRUE(With(absl::StrCat("\"", field, "\":true")).ok()) << field;
    ExpectFieldError(With(absl::StrCat("\"", field, "\":false")), field, field);
    ExpectFieldError(With(absl::StrCat("\"", field, "\":\"no\"")), field, field);
  }
}

// quantization_config.value(...) threw (and aborted the process) on a non-object or a member of
// another type.
TEST(ModelConfigTest, QuantizationConfigOfTheWrongTypeIsAnError) {
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"("quantization_config":"fp8")", "field 'quantization_config' must be an object, got \"fp8\""},
           {R"("quantization_config":[1,2])", "field 'quantization_config' must be an object, got an array of 2 elements"},
           {R"("quantization_config":{"quant_method":1})", "field 'quantization_config.quant_method' must be a string, got 1"},
           {R"("quantization_config":{"quant_method":"fp8","fmt":3,"weight_block_size":[128,128]})",
            "field 'quantization_config.fmt' must be a string, got 3"},
       }) {
    ExpectFieldError(With(extra), needle, extra);
  }
  auto ok = With(R"("quantization_config":{"quant_method":"fp8","weight_block_size":[128,128]})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->fp8_weights);
}

// Building the message dumped the whole value, recursively: 200,000 levels overflowed the stack.
// Such a file is now refused before parsing (model_file.h: 120M levels exhausted memory); values
// nested within the bound are named, not dumped.
TEST(ModelConfigTest, DeeplyNestedValuesAreNamedNotDumped) {
  const std::string too_deep = std::string(200000, '[') + std::string(200000, ']');
  auto refused = With("\"hidden_act\":" + too_deep);
  ExpectFieldError(refused, "config.json: JSON nested deeper than 64 levels", "too deep");
  EXPECT_LT(refused.status().message().size(), 100u);
  constexpr int kDepth = 30;  // with the quantization_config's levels, within the bound
  const std::string nested = std::string(kDepth, '[') + std::string(kDepth, ']');
  ExpectFieldError(With("\"hidden_act\":" + nested), "field 'hidden_act' is an array of 1 element", "hidden_act");
  ExpectFieldError(With("\"mlp_layer_types\":[\"dense\"," + nested + "]"),
                   "field 'mlp_layer_types' has unknown value an array of 1 element", "mlp_layer_types");
  ExpectFieldError(With("\"indexer_types\":[\"full\"," + nested + "]"),
                   "field 'indexer_types' has unknown value an array of 1 element", "indexer_types");
  std::string objects;
  for (int i = 0; i < kDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kDepth, '}');
  ExpectFieldError(With("\"quantization_config\":{\"quant_method\":" + objects + "}"),
                   "field 'quantization_config.quant_method' must be a string, got an object", "quant_method");
  // A long string is cut short in the message.
  auto c = With("\"hidden_act\":\"" + std::string(10000, 'x') + "\"");
  ExpectFieldError(c, "field 'hidden_act' is \"xxxx", "long hidden_act");
  EXPECT_LT(c.status().message().size(), 300u) << c.status();
}

// The config text with `field`'s value replaced by `value`.
std::string Replaced(std::string text, const std::string& field, const std::string& value) {
  const std::string key = "\"" + field + "\":";
  const size_t at = text.find(key);
  EXPECT_NE(at, std::string::npos) << field;
  const size_t begin = at + key.size(), end = text.find_first_of(",}", begin);
  return text.replace(begin, end - begin, value);
}

// Float fields had no range: rms_norm_eps -1 made every logit NaN, 1e39 (inf as a float) every
// logit 0, routed_scaling_factor 1e40 NaN; all with exit status 0.
TEST(ModelConfigTest, FloatFieldsMustBeFiniteAndPlausible) {
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"("rms_norm_eps":-1.0)", "field 'rms_norm_eps' must be in (0, 0.1], got -1"},
           {R"("rms_norm_eps":0)", "field 'rms_norm_eps' must be in (0, 0.1], got 0"},
           {R"("rms_norm_eps":1e39)", "field 'rms_norm_eps' must be in (0, 0.1], got 1e+39"},
           {R"("rms_norm_eps":"1e-5")", "field 'rms_norm_eps' must be a number, got \"1e-5\""},
           {R"("routed_scaling_factor":1e40)", "field 'routed_scaling_factor' must be in (0, 1000], got 1e+40"},
           {R"("routed_scaling_factor":-2.5)", "field 'routed_scaling_factor' must be in (0, 1000], got -2.5"},
           {R"("rope_theta":-5)", "field 'rope_theta' must be positive and finite, got -5"},
           {R"("rope_theta":"10000")", "field 'rope_theta' must be a number"},
           {R"("rope_parameters":{"rope_type":"default","rope_theta":0})", "field 'rope_theta' must be positive and finite, got 0"},
       }) {
    ExpectFieldError(With(extra), needle, extra);
  }
  auto c = With(R"("rms_norm_eps":1e-5,"routed_scaling_factor":2.5,"rope_theta":1000000.0)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->routed_scaling_factor, 2.5f);
  EXPECT_EQ(c->rope_theta, 1e6);
}

// RoPE as transformers reads it: a scaling type under the legacy "type" key or in rope_scaling
// next to rope_parameters was run as plain RoPE without a word, a top-level rope_theta was
// dropped when rope_parameters had none, and non-objects fell back to the defaults.
TEST(ModelConfigTest, RopeFieldsAreReadAsTransformersReadsThem) {
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"("rope_parameters":{"type":"yarn","factor":40})", "'yarn' is not supported"},
           {R"("rope_parameters":{"rope_type":"default"},"rope_scaling":{"type":"linear","factor":2})",
            "'linear' is not supported"},
           {R"("rope_parameters":"default")", "field 'rope_parameters' must be an object"},
           {R"("rope_scaling":[1])", "field 'rope_scaling' must be an object"},
           {R"("rope_parameters":{"rope_type":7})", "field 'rope_parameters.rope_type' must be a string"},
       }) {
    ExpectFieldError(With(extra), needle, extra);
  }
  auto c = With(R"("rope_parameters":{"rope_type":"default"},"rope_theta":50000)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 50000);
  c = With(R"("rope_parameters":{"rope_type":"default","rope_theta":20000},"rope_theta":50000)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 20000);  // the parameters' own value wins
  c = With(R"("rope_parameters":null,"rope_scaling":null,"rope_theta":30000)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 30000);
}

// Token ids were narrowed to int32 before the vocabulary check: 4294967587 became 291 and
// 2147483648 became -2147483648, both accepted.
TEST(ModelConfigTest, TokenIdsOutsideInt32AreRejectedNotTruncated) {
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"eos_token_id", "4294967587"},
           {"eos_token_id", "2147483648"},
           {"eos_token_id", "18446744073709551615"},
           {"eos_token_id", "-1"},
           {"eos_token_id", "[1,4294967296]"},
       }) {
    const std::string shown = value[0] == '[' ? "4294967296" : value;
    ExpectFieldError(ModelConfig::FromJson(Replaced(kBase + "}", field, value)),
                     "field '" + field + "' holds " + shown + ", not a token id", value);
  }
  ExpectFieldError(With(R"("pad_token_id":4294967298)"), "field 'pad_token_id' holds 4294967298, not a token id", "pad");
  ExpectFieldError(With(R"("bos_token_id":2147483648)"), "field 'bos_token_id' holds 2147483648, not a token id", "bos");
  ExpectFieldError(ModelConfig::FromJson(Replaced(kBase + "}", "eos_token_id", "64")),
                   "field 'eos_token_id' is outside the vocabulary", "64");
  auto c = ModelConfig::FromJson(Replaced(kBase + "}", "eos_token_id", "[63,0]"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{63, 0}));
}

// No dimension had an upper bound: num_hidden_layers 2^40 or n_routed_experts 2^31 aborted with
// bad_alloc (or exhausted memory) building the per-layer and per-expert tables.
TEST(ModelConfigTest, DimensionsHavePlausibleUpperBounds) {
  for (const auto& [field, value, needle] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"num_hidden_layers", "1099511627776", "is implausibly large (at most 4096), got 1099511627776"},
           {"n_routed_experts", "2147483648", "is implausibly large (at most 65536), got 2147483648"},
           {"hidden_size", "4194304", "is implausibly large (at most 1048576), got 4194304"},
           {"vocab_size", "100000000", "is implausibly large (at most 16777216), got 100000000"},
           {"num_attention_heads", "8192", "is implausibly large (at most 4096), got 8192"},
           {"moe_intermediate_size", "9223372036854775807", "is implausibly large"},
           // Above INT64_MAX: out of range (it read as a negative number).
           {"vocab_size", "18446744073709551615", "is out of range, got 18446744073709551615"},
           {"hidden_size", "9223372036854775808", "is out of range, got 9223372036854775808"},
       }) {
    ExpectFieldError(ModelConfig::FromJson(Replaced(kBase + "}", field, value)), "field '" + field + "' " + needle,
                     field + "=" + value);
  }
  // Each within its bound, but 65536 experts in each of 4096 layers is 2^28 expert tables.
  ExpectFieldError(
      ModelConfig::FromJson(Replaced(Replaced(kBase + "}", "n_routed_experts", "65536"), "num_hidden_layers", "4096")),
      "field 'n_routed_experts' × layers is implausibly large", "experts x layers");
  for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"("n_shared_experts":4096)", "field 'n_shared_experts' must be in [0, 1024], got 4096"},
           {R"("max_position_embeddings":4611686018427387904)", "field 'max_position_embeddings' is implausibly large"},
           {R"("first_k_dense_replace":18446744073709551615)", "field 'first_k_dense_replace' is out of range"},
           {R"("first_k_dense_replace":"3")", "field 'first_k_dense_replace' must be an integer, got \"3\""},
           {R"("index_skip_topk_offset":-9223372036854775808)", "field 'index_skip_topk_offset' must be in [-4096, "},
           {R"("quantization_config":{"quant_method":"fp8","weight_block_size":[128,9223372036854775807]})",
            "field 'quantization_config.weight_block_size' must be [rows, cols] (positive, at most 65536)"},
       }) {
    ExpectFieldError(With(extra), needle, extra);
  }
  // Real sizes (GLM-5: 78 layers, 256 experts, hidden 6144, vocabulary 154880, 64 heads) parse.
  std::string glm5 = kBase + "}";
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"num_hidden_layers", "78"}, {"n_routed_experts", "256"}, {"hidden_size", "6144"},
           {"vocab_size", "154880"}, {"num_attention_heads", "64"}, {"num_experts_per_tok", "8"}}) {
    glm5 = Replaced(glm5, field, value);
  }
  auto c = ModelConfig::FromJson(glm5);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_routed_experts, 256);
}

// FromFile put its path before a message that already began "config.json: ".
TEST(ModelConfigTest, FileErrorsNameThePathOnce) {
  const std::string path = ::testing::TempDir() + "/glm_model_config_test_config.json";
  {
    std::ofstream out(path, std::ios::trunc);
    out << Replaced(kBase + "}", "hidden_size", "-3");
  }
  auto c = ModelConfig::FromFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), path + ": field 'hidden_size' must be positive, got -3");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace glm::model
