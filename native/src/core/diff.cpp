#include "core/diff.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/ops.hpp"

namespace walb {

const char* diffKindName(DiffKind k) {
    switch (k) {
        case DiffKind::Normal:
            return "normal";
        case DiffKind::AllZero:
            return "allzero";
        case DiffKind::Discard:
            return "discard";
    }
    return "?";
}

const char* DiffIo::fetch(Bytes& scratch) const {
    if (buf) return buf->data() + off;
    if (window && storedCodec != Compression::None) {
        const size_t whole = size_t(storedBlocks) * kLbSize;
        if (scratch.size() < whole) scratch.resize(whole);
        decompressRecord(storedCodec, window->at(storedOff), storedSize, scratch.data(), whole,
                         where(window->path, storedOff));
        return scratch.data() + off;
    }
    if (window) return window->at(off);
    if (!src) throwError(ErrorCode::InvalidArgument, "diff record without data");
    if (scratch.size() < bytes()) scratch.resize(bytes());
    src->preadAll(scratch.data(), bytes(), off);
    return scratch.data();
}

DiffIo DiffIo::slice(uint64_t from, uint64_t to) const {
    DiffIo out = *this;
    out.addr = from;
    out.blocks = static_cast<uint32_t>(to - from);
    if (kind == DiffKind::Normal) out.off = off + size_t(from - addr) * kLbSize;
    if (from != addr || to != end()) out.hasDataSum = false;
    return out;
}

bool isAllZero(const char* p, size_t len) {
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        uint64_t w[4];
        std::memcpy(w, p + i, 32);
        if ((w[0] | w[1] | w[2] | w[3]) != 0) return false;
    }
    for (; i < len; i++) {
        if (p[i] != 0) return false;
    }
    return true;
}

void DiffStats::count(const DiffIo& io, uint64_t stored) {
    records++;
    switch (io.kind) {
        case DiffKind::Normal:
            dataBlocks += io.blocks;
            break;
        case DiffKind::AllZero:
            allZeroBlocks += io.blocks;
            break;
        case DiffKind::Discard:
            discardBlocks += io.blocks;
            break;
    }
    storedBytes += stored;
}

DiffKind kindFromFlags(uint8_t flags, const std::string& where) {
    const bool zero = flags & kDiffFlagAllZero, discard = flags & kDiffFlagDiscard;
    if (zero && discard) throwError(ErrorCode::Corruption, "record is both all-zero and discard: " + where);
    if ((flags & ~(kDiffFlagExist | kDiffFlagAllZero | kDiffFlagDiscard)) != 0) {
        throwError(ErrorCode::Corruption, "unknown record flags " + std::to_string(flags) + ": " + where);
    }
    return zero ? DiffKind::AllZero : discard ? DiffKind::Discard : DiffKind::Normal;
}

namespace {

uint8_t flagsFromKind(DiffKind k) {
    return k == DiffKind::AllZero ? kDiffFlagAllZero : k == DiffKind::Discard ? kDiffFlagDiscard : 0;
}

DiffFileHeaderRaw fileHeader(uint8_t type, const Uuid& uuid) {
    DiffFileHeaderRaw h{};
    h.version = kWdiffVersion;
    h.type = type;
    std::memcpy(h.uuid, uuid.data(), 16);
    h.checksum = checksum(&h, sizeof(h), 0);
    return h;
}

void checkOrder(uint64_t& lastEnd, uint64_t addr, uint32_t blocks, const std::string& where) {
    if (addr < lastEnd) {
        throwError(ErrorCode::Corruption, "records are not sorted or overlap (address " +
                                              std::to_string(addr) + " below " + std::to_string(lastEnd) +
                                              "): " + where);
    }
    if (addr + blocks < addr) throwError(ErrorCode::Corruption, "record address overflows: " + where);
    lastEnd = addr + blocks;
}

// Sizes a normal record's data is allocated from, checked first: its raw size is capped (docs/formats.md
// §5.1) and its stored size cannot exceed what its compressor produces at worst for that size.
void checkDataSizes(const char* what, uint32_t blocks, uint8_t code, uint32_t dataSize,
                    const std::string& w) {
    if (blocks > kMaxDiffIoBlocks) {
        throwError(ErrorCode::Corruption, std::string(what) + " of " + std::to_string(blocks) +
                                              " blocks exceeds the limit of " +
                                              std::to_string(kMaxDiffIoBlocks) + " (32 MiB): " + w);
    }
    const auto c = static_cast<Compression>(code);
    const size_t bound = maxStoredSize(c, size_t(blocks) * kLbSize);
    if (dataSize > bound) {
        throwError(ErrorCode::Corruption, "data_size " + std::to_string(dataSize) + " exceeds " +
                                              std::to_string(bound) + ", the most " + std::to_string(blocks) +
                                              " blocks can take stored as " + compressionName(c) + ": " + w);
    }
}

// Largest aligned piece starting at addr within n blocks, capped by maxBlocks (docs/formats.md §5.3).
uint64_t alignedPiece(uint64_t addr, uint64_t n, uint32_t maxBlocks) {
    uint64_t s =
        addr == 0 ? (1ull << 31) : std::min<uint64_t>(uint64_t(1) << std::countr_zero(addr), 1ull << 31);
    if (s > n) s = std::bit_floor(n);
    if (maxBlocks > 0) s = std::min<uint64_t>(s, std::bit_floor(uint64_t(maxBlocks)));
    return s;
}

}  // namespace

