// SortedWdiffWriter: a sorted wdiff built from records that arrive one by one (the archive's end of a hash
// backup, docs/servers.md §7.6): each add() compresses and writes on a pool thread; close() ends the file and
// makes it durable under its path; abort(), or garbage collection without close(), leaves nothing there.
#include <memory>
#include <mutex>

#include "addon/job.hpp"
#include "core/bytes.hpp"
#include "core/diff.hpp"

namespace walb::addon {
namespace {

struct WriterState {
    WriterState(const std::string& path, const DiffWriteOptions& opt) : writer(path, opt) {}
    std::mutex mu;
    SortedDiffWriter writer;
};

class SortedWdiffWriter : public Napi::ObjectWrap<SortedWdiffWriter> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "SortedWdiffWriter",
                           {InstanceMethod("add", &SortedWdiffWriter::Add),
                            InstanceMethod("close", &SortedWdiffWriter::Close),
                            InstanceMethod("abort", &SortedWdiffWriter::Abort)});
    }
    SortedWdiffWriter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SortedWdiffWriter>(info) {
        path_ = argString(info, 0, "path");
        Napi::Object o = argObject(info, 1);
        DiffWriteOptions opt = diffWriteOptions(o);
        if (o.Has("uuid") && !o.Get("uuid").IsUndefined()) {
            if (!o.Get("uuid").IsBuffer() || o.Get("uuid").As<Napi::Buffer<uint8_t>>().Length() != 16)
                throwInvalid(info.Env(), "uuid must be a Buffer of 16 bytes");
            auto b = o.Get("uuid").As<Napi::Buffer<uint8_t>>();
            std::copy(b.Data(), b.Data() + 16, opt.uuid.begin());
        }
        try {
            state_ = std::make_shared<WriterState>(path_, opt);
        } catch (const walb::Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        }
    }

private:
    std::shared_ptr<WriterState> live(Napi::Env env) const {
        if (!state_) throw makeError(env, "INVALID_ARGUMENT", "the wdiff writer of " + path_ + " is closed");
        return state_;
    }
    Napi::Value Add(const Napi::CallbackInfo& info) {
        auto st = live(info.Env());
        uint64_t offset = info[0].IsNumber() ? uint64_t(info[0].As<Napi::Number>().Int64Value()) : 1;
        if (info.Length() < 2 || !info[1].IsBuffer()) throwInvalid(info.Env(), "add(offset, data: Buffer)");
        auto data = info[1].As<Napi::Buffer<char>>();
        if (offset % kLbSize || data.Length() % kLbSize || data.Length() == 0)
            throwInvalid(info.Env(), "offset and length must be multiples of 512 bytes, the length not 0");
        // The bytes are copied here: the Buffer may be reused by the caller as soon as add() returns.
        auto bytes = std::make_shared<Bytes>(data.Data(), data.Data() + data.Length());
        return Job<bool>::start(
            info.Env(),
            [st, offset, bytes](const Progress&) {
                std::lock_guard<std::mutex> lk(st->mu);
                DiffIo io;
                io.addr = offset / kLbSize;
                io.blocks = static_cast<uint32_t>(bytes->size() / kLbSize);
                if (isAllZero(bytes->data(), bytes->size())) {
                    io.kind = DiffKind::AllZero;
                } else {
                    io.buf = bytes;
                }
                st->writer.add(io);
                return true;
            },
            [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
    }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        auto st = live(info.Env());
        state_.reset();
        return Job<DiffStats>::start(
            info.Env(),
            [st](const Progress&) {
                std::lock_guard<std::mutex> lk(st->mu);
                return st->writer.close();
            },
            [](Napi::Env env, DiffStats& s) -> Napi::Value {
                Napi::Object o = Napi::Object::New(env);
                o.Set("records", u64(env, s.records));
                o.Set("fileBytes", u64(env, s.fileBytes));
                return o;
            });
    }
    Napi::Value Abort(const Napi::CallbackInfo& info) {
        // The file goes when the last job holding the state settles (an uncommitted output is unlinked).
        state_.reset();
        return info.Env().Undefined();
    }
    std::string path_;
    std::shared_ptr<WriterState> state_;
};

}  // namespace

Napi::Function initSortedWdiffWriterClass(Napi::Env env) { return SortedWdiffWriter::Init(env); }

}  // namespace walb::addon
