// A wdev on files under concurrent load, built with ThreadSanitizer (docs/testing.md): writer threads submit
// batches of writes, FUA writes, discards and flushes to regions of their own and check every read of their
// region against a model; reader threads read across the whole device and check that every block is either
// untouched (zeros) or a whole block written for exactly that address; a control thread takes status,
// checkpoints, changes the checkpoint interval and freezes and melts the device. The ring is small, so the
// logger waits for ring space and the applier and checkpoints run all the time. Bounded by a count of
// batches; the data device must hold every writer's model after close and after a reopen.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "core/bytes.hpp"
#include "core/wdev.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint64_t kDeviceLb = 8192;
constexpr int kWriters = 3, kReaders = 2, kBatches = 150, kBatchSize = 6;
constexpr uint64_t kRegionLb = kDeviceLb / kWriters;

// A written block: its own address, who wrote it, and bytes that follow from both.
void stampBlock(char* p, uint64_t lb, uint64_t version) {
    std::memcpy(p, &lb, 8);
    std::memcpy(p + 8, &version, 8);
    uint64_t x = lb * 0x9e3779b97f4a7c15ull ^ version;
    for (size_t i = 16; i < kLbSize; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        std::memcpy(p + i, &x, 8);
    }
}

// Empty when the block is zeros or a whole block stamped for `lb`.
std::string checkBlock(const char* p, uint64_t lb) {
    if (std::all_of(p, p + kLbSize, [](char c) { return c == 0; })) return "";
    uint64_t at, version;
    std::memcpy(&at, p, 8);
    std::memcpy(&version, p + 8, 8);
    if (at != lb) return "block " + std::to_string(lb) + " holds the data of block " + std::to_string(at);
    char want[kLbSize];
    stampBlock(want, lb, version);
    if (std::memcmp(p, want, kLbSize) != 0) return "block " + std::to_string(lb) + " is torn";
    return "";
}

struct Failures {
    std::mutex mu;
    std::vector<std::string> list;
    void add(const std::string& s) {
        std::lock_guard<std::mutex> lk(mu);
        if (list.size() < 20) list.push_back(s);
    }
};

void writer(Wdev& w, int index, Bytes& model, Failures& failures) {
    auto done = std::make_shared<test::Completions>();
    std::mt19937_64 rng(index + 1);
    const uint64_t base = index * kRegionLb;
    uint64_t id = uint64_t(index) << 32, version = uint64_t(index) << 32;
    Bytes got;
    for (int batch = 0; batch < kBatches; batch++) {
        std::vector<uint64_t> ids;
        for (int k = 0; k < kBatchSize; k++) {
            const uint64_t sizeLb = 1 + rng() % 24, offLb = base + rng() % (kRegionLb - sizeLb);
            const unsigned kind = rng() % 10;
            const uint64_t reqId = id++;
            ids.push_back(reqId);
            const bool wake = k == kBatchSize - 1;
            if (kind == 0) {
                w.submitFlush(reqId, done, wake);
            } else if (kind == 1) {
                w.submitDiscard(reqId, offLb * kLbSize, sizeLb * kLbSize, rng() % 2, done, wake);
                std::fill_n(model.begin() + (offLb - base) * kLbSize, sizeLb * kLbSize, 0);
            } else {
                auto buf = std::make_shared<IoBuffer>(sizeLb * kLbSize);
                for (uint64_t b = 0; b < sizeLb; b++)
                    stampBlock(buf->data() + b * kLbSize, offLb + b, ++version);
                std::memcpy(model.data() + (offLb - base) * kLbSize, buf->data(), buf->size());
                w.submitWrite(reqId, offLb * kLbSize, buf, kind == 2, done, wake);
            }
        }
        w.wakeLogger();
        for (uint64_t reqId : ids) {
            const int err = done->wait(reqId, 120000);
            if (err != kWdevOk)
                failures.add("request " + std::to_string(reqId) + " failed: " + std::to_string(err));
        }
        // Everything submitted has completed: reads of the region must see exactly the model.
        const uint64_t offLb = base + rng() % (kRegionLb - 64);
        got.resize(64 * kLbSize);
        w.read(offLb * kLbSize, got.size(), got.data());
        if (std::memcmp(got.data(), model.data() + (offLb - base) * kLbSize, got.size()) != 0)
            failures.add("writer " + std::to_string(index) + " read stale data at block " +
                         std::to_string(offLb));
    }
}

void reader(Wdev& w, int index, std::atomic<bool>& stop, Failures& failures) {
    std::mt19937_64 rng(100 + index);
    Bytes buf(128 * kLbSize);
    while (!stop.load()) {
        const uint64_t n = 1 + rng() % 128, offLb = rng() % (kDeviceLb - n);
        w.read(offLb * kLbSize, n * kLbSize, buf.data());
        for (uint64_t b = 0; b < n; b++) {
            const std::string why = checkBlock(buf.data() + b * kLbSize, offLb + b);
            if (!why.empty()) failures.add("reader: " + why);
        }
    }
}

