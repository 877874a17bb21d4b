#include "core/stream.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/bytes.hpp"
#include "core/error.hpp"

namespace walb {

namespace {
// A reader of a small file gets a buffer of about the file's size: clearing (and, under AddressSanitizer,
// poisoning) megabytes it never fills dominates short reads. The floor keeps a file that grows readable in
// reasonable steps.
size_t bufferSizeFor(const File& file, uint64_t offset, size_t bufferSize) {
    constexpr uint64_t kMinBuffer = 16u << 10;
    const uint64_t size = file.size();
    const uint64_t left = size > offset ? size - offset : 0;
    return static_cast<size_t>(std::min<uint64_t>(bufferSize, std::max(left, kMinBuffer)));
}

// TRUNCATED for `len` bytes of `what` needed at `start` of `file`, of which `present` are there.
[[noreturn]] void throwTruncated(const File& file, uint64_t start, uint64_t len, uint64_t present,
                                 const char* what) {
    throwError(ErrorCode::Truncated, std::string("file ends inside ") + what + ": " +
                                         where(file.path(), start) + " (" + std::to_string(len) +
                                         " bytes needed, " + std::to_string(present) + " present)");
}
}  // namespace

BufferedReader::BufferedReader(const File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), fileOffset_(offset), buf_(bufferSizeFor(file, offset, bufferSize)) {}

bool BufferedReader::fill() {
    pos_ = 0;
    end_ = file_.preadSome(buf_.data(), buf_.size(), fileOffset_);
    fileOffset_ += end_;
    return end_ > 0;
}

size_t BufferedReader::read(void* out, size_t len) {
    auto* p = static_cast<char*>(out);
    size_t done = 0;
    while (done < len) {
        if (pos_ == end_) {
            // Large reads bypass the buffer.
            if (len - done >= buf_.size()) {
                size_t n = file_.preadSome(p + done, len - done, fileOffset_);
                fileOffset_ += n;
                done += n;
                break;
            }
            if (!fill()) break;
        }
        size_t n = std::min(len - done, end_ - pos_);
        std::memcpy(p + done, buf_.data() + pos_, n);
        pos_ += n;
        done += n;
    }
    offset_ += done;
    return done;
}

void BufferedReader::truncated(uint64_t start, uint64_t len, uint64_t present, const char* what) const {
    throwTruncated(file_, start, len, present, what);
}

void BufferedReader::readExact(void* out, size_t len, const char* what) {
    const uint64_t start = offset_;
    size_t n = read(out, len);
    if (n < len) truncated(start, len, n, what);
}

void BufferedReader::requireAvailable(uint64_t len, const char* what) {
    if (len <= end_ - pos_ || (knownSize_ > offset_ && len <= knownSize_ - offset_)) return;
    knownSize_ = file_.size();  // seen too small (or never): look again, the file may have grown
    const uint64_t present = knownSize_ > offset_ ? knownSize_ - offset_ : 0;
    if (len > present) truncated(offset_, len, present, what);
}

PackFileReader::PackFileReader(const File& file, uint64_t offset, size_t headerSize, size_t poolSlots)
    : file_(file), offset_(offset), headerSize_(headerSize), pool_(poolSlots), next_(headerSize) {}

void PackFileReader::truncated(uint64_t len, uint64_t present, const char* what) const {
    throwTruncated(file_, offset_, len, present, what);
}

bool PackFileReader::readHeader(char* out, const char* what) {
    if (haveNext_) {
        std::memcpy(out, next_.data(), headerSize_);
        haveNext_ = false;
    } else {
        const size_t n = file_.preadSome(out, headerSize_, offset_);
        if (n == 0) return false;
        if (n < headerSize_) truncated(headerSize_, n, what);
    }
    offset_ += headerSize_;
    return true;
}

void PackFileReader::requireAvailable(uint64_t len, const char* what) {
    if (knownSize_ >= offset_ + len) return;
    knownSize_ = file_.size();  // seen too small (or never): look again, the file may have grown
    if (knownSize_ < offset_ + len) truncated(len, knownSize_ > offset_ ? knownSize_ - offset_ : 0, what);
}

SharedSpan PackFileReader::readShared(size_t len, const char* what) {
    requireAvailable(len, what);
    // The data goes where its offset in the file is its offset in a page (the kernel's copy from the page
    // cache runs at its fastest then, see core/bytes.hpp), with room for the next header after it.
    const size_t need = len + headerSize_;
    const size_t inPage = offset_ % kPageBytes;
    size_t at = (slabUsed_ + kPageBytes - 1) / kPageBytes * kPageBytes + inPage;
    if (!slab_ || at + need > slab_->size()) {
        slab_ = pool_.acquire(std::max(kSlabBytes, inPage + need));
        at = inPage;
    }
    char* out = slab_->data() + at;
    const size_t n = file_.preadSome(out, need, offset_);
    if (n < len) truncated(len, n, what);
    haveNext_ = n == need;
    if (haveNext_) std::memcpy(next_.data(), out + len, headerSize_);
    slabUsed_ = at + len;
    offset_ += len;
    return {out, len, slab_};
}

void PackFileReader::skip(uint64_t len) {
    offset_ += len;
    haveNext_ = false;
}

void PackFileReader::read(char* out, size_t len, const char* what) {
    const size_t n = file_.preadSome(out, len, offset_);
    if (n < len) truncated(len, n, what);
    offset_ += len;
}

void BufferedReader::skip(uint64_t len) {
    uint64_t inBuf = end_ - pos_;
    if (len <= inBuf) {
        pos_ += len;
    } else {
        fileOffset_ += len - inBuf;
        pos_ = end_ = 0;
    }
    offset_ += len;
}

bool BufferedReader::atEof() { return pos_ == end_ && !fill(); }

BufferedWriter::BufferedWriter(File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), limit_(bufferSize) {
    pending_.reserve(bufferSize);
}

void BufferedWriter::write(const void* data, size_t len) {
    if (pending_.size() + len > limit_) flush();
    if (len >= limit_) {
        file_.pwriteAll(data, len, offset_);
        offset_ += len;
        return;
    }
    const auto* p = static_cast<const char*>(data);
    pending_.insert(pending_.end(), p, p + len);
}

void BufferedWriter::flush() {
    if (pending_.empty()) return;
    file_.pwriteAll(pending_.data(), pending_.size(), offset_);
    offset_ += pending_.size();
    pending_.clear();
}

}  // namespace walb

