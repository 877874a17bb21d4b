// Fuzzes logpack header validation and torn-pack shrinking (docs/formats.md §2.6-2.8). Input: one byte
// choosing the physical block size, the 4-byte salt, the header block, then the data blocks. A valid pack
// shrunk to its first good records (or fewer) must still be a valid pack at the same lsid.
#include "core/logpack.hpp"
#include "fuzz_support.hpp"

using namespace walb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 5) return 0;
    const uint32_t pbs = kLbSize * (1 + data[0] % (kLayoutPageSize / kLbSize));
    uint32_t salt;
    std::memcpy(&salt, data + 1, 4);
    data += 5;
    size -= 5;
    fuzz::Bytes header(pbs, 0);
    std::memcpy(header.data(), data, std::min<size_t>(size, pbs));
    const uint8_t* rest = size > pbs ? data + pbs : nullptr;
    const size_t restSize = size > pbs ? size - pbs : 0;

    auto check = [&](const fuzz::Bytes& block) {
        Logpack pack(pbs, salt);
        std::memcpy(pack.headerBlock().data(), block.data(), pbs);
        const uint64_t lsid = pack.lsid();
        if (!pack.checkHeader(lsid).empty() || pack.nRecords() == 0) return;
        pack.data().assign(size_t(pack.header().total_io_size) * pbs, 0);
        if (rest) std::memcpy(pack.data().data(), rest, std::min(restSize, pack.data().size()));
        const size_t good = pack.firstBadRecord();
        if (good > pack.nRecords()) fuzz::violated("firstBadRecord beyond the records");
        const size_t keep =
            rest && restSize > 0 ? std::min<size_t>(good, rest[0] % (pack.nRecords() + 1)) : good;
        pack.shrink(keep);
        if (pack.nRecords() != keep) fuzz::violated("shrink kept another number of records");
        if (!pack.checkHeader(lsid).empty()) fuzz::violated("a shrunk valid pack is invalid");
        if (pack.data().size() != size_t(pack.header().total_io_size) * pbs)
            fuzz::violated("a shrunk pack's data does not match its total_io_size");
        if (pack.firstBadRecord() != pack.nRecords()) fuzz::violated("a shrunk pack keeps a bad record");
    };
    check(header);
    fuzz::resealBlock(header, 0, pbs, offsetof(LogpackHeaderRaw, checksum), salt);
    check(header);
    return 0;
}
