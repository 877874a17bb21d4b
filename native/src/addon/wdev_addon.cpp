// JS class over the userspace WalB device. Requests carry a numeric id chosen by JS; completions come back
// in batches through one thread-safe function, so a burst of small writes costs one JS callback, not one per
// write. Control calls and reads return Promises and run on the thread pool.
#include <fcntl.h>
#include <napi.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "addon/job.hpp"
#include "core/nbd_wire.hpp"
#include "core/wdev.hpp"

namespace walb::addon {

namespace {

Napi::Object lsidsToJs(Napi::Env env, const WdevLsids& l) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("latest", u64(env, l.latest));
    o.Set("completed", u64(env, l.completed));
    o.Set("flush", u64(env, l.flush));
    o.Set("permanent", u64(env, l.permanent));
    o.Set("written", u64(env, l.written));
    o.Set("prevWritten", u64(env, l.prevWritten));
    o.Set("oldest", u64(env, l.oldest));
    return o;
}

Napi::Object statusToJs(Napi::Env env, const WdevStatus& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", s.name);
    o.Set("super", superToJs(env, s.super));
    o.Set("lsids", lsidsToJs(env, s.lsids));
    o.Set("deviceSize", u64(env, s.deviceSizeLb));
    o.Set("logCapacity", u64(env, s.super.ringBufferPb));
    o.Set("logUsage", u64(env, s.lsids.latest - s.lsids.oldest));
    o.Set("pendingBytes", u64(env, s.pendingBytes));
    o.Set("checkpointInterval", s.checkpointIntervalMs);
    o.Set("overflow", s.overflow);
    o.Set("frozen", s.frozen);
    o.Set("failed", s.failed);
    o.Set("failure", s.failure);
    return o;
}

Napi::Object redoToJs(Napi::Env env, const WdevRedoResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("beginLsid", u64(env, r.beginLsid));
    o.Set("endLsid", u64(env, r.endLsid));
    o.Set("packs", u64(env, r.packs));
    o.Set("records", u64(env, r.records));
    o.Set("bytes", u64(env, r.bytes));
    o.Set("shrunk", r.shrunk);
    o.Set("discardedPack", r.discardedPack);
    o.Set("scrubbedBlocks", u64(env, r.scrubbedPb));
    return o;
}

struct Empty {};

class WdevObject : public Napi::ObjectWrap<WdevObject> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "Wdev",
            {InstanceMethod("open", &WdevObject::Open), InstanceMethod("write", &WdevObject::Write),
             InstanceMethod("discard", &WdevObject::Discard), InstanceMethod("flush", &WdevObject::Flush),
             InstanceMethod("read", &WdevObject::Read), InstanceMethod("status", &WdevObject::Status),
             InstanceMethod("setOldestLsid", &WdevObject::SetOldestLsid),
             InstanceMethod("takeCheckpoint", &WdevObject::TakeCheckpoint),
             InstanceMethod("setCheckpointInterval", &WdevObject::SetCheckpointInterval),
             InstanceMethod("resetWal", &WdevObject::ResetWal), InstanceMethod("freeze", &WdevObject::Freeze),
             InstanceMethod("melt", &WdevObject::Melt), InstanceMethod("resize", &WdevObject::Resize),
             InstanceMethod("close", &WdevObject::Close), InstanceMethod("serve", &WdevObject::Serve),
             InstanceMethod("ref", &WdevObject::Ref), InstanceMethod("unref", &WdevObject::Unref)});
    }
    // new Wdev(onCompletions(ids: Float64Array, errors: Int32Array))
    WdevObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WdevObject>(info) {
        if (info.Length() < 1 || !info[0].IsFunction())
            throwInvalid(info.Env(), "onCompletions must be a function");
        holder_ = std::make_shared<Holder>();
        auto holder = holder_;
        tsfn_ =
            Napi::ThreadSafeFunction::New(info.Env(), info[0].As<Napi::Function>(), "wdev-completions", 0, 1);
        tsfn_.Unref(info.Env());
    }
    // No release in the destructor: at environment teardown the TSFN's own cleanup finalizes this object, and
    // releasing it from there aborts. close() releases it; an object never closed leaves it to the teardown.

