#include "shard_worker/kv_cache/kv_block_pool.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/vector_ops.h"

namespace glm::kv_cache {

KvBlockPool::KvBlockPool(KvCacheShape shape, int64_t block_size, int64_t num_blocks, bool growable)
    : shape_(std::move(shape)), block_size_(block_size),
      latent_row_bytes_(KvRowBytes(shape_.dtype, shape_.kv_lora_rank)),
      rope_row_bytes_(KvRowBytes(RopeKeyDType(shape_.dtype), shape_.rope_dim)),
      index_row_bytes_(KvRowBytes(shape_.index_key_dtype, shape_.index_head_dim)), growable_(growable),
      layers_(shape_.layer_has_index_keys.size()) {
  Grow(num_blocks);
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

namespace {

// A new array of `new_count` elements of `bytes` each holding the first `old_count` of `old`
// (throws std::bad_alloc when memory runs out, as operator new would).
model::AlignedBuffer Regrow(model::AlignedBuffer old, int64_t old_count, int64_t new_count, int64_t bytes) {
  model::AlignedBuffer fresh(new_count * bytes);
  if (!fresh.valid()) throw std::bad_alloc();
  if (old_count > 0) std::memcpy(fresh.data(), old.data(), old_count * bytes);
  return fresh;
}

}  // namespace

void KvBlockPool::Grow(int64_t blocks) {
  if (blocks <= num_blocks_) return;
  const int64_t old_pos = num_blocks_ * block_size_, new_pos = blocks * block_size_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerStore& l = layers_[i];
    l.latent = Regrow(std::move(l.latent), old_pos, new_pos, latent_row_bytes_);
    l.rope_key = Regrow(std::move(l.rope_key), old_pos, new_pos, rope_row_bytes_);
    if (shape_.layer_has_index_keys[i])
      l.index_key = Regrow(std::move(l.index_key), old_pos, new_pos, index_row_bytes_);
  }
  num_blocks_ = blocks;
}

absl::StatusOr<int32_t> KvBlockPool::AllocateBlock() {
  if (free_.empty()) {
    if (!growable_) return absl::ResourceExhaustedError(absl::StrCat("all ", num_blocks_, " KV blocks are in use"));
    const int64_t old = num_blocks_;
    Grow(std::max<int64_t>(4, old * 2));
    for (int64_t b = num_blocks_ - 1; b >= old; --b) free_.push_back(static_cast<int32_t>(b));
  }
  int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void KvBlockPool::FreeBlock(int32_t block) { free_.push_back(block); }

int64_t KvBlockPool::Prefault(kernels::ThreadPool* pool) {
  std::vector<model::AlignedBuffer*> arrays;
  for (LayerStore& l : layers_)
    for (model::AlignedBuffer* b : {&l.latent, &l.rope_key, &l.index_key})
      if (b->data() != nullptr && b->size() > 0) arrays.push_back(b);
  // Pieces of one huge page: each is one fault, and the pool's threads take them in turn.
  constexpr int64_t kPiece = int64_t{2} << 20;
  std::vector<int64_t> first_piece(arrays.size() + 1, 0);
  for (size_t i = 0; i < arrays.size(); ++i) first_piece[i + 1] = first_piece[i] + (arrays[i]->size() + kPiece - 1) / kPiece;
  auto touch = [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const size_t i = static_cast<size_t>(std::upper_bound(first_piece.begin(), first_piece.end(), p) - first_piece.begin()) - 1;
      const int64_t offset = (p - first_piece[i]) * kPiece;
      std::memset(static_cast<char*>(arrays[i]->data()) + offset, 0, std::min(kPiece, arrays[i]->size() - offset));
    }
  };
  if (pool != nullptr)
    pool->ParallelFor(first_piece.back(), touch);
  else
    touch(0, first_piece.back());
  int64_t bytes = 0;
  for (const model::AlignedBuffer* b : arrays) bytes += b->size();
  return bytes;
}

int64_t KvBlockPool::block_bytes() const { return KvBlockBytes(shape_, block_size_); }

KvCacheShape StageKvShape(const model::ModelConfig& c, int64_t layer_begin, int64_t layer_end, bool last_stage,
                          KvDType dtype, KvDType index_key_dtype) {
  KvCacheShape shape{c.kv_lora_rank, c.qk_rope_head_dim, c.index_head_dim, layer_begin, {}, c.max_position_embeddings,
                     dtype, index_key_dtype};
  for (int64_t l = layer_begin; l < layer_end; ++l)
    shape.layer_has_index_keys.push_back(c.indexer_kind(l) == model::IndexerKind::kFull);
  if (last_stage && c.has_mtp()) shape.layer_has_index_keys.push_back(true);
  return shape;
}

int64_t KvBlockBytes(const KvCacheShape& shape, int64_t block_size) {
  int64_t per_pos = 0;  // bytes
  for (bool idx : shape.layer_has_index_keys)
    per_pos += KvRowBytes(shape.dtype, shape.kv_lora_rank) + KvRowBytes(RopeKeyDType(shape.dtype), shape.rope_dim) +
               (idx ? KvRowBytes(shape.index_key_dtype, shape.index_head_dim) : 0);
  return per_pos * block_size;
}

int64_t KvRowBytes(KvDType dtype, int64_t n) {
  switch (dtype) {
    case KvDType::kBf16: return 2 * n;
    case KvDType::kFp8E4m3:
    case KvDType::kInt8: return kernels::ScaledRowBytes(n);
    case KvDType::kF32: break;
  }
  return 4 * n;
}

bool ParseKvDType(std::string_view name, KvDType* out) {
  if (name == "f32" || name == "auto") *out = KvDType::kF32;
  else if (name == "bf16" || name == "bfloat16") *out = KvDType::kBf16;
  else if (name == "fp8" || name == "fp8_e4m3") *out = KvDType::kFp8E4m3;
  else if (name == "int8") *out = KvDType::kInt8;
  else return false;
  return true;
}

std::string KvDTypeNameError(std::string_view flag, std::string_view name) {
  std::string m =
      std::string(flag) + " '" + std::string(name) + "' is not one of f32, bf16, int8, fp8 (= fp8_e4m3), auto";
  if (name.substr(0, 3) == "fp8")
    m += " (fp8 here is e4m3 with a scale per row; vLLM's other FP8 layouts (e5m2, inc, ds_mla) are not offered, and "
         "int8 keeps more precision in the same bytes)";
  return m;
}

const char* KvDTypeName(KvDType dtype) {
  switch (dtype) {
    case KvDType::kBf16: return "bf16";
    case KvDType::kFp8E4m3: return "fp8_e4m3";
    case KvDType::kInt8: return "int8";
    case KvDType::kF32: break;
  }
  return "f32";
}

}  // namespace glm::kv_cache
