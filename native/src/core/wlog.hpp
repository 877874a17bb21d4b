// wlog files: a 4096-byte header, the logpacks verbatim, then an end block (docs/formats.md §4).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/ldev.hpp"
#include "core/logpack.hpp"
#include "core/stream.hpp"

namespace walb {

struct WlogHeader {
    uint32_t pbs = 512;
    uint32_t salt = 0;
    Uuid uuid{};
    uint64_t beginLsid = 0;
    uint64_t endLsid = kInvalidLsid;

    static WlogHeader parse(const char* block, const std::string& where);
    void serialize(char* block) const;  // 4096 bytes
};

class WlogWriter {
public:
    WlogWriter(const std::string& path, const WlogHeader& header);
    // Packs must follow each other without gaps; packs with no records are skipped.
    void append(const Logpack& pack);
    // Appends the end block, syncs the file. Returns the lsid after the last pack.
    uint64_t close();
    uint64_t nextLsid() const { return nextLsid_; }

private:
    AtomicOutputFile output_;
    WlogHeader header_;
    std::unique_ptr<BufferedWriter> out_;
    uint64_t nextLsid_;
};

// Streaming reader. Strict: a header that fails validation is reported as corruption (except the end block
// and end of file at a pack boundary, which end the log); data checksums of normal records are verified.
class WlogReader {
public:
    explicit WlogReader(const std::string& path);
    const WlogHeader& header() const { return header_; }
    // Reads the next pack; false at the end of the log.
    bool next(Logpack& pack);
    // The same with the pack's data in a pooled slab (read straight into it, no copy) rather than in
    // `pack`: it stays valid for as long as `data` or a copy of it is held, which lets a reader running ahead
    // of whoever applies the records hand them out without copying them. `pack` gets the header only.
    bool nextShared(Logpack& pack, SharedSpan& data);
    uint64_t endLsid() const { return nextLsid_; }  // lsid after the last pack read
    bool sawEndBlock() const { return sawEnd_; }
    uint64_t offset() const { return packs_.offset(); }
    const std::string& path() const { return file_.path(); }
    const File& file() const { return file_; }
    uint64_t packDataOffset() const { return packDataOffset_; }  // file offset of the last pack's data

private:
    // Reads and checks the next header into `pack`, sets `at` to its offset; false at the end of the log.
    bool nextHeader(Logpack& pack, uint64_t& at);
    // Checks the header block read into `pack` at byte `at`; false for a header that ends the log.
    bool acceptHeader(Logpack& pack, uint64_t at);
    // Checks the data checksums of the pack whose header is in `pack` and data at `data`.
    void checkData(const Logpack& pack, const char* data, uint64_t at) const;
    File file_;
    WlogHeader header_;
    // Packs handed out by nextShared() are held by a read-ahead queue (a few MiB of records): enough slabs
    // that they come back to the pool.
    static constexpr size_t kSharedSlabs = 8;
    PackFileReader packs_;
    uint64_t nextLsid_;
    uint64_t packDataOffset_ = 0;
    bool done_ = false;
    bool sawEnd_ = false;
};

}  // namespace walb
