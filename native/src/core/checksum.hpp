// WalB's checksum: a 32-bit wrap-around sum of little-endian u32 words seeded with a salt, stored negated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace walb {

// Running sum over `len` bytes; a 1-3 byte tail is zero-padded on the right (as WalB's userland does).
inline uint32_t checksumPartial(uint32_t sum, const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
    size_t i = 0;
    // Four independent 64-bit accumulators let the compiler vectorize; the wrap is applied once at the end.
    for (; i + 16 <= len; i += 16) {
        uint32_t w[4];
        std::memcpy(w, p + i, 16);
        acc0 += w[0];
        acc1 += w[1];
        acc2 += w[2];
        acc3 += w[3];
    }
    for (; i + 4 <= len; i += 4) {
        uint32_t w;
        std::memcpy(&w, p + i, 4);
        acc0 += w;
    }
    if (i < len) {
        uint32_t w = 0;
        std::memcpy(&w, p + i, len - i);
        acc0 += w;
    }
    return sum + static_cast<uint32_t>(acc0 + acc1 + acc2 + acc3);
}

inline uint32_t checksumFinish(uint32_t sum) { return ~sum + 1; }

inline uint32_t checksum(const void* data, size_t len, uint32_t salt) {
    return checksumFinish(checksumPartial(salt, data, len));
}

// A self-checksummed block (checksum field included) is valid iff this returns 0.
inline bool selfChecksumOk(const void* data, size_t len, uint32_t salt) {
    return checksum(data, len, salt) == 0;
}

}  // namespace walb
