// ModelWeights::Load: the expected-tensor table for a config, validation, and reading.
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "shard_worker/kernels/dtype.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/kernels/thread_pool.h"
#include "shard_worker/model/checkpoint_layout.h"
#include "shard_worker/model/layer_read_ahead.h"
#include "shard_worker/model/mlp_calibration.h"
#include "shard_worker/model/model_weights.h"
#include "shard_worker/model/stored_expert_codes.h"

namespace glm::model {

#define GLM_ASSIGN_OR_RETURN_(lhs, expr) \
  do {                                   \
    auto _r = (expr);                    \
    if (!_r.ok()) return _r.status();    \
    lhs = *std::move(_r);                \
  } while (0)

namespace {

// Layers [begin, end) as the plan's table names them: the MTP layers (index >= hidden) are not
// hidden layers, so "layers 0-5 + MTP", not "layers 0-6".
std::string LayerRangeText(int64_t begin, int64_t end, int64_t hidden) {
  const int64_t hidden_end = std::min(end, hidden);
  std::string text = begin < hidden_end ? absl::StrCat("layers ", begin, "-", hidden_end - 1) : "no hidden layers";
  const int64_t mtp = end - std::max(begin, hidden);
  if (mtp == 1) absl::StrAppend(&text, " + MTP");
  if (mtp > 1) absl::StrAppend(&text, " + ", mtp, " MTP layers");
  return text;
}

}  // namespace

// Reads tensors into buffers owned by a ModelWeights.
class WeightLoader {
 public:
  WeightLoader(const Checkpoint& ckpt, ModelWeights* out, std::optional<kernels::DType> convert_to,
               int64_t group_size = 0, QuantizeScope scope = QuantizeScope::kAllMatrices)
      : ckpt_(ckpt),
        out_(out),
        convert_to_(convert_to),
        group_size_(group_size),
        scope_(scope),
        mtp_prefix_(LayerPrefix(ckpt.config().num_hidden_layers)) {}

  // Whether `name` is re-quantised (int8/int4 asked for and the tensor in the scope).
  bool Quantizes(const std::string& name) const {
    return convert_to_ && kernels::IsGroupQuantized(*convert_to_) && InScope(name);
  }
  // Whether `name` is in the quantise scope (whatever the conversion).
  bool InScope(const std::string& name) const {
    if (quantize_only_ && !quantize_only_(name)) return false;
    switch (scope_) {
      case QuantizeScope::kAllMatrices:
        return true;
      case QuantizeScope::kMtpLayer:
        return absl::StartsWith(name, mtp_prefix_);
      case QuantizeScope::kExperts:
        break;
    }
    return absl::StrContains(name, ".experts.") || absl::StrContains(name, ".shared_experts.");
  }

  // Checkpoint bytes read so far (a tensor read twice counts twice).
  int64_t bytes_read() const { return bytes_read_; }
  // The load's threads: reads through the page cache run on up to `read_threads` of them
  // (SafetensorsFile::ReadParallel), re-quantising on up to the CPUs this process may run on.
  void set_pool(std::shared_ptr<kernels::ThreadPool> pool, int read_threads) {
    pool_ = std::move(pool);
    read_threads_ = read_threads;
  }
  // Reads bypass the page cache (SafetensorsFile::ReadDirect): streamed experts.
  void set_direct_io(bool direct) { direct_io_ = direct; }
  // With direct I/O asked for: whether every read so far got it (false once one fell back).
  bool all_reads_direct() const { return all_reads_direct_; }

  // Called with a line of text when reading starts on a shard file not read before.
  void set_progress(std::function<void(const std::string&)> progress) { progress_ = std::move(progress); }
  // The shard files already announced, shared by the loaders of one model (each file once).
  void share_files_seen(const WeightLoader& other) { files_seen_ = other.files_seen_; }
  void NoteFile(const SafetensorsFile* file) {
    if (!progress_ || file == nullptr || !files_seen_->insert(file).second) return;
    progress_(absl::StrCat("reading ", file->path(), " (shard ", files_seen_->size(), " of ", ckpt_.files().size(),
                           ", ", out_->bytes_loaded_ >> 20, " MiB loaded so far)"));
  }

  // fn() with the conversion target set to `to` for its duration.
  template <typename Fn>
  auto ConvertingTo(std::optional<kernels::DType> to, Fn fn) {
    const std::optional<kernels::DType> saved = convert_to_;
    convert_to_ = to;
    auto result = fn();
    convert_to_ = saved;
    return result;
  }

  // A new rows × cols matrix of `dtype` that the ModelWeights owns, filled by fill(data).
  absl::StatusOr<WeightView> NewMatrix(const std::string& name, kernels::DType dtype, int64_t rows, int64_t cols,
                                       const std::function<void(void*)>& fill) {
    AlignedBuffer buf(std::max<int64_t>(1, rows * cols * kernels::DTypeSize(dtype)));
    if (!buf.valid()) return OutOfMemory(name);
    fill(buf.data());
    WeightView v;
    v.dtype = dtype;
    v.rows = rows;
    v.cols = cols;
    v.data = buf.data();
    Keep(std::move(buf));
    return v;
  }

  // LoadOptions::quantize_only (benchmarks): narrows the scope to the matrices it accepts.
  void set_quantize_only(std::function<bool(const std::string&)> only) { quantize_only_ = std::move(only); }
  // LoadOptions::calibration: calibrated quantisation of the matrices it has statistics for.
  void set_calibration(std::shared_ptr<const MlpCalibration> calibration) { calibration_ = std::move(calibration); }

  // LoadOptions::simulate_rows (benchmarks): applied to the in-scope matrices, loaded as F32.
  void set_simulate_rows(std::function<void(float*, int64_t)> fn) { simulate_rows_ = std::move(fn); }

