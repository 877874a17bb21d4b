// Fuzzes the indexed wdiff reader (docs/formats.md §5.3): records in address order without overlaps, each
// record's range inside its decoded image, and the binary search agreeing with a walk of the index.
#include "core/bytes.hpp"
#include "core/diff.hpp"
#include "fuzz_support.hpp"

using namespace walb;

namespace {

fuzz::MemoryFile input;

void readAll(const fuzz::Bytes& bytes) {
    const std::string& path = input.hold(bytes);
    fuzz::expectingRejection([&] {
        IndexedDiffReader reader(path);
        DiffIo io;
        Bytes scratch;
        uint64_t lastEnd = 0;
        while (reader.next(io)) {
            if (io.addr < lastEnd || io.blocks == 0) fuzz::violated("records out of order or empty");
            lastEnd = io.end();
            if (io.kind != DiffKind::Normal) continue;
            if (!io.buf || io.off + io.bytes() > io.buf->size())
                fuzz::violated("a record lies outside its image");
            const uint32_t sum = checksum(io.fetch(scratch), io.bytes(), 0);
            if (io.hasDataSum && sum != io.dataSum)
                fuzz::violated("a record's data differs from its checksum");
        }
    });
    fuzz::expectingRejection([&] {
        IndexedDiffReader reader(path);
        std::vector<uint64_t> addrs;
        StoredRecord rec;
        while (reader.nextStored(rec)) addrs.push_back(rec.addr);
        for (uint64_t i = 0; i < addrs.size(); i++)
            if (reader.lowerBound(addrs[i]) != i) fuzz::violated("lowerBound disagrees with the index walk");
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Bytes bytes(data, data + size);
    readAll(bytes);
    fuzz::resealIndexedWdiff(bytes);
    readAll(bytes);
    return 0;
}
