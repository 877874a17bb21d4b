// The userspace WalB device (wdev): every write becomes logpacks in the log device's ring buffer, exactly as
// the WalB driver writes them, before its data reaches the data device. See docs/wdev.md.
//
// Threads: callers submit requests from any thread and never block; a logger thread groups queued requests
// into logpacks and writes them to the ldev (one write per batch), an applier thread copies logged data to
// the ddev once the log is permanent and takes checkpoints. Reads are served from the ddev plus an in-memory
// overlay of the writes that are not on the ddev yet, so they always see the newest data.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/file.hpp"
#include "core/io.hpp"
#include "core/ldev.hpp"
#include "core/logpack.hpp"

namespace walb {

struct WdevOptions {
    std::string name;                              // overrides the name stored in the super sector when set
    uint32_t maxLogpackKb = 32;                    // wdevc create-wdev's default (maxl)
    uint64_t maxPendingBytes = 32ull << 20;        // logged data not yet on the ddev (maxp)
    uint64_t logFlushIntervalBytes = 16ull << 20;  // sync the ldev after this much unsynced log (fs)
    uint32_t logFlushIntervalMs = 100;             // ... or after this long (fp)
    uint32_t checkpointIntervalMs = 10000;         // super sync period; 0 disables periodic checkpoints
    bool errorBeforeOverflow = false;              // fail writes instead of overwriting unextracted logs
};

// The lsid indicators of docs/formats.md §3.
struct WdevLsids {
    uint64_t latest = 0, completed = 0, flush = 0, permanent = 0, written = 0, prevWritten = 0, oldest = 0;
};

struct WdevRedoResult {
    uint64_t beginLsid = 0, endLsid = 0, packs = 0, records = 0, bytes = 0;
    bool shrunk = false;         // a torn last pack was cut down
    bool discardedPack = false;  // a torn last pack lost its first record and was dropped
    uint64_t scrubbedPb = 0;     // free ring space zeroed after the redo end
};

struct WdevStatus {
    std::string name;
    SuperSector super;  // as last synced
    WdevLsids lsids;
    uint64_t deviceSizeLb = 0;
    uint64_t pendingBytes = 0;
    uint32_t checkpointIntervalMs = 0;
    bool overflow = false, frozen = false, failed = false;
    std::string failure;  // why the device stopped accepting writes
};

// Errors reported per request (errno values, as NBD carries them).
constexpr int kWdevOk = 0;
constexpr int kWdevEio = 5;
constexpr int kWdevEnospc = 28;
constexpr int kWdevEshutdown = 108;

class Wdev {
public:
    Wdev(const std::string& ldevPath, const std::string& ddevPath, const WdevOptions& opt);
    ~Wdev();
    Wdev(const Wdev&) = delete;
    Wdev& operator=(const Wdev&) = delete;

    const WdevRedoResult& redoResult() const { return redo_; }
    uint32_t pbs() const { return pbs_; }

    // Submission: never blocks. Offsets and lengths are in bytes, multiples of 512, inside the device. Each
    // request completes once through `target` (io.hpp).
    // `wake = false` leaves the logger asleep (the caller has more requests at hand and calls wakeLogger()).
    void submitWrite(uint64_t id, uint64_t offset, std::shared_ptr<IoBuffer> data, bool fua, IoTarget target,
                     bool wake = true);
    // Discard and write-zeroes: logged as discard records; the range reads back as zeros afterwards.
    void submitDiscard(uint64_t id, uint64_t offset, uint64_t length, bool fua, IoTarget target,
                       bool wake = true);
    void submitFlush(uint64_t id, IoTarget target, bool wake = true);
    void wakeLogger() { loggerCv_.notify_one(); }
    uint64_t sizeBytes();

    // Reads the newest data; safe from any thread.
    void read(uint64_t offset, size_t length, char* out);

    // Control (blocking; call from a worker thread).
    WdevStatus status();
    void setOldestLsid(uint64_t lsid);
    void takeCheckpoint();
    void setCheckpointInterval(uint32_t ms);
    void resetWal();
    void freeze(uint32_t timeoutSec);  // 0 = until melt
    void melt();
    void resize(uint64_t newSizeLb);  // grow only; 0 = the ddev's size
    // Drains every queued write to the ddev, checkpoints and stops the threads (the finalize of the driver).
    void close();

private:
    enum class ReqType { Write, Discard, Flush, Control };
    struct Request {
        uint64_t id = 0;
        ReqType type = ReqType::Write;
        bool fua = false;
        uint64_t offLb = 0, sizeLb = 0;
        std::shared_ptr<IoBuffer> data;  // writes
        IoTarget target;
        uint64_t seq = 0;               // overlay entry
        std::function<void()> control;  // runs on the logger thread in request order
    };
    // One IO on its way to the ddev (a request may be split across logpacks into several).
    struct ApplyItem {
        uint64_t offLb = 0, sizeLb = 0;
        std::shared_ptr<IoBuffer> data;  // null: zero the range
        size_t dataOff = 0;
        uint64_t removeSeq = 0;  // overlay entry to drop once applied (0: none)
    };
    struct ApplyBatch {
        uint64_t endLsid = 0;  // all logpacks below are in this or earlier batches
        std::vector<ApplyItem> items;
        uint64_t bytes = 0;
    };
    struct OverlayEntry {
        uint64_t offLb, sizeLb;
        std::shared_ptr<IoBuffer> data;  // null: zeros
    };
    struct Waiter {
        IoTarget target;
        uint64_t id;
    };

