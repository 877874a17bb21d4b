// On-disk structures of WalB, byte-compatible (docs/formats.md). All integers are little-endian and every
// struct is packed; the static_asserts pin sizes and offsets so that a layout change cannot go unnoticed.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

namespace walb {

static_assert(std::endian::native == std::endian::little,
              "WalB formats are little-endian; big-endian hosts unsupported");

constexpr uint32_t kLbSize = 512;           // logical block ("sector")
constexpr uint32_t kLayoutPageSize = 4096;  // WalB computes ldev offsets from PAGE_SIZE; fixed at 4096
constexpr uint64_t kInvalidLsid = UINT64_MAX;
constexpr uint64_t kMaxLsid = UINT64_MAX - 1;
constexpr uint16_t kSectorTypeSuper = 1;
constexpr uint16_t kSectorTypeLogpack = 3;
constexpr uint16_t kSectorTypeWlogHeader = 4;
constexpr uint16_t kWalbLogVersion = 2;
constexpr uint32_t kMaxNormalIoLb = 65535;
constexpr uint32_t kMaxTotalIoPb = 65535;
constexpr size_t kDevNameMax = 32;

inline uint64_t capacityPb(uint32_t pbs, uint64_t lb) { return (lb * kLbSize + pbs - 1) / pbs; }
inline bool isValidPbs(uint32_t pbs) {
    return pbs >= kLbSize && pbs % kLbSize == 0 && pbs <= kLayoutPageSize;
}

#pragma pack(push, 1)

struct SuperSectorRaw {
    uint16_t sector_type;
    uint16_t version;
    uint32_t checksum;
    uint32_t logical_bs;
    uint32_t physical_bs;
    uint32_t metadata_size;
    uint32_t log_checksum_salt;
    uint8_t uuid[16];
    char name[kDevNameMax];
    uint64_t ring_buffer_size;
    uint64_t oldest_lsid;
    uint64_t written_lsid;
    uint64_t device_size;
};
static_assert(sizeof(SuperSectorRaw) == 104);
static_assert(offsetof(SuperSectorRaw, name) == 40 && offsetof(SuperSectorRaw, device_size) == 96);

struct LogpackHeaderRaw {
    uint32_t checksum;
    uint16_t sector_type;
    uint16_t total_io_size;
    uint64_t logpack_lsid;
    uint16_t n_records;
    uint16_t n_padding;
    uint32_t reserved1;
};
static_assert(sizeof(LogpackHeaderRaw) == 24);

constexpr uint32_t kLogRecordExist = 1u << 0;
constexpr uint32_t kLogRecordPadding = 1u << 1;
constexpr uint32_t kLogRecordDiscard = 1u << 2;

struct LogRecordRaw {
    uint32_t checksum;
    uint32_t flags;
    uint64_t offset;
    uint32_t io_size;
    uint16_t lsid_local;
    uint16_t reserved1;
    uint64_t lsid;

    bool isPadding() const { return flags & kLogRecordPadding; }
    bool isDiscard() const { return flags & kLogRecordDiscard; }
    bool hasData() const { return !isDiscard(); }
};
static_assert(sizeof(LogRecordRaw) == 32);

inline uint32_t maxLogRecords(uint32_t pbs) {
    return (pbs - sizeof(LogpackHeaderRaw)) / sizeof(LogRecordRaw);
}

struct WlogHeaderRaw {
    uint16_t sector_type;
    uint16_t version;
    uint16_t header_size;
    uint16_t reserved1;
    uint32_t checksum;
    uint32_t log_checksum_salt;
    uint32_t logical_bs;
    uint32_t physical_bs;
    uint8_t uuid[16];
    uint64_t begin_lsid;
    uint64_t end_lsid;
};
static_assert(sizeof(WlogHeaderRaw) == 56);
constexpr uint32_t kWlogHeaderSize = 4096;

constexpr uint16_t kWdiffVersion = 2;
constexpr uint8_t kWdiffTypeSorted = 0;
constexpr uint8_t kWdiffTypeIndexed = 1;

struct DiffFileHeaderRaw {
    uint32_t checksum;
    uint16_t version;
    uint8_t type;
    uint8_t reserved1;
    uint32_t reserved2;
    uint32_t reserved3;
    uint8_t uuid[16];
};
static_assert(sizeof(DiffFileHeaderRaw) == 32);

constexpr uint8_t kDiffFlagExist = 1u << 0;
constexpr uint8_t kDiffFlagAllZero = 1u << 1;
constexpr uint8_t kDiffFlagDiscard = 1u << 2;

constexpr uint32_t kDiffPackSize = 4096;
constexpr uint32_t kDiffPackMaxData = 32u << 20;
// Largest normal wdiff record a reader accepts, in LB: a sorted record's io_blocks, an indexed record's
// orig_blocks (docs/formats.md §5.1). It is the pack data limit, 32 MiB, so no size read from a file makes a
// reader allocate more than that for one record. WalB writes no larger record: its records come from log IOs
// of at most 65535 LB (docs/formats.md §2.2) and from hash-sync bulks of at most 4 MiB.
constexpr uint32_t kMaxDiffIoBlocks = kDiffPackMaxData / kLbSize;
static_assert(kMaxDiffIoBlocks == 65536);
constexpr uint8_t kDiffPackFlagEnd = 1;

struct DiffPackHeaderRaw {
    uint32_t checksum;
    uint16_t n_records;
    uint8_t flags;
    uint8_t reserved0;
    uint32_t total_size;
    uint32_t reserved1;
};
static_assert(sizeof(DiffPackHeaderRaw) == 16);

struct DiffRecordRaw {
    uint64_t io_address;
    uint32_t io_blocks;
    uint8_t flags;
    uint8_t compression_type;
    uint16_t reserved1;
    uint32_t data_offset;
    uint32_t data_size;
    uint32_t checksum;
    uint32_t reserved2;
};
static_assert(sizeof(DiffRecordRaw) == 32);
constexpr uint32_t kMaxDiffRecordsInPack =
    (kDiffPackSize - sizeof(DiffPackHeaderRaw)) / sizeof(DiffRecordRaw);
static_assert(kMaxDiffRecordsInPack == 127);

struct IndexedRecordRaw {
    uint64_t io_address;
    uint32_t io_blocks;
    uint8_t flags;
    uint8_t compression_type;
    uint16_t reserved1;
    uint64_t data_offset;
    uint32_t data_size;
    uint32_t io_offset;
    uint32_t orig_blocks;
    uint32_t reserved2;
    uint32_t io_checksum;
    uint32_t rec_checksum;
};
static_assert(sizeof(IndexedRecordRaw) == 48);

struct IndexSuperRaw {
    uint64_t index_offset;
    uint32_t n_records;
    uint32_t n_data;
    uint32_t reserved1;
    uint32_t checksum;
};
static_assert(sizeof(IndexSuperRaw) == 24);

#pragma pack(pop)

}  // namespace walb
