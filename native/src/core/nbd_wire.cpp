#include "core/nbd_wire.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "core/bytes.hpp"

namespace walb {

namespace {

void putBe32(char* p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}

void putReplyHeader(char* h, uint64_t cookie, int error) {
    putBe32(h, nbd::kSimpleReplyMagic);
    putBe32(h + 4, static_cast<uint32_t>(error));
    putBe32(h + 8, static_cast<uint32_t>(cookie >> 32));
    putBe32(h + 12, static_cast<uint32_t>(cookie));
}

std::string describe(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "unknown exception";
    }
}

}  // namespace

NbdWire::NbdWire(int fd, std::string pending, std::shared_ptr<NbdBackend> backend,
                 const NbdWireLimits& limits, std::function<void(const NbdWireStats&)> onClose,
                 std::shared_ptr<NbdLatency> latency)
    : fd_(fd),
      in_(std::max<size_t>(pending.size(), 256 << 10)),
      inEnd_(pending.size()),
      backend_(std::move(backend)),
      limits_(limits),
      onClose_(std::move(onClose)),
      latency_(std::move(latency)) {
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

void NbdWire::abort(const std::string& reason) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stats_.reason.empty()) stats_.reason = reason;
        stopRequested_ = true;
        broken_ = true;
    }
    ::shutdown(fd_, SHUT_RDWR);
    readerCv_.notify_all();
    senderCv_.notify_all();
}

NbdWireStats NbdWire::stats() {
    std::lock_guard<std::mutex> lk(mu_);
    NbdWireStats s = stats_;
    s.inflightRequests = inflightRequests_;
    s.inflightBytes = inflightBytes_;
    return s;
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
    Bytes sink(std::min<size_t>(n, 1 << 20));
    while (n > 0) {
        const size_t k = std::min(n, sink.size());
        if (!readExact(sink.data(), k)) return false;
        n -= k;
    }
    return true;
}

void NbdWire::noteEvent(const char* kind, uint16_t command, int error, uint64_t offset, uint64_t length,
                        std::string cause) {
    if (stats_.events.size() < kMaxEvents)
        stats_.events.push_back({kind, command, error, offset, length, std::move(cause)});
}

void NbdWire::queueReply(uint64_t cookie, int error, std::shared_ptr<IoBuffer> data) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        replies_.push_back({cookie, error, std::move(data)});
    }
    senderCv_.notify_one();
}

void NbdWire::ioDone(uint64_t id, int error) { complete({{id, error}}, nullptr); }

void NbdWire::ioDoneMany(const std::vector<std::pair<uint64_t, int>>& done) { complete(done, nullptr); }

void NbdWire::ioFailed(uint64_t id, int error, const std::string& cause) { complete({{id, error}}, &cause); }

// Replies of completed requests. Read data goes to the sender; the other replies are written by the
// completing thread itself when the socket takes them at once, which saves waking the sender for every batch.
void NbdWire::complete(const std::vector<std::pair<uint64_t, int>>& done, const std::string* cause) {
    std::vector<std::pair<uint64_t, int>> replies;
    replies.reserve(done.size());
    bool readData = false;
    const uint64_t completedNs = latency_ ? NbdLatency::now() : 0;
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (const auto& [id, error] : done) {
            Slot s = std::move(slots_[id]);
            slots_[id] = Slot{};
            freeSlots_.push_back(static_cast<uint32_t>(id));
            if (latency_) latency_->record(s.command, completedNs - s.receivedNs);
            if (error) {
                stats_.backendErrors++;
                noteEvent("backend-error", s.command, error, s.offset, s.length, cause ? *cause : "");
            }
            if (s.read && !error) {
                // its bytes stay counted in flight until the sender has written them
                stats_.bytesRead += s.length;
                replies_.push_back({s.cookie, 0, std::move(s.read)});
                readData = true;
            } else {
                inflightBytes_ -= s.bytes;
                replies.emplace_back(s.cookie, error);
            }
        }
    }
    const bool sent = replies.empty() || trySendNow(replies);
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
    if (!sent || readData) senderCv_.notify_one();
    if (wakeReader) readerCv_.notify_one();
}

