// One sequence's view of the attention cache: a block table into a KvBlockPool. Per layer and
// position it holds the MLA compressed latent (normalised kv_a output, [kv_lora_rank]) and the
// rotated rope key ([qk_rope_head_dim]) — not the expanded per-head keys and values — plus the
// DSA indexer key ([index_head_dim]) on layers that run the indexer. The main model and the
// MTP layer use separate caches (the MTP sequence is shifted by one token).
#ifndef GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_
#define GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/vector_ops.h"
#include "shard_worker/kv_cache/kv_block_pool.h"

namespace glm::kv_cache {

class KvCache {
 public:
  // A self-managed cache with a private growable pool (single-process generation).
  explicit KvCache(KvCacheShape shape, int64_t block_size = 64);
  // A view with a coordinator-provided block table into a shared pool; `length` positions are
  // already filled (by earlier steps, or by another request sharing the prefix).
  KvCache(KvBlockPool* pool, std::vector<int32_t> block_table, int64_t length);
  ~KvCache();

  int64_t length() const { return length_; }
  const KvCacheShape& shape() const { return pool_->shape(); }
  const std::vector<int32_t>& block_table() const { return table_; }

  // Makes positions [0, n) addressable: allocates blocks (self-managed) or checks that the
  // block table covers them; fails past the context limit.
  absl::Status Reserve(int64_t n);
  void SetLength(int64_t n) { length_ = n; }
  // Forgets positions >= n (rollback of rejected speculative tokens).
  void Truncate(int64_t n) {
    if (n < length_) length_ = n;
  }

  KvDType dtype() const { return pool_->shape().dtype; }
  KvDType index_key_dtype() const { return pool_->shape().index_key_dtype; }

  // Stores a position's rows from f32 values: the latent [kv_lora_rank] and the rotated rope key
  // [rope_dim] (rounded to BF16 in a kBf16 cache; in kFp8E4m3 / kInt8 the latent to scaled 8-bit
  // codes and the rope key to BF16), the indexer key [index_head_dim] (in index_key_dtype(), f32
  // unless asked otherwise).
  void WriteLatent(int64_t layer, int64_t position, const float* row) {
    Write(AttentionRows::kLatent, layer, position, row, shape().kv_lora_rank);
  }
  void WriteRopeKey(int64_t layer, int64_t position, const float* row) {
    Write(AttentionRows::kRopeKey, layer, position, row, shape().rope_dim);
  }
  void WriteIndexKey(int64_t layer, int64_t position, const float* row) {
    Write(AttentionRows::kIndexKey, layer, position, row, shape().index_head_dim);
  }

  // The f32 rows of a kF32 cache (tests; attention goes through the typed RowPointers), and the
  // f32 index keys of an index_key_dtype() kF32 one.
  float* latent(int64_t layer, int64_t position) {
    return pool_->latent(layer, table_[position / bs_], position % bs_);
  }
  float* rope_key(int64_t layer, int64_t position) {
    return pool_->rope_key(layer, table_[position / bs_], position % bs_);
  }
  float* index_key(int64_t layer, int64_t position) {
    return pool_->index_key(layer, table_[position / bs_], position % bs_);
  }
  const float* latent(int64_t layer, int64_t position) const { return const_cast<KvCache*>(this)->latent(layer, position); }
  const float* rope_key(int64_t layer, int64_t position) const { return const_cast<KvCache*>(this)->rope_key(layer, position); }
  const float* index_key(int64_t layer, int64_t position) const {
    return const_cast<KvCache*>(this)->index_key(layer, position);
  }

  // Row pointers of positions [0, n) of `layer`: latent[p] = latent(layer, p) and
  // rope_key[p] = rope_key(layer, p), filled a block at a time (attention over every cached
  // position lists thousands of rows per head group and layer; one division per row showed).
  // T: the latent rows' element type (float for kF32, uint16_t for kBf16, uint8_t for kFp8E4m3,
  // int8_t for kInt8), R: the rope key rows' (T, but uint16_t (BF16) under 8-bit latents).
  template <typename T, typename R>
  void RowPointers(int64_t layer, int64_t n, const T** latent_rows, const R** rope_key_rows) const {
    const int64_t lat_bytes = pool_->latent_row_bytes(), kpe_bytes = pool_->rope_row_bytes();
    ForBlockRuns(0, n, [&](int64_t block, int64_t offset, int64_t count, int64_t first) {
      const uint8_t* lat = pool_->latent_as<uint8_t>(layer, block, offset);
      const uint8_t* kpe = pool_->rope_key_as<uint8_t>(layer, block, offset);
      for (int64_t i = 0; i < count; ++i) {
        latent_rows[first + i] = reinterpret_cast<const T*>(lat + i * lat_bytes);
        rope_key_rows[first + i] = reinterpret_cast<const R*>(kpe + i * kpe_bytes);
      }
    });
  }

