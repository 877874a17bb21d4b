#include "core/ldev.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/error.hpp"

namespace walb {

std::string hexString(const uint8_t* p, size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; i++) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

void randomBytes(void* buf, size_t len) {
    auto* p = static_cast<char*>(buf);
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) throwError(ErrorCode::IoError, "getrandom failed");
        p += r;
        len -= static_cast<size_t>(r);
    }
}

SuperSector SuperSector::parse(const char* block, uint32_t pbs, const std::string& where) {
    SuperSectorRaw raw;
    std::memcpy(&raw, block, sizeof(raw));
    auto bad = [&](const std::string& why) {
        throwError(ErrorCode::Corruption, "invalid super sector in " + where + ": " + why);
    };
    if (!selfChecksumOk(block, pbs, 0)) bad("checksum mismatch");
    if (raw.sector_type != kSectorTypeSuper)
        bad("sector_type is " + std::to_string(raw.sector_type) + ", not 1");
    if (raw.version != kWalbLogVersion) bad("version is " + std::to_string(raw.version) + ", not 2");
    if (raw.physical_bs != pbs)
        bad("physical_bs " + std::to_string(raw.physical_bs) + " differs from " + std::to_string(pbs));
    if (raw.logical_bs != kLbSize) bad("logical_bs is not 512");
    if (raw.metadata_size != 0) bad("metadata_size is not 0 (unsupported)");
    if (::strnlen(raw.name, kDevNameMax) >= kDevNameMax) bad("name is not NUL-terminated");
    if (raw.oldest_lsid == kInvalidLsid || raw.written_lsid == kInvalidLsid)
        bad("oldest or written lsid invalid");
    if (raw.oldest_lsid > raw.written_lsid) bad("oldest_lsid is beyond written_lsid");
    if (raw.ring_buffer_size == 0) bad("ring_buffer_size is 0");
    SuperSector s;
    s.pbs = pbs;
    s.salt = raw.log_checksum_salt;
    std::memcpy(s.uuid.data(), raw.uuid, 16);
    s.name = std::string(raw.name, ::strnlen(raw.name, kDevNameMax));
    s.ringBufferPb = raw.ring_buffer_size;
    s.oldestLsid = raw.oldest_lsid;
    s.writtenLsid = raw.written_lsid;
    s.deviceSizeLb = raw.device_size;
    return s;
}

void SuperSector::serialize(char* block) const {
    std::memset(block, 0, pbs);
    SuperSectorRaw raw{};
    raw.sector_type = kSectorTypeSuper;
    raw.version = kWalbLogVersion;
    raw.logical_bs = kLbSize;
    raw.physical_bs = pbs;
    raw.metadata_size = 0;
    raw.log_checksum_salt = salt;
    std::memcpy(raw.uuid, uuid.data(), 16);
    std::memcpy(raw.name, name.data(), std::min(name.size(), kDevNameMax - 1));
    raw.ring_buffer_size = ringBufferPb;
    raw.oldest_lsid = oldestLsid;
    raw.written_lsid = writtenLsid;
    raw.device_size = deviceSizeLb;
    std::memcpy(block, &raw, sizeof(raw));
    const uint32_t csum = checksum(block, pbs, 0);
    std::memcpy(block + offsetof(SuperSectorRaw, checksum), &csum, 4);
}

Ldev::Ldev(const std::string& path, bool writable, uint32_t pbs) {
    file_.open(path, writable ? File::Mode::ReadWrite : File::Mode::Read);
    if (pbs == 0) {
        pbs = file_.physicalBlockSize();
        if (!file_.isBlockDevice()) {
            // A regular file has no block size of its own: take the one the super sector declares.
            SuperSectorRaw raw;
            file_.preadAll(&raw, sizeof(raw), superSectorOffset());
            pbs = raw.physical_bs;
        }
    }
    if (!isValidPbs(pbs))
        throwError(ErrorCode::Corruption, "invalid physical block size " + std::to_string(pbs) + " in " +
                                              where(path, superSectorOffset()));
    Bytes block(pbs);
    file_.preadAll(block.data(), pbs, superSectorOffset());
    super_ = SuperSector::parse(block.data(), pbs, where(path, superSectorOffset()));
    const uint64_t needed = (ringBufferOffsetPb(pbs) + super_.ringBufferPb) * pbs;
    if (file_.size() < needed) {
        throwError(ErrorCode::Corruption,
                   "log device " + path + " is smaller (" + std::to_string(file_.size()) +
                       " bytes) than its ring buffer needs (" + std::to_string(needed) + ")");
    }
}

