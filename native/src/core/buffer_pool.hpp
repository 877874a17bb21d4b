// Reusable buffers handed out as shared bytes: streaming readers and writers keep touching the same memory
// instead of fresh pages (a page fault and a zero fill per 4 KiB otherwise dominate).
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "core/bytes.hpp"

namespace walb {

using SharedBytes = std::shared_ptr<const Bytes>;

// A buffer is reused once nobody else holds it. The pool keeps at most `slots` buffers; while all of them are
// held, acquire() hands out buffers it does not keep.
class BufferPool {
public:
    explicit BufferPool(size_t slots = 6) : slots_(slots) {}
    ~BufferPool();  // hands its large idle buffers over to the next pools of the process (bounded)
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;
    // A buffer of at least `size` bytes, not shared with anyone; its contents are undefined.
    std::shared_ptr<Bytes> acquire(size_t size);

private:
    static constexpr size_t kIdleMinBytes = 1u << 20;
    size_t slots_;
    std::vector<std::shared_ptr<Bytes>> bufs_;
};

}  // namespace walb
