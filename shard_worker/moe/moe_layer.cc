#include "shard_worker/moe/moe_layer.h"

#include <algorithm>

#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/matmul.h"

namespace glm::moe {

void RunMlp(const model::MlpWeights& w, const float* x, int64_t n, float* y, kernels::ThreadPool* pool) {
  const int64_t inter = w.gate_proj.rows;
  std::vector<float> gate(n * inter), up(n * inter);
  kernels::MatMul(x, n, w.gate_proj, gate.data(), pool);
  kernels::MatMul(x, n, w.up_proj, up.data(), pool);
  kernels::SiluMul(gate.data(), up.data(), n * inter, gate.data());
  kernels::MatMul(gate.data(), n, w.down_proj, y, pool);
}

MoeLayer::MoeLayer(const model::ModelConfig& config, kernels::ThreadPool* pool)
    : config_(config), pool_(pool), router_(config) {}

void MoeLayer::Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out,
                       MoeStats* stats) const {
  const int64_t hidden = config_.hidden_size, E = config_.n_routed_experts, k = config_.num_experts_per_tok;
  // Router logits in f32 [T, E]. Each logit is one double sum in column order (the router decides
  // discrete choices: keep its logits accurate); tokens are spread over the pool and kExperts
  // experts run as independent chains (prefill would otherwise wait on add latency) — neither
  // changes any logit's arithmetic.
  std::vector<float> logits(T * E);
  auto route_logits = [&](int64_t t_begin, int64_t t_end) {
    constexpr int64_t kExperts = 8;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const float* xr = x + t * hidden;
      for (int64_t e0 = 0; e0 < E; e0 += kExperts) {
        const int64_t ne = std::min(kExperts, E - e0);
        double acc[kExperts] = {};
        const float* wr = w.router.data() + e0 * hidden;
        if (ne == kExperts) {
          for (int64_t c = 0; c < hidden; ++c) {
            const double xc = xr[c];
            for (int64_t j = 0; j < kExperts; ++j) acc[j] += xc * wr[j * hidden + c];
          }
        } else {
          for (int64_t j = 0; j < ne; ++j)
            for (int64_t c = 0; c < hidden; ++c) acc[j] += static_cast<double>(xr[c]) * wr[j * hidden + c];
        }
        for (int64_t j = 0; j < ne; ++j) logits[t * E + e0 + j] = static_cast<float>(acc[j]);
      }
    }
  };
  if (pool_ != nullptr)
    pool_->ParallelFor(T, route_logits);
  else
    route_logits(0, T);
  std::vector<Routing> routes(T);
  std::vector<std::vector<int64_t>> tokens_of(E);  // expert -> batch rows, ascending
  for (int64_t t = 0; t < T; ++t) {
    routes[t] = router_.Route(logits.data() + t * E, w.router_bias.data());
    for (int32_t e : routes[t].experts) tokens_of[e].push_back(t);
  }
  // Each active expert once over its tokens; results kept per (token, slot) so every token sums
  // its experts in ascending expert order, whatever else is in the batch.
  std::vector<float> slot_out(T * k * hidden, 0.0f);
  std::vector<float> xs, ys;
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = tokens_of[e];
    if (rows.empty() || !w.expert_loaded[e]) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    xs.resize(n * hidden);
    ys.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) std::copy_n(x + rows[i] * hidden, hidden, xs.data() + i * hidden);
    RunMlp(w.experts[e], xs.data(), n, ys.data(), pool_);
    if (stats) {
      stats->expert_bytes_read += w.experts[e].bytes();
      stats->active_experts += 1;
    }
    for (int64_t i = 0; i < n; ++i) {
      const Routing& r = routes[rows[i]];
      int64_t slot = std::find(r.experts.begin(), r.experts.end(), e) - r.experts.begin();
      float wt = r.weights[slot];
      float* dst = slot_out.data() + (rows[i] * k + slot) * hidden;
      const float* src = ys.data() + i * hidden;
      for (int64_t c = 0; c < hidden; ++c) dst[c] = wt * src[c];
    }
  }
  std::vector<float> shared;
  if (w.has_shared) {
    shared.resize(T * hidden);
    RunMlp(w.shared, x, T, shared.data(), pool_);
  }
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * hidden;
    std::fill(o, o + hidden, 0.0f);
    for (int64_t s = 0; s < k; ++s) {
      const float* src = slot_out.data() + (t * k + s) * hidden;
      for (int64_t c = 0; c < hidden; ++c) o[c] += src[c];
    }
    if (w.has_shared)
      for (int64_t c = 0; c < hidden; ++c) o[c] += shared[t * hidden + c];
  }
}

}  // namespace glm::moe
