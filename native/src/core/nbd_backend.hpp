// What the NBD transmission phase (nbd_wire.*) needs from a device: a size and five operations that complete
// asynchronously. Implementations: the wdev (nbd_wdev_backend.*) and a plain file or block device
// (nbd_file_backend.*). See docs/nbd-server.md, "Backends".
//
// The wire calls a backend only with requests checkNbdRequest (nbd_request.hpp) let through: offset and
// length are multiples of the minimum block size, offset + length <= size(), the length is not 0 (except for
// flush), READ and WRITE lengths are at most the maximum payload, and no write-type call reaches a readOnly()
// backend. Calls come from the reader threads of several connections at once.
//
// Each call completes exactly once through `target` (io.hpp), from any thread, possibly before it returns:
// - read fills `out` (out->size() bytes) with the newest data, including writes completed on any connection;
// - write, trim and writeZeroes complete when the data is stored as far as a later flush needs; with `fua`
//   only once it is durable. The backend may keep `data`;
// - flush completes once every write-type call that completed before flush was called, on any connection,
//   is durable (the server advertises NBD_FLAG_CAN_MULTI_CONN on that promise);
// - trim is a hint (the range's content is undefined afterwards); writeZeroes makes the range read as zeros.
// `more` says the caller has further requests at hand: the backend may hold its wake-up until a call without
// `more`, or kick().
#pragma once
#include <cstdint>
#include <memory>

#include "core/io.hpp"

namespace walb {

class NbdBackend {
public:
    virtual ~NbdBackend() = default;
    virtual uint64_t size() = 0;
    virtual bool readOnly() const = 0;
    virtual void read(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> out, const IoTarget& target,
                      bool more) = 0;
    virtual void write(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua,
                       const IoTarget& target, bool more) = 0;
    virtual void flush(uint64_t id, const IoTarget& target, bool more) = 0;
    virtual void trim(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                      bool more) = 0;
    virtual void writeZeroes(uint64_t id, uint64_t offset, uint64_t length, bool fua, const IoTarget& target,
                             bool more) = 0;
    virtual void kick() {}
};

}  // namespace walb
