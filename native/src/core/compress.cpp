#include "core/compress.hpp"

#include <lz4.h>
#include <lzma.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

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

bool tryCompress(Compression c, int level, const char* in, size_t len, std::vector<char>& out) {
    switch (c) {
        case Compression::None:
            return false;
        case Compression::Snappy: {
            size_t n = snappy_max_compressed_length(len);
            out.resize(n);
            if (snappy_compress(in, len, out.data(), &n) != SNAPPY_OK) return false;
            out.resize(n);
            return true;
        }
        case Compression::Lz4: {
            if (len > LZ4_MAX_INPUT_SIZE) return false;
            out.resize(LZ4_compressBound(static_cast<int>(len)));
            int n = LZ4_compress_default(in, out.data(), static_cast<int>(len), static_cast<int>(out.size()));
            if (n <= 0) return false;
            out.resize(n);
            return true;
        }
        case Compression::Zstd: {
            out.resize(ZSTD_compressBound(len));
            size_t n = ZSTD_compress(out.data(), out.size(), in, len, level == 0 ? 1 : level);
            if (ZSTD_isError(n)) return false;
            out.resize(n);
            return true;
        }
        case Compression::Zlib: {
            uLongf n = compressBound(len);
            out.resize(n);
            if (compress2(reinterpret_cast<Bytef*>(out.data()), &n, reinterpret_cast<const Bytef*>(in), len,
                          level == 0 ? Z_DEFAULT_COMPRESSION : level) != Z_OK) {
                return false;
            }
            out.resize(n);
            return true;
        }
        case Compression::Xz: {
            out.resize(lzma_stream_buffer_bound(len));
            size_t pos = 0;
            if (lzma_easy_buffer_encode(level == 0 ? 6 : static_cast<uint32_t>(level), LZMA_CHECK_CRC64,
                                        nullptr, reinterpret_cast<const uint8_t*>(in), len,
                                        reinterpret_cast<uint8_t*>(out.data()), &pos,
                                        out.size()) != LZMA_OK) {
                return false;
            }
            out.resize(pos);
            return true;
        }
    }
    return false;
}

}  // namespace

Compression compressRecord(Compression c, int level, const char* in, size_t len, std::vector<char>& out) {
    if (tryCompress(c, level, in, len, out) && out.size() < len) return c;
    return Compression::None;
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
