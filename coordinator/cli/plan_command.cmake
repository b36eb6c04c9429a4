# glm_plan_command: `glmctl plan` (include()d from coordinator/cli/CMakeLists.txt; paths are
# relative to this file so tests may include it too).
if(NOT TARGET glm_plan_command)
  add_library(glm_plan_command STATIC ${CMAKE_CURRENT_LIST_DIR}/plan_command.cc)
  target_link_libraries(glm_plan_command PUBLIC glm_placement glm_numa glm_model absl::status absl::statusor
                        PRIVATE absl::strings)
endif()
