#include "reference_fixture.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "shard_worker/model/checkpoint.h"

namespace glm::testing {

std::string ModelDir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path bundled = fs::path(GLM_MODELS_DIR) / name;
  return fs::exists(bundled) ? bundled.string() : (fs::path(GLM_TEST_FIXTURES_DIR) / name).string();
}

std::unique_ptr<model::Checkpoint> OpenCheckpoint(const std::string& name) {
  auto ckpt = model::Checkpoint::Open(ModelDir(name));
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  return ckpt.ok() ? *std::move(ckpt) : nullptr;
}

std::unique_ptr<ReferenceFixture> ReferenceFixture::Load(const std::string& name) {
  namespace fs = std::filesystem;
  auto f = std::make_unique<ReferenceFixture>();
  f->model_dir_ = ModelDir(name);
  fs::path ref = fs::path(GLM_TEST_FIXTURES_DIR) / ("ref-" + name);
  std::ifstream in(ref / "reference.json");
  if (!in) return nullptr;
  std::stringstream ss;
  ss << in.rdbuf();
  f->json_ = nlohmann::json::parse(ss.str());
  for (const auto& p : f->json_["prompts"]) {
    ReferencePrompt rp;
    rp.ids = p["ids"].get<std::vector<int32_t>>();
    rp.all_rows = p.value("logits_rows", "all") == "all";
    rp.greedy = p["greedy"].get<std::vector<int32_t>>();
    rp.greedy_gaps = p["greedy_gaps"].get<std::vector<double>>();
    rp.has_mtp = p.contains("mtp_rows");
    f->prompts_.push_back(rp);
  }
  auto file = model::SafetensorsFile::Open((ref / "reference.safetensors").string());
  if (!file.ok()) return nullptr;
  f->file_ = std::move(*file);
  return f;
}

std::vector<float> ReferenceFixture::Tensor(const std::string& name, std::vector<int64_t>* shape) const {
  const model::TensorInfo* info = file_->Find(name);
  if (info == nullptr || info->dtype != "F32") return {};
  std::vector<float> v(info->numel());
  if (!file_->Read(*info, 0, info->size, v.data()).ok()) return {};
  if (shape) *shape = info->shape;
  return v;
}

double RowErrorRatio(const float* got, const float* ref, int64_t n, double rel, double abs) {
  double max_ref = 0.0, max_diff = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (std::isnan(got[i])) d = INFINITY;
    max_diff = std::max(max_diff, d);
  }
  return max_diff / (rel * max_ref + abs);
}

std::shared_ptr<const model::ModelWeights> LoadModelWeights(const std::string& name, const char* dtype,
                                                            const char* scope) {
  auto ckpt = model::Checkpoint::Open(ModelDir(name));
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  if (!ckpt.ok()) return nullptr;
  model::LoadOptions opt;
  EXPECT_TRUE(model::ParseWeightDType(dtype, &opt).ok()) << dtype;
  EXPECT_TRUE(model::ParseQuantizeScope(scope, &opt.quantize_scope)) << scope;
  auto w = model::ModelWeights::Load(**ckpt, opt);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  return std::shared_ptr<const model::ModelWeights>(std::move(*w));
}

}  // namespace glm::testing
