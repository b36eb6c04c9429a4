// Short-vector primitives for attention's inner loops (dot products and a·x + y over
// kv_lora_rank / rope / indexer dims), with run-time SIMD dispatch. Results depend only on the
// inputs and n (never on threads or batch), so attention stays batch-invariant.
#ifndef GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_
#define GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_

#include <cstdint>

namespace glm::kernels {

// Σ a[i]·b[i].
float Dot(const float* a, const float* b, int64_t n);
// y[i] += alpha·x[i].
void Axpy(float alpha, const float* x, float* y, int64_t n);

// Attention over a list of cached rows (each row n floats, rows[k] anywhere: paged blocks, DSA
// selections) for up to kMaxQueries query vectors that share the rows (heads attending to the
// same compressed keys): each row is loaded once for all queries.
inline constexpr int kMaxQueries = 8;
// out[j·out_stride + k] = Σ_i q_j[i]·rows[k][i]. Not Dot's summation order (the AVX-512 path
// reduces 16 rows' lanes together), but a row's value depends only on q_j, the row and n: never
// on nq, n_rows or where the row sits in the list.
void DotRows(const float* q, int64_t q_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride);
// y[j·y_stride + i] += Σ_k w[j·w_stride + k] · rows[k][i], k ascending: bit-identical to one
// Axpy(w[j·w_stride + k], rows[k], y_j, n) per k in order.
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const float* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride);
// The same over rows of BF16 bits (a BF16 KV cache, --kv-cache-dtype bf16): every path gives
// exactly what its f32 version gives on the rows widened to f32 (BF16 -> f32 is exact), so the
// f32 functions are these overloads' reference twins.
void DotRows(const float* q, int64_t q_stride, int nq, const uint16_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride);
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const uint16_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride);
// Scaled 8-bit rows (--kv-cache-dtype fp8 | int8): a row of n values is n one-byte codes r and, at
// byte ScaledRowScaleOffset(n), an f32 scale s; value i = s · code(r[i]), code = OCP e4m3 (FP8
// rows, uint8_t; Fp8RowCodeToF32) or the signed integer (int8 rows). A row written from values
// holding a NaN or an infinity has a NaN scale, so every score and weighted sum it enters is NaN
// (never a saturated, finite-looking value). DotRows gives exactly s_k · (the f32 DotRows
// over the rows widened to code(r), which is exact); WeightedRowSum exactly the f32
// WeightedRowSum with weights w[j][k] · s_k over those widened rows. Every path is that
// composition over its own f32 kernels, which are these overloads' reference twins. (FP8's scale
// is a power of two, so there the result is also the f32 kernel's on the values s·code(r)
// wherever no product is subnormal.)
int64_t ScaledRowScaleOffset(int64_t n);
int64_t ScaledRowBytes(int64_t n);
float ScaledRowScale(const void* row, int64_t n);
// Rounds x[0..n) into one FP8 row at `row` (ScaledRowBytes(n) bytes): s = the smallest power of
// two with max|x| / s <= 448 (e4m3's largest finite value; 1 for an all-zero row), codes x[i] / s
// rounded to nearest even. Relative error <= 2^-4 for values above s · 2^-6 (e4m3's normals).
void WriteFp8Row(const float* x, int64_t n, uint8_t* row);
// An FP8 row's code as attention reads it: the e4m3 value, the NaN codes 0x7f / 0xff as ±480
// (never written: see above; reading them so spares the kernels a compare per 16 values).
float Fp8RowCodeToF32(uint8_t code);
// Rounds x[0..n) into one int8 row: s = max|x| / 127 (1 for an all-zero row), codes x[i] / s
// rounded to nearest (even), so |error| <= s / 2 for every value: on rows of similar magnitudes
// (attention's latents) about 2.5x less RMS error than e4m3's 3 mantissa bits, in the same bytes.
void WriteInt8Row(const float* x, int64_t n, int8_t* row);
void DotRows(const float* q, int64_t q_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride);
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride);
void DotRows(const float* q, int64_t q_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
             float* out, int64_t out_stride);
void WeightedRowSum(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
                    float* y, int64_t y_stride);
// out[r] = float(Σ_c double(x[c]) · double(m[r·n + c])): router logits, where a discrete choice
// follows and the sum is kept in double. Summation order is fixed per n (lanes, then a tree), so
// a row's value never depends on the batch or the thread.
void DotRowsF64(const float* x, const float* m, int64_t n_rows, int64_t n, float* out);

// The index of the largest x[i] (the first one on ties; NaN entries never win; 0 when x[0] is
// NaN or n <= 1), as the scalar loop `if (x[i] > x[best]) best = i` gives it. Greedy sampling
// over vocabularies of 150K+ entries, for every sequence of every step.
int64_t ArgMax(const float* x, int64_t n);

// The index of the first NaN or infinite x[i], or -1 when every one is finite (an exponent
// test on the bits, so it holds under any floating-point flags). Logits are checked with it
// before a token is chosen from them: a corrupt weight turns them into NaN, and an argmax over
// NaN would quietly pick id 0 (often EOS).
int64_t FirstNonFinite(const float* x, int64_t n);

// out[i] = (a[i] + b[i]) · s (attention: latent plus rope score, times the softmax scale). Each
// element is one add and one multiply, so every path gives the scalar loop's values exactly.
void AddScale(const float* a, const float* b, float s, float* out, int64_t n);

// For each i: d = x[i]·scale; if d > 0, y[i] += d·alpha (the DSA indexer's ReLU-weighted head
// sum). Every path rounds as the scalar loop does (no fused multiply-add), so values are exact.
void ReluAccumulate(const float* x, float scale, float alpha, float* y, int64_t n);

// Scalar twins (tests compare the dispatched versions against them).
int64_t ArgMaxReference(const float* x, int64_t n);
float DotReference(const float* a, const float* b, int64_t n);
void AddScaleReference(const float* a, const float* b, float s, float* out, int64_t n);
void ReluAccumulateReference(const float* x, float scale, float alpha, float* y, int64_t n);
void AxpyReference(float alpha, const float* x, float* y, int64_t n);
void DotRowsF64Reference(const float* x, const float* m, int64_t n_rows, int64_t n, float* out);
// The scaled 8-bit rows' overloads as the paths without in-register widening run them (AVX2,
// portable): the rows widened into a buffer, this machine's f32 kernel over it, the scales applied
// after. Every path must give these bits.
void DotRowsWidened(const float* q, int64_t q_stride, int nq, const uint8_t* const* rows, int64_t n_rows, int64_t n,
                    float* out, int64_t out_stride);
void DotRowsWidened(const float* q, int64_t q_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t n,
                    float* out, int64_t out_stride);
void WeightedRowSumWidened(const float* w, int64_t w_stride, int nq, const uint8_t* const* rows, int64_t n_rows,
                           int64_t n, float* y, int64_t y_stride);
void WeightedRowSumWidened(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                           int64_t n, float* y, int64_t y_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_VECTOR_OPS_H_
