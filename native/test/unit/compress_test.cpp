// Per-record compression: what comes out decompresses to what went in, for every code written, and where it
// lies in the output buffer keeps the compressors' copies off the slow distance of core/bytes.hpp.
#include "core/compress.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "support.hpp"

namespace walb {
namespace {

size_t pageOffset(const char* p) { return reinterpret_cast<uintptr_t>(p) % kPageBytes; }

TEST(Compress, EveryWrittenCodeRoundTripsCompressibleDataAndLeavesRandomDataRaw) {
    Bytes compressible(64 * 1024);
    for (size_t i = 0; i < compressible.size(); i++) compressible[i] = char(i / 100 % 7);
    const Bytes random = test::bytes(64 * 1024, 7);
    for (Compression c :
         {Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::Zlib, Compression::Xz}) {
        Bytes out;
        const Compressed z = compressRecord(c, 0, compressible.data(), compressible.size(), out);
        ASSERT_EQ(z.code, c) << compressionName(c);
        ASSERT_LT(z.size, compressible.size());
        ASSERT_GE(z.data, out.data());
        ASSERT_LE(z.data + z.size, out.data() + out.size()) << "inside the buffer";
        Bytes back(compressible.size());
        decompressRecord(c, z.data, z.size, back.data(), back.size(), "test record");
        EXPECT_EQ(back, compressible) << compressionName(c);

        EXPECT_EQ(compressRecord(c, 0, random.data(), random.size(), out).code, Compression::None)
            << compressionName(c) << " does not shrink random data: stored raw";
    }
}

TEST(Compress, TheOutputStarts64BytesPastTheInputModuloThePageWhereverEitherBufferLies) {
    Bytes input(2 * kPageBytes + 64 * 1024);
    for (size_t i = 0; i < input.size(); i++) input[i] = char(i % 13);
    Bytes out;
    for (size_t inOffset : {size_t(0), size_t(16), size_t(512), size_t(4000), size_t(4095)}) {
        const char* in = input.data() + inOffset;
        const Compressed z = compressRecord(Compression::Snappy, 0, in, 64 * 1024, out);
        ASSERT_EQ(z.code, Compression::Snappy);
        EXPECT_EQ(pageOffset(z.data), (pageOffset(in) + 64) % kPageBytes) << inOffset;
    }
}

}  // namespace
}  // namespace walb