DiffFileInfo readDiffFileHeader(const File& file) {
    DiffFileHeaderRaw h;
    file.preadAll(&h, sizeof(h), 0);
    if (!selfChecksumOk(&h, sizeof(h), 0))
        throwError(ErrorCode::Corruption, "wdiff header checksum mismatch: " + where(file.path(), 0));
    if (h.version != kWdiffVersion) {
        throwError(ErrorCode::Corruption,
                   "wdiff version " + std::to_string(h.version) + " is not 2: " + where(file.path(), 4));
    }
    if (h.type != kWdiffTypeSorted && h.type != kWdiffTypeIndexed) {
        throwError(ErrorCode::Corruption,
                   "unknown wdiff type " + std::to_string(h.type) + ": " + where(file.path(), 6));
    }
    DiffFileInfo info;
    info.type = h.type;
    std::memcpy(info.uuid.data(), h.uuid, 16);
    return info;
}

std::unique_ptr<DiffReader> openDiffReader(const std::string& path, Decode decode, PackData packData) {
    File f(path, File::Mode::Read);
    DiffFileInfo info = readDiffFileHeader(f);
    if (info.type == kWdiffTypeIndexed) return std::make_unique<IndexedDiffReader>(path);
    return std::make_unique<SortedDiffReader>(path, decode, packData);
}

// ---- sorted reader

DiffKind checkSortedRecord(const DiffRecordRaw& r, const char* packData, uint32_t packDataSize,
                           const std::string& recordWhere, const std::string& dataWhere) {
    const DiffKind kind = checkSortedRecordFields(r, packDataSize, recordWhere);
    if (kind == DiffKind::Normal && checksum(packData + r.data_offset, r.data_size, 0) != r.checksum)
        throwError(ErrorCode::Corruption, "record data checksum mismatch: " + dataWhere);
    return kind;
}

DiffKind checkSortedRecordFields(const DiffRecordRaw& r, uint32_t packDataSize,
                                 const std::string& recordWhere) {
    const DiffKind kind = kindFromFlags(r.flags, recordWhere);
    if (r.compression_type >= kCompressionCodes)
        throwError(ErrorCode::Corruption, "unknown compression code: " + recordWhere);
    if (r.io_blocks == 0) throwError(ErrorCode::Corruption, "record of 0 blocks: " + recordWhere);
    if (kind != DiffKind::Normal && r.data_size != 0)
        throwError(ErrorCode::Corruption, "data on an all-zero/discard record: " + recordWhere);
    if (kind == DiffKind::Normal)
        checkDataSizes("record", r.io_blocks, r.compression_type, r.data_size, recordWhere);
    if (uint64_t(r.data_offset) + r.data_size > packDataSize)
        throwError(ErrorCode::Corruption, "record data beyond the pack: " + recordWhere);
    return kind;
}

bool checkSortedPackHeader(const char* block, const std::string& path, uint64_t at, DiffPackHeaderRaw& h) {
    if (!selfChecksumOk(block, kDiffPackSize, 0))
        throwError(ErrorCode::Corruption, "pack header checksum mismatch: " + where(path, at));
    std::memcpy(&h, block, sizeof(h));
    if (h.flags & kDiffPackFlagEnd) return false;
    if (h.n_records > kMaxDiffRecordsInPack)
        throwError(ErrorCode::Corruption, "pack has too many records: " + where(path, at));
    if (h.total_size > kDiffPackMaxData)
        throwError(ErrorCode::Corruption, "pack data larger than 32 MiB: " + where(path, at));
    return true;
}

