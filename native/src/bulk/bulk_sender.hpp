// The sending end of the native bulk path: bytes [from, size) of a file (a volume's data device, an archive's
// base image from where an interrupted replication stopped) as bulk
// messages over one gRPC client stream, zero bulks skipped. Runs on the calling (pool) thread; gRPC's own
// threads do the network, so the JS thread only starts it and reads its progress.
#pragma once
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <mutex>
#include <string>

#include "bulk/bulk_tls.hpp"
#include "core/ops.hpp"

namespace walb::bulk {

struct SendOptions {
    std::string target;  // HOST:PORT of the receiver
    std::string method;  // full gRPC method name, e.g. /walb.v1.ArchiveBulk/FullSyncBulk
    std::string token;   // names the transfer at the receiver (the first message)
    std::string path;    // file to read
    uint64_t size = 0;   // the file's bytes: the scan ends there
    uint64_t from = 0;   // where the scan starts (a multiple of 512, at most size)
    uint32_t bulk = 1 << 20;
    double bytesPerSec = 0;    // read rate limit, 0 = none
    uint32_t timeoutSec = 10;  // longest wait for the receiver; its final answer gets six times as long
    TlsPem tls;
};

struct SendResult {
    uint64_t scanned = 0;  // the offset the scan reached
    uint64_t sent = 0;     // bytes sent (the non-zero bulks)
};

// A running send as other threads see it: cancel it, read how far it got.
class SendControl {
public:
    // Bytes of the bulks handed to gRPC so far (0 while the receiver has not been reached).
    std::atomic<uint64_t> sent{0};
    void cancel();
    bool cancelled();
    void attach(grpc::ClientContext* ctx);
    void detach();

private:
    std::mutex mu_;
    grpc::ClientContext* ctx_ = nullptr;
    bool cancelled_ = false;
};

// Throws walb::Error: Unavailable (peer gone, timed out, refused), Cancelled, IoError (read),
// InvalidArgument.
SendResult sendFile(const SendOptions& opt, SendControl& control, const Progress& progress);

}  // namespace walb::bulk
