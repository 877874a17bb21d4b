// A regular file (sparse or not) or a block device as an NBD backend, for tests and for serving images
// read-only. Requests run on a few worker threads of their own, so a slow one does not hold up the others.
//
// Faults (tests only, as a test Env wraps a real file system): a rule delays or fails the requests it
// matches, and hold() parks every request until release(), so that tests can watch back-pressure and
// pipelining and check the replies of failed requests. The backend stays real: what is not failed is really
// read or written.
//
// Threads: any number of submitters, `threads` workers. mu_ guards everything below it; the file is used
// without a lock (positional I/O). The owner calls stop() on its own thread before it lets go: connections
// may hold the last reference, and a worker cannot join itself.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/file.hpp"
#include "core/nbd_backend.hpp"

namespace walb {

enum class NbdFileOp { Read, Write, Flush, Trim, WriteZeroes };
const char* nbdFileOpName(NbdFileOp op);

struct NbdFileFault {
    bool anyOp = true;
    NbdFileOp op = NbdFileOp::Read;  // with !anyOp
    // Requests overlapping [offset, offset + length) match; flush has no range and matches only rules
    // without.
    bool hasRange = false;
    uint64_t offset = 0, length = std::numeric_limits<uint64_t>::max();
    uint32_t delayMs = 0;  // run this much later
    int error = 0;         // NBD error value to answer instead of running the request
};

struct NbdFileOptions {
    bool readOnly = false;
    uint32_t threads = 4;
    std::vector<NbdFileFault> faults;
    bool record = false;  // keep every request in calls()
};

struct NbdFileCall {
    NbdFileOp op;
    uint64_t offset, length;
    bool fua;
};

struct NbdFileStats {
    uint64_t requests = 0;                           // submitted so far
    uint64_t pending = 0;                            // submitted and not completed
    uint64_t pendingBytes = 0, maxPendingBytes = 0;  // READ and WRITE lengths of those
};

class NbdFileBackend : public NbdBackend {
public:
    // Opens `path` (read-only with options.readOnly); the export size is its size now.
    NbdFileBackend(const std::string& path, NbdFileOptions options);
    ~NbdFileBackend() override { stop(); }
    // Ends the workers; requests still queued, and any submitted later, complete with ESHUTDOWN.
    void stop();
    NbdFileBackend(const NbdFileBackend&) = delete;
    NbdFileBackend& operator=(const NbdFileBackend&) = delete;

    uint64_t size() override { return size_; }
    bool readOnly() const override { return options_.readOnly; }
    void read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
              bool more) override;
    void write(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua, const IoTarget& target,
               bool more) override;
    void flush(uint64_t id, const IoTarget& target, bool more) override;
    void trim(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
              bool more) override;
    void writeZeroes(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                     bool more) override;

    void hold();
    void release();
    NbdFileStats stats();
    std::vector<NbdFileCall> calls();

private:
    using Clock = std::chrono::steady_clock;
    struct Item {
        NbdFileCall call;
        uint64_t id;
        std::shared_ptr<IoBuffer> data;  // read destination or write payload
        IoTarget target;
        int error;  // injected
    };
    void submit(NbdFileCall call, uint64_t id, std::shared_ptr<IoBuffer> data, const IoTarget& target);
    void workerLoop();
    void run(const Item& item);  // throws on I/O failure

    NbdFileOptions options_;
    File file_;
    uint64_t size_ = 0;

    std::mutex mu_;
    std::condition_variable cv_;
    std::multimap<Clock::time_point, Item> queue_;  // by the time a request may run; FIFO among equal times
    bool held_ = false, stopping_ = false;
    NbdFileStats stats_;
    std::vector<NbdFileCall> calls_;
    std::vector<std::thread> workers_;
};

}  // namespace walb