  // A matrix in its stored format, or converted when LoadOptions::matrix_dtype asks for it.
  absl::StatusOr<WeightView> Matrix(const std::string& name) {
    if (HoldsStoredCodes(ckpt_, name)) return Codes(name, 0, -1, 0, -1);
    const size_t buffers_before = out_->buffers_.size();
    if (simulate_rows_ && InScope(name)) {
      auto stored = StoredMatrix(name, /*transient=*/true);
      if (!stored.ok()) return stored;
      const WeightView src = *stored;
      return NewMatrix(name, kernels::DType::kF32, src.rows, src.cols, [&](void* data) {
        float* rows = static_cast<float*>(data);
        for (int64_t r = 0; r < src.rows; ++r) {
          src.RowToF32(r, rows + r * src.cols);
          simulate_rows_(rows + r * src.cols, src.cols);
        }
      });
    }
    if (convert_to_ && kernels::IsGroupQuantized(*convert_to_)) {
      if (!Quantizes(name)) return StoredMatrix(name);  // outside the scope: as stored
      // The stored values only pass through: read them into the loader's scratch, whose pages
      // stay mapped from one tensor to the next (a fresh buffer per tensor cost a page fault and
      // a zeroed huge page every 2 MiB: a fifth of an int4 load's time).
      auto stored = StoredMatrix(name, /*transient=*/true);
      if (!stored.ok()) return stored;
      return Quantized(name, *stored, buffers_before);
    }
    auto stored = StoredMatrix(name);
    if (!stored.ok() || !convert_to_ || *convert_to_ == stored->dtype) return stored;
    const WeightView& src = *stored;
    AlignedBuffer buf(src.rows * src.cols * kernels::DTypeSize(*convert_to_));
    if (!buf.valid()) return OutOfMemory(name);
    for (int64_t r = 0; r < src.rows; ++r)
      for (int64_t c = 0; c < src.cols; ++c) {
        float v = src.At(r, c);
        if (*convert_to_ == kernels::DType::kF32) static_cast<float*>(buf.data())[r * src.cols + c] = v;
        else static_cast<uint16_t*>(buf.data())[r * src.cols + c] = kernels::F32ToBf16(v);
      }
    // Release the stored copy (the last buffers kept) before keeping the converted one.
    while (out_->buffers_.size() > buffers_before) {
      out_->bytes_loaded_ -= out_->buffers_.back().size();
      out_->buffers_.pop_back();
    }
    WeightView v;
    v.dtype = *convert_to_;
    v.rows = src.rows;
    v.cols = src.cols;
    v.data = buf.data();
    Keep(std::move(buf));
    return v;
  }

  // transient: the data (not an F16 tensor's, nor FP8 scales) goes to source_scratch_, valid
  // until the next transient read, instead of a buffer the ModelWeights keeps.
  absl::StatusOr<WeightView> StoredMatrix(const std::string& name, bool transient = false) {
    auto loc = ckpt_.Find(name);
    NoteFile(loc.file);
    const TensorInfo& info = *loc.info;
    WeightView v;
    v.rows = info.shape[0];
    v.cols = info.shape[1];
    if (info.dtype == "F16") {
      auto f = Vector(name);
      if (!f.ok()) return f.status();
      AlignedBuffer buf(static_cast<int64_t>(f->size() * sizeof(float)));
      if (!buf.valid()) return OutOfMemory(name);
      std::copy(f->begin(), f->end(), static_cast<float*>(buf.data()));
      v.dtype = kernels::DType::kF32;
      v.data = buf.data();
      Keep(std::move(buf));
      return v;
    }
    v.dtype = info.dtype == "F32" ? kernels::DType::kF32
              : info.dtype == "BF16" ? kernels::DType::kBF16 : kernels::DType::kF8E4M3;
    if (transient) {
      if (static_cast<int64_t>(source_scratch_.size()) < info.size) {
        try {
          source_scratch_.resize(info.size);
        } catch (const std::bad_alloc&) {
          return OutOfMemory(name);
        }
      }
      if (auto s = ReadBytes(*loc.file, info, 0, info.size, source_scratch_.data()); !s.ok()) return s;
      v.data = source_scratch_.data();
    } else {
      AlignedBuffer buf(info.size);
      if (!buf.valid()) return OutOfMemory(name);
      if (auto s = ReadBytes(*loc.file, info, 0, info.size, buf.data()); !s.ok()) return s;
      v.data = buf.data();
      Keep(std::move(buf));
    }
    if (v.dtype == kernels::DType::kF8E4M3) {
      v.fp8_nan_free = !kernels::Fp8HasNanCode(static_cast<const uint8_t*>(v.data), info.size);
      std::string scale_name = name.substr(0, name.size() - 6) + "weight_scale_inv";
      auto scales = Vector(scale_name);
      if (!scales.ok()) return scales.status();
      AlignedBuffer sbuf(static_cast<int64_t>(scales->size() * sizeof(float)));
      std::copy(scales->begin(), scales->end(), static_cast<float*>(sbuf.data()));
      v.block_scales = static_cast<const float*>(sbuf.data());
      v.block_rows = ckpt_.config().fp8_block_rows;
      v.block_cols = ckpt_.config().fp8_block_cols;
      v.scale_cols = (v.cols + v.block_cols - 1) / v.block_cols;
      Keep(std::move(sbuf));
    }
    return v;
  }