uint64_t checkSortedPackRecords(const char* block, const char* data, uint64_t& lastEnd,
                                const std::string& path, uint64_t at, uint64_t dataAt) {
    DiffPackHeaderRaw h;
    std::memcpy(&h, block, sizeof(h));
    uint32_t expectOffset = 0;
    uint64_t plainBytes = 0;
    for (size_t i = 0; i < h.n_records; i++) {
        DiffRecordRaw r;
        std::memcpy(&r, block + sizeof(DiffPackHeaderRaw) + i * sizeof(r), sizeof(r));
        const std::string w = where(path, at + sizeof(DiffPackHeaderRaw) + i * sizeof(r));
        if (r.data_offset != expectOffset)
            throwError(ErrorCode::Corruption, "record data_offset is not contiguous: " + w);
        const DiffKind kind =
            checkSortedRecord(r, data, h.total_size, w, where(path, dataAt + r.data_offset));
        checkOrder(lastEnd, r.io_address, r.io_blocks, w);
        expectOffset += r.data_size;
        if (kind == DiffKind::Normal && r.compression_type == 0) plainBytes += r.data_size;
    }
    return plainBytes;
}

SortedDiffReader::SortedDiffReader(const std::string& path, Decode decode, PackData packData)
    : file_(path, File::Mode::Read),
      packs_(file_, sizeof(DiffFileHeaderRaw), kDiffPackSize, kPoolPacks),
      decode_(decode),
      packData_(packData) {
    DiffFileInfo info = readDiffFileHeader(file_);
    if (info.type != kWdiffTypeSorted)
        throwError(ErrorCode::InvalidArgument, path + " is not a sorted wdiff");
    uuid_ = info.uuid;
    packHeader_.resize(kDiffPackSize);
}

bool SortedDiffReader::loadPack() {
    if (done_) return false;
    const uint64_t at = packs_.offset();
    if (!packs_.readHeader(packHeader_.data(), "a pack header")) {  // EOF at a pack boundary also ends it
        done_ = true;
        return false;
    }
    DiffPackHeaderRaw h;
    if (!checkSortedPackHeader(packHeader_.data(), file_.path(), at, h)) {
        done_ = sawEnd_ = true;
        return false;
    }
    packDataOffset_ = packs_.offset();
    window_ = packWindow(packDataOffset_, h.total_size);
    raw_.reset();
    checkSortedPackRecords(packHeader_.data(), window_->at(packDataOffset_), lastEnd_, file_.path(), at,
                           packDataOffset_);
    recIdx_ = 0;
    recCount_ = h.n_records;
    rawEnd_ = 0;
    return true;
}

std::shared_ptr<const DiffWindow> SortedDiffReader::packWindow(uint64_t off, size_t len) {
    if (packData_ == PackData::Read) {
        auto window = std::make_shared<DiffWindow>();
        window->path = file_.path();
        window->base = off;
        window->bytes = packs_.readShared(len, "pack data");
        window->pinned = len;
        return window;
    }
    packs_.requireAvailable(len, "pack data");
    if (!mapping_ || mapping_->bytes.size < off + len) {  // first pack, or the file grew since it was mapped
        auto map = std::make_shared<FileMapping>();
        const uint64_t size = file_.size();
        if (!map->map(file_, 0, static_cast<size_t>(size)))
            throwError(ErrorCode::IoError, "cannot map " + file_.path() + ": " + std::strerror(errno));
        auto window = std::make_shared<DiffWindow>();
        window->path = file_.path();
        window->bytes = {map->data(), static_cast<size_t>(size), map};
        mapping_ = std::move(window);
    }
    packs_.skip(len);
    return mapping_;
}

DiffRecordRaw SortedDiffReader::record(size_t i) const {
    DiffRecordRaw r;
    std::memcpy(&r, packHeader_.data() + sizeof(DiffPackHeaderRaw) + i * sizeof(r), sizeof(r));
    return r;
}

