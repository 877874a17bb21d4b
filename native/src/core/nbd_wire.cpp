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
      pending_(std::move(pending)),
      dev_(std::move(dev)),
      limits_(limits),
      onClose_(std::move(onClose)) {}

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
    cv_.notify_all();
}

bool NbdWire::readExact(char* buf, size_t n) {
    if (pendingPos_ < pending_.size()) {
        const size_t k = std::min(n, pending_.size() - pendingPos_);
        std::memcpy(buf, pending_.data() + pendingPos_, k);
        pendingPos_ += k;
        buf += k;
        n -= k;
    }
    while (n > 0) {
        ssize_t r = ::read(fd_, buf, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        buf += r;
        n -= static_cast<size_t>(r);
    }
    return true;
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
    cv_.notify_all();
}

void NbdWire::wdevDone(uint64_t id, int error) {
    uint64_t cookie;
    {
        std::lock_guard<std::mutex> lk(mu_);
        auto [c, bytes] = slots_[id];
        cookie = c;
        inflightBytes_ -= bytes;
        inflightRequests_--;
        freeSlots_.push_back(static_cast<uint32_t>(id));
        if (error) stats_.backendErrors++;
        replies_.push_back({cookie, error, nullptr});
    }
    cv_.notify_all();
}

void NbdWire::readerLoop() {
    char h[28];
    std::string reason;
    for (;;) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] {
                return stopRequested_ || broken_ ||
                       (inflightBytes_ < limits_.maxInflightBytes &&
                        inflightRequests_ < limits_.maxInflightRequests);
            });
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
            cv_.notify_all();
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
        if (type == kCmdWrite) {
            dev_->submitWrite(slot, offset, std::move(payload), fua, self);
        } else if (type == kCmdFlush) {
            dev_->submitFlush(slot, self);
        } else {
            dev_->submitDiscard(slot, offset, length, fua, self);
        }
    }
    std::unique_lock<std::mutex> lk(mu_);
    if (stats_.reason.empty()) stats_.reason = reason;
    // Answer what is in flight before closing.
    cv_.wait(lk, [&] { return inflightRequests_ == 0 || broken_; });
    readerDone_ = true;
    cv_.notify_all();
}

void NbdWire::senderLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return !replies_.empty() || readerDone_; });
        if (replies_.empty() && readerDone_) break;
        std::deque<Reply> batch;
        batch.swap(replies_);
        lk.unlock();
        uint64_t sentBytes = 0;
        bool broke = false;
        for (Reply& r : batch) {
            if (broke) break;
            char hdr[16];
            putBe32(hdr, kSimpleReplyMagic);
            putBe32(hdr + 4, static_cast<uint32_t>(r.error));
            putBe32(hdr + 8, static_cast<uint32_t>(r.cookie >> 32));
            putBe32(hdr + 12, static_cast<uint32_t>(r.cookie));
            struct iovec iov[2] = {{hdr, 16},
                                   {r.data ? r.data->data() : nullptr, r.data ? r.data->size() : 0}};
            int n = r.data ? 2 : 1;
            size_t total = 16 + (r.data ? r.data->size() : 0);
            struct iovec* v = iov;
            while (total > 0) {
                ssize_t w = ::writev(fd_, v, n);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    broke = true;
                    break;
                }
                total -= static_cast<size_t>(w);
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
            if (r.data) sentBytes += r.data->size();
        }
        lk.lock();
        inflightBytes_ -= std::min(inflightBytes_, sentBytes);
        if (broke) broken_ = true;
        if (broken_) {
            if (stats_.reason.empty()) stats_.reason = "connection lost while sending replies";
            ::shutdown(fd_, SHUT_RDWR);
        }
        cv_.notify_all();
    }
    lk.unlock();
    ::shutdown(fd_, SHUT_RDWR);
    if (onClose_) onClose_(stats_);
}

}  // namespace walb
