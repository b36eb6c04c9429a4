// Physical KV memory in fixed-size blocks of `block_size` positions, for a set of layers:
// per layer [num_blocks, block_size, dim] arrays of the latent, rope key and (full-indexer
// layers) indexer key. The coordinator decides which blocks a sequence uses (block tables);
// a pool can also hand out blocks itself (single-process use) and grow on demand.
#ifndef GLM_SHARD_WORKER_KV_CACHE_KV_BLOCK_POOL_H_
#define GLM_SHARD_WORKER_KV_CACHE_KV_BLOCK_POOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/aligned_buffer.h"
#include "shard_worker/model/model_config.h"

namespace glm::kv_cache {

// What the cache stores attention's rows in. kF32 keeps them as computed (the references'
// precision); kBf16 (--kv-cache-dtype bf16) rounds the latent and rope key rows once, when written,
// to the nearest BF16 (round-to-nearest-even): about half the memory per position — nearly twice
// the tokens a KV budget holds — and half the bytes attention streams a step. kFp8E4m3
// (--kv-cache-dtype fp8 | fp8_e4m3, vLLM's names) rounds the latent rows to OCP e4m3 with one
// power-of-two scale per row (kernels::WriteFp8Row: the row's largest value maps near 448, so no row
// over- or underflows whatever its magnitude; vLLM's default per-tensor scale of 1 would flush rows
// of small values): a quarter of f32's bytes plus 4 a row, and the rope key rows to BF16
// (RopeKeyDType). kInt8 (--kv-cache-dtype int8) takes the same bytes with a latent row's values as
// integers times max|row| / 127: on rows of like magnitudes about 2.5x less RMS error than e4m3
// (the bundled model's held-out KL vs f32: int8 0.00097, fp8 0.0034; quant_quality_bench --formats
// int8-kv,fp8-kv), and attention reads int8 rows by integer dot products (kernels/int8_row_dots.h:
// scores against int8-rounded queries, sums with int16-rounded weights). Attention reads the stored
// rows exactly,
// so a prefix-cache hit still gives the cold run's tokens (both read the same stored rows). The
// DSA indexer keys stay f32 in every dtype: their scores pick the top-k keys, a discrete choice
// that a rounded key flips (llama.cpp's f16 cache changed the selection and the greedy tokens on
// the random sparse fixture, as measured for the project's anchors); they are 128 of GLM-5's 704
// values a position. --index-key-dtype (KvCacheShape::index_key_dtype) opts into storing them in
// one of these dtypes too (the selection then comes from the rounded keys).
enum class KvDType { kF32, kBf16, kFp8E4m3, kInt8 };
// "f32" | "bf16" | "bfloat16" | "int8" | "fp8" | "fp8_e4m3" | "auto" (vLLM's spellings; "auto": the
// dtype attention computes in, f32); false for anything else (vLLM's fp8_e5m2, fp8_inc, fp8_ds_mla
// included: refused, never silently taken for another layout).
bool ParseKvDType(std::string_view name, KvDType* out);
// The refusal of a name ParseKvDType does not take, for the flag `flag`: "--kv-cache-dtype 'f16'
// is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto", and for other fp8 names why.
std::string KvDTypeNameError(std::string_view flag, std::string_view name);
const char* KvDTypeName(KvDType dtype);
// Bytes of one stored row of n values (kFp8E4m3, kInt8: n bytes padded to 4, then the f32 scale).
int64_t KvRowBytes(KvDType dtype, int64_t n);
// What the rope key rows are stored in under `dtype`: the same, but BF16 under the 8-bit dtypes.
// The rope key carries the position through its rotation, and its scores are far more sensitive
// to rounding than the latent's: on the bundled model's held-out code, e4m3 rope keys alone cost
// KL 0.037 against f32 rows, e4m3 latents alone 0.0034 (int8: 0.0020 / 0.0011); GLM-5's 64 rope
// values a position take 128 bytes in BF16 against 68 (vLLM's DeepSeek FP8 layout keeps them BF16
// too).
inline KvDType RopeKeyDType(KvDType dtype) {
  return dtype == KvDType::kFp8E4m3 || dtype == KvDType::kInt8 ? KvDType::kBf16 : dtype;
}

struct KvCacheShape {
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;
  int64_t index_head_dim = 0;
  int64_t first_layer = 0;                 // weight-layer index of the first cached layer
  std::vector<bool> layer_has_index_keys;  // per cached layer
  int64_t max_positions = 0;               // a sequence's limit (the model's context)
  KvDType dtype = KvDType::kF32;
  // The DSA indexer key rows' storage: f32 unless --index-key-dtype asks otherwise (any KvDType,
  // stored as KvRowBytes(index_key_dtype, index_head_dim) bytes a row, independent of `dtype`).
  KvDType index_key_dtype = KvDType::kF32;
};

// What a pipeline stage caches: its layers [layer_begin, layer_end) and, on the last stage of a
// model with an MTP layer, that layer too (weight layer num_hidden_layers, right after the stage's
// own; MTP row j lives at position j of the same blocks, and keeps indexer keys). The worker's
// pool and the coordinator's block count (so --kv-cache-gib is what the pool takes) both use it.
KvCacheShape StageKvShape(const model::ModelConfig& config, int64_t layer_begin, int64_t layer_end, bool last_stage,
                          KvDType dtype = KvDType::kF32, KvDType index_key_dtype = KvDType::kF32);

// Bytes of one block of `block_size` positions over the shape's layers.
int64_t KvBlockBytes(const KvCacheShape& shape, int64_t block_size);

class KvBlockPool {
 public:
  // num_blocks = 0 with growable: starts empty and grows as blocks are allocated.
  KvBlockPool(KvCacheShape shape, int64_t block_size, int64_t num_blocks, bool growable);

