// The NBD latency histogram: which bucket a duration lands in, and what a snapshot returns per command.
#include "core/nbd_latency.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <thread>
#include <vector>

namespace walb {
namespace {

TEST(NbdLatency, ABoundItselfFallsInItsOwnBucketAndOneNanosecondMoreInTheNext) {
    EXPECT_EQ(NbdLatency::bucketOf(0), 0u);
    EXPECT_EQ(NbdLatency::bucketOf(10'000), 0u);
    EXPECT_EQ(NbdLatency::bucketOf(10'001), 1u);
    EXPECT_EQ(NbdLatency::bucketOf(1'000'000), 6u);
    EXPECT_EQ(NbdLatency::bucketOf(10'000'000'000), NbdLatency::kBoundsNs.size() - 1);
    EXPECT_EQ(NbdLatency::bucketOf(10'000'000'001), NbdLatency::kBoundsNs.size());
}

TEST(NbdLatency, EachCommandKeepsItsOwnCountsAndSum) {
    NbdLatency l;
    l.record(nbd::kCmdWrite, 20'000);
    l.record(nbd::kCmdWrite, 3'000'000);
    l.record(nbd::kCmdFlush, 20'000'000'000);
    const auto s = l.snapshot();
    ASSERT_EQ(s.size(), NbdLatency::kCommands.size());
    for (const auto& h : s) {
        const uint64_t n = std::accumulate(h.counts.begin(), h.counts.end(), uint64_t{0});
        if (h.command == nbd::kCmdWrite) {
            EXPECT_EQ(n, 2u);
            EXPECT_EQ(h.counts[1], 1u);  // 20 µs: above 10 µs, within 25 µs
            EXPECT_EQ(h.counts[8], 1u);  // 3 ms: within 5 ms
            EXPECT_EQ(h.sumNs, 3'020'000u);
        } else if (h.command == nbd::kCmdFlush) {
            EXPECT_EQ(n, 1u);
            EXPECT_EQ(h.counts.back(), 1u);
        } else {
            EXPECT_EQ(n, 0u) << nbdCommandName(h.command);
            EXPECT_EQ(h.sumNs, 0u);
        }
    }
}

TEST(NbdLatency, CommandsNoBackendServesAreNotCounted) {
    NbdLatency l;
    l.record(nbd::kCmdDisc, 1000);
    l.record(nbd::kCmdBlockStatus, 1000);
    for (const auto& h : l.snapshot())
        EXPECT_EQ(std::accumulate(h.counts.begin(), h.counts.end(), uint64_t{0}), 0u);
}

TEST(NbdLatency, RecordsFromManyThreadsAreAllCounted) {
    NbdLatency l;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&l, t] {
            for (int i = 0; i < 10000; i++) l.record(nbd::kCmdRead, static_cast<uint64_t>(i * 1000 + t));
        });
    for (auto& t : threads) t.join();
    const auto s = l.snapshot();
    const auto& read = s[0];
    ASSERT_EQ(read.command, nbd::kCmdRead);
    EXPECT_EQ(std::accumulate(read.counts.begin(), read.counts.end(), uint64_t{0}), 40000u);
}

}  // namespace
}  // namespace walb
