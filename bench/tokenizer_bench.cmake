# Included from bench/CMakeLists.txt: builds bin/tokenizer_bench (plain executable, no Google
# Benchmark: it reports whole-text throughput and must run in seconds).
add_executable(tokenizer_bench ${CMAKE_CURRENT_LIST_DIR}/tokenizer_bench.cc)
target_link_libraries(tokenizer_bench PRIVATE glm_tokenizer nlohmann_json::nlohmann_json)
target_compile_definitions(tokenizer_bench PRIVATE GLM_SOURCE_DIR="${CMAKE_CURRENT_LIST_DIR}/..")
