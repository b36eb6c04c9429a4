// The engine against the Hugging Face float64 references in tests/fixtures.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "reference_fixture.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint.h"
#include "shard_worker/model/glm5_model.h"
#include "shard_worker/runtime/generator.h"

namespace glm {
namespace {

using testing::ReferenceFixture;
using testing::RowErrorRatio;

class ModelReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fixture_ = ReferenceFixture::Load(GetParam());
    ASSERT_NE(fixture_, nullptr) << "fixture " << GetParam();
    auto ckpt = model::Checkpoint::Open(fixture_->model_dir());
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    auto weights = model::ModelWeights::Load(**ckpt);
    ASSERT_TRUE(weights.ok()) << weights.status();
    pool_ = std::make_unique<kernels::ThreadPool>(2);
    auto m = model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), pool_.get());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }

  // Full forward over `ids`; returns logits [n, vocab] and final hidden [n, hidden].
  model::ForwardOutput Forward(const std::vector<int32_t>& ids) {
    auto cache = model_->NewCache();
    std::vector<model::SequenceInput> batch(1);
    batch[0].cache = cache.get();
    batch[0].tokens = ids;
    auto out = model_->Forward(batch, model::LogitRows::kAll);
    EXPECT_TRUE(out.ok()) << out.status();
    return *std::move(out);
  }

  std::unique_ptr<ReferenceFixture> fixture_;
  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<model::Glm5Model> model_;
};

TEST_P(ModelReferenceTest, LogitsMatchReference) {
  const int64_t vocab = model_->config().vocab_size;
  for (size_t p = 0; p < fixture_->prompts().size(); ++p) {
    const auto& prompt = fixture_->prompts()[p];
    auto out = Forward(prompt.ids);
    std::vector<int64_t> shape;
    auto ref = fixture_->Tensor("p" + std::to_string(p) + ".logits", &shape);
    ASSERT_EQ(shape.size(), 2u);
    const int64_t rows = shape[0], n = static_cast<int64_t>(prompt.ids.size());
    ASSERT_EQ(rows, prompt.all_rows ? n : 4);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t pos = prompt.all_rows ? r : n - rows + r;
      double ratio = RowErrorRatio(out.logits.data() + pos * vocab, ref.data() + r * vocab, vocab);
      ASSERT_LE(ratio, 1.0) << GetParam() << " prompt " << p << " position " << pos;
    }
  }
}

TEST_P(ModelReferenceTest, MtpLogitsMatchReference) {
  if (!model_->config().has_mtp()) GTEST_SKIP() << "no MTP layer";
  const int64_t vocab = model_->config().vocab_size, hidden = model_->config().hidden_size;
  for (size_t p = 0; p < fixture_->prompts().size(); ++p) {
    const auto& prompt = fixture_->prompts()[p];
    std::vector<int64_t> shape;
    auto ref = fixture_->Tensor("p" + std::to_string(p) + ".mtp_logits", &shape);
    if (ref.empty()) continue;
    auto out = Forward(prompt.ids);
    const int64_t n = static_cast<int64_t>(prompt.ids.size());
    auto mtp_cache = model_->NewMtpCache();
    std::vector<model::SequenceInput> batch(1);
    batch[0].cache = mtp_cache.get();
    batch[0].tokens.assign(prompt.ids.begin() + 1, prompt.ids.end());
    batch[0].prev_hidden.assign(out.hidden.begin(), out.hidden.begin() + (n - 1) * hidden);
    auto mtp = model_->ForwardMtp(batch, model::LogitRows::kAll);
    ASSERT_TRUE(mtp.ok()) << mtp.status();
    const int64_t rows = shape[0];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t pos = prompt.all_rows ? r : (n - 1) - rows + r;
      double ratio = RowErrorRatio(mtp->logits.data() + pos * vocab, ref.data() + r * vocab, vocab);
      ASSERT_LE(ratio, 1.0) << GetParam() << " prompt " << p << " mtp row " << pos;
    }
  }
}

TEST_P(ModelReferenceTest, GreedyMatchesReferenceUpToSmallGap) {
  for (size_t p = 0; p < fixture_->prompts().size(); ++p) {
    const auto& prompt = fixture_->prompts()[p];
    runtime::GenerateOptions g;
    g.max_new_tokens = static_cast<int64_t>(prompt.greedy.size());
    g.ignore_eos = true;
    auto result = runtime::Generate(*model_, prompt.ids, g);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->tokens.size(), prompt.greedy.size());
    for (size_t i = 0; i < prompt.greedy.size(); ++i) {
      if (prompt.greedy_gaps[i] < 1e-3) break;  // the reference's own choice is a near tie
      ASSERT_EQ(result->tokens[i], prompt.greedy[i]) << GetParam() << " prompt " << p << " step " << i;
    }
  }
}

