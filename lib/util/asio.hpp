// The daemon's one event-loop library is Boost.Asio (Beast, the HTTPS
// server, runs on it). The alias keeps the code reading as plain `asio::`.
#pragma once

#include <utility>  // boost/asio/awaitable.hpp (1.74) uses std::exchange without it

#include <boost/asio.hpp>

namespace asio = boost::asio;

namespace twofactor {
using error_code = boost::system::error_code;
}  // namespace twofactor
