// One `.safetensors` file: its validated header, and reads of tensor byte ranges with pread
// (through the page cache, or O_DIRECT around it).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data section; offsets are relative to the data section.
#ifndef GLM_SHARD_WORKER_MODEL_SAFETENSORS_FILE_H_
#define GLM_SHARD_WORKER_MODEL_SAFETENSORS_FILE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shard_worker/kernels/thread_pool.h"

namespace glm::model {

struct TensorInfo {
  std::string name;
  std::string dtype;           // as written: "BF16", "F32", "F8_E4M3", "F16", ...
  std::vector<int64_t> shape;  // row-major
  int64_t begin = 0;           // absolute file offset of the first byte
  int64_t size = 0;            // bytes
  int64_t numel() const;
};

// Bytes per element of a safetensors dtype string, or 0 if unknown.
int64_t SafetensorsDTypeSize(const std::string& dtype);

class SafetensorsFile {
 public:
  // Opens and validates the header: JSON syntax, dtypes, shapes, offsets inside the file,
  // byte counts matching shape × dtype, no overlapping tensors. Errors name the file and tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(const std::string& name) const;

  // Reads `length` bytes starting `offset` bytes into the tensor into dst (thread-safe: pread).
  absl::Status Read(const TensorInfo& tensor, int64_t offset, int64_t length, void* dst) const;

  // Read's bytes by concurrent preads on `pool`'s threads (one call at a time per pool:
  // ThreadPool::RunOnAll is not reentrant). A load of stored weights is bound by two per-byte costs that one thread pays
  // in series: the kernel zeroing each fresh page of dst on first touch, and the copy out of the
  // page cache (or the wait for the disk). Thread i reads the i-th stretch of dst, cut at
  // kParallelReadPiece boundaries of dst's address (a huge page is faulted in by one thread):
  // as many stretches as threads, or as such boundaries split the range into, if fewer. Ranges
  // under kMinParallelReadBytes, or a null or one-thread pool, are one pread loop as in Read.
  // The bytes are Read's, whatever the pool. max_threads > 0: at most that many of the pool's
  // threads read (a load's pool may have more, for re-quantising).
  absl::Status ReadParallel(const TensorInfo& tensor, int64_t offset, int64_t length, void* dst,
                            kernels::ThreadPool* pool, int max_threads = 0) const;
  static constexpr int64_t kParallelReadPiece = int64_t{2} << 20;
  static constexpr int64_t kMinParallelReadBytes = int64_t{1} << 20;

  // Asks the kernel to start reading the tensor's bytes into the page cache now
  // (posix_fadvise WILLNEED; asynchronous, advisory): a load announces the next layer's tensors
  // while it reads the current one, so the disk need not wait for each pread.
  void AdviseWillNeed(const TensorInfo& tensor) const;

  // Read's bytes, bypassing the page cache (O_DIRECT) where the file system allows it: streamed
  // experts are read once per cache fill, and through the page cache each read would also leave a
  // second copy of the expert in kernel memory, outside the expert budget, until reclaimed. The
  // aligned blocks around the range (kDirectAlignment) go through a per-thread bounce buffer.
  // Where O_DIRECT is refused (tmpfs, some network file systems) it reads as Read does, and
  // *direct (optional) is false. Thread-safe.
  absl::Status ReadDirect(const TensorInfo& tensor, int64_t offset, int64_t length, void* dst,
                          bool* direct = nullptr) const;
  // File offsets, lengths and buffers of O_DIRECT reads are multiples of this: the largest logical
  // block size of common devices.
  static constexpr int64_t kDirectAlignment = 4096;

 private:
  SafetensorsFile(std::string path, int fd, int64_t file_size)
      : path_(std::move(path)), fd_(fd), file_size_(file_size) {}
  absl::Status ParseHeader();
  // The O_DIRECT descriptor, opened on first use; -1 when the file system refuses it.
  int DirectFd() const;

  std::string path_;
  int fd_ = -1;
  int64_t file_size_ = 0;
  mutable std::once_flag direct_once_;
  mutable int direct_fd_ = -1;
  // Cleared when a read on direct_fd_ fails with EINVAL (a file system that accepts the flag at
  // open but not the reads): later reads go through the page cache.
  mutable std::atomic<bool> direct_usable_{true};
  std::map<std::string, TensorInfo> tensors_;
};

// Threads for SafetensorsFile::ReadParallel's pool when a load does not say: the CPUs this
// process may run on (a worker bound to one NUMA node reads with that node's cores), at most
// kMaxDefaultReadThreads (past that a node's copy bandwidth, not the thread count, binds).
inline constexpr int kMaxDefaultReadThreads = 16;
int DefaultReadThreads();

// Whether `path`'s file system takes O_DIRECT reads (tmpfs refuses the open; some file systems
// take the open and refuse the reads): what SafetensorsFile::ReadDirect gets there.
bool FileSystemTakesDirectIo(const std::string& path);

// Writes a safetensors file (used by `glmctl synth` and by tests that build broken files).
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    // Either bytes (copied) or a generator filling `size` bytes at `dst` (for multi-GiB files).
    std::vector<uint8_t> bytes;
    std::function<void(uint8_t* dst, int64_t size)> fill;
  };
  void Add(Entry entry) { entries_.push_back(std::move(entry)); }
  // Writes header + data. Returns the total data bytes written.
  absl::StatusOr<int64_t> Write(const std::string& path) const;
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

}  // namespace glm::model

#endif  // GLM_SHARD_WORKER_MODEL_SAFETENSORS_FILE_H_
