// Node-API surface of the format core. Every call that reads or writes more than a header runs as a Job on
// the thread pool and returns a Promise; stateful readers are objects whose methods also return Promises,
// with a close() that releases their files (see "Lifetime" at ReaderState).
#include <napi.h>

#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "addon/job.hpp"
#include "addon/nbd_addon.hpp"
#include "core/bytes.hpp"
#include "core/checksum.hpp"
#include "core/ldev.hpp"
#include "core/ops.hpp"
#include "core/wlog.hpp"

namespace walb::addon {

namespace {

Napi::Object wlogHeaderToJs(Napi::Env env, const WlogHeader& h) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("pbs", h.pbs);
    o.Set("salt", h.salt);
    o.Set("uuid", uuidHex(env, h.uuid));
    o.Set("beginLsid", u64(env, h.beginLsid));
    o.Set("endLsid", u64(env, h.endLsid));
    return o;
}

Napi::Object packToJs(Napi::Env env, const Logpack& p) {
    Napi::Object o = Napi::Object::New(env);
    const LogpackHeaderRaw& h = p.header();
    o.Set("lsid", u64(env, h.logpack_lsid));
    o.Set("totalIoSize", h.total_io_size);
    o.Set("nRecords", h.n_records);
    o.Set("nPadding", h.n_padding);
    o.Set("checksum", h.checksum);
    Napi::Array recs = Napi::Array::New(env, h.n_records);
    for (uint32_t i = 0; i < h.n_records; i++) {
        const LogRecordRaw& r = p.record(i);
        Napi::Object x = Napi::Object::New(env);
        x.Set("kind", r.isPadding() ? "padding" : r.isDiscard() ? "discard" : "normal");
        x.Set("offset", u64(env, r.offset));
        x.Set("ioSize", r.io_size);
        x.Set("lsid", u64(env, r.lsid));
        x.Set("lsidLocal", r.lsid_local);
        x.Set("checksum", r.checksum);
        recs.Set(i, x);
    }
    o.Set("records", recs);
    return o;
}

Napi::Object statsToJs(Napi::Env env, const DiffStats& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", u64(env, s.records));
    o.Set("dataBlocks", u64(env, s.dataBlocks));
    o.Set("allZeroBlocks", u64(env, s.allZeroBlocks));
    o.Set("discardBlocks", u64(env, s.discardBlocks));
    o.Set("storedBytes", u64(env, s.storedBytes));
    o.Set("fileBytes", u64(env, s.fileBytes));
    return o;
}

Napi::Object redoToJs(Napi::Env env, const RedoResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", u64(env, r.records));
    o.Set("writtenBytes", u64(env, r.writtenBytes));
    o.Set("zeroedBytes", u64(env, r.zeroedBytes));
    o.Set("discardedBytes", u64(env, r.discardedBytes));
    o.Set("beginLsid", u64(env, r.beginLsid));
    o.Set("endLsid", u64(env, r.endLsid));
    return o;
}

Napi::Object hashToJs(Napi::Env env, const HashResult& r, uint64_t chunkBytes) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("whole", Napi::Buffer<uint8_t>::Copy(env, r.whole, 16));
    o.Set("bytes", u64(env, r.bytes));
    o.Set("chunkSize", u64(env, chunkBytes));
    if (!r.chunkHashes.empty())
        o.Set("chunks", Napi::Buffer<uint8_t>::Copy(env, r.chunkHashes.data(), r.chunkHashes.size()));
    return o;
}

HashOptions hashOptions(const Napi::Object& o) {
    HashOptions h;
    h.seed = optU64(o, "seed", 0);
    h.chunkBytes = optU64(o, "chunkSize", 256 << 10);
    h.offset = optU64(o, "offset", 0);
    h.length = optU64(o, "length", UINT64_MAX);
    return h;
}

// ----------------------------------------------------------------------------------------------- functions

