// Broken checkpoints get one clear error naming the file and tensor, never a crash.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "nlohmann/json.hpp"

#include "reference_fixture.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_file.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/synth_checkpoint.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

class CheckpointValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("glm_ckpt_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    auto preset = SynthPresetByName("tiny");
    ASSERT_TRUE(preset.ok());
    preset->layers_per_shard = 2;
    ASSERT_TRUE(WriteSynthCheckpoint(*preset, dir_.string(), 7).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::Status LoadAll() {
    auto ckpt = Checkpoint::Open(dir_.string());
    if (!ckpt.ok()) return ckpt.status();
    auto w = ModelWeights::Load(**ckpt);
    return w.status();
  }
  std::string Shard(int i) const {
    for (const auto& e : fs::directory_iterator(dir_)) {
      std::string n = e.path().filename().string();
      if (n.rfind("model-0000" + std::to_string(i + 1), 0) == 0) return e.path().string();
    }
    return "";
  }
  std::string ReadFile(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void WriteFile(const fs::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << s;
  }
  // Rewrites the JSON header of a shard with `edit` applied (data section kept).
  void EditHeader(const std::string& shard, const std::function<void(std::string&)>& edit) {
    std::string bytes = ReadFile(shard);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    std::string header = bytes.substr(8, n), data = bytes.substr(8 + n);
    edit(header);
    std::string len(8, '\0');
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    WriteFile(shard, len + header + data);
  }

  // The shard whose header lists `tensor`.
  std::string ShardHolding(const std::string& tensor) {
    for (int i = 0; i < 9; ++i) {
      std::string shard = Shard(i);
      if (shard.empty()) break;
      auto f = SafetensorsFile::Open(shard);
      if (f.ok() && (*f)->Find(tensor) != nullptr) return shard;
    }
    return "";
  }
  // EditHeader with the header parsed: `edit` changes the JSON object.
  void EditHeaderJson(const std::string& shard, const std::function<void(nlohmann::json&)>& edit) {
    EditHeader(shard, [&](std::string& h) {
      auto j = nlohmann::json::parse(h);
      edit(j);
      h = j.dump();
      while ((8 + h.size()) % 8 != 0) h.push_back(' ');
    });
  }

  fs::path dir_;
};

// A safetensors file of `header` (JSON text) and `data_bytes` zero bytes of data.
void WriteRawSafetensors(const fs::path& path, const std::string& header, size_t data_bytes) {
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << len << header << std::string(data_bytes, '\0');
}

TEST_F(CheckpointValidationTest, SynthTinyLoads) { EXPECT_TRUE(LoadAll().ok()) << LoadAll(); }

TEST_F(CheckpointValidationTest, TruncatedShardNamesFileAndTensor) {
  std::string shard = Shard(1);
  std::string bytes = ReadFile(shard);
  WriteFile(shard, bytes.substr(0, bytes.size() - 100));
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(fs::path(shard).filename().string()), std::string::npos) << s;
  EXPECT_NE(s.message().find("tensor '"), std::string::npos) << s;
  EXPECT_NE(s.message().find("outside the data section"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, FileShorterThanHeader) {
  std::string shard = Shard(0);
  WriteFile(shard, "abc");
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("too short"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, HeaderLengthBeyondFile) {
  std::string shard = Shard(0);
  std::string bytes = ReadFile(shard);
  bytes[6] = 0x10;  // header length of ~4.5e15 bytes
  WriteFile(shard, bytes);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("header length"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, CorruptHeaderJson) {
  EditHeader(Shard(0), [](std::string& h) { h[0] = 'x'; });
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a JSON object"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, WrongDtypeForByteCount) {
  EditHeader(Shard(0), [](std::string& h) {
    auto pos = h.find("\"BF16\"");
    h.replace(pos, 6, "\"F32\" ");
  });
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("shape × dtype needs"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, UnknownDtype) {
  EditHeader(Shard(0), [](std::string& h) {
    auto pos = h.find("\"BF16\"");
    h.replace(pos, 6, "\"Q4K\" ");
  });
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("unknown dtype Q4K"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, ShapeMismatchWithConfig) {
  // Claim a different hidden size in config.json: every tensor now disagrees.
  std::string cfg = ReadFile(dir_ / "config.json");
  auto pos = cfg.find("\"hidden_size\": 128");
  ASSERT_NE(pos, std::string::npos);
  cfg.replace(pos, 18, "\"hidden_size\": 256");
  WriteFile(dir_ / "config.json", cfg);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("config.json implies"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, MissingTensor) {
  std::string index = ReadFile(dir_ / "model.safetensors.index.json");
  EditHeader(Shard(0), [](std::string& h) {
    auto pos = h.find("model.norm.weight");
    if (pos != std::string::npos) h.replace(pos, 17, "model.xxxx.weight");
  });
  // Either shard 0 held model.norm (now renamed: listed-but-missing) or the index names it.
  absl::Status s = LoadAll();
  if (s.ok()) {
    // model.norm lives in the last shard: drop it from the index instead.
    auto pos = index.find("\"model.norm.weight\"");
    ASSERT_NE(pos, std::string::npos);
    index.replace(pos, 19, "\"model.nrm.weight\"");
    WriteFile(dir_ / "model.safetensors.index.json", index);
    s = LoadAll();
  }
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.message().find("missing") != std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, UnexpectedTensor) {
  EditHeader(Shard(0), [](std::string& h) {
    auto pos = h.find("model.layers.0.input_layernorm.weight");
    ASSERT_NE(pos, std::string::npos);
    h.replace(pos, 37, "model.layers.0.input_layernorm.wexght");
  });
  std::string index = ReadFile(dir_ / "model.safetensors.index.json");
  auto pos = index.find("model.layers.0.input_layernorm.weight");
  index.replace(pos, 37, "model.layers.0.input_layernorm.wexght");
  WriteFile(dir_ / "model.safetensors.index.json", index);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  // The real name is now missing; the renamed one would be reported as unexpected.
  EXPECT_NE(s.message().find("input_layernorm"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, ExtraTensorIsUnexpected) {
  SafetensorsWriter extra;
  extra.Add({"model.layers.0.mystery.weight", "F32", {2}, std::vector<uint8_t>(8, 0), nullptr});
  ASSERT_TRUE(extra.Write((dir_ / "model-extra.safetensors").string()).ok());
  std::string index = ReadFile(dir_ / "model.safetensors.index.json");
  auto pos = index.find("\"weight_map\": {");
  ASSERT_NE(pos, std::string::npos) << index.substr(0, 200);
  index.insert(pos + 15, "\"model.layers.0.mystery.weight\": \"model-extra.safetensors\",");
  WriteFile(dir_ / "model.safetensors.index.json", index);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model-extra.safetensors: tensor 'model.layers.0.mystery.weight' is unexpected"),
            std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, IndexPointsToMissingFile) {
  std::string index = ReadFile(dir_ / "model.safetensors.index.json");
  auto pos = index.find("model-00001-of");
  index.replace(pos, 14, "model-00009-of");
  WriteFile(dir_ / "model.safetensors.index.json", index);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model-00009-of"), std::string::npos) << s;
}

// data_offsets above INT64_MAX wrapped negative when read as int64: [2^64 - 256, 0] passed every
// check as [-256, 0] and pointed model.norm.weight at the last 256 bytes of the header.
TEST_F(CheckpointValidationTest, DataOffsetsAboveInt64MaxAreOutsideTheFile) {
  const std::string shard = ShardHolding("model.norm.weight");
  ASSERT_FALSE(shard.empty());
  uint64_t bytes = 0;
  EditHeaderJson(shard, [&](nlohmann::json& h) {
    auto& offsets = h["model.norm.weight"]["data_offsets"];
    bytes = offsets[1].get<uint64_t>() - offsets[0].get<uint64_t>();
    offsets = {0 - bytes, uint64_t{0}};
  });
  ASSERT_EQ(bytes, 256u);  // BF16 [128]
  absl::Status s = LoadAll();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(fs::path(shard).filename().string() + ": tensor 'model.norm.weight': data_offsets [18446744073709551360, 0] fall outside the data section"),
            std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, OffsetsAndDimsAboveInt64MaxAreRejectedByTheHeaderParser) {
  const fs::path path = dir_ / "raw.safetensors";
  // begin 2^64 - 512: as int64, -512, and end - begin = 512 bytes, just what F32 [128] needs.
  WriteRawSafetensors(path, R"({"a":{"dtype":"F32","shape":[128],"data_offsets":[18446744073709551104,0]}})", 512);
  auto f = SafetensorsFile::Open(path.string());
  ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find("tensor 'a': data_offsets [18446744073709551104, 0] fall outside"),
            std::string::npos) << f.status();
  // Dims [2^64 - 1, 2^64 - 64]: as int64 -1 × -64 = 64 elements, the bytes the offsets hold.
  WriteRawSafetensors(path,
                      R"({"a":{"dtype":"F32","shape":[18446744073709551615,18446744073709551552],"data_offsets":[0,256]}})",
                      256);
  f = SafetensorsFile::Open(path.string());
  ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find("tensor 'a': shape is implausibly large"), std::string::npos) << f.status();
  // An end offset past the data section, above INT64_MAX.
  WriteRawSafetensors(path, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,9223372036854775808]}})", 8);
  f = SafetensorsFile::Open(path.string());
  ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find("data_offsets [0, 9223372036854775808] fall outside"), std::string::npos)
      << f.status();
}

// nlohmann keeps the last of duplicate keys: a header or weight_map naming a tensor twice loaded
// one of the two entries without a word.
TEST_F(CheckpointValidationTest, TensorNamedTwiceInAHeaderIsAnError) {
  const fs::path path = dir_ / "raw.safetensors";
  WriteRawSafetensors(path,
                      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                      16);
  auto f = SafetensorsFile::Open(path.string());
  ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find("raw.safetensors: tensor 'a' appears twice in the header"), std::string::npos)
      << f.status();
  // A key repeated inside one tensor's entry.
  WriteRawSafetensors(path, R"({"a":{"dtype":"F32","dtype":"BF16","shape":[2],"data_offsets":[0,8]}})", 8);
  f = SafetensorsFile::Open(path.string());
  ASSERT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_NE(f.status().message().find("raw.safetensors: tensor 'a': key 'dtype' appears twice"), std::string::npos)
      << f.status();
  // Repeats inside __metadata__ (free-form, never read) are let through.
  WriteRawSafetensors(path,
                      R"({"__metadata__":{"format":"pt","format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                      8);
  f = SafetensorsFile::Open(path.string());
  ASSERT_TRUE(f.ok()) << f.status();
  // The same in a real shard: a second entry for model.norm.weight.
  const std::string shard = ShardHolding("model.norm.weight");
  ASSERT_FALSE(shard.empty());
  EditHeader(shard, [](std::string& h) {
    const size_t at = h.find("\"model.norm.weight\"");
    ASSERT_NE(at, std::string::npos);
    const size_t end = h.find('}', at);
    const std::string entry = h.substr(at, end + 1 - at);
    h.insert(1, entry + ",");
  });
  absl::Status s = LoadAll();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(fs::path(shard).filename().string() + ": tensor 'model.norm.weight' appears twice in the header"),
            std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, TensorNamedTwiceInTheIndexIsAnError) {
  const fs::path index_path = dir_ / "model.safetensors.index.json";
  std::string index = ReadFile(index_path);
  const size_t at = index.find("\"weight_map\": {");
  ASSERT_NE(at, std::string::npos) << index.substr(0, 200);
  // model.norm.weight first listed in another shard; the later (true) entry used to win silently.
  const std::string holder = fs::path(ShardHolding("model.norm.weight")).filename().string();
  const std::string other = holder == fs::path(Shard(0)).filename().string() ? fs::path(Shard(1)).filename().string()
                                                                             : fs::path(Shard(0)).filename().string();
  index.insert(at + 15, "\"model.norm.weight\": \"" + other + "\",");
  WriteFile(index_path, index);
  absl::Status s = LoadAll();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("model.safetensors.index.json: tensor 'model.norm.weight' appears twice in weight_map"),
            std::string::npos) << s;
}

// An index whose weight_map is empty was taken for a single-file checkpoint: "model.safetensors:
// cannot open: No such file or directory".
TEST_F(CheckpointValidationTest, EmptyWeightMapSaysSo) {
  WriteFile(dir_ / "model.safetensors.index.json", R"({"metadata":{},"weight_map":{}})");
  absl::Status s = LoadAll();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("model.safetensors.index.json: weight_map lists no tensors"), std::string::npos) << s;
}

TEST_F(CheckpointValidationTest, BadConfigValuesAreRejected) {
  std::string cfg = ReadFile(dir_ / "config.json");
  auto bad = cfg;
  bad.replace(bad.find("\"glm_moe_dsa\""), 13, "\"llama\"");
  WriteFile(dir_ / "config.json", bad);
  absl::Status s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model_type"), std::string::npos) << s;
  WriteFile(dir_ / "config.json", "{not json");
  s = LoadAll();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not valid JSON"), std::string::npos) << s;
}

// JSON nested absurdly deep (120M levels took 7.6 GB and ended in an uncaught std::bad_alloc) is
// refused before parsing, in config.json, the index and a shard's header; a FIFO in a file's
// place (which blocked the open forever) and a file over its size bound are refused by name.
TEST_F(CheckpointValidationTest, DeepNestingPipesAndHugeFilesAreRefusedByName) {
  const std::string config = ReadFile(dir_ / "config.json");
  const std::string deep = "{\"x\": " + std::string(100, '[') + std::string(100, ']') + "}";
  WriteFile(dir_ / "config.json", deep);
  absl::Status s = LoadAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "config.json") && absl::StrContains(s.message(), "deeper than 64")) << s;
  // Brackets inside strings are text, not nesting.
  WriteFile(dir_ / "config.json", config.substr(0, config.rfind('}')) + ", \"note\": \"" + std::string(100, '[') + "\"}");
  EXPECT_TRUE(LoadAll().ok()) << LoadAll();
  WriteFile(dir_ / "config.json", config);

  const std::string index = ReadFile(dir_ / "model.safetensors.index.json");
  WriteFile(dir_ / "model.safetensors.index.json", deep);
  s = LoadAll();
  EXPECT_TRUE(absl::StrContains(s.message(), "model.safetensors.index.json") && absl::StrContains(s.message(), "deeper")) << s;
  WriteFile(dir_ / "model.safetensors.index.json", index);

  EditHeader(Shard(0), [](std::string& h) { h.insert(h.rfind('}'), ", \"__metadata__\": {\"x\": " + std::string(100, '[') + std::string(100, ']') + "}"); });
  s = LoadAll();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "header") && absl::StrContains(s.message(), "deeper")) << s;

  // A FIFO as config.json: refused at once (no writer ever comes).
  fs::remove(dir_ / "config.json");
  ASSERT_EQ(::mkfifo((dir_ / "config.json").c_str(), 0600), 0);
  s = LoadAll();
  EXPECT_TRUE(absl::StrContains(s.message(), "not a regular file")) << s;
  fs::remove(dir_ / "config.json");
  WriteFile(dir_ / "config.json", config + std::string(kMaxSmallModelFileBytes, ' '));
  s = LoadAll();
  EXPECT_TRUE(absl::StrContains(s.message(), "config.json") && absl::StrContains(s.message(), "bytes, more than")) << s;
}

