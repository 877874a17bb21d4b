#include "core/nbd_wire.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace walb {

namespace {

constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3, kCmdTrim = 4,
                   kCmdWriteZeroes = 6;
constexpr uint16_t kFlagFua = 1, kFlagNoHole = 2;
constexpr int kEinval = 22, kEnospc = 28, kEio = 5;

uint16_t be16(const char* p) { return static_cast<uint16_t>((uint8_t(p[0]) << 8) | uint8_t(p[1])); }
uint32_t be32(const char* p) { return (uint32_t(be16(p)) << 16) | be16(p + 2); }
uint64_t be64(const char* p) { return (uint64_t(be32(p)) << 32) | be32(p + 4); }
void putBe32(char* p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}

}  // namespace

NbdWire::NbdWire(int fd, std::string pending, std::shared_ptr<Wdev> dev, const NbdWireLimits& limits,
                 std::function<void(const NbdWireStats&)> onClose)
    : fd_(fd),
      in_(std::max<size_t>(pending.size(), 256 << 10)),
      inEnd_(pending.size()),
      dev_(std::move(dev)),
      limits_(limits),
      onClose_(std::move(onClose)) {
    std::memcpy(in_.data(), pending.data(), pending.size());
}

NbdWire::~NbdWire() {
    // The last reference may go away on one of our own threads: that one cannot be joined, only detached.
    for (std::thread* t : {&reader_, &sender_}) {
        if (!t->joinable()) continue;
        if (t->get_id() == std::this_thread::get_id()) {
            t->detach();
        } else {
            t->join();
        }
    }
    if (fd_ >= 0) ::close(fd_);
}

void NbdWire::start() {
    auto self = shared_from_this();
    reader_ = std::thread([self] { self->readerLoop(); });
    sender_ = std::thread([self] { self->senderLoop(); });
}

void NbdWire::join() {
    if (reader_.joinable() && reader_.get_id() != std::this_thread::get_id()) reader_.join();
    if (sender_.joinable() && sender_.get_id() != std::this_thread::get_id()) sender_.join();
}

void NbdWire::shutdown(const std::string& reason) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stats_.reason.empty()) stats_.reason = reason;
        stopRequested_ = true;
    }
    ::shutdown(fd_, SHUT_RD);  // wakes the reader with EOF
    readerCv_.notify_all();
}

bool NbdWire::readExact(char* buf, size_t n) {
    for (;;) {
        const size_t k = std::min(n, inEnd_ - inPos_);
        std::memcpy(buf, in_.data() + inPos_, k);
        inPos_ += k;
        buf += k;
        n -= k;
        if (n == 0) return true;
        inPos_ = inEnd_ = 0;
        // Large payloads go straight to their buffer; headers and small payloads come in as many as one read
        // returns, so that pipelined requests cost one system call for many.
        char* dst = n >= in_.size() ? buf : in_.data();
        const size_t want = n >= in_.size() ? n : in_.size();
        ssize_t r = ::read(fd_, dst, want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        if (dst == buf) {
            buf += r;
            n -= static_cast<size_t>(r);
            if (n == 0) return true;
        } else {
            inEnd_ = static_cast<size_t>(r);
        }
    }
}

bool NbdWire::discard(size_t n) {
    std::vector<char> sink(std::min<size_t>(n, 1 << 20));
    while (n > 0) {
        const size_t k = std::min(n, sink.size());
        if (!readExact(sink.data(), k)) return false;
        n -= k;
    }
    return true;
}

int NbdWire::validate(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length) {
    uint16_t allowed = kFlagFua;
    switch (type) {
        case kCmdRead:
            if (length > limits_.maxPayload) return kEinval;
            break;
        case kCmdWrite:
        case kCmdTrim:
            break;
        case kCmdWriteZeroes:
            allowed |= kFlagNoHole;
            break;
        case kCmdFlush:
            return (flags & ~allowed) ? kEinval : 0;
        default:
            return kEinval;  // CACHE, BLOCK_STATUS and unknown commands are not advertised
    }
    if (flags & ~allowed) return kEinval;
    if (offset % limits_.minBlockSize || length % limits_.minBlockSize) return kEinval;
    const uint64_t size = dev_->sizeBytes();
    if (length > size || offset > size - length)
        return type == kCmdWrite || type == kCmdWriteZeroes ? kEnospc : kEinval;
    return 0;
}

void NbdWire::queueReply(uint64_t cookie, int error, std::shared_ptr<IoBuffer> data) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        replies_.push_back({cookie, error, std::move(data)});
    }
    senderCv_.notify_one();
}

void NbdWire::wdevDone(uint64_t id, int error) { wdevDoneMany({{id, error}}); }