Napi::Value Checksum(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBuffer()) throwInvalid(info.Env(), "Expected a Buffer for data");
    auto buf = info[0].As<Napi::Buffer<char>>();
    uint32_t salt = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
    return Napi::Number::New(info.Env(), checksum(buf.Data(), buf.Length(), salt));
}

Napi::Value FormatLdev(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "ldev");
    Napi::Object o = argObject(info, 1);
    Ldev::FormatOptions opt;
    opt.pbs = static_cast<uint32_t>(optU64(o, "pbs", 512));
    opt.deviceSizeLb = optU64(o, "deviceSize", 0);
    opt.name = optString(o, "name", "");
    opt.discard = optBool(o, "discard", false);
    return Job<SuperSector>::start(
        info.Env(), [=](const Progress&) { return Ldev::format(path, opt); },
        [](Napi::Env env, SuperSector& s) -> Napi::Value { return superToJs(env, s); });
}

Napi::Value ReadSuper(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "ldev");
    return Job<SuperSector>::start(
        info.Env(), [=](const Progress&) { return Ldev(path, false).super(); },
        [](Napi::Env env, SuperSector& s) -> Napi::Value { return superToJs(env, s); });
}

Napi::Value WlogGen(const Napi::CallbackInfo& info) {
    std::string out = argString(info, 0, "output");
    Napi::Object o = argObject(info, 1);
    GenOptions g;
    g.deviceSizeLb = optU64(o, "deviceSize", g.deviceSizeLb);
    g.amountBytes = optU64(o, "amount", g.amountBytes);
    g.pbs = static_cast<uint32_t>(optU64(o, "pbs", g.pbs));
    g.minIoLb = static_cast<uint32_t>(optU64(o, "minIoSize", g.minIoLb));
    g.maxIoLb = static_cast<uint32_t>(optU64(o, "maxIoSize", g.maxIoLb));
    g.discardRatio = optNumber(o, "discardRatio", g.discardRatio);
    g.allZeroRatio = optNumber(o, "allZeroRatio", g.allZeroRatio);
    g.overlapRatio = optNumber(o, "overlapRatio", g.overlapRatio);
    g.flushRatio = optNumber(o, "flushRatio", g.flushRatio);
    g.data = optString(o, "data", g.data);
    g.lsid = optU64(o, "lsid", g.lsid);
    g.ringBufferPb = optU64(o, "ringBufferSize", 0);
    g.maxLogpackPb = static_cast<uint32_t>(optU64(o, "maxLogpackPb", 0));
    g.maxIosPerPack =
        static_cast<uint32_t>(std::max<uint64_t>(1, optU64(o, "maxIosPerPack", g.maxIosPerPack)));
    g.seed = optU64(o, "seed", 0);
    if (o.Has("salt") && !o.Get("salt").IsUndefined()) {
        g.hasSalt = true;
        g.salt = static_cast<uint32_t>(optU64(o, "salt", 0));
    }
    return Job<GenResult>::start(
        info.Env(), [=](const Progress& p) { return generateWlog(out, g, p); },
        [](Napi::Env env, GenResult& r) -> Napi::Value {
            Napi::Object x = Napi::Object::New(env);
            x.Set("beginLsid", u64(env, r.beginLsid));
            x.Set("endLsid", u64(env, r.endLsid));
            x.Set("packs", u64(env, r.packs));
            x.Set("ios", u64(env, r.ios));
            x.Set("bytes", u64(env, r.bytes));
            x.Set("discards", u64(env, r.discards));
            x.Set("paddings", u64(env, r.paddings));
            x.Set("salt", r.salt);
            return x;
        },
        info.Length() > 2 ? info[2] : Napi::Value());
}

