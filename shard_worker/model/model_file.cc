#include "shard_worker/model/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace glm::model {

absl::StatusOr<std::string> ReadModelFile(const std::string& path, int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO with no writer returns at once (fstat then refuses it) instead of
  // waiting for a writer forever; it changes nothing for a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  if (st.st_size > max_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", st.st_size, " bytes, more than the ", max_bytes, " such a file may have"));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::pread(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return absl::DataLossError(absl::StrCat("cannot read ", path, n < 0 ? absl::StrCat(": ", std::strerror(errno)) : ""));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return text;
}

absl::Status CheckJsonNesting(absl::string_view text, int max_depth, absl::string_view what) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return absl::InvalidArgumentError(absl::StrCat(what, ": JSON nested deeper than ", max_depth, " levels"));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // unbalanced text is the parser's to refuse
    }
  }
  return absl::OkStatus();
}

}  // namespace glm::model