  // The same for the listed positions (any order; a division only where the list leaves a
  // block, so an ascending selection costs about one per block).
  template <typename T, typename R>
  void RowPointers(int64_t layer, const int32_t* positions, int64_t n, const T** latent_rows,
                   const R** rope_key_rows) const {
    const int64_t lat_bytes = pool_->latent_row_bytes(), kpe_bytes = pool_->rope_row_bytes();
    int64_t block_start = -1;
    const uint8_t* lat = nullptr;
    const uint8_t* kpe = nullptr;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = positions[i];
      if (block_start < 0 || p < block_start || p >= block_start + bs_) {
        const int64_t b = p / bs_;
        block_start = b * bs_;
        lat = pool_->latent_as<uint8_t>(layer, table_[b], 0);
        kpe = pool_->rope_key_as<uint8_t>(layer, table_[b], 0);
      }
      latent_rows[i] = reinterpret_cast<const T*>(lat + (p - block_start) * lat_bytes);
      rope_key_rows[i] = reinterpret_cast<const R*>(kpe + (p - block_start) * kpe_bytes);
    }
  }
  // rows[p - begin] = the stored index key row of position p for positions [begin, end), a block
  // at a time; T: the element type of index_key_dtype() (as RowPointers' T).
  template <typename T>
  void IndexKeyRows(int64_t layer, int64_t begin, int64_t end, const T** rows) const {
    const int64_t row_bytes = pool_->index_row_bytes();
    ForBlockRuns(begin, end, [&](int64_t block, int64_t offset, int64_t count, int64_t first) {
      const uint8_t* k = pool_->index_key_as<uint8_t>(layer, block, offset);
      for (int64_t i = 0; i < count; ++i) rows[first - begin + i] = reinterpret_cast<const T*>(k + i * row_bytes);
    });
  }

  int64_t bytes() const { return static_cast<int64_t>(table_.size()) * pool_->block_bytes(); }

 private:
  // The arrays of rows a position has; a position's row there as element type T.
  enum class AttentionRows { kLatent, kRopeKey, kIndexKey };
  template <typename T>
  T* RowAs(AttentionRows rows, int64_t layer, int64_t position) {
    const int64_t block = table_[position / bs_], offset = position % bs_;
    switch (rows) {
      case AttentionRows::kLatent: return pool_->latent_as<T>(layer, block, offset);
      case AttentionRows::kRopeKey: return pool_->rope_key_as<T>(layer, block, offset);
      case AttentionRows::kIndexKey: break;
    }
    return pool_->index_key_as<T>(layer, block, offset);
  }
  // What the rows of one array are stored in.
  KvDType RowDType(AttentionRows rows) const {
    switch (rows) {
      case AttentionRows::kLatent: return dtype();
      case AttentionRows::kRopeKey: return RopeKeyDType(dtype());
      case AttentionRows::kIndexKey: break;
    }
    return index_key_dtype();
  }
  // Copies (kF32), rounds to BF16 (kBf16), to scaled e4m3 (kFp8E4m3) or to scaled int8 (kInt8) the
  // n values of `row` into the position's row.
  void Write(AttentionRows rows, int64_t layer, int64_t position, const float* row, int64_t n) {
    switch (RowDType(rows)) {
      case KvDType::kF32:
        std::copy_n(row, n, RowAs<float>(rows, layer, position));
        return;
      case KvDType::kBf16: {
        uint16_t* dst = RowAs<uint16_t>(rows, layer, position);
        for (int64_t i = 0; i < n; ++i) dst[i] = kernels::F32ToBf16(row[i]);
        return;
      }
      case KvDType::kFp8E4m3:
        kernels::WriteFp8Row(row, n, RowAs<uint8_t>(rows, layer, position));
        return;
      case KvDType::kInt8:
        kernels::WriteInt8Row(row, n, RowAs<int8_t>(rows, layer, position));
        return;
    }
  }

  // fn(pool block, offset in it, count, first position) for each run of positions of [begin, end)
  // that share a block, in order.
  template <typename Fn>
  void ForBlockRuns(int64_t begin, int64_t end, Fn fn) const {
    for (int64_t p = begin; p < end;) {
      const int64_t offset = p % bs_, count = std::min(bs_ - offset, end - p);
      fn(static_cast<int64_t>(table_[p / bs_]), offset, count, p);
      p += count;
    }
  }

  std::unique_ptr<KvBlockPool> owned_pool_;
  KvBlockPool* pool_;
  std::vector<int32_t> table_;
  int64_t bs_;
  int64_t length_ = 0;
  bool self_managed_;
};

}  // namespace glm::kv_cache

#endif  // GLM_SHARD_WORKER_KV_CACHE_KV_CACHE_H_
