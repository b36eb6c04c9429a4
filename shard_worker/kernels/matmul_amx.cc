#include "shard_worker/kernels/matmul_amx.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/matmul_simd_driver.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define GLM_HAVE_AMX_BUILD 1
#endif

namespace glm::kernels {
namespace {

std::atomic<bool> g_amx_enabled{true};

#if GLM_HAVE_AMX_BUILD

#define GLM_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl")))

// Tile configuration and loads as inline assembly that tells the compiler what they read. GCC 12's
// _tile_loadconfig declares a read of 8 bytes only (so the rest of the 64-byte config could be
// dropped as dead stores) and its _tile_loadd none at all (a zero-padded copy could be dropped or
// reordered past the load). prefill_bench and decode_bench built by Debian's GCC 12 with them
// died without output on an AMX Xeon (and the config's stores were missing from the object
// code), where kernels built by GCC 13 ran. These name the whole config and clobber memory.
#define GLM_TILE_LOAD(tmm, base, stride)                                                              \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #tmm ::"r"(static_cast<const void*>(base)), "r"(static_cast<long>(stride)) \
                   : "memory")

constexpr int kTileRows = 16;         // rows of every tile (weights rows; column pairs for B)
constexpr int kStepCols = 32;         // BF16 columns a TDPBF16PS consumes: 64 bytes a row
constexpr int kBlockTokens = 16;      // tokens of a C / B tile
constexpr int64_t kBTileU16 = kTileRows * 32;  // uint16 in a B tile: 16 column pairs × 16 tokens × 2
constexpr int64_t kChunkTokens = 256;  // tokens whose activations stay cached while rows stream

// TILECFG, palette 1: tiles 0-3 C [16 rows][16 f32], 4-5 A [16 rows][32 bf16], 6-7 B [16 pairs][16
// tokens × 2 bf16]; every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

GLM_AMX void ConfigureTilesOnce() {
  thread_local bool configured = false;
  if (configured) return;
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTileRows;
  }
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
  configured = true;
}

uint64_t ReadXcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool DetectAmxBf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  if (!amx_bf16 || !amx_tile || !CpuSupportsAvx512Bf16Dot()) return false;
  if ((ReadXcr0() & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtileData = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtileData) == 0;
}

// Activations of `n` tokens (rows of x) as B tiles: for token block b and column step s, 16 rows
// (column pairs p) of 16 tokens × (bf16(x[t][32s + 2p]), bf16(x[t][32s + 2p + 1])), zero past the
// columns and the tokens. out: [blocks][steps][16][32] uint16.
void LayOutActivations(const float* x, int64_t n, int64_t x_stride, int64_t cols, int64_t steps, uint16_t* out) {
  const int64_t blocks = (n + kBlockTokens - 1) / kBlockTokens;
  thread_local std::vector<uint16_t> row_buf;
  row_buf.resize(steps * kStepCols);
  std::fill(out, out + blocks * steps * kBTileU16, uint16_t{0});
  for (int64_t t = 0; t < n; ++t) {
    ConvertF32ToBf16Avx512(x + t * x_stride, cols, row_buf.data());
    std::fill(row_buf.begin() + cols, row_buf.end(), uint16_t{0});
    uint32_t pairs[kTileRows];
    uint16_t* block = out + (t / kBlockTokens) * steps * kBTileU16;
    const int64_t lane = t % kBlockTokens;
    for (int64_t s = 0; s < steps; ++s) {
      std::memcpy(pairs, row_buf.data() + s * kStepCols, sizeof pairs);
      auto* tile = reinterpret_cast<uint32_t*>(block + s * kBTileU16);
      for (int p = 0; p < kTileRows; ++p) tile[p * kBlockTokens + lane] = pairs[p];
    }
  }
}

