// A restorable snapshot (snapshot_image.hpp) as a read-only NBD backend: the archive's `walbc export`
// (docs/servers.md §6.10). Reads run on a few worker threads of their own, so that a client's pipelined
// requests are read in parallel; write-type requests never arrive (the wire refuses them on a read-only
// backend with EPERM) and flush has nothing to do.
//
// Threads: any number of submitters, `threads` workers. mu_ guards the queue and `stopping_`; the image is
// read without a lock (SnapshotImage::read is thread-safe). The owner calls stop() on its own thread before
// it lets go: connections may hold the last reference, and a worker cannot join itself.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/nbd_backend.hpp"
#include "core/snapshot_image.hpp"

namespace walb {

class NbdSnapshotBackend : public NbdBackend {
public:
    NbdSnapshotBackend(std::shared_ptr<const SnapshotImage> image, uint32_t threads);
    ~NbdSnapshotBackend() override { stop(); }
    // Ends the workers; reads still queued, and any submitted later, complete with ESHUTDOWN.
    void stop();
    NbdSnapshotBackend(const NbdSnapshotBackend&) = delete;
    NbdSnapshotBackend& operator=(const NbdSnapshotBackend&) = delete;

    const SnapshotImage& image() const { return *image_; }
    uint64_t size() override { return image_->sizeBytes(); }
    bool readOnly() const override { return true; }
    void read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
              bool more) override;
    void write(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua, const IoTarget& target,
               bool more) override;
    void flush(uint64_t id, const IoTarget& target, bool more) override;
    void trim(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
              bool more) override;
    void writeZeroes(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                     bool more) override;

private:
    struct Item {
        uint64_t id, offset;
        std::shared_ptr<IoBuffer> out;
        IoTarget target;
    };
    void workerLoop();

    std::shared_ptr<const SnapshotImage> image_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::vector<std::thread> workers_;
};

}  // namespace walb