void controller(Wdev& w, std::atomic<bool>& stop, Failures& failures) {
    for (int round = 0; !stop.load(); round++) {
        const WdevStatus s = w.status();
        if (s.failed) failures.add("the wdev failed: " + s.failure);
        if (s.lsids.oldest > s.lsids.written || s.lsids.written > s.lsids.permanent ||
            s.lsids.permanent > s.lsids.completed || s.lsids.completed > s.lsids.latest)
            failures.add("lsids out of order");
        switch (round % 4) {
            case 0:
                w.takeCheckpoint();
                break;
            case 1:
                w.setCheckpointInterval(round % 8 == 1 ? 5 : 50);
                break;
            case 2:
                w.freeze(0);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                w.melt();
                break;
            default:
                try {
                    w.setOldestLsid(w.status().lsids.prevWritten);
                } catch (const Error& e) {
                    // The ring may have overwritten the logs there since the status was taken.
                    if (e.code() != ErrorCode::InvalidArgument)
                        failures.add(std::string("setOldestLsid: ") + e.what());
                }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

TEST(WdevConcurrency, ConcurrentWritersReadersAndControlSeeConsistentData) {
    test::TempDir dir;
    const std::string ldev = dir.path("ldev"), ddev = dir.path("ddev");
    test::makeFile(ldev, 512 << 10);  // a ring of about 1000 blocks: it wraps many times
    test::makeFile(ddev, kDeviceLb * kLbSize);
    Ldev::format(ldev, {});
    WdevOptions opt;
    opt.maxLogpackKb = 16;
    opt.maxPendingBytes = 1 << 20;
    opt.logFlushIntervalMs = 3;
    opt.logFlushIntervalBytes = 64 << 10;
    opt.checkpointIntervalMs = 20;

    std::vector<Bytes> models(kWriters, Bytes(kRegionLb * kLbSize, 0));
    Failures failures;
    {
        Wdev w(ldev, ddev, opt);
        std::atomic<bool> stop{false};
        std::vector<std::thread> others, writers;
        for (int i = 0; i < kReaders; i++)
            others.emplace_back(reader, std::ref(w), i, std::ref(stop), std::ref(failures));
        others.emplace_back(controller, std::ref(w), std::ref(stop), std::ref(failures));
        for (int i = 0; i < kWriters; i++)
            writers.emplace_back(writer, std::ref(w), i, std::ref(models[i]), std::ref(failures));
        for (auto& t : writers) t.join();
        stop = true;
        for (auto& t : others) t.join();
        const WdevStatus s = w.status();
        EXPECT_FALSE(s.failed) << s.failure;
        EXPECT_GT(s.lsids.latest, 5 * s.super.ringBufferPb) << "the ring should have wrapped several times";
        w.close();
    }
    for (const std::string& f : failures.list) ADD_FAILURE() << f;

    const auto onDisk = test::readFile(ddev);
    for (int i = 0; i < kWriters; i++)
        EXPECT_EQ(std::memcmp(onDisk.data() + i * kRegionLb * kLbSize, models[i].data(), models[i].size()), 0)
            << "region " << i << " of the data device after close";
    Wdev again(ldev, ddev, opt);
    EXPECT_EQ(again.redoResult().packs, 0u);
    Bytes got(kRegionLb * kLbSize);
    for (int i = 0; i < kWriters; i++) {
        again.read(i * kRegionLb * kLbSize, got.size(), got.data());
        EXPECT_EQ(got, models[i]) << "region " << i << " after reopening";
    }
}

// ThreadSanitizer found checkpoints assigning the ldev's in-memory super sector while the logger and
// setOldestLsid read its ring geometry from other threads.
TEST(WdevConcurrency, CheckpointsRaceWithNeitherLogWritesNorSetOldestLsid) {
    test::TempDir dir;
    const std::string ldev = dir.path("ldev"), ddev = dir.path("ddev");
    test::makeFile(ldev, 256 << 10);
    test::makeFile(ddev, 1 << 20);
    Ldev::format(ldev, {});
    Wdev w(ldev, ddev, WdevOptions{});
    std::atomic<bool> stop{false};
    std::thread checkpoints([&] {
        while (!stop.load()) w.takeCheckpoint();
    });
    std::thread oldest([&] {
        while (!stop.load()) {
            try {
                w.setOldestLsid(w.status().lsids.prevWritten);
            } catch (const Error& e) {
                EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
            }
        }
    });
    auto done = std::make_shared<test::Completions>();
    for (uint64_t i = 0; i < 300; i++) {
        auto buf = std::make_shared<IoBuffer>(8 * kLbSize);
        stampBlock(buf->data(), i, i);
        w.submitWrite(i, (i % 200) * 8 * kLbSize, buf, i % 3 == 0, done);
        ASSERT_EQ(done->wait(i), kWdevOk);
    }
    stop = true;
    checkpoints.join();
    oldest.join();
    EXPECT_FALSE(w.status().failed);
}

}  // namespace
}  // namespace walb
