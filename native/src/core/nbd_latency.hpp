// How long an export's NBD requests take (docs/operations.md, "Metrics"): per command, a histogram of the
// time from the request fully received (header and payload) to its completion by the backend, before the
// reply is written. The wire records each request where it completes; JS reads the sums once per scrape, so
// no request crosses into JS.
//
// Threads: record() is called by the completing threads of every connection to the export at once, snapshot()
// by the JS thread; all counters are relaxed atomics, so neither waits for the other. A snapshot taken while
// requests complete may miss the newest few in some counters; every counter only grows.
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/nbd_request.hpp"

namespace walb {

class NbdLatency {
public:
    // Upper bounds of the buckets in nanoseconds (inclusive, as Prometheus's `le`), 10 µs to 10 s; one more
    // bucket takes what is slower.
    static constexpr std::array<uint64_t, 19> kBoundsNs = {
        10'000,      25'000,        50'000,        100'000,       250'000,       500'000,     1'000'000,
        2'500'000,   5'000'000,     10'000'000,    25'000'000,    50'000'000,    100'000'000, 250'000'000,
        500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
    static constexpr size_t kBuckets = kBoundsNs.size() + 1;
    // The commands a backend serves (nbd_backend.hpp).
    static constexpr std::array<uint16_t, 5> kCommands = {nbd::kCmdRead, nbd::kCmdWrite, nbd::kCmdFlush,
                                                          nbd::kCmdTrim, nbd::kCmdWriteZeroes};

    struct Histogram {
        uint16_t command = 0;
        std::array<uint64_t, kBuckets>
            counts{};  // per bucket, not cumulative; the last one is above every bound
        uint64_t sumNs = 0;
    };

    // The bucket of a duration.
    static size_t bucketOf(uint64_t ns);
    // A request of `command` took `ns`; commands outside kCommands are ignored.
    void record(uint16_t command, uint64_t ns);
    std::array<Histogram, kCommands.size()> snapshot() const;
    // The monotonic clock the durations are measured with, in nanoseconds.
    static uint64_t now();

private:
    struct Counters {
        std::array<std::atomic<uint64_t>, kBuckets> counts{};
        std::atomic<uint64_t> sumNs{0};
    };
    std::array<Counters, kCommands.size()> commands_;
};

}  // namespace walb
