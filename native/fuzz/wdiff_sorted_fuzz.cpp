// Fuzzes the sorted wdiff reader (docs/formats.md §5.2): records come in address order without overlaps, and
// the data of every normal record can be read whole.
#include "core/bytes.hpp"
#include "core/diff.hpp"
#include "fuzz_support.hpp"

using namespace walb;

namespace {

fuzz::MemoryFile input;

void readAll(const fuzz::Bytes& bytes) {
    const std::string& path = input.hold(bytes);
    fuzz::expectingRejection([&] {
        SortedDiffReader reader(path);
        DiffIo io;
        Bytes scratch;
        uint64_t lastEnd = 0;
        while (reader.next(io)) {
            if (io.addr < lastEnd || io.blocks == 0) fuzz::violated("records out of order or empty");
            lastEnd = io.end();
            if (io.kind != DiffKind::Normal) continue;
            const char* p = io.fetch(scratch);
            const uint32_t sum = checksum(p, io.bytes(), 0);
            if (io.hasDataSum && sum != io.dataSum)
                fuzz::violated("a record's data differs from its checksum");
        }
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Bytes bytes(data, data + size);
    readAll(bytes);
    fuzz::resealSortedWdiff(bytes);
    readAll(bytes);
    return 0;
}
