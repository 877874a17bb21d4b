#include "core/ldev.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>

#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "support.hpp"

namespace walb {
namespace {

SuperSector sampleSuper(uint32_t pbs) {
    SuperSector s;
    s.pbs = pbs;
    s.salt = 0xabcdef01;
    for (size_t i = 0; i < 16; i++) s.uuid[i] = static_cast<uint8_t>(i * 7);
    s.name = "vol0";
    s.ringBufferPb = 1000;
    s.oldestLsid = 10;
    s.writtenLsid = 20;
    s.deviceSizeLb = 4096;
    return s;
}

// Serializes, lets `edit` change the raw struct, and seals the checksum again.
Bytes editedSuper(uint32_t pbs, const std::function<void(SuperSectorRaw&)>& edit) {
    Bytes block(pbs);
    sampleSuper(pbs).serialize(block.data());
    SuperSectorRaw raw;
    std::memcpy(&raw, block.data(), sizeof(raw));
    edit(raw);
    raw.checksum = 0;
    std::memcpy(block.data(), &raw, sizeof(raw));
    raw.checksum = checksum(block.data(), pbs, 0);
    std::memcpy(block.data(), &raw, sizeof(raw));
    return block;
}

TEST(SuperSector, RoundTripsThroughSerializeAtEveryBlockSize) {
    for (uint32_t pbs : {512u, 1024u, 4096u}) {
        Bytes block(pbs);
        const SuperSector s = sampleSuper(pbs);
        s.serialize(block.data());
        EXPECT_TRUE(selfChecksumOk(block.data(), pbs, 0));
        const SuperSector t = SuperSector::parse(block.data(), pbs, "test");
        EXPECT_EQ(t.salt, s.salt);
        EXPECT_EQ(t.uuid, s.uuid);
        EXPECT_EQ(t.name, s.name);
        EXPECT_EQ(t.ringBufferPb, s.ringBufferPb);
        EXPECT_EQ(t.oldestLsid, s.oldestLsid);
        EXPECT_EQ(t.writtenLsid, s.writtenLsid);
        EXPECT_EQ(t.deviceSizeLb, s.deviceSizeLb);
    }
}

TEST(SuperSector, AFlippedByteIsCorruptionByChecksum) {
    Bytes block(512);
    sampleSuper(512).serialize(block.data());
    block[60] ^= 4;
    std::string msg;
    EXPECT_EQ(test::errorCodeOf([&] { SuperSector::parse(block.data(), 512, "here"); }, &msg),
              ErrorCode::Corruption);
    EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("here"), std::string::npos) << msg;
}

TEST(SuperSector, FieldsOutsideTheFormatAreCorruptionEvenWithAGoodChecksum) {
    const std::vector<std::pair<std::string, std::function<void(SuperSectorRaw&)>>> cases = {
        {"sector_type", [](SuperSectorRaw& r) { r.sector_type = 3; }},
        {"version", [](SuperSectorRaw& r) { r.version = 1; }},
        {"physical_bs", [](SuperSectorRaw& r) { r.physical_bs = 4096; }},
        {"logical_bs", [](SuperSectorRaw& r) { r.logical_bs = 4096; }},
        {"metadata_size", [](SuperSectorRaw& r) { r.metadata_size = 1; }},
        {"NUL-terminated", [](SuperSectorRaw& r) { std::memset(r.name, 'a', sizeof(r.name)); }},
        {"beyond written_lsid", [](SuperSectorRaw& r) { r.oldest_lsid = r.written_lsid + 1; }},
        {"lsid invalid", [](SuperSectorRaw& r) { r.written_lsid = kInvalidLsid; }},
        {"ring_buffer_size is 0", [](SuperSectorRaw& r) { r.ring_buffer_size = 0; }},
    };
    for (const auto& [why, edit] : cases) {
        const auto block = editedSuper(512, edit);
        std::string msg;
        EXPECT_EQ(test::errorCodeOf([&] { SuperSector::parse(block.data(), 512, "t"); }, &msg),
                  ErrorCode::Corruption)
            << why;
        EXPECT_NE(msg.find(why), std::string::npos) << why << ": " << msg;
    }
}

TEST(Ldev, FormatWritesSuperSector0WithTheRingFillingTheDevice) {
    test::TempDir dir;
    const std::string path = dir.path("ldev");
    test::makeFile(path, 1 << 20);
    Ldev::FormatOptions opt;
    opt.pbs = 4096;
    opt.deviceSizeLb = 2048;
    opt.name = "x";
    const SuperSector s = Ldev::format(path, opt);
    EXPECT_EQ(s.ringBufferPb, (1u << 20) / 4096 - ringBufferOffsetPb(4096));
    Ldev ldev(path, false);
    EXPECT_EQ(ldev.super().pbs, 4096u);
    EXPECT_EQ(ldev.super().uuid, s.uuid);
    EXPECT_EQ(ldev.super().salt, s.salt);
    EXPECT_EQ(ldev.super().name, "x");
    EXPECT_EQ(ldev.super().deviceSizeLb, 2048u);
    EXPECT_EQ(ldev.super().oldestLsid, 0u);
    EXPECT_EQ(ldev.super().writtenLsid, 0u);
}

TEST(Ldev, AFileShorterThanItsRingBufferIsCorruption) {
    test::TempDir dir;
    const std::string path = dir.path("ldev");
    test::makeFile(path, 256 << 10);
    Ldev::format(path, {});
    ::truncate(path.c_str(), 128 << 10);
    std::string msg;
    EXPECT_EQ(test::errorCodeOf([&] { Ldev(path, false); }, &msg), ErrorCode::Corruption);
    EXPECT_NE(msg.find("smaller"), std::string::npos) << msg;
}

TEST(Ldev, PacksWrittenAcrossTheRingEndReadBackWhole) {
    test::TempDir dir;
    const std::string path = dir.path("ldev");
    test::makeFile(path, 64 * 512);
    Ldev::format(path, {});
    Ldev ldev(path, true);
    const uint64_t ring = ldev.super().ringBufferPb;
    // Start two blocks before the ring end: the builder pads so that no IO's data wraps (docs/formats.md
    // §2.4).
    LogpackBuilder b(512, ldev.super().salt, ring, 0, 5 * ring - 2);
    const auto data = test::bytes(4 * 512, 3);
    ASSERT_TRUE(b.addWrite(100, 4, data.data()));
    const Logpack pack = b.take();
    EXPECT_EQ(pack.header().n_padding, 1);
    ldev.writePack(pack);

    Logpack back;
    std::string why;
    ASSERT_TRUE(ldev.readPack(pack.lsid(), back, &why)) << why;
    EXPECT_EQ(back.headerBlock(), pack.headerBlock());
    EXPECT_EQ(back.data(), pack.data());
    EXPECT_EQ(std::memcmp(back.recordData(1), data.data(), data.size()), 0);
    // The next lap's lsid at the same slot is a stale header there.
    EXPECT_FALSE(ldev.readPack(pack.lsid() + ring, back, &why));
    EXPECT_NE(why.find("logpack_lsid"), std::string::npos) << why;
}

// Three packs of one 4-block write each, at lsids 0, 5 and 10 (each pack: a header block and 4 data blocks).
std::string threePacks(const test::TempDir& dir) {
    const std::string path = dir.path("ldev");
    test::makeFile(path, 64 * 512);
    Ldev::format(path, {});
    Ldev ldev(path, true);
    LogpackBuilder b(512, ldev.super().salt, ldev.super().ringBufferPb, 0, 0);
    for (int i = 0; i < 3; i++) {
        const auto data = test::bytes(4 * 512, i);
        EXPECT_TRUE(b.addWrite(100 * i, 4, data.data()));
        ldev.writePack(b.take());
    }
    return path;
}

TEST(Ldev, AnExactRangeEndInsideAPackIsInvalid) {
    test::TempDir dir;
    const std::string path = threePacks(dir);
    EXPECT_EQ(readLogRange(path, 0, 10, 1 << 20, RangeEnd::Exact).packs, 2u);
    std::string msg;
    EXPECT_EQ(test::errorCodeOf([&] { readLogRange(path, 0, 12, 1 << 20, RangeEnd::Exact); }, &msg),
              ErrorCode::InvalidArgument);
    EXPECT_NE(msg.find("lsid 12 is inside the logpack at 10"), std::string::npos) << msg;
}

TEST(Ldev, AnUpToRangeStopsBeforeThePackThatCrossesItsEnd) {
    test::TempDir dir;
    const std::string path = threePacks(dir);
    const LogRange r = readLogRange(path, 0, 12, 1 << 20, RangeEnd::UpTo);
    EXPECT_EQ(r.packs, 2u);
    EXPECT_EQ(r.nextLsid, 10u);
    EXPECT_EQ(r.bytes.size(), 10u * 512);
    EXPECT_EQ(readLogRange(path, 10, 12, 1 << 20, RangeEnd::UpTo).packs, 0u);
}

TEST(Ldev, AnUpToAtLeastOnePackRangeTakesAFirstPackThatCrossesItsEndWhole) {
    test::TempDir dir;
    const std::string path = threePacks(dir);
    const LogRange first = readLogRange(path, 10, 12, 1 << 20, RangeEnd::UpToAtLeastOnePack);
    EXPECT_EQ(first.packs, 1u);
    EXPECT_EQ(first.nextLsid, 15u);
    EXPECT_EQ(readLogRange(path, 0, 12, 1 << 20, RangeEnd::UpToAtLeastOnePack).nextLsid, 10u);
}

}  // namespace
}  // namespace walb
