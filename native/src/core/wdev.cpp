#include "core/wdev.hpp"

#include <algorithm>
#include <cstring>

#include "core/bytes.hpp"
#include "core/error.hpp"

namespace walb {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kEmitLimitBytes = 8ull << 20;  // log written per ldev write, at most

// Zero a range of the ddev: a hole in a file, BLKZEROOUT (or written zeros) on a block device. Discards
// must read back as zeros, because that is what a restore of the backup will show.
void zeroRange(File& f, uint64_t off, uint64_t len) {
    if (!f.isBlockDevice() && f.discard(off, len)) return;
    f.writeZeroes(off, len);
}

std::string describeException() {
    try {
        throw;
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

}  // namespace

Wdev::Wdev(const std::string& ldevPath, const std::string& ddevPath, const WdevOptions& opt)
    : opt_(opt), checkpointIntervalMs_(opt.checkpointIntervalMs) {
    if (opt_.name.size() > 25)
        throwError(ErrorCode::InvalidArgument, "wdev name longer than 25 characters: " + opt_.name);
    if (opt_.checkpointIntervalMs > 86400000u)
        throwError(ErrorCode::InvalidArgument, "checkpoint interval above 86400000 ms");
    if (opt_.maxPendingBytes < (1u << 20))
        throwError(ErrorCode::InvalidArgument, "max pending must be at least 1 MiB");
    openAndRedo(ldevPath, ddevPath);
    syncer_ = std::thread([this] { syncerLoop(); });
    logger_ = std::thread([this] { loggerLoop(); });
    applier_ = std::thread([this] { applierLoop(); });
}

Wdev::~Wdev() {
    try {
        close();
    } catch (...) {
        // Nothing can be reported from a destructor; the super sector on disk stays at the last checkpoint.
    }
}

// ---------------------------------------------------------------------------------------------------------
// Start: assemble, redo, overflow check (docs/formats.md §1.4, §2.8, §3)

void Wdev::openAndRedo(const std::string& ldevPath, const std::string& ddevPath) {
    ldev_ = std::make_unique<Ldev>(ldevPath, true);
    super_ = ldev_->super();
    pbs_ = super_.pbs;
    ddev_.open(ddevPath, File::Mode::ReadWrite);
    if (ddev_.isBlockDevice() && ddev_.physicalBlockSize() != pbs_) {
        throwError(ErrorCode::InvalidArgument, "physical block sizes differ: ldev " + std::to_string(pbs_) +
                                                   ", ddev " + ddevPath + " " +
                                                   std::to_string(ddev_.physicalBlockSize()));
    }
    if (super_.ringBufferPb < 16)
        throwError(ErrorCode::InvalidArgument, "ring buffer of " + ldevPath + " is too small (< 16 blocks)");
    const uint64_t ddevLb = ddev_.size() / kLbSize;
    deviceSizeLb_ = super_.deviceSizeLb == 0 ? ddevLb : super_.deviceSizeLb;
    if (deviceSizeLb_ > ddevLb) {
        throwError(ErrorCode::InvalidArgument,
                   "data device " + ddevPath + " (" + std::to_string(ddevLb) +
                       " LB) is smaller than the device size in the super sector (" +
                       std::to_string(deviceSizeLb_) + " LB)");
    }
    if (!opt_.name.empty()) super_.name = opt_.name;
    super_.deviceSizeLb = deviceSizeLb_;
    // Writability test, as the driver's assemble does: rewrite the super sector before anything else.
    ldev_->super() = super_;
    ldev_->writeSuper();
    ldev_->file().fdatasync();

    redoFromWritten();
    lsids_.oldest = super_.oldestLsid;
    lsids_.latest = lsids_.completed = lsids_.flush = lsids_.permanent = lsids_.written = redo_.endLsid;
    checkOverflowAtStart();
    scrubAfterEnd();
    super_.writtenLsid = redo_.endLsid;
    ldev_->super() = super_;
    ldev_->writeSuper();
    ldev_->file().fdatasync();
    lsids_.prevWritten = redo_.endLsid;
    lastLogSync_ = lastCheckpoint_ = Clock::now();
    builder_ = std::make_unique<LogpackBuilder>(pbs_, super_.salt, super_.ringBufferPb, builderMaxPackPb(),
                                                lsids_.latest, false);
}

void Wdev::redoFromWritten() {
    uint64_t lsid = super_.writtenLsid;
    redo_.beginLsid = lsid;
    Logpack pack;
    std::string why;
    while (ldev_->readPack(lsid, pack, &why)) {
        const size_t bad = pack.firstBadRecord();
        for (size_t i = 0; i < bad; i++) {
            const LogRecordRaw& r = pack.record(i);
            if (r.isPadding() || r.io_size == 0) continue;
            if (r.offset + r.io_size > deviceSizeLb_) {
                throwError(ErrorCode::Corruption, "logpack at lsid " + std::to_string(lsid) + " record " +
                                                      std::to_string(i) + " is beyond the device end");
            }
            if (r.isDiscard()) {
                zeroRange(ddev_, r.offset * kLbSize, uint64_t(r.io_size) * kLbSize);
            } else {
                ddev_.pwriteAll(pack.recordData(i), size_t(r.io_size) * kLbSize, r.offset * kLbSize);
                redo_.bytes += uint64_t(r.io_size) * kLbSize;
            }
            redo_.records++;
        }
        if (bad == pack.nRecords()) {
            redo_.packs++;
            lsid = pack.nextLsid();
            continue;
        }
        if (bad == 0) {
            redo_.discardedPack = true;  // nothing of it was acknowledged as durable: drop it
        } else {
            pack.shrink(bad);
            ldev_->writeBlocks(lsid, 1, pack.headerBlock().data());
            ldev_->file().fdatasync();
            redo_.shrunk = true;
            redo_.packs++;
            lsid = pack.nextLsid();
        }
        break;
    }
    ddev_.fdatasync();
    redo_.endLsid = lsid;
}

void Wdev::checkOverflowAtStart() {
    const uint64_t latest = lsids_.latest, oldest = lsids_.oldest;
    if (latest - oldest > super_.ringBufferPb) {
        overflow_ = true;
    } else if (latest > oldest) {
        Logpack pack(pbs_, super_.salt);
        ldev_->readBlocks(oldest, 1, pack.headerBlock().data());
        if (!pack.checkHeader(oldest).empty() || pack.nRecords() == 0) overflow_ = true;
    }
}

// Logs written but never synced may have reached the ldev out of order before a power loss; a stale valid
// pack beyond the redo end must not be mistaken for a continuation later. Zero the free ring space that the
// unsynced window can reach.
void Wdev::scrubAfterEnd() {
    if (overflow_) return;
    const uint64_t used = lsids_.latest - lsids_.oldest;
    const uint64_t window = (opt_.logFlushIntervalBytes + kEmitLimitBytes) / pbs_ + kMaxTotalIoPb + 1;
    const uint64_t n = std::min(super_.ringBufferPb - used, window);
    Bytes zeros(std::min<uint64_t>(n, 256) * pbs_, 0);
    for (uint64_t done = 0; done < n;) {
        const uint64_t k = std::min<uint64_t>(n - done, zeros.size() / pbs_);
        ldev_->writeBlocks(lsids_.latest + done, k, zeros.data());
        done += k;
    }
    if (n > 0) ldev_->file().fdatasync();
    redo_.scrubbedPb = n;
}

uint32_t Wdev::maxPieceLb() const {
    // A piece must fit a pack alone and leave room in the ring for the rest of an emitted batch.
    const uint64_t lbPerPb = pbs_ / kLbSize;
    const uint64_t byRing = (super_.ringBufferPb / 4) * lbPerPb;
    const uint64_t byFormat = (kMaxNormalIoLb / lbPerPb) * lbPerPb;
    return static_cast<uint32_t>(std::max<uint64_t>(lbPerPb, std::min(byRing, byFormat)));
}

// ---------------------------------------------------------------------------------------------------------
// Submission and completion

void Wdev::submitWrite(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua,
                       IoTarget target, bool wake) {
    Request r;
    r.id = id;
    r.target = std::move(target);
    r.type = ReqType::Write;
    r.fua = fua;
    r.offLb = offset / kLbSize;
    r.sizeLb = data->size() / kLbSize;
    if (offset % kLbSize || data->size() % kLbSize || r.sizeLb == 0) {
        complete(r.target, id, kWdevEio);
        return;
    }
    r.data = std::move(data);
    enqueue(std::move(r), wake);
}

void Wdev::submitDiscard(uint64_t id, uint64_t offset, uint64_t length, bool fua, IoTarget target,
                         bool wake) {
    Request r;
    r.id = id;
    r.target = std::move(target);
    r.type = ReqType::Discard;
    r.fua = fua;
    r.offLb = offset / kLbSize;
    r.sizeLb = length / kLbSize;
    if (offset % kLbSize || length % kLbSize || r.sizeLb == 0) {
        complete(r.target, id, kWdevEio);
        return;
    }
    enqueue(std::move(r), wake);
}

void Wdev::submitFlush(uint64_t id, IoTarget target, bool wake) {
    Request r;
    r.id = id;
    r.target = std::move(target);
    r.type = ReqType::Flush;
    enqueue(std::move(r), wake);
}

void Wdev::enqueue(Request&& r, bool wake) {
    std::unique_lock<std::mutex> lk(mu_);
    int err = kWdevOk;
    if (stopping_) {
        err = kWdevEshutdown;
    } else if (failed_) {
        err = kWdevEio;
    } else if (r.type != ReqType::Flush && r.type != ReqType::Control && r.offLb + r.sizeLb > deviceSizeLb_) {
        err = kWdevEnospc;
    }
    if (err != kWdevOk) {
        lk.unlock();
        complete(r.target, r.id, err);
        return;
    }
    // The overlay entry exists before the request can complete, so a read after the reply sees the data.
    if (r.type == ReqType::Write || r.type == ReqType::Discard) r.seq = addOverlay(r.offLb, r.sizeLb, r.data);
    queue_.push_back(std::move(r));
    lk.unlock();
    if (wake) loggerCv_.notify_one();
}

uint64_t Wdev::sizeBytes() {
    std::lock_guard<std::mutex> lk(mu_);
    return deviceSizeLb_ * kLbSize;
}

void Wdev::complete(const IoTarget& target, uint64_t id, int error) { target->ioDone(id, error); }

void Wdev::completeAll(const std::vector<Waiter>& waiters, int error) {
    // Consecutive requests of one connection are delivered together.
    std::vector<std::pair<uint64_t, int>> run;
    for (size_t i = 0; i < waiters.size();) {
        const IoTarget& t = waiters[i].target;
        run.clear();
        for (; i < waiters.size() && waiters[i].target == t; i++) run.emplace_back(waiters[i].id, error);
        t->ioDoneMany(run);
    }
}

uint64_t Wdev::addOverlay(uint64_t offLb, uint64_t sizeLb, std::shared_ptr<IoBuffer> data) {
    std::lock_guard<std::mutex> lk(overlayMu_);
    const uint64_t seq = nextSeq_++;
    overlay_.emplace_back(OverlayEntry{offLb, sizeLb, std::move(data)});
    if (sizeLb <= kSmallEntryLb) {
        overlayByAddr_.emplace(offLb, seq);
    } else {
        overlayBig_.emplace(seq, offLb);
    }
    return seq;
}

const Wdev::OverlayEntry* Wdev::overlayEntry(uint64_t seq) const {
    if (seq < overlayBase_ || seq - overlayBase_ >= overlay_.size()) return nullptr;
    const auto& e = overlay_[seq - overlayBase_];
    return e ? &*e : nullptr;
}

void Wdev::removeOverlay(uint64_t seq) {
    std::lock_guard<std::mutex> lk(overlayMu_);
    const OverlayEntry* e = overlayEntry(seq);
    if (!e) return;
    if (e->sizeLb <= kSmallEntryLb) {
        auto range = overlayByAddr_.equal_range(e->offLb);
        for (auto a = range.first; a != range.second; ++a) {
            if (a->second == seq) {
                overlayByAddr_.erase(a);
                break;
            }
        }
    } else {
        overlayBig_.erase(seq);
    }
    overlay_[seq - overlayBase_].reset();
    while (!overlay_.empty() && !overlay_.front()) {
        overlay_.pop_front();
        overlayBase_++;
    }
}

void Wdev::read(uint64_t offset, size_t length, char* out) {
    const uint64_t offLb = offset / kLbSize, endLb = (offset + length) / kLbSize;
    if (offset % kLbSize || length % kLbSize) throwError(ErrorCode::InvalidArgument, "unaligned read");
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (endLb > deviceSizeLb_) throwError(ErrorCode::InvalidArgument, "read beyond the device end");
    }
    // Take the overlapping pending writes first, then read the ddev: an entry that leaves the overlay after
    // this point is already on the ddev, and one that stays is laid over what the ddev returns.
    std::vector<std::pair<uint64_t, OverlayEntry>> hits;
    {
        std::lock_guard<std::mutex> lk(overlayMu_);
        const uint64_t from = offLb > kSmallEntryLb ? offLb - kSmallEntryLb : 0;
        for (auto it = overlayByAddr_.lower_bound(from); it != overlayByAddr_.end() && it->first < endLb;
             ++it) {
            const OverlayEntry& e = *overlayEntry(it->second);
            if (e.offLb + e.sizeLb > offLb) hits.emplace_back(it->second, e);
        }
        for (const auto& [seq, off] : overlayBig_) {
            const OverlayEntry& e = *overlayEntry(seq);
            if (off < endLb && off + e.sizeLb > offLb) hits.emplace_back(seq, e);
        }
    }
    ddev_.preadAll(out, length, offset);
    std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [seq, e] : hits) {
        const uint64_t b = std::max(e.offLb, offLb), en = std::min(e.offLb + e.sizeLb, endLb);
        char* dst = out + (b - offLb) * kLbSize;
        const size_t n = size_t(en - b) * kLbSize;
        if (e.data) {
            std::memcpy(dst, e.data->data() + (b - e.offLb) * kLbSize, n);
        } else {
            std::memset(dst, 0, n);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Logger thread: requests -> logpacks -> ldev

void Wdev::loggerLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        const auto now = Clock::now();
        if (frozen_ && freezeDeadline_ != Clock::time_point{} && now >= freezeDeadline_) {
            frozen_ = false;
            freezeDeadline_ = {};
        }
        const bool frontBlocked =
            !queue_.empty() && frozen_ &&
            (queue_.front().type == ReqType::Write || queue_.front().type == ReqType::Discard);
        const bool canTake = !queue_.empty() && !frontBlocked && pendingBytes_ < opt_.maxPendingBytes;
        if (!canTake) {
            if (stopping_ && queue_.empty()) {
                if (lsids_.permanent < lsids_.completed && !failed_) syncLog(lk);
                break;
            }
            // Pending data waits for its log to become permanent: make sure a sync is on its way.
            if (pendingBytes_ >= opt_.maxPendingBytes && lsids_.permanent < lsids_.completed && !failed_)
                requestSync(lk);
            if (frozen_ && freezeDeadline_ != Clock::time_point{}) {
                loggerCv_.wait_until(lk, freezeDeadline_);
            } else {
                loggerCv_.wait(lk);
            }
            continue;
        }
        std::deque<Request> batch;
        uint64_t bytes = 0;
        if (queue_.front().type == ReqType::Control) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
        } else {
            while (!queue_.empty() && queue_.front().type != ReqType::Control) {
                const Request& f = queue_.front();
                if (frozen_ && f.type != ReqType::Flush) break;
                if (!batch.empty() && bytes + f.sizeLb * kLbSize > kEmitLimitBytes) break;
                if (f.type == ReqType::Write) bytes += f.sizeLb * kLbSize;
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        loggerBusy_ = true;
        if (batch.front().type == ReqType::Control) {
            lk.unlock();
            batch.front().control();
            lk.lock();
        } else {
            writeBatch(batch, lk);
        }
        loggerBusy_ = false;
        doneCv_.notify_all();
    }
    loggerDone_ = true;
    applierCv_.notify_all();
}

void Wdev::failRequests(std::deque<Request>& batch, int error) {
    for (const Request& r : batch) {
        if (r.seq) removeOverlay(r.seq);
        complete(r.target, r.id, error);
    }
}

// Builds logpacks from the batch in request order and writes them; called and returns with mu_ held.
void Wdev::writeBatch(std::deque<Request>& batch, std::unique_lock<std::mutex>& lk) {
    if (failed_) {
        lk.unlock();
        failRequests(batch, kWdevEio);
        lk.lock();
        return;
    }
    lk.unlock();
    std::vector<Logpack> packs;
    ApplyBatch apply;
    bool needSync = false;
    std::vector<Waiter> ackNow, ackAfterSync;
    // Emits the packs built so far; on failure every request of the batch not yet acknowledged fails.
    auto emit = [&]() -> int {
        if (!builder_->empty()) packs.push_back(builder_->take());
        if (packs.empty() && apply.items.empty()) return kWdevOk;
        const uint64_t begin = packs.empty() ? builder_->current().lsid() : packs.front().lsid();
        const uint64_t end = packs.empty() ? begin : packs.back().nextLsid();
        lk.lock();
        waitForRingSpace(end, lk);
        if (failed_) {
            lk.unlock();
            return kWdevEio;
        }
        if (end - lsids_.oldest > super_.ringBufferPb) {
            if (opt_.errorBeforeOverflow) {
                builder_ = std::make_unique<LogpackBuilder>(pbs_, super_.salt, super_.ringBufferPb,
                                                            builderMaxPackPb(), lsids_.latest, false);
                lk.unlock();
                return kWdevEnospc;
            }
            overflow_ = true;
        }
        lsids_.latest = end;
        lk.unlock();
        std::vector<std::pair<const char*, size_t>> spans;
        spans.reserve(packs.size() * 2);
        for (const Logpack& p : packs) {
            spans.emplace_back(p.headerBlock().data(), pbs_);
            spans.insert(spans.end(), p.spans().begin(), p.spans().end());
        }
        try {
            if (end > begin) ldev_->writeBlocksV(begin, spans);
        } catch (...) {
            fail("log device write failed: " + describeException());
            return kWdevEio;
        }
        packs.clear();
        lk.lock();
        lsids_.completed = end;
        apply.endLsid = end;
        pendingBytes_ += apply.bytes;
        applyQueue_.push_back(std::move(apply));
        apply = ApplyBatch();
        // Sync by the flush interval, and early when pending data piles up: the applier needs permanent logs.
        if (lsids_.completed - lsids_.permanent >= opt_.logFlushIntervalBytes / pbs_ ||
            pendingBytes_ >= opt_.maxPendingBytes / 2)
            needSync = true;
        lk.unlock();
        applierCv_.notify_one();
        return kWdevOk;
    };

    uint64_t emitBegin = builder_->current().lsid();
    int err = kWdevOk;
    for (size_t i = 0; i < batch.size() && err == kWdevOk; i++) {
        Request& r = batch[i];
        if (r.type == ReqType::Flush) {
            needSync = true;
            ackAfterSync.push_back({r.target, r.id});
            continue;
        }
        const uint64_t maxPiece = r.type == ReqType::Write ? maxPieceLb() : 0xFFFFFFFFull;
        for (uint64_t done = 0; done < r.sizeLb && err == kWdevOk;) {
            const uint32_t n = static_cast<uint32_t>(std::min(r.sizeLb - done, maxPiece));
            const uint64_t removeSeq = done + n == r.sizeLb ? r.seq : 0;
            if (r.type == ReqType::Write) {
                const char* src = r.data->data() + done * kLbSize;
                while (!builder_->addWrite(r.offLb + done, n, src)) packs.push_back(builder_->take());
                apply.items.push_back({r.offLb + done, n, r.data, size_t(done * kLbSize), removeSeq});
                apply.bytes += uint64_t(n) * kLbSize;
            } else {
                while (!builder_->addDiscard(r.offLb + done, n)) packs.push_back(builder_->take());
                apply.items.push_back({r.offLb + done, n, nullptr, 0, removeSeq});
            }
            done += n;
            // Bound what one ldev write carries, so that it always fits the ring next to the unapplied logs.
            if (builder_->nextLsid() - emitBegin >= emitLimitPb()) {
                err = emit();
                emitBegin = builder_->current().lsid();
            }
        }
        if (r.fua) {
            needSync = true;
            ackAfterSync.push_back({r.target, r.id});
        } else {
            ackNow.push_back({r.target, r.id});
        }
    }
    if (err == kWdevOk) err = emit();
    if (err != kWdevOk) {
        // Nothing of the batch has been acknowledged yet: fail all of it (a failed NBD write leaves the
        // range undefined, which is what a partly logged request is).
        failRequests(batch, err);
        lk.lock();
        return;
    }
    completeAll(ackNow, kWdevOk);
    lk.lock();
    if (!needSync) return;
    // FUA writes and flushes are answered by the syncer once the log up to here is permanent; the logger
    // goes on with the next batch meanwhile.
    const uint64_t need = lsids_.completed;
    if (need <= lsids_.permanent || failed_) {
        const int e = failed_ ? kWdevEio : kWdevOk;
        lk.unlock();
        completeAll(ackAfterSync, e);
        lk.lock();
        return;
    }
    for (Waiter& w : ackAfterSync) syncWaiters_.emplace_back(need, std::move(w));
    requestSync(lk);
}

uint64_t Wdev::emitLimitPb() const {
    return std::max<uint64_t>(1, std::min<uint64_t>(kEmitLimitBytes / pbs_, super_.ringBufferPb / 4));
}

uint32_t Wdev::builderMaxPackPb() const {
    return static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t(opt_.maxLogpackKb) * 1024 / pbs_, kMaxTotalIoPb));
}