Napi::Value WlogVerify(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "wlog");
    return Job<WlogVerifyResult>::start(
        info.Env(), [=](const Progress& progress) { return verifyWlog(path, progress); },
        [](Napi::Env env, WlogVerifyResult& r) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("header", wlogHeaderToJs(env, r.header));
            o.Set("packs", u64(env, r.packs));
            o.Set("records", u64(env, r.records));
            o.Set("paddings", u64(env, r.paddings));
            o.Set("discards", u64(env, r.discards));
            o.Set("dataBytes", u64(env, r.dataBytes));
            o.Set("endLsid", u64(env, r.endLsid));
            o.Set("endBlock", r.endBlock);
            return o;
        },
        info.Length() > 1 ? info[1] : Napi::Value());
}

Napi::Value WlogToWdiff(const Napi::CallbackInfo& info) {
    auto inputs = argStrings(info, 0, "inputs");
    std::string out = argString(info, 1, "output");
    Napi::Object o = argObject(info, 2);
    ConvertOptions c;
    c.write = diffWriteOptions(o);
    c.indexed = optBool(o, "indexed", false);
    c.memoryLimit = optU64(o, "memoryLimit", c.memoryLimit);
    c.tempDir = optString(o, "tempDir", "");
    return Job<ConvertResult>::start(
        info.Env(), [=](const Progress& p) { return wlogToWdiff(inputs, out, c, p); },
        [](Napi::Env env, ConvertResult& r) -> Napi::Value {
            Napi::Object x = statsToJs(env, r.stats);
            x.Set("beginLsid", u64(env, r.beginLsid));
            x.Set("endLsid", u64(env, r.endLsid));
            x.Set("packs", u64(env, r.packs));
            x.Set("inputBytes", u64(env, r.inputBytes));
            x.Set("spills", u64(env, r.spills));
            return x;
        },
        info.Length() > 3 ? info[3] : Napi::Value());
}

Napi::Value WdiffMerge(const Napi::CallbackInfo& info) {
    auto inputs = argStrings(info, 0, "inputs");
    std::string out = argString(info, 1, "output");
    DiffWriteOptions w = diffWriteOptions(argObject(info, 2));
    return Job<DiffStats>::start(
        info.Env(), [=](const Progress& p) { return mergeWdiffs(inputs, out, w, p); },
        [](Napi::Env env, DiffStats& s) -> Napi::Value { return statsToJs(env, s); },
        info.Length() > 3 ? info[3] : Napi::Value());
}

Napi::Value WdiffVerify(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "wdiff");
    return Job<DiffStats>::start(
        info.Env(), [=](const Progress& progress) { return verifyWdiff(path, progress); },
        [](Napi::Env env, DiffStats& s) -> Napi::Value { return statsToJs(env, s); },
        info.Length() > 1 ? info[1] : Napi::Value());
}

Napi::Value Redo(const Napi::CallbackInfo& info, bool wlog) {
    std::string in = argString(info, 0, wlog ? "wlog" : "wdiff");
    std::string image = argString(info, 1, "image");
    Napi::Object o = argObject(info, 2);
    DiscardMode mode;
    try {
        mode = discardModeFromName(optString(o, "discard", "ignore"));
    } catch (const walb::Error& e) {
        throwInvalid(info.Env(), e.what());
    }
    return Job<RedoResult>::start(
        info.Env(),
        [=](const Progress& p) {
            return wlog ? redoWlog(in, image, mode, p) : redoWdiff(in, image, mode, p);
        },
        [](Napi::Env env, RedoResult& r) -> Napi::Value { return redoToJs(env, r); },
        info.Length() > 3 ? info[3] : Napi::Value());
}

Napi::Value WlogRedo(const Napi::CallbackInfo& info) { return Redo(info, true); }
Napi::Value WdiffRedo(const Napi::CallbackInfo& info) { return Redo(info, false); }

Napi::Value GrowImage(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "image");
    Napi::Object o = argObject(info, 1);
    uint64_t from = optU64(o, "fromBytes", 0);
    uint64_t to = optU64(o, "toBytes", 0);
    bool zeroClear = optBool(o, "zeroClear", false);
    return Job<uint64_t>::start(
        info.Env(), [=](const Progress&) { return growImage(path, from, to, zeroClear); },
        [](Napi::Env env, uint64_t& zeroed) -> Napi::Value { return u64(env, zeroed); });
}

