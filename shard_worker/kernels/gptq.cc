#include "shard_worker/kernels/gptq.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/quantize.h"

namespace glm::kernels {
namespace {

// In place: the lower Cholesky factor L of a [n, n] (a = L Lᵀ; the upper triangle left as is).
// False when a pivot is not positive (a is not positive definite in double).
bool CholeskyLower(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0)) return false;
    const double ljj = std::sqrt(d);
    a[j * n + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / ljj;
    }
  }
  return true;
}

// (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹ from the lower factor L [n, n]; full symmetric result.
std::vector<double> InverseFromLower(const std::vector<double>& l, int64_t n) {
  // m = L⁻¹ (lower), by forward substitution column by column.
  std::vector<double> m(static_cast<size_t>(n * n), 0.0);
  for (int64_t c = 0; c < n; ++c) {
    m[c * n + c] = 1.0 / l[c * n + c];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = c; k < i; ++k) s += l[i * n + k] * m[k * n + c];
      m[i * n + c] = -s / l[i * n + i];
    }
  }
  // inv[i][j] = Σ_k m[k][i] m[k][j], k >= max(i, j).
  std::vector<double> inv(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int64_t k = i; k < n; ++k) s += m[k * n + i] * m[k * n + j];
      inv[i * n + j] = inv[j * n + i] = s;
    }
  return inv;
}

// One row through GPTQ: w [cols] (its values change as the errors spread), codes q [cols] and
// the row's group scales.
void QuantizeRowGptq(DType dtype, const float* src, int64_t cols, int64_t group, const std::vector<double>& u,
                     std::vector<double>& w, std::vector<float>& current, int8_t* q, uint16_t* scales) {
  const float lo = dtype == DType::kI8 ? -127.0f : -8.0f, hi = dtype == DType::kI8 ? 127.0f : 7.0f;
  for (int64_t c = 0; c < cols; ++c) w[c] = src[c];
  float s = 0.0f, inv = 0.0f;
  bool usable = false;
  for (int64_t i = 0; i < cols; ++i) {
    if (i % group == 0) {
      // The group's scale from its values as they are now (QuantizeRow's search).
      const int64_t n = std::min(group, cols - i);
      for (int64_t c = 0; c < n; ++c) current[c] = static_cast<float>(w[i + c]);
      QuantizeGroupCodes(dtype, current.data(), n, q + i, &scales[i / group]);
      s = F16ToF32(scales[i / group]);
      usable = s != 0.0f && std::isfinite(s);
      inv = usable ? 1.0f / s : 0.0f;
    }
    const float wi = static_cast<float>(w[i]);
    // QuantizeRow's rounding (nearest even of the clamped quotient); a group without a usable
    // scale (all zero, or NaN / inf weights) keeps QuantizeGroupCodes' zero codes.
    if (usable) q[i] = static_cast<int8_t>(std::nearbyint(std::clamp(wi * inv, lo, hi)));
    const double err = (w[i] - static_cast<double>(q[i]) * s) / u[i * cols + i];
    if (!usable || err == 0.0 || !std::isfinite(err)) continue;
    const double* ui = u.data() + i * cols;
    for (int64_t j = i + 1; j < cols; ++j) w[j] -= err * ui[j];
  }
}

}  // namespace

void InputGram::Add(const float* x, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    const float* v = x + t * cols;
    for (int64_t i = 0; i < cols; ++i) {
      const double vi = v[i];
      if (vi == 0.0) continue;
      double* row = sum.data() + i * cols;
      for (int64_t j = 0; j <= i; ++j) row[j] += vi * v[j];
    }
  }
  samples += n;
}

absl::Status GptqInverseFactor(const InputGram& gram, double damp, std::vector<double>* upper) {
  const int64_t n = gram.cols;
  // Gram::Add fills the lower triangle; mirror it.
  std::vector<double> h(static_cast<size_t>(n * n));
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) h[i * n + j] = h[j * n + i] = gram.sum[i * n + j];
    if (h[i * n + i] == 0.0) h[i * n + i] = 1.0;  // a column no input reached
    mean_diag += h[i * n + i];
  }
  mean_diag /= std::max<int64_t>(1, n);
  for (int attempt = 0; attempt < 4; ++attempt, damp *= 10.0) {
    std::vector<double> l = h;
    for (int64_t i = 0; i < n; ++i) l[i * n + i] += damp * mean_diag;
    if (!CholeskyLower(l, n)) continue;
    std::vector<double> inv = InverseFromLower(l, n);
    if (!CholeskyLower(inv, n)) continue;
    // U = Lᵀ of the inverse's lower factor.
    upper->assign(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i; j < n; ++j) (*upper)[i * n + j] = inv[j * n + i];
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("GPTQ: the calibration inputs' Gram matrix (", n, " columns) is not positive definite"));
}

absl::Status GptqQuantizeMatrix(DType dtype, const float* w, int64_t rows, int64_t cols, int64_t group_size,
                                const InputGram& gram, double damp, int threads, uint8_t* out,
                                uint16_t* scales) {
  if (dtype != DType::kI8 && dtype != DType::kI4) return absl::InvalidArgumentError("GPTQ: kI8 or kI4 only");
  if (gram.cols != cols)
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ: calibration statistics of ", gram.cols, " columns for a matrix of ", cols));
  std::vector<double> u;
  if (auto st = GptqInverseFactor(gram, damp, &u); !st.ok()) return st;
  const int64_t group = group_size <= 0 || group_size >= cols ? cols : group_size;
  const int64_t groups = QuantGroupsPerRow(cols, group_size), row_bytes = DTypeRowBytes(dtype, cols);
  auto run_rows = [&](int64_t r0, int64_t r1) {
    std::vector<double> values(cols);
    std::vector<float> current(group);
    std::vector<int8_t> q(cols);
    for (int64_t r = r0; r < r1; ++r) {
      QuantizeRowGptq(dtype, w + r * cols, cols, group, u, values, current, q.data(), scales + r * groups);
      if (dtype == DType::kI8)
        std::copy(q.begin(), q.end(), reinterpret_cast<int8_t*>(out + r * row_bytes));
      else
        PackI4Row(q.data(), cols, out + r * row_bytes);
    }
  };
  const int64_t n_threads = std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, rows / 16));
  const int64_t band = (rows + n_threads - 1) / n_threads;
  std::vector<std::thread> workers;
  for (int64_t i = 1; i < n_threads; ++i)
    if (i * band < rows) workers.emplace_back(run_rows, i * band, std::min(rows, (i + 1) * band));
  run_rows(0, std::min(rows, band));
  for (auto& t : workers) t.join();
  return absl::OkStatus();
}

}  // namespace glm::kernels
