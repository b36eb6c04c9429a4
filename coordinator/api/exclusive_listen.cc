#include "coordinator/api/exclusive_listen.h"

#include <httplib.h>
#include <sys/socket.h>

#include "grpcpp/grpcpp.h"

namespace glm::api {

void ListenExclusively(grpc::ServerBuilder* builder) { builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0); }

void ListenExclusively(httplib::Server* server, std::shared_ptr<int> bound_socket) {
  server->set_socket_options([bound_socket](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (bound_socket != nullptr) *bound_socket = sock;  // the last one set up is the one bound
  });
}

bool SetListenBacklog(int sock, int backlog) { return sock >= 0 && listen(sock, backlog) == 0; }

}  // namespace glm::api