SuperSector Ldev::format(const std::string& path, const FormatOptions& opt) {
    File f(path, File::Mode::ReadWrite);
    uint32_t pbs = f.isBlockDevice() ? f.physicalBlockSize() : opt.pbs;
    if (!isValidPbs(pbs))
        throwError(ErrorCode::InvalidArgument, "invalid physical block size " + std::to_string(pbs));
    if (opt.name.size() > 25)
        throwError(ErrorCode::InvalidArgument, "device name longer than 25 characters: " + opt.name);
    const uint64_t size = f.size();
    SuperSector s;
    s.pbs = pbs;
    s.ringBufferPb = ringBufferSizeFor(size, pbs);
    if (s.ringBufferPb == 0) throwError(ErrorCode::InvalidArgument, "log device " + path + " is too small");
    if (opt.discard) f.discard(0, size);
    randomBytes(s.uuid.data(), s.uuid.size());
    randomBytes(&s.salt, sizeof(s.salt));
    s.name = opt.name;
    s.deviceSizeLb = opt.deviceSizeLb;
    Bytes block(pbs);
    s.serialize(block.data());
    f.pwriteAll(block.data(), pbs, superSectorOffset());
    f.fdatasync();
    return s;
}

uint64_t Ldev::offsetOf(uint64_t lsid) const {
    if (lsid == kInvalidLsid) throwError(ErrorCode::InvalidArgument, "invalid lsid");
    return (ringBufferOffsetPb(super_.pbs) + lsid % super_.ringBufferPb) * super_.pbs;
}

void Ldev::writeSuper() { writeSuper(super_); }

void Ldev::writeSuper(const SuperSector& s) {
    Bytes block(s.pbs);
    s.serialize(block.data());
    file_.pwriteAll(block.data(), s.pbs, superSectorOffset());
}

void Ldev::readBlocks(uint64_t lsid, size_t n, char* out) {
    const uint32_t pbs = super_.pbs;
    while (n > 0) {
        const uint64_t untilEnd = super_.ringBufferPb - lsid % super_.ringBufferPb;
        const size_t k = static_cast<size_t>(std::min<uint64_t>(n, untilEnd));
        file_.preadAll(out, k * pbs, offsetOf(lsid));
        out += k * pbs;
        lsid += k;
        n -= k;
    }
}

void Ldev::writeBlocks(uint64_t lsid, size_t n, const char* in) {
    const uint32_t pbs = super_.pbs;
    while (n > 0) {
        const uint64_t untilEnd = super_.ringBufferPb - lsid % super_.ringBufferPb;
        const size_t k = static_cast<size_t>(std::min<uint64_t>(n, untilEnd));
        file_.pwriteAll(in, k * pbs, offsetOf(lsid));
        in += k * pbs;
        lsid += k;
        n -= k;
    }
}

void Ldev::writeBlocksV(uint64_t lsid, const std::vector<std::pair<const char*, size_t>>& spans) {
    const uint32_t pbs = super_.pbs;
    std::vector<std::pair<const char*, size_t>> run;
    uint64_t runLsid = lsid;
    size_t runBytes = 0;
    // Bytes left before the ring end from the start of the current run.
    auto room = [&] { return (super_.ringBufferPb - runLsid % super_.ringBufferPb) * pbs - runBytes; };
    for (auto [p, n] : spans) {
        while (n > 0) {
            const size_t k = std::min<uint64_t>(n, room());
            run.emplace_back(p, k);
            runBytes += k;
            p += k;
            n -= k;
            if (room() == 0) {  // the ring ends here: write what we have, continue at the ring start
                file_.pwritevAll(run, offsetOf(runLsid));
                runLsid += runBytes / pbs;
                run.clear();
                runBytes = 0;
            }
        }
    }
    if (!run.empty()) file_.pwritevAll(run, offsetOf(runLsid));
}