  // Rows [rb, re) and columns [cb, ce) of a matrix. Block-FP8 stays FP8 when the column slice
  // starts on a block boundary (rows may start anywhere: the view's row_offset keeps the scale
  // grid aligned); otherwise the slice is dequantised to F32 (exact; only odd test layouts).
  absl::StatusOr<WeightView> SlicedMatrix(const std::string& name, int64_t rb, int64_t re, int64_t cb, int64_t ce) {
    auto loc = ckpt_.Find(name);
    NoteFile(loc.file);
    const TensorInfo& info = *loc.info;
    const int64_t rows = info.shape[0], cols = info.shape[1];
    // (Stored codes first: an int4 tensor's shape counts bytes, not columns.)
    if (HoldsStoredCodes(ckpt_, name)) return Codes(name, rb, re, cb, ce);
    if (rb == 0 && re == rows && cb == 0 && ce == cols) return Matrix(name);
    if (rb < 0 || re > rows || rb > re || cb < 0 || ce > cols || cb > ce)
      return absl::InvalidArgumentError(absl::StrCat("slice of '", name, "' outside its shape"));
    if (convert_to_ && kernels::IsGroupQuantized(*convert_to_)) {
      auto slice = [&] { return SlicedMatrix(name, rb, re, cb, ce); };
      if (!Quantizes(name)) return ConvertingTo(std::nullopt, slice);  // outside the scope: as stored
      // Slice in f32 (exact), then quantise the slice: its groups start at the slice's column 0.
      const size_t buffers_before = out_->buffers_.size();
      auto f32 = ConvertingTo(kernels::DType::kF32, slice);
      if (!f32.ok()) return f32;
      return Quantized(name, *f32, buffers_before, cb);
    }
    const ModelConfig& c = ckpt_.config();
    const bool fp8 = info.dtype == "F8_E4M3";
    const bool keep_fp8 = fp8 && cb % c.fp8_block_cols == 0 && !convert_to_;
    const bool to_f32 = info.dtype == "F16" || (fp8 && !keep_fp8 && !convert_to_);
    const kernels::DType out_dtype = convert_to_ ? *convert_to_
                                     : to_f32 ? kernels::DType::kF32
                                     : info.dtype == "F32" ? kernels::DType::kF32
                                     : info.dtype == "BF16" ? kernels::DType::kBF16 : kernels::DType::kF8E4M3;
    const int64_t elem = SafetensorsDTypeSize(info.dtype);
    // Read the row band once, then keep the column window.
    std::vector<uint8_t> band((re - rb) * cols * elem);
    if (auto s = ReadBytes(*loc.file, info, rb * cols * elem, static_cast<int64_t>(band.size()), band.data()); !s.ok()) return s;
    std::vector<float> scales;
    if (fp8) {
      GLM_ASSIGN_OR_RETURN_(scales, Vector(name.substr(0, name.size() - 6) + "weight_scale_inv"));
    }
    const int64_t scale_cols = fp8 ? (cols + c.fp8_block_cols - 1) / c.fp8_block_cols : 0;
    WeightView v;
    v.dtype = out_dtype;
    v.rows = re - rb;
    v.cols = ce - cb;
    AlignedBuffer buf(v.rows * v.cols * kernels::DTypeSize(out_dtype));
    if (!buf.valid()) return OutOfMemory(name);
    for (int64_t r = 0; r < v.rows; ++r) {
      const uint8_t* src = band.data() + (r * cols + cb) * elem;
      if (!fp8 && !to_f32 && !convert_to_) {  // same format: copy the window
        std::memcpy(static_cast<uint8_t*>(buf.data()) + r * v.cols * elem, src, v.cols * elem);
        continue;
      }
      if (keep_fp8) {
        std::memcpy(static_cast<uint8_t*>(buf.data()) + r * v.cols, src, v.cols);
        continue;
      }
      for (int64_t k = 0; k < v.cols; ++k) {
        float x;
        if (fp8) {
          x = kernels::Fp8E4M3ToF32(src[k]) *
              scales[((rb + r) / c.fp8_block_rows) * scale_cols + (cb + k) / c.fp8_block_cols];
        } else if (info.dtype == "BF16") {
          uint16_t b;
          std::memcpy(&b, src + 2 * k, 2);
          x = kernels::Bf16ToF32(b);
        } else if (info.dtype == "F16") {
          uint16_t b;
          std::memcpy(&b, src + 2 * k, 2);
          x = HalfToFloat(b);
        } else {
          std::memcpy(&x, src + 4 * k, 4);
        }
        if (out_dtype == kernels::DType::kF32) static_cast<float*>(buf.data())[r * v.cols + k] = x;
        else static_cast<uint16_t*>(buf.data())[r * v.cols + k] = kernels::F32ToBf16(x);
      }
    }
    v.data = buf.data();
    Keep(std::move(buf));
    if (keep_fp8) {
      v.fp8_nan_free = !kernels::Fp8HasNanCode(static_cast<const uint8_t*>(v.data), v.rows * v.cols);
      // Scale grid rows covering [rb, re), columns from cb's block.
      const int64_t sr0 = rb / c.fp8_block_rows, sr1 = (re + c.fp8_block_rows - 1) / c.fp8_block_rows;
      const int64_t sc0 = cb / c.fp8_block_cols, sc1 = (ce + c.fp8_block_cols - 1) / c.fp8_block_cols;
      AlignedBuffer sbuf((sr1 - sr0) * (sc1 - sc0) * static_cast<int64_t>(sizeof(float)));
      float* dst = static_cast<float*>(sbuf.data());
      for (int64_t i = sr0; i < sr1; ++i)
        for (int64_t j = sc0; j < sc1; ++j) *dst++ = scales[i * scale_cols + j];
      v.block_scales = static_cast<const float*>(sbuf.data());
      v.block_rows = c.fp8_block_rows;
      v.block_cols = c.fp8_block_cols;
      v.scale_cols = sc1 - sc0;
      v.row_offset = rb - sr0 * c.fp8_block_rows;
      Keep(std::move(sbuf));
    }
    return v;
  }

