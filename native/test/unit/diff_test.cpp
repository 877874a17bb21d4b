#include "core/diff.hpp"

#include <gtest/gtest.h>

#include "core/bytes.hpp"
#include "core/ops.hpp"
#include "support.hpp"

namespace walb {
namespace {

DiffIo normal(uint64_t addr, uint32_t blocks, uint64_t seed) {
    DiffIo io;
    io.addr = addr;
    io.blocks = blocks;
    io.kind = DiffKind::Normal;
    // Half random, half zeros: compressible, so that every codec really stores compressed bytes.
    auto b = test::bytes(size_t(blocks) * kLbSize, seed);
    std::fill(b.begin() + b.size() / 2, b.end(), 0);
    io.buf = std::make_shared<const Bytes>(std::move(b));
    return io;
}

DiffIo special(uint64_t addr, uint32_t blocks, DiffKind kind) {
    DiffIo io;
    io.addr = addr;
    io.blocks = blocks;
    io.kind = kind;
    return io;
}

Bytes dataOf(const DiffIo& io) {
    Bytes scratch;
    const char* p = io.fetch(scratch);
    return Bytes(p, p + io.bytes());
}

struct Flat {
    uint64_t addr;
    uint32_t blocks;
    DiffKind kind;
    Bytes data;
    bool operator==(const Flat&) const = default;
};

std::vector<Flat> readAll(DiffReader& r) {
    std::vector<Flat> out;
    DiffIo io;
    while (r.next(io))
        out.push_back({io.addr, io.blocks, io.kind, io.kind == DiffKind::Normal ? dataOf(io) : Bytes{}});
    return out;
}

std::vector<Flat> flat(const std::vector<DiffIo>& ios) {
    std::vector<Flat> out;
    for (const DiffIo& io : ios)
        out.push_back({io.addr, io.blocks, io.kind, io.kind == DiffKind::Normal ? dataOf(io) : Bytes{}});
    return out;
}

const std::vector<DiffIo> kSample = {normal(0, 8, 1), special(8, 4, DiffKind::AllZero), normal(16, 3, 2),
                                     special(100, 1000, DiffKind::Discard), normal(2000, 64, 3)};

class DiffCodec : public ::testing::TestWithParam<std::string> {};

TEST_P(DiffCodec, SortedWdiffReadsBackTheRecordsWritten) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    DiffWriteOptions opt;
    opt.compression = compressionFromName(GetParam());
    opt.maxIoBlocks = 0;
    SortedDiffWriter w(path, opt);
    for (const DiffIo& io : kSample) w.add(io);
    const DiffStats stats = w.close();
    EXPECT_EQ(stats.records, kSample.size());
    auto r = openDiffReader(path);
    EXPECT_NE(dynamic_cast<SortedDiffReader*>(r.get()), nullptr);
    EXPECT_EQ(readAll(*r), flat(kSample));
}

TEST_P(DiffCodec, IndexedWdiffReadsBackTheRecordsWritten) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    DiffWriteOptions opt;
    opt.compression = compressionFromName(GetParam());
    opt.maxIoBlocks = 0;
    IndexedDiffWriter w(path, opt);
    for (const DiffIo& io : kSample) w.add(io);
    w.close();
    auto r = openDiffReader(path);
    EXPECT_NE(dynamic_cast<IndexedDiffReader*>(r.get()), nullptr);
    // The indexed layout cuts records at aligned boundaries (docs/formats.md §5.3): compare block by block.
    DiffMemory want(0), got(0);
    for (const DiffIo& io : kSample) want.add(io);
    DiffIo io;
    while (r->next(io)) got.add(io);
    auto blocks = [](const DiffMemory& m) {
        std::vector<Flat> out;
        m.forEach([&](const DiffIo& io) {
            for (uint64_t a = io.addr; a < io.end(); a++) {
                const DiffIo one = io.slice(a, a + 1);
                out.push_back({a, 1, one.kind, one.kind == DiffKind::Normal ? dataOf(one) : Bytes{}});
            }
        });
        return out;
    };
    EXPECT_EQ(blocks(got), blocks(want));
}

