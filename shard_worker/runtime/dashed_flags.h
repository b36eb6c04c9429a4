// Lets every binary accept `--max-new-tokens` as well as abseil's `--max_new_tokens`: the
// documented command lines use dashes. Rewrites the flag name part of each `--name[=value]`
// argument in place (values are left alone; a bare `--` ends flag parsing). `--no-name` (the
// argparse / vLLM spelling of a false boolean, `--no-enable-prefix-caching`) becomes abseil's
// `--noname`; no flag of ours has a name starting with "no_". A value given as the next argument
// (`--stop -- ...`, `--prompt --x-y`: a defined flag that is not a boolean, without `=`) is a
// value, as abseil reads it: left alone, even when it starts with dashes.
#ifndef GLM_SHARD_WORKER_RUNTIME_DASHED_FLAGS_H_
#define GLM_SHARD_WORKER_RUNTIME_DASHED_FLAGS_H_

#include <cstring>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"

namespace glm::runtime {

inline void NormalizeDashedFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-') continue;
    char* name = arg + (arg[1] == '-' ? 2 : 1);
    if (arg[1] == '-') {
      if (std::strncmp(name, "no-", 3) == 0 && name[3] != '\0' && name[3] != '=')
        std::memmove(name + 2, name + 3, std::strlen(name + 3) + 1);  // "--no-x" -> "--nox"
      for (char* p = name; *p != '\0' && *p != '='; ++p)
        if (*p == '-') *p = '_';
    }
    if (std::strchr(name, '=') != nullptr) continue;
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag != nullptr && !flag->IsOfType<bool>()) ++i;  // the next argument is its value
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
