// Whole-file checks of wlogs and wdiffs: the readers do the checking, these walk them to the end.
#include "core/ops.hpp"

namespace walb {

WlogVerifyResult verifyWlog(const std::string& wlog, const Progress& progress) {
    WlogReader r(wlog);
    WlogVerifyResult res;
    res.header = r.header();
    Logpack p;
    while (r.next(p)) {
        res.packs++;
        for (size_t i = 0; i < p.nRecords(); i++) {
            const LogRecordRaw& rec = p.record(i);
            res.records++;
            if (rec.isPadding())
                res.paddings++;
            else if (rec.isDiscard())
                res.discards++;
            else
                res.dataBytes += uint64_t(rec.io_size) * kLbSize;
        }
        if (progress) progress(r.offset(), 0);
    }
    res.endLsid = r.endLsid();
    res.endBlock = r.sawEndBlock();
    return res;
}

DiffStats verifyWdiff(const std::string& wdiff, const Progress& progress) {
    auto reader = openDiffReader(wdiff);
    DiffStats s;
    DiffIo io;
    while (reader->next(io)) {
        s.count(io, 0);
        if (progress && (s.records & 1023) == 0) progress(io.end() * kLbSize, 0);
    }
    return s;
}

}  // namespace walb
