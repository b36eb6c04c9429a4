// The process-wide kernel settings the model benchmarks take as flags (--activation-dtype,
// --amx-tiles, --token-groups, --matmul-path, --min-gemm-tokens), checked and applied in one place so every
// benchmark accepts the same values and names the same flag when one is wrong.
#ifndef GLM_BENCH_KERNEL_SETTINGS_H_
#define GLM_BENCH_KERNEL_SETTINGS_H_

#include <cstdint>
#include <string>

namespace glm::bench {

struct KernelSettings {
  std::string activation_dtype = "f32";  // f32 | bf16
  std::string token_groups;              // auto | never | always; empty: leave the default (auto)
  std::string matmul_path = "auto";      // auto | a path this CPU supports
  int32_t min_gemm_tokens = 0;           // 0: each path's own crossover
  bool amx_tiles = true;                 // BF16 activations on AMX tiles where the CPU has them
};

// Applies `settings`; returns "" or what is wrong, naming the flag.
std::string ApplyKernelSettings(const KernelSettings& settings);

}  // namespace glm::bench

#endif  // GLM_BENCH_KERNEL_SETTINGS_H_
