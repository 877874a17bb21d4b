#include "core/nbd_wdev_backend.hpp"

#include <exception>

#include "core/nbd_request.hpp"

namespace walb {

void WdevNbdBackend::read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
                          bool more) {
    if (!more) dev_->wakeLogger();  // for the writes submitted before with `more`
    try {
        dev_->read(offset, out->size(), out->data());
    } catch (const std::exception& e) {
        target->ioFailed(id, nbd::kEio, e.what());
        return;
    }
    target->ioDone(id, 0);
}

}  // namespace walb