Napi::Value HashImage(const Napi::CallbackInfo& info) {
    std::string path = argString(info, 0, "image");
    Napi::Object o = argObject(info, 1);
    HashOptions h = hashOptions(o);
    bool chunks = optBool(o, "chunks", false);
    return Job<HashResult>::start(
        info.Env(), [=](const Progress& p) { return hashImage(path, h, chunks, p); },
        [h](Napi::Env env, HashResult& r) -> Napi::Value { return hashToJs(env, r, h.chunkBytes); },
        info.Length() > 2 ? info[2] : Napi::Value());
}

Napi::Value LdevExtract(const Napi::CallbackInfo& info) {
    std::string ldev = argString(info, 0, "ldev");
    std::string out = argString(info, 1, "output");
    Napi::Object o = argObject(info, 2);
    uint64_t begin = optU64(o, "beginLsid", kInvalidLsid);
    uint64_t end = optU64(o, "endLsid", kInvalidLsid);
    return Job<ExtractResult>::start(
        info.Env(), [=](const Progress& p) { return extractWlog(ldev, out, begin, end, p); },
        [](Napi::Env env, ExtractResult& r) -> Napi::Value {
            Napi::Object x = Napi::Object::New(env);
            x.Set("beginLsid", u64(env, r.beginLsid));
            x.Set("endLsid", u64(env, r.endLsid));
            x.Set("packs", u64(env, r.packs));
            x.Set("bytes", u64(env, r.bytes));
            x.Set("shrunk", r.shrunk);
            return x;
        },
        info.Length() > 3 ? info[3] : Napi::Value());
}

// ldevReadLogs(ldev, {beginLsid, endLsid, maxBytes}) -> {super, data, beginLsid, nextLsid, packs}
Napi::Value LdevReadLogs(const Napi::CallbackInfo& info) {
    std::string ldev = argString(info, 0, "ldev");
    Napi::Object o = argObject(info, 1);
    uint64_t begin = optU64(o, "beginLsid", 0);
    uint64_t end = optU64(o, "endLsid", 0);
    uint64_t maxBytes = optU64(o, "maxBytes", 8u << 20);
    const std::string endMode = optString(o, "end", "exact");
    if (endMode != "exact" && endMode != "up-to" && endMode != "up-to-at-least-one")
        throwInvalid(info.Env(), "end must be exact, up-to or up-to-at-least-one");
    const RangeEnd mode = endMode == "exact"   ? RangeEnd::Exact
                          : endMode == "up-to" ? RangeEnd::UpTo
                                               : RangeEnd::UpToAtLeastOnePack;
    using Ptr = std::unique_ptr<LogRange>;
    return Job<Ptr>::start(
        info.Env(),
        [=](const Progress&) {
            return std::make_unique<LogRange>(readLogRange(ldev, begin, end, maxBytes, mode));
        },
        [](Napi::Env env, Ptr& r) -> Napi::Value {
            Napi::Object x = Napi::Object::New(env);
            x.Set("super", superToJs(env, r->super));
            auto* bytes = new Bytes(std::move(r->bytes));
            x.Set("data", Napi::Buffer<char>::New(
                              env, bytes->data(), bytes->size(), [](Napi::Env, char*, Bytes* p) { delete p; },
                              bytes));
            x.Set("beginLsid", u64(env, r->beginLsid));
            x.Set("nextLsid", u64(env, r->nextLsid));
            x.Set("packs", u64(env, r->packs));
            return x;
        });
}

Napi::Value LdevRestore(const Napi::CallbackInfo& info) {
    std::string wlog = argString(info, 0, "wlog");
    std::string ldev = argString(info, 1, "ldev");
    return Job<uint64_t>::start(
        info.Env(), [=](const Progress& p) { return restoreWlog(wlog, ldev, p); },
        [](Napi::Env env, uint64_t& end) -> Napi::Value { return u64(env, end); });
}

// ------------------------------------------------------------------------------------------------- objects

