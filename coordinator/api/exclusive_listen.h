// Listening sockets that refuse a second server on the same address. gRPC and cpp-httplib both
// set SO_REUSEPORT by default: a second coordinator started on the same ports (a restart while
// the old one drains, two clusters configured alike on one host) then binds "successfully" and
// the kernel splits new connections between the two, so clients reach whichever, even another
// model. With these the second bind fails, and the coordinator says which address is in use.
// SO_REUSEADDR stays on, so a restart need not wait out the old connections' TIME_WAIT.
#ifndef GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_
#define GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_

namespace grpc {
class ServerBuilder;
}  // namespace grpc
namespace httplib {
class Server;
}  // namespace httplib

namespace glm::api {

void ListenExclusively(grpc::ServerBuilder* builder);
void ListenExclusively(httplib::Server* server);

}  // namespace glm::api

#endif  // GLM_COORDINATOR_API_EXCLUSIVE_LISTEN_H_