// Makes everything logged so far permanent; called and returns with mu_ held.
void Wdev::syncLog(std::unique_lock<std::mutex>& lk) {
    const uint64_t target = lsids_.completed;
    requestSync(lk);
    doneCv_.wait(lk, [&] { return lsids_.permanent >= target || failed_; });
}

void Wdev::requestSync(std::unique_lock<std::mutex>&) {
    if (lsids_.completed > syncTarget_) {
        syncTarget_ = lsids_.completed;
        syncerCv_.notify_one();
    }
}

void Wdev::syncerLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        if (failed_ && !syncWaiters_.empty()) {
            std::vector<Waiter> failedWaiters;
            for (auto& [lsid, w] : syncWaiters_) failedWaiters.push_back(std::move(w));
            syncWaiters_.clear();
            lk.unlock();
            completeAll(failedWaiters, kWdevEio);
            lk.lock();
            continue;
        }
        if (!failed_ && syncTarget_ > lsids_.permanent) {
            const uint64_t target = syncTarget_;
            lsids_.flush = std::max(lsids_.flush, target);
            lk.unlock();
            try {
                ldev_->file().fdatasync();
            } catch (...) {
                fail("log device sync failed: " + describeException());
            }
            lk.lock();
            if (failed_) continue;
            lsids_.permanent = std::max(lsids_.permanent, target);
            lastLogSync_ = Clock::now();
            std::vector<Waiter> done;
            auto keep = syncWaiters_.begin();
            for (auto it = syncWaiters_.begin(); it != syncWaiters_.end(); ++it) {
                if (it->first <= lsids_.permanent) {
                    done.push_back(std::move(it->second));
                } else {
                    *keep++ = std::move(*it);
                }
            }
            syncWaiters_.erase(keep, syncWaiters_.end());
            applierCv_.notify_one();
            doneCv_.notify_all();
            if (!done.empty()) {
                lk.unlock();
                completeAll(done, kWdevOk);
                lk.lock();
            }
            continue;
        }
        if (syncerStop_) break;
        // Unsynced log is synced after log_flush_interval_ms at the latest (the size trigger is the
        // logger's).
        if (!failed_ && lsids_.completed > lsids_.permanent) {
            const auto due = lastLogSync_ + std::chrono::milliseconds(opt_.logFlushIntervalMs);
            if (Clock::now() >= due) {
                syncTarget_ = std::max(syncTarget_, lsids_.completed);
                continue;
            }
            syncerCv_.wait_until(lk, due);
        } else {
            // Woken by requests; otherwise look again after an interval (new unsynced log is not signalled).
            syncerCv_.wait_for(lk, std::chrono::milliseconds(std::max<uint32_t>(opt_.logFlushIntervalMs, 1)));
        }
    }
}