bool SortedDiffReader::next(DiffIo& io) {
    while (recIdx_ == recCount_) {
        if (!loadPack()) return false;
    }
    const DiffRecordRaw r = record(recIdx_);
    const size_t i = recIdx_++;
    io.addr = r.io_address;
    io.blocks = r.io_blocks;
    io.kind = kindFromFlags(r.flags, file_.path());
    io.off = 0;
    io.src = nullptr;
    io.buf.reset();
    io.window.reset();
    io.hasDataSum = false;
    io.storedCodec = Compression::None;
    if (io.kind == DiffKind::Normal) {
        if (r.compression_type == 0) {
            io.dataSum = r.checksum;  // verified by loadPack, and the stored bytes are the data
            io.hasDataSum = true;
        }
        if (r.compression_type == 0) {
            // What decompressRecord checks of a record stored as it is.
            if (r.data_size != io.bytes()) {
                throwError(ErrorCode::Corruption,
                           "cannot decompress (none): stored size differs from the record size: " +
                               where(file_.path(), packDataOffset_ + r.data_offset));
            }
            io.window = window_;
            io.off = packDataOffset_ + r.data_offset;
        } else if (decode_ == Decode::Lazy) {
            io.window = window_;
            io.storedCodec = static_cast<Compression>(r.compression_type);
            io.storedOff = packDataOffset_ + r.data_offset;
            io.storedSize = r.data_size;
            io.storedBlocks = r.io_blocks;
            io.storedSum = r.checksum;
        } else {
            if (!raw_ || i >= rawEnd_) decodeFrom(i);
            io.buf = raw_;
            io.off = rawOffset_[i];
        }
    }
    return true;
}

// Uncompresses the compressed records of the current pack from record `first` on into one pooled buffer,
// which they share without copies: as many as fit in kDiffPackMaxData bytes, and always record `first`
// itself. A pack may hold 127 records of up to 32 MiB each; decoding a window at a time keeps a reader's
// memory at one window whatever a pack claims. Records stored uncompressed are read from the pack's window.
void SortedDiffReader::decodeFrom(size_t first) {
    raw_.reset();
    rawOffset_.resize(recCount_);
    size_t total = 0, end = first;
    auto skip = [&](const DiffRecordRaw& r) {
        return (r.flags & (kDiffFlagAllZero | kDiffFlagDiscard)) || r.compression_type == 0;
    };
    for (; end < recCount_; end++) {
        const DiffRecordRaw r = record(end);
        if (skip(r)) continue;
        const size_t n = size_t(r.io_blocks) * kLbSize;  // at most 32 MiB, checked by loadPack
        if (end > first && total + n > kDiffPackMaxData) break;
        rawOffset_[end] = total;
        total += n;
    }
    auto buf = pool_.acquire(total);
    for (size_t i = first; i < end; i++) {
        const DiffRecordRaw r = record(i);
        if (skip(r)) continue;
        decompressRecord(static_cast<Compression>(r.compression_type),
                         window_->at(packDataOffset_ + r.data_offset), r.data_size,
                         buf->data() + rawOffset_[i], size_t(r.io_blocks) * kLbSize,
                         where(file_.path(), packDataOffset_ + r.data_offset));
    }
    raw_ = std::move(buf);
    rawEnd_ = end;
}

bool SortedDiffReader::nextPack(std::vector<StoredRecord>& out) {
    out.clear();
    if (!loadPack()) return false;
    for (size_t i = 0; i < recCount_; i++) {
        const DiffRecordRaw r = record(i);
        out.push_back({r.io_address, r.io_blocks, kindFromFlags(r.flags, file_.path()), r.compression_type,
                       packDataOffset_ + r.data_offset, r.data_size, 0, 0, r.checksum});
    }
    recIdx_ = recCount_;
    return true;
}

// ---- indexed reader

IndexedDiffReader::IndexedDiffReader(const std::string& path) : file_(path, File::Mode::Read) {
    DiffFileInfo info = readDiffFileHeader(file_);
    if (info.type != kWdiffTypeIndexed)
        throwError(ErrorCode::InvalidArgument, path + " is not an indexed wdiff");
    uuid_ = info.uuid;
    const uint64_t size = file_.size();
    if (size < sizeof(DiffFileHeaderRaw) + sizeof(IndexSuperRaw)) {
        throwError(ErrorCode::Truncated, "indexed wdiff too short for its trailer: " + where(path, size));
    }
    superOffset_ = size - sizeof(IndexSuperRaw);
    IndexSuperRaw s;
    file_.preadAll(&s, sizeof(s), superOffset_);
    if (!selfChecksumOk(&s, sizeof(s), 0))
        throwError(ErrorCode::Corruption,
                   "index trailer checksum mismatch (truncated file?): " + where(path, superOffset_));
    if (s.index_offset < sizeof(DiffFileHeaderRaw) || s.index_offset > superOffset_ ||
        s.index_offset % 8 != 0 || (superOffset_ - s.index_offset) % sizeof(IndexedRecordRaw) != 0) {
        throwError(ErrorCode::Corruption, "index_offset " + std::to_string(s.index_offset) +
                                              " is invalid: " + where(path, superOffset_));
    }
    indexOffset_ = s.index_offset;
    seekRecord(0);
}

