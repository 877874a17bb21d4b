// Diffs in memory and wdiff files (docs/formats.md §5): records, readers, writers of the sorted and indexed
// formats, and the in-memory diff that resolves overlaps (the newest write wins).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/bytes.hpp"
#include "core/compress.hpp"
#include "core/file.hpp"
#include "core/format.hpp"
#include "core/ldev.hpp"
#include "core/stream.hpp"

namespace walb {

enum class DiffKind : uint8_t { Normal, AllZero, Discard };
const char* diffKindName(DiffKind k);
// The kind a record's flags give; throws CORRUPTION (naming `where`) on flags no record may have.
DiffKind kindFromFlags(uint8_t flags, const std::string& where);

struct DiffWindow;

// One diff record with its data uncompressed. The data is a window into a shared buffer, into a pack read
// from a wdiff (window) or into a file (src), so that cutting a record (overlaps, splitting) never copies
// bytes and large diffs need not be in memory.
struct DiffIo {
    uint64_t addr = 0;
    uint32_t blocks = 0;
    DiffKind kind = DiffKind::Normal;
    SharedBytes buf;                           // Normal records held in memory
    std::shared_ptr<const DiffWindow> window;  // Normal records in a pack read from a wdiff (buf is empty)
    const File* src = nullptr;                 // Normal records left in a file (buf and window are empty)
    uint64_t off = 0;  // byte offset of this record's data in *buf, in *src, or in the wdiff of *window
    // csum(data, 0) of exactly this record's data (docs/formats.md §0.2), when known without computing it: a
    // record read whole from a wdiff that stored it uncompressed (its verified stored checksum). A writer
    // storing the data uncompressed reuses it. slice() drops it.
    uint32_t dataSum = 0;
    bool hasDataSum = false;
    // A record in a pack read from a wdiff that stores it compressed (storedCodec not None): its whole stored
    // form at storedOff, which fetch() decompresses (`off` is then within the whole record's data), and which
    // a writer may copy as it is while the record is whole (see isWhole()).
    Compression storedCodec = Compression::None;
    uint64_t storedOff = 0;
    uint32_t storedSize = 0, storedBlocks = 0, storedSum = 0;