// Lifetime of the reader objects below (WlogFile, WdiffFile, VirtualFull). The object and each of its jobs
// hold the reader state, and so its open files, by shared_ptr. close() drops the object's hold: with no job
// queued or running the files close at once, otherwise when the last job settles. close() never waits and
// never fails, and a second call does nothing; deferring rather than refusing means a `finally { f.close() }`
// after a failed await never leaks the file. After close() every method fails with INVALID_ARGUMENT naming
// the file: the synchronous ones throw, the Promise ones reject. Garbage collection without close() frees the
// state the same way.
template <class State>
class ReaderState {
public:
    explicit ReaderState(std::string what) : what_(std::move(what)) {}
    void open(std::shared_ptr<State> s) { state_ = std::move(s); }
    // For synchronous methods: throws when closed.
    State& get(Napi::Env env) const {
        if (!state_) throw closedError(env);
        return *state_;
    }
    // For a job to capture; null when closed (then answer with rejectClosed()).
    std::shared_ptr<State> share() const { return state_; }
    Napi::Promise rejectClosed(Napi::Env env) const {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(closedError(env).Value());
        return d.Promise();
    }
    void close() { state_.reset(); }

private:
    Napi::Error closedError(Napi::Env env) const {
        return makeError(env, "INVALID_ARGUMENT", what_ + " is closed; open it again to read it");
    }
    std::string what_;
    std::shared_ptr<State> state_;
};

// Streams the packs of a wlog file in batches (headers and records, no data).
class WlogFile : public Napi::ObjectWrap<WlogFile> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "WlogFile",
            {InstanceMethod("header", &WlogFile::Header), InstanceMethod("next", &WlogFile::Next),
             InstanceMethod("close", &WlogFile::Close)});
    }
    WlogFile(const Napi::CallbackInfo& info)
        : Napi::ObjectWrap<WlogFile>(info), state_("WlogFile " + argString(info, 0, "wlog")) {
        std::string path = argString(info, 0, "wlog");
        try {
            state_.open(std::make_shared<State>(path));
        } catch (const walb::Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        }
    }

private:
    struct State {
        explicit State(const std::string& path) : reader(path) {}
        std::mutex mu;
        WlogReader reader;
    };
    Napi::Value Header(const Napi::CallbackInfo& info) {
        return wlogHeaderToJs(info.Env(), state_.get(info.Env()).reader.header());
    }
    Napi::Value Next(const Napi::CallbackInfo& info) {
        size_t max = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 256;
        auto st = state_.share();
        if (!st) return state_.rejectClosed(info.Env());
        return Job<std::vector<Logpack>>::start(
            info.Env(),
            [st, max](const Progress&) {
                std::lock_guard<std::mutex> lk(st->mu);
                std::vector<Logpack> out;
                Logpack p;
                while (out.size() < max && st->reader.next(p)) {
                    p.data().clear();
                    p.data().shrink_to_fit();
                    out.push_back(std::move(p));
                }
                return out;
            },
            [](Napi::Env env, std::vector<Logpack>& packs) -> Napi::Value {
                Napi::Array a = Napi::Array::New(env, packs.size());
                for (uint32_t i = 0; i < packs.size(); i++) a.Set(i, packToJs(env, packs[i]));
                return a;
            });
    }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        state_.close();
        return info.Env().Undefined();
    }
    ReaderState<State> state_;
};

// Streams the stored records of a wdiff (sorted: pack by pack; indexed: index records).
class WdiffFile : public Napi::ObjectWrap<WdiffFile> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "WdiffFile",
            {InstanceMethod("header", &WdiffFile::Header), InstanceMethod("next", &WdiffFile::Next),
             InstanceMethod("close", &WdiffFile::Close)});
    }
    WdiffFile(const Napi::CallbackInfo& info)
        : Napi::ObjectWrap<WdiffFile>(info), state_("WdiffFile " + argString(info, 0, "wdiff")) {
        std::string path = argString(info, 0, "wdiff");
        try {
            auto st = std::make_shared<State>();
            {
                File f(path, File::Mode::Read);
                st->info = readDiffFileHeader(f);
            }
            if (st->info.type == kWdiffTypeIndexed)
                st->indexed = std::make_unique<IndexedDiffReader>(path);
            else
                st->sorted = std::make_unique<SortedDiffReader>(path);
            state_.open(std::move(st));
        } catch (const walb::Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        }
    }

