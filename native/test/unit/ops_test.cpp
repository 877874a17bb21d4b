// Conversion, redo, virtual full images and hashing, checked against each other on generated workloads.
#include "core/ops.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/bytes.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint64_t kDeviceLb = 4096;

GenResult generate(const std::string& path, uint64_t seed, uint32_t pbs = 512) {
    GenOptions g;
    g.pbs = pbs;
    g.deviceSizeLb = kDeviceLb;
    g.amountBytes = 512 << 10;
    g.maxIoLb = 32;
    g.discardRatio = 0.1;
    g.allZeroRatio = 0.1;
    g.overlapRatio = 0.4;
    g.ringBufferPb = 300;
    g.seed = seed;
    return generateWlog(path, g);
}

// A base image of reproducible bytes (a discard must visibly zero it).
std::string baseImage(const test::TempDir& dir, const std::string& name) {
    const std::string path = dir.path(name);
    test::writeFile(path, test::bytes(kDeviceLb * kLbSize, 99));
    return path;
}

std::string copyOf(const std::string& from, const std::string& to) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
    return to;
}

TEST(Ops, GeneratedWlogHasThePacksItReports) {
    test::TempDir dir;
    const GenResult g = generate(dir.path("a.wlog"), 1);
    WlogReader r(dir.path("a.wlog"));
    Logpack p;
    uint64_t packs = 0;
    while (r.next(p)) packs++;
    EXPECT_EQ(packs, g.packs);
    EXPECT_EQ(r.endLsid(), g.endLsid);
    EXPECT_GT(g.paddings, 0u) << "the workload crosses the ring end";
    EXPECT_GT(g.discards, 0u);
}

TEST(Ops, RedoOfTheConvertedWdiffEqualsRedoOfTheWlog) {
    for (uint32_t pbs : {512u, 4096u}) {
        for (bool indexed : {false, true}) {
            test::TempDir dir;
            const std::string wlog = dir.path("a.wlog"), wdiff = dir.path("a.wdiff");
            generate(wlog, 2, pbs);
            const std::string base = baseImage(dir, "base.img");
            const std::string byLog = copyOf(base, dir.path("log.img")),
                              byDiff = copyOf(base, dir.path("diff.img"));
            redoWlog(wlog, byLog, DiscardMode::Zero);
            ConvertOptions opt;
            opt.indexed = indexed;
            const ConvertResult c = wlogToWdiff({wlog}, wdiff, opt);
            EXPECT_GT(c.stats.records, 0u);
            redoWdiff(wdiff, byDiff, DiscardMode::Zero);
            EXPECT_EQ(test::readFile(byDiff), test::readFile(byLog))
                << "pbs " << pbs << " indexed " << indexed;
            EXPECT_NE(test::readFile(byDiff), test::readFile(base));
        }
    }
}

TEST(Ops, WlogRedoStopsAtACorruptPackHavingWrittenExactlyThePacksBeforeIt) {
    // The packs are read and checked a few packs ahead of the writes: none of a pack may reach the image
    // before its checksums passed, and every pack before it must.
    test::TempDir dir;
    const std::string wlog = dir.path("a.wlog"), head = dir.path("head.wlog");
    generate(wlog, 5);
    WlogReader reader(wlog);
    std::vector<Logpack> packs;
    std::vector<uint64_t> dataAt;
    for (Logpack p; reader.next(p);) {
        packs.push_back(p);
        dataAt.push_back(reader.packDataOffset());
    }
    // A pack in the middle with a normal record, whose first data byte is flipped.
    size_t bad = packs.size() / 2, rec = 0;
    auto normalRecord = [&](size_t k) {
        for (size_t i = 0; i < packs[k].nRecords(); i++) {
            const LogRecordRaw& r = packs[k].record(i);
            if (!r.isPadding() && !r.isDiscard()) return i;
        }
        return size_t(packs[k].nRecords());
    };
    while ((rec = normalRecord(bad)) == packs[bad].nRecords()) bad++;
    ASSERT_GT(bad, 0u);
    {
        WlogWriter w(head, reader.header());
        for (size_t k = 0; k < bad; k++) w.append(packs[k]);
        w.close();
    }
    Bytes bytes = test::readFile(wlog);
    bytes[dataAt[bad] + packs[bad].recordDataOffset(rec)] ^= 1;
    test::writeFile(wlog, bytes);

    const std::string base = baseImage(dir, "base.img");
    const std::string redone = copyOf(base, dir.path("redone.img")),
                      expected = copyOf(base, dir.path("exp.img"));
    EXPECT_EQ(test::errorCodeOf([&] { redoWlog(wlog, redone, DiscardMode::Zero); }), ErrorCode::Corruption);
    redoWlog(head, expected, DiscardMode::Zero);
    EXPECT_EQ(test::readFile(redone), test::readFile(expected));
}

