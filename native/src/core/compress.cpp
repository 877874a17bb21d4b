#include "core/compress.hpp"

#include <lz4.h>
#include <lzma.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "core/bytes.hpp"
#include "core/error.hpp"

namespace walb {

Compression compressionFromName(const std::string& name) {
    if (name == "none") return Compression::None;
    if (name == "gzip" || name == "zlib") return Compression::Zlib;
    if (name == "snappy") return Compression::Snappy;
    if (name == "lzma" || name == "xz") return Compression::Xz;
    if (name == "lz4") return Compression::Lz4;
    if (name == "zstd") return Compression::Zstd;
    throwError(ErrorCode::InvalidArgument,
               "unknown compression '" + name + "' (none, snappy, zstd, lz4, gzip, lzma)");
}

const char* compressionName(Compression c) {
    switch (c) {
        case Compression::None:
            return "none";
        case Compression::Zlib:
            return "gzip";
        case Compression::Snappy:
            return "snappy";
        case Compression::Xz:
            return "lzma";
        case Compression::Lz4:
            return "lz4";
        case Compression::Zstd:
            return "zstd";
    }
    return "unknown";
}

namespace {

// Room for `n` bytes in `out`, clear of the slow copy distance from `in` (core/bytes.hpp): the compressors
// copy what they cannot shrink (snappy: a literal a few header bytes into its output), and with both buffers
// on a page boundary every incompressible record was copied at that distance.
char* room(Bytes& out, size_t n, const char* in) { return roomClearOf(out, n, in); }

// Compresses into room(out, ...); `at` is where the `n` bytes start.
bool tryCompress(Compression c, int level, const char* in, size_t len, Bytes& out, char*& at, size_t& n) {
    switch (c) {
        case Compression::None:
            return false;
        case Compression::Snappy: {
            n = snappy_max_compressed_length(len);
            at = room(out, n, in);
            return snappy_compress(in, len, at, &n) == SNAPPY_OK;
        }
        case Compression::Lz4: {
            if (len > LZ4_MAX_INPUT_SIZE) return false;
            const int bound = LZ4_compressBound(static_cast<int>(len));
            at = room(out, size_t(bound), in);
            const int r = LZ4_compress_default(in, at, static_cast<int>(len), bound);
            if (r <= 0) return false;
            n = static_cast<size_t>(r);
            return true;
        }
        case Compression::Zstd: {
            const size_t bound = ZSTD_compressBound(len);
            at = room(out, bound, in);
            n = ZSTD_compress(at, bound, in, len, level == 0 ? 1 : level);
            return !ZSTD_isError(n);
        }
        case Compression::Zlib: {
            uLongf z = compressBound(len);
            at = room(out, z, in);
            if (compress2(reinterpret_cast<Bytef*>(at), &z, reinterpret_cast<const Bytef*>(in), len,
                          level == 0 ? Z_DEFAULT_COMPRESSION : level) != Z_OK) {
                return false;
            }
            n = z;
            return true;
        }
        case Compression::Xz: {
            const size_t bound = lzma_stream_buffer_bound(len);
            size_t pos = 0;
            at = room(out, bound, in);
            if (lzma_easy_buffer_encode(level == 0 ? 6 : static_cast<uint32_t>(level), LZMA_CHECK_CRC64,
                                        nullptr, reinterpret_cast<const uint8_t*>(in), len,
                                        reinterpret_cast<uint8_t*>(at), &pos, bound) != LZMA_OK) {
                return false;
            }
            n = pos;
            return true;
        }
    }
    return false;
}

}  // namespace

Compressed compressRecord(Compression c, int level, const char* in, size_t len, Bytes& out) {
    char* at = nullptr;
    size_t n = 0;
    if (tryCompress(c, level, in, len, out, at, n) && n < len) return {c, at, n};
    return {Compression::None, nullptr, 0};
}

bool compressesAsStored(Compression c, const char* stored, size_t len, size_t rawSize) {
    size_t n = 0;
    return c == Compression::Snappy && len < rawSize &&
           snappy_uncompressed_length(stored, len, &n) == SNAPPY_OK && n == rawSize;
}

size_t maxStoredSize(Compression c, size_t rawSize) {
    switch (c) {
        case Compression::None:
            return rawSize;
        case Compression::Snappy:
            return snappy_max_compressed_length(rawSize);
        case Compression::Lz4:
            return rawSize > LZ4_MAX_INPUT_SIZE
                       ? 0
                       : static_cast<size_t>(LZ4_compressBound(static_cast<int>(rawSize)));
        case Compression::Zstd:
            return ZSTD_compressBound(rawSize);
        case Compression::Zlib:
            return compressBound(static_cast<uLong>(rawSize));
        case Compression::Xz:
            return lzma_stream_buffer_bound(rawSize);
    }
    return 0;
}

void decompressRecord(Compression c, const char* in, size_t len, char* out, size_t outLen,
                      const std::string& what) {
    auto bad = [&](const char* why) {
        throwError(ErrorCode::Corruption,
                   std::string("cannot decompress (") + compressionName(c) + "): " + why + ": " + what);
    };
    switch (c) {
        case Compression::None:
            if (len != outLen) bad("stored size differs from the record size");
            std::memcpy(out, in, len);
            return;
        case Compression::Snappy: {
            size_t n = 0;
            if (snappy_uncompressed_length(in, len, &n) != SNAPPY_OK || n != outLen) bad("bad length");
            if (snappy_uncompress(in, len, out, &n) != SNAPPY_OK || n != outLen) bad("bad stream");
            return;
        }
        case Compression::Lz4: {
            int n = LZ4_decompress_safe(in, out, static_cast<int>(len), static_cast<int>(outLen));
            if (n < 0 || static_cast<size_t>(n) != outLen) bad("bad stream");
            return;
        }
        case Compression::Zstd: {
            size_t n = ZSTD_decompress(out, outLen, in, len);
            if (ZSTD_isError(n) || n != outLen) bad("bad stream");
            return;
        }
        case Compression::Zlib: {
            uLongf n = outLen;
            if (uncompress(reinterpret_cast<Bytef*>(out), &n, reinterpret_cast<const Bytef*>(in), len) !=
                    Z_OK ||
                n != outLen) {
                bad("bad stream");
            }
            return;
        }
        case Compression::Xz: {
            uint64_t memlimit = 16u << 20;
            size_t inPos = 0, outPos = 0;
            if (lzma_stream_buffer_decode(&memlimit, 0, nullptr, reinterpret_cast<const uint8_t*>(in), &inPos,
                                          len, reinterpret_cast<uint8_t*>(out), &outPos, outLen) != LZMA_OK ||
                outPos != outLen) {
                bad("bad stream");
            }
            return;
        }
    }
    bad("unknown compression code");
}

}  // namespace walb
