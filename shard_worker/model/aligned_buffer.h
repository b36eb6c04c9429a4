// Owning, aligned (64 bytes at least), uninitialised memory for weights and caches, all of it in
// memory advised for transparent huge pages (fewer TLB misses on weight streams): buffers of
// 4 MiB or more are 2 MiB aligned on their own, smaller ones carved from shared 2 MiB-aligned
// chunks (aligned_buffer.cc says why).
#ifndef GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_
#define GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace glm::model {

// One line for the startup log: the kernel's transparent-huge-page mode and what it means for
// these buffers (with "never" every weight streams through 4 KiB pages).
std::string HugePageStatus();

// Bytes of the shared chunks small buffers are carved from (held, live or not): for tests and
// memory accounting.
int64_t SmallBufferArenaBytes();

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_), chunk_(o.chunk_) {
    o.data_ = nullptr;
    o.size_ = 0;
    o.chunk_ = nullptr;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  int64_t size() const { return size_; }
  bool valid() const { return data_ != nullptr || size_ == 0; }

 private:
  void Free();

  void* data_ = nullptr;
  int64_t size_ = 0;
  void* chunk_ = nullptr;  // the shared chunk a small buffer was carved from
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_ALIGNED_BUFFER_H_
