#include "core/stream.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace walb {

BufferedReader::BufferedReader(const File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), fileOffset_(offset), buf_(bufferSize) {}

bool BufferedReader::fill() {
    pos_ = 0;
    end_ = file_.preadSome(buf_.data(), buf_.size(), fileOffset_);
    fileOffset_ += end_;
    return end_ > 0;
}

size_t BufferedReader::read(void* out, size_t len) {
    auto* p = static_cast<char*>(out);
    size_t done = 0;
    while (done < len) {
        if (pos_ == end_) {
            // Large reads bypass the buffer.
            if (len - done >= buf_.size()) {
                size_t n = file_.preadSome(p + done, len - done, fileOffset_);
                fileOffset_ += n;
                done += n;
                break;
            }
            if (!fill()) break;
        }
        size_t n = std::min(len - done, end_ - pos_);
        std::memcpy(p + done, buf_.data() + pos_, n);
        pos_ += n;
        done += n;
    }
    offset_ += done;
    return done;
}

void BufferedReader::truncated(uint64_t start, uint64_t len, uint64_t present, const char* what) const {
    throwError(ErrorCode::Truncated, std::string("file ends inside ") + what + ": " +
                                         where(file_.path(), start) + " (" + std::to_string(len) +
                                         " bytes needed, " + std::to_string(present) + " present)");
}

void BufferedReader::readExact(void* out, size_t len, const char* what) {
    const uint64_t start = offset_;
    size_t n = read(out, len);
    if (n < len) truncated(start, len, n, what);
}

void BufferedReader::requireAvailable(uint64_t len, const char* what) {
    if (len <= end_ - pos_ || (knownSize_ > offset_ && len <= knownSize_ - offset_)) return;
    knownSize_ = file_.size();  // seen too small (or never): look again, the file may have grown
    const uint64_t present = knownSize_ > offset_ ? knownSize_ - offset_ : 0;
    if (len > present) truncated(offset_, len, present, what);
}

void BufferedReader::skip(uint64_t len) {
    uint64_t inBuf = end_ - pos_;
    if (len <= inBuf) {
        pos_ += len;
    } else {
        fileOffset_ += len - inBuf;
        pos_ = end_ = 0;
    }
    offset_ += len;
}

bool BufferedReader::atEof() { return pos_ == end_ && !fill(); }

BufferedWriter::BufferedWriter(File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), limit_(bufferSize) {
    pending_.reserve(bufferSize);
}

void BufferedWriter::write(const void* data, size_t len) {
    if (pending_.size() + len > limit_) flush();
    if (len >= limit_) {
        file_.pwriteAll(data, len, offset_);
        offset_ += len;
        return;
    }
    const auto* p = static_cast<const char*>(data);
    pending_.insert(pending_.end(), p, p + len);
}

void BufferedWriter::flush() {
    if (pending_.empty()) return;
    file_.pwriteAll(pending_.data(), pending_.size(), offset_);
    offset_ += pending_.size();
    pending_.clear();
}

}  // namespace walb

namespace walb {

AsyncWriter::AsyncWriter(File& file, uint64_t offset, size_t bufferSize, size_t maxBuffers)
    : file_(file), bufferSize_(bufferSize), maxBuffers_(std::max<size_t>(2, maxBuffers)), bufOffset_(offset) {
    cur_.reserve(bufferSize_);
    thread_ = std::thread([this] { run(); });
}

AsyncWriter::~AsyncWriter() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void AsyncWriter::run() {
    for (;;) {
        Item item;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;
            item = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            if (!error_) file_.pwriteAll(item.data.data(), item.data.size(), item.offset);
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu_);
            error_ = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            item.data.clear();
            if (item.data.capacity() >= bufferSize_) free_.push_back(std::move(item.data));
            inFlight_--;
        }
        cv_.notify_all();
    }
}

void AsyncWriter::enqueue(Item item) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return inFlight_ < maxBuffers_ || error_; });
    if (error_) std::rethrow_exception(error_);
    inFlight_++;
    queue_.push_back(std::move(item));
    cv_.notify_all();
}

void AsyncWriter::handOff() {
    if (cur_.empty()) return;
    const uint64_t at = bufOffset_;
    bufOffset_ += cur_.size();
    enqueue(Item{at, std::move(cur_)});
    std::lock_guard<std::mutex> lk(mu_);
    if (!free_.empty()) {
        cur_ = std::move(free_.back());
        free_.pop_back();
    } else {
        cur_ = std::vector<char>();
        cur_.reserve(bufferSize_);
    }
}

void AsyncWriter::write(const void* data, size_t len) {
    const auto* p = static_cast<const char*>(data);
    while (len > 0) {
        const size_t n = std::min(len, bufferSize_ - std::min(bufferSize_, cur_.size()));
        cur_.insert(cur_.end(), p, p + n);
        p += n;
        len -= n;
        if (cur_.size() >= bufferSize_) handOff();
    }
}

uint64_t AsyncWriter::reserve(size_t len) {
    const uint64_t at = offset();
    static const std::vector<char> zeros(4096, 0);
    while (len > 0) {
        const size_t n = std::min(len, zeros.size());
        write(zeros.data(), n);
        len -= n;
    }
    return at;
}

void AsyncWriter::patch(uint64_t off, const void* data, size_t len) {
    const auto* p = static_cast<const char*>(data);
    if (off < bufOffset_) {
        // Already handed off: queued after that buffer, so it lands on top of it.
        const size_t n = static_cast<size_t>(std::min<uint64_t>(len, bufOffset_ - off));
        enqueue(Item{off, std::vector<char>(p, p + n)});
        off += n;
        p += n;
        len -= n;
    }
    if (len > 0) std::memcpy(cur_.data() + (off - bufOffset_), p, len);  // still in the current buffer
}

void AsyncWriter::flush() {
    handOff();
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return inFlight_ == 0; });
    if (error_) std::rethrow_exception(error_);
}

}  // namespace walb
