// The userspace wdev on files (docs/wdev.md): requests, reads, durability, control, and redo at open.
#include "core/wdev.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/bytes.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint64_t kDdevBytes = 4 << 20;

struct Devices {
    test::TempDir dir;
    std::string ldev = dir.path("ldev"), ddev = dir.path("ddev");
    explicit Devices(uint64_t ldevBytes = 2 << 20) {
        test::makeFile(ldev, ldevBytes);
        test::makeFile(ddev, kDdevBytes);
        Ldev::FormatOptions f;
        f.name = "t";
        Ldev::format(ldev, f);
    }
};

WdevOptions quietOptions() {
    WdevOptions o;
    o.logFlushIntervalMs = 60000;  // only FUA and flush requests make the log permanent
    o.logFlushIntervalBytes = 64 << 20;
    o.checkpointIntervalMs = 0;
    return o;
}

std::shared_ptr<IoBuffer> buffer(const Bytes& b) {
    auto io = std::make_shared<IoBuffer>(b.size());
    std::memcpy(io->data(), b.data(), b.size());
    return io;
}

Bytes readBack(Wdev& w, uint64_t off, size_t len) {
    Bytes out(len);
    w.read(off, len, out.data());
    return out;
}

TEST(Wdev, WritesReadBackAtOnceAndReachTheDataDeviceByClose) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Bytes image(kDdevBytes, 0);
    {
        Wdev w(d.ldev, d.ddev, WdevOptions{});
        for (uint64_t i = 0; i < 50; i++) {
            const uint64_t off = (i * 37 % 4000) * kLbSize;
            const auto b = test::bytes((1 + i % 16) * kLbSize, i);
            w.submitWrite(i, off, buffer(b), false, done);
            ASSERT_EQ(done->wait(i), kWdevOk);
            std::copy(b.begin(), b.end(), image.begin() + off);
            EXPECT_EQ(readBack(w, off, b.size()), b) << i;
        }
        EXPECT_EQ(readBack(w, 0, kDdevBytes), image);
        w.close();
    }
    EXPECT_EQ(test::readFile(d.ddev), image);
}

TEST(Wdev, ADiscardedRangeReadsBackAsZeros) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, WdevOptions{});
    w.submitWrite(1, 0, buffer(test::bytes(64 * kLbSize, 1)), false, done);
    w.submitDiscard(2, 8 * kLbSize, 16 * kLbSize, false, done);
    ASSERT_EQ(done->wait(1), kWdevOk);
    ASSERT_EQ(done->wait(2), kWdevOk);
    EXPECT_EQ(readBack(w, 8 * kLbSize, 16 * kLbSize), Bytes(16 * kLbSize, 0));
    w.close();
    const auto ddev = test::readFile(d.ddev);
    EXPECT_TRUE(
        std::all_of(ddev.begin() + 8 * kLbSize, ddev.begin() + 24 * kLbSize, [](char c) { return c == 0; }));
    EXPECT_NE(ddev[7 * kLbSize], 0);
}

TEST(Wdev, AWriteCompletesBeforeItsLogIsPermanentAndAFlushMakesItPermanent) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, quietOptions());
    w.submitWrite(1, 0, buffer(test::bytes(kLbSize, 1)), false, done);
    ASSERT_EQ(done->wait(1), kWdevOk);
    WdevLsids l = w.status().lsids;
    EXPECT_GT(l.completed, l.permanent);
    w.submitFlush(2, done);
    ASSERT_EQ(done->wait(2), kWdevOk);
    l = w.status().lsids;
    EXPECT_EQ(l.permanent, l.completed);
}

TEST(Wdev, AFuaWriteCompletesOnlyOnceItsLogIsPermanent) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, quietOptions());
    w.submitWrite(1, 0, buffer(test::bytes(8 * kLbSize, 1)), true, done);
    ASSERT_EQ(done->wait(1), kWdevOk);
    const WdevLsids l = w.status().lsids;
    EXPECT_GE(l.permanent, l.completed);
    EXPECT_GT(l.completed, 0u);
}

TEST(Wdev, RequestsBeyondTheEndFailWithEnospcAndUnalignedOnesWithEio) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, WdevOptions{});
    w.submitWrite(1, kDdevBytes - kLbSize, buffer(test::bytes(2 * kLbSize, 1)), false, done);
    w.submitDiscard(2, kDdevBytes, kLbSize, false, done);
    w.submitWrite(3, 100, buffer(test::bytes(kLbSize, 1)), false, done);
    w.submitWrite(4, 0, buffer(test::bytes(100, 1)), false, done);
    EXPECT_EQ(done->wait(1), kWdevEnospc);
    EXPECT_EQ(done->wait(2), kWdevEnospc);
    EXPECT_EQ(done->wait(3), kWdevEio);
    EXPECT_EQ(done->wait(4), kWdevEio);
    EXPECT_EQ(test::errorCodeOf([&] { readBack(w, kDdevBytes, kLbSize); }), ErrorCode::InvalidArgument);
}

