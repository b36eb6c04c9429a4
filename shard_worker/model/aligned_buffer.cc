#include "shard_worker/model/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdlib>

namespace glm::model {

AlignedBuffer::AlignedBuffer(int64_t bytes) : size_(bytes) {
  if (bytes <= 0) {
    size_ = 0;
    return;
  }
  const bool huge = bytes >= (4ll << 20);
  size_t alignment = huge ? (2u << 20) : 64;
  size_t rounded = (static_cast<size_t>(bytes) + alignment - 1) / alignment * alignment;
  data_ = std::aligned_alloc(alignment, rounded);
  if (data_ == nullptr) {
    size_ = 0;
    return;
  }
  if (huge) ::madvise(data_, rounded, MADV_HUGEPAGE);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace glm::model