  // Any float tensor as f32 values (row-major).
  absl::StatusOr<std::vector<float>> Vector(const std::string& name) {
    auto loc = ckpt_.Find(name);
    NoteFile(loc.file);
    if (loc.file == nullptr) return absl::NotFoundError(absl::StrCat("tensor '", name, "' is missing"));
    const TensorInfo& info = *loc.info;
    std::vector<uint8_t> raw(info.size);
    if (auto s = ReadBytes(*loc.file, info, 0, info.size, raw.data()); !s.ok()) return s;
    out_->bytes_loaded_ += info.size;
    std::vector<float> v(info.numel());
    for (int64_t i = 0; i < info.numel(); ++i) {
      if (info.dtype == "F32") {
        std::memcpy(&v[i], raw.data() + 4 * i, 4);
      } else if (info.dtype == "BF16") {
        uint16_t b;
        std::memcpy(&b, raw.data() + 2 * i, 2);
        v[i] = kernels::Bf16ToF32(b);
      } else if (info.dtype == "F16") {
        uint16_t b;
        std::memcpy(&b, raw.data() + 2 * i, 2);
        v[i] = HalfToFloat(b);
      } else if (info.dtype == "F8_E4M3") {
        v[i] = kernels::Fp8E4M3ToF32(raw[i]);
      } else {
        return absl::DataLossError(absl::StrCat(loc.Where(), ": dtype ", info.dtype, " is not a float type"));
      }
    }
    if (info.dtype == "F8_E4M3") {
      if (auto s = ApplyBlockScales(loc, &v); !s.ok()) return s;
    }
    return v;
  }

  bool Present(const std::string& name) const { return ckpt_.Find(name).file != nullptr; }

 private:
  static float HalfToFloat(uint16_t h) {
    uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = std::ldexp(static_cast<float>(mant), -24);
    else if (exp == 31) v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
    return sign ? -v : v;
  }
  // A block-FP8 matrix read as values (the MoE router gate, which Validate lets be FP8 like any
  // matrix) times its weight_scale_inv blocks: without them the values are off by the scales.
  // Real GLM-5/DeepSeek FP8 exports keep the gate BF16; a checkpoint that quantised it still loads right.
  absl::Status ApplyBlockScales(const Checkpoint::Located& loc, std::vector<float>* values) {
    const TensorInfo& info = *loc.info;
    const ModelConfig& c = ckpt_.config();
    if (info.shape.size() != 2 || !absl::EndsWith(info.name, "weight"))
      return absl::DataLossError(absl::StrCat(loc.Where(), " is F8_E4M3 but not a matrix with block scales"));
    const std::string scale_name = info.name.substr(0, info.name.size() - 6) + "weight_scale_inv";
    auto scale_loc = ckpt_.Find(scale_name);
    if (scale_loc.file == nullptr || scale_loc.info->dtype == "F8_E4M3")
      return absl::DataLossError(absl::StrCat(loc.Where(), " is F8_E4M3 but '", scale_name, "' is missing"));
    auto scales = Vector(scale_name);
    if (!scales.ok()) return scales.status();
    const int64_t rows = info.shape[0], cols = info.shape[1];
    const int64_t scale_cols = (cols + c.fp8_block_cols - 1) / c.fp8_block_cols;
    const int64_t scale_rows = (rows + c.fp8_block_rows - 1) / c.fp8_block_rows;
    if (static_cast<int64_t>(scales->size()) != scale_rows * scale_cols)
      return absl::DataLossError(absl::StrCat(scale_loc.Where(), " holds ", scales->size(), " scales, blocks of ",
                                              c.fp8_block_rows, "x", c.fp8_block_cols, " need ",
                                              scale_rows * scale_cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k)
        (*values)[r * cols + k] *= (*scales)[(r / c.fp8_block_rows) * scale_cols + k / c.fp8_block_cols];
    return absl::OkStatus();
  }
  // `src` (any format) re-quantised to *convert_to_; the buffers kept since `buffers_before` (the
  // source's) are released. `src` holds columns [col_begin, col_begin + src.cols) of the tensor
  // (a tensor-parallel slice: calibrated quantisation uses that block of the statistics).
  absl::StatusOr<WeightView> Quantized(const std::string& name, const WeightView& src, size_t buffers_before,
                                       int64_t col_begin = 0) {
    const kernels::DType dt = *convert_to_;
    WeightView v;
    v.dtype = dt;
    v.rows = src.rows;
    v.cols = src.cols;
    v.group_size = group_size_ < 0 ? std::max<int64_t>(1, src.cols)
                   : group_size_ > 0 ? group_size_
                   : dt == kernels::DType::kI8 ? kernels::kDefaultI8GroupSize : kernels::kDefaultI4GroupSize;
    if (std::string why = kernels::CheckQuantGroupSize(dt, v.group_size, v.cols); !why.empty())
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", why));
    const int64_t row_bytes = v.row_bytes(), groups = v.groups_per_row();
    AlignedBuffer buf(std::max<int64_t>(1, v.rows * row_bytes));
    AlignedBuffer sbuf(std::max<int64_t>(1, v.rows * groups * static_cast<int64_t>(sizeof(uint16_t))));
    if (!buf.valid() || !sbuf.valid()) return OutOfMemory(name);
    auto* data = static_cast<uint8_t*>(buf.data());
    auto* scales = static_cast<uint16_t*>(sbuf.data());  // f16 bits
    // Rows are independent: quantise them on the load's threads in pieces of at least 64K weights
    // (a tenth of a millisecond or more of scale search, far more than a fork of the pool; a 4
    // GiB BF16 model is seconds of it per core), a thread that falls behind doing less of the tail.
    auto quantize_rows = [&](int64_t r0, int64_t r1) {
      std::vector<float> row(src.cols);
      for (int64_t r = r0; r < r1; ++r) {
        src.RowToF32(r, row.data());
        kernels::QuantizeRow(dt, row.data(), src.cols, v.group_size, data + r * row_bytes, scales + r * groups);
      }
    };
    if (calibration_ != nullptr && calibration_->Find(name) != nullptr) {
      if (auto st = calibration_->Quantize(name, src, col_begin, dt, v.group_size, data, scales); !st.ok()) return st;
    } else {
      const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, v.cols));
      if (pool_ == nullptr) quantize_rows(0, v.rows);
      else pool_->ParallelFor(v.rows, quantize_rows, grain, kernels::AvailableCpus());
    }
    while (out_->buffers_.size() > buffers_before) {
      out_->bytes_loaded_ -= out_->buffers_.back().size();
      out_->buffers_.pop_back();
    }
    v.data = buf.data();
    v.group_scales = scales;
    Keep(std::move(buf));
    Keep(std::move(sbuf));
    return v;
  }

