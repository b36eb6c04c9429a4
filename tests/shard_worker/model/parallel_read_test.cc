// SafetensorsFile::ReadParallel (stored tensors read by several threads at load) returns exactly
// Read's bytes for ranges that start and end anywhere relative to its 2 MiB pieces, into
// destinations at any alignment, with pools of any size; it refuses what Read refuses. And a
// model loaded with several read threads holds the bytes a one-thread load holds.
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "gtest/gtest.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/safetensors_file.h"
#include "shard_worker/model/synth_checkpoint.h"
#include "tests/shard_worker/model/random_tensor_file.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kPiece = SafetensorsFile::kParallelReadPiece;

class ParallelReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("glm_parallel_read_" + std::to_string(::getpid()) + ".safetensors")).string();
    // Sizes under two pieces (one pread), at and around piece multiples, and a tensor of many
    // pieces.
    ASSERT_TRUE(WriteRandomTensorFile(path_, {7, 2 * kPiece - 1, 2 * kPiece, 2 * kPiece + 1, 5 * kPiece + 4099,
                                              11 * kPiece + 13}, 5).ok());
  }
  void TearDown() override { fs::remove(path_); }
  std::string path_;
};

TEST_F(ParallelReadTest, SameBytesAsReadForEveryPoolRangeAndAlignment) {
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  kernels::ThreadPool pool1(1), pool2(2), pool3(3), pool5(5);
  int ranges = 0;
  for (const auto& [name, info] : (*file)->tensors()) {
    std::vector<std::pair<int64_t, int64_t>> cuts = {{0, info.size}, {0, 0}, {info.size, 0}};
    for (int64_t off : {int64_t{1}, kPiece - 1, kPiece + 7, info.size / 3})
      if (off > 0 && off < info.size)
        for (int64_t len : {info.size - off, (info.size - off) / 2, 2 * kPiece + 5})
          if (len > 0 && off + len <= info.size) cuts.emplace_back(off, len);
    for (const auto& [off, len] : cuts) {
      std::vector<uint8_t> want(len, 0xa5);
      ASSERT_TRUE((*file)->Read(info, off, len, want.data()).ok());
      // dst at a piece boundary, just past one, and at an odd address inside one.
      for (int64_t skew : {int64_t{0}, int64_t{1}, int64_t{4096 + 7}}) {
        for (kernels::ThreadPool* pool : {static_cast<kernels::ThreadPool*>(nullptr), &pool1, &pool2, &pool3, &pool5}) {
          std::vector<uint8_t> raw(static_cast<size_t>(len + skew + 2 * kPiece), 0x5a);
          const auto base = reinterpret_cast<uintptr_t>(raw.data());
          uint8_t* dst = raw.data() + ((kPiece - base % kPiece) % kPiece) + skew;
          ASSERT_TRUE((*file)->ReadParallel(info, off, len, dst, pool).ok())
              << name << " " << off << "+" << len << " skew " << skew;
          EXPECT_EQ(std::memcmp(dst, want.data(), static_cast<size_t>(len)), 0)
              << name << " " << off << "+" << len << " skew " << skew << " pool " << (pool ? pool->size() : 0);
          EXPECT_EQ(dst[len], 0x5a) << "wrote past the range: " << name << " " << off << "+" << len;
          if (dst > raw.data()) EXPECT_EQ(dst[-1], 0x5a) << "wrote before the range: " << name;
          ++ranges;
        }
      }
    }
  }
  EXPECT_GT(ranges, 300);
}

TEST_F(ParallelReadTest, RefusesWhatReadRefuses) {
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  kernels::ThreadPool pool(3);
  const TensorInfo* t = (*file)->Find("t" + std::to_string(5 * kPiece + 4099));
  ASSERT_NE(t, nullptr);
  std::vector<uint8_t> buf(static_cast<size_t>(t->size + 1));
  EXPECT_EQ((*file)->ReadParallel(*t, 1, t->size, buf.data(), &pool).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*file)->ReadParallel(*t, -1, 2, buf.data(), &pool).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*file)->ReadParallel(*t, 0, -1, buf.data(), &pool).code(), absl::StatusCode::kOutOfRange);

  // The file cut short inside the last tensor's last piece: the thread reading that piece fails.
  const TensorInfo* last = LastTensorInFile(**file);
  ASSERT_NE(last, nullptr);
  ASSERT_GE(last->size, 4 * kPiece);
  ASSERT_EQ(::truncate(path_.c_str(), last->begin + last->size - 3), 0);
  std::vector<uint8_t> whole(static_cast<size_t>(last->size));
  const absl::Status s = (*file)->ReadParallel(*last, 0, last->size, whole.data(), &pool);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(last->name), std::string::npos) << s;
}

// A model whose embedding and head are several pieces each (vocabulary 24000 × hidden 128 BF16:
// 5.9 MiB), loaded with one read thread and with three: the same bytes, as stored and re-quantised.
TEST(ParallelLoadTest, ModelBytesDoNotDependOnReadThreads) {
  auto preset = SynthPresetByName("tiny");
  ASSERT_TRUE(preset.ok()) << preset.status();
  preset->config.vocab_size = 24000;
  const fs::path dir = fs::path(::testing::TempDir()) / ("glm_parallel_load_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(WriteSynthCheckpoint(*preset, dir.string(), 9).ok());
  auto ckpt = Checkpoint::Open(dir.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"})  // read in several pieces
    ASSERT_GE((*ckpt)->Find(name).info->size, 2 * kPiece) << name;
  for (const char* dtype : {"stored", "int8"}) {
    LoadOptions one, three;
    ASSERT_TRUE(ParseWeightDType(dtype, &one).ok());
    ASSERT_TRUE(ParseWeightDType(dtype, &three).ok());
    one.quantize_head = three.quantize_head = true;  // int8: the head goes through the loader's scratch
    one.read_threads = 1;
    three.read_threads = 3;
    auto a = ModelWeights::Load(**ckpt, one);
    auto b = ModelWeights::Load(**ckpt, three);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ((*a)->bytes_loaded(), (*b)->bytes_loaded()) << dtype;
    for (auto view : {&ModelWeights::embed_tokens, &ModelWeights::lm_head}) {
      const kernels::WeightView& x = ((**a).*view)();
      const kernels::WeightView& y = ((**b).*view)();
      ASSERT_EQ(x.dtype, y.dtype) << dtype;
      ASSERT_EQ(x.rows, 24000) << dtype;
      const int64_t bytes = x.rows * x.row_bytes();
      EXPECT_EQ(std::memcmp(x.data, y.data, static_cast<size_t>(bytes)), 0) << dtype;
      if (x.group_scales != nullptr)
        EXPECT_EQ(std::memcmp(x.group_scales, y.group_scales, static_cast<size_t>(x.rows * x.groups_per_row() * 2)), 0);
    }
  }
  LoadOptions bad;
  bad.read_threads = -1;
  EXPECT_EQ(ModelWeights::Load(**ckpt, bad).status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glm::model
