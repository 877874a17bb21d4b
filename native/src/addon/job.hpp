// Promise-returning jobs on the libuv thread pool.
//
// Lifecycle: the JS thread validates arguments and copies them into plain C++ values captured by `work`;
// Execute() runs `work` on a pool thread without touching napi_env; OnOK()/OnError() run on the JS thread and
// settle the promise. walb::Error becomes a JS Error with a stable `code`; anything else becomes INTERNAL.
#pragma once
#include <napi.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "core/error.hpp"
#include "core/ldev.hpp"
#include "core/ops.hpp"

namespace walb::addon {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);
[[noreturn]] void throwInvalid(Napi::Env env, const std::string& message);

// Reports (done, total) to a JS callback at most every 100 ms, from any thread.
class ProgressReporter {
public:
    ProgressReporter(Napi::Env env, Napi::Value callback);
    ~ProgressReporter();
    Progress fn();

private:
    struct Data {
        uint64_t done, total;
    };
    Napi::ThreadSafeFunction tsfn_;
    bool active_ = false;
    std::atomic<int64_t> lastMs_{0};
};

template <class Result>
class Job : public Napi::AsyncWorker {
public:
    using Work = std::function<Result(const Progress&)>;
    using ToJs = std::function<Napi::Value(Napi::Env, Result&)>;

    static Napi::Promise start(Napi::Env env, Work work, ToJs toJs, Napi::Value progress = Napi::Value()) {
        auto* job = new Job(env, std::move(work), std::move(toJs), progress);
        auto promise = job->deferred_.Promise();
        job->Queue();
        return promise;
    }

protected:
    void Execute() override {
        try {
            result_ = std::make_unique<Result>(work_(reporter_ ? reporter_->fn() : Progress()));
        } catch (const walb::Error& e) {
            code_ = errorCodeName(e.code());
            SetError(e.what());
        } catch (const std::bad_alloc&) {
            code_ = "OUT_OF_MEMORY";
            SetError("out of memory");
        } catch (const std::exception& e) {
            code_ = "INTERNAL";
            SetError(e.what());
        }
    }
    void OnOK() override {
        reporter_.reset();
        try {
            deferred_.Resolve(toJs_(Env(), *result_));
        } catch (const Napi::Error& e) {
            deferred_.Reject(e.Value());
        }
    }
    void OnError(const Napi::Error& e) override {
        reporter_.reset();
        deferred_.Reject(makeError(Env(), code_, e.Message()).Value());
    }

private:
    Job(Napi::Env env, Work work, ToJs toJs, Napi::Value progress)
        : Napi::AsyncWorker(env),
          deferred_(Napi::Promise::Deferred::New(env)),
          work_(std::move(work)),
          toJs_(std::move(toJs)) {
        if (!progress.IsEmpty() && progress.IsFunction())
            reporter_ = std::make_unique<ProgressReporter>(env, progress);
    }
    Napi::Promise::Deferred deferred_;
    Work work_;
    ToJs toJs_;
    std::unique_ptr<Result> result_;
    std::unique_ptr<ProgressReporter> reporter_;
    std::string code_ = "INTERNAL";
};

// A new Buffer of `n` bytes that `fill` writes on the thread pool (the job keeps the Buffer alive meanwhile);
// the promise resolves to it. Nothing is copied on the JS thread, and the Buffer is not zero-filled first.
// Where the Buffer lies 1-31 bytes past a page, a distance the CPU copies file data to slowly
// (core/bytes.hpp), `fill` writes into a buffer of ours placed clear of that distance (roomClearOf),
// and that is copied over.
Napi::Promise fillBuffer(Napi::Env env, size_t n, std::function<void(char* dst)> fill);

// Argument helpers: one place for the checks and their messages.
std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<std::string> argStrings(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object argObject(const Napi::CallbackInfo& info, size_t i);  // empty object when absent
uint64_t optU64(const Napi::Object& o, const char* key, uint64_t dflt);
double optNumber(const Napi::Object& o, const char* key, double dflt);
bool optBool(const Napi::Object& o, const char* key, bool dflt);
std::string optString(const Napi::Object& o, const char* key, const std::string& dflt);
// u64 to JS: a Number when exact, else a BigInt (only the 2^64-1 "invalid" marker in practice).
Napi::Value u64(Napi::Env env, uint64_t v);
Napi::Value uuidHex(Napi::Env env, const Uuid& u);
Napi::Object superToJs(Napi::Env env, const SuperSector& s);
// The userspace WalB device class (wdev_addon.cpp).
Napi::Function initWdevClass(Napi::Env env);
// The sorted wdiff writer of hash backups (wdiff_writer_addon.cpp).
Napi::Function initSortedWdiffWriterClass(Napi::Env env);
DiffWriteOptions diffWriteOptions(const Napi::Object& o);
// The readiness datagram to systemd (notify_addon.cpp).
Napi::Value NotifyServiceManager(const Napi::CallbackInfo& info);

}  // namespace walb::addon
