// wlog -> wdiff conversion and wdiff merge.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"
#include "core/ops.hpp"

namespace walb {

namespace {

uint64_t fileSize(const std::string& path) {
    std::error_code ec;
    auto n = std::filesystem::file_size(path, ec);
    return ec ? 0 : n;
}

std::string dirOf(const std::string& path) {
    auto p = std::filesystem::path(path).parent_path();
    return p.empty() ? "." : p.string();
}

// Temporary files removed when the conversion ends, whatever way it ends.
class TempFiles {
public:
    explicit TempFiles(std::string dir) : dir_(std::move(dir)) {}
    ~TempFiles() {
        for (const auto& p : paths_) ::unlink(p.c_str());
    }
    std::string make(const char* tag) {
        std::string p = dir_ + "/.walb-" + tag + "-" + std::to_string(::getpid()) + "-" +
                        std::to_string(paths_.size()) + ".tmp";
        paths_.push_back(p);
        return p;
    }
    const std::vector<std::string>& paths() const { return paths_; }

private:
    std::string dir_;
    std::vector<std::string> paths_;
};

// Hands every record of a pack (log order) to fn as a DiffIo; padding is dropped. Normal records point at
// their data in the wlog file itself (read again when written out), so the in-memory diff holds no data;
// with `borrow` they point into the pack's buffer instead, valid only until the next pack is read.
template <class F>
void forEachLogIo(Logpack& pack, const WlogReader& reader, bool borrow, F&& fn) {
    for (size_t i = 0; i < pack.nRecords(); i++) {
        const LogRecordRaw& r = pack.record(i);
        if (r.isPadding()) continue;
        DiffIo io;
        io.addr = r.offset;
        io.blocks = r.io_size;
        if (r.isDiscard()) {
            io.kind = DiffKind::Discard;
        } else {
            const size_t off = pack.recordDataOffset(i);
            const bool zero = isAllZero(pack.data().data() + off, size_t(r.io_size) * kLbSize);
            io.kind = zero ? DiffKind::AllZero : DiffKind::Normal;
            if (!zero && borrow) {
                io.buf = SharedBytes(SharedBytes{}, &pack.data());
                io.off = off;
            } else if (!zero) {
                io.src = &reader.file();
                io.off = reader.packDataOffset() + off;
            }
        }
        fn(io);
    }
}

}  // namespace

ConvertResult wlogToWdiff(const std::vector<std::string>& wlogs, const std::string& out,
                          const ConvertOptions& opt, const Progress& progress) {
    if (wlogs.empty()) throwError(ErrorCode::InvalidArgument, "no input wlog");
    ConvertResult res;
    uint64_t total = 0;
    for (const auto& p : wlogs) total += fileSize(p);
    res.inputBytes = total;

    std::unique_ptr<IndexedDiffWriter> indexed;
    DiffMemory memory(opt.write.maxIoBlocks);
    TempFiles temps(opt.tempDir.empty() ? dirOf(out) : opt.tempDir);
    DiffWriteOptions spillOpt = opt.write;
    spillOpt.compression =
        Compression::None;  // spills are read back once; compressing them would only cost time
    spillOpt.maxIoBlocks = 0;
    auto spill = [&] {
        SortedDiffWriter w(temps.make("spill"), spillOpt);
        memory.forEach([&](const DiffIo& io) { w.add(io); });
        w.close();
        memory.clear();
        res.spills++;
    };

    DiffWriteOptions wopt = opt.write;
    uint64_t done = 0;
    bool first = true;
    Uuid uuid{};
    std::vector<std::unique_ptr<WlogReader>> readers;  // kept open: the in-memory diff refers to their data
    for (const auto& path : wlogs) {
        readers.push_back(std::make_unique<WlogReader>(path));
        WlogReader& reader = *readers.back();
        const WlogHeader& h = reader.header();
        if (first) {
            res.beginLsid = res.endLsid = h.beginLsid;
            uuid = h.uuid;
            wopt.uuid = uuid;
            if (opt.indexed) indexed = std::make_unique<IndexedDiffWriter>(out, wopt);
            first = false;
        } else {
            if (h.uuid != uuid)
                throwError(ErrorCode::InvalidArgument, path + ": uuid differs from the previous wlog");
            if (h.beginLsid != res.endLsid) {
                throwError(ErrorCode::InvalidArgument, path + ": begin lsid " + std::to_string(h.beginLsid) +
                                                           " does not follow the previous wlog's end " +
                                                           std::to_string(res.endLsid));
            }
        }
        Logpack pack;
        while (reader.next(pack)) {
            forEachLogIo(pack, reader, indexed != nullptr, [&](const DiffIo& io) {
                if (indexed)
                    indexed->add(io);
                else
                    memory.add(io);
            });
            res.packs++;
            if (!indexed && memory.memoryBytes() > opt.memoryLimit) spill();
            if (progress) progress(done + reader.offset(), total);
        }
        res.endLsid = reader.endLsid();
        done += fileSize(path);
    }
    if (indexed) {
        res.stats = indexed->close();
    } else if (res.spills == 0) {
        SortedDiffWriter w(out, wopt);
        memory.forEach([&](const DiffIo& io) { w.add(io); });
        res.stats = w.close();
    } else {
        if (memory.size() > 0) spill();
        std::vector<std::unique_ptr<DiffReader>> inputs;
        for (const auto& p : temps.paths()) inputs.push_back(std::make_unique<SortedDiffReader>(p));
        SortedDiffWriter w(out, wopt);
        mergeDiffs(inputs, [&](const DiffIo& io) { w.add(io); });
        res.stats = w.close();
    }
    return res;
}

DiffStats mergeWdiffs(const std::vector<std::string>& inputs, const std::string& out,
                      const DiffWriteOptions& opt, const Progress& progress) {
    if (inputs.empty()) throwError(ErrorCode::InvalidArgument, "no input wdiff");
    // Up to kReadAheadInputs inputs are read (and checked) ahead on threads of their own; the rest of a long
    // run of small wdiffs is read where it is merged, from mappings: more threads than that buy nothing on a
    // few cores, each holds a stack and a few batches, and a pack held in memory per input would add up.
    constexpr size_t kReadAheadInputs = 8;
    std::vector<std::unique_ptr<DiffReader>> readers;
    for (const auto& p : inputs) {
        const bool ahead = readers.size() < kReadAheadInputs;
        auto reader = openDiffReader(p, Decode::Lazy, ahead ? PackData::Read : PackData::Mapped);
        readers.push_back(ahead ? prefetching(std::move(reader)) : std::move(reader));
    }
    DiffWriteOptions wopt = opt;
    wopt.uuid = readers.back()->uuid();  // as WalB: the newest input's uuid
    SortedDiffWriter w(out, wopt);
    uint64_t n = 0;
    mergeDiffs(readers, [&](const DiffIo& io) {
        w.add(io);
        if (progress && (++n & 1023) == 0) progress(io.end() * kLbSize, 0);
    });
    return w.close();
}

}  // namespace walb