  const KvCacheShape& shape() const { return shape_; }
  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }

  // Self-managed allocation (single process); fails when a fixed pool is exhausted.
  absl::StatusOr<int32_t> AllocateBlock();
  void FreeBlock(int32_t block);

  // A row as stored: T = float in a kF32 pool, uint16_t (BF16 bits) in a kBf16 one, uint8_t (e4m3
  // bytes, then the row's scale) in a kFp8E4m3 one, int8_t (then the scale) in a kInt8 one. Rows
  // are latent_row_bytes() / rope_row_bytes() apart.
  template <typename T>
  T* latent_as(int64_t layer, int64_t block, int64_t offset) {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(layers_[layer - shape_.first_layer].latent.data()) +
                                (block * block_size_ + offset) * latent_row_bytes_);
  }
  template <typename T>
  T* rope_key_as(int64_t layer, int64_t block, int64_t offset) {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(layers_[layer - shape_.first_layer].rope_key.data()) +
                                (block * block_size_ + offset) * rope_row_bytes_);
  }
  int64_t latent_row_bytes() const { return latent_row_bytes_; }
  int64_t rope_row_bytes() const { return rope_row_bytes_; }
  // The f32 rows of a kF32 pool (tests, and code that predates kBf16).
  float* latent(int64_t layer, int64_t block, int64_t offset) { return latent_as<float>(layer, block, offset); }
  float* rope_key(int64_t layer, int64_t block, int64_t offset) { return rope_key_as<float>(layer, block, offset); }
  // Indexer key rows as stored (T as for the latent, of shape_.index_key_dtype), index_row_bytes()
  // apart; index_key: the f32 rows of a pool whose index_key_dtype is kF32.
  template <typename T>
  T* index_key_as(int64_t layer, int64_t block, int64_t offset) {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(layers_[layer - shape_.first_layer].index_key.data()) +
                                (block * block_size_ + offset) * index_row_bytes_);
  }
  int64_t index_row_bytes() const { return index_row_bytes_; }
  float* index_key(int64_t layer, int64_t block, int64_t offset) { return index_key_as<float>(layer, block, offset); }
  // Bytes of one block over all layers.
  int64_t block_bytes() const;

  // Writes zeros over every array now, split across `pool` (null: this thread), and returns
  // the bytes touched. A worker's fixed pool does this at start-up: its memory is then committed
  // (a shortage shows at start, not mid-serving), placed on the node of the threads that touched
  // it, and the page faults (2 MiB pages zeroed by the kernel) are not taken one at a time in the
  // decode steps that first write each block.
  int64_t Prefault(kernels::ThreadPool* pool);

 private:
  void Grow(int64_t blocks);

  // Uninitialised arrays until Prefault: a growable pool costs no memory until blocks are written.
  // In huge-page memory (AlignedBuffer): attention streams the latent cache like a weight.
  struct LayerStore {
    model::AlignedBuffer latent, rope_key, index_key;
  };
  KvCacheShape shape_;
  int64_t block_size_;
  int64_t latent_row_bytes_, rope_row_bytes_, index_row_bytes_;  // KvRowBytes of the dtypes
  int64_t num_blocks_ = 0;
  bool growable_;
  std::vector<LayerStore> layers_;
  std::vector<int32_t> free_;
};

}  // namespace glm::kv_cache

#endif  // GLM_SHARD_WORKER_KV_CACHE_KV_BLOCK_POOL_H_
