#include "core/nbd_latency.hpp"

#include <algorithm>
#include <chrono>

namespace walb {

size_t NbdLatency::bucketOf(uint64_t ns) {
    return static_cast<size_t>(std::lower_bound(kBoundsNs.begin(), kBoundsNs.end(), ns) - kBoundsNs.begin());
}

void NbdLatency::record(uint16_t command, uint64_t ns) {
    const auto it = std::find(kCommands.begin(), kCommands.end(), command);
    if (it == kCommands.end()) return;
    Counters& c = commands_[static_cast<size_t>(it - kCommands.begin())];
    c.counts[bucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
    c.sumNs.fetch_add(ns, std::memory_order_relaxed);
}

std::array<NbdLatency::Histogram, NbdLatency::kCommands.size()> NbdLatency::snapshot() const {
    std::array<Histogram, kCommands.size()> out;
    for (size_t i = 0; i < kCommands.size(); i++) {
        out[i].command = kCommands[i];
        for (size_t b = 0; b < kBuckets; b++)
            out[i].counts[b] = commands_[i].counts[b].load(std::memory_order_relaxed);
        out[i].sumNs = commands_[i].sumNs.load(std::memory_order_relaxed);
    }
    return out;
}

uint64_t NbdLatency::now() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

}  // namespace walb