TEST(Ops, MergeOfMoreWdiffsThanAreReadAheadEqualsRedoingThemInOrder) {
    // Some inputs are read ahead on threads of their own and the rest where they are merged: the newest
    // record still wins wherever they overlap.
    test::TempDir dir;
    std::vector<std::string> wdiffs;
    const std::string base = baseImage(dir, "base.img");
    const std::string inOrder = copyOf(base, dir.path("order.img")),
                      merged = copyOf(base, dir.path("merged.img"));
    for (int i = 0; i < 12; i++) {
        const std::string wlog = dir.path("w" + std::to_string(i) + ".wlog");
        wdiffs.push_back(dir.path("d" + std::to_string(i) + ".wdiff"));
        generate(wlog, 40 + i);
        wlogToWdiff({wlog}, wdiffs.back(), {});
        redoWdiff(wdiffs.back(), inOrder, DiscardMode::Zero);
    }
    mergeWdiffs(wdiffs, dir.path("m.wdiff"), {});
    redoWdiff(dir.path("m.wdiff"), merged, DiscardMode::Zero);
    EXPECT_EQ(test::readFile(merged), test::readFile(inOrder));
}

TEST(Ops, ConversionThatSpillsToDiskGivesTheSameWdiffContent) {
    test::TempDir dir;
    const std::string wlog = dir.path("a.wlog");
    generate(wlog, 3);
    ConvertOptions small;
    small.memoryLimit = 2 << 10;  // a few records: the in-memory diff holds references, not data
    const ConvertResult spilled = wlogToWdiff({wlog}, dir.path("s.wdiff"), small);
    EXPECT_GT(spilled.spills, 0u);
    wlogToWdiff({wlog}, dir.path("m.wdiff"), ConvertOptions{});
    const std::string base = baseImage(dir, "base.img");
    const std::string a = copyOf(base, dir.path("a.img")), b = copyOf(base, dir.path("b.img"));
    redoWdiff(dir.path("s.wdiff"), a, DiscardMode::Zero);
    redoWdiff(dir.path("m.wdiff"), b, DiscardMode::Zero);
    EXPECT_EQ(test::readFile(a), test::readFile(b));
}

TEST(Ops, VirtualFullImageOfABaseAndADiffChainReadsAsTheRedoneImage) {
    test::TempDir dir;
    const std::string base = baseImage(dir, "base.img");
    std::vector<std::string> diffs;
    const std::string redone = copyOf(base, dir.path("redone.img"));
    for (int i = 0; i < 3; i++) {
        const std::string wlog = dir.path("w" + std::to_string(i)), wdiff = dir.path("d" + std::to_string(i));
        generate(wlog, 10 + i);
        ConvertOptions opt;
        opt.indexed = i == 1;
        wlogToWdiff({wlog}, wdiff, opt);
        redoWdiff(wdiff, redone, DiscardMode::Zero);
        diffs.push_back(wdiff);
    }
    VirtualFullImage v(base, diffs);
    ASSERT_EQ(v.sizeBytes(), kDeviceLb * kLbSize);
    const auto want = test::readFile(redone);
    Bytes whole(v.sizeBytes());
    v.read(0, whole.size(), whole.data());
    EXPECT_EQ(whole, want);
    // Unaligned pieces at odd places read the same bytes.
    Bytes piece(37 * kLbSize);
    v.read(1001 * kLbSize, piece.size(), piece.data());
    EXPECT_TRUE(std::equal(piece.begin(), piece.end(), want.begin() + 1001 * kLbSize));
}