bool NbdWire::trySendNow(const std::vector<std::pair<uint64_t, int>>& replies) {
    std::unique_lock<std::mutex> sl(sendMu_, std::try_to_lock);
    if (!sl.owns_lock() || !unsent_.empty()) return false;
    std::string bytes(replies.size() * nbd::kSimpleReplyHeaderSize, '\0');
    for (size_t i = 0; i < replies.size(); i++)
        putReplyHeader(bytes.data() + i * nbd::kSimpleReplyHeaderSize, replies[i].first, replies[i].second);
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

void NbdWire::submit(uint64_t slot, const NbdRequest& r, std::shared_ptr<IoBuffer> data, bool more) {
    IoTarget self = shared_from_this();
    try {
        switch (r.type) {
            case nbd::kCmdRead:
                backend_->read(slot, r.offset, std::move(data), self, more);
                break;
            case nbd::kCmdWrite:
                backend_->write(slot, r.offset, std::move(data), r.fua(), self, more);
                break;
            case nbd::kCmdFlush:
                backend_->flush(slot, self, more);
                break;
            case nbd::kCmdTrim:
                backend_->trim(slot, r.offset, r.length, r.fua(), self, more);
                break;
            default:  // checkNbdRequest serves no other command
                backend_->writeZeroes(slot, r.offset, r.length, r.fua(), self, more);
                break;
        }
    } catch (const std::exception& e) {
        ioFailed(slot, nbd::kEio, std::string("the backend refused the request: ") + e.what());
    }
}

std::string NbdWire::readRequests() {
    uint8_t h[nbd::kRequestHeaderSize];
    bool deferred = false;  // requests submitted with `more`: the backend may not have started them yet
    for (;;) {
        // Kick the backend once no further request is at hand, so that a burst of pipelined requests is one
        // batch.
        if (deferred && inEnd_ - inPos_ < sizeof(h)) {
            backend_->kick();
            deferred = false;
        }
        {
            std::unique_lock<std::mutex> lk(mu_);
            const auto underLimits = [&] {
                return inflightBytes_ < limits_.maxInflightBytes &&
                       inflightRequests_ < limits_.maxInflightRequests;
            };
            if (deferred && !underLimits()) {
                backend_->kick();
                deferred = false;
            }
            readerWaiting_ = true;
            readerCv_.wait(lk, [&] { return stopRequested_ || broken_ || underLimits(); });
            readerWaiting_ = false;
            if (stopRequested_ || broken_) return "";  // the reason was given with the request to stop
        }
        if (!readExact(reinterpret_cast<char*>(h), sizeof(h)))
            return "client closed the connection without NBD_CMD_DISC";
        const NbdRequestLimits checkLimits{limits_.minBlockSize, limits_.maxPayload, backend_->size(),
                                           backend_->readOnly()};
        const NbdRequestCheck check = checkNbdRequest(h, checkLimits);
        const NbdRequest& r = check.request;
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (r.magic == nbd::kRequestMagic) stats_.requests++;
        }
        switch (check.action) {
            case NbdRequestAction::Close: {
                std::lock_guard<std::mutex> lk(mu_);
                stats_.protocolError = true;
                return std::string("protocol error: ") + check.why;
            }
            case NbdRequestAction::Disconnect:
                return "client disconnected (NBD_CMD_DISC)";
            case NbdRequestAction::Reply:
                if (check.error) {
                    std::lock_guard<std::mutex> lk(mu_);
                    stats_.rejected++;
                    noteEvent("request-rejected", r.type, check.error, r.offset, r.length, check.why);
                }
                if (r.type == nbd::kCmdWrite && !discard(r.length))
                    return "client closed the connection inside a write payload";
                queueReply(r.cookie, check.error);
                continue;
            case NbdRequestAction::Serve:
                break;
        }
        std::shared_ptr<IoBuffer> data;
        if (r.type == nbd::kCmdRead || r.type == nbd::kCmdWrite) data = std::make_shared<IoBuffer>(r.length);
        if (r.type == nbd::kCmdWrite && !readExact(data->data(), r.length))
            return "client closed the connection inside a write payload";
        const uint64_t receivedNs = latency_ ? NbdLatency::now() : 0;
        uint64_t slot;
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (freeSlots_.empty()) {
                slots_.emplace_back();
                freeSlots_.push_back(static_cast<uint32_t>(slots_.size() - 1));
            }
            slot = freeSlots_.back();
            freeSlots_.pop_back();
            const uint64_t bytes = data ? r.length : 0;
            std::shared_ptr<IoBuffer> readInto = r.type == nbd::kCmdRead ? data : nullptr;
            slots_[slot] = Slot{r.cookie, r.type, r.offset, r.length, bytes, std::move(readInto), receivedNs};
            inflightRequests_++;
            inflightBytes_ += bytes;
            if (r.type == nbd::kCmdWrite) stats_.bytesWritten += r.length;
        }
        const bool more = inEnd_ - inPos_ >= sizeof(h);
        submit(slot, r, std::move(data), more);
        deferred = more;
    }
}

void NbdWire::readerLoop() {
    std::string reason;
    try {
        reason = readRequests();
    } catch (...) {
        reason = "internal error while reading requests: " + describe(std::current_exception());
    }
    backend_->kick();
    std::unique_lock<std::mutex> lk(mu_);
    if (stats_.reason.empty()) stats_.reason = reason;
    // Answer what is in flight before closing.
    readerWaiting_ = true;
    readerCv_.wait(lk, [&] { return inflightRequests_ == 0 || broken_; });
    readerWaiting_ = false;
    readerDone_ = true;
    senderCv_.notify_one();
}

void NbdWire::sendReplies() {
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
            Bytes headers(batch.size() * nbd::kSimpleReplyHeaderSize);
            std::vector<struct iovec> iov;
            iov.reserve(1 + 2 * batch.size());
            if (!unsent_.empty()) iov.push_back({unsent_.data(), unsent_.size()});
            for (size_t i = 0; i < batch.size(); i++) {
                const Reply& r = batch[i];
                char* h = headers.data() + i * nbd::kSimpleReplyHeaderSize;
                putReplyHeader(h, r.cookie, r.error);
                iov.push_back({h, nbd::kSimpleReplyHeaderSize});
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
}

void NbdWire::senderLoop() {
    try {
        sendReplies();
    } catch (...) {
        const std::string what = describe(std::current_exception());
        std::lock_guard<std::mutex> lk(mu_);
        stats_.reason = "internal error while sending replies: " + what;
        broken_ = true;
        readerCv_.notify_all();
    }
    ::shutdown(fd_, SHUT_RDWR);
    NbdWireStats final = stats();
    if (onClose_) onClose_(final);
}

}  // namespace walb
