#include "shard_worker/model/safetensors_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "shard_worker/model/json_duplicate_keys.h"
#include "shard_worker/model/model_file.h"

namespace glm::model {
namespace {

// A header larger than this is corruption, not a model (real ones are a few MiB at most).
constexpr int64_t kMaxHeaderBytes = 100'000'000;  // the safetensors format's own bound

absl::Status PreadFully(int fd, void* dst, int64_t length, int64_t offset, const std::string& path) {
  auto* p = static_cast<uint8_t*>(dst);
  while (length > 0) {
    ssize_t n = ::pread(fd, p, static_cast<size_t>(std::min<int64_t>(length, 1ll << 30)), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat(path, ": read failed: ", std::strerror(errno)));
    }
    if (n == 0) return absl::DataLossError(absl::StrCat(path, ": file ends early (truncated?)"));
    p += n;
    length -= n;
    offset += n;
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t SafetensorsDTypeSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "F8_E4M3" || dtype == "F8_E5M2" || dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  // O_NONBLOCK: a FIFO in a shard's place opens at once (and is refused below) instead of
  // blocking for a writer; reads of a regular file ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(path, ": cannot stat"));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, fd, st.st_size));
  if (auto s = file->ParseHeader(); !s.ok()) return s;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
}

absl::Status SafetensorsFile::ParseHeader() {
  if (file_size_ < 8) return absl::DataLossError(absl::StrCat(path_, ": too short for a safetensors header"));
  uint8_t len_bytes[8];
  if (auto s = PreadFully(fd_, len_bytes, 8, 0, path_); !s.ok()) return s;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes) ||
      static_cast<int64_t>(header_len) > file_size_ - 8) {
    return absl::DataLossError(absl::StrCat(path_, ": header length ", header_len,
                                            " exceeds the file size ", file_size_));
  }
  std::string header(header_len, '\0');
  if (auto s = PreadFully(fd_, header.data(), header_len, 8, path_); !s.ok()) return s;
  if (auto s = CheckJsonNesting(header, kMaxModelJsonDepth, absl::StrCat(path_, ": header")); !s.ok())
    return absl::DataLossError(s.message());
  std::vector<DuplicateJsonKey> duplicates;
  auto j = ParseJsonFindingDuplicateKeys(header, &duplicates);
  if (j.is_discarded() || !j.is_object())
    return absl::DataLossError(absl::StrCat(path_, ": header is not a JSON object"));
  // nlohmann keeps the last of two entries of one name: which bytes the tensor has would be a
  // guess.
  for (const auto& d : duplicates) {
    if (d.depth == 1)
      return absl::DataLossError(absl::StrCat(path_, ": tensor '", d.key, "' appears twice in the header"));
    if (d.outer_key != "__metadata__")  // free-form, and nothing in it is read
      return absl::DataLossError(absl::StrCat(path_, ": tensor '", d.outer_key, "': key '", d.key, "' appears twice"));
  }
  const int64_t data_start = 8 + static_cast<int64_t>(header_len);
  const int64_t data_size = file_size_ - data_start;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    auto bad = [&](absl::string_view what) {
      return absl::DataLossError(absl::StrCat(path_, ": tensor '", name, "': ", what));
    };
    if (!v.is_object()) return bad("entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return bad("missing dtype");
    if (sh == v.end() || !sh->is_array()) return bad("missing shape");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      return bad("data_offsets must be [begin, end]");
    TensorInfo t;
    t.name = name;
    t.dtype = *dt;
    int64_t elem = SafetensorsDTypeSize(t.dtype);
    if (elem == 0) return bad(absl::StrCat("unknown dtype ", t.dtype));
    int64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape must hold non-negative integers");
      // Compared as read (unsigned): above INT64_MAX a signed read wraps negative and would pass.
      if (d.get<uint64_t>() > (uint64_t{1} << 40)) return bad("shape is implausibly large");
      const int64_t dim = static_cast<int64_t>(d.get<uint64_t>());
      if (dim > 0 && numel > (int64_t{1} << 50) / dim) return bad("shape is implausibly large");
      numel *= dim;
      t.shape.push_back(dim);
    }
    // Compared as read (unsigned): above INT64_MAX a signed read wraps negative, and a negative
    // begin passed these checks and pointed the tensor into the header.
    const uint64_t ub = (*off)[0].get<uint64_t>(), ue = (*off)[1].get<uint64_t>();
    if (ub > ue || ue > static_cast<uint64_t>(data_size))
      return bad(absl::StrCat("data_offsets [", ub, ", ", ue, "] fall outside the data section of ",
                              data_size, " bytes (truncated file?)"));
    const int64_t b = static_cast<int64_t>(ub), e = static_cast<int64_t>(ue);
    if (e - b != numel * elem)
      return bad(absl::StrCat("holds ", e - b, " bytes but shape × dtype needs ", numel * elem));
    t.begin = data_start + b;
    t.size = e - b;
    ranges.emplace_back(b, e);
    tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second)
      return absl::DataLossError(absl::StrCat(path_, ": tensors overlap in the data section"));
  }
  return absl::OkStatus();
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status SafetensorsFile::Read(const TensorInfo& tensor, int64_t offset, int64_t length,
                                   void* dst) const {
  if (offset < 0 || length < 0 || offset + length > tensor.size)
    return absl::OutOfRangeError(absl::StrCat(path_, ": read outside tensor '", tensor.name, "'"));
  auto s = PreadFully(fd_, dst, length, tensor.begin + offset, path_);
  if (!s.ok()) return absl::DataLossError(absl::StrCat(s.message(), " (tensor '", tensor.name, "')"));
  return s;
}

