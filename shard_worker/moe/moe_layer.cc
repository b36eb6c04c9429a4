#include "shard_worker/moe/moe_layer.h"

#include <algorithm>
#include <atomic>

#include "shard_worker/kernels/activations.h"
#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/scratch.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::moe {

namespace {

std::atomic<const MlpInputObserver*> g_mlp_input_observer{nullptr};

void ObserveMlpInput(const kernels::WeightView& weight, const float* x, int64_t n) {
  if (const MlpInputObserver* observer = g_mlp_input_observer.load(std::memory_order_acquire))
    (*observer)(weight, x, n);
}

}  // namespace

void SetMlpInputObserver(const MlpInputObserver* observer) {
  g_mlp_input_observer.store(observer, std::memory_order_release);
}

void RunMlp(const model::MlpWeights& w, const float* x, int64_t n, float* y, kernels::ThreadPool* pool) {
  const int64_t inter = w.gate_proj.rows;
  // [n, inter] each, written before read (kernels/scratch.h).
  thread_local std::vector<float> gate_buf, up_buf;
  float* gate = kernels::GrowScratch(gate_buf, n * inter);
  float* up = kernels::GrowScratch(up_buf, n * inter);
  ObserveMlpInput(w.gate_proj, x, n);
  kernels::MatMulShared(x, n, {{&w.gate_proj, gate}, {&w.up_proj, up}}, pool);
  kernels::SiluMul(gate, up, n * inter, gate);
  ObserveMlpInput(w.down_proj, gate, n);
  kernels::MatMul(gate, n, w.down_proj, y, pool);
}

namespace {

std::atomic<int64_t> g_split_expert_bytes{int64_t{1} << 20};

}  // namespace

void SetSplitExpertBytes(int64_t bytes) { g_split_expert_bytes.store(std::max<int64_t>(0, bytes)); }
int64_t SplitExpertBytes() { return g_split_expert_bytes.load(std::memory_order_relaxed); }

namespace {

// One expert's work in the two-phase decode path (the shared expert is one too).
struct ExpertJob {
  const model::MlpWeights* mlp = nullptr;
  int64_t n = 0;          // its tokens
  std::vector<float> xs;  // [n, hidden] their inputs
  std::vector<float> h;   // [n, inter]: gate, then silu(gate) · up
  std::vector<float> up;  // [n, inter]
  std::vector<float> ys;  // [n, hidden]
};

// fn(job, r0, r1) for rows [r0, r1) of every job, split across the pool in pieces of about equal
// work. The jobs' rows are laid end to end in blocks of kBlockRows (whole groups of the decode
// kernels' 8 or 4 rows), each block weighing kernels::MatMulWork of its bytes and the job's
// tokens, so a shared expert with all of a batch's tokens is not one thread's extra load.
// ThreadPool::ParallelFor splits the work (a contiguous share per thread, then a guided tail) and
// each piece runs the blocks whose first unit it holds: every row exactly once. A piece may span
// two jobs. matrix_of(job): the matrix whose rows are split.
template <typename MatrixOf, typename Fn>
void ForEachJobRows(kernels::ThreadPool* pool, std::vector<ExpertJob>& jobs, MatrixOf matrix_of, Fn fn) {
  constexpr int64_t kBlockRows = 8;
  // Job i: work [start[i], start[i + 1]), `unit[i]` per block.
  std::vector<int64_t> start(jobs.size() + 1, 0), unit(jobs.size());
  int64_t grain = 0;  // two single-token blocks of the smallest rows: 16 rows, >= 16 KiB here
  for (size_t i = 0; i < jobs.size(); ++i) {
    const kernels::WeightView& w = matrix_of(jobs[i]);
    unit[i] = std::max<int64_t>(1, kernels::MatMulWork(kBlockRows * w.row_bytes(), jobs[i].n));
    start[i + 1] = start[i] + (w.rows + kBlockRows - 1) / kBlockRows * unit[i];
    const int64_t two_blocks = 2 * kBlockRows * w.row_bytes();
    grain = grain == 0 ? two_blocks : std::min(grain, two_blocks);
  }
  pool->ParallelFor(
      start.back(),
      [&](int64_t begin, int64_t end) {
        size_t i = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), begin) - start.begin()) - 1;
        for (; i < jobs.size() && start[i] < end; ++i) {
          const int64_t rows = matrix_of(jobs[i]).rows;
          // Blocks whose first unit start[i] + b * unit lies in [begin, end).
          auto first_block_at = [&](int64_t u) { return (std::max<int64_t>(0, u - start[i]) + unit[i] - 1) / unit[i]; };
          const int64_t r0 = std::min(rows, first_block_at(begin) * kBlockRows);
          const int64_t r1 = std::min(rows, first_block_at(end) * kBlockRows);
          if (r0 < r1) fn(jobs[i], r0, r1);
        }
      },
      std::max<int64_t>(1, grain));
}

