// Listening sockets that refuse a second server on the same address. gRPC and cpp-httplib both
// set SO_REUSEPORT by default: a second coordinator started on the same ports (a restart while
// the old one drains, two clusters configured alike on one host) then binds "successfully" and
// the kernel splits new connections between the two, so clients reach whichever, even another
// model. With these the second bind fails, and the coordinator says which address is in use.
// SO_REUSEADDR stays on, so a restart need not wait out the old connections' TIME_WAIT.
//
// cpp-httplib 0.11 also listens with a backlog of 5, so a burst of connects got resets and 1 s SYN
// retries: `bound_socket` (when given) records the socket it sets up, the one listening once
// bind_to_port succeeds, and SetListenBacklog gives it a longer queue (Linux takes a second
// listen() on a listening socket as its new backlog).
#ifndef GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_
#define GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_

#include <memory>

namespace grpc {
class ServerBuilder;
}  // namespace grpc
namespace httplib {
class Server;
}  // namespace httplib

namespace glm::api {

void ListenExclusively(grpc::ServerBuilder* builder);
void ListenExclusively(httplib::Server* server, std::shared_ptr<int> bound_socket = nullptr);
// False when `sock` is not a socket that can listen.
bool SetListenBacklog(int sock, int backlog);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_
