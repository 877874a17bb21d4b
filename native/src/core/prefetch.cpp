// A DiffReader that reads ahead on a thread of its own.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/diff.hpp"

namespace walb {

namespace {

class PrefetchReader : public DiffReader {
public:
    explicit PrefetchReader(std::unique_ptr<DiffReader> inner) : inner_(std::move(inner)) {
        thread_ = std::thread([this] { run(); });
    }
    ~PrefetchReader() override {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    bool next(DiffIo& io) override {
        if (pos_ == batch_.size()) {
            std::unique_lock<std::mutex> lk(mu_);
            if (queue_.empty() && !done_) {
                consumerWaiting_ = true;
                cv_.wait(lk, [&] { return !queue_.empty() || done_; });
                consumerWaiting_ = false;
            }
            if (queue_.empty()) {
                if (error_) std::rethrow_exception(error_);
                return false;
            }
            batch_ = std::move(queue_.front());
            queue_.pop_front();
            pos_ = 0;
            const bool wake = producerWaiting_ && queue_.size() <= kLow;
            lk.unlock();
            if (wake) cv_.notify_all();
        }
        io = std::move(batch_[pos_++]);
        return true;
    }
    const Uuid& uuid() const override { return inner_->uuid(); }

private:
    // Small batches keep the reader's pooled buffers few (a batch holds references into them). A full queue
    // is refilled once it is down to kLow batches: a wake-up per few batches rather than per batch.
    static constexpr size_t kBatchRecords = 64, kBatchBytes = 4u << 20, kDepth = 3, kLow = 1;
    void run() {
        try {
            for (;;) {
                std::vector<DiffIo> batch;
                size_t bytes = 0;
                DiffIo io;
                while (batch.size() < kBatchRecords && bytes < kBatchBytes && inner_->next(io)) {
                    bytes += io.kind == DiffKind::Normal ? io.bytes() : 0;
                    batch.push_back(std::move(io));
                }
                std::unique_lock<std::mutex> lk(mu_);
                if (batch.empty() || stop_) break;
                if (queue_.size() >= kDepth) {
                    producerWaiting_ = true;
                    cv_.wait(lk, [&] { return queue_.size() <= kLow || stop_; });
                    producerWaiting_ = false;
                }
                if (stop_) break;
                queue_.push_back(std::move(batch));
                const bool wake = consumerWaiting_;
                lk.unlock();
                if (wake) cv_.notify_all();
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu_);
            error_ = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(mu_);
        done_ = true;
        cv_.notify_all();
    }
    std::unique_ptr<DiffReader> inner_;
    std::vector<DiffIo> batch_;
    size_t pos_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::vector<DiffIo>> queue_;
    bool stop_ = false, done_ = false;
    bool producerWaiting_ = false, consumerWaiting_ = false;
    std::exception_ptr error_;
    std::thread thread_;
};

}  // namespace

std::unique_ptr<DiffReader> prefetching(std::unique_ptr<DiffReader> inner) {
    return std::make_unique<PrefetchReader>(std::move(inner));
}

}  // namespace walb