// RunMlp for every job on the pool: gate/up in one parallel region, down in a second, each over
// the rows of all jobs together (ForEachJobRows). At decode the jobs are few (top-k + shared: 9
// for GLM-5) and large (tens of MiB), so whole-expert tasks would leave threads idle. The split
// used to be `parts` equal tasks per matrix taken from a counter: on a 16-core Xeon 9 jobs made
// 36 tasks, 2.25 rounds of 16 threads, and the last round left 12 threads waiting for a task's
// length. A row's result never depends on how the rows are split, so this computes exactly what
// RunMlp does.
void RunJobsSplit(std::vector<ExpertJob>& jobs, int64_t hidden, kernels::ThreadPool* pool) {
  const kernels::MatMulRowsFn rows_fn = kernels::BestMatMulRows();
  for (const ExpertJob& j : jobs) ObserveMlpInput(j.mlp->gate_proj, j.xs.data(), j.n);
  ForEachJobRows(pool, jobs, [](const ExpertJob& j) -> const kernels::WeightView& { return j.mlp->gate_proj; },
                 [&](ExpertJob& j, int64_t r0, int64_t r1) {
                   const int64_t inter = j.mlp->gate_proj.rows;
                   rows_fn(j.xs.data(), j.n, hidden, j.mlp->gate_proj, r0, r1, j.h.data(), inter);
                   rows_fn(j.xs.data(), j.n, hidden, j.mlp->up_proj, r0, r1, j.up.data(), inter);
                   for (int64_t i = 0; i < j.n; ++i) {
                     float* g = j.h.data() + i * inter + r0;
                     kernels::SiluMul(g, j.up.data() + i * inter + r0, r1 - r0, g);
                   }
                 });
  for (const ExpertJob& j : jobs) ObserveMlpInput(j.mlp->down_proj, j.h.data(), j.n);
  ForEachJobRows(pool, jobs, [](const ExpertJob& j) -> const kernels::WeightView& { return j.mlp->down_proj; },
                 [&](ExpertJob& j, int64_t r0, int64_t r1) {
                   rows_fn(j.h.data(), j.n, j.mlp->gate_proj.rows, j.mlp->down_proj, r0, r1, j.ys.data(), hidden);
                 });
}

}  // namespace

MoeLayer::MoeLayer(const model::ModelConfig& config, kernels::ThreadPool* pool)
    : config_(config), pool_(pool), router_(config) {}

void MoeLayer::RouterLogits(const std::vector<float>& router, const float* x, int64_t T, float* logits) const {
  const int64_t hidden = config_.hidden_size, E = config_.n_routed_experts;
  // Each logit is one double sum (the router decides discrete choices: keep its logits
  // accurate) in a fixed lane order (kernels::DotRowsF64); tokens are spread over the pool, which
  // changes no logit's arithmetic. router: [E, hidden], logits: [T, E].
  auto route_logits = [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) kernels::DotRowsF64(x + t * hidden, router.data(), E, hidden, logits + t * E);
  };
  if (pool_ != nullptr)
    pool_->ParallelFor(T, route_logits);
  else
    route_logits(0, T);
}

void MoeLayer::PrefetchNext(const model::MoeWeights& next, int64_t next_layer, const float* x, int64_t T,
                            ExpertStore* store) const {
  const int64_t E = config_.n_routed_experts;
  std::vector<float> logits(T * E);
  RouterLogits(next.router, x, T, logits.data());
  std::vector<int64_t> votes(E, 0);
  for (int64_t t = 0; t < T; ++t)
    for (int32_t e : router_.Route(logits.data() + t * E, next.router_bias.data()).experts) ++votes[e];
  // Experts other ranks also hold: only those the predicted routing would have this rank compute.
  std::vector<int32_t> computer;
  if (next.replicas != nullptr) computer = next.replicas->Assign(votes);
  std::vector<int64_t> want;
  for (int64_t e = 0; e < E; ++e)
    if (votes[e] > 0 && next.expert_loaded[e] && (computer.empty() || computer[e] == next.replicas->self()))
      want.push_back(e);
  std::stable_sort(want.begin(), want.end(), [&](int64_t a, int64_t b) { return votes[a] > votes[b]; });
  store->Prefetch(next_layer, want);
}

void MoeLayer::Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out,
                       MoeStats* stats) const {
  (void)Forward(w, x, T, out, stats, ExpertSource());  // resident experts: cannot fail
}

