// Redo (apply) of wlogs and wdiffs onto images, and moving logs between log devices and wlog files.
#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/ops.hpp"
#include "core/read_ahead.hpp"

namespace walb {

DiscardMode discardModeFromName(const std::string& name) {
    if (name == "ignore") return DiscardMode::Ignore;
    if (name == "passdown") return DiscardMode::Passdown;
    if (name == "zero") return DiscardMode::Zero;
    throwError(ErrorCode::InvalidArgument, "unknown discard mode '" + name + "' (ignore, passdown, zero)");
}

namespace {

class ImageWriter {
public:
    ImageWriter(const std::string& path, DiscardMode discard)
        : file_(path, File::Mode::ReadWrite), discard_(discard) {
        size_ = file_.size();
    }
    // Applies one record; `data` holds a normal record's bytes.
    void apply(uint64_t addr, uint32_t blocks, DiffKind kind, const char* data, RedoResult& res) {
        const uint64_t off = addr * kLbSize, len = uint64_t(blocks) * kLbSize;
        if (off + len > size_) {
            throwError(ErrorCode::InvalidArgument, "IO at " + std::to_string(addr) + " LB (+" +
                                                       std::to_string(blocks) + ") is beyond the end of " +
                                                       file_.path() + " (" + std::to_string(size_ / kLbSize) +
                                                       " LB)");
        }
        res.records++;
        switch (kind) {
            case DiffKind::Normal:
                file_.pwriteAll(data, len, off);
                res.writtenBytes += len;
                break;
            case DiffKind::AllZero:
                file_.writeZeroes(off, len);
                res.zeroedBytes += len;
                break;
            case DiffKind::Discard:
                if (discard_ == DiscardMode::Passdown) {
                    if (!file_.discard(off, len)) file_.writeZeroes(off, len);
                } else if (discard_ == DiscardMode::Zero) {
                    file_.writeZeroes(off, len);
                }
                res.discardedBytes += len;
                break;
        }
    }
    void apply(const DiffIo& io, RedoResult& res) {
        apply(io.addr, io.blocks, io.kind, io.kind == DiffKind::Normal ? io.fetch(scratch_) : nullptr, res);
    }
    void sync() { file_.fdatasync(); }

private:
    File file_;
    DiscardMode discard_;
    uint64_t size_;
    Bytes scratch_;
};

// One record of a wlog to apply, with the slab that keeps its data valid.
struct WlogRedoOp {
    uint64_t addr = 0;
    uint32_t blocks = 0;
    DiffKind kind = DiffKind::Normal;
    const char* data = nullptr;
    std::shared_ptr<const void> keep;
    uint64_t readUpTo = 0;  // bytes of the wlog read once this record's pack was (for progress), else 0
};

}  // namespace

RedoResult redoWlog(const std::string& wlog, const std::string& image, DiscardMode discard,
                    const Progress& progress) {
    WlogReader reader(wlog);
    ImageWriter out(image, discard);
    RedoResult res;
    res.beginLsid = reader.header().beginLsid;
    const uint64_t total = std::filesystem::file_size(wlog);
    // Reading and checking the packs (their checksums are most of the CPU that is ours) runs a few packs
    // ahead of the writes, on a thread of its own; nothing is written before its checksum passed. Each pack
    // is read into a pooled slab that its records hold until written (one copy into the image after the
    // read).
    using Ahead = ReadAhead<WlogRedoOp>;
    Logpack p;
    Ahead ahead([&](std::vector<WlogRedoOp>& batch) {
        size_t bytes = 0;
        while (batch.size() < Ahead::kBatchItems && bytes < Ahead::kBatchBytes) {
            SharedSpan data;
            if (!reader.nextShared(p, data)) return false;
            const size_t first = batch.size();
            for (size_t i = 0; i < p.nRecords(); i++) {
                const LogRecordRaw& r = p.record(i);
                if (r.isPadding()) continue;
                const bool isDiscard = r.isDiscard();
                batch.push_back({r.offset, r.io_size, isDiscard ? DiffKind::Discard : DiffKind::Normal,
                                 isDiscard ? nullptr : data.data + p.recordDataOffset(i), data.keep, 0});
                bytes += isDiscard ? 0 : uint64_t(r.io_size) * kLbSize;
            }
            if (batch.size() > first) batch.back().readUpTo = reader.offset();
        }
        return true;
    });
    WlogRedoOp op;
    while (ahead.next(op)) {
        out.apply(op.addr, op.blocks, op.kind, op.data, res);
        if (progress && op.readUpTo != 0) progress(op.readUpTo, total);
    }
    out.sync();
    res.endLsid = reader.endLsid();  // read after the read-ahead ended (next() returned false)
    return res;
}

RedoResult redoWdiff(const std::string& wdiff, const std::string& image, DiscardMode discard,
                     const Progress& progress) {
    // The sorted wdiff's reader reads each pack into a pooled slab: a record stored as it is goes from there
    // straight to the image. It reads and checks a few batches ahead of the writes, on a thread of its own.
    auto reader = prefetching(openDiffReader(wdiff));
    ImageWriter out(image, discard);
    RedoResult res;
    DiffIo io;
    while (reader->next(io)) {
        out.apply(io, res);
        if (progress && (res.records & 1023) == 0) progress(io.end() * kLbSize, 0);
    }
    out.sync();
    return res;
}

ExtractResult extractWlog(const std::string& ldevPath, const std::string& out, uint64_t begin, uint64_t end,
                          const Progress& progress) {
    Ldev ldev(ldevPath, false);
    const SuperSector& s = ldev.super();
    ExtractResult res;
    res.beginLsid = begin == kInvalidLsid ? s.oldestLsid : begin;
    WlogHeader h;
    h.pbs = s.pbs;
    h.salt = s.salt;
    h.uuid = s.uuid;
    h.beginLsid = res.beginLsid;
    h.endLsid = end;
    if (h.beginLsid >= h.endLsid) throwError(ErrorCode::InvalidArgument, "begin lsid must be below end lsid");
    WlogWriter w(out, h);
    uint64_t lsid = res.beginLsid;
    Logpack pack;
    while (lsid < end && ldev.readPack(lsid, pack)) {
        if (pack.nextLsid() > end) {
            throwError(
                ErrorCode::InvalidArgument,
                "end lsid " + std::to_string(end) + " falls inside the logpack at " + std::to_string(lsid));
        }
        size_t bad = pack.firstBadRecord();
        if (bad < pack.nRecords()) {
            pack.shrink(bad);  // a torn pack: keep the records that made it
            res.shrunk = true;
            if (pack.nRecords() > 0) {
                w.append(pack);
                res.packs++;
                res.bytes += pack.headerBlock().size() + pack.data().size();
            }
            lsid = pack.nextLsid();
            break;
        }
        w.append(pack);
        res.packs++;
        res.bytes += pack.headerBlock().size() + pack.data().size();
        lsid = pack.nextLsid();
        if (progress) progress(res.bytes, 0);
    }
    res.endLsid = w.close();
    return res;
}

uint64_t restoreWlog(const std::string& wlog, const std::string& ldevPath, const Progress& progress) {
    WlogReader reader(wlog);
    Ldev ldev(ldevPath, true);
    const WlogHeader& h = reader.header();
    if (ldev.super().pbs != h.pbs)
        throwError(ErrorCode::InvalidArgument, "the wlog's block size differs from the log device's");
    ldev.super().salt = h.salt;
    ldev.super().uuid = h.uuid;
    ldev.super().oldestLsid = ldev.super().writtenLsid = h.beginLsid;
    Logpack pack;
    uint64_t bytes = 0, first = h.beginLsid;
    while (reader.next(pack)) {
        if (reader.endLsid() - first > ldev.super().ringBufferPb) {
            throwError(ErrorCode::InvalidArgument,
                       "the wlog holds more logs than the ring buffer of " + ldevPath);
        }
        ldev.writePack(pack);
        bytes += pack.headerBlock().size() + pack.data().size();
        if (progress) progress(bytes, 0);
    }
    // Mark the end so that a reader stops there even over stale blocks.
    Logpack end(h.pbs, h.salt);
    end.makeEnd();
    if (reader.endLsid() - first < ldev.super().ringBufferPb)
        ldev.writeBlocks(reader.endLsid(), 1, end.headerBlock().data());
    ldev.writeSuper();
    ldev.file().fdatasync();
    return reader.endLsid();
}

}  // namespace walb
