#include "shard_worker/kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/matmul_dispatch.h"
#include "shard_worker/kernels/matmul_quant_avx512.h"
#include "shard_worker/kernels/q16_activations.h"
#include "shard_worker/kernels/q8_activations.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::kernels {

namespace {
// The reference of the group-quantised formats: each token's activations quantised into
// `chunks` (prepare), then every row's integer-dot reference (row_dot).
template <typename Chunk, typename Prepare, typename RowDot>
void QuantizedReference(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w, int64_t row_begin,
                        int64_t row_end, float* y, int64_t y_stride, std::vector<Chunk> chunks, Prepare prepare,
                        RowDot row_dot) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    prepare(x + t * x_stride, w.cols, chunks.data());
    for (int64_t r = row_begin; r < row_end; ++r) y[t * y_stride + r] = row_dot(w, r, chunks.data());
  }
}
}  // namespace

void MatMulRowsReference(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                         int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  if (w.dtype == DType::kI4)  // int8 activations, integer dots (q8_activations.h)
    return QuantizedReference(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride,
                              std::vector<Q8Chunk>(Q8ChunksPerRow(w.cols)), &PrepareQ8Chunks, &I4RowDotQ8);
  if (w.dtype == DType::kI8)  // int16 activations, integer dots (q16_activations.h)
    return QuantizedReference(x, n_tokens, x_stride, w, row_begin, row_end, y, y_stride,
                              std::vector<Q16Chunk>(Q16ChunksPerRow(w.cols)), &PrepareQ16Chunks, &I8RowDotQ16);
  std::vector<float> row(w.cols), rounded;
  if (w.dtype == DType::kBF16 && Bf16Activations()) {  // Σ bf16(x[c]) · W[r][c]
    rounded.resize(n_tokens * w.cols);
    RoundActivationsToBf16(x, n_tokens, x_stride, w.cols, rounded.data());
    x = rounded.data();
    x_stride = w.cols;
  }
  for (int64_t r = row_begin; r < row_end; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) row[c] = w.At(r, c);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += xt[c] * row[c];
      y[t * y_stride + r] = acc;
    }
  }
}

namespace {
std::atomic<bool> g_bf16_activations{false};
}  // namespace

void SetBf16Activations(bool on) { g_bf16_activations.store(on); }
bool ParseActivationDType(std::string_view name, bool* bf16) {
  if (name.empty() || name == "f32") *bf16 = false;
  else if (name == "bf16") *bf16 = true;
  else return false;
  return true;
}
bool Bf16Activations() { return g_bf16_activations.load(std::memory_order_relaxed); }
std::string Bf16ActivationsDetails() {
  if (MatMulPathName() != "avx512") return "f32 kernels on rounded inputs";
  if (CpuSupportsAmxBf16() && AmxTilesEnabled()) return "AMX tiles: tdpbf16ps";
  return CpuSupportsAvx512Bf16Dot() ? "vdpbf16ps" : "f32 kernels on rounded inputs";
}

void RoundActivationsToBf16(const float* x, int64_t n_tokens, int64_t x_stride, int64_t cols, float* out) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t c = 0; c < cols; ++c) out[t * cols + c] = Bf16ToF32(F32ToBf16(x[t * x_stride + c]));
}

MatMulRowsFn BestMatMulRows() { return SelectedMatMulPath().fn; }

std::string MatMulPathName() { return SelectedMatMulPath().name; }

std::string SelectMatMulPath(const std::string& name) {
  if (ForceMatMulPath(name == "auto" ? SupportedMatMulPaths().front().name : name)) return "";
  std::string known = "auto";
  for (const std::string& path : MatMulPathNames()) known += ", " + path;
  return "matmul path '" + name + "' is not supported on this CPU (choose one of: " + known + ")";
}

std::vector<std::string> MatMulPathNames() {
  std::vector<std::string> names;
  for (const MatMulPath& p : SupportedMatMulPaths()) names.push_back(p.name);
  return names;
}

std::string MatMulPathDetails() {
  const std::string name = MatMulPathName();
  if (name == "avx512" || name == "avx512_f16c_fp8") {
    const bool fp8_tables = name == "avx512" && CpuSupportsAvx512Vbmi();
    return name + (Avx512Int4UsesVnni() ? " (int8 dots: vpdpwssd, int4 dots: vpdpbusd" : " (int8 dots: vpmaddwd, int4 dots: vpmaddubsw") +
           (fp8_tables ? ", fp8 decode: vpermi2b tables)" : ", fp8 decode: vcvtph2ps)");
  }
  if (name == "avx2") return name + " (int8 dots: vpmaddwd, int4 dots: vpmaddubsw)";
  return name;
}

