#include "core/nbd_file_backend.hpp"

#include <algorithm>
#include <exception>

#include "core/error.hpp"
#include "core/nbd_request.hpp"

namespace walb {

namespace {

bool matches(const NbdFileFault& f, const NbdFileCall& c) {
    if (!f.anyOp && f.op != c.op) return false;
    if (!f.hasRange) return true;
    if (c.op == NbdFileOp::Flush) return false;
    return c.offset < f.offset + std::min(f.length, UINT64_MAX - f.offset) && f.offset < c.offset + c.length;
}

uint64_t payloadBytes(const NbdFileCall& c) {
    return c.op == NbdFileOp::Read || c.op == NbdFileOp::Write ? c.length : 0;
}

}  // namespace

const char* nbdFileOpName(NbdFileOp op) {
    switch (op) {
        case NbdFileOp::Read:
            return "read";
        case NbdFileOp::Write:
            return "write";
        case NbdFileOp::Flush:
            return "flush";
        case NbdFileOp::Trim:
            return "trim";
        case NbdFileOp::WriteZeroes:
            return "writeZeroes";
    }
    return "unknown";
}

NbdFileBackend::NbdFileBackend(const std::string& path, NbdFileOptions options)
    : options_(std::move(options)) {
    if (options_.threads == 0 || options_.threads > 64)
        throwError(ErrorCode::InvalidArgument, "threads must be 1..64");
    file_.open(path, options_.readOnly ? File::Mode::Read : File::Mode::ReadWrite);
    size_ = file_.size();
    for (uint32_t i = 0; i < options_.threads; i++) workers_.emplace_back([this] { workerLoop(); });
}

void NbdFileBackend::stop() {
    std::multimap<Clock::time_point, Item> left;
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
        left.swap(queue_);
        for (const auto& [when, item] : left) {
            stats_.pending--;
            stats_.pendingBytes -= payloadBytes(item.call);
        }
    }
    cv_.notify_all();
    for (auto& t : workers_)
        if (t.joinable()) t.join();
    for (auto& [when, item] : left) item.target->ioDone(item.id, nbd::kEshutdown);
}

void NbdFileBackend::read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
                          bool) {
    const NbdFileCall call{NbdFileOp::Read, offset, out->size(), false};
    submit(call, id, std::move(out), target);
}

void NbdFileBackend::write(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua,
                           const IoTarget& target, bool) {
    const NbdFileCall call{NbdFileOp::Write, offset, data->size(), fua};
    submit(call, id, std::move(data), target);
}

void NbdFileBackend::flush(uint64_t id, const IoTarget& target, bool) {
    submit({NbdFileOp::Flush, 0, 0, false}, id, nullptr, target);
}

void NbdFileBackend::trim(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                          bool) {
    submit({NbdFileOp::Trim, offset, length, fua}, id, nullptr, target);
}

void NbdFileBackend::writeZeroes(uint64_t id, uint64_t offset, uint64_t length, bool fua,
                                 const IoTarget& target, bool) {
    submit({NbdFileOp::WriteZeroes, offset, length, fua}, id, nullptr, target);
}

void NbdFileBackend::submit(NbdFileCall call, uint64_t id, std::shared_ptr<IoBuffer> data,
                            const IoTarget& target) {
    auto when = Clock::now();
    int error = 0;
    for (const NbdFileFault& f : options_.faults) {
        if (!matches(f, call)) continue;
        when += std::chrono::milliseconds(f.delayMs);
        if (!error) error = f.error;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stopping_) {
            error = nbd::kEshutdown;
        } else {
            stats_.requests++;
            stats_.pending++;
            stats_.pendingBytes += payloadBytes(call);
            stats_.maxPendingBytes = std::max(stats_.maxPendingBytes, stats_.pendingBytes);
            if (options_.record) calls_.push_back(call);
            queue_.emplace(when, Item{call, id, std::move(data), target, error});
        }
    }
    if (error == nbd::kEshutdown) {
        target->ioDone(id, error);
        return;
    }
    cv_.notify_one();
}

void NbdFileBackend::workerLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        if (stopping_) return;
        if (held_ || queue_.empty()) {
            cv_.wait(lk);
            continue;
        }
        const auto when = queue_.begin()->first;
        if (when > Clock::now()) {
            cv_.wait_until(lk, when);
            continue;
        }
        Item item = std::move(queue_.begin()->second);
        queue_.erase(queue_.begin());
        lk.unlock();
        int error = item.error;
        std::string cause;
        if (!error) {
            try {
                run(item);
            } catch (const std::exception& e) {
                error = nbd::kEio;
                cause = e.what();
            }
        }
        lk.lock();
        stats_.pending--;
        stats_.pendingBytes -= payloadBytes(item.call);
        lk.unlock();
        if (cause.empty()) {
            item.target->ioDone(item.id, error);
        } else {
            item.target->ioFailed(item.id, error, cause);
        }
        item = Item{};
        lk.lock();
    }
}

void NbdFileBackend::run(const Item& item) {
    const NbdFileCall& c = item.call;
    switch (c.op) {
        case NbdFileOp::Read:
            file_.preadAll(item.data->data(), c.length, c.offset);
            return;
        case NbdFileOp::Write:
            file_.pwriteAll(item.data->data(), c.length, c.offset);
            break;
        case NbdFileOp::Flush:
            file_.fdatasync();
            return;
        case NbdFileOp::Trim:
            file_.discard(c.offset, c.length);  // a hint: where the file cannot deallocate, the data stays
            break;
        case NbdFileOp::WriteZeroes:
            file_.writeZeroes(c.offset, c.length);
            break;
    }
    if (c.fua) file_.fdatasync();
}

void NbdFileBackend::hold() {
    std::lock_guard<std::mutex> lk(mu_);
    held_ = true;
}

void NbdFileBackend::release() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        held_ = false;
    }
    cv_.notify_all();
}

NbdFileStats NbdFileBackend::stats() {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
}

std::vector<NbdFileCall> NbdFileBackend::calls() {
    std::lock_guard<std::mutex> lk(mu_);
    return calls_;
}

}  // namespace walb