// Teacher-forced mean next-token NLL over the held-out ids (one 1024-token forward: every
// position, and the cache up to 1024 keys) against the reference's own float64 value.
TEST_P(ModelReferenceTest, HeldOutNllMatchesReference) {
  const nlohmann::json& j = fixture_->json();
  if (!j.contains("eval_ids_first_1024")) GTEST_SKIP() << "no held-out ids in this fixture";
  const std::vector<int32_t> ids = j["eval_ids_first_1024"].get<std::vector<int32_t>>();
  const double want = j["eval_nll_first_1024"].get<double>();
  const int64_t vocab = model_->config().vocab_size, n = static_cast<int64_t>(ids.size());
  ASSERT_GT(n, 1);
  auto out = Forward(ids);
  double nll = 0.0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const float* row = out.logits.data() + i * vocab;
    const double max = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
    nll += max + std::log(sum) - row[ids[i + 1]];
  }
  nll /= static_cast<double>(n - 1);
  // f32 arithmetic against a float64 reference: measured 4e-8 nats apart.
  EXPECT_NEAR(nll, want, 1e-5) << GetParam();
}

// Decoding token by token through the cache reproduces a full forward over the same tokens.
TEST_P(ModelReferenceTest, IncrementalDecodeMatchesFullForward) {
  const auto& prompt = fixture_->prompts().back();  // the longest (exercises sparse selection)
  const int64_t vocab = model_->config().vocab_size;
  const int64_t n = static_cast<int64_t>(prompt.ids.size());
  auto full = Forward(prompt.ids);
  auto cache = model_->NewCache();
  const int64_t split = n / 2;
  std::vector<model::SequenceInput> batch(1);
  batch[0].cache = cache.get();
  batch[0].tokens.assign(prompt.ids.begin(), prompt.ids.begin() + split);
  ASSERT_TRUE(model_->Forward(batch, model::LogitRows::kNone).ok());
  for (int64_t i = split; i < n; ++i) {
    batch[0].tokens = {prompt.ids[i]};
    auto step = model_->Forward(batch, model::LogitRows::kLast);
    ASSERT_TRUE(step.ok()) << step.status();
    double ratio = RowErrorRatio(step->logits.data(), full.logits.data() + i * vocab, vocab, 1e-5, 1e-6);
    ASSERT_LE(ratio, 1.0) << "position " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelReferenceTest,
                         ::testing::Values("glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace glm

namespace glm {
namespace {
// Where does the residual stream first leave the reference? (diagnostic, always passes when
// LogitsMatchReference does)
TEST(ModelReferenceDiagnostics, HiddenStatesOfLastPosition) {
  for (std::string name : {"glm5-tiny-code", "glm5-random-sparse", "glm5-random-fp8"}) {
    auto fixture = testing::ReferenceFixture::Load(name);
    auto ckpt = model::Checkpoint::Open(fixture->model_dir());
    auto weights = model::ModelWeights::Load(**ckpt);
    kernels::ThreadPool pool(2);
    auto m = *model::Glm5Model::Create(std::shared_ptr<const model::ModelWeights>(std::move(*weights)), &pool);
    const int64_t hidden = m->config().hidden_size;
    const auto& ids = fixture->prompts()[0].ids;
    const int64_t n = ids.size();
    auto cache = m->NewCache();
    std::vector<model::SequenceInput> batch(1);
    batch[0].cache = cache.get();
    batch[0].tokens = ids;
    std::vector<float> layers;
    auto out = m->Forward(batch, model::LogitRows::kAll, &layers);
    std::vector<int64_t> shape;
    auto ref = fixture->Tensor("p0.hidden_last", &shape);
    for (int64_t l = 0; l < shape[0]; ++l) {
      const float* got = layers.data() + (l * n + (n - 1)) * hidden;
      if (l == shape[0] - 1) got = out->hidden.data() + (n - 1) * hidden;  // HF's last entry is normed
      double ratio = testing::RowErrorRatio(got, ref.data() + l * hidden, hidden);
      std::printf("%s layer %ld: error ratio %.3g\n", name.c_str(), static_cast<long>(l), ratio);
      EXPECT_LE(ratio, 1.0) << name << " hidden state " << l;
    }
  }
}
}  // namespace
}  // namespace glm