    void openAndRedo(const std::string& ldevPath, const std::string& ddevPath);
    void redoFromWritten();
    void checkOverflowAtStart();
    void scrubAfterEnd();
    uint32_t maxPieceLb() const;

    void enqueue(Request&& r, bool wake = true);
    void complete(const IoTarget& target, uint64_t id, int error);
    void completeAll(const std::vector<Waiter>& waiters, int error);
    uint64_t addOverlay(uint64_t offLb, uint64_t sizeLb, std::shared_ptr<IoBuffer> data);
    void removeOverlay(uint64_t seq);

    void loggerLoop();
    void writeBatch(std::deque<Request>& batch, std::unique_lock<std::mutex>& lk);
    void failRequests(std::deque<Request>& batch, int error);
    void syncLog(std::unique_lock<std::mutex>& lk);      // blocking: everything completed is permanent
    void requestSync(std::unique_lock<std::mutex>& lk);  // asks the syncer; returns at once
    void syncerLoop();
    void waitForRingSpace(uint64_t endLsid, std::unique_lock<std::mutex>& lk);
    uint32_t builderMaxPackPb() const;
    uint64_t emitLimitPb() const;
    void applierLoop();
    void checkpoint();  // ddev sync, then the super sector with written = the current written lsid
    void fail(const std::string& why);
    void throwIfFailed();
    void runControl(std::function<void()> fn);  // on the logger thread, after the writes queued before it
    void drainLocked(std::unique_lock<std::mutex>& lk);

    WdevOptions opt_;
    std::unique_ptr<Ldev> ldev_;
    File ddev_;
    uint32_t pbs_ = 512;
    WdevRedoResult redo_;
    std::unique_ptr<LogpackBuilder> builder_;  // logger thread only
    std::mutex superMu_;  // one super-sector writer at a time; guards the ldev's ring geometry (before mu_)

    // Everything below is guarded by mu_.
    std::mutex mu_;
    std::condition_variable loggerCv_, applierCv_, doneCv_;
    std::deque<Request> queue_;
    std::deque<ApplyBatch> applyQueue_;
    WdevLsids lsids_;
    SuperSector super_;  // in-memory image; written by checkpoints
    uint64_t deviceSizeLb_ = 0;
    uint64_t pendingBytes_ = 0;
    bool overflow_ = false, frozen_ = false, failed_ = false, stopping_ = false, stopped_ = false;
    bool loggerBusy_ = false, loggerDone_ = false;
    std::string failure_;
    uint32_t checkpointIntervalMs_ = 0;
    std::chrono::steady_clock::time_point freezeDeadline_{}, lastLogSync_{}, lastCheckpoint_{};

    std::mutex overlayMu_;
    uint64_t nextSeq_ = 1;
    // By seq (= submission order = lsid order): entry seq is overlay_[seq - overlayBase_]; removed ones are
    // empty until the front catches up. Entries leave in roughly the order they came, so this stays short.
    std::deque<std::optional<OverlayEntry>> overlay_;
    uint64_t overlayBase_ = 1;
    const OverlayEntry* overlayEntry(uint64_t seq) const;
    std::multimap<uint64_t, uint64_t> overlayByAddr_;  // offLb -> seq, entries up to kSmallEntryLb
    std::map<uint64_t, uint64_t> overlayBig_;          // seq -> offLb, larger (discard) entries
    static constexpr uint64_t kSmallEntryLb = 65536;

    // Syncer thread: fdatasync of the ldev while the logger goes on writing (the driver's log flush).
    std::condition_variable syncerCv_;
    uint64_t syncTarget_ = 0;
    std::vector<std::pair<uint64_t, Waiter>>
        syncWaiters_;  // FUA writes and flushes: lsid that must be permanent
    bool syncerStop_ = false;

    std::thread logger_, applier_, syncer_;
};

}  // namespace walb
