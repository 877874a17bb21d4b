// The random-access snapshot reader and its NBD backend (snapshot_image.hpp, nbd_snapshot_backend.hpp): reads
// at random offsets of a base image and a chain of wdiffs equal the redone image, from several threads at
// once.
#include "core/snapshot_image.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "core/bytes.hpp"
#include "core/nbd_request.hpp"
#include "core/nbd_snapshot_backend.hpp"
#include "core/ops.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint64_t kDeviceLb = 4096 + 7;

struct Chain {
    std::string base, redone;
    std::vector<std::string> diffs;
};

// Five wdiffs of overlapping random writes, discards and all-zero records: sorted and indexed, stored with
// none, snappy and zstd; `redone` is the base with each redone in order.
Chain makeChain(const test::TempDir& dir) {
    Chain c{dir.path("base.img"), dir.path("redone.img"), {}};
    test::writeFile(c.base, test::bytes(kDeviceLb * kLbSize, 7));
    std::filesystem::copy_file(c.base, c.redone);
    const Compression codecs[] = {Compression::Snappy, Compression::None, Compression::Zstd,
                                  Compression::None, Compression::Zstd};
    for (int i = 0; i < 5; i++) {
        GenOptions g;
        g.pbs = 512;
        g.deviceSizeLb = kDeviceLb;
        g.amountBytes = 256 << 10;
        g.maxIoLb = 96;
        g.discardRatio = 0.1;
        g.allZeroRatio = 0.1;
        g.overlapRatio = 0.4;
        g.data = "compressible";
        g.seed = 30 + i;
        const std::string wlog = dir.path("w" + std::to_string(i)), wdiff = dir.path("d" + std::to_string(i));
        generateWlog(wlog, g);
        ConvertOptions opt;
        opt.indexed = i % 2 == 1;
        opt.write.compression = codecs[i];
        wlogToWdiff({wlog}, wdiff, opt);
        redoWdiff(wdiff, c.redone, DiscardMode::Zero);
        c.diffs.push_back(wdiff);
    }
    return c;
}

TEST(SnapshotImage, RandomReadsOfAMixedChainEqualTheRedoneImage) {
    test::TempDir dir;
    const Chain c = makeChain(dir);
    const auto want = test::readFile(c.redone);
    ASSERT_NE(want, test::readFile(c.base));
    SnapshotImage img(c.base, c.diffs);
    ASSERT_EQ(img.sizeBytes(), kDeviceLb * kLbSize);
    EXPECT_GT(img.extents(), 0u);
    std::mt19937_64 rnd(1);
    for (int i = 0; i < 2000; i++) {
        const uint64_t lb = 1 + rnd() % 200, at = rnd() % (kDeviceLb - lb + 1);
        Bytes got(lb * kLbSize);
        img.read(at * kLbSize, got.size(), got.data());
        ASSERT_TRUE(std::equal(got.begin(), got.end(), want.begin() + at * kLbSize)) << at << "+" << lb;
    }
    Bytes whole(want.size());
    img.read(0, whole.size(), whole.data());
    EXPECT_EQ(whole, want);
}

TEST(SnapshotImage, ReadsFromManyThreadsAtOnceGetTheRedoneBytes) {
    test::TempDir dir;
    const Chain c = makeChain(dir);
    const auto want = test::readFile(c.redone);
    const SnapshotImage img(c.base, c.diffs);
    std::vector<std::thread> threads;
    std::atomic<int> bad{0};
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&, t] {
            std::mt19937_64 rnd(100 + t);
            for (int i = 0; i < 500; i++) {
                const uint64_t lb = 1 + rnd() % 64, at = rnd() % (kDeviceLb - lb + 1);
                Bytes got(lb * kLbSize);
                img.read(at * kLbSize, got.size(), got.data());
                if (!std::equal(got.begin(), got.end(), want.begin() + at * kLbSize)) bad++;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
}

TEST(SnapshotImage, UnalignedOrOutOfRangeReadsAreInvalidArguments) {
    test::TempDir dir;
    const std::string base = dir.path("b.img");
    test::makeFile(base, 8 * kLbSize);
    const SnapshotImage img(base, {});
    Bytes buf(16 * kLbSize);
    EXPECT_EQ(test::errorCodeOf([&] { img.read(1, kLbSize, buf.data()); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(test::errorCodeOf([&] { img.read(4 * kLbSize, 8 * kLbSize, buf.data()); }),
              ErrorCode::InvalidArgument);
}

TEST(NbdSnapshotBackend, PipelinedReadsCompleteWithTheRedoneBytesAndWritesAreRefused) {
    test::TempDir dir;
    const Chain c = makeChain(dir);
    const auto want = test::readFile(c.redone);
    auto backend =
        std::make_shared<NbdSnapshotBackend>(std::make_shared<const SnapshotImage>(c.base, c.diffs), 3);
    auto done = std::make_shared<test::Completions>();
    EXPECT_TRUE(backend->readOnly());
    EXPECT_EQ(backend->size(), kDeviceLb * kLbSize);
    std::mt19937_64 rnd(7);
    struct Req {
        uint64_t at;
        std::shared_ptr<IoBuffer> buf;
    };
    std::vector<Req> reqs;
    for (uint64_t id = 0; id < 200; id++) {
        const uint64_t lb = 1 + rnd() % 128, at = rnd() % (kDeviceLb - lb + 1);
        reqs.push_back({at, std::make_shared<IoBuffer>(lb * kLbSize)});
        backend->read(id, at * kLbSize, reqs.back().buf, done, true);
    }
    backend->kick();
    for (uint64_t id = 0; id < reqs.size(); id++) {
        ASSERT_EQ(done->wait(id), 0);
        const Req& r = reqs[id];
        EXPECT_TRUE(std::equal(r.buf->data(), r.buf->data() + r.buf->size(), want.begin() + r.at * kLbSize));
    }
    backend->write(1000, 0, std::make_shared<IoBuffer>(kLbSize), false, done, false);
    EXPECT_EQ(done->wait(1000), nbd::kEperm);
    backend->flush(1001, done, false);
    EXPECT_EQ(done->wait(1001), 0);
    backend->stop();
    backend->read(1002, 0, std::make_shared<IoBuffer>(kLbSize), done, false);
    EXPECT_EQ(done->wait(1002), nbd::kEshutdown);
}

}  // namespace
}  // namespace walb
