// The NBD transmission phase of a wdev connection, in C++: once the TypeScript server has done the handshake
// (src/nbd), it hands the socket over so that request parsing, payloads and replies never touch the JS heap.
// Simple replies only (structured replies are never negotiated). Same checks and errors as the TypeScript
// transmission code (docs/nbd-server.md).
#pragma once
#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/wdev.hpp"

namespace walb {

struct NbdWireLimits {
    uint32_t minBlockSize = 512;
    uint32_t maxPayload = 32u << 20;
    uint64_t maxInflightBytes = 64ull << 20;
    uint32_t maxInflightRequests = 512;
};

struct NbdWireStats {
    uint64_t requests = 0, bytesRead = 0, bytesWritten = 0, rejected = 0, backendErrors = 0;
    std::string reason;  // why the connection ended
};

class NbdWire : public WdevCompletionTarget, public std::enable_shared_from_this<NbdWire> {
public:
    // Takes ownership of `fd`; `pending` are request bytes the handshake code had already read.
    NbdWire(int fd, std::string pending, std::shared_ptr<Wdev> dev, const NbdWireLimits& limits,
            std::function<void(const NbdWireStats&)> onClose);
    ~NbdWire() override;
    void start();
    // Graceful end: no further request is read; those in flight are answered; then the socket closes.
    void shutdown(const std::string& reason);
    void join();
    void wdevDone(uint64_t id, int error) override;
    void wdevDoneMany(const std::vector<std::pair<uint64_t, int>>& done) override;

private:
    struct Reply {
        uint64_t cookie;
        int error;
        std::shared_ptr<IoBuffer> data;  // READ payload
    };
    void readerLoop();
    void senderLoop();
    bool readExact(char* buf, size_t n);
    bool discard(size_t n);
    void queueReply(uint64_t cookie, int error, std::shared_ptr<IoBuffer> data = nullptr);
    bool trySendNow(const std::vector<std::pair<uint64_t, int>>& replies);
    bool writeAll(struct iovec* v, int n);
    int validate(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length);
    void end(const std::string& reason);

    int fd_;
    std::vector<char> in_;  // bytes read from the socket and not parsed yet: in_[inPos_, inEnd_)
    size_t inPos_ = 0, inEnd_ = 0;
    std::shared_ptr<Wdev> dev_;
    NbdWireLimits limits_;
    std::function<void(const NbdWireStats&)> onClose_;

    std::mutex mu_;
    std::condition_variable readerCv_, senderCv_;
    bool readerWaiting_ = false;
    std::deque<Reply> replies_;
    uint64_t inflightBytes_ = 0;
    uint32_t inflightRequests_ = 0;
    bool readerDone_ = false, broken_ = false, stopRequested_ = false;
    NbdWireStats stats_;
    // In-flight write/flush/trim requests: id -> (cookie, payload bytes).
    std::vector<std::pair<uint64_t, uint64_t>> slots_;
    std::vector<uint32_t> freeSlots_;

    // Socket writes: the sender thread, or a completing thread that finds the socket writable at once.
    std::mutex sendMu_;
    std::string unsent_;  // tail of a reply stream a completing thread could not finish; written first

    std::thread reader_, sender_;
};

}  // namespace walb
