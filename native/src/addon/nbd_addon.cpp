#include "addon/nbd_addon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "addon/job.hpp"
#include "core/bytes.hpp"
#include "core/nbd_file_backend.hpp"
#include "core/nbd_request.hpp"
#include "core/nbd_snapshot_backend.hpp"

namespace walb::addon {

namespace {

Napi::Object statsToJs(Napi::Env env, const NbdWireStats& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("reason", s.reason);
    o.Set("requests", u64(env, s.requests));
    o.Set("bytesRead", u64(env, s.bytesRead));
    o.Set("bytesWritten", u64(env, s.bytesWritten));
    o.Set("rejected", u64(env, s.rejected));
    o.Set("backendErrors", u64(env, s.backendErrors));
    o.Set("inflightRequests", u64(env, s.inflightRequests));
    o.Set("inflightBytes", u64(env, s.inflightBytes));
    o.Set("protocolError", s.protocolError);
    Napi::Array events = Napi::Array::New(env, s.events.size());
    for (size_t i = 0; i < s.events.size(); i++) {
        const NbdWireEvent& e = s.events[i];
        Napi::Object x = Napi::Object::New(env);
        x.Set("kind", e.kind);
        x.Set("command", nbdCommandName(e.command));
        x.Set("error", nbdErrorName(e.error));
        x.Set("offset", u64(env, e.offset));
        x.Set("length", u64(env, e.length));
        x.Set("cause", e.cause);
        events.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("events", events);
    return o;
}

std::string optReason(const Napi::CallbackInfo& info) {
    return info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value()
                                                   : "closed by the server";
}

int errorByName(Napi::Env env, const std::string& name) {
    for (int e : {nbd::kEperm, nbd::kEio, nbd::kEnomem, nbd::kEinval, nbd::kEnospc, nbd::kEshutdown})
        if (name == nbdErrorName(e)) return e;
    throwInvalid(
        env, "Expected EPERM, EIO, ENOMEM, EINVAL, ENOSPC or ESHUTDOWN for fault error but received " + name);
}

NbdFileOp opByName(Napi::Env env, const std::string& name) {
    for (NbdFileOp op :
         {NbdFileOp::Read, NbdFileOp::Write, NbdFileOp::Flush, NbdFileOp::Trim, NbdFileOp::WriteZeroes})
        if (name == nbdFileOpName(op)) return op;
    throwInvalid(env, "Expected read, write, flush, trim or writeZeroes for fault op but received " + name);
}

NbdFileOptions fileOptions(Napi::Env env, const Napi::Object& o) {
    NbdFileOptions opt;
    opt.readOnly = optBool(o, "readOnly", false);
    opt.record = optBool(o, "record", false);
    opt.threads = static_cast<uint32_t>(optU64(o, "threads", opt.threads));
    Napi::Value faults = o.Get("faults");
    if (faults.IsUndefined()) return opt;
    if (!faults.IsArray()) throwInvalid(env, "Expected an array for faults");
    Napi::Array a = faults.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a.Get(i);
        if (!v.IsObject()) throwInvalid(env, "Expected an object for each fault");
        Napi::Object f = v.As<Napi::Object>();
        NbdFileFault fault;
        const std::string op = optString(f, "op", "");
        if (!op.empty()) {
            fault.anyOp = false;
            fault.op = opByName(env, op);
        }
        fault.hasRange = f.Has("offset") || f.Has("length");
        fault.offset = optU64(f, "offset", 0);
        fault.length = optU64(f, "length", fault.length);
        fault.delayMs = static_cast<uint32_t>(optU64(f, "delayMs", 0));
        const std::string error = optString(f, "error", "");
        if (!error.empty()) fault.error = errorByName(env, error);
        opt.faults.push_back(fault);
    }
    return opt;
}

// The JS object of a native backend served as an NBD export (NbdFile, NbdSnapshot): it holds the backend in a
// slot that the jobs of the object share, and gives serve() and close(). The backend is there once set (at
// construction, or by a job) until close(), which stops it: requests still queued, and any sent later, get
// ESHUTDOWN; connections end with their server. A backend set after close() is stopped at once. `Self`
// defines the class (serve and close among its methods) and names itself in unset() for the error of a call
// without a backend.
template <class Self, class Backend>
class NbdExportObject : public Napi::ObjectWrap<Self> {
protected:
    struct Slot {
        std::mutex mu;
        bool closed = false;
        std::shared_ptr<Backend> backend;

        // Keeps `b`; false (and `b` stopped) when the slot was closed first.
        bool set(std::shared_ptr<Backend> b) {
            {
                std::lock_guard<std::mutex> lk(mu);
                if (!closed) {
                    backend = std::move(b);
                    return true;
                }
            }
            b->stop();
            return false;
        }
        void close() {
            std::shared_ptr<Backend> b;
            {
                std::lock_guard<std::mutex> lk(mu);
                closed = true;
                b.swap(backend);
            }
            if (b) b->stop();
        }
        std::shared_ptr<Backend> get() {
            std::lock_guard<std::mutex> lk(mu);
            return backend;
        }
    };