  // Pre-quantised expert codes (stored_expert_codes.h), rows [rb, re) and columns [cb, ce) (-1:
  // to the end), if the load's conversion allows them.
  absl::StatusOr<WeightView> Codes(const std::string& name, int64_t rb, int64_t re, int64_t cb, int64_t ce) {
    if (auto s = CheckStoredCodesRequest(ckpt_, name, convert_to_, group_size_, InScope(name), simulate_rows_ != nullptr);
        !s.ok())
      return s;
    auto loc = ckpt_.Find(name);
    NoteFile(loc.file);
    if (re < 0) re = loc.info->shape[0];
    if (ce < 0) ce = ExpertMatrixCols(ckpt_.config(), name);
    auto codes = ReadStoredCodes(ckpt_, name, rb, re, cb, ce,
                                 [this](const Checkpoint::Located& at, int64_t offset, int64_t length, void* dst) {
                                   return ReadBytes(*at.file, *at.info, offset, length, dst);
                                 });
    if (!codes.ok()) return codes.status();
    const WeightView v = codes->view;
    Keep(std::move(codes->codes));
    Keep(std::move(codes->scales));
    return v;
  }

  absl::Status ReadBytes(const SafetensorsFile& file, const TensorInfo& info, int64_t offset, int64_t length,
                         void* dst) {
    bytes_read_ += length;
    if (!direct_io_) return file.ReadParallel(info, offset, length, dst, pool_.get(), read_threads_);
    bool direct = false;
    absl::Status s = file.ReadDirect(info, offset, length, dst, &direct);
    all_reads_direct_ = all_reads_direct_ && direct;
    return s;
  }

  absl::Status OutOfMemory(const std::string& name) {
    return absl::ResourceExhaustedError(absl::StrCat("out of memory loading tensor '", name, "'"));
  }
  void Keep(AlignedBuffer buf) {
    out_->bytes_loaded_ += buf.size();
    out_->buffers_.push_back(std::move(buf));
  }

  std::vector<uint8_t> source_scratch_;  // StoredMatrix(transient): a tensor on its way to re-quantisation
  std::function<void(const std::string&)> progress_;
  std::shared_ptr<std::set<const SafetensorsFile*>> files_seen_ = std::make_shared<std::set<const SafetensorsFile*>>();
  const Checkpoint& ckpt_;
  ModelWeights* out_;
  std::optional<kernels::DType> convert_to_;
  int64_t group_size_ = 0;
  QuantizeScope scope_ = QuantizeScope::kAllMatrices;
  std::function<void(float*, int64_t)> simulate_rows_;
  std::shared_ptr<const MlpCalibration> calibration_;
  std::function<bool(const std::string&)> quantize_only_;
  std::string mtp_prefix_;  // "model.layers.{num_hidden_layers}." (names in kMtpLayer's scope)
  std::shared_ptr<kernels::ThreadPool> pool_;  // set_pool
  int read_threads_ = 0;
  int64_t bytes_read_ = 0;
  bool direct_io_ = false;
  bool all_reads_direct_ = true;
};

