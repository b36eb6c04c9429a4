#include "coordinator/api/client_connection.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdlib>

namespace glm::api {
namespace {

// The numeric host and port of an address, as cpp-httplib formats them (getnameinfo with
// NI_NUMERICHOST).
bool HostAndPort(const sockaddr_storage& addr, socklen_t len, std::string* host, int* port) {
  char buf[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, buf, sizeof(buf), nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  *host = buf;
  if (addr.ss_family == AF_INET)
    *port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  else if (addr.ss_family == AF_INET6)
    *port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  else
    return false;
  return true;
}

bool Matches(int fd, const std::string& local_addr, int local_port, const std::string& remote_addr,
             int remote_port) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  std::string host;
  int port = -1;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || !HostAndPort(addr, len, &host, &port) ||
      port != remote_port || host != remote_addr)
    return false;
  len = sizeof(addr);
  return getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && HostAndPort(addr, len, &host, &port) &&
         port == local_port && host == local_addr;
}

}  // namespace

std::optional<ClientConnection> ClientConnection::Find(const std::string& local_addr, int local_port,
                                                       const std::string& remote_addr, int remote_port) {
  if (local_port < 0 || remote_port < 0) return std::nullopt;
  // Only the open descriptors (a few dozen: HTTP and gRPC connections, MPI), not 0..RLIMIT_NOFILE.
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  std::optional<ClientConnection> found;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    if (Matches(static_cast<int>(fd), local_addr, local_port, remote_addr, remote_port)) {
      found = ClientConnection(static_cast<int>(fd));
      break;
    }
  }
  closedir(dir);
  return found;
}

bool ClientConnection::Closed() const {
  pollfd p{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;  // 0: end of stream; > 0: a next request
  }
  return false;
}

}  // namespace glm::api