    explicit NbdExportObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Self>(info) {}
    ~NbdExportObject() override { slot_->close(); }

    // The backend; INVALID_ARGUMENT when there is none (not set yet, or closed).
    std::shared_ptr<Backend> backend(Napi::Env env) {
        auto b = slot_->get();
        if (!b) throw makeError(env, "INVALID_ARGUMENT", static_cast<Self*>(this)->unset());
        return b;
    }
    Napi::Value Serve(const Napi::CallbackInfo& info) { return serveNbd(info, backend(info.Env()), nullptr); }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        slot_->close();
        return info.Env().Undefined();
    }

    const std::shared_ptr<Slot> slot_ = std::make_shared<Slot>();
};

// new NbdFile(path, options): a file or block device as an NBD export's backend (nbd_file_backend.hpp).
class NbdFileObject : public NbdExportObject<NbdFileObject, NbdFileBackend> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "NbdFile",
            {InstanceAccessor("size", &NbdFileObject::Size, nullptr),
             InstanceAccessor("readOnly", &NbdFileObject::ReadOnly, nullptr),
             InstanceMethod("serve", &NbdFileObject::Serve), InstanceMethod("hold", &NbdFileObject::Hold),
             InstanceMethod("release", &NbdFileObject::Release),
             InstanceMethod("stats", &NbdFileObject::Stats), InstanceMethod("calls", &NbdFileObject::Calls),
             InstanceMethod("close", &NbdFileObject::Close)});
    }
    explicit NbdFileObject(const Napi::CallbackInfo& info) : NbdExportObject(info) {
        const std::string path = argString(info, 0, "path");
        NbdFileOptions opt = fileOptions(info.Env(), argObject(info, 1));
        try {
            slot_->set(std::make_shared<NbdFileBackend>(path, std::move(opt)));
        } catch (const Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        } catch (const std::exception& e) {
            throw makeError(info.Env(), "INTERNAL", e.what());
        }
    }
    std::string unset() const { return "the file export is closed"; }

private:
    Napi::Value Size(const Napi::CallbackInfo& info) { return u64(info.Env(), backend(info.Env())->size()); }
    Napi::Value ReadOnly(const Napi::CallbackInfo& info) {
        return Napi::Boolean::New(info.Env(), backend(info.Env())->readOnly());
    }
    Napi::Value Hold(const Napi::CallbackInfo& info) {
        backend(info.Env())->hold();
        return info.Env().Undefined();
    }
    Napi::Value Release(const Napi::CallbackInfo& info) {
        backend(info.Env())->release();
        return info.Env().Undefined();
    }
    Napi::Value Stats(const Napi::CallbackInfo& info) {
        const NbdFileStats s = backend(info.Env())->stats();
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("requests", u64(info.Env(), s.requests));
        o.Set("pending", u64(info.Env(), s.pending));
        o.Set("pendingBytes", u64(info.Env(), s.pendingBytes));
        o.Set("maxPendingBytes", u64(info.Env(), s.maxPendingBytes));
        return o;
    }
    Napi::Value Calls(const Napi::CallbackInfo& info) {
        const std::vector<NbdFileCall> calls = backend(info.Env())->calls();
        Napi::Array a = Napi::Array::New(info.Env(), calls.size());
        for (size_t i = 0; i < calls.size(); i++) {
            Napi::Object o = Napi::Object::New(info.Env());
            o.Set("op", nbdFileOpName(calls[i].op));
            o.Set("offset", u64(info.Env(), calls[i].offset));
            o.Set("length", u64(info.Env(), calls[i].length));
            o.Set("fua", calls[i].fua);
            a.Set(static_cast<uint32_t>(i), o);
        }
        return a;
    }
};

// new NbdSnapshot(base, diffs, { threads }): a restorable snapshot as a read-only NBD export's backend
// (nbd_snapshot_backend.hpp). open() builds its table of extents on the thread pool and sets the backend;
// reads, serve() and the counters need it open. A close() while open() runs makes open() drop what it built.
class NbdSnapshotObject : public NbdExportObject<NbdSnapshotObject, NbdSnapshotBackend> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "NbdSnapshot",
                           {InstanceMethod("open", &NbdSnapshotObject::Open),
                            InstanceAccessor("size", &NbdSnapshotObject::Size, nullptr),
                            InstanceMethod("indexed", &NbdSnapshotObject::Indexed),
                            InstanceMethod("read", &NbdSnapshotObject::Read),
                            InstanceMethod("serve", &NbdSnapshotObject::Serve),
                            InstanceMethod("close", &NbdSnapshotObject::Close)});
    }
    explicit NbdSnapshotObject(const Napi::CallbackInfo& info) : NbdExportObject(info) {
        base_ = argString(info, 0, "base");
        diffs_ = argStrings(info, 1, "diffs");
        threads_ = static_cast<uint32_t>(optU64(argObject(info, 2), "threads", 4));
        if (threads_ == 0 || threads_ > 64) throwInvalid(info.Env(), "Expected 1..64 for threads");
    }
    std::string unset() const { return "the snapshot export of " + base_ + " is not open"; }

