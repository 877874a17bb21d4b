// The offline operations built on the formats: conversion, merge, redo, virtual full images, hashing and the
// workload generator. Each runs synchronously on the calling (worker) thread and reports progress by
// callback.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "core/bytes.hpp"
#include "core/diff.hpp"
#include "core/wlog.hpp"

namespace walb {

// Called with (done, total) units of work (bytes); total may be 0 when unknown.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct ConvertOptions {
    DiffWriteOptions write;
    bool indexed = false;
    uint64_t memoryLimit = 256ull << 20;  // sorted output: spill the in-memory diff beyond this
    std::string tempDir;                  // for spills; default: the output's directory
};
struct ConvertResult {
    DiffStats stats;
    uint64_t beginLsid = 0, endLsid = 0, packs = 0, inputBytes = 0, spills = 0;
};
ConvertResult wlogToWdiff(const std::vector<std::string>& wlogs, const std::string& out,
                          const ConvertOptions& opt, const Progress& progress = nullptr);

DiffStats mergeWdiffs(const std::vector<std::string>& inputs, const std::string& out,
                      const DiffWriteOptions& opt, const Progress& progress = nullptr);

enum class DiscardMode { Ignore, Passdown, Zero };
DiscardMode discardModeFromName(const std::string& name);

struct RedoResult {
    uint64_t records = 0, writtenBytes = 0, zeroedBytes = 0, discardedBytes = 0;
    uint64_t beginLsid = 0, endLsid = 0;
};
// Applies a wlog (log order) or a wdiff onto an image file or block device, then fdatasync.
RedoResult redoWlog(const std::string& wlog, const std::string& image, DiscardMode discard,
                    const Progress& progress = nullptr);
RedoResult redoWdiff(const std::string& wdiff, const std::string& image, DiscardMode discard,
                     const Progress& progress = nullptr);

// Reads a whole wlog, checking every header and data checksum; counts what it holds.
struct WlogVerifyResult {
    WlogHeader header;
    uint64_t packs = 0, records = 0, paddings = 0, discards = 0, dataBytes = 0, endLsid = 0;
    bool endBlock = false;  // the log ends with an end block, not just at a pack boundary
};
WlogVerifyResult verifyWlog(const std::string& wlog, const Progress& progress = nullptr);
// Reads a whole wdiff (sorted or indexed), checking checksums, record order and decompression.
DiffStats verifyWdiff(const std::string& wdiff, const Progress& progress = nullptr);

// Ranges of a file for hashReader, from several threads at once.
class FileView {
public:
    explicit FileView(const File& f) : file_(f) {}
    // Bytes [off, off + len), read into `buf` (holes as zeros).
    const char* view(uint64_t off, size_t len, Bytes& buf);

private:
    // Whether [off, off + len) holds no hole. SEEK_HOLE walks from `off` to the next hole, which on tmpfs
    // costs time in proportion to the data it passes (the rest of a dense image, for every range: a hash of a
    // 2 GiB image spent most of its time there); one answer serves every range up to that hole.
    bool dense(uint64_t off, uint64_t len);
    const File& file_;
    std::mutex mu_;
    uint64_t denseFrom_ = 0, denseTo_ = 0;  // a range known to hold no hole
};

// A base image with a chain of wdiffs (oldest first) read as one image, without writing anything.
class VirtualFullImage {
public:
    VirtualFullImage(const std::string& base, const std::vector<std::string>& diffs);
    ~VirtualFullImage();
    uint64_t sizeBytes() const { return size_; }
    // Reads `len` bytes at byte offset `off` (both multiples of 512); discarded ranges read as zeros.
    void read(uint64_t off, size_t len, char* out);
    // The same bytes for hashReader, from several threads at once, read into `buf`: from the base alone where
    // no wdiff of the chain has a record, else through the chain.
    const char* view(uint64_t off, size_t len, Bytes& buf);
    struct Source;  // one wdiff of the chain, readable by address range

private:
    File base_;
    FileView baseView_{base_};
    uint64_t size_;
    std::vector<std::unique_ptr<Source>> diffs_;
    Bytes scratch_;
    std::mutex mu_;  // the sources and scratch_, for view()
};