TEST(Ops, HashOfAnImageIsXxh3OfItsChunkHashes) {
    test::TempDir dir;
    const std::string img = dir.path("a.img");
    const auto b = test::bytes(1000 * 1024 + 512, 5);
    test::writeFile(img, b);
    HashOptions opt;
    opt.seed = 42;
    opt.chunkBytes = 64 << 10;
    const HashResult h = hashImage(img, opt, true);
    const size_t chunks = (b.size() + opt.chunkBytes - 1) / opt.chunkBytes;
    ASSERT_EQ(h.chunkHashes.size(), chunks * 16);
    EXPECT_EQ(h.bytes, b.size());
    std::vector<uint8_t> want;
    for (size_t c = 0; c < chunks; c++) {
        const size_t off = c * opt.chunkBytes, len = std::min<size_t>(opt.chunkBytes, b.size() - off);
        XXH128_canonical_t can;
        XXH128_canonicalFromHash(&can, XXH3_128bits_withSeed(b.data() + off, len, opt.seed));
        want.insert(want.end(), can.digest, can.digest + 16);
    }
    EXPECT_EQ(h.chunkHashes, want);
    XXH128_canonical_t whole;
    XXH128_canonicalFromHash(&whole, XXH3_128bits_withSeed(want.data(), want.size(), opt.seed));
    EXPECT_EQ(std::memcmp(h.whole, whole.digest, 16), 0);
}

TEST(Ops, HashOfAVirtualFullImageEqualsHashOfTheRedoneImage) {
    test::TempDir dir;
    const std::string base = baseImage(dir, "base.img"), wlog = dir.path("w"), wdiff = dir.path("d");
    generate(wlog, 20);
    wlogToWdiff({wlog}, wdiff, ConvertOptions{});
    const std::string redone = copyOf(base, dir.path("redone.img"));
    redoWdiff(wdiff, redone, DiscardMode::Zero);
    VirtualFullImage v(base, {wdiff});
    HashOptions opt;
    opt.chunkBytes = 128 << 10;
    const HashResult a =
        hashReader([&](uint64_t off, size_t len, Bytes& buf) { return v.view(off, len, buf); }, v.sizeBytes(),
                   opt, true, nullptr, true);
    const HashResult b = hashImage(redone, opt, true);
    EXPECT_EQ(a.chunkHashes, b.chunkHashes);
    EXPECT_EQ(std::memcmp(a.whole, b.whole, 16), 0);
    const HashResult c = hashImage(base, opt, true);
    EXPECT_NE(std::memcmp(a.whole, c.whole, 16), 0);
}

TEST(Ops, HashOfAVirtualFullImageMapsTheBaseOnlyWhereNoWdiffHasARecord) {
    // 20 MiB: three batches of hashReader, one touched by a sorted wdiff, one by an indexed wdiff, one by
    // none; an empty wdiff in the chain touches nothing.
    test::TempDir dir;
    const std::string base = dir.path("base.img");
    test::writeFile(base, test::bytes(20 << 20, 7));
    const auto record = [](uint64_t addrLb, uint32_t blocks, uint8_t seed) {
        DiffIo io;
        io.addr = addrLb;
        io.blocks = blocks;
        io.buf = std::make_shared<Bytes>(test::bytes(blocks * kLbSize, seed));
        return io;
    };
    const std::string empty = dir.path("empty.wdiff"), sorted = dir.path("sorted.wdiff"),
                      indexed = dir.path("indexed.wdiff");
    SortedDiffWriter(empty, {}).close();
    SortedDiffWriter s(sorted, {});
    s.add(record((9 << 20) / kLbSize, 24, 1));
    s.close();
    IndexedDiffWriter x(indexed, {});
    x.add(record(8, 3, 2));
    x.close();
    const std::string redone = copyOf(base, dir.path("redone.img"));
    for (const auto& d : {empty, sorted, indexed}) redoWdiff(d, redone, DiscardMode::Zero);
    VirtualFullImage v(base, {empty, sorted, indexed});
    HashOptions opt;
    opt.chunkBytes = 64 << 10;
    const HashResult a =
        hashReader([&](uint64_t off, size_t len, Bytes& buf) { return v.view(off, len, buf); }, v.sizeBytes(),
                   opt, true, nullptr, true);
    const HashResult b = hashImage(redone, opt, true);
    EXPECT_EQ(a.chunkHashes, b.chunkHashes);
    EXPECT_EQ(std::memcmp(a.whole, b.whole, 16), 0);
    EXPECT_NE(std::memcmp(a.whole, hashImage(base, opt, true).whole, 16), 0);
}

