#include "core/logpack.hpp"

#include <algorithm>
#include <cstring>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/error.hpp"

namespace walb {

void Logpack::reset(uint32_t pbs, uint32_t salt, uint64_t lsid) {
    pbs_ = pbs;
    salt_ = salt;
    headerBlock_.assign(pbs, 0);
    data_.clear();
    spans_.clear();
    header().sector_type = kSectorTypeLogpack;
    header().logpack_lsid = lsid;
}

void Logpack::seal() {
    for (size_t i = 0; i < nRecords() && !external_; i++) {
        LogRecordRaw& r = record(i);
        r.checksum = (r.isDiscard() || r.isPadding())
                         ? 0
                         : checksum(recordData(i), size_t(r.io_size) * kLbSize, salt_);
    }
    header().checksum = 0;
    header().checksum = checksum(headerBlock_.data(), pbs_, salt_);
}

void Logpack::makeEnd() {
    std::fill(headerBlock_.begin(), headerBlock_.end(), 0);
    data_.clear();
    header().sector_type = kSectorTypeLogpack;
    header().logpack_lsid = kInvalidLsid;
    header().checksum = checksum(headerBlock_.data(), pbs_, salt_);
}

std::string Logpack::checkHeader(uint64_t expectedLsid) const {
    const LogpackHeaderRaw& h = header();
    if (h.sector_type != kSectorTypeLogpack)
        return "sector_type is " + std::to_string(h.sector_type) + ", not 3";
    if (h.n_records == 0) {
        if (h.total_io_size != 0 || h.n_padding != 0)
            return "empty logpack with non-zero total_io_size or n_padding";
        if (h.logpack_lsid != kInvalidLsid && h.logpack_lsid != expectedLsid) return "logpack_lsid mismatch";
        return "";
    }
    if (h.n_records > maxLogRecords(pbs_))
        return "n_records " + std::to_string(h.n_records) + " exceeds the header";
    if (h.n_padding > 1 || h.n_padding > h.n_records)
        return "n_padding " + std::to_string(h.n_padding) + " invalid";
    if (h.logpack_lsid > kMaxLsid - 1 - h.total_io_size) return "logpack_lsid overflows";
    if (!selfChecksumOk(headerBlock_.data(), pbs_, salt_)) return "header checksum mismatch";
    if (expectedLsid != kInvalidLsid && h.logpack_lsid != expectedLsid) {
        return "logpack_lsid " + std::to_string(h.logpack_lsid) + " where " + std::to_string(expectedLsid) +
               " was expected";
    }
    uint64_t used = 0;
    size_t paddings = 0;
    for (size_t i = 0; i < h.n_records; i++) {
        const LogRecordRaw& r = record(i);
        std::string at = "record " + std::to_string(i) + ": ";
        if (r.isPadding()) paddings++;
        if (!(r.flags & kLogRecordExist)) return at + "EXIST flag not set";
        if (!r.isPadding() && r.io_size == 0) return at + "io_size is 0";
        if (!r.isDiscard() && r.io_size > kMaxNormalIoLb) return at + "io_size exceeds 65535";
        if (r.lsid_local == 0) return at + "lsid_local is 0";
        if (r.lsid > kMaxLsid || r.lsid - r.lsid_local != h.logpack_lsid)
            return at + "lsid does not match lsid_local";
        if (r.hasData()) {
            // Contiguity is what lets readers deal the data blocks out in record order; also keeps reads in
            // bounds.
            if (uint64_t(r.lsid_local) - 1 != used)
                return at + "data is not contiguous with the previous record";
            used += capacityPb(pbs_, r.io_size);
            if (used > h.total_io_size) return at + "data extends beyond total_io_size";
        } else if (uint64_t(r.lsid_local) - 1 != used) {
            return at + "discard is not where the next data would start";  // docs/formats.md §2.3
        }
    }
    if (used != h.total_io_size) return "total_io_size does not match the records";
    // Shrinking recounts n_padding (docs/formats.md §2.8): a header whose count is off would not survive it.
    if (paddings != h.n_padding) {
        return "n_padding " + std::to_string(h.n_padding) + " does not match the " +
               std::to_string(paddings) + " padding records";
    }
    return "";
}

size_t Logpack::firstBadRecord(const char* data) const {
    for (size_t i = 0; i < nRecords(); i++) {
        const LogRecordRaw& r = record(i);
        if (r.isDiscard() || r.isPadding()) continue;
        if (checksum(data + recordDataOffset(i), size_t(r.io_size) * kLbSize, salt_) != r.checksum) return i;
    }
    return nRecords();
}

void Logpack::shrink(size_t n) {
    LogpackHeaderRaw& h = header();
    if (n >= h.n_records) return;
    std::memset(&record(n), 0, sizeof(LogRecordRaw) * (h.n_records - n));
    h.n_records = static_cast<uint16_t>(n);
    uint32_t total = 0;
    uint16_t nPadding = 0;
    for (size_t i = 0; i < n; i++) {
        if (record(i).hasData()) total += static_cast<uint32_t>(capacityPb(pbs_, record(i).io_size));
        if (record(i).isPadding()) nPadding++;
    }
    h.total_io_size = static_cast<uint16_t>(total);
    h.n_padding = nPadding;
    data_.resize(size_t(total) * pbs_);
    h.checksum = 0;
    h.checksum = checksum(headerBlock_.data(), pbs_, salt_);
}

namespace {
// Source of the zero bytes that external-data packs write for padding and block tails.
const char* zeroBytes(size_t n) {
    static const Bytes zeros(1 << 20, 0);
    if (n > zeros.size()) throwError(ErrorCode::InvalidArgument, "zero span too long");
    return zeros.data();
}
void addZeroSpans(std::vector<Logpack::Span>& spans, size_t n) {
    while (n > 0) {
        const size_t k = std::min<size_t>(n, 1 << 20);
        spans.emplace_back(zeroBytes(k), k);
        n -= k;
    }
}
}  // namespace

LogpackBuilder::LogpackBuilder(uint32_t pbs, uint32_t salt, uint64_t ringBufferPb, uint32_t maxLogpackPb,
                               uint64_t lsid, bool copyData)
    : pbs_(pbs),
      salt_(salt),
      ringBufferPb_(ringBufferPb),
      maxLogpackPb_(maxLogpackPb),
      pack_(pbs, salt),
      copyData_(copyData) {
    if (!isValidPbs(pbs))
        throwError(ErrorCode::InvalidArgument, "invalid physical block size " + std::to_string(pbs));
    if (maxLogpackPb_ == 0 || maxLogpackPb_ > kMaxTotalIoPb) maxLogpackPb_ = kMaxTotalIoPb;
    // A pack must fit in the ring (1 + total_io_size <= ring_buffer_size, docs/formats.md §2.4); a longer one
    // would overwrite its own header and need a second padding record.
    if (ringBufferPb_ > 0)
        maxLogpackPb_ = static_cast<uint32_t>(std::min<uint64_t>(maxLogpackPb_, ringBufferPb_ - 1));
    pack_.reset(pbs, salt, lsid);
    pack_.setExternalData(!copyData_);
}

LogRecordRaw& LogpackBuilder::appendRecord() {
    LogpackHeaderRaw& h = pack_.header();
    LogRecordRaw& r = pack_.record(h.n_records);
    std::memset(&r, 0, sizeof(r));
    r.lsid_local = static_cast<uint16_t>(1 + h.total_io_size);
    r.lsid = h.logpack_lsid + r.lsid_local;
    h.n_records++;
    return r;
}

bool LogpackBuilder::addWrite(uint64_t offsetLb, uint32_t sizeLb, const void* data, bool flush) {
    if (sizeLb == 0 || sizeLb > kMaxNormalIoLb) {
        throwError(ErrorCode::InvalidArgument,
                   "write size " + std::to_string(sizeLb) + " LB is out of range");
    }
    const uint32_t ioPb = static_cast<uint32_t>(capacityPb(pbs_, sizeLb));
    if (ringBufferPb_ > 0 && 1 + uint64_t(ioPb) > ringBufferPb_) {
        throwError(ErrorCode::InvalidArgument, "write of " + std::to_string(sizeLb) +
                                                   " LB does not fit in a ring buffer of " +
                                                   std::to_string(ringBufferPb_) + " PB");
    }
    LogpackHeaderRaw& h = pack_.header();
    if (closed_) return false;
    if (h.n_records > 0) {
        if (headerFull() || flush || h.total_io_size + ioPb > maxLogpackPb_) return false;
    }
    if (ringBufferPb_ > 0) {
        const uint64_t start = h.logpack_lsid + 1 + h.total_io_size;
        const uint64_t paddingPb = ringBufferPb_ - start % ringBufferPb_;
        if (paddingPb < ioPb) {
            if (h.total_io_size + paddingPb > kMaxTotalIoPb) return false;
            LogRecordRaw& pad = appendRecord();
            pad.flags = kLogRecordExist | kLogRecordPadding;
            pad.io_size = static_cast<uint32_t>(paddingPb * (pbs_ / kLbSize));
            h.total_io_size = static_cast<uint16_t>(h.total_io_size + paddingPb);
            h.n_padding++;
            if (copyData_) {
                pack_.data().resize(size_t(h.total_io_size) * pbs_, 0);
            } else {
                addZeroSpans(pack_.spans(), size_t(paddingPb) * pbs_);
            }
            if (headerFull() || h.total_io_size + ioPb > maxLogpackPb_) {
                closed_ = true;
                return false;
            }
        }
    }
    LogRecordRaw& r = appendRecord();
    r.flags = kLogRecordExist;
    r.offset = offsetLb;
    r.io_size = sizeLb;
    h.total_io_size = static_cast<uint16_t>(h.total_io_size + ioPb);
    const size_t bytes = size_t(sizeLb) * kLbSize;
    if (copyData_) {
        const size_t at = pack_.data().size();
        pack_.data().resize(size_t(h.total_io_size) * pbs_);
        std::memcpy(pack_.data().data() + at, data, bytes);
        std::memset(pack_.data().data() + at + bytes, 0, size_t(ioPb) * pbs_ - bytes);
    } else {
        r.checksum = checksum(data, bytes, salt_);
        pack_.spans().emplace_back(static_cast<const char*>(data), bytes);
        if (size_t(ioPb) * pbs_ > bytes) addZeroSpans(pack_.spans(), size_t(ioPb) * pbs_ - bytes);
    }
    return true;
}

bool LogpackBuilder::addDiscard(uint64_t offsetLb, uint32_t sizeLb, bool flush) {
    if (sizeLb == 0) throwError(ErrorCode::InvalidArgument, "discard of 0 LB");
    LogpackHeaderRaw& h = pack_.header();
    if (closed_) return false;
    if (h.n_records > 0 && (headerFull() || flush)) return false;
    // lsid_local is 16 bits: a discard after 65535 data blocks cannot be addressed (docs/formats.md §8e).
    if (1u + h.total_io_size > 0xFFFFu) return false;
    LogRecordRaw& r = appendRecord();
    r.flags = kLogRecordExist | kLogRecordDiscard;
    r.offset = offsetLb;
    r.io_size = sizeLb;
    return true;
}

Logpack LogpackBuilder::take() {
    Logpack out = std::move(pack_);
    const uint64_t next = out.nextLsid();
    out.seal();
    pack_ = Logpack(pbs_, salt_);
    pack_.reset(pbs_, salt_, next);
    pack_.setExternalData(!copyData_);
    closed_ = false;
    return out;
}

}  // namespace walb
