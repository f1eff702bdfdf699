// io.twofactor.Maintenance: key rotation and online backup (issue 5).
#include "server/server_impl.hpp"

namespace twofactor::server::detail {

void Server::addMaintenanceMethods() {}

}  // namespace twofactor::server::detail
