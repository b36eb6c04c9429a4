// Integer dot products of int8 query rows with int8 key rows, for the DSA indexer over int8 keys
// (--index-key-dtype int8). The indexer scores every cached position with every index head
// (GLM-5: 32 heads x 128 values = 4096 multiply-adds a position and layer, as many as the routed
// experts' weights at ~40K tokens of context); in f32 a 512-bit FMA does 16 of them, an AVX512-VNNI
// vpdpbusd 64. DeepSeek's indexer rounds its queries and keys to FP8 for the same reason.
//
// The arithmetic every path follows, bit for bit (the integer sums are exact):
//   query row h: codes qh and scale sq_h by QuantizeAbsMax (max|q_h| / 127, round to nearest even);
//   key row s: codes ks and scale sk_s as kernels::WriteInt8Row stores them (codes padded to 4
//     with zeros, then the f32 scale);
//   isum = Σ_i qh[i] · ks[i] in int32 (|isum| <= d · 127², exact in f32 for d <= 1040);
//   out[h][s] = (float(isum) · sq_h) · sk_s.
#ifndef GLM_SHARD_WORKER_KERNELS_INT8_ROW_DOTS_H_
#define GLM_SHARD_WORKER_KERNELS_INT8_ROW_DOTS_H_

#include <cstdint>
#include <vector>

namespace glm::kernels {

// nq query rows of d values, quantised once (per token) in the layouts the kernels read.
class Int8QueryRows {
 public:
  // q [nq, d] (row stride d). d at most 1040. The codes and scales, and the layout of the path
  // Int8RowDots takes on this CPU; every_layout: the other paths' too (tests, benchmarks).
  void Quantize(const float* q, int nq, int64_t d, bool every_layout = false);

  int nq() const { return nq_; }
  int64_t d() const { return d_; }
  const int8_t* codes(int h) const { return codes_.data() + h * words_ * 4; }  // [words * 4], zero-padded
  float scale(int h) const { return scales_[h]; }
  int64_t words() const { return words_; }  // 4-byte groups a row (the key rows' padding)
  // Groups of 16 rows (AVX-512): word j of group g, lane l = bytes 4j..4j+3 of row 16g + l, each
  // + 128 (vpdpbusd multiplies unsigned by signed bytes); rows past nq are 128 (code 0). Empty
  // unless this is the CPU's path or every layout was asked for (the paths then refuse: false).
  const int32_t* biased16(int g) const { return biased16_.data() + g * words_ * 16; }
  // Row h's codes + 128 as bytes [words * 4] (zero-padded codes: 128), with the 16-row groups.
  const uint8_t* biased_row(int h) const { return biased_rows_.data() + h * words_ * 4; }
  // Groups of 8 rows (AVX2): the same words as |code| and as the codes themselves (their signs).
  const int32_t* abs8(int g) const { return abs8_.data() + g * words_ * 8; }
  const int32_t* signed8(int g) const { return signed8_.data() + g * words_ * 8; }
  const float* scales() const { return scales_.data(); }
  bool biased16_empty() const { return biased16_.empty(); }
  bool lanes8_empty() const { return abs8_.empty(); }

 private:
  int nq_ = 0;
  int64_t d_ = 0, words_ = 0;
  std::vector<int8_t> codes_;
  std::vector<float> scales_;
  std::vector<int32_t> biased16_, abs8_, signed8_;
  std::vector<uint8_t> biased_rows_;
};

// out[h * out_stride + s] for every query row h and key row s < n_rows (the arithmetic above),
// on the fastest path this CPU has (AVX512-VNNI, AVX2, portable).
void Int8RowDots(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out, int64_t out_stride);
// The scalar reference, and each SIMD path (false where the CPU lacks it): bit-identical.
void Int8RowDotsReference(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                          int64_t out_stride);
bool Int8RowDotsAvx512Vnni(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                           int64_t out_stride);
bool Int8RowDotsAvx2(const Int8QueryRows& q, const int8_t* const* rows, int64_t n_rows, float* out,
                     int64_t out_stride);
// "avx512-vnni", "avx2" or "portable": the path Int8RowDots (and Int8RowWeightedSum) take here.
const char* Int8RowDotsPath();

// The weighted sum of int8 rows (attention's softmax-weighted latents over an int8 KV cache):
// out[h * out_stride + i] += Σ_k w[h * w_stride + k] · s_k · code_k[i] for rows k < n_rows,
// heads h < nq, i < d, as integer dot products. The arithmetic every path follows:
//   the rows in blocks of kInt8SumBlock from the list's start; per block and head,
//   w'_k = w[h][k] · s_k (f32), codes c_k and scale sw by QuantizeAbsMax to int16 (max|w'| / 32767;
//   a NaN or infinite w': sw NaN, so the head's outputs become NaN);
//   isum[i] = Σ_k c_k · code_k[i] in int32 (|isum| <= 64 · 32767 · 127 < 2^31: exact);
//   out[h][i] = fma(float(isum[i]), sw, out[h][i]), blocks in order.
// Calls over consecutive parts of a list, each starting at a multiple of kInt8SumBlock, give the
// bits of one call over the whole list. The weights' rounding (2^-16 of a block's largest) is far
// below f32 attention's other errors.
inline constexpr int64_t kInt8SumBlock = 64;
void Int8RowWeightedSum(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows, int64_t d,
                        float* out, int64_t out_stride);
void Int8RowWeightedSumReference(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                                 int64_t d, float* out, int64_t out_stride);
bool Int8RowWeightedSumAvx512Vnni(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                              int64_t d, float* out, int64_t out_stride);
bool Int8RowWeightedSumAvx2(const float* w, int64_t w_stride, int nq, const int8_t* const* rows, int64_t n_rows,
                            int64_t d, float* out, int64_t out_stride);

}  // namespace glm::kernels

#endif  // GLM_SHARD_WORKER_KERNELS_INT8_ROW_DOTS_H_