absl::Status SafetensorsFile::ReadParallel(const TensorInfo& tensor, int64_t offset, int64_t length, void* dst,
                                           kernels::ThreadPool* pool, int max_threads) const {
  if (offset < 0 || length < 0 || offset + length > tensor.size)
    return absl::OutOfRangeError(absl::StrCat(path_, ": read outside tensor '", tensor.name, "'"));
  // Pieces: at most one a thread and one per kParallelReadPiece-aligned stretch of dst the range
  // touches; a range under kMinParallelReadBytes is one pread (a wake-up of the pool's threads
  // costs about what a thread copies in that time).
  const auto base = reinterpret_cast<uintptr_t>(dst);
  const auto piece = static_cast<uintptr_t>(kParallelReadPiece);
  const int64_t stretches =
      length == 0 ? 0 : static_cast<int64_t>((base + static_cast<uintptr_t>(length) - 1) / piece - base / piece + 1);
  const int64_t pieces =
      pool == nullptr || length < kMinParallelReadBytes
          ? 1
          : std::min<int64_t>(max_threads > 0 ? std::min(max_threads, pool->size()) : pool->size(), stretches);
  if (pieces <= 1) return Read(tensor, offset, length, dst);
  // Stretch i is [cut(i), cut(i + 1)) of dst: nominal equal shares, each inner cut moved up to
  // the next piece boundary of the address.
  const int64_t share = (length + pieces - 1) / pieces;
  auto cut = [&](int64_t i) -> int64_t {
    if (i <= 0) return 0;
    if (i >= pieces) return length;
    const uintptr_t at = base + static_cast<uintptr_t>(i * share);
    const uintptr_t up = (at + piece - 1) / piece * piece;
    return std::min<int64_t>(length, static_cast<int64_t>(up - base));
  };
  std::vector<absl::Status> status(static_cast<size_t>(pieces));
  pool->RunOnAll([&](int i) {
    if (i >= pieces) return;
    const int64_t b = cut(i), e = cut(i + 1);
    if (b < e)
      status[static_cast<size_t>(i)] =
          PreadFully(fd_, static_cast<uint8_t*>(dst) + b, e - b, tensor.begin + offset + b, path_);
  });
  for (const auto& s : status)
    if (!s.ok()) return absl::DataLossError(absl::StrCat(s.message(), " (tensor '", tensor.name, "')"));
  return absl::OkStatus();
}

void SafetensorsFile::AdviseWillNeed(const TensorInfo& tensor) const {
  if (tensor.size > 0) (void)::posix_fadvise(fd_, tensor.begin, tensor.size, POSIX_FADV_WILLNEED);
}

int DefaultReadThreads() { return std::min(kernels::AvailableCpus(), kMaxDefaultReadThreads); }

bool FileSystemTakesDirectIo(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (fd < 0) return false;
  void* block = std::aligned_alloc(SafetensorsFile::kDirectAlignment, SafetensorsFile::kDirectAlignment);
  const bool ok = block != nullptr && ::pread(fd, block, SafetensorsFile::kDirectAlignment, 0) >= 0;
  std::free(block);
  ::close(fd);
  return ok;
}

