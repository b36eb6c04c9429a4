#include "shard_worker/model/stored_expert_codes.h"

#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "shard_worker/kernels/quantize.h"
#include "shard_worker/model/checkpoint_layout.h"

namespace glm::model {
namespace {

// "int4 (groups of 32)" / "int8 (a scale a row)" (a group as wide as the row's cols).
std::string FormatText(kernels::DType dtype, int64_t group, int64_t cols = std::numeric_limits<int64_t>::max()) {
  return absl::StrCat(dtype == kernels::DType::kI8 ? "int8" : "int4",
                      group >= cols ? " (a scale a row)" : absl::StrCat(" (groups of ", group, ")"));
}

}  // namespace

absl::Status CheckExpertFormatRequest(const ModelConfig& config, std::optional<kernels::DType> convert_to,
                                      int64_t requested_group, bool experts_in_scope) {
  if (config.expert_quant_format.empty() || !convert_to) return absl::OkStatus();
  // Groups compared as the config writes them: a scale a row (-1) is a group as wide as any row.
  constexpr int64_t kAnyRow = std::numeric_limits<int64_t>::max();
  kernels::DType stored;
  int64_t stored_group = 0;
  StoredExpertFormat(config, kAnyRow, &stored, &stored_group);
  const std::string holds =
      absl::StrCat("the checkpoint's experts are stored pre-quantised as ", FormatText(stored, stored_group));
  if (!kernels::IsGroupQuantized(*convert_to))
    return absl::InvalidArgumentError(absl::StrCat(holds, "; they cannot be converted to ",
                                                   std::string(kernels::DTypeName(*convert_to)),
                                                   " (load the unquantised checkpoint for that)"));
  if (!experts_in_scope) return absl::OkStatus();
  const int64_t want = requested_group < 0   ? kAnyRow
                       : requested_group > 0 ? requested_group
                       : *convert_to == kernels::DType::kI8 ? kernels::kDefaultI8GroupSize
                                                            : kernels::kDefaultI4GroupSize;
  if (*convert_to != stored || want != stored_group)
    return absl::InvalidArgumentError(absl::StrCat(holds, "; ", FormatText(*convert_to, want),
                                                   " cannot be made from them (ask for the stored format, or load "
                                                   "the unquantised checkpoint)"));
  return absl::OkStatus();
}

bool HoldsStoredCodes(const Checkpoint& ckpt, const std::string& name) {
  if (ckpt.config().expert_quant_format.empty() || !IsExpertMatrix(name)) return false;
  const auto loc = ckpt.Find(name);
  return loc.info != nullptr && (loc.info->dtype == "I8" || loc.info->dtype == "U8");
}

absl::Status CheckStoredCodesRequest(const Checkpoint& ckpt, const std::string& name,
                                     std::optional<kernels::DType> convert_to, int64_t requested_group,
                                     bool in_quantize_scope, bool simulating) {
  if (simulating && in_quantize_scope)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is stored pre-quantised; a simulated format ",
                                                   "needs the unquantised checkpoint"));
  absl::Status s = CheckExpertFormatRequest(ckpt.config(), convert_to, requested_group, in_quantize_scope);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("tensor '", name, "': ", s.message()));
}

