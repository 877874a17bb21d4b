// What a device's asynchronous requests share: the payload buffer and the receiver of their completions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/bytes.hpp"

namespace walb {

// Request payloads: allocated once, not zero-filled, shared by whoever still needs the bytes (a wdev's log
// writer, overlay and applier; the NBD sender of a read reply).
// Page-aligned from a page up, as every buffer the kernel copies file data into (core/bytes.hpp says why).
class IoBuffer {
public:
    explicit IoBuffer(size_t size) : bytes_(static_cast<char*>(allocateBytes(size))), size_(size) {}
    ~IoBuffer() { freeBytes(bytes_, size_); }
    IoBuffer(const IoBuffer&) = delete;
    IoBuffer& operator=(const IoBuffer&) = delete;
    char* data() { return bytes_; }
    const char* data() const { return bytes_; }
    size_t size() const { return size_; }

private:
    char* bytes_;
    size_t size_;
};

// Who hears about a finished request (the NBD wire of a connection). Called exactly once per request, from
// any thread, possibly before the submitting call returns. `error` is an errno value as NBD carries it
// (0 on success).
class IoCompletionTarget {
public:
    virtual ~IoCompletionTarget() = default;
    virtual void ioDone(uint64_t id, int error) = 0;
    // Several at once (one lock and one wake-up for a whole batch of replies).
    virtual void ioDoneMany(const std::vector<std::pair<uint64_t, int>>& done) {
        for (const auto& [id, error] : done) ioDone(id, error);
    }
    // A failure with what caused it, for the connection's report (docs/nbd-server.md, "Logs").
    virtual void ioFailed(uint64_t id, int error, const std::string& cause) { ioDone(id, error); }
};
using IoTarget = std::shared_ptr<IoCompletionTarget>;

}  // namespace walb
