#include "shard_worker/model/aligned_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <vector>

namespace glm::model {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLargeBytes = size_t{4} << 20;   // and up: a buffer of its own
constexpr size_t kChunkBytes = size_t{32} << 20;  // below: carved from shared chunks
constexpr size_t kSmallAlignment = 64;

void* AllocateHuge(size_t rounded) {
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p != nullptr) ::madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}

// Buffers under 4 MiB (a GLM expert matrix at int8/int4, most of a small model) are carved from
// 32 MiB chunks that are 2 MiB aligned and advised for huge pages. On their own they would sit in
// malloc's 4 KiB pages: streaming them then costs a page walk every 4 KiB, which under a
// hypervisor's nested paging made int8 decode of the 4 GiB bench model 3–7× slower
// (--quantize-scope all: 7.5 vs 53 tokens/s on one thread). A chunk hands out space from its top
// or, first fit, from holes that released buffers left below it (the loader frees each stored
// copy right after converting it, so the next copy fits that hole); holes next to each other or
// to the top merge, and a chunk with no live buffer is reset or freed. Holes in older chunks are
// reused too (first fit, older chunks after the current one): streamed experts are freed in LRU
// order, and without that one hot expert could keep a whole 32 MiB chunk alive.
class ChunkArena {
 public:
  void* Allocate(size_t bytes, void** chunk_out) {
    const size_t rounded = Round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ != nullptr) {
      if (void* p = current_->Take(rounded)) {
        *chunk_out = current_;
        return p;
      }
    }
    for (Chunk* c : with_space_) {
      if (void* p = c->Take(rounded)) {
        if (c->holes.empty() && c->used + rounded > kChunkBytes) Forget(c);  // likely full now
        *chunk_out = c;
        return p;
      }
    }
    // Nothing fits (the current chunk is never empty here: Release resets an empty one, and any
    // buffer under 4 MiB fits an empty chunk).
    auto* c = new Chunk;
    c->base = static_cast<char*>(AllocateHuge(kChunkBytes));
    if (c->base == nullptr) {
      delete c;
      return nullptr;
    }
    if (current_ != nullptr) Remember(current_);  // its holes and top stay usable
    current_ = c;
    held_bytes_ += kChunkBytes;
    *chunk_out = c;
    return c->Take(rounded);
  }

  void Release(void* p, size_t bytes, void* chunk_handle) {
    auto* c = static_cast<Chunk*>(chunk_handle);
    std::lock_guard<std::mutex> lock(mu_);
    c->Give(static_cast<size_t>(static_cast<char*>(p) - c->base), Round(bytes));
    if (c->live == 0) {
      if (c == current_) {
        c->Reset();
      } else {
        Forget(c);
        std::free(c->base);
        delete c;
        held_bytes_ -= kChunkBytes;
      }
    } else if (c != current_) {
      Remember(c);  // the space may be a hole or the lowered top
    }
  }

  int64_t held_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_bytes_;
  }

 private:
  struct Hole {
    size_t offset, size;
  };
  struct Chunk {
    char* base = nullptr;
    size_t used = 0;          // the top: bytes [0, used) are buffers or holes
    int64_t live = 0;         // buffers handed out and not released
    std::vector<Hole> holes;  // below the top, by offset, never adjacent to each other

    void* Take(size_t n) {
      for (size_t i = 0; i < holes.size(); ++i) {
        if (holes[i].size < n) continue;
        const size_t at = holes[i].offset;
        holes[i].offset += n;
        holes[i].size -= n;
        if (holes[i].size == 0) holes.erase(holes.begin() + static_cast<std::ptrdiff_t>(i));
        ++live;
        return base + at;
      }
      if (used + n > kChunkBytes) return nullptr;
      ++live;
      used += n;
      return base + used - n;
    }
    void Give(size_t offset, size_t n) {
      --live;
      size_t i = 0;
      while (i < holes.size() && holes[i].offset < offset) ++i;
      holes.insert(holes.begin() + static_cast<std::ptrdiff_t>(i), Hole{offset, n});
      if (i + 1 < holes.size() && holes[i].offset + holes[i].size == holes[i + 1].offset) {
        holes[i].size += holes[i + 1].size;
        holes.erase(holes.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      }
      if (i > 0 && holes[i - 1].offset + holes[i - 1].size == holes[i].offset) {
        holes[i - 1].size += holes[i].size;
        holes.erase(holes.begin() + static_cast<std::ptrdiff_t>(i));
      }
      if (!holes.empty() && holes.back().offset + holes.back().size == used) {
        used = holes.back().offset;
        holes.pop_back();
      }
    }
    void Reset() {
      used = 0;
      holes.clear();
    }
  };

  static size_t Round(size_t bytes) { return (bytes + kSmallAlignment - 1) / kSmallAlignment * kSmallAlignment; }

  // Older chunks with free space (holes or room above the top), each once. Never the current
  // chunk: that one is always a fresh chunk and is tried first, on its own.
  void Remember(Chunk* c) {
    if (std::find(with_space_.begin(), with_space_.end(), c) == with_space_.end()) with_space_.push_back(c);
  }
  void Forget(Chunk* c) { with_space_.erase(std::remove(with_space_.begin(), with_space_.end(), c), with_space_.end()); }

  std::mutex mu_;
  Chunk* current_ = nullptr;
  std::vector<Chunk*> with_space_;
  int64_t held_bytes_ = 0;
};

ChunkArena& Arena() {
  static auto* arena = new ChunkArena;  // never destroyed: buffers may outlive static teardown
  return *arena;
}

}  // namespace

std::string HugePageStatus() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!f || !std::getline(f, line)) return "transparent huge pages: unknown (no sysfs entry)";
  const size_t open = line.find('['), close = line.find(']');
  const std::string mode = open != std::string::npos && close > open ? line.substr(open + 1, close - open - 1) : line;
  if (mode == "never")
    return "transparent huge pages: never -- weights and KV stream through 4 KiB pages (under a hypervisor "
           "decode can be several times slower); set /sys/kernel/mm/transparent_hugepage/enabled to madvise";
  return "transparent huge pages: " + mode + " (weights and KV are advised)";
}

int64_t SmallBufferArenaBytes() { return Arena().held_bytes(); }

AlignedBuffer::AlignedBuffer(int64_t bytes) : size_(bytes) {
  if (bytes <= 0) {
    size_ = 0;
    return;
  }
  if (static_cast<size_t>(bytes) < kLargeBytes) {
    data_ = Arena().Allocate(static_cast<size_t>(bytes), &chunk_);
  } else {
    data_ = AllocateHuge((static_cast<size_t>(bytes) + kHugePage - 1) / kHugePage * kHugePage);
  }
  // On failure size_ keeps the request, so valid() is false and callers report out-of-memory.
}

void AlignedBuffer::Free() {
  if (data_ == nullptr) {
    size_ = 0;
    return;
  }
  if (chunk_ != nullptr) {
    Arena().Release(data_, static_cast<size_t>(size_), chunk_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  chunk_ = nullptr;
  size_ = 0;
}

AlignedBuffer::~AlignedBuffer() { Free(); }

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    Free();
    data_ = o.data_;
    size_ = o.size_;
    chunk_ = o.chunk_;
    o.data_ = nullptr;
    o.size_ = 0;
    o.chunk_ = nullptr;
  }
  return *this;
}

}  // namespace glm::model