// The ring buffer never overwrites logs that redo may need: wait until the logs below `end - ring` are
// on the ddev and checkpointed (docs/formats.md §1.4). Logger thread only; mu_ held.
void Wdev::waitForRingSpace(uint64_t end, std::unique_lock<std::mutex>& lk) {
    while (!failed_ && end - lsids_.prevWritten > super_.ringBufferPb) {
        if (lsids_.permanent < lsids_.completed) {
            syncLog(lk);
            continue;
        }
        if (lsids_.written > lsids_.prevWritten) {
            lk.unlock();
            checkpoint();
            lk.lock();
            continue;
        }
        doneCv_.wait(lk);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Applier thread: permanent logs -> ddev; checkpoints

void Wdev::applierLoop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        // After a failure nothing more reaches the ddev, but the queue is still emptied.
        const bool ready =
            !applyQueue_.empty() && (applyQueue_.front().endLsid <= lsids_.permanent || failed_);
        if (ready) {
            // One batch at a time, so that the logger gets room back as soon as possible.
            ApplyBatch b = std::move(applyQueue_.front());
            applyQueue_.pop_front();
            const bool skip = failed_;
            lk.unlock();
            bool ok = true;
            if (!skip) {
                try {
                    for (const ApplyItem& it : b.items) {
                        if (it.data) {
                            ddev_.pwriteAll(it.data->data() + it.dataOff, it.sizeLb * kLbSize,
                                            it.offLb * kLbSize);
                        } else {
                            zeroRange(ddev_, it.offLb * kLbSize, it.sizeLb * kLbSize);
                        }
                    }
                } catch (...) {
                    fail("data device write failed: " + describeException());
                    ok = false;
                }
            }
            // On failure the overlay keeps the data, so reads stay correct while the device refuses writes.
            if (ok && !skip) {
                for (const ApplyItem& it : b.items)
                    if (it.removeSeq) removeOverlay(it.removeSeq);
            }
            lk.lock();
            if (ok && !skip) lsids_.written = std::max(lsids_.written, b.endLsid);
            pendingBytes_ -= b.bytes;
            loggerCv_.notify_one();
            doneCv_.notify_all();
            continue;
        }
        if (loggerDone_ && applyQueue_.empty()) break;
        const auto interval = std::chrono::milliseconds(checkpointIntervalMs_);
        if (checkpointIntervalMs_ > 0 && !frozen_ && !failed_ && lsids_.written != lsids_.prevWritten) {
            const auto due = lastCheckpoint_ + interval;
            if (Clock::now() >= due) {
                lk.unlock();
                checkpoint();
                lk.lock();
                continue;
            }
            applierCv_.wait_until(lk, due);
        } else {
            applierCv_.wait(lk);
        }
    }
}

