#include "bench/kernel_settings.h"

#include "shard_worker/kernels/matmul.h"
#include "shard_worker/kernels/matmul_amx.h"
#include "shard_worker/kernels/matmul_simd_driver.h"
#include "shard_worker/model/step_path_chooser.h"

namespace glm::bench {

std::string ApplyKernelSettings(const KernelSettings& settings) {
  bool bf16 = false;
  if (!kernels::ParseActivationDType(settings.activation_dtype, &bf16))
    return "--activation-dtype must be f32 or bf16";
  if (!settings.token_groups.empty()) {
    model::TokenGroupMode mode;
    if (!model::ParseTokenGroupMode(settings.token_groups, &mode)) return "--token-groups must be auto, never or always";
    model::SetTokenGroupMode(mode);
  }
  if (std::string err = kernels::SelectMatMulPath(settings.matmul_path); !err.empty()) return err;
  kernels::SetBf16Activations(bf16);
  kernels::SetAmxTilesEnabled(settings.amx_tiles);
  kernels::SetMinGemmTokensOverride(settings.min_gemm_tokens);
  return "";
}

}  // namespace glm::bench