TEST_P(DiffCodec, ALazySortedReaderHandsOutStoredRecordsThatFetchTheirData) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    DiffWriteOptions opt;
    opt.compression = compressionFromName(GetParam());
    opt.maxIoBlocks = 0;
    SortedDiffWriter w(path, opt);
    for (const DiffIo& io : kSample) w.add(io);
    w.close();
    auto r = openDiffReader(path, Decode::Lazy);
    std::vector<Flat> got;
    DiffIo io;
    while (r->next(io)) {
        if (io.kind == DiffKind::Normal && opt.compression != Compression::None) {
            EXPECT_EQ(io.storedCodec, opt.compression) << io.addr;
            EXPECT_TRUE(io.isWhole());
            EXPECT_FALSE(io.slice(io.addr + 1, io.end()).isWhole());
        }
        got.push_back({io.addr, io.blocks, io.kind, io.kind == DiffKind::Normal ? dataOf(io) : Bytes{}});
    }
    EXPECT_EQ(got, flat(kSample));
}

INSTANTIATE_TEST_SUITE_P(EveryCodecWeWrite, DiffCodec,
                         ::testing::Values("none", "snappy", "zstd", "lz4", "gzip", "lzma"));

TEST(SortedWdiff, WriterRefusesRecordsOutOfAddressOrder) {
    test::TempDir dir;
    SortedDiffWriter w(dir.path("a.wdiff"), {});
    w.add(normal(10, 2, 1));
    EXPECT_EQ(test::errorCodeOf([&] { w.add(normal(11, 2, 2)); }), ErrorCode::InvalidArgument);
}

TEST(SortedWdiff, WriterCutsRecordsLongerThanMaxIoBlocks) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    DiffWriteOptions opt;
    opt.maxIoBlocks = 16;
    SortedDiffWriter w(path, opt);
    const DiffIo big = normal(0, 40, 9);
    w.add(big);
    w.close();
    SortedDiffReader r(path);
    std::vector<Flat> got = readAll(r);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[2].addr, 32u);
    EXPECT_EQ(got[2].blocks, 8u);
    Bytes all;
    for (const Flat& f : got) all.insert(all.end(), f.data.begin(), f.data.end());
    EXPECT_EQ(all, dataOf(big));
}

// Both ways a sorted reader holds packs (read into slabs, or mapped) check and read the same.
TEST(SortedWdiff, AFlippedDataByteIsCorruption) {
    for (PackData packData : {PackData::Read, PackData::Mapped}) {
        test::TempDir dir;
        const std::string path = dir.path("a.wdiff");
        DiffWriteOptions opt;
        opt.compression = Compression::None;
        SortedDiffWriter w(path, opt);
        w.add(normal(0, 2, 1));
        w.close();
        auto b = test::readFile(path);
        b[sizeof(DiffFileHeaderRaw) + kDiffPackSize + 5] ^= 1;
        test::writeFile(path, b);
        SortedDiffReader r(path, Decode::Eager, packData);
        DiffIo io;
        std::string msg;
        EXPECT_EQ(test::errorCodeOf([&] { r.next(io); }, &msg), ErrorCode::Corruption);
        EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
    }
}

TEST(SortedWdiff, AReaderOpenedBeforeThePacksWereWrittenReadsThem) {
    for (PackData packData : {PackData::Read, PackData::Mapped}) {
        test::TempDir dir;
        const std::string full = dir.path("full.wdiff"), growing = dir.path("growing.wdiff");
        SortedDiffWriter w(full, {});
        for (const DiffIo& io : kSample) w.add(io);
        w.close();
        const auto bytes = test::readFile(full);
        test::writeFile(growing, Bytes(bytes.begin(), bytes.begin() + sizeof(DiffFileHeaderRaw)));
        SortedDiffReader r(growing, Decode::Eager, packData);  // sees the header alone
        test::writeFile(growing, bytes);
        EXPECT_EQ(readAll(r), flat(kSample));
        EXPECT_TRUE(r.sawEndPack());
    }
}