namespace {

#define GLM_ASSIGN_OR_RETURN(lhs, expr) \
  do {                                  \
    auto _r = (expr);                   \
    if (!_r.ok()) return _r.status();   \
    lhs = *std::move(_r);               \
  } while (0)

// gate/up rows and down columns [begin, end) of the intermediate dimension (all of it: 0, -1).
absl::Status LoadMlp(WeightLoader& l, const std::string& prefix, int64_t hidden, int64_t inter, int64_t begin,
                     int64_t end, MlpWeights* out) {
  if (end < 0) end = inter;
  GLM_ASSIGN_OR_RETURN(out->gate_proj, l.SlicedMatrix(prefix + "gate_proj.weight", begin, end, 0, hidden));
  GLM_ASSIGN_OR_RETURN(out->up_proj, l.SlicedMatrix(prefix + "up_proj.weight", begin, end, 0, hidden));
  GLM_ASSIGN_OR_RETURN(out->down_proj, l.SlicedMatrix(prefix + "down_proj.weight", 0, hidden, begin, end));
  return absl::OkStatus();
}

absl::Status LoadLayer(WeightLoader& l, const ModelConfig& c, int64_t layer, const LoadOptions& opt,
                       LayerWeights* w) {
  const std::string p = LayerPrefix(layer);
  const std::string a = p + "self_attn.";
  GLM_ASSIGN_OR_RETURN(w->input_norm, l.Vector(p + "input_layernorm.weight"));
  GLM_ASSIGN_OR_RETURN(w->post_attention_norm, l.Vector(p + "post_attention_layernorm.weight"));
  AttentionWeights& at = w->attn;
  GLM_ASSIGN_OR_RETURN(at.q_a_proj, l.Matrix(a + "q_a_proj.weight"));
  GLM_ASSIGN_OR_RETURN(at.q_a_norm, l.Vector(a + "q_a_layernorm.weight"));
  const int64_t hb = opt.head_begin, he = opt.head_end, qk = c.qk_head_dim();
  GLM_ASSIGN_OR_RETURN(at.q_b_proj, l.SlicedMatrix(a + "q_b_proj.weight", hb * qk, he * qk, 0, c.q_lora_rank));
  GLM_ASSIGN_OR_RETURN(at.kv_a_proj, l.Matrix(a + "kv_a_proj_with_mqa.weight"));
  GLM_ASSIGN_OR_RETURN(at.kv_a_norm, l.Vector(a + "kv_a_layernorm.weight"));
  GLM_ASSIGN_OR_RETURN(at.o_proj, l.SlicedMatrix(a + "o_proj.weight", 0, c.hidden_size, hb * c.v_head_dim,
                                                  he * c.v_head_dim));
  // kv_b_proj stays in its stored format whatever --weight-dtype asks (its values exactly, as
  // the absorbed attention always used them).
  const int64_t heads = he - hb, nope = c.qk_nope_head_dim, vd = c.v_head_dim, rank = c.kv_lora_rank;
  GLM_ASSIGN_OR_RETURN(at.kv_b_proj, l.ConvertingTo(std::nullopt, [&] {
    return l.SlicedMatrix(a + "kv_b_proj.weight", hb * (nope + vd), he * (nope + vd), 0, rank);
  }));
  // W_uk^T from the loaded slice's values (row h·(nope + vd) + d of kv_b_proj is W_uk[h][d]).
  const WeightView& kv_b = at.kv_b_proj;
  const bool bf16 = kv_b.dtype == kernels::DType::kBF16;
  GLM_ASSIGN_OR_RETURN(
      at.w_uk_t, l.NewMatrix(a + "kv_b_proj.weight (W_uk transposed)", bf16 ? kernels::DType::kBF16 : kernels::DType::kF32,
                             heads * rank, nope, [&](void* data) {
                               std::vector<float> row(rank);
                               for (int64_t h = 0; h < heads; ++h)
                                 for (int64_t d = 0; d < nope; ++d) {
                                   kv_b.RowToF32(h * (nope + vd) + d, row.data());
                                   for (int64_t r = 0; r < rank; ++r) {
                                     const int64_t i = (h * rank + r) * nope + d;
                                     if (bf16) static_cast<uint16_t*>(data)[i] = kernels::F32ToBf16(row[r]);
                                     else static_cast<float*>(data)[i] = row[r];
                                   }
                                 }
                             }));
  const std::string ix = a + "indexer.";
  if (c.indexer_kind(layer) == IndexerKind::kFull) {
    IndexerWeights& iw = at.indexer;
    iw.present = true;
    GLM_ASSIGN_OR_RETURN(iw.wq_b, l.Matrix(ix + "wq_b.weight"));
    GLM_ASSIGN_OR_RETURN(iw.wk, l.Matrix(ix + "wk.weight"));
    GLM_ASSIGN_OR_RETURN(iw.weights_proj, l.Matrix(ix + "weights_proj.weight"));
    GLM_ASSIGN_OR_RETURN(iw.k_norm_weight, l.Vector(ix + "k_norm.weight"));
    GLM_ASSIGN_OR_RETURN(iw.k_norm_bias, l.Vector(ix + "k_norm.bias"));
  }
  w->mlp_kind = c.mlp_kind(layer);
  if (w->mlp_kind == MlpKind::kDense) {
    if (auto s = LoadMlp(l, p + "mlp.", c.hidden_size, c.intermediate_size, opt.dense_begin, opt.dense_end, &w->dense);
        !s.ok())
      return s;
  } else {
    MoeWeights& moe = w->moe;
    GLM_ASSIGN_OR_RETURN(moe.router, l.Vector(p + "mlp.gate.weight"));
    GLM_ASSIGN_OR_RETURN(moe.router_bias, l.Vector(p + "mlp.gate.e_score_correction_bias"));
    moe.experts.resize(c.n_routed_experts);
    moe.expert_loaded.assign(c.n_routed_experts, false);
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      if (opt.owns_expert && !opt.owns_expert(layer, e)) continue;
      if (auto s = LoadMlp(l, absl::StrCat(p, "mlp.experts.", e, "."), c.hidden_size, c.moe_intermediate_size,
                           opt.expert_slice_begin, opt.expert_slice_end, &moe.experts[e]);
          !s.ok())
        return s;
      moe.expert_loaded[e] = true;
    }
    if (opt.expert_replicas) moe.replicas = opt.expert_replicas(layer);
    if (c.n_shared_experts > 0) {
      moe.has_shared = true;
      if (auto s = LoadMlp(l, p + "mlp.shared_experts.", c.hidden_size, c.moe_intermediate_size * c.n_shared_experts,
                           opt.shared_begin, opt.shared_end, &moe.shared);
          !s.ok())
        return s;
    }
  }
  if (layer == c.num_hidden_layers) {
    MtpHeadWeights& m = w->mtp;
    GLM_ASSIGN_OR_RETURN(m.enorm, l.Vector(p + "enorm.weight"));
    GLM_ASSIGN_OR_RETURN(m.hnorm, l.Vector(p + "hnorm.weight"));
    GLM_ASSIGN_OR_RETURN(m.eh_proj, l.Matrix(p + "eh_proj.weight"));
    GLM_ASSIGN_OR_RETURN(m.embed_tokens, l.Matrix(p + "embed_tokens.weight"));
    GLM_ASSIGN_OR_RETURN(m.head_norm, l.Vector(p + "shared_head.norm.weight"));
    GLM_ASSIGN_OR_RETURN(m.head, l.SlicedMatrix(p + "shared_head.head.weight", opt.vocab_begin, opt.vocab_end, 0,
                                                c.hidden_size));
  }
  w->loaded = true;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const Checkpoint& checkpoint,
                                                                  const LoadOptions& options) {
  const auto load_start = std::chrono::steady_clock::now();
  const ModelConfig& c = checkpoint.config();
  if (auto s = ValidateCheckpointTensors(checkpoint, ExpectedTensors(c)); !s.ok()) return s;
  auto w = std::unique_ptr<ModelWeights>(new ModelWeights());
  w->config_ = c;
  if (options.matrix_dtype && *options.matrix_dtype == kernels::DType::kF8E4M3)
    return absl::InvalidArgumentError("weights can be converted at load to BF16, F32, I8 or I4 only");
  if (options.matrix_dtype && options.simulate_rows)
    return absl::InvalidArgumentError("a simulated format (simulate_rows) loads its matrices as F32: no matrix dtype with it");
  if (auto s = CheckQuantizeScope(options, c); !s.ok()) return s;
  // Resolve the slices (-1 = to the end) and check them against the config.
  LoadOptions opt = options;
  auto resolve = [](int64_t& begin, int64_t& end, int64_t size, const char* what) -> absl::Status {
    if (end < 0) end = size;
    if (begin < 0 || begin > end || end > size)
      return absl::InvalidArgumentError(absl::StrCat(what, " slice [", begin, ", ", end, ") outside [0, ", size, ")"));
    return absl::OkStatus();
  };
  for (auto s : {resolve(opt.head_begin, opt.head_end, c.num_attention_heads, "head"),
                 resolve(opt.dense_begin, opt.dense_end, c.intermediate_size, "dense"),
                 resolve(opt.shared_begin, opt.shared_end, c.moe_intermediate_size * c.n_shared_experts, "shared"),
                 resolve(opt.vocab_begin, opt.vocab_end, c.vocab_size, "vocab"),
                 resolve(opt.expert_slice_begin, opt.expert_slice_end, c.moe_intermediate_size, "expert")})
    if (!s.ok()) return s;
  w->slices_ = opt;
  WeightLoader loader(checkpoint, w.get(), options.matrix_dtype, options.matrix_group_size, options.quantize_scope);
  loader.set_progress(options.progress);
  loader.set_simulate_rows(options.simulate_rows);
  loader.set_calibration(options.calibration);
  loader.set_quantize_only(options.quantize_only);
  if (options.read_threads < 0) return absl::InvalidArgumentError("read_threads must be >= 0 (0 = automatic)");
  const int read_threads = options.read_threads > 0 ? options.read_threads : DefaultReadThreads();
  // Re-quantising runs on every CPU the rank may use; reading on read_threads of them.
  const bool requantizes = options.matrix_dtype && kernels::IsGroupQuantized(*options.matrix_dtype);
  const int load_threads = std::max(read_threads, requantizes ? kernels::AvailableCpus() : 1);
  auto load_pool = load_threads > 1 ? std::make_shared<kernels::ThreadPool>(load_threads) : nullptr;
  loader.set_pool(load_pool, read_threads);
  // Re-quantising to int8/int4 leaves the embedding and the output heads in their stored
  // precision unless asked (as llama.cpp keeps its output matrix at higher precision): on the
  // bundled model int8 lm_head alone flips ~0.5% of greedy tokens that are near-ties.
  const bool int_format = options.matrix_dtype && (*options.matrix_dtype == kernels::DType::kI8 ||
                                                   *options.matrix_dtype == kernels::DType::kI4);
  WeightLoader head_loader(checkpoint, w.get(),
                           int_format && !options.quantize_head ? std::nullopt : options.matrix_dtype,
                           options.matrix_group_size);
  head_loader.set_progress(options.progress);
  head_loader.share_files_seen(loader);
  head_loader.set_pool(load_pool, read_threads);
  // Routed experts over LoadOptions::expert_memory_bytes stay on disk (expert_streaming.cc).
  auto stream = w->ExpertsOverBudget(checkpoint, opt);
  if (!stream.ok()) return stream.status();
  const int64_t begin = std::max<int64_t>(0, options.layer_begin);
  const int64_t end = options.layer_end < 0 ? c.num_weight_layers() : std::min(options.layer_end, c.num_weight_layers());
  LayerReadAhead read_ahead(checkpoint, opt, *stream, options.read_ahead);
  read_ahead.AdviseHead();
  if (begin < end) read_ahead.AdviseLayer(begin);
  if (options.load_embedding) GLM_ASSIGN_OR_RETURN(w->embed_tokens_, head_loader.Matrix("model.embed_tokens.weight"));
  if (options.load_head) {
    GLM_ASSIGN_OR_RETURN(w->final_norm_, loader.Vector("model.norm.weight"));
    // Tied: the embedding, as transformers ties it after loading (a stored lm_head is not read).
    if (c.tie_word_embeddings) {
      GLM_ASSIGN_OR_RETURN(w->lm_head_, head_loader.SlicedMatrix("model.embed_tokens.weight", opt.vocab_begin,
                                                                 opt.vocab_end, 0, c.hidden_size));
    } else {
      GLM_ASSIGN_OR_RETURN(w->lm_head_, head_loader.SlicedMatrix("lm_head.weight", opt.vocab_begin, opt.vocab_end, 0,
                                                                 c.hidden_size));
    }
  }
  w->layers_.resize(c.num_weight_layers());
  LoadOptions layer_opt = opt;
  if (*stream) layer_opt.owns_expert = [](int64_t, int64_t) { return false; };
  for (int64_t l = begin; l < end; ++l) {
    // The disk reads layer l + 1 while this one is read from the page cache and converted.
    if (l + 1 < end) read_ahead.AdviseLayer(l + 1);
    if (auto s = LoadLayer(loader, c, l, layer_opt, &w->layers_[l]); !s.ok()) return s;
  }
  w->ShareMtpHeadWithLmHead();
  if (options.progress) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    const int64_t read = loader.bytes_read() + head_loader.bytes_read();
    options.progress(absl::StrCat("loaded ", w->bytes_loaded_ >> 20, " MiB (",
                                  LayerRangeText(begin, end, c.num_hidden_layers),
                                  absl::StrFormat(") in %.2f s: %d MiB of the checkpoint read at %.2f GB/s by %d %s",
                                                  seconds, read >> 20, read / std::max(seconds, 1e-9) / 1e9,
                                                  read_threads, read_threads == 1 ? "thread" : "threads")));
  }
  if (auto s = w->SetUpExpertStore(checkpoint, opt, *stream); !s.ok()) return s;
  return w;
}