TEST(Wdev, AFrozenDeviceHoldsWritesUntilMelted) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, WdevOptions{});
    w.freeze(0);
    EXPECT_TRUE(w.status().frozen);
    w.submitWrite(1, 0, buffer(test::bytes(kLbSize, 1)), false, done);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(done->done(1));
    w.melt();
    EXPECT_EQ(done->wait(1), kWdevOk);
}

TEST(Wdev, ACheckpointWritesTheWrittenLsidToTheSuperSector) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, quietOptions());
    for (uint64_t i = 0; i < 10; i++)
        w.submitWrite(i, i * 8 * kLbSize, buffer(test::bytes(8 * kLbSize, i)), true, done);
    for (uint64_t i = 0; i < 10; i++) ASSERT_EQ(done->wait(i), kWdevOk);
    for (int i = 0; i < 2000 && w.status().lsids.written < w.status().lsids.completed; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    w.takeCheckpoint();
    const WdevStatus s = w.status();
    EXPECT_GT(s.lsids.written, 0u);
    EXPECT_EQ(s.lsids.prevWritten, s.lsids.written);
    EXPECT_EQ(Ldev(d.ldev, false).super().writtenLsid, s.lsids.written);
}

TEST(Wdev, ResetWalRestartsTheLsidsAtZeroWithANewIdentity) {
    Devices d;
    const Uuid before = Ldev(d.ldev, false).super().uuid;
    auto done = std::make_shared<test::Completions>();
    Wdev w(d.ldev, d.ddev, WdevOptions{});
    const auto b = test::bytes(16 * kLbSize, 3);
    w.submitWrite(1, 0, buffer(b), true, done);
    ASSERT_EQ(done->wait(1), kWdevOk);
    w.resetWal();
    const WdevStatus s = w.status();
    EXPECT_EQ(s.lsids.latest, 0u);
    EXPECT_EQ(s.lsids.oldest, 0u);
    EXPECT_NE(s.super.uuid, before);
    EXPECT_EQ(readBack(w, 0, b.size()), b) << "the data stays";
    w.submitWrite(2, 0, buffer(test::bytes(kLbSize, 4)), true, done);
    EXPECT_EQ(done->wait(2), kWdevOk);
}

TEST(Wdev, OpeningRedoesLoggedPacksAndShrinksATornLastPack) {
    Devices d;
    const auto a = test::bytes(4 * kLbSize, 1), b = test::bytes(2 * kLbSize, 2), c = test::bytes(kLbSize, 3);
    uint64_t tornLsid;
    {
        Ldev ldev(d.ldev, true);
        const SuperSector& s = ldev.super();
        LogpackBuilder builder(s.pbs, s.salt, s.ringBufferPb, 0, s.writtenLsid);
        builder.addWrite(10, 4, a.data());
        ldev.writePack(builder.take());
        builder.addWrite(100, 2, b.data());
        builder.addWrite(200, 1, c.data());
        Logpack torn = builder.take();
        tornLsid = torn.lsid();
        torn.data()[2 * kLbSize] ^= 1;  // the second record's data never made it
        ldev.writePack(torn);
        ldev.file().fdatasync();
    }
    {
        Wdev w(d.ldev, d.ddev, WdevOptions{});
        const WdevRedoResult& r = w.redoResult();
        EXPECT_EQ(r.packs, 2u);
        EXPECT_EQ(r.records, 2u);
        EXPECT_TRUE(r.shrunk);
        EXPECT_EQ(r.endLsid, tornLsid + 1 + 2);
        EXPECT_EQ(readBack(w, 10 * kLbSize, a.size()), a);
        EXPECT_EQ(readBack(w, 100 * kLbSize, b.size()), b);
        EXPECT_EQ(readBack(w, 200 * kLbSize, kLbSize), Bytes(kLbSize, 0));
    }
    Logpack p;
    ASSERT_TRUE(Ldev(d.ldev, false).readPack(tornLsid, p));
    EXPECT_EQ(p.nRecords(), 1) << "the shrunk header was written back";
}

TEST(Wdev, ReopeningAfterCloseHasNothingToRedo) {
    Devices d;
    auto done = std::make_shared<test::Completions>();
    const auto b = test::bytes(32 * kLbSize, 8);
    {
        Wdev w(d.ldev, d.ddev, WdevOptions{});
        w.submitWrite(1, 4096, buffer(b), false, done);
        ASSERT_EQ(done->wait(1), kWdevOk);
    }
    Wdev w(d.ldev, d.ddev, WdevOptions{});
    EXPECT_EQ(w.redoResult().packs, 0u);
    EXPECT_EQ(readBack(w, 4096, b.size()), b);
}

}  // namespace
}  // namespace walb