TEST(ModelConfigTest, RejectsUnsupportedAndInconsistentFields) {
  const std::string base = R"({"model_type":"glm_moe_dsa","vocab_size":64,"hidden_size":32,"intermediate_size":64,
    "moe_intermediate_size":16,"num_hidden_layers":2,"num_attention_heads":2,"n_routed_experts":4,
    "num_experts_per_tok":2,"q_lora_rank":16,"kv_lora_rank":8,"qk_nope_head_dim":8,"qk_rope_head_dim":4,
    "v_head_dim":8,"index_topk":4,"index_head_dim":8,"index_n_heads":2,"eos_token_id":1)";
  EXPECT_TRUE(ModelConfig::FromJson(base + "}").ok()) << ModelConfig::FromJson(base + "}").status();
  auto expect_error = [&](const std::string& extra, const std::string& needle) {
    auto c = ModelConfig::FromJson(base + "," + extra + "}");
    ASSERT_FALSE(c.ok()) << extra;
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status();
  };
  expect_error(R"("rope_parameters":{"rope_type":"yarn","rope_theta":10000})", "rope_type");
  expect_error(R"("n_group":3)", "n_group");
  expect_error(R"("topk_group":2)", "topk_group");
  expect_error(R"("hidden_act":"gelu")", "hidden_act");
  expect_error(R"("indexer_types":["shared","full"])", "indexer_types");
  expect_error(R"("mlp_layer_types":["dense"])", "mlp_layer_types");
  expect_error(R"("num_nextn_predict_layers":3)", "num_nextn_predict_layers");
  expect_error(R"("quantization_config":{"quant_method":"awq"})", "quant_method");
  expect_error(R"("quantization_config":{"quant_method":"fp8","weight_block_size":[128]})", "weight_block_size");
  expect_error(R"("attention_bias":true)", "attention_bias");
  expect_error(R"("num_key_value_heads":1)", "num_key_value_heads");
  expect_error(R"("num_key_value_heads":"2")", "must equal num_attention_heads (2) for MLA, got \"2\"");
  expect_error(R"("qk_head_dim":12.5)", "qk_head_dim");
  auto neg = ModelConfig::FromJson(std::string(base).replace(base.find("\"hidden_size\":32"), 16, "\"hidden_size\":-3") + "}");
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("hidden_size"), std::string::npos);
  // Defaults derived like transformers: 3 dense layers, freq/offset indexer schedule.
  auto c = ModelConfig::FromJson(base + R"(,"first_k_dense_replace":1,"index_topk_freq":2,"index_skip_topk_offset":1})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mlp_layer_types[0], MlpKind::kDense);
  EXPECT_EQ(c->mlp_layer_types[1], MlpKind::kSparse);
  EXPECT_EQ(c->indexer_types[0], IndexerKind::kFull);
  EXPECT_EQ(c->indexer_types[1], IndexerKind::kShared);
}