namespace walb {

AsyncWriter::AsyncWriter(File& file, uint64_t offset, size_t itemSize, size_t maxItems)
    : file_(file), itemSize_(itemSize), maxItems_(std::max<size_t>(2, maxItems)), lowItems_(maxItems_ / 2) {
    cur_.offset = offset;
    cur_.owned.reserve(kMaxItemBytes);  // address space only: pages are touched as written
    thread_ = std::thread([this] { run(); });
}

AsyncWriter::~AsyncWriter() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    workCv_.notify_all();
    thread_.join();
}

void AsyncWriter::run() {
    std::vector<std::pair<const char*, size_t>> spans;
    for (;;) {
        Item item;
        {
            std::unique_lock<std::mutex> lk(mu_);
            workCv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;
            item = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            if (!error_) {
                spans.clear();
                for (const Piece& p : item.pieces)
                    spans.emplace_back(p.ext ? p.ext : item.owned.data() + p.pos, p.len);
                if (spans.size() == 1)
                    file_.pwriteAll(spans[0].first, spans[0].second, item.offset);
                else
                    file_.pwritevAll(spans, item.offset);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu_);
            error_ = std::current_exception();
        }
        item.keep.clear();  // the referenced buffers can be reused by their owners from now on
        bool wake;
        {
            std::lock_guard<std::mutex> lk(mu_);
            item.owned.clear();
            if (item.owned.capacity() >= itemSize_ && item.owned.capacity() <= kMaxItemBytes &&
                free_.size() < maxItems_)
                free_.push_back(std::move(item.owned));
            inFlight_--;
            // The producer waits for the queue to drain to lowItems_ (or for an error), not for every item:
            // fewer wake-ups, each followed by a burst of work.
            wake = inFlight_ <= lowItems_ || error_;
        }
        if (wake) spaceCv_.notify_all();
    }
}

void AsyncWriter::enqueue(Item item) {
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (inFlight_ >= maxItems_) spaceCv_.wait(lk, [&] { return inFlight_ <= lowItems_ || error_; });
        if (error_) std::rethrow_exception(error_);
        inFlight_++;
        queue_.push_back(std::move(item));
    }
    workCv_.notify_one();
}

