// LayerReadAhead announces exactly the tensors a load will read, a layer at a time: every tensor
// of the checkpoint once for a whole-model load, and not the routed experts a rank does not own
// or streams, nor a head the load does not ask for.
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/layer_read_ahead.h"
#include "shard_worker/model/synth_checkpoint.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

class LayerReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("glm_read_ahead_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    auto tiny = SynthPresetByName("tiny");
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    ASSERT_TRUE(WriteSynthCheckpoint(*tiny, dir_.string(), 2).ok());
    auto ckpt = Checkpoint::Open(dir_.string());
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    ckpt_ = *std::move(ckpt);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Names announced for weight layer `layer` (-1: the head's group).
  static std::set<std::string> Names(const LayerReadAhead& r, int64_t layer) {
    std::set<std::string> names;
    for (const auto& t : layer < 0 ? r.head_tensors() : r.layer_tensors(layer)) {
      EXPECT_NE(t.file, nullptr);
      names.insert(t.info->name);
    }
    return names;
  }
  static int64_t Experts(const std::set<std::string>& names) {
    int64_t n = 0;
    for (const auto& name : names) n += name.find(".mlp.experts.") != std::string::npos;
    return n;
  }

  fs::path dir_;
  std::unique_ptr<Checkpoint> ckpt_;
};

TEST_F(LayerReadAheadTest, AWholeModelLoadAnnouncesEveryTensorOnceInItsLayer) {
  LayerReadAhead r(*ckpt_, LoadOptions{}, /*experts_stream=*/false);
  const int64_t layers = ckpt_->config().num_weight_layers();
  std::set<std::string> all = Names(r, -1);
  EXPECT_EQ(all, (std::set<std::string>{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}));
  size_t total = all.size();
  for (int64_t l = 0; l < layers; ++l) {
    const auto names = Names(r, l);
    for (const auto& name : names) EXPECT_EQ(TensorLayer(name), l) << name;
    total += names.size();
    all.insert(names.begin(), names.end());
  }
  EXPECT_EQ(total, all.size());  // none twice
  EXPECT_EQ(all.size(), ckpt_->TensorNames().size());
  EXPECT_TRUE(r.layer_tensors(-1).empty());
  EXPECT_TRUE(r.layer_tensors(layers).empty());
  // Advice is given on the advising thread, each tensor once a call; out of range: nothing.
  r.AdviseHead();
  for (int64_t l = -1; l <= layers; ++l) r.AdviseLayer(l);
  r.Flush();
  EXPECT_EQ(r.advised(), static_cast<int64_t>(all.size()));
  LayerReadAhead off(*ckpt_, LoadOptions{}, false, /*enabled=*/false);
  off.AdviseHead();
  off.AdviseLayer(0);
  off.Flush();
  EXPECT_EQ(off.advised(), 0);
  // Destroyed with advice still queued: dropped, no wait for it.
  {
    LayerReadAhead pending(*ckpt_, LoadOptions{}, false);
    for (int i = 0; i < 100; ++i) pending.AdviseLayer(i % layers);
  }
}

TEST_F(LayerReadAheadTest, OnlyTheRanksOwnExpertsAndTheHeadAskedFor) {
  const ModelConfig& c = ckpt_->config();
  const int64_t moe_layer = 1, experts = c.n_routed_experts;
  ASSERT_EQ(c.mlp_kind(moe_layer), MlpKind::kSparse);
  const auto all = Names(LayerReadAhead(*ckpt_, LoadOptions{}, false), moe_layer);
  EXPECT_EQ(Experts(all), 3 * experts);

  LoadOptions rank;
  rank.owns_expert = [](int64_t, int64_t e) { return e % 3 == 1; };
  rank.load_embedding = false;
  rank.load_head = false;
  const LayerReadAhead mine(*ckpt_, rank, false);
  const auto names = Names(mine, moe_layer);
  int64_t owned = 0;
  for (int64_t e = 0; e < experts; ++e) owned += e % 3 == 1;
  EXPECT_EQ(Experts(names), 3 * owned);
  for (const auto& name : names)
    if (name.find(".mlp.experts.") != std::string::npos) {
      const int64_t e = std::stoll(name.substr(name.find(".mlp.experts.") + 13));
      EXPECT_EQ(e % 3, 1) << name;
    }
  EXPECT_EQ(names.size(), all.size() - 3 * (experts - owned));  // the rest of the layer all there
  EXPECT_TRUE(mine.head_tensors().empty());

  const LayerReadAhead streamed(*ckpt_, LoadOptions{}, /*experts_stream=*/true);
  EXPECT_EQ(Experts(Names(streamed, moe_layer)), 0);
  EXPECT_EQ(Names(streamed, moe_layer).size(), all.size() - 3 * experts);
}

}  // namespace
}  // namespace glm::model