    uint64_t end() const { return addr + blocks; }
    size_t bytes() const { return size_t(blocks) * kLbSize; }
    // The record's data: a pointer into buf or window, or read from src into `scratch`.
    const char* fetch(Bytes& scratch) const;
    // The part of this record covering [from, to) (must lie inside it).
    DiffIo slice(uint64_t from, uint64_t to) const;
    // The record stored compressed is all of its stored form (not a part cut from it).
    bool isWhole() const { return off == 0 && blocks == storedBlocks; }
};

// The bytes of a wdiff from file offset `base` on (one pack's data read into a pooled slab, or the whole file
// mapped) that records read from it point into: held, it keeps them valid.
struct DiffWindow {
    std::string path;
    uint64_t base = 0;
    SharedSpan bytes;
    size_t pinned = 0;  // bytes of our memory it keeps (the pack's; 0 for a mapping)
    const char* at(uint64_t fileOffset) const { return bytes.data + (fileOffset - base); }
};

bool isAllZero(const char* p, size_t len);

constexpr uint32_t kDefaultMaxIoBlocks = 2048;

struct DiffWriteOptions {
    Compression compression = Compression::Snappy;
    int level = 0;
    uint32_t maxIoBlocks = kDefaultMaxIoBlocks;  // 0 = never split
    Uuid uuid{};
};

struct DiffStats {
    uint64_t records = 0;
    uint64_t dataBlocks = 0;  // LB covered by normal records
    uint64_t allZeroBlocks = 0;
    uint64_t discardBlocks = 0;
    uint64_t storedBytes = 0;  // compressed payload bytes
    uint64_t fileBytes = 0;
    void count(const DiffIo& io, uint64_t stored);
};

// Records in increasing address order, non-overlapping.
class DiffReader {
public:
    virtual ~DiffReader() = default;
    virtual bool next(DiffIo& io) = 0;
    virtual const Uuid& uuid() const = 0;
};

struct DiffFileInfo {
    uint8_t type = 0;
    Uuid uuid{};
};
DiffFileInfo readDiffFileHeader(const File& file);
// How a sorted reader hands out records stored compressed: decompressed as it reads them (Eager), or as
// their stored form, decompressed by whoever fetches their data (Lazy: a merge copies those it writes whole
// with the same codec without decompressing them).
enum class Decode : uint8_t { Eager, Lazy };
// Where a sorted reader keeps the packs it hands records out of: read into pooled slabs (Read: one copy, the
// fastest way to stream a file), or in a mapping of the file (Mapped: no memory of ours per reader, for a
// merge of more inputs than it reads ahead, where a pack held per input would add up).
enum class PackData : uint8_t { Read, Mapped };
std::unique_ptr<DiffReader> openDiffReader(const std::string& path, Decode decode = Decode::Eager,
                                           PackData packData = PackData::Read);
// Checks one record of a sorted pack (flags, compression, size, data bounds and checksum) and returns its
// kind; throws CORRUPTION. Order and data_offset contiguity are the caller's, who sees the neighbours.
DiffKind checkSortedRecord(const DiffRecordRaw& r, const char* packData, uint32_t packDataSize,
                           const std::string& recordWhere, const std::string& dataWhere);
// The same without the data checksum, for readers that check a record's data only when they read it.
DiffKind checkSortedRecordFields(const DiffRecordRaw& r, uint32_t packDataSize,
                                 const std::string& recordWhere);
// Checks the header block (kDiffPackSize bytes) of the sorted pack at byte `at` of `path` into `h`; false for
// the end pack. Throws CORRUPTION.
bool checkSortedPackHeader(const char* block, const std::string& path, uint64_t at, DiffPackHeaderRaw& h);
// Checks every record of that pack against its data (the pack's total_size bytes, at byte `dataAt`), in
// address order after `lastEnd`, which it advances. Returns the bytes of normal records stored uncompressed.
uint64_t checkSortedPackRecords(const char* block, const char* data, uint64_t& lastEnd,
                                const std::string& path, uint64_t at, uint64_t dataAt);
// Runs `inner` on a thread of its own, a few batches ahead of the consumer (reading, checksums and
// decompression then overlap with whatever the consumer does).
std::unique_ptr<DiffReader> prefetching(std::unique_ptr<DiffReader> inner);

// A record as stored in a file, for `show` and `verify` (no data).
struct StoredRecord {
    uint64_t addr;
    uint32_t blocks;
    DiffKind kind;
    uint8_t compression;
    uint64_t dataOffset;
    uint32_t dataSize;
    uint32_t ioOffset;    // indexed only
    uint32_t origBlocks;  // indexed only
    uint32_t checksum;    // of the stored data: the record's (sorted), the image's (indexed)
};

class SortedDiffReader : public DiffReader {
public:
    explicit SortedDiffReader(const std::string& path, Decode decode = Decode::Eager,
                              PackData packData = PackData::Read);
    bool next(DiffIo& io) override;
    const Uuid& uuid() const override { return uuid_; }
    // Header-level walk: hands each stored record to `fn` without decompressing (data checksums still
    // verified).
    bool nextPack(std::vector<StoredRecord>& out);
    bool sawEndPack() const { return sawEnd_; }

private:
    bool loadPack();
    // The window of the pack data at `off` (`len` bytes, present in the file): a slab or the mapping.
    std::shared_ptr<const DiffWindow> packWindow(uint64_t off, size_t len);
    DiffRecordRaw record(size_t i) const;
    void decodeFrom(size_t first);
    File file_;
    Uuid uuid_{};
    // Packs held at once by a read-ahead queue and a writer's queue (a merge's), about: enough slots that
    // their buffers come back to the pool.
    static constexpr size_t kPoolPacks = 16;
    // Each pack's data is read into a pooled buffer (with the next pack's header): records stored
    // uncompressed (and, with Decode::Lazy, compressed ones) are handed out as windows into it and written
    // out from there.
    PackFileReader packs_;
    std::shared_ptr<const DiffWindow> window_;  // the current pack's
    Decode decode_;
    PackData packData_;
    std::shared_ptr<const DiffWindow> mapping_;  // PackData::Mapped: the whole file as last mapped
    Bytes packHeader_;
    BufferPool pool_;  // declared before the buffer taken from it, so destroyed after
    SharedBytes raw_;  // records [.., rawEnd_) of the current pack needing a copy, uncompressed, back to back
    std::vector<size_t> rawOffset_;
    size_t rawEnd_ = 0;
    uint64_t packDataOffset_ = 0;
    size_t recIdx_ = 0, recCount_ = 0;
    uint64_t lastEnd_ = 0;
    bool done_ = false, sawEnd_ = false;
};

class IndexedDiffReader : public DiffReader {
public:
    explicit IndexedDiffReader(const std::string& path);
    bool next(DiffIo& io) override;
    const Uuid& uuid() const override { return uuid_; }
    bool nextStored(StoredRecord& rec);  // verifies the record, not the image
    uint64_t recordCount() const { return (superOffset_ - indexOffset_) / sizeof(IndexedRecordRaw); }
    // Binary search: index of the first record whose end is above `addr`.
    uint64_t lowerBound(uint64_t addr);
    void seekRecord(uint64_t i);
    const std::string& path() const { return file_.path(); }

private:
    IndexedRecordRaw readRecord(uint64_t i);
    void checkRecord(const IndexedRecordRaw& r, uint64_t fileOffset);
    SharedBytes image(const IndexedRecordRaw& r);
    File file_;
    Uuid uuid_{};
    uint64_t indexOffset_ = 0, superOffset_ = 0;
    uint64_t cursor_ = 0;
    std::unique_ptr<BufferedReader> in_;
    uint64_t lastEnd_ = 0;
    BufferPool pool_;               // before the image taken from it, so destroyed after
    IndexedRecordRaw cachedFor_{};  // the record whose image is cached
    SharedBytes cachedImage_;
    Bytes stored_;
};

class SortedDiffWriter {
public:
    SortedDiffWriter(const std::string& path, const DiffWriteOptions& opt);
    // Records must come in increasing, non-overlapping address order. Longer records are cut at maxIoBlocks.
    void add(const DiffIo& io);
    DiffStats close();  // end pack, fdatasync

private:
    void addOne(const DiffIo& io);
    void flushPack();
    AtomicOutputFile output_;
    DiffWriteOptions opt_;
    std::unique_ptr<AsyncWriter> out_;
    Bytes packHeader_;
    uint64_t packHeaderOffset_ = 0;
    Bytes scratch_, fetched_;
    // The stored record whose data fetched_ holds whole, decompressed (none if decodedMap_ is null).
    std::shared_ptr<const DiffWindow> decodedWindow_;
    uint64_t decodedOff_ = 0;
    uint64_t lastEnd_ = 0;
    DiffStats stats_;
};

class IndexedDiffWriter {
public:
    IndexedDiffWriter(const std::string& path, const DiffWriteOptions& opt);
    // Records in log order (any address); newer ones hide older ones in the index.
    void add(const DiffIo& io);
    DiffStats close();

private:
    struct Entry {
        uint32_t blocks;
        DiffKind kind;
        uint8_t compression;
        uint64_t dataOffset;
        uint32_t dataSize;
        uint32_t ioOffset;
        uint32_t origBlocks;
        uint32_t ioChecksum;
    };
    void insertAligned(uint64_t addr, uint64_t blocks, const Entry& e);
    AtomicOutputFile output_;
    DiffWriteOptions opt_;
    std::unique_ptr<AsyncWriter> out_;
    std::map<uint64_t, Entry> index_;
    Bytes scratch_, fetched_;
    uint32_t nData_ = 0;
    DiffStats stats_;
};

// In-memory diff: non-overlapping records keyed by address; adding a record cuts away what it overlaps.
class DiffMemory {
public:
    explicit DiffMemory(uint32_t maxIoBlocks = kDefaultMaxIoBlocks) : maxIoBlocks_(maxIoBlocks) {}
    void add(const DiffIo& io);
    size_t size() const { return map_.size(); }
    // Memory held: the map's nodes plus the data of records held in memory (file-backed records cost no
    // data).
    uint64_t memoryBytes() const { return map_.size() * 128 + dataBytes_; }
    void clear() {
        map_.clear();
        dataBytes_ = 0;
    }
    template <class F>
    void forEach(F&& fn) const {
        for (const auto& [addr, io] : map_) fn(io);
    }

private:
    void erase(std::map<uint64_t, DiffIo>::iterator it);
    void insert(const DiffIo& io);
    uint32_t maxIoBlocks_;
    std::map<uint64_t, DiffIo> map_;
    uint64_t dataBytes_ = 0;
};

// Streaming k-way merge (inputs oldest first; the newest wins) with one record per input in memory.
void mergeDiffs(std::vector<std::unique_ptr<DiffReader>>& inputs,
                const std::function<void(const DiffIo&)>& emit);

}  // namespace walb