void Wdev::checkpoint() {
    std::lock_guard<std::mutex> sg(superMu_);
    uint64_t target;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (failed_) return;
        target = lsids_.written;
    }
    try {
        ddev_.fdatasync();  // the data below `written` must be durable before the super says so
        SuperSector s;
        {
            std::lock_guard<std::mutex> lk(mu_);
            super_.writtenLsid = target;
            super_.oldestLsid = lsids_.oldest;
            super_.deviceSizeLb = deviceSizeLb_;
            s = super_;
        }
        // Written without becoming the ldev's own super: the logger and readers of the log use its ring
        // geometry at the same time (only resetWal changes that, on the logger thread).
        ldev_->writeSuper(s);
        ldev_->file().fdatasync();
    } catch (...) {
        fail("checkpoint failed: " + describeException());
        return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    lsids_.prevWritten = std::max(lsids_.prevWritten, target);
    lastCheckpoint_ = Clock::now();
    doneCv_.notify_all();
}

void Wdev::fail(const std::string& why) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (!failed_) failure_ = why;
        failed_ = true;
    }
    loggerCv_.notify_all();
    applierCv_.notify_all();
    doneCv_.notify_all();
}

// ---------------------------------------------------------------------------------------------------------
// Control

void Wdev::runControl(std::function<void()> fn) {
    std::exception_ptr error;
    bool done = false;
    Request r;
    r.type = ReqType::Control;
    r.control = [&]() {
        try {
            fn();
        } catch (...) {
            error = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(mu_);
        done = true;
        doneCv_.notify_all();
    };
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (stopping_) throwError(ErrorCode::InvalidArgument, "the wdev is shutting down");
        queue_.push_back(std::move(r));
        loggerCv_.notify_one();
        doneCv_.wait(lk, [&] { return done; });
    }
    if (error) std::rethrow_exception(error);
}

