#include "addon/job.hpp"

#include <cstring>

namespace walb::addon {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

void throwInvalid(Napi::Env env, const std::string& message) {
    throw makeError(env, "INVALID_ARGUMENT", message);
}

ProgressReporter::ProgressReporter(Napi::Env env, Napi::Value callback) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, callback.As<Napi::Function>(), "walb-progress", 1, 1);
    active_ = true;
}

ProgressReporter::~ProgressReporter() {
    if (active_) tsfn_.Release();
}

Progress ProgressReporter::fn() {
    return [this](uint64_t done, uint64_t total) {
        const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
        if (now - lastMs_.load() < 100) return;
        lastMs_ = now;
        auto* d = new Data{done, total};
        auto status = tsfn_.NonBlockingCall(d, [](Napi::Env env, Napi::Function cb, Data* data) {
            cb.Call(
                {Napi::Number::New(env, double(data->done)), Napi::Number::New(env, double(data->total))});
            delete data;
        });
        if (status != napi_ok) delete d;
    };
}

std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name) {
    if (info.Length() <= i || !info[i].IsString())
        throwInvalid(info.Env(), std::string("Expected a string for ") + name);
    return info[i].As<Napi::String>().Utf8Value();
}

std::vector<std::string> argStrings(const Napi::CallbackInfo& info, size_t i, const char* name) {
    if (info.Length() <= i || !info[i].IsArray())
        throwInvalid(info.Env(), std::string("Expected an array of strings for ") + name);
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<std::string> out;
    for (uint32_t k = 0; k < a.Length(); k++) {
        Napi::Value v = a.Get(k);
        if (!v.IsString()) throwInvalid(info.Env(), std::string("Expected an array of strings for ") + name);
        out.push_back(v.As<Napi::String>().Utf8Value());
    }
    return out;
}

Napi::Object argObject(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return Napi::Object::New(info.Env());
    if (!info[i].IsObject()) throwInvalid(info.Env(), "Expected an options object");
    return info[i].As<Napi::Object>();
}

uint64_t optU64(const Napi::Object& o, const char* key, uint64_t dflt) {
    if (!o.Has(key)) return dflt;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return dflt;
    if (v.IsBigInt()) {
        bool lossless = true;
        uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
        if (!lossless) throwInvalid(o.Env(), std::string("Expected an unsigned 64-bit integer for ") + key);
        return r;
    }
    if (!v.IsNumber()) throwInvalid(o.Env(), std::string("Expected a number for ") + key);
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
        throwInvalid(o.Env(), std::string("Expected a non-negative integer for ") + key);
    }
    return static_cast<uint64_t>(d);
}

double optNumber(const Napi::Object& o, const char* key, double dflt) {
    if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
    if (!o.Get(key).IsNumber()) throwInvalid(o.Env(), std::string("Expected a number for ") + key);
    return o.Get(key).As<Napi::Number>().DoubleValue();
}

bool optBool(const Napi::Object& o, const char* key, bool dflt) {
    if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
    return o.Get(key).ToBoolean().Value();
}

std::string optString(const Napi::Object& o, const char* key, const std::string& dflt) {
    if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
    if (!o.Get(key).IsString()) throwInvalid(o.Env(), std::string("Expected a string for ") + key);
    return o.Get(key).As<Napi::String>().Utf8Value();
}

Napi::Value u64(Napi::Env env, uint64_t v) {
    if (v <= 9007199254740991ull) return Napi::Number::New(env, static_cast<double>(v));
    return Napi::BigInt::New(env, v);
}

Napi::Promise fillBuffer(Napi::Env env, size_t n, std::function<void(char* dst)> fill) {
    Napi::Buffer<char> out = Napi::Buffer<char>::New(env, n);
    auto keep = std::make_shared<Napi::Reference<Napi::Buffer<char>>>(Napi::Persistent(out));
    char* dst = out.Data();
    return Job<bool>::start(
        env,
        [dst, n, fill = std::move(fill)](const Progress&) {
            if (!slowCopyDistance(dst, nullptr)) {  // file data starts on a page
                fill(dst);
                return true;
            }
            Bytes bounce;
            char* at = roomClearOf(bounce, n, dst);
            fill(at);
            std::memcpy(dst, at, n);
            return true;
        },
        [keep](Napi::Env, bool&) -> Napi::Value { return keep->Value(); });
}

Napi::Value uuidHex(Napi::Env env, const Uuid& u) { return Napi::String::New(env, walb::uuidHex(u)); }

DiffWriteOptions diffWriteOptions(const Napi::Object& o) {
    DiffWriteOptions w;
    try {
        w.compression = compressionFromName(optString(o, "compression", "snappy"));
    } catch (const walb::Error& e) {
        throwInvalid(o.Env(), e.what());
    }
    w.level = static_cast<int>(optNumber(o, "level", 0));
    w.maxIoBlocks = static_cast<uint32_t>(optU64(o, "maxIoBlocks", kDefaultMaxIoBlocks));
    return w;
}

Napi::Object superToJs(Napi::Env env, const SuperSector& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("pbs", s.pbs);
    o.Set("salt", s.salt);
    o.Set("uuid", uuidHex(env, s.uuid));
    o.Set("name", s.name);
    o.Set("ringBufferSize", u64(env, s.ringBufferPb));
    o.Set("ringBufferOffset", u64(env, ringBufferOffsetPb(s.pbs)));
    o.Set("oldestLsid", u64(env, s.oldestLsid));
    o.Set("writtenLsid", u64(env, s.writtenLsid));
    o.Set("deviceSize", u64(env, s.deviceSizeLb));
    return o;
}

}  // namespace walb::addon
