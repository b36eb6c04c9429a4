// `glmctl quantize` (model/quantized_checkpoint.h) and loads of its output
// (model/stored_expert_codes.h): every expert matrix of the pre-quantised checkpoint loads as the
// very bytes a load-time conversion of the original computes (BF16 and block-FP8 originals, int8
// and int4, several group sizes), so the model computes the same logits, resident, sliced across
// expert-tensor-parallel ranks, or streamed from disk; what cannot be given is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"
#include "reference_fixture.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/quantized_checkpoint.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;
using kernels::WeightView;

class QuantizedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("glm_quantized_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Quantises fixture model `name` into dir_/FORMAT; empty on failure (a test failure).
  std::string Quantize(const std::string& name, const std::string& format) {
    LoadOptions parsed;
    EXPECT_TRUE(ParseWeightDType(format, &parsed).ok()) << format;
    QuantizeCheckpointOptions q;
    q.dtype = *parsed.matrix_dtype;
    q.group_size = parsed.matrix_group_size;
    const std::string out = (dir_ / (name + "-" + format)).string();
    auto summary = WriteQuantizedCheckpoint(testing::ModelDir(name), out, q);
    EXPECT_TRUE(summary.ok()) << summary.status();
    return summary.ok() ? out : "";
  }

  fs::path dir_;
};

std::unique_ptr<ModelWeights> LoadOrFail(const std::string& dir, const LoadOptions& options) {
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (!ckpt.ok()) return nullptr;
  auto w = ModelWeights::Load(**ckpt, options);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *std::move(w) : nullptr;
}

bool SameBytes(const WeightView& a, const WeightView& b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols || a.groups_per_row() != b.groups_per_row() ||
      (a.group_scales == nullptr) != (b.group_scales == nullptr))
    return false;
  if (std::memcmp(a.data, b.data, static_cast<size_t>(a.rows * a.row_bytes())) != 0) return false;
  return a.group_scales == nullptr ||
         std::memcmp(a.group_scales, b.group_scales, static_cast<size_t>(a.rows * a.groups_per_row() * 2)) == 0;
}

// Every routed and shared expert matrix of every MoE layer (the MTP layer's included) holds the
// same bytes in both; returns how many were compared.
int CompareExperts(const ModelWeights& a, const ModelWeights& b) {
  const ModelConfig& c = a.config();
  int compared = 0;
  for (int64_t l = 0; l < c.num_weight_layers(); ++l) {
    if (c.mlp_kind(l) != MlpKind::kSparse) continue;
    const MoeWeights& x = a.layer(l).moe;
    const MoeWeights& y = b.layer(l).moe;
    std::vector<std::pair<const MlpWeights*, const MlpWeights*>> mlps = {{&x.shared, &y.shared}};
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      if (x.expert_loaded[e] && x.experts[e].gate_proj.rows > 0) mlps.push_back({&x.experts[e], &y.experts[e]});
    for (auto [p, q] : mlps) {
      EXPECT_TRUE(SameBytes(p->gate_proj, q->gate_proj)) << "layer " << l;
      EXPECT_TRUE(SameBytes(p->up_proj, q->up_proj)) << "layer " << l;
      EXPECT_TRUE(SameBytes(p->down_proj, q->down_proj)) << "layer " << l;
      compared += 3;
    }
  }
  return compared;
}

// Greedy-free check of the whole model: the logits of a few prompts, bit for bit.
std::vector<float> Logits(std::shared_ptr<const ModelWeights> w) {
  kernels::ThreadPool pool(2);
  auto m = Glm5Model::Create(std::move(w), &pool);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return {};
  std::vector<float> all;
  for (int p = 0; p < 3; ++p) {
    auto cache = (*m)->NewCache();
    std::vector<SequenceInput> in(1);
    in[0].cache = cache.get();
    for (int i = 0; i < 9 + 7 * p; ++i)
      in[0].tokens.push_back(static_cast<int32_t>((p * 1009 + i * 389 + 5) % (*m)->config().vocab_size));
    auto out = (*m)->Forward(in, LogitRows::kAll);
    EXPECT_TRUE(out.ok()) << out.status();
    if (out.ok()) all.insert(all.end(), out->logits.begin(), out->logits.end());
  }
  return all;
}