private:
    struct State {
        std::mutex mu;
        DiffFileInfo info;
        std::unique_ptr<SortedDiffReader> sorted;
        std::unique_ptr<IndexedDiffReader> indexed;
    };
    Napi::Value Header(const Napi::CallbackInfo& info) {
        const DiffFileInfo& h = state_.get(info.Env()).info;
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("type", h.type == kWdiffTypeIndexed ? "indexed" : "sorted");
        o.Set("uuid", uuidHex(info.Env(), h.uuid));
        return o;
    }
    Napi::Value Next(const Napi::CallbackInfo& info) {
        size_t max =
            info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 4096;
        auto st = state_.share();
        if (!st) return state_.rejectClosed(info.Env());
        return Job<std::vector<StoredRecord>>::start(
            info.Env(),
            [st, max](const Progress&) {
                std::lock_guard<std::mutex> lk(st->mu);
                std::vector<StoredRecord> out, pack;
                if (st->sorted) {
                    while (out.size() < max && st->sorted->nextPack(pack))
                        out.insert(out.end(), pack.begin(), pack.end());
                } else {
                    StoredRecord r;
                    while (out.size() < max && st->indexed->nextStored(r)) out.push_back(r);
                }
                return out;
            },
            [](Napi::Env env, std::vector<StoredRecord>& recs) -> Napi::Value {
                Napi::Array a = Napi::Array::New(env, recs.size());
                for (uint32_t i = 0; i < recs.size(); i++) {
                    const StoredRecord& r = recs[i];
                    Napi::Object x = Napi::Object::New(env);
                    x.Set("address", u64(env, r.addr));
                    x.Set("blocks", r.blocks);
                    x.Set("kind", diffKindName(r.kind));
                    x.Set("compression", compressionName(static_cast<Compression>(r.compression)));
                    x.Set("dataOffset", u64(env, r.dataOffset));
                    x.Set("dataSize", r.dataSize);
                    x.Set("ioOffset", r.ioOffset);
                    x.Set("origBlocks", r.origBlocks);
                    a.Set(i, x);
                }
                return a;
            });
    }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        state_.close();
        return info.Env().Undefined();
    }
    ReaderState<State> state_;
};

// A base image plus a wdiff chain read as one image.
class VirtualFull : public Napi::ObjectWrap<VirtualFull> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "VirtualFull",
            {InstanceMethod("size", &VirtualFull::Size), InstanceMethod("read", &VirtualFull::Read),
             InstanceMethod("hash", &VirtualFull::Hash), InstanceMethod("close", &VirtualFull::Close)});
    }
    VirtualFull(const Napi::CallbackInfo& info)
        : Napi::ObjectWrap<VirtualFull>(info), state_("VirtualFull of " + argString(info, 0, "base")) {
        std::string base = argString(info, 0, "base");
        auto diffs = argStrings(info, 1, "diffs");
        try {
            state_.open(std::make_shared<State>(base, diffs));
        } catch (const walb::Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        }
    }

