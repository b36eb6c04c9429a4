// The TCP connection an HTTP request arrived on, found from its two addresses: cpp-httplib 0.11
// does not hand a handler its socket, and a non-streaming request writes nothing until the end,
// so without this it cannot notice that its client hung up (an agent harness timing out and
// retrying) and its generation would run to the length limit for nobody. vLLM cancels such
// requests too.
#ifndef GLM_COORDINATOR_API_CLIENT_CONNECTION_H_
#define GLM_COORDINATOR_API_CLIENT_CONNECTION_H_

#include <optional>
#include <string>

namespace glm::api {

class ClientConnection {
 public:
  // The open socket of this process whose local and peer addresses are these (numeric hosts as
  // cpp-httplib reports them in Request::local_addr / remote_addr); none when no socket matches.
  static std::optional<ClientConnection> Find(const std::string& local_addr, int local_port,
                                              const std::string& remote_addr, int remote_port);

  // Whether the client has closed the connection (end of stream or an error on the socket).
  // Never blocks and never consumes data (a pipelined next request stays for the server). A
  // client that only shuts down its sending side counts as gone, as with vLLM.
  bool Closed() const;

  int fd() const { return fd_; }

 private:
  explicit ClientConnection(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_CLIENT_CONNECTION_H_
