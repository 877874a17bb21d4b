// Shared by the libFuzzer harnesses (docs/testing.md): the input as a file that the readers open by path, and
// checksum fixers. A mutated file almost always fails a checksum first; each harness reads the input as it is
// and once more with the checksums the format holds recomputed, so that mutations reach the checks behind
// them.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/format.hpp"

namespace walb::fuzz {

using Bytes = std::vector<uint8_t>;

// An in-memory file (memfd) reachable by path: no disk I/O per run.
class MemoryFile {
public:
    MemoryFile() {
        fd_ = ::memfd_create("walb-fuzz", MFD_CLOEXEC);
        if (fd_ < 0) std::abort();
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    const std::string& hold(const uint8_t* data, size_t size) {
        if (::ftruncate(fd_, 0) != 0) std::abort();
        for (size_t done = 0; done < size;) {
            const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (n <= 0) std::abort();
            done += static_cast<size_t>(n);
        }
        return path_;
    }
    const std::string& hold(const Bytes& b) { return hold(b.data(), b.size()); }

private:
    int fd_ = -1;
    std::string path_;
};

// A property the harness checks failed: report it as a crash.
[[noreturn]] inline void violated(const char* what) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
}

// Runs `fn`; only walb::Error (a rejected input) is an expected way out. Anything else escapes and crashes.
template <class F>
void expectingRejection(F&& fn) {
    try {
        fn();
    } catch (const walb::Error&) {
    }
}

inline bool fits(size_t size, uint64_t off, uint64_t len) { return off <= size && len <= size - off; }

template <class T>
T load(const Bytes& b, size_t off) {
    T v;
    std::memcpy(&v, b.data() + off, sizeof(v));
    return v;
}
template <class T>
void store(Bytes& b, size_t off, const T& v) {
    std::memcpy(b.data() + off, &v, sizeof(v));
}

// Sets the self checksum stored at `field` of the block [off, off + len).
inline void resealBlock(Bytes& b, size_t off, size_t len, size_t field, uint32_t salt) {
    if (!fits(b.size(), off, len)) return;
    store<uint32_t>(b, off + field, 0);
    store<uint32_t>(b, off + field, checksum(b.data() + off, len, salt));
}

// wlog (docs/formats.md §4): file header, then each logpack header and the data checksums of its records.
inline void resealWlog(Bytes& b) {
    if (b.size() < kWlogHeaderSize) return;
    resealBlock(b, 0, kWlogHeaderSize, offsetof(WlogHeaderRaw, checksum), 0);
    const auto h = load<WlogHeaderRaw>(b, 0);
    if (!isValidPbs(h.physical_bs)) return;
    const uint32_t pbs = h.physical_bs, salt = h.log_checksum_salt;
    for (uint64_t off = kWlogHeaderSize; fits(b.size(), off, pbs);) {
        const auto ph = load<LogpackHeaderRaw>(b, off);
        if (ph.n_records == 0 || ph.n_records > maxLogRecords(pbs)) return;
        const uint64_t dataOff = off + pbs;
        for (size_t i = 0; i < ph.n_records; i++) {
            const size_t at = off + sizeof(LogpackHeaderRaw) + i * sizeof(LogRecordRaw);
            auto r = load<LogRecordRaw>(b, at);
            if (!r.hasData() || r.isPadding() || r.lsid_local == 0) continue;
            const uint64_t start = dataOff + uint64_t(r.lsid_local - 1) * pbs,
                           len = uint64_t(r.io_size) * kLbSize;
            if (!fits(b.size(), start, len)) continue;
            r.checksum = checksum(b.data() + start, len, salt);
            store(b, at, r);
        }
        resealBlock(b, off, pbs, offsetof(LogpackHeaderRaw, checksum), salt);
        off = dataOff + uint64_t(ph.total_io_size) * pbs;
    }
}

// Sorted wdiff (docs/formats.md §5.2): file header, then each pack header and the data checksums of its
// records.
inline void resealSortedWdiff(Bytes& b) {
    resealBlock(b, 0, sizeof(DiffFileHeaderRaw), offsetof(DiffFileHeaderRaw, checksum), 0);
    for (uint64_t off = sizeof(DiffFileHeaderRaw); fits(b.size(), off, kDiffPackSize);) {
        const auto ph = load<DiffPackHeaderRaw>(b, off);
        const uint64_t dataOff = off + kDiffPackSize;
        for (size_t i = 0; i < std::min<size_t>(ph.n_records, kMaxDiffRecordsInPack); i++) {
            const size_t at = off + sizeof(DiffPackHeaderRaw) + i * sizeof(DiffRecordRaw);
            auto r = load<DiffRecordRaw>(b, at);
            if (uint64_t(r.data_offset) + r.data_size > ph.total_size) continue;
            if (!fits(b.size(), dataOff + r.data_offset, r.data_size)) continue;
            r.checksum = checksum(b.data() + dataOff + r.data_offset, r.data_size, 0);
            store(b, at, r);
        }
        resealBlock(b, off, kDiffPackSize, offsetof(DiffPackHeaderRaw, checksum), 0);
        if (ph.flags & kDiffPackFlagEnd) return;
        off = dataOff + ph.total_size;
    }
}

// Indexed wdiff (docs/formats.md §5.2): file header, trailer, and each index record with its image checksum.
inline void resealIndexedWdiff(Bytes& b) {
    resealBlock(b, 0, sizeof(DiffFileHeaderRaw), offsetof(DiffFileHeaderRaw, checksum), 0);
    if (b.size() < sizeof(DiffFileHeaderRaw) + sizeof(IndexSuperRaw)) return;
    const size_t superOff = b.size() - sizeof(IndexSuperRaw);
    resealBlock(b, superOff, sizeof(IndexSuperRaw), offsetof(IndexSuperRaw, checksum), 0);
    const auto s = load<IndexSuperRaw>(b, superOff);
    if (s.index_offset > superOff) return;
    for (uint64_t at = s.index_offset; fits(superOff, at, sizeof(IndexedRecordRaw));
         at += sizeof(IndexedRecordRaw)) {
        auto r = load<IndexedRecordRaw>(b, at);
        if (fits(b.size(), r.data_offset, r.data_size)) {
            r.io_checksum = checksum(b.data() + r.data_offset, r.data_size, 0);
            store(b, at, r);
        }
        resealBlock(b, at, sizeof(IndexedRecordRaw), offsetof(IndexedRecordRaw, rec_checksum), 0);
    }
}

}  // namespace walb::fuzz
