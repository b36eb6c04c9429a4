// config.json values of the wrong type, out of range or absurdly nested get an InvalidArgument
// naming the field, never an exception, a crash, or a model that computes garbage.
#include <gtest/gtest.h>

#include <string>

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
TEST(ModelConfigTest, DeeplyNestedValuesAreNamedNotDumped) {
  constexpr int kDepth = 200000;
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

}  // namespace
}  // namespace glm::model
