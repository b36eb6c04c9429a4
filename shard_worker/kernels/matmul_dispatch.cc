#include "shard_worker/kernels/matmul_dispatch.h"

#include <mutex>

#include "shard_worker/kernels/matmul_avx2.h"
#include "shard_worker/kernels/matmul_avx512.h"
#include "shard_worker/kernels/matmul_portable.h"

namespace glm::kernels {

std::vector<MatMulPath> SupportedMatMulPaths() {
  std::vector<MatMulPath> paths;
#if defined(__x86_64__)
  // Fastest first; each SIMD path is compiled with function-level target attributes and only
  // listed when the CPU (and OS) supports its instructions.
  if (CpuSupportsAvx512MatMul()) paths.push_back({"avx512", &MatMulRowsAvx512});
  // avx512 with the FP8 decode of CPUs without VBMI, where avx512 uses byte tables.
  if (CpuSupportsAvx512Vbmi()) paths.push_back({"avx512_f16c_fp8", &MatMulRowsAvx512F16cFp8});
  if (CpuSupportsAvx2MatMul()) paths.push_back({"avx2", &MatMulRowsAvx2});
#endif
  paths.push_back({"portable", &MatMulRowsPortable});
  return paths;
}

namespace {
MatMulPath& Selected() {
  static MatMulPath selected = SupportedMatMulPaths().front();
  return selected;
}
}  // namespace

const MatMulPath& SelectedMatMulPath() { return Selected(); }

bool ForceMatMulPath(const std::string& name) {
  for (const auto& p : SupportedMatMulPaths()) {
    if (p.name == name) {
      Selected() = p;
      return true;
    }
  }
  return false;
}

}  // namespace glm::kernels