// Weights rows [r, r + n_rows) (n_rows <= 16), column step s, as an A tile: straight from the
// matrix when all 16 rows and 64 bytes are inside it, else copied into `pad` with zeros around.
const uint8_t* ATile(const uint8_t* base, int64_t row_bytes, int64_t r, int64_t n_rows, int64_t s, uint8_t* pad,
                     int64_t* stride) {
  const int64_t off = s * 64, bytes = std::min<int64_t>(64, row_bytes - off);
  if (n_rows == kTileRows && bytes == 64) {
    *stride = row_bytes;
    return base + r * row_bytes + off;
  }
  std::memset(pad, 0, kTileRows * 64);
  for (int64_t i = 0; i < n_rows; ++i) std::memcpy(pad + i * 64, base + (r + i) * row_bytes + off, bytes);
  *stride = 64;
  return pad;
}

// c [rows][kCTokens] into y (tokens [t0, t_end), rows [r0, r0 + n_rows)).
constexpr int64_t kCTokens = 2 * kBlockTokens;
void Scatter(const float (*c)[kCTokens], int64_t r0, int64_t n_rows, int64_t t0, int64_t t_end, float* y,
             int64_t y_stride) {
  for (int64_t t = 0; t < t_end - t0; ++t)
    for (int64_t i = 0; i < n_rows; ++i) y[(t0 + t) * y_stride + r0 + i] = c[i][t];
}

// Decode: rows [r0, r0 + n_rows) (n_rows <= 16) × one token block, one C tile. A tile load reads
// 16 rows a stride apart, so more rows per pass means more concurrent memory streams than the
// hardware prefetcher follows: on a 16-core Xeon with AMX, a 64 MiB BF16 GEMV ran at 179 GB/s on
// 16 threads with 16 rows a pass, 146 with 32 and 141 with 64 (software prefetch made each slower).
GLM_AMX void RunRowsTokens16(const uint8_t* base, int64_t row_bytes, int64_t steps, int64_t r0, int64_t n_rows,
                             const uint16_t* b_tiles, int64_t t0, int64_t t_end, float* y, int64_t y_stride) {
  alignas(64) uint8_t pad[kTileRows * 64];
  alignas(64) float c[kTileRows][kCTokens];
  _tile_zero(0);
  for (int64_t s = 0; s < steps; ++s) {
    int64_t stride = 0;
    GLM_TILE_LOAD(6, b_tiles + s * kBTileU16, 64);
    const uint8_t* a = ATile(base, row_bytes, r0, n_rows, s, pad, &stride);  // sets stride: before the load
    GLM_TILE_LOAD(4, a, stride);
    _tile_dpbf16ps(0, 4, 6);
  }
  _tile_stored(0, &c[0][0], kCTokens * sizeof(float));
  Scatter(c, r0, n_rows, t0, t_end, y, y_stride);
}