TEST_F(QuantizedCheckpointTest, ExpertsLoadAsTheBytesALoadTimeConversionComputes) {
  for (const char* name : {"glm5-tiny-code", "glm5-random-fp8"}) {
    for (const char* format : {"int4", "int8", "int4-g64", "int8-row"}) {
      SCOPED_TRACE(std::string(name) + " " + format);
      const std::string out = Quantize(name, format);
      ASSERT_FALSE(out.empty());
      auto stored = LoadOrFail(out, {});
      LoadOptions convert;
      ASSERT_TRUE(ParseWeightDType(format, &convert).ok());
      auto converted = LoadOrFail(testing::ModelDir(name), convert);
      ASSERT_TRUE(stored && converted);
      EXPECT_GT(CompareExperts(*stored, *converted), 0);
      // Asking for the stored format again changes nothing; the rest of the model is as stored.
      auto again = LoadOrFail(out, convert);
      ASSERT_NE(again, nullptr);
      CompareExperts(*again, *converted);
      EXPECT_TRUE(SameBytes(stored->layer(0).attn.q_a_proj, converted->layer(0).attn.q_a_proj));
      EXPECT_EQ(Logits(std::move(stored)), Logits(std::move(converted)));
      // The FP8 original's expert block scales are gone; the others' are kept.
      auto ckpt = Checkpoint::Open(out);
      ASSERT_TRUE(ckpt.ok());
      for (const std::string& t : (*ckpt)->TensorNames())
        if (absl::EndsWith(t, "weight_scale_inv"))
          EXPECT_FALSE(IsExpertMatrix(t.substr(0, t.size() - 10))) << t;
    }
  }
}

TEST_F(QuantizedCheckpointTest, TheTokenizerAndGenerationConfigComeAlong) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(out) / file)) << file;
  std::ifstream in(fs::path(out) / "config.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json config = nlohmann::json::parse(text.str());
  EXPECT_EQ(config["expert_quantization"]["format"], "int4");
  EXPECT_EQ(config["expert_quantization"]["group_size"], 32);
  EXPECT_EQ(config["vocab_size"], 4096);
}

// Expert-tensor-parallel ranks hold column slices of the down projections: on group boundaries
// they are the conversion's own slices; a slice that would start inside a group is refused.
TEST_F(QuantizedCheckpointTest, GroupAlignedExpertSlicesMatchAndOthersAreRefused) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 64}, {64, 128}, {32, 96}}) {
    LoadOptions slice;
    slice.expert_slice_begin = begin;
    slice.expert_slice_end = end;
    auto stored = LoadOrFail(out, slice);
    LoadOptions convert = slice;
    ASSERT_TRUE(ParseWeightDType("int4", &convert).ok());
    auto converted = LoadOrFail(testing::ModelDir("glm5-tiny-code"), convert);
    ASSERT_TRUE(stored && converted);
    EXPECT_GT(CompareExperts(*stored, *converted), 0) << begin;
  }
  // [0, 48): the last group is cut; its columns keep the whole matrix's scale and codes.
  LoadOptions first;
  first.expert_slice_end = 48;
  auto part = LoadOrFail(out, first);
  auto whole = LoadOrFail(out, {});
  ASSERT_TRUE(part && whole);
  const WeightView& p = part->layer(1).moe.experts[0].down_proj;
  const WeightView& w = whole->layer(1).moe.experts[0].down_proj;
  ASSERT_EQ(p.cols, 48);
  for (int64_t r = 0; r < p.rows; r += 17)
    for (int64_t c = 0; c < 48; ++c) ASSERT_EQ(p.At(r, c), w.At(r, c)) << r << "," << c;
  LoadOptions second;
  second.expert_slice_begin = 48;
  auto ckpt = Checkpoint::Open(out);
  ASSERT_TRUE(ckpt.ok());
  auto refused = ModelWeights::Load(**ckpt, second);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("starts at column 48"), std::string::npos) << refused.status();
}

// Experts over the memory budget stream from disk as codes: the same logits as resident.
TEST_F(QuantizedCheckpointTest, StreamedExpertsGiveTheResidentLogits) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  auto resident = LoadOrFail(out, {});
  LoadOptions streaming;
  streaming.expert_memory_bytes = 64 << 10;
  auto streamed = LoadOrFail(out, streaming);
  ASSERT_TRUE(resident && streamed);
  ASSERT_NE(streamed->expert_store(), nullptr);
  EXPECT_TRUE(streamed->expert_store()->streaming());
  EXPECT_EQ(Logits(std::move(streamed)), Logits(std::move(resident)));
}