int SafetensorsFile::DirectFd() const {
  std::call_once(direct_once_, [this] { direct_fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT); });
  return direct_usable_.load(std::memory_order_relaxed) ? direct_fd_ : -1;
}

absl::Status SafetensorsFile::ReadDirect(const TensorInfo& tensor, int64_t offset, int64_t length, void* dst,
                                         bool* direct) const {
  if (direct != nullptr) *direct = false;
  if (offset < 0 || length < 0 || offset + length > tensor.size)
    return absl::OutOfRangeError(absl::StrCat(path_, ": read outside tensor '", tensor.name, "'"));
  const int fd = DirectFd();
  if (fd < 0) return Read(tensor, offset, length, dst);
  // One bounce buffer per reading thread (the expert store's I/O threads, and compute threads
  // on a miss), reused: O_DIRECT needs the memory aligned like the file offsets.
  constexpr int64_t kBounceBytes = int64_t{4} << 20;
  struct Bounce {
    void* data = nullptr;
    ~Bounce() { std::free(data); }
  };
  thread_local Bounce bounce;
  if (bounce.data == nullptr) {
    bounce.data = std::aligned_alloc(kDirectAlignment, kBounceBytes);
    if (bounce.data == nullptr) return Read(tensor, offset, length, dst);
  }
  auto* out = static_cast<uint8_t*>(dst);
  int64_t pos = tensor.begin + offset;
  const int64_t end = pos + length;
  const int64_t aligned_end = (end + kDirectAlignment - 1) / kDirectAlignment * kDirectAlignment;
  while (pos < end) {
    const int64_t block = pos / kDirectAlignment * kDirectAlignment;
    const int64_t want = std::min(kBounceBytes, aligned_end - block);
    const ssize_t n = ::pread(fd, bounce.data, static_cast<size_t>(want), block);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) {
      // Accepted at open, refused on read: the rest, and every later read, through the page cache.
      direct_usable_.store(false, std::memory_order_relaxed);
      return Read(tensor, pos - tensor.begin, end - pos, out);
    }
    if (n < 0) return absl::DataLossError(absl::StrCat(path_, ": read failed: ", std::strerror(errno), " (tensor '", tensor.name, "')"));
    // Short only at the end of the file (O_DIRECT reads whole blocks up to it).
    if (block + n <= pos) return absl::DataLossError(absl::StrCat(path_, ": file ends early (truncated?) (tensor '", tensor.name, "')"));
    const int64_t copy = std::min(end, block + static_cast<int64_t>(n)) - pos;
    std::memcpy(out, static_cast<const uint8_t*>(bounce.data) + (pos - block), static_cast<size_t>(copy));
    out += copy;
    pos += copy;
  }
  if (direct != nullptr) *direct = true;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SafetensorsWriter::Write(const std::string& path) const {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const auto& e : entries_) {
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    int64_t size = numel * SafetensorsDTypeSize(e.dtype);
    if (!e.fill && static_cast<int64_t>(e.bytes.size()) != size)
      return absl::InvalidArgumentError(absl::StrCat("tensor ", e.name, ": byte count mismatch"));
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  // Pad so the data section starts 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  auto write_all = [&](const void* p, int64_t n) -> bool {
    auto* c = static_cast<const uint8_t*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, static_cast<size_t>(std::min<int64_t>(n, 1ll << 30)));
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      c += w;
      n -= w;
    }
    return true;
  };
  uint8_t len[8];
  uint64_t hl = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(hl >> (8 * i));
  bool ok = write_all(len, 8) && write_all(text.data(), static_cast<int64_t>(text.size()));
  std::vector<uint8_t> chunk;
  for (const auto& e : entries_) {
    if (!ok) break;
    if (!e.fill) {
      ok = write_all(e.bytes.data(), static_cast<int64_t>(e.bytes.size()));
      continue;
    }
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    int64_t size = numel * SafetensorsDTypeSize(e.dtype);
    chunk.resize(size);
    e.fill(chunk.data(), size);
    ok = write_all(chunk.data(), size);
  }
  if (::close(fd) != 0) ok = false;
  if (!ok) return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  return offset;
}

}  // namespace glm::model
