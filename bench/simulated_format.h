// Weight formats no kernel has, simulated for quality studies (quant_quality_bench): every row of
// a matrix goes through a quantise-dequantise round trip and the engine runs on the F32 result,
// so the model's quality with that format can be measured before anyone writes its kernels.
//
// "sim-int<B>[-g<G>]": symmetric round-to-nearest with B bits (2..8; codes -2^(B-1) .. 2^(B-1)-1),
// one F16 scale per G columns (default 32), the scale picked from clipped candidates by least
// squared error — the recipe of the product's int4 (kernels/quantize.cc) at any bit width.
// sim-int4 gives exactly the values int4 stores (bench/simulated_format_test), so sim-int5 and
// sim-int6 show what one or two more bits per weight would buy.
//
// "sim-uint<B>[-g<G>]": asymmetric, w ≈ s·q + m with q in 0 .. 2^B - 1 and an f16 scale s and
// offset m a group (16 more bits a group than sim-int<B>): the range [min, max] shrunk by 0-22%,
// each candidate refined by least-squares fits of (s, m) to its codes, the least squared error kept.
#ifndef GLM_BENCH_SIMULATED_FORMAT_H_
#define GLM_BENCH_SIMULATED_FORMAT_H_

#include <cstdint>
#include <string_view>

namespace glm::bench {

struct SimulatedFormat {
  int bits = 4;
  int64_t group_size = 32;
  bool asymmetric = false;  // "sim-uint<B>": w ≈ s·q + m, q in 0 .. 2^B - 1, f16 s and m a group
  // "-r" / "-r<N>": rows rotated before quantisation (and back after) by a randomised Hadamard
  // transform over blocks of N columns (N a power of two; "-r": the largest power of two up to
  // 4096 that divides the row). The engine would apply the same orthogonal transform to the
  // activations online, so only the quantisation error changes: it shows what incoherence
  // processing (QuaRot, QuIP#) buys before any kernel exists. 0: no rotation.
  int64_t rotation_block = 0;
  bool rotate_full_rows = false;
};

// Parses "sim-int<B>" / "sim-uint<B>", optionally "-g<G>" (G a positive multiple of 32) and "-r[<N>]"; false otherwise.
bool ParseSimulatedFormat(std::string_view name, SimulatedFormat* format);

// Replaces row[0, cols) by its round trip through `format`.
void SimulateRow(const SimulatedFormat& format, float* row, int64_t cols);

}  // namespace glm::bench

#endif  // GLM_BENCH_SIMULATED_FORMAT_H_
