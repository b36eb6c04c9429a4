#include "coordinator/api/exclusive_listen.h"

#include <httplib.h>
#include <sys/socket.h>

#include "grpcpp/grpcpp.h"

namespace glm::api {

void ListenExclusively(grpc::ServerBuilder* builder) { builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0); }

void ListenExclusively(httplib::Server* server) {
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

}  // namespace glm::api