TEST(IndexedWdiff, ANewerRecordHidesTheOlderOneItOverlaps) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    IndexedDiffWriter w(path, {});
    w.add(normal(0, 8, 1));
    w.add(special(2, 2, DiffKind::Discard));
    w.close();
    IndexedDiffReader r(path);
    DiffMemory m(0);
    DiffIo io;
    while (r.next(io)) m.add(io);
    std::vector<std::pair<uint64_t, DiffKind>> kinds;
    m.forEach([&](const DiffIo& io) {
        for (uint64_t a = io.addr; a < io.end(); a++) kinds.emplace_back(a, io.kind);
    });
    ASSERT_EQ(kinds.size(), 8u);
    EXPECT_EQ(kinds[1].second, DiffKind::Normal);
    EXPECT_EQ(kinds[2].second, DiffKind::Discard);
    EXPECT_EQ(kinds[3].second, DiffKind::Discard);
    EXPECT_EQ(kinds[4].second, DiffKind::Normal);
}

TEST(IndexedWdiff, LowerBoundFindsTheFirstRecordEndingAboveAnAddress) {
    test::TempDir dir;
    const std::string path = dir.path("a.wdiff");
    IndexedDiffWriter w(path, {});
    w.add(normal(0, 4, 1));
    w.add(normal(16, 4, 2));
    w.add(normal(64, 4, 3));
    w.close();
    IndexedDiffReader r(path);
    ASSERT_EQ(r.recordCount(), 3u);
    EXPECT_EQ(r.lowerBound(0), 0u);
    EXPECT_EQ(r.lowerBound(4), 1u);
    EXPECT_EQ(r.lowerBound(19), 1u);
    EXPECT_EQ(r.lowerBound(20), 2u);
    EXPECT_EQ(r.lowerBound(1000), 3u);
}

TEST(DiffMemory, TheNewestWriteWinsWhereRecordsOverlap) {
    DiffMemory m;
    const DiffIo a = normal(0, 10, 1), b = normal(4, 2, 2);
    m.add(a);
    m.add(b);
    std::vector<Flat> got;
    m.forEach([&](const DiffIo& io) { got.push_back({io.addr, io.blocks, io.kind, dataOf(io)}); });
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0], (Flat{0, 4, DiffKind::Normal, dataOf(a.slice(0, 4))}));
    EXPECT_EQ(got[1], (Flat{4, 2, DiffKind::Normal, dataOf(b)}));
    EXPECT_EQ(got[2], (Flat{6, 4, DiffKind::Normal, dataOf(a.slice(6, 10))}));
}

TEST(MergeWdiffs, TheNewerInputWinsAndTheRestIsKept) {
    test::TempDir dir;
    const std::string older = dir.path("1.wdiff"), newer = dir.path("2.wdiff"), out = dir.path("m.wdiff");
    const DiffIo a = normal(0, 8, 1), b = normal(100, 4, 2), c = normal(4, 8, 3);
    {
        SortedDiffWriter w(older, {});
        w.add(a);
        w.add(b);
        w.close();
    }
    {
        IndexedDiffWriter w(newer, {});
        w.add(c);
        w.add(special(102, 1, DiffKind::AllZero));
        w.close();
    }
    mergeWdiffs({older, newer}, out, {});
    DiffMemory want(0), got(0);
    for (const DiffIo& io : {a, b, c, special(102, 1, DiffKind::AllZero)}) want.add(io);
    SortedDiffReader r(out);
    DiffIo io;
    while (r.next(io)) got.add(io);
    auto blocks = [](const DiffMemory& m) {
        std::vector<Flat> v;
        m.forEach([&](const DiffIo& io) {
            for (uint64_t x = io.addr; x < io.end(); x++) {
                const DiffIo one = io.slice(x, x + 1);
                v.push_back({x, 1, one.kind, one.kind == DiffKind::Normal ? dataOf(one) : Bytes{}});
            }
        });
        return v;
    };
    EXPECT_EQ(blocks(got), blocks(want));
}

}  // namespace
}  // namespace walb
