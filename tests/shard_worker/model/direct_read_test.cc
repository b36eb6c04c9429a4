// SafetensorsFile::ReadDirect (O_DIRECT around the page cache, streamed experts) returns exactly
// Read's bytes for ranges that start, end and span anywhere relative to the 4 KiB blocks and the
// 4 MiB bounce buffer; where the file system refuses O_DIRECT it reads through the page cache.
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "shard_worker/model/safetensors_file.h"
#include "tests/shard_worker/model/random_tensor_file.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

class DirectReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("glm_direct_read_" + std::to_string(::getpid()) + ".safetensors")).string();
    // Tensor sizes around the block size and past the bounce buffer.
    ASSERT_TRUE(WriteRandomTensorFile(path_, {1, 4095, 4096, 4097, 12289, (int64_t{9} << 20) + 13, 7}, 3).ok());
  }
  void TearDown() override { fs::remove(path_); }
  std::string path_;
};

TEST_F(DirectReadTest, SameBytesAsBufferedReads) {
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  const bool expect_direct = FileSystemTakesDirectIo(path_);
  std::printf("O_DIRECT on %s: %s\n", fs::temp_directory_path().c_str(), expect_direct ? "yes" : "refused");
  int ranges = 0;
  for (const auto& [name, info] : (*file)->tensors()) {
    std::vector<std::pair<int64_t, int64_t>> cuts = {{0, info.size}, {0, 0}, {info.size, 0}};
    for (int64_t off : {int64_t{1}, int64_t{4095}, int64_t{4096}, int64_t{4097}, info.size / 3, info.size - 1})
      if (off >= 0 && off < info.size)
        for (int64_t len : {int64_t{1}, int64_t{4096}, info.size - off, (info.size - off) / 2})
          if (len > 0 && off + len <= info.size) cuts.emplace_back(off, len);
    for (const auto& [off, len] : cuts) {
      std::vector<uint8_t> want(len + 1, 0xa5), got(len + 1, 0x5a);
      ASSERT_TRUE((*file)->Read(info, off, len, want.data()).ok());
      bool direct = !expect_direct;
      ASSERT_TRUE((*file)->ReadDirect(info, off, len, got.data(), &direct).ok()) << name << " " << off << "+" << len;
      EXPECT_EQ(direct, expect_direct) << name;
      EXPECT_TRUE(std::equal(want.begin(), want.begin() + len, got.begin())) << name << " " << off << "+" << len;
      EXPECT_EQ(got[len], 0x5a) << "wrote past the range: " << name << " " << off << "+" << len;
      ++ranges;
    }
  }
  EXPECT_GT(ranges, 80);
}

TEST_F(DirectReadTest, RangesOutsideTheTensorAreRefused) {
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* t = (*file)->Find("t4097");
  ASSERT_NE(t, nullptr);
  std::vector<uint8_t> buf(8192);
  EXPECT_EQ((*file)->ReadDirect(*t, 1, t->size, buf.data()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*file)->ReadDirect(*t, -1, 2, buf.data()).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(DirectReadTest, TruncatedFileIsDataLoss) {
  auto file = SafetensorsFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  // The tensor that ends the file.
  const TensorInfo* last = LastTensorInFile(**file);
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(::truncate(path_.c_str(), last->begin + last->size - 3), 0);
  std::vector<uint8_t> buf(last->size);
  EXPECT_EQ((*file)->ReadDirect(*last, 0, last->size, buf.data()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace glm::model