void IndexedDiffReader::seekRecord(uint64_t i) {
    cursor_ = i;
    in_ = std::make_unique<BufferedReader>(file_, indexOffset_ + i * sizeof(IndexedRecordRaw), 1u << 20);
    lastEnd_ = 0;
}

void IndexedDiffReader::checkRecord(const IndexedRecordRaw& r, uint64_t at) {
    const std::string w = where(file_.path(), at);
    if (!selfChecksumOk(&r, sizeof(r), 0))
        throwError(ErrorCode::Corruption, "index record checksum mismatch: " + w);
    DiffKind kind = kindFromFlags(r.flags, w);
    if (r.compression_type >= kCompressionCodes)
        throwError(ErrorCode::Corruption, "unknown compression code: " + w);
    if (r.io_blocks == 0) throwError(ErrorCode::Corruption, "index record of 0 blocks: " + w);
    if (kind == DiffKind::Normal) {
        if (uint64_t(r.io_offset) + r.io_blocks > r.orig_blocks)
            throwError(ErrorCode::Corruption, "index record range beyond its image: " + w);
        // The image must lie in the data area, which also bounds data_size by the file's size. (Compared so
        // that data_offset + data_size cannot wrap around 2^64.)
        if (r.data_offset < sizeof(DiffFileHeaderRaw) || r.data_offset > indexOffset_ ||
            r.data_size > indexOffset_ - r.data_offset) {
            throwError(ErrorCode::Corruption, "index record image outside the data area: " + w);
        }
        checkDataSizes("image", r.orig_blocks, r.compression_type, r.data_size, w);
    }
}

IndexedRecordRaw IndexedDiffReader::readRecord(uint64_t i) {
    IndexedRecordRaw r;
    const uint64_t at = indexOffset_ + i * sizeof(r);
    file_.preadAll(&r, sizeof(r), at);
    checkRecord(r, at);
    return r;
}