// Waits until every logged write is on the ddev. Logger thread (inside a control) only; mu_ held.
void Wdev::drainLocked(std::unique_lock<std::mutex>& lk) {
    while (!failed_ && (lsids_.written < lsids_.completed || !applyQueue_.empty())) {
        if (lsids_.permanent < lsids_.completed) {
            syncLog(lk);
            continue;
        }
        doneCv_.wait(lk);
    }
    if (failed_) throwError(ErrorCode::IoError, "wdev failed: " + failure_);
}

WdevStatus Wdev::status() {
    std::lock_guard<std::mutex> lk(mu_);
    WdevStatus s;
    s.name = super_.name;
    s.super = super_;
    s.lsids = lsids_;
    s.deviceSizeLb = deviceSizeLb_;
    s.pendingBytes = pendingBytes_;
    s.checkpointIntervalMs = checkpointIntervalMs_;
    s.overflow = overflow_;
    s.frozen = frozen_;
    s.failed = failed_;
    s.failure = failure_;
    return s;
}

void Wdev::setOldestLsid(uint64_t lsid) {
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (lsid < lsids_.oldest || lsid > lsids_.prevWritten) {
            throwError(ErrorCode::InvalidArgument, "oldest lsid " + std::to_string(lsid) + " is outside [" +
                                                       std::to_string(lsids_.oldest) + ", " +
                                                       std::to_string(lsids_.prevWritten) +
                                                       "] (oldest, prev_written)");
        }
        if (lsid < lsids_.permanent) {
            Logpack pack(pbs_, super_.salt);
            lk.unlock();
            {
                // resetWal may change the ring geometry and salt meanwhile; it holds superMu_ to do so.
                std::lock_guard<std::mutex> sg(superMu_);
                ldev_->readBlocks(lsid, 1, pack.headerBlock().data());
            }
            const std::string why = pack.checkHeader(lsid);
            if (!why.empty() || pack.nRecords() == 0)
                throwError(ErrorCode::InvalidArgument, "no logpack starts at lsid " + std::to_string(lsid) +
                                                           (why.empty() ? "" : ": " + why));
            lk.lock();
        }
        lsids_.oldest = std::max(lsids_.oldest, lsid);
    }
    checkpoint();
    throwIfFailed();
}

