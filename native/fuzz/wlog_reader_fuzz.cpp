// Fuzzes the wlog reader (docs/formats.md §4): every pack it returns must be one that validates.
#include "core/wlog.hpp"
#include "fuzz_support.hpp"

using namespace walb;

namespace {

fuzz::MemoryFile input;

void readAll(const fuzz::Bytes& bytes) {
    fuzz::expectingRejection([&] {
        WlogReader reader(input.hold(bytes));
        Logpack pack;
        uint64_t lsid = reader.header().beginLsid;
        while (reader.next(pack)) {
            if (pack.lsid() != lsid || !pack.checkHeader(lsid).empty())
                fuzz::violated("the reader returned a pack that does not validate");
            if (pack.firstBadRecord() != pack.nRecords()) fuzz::violated("the reader returned bad data");
            lsid = pack.nextLsid();
        }
        if (reader.endLsid() != lsid) fuzz::violated("endLsid is not after the last pack");
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::Bytes bytes(data, data + size);
    readAll(bytes);
    fuzz::resealWlog(bytes);
    readAll(bytes);
    return 0;
}
