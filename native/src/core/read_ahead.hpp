// A producer on a thread of its own, a few batches ahead of its consumer: reading, checksums and
// decompression overlap with whatever the consumer does (writing an image, merging).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace walb {

template <class Item>
class ReadAhead {
public:
    // Appends the next items to the (empty) batch it is given; returns false once there are no more (the
    // batch may still hold the last ones). Runs on the read-ahead thread; what it throws reaches next() after
    // every item produced before it, those of the batch it was filling included.
    using Fill = std::function<bool(std::vector<Item>&)>;
    // What a producer puts in one batch, at most (one item may pass the bytes): small batches keep the memory
    // the queue holds on to (slabs, buffers) small.
    static constexpr size_t kBatchItems = 64, kBatchBytes = 4u << 20;

    explicit ReadAhead(Fill fill) : fill_(std::move(fill)) {
        thread_ = std::thread([this] { run(); });
    }
    ~ReadAhead() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    ReadAhead(const ReadAhead&) = delete;
    ReadAhead& operator=(const ReadAhead&) = delete;

    // The next item in order; false at the end. Rethrows what the producer threw, after the items before it.
    // Once it returned false, whatever the producer wrote is visible to the caller.
    bool next(Item& item) {
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
        item = std::move(batch_[pos_++]);
        return true;
    }

private:
    // A full queue is refilled once it is down to kLow batches: a wake-up per few batches rather than per
    // batch.
    static constexpr size_t kDepth = 3, kLow = 1;

    void run() {
        std::exception_ptr error;
        try {
            for (bool more = true; more;) {
                std::vector<Item> batch;
                try {
                    more = fill_(batch);
                } catch (...) {  // the items it produced before failing still go first
                    error = std::current_exception();
                    more = false;
                }
                std::unique_lock<std::mutex> lk(mu_);
                if (stop_) break;
                if (batch.empty()) continue;
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
            error = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(mu_);
        error_ = error;
        done_ = true;
        cv_.notify_all();
    }

    Fill fill_;
    std::vector<Item> batch_;  // the consumer's
    size_t pos_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::vector<Item>> queue_;
    bool stop_ = false, done_ = false;
    bool producerWaiting_ = false, consumerWaiting_ = false;
    std::exception_ptr error_;
    std::thread thread_;  // last: started once everything it uses is there
};

}  // namespace walb
