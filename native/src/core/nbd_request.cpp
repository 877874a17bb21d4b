#include "core/nbd_request.hpp"

namespace walb {

namespace {

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t be32(const uint8_t* p) { return (uint32_t(be16(p)) << 16) | be16(p + 2); }
uint64_t be64(const uint8_t* p) { return (uint64_t(be32(p)) << 32) | be32(p + 4); }

NbdRequestCheck reply(const NbdRequest& r, int error, const char* why) {
    return {r, NbdRequestAction::Reply, error, why};
}

}  // namespace

NbdRequestCheck checkNbdRequest(const uint8_t* h, const NbdRequestLimits& limits) {
    using namespace nbd;
    NbdRequest r;
    r.magic = be32(h);
    r.flags = be16(h + 4);
    r.type = be16(h + 6);
    r.cookie = be64(h + 8);
    r.offset = be64(h + 16);
    r.length = be32(h + 24);
    if (r.magic != kRequestMagic) return {r, NbdRequestAction::Close, 0, "bad request magic"};
    if (r.type == kCmdDisc) return {r, NbdRequestAction::Disconnect, 0, nullptr};
    // The payload follows the header whatever we answer; rather than read that much to nowhere, cut the
    // client (the protocol lets a server do so; the maximum was advertised).
    if (r.type == kCmdWrite && r.length > limits.maxPayload)
        return {r, NbdRequestAction::Close, 0, "write payload larger than the maximum block size"};

    uint16_t allowedFlags = kCmdFlagFua;
    bool writes = false;
    switch (r.type) {
        case kCmdRead:
            if (r.length > limits.maxPayload)
                return reply(r, kEinval, "read longer than the maximum block size");
            break;
        case kCmdWrite:
        case kCmdTrim:
            writes = true;
            break;
        case kCmdWriteZeroes:
            writes = true;
            allowedFlags |= kCmdFlagNoHole;
            break;
        case kCmdFlush:
            // offset and length are reserved (zero); tolerate clients that fill them
            if (r.flags & ~allowedFlags) return reply(r, kEinval, "unknown command flags");
            return {r, NbdRequestAction::Serve, 0, nullptr};
        default:
            return reply(r, kEinval, "command not offered");  // CACHE, BLOCK_STATUS and unknown commands
    }
    if (r.flags & ~allowedFlags) return reply(r, kEinval, "unknown command flags");
    if (writes && limits.readOnly) return reply(r, kEperm, "the export is read-only");
    if (r.offset % limits.minBlockSize || r.length % limits.minBlockSize)
        return reply(r, kEinval, "not aligned to the minimum block size");
    if (r.length > limits.size || r.offset > limits.size - r.length) {
        // the protocol asks for ENOSPC on writes past the end and EINVAL on reads and trims past it
        const bool write = r.type == kCmdWrite || r.type == kCmdWriteZeroes;
        return reply(r, write ? kEnospc : kEinval, "beyond the end of the export");
    }
    if (r.length == 0) return reply(r, 0, nullptr);  // answered without the backend
    return {r, NbdRequestAction::Serve, 0, nullptr};
}

const char* nbdCommandName(uint16_t type) {
    switch (type) {
        case nbd::kCmdRead:
            return "READ";
        case nbd::kCmdWrite:
            return "WRITE";
        case nbd::kCmdDisc:
            return "DISC";
        case nbd::kCmdFlush:
            return "FLUSH";
        case nbd::kCmdTrim:
            return "TRIM";
        case nbd::kCmdCache:
            return "CACHE";
        case nbd::kCmdWriteZeroes:
            return "WRITE_ZEROES";
        case nbd::kCmdBlockStatus:
            return "BLOCK_STATUS";
        default:
            return "CMD_UNKNOWN";
    }
}

const char* nbdErrorName(int error) {
    switch (error) {
        case 0:
            return "OK";
        case nbd::kEperm:
            return "EPERM";
        case nbd::kEio:
            return "EIO";
        case nbd::kEnomem:
            return "ENOMEM";
        case nbd::kEinval:
            return "EINVAL";
        case nbd::kEnospc:
            return "ENOSPC";
        case nbd::kEshutdown:
            return "ESHUTDOWN";
        default:
            return "EUNKNOWN";
    }
}

}  // namespace walb