TEST(SynthCheckpointTest, Glm5PresetWritesMetadataOnly) {
  auto dir = fs::temp_directory_path() / ("glm_synth_glm5_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto preset = SynthPresetByName("glm5");
  ASSERT_TRUE(preset.ok());
  auto summary = WriteSynthCheckpoint(*preset, dir.string(), 0);
  ASSERT_TRUE(summary.ok()) << summary.status();
  auto config = ModelConfig::FromFile((dir / "config.json").string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_hidden_layers, 78);
  EXPECT_EQ(config->n_routed_experts, 256);
  EXPECT_TRUE(config->fp8_weights);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  // ~744B parameters: the index records about 0.75 TB of FP8 weights.
  EXPECT_NE(summary->find("\"weights_written\":false"), std::string::npos);
  // Opening it as a checkpoint fails clearly: the shards are not there.
  auto ckpt = Checkpoint::Open(dir.string());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_NE(ckpt.status().message().find("cannot open"), std::string::npos) << ckpt.status();
  fs::remove_all(dir);
  EXPECT_FALSE(SynthPresetByName("nope").ok());
}

// Block-FP8 matrices kept as stored are scanned for NaN codes at load: a sane checkpoint's are
// marked NaN-free, which lets the SIMD decode skip its NaN patch (kernels' Fp8NanFree test).
TEST(Fp8LoadTest, StoredFp8MatricesOfASaneCheckpointAreMarkedNanFree) {
  auto ckpt = Checkpoint::Open(glm::testing::ModelDir("glm5-random-fp8"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto w = ModelWeights::Load(**ckpt);
  ASSERT_TRUE(w.ok()) << w.status();
  int fp8 = 0;
  for (int64_t l = 0; l < (*w)->config().num_hidden_layers; ++l) {
    const LayerWeights& layer = (*w)->layer(l);
    for (const kernels::WeightView* v : {&layer.attn.q_a_proj, &layer.attn.kv_a_proj, &layer.attn.o_proj}) {
      if (v->dtype != kernels::DType::kF8E4M3) continue;
      ++fp8;
      EXPECT_TRUE(v->fp8_nan_free) << "layer " << l;
    }
  }
  EXPECT_GT(fp8, 0) << "the fixture should keep its attention matrices in FP8";
}

// An FP8 router gate was read as raw FP8 values, its weight_scale_inv ignored: every router
// logit off by the block scales. Now the scales apply, as for every other FP8 matrix.
TEST(Fp8LoadTest, Fp8RouterGateIsScaledByItsBlockScales) {
  const fs::path dir = fs::temp_directory_path() / ("glm_fp8_gate_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(glm::testing::ModelDir("glm5-random-fp8"), dir, fs::copy_options::recursive);
  const std::string gate = "model.layers.1.mlp.gate.weight", scale = "model.layers.1.mlp.gate.weight_scale_inv";
  // The gate's shard rewritten: the gate as FP8 1.0 (0x38) everywhere, block scales 1, 2, 3 by
  // column block (8 x 320 in blocks of 128 x 128), every other tensor as it was.
  SafetensorsWriter writer;
  std::string shard;
  {
    auto ckpt = Checkpoint::Open(dir.string());
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    auto loc = (*ckpt)->Find(gate);
    ASSERT_NE(loc.file, nullptr);
    ASSERT_EQ(loc.info->shape, (std::vector<int64_t>{8, 320}));
    shard = loc.file->path();
    for (const auto& [name, info] : loc.file->tensors()) {
      if (name == gate) {
        writer.Add({name, "F8_E4M3", info.shape, std::vector<uint8_t>(info.numel(), 0x38), nullptr});
        continue;
      }
      std::vector<uint8_t> bytes(info.size);
      ASSERT_TRUE(loc.file->Read(info, 0, info.size, bytes.data()).ok());
      writer.Add({name, info.dtype, info.shape, std::move(bytes), nullptr});
    }
  }
  const float scales[3] = {1.0f, 2.0f, 3.0f};
  std::vector<uint8_t> scale_bytes(sizeof(scales));
  std::memcpy(scale_bytes.data(), scales, sizeof(scales));
  writer.Add({scale, "F32", {1, 3}, scale_bytes, nullptr});
  ASSERT_TRUE(writer.Write(shard).ok());
  const fs::path index_path = dir / "model.safetensors.index.json";
  nlohmann::json index;
  {
    std::ifstream in(index_path);
    index = nlohmann::json::parse(in);
  }
  index["weight_map"][scale] = fs::path(shard).filename().string();
  std::ofstream(index_path, std::ios::trunc) << index.dump();

  auto ckpt = Checkpoint::Open(dir.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto w = ModelWeights::Load(**ckpt);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<float>& router = (*w)->layer(1).moe.router;
  ASSERT_EQ(router.size(), 8u * 320u);
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t c = 0; c < 320; ++c) ASSERT_EQ(router[r * 320 + c], scales[c / 128]) << r << ", " << c;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glm::model