void Wdev::takeCheckpoint() {
    checkpoint();
    throwIfFailed();
}

void Wdev::setCheckpointInterval(uint32_t ms) {
    if (ms > 86400000u) throwError(ErrorCode::InvalidArgument, "checkpoint interval above 86400000 ms");
    std::lock_guard<std::mutex> lk(mu_);
    checkpointIntervalMs_ = ms;
    applierCv_.notify_one();
}

void Wdev::throwIfFailed() {
    std::lock_guard<std::mutex> lk(mu_);
    if (failed_) throwError(ErrorCode::IoError, "wdev failed: " + failure_);
}

void Wdev::resetWal() {
    runControl([this] {
        std::unique_lock<std::mutex> lk(mu_);
        drainLocked(lk);
        lk.unlock();
        std::lock_guard<std::mutex> sg(superMu_);
        ddev_.fdatasync();
        SuperSector s;
        {
            std::lock_guard<std::mutex> g(mu_);
            s = super_;
        }
        // The ldev may have grown: the ring takes all of it (docs/formats.md §1.4). Shrinking is refused.
        const uint64_t ring = ringBufferSizeFor(ldev_->file().size(), pbs_);
        if (ring < s.ringBufferPb) throwError(ErrorCode::InvalidArgument, "the log device has shrunk");
        s.ringBufferPb = ring;
        randomBytes(s.uuid.data(), s.uuid.size());
        randomBytes(&s.salt, sizeof(s.salt));
        s.oldestLsid = s.writtenLsid = 0;
        s.deviceSizeLb = deviceSizeLb_;
        ldev_->super() = s;
        ldev_->writeSuper();
        Bytes zero(pbs_, 0);
        ldev_->writeBlocks(0, 1, zero.data());
        ldev_->file().fdatasync();
        lk.lock();
        super_ = s;
        lsids_ = WdevLsids();
        // Lsids restart at 0: a sync target left from the old log would make the syncer declare logs
        // permanent that were never written.
        syncTarget_ = 0;
        overflow_ = false;
        builder_ =
            std::make_unique<LogpackBuilder>(pbs_, s.salt, s.ringBufferPb, builderMaxPackPb(), 0, false);
        lastCheckpoint_ = lastLogSync_ = Clock::now();
    });
}

