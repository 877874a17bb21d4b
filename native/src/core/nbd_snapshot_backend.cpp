#include "core/nbd_snapshot_backend.hpp"

#include <exception>

#include "core/error.hpp"
#include "core/nbd_request.hpp"

namespace walb {

NbdSnapshotBackend::NbdSnapshotBackend(std::shared_ptr<const SnapshotImage> image, uint32_t threads)
    : image_(std::move(image)) {
    if (threads == 0 || threads > 64) throwError(ErrorCode::InvalidArgument, "threads must be 1..64");
    for (uint32_t i = 0; i < threads; i++) workers_.emplace_back([this] { workerLoop(); });
}

void NbdSnapshotBackend::stop() {
    std::deque<Item> left;
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
        left.swap(queue_);
    }
    cv_.notify_all();
    for (auto& t : workers_)
        if (t.joinable()) t.join();
    for (auto& item : left) item.target->ioDone(item.id, nbd::kEshutdown);
}

void NbdSnapshotBackend::read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out,
                              const IoTarget& target, bool) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (!stopping_) {
            queue_.push_back({id, offset, std::move(out), target});
            cv_.notify_one();
            return;
        }
    }
    target->ioDone(id, nbd::kEshutdown);
}

// The wire never sends write-type requests to a read-only backend; answer them as it would.
void NbdSnapshotBackend::write(uint64_t id, uint64_t, std::shared_ptr<IoBuffer>, bool, const IoTarget& target,
                               bool) {
    target->ioDone(id, nbd::kEperm);
}

void NbdSnapshotBackend::flush(uint64_t id, const IoTarget& target, bool) { target->ioDone(id, 0); }

void NbdSnapshotBackend::trim(uint64_t id, uint64_t, uint64_t, bool, const IoTarget& target, bool) {
    target->ioDone(id, nbd::kEperm);
}

void NbdSnapshotBackend::writeZeroes(uint64_t id, uint64_t, uint64_t, bool, const IoTarget& target, bool) {
    target->ioDone(id, nbd::kEperm);
}

void NbdSnapshotBackend::workerLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        Item item = std::move(queue_.front());
        queue_.pop_front();
        lk.unlock();
        try {
            image_->read(item.offset, item.out->size(), item.out->data());
            item.target->ioDone(item.id, 0);
        } catch (const std::exception& e) {
            item.target->ioFailed(item.id, nbd::kEio, e.what());
        }
        item = Item{};
        lk.lock();
    }
}

}  // namespace walb
