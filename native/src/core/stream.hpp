// Buffered sequential access on top of File, so that formats made of many small pieces (pack headers,
// records) cost one system call per few MiB instead of one per piece.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/bytes.hpp"
#include "core/file.hpp"

namespace walb {

class BufferedReader {
public:
    BufferedReader(const File& file, uint64_t offset, size_t bufferSize = 4u << 20);
    // Reads up to `len` bytes; fewer only at end of file.
    size_t read(void* out, size_t len);
    // Reads exactly `len` bytes or throws TRUNCATED naming what was being read.
    void readExact(void* out, size_t len, const char* what);
    // Throws TRUNCATED, as readExact would, unless the file holds `len` more bytes. Lets a reader check a
    // size taken from the file before it allocates a buffer of that size.
    void requireAvailable(uint64_t len, const char* what);
    void skip(uint64_t len);
    uint64_t offset() const { return offset_; }
    bool atEof();

private:
    bool fill();
    [[noreturn]] void truncated(uint64_t start, uint64_t len, uint64_t present, const char* what) const;
    const File& file_;
    uint64_t offset_;      // file offset of the next byte returned
    uint64_t fileOffset_;  // file offset of buf_[end_]
    Bytes buf_;
    size_t pos_ = 0, end_ = 0;
    uint64_t knownSize_ = 0;  // file size as last seen by requireAvailable
};

// Bytes read from a file into a pooled buffer: `data` points at them for as long as `keep` is held.
struct SharedSpan {
    const char* data = nullptr;
    size_t size = 0;
    std::shared_ptr<const void> keep;
};

// A file of packs (a header block, then data whose size the header gives) read front to back with one pread
// per pack: each read takes a pack's data together with the header after it, straight into a slab of 4 MiB
// (or one buffer as large as the pack) that the pack's records then share without copies. Slabs come from a
// pool and are reused once every pack in them is dropped, so a reader running ahead keeps touching the same
// memory. Preferred to mapping the file: touching freshly mapped page-cache pages costs a fault per page (on
// our bench VM a trap to the host, 4-5x slower than pread of the same file), and a mapping cannot serve pipes
// or devices.
class PackFileReader {
public:
    static constexpr size_t kSlabBytes = 4u << 20;
    // `poolSlots`: about how many slabs are held at once by whoever the reader hands packs to.
    PackFileReader(const File& file, uint64_t offset, size_t headerSize, size_t poolSlots);
    // Reads the header block at offset() into `out`; false at the end of the file (no byte left). Throws
    // TRUNCATED naming `what` when the file ends inside it.
    bool readHeader(char* out, const char* what);
    // The `len` bytes of data at offset() (after the header just read), in a pooled slab; throws TRUNCATED
    // naming `what` when the file holds fewer (checked before any buffer is sized from `len`).
    SharedSpan readShared(size_t len, const char* what);
    // The same into `out`, which the caller sizes after requireAvailable(len).
    void read(char* out, size_t len, const char* what);
    // Throws TRUNCATED naming `what` unless the file holds `len` bytes from offset() on.
    void requireAvailable(uint64_t len, const char* what);
    // Moves past `len` bytes of data that the caller takes from elsewhere (a mapping), after
    // requireAvailable(len).
    void skip(uint64_t len);
    uint64_t offset() const { return offset_; }

private:
    [[noreturn]] void truncated(uint64_t len, uint64_t present, const char* what) const;
    const File& file_;
    uint64_t offset_;
    size_t headerSize_;
    BufferPool pool_;
    std::shared_ptr<Bytes> slab_;
    size_t slabUsed_ = 0;  // bytes of slab_ that packs handed out occupy
    Bytes next_;           // the header at offset_, read with the previous data, when haveNext_
    bool haveNext_ = false;
    uint64_t knownSize_ = 0;  // file size as last seen
};

class BufferedWriter {
public:
    BufferedWriter(File& file, uint64_t offset, size_t bufferSize = 4u << 20);
    ~BufferedWriter() = default;  // callers flush explicitly: a destructor must not throw
    void write(const void* data, size_t len);
    void flush();
    uint64_t offset() const { return offset_ + pending_.size(); }

private:
    File& file_;
    uint64_t offset_;
    size_t limit_;
    Bytes pending_;
};

}  // namespace walb

namespace walb {

// Sequential writer whose system calls run on a thread of its own, so that producing bytes (compression,
// checksums) overlaps with handing them to the kernel. Bytes are handed over in items of about `itemSize`
// bytes, at most `maxItems` of them queued or being written. write() copies; writeShared() only references
// bytes that a shared buffer keeps alive until they are written (no copy for data already in memory).
// reserve() + patch() let a format write a header after the data that follows it (wdiff pack headers): an
// item holding a reserved range not yet patched grows past `itemSize` (up to kMaxItemBytes) rather than
// going out without it, so that the header is written once, with its data. Memory: at most maxItems + 1
// items, each of at most kMaxItemBytes plus the buffers it references (kMaxPinnedBytes, or one larger).
class AsyncWriter {
public:
    AsyncWriter(File& file, uint64_t offset, size_t itemSize = 4u << 20, size_t maxItems = 4);
    ~AsyncWriter();  // stops the thread; unflushed data is dropped (callers flush explicitly)
    void write(const void* data, size_t len);
    // Writes the `len` bytes at `data`, which lie in a buffer of `keepBytes` bytes that `keep` holds. The
    // buffers an item references add up to at most kMaxPinnedBytes (a larger one alone), so the memory kept
    // alive stays bounded whatever the sizes of the pieces.
    void writeShared(std::shared_ptr<const void> keep, size_t keepBytes, const void* data, size_t len);
    uint64_t reserve(size_t len);  // skips `len` bytes (zeros) and returns their offset
    void patch(uint64_t offset, const void* data, size_t len);
    void flush();  // waits until everything is written; rethrows a failure of the writer thread
    uint64_t offset() const { return cur_.offset + cur_.bytes; }

    static constexpr size_t kMaxPinnedBytes = 32u << 20;
    static constexpr size_t kMaxItemBytes = 16u << 20;

private:
    struct Piece {
        const char* ext;  // referenced bytes, or nullptr for owned[pos, pos + len)
        size_t pos, len;
    };
    struct Item {
        uint64_t offset = 0;
        size_t bytes = 0;
        Bytes owned;
        std::vector<Piece> pieces;
        std::vector<std::shared_ptr<const void>> keep;
        size_t pinned = 0;  // bytes of the buffers in keep
    };
    // Hands the current item over unless it holds a range reserved and not patched yet (and is not too
    // large to keep).
    void maybeHandOff();
    void handOff();
    void enqueue(Item item);
    void run();
    File& file_;
    size_t itemSize_, maxItems_, lowItems_;
    Item cur_;
    uint64_t openBegin_ = 0, openEnd_ = 0;  // the reserved range not patched yet (empty if none)
    std::mutex mu_;
    std::condition_variable workCv_, spaceCv_;
    std::deque<Item> queue_;
    std::vector<Bytes> free_;
    size_t inFlight_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::thread thread_;
};

}  // namespace walb