namespace {

// Whether two views hold the same values in the same layout (elements and scales, byte for byte).
bool SameMatrix(const WeightView& a, const WeightView& b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols || a.row_offset != b.row_offset ||
      a.group_size != b.group_size || a.block_rows != b.block_rows || a.block_cols != b.block_cols ||
      a.scale_cols != b.scale_cols || a.data == nullptr || b.data == nullptr)
    return false;
  if (std::memcmp(a.data, b.data, static_cast<size_t>(a.rows * a.row_bytes())) != 0) return false;
  if ((a.group_scales == nullptr) != (b.group_scales == nullptr) ||
      (a.block_scales == nullptr) != (b.block_scales == nullptr))
    return false;
  if (a.group_scales != nullptr &&
      std::memcmp(a.group_scales, b.group_scales, static_cast<size_t>(a.rows * a.groups_per_row()) * sizeof(uint16_t)) != 0)
    return false;
  if (a.block_scales != nullptr) {
    const int64_t block_row_count = (a.row_offset + a.rows + a.block_rows - 1) / a.block_rows;
    if (std::memcmp(a.block_scales, b.block_scales, static_cast<size_t>(block_row_count * a.scale_cols) * sizeof(float)) != 0)
      return false;
  }
  return true;
}

}  // namespace

