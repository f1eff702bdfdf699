// Idempotency keys, one protocol for Varlink's Send (idempotencyKey) and the
// HTTPS API's POSTs (Idempotency-Key): the first call with a key claims it;
// a retry with the same key and body within kIdempotencyWindow gets the first
// answer and sends nothing again; the same key with another body is refused;
// a key whose first call is still running is in use. The caller decides
// which first answers are kept: one another try could change (a rate limit,
// an outage) gives the key back.
#include "server/server_impl.hpp"

namespace twofactor::server::detail {

void Server::claimIdempotency(std::string keyId, std::string key, std::string bodyHash, std::int64_t now,
                              std::function<void(IdempotencyClaim, const store::IdempotencyRecord&)> next) {
    auto record = std::make_shared<std::optional<store::IdempotencyRecord>>();
    store_->submit(
        [record, keyId, key, bodyHash, now](store::Transaction& t) {
            *record = t.claimIdempotencyKey(keyId, key, bodyHash, now, now - kIdempotencyWindow);
        },
        [this, record, bodyHash, next = std::move(next)](std::exception_ptr e) {
            asio::post(io_, [e, record, bodyHash, next] {
                static const store::IdempotencyRecord none;
                if (e) return next(IdempotencyClaim::StoreFailed, none);
                if (!*record) return next(IdempotencyClaim::Fresh, none);
                const auto& first = **record;
                if (first.bodyHash != bodyHash) return next(IdempotencyClaim::Reused, first);
                if (first.status == 0) return next(IdempotencyClaim::InUse, first);
                next(IdempotencyClaim::Replay, first);
            });
        });
}

void Server::finishIdempotency(std::string keyId, std::string key, bool keep, int status, std::string response) {
    store_->submit(
        [keep, keyId = std::move(keyId), key = std::move(key), status, response = std::move(response)](
            store::Transaction& t) {
            if (keep) t.completeIdempotencyKey(keyId, key, status, response);
            else t.releaseIdempotencyKey(keyId, key);
        },
        [](std::exception_ptr e) {
            if (e) log::error("an idempotency key's first answer could not be stored");
        });
}

}  // namespace twofactor::server::detail
