// ModelWeights::LoadExpert reports the bytes it read from the checkpoint: a whole expert's three
// tensors, and for a slice (expert-tensor-parallel) less than that. It reported the whole
// tensors' sizes for any slice, so glm:rank_expert_disk_bytes_total was 2x the disk traffic at
// 4 ranks.
#include <gtest/gtest.h>

#include "reference_fixture.h"
#include "shard_worker/model/model_weights.h"

namespace glm {
namespace {

TEST(ExpertLoadBytesTest, FileBytesAreTheBytesRead) {
  auto ckpt = testing::OpenCheckpoint("glm5-tiny-code");
  ASSERT_NE(ckpt, nullptr);
  const model::ModelConfig& c = ckpt->config();
  model::LoadOptions options;
  auto whole = model::ModelWeights::LoadExpert(*ckpt, options, 1, 3);
  ASSERT_TRUE(whole.ok()) << whole.status();
  // BF16 gate, up [moe_intermediate, hidden] and down [hidden, moe_intermediate].
  const int64_t expert_bytes = 3 * c.hidden_size * c.moe_intermediate_size * 2;
  EXPECT_EQ(whole->file_bytes, expert_bytes);
  options.expert_slice_begin = c.moe_intermediate_size / 4;
  options.expert_slice_end = c.moe_intermediate_size / 2;
  auto slice = model::ModelWeights::LoadExpert(*ckpt, options, 1, 3);
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_GT(slice->file_bytes, 0);
  EXPECT_LT(slice->file_bytes, expert_bytes) << "a quarter of the expert's rows is not the whole expert";
}

}  // namespace
}  // namespace glm
