// JS class over the userspace WalB device. I/O reaches it only through NBD connections served in C++
// (serve); control calls return Promises and run on the thread pool.
#include <napi.h>

#include <memory>

#include "addon/job.hpp"
#include "addon/nbd_addon.hpp"
#include "core/nbd_wdev_backend.hpp"
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

// { bounds, commands: [{ command, counts, sum }] }: bounds and sums in seconds, counts per bucket (the last
// one above every bound), not cumulative.
Napi::Object latencyToJs(Napi::Env env, const NbdLatency& latency) {
    Napi::Object o = Napi::Object::New(env);
    Napi::Array bounds = Napi::Array::New(env, NbdLatency::kBoundsNs.size());
    for (size_t i = 0; i < NbdLatency::kBoundsNs.size(); i++)
        bounds.Set(static_cast<uint32_t>(i), static_cast<double>(NbdLatency::kBoundsNs[i]) / 1e9);
    o.Set("bounds", bounds);
    const auto histograms = latency.snapshot();
    Napi::Array commands = Napi::Array::New(env, histograms.size());
    for (size_t i = 0; i < histograms.size(); i++) {
        const NbdLatency::Histogram& h = histograms[i];
        Napi::Object c = Napi::Object::New(env);
        c.Set("command", nbdCommandName(h.command));
        Napi::Array counts = Napi::Array::New(env, h.counts.size());
        for (size_t b = 0; b < h.counts.size(); b++)
            counts.Set(static_cast<uint32_t>(b), static_cast<double>(h.counts[b]));
        c.Set("counts", counts);
        c.Set("sum", static_cast<double>(h.sumNs) / 1e9);
        commands.Set(static_cast<uint32_t>(i), c);
    }
    o.Set("commands", commands);
    return o;
}

struct Empty {};

class WdevObject : public Napi::ObjectWrap<WdevObject> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "Wdev",
            {InstanceMethod("open", &WdevObject::Open), InstanceMethod("status", &WdevObject::Status),
             InstanceMethod("setOldestLsid", &WdevObject::SetOldestLsid),
             InstanceMethod("takeCheckpoint", &WdevObject::TakeCheckpoint),
             InstanceMethod("setCheckpointInterval", &WdevObject::SetCheckpointInterval),
             InstanceMethod("resetWal", &WdevObject::ResetWal), InstanceMethod("freeze", &WdevObject::Freeze),
             InstanceMethod("melt", &WdevObject::Melt), InstanceMethod("resize", &WdevObject::Resize),
             InstanceMethod("close", &WdevObject::Close), InstanceMethod("serve", &WdevObject::Serve),
             InstanceMethod("nbdLatency", &WdevObject::NbdLatencyOf)});
    }
    WdevObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WdevObject>(info) {
        holder_ = std::make_shared<Holder>();
    }

private:
    // The device outlives the JS object while jobs that use it are running.
    struct Holder {
        std::shared_ptr<Wdev> dev;
        std::shared_ptr<WdevNbdBackend> backend;
        std::mutex mu;
        std::vector<std::weak_ptr<NbdWire>> wires;  // NBD connections served in C++
        // Their requests' durations, the ended connections' included.
        const std::shared_ptr<NbdLatency> latency = std::make_shared<NbdLatency>();

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
        return Job<WdevRedoResult>::start(
            info.Env(),
            [=](const Progress&) {
                auto dev = std::make_shared<Wdev>(ldev, ddev, opt);
                holder->backend = std::make_shared<WdevNbdBackend>(dev);
                holder->dev = dev;
                return dev->redoResult();
            },
            [](Napi::Env env, WdevRedoResult& r) -> Napi::Value { return redoToJs(env, r); });
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
    // serve(fd, pending, limits, onClose(stats)) -> connection: the NBD transmission phase of one connection
    // (nbd_addon.hpp); the wdev's close() ends it.
    Napi::Value Serve(const Napi::CallbackInfo& info) {
        dev(info.Env());
        std::shared_ptr<NbdWire> wire;
        Napi::Object handle = serveNbd(info, holder_->backend, &wire, holder_->latency);
        std::lock_guard<std::mutex> lk(holder_->mu);
        std::erase_if(holder_->wires, [](const std::weak_ptr<NbdWire>& w) { return w.expired(); });
        holder_->wires.push_back(wire);
        return handle;
    }
    // nbdLatency() -> the durations of the NBD requests served since the wdev was opened (nbd_latency.hpp).
    Napi::Value NbdLatencyOf(const Napi::CallbackInfo& info) {
        return latencyToJs(info.Env(), *holder_->latency);
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
            [holder](Napi::Env env, WdevStatus& s) -> Napi::Value {
                holder->dev.reset();
                holder->backend.reset();
                return statusToJs(env, s);
            });
    }

    std::shared_ptr<Holder> holder_;
};

}  // namespace

Napi::Function initWdevClass(Napi::Env env) { return WdevObject::Init(env); }

}  // namespace walb::addon
