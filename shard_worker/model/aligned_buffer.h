// Owning, aligned, uninitialised memory for weights and caches. Buffers of 4 MiB or more are
// 2 MiB aligned and advised for transparent huge pages (fewer TLB misses on weight streams).
#ifndef GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_
#define GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdint>

namespace glm::model {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; o.size_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  int64_t size() const { return size_; }
  bool valid() const { return data_ != nullptr || size_ == 0; }

 private:
  void* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_