// The hash of `img` in 64 KiB chunks, checked against the hash of `content`, the bytes it must hold.
HashResult expectImageHashOf(const std::string& img, const Bytes& content, HashOptions& opt) {
    opt.chunkBytes = 64 << 10;
    const HashView fromMemory = [&](uint64_t off, size_t, Bytes&) {
        return static_cast<const char*>(content.data() + off);
    };
    const HashResult want = hashReader(fromMemory, content.size(), opt, true, nullptr, true);
    const HashResult file = hashImage(img, opt, true);
    EXPECT_EQ(file.chunkHashes, want.chunkHashes);
    EXPECT_EQ(std::memcmp(file.whole, want.whole, 16), 0);
    return want;
}

TEST(Ops, HashOfAnImageWrittenThenSparseThenWrittenIsTheHashOfItsBytes) {
    // The view remembers how far the data from a range goes (one SEEK_HOLE for many ranges): the ranges past
    // that point, in the hole and in the data after it, still read as the file holds them.
    test::TempDir dir("/dev/shm");
    const std::string img = dir.path("img");
    const uint64_t size = 48 << 20;
    Bytes content(size, 0);
    {
        File f(img, File::Mode::Create);
        f.truncate(size);
        const auto data = test::bytes(20 << 20, 5);  // 20 MiB written, 20 MiB hole, 8 MiB written
        f.pwriteAll(data.data(), data.size(), 0);
        f.pwriteAll(data.data(), 8 << 20, 40 << 20);
        std::memcpy(content.data(), data.data(), data.size());
        std::memcpy(content.data() + (40 << 20), data.data(), 8 << 20);
    }
    HashOptions opt;
    expectImageHashOf(img, content, opt);
}

TEST(Ops, HashingAndVirtualReadsOfASparseImageOnTmpfsLeaveItsHolesUnallocated) {
    // On tmpfs a read fault on a hole of a mapping allocates the page: hashing a sparse image through a
    // mapping would fill it. 64 MiB with 3 MiB of data: one extent at the start, one across the boundary of
    // two 8 MiB hash batches, one at the end.
    test::TempDir dir("/dev/shm");
    const std::string img = dir.path("sparse.img");
    const uint64_t size = 64 << 20, batch = 8 << 20;
    Bytes content(size, 0);
    {
        File f(img, File::Mode::Create);
        f.truncate(size);
        const auto data = test::bytes(1 << 20, 3);
        for (uint64_t at : {uint64_t(0), 3 * batch - (512 << 10), size - data.size()}) {
            f.pwriteAll(data.data(), data.size(), at);
            std::memcpy(content.data() + at, data.data(), data.size());
        }
    }
    const auto allocated = [&] {
        struct stat st;
        EXPECT_EQ(::stat(img.c_str(), &st), 0);
        return uint64_t(st.st_blocks) * 512;
    };
    const uint64_t before = allocated();
    ASSERT_LT(before, uint64_t(4) << 20);

    HashOptions opt;
    const HashResult want = expectImageHashOf(img, content, opt);

    VirtualFullImage v(img, {});
    const HashResult virt =
        hashReader([&](uint64_t off, size_t len, Bytes& buf) { return v.view(off, len, buf); }, v.sizeBytes(),
                   opt, true, nullptr, true);
    EXPECT_EQ(virt.chunkHashes, want.chunkHashes);
    Bytes read(2 * batch);
    v.read(2 * batch, read.size(), read.data());
    EXPECT_EQ(std::memcmp(read.data(), content.data() + 2 * batch, read.size()), 0);

    EXPECT_EQ(allocated(), before);
}

TEST(Ops, RestoredWlogExtractsBackToTheSameLogs) {
    test::TempDir dir;
    const std::string wlog = dir.path("a.wlog"), ldev = dir.path("ldev"), out = dir.path("b.wlog");
    const GenResult g = generate(wlog, 30);
    test::makeFile(ldev, 2 << 20);
    Ldev::format(ldev, {});
    restoreWlog(wlog, ldev);
    const ExtractResult e = extractWlog(ldev, out, g.beginLsid, kInvalidLsid);
    EXPECT_EQ(e.endLsid, g.endLsid);
    EXPECT_EQ(e.packs, g.packs);
    EXPECT_FALSE(e.shrunk);
    const std::string a = baseImage(dir, "a.img"), b = copyOf(a, dir.path("b.img"));
    redoWlog(wlog, a, DiscardMode::Zero);
    redoWlog(out, b, DiscardMode::Zero);
    EXPECT_EQ(test::readFile(a), test::readFile(b));
}

}  // namespace
}  // namespace walb