TEST_F(QuantizedCheckpointTest, ConversionsItCannotGiveAreRefused) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  auto ckpt = Checkpoint::Open(out);
  ASSERT_TRUE(ckpt.ok());
  for (const char* format : {"int8", "int4-g64", "bf16", "f32"}) {
    LoadOptions o;
    ASSERT_TRUE(ParseWeightDType(format, &o).ok());
    auto w = ModelWeights::Load(**ckpt, o);
    ASSERT_FALSE(w.ok()) << format;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << format;
    EXPECT_NE(w.status().message().find("stored pre-quantised as int4"), std::string::npos) << w.status();
  }
  // Other scopes convert their other matrices and keep the experts: the MTP layer in int4 (its
  // experts as stored), or in int8, which its stored int4 experts cannot give.
  const int64_t mtp_layer = (*ckpt)->config().num_hidden_layers;
  LoadOptions mtp;
  ASSERT_TRUE(ParseWeightDType("int4", &mtp).ok());
  mtp.quantize_scope = QuantizeScope::kMtpLayer;
  auto w = ModelWeights::Load(**ckpt, mtp);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->layer(1).moe.shared.gate_proj.dtype, kernels::DType::kI4);
  EXPECT_EQ((*w)->layer(mtp_layer).attn.q_a_proj.dtype, kernels::DType::kI4);
  EXPECT_EQ((*w)->layer(1).attn.q_a_proj.dtype, kernels::DType::kBF16);
  ASSERT_TRUE(ParseWeightDType("int8", &mtp).ok());
  EXPECT_EQ(ModelWeights::Load(**ckpt, mtp).status().code(), absl::StatusCode::kInvalidArgument);
  // A pre-quantised checkpoint is not quantised again; --out must be a new or empty directory.
  QuantizeCheckpointOptions q;
  auto again = WriteQuantizedCheckpoint(out, (dir_ / "again").string(), q);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  auto onto_itself = WriteQuantizedCheckpoint(testing::ModelDir("glm5-tiny-code"), out, q);
  EXPECT_EQ(onto_itself.status().code(), absl::StatusCode::kAlreadyExists) << onto_itself.status();
  q.dtype = kernels::DType::kBF16;
  auto not_int = WriteQuantizedCheckpoint(testing::ModelDir("glm5-tiny-code"), (dir_ / "bf16").string(), q);
  EXPECT_EQ(not_int.status().code(), absl::StatusCode::kInvalidArgument) << not_int.status();
}

// config.json's expert_quantization must describe the stored tensors: a wrong format, group
// size or scale shape is refused when the checkpoint is validated, naming the tensor.
TEST_F(QuantizedCheckpointTest, AConfigThatDoesNotDescribeTheTensorsIsRefused) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  const fs::path config_path = fs::path(out) / "config.json";
  std::ifstream in(config_path);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json original = nlohmann::json::parse(text.str());
  auto with = [&](const nlohmann::json& quantization) -> absl::Status {
    nlohmann::json c = original;
    c["expert_quantization"] = quantization;
    std::ofstream(config_path, std::ios::trunc) << c.dump();
    auto ckpt = Checkpoint::Open(out);
    if (!ckpt.ok()) return ckpt.status();
    auto w = ModelWeights::Load(**ckpt, {});
    return w.ok() ? absl::OkStatus() : w.status();
  };
  EXPECT_TRUE(with({{"format", "int4"}, {"group_size", 32}}).ok());
  for (const nlohmann::json& bad : {nlohmann::json{{"format", "int3"}, {"group_size", 32}},
                                    nlohmann::json{{"format", "int4"}, {"group_size", 48}},
                                    nlohmann::json{{"format", "int4"}, {"group_size", 0}},
                                    nlohmann::json{{"format", "int4"}}, nlohmann::json("int4")}) {
    const absl::Status s = with(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad.dump() << ": " << s;
    EXPECT_NE(s.message().find("expert_quantization"), std::string::npos) << s;
  }
  for (const nlohmann::json& wrong : {nlohmann::json{{"format", "int4"}, {"group_size", 64}},
                                      nlohmann::json{{"format", "int8"}, {"group_size", 32}}}) {
    const absl::Status s = with(wrong);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << wrong.dump() << ": " << s;
    EXPECT_NE(s.message().find("experts."), std::string::npos) << s;
  }
}

// A NaN or infinite scale (a corrupt file: the writer never makes one) loaded without a word and
// turned every logit into NaN, which greedy decoding read as token 0 (EOS); the load now refuses
// it, naming the scale tensor and where in it.
TEST_F(QuantizedCheckpointTest, CorruptScalesAreRefusedAtLoad) {
  const std::string out = Quantize("glm5-tiny-code", "int4");
  ASSERT_FALSE(out.empty());
  const std::string scale = "model.layers.1.mlp.experts.0.gate_proj.weight_scale";
  std::string where;
  int64_t begin = 0;
  {
    auto ckpt = Checkpoint::Open(out);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    const Checkpoint::Located loc = (*ckpt)->Find(scale);
    ASSERT_NE(loc.info, nullptr);
    where = loc.file->path();
    begin = loc.info->begin + 2 * 5;  // row 0, group 5
  }
  auto poke = [&](uint16_t bits) {
    std::fstream f(where, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(begin);
    f.write(reinterpret_cast<const char*>(&bits), sizeof(bits));
  };
  auto load = [&]() -> absl::Status {
    auto ckpt = Checkpoint::Open(out);
    if (!ckpt.ok()) return ckpt.status();
    auto w = ModelWeights::Load(**ckpt, {});
    return w.ok() ? absl::OkStatus() : w.status();
  };
  for (uint16_t bad : {uint16_t{0x7e00}, uint16_t{0x7c00}, uint16_t{0xfc00}}) {  // NaN, +inf, -inf
    poke(bad);
    const absl::Status s = load();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), scale) && absl::StrContains(s.message(), "group 5")) << s;
  }
  poke(0xbc00);  // -1 and 0: values the writer makes (a sign choice, an all-zero group)
  EXPECT_TRUE(load().ok());
  poke(0x0000);
  EXPECT_TRUE(load().ok());
}

}  // namespace
}  // namespace glm::model
