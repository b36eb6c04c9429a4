// Lets every binary accept `--max-new-tokens` as well as abseil's `--max_new_tokens`: the
// documented command lines use dashes. Rewrites the flag name part of each `--name[=value]`
// argument in place (values are left alone; a bare `--` ends flag parsing). `--no-name` (the
// argparse / vLLM spelling of a false boolean, `--no-enable-prefix-caching`) becomes abseil's
// `--noname`; no flag of ours has a name starting with "no_".
#ifndef GLM_SHARD_WORKER_RUNTIME_DASHED_FLAGS_H_
#define GLM_SHARD_WORKER_RUNTIME_DASHED_FLAGS_H_

#include <cstring>

namespace glm::runtime {

inline void NormalizeDashedFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-' || arg[1] != '-') continue;
    if (std::strncmp(arg + 2, "no-", 3) == 0 && arg[5] != '\0' && arg[5] != '=')
      std::memmove(arg + 4, arg + 5, std::strlen(arg + 5) + 1);  // "--no-x" -> "--nox"
    for (char* p = arg + 2; *p != '\0' && *p != '='; ++p)
      if (*p == '-') *p = '_';
  }
}

// Whether flag `name` (underscores, as after NormalizeDashedFlags) is on the command line, as
// `--name`, `--name=V`, `-name` or `-name=V` before a bare `--`. For flags whose explicit value
// must be told from their default (this abseil keeps IsSpecifiedOnCommandLine private).
inline bool FlagOnCommandLine(int argc, char** argv, const char* name) {
  const size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-') continue;
    arg += arg[1] == '-' ? 2 : 1;
    if (std::strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=')) return true;
  }
  return false;
}

}  // namespace glm::runtime

#endif  // GLM_SHARD_WORKER_RUNTIME_DASHED_FLAGS_H_
