# Included from bench/CMakeLists.txt: the bandwidth probe library and bin/matmul_bench (plain
# executable, no Google Benchmark: it compares every matmul path with the probe of the same run
# and must finish in seconds).
add_library(glm_bench_util STATIC ${CMAKE_CURRENT_LIST_DIR}/bandwidth_probe.cc)
target_link_libraries(glm_bench_util PUBLIC glm_kernels)

add_executable(matmul_bench ${CMAKE_CURRENT_LIST_DIR}/matmul_bench.cc)
target_link_libraries(matmul_bench PRIVATE glm_bench_util glm_kernels glm_model)