private:
    // The device outlives the JS object while jobs that use it are running.
    struct Holder {
        std::shared_ptr<Wdev> dev;
        std::mutex mu;
        std::vector<std::weak_ptr<NbdWire>> wires;  // NBD connections served in C++

        // Ends every connection gracefully (their requests in flight are answered) and waits for them.
        void closeWires() {
            std::vector<std::shared_ptr<NbdWire>> live;
            {
                std::lock_guard<std::mutex> lk(mu);
                for (auto& w : wires)
                    if (auto p = w.lock()) live.push_back(p);
                wires.clear();
            }
            for (auto& w : live) w->shutdown("the wdev is closing");
            for (auto& w : live) w->join();
        }
    };

    std::shared_ptr<Wdev> dev(Napi::Env env) {
        if (!holder_->dev) throw makeError(env, "INVALID_ARGUMENT", "the wdev is not open");
        return holder_->dev;
    }
    void releaseTsfn() {
        if (tsfnLive_) {
            tsfnLive_ = false;
            tsfn_.Release();
        }
    }

    // open(ldev, ddev, options) -> Promise<redo result>
    Napi::Value Open(const Napi::CallbackInfo& info) {
        std::string ldev = argString(info, 0, "ldev"), ddev = argString(info, 1, "ddev");
        Napi::Object o = argObject(info, 2);
        WdevOptions opt;
        opt.name = optString(o, "name", "");
        opt.maxLogpackKb = static_cast<uint32_t>(optU64(o, "maxLogpackKb", opt.maxLogpackKb));
        opt.maxPendingBytes = optU64(o, "maxPendingBytes", opt.maxPendingBytes);
        opt.logFlushIntervalBytes = optU64(o, "logFlushIntervalBytes", opt.logFlushIntervalBytes);
        opt.logFlushIntervalMs =
            static_cast<uint32_t>(optU64(o, "logFlushIntervalMs", opt.logFlushIntervalMs));
        opt.checkpointIntervalMs =
            static_cast<uint32_t>(optU64(o, "checkpointIntervalMs", opt.checkpointIntervalMs));
        opt.errorBeforeOverflow = optBool(o, "errorBeforeOverflow", false);
        if (holder_->dev) throwInvalid(info.Env(), "the wdev is already open");
        auto holder = holder_;
        Napi::ThreadSafeFunction tsfn = tsfn_;
        return Job<WdevRedoResult>::start(
            info.Env(),
            [=](const Progress&) {
                auto weak = std::weak_ptr<Holder>(holder);
                auto dev = std::make_shared<Wdev>(ldev, ddev, opt, [tsfn, weak]() mutable {
                    auto h = weak.lock();
                    if (!h || !h->dev) return;
                    auto d = h->dev;
                    tsfn.NonBlockingCall([d](Napi::Env env, Napi::Function cb) {
                        auto done = d->takeCompletions();
                        if (done.empty()) return;
                        auto ids = Napi::Float64Array::New(env, done.size());
                        auto errs = Napi::Int32Array::New(env, done.size());
                        for (size_t i = 0; i < done.size(); i++) {
                            ids[i] = static_cast<double>(done[i].id);
                            errs[i] = done[i].error;
                        }
                        cb.Call({ids, errs});
                    });
                });
                holder->dev = dev;
                return dev->redoResult();
            },
            [](Napi::Env env, WdevRedoResult& r) -> Napi::Value { return redoToJs(env, r); });
    }

    // write(id, offset, data, fua): the bytes are copied, the caller may reuse `data`.
    Napi::Value Write(const Napi::CallbackInfo& info) {
        auto d = dev(info.Env());
        const uint64_t id = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
        const uint64_t off = static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue());
        auto buf = info[2].As<Napi::Buffer<char>>();
        auto data = std::make_shared<IoBuffer>(buf.Length());
        std::memcpy(data->data(), buf.Data(), buf.Length());
        d->submitWrite(id, off, std::move(data), info[3].ToBoolean());
        return info.Env().Undefined();
    }
    // discard(id, offset, length, fua): TRIM and WRITE_ZEROES; the range reads as zeros afterwards.
    Napi::Value Discard(const Napi::CallbackInfo& info) {
        auto d = dev(info.Env());
        d->submitDiscard(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()),
                         static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()),
                         static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue()),
                         info[3].ToBoolean());
        return info.Env().Undefined();
    }
    Napi::Value Flush(const Napi::CallbackInfo& info) {
        dev(info.Env())->submitFlush(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
        return info.Env().Undefined();
    }
    // read(offset, length) -> Promise<Buffer>
    Napi::Value Read(const Napi::CallbackInfo& info) {
        auto d = dev(info.Env());
        const uint64_t off = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
        const size_t len = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
        using Bytes = std::unique_ptr<std::vector<char>>;
        return Job<Bytes>::start(
            info.Env(),
            [d, off, len](const Progress&) {
                auto out = std::make_unique<std::vector<char>>(len);
                d->read(off, len, out->data());
                return out;
            },
            [](Napi::Env env, Bytes& b) -> Napi::Value {
                auto* v = b.release();
                return Napi::Buffer<char>::New(
                    env, v->data(), v->size(), [](Napi::Env, char*, std::vector<char>* p) { delete p; }, v);
            });
    }
    Napi::Value Status(const Napi::CallbackInfo& info) {
        auto d = dev(info.Env());
        return Job<WdevStatus>::start(
            info.Env(), [d](const Progress&) { return d->status(); },
            [](Napi::Env env, WdevStatus& s) -> Napi::Value { return statusToJs(env, s); });
    }
    // Runs a control call on the pool and resolves with the status after it.
    Napi::Value control(const Napi::CallbackInfo& info, std::function<void(Wdev&)> fn) {
        auto d = dev(info.Env());
        return Job<WdevStatus>::start(
            info.Env(),
            [d, fn](const Progress&) {
                fn(*d);
                return d->status();
            },
            [](Napi::Env env, WdevStatus& s) -> Napi::Value { return statusToJs(env, s); });
    }
    static uint64_t argU64(const Napi::CallbackInfo& info, size_t i) {
        if (info.Length() <= i) return 0;
        if (info[i].IsBigInt()) {
            bool lossless;
            return info[i].As<Napi::BigInt>().Uint64Value(&lossless);
        }
        return static_cast<uint64_t>(info[i].As<Napi::Number>().DoubleValue());
    }
    Napi::Value SetOldestLsid(const Napi::CallbackInfo& info) {
        uint64_t v = argU64(info, 0);
        return control(info, [v](Wdev& d) { d.setOldestLsid(v); });
    }
    Napi::Value TakeCheckpoint(const Napi::CallbackInfo& info) {
        return control(info, [](Wdev& d) { d.takeCheckpoint(); });
    }
    Napi::Value SetCheckpointInterval(const Napi::CallbackInfo& info) {
        uint64_t v = argU64(info, 0);
        if (v > 86400000u) throwInvalid(info.Env(), "checkpoint interval above 86400000 ms");
        return control(info, [v](Wdev& d) { d.setCheckpointInterval(static_cast<uint32_t>(v)); });
    }
    Napi::Value ResetWal(const Napi::CallbackInfo& info) {
        return control(info, [](Wdev& d) { d.resetWal(); });
    }
    Napi::Value Freeze(const Napi::CallbackInfo& info) {
        uint64_t v = argU64(info, 0);
        return control(info, [v](Wdev& d) { d.freeze(static_cast<uint32_t>(std::min<uint64_t>(v, 86400))); });
    }
    Napi::Value Melt(const Napi::CallbackInfo& info) {
        return control(info, [](Wdev& d) { d.melt(); });
    }
    Napi::Value Resize(const Napi::CallbackInfo& info) {
        uint64_t v = argU64(info, 0);
        return control(info, [v](Wdev& d) { d.resize(v); });
    }
    // serve(fd, pending, limits, onClose(stats)): the NBD transmission phase of one connection, in C++
    // threads. The descriptor is duplicated; the caller closes its own socket afterwards.
    Napi::Value Serve(const Napi::CallbackInfo& info) {
        auto d = dev(info.Env());
        const int fd = info[0].As<Napi::Number>().Int32Value();
        auto pending = info[1].As<Napi::Buffer<char>>();
        Napi::Object o = argObject(info, 2);
        if (info.Length() < 4 || !info[3].IsFunction())
            throwInvalid(info.Env(), "onClose must be a function");
        NbdWireLimits limits;
        limits.minBlockSize = static_cast<uint32_t>(optU64(o, "minBlockSize", limits.minBlockSize));
        limits.maxPayload = static_cast<uint32_t>(optU64(o, "maxPayload", limits.maxPayload));
        limits.maxInflightBytes = optU64(o, "maxInflightBytes", limits.maxInflightBytes);
        limits.maxInflightRequests =
            static_cast<uint32_t>(optU64(o, "maxInflightRequests", limits.maxInflightRequests));
        const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own < 0)
            throw makeError(info.Env(), "IO_ERROR", std::string("dup failed: ") + std::strerror(errno));
        // Blocking I/O on our own threads (the flag is shared with the caller's descriptor, which it closes
        // now).
        ::fcntl(own, F_SETFL, ::fcntl(own, F_GETFL) & ~O_NONBLOCK);
        auto tsfn =
            Napi::ThreadSafeFunction::New(info.Env(), info[3].As<Napi::Function>(), "nbd-wire-close", 0, 1);
        auto onClose = [tsfn](const NbdWireStats& s) mutable {
            auto* copy = new NbdWireStats(s);
            tsfn.BlockingCall(copy, [](Napi::Env env, Napi::Function cb, NbdWireStats* st) {
                Napi::Object o = Napi::Object::New(env);
                o.Set("reason", st->reason);
                o.Set("requests", u64(env, st->requests));
                o.Set("bytesRead", u64(env, st->bytesRead));
                o.Set("bytesWritten", u64(env, st->bytesWritten));
                o.Set("rejected", u64(env, st->rejected));
                o.Set("backendErrors", u64(env, st->backendErrors));
                delete st;
                cb.Call({o});
            });
            tsfn.Release();
        };
        auto wire = std::make_shared<NbdWire>(own, std::string(pending.Data(), pending.Length()), d, limits,
                                              std::move(onClose));
        {
            std::lock_guard<std::mutex> lk(holder_->mu);
            std::erase_if(holder_->wires, [](const std::weak_ptr<NbdWire>& w) { return w.expired(); });
            holder_->wires.push_back(wire);
        }
        wire->start();
        return info.Env().Undefined();
    }
    // While requests are in flight the completion channel keeps the event loop alive.
    Napi::Value Ref(const Napi::CallbackInfo& info) {
        if (tsfnLive_) tsfn_.Ref(info.Env());
        return info.Env().Undefined();
    }
    Napi::Value Unref(const Napi::CallbackInfo& info) {
        if (tsfnLive_) tsfn_.Unref(info.Env());
        return info.Env().Undefined();
    }
    // close() -> Promise<status>: drains every write to the ddev and checkpoints.
    Napi::Value Close(const Napi::CallbackInfo& info) {
        auto holder = holder_;
        auto d = dev(info.Env());
        return Job<WdevStatus>::start(
            info.Env(),
            [d, holder](const Progress&) {
                holder->closeWires();
                d->close();
                auto s = d->status();
                return s;
            },
            [this, holder](Napi::Env env, WdevStatus& s) -> Napi::Value {
                holder->dev.reset();
                releaseTsfn();
                return statusToJs(env, s);
            });
    }

    std::shared_ptr<Holder> holder_;
    Napi::ThreadSafeFunction tsfn_;
    bool tsfnLive_ = true;
};

}  // namespace

Napi::Function initWdevClass(Napi::Env env) { return WdevObject::Init(env); }

}  // namespace walb::addon
