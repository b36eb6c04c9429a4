// The ports a coordinator started with `--grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0`
// binds and logs ("[coordinator] gRPC on 127.0.0.1:0 (port 41235)"), read from its log file.
#ifndef GLM_TESTS_E2E_LOGGED_PORTS_H_
#define GLM_TESTS_E2E_LOGGED_PORTS_H_

#include <cstdlib>
#include <fstream>
#include <string>

namespace glm {

// Sets *grpc_port / *http_port to the ports the log names so far (left as they are otherwise).
inline void ReadLoggedPorts(const std::string& log, int* grpc_port, int* http_port) {
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto port_of = [&](const char* prefix) {
      if (line.find(prefix) == std::string::npos) return 0;
      auto p = line.find("(port ");
      return p == std::string::npos ? 0 : std::atoi(line.c_str() + p + 6);
    };
    if (int p = port_of("[coordinator] gRPC on")) *grpc_port = p;
    if (int p = port_of("[coordinator] HTTP on")) *http_port = p;
  }
}

}  // namespace glm

#endif  // GLM_TESTS_E2E_LOGGED_PORTS_H_
