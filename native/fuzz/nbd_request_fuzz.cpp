// Fuzzes the NBD request check (docs/nbd-server.md, "Transmission"). Input: 13 bytes choosing the limits
// (minimum block size, maximum payload, export size, read-only), then the 28-byte request header. Whatever
// the bytes, the check must decode the header as the protocol lays it out and only ever serve a request the
// backend can take: a known command, aligned, inside the export, within the payload limit, never a write on a
// read-only export.
#include <cstring>

#include "core/nbd_request.hpp"
#include "fuzz_support.hpp"

using namespace walb;

namespace {

uint64_t bigEndian(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

constexpr size_t kLimitsBytes = 13;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < kLimitsBytes + nbd::kRequestHeaderSize) return 0;
    NbdRequestLimits limits;
    limits.minBlockSize = 1u << (data[0] % 17);  // 1 .. 64 KiB
    limits.maxPayload = uint32_t(bigEndian(data + 1, 3)) << 8;
    limits.size = bigEndian(data + 4, 8);
    limits.readOnly = data[12] & 1;
    const uint8_t* h = data + kLimitsBytes;

    const NbdRequestCheck c = checkNbdRequest(h, limits);
    const NbdRequest& r = c.request;
    if (r.magic != bigEndian(h, 4) || r.flags != bigEndian(h + 4, 2) || r.type != bigEndian(h + 6, 2) ||
        r.cookie != bigEndian(h + 8, 8) || r.offset != bigEndian(h + 16, 8) ||
        r.length != bigEndian(h + 24, 4))
        fuzz::violated("the header is not decoded as the protocol lays it out");
    if (std::strlen(nbdCommandName(r.type)) == 0 || std::strlen(nbdErrorName(c.error)) == 0)
        fuzz::violated("an empty name for logs");

    switch (c.action) {
        case NbdRequestAction::Close:
            if (!c.why) fuzz::violated("a connection cut without a reason");
            break;
        case NbdRequestAction::Disconnect:
            if (r.type != nbd::kCmdDisc || r.magic != nbd::kRequestMagic)
                fuzz::violated("a disconnect that is not a valid DISC");
            break;
        case NbdRequestAction::Reply:
            if (r.magic != nbd::kRequestMagic) fuzz::violated("a reply to a request with a bad magic");
            if (c.error != 0 && !c.why) fuzz::violated("an error reply without a reason");
            if (c.error == 0 && r.length != 0) fuzz::violated("a success answered without the backend");
            if (r.type == nbd::kCmdWrite && r.length > limits.maxPayload)
                fuzz::violated("an oversized write payload would be read to be dropped");
            break;
        case NbdRequestAction::Serve: {
            if (r.magic != nbd::kRequestMagic) fuzz::violated("a request with a bad magic served");
            const bool writes =
                r.type == nbd::kCmdWrite || r.type == nbd::kCmdTrim || r.type == nbd::kCmdWriteZeroes;
            if (r.type == nbd::kCmdFlush) {
                if (r.flags & ~nbd::kCmdFlagFua) fuzz::violated("a flush with unknown flags served");
                break;
            }
            if (!writes && r.type != nbd::kCmdRead) fuzz::violated("a command not offered served");
            if (writes && limits.readOnly) fuzz::violated("a write served on a read-only export");
            if (r.length == 0) fuzz::violated("a zero-length request reached the backend");
            if ((r.type == nbd::kCmdRead || r.type == nbd::kCmdWrite) && r.length > limits.maxPayload)
                fuzz::violated("a payload beyond the maximum served");
            if (r.offset % limits.minBlockSize || r.length % limits.minBlockSize)
                fuzz::violated("an unaligned request served");
            if (r.offset + r.length < r.offset || r.offset + r.length > limits.size)
                fuzz::violated("a request beyond the end of the export served");
            const uint16_t allowed =
                nbd::kCmdFlagFua | (r.type == nbd::kCmdWriteZeroes ? nbd::kCmdFlagNoHole : 0);
            if (r.flags & ~allowed) fuzz::violated("a request with unknown flags served");
            break;
        }
    }
    return 0;
}