void ModelWeights::ShareMtpHeadWithLmHead() {
  // GLM-5 / DeepSeek-style checkpoints store the MTP layer's shared_head.head as a copy of
  // lm_head (the fixtures do too). When the copy is exact, the MTP head reads lm_head's memory:
  // a vocabulary x hidden matrix less per last-stage rank (1.9 GB of BF16 for GLM-5), and the
  // draft step finds the head already in cache. Values are identical, so nothing else changes.
  if (!config_.has_mtp() || lm_head_.data == nullptr) return;
  const int64_t l = config_.num_hidden_layers;
  if (l >= static_cast<int64_t>(layers_.size())) return;
  WeightView& head = layers_[l].mtp.head;
  if (head.data == nullptr || head.data == lm_head_.data || !SameMatrix(head, lm_head_)) return;
  for (const void* p : {head.data, static_cast<const void*>(head.group_scales), static_cast<const void*>(head.block_scales)}) {
    if (p == nullptr) continue;
    for (auto it = buffers_.begin(); it != buffers_.end(); ++it)
      if (it->data() == p) {
        bytes_loaded_ -= it->size();
        buffers_.erase(it);
        break;
      }
  }
  head = lm_head_;
}

absl::StatusOr<LoadedExpert> ModelWeights::LoadExpert(const Checkpoint& checkpoint, const LoadOptions& options,
                                                      int64_t layer, int64_t expert) {
  const ModelConfig& c = checkpoint.config();
  ModelWeights scratch;  // collects the buffers the loader keeps
  WeightLoader loader(checkpoint, &scratch, options.matrix_dtype, options.matrix_group_size, options.quantize_scope);
  loader.set_simulate_rows(options.simulate_rows);
  loader.set_calibration(options.calibration);
  loader.set_quantize_only(options.quantize_only);
  loader.set_direct_io(options.expert_direct_io);
  const std::string prefix = absl::StrCat(LayerPrefix(layer), "mlp.experts.", expert, ".");
  if (layer < 0 || layer >= c.num_weight_layers() || c.mlp_kind(layer) != MlpKind::kSparse || expert < 0 ||
      expert >= c.n_routed_experts || !loader.Present(prefix + "gate_proj.weight"))
    return absl::NotFoundError(absl::StrCat(checkpoint.dir(), ": no routed expert ", expert, " in layer ", layer));
  LoadedExpert out;
  const int64_t slice_end = options.expert_slice_end < 0 ? c.moe_intermediate_size : options.expert_slice_end;
  if (options.expert_slice_begin < 0 || options.expert_slice_begin > slice_end || slice_end > c.moe_intermediate_size)
    return absl::InvalidArgumentError(absl::StrCat("expert slice [", options.expert_slice_begin, ", ", slice_end,
                                                   ") outside [0, ", c.moe_intermediate_size, ")"));
  if (auto s = LoadMlp(loader, prefix, c.hidden_size, c.moe_intermediate_size, options.expert_slice_begin, slice_end,
                       &out.weights);
      !s.ok())
    return s;
  out.buffers = std::move(scratch.buffers_);
  out.read_direct = options.expert_direct_io && loader.all_reads_direct();
  // The bytes this load read, not the tensors' sizes: a slice of an expert (expert-tensor-
  // parallel) reads its rows of gate/up and every row of down, and counting whole tensors
  // reported twice the disk traffic at 4 ranks.
  out.file_bytes = loader.bytes_read();
  return out;
}

#undef GLM_ASSIGN_OR_RETURN
#undef GLM_ASSIGN_OR_RETURN_

}  // namespace glm::model
