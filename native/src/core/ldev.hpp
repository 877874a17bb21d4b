// The log device: reserved page, super sector 0, (unused) super sector 1, then the ring buffer of logpacks.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/bytes.hpp"
#include "core/file.hpp"
#include "core/format.hpp"
#include "core/logpack.hpp"

namespace walb {

using Uuid = std::array<uint8_t, 16>;
// Lower-case hex digits of `n` bytes, as the tools print uuids and hashes.
std::string hexString(const uint8_t* p, size_t n);
inline std::string uuidHex(const Uuid& u) { return hexString(u.data(), u.size()); }

struct SuperSector {
    uint32_t pbs = 0;
    uint32_t salt = 0;
    Uuid uuid{};
    std::string name;
    uint64_t ringBufferPb = 0;
    uint64_t oldestLsid = 0;
    uint64_t writtenLsid = 0;
    uint64_t deviceSizeLb = 0;

    // Parse and validate a pbs-sized block (docs/formats.md §1.2); throws CORRUPTION naming `where`.
    static SuperSector parse(const char* block, uint32_t pbs, const std::string& where);
    void serialize(char* block) const;  // fills a pbs-sized block, checksum included
};

inline uint64_t superSectorOffset() { return kLayoutPageSize; }
inline uint64_t ringBufferOffsetPb(uint32_t pbs) { return kLayoutPageSize / pbs + 2; }
inline uint64_t ringBufferSizeFor(uint64_t ldevBytes, uint32_t pbs) {
    uint64_t blocks = ldevBytes / pbs, off = ringBufferOffsetPb(pbs);
    return blocks > off ? blocks - off : 0;
}

void randomBytes(void* buf, size_t len);

class Ldev {
public:
    // Opens an existing log device (regular file or block device) and reads its super sector.
    // pbs = 0 takes the device's own block size (512 for files, then the super's value is trusted).
    Ldev(const std::string& path, bool writable, uint32_t pbs = 0);

    struct FormatOptions {
        uint32_t pbs = 512;
        uint64_t deviceSizeLb = 0;
        std::string name;
        bool discard = false;
    };
    // format-ldev as WalB's wdevc does it: only super sector 0 is written (random uuid and salt).
    static SuperSector format(const std::string& path, const FormatOptions& opt);

    const SuperSector& super() const { return super_; }
    SuperSector& super() { return super_; }
    File& file() { return file_; }
    uint64_t offsetOf(uint64_t lsid) const;
    void writeSuper();
    // Writes `s` as the super sector, leaving super() untouched (for a writer racing with users of it).
    void writeSuper(const SuperSector& s);

    // Reads one logpack (header and data). Returns false (end of valid logs) when the header at `lsid`
    // is invalid, belongs to another lap or is empty; `why` receives the reason.
    bool readPack(uint64_t lsid, Logpack& pack, std::string* why = nullptr);
    // Read / write `n` physical blocks starting at `lsid`, continuing at the ring start when crossing its
    // end.
    void readBlocks(uint64_t lsid, size_t n, char* out);
    void writeBlocks(uint64_t lsid, size_t n, const char* in);
    // Same from spans (pointer, bytes; the bytes add up to whole blocks), without copying them together.
    void writeBlocksV(uint64_t lsid, const std::vector<std::pair<const char*, size_t>>& spans);
    // Writes a sealed pack at its own lsid. Refuses a record whose data would cross the ring end.
    void writePack(const Logpack& pack);

private:
    File file_;
    SuperSector super_;
};

// The logs [begin, end) of a log device that are known to be complete (the storage server extracts up to the
// permanent lsid): every pack must be valid, or CORRUPTION. Stops early after `maxBytes` (at least one pack).
// `bytes` holds the packs as a wlog body holds them (header block, then data blocks, pack after pack).
struct LogRange {
    SuperSector super;
    Bytes bytes;
    uint64_t beginLsid = 0, nextLsid = 0, packs = 0;
};
// How `end` is taken: an exact pack boundary (a pack crossing it is an error), or a limit that reading stops
// before — optionally taking a first pack that crosses it, since a pack is never split.
enum class RangeEnd { Exact, UpTo, UpToAtLeastOnePack };
LogRange readLogRange(const std::string& ldevPath, uint64_t begin, uint64_t end, size_t maxBytes,
                      RangeEnd mode = RangeEnd::Exact);

}  // namespace walb