struct HashOptions {
    uint64_t seed = 0;
    uint64_t chunkBytes = 256 << 10;
    uint64_t offset = 0;
    uint64_t length = UINT64_MAX;  // to the end
};
struct HashResult {
    std::vector<uint8_t> chunkHashes;  // 16 bytes per chunk, canonical XXH3-128
    uint8_t whole[16];                 // XXH3-128 of the whole range with the same seed
    uint64_t bytes = 0;
};
HashResult hashImage(const std::string& path, const HashOptions& opt, bool wantChunks,
                     const Progress& progress = nullptr);
// Gives hashReader the `len` bytes at `off`: reads them into `buf` (or finds them elsewhere) and says where
// they are.
using HashView = std::function<const char*(uint64_t off, size_t len, Bytes& buf)>;
// Same over any view of bytes (virtual full images); `parallel` when view may be called from two threads.
HashResult hashReader(const HashView& view, uint64_t size, const HashOptions& opt, bool wantChunks,
                      const Progress& progress, bool parallel);
// The hash of a virtual full image (hashReader over its view, two threads).
HashResult hashVirtualFull(VirtualFullImage& image, const HashOptions& opt, bool wantChunks,
                           const Progress& progress = nullptr);

// Grows an image file from `fromBytes` to `toBytes` (a regular file is extended sparsely; a block device must
// be that large already). With `zeroClear` the new range is written as zeros (fallocate's zero range,
// BLKZEROOUT, or written zeros), so that it holds zeros on any backend. Then fdatasync. Returns the bytes
// zeroed.
uint64_t growImage(const std::string& path, uint64_t fromBytes, uint64_t toBytes, bool zeroClear);

struct GenOptions {
    uint64_t deviceSizeLb = (1ull << 30) / kLbSize;
    uint64_t amountBytes = 64ull << 20;  // data written (discards excluded)
    uint32_t pbs = 512;
    uint32_t minIoLb = 1, maxIoLb = 64;  // rounded to pbs
    double discardRatio = 0.0;
    double allZeroRatio = 0.0;
    double overlapRatio = 0.2;    // chance that an IO lands on a recently written address
    std::string data = "random";  // random | compressible | zero
    uint64_t lsid = 0;
    uint64_t ringBufferPb = 0;  // emulate padding at the end of a ring of this size (0: none)
    uint32_t maxLogpackPb = 0;
    uint32_t maxIosPerPack = 16;
    double flushRatio = 0.05;
    uint64_t seed = 0;  // 0: random
    uint32_t salt = 0;  // 0: random
    bool hasSalt = false;
};
struct GenResult {
    uint64_t beginLsid = 0, endLsid = 0, packs = 0, ios = 0, bytes = 0, discards = 0, paddings = 0;
    uint32_t salt = 0;
};
GenResult generateWlog(const std::string& out, const GenOptions& opt, const Progress& progress = nullptr);

// wlog-cat: copy the logpacks [begin, end) of a log device into a wlog file (end = kInvalidLsid: to the end
// of valid logs). A torn last pack is shrunk, as WalB does.
struct ExtractResult {
    uint64_t beginLsid = 0, endLsid = 0, packs = 0, bytes = 0;
    bool shrunk = false;
};
ExtractResult extractWlog(const std::string& ldev, const std::string& out, uint64_t begin, uint64_t end,
                          const Progress& progress = nullptr);
// Writes the logpacks of a wlog into a log device at their lsids (the device's salt and uuid are replaced by
// the wlog's so the logs validate); oldest/written lsids in the super become the wlog's begin lsid.
uint64_t restoreWlog(const std::string& wlog, const std::string& ldev, const Progress& progress = nullptr);

}  // namespace walb
