// JS classes of the native bulk path (src/bulk/): BulkSender and BulkReceiver, in their own addon
// (walb_bulk_native.node) so that only the processes that use them load libgrpc++.
#include <memory>

#include "addon/job.hpp"
#include "bulk/bulk_receiver.hpp"
#include "bulk/bulk_sender.hpp"

namespace walb::addon {
namespace {

bulk::TlsPem tlsPem(const Napi::Object& o) {
    bulk::TlsPem t;
    if (!o.Has("tls") || o.Get("tls").IsUndefined()) return t;
    if (!o.Get("tls").IsObject()) throwInvalid(o.Env(), "tls must be an object of PEM strings");
    Napi::Object x = o.Get("tls").As<Napi::Object>();
    t.ca = optString(x, "ca", "");
    t.cert = optString(x, "cert", "");
    t.key = optString(x, "key", "");
    return t;
}

class BulkSender : public Napi::ObjectWrap<BulkSender> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "BulkSender",
            {InstanceMethod("run", &BulkSender::Run), InstanceMethod("cancel", &BulkSender::Cancel),
             InstanceMethod("sent", &BulkSender::SentSoFar)});
    }
    BulkSender(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BulkSender>(info) {
        Napi::Object o = argObject(info, 0);
        opt_.target = optString(o, "target", "");
        opt_.method = optString(o, "method", "");
        opt_.token = optString(o, "token", "");
        opt_.path = optString(o, "path", "");
        if (opt_.target.empty() || opt_.method.empty() || opt_.path.empty())
            throwInvalid(info.Env(), "target, method and path are required");
        opt_.size = optU64(o, "size", 0);
        opt_.from = optU64(o, "from", 0);
        opt_.bulk = uint32_t(optU64(o, "bulk", 1 << 20));
        opt_.bytesPerSec = optNumber(o, "bytesPerSec", 0);
        opt_.timeoutSec = uint32_t(optU64(o, "timeoutSec", 10));
        opt_.tls = tlsPem(o);
    }

private:
    struct Sent {
        uint64_t scanned, sent;
    };
    Napi::Value Run(const Napi::CallbackInfo& info) {
        if (ran_) throwInvalid(info.Env(), "a BulkSender runs once");
        ran_ = true;
        auto opt = opt_;
        auto control = control_;
        return Job<Sent>::start(
            info.Env(),
            [opt, control](const Progress& p) {
                auto r = bulk::sendFile(opt, *control, p);
                return Sent{r.scanned, r.sent};
            },
            [](Napi::Env env, Sent& r) -> Napi::Value {
                Napi::Object x = Napi::Object::New(env);
                x.Set("scanned", u64(env, r.scanned));
                x.Set("sent", u64(env, r.sent));
                return x;
            },
            info.Length() > 0 ? info[0] : Napi::Value());
    }
    Napi::Value SentSoFar(const Napi::CallbackInfo& info) { return u64(info.Env(), control_->sent.load()); }
    Napi::Value Cancel(const Napi::CallbackInfo& info) {
        control_->cancel();
        return info.Env().Undefined();
    }
    bulk::SendOptions opt_;
    std::shared_ptr<bulk::SendControl> control_ = std::make_shared<bulk::SendControl>();
    bool ran_ = false;
};

class BulkReceiver : public Napi::ObjectWrap<BulkReceiver> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(
            env, "BulkReceiver",
            {InstanceMethod("port", &BulkReceiver::Port), InstanceMethod("expect", &BulkReceiver::Expect),
             InstanceMethod("outcome", &BulkReceiver::OutcomeOf),
             InstanceMethod("forget", &BulkReceiver::Forget), InstanceMethod("close", &BulkReceiver::Close)});
    }
    BulkReceiver(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BulkReceiver>(info) {
        Napi::Object o = argObject(info, 0);
        bulk::ReceiverOptions opt;
        opt.listen = optString(o, "listen", "");
        opt.method = optString(o, "method", "");
        if (opt.listen.empty() || opt.method.empty())
            throwInvalid(info.Env(), "listen and method are required");
        opt.tls = tlsPem(o);
        try {
            receiver_ = std::make_unique<bulk::Receiver>(opt);
        } catch (const walb::Error& e) {
            throw makeError(info.Env(), errorCodeName(e.code()), e.what());
        }
    }

private:
    bulk::Receiver& receiver(Napi::Env env) {
        if (!receiver_) throw makeError(env, "UNAVAILABLE", "the bulk receiver is closed");
        return *receiver_;
    }
    Napi::Value Port(const Napi::CallbackInfo& info) {
        return Napi::Number::New(info.Env(), receiver(info.Env()).port());
    }
    Napi::Value Expect(const Napi::CallbackInfo& info) {
        const std::string token = argString(info, 0, "token");
        Napi::Object o = argObject(info, 1);
        bulk::Expected e;
        e.path = optString(o, "path", "");
        e.size = optU64(o, "size", 0);
        e.syncEveryBytes = optU64(o, "syncEveryBytes", 0);
        if (e.path.empty()) throwInvalid(info.Env(), "path is required");
        receiver(info.Env()).expect(token, e);
        return info.Env().Undefined();
    }
    Napi::Value OutcomeOf(const Napi::CallbackInfo& info) {
        const bulk::Outcome o = receiver(info.Env()).outcome(argString(info, 0, "token"));
        static const char* names[] = {"waiting", "running", "done", "failed"};
        Napi::Object x = Napi::Object::New(info.Env());
        x.Set("state", names[o.state]);
        x.Set("bytes", u64(info.Env(), o.bytes));
        x.Set("durable", u64(info.Env(), o.durable));
        if (!o.error.empty()) x.Set("error", o.error);
        return x;
    }
    Napi::Value Forget(const Napi::CallbackInfo& info) {
        receiver(info.Env()).forget(argString(info, 0, "token"));
        return info.Env().Undefined();
    }
    Napi::Value Close(const Napi::CallbackInfo& info) {
        if (receiver_) receiver_->shutdown();
        receiver_.reset();
        return info.Env().Undefined();
    }
    std::unique_ptr<bulk::Receiver> receiver_;
};

}  // namespace

}  // namespace walb::addon

static Napi::Object InitWalbBulkNative(Napi::Env env, Napi::Object exports) {
    exports.Set("BulkSender", walb::addon::BulkSender::Init(env));
    exports.Set("BulkReceiver", walb::addon::BulkReceiver::Init(env));
    return exports;
}

NODE_API_MODULE(walb_bulk_native, InitWalbBulkNative)