void Wdev::freeze(uint32_t timeoutSec) {
    std::unique_lock<std::mutex> lk(mu_);
    frozen_ = true;
    timeoutSec = std::min<uint32_t>(timeoutSec, 86400);
    freezeDeadline_ = timeoutSec ? Clock::now() + std::chrono::seconds(timeoutSec) : Clock::time_point{};
    loggerCv_.notify_one();
    // Return once the batch in progress (if any) is on the ldev: no log writes happen while frozen.
    doneCv_.wait(lk, [&] { return !loggerBusy_; });
}

void Wdev::melt() {
    std::lock_guard<std::mutex> lk(mu_);
    frozen_ = false;
    freezeDeadline_ = {};
    loggerCv_.notify_one();
}

void Wdev::resize(uint64_t newSizeLb) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        const uint64_t ddevLb = ddev_.size() / kLbSize;
        if (newSizeLb == 0) newSizeLb = ddevLb;
        if (newSizeLb < deviceSizeLb_)
            throwError(ErrorCode::InvalidArgument, "a wdev can only grow (now " +
                                                       std::to_string(deviceSizeLb_) + " LB, asked " +
                                                       std::to_string(newSizeLb) + " LB)");
        if (newSizeLb > ddevLb)
            throwError(ErrorCode::InvalidArgument,
                       "the data device holds only " + std::to_string(ddevLb) + " LB, asked " +
                           std::to_string(newSizeLb) +
                           " LB: grow the data device first (a file: truncate it larger)");
        deviceSizeLb_ = newSizeLb;
    }
    checkpoint();
    throwIfFailed();
}

void Wdev::close() {
    {
        std::unique_lock<std::mutex> lk(mu_);
        if (stopped_) return;
        stopped_ = stopping_ = true;
        frozen_ = false;
    }
    loggerCv_.notify_all();
    if (logger_.joinable()) logger_.join();
    {
        std::lock_guard<std::mutex> lk(mu_);
        syncerStop_ = true;
    }
    syncerCv_.notify_all();
    if (syncer_.joinable()) syncer_.join();
    if (applier_.joinable()) applier_.join();
    checkpoint();  // written = latest now: the next start has nothing to redo
}

}  // namespace walb
