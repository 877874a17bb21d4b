// Fuzzes the ldev super sector parser (docs/formats.md §1.2). Input: one byte choosing the physical block
// size, then the sector. A sector that parses must serialize back to one that parses to the same values.
#include "core/bytes.hpp"
#include "core/ldev.hpp"
#include "fuzz_support.hpp"

using namespace walb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint32_t pbs = kLbSize * (1 + data[0] % (kLayoutPageSize / kLbSize));
    fuzz::Bytes block(pbs, 0);
    std::memcpy(block.data(), data + 1, std::min<size_t>(size - 1, pbs));
    const std::string where = "fuzz input";
    fuzz::expectingRejection(
        [&] { SuperSector::parse(reinterpret_cast<const char*>(block.data()), pbs, where); });
    fuzz::resealBlock(block, 0, pbs, offsetof(SuperSectorRaw, checksum), 0);
    fuzz::expectingRejection([&] {
        const SuperSector s = SuperSector::parse(reinterpret_cast<const char*>(block.data()), pbs, where);
        Bytes again(pbs);
        s.serialize(again.data());
        const SuperSector t = SuperSector::parse(again.data(), pbs, where);
        if (t.pbs != s.pbs || t.salt != s.salt || t.uuid != s.uuid || t.name != s.name ||
            t.ringBufferPb != s.ringBufferPb || t.oldestLsid != s.oldestLsid ||
            t.writtenLsid != s.writtenLsid || t.deviceSizeLb != s.deviceSizeLb)
            fuzz::violated("a parsed super sector serializes to a different one");
    });
    return 0;
}