absl::Status MoeLayer::Forward(const model::MoeWeights& w, const float* x, int64_t T, float* out, MoeStats* stats,
                               const ExpertSource& source) const {
  const int64_t hidden = config_.hidden_size, E = config_.n_routed_experts, k = config_.num_experts_per_tok;
  std::vector<float> logits(T * E);
  RouterLogits(w.router, x, T, logits.data());
  std::vector<Routing> routes(T);
  std::vector<std::vector<int64_t>> tokens_of(E);  // expert -> batch rows, ascending
  for (int64_t t = 0; t < T; ++t) {
    routes[t] = router_.Route(logits.data() + t * E, w.router_bias.data());
    for (int32_t e : routes[t].experts) tokens_of[e].push_back(t);
  }
  if (stats != nullptr && stats->tokens_per_expert != nullptr)
    for (int64_t e = 0; e < E; ++e)
      if (!tokens_of[e].empty())
        stats->tokens_per_expert[e].fetch_add(static_cast<int64_t>(tokens_of[e].size()), std::memory_order_relaxed);
  // Each active expert once over its tokens; results kept per (token, slot) so every token sums
  // its experts in ascending expert order, whatever else is in the batch.
  // [T, k, hidden] (kernels/scratch.h): every computed expert writes its slots; the slots of
  // experts another rank holds are zero here.
  thread_local std::vector<float> slot_buf;
  float* slot_out = kernels::GrowScratch(slot_buf, T * k * hidden);
  // The experts this rank computes: those it holds, or where other ranks of the stage hold some
  // of them too, those the replicas' assignment gives it (every rank derives the same one).
  std::vector<int32_t> computer;  // [E] the stage position computing each expert (replicas only)
  if (w.replicas != nullptr) {
    std::vector<int64_t> counts(E);
    for (int64_t e = 0; e < E; ++e) counts[e] = static_cast<int64_t>(tokens_of[e].size());
    computer = w.replicas->Assign(counts);
  }
  auto computes = [&](int64_t e) {
    return w.expert_loaded[e] && (computer.empty() || computer[e] == w.replicas->self());
  };
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s < k; ++s)
      if (!computes(routes[t].experts[s])) std::fill_n(slot_out + (t * k + s) * hidden, hidden, 0.0f);
  std::vector<int64_t> order;  // active experts, in the order they are computed
  for (int64_t e = 0; e < E; ++e)
    if (!tokens_of[e].empty() && computes(e)) order.push_back(e);
  ExpertStore* store = source.store != nullptr && source.store->streaming() ? source.store : nullptr;
  if (store != nullptr) {
    // Queue this layer's misses first, then the next layer's predicted experts; compute the
    // resident experts while the I/O threads read the rest (order does not change any sum).
    std::vector<int64_t> pending = store->Prefetch(source.layer, order, /*urgent=*/true);
    if (source.next != nullptr) PrefetchNext(*source.next, source.next_layer, x, T, store);
    std::vector<int64_t> ready;
    for (int64_t e : order)
      if (std::find(pending.begin(), pending.end(), e) == pending.end()) ready.push_back(e);
    ready.insert(ready.end(), pending.begin(), pending.end());
    order = std::move(ready);
  }
  // Experts run in parallel, one thread each (an expert's matmuls are small; splitting every one
  // across the pool would leave threads idle in between). Each expert's result depends only on
  // its tokens, so which thread computes it changes nothing. Threads take experts in order from
  // a shared counter: uneven token counts balance out.
  std::atomic<size_t> next_expert{0};
  std::atomic<int64_t> bytes_read{0};
  auto count_bytes = [&](int64_t e, int64_t bytes) {
    if (source.counted_experts != nullptr) {
      const uint64_t bit = uint64_t{1} << (e % 64);
      if (source.counted_experts[e / 64].fetch_or(bit, std::memory_order_relaxed) & bit) return;
    }
    bytes_read += bytes;
  };
  std::vector<absl::Status> errors(order.size());
  const bool spread = pool_ != nullptr && pool_->size() > 1 && order.size() > 1;
  // With few tokens (decode) the shared expert is one more task of the same parallel region, taken
  // first: its three small matmuls would otherwise be three more fork-joins of the pool. With
  // many tokens (prefill) it is split across the pool after the routed experts. Which thread
  // computes it changes no arithmetic (a row's result never depends on the split).
  constexpr int64_t kSharedAsTaskTokens = 16;
  const bool shared_as_task = w.has_shared && spread && T <= kSharedAsTaskTokens;  // either path below
  thread_local std::vector<float> shared_buf;  // [T, hidden], written before read
  float* shared = w.has_shared ? kernels::GrowScratch(shared_buf, T * hidden) : nullptr;
  std::atomic<bool> shared_taken{!shared_as_task};
  // ys [tokens_of[e].size(), hidden]: each token's row times its routing weight, into its slot.
  auto weigh_into_slots = [&](int64_t e, const float* ys) {
    const auto& rows = tokens_of[e];
    for (size_t j = 0; j < rows.size(); ++j) {
      const Routing& r = routes[rows[j]];
      const int64_t slot = std::find(r.experts.begin(), r.experts.end(), e) - r.experts.begin();
      const float wt = r.weights[slot];
      float* dst = slot_out + (rows[j] * k + slot) * hidden;
      // dst = wt · ys row (fma(wt, y, 0) rounds as the product alone).
      std::fill_n(dst, hidden, 0.0f);
      kernels::Axpy(wt, ys + j * hidden, dst, hidden);
    }
  };
  auto run_experts = [&](kernels::ThreadPool* inner) {
    thread_local std::vector<float> xs, ys;  // [n, hidden] of one expert's tokens, then results
    if (!shared_taken.exchange(true)) RunMlp(w.shared, x, T, shared, nullptr);
    for (size_t i = next_expert.fetch_add(1); i < order.size(); i = next_expert.fetch_add(1)) {
      const int64_t e = order[i];
      const auto& rows = tokens_of[e];
      const model::MlpWeights* mlp = &w.experts[e];
      ExpertStore::Handle handle;  // pins a streamed expert until its tokens are done
      if (store != nullptr) {
        auto h = store->Acquire(source.layer, e);
        if (!h.ok()) {
          errors[i] = h.status();
          continue;
        }
        handle = *std::move(h);
        mlp = &handle.weights();
      }
      const int64_t n = static_cast<int64_t>(rows.size());
      // Scratch (kernels/scratch.h): a resize from a smaller expert's size would zero-fill the
      // difference for every expert of a prefill; every element is written before it is read.
      float* xe = kernels::GrowScratch(xs, n * hidden);
      float* ye = kernels::GrowScratch(ys, n * hidden);
      for (int64_t j = 0; j < n; ++j) std::copy_n(x + rows[j] * hidden, hidden, xe + j * hidden);
      RunMlp(*mlp, xe, n, ye, inner);
      count_bytes(e, mlp->bytes());
      weigh_into_slots(e, ye);
    }
  };
  // Splitting pays when an expert is large next to a fork-join (GLM-5: tens of MiB per expert);
  // the bundled model's experts (~200 KiB) run faster whole.
  const bool split = spread && store == nullptr && T <= kSharedAsTaskTokens && !order.empty() &&
                     w.experts[order[0]].bytes() >= SplitExpertBytes();
  if (split) {
    // Decode with resident experts: every expert's rows split across the pool (RunJobsSplit).
    std::vector<ExpertJob> jobs(order.size() + (w.has_shared ? 1 : 0));
    for (size_t i = 0; i < jobs.size(); ++i) {
      ExpertJob& j = jobs[i];
      const bool is_shared = i == order.size();
      j.mlp = is_shared ? &w.shared : &w.experts[order[i]];
      j.n = is_shared ? T : static_cast<int64_t>(tokens_of[order[i]].size());
      const int64_t inter = j.mlp->gate_proj.rows;
      j.xs.resize(j.n * hidden);
      j.h.resize(j.n * inter);
      j.up.resize(j.n * inter);
      j.ys.resize(j.n * hidden);
      for (int64_t t = 0; t < j.n; ++t)
        std::copy_n(x + (is_shared ? t : tokens_of[order[i]][t]) * hidden, hidden, j.xs.data() + t * hidden);
    }
    RunJobsSplit(jobs, hidden, pool_);
    for (size_t i = 0; i < order.size(); ++i) {
      count_bytes(order[i], w.experts[order[i]].bytes());
      weigh_into_slots(order[i], jobs[i].ys.data());
    }
    if (w.has_shared) std::copy(jobs.back().ys.begin(), jobs.back().ys.end(), shared);
  } else if (spread) {
    pool_->RunOnAll([&](int) { run_experts(nullptr); });
  } else {
    run_experts(pool_);
  }
  for (const auto& err : errors)
    if (!err.ok()) return err;
  if (stats) {
    stats->expert_bytes_read += bytes_read.load();
    stats->active_experts += static_cast<int64_t>(order.size());
  }
  if (w.has_shared && !shared_as_task) RunMlp(w.shared, x, T, shared, pool_);
  for (int64_t t = 0; t < T; ++t) {
    // o = ((0 + slot 0) + slot 1) + ... + shared, element by element (Axpy with 1: one rounding
    // per add, the scalar loop's values).
    float* o = out + t * hidden;
    std::fill(o, o + hidden, 0.0f);
    for (int64_t s = 0; s < k; ++s) kernels::Axpy(1.0f, slot_out + (t * k + s) * hidden, o, hidden);
    if (w.has_shared) kernels::Axpy(1.0f, shared + t * hidden, o, hidden);
  }
  return absl::OkStatus();
}

}  // namespace glm::moe