uint64_t IndexedDiffReader::lowerBound(uint64_t addr) {
    uint64_t lo = 0, hi = recordCount();
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        IndexedRecordRaw r = readRecord(mid);
        if (r.io_address + r.io_blocks <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool IndexedDiffReader::nextStored(StoredRecord& rec) {
    if (cursor_ >= recordCount()) return false;
    IndexedRecordRaw r;
    const uint64_t at = in_->offset();
    in_->readExact(&r, sizeof(r), "index record");
    checkRecord(r, at);
    checkOrder(lastEnd_, r.io_address, r.io_blocks, where(file_.path(), at));
    cursor_++;
    rec = {r.io_address,       r.io_blocks,   kindFromFlags(r.flags, file_.path()),
           r.compression_type, r.data_offset, r.data_size,
           r.io_offset,        r.orig_blocks, r.io_checksum};
    return true;
}

// The image a record names, decoded; records cut from one write share it. The cache is used only by a record
// that describes the image exactly as the one it was decoded for (a record claiming another size, codec or
// checksum for the same bytes is checked on its own claims, and its range never runs past the buffer).
SharedBytes IndexedDiffReader::image(const IndexedRecordRaw& r) {
    const IndexedRecordRaw& c = cachedFor_;
    if (cachedImage_ && r.data_offset == c.data_offset && r.data_size == c.data_size &&
        r.orig_blocks == c.orig_blocks && r.compression_type == c.compression_type &&
        r.io_checksum == c.io_checksum) {
        return cachedImage_;
    }
    cachedImage_.reset();
    if (stored_.size() < r.data_size) stored_.resize(r.data_size);
    file_.preadAll(stored_.data(), r.data_size, r.data_offset);
    const std::string w = where(file_.path(), r.data_offset);
    if (checksum(stored_.data(), r.data_size, 0) != r.io_checksum)
        throwError(ErrorCode::Corruption, "image checksum mismatch: " + w);
    auto img = pool_.acquire(size_t(r.orig_blocks) * kLbSize);
    decompressRecord(static_cast<Compression>(r.compression_type), stored_.data(), r.data_size, img->data(),
                     size_t(r.orig_blocks) * kLbSize, w);
    cachedFor_ = r;
    cachedImage_ = img;
    return img;
}

bool IndexedDiffReader::next(DiffIo& io) {
    if (cursor_ >= recordCount()) return false;
    IndexedRecordRaw r;
    const uint64_t at = in_->offset();
    in_->readExact(&r, sizeof(r), "index record");
    checkRecord(r, at);
    checkOrder(lastEnd_, r.io_address, r.io_blocks, where(file_.path(), at));
    cursor_++;
    io.addr = r.io_address;
    io.blocks = r.io_blocks;
    io.kind = kindFromFlags(r.flags, file_.path());
    io.buf.reset();
    io.src = nullptr;
    io.off = 0;
    io.hasDataSum = false;
    if (io.kind == DiffKind::Normal) {
        io.buf = image(r);
        io.off = size_t(r.io_offset) * kLbSize;
        if (r.compression_type == 0 && r.io_offset == 0 && r.io_blocks == r.orig_blocks) {
            io.dataSum = r.io_checksum;  // verified by image(): the stored image is this record's data
            io.hasDataSum = true;
        }
    }
    return true;
}

// ---- sorted writer

SortedDiffWriter::SortedDiffWriter(const std::string& path, const DiffWriteOptions& opt)
    : output_(path), opt_(opt) {
    out_ = std::make_unique<AsyncWriter>(output_.file(), 0);
    DiffFileHeaderRaw h = fileHeader(kWdiffTypeSorted, opt.uuid);
    out_->write(&h, sizeof(h));
    packHeader_.assign(kDiffPackSize, 0);
}

void SortedDiffWriter::add(const DiffIo& io) {
    if (io.blocks == 0) return;
    if (io.addr < lastEnd_) {
        throwError(ErrorCode::InvalidArgument, "sorted wdiff records must be added in address order (" +
                                                   std::to_string(io.addr) + " < " +
                                                   std::to_string(lastEnd_) + ")");
    }
    lastEnd_ = io.end();
    if (opt_.maxIoBlocks == 0 || io.blocks <= opt_.maxIoBlocks) return addOne(io);
    for (uint64_t a = io.addr; a < io.end(); a += opt_.maxIoBlocks)
        addOne(io.slice(a, std::min(io.end(), a + opt_.maxIoBlocks)));
}

void SortedDiffWriter::addOne(const DiffIo& io) {
    auto* h = reinterpret_cast<DiffPackHeaderRaw*>(packHeader_.data());
    uint8_t code = 0;
    const char* stored = nullptr;
    size_t storedSize = 0;
    const bool asStored =
        io.kind == DiffKind::Normal && io.storedCodec == opt_.compression && io.isWhole() &&
        compressesAsStored(io.storedCodec, io.window->at(io.storedOff), io.storedSize, io.bytes());
    if (asStored) {
        code = static_cast<uint8_t>(io.storedCodec);
        stored = io.window->at(io.storedOff);
        storedSize = io.storedSize;
    } else if (io.kind == DiffKind::Normal) {
        // The pieces cut from one stored record (overlaps, maxIoBlocks) decompress it once.
        const bool decoded =
            io.storedCodec != Compression::None && io.window == decodedWindow_ && io.storedOff == decodedOff_;
        const char* raw = decoded ? fetched_.data() + io.off : io.fetch(fetched_);
        decodedWindow_ = io.storedCodec != Compression::None ? io.window : nullptr;
        decodedOff_ = io.storedOff;
        const Compressed z = compressRecord(opt_.compression, opt_.level, raw, io.bytes(), scratch_);
        code = static_cast<uint8_t>(z.code);
        stored = code == 0 ? raw : z.data;
        storedSize = code == 0 ? io.bytes() : z.size;
    }
    if (h->n_records > 0 &&
        (h->n_records == kMaxDiffRecordsInPack || h->total_size + storedSize > kDiffPackMaxData)) {
        flushPack();
    }
    // The pack header is written once the pack is complete; its place is kept before the data.
    if (h->n_records == 0) packHeaderOffset_ = out_->reserve(kDiffPackSize);
    DiffRecordRaw r{};
    r.io_address = io.addr;
    r.io_blocks = io.blocks;
    r.flags = flagsFromKind(io.kind);
    r.compression_type = code;
    r.data_offset = h->total_size;
    r.data_size = static_cast<uint32_t>(storedSize);
    r.checksum = storedSize == 0              ? 0
                 : asStored                   ? io.storedSum
                 : code == 0 && io.hasDataSum ? io.dataSum
                                              : checksum(stored, storedSize, 0);
    std::memcpy(packHeader_.data() + sizeof(DiffPackHeaderRaw) + h->n_records * sizeof(r), &r, sizeof(r));
    h->n_records++;
    h->total_size += static_cast<uint32_t>(storedSize);
    // Bytes stored as they are in a buffer someone owns or in a pack's window are written from there; a
    // borrowed buffer (no owner) or the fetch scratch may change before the write, so those are copied.
    if (code == 0 && io.buf && io.buf.use_count() > 0)
        out_->writeShared(io.buf, io.buf->size(), stored, storedSize);
    else if (asStored || (code == 0 && io.window && io.storedCodec == Compression::None))
        out_->writeShared(io.window, io.window->pinned, stored, storedSize);
    else
        out_->write(stored, storedSize);
    stats_.count(io, storedSize);
}

void SortedDiffWriter::flushPack() {
    auto* h = reinterpret_cast<DiffPackHeaderRaw*>(packHeader_.data());
    h->checksum = 0;
    h->checksum = checksum(packHeader_.data(), kDiffPackSize, 0);
    out_->patch(packHeaderOffset_, packHeader_.data(), kDiffPackSize);
    std::fill(packHeader_.begin(), packHeader_.end(), 0);
}

DiffStats SortedDiffWriter::close() {
    auto* h = reinterpret_cast<DiffPackHeaderRaw*>(packHeader_.data());
    if (h->n_records > 0) flushPack();
    packHeaderOffset_ = out_->reserve(kDiffPackSize);
    h->flags = kDiffPackFlagEnd;
    flushPack();
    out_->flush();
    stats_.fileBytes = out_->offset();
    output_.commit();
    return stats_;
}

// ---- indexed writer

IndexedDiffWriter::IndexedDiffWriter(const std::string& path, const DiffWriteOptions& opt)
    : output_(path), opt_(opt) {
    out_ = std::make_unique<AsyncWriter>(output_.file(), 0);
    DiffFileHeaderRaw h = fileHeader(kWdiffTypeIndexed, opt.uuid);
    out_->write(&h, sizeof(h));
}

void IndexedDiffWriter::insertAligned(uint64_t addr, uint64_t blocks, const Entry& e) {
    uint64_t a = addr;
    while (a < addr + blocks) {
        uint64_t s = alignedPiece(a, addr + blocks - a, opt_.maxIoBlocks);
        Entry piece = e;
        piece.blocks = static_cast<uint32_t>(s);
        // Where the piece starts inside the original IO, with or without data, as WalB's writer records it.
        piece.ioOffset = e.ioOffset + static_cast<uint32_t>(a - addr);
        index_.emplace(a, piece);
        a += s;
    }
}

void IndexedDiffWriter::add(const DiffIo& io) {
    if (io.blocks == 0) return;
    Entry e{io.blocks, io.kind, 0, out_->offset(), 0, 0, 0, 0};
    if (io.kind == DiffKind::Normal) {
        const char* raw = io.fetch(fetched_);
        const Compressed z = compressRecord(opt_.compression, opt_.level, raw, io.bytes(), scratch_);
        e.compression = static_cast<uint8_t>(z.code);
        const char* stored = e.compression == 0 ? raw : z.data;
        e.dataSize = static_cast<uint32_t>(e.compression == 0 ? io.bytes() : z.size);
        e.origBlocks = io.blocks;
        e.ioChecksum = checksum(stored, e.dataSize, 0);
        out_->write(stored, e.dataSize);
    }
    nData_++;
    stats_.storedBytes += e.dataSize;
    // Older entries lose whatever the new record covers; their remainders are re-split aligned.
    const uint64_t start = io.addr, end = io.end();
    auto it = index_.lower_bound(start);
    if (it != index_.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second.blocks > start) it = prev;
    }
    std::vector<std::pair<uint64_t, Entry>> cut;
    while (it != index_.end() && it->first < end) {
        cut.emplace_back(it->first, it->second);
        it = index_.erase(it);
    }
    for (const auto& [a, x] : cut) {
        const uint64_t xEnd = a + x.blocks;
        if (a < start) insertAligned(a, start - a, x);
        if (xEnd > end) {
            Entry right = x;
            right.ioOffset = x.ioOffset + static_cast<uint32_t>(end - a);
            insertAligned(end, xEnd - end, right);
        }
    }
    insertAligned(start, io.blocks, e);
}

DiffStats IndexedDiffWriter::close() {
    uint64_t off = out_->offset();
    static const char zeros[8] = {};
    if (off % 8) out_->write(zeros, 8 - off % 8);
    const uint64_t indexOffset = out_->offset();
    for (const auto& [addr, e] : index_) {
        IndexedRecordRaw r{};
        r.io_address = addr;
        r.io_blocks = e.blocks;
        r.flags = flagsFromKind(e.kind);
        r.compression_type = e.compression;
        r.data_offset = e.dataOffset;
        r.data_size = e.dataSize;
        r.io_offset = e.ioOffset;
        r.orig_blocks = e.origBlocks;
        r.io_checksum = e.ioChecksum;
        r.rec_checksum = checksum(&r, sizeof(r), 0);
        out_->write(&r, sizeof(r));
        stats_.records++;
        if (e.kind == DiffKind::Normal)
            stats_.dataBlocks += e.blocks;
        else if (e.kind == DiffKind::AllZero)
            stats_.allZeroBlocks += e.blocks;
        else
            stats_.discardBlocks += e.blocks;
    }
    IndexSuperRaw s{};
    s.index_offset = indexOffset;
    s.n_records = static_cast<uint32_t>(index_.size());
    s.n_data = nData_;
    s.checksum = checksum(&s, sizeof(s), 0);
    out_->write(&s, sizeof(s));
    out_->flush();
    stats_.fileBytes = out_->offset();
    output_.commit();
    return stats_;
}

// ---- memory diff

void DiffMemory::erase(std::map<uint64_t, DiffIo>::iterator it) {
    dataBytes_ -= it->second.buf ? it->second.bytes() : 0;
    map_.erase(it);
}

void DiffMemory::insert(const DiffIo& io) {
    dataBytes_ += io.buf ? io.bytes() : 0;
    map_.emplace_hint(map_.end(), io.addr, io);
}

void DiffMemory::add(const DiffIo& io) {
    if (io.blocks == 0) return;
    const uint64_t start = io.addr, end = io.end();
    auto it = map_.lower_bound(start);
    if (it != map_.begin()) {
        auto prev = std::prev(it);
        if (prev->second.end() > start) it = prev;
    }
    std::vector<DiffIo> keep;
    while (it != map_.end() && it->first < end) {
        const DiffIo x = it->second;
        auto nextIt = std::next(it);
        erase(it);
        it = nextIt;
        if (x.addr < start) keep.push_back(x.slice(x.addr, start));
        if (x.end() > end) keep.push_back(x.slice(end, x.end()));
    }
    for (const DiffIo& k : keep) insert(k);
    if (maxIoBlocks_ == 0 || io.blocks <= maxIoBlocks_) {
        insert(io);
    } else {
        for (uint64_t a = start; a < end; a += maxIoBlocks_)
            insert(io.slice(a, std::min(end, a + maxIoBlocks_)));
    }
}

// ---- merge

void mergeDiffs(std::vector<std::unique_ptr<DiffReader>>& inputs,
                const std::function<void(const DiffIo&)>& emit) {
    const size_t n = inputs.size();
    std::vector<DiffIo> cur(n);
    std::vector<bool> has(n);
    for (size_t i = 0; i < n; i++) has[i] = inputs[i]->next(cur[i]);
    uint64_t pos = 0;
    for (;;) {
        // Drop what lies before pos; pick the lowest start.
        uint64_t a = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            while (has[i] && cur[i].end() <= pos) has[i] = inputs[i]->next(cur[i]);
            if (!has[i]) continue;
            if (cur[i].addr < pos) cur[i] = cur[i].slice(pos, cur[i].end());
            a = std::min(a, cur[i].addr);
        }
        if (a == UINT64_MAX) return;
        // The newest input starting at `a` wins until its end or until a newer input starts.
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (has[i] && cur[i].addr == a) w = i;
        }
        uint64_t e = cur[w].end();
        for (size_t j = w + 1; j < n; j++) {
            if (has[j]) e = std::min(e, cur[j].addr);
        }
        emit(e == cur[w].end() && cur[w].addr == a ? cur[w] : cur[w].slice(a, e));
        pos = e;
    }
}

}  // namespace walb
