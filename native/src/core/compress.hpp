// Per-record compression of wdiff data (docs/formats.md §5.1). All codes are read; none, snappy, zstd and lz4
// (and, for completeness, zlib and xz) can be written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/bytes.hpp"

namespace walb {

enum class Compression : uint8_t { None = 0, Zlib = 1, Snappy = 2, Xz = 3, Lz4 = 4, Zstd = 5 };
constexpr uint8_t kCompressionCodes = 6;

Compression compressionFromName(const std::string& name);  // "none", "gzip", "snappy", "lzma", "lz4", "zstd"
const char* compressionName(Compression c);

// A record's bytes as compressRecord left them: `size` bytes at `data`, inside its `out` buffer.
struct Compressed {
    Compression code;  // None: not compressed (the caller stores the raw bytes)
    const char* data;
    size_t size;
};
// Compresses `len` bytes into `out`, somewhere inside it (not at its start: see compress.cpp's room()). `out`
// is grown as needed, never shrunk (a reused buffer is not zero-filled again at each call). The code is the
// one actually used: None when compression failed or did not make the data strictly smaller.
Compressed compressRecord(Compression c, int level, const char* in, size_t len, Bytes& out);
// Whether `stored` (`len` bytes of code `c` holding `rawSize` bytes) is what compressRecord(c) gives for its
// data, so that a writer may copy it instead of decompressing and compressing again: true for snappy when
// the stored form is smaller than the data and claims its size (snappy takes no level, and libsnappy, which
// writes the snappy records of our wdiffs and of WalB's, compresses the same data to the same bytes).
bool compressesAsStored(Compression c, const char* stored, size_t len, size_t rawSize);
// The most bytes that `rawSize` bytes can take once stored with code `c`: the bound each library gives for
// its own compressor (rawSize itself for None). A larger stored size cannot have been written by that
// compressor.
size_t maxStoredSize(Compression c, size_t rawSize);
// Decompresses into exactly `outLen` bytes; throws CORRUPTION (message from `what`) on any mismatch.
void decompressRecord(Compression c, const char* in, size_t len, char* out, size_t outLen,
                      const std::string& what);

}  // namespace walb