// Prefill: rows [r0, r0 + n_rows) (n_rows <= 32) × two token blocks (b_tiles and the next block's):
// C tiles 0/1 rows 0-15/16-31 of the first block, 2/3 of the second; every A and B tile feeds two
// TDPBF16PS. Each C lane sees the same instructions over the same column steps as in RunRowsTokens16,
// so a token's result does not depend on which of the two computed it.
GLM_AMX void RunRows32Tokens32(const uint8_t* base, int64_t row_bytes, int64_t steps, int64_t r0, int64_t n_rows,
                               const uint16_t* b_tiles, int64_t t0, int64_t t_end, float* y, int64_t y_stride) {
  alignas(64) uint8_t pad0[kTileRows * 64], pad1[kTileRows * 64];
  alignas(64) float c[2 * kTileRows][kCTokens];
  const int64_t rows0 = std::min<int64_t>(n_rows, kTileRows), rows1 = n_rows - rows0;
  const uint16_t* b0 = b_tiles;
  const uint16_t* b1 = b_tiles + steps * kBTileU16;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t s = 0; s < steps; ++s) {
    int64_t stride = 0;
    const uint8_t* a0 = ATile(base, row_bytes, r0, rows0, s, pad0, &stride);  // sets stride: before the load
    GLM_TILE_LOAD(4, a0, stride);
    GLM_TILE_LOAD(6, b0 + s * kBTileU16, 64);
    GLM_TILE_LOAD(7, b1 + s * kBTileU16, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(2, 4, 7);
    if (rows1 > 0) {
      const uint8_t* a1 = ATile(base, row_bytes, r0 + kTileRows, rows1, s, pad1, &stride);
      GLM_TILE_LOAD(5, a1, stride);
      _tile_dpbf16ps(1, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  constexpr int64_t kCStride = kCTokens * sizeof(float);
  _tile_stored(0, &c[0][0], kCStride);
  _tile_stored(1, &c[kTileRows][0], kCStride);
  _tile_stored(2, &c[0][kBlockTokens], kCStride);
  _tile_stored(3, &c[kTileRows][kBlockTokens], kCStride);
  Scatter(c, r0, n_rows, t0, t_end, y, y_stride);
}

#endif  // GLM_HAVE_AMX_BUILD

}  // namespace

bool CpuSupportsAmxBf16() {
#if GLM_HAVE_AMX_BUILD
  static const bool supported = DetectAmxBf16();
  return supported;
#else
  return false;
#endif
}

void SetAmxTilesEnabled(bool on) { g_amx_enabled.store(on); }
bool AmxTilesEnabled() { return g_amx_enabled.load(std::memory_order_relaxed); }

void MatMulRowsAmxBf16(const float* x, int64_t n_tokens, int64_t x_stride, const WeightView& w, int64_t row_begin,
                       int64_t row_end, float* y, int64_t y_stride) {
#if GLM_HAVE_AMX_BUILD
  if (n_tokens <= 0 || row_end <= row_begin) return;
  ConfigureTilesOnce();
  const int64_t cols = w.cols, row_bytes = cols * 2;
  const int64_t steps = std::max<int64_t>(1, (cols + kStepCols - 1) / kStepCols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  thread_local std::vector<float> b_buf;  // B tiles of one token chunk, as uint16
  for (int64_t c0 = 0; c0 < n_tokens; c0 += kChunkTokens) {
    const int64_t n = std::min(kChunkTokens, n_tokens - c0);
    const int64_t blocks = (n + kBlockTokens - 1) / kBlockTokens;
    auto* b_tiles = reinterpret_cast<uint16_t*>(AlignedScratch(b_buf, blocks * steps * kBTileU16 / 2));
    LayOutActivations(x + c0 * x_stride, n, x_stride, cols, steps, b_tiles);
    // Rows outside, token blocks inside: a slice of the weights is read from memory once per
    // chunk and from the caches for its other token blocks.
    const int64_t slice = 2 * kTileRows;
    for (int64_t r0 = row_begin; r0 < row_end; r0 += slice) {
      const int64_t n_rows = std::min<int64_t>(slice, row_end - r0);
      for (int64_t b = 0; b < blocks; b += 2) {
        const uint16_t* bt = b_tiles + b * steps * kBTileU16;
        const int64_t t0 = c0 + b * kBlockTokens;
        if (b + 1 < blocks) {
          RunRows32Tokens32(base, row_bytes, steps, r0, n_rows, bt, t0, std::min(t0 + 2 * kBlockTokens, c0 + n), y,
                            y_stride);
        } else {  // a lone (last) token block
          const int64_t t_end = std::min(t0 + kBlockTokens, c0 + n);
          for (int64_t r = r0; r < r0 + n_rows; r += kTileRows)
            RunRowsTokens16(base, row_bytes, steps, r, std::min<int64_t>(kTileRows, r0 + n_rows - r), bt, t0, t_end, y,
                            y_stride);
        }
      }
    }
  }
#else
  (void)x, (void)n_tokens, (void)x_stride, (void)w, (void)row_begin, (void)row_end, (void)y, (void)y_stride;
#endif
}

}  // namespace glm::kernels
