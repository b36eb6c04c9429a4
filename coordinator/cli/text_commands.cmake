# Included from coordinator/cli/CMakeLists.txt: the tokenize / detokenize / render-chat
# subcommands of glmctl as a library (the main owns flag parsing and printing).
add_library(glm_text_commands STATIC ${CMAKE_CURRENT_LIST_DIR}/text_commands.cc)
target_link_libraries(glm_text_commands PUBLIC glm_tokenizer absl::status absl::statusor
                      absl::strings nlohmann_json::nlohmann_json)