namespace {

// The F16 group scales a writer produces are finite (negative ones are legitimate: the sign
// puts a group's largest magnitude on int4's code -8); a NaN or infinite one is a corrupt file
// that would turn every logit into NaN without an error. scales: [rows, groups], row r of the
// slice is row `first_row + r`.
absl::Status CheckScales(const std::string& name, const uint16_t* scales, int64_t rows, int64_t groups,
                         int64_t first_row) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* row = scales + r * groups;
    bool bad = false;
    for (int64_t g = 0; g < groups; ++g) bad |= (row[g] & 0x7c00) == 0x7c00;  // exponent all ones: inf, NaN
    if (!bad) continue;
    for (int64_t g = 0; g < groups; ++g)
      if ((row[g] & 0x7c00) == 0x7c00)
        return absl::DataLossError(absl::StrCat("tensor '", QuantScaleName(name), "' holds a ",
                                                (row[g] & 0x03ff) != 0 ? "NaN" : "infinite", " scale (F16 0x",
                                                absl::Hex(row[g], absl::kZeroPad4), ") at row ", first_row + r,
                                                ", group ", g, ": the checkpoint is corrupt (re-run glmctl quantize)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StoredCodes> ReadStoredCodes(const Checkpoint& ckpt, const std::string& name, int64_t rb, int64_t re,
                                            int64_t cb, int64_t ce, const TensorReader& read) {
  const ModelConfig& c = ckpt.config();
  const auto loc = ckpt.Find(name);
  const auto scale_loc = ckpt.Find(QuantScaleName(name));
  if (loc.info == nullptr || scale_loc.info == nullptr)
    return absl::NotFoundError(absl::StrCat("pre-quantised tensor '", name, "' or its scales are missing"));
  const int64_t rows = loc.info->shape[0], cols = ExpertMatrixCols(c, name);
  kernels::DType dtype;
  int64_t group = 0;
  StoredExpertFormat(c, cols, &dtype, &group);
  if (rb < 0 || re > rows || rb > re || cb < 0 || ce > cols || cb > ce)
    return absl::InvalidArgumentError(absl::StrCat("slice of '", name, "' outside its shape"));
  const bool int4 = dtype == kernels::DType::kI4;
  if (cb % group != 0 || (int4 && cb % 32 != 0))
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' is stored pre-quantised as ", FormatText(dtype, group, cols), ": a slice of its columns must start on ",
        int4 ? "a group and a 32-column block" : "a group", ", this one starts at column ", cb,
        " (place the experts whole, or with a rank count that splits them there)"));
  const int64_t stored_row_bytes = kernels::DTypeRowBytes(dtype, cols);
  const int64_t stored_groups = kernels::QuantGroupsPerRow(cols, group);
  StoredCodes out;
  kernels::WeightView& v = out.view;
  v.dtype = dtype;
  v.rows = re - rb;
  v.cols = ce - cb;
  v.group_size = group;
  const int64_t row_bytes = v.row_bytes(), groups = v.groups_per_row(), first_group = cb / group;
  out.codes = AlignedBuffer(std::max<int64_t>(1, v.rows * row_bytes));
  out.scales = AlignedBuffer(std::max<int64_t>(1, v.rows * groups * int64_t{sizeof(uint16_t)}));
  if (!out.codes.valid() || !out.scales.valid())
    return absl::ResourceExhaustedError(absl::StrCat("out of memory loading tensor '", name, "'"));
  auto* codes = static_cast<uint8_t*>(out.codes.data());
  auto* scales = static_cast<uint16_t*>(out.scales.data());
  if (cb == 0 && ce == cols) {  // whole rows: one read each
    if (auto s = read(loc, rb * stored_row_bytes, v.rows * stored_row_bytes, codes); !s.ok()) return s;
    if (auto s = read(scale_loc, rb * stored_groups * 2, v.rows * stored_groups * 2, scales); !s.ok()) return s;
  } else {
    // Read the row band, keep the window: int8 one byte a column; int4 whole 32-column blocks of
    // 16 bytes, the nibbles of columns past the slice's end (its last block) set to code 0.
    std::vector<uint8_t> band(static_cast<size_t>(v.rows * stored_row_bytes));
    std::vector<uint16_t> band_scales(static_cast<size_t>(v.rows * stored_groups));
    if (auto s = read(loc, rb * stored_row_bytes, static_cast<int64_t>(band.size()), band.data()); !s.ok()) return s;
    if (auto s = read(scale_loc, rb * stored_groups * 2, static_cast<int64_t>(band_scales.size() * 2), band_scales.data());
        !s.ok())
      return s;
    const int64_t first_byte = int4 ? cb / 32 * 16 : cb;
    for (int64_t r = 0; r < v.rows; ++r) {
      uint8_t* dst = codes + r * row_bytes;
      std::memcpy(dst, band.data() + r * stored_row_bytes + first_byte, static_cast<size_t>(row_bytes));
      if (int4 && v.cols % 32 != 0) {
        uint8_t* last = dst + row_bytes - 16;  // the slice's last block: columns [tail, 32) are past its end
        const int64_t tail = v.cols % 32;
        for (int64_t j = 0; j < 16; ++j) {
          const uint8_t lo = j < tail ? (last[j] & 0x0f) : 8, hi = j + 16 < tail ? (last[j] >> 4) : 8;
          last[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
      std::memcpy(scales + r * groups, band_scales.data() + r * stored_groups + first_group,
                  static_cast<size_t>(groups) * sizeof(uint16_t));
    }
  }
  if (auto s = CheckScales(name, scales, v.rows, groups, rb); !s.ok()) return s;
  v.data = out.codes.data();
  v.group_scales = scales;
  return out;
}

}  // namespace glm::model
