// Workload generator: random logpacks built by the driver's rules, for tests and benchmarks.
#include <algorithm>
#include <cstring>
#include <deque>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/ops.hpp"

namespace walb {

namespace {

// xoshiro256**: fast, good enough for test data, reproducible from a seed.
class Rng {
public:
    explicit Rng(uint64_t seed) {
        for (auto& x : s_) {
            seed += 0x9e3779b97f4a7c15ull;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            x = z ^ (z >> 31);
        }
    }
    uint64_t next() {
        const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return r;
    }
    uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
    double unit() { return double(next() >> 11) / double(1ull << 53); }
    void fill(char* p, size_t len) {
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
            uint64_t v = next();
            std::memcpy(p + i, &v, 8);
        }
        for (; i < len; i++) p[i] = static_cast<char>(next());
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

}  // namespace

GenResult generateWlog(const std::string& out, const GenOptions& opt, const Progress& progress) {
    if (!isValidPbs(opt.pbs))
        throwError(ErrorCode::InvalidArgument, "invalid physical block size " + std::to_string(opt.pbs));
    const uint32_t lbPerPb = opt.pbs / kLbSize;
    const uint32_t minLb = std::max<uint32_t>(lbPerPb, (opt.minIoLb + lbPerPb - 1) / lbPerPb * lbPerPb);
    const uint32_t maxLb = std::min<uint32_t>(kMaxNormalIoLb / lbPerPb * lbPerPb,
                                              std::max(minLb, opt.maxIoLb / lbPerPb * lbPerPb));
    if (opt.deviceSizeLb < maxLb)
        throwError(ErrorCode::InvalidArgument, "device size is smaller than the largest IO");
    if (opt.data != "random" && opt.data != "compressible" && opt.data != "zero") {
        throwError(ErrorCode::InvalidArgument, "data must be random, compressible or zero");
    }
    uint64_t seed = opt.seed;
    if (seed == 0) randomBytes(&seed, sizeof(seed));
    Rng rng(seed);

    WlogHeader h;
    h.pbs = opt.pbs;
    h.salt = opt.hasSalt ? opt.salt : static_cast<uint32_t>(rng.next());
    for (auto& b : h.uuid) b = static_cast<uint8_t>(rng.next());
    h.beginLsid = opt.lsid;
    h.endLsid = kInvalidLsid;
    WlogWriter writer(out, h);
    LogpackBuilder builder(opt.pbs, h.salt, opt.ringBufferPb, opt.maxLogpackPb, opt.lsid);

    GenResult res;
    res.salt = h.salt;
    res.beginLsid = opt.lsid;
    Bytes data(size_t(maxLb) * kLbSize);
    std::deque<uint64_t> recent;
    auto flushPack = [&] {
        Logpack p = builder.take();
        res.paddings += p.header().n_padding;
        writer.append(p);
        res.packs++;
    };
    uint32_t iosInPack = 0, packTarget = 1 + static_cast<uint32_t>(rng.below(opt.maxIosPerPack));
    while (res.bytes < opt.amountBytes) {
        const uint32_t sizeLb =
            minLb + static_cast<uint32_t>(rng.below((maxLb - minLb) / lbPerPb + 1)) * lbPerPb;
        uint64_t addr;
        if (!recent.empty() && rng.unit() < opt.overlapRatio) {
            // Land near a recent write so that IOs overlap partly or fully.
            const uint64_t base = recent[rng.below(recent.size())];
            const uint64_t shift = rng.below(2 * sizeLb + 1);
            addr = base + shift >= sizeLb ? base + shift - sizeLb : 0;
        } else {
            addr = rng.below(opt.deviceSizeLb - sizeLb + 1);
        }
        addr = std::min(addr / lbPerPb * lbPerPb, (opt.deviceSizeLb - sizeLb) / lbPerPb * lbPerPb);
        recent.push_back(addr);
        if (recent.size() > 64) recent.pop_front();

        const bool flush = rng.unit() < opt.flushRatio;
        if (iosInPack >= packTarget && !builder.empty()) {
            flushPack();
            iosInPack = 0;
            packTarget = 1 + static_cast<uint32_t>(rng.below(opt.maxIosPerPack));
        }
        if (rng.unit() < opt.discardRatio) {
            while (!builder.addDiscard(addr, sizeLb, flush)) flushPack();
            res.discards++;
        } else {
            const size_t len = size_t(sizeLb) * kLbSize;
            if (opt.data == "zero" || rng.unit() < opt.allZeroRatio) {
                std::memset(data.data(), 0, len);
            } else if (opt.data == "compressible") {
                // A quarter of every sector random, the rest a repeated byte: compresses about 3-4x.
                for (size_t s = 0; s < len; s += kLbSize) {
                    rng.fill(data.data() + s, 128);
                    std::memset(data.data() + s + 128, static_cast<int>(s / kLbSize) & 0xff, kLbSize - 128);
                }
            } else {
                rng.fill(data.data(), len);
            }
            while (!builder.addWrite(addr, sizeLb, data.data(), flush)) flushPack();
            res.bytes += len;
        }
        res.ios++;
        iosInPack++;
        if (progress && (res.ios & 255) == 0) progress(res.bytes, opt.amountBytes);
    }
    if (!builder.empty()) flushPack();
    res.endLsid = writer.close();
    return res;
}

}  // namespace walb