void AsyncWriter::handOff() {
    if (cur_.bytes == 0) return;
    const uint64_t next = cur_.offset + cur_.bytes;
    enqueue(std::move(cur_));
    cur_ = Item{};
    cur_.offset = next;
    std::lock_guard<std::mutex> lk(mu_);
    if (!free_.empty()) {
        cur_.owned = std::move(free_.back());
        free_.pop_back();
    } else {
        cur_.owned.reserve(kMaxItemBytes);  // address space only: pages are touched as written
    }
}

void AsyncWriter::maybeHandOff() {
    const bool holding = openEnd_ > openBegin_ && openBegin_ >= cur_.offset;
    if (!holding || cur_.bytes >= kMaxItemBytes) handOff();
}

void AsyncWriter::write(const void* data, size_t len) {
    if (len == 0) return;
    if (cur_.bytes > 0 && cur_.bytes + len > itemSize_) maybeHandOff();
    const auto* p = static_cast<const char*>(data);
    const size_t pos = cur_.owned.size();
    cur_.owned.insert(cur_.owned.end(), p, p + len);
    if (!cur_.pieces.empty() && !cur_.pieces.back().ext &&
        cur_.pieces.back().pos + cur_.pieces.back().len == pos) {
        cur_.pieces.back().len += len;
    } else {
        cur_.pieces.push_back({nullptr, pos, len});
    }
    cur_.bytes += len;
    if (cur_.bytes >= itemSize_) maybeHandOff();
}

void AsyncWriter::writeShared(std::shared_ptr<const void> keep, size_t keepBytes, const void* data,
                              size_t len) {
    if (len == 0) return;
    if (cur_.bytes > 0 && cur_.bytes + len > itemSize_) maybeHandOff();
    bool pinned = false;  // already referenced by this item (records from a few buffers interleave)
    for (auto it = cur_.keep.rbegin(); it != cur_.keep.rend() && !pinned; ++it)
        pinned = !it->owner_before(keep) && !keep.owner_before(*it);
    if (!pinned) {
        if (!cur_.keep.empty() && cur_.pinned + keepBytes > kMaxPinnedBytes) handOff();
        cur_.keep.push_back(std::move(keep));
        cur_.pinned += keepBytes;
    }
    cur_.pieces.push_back({static_cast<const char*>(data), 0, len});
    cur_.bytes += len;
    if (cur_.bytes >= itemSize_) maybeHandOff();
}

uint64_t AsyncWriter::reserve(size_t len) {
    const uint64_t at = offset();
    static const Bytes zeros(4096, 0);
    for (size_t left = len; left > 0;) {
        const size_t n = std::min(left, zeros.size());
        write(zeros.data(), n);
        left -= n;
    }
    if (openEnd_ <= openBegin_) {  // one range is tracked; any other one is patched as a separate write
        openBegin_ = at;
        openEnd_ = at + len;
    }
    return at;
}

void AsyncWriter::patch(uint64_t off, const void* data, size_t len) {
    const auto* p = static_cast<const char*>(data);
    if (off <= openBegin_ && off + len >= openEnd_) openBegin_ = openEnd_ = 0;
    if (off < cur_.offset) {
        // Already handed off: queued after that item, so it lands on top of it.
        const size_t n = static_cast<size_t>(std::min<uint64_t>(len, cur_.offset - off));
        Item item;
        item.offset = off;
        item.bytes = n;
        item.owned.assign(p, p + n);
        item.pieces.push_back({nullptr, 0, n});
        enqueue(std::move(item));
        off += n;
        p += n;
        len -= n;
    }
    // Still in the current item: only over bytes it owns (reserve() writes owned zeros).
    uint64_t at = cur_.offset;
    for (const Piece& piece : cur_.pieces) {
        if (len == 0) break;
        const uint64_t end = at + piece.len;
        if (off < end && off >= at) {
            if (piece.ext) throw std::logic_error("AsyncWriter: patch over referenced bytes");
            const size_t n = static_cast<size_t>(std::min<uint64_t>(len, end - off));
            std::memcpy(cur_.owned.data() + piece.pos + (off - at), p, n);
            off += n;
            p += n;
            len -= n;
        }
        at = end;
    }
    if (len > 0) throw std::logic_error("AsyncWriter: patch beyond the written bytes");
    if (cur_.bytes >= itemSize_) maybeHandOff();
}

void AsyncWriter::flush() {
    handOff();
    std::unique_lock<std::mutex> lk(mu_);
    spaceCv_.wait(lk, [&] { return inFlight_ == 0; });
    if (error_) std::rethrow_exception(error_);
}

}  // namespace walb
