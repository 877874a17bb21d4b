// A wdev as an NBD backend: writes, trims and flushes go to its write path (wdev.hpp), which logs them into
// the ldev before they reach the ddev; reads are served on the calling thread.
#pragma once
#include <memory>

#include "core/nbd_backend.hpp"
#include "core/wdev.hpp"

namespace walb {

class WdevNbdBackend : public NbdBackend {
public:
    explicit WdevNbdBackend(std::shared_ptr<Wdev> dev) : dev_(std::move(dev)) {}
    uint64_t size() override { return dev_->sizeBytes(); }
    bool readOnly() const override { return false; }
    void read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
              bool more) override;
    void write(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua, const IoTarget& target,
               bool more) override {
        dev_->submitWrite(id, offset, std::move(data), fua, target, !more);
    }
    void flush(uint64_t id, const IoTarget& target, bool more) override {
        dev_->submitFlush(id, target, !more);
    }
    // A wdev logs both as discard records: the range reads back as zeros afterwards.
    void trim(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
              bool more) override {
        dev_->submitDiscard(id, offset, length, fua, target, !more);
    }
    void writeZeroes(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                     bool more) override {
        dev_->submitDiscard(id, offset, length, fua, target, !more);
    }
    void kick() override { dev_->wakeLogger(); }

private:
    std::shared_ptr<Wdev> dev_;
};

}  // namespace walb
