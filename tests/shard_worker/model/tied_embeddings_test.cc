// tie_word_embeddings: the output head is the embedding matrix, as transformers ties it after
// loading, even when the checkpoint also holds an lm_head.weight (fine-tuned exports keep a stale
// one); the loader used that tensor, so logits came from another matrix than the reference's.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"
#include "reference_fixture.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/model_weights.h"

namespace glm::model {
namespace {

namespace fs = std::filesystem;

bool SameBytes(const WeightView& a, const WeightView& b) {
  return a.dtype == b.dtype && a.rows == b.rows && a.row_bytes() == b.row_bytes() &&
         std::memcmp(a.data, b.data, a.rows * a.row_bytes()) == 0;
}

TEST(TiedEmbeddingsTest, TheHeadIsTheEmbeddingEvenWithAnLmHeadTensor) {
  auto fixture = testing::ReferenceFixture::Load("glm5-tiny-code");
  ASSERT_NE(fixture, nullptr);
  // The bundled model (untied, with its lm_head) with tie_word_embeddings switched on.
  const fs::path dir = fs::path(::testing::TempDir()) / "tied-glm5-tiny-code";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(fixture->model_dir()))
    if (entry.path().filename() != "config.json") fs::create_symlink(fs::absolute(entry.path()), dir / entry.path().filename());
  nlohmann::json config = nlohmann::json::parse(std::ifstream(fs::path(fixture->model_dir()) / "config.json"));
  ASSERT_EQ(config["tie_word_embeddings"], false);
  config["tie_word_embeddings"] = true;
  std::ofstream(dir / "config.json") << config.dump(2);

  auto untied_ckpt = Checkpoint::Open(fixture->model_dir());
  ASSERT_TRUE(untied_ckpt.ok()) << untied_ckpt.status();
  auto untied = ModelWeights::Load(**untied_ckpt);
  ASSERT_TRUE(untied.ok()) << untied.status();
  ASSERT_FALSE(SameBytes((*untied)->lm_head(), (*untied)->embed_tokens()));  // the fixture's two differ

  auto tied_ckpt = Checkpoint::Open(dir.string());
  ASSERT_TRUE(tied_ckpt.ok()) << tied_ckpt.status();
  auto tied = ModelWeights::Load(**tied_ckpt);
  ASSERT_TRUE(tied.ok()) << tied.status();
  EXPECT_TRUE(SameBytes((*tied)->lm_head(), (*tied)->embed_tokens()));
  EXPECT_FALSE(SameBytes((*tied)->lm_head(), (*untied)->lm_head()));
  // A vocabulary slice of the head (vocab-parallel ranks) is the embedding's rows too.
  const int64_t vocab = (*tied)->config().vocab_size;
  LoadOptions slice;
  slice.vocab_begin = vocab / 2;
  slice.vocab_end = vocab;
  auto half = ModelWeights::Load(**tied_ckpt, slice);
  ASSERT_TRUE(half.ok()) << half.status();
  const WeightView& head = (*half)->lm_head();
  const WeightView& embed = (*tied)->embed_tokens();
  ASSERT_EQ(head.rows, vocab - vocab / 2);
  EXPECT_EQ(std::memcmp(head.data, static_cast<const char*>(embed.data) + (vocab / 2) * embed.row_bytes(),
                        head.rows * head.row_bytes()),
            0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glm::model
