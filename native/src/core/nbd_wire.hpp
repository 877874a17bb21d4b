// The NBD transmission phase of one connection, in C++: once the TypeScript server has done the handshake
// (src/nbd/handshake.ts), it hands the socket over; requests are parsed and checked (nbd_request.hpp), given
// to a backend (nbd_backend.hpp) and answered here, so that payloads never touch the JS heap. Simple replies
// only (structured replies are never negotiated). See docs/nbd-server.md.
//
// Threads: a reader parses requests and submits them; a sender writes the replies that cannot go out at
// once; backends complete requests on their own threads, which write replies themselves when the socket takes
// them without blocking. mu_ guards the state below it; sendMu_ (taken after mu_, never before) serialises
// socket writes.
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

#include "core/bytes.hpp"
#include "core/nbd_backend.hpp"
#include "core/nbd_latency.hpp"
#include "core/nbd_request.hpp"

namespace walb {

struct NbdWireLimits {
    uint32_t minBlockSize = 512;
    uint32_t maxPayload = 32u << 20;
    uint64_t maxInflightBytes = 64ull << 20;
    uint32_t maxInflightRequests = 512;
};

// A rejected request or a failed backend call, kept for the connection's report (the first few only).
struct NbdWireEvent {
    std::string kind;  // "request-rejected" or "backend-error"
    uint16_t command = 0;
    int error = 0;
    uint64_t offset = 0, length = 0;
    std::string cause;  // why it was rejected, or what the backend reported
};

struct NbdWireStats {
    uint64_t requests = 0, bytesRead = 0, bytesWritten = 0, rejected = 0, backendErrors = 0;
    uint64_t inflightRequests = 0,
             inflightBytes = 0;  // now (0 once closed, unless cut with requests pending)
    bool protocolError = false;
    std::string reason;  // why the connection ended (empty while it runs)
    std::vector<NbdWireEvent> events;
};

class NbdWire : public IoCompletionTarget, public std::enable_shared_from_this<NbdWire> {
public:
    static constexpr size_t kMaxEvents = 10;
    // Takes ownership of `fd`; `pending` are request bytes the handshake code had already read. With
    // `latency`, each request the backend completes is timed into it.
    NbdWire(int fd, std::string pending, std::shared_ptr<NbdBackend> backend, const NbdWireLimits& limits,
            std::function<void(const NbdWireStats&)> onClose, std::shared_ptr<NbdLatency> latency = nullptr);
    ~NbdWire() override;
    void start();
    // Graceful end: no further request is read; those in flight are answered; then the socket closes.
    void shutdown(const std::string& reason);
    // Hard end: the socket is cut now; replies still pending are lost (their backend calls still complete).
    void abort(const std::string& reason);
    void join();
    NbdWireStats stats();
    void ioDone(uint64_t id, int error) override;
    void ioDoneMany(const std::vector<std::pair<uint64_t, int>>& done) override;
    void ioFailed(uint64_t id, int error, const std::string& cause) override;

private:
    struct Reply {
        uint64_t cookie;
        int error;
        std::shared_ptr<IoBuffer> data;  // READ payload
    };
    // A request handed to the backend, by id.
    struct Slot {
        uint64_t cookie = 0;
        uint16_t command = 0;
        uint64_t offset = 0, length = 0;
        uint64_t bytes = 0;              // counted in inflightBytes_
        std::shared_ptr<IoBuffer> read;  // READ destination
        uint64_t receivedNs = 0;         // NbdLatency::now() once the request was read whole
    };
    void readerLoop();
    std::string readRequests();  // returns why it stopped
    void senderLoop();
    void sendReplies();
    bool readExact(char* buf, size_t n);
    bool discard(size_t n);
    void queueReply(uint64_t cookie, int error, std::shared_ptr<IoBuffer> data = nullptr);
    void complete(const std::vector<std::pair<uint64_t, int>>& done, const std::string* cause);
    bool trySendNow(const std::vector<std::pair<uint64_t, int>>& replies);
    bool writeAll(struct iovec* v, int n);
    void submit(uint64_t slot, const NbdRequest& r, std::shared_ptr<IoBuffer> data, bool more);
    void noteEvent(const char* kind, uint16_t command, int error, uint64_t offset, uint64_t length,
                   std::string cause);  // mu_ held

    int fd_;
    Bytes in_;  // bytes read from the socket and not parsed yet: in_[inPos_, inEnd_)
    size_t inPos_ = 0, inEnd_ = 0;
    std::shared_ptr<NbdBackend> backend_;
    NbdWireLimits limits_;
    std::function<void(const NbdWireStats&)> onClose_;
    std::shared_ptr<NbdLatency> latency_;

    std::mutex mu_;
    std::condition_variable readerCv_, senderCv_;
    bool readerWaiting_ = false;
    std::deque<Reply> replies_;
    uint64_t inflightBytes_ = 0;
    uint32_t inflightRequests_ = 0;
    bool readerDone_ = false, broken_ = false, stopRequested_ = false;
    NbdWireStats stats_;
    std::vector<Slot> slots_;
    std::vector<uint32_t> freeSlots_;

    std::mutex sendMu_;
    std::string unsent_;  // tail of a reply stream a completing thread could not finish; written first

    std::thread reader_, sender_;
};

}  // namespace walb
