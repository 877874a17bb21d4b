// A restorable snapshot read at random offsets without restoring it: a base image and the wdiff chain its
// restore applies (oldest first), resolved once, when opened, into one table of extents saying where the
// newest data of each block lies (docs/servers.md §6.10). VirtualFullImage (ops.hpp) streams a chain front to
// back; this one answers any range with a binary search and reads only the record images the range needs.
//
// Opening reads the pack headers of sorted wdiffs and the index of indexed ones, never their data. Memory:
// one StoredImage (24 bytes) per normal record and one Extent (24 bytes) per piece of the resolved table; a
// record adds one extent and cuts at most one older extent in two, so the table holds at most twice the
// records of the chain plus one. A record's data is checked against its checksum the first time a read needs
// it; an uncompressed record is then read by slice, a compressed one is decompressed whole for each read.
//
// Threads: read() may be called from any number of threads at once. The table is immutable after the
// constructor; files are read with positional I/O; `verified_` flags are atomic.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/file.hpp"

namespace walb {

class SnapshotImage {
public:
    SnapshotImage(const std::string& base, const std::vector<std::string>& diffs);
    SnapshotImage(const SnapshotImage&) = delete;
    SnapshotImage& operator=(const SnapshotImage&) = delete;

    uint64_t sizeBytes() const { return size_; }
    // Reads `len` bytes at byte offset `off` (both multiples of 512, inside the image); discarded ranges read
    // as zeros. Throws CORRUPTION when a record's data does not match its checksum.
    void read(uint64_t off, size_t len, char* out) const;
    // Pieces of the table and stored images indexed, for tests and the export's log.
    size_t extents() const { return extents_.size(); }
    size_t storedImages() const { return images_.size(); }

    // The data of one normal record: `blocks` LB once decompressed, `dataSize` bytes at `dataOffset` in its
    // wdiff.
    struct StoredImage {
        uint64_t dataOffset;
        uint32_t dataSize;
        uint32_t checksum;
        uint32_t blocks;
        uint16_t diff;
        uint8_t compression;
    };
    // Blocks [addr, addr + blocks) hold blocks [skip, skip + blocks) of image `image`, or zeros (kZeros).
    struct Extent {
        uint64_t addr;
        uint32_t blocks;
        uint32_t image;
        uint32_t skip;
        uint64_t end() const { return addr + blocks; }
    };
    static constexpr uint32_t kZeros = UINT32_MAX;

private:
    void readImage(const Extent& e, uint64_t from, uint64_t to, char* out) const;

    File base_;
    uint64_t size_ = 0;
    std::vector<File> diffs_;
    std::vector<StoredImage> images_;
    std::vector<Extent> extents_;  // by address, not overlapping; gaps read from the base
    std::unique_ptr<std::atomic<bool>[]> verified_;
};

}  // namespace walb