private:
    Napi::Value Open(const Napi::CallbackInfo& info) {
        auto slot = slot_;
        const std::string base = base_;
        const std::vector<std::string> diffs = diffs_;
        const uint32_t threads = threads_;
        return Job<bool>::start(
            info.Env(),
            [slot, base, diffs, threads](const Progress&) {
                auto image = std::make_shared<const SnapshotImage>(base, diffs);
                if (!slot->set(std::make_shared<NbdSnapshotBackend>(std::move(image), threads)))
                    throwError(ErrorCode::Cancelled, "the snapshot export was closed while it opened");
                return true;
            },
            [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
    }
    Napi::Value Size(const Napi::CallbackInfo& info) {
        return u64(info.Env(), backend(info.Env())->image().sizeBytes());
    }
    Napi::Value Indexed(const Napi::CallbackInfo& info) {
        auto b = backend(info.Env());
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("extents", u64(info.Env(), b->image().extents()));
        o.Set("storedImages", u64(info.Env(), b->image().storedImages()));
        return o;
    }
    // read({ offset, length }): the bytes, read on the thread pool (tests compare them with restored images).
    Napi::Value Read(const Napi::CallbackInfo& info) {
        Napi::Object o = argObject(info, 0);
        const uint64_t off = optU64(o, "offset", 0);
        const uint64_t len = optU64(o, "length", 1 << 20);
        if (len > (256u << 20)) throwInvalid(info.Env(), "Expected a length of at most 256 MiB for read");
        auto b = backend(info.Env());
        return fillBuffer(info.Env(), len, [b, off, len](char* dst) { b->image().read(off, len, dst); });
    }

    std::string base_;
    std::vector<std::string> diffs_;
    uint32_t threads_ = 4;
};

}  // namespace

Napi::Object serveNbd(const Napi::CallbackInfo& info, std::shared_ptr<NbdBackend> backend,
                      std::shared_ptr<NbdWire>* wireOut, std::shared_ptr<NbdLatency> latency) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throwInvalid(env, "Expected a descriptor for fd");
    if (info.Length() < 2 || !info[1].IsBuffer()) throwInvalid(env, "Expected a Buffer for pending");
    const int fd = info[0].As<Napi::Number>().Int32Value();
    auto pending = info[1].As<Napi::Buffer<char>>();
    Napi::Object o = argObject(info, 2);
    if (info.Length() < 4 || !info[3].IsFunction()) throwInvalid(env, "Expected a function for onClose");
    NbdWireLimits limits;
    limits.minBlockSize = static_cast<uint32_t>(optU64(o, "minBlockSize", limits.minBlockSize));
    limits.maxPayload = static_cast<uint32_t>(optU64(o, "maxPayload", limits.maxPayload));
    limits.maxInflightBytes = optU64(o, "maxInflightBytes", limits.maxInflightBytes);
    limits.maxInflightRequests =
        static_cast<uint32_t>(optU64(o, "maxInflightRequests", limits.maxInflightRequests));
    if (limits.minBlockSize == 0 || (limits.minBlockSize & (limits.minBlockSize - 1)))
        throwInvalid(env, "Expected a power of 2 for minBlockSize");
    const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) throw makeError(env, "IO_ERROR", std::string("dup failed: ") + std::strerror(errno));
    // Blocking I/O on our own threads (the flag is shared with the caller's descriptor, which it closes now).
    ::fcntl(own, F_SETFL, ::fcntl(own, F_GETFL) & ~O_NONBLOCK);
    auto tsfn = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "nbd-wire-close", 0, 1);
    auto onClose = [tsfn](const NbdWireStats& s) mutable {
        auto* copy = new NbdWireStats(s);
        tsfn.BlockingCall(copy, [](Napi::Env env, Napi::Function cb, NbdWireStats* st) {
            Napi::Object o = statsToJs(env, *st);
            delete st;
            cb.Call({o});
        });
        tsfn.Release();
    };
    auto wire = std::make_shared<NbdWire>(own, std::string(pending.Data(), pending.Length()),
                                          std::move(backend), limits, std::move(onClose), std::move(latency));
    if (wireOut) *wireOut = wire;
    wire->start();

    Napi::Object handle = Napi::Object::New(env);
    handle.Set("stats", Napi::Function::New(env, [wire](const Napi::CallbackInfo& i) -> Napi::Value {
                   return statsToJs(i.Env(), wire->stats());
               }));
    handle.Set("shutdown", Napi::Function::New(env, [wire](const Napi::CallbackInfo& i) -> Napi::Value {
                   wire->shutdown(optReason(i));
                   return i.Env().Undefined();
               }));
    handle.Set("abort", Napi::Function::New(env, [wire](const Napi::CallbackInfo& i) -> Napi::Value {
                   wire->abort(optReason(i));
                   return i.Env().Undefined();
               }));
    return handle;
}

Napi::Function initNbdFileClass(Napi::Env env) { return NbdFileObject::Init(env); }

Napi::Function initNbdSnapshotClass(Napi::Env env) { return NbdSnapshotObject::Init(env); }

}  // namespace walb::addon
