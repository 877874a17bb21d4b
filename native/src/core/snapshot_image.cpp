#include "core/snapshot_image.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/compress.hpp"
#include "core/diff.hpp"
#include "core/error.hpp"

namespace walb {

namespace {

using Extent = SnapshotImage::Extent;
using StoredImage = SnapshotImage::StoredImage;

// The table while it is built: a newer record hides what it overlaps.
class ExtentMap {
public:
    void add(Extent e) {
        auto it = map_.lower_bound(e.addr);
        if (it != map_.begin()) {
            auto prev = std::prev(it);
            if (prev->second.end() > e.addr) {  // starts before e: keep its head, and its tail beyond e
                const Extent old = prev->second;
                prev->second.blocks = static_cast<uint32_t>(e.addr - old.addr);
                if (old.end() > e.end()) map_.emplace(e.end(), cut(old, e.end()));
            }
        }
        while (it != map_.end() && it->first < e.end()) {
            const Extent old = it->second;
            it = map_.erase(it);
            if (old.end() > e.end()) {
                map_.emplace(e.end(), cut(old, e.end()));
                break;
            }
        }
        map_.emplace(e.addr, e);
    }
    std::vector<Extent> take() {
        std::vector<Extent> out;
        out.reserve(map_.size());
        for (const auto& [addr, e] : map_) out.push_back(e);
        map_.clear();
        return out;
    }

private:
    // The part of `e` from `from` on.
    static Extent cut(const Extent& e, uint64_t from) {
        Extent t = e;
        t.addr = from;
        t.blocks = static_cast<uint32_t>(e.end() - from);
        if (e.image != SnapshotImage::kZeros) t.skip += static_cast<uint32_t>(from - e.addr);
        return t;
    }
    std::map<uint64_t, Extent> map_;
};

// Records of a sorted wdiff from its pack headers alone (the data is checked when read).
void indexSorted(const File& f, uint16_t diff, std::vector<StoredImage>& images, ExtentMap& map) {
    const std::string& path = f.path();
    const uint64_t size = f.size();
    Bytes hdr(kDiffPackSize);
    uint64_t off = sizeof(DiffFileHeaderRaw), lastEnd = 0;
    while (off < size) {
        if (off + kDiffPackSize > size)
            throwError(ErrorCode::Truncated, "file ends inside a pack header: " + where(path, off));
        f.preadAll(hdr.data(), kDiffPackSize, off);
        if (!selfChecksumOk(hdr.data(), kDiffPackSize, 0))
            throwError(ErrorCode::Corruption, "pack header checksum mismatch: " + where(path, off));
        DiffPackHeaderRaw h;
        std::memcpy(&h, hdr.data(), sizeof(h));
        if (h.flags & kDiffPackFlagEnd) break;  // EOF at a pack boundary also ends a sorted wdiff
        if (h.n_records == 0 || h.n_records > kMaxDiffRecordsInPack || h.total_size > kDiffPackMaxData)
            throwError(ErrorCode::Corruption, "invalid pack header: " + where(path, off));
        if (off + kDiffPackSize + h.total_size > size)
            throwError(ErrorCode::Truncated, "file ends inside pack data: " + where(path, off));
        for (size_t k = 0; k < h.n_records; k++) {
            const uint64_t at = off + sizeof(h) + k * sizeof(DiffRecordRaw);
            DiffRecordRaw r;
            std::memcpy(&r, hdr.data() + sizeof(h) + k * sizeof(r), sizeof(r));
            const DiffKind kind = checkSortedRecordFields(r, h.total_size, where(path, at));
            if (r.io_address < lastEnd || r.io_address + r.io_blocks < r.io_address)
                throwError(ErrorCode::Corruption, "records are not sorted or overlap: " + where(path, at));
            lastEnd = r.io_address + r.io_blocks;
            if (kind != DiffKind::Normal) {
                map.add({r.io_address, r.io_blocks, SnapshotImage::kZeros, 0});
                continue;
            }
            map.add({r.io_address, r.io_blocks, static_cast<uint32_t>(images.size()), 0});
            images.push_back({off + kDiffPackSize + r.data_offset, r.data_size, r.checksum, r.io_blocks, diff,
                              r.compression_type});
        }
        off += kDiffPackSize + h.total_size;
    }
}

// Records of an indexed wdiff from its index; records cut from one write share its image.
void indexIndexed(const std::string& path, uint16_t diff, std::vector<StoredImage>& images, ExtentMap& map) {
    IndexedDiffReader reader(path);
    StoredRecord r;
    uint64_t lastOffset = UINT64_MAX;
    while (reader.nextStored(r)) {
        if (r.kind != DiffKind::Normal) {
            map.add({r.addr, r.blocks, SnapshotImage::kZeros, 0});
            continue;
        }
        const StoredImage* last = images.empty() ? nullptr : &images.back();
        const bool same = last && last->diff == diff && r.dataOffset == lastOffset &&
                          last->dataSize == r.dataSize && last->checksum == r.checksum &&
                          last->blocks == r.origBlocks && last->compression == r.compression;
        if (!same) {
            images.push_back({r.dataOffset, r.dataSize, r.checksum, r.origBlocks, diff, r.compression});
            lastOffset = r.dataOffset;
        }
        map.add({r.addr, r.blocks, static_cast<uint32_t>(images.size() - 1), r.ioOffset});
    }
}

// Per thread: the stored bytes and the decompressed image of the record being read.
thread_local Bytes tStored, tImage;

}  // namespace

SnapshotImage::SnapshotImage(const std::string& base, const std::vector<std::string>& diffs)
    : base_(base, File::Mode::Read) {
    size_ = base_.size();
    if (diffs.size() > UINT16_MAX)
        throwError(ErrorCode::InvalidArgument, "a snapshot reads at most 65535 wdiffs");
    ExtentMap map;
    for (const auto& d : diffs) {
        const uint16_t idx = static_cast<uint16_t>(diffs_.size());
        diffs_.emplace_back(d, File::Mode::Read);
        const DiffFileInfo info = readDiffFileHeader(diffs_.back());
        if (info.type == kWdiffTypeIndexed)
            indexIndexed(d, idx, images_, map);
        else
            indexSorted(diffs_.back(), idx, images_, map);
        if (images_.size() >= kZeros) throwError(ErrorCode::InvalidArgument, "too many records in the chain");
    }
    extents_ = map.take();
    verified_ = std::make_unique<std::atomic<bool>[]>(images_.size());
}

void SnapshotImage::read(uint64_t off, size_t len, char* out) const {
    if (off % kLbSize || len % kLbSize)
        throwError(ErrorCode::InvalidArgument, "snapshot reads must be 512-byte aligned");
    if (off > size_ || len > size_ - off)
        throwError(ErrorCode::InvalidArgument, "read beyond the end of the snapshot");
    const uint64_t begin = off / kLbSize, end = begin + len / kLbSize;
    auto it = std::partition_point(extents_.begin(), extents_.end(),
                                   [&](const Extent& e) { return e.end() <= begin; });
    uint64_t pos = begin;
    for (; pos < end; it++) {
        const uint64_t next = it == extents_.end() ? end : std::clamp<uint64_t>(it->addr, pos, end);
        if (next > pos)  // a gap: the base's bytes
            base_.preadAll(out + (pos - begin) * kLbSize, size_t(next - pos) * kLbSize, pos * kLbSize);
        if (next == end) break;
        const uint64_t to = std::min(it->end(), end);
        char* dst = out + (next - begin) * kLbSize;
        if (it->image == kZeros)
            std::memset(dst, 0, size_t(to - next) * kLbSize);
        else
            readImage(*it, next, to, dst);
        pos = to;
    }
}

void SnapshotImage::readImage(const Extent& e, uint64_t from, uint64_t to, char* out) const {
    const StoredImage& img = images_[e.image];
    const File& f = diffs_[img.diff];
    const uint64_t first = e.skip + (from - e.addr);  // block of the image
    const size_t n = size_t(to - from) * kLbSize;
    const auto codec = static_cast<Compression>(img.compression);
    if (codec == Compression::None && verified_[e.image].load(std::memory_order_acquire)) {
        f.preadAll(out, n, img.dataOffset + first * kLbSize);
        return;
    }
    tStored.resize(img.dataSize);
    f.preadAll(tStored.data(), img.dataSize, img.dataOffset);
    if (checksum(tStored.data(), img.dataSize, 0) != img.checksum)
        throwError(ErrorCode::Corruption,
                   "record data checksum mismatch: " + where(f.path(), img.dataOffset));
    const size_t imageBytes = size_t(img.blocks) * kLbSize;
    if (codec == Compression::None && img.dataSize != imageBytes)
        throwError(ErrorCode::Corruption,
                   "uncompressed record of the wrong size: " + where(f.path(), img.dataOffset));
    verified_[e.image].store(true, std::memory_order_release);
    const char* bytes = tStored.data();
    if (codec != Compression::None) {
        tImage.resize(imageBytes);
        decompressRecord(codec, tStored.data(), img.dataSize, tImage.data(), imageBytes,
                         where(f.path(), img.dataOffset));
        bytes = tImage.data();
    }
    std::memcpy(out, bytes + first * kLbSize, n);
}

}  // namespace walb