private:
    struct State {
        State(const std::string& base, const std::vector<std::string>& diffs) : image(base, diffs) {}
        std::mutex mu;
        VirtualFullImage image;
    };
    Napi::Value Size(const Napi::CallbackInfo& info) {
        return u64(info.Env(), state_.get(info.Env()).image.sizeBytes());
    }
    Napi::Value Read(const Napi::CallbackInfo& info) {
        Napi::Object o = argObject(info, 0);
        uint64_t off = optU64(o, "offset", 0);
        uint64_t len = optU64(o, "length", 4 << 20);
        if (len > (256u << 20)) throwInvalid(info.Env(), "Expected a length of at most 256 MiB for read");
        auto st = state_.share();
        if (!st) return state_.rejectClosed(info.Env());
        const uint64_t size = st->image.sizeBytes();  // fixed when the image is opened
        const uint64_t n = std::min<uint64_t>(len, off < size ? size - off : 0);
        return fillBuffer(info.Env(), n, [st, off, n](char* dst) {
            std::lock_guard<std::mutex> lk(st->mu);
            st->image.read(off, n, dst);
        });
    }
    Napi::Value Hash(const Napi::CallbackInfo& info) {
        Napi::Object o = argObject(info, 0);
        HashOptions h = hashOptions(o);
        bool chunks = optBool(o, "chunks", false);
        auto st = state_.share();
        if (!st) return state_.rejectClosed(info.Env());
        return Job<HashResult>::start(
            info.Env(),
            [st, h, chunks](const Progress& p) {
                std::lock_guard<std::mutex> lk(st->mu);
                return hashVirtualFull(st->image, h, chunks, p);
            },
            [h](Napi::Env env, HashResult& r) -> Napi::Value { return hashToJs(env, r, h.chunkBytes); },
            info.Length() > 1 ? info[1] : Napi::Value());
    }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        state_.close();
        return info.Env().Undefined();
    }
    ReaderState<State> state_;
};

}  // namespace

namespace {

// Bulk data moves through Node as buffers of about 1 MiB that live for microseconds. By default glibc maps
// each one fresh and unmaps it on free, so every byte sent pays page faults; measured on a full backup this
// was a quarter of the storage's CPU. Serve them from the heap instead, and keep up to 128 MiB of freed heap
// before returning it to the kernel (memory stays bounded by that plus the data in flight).
void keepBulkBuffersInHeap() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    keepBulkBuffersInHeap();
    exports.Set("checksum", Napi::Function::New(env, Checksum));
    exports.Set("formatLdev", Napi::Function::New(env, FormatLdev));
    exports.Set("readSuper", Napi::Function::New(env, ReadSuper));
    exports.Set("wlogGen", Napi::Function::New(env, WlogGen));
    exports.Set("wlogVerify", Napi::Function::New(env, WlogVerify));
    exports.Set("wlogToWdiff", Napi::Function::New(env, WlogToWdiff));
    exports.Set("wlogRedo", Napi::Function::New(env, WlogRedo));
    exports.Set("wdiffMerge", Napi::Function::New(env, WdiffMerge));
    exports.Set("wdiffVerify", Napi::Function::New(env, WdiffVerify));
    exports.Set("wdiffRedo", Napi::Function::New(env, WdiffRedo));
    exports.Set("hashImage", Napi::Function::New(env, HashImage));
    exports.Set("growImage", Napi::Function::New(env, GrowImage));
    exports.Set("ldevExtract", Napi::Function::New(env, LdevExtract));
    exports.Set("ldevRestore", Napi::Function::New(env, LdevRestore));
    exports.Set("ldevReadLogs", Napi::Function::New(env, LdevReadLogs));
    exports.Set("WlogFile", WlogFile::Init(env));
    exports.Set("WdiffFile", WdiffFile::Init(env));
    exports.Set("VirtualFull", VirtualFull::Init(env));
    exports.Set("Wdev", initWdevClass(env));
    exports.Set("NbdFile", initNbdFileClass(env));
    exports.Set("NbdSnapshot", initNbdSnapshotClass(env));
    exports.Set("SortedWdiffWriter", initSortedWdiffWriterClass(env));
    exports.Set("notifyServiceManager", Napi::Function::New(env, NotifyServiceManager));
    return exports;
}

}  // namespace walb::addon

static Napi::Object InitWalbNative(Napi::Env env, Napi::Object exports) {
    return walb::addon::Init(env, exports);
}

NODE_API_MODULE(walb_native, InitWalbNative)