// Replies of completed writes, flushes and trims. The completing thread (the wdev's logger) writes them to
// the socket itself when it can do so without blocking; that saves waking the sender thread for every batch.
void NbdWire::wdevDoneMany(const std::vector<std::pair<uint64_t, int>>& done) {
    std::vector<std::pair<uint64_t, int>> replies;
    replies.reserve(done.size());
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (const auto& [id, error] : done) {
            auto [cookie, bytes] = slots_[id];
            inflightBytes_ -= bytes;
            freeSlots_.push_back(static_cast<uint32_t>(id));
            if (error) stats_.backendErrors++;
            replies.emplace_back(cookie, error);
        }
    }
    const bool sent = trySendNow(replies);
    bool wakeReader;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (!sent)
            for (const auto& [cookie, error] : replies) replies_.push_back({cookie, error, nullptr});
        // Only now: the reader ends the connection once nothing is in flight, and the reply must be on its
        // way.
        inflightRequests_ -= static_cast<uint32_t>(done.size());
        wakeReader = readerWaiting_;
    }
    if (!sent) senderCv_.notify_one();
    if (wakeReader) readerCv_.notify_one();
}

bool NbdWire::trySendNow(const std::vector<std::pair<uint64_t, int>>& replies) {
    std::unique_lock<std::mutex> sl(sendMu_, std::try_to_lock);
    if (!sl.owns_lock() || !unsent_.empty()) return false;
    std::string bytes(replies.size() * 16, '\0');
    for (size_t i = 0; i < replies.size(); i++) {
        char* h = bytes.data() + i * 16;
        putBe32(h, kSimpleReplyMagic);
        putBe32(h + 4, static_cast<uint32_t>(replies[i].second));
        putBe32(h + 8, static_cast<uint32_t>(replies[i].first >> 32));
        putBe32(h + 12, static_cast<uint32_t>(replies[i].first));
    }
    ssize_t w;
    do {
        w = ::send(fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w <= 0) return false;  // would block, or broken: the sender deals with it
    if (static_cast<size_t>(w) < bytes.size()) {
        unsent_ = bytes.substr(static_cast<size_t>(w));
        sl.unlock();
        { std::lock_guard<std::mutex> lk(mu_); }  // the sender is either before its check or waiting
        senderCv_.notify_one();
    }
    return true;
}

bool NbdWire::writeAll(struct iovec* v, int n) {
    while (n > 0) {
        ssize_t w = ::writev(fd_, v, std::min(n, 1024));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        size_t k = static_cast<size_t>(w);
        while (n > 0 && k >= v->iov_len) {
            k -= v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = static_cast<char*>(v->iov_base) + k;
            v->iov_len -= k;
        }
    }
    return true;
}

void NbdWire::readerLoop() {
    char h[28];
    std::string reason;
    bool deferred = false;  // requests submitted without waking the logger
    for (;;) {
        // Wake the logger once no further request is at hand, so that a burst of pipelined requests is one
        // batch.
        if (deferred && inEnd_ - inPos_ < sizeof(h)) {
            dev_->wakeLogger();
            deferred = false;
        }
        {
            std::unique_lock<std::mutex> lk(mu_);
            if (deferred && !(inflightBytes_ < limits_.maxInflightBytes &&
                              inflightRequests_ < limits_.maxInflightRequests)) {
                dev_->wakeLogger();
                deferred = false;
            }
            readerWaiting_ = true;
            readerCv_.wait(lk, [&] {
                return stopRequested_ || broken_ ||
                       (inflightBytes_ < limits_.maxInflightBytes &&
                        inflightRequests_ < limits_.maxInflightRequests);
            });
            readerWaiting_ = false;
            if (stopRequested_ || broken_) break;
        }
        if (!readExact(h, sizeof(h))) {
            reason = "client closed the connection without NBD_CMD_DISC";
            break;
        }
        if (be32(h) != kRequestMagic) {
            reason = "protocol error: bad request magic";
            break;
        }
        const uint16_t flags = be16(h + 4), type = be16(h + 6);
        const uint64_t cookie = be64(h + 8), offset = be64(h + 16);
        const uint32_t length = be32(h + 24);
        {
            std::lock_guard<std::mutex> lk(mu_);
            stats_.requests++;
        }
        if (type == kCmdDisc) {
            reason = "client disconnected (NBD_CMD_DISC)";
            break;
        }
        if (type == kCmdWrite && length > limits_.maxPayload) {
            reason = "protocol error: write payload larger than the maximum block size";
            break;
        }
        const int err = validate(type, flags, offset, length);
        const bool fua = flags & kFlagFua;
        if (err) {
            {
                std::lock_guard<std::mutex> lk(mu_);
                stats_.rejected++;
            }
            if (type == kCmdWrite && !discard(length)) {
                reason = "client closed the connection inside a write payload";
                break;
            }
            queueReply(cookie, err);
            continue;
        }
        if (length == 0 && type != kCmdFlush) {
            queueReply(cookie, 0);
            continue;
        }
        if (type == kCmdRead) {
            auto data = std::make_shared<IoBuffer>(length);
            int rerr = 0;
            try {
                dev_->read(offset, length, data->data());
            } catch (...) {
                rerr = kEio;
            }
            std::lock_guard<std::mutex> lk(mu_);
            if (rerr) {
                stats_.backendErrors++;
                replies_.push_back({cookie, rerr, nullptr});
            } else {
                stats_.bytesRead += length;
                inflightBytes_ += length;  // until the sender has written it
                replies_.push_back({cookie, 0, std::move(data)});
            }
            senderCv_.notify_one();
            continue;
        }
        std::shared_ptr<IoBuffer> payload;
        if (type == kCmdWrite) {
            payload = std::make_shared<IoBuffer>(length);
            if (!readExact(payload->data(), length)) {
                reason = "client closed the connection inside a write payload";
                break;
            }
        }
        uint64_t slot;
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (freeSlots_.empty()) {
                slots_.emplace_back(0, 0);
                freeSlots_.push_back(static_cast<uint32_t>(slots_.size() - 1));
            }
            slot = freeSlots_.back();
            freeSlots_.pop_back();
            slots_[slot] = {cookie, type == kCmdWrite ? length : 0};
            inflightRequests_++;
            if (type == kCmdWrite) {
                inflightBytes_ += length;
                stats_.bytesWritten += length;
            }
        }
        auto self = shared_from_this();
        const bool wake = inEnd_ - inPos_ < sizeof(h);
        if (type == kCmdWrite) {
            dev_->submitWrite(slot, offset, std::move(payload), fua, self, wake);
        } else if (type == kCmdFlush) {
            dev_->submitFlush(slot, self, wake);
        } else {
            dev_->submitDiscard(slot, offset, length, fua, self, wake);
        }
        deferred = !wake;
    }
    if (deferred) dev_->wakeLogger();
    std::unique_lock<std::mutex> lk(mu_);
    if (stats_.reason.empty()) stats_.reason = reason;
    // Answer what is in flight before closing.
    readerWaiting_ = true;
    readerCv_.wait(lk, [&] { return inflightRequests_ == 0 || broken_; });
    readerWaiting_ = false;
    readerDone_ = true;
    senderCv_.notify_one();
}