bool Ldev::readPack(uint64_t lsid, Logpack& pack, std::string* why) {
    pack.reset(super_.pbs, super_.salt, lsid);
    readBlocks(lsid, 1, pack.headerBlock().data());
    std::string err = pack.checkHeader(lsid);
    if (err.empty() && pack.nRecords() == 0) err = "empty logpack header (end of log)";
    if (!err.empty()) {
        if (why) *why = err;
        return false;
    }
    pack.data().resize(size_t(pack.header().total_io_size) * super_.pbs);
    readBlocks(lsid + 1, pack.header().total_io_size, pack.data().data());
    return true;
}

void Ldev::writePack(const Logpack& pack) {
    const uint64_t rb = super_.ringBufferPb;
    for (size_t i = 0; i < pack.nRecords(); i++) {
        const LogRecordRaw& r = pack.record(i);
        if (!r.hasData() || r.isPadding() || r.io_size == 0) continue;
        const uint64_t pb = capacityPb(super_.pbs, r.io_size);
        if (r.lsid % rb + pb > rb) {
            throwError(ErrorCode::InvalidArgument,
                       "record " + std::to_string(i) + " of the logpack at lsid " +
                           std::to_string(pack.lsid()) + " would cross the ring-buffer end");
        }
    }
    writeBlocks(pack.lsid(), 1, pack.headerBlock().data());
    writeBlocks(pack.lsid() + 1, pack.header().total_io_size, pack.data().data());
}

LogRange readLogRange(const std::string& ldevPath, uint64_t begin, uint64_t end, size_t maxBytes,
                      RangeEnd mode) {
    Ldev ldev(ldevPath, false);
    LogRange r;
    r.super = ldev.super();
    r.beginLsid = r.nextLsid = begin;
    if (end < begin) throwError(ErrorCode::InvalidArgument, "log range ends before it begins");
    if (end - begin > r.super.ringBufferPb)
        throwError(ErrorCode::InvalidArgument, "log range [" + std::to_string(begin) + ", " +
                                                   std::to_string(end) + ") is longer than the ring buffer");
    Logpack pack;
    uint64_t lsid = begin;
    while (lsid < end && (r.packs == 0 || r.bytes.size() < maxBytes)) {
        std::string why;
        if (!ldev.readPack(lsid, pack, &why))
            throwError(ErrorCode::Corruption, "no valid logpack at lsid " + std::to_string(lsid) + " of " +
                                                  ldevPath + " inside the range to " + std::to_string(end) +
                                                  ": " + why);
        const size_t bad = pack.firstBadRecord();
        if (bad != pack.nRecords())
            throwError(ErrorCode::Corruption, "logpack at lsid " + std::to_string(lsid) + " of " + ldevPath +
                                                  ": record " + std::to_string(bad) + " has a bad checksum");
        if (pack.nextLsid() > end) {
            if (mode == RangeEnd::Exact)
                throwError(
                    ErrorCode::InvalidArgument,
                    "lsid " + std::to_string(end) + " is inside the logpack at " + std::to_string(lsid));
            // A pack is never split: a limit stops before it, unless it is the first one and must come.
            if (mode == RangeEnd::UpTo || r.packs > 0) break;
        }
        r.bytes.insert(r.bytes.end(), pack.headerBlock().begin(), pack.headerBlock().end());
        r.bytes.insert(r.bytes.end(), pack.data().begin(), pack.data().end());
        r.packs++;
        lsid = pack.nextLsid();
    }
    r.nextLsid = lsid;
    return r;
}

}  // namespace walb
