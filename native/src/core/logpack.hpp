// Logpacks: one pbs-sized header block of records followed by the records' data blocks (docs/formats.md §2).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/bytes.hpp"
#include "core/format.hpp"

namespace walb {

// One logpack in memory: the header block and its total_io_size data blocks.
class Logpack {
public:
    Logpack() = default;
    Logpack(uint32_t pbs, uint32_t salt) { reset(pbs, salt, 0); }
    void reset(uint32_t pbs, uint32_t salt, uint64_t lsid);

    uint32_t pbs() const { return pbs_; }
    uint32_t salt() const { return salt_; }
    LogpackHeaderRaw& header() { return *reinterpret_cast<LogpackHeaderRaw*>(headerBlock_.data()); }
    const LogpackHeaderRaw& header() const {
        return *reinterpret_cast<const LogpackHeaderRaw*>(headerBlock_.data());
    }
    LogRecordRaw& record(size_t i) { return records()[i]; }
    const LogRecordRaw& record(size_t i) const { return records()[i]; }
    uint16_t nRecords() const { return header().n_records; }
    uint64_t lsid() const { return header().logpack_lsid; }
    uint64_t nextLsid() const { return nRecords() == 0 ? lsid() : lsid() + 1 + header().total_io_size; }

    Bytes& headerBlock() { return headerBlock_; }
    const Bytes& headerBlock() const { return headerBlock_; }
    Bytes& data() { return data_; }  // total_io_size * pbs bytes
    const Bytes& data() const { return data_; }
    const char* recordData(size_t i) const { return data_.data() + recordDataOffset(i); }
    char* recordData(size_t i) { return data_.data() + recordDataOffset(i); }
    size_t recordDataOffset(size_t i) const { return size_t(record(i).lsid_local - 1) * pbs_; }

    // Recompute the data checksums of normal records and the header checksum (used by writers). A pack whose
    // data is external (spans) keeps the record checksums computed when the records were added.
    void seal();

    // External data: the data blocks as (pointer, bytes) spans in order, instead of data(). The memory
    // belongs to the caller and must outlive the write of the pack.
    using Span = std::pair<const char*, size_t>;
    const std::vector<Span>& spans() const { return spans_; }
    std::vector<Span>& spans() { return spans_; }
    bool externalData() const { return external_; }
    void setExternalData(bool v) { external_ = v; }
    // Validate the header block as a reader must (docs/formats.md §2.6-2.7). Returns "" when valid.
    std::string checkHeader(uint64_t expectedLsid) const;
    // Index of the first normal record whose data checksum is wrong, or nRecords() if all are good.
    size_t firstBadRecord() const { return firstBadRecord(data_.data()); }
    // The same with the pack's data at `data` instead of data() (e.g. in a mapping of a wlog).
    size_t firstBadRecord(const char* data) const;
    // Cut a torn pack down to its first `n` records (docs/formats.md §2.8) and re-seal the header.
    void shrink(size_t n);
    bool isEnd() const { return nRecords() == 0 && lsid() == kInvalidLsid; }
    void makeEnd();  // turn into an end block (logpack_lsid = 2^64-1, no records)

private:
    LogRecordRaw* records() {
        return reinterpret_cast<LogRecordRaw*>(headerBlock_.data() + sizeof(LogpackHeaderRaw));
    }
    const LogRecordRaw* records() const {
        return reinterpret_cast<const LogRecordRaw*>(headerBlock_.data() + sizeof(LogpackHeaderRaw));
    }
    uint32_t pbs_ = 0;
    uint32_t salt_ = 0;
    Bytes headerBlock_;
    Bytes data_;
    std::vector<Span> spans_;
    bool external_ = false;
};

// Builds logpacks by the WalB driver's rules (docs/formats.md §2.4): padding at the ring end so no IO's
// data wraps, discards without log space, and the record, size and max_logpack limits. Shared by the
// userspace device's write path and by the workload generator.
class LogpackBuilder {
public:
    // ringBufferPb = 0 means no ring (no padding ever); maxLogpackPb = 0 means no limit but 65535.
    // copyData = false: packs reference the caller's data as spans (no copy; the caller keeps it alive).
    LogpackBuilder(uint32_t pbs, uint32_t salt, uint64_t ringBufferPb, uint32_t maxLogpackPb, uint64_t lsid,
                   bool copyData = true);

    // Each add returns false when the IO must go to the next pack: call take() and retry on the new pack.
    // `data` holds sizeLb*512 bytes. `flush` marks a request that must come first in its pack.
    bool addWrite(uint64_t offsetLb, uint32_t sizeLb, const void* data, bool flush = false);
    bool addDiscard(uint64_t offsetLb, uint32_t sizeLb, bool flush = false);
    bool empty() const { return pack_.nRecords() == 0; }
    // Seal and hand over the current pack; the builder continues at the pack's next lsid.
    Logpack take();
    uint64_t nextLsid() const { return pack_.lsid() + 1 + pack_.header().total_io_size; }
    const Logpack& current() const { return pack_; }

private:
    LogRecordRaw& appendRecord();
    bool headerFull() const { return pack_.nRecords() >= maxLogRecords(pbs_); }
    uint32_t pbs_;
    uint32_t salt_;
    uint64_t ringBufferPb_;
    uint32_t maxLogpackPb_;
    Logpack pack_;
    bool copyData_ = true;
    bool closed_ = false;  // a padding record ended this pack; the next IO must start a new one
};

}  // namespace walb