// A few tokens' matmul is bound by reading the weights once: each token after the first adds
// about a tenth (BF16) to a third (int4) of the first one's time (matmul_bench --threads 1 --rows
// 256 --cols 256 --tokens 1,2,4,8), so it counts as a quarter more bytes, not as many again. For
// the split decision below that keeps 2-4 token steps (two or three decode streams, a
// speculative verify) from splitting matrices whose fork and join cost more than they save:
// pooled batch-2 decode of the bundled model ran ~11% faster (median of 8 alternated pairs),
// batch 4 ~2%, batch 1 and prefill chunks (hundreds of tokens: every matrix splits either way)
// unchanged.
int64_t MatMulWork(int64_t weight_bytes, int64_t n_tokens) {
  return weight_bytes + weight_bytes * (std::max<int64_t>(1, n_tokens) - 1) / 4;
}

namespace {
// Below this much work (MatMulWork: weight bytes, a little more per extra token) a matmul runs
// on the calling thread: a fork and join of the pool costs about as much as ~128 KiB of
// streamed weights saves when split (a 256 x 256 BF16 matrix for one token). The bundled
// model's decode is made of such matrices: running them unsplit made its batch-1 step ~5-10%
// faster on 2 threads; GLM-5's are MiBs.
constexpr int64_t kMinParallelWork = 128 * 1024;

// Rows per pool task: enough that a task reads at least ~16 KiB of weights. With many tokens also
// up to 128 rows (an eighth of the matrix at most, so small ones still split): every call first
// prepares all of its tokens' activations (a copy or BF16 conversion of n_tokens x cols, about
// the work of ~10-20 rows), which the pool's dynamic tail (ThreadPool::ParallelFor) must not
// multiply.
int64_t RowGrain(int64_t row_bytes, int64_t n_tokens, int64_t rows) {
  const int64_t grain = std::max<int64_t>(4, (16 * 1024) / std::max<int64_t>(1, row_bytes));
  return n_tokens > 8 ? std::max<int64_t>(grain, std::min<int64_t>(128, rows / 8)) : grain;
}
}  // namespace

void MatMulStrided(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w,
                   float* y, int64_t y_stride, ThreadPool* pool) {
  MatMulRowsFn fn = BestMatMulRows();
  const int64_t grain = RowGrain(w.row_bytes(), n_tokens, w.rows);
  if (pool == nullptr || pool->size() == 1 || w.rows <= grain ||
      MatMulWork(w.bytes(), n_tokens) < kMinParallelWork) {
    fn(x, n_tokens, x_stride, w, 0, w.rows, y, y_stride);
    return;
  }
  pool->ParallelFor(
      w.rows,
      [&](int64_t begin, int64_t end) { fn(x, n_tokens, x_stride, w, begin, end, y, y_stride); },
      grain);
}

void MatMulShared(const float* x, int64_t n_tokens, const std::vector<MatMulTarget>& targets, ThreadPool* pool) {
  MatMulRowsFn fn = BestMatMulRows();
  // Rows of the targets laid end to end; grain as MatMulStrided's for the widest row.
  std::vector<int64_t> first(targets.size() + 1, 0);
  int64_t row_bytes = 1;
  for (size_t i = 0; i < targets.size(); ++i) {
    first[i + 1] = first[i] + targets[i].w->rows;
    row_bytes = std::max<int64_t>(row_bytes, targets[i].w->row_bytes());
  }
  const int64_t total = first.back();
  auto run = [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < targets.size(); ++i) {
      const int64_t b = std::max(begin, first[i]), e = std::min(end, first[i + 1]);
      const WeightView& w = *targets[i].w;
      if (b < e) fn(x, n_tokens, w.cols, w, b - first[i], e - first[i], targets[i].y, w.rows);
    }
  };
  const int64_t grain = RowGrain(row_bytes, n_tokens, total);
  int64_t work = 0;
  for (const MatMulTarget& t : targets) work += MatMulWork(t.w->bytes(), n_tokens);
  if (pool == nullptr || pool->size() == 1 || total <= grain || work < kMinParallelWork) {
    run(0, total);
    return;
  }
  pool->ParallelFor(total, run, grain);
}

void MatMul(const float* x, int64_t n_tokens, const WeightView& w, float* y, ThreadPool* pool) {
  MatMulStrided(x, n_tokens, w.cols, w, y, w.rows, pool);
}

}  // namespace glm::kernels
