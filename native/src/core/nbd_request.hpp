// The NBD transmission request (docs/nbd-server.md, "Transmission"): the 28-byte header parsed and checked
// against the export and the server's limits. Pure — no I/O, no state — so that every request check lives
// here once and a fuzzer can drive it directly.
#pragma once
#include <cstddef>
#include <cstdint>

namespace walb {

namespace nbd {

constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr size_t kRequestHeaderSize = 28;      // magic, flags, type, cookie, offset, length
constexpr size_t kSimpleReplyHeaderSize = 16;  // magic, error, cookie

constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3, kCmdTrim = 4, kCmdCache = 5,
                   kCmdWriteZeroes = 6, kCmdBlockStatus = 7;
constexpr uint16_t kCmdFlagFua = 1 << 0, kCmdFlagNoHole = 1 << 1;

// Error values of replies: the protocol's own, equal to Linux errno numbers.
constexpr int kEperm = 1, kEio = 5, kEnomem = 12, kEinval = 22, kEnospc = 28, kEshutdown = 108;

}  // namespace nbd

struct NbdRequest {
    uint32_t magic = 0;
    uint16_t flags = 0, type = 0;
    uint64_t cookie = 0, offset = 0;
    uint32_t length = 0;
    bool fua() const { return flags & nbd::kCmdFlagFua; }
};

// What the checks are made against: the server's limits and the export as it is when the request arrives.
struct NbdRequestLimits {
    uint32_t minBlockSize = 512;      // power of 2; offsets and lengths must be multiples
    uint32_t maxPayload = 32u << 20;  // largest READ and WRITE length
    uint64_t size = 0;                // export size in bytes
    bool readOnly = false;
};

enum class NbdRequestAction {
    Serve,  // hand to the backend
    Reply,  // answer at once with `error` (0: a zero-length request); a WRITE's payload is read and dropped
    Disconnect,  // NBD_CMD_DISC: answer what is in flight, then close
    Close,       // protocol error (`why`): cut the connection without reading further
};

struct NbdRequestCheck {
    NbdRequest request;
    NbdRequestAction action = NbdRequestAction::Close;
    int error = 0;              // with Reply
    const char* why = nullptr;  // with Close and with a Reply that carries an error
};

// Parses header[0, kRequestHeaderSize) (big-endian) and decides what to do with the request.
NbdRequestCheck checkNbdRequest(const uint8_t* header, const NbdRequestLimits& limits);

// "READ", "WRITE", ... ("CMD_UNKNOWN" for others) and "EINVAL", ... ("EUNKNOWN"), for logs.
const char* nbdCommandName(uint16_t type);
const char* nbdErrorName(int error);

}  // namespace walb
