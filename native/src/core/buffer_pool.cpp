#include "core/buffer_pool.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>

namespace walb {

namespace {

// Large buffers left by pools that are gone, for the next pools of the process (the next merge, conversion or
// redo): a fresh buffer costs a page fault and a zero fill per 4 KiB, about as much as the pread that then
// fills it. At most kMaxBytes are kept.
class IdleBuffers {
public:
    static constexpr size_t kMaxBytes = 64u << 20;
    void put(std::shared_ptr<Bytes> b) {
        std::lock_guard<std::mutex> lk(mu_);
        if (bytes_ + b->size() > kMaxBytes) return;
        bytes_ += b->size();
        bufs_.push_back(std::move(b));
    }
    // The smallest idle buffer of at least `size` bytes, or null.
    std::shared_ptr<Bytes> take(size_t size) {
        std::lock_guard<std::mutex> lk(mu_);
        size_t best = bufs_.size();
        for (size_t i = 0; i < bufs_.size(); i++) {
            if (bufs_[i]->size() >= size && (best == bufs_.size() || bufs_[i]->size() < bufs_[best]->size()))
                best = i;
        }
        if (best == bufs_.size()) return nullptr;
        auto b = std::move(bufs_[best]);
        bufs_.erase(bufs_.begin() + static_cast<std::ptrdiff_t>(best));
        bytes_ -= b->size();
        return b;
    }

private:
    std::mutex mu_;
    std::vector<std::shared_ptr<Bytes>> bufs_;
    size_t bytes_ = 0;
};

IdleBuffers& idleBuffers() {
    static auto* idle = new IdleBuffers;  // never destroyed: pools may outlive static destruction
    return *idle;
}

size_t roundedSize(size_t size) {
    const size_t unit = size <= (1u << 20) ? (64u << 10) : (1u << 20);
    return (size + unit - 1) / unit * unit;
}

}  // namespace

BufferPool::~BufferPool() {
    for (auto& b : bufs_) {
        if (b.use_count() == 1 && b->size() >= kIdleMinBytes) idleBuffers().put(std::move(b));
    }
}

std::shared_ptr<Bytes> BufferPool::acquire(size_t size) {
    for (auto& b : bufs_) {
        if (b.use_count() == 1) {
            // Whoever dropped the last other reference (maybe on another thread) is done with the bytes.
            std::atomic_thread_fence(std::memory_order_acquire);
            if (b->size() < size) {
                // Grow only, without keeping the contents: shrinking and regrowing would zero-fill again.
                const size_t grown = roundedSize(std::max(size, b->size() + b->size() / 2));
                Bytes().swap(*b);
                b->resize(grown);
            }
            return b;
        }
    }
    std::shared_ptr<Bytes> b;
    if (size >= kIdleMinBytes) b = idleBuffers().take(size);
    if (!b) b = std::make_shared<Bytes>(roundedSize(size));
    if (bufs_.size() < slots_) bufs_.push_back(b);
    return b;
}

}  // namespace walb