void NbdWire::senderLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        senderCv_.wait(lk, [&] {
            if (!replies_.empty() || readerDone_) return true;
            std::lock_guard<std::mutex> sl(sendMu_);
            return !unsent_.empty();
        });
        std::deque<Reply> batch;
        batch.swap(replies_);
        const bool last = readerDone_;
        lk.unlock();
        uint64_t sentBytes = 0;
        bool broke = false;
        {
            std::lock_guard<std::mutex> sl(sendMu_);
            std::vector<char> headers(batch.size() * 16);
            std::vector<struct iovec> iov;
            iov.reserve(1 + 2 * batch.size());
            if (!unsent_.empty()) iov.push_back({unsent_.data(), unsent_.size()});
            for (size_t i = 0; i < batch.size(); i++) {
                const Reply& r = batch[i];
                char* h = headers.data() + i * 16;
                putBe32(h, kSimpleReplyMagic);
                putBe32(h + 4, static_cast<uint32_t>(r.error));
                putBe32(h + 8, static_cast<uint32_t>(r.cookie >> 32));
                putBe32(h + 12, static_cast<uint32_t>(r.cookie));
                iov.push_back({h, 16});
                if (r.data) {
                    iov.push_back({r.data->data(), r.data->size()});
                    sentBytes += r.data->size();
                }
            }
            broke = !iov.empty() && !writeAll(iov.data(), static_cast<int>(iov.size()));
            unsent_.clear();
        }
        lk.lock();
        inflightBytes_ -= std::min(inflightBytes_, sentBytes);
        if (broke) broken_ = true;
        if (broken_) {
            if (stats_.reason.empty()) stats_.reason = "connection lost while sending replies";
            ::shutdown(fd_, SHUT_RDWR);
        }
        if (readerWaiting_) readerCv_.notify_one();
        if (last && replies_.empty()) break;
    }
    lk.unlock();
    ::shutdown(fd_, SHUT_RDWR);
    if (onClose_) onClose_(stats_);
}

}  // namespace walb
