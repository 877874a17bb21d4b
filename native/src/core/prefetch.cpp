// A DiffReader that reads ahead on a thread of its own.
#include "core/diff.hpp"
#include "core/read_ahead.hpp"

namespace walb {

namespace {

class PrefetchReader : public DiffReader {
public:
    explicit PrefetchReader(std::unique_ptr<DiffReader> inner)
        : inner_(std::move(inner)), ahead_([this](std::vector<DiffIo>& batch) { return fill(batch); }) {}
    bool next(DiffIo& io) override { return ahead_.next(io); }
    const Uuid& uuid() const override { return inner_->uuid(); }

private:
    // Small batches keep the reader's pooled buffers few (a batch holds references into them).
    bool fill(std::vector<DiffIo>& batch) {
        size_t bytes = 0;
        DiffIo io;
        while (batch.size() < ReadAhead<DiffIo>::kBatchItems && bytes < ReadAhead<DiffIo>::kBatchBytes) {
            if (!inner_->next(io)) return false;
            bytes += io.kind == DiffKind::Normal ? io.bytes() : 0;
            batch.push_back(std::move(io));
        }
        return true;
    }
    std::unique_ptr<DiffReader> inner_;
    ReadAhead<DiffIo> ahead_;  // after inner_, which its thread reads: started after it, stopped before it
};

}  // namespace

std::unique_ptr<DiffReader> prefetching(std::unique_ptr<DiffReader> inner) {
    return std::make_unique<PrefetchReader>(std::move(inner));
}

}  // namespace walb
