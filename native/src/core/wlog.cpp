#include "core/wlog.hpp"

#include <cstring>
#include <vector>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/error.hpp"

namespace walb {

WlogHeader WlogHeader::parse(const char* block, const std::string& where) {
    WlogHeaderRaw raw;
    std::memcpy(&raw, block, sizeof(raw));
    auto bad = [&](const std::string& why) {
        throwError(ErrorCode::Corruption, "invalid wlog header in " + where + ": " + why);
    };
    if (!selfChecksumOk(block, kWlogHeaderSize, 0)) bad("checksum mismatch");
    if (raw.sector_type != kSectorTypeWlogHeader)
        bad("sector_type is " + std::to_string(raw.sector_type) + ", not 4");
    if (raw.version != kWalbLogVersion) bad("version is " + std::to_string(raw.version) + ", not 2");
    if (raw.logical_bs != kLbSize) bad("logical_bs is not 512");
    if (!isValidPbs(raw.physical_bs)) bad("invalid physical_bs " + std::to_string(raw.physical_bs));
    if (raw.begin_lsid >= raw.end_lsid) bad("begin_lsid is not below end_lsid");
    WlogHeader h;
    h.pbs = raw.physical_bs;
    h.salt = raw.log_checksum_salt;
    std::memcpy(h.uuid.data(), raw.uuid, 16);
    h.beginLsid = raw.begin_lsid;
    h.endLsid = raw.end_lsid;
    return h;
}

void WlogHeader::serialize(char* block) const {
    std::memset(block, 0, kWlogHeaderSize);
    WlogHeaderRaw raw{};
    raw.sector_type = kSectorTypeWlogHeader;
    raw.version = kWalbLogVersion;
    raw.header_size = kWlogHeaderSize;
    raw.log_checksum_salt = salt;
    raw.logical_bs = kLbSize;
    raw.physical_bs = pbs;
    std::memcpy(raw.uuid, uuid.data(), 16);
    raw.begin_lsid = beginLsid;
    raw.end_lsid = endLsid;
    std::memcpy(block, &raw, sizeof(raw));
    const uint32_t csum = checksum(block, kWlogHeaderSize, 0);
    std::memcpy(block + offsetof(WlogHeaderRaw, checksum), &csum, 4);
}

WlogWriter::WlogWriter(const std::string& path, const WlogHeader& header)
    : output_(path), header_(header), nextLsid_(header.beginLsid) {
    if (!isValidPbs(header.pbs)) throwError(ErrorCode::InvalidArgument, "invalid physical block size");
    out_ = std::make_unique<BufferedWriter>(output_.file(), 0);
    Bytes block(kWlogHeaderSize);
    header_.serialize(block.data());
    out_->write(block.data(), block.size());
}

void WlogWriter::append(const Logpack& pack) {
    if (pack.nRecords() == 0) return;
    if (pack.lsid() != nextLsid_) {
        throwError(ErrorCode::InvalidArgument, "logpack at lsid " + std::to_string(pack.lsid()) +
                                                   " does not follow the previous one (expected " +
                                                   std::to_string(nextLsid_) + ")");
    }
    if (pack.pbs() != header_.pbs || pack.salt() != header_.salt) {
        throwError(ErrorCode::InvalidArgument, "logpack block size or salt differs from the wlog header");
    }
    out_->write(pack.headerBlock().data(), pack.headerBlock().size());
    out_->write(pack.data().data(), pack.data().size());
    nextLsid_ = pack.nextLsid();
}

uint64_t WlogWriter::close() {
    Logpack end(header_.pbs, header_.salt);
    end.makeEnd();
    out_->write(end.headerBlock().data(), end.headerBlock().size());
    out_->flush();
    output_.commit();
    return nextLsid_;
}

namespace {
WlogHeader readWlogHeader(const File& f) {
    Bytes block(kWlogHeaderSize);
    f.preadAll(block.data(), block.size(), 0);
    return WlogHeader::parse(block.data(), where(f.path(), 0));
}
}  // namespace

WlogReader::WlogReader(const std::string& path)
    : file_(path, File::Mode::Read),
      header_(readWlogHeader(file_)),
      packs_(file_, kWlogHeaderSize, header_.pbs, kSharedSlabs),
      nextLsid_(header_.beginLsid) {}

bool WlogReader::nextHeader(Logpack& pack, uint64_t& at) {
    if (done_) return false;
    at = packs_.offset();
    pack.reset(header_.pbs, header_.salt, 0);
    if (!packs_.readHeader(pack.headerBlock().data(), "a logpack header")) {
        done_ = true;
        return false;
    }
    if (!acceptHeader(pack, at)) return false;
    packDataOffset_ = packs_.offset();
    return true;
}

bool WlogReader::next(Logpack& pack) {
    uint64_t at = 0;
    if (!nextHeader(pack, at)) return false;
    // total_io_size is at most 65535 PB and every record was checked (docs/formats.md §2.1, §2.6); the file
    // must also hold that much data before a buffer is sized from it.
    const uint64_t dataBytes = uint64_t(pack.header().total_io_size) * header_.pbs;
    packs_.requireAvailable(dataBytes, "logpack data");
    pack.data().resize(dataBytes);
    packs_.read(pack.data().data(), dataBytes, "logpack data");
    checkData(pack, pack.data().data(), at);
    nextLsid_ = pack.nextLsid();
    return true;
}

bool WlogReader::nextShared(Logpack& pack, SharedSpan& data) {
    uint64_t at = 0;
    if (!nextHeader(pack, at)) return false;
    data = packs_.readShared(uint64_t(pack.header().total_io_size) * header_.pbs, "logpack data");
    checkData(pack, data.data, at);
    nextLsid_ = pack.nextLsid();
    return true;
}

bool WlogReader::acceptHeader(Logpack& pack, uint64_t at) {
    const LogpackHeaderRaw& h = pack.header();
    if (h.n_records == 0 && h.sector_type == kSectorTypeLogpack && h.total_io_size == 0 && h.n_padding == 0) {
        // A header without records ends the log wherever it appears, whatever its logpack_lsid or checksum
        // (docs/formats.md §2.7, §8c; WalB does not checksum such headers). Writers only write the end block.
        done_ = sawEnd_ = true;
        return false;
    }
    std::string err = pack.checkHeader(nextLsid_);
    if (!err.empty())
        throwError(ErrorCode::Corruption, "invalid logpack header: " + err + ": " + where(path(), at));
    return true;
}

void WlogReader::checkData(const Logpack& pack, const char* data, uint64_t at) const {
    size_t bad = pack.firstBadRecord(data);
    if (bad < pack.nRecords()) {
        throwError(ErrorCode::Corruption, "data checksum mismatch in record " + std::to_string(bad) +
                                              " of the logpack at lsid " + std::to_string(pack.lsid()) +
                                              ": " +
                                              where(path(), at + header_.pbs + pack.recordDataOffset(bad)));
    }
}

}  // namespace walb
